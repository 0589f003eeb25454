//! Backup and restore of the whole store as one JSON document. The same format restores into
//! SQLite or Postgres, so it also moves a deployment between them.

use std::fmt;
use std::io::Write;
use std::path::Path;

use gateway_schema::UsageRecord;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::FromRow;

use crate::store::{
    now_millis, AuditRecord, Backend, CacheHitRow, GuardrailBlockRow, KeyRow, OrgRow, PolicyRow,
    ProjectRow, ProviderObjectRow, ProviderRow, RouteRow, Store, StoreError,
};

/// The format marker.
pub const FORMAT: &str = "controlplane-backup";
/// The format version written (and the only one read).
pub const VERSION: u32 = 1;

/// Every table, in an order that satisfies foreign keys on restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u32,
    /// When the backup was taken, Unix milliseconds.
    pub created_at_ms: i64,
    pub orgs: Vec<OrgRow>,
    pub policies: Vec<PolicyRow>,
    pub projects: Vec<ProjectRow>,
    pub providers: Vec<ProviderRow>,
    pub routes: Vec<RouteRow>,
    pub virtual_keys: Vec<KeyRow>,
    pub audit_log: Vec<AuditRecord>,
    /// Usage reported by gateways. Absent from backups taken before it was included.
    #[serde(default)]
    pub usage_records: Vec<UsageRecord>,
    /// Absent in backups written before the response cache existed.
    #[serde(default)]
    pub cache_hits: Vec<CacheHitRow>,
    /// Absent in backups written before the table existed.
    #[serde(default)]
    pub guardrail_blocks: Vec<GuardrailBlockRow>,
    /// Ownership of provider objects (absent in backups taken before it existed).
    #[serde(default)]
    pub provider_objects: Vec<ProviderObjectRow>,
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0} is not a control plane backup (version {VERSION}): {1}")]
    Format(String, String),
    #[error("the target store is not empty ({0} has rows); restore only into a fresh store")]
    NotEmpty(&'static str),
}

/// Row counts, for the command's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub orgs: usize,
    pub projects: usize,
    pub providers: usize,
    pub routes: usize,
    pub policies: usize,
    pub keys: usize,
    pub audit: usize,
    pub usage: usize,
    pub cache_hits: usize,
    pub guardrail_blocks: usize,
    pub objects: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} orgs, {} projects, {} providers, {} routes, {} policies, {} keys, {} audit records, \
             {} usage records, {} cache hits, {} guardrail block records, {} provider objects",
            self.orgs,
            self.projects,
            self.providers,
            self.routes,
            self.policies,
            self.keys,
            self.audit,
            self.usage,
            self.cache_hits,
            self.guardrail_blocks,
            self.objects
        )
    }
}

impl Backup {
    /// Row counts.
    pub fn counts(&self) -> Counts {
        Counts {
            orgs: self.orgs.len(),
            projects: self.projects.len(),
            providers: self.providers.len(),
            routes: self.routes.len(),
            policies: self.policies.len(),
            keys: self.virtual_keys.len(),
            audit: self.audit_log.len(),
            usage: self.usage_records.len(),
            cache_hits: self.cache_hits.len(),
            guardrail_blocks: self.guardrail_blocks.len(),
            objects: self.provider_objects.len(),
        }
    }
}

/// Tables with an integer `id` sequence, in foreign-key order.
const TABLES: [&str; 9] = [
    "orgs",
    "policies",
    "projects",
    "providers",
    "routes",
    "virtual_keys",
    "audit_log",
    "guardrail_blocks",
    "provider_objects",
];

/// Tables keyed by a gateway-minted text id (no sequence to move on restore).
const RECORD_TABLES: [&str; 2] = ["usage_records", "cache_hits"];

async fn all<T>(store: &Store, table: &str) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    sqlx::query_as::<_, T>(&format!("SELECT * FROM {table} ORDER BY id"))
        .fetch_all(store.pool())
        .await
}

/// Reads the whole store. Run against a quiet store (or accept a moment-in-time per table).
pub async fn take(store: &Store) -> Result<Backup, BackupError> {
    Ok(Backup {
        format: FORMAT.into(),
        version: VERSION,
        created_at_ms: now_millis(),
        orgs: all(store, "orgs").await?,
        policies: all(store, "policies").await?,
        projects: all(store, "projects").await?,
        providers: all(store, "providers").await?,
        routes: all(store, "routes").await?,
        virtual_keys: all(store, "virtual_keys").await?,
        audit_log: all(store, "audit_log").await?,
        usage_records: store.all_usage().await?,
        cache_hits: store.all_cache_hits().await?,
        guardrail_blocks: all(store, "guardrail_blocks").await?,
        provider_objects: all(store, "provider_objects").await?,
    })
}

