//! Usage records: what the gateway reports to the control plane for each proxied request.
//! Never content, never a key: ids, names from config, counts and codes.

use serde::{Deserialize, Serialize};

/// One request's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecord {
    /// Unique per request, minted by the gateway: the idempotency key (`request_id` may be
    /// the client's own `x-request-id`, which two requests may share).
    pub id: String,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// When the request finished, Unix milliseconds.
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
    /// The matched route's pattern (`gpt-*`), or `native`.
    pub route: String,
    /// The model that answered (the provider's word), when known.
    #[serde(default)]
    pub model: Option<String>,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from a prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write_tokens: u64,
    /// Exact cost in pico-units (10⁻¹²) of the price table's currency; absent when the
    /// model has no price.
    #[serde(default)]
    pub cost_pico: Option<u64>,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Whole-request latency in milliseconds.
    pub latency_ms: u64,
    /// Whether the response reached its end (a stream cut short is `false`).
    pub complete: bool,
}

/// The body of `POST /internal/v1/ingest/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    /// The records, at most [`MAX_BATCH`].
    pub records: Vec<UsageRecord>,
}

/// Most records in one batch.
pub const MAX_BATCH: usize = 500;

impl UsageRecord {
    /// Checks every field an untrusted sender controls; returns the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        };
        let text_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if !id_ok(&self.id) {
            return Err("id".into());
        }
        if !id_ok(&self.request_id) {
            return Err("request_id".into());
        }
        for (f, v) in [
            ("org", &self.org),
            ("project", &self.project),
            ("provider", &self.provider),
        ] {
            if crate::Slug::try_from(v.clone()).is_err() {
                return Err(f.into());
            }
        }
        if !text_ok(&self.route) {
            return Err("route".into());
        }
        if self.model.as_deref().is_some_and(|m| !text_ok(m)) {
            return Err("model".into());
        }
        if self
            .key_id
            .as_deref()
            .is_some_and(|k| !id_ok(k) || k.len() > 32)
        {
            return Err("key_id".into());
        }
        let big = |n: u64| i64::try_from(n).is_err();
        if [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.latency_ms,
            self.cost_pico.unwrap_or(0),
        ]
        .into_iter()
        .any(big)
        {
            return Err("counts must fit a signed 64-bit integer".into());
        }
        if self.at_ms < 0 {
            return Err("at_ms".into());
        }
        Ok(())
    }
}
