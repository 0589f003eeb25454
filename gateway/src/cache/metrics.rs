//! Response-cache metrics. Labels come from config (`org/project`) or closed sets.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// The cache's counters and gauges.
#[derive(Clone)]
pub struct CacheMetrics {
    /// Requests of cache-enabled projects by outcome (`hit`, `miss`, `bypass`).
    pub requests: IntCounterVec,
    /// Bypasses by project and reason.
    pub bypasses: IntCounterVec,
    /// Responses of misses by what became of them (`stored`, `too_large`, `not_200`,
    /// `incomplete`, `encoded`).
    pub stores: IntCounterVec,
    /// Bytes the local tier holds (the weigher's count).
    pub bytes: IntGauge,
    /// Entries the local tier holds.
    pub entries: IntGauge,
    /// The local tier's byte bound (`server.cache_memory_bytes`).
    pub bytes_limit: IntGauge,
    /// Redis operations by op (`get`, `set`) and outcome.
    pub redis: IntCounterVec,
}

impl CacheMetrics {
    /// Creates and registers them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_cache_requests_total",
                "Requests of cache-enabled projects by project and outcome (hit, miss, bypass)",
            ),
            &["project", "outcome"],
        )?;
        let bypasses = IntCounterVec::new(
            Opts::new(
                "gateway_cache_bypasses_total",
                "Requests that bypassed the response cache, by project and reason",
            ),
            &["project", "reason"],
        )?;
        let stores = IntCounterVec::new(
            Opts::new(
                "gateway_cache_stores_total",
                "Responses to cache misses by outcome (stored, too_large, not_200, incomplete, encoded)",
            ),
            &["outcome"],
        )?;
        let bytes = IntGauge::new(
            "gateway_cache_bytes",
            "Bytes held by this gateway's response cache",
        )?;
        let entries = IntGauge::new(
            "gateway_cache_entries",
            "Entries held by this gateway's response cache",
        )?;
        let bytes_limit = IntGauge::new(
            "gateway_cache_bytes_limit",
            "The response cache's memory bound (server.cache_memory_bytes)",
        )?;
        let redis = IntCounterVec::new(
            Opts::new(
                "gateway_cache_redis_total",
                "Response-cache Redis operations by op (get, set) and outcome (hit, miss, ok, error, timeout, skipped)",
            ),
            &["op", "outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(bypasses.clone()))?;
        registry.register(Box::new(stores.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(entries.clone()))?;
        registry.register(Box::new(bytes_limit.clone()))?;
        registry.register(Box::new(redis.clone()))?;
        Ok(Self {
            requests,
            bypasses,
            stores,
            bytes,
            entries,
            bytes_limit,
            redis,
        })
    }

    /// Counts one Redis operation.
    pub fn redis(&self, op: &str, outcome: &str) {
        self.redis.with_label_values(&[op, outcome]).inc();
    }
}
