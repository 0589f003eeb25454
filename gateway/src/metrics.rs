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
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
