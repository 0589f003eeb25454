//! The exact-match response cache over real sockets: the real gateway binary, a mock provider
//! that counts what reaches it, and (for sharing) Redis and the real control plane.
//! Hit, miss and every bypass reason; canonical keys; TTL; what is stored and what is not;
//! tenants never sharing an entry; SSE replay; hits free of token and budget charges; two
//! gateways sharing entries through Redis; hit records stored exactly once and shown as
//! saved cost by the usage API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/cp.rs"]
mod cp;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;

const KEY_A: &str = "gwk_cache_key_a_000000000000000000000000000000000000000000000";
const KEY_B: &str = "gwk_cache_key_b_000000000000000000000000000000000000000000000";
const KEY_C: &str = "gwk_cache_key_c_000000000000000000000000000000000000000000000";
const KEY_ALLOW: &str = "gwk_cache_key_allow_000000000000000000000000000000000000000000";

/// Providers and routes, `projects` (YAML list items) of the implicit org, and `rest`.
fn config(upstream: std::net::SocketAddr, projects: &str, rest: &str) -> String {
    format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "http://{upstream}"
    api_key: "env:TEST_OPENAI_KEY"
    read_timeout_ms: 2000
routes:
  - model: "gpt-*"
    provider: openai
projects:
{projects}
{rest}"#
    )
}

/// One project `slug` with key `key` and the cache settings `cache` (YAML flow mapping).
fn project(slug: &str, key: &str, cache: &str, extra: &str) -> String {
    format!(
        "  - slug: {slug}\n    cache: {cache}\n    keys:\n      - digest: \"{}\"\n{extra}",
        digest(key)
    )
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_owned()
}

/// A body no earlier run has sent (entries in a shared Redis outlive a test run).
fn unique_chat(tag: &str) -> serde_json::Value {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    json!({"model": "gpt-4o", "temperature": 0,
           "messages": [{"role": "user", "content": format!("{tag} {nanos}")}]})
}

/// POSTs raw `body` bytes to `path` with `key`; returns (status, x-cache, bypass reason,
/// x-request-id, source id, body).
async fn send_raw(
    gw: &GatewayProc,
    path: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> Sent {
    let mut r = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body);
    for (n, v) in headers {
        r = r.header(*n, *v);
    }
    Sent::read(r.send().await.unwrap()).await
}

#[derive(Debug)]
struct Sent {
    status: u16,
    cache: String,
    bypass: String,
    request_id: String,
    source: String,
    content_type: String,
    remaining_tokens: String,
    body: String,
}

impl Sent {
    async fn read(r: reqwest::Response) -> Self {
        Self {
            status: r.status().as_u16(),
            cache: header(&r, "x-cache"),
            bypass: header(&r, "x-cache-bypass"),
            request_id: header(&r, "x-request-id"),
            source: header(&r, "x-cache-source-request-id"),
            content_type: header(&r, "content-type"),
            remaining_tokens: header(&r, "x-ratelimit-remaining-tokens"),
            body: r.text().await.unwrap(),
        }
    }
}

async fn send(gw: &GatewayProc, key: &str, body: &serde_json::Value) -> Sent {
    send_raw(gw, "/v1/chat/completions", key, body.to_string(), &[]).await
}

