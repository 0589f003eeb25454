//! Every response the gateway itself produces: JSON in OpenAI's error shape with a stable
//! `code`, so SDKs surface it cleanly.

use bytes::Bytes;
use gateway_schema::ProviderKind;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::cost::BudgetExceeded;
use crate::limits::{Kind, RateLimited, Scope};

/// A request the gateway answers itself instead of proxying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// The path has dot segments or encoded separators.
    InvalidPath,
    /// The path is neither `/v1/...` nor `/{provider}/...`.
    UnknownPath,
    /// No key in `Authorization: Bearer`, `x-api-key` or `api-key`.
    MissingKey,
    /// The key's digest is unknown.
    InvalidKey,
    /// The key was revoked.
    RevokedKey,
    /// The key has expired.
    ExpiredKey,
    /// The body is larger than the cap.
    BodyTooLarge { limit: u64 },
    /// The client was too slow sending its body.
    BodyTimeout,
    /// The client's body ended early or was malformed.
    BodyRead,
    /// The body is not JSON.
    InvalidJson,
    /// The `/v1` body has no string `model`.
    MissingModel,
    /// No route serves the model.
    ModelNotFound,
    /// The project may not use the model.
    ModelNotAllowed,
    /// The project has a budget and the model has no price, so its cost could not be charged.
    ModelNotPriced { model: String },
    /// The provider's key is not set (optional key).
    ProviderKeyMissing,
    /// Connecting to the provider failed.
    UpstreamConnect,
    /// The provider did not answer in time.
    UpstreamTimeout,
    /// The provider's connection failed mid-request.
    UpstreamError,
    /// The body-memory budget cannot take this request's body now.
    Overloaded,
    /// Too many requests of this project (or of this gateway) are in flight.
    ConcurrencyLimit,
    /// No snapshot has been loaded yet (control-plane mode, first start, control plane down).
    NoSnapshot,
    /// A request or token limit of the key or project (429, `Retry-After`).
    RateLimited(Box<RateLimited>),
    /// The project's monthly budget is spent (429, `x-should-retry: false`).
    BudgetExceeded(Box<BudgetExceeded>),
    /// The shared (Redis) limiter is unavailable and fails closed.
    LimiterUnavailable,
    /// The endpoint is not in the allowlist, or its family is not enabled for the project;
    /// `admin`: it administers the provider account and is never forwarded.
    EndpointNotAllowed { admin: bool },
    /// A provider object the project does not own (or that does not exist), answered in
    /// the provider's own not-found shape.
    ObjectNotFound { kind: ProviderKind },
    /// A `/v1` request without a model, and no default provider for the project.
    NoDefaultProvider,
    /// The `multipart/form-data` body is malformed.
    InvalidMultipart,
    /// Object ownership could not be checked (the shared store is unreachable).
    OwnershipUnavailable,
    /// A guardrail rule of the project matched the text the user sent (named, never the text).
    GuardrailBlocked { rule: std::sync::Arc<str> },
    /// The project has guardrails and the body is compressed, so they cannot read it.
    UnsupportedContentEncoding,
    /// The request target is longer than `server.max_url_bytes` (414).
    UriTooLong { limit: usize },
    /// The request head is larger than `server.max_request_head_bytes` (431).
    HeadTooLarge { limit: usize },
    /// The request has more header fields than `server.max_headers` (431).
    TooManyHeaders { limit: usize },
    /// The request head is not valid HTTP.
    InvalidRequestHead,
    /// The request head did not arrive within `server.head_timeout_seconds`.
    HeadTimeout,
    /// A bug or an unexpected failure.
    Internal,
}

