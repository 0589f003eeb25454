//! Request guards on mutating methods: the global token bucket, then the body cap. Slugs are
//! checked where path parameters and bodies are parsed (see [`slug`]).

pub mod body_cap;
pub mod rate_limit;
pub mod slug;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;
use rate_limit::Decision;

/// Whether a method changes state.
pub fn is_mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: rate limit and body cap, on mutating requests only.
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if !is_mutating(req.method()) {
        return next.run(req).await;
    }
    // Component calls (already authenticated by the internal secret) skip the token bucket,
    // which paces configuration changes: a fleet's status reports must not starve admins.
    if !req.uri().path().starts_with("/internal/") {
        if let Some(refused) = rate_limit(&st).await {
            return refused;
        }
    }
    let timeout = std::time::Duration::from_secs(st.config.guards.body_read_timeout_secs);
    match body_cap::buffer(req, st.config.guards.max_body_bytes, timeout).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// The global token bucket: `Some(response)` when the request is refused.
async fn rate_limit(st: &AppState) -> Option<Response> {
    let decision = st.limiter.check().await;
    let label = match decision {
        Decision::Allowed => "allowed",
        Decision::Limited { .. } => "limited",
        Decision::Unavailable => "unavailable",
    };
    st.metrics
        .rate_limit_decisions
        .with_label_values(&[label])
        .inc();
    match decision {
        Decision::Allowed => None,
        Decision::Limited { retry_after_secs } => Some(
            ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many changes; retry later",
            )
            .with_retry_after(retry_after_secs)
            .into_response(),
        ),
        Decision::Unavailable => Some(
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "rate_limiter_unavailable",
                "the shared rate limiter is unavailable and configured to fail closed",
            )
            .with_retry_after(1)
            .into_response(),
        ),
    }
}
