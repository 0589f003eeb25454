//! The audit trail: its fields, its filters, retention, and that no body, token, key or
//! header value ever reaches it or the logs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::Env;
use controlplane::store::{now_millis, AuditRecord, Store};
use gateway_schema::Secret;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutating_request_is_recorded_with_every_field() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    let before = now_millis();
    let resp = s
        .req(reqwest::Method::POST, "/api/v1/orgs", Some(&admin))
        .header("x-request-id", "req-fields-1")
        .json(&json!({"slug": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let r = s.audit_for(&admin, "req-fields-1").await.unwrap();
    let at = r["at_ms"].as_i64().unwrap();
    assert!(at >= before && at <= now_millis());
    assert_eq!(r["actor_issuer"], env.issuer.url.as_str());
    assert_eq!(r["actor_subject"], "root-admin");
    assert_eq!(r["actor_email"], "root-admin@example.com");
    assert_eq!(r["role"], "admin@*");
    assert_eq!(r["action"], "POST /api/v1/orgs");
    assert_eq!(r["resource"], "/api/v1/orgs");
    assert_eq!(r["outcome"], "success");
    assert_eq!(r["status"], 201);
    assert!(r["reason"].is_null());
    assert!(r["source_addr"].as_str().unwrap().starts_with("127.0.0.1:"));

    // A failed mutation is recorded with its error code; a successful read is not.
    let (st, _) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
        .await;
    assert_eq!(st, 409);
    let all = s.audit(&admin).await;
    let conflict = all.iter().find(|r| r["status"] == 409).unwrap();
    assert_eq!(conflict["outcome"], "rejected");
    assert_eq!(conflict["reason"], "conflict");
    assert!(all.iter().all(|r| r["action"] != "GET /api/v1/orgs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_filters_by_time_actor_and_action() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    let editor = env.token("eddie", &["acme-editors"]);
    assert_eq!(
        s.post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
            .await
            .0,
        201
    );
    let mid = now_millis();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(
        s.post(
            "/api/v1/orgs/acme/projects",
            &editor,
            json!({"slug": "web"})
        )
        .await
        .0,
        201
    );
    let (_, v) = s.get("/api/v1/audit?actor=eddie", &admin).await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["action"], "POST /api/v1/orgs/{org}/projects");
    assert_eq!(items[0]["resource"], "/api/v1/orgs/acme/projects");
    let (_, v) = s.get("/api/v1/audit?actor=eddie@example.com", &admin).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, v) = s
        .get("/api/v1/audit?action=POST%20/api/v1/orgs", &admin)
        .await;
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor_subject"], "root-admin");
    let (_, v) = s
        .get(&format!("/api/v1/audit?since_ms={mid}"), &admin)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, v) = s
        .get(&format!("/api/v1/audit?until_ms={mid}"), &admin)
        .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let auditor = env.token("audrey", &["auditors"]);
    let (st, v) = s.get("/api/v1/audit", &auditor).await;
    assert_eq!(st, 200);
    assert!(v["items"].as_array().unwrap().len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_retention_period_are_purged() {
    let db = common::temp_db();
    let store = Store::connect(&Secret::new(format!("sqlite://{db}?mode=rwc")), 1)
        .await
        .unwrap();
    let day = 24 * 3600 * 1000;
    for (age_days, id) in [(40, "old"), (10, "recent")] {
        store
            .append_audit(&AuditRecord {
                id: 0,
                at_ms: now_millis() - age_days * day,
                actor_issuer: None,
                actor_subject: None,
                actor_email: None,
                role: None,
                action: "POST /api/v1/orgs".into(),
                resource: "/api/v1/orgs".into(),
                outcome: "success".into(),
                status: 201,
                reason: None,
                request_id: id.into(),
                source_addr: "127.0.0.1:1".into(),
            })
            .await
            .unwrap();
    }
    store.close().await;
    let rsa = common::TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
    let issuer = common::MockIssuer::start(&[&rsa]).await;
    let mut cfg = common::base_config(Some(&issuer.url), &db);
    cfg.audit.retention_days = 30;
    let server = common::TestServer::start(cfg).await;
    let admin = rsa.sign(&issuer.claims("root", &["platform-admins"]));
    let mut ids = Vec::new();
    for _ in 0..50 {
        ids = server
            .audit(&admin)
            .await
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_owned())
            .collect();
        if !ids.contains(&"old".to_owned()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ids, ["recent"]);
}

#[derive(Clone)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Buf(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,reqwest=off,hyper=off,hyper_util=off,h2=off",
            ))
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canaries_in_bodies_tokens_and_headers_never_reach_the_audit_store_or_logs() {
    let logs = capture_logs();
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    let canaries = [
        "CANARYBODY7f3a",
        "CANARYTOKEN9c1e",
        "CANARYHEADER4b2d",
        "CANARYCOOKIE8e6f",
        "CANARYQUERY2a9b",
        "CANARYAPIKEY5d3c",
        "CANARYSUB6a1f",
    ];

    // Body canaries, in a successful and a failing mutation.
    let (st, _) = s
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "acme", "display_name": "CANARYBODY7f3a"}),
        )
        .await;
    assert_eq!(st, 201);
    let (st, _) = s
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "acme", "display_name": "CANARYBODY7f3a"}),
        )
        .await;
    assert_eq!(st, 409);
    let (st, _) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "CANARYBODY7f3a"}))
        .await;
    assert_eq!(st, 400);
    // A valid token carrying a canary claim, a query canary and header canaries.
    let mut c = env.issuer.claims("root-admin", &["platform-admins"]);
    c["note"] = json!("CANARYTOKEN9c1e");
    let token = env.rsa.sign(&c);
    let resp = s
        .req(
            reqwest::Method::POST,
            "/api/v1/orgs?q=CANARYQUERY2a9b",
            Some(&token),
        )
        .header("user-agent", "CANARYHEADER4b2d")
        .header("cookie", "session=CANARYCOOKIE8e6f")
        .header("x-api-key", "CANARYAPIKEY5d3c")
        .header("x-forwarded-email", "CANARYHEADER4b2d@example.com")
        .json(&json!({"slug": "beta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // A forged token whose claims carry a canary subject.
    let forged = format!(
        "{}.{}.{}",
        B64.encode(br#"{"alg":"RS256","kid":"rsa-1"}"#),
        B64.encode(json!({"sub": "CANARYSUB6a1f", "note": "CANARYTOKEN9c1e"}).to_string()),
        B64.encode(b"CANARYTOKEN9c1e-signature")
    );
    let (st, _) = s.post("/api/v1/orgs", &forged, json!({"slug": "x"})).await;
    assert_eq!(st, 401);
    // A key: its plaintext must not reach the audit store or logs either.
    let (st, _) = s
        .post("/api/v1/orgs/acme/projects", &admin, json!({"slug": "web"}))
        .await;
    assert_eq!(st, 201);
    let (st, key) = s
        .post(
            "/api/v1/orgs/acme/projects/web/keys",
            &admin,
            json!({"name": "ci"}),
        )
        .await;
    assert_eq!(st, 201);
    let plaintext = key["plaintext"].as_str().unwrap().to_owned();

    let store = Store::connect(&Secret::new(format!("sqlite://{}", env.db)), 1)
        .await
        .unwrap();
    let dump = controlplane::backup::take(&store).await.unwrap();
    store.close().await;
    assert!(
        dump.audit_log.len() >= 7,
        "expected the requests above to be audited"
    );
    let audit_text = serde_json::to_string(&dump.audit_log).unwrap();
    let log_text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(log_text.contains("request_id"), "logs were not captured");
    let secrets: Vec<&str> = canaries
        .iter()
        .copied()
        .chain([
            plaintext.as_str(),
            &plaintext[12..],
            token.as_str(),
            forged.as_str(),
        ])
        .collect();
    for c in secrets {
        assert!(!audit_text.contains(c), "{c} reached the audit store");
        assert!(!log_text.contains(c), "{c} reached the logs");
    }
    // The body canary did reach the config store, where it belongs (the test can see it).
    assert!(serde_json::to_string(&dump.orgs)
        .unwrap()
        .contains("CANARYBODY7f3a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_is_still_audited() {
    use tokio::io::AsyncWriteExt;
    let env = Env::start().await;
    let admin = env.admin();
    let mut conn = tokio::net::TcpStream::connect(env.server.addr)
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/orgs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\n\
         X-Request-Id: gone-away\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"slug\""
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(conn);
    let mut rec = None;
    for _ in 0..100 {
        rec = env.server.audit_for(&admin, "gone-away").await;
        if rec.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rec = rec.expect("abandoned request was not audited");
    assert_eq!(rec["actor_subject"], "root-admin");
    assert_eq!(rec["action"], "POST /api/v1/orgs");
    assert_eq!(rec["status"], 400);
    assert_eq!(rec["reason"], "body_read_failed");
}
