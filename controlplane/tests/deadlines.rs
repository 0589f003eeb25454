//! Connection deadlines on every listener (API plain and TLS, admin): a request head trickled
//! one line per second, or never sent, is cut off at `server.header_read_timeout_secs`; a
//! kept-alive connection outlives that deadline and is cut off at `server.idle_timeout_secs`;
//! each is counted in `controlplane_client_timeouts_total{listener,phase}`, a client that leaves
//! in the middle of a head in `controlplane_client_disconnects_total{listener}`, and HTTP/2 keeps
//! working. The counts are exact: each test owns its server, and scrapes it with
//! `Connection: close` so the scrape itself is never counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD_TIMEOUT_SECS: u64 = 2;
const IDLE_TIMEOUT_SECS: u64 = 6;

/// Whether the server has closed `s` (EOF or reset) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (e.g. 408) may precede the close; keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Trickles a request head one header line per second; returns how long the server kept the
/// connection open, or `None` if it was still open after 20 lines.
async fn trickle(addr: SocketAddr) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    for i in 0..20 {
        if closed_within(&mut s, Duration::from_secs(1)).await {
            return Some(start.elapsed());
        }
        if s.write_all(format!("X-Trickle-{i}: x\r\n").as_bytes())
            .await
            .is_err()
        {
            return Some(start.elapsed());
        }
    }
    None
}

/// Connects and sends nothing; returns how long the server kept the connection open.
async fn silent(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(15)).await,
        "{addr}: a silent connection was held for 15 s"
    );
    start.elapsed()
}

/// Reads one response with a `Content-Length` body; returns its head and body.
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("no response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {text}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// `GET /healthz` on the kept-alive connection `s`: asserts 200 without `connection: close`.
async fn healthz(s: &mut TcpStream, port: &str) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let r = read_response(s).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{port}: {r}");
    assert!(
        !r.to_ascii_lowercase().contains("connection: close"),
        "{port}: not kept alive: {r}"
    );
}

fn addr_of(url: &str) -> SocketAddr {
    url.rsplit("://").next().unwrap().parse().unwrap()
}

/// The admin port's `/metrics`, over a connection closed after it (so never counted).
async fn scrape(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("scrape took 10 s")
        .unwrap();
    String::from_utf8_lossy(&buf).to_string()
}

/// The value of the series `series` (name and labels, as exposed) in `text`.
fn value(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn timeouts(listener: &str, phase: &str) -> String {
    format!("controlplane_client_timeouts_total{{listener=\"{listener}\",phase=\"{phase}\"}}")
}

fn disconnects(listener: &str) -> String {
    format!("controlplane_client_disconnects_total{{listener=\"{listener}\"}}")
}

fn open(listener: &str) -> String {
    format!("controlplane_connections_open{{listener=\"{listener}\"}}")
}

/// Waits (up to 10 s) until every series has its value, then asserts they all do.
async fn expect(admin: SocketAddr, want: &[(String, i64)]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(admin).await;
        let now: Vec<(String, i64)> = want
            .iter()
            .map(|(s, _)| (s.clone(), value(&text, s)))
            .collect();
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "metrics {now:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every connection counter of `listener` with the values given (head, idle, disconnects).
fn counts(listener: &str, head: i64, idle: i64, gone: i64) -> Vec<(String, i64)> {
    vec![
        (timeouts(listener, "head"), head),
        (timeouts(listener, "idle"), idle),
        (disconnects(listener), gone),
    ]
}

#[derive(Clone)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Everything this test binary logs at debug level and above, every test's servers together.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = LogBuf(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::set_global_default(sub).unwrap();
        buf
    })
    .clone()
}

