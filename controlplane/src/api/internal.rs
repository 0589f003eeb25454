//! `/internal/v1/...`: calls from other components, authenticated by the internal secret (in
//! the auth middleware) and, for ingest, by the token of that ingest kind.
//!
//! Storing ingested records arrives with the ingest issue: until then a call that passes both
//! checks is answered 501 `ingest_not_implemented`, so no component mistakes it for stored.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::audit::AuditCtx;
use crate::auth::internal::{check_ingest, IngestKind};
use crate::auth::reject;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /internal/v1/ingest/{kind}`.
pub async fn ingest(
    State(st): State<AppState>,
    Path(kind): Path<String>,
    audit: Option<axum::Extension<AuditCtx>>,
    headers: HeaderMap,
) -> Response {
    let audit = audit.map(|a| a.0).unwrap_or_default();
    let Some(kind) = IngestKind::parse(&kind) else {
        return ApiError::not_found("ingest kind").into_response();
    };
    if let Err(f) = check_ingest(&st.internal, kind, &headers) {
        return reject(&st, &audit, f);
    }
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "ingest_not_implemented",
        "ingest storage is not implemented yet; nothing was stored",
    )
    .into_response()
}
