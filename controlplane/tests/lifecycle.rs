//! Start and stop: graceful shutdown lets in-flight requests finish and refuses new ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_request_finishes_during_graceful_shutdown() {
    let Env {
        issuer,
        rsa,
        mut server,
        ..
    } = Env::start().await;
    let admin = rsa.sign(&issuer.claims("root-admin", &["platform-admins"]));
    let body = r#"{"slug":"late-arrival"}"#;
    let mut conn = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/orgs HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.signal_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are no longer served.
    let refused = match tokio::net::TcpStream::connect(server.addr).await {
        Err(_) => true,
        Ok(mut c) => {
            let _ = c
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            matches!(
                tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await,
                Ok(Ok(0)) | Ok(Err(_)) | Err(_)
            )
        }
    };
    assert!(refused, "a new connection was served after shutdown began");

    // The request that was already in flight completes normally.
    conn.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("server did not stop after draining");
}
