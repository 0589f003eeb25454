//! `/api/v1/orgs/{org}/projects`: tenants whose virtual keys call the gateway.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orgs::{authorized_org, display_name};
use super::{list_type, next_cursor, ApiJson, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::{self, PathSlugs};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{ProjectRow, Store, StoreError};

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    /// Human-readable name.
    pub display_name: String,
    /// The policy applied, by slug.
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub policy: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

list_type!(ProjectList, Project);

/// Body of `POST .../projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// Identifier (a slug).
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
    /// A policy of the same org, by slug.
    #[serde(default)]
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub policy: Option<String>,
}

/// Body of `PUT .../projects/{project}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    /// Human-readable name (unchanged when absent).
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]{0,200}$",
        max_length = 200
    )]
    pub display_name: Option<String>,
    /// A policy of the same org, by slug. `PUT` replaces: absent or null detaches.
    #[serde(default)]
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub policy: Option<String>,
}

async fn view(store: &Store, r: ProjectRow) -> Result<Project, StoreError> {
    let policy = match r.policy_id {
        Some(id) => Some(store.policy_slug(id).await?),
        None => None,
    };
    Ok(Project {
        slug: r.slug,
        display_name: r.display_name,
        policy,
        created_at: r.created_at,
    })
}

async fn policy_id(
    st: &AppState,
    org_id: i64,
    policy: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let Some(p) = policy else { return Ok(None) };
    let slug = slug::parse("policy", p)?;
    match st.store.policy(org_id, slug.as_str()).await {
        Ok(row) => Ok(Some(row.id)),
        Err(StoreError::NotFound(_)) => Err(ApiError::bad_request(
            "unknown_policy",
            "the policy does not exist in this org",
        )),
        Err(e) => Err(e.into()),
    }
}

/// List an org's projects.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ListQuery),
    responses((status = 200, body = ProjectList), (status = 404, body = ErrorBody)))]
pub async fn list_projects(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProjectList>, ApiError> {
    let page = q.page()?;
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let rows = st.store.list_projects(org.id, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(view(&st.store, r).await?);
    }
    Ok(Json(ProjectList {
        items,
        next_cursor: next,
    }))
}

/// Create a project (editor).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects", tag = "projects",
    params(("org" = String, Path, description = "org slug")), request_body = CreateProject,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_project(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let slug = slug::parse("slug", &body.slug)?;
    let name = display_name(body.display_name, slug.as_str())?;
    let pid = policy_id(&st, org.id, body.policy.as_deref()).await?;
    let row = st
        .store
        .create_project(org.id, slug.as_str(), &name, pid)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&st.store, row).await?)))
}

/// Get a project.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug")),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<Json<Project>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let row = st.store.project(org.id, p.get("project")?.as_str()).await?;
    Ok(Json(view(&st.store, row).await?))
}

/// Change a project's name or policy (editor).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug")),
    request_body = UpdateProject,
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_project(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<UpdateProject>,
) -> Result<Json<Project>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let slug = p.get("project")?;
    let current = st.store.project(org.id, slug.as_str()).await?;
    let name = display_name(body.display_name, &current.display_name)?;
    let pid = policy_id(&st, org.id, body.policy.as_deref()).await?;
    let row = st
        .store
        .update_project(org.id, slug.as_str(), &name, pid)
        .await?;
    Ok(Json(view(&st.store, row).await?))
}

/// Delete a project and its keys (editor).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}", tag = "projects",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_project(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<StatusCode, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    st.store
        .delete_project(org.id, p.get("project")?.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
