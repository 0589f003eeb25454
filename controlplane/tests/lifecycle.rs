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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_from_a_config_file_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(common::unique("cp-bin-"));
    std::fs::create_dir_all(&dir).unwrap();
    let (api, admin) = (free_port(), free_port());
    let cfg = dir.join("cp.yaml");
    std::fs::write(
        &cfg,
        format!(
            "server:\n  listen: \"127.0.0.1:{api}\"\n  admin_listen: \"127.0.0.1:{admin}\"\n\
             database:\n  sqlite_path: \"{}\"\n",
            dir.join("cp.db").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_controlplane"))
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await
        {
            up = r.status() == 200;
            if up {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        let _ = child.kill();
        panic!("binary did not become ready");
    }
    let r = http
        .get(format!("http://127.0.0.1:{api}/api/v1/orgs"))
        .header("x-forwarded-email", "dev@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("binary did not stop on SIGTERM");
    });
    assert!(exited.success(), "exit status {exited}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        out.contains("DEVELOPMENT MODE"),
        "no loud warning at start: {out}"
    );
    assert!(
        dir.join("cp.db").exists(),
        "the SQLite file was not created"
    );
}
