//! The exact-match response cache (step 7 of the request path), opt-in per project.
//!
//! [`key`] turns a request into its key or a bypass reason; [`ResponseCache`] holds entries in
//! this process's memory (a `moka` cache bounded in bytes by `server.cache_memory_bytes`,
//! each entry expiring at its own time) and, when `server.redis_url` is set, in Redis too
//! ([`redis`]), so every gateway of a deployment answers from one another's responses.
//! [`RequestCache`] follows one request: the outcome of its lookup and, for a miss, the
//! response bytes being captured for storing. The proxy's phase files call into it
//! (`proxy/cache.rs`); nothing here touches a socket.

pub mod entry;
pub mod key;
pub mod metrics;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gateway_schema::{CacheHitRecord, CacheSpec};
use pingora::http::ResponseHeader;

use crate::ingest::IngestQueue;
use entry::Entry;
use key::{Bypass, Key};
use metrics::CacheMetrics;
use redis::SharedStore;

/// The default of `server.cache_memory_bytes`: 256 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// A project's cache policy, compiled with the snapshot.
#[derive(Debug, Clone)]
pub struct ProjectCache {
    /// The policy as configured.
    pub spec: CacheSpec,
    /// Entry lifetime in milliseconds.
    pub ttl_ms: u64,
    /// Largest body stored.
    pub max_entry_bytes: usize,
}

impl ProjectCache {
    /// Compiles `spec` (validated with the snapshot).
    pub fn new(spec: &CacheSpec) -> Self {
        Self {
            spec: spec.clone(),
            ttl_ms: spec.ttl_seconds.saturating_mul(1000),
            max_entry_bytes: usize::try_from(spec.max_entry_bytes).unwrap_or(usize::MAX),
        }
    }
}

/// Every entry expires at its own `expires_at_ms` (projects have different TTLs).
struct UntilExpiry;

impl UntilExpiry {
    fn remaining(e: &Entry) -> Option<Duration> {
        Some(Duration::from_millis(
            e.expires_at_ms.saturating_sub(crate::limits::now_ms()),
        ))
    }
}

impl moka::Expiry<Key, Arc<Entry>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Self::remaining(value)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Arc<Entry>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Self::remaining(value)
    }
}

/// The process-wide cache: both tiers, metrics, and the cache-hit ingest queue.
pub struct ResponseCache {
    local: moka::sync::Cache<Key, Arc<Entry>>,
    shared: Option<Arc<SharedStore>>,
    /// Cache metrics.
    pub metrics: CacheMetrics,
    hits: Option<IngestQueue<CacheHitRecord>>,
}

impl ResponseCache {
    /// A cache holding at most `memory_bytes` here, sharing entries through `shared`.
    pub fn new(
        memory_bytes: u64,
        shared: Option<SharedStore>,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let metrics = CacheMetrics::register(registry)?;
        metrics
            .bytes_limit
            .set(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
        let local = moka::sync::Cache::builder()
            .max_capacity(memory_bytes)
            .weigher(|_k: &Key, v: &Arc<Entry>| v.weight())
            .expire_after(UntilExpiry)
            .build();
        Ok(Self {
            local,
            shared: shared.map(Arc::new),
            metrics,
            hits: None,
        })
    }

    /// Reports hits to the control plane through `queue`.
    pub fn with_hit_ingest(mut self, queue: IngestQueue<CacheHitRecord>) -> Self {
        self.hits = Some(queue);
        self
    }

    /// The live entry under `key`: this gateway's first, then Redis (one round trip; a
    /// Redis entry is kept here too for the rest of its life).
    pub async fn lookup(&self, key: &Key, now_ms: u64) -> Option<Arc<Entry>> {
        if let Some(e) = self.local.get(key) {
            if e.expires_at_ms > now_ms {
                return Some(e);
            }
            self.local.invalidate(key);
        }
        let shared = self.shared.as_ref()?;
        let e = shared.get(key, now_ms, &self.metrics).await?;
        if e.expires_at_ms <= now_ms {
            return None;
        }
        let e = Arc::new(e);
        self.local.insert(*key, e.clone());
        self.update_gauges();
        Some(e)
    }

    /// Stores `entry` here and, with Redis, for every gateway.
    pub fn store(&self, key: Key, entry: Entry, now_ms: u64) {
        if let Some(s) = &self.shared {
            s.put(&key, &entry, now_ms, &self.metrics);
        }
        self.local.insert(key, Arc::new(entry));
        self.update_gauges();
    }

    /// Queues a hit's record (control-plane mode with a cache-hit ingest token only).
    pub fn report_hit(&self, record: CacheHitRecord) {
        if let Some(q) = &self.hits {
            q.submit(record);
        }
    }

    fn update_gauges(&self) {
        self.local.run_pending_tasks();
        self.metrics
            .bytes
            .set(i64::try_from(self.local.weighted_size()).unwrap_or(i64::MAX));
        self.metrics
            .entries
            .set(i64::try_from(self.local.entry_count()).unwrap_or(i64::MAX));
    }
}

/// What the cache did for one request of a cache-enabled project.
pub enum RequestCache {
    /// Not looked up, not stored.
    Bypass(Bypass),
    /// Answered from the cache.
    Hit,
    /// Looked up and not found: the response is captured to be stored.
    Miss(Box<Capture>),
}

impl RequestCache {
    /// The `x-cache` value.
    pub fn header(&self) -> &'static str {
        match self {
            Self::Bypass(_) => "bypass",
            Self::Hit => "hit",
            Self::Miss(_) => "miss",
        }
    }
}

