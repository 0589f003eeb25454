//! The limits of a project and of a key as the hot path reads them, compiled once per config
//! from the snapshot. Scope names, not config indexes, identify their counters, so the counters
//! survive reloads and mean the same thing on every gateway sharing a Redis.

use std::sync::Arc;

use gateway_schema::{KeySpec, ProjectSpec};

/// A project's identity and policy.
#[derive(Debug, Clone)]
pub struct ProjectPolicy {
    /// Org slug.
    pub org: Arc<str>,
    /// Project slug.
    pub slug: Arc<str>,
    /// `org/project`: the limiter scope, and the project label of governance metrics.
    pub name: Arc<str>,
    /// Requests per minute for the whole project.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute for the whole project.
    pub tokens_per_minute: Option<u64>,
    /// Spend per calendar month (UTC), in cents.
    pub monthly_budget_cents: Option<u64>,
}

impl ProjectPolicy {
    /// Compiles a project of `org`.
    pub fn new(org: &str, spec: &ProjectSpec) -> Self {
        Self {
            org: Arc::from(org),
            slug: Arc::from(spec.slug.as_str()),
            name: Arc::from(format!("{org}/{}", spec.slug.as_str())),
            requests_per_minute: spec.requests_per_minute,
            tokens_per_minute: spec.tokens_per_minute,
            monthly_budget_cents: spec.monthly_budget_cents,
        }
    }

    /// Whether a request or token limit applies (and so `x-ratelimit-*` headers are sent).
    pub fn has_rate_limits(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// A virtual key's identity and policy.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    /// `key:<sha256 hex>`: the limiter scope (a digest, never the key).
    pub scope: Arc<str>,
    /// The control plane's key id (usage records name the key by it).
    pub id: Option<Arc<str>>,
    /// Requests per minute for this key alone.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute for this key alone.
    pub tokens_per_minute: Option<u64>,
}

impl KeyPolicy {
    /// Compiles a key.
    pub fn new(spec: &KeySpec) -> Self {
        Self {
            scope: Arc::from(format!("key:{}", spec.digest)),
            id: spec.id.as_deref().map(Arc::from),
            requests_per_minute: spec.requests_per_minute,
            tokens_per_minute: spec.tokens_per_minute,
        }
    }

    /// Whether a request or token limit applies.
    pub fn has_rate_limits(&self) -> bool {
        self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}
