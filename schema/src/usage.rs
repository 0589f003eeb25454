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
        check_common(CommonFields {
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
                self.latency_ms,
                self.cost_pico.unwrap_or(0),
            ],
        })
    }
}

/// Whether `s` is a well-formed record or request id.
pub(crate) fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The fields usage and cache-hit records share.
pub(crate) struct CommonFields<'a> {
    pub id: &'a str,
    pub request_id: &'a str,
    pub at_ms: i64,
    pub org: &'a str,
    pub project: &'a str,
    pub key_id: Option<&'a str>,
    pub provider: &'a str,
    pub route: &'a str,
    pub model: Option<&'a str>,
    pub counts: &'a [u64],
}

/// Checks the shared fields; returns the first bad one.
pub(crate) fn check_common(f: CommonFields<'_>) -> Result<(), String> {
    let text_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    if !id_ok(f.id) {
        return Err("id".into());
    }
    if !id_ok(f.request_id) {
        return Err("request_id".into());
    }
    for (name, v) in [
        ("org", f.org),
        ("project", f.project),
        ("provider", f.provider),
    ] {
        if crate::Slug::try_from(v.to_owned()).is_err() {
            return Err(name.into());
        }
    }
    if !text_ok(f.route) {
        return Err("route".into());
    }
    if f.model.is_some_and(|m| !text_ok(m)) {
        return Err("model".into());
    }
    if f.key_id.is_some_and(|k| !id_ok(k) || k.len() > 32) {
        return Err("key_id".into());
    }
    if f.counts.iter().any(|&n| i64::try_from(n).is_err()) {
        return Err("counts must fit a signed 64-bit integer".into());
    }
    if f.at_ms < 0 {
        return Err("at_ms".into());
    }
    Ok(())
}
