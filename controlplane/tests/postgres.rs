//! The store on a real PostgreSQL server: migrations, the API's semantics (conflicts, foreign
//! keys, pagination) and the backup round trip, including a move to and from SQLite.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres` (database `test`). Each
//! test creates and drops its own database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::data::{add_guardrail_blocks, api_view, populate};
use common::{MockIssuer, TestKey, TestServer};
use controlplane::backup;
use controlplane::store::Store;
use gateway_schema::{Secret, SecretRef};
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh database, dropped on drop (best effort).
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> Self {
        let mut c =
            match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(ADMIN_URL))
                .await
            {
                Ok(Ok(c)) => c,
                other => panic!(
                    "PostgreSQL is not reachable at {ADMIN_URL} ({:?}). Start it with: \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
                    other.map(|r| r.err())
                ),
            };
        let name = common::unique("cp_test_");
        c.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        c.close().await.ok();
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
        Self { name, url }
    }

    /// The URL as a secret reference (a file), the way a deployment passes it.
    fn secret_ref(&self) -> SecretRef {
        let p = std::env::temp_dir().join(common::unique("cp-pgurl-"));
        std::fs::write(&p, &self.url).unwrap();
        SecretRef::File(p)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A separate runtime on a separate thread: this may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(ADMIN_URL).await {
                    let _ = c
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

async fn pg_server(db: &PgDb) -> (TestServer, MockIssuer, TestKey) {
    let rsa = TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
    let issuer = MockIssuer::start(&[&rsa]).await;
    let mut cfg = common::base_config(Some(&issuer.url), "/nonexistent/unused.db");
    cfg.database.url = Some(db.secret_ref());
    let server = TestServer::start(cfg).await;
    (server, issuer, rsa)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_semantics_hold_on_postgres() {
    let db = PgDb::create().await;
    let (s, issuer, rsa) = pg_server(&db).await;
    let admin = rsa.sign(&issuer.claims("root-admin", &["platform-admins"]));
    let plaintext = populate(&s, &admin).await;
    assert!(plaintext.starts_with("gwk_"));
    // Unique violation → 409 conflict; foreign key → 409 in_use; missing → 404.
    let (st, e) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
        .await;
    assert_eq!((st, e["error"]["code"].as_str()), (409, Some("conflict")));
    let (st, e) = s.delete("/api/v1/orgs/acme/providers/openai", &admin).await;
    assert_eq!((st, e["error"]["code"].as_str()), (409, Some("in_use")));
    let (st, e) = s.delete("/api/v1/orgs/acme/policies/std", &admin).await;
    assert_eq!((st, e["error"]["code"].as_str()), (409, Some("in_use")));
    let (st, _) = s.get("/api/v1/orgs/acme/routes/nope", &admin).await;
    assert_eq!(st, 404);
    // Pagination.
    let (_, p1) = s.get("/api/v1/orgs/acme/projects?limit=1", &admin).await;
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = s
        .get(
            &format!("/api/v1/orgs/acme/projects?limit=1&cursor={c}"),
            &admin,
        )
        .await;
    assert_eq!(p1["items"][0]["slug"], "web");
    assert_eq!(p2["items"][0]["slug"], "batch");
    // The audit log works and readiness reflects the store.
    let audit = s.audit(&admin).await;
    assert!(audit
        .iter()
        .any(|r| r["status"] == 409 && r["reason"] == "in_use"));
    let r = s
        .http
        .get(format!("{}/readyz", s.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_round_trips_and_moves_to_sqlite_and_back() {
    let src = PgDb::create().await;
    let (s, issuer, rsa) = pg_server(&src).await;
    let admin = rsa.sign(&issuer.claims("root-admin", &["platform-admins"]));
    populate(&s, &admin).await;
    let view = api_view(&s, &admin).await;
    s.stop().await;

    let src_store = Store::connect(&Secret::new(src.url.clone()), 2)
        .await
        .unwrap();
    add_guardrail_blocks(&src_store).await;
    // Ownership records, one a tombstone (the upsert's Postgres path).
    let object = |id: &str, deleted: bool| gateway_schema::ObjectRecord {
        org: "acme".into(),
        project: "web".into(),
        provider: "openai".into(),
        kind: "file".into(),
        object_id: id.into(),
        at_ms: 1_795_824_000_000,
        deleted,
    };
    let n = src_store
        .insert_objects(&[
            object("file-1", false),
            object("file-2", false),
            object("file-2", true),
            object("file-2", false),
        ])
        .await
        .unwrap();
    assert_eq!((n.stored, n.duplicates), (3, 1));
    let taken = backup::take(&src_store).await.unwrap();
    assert_eq!(taken.guardrail_blocks.len(), 2);
    assert_eq!(taken.provider_objects.len(), 2);
    let dir = std::env::temp_dir().join(common::unique("cp-pgbackup-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pg.json");
    backup::backup_to_file(&src_store, &file).await.unwrap();
    src_store.close().await;

    // Postgres → Postgres.
    let dst = PgDb::create().await;
    let dst_store = Store::connect(&Secret::new(dst.url.clone()), 2)
        .await
        .unwrap();
    let counts = backup::restore_from_file(&dst_store, &file).await.unwrap();
    assert_eq!(counts, taken.counts());
    let restored = backup::take(&dst_store).await.unwrap();
    assert_eq!(restored.orgs, taken.orgs);
    assert_eq!(restored.projects, taken.projects);
    assert_eq!(restored.virtual_keys, taken.virtual_keys);
    assert_eq!(restored.audit_log, taken.audit_log);
    assert_eq!(restored.guardrail_blocks, taken.guardrail_blocks);
    assert_eq!(restored.provider_objects, taken.provider_objects);
    // The cursor sequence moved past the restored rows; the tombstone stays deleted.
    let n = dst_store
        .insert_objects(&[object("file-3", false), object("file-2", false)])
        .await
        .unwrap();
    assert_eq!((n.stored, n.duplicates), (1, 1));
    let (live, _) = dst_store
        .list_objects(&Default::default(), 0, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = live.iter().map(|o| o.object_id.as_str()).collect();
    assert_eq!(ids, ["file-1", "file-3"]);
    dst_store.close().await;
    let (s2, issuer2, rsa2) = pg_server(&dst).await;
    let admin2 = rsa2.sign(&issuer2.claims("root-admin", &["platform-admins"]));
    assert_eq!(api_view(&s2, &admin2).await, view);
    // Sequences moved past the restored ids.
    let (st, v) = s2
        .post(
            "/api/v1/orgs/acme/projects",
            &admin2,
            json!({"slug": "after-restore"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    s2.stop().await;

    // Postgres → SQLite → Postgres.
    let lite = common::temp_db();
    let lite_store = Store::connect(&Secret::new(format!("sqlite://{lite}?mode=rwc")), 1)
        .await
        .unwrap();
    backup::restore(&lite_store, &taken).await.unwrap();
    let via_lite = backup::take(&lite_store).await.unwrap();
    lite_store.close().await;
    assert_eq!(via_lite.orgs, taken.orgs);
    assert_eq!(via_lite.policies, taken.policies);
    assert_eq!(via_lite.routes, taken.routes);
    let back = PgDb::create().await;
    let back_store = Store::connect(&Secret::new(back.url.clone()), 2)
        .await
        .unwrap();
    backup::restore(&back_store, &via_lite).await.unwrap();
    let final_ = backup::take(&back_store).await.unwrap();
    back_store.close().await;
    assert_eq!(final_.virtual_keys, taken.virtual_keys);
    assert_eq!(final_.audit_log, taken.audit_log);
    assert_eq!(final_.guardrail_blocks, taken.guardrail_blocks);
    assert_eq!(final_.policies, taken.policies);
    assert_eq!(final_.provider_objects, taken.provider_objects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_store_goes_away() {
    let db = PgDb::create().await;
    let (s, _issuer, _rsa) = pg_server(&db).await;
    let ready = || async {
        s.http
            .get(format!("{}/readyz", s.admin_url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);
    let mut c = PgConnection::connect(ADMIN_URL).await.unwrap();
    c.execute(format!("DROP DATABASE {} WITH (FORCE)", db.name).as_str())
        .await
        .unwrap();
    let mut last = 0;
    for _ in 0..50 {
        last = ready().await;
        if last == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 503, "readyz still reports ready without a database");
    // Liveness is unaffected.
    let live = s
        .http
        .get(format!("{}/healthz", s.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_stored_idempotently_and_summed_on_postgres() {
    let db = PgDb::create().await;
    let store = Store::connect(&Secret::new(db.url.clone()), 2)
        .await
        .unwrap();
    let rec = |id: &str, project: &str, at_ms: i64, input: u64| gateway_schema::UsageRecord {
        id: id.into(),
        request_id: format!("req-{id}"),
        at_ms,
        org: "acme".into(),
        project: project.into(),
        key_id: None,
        provider: "openai".into(),
        route: "gpt-*".into(),
        model: Some("gpt-4o".into()),
        input_tokens: input,
        output_tokens: 1,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_pico: Some(u64::from(id.len() as u32)),
        status: 200,
        latency_ms: 3,
        complete: true,
    };
    let day = 86_400_000;
    let batch = vec![
        rec("a", "web", day, 5),
        rec("bb", "web", 2 * day, 7),
        rec("ccc", "api", 2 * day + 1, 9),
    ];
    assert_eq!(store.insert_usage(&batch).await.unwrap(), 3);
    assert_eq!(store.insert_usage(&batch).await.unwrap(), 0);
    // Cache hits: idempotent too, and summed with the same grouping.
    let hit = |id: &str, project: &str, at_ms: i64| gateway_schema::CacheHitRecord {
        id: id.into(),
        request_id: format!("req-{id}"),
        source_request_id: "req-a".into(),
        at_ms,
        org: "acme".into(),
        project: project.into(),
        key_id: None,
        provider: "openai".into(),
        route: "gpt-*".into(),
        model: Some("gpt-4o".into()),
        input_tokens: 5,
        output_tokens: 1,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cost_saved_pico: Some(10),
    };
    let hits = vec![hit("h1", "web", day + 5), hit("h2", "web", day + 6)];
    assert_eq!(store.insert_cache_hits(&hits).await.unwrap(), 2);
    assert_eq!(store.insert_cache_hits(&hits).await.unwrap(), 0);
    let saved = store
        .query_savings(
            "acme",
            &controlplane::store::UsageFilter::default(),
            controlplane::store::UsageGrouping {
                project: true,
                model: false,
                day: true,
            },
        )
        .await
        .unwrap();
    let got: Vec<(String, i64, i64, i64, i64)> = saved
        .iter()
        .map(|r| {
            (
                r.project.clone(),
                r.day,
                r.hits,
                r.input_tokens,
                r.cost_saved_pico,
            )
        })
        .collect();
    assert_eq!(got, vec![("web".into(), 1, 2, 10, 20)]);
    assert_eq!(store.purge_cache_hits(day + 6).await.unwrap(), 1);
    let g = controlplane::store::UsageGrouping {
        project: true,
        model: true,
        day: true,
    };
    let rows = store
        .query_usage("acme", &controlplane::store::UsageFilter::default(), g)
        .await
        .unwrap();
    let got: Vec<(String, i64, i64, i64)> = rows
        .iter()
        .map(|r| (r.project.clone(), r.day, r.input_tokens, r.cost_pico))
        .collect();
    assert_eq!(
        got,
        vec![
            ("api".into(), 2, 9, 3),
            ("web".into(), 1, 5, 1),
            ("web".into(), 2, 7, 2)
        ]
    );
    let total = store
        .query_usage(
            "acme",
            &controlplane::store::UsageFilter::default(),
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!((total[0].requests, total[0].input_tokens), (3, 21));
    assert_eq!(store.purge_usage(2 * day).await.unwrap(), 1);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrail_blocks_are_stored_idempotently_and_filtered_on_postgres() {
    let db = PgDb::create().await;
    let store = Store::connect(&Secret::new(db.url.clone()), 2)
        .await
        .unwrap();
    add_guardrail_blocks(&store).await;
    add_guardrail_blocks_again_changes_nothing(&store).await;
    let page = controlplane::store::Page {
        after: 0,
        limit: 10,
    };
    let f = controlplane::store::GuardrailBlockFilter {
        action: Some("redact".into()),
        project: Some("web".into()),
        ..Default::default()
    };
    let rows = store
        .query_guardrail_blocks("acme", &f, page)
        .await
        .unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r.record_id.as_str())
            .collect::<Vec<_>>(),
        vec!["gb-2"]
    );
    let all = store
        .query_guardrail_blocks("acme", &Default::default(), page)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let other_org = store
        .query_guardrail_blocks("globex", &Default::default(), page)
        .await
        .unwrap();
    assert!(other_org.is_empty());
    assert_eq!(store.purge_guardrail_blocks(i64::MAX).await.unwrap(), 2);
    store.close().await;
}

async fn add_guardrail_blocks_again_changes_nothing(store: &Store) {
    let rows = |n| async move {
        store
            .query_guardrail_blocks(
                "acme",
                &Default::default(),
                controlplane::store::Page { after: 0, limit: n },
            )
            .await
            .unwrap()
    };
    let before = rows(10).await;
    let again: Vec<gateway_schema::GuardrailBlockRecord> = before
        .iter()
        .map(|r| gateway_schema::GuardrailBlockRecord {
            id: r.record_id.clone(),
            request_id: r.request_id.clone(),
            at_ms: r.at_ms,
            org: r.org.clone(),
            project: r.project.clone(),
            key_id: r.key_id.clone(),
            rule_id: r.rule_id.clone(),
            action: gateway_schema::GuardrailAction::Block,
        })
        .collect();
    assert_eq!(store.insert_guardrail_blocks(&again).await.unwrap(), 0);
    assert_eq!(rows(10).await, before);
}
