//! Request guards and the transport edge: body cap, token bucket, slug validation, exact
//! probe paths, security headers, internal secret and ingest tokens, development mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{raw, Env};
use serde_json::json;

fn raw_request(method: &str, path: &str, token: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n{extra}\r\n{body}"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_rejected_413_with_or_without_content_length() {
    let env = Env::start_with(|c| c.guards.max_body_bytes = 1024).await;
    let s = &env.server;
    let admin = env.admin();
    let big = json!({"slug": "big", "display_name": "x".repeat(2000)});
    let (st, err) = s.post("/api/v1/orgs", &admin, big).await;
    assert_eq!(st, 413);
    assert_eq!(err["error"]["code"], "body_too_large");

    // Chunked, no Content-Length: cut off while reading.
    let chunk = "y".repeat(800);
    let body = format!("320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n");
    let (st, text) = raw(
        s.addr,
        &raw_request(
            "POST",
            "/api/v1/orgs",
            &admin,
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
            &body,
        ),
    )
    .await;
    assert_eq!(st, 413, "{text}");
    assert!(text.contains("body_too_large"));

    // A lying Content-Length larger than the cap is refused before reading.
    let (st, _) = raw(
        s.addr,
        &raw_request(
            "POST",
            "/api/v1/orgs",
            &admin,
            "Content-Type: application/json\r\nContent-Length: 10000000\r\n",
            "{}",
        ),
    )
    .await;
    assert_eq!(st, 413);

    // Under the cap is fine, and each refusal was audited.
    let (st, _) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "small"}))
        .await;
    assert_eq!(st, 201);
    let refused = s
        .audit(&admin)
        .await
        .into_iter()
        .filter(|r| r["status"] == 413)
        .count();
    assert_eq!(refused, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_token_bucket_answers_429_with_retry_after() {
    let env = Env::start_with(|c| {
        c.guards.rate_limit_burst = 3;
        // One token per 20 s: a slow machine cannot refill the bucket during the test.
        c.guards.rate_limit_per_second = 0.05;
    })
    .await;
    let s = &env.server;
    let admin = env.admin();
    for i in 0..3 {
        let (st, _) = s
            .post("/api/v1/orgs", &admin, json!({"slug": format!("o{i}")}))
            .await;
        assert_eq!(st, 201);
    }
    let resp = s
        .req(reqwest::Method::POST, "/api/v1/orgs", Some(&admin))
        .json(&json!({"slug": "o4"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "retry-after {retry}");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Reads are not limited.
    for _ in 0..10 {
        assert_eq!(s.get("/api/v1/orgs", &admin).await.0, 200);
    }
    assert!(s
        .metrics()
        .await
        .contains("controlplane_rate_limit_decisions_total{decision=\"limited\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slug_injection_in_paths_and_bodies_is_rejected_naming_the_rule() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    assert_eq!(
        s.post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
            .await
            .0,
        201
    );
    let long = "a".repeat(10_000);
    let cases: Vec<(String, &str)> = vec![
        ("/api/v1/orgs/../projects".into(), "lowercase letters"),
        ("/api/v1/orgs/%2e%2e/projects".into(), "lowercase letters"),
        ("/api/v1/orgs/%2e/projects".into(), "lowercase letters"),
        (
            "/api/v1/orgs/acme/projects/a%0d%0aSet-Cookie:x".into(),
            "lowercase letters",
        ),
        ("/api/v1/orgs/a:b".into(), "lowercase letters"),
        ("/api/v1/orgs/ACME".into(), "lowercase letters"),
        ("/api/v1/orgs/-acme".into(), "hyphen"),
        (format!("/api/v1/orgs/{long}"), "1 to 63 characters"),
    ];
    for (path, rule) in cases {
        let (st, text) = raw(s.addr, &raw_request("GET", &path, &admin, "", "")).await;
        assert_eq!(st, 400, "{path}: {text}");
        assert!(text.contains("invalid_slug"), "{path}: {text}");
        assert!(
            text.contains(rule),
            "{path} should name rule {rule:?}: {text}"
        );
        assert!(!text.contains("Set-Cookie: x"), "header injection: {text}");
    }
    for bad in ["..", "a:b", "A", "a b", "a\r\nb", "-x", "", long.as_str()] {
        let (st, err) = s.post("/api/v1/orgs", &admin, json!({"slug": bad})).await;
        assert_eq!(st, 400, "{bad:?}");
        assert_eq!(err["error"]["code"], "invalid_slug");
        assert!(err["error"]["message"].as_str().unwrap().contains("`slug`"));
    }
    let (st, err) = s
        .post(
            "/api/v1/orgs/acme/routes",
            &admin,
            json!({"slug": "r", "model": "m", "provider": "../etc"}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`provider`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_exact_probe_paths_skip_authentication() {
    let env = Env::start().await;
    let s = &env.server;
    for ok in ["/healthz", "/readyz", "/readyz?verbose=1"] {
        let (st, _) = raw(
            s.addr,
            format!("GET {ok} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(st, 200, "{ok}");
    }
    for tricky in [
        "/healthz/",
        "//healthz",
        "/HEALTHZ",
        "/healthz%2F",
        "/%68ealthz",
        "/api/v1/../healthz",
        "/healthz/../api/v1/orgs",
        "/api/v1/orgs",
        "/metrics",
        "/internal/v1/ingest/usage",
    ] {
        let (st, text) = raw(
            s.addr,
            format!("GET {tricky} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(st, 401, "{tricky} skipped authentication: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_strict_security_headers() {
    let env = Env::start_with(|c| c.server.served_over_tls = true).await;
    let s = &env.server;
    let admin = env.admin();
    let urls = [
        (format!("{}/api/v1/orgs", s.url), Some(admin.clone())),
        (format!("{}/api/v1/orgs", s.url), None),
        (format!("{}/api/v1/orgs/nope", s.url), Some(admin.clone())),
        (format!("{}/healthz", s.url), None),
        (format!("{}/metrics", s.admin_url), None),
        (format!("{}/readyz", s.admin_url), None),
    ];
    for (url, token) in urls {
        let mut r = s.http.get(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["x-frame-options"], "DENY", "{url}");
        assert_eq!(h["cache-control"], "no-store", "{url}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{url}");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        assert!(h["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="));
    }
    // Request ids: a well-formed inbound one is kept, anything else replaced.
    let resp = s
        .req(reqwest::Method::GET, "/api/v1/orgs", Some(&admin))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = s
        .req(reqwest::Method::GET, "/api/v1/orgs", Some(&admin))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 32);
    // Without TLS there is no HSTS.
    let plain = Env::start().await;
    let resp = plain
        .server
        .http
        .get(format!("{}/healthz", plain.server.url))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("strict-transport-security").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_health_readiness_and_metrics() {
    let env = Env::start().await;
    let s = &env.server;
    let get = |p: &str| s.http.get(format!("{}{p}", s.admin_url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let r = get("/readyz").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
    assert_eq!(s.get("/api/v1/orgs", &env.admin()).await.0, 200);
    let m = s.metrics().await;
    assert!(m.contains("controlplane_http_requests_total{method=\"GET\",route=\"/api/v1/orgs\",status=\"200\"}"), "{m}");
    assert!(
        m.contains("controlplane_jwks_fetches_total{outcome=\"ok\"} 1"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_calls_need_the_shared_secret_and_the_ingest_kind_token() {
    let dir = std::env::temp_dir().join(common::unique("cp-secrets-"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("{v}\n")).unwrap();
        gateway_schema::SecretRef::File(p)
    };
    let secret = write("internal", "internal-secret-value");
    let usage = write("usage", "usage-token-value");
    let cache = write("cache", "cache-token-value");
    let env = Env::start_with(|c| {
        c.internal.secret = Some(secret);
        c.internal.usage_ingest_token = Some(usage);
        c.internal.cache_hits_ingest_token = Some(cache);
    })
    .await;
    let s = &env.server;
    let call = |secret: Option<&str>, token: Option<&str>, kind: &str| {
        let mut r = s
            .http
            .post(format!("{}/internal/v1/ingest/{kind}", s.url))
            .json(&json!({"records": []}));
        if let Some(v) = secret {
            r = r.bearer_auth(v);
        }
        if let Some(t) = token {
            r = r.header("x-ingest-token", t);
        }
        common::send(r)
    };
    let (st, _) = call(None, Some("usage-token-value"), "usage").await;
    assert_eq!(st, 401);
    let (st, _) = call(
        Some("internal-secret-valuX"),
        Some("usage-token-value"),
        "usage",
    )
    .await;
    assert_eq!(st, 401);
    // A user's valid OIDC token is not the internal secret.
    let (st, _) = call(Some(&env.admin()), Some("usage-token-value"), "usage").await;
    assert_eq!(st, 401);
    let (st, _) = call(Some("internal-secret-value"), None, "usage").await;
    assert_eq!(st, 401);
    // The token of another ingest kind does not pass.
    let (st, _) = call(
        Some("internal-secret-value"),
        Some("cache-token-value"),
        "usage",
    )
    .await;
    assert_eq!(st, 401);
    // An unconfigured kind accepts nothing.
    let (st, _) = call(Some("internal-secret-value"), Some(""), "guardrail-blocks").await;
    assert_eq!(st, 401);
    let (st, v) = call(
        Some("internal-secret-value"),
        Some("usage-token-value"),
        "usage",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"stored": 0, "duplicates": 0}));
    let (st, v) = call(
        Some("internal-secret-value"),
        Some("cache-token-value"),
        "cache-hits",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"stored": 0, "duplicates": 0}));
    let reasons: Vec<String> = s
        .audit(&env.admin())
        .await
        .iter()
        .filter(|r| r["status"] == 401)
        .map(|r| r["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        reasons,
        [
            "bad_internal_secret",
            "bad_internal_secret",
            "bad_internal_secret",
            "bad_ingest_token",
            "bad_ingest_token",
            "bad_ingest_token"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_trusts_headers_only_on_loopback() {
    // Refuses a non-loopback address.
    let l = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = common::base_config(None, &common::temp_db());
    let err = controlplane::run(l, a, cfg, async {}).await.unwrap_err();
    assert!(
        matches!(err, controlplane::RunError::DevModeNotLoopback(_)),
        "{err}"
    );

    let server = common::TestServer::start(common::base_config(None, &common::temp_db())).await;
    let (st, _) = common::send(
        server
            .http
            .post(format!("{}/api/v1/orgs", server.url))
            .header("x-forwarded-email", "dev@example.com")
            .header("x-forwarded-groups", "platform-admins, other")
            .json(&json!({"slug": "dev"})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = common::send(server.http.get(format!("{}/api/v1/orgs", server.url))).await;
    assert_eq!(st, 401);
    // Break-glass never applies to a header anyone can set.
    let (st, _) = common::send(
        server
            .http
            .post(format!("{}/api/v1/orgs", server.url))
            .header("x-forwarded-email", "breakglass@example.com")
            .json(&json!({"slug": "bg"})),
    )
    .await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_is_served_over_tls_with_hsts_when_a_certificate_is_configured() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let env = Env::start_with(|c| {
        c.server.tls = Some(controlplane::config::TlsConfig {
            cert_path: fixtures.join("test-only-tls-cert.pem"),
            key_path: fixtures.join("test-only-tls-key.pem"),
        });
    })
    .await;
    let s = &env.server;
    assert!(s.url.starts_with("https://"));
    let resp = s
        .req(reqwest::Method::GET, "/api/v1/orgs", Some(&env.admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    // Over TLS the audit still sees the client's address.
    let resp = s
        .req(reqwest::Method::POST, "/api/v1/orgs", Some(&env.admin()))
        .header("x-request-id", "tls-create")
        .json(&json!({"slug": "secure"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let rec = s.audit_for(&env.admin(), "tls-create").await.unwrap();
    assert!(
        rec["source_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{rec}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let (st, _) = raw(
        s.addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_ne!(st, 200);

    // A missing key file stops the start with a clear error.
    let mut cfg = common::base_config(None, &common::temp_db());
    cfg.server.tls = Some(controlplane::config::TlsConfig {
        cert_path: fixtures.join("test-only-tls-cert.pem"),
        key_path: fixtures.join("missing-key.pem"),
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = controlplane::run(l, a, cfg, async {}).await.unwrap_err();
    assert!(err.to_string().contains("missing-key.pem"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start_with(|c| c.server.header_read_timeout_secs = 1).await;
    let mut conn = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut buf),
    )
    .await;
    assert!(
        res.is_ok(),
        "a connection with an unfinished head was held open"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A complete request on a fresh connection is still served.
    assert_eq!(env.server.get("/api/v1/orgs", &env.admin()).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_times_out_with_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start_with(|c| c.guards.body_read_timeout_secs = 1).await;
    let admin = env.admin();
    let mut conn = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/orgs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\n\
         Connection: close\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut buf),
    )
    .await
    .expect("a trickling body held the request open")
    .unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"));
}
