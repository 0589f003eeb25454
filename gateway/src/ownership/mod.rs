//! Ownership of provider-side objects (files, batches, stored responses, vector stores,
//! fine-tuning jobs, uploads, Anthropic message batches and files).
//!
//! Every project reaches a provider with the same provider key, so the provider sees one
//! account and would show any tenant every object of that account. The gateway records each
//! object id it sees created in a response as owned by the creating project, and lets a request
//! name an object (in its path or body) only when the project owns it; lists are filtered to
//! the project's own objects. Ids are kept per *provider account* (`org/provider`), owned by an
//! `org/project`.
//!
//! [`OwnershipStore`] is the narrow seam: [`memory::MemoryOwnership`] on one gateway,
//! [`redis::RedisOwnership`] shared by every gateway of a deployment (with a local cache).

pub mod memory;
pub mod redis;
pub mod refs;
pub mod tracker;

use std::collections::HashSet;

use async_trait::async_trait;

/// Why ownership could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// The shared store did not answer in time or failed.
    #[error("ownership store unavailable: {0}")]
    Unavailable(String),
}

/// Where object ownership is kept.
#[async_trait]
pub trait OwnershipStore: Send + Sync {
    /// Records `ids` as owned by `owner` in the provider account `account`. Returns at once:
    /// the record is visible to this gateway immediately, to others once a shared store has
    /// written it. An id already owned keeps its first owner.
    fn record(&self, account: &str, owner: &str, ids: Vec<String>);

    /// Forgets `id` after `owner` deleted it at the provider (ids are never reused).
    fn forget(&self, account: &str, owner: &str, id: &str);

    /// Whether `owner` owns `id` in `account`.
    async fn owns(&self, account: &str, owner: &str, id: &str) -> Result<bool, OwnershipError>;

    /// Every id `owner` owns in `account` (for filtering list responses).
    async fn owned(&self, account: &str, owner: &str) -> Result<HashSet<String>, OwnershipError>;
}

/// How long a Redis lookup may take before the request fails closed.
pub const REDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Why the ownership store could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `server.redis_url` does not resolve.
    #[error("server.redis_url ({reference}): {source}")]
    Secret {
        /// The reference (`env:NAME`), never the value.
        reference: String,
        /// Why.
        source: gateway_schema::SecretResolveError,
    },
    /// The Redis store could not be set up.
    #[error(transparent)]
    Redis(#[from] redis::RedisSetupError),
}

/// The store the settings ask for: Redis when `redis_url` is set, else this process's memory.
pub fn build(
    redis_url: Option<&gateway_schema::SecretRef>,
) -> Result<std::sync::Arc<dyn OwnershipStore>, SetupError> {
    match redis_url {
        None => Ok(std::sync::Arc::new(memory::MemoryOwnership::new())),
        Some(r) => {
            let url = r.resolve().map_err(|source| SetupError::Secret {
                reference: r.to_string(),
                source,
            })?;
            Ok(std::sync::Arc::new(redis::RedisOwnership::new(
                &url,
                REDIS_TIMEOUT,
            )?))
        }
    }
}
