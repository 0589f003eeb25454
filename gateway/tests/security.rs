//! Security behaviour: every refusal is asserted exactly (status and code), and nothing the
//! client should not control reaches the provider.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

async fn post_chat(
    gw: &GatewayProc,
    key: Option<(&str, &str)>,
    body: serde_json::Value,
) -> (u16, String) {
    let mut req = client().post(gw.url("/v1/chat/completions")).json(&body);
    if let Some((h, v)) = key {
        req = req.header(h, v);
    }
    error_code(req.send().await.unwrap()).await
}

#[tokio::test]
async fn missing_unknown_revoked_and_expired_keys_get_401_and_never_reach_upstream() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let body = chat_body("gpt-4o", false);
    assert_eq!(
        post_chat(&gw, None, body.clone()).await,
        (401, "missing_api_key".into())
    );
    assert_eq!(
        post_chat(
            &gw,
            Some(("authorization", "Bearer gwk_forged")),
            body.clone()
        )
        .await,
        (401, "invalid_api_key".into())
    );
    assert_eq!(
        post_chat(
            &gw,
            Some(("authorization", &format!("Basic {DEMO_KEY}"))),
            body.clone()
        )
        .await,
        (401, "missing_api_key".into())
    );
    assert_eq!(
        post_chat(
            &gw,
            Some(("authorization", &format!("Bearer {REVOKED_KEY}"))),
            body.clone()
        )
        .await,
        (401, "revoked_api_key".into())
    );
    assert_eq!(
        post_chat(&gw, Some(("x-api-key", EXPIRED_KEY)), body.clone()).await,
        (401, "expired_api_key".into())
    );
    // A digest is not a key: presenting the stored digest itself fails.
    assert_eq!(
        post_chat(&gw, Some(("x-api-key", &digest(DEMO_KEY))), body.clone()).await,
        (401, "invalid_api_key".into())
    );
    assert_eq!(up.count(), 0);
    for (h, v) in [
        ("authorization", format!("Bearer {DEMO_KEY}")),
        ("x-api-key", DEMO_KEY.into()),
        ("api-key", DEMO_KEY.into()),
    ] {
        assert_eq!(
            post_chat(&gw, Some((h, &v)), body.clone()).await.0,
            200,
            "{h}"
        );
    }
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn client_credentials_are_stripped_and_replaced_by_the_provider_key() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    // Key in x-api-key, plus a spoofed Authorization aimed at the provider: both must go.
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-api-key", DEMO_KEY)
        .header("api-key", "spoofed-azure-key")
        .header("proxy-authorization", "Basic c3Bvb2Y=")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "must-not-pass")
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {OPENAI_UPSTREAM_KEY}").as_str())
    );
    for gone in [
        "x-api-key",
        "api-key",
        "proxy-authorization",
        "x-secret-hop",
    ] {
        assert_eq!(seen.header(gone), None, "{gone} reached the upstream");
    }

    // Native Anthropic: a client Authorization header is dropped, the provider's x-api-key set.
    let body = serde_json::json!({"model": "claude-3-haiku", "max_tokens": 5, "messages": []});
    let r = post_json(&gw, "/anthropic/v1/messages", DEMO_KEY, &body).await;
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-api-key"), Some(ANTHROPIC_UPSTREAM_KEY));
}

/// A JSON chat body of exactly `len` bytes.
fn body_of_len(model: &str, len: usize) -> Vec<u8> {
    let head = format!(r#"{{"model":"{model}","messages":[],"pad":""#);
    let tail = r#""}"#;
    let pad = len - head.len() - tail.len();
    format!("{head}{}{tail}", "p".repeat(pad)).into_bytes()
}

#[tokio::test]
async fn body_cap_is_exact_with_content_length_and_chunked() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    // The restricted project caps bodies at 1024 bytes.
    for (len, is_chunked, want) in [
        (1024, false, 200),
        (1025, false, 413),
        (1024, true, 200),
        (1025, true, 413),
    ] {
        let body = body_of_len("gpt-4o-mini", len);
        assert_eq!(body.len(), len);
        let before = up.count();
        let req = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(RESTRICTED_KEY);
        let req = if is_chunked {
            let chunks = chunked(&body, 100);
            req.body(chunks)
        } else {
            req.body(body.clone())
        };
        let (status, code) = error_code(req.send().await.unwrap()).await;
        assert_eq!(status, want, "len {len} chunked {is_chunked}");
        if want == 413 {
            assert_eq!(code, "request_too_large");
            assert_eq!(
                up.count(),
                before,
                "a partial or oversized request reached the upstream"
            );
        } else {
            assert_eq!(up.last().body.as_ref(), &body[..]);
        }
    }
}

