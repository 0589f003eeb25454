//! The cache-hit table: idempotent batch insert, savings summed like usage, retention purge.

use gateway_schema::CacheHitRecord;

use super::usage::{group_sql, i, GroupSql};
use super::{Store, StoreError, UsageFilter, UsageGrouping};

/// One stored hit (as backed up and restored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct CacheHitRow {
    pub id: String,
    pub request_id: String,
    pub source_request_id: String,
    pub at_ms: i64,
    pub org: String,
    pub project: String,
    pub key_id: Option<String>,
    pub provider: String,
    pub route: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_saved_pico: i64,
    pub priced: i64,
}

/// One aggregate of savings, grouped like [`super::UsageRow`].
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SavingsRow {
    /// Project (`""` when not grouped by it).
    pub project: String,
    /// Model (`""` when not grouped by it or unknown).
    pub model: String,
    /// Days since the Unix epoch (`-1` when not grouped by day).
    pub day: i64,
    /// Hits.
    pub hits: i64,
    /// Uncached input tokens saved.
    pub input_tokens: i64,
    /// Output tokens saved.
    pub output_tokens: i64,
    /// Prompt-cache read tokens saved.
    pub cache_read_tokens: i64,
    /// Prompt-cache write tokens saved.
    pub cache_write_tokens: i64,
    /// Cost saved, pico-units.
    pub cost_saved_pico: i64,
}

const INSERT: &str = "INSERT INTO cache_hits (id, request_id, source_request_id, at_ms, org, \
    project, key_id, provider, route, model, input_tokens, output_tokens, cache_read_tokens, \
    cache_write_tokens, cost_saved_pico, priced) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
    $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (id) DO NOTHING";

impl Store {
    /// Inserts a batch in one transaction; a hit whose `id` is already stored is skipped.
    /// Returns how many were new.
    pub async fn insert_cache_hits(&self, records: &[CacheHitRecord]) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut inserted = 0;
        for r in records {
            let res = sqlx::query(INSERT)
                .bind(r.id.clone())
                .bind(r.request_id.clone())
                .bind(r.source_request_id.clone())
                .bind(r.at_ms)
                .bind(r.org.clone())
                .bind(r.project.clone())
                .bind(r.key_id.clone())
                .bind(r.provider.clone())
                .bind(r.route.clone())
                .bind(r.model.clone().unwrap_or_default())
                .bind(i(r.input_tokens))
                .bind(i(r.output_tokens))
                .bind(i(r.cache_read_tokens))
                .bind(i(r.cache_write_tokens))
                .bind(i(r.cost_saved_pico.unwrap_or(0)))
                .bind(i64::from(r.cost_saved_pico.is_some()))
                .execute(&mut *tx)
                .await?;
            inserted += res.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// Restores backed-up hits (ids kept; duplicates skipped).
    pub(crate) async fn restore_cache_hits(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rows: &[CacheHitRow],
    ) -> Result<(), StoreError> {
        for r in rows {
            sqlx::query(INSERT)
                .bind(r.id.clone())
                .bind(r.request_id.clone())
                .bind(r.source_request_id.clone())
                .bind(r.at_ms)
                .bind(r.org.clone())
                .bind(r.project.clone())
                .bind(r.key_id.clone())
                .bind(r.provider.clone())
                .bind(r.route.clone())
                .bind(r.model.clone())
                .bind(r.input_tokens)
                .bind(r.output_tokens)
                .bind(r.cache_read_tokens)
                .bind(r.cache_write_tokens)
                .bind(r.cost_saved_pico)
                .bind(r.priced)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Every stored hit, oldest first (for backups).
    pub async fn all_cache_hits(&self) -> Result<Vec<CacheHitRow>, StoreError> {
        Ok(
            sqlx::query_as::<_, CacheHitRow>("SELECT * FROM cache_hits ORDER BY at_ms, id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Sums an org's savings, filtered and grouped like [`Store::query_usage`].
    pub async fn query_savings(
        &self,
        org: &str,
        f: &UsageFilter,
        g: UsageGrouping,
    ) -> Result<Vec<SavingsRow>, StoreError> {
        let GroupSql {
            project,
            model,
            day,
            group_by,
        } = group_sql(g);
        let sql = format!(
            "SELECT {project} AS project, {model} AS model, {day} AS day, \
             CAST(COUNT(*) AS BIGINT) AS hits, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(cache_read_tokens), 0) AS BIGINT) AS cache_read_tokens, \
             CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT) AS cache_write_tokens, \
             CAST(COALESCE(SUM(cost_saved_pico), 0) AS BIGINT) AS cost_saved_pico \
             FROM cache_hits WHERE org = $1 AND at_ms >= $2 AND at_ms < $3 \
             AND ($4 = '' OR project = $4) AND ($5 = '' OR model = $5) {group_by}"
        );
        Ok(sqlx::query_as::<_, SavingsRow>(&sql)
            .bind(org.to_owned())
            .bind(f.from_ms.unwrap_or(0))
            .bind(f.to_ms.unwrap_or(i64::MAX))
            .bind(f.project.clone().unwrap_or_default())
            .bind(f.model.clone().unwrap_or_default())
            .fetch_all(self.pool())
            .await?)
    }

    /// Deletes hits older than `before_ms`; returns how many.
    pub async fn purge_cache_hits(&self, before_ms: i64) -> Result<u64, StoreError> {
        let res = sqlx::query("DELETE FROM cache_hits WHERE at_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected())
    }
}
