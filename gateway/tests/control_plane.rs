//! Control-plane mode end to end: the real control plane (in-process) compiles, signs and
//! streams snapshots; the real gateway binary verifies and applies them, keeps the last good
//! one on disk, and reports its status. Everything crosses real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/cp.rs"]
mod cp;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use cp::{eventually, ControlPlane, Secrets};
use serde_json::json;

/// Changes made through the API must show on the gateway within this long. The design target
/// is one second; the bound leaves room for a loaded CI machine.
const PROPAGATION: Duration = Duration::from_secs(3);
/// For outcomes that are not timing claims: long enough for any loaded machine.
const SETTLE: Duration = Duration::from_secs(15);

async fn chat_status(gw: &GatewayProc, key: &str, model: &str) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(model, false))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn cp_gateway(
    secrets: &Secrets,
    cp: &ControlPlane,
    id: &str,
    wait_ready: bool,
) -> GatewayProc {
    let lkg = secrets.dir.join(format!("{id}-lkg.json"));
    GatewayProc::launch("", "", &secrets.gateway_args(&cp.url, &lkg, id), wait_ready).await
}

fn lkg_path(secrets: &Secrets, id: &str) -> std::path::PathBuf {
    secrets.dir.join(format!("{id}-lkg.json"))
}

/// The last-known-good file's text once it holds `version` (it is written just after the swap).
async fn lkg_at(secrets: &Secrets, id: &str, version: i64) -> String {
    let path = lkg_path(secrets, id);
    let mut text = String::new();
    eventually(SETTLE, "the last-known-good file is written", || {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        let v: i64 = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["version"].as_i64())
            .unwrap_or(-1);
        async move { v == version }
    })
    .await;
    text
}

async fn snapshot_version(gw: &GatewayProc) -> i64 {
    gw.readyz().await.1["snapshot_version"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test]
async fn api_changes_reach_the_gateway_within_a_second_without_failing_other_requests() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    let (steady_key, _) = cp.mint("acme", "app").await;
    let gw = cp_gateway(&secrets, &cp, "gw-a", true).await;
    eventually(PROPAGATION, "the seeded key works", || async {
        chat_status(&gw, &steady_key, "gpt-4o").await == 200
    })
    .await;

    // A key minted now works through the gateway within the bound.
    cp.post("/api/v1/orgs/acme/projects", json!({"slug": "other"}))
        .await;
    let (key, key_id) = cp.mint("acme", "other").await;
    let took = eventually(PROPAGATION, "a new key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    println!("new key usable after {took:?}");

    // Steady traffic on another key while 50 changes are made: not one failure.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, sent) = (stop.clone(), failures.clone(), sent.clone());
        let url = gw.url("/v1/chat/completions");
        let key = steady_key.clone();
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let ok = c
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&chat_body("gpt-4o", false))
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for i in 0..50 {
        let body = if i % 2 == 0 {
            json!({"allowed_models": ["gpt-4o", "gpt-4o-mini"]})
        } else {
            json!({"max_request_bytes": 1_000_000 + i})
        };
        cp.put("/api/v1/orgs/acme/policies/std", body).await;
    }
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests on an untouched key failed while {} were sent",
        sent.load(Ordering::Relaxed)
    );
    assert!(sent.load(Ordering::Relaxed) > 10);

    // Revoking the key: 401 within the bound.
    cp.delete(&format!("/api/v1/orgs/acme/projects/other/keys/{key_id}"))
        .await;
    eventually(PROPAGATION, "a revoked key gets 401", || async {
        chat_status(&gw, &key, "gpt-4o").await == 401
    })
    .await;

    // Narrowing the allowed models: 403 within the bound.
    cp.put(
        "/api/v1/orgs/acme/policies/std",
        json!({"allowed_models": ["gpt-4o-mini"]}),
    )
    .await;
    eventually(PROPAGATION, "a disallowed model gets 403", || async {
        chat_status(&gw, &steady_key, "gpt-4o").await == 403
    })
    .await;

    // Lowering the body cap: 413 within the bound.
    cp.put(
        "/api/v1/orgs/acme/policies/std",
        json!({"allowed_models": ["gpt-4o-mini"], "max_request_bytes": 20}),
    )
    .await;
    eventually(PROPAGATION, "a body over the new cap gets 413", || async {
        chat_status(&gw, &steady_key, "gpt-4o-mini").await == 413
    })
    .await;

    // The gateway list shows this gateway on the current version.
    let current = cp.current_version().await;
    eventually(
        PROPAGATION,
        "the gateway reports the current version",
        || async {
            let (_, v) = cp.get("/api/v1/gateways").await;
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|g| g["id"] == "gw-a" && g["version"] == current && g["current"] == true)
        },
    )
    .await;
    let m = gw.metrics().await;
    assert!(
        m.contains(&format!("gateway_snapshot_version {current}")),
        "{m}"
    );
    assert!(m.contains("gateway_control_plane_connected 1"), "{m}");
    let cpm = reqwest::get(format!("{}/metrics", cp.admin_url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        cpm.contains(&format!("controlplane_snapshot_version {current}")),
        "{cpm}"
    );
    assert!(cpm.contains("controlplane_connected_gateways 1"), "{cpm}");
    assert!(
        cpm.contains("controlplane_snapshot_compile_seconds_count"),
        "{cpm}"
    );
}

