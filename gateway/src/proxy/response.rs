//! The response phase: tag the response, count bytes, and turn proxy failures into
//! OpenAI-shaped errors (502 on connect/reset, 504 on timeout).

use bytes::Bytes;
use http::header::{self, HeaderName};
use pingora::http::ResponseHeader;
use pingora::proxy::{FailToProxy, Session};
use pingora::{ErrorSource, ErrorType};

use super::ctx::RequestCtx;
use super::errors::{write_reject, Reject};
use super::upstream::{request_id_value, X_REQUEST_ID};
use super::Gateway;

static X_UPSTREAM_REQUEST_ID: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Puts the gateway's request id on the response head. A provider's own id (OpenAI and
/// Anthropic send one; support asks for it) moves to `x-upstream-request-id`.
pub fn response_filter(resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> pingora::Result<()> {
    // The provider's server software is its business, not the client's.
    resp.remove_header(&header::SERVER);
    // Room for every header added below at once (names built once: see vendor/pingora-http).
    let rate_headers = ctx.gov.as_ref().map_or(0, |g| g.response_header_count());
    resp.reserve_headers(2 + rate_headers)?;
    if let Some(upstream_id) = resp.remove_header(&X_REQUEST_ID) {
        if upstream_id.as_bytes() != ctx.request_id.as_bytes() {
            resp.insert_static_header(&X_UPSTREAM_REQUEST_ID, upstream_id)?;
        }
    }
    resp.insert_static_header(&X_REQUEST_ID, request_id_value(&ctx.request_id)?)?;
    if let Some(gov) = ctx.gov.as_mut() {
        gov.on_response_head(resp)?;
    }
    // After governance, which reads the provider's own head.
    if let Some(objects) = ctx.objects.as_mut() {
        objects.on_response_header(resp)?;
    }
    super::cache::on_response_head(resp, ctx)
}

/// Counts usage and response bytes. Chunks pass through as the provider sends them (minus
/// the usage-only chunk the gateway asked for on the client's behalf).
pub fn response_body_filter(body: &mut Option<Bytes>, end_of_stream: bool, ctx: &mut RequestCtx) {
    if let Some(gov) = ctx.gov.as_mut() {
        gov.on_response_body(body, end_of_stream);
    }
    // After governance, which counts usage from the provider's own bytes.
    if let Some(objects) = ctx.objects.as_mut() {
        objects.on_body(body, end_of_stream);
    }
    // Last: the cache keeps exactly what the client receives.
    super::cache::on_response_body(body.as_ref(), end_of_stream, ctx);
    if let Some(b) = body {
        ctx.response_bytes += b.len();
    }
    if end_of_stream {
        // The project's in-flight slot frees before the response's last bytes are written
        // (this filter runs just before that write), not when the context drops after the
        // logging phase: a client that sends its next request the moment a response ends
        // must not find its own finished request still counted against `max_in_flight`.
        ctx.project_slot = None;
    }
}

/// Classifies a proxy failure.
pub fn classify(e: &pingora::Error) -> Option<Reject> {
    use ErrorType::*;
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => Reject::UpstreamTimeout,
            ConnectRefused | ConnectNoRoute | ConnectError | TLSHandshakeFailure
            | TLSHandshakeTimedout | InvalidCert | HandshakeError | ConnectProxyFailure
            | SocketError | BindError => {
                if matches!(e.etype(), TLSHandshakeTimedout) {
                    Reject::UpstreamTimeout
                } else {
                    Reject::UpstreamConnect
                }
            }
            _ => Reject::UpstreamError,
        }),
        // The client went away or sent garbage: nobody to answer, or Pingora's own 400.
        ErrorSource::Downstream => match e.etype() {
            WriteError | ReadError | ConnectionClosed => None,
            _ => Some(Reject::BodyRead),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => Reject::UpstreamTimeout,
            _ => Reject::Internal,
        }),
    }
}

/// Answers a failed proxy attempt with a JSON error, unless the response has already begun.
pub async fn fail_to_proxy(
    gw: &Gateway,
    session: &mut Session,
    e: &pingora::Error,
    ctx: &mut RequestCtx,
) -> FailToProxy {
    let reject = classify(e);
    let code = reject.as_ref().map_or(0, Reject::status);
    if let Some(reject) = reject {
        gw.metrics
            .rejections
            .with_label_values(&[reject.code()])
            .inc();
        if session.response_written().is_none() {
            if let Err(write_err) = write_reject(session, &reject, &ctx.request_id, true).await {
                tracing::debug!(request_id = %ctx.request_id, error = %write_err, "could not write error response");
            }
        }
        ctx.reject = Some(reject);
    }
    FailToProxy {
        error_code: code,
        can_reuse_downstream: false,
    }
}
