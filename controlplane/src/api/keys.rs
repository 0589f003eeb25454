//! `/api/v1/orgs/{org}/projects/{project}/keys`: virtual keys. The plaintext is returned once,
//! at creation; only its SHA-256 digest and a display prefix are stored.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gateway_schema::MintedKey;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orgs::authorized_org;
use super::{list_type, next_cursor, ApiJson, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::PathSlugs;
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{now_secs, KeyRow, ProjectRow};

/// A virtual key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Key {
    /// Identifier.
    pub id: String,
    /// Label.
    pub name: String,
    /// Display prefix (`gwk_1a2b3c4d`).
    pub prefix: String,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: Option<i64>,
    /// Revocation time, Unix seconds.
    pub revoked_at: Option<i64>,
}

impl From<KeyRow> for Key {
    fn from(r: KeyRow) -> Self {
        Self {
            id: r.key_id,
            name: r.name,
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A new key with its plaintext, shown only in this response.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    #[schema(inline)]
    pub key: Key,
    /// The key itself. Store it now: it cannot be shown again.
    pub plaintext: String,
}

list_type!(KeyList, Key);

/// Body of `POST .../keys`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Label (at most 200 characters).
    #[serde(default)]
    pub name: Option<String>,
    /// Expiry, Unix seconds, in the future.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

async fn authorized_project(
    st: &AppState,
    caller: &Caller,
    p: &PathSlugs,
    need: Need,
) -> Result<ProjectRow, ApiError> {
    let org = authorized_org(st, caller, p, need).await?;
    Ok(st.store.project(org.id, p.get("project")?.as_str()).await?)
}

fn new_key_id() -> Result<String, ApiError> {
    let mut raw = [0u8; 12];
    SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| ApiError::internal())?;
    Ok(format!("k{}", hex::encode(raw)))
}

/// List a project's keys (prefixes only).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/keys", tag = "keys",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug"), ListQuery),
    responses((status = 200, body = KeyList), (status = 404, body = ErrorBody)))]
pub async fn list_keys(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let page = q.page()?;
    let project = authorized_project(&st, &caller, &p, Need::ConfigRead).await?;
    let rows = st.store.list_keys(project.id, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    Ok(Json(KeyList {
        items: rows.into_iter().map(Key::from).collect(),
        next_cursor: next,
    }))
}

/// Create a key (editor); the response holds the plaintext once.
#[utoipa::path(post, path = "/api/v1/orgs/{org}/projects/{project}/keys", tag = "keys",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug")),
    request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_key(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let project = authorized_project(&st, &caller, &p, Need::ConfigWrite).await?;
    let name = super::orgs::display_name(body.name, "")?;
    if let Some(t) = body.expires_at {
        if t <= now_secs() {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                "expires_at must be in the future (Unix seconds)",
            ));
        }
    }
    let minted = MintedKey::generate().map_err(|_| ApiError::internal())?;
    let row = st
        .store
        .create_key(
            project.id,
            &new_key_id()?,
            &name,
            &minted.digest.to_string(),
            &minted.display_prefix,
            body.expires_at,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: row.into(),
            plaintext: minted.plaintext.expose().to_owned(),
        }),
    ))
}

/// Get a key (without its secret).
#[utoipa::path(get, path = "/api/v1/orgs/{org}/projects/{project}/keys/{key}", tag = "keys",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug"), ("key" = String, Path, description = "key id")),
    responses((status = 200, body = Key), (status = 404, body = ErrorBody)))]
pub async fn get_key(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<Json<Key>, ApiError> {
    let project = authorized_project(&st, &caller, &p, Need::ConfigRead).await?;
    let row = st.store.key(project.id, p.get("key")?.as_str()).await?;
    Ok(Json(row.into()))
}

/// Revoke a key (editor). Idempotent; the record stays, marked revoked.
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/projects/{project}/keys/{key}", tag = "keys",
    params(("org" = String, Path, description = "org slug"), ("project" = String, Path, description = "project slug"), ("key" = String, Path, description = "key id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<StatusCode, ApiError> {
    let project = authorized_project(&st, &caller, &p, Need::ConfigWrite).await?;
    st.store
        .revoke_key(project.id, p.get("key")?.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
