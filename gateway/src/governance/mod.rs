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

use crate::config::FailureMode;
use crate::cost::budget::SpendSlot;
use crate::cost::{Budgets, PriceTable};
use crate::ingest::IngestQueue;
use crate::limits::redis::{BudgetWatch, RedisLimiter, SharedCharges, Unavailable};
use crate::limits::{Grant, KeyPolicy, Limiter, ProjectPolicy};
use crate::proxy::errors::Reject;
use crate::usage::extract::Dialect;
use crate::usage::{request as usage_request, Usage, UsageMeter};
use gateway_schema::UsageRecord;
use metrics::GovMetrics;

/// Process-wide governance state: counters that outlive config reloads, and metrics.
pub struct Governor {
    limiter: Limiter,
    budgets: Budgets,
    redis: Option<RedisLimiter>,
    usage_ingest: Option<IngestQueue<UsageRecord>>,
    /// Governance metrics.
    pub metrics: GovMetrics,
}

/// What governance knows about one admitted request.
pub struct RequestGov {
    grant: Grant,
    spend: Option<SpendSlot>,
    /// Charges owed to Redis (admitted by the shared limiter).
    shared: Option<SharedCharges>,
    /// The project (identity and policy) the request runs under.
    pub project: ProjectPolicy,
    /// The key's id, for usage records.
    pub key_id: Option<Arc<str>>,
    meter: Option<UsageMeter>,
    upstream_model: Option<Arc<str>>,
}

