//! Gateway-local process settings (the `server:` section). Not part of a snapshot: a control
//! plane never changes where a gateway listens.

use std::net::SocketAddr;
use std::path::PathBuf;

use gateway_schema::SecretRef;
use serde::Deserialize;
use url::Url;

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_threads() -> usize {
    2
}
fn default_grace() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
fn default_body_read_timeout() -> u64 {
    60
}

/// The `server:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address of the proxy listener.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Address of the admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// Worker threads of the proxy.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Longest wait for in-flight requests after SIGTERM before the process exits.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// Accept cleartext HTTP/2 (prior knowledge) besides HTTP/1.1 on a plain listener.
    #[serde(default = "default_true")]
    pub h2c: bool,
    /// Longest time a client may take to send its request body.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_seconds: u64,
    /// Serve TLS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Watch the config file for changes (besides SIGHUP).
    #[serde(default = "default_true")]
    pub watch_config: bool,
    /// Let worker threads steal each other's tasks. Off by default: one single-threaded
    /// runtime per thread (like nginx workers) measured ~10% faster on small requests.
    #[serde(default)]
    pub work_stealing: bool,
    /// Bytes all buffered request bodies may hold together (default: 25% of the container's
    /// memory limit when a cgroup limit is visible, else 512 MiB).
    #[serde(default)]
    pub body_memory_budget_bytes: Option<u64>,
    /// Most requests in flight on this gateway (default 4096); past it 429 `concurrency_limit`.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u64,
    /// Take snapshots from a control plane instead of this file's snapshot section.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneSettings>,
    /// Where rate limits and spend are counted (Redis shares them between replicas).
    #[serde(default)]
    pub limits: Option<super::LimitsSettings>,
    /// Redis shared by every gateway (`env:NAME` or `file:/path` holding `redis://...`):
    /// object ownership is kept there when set, else in this process only.
    #[serde(default)]
    pub redis_url: Option<SecretRef>,
    /// PEM CA certificates trusted for upstream TLS besides the system roots (corporate CA).
    #[serde(default)]
    pub upstream_ca_bundle: Option<PathBuf>,
    /// Bytes the response cache may hold in this process, across every project (default
    /// 256 MiB); the least valuable entries are evicted past it.
    #[serde(default = "default_cache_memory_bytes")]
    pub cache_memory_bytes: u64,
}

fn default_cache_memory_bytes() -> u64 {
    crate::cache::DEFAULT_MEMORY_BYTES
}

fn default_max_in_flight() -> u64 {
    4096
}

fn default_last_known_good() -> PathBuf {
    PathBuf::from("gateway-snapshot.json")
}

impl ControlPlaneSettings {
    /// The default last-known-good path (`gateway-snapshot.json` in the working directory).
    pub fn default_last_known_good() -> PathBuf {
        default_last_known_good()
    }
}

/// Where the control plane is and how to trust it (`server.control_plane`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneSettings {
    /// Base URL of the control plane's API (`http(s)://host:port`).
    pub url: Url,
    /// The shared internal secret (`env:NAME` or `file:/path`), sent as `Authorization: Bearer`.
    pub internal_secret: SecretRef,
    /// The control plane's Ed25519 snapshot-signing public key (`env:` or `file:`; base64).
    pub public_key: SecretRef,
    /// Where the last applied snapshot is kept (with its signature), for starts while the
    /// control plane is down.
    #[serde(default = "default_last_known_good")]
    pub last_known_good: PathBuf,
    /// This gateway's id as the control plane lists it (default: the host name and pid).
    #[serde(default)]
    pub gateway_id: Option<String>,
    /// Token for `POST /internal/v1/ingest/usage`.
    #[serde(default)]
    pub usage_ingest_token: Option<SecretRef>,
    /// Token for `POST /internal/v1/ingest/cache-hits`.
    #[serde(default)]
    pub cache_hits_ingest_token: Option<SecretRef>,
    /// Token for `POST /internal/v1/ingest/guardrail-blocks`.
    #[serde(default)]
    pub guardrail_blocks_ingest_token: Option<SecretRef>,
    /// Token for `POST /internal/v1/ingest/objects`: when set, every provider object a
    /// project creates (or deletes) is reported to the control plane, and ownership is seeded
    /// from the control plane's records at start and after each reconnect.
    #[serde(default)]
    pub objects_ingest_token: Option<SecretRef>,
    /// Batching and spooling of ingested records.
    #[serde(default)]
    pub ingest: super::IngestSettings,
}

/// PEM certificate chain and private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain (PEM).
    pub cert_path: PathBuf,
    /// Private key (PEM).
    pub key_path: PathBuf,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            threads: default_threads(),
            shutdown_grace_seconds: default_grace(),
            h2c: true,
            body_read_timeout_seconds: default_body_read_timeout(),
            tls: None,
            watch_config: true,
            work_stealing: false,
            control_plane: None,
            body_memory_budget_bytes: None,
            max_in_flight: default_max_in_flight(),
            limits: None,
            redis_url: None,
            upstream_ca_bundle: None,
            cache_memory_bytes: default_cache_memory_bytes(),
        }
    }
}

impl ServerSettings {
    /// Checks the values serde cannot; returns `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (field, value) in [
            ("listen", &self.listen),
            ("admin_listen", &self.admin_listen),
        ] {
            if value.parse::<SocketAddr>().is_err() {
                return Err((field.into(), format!("`{value}` is not an IP:port address")));
            }
        }
        if self.listen == self.admin_listen {
            return Err(("admin_listen".into(), "must differ from listen".into()));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err(("threads".into(), "must be between 1 and 256".into()));
        }
        if self.shutdown_grace_seconds > 3600 {
            return Err((
                "shutdown_grace_seconds".into(),
                "must be at most 3600".into(),
            ));
        }
        if self.body_read_timeout_seconds == 0 || self.body_read_timeout_seconds > 3600 {
            return Err((
                "body_read_timeout_seconds".into(),
                "must be between 1 and 3600".into(),
            ));
        }
        if self.body_memory_budget_bytes == Some(0) {
            return Err((
                "body_memory_budget_bytes".into(),
                "must be at least 1 (omit it for the default)".into(),
            ));
        }
        if self.cache_memory_bytes == 0 {
            return Err((
                "cache_memory_bytes".into(),
                "must be at least 1 (omit it for the default, 256 MiB)".into(),
            ));
        }
        if self.max_in_flight == 0 {
            return Err(("max_in_flight".into(), "must be at least 1".into()));
        }
        if let Some(limits) = &self.limits {
            limits.validate()?;
        }
        if let Some(cp) = &self.control_plane {
            cp.ingest.validate()?;
        }
        if let Some(tls) = &self.tls {
            for (field, p) in [
                ("tls.cert_path", &tls.cert_path),
                ("tls.key_path", &tls.key_path),
            ] {
                if !p.is_file() {
                    return Err((
                        field.into(),
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
        }
        Ok(())
    }
}
