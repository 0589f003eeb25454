//! Connection deadlines on both listeners: a request head trickled one line per second is cut
//! off at `server.header_read_timeout_secs`, and so is an idle keep-alive connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD_TIMEOUT_SECS: u64 = 2;

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

fn addr_of(url: &str) -> SocketAddr {
    url.rsplit("://").next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_request_head_is_closed_at_the_deadline_on_api_and_admin_ports() {
    let env = Env::start_with(|c| c.server.header_read_timeout_secs = HEAD_TIMEOUT_SECS).await;
    let admin = addr_of(&env.server.admin_url);
    for (port, addr) in [("api", env.server.addr), ("admin", admin)] {
        let open = trickle(addr)
            .await
            .unwrap_or_else(|| panic!("{port}: a trickled head was held for 20 s"));
        assert!(
            open >= Duration::from_secs(HEAD_TIMEOUT_SECS - 1),
            "{port}: closed before the deadline ({open:?})"
        );
    }
    // The ports still serve complete requests.
    let r = env
        .server
        .http
        .get(format!("{}/healthz", env.server.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_is_closed_on_api_and_admin_ports() {
    let env = Env::start_with(|c| c.server.header_read_timeout_secs = HEAD_TIMEOUT_SECS).await;
    let admin = addr_of(&env.server.admin_url);
    for (port, addr) in [("api", env.server.addr), ("admin", admin)] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(head.starts_with("HTTP/1.1 200"), "{port}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{port}: not kept alive: {head}"
        );
        assert!(
            closed_within(&mut s, Duration::from_secs(15)).await,
            "{port}: idle keep-alive connection still open after 15 s"
        );
    }
}
