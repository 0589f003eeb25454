//! Usage ingest and the usage API: idempotent storage of gateway records, exact sums grouped
//! by project, model and day, filters, validation, retention.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;
/// 2026-11-28T00:00:00Z
const T0: i64 = 1_795_824_000_000;

fn record(
    id: &str,
    project: &str,
    model: &str,
    at_ms: i64,
    input: u64,
    cost: Option<u64>,
) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "at_ms": at_ms,
        "org": "acme", "project": project, "key_id": "key_1", "provider": "openai",
        "route": "gpt-*", "model": model,
        "input_tokens": input, "output_tokens": 2, "cache_read_tokens": 1, "cache_write_tokens": 0,
        "cost_pico": cost, "status": 200, "latency_ms": 12, "complete": id != "r4"
    })
}

async fn env_with_ingest() -> Env {
    let dir = std::env::temp_dir().join(common::unique("cp-usage-"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &str| {
        let p = dir.join(name);
        std::fs::write(&p, v).unwrap();
        gateway_schema::SecretRef::File(p)
    };
    let secret = write("internal", "internal-secret-value");
    let usage = write("usage", "usage-token-value");
    let hits = write("hits", "cache-hits-token-value");
    let env = Env::start_with(|c| {
        c.internal.secret = Some(secret);
        c.internal.usage_ingest_token = Some(usage);
        c.internal.cache_hits_ingest_token = Some(hits);
    })
    .await;
    let (st, _) = env
        .server
        .post("/api/v1/orgs", &env.admin(), json!({"slug": "acme"}))
        .await;
    assert_eq!(st, 201);
    env
}

async fn ingest(env: &Env, records: Vec<Value>) -> (u16, Value) {
    let s = &env.server;
    common::send(
        s.http
            .post(format!("{}/internal/v1/ingest/usage", s.url))
            .bearer_auth("internal-secret-value")
            .header("x-ingest-token", "usage-token-value")
            .json(&json!({ "records": records })),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_usage_is_stored_once_and_summed_exactly_by_project_model_and_day() {
    let env = env_with_ingest().await;
    let batch = vec![
        record("r1", "web", "gpt-4o", T0 + 1_000, 10, Some(1_500_000)),
        record("r2", "web", "gpt-4o-mini", T0 + 2_000, 20, Some(2_500_001)),
        record("r3", "api", "gpt-4o", T0 + DAY + 5, 30, Some(7)),
        record("r4", "web", "gpt-4o", T0 + DAY + 6, 40, None),
    ];
    let (st, v) = ingest(&env, batch.clone()).await;
    assert_eq!((st, v), (200, json!({"stored": 4, "duplicates": 0})));
    // A retried batch (at-least-once delivery) changes nothing.
    let (st, v) = ingest(&env, batch).await;
    assert_eq!((st, v), (200, json!({"stored": 0, "duplicates": 4})));

    let viewer = env.token("v", &["acme-viewers"]);
    let (st, v) = env.server.get("/api/v1/orgs/acme/usage", &viewer).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["items"],
        json!([{"requests": 4, "input_tokens": 100, "output_tokens": 8, "cache_read_tokens": 4,
            "cache_write_tokens": 0, "cost_pico": 4_000_008, "cost_micros": 4,
            "unpriced_requests": 1, "incomplete_requests": 1, "cache_hits": 0,
            "saved_input_tokens": 0, "saved_output_tokens": 0, "saved_cache_read_tokens": 0,
            "saved_cache_write_tokens": 0, "saved_cost_pico": 0, "saved_cost_micros": 0}])
    );
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/usage?group_by=project,day", &viewer)
        .await;
    let rows: Vec<(String, String, i64, i64)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["project"].as_str().unwrap().to_owned(),
                r["day"].as_str().unwrap().to_owned(),
                r["requests"].as_i64().unwrap(),
                r["input_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("api".into(), "2026-11-29".into(), 1, 30),
            ("web".into(), "2026-11-28".into(), 2, 30),
            ("web".into(), "2026-11-29".into(), 1, 40),
        ]
    );
    assert!(v["items"][0].get("model").is_none());
    // Filters: model, project, time range (from inclusive, to exclusive).
    let (_, v) = env
        .server
        .get(
            "/api/v1/orgs/acme/usage?model=gpt-4o&group_by=model",
            &viewer,
        )
        .await;
    assert_eq!(v["items"][0]["model"], "gpt-4o");
    assert_eq!(v["items"][0]["requests"], 3);
    let q = format!(
        "/api/v1/orgs/acme/usage?project=web&from={}&to={}",
        T0 + 2_000,
        T0 + DAY + 6
    );
    let (_, v) = env.server.get(&q, &viewer).await;
    assert_eq!(v["items"][0]["requests"], 1);
    assert_eq!(v["items"][0]["cost_pico"], 2_500_001);
    let (st, v) = env
        .server
        .get("/api/v1/orgs/acme/usage?group_by=key", &viewer)
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_group_by"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_an_invalid_record_is_refused_whole() {
    let env = env_with_ingest().await;
    let mut bad = record("x2", "Not A Slug", "gpt-4o", T0, 1, None);
    let (st, v) = ingest(
        &env,
        vec![record("x1", "web", "gpt-4o", T0, 1, None), bad.clone()],
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_record");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("records[1].project"));
    bad["project"] = json!("web");
    bad["prompt"] = json!("content is never accepted");
    let (st, v) = ingest(&env, vec![bad]).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_body"))
    );
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/usage", &env.admin())
        .await;
    assert_eq!(v["items"][0]["requests"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_past_retention_is_purged() {
    let env = env_with_ingest().await;
    let now = common::now() * 1000;
    let (st, _) = ingest(
        &env,
        vec![
            record("old", "web", "gpt-4o", now - 500 * DAY, 1, Some(1)),
            record("new", "web", "gpt-4o", now - DAY, 2, Some(2)),
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
    assert_eq!(store.purge_usage(now - 400 * DAY).await.unwrap(), 1);
    let (_, v) = env
        .server
        .get("/api/v1/orgs/acme/usage", &env.admin())
        .await;
    assert_eq!(v["items"][0]["requests"], 1);
    assert_eq!(v["items"][0]["input_tokens"], 2);
}

fn hit(id: &str, project: &str, at_ms: i64, cost: Option<u64>) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "source_request_id": "req-r1",
        "at_ms": at_ms, "org": "acme", "project": project, "key_id": "key_1",
        "provider": "openai", "route": "gpt-*", "model": "gpt-4o",
        "input_tokens": 10, "output_tokens": 2, "cache_read_tokens": 1, "cache_write_tokens": 0,
        "cost_saved_pico": cost
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_are_stored_once_and_shown_as_saved_beside_spent() {
    let env = env_with_ingest().await;
    let s = &env.server;
    let (st, _) = ingest(
        &env,
        vec![record(
            "r1",
            "web",
            "gpt-4o",
            T0 + 1_000,
            10,
            Some(1_500_000),
        )],
    )
    .await;
    assert_eq!(st, 200);
    let hits = vec![
        hit("h1", "web", T0 + 2_000, Some(1_500_000)),
        hit("h2", "web", T0 + 3_000, Some(1_500_000)),
        // A project with hits and no usage of its own that day, and an unpriced hit.
        hit("h3", "api", T0 + DAY, None),
    ];
    let post = || {
        common::send(
            s.http
                .post(format!("{}/internal/v1/ingest/cache-hits", s.url))
                .bearer_auth("internal-secret-value")
                .header("x-ingest-token", "cache-hits-token-value")
                .json(&json!({ "records": hits })),
        )
    };
    assert_eq!(post().await, (200, json!({"stored": 3, "duplicates": 0})));
    assert_eq!(post().await, (200, json!({"stored": 0, "duplicates": 3})));
    // The usage token is not the cache-hit token.
    let (st, _) = common::send(
        s.http
            .post(format!("{}/internal/v1/ingest/cache-hits", s.url))
            .bearer_auth("internal-secret-value")
            .header("x-ingest-token", "usage-token-value")
            .json(&json!({ "records": [] })),
    )
    .await;
    assert_eq!(st, 401);

    let viewer = env.token("v", &["acme-viewers"]);
    let (st, v) = s.get("/api/v1/orgs/acme/usage", &viewer).await;
    assert_eq!(st, 200, "{v}");
    let t = &v["items"][0];
    assert_eq!(
        (t["requests"].as_i64(), t["cost_pico"].as_i64()),
        (Some(1), Some(1_500_000))
    );
    assert_eq!(t["cache_hits"], 3);
    assert_eq!(
        (
            t["saved_input_tokens"].as_i64(),
            t["saved_output_tokens"].as_i64(),
            t["saved_cache_read_tokens"].as_i64()
        ),
        (Some(30), Some(6), Some(3))
    );
    assert_eq!(t["saved_cost_pico"], 3_000_000);
    assert_eq!(t["saved_cost_micros"], 3);

    let (_, v) = s
        .get("/api/v1/orgs/acme/usage?group_by=project,day", &viewer)
        .await;
    let rows: Vec<(String, String, i64, i64, i64)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["project"].as_str().unwrap().to_owned(),
                r["day"].as_str().unwrap().to_owned(),
                r["requests"].as_i64().unwrap(),
                r["cache_hits"].as_i64().unwrap(),
                r["saved_cost_pico"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("api".into(), "2026-11-29".into(), 0, 1, 0),
            ("web".into(), "2026-11-28".into(), 1, 2, 3_000_000),
        ]
    );
    // Filters apply to the savings too.
    let (_, v) = s.get("/api/v1/orgs/acme/usage?project=api", &viewer).await;
    assert_eq!(
        (
            v["items"][0]["requests"].as_i64(),
            v["items"][0]["cache_hits"].as_i64()
        ),
        (Some(0), Some(1))
    );
}
