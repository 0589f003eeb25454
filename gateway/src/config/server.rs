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
    /// Longest time a client may take to send a whole request head, however it trickles
    /// (every listener; from accept for a connection's first request).
    #[serde(default = "default_head_timeout")]
    pub head_timeout_seconds: u64,
    /// Longest silence between two requests on a kept-alive connection (every listener; for
    /// HTTP/2, the connection's idle timeout).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Most client connections open at once on the proxy (or TLS) listener (default: half of
    /// the descriptor limit less 1024, at most 10,000: every proxied request also holds an
    /// upstream descriptor). Past it new connections are closed at once.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most connections open at once on the admin listener: its own budget, so probes and
    /// scrapes answer while the proxy listener is full.
    #[serde(default = "default_admin_max_connections")]
    pub admin_max_connections: usize,
    /// Most connections open at once from one source IP address on the proxy listener. Off by
    /// default: clients behind one NAT or load balancer share an address.
    #[serde(default)]
    pub max_connections_per_source: Option<usize>,
    /// Largest request head (request line and headers), in bytes; past it 431.
    #[serde(default = "default_max_head_bytes")]
    pub max_request_head_bytes: usize,
    /// Longest request target (path and query), in bytes; past it 414.
    #[serde(default = "default_max_url_bytes")]
    pub max_url_bytes: usize,
    /// Most request header fields; past it 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Bytes of each client connection's read buffer (0: unbuffered). Pingora's default is
    /// 64 KiB per connection, allocated at accept: 20,000 idle connections then ask the
    /// allocator for 1.25 GiB in 20,000 separate large blocks, whose bookkeeping the allocator
    /// never returns. 8 KiB holds a typical request head and small body in one read; larger
    /// body reads bypass the buffer (Pingora reads bodies in 64 KiB chunks straight from the
    /// socket when the buffer is empty).
    #[serde(default = "default_read_buffer_bytes")]
    pub read_buffer_bytes: usize,
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

/// See [`ServerSettings::read_buffer_bytes`].
pub const DEFAULT_READ_BUFFER_BYTES: usize = 8 * 1024;
const MAX_READ_BUFFER_BYTES: usize = 1024 * 1024;

fn default_read_buffer_bytes() -> usize {
    DEFAULT_READ_BUFFER_BYTES
}

fn default_max_in_flight() -> u64 {
    4096
}
fn default_head_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_admin_max_connections() -> usize {
    256
}
fn default_max_head_bytes() -> usize {
    64 * 1024
}
fn default_max_url_bytes() -> usize {
    8 * 1024
}
fn default_max_headers() -> usize {
    100
}

/// Pingora's own ceilings: a head over 1 MiB or with over 256 fields fails its parser.
const PINGORA_MAX_HEAD_BYTES: usize = 1_048_575;
const PINGORA_MAX_HEADERS: usize = 256;

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
            head_timeout_seconds: default_head_timeout(),
            idle_timeout_seconds: default_idle_timeout(),
            max_connections: None,
            admin_max_connections: default_admin_max_connections(),
            max_connections_per_source: None,
            max_request_head_bytes: default_max_head_bytes(),
            max_url_bytes: default_max_url_bytes(),
            max_headers: default_max_headers(),
            read_buffer_bytes: default_read_buffer_bytes(),
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
        for (field, v) in [
            ("head_timeout_seconds", self.head_timeout_seconds),
            ("idle_timeout_seconds", self.idle_timeout_seconds),
        ] {
            if v == 0 || v > 3600 {
                return Err((field.into(), "must be between 1 and 3600".into()));
            }
        }
        if self.max_connections == Some(0) || self.admin_max_connections == 0 {
            let field = if self.admin_max_connections == 0 {
                "admin_max_connections"
            } else {
                "max_connections"
            };
            return Err((field.into(), "must be at least 1".into()));
        }
        if self.max_connections_per_source == Some(0) {
            return Err((
                "max_connections_per_source".into(),
                "must be at least 1 (omit it for no per-source cap)".into(),
            ));
        }
        if !(1024..=PINGORA_MAX_HEAD_BYTES).contains(&self.max_request_head_bytes) {
            return Err((
                "max_request_head_bytes".into(),
                format!("must be between 1024 and {PINGORA_MAX_HEAD_BYTES}"),
            ));
        }
        if self.read_buffer_bytes > MAX_READ_BUFFER_BYTES {
            return Err((
                "read_buffer_bytes".into(),
                format!("must be at most {MAX_READ_BUFFER_BYTES} (0 reads unbuffered)"),
            ));
        }
        if self.max_url_bytes < 256 || self.max_url_bytes > self.max_request_head_bytes {
            return Err((
                "max_url_bytes".into(),
                "must be at least 256 and at most max_request_head_bytes".into(),
            ));
        }
        if self.max_headers == 0 || self.max_headers > PINGORA_MAX_HEADERS {
            return Err((
                "max_headers".into(),
                format!("must be between 1 and {PINGORA_MAX_HEADERS}"),
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
