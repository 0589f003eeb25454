//! Virtual keys: only the SHA-256 digest and a display prefix are stored.

use serde::{Deserialize, Serialize};

use super::{map_write, now_secs, FkMeaning, Page, Store, StoreError};

/// A virtual key row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct KeyRow {
    pub id: i64,
    pub key_id: String,
    pub project_id: i64,
    pub name: String,
    pub digest: String,
    pub prefix: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const COLS: &str =
    "id, key_id, project_id, name, digest, prefix, created_at, expires_at, revoked_at";

impl Store {
    /// Stores a new key's digest.
    pub async fn create_key(
        &self,
        project_id: i64,
        key_id: &str,
        name: &str,
        digest: &str,
        prefix: &str,
        expires_at: Option<i64>,
    ) -> Result<KeyRow, StoreError> {
        sqlx::query_as::<_, KeyRow>(&format!(
            "INSERT INTO virtual_keys (key_id, project_id, name, digest, prefix, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLS}"
        ))
        .bind(key_id)
        .bind(project_id)
        .bind(name)
        .bind(digest)
        .bind(prefix)
        .bind(now_secs())
        .bind(expires_at)
        .fetch_one(self.pool())
        .await
        .map_err(|e| map_write(e, "key collision; retry", FkMeaning::Unknown("project")))
    }

    /// Finds a key of a project.
    pub async fn key(&self, project_id: i64, key_id: &str) -> Result<KeyRow, StoreError> {
        sqlx::query_as::<_, KeyRow>(&format!(
            "SELECT {COLS} FROM virtual_keys WHERE project_id = $1 AND key_id = $2"
        ))
        .bind(project_id)
        .bind(key_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound("key"))
    }

    /// Lists a project's keys.
    pub async fn list_keys(&self, project_id: i64, page: Page) -> Result<Vec<KeyRow>, StoreError> {
        Ok(sqlx::query_as::<_, KeyRow>(&format!(
            "SELECT {COLS} FROM virtual_keys WHERE project_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(project_id)
        .bind(page.after)
        .bind(page.limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Revokes a key (idempotent: the first revocation time is kept).
    pub async fn revoke_key(&self, project_id: i64, key_id: &str) -> Result<(), StoreError> {
        let res = sqlx::query(
            "UPDATE virtual_keys SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE project_id = $1 AND key_id = $2",
        )
        .bind(project_id)
        .bind(key_id)
        .bind(now_secs())
        .execute(self.pool())
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound("key"));
        }
        Ok(())
    }
}
