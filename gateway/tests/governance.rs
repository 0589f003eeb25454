//! Hot-path governance over real sockets: request and token limits per key and per project
//! (with their headers), usage counted from JSON and SSE in OpenAI's and Anthropic's shapes,
//! and monthly budgets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/cp.rs"]
mod cp;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

const KEY_A: &str = "gwk_governance_key_a_00000000000000000000000000000000000000000";
const KEY_B: &str = "gwk_governance_key_b_00000000000000000000000000000000000000000";
const KEY_C: &str = "gwk_governance_key_c_00000000000000000000000000000000000000000";

/// Providers and routes of the standard config, with `projects` (YAML list items) instead.
fn config_with(upstream: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "http://{upstream}"
    api_key: "env:TEST_OPENAI_KEY"
    read_timeout_ms: 2000
  - name: anthropic
    kind: anthropic
    base_url: "http://{upstream}"
    api_key: "env:TEST_ANTHROPIC_KEY"
    read_timeout_ms: 2000
routes:
  - model: "gpt-*"
    provider: openai
  - model: "text-embedding-*"
    provider: openai
  - model: "claude-*"
    provider: anthropic
{extra}"#
    )
}

/// Limits only behave predictably within one window: start a test early in a minute.
async fn wait_for_fresh_window() {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if secs % 60 >= 45 {
        tokio::time::sleep(Duration::from_secs(61 - secs % 60)).await;
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
        .to_owned()
}

async fn chat(gw: &GatewayProc, key: &str, model: &str) -> reqwest::Response {
    post_json(gw, "/v1/chat/completions", key, &chat_body(model, false)).await
}

/// The access-log line of `request_id`, waiting for it (it is written after the response).
async fn access_line(gw: &GatewayProc, request_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for line in gw.logs().lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if v["target"] == "access" && v["request_id"] == request_id {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no access line for {request_id}:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sum of a counter's samples whose line contains every one of `labels`.
async fn metric_sum(gw: &GatewayProc, name: &str, labels: &[&str]) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|s| l.contains(s)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until `name{labels}` reaches `want` (charges happen after the response is sent).
async fn wait_metric(gw: &GatewayProc, name: &str, labels: &[&str], want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = metric_sum(gw, name, labels).await;
        if got >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} stayed at {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn project_request_limit_admits_exactly_the_limit_then_429_with_headers() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let projects = format!(
        "projects:\n  - slug: limited\n    requests_per_minute: 3\n    keys:\n      - digest: \"{}\"\n      - digest: \"{}\"\n",
        digest(KEY_A),
        digest(KEY_B)
    );
    let gw = GatewayProc::start(&config_with(up.addr, &projects)).await;
    for (i, key) in [KEY_A, KEY_B, KEY_A].iter().enumerate() {
        let r = chat(&gw, key, "gpt-4o").await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-requests"),
            (2 - i).to_string()
        );
        let reset = header(&r, "x-ratelimit-reset-requests");
        assert!(reset.ends_with('s'), "{reset}");
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "<none>");
    }
    let r = chat(&gw, KEY_B, "gpt-4o").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    let retry_ms: u64 = header(&r, "retry-after-ms").parse().unwrap();
    assert!(retry_ms <= 60_000 && retry_ms.div_ceil(1000) == retry);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(header(&r, "content-type"), "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this project: 3 requests per minute"));
    assert_eq!(
        up.count(),
        3,
        "the refused request never reached the provider"
    );
    assert_eq!(
        metric_sum(
            &gw,
            "gateway_limit_rejections_total",
            &["scope=\"project\"", "kind=\"requests\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn key_request_limit_applies_to_that_key_alone() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let projects = format!(
        "projects:\n  - slug: team\n    requests_per_minute: 100\n    keys:\n      - digest: \"{}\"\n        requests_per_minute: 2\n      - digest: \"{}\"\n",
        digest(KEY_A),
        digest(KEY_B)
    );
    let gw = GatewayProc::start(&config_with(up.addr, &projects)).await;
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    // The tighter of the two limits is the one reported.
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "1");
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 429);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this API key: 2 requests"));
    // The other key of the project is not limited by it; the project counted 3 admitted (the
    // refused one was given back), so 97 remain after this one.
    let r = chat(&gw, KEY_B, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "100");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "97");
    assert_eq!(
        metric_sum(
            &gw,
            "gateway_limit_rejections_total",
            &["scope=\"key\"", "kind=\"requests\""]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn limit_counters_survive_a_config_reload() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let projects = |extra: &str| {
        format!(
            "projects:\n{extra}  - slug: steady\n    requests_per_minute: 2\n    keys:\n      - digest: \"{}\"\n",
            digest(KEY_A)
        )
    };
    let gw = GatewayProc::start(&config_with(up.addr, &projects(""))).await;
    assert_eq!(chat(&gw, KEY_A, "gpt-4o").await.status(), 200);
    assert_eq!(chat(&gw, KEY_A, "gpt-4o").await.status(), 200);
    // A reload that adds a project before this one (its index changes) keeps its count.
    let before = gw.config_generation().await;
    gw.rewrite_config(&config_with(up.addr, &projects("  - slug: newcomer\n")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.config_generation().await <= before {
        assert!(Instant::now() < deadline, "no reload:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(error_code(r).await, (429, "rate_limit_exceeded".to_owned()));
}

#[tokio::test]
async fn token_limits_refuse_once_the_window_is_spent_per_project_and_per_key() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let projects = format!(
        "projects:\n  - slug: tokens\n    tokens_per_minute: 20\n    keys:\n      - digest: \"{}\"\n  - slug: keyed\n    keys:\n      - digest: \"{}\"\n        tokens_per_minute: 9\n",
        digest(KEY_A),
        digest(KEY_C)
    );
    let gw = GatewayProc::start(&config_with(up.addr, &projects)).await;
    // Each response uses 9 tokens (5 in, 4 out). 0, 9, 18 used: admitted; 27 used: refused.
    for (i, remaining) in [20, 11, 2].iter().enumerate() {
        let r = chat(&gw, KEY_A, "gpt-4o").await;
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(header(&r, "x-ratelimit-limit-tokens"), "20");
        assert_eq!(
            header(&r, "x-ratelimit-remaining-tokens"),
            remaining.to_string()
        );
        assert_eq!(header(&r, "x-ratelimit-limit-requests"), "<none>");
        wait_metric(
            &gw,
            "gateway_tokens_total",
            &["default/tokens", "kind=\"output\""],
            4.0 * (i as f64 + 1.0),
        )
        .await;
    }
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-ratelimit-remaining-tokens"), "0");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "tokens");

    // Per key: exactly at the limit (9 of 9) refuses the next one.
    let r = chat(&gw, KEY_C, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-tokens"), "9");
    wait_metric(
        &gw,
        "gateway_tokens_total",
        &["default/keyed", "kind=\"output\""],
        4.0,
    )
    .await;
    let r = chat(&gw, KEY_C, "gpt-4o").await;
    assert_eq!(r.status(), 429);
    let v: serde_json::Value = r.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("this API key: 9 tokens"));
    assert_eq!(
        metric_sum(&gw, "gateway_limit_rejections_total", &["kind=\"tokens\""]).await,
        2.0
    );
}

fn usage_config(upstream: std::net::SocketAddr) -> String {
    config_with(
        upstream,
        &format!(
            "projects:\n  - slug: metered\n    keys:\n      - digest: \"{}\"\n",
            digest(KEY_A)
        ),
    )
}

/// Sends `body` to `path` with extra headers and a chosen request id; returns the response.
async fn send(
    gw: &GatewayProc,
    path: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: serde_json::Value,
) -> reqwest::Response {
    let mut req = client()
        .post(gw.url(path))
        .bearer_auth(KEY_A)
        .header("x-request-id", id)
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// `(input, output, cache_read, cache_write, cost_pico, complete)` from the access line.
async fn counted(gw: &GatewayProc, id: &str) -> (u64, u64, u64, u64, u64, bool) {
    let v = access_line(gw, id).await;
    let n = |f: &str| v[f].as_u64().unwrap_or_else(|| panic!("no {f} in {v}"));
    (
        n("input_tokens"),
        n("output_tokens"),
        n("cache_read_tokens"),
        n("cache_write_tokens"),
        n("cost_pico"),
        v["complete"]
            .as_bool()
            .unwrap_or_else(|| panic!("no complete in {v}")),
    )
}

#[tokio::test]
async fn openai_json_usage_is_counted_and_priced_exactly() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&usage_config(up.addr)).await;
    let r = send(
        &gw,
        "/v1/chat/completions",
        "u-json",
        &[("x-mock-cached-tokens", "10")],
        chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(r.status(), 200);
    // No limit on this project: no rate-limit headers.
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "<none>");
    let _ = r.bytes().await.unwrap();
    // gpt-4o: 2.50 in, 10.00 out, 1.25 cached per million: 5×2.5e6 + 4×10e6 + 10×1.25e6.
    assert_eq!(
        counted(&gw, "u-json").await,
        (5, 4, 10, 0, 65_000_000, true)
    );
    assert_eq!(up.last().header("accept-encoding"), Some("identity"));

    let r = send(
        &gw,
        "/v1/embeddings",
        "u-emb",
        &[("x-mock-input-tokens", "8")],
        serde_json::json!({"model": "text-embedding-3-small", "input": "hi"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    assert_eq!(counted(&gw, "u-emb").await, (8, 0, 0, 0, 160_000, true));

    let r = send(
        &gw,
        "/v1/responses",
        "u-resp",
        &[("x-mock-cached-tokens", "2")],
        serde_json::json!({"model": "gpt-4o-mini", "input": "hi"}),
    )
    .await;
    let _ = r.bytes().await.unwrap();
    assert_eq!(
        counted(&gw, "u-resp").await,
        (5, 4, 2, 0, 5 * 150_000 + 4 * 600_000 + 2 * 75_000, true)
    );

    wait_metric(
        &gw,
        "gateway_tokens_total",
        &[
            "project=\"default/metered\"",
            "provider=\"openai\"",
            "model=\"gpt-*\"",
            "kind=\"input\"",
        ],
        10.0,
    )
    .await;
}

#[tokio::test]
async fn openai_stream_without_include_usage_is_counted_and_the_client_sees_no_extra_chunk() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&usage_config(up.addr)).await;
    let r = send(
        &gw,
        "/v1/chat/completions",
        "s-no",
        &[],
        chat_body("gpt-4o", true),
    )
    .await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    // The chunks a client that did not ask for usage expects, and nothing else (each carries
    // `"usage":null`, as OpenAI's do once usage is asked for).
    assert_eq!(text.matches("data: ").count(), 6, "{text}");
    assert_eq!(text.matches("\"usage\":null").count(), 5, "{text}");
    assert!(!text.contains("prompt_tokens"), "{text}");
    assert!(!text.contains("\"choices\":[]"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // The provider was asked for usage.
    assert_eq!(
        up.last().json()["stream_options"],
        serde_json::json!({"include_usage": true})
    );
    assert_eq!(counted(&gw, "s-no").await, (5, 4, 0, 0, 52_500_000, true));

    // A client that asked gets the usage chunk, and its body goes upstream unchanged.
    let mut body = chat_body("gpt-4o", true);
    body["stream_options"] = serde_json::json!({"include_usage": true});
    let r = send(&gw, "/v1/chat/completions", "s-yes", &[], body.clone()).await;
    let text = r.text().await.unwrap();
    assert!(text.contains("\"choices\":[]"), "{text}");
    assert!(text.contains("\"prompt_tokens\":5"), "{text}");
    assert_eq!(up.last().json(), body);
    assert_eq!(counted(&gw, "s-yes").await, (5, 4, 0, 0, 52_500_000, true));

    // The responses API streams its usage in `response.completed`.
    let r = send(
        &gw,
        "/v1/responses",
        "s-resp",
        &[],
        serde_json::json!({"model": "gpt-4o", "input": "hi", "stream": true}),
    )
    .await;
    let _ = r.text().await.unwrap();
    assert_eq!(counted(&gw, "s-resp").await, (5, 4, 0, 0, 52_500_000, true));
}

#[tokio::test]
async fn anthropic_json_and_stream_usage_count_cache_reads_and_writes() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&usage_config(up.addr)).await;
    let cache = [
        ("x-mock-cached-tokens", "100"),
        ("x-mock-cache-write-tokens", "30"),
    ];
    let body = serde_json::json!({"model": "claude-3-5-haiku-latest", "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}]});
    let r = send(
        &gw,
        "/anthropic/v1/messages",
        "a-json",
        &cache,
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await.unwrap();
    // claude-3-5-haiku: 0.80 in, 4.00 out, 0.08 cache read, 1.00 cache write per million.
    let cost = 5 * 800_000 + 4 * 4_000_000 + 100 * 80_000 + 30 * 1_000_000;
    assert_eq!(counted(&gw, "a-json").await, (5, 4, 100, 30, cost, true));

    let mut stream = body.clone();
    stream["stream"] = serde_json::json!(true);
    let r = send(
        &gw,
        "/anthropic/v1/messages",
        "a-sse",
        &cache,
        stream.clone(),
    )
    .await;
    let text = r.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "{text}");
    assert_eq!(counted(&gw, "a-sse").await, (5, 4, 100, 30, cost, true));
    // Anthropic bodies are never rewritten.
    assert_eq!(up.last().json(), stream);
}

#[tokio::test]
async fn gzip_responses_are_counted_and_reach_the_client_as_sent() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&usage_config(up.addr)).await;
    let gz = [("x-mock-gzip", "1")];
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .header("x-request-id", "gz-json")
        .header("x-mock-gzip", "1")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-encoding"), "gzip");
    let raw = r.bytes().await.unwrap();
    assert_eq!(
        &raw[..2],
        &[0x1f, 0x8b],
        "the client got the gzip bytes the server sent"
    );
    assert_eq!(
        counted(&gw, "gz-json").await,
        (5, 4, 0, 0, 52_500_000, true)
    );

    // A compressed stream is counted too (the usage chunk cannot be removed from it).
    let r = send(&gw, "/anthropic/v1/messages", "gz-sse", &gz,
        serde_json::json!({"model": "claude-3-5-haiku-latest", "stream": true, "max_tokens": 8, "messages": []})).await;
    let _ = r.bytes().await.unwrap();
    assert_eq!(
        counted(&gw, "gz-sse").await,
        (5, 4, 0, 0, 5 * 800_000 + 4 * 4_000_000, true)
    );
}

#[tokio::test]
async fn a_stream_cut_short_is_charged_for_what_was_counted_and_marked_incomplete() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&usage_config(up.addr)).await;
    // message_start (5 in, 1 out), content_block_start, one delta, then the connection breaks.
    let r = send(&gw, "/anthropic/v1/messages", "cut-a", &[("x-mock-cut-after", "3")],
        serde_json::json!({"model": "claude-3-5-haiku-latest", "stream": true, "max_tokens": 8, "messages": []})).await;
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await; // the body ends in an error: the upstream broke
    let (input, output, _, _, cost, complete) = counted(&gw, "cut-a").await;
    assert_eq!((input, output, complete), (5, 1, false));
    assert_eq!(cost, 5 * 800_000 + 4_000_000);

    // An OpenAI stream cut before its usage chunk has nothing counted, and says so.
    let r = send(
        &gw,
        "/v1/chat/completions",
        "cut-o",
        &[("x-mock-cut-after", "2")],
        chat_body("gpt-4o", true),
    )
    .await;
    let _ = r.bytes().await;
    let v = access_line(&gw, "cut-o").await;
    assert_eq!(v["complete"], false, "{v}");
    assert!(v["input_tokens"].is_null(), "{v}");
    wait_metric(
        &gw,
        "gateway_incomplete_responses_total",
        &["provider=\"openai\""],
        1.0,
    )
    .await;
    wait_metric(
        &gw,
        "gateway_incomplete_responses_total",
        &["provider=\"anthropic\""],
        1.0,
    )
    .await;
}

#[tokio::test]
async fn budget_the_crossing_request_succeeds_the_next_gets_429_budget_exceeded() {
    let up = MockUpstream::start().await;
    // One cent a month; gpt-4o priced at 1,000 per million in and out: 9 tokens cost 0.9 cent.
    let extra = format!(
        "prices:\n  - model: \"gpt-4o\"\n    input_per_mtok: 1000000000\n    output_per_mtok: 1000000000\nprojects:\n  - slug: frugal\n    monthly_budget_cents: 1\n    keys:\n      - digest: \"{}\"\n",
        digest(KEY_A)
    );
    let gw = GatewayProc::start(&config_with(up.addr, &extra)).await;
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    wait_metric(
        &gw,
        "gateway_budget_threshold_crossings_total",
        &["default/frugal", "threshold=\"80\""],
        1.0,
    )
    .await;
    // 0.9 of 1 cent spent: still admitted, and this one crosses the budget.
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    wait_metric(
        &gw,
        "gateway_budget_threshold_crossings_total",
        &["default/frugal", "threshold=\"100\""],
        1.0,
    )
    .await;
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "x-should-retry"), "false");
    let retry: u64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry > 0 && retry <= 31 * 86_400, "{retry}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "budget_exceeded");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("monthly budget of project default/frugal (0.01"),
        "{msg}"
    );
    assert!(msg.contains("-01T00:00:00Z"), "{msg}");
    assert_eq!(up.count(), 2);
    assert_eq!(
        metric_sum(
            &gw,
            "gateway_limit_rejections_total",
            &["scope=\"project\"", "kind=\"budget\""]
        )
        .await,
        1.0
    );
    assert!(gw
        .logs()
        .contains("project crossed a monthly budget threshold"));
}

