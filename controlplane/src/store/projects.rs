//! Projects (tenants) inside an org.

use serde::{Deserialize, Serialize};

use super::org_scoped::OrgTable;
use super::{map_write, now_secs, FkMeaning, Page, Store, StoreError};

/// A project row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: i64,
    pub org_id: i64,
    pub slug: String,
    pub display_name: String,
    pub policy_id: Option<i64>,
    pub created_at: i64,
}

const TABLE: OrgTable = OrgTable {
    table: "projects",
    cols: COLS,
    what: "project",
};

const COLS: &str = "id, org_id, slug, display_name, policy_id, created_at";

impl Store {
    /// Creates a project.
    pub async fn create_project(
        &self,
        org_id: i64,
        slug: &str,
        display_name: &str,
        policy_id: Option<i64>,
    ) -> Result<ProjectRow, StoreError> {
        sqlx::query_as::<_, ProjectRow>(&format!(
            "INSERT INTO projects (org_id, slug, display_name, policy_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(display_name)
        .bind(policy_id)
        .bind(now_secs())
        .fetch_one(self.pool())
        .await
        .map_err(|e| {
            map_write(
                e,
                "a project with this slug already exists in the org",
                FkMeaning::Unknown("the policy does not exist"),
            )
        })
    }

    /// Changes a project's display name and policy.
    pub async fn update_project(
        &self,
        org_id: i64,
        slug: &str,
        display_name: &str,
        policy_id: Option<i64>,
    ) -> Result<ProjectRow, StoreError> {
        sqlx::query_as::<_, ProjectRow>(&format!(
            "UPDATE projects SET display_name = $3, policy_id = $4 \
             WHERE org_id = $1 AND slug = $2 RETURNING {COLS}"
        ))
        .bind(org_id)
        .bind(slug)
        .bind(display_name)
        .bind(policy_id)
        .fetch_optional(self.pool())
        .await
        .map_err(|e| map_write(e, "", FkMeaning::Unknown("the policy does not exist")))?
        .ok_or(StoreError::NotFound("project"))
    }

    /// Finds a project.
    pub async fn project(&self, org_id: i64, slug: &str) -> Result<ProjectRow, StoreError> {
        self.find_in_org(&TABLE, org_id, slug).await
    }

    /// Lists an org's projects.
    pub async fn list_projects(
        &self,
        org_id: i64,
        page: Page,
    ) -> Result<Vec<ProjectRow>, StoreError> {
        self.list_in_org(&TABLE, org_id, page).await
    }

    /// Deletes a project and its keys.
    pub async fn delete_project(&self, org_id: i64, slug: &str) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let id: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM projects WHERE org_id = $1 AND slug = $2")
                .bind(org_id)
                .bind(slug)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((id,)) = id else {
            return Err(StoreError::NotFound("project"));
        };
        sqlx::query("DELETE FROM virtual_keys WHERE project_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