/// What the logging phase knows of a finished request, for its usage record.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// `x-request-id`.
    pub request_id: &'a str,
    /// Provider name.
    pub provider: &'a str,
    /// Route pattern, or `native`.
    pub route: &'a str,
    /// Status sent to the client.
    pub status: u16,
    /// Whole-request latency.
    pub latency_ms: u64,
    /// Now, Unix milliseconds.
    pub now_ms: u64,
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
    /// A governor registering its metrics in `registry`; `redis` shares the counts.
    pub fn new(
        registry: &prometheus::Registry,
        redis: Option<RedisLimiter>,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            limiter: Limiter::default(),
            budgets: Budgets::default(),
            redis,
            usage_ingest: None,
            metrics: GovMetrics::register(registry)?,
        })
    }

    /// Reports usage records to the control plane through `queue`.
    pub fn with_usage_ingest(mut self, queue: IngestQueue<UsageRecord>) -> Self {
        self.usage_ingest = Some(queue);
        self
    }

    /// Queues the usage record of a finished request (control-plane mode only).
    pub fn report(&self, gov: &RequestGov, s: &Settlement, f: RequestFacts<'_>) {
        let Some(q) = &self.usage_ingest else {
            return;
        };
        let u = s.usage.unwrap_or_default();
        q.submit(UsageRecord {
            id: crate::request_id::new_id(),
            request_id: f.request_id.to_owned(),
            at_ms: i64::try_from(f.now_ms).unwrap_or(i64::MAX),
            org: gov.project.org.to_string(),
            project: gov.project.slug.to_string(),
            key_id: gov.key_id.as_deref().map(str::to_owned),
            provider: f.provider.to_owned(),
            route: f.route.to_owned(),
            model: s.model.clone(),
            input_tokens: u.input,
            output_tokens: u.output,
            cache_read_tokens: u.cache_read,
            cache_write_tokens: u.cache_write,
            cost_pico: s.cost_pico,
            status: f.status,
            latency_ms: f.latency_ms,
            complete: s.complete,
        });
    }

    /// Admits a request of `key` in `project` at `now_ms`: budget first (a spent budget
    /// refuses whatever the rate), then request and token limits. With Redis, one atomic
    /// check there decides (and this gateway's counters follow, for the fail-open fallback).
    pub async fn admit(
        &self,
        project: &ProjectPolicy,
        key: &KeyPolicy,
        now_ms: u64,
    ) -> Result<RequestGov, Reject> {
        let governed = project.has_rate_limits()
            || key.has_rate_limits()
            || project.monthly_budget_cents.is_some();
        if let (Some(redis), true) = (&self.redis, governed) {
            match redis.admit(project, key, now_ms).await {
                Ok(Ok((headers, shared))) => {
                    let mut grant = self.limiter.record(project, key, now_ms);
                    grant.headers = headers;
                    return Ok(RequestGov {
                        grant,
                        spend: self.budgets.slot(project, (now_ms / 1000) as i64),
                        shared: Some(shared),
                        project: project.clone(),
                        key_id: key.id.clone(),
                        meter: None,
                        upstream_model: None,
                    });
                }
                Ok(Err(reject)) => {
                    match &reject {
                        Reject::RateLimited(r) => {
                            self.count_rejection(r.scope.as_str(), r.kind.as_str())
                        }
                        _ => self.count_rejection("project", "budget"),
                    }
                    return Err(reject);
                }
                Err(Unavailable) if redis.mode == FailureMode::Closed => {
                    return Err(Reject::LimiterUnavailable)
                }
                Err(Unavailable) => {} // fail open: this gateway's own counters decide
            }
        }
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
            shared: None,
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
        // The answering model's price, else the price of the model that was asked for (a
        // budgeted project is only admitted to priced models).
        let price = out
            .model
            .as_deref()
            .and_then(|model| prices.price(model))
            .or_else(|| gov.upstream_model.as_deref().and_then(|m| prices.price(m)));
        let cost = price.map_or(0, |p| p.cost_pico(&usage));
        out.cost_pico = price.map(|_| cost);
        if let (Some(redis), Some(shared)) = (&self.redis, &gov.shared) {
            redis.charge(shared, usage.total(), cost);
        }
        if price.is_none() {
            return out;
        }
        m.cost
            .with_label_values(&[project, provider, route])
            .inc_by(cost as f64 / 1e12);
        if let Some(slot) = &gov.spend {
            let crossed = slot.charge(cost);
            // With Redis, the shared total is the one whose thresholds are reported.
            if gov.shared.is_none() {
                for threshold in crossed {
                    self.report_crossing(project, threshold, gov.project.monthly_budget_cents);
                }
            }
        }
        out
    }

    fn report_crossing(&self, project: &str, threshold: u32, budget_cents: Option<u64>) {
        let t = threshold.to_string();
        self.metrics
            .budget_crossings
            .with_label_values(&[project, t.as_str()])
            .inc();
        tracing::warn!(
            project,
            threshold_percent = threshold,
            budget_cents,
            "project crossed a monthly budget threshold"
        );
    }

    /// Raises each project's month-to-date spend to what the control plane has stored (the
    /// spend of every gateway, as reported): a restarted gateway (or a Redis that lost its
    /// data) does not start the month from zero. Never lowers a counter.
    pub async fn seed_spend(&self, spend: &[(String, u64)], now_secs: i64) {
        for (project, pico) in spend {
            self.budgets.raise(project, now_secs, *pico);
            if let Some(redis) = &self.redis {
                let month = crate::cost::calendar::Month::of(now_secs);
                if let Err(e) = redis.raise_spend(project, month, *pico).await {
                    tracing::warn!(%project, error = %e, "cannot restore the shared spend in Redis");
                }
            }
        }
    }

    /// Sends Redis charges until shutdown (nothing to do without Redis).
    pub async fn run_redis_flusher(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(redis) = &self.redis else {
            return;
        };
        let on_crossed = |w: &BudgetWatch, before: u64, after: u64| {
            for t in crate::cost::budget::crossed(before, after, w.budget_pico) {
                self.report_crossing(&w.project, t, Some(w.budget_cents));
            }
        };
        redis.run_flusher(on_crossed, shutdown).await;
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

    /// How many rate-limit headers [`Self::on_response_head`] adds.
    pub fn response_header_count(&self) -> usize {
        self.grant.headers.count()
    }

    /// The response head: `x-ratelimit-*` for a limited key or project; metering decided.
    pub fn on_response_head(&mut self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        self.grant.headers.apply(resp)?;
        if let Some(m) = self.meter.as_mut() {
            m.on_head(resp);
        }
        Ok(())
    }

    /// A response served from the cache: its rate-limit headers, and nothing to meter (a hit
    /// charges no tokens and no spend).
    pub fn on_cache_hit(&mut self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        self.meter = None;
        self.grant.headers.apply(resp)
    }

    /// The model sent upstream, when the request was routed by model.
    pub fn upstream_model(&self) -> Option<&str> {
        self.upstream_model.as_deref()
    }

    /// Whether the usage-only chunk is removed from this request's stream.
    pub fn strips_usage_chunk(&self) -> bool {
        self.meter
            .as_ref()
            .is_some_and(UsageMeter::strips_usage_chunk)
    }

    /// One response body chunk.
    pub fn on_response_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if let Some(m) = self.meter.as_mut() {
            m.on_body(body, end_of_stream);
        }
    }
}
