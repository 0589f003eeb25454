//! The governance of one request across its phases, so each phase file calls it in a line:
//! [`Governor::admit`] (request phase: rate limits and budget), [`RequestGov::plan`] (after
//! routing: how the response will be metered, asking OpenAI streams for usage),
//! [`RequestGov::on_response_head`] / [`RequestGov::on_response_body`] (rate-limit headers,
//! counting as bytes pass) and [`Governor::settle`] (logging phase: charge tokens and spend).

pub mod metrics;

use std::sync::Arc;

use bytes::Bytes;
use gateway_schema::ProviderKind;
use pingora::http::ResponseHeader;

use crate::cost::budget::SpendSlot;
use crate::cost::{Budgets, PriceTable};
use crate::limits::{Grant, KeyPolicy, Limiter, ProjectPolicy};
use crate::proxy::errors::Reject;
use crate::usage::extract::Dialect;
use crate::usage::{request as usage_request, Usage, UsageMeter};
use metrics::GovMetrics;

/// Process-wide governance state: counters that outlive config reloads, and metrics.
pub struct Governor {
    limiter: Limiter,
    budgets: Budgets,
    /// Governance metrics.
    pub metrics: GovMetrics,
}

/// What governance knows about one admitted request.
pub struct RequestGov {
    grant: Grant,
    spend: Option<SpendSlot>,
    /// The project (identity and policy) the request runs under.
    pub project: ProjectPolicy,
    /// The key's id, for usage records.
    pub key_id: Option<Arc<str>>,
    meter: Option<UsageMeter>,
    upstream_model: Option<Arc<str>>,
}

/// The outcome of one request, for the access log and the usage record.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    /// Tokens counted (`None`: the response carried no usage, or was not metered).
    pub usage: Option<Usage>,
    /// Exact cost in pico-units (`None`: no usage, or no price for the model).
    pub cost_pico: Option<u64>,
    /// The model that answered (the provider's word, else what was sent upstream).
    pub model: Option<String>,
    /// Whether the response reached its end (for a stream: the provider's final event).
    pub complete: bool,
    /// Whether the response was metered at all.
    pub metered: bool,
}

impl Governor {
    /// A governor registering its metrics in `registry`.
    pub fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            limiter: Limiter::default(),
            budgets: Budgets::default(),
            metrics: GovMetrics::register(registry)?,
        })
    }

    /// Admits a request of `key` in `project` at `now_ms`: budget first (a spent budget
    /// refuses whatever the rate), then request and token limits.
    pub fn admit(
        &self,
        project: &ProjectPolicy,
        key: &KeyPolicy,
        now_ms: u64,
    ) -> Result<RequestGov, Reject> {
        let spend = match self.budgets.admit(project, (now_ms / 1000) as i64) {
            Ok(s) => s,
            Err(e) => {
                self.count_rejection("project", "budget");
                return Err(Reject::BudgetExceeded(Box::new(e)));
            }
        };
        let grant = self.limiter.admit(project, key, now_ms).inspect_err(|e| {
            if let Reject::RateLimited(r) = e {
                self.count_rejection(r.scope.as_str(), r.kind.as_str());
            }
        })?;
        Ok(RequestGov {
            grant,
            spend,
            project: project.clone(),
            key_id: key.id.clone(),
            meter: None,
            upstream_model: None,
        })
    }

    fn count_rejection(&self, scope: &str, kind: &str) {
        self.metrics
            .limit_rejections
            .with_label_values(&[scope, kind])
            .inc();
    }

    /// The end of a request: charges its tokens to the token windows and its cost to the
    /// monthly spend, counts metrics, reports budget thresholds crossed.
    pub fn settle(
        &self,
        gov: &mut RequestGov,
        prices: &PriceTable,
        provider: &str,
        route: &str,
        now_ms: u64,
    ) -> Settlement {
        let Some(meter) = gov.meter.take() else {
            return Settlement::default();
        };
        let m = &self.metrics;
        if let Some(reason) = meter.uncounted {
            m.uncounted.with_label_values(&[provider, reason]).inc();
        }
        if !meter.complete {
            m.incomplete_streams.with_label_values(&[provider]).inc();
        }
        let model = meter
            .model
            .or_else(|| gov.upstream_model.as_deref().map(str::to_owned));
        let mut out = Settlement {
            usage: meter.usage,
            cost_pico: None,
            model,
            complete: meter.complete,
            metered: true,
        };
        let Some(usage) = meter.usage else {
            return out;
        };
        gov.grant.charge(usage.total(), now_ms);
        let project = &*gov.project.name;
        for (kind, n) in usage.by_kind() {
            if n > 0 {
                m.tokens
                    .with_label_values(&[project, provider, route, kind])
                    .inc_by(n);
            }
        }
        let Some(price) = out.model.as_deref().and_then(|model| prices.price(model)) else {
            return out;
        };
        let cost = price.cost_pico(&usage);
        out.cost_pico = Some(cost);
        m.cost
            .with_label_values(&[project, provider, route])
            .inc_by(cost as f64 / 1e12);
        if let Some(slot) = &gov.spend {
            for threshold in slot.charge(cost) {
                let t = threshold.to_string();
                m.budget_crossings
                    .with_label_values(&[project, t.as_str()])
                    .inc();
                tracing::warn!(
                    project,
                    threshold_percent = threshold,
                    budget_cents = gov.project.monthly_budget_cents,
                    "project crossed a monthly budget threshold"
                );
            }
        }
        out
    }
}

impl RequestGov {
    /// After routing: meter the response of `kind`'s provider at `upstream_path`; for an
    /// OpenAI-style stream that did not ask for usage, ask for it (rewriting `body`) and
    /// remove the usage-only chunk from the client's stream.
    pub fn plan(
        &mut self,
        kind: ProviderKind,
        upstream_path: &str,
        body: &mut Option<Bytes>,
        upstream_model: Option<&str>,
    ) {
        let dialect = match kind {
            ProviderKind::Anthropic => Dialect::Anthropic,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => Dialect::OpenAi,
        };
        let mut strip = false;
        if dialect == Dialect::OpenAi && usage_request::needs_usage_option(upstream_path) {
            if let Some(rewritten) = body.as_deref().and_then(usage_request::with_usage_option) {
                *body = Some(rewritten);
                strip = true;
            }
        }
        self.upstream_model = upstream_model.map(Arc::from);
        self.meter = Some(UsageMeter::new(dialect, strip));
    }

    /// The response head: `x-ratelimit-*` for a limited key or project; metering decided.
    pub fn on_response_head(&mut self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        self.grant.headers.apply(resp)?;
        if let Some(m) = self.meter.as_mut() {
            m.on_head(resp);
        }
        Ok(())
    }

    /// One response body chunk.
    pub fn on_response_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if let Some(m) = self.meter.as_mut() {
            m.on_body(body, end_of_stream);
        }
    }
}
