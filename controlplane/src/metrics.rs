//! Prometheus metrics (served on the admin port). Every label has a bounded set of values.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

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
}

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
            registry,
        };
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
        Ok(m)
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let enc = prometheus::TextEncoder::new();
        enc.encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
