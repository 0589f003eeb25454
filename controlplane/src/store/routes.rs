//! Model routes: which provider serves a model name.

use serde::{Deserialize, Serialize};

use super::org_scoped::OrgTable;
use super::{map_write, now_secs, FkMeaning, Page, Store, StoreError};

/// A route row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RouteRow {
    pub id: i64,
    pub org_id: i64,
    pub slug: String,
    pub model: String,
    pub provider_id: i64,
    pub upstream_model: Option<String>,
    pub created_at: i64,
}

const TABLE: OrgTable = OrgTable {
    table: "routes",
    cols: COLS,
    what: "route",
};

const COLS: &str = "id, org_id, slug, model, provider_id, upstream_model, created_at";

impl Store {
    /// Creates a route.
    pub async fn create_route(
        &self,
        org_id: i64,
        slug: &str,
        model: &str,
        provider_id: i64,
        upstream_model: Option<&str>,
    ) -> Result<RouteRow, StoreError> {
        sqlx::query_as::<_, RouteRow>(&format!(
            "INSERT INTO routes (org_id, slug, model, provider_id, upstream_model, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(model)
        .bind(provider_id)
        .bind(upstream_model)
        .bind(now_secs())
        .fetch_one(self.pool())
        .await
        .map_err(|e| {
            map_write(
                e,
                "a route with this slug already exists in the org",
                FkMeaning::Unknown("the provider does not exist"),
            )
        })
    }

    /// Finds a route.
    pub async fn route(&self, org_id: i64, slug: &str) -> Result<RouteRow, StoreError> {
        self.find_in_org(&TABLE, org_id, slug).await
    }

    /// Lists an org's routes, in match order.
    pub async fn list_routes(&self, org_id: i64, page: Page) -> Result<Vec<RouteRow>, StoreError> {
        self.list_in_org(&TABLE, org_id, page).await
    }

    /// Deletes a route.
    pub async fn delete_route(&self, org_id: i64, slug: &str) -> Result<(), StoreError> {
        self.delete_in_org(&TABLE, org_id, slug, None).await
    }
}
