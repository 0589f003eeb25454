//! Shared test harness: a mock OIDC issuer (discovery + JWKS over a real socket), test keys,
//! token signing, and the real control plane started in-process on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod data;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use controlplane::config::Config;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub const AUD: &str = "controlplane-api";

pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{tag}{}x{}x{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A signing key of the mock issuer.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(file: &str, kid: &str) -> Self {
        let enc = EncodingKey::from_rsa_pem(&fixture(file)).unwrap();
        Self::new(enc, Algorithm::RS256, kid)
    }

    pub fn ec(file: &str, kid: &str) -> Self {
        let enc = EncodingKey::from_ec_pem(&fixture(file)).unwrap();
        Self::new(enc, Algorithm::ES256, kid)
    }

    fn new(enc: EncodingKey, alg: Algorithm, kid: &str) -> Self {
        let jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
        let mut v = serde_json::to_value(jwk).unwrap();
        v["kid"] = json!(kid);
        v["use"] = json!("sig");
        Self {
            kid: kid.into(),
            alg,
            enc,
            jwk: v,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }

    pub fn sign_with_kid(&self, claims: &Value, kid: &str) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, claims, &self.enc).unwrap()
    }
}

pub struct IssuerState {
    pub keys: Mutex<Vec<Value>>,
    pub jwks_fetches: AtomicUsize,
    pub discovery_fetches: AtomicUsize,
    /// The `issuer` the discovery document claims (normally the real URL).
    pub claimed_issuer: Mutex<Option<String>>,
    pub up: AtomicBool,
    pub url: Mutex<String>,
}

/// A local OIDC issuer: discovery + JWKS on a real socket, counting fetches.
pub struct MockIssuer {
    pub url: String,
    pub state: Arc<IssuerState>,
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> axum::response::Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if !s.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let url = s.url.lock().unwrap().clone();
    let issuer = s
        .claimed_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(url.clone());
    Json(json!({"issuer": issuer, "jwks_uri": format!("{url}/jwks")})).into_response()
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> axum::response::Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if !s.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = s.keys.lock().unwrap().clone();
    Json(json!({ "keys": keys })).into_response()
}

impl MockIssuer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let state = Arc::new(IssuerState {
            keys: Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            claimed_issuer: Mutex::new(None),
            up: AtomicBool::new(true),
            url: Mutex::new(url.clone()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Self { url, state }
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn add_raw_key(&self, v: Value) {
        self.state.keys.lock().unwrap().push(v);
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    /// Standard claims for `sub` with `groups`.
    pub fn claims(&self, sub: &str, groups: &[&str]) -> Value {
        json!({
            "iss": self.url,
            "sub": sub,
            "aud": AUD,
            "exp": now() + 600,
            "iat": now(),
            "email": format!("{sub}@example.com"),
            "email_verified": true,
            "groups": groups,
        })
    }
}

/// The standard test config: groups mapped to roles, small limits relaxed for tests.
pub fn base_config(issuer: Option<&str>, db: &str) -> Config {
    let oidc = match issuer {
        Some(url) => format!(
            "oidc:\n  issuer: \"{url}\"\n  audience: [\"{AUD}\", \"other-aud\"]\n  leeway_secs: 5\n"
        ),
        None => String::new(),
    };
    let yaml = format!(
        r#"
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace_secs: 2
database:
  sqlite_path: "{db}"
{oidc}
rbac:
  group_roles:
    - {{ group: platform-admins, org: "*", role: admin }}
    - {{ group: auditors, org: "*", role: auditor }}
    - {{ group: acme-admins, org: acme, role: admin }}
    - {{ group: acme-editors, org: acme, role: editor }}
    - {{ group: acme-viewers, org: acme, role: viewer }}
  break_glass_admins: ["breakglass@example.com"]
guards:
  rate_limit_burst: 10000
  rate_limit_per_second: 10000
"#
    );
    let cfg: Config = serde_yaml_ng::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    cfg
}

pub fn temp_db() -> String {
    let dir = std::env::temp_dir().join(unique("cp-test-"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("cp.db").display().to_string()
}

/// The real control plane, in-process, on ephemeral ports.
pub struct TestServer {
    pub url: String,
    pub admin_url: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub handle: Option<tokio::task::JoinHandle<Result<(), controlplane::RunError>>>,
}

impl TestServer {
    pub async fn start(cfg: Config) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let tls = cfg.server.tls.is_some();
        let url = format!("{}://{addr}", if tls { "https" } else { "http" });
        let admin_url = format!("http://{}", a.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(controlplane::run(l, a, cfg, async {
            let _ = rx.await;
        }));
        let mut http = reqwest::Client::builder().no_proxy();
        if tls {
            let ca = reqwest::Certificate::from_pem(&fixture("test-only-tls-cert.pem")).unwrap();
            http = http.add_root_certificate(ca);
        }
        let http = http.build().unwrap();
        let mut s = Self {
            url,
            admin_url,
            addr,
            http,
            stop: Some(tx),
            handle: Some(handle),
        };
        for _ in 0..200 {
            if let Ok(r) = s.http.get(format!("{}/healthz", s.url)).send().await {
                if r.status() == 200 {
                    return s;
                }
            }
            if s.handle.as_ref().unwrap().is_finished() {
                let h = s.handle.take().unwrap();
                panic!("server exited at start: {:?}", h.await);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become healthy");
    }

    /// Triggers graceful shutdown without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }

    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path, Some(token))).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::POST, path, Some(token))
                .json(&body),
        )
        .await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        send(
            self.req(reqwest::Method::PUT, path, Some(token))
                .json(&body),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::DELETE, path, Some(token))).await
    }

    /// Every audit record, read through the API with `admin_token`.
    pub async fn audit(&self, admin_token: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/audit?limit=200&cursor={c}"),
                None => "/api/v1/audit?limit=200".into(),
            };
            let (s, v) = self.get(&path, admin_token).await;
            assert_eq!(s, 200, "audit query failed: {v}");
            out.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    /// The audit record of the request with this id (through the `request_id` filter).
    pub async fn audit_for(&self, admin_token: &str, request_id: &str) -> Option<Value> {
        let (s, v) = self
            .get(
                &format!("/api/v1/audit?request_id={request_id}"),
                admin_token,
            )
            .await;
        assert_eq!(s, 200, "audit query failed: {v}");
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 1, "several records for one request id: {v}");
        items.first().cloned()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, v)
}

/// Sends raw bytes over TCP and returns the status code and the whole response text, for
/// requests a normal client would refuse or normalise.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// An issuer with RSA and EC keys and a server trusting it.
pub struct Env {
    pub issuer: MockIssuer,
    pub rsa: TestKey,
    pub ec: TestKey,
    pub server: TestServer,
    pub db: String,
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let rsa = TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
        let ec = TestKey::ec("test-only-ec-1.pem", "ec-1");
        let issuer = MockIssuer::start(&[&rsa, &ec]).await;
        let db = temp_db();
        let mut cfg = base_config(Some(&issuer.url), &db);
        tweak(&mut cfg);
        let server = TestServer::start(cfg).await;
        Self {
            issuer,
            rsa,
            ec,
            server,
            db,
        }
    }

    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.rsa.sign(&self.issuer.claims(sub, groups))
    }

    pub fn admin(&self) -> String {
        self.token("root-admin", &["platform-admins"])
    }
}
