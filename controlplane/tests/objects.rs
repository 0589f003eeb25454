//! Ownership records of provider objects: idempotent ingest (first owner wins, deletions are
//! tombstones), validation, and the paged read gateways seed from.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use serde_json::{json, Value};

fn record(project: &str, kind: &str, id: &str, deleted: bool) -> Value {
    json!({"org": "acme", "project": project, "provider": "openai", "kind": kind,
           "object_id": id, "at_ms": 1_795_824_000_000i64, "deleted": deleted})
}

async fn env_with_ingest() -> Env {
    let dir = std::env::temp_dir().join(common::unique("cp-objects-"));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, v: &str| {
        let p = dir.join(name);
        std::fs::write(&p, v).unwrap();
        gateway_schema::SecretRef::File(p)
    };
    let secret = write("internal", "internal-secret-value");
    let objects = write("objects", "objects-token-value");
    Env::start_with(|c| {
        c.internal.secret = Some(secret);
        c.internal.objects_ingest_token = Some(objects);
    })
    .await
}

async fn ingest(env: &Env, token: &str, records: Vec<Value>) -> (u16, Value) {
    let s = &env.server;
    common::send(
        s.http
            .post(format!("{}/internal/v1/ingest/objects", s.url))
            .bearer_auth("internal-secret-value")
            .header("x-ingest-token", token)
            .json(&json!({ "records": records })),
    )
    .await
}

async fn page(env: &Env, secret: &str, query: &str) -> (u16, Value) {
    let s = &env.server;
    common::send(
        s.http
            .get(format!("{}/internal/v1/objects{query}", s.url))
            .bearer_auth(secret),
    )
    .await
}

fn ids(page: &Value) -> Vec<&str> {
    page["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["object_id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_stored_once_first_owner_wins_and_tombstones_stick() {
    let env = env_with_ingest().await;
    let batch = vec![
        record("web", "file", "file-1", false),
        record("web", "batch", "batch_1", false),
        record("api", "response", "resp_1", false),
    ];
    let (st, v) = ingest(&env, "objects-token-value", batch.clone()).await;
    assert_eq!((st, v), (200, json!({"stored": 3, "duplicates": 0})));
    // A retried batch changes nothing.
    let (st, v) = ingest(&env, "objects-token-value", batch).await;
    assert_eq!((st, v), (200, json!({"stored": 0, "duplicates": 3})));
    // Another project claiming an existing id, or deleting another's object, changes nothing.
    let (st, v) = ingest(
        &env,
        "objects-token-value",
        vec![
            record("api", "file", "file-1", false),
            record("api", "file", "file-1", true),
        ],
    )
    .await;
    assert_eq!((st, v), (200, json!({"stored": 0, "duplicates": 2})));
    // The owner's deletion is a tombstone; a late creation report does not revive it, and a
    // deletion that arrives before its creation keeps the object deleted.
    let (st, v) = ingest(
        &env,
        "objects-token-value",
        vec![
            record("web", "batch", "batch_1", true),
            record("web", "batch", "batch_1", false),
            record("web", "batch", "batch_1", true),
            record("api", "file", "file-early", true),
            record("api", "file", "file-early", false),
        ],
    )
    .await;
    assert_eq!((st, v), (200, json!({"stored": 2, "duplicates": 3})));

    let (st, all) = page(&env, "internal-secret-value", "").await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(ids(&all), ["file-1", "resp_1"]);
    assert_eq!(all["objects"][0]["project"], "web");
    assert_eq!(all["objects"][0]["kind"], "file");
    assert_eq!(all["objects"][0]["created_at_ms"], 1_795_824_000_000i64);
    assert!(all["next_after"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_pages_by_cursor_and_filters_by_org_and_project() {
    let env = env_with_ingest().await;
    let mut batch: Vec<Value> = (0..5)
        .map(|i| record("web", "file", &format!("file-{i}"), false))
        .collect();
    batch.push(record("api", "file", "file-api", false));
    let mut other = record("web", "file", "file-globex", false);
    other["org"] = json!("globex");
    batch.push(other);
    let (st, _) = ingest(&env, "objects-token-value", batch).await;
    assert_eq!(st, 200);

    let mut seen = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut pages = 0;
    loop {
        let (st, p) = page(&env, "internal-secret-value", &query).await;
        assert_eq!(st, 200, "{p}");
        seen.extend(ids(&p).into_iter().map(str::to_owned));
        pages += 1;
        match p["next_after"].as_i64() {
            Some(after) => query = format!("?limit=3&after={after}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    let (_, p) = page(&env, "internal-secret-value", "?org=acme&project=web").await;
    assert_eq!(ids(&p), ["file-0", "file-1", "file-2", "file-3", "file-4"]);
    let (_, p) = page(&env, "internal-secret-value", "?org=globex").await;
    assert_eq!(ids(&p), ["file-globex"]);

    for bad in [
        "?limit=0",
        "?limit=5001",
        "?after=-1",
        "?project=web",
        "?org=Bad",
        "?x=1",
    ] {
        let (st, v) = page(&env, "internal-secret-value", bad).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_read_need_their_secrets_and_valid_records() {
    let env = env_with_ingest().await;
    // The usage token (or none) does not pass for objects.
    let (st, v) = ingest(&env, "usage-token-value", vec![]).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    let (st, v) = page(&env, "wrong-secret", "").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (401, Some("unauthenticated")),
        "{v}"
    );
    // One bad record refuses the whole batch, naming the field.
    let mut bad = record("web", "file", "file-ok", false);
    bad["object_id"] = json!("file:../1");
    let (st, v) = ingest(
        &env,
        "objects-token-value",
        vec![record("web", "file", "file-ok", false), bad],
    )
    .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_record");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("records[1].object_id"));
    let mut bad = record("web", "file", "file-ok", false);
    bad["kind"] = json!("secret");
    let (st, v) = ingest(&env, "objects-token-value", vec![bad]).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_record"))
    );
    let (_, p) = page(&env, "internal-secret-value", "").await;
    assert!(ids(&p).is_empty());
    let too_many: Vec<Value> = (0..501)
        .map(|i| record("web", "file", &format!("file-{i}"), false))
        .collect();
    let (st, v) = ingest(&env, "objects-token-value", too_many).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("batch_too_large"))
    );
}