#[tokio::test]
async fn a_budgeted_project_is_refused_a_model_without_a_price_and_others_are_not() {
    let up = MockUpstream::start().await;
    // `gpt-local` matches the `gpt-*` route but no default price; `gpt-priced` has one.
    let extra = format!(
        "prices:\n  - model: \"gpt-priced\"\n    input_per_mtok: 1000\n    output_per_mtok: 1000\nprojects:\n  - slug: budgeted\n    monthly_budget_cents: 500\n    keys:\n      - digest: \"{}\"\n  - slug: open\n    keys:\n      - digest: \"{}\"\n",
        digest(KEY_A),
        digest(KEY_B)
    );
    let gw = GatewayProc::start(&config_with(up.addr, &extra)).await;
    let r = chat(&gw, KEY_A, "gpt-local").await;
    assert_eq!(r.status(), 403);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "model_not_priced");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("\"gpt-local\"") && msg.contains("prices"),
        "{msg}"
    );
    // The native surface names the model in the body too.
    let r = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth(KEY_A)
        .json(&chat_body("gpt-local", false))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "model_not_priced".to_owned()));
    assert_eq!(up.count(), 0, "refused requests reached the provider");
    // A priced model passes; a project without a budget may use any routed model.
    assert_eq!(chat(&gw, KEY_A, "gpt-priced").await.status(), 200);
    assert_eq!(chat(&gw, KEY_B, "gpt-local").await.status(), 200);
}

