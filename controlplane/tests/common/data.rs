//! Test data shared by the store tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use super::TestServer;

/// Fills a store through the API: every table gets rows, including a revoked key.
pub async fn populate(s: &TestServer, admin: &str) -> String {
    for (p, b) in [
        (
            "/api/v1/orgs",
            json!({"slug": "acme", "display_name": "Acme"}),
        ),
        ("/api/v1/orgs", json!({"slug": "globex"})),
        (
            "/api/v1/orgs/acme/policies",
            json!({"slug": "std", "allowed_models": ["gpt-*"], "max_request_bytes": 4096,
                   "requests_per_minute": 60, "tokens_per_minute": 1000, "monthly_budget_cents": 999,
                   "endpoints": ["files", "batches"],
                   "guardrails": [{"id": "no-cards", "detector": "card_number", "action": "block"},
                                  {"id": "codename", "pattern": "(?i)falcon", "action": "redact"}]}),
        ),
        (
            "/api/v1/orgs/acme/projects",
            json!({"slug": "web", "policy": "std"}),
        ),
        ("/api/v1/orgs/acme/projects", json!({"slug": "batch"})),
        (
            "/api/v1/orgs/acme/providers",
            json!({"slug": "openai", "kind": "openai", "base_url": "https://api.openai.com",
                   "api_key_ref": "env:OPENAI_API_KEY"}),
        ),
        (
            "/api/v1/orgs/acme/routes",
            json!({"slug": "gpt", "model": "gpt-*", "provider": "openai", "upstream_model": "gpt-4o"}),
        ),
    ] {
        let (st, v) = s.post(p, admin, b).await;
        assert_eq!(st, 201, "{p}: {v}");
    }
    let (_, k1) = s
        .post(
            "/api/v1/orgs/acme/projects/web/keys",
            admin,
            json!({"name": "a"}),
        )
        .await;
    let (_, k2) = s
        .post(
            "/api/v1/orgs/acme/projects/web/keys",
            admin,
            json!({"name": "b", "expires_at": super::now() + 86400}),
        )
        .await;
    let k2 = k2["id"].as_str().unwrap();
    let (st, _) = s
        .delete(&format!("/api/v1/orgs/acme/projects/web/keys/{k2}"), admin)
        .await;
    assert_eq!(st, 204);
    k1["plaintext"].as_str().unwrap().to_owned()
}

/// The API's view of everything, for comparing two stores.
pub async fn api_view(s: &TestServer, admin: &str) -> Value {
    let mut out = serde_json::Map::new();
    for p in [
        "/api/v1/orgs",
        "/api/v1/orgs/acme/policies",
        "/api/v1/orgs/acme/projects",
        "/api/v1/orgs/acme/providers",
        "/api/v1/orgs/acme/routes",
        "/api/v1/orgs/acme/projects/web/keys",
    ] {
        let (st, v) = s.get(p, admin).await;
        assert_eq!(st, 200, "{p}");
        out.insert(p.into(), v["items"].clone());
    }
    Value::Object(out)
}

/// Stores two guardrail block records (as a gateway's ingest would).
pub async fn add_guardrail_blocks(store: &controlplane::store::Store) {
    let rec = |id: &str, action| gateway_schema::GuardrailBlockRecord {
        id: id.into(),
        request_id: format!("req-{id}"),
        at_ms: super::now() * 1000,
        org: "acme".into(),
        project: "web".into(),
        key_id: Some("key_1".into()),
        rule_id: "no-cards".into(),
        action,
    };
    let n = store
        .insert_guardrail_blocks(&[
            rec("gb-1", gateway_schema::GuardrailAction::Block),
            rec("gb-2", gateway_schema::GuardrailAction::Redact),
        ])
        .await
        .unwrap();
    assert_eq!(n, 2);
}
