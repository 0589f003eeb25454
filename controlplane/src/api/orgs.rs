//! `/api/v1/orgs`: tenants' top level.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{list_type, next_cursor, ApiJson, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::{self, PathSlugs};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::OrgRow;

/// An org.
#[derive(Debug, Serialize, ToSchema)]
pub struct Org {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    /// Human-readable name.
    pub display_name: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl From<OrgRow> for Org {
    fn from(r: OrgRow) -> Self {
        Self {
            slug: r.slug,
            display_name: r.display_name,
            created_at: r.created_at,
        }
    }
}

list_type!(OrgList, Org);

/// Body of `POST /api/v1/orgs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Identifier: lowercase letters, digits and inner hyphens, 1–63 characters.
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    /// Human-readable name (defaults to the slug).
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{0,200}$",
        max_length = 200
    )]
    pub display_name: Option<String>,
}

/// Checks a display name: short and free of control characters.
pub fn display_name(v: Option<String>, fallback: &str) -> Result<String, ApiError> {
    let v = v.unwrap_or_else(|| fallback.to_owned());
    if v.chars().count() > 200 || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "display_name must be at most 200 characters without control characters",
        ));
    }
    Ok(v)
}

/// Loads the org named in the path after checking the caller may act on it.
pub async fn authorized_org(
    st: &AppState,
    caller: &Caller,
    p: &PathSlugs,
    need: Need,
) -> Result<OrgRow, ApiError> {
    let org = p.get("org")?;
    caller.authorize(Some(org.as_str()), need)?;
    Ok(st.store.org(org.as_str()).await?)
}

/// List the orgs the caller has a role in.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs", params(ListQuery),
    responses((status = 200, body = OrgList), (status = 401, body = ErrorBody)))]
pub async fn list_orgs(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<OrgList>, ApiError> {
    let page = q.page()?;
    let visible = caller.grants.visible_orgs();
    let rows = st.store.list_orgs(page, visible.as_deref()).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    Ok(Json(OrgList {
        items: rows.into_iter().map(Org::from).collect(),
        next_cursor: next,
    }))
}

/// Create an org (admin on `*`).
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = Org), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_org(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<Org>), ApiError> {
    caller.authorize(None, Need::CreateOrg)?;
    let slug = slug::parse("slug", &body.slug)?;
    let name = display_name(body.display_name, slug.as_str())?;
    let row = st.store.create_org(slug.as_str(), &name).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Get an org.
#[utoipa::path(get, path = "/api/v1/orgs/{org}", tag = "orgs",
    params(("org" = String, Path, description = "org slug")),
    responses((status = 200, body = Org), (status = 404, body = ErrorBody)))]
pub async fn get_org(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<Json<Org>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    Ok(Json(org.into()))
}

/// Delete an empty org (admin).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}", tag = "orgs",
    params(("org" = String, Path, description = "org slug")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_org(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<StatusCode, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::OrgAdmin).await?;
    st.store.delete_org(org.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
