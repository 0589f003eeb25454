//! The Pingora `ProxyHttp` implementation, one file per phase:
//! [`request`] (id, routing, auth, body, policy), [`upstream`] (peer, header rewrite, body
//! replay), [`response`] (headers, byte counts), [`logging`] (metrics, access log), and
//! [`errors`] (every response the gateway makes itself); [`cache`] is the response cache's
//! part in those phases.

mod cache;
pub mod ctx;
pub mod errors;
mod logging;
mod models;
mod request;
mod response;
mod upstream;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::live::LiveConfig;
use crate::metrics::Metrics;
use ctx::{InFlight, RequestCtx};

/// The gateway's proxy logic. Cheap to share: everything inside is behind `Arc`s.
pub struct Gateway {
    /// The live config owner.
    pub live: Arc<LiveConfig>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Requests in flight (for graceful drain).
    pub in_flight: Arc<AtomicUsize>,
    /// Longest time a client may take to send its body.
    pub body_read_timeout: Duration,
    /// The global request-body memory budget.
    pub body_budget: crate::overload::budget::BodyBudget,
    /// Most requests in flight on this gateway (`None`: no cap).
    pub max_in_flight: Option<u64>,
    /// Rate limits, budgets and usage counting.
    pub gov: Arc<crate::governance::Governor>,
    /// Who owns which provider object (files, batches, stored responses...).
    pub ownership: Arc<crate::ownership::Ownership>,
    /// The response cache.
    pub cache: Arc<crate::cache::ResponseCache>,
    /// Counts and reports what guardrail rules did.
    pub guardrails: Arc<crate::guardrails::GuardrailReporter>,
    /// Caps on the request head (URL, size, field count).
    pub head_caps: errors::HeadCaps,
    /// Kept-alive connections close after this many idle seconds.
    pub idle_timeout_secs: u64,
    /// Slow and vanished clients.
    pub conn_metrics: crate::connections::ConnMetrics,
    /// The listener's label in the metrics (`proxy` or `tls`).
    pub listener: &'static str,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(InFlight::enter(
            self.in_flight.clone(),
            self.metrics.in_flight.clone(),
        ))
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        request::request_filter(self, session, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        upstream::upstream_peer(session, ctx)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream::upstream_request_filter(session, upstream_request, ctx)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream::request_body_filter(body, end_of_stream, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        response::response_filter(upstream_response, ctx)
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Option<Duration>> {
        response::response_body_filter(body, end_of_stream, ctx);
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &pingora::Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        response::fail_to_proxy(self, session, e, ctx).await
    }

    fn request_head_error(
        &self,
        e: &pingora::Error,
        session_type: &str,
    ) -> Option<(Box<ResponseHeader>, Bytes)> {
        head_error(
            &self.head_caps,
            &self.conn_metrics,
            &self.metrics,
            self.listener,
            e,
            session_type,
        )
    }

    /// A client that went away before its response was complete (closed, reset, or stopped
    /// reading) is not a server error: Pingora would log an ERROR line per such request
    /// (`Fail to proxy: Downstream ConnectionClosed ...`, with the request's path), so a
    /// client that cancels requests in a loop would flood the log. It is counted in
    /// `gateway_client_aborts_total` and logged at debug level; its access-log line still
    /// says `error`. Every other failure keeps Pingora's ERROR line.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, e: &pingora::Error) -> bool {
        let client_gone = response::classify(e).is_none();
        if client_gone {
            tracing::debug!(
                request_id = %ctx.request_id,
                error = e.etype().as_str(),
                "client went away before the response was complete"
            );
            self.conn_metrics
                .aborts
                .with_label_values(&[self.listener])
                .inc();
        }
        client_gone
    }

    async fn logging(
        &self,
        session: &mut Session,
        e: Option<&pingora::Error>,
        ctx: &mut RequestCtx,
    ) {
        logging::log_request(self, session, e, ctx);
    }
}

/// A request head that could not be read: slow and vanished clients are logged at debug
/// level and counted (never an ERROR line per connection); heads over a cap or malformed get
/// the JSON error shape. Shared by the proxy and admin listeners.
pub fn head_error(
    caps: &errors::HeadCaps,
    conn_metrics: &crate::connections::ConnMetrics,
    metrics: &Metrics,
    listener: &'static str,
    e: &pingora::Error,
    session_type: &str,
) -> Option<(Box<ResponseHeader>, Bytes)> {
    // The error's text can quote the client's bytes (credentials included): log its type only.
    let kind = e.etype().as_str();
    match errors::classify_head_error(e, caps) {
        errors::HeadFailure::Answer(reject) => {
            tracing::debug!(
                listener,
                session_type,
                error = kind,
                code = reject.code(),
                "request head refused"
            );
            metrics.rejections.with_label_values(&[reject.code()]).inc();
            errors::reject_response(&reject)
        }
        errors::HeadFailure::Timeout => {
            // Counted by the connection guard when it fired.
            errors::reject_response(&errors::Reject::HeadTimeout)
        }
        errors::HeadFailure::Disconnect => {
            tracing::debug!(
                listener,
                session_type,
                error = kind,
                "client went away during the request head"
            );
            conn_metrics
                .disconnects
                .with_label_values(&[listener])
                .inc();
            None
        }
    }
}
