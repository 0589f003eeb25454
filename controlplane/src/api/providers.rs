//! `/api/v1/orgs/{org}/providers`: upstream APIs. A provider holds only a *reference* to its
//! key (`env:NAME`, `file:/path`), resolved by the gateway; the control plane never sees keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gateway_schema::{ProviderKind, SecretRef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orgs::authorized_org;
use super::{list_type, next_cursor, ApiJson, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::{self, PathSlugs};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::ProviderRow;

/// A provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct Provider {
    /// Identifier (a slug; also the gateway's pass-through prefix).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    /// `openai`, `anthropic` or `openai-compatible`.
    #[schema(pattern = "^(openai|anthropic|openai-compatible)$")]
    pub kind: String,
    /// Base URL.
    pub base_url: String,
    /// Where the gateway finds the key: `env:NAME` or `file:/path`.
    pub api_key_ref: Option<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

impl From<ProviderRow> for Provider {
    fn from(r: ProviderRow) -> Self {
        Self {
            slug: r.slug,
            kind: r.kind,
            base_url: r.base_url,
            api_key_ref: r.api_key_ref,
            created_at: r.created_at,
        }
    }
}

list_type!(ProviderList, Provider);

/// Body of `POST .../providers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    #[serde(flatten)]
    #[schema(inline)]
    pub settings: ProviderSettings,
}

/// The settable fields of a provider (body of `PUT`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProviderSettings {
    /// `openai`, `anthropic` or `openai-compatible`.
    #[schema(pattern = "^(openai|anthropic|openai-compatible)$")]
    pub kind: String,
    /// `http(s)://host[:port][/path]`, without credentials, query or fragment.
    pub base_url: String,
    /// `env:NAME` or `file:/path`. Required for `openai` and `anthropic`.
    #[serde(default)]
    pub api_key_ref: Option<String>,
}

struct Valid {
    kind: &'static str,
    base_url: String,
    api_key_ref: Option<String>,
}

fn validate(s: &ProviderSettings) -> Result<Valid, ApiError> {
    let kind: ProviderKind = s
        .kind
        .parse()
        .map_err(|why: String| ApiError::bad_request("invalid_provider_kind", why))?;
    let bad_url = |why: &str| ApiError::bad_request("invalid_base_url", format!("base_url {why}"));
    let url = url::Url::parse(&s.base_url).map_err(|_| bad_url("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad_url("must be http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad_url("must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad_url("must not carry credentials; use api_key_ref"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad_url("must not have a query or fragment"));
    }
    let api_key_ref = match &s.api_key_ref {
        Some(r) => Some(
            SecretRef::parse(r)
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_secret_ref",
                        "api_key_ref must be env:NAME or file:/path; the control plane never stores provider keys",
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    if matches!(kind, ProviderKind::Openai | ProviderKind::Anthropic) && api_key_ref.is_none() {
        return Err(ApiError::bad_request(
            "missing_secret_ref",
            "api_key_ref is required for openai and anthropic providers",
        ));
    }
    Ok(Valid {
        kind: kind.as_str(),
        base_url: url.to_string(),
        api_key_ref,
    })
}

/// List an org's providers.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/providers", tag = "providers",
    params(("org" = String, Path, description = "org slug"), ListQuery),
    responses((status = 200, body = ProviderList), (status = 404, body = ErrorBody)))]
pub async fn list_providers(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProviderList>, ApiError> {
    let page = q.page()?;
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let rows = st.store.list_providers(org.id, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    Ok(Json(ProviderList {
        items: rows.into_iter().map(Provider::from).collect(),
        next_cursor: next,
    }))
}

/// Create a provider (editor).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/providers", tag = "providers",
    params(("org" = String, Path, description = "org slug")), request_body = CreateProvider,
    responses((status = 201, body = Provider), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_provider(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<CreateProvider>,
) -> Result<(StatusCode, Json<Provider>), ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let slug = slug::parse("slug", &body.slug)?;
    let v = validate(&body.settings)?;
    let row = st
        .store
        .create_provider(
            org.id,
            slug.as_str(),
            v.kind,
            &v.base_url,
            v.api_key_ref.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Get a provider.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/providers/{provider}", tag = "providers",
    params(("org" = String, Path, description = "org slug"), ("provider" = String, Path, description = "provider slug")),
    responses((status = 200, body = Provider), (status = 404, body = ErrorBody)))]
pub async fn get_provider(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<Json<Provider>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let row = st
        .store
        .provider(org.id, p.get("provider")?.as_str())
        .await?;
    Ok(Json(row.into()))
}

/// Replace a provider's settings (editor).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/providers/{provider}", tag = "providers",
    params(("org" = String, Path, description = "org slug"), ("provider" = String, Path, description = "provider slug")),
    request_body = ProviderSettings,
    responses((status = 200, body = Provider), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_provider(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<ProviderSettings>,
) -> Result<Json<Provider>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let v = validate(&body)?;
    let row = st
        .store
        .update_provider(
            org.id,
            p.get("provider")?.as_str(),
            v.kind,
            &v.base_url,
            v.api_key_ref.as_deref(),
        )
        .await?;
    Ok(Json(row.into()))
}

/// Delete a provider no route uses (editor).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/providers/{provider}", tag = "providers",
    params(("org" = String, Path, description = "org slug"), ("provider" = String, Path, description = "provider slug")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_provider(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<StatusCode, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    st.store
        .delete_provider(org.id, p.get("provider")?.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