impl Reject {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownPath | Self::ModelNotFound | Self::ObjectNotFound { .. } => 404,
            Self::MissingKey | Self::InvalidKey | Self::RevokedKey | Self::ExpiredKey => 401,
            Self::BodyTooLarge { .. } => 413,
            Self::BodyTimeout | Self::HeadTimeout => 408,
            Self::UriTooLong { .. } => 414,
            Self::HeadTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::InvalidPath
            | Self::BodyRead
            | Self::InvalidJson
            | Self::MissingModel
            | Self::NoDefaultProvider
            | Self::InvalidMultipart
            | Self::GuardrailBlocked { .. }
            | Self::InvalidRequestHead => 400,
            Self::UnsupportedContentEncoding => 415,
            Self::ModelNotAllowed
            | Self::ModelNotPriced { .. }
            | Self::EndpointNotAllowed { .. } => 403,
            Self::ProviderKeyMissing
            | Self::NoSnapshot
            | Self::Overloaded
            | Self::LimiterUnavailable
            | Self::OwnershipUnavailable => 503,
            Self::ConcurrencyLimit => 429,
            Self::UpstreamConnect | Self::UpstreamError => 502,
            Self::UpstreamTimeout => 504,
            Self::RateLimited(_) | Self::BudgetExceeded(_) => 429,
            Self::Internal => 500,
        }
    }

    /// Stable machine-readable code (also the `reason` label of the rejections metric).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownPath => "unknown_path",
            Self::InvalidPath => "invalid_path",
            Self::MissingKey => "missing_api_key",
            Self::InvalidKey => "invalid_api_key",
            Self::RevokedKey => "revoked_api_key",
            Self::ExpiredKey => "expired_api_key",
            Self::BodyTooLarge { .. } => "request_too_large",
            Self::BodyTimeout => "request_body_timeout",
            Self::BodyRead => "request_body_invalid",
            Self::InvalidJson => "invalid_json",
            Self::MissingModel => "missing_model",
            Self::ModelNotFound => "model_not_found",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::ModelNotPriced { .. } => "model_not_priced",
            Self::ProviderKeyMissing => "provider_key_missing",
            Self::UpstreamConnect => "upstream_connect_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamError => "upstream_error",
            Self::NoSnapshot => "config_not_loaded",
            Self::Overloaded => "overloaded",
            Self::ConcurrencyLimit => "concurrency_limit",
            Self::RateLimited(_) => "rate_limit_exceeded",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::LimiterUnavailable => "rate_limiter_unavailable",
            Self::EndpointNotAllowed { .. } => "endpoint_not_allowed",
            Self::ObjectNotFound { .. } => "object_not_found",
            Self::NoDefaultProvider => "no_default_provider",
            Self::InvalidMultipart => "invalid_multipart",
            Self::OwnershipUnavailable => "ownership_unavailable",
            Self::GuardrailBlocked { .. } => "guardrail_blocked",
            Self::UnsupportedContentEncoding => "unsupported_content_encoding",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadTooLarge { .. } => "request_header_too_large",
            Self::TooManyHeaders { .. } => "too_many_headers",
            Self::InvalidRequestHead => "invalid_request_head",
            Self::HeadTimeout => "request_head_timeout",
            Self::Internal => "internal_error",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::RateLimited(r) => return r.kind.as_str(),
            Self::BudgetExceeded(_) => return "insufficient_quota",
            _ => {}
        }
        match self.status() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            404 if matches!(self, Self::ModelNotFound | Self::ObjectNotFound { .. }) => {
                "invalid_request_error"
            }
            404 => "not_found_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// What a user can act on. Never echoes client input, keys or bodies.
    pub fn message(&self) -> String {
        match self {
            Self::UnknownPath => "Unknown path: use /v1/... (OpenAI-compatible) or /{provider}/... (native pass-through).".into(),
            Self::InvalidPath => "The path must not contain `.` or `..` segments or encoded separators.".into(),
            Self::MissingKey => "Missing API key: send your virtual key as `Authorization: Bearer <key>`, `x-api-key` or `api-key`.".into(),
            Self::InvalidKey => "Invalid API key.".into(),
            Self::RevokedKey => "This API key has been revoked.".into(),
            Self::ExpiredKey => "This API key has expired.".into(),
            Self::BodyTooLarge { limit } => format!("Request body is larger than the limit of {limit} bytes."),
            Self::BodyTimeout => "The request body was not received in time.".into(),
            Self::BodyRead => "The request body could not be read (truncated or malformed framing).".into(),
            Self::InvalidJson => "The request body must be valid JSON.".into(),
            Self::MissingModel => "The request body must have a string `model` field.".into(),
            Self::ModelNotFound => "The requested model does not exist or is not routed by this gateway.".into(),
            Self::ModelNotAllowed => "This project is not allowed to use the requested model.".into(),
            Self::ModelNotPriced { model } => format!(
                "This project has a monthly budget and the model {model:?} has no price, so its \
                 cost cannot be charged. An administrator must add a price for it (`prices`)."
            ),
            Self::ProviderKeyMissing => "The provider for this model has no API key configured on the gateway.".into(),
            Self::UpstreamConnect => "Could not connect to the upstream provider.".into(),
            Self::UpstreamTimeout => "The upstream provider did not respond in time.".into(),
            Self::UpstreamError => "The upstream provider connection failed.".into(),
            Self::Overloaded => "The gateway is overloaded (request-body memory is exhausted); retry shortly.".into(),
            Self::ConcurrencyLimit => "Too many concurrent requests for this project or gateway; retry when one has finished.".into(),
            Self::NoSnapshot => "The gateway has not received its configuration yet; retry shortly.".into(),
            Self::RateLimited(r) => {
                let scope = match r.scope {
                    Scope::Key => "this API key",
                    Scope::Project => "this project",
                };
                let kind = match r.kind {
                    Kind::Requests => "requests",
                    Kind::Tokens => "tokens",
                };
                format!(
                    "Rate limit reached for {scope}: {} {kind} per minute. Retry after {}s.",
                    r.limit,
                    r.retry_after_ms.div_ceil(1000).max(1)
                )
            }
            Self::BudgetExceeded(b) => format!(
                "The monthly budget of project {} ({}.{:02} in the price table's currency) is spent; it resets at {} (start of the next calendar month, UTC).",
                b.project,
                b.budget_cents / 100,
                b.budget_cents % 100,
                b.resets_at
            ),
            Self::LimiterUnavailable => "The rate limiter is unavailable; retry shortly.".into(),
            Self::EndpointNotAllowed { admin: true } => "Account administration endpoints are never forwarded by this gateway.".into(),
            Self::EndpointNotAllowed { admin: false } => "This endpoint is not enabled for this project (see the project's `endpoints` policy).".into(),
            Self::ObjectNotFound { .. } => "No such object: it does not exist or this project cannot access it.".into(),
            Self::NoDefaultProvider => "This request names no model and the project has no default provider: set the project's `default_provider`.".into(),
            Self::InvalidMultipart => "The multipart/form-data body is malformed.".into(),
            Self::OwnershipUnavailable => "Object ownership cannot be checked right now; retry shortly.".into(),
            Self::GuardrailBlocked { rule } => format!("This request was blocked by the project's guardrail rule `{rule}`."),
            Self::UnsupportedContentEncoding => "This project's guardrails read the request text: send the body uncompressed (no content-encoding).".into(),
            Self::UriTooLong { limit } => format!("The request URL is longer than the limit of {limit} bytes."),
            Self::HeadTooLarge { limit } => format!("The request headers are larger than the limit of {limit} bytes."),
            Self::TooManyHeaders { limit } => format!("The request has more than {limit} header fields."),
            Self::InvalidRequestHead => "The request head is not valid HTTP/1.1.".into(),
            Self::HeadTimeout => "The request head was not received in time.".into(),
            Self::Internal => "Internal gateway error.".into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        if let Self::ObjectNotFound {
            kind: ProviderKind::Anthropic,
        } = self
        {
            // Anthropic's own shape, so its SDK sees the same thing as for a missing id.
            let v = serde_json::json!({
                "type": "error",
                "error": {"type": "not_found_error", "message": self.message()},
            });
            return Bytes::from(v.to_string());
        }
        let v = serde_json::json!({
            "error": {
                "message": self.message(),
                "type": self.error_type(),
                "param": null,
                "code": self.code(),
            }
        });
        Bytes::from(v.to_string())
    }
}

