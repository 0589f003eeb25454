//! The control plane's client to the OIDC issuer verifies the issuer's certificate: against the
//! bundled public roots, plus the CA certificates of `oidc.ca_bundle` (a corporate CA). The CA
//! and the issuer's certificate are made at test time with the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::routing::get;
use axum::{Json, Router};
use controlplane::auth::jwks::JwksCache;
use controlplane::config::OidcConfig;
use controlplane::metrics::Metrics;
use serde_json::json;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
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
        "/CN=test-only CA",
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
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
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

/// An issuer serving discovery and a one-key JWKS over HTTPS with the test certificate.
async fn start_https_issuer(dir: &Path) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "https://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let pem = include_bytes!("fixtures/test-only-ec-1.pem");
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(pem).unwrap_or_else(|e| panic!("{e}"));
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::ES256)
        .unwrap_or_else(|e| panic!("{e}"));
    jwk.common.key_id = Some("tls-ec-1".into());
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")});
    let jwks = json!({"keys": [jwk]});
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move { Json(discovery) }),
        )
        .route("/jwks", get(move || async move { Json(jwks) }));
    let tls = controlplane::tls::server_config(&controlplane::config::TlsConfig {
        cert_path: dir.join("server.crt"),
        key_path: dir.join("server.key"),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let server = axum_server::from_tcp_rustls(listener, config).unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move { server.serve(app.into_make_service()).await });
    url
}

fn oidc_config(issuer: &str, ca_bundle: Option<PathBuf>) -> OidcConfig {
    let mut cfg: OidcConfig = serde_json::from_value(json!({
        "issuer": issuer,
        "audience": ["controlplane"],
        "http_timeout_ms": 5000,
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    cfg.ca_bundle = ca_bundle;
    cfg
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cp-oidc-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

#[tokio::test]
async fn issuer_signed_by_a_configured_ca_bundle_is_trusted_and_unknown_ca_is_refused() {
    let dir = temp_dir("trust");
    make_ca_and_server_cert(&dir);
    let issuer = start_https_issuer(&dir).await;
    let metrics = || Metrics::new().unwrap_or_else(|e| panic!("{e}"));

    // Without the CA bundle the issuer's certificate chains to no trusted root: no keys.
    let untrusted =
        JwksCache::new(&oidc_config(&issuer, None), metrics()).unwrap_or_else(|e| panic!("{e}"));
    let err = untrusted.refresh().await.err();
    assert!(
        err.is_some(),
        "an issuer certificate from an unknown CA was accepted"
    );
    assert!(untrusted.is_empty());

    // With the CA bundle the same issuer verifies, and its key is loaded.
    let trusted = JwksCache::new(&oidc_config(&issuer, Some(dir.join("ca.crt"))), metrics())
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = trusted.refresh().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded, 1);
    assert!(trusted.key("tls-ec-1").await.is_some());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unreadable_or_empty_ca_bundle_is_refused_at_start() {
    let dir = temp_dir("bad");
    let metrics = || Metrics::new().unwrap_or_else(|e| panic!("{e}"));
    let missing = oidc_config("https://127.0.0.1:9", Some(dir.join("missing.pem")));
    let e = JwksCache::new(&missing, metrics())
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("oidc.ca_bundle")),
        "{e:?}"
    );
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap_or_else(|e| panic!("{e}"));
    let empty = oidc_config("https://127.0.0.1:9", Some(dir.join("empty.pem")));
    let e = JwksCache::new(&empty, metrics())
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("no certificate")),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
