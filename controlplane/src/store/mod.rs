//! The store: SQLite (a file) by default, Postgres when a URL is given, through sqlx's `Any`
//! driver so one set of queries serves both. Migrations for each backend are embedded and
//! applied at start.

mod audit;
mod cache_hits;
mod guardrail_blocks;
mod keys;
mod objects;
mod org_scoped;
mod orgs;
mod policies;
mod projects;
mod providers;
mod routes;
mod snapshots;
pub(crate) mod usage;

pub use audit::{AuditFilter, AuditRecord};
pub use cache_hits::{CacheHitRow, SavingsRow};
pub use guardrail_blocks::{GuardrailBlockFilter, GuardrailBlockRow};
pub use keys::KeyRow;
pub use objects::{ObjectFilter, ObjectIngest, ProviderObjectRow};
pub use orgs::OrgRow;
pub use policies::{PolicyFields, PolicyRow};
pub use projects::ProjectRow;
pub use providers::ProviderRow;
pub use routes::RouteRow;
pub use snapshots::{ConfigRows, GatewayRow, SnapshotHead};
pub use usage::{ProjectSpend, UsageFilter, UsageGrouping, UsageRow};

use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use gateway_schema::Secret;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    UnknownReference(String),
    #[error("unsupported database URL: use postgres://... or sqlite://...")]
    UnsupportedUrl,
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot apply migrations: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A page request: rows with `id > after`, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Exclusive lower bound of ids (the cursor).
    pub after: i64,
    /// Maximum rows.
    pub limit: i64,
}

/// The store handle (cheap to clone).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static DRIVERS: Once = Once::new();

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    now_millis() / 1000
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Connects and applies the backend's migrations.
    pub async fn connect(url: &Secret, max_connections: u32) -> Result<Self, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let u = url.expose();
        let backend = if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Backend::Postgres
        } else if u.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(u)
            .await
            // sqlx errors may quote the URL (and so a password): report only the kind.
            .map_err(|e| StoreError::Connect(redact_connect_error(&e)))?;
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let res = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
        };
        res.map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool, for the backup module.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn redact_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::Tls(_) => "TLS error".into(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Database(db) => format!("database refused: {}", db.message()),
        sqlx::Error::Configuration(_) => "invalid database URL".into(),
        _ => "connection failed".into(),
    }
}

/// Maps a write error: unique → conflict, foreign key → in use / unknown reference.
pub(crate) fn map_write(e: sqlx::Error, conflict: &str, fk: FkMeaning) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(conflict.to_owned());
        }
        if db.is_foreign_key_violation() {
            return match fk {
                FkMeaning::InUse(m) => StoreError::InUse(m.to_owned()),
                FkMeaning::Unknown(m) => StoreError::UnknownReference(m.to_owned()),
            };
        }
    }
    StoreError::Db(e)
}

/// What a foreign-key violation means for a given write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FkMeaning {
    /// A delete of something still referenced.
    InUse(&'static str),
    /// An insert referencing something missing.
    Unknown(&'static str),
}