impl Reject {
    /// Headers a refusal carries besides the body: `Retry-After` (and `retry-after-ms`, which
    /// the OpenAI and Anthropic SDKs prefer) and `x-ratelimit-*` on a rate limit;
    /// `x-should-retry: false` on a spent budget so SDKs do not retry in a loop.
    pub fn add_headers(&self, h: &mut ResponseHeader) -> pingora::Result<()> {
        match self {
            Self::RateLimited(r) => {
                let ms = r.retry_after_ms.max(1);
                h.insert_header("retry-after", ms.div_ceil(1000).to_string())?;
                h.insert_header("retry-after-ms", ms.to_string())?;
                r.headers.apply(h)?;
            }
            Self::LimiterUnavailable => {
                h.insert_header("retry-after", "1")?;
            }
            Self::BudgetExceeded(b) => {
                h.insert_header("retry-after", b.retry_after_secs.to_string())?;
                h.insert_header("x-should-retry", "false")?;
            }
            Self::Overloaded | Self::ConcurrencyLimit | Self::NoSnapshot => {
                h.insert_header("retry-after", "1")?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// The caps on a request head, checked before anything else looks at the request.
#[derive(Debug, Clone, Copy)]
pub struct HeadCaps {
    /// `server.max_url_bytes`.
    pub max_url_bytes: usize,
    /// `server.max_request_head_bytes`.
    pub max_head_bytes: usize,
    /// `server.max_headers`.
    pub max_headers: usize,
}

impl HeadCaps {
    /// Checks a parsed head (HTTP/1 heads over the size cap never get this far: the
    /// connection guard stops them while they are read; HTTP/2 heads are checked here).
    pub fn check(&self, req: &pingora::http::RequestHeader) -> Result<(), Reject> {
        let target = req
            .uri
            .path_and_query()
            .map_or(req.uri.path().len(), |pq| pq.as_str().len());
        if target > self.max_url_bytes {
            return Err(Reject::UriTooLong {
                limit: self.max_url_bytes,
            });
        }
        if req.headers.len() > self.max_headers {
            return Err(Reject::TooManyHeaders {
                limit: self.max_headers,
            });
        }
        // Request line plus `name: value\r\n` per field, as on the wire.
        let size = req.method.as_str().len()
            + target
            + 12
            + req
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if size > self.max_head_bytes {
            return Err(Reject::HeadTooLarge {
                limit: self.max_head_bytes,
            });
        }
        Ok(())
    }
}

/// What a failed request-head read means.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadFailure {
    /// Answer this, then close.
    Answer(Reject),
    /// The client was too slow (already counted by the connection guard): answer, close.
    Timeout,
    /// The client went away or the connection broke: nothing to answer.
    Disconnect,
}

/// Classifies a request-head error from Pingora (its parser, or the connection guard's
/// verdict carried inside a read error).
pub fn classify_head_error(e: &pingora::Error, caps: &HeadCaps) -> HeadFailure {
    use crate::connections::HeadLimit;
    match HeadLimit::of(e) {
        Some(HeadLimit::Timeout) => return HeadFailure::Timeout,
        Some(HeadLimit::UriTooLong) => {
            return HeadFailure::Answer(Reject::UriTooLong {
                limit: caps.max_url_bytes,
            })
        }
        Some(HeadLimit::TooLarge) => {
            return HeadFailure::Answer(Reject::HeadTooLarge {
                limit: caps.max_head_bytes,
            })
        }
        None => {}
    }
    if matches!(e.etype(), pingora::ErrorType::InvalidHTTPHeader) {
        // httparse's own count limit (Pingora parses at most 256 fields).
        if e.root_cause().to_string() == "too many headers" {
            return HeadFailure::Answer(Reject::TooManyHeaders {
                limit: caps.max_headers,
            });
        }
        return HeadFailure::Answer(Reject::InvalidRequestHead);
    }
    HeadFailure::Disconnect
}

/// The whole response for `reject` when there is no proxy session (head errors): status,
/// JSON body, `connection: close`, no `server` header.
pub fn reject_response(reject: &Reject) -> Option<(Box<ResponseHeader>, Bytes)> {
    let body = reject.body();
    // Only an invalid status or header could fail; every Reject status is valid.
    let mut header = ResponseHeader::build(reject.status(), Some(4)).ok()?;
    header
        .insert_header("content-type", "application/json")
        .ok()?;
    header
        .insert_header("content-length", body.len().to_string())
        .ok()?;
    header
        .insert_header("x-request-id", crate::request_id::new_id())
        .ok()?;
    header.insert_header("connection", "close").ok()?;
    Some((Box::new(header), body))
}

/// Writes `reject` as the response. `close` asks for the connection to be closed afterwards
/// (an unread request body makes the connection unsafe to reuse).
pub async fn write_reject(
    session: &mut Session,
    reject: &Reject,
    request_id: &str,
    close: bool,
) -> pingora::Result<()> {
    let body = reject.body();
    let mut header = ResponseHeader::build(reject.status(), Some(12))?;
    header.insert_header("content-type", "application/json")?;
    header.insert_header("content-length", body.len().to_string())?;
    header.insert_header("x-request-id", request_id)?;
    reject.add_headers(&mut header)?;
    if close {
        session.set_keepalive(None);
        header.insert_header("connection", "close")?;
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_error_shape() {
        let v: serde_json::Value = match serde_json::from_slice(&Reject::ModelNotAllowed.body()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(v["error"]["code"], "model_not_allowed");
        assert_eq!(v["error"]["type"], "permission_error");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}