#[tokio::test]
async fn orgs_with_same_named_providers_reach_only_their_own_upstream() {
    let up_a = MockUpstream::start().await;
    let up_b = MockUpstream::start().await;
    let secrets = Secrets::new();
    let cp = ControlPlane::start(&secrets).await;
    cp.seed_org("org-a", "openai", up_a.addr).await;
    cp.seed_org("org-b", "openai", up_b.addr).await;
    // A provider and a model only org B has.
    cp.post(
        "/api/v1/orgs/org-b/providers",
        json!({"slug": "only-b", "kind": "openai", "base_url": format!("http://{}", up_b.addr),
               "api_key_ref": "env:TEST_OPENAI_KEY"}),
    )
    .await;
    cp.post(
        "/api/v1/orgs/org-b/routes",
        json!({"slug": "bmodel", "model": "b-model", "provider": "only-b"}),
    )
    .await;
    let (key_a, _) = cp.mint("org-a", "app").await;
    let (key_b, _) = cp.mint("org-b", "app").await;
    let gw = cp_gateway(&secrets, &cp, "gw-orgs", true).await;
    eventually(PROPAGATION, "both keys work", || async {
        chat_status(&gw, &key_a, "gpt-4o").await == 200
            && chat_status(&gw, &key_b, "gpt-4o").await == 200
    })
    .await;
    assert_eq!(
        up_a.count(),
        1,
        "org A's request went to org A's upstream only"
    );
    assert_eq!(
        up_b.count(),
        1,
        "org B's request went to org B's upstream only"
    );

    // Org A naming org B's model or provider gets exactly what an unknown one gets.
    let unknown_model = post_json(
        &gw,
        "/v1/chat/completions",
        &key_a,
        &chat_body("no-such-model", false),
    )
    .await;
    let b_model = post_json(
        &gw,
        "/v1/chat/completions",
        &key_a,
        &chat_body("b-model", false),
    )
    .await;
    assert_eq!(
        error_code(unknown_model).await,
        (404, "model_not_found".into())
    );
    assert_eq!(error_code(b_model).await, (404, "model_not_found".into()));
    let unknown_provider = post_json(
        &gw,
        "/nosuch/v1/chat/completions",
        &key_a,
        &chat_body("gpt-4o", false),
    )
    .await;
    let b_provider = post_json(
        &gw,
        "/only-b/v1/chat/completions",
        &key_a,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(
        error_code(unknown_provider).await,
        (404, "unknown_path".into())
    );
    assert_eq!(error_code(b_provider).await, (404, "unknown_path".into()));
    // Org B itself reaches its provider natively.
    let native = post_json(
        &gw,
        "/only-b/v1/chat/completions",
        &key_b,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(native.status(), 200);
    assert_eq!(up_a.count(), 1);
    assert_eq!(up_b.count(), 2);

    // Metrics and logs name projects as org/project.
    let m = gw.metrics().await;
    assert!(m.contains(r#"project="org-a/app""#), "{m}");
    assert!(m.contains(r#"project="org-b/app""#), "{m}");
}

#[tokio::test]
async fn gateway_serves_through_control_plane_outage_and_restart_from_last_known_good() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let mut cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    let (key, _) = cp.mint("acme", "app").await;
    let mut gw = cp_gateway(&secrets, &cp, "gw-lkg", true).await;
    eventually(PROPAGATION, "the key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    let applied = snapshot_version(&gw).await;
    assert!(
        lkg_path(&secrets, "gw-lkg").exists(),
        "the last-known-good file is written"
    );

    // Control plane down: the gateway keeps serving.
    cp.stop().await;
    eventually(SETTLE, "the gateway notices", || async {
        gw.metrics()
            .await
            .contains("gateway_control_plane_connected 0")
    })
    .await;
    assert_eq!(chat_status(&gw, &key, "gpt-4o").await, 200);
    assert_eq!(gw.readyz().await.0, 200);

    // Gateway restarted while the control plane is still down: ready from the file.
    gw.kill();
    gw.spawn(true).await;
    assert_eq!(snapshot_version(&gw).await, applied);
    assert_eq!(chat_status(&gw, &key, "gpt-4o").await, 200);
    assert!(gw.logs().contains("last-known-good"), "{}", gw.logs());

    // Control plane back (same database and address): the gateway reconnects on its own and
    // catches up with a change made after the restart.
    cp.restart().await;
    cp.post("/api/v1/orgs/acme/projects", json!({"slug": "later"}))
        .await;
    let (later_key, _) = cp.mint("acme", "later").await;
    eventually(
        Duration::from_secs(20),
        "the gateway catches up",
        || async { chat_status(&gw, &later_key, "gpt-4o").await == 200 },
    )
    .await;
    let current = cp.current_version().await;
    eventually(PROPAGATION, "versions match", || async {
        snapshot_version(&gw).await == current as i64
    })
    .await;
    assert!(
        current as i64 > applied,
        "versions only grow across restarts"
    );
}

#[tokio::test]
async fn without_control_plane_or_file_the_gateway_is_not_ready_and_says_why() {
    let secrets = Secrets::new();
    let cp = ControlPlane::start(&secrets).await;
    let url = cp.url.clone();
    drop(cp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lkg = lkg_path(&secrets, "gw-none");
    let gw = GatewayProc::launch("", "", &secrets.gateway_args(&url, &lkg, "gw-none"), false).await;
    let (status, body) = gw.readyz().await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "not_ready");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or("")
            .contains("no last-known-good file"),
        "{body}"
    );
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        "gwk_any",
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(error_code(r).await, (503, "config_not_loaded".into()));
}

#[tokio::test]
async fn tampered_last_known_good_and_wrong_secrets_are_refused() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let mut cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    let (key, _) = cp.mint("acme", "app").await;
    let mut gw = cp_gateway(&secrets, &cp, "gw-tamper", true).await;
    eventually(PROPAGATION, "the key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    lkg_at(&secrets, "gw-tamper", snapshot_version(&gw).await).await;
    cp.stop().await;
    gw.kill();

    // Change one byte of the payload: the signature no longer verifies.
    let path = lkg_path(&secrets, "gw-tamper");
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let payload = envelope["payload"]
        .as_str()
        .unwrap()
        .replace("\"app\"", "\"evil\"");
    envelope["payload"] = json!(payload);
    std::fs::write(&path, envelope.to_string()).unwrap();
    gw.spawn(false).await;
    let (status, body) = gw.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reason"].as_str().unwrap_or("").contains("signature"),
        "{body}"
    );
    assert!(gw
        .metrics()
        .await
        .contains(r#"gateway_snapshot_rejections_total{reason="signature"} 1"#));
    assert_eq!(chat_status(&gw, &key, "gpt-4o").await, 503);

    // The stream without, or with a wrong, internal secret: 401 from the control plane.
    cp.restart().await;
    let stream = format!("{}/internal/v1/snapshots/stream", cp.url);
    let none = cp.http.get(&stream).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = cp
        .http
        .get(&stream)
        .bearer_auth("not-the-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // A gateway holding a wrong secret stays not ready and says why in its log.
    let bad = Secrets {
        secret_file: secrets.dir.join("wrong-secret"),
        ..secrets.clone()
    };
    std::fs::write(&bad.secret_file, "wrong").unwrap();
    let lkg = lkg_path(&secrets, "gw-wrong");
    let wrong_gw =
        GatewayProc::launch("", "", &bad.gateway_args(&cp.url, &lkg, "gw-wrong"), false).await;
    eventually(SETTLE, "the refusal is logged", || async {
        wrong_gw.logs().contains("401")
    })
    .await;
    assert_eq!(wrong_gw.readyz().await.0, 503);

    // The genuine gateway recovers from the control plane, tampered file or not.
    eventually(
        Duration::from_secs(20),
        "recovery from the stream",
        || async { chat_status(&gw, &key, "gpt-4o").await == 200 },
    )
    .await;
}

/// A stand-in control plane that streams whatever envelopes the test gives it.
async fn fake_stream(events: Vec<String>) -> std::net::SocketAddr {
    use axum::response::sse::{Event, Sse};
    let app = axum::Router::new().route(
        "/internal/v1/snapshots/stream",
        axum::routing::get(move || {
            let events = events.clone();
            async move {
                let s = futures_util::stream::iter(events.into_iter().map(|e| {
                    Ok::<_, std::convert::Infallible>(Event::default().event("snapshot").data(e))
                }));
                let tail = futures_util::stream::pending();
                Sse::new(futures_util::StreamExt::chain(s, tail))
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

#[tokio::test]
async fn foreign_signed_and_replayed_older_snapshots_are_refused_and_counted() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let mut cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    let (key, _) = cp.mint("acme", "app").await;
    // Capture an older and a newer genuine snapshot, as the gateway would store them.
    let gw = cp_gateway(&secrets, &cp, "gw-capture", true).await;
    eventually(PROPAGATION, "the key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    let old_version = snapshot_version(&gw).await;
    let old = lkg_at(&secrets, "gw-capture", old_version).await;
    cp.post("/api/v1/orgs/acme/projects", json!({"slug": "newer"}))
        .await;
    eventually(PROPAGATION, "a newer version", || async {
        snapshot_version(&gw).await > old_version
    })
    .await;
    let new_version = snapshot_version(&gw).await;
    let new = lkg_at(&secrets, "gw-capture", new_version).await;
    cp.stop().await;
    drop(gw);

    // A forger's key signs a snapshot that lets an attacker's key in.
    let (forged_key_file, _) = secrets.other_key_pair();
    let forger = gateway_schema::SigningKey::from_base64(&gateway_schema::Secret::new(
        std::fs::read_to_string(forged_key_file).unwrap(),
    ))
    .unwrap();
    let evil: gateway_schema::Snapshot = serde_json::from_value(json!({
        "version": new_version + 1000,
        "projects": [{"slug": "evil", "keys": [{"digest": digest("gwk_attacker")}]}]
    }))
    .unwrap();
    let forged = serde_json::to_string(&forger.sign(&evil).unwrap()).unwrap();

    // The fake control plane sends: the newer genuine one, then the forged one, then the
    // older genuine one (a replay).
    let fake = fake_stream(vec![new.clone(), forged, old]).await;
    let lkg = lkg_path(&secrets, "gw-fake");
    let gw = GatewayProc::launch(
        "",
        "",
        &secrets.gateway_args(&format!("http://{fake}"), &lkg, "gw-fake"),
        true,
    )
    .await;
    eventually(SETTLE, "both refusals are counted", || async {
        let m = gw.metrics().await;
        m.contains(r#"gateway_snapshot_rejections_total{reason="signature"} 1"#)
            && m.contains(r#"gateway_snapshot_rejections_total{reason="older"} 1"#)
    })
    .await;
    assert_eq!(
        snapshot_version(&gw).await,
        new_version,
        "the running snapshot is untouched"
    );
    assert_eq!(chat_status(&gw, "gwk_attacker", "gpt-4o").await, 401);
    assert_eq!(chat_status(&gw, &key, "gpt-4o").await, 200);
    let logs = gw.logs();
    assert!(logs.contains("snapshot refused"), "{logs}");
    assert!(logs.contains("older"), "{logs}");
}

/// A fresh Postgres database on the machine's server, for the two-replica case.
async fn postgres_db() -> String {
    use sqlx::{Connection, Executor};
    const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
    let mut c = match tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::PgConnection::connect(ADMIN),
    )
    .await
    {
        Ok(Ok(c)) => c,
        other => panic!(
            "PostgreSQL is not reachable at {ADMIN} ({:?}). Start it with: \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            other.map(|r| r.err())
        ),
    };
    let name = format!(
        "gw_cp_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    c.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let _ = c.close().await;
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

#[tokio::test]
async fn a_change_through_one_replica_reaches_a_gateway_streaming_from_another() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let db = postgres_db().await;
    let replica_a = ControlPlane::start_on(&secrets, &db, "127.0.0.1:0").await;
    let replica_b = ControlPlane::start_on(&secrets, &db, "127.0.0.1:0").await;
    replica_a.seed_org("acme", "openai", up.addr).await;
    // The gateway streams from replica B only.
    let gw = cp_gateway(&secrets, &replica_b, "gw-b", true).await;
    let (key, key_id) = replica_a.mint("acme", "app").await;
    let took = eventually(
        Duration::from_secs(2),
        "a key minted on A works via B",
        || async { chat_status(&gw, &key, "gpt-4o").await == 200 },
    )
    .await;
    println!("replica A -> replica B -> gateway: {took:?}");
    replica_a
        .delete(&format!("/api/v1/orgs/acme/projects/app/keys/{key_id}"))
        .await;
    eventually(
        Duration::from_secs(2),
        "a revocation on A reaches the gateway via B",
        || async { chat_status(&gw, &key, "gpt-4o").await == 401 },
    )
    .await;
    // Both replicas serve the same, newest version.
    let (a, b) = (
        replica_a.current_version().await,
        replica_b.current_version().await,
    );
    assert_eq!(a, b);
    assert_eq!(snapshot_version(&gw).await, a as i64);
}

#[tokio::test]
async fn a_key_minted_through_the_api_works_with_the_official_openai_sdk_on_every_gateway() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    let gw1 = cp_gateway(&secrets, &cp, "gw-sdk-1", true).await;
    let gw2 = cp_gateway(&secrets, &cp, "gw-sdk-2", true).await;
    let (key, _) = cp.mint("acme", "app").await;
    for gw in [&gw1, &gw2] {
        eventually(
            PROPAGATION,
            "the new key works on every gateway",
            || async { chat_status(gw, &key, "gpt-4o").await == 200 },
        )
        .await;
    }
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.exists(),
        "no Python with the SDKs at {}: run scripts/test.sh (it creates .venv)",
        python.display()
    );
    let script = "import os, openai\n\
        c = openai.OpenAI(base_url=os.environ['GATEWAY_URL'] + '/v1', api_key=os.environ['GATEWAY_KEY'], max_retries=0)\n\
        r = c.chat.completions.create(model='gpt-4o', messages=[{'role': 'user', 'content': 'hi'}])\n\
        print(r.choices[0].message.content)\n";
    for gw in [&gw1, &gw2] {
        // Async: the mock upstream and the control plane run on this test's runtime.
        let out = tokio::process::Command::new(&python)
            .args(["-c", script])
            .env("GATEWAY_URL", gw.url(""))
            .env("GATEWAY_KEY", &key)
            .env_remove("OPENAI_API_KEY")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "Hello from mock"
        );
    }
}

#[tokio::test]
async fn after_a_restore_from_backup_versions_keep_growing_and_gateways_catch_up() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let db1 = secrets.dir.join("before.db").display().to_string();
    let mut cp = ControlPlane::start_on(&secrets, &db1, "127.0.0.1:0").await;
    cp.seed_org("acme", "openai", up.addr).await;
    let (key, _) = cp.mint("acme", "app").await;
    let gw = cp_gateway(&secrets, &cp, "gw-restore", true).await;
    eventually(PROPAGATION, "the key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    let before = snapshot_version(&gw).await;
    let addr = cp.addr.to_string();
    cp.stop().await;

    // Back up the store and restore it into a new, empty database.
    let backup = secrets.dir.join("backup.json");
    let store = |db: &str| {
        let url = gateway_schema::Secret::new(format!("sqlite://{db}?mode=rwc"));
        async move { controlplane::store::Store::connect(&url, 1).await.unwrap() }
    };
    controlplane::backup::backup_to_file(&store(&db1).await, &backup)
        .await
        .unwrap();
    let db2 = secrets.dir.join("restored.db").display().to_string();
    controlplane::backup::restore_from_file(&store(&db2).await, &backup)
        .await
        .unwrap();

    // The control plane comes back on the restored database: the gateway takes its snapshot
    // (a higher version than it held), and the key still works.
    let _cp = ControlPlane::start_on(&secrets, &db2, &addr).await;
    eventually(
        SETTLE,
        "the gateway takes the restored control plane's snapshot",
        || async { snapshot_version(&gw).await > before },
    )
    .await;
    assert_eq!(chat_status(&gw, &key, "gpt-4o").await, 200);
}

#[tokio::test]
async fn an_unresolvable_provider_key_answers_503_and_is_listed_by_name_only() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    cp.post(
        "/api/v1/orgs/acme/providers",
        json!({"slug": "nokey", "kind": "openai", "base_url": format!("http://{}", up.addr),
               "api_key_ref": "env:TEST_SURELY_UNSET_KEY"}),
    )
    .await;
    cp.post(
        "/api/v1/orgs/acme/routes",
        json!({"slug": "nk", "model": "needs-key", "provider": "nokey"}),
    )
    .await;
    let (key, _) = cp.mint("acme", "app").await;
    let gw = cp_gateway(&secrets, &cp, "gw-nokey", true).await;
    eventually(PROPAGATION, "the key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        &key,
        &chat_body("needs-key", false),
    )
    .await;
    assert_eq!(error_code(r).await, (503, "provider_key_missing".into()));
    eventually(SETTLE, "the gateway list names the reference", || async {
        let (status, v) = cp.get("/api/v1/gateways").await;
        status == 200
            && v["items"].as_array().into_iter().flatten().any(|g| {
                g["id"] == "gw-nokey"
                    && g["unresolved"] == json!(["acme/nokey: env:TEST_SURELY_UNSET_KEY"])
                    && g["connected"] == true
            })
    })
    .await;
    // A global viewer may list gateways (org-scoped roles get 403: see the RBAC matrix test).
    let as_viewer = cp
        .http
        .get(format!("{}/api/v1/gateways", cp.url))
        .header("x-forwarded-email", "v@example.com")
        .header("x-forwarded-groups", "platform-viewers")
        .send()
        .await
        .unwrap();
    assert_eq!(as_viewer.status(), 200);
}

#[tokio::test]
async fn a_policy_in_flight_cap_set_through_the_api_is_enforced() {
    let up = MockUpstream::start().await;
    let secrets = Secrets::new();
    let cp = ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    cp.put(
        "/api/v1/orgs/acme/policies/std",
        json!({"max_in_flight": 1}),
    )
    .await;
    let (key, _) = cp.mint("acme", "app").await;
    let gw = cp_gateway(&secrets, &cp, "gw-inflight", true).await;
    eventually(PROPAGATION, "the key works", || async {
        chat_status(&gw, &key, "gpt-4o").await == 200
    })
    .await;
    let before = up.count();
    let stream = {
        let (url, key) = (gw.url("/v1/chat/completions"), key.clone());
        tokio::spawn(async move {
            let r = client()
                .post(url)
                .bearer_auth(key)
                .header("x-mock-chunk-delay-ms", "300")
                .json(&chat_body("gpt-4o", true))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        })
    };
    eventually(SETTLE, "the stream is in flight", || async {
        up.count() > before
    })
    .await;
    let r = post_json(
        &gw,
        "/v1/chat/completions",
        &key,
        &chat_body("gpt-4o", false),
    )
    .await;
    assert_eq!(error_code(r).await, (429, "concurrency_limit".into()));
    assert_eq!(stream.await.unwrap().0, 200);
    // The slot frees with the stream's last bytes: the very next request is admitted.
    assert_eq!(chat_status(&gw, &key, "gpt-4o").await, 200);
}
