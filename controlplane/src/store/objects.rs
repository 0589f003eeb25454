//! The provider-object ownership table: idempotent batch insert of gateways' reports
//! (first owner wins, deletions are tombstones) and the paged read gateways seed from.

use gateway_schema::{ObjectRecord, OwnedObject};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One row, as stored (and as backed up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProviderObjectRow {
    /// The cursor (insertion order).
    pub id: i64,
    /// Org slug.
    pub org: String,
    /// Provider name.
    pub provider: String,
    /// The provider's object id.
    pub object_id: String,
    /// Owning project's slug.
    pub project: String,
    /// Object kind.
    pub kind: String,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Deletion time (a tombstone), Unix ms.
    pub deleted_at_ms: Option<i64>,
}

/// Filters of the paged read.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    /// Only this org.
    pub org: Option<String>,
    /// Only this project (with `org`).
    pub project: Option<String>,
}

/// What one ingest batch changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectIngest {
    /// Creations and deletions that changed a row.
    pub stored: u64,
    /// Records already reflected (a retried batch, a second report of the same object).
    pub duplicates: u64,
}

impl Store {
    /// Applies a batch in one transaction. A creation inserts the object unless its
    /// `(org, provider, object_id)` is known (the first owner wins); a deletion marks the
    /// owner's object deleted, or inserts it deleted when its creation has not arrived yet (so
    /// that creation cannot revive it). Another project's deletion of an object changes nothing.
    pub async fn insert_objects(
        &self,
        records: &[ObjectRecord],
    ) -> Result<ObjectIngest, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut out = ObjectIngest::default();
        for r in records {
            let res = if r.deleted {
                sqlx::query(
                    "INSERT INTO provider_objects (org, provider, object_id, project, kind, \
                     created_at_ms, deleted_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6) \
                     ON CONFLICT (org, provider, object_id) DO UPDATE SET deleted_at_ms = \
                     excluded.deleted_at_ms WHERE provider_objects.project = excluded.project \
                     AND provider_objects.deleted_at_ms IS NULL",
                )
            } else {
                sqlx::query(
                    "INSERT INTO provider_objects (org, provider, object_id, project, kind, \
                     created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (org, provider, object_id) DO NOTHING",
                )
            }
            .bind(r.org.clone())
            .bind(r.provider.clone())
            .bind(r.object_id.clone())
            .bind(r.project.clone())
            .bind(r.kind.clone())
            .bind(r.at_ms)
            .execute(&mut *tx)
            .await?;
            if res.rows_affected() > 0 {
                out.stored += 1;
            } else {
                out.duplicates += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Live objects with a cursor above `after`, oldest first, at most `limit`; with the
    /// cursor of the last one returned.
    pub async fn list_objects(
        &self,
        f: &ObjectFilter,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<OwnedObject>, Option<i64>), StoreError> {
        let rows = sqlx::query_as::<_, ProviderObjectRow>(
            "SELECT id, org, provider, object_id, project, kind, created_at_ms, deleted_at_ms \
             FROM provider_objects WHERE id > $1 AND deleted_at_ms IS NULL \
             AND ($2 = '' OR org = $2) AND ($3 = '' OR project = $3) ORDER BY id LIMIT $4",
        )
        .bind(after)
        .bind(f.org.clone().unwrap_or_default())
        .bind(f.project.clone().unwrap_or_default())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let last = rows.last().map(|r| r.id);
        let objects = rows
            .into_iter()
            .map(|r| OwnedObject {
                org: r.org,
                project: r.project,
                provider: r.provider,
                kind: r.kind,
                object_id: r.object_id,
                created_at_ms: r.created_at_ms,
            })
            .collect();
        Ok((objects, last))
    }
}
