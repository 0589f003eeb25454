//! What snapshot compilation reads (the whole config, in one read transaction), the compiled
//! snapshots themselves (newest wins across replicas), and the gateways' status reports.

use serde::{Deserialize, Serialize};

use super::{
    Backend, KeyRow, OrgRow, PolicyRow, ProjectRow, ProviderRow, RouteRow, Store, StoreError,
};

/// Every row a snapshot is compiled from, read at one moment.
#[derive(Debug, Default)]
pub struct ConfigRows {
    pub orgs: Vec<OrgRow>,
    pub providers: Vec<ProviderRow>,
    pub routes: Vec<RouteRow>,
    pub policies: Vec<PolicyRow>,
    pub projects: Vec<ProjectRow>,
    pub keys: Vec<KeyRow>,
}

/// The newest stored snapshot's identity.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SnapshotHead {
    pub version: i64,
    pub content_sha256: String,
}

/// A gateway's last status report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct GatewayRow {
    /// The gateway's id.
    pub id: String,
    /// The proxy address it reports.
    pub address: String,
    /// Where its last report came from.
    pub source_addr: String,
    /// The snapshot version it has applied (0: none).
    pub version: i64,
    /// JSON array of provider key references it could not resolve (never values).
    pub unresolved: String,
    /// Its last snapshot refusal or connection error.
    pub last_error: Option<String>,
    /// When it was last heard from (Unix milliseconds).
    pub last_seen_ms: i64,
}

async fn all<T>(tx: &mut sqlx::AnyConnection, sql: &str) -> Result<Vec<T>, StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    Ok(sqlx::query_as::<_, T>(sql).fetch_all(&mut *tx).await?)
}

impl Store {
    /// Reads everything a snapshot needs in one transaction (repeatable read on Postgres), so
    /// a compile never sees half of a concurrent change.
    pub async fn config_rows(&self) -> Result<ConfigRows, StoreError> {
        let mut tx = self.pool().begin().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let rows = ConfigRows {
            orgs: all(&mut tx, "SELECT id, slug, display_name, created_at FROM orgs ORDER BY id")
                .await?,
            providers: all(
                &mut tx,
                "SELECT id, org_id, slug, kind, base_url, api_key_ref, created_at FROM providers ORDER BY id",
            )
            .await?,
            routes: all(
                &mut tx,
                "SELECT id, org_id, slug, model, provider_id, upstream_model, created_at FROM routes ORDER BY id",
            )
            .await?,
            policies: all(
                &mut tx,
                "SELECT id, org_id, slug, allowed_models, max_request_bytes, requests_per_minute, \
                 tokens_per_minute, monthly_budget_cents, created_at, max_in_flight, endpoints, \
                 default_provider, cache, guardrails FROM policies ORDER BY id",
            )
            .await?,
            projects: all(
                &mut tx,
                "SELECT id, org_id, slug, display_name, policy_id, created_at FROM projects ORDER BY id",
            )
            .await?,
            keys: all(
                &mut tx,
                "SELECT id, key_id, project_id, name, digest, prefix, created_at, expires_at, \
                 revoked_at FROM virtual_keys ORDER BY id",
            )
            .await?,
        };
        tx.commit().await?;
        Ok(rows)
    }

    /// The newest stored snapshot, if any.
    pub async fn snapshot_head(&self) -> Result<Option<SnapshotHead>, StoreError> {
        Ok(sqlx::query_as::<_, SnapshotHead>(
            "SELECT version, content_sha256 FROM snapshots ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The signed envelope of a stored snapshot.
    pub async fn snapshot_envelope(&self, version: i64) -> Result<String, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT envelope FROM snapshots WHERE version = $1")
                .bind(version)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| r.0).ok_or(StoreError::NotFound("snapshot"))
    }

    /// Stores a snapshot; `Ok(false)` when another replica already took this version.
    pub async fn insert_snapshot(
        &self,
        version: i64,
        content_sha256: &str,
        envelope: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "INSERT INTO snapshots (version, content_sha256, envelope, created_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(version)
        .bind(content_sha256)
        .bind(envelope)
        .bind(super::now_millis())
        .execute(self.pool())
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes all but the newest `keep` snapshots.
    pub async fn prune_snapshots(&self, keep: i64) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM snapshots WHERE version NOT IN \
             (SELECT version FROM snapshots ORDER BY version DESC LIMIT $1)",
        )
        .bind(keep)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a gateway's status report (insert or replace).
    pub async fn upsert_gateway(&self, g: &GatewayRow) -> Result<(), StoreError> {
        self.save_gateway(
            g,
            "address = excluded.address, source_addr = excluded.source_addr, \
             version = excluded.version, unresolved = excluded.unresolved, \
             last_error = excluded.last_error, last_seen_ms = excluded.last_seen_ms",
        )
        .await
    }

    /// Records that a gateway opened its stream (keeps what its last report said).
    pub async fn touch_gateway(&self, g: &GatewayRow) -> Result<(), StoreError> {
        self.save_gateway(
            g,
            "source_addr = excluded.source_addr, version = excluded.version, \
             last_seen_ms = excluded.last_seen_ms",
        )
        .await
    }

    /// Inserts `g`, or on an existing id applies `on_conflict` (a fixed `SET` list).
    async fn save_gateway(&self, g: &GatewayRow, on_conflict: &str) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO gateways (id, address, source_addr, version, unresolved, last_error, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET {on_conflict}"
        ))
        .bind(&g.id)
        .bind(&g.address)
        .bind(&g.source_addr)
        .bind(g.version)
        .bind(&g.unresolved)
        .bind(g.last_error.clone())
        .bind(g.last_seen_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Gateways heard from at or after `since_ms`, by id; older records are deleted.
    pub async fn list_gateways(&self, since_ms: i64) -> Result<Vec<GatewayRow>, StoreError> {
        sqlx::query("DELETE FROM gateways WHERE last_seen_ms < $1")
            .bind(since_ms)
            .execute(self.pool())
            .await?;
        Ok(sqlx::query_as::<_, GatewayRow>(
            "SELECT id, address, source_addr, version, unresolved, last_error, last_seen_ms \
             FROM gateways ORDER BY id",
        )
        .fetch_all(self.pool())
        .await?)
    }
}
