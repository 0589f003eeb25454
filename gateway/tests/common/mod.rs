//! Test harness: a mock provider that speaks OpenAI's and Anthropic's JSON and SSE, and a
//! guard that runs the real `gateway` binary on free ports and kills it on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use gateway_schema::KeyDigest;

pub mod stateful;

/// The provider keys the gateway process gets through its environment.
pub const OPENAI_UPSTREAM_KEY: &str = "sk-upstream-openai-SECRET-0001";
pub const ANTHROPIC_UPSTREAM_KEY: &str = "sk-ant-upstream-SECRET-0002";

/// Virtual keys used by the standard config.
pub const DEMO_KEY: &str = "gwk_demo_key_for_tests_0000000000000000000000000000000000000000";
pub const RESTRICTED_KEY: &str = "gwk_restricted_key_for_tests_00000000000000000000000000000000";
pub const REVOKED_KEY: &str = "gwk_revoked_key_for_tests_000000000000000000000000000000000000";
pub const EXPIRED_KEY: &str = "gwk_expired_key_for_tests_000000000000000000000000000000000000";

/// One request the mock provider received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A mock OpenAI/Anthropic provider on 127.0.0.1:0.
pub struct MockUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header_ms(h: &HeaderMap, name: &str) -> u64 {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How the mock shapes a response, from the request's `x-mock-*` headers.
#[derive(Clone, Copy, Default)]
struct Shape {
    /// Gzip the body (`x-mock-gzip: 1`), as a server that ignores `accept-encoding` would.
    gzip: bool,
    /// Break the connection after this many SSE events (`x-mock-cut-after`).
    cut_after: Option<usize>,
}

/// Streams `events` with `delay` between them.
fn sse(events: Vec<String>, delay: Duration, shape: Shape) -> Response {
    let builder = Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache");
    if shape.gzip {
        let whole: String = events.concat();
        return builder
            .header("content-encoding", "gzip")
            .body(Body::from(gzip(whole.as_bytes())))
            .unwrap();
    }
    let cut = shape.cut_after.unwrap_or(usize::MAX);
    let stream = futures_util::stream::unfold(
        (events.into_iter().enumerate(), true),
        move |(mut it, first)| async move {
            let (i, next) = it.next()?;
            if !first {
                tokio::time::sleep(delay).await;
            }
            if i >= cut {
                return Some((
                    Err(std::io::Error::other("mock: connection cut")),
                    (it, false),
                ));
            }
            Some((Ok::<Bytes, std::io::Error>(Bytes::from(next)), (it, false)))
        },
    );
    builder.body(Body::from_stream(stream)).unwrap()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn json_shaped(status: u16, v: serde_json::Value, shape: Shape) -> Response {
    if !shape.gzip {
        return json(status, v);
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(Body::from(gzip(v.to_string().as_bytes())))
        .unwrap()
}

/// Token counts the mock reports: `x-mock-input-tokens` (default 5), `x-mock-output-tokens`
/// (default 4), `x-mock-cached-tokens`, `x-mock-cache-write-tokens` (default 0).
#[derive(Clone, Copy)]
struct Tokens {
    input: u64,
    output: u64,
    cached: u64,
    cache_write: u64,
}

impl Tokens {
    fn of(h: &HeaderMap) -> Self {
        let n = |name: &str, default: u64| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Self {
            input: n("x-mock-input-tokens", 5),
            output: n("x-mock-output-tokens", 4),
            cached: n("x-mock-cached-tokens", 0),
            cache_write: n("x-mock-cache-write-tokens", 0),
        }
    }

    /// OpenAI's chat/completions/embeddings usage (`prompt_tokens` includes cached ones).
    fn openai(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt_tokens": self.input + self.cached,
            "completion_tokens": self.output,
            "total_tokens": self.input + self.cached + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached}
        })
    }

    /// Anthropic's usage (`input_tokens` excludes the cache).
    fn anthropic(&self, output: u64) -> serde_json::Value {
        serde_json::json!({
            "input_tokens": self.input,
            "cache_read_input_tokens": self.cached,
            "cache_creation_input_tokens": self.cache_write,
            "output_tokens": output
        })
    }
}

fn json(status: u16, v: serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_mock_upstream_1")
        .body(Body::from(v.to_string()))
        .unwrap()
}

