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
//! [`Ownership`] wraps the store for the request path: it counts records and refusals, and in
//! control-plane mode reports every new record to the control plane (through the ingest
//! queue and spool, kind `objects`) and is seeded from the control plane's records at start
//! and after each reconnect ([`seed`]), so ownership survives a restart without Redis.

pub mod memory;
pub mod redis;
pub mod refs;
pub mod seed;
pub mod tracker;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use gateway_schema::{EndpointFamily, ObjectRecord, OwnedObject};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::ingest::IngestQueue;

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

    /// Whether this process has a record of `id` (for any owner): a record already known is
    /// not reported again.
    fn knows(&self, account: &str, id: &str) -> bool;

    /// Loads records read from the control plane into this process (first owner wins).
    fn seed(&self, account: &str, owner: &str, ids: &[String]);

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

/// The provider account objects live in (`org/provider`) and the project that acts
/// (`org/project`), with the slugs a record to the control plane carries.
#[derive(Debug, Clone)]
pub struct Parties {
    /// `org/provider`: ids are unique per provider account.
    pub account: String,
    /// `org/project` (also the bounded `project` metrics label).
    pub owner: String,
    /// Org slug.
    pub org: String,
    /// Project slug.
    pub project: String,
    /// Provider name.
    pub provider: String,
}

impl Parties {
    /// The parties of `org/project` acting on `org/provider`.
    pub fn new(org: &str, project: &str, provider: &str) -> Self {
        Self {
            account: format!("{org}/{provider}"),
            owner: format!("{org}/{project}"),
            org: org.to_owned(),
            project: project.to_owned(),
            provider: provider.to_owned(),
        }
    }
}

/// The kind of object an endpoint family creates (a closed set, see
/// [`gateway_schema::objects::OBJECT_KINDS`]).
pub fn family_kind(family: Option<EndpointFamily>) -> &'static str {
    match family {
        Some(EndpointFamily::Files | EndpointFamily::AnthropicFiles) => "file",
        Some(EndpointFamily::Uploads) => "upload",
        Some(EndpointFamily::Batches) => "batch",
        Some(EndpointFamily::VectorStores) => "vector_store",
        Some(EndpointFamily::FineTuning) => "fine_tuning_job",
        Some(EndpointFamily::MessageBatches) => "message_batch",
        // Stored responses, and `POST /v1/responses` (no family: it is inference).
        Some(EndpointFamily::StoredResponses) | None => "response",
    }
}

/// The kind a provider's `object` (OpenAI) or `type` (Anthropic) field names, if known.
pub fn object_kind(object: &str) -> Option<&'static str> {
    Some(match object {
        "file" | "vector_store.file" => "file",
        "upload" => "upload",
        "batch" => "batch",
        "vector_store" => "vector_store",
        "vector_store.file_batch" => "vector_store_file_batch",
        "response" => "response",
        "fine_tuning.job" => "fine_tuning_job",
        "message_batch" => "message_batch",
        _ => return None,
    })
}

/// Ownership metrics.
#[derive(Clone)]
pub struct OwnershipMetrics {
    records: IntCounterVec,
    refusals: IntCounterVec,
    ready: IntGauge,
    seeded: IntGauge,
    seeds: IntCounterVec,
}

impl OwnershipMetrics {
    /// Creates and registers them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let records = IntCounterVec::new(
            Opts::new(
                "gateway_ownership_records_total",
                "Provider objects recorded as created or deleted, by project and kind",
            ),
            &["project", "kind", "op"],
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "gateway_ownership_refusals_total",
                "Requests refused by object ownership, by project, kind and reason \
                 (not_owned: 404; unavailable, unseeded: 503)",
            ),
            &["project", "kind", "reason"],
        )?;
        let ready = IntGauge::new(
            "gateway_ownership_ready",
            "1 once ownership can be checked (seeded from the control plane when required)",
        )?;
        let seeded = IntGauge::new(
            "gateway_ownership_seeded_objects",
            "Objects loaded by the last seed from the control plane",
        )?;
        let seeds = IntCounterVec::new(
            Opts::new(
                "gateway_ownership_seeds_total",
                "Seeds from the control plane by outcome (ok, error)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(seeded.clone()))?;
        registry.register(Box::new(seeds.clone()))?;
        Ok(Self {
            records,
            refusals,
            ready,
            seeded,
            seeds,
        })
    }
}

/// Why a request was refused by ownership (the metrics `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The project does not own the object (404, like a missing id).
    NotOwned,
    /// The store did not answer (503 `ownership_unavailable`).
    Unavailable,
    /// Not yet seeded from the control plane (503 `ownership_unavailable`).
    Unseeded,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Self::NotOwned => "not_owned",
            Self::Unavailable => "unavailable",
            Self::Unseeded => "unseeded",
        }
    }
}

/// Object ownership as the request path uses it: the store, plus metrics, reporting to the
/// control plane and the seeding gate.
pub struct Ownership {
    store: Arc<dyn OwnershipStore>,
    reporter: Option<IngestQueue<ObjectRecord>>,
    metrics: OwnershipMetrics,
    ready: AtomicBool,
}