/// A `server.limits` block on the Redis at `url` with a key prefix of this test's own.
fn redis_limits(dir_tag: &str, url: &str, mode: &str) -> String {
    let dir = std::env::temp_dir().join(format!("gw-redis-{}-{dir_tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url_file = dir.join("redis-url");
    std::fs::write(&url_file, url).unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "  limits:\n    redis_url: \"file:{}\"\n    redis_failure_mode: {mode}\n    redis_timeout_ms: 200\n    redis_key_prefix: \"gwtest-{nanos}:\"\n",
        url_file.display()
    )
}

/// A redis-server of this test's own on a free port, killed on drop.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    async fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn two_gateways_sharing_redis_admit_exactly_the_project_limit_together() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let projects = format!(
        "projects:\n  - slug: shared\n    requests_per_minute: 20\n    keys:\n      - digest: \"{}\"\n",
        digest(KEY_A)
    );
    let snapshot = config_with(up.addr, &projects);
    let limits = redis_limits("shared", "redis://127.0.0.1:6379", "closed");
    let a = GatewayProc::start_with(&snapshot, &limits).await;
    let b = GatewayProc::start_with(&snapshot, &limits).await;
    // 30 concurrent requests on each gateway: 60 at once against a limit of 20.
    let mut tasks = Vec::new();
    for gw in [&a, &b] {
        for _ in 0..30 {
            let url = gw.url("/v1/chat/completions");
            tasks.push(tokio::spawn(async move {
                client()
                    .post(url)
                    .bearer_auth(KEY_A)
                    .json(&chat_body("gpt-4o", false))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }));
        }
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (20, 40), "{statuses:?}");
    assert_eq!(up.count(), 20);
    let checks = metric_sum(&a, "gateway_redis_checks_total", &["outcome=\"ok\""]).await
        + metric_sum(&b, "gateway_redis_checks_total", &["outcome=\"ok\""]).await;
    assert_eq!(checks, 60.0, "one Redis round trip per request");
}

