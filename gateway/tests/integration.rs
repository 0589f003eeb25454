//! Proxying behaviour as a client sees it: routing, key injection, streaming, pass-through.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

#[tokio::test]
async fn openai_chat_completion_is_routed_by_model_with_provider_key_injected() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let resp = client()
        .post(gw.url("/v1/chat/completions?trace=1"))
        .bearer_auth(DEMO_KEY)
        .header("x-request-id", "client-req-42")
        .header("openai-organization", "org-client")
        .header("cookie", "session=abc")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-req-42");
    assert_eq!(
        resp.headers()["x-upstream-request-id"],
        "req_mock_upstream_1"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from mock");

    let seen = up.last();
    assert_eq!(seen.path_and_query, "/v1/chat/completions?trace=1");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENAI_UPSTREAM_KEY}").as_str())
    );
    assert_eq!(seen.header("x-request-id"), Some("client-req-42"));
    assert_eq!(seen.header("openai-organization"), None);
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(seen.json()["model"], "gpt-4o");
    assert!(
        !format!("{:?}", seen.headers).contains(DEMO_KEY),
        "client key reached the upstream"
    );
}

#[tokio::test]
async fn alias_route_rewrites_the_upstream_model() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let body = serde_json::json!({"model": "fast", "messages": [{"role": "user", "content": "x"}], "temperature": 0.5});
    let resp = post_json(&gw, "/v1/chat/completions", DEMO_KEY, &body).await;
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.json()["model"], "gpt-4o-mini");
    assert_eq!(seen.json()["temperature"], 0.5);
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
}

#[tokio::test]
async fn anthropic_native_pass_through_injects_x_api_key_and_version() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let body = serde_json::json!({"model": "claude-3-5-sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let resp = client()
        .post(gw.url("/anthropic/v1/messages"))
        .header("x-api-key", DEMO_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from mock");
    let seen = up.last();
    assert_eq!(seen.path_and_query, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_UPSTREAM_KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("authorization"), None);

    // A client-chosen version is kept.
    let resp = client()
        .post(gw.url("/anthropic/v1/messages"))
        .header("x-api-key", DEMO_KEY)
        .header("anthropic-version", "2024-01-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().header("anthropic-version"), Some("2024-01-01"));
}

#[tokio::test]
async fn five_mib_body_is_routed_by_model_and_forwarded_whole() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let filler = "x".repeat(5 * 1024 * 1024);
    let body =
        serde_json::json!({"messages": [{"role": "user", "content": filler}], "model": "gpt-4o"});
    let bytes = serde_json::to_vec(&body).unwrap();
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .header("content-type", "application/json")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.last();
    assert_eq!(seen.body.len(), bytes.len());
    assert_eq!(seen.body.as_ref(), &bytes[..]);

    // The same through a chunked upload (no Content-Length).
    let chunks = chunked(&bytes, 100_000);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .body(chunks)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().body.as_ref(), &bytes[..]);
}

#[tokio::test]
async fn sse_chunks_reach_the_client_before_the_upstream_finishes() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    // 6 events, 300 ms apart: the whole stream takes 1.5 s upstream.
    let resp = slow_chat_stream(gw.url("/v1/chat/completions"), 300).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let start = Instant::now();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = start.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("Hel"), "{first:?}");
    let mut all = first.to_vec();
    while let Some(chunk) = stream.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    let done_at = start.elapsed();
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains("data: [DONE]"), "{text}");
    // The first event arrived long before the last one was even produced.
    assert!(
        done_at >= Duration::from_millis(1200),
        "stream finished too early: {done_at:?}"
    );
    assert!(
        done_at - first_at >= Duration::from_millis(1000),
        "first chunk came at {first_at:?}, end at {done_at:?}: buffered"
    );
}

#[tokio::test]
async fn anthropic_stream_passes_through_as_events() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let body = serde_json::json!({"model": "claude-3-5-sonnet", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = client()
        .post(gw.url("/anthropic/v1/messages"))
        .header("x-api-key", DEMO_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("event: message_start"), "{text}");
    assert!(text.contains("event: message_stop"), "{text}");
}

#[tokio::test]
async fn model_list_shows_only_allowed_exact_routes() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let v: serde_json::Value = get_json(&gw, "/v1/models", DEMO_KEY).await;
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["fast", "needs-key"]);
    let v: serde_json::Value = get_json(&gw, "/v1/models", RESTRICTED_KEY).await;
    assert_eq!(v["data"].as_array().map(Vec::len), Some(0));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().json()["model"], "gpt-4o");
}

#[tokio::test]
async fn metrics_count_requests_by_bounded_labels() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    for _ in 0..3 {
        let r = post_json(
            &gw,
            "/v1/chat/completions",
            DEMO_KEY,
            &chat_body("gpt-4o", false),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("nope")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let m = gw.metrics().await;
    assert!(m.contains(r#"gateway_requests_total{model="gpt-*",project="default/demo",provider="openai",status="200"} 3"#), "{m}");
    assert!(
        m.contains(r#"gateway_rejections_total{reason="invalid_api_key"} 1"#),
        "{m}"
    );
    assert!(
        m.contains("gateway_upstream_duration_seconds_count{provider=\"openai\"} 3"),
        "{m}"
    );
    assert!(m.contains("gateway_config_generation 1"), "{m}");
    let health = reqwest::get(gw.admin_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn tls_listener_serves_http1_and_http2_by_alpn() {
    let up = MockUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("gw-tls-{}", std::process::id()));
    let tls = tls_server_lines(&dir);
    let gw = GatewayProc::start_with(&standard_config(up.addr), &tls).await;
    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let url = format!("https://127.0.0.1:{}/v1/chat/completions", gw.port);
        // Blocking: off the test's runtime, which also serves the mock upstream.
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args([
                    "-sk",
                    flag,
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_version} %{http_code}",
                    "-H",
                ])
                .arg(format!("authorization: Bearer {DEMO_KEY}"))
                .args([
                    "-H",
                    "content-type: application/json",
                    "--data",
                    r#"{"model":"gpt-4o","messages":[]}"#,
                ])
                .arg(url)
                .output()
                .expect("curl is needed for the TLS test")
        })
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{want} 200"),
            "{flag}"
        );
    }
    assert_eq!(up.count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
