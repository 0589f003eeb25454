//! `GET /api/v1/audit`: the audit log, for auditors and admins (on `*`).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{list_type, next_cursor, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{AuditFilter, AuditRecord, Page};

list_type!(AuditList, AuditRecord);

/// Filters of the audit query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// Records at or before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
    /// Actor subject or email, exactly.
    pub actor: Option<String>,
    /// Action, exactly (`POST /api/v1/orgs`).
    pub action: Option<String>,
    /// Request id (`x-request-id`), exactly.
    pub request_id: Option<String>,
    /// At most this many items (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// Query the audit log.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 403, body = ErrorBody)))]
pub async fn query_audit(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    caller.authorize(None, Need::ReadAudit)?;
    let page: Page = ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    let f = AuditFilter {
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        actor: q.actor,
        action: q.action,
        request_id: q.request_id,
    };
    let rows = st.store.query_audit(&f, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    Ok(Json(AuditList {
        items: rows,
        next_cursor: next,
    }))
}