async fn handle(seen: Arc<Mutex<Vec<Seen>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let sleep = header_ms(&parts.headers, "x-mock-sleep-ms");
    if sleep > 0 {
        tokio::time::sleep(Duration::from_millis(sleep)).await;
    }
    let delay = Duration::from_millis(header_ms(&parts.headers, "x-mock-chunk-delay-ms"));
    let req_json: serde_json::Value =
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let model = req_json["model"].as_str().unwrap_or("unknown").to_owned();
    let stream = req_json["stream"].as_bool().unwrap_or(false);
    let include_usage = req_json["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let tokens = Tokens::of(&parts.headers);
    let shape = Shape {
        gzip: parts.headers.contains_key("x-mock-gzip"),
        cut_after: parts
            .headers
            .get("x-mock-cut-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    };
    if let Some(status) = parts
        .headers
        .get("x-mock-status")
        .and_then(|v| v.to_str().ok())
    {
        let status: u16 = status.parse().unwrap_or(500);
        return json(
            status,
            serde_json::json!({"error": {"message": "mock error", "type": "server_error"}}),
        );
    }
    if path.ends_with("/chat/completions") {
        if stream {
            // OpenAI's shape: usage only when asked, in a last chunk with `choices: []`.
            let chunk = |choices: serde_json::Value, usage: Option<serde_json::Value>| {
                let mut c = serde_json::json!({"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1,"model":model,"choices":choices});
                if include_usage {
                    c["usage"] = usage.unwrap_or(serde_json::Value::Null);
                }
                format!("data: {c}\n\n")
            };
            let mut events: Vec<String> = ["Hel", "lo", " from", " mock"]
                .iter()
                .map(|t| {
                    chunk(
                        serde_json::json!([{"index":0,"delta":{"content":t},"finish_reason":null}]),
                        None,
                    )
                })
                .collect();
            events.push(chunk(
                serde_json::json!([{"index":0,"delta":{},"finish_reason":"stop"}]),
                None,
            ));
            if include_usage {
                events.push(chunk(serde_json::json!([]), Some(tokens.openai())));
            }
            events.push("data: [DONE]\n\n".into());
            return sse(events, delay, shape);
        }
        return json_shaped(
            200,
            serde_json::json!({
                "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from mock"}, "logprobs": null, "finish_reason": "stop"}],
                "usage": tokens.openai()
            }),
            shape,
        );
    }
    if path.ends_with("/embeddings") {
        return json_shaped(
            200,
            serde_json::json!({"object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": tokens.input, "total_tokens": tokens.input}}),
            shape,
        );
    }
    if path.ends_with("/responses") {
        let usage = serde_json::json!({"input_tokens": tokens.input + tokens.cached,
            "input_tokens_details": {"cached_tokens": tokens.cached},
            "output_tokens": tokens.output, "total_tokens": tokens.input + tokens.cached + tokens.output});
        let response = serde_json::json!({"id": "resp_mock", "object": "response", "model": model,
            "status": "completed", "output": [], "usage": usage});
        if stream {
            let ev = |name: &str, v: serde_json::Value| format!("event: {name}\ndata: {v}\n\n");
            let events = vec![
                ev(
                    "response.created",
                    serde_json::json!({"type":"response.created","response":{"id":"resp_mock","model":model,"usage":null}}),
                ),
                ev(
                    "response.output_text.delta",
                    serde_json::json!({"type":"response.output_text.delta","delta":"Hello"}),
                ),
                ev(
                    "response.completed",
                    serde_json::json!({"type":"response.completed","response":response}),
                ),
            ];
            return sse(events, delay, shape);
        }
        return json_shaped(200, response, shape);
    }
    if path.ends_with("/v1/messages") {
        if stream {
            let ev = |name: &str, v: serde_json::Value| format!("event: {name}\ndata: {v}\n\n");
            let mut events = vec![
                ev(
                    "message_start",
                    serde_json::json!({"type":"message_start","message":{"id":"msg_mock","type":"message","role":"assistant","model":model,"content":[],"stop_reason":null,"stop_sequence":null,"usage":tokens.anthropic(1)}}),
                ),
                ev(
                    "content_block_start",
                    serde_json::json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                ),
            ];
            for t in ["Hel", "lo", " from", " mock"] {
                events.push(ev("content_block_delta", serde_json::json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}})));
            }
            events.push(ev(
                "content_block_stop",
                serde_json::json!({"type":"content_block_stop","index":0}),
            ));
            events.push(ev("message_delta", serde_json::json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":tokens.output}})));
            events.push(ev(
                "message_stop",
                serde_json::json!({"type":"message_stop"}),
            ));
            return sse(events, delay, shape);
        }
        return json_shaped(
            200,
            serde_json::json!({
                "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "Hello from mock"}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": tokens.anthropic(tokens.output)
            }),
            shape,
        );
    }
    json(
        200,
        serde_json::json!({"ok": true, "path": path, "body_len": body.len()}),
    )
}

