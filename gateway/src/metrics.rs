//! Prometheus metrics. Every label value comes from config (provider and project names, route
//! patterns) or from a closed set (status codes, rejection codes), never from raw client
//! input, so cardinality stays bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Seconds; LLM calls range from milliseconds (cached, errors) to minutes (long generations).
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// All gateway metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    /// Requests by provider, model (route pattern), project and status.
    pub requests: IntCounterVec,
    /// Whole-request duration by provider.
    pub request_duration: HistogramVec,
    /// Upstream duration (from peer selection to the end of the response) by provider.
    pub upstream_duration: HistogramVec,
    /// Request body bytes by provider.
    pub request_bytes: IntCounterVec,
    /// Response body bytes by provider.
    pub response_bytes: IntCounterVec,
    /// Requests the gateway itself refused, by reason code.
    pub rejections: IntCounterVec,
    /// Generation of the live config.
    pub config_generation: IntGauge,
    /// Config reloads by outcome (`ok`, `error`).
    pub reloads: IntCounterVec,
    /// Requests in flight.
    pub in_flight: IntGauge,
    /// Version of the snapshot in force.
    pub snapshot_version: IntGauge,
    /// Seconds since the control plane last confirmed the running snapshot is current.
    pub snapshot_age_seconds: prometheus::Gauge,
    /// 1 while the snapshot stream to the control plane is open.
    pub control_plane_connected: IntGauge,
    /// Snapshots refused, by reason (`signature`, `hash`, `older`, `invalid`, ...).
    pub snapshot_rejections: IntCounterVec,
    /// Requests shed to protect the gateway, by reason, scope (`gateway`, `project`) and project.
    pub sheds: IntCounterVec,
    /// Bytes reserved in request-body buffers now.
    pub body_budget_used: IntGauge,
    /// The request-body memory budget.
    pub body_budget_limit: IntGauge,
    /// Requests in flight by project (set when metrics are scraped).
    pub project_in_flight: prometheus::IntGaugeVec,
    /// Unix milliseconds of the last confirmation; 0 = never (age then reads -1).
    pub snapshot_confirmed_ms: std::sync::atomic::AtomicU64,
    /// The allocator's own figures by kind (set when metrics are scraped; only when the
    /// binary registered a reader with [`set_allocator_stats`]).
    pub allocator_bytes: prometheus::IntGaugeVec,
}

/// The global allocator's figures, in bytes (jemalloc's `stats.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes the program holds (live allocations).
    pub allocated: u64,
    /// Bytes in pages that hold live allocations (`allocated` plus their pages' slack).
    pub active: u64,
    /// Bytes of the allocator's pages resident in memory: what it adds to RSS.
    pub resident: u64,
    /// Bytes mapped by the allocator (resident or not).
    pub mapped: u64,
    /// Bytes kept mapped but returned to the system (not resident; reused before new maps).
    pub retained: u64,
    /// Bytes of the allocator's own bookkeeping.
    pub metadata: u64,
}

/// Reads the allocator's figures; `None` when they cannot be read.
pub type AllocatorStatsReader = fn() -> Option<AllocatorStats>;

static ALLOCATOR_STATS: std::sync::OnceLock<AllocatorStatsReader> = std::sync::OnceLock::new();

/// Registers how to read the global allocator's figures. The binary calls this when it installs
/// jemalloc; the library cannot know which allocator its host uses (the tests use the system
/// one), so without a reader `gateway_allocator_bytes` is not exported. Later calls are ignored.
pub fn set_allocator_stats(reader: AllocatorStatsReader) {
    let _ = ALLOCATOR_STATS.set(reader);
}

