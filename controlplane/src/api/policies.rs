//! `/api/v1/orgs/{org}/policies`: limits a project is held to — allowed models, body cap,
//! requests and tokens per minute, monthly budget, in-flight cap — the provider endpoint
//! families beyond inference it may use (with the default provider for requests that name no
//! model), its response cache, and the guardrail rules run over the text its users send.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use gateway_schema::{CacheAllowance, CacheSpec, EndpointFamily, GuardrailRule, ModelPattern};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orgs::authorized_org;
use super::{list_type, next_cursor, ApiJson, ApiQuery, ListQuery};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::guards::slug::{self, PathSlugs};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::{PolicyFields, PolicyRow, StoreError};

/// The largest body cap a policy may set: the snapshot schema's limit (1 GiB).
const MAX_BODY_CAP: u64 = gateway_schema::MAX_REQUEST_BYTES_LIMIT;

/// A policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct Policy {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    #[serde(flatten)]
    #[schema(inline)]
    pub settings: PolicySettings,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// The settable fields of a policy (body of `PUT`); absent means unlimited.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct PolicySettings {
    /// Model names or `prefix*` patterns the project may use; absent: every routed model.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Request-body cap in bytes (1 to 1 GiB).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1073741824)]
    pub max_request_bytes: Option<u64>,
    /// Requests per minute.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Monthly budget in US cents.
    #[serde(default)]
    pub monthly_budget_cents: Option<u64>,
    /// Most requests of a project in flight at once on each gateway (429 `concurrency_limit`
    /// beyond it; streams count until they end).
    #[serde(default)]
    pub max_in_flight: Option<u64>,
    /// Provider endpoint families beyond inference: `files`, `uploads`, `batches`,
    /// `vector_stores`, `stored_responses`, `fine_tuning`, `message_batches`,
    /// `anthropic_files`. Objects are owned per project. Absent: inference only.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// Provider (slug, in this org) for `/v1` requests that name no model (files, batches).
    #[serde(default)]
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub default_provider: Option<String>,
    /// The exact-match response cache; absent: no cache.
    #[serde(default)]
    pub cache: Option<CachePolicy>,
    /// Guardrail rules, applied in order to the text users send (message contents, system
    /// prompts, inputs) before it goes upstream: at most 64, each with a unique `id`, exactly
    /// one of `detector` or `pattern`, and `action` `block` (400 `guardrail_blocked`) or
    /// `redact` (matches replaced by `[REDACTED:<id>]`). Absent or empty: none.
    #[serde(default)]
    #[schema(value_type = Option<Vec<GuardrailRuleDoc>>)]
    pub guardrails: Option<Vec<GuardrailRule>>,
}

/// A project's response cache (see the README's "Response cache").
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// Whether the cache answers requests (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a stored response is served, in seconds (1 to 604800; default 300).
    #[serde(default = "default_ttl")]
    #[schema(minimum = 1, maximum = 604800)]
    pub ttl_seconds: u64,
    /// Largest response body stored, in bytes (1 to 64 MiB; default 1 MiB).
    #[serde(default = "default_max_entry")]
    #[schema(minimum = 1, maximum = 67108864)]
    pub max_entry_bytes: u64,
    /// Non-deterministic parameters whose requests may still be cached: `temperature`
    /// (above 0), `n` (above 1), `tools` (tools or functions present). Default: none.
    #[serde(default)]
    pub allow: Vec<String>,
}

fn default_true() -> bool {
    true
}
fn default_ttl() -> u64 {
    gateway_schema::cache::DEFAULT_CACHE_TTL_SECONDS
}
fn default_max_entry() -> u64 {
    gateway_schema::cache::DEFAULT_CACHE_MAX_ENTRY_BYTES
}

/// The policy's cache as the snapshot's type (validated), stored as JSON.
fn cache_json(c: &CachePolicy) -> Result<String, ApiError> {
    let mut allow: Vec<CacheAllowance> = Vec::with_capacity(c.allow.len());
    for name in &c.allow {
        let a = serde_json::from_value::<CacheAllowance>(serde_json::Value::String(name.clone()))
            .map_err(|_| {
            ApiError::bad_request(
                "invalid_policy",
                "cache.allow: each entry must be one of temperature, n, tools",
            )
        })?;
        if !allow.contains(&a) {
            allow.push(a);
        }
    }
    let spec = CacheSpec {
        enabled: c.enabled,
        ttl_seconds: c.ttl_seconds,
        max_entry_bytes: c.max_entry_bytes,
        allow,
    };
    spec.check().map_err(|(field, reason)| {
        ApiError::bad_request("invalid_policy", format!("cache.{field} {reason}"))
    })?;
    serde_json::to_string(&spec).map_err(|_| ApiError::internal())
}

