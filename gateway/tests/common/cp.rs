//! The real control plane, in-process on loopback, for control-plane-mode tests: its own
//! SQLite file (or a Postgres URL), an internal secret and a snapshot-signing key in files, and
//! an admin client speaking its REST API (development-mode identity headers).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use controlplane::config::Config;
use serde_json::{json, Value};

pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789";
pub const USAGE_INGEST_TOKEN: &str = "test-usage-ingest-token-0123456789";
pub const CACHE_HITS_INGEST_TOKEN: &str = "test-cache-hits-ingest-token-0123456789";
pub const GUARDRAIL_BLOCKS_INGEST_TOKEN: &str = "test-guardrail-blocks-token-0123456789";
pub const OBJECTS_INGEST_TOKEN: &str = "test-objects-ingest-token-0123456789";

/// Files shared by a control plane and its gateways.
#[derive(Clone)]
pub struct Secrets {
    pub dir: PathBuf,
    pub secret_file: PathBuf,
    pub key_file: PathBuf,
    pub pub_file: PathBuf,
    pub usage_token_file: PathBuf,
    pub cache_hits_token_file: PathBuf,
    pub guardrail_blocks_token_file: PathBuf,
    pub objects_token_file: PathBuf,
}

impl Secrets {
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("gw-cp-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let secret_file = dir.join("internal-secret");
        std::fs::write(&secret_file, format!("{INTERNAL_SECRET}\n")).unwrap();
        let (key_file, pub_file) = controlplane::keygen::write_pair(&dir.join("signing")).unwrap();
        let usage_token_file = dir.join("usage-ingest-token");
        std::fs::write(&usage_token_file, USAGE_INGEST_TOKEN).unwrap();
        let cache_hits_token_file = dir.join("cache-hits-ingest-token");
        std::fs::write(&cache_hits_token_file, CACHE_HITS_INGEST_TOKEN).unwrap();
        let guardrail_blocks_token_file = dir.join("guardrail-blocks-ingest-token");
        std::fs::write(&guardrail_blocks_token_file, GUARDRAIL_BLOCKS_INGEST_TOKEN).unwrap();
        let objects_token_file = dir.join("objects-ingest-token");
        std::fs::write(&objects_token_file, OBJECTS_INGEST_TOKEN).unwrap();
        Self {
            dir,
            secret_file,
            key_file,
            pub_file,
            usage_token_file,
            cache_hits_token_file,
            guardrail_blocks_token_file,
            objects_token_file,
        }
    }

    /// A second, unrelated key pair (a forger's).
    pub fn other_key_pair(&self) -> (PathBuf, PathBuf) {
        controlplane::keygen::write_pair(&self.dir.join("other")).unwrap()
    }

    /// `gateway run` arguments for control-plane mode against `url`.
    pub fn gateway_args(&self, url: &str, lkg: &std::path::Path, id: &str) -> Vec<String> {
        vec![
            "--control-plane".into(),
            url.into(),
            "--internal-secret".into(),
            format!("file:{}", self.secret_file.display()),
            "--snapshot-public-key".into(),
            format!("file:{}", self.pub_file.display()),
            "--last-known-good".into(),
            lkg.display().to_string(),
            "--gateway-id".into(),
            id.into(),
        ]
    }
}

/// A running control plane.
pub struct ControlPlane {
    pub addr: SocketAddr,
    pub url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
    db: String,
    secrets: Secrets,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), controlplane::RunError>>>,
}

fn config(db: &str, secrets: &Secrets) -> Config {
    let database = if db.starts_with("postgres://") {
        let f = secrets.dir.join(format!("db-url-{}", db.len()));
        std::fs::write(&f, db).unwrap();
        format!("  url: \"file:{}\"", f.display())
    } else {
        format!("  sqlite_path: \"{db}\"")
    };
    let yaml = format!(
        r#"
server:
  listen: "127.0.0.1:0"
  admin_listen: "127.0.0.1:0"
  shutdown_grace_secs: 2
database:
{database}
rbac:
  group_roles:
    - {{ group: platform-admins, org: "*", role: admin }}
    - {{ group: platform-viewers, org: "*", role: viewer }}
guards:
  rate_limit_burst: 100000
  rate_limit_per_second: 100000
internal:
  secret: "file:{secret}"
  usage_ingest_token: "file:{usage}"
  cache_hits_ingest_token: "file:{cache_hits}"
  guardrail_blocks_ingest_token: "file:{blocks}"
  objects_ingest_token: "file:{objects}"
snapshots:
  signing_key: "file:{key}"
"#,
        secret = secrets.secret_file.display(),
        key = secrets.key_file.display(),
        usage = secrets.usage_token_file.display(),
        cache_hits = secrets.cache_hits_token_file.display(),
        blocks = secrets.guardrail_blocks_token_file.display(),
        objects = secrets.objects_token_file.display(),
    );
    let cfg: Config = serde_yaml_ng::from_str(&yaml).unwrap();
    cfg.validate().unwrap();
    cfg
}

