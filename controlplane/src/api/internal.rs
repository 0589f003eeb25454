//! `/internal/v1/...`: calls from other components, authenticated by the internal secret (in
//! the auth middleware) and, for ingest, by the token of that ingest kind.
//!
//! Usage and guardrail-block records are stored (idempotent on each record's `id`, so a
//! gateway retrying a batch never double-counts). Cache-hit records arrive with their feature:
//! until then a call that passes both checks is answered 501 `ingest_not_implemented`, so no
//! component mistakes it for stored.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_schema::usage::MAX_BATCH;
use gateway_schema::{GuardrailBlockBatch, UsageBatch};

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
    body: Bytes,
) -> Response {
    let audit = audit.map(|a| a.0).unwrap_or_default();
    let Some(kind) = IngestKind::parse(&kind) else {
        return ApiError::not_found("ingest kind").into_response();
    };
    if let Err(f) = check_ingest(&st.internal, kind, &headers) {
        return reject(&st, &audit, f);
    }
    match kind {
        IngestKind::Usage => match ingest_usage(&st, &body).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        },
        IngestKind::GuardrailBlocks => match ingest_guardrail_blocks(&st, &body).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        },
        IngestKind::CacheHits => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "ingest_not_implemented",
            "ingest storage is not implemented yet; nothing was stored",
        )
        .into_response(),
    }
}

/// Validates and stores a usage batch: `{"stored": new, "duplicates": already stored}`.
async fn ingest_usage(st: &AppState, body: &[u8]) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: UsageBatch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("not a usage batch: {e}")))?;
    if batch.records.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!("at most {MAX_BATCH} records per batch"),
        ));
    }
    for (i, r) in batch.records.iter().enumerate() {
        r.validate().map_err(|field| {
            ApiError::bad_request("invalid_record", format!("records[{i}].{field} is invalid"))
        })?;
    }
    let stored = st.store.insert_usage(&batch.records).await?;
    let duplicates = batch.records.len() as u64 - stored;
    Ok(Json(
        serde_json::json!({"stored": stored, "duplicates": duplicates}),
    ))
}

/// Validates and stores a guardrail-block batch: `{"stored": new, "duplicates": already
/// stored}`.
async fn ingest_guardrail_blocks(
    st: &AppState,
    body: &[u8],
) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: GuardrailBlockBatch = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("not a guardrail-block batch: {e}"))
    })?;
    if batch.records.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!("at most {MAX_BATCH} records per batch"),
        ));
    }
    for (i, r) in batch.records.iter().enumerate() {
        r.validate().map_err(|field| {
            ApiError::bad_request("invalid_record", format!("records[{i}].{field} is invalid"))
        })?;
    }
    let stored = st.store.insert_guardrail_blocks(&batch.records).await?;
    let duplicates = batch.records.len() as u64 - stored;
    Ok(Json(
        serde_json::json!({"stored": stored, "duplicates": duplicates}),
    ))
}