/// `n` concurrent chat requests on each gateway; returns how many were admitted (200).
async fn burst(gateways: &[&GatewayProc], key: &'static str, n: usize) -> usize {
    let mut tasks = Vec::new();
    for gw in gateways {
        for _ in 0..n {
            let url = gw.url("/v1/chat/completions");
            tasks.push(tokio::spawn(async move {
                let r = client()
                    .post(url)
                    .bearer_auth(key)
                    .json(&chat_body("gpt-4o", false))
                    .send()
                    .await
                    .unwrap();
                let ok = r.status() == 200;
                let _ = r.bytes().await;
                ok
            }));
        }
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += usize::from(t.await.unwrap());
    }
    admitted
}

#[tokio::test]
async fn two_gateways_token_overshoot_is_bounded_by_the_requests_in_flight() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let projects = format!(
        "projects:\n  - slug: tokenshare\n    tokens_per_minute: 10\n    keys:\n      - digest: \"{}\"\n",
        digest(KEY_A)
    );
    let snapshot = config_with(up.addr, &projects);
    let limits = redis_limits("tokens", "redis://127.0.0.1:6379", "closed");
    let a = GatewayProc::start_with(&snapshot, &limits).await;
    let b = GatewayProc::start_with(&snapshot, &limits).await;
    // N = 5 per gateway, M = 2, in flight together while the window is empty: all admitted,
    // 90 tokens against a limit of 10. That is the bound: the tokens of the requests in flight.
    let admitted = burst(&[&a, &b], KEY_A, 5).await;
    assert!(admitted <= 10, "{admitted}");
    assert!(admitted >= 1);
    // Once those charges have landed in Redis (batched), both gateways refuse everything.
    for gw in [&a, &b] {
        wait_metric(gw, "gateway_redis_charges_total", &["outcome=\"ok\""], 1.0).await;
    }
    assert_eq!(burst(&[&a, &b], KEY_A, 5).await, 0);
    let refused = metric_sum(&a, "gateway_limit_rejections_total", &["kind=\"tokens\""]).await
        + metric_sum(&b, "gateway_limit_rejections_total", &["kind=\"tokens\""]).await;
    assert_eq!(refused, 10.0);
}

