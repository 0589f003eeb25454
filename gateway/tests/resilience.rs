//! Failure and lifecycle behaviour: upstream failures, live reload, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn upstream_connect_failure_is_502_and_timeout_is_504() {
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = MockUpstream::start().await;
    let config = standard_config(up.addr).replacen(
        &format!("http://{}", up.addr),
        &format!("http://{dead}"),
        1,
    );
    let gw = GatewayProc::start(&config).await;
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        DEMO_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(r.headers().get("content-type").unwrap(), "application/json");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(error_code(r).await, (502, "upstream_connect_failed".into()));

    // The anthropic provider (read timeout 2 s) answers after 3 s.
    let body = serde_json::json!({"model": "claude-3-haiku", "max_tokens": 5, "messages": []});
    let started = std::time::Instant::now();
    let r = client()
        .post(gw.url("/anthropic/v1/messages"))
        .header("x-api-key", DEMO_KEY)
        .header("x-mock-sleep-ms", "3000")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (504, "upstream_timeout".into()));
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "timeout not enforced: {:?}",
        started.elapsed()
    );
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"gateway_rejections_total{reason="upstream_connect_failed"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"gateway_rejections_total{reason="upstream_timeout"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn upstream_error_statuses_pass_through_unchanged() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .header("x-mock-status", "429")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["message"], "mock error");
}

#[tokio::test]
async fn sighup_and_file_change_reload_and_an_invalid_file_keeps_the_running_config() {
    let up = MockUpstream::start().await;
    let base = standard_config(up.addr);
    let gw = GatewayProc::start(&base).await;
    assert_eq!(gw.config_generation().await, 1);
    let new_key = "gwk_added_by_reload_000000000000000000000000000000000000000000000";
    let ask = |key: &'static str| {
        let url = gw.url("/v1/chat/completions");
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .json(&chat_body("gpt-4o", false))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(ask(new_key).await, 401);

    // File change alone (the file is polled every second).
    let with_key = base.replacen(
        "      - digest: \"",
        &format!(
            "      - digest: \"{}\"\n      - digest: \"",
            digest(new_key)
        ),
        1,
    );
    gw.rewrite_config(&with_key);
    wait_for("file change reload", || async {
        gw.config_generation().await == 2
    })
    .await;
    assert_eq!(ask(new_key).await, 200);

    // An invalid file is refused; the running config keeps serving.
    gw.rewrite_config("providers: [ {name: BAD} ]\n");
    wait_for("invalid file refused", || async {
        gw.metrics()
            .await
            .contains(r#"gateway_config_reloads_total{outcome="error"} 1"#)
    })
    .await;
    assert_eq!(gw.config_generation().await, 2);
    assert_eq!(ask(new_key).await, 200);
    assert!(gw.logs().contains("config reload refused"), "{}", gw.logs());

    // SIGHUP applies the same file again on demand.
    gw.rewrite_config(&base);
    gw.signal("HUP");
    wait_for("sighup reload", || async {
        gw.config_generation().await >= 3
    })
    .await;
    assert_eq!(ask(new_key).await, 401);
    assert_eq!(ask(DEMO_KEY).await, 200);
}

async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not met within 10 s");
}

#[tokio::test]
async fn reload_under_concurrent_load_fails_no_request() {
    let up = MockUpstream::start().await;
    let base = standard_config(up.addr);
    let gw = Arc::new(GatewayProc::start(&base).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let stream = ok.load(Ordering::Relaxed) % 2 == 0;
                let r = c
                    .post(gw.url("/v1/chat/completions"))
                    .bearer_auth(DEMO_KEY)
                    .json(&chat_body("gpt-4o", stream))
                    .send()
                    .await;
                let good = match r {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Ten reloads while the load runs, alternating file change and SIGHUP.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        gw.rewrite_config(&format!("{base}\n# reload {i}\n"));
        gw.signal("HUP");
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let generation = gw.config_generation().await;
    assert!(
        generation >= 5,
        "only {generation} generations were applied"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reload"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little load: {}",
        ok.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let up = MockUpstream::start().await;
    let mut gw = GatewayProc::start(&standard_config(up.addr)).await;
    let url = gw.url("/v1/chat/completions");
    // A streamed response that takes ~1.2 s.
    let slow = spawn_slow_chat_stream(url, 250);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = reqwest::get(gw.admin_url("/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert!(ready == 503 || ready == 0, "readyz during drain: {ready}");
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("data: [DONE]"), "stream cut short: {text}");
    let code = gw.wait_exit(Duration::from_secs(4)).await;
    assert_eq!(code, Some(0), "gateway did not exit cleanly after draining");
    // Drained well before the 5 s grace period.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_reload_that_revokes_a_key_does_not_cut_its_in_flight_stream() {
    let up = MockUpstream::start().await;
    let base = standard_config(up.addr);
    let gw = GatewayProc::start(&base).await;
    // A stream that takes ~1.5 s, begun under a config where DEMO_KEY is valid.
    let url = gw.url("/v1/chat/completions");
    let slow = spawn_slow_chat_stream(url, 300);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Revoke the key while the stream is in flight.
    gw.rewrite_config(&base.replacen(
        "        prefix: \"gwk_demo\"",
        "        prefix: \"gwk_demo\"\n        revoked: true",
        1,
    ));
    gw.signal("HUP");
    wait_for("revocation applied", || async {
        gw.config_generation().await >= 2
    })
    .await;
    let (code, _) = error_code(
        post_json(
            &gw,
            "/v1/chat/completions",
            DEMO_KEY,
            &chat_body("gpt-4o", false),
        )
        .await,
    )
    .await;
    assert_eq!(code, 401, "the new config is live");
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        text.contains("data: [DONE]"),
        "the in-flight stream was cut: {text}"
    );
}
