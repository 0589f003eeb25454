//! The usage table: idempotent batch insert, aggregate queries, retention purge.

use gateway_schema::UsageRecord;

use super::{Store, StoreError};

/// Filters of a usage query (all optional but the org).
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    /// From this time (Unix ms, inclusive).
    pub from_ms: Option<i64>,
    /// Until this time (Unix ms, exclusive).
    pub to_ms: Option<i64>,
    /// One project.
    pub project: Option<String>,
    /// One model, exactly.
    pub model: Option<String>,
}

/// Which columns to group by.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageGrouping {
    /// Per project.
    pub project: bool,
    /// Per model.
    pub model: bool,
    /// Per UTC day.
    pub day: bool,
}

/// One aggregate row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    /// Project (`""` when not grouped by it).
    pub project: String,
    /// Model (`""` when not grouped by it or unknown).
    pub model: String,
    /// Days since the Unix epoch (`-1` when not grouped by day).
    pub day: i64,
    /// Requests.
    pub requests: i64,
    /// Uncached input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Cache reads.
    pub cache_read_tokens: i64,
    /// Cache writes.
    pub cache_write_tokens: i64,
    /// Exact cost, pico-units.
    pub cost_pico: i64,
    /// Requests whose model had no price (their cost is not in `cost_pico`).
    pub unpriced_requests: i64,
    /// Requests whose response did not reach its end.
    pub incomplete_requests: i64,
}

/// The SELECT expressions and `GROUP BY ... ORDER BY ...` of a grouping.
pub(super) struct GroupSql {
    pub project: &'static str,
    pub model: &'static str,
    pub day: &'static str,
    pub group_by: String,
}

pub(super) fn group_sql(g: UsageGrouping) -> GroupSql {
    let mut group: Vec<&str> = Vec::new();
    if g.project {
        group.push("project");
    }
    if g.model {
        group.push("model");
    }
    if g.day {
        group.push("(at_ms / 86400000)");
    }
    GroupSql {
        project: if g.project { "project" } else { "''" },
        model: if g.model { "model" } else { "''" },
        day: if g.day {
            "(at_ms / 86400000)"
        } else {
            "CAST(-1 AS BIGINT)"
        },
        group_by: if group.is_empty() {
            String::new()
        } else {
            format!("GROUP BY {0} ORDER BY {0}", group.join(", "))
        },
    }
}

pub(super) fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Inserts `records` inside `tx`, skipping any whose `id` is already stored; returns how many
/// were new. Shared by ingest and restore.
pub(crate) async fn insert_usage_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[UsageRecord],
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for r in records {
        let res = sqlx::query(
                "INSERT INTO usage_records (id, request_id, at_ms, org, project, key_id, provider, \
                 route, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
                 cost_pico, priced, status, latency_ms, complete) VALUES ($1, $2, $3, $4, $5, $6, \
                 $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (id) DO NOTHING",
            )
            .bind(r.id.clone())
            .bind(r.request_id.clone())
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
            .bind(i(r.cost_pico.unwrap_or(0)))
            .bind(i64::from(r.cost_pico.is_some()))
            .bind(i64::from(r.status))
            .bind(i(r.latency_ms))
            .bind(i64::from(r.complete))
            .execute(&mut **tx)
            .await?;
        inserted += res.rows_affected();
    }
    Ok(inserted)
}

/// One project's spend over a period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ProjectSpend {
    /// Org slug.
    pub org: String,
    /// Project slug.
    pub project: String,
    /// Exact cost, pico-units.
    pub cost_pico: i64,
}

/// A stored usage row, every column (for backups).
#[derive(sqlx::FromRow)]
struct StoredUsage {
    id: String,
    request_id: String,
    at_ms: i64,
    org: String,
    project: String,
    key_id: Option<String>,
    provider: String,
    route: String,
    model: String,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cost_pico: i64,
    priced: i64,
    status: i64,
    latency_ms: i64,
    complete: i64,
}

