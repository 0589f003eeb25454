//! Hostile clients over real sockets: head deadlines, idle keep-alive, connection caps,
//! head/URL/field-count caps with JSON errors, and the upstream's `Server` header.
//! Timeouts are configured short (1-2 s) so the suite stays fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short deadlines for the tests; `extra` adds more `server:` keys.
fn server(extra: &str) -> String {
    format!("  head_timeout_seconds: 1\n  idle_timeout_seconds: 2\n{extra}")
}

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// Reads until the peer closes (or `within` passes: then panics); returns what was read and
/// when the close came.
async fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {within:?}; read so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

/// Reads one HTTP/1.1 response with a `content-length` body; returns (status, head, body).
async fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&out[end + 4..end + 4 + len]).into_owned();
                return (status, head, body);
            }
        }
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("no full response within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
    }
}

fn models_request(keep_alive: bool) -> Vec<u8> {
    format!(
        "GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {DEMO_KEY}\r\nconnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes()
}

/// The value of a metric line `name{labels}` (0 when absent).
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls the gateway's metric `name_and_labels` until it reaches `at_least` (for at most
/// `tries` tenths of a second); returns its last value.
async fn wait_for_metric(
    gw: &GatewayProc,
    name_and_labels: &str,
    at_least: f64,
    tries: u32,
) -> f64 {
    let mut value = 0.0;
    for _ in 0..tries {
        value = metric(&gw.metrics().await, name_and_labels);
        if value >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    value
}

fn no_error_lines(gw: &GatewayProc) {
    let logs = gw.logs();
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains(" ERROR "))
        .collect();
    assert!(
        errors.is_empty(),
        "ERROR lines in the log:\n{}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn trickling_and_silent_heads_are_closed_at_the_head_deadline() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start_with(&standard_config(up.addr), &server("")).await;

    for port in [gw.port, gw.admin_port] {
        // One header line every 300 ms: each read is quick, the whole head never completes.
        let start = Instant::now();
        let (mut rd, mut wr) = connect(port).await.into_split();
        wr.write_all(b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n")
            .await
            .unwrap();
        let trickle = tokio::spawn(async move {
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if wr
                    .write_all(format!("x-slow-{i}: a\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(8), rd.read_to_end(&mut out)).await;
        let closed_after = start.elapsed();
        trickle.abort();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "port {port}: expected a 408, got {text:?}"
        );
        assert!(text.contains("\"code\":\"request_head_timeout\""), "{text}");
        assert!(!text.to_lowercase().contains("server:"), "{text}");
        assert!(
            closed_after >= Duration::from_millis(900)
                && closed_after < Duration::from_millis(2500),
            "port {port}: trickling head closed after {closed_after:?}"
        );

        // Nothing at all: closed at the deadline (HTTP/2 preface peek included), no answer.
        let mut s = connect(port).await;
        let (text, after) = read_to_close(&mut s, Duration::from_secs(4)).await;
        assert!(text.is_empty(), "{text}");
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
            "silent connection closed after {after:?}"
        );
    }
    let m = gw.metrics().await;
    assert!(
        metric(
            &m,
            "gateway_client_timeouts_total{listener=\"proxy\",phase=\"head\"}"
        ) >= 2.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "gateway_client_timeouts_total{listener=\"admin\",phase=\"head\"}"
        ) >= 2.0,
        "{m}"
    );
    assert_eq!(up.count(), 0);

    // A client that vanishes mid-head is counted, not logged as an error.
    let mut s = connect(gw.port).await;
    s.write_all(b"GET /v1/models HTTP/1.1\r\nhost: g")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = gw.metrics().await;
    assert!(
        metric(&m, "gateway_client_disconnects_total{listener=\"proxy\"}") >= 1.0,
        "{m}"
    );
    no_error_lines(&gw);
}

#[tokio::test]
async fn idle_keepalive_connections_are_closed_at_the_idle_timeout() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start_with(&standard_config(up.addr), &server("")).await;

    for port in [gw.port, gw.admin_port] {
        let mut s = connect(port).await;
        let req = if port == gw.port {
            models_request(true)
        } else {
            b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n".to_vec()
        };
        s.write_all(&req).await.unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        // Still usable within the idle timeout, and the head deadline (1 s) does not apply
        // to the wait between requests.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.write_all(&req).await.unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        let (text, after) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(text.is_empty(), "{text}");
        assert!(
            after >= Duration::from_millis(1800) && after < Duration::from_millis(3500),
            "port {port}: idle connection closed after {after:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = gw.metrics().await;
    assert!(
        metric(
            &m,
            "gateway_client_timeouts_total{listener=\"proxy\",phase=\"idle\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "gateway_client_timeouts_total{listener=\"admin\",phase=\"idle\"}"
        ) >= 1.0,
        "{m}"
    );
    no_error_lines(&gw);
}

#[tokio::test]
async fn connection_cap_refuses_the_excess_while_existing_connections_and_probes_work() {
    let up = MockUpstream::start().await;
    let extra = "  head_timeout_seconds: 10\n  idle_timeout_seconds: 30\n  max_connections: 5\n  admin_max_connections: 4\n";
    let gw = GatewayProc::start_with(&standard_config(up.addr), extra).await;

    // One working keep-alive connection, four idle ones: the listener is full.
    let mut working = connect(gw.port).await;
    working.write_all(&models_request(true)).await.unwrap();
    assert_eq!(read_response(&mut working).await.0, 200);
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(gw.port).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The sixth is closed at once, unanswered.
    for _ in 0..3 {
        let mut s = connect(gw.port).await;
        let _ = s.write_all(&models_request(false)).await;
        let (text, after) = read_to_close(&mut s, Duration::from_secs(2)).await;
        assert!(
            text.is_empty(),
            "a refused connection got an answer: {text}"
        );
        assert!(
            after < Duration::from_millis(500),
            "refused only after {after:?}"
        );
    }

    // The existing connection still serves, and the admin port has its own budget.
    working.write_all(&models_request(true)).await.unwrap();
    assert_eq!(read_response(&mut working).await.0, 200);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = client().get(gw.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "gateway_connections_refused_total{listener=\"proxy\",reason=\"listener_cap\"}"
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "gateway_connections_open{listener=\"proxy\"}"),
        5.0,
        "{m}"
    );

    // Closing connections frees their slots.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(DEMO_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    no_error_lines(&gw);
}

#[tokio::test]
async fn per_source_cap_refuses_one_address_past_its_share() {
    let up = MockUpstream::start().await;
    let extra = "  head_timeout_seconds: 10\n  max_connections_per_source: 2\n";
    let gw = GatewayProc::start_with(&standard_config(up.addr), extra).await;
    let a = connect(gw.port).await;
    let b = connect(gw.port).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = connect(gw.port).await;
    let (text, after) = read_to_close(&mut c, Duration::from_secs(2)).await;
    assert!(text.is_empty() && after < Duration::from_millis(500));
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client()
        .get(gw.url("/v1/models"))
        .bearer_auth(DEMO_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "gateway_connections_refused_total{listener=\"proxy\",reason=\"source_cap\"}"
        ),
        1.0,
        "{m}"
    );
}

/// Sends `head` (and a small JSON body) on a fresh connection; returns status, head, body.
async fn send_head(port: u16, head: &str) -> (u16, String, String) {
    let mut s = connect(port).await;
    // The gateway may answer and close before it has read everything: ignore write errors.
    let _ = s.write_all(head.as_bytes()).await;
    let (text, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
    let (h, b) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, h.to_lowercase(), b.to_owned())
}

fn code(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    v["error"]["code"].as_str().unwrap_or("<none>").to_owned()
}

fn chat_head(path: &str, extra_headers: &str) -> String {
    let body = chat_body("gpt-4o", false).to_string();
    format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {DEMO_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn oversized_urls_and_heads_get_414_and_431_json_and_never_reach_the_upstream() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start_with(&standard_config(up.addr), &server("")).await;
    let path = "/v1/chat/completions";
    let fields = |n: usize| (0..n).map(|i| format!("x-f{i}: v\r\n")).collect::<String>();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "9 KiB URL",
            chat_head(&format!("{path}?q={}", "a".repeat(9 * 1024)), ""),
            414,
            "uri_too_long",
        ),
        (
            "70 KiB URL",
            chat_head(&format!("{path}?q={}", "a".repeat(70 * 1024)), ""),
            414,
            "uri_too_long",
        ),
        (
            "70 KiB header",
            chat_head(path, &format!("x-big: {}\r\n", "b".repeat(70 * 1024))),
            431,
            "request_header_too_large",
        ),
        (
            "1 MiB header",
            chat_head(path, &format!("x-big: {}\r\n", "b".repeat(1024 * 1024))),
            431,
            "request_header_too_large",
        ),
        (
            "150 fields",
            chat_head(path, &fields(150)),
            431,
            "too_many_headers",
        ),
        (
            "300 fields",
            chat_head(path, &fields(300)),
            431,
            "too_many_headers",
        ),
        (
            "malformed head",
            "GET /v1/models HTTP/1.1\r\nhost: gw\r\nbad header\r\n\r\n".to_owned(),
            400,
            "invalid_request_head",
        ),
    ];
    for (what, head, status, expected) in &cases {
        let (got, h, body) = send_head(gw.port, head).await;
        assert_eq!(got, *status, "{what}: {h}\n{body}");
        assert_eq!(code(&body), *expected, "{what}");
        assert!(h.contains("content-type: application/json"), "{what}: {h}");
        assert!(!h.contains("server:"), "{what}: {h}");
    }
    // The admin port applies the same caps.
    let (got, _, body) = send_head(
        gw.admin_port,
        &format!(
            "GET /healthz?{} HTTP/1.1\r\nhost: gw\r\n\r\n",
            "a".repeat(9 * 1024)
        ),
    )
    .await;
    assert_eq!((got, code(&body).as_str()), (414, "uri_too_long"));

    assert_eq!(up.count(), 0, "a refused request reached the upstream");
    // A normal request still works and is forwarded.
    let (got, _, _) = send_head(gw.port, &chat_head(path, "connection: close\r\n")).await;
    assert_eq!(got, 200);
    assert_eq!(up.count(), 1);
    no_error_lines(&gw);
}

#[tokio::test]
async fn the_upstream_server_header_is_dropped() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    // The mock does send one.
    let direct = client()
        .get(format!("http://{}/v1/models", up.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.headers()["server"], "mock-provider/1.0");
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .json(&chat_body("gpt-4o", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("server").is_none(), "{:?}", r.headers());
    let r = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(DEMO_KEY)
        .json(&chat_body("gpt-4o", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("server").is_none(), "{:?}", r.headers());
}

#[tokio::test]
async fn a_trickling_body_gets_408_at_the_body_timeout_and_is_counted() {
    let up = MockUpstream::start().await;
    let extra = "  head_timeout_seconds: 5\n  body_read_timeout_seconds: 1\n";
    let gw = GatewayProc::start_with(&standard_config(up.addr), extra).await;
    let mut s = connect(gw.port).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {DEMO_KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"model\""
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (text, after) = read_to_close(&mut s, Duration::from_secs(4)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_body_timeout\""), "{text}");
    assert!(after < Duration::from_millis(2500), "after {after:?}");
    assert_eq!(up.count(), 0);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "gateway_client_timeouts_total{listener=\"proxy\",phase=\"body\"}"
        ),
        1.0,
        "{m}"
    );
    no_error_lines(&gw);
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted_and_not_logged_at_error() {
    let up = MockUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("gw-hostile-tls-{}", std::process::id()));
    let gw = GatewayProc::start_with(&standard_config(up.addr), &tls_server_lines(&dir)).await;
    // Plain HTTP on the TLS port, then a client that connects and goes away at once: both fail
    // Pingora's handshake, which it logs at ERROR per connection. (The harness's own readiness
    // probe of the port may have failed one already: at least two are counted.)
    let mut plain = connect(gw.port).await;
    plain.write_all(&models_request(false)).await.unwrap();
    let _ = read_to_close(&mut plain, Duration::from_secs(5)).await;
    drop(connect(gw.port).await);
    let counted = wait_for_metric(&gw, "gateway_tls_handshake_errors_total", 2.0, 50).await;
    assert!(counted >= 2.0, "counted {counted}: {}", gw.logs());
    no_error_lines(&gw);
    assert!(!gw.logs().contains("handshake"), "{}", gw.logs());
    assert_eq!(up.count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_tls_handshake_is_cut_at_the_head_deadline_and_counted() {
    let up = MockUpstream::start().await;
    let dir = std::env::temp_dir().join(format!("gw-hostile-tls-slow-{}", std::process::id()));
    let lines = format!("{}{}", server(""), tls_server_lines(&dir));
    let gw = GatewayProc::start_with(&standard_config(up.addr), &lines).await;
    // One client says nothing; the other sends the first bytes of a ClientHello and stalls.
    // Pingora's own listener would have held both for 60 s.
    let start = Instant::now();
    let mut silent = connect(gw.port).await;
    let mut stalled = connect(gw.port).await;
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    for s in [&mut silent, &mut stalled] {
        let _ = read_to_close(s, Duration::from_secs(5)).await;
        let after = start.elapsed();
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_millis(3000),
            "closed after {after:?}"
        );
    }
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "gateway_client_timeouts_total{listener=\"tls\",phase=\"handshake\"}"
        ),
        2.0,
        "{text}"
    );
    no_error_lines(&gw);
    // A real client still gets through, over HTTP/1.1 and HTTP/2.
    for flag in ["--http1.1", "--http2"] {
        let url = gw.url("/v1/models").replacen("http://", "https://", 1);
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sk", flag, "-o", "/dev/null", "-w", "%{http_code}", "-H"])
                .arg(format!("authorization: Bearer {DEMO_KEY}"))
                .arg(url)
                .output()
                .expect("curl is needed for the TLS test")
        })
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{flag}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that cancels its requests (closes the connection while the provider is still
/// working, or after the first bytes of a stream) costs an ERROR line per request in stock
/// Pingora, with the request's path. It is counted instead, and logged at debug level; the
/// gateway goes on serving.
#[tokio::test]
async fn clients_that_cancel_their_requests_are_counted_and_not_logged_at_error() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start_with(&standard_config(up.addr), &server("")).await;
    // Gone while the provider takes its time over the response head.
    for _ in 0..3 {
        let mut s = connect(gw.port).await;
        s.write_all(chat_head("/v1/chat/completions", "x-mock-sleep-ms: 600\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(s);
    }
    // Gone in the middle of a slow stream.
    let r = slow_chat_stream(gw.url("/v1/chat/completions"), 300).await;
    assert_eq!(r.status(), 200);
    drop(r);
    let name = "gateway_client_aborts_total{listener=\"proxy\"}";
    let counted = wait_for_metric(&gw, name, 4.0, 60).await;
    assert_eq!(counted, 4.0, "{}", gw.logs());
    no_error_lines(&gw);
    // Still serving, and nothing else was counted as an abort.
    let mut s = connect(gw.port).await;
    s.write_all(chat_head("/v1/chat/completions", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    assert_eq!(metric(&gw.metrics().await, name), 4.0);
}