#[tokio::test]
async fn redis_stopped_mid_run_fails_closed_with_503_then_recovers() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let (port, _) = free_ports();
    let mut redis = OwnRedis::start_on(port).await;
    let projects = format!(
        "projects:\n  - slug: strict\n    requests_per_minute: 100\n    keys:\n      - digest: \"{}\"\n",
        digest(KEY_A)
    );
    let gw = GatewayProc::start_with(
        &config_with(up.addr, &projects),
        &redis_limits("closed", &redis.url(), "closed"),
    )
    .await;
    assert_eq!(chat(&gw, KEY_A, "gpt-4o").await.status(), 200);
    redis.kill();
    for _ in 0..3 {
        let r = chat(&gw, KEY_A, "gpt-4o").await;
        assert_eq!(r.status(), 503);
        assert_eq!(header(&r, "retry-after"), "1");
        assert_eq!(
            error_code(r).await,
            (503, "rate_limiter_unavailable".to_owned())
        );
    }
    assert_eq!(up.count(), 1);
    // Logged once per transition, not per request.
    assert_eq!(
        gw.logs().matches("Redis limiter unavailable").count(),
        1,
        "{}",
        gw.logs()
    );
    // The first failure waits for Redis; within a second of it, requests do not wait again.
    let failures = metric_sum(&gw, "gateway_redis_checks_total", &["outcome=\"error\""]).await
        + metric_sum(&gw, "gateway_redis_checks_total", &["outcome=\"timeout\""]).await;
    let skipped = metric_sum(&gw, "gateway_redis_checks_total", &["outcome=\"skipped\""]).await;
    assert!(
        failures >= 1.0 && failures + skipped == 3.0,
        "{failures} failed, {skipped} skipped"
    );

    let _redis = OwnRedis::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = chat(&gw, KEY_A, "gpt-4o").await.status();
        if s == 200 {
            break;
        }
        assert_eq!(s, 503);
        assert!(Instant::now() < deadline, "never recovered:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.logs().contains("Redis limiter reachable again"));
}

