//! Guardrails in the control plane: policies carry rules (an invalid or too large pattern is
//! refused naming its field), gateways' block records are stored once, listed with filters and
//! pages for auditors and admins only, and purged past retention.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
/// 2026-11-28T00:00:00Z
const T0: i64 = 1_795_824_000_000;

fn record(id: &str, project: &str, rule: &str, action: &str, at_ms: i64) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "at_ms": at_ms, "org": "acme",
        "project": project, "key_id": "key_1", "rule_id": rule, "action": action
    })
}

async fn env_with_ingest() -> Env {
    let dir = std::env::temp_dir().join(common::unique("cp-guardrails-"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &str| {
        let p = dir.join(name);
        std::fs::write(&p, v).unwrap();
        gateway_schema::SecretRef::File(p)
    };
    let secret = write("internal", "internal-secret-value");
    let usage = write("usage", "usage-token-value");
    let blocks = write("blocks", "blocks-token-value");
    let env = Env::start_with(|c| {
        c.internal.secret = Some(secret);
        c.internal.usage_ingest_token = Some(usage);
        c.internal.guardrail_blocks_ingest_token = Some(blocks);
    })
    .await;
    let (st, _) = env
        .server
        .post("/api/v1/orgs", &env.admin(), json!({"slug": "acme"}))
        .await;
    assert_eq!(st, 201);
    env
}

async fn ingest(env: &Env, token: &str, records: Vec<Value>) -> (u16, Value) {
    let s = &env.server;
    common::send(
        s.http
            .post(format!("{}/internal/v1/ingest/guardrail-blocks", s.url))
            .bearer_auth("internal-secret-value")
            .header("x-ingest-token", token)
            .json(&json!({ "records": records })),
    )
    .await
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {v}"))
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_stored_once_and_listed_with_filters_and_pages_for_auditors_and_admins() {
    let env = env_with_ingest().await;
    let batch = vec![
        record("g1", "web", "no-cards", "block", T0 + 1),
        record("g2", "web", "emails", "redact", T0 + 2),
        record("g3", "api", "no-cards", "block", T0 + DAY),
    ];
    // Another kind's token does not pass.
    let (st, v) = ingest(&env, "usage-token-value", batch.clone()).await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = ingest(&env, "blocks-token-value", batch.clone()).await;
    assert_eq!((st, v), (200, json!({"stored": 3, "duplicates": 0})));
    // A retried batch (at-least-once delivery) stores nothing twice.
    let (st, v) = ingest(&env, "blocks-token-value", batch).await;
    assert_eq!((st, v), (200, json!({"stored": 0, "duplicates": 3})));

    let auditor = env.token("aud", &["auditors"]);
    let org_admin = env.token("oa", &["acme-admins"]);
    for token in [&auditor, &org_admin, &env.admin()] {
        let (st, v) = env
            .server
            .get("/api/v1/orgs/acme/guardrail-blocks", token)
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(ids(&v), vec!["g1", "g2", "g3"]);
    }
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/guardrail-blocks?limit=1", &auditor)
        .await;
    let first = &v["items"][0];
    assert_eq!(
        (
            &first["request_id"],
            &first["project"],
            &first["key_id"],
            &first["rule_id"],
            &first["action"],
            &first["at_ms"],
        ),
        (
            &json!("req-g1"),
            &json!("web"),
            &json!("key_1"),
            &json!("no-cards"),
            &json!("block"),
            &json!(T0 + 1)
        )
    );
    // Pages follow the cursor to the end.
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let (_, v) = env
        .server
        .get(
            &format!("/api/v1/orgs/acme/guardrail-blocks?limit=2&cursor={cursor}"),
            &auditor,
        )
        .await;
    assert_eq!(ids(&v), vec!["g2", "g3"]);
    // Filters: project, time range (from inclusive, to exclusive), rule, action.
    let get = |q: String| {
        let auditor = auditor.clone();
        let env = &env;
        async move {
            let (st, v) = env
                .server
                .get(&format!("/api/v1/orgs/acme/guardrail-blocks?{q}"), &auditor)
                .await;
            assert_eq!(st, 200, "{q}: {v}");
            ids(&v)
        }
    };
    assert_eq!(get("project=api".into()).await, vec!["g3"]);
    assert_eq!(
        get(format!("from={}&to={}", T0 + 2, T0 + DAY)).await,
        vec!["g2"]
    );
    assert_eq!(get("rule_id=no-cards".into()).await, vec!["g1", "g3"]);
    assert_eq!(get("action=redact".into()).await, vec!["g2"]);
    let (st, v) = env
        .server
        .get("/api/v1/orgs/acme/guardrail-blocks?action=allow", &auditor)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_action"))
    );

    // Configuration roles cannot read them; strangers do not learn the org exists.
    for groups in [&["acme-viewers"][..], &["acme-editors"][..]] {
        let (st, v) = env
            .server
            .get(
                "/api/v1/orgs/acme/guardrail-blocks",
                &env.token("x", groups),
            )
            .await;
        assert_eq!((st, v["error"]["code"].as_str()), (403, Some("forbidden")));
    }
    let (st, _) = env
        .server
        .get(
            "/api/v1/orgs/acme/guardrail-blocks",
            &env.token("s", &["strangers"]),
        )
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_with_text_or_a_bad_field_is_refused_whole() {
    let env = env_with_ingest().await;
    let mut bad = record("b2", "web", "bad rule id!", "block", T0);
    let (st, v) = ingest(
        &env,
        "blocks-token-value",
        vec![record("b1", "web", "r", "block", T0), bad.clone()],
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_record");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("records[1].rule_id"));
    bad["rule_id"] = json!("r");
    bad["matched"] = json!("4111 1111 1111 1111");
    let (st, v) = ingest(&env, "blocks-token-value", vec![bad]).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/guardrail-blocks", &env.admin())
        .await;
    assert_eq!(ids(&v), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrail_blocks_past_retention_are_purged() {
    let env = env_with_ingest().await;
    let now = common::now() * 1000;
    let (st, _) = ingest(
        &env,
        "blocks-token-value",
        vec![
            record("old", "web", "r", "block", now - 500 * DAY),
            record("new", "web", "r", "block", now - DAY),
        ],
    )
    .await;
    assert_eq!(st, 200);
    // The retention task runs at start and hourly; run the same purge it runs.
    let store = controlplane::store::Store::connect(
        &gateway_schema::Secret::new(format!("sqlite://{}", env.db)),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        store.purge_guardrail_blocks(now - 400 * DAY).await.unwrap(),
        1
    );
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/guardrail-blocks", &env.admin())
        .await;
    assert_eq!(ids(&v), vec!["new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_guardrails_round_trip_and_bad_patterns_are_refused_naming_the_field() {
    let env = env_with_ingest().await;
    let admin = env.admin();
    let rules = json!([
        {"id": "no-keys", "detector": "openai_key", "action": "block"},
        {"id": "mask-mail", "detector": "email", "action": "redact"},
        {"id": "codename", "pattern": "(?i)project\\s+falcon", "action": "block"}
    ]);
    let (st, v) = env
        .server
        .post(
            "/api/v1/orgs/acme/policies",
            &admin,
            json!({"slug": "safe", "guardrails": rules}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["guardrails"], rules);
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/policies/safe", &admin)
        .await;
    assert_eq!(v["guardrails"], rules);

    let refused = |guardrails: Value| {
        let env = &env;
        let admin = admin.clone();
        async move {
            let (st, v) = env
                .server
                .put(
                    "/api/v1/orgs/acme/policies/safe",
                    &admin,
                    json!({"guardrails": guardrails}),
                )
                .await;
            assert_eq!(st, 400, "{v}");
            (
                v["error"]["code"].as_str().unwrap().to_owned(),
                v["error"]["message"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (code, msg) =
        refused(json!([{"id": "x", "pattern": "(unclosed", "action": "block"}])).await;
    assert_eq!(code, "invalid_policy");
    assert!(
        msg.starts_with("guardrails[0].pattern: is not a valid regular expression"),
        "{msg}"
    );
    let (code, msg) =
        refused(json!([{"id": "x", "pattern": "(?:\\w{100}){100}", "action": "block"}])).await;
    assert_eq!(code, "invalid_policy");
    assert!(
        msg.starts_with("guardrails[0].pattern: compiles to more than"),
        "{msg}"
    );
    let (_, msg) = refused(json!([
        {"id": "x", "detector": "email", "action": "block"},
        {"id": "x", "detector": "email", "pattern": "a", "action": "block"}
    ]))
    .await;
    assert!(msg.contains("guardrails[1].id: duplicate rule id"), "{msg}");
    assert!(msg.contains("guardrails[1]: set exactly one"), "{msg}");
    let (code, msg) = refused(json!([{"id": "x", "detector": "ssn", "action": "block"}])).await;
    assert_eq!(code, "invalid_body");
    assert!(msg.contains("guardrails[0].detector"), "{msg}");
    // Nothing was changed by the refused updates.
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/policies/safe", &admin)
        .await;
    assert_eq!(v["guardrails"], rules);
}
