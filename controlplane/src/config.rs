//! The control plane's configuration: parsed once from YAML into validated types.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gateway_schema::{Secret, SecretRef};
use serde::Deserialize;

use crate::rbac::Role;

/// Why the configuration could not be loaded. Messages name the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("config field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("cannot resolve secret for `{field}`: {reason}")]
    Secret { field: &'static str, reason: String },
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the API and admin ports listen.
    #[serde(default)]
    pub server: ServerConfig,
    /// The store.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// OIDC identity; absent means development mode (forwarded headers trusted).
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Development mode settings (only used without `oidc`).
    #[serde(default)]
    pub dev: DevConfig,
    /// Group → role mapping and break-glass admins.
    #[serde(default)]
    pub rbac: RbacConfig,
    /// Request guards on mutating methods.
    #[serde(default)]
    pub guards: GuardsConfig,
    /// Shared secrets for component calls.
    #[serde(default)]
    pub internal: InternalConfig,
    /// Audit log retention.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Signed config snapshots for gateways.
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
    /// Usage record retention.
    #[serde(default)]
    pub usage: UsageConfig,
    /// Guardrail block record retention.
    #[serde(default)]
    pub guardrail_blocks: GuardrailBlocksConfig,
}

/// Guardrail block record settings (`guardrail_blocks:`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailBlocksConfig {
    /// Records older than this many days are purged (hourly, and at start).
    #[serde(default = "default_usage_retention")]
    pub retention_days: u32,
}

impl Default for GuardrailBlocksConfig {
    fn default() -> Self {
        Self {
            retention_days: default_usage_retention(),
        }
    }
}

/// Usage record settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageConfig {
    /// Records older than this many days are purged (hourly, and at start).
    #[serde(default = "default_usage_retention")]
    pub retention_days: u32,
}

fn default_usage_retention() -> u32 {
    400
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            retention_days: default_usage_retention(),
        }
    }
}

/// Snapshot signing (`snapshots:`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// *Secret ref* to the Ed25519 signing key (base64 PKCS#8, as `controlplane keygen`
    /// writes it). Without it no snapshot is published.
    #[serde(default)]
    pub signing_key: Option<SecretRef>,
}

/// Listening addresses and transport facts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The REST API address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The admin address: `/healthz`, `/readyz`, `/metrics`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Serve the API over TLS with this certificate and key (PEM files).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Set when clients reach the API over TLS terminated by a proxy in front: adds
    /// `Strict-Transport-Security` to every response (always sent when `tls` is set).
    #[serde(default)]
    pub served_over_tls: bool,
    /// Seconds to let in-flight requests finish on shutdown.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: u64,
    /// Seconds a client has for the TLS handshake and for sending a complete request head.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// Seconds a kept-alive HTTP/1 connection may stay silent between requests.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

/// The longest head deadline or idle timeout accepted (an hour, as on the gateway).
const MAX_CONNECTION_TIMEOUT_SECS: u64 = 3600;

fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    60
}

/// TLS certificate and key for the API port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl ServerConfig {
    /// Whether responses carry HSTS: the API is reached over TLS, here or in front.
    pub fn hsts(&self) -> bool {
        self.served_over_tls || self.tls.is_some()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9091))
}
fn default_shutdown_grace() -> u64 {
    10
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            tls: None,
            served_over_tls: false,
            shutdown_grace_secs: default_shutdown_grace(),
            header_read_timeout_secs: default_header_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
        }
    }
}

/// The store: a SQLite file by default, Postgres when `url` is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// SQLite file, created when missing. Used when `url` is absent.
    #[serde(default = "default_sqlite_path")]
    pub sqlite_path: PathBuf,
    /// A database URL (`postgres://...` or `sqlite://...`), as a secret reference because it
    /// usually carries a password: `env:DATABASE_URL` or `file:/run/secrets/db-url`.
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// Connection pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

fn default_sqlite_path() -> PathBuf {
    PathBuf::from("controlplane.db")
}
fn default_max_connections() -> u32 {
    8
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            sqlite_path: default_sqlite_path(),
            url: None,
            max_connections: default_max_connections(),
        }
    }
}

impl DatabaseConfig {
    /// The database URL to connect to (resolving the secret reference if there is one).
    pub fn connect_url(&self) -> Result<Secret, ConfigError> {
        match &self.url {
            Some(r) => r.resolve().map_err(|e| ConfigError::Secret {
                field: "database.url",
                reason: e.to_string(),
            }),
            None => {
                // The path is percent-decoded by the driver: escape what would end it early.
                let path = self.sqlite_path.display().to_string();
                let mut escaped = String::with_capacity(path.len());
                for c in path.chars() {
                    match c {
                        '%' => escaped.push_str("%25"),
                        '?' => escaped.push_str("%3F"),
                        '#' => escaped.push_str("%23"),
                        c => escaped.push(c),
                    }
                }
                Ok(Secret::new(format!("sqlite://{escaped}?mode=rwc")))
            }
        }
    }
}

