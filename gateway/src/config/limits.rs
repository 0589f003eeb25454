//! `server.limits`: where rate limits and spend are counted. Without a Redis URL every gateway
//! counts alone (in memory); with one, every gateway sharing it shares the counts.

use gateway_schema::SecretRef;
use serde::Deserialize;

fn default_timeout_ms() -> u64 {
    50
}
fn default_prefix() -> String {
    "gateway:".into()
}
fn default_flush_ms() -> u64 {
    50
}

/// What a request gets when Redis is slow or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Admit under this gateway's own counters (each replica then enforces the limits alone).
    Open,
    /// Refuse with 503 `rate_limiter_unavailable`.
    Closed,
}

fn default_mode() -> FailureMode {
    FailureMode::Open
}

/// The `server.limits` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSettings {
    /// `env:NAME` or `file:/path` holding a `redis://` (or `rediss://`) URL.
    #[serde(default)]
    pub redis_url: Option<SecretRef>,
    /// Longest a Redis check may take before the failure mode applies.
    #[serde(default = "default_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// `open` (default) or `closed`.
    #[serde(default = "default_mode")]
    pub redis_failure_mode: FailureMode,
    /// Prefix of every Redis key the gateway writes.
    #[serde(default = "default_prefix")]
    pub redis_key_prefix: String,
    /// How often token and spend charges are sent to Redis (batched: one pipeline).
    #[serde(default = "default_flush_ms")]
    pub redis_flush_ms: u64,
}

impl LimitsSettings {
    /// Checks the values serde cannot; returns `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.redis_timeout_ms == 0 || self.redis_timeout_ms > 10_000 {
            return Err((
                "limits.redis_timeout_ms".into(),
                "must be between 1 and 10000".into(),
            ));
        }
        if self.redis_flush_ms == 0 || self.redis_flush_ms > 10_000 {
            return Err((
                "limits.redis_flush_ms".into(),
                "must be between 1 and 10000".into(),
            ));
        }
        if self.redis_key_prefix.len() > 64 {
            return Err((
                "limits.redis_key_prefix".into(),
                "must be at most 64 bytes".into(),
            ));
        }
        Ok(())
    }
}
