//! Governance metrics. Labels are config names (`org/project`, provider, route pattern) or
//! closed sets (scope, kind, threshold, reason), so cardinality stays bounded.

use prometheus::{CounterVec, IntCounterVec, Opts, Registry};

/// Tokens, cost, limit rejections and budget thresholds.
pub struct GovMetrics {
    /// Tokens by project, provider, route and kind (`input`, `output`, `cache_read`,
    /// `cache_write`).
    pub tokens: IntCounterVec,
    /// Cost in currency units (float; the exact figure is in the usage records).
    pub cost: CounterVec,
    /// Refusals by scope (`key`, `project`) and kind (`requests`, `tokens`, `budget`).
    pub limit_rejections: IntCounterVec,
    /// Budget thresholds crossed, by project and threshold (`80`, `100`).
    pub budget_crossings: IntCounterVec,
    /// Responses whose usage could not be counted, by provider and reason.
    pub uncounted: IntCounterVec,
    /// Streams that ended before the provider's final event, by provider.
    pub incomplete_streams: IntCounterVec,
}

impl GovMetrics {
    /// Creates and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let tokens = IntCounterVec::new(
            Opts::new(
                "gateway_tokens_total",
                "Tokens by project, provider, route and kind",
            ),
            &["project", "provider", "model", "kind"],
        )?;
        let cost = CounterVec::new(
            Opts::new(
                "gateway_cost_total",
                "Cost in the price table's currency by project, provider and route",
            ),
            &["project", "provider", "model"],
        )?;
        let limit_rejections = IntCounterVec::new(
            Opts::new(
                "gateway_limit_rejections_total",
                "Requests refused by a rate limit or budget, by scope and kind",
            ),
            &["scope", "kind"],
        )?;
        let budget_crossings = IntCounterVec::new(
            Opts::new(
                "gateway_budget_threshold_crossings_total",
                "Monthly budget thresholds crossed, by project and threshold percent",
            ),
            &["project", "threshold"],
        )?;
        let uncounted = IntCounterVec::new(
            Opts::new(
                "gateway_usage_uncounted_total",
                "Responses whose usage could not be counted, by provider and reason",
            ),
            &["provider", "reason"],
        )?;
        let incomplete_streams = IntCounterVec::new(
            Opts::new(
                "gateway_incomplete_responses_total",
                "Responses that ended before the provider's final event, by provider",
            ),
            &["provider"],
        )?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(cost.clone()))?;
        registry.register(Box::new(limit_rejections.clone()))?;
        registry.register(Box::new(budget_crossings.clone()))?;
        registry.register(Box::new(uncounted.clone()))?;
        registry.register(Box::new(incomplete_streams.clone()))?;
        Ok(Self {
            tokens,
            cost,
            limit_rejections,
            budget_crossings,
            uncounted,
            incomplete_streams,
        })
    }
}