/// OIDC issuer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer URL; the discovery document's `issuer` must equal it exactly.
    pub issuer: String,
    /// Accepted audiences (`aud` must contain one of them).
    pub audience: Vec<String>,
    /// The claim holding group names (a string array).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Allowed clock skew for `exp`/`nbf`, at most 60 seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Cached keys older than this are refreshed on next use (kept if the issuer is down).
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// An unknown `kid` triggers at most one JWKS refresh per this many seconds.
    #[serde(default = "default_unknown_kid_interval")]
    pub unknown_kid_refresh_interval_secs: u64,
    /// An unknown `kid` is remembered (rejected without a fetch) this long.
    #[serde(default = "default_negative_cache")]
    pub unknown_kid_negative_cache_secs: u64,
    /// Timeout of each request to the issuer.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_ms: u64,
    /// PEM file of CA certificates trusted for the issuer's HTTPS *in addition to* the bundled
    /// public roots (a corporate CA). Read at start; an unreadable or empty file stops it.
    #[serde(default)]
    pub ca_bundle: Option<PathBuf>,
}

fn default_groups_claim() -> String {
    "groups".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_max_age() -> u64 {
    300
}
fn default_unknown_kid_interval() -> u64 {
    30
}
fn default_negative_cache() -> u64 {
    10
}
fn default_http_timeout() -> u64 {
    5_000
}

/// Development mode (no issuer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevConfig {
    /// Without an issuer the server refuses a non-loopback address unless this is true.
    #[serde(default)]
    pub allow_non_loopback: bool,
}

/// One group → role mapping.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRole {
    /// Group name as it appears in the token's groups claim.
    pub group: String,
    /// Org slug, or `*` for every org (and org creation, audit).
    pub org: String,
    /// The role granted.
    pub role: Role,
}

/// Role mapping.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RbacConfig {
    /// Group → (org, role) mappings.
    #[serde(default)]
    pub group_roles: Vec<GroupRole>,
    /// Emails granted admin on every org, only when the token says `email_verified: true`.
    #[serde(default)]
    pub break_glass_admins: BTreeSet<String>,
}

/// Redis failure behaviour of the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    /// Allow the request when Redis is slow or down.
    Open,
    /// Refuse the request (503) when Redis is slow or down.
    Closed,
}

/// Guards on mutating requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardsConfig {
    /// Largest accepted request body (bytes).
    #[serde(default = "default_body_cap")]
    pub max_body_bytes: usize,
    /// Seconds the whole body of a mutating request may take to arrive (408 after).
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_secs: u64,
    /// Token bucket capacity (burst).
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    /// Token bucket refill rate (tokens per second).
    #[serde(default = "default_refill")]
    pub rate_limit_per_second: f64,
    /// Coordinate the bucket across replicas through Redis (`env:`/`file:` reference).
    #[serde(default)]
    pub redis_url: Option<SecretRef>,
    /// How long one Redis check may take before the failure mode applies.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout_ms: u64,
    /// What to do when Redis is slow or down.
    #[serde(default = "default_failure_mode")]
    pub redis_failure_mode: FailureMode,
    /// The Redis key holding the shared bucket (replicas of one deployment share it).
    #[serde(default = "default_redis_key")]
    pub redis_key: String,
}

fn default_redis_key() -> String {
    "controlplane:ratelimit:global".into()
}

fn default_body_read_timeout() -> u64 {
    30
}
fn default_body_cap() -> usize {
    1024 * 1024
}
fn default_burst() -> u32 {
    60
}
fn default_refill() -> f64 {
    10.0
}
fn default_redis_timeout() -> u64 {
    100
}
fn default_failure_mode() -> FailureMode {
    FailureMode::Closed
}

impl Default for GuardsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_body_cap(),
            body_read_timeout_secs: default_body_read_timeout(),
            rate_limit_burst: default_burst(),
            rate_limit_per_second: default_refill(),
            redis_url: None,
            redis_timeout_ms: default_redis_timeout(),
            redis_failure_mode: default_failure_mode(),
            redis_key: default_redis_key(),
        }
    }
}

/// Shared secrets for calls from other components (as secret references).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalConfig {
    /// The secret every component call carries as `Authorization: Bearer`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Token for usage ingest (`X-Ingest-Token`).
    #[serde(default)]
    pub usage_ingest_token: Option<SecretRef>,
    /// Token for cache-hit ingest.
    #[serde(default)]
    pub cache_hits_ingest_token: Option<SecretRef>,
    /// Token for guardrail-block ingest.
    #[serde(default)]
    pub guardrail_blocks_ingest_token: Option<SecretRef>,
    /// Token for ownership records of provider objects (`/internal/v1/ingest/objects`).
    #[serde(default)]
    pub objects_ingest_token: Option<SecretRef>,
}

/// Audit log settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Records older than this many days are purged (hourly, and at start).
    #[serde(default = "default_retention")]
    pub retention_days: u32,
}

fn default_retention() -> u32 {
    365
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: default_retention(),
        }
    }
}