#[tokio::test]
async fn oversized_content_length_is_refused_before_the_body_is_sent() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    // Headers only: the gateway must answer without waiting for 100 MB that never come.
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    );
    let started = std::time::Instant::now();
    let resp = raw_request(gw.port, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("\"code\":\"request_too_large\""), "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn model_policy_errors_are_openai_shaped() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let demo = Some(("authorization", format!("Bearer {DEMO_KEY}")));
    let demo = demo.as_ref().map(|(h, v)| (*h, v.as_str()));
    let restricted = format!("Bearer {RESTRICTED_KEY}");
    let restricted = Some(("authorization", restricted.as_str()));
    assert_eq!(
        post_chat(&gw, demo, chat_body("llama-9000", false)).await,
        (404, "model_not_found".into())
    );
    assert_eq!(
        post_chat(&gw, demo, serde_json::json!({"messages": []})).await,
        (400, "missing_model".into())
    );
    assert_eq!(
        post_chat(&gw, demo, serde_json::json!({"model": 7})).await,
        (400, "missing_model".into())
    );
    assert_eq!(
        post_chat(&gw, restricted, chat_body("gpt-4o", false)).await,
        (403, "model_not_allowed".into())
    );
    assert_eq!(
        post_chat(&gw, restricted, chat_body("gpt-4o-mini", false))
            .await
            .0,
        200
    );
    assert_eq!(
        post_chat(&gw, demo, chat_body("needs-key", false)).await,
        (503, "provider_key_missing".into())
    );
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let r2 = r.headers().get("content-type").cloned();
    assert_eq!(error_code(r).await, (400, "invalid_json".into()));
    assert_eq!(r2.unwrap(), "application/json");

    // Native pass-through: a restricted project must name an allowed model in its body.
    let r = post_json(
        &gw,
        "/anthropic/v1/messages",
        RESTRICTED_KEY,
        &serde_json::json!({"model": "claude-2", "messages": []}),
    )
    .await;
    assert_eq!(error_code(r).await, (403, "model_not_allowed".into()));
    let r = client()
        .post(gw.url("/anthropic/v1/messages"))
        .bearer_auth(RESTRICTED_KEY)
        .body("not-json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (403, "model_not_allowed".into()));
    let r = post_json(
        &gw,
        "/anthropic/v1/messages",
        RESTRICTED_KEY,
        &serde_json::json!({"model": "claude-3-haiku", "max_tokens": 5, "messages": []}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn unknown_and_ambiguous_paths_are_refused() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let r = client()
        .post(gw.url("/nowhere/v1/x"))
        .bearer_auth(DEMO_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (404, "unknown_path".into()));
    for path in [
        "/anthropic/%2e%2e/openai/v1/x",
        "/v1/chat/%2fcompletions",
        "/anthropic/v1/%2E%2E/admin",
    ] {
        let resp = raw_request(
            gw.port,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nx-api-key: {DEMO_KEY}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 400"), "{path}: {resp}");
        assert!(resp.contains("\"code\":\"invalid_path\""), "{path}: {resp}");
    }
    let resp = raw_request(
        gw.port,
        format!("GET /anthropic/../openai/v1/models HTTP/1.1\r\nHost: x\r\nx-api-key: {DEMO_KEY}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn request_smuggling_attempts_are_rejected() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let body = r#"{"model":"gpt-4o","messages":[]}"#;
    // CL.TE: both framings present.
    let smuggle = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_KEY}\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        body.len()
    );
    let resp = raw_request(gw.port, smuggle.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "CL+TE: {resp}");
    // Two different Content-Length values.
    let dup = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DEMO_KEY}\r\nContent-Length: {}\r\nContent-Length: 5\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_request(gw.port, dup.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "duplicate CL: {resp}");
    assert!(up
        .requests()
        .iter()
        .all(|s| !s.path_and_query.contains("smuggled")));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn malformed_request_ids_are_replaced() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let long = "a".repeat(300);
    for bad in ["has space", long.as_str(), "semi;colon"] {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth(DEMO_KEY)
            .header("x-request-id", bad)
            .json(&chat_body("gpt-4o", false))
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 32);
        assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));
    }
}

#[tokio::test]
async fn keys_and_bodies_never_reach_logs_or_metrics() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let canary_body = "CANARY-BODY-7f3a9";
    let canary_key = "gwk_CANARY-KEY-19be2";
    let canary_model = "gpt-CANARY-MODEL-44c1";
    let body = serde_json::json!({"model": canary_model, "messages": [{"role": "user", "content": canary_body}]});
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(canary_key)
        .json(&body)
        .send()
        .await
        .unwrap();
    post_json(&gw, "/v1/chat/completions", DEMO_KEY, &body).await;
    client()
        .post(gw.url("/v1/chat/completions?k=CANARY-QUERY"))
        .header("x-api-key", DEMO_KEY)
        .body(format!("{{bad {canary_body}"))
        .send()
        .await
        .unwrap();
    let r = client()
        .post(gw.url("/anthropic/v1/messages"))
        .header("x-api-key", DEMO_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = gw.logs();
    let metrics = gw.metrics().await;
    assert!(
        logs.contains("\"target\":\"access\""),
        "no access log lines:\n{logs}"
    );
    for canary in [
        canary_body,
        canary_key,
        canary_model,
        DEMO_KEY,
        OPENAI_UPSTREAM_KEY,
        ANTHROPIC_UPSTREAM_KEY,
    ] {
        assert!(
            !logs.contains(canary),
            "{canary} leaked into the logs:\n{logs}"
        );
        assert!(
            !metrics.contains(canary),
            "{canary} leaked into the metrics"
        );
    }
    // The digest is not secret, but it should not be logged either.
    assert!(!logs.contains(&digest(DEMO_KEY)));
}
