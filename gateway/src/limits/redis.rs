//! Limits and spend shared by every gateway through Redis: one atomic Lua script per request
//! checks the budget, both token windows and both request windows and takes the request counts
//! (all or nothing), so concurrent gateways never race on a read-modify-write. Token and spend
//! charges, known only when a response ends, are summed in memory and sent every
//! `redis_flush_ms` in one pipeline: the hot path pays exactly one Redis round trip.
//!
//! Slow or down (past `redis_timeout_ms`): the configured failure mode applies, each failure
//! is counted, and the transition (not every request) is logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gateway_schema::Secret;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::{Kind, RateHeaders, RateLimited, Scope, Trio, WINDOW_MS};
use crate::config::{FailureMode, LimitsSettings};
use crate::cost::budget::{exceeded, spend_key};
use crate::cost::calendar::Month;
use crate::cost::PICO_PER_CENT;
use crate::limits::{KeyPolicy, ProjectPolicy};
use crate::proxy::errors::Reject;

/// Redis keys live two windows, so a late charge still lands in its minute.
const WINDOW_TTL_SECS: u64 = 120;
/// After a failed check, the next one is tried this much later (requests meanwhile get the
/// failure mode without waiting for a timeout).
const RETRY_AFTER_FAILURE_MS: u64 = 1000;
/// Spend keys outlive their month by a few days.
const SPEND_TTL_SECS: u64 = 35 * 86_400;

/// KEYS: a spend counter. ARGV: the floor (pico), ttl. Raises the counter to the floor.
const RAISE_SPEND_SCRIPT: &str = r"
local c = tonumber(redis.call('GET', KEYS[1]) or '0')
if c < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2])) end
return 0
";

/// KEYS: key requests, key tokens, project requests, project tokens, spend.
/// ARGV: key rpm, key tpm, project rpm, project tpm, budget (pico), window ttl; -1 = none.
/// Returns {verdict, scope, key requests, key tokens, project requests, project tokens}:
/// verdict 0 admitted, 1 requests, 2 tokens, 3 budget; scope 1 key, 2 project.
const SCRIPT: &str = r"
local function get(k) return tonumber(redis.call('GET', k) or '0') or 0 end
local krpm, ktpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local prpm, ptpm = tonumber(ARGV[3]), tonumber(ARGV[4])
local budget, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
if budget >= 0 and get(KEYS[5]) >= budget then return {3, 2, 0, 0, 0, 0} end
local kreq, ktok, preq, ptok = get(KEYS[1]), get(KEYS[2]), get(KEYS[3]), get(KEYS[4])
if ktpm >= 0 and ktok >= ktpm then return {2, 1, kreq, ktok, preq, ptok} end
if ptpm >= 0 and ptok >= ptpm then return {2, 2, kreq, ktok, preq, ptok} end
if krpm >= 0 and kreq >= krpm then return {1, 1, kreq, ktok, preq, ptok} end
if prpm >= 0 and preq >= prpm then return {1, 2, kreq, ktok, preq, ptok} end
if krpm >= 0 then kreq = redis.call('INCR', KEYS[1]); redis.call('EXPIRE', KEYS[1], ttl) end
if prpm >= 0 then preq = redis.call('INCR', KEYS[3]); redis.call('EXPIRE', KEYS[3], ttl) end
return {0, 0, kreq, ktok, preq, ptok}
";

/// Redis metrics.
struct RedisMetrics {
    checks: IntCounterVec,
    latency: Histogram,
    charges: IntCounterVec,
}

/// A budget whose thresholds a spend charge may cross.
#[derive(Debug, Clone)]
pub struct BudgetWatch {
    /// `org/project`.
    pub project: Arc<str>,
    /// The budget in pico-units.
    pub budget_pico: u128,
    /// The budget in cents (for the log line).
    pub budget_cents: u64,
}

/// An amount to add to a Redis counter once the flusher runs.
#[derive(Debug)]
pub struct Charge {
    key: String,
    amount: u64,
    ttl_secs: u64,
    budget: Option<BudgetWatch>,
}

