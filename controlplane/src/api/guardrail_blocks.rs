//! `GET /api/v1/orgs/{org}/guardrail-blocks`: what guardrail rules blocked or redacted, as the
//! gateways reported it (request id, project, key id, rule id, action; never the text), for
//! auditors and admins.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::orgs::authorized_org;
use super::{list_type, next_cursor, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::PathSlugs;
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{GuardrailBlockFilter, GuardrailBlockRow};

list_type!(GuardrailBlockList, GuardrailBlockRow);

/// Filters and page of a guardrail-blocks query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GuardrailBlockQuery {
    /// From this time, Unix milliseconds (inclusive; default: the beginning).
    pub from: Option<i64>,
    /// Until this time, Unix milliseconds (exclusive; default: now and later).
    pub to: Option<i64>,
    /// Only this project (slug).
    pub project: Option<String>,
    /// Only this rule id.
    pub rule_id: Option<String>,
    /// Only this action: `block` or `redact`.
    pub action: Option<String>,
    /// At most this many items (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// List an org's guardrail blocks and redactions, oldest first (auditor or admin).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/guardrail-blocks", tag = "guardrails",
    params(("org" = String, Path, description = "org slug"), GuardrailBlockQuery),
    responses((status = 200, body = GuardrailBlockList), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_guardrail_blocks(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<GuardrailBlockQuery>,
) -> Result<Json<GuardrailBlockList>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ReadGuardrailBlocks).await?;
    let page = ListQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page()?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::bad_request(
                "invalid_range",
                "from must not be after to",
            ));
        }
    }
    if q.action
        .as_deref()
        .is_some_and(|a| !matches!(a, "block" | "redact"))
    {
        return Err(ApiError::bad_request(
            "invalid_action",
            "action must be block or redact",
        ));
    }
    let f = GuardrailBlockFilter {
        from_ms: q.from,
        to_ms: q.to,
        project: q.project,
        rule_id: q.rule_id,
        action: q.action,
    };
    let rows = st.store.query_guardrail_blocks(&org.slug, &f, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    Ok(Json(GuardrailBlockList {
        items: rows,
        next_cursor: next,
    }))
}
