//! `/internal/v1/...`: calls from other components, authenticated by the internal secret (in
//! the auth middleware) and, for ingest, by the token of that ingest kind.
//!
//! Usage, cache-hit and guardrail-block records are stored, each idempotent on the record's
//! `id`, so a gateway retrying a batch never double-counts. Ownership records of provider
//! objects are stored idempotently on `(org, provider, object_id)` and served back to gateways
//! by `GET /internal/v1/objects`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_schema::usage::MAX_BATCH;
use gateway_schema::{CacheHitBatch, GuardrailBlockBatch, ObjectBatch, ObjectPage, UsageBatch};
use serde::Deserialize;

use crate::audit::AuditCtx;
use crate::auth::internal::{check_ingest, IngestKind};
use crate::auth::reject;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ObjectFilter;

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
        IngestKind::Objects => match ingest_objects(&st, &body).await {
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
}

/// A batch of `what` records from `body`: 400 `invalid_body` when it does not parse,
/// `batch_too_large` past `max` records, `invalid_record` naming the first bad field.
fn parse_batch<B, R, E>(
    body: &[u8],
    what: &str,
    max: usize,
    records: impl FnOnce(&B) -> &[R],
    validate: impl Fn(&R) -> Result<(), E>,
) -> Result<B, ApiError>
where
    B: serde::de::DeserializeOwned,
    E: std::fmt::Display,
{
    let batch: B = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("not a valid {what} batch: {e}"))
    })?;
    let list = records(&batch);
    if list.len() > max {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!("at most {max} records per batch"),
        ));
    }
    for (i, r) in list.iter().enumerate() {
        validate(r).map_err(|field| {
            ApiError::bad_request("invalid_record", format!("records[{i}].{field} is invalid"))
        })?;
    }
    Ok(batch)
}

/// `{"stored": new, "duplicates": already stored}` for a batch of `total` records.
fn stored_reply(total: usize, stored: u64) -> Json<serde_json::Value> {
    let duplicates = (total as u64).saturating_sub(stored);
    Json(serde_json::json!({"stored": stored, "duplicates": duplicates}))
}

/// Validates and stores a cache-hit batch.
async fn ingest_cache_hits(
    st: &AppState,
    body: &[u8],
) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: CacheHitBatch = parse_batch(
        body,
        "cache-hit",
        MAX_BATCH,
        |b: &CacheHitBatch| &b.records[..],
        |r| r.validate(),
    )?;
    let stored = st.store.insert_cache_hits(&batch.records).await?;
    Ok(stored_reply(batch.records.len(), stored))
}

/// Validates and stores a usage batch.
async fn ingest_usage(st: &AppState, body: &[u8]) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: UsageBatch = parse_batch(
        body,
        "usage",
        MAX_BATCH,
        |b: &UsageBatch| &b.records[..],
        |r| r.validate(),
    )?;
    let stored = st.store.insert_usage(&batch.records).await?;
    Ok(stored_reply(batch.records.len(), stored))
}

/// Validates and stores a guardrail-block batch.
async fn ingest_guardrail_blocks(
    st: &AppState,
    body: &[u8],
) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: GuardrailBlockBatch = parse_batch(
        body,
        "guardrail-block",
        MAX_BATCH,
        |b: &GuardrailBlockBatch| &b.records[..],
        |r| r.validate(),
    )?;
    let stored = st.store.insert_guardrail_blocks(&batch.records).await?;
    Ok(stored_reply(batch.records.len(), stored))
}

/// Validates and stores a batch of ownership records: `{"stored": changed, "duplicates":
/// already reflected}`.
async fn ingest_objects(st: &AppState, body: &[u8]) -> Result<Json<serde_json::Value>, ApiError> {
    let batch: ObjectBatch = parse_batch(
        body,
        "object",
        gateway_schema::objects::MAX_BATCH,
        |b: &ObjectBatch| &b.records[..],
        |r| r.validate(),
    )?;
    let n = st.store.insert_objects(&batch.records).await?;
    Ok(Json(
        serde_json::json!({"stored": n.stored, "duplicates": n.duplicates}),
    ))
}

/// Default and largest page of `GET /internal/v1/objects`.
const OBJECTS_PAGE_DEFAULT: i64 = 1000;
const OBJECTS_PAGE_MAX: i64 = 5000;

/// Query of `GET /internal/v1/objects`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsQuery {
    /// Cursor: only records after this one (0 or absent: from the start).
    #[serde(default)]
    after: Option<i64>,
    /// Page size (1–5000, default 1000).
    #[serde(default)]
    limit: Option<i64>,
    /// Only this org.
    #[serde(default)]
    org: Option<String>,
    /// Only this project of `org`.
    #[serde(default)]
    project: Option<String>,
}

/// `GET /internal/v1/objects`: the live ownership records, paged by cursor, for a gateway
/// seeding its ownership tracker (internal secret only, checked by the auth middleware).
pub async fn list_objects(
    State(st): State<AppState>,
    query: Result<Query<ObjectsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ObjectPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(OBJECTS_PAGE_DEFAULT);
    if !(1..=OBJECTS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {OBJECTS_PAGE_MAX}"),
        ));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "after must not be negative",
        ));
    }
    for (field, v) in [("org", &q.org), ("project", &q.project)] {
        if let Some(v) = v {
            crate::guards::slug::parse(field, v)?;
        }
    }
    if q.project.is_some() && q.org.is_none() {
        return Err(ApiError::bad_request("invalid_query", "project needs org"));
    }
    let filter = ObjectFilter {
        org: q.org,
        project: q.project,
    };
    let (objects, last) = st.store.list_objects(&filter, after, limit).await?;
    let next_after = if objects.len() as i64 == limit {
        last
    } else {
        None
    };
    Ok(Json(ObjectPage {
        objects,
        next_after,
    }))
}