/// Metric registration failed: only on a programming error (duplicate names).
#[derive(Debug, thiserror::Error)]
#[error("registering metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests by provider, model route, project and status",
            ),
            &["provider", "model", "project", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new("gateway_request_duration_seconds", "Total request duration")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_duration_seconds",
                "Time from upstream selection to the end of the upstream response",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["provider"],
        )?;
        let request_bytes = IntCounterVec::new(
            Opts::new("gateway_request_bytes_total", "Request body bytes received"),
            &["provider"],
        )?;
        let response_bytes = IntCounterVec::new(
            Opts::new("gateway_response_bytes_total", "Response body bytes sent"),
            &["provider"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "gateway_rejections_total",
                "Requests refused by the gateway, by reason",
            ),
            &["reason"],
        )?;
        let config_generation =
            IntGauge::new("gateway_config_generation", "Generation of the live config")?;
        let reloads = IntCounterVec::new(
            Opts::new("gateway_config_reloads_total", "Config reloads by outcome"),
            &["outcome"],
        )?;
        let in_flight = IntGauge::new("gateway_in_flight_requests", "Requests in flight")?;
        let snapshot_version = IntGauge::new(
            "gateway_snapshot_version",
            "Version of the snapshot in force",
        )?;
        let snapshot_age_seconds = prometheus::Gauge::new(
            "gateway_snapshot_age_seconds",
            "Seconds since the control plane last confirmed the running snapshot is current (-1: never)",
        )?;
        let control_plane_connected = IntGauge::new(
            "gateway_control_plane_connected",
            "1 while the snapshot stream to the control plane is open",
        )?;
        let snapshot_rejections = IntCounterVec::new(
            Opts::new(
                "gateway_snapshot_rejections_total",
                "Snapshots refused (the running one kept), by reason",
            ),
            &["reason"],
        )?;
        let sheds = IntCounterVec::new(
            Opts::new(
                "gateway_sheds_total",
                "Requests shed to protect the gateway, by reason, scope and project",
            ),
            &["reason", "scope", "project"],
        )?;
        let body_budget_used = IntGauge::new(
            "gateway_body_budget_used_bytes",
            "Bytes reserved in request-body buffers",
        )?;
        let body_budget_limit = IntGauge::new(
            "gateway_body_budget_limit_bytes",
            "The request-body memory budget",
        )?;
        let project_in_flight = prometheus::IntGaugeVec::new(
            Opts::new("gateway_project_in_flight", "Requests in flight by project"),
            &["project"],
        )?;
        registry.register(Box::new(sheds.clone()))?;
        registry.register(Box::new(body_budget_used.clone()))?;
        registry.register(Box::new(body_budget_limit.clone()))?;
        registry.register(Box::new(project_in_flight.clone()))?;
        let allocator_bytes = prometheus::IntGaugeVec::new(
            Opts::new(
                "gateway_allocator_bytes",
                "The memory allocator's figures by kind (allocated, active, resident, mapped, \
                 retained, metadata), read at scrape time",
            ),
            &["kind"],
        )?;
        if ALLOCATOR_STATS.get().is_some() {
            registry.register(Box::new(allocator_bytes.clone()))?;
        }
        registry.register(Box::new(snapshot_version.clone()))?;
        registry.register(Box::new(snapshot_age_seconds.clone()))?;
        registry.register(Box::new(control_plane_connected.clone()))?;
        registry.register(Box::new(snapshot_rejections.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(request_bytes.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(config_generation.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            upstream_duration,
            request_bytes,
            response_bytes,
            rejections,
            config_generation,
            reloads,
            in_flight,
            snapshot_version,
            snapshot_age_seconds,
            control_plane_connected,
            snapshot_rejections,
            sheds,
            body_budget_used,
            body_budget_limit,
            project_in_flight,
            allocator_bytes,
            snapshot_confirmed_ms: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The registry, for feature modules that register their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let confirmed = self
            .snapshot_confirmed_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let age = if confirmed == 0 {
            -1.0
        } else {
            unix_millis().saturating_sub(confirmed) as f64 / 1000.0
        };
        self.snapshot_age_seconds.set(age);
        if let Some(stats) = ALLOCATOR_STATS.get().and_then(|read| read()) {
            for (kind, bytes) in [
                ("allocated", stats.allocated),
                ("active", stats.active),
                ("resident", stats.resident),
                ("mapped", stats.mapped),
                ("retained", stats.retained),
                ("metadata", stats.metadata),
            ] {
                self.allocator_bytes
                    .with_label_values(&[kind])
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_figures_are_exported_once_a_reader_is_registered() {
        fn fake() -> Option<AllocatorStats> {
            Some(AllocatorStats {
                allocated: 1,
                active: 2,
                resident: 3,
                mapped: 4,
                retained: 5,
                metadata: 6,
            })
        }
        set_allocator_stats(fake);
        let text = String::from_utf8(Metrics::new().unwrap().render()).unwrap();
        for line in [
            "gateway_allocator_bytes{kind=\"allocated\"} 1",
            "gateway_allocator_bytes{kind=\"resident\"} 3",
            "gateway_allocator_bytes{kind=\"metadata\"} 6",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
