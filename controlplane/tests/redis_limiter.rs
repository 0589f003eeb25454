//! The global token bucket shared through a real Redis: replicas draw from one bucket, and a
//! slow or down Redis applies the configured failure mode and is counted.
//!
//! Needs Redis on 127.0.0.1:6379.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{MockIssuer, TestKey, TestServer};
use controlplane::config::{Config, FailureMode};
use gateway_schema::SecretRef;
use serde_json::json;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

async fn require_redis() {
    let ok = async {
        let client = redis::Client::open(REDIS_URL).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        let pong: String = redis::cmd("PING").query_async(&mut c).await.ok()?;
        Some(pong)
    };
    match tokio::time::timeout(Duration::from_secs(3), ok).await {
        Ok(Some(p)) if p == "PONG" => {}
        _ => panic!(
            "Redis is not reachable at {REDIS_URL}. Start it with: \
             redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\""
        ),
    }
}

fn url_ref(url: &str) -> SecretRef {
    let p = std::env::temp_dir().join(common::unique("cp-redisurl-"));
    std::fs::write(&p, url).unwrap();
    SecretRef::File(p)
}

fn limited_config(issuer: &MockIssuer, redis_url: &str, key: &str, mode: FailureMode) -> Config {
    let mut cfg = common::base_config(Some(&issuer.url), &common::temp_db());
    cfg.guards.rate_limit_burst = 4;
    cfg.guards.rate_limit_per_second = 0.01;
    cfg.guards.redis_url = Some(url_ref(redis_url));
    cfg.guards.redis_key = key.into();
    cfg.guards.redis_failure_mode = mode;
    cfg.guards.redis_timeout_ms = 200;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_draw_from_one_shared_bucket() {
    require_redis().await;
    let rsa = TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
    let issuer = MockIssuer::start(&[&rsa]).await;
    let key = common::unique("cp-test-bucket-");
    let a = TestServer::start(limited_config(
        &issuer,
        REDIS_URL,
        &key,
        FailureMode::Closed,
    ))
    .await;
    let b = TestServer::start(limited_config(
        &issuer,
        REDIS_URL,
        &key,
        FailureMode::Closed,
    ))
    .await;
    let admin = rsa.sign(&issuer.claims("root", &["platform-admins"]));
    let mut statuses = Vec::new();
    for i in 0..8 {
        let server = if i % 2 == 0 { &a } else { &b };
        let (st, _) = server
            .post("/api/v1/orgs", &admin, json!({"slug": format!("o{i}")}))
            .await;
        statuses.push(st);
    }
    assert_eq!(statuses, [201, 201, 201, 201, 429, 429, 429, 429]);
    let resp = a
        .req(reqwest::Method::POST, "/api/v1/orgs", Some(&admin))
        .json(&json!({"slug": "late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    // Each replica alone would have allowed 4: the bucket really is shared.
    assert!(a.metrics().await.contains("decision=\"limited\""));
    assert!(b.metrics().await.contains("decision=\"limited\""));
}

/// A TCP peer that accepts and never answers: a Redis that hangs.
async fn black_hole() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    format!("redis://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_or_slow_fails_closed_with_503_and_is_counted() {
    require_redis().await;
    let rsa = TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
    let issuer = MockIssuer::start(&[&rsa]).await;
    let admin = rsa.sign(&issuer.claims("root", &["platform-admins"]));
    // Nothing listens on port 1: down.
    let down = TestServer::start(limited_config(
        &issuer,
        "redis://127.0.0.1:1",
        "k",
        FailureMode::Closed,
    ))
    .await;
    let resp = down
        .req(reqwest::Method::POST, "/api/v1/orgs", Some(&admin))
        .json(&json!({"slug": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limiter_unavailable");
    assert!(down
        .metrics()
        .await
        .contains("controlplane_rate_limit_redis_failures_total{mode=\"closed\"} 1"));
    // Reads do not touch the limiter.
    assert_eq!(down.get("/api/v1/orgs", &admin).await.0, 200);

    // Accepts but never answers: slow, bounded by the timeout.
    let slow = TestServer::start(limited_config(
        &issuer,
        &black_hole().await,
        "k",
        FailureMode::Closed,
    ))
    .await;
    let started = std::time::Instant::now();
    let (st, _) = slow
        .post("/api/v1/orgs", &admin, json!({"slug": "y"}))
        .await;
    assert_eq!(st, 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "limiter did not time out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_when_configured_and_is_counted() {
    require_redis().await;
    let rsa = TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
    let issuer = MockIssuer::start(&[&rsa]).await;
    let admin = rsa.sign(&issuer.claims("root", &["platform-admins"]));
    let s = TestServer::start(limited_config(
        &issuer,
        "redis://127.0.0.1:1",
        "k",
        FailureMode::Open,
    ))
    .await;
    for i in 0..6 {
        let (st, _) = s
            .post("/api/v1/orgs", &admin, json!({"slug": format!("o{i}")}))
            .await;
        assert_eq!(st, 201, "fail-open must allow (burst is only 4)");
    }
    assert!(s
        .metrics()
        .await
        .contains("controlplane_rate_limit_redis_failures_total{mode=\"open\"} 6"));
}