/// What an admitted request must charge to Redis when its usage is known.
#[derive(Debug, Default)]
pub struct SharedCharges {
    /// Token-window keys of the limited scopes.
    token_keys: Vec<String>,
    /// The spend key and its budget.
    spend: Option<(String, BudgetWatch)>,
}

/// Redis did not answer in time or failed: the failure mode applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// The shared limiter.
pub struct RedisLimiter {
    client: redis::Client,
    conn: OnceLock<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    flush_every: Duration,
    /// What a request gets when Redis fails.
    pub mode: FailureMode,
    healthy: AtomicBool,
    /// After a failure, Redis is not asked again before this time (Unix ms): requests get the
    /// failure mode at once instead of each waiting out the timeout.
    skip_until_ms: AtomicU64,
    tx: mpsc::UnboundedSender<Charge>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Charge>>>,
    metrics: RedisMetrics,
}

/// Why the limiter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("server.limits.redis_url: {0}")]
    Url(String),
    #[error("registering Redis metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl RedisLimiter {
    /// A limiter on `url` (nothing is connected until first use).
    pub fn new(
        url: &Secret,
        s: &LimitsSettings,
        registry: &Registry,
    ) -> Result<Self, RedisSetupError> {
        // The URL may hold a password: never echo it.
        let client = redis::Client::open(url.expose())
            .map_err(|_| RedisSetupError::Url("not a valid redis:// URL".into()))?;
        let checks = IntCounterVec::new(
            Opts::new(
                "gateway_redis_checks_total",
                "Redis limit checks by outcome (ok, error, timeout, skipped: within 1 s of a failure)",
            ),
            &["outcome"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_redis_check_duration_seconds",
                "Round trip of one Redis limit check",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            ]),
        )?;
        let charges = IntCounterVec::new(
            Opts::new(
                "gateway_redis_charges_total",
                "Token and spend charges sent to Redis, by outcome (ok, dropped)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(checks.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(charges.clone()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Self {
            client,
            conn: OnceLock::new(),
            script: redis::Script::new(SCRIPT),
            prefix: s.redis_key_prefix.clone(),
            timeout: Duration::from_millis(s.redis_timeout_ms),
            flush_every: Duration::from_millis(s.redis_flush_ms),
            mode: s.redis_failure_mode,
            healthy: AtomicBool::new(true),
            skip_until_ms: AtomicU64::new(0),
            tx,
            rx: Mutex::new(Some(rx)),
            metrics: RedisMetrics {
                checks,
                latency,
                charges,
            },
        })
    }

    fn conn(&self) -> Result<ConnectionManager, String> {
        if let Some(c) = self.conn.get() {
            return Ok(c.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let c = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| e.to_string())?;
        Ok(self.conn.get_or_init(|| c).clone())
    }

    /// Raises the shared spend counter of `project` (`org/project`) in `month` to at least
    /// `pico` (never lowers it): how stored usage restores spend that Redis lost.
    pub async fn raise_spend(&self, project: &str, month: Month, pico: u64) -> Result<(), String> {
        let key = format!("{}spend:{}", self.prefix, spend_key(project, month));
        let call = async {
            let mut conn = self.conn()?;
            redis::Script::new(RAISE_SPEND_SCRIPT)
                .key(key)
                .arg(i64::try_from(pico).unwrap_or(i64::MAX))
                .arg(SPEND_TTL_SECS)
                .invoke_async::<i64>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err("timed out".into()),
        }
    }

    fn key(&self, scope: &str, minute: u64, kind: char) -> String {
        format!("{}{scope}:{minute}:{kind}", self.prefix)
    }

    /// One atomic check of every limit and the budget. `Err(Unavailable)` when Redis failed
    /// (already counted and logged): the caller applies the failure mode.
    pub async fn admit(
        &self,
        project: &ProjectPolicy,
        key: &KeyPolicy,
        now_ms: u64,
    ) -> Result<Result<(RateHeaders, SharedCharges), Reject>, Unavailable> {
        if now_ms < self.skip_until_ms.load(Ordering::Acquire) {
            self.metrics.checks.with_label_values(&["skipped"]).inc();
            return Err(Unavailable);
        }
        let minute = now_ms / WINDOW_MS;
        let reset_ms = WINDOW_MS - now_ms % WINDOW_MS;
        let now_secs = (now_ms / 1000) as i64;
        let month = Month::of(now_secs);
        let keys = [
            self.key(&key.scope, minute, 'r'),
            self.key(&key.scope, minute, 't'),
            self.key(&project.name, minute, 'r'),
            self.key(&project.name, minute, 't'),
            format!("{}spend:{}", self.prefix, spend_key(&project.name, month)),
        ];
        let arg = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let budget_pico = project
            .monthly_budget_cents
            .map(|c| u128::from(c) * PICO_PER_CENT);
        let budget_arg = budget_pico.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let started = Instant::now();
        let call = async {
            let mut conn = self.conn()?;
            let mut inv = self.script.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(arg(key.requests_per_minute))
                .arg(arg(key.tokens_per_minute))
                .arg(arg(project.requests_per_minute))
                .arg(arg(project.tokens_per_minute))
                .arg(budget_arg)
                .arg(WINDOW_TTL_SECS);
            inv.invoke_async::<Vec<i64>>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        let out = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) if v.len() == 6 => v,
            Ok(Ok(_)) => return Err(self.failed("error", "unexpected script reply", now_ms)),
            Ok(Err(e)) => return Err(self.failed("error", &e, now_ms)),
            Err(_) => return Err(self.failed("timeout", "timed out", now_ms)),
        };
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics.checks.with_label_values(&["ok"]).inc();
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("Redis limiter reachable again; limits are shared again");
        }
        let n = |i: usize| u64::try_from(out[i]).unwrap_or(0);
        let (kreq, ktok, preq, ptok) = (n(2), n(3), n(4), n(5));

        let mut headers = RateHeaders::default();
        for (rpm, tpm, req, tok) in [
            (key.requests_per_minute, key.tokens_per_minute, kreq, ktok),
            (
                project.requests_per_minute,
                project.tokens_per_minute,
                preq,
                ptok,
            ),
        ] {
            if let Some(rpm) = rpm {
                let t = Trio {
                    limit: rpm,
                    remaining: rpm.saturating_sub(req),
                    reset_ms,
                };
                headers.requests = RateHeaders::tighter(headers.requests, t);
            }
            if let Some(tpm) = tpm {
                let t = Trio {
                    limit: tpm,
                    remaining: tpm.saturating_sub(tok),
                    reset_ms,
                };
                headers.tokens = RateHeaders::tighter(headers.tokens, t);
            }
        }
        let scope = if out[1] == 1 {
            Scope::Key
        } else {
            Scope::Project
        };
        let limit_of = |kind: Kind| match (scope, kind) {
            (Scope::Key, Kind::Requests) => key.requests_per_minute,
            (Scope::Key, Kind::Tokens) => key.tokens_per_minute,
            (Scope::Project, Kind::Requests) => project.requests_per_minute,
            (Scope::Project, Kind::Tokens) => project.tokens_per_minute,
        };
        let refuse = |kind: Kind| {
            Reject::RateLimited(Box::new(RateLimited {
                scope,
                kind,
                limit: limit_of(kind).unwrap_or(0),
                retry_after_ms: reset_ms,
                headers,
            }))
        };
        match out[0] {
            1 => return Ok(Err(refuse(Kind::Requests))),
            2 => return Ok(Err(refuse(Kind::Tokens))),
            3 => {
                let cents = project.monthly_budget_cents.unwrap_or(0);
                return Ok(Err(Reject::BudgetExceeded(Box::new(exceeded(
                    project, cents, month, now_secs,
                )))));
            }
            _ => {}
        }
        let mut charges = SharedCharges::default();
        if key.tokens_per_minute.is_some() {
            charges.token_keys.push(keys[1].clone());
        }
        if project.tokens_per_minute.is_some() {
            charges.token_keys.push(keys[3].clone());
        }
        if let (Some(budget_pico), Some(cents)) = (budget_pico, project.monthly_budget_cents) {
            charges.spend = Some((
                keys[4].clone(),
                BudgetWatch {
                    project: project.name.clone(),
                    budget_pico,
                    budget_cents: cents,
                },
            ));
        }
        Ok(Ok((headers, charges)))
    }

    fn failed(&self, outcome: &str, reason: &str, now_ms: u64) -> Unavailable {
        self.metrics.checks.with_label_values(&[outcome]).inc();
        self.skip_until_ms
            .store(now_ms + RETRY_AFTER_FAILURE_MS, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            let mode = match self.mode {
                FailureMode::Open => "open: admitting under this gateway's own counters",
                FailureMode::Closed => "closed: refusing with 503 rate_limiter_unavailable",
            };
            tracing::warn!(reason, mode, "Redis limiter unavailable");
        }
        Unavailable
    }

    /// Queues the charges of a finished request (sent by [`Self::run_flusher`]).
    pub fn charge(&self, c: &SharedCharges, tokens: u64, cost_pico: u64) {
        if tokens > 0 {
            for k in &c.token_keys {
                let _ = self.tx.send(Charge {
                    key: k.clone(),
                    amount: tokens,
                    ttl_secs: WINDOW_TTL_SECS,
                    budget: None,
                });
            }
        }
        if let (Some((k, watch)), true) = (&c.spend, cost_pico > 0) {
            let _ = self.tx.send(Charge {
                key: k.clone(),
                amount: cost_pico,
                ttl_secs: SPEND_TTL_SECS,
                budget: Some(watch.clone()),
            });
        }
    }

    /// Sends queued charges every `redis_flush_ms`, summed per key, in one pipeline;
    /// `on_crossed` hears of budget thresholds crossed. Returns when `shutdown` fires (after a
    /// last flush).
    pub async fn run_flusher(
        &self,
        on_crossed: impl Fn(&BudgetWatch, u64, u64),
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let mut tick = tokio::time::interval(self.flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.changed() => true,
            };
            let mut pending: HashMap<String, (u64, u64, Option<BudgetWatch>)> = HashMap::new();
            while let Ok(c) = rx.try_recv() {
                let e = pending.entry(c.key).or_insert((0, c.ttl_secs, c.budget));
                e.0 = e.0.saturating_add(c.amount);
            }
            if !pending.is_empty() {
                self.flush(pending, &on_crossed).await;
            }
            if stop {
                return;
            }
        }
    }

    async fn flush(
        &self,
        pending: HashMap<String, (u64, u64, Option<BudgetWatch>)>,
        on_crossed: &impl Fn(&BudgetWatch, u64, u64),
    ) {
        let entries: Vec<_> = pending.into_iter().collect();
        let mut pipe = redis::pipe();
        for (key, (amount, ttl, _)) in &entries {
            pipe.cmd("INCRBY").arg(key).arg(*amount);
            pipe.cmd("EXPIRE").arg(key).arg(*ttl).ignore();
        }
        let call = async {
            let mut conn = self.conn()?;
            pipe.query_async::<Vec<i64>>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        let n = entries.len() as u64;
        match tokio::time::timeout(self.timeout * 4, call).await {
            Ok(Ok(after)) if after.len() == entries.len() => {
                self.metrics.charges.with_label_values(&["ok"]).inc_by(n);
                for ((_, (amount, _, watch)), after) in entries.iter().zip(after) {
                    if let Some(w) = watch {
                        let after = u64::try_from(after).unwrap_or(0);
                        on_crossed(w, after.saturating_sub(*amount), after);
                    }
                }
            }
            _ => {
                // Not retried: a charge that lands late would count in the wrong window, and the
                // local counters (the fail-open fallback) have it already.
                self.metrics
                    .charges
                    .with_label_values(&["dropped"])
                    .inc_by(n);
                tracing::debug!(charges = n, "Redis charges dropped");
            }
        }
    }
}