impl ControlPlane {
    /// A control plane with a fresh SQLite file.
    pub async fn start(secrets: &Secrets) -> Self {
        let db = secrets
            .dir
            .join(format!("cp-{}.db", std::process::id()))
            .display()
            .to_string();
        Self::start_on(secrets, &db, "127.0.0.1:0").await
    }

    /// A control plane on `db` (a SQLite path or a Postgres URL), listening on `listen`.
    pub async fn start_on(secrets: &Secrets, db: &str, listen: &str) -> Self {
        let l = tokio::net::TcpListener::bind(listen).await.unwrap();
        let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let admin_url = format!("http://{}", a.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(controlplane::run(l, a, config(db, secrets), async {
            let _ = rx.await;
        }));
        let cp = Self {
            addr,
            url: format!("http://{addr}"),
            admin_url,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            db: db.to_owned(),
            secrets: secrets.clone(),
            stop: Some(tx),
            handle: Some(handle),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = cp.http.get(format!("{}/healthz", cp.url)).send().await {
                if r.status() == 200 {
                    return cp;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("control plane did not become healthy");
    }

    /// Stops it (streams end, listeners close) and waits until it has exited.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }

    /// Starts it again on the same address and database.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listen = self.addr.to_string();
        let mut last = None;
        for _ in 0..100 {
            match tokio::net::TcpListener::bind(&listen).await {
                Ok(l) => {
                    drop(l);
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(last.is_none(), "port {listen} stayed busy: {last:?}");
        *self = Self::start_on(&self.secrets, &self.db, &listen).await;
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .header("x-forwarded-email", "admin@example.com")
            .header("x-forwarded-groups", "platform-admins")
    }

    async fn send(r: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = Self::send(self.req(reqwest::Method::POST, path).json(&body)).await;
        assert!((200..300).contains(&status), "POST {path} -> {status} {v}");
        v
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        let (status, v) = Self::send(self.req(reqwest::Method::PUT, path).json(&body)).await;
        assert!((200..300).contains(&status), "PUT {path} -> {status} {v}");
        v
    }

    pub async fn delete(&self, path: &str) {
        let (status, v) = Self::send(self.req(reqwest::Method::DELETE, path)).await;
        assert!(
            (200..300).contains(&status),
            "DELETE {path} -> {status} {v}"
        );
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::send(self.req(reqwest::Method::GET, path)).await
    }

    /// An org with an OpenAI-kind provider `provider` at `upstream` (key from the gateway's
    /// `TEST_OPENAI_KEY`), a `gpt-*` route to it, and a project `app` with policy `std`.
    pub async fn seed_org(&self, org: &str, provider: &str, upstream: SocketAddr) {
        self.post("/api/v1/orgs", json!({"slug": org})).await;
        self.post(
            &format!("/api/v1/orgs/{org}/providers"),
            json!({"slug": provider, "kind": "openai", "base_url": format!("http://{upstream}"),
                   "api_key_ref": "env:TEST_OPENAI_KEY"}),
        )
        .await;
        self.post(
            &format!("/api/v1/orgs/{org}/routes"),
            json!({"slug": "gpt", "model": "gpt-*", "provider": provider}),
        )
        .await;
        self.post(
            &format!("/api/v1/orgs/{org}/policies"),
            json!({"slug": "std"}),
        )
        .await;
        self.post(
            &format!("/api/v1/orgs/{org}/projects"),
            json!({"slug": "app", "policy": "std"}),
        )
        .await;
    }

    /// Mints a key for `org/project`; returns (plaintext, key id).
    pub async fn mint(&self, org: &str, project: &str) -> (String, String) {
        let v = self
            .post(
                &format!("/api/v1/orgs/{org}/projects/{project}/keys"),
                json!({"name": "test"}),
            )
            .await;
        (
            v["plaintext"].as_str().unwrap().to_owned(),
            v["id"].as_str().unwrap().to_owned(),
        )
    }

    /// The live ownership records, as a gateway seeding from it reads them (every page).
    pub async fn objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let r = self
                .http
                .get(format!("{}/internal/v1/objects?after={after}", self.url))
                .bearer_auth(INTERNAL_SECRET)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            out.extend(page["objects"].as_array().unwrap().iter().cloned());
            match page["next_after"].as_i64() {
                Some(a) => after = a,
                None => return out,
            }
        }
    }

    /// The version this control plane serves, from `GET /api/v1/gateways`.
    pub async fn current_version(&self) -> u64 {
        let (_, v) = self.get("/api/v1/gateways").await;
        v["current_version"].as_u64().unwrap_or(0)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// Polls `f` every 20 ms until it returns true; panics with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
