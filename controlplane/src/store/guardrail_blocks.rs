//! The guardrail-blocks table: idempotent batch insert, filtered paged query, retention purge.

use gateway_schema::GuardrailBlockRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Page, Store, StoreError};

/// One stored guardrail action. Never holds the matched text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct GuardrailBlockRow {
    /// Sequence number (also the pagination cursor).
    pub id: i64,
    /// The gateway's record id (what makes a retried delivery a duplicate).
    pub record_id: String,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// When the rule acted, Unix milliseconds.
    pub at_ms: i64,
    /// Org slug.
    pub org: String,
    /// Project slug.
    pub project: String,
    /// The virtual key's id, when known.
    pub key_id: Option<String>,
    /// The rule's id in the project's policy.
    pub rule_id: String,
    /// `block` or `redact`.
    pub action: String,
}

/// Filters of a guardrail-blocks query (all optional but the org).
#[derive(Debug, Clone, Default)]
pub struct GuardrailBlockFilter {
    /// From this time (Unix ms, inclusive).
    pub from_ms: Option<i64>,
    /// Until this time (Unix ms, exclusive).
    pub to_ms: Option<i64>,
    /// One project.
    pub project: Option<String>,
    /// One rule id.
    pub rule_id: Option<String>,
    /// One action (`block`, `redact`).
    pub action: Option<String>,
}

const COLS: &str = "id, record_id, request_id, at_ms, org, project, key_id, rule_id, action";

impl Store {
    /// Inserts a batch in one transaction; a record whose `id` is already stored is skipped.
    /// Returns how many were new.
    pub async fn insert_guardrail_blocks(
        &self,
        records: &[GuardrailBlockRecord],
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        let mut inserted = 0;
        for r in records {
            let res = sqlx::query(
                "INSERT INTO guardrail_blocks (record_id, request_id, at_ms, org, project, key_id, \
                 rule_id, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (record_id) DO NOTHING",
            )
            .bind(r.id.clone())
            .bind(r.request_id.clone())
            .bind(r.at_ms)
            .bind(r.org.clone())
            .bind(r.project.clone())
            .bind(r.key_id.clone())
            .bind(r.rule_id.clone())
            .bind(r.action.as_str())
            .execute(&mut *tx)
            .await?;
            inserted += res.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// An org's guardrail actions, oldest first, one page after `page.after`.
    pub async fn query_guardrail_blocks(
        &self,
        org: &str,
        f: &GuardrailBlockFilter,
        page: Page,
    ) -> Result<Vec<GuardrailBlockRow>, StoreError> {
        Ok(sqlx::query_as::<_, GuardrailBlockRow>(&format!(
            "SELECT {COLS} FROM guardrail_blocks WHERE org = $1 AND id > $2 \
             AND at_ms >= $3 AND at_ms < $4 AND ($5 = '' OR project = $5) \
             AND ($6 = '' OR rule_id = $6) AND ($7 = '' OR action = $7) ORDER BY id LIMIT $8"
        ))
        .bind(org.to_owned())
        .bind(page.after)
        .bind(f.from_ms.unwrap_or(0))
        .bind(f.to_ms.unwrap_or(i64::MAX))
        .bind(f.project.clone().unwrap_or_default())
        .bind(f.rule_id.clone().unwrap_or_default())
        .bind(f.action.clone().unwrap_or_default())
        .bind(page.limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes records older than `before_ms`; returns how many.
    pub async fn purge_guardrail_blocks(&self, before_ms: i64) -> Result<u64, StoreError> {
        let res = sqlx::query("DELETE FROM guardrail_blocks WHERE at_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected())
    }
}
