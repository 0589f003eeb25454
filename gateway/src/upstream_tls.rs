//! Which CAs the gateway trusts for upstream TLS: the system roots, plus the CA certificates of
//! `server.upstream_ca_bundle` (a corporate CA, a TLS-inspecting proxy, the control plane's
//! private CA).
//!
//! Providers (Pingora's connector): without a bundle nothing is set here and Pingora verifies
//! against the system trust store. With one, Pingora's per-peer CA list *replaces* that store,
//! so the list holds the system roots too. It is loaded once at start (off the hot path) and
//! shared by every upstream peer through one `Arc` clone.
//!
//! The control-plane client (reqwest with rustls) trusts its bundled public roots plus the
//! same bundle ([`extra_certificates`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use pingora::tls::x509::X509;

/// The CA list type Pingora's OpenSSL connector takes.
pub type CaList = Arc<Box<[X509]>>;

/// Why the CA bundle was refused. Names the file.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("server.upstream_ca_bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
}

/// Where the system roots live when `SSL_CERT_FILE` does not say: Debian/Ubuntu (and the
/// distroless image), RHEL/Fedora, Alpine.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The loaded bundle: the CA list for Pingora and the bundle's own PEM for reqwest.
pub struct UpstreamCas {
    /// The system roots followed by the bundle's certificates.
    pub roots: CaList,
    /// The bundle's PEM text.
    pub bundle_pem: Vec<u8>,
}

static CAS: OnceLock<UpstreamCas> = OnceLock::new();

/// The system roots followed by the certificates of `bundle` (PEM; at least one).
pub fn load(bundle: &Path) -> Result<UpstreamCas, UpstreamTlsError> {
    let err = |reason: String| UpstreamTlsError::Bundle {
        path: bundle.to_owned(),
        reason,
    };
    let pem = std::fs::read(bundle).map_err(|e| err(e.to_string()))?;
    let extra = X509::stack_from_pem(&pem).map_err(|e| err(e.to_string()))?;
    if extra.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let system_file = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    let mut all = match &system_file {
        Some(p) => std::fs::read(p)
            .ok()
            .and_then(|pem| X509::stack_from_pem(&pem).ok())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if all.is_empty() {
        tracing::warn!(
            "no system CA bundle found; upstream TLS trusts only server.upstream_ca_bundle"
        );
    }
    all.extend(extra);
    Ok(UpstreamCas {
        roots: Arc::new(all.into_boxed_slice()),
        bundle_pem: pem,
    })
}

/// Makes `cas` the trust of every upstream connection. Call once, at start, before the
/// control-plane client is built.
pub fn install(cas: UpstreamCas) {
    let _ = CAS.set(cas);
}

/// The CA list for an upstream peer: `None` means Pingora's default (the system store).
pub fn roots() -> Option<CaList> {
    CAS.get().map(|c| c.roots.clone())
}

/// The bundle's certificates for a reqwest client (empty without a bundle).
pub fn extra_certificates() -> Vec<reqwest::Certificate> {
    CAS.get()
        .and_then(|c| reqwest::Certificate::from_pem_bundle(&c.bundle_pem).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_certificate_less_bundles_are_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("gw-ca-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let e = load(&dir.join("missing.pem")).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(
                |e| e.contains("server.upstream_ca_bundle") && e.contains("missing.pem")
            ),
            "{e:?}"
        );
        let empty = dir.join("empty.pem");
        let _ = std::fs::write(&empty, "no certificate here\n");
        let e = load(&empty).err().map(|e| e.to_string());
        assert!(e.is_some(), "a bundle without certificates was accepted");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
