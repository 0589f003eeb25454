//! `controlplane backup --out` / `restore --in` round trip on SQLite, through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::data::{api_view, populate};
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
    assert_eq!(a.provider_objects, b.provider_objects);
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
    // Ownership records of provider objects, one of them deleted (a tombstone).
    let store = open(&db).await;
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