/// A server with the test deadlines, whose API has no connection open: the harness's client
/// keeps the one it checked health on alive, and replacing the client closes it.
async fn start(tls: bool) -> (Env, SocketAddr) {
    logs();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut env = Env::start_with(|c| {
        c.server.header_read_timeout_secs = HEAD_TIMEOUT_SECS;
        c.server.idle_timeout_secs = IDLE_TIMEOUT_SECS;
        if tls {
            c.server.tls = Some(controlplane::config::TlsConfig {
                cert_path: fixtures.join("test-only-tls-cert.pem"),
                key_path: fixtures.join("test-only-tls-key.pem"),
            });
        }
    })
    .await;
    env.server.http = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = addr_of(&env.server.admin_url);
    expect(admin, &[(open("api"), 0)]).await;
    (env, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_or_silent_request_heads_are_closed_at_the_deadline_and_counted() {
    let (env, admin) = start(false).await;
    let both = [("api", env.server.addr), ("admin", admin)];
    let runs = both.map(|(port, addr)| async move {
        let (trickled, silent) = tokio::join!(trickle(addr), silent(addr));
        let trickled =
            trickled.unwrap_or_else(|| panic!("{port}: a trickled head was held for 20 s"));
        for (what, open) in [("trickled", trickled), ("silent", silent)] {
            assert!(
                open >= Duration::from_secs(HEAD_TIMEOUT_SECS - 1),
                "{port}: {what} head closed before the deadline ({open:?})"
            );
        }
    });
    let [api, admin_port] = runs;
    tokio::join!(api, admin_port);
    let mut want = counts("api", 2, 0, 0);
    want.extend(counts("admin", 2, 0, 0));
    want.push((open("api"), 0));
    expect(admin, &want).await;
    // The ports still serve complete requests.
    for (port, addr) in both {
        let mut s = TcpStream::connect(addr).await.unwrap();
        healthz(&mut s, port).await;
    }
    // Each slow client is one debug line, without its bytes; nothing of it at WARN or ERROR
    // (the only warning is the start-up one about the missing snapshot signing key).
    let text = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    for port in ["api", "admin"] {
        assert!(
            text.lines().any(|l| l.contains(" DEBUG ")
                && l.contains("client too slow: connection closed")
                && l.contains(&format!("listener=\"{port}\" phase=\"head\""))),
            "{port}: no debug line for a head timeout in:\n{text}"
        );
    }
    assert!(
        !text.contains("X-Trickle"),
        "the client's bytes were logged"
    );
    for l in text.lines() {
        let loud = l.contains(" WARN ") || l.contains(" ERROR ");
        assert!(!loud || l.contains("signing_key"), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_outlives_the_head_deadline_and_is_closed_at_the_idle_timeout() {
    let (env, admin) = start(false).await;
    let both = [("api", env.server.addr), ("admin", admin)];
    let runs = both.map(|(port, addr)| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        healthz(&mut s, port).await;
        // Silent past the head deadline, well short of the idle timeout: still served.
        assert!(
            !closed_within(&mut s, Duration::from_millis(3500)).await,
            "{port}: an idle keep-alive connection was closed at the head deadline"
        );
        healthz(&mut s, port).await;
        let idle_from = Instant::now();
        assert!(
            closed_within(&mut s, Duration::from_secs(20)).await,
            "{port}: idle keep-alive connection still open after 20 s"
        );
        let idle = idle_from.elapsed();
        assert!(
            idle >= Duration::from_secs(IDLE_TIMEOUT_SECS - 1),
            "{port}: closed before the idle timeout ({idle:?})"
        );
    });
    let [api, admin_port] = runs;
    tokio::join!(api, admin_port);
    let mut want = counts("api", 0, 1, 0);
    want.extend(counts("admin", 0, 1, 0));
    expect(admin, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_in_the_middle_of_a_head_is_a_disconnect_and_a_normal_close_is_nothing() {
    let (env, admin) = start(false).await;
    for addr in [env.server.addr, admin] {
        // Half a head, then EOF.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        drop(s);
        // Half a head, then a reset (zero linger: the close sends RST, without blocking).
        let s = TcpStream::connect(addr).await.unwrap();
        #[allow(deprecated)]
        s.set_linger(Some(Duration::ZERO)).unwrap();
        let mut s = s;
        s.write_all(b"POST /api/v1/orgs HTTP/1.1\r\nHost: t\r\nContent-")
            .await
            .unwrap();
        // A reset discards what the server has not read yet: give it time to read the bytes
        // (well inside the head deadline).
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(s);
        // Not counted: connected and closed without a byte, and closed after a response.
        drop(TcpStream::connect(addr).await.unwrap());
        let mut s = TcpStream::connect(addr).await.unwrap();
        healthz(&mut s, "either").await;
        drop(s);
    }
    let mut want = counts("api", 0, 0, 2);
    want.extend(counts("admin", 0, 0, 2));
    want.push((open("api"), 0));
    expect(admin, &want).await;
    // Nothing more is counted once their head deadlines have passed.
    tokio::time::sleep(Duration::from_secs(HEAD_TIMEOUT_SECS + 1)).await;
    expect(admin, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_still_works_and_is_not_counted() {
    let (env, admin) = start(false).await;
    let url = format!("{}/healthz", env.server.url);
    // One request: curl 7.88 fails a second one on a reused prior-knowledge connection
    // (curl/curl#10634). The TLS test sends two over one connection.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w"])
            .args(["%{http_version} %{http_code}", &url])
            .output()
            .expect("curl is needed for the HTTP/2 test")
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = counts("api", 0, 0, 0);
    want.push((open("api"), 0));
    expect(admin, &want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout_from_its_last_stream() {
    let (env, admin) = start(false).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/healthz", env.server.url);
    for _ in 0..2 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(
            (r.version(), r.status().as_u16()),
            (reqwest::Version::HTTP_2, 200)
        );
    }
    // Two streams, one connection, now idle: past the head deadline it stays open...
    tokio::time::sleep(Duration::from_secs(HEAD_TIMEOUT_SECS + 1)).await;
    let mut want = counts("api", 0, 0, 0);
    want.push((open("api"), 1));
    expect(admin, &want).await;
    // ...and the idle timeout closes it, counted once.
    tokio::time::sleep(Duration::from_secs(IDLE_TIMEOUT_SECS - HEAD_TIMEOUT_SECS)).await;
    let mut want = counts("api", 0, 1, 0);
    want.push((open("api"), 0));
    expect(admin, &want).await;
    // The client simply connects again.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Over TLS, sends half a request head and waits; returns how long the server kept the
/// connection open (blocking: run it off the runtime).
fn tls_half_head(addr: SocketAddr) -> Duration {
    use rustls_pki_types::pem::PemObject;
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    let pem = common::fixture("test-only-tls-cert.pem");
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let start = Instant::now();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    tls.flush().unwrap();
    let mut buf = [0u8; 1024];
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_cuts_a_silent_handshake_and_a_half_head_and_still_serves_http2() {
    let (env, admin) = start(true).await;
    let addr = env.server.addr;
    let (handshake, half_head) = tokio::join!(
        silent(addr),
        tokio::task::spawn_blocking(move || tls_half_head(addr))
    );
    let half_head = half_head.unwrap();
    for (what, open) in [("silent handshake", handshake), ("half a head", half_head)] {
        assert!(
            open >= Duration::from_secs(HEAD_TIMEOUT_SECS - 1),
            "{what}: closed before the deadline ({open:?})"
        );
        assert!(open < Duration::from_secs(15), "{what}: held for {open:?}");
    }
    // Two requests over one HTTP/2 connection (ALPN h2).
    let url = format!("https://127.0.0.1:{}/healthz", addr.port());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sSk",
                "--http2",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
                "-w",
            ])
            .args(["%{http_version} %{http_code} %{num_connects},", &url, &url])
            .output()
            .expect("curl is needed for the TLS test")
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200 1,2 200 0,",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = counts("api", 2, 0, 0);
    want.push((open("api"), 0));
    expect(admin, &want).await;
}