/// A miss's response on its way to the client, kept (by reference, not copied) to be stored.
pub struct Capture {
    /// The request's key.
    pub key: Key,
    ttl_ms: u64,
    max_bytes: usize,
    chunks: Vec<Bytes>,
    len: usize,
    content_type: Option<String>,
    /// Why it will not be stored (a `gateway_cache_stores_total` outcome), once known.
    refused: Option<&'static str>,
    ended: bool,
}

impl Capture {
    /// A capture for `key` under `policy`.
    pub fn new(key: Key, policy: &ProjectCache) -> Self {
        Self {
            key,
            ttl_ms: policy.ttl_ms,
            max_bytes: policy.max_entry_bytes,
            chunks: Vec::new(),
            len: 0,
            content_type: None,
            refused: None,
            ended: false,
        }
    }

    /// The response head: only an unencoded 200 may be stored.
    pub fn on_head(&mut self, resp: &ResponseHeader) {
        if resp.status.as_u16() != 200 {
            self.refuse("not_200");
            return;
        }
        let header = |name: &str| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        if !matches!(
            header("content-encoding"),
            None | Some("") | Some("identity")
        ) {
            self.refuse("encoded");
            return;
        }
        self.content_type = Some(
            header("content-type")
                .unwrap_or("application/json")
                .to_owned(),
        );
    }

    /// One chunk as the client receives it.
    pub fn on_body(&mut self, body: Option<&Bytes>, end_of_stream: bool) {
        if self.refused.is_some() {
            return;
        }
        if let Some(b) = body.filter(|b| !b.is_empty()) {
            self.len += b.len();
            if self.len > self.max_bytes {
                self.refuse("too_large");
                return;
            }
            self.chunks.push(b.clone());
        }
        if end_of_stream {
            self.ended = true;
        }
    }

    fn refuse(&mut self, why: &'static str) {
        self.refused.get_or_insert(why);
        self.chunks = Vec::new();
    }

    /// The entry to store once the response is over, or why not. `complete`: the exchange
    /// ended without error and the response reached its end (a stream its final event).
    pub fn finish(
        self,
        complete: bool,
        source_request_id: &str,
        usage: Option<crate::usage::Usage>,
        model: Option<String>,
        now_ms: u64,
    ) -> Result<(Key, Entry), &'static str> {
        if let Some(why) = self.refused {
            return Err(why);
        }
        let Some(content_type) = self.content_type else {
            return Err("incomplete");
        };
        if !complete || !self.ended {
            return Err("incomplete");
        }
        let body = match self.chunks.len() {
            1 => self.chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(self.len);
                for c in &self.chunks {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        };
        Ok((
            self.key,
            Entry {
                source_request_id: source_request_id.to_owned(),
                content_type,
                body,
                usage,
                model,
                stored_at_ms: now_ms,
                expires_at_ms: now_ms.saturating_add(self.ttl_ms),
            },
        ))
    }
}