impl MockUpstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        // Like real providers (behind their CDNs), the mock names its server software.
        let app = axum::Router::new()
            .fallback(move |req: Request| handle(s.clone(), req))
            .layer(axum::middleware::map_response(
                |mut r: Response| async move {
                    r.headers_mut().insert(
                        "server",
                        axum::http::HeaderValue::from_static("mock-provider/1.0"),
                    );
                    r
                },
            ));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, seen, task }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the mock upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Two distinct ports that were free a moment ago (both held while choosing).
/// A self-signed P-256 certificate for `localhost` in `dir`, made with the openssl CLI; returns
/// the `server:` lines that serve TLS with it.
#[allow(dead_code)]
pub fn tls_server_lines(dir: &std::path::Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl CLI is needed to make a test certificate (apt-get install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    format!(
        "  tls:\n    cert_path: \"{}\"\n    key_path: \"{}\"\n",
        cert.display(),
        key.display()
    )
}

pub fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

pub fn digest(key: &str) -> String {
    KeyDigest::of(key.as_bytes()).to_string()
}

/// The standard snapshot part of a test config, pointing both providers at `upstream`.
pub fn standard_config(upstream: SocketAddr) -> String {
    format!(
        r#"
max_request_bytes: 6000000
providers:
  - name: openai
    kind: openai
    base_url: "http://{upstream}"
    api_key: "env:TEST_OPENAI_KEY"
    read_timeout_ms: 2000
  - name: anthropic
    kind: anthropic
    base_url: "http://{upstream}"
    api_key: "env:TEST_ANTHROPIC_KEY"
    read_timeout_ms: 2000
  - name: nokey
    kind: openai
    base_url: "http://{upstream}"
    api_key: "env:TEST_SURELY_UNSET_KEY"
    api_key_optional: true
routes:
  - model: "gpt-*"
    provider: openai
  - model: "claude-*"
    provider: anthropic
  - model: "fast"
    provider: openai
    upstream_model: "gpt-4o-mini"
  - model: "needs-key"
    provider: nokey
projects:
  - slug: demo
    keys:
      - digest: "{demo}"
        prefix: "gwk_demo"
      - digest: "{revoked}"
        revoked: true
      - digest: "{expired}"
        expires_at: 1000
  - slug: restricted
    allowed_models: ["gpt-4o-mini", "claude-3-*"]
    max_request_bytes: 1024
    keys:
      - digest: "{restricted}"
"#,
        demo = digest(DEMO_KEY),
        revoked = digest(REVOKED_KEY),
        expired = digest(EXPIRED_KEY),
        restricted = digest(RESTRICTED_KEY),
    )
}

/// The real gateway binary, on free ports, killed on drop.
pub struct GatewayProc {
    child: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub args: Vec<String>,
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl GatewayProc {
    /// `server_extra`: extra YAML lines under `server:`; `snapshot`: the rest of the file.
    pub fn server_section(port: u16, admin_port: u16, server_extra: &str) -> String {
        format!(
            "server:\n  listen: \"127.0.0.1:{port}\"\n  admin_listen: \"127.0.0.1:{admin_port}\"\n  threads: 2\n  shutdown_grace_seconds: 5\n{server_extra}"
        )
    }

    pub async fn start(snapshot: &str) -> Self {
        Self::start_with(snapshot, "").await
    }

    pub async fn start_with(snapshot: &str, server_extra: &str) -> Self {
        Self::launch(snapshot, server_extra, &[], true).await
    }

    /// Starts the binary with a config of `server_extra` + `snapshot` and extra `args` after
    /// `run --config FILE`; waits for `/readyz` 200 only with `wait_ready` (otherwise only for
    /// the admin port to answer).
    pub async fn launch(
        snapshot: &str,
        server_extra: &str,
        args: &[String],
        wait_ready: bool,
    ) -> Self {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("gw-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (port, admin_port) = free_ports();
        let config_path = dir.join("gateway.yaml");
        let text = format!(
            "{}{snapshot}",
            Self::server_section(port, admin_port, server_extra)
        );
        std::fs::write(&config_path, text).unwrap();
        let log_path = dir.join("gateway.log");
        let mut g = Self {
            child: None,
            port,
            admin_port,
            dir,
            config_path,
            log_path,
            args: args.to_vec(),
        };
        g.spawn(wait_ready).await;
        g
    }

    /// Starts (again) the process with the same config, ports and arguments.
    pub async fn spawn(&mut self, wait_ready: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(&self.config_path)
            .args(&self.args)
            .env("TEST_OPENAI_KEY", OPENAI_UPSTREAM_KEY)
            .env("TEST_ANTHROPIC_KEY", ANTHROPIC_UPSTREAM_KEY)
            .env_remove("TEST_SURELY_UNSET_KEY")
            .env("GATEWAY_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning the gateway binary");
        self.child = Some(child);
        if wait_ready {
            self.wait_ready().await;
        } else {
            self.wait_admin().await;
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the admin port answers at all.
    pub async fn wait_admin(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if reqwest::get(self.admin_url("/healthz")).await.is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("gateway exited during start ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "gateway admin port not up after 20 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `/readyz` until it is 200 or `within` passes; returns the last body.
    pub async fn readyz(&self) -> (u16, serde_json::Value) {
        let r = reqwest::get(self.admin_url("/readyz")).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(self.admin_url("/readyz")).send().await {
                if r.status() == 200 {
                    // The proxy listener starts with the admin one; make sure it accepts too.
                    if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("gateway exited during start ({status}):\n{}", self.logs());
            }
            if Instant::now() > deadline {
                panic!("gateway not ready after 20 s:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Rewrites the config file (same ports) with a new snapshot part.
    pub fn rewrite_config(&self, snapshot: &str) {
        let text = format!(
            "{}{snapshot}",
            Self::server_section(self.port, self.admin_port, "")
        );
        let tmp = self.dir.join("gateway.yaml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
    }

    pub async fn config_generation(&self) -> i64 {
        let v: serde_json::Value = reqwest::get(self.admin_url("/readyz"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["config_generation"].as_i64().unwrap_or(-1)
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub fn chat_body(model: &str, stream: bool) -> serde_json::Value {
    serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends raw bytes on a fresh connection and returns everything read until close or timeout.
pub async fn raw_request(port: u16, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    (
        status,
        v["error"]["code"]
            .as_str()
            .unwrap_or("<no code>")
            .to_owned(),
    )
}

/// POSTs `body` as JSON with `key` as a Bearer token.
pub async fn post_json(
    gw: &GatewayProc,
    path: &str,
    key: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// GETs `path` with `key` as a Bearer token and parses the JSON answer.
pub async fn get_json(gw: &GatewayProc, path: &str, key: &str) -> serde_json::Value {
    client()
        .get(gw.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `bytes` as a chunked upload (no Content-Length) in pieces of `size`.
pub fn chunked(bytes: &[u8], size: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(size).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// Starts a streamed chat completion with DEMO_KEY that the mock upstream answers with 6 SSE
/// events `chunk_delay_ms` apart; returns as soon as the response head arrives.
pub async fn slow_chat_stream(url: String, chunk_delay_ms: u64) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(DEMO_KEY)
        .header("x-mock-chunk-delay-ms", chunk_delay_ms.to_string())
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap()
}

/// `slow_chat_stream` in its own task, read to the end: yields (status, whole body).
pub fn spawn_slow_chat_stream(
    url: String,
    chunk_delay_ms: u64,
) -> tokio::task::JoinHandle<(u16, String)> {
    tokio::spawn(async move {
        let r = slow_chat_stream(url, chunk_delay_ms).await;
        (r.status().as_u16(), r.text().await.unwrap())
    })
}
