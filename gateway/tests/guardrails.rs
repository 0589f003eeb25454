//! Guardrails over real sockets: each built-in detector blocks its positive cases and passes
//! look-alikes, a custom pattern blocks, a blocked request never reaches the provider,
//! redaction changes only the matched span of the bytes the provider receives, OpenAI and
//! Anthropic shapes (content-part arrays, system blocks, inputs) are all read, a body the rules
//! cannot read is refused, an invalid or too large pattern fails validation, and every block
//! and redaction reaches the control plane exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/cp.rs"]
mod cp;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const GUARDED_KEY: &str = "gwk_guardrails_guarded_00000000000000000000000000000000000000000";
const REDACTING_KEY: &str = "gwk_guardrails_redacting_0000000000000000000000000000000000000000";
const OPEN_KEY: &str = "gwk_guardrails_open_000000000000000000000000000000000000000000000";

fn config(upstream: std::net::SocketAddr) -> String {
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
projects:
  - slug: guarded
    keys:
      - digest: "{guarded}"
        id: key_guarded
    endpoints: [message_batches]
    guardrails:
      - {{id: openai-key, detector: openai_key, action: block}}
      - {{id: anthropic-key, detector: anthropic_key, action: block}}
      - {{id: aws-key, detector: aws_access_key, action: block}}
      - {{id: github-token, detector: github_token, action: block}}
      - {{id: card, detector: card_number, action: block}}
      - {{id: email, detector: email, action: block}}
      - {{id: iban, detector: iban, action: block}}
      - {{id: codename, pattern: "(?i)project\\s+falcon", action: block}}
  - slug: redacting
    keys:
      - digest: "{redacting}"
    guardrails:
      - {{id: mail, detector: email, action: redact}}
      - {{id: card, detector: card_number, action: redact}}
      - {{id: aws, detector: aws_access_key, action: block}}
  - slug: open
    keys:
      - digest: "{open}"
"#,
        guarded = digest(GUARDED_KEY),
        redacting = digest(REDACTING_KEY),
        open = digest(OPEN_KEY),
    )
}

async fn start() -> (MockUpstream, GatewayProc) {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    (up, gw)
}

/// POSTs raw JSON bytes.
async fn post_raw(gw: &GatewayProc, path: &str, key: &str, body: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The sum of `name`'s samples whose labels include every one of `labels`.
fn counter(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn chat_with(text: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
}

/// Asserts a 400 `guardrail_blocked` naming `rule`, and that the answer does not echo `text`.
async fn assert_blocked(r: reqwest::Response, rule: &str, text: &str) {
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_eq!(status, 400, "{text:?} -> {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "guardrail_blocked", "{text:?}: {body}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("`{rule}`")), "{text:?}: {msg}");
    assert!(!body.contains(text), "the error echoes the text: {body}");
}

#[tokio::test]
async fn each_detector_blocks_its_positive_cases_and_passes_look_alikes() {
    let (up, gw) = start().await;
    let anthropic = format!("sk-ant-api03-{}AA", "x7Y_-".repeat(18));
    let proj = format!("sk-proj-{}", "Ab3_-".repeat(10));
    let legacy = format!("sk-{}", "A1b2".repeat(12));
    let ghp = format!("ghp_{}", "a1B2".repeat(9));
    let pat = format!("github_pat_11{}", "AbC_".repeat(20));
    let blocked: Vec<(String, &str)> = vec![
        (format!("my key is {proj} ok"), "openai-key"),
        (format!("legacy {legacy}"), "openai-key"),
        (format!("use {anthropic}"), "anthropic-key"),
        ("creds AKIAIOSFODNN7EXAMPLE here".into(), "aws-key"),
        ("session ASIAY34FZKBOKMUTVV7A".into(), "aws-key"),
        (format!("token {ghp}"), "github-token"),
        (format!("fine-grained {pat}"), "github-token"),
        ("pay with 4111 1111 1111 1111 please".into(), "card"),
        ("card 5500-0000-0000-0004.".into(), "card"),
        ("amex 378282246310005".into(), "card"),
        ("4111 1111 1111 1111 12/27".into(), "card"),
        ("write to jane.doe+test@example.co.uk".into(), "email"),
        ("iban DE89 3704 0044 0532 0130 00 thanks".into(), "iban"),
        ("GB82WEST12345698765432".into(), "iban"),
        ("the Project  FALCON launch".into(), "codename"),
    ];
    for (text, rule) in &blocked {
        let before = up.count();
        let r = post_json(&gw, "/v1/chat/completions", GUARDED_KEY, &chat_with(text)).await;
        assert_blocked(r, rule, text).await;
        assert_eq!(up.count(), before, "{text:?} reached the upstream");
    }
    let look_alikes = [
        "order 4111 1111 1111 1112 shipped",  // 16 digits failing Luhn
        "tracking 1234 5678 9012 3456",       // 16 digits failing Luhn
        "iban DE89370400440532013001",        // bad mod-97 checksum
        "GB82WEST1234569876543",              // too short for a GB IBAN
        "sk-short and sk-ant-nope",           // key prefixes without the key
        "AKIA1234 is not a key id",           // too short
        "ghp_tooshort",                       // too short
        "mail me at jane dot doe at example", // no address
        "project eagle, not the other one",   // custom pattern does not match
        "phone +1 415 555 0100",              // digits, far too few
    ];
    for text in look_alikes {
        let r = post_json(&gw, "/v1/chat/completions", GUARDED_KEY, &chat_with(text)).await;
        assert_eq!(r.status(), 200, "{text:?}: {}", r.text().await.unwrap());
        assert_eq!(up.last().json()["messages"][0]["content"], text);
    }
    // Only the text users sent is read: `user` and `metadata` are not message content.
    let body = json!({"model": "gpt-4o", "user": "jane@example.com",
        "metadata": {"note": "4111 1111 1111 1111"},
        "messages": [{"role": "user", "content": "hello"}]});
    let r = post_json(&gw, "/v1/chat/completions", GUARDED_KEY, &body).await;
    assert_eq!(r.status(), 200);
    // A project without guardrails is not scanned.
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        OPEN_KEY,
        &chat_with("creds AKIAIOSFODNN7EXAMPLE here"),
    )
    .await;
    assert_eq!(r.status(), 200);
    // Counted by project, rule and action.
    let metrics = gw.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            "gateway_guardrail_actions_total",
            &[
                r#"project="default/guarded""#,
                r#"rule="card""#,
                r#"action="block""#
            ]
        ),
        4.0,
        "{metrics}"
    );
    assert_eq!(
        counter(
            &metrics,
            "gateway_rejections_total",
            &[r#"reason="guardrail_blocked""#]
        ),
        15.0
    );
}

