//! `controlplane backup --out` / `restore --in` round trip on SQLite, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::data::{add_guardrail_blocks, api_view, populate};
use common::{Env, TestServer};
use controlplane::backup::{self, Backup};
use controlplane::store::Store;
use gateway_schema::Secret;
use serde_json::json;

fn same_data(a: &Backup, b: &Backup) {
    assert_eq!(a.orgs, b.orgs);
    assert_eq!(a.policies, b.policies);
    assert_eq!(a.projects, b.projects);
    assert_eq!(a.providers, b.providers);
    assert_eq!(a.routes, b.routes);
    assert_eq!(a.virtual_keys, b.virtual_keys);
    assert_eq!(a.audit_log, b.audit_log);
    assert_eq!(a.usage_records, b.usage_records);
    assert_eq!(a.cache_hits, b.cache_hits);
    assert_eq!(a.guardrail_blocks, b.guardrail_blocks);
    assert_eq!(a.guardrail_blocks.len(), 2);
    assert_eq!(a.provider_objects, b.provider_objects);
}

/// Usage records as a gateway reports them: priced and unpriced, complete and cut short.
fn usage_records() -> Vec<gateway_schema::UsageRecord> {
    (0..3u64)
        .map(|i| gateway_schema::UsageRecord {
            id: format!("gw-1:{i}"),
            request_id: format!("req-{i}"),
            at_ms: 1_790_000_000_000 + i as i64,
            org: "acme".into(),
            project: "web".into(),
            key_id: (i != 1).then(|| "key-1".into()),
            provider: "openai".into(),
            route: "gpt-*".into(),
            model: (i != 2).then(|| "gpt-4o-mini".into()),
            input_tokens: 10 + i,
            output_tokens: 20 + i,
            cache_read_tokens: i,
            cache_write_tokens: 0,
            cost_pico: (i != 2).then_some(1_500_000 * (i + 1)),
            status: 200,
            latency_ms: 42,
            complete: i != 1,
        })
        .collect()
}

fn write_config(dir: &Path, db: &str) -> std::path::PathBuf {
    let p = dir.join(format!("cfg-{}.yaml", common::unique("")));
    std::fs::write(&p, format!("database:\n  sqlite_path: \"{db}\"\n")).unwrap();
    p
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_controlplane"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

async fn open(db: &str) -> Store {
    Store::connect(&Secret::new(format!("sqlite://{db}?mode=rwc")), 1)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_restores_into_a_fresh_store_identically() {
    let env = Env::start().await;
    let admin = env.admin();
    let plaintext = populate(&env.server, &admin).await;
    let view_a = api_view(&env.server, &admin).await;
    let Env {
        server,
        issuer,
        rsa,
        db,
        ..
    } = env;
    server.stop().await;
    let store = open(&db).await;
    assert_eq!(store.insert_usage(&usage_records()).await.unwrap(), 3);
    add_guardrail_blocks(&store).await;
    // Ownership records of provider objects, one of them deleted (a tombstone).
    let record = |kind: &str, id: &str, deleted: bool| gateway_schema::ObjectRecord {
        org: "acme".into(),
        project: "web".into(),
        provider: "openai".into(),
        kind: kind.into(),
        object_id: id.into(),
        at_ms: 1_795_824_000_000,
        deleted,
    };
    let n = store
        .insert_objects(&[
            record("file", "file-1", false),
            record("batch", "batch_1", false),
            record("batch", "batch_1", true),
        ])
        .await
        .unwrap();
    assert_eq!(n.stored, 3);
    store.close().await;
    // A cache hit a gateway reported is backed up and restored too.
    let hit: gateway_schema::CacheHitRecord = serde_json::from_value(json!({
        "id": "hit-1", "request_id": "req-2", "source_request_id": "req-1", "at_ms": 5,
        "org": "acme", "project": "web", "key_id": null, "provider": "openai",
        "route": "gpt-*", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 4,
        "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_saved_pico": 9
    }))
    .unwrap();
    assert_eq!(open(&db).await.insert_cache_hits(&[hit]).await.unwrap(), 1);

    let dir = std::env::temp_dir().join(common::unique("cp-backup-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("backup.json");
    let cfg_a = write_config(&dir, &db);
    let out = cli(&[
        "backup",
        "--config",
        cfg_a.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(&plaintext[12..]),
        "backup holds a key plaintext"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "backup readable by others: {mode:o}");
    }
    // Never overwrites.
    let again = cli(&[
        "backup",
        "--config",
        cfg_a.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(!again.status.success());

    let db_b = dir.join("restored.db").display().to_string();
    let cfg_b = write_config(&dir, &db_b);
    let out = cli(&[
        "restore",
        "--config",
        cfg_b.to_str().unwrap(),
        "--in",
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 orgs, 2 projects"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 provider objects"));
    // Restoring twice is refused: the target is no longer empty.
    let out = cli(&[
        "restore",
        "--config",
        cfg_b.to_str().unwrap(),
        "--in",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));

    let (a, b) = (open(&db).await, open(&db_b).await);
    let (taken_a, taken_b) = (
        backup::take(&a).await.unwrap(),
        backup::take(&b).await.unwrap(),
    );
    assert_eq!(taken_b.usage_records, usage_records());
    assert_eq!(taken_b.cache_hits.len(), 1);
    same_data(&taken_a, &taken_b);
    assert_eq!(taken_b.provider_objects.len(), 2);
    assert!(taken_b.provider_objects[1].deleted_at_ms.is_some());
    // The restored records serve seeding gateways as before (the tombstone stays deleted),
    // and new reports continue after them.
    let live = b.list_objects(&Default::default(), 0, 10).await.unwrap().0;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].object_id, "file-1");
    let n = b
        .insert_objects(&[
            record("file", "file-2", false),
            record("batch", "batch_1", false),
        ])
        .await
        .unwrap();
    assert_eq!((n.stored, n.duplicates), (1, 1));
    a.close().await;
    b.close().await;

    // The restored store serves the same API view, and new rows get fresh ids.
    let mut cfg = common::base_config(Some(&issuer.url), &db_b);
    cfg.audit.retention_days = 3650;
    let server_b = TestServer::start(cfg).await;
    let admin = rsa.sign(&issuer.claims("root-admin", &["platform-admins"]));
    assert_eq!(api_view(&server_b, &admin).await, view_a);
    let (st, v) = server_b
        .post(
            "/api/v1/orgs/acme/projects",
            &admin,
            json!({"slug": "after-restore"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_rejects_files_that_are_not_backups() {
    let dir = std::env::temp_dir().join(common::unique("cp-badbackup-"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.json");
    std::fs::write(&file, r#"{"format":"something-else","version":1}"#).unwrap();
    let store = open(&dir.join("x.db").display().to_string()).await;
    let err = backup::restore_from_file(&store, &file).await.unwrap_err();
    assert!(matches!(err, backup::BackupError::Format(..)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_written_before_usage_was_included_still_restores() {
    let dir = std::env::temp_dir().join(common::unique("cp-oldbackup-"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = open(&dir.join("a.db").display().to_string()).await;
    let mut doc = serde_json::to_value(backup::take(&source).await.unwrap()).unwrap();
    doc.as_object_mut()
        .unwrap()
        .remove("usage_records")
        .unwrap();
    let file = dir.join("old.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let target = open(&dir.join("b.db").display().to_string()).await;
    let counts = backup::restore_from_file(&target, &file).await.unwrap();
    assert_eq!(counts.usage, 0);
}
