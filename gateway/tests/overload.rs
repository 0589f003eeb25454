//! Overload protection over real sockets: the request-body memory budget (503 `overloaded`
//! before a byte of body is read, released however a request ends), in-flight caps per
//! project and per gateway (429 `concurrency_limit`, streams counted until they end), and
//! fairness: one tenant at its limits does not take the others or the admin port down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUDGET: u64 = 1_000_000;

/// The standard config plus a second project (`other`) and `demo` capped at 2 in flight.
fn config(upstream: std::net::SocketAddr) -> String {
    let base = standard_config(upstream);
    base.replace("  - slug: demo\n", "  - slug: demo\n    max_in_flight: 2\n")
        + &format!(
            "  - slug: other\n    keys:\n      - digest: \"{}\"\n",
            digest(OTHER_KEY)
        )
}

const OTHER_KEY: &str = "gwk_other_project_key_for_overload_tests_000000000000000000000";

async fn gateway(upstream: std::net::SocketAddr, extra: &str) -> GatewayProc {
    GatewayProc::start_with(
        &config(upstream),
        &format!("  body_memory_budget_bytes: {BUDGET}\n  body_read_timeout_seconds: 1\n{extra}"),
    )
    .await
}

async fn metric(gw: &GatewayProc, name: &str) -> i64 {
    gw.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

async fn budget_used(gw: &GatewayProc) -> i64 {
    metric(gw, "gateway_body_budget_used_bytes").await
}

/// Opens a connection that announces `len` bytes of body and sends only `sent` of them.
async fn half_sent_body(port: u16, key: &str, len: usize, sent: usize) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    s
}

/// Waits until the mock provider has received `n` requests (streams are then in flight).
async fn wait_seen(up: &MockUpstream, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the provider saw {} of {n} requests",
            up.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_used(gw: &GatewayProc, what: &str, pred: impl Fn(i64) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let used = budget_used(gw).await;
        if pred(used) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: budget in use is {used}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_body_the_budget_cannot_cover_is_refused_503_at_once_without_reading_it() {
    let up = MockUpstream::start().await;
    let gw = gateway(up.addr, "").await;
    assert_eq!(
        metric(&gw, "gateway_body_budget_limit_bytes").await,
        BUDGET as i64
    );
    // 800 kB announced and held half-sent: reserved in full before reading.
    let hog = half_sent_body(gw.port, DEMO_KEY, 800_000, 1000).await;
    wait_used(&gw, "the declared length is reserved", |u| u == 800_000).await;

    // 300 kB more does not fit: 503 overloaded, Retry-After, connection closed, nothing read.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {OTHER_KEY}\r\ncontent-length: 300000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.contains(r#""code":"overloaded""#), "{text}");

    // A small body still fits, for any project.
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        OTHER_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 1, "only the small request reached the provider");
    let m = gw.metrics().await;
    assert!(
        m.contains(
            r#"gateway_sheds_total{project="default/other",reason="overloaded",scope="gateway"} 1"#
        ),
        "{m}"
    );

    // The hog goes away: its reservation comes back.
    drop(hog);
    wait_used(&gw, "a vanished client's reservation is released", |u| {
        u == 0
    })
    .await;
}

#[tokio::test]
async fn the_budget_returns_to_zero_however_requests_end() {
    let up = MockUpstream::start().await;
    let gw = gateway(up.addr, "").await;
    let body = serde_json::json!({"model": "gpt-4o", "messages": [], "pad": "x".repeat(50_000)});
    // Success.
    let ok = post_json(&gw, "/v1/chat/completions", DEMO_KEY, &body).await;
    assert_eq!(ok.status(), 200);
    // An upstream error.
    let err = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .header("x-mock-status", "500")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 500);
    // A gateway refusal after the body was read (unknown model).
    let unknown = post_json(
        &gw,
        "/v1/chat/completions",
        DEMO_KEY,
        &serde_json::json!({"model": "nope", "pad": "x".repeat(50_000)}),
    )
    .await;
    assert_eq!(unknown.status(), 404);
    // A chunked body, grown chunk by chunk.
    let chunked_resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .header("content-type", "application/json")
        .body(chunked(&serde_json::to_vec(&body).unwrap(), 4096))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked_resp.status(), 200);
    // A body that never finishes: 408 after the body-read timeout.
    let mut slow = half_sent_body(gw.port, DEMO_KEY, 200_000, 10).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).contains("408"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // A client that vanishes mid-body.
    let gone = half_sent_body(gw.port, DEMO_KEY, 300_000, 100_000).await;
    wait_used(&gw, "the vanishing client's body is reserved", |u| {
        u >= 300_000
    })
    .await;
    drop(gone);
    // A stream the client abandons half-way.
    let mut stream = slow_chat_stream(gw.url("/v1/chat/completions"), 200).await;
    let _ = stream.chunk().await;
    drop(stream);
    wait_used(&gw, "every reservation is released", |u| u == 0).await;
}

