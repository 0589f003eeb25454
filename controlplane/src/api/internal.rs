//! `/internal/v1/...`: calls from other components, authenticated by the internal secret (in
//! the auth middleware) and, for ingest, by the token of that ingest kind.
//!
//! Usage, cache-hit and guardrail-block records are stored, each idempotent on the record's
//! `id`, so a gateway retrying a batch never double-counts.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_schema::usage::MAX_BATCH;
use gateway_schema::{CacheHitBatch, GuardrailBlockBatch, UsageBatch};

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
        IngestKind::CacheHits => match ingest_cache_hits(&st, &body).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        },
        IngestKind::GuardrailBlocks => match ingest_guardrail_blocks(&st, &body).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        },
    }
}

/// `GET /internal/v1/spend?from_ms=..&to_ms=..`'s query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendQuery {
    /// From (Unix ms, inclusive).
    from_ms: i64,
    /// Until (Unix ms, exclusive); now when absent.
    to_ms: Option<i64>,
}

/// `GET /internal/v1/spend`: priced spend per project over a period (gateways ask for the
/// current month at start and every 30 s, to restore their budget counters):
/// `{"projects": [{"org", "project", "cost_pico"}]}`.
pub async fn spend(
    State(st): State<AppState>,
    super::ApiQuery(q): super::ApiQuery<SpendQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let to_ms = q.to_ms.unwrap_or(i64::MAX);
    if q.from_ms < 0 || to_ms <= q.from_ms {
        return Err(ApiError::bad_request(
            "invalid_query",
            "from_ms must be >= 0 and before to_ms",
        ));
    }
    let projects = st
        .store
        .spend_by_project(q.from_ms, to_ms)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(serde_json::json!({ "projects": projects })))
/// Validates and stores a cache-hit batch: `{"stored": new, "duplicates": already stored}`.
async fn ingest_cache_hits(
    st: &AppState,
    body: &[u8],
) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: CacheHitBatch = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("not a cache-hit batch: {e}"))
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
    let stored = st.store.insert_cache_hits(&batch.records).await?;
    let duplicates = batch.records.len() as u64 - stored;
    Ok(Json(
        serde_json::json!({"stored": stored, "duplicates": duplicates}),
    ))
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
