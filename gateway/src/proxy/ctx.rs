//! Per-request state carried across Pingora's phases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::errors::Reject;
use crate::state::{ActiveConfig, Provider};

/// Counts a request as in flight from context creation until it is dropped, so a graceful
/// shutdown knows when the last one has finished.
pub struct InFlight {
    counter: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
}

impl InFlight {
    /// Increments both counters; `Drop` decrements them.
    pub fn enter(counter: Arc<AtomicUsize>, gauge: prometheus::IntGauge) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        Self { counter, gauge }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// What the gateway knows about one request.
pub struct RequestCtx {
    /// `x-request-id` (inbound if well-formed, else minted).
    pub request_id: String,
    /// When the request arrived.
    pub started: Instant,
    /// The config this request runs on, loaded once.
    pub config: Option<Arc<ActiveConfig>>,
    /// Authenticated project index.
    pub project: Option<usize>,
    /// Chosen provider index.
    pub provider: Option<usize>,
    /// Bounded `model` label: the matched route's pattern, or `native`.
    pub model_label: Option<Arc<str>>,
    /// Path (and query) to send upstream.
    pub upstream_path: Option<String>,
    /// The buffered request body to forward (possibly rewritten).
    pub body: Option<Bytes>,
    /// Whether this upstream attempt has been given the buffered body yet.
    pub body_emitted: bool,
    /// Bytes of request body received from the client.
    pub request_bytes: usize,
    /// Bytes of response body sent to the client.
    pub response_bytes: usize,
    /// Whether the client sent `anthropic-version`.
    pub has_anthropic_version: bool,
    /// When upstream selection began.
    pub upstream_started: Option<Instant>,
    /// The gateway's own refusal, if it answered itself.
    pub reject: Option<Reject>,
    /// This request's share of the body-memory budget (released when the context drops).
    pub body_reservation: Option<crate::overload::budget::Reservation>,
    /// This request's in-flight slot in its project (released at the response's end of
    /// stream, or when the context drops if the response never ends).
    pub project_slot: Option<crate::overload::concurrency::Slot>,
    /// Limits, budget and usage metering of an admitted request.
    pub gov: Option<crate::governance::RequestGov>,
    /// Provider objects this response creates or lists (ownership tracking).
    pub objects: Option<Box<crate::ownership::tracker::Tracker>>,
    /// What the response cache did (`None`: the project has no cache).
    pub cache: Option<crate::cache::RequestCache>,
    _in_flight: InFlight,
}

impl RequestCtx {
    /// The provider chosen in the request phase, on this request's config.
    pub fn chosen_provider(&self) -> Option<&Provider> {
        self.config.as_deref()?.providers.get(self.provider?)
    }

    /// A fresh context.
    pub fn new(in_flight: InFlight) -> Self {
        Self {
            request_id: String::new(),
            started: Instant::now(),
            config: None,
            project: None,
            provider: None,
            model_label: None,
            upstream_path: None,
            body: None,
            body_emitted: false,
            request_bytes: 0,
            response_bytes: 0,
            has_anthropic_version: false,
            upstream_started: None,
            reject: None,
            body_reservation: None,
            project_slot: None,
            gov: None,
            objects: None,
            cache: None,
            _in_flight: in_flight,
        }
    }
}
