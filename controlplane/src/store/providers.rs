//! Providers: upstream LLM APIs, holding only a reference to their key.

use serde::{Deserialize, Serialize};

use super::org_scoped::OrgTable;
use super::{map_write, now_secs, FkMeaning, Page, Store, StoreError};

/// A provider row. `api_key_ref` is `env:NAME` or `file:/path`, never a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProviderRow {
    pub id: i64,
    pub org_id: i64,
    pub slug: String,
    pub kind: String,
    pub base_url: String,
    pub api_key_ref: Option<String>,
    pub created_at: i64,
}

const TABLE: OrgTable = OrgTable {
    table: "providers",
    cols: COLS,
    what: "provider",
};

const COLS: &str = "id, org_id, slug, kind, base_url, api_key_ref, created_at";

impl Store {
    /// Creates a provider.
    pub async fn create_provider(
        &self,
        org_id: i64,
        slug: &str,
        kind: &str,
        base_url: &str,
        api_key_ref: Option<&str>,
    ) -> Result<ProviderRow, StoreError> {
        sqlx::query_as::<_, ProviderRow>(&format!(
            "INSERT INTO providers (org_id, slug, kind, base_url, api_key_ref, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(kind)
        .bind(base_url)
        .bind(api_key_ref)
        .bind(now_secs())
        .fetch_one(self.pool())
        .await
        .map_err(|e| {
            map_write(
                e,
                "a provider with this slug already exists in the org",
                FkMeaning::Unknown("org"),
            )
        })
    }

    /// Replaces a provider's settings.
    pub async fn update_provider(
        &self,
        org_id: i64,
        slug: &str,
        kind: &str,
        base_url: &str,
        api_key_ref: Option<&str>,
    ) -> Result<ProviderRow, StoreError> {
        sqlx::query_as::<_, ProviderRow>(&format!(
            "UPDATE providers SET kind = $3, base_url = $4, api_key_ref = $5 \
             WHERE org_id = $1 AND slug = $2 RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(kind)
        .bind(base_url)
        .bind(api_key_ref)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("provider"))
    }

    /// Finds a provider.
    pub async fn provider(&self, org_id: i64, slug: &str) -> Result<ProviderRow, StoreError> {
        self.find_in_org(&TABLE, org_id, slug).await
    }

    /// Finds a provider's slug by id.
    pub async fn provider_slug(&self, id: i64) -> Result<String, StoreError> {
        self.slug_by_id(&TABLE, id).await
    }

    /// Lists an org's providers.
    pub async fn list_providers(
        &self,
        org_id: i64,
        page: Page,
    ) -> Result<Vec<ProviderRow>, StoreError> {
        self.list_in_org(&TABLE, org_id, page).await
    }

    /// Deletes a provider no route uses.
    pub async fn delete_provider(&self, org_id: i64, slug: &str) -> Result<(), StoreError> {
        self.delete_in_org(
            &TABLE,
            org_id,
            slug,
            Some("the provider is used by a route; delete the route first"),
        )
        .await
    }
}