#[tokio::test]
async fn redaction_changes_only_the_matched_span_byte_for_byte() {
    let (up, gw) = start().await;
    // Odd spacing, key order, a long decimal, escapes in other strings: all must survive.
    let sent = concat!(
        "{ \"temperature\" : 0.30000000000000004,\n",
        "  \"model\":\"gpt-4o\", \"n\":12345678901234567890123,\n",
        "  \"messages\":[{\"role\":\"system\",\"content\":\"caf\\u00e9 \\\"quoted\\\"\"},\n",
        "    {\"role\":\"user\",\"content\":\"mail jane@example.com or bob@example.org, card 4111 1111 1111 1111.\"},\n",
        "    {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"part a@b.io\"}]}],\n",
        "  \"user\":\"keep@example.com\" }"
    );
    let r = post_raw(&gw, "/v1/chat/completions", REDACTING_KEY, sent).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let want = sent
        .replace("jane@example.com", "[REDACTED:mail]")
        .replace("bob@example.org", "[REDACTED:mail]")
        .replace("4111 1111 1111 1111", "[REDACTED:card]")
        .replace("a@b.io", "[REDACTED:mail]");
    assert_eq!(String::from_utf8_lossy(&up.last().body), want);
    assert_eq!(
        up.last().header("content-length"),
        Some(want.len().to_string().as_str())
    );

    // Anthropic blocks on the native surface: only the matching block changes.
    let sent = r#"{"model":"claude-3-5-sonnet","max_tokens":5,"system":[{"type":"text","text":"ops@corp.example is on call"}],"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"tool_result","tool_use_id":"t1","content":"4111-1111-1111-1111"}]}]}"#;
    let r = post_raw(&gw, "/anthropic/v1/messages", REDACTING_KEY, sent).await;
    assert_eq!(r.status(), 200);
    let want = sent
        .replace("ops@corp.example", "[REDACTED:mail]")
        .replace("4111-1111-1111-1111", "[REDACTED:card]");
    assert_eq!(String::from_utf8_lossy(&up.last().body), want);

    // A block rule of the same project still blocks, and wins over redaction.
    let before = up.count();
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        REDACTING_KEY,
        &chat_with("a@b.io AKIAIOSFODNN7EXAMPLE"),
    )
    .await;
    assert_blocked(r, "aws", "AKIAIOSFODNN7EXAMPLE").await;
    assert_eq!(up.count(), before);
    let metrics = gw.metrics().await;
    let labels = [
        r#"project="default/redacting""#,
        r#"rule="mail""#,
        r#"action="redact""#,
    ];
    assert_eq!(
        counter(&metrics, "gateway_guardrail_actions_total", &labels),
        2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn openai_and_anthropic_shapes_are_scanned_including_content_parts() {
    let (up, gw) = start().await;
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let cases: Vec<(&str, Value)> = vec![
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": format!("key {secret}")}]}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": format!("{{\"k\":\"{secret}\"}}")}}]}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4o", "instructions": "be brief", "input": [
                {"role": "user", "content": [{"type": "input_text", "text": secret}]}]}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4o", "input": format!("plain {secret}")}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["fine", secret]}),
        ),
        (
            "/v1/completions",
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": secret}),
        ),
        (
            "/v1/messages",
            json!({"model": "claude-3-5-sonnet", "max_tokens": 5,
                "system": [{"type": "text", "text": secret}],
                "messages": [{"role": "user", "content": "hi"}]}),
        ),
        (
            "/anthropic/v1/messages",
            json!({"model": "claude-3-5-sonnet", "max_tokens": 5, "system": "ok",
                "messages": [{"role": "user", "content": [{"type": "tool_result",
                    "tool_use_id": "t", "content": [{"type": "text", "text": secret}]}]}]}),
        ),
        (
            "/anthropic/v1/messages/batches",
            json!({"requests": [{"custom_id": "a", "params": {"model": "claude-3-5-sonnet",
                "max_tokens": 5, "messages": [{"role": "user", "content": secret}]}}]}),
        ),
        (
            "/openai/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": secret}]}),
        ),
    ];
    for (path, body) in &cases {
        let r = post_json(&gw, path, GUARDED_KEY, body).await;
        assert_blocked(r, "aws-key", secret).await;
    }
    // Escapes cannot hide a match, in keys or values; a repeated key is read every time.
    for raw in [
        r#"{"model":"gpt-4o","m\u0065ssages":[{"role":"user","content":"\u0041KIAIOSFODNN7EXAMPLE"}]}"#,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"AKIAIOSFODNN7EXAMPLE"}],"messages":[{"role":"user","content":"hi"}]}"#,
    ] {
        let r = post_raw(&gw, "/v1/chat/completions", GUARDED_KEY, raw).await;
        assert_blocked(r, "aws-key", secret).await;
    }
    assert_eq!(up.count(), 0, "a blocked request reached the upstream");
}

