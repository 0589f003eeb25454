//! Policies: allowed models, body cap, request/token rates and budget of the projects using them.

use serde::{Deserialize, Serialize};

use super::org_scoped::OrgTable;
use super::{map_write, now_secs, FkMeaning, Page, Store, StoreError};

/// A policy row. `allowed_models` is a JSON array of model patterns, or NULL for all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PolicyRow {
    pub id: i64,
    pub org_id: i64,
    pub slug: String,
    pub allowed_models: Option<String>,
    pub max_request_bytes: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub monthly_budget_cents: Option<i64>,
    pub created_at: i64,
    /// Absent in backups written before the column existed.
    #[serde(default)]
    pub max_in_flight: Option<i64>,
    /// JSON array of endpoint family names, or NULL for none (inference only).
    #[serde(default)]
    pub endpoints: Option<String>,
    /// Provider slug for `/v1` requests that name no model, or NULL.
    #[serde(default)]
    pub default_provider: Option<String>,
    /// The response cache as a JSON object, or NULL for none.
    #[serde(default)]
    pub cache: Option<String>,
    /// JSON array of guardrail rules, or NULL for none.
    #[serde(default)]
    pub guardrails: Option<String>,
}

/// The settable fields of a policy.
#[derive(Debug, Clone, Default)]
pub struct PolicyFields {
    pub allowed_models: Option<String>,
    pub max_request_bytes: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub tokens_per_minute: Option<i64>,
    pub monthly_budget_cents: Option<i64>,
    pub max_in_flight: Option<i64>,
    pub endpoints: Option<String>,
    pub default_provider: Option<String>,
    pub cache: Option<String>,
    pub guardrails: Option<String>,
}

const TABLE: OrgTable = OrgTable {
    table: "policies",
    cols: COLS,
    what: "policy",
};

const COLS: &str = "id, org_id, slug, allowed_models, max_request_bytes, requests_per_minute, \
                    tokens_per_minute, monthly_budget_cents, created_at, max_in_flight, \
                    endpoints, default_provider, cache, guardrails";

impl Store {
    /// Creates a policy.
    pub async fn create_policy(
        &self,
        org_id: i64,
        slug: &str,
        f: &PolicyFields,
    ) -> Result<PolicyRow, StoreError> {
        sqlx::query_as::<_, PolicyRow>(&format!(
            "INSERT INTO policies (org_id, slug, allowed_models, max_request_bytes, \
             requests_per_minute, tokens_per_minute, monthly_budget_cents, created_at, \
             max_in_flight, endpoints, default_provider, cache, guardrails) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(f.allowed_models.clone())
        .bind(f.max_request_bytes)
        .bind(f.requests_per_minute)
        .bind(f.tokens_per_minute)
        .bind(f.monthly_budget_cents)
        .bind(now_secs())
        .bind(f.max_in_flight)
        .bind(f.endpoints.clone())
        .bind(f.default_provider.clone())
        .bind(f.cache.clone())
        .bind(f.guardrails.clone())
        .fetch_one(self.pool())
        .await
        .map_err(|e| {
            map_write(
                e,
                "a policy with this slug already exists in the org",
                FkMeaning::Unknown("org"),
            )
        })
    }

    /// Replaces a policy's fields.
    pub async fn update_policy(
        &self,
        org_id: i64,
        slug: &str,
        f: &PolicyFields,
    ) -> Result<PolicyRow, StoreError> {
        sqlx::query_as::<_, PolicyRow>(&format!(
            "UPDATE policies SET allowed_models = $3, max_request_bytes = $4, \
             requests_per_minute = $5, tokens_per_minute = $6, monthly_budget_cents = $7, \
             max_in_flight = $8, endpoints = $9, default_provider = $10, cache = $11, \
             guardrails = $12 \
             WHERE org_id = $1 AND slug = $2 RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(f.allowed_models.clone())
        .bind(f.max_request_bytes)
        .bind(f.requests_per_minute)
        .bind(f.tokens_per_minute)
        .bind(f.monthly_budget_cents)
        .bind(f.max_in_flight)
        .bind(f.endpoints.clone())
        .bind(f.default_provider.clone())
        .bind(f.cache.clone())
        .bind(f.guardrails.clone())
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("policy"))
    }

    /// Finds a policy.
    pub async fn policy(&self, org_id: i64, slug: &str) -> Result<PolicyRow, StoreError> {
        self.find_in_org(&TABLE, org_id, slug).await
    }

    /// Finds a policy's slug by id.
    pub async fn policy_slug(&self, id: i64) -> Result<String, StoreError> {
        self.slug_by_id(&TABLE, id).await
    }

    /// Lists an org's policies.
    pub async fn list_policies(
        &self,
        org_id: i64,
        page: Page,
    ) -> Result<Vec<PolicyRow>, StoreError> {
        self.list_in_org(&TABLE, org_id, page).await
    }

    /// Deletes a policy no project uses.
    pub async fn delete_policy(&self, org_id: i64, slug: &str) -> Result<(), StoreError> {
        self.delete_in_org(
            &TABLE,
            org_id,
            slug,
            Some("the policy is used by a project; detach it first"),
        )
        .await
    }
}