/// Sum of a metric's samples whose line contains every one of `labels`.
async fn metric_sum(gw: &GatewayProc, name: &str, labels: &[&str]) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|s| l.contains(s)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits for a miss to be stored (that happens just after its response is sent).
async fn wait_stored(gw: &GatewayProc, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(gw, "gateway_cache_stores_total", &["outcome=\"stored\""]).await < n {
        assert!(Instant::now() < deadline, "no store:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_identical_request_is_a_hit_whatever_its_key_order_and_whitespace() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr, &project("app", KEY_A, "{}", ""), "")).await;
    let first = send_raw(
        &gw,
        "/v1/chat/completions",
        KEY_A,
        r#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    )
    .await;
    assert_eq!((first.status, first.cache.as_str()), (200, "miss"));
    assert_eq!(first.source, "<none>");
    wait_stored(&gw, 1.0).await;
    let hit = send_raw(
        &gw,
        "/v1/chat/completions",
        KEY_A,
        "{ \"messages\" : [ { \"content\": \"h\\u0069\", \"role\": \"user\" } ],\n  \"temperature\": 0, \"model\": \"gpt-4o\" }",
        &[("x-request-id", "client-chosen-id-1")],
    )
    .await;
    assert_eq!((hit.status, hit.cache.as_str()), (200, "hit"));
    assert_eq!(hit.source, first.request_id);
    assert_eq!(hit.request_id, "client-chosen-id-1");
    assert_eq!(hit.body, first.body, "a hit replays the stored bytes");
    assert_eq!(hit.content_type, "application/json");
    assert_eq!(up.count(), 1, "a hit never reaches the provider");
    // A different value is a different entry.
    let other = send_raw(
        &gw,
        "/v1/chat/completions",
        KEY_A,
        r#"{"model":"gpt-4o","temperature":0,"messages":[{"role":"user","content":"hi!"}]}"#,
        &[],
    )
    .await;
    assert_eq!(other.cache, "miss");
    assert_eq!(up.count(), 2);
    assert_eq!(
        metric_sum(
            &gw,
            "gateway_cache_requests_total",
            &["project=\"default/app\"", "outcome=\"hit\""]
        )
        .await,
        1.0
    );
    assert!(metric_sum(&gw, "gateway_cache_bytes", &[]).await > 0.0);
}

#[tokio::test]
async fn every_bypass_reason_goes_upstream_and_says_why() {
    let up = MockUpstream::start().await;
    let projects = [
        project("app", KEY_A, "{}", "    endpoints: [stored_responses]\n"),
        project("lenient", KEY_ALLOW, "{allow: [temperature, n, tools]}", ""),
    ]
    .concat();
    let gw = GatewayProc::start(&config(up.addr, &projects, "")).await;
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let with = |field: &str, v: serde_json::Value| {
        let mut b = chat.clone();
        b[field] = v;
        b.to_string()
    };
    let tools = json!([{"type": "function", "function": {"name": "send_email"}}]);
    // (expected reason, path, body, extra headers)
    type Case<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (
            "no_cache_header",
            "/v1/chat/completions",
            chat.to_string(),
            vec![("cache-control", "no-cache")],
        ),
        (
            "no_cache_header",
            "/v1/chat/completions",
            chat.to_string(),
            vec![("cache-control", "max-age=0, no-store")],
        ),
        (
            "temperature",
            "/v1/chat/completions",
            with("temperature", json!(0.7)),
            vec![],
        ),
        ("n", "/v1/chat/completions", with("n", json!(2)), vec![]),
        (
            "tools",
            "/v1/chat/completions",
            with("tools", tools.clone()),
            vec![],
        ),
        (
            "not_json",
            "/openai/v1/chat/completions",
            "this is not JSON".to_owned(),
            vec![],
        ),
        (
            "stateful",
            "/v1/responses",
            json!({"model": "gpt-4o", "input": "hi", "store": true}).to_string(),
            vec![],
        ),
    ];
    for (reason, path, body, headers) in &cases {
        let before = up.count();
        for _ in 0..2 {
            let r = send_raw(&gw, path, KEY_A, body.clone(), headers).await;
            assert_eq!(r.status, 200, "{reason}: {}", r.body);
            assert_eq!((r.cache.as_str(), r.bypass.as_str()), ("bypass", *reason));
        }
        assert_eq!(up.count(), before + 2, "{reason}: both reach the provider");
    }
    // Not a POST.
    let r = client()
        .get(gw.url("/openai/v1/models"))
        .bearer_auth(KEY_A)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (header(&r, "x-cache"), header(&r, "x-cache-bypass")),
        ("bypass".into(), "method".into())
    );
    assert_eq!(
        metric_sum(
            &gw,
            "gateway_cache_bypasses_total",
            &["project=\"default/app\"", "reason=\"no_cache_header\""]
        )
        .await,
        4.0
    );

    // A project that allows them caches sampled, multi-choice and tool requests.
    for body in [
        with("temperature", json!(0.7)),
        with("n", json!(2)),
        with("tools", tools),
    ] {
        let a = send_raw(&gw, "/v1/chat/completions", KEY_ALLOW, body.clone(), &[]).await;
        assert_eq!(a.cache, "miss");
        wait_stored(
            &gw,
            metric_sum(&gw, "gateway_cache_stores_total", &["outcome=\"stored\""]).await,
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let b = send_raw(&gw, "/v1/chat/completions", KEY_ALLOW, body.clone(), &[]).await;
            if b.cache == "hit" {
                assert_eq!(b.source, a.request_id);
                break;
            }
            assert!(Instant::now() < deadline, "never a hit for {body}");
        }
    }
}

#[tokio::test]
async fn an_entry_expires_after_its_ttl() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&config(
        up.addr,
        &project("app", KEY_A, "{ttl_seconds: 1}", ""),
        "",
    ))
    .await;
    let body = unique_chat("ttl");
    assert_eq!(send(&gw, KEY_A, &body).await.cache, "miss");
    wait_stored(&gw, 1.0).await;
    assert_eq!(send(&gw, KEY_A, &body).await.cache, "hit");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(send(&gw, KEY_A, &body).await.cache, "miss");
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn only_complete_200_responses_within_the_entry_size_are_stored() {
    let up = MockUpstream::start().await;
    let projects = [
        project("app", KEY_A, "{}", ""),
        project("tiny", KEY_B, "{max_entry_bytes: 100}", ""),
    ]
    .concat();
    let gw = GatewayProc::start(&config(up.addr, &projects, "")).await;
    let body = unique_chat("status");

    // A provider error is not stored: the next identical request goes upstream.
    let err = send_raw(
        &gw,
        "/v1/chat/completions",
        KEY_A,
        body.to_string(),
        &[("x-mock-status", "500")],
    )
    .await;
    assert_eq!((err.status, err.cache.as_str()), (500, "miss"));
    let ok = send(&gw, KEY_A, &body).await;
    assert_eq!((ok.status, ok.cache.as_str()), (200, "miss"));
    wait_stored(&gw, 1.0).await;
    assert_eq!(send(&gw, KEY_A, &body).await.cache, "hit");
    assert_eq!(up.count(), 2);

    // A stream cut before its end is not stored.
    let stream = json!({"model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": "cut"}]});
    let cut = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .header("x-mock-cut-after", "2")
        .json(&stream)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&cut, "x-cache"), "miss");
    let _ = cut.text().await;
    let again = send(&gw, KEY_A, &stream).await;
    assert_eq!(again.cache, "miss", "the cut stream was not stored");

    // A response larger than the project's max_entry_bytes is not stored.
    let big = unique_chat("big");
    for _ in 0..2 {
        let r = send(&gw, KEY_B, &big).await;
        assert_eq!((r.status, r.cache.as_str()), (200, "miss"));
        assert!(r.body.len() > 100);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(
        &gw,
        "gateway_cache_stores_total",
        &["outcome=\"too_large\""],
    )
    .await
        < 2.0
    {
        assert!(Instant::now() < deadline, "too_large not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for outcome in ["not_200", "incomplete"] {
        assert!(
            metric_sum(
                &gw,
                "gateway_cache_stores_total",
                &[&format!("outcome=\"{outcome}\"")]
            )
            .await
                >= 1.0,
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn two_projects_and_two_orgs_sending_the_same_body_never_share_an_entry() {
    let up = MockUpstream::start().await;
    let projects = [
        project("app", KEY_A, "{}", ""),
        project("other", KEY_B, "{}", ""),
    ]
    .concat();
    // A second org with a project of the same slug, the same provider name and route.
    let org = format!(
        r#"orgs:
  - slug: rival
    providers:
      - name: openai
        kind: openai
        base_url: "http://{up}"
        api_key: "env:TEST_OPENAI_KEY"
    routes:
      - model: "gpt-*"
        provider: openai
    projects:
      - slug: app
        cache: {{}}
        keys:
          - digest: "{c}"
"#,
        up = up.addr,
        c = digest(KEY_C)
    );
    let gw = GatewayProc::start(&config(up.addr, &projects, &org)).await;
    let body = unique_chat("tenants");
    let mut first = Vec::new();
    for key in [KEY_A, KEY_B, KEY_C] {
        let r = send(&gw, key, &body).await;
        assert_eq!(r.cache, "miss", "each tenant misses its first time");
        first.push(r.request_id);
    }
    assert_eq!(up.count(), 3);
    wait_stored(&gw, 3.0).await;
    for (key, source) in [KEY_A, KEY_B, KEY_C].iter().zip(&first) {
        let r = send(&gw, key, &body).await;
        assert_eq!(r.cache, "hit");
        assert_eq!(&r.source, source, "each tenant replays its own response");
    }
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn a_completed_stream_is_replayed_as_the_same_sse_bytes() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr, &project("app", KEY_A, "{}", ""), "")).await;
    for (tag, asks_usage) in [("plain", false), ("usage", true)] {
        let mut body = json!({"model": "gpt-4o", "stream": true,
            "messages": [{"role": "user", "content": tag}]});
        if asks_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        let first = send(&gw, KEY_A, &body).await;
        assert_eq!(first.cache, "miss");
        assert!(first.body.ends_with("data: [DONE]\n\n"), "{}", first.body);
        assert_eq!(first.body.contains("\"usage\":{"), asks_usage);
        let deadline = Instant::now() + Duration::from_secs(5);
        let hit = loop {
            let r = send(&gw, KEY_A, &body).await;
            if r.cache == "hit" {
                break r;
            }
            assert!(Instant::now() < deadline, "never a hit");
        };
        assert_eq!(hit.content_type, "text/event-stream");
        assert_eq!(hit.body, first.body, "{tag}: the replay is byte for byte");
        assert_eq!(hit.source, first.request_id);
    }
}

#[tokio::test]
async fn a_hit_costs_nothing_against_token_limits_or_the_budget() {
    let up = MockUpstream::start().await;
    // Each miss uses 9 tokens (5 in, 4 out) and, at this price, 0.6 of the 1-cent budget.
    let projects = project(
        "app",
        KEY_A,
        "{}",
        "    tokens_per_minute: 20\n    monthly_budget_cents: 1\n",
    );
    let prices = "prices:\n  - model: \"gpt-4o*\"\n    input_per_mtok: 666666667\n    output_per_mtok: 666666667\n";
    let gw = GatewayProc::start(&config(up.addr, &projects, prices)).await;
    let body = unique_chat("free");
    let miss = send(&gw, KEY_A, &body).await;
    assert_eq!((miss.status, miss.cache.as_str()), (200, "miss"));
    wait_stored(&gw, 1.0).await;
    // Charged hits would spend the tokens (9 each) and the budget (0.6 cents each) at once.
    for _ in 0..5 {
        let hit = send(&gw, KEY_A, &body).await;
        assert_eq!(
            (hit.status, hit.cache.as_str()),
            (200, "hit"),
            "{}",
            hit.body
        );
        assert_eq!(
            hit.remaining_tokens, "11",
            "only the miss's 9 tokens are spent"
        );
    }
    assert_eq!(up.count(), 1);
    assert_eq!(
        metric_sum(&gw, "gateway_tokens_total", &["project=\"default/app\""]).await,
        9.0
    );
    // A second miss spends the budget; then even a hit is refused: admission (budget, rate
    // limits) comes before the cache, which needs the body the gateway has not read yet.
    let second = send(&gw, KEY_A, &unique_chat("spend")).await;
    assert_eq!((second.status, second.cache.as_str()), (200, "miss"));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(KEY_A)
            .json(&body)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert_eq!(error_code(r).await.1, "budget_exceeded");
            break;
        }
        assert!(Instant::now() < deadline, "the budget was never spent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `server:` lines for a Redis-shared cache on `url`.
fn redis_server(dir: &std::path::Path, url: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let f = dir.join("redis-url");
    std::fs::write(&f, url).unwrap();
    format!("  redis_url: \"file:{}\"\n", f.display())
}

#[tokio::test]
async fn two_gateways_share_entries_through_redis_and_a_dead_redis_is_only_a_miss() {
    assert!(
        std::net::TcpStream::connect("127.0.0.1:6379").is_ok(),
        "this test needs Redis on 127.0.0.1:6379: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\""
    );
    let up = MockUpstream::start().await;
    let snapshot = config(up.addr, &project("app", KEY_A, "{}", ""), "");
    let dir = std::env::temp_dir().join(format!("gw-cache-redis-{}", std::process::id()));
    let server = redis_server(&dir, "redis://127.0.0.1:6379");
    let gw1 = GatewayProc::start_with(&snapshot, &server).await;
    let gw2 = GatewayProc::start_with(&snapshot, &server).await;
    let body = unique_chat("shared");
    let first = send(&gw1, KEY_A, &body).await;
    assert_eq!(first.cache, "miss");
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_sum(
        &gw1,
        "gateway_cache_redis_total",
        &["op=\"set\"", "outcome=\"ok\""],
    )
    .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "never written to Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hit = send(&gw2, KEY_A, &body).await;
    assert_eq!(hit.cache, "hit", "the other gateway answers from Redis");
    assert_eq!(hit.source, first.request_id);
    assert_eq!(hit.body, first.body);
    assert_eq!(up.count(), 1);

    // A Redis that does not answer: requests are served (a miss), never an error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw3 = GatewayProc::start_with(&snapshot, &redis_server(&dir.join("dead"), &dead_url)).await;
    let body = unique_chat("dead-redis");
    let a = send(&gw3, KEY_A, &body).await;
    assert_eq!((a.status, a.cache.as_str()), (200, "miss"));
    wait_stored(&gw3, 1.0).await;
    let b = send(&gw3, KEY_A, &body).await;
    assert_eq!(
        (b.status, b.cache.as_str()),
        (200, "hit"),
        "its own memory still serves"
    );
    assert!(
        metric_sum(&gw3, "gateway_cache_redis_total", &["outcome=\"error\""]).await
            + metric_sum(&gw3, "gateway_cache_redis_total", &["outcome=\"timeout\""]).await
            >= 1.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn hits_are_stored_once_by_the_control_plane_and_shown_as_saved_cost() {
    let up = MockUpstream::start().await;
    let secrets = cp::Secrets::new();
    let cp = cp::ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    let policy = cp
        .put(
            "/api/v1/orgs/acme/policies/std",
            json!({"cache": {"ttl_seconds": 600}}),
        )
        .await;
    assert_eq!(
        policy["cache"],
        json!({"enabled": true, "ttl_seconds": 600, "max_entry_bytes": 1048576, "allow": []})
    );
    let (key, key_id) = cp.mint("acme", "app").await;
    let d = secrets.dir.display();
    let server_extra = format!(
        "  control_plane:\n    url: \"{url}\"\n    internal_secret: \"file:{d}/internal-secret\"\n    public_key: \"file:{pubkey}\"\n    last_known_good: \"{d}/cache-lkg.json\"\n    usage_ingest_token: \"file:{d}/usage-ingest-token\"\n    ingest:\n      spool_dir: \"{d}/spool\"\n      flush_ms: 100\n      batch_size: 100\n",
        url = cp.url,
        pubkey = secrets.pub_file.display(),
    );
    // The cache-hit token comes from the command line, as an operator would pass it.
    let args = vec![
        "--control-plane".to_owned(),
        cp.url.clone(),
        "--cache-hits-ingest-token".to_owned(),
        format!("file:{}", secrets.cache_hits_token_file.display()),
    ];
    let gw = GatewayProc::launch("", &server_extra, &args, true).await;
    let body = json!({"model": "gpt-4o", "temperature": 0,
        "messages": [{"role": "user", "content": "what did the cache save?"}]});
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = send(&gw, &key, &body).await;
        if r.status == 200 && r.cache == "miss" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never came on: {r:?}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_stored(&gw, 1.0).await;
    let mut hit_ids = Vec::new();
    for i in 0..3 {
        let id = format!("cache-hit-{i}");
        let r = send_raw(
            &gw,
            "/v1/chat/completions",
            &key,
            body.to_string(),
            &[("x-request-id", &id)],
        )
        .await;
        assert_eq!(r.cache, "hit");
        hit_ids.push(id);
    }
    let usage = || async {
        let (st, v) = cp.get("/api/v1/orgs/acme/usage").await;
        assert_eq!(st, 200, "{v}");
        v["items"][0].clone()
    };
    cp::eventually(
        Duration::from_secs(15),
        "three hits and one request stored",
        || async {
            let u = usage().await;
            u["cache_hits"] == 3 && u["requests"] == 1
        },
    )
    .await;
    // Exactly: the stored response used 5 in and 4 out; gpt-4o at 2.50/10.00 per million
    // tokens costs 52,500,000 pico-units a time.
    let u = usage().await;
    assert_eq!(u["requests"], 1, "hits are not usage: {u}");
    assert_eq!(u["cost_pico"], 52_500_000_i64);
    assert_eq!(
        (
            u["saved_input_tokens"].as_i64(),
            u["saved_output_tokens"].as_i64()
        ),
        (Some(15), Some(12))
    );
    assert_eq!(u["saved_cost_pico"], 157_500_000_i64);
    assert_eq!(u["saved_cost_micros"], 157);
    let (_, by_project) = cp.get("/api/v1/orgs/acme/usage?group_by=project").await;
    assert_eq!(by_project["items"][0]["project"], "app");
    assert_eq!(by_project["items"][0]["cache_hits"], 3);

    // Each hit's record, exactly once: a batch delivered twice (a retry after a lost
    // answer) stores nothing new.
    let record = |request_id: &str| {
        json!({"id": format!("replayed-{request_id}"), "request_id": request_id,
            "source_request_id": "src", "at_ms": 1, "org": "acme", "project": "app",
            "key_id": key_id, "provider": "openai", "route": "gpt-*", "model": "gpt-4o",
            "input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "cost_saved_pico": 1})
    };
    let batch = json!({"records": [record("x1"), record("x2")]});
    let post = || {
        cp.http
            .post(format!("{}/internal/v1/ingest/cache-hits", cp.url))
            .bearer_auth(cp::INTERNAL_SECRET)
            .header("x-ingest-token", cp::CACHE_HITS_INGEST_TOKEN)
            .json(&batch)
            .send()
    };
    let first: serde_json::Value = post().await.unwrap().json().await.unwrap();
    assert_eq!(first, json!({"stored": 2, "duplicates": 0}));
    let again: serde_json::Value = post().await.unwrap().json().await.unwrap();
    assert_eq!(again, json!({"stored": 0, "duplicates": 2}));
    // An invalid record is refused with its field named.
    let mut bad_record = record("x3");
    bad_record["source_request_id"] = json!("bad id");
    let bad = cp
        .http
        .post(format!("{}/internal/v1/ingest/cache-hits", cp.url))
        .bearer_auth(cp::INTERNAL_SECRET)
        .header("x-ingest-token", cp::CACHE_HITS_INGEST_TOKEN)
        .json(&json!({"records": [bad_record]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let v: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_record");
    assert_eq!(usage().await["cache_hits"], 5);
    assert_eq!(hit_ids.len(), 3);
}