impl From<StoredUsage> for UsageRecord {
    fn from(r: StoredUsage) -> Self {
        let u = |n: i64| u64::try_from(n).unwrap_or(0);
        UsageRecord {
            id: r.id,
            request_id: r.request_id,
            at_ms: r.at_ms,
            org: r.org,
            project: r.project,
            key_id: r.key_id,
            provider: r.provider,
            route: r.route,
            model: (!r.model.is_empty()).then_some(r.model),
            input_tokens: u(r.input_tokens),
            output_tokens: u(r.output_tokens),
            cache_read_tokens: u(r.cache_read_tokens),
            cache_write_tokens: u(r.cache_write_tokens),
            cost_pico: (r.priced != 0).then(|| u(r.cost_pico)),
            status: u16::try_from(r.status).unwrap_or(0),
            latency_ms: u(r.latency_ms),
            complete: r.complete != 0,
        }
    }
}

impl Store {
    /// Inserts a batch in one transaction; a record whose `id` is already stored is skipped.
    /// Returns how many were new.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let inserted = insert_usage_in(&mut tx, records).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Every stored usage record, oldest first (for backups).
    pub async fn all_usage(&self) -> Result<Vec<UsageRecord>, StoreError> {
        let rows = sqlx::query_as::<_, StoredUsage>(
            "SELECT id, request_id, at_ms, org, project, key_id, provider, route, model, \
             input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_pico, \
             priced, status, latency_ms, complete FROM usage_records ORDER BY at_ms, id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(UsageRecord::from).collect())
    }

    /// Sums an org's usage, grouped as asked, ordered by the group columns.
    pub async fn query_usage(
        &self,
        org: &str,
        f: &UsageFilter,
        g: UsageGrouping,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let GroupSql {
            project,
            model,
            day,
            group_by,
        } = group_sql(g);
        let sql = format!(
            "SELECT {project} AS project, {model} AS model, {day} AS day, \
             CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(cache_read_tokens), 0) AS BIGINT) AS cache_read_tokens, \
             CAST(COALESCE(SUM(cache_write_tokens), 0) AS BIGINT) AS cache_write_tokens, \
             CAST(COALESCE(SUM(cost_pico), 0) AS BIGINT) AS cost_pico, \
             CAST(COALESCE(SUM(1 - priced), 0) AS BIGINT) AS unpriced_requests, \
             CAST(COALESCE(SUM(1 - complete), 0) AS BIGINT) AS incomplete_requests \
             FROM usage_records WHERE org = $1 AND at_ms >= $2 AND at_ms < $3 \
             AND ($4 = '' OR project = $4) AND ($5 = '' OR model = $5) {group_by}"
        );
        let rows = sqlx::query_as::<_, UsageRow>(&sql)
            .bind(org.to_owned())
            .bind(f.from_ms.unwrap_or(0))
            .bind(f.to_ms.unwrap_or(i64::MAX))
            .bind(f.project.clone().unwrap_or_default())
            .bind(f.model.clone().unwrap_or_default())
            .fetch_all(self.pool())
            .await?;
        // An ungrouped query over no rows still yields one row of zeros: keep it (totals).
        Ok(rows)
    }

    /// Priced spend per org and project in `[from_ms, to_ms)`, for gateways restoring their
    /// budget counters.
    pub async fn spend_by_project(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ProjectSpend>, StoreError> {
        Ok(sqlx::query_as::<_, ProjectSpend>(
            "SELECT org, project, CAST(COALESCE(SUM(cost_pico), 0) AS BIGINT) AS cost_pico \
             FROM usage_records WHERE at_ms >= $1 AND at_ms < $2 AND priced = 1 \
             GROUP BY org, project ORDER BY org, project",
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes records older than `before_ms`; returns how many.
    pub async fn purge_usage(&self, before_ms: i64) -> Result<u64, StoreError> {
        let res = sqlx::query("DELETE FROM usage_records WHERE at_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected())
    }
}