impl Ownership {
    /// Ownership over `store`, ready at once (nothing to seed), reporting nothing.
    pub fn new(store: Arc<dyn OwnershipStore>, metrics: OwnershipMetrics) -> Self {
        metrics.ready.set(1);
        Self {
            store,
            reporter: None,
            metrics,
            ready: AtomicBool::new(true),
        }
    }

    /// Reports every new record and deletion to the control plane through `queue`.
    pub fn with_reporter(mut self, queue: IngestQueue<ObjectRecord>) -> Self {
        self.reporter = Some(queue);
        self
    }

    /// Refuses requests that name or list objects (503 `ownership_unavailable`) until the
    /// first seed from the control plane has completed.
    pub fn until_seeded(self) -> Self {
        self.ready.store(false, Ordering::Release);
        self.metrics.ready.set(0);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn OwnershipStore> {
        &self.store
    }

    /// Whether ownership can be checked now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Counts a refusal.
    pub fn refused(&self, who: &Parties, kind: &str, why: Refusal) {
        self.metrics
            .refusals
            .with_label_values(&[&who.owner, kind, why.label()])
            .inc();
    }

    /// Whether `who` owns `id`; `Err` (and counted) when that cannot be known now.
    pub async fn owns(&self, who: &Parties, id: &str, kind: &str) -> Result<bool, Refusal> {
        if !self.is_ready() {
            self.refused(who, kind, Refusal::Unseeded);
            return Err(Refusal::Unseeded);
        }
        match self.store.owns(&who.account, &who.owner, id).await {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.refused(who, kind, Refusal::NotOwned);
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(error = %e, "object ownership check failed");
                self.refused(who, kind, Refusal::Unavailable);
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Every id `who` owns (for filtering a list).
    pub async fn owned(&self, who: &Parties, kind: &str) -> Result<HashSet<String>, Refusal> {
        if !self.is_ready() {
            self.refused(who, kind, Refusal::Unseeded);
            return Err(Refusal::Unseeded);
        }
        self.store
            .owned(&who.account, &who.owner)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not load the project's objects for a list");
                self.refused(who, kind, Refusal::Unavailable);
                Refusal::Unavailable
            })
    }

    /// Records objects created by `who`: `(id, kind)`. Ids already known here are neither
    /// counted nor reported again.
    pub fn record(&self, who: &Parties, objects: Vec<(String, &'static str)>) {
        let new: Vec<(String, &'static str)> = objects
            .into_iter()
            .filter(|(id, _)| !self.store.knows(&who.account, id))
            .collect();
        if new.is_empty() {
            return;
        }
        let now = crate::metrics::unix_millis() as i64;
        for (id, kind) in &new {
            self.metrics
                .records
                .with_label_values(&[who.owner.as_str(), kind, "created"])
                .inc();
            if let Some(q) = &self.reporter {
                q.submit(record(who, kind, id, now, false));
            }
        }
        self.store.record(
            &who.account,
            &who.owner,
            new.into_iter().map(|(id, _)| id).collect(),
        );
    }

    /// Forgets an object `who` deleted at the provider, and reports the deletion.
    pub fn forget(&self, who: &Parties, id: &str, kind: &'static str) {
        self.store.forget(&who.account, &who.owner, id);
        self.metrics
            .records
            .with_label_values(&[&who.owner, kind, "deleted"])
            .inc();
        if let Some(q) = &self.reporter {
            let now = crate::metrics::unix_millis() as i64;
            q.submit(record(who, kind, id, now, true));
        }
    }

    /// Loads a page of the control plane's records.
    pub fn seed(&self, objects: &[OwnedObject]) {
        let mut groups: std::collections::HashMap<(String, String), Vec<String>> =
            std::collections::HashMap::new();
        for o in objects {
            groups
                .entry((
                    format!("{}/{}", o.org, o.provider),
                    format!("{}/{}", o.org, o.project),
                ))
                .or_default()
                .push(o.object_id.clone());
        }
        for ((account, owner), ids) in groups {
            self.store.seed(&account, &owner, &ids);
        }
    }

    /// Marks a completed seed of `objects` objects: requests naming objects are served.
    pub fn seeded(&self, objects: usize) {
        self.metrics.seeded.set(objects as i64);
        self.metrics.seeds.with_label_values(&["ok"]).inc();
        self.metrics.ready.set(1);
        if !self.ready.swap(true, Ordering::AcqRel) {
            tracing::info!(objects, "object ownership seeded from the control plane");
        }
    }

    /// Counts a failed seed.
    pub fn seed_failed(&self) {
        self.metrics.seeds.with_label_values(&["error"]).inc();
    }
}

fn record(who: &Parties, kind: &str, id: &str, at_ms: i64, deleted: bool) -> ObjectRecord {
    ObjectRecord {
        org: who.org.clone(),
        project: who.project.clone(),
        provider: who.provider.clone(),
        kind: kind.to_owned(),
        object_id: id.to_owned(),
        at_ms,
        deleted,
    }
}