/// The largest leeway accepted.
pub const MAX_LEEWAY_SECS: u64 = 60;

impl Config {
    /// Reads and validates a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let cfg: Config = serde_yaml_ng::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown,
            reason: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks cross-field rules serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(o) = &self.oidc {
            if o.leeway_secs > MAX_LEEWAY_SECS {
                return Err(ConfigError::Invalid {
                    field: "oidc.leeway_secs",
                    reason: format!("must be at most {MAX_LEEWAY_SECS}"),
                });
            }
            if o.audience.is_empty() || o.audience.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid {
                    field: "oidc.audience",
                    reason: "list at least one non-empty audience".into(),
                });
            }
            let url = url::Url::parse(&o.issuer).map_err(|e| ConfigError::Invalid {
                field: "oidc.issuer",
                reason: e.to_string(),
            })?;
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            // Keys fetched over plain HTTP could be swapped in transit: only a local issuer.
            if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                return Err(ConfigError::Invalid {
                    field: "oidc.issuer",
                    reason: "must be an https:// URL (http:// only for a loopback issuer)".into(),
                });
            }
        }
        for gr in &self.rbac.group_roles {
            if gr.org != "*" && gateway_schema::Slug::parse(&gr.org).is_err() {
                return Err(ConfigError::Invalid {
                    field: "rbac.group_roles.org",
                    reason: format!("`{}` is neither `*` nor a valid org slug", gr.org),
                });
            }
        }
        // Bounded above too: a deadline is an instant plus this, which must not overflow.
        for (field, secs) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", self.server.idle_timeout_secs),
        ] {
            if secs == 0 || secs > MAX_CONNECTION_TIMEOUT_SECS {
                return Err(ConfigError::Invalid {
                    field,
                    reason: format!("must be between 1 and {MAX_CONNECTION_TIMEOUT_SECS}"),
                });
            }
        }
        if self.guards.body_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "guards.body_read_timeout_secs",
                reason: "must be positive".into(),
            });
        }
        if self.guards.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                field: "guards.max_body_bytes",
                reason: "must be positive".into(),
            });
        }
        if self.guards.rate_limit_burst == 0
            || !(self.guards.rate_limit_per_second.is_finite()
                && self.guards.rate_limit_per_second > 0.0)
        {
            return Err(ConfigError::Invalid {
                field: "guards.rate_limit_burst / rate_limit_per_second",
                reason: "must both be positive".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_load_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dev = Config::load(&root.join("conf/controlplane.yaml")).unwrap();
        assert!(dev.oidc.is_none());
        assert!(dev.server.listen.ip().is_loopback());
        let prod = Config::load(&root.join("conf/controlplane.production.yaml")).unwrap();
        assert!(prod.oidc.is_some());
        assert!(prod.database.url.is_some());
        assert!(prod.server.tls.is_some());
    }

    #[test]
    fn sqlite_paths_with_url_characters_are_escaped() {
        let db = DatabaseConfig {
            sqlite_path: PathBuf::from("/data/a b?c#d%e.db"),
            ..DatabaseConfig::default()
        };
        assert_eq!(
            db.connect_url().unwrap().expose(),
            "sqlite:///data/a b%3Fc%23d%25e.db?mode=rwc"
        );
    }

    #[test]
    fn plain_http_issuer_is_refused_unless_local() {
        let cfg = |issuer: &str| -> Config {
            serde_yaml_ng::from_str(&format!("oidc:\n  issuer: {issuer}\n  audience: [a]\n"))
                .unwrap()
        };
        assert!(cfg("http://idp.example.com").validate().is_err());
        assert!(cfg("ftp://idp.example.com").validate().is_err());
        assert!(cfg("https://idp.example.com").validate().is_ok());
        assert!(cfg("http://127.0.0.1:8080").validate().is_ok());
        assert!(cfg("http://localhost:8080").validate().is_ok());
    }

    #[test]
    fn connection_timeouts_must_be_between_one_second_and_an_hour() {
        let cfg = |field: &str, secs: u64| -> Config {
            serde_yaml_ng::from_str(&format!("server:\n  {field}: {secs}\n")).unwrap()
        };
        for field in ["header_read_timeout_secs", "idle_timeout_secs"] {
            assert!(cfg(field, 0).validate().is_err(), "{field}: 0");
            assert!(cfg(field, 3601).validate().is_err(), "{field}: 3601");
            assert!(cfg(field, 3600).validate().is_ok(), "{field}: 3600");
            assert!(cfg(field, 1).validate().is_ok(), "{field}: 1");
        }
        assert_eq!(ServerConfig::default().idle_timeout_secs, 60);
        assert_eq!(ServerConfig::default().header_read_timeout_secs, 10);
    }

    #[test]
    fn leeway_over_a_minute_is_refused() {
        let yaml = "oidc:\n  issuer: https://i.example\n  audience: [a]\n  leeway_secs: 61\n";
        let cfg: Config = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Invalid {
                field: "oidc.leeway_secs",
                ..
            })
        ));
    }
}