#[tokio::test]
async fn redis_stopped_mid_run_fails_open_to_this_gateways_own_counters() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let (port, _) = free_ports();
    let mut redis = OwnRedis::start_on(port).await;
    let projects = format!(
        "projects:\n  - slug: lenient\n    requests_per_minute: 3\n    keys:\n      - digest: \"{}\"\n",
        digest(KEY_A)
    );
    let gw = GatewayProc::start_with(
        &config_with(up.addr, &projects),
        &redis_limits("open", &redis.url(), "open"),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(chat(&gw, KEY_A, "gpt-4o").await.status(), 200);
    }
    redis.kill();
    // The local counters saw the two Redis admissions: one more is admitted, then 429.
    let r = chat(&gw, KEY_A, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "0");
    assert_eq!(chat(&gw, KEY_A, "gpt-4o").await.status(), 429);
    assert_eq!(gw.logs().matches("Redis limiter unavailable").count(), 1);
}

/// A control plane with org `acme` (an OpenAI provider on `upstream`) and project `billed`,
/// a key of that project, and a gateway streaming from it that reports usage with this
/// `flush_ms` and `batch_size` (its spool and last-known-good file named after `tag`); returns
/// once the key works (`/v1/models`: answered by the gateway itself, no usage record).
async fn billed_gateway(
    upstream: std::net::SocketAddr,
    secrets: &cp::Secrets,
    tag: &str,
    flush_ms: u64,
    batch_size: u64,
) -> (cp::ControlPlane, String, GatewayProc) {
    let cp = cp::ControlPlane::start(secrets).await;
    cp.seed_org("acme", "openai", upstream).await;
    cp.post(
        "/api/v1/orgs/acme/projects",
        serde_json::json!({"slug": "billed"}),
    )
    .await;
    let (key, _) = cp.mint("acme", "billed").await;
    let d = secrets.dir.display();
    let server_extra = format!(
        "  control_plane:\n    url: \"{url}\"\n    internal_secret: \"file:{d}/internal-secret\"\n    public_key: \"file:{pubkey}\"\n    last_known_good: \"{d}/{tag}-lkg.json\"\n    usage_ingest_token: \"file:{d}/usage-ingest-token\"\n    ingest:\n      spool_dir: \"{d}/{tag}-spool\"\n      flush_ms: {flush_ms}\n      batch_size: {batch_size}\n",
        url = cp.url,
        pubkey = secrets.pub_file.display(),
    );
    let gw = GatewayProc::launch("", &server_extra, &[], true).await;
    cp::eventually(Duration::from_secs(5), "the key works", || async {
        client()
            .get(gw.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    (cp, key, gw)
}

#[tokio::test]
async fn a_thousand_requests_while_the_control_plane_is_down_survive_a_restart_and_are_stored_once()
{
    let up = MockUpstream::start().await;
    let secrets = cp::Secrets::new();
    let (mut cp, key, mut gw) = billed_gateway(up.addr, &secrets, "ingest", 100, 100).await;

    cp.stop().await;
    // 1,000 requests, 20 at a time, while the control plane is down.
    let mut tasks = Vec::new();
    for w in 0..20 {
        let url = gw.url("/v1/chat/completions");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for i in 0..50 {
                let r = c
                    .post(&url)
                    .bearer_auth(&key)
                    .header("x-request-id", format!("ingest-{}", w * 50 + i))
                    .json(&chat_body("gpt-4o", false))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Every record reaches the disk spool; then the gateway dies hard (SIGKILL) and restarts
    // (from its last-known-good snapshot: the control plane is still down).
    wait_metric(
        &gw,
        "gateway_ingest_spool_records",
        &["kind=\"usage\""],
        1000.0,
    )
    .await;
    gw.kill();
    gw.spawn(true).await;
    assert_eq!(
        metric_sum(&gw, "gateway_ingest_spool_records", &["kind=\"usage\""]).await,
        1000.0
    );
    assert!(gw
        .logs()
        .contains("ingest spool has records from a previous run"));

    cp.restart().await;
    let usage = || async {
        let (st, v) = cp.get("/api/v1/orgs/acme/usage?project=billed").await;
        assert_eq!(st, 200, "{v}");
        v["items"][0].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stored = usage().await["requests"].as_i64().unwrap_or(0);
        let spooled = metric_sum(&gw, "gateway_ingest_spool_records", &["kind=\"usage\""]).await;
        if stored >= 1000 && spooled == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {stored} stored, {spooled} spooled:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly 1,000 records, counted exactly: 5 in and 4 out each, gpt-4o at 2.50/10.00.
    let u = usage().await;
    assert_eq!(u["requests"], 1000, "{u}");
    assert_eq!(
        (u["input_tokens"].as_i64(), u["output_tokens"].as_i64()),
        (Some(5000), Some(4000))
    );
    assert_eq!(u["cost_pico"], 52_500_000_000_i64);
    assert_eq!(
        (
            u["incomplete_requests"].as_i64(),
            u["unpriced_requests"].as_i64()
        ),
        (Some(0), Some(0))
    );

    // With the control plane up, a new record goes straight through.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    cp::eventually(
        Duration::from_secs(10),
        "the live record is stored",
        || async { usage().await["requests"] == 1001 },
    )
    .await;
}

#[tokio::test]
async fn sigterm_delivers_the_usage_still_in_memory_before_the_process_exits() {
    let up = MockUpstream::start().await;
    let secrets = cp::Secrets::new();
    // A flush interval far beyond the test: records stay in memory until the exit.
    let (cp, key, mut gw) = billed_gateway(up.addr, &secrets, "term", 60_000, 500).await;
    for i in 0..30 {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-request-id", format!("term-{i}"))
            .json(&chat_body("gpt-4o", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    // One more, a stream still running when SIGTERM arrives: its record is made after it.
    let slow = {
        let (url, key) = (gw.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .header("x-mock-chunk-delay-ms", "200")
                .json(&chat_body("gpt-4o", true))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, v) = cp.get("/api/v1/orgs/acme/usage?project=billed").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"][0]["requests"], 0, "flushed before the exit: {v}");

    gw.signal("TERM");
    let (status, text) = slow.await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("data: [DONE]"), "stream cut short: {text}");
    assert_eq!(gw.wait_exit(Duration::from_secs(8)).await, Some(0));
    // Delivered before the exit, not spooled for a later run.
    let (st, v) = cp.get("/api/v1/orgs/acme/usage?project=billed").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"][0]["requests"], 31, "{v}\n{}", gw.logs());
    let spooled = std::fs::read_dir(secrets.dir.join("term-spool/usage"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(spooled, 0, "records left in the spool");
}

#[tokio::test]
async fn a_new_gateway_restores_the_months_spend_from_the_control_plane() {
    let up = MockUpstream::start().await;
    let secrets = cp::Secrets::new();
    let cp = cp::ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    cp.post(
        "/api/v1/orgs/acme/policies",
        serde_json::json!({"slug": "capped", "monthly_budget_cents": 100}),
    )
    .await;
    cp.post(
        "/api/v1/orgs/acme/projects",
        serde_json::json!({"slug": "billed", "policy": "capped"}),
    )
    .await;
    let (key, _) = cp.mint("acme", "billed").await;
    // Earlier this month a gateway (gone since, its memory with it) reported the whole budget:
    // $1.00 = 10^12 pico-units.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let record = serde_json::json!({
        "id": "gone-gateway:1", "request_id": "earlier", "at_ms": now_ms - 1000,
        "org": "acme", "project": "billed", "provider": "openai", "route": "gpt-*",
        "model": "gpt-4o", "input_tokens": 100, "output_tokens": 100,
        "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_pico": 1_000_000_000_000_u64,
        "status": 200, "latency_ms": 10, "complete": true
    });
    let r = cp
        .http
        .post(format!("{}/internal/v1/ingest/usage", cp.url))
        .bearer_auth(cp::INTERNAL_SECRET)
        .header("x-ingest-token", cp::USAGE_INGEST_TOKEN)
        .json(&serde_json::json!({"records": [record]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The spend endpoint refuses callers without the internal secret.
    let r = cp
        .http
        .get(format!("{}/internal/v1/spend?from_ms=0", cp.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let lkg = secrets.dir.join("spend-lkg.json");
    let gw = GatewayProc::launch(
        "",
        "",
        &secrets.gateway_args(&cp.url, &lkg, "gw-spend"),
        true,
    )
    .await;
    // No Redis: the only way this gateway knows the budget is spent is the control plane.
    cp::eventually(
        Duration::from_secs(10),
        "the spent budget is enforced",
        || async {
            let r = chat(&gw, &key, "gpt-4o").await;
            r.status() == 429 && error_code(r).await.1 == "budget_exceeded"
        },
    )
    .await;
    assert!(gw
        .logs()
        .contains("month-to-date spend read from the control plane"));
}

#[tokio::test]
async fn a_policy_set_through_the_control_plane_limits_requests_on_the_gateway() {
    wait_for_fresh_window().await;
    let up = MockUpstream::start().await;
    let secrets = cp::Secrets::new();
    let cp = cp::ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    cp.post(
        "/api/v1/orgs/acme/policies",
        serde_json::json!({"slug": "tight", "requests_per_minute": 3}),
    )
    .await;
    cp.post(
        "/api/v1/orgs/acme/projects",
        serde_json::json!({"slug": "limited", "policy": "tight"}),
    )
    .await;
    let (key, _) = cp.mint("acme", "limited").await;
    let lkg = secrets.dir.join("limits-lkg.json");
    let gw = GatewayProc::launch(
        "",
        "",
        &secrets.gateway_args(&cp.url, &lkg, "gw-limits"),
        true,
    )
    .await;
    cp::eventually(Duration::from_secs(5), "the key works", || async {
        client()
            .get(gw.url("/v1/models"))
            .bearer_auth(&key)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // The successful probe above was one request of the three (every request counts).
    let r = chat(&gw, &key, "gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-ratelimit-limit-requests"), "3");
    assert_eq!(header(&r, "x-ratelimit-remaining-requests"), "1");
    assert_eq!(chat(&gw, &key, "gpt-4o").await.status(), 200);
    let r = chat(&gw, &key, "gpt-4o").await;
    assert_eq!(error_code(r).await, (429, "rate_limit_exceeded".to_owned()));
    // Its counters are named `org/project`.
    wait_metric(
        &gw,
        "gateway_tokens_total",
        &["project=\"acme/limited\""],
        1.0,
    )
    .await;
}