#[tokio::test]
async fn a_project_over_its_in_flight_cap_gets_429_and_streams_count_until_they_end() {
    let up = MockUpstream::start().await;
    let gw = gateway(up.addr, "").await;
    let url = gw.url("/v1/chat/completions");
    let s1 = spawn_slow_chat_stream(url.clone(), 300);
    let s2 = spawn_slow_chat_stream(url.clone(), 300);
    // Both streams are in flight once the provider has seen them.
    wait_seen(&up, 2).await;
    let third = post_json(
        &gw,
        "/v1/chat/completions",
        DEMO_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(third.headers()["retry-after"], "1");
    assert_eq!(error_code(third).await, (429, "concurrency_limit".into()));
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"gateway_project_in_flight{project="default/demo"} 2"#),
        "{m}"
    );
    // Another project is not affected.
    let other = post_json(
        &gw,
        "/v1/chat/completions",
        OTHER_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(other.status(), 200);
    // When the streams end, the slots come back.
    assert_eq!(s1.await.unwrap().0, 200);
    assert_eq!(s2.await.unwrap().0, 200);
    let again = post_json(
        &gw,
        "/v1/chat/completions",
        DEMO_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn the_gateway_wide_in_flight_cap_refuses_the_excess() {
    let up = MockUpstream::start().await;
    let gw = gateway(up.addr, "  max_in_flight: 1\n").await;
    let url = gw.url("/v1/chat/completions");
    let s1 = spawn_slow_chat_stream(url, 300);
    wait_seen(&up, 1).await;
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        OTHER_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(error_code(r).await, (429, "concurrency_limit".into()));
    assert_eq!(s1.await.unwrap().0, 200);
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"gateway_sheds_total{project="default/other",reason="concurrency_limit",scope="gateway"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn one_tenant_at_its_limits_does_not_take_the_others_or_the_admin_port_down() {
    let up = MockUpstream::start().await;
    let gw = gateway(up.addr, "").await;
    // Tenant `demo` fills most of the body budget with a half-sent body and its in-flight cap
    // (2) with that and a slow stream, and keeps sending.
    let big = half_sent_body(gw.port, DEMO_KEY, 900_000, 10).await;
    wait_used(&gw, "the big body is reserved", |u| u == 900_000).await;
    let stream = spawn_slow_chat_stream(gw.url("/v1/chat/completions"), 300);
    wait_seen(&up, 1).await;
    let shed = post_json(
        &gw,
        "/v1/chat/completions",
        DEMO_KEY,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(error_code(shed).await, (429, "concurrency_limit".into()));
    // Meanwhile the other tenant keeps being served, and the admin port answers.
    for _ in 0..20 {
        let r = post_json(
            &gw,
            "/v1/chat/completions",
            OTHER_KEY,
            &chat_body("gpt-4o", false),
        )
        .await;
        assert_eq!(r.status(), 200);
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = reqwest::get(gw.admin_url(path)).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    drop(big);
    assert_eq!(stream.await.unwrap().0, 200);
    wait_used(&gw, "everything is released", |u| u == 0).await;
}