fn cache_view(json: &str) -> Result<CachePolicy, ApiError> {
    let spec: CacheSpec = serde_json::from_str(json)
        .map_err(|e| ApiError::from(StoreError::Corrupt(format!("policy cache: {e}"))))?;
    let allow = spec
        .allow
        .iter()
        .filter_map(|a| serde_json::to_value(a).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    Ok(CachePolicy {
        enabled: spec.enabled,
        ttl_seconds: spec.ttl_seconds,
        max_entry_bytes: spec.max_entry_bytes,
        allow,
    })
}

/// A guardrail rule (the OpenAPI view of `gateway_schema::GuardrailRule`).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // documentation only: requests deserialize into the schema crate's type
pub struct GuardrailRuleDoc {
    /// 1 to 64 characters of `[A-Za-z0-9_-]`, unique in the policy; named in errors, metrics
    /// and block records.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
    /// A built-in detector (set this or `pattern`).
    detector: Option<DetectorDoc>,
    /// A custom regular expression in Rust `regex` syntax (linear-time; at most 1024 bytes,
    /// compiled size limited). Set this or `detector`.
    #[schema(max_length = 1024)]
    pattern: Option<String>,
    /// What the rule does on a match.
    action: ActionDoc,
}

/// Built-in detectors.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum DetectorDoc {
    OpenaiKey,
    AnthropicKey,
    AwsAccessKey,
    GithubToken,
    CardNumber,
    Email,
    Iban,
}

/// Guardrail actions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum ActionDoc {
    Block,
    Redact,
}

list_type!(PolicyList, Policy);

/// Body of `POST .../policies`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    /// Identifier (a slug).
    #[schema(
        pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        min_length = 1,
        max_length = 63
    )]
    pub slug: String,
    #[serde(flatten)]
    #[schema(inline)]
    pub settings: PolicySettings,
}

fn positive(field: &str, v: Option<u64>, max: u64) -> Result<Option<i64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if n >= 1 && n <= max => Ok(i64::try_from(n).ok()),
        Some(_) => Err(ApiError::bad_request(
            "invalid_policy",
            format!("{field} must be between 1 and {max}"),
        )),
    }
}

fn fields(s: &PolicySettings) -> Result<PolicyFields, ApiError> {
    let allowed_models = match &s.allowed_models {
        None => None,
        Some(list) => {
            if list.len() > 1000 {
                return Err(ApiError::bad_request(
                    "invalid_policy",
                    "allowed_models holds at most 1000 patterns",
                ));
            }
            for m in list {
                ModelPattern::try_from(m.clone()).map_err(|e| {
                    ApiError::bad_request("invalid_policy", format!("allowed_models: {e}"))
                })?;
            }
            Some(serde_json::to_string(list).map_err(|_| ApiError::internal())?)
        }
    };
    let endpoints = match &s.endpoints {
        None => None,
        Some(list) => {
            let mut families: Vec<EndpointFamily> = Vec::with_capacity(list.len());
            for name in list {
                let f = serde_json::from_value::<EndpointFamily>(serde_json::Value::String(
                    name.clone(),
                ))
                .map_err(|_| {
                    ApiError::bad_request(
                        "invalid_policy",
                        "endpoints: each entry must be one of files, uploads, batches, \
                         vector_stores, stored_responses, fine_tuning, message_batches, \
                         anthropic_files",
                    )
                })?;
                if !families.contains(&f) {
                    families.push(f);
                }
            }
            Some(serde_json::to_string(&families).map_err(|_| ApiError::internal())?)
        }
    };
    let default_provider = match &s.default_provider {
        None => None,
        Some(p) => Some(
            gateway_schema::Slug::parse(p)
                .map_err(|e| {
                    ApiError::bad_request("invalid_policy", format!("default_provider: {e}"))
                })?
                .to_string(),
        ),
    };
    let cache = s.cache.as_ref().map(cache_json).transpose()?;
    let guardrails = match s.guardrails.as_deref() {
        None | Some([]) => None,
        Some(rules) => {
            let mut problems = Vec::new();
            gateway_schema::guardrails::validate_rules(rules, &mut |field, reason| {
                problems.push(format!("{field}: {reason}"))
            });
            if !problems.is_empty() {
                return Err(ApiError::bad_request("invalid_policy", problems.join("; ")));
            }
            Some(serde_json::to_string(rules).map_err(|_| ApiError::internal())?)
        }
    };
    let big = i64::MAX as u64;
    Ok(PolicyFields {
        cache,
        endpoints,
        guardrails,
        default_provider,
        allowed_models,
        max_request_bytes: positive("max_request_bytes", s.max_request_bytes, MAX_BODY_CAP)?,
        requests_per_minute: positive("requests_per_minute", s.requests_per_minute, big)?,
        tokens_per_minute: positive("tokens_per_minute", s.tokens_per_minute, big)?,
        monthly_budget_cents: positive("monthly_budget_cents", s.monthly_budget_cents, big)?,
        max_in_flight: positive("max_in_flight", s.max_in_flight, big)?,
    })
}

