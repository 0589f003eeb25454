//! Prometheus metrics (served on the admin port). Every label has a bounded set of values.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// The control plane's metrics (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Requests by route template, method and status.
    pub http_requests: IntCounterVec,
    /// Authentication failures by reason code.
    pub auth_failures: IntCounterVec,
    /// Rate limiter decisions (`allowed`, `limited`, `unavailable`).
    pub rate_limit_decisions: IntCounterVec,
    /// Redis limiter failures by applied mode (`open`, `closed`).
    pub rate_limit_redis_failures: IntCounterVec,
    /// JWKS fetches by outcome.
    pub jwks_fetches: IntCounterVec,
    /// Audit records written.
    pub audit_records: IntCounter,
    /// Audit records that could not be written.
    pub audit_write_failures: IntCounter,
    /// Version of the snapshot being served.
    pub snapshot_version: IntGauge,
    /// Gateways holding a snapshot stream open to this replica.
    pub connected_gateways: IntGauge,
    /// Seconds from a committed change to its compiled, signed snapshot.
    pub snapshot_compile_seconds: Histogram,
    /// Publish rounds that failed (the previous snapshot kept being served).
    pub snapshot_failures: IntCounter,
    /// Connections closed because the client was too slow, by listener and phase (`head`,
    /// `idle`).
    pub client_timeouts: IntCounterVec,
    /// Clients that went away in the middle of a request head, by listener.
    pub client_disconnects: IntCounterVec,
    /// Connections open, by listener.
    pub connections_open: IntGaugeVec,
}

/// The `listener` label values of the connection metrics.
pub const LISTENERS: [&str; 2] = ["api", "admin"];
/// The `phase` label values of `controlplane_client_timeouts_total`.
pub const TIMEOUT_PHASES: [&str; 2] = ["head", "idle"];

fn vec(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Self {
            http_requests: vec(
                "controlplane_http_requests_total",
                "API requests by route template, method and status",
                &["route", "method", "status"],
            )?,
            auth_failures: vec(
                "controlplane_auth_failures_total",
                "Authentication failures by reason",
                &["reason"],
            )?,
            rate_limit_decisions: vec(
                "controlplane_rate_limit_decisions_total",
                "Global token bucket decisions on mutating requests",
                &["decision"],
            )?,
            rate_limit_redis_failures: vec(
                "controlplane_rate_limit_redis_failures_total",
                "Redis limiter checks that failed or timed out, by the failure mode applied",
                &["mode"],
            )?,
            jwks_fetches: vec(
                "controlplane_jwks_fetches_total",
                "Fetches of the issuer's discovery document and keys",
                &["outcome"],
            )?,
            audit_records: IntCounter::new(
                "controlplane_audit_records_total",
                "Audit records written",
            )?,
            audit_write_failures: IntCounter::new(
                "controlplane_audit_write_failures_total",
                "Audit records that could not be written",
            )?,
            snapshot_version: IntGauge::new(
                "controlplane_snapshot_version",
                "Version of the snapshot being served",
            )?,
            connected_gateways: IntGauge::new(
                "controlplane_connected_gateways",
                "Gateways holding a snapshot stream open to this replica",
            )?,
            snapshot_compile_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "controlplane_snapshot_compile_seconds",
                    "Seconds from a committed change to its compiled, signed snapshot",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            snapshot_failures: IntCounter::new(
                "controlplane_snapshot_failures_total",
                "Snapshot publish rounds that failed",
            )?,
            client_timeouts: vec(
                "controlplane_client_timeouts_total",
                "Client connections closed for slowness, by listener and phase (head, idle)",
                &["listener", "phase"],
            )?,
            client_disconnects: vec(
                "controlplane_client_disconnects_total",
                "Clients that went away in the middle of a request head, by listener",
                &["listener"],
            )?,
            connections_open: IntGaugeVec::new(
                Opts::new(
                    "controlplane_connections_open",
                    "Client connections open, by listener",
                ),
                &["listener"],
            )?,
            registry,
        };
        // Every series exists from the start, so a rate over it never begins mid-incident.
        for listener in LISTENERS {
            for phase in TIMEOUT_PHASES {
                m.client_timeouts.with_label_values(&[listener, phase]);
            }
            m.client_disconnects.with_label_values(&[listener]);
            m.connections_open.with_label_values(&[listener]);
        }
        m.registry.register(Box::new(m.snapshot_version.clone()))?;
        m.registry
            .register(Box::new(m.connected_gateways.clone()))?;
        m.registry
            .register(Box::new(m.snapshot_compile_seconds.clone()))?;
        m.registry.register(Box::new(m.snapshot_failures.clone()))?;
        m.registry.register(Box::new(m.http_requests.clone()))?;
        m.registry.register(Box::new(m.auth_failures.clone()))?;
        m.registry
            .register(Box::new(m.rate_limit_decisions.clone()))?;
        m.registry
            .register(Box::new(m.rate_limit_redis_failures.clone()))?;
        m.registry.register(Box::new(m.jwks_fetches.clone()))?;
        m.registry.register(Box::new(m.audit_records.clone()))?;
        m.registry
            .register(Box::new(m.audit_write_failures.clone()))?;
        m.registry.register(Box::new(m.client_timeouts.clone()))?;
        m.registry
            .register(Box::new(m.client_disconnects.clone()))?;
        m.registry.register(Box::new(m.connections_open.clone()))?;
        Ok(m)
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let enc = prometheus::TextEncoder::new();
        enc.encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
