//! The REST API under `/api/v1`. Routes are registered through `utoipa_axum`, so the OpenAPI
//! document is generated from the same handlers that serve and cannot drift from them.

pub mod audit;
pub mod contract;
pub mod gateways;
pub mod guardrail_blocks;
pub mod internal;
pub mod keys;
pub mod orgs;
pub mod policies;
pub mod projects;
pub mod providers;
pub mod routes;
pub mod snapshots;
pub mod usage;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Page;

/// A JSON body whose rejections are API errors (400 `invalid_body`, 415). Every body of this
/// API is a JSON object: anything else is refused before it is read into `T` (serde would
/// otherwise accept an array such as `[null, null]` as a struct of optional fields).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|&b| b != b'{') {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

/// `application/json` or `application/*+json`, as axum's own `Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// A query string whose rejections are API errors (400 `invalid_query`), not axum's
/// `text/plain` answers.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(e) => Err(ApiError::bad_request("invalid_query", e.body_text())),
        }
    }
}

/// Cursor pagination parameters of list endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many items (1–200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

/// The largest page.
pub const MAX_PAGE: u32 = 200;

impl ListQuery {
    /// The page to read.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        let after = match &self.cursor {
            None => 0,
            Some(c) => c.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "cursor must come from next_cursor")
            })?,
        };
        Ok(Page {
            after,
            limit: i64::from(limit),
        })
    }
}

/// The cursor of the next page: set when this page is full.
pub fn next_cursor(page: Page, ids: impl Iterator<Item = i64>) -> Option<String> {
    let ids: Vec<i64> = ids.collect();
    (ids.len() as i64 >= page.limit)
        .then(|| ids.last().map(|i| i.to_string()))
        .flatten()
}

/// Declares a `{ items, next_cursor }` list type for the OpenAPI document.
macro_rules! list_type {
    ($name:ident, $item:ty) => {
        /// One page of items.
        #[derive(Debug, serde::Serialize, utoipa::ToSchema)]
        pub struct $name {
            /// The items, oldest first.
            pub items: Vec<$item>,
            /// Pass as `cursor` to get the next page; absent on the last page.
            pub next_cursor: Option<String>,
        }
    };
}
pub(crate) use list_type;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AI gateway control plane",
        description = "Configuration API: orgs, projects, providers, routes, policies, virtual keys, usage, guardrail blocks and the audit log."
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The documented API routes and the OpenAPI document describing exactly them.
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orgs::list_orgs, orgs::create_org))
        .routes(routes!(orgs::get_org, orgs::delete_org))
        .routes(routes!(projects::list_projects, projects::create_project))
        .routes(routes!(
            projects::get_project,
            projects::update_project,
            projects::delete_project
        ))
        .routes(routes!(
            providers::list_providers,
            providers::create_provider
        ))
        .routes(routes!(
            providers::get_provider,
            providers::update_provider,
            providers::delete_provider
        ))
        .routes(routes!(routes::list_routes, routes::create_route))
        .routes(routes!(routes::get_route, routes::delete_route))
        .routes(routes!(policies::list_policies, policies::create_policy))
        .routes(routes!(
            policies::get_policy,
            policies::update_policy,
            policies::delete_policy
        ))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::get_key, keys::revoke_key))
        .routes(routes!(audit::query_audit))
        .routes(routes!(gateways::list_gateways))
        .routes(routes!(usage::get_usage))
        .routes(routes!(guardrail_blocks::list_guardrail_blocks))
        .split_for_parts();
    let mut doc = doc;
    contract::complete(&mut doc);
    (router, doc)
}

/// `GET /api/v1/openapi.json` (any authenticated caller).
async fn openapi_json(
    _caller: Caller,
    axum::extract::State(doc): axum::extract::State<std::sync::Arc<serde_json::Value>>,
) -> Json<serde_json::Value> {
    Json((*doc).clone())
}

/// The full API router (before middleware): documented routes, the document, internal calls.
pub fn router(st: AppState) -> Result<Router, serde_json::Error> {
    let (api, mut doc) = documented();
    if matches!(*st.auth, crate::auth::Authenticator::DevHeaders) {
        contract::document_dev_headers(&mut doc);
    }
    let doc = std::sync::Arc::new(serde_json::to_value(&doc)?);
    let doc_router = Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .with_state(doc);
    Ok(api
        .route("/internal/v1/ingest/{kind}", post(internal::ingest))
        .route("/internal/v1/spend", get(internal::spend))
        .route("/internal/v1/objects", get(internal::list_objects))
        .route("/internal/v1/snapshots/stream", get(snapshots::stream))
        .route("/internal/v1/gateways/status", post(snapshots::status))
        .route("/healthz", get(crate::admin::healthz))
        .route("/readyz", get(crate::admin::readyz))
        .with_state(st)
        .merge(doc_router)
        .fallback(contract::unknown_route)
        .method_not_allowed_fallback(contract::method_not_allowed))
}
