//! `/api/v1/orgs/{org}/routes`: which provider serves a model name.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gateway_schema::ModelPattern;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orgs::authorized_org;
use super::{list_type, next_cursor, ApiJson, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::{self, PathSlugs};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{RouteRow, Store, StoreError};

/// A route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Route {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    /// Model name or `prefix*` pattern.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f*]{1,64}\\*?$",
        min_length = 1,
        max_length = 65
    )]
    pub model: String,
    /// Provider slug.
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub provider: String,
    /// Model name sent upstream instead (aliases).
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f*]{1,64}$",
        min_length = 1,
        max_length = 64
    )]
    pub upstream_model: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

list_type!(RouteList, Route);

/// Body of `POST .../routes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoute {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    /// Model name or `prefix*` pattern.
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f*]{1,64}\\*?$",
        min_length = 1,
        max_length = 65
    )]
    pub model: String,
    /// Provider slug in the same org.
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub provider: String,
    /// Model name sent upstream instead.
    #[serde(default)]
    #[schema(
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f*]{1,64}$",
        min_length = 1,
        max_length = 64
    )]
    pub upstream_model: Option<String>,
}

async fn view(store: &Store, r: RouteRow) -> Result<Route, StoreError> {
    Ok(Route {
        provider: store.provider_slug(r.provider_id).await?,
        slug: r.slug,
        model: r.model,
        upstream_model: r.upstream_model,
        created_at: r.created_at,
    })
}

/// List an org's routes in match order.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/routes", tag = "routes",
    params(("org" = String, Path, description = "org slug"), ListQuery),
    responses((status = 200, body = RouteList), (status = 404, body = ErrorBody)))]
pub async fn list_routes(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RouteList>, ApiError> {
    let page = q.page()?;
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let rows = st.store.list_routes(org.id, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        items.push(view(&st.store, r).await?);
    }
    Ok(Json(RouteList {
        items,
        next_cursor: next,
    }))
}

/// Create a route (editor).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/routes", tag = "routes",
    params(("org" = String, Path, description = "org slug")), request_body = CreateRoute,
    responses((status = 201, body = Route), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_route(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<CreateRoute>,
) -> Result<(StatusCode, Json<Route>), ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let slug = slug::parse("slug", &body.slug)?;
    let model = ModelPattern::try_from(body.model)
        .map_err(|e| ApiError::bad_request("invalid_model", e))?;
    if let Some(u) = &body.upstream_model {
        ModelPattern::try_from(u.clone())
            .ok()
            .filter(|m| matches!(m, ModelPattern::Exact(_)))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_model",
                    "upstream_model must be a plain model name (1 to 256 characters, no `*`)",
                )
            })?;
    }
    let provider_slug = slug::parse("provider", &body.provider)?;
    let provider = match st.store.provider(org.id, provider_slug.as_str()).await {
        Ok(p) => p,
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::bad_request(
                "unknown_provider",
                "the provider does not exist in this org",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let row = st
        .store
        .create_route(
            org.id,
            slug.as_str(),
            &String::from(model),
            provider.id,
            body.upstream_model.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&st.store, row).await?)))
}

/// Get a route.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/routes/{route}", tag = "routes",
    params(("org" = String, Path, description = "org slug"), ("route" = String, Path, description = "route slug")),
    responses((status = 200, body = Route), (status = 404, body = ErrorBody)))]
pub async fn get_route(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<Json<Route>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let row = st.store.route(org.id, p.get("route")?.as_str()).await?;
    Ok(Json(view(&st.store, row).await?))
}

/// Delete a route (editor).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/routes/{route}", tag = "routes",
    params(("org" = String, Path, description = "org slug"), ("route" = String, Path, description = "route slug")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_route(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<StatusCode, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    st.store
        .delete_route(org.id, p.get("route")?.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