#[tokio::test]
async fn bodies_the_rules_cannot_read_are_refused() {
    let (up, gw) = start().await;
    // Compressed: 415, never forwarded.
    let r = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth(GUARDED_KEY)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(chat_with("hello").to_string().as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (415, "unsupported_content_encoding".to_owned())
    );
    // JSON a strict parser refuses (a lone surrogate) on the native surface: 400.
    let broken = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"\ud800 AKIAIOSFODNN7EXAMPLE"}]}"#;
    let r = post_raw(&gw, "/openai/v1/chat/completions", GUARDED_KEY, broken).await;
    assert_eq!(error_code(r).await, (400, "invalid_json".to_owned()));
    assert_eq!(up.count(), 0);
}

/// `gateway check-config` on a file whose only project has `guardrails` (YAML list).
fn check_config(guardrails: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!(
        "gw-guardrails-check-{}-{}",
        std::process::id(),
        guardrails.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.yaml");
    let text = format!(
        "server:\n  listen: \"127.0.0.1:18080\"\n  admin_listen: \"127.0.0.1:18081\"\nproviders: []\nroutes: []\nprojects:\n  - slug: p\n    guardrails:\n{guardrails}"
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn an_invalid_or_too_large_pattern_is_refused_by_validation() {
    let (ok, out) = check_config(
        "      - {id: fine, pattern: \"(?i)falcon\", action: block}\n      - {id: m, detector: email, action: redact}\n",
    );
    assert!(ok, "{out}");
    let (ok, out) = check_config("      - {id: bad, pattern: \"(unclosed\", action: block}\n");
    assert!(!ok);
    assert!(
        out.contains("projects[0].guardrails[0].pattern: is not a valid regular expression"),
        "{out}"
    );
    let (ok, out) =
        check_config("      - {id: big, pattern: \"(?:\\\\w{100}){100}\", action: block}\n");
    assert!(!ok);
    assert!(
        out.contains("projects[0].guardrails[0].pattern: compiles to more than"),
        "{out}"
    );
    let (ok, out) = check_config("      - {id: d, detector: ssn, action: block}\n");
    assert!(!ok);
    assert!(out.contains("unknown variant `ssn`"), "{out}");
}

/// Polls the control plane's guardrail-blocks list until it holds `n` items.
async fn blocks_listed(cp: &cp::ControlPlane, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, v) = cp
            .get("/api/v1/orgs/acme/guardrail-blocks?project=app&limit=200")
            .await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records listed",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn blocks_and_redactions_reach_the_control_plane_exactly_once() {
    let up = MockUpstream::start().await;
    let secrets = cp::Secrets::new();
    let mut cp = cp::ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    cp.put(
        "/api/v1/orgs/acme/policies/std",
        json!({"guardrails": [
            {"id": "no-aws", "detector": "aws_access_key", "action": "block"},
            {"id": "mask-mail", "detector": "email", "action": "redact"}
        ]}),
    )
    .await;
    let (key, key_id) = cp.mint("acme", "app").await;
    let lkg = secrets.dir.join("guardrails-lkg.json");
    let mut args = secrets.gateway_args(&cp.url, &lkg, "gw-guardrails");
    args.extend([
        "--guardrail-blocks-ingest-token".to_owned(),
        format!("file:{}", secrets.guardrail_blocks_token_file.display()),
    ]);
    let spool = secrets.dir.join("spool");
    let server_extra = format!(
        "  control_plane:\n    url: \"{url}\"\n    internal_secret: \"file:{s}\"\n    public_key: \"file:{p}\"\n    ingest:\n      spool_dir: \"{spool}\"\n      flush_ms: 100\n",
        url = cp.url,
        s = secrets.secret_file.display(),
        p = secrets.pub_file.display(),
        spool = spool.display(),
    );
    let gw = GatewayProc::launch("", &server_extra, &args, true).await;
    cp::eventually(Duration::from_secs(10), "the policy is applied", || async {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-request-id", "probe")
            .json(&chat_with("hello"))
            .send()
            .await
            .unwrap();
        r.status() == 200 && up.count() > 0
    })
    .await;
    // The probe above passed without a record. Now 3 blocks and 2 redactions while the control
    // plane is up, then 2 blocks while it is down (spooled, delivered after its restart).
    let send = |id: String, text: &'static str| {
        let url = gw.url("/v1/chat/completions");
        let key = key.clone();
        async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .header("x-request-id", id)
                .json(&chat_with(text))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    for i in 0..3 {
        assert_eq!(send(format!("blk-{i}"), "AKIAIOSFODNN7EXAMPLE").await, 400);
    }
    for i in 0..2 {
        assert_eq!(send(format!("red-{i}"), "mail jane@example.com").await, 200);
    }
    blocks_listed(&cp, 5).await;
    cp.stop().await;
    for i in 3..5 {
        assert_eq!(send(format!("blk-{i}"), "AKIAIOSFODNN7EXAMPLE").await, 400);
    }
    cp::eventually(
        Duration::from_secs(10),
        "the records are spooled",
        || async {
            gw.metrics().await.lines().any(|l| {
                l.starts_with("gateway_ingest_spool_records")
                    && l.contains(r#"kind="guardrail-blocks""#)
                    && l.ends_with(" 2")
            })
        },
    )
    .await;
    cp.restart().await;
    let items = blocks_listed(&cp, 7).await;
    // Give a duplicate delivery the time to show up, then count exactly.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let items = {
        let again = blocks_listed(&cp, 7).await;
        assert_eq!(again, items);
        again
    };
    assert_eq!(items.len(), 7, "{items:?}");
    let mut seen: Vec<(String, String, String)> = items
        .iter()
        .map(|r| {
            assert_eq!(r["org"], "acme");
            assert_eq!(r["project"], "app");
            assert_eq!(r["key_id"], key_id.as_str());
            (
                r["request_id"].as_str().unwrap().to_owned(),
                r["rule_id"].as_str().unwrap().to_owned(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, String, String)> = (0..5)
        .map(|i| (format!("blk-{i}"), "no-aws".into(), "block".into()))
        .chain((0..2).map(|i| (format!("red-{i}"), "mask-mail".into(), "redact".into())))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    let text = serde_json::to_string(&items).unwrap();
    assert!(!text.contains("AKIA") && !text.contains("jane@"), "{text}");
}
