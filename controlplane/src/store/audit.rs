//! The audit log table: append, query, purge.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Page, Store, StoreError};

/// One audit record. Never holds a body, a token or a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct AuditRecord {
    /// Sequence number (also the pagination cursor).
    pub id: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The token issuer (or `dev-headers`), when the caller was identified.
    pub actor_issuer: Option<String>,
    /// The token subject, when identified.
    pub actor_subject: Option<String>,
    /// The caller's email, when known.
    pub actor_email: Option<String>,
    /// The role that granted (or was missing for) the action.
    pub role: Option<String>,
    /// `METHOD /route/template`.
    pub action: String,
    /// The concrete path, or `<invalid path>` when it held characters that are not allowed.
    pub resource: String,
    /// `success`, `denied` (401/403), `rejected` (other 4xx) or `error` (5xx).
    pub outcome: String,
    /// HTTP status returned.
    pub status: i64,
    /// Error code or authentication failure reason.
    pub reason: Option<String>,
    /// The request id (`x-request-id`).
    pub request_id: String,
    /// The client's socket address.
    pub source_addr: String,
}

/// Filters of an audit query.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub request_id: Option<String>,
}

const COLS: &str = "id, at_ms, actor_issuer, actor_subject, actor_email, role, action, resource, \
                    outcome, status, reason, request_id, source_addr";

impl Store {
    /// Appends a record (its `id` is ignored).
    pub async fn append_audit(&self, r: &AuditRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, actor_issuer, actor_subject, actor_email, role, action, \
             resource, outcome, status, reason, request_id, source_addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.at_ms)
        .bind(r.actor_issuer.clone())
        .bind(r.actor_subject.clone())
        .bind(r.actor_email.clone())
        .bind(r.role.clone())
        .bind(r.action.clone())
        .bind(r.resource.clone())
        .bind(r.outcome.clone())
        .bind(r.status)
        .bind(r.reason.clone())
        .bind(r.request_id.clone())
        .bind(r.source_addr.clone())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Queries records, oldest first. `actor` matches subject or email exactly; every filter is
    /// an exact match.
    pub async fn query_audit(
        &self,
        f: &AuditFilter,
        page: Page,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(sqlx::query_as::<_, AuditRecord>(&format!(
            "SELECT {COLS} FROM audit_log WHERE id > $1 AND at_ms >= $2 AND at_ms <= $3 \
             AND ($4 = '' OR actor_subject = $4 OR actor_email = $4) \
             AND ($5 = '' OR action = $5) AND ($7 = '' OR request_id = $7) ORDER BY id LIMIT $6"
        ))
        .bind(page.after)
        .bind(f.since_ms.unwrap_or(0))
        .bind(f.until_ms.unwrap_or(i64::MAX))
        .bind(f.actor.clone().unwrap_or_default())
        .bind(f.action.clone().unwrap_or_default())
        .bind(page.limit)
        .bind(f.request_id.clone().unwrap_or_default())
        .fetch_all(self.pool())
        .await?)
    }

    /// Deletes records older than `before_ms`; returns how many.
    pub async fn purge_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        let res = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
            .bind(before_ms)
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected())
    }
}
