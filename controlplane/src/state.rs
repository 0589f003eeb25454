//! The shared application state handed to every handler and middleware.

use std::sync::Arc;

use crate::auth::internal::InternalSecrets;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::guards::rate_limit::RateLimiter;
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything a request may need (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// How callers are identified.
    pub auth: Arc<Authenticator>,
    /// Component secrets (digests).
    pub internal: Arc<InternalSecrets>,
    /// The global token bucket.
    pub limiter: Arc<RateLimiter>,
    /// Metrics.
    pub metrics: Metrics,
    /// Compiles, signs and serves config snapshots.
    pub snapshots: std::sync::Arc<crate::snapshots::Publisher>,
}
