//! Orgs.

use serde::{Deserialize, Serialize};

use super::{map_write, now_secs, FkMeaning, Page, Store, StoreError};

/// An org row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OrgRow {
    pub id: i64,
    pub slug: String,
    pub display_name: String,
    pub created_at: i64,
}

const COLS: &str = "id, slug, display_name, created_at";

impl Store {
    /// Creates an org.
    pub async fn create_org(&self, slug: &str, display_name: &str) -> Result<OrgRow, StoreError> {
        sqlx::query_as::<_, OrgRow>(&format!(
            "INSERT INTO orgs (slug, display_name, created_at) VALUES ($1, $2, $3) RETURNING {COLS}"
        ))
        .bind(slug)
        .bind(display_name)
        .bind(now_secs())
        .fetch_one(self.pool())
        .await
        .map_err(|e| {
            map_write(
                e,
                "an org with this slug already exists",
                FkMeaning::Unknown(""),
            )
        })
    }

    /// Finds an org by slug.
    pub async fn org(&self, slug: &str) -> Result<OrgRow, StoreError> {
        sqlx::query_as::<_, OrgRow>(&format!("SELECT {COLS} FROM orgs WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("org"))
    }

    /// Lists orgs; `only` restricts to these slugs (None: all).
    pub async fn list_orgs(
        &self,
        page: Page,
        only: Option<&[String]>,
    ) -> Result<Vec<OrgRow>, StoreError> {
        let Some(only) = only else {
            return Ok(sqlx::query_as::<_, OrgRow>(&format!(
                "SELECT {COLS} FROM orgs WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(page.after)
            .bind(page.limit)
            .fetch_all(self.pool())
            .await?);
        };
        if only.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (0..only.len()).map(|i| format!("${}", i + 3)).collect();
        let sql = format!(
            "SELECT {COLS} FROM orgs WHERE id > $1 AND slug IN ({}) ORDER BY id LIMIT $2",
            placeholders.join(", ")
        );
        let mut q = sqlx::query_as::<_, OrgRow>(&sql)
            .bind(page.after)
            .bind(page.limit);
        for slug in only {
            q = q.bind(slug.clone());
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Deletes an org that holds nothing.
    pub async fn delete_org(&self, org_id: i64) -> Result<(), StoreError> {
        let res = sqlx::query("DELETE FROM orgs WHERE id = $1")
            .bind(org_id)
            .execute(self.pool())
            .await
            .map_err(|e| {
                map_write(
                    e,
                    "",
                    FkMeaning::InUse("the org still has projects, providers, routes or policies; delete them first"),
                )
            })?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound("org"));
        }
        Ok(())
    }
}
