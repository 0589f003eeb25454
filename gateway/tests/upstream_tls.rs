//! Upstream TLS: the gateway verifies a provider's certificate against the system roots plus
//! `server.upstream_ca_bundle`. The CA and the provider's certificate are made at test time
//! with the `openssl` CLI; the "provider" is a second gateway serving TLS with that certificate
//! in front of the mock upstream (it speaks the OpenAI API and takes the first gateway's
//! injected provider key as its own virtual key).

mod common;

use std::path::Path;

use common::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed to make test certificates: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA, and a certificate for 127.0.0.1 signed by it.
fn make_ca_and_server_cert(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=test-only upstream CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// The edge gateway's snapshot: one OpenAI provider at `https://127.0.0.1:{port}`.
fn edge_config(provider_port: u16) -> String {
    format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "https://127.0.0.1:{provider_port}"
    api_key: "env:TEST_OPENAI_KEY"
    connect_timeout_ms: 2000
    read_timeout_ms: 2000
routes:
  - model: "gpt-*"
    provider: openai
projects:
  - slug: demo
    keys:
      - digest: "{demo}"
"#,
        demo = digest(DEMO_KEY),
    )
}

/// The TLS "provider": the mock upstream behind a gateway that accepts the edge's injected key.
fn provider_config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "http://{upstream}"
    api_key: "env:TEST_OPENAI_KEY"
routes:
  - model: "gpt-*"
    provider: openai
projects:
  - slug: edge
    keys:
      - digest: "{edge}"
"#,
        edge = digest(OPENAI_UPSTREAM_KEY),
    )
}

#[tokio::test]
async fn provider_certificate_from_a_configured_ca_is_trusted_and_from_an_unknown_ca_is_502() {
    let dir = std::env::temp_dir().join(format!("gw-upstream-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    make_ca_and_server_cert(&dir);

    let up = MockUpstream::start().await;
    let tls = format!(
        "  tls:\n    cert_path: \"{}\"\n    key_path: \"{}\"\n",
        dir.join("server.crt").display(),
        dir.join("server.key").display()
    );
    let provider = GatewayProc::start_with(&provider_config(up.addr), &tls).await;
    let body = chat_body("gpt-4o", false);

    // Without the bundle the provider's certificate chains to no trusted root: 502, and the
    // request never reaches the upstream.
    let untrusting = GatewayProc::start(&edge_config(provider.port)).await;
    let resp = post_json(&untrusting, "/v1/chat/completions", DEMO_KEY, &body).await;
    let (status, code) = error_code(resp).await;
    assert_eq!(status, 502, "code {code}");
    assert_eq!(
        up.count(),
        0,
        "a request crossed an unverified TLS connection"
    );

    // With the CA in server.upstream_ca_bundle the same provider verifies.
    let bundle = format!(
        "  upstream_ca_bundle: \"{}\"\n",
        dir.join("ca.crt").display()
    );
    let trusting = GatewayProc::start_with(&edge_config(provider.port), &bundle).await;
    let resp = post_json(&trusting, "/v1/chat/completions", DEMO_KEY, &body).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(up.count(), 1);
    assert_eq!(
        up.last().header("authorization"),
        Some(format!("Bearer {OPENAI_UPSTREAM_KEY}").as_str())
    );
    let _ = std::fs::remove_dir_all(&dir);
}
