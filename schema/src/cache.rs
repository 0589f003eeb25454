//! The response cache: a project's cache policy, and the cache-hit records a gateway reports.
//! Never content, never a key: ids, names from config, counts.

use serde::{Deserialize, Serialize};

/// Default time an entry lives: 5 minutes.
pub const DEFAULT_CACHE_TTL_SECONDS: u64 = 300;
/// Default largest response stored: 1 MiB.
pub const DEFAULT_CACHE_MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// The longest TTL accepted: 7 days.
pub const MAX_CACHE_TTL_SECONDS: u64 = 7 * 86_400;
/// The largest entry accepted: 64 MiB.
pub const MAX_CACHE_ENTRY_BYTES: u64 = 64 * 1024 * 1024;

fn default_ttl() -> u64 {
    DEFAULT_CACHE_TTL_SECONDS
}
fn default_max_entry() -> u64 {
    DEFAULT_CACHE_MAX_ENTRY_BYTES
}
fn default_true() -> bool {
    true
}

/// A project's exact-match response cache (`projects[].cache`). Absent: no cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    /// Whether the cache answers this project's requests (a policy may keep its settings
    /// while switched off).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a stored response is served, in seconds (1 to 604800).
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u64,
    /// The largest response body stored, in bytes (1 to 64 MiB); larger ones are not stored.
    #[serde(default = "default_max_entry")]
    pub max_entry_bytes: u64,
    /// Non-deterministic request parameters whose requests may still be cached (by default
    /// each one makes a request bypass the cache).
    #[serde(default)]
    pub allow: Vec<CacheAllowance>,
}

impl Default for CacheSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_seconds: DEFAULT_CACHE_TTL_SECONDS,
            max_entry_bytes: DEFAULT_CACHE_MAX_ENTRY_BYTES,
            allow: Vec::new(),
        }
    }
}

impl CacheSpec {
    /// Checks the ranges serde cannot; returns `(field, reason)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.ttl_seconds == 0 || self.ttl_seconds > MAX_CACHE_TTL_SECONDS {
            return Err(("ttl_seconds", "must be between 1 and 604800 (7 days)"));
        }
        if self.max_entry_bytes == 0 || self.max_entry_bytes > MAX_CACHE_ENTRY_BYTES {
            return Err(("max_entry_bytes", "must be between 1 and 67108864 (64 MiB)"));
        }
        Ok(())
    }

    /// Whether requests with `p` may be cached.
    pub fn allows(&self, p: CacheAllowance) -> bool {
        self.allow.contains(&p)
    }
}

/// A non-deterministic request parameter a project may allow in cached requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheAllowance {
    /// `temperature` above 0.
    Temperature,
    /// `n` above 1.
    N,
    /// `tools` or `functions` present (a tool call may have side effects).
    Tools,
}

/// One response served from the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheHitRecord {
    /// Unique per hit, minted by the gateway: the idempotency key.
    pub id: String,
    /// The hit's `x-request-id`.
    pub request_id: String,
    /// The `x-request-id` of the response that was stored and replayed.
    pub source_request_id: String,
    /// When the hit was served, Unix milliseconds.
    pub at_ms: i64,
    /// Org slug.
    pub org: String,
    /// Project slug.
    pub project: String,
    /// The virtual key's id, when the snapshot names one.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Provider name.
    pub provider: String,
    /// The matched route's pattern, or `native`.
    pub route: String,
    /// The model that answered the stored response, when known.
    #[serde(default)]
    pub model: Option<String>,
    /// Uncached input tokens the stored response used (not spent again).
    pub input_tokens: u64,
    /// Output tokens saved.
    pub output_tokens: u64,
    /// Prompt-cache read tokens saved.
    pub cache_read_tokens: u64,
    /// Prompt-cache write tokens saved.
    pub cache_write_tokens: u64,
    /// What the stored response would cost again, in pico-units (10⁻¹²) of the price table's
    /// currency; absent when the model has no price.
    #[serde(default)]
    pub cost_saved_pico: Option<u64>,
}

/// The body of `POST /internal/v1/ingest/cache-hits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheHitBatch {
    /// The records, at most [`crate::usage::MAX_BATCH`].
    pub records: Vec<CacheHitRecord>,
}

impl CacheHitRecord {
    /// Checks every field an untrusted sender controls; returns the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        crate::usage::check_common(crate::usage::CommonFields {
            id: &self.id,
            request_id: &self.request_id,
            at_ms: self.at_ms,
            org: &self.org,
            project: &self.project,
            key_id: self.key_id.as_deref(),
            provider: &self.provider,
            route: &self.route,
            model: self.model.as_deref(),
            counts: &[
                self.input_tokens,
                self.output_tokens,
                self.cache_read_tokens,
                self.cache_write_tokens,
                self.cost_saved_pico.unwrap_or(0),
            ],
        })?;
        if !crate::usage::id_ok(&self.source_request_id) {
            return Err("source_request_id".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_spec_defaults_and_ranges() {
        let s: CacheSpec = serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, CacheSpec::default());
        assert!(s.enabled);
        assert_eq!(s.check(), Ok(()));
        let bad = CacheSpec {
            ttl_seconds: 0,
            ..CacheSpec::default()
        };
        assert_eq!(bad.check().map_err(|e| e.0), Err("ttl_seconds"));
        let bad = CacheSpec {
            max_entry_bytes: MAX_CACHE_ENTRY_BYTES + 1,
            ..CacheSpec::default()
        };
        assert_eq!(bad.check().map_err(|e| e.0), Err("max_entry_bytes"));
        let s: CacheSpec = serde_json::from_str(r#"{"allow":["temperature","n","tools"]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.allows(CacheAllowance::N));
        assert!(serde_json::from_str::<CacheSpec>(r#"{"allow":["seed"]}"#).is_err());
        assert!(serde_json::from_str::<CacheSpec>(r#"{"ttl":5}"#).is_err());
    }

    #[test]
    fn hit_records_are_validated() {
        let r = CacheHitRecord {
            id: "h1".into(),
            request_id: "r2".into(),
            source_request_id: "r1".into(),
            at_ms: 1,
            org: "acme".into(),
            project: "web".into(),
            key_id: None,
            provider: "openai".into(),
            route: "gpt-*".into(),
            model: Some("gpt-4o".into()),
            input_tokens: 1,
            output_tokens: 2,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_saved_pico: Some(5),
        };
        assert_eq!(r.validate(), Ok(()));
        let bad = CacheHitRecord {
            source_request_id: "a b".into(),
            ..r.clone()
        };
        assert_eq!(bad.validate(), Err("source_request_id".into()));
        let bad = CacheHitRecord {
            org: "Not A Slug".into(),
            ..r
        };
        assert_eq!(bad.validate(), Err("org".into()));
    }
}