/// Writes a backup to a new file (mode 0600; never overwrites).
pub async fn backup_to_file(store: &Store, path: &Path) -> Result<Counts, BackupError> {
    let b = take(store).await?;
    let shown = path.display().to_string();
    let werr = |e: std::io::Error| BackupError::Write {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let json = serde_json::to_vec_pretty(&b).map_err(|e| BackupError::Write {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(werr)?;
    f.write_all(&json).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    Ok(b.counts())
}

/// Loads a backup into an empty store, keeping every id.
pub async fn restore(store: &Store, b: &Backup) -> Result<Counts, BackupError> {
    let pool = store.pool();
    let mut tx = pool.begin().await?;
    for t in TABLES.into_iter().chain(RECORD_TABLES) {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {t}"))
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(BackupError::NotEmpty(t));
        }
    }
    for r in &b.orgs {
        sqlx::query(
            "INSERT INTO orgs (id, slug, display_name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(r.id)
        .bind(&r.slug)
        .bind(&r.display_name)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.policies {
        sqlx::query(
            "INSERT INTO policies (id, org_id, slug, allowed_models, max_request_bytes, \
             requests_per_minute, tokens_per_minute, monthly_budget_cents, created_at, \
             max_in_flight, endpoints, default_provider, cache, guardrails) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(r.id)
        .bind(r.org_id)
        .bind(&r.slug)
        .bind(r.allowed_models.clone())
        .bind(r.max_request_bytes)
        .bind(r.requests_per_minute)
        .bind(r.tokens_per_minute)
        .bind(r.monthly_budget_cents)
        .bind(r.created_at)
        .bind(r.max_in_flight)
        .bind(r.endpoints.clone())
        .bind(r.default_provider.clone())
        .bind(r.cache.clone())
        .bind(r.guardrails.clone())
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.projects {
        sqlx::query(
            "INSERT INTO projects (id, org_id, slug, display_name, policy_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.id)
        .bind(r.org_id)
        .bind(&r.slug)
        .bind(&r.display_name)
        .bind(r.policy_id)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.providers {
        sqlx::query(
            "INSERT INTO providers (id, org_id, slug, kind, base_url, api_key_ref, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.id)
        .bind(r.org_id)
        .bind(&r.slug)
        .bind(&r.kind)
        .bind(&r.base_url)
        .bind(r.api_key_ref.clone())
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.routes {
        sqlx::query(
            "INSERT INTO routes (id, org_id, slug, model, provider_id, upstream_model, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.id)
        .bind(r.org_id)
        .bind(&r.slug)
        .bind(&r.model)
        .bind(r.provider_id)
        .bind(r.upstream_model.clone())
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.virtual_keys {
        sqlx::query(
            "INSERT INTO virtual_keys (id, key_id, project_id, name, digest, prefix, created_at, \
             expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.id)
        .bind(&r.key_id)
        .bind(r.project_id)
        .bind(&r.name)
        .bind(&r.digest)
        .bind(&r.prefix)
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.revoked_at)
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.audit_log {
        sqlx::query(
            "INSERT INTO audit_log (id, at_ms, actor_issuer, actor_subject, actor_email, role, \
             action, resource, outcome, status, reason, request_id, source_addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(r.id)
        .bind(r.at_ms)
        .bind(r.actor_issuer.clone())
        .bind(r.actor_subject.clone())
        .bind(r.actor_email.clone())
        .bind(r.role.clone())
        .bind(&r.action)
        .bind(&r.resource)
        .bind(&r.outcome)
        .bind(r.status)
        .bind(r.reason.clone())
        .bind(&r.request_id)
        .bind(&r.source_addr)
        .execute(&mut *tx)
        .await?;
    }
    for chunk in b.usage_records.chunks(500) {
        crate::store::usage::insert_usage_in(&mut tx, chunk).await?;
    }
    store.restore_cache_hits(&mut tx, &b.cache_hits).await?;
    for r in &b.guardrail_blocks {
        sqlx::query(
            "INSERT INTO guardrail_blocks (id, record_id, request_id, at_ms, org, project, key_id, \
             rule_id, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.id)
        .bind(&r.record_id)
        .bind(&r.request_id)
        .bind(r.at_ms)
        .bind(&r.org)
        .bind(&r.project)
        .bind(r.key_id.clone())
        .bind(&r.rule_id)
        .bind(&r.action)
        .execute(&mut *tx)
        .await?;
    }
    for r in &b.provider_objects {
        sqlx::query(
            "INSERT INTO provider_objects (id, org, provider, object_id, project, kind, \
             created_at_ms, deleted_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(r.id)
        .bind(&r.org)
        .bind(&r.provider)
        .bind(&r.object_id)
        .bind(&r.project)
        .bind(&r.kind)
        .bind(r.created_at_ms)
        .bind(r.deleted_at_ms)
        .execute(&mut *tx)
        .await?;
    }
    if store.backend() == Backend::Postgres {
        // Explicit ids do not advance Postgres sequences: move each past the restored rows.
        for t in TABLES {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{t}', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM {t}), false)"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(b.counts())
}

/// Reads a backup file and restores it.
pub async fn restore_from_file(store: &Store, path: &Path) -> Result<Counts, BackupError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| BackupError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    let b: Backup = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Format(shown.clone(), e.to_string()))?;
    if b.format != FORMAT || b.version != VERSION {
        return Err(BackupError::Format(
            shown,
            format!("format {:?} version {}", b.format, b.version),
        ));
    }
    restore(store, &b).await
}