/// A default provider must be one of the org's providers (when it is deleted later, the
/// snapshot drops it and the gateway falls back as its README says).
async fn check_default_provider(
    st: &AppState,
    org_id: i64,
    f: &PolicyFields,
) -> Result<(), ApiError> {
    let Some(name) = f.default_provider.as_deref() else {
        return Ok(());
    };
    match st.store.provider(org_id, name).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(ApiError::bad_request(
            "unknown_provider",
            "default_provider names no provider of this org",
        )),
        Err(e) => Err(e.into()),
    }
}

fn view(r: PolicyRow) -> Result<Policy, ApiError> {
    let allowed_models = match r.allowed_models {
        None => None,
        Some(j) => Some(serde_json::from_str(&j).map_err(|e| {
            ApiError::from(StoreError::Corrupt(format!("policy allowed_models: {e}")))
        })?),
    };
    let endpoints =
        match r.endpoints {
            None => None,
            Some(j) => Some(serde_json::from_str(&j).map_err(|e| {
                ApiError::from(StoreError::Corrupt(format!("policy endpoints: {e}")))
            })?),
        };
    let cache = r.cache.as_deref().map(cache_view).transpose()?;
    let guardrails =
        match r.guardrails {
            None => None,
            Some(j) => Some(serde_json::from_str(&j).map_err(|e| {
                ApiError::from(StoreError::Corrupt(format!("policy guardrails: {e}")))
            })?),
        };
    let u = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Ok(Policy {
        slug: r.slug,
        settings: PolicySettings {
            allowed_models,
            max_request_bytes: u(r.max_request_bytes),
            requests_per_minute: u(r.requests_per_minute),
            tokens_per_minute: u(r.tokens_per_minute),
            monthly_budget_cents: u(r.monthly_budget_cents),
            max_in_flight: u(r.max_in_flight),
            endpoints,
            default_provider: r.default_provider,
            cache,
            guardrails,
        },
        created_at: r.created_at,
    })
}

/// List an org's policies.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/policies", tag = "policies",
    params(("org" = String, Path, description = "org slug"), ListQuery),
    responses((status = 200, body = PolicyList), (status = 404, body = ErrorBody)))]
pub async fn list_policies(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<PolicyList>, ApiError> {
    let page = q.page()?;
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let rows = st.store.list_policies(org.id, page).await?;
    let next = next_cursor(page, rows.iter().map(|r| r.id));
    let items = rows.into_iter().map(view).collect::<Result<_, _>>()?;
    Ok(Json(PolicyList {
        items,
        next_cursor: next,
    }))
}

/// Create a policy (editor).
#[utoipa::path(post, path = "/api/v1/orgs/{org}/policies", tag = "policies",
    params(("org" = String, Path, description = "org slug")), request_body = CreatePolicy,
    responses((status = 201, body = Policy), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_policy(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<CreatePolicy>,
) -> Result<(StatusCode, Json<Policy>), ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let slug = slug::parse("slug", &body.slug)?;
    let f = fields(&body.settings)?;
    check_default_provider(&st, org.id, &f).await?;
    let row = st.store.create_policy(org.id, slug.as_str(), &f).await?;
    Ok((StatusCode::CREATED, Json(view(row)?)))
}

/// Get a policy.
#[utoipa::path(get, path = "/api/v1/orgs/{org}/policies/{policy}", tag = "policies",
    params(("org" = String, Path, description = "org slug"), ("policy" = String, Path, description = "policy slug")),
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<Json<Policy>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigRead).await?;
    let row = st.store.policy(org.id, p.get("policy")?.as_str()).await?;
    Ok(Json(view(row)?))
}

/// Replace a policy's settings (editor).
#[utoipa::path(put, path = "/api/v1/orgs/{org}/policies/{policy}", tag = "policies",
    params(("org" = String, Path, description = "org slug"), ("policy" = String, Path, description = "policy slug")),
    request_body = PolicySettings,
    responses((status = 200, body = Policy), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_policy(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
    ApiJson(body): ApiJson<PolicySettings>,
) -> Result<Json<Policy>, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    let f = fields(&body)?;
    check_default_provider(&st, org.id, &f).await?;
    let row = st
        .store
        .update_policy(org.id, p.get("policy")?.as_str(), &f)
        .await?;
    Ok(Json(view(row)?))
}

/// Delete a policy no project uses (editor).
#[utoipa::path(delete, path = "/api/v1/orgs/{org}/policies/{policy}", tag = "policies",
    params(("org" = String, Path, description = "org slug"), ("policy" = String, Path, description = "policy slug")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_policy(
    State(st): State<AppState>,
    caller: Caller,
    p: PathSlugs,
) -> Result<StatusCode, ApiError> {
    let org = authorized_org(&st, &caller, &p, Need::ConfigWrite).await?;
    st.store
        .delete_policy(org.id, p.get("policy")?.as_str())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
