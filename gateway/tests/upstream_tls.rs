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

/// The gateway in control-plane mode pointed at `cp_url`, with or without the CA bundle; its
/// `/readyz` reason says how its snapshot stream fails.
async fn cp_mode_gateway(dir: &Path, cp_url: &str, bundle: Option<&Path>) -> GatewayProc {
    std::fs::write(dir.join("internal-secret"), "test-only-internal-secret\n")
        .unwrap_or_else(|e| panic!("{e}"));
    // Any 32-byte Ed25519 public key: this test never gets as far as a snapshot.
    std::fs::write(
        dir.join("snapshot.pub"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut extra = format!(
        "  control_plane:\n    url: \"{cp_url}\"\n    internal_secret: \"file:{}\"\n    public_key: \"file:{}\"\n    last_known_good: \"{}\"\n",
        dir.join("internal-secret").display(),
        dir.join("snapshot.pub").display(),
        dir.join(format!("lkg-{}.json", bundle.is_some())).display(),
    );
    if let Some(b) = bundle {
        extra.push_str(&format!("  upstream_ca_bundle: \"{}\"\n", b.display()));
    }
    GatewayProc::launch("", &extra, &[], false).await
}

/// Polls `/readyz` until its reason contains `want` (or fails after 20 s with the last one).
async fn wait_for_reason(gw: &GatewayProc, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut last = String::new();
    while std::time::Instant::now() < deadline {
        let (_, body) = gw.readyz().await;
        last = body["reason"].as_str().unwrap_or_default().to_owned();
        if last.contains(want) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("readyz reason never said {want:?}; last: {last:?}");
}

#[tokio::test]
async fn control_plane_certificate_from_the_configured_ca_is_trusted_and_from_an_unknown_ca_is_not()
{
    let dir = std::env::temp_dir().join(format!("gw-cp-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    make_ca_and_server_cert(&dir);
    // A TLS server with the CA-signed certificate standing in for the control plane: another
    // gateway, which refuses the snapshot-stream request with an HTTP status once TLS is up.
    let up = MockUpstream::start().await;
    let tls = format!(
        "  tls:\n    cert_path: \"{}\"\n    key_path: \"{}\"\n",
        dir.join("server.crt").display(),
        dir.join("server.key").display()
    );
    let stand_in = GatewayProc::start_with(&provider_config(up.addr), &tls).await;
    let cp_url = format!("https://127.0.0.1:{}", stand_in.port);

    let untrusting = cp_mode_gateway(&dir, &cp_url, None).await;
    wait_for_reason(&untrusting, "cannot connect").await;

    let trusting = cp_mode_gateway(&dir, &cp_url, Some(&dir.join("ca.crt"))).await;
    wait_for_reason(&trusting, "refused the snapshot stream with status").await;
    let _ = std::fs::remove_dir_all(&dir);
}
