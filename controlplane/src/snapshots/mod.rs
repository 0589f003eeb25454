//! Snapshot publishing: after every committed change the control plane compiles the whole
//! config into one [`gateway_schema::Snapshot`], numbers it, signs it and hands it to every
//! connected gateway's stream.
//!
//! - **Version.** `max(newest stored + 1, now in ms)`, inserted under the version's primary
//!   key, so it only grows across restarts, across replicas sharing a database (an insert that
//!   loses the race retries above the winner) and across a restore from an older backup (the
//!   clock is ahead of any version handed out before).
//! - **Replicas.** Every replica polls the newest stored version every [`POLL_INTERVAL`] and
//!   serves it when it is newer than its own, so a change made through replica A reaches a
//!   gateway streaming from replica B within about a second; a local change is published at
//!   once, without waiting for the poll.
//! - **Content hash.** Compiling the same content again (a restart, a no-op change) reuses the
//!   newest snapshot instead of minting a new version.

pub mod compile;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_schema::signed::sha256_hex;
use gateway_schema::SigningKey;
use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::store::{now_millis, Store, StoreError};

/// How often each replica checks the database for a newer snapshot.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How many snapshots the database keeps.
const KEEP: i64 = 5;

/// A signed snapshot ready to send: its version and the envelope's JSON text.
#[derive(Debug)]
pub struct Published {
    /// The snapshot version.
    pub version: u64,
    /// The `SignedSnapshot` as JSON (one line: it goes into an SSE `data:` field as is).
    pub envelope: String,
}

/// Why a publish round failed (the previous snapshot keeps being served).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Compile(#[from] compile::CompileError),
    #[error("the compiled snapshot does not validate: {0}")]
    Invalid(gateway_schema::ValidationErrors),
    #[error("cannot sign the snapshot: {0}")]
    Sign(#[from] gateway_schema::signed::KeyError),
    #[error("cannot serialise the snapshot: {0}")]
    Json(#[from] serde_json::Error),
}

/// The publisher: one per control-plane process.
pub struct Publisher {
    store: Store,
    key: Option<SigningKey>,
    metrics: Metrics,
    changed: Notify,
    tx: watch::Sender<Option<Arc<Published>>>,
    closing: watch::Sender<bool>,
}

impl Publisher {
    /// A publisher; without a signing key it publishes nothing (the stream answers 503).
    pub fn new(store: Store, key: Option<SigningKey>, metrics: Metrics) -> Arc<Self> {
        let (tx, _) = watch::channel(None);
        let (closing, _) = watch::channel(false);
        Arc::new(Self {
            store,
            key,
            metrics,
            changed: Notify::new(),
            tx,
            closing,
        })
    }

    /// Whether snapshots are signed and served at all.
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Called after a change is committed: compile and publish now.
    pub fn notify_change(&self) {
        self.changed.notify_one();
    }

    /// Receives every newly published snapshot (the current one first).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.tx.subscribe()
    }

    /// Ends every open snapshot stream (at shutdown, so draining does not wait on them;
    /// gateways reconnect to another replica or keep serving what they have).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Self::close_streams`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }

    /// The snapshot being served now.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.tx.borrow().clone()
    }

    /// Runs until `shutdown`: compiles at start and after every change, and adopts newer
    /// snapshots other replicas stored.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(key) = &self.key else { return };
        let mut dirty_since = Some(Instant::now());
        let mut failing = false;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let result = match dirty_since.take() {
                Some(since) => self.compile_and_publish(key, since).await,
                None => self.adopt_newer().await,
            };
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("snapshot publishing recovered");
                }
                Ok(()) => {}
                Err(e) => {
                    // Logged once per failure streak, counted every time.
                    if !failing {
                        tracing::error!(error = %e, "snapshot publish failed; serving the previous snapshot and retrying");
                    }
                    failing = true;
                    self.metrics.snapshot_failures.inc();
                    dirty_since = dirty_since.or(Some(Instant::now()));
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.changed.notified() => dirty_since = dirty_since.or(Some(Instant::now())),
                _ = tick.tick() => {}
            }
        }
    }

    async fn compile_and_publish(
        &self,
        key: &SigningKey,
        since: Instant,
    ) -> Result<(), PublishError> {
        let rows = self.store.config_rows().await?;
        let mut snapshot = compile::compile(&rows)?;
        snapshot.validate().map_err(PublishError::Invalid)?;
        let content_sha256 = sha256_hex(serde_json::to_string(&snapshot)?.as_bytes());
        loop {
            let head = self.store.snapshot_head().await?;
            if let Some(h) = &head {
                if h.content_sha256 == content_sha256 {
                    // Nothing changed since the newest stored snapshot: serve that one.
                    return self.adopt(h.version).await;
                }
            }
            let newest = head.map_or(0, |h| h.version);
            let version = (newest + 1).max(now_millis());
            snapshot.version = u64::try_from(version).unwrap_or_default();
            let signed = key.sign(&snapshot)?;
            let envelope = serde_json::to_string(&signed)?;
            if self
                .store
                .insert_snapshot(version, &content_sha256, &envelope)
                .await?
            {
                self.metrics
                    .snapshot_compile_seconds
                    .observe(since.elapsed().as_secs_f64());
                tracing::info!(
                    version,
                    bytes = envelope.len(),
                    keys = rows.keys.len(),
                    "snapshot compiled and signed"
                );
                self.set(snapshot.version, envelope);
                if let Err(e) = self.store.prune_snapshots(KEEP).await {
                    tracing::warn!(error = %e, "cannot prune old snapshots");
                }
                return Ok(());
            }
            // Another replica took this version between our read and our insert: go again.
        }
    }

    /// Serves the newest stored snapshot when it is newer than the one being served.
    async fn adopt_newer(&self) -> Result<(), PublishError> {
        match self.store.snapshot_head().await? {
            Some(h) => self.adopt(h.version).await,
            None => Ok(()),
        }
    }

    async fn adopt(&self, version: i64) -> Result<(), PublishError> {
        let v = u64::try_from(version).unwrap_or_default();
        if self.current().is_some_and(|c| c.version >= v) {
            return Ok(());
        }
        let envelope = self.store.snapshot_envelope(version).await?;
        tracing::info!(version, "serving the newest stored snapshot");
        self.set(v, envelope);
        Ok(())
    }

    fn set(&self, version: u64, envelope: String) {
        self.metrics
            .snapshot_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.tx
            .send_replace(Some(Arc::new(Published { version, envelope })));
    }
}

/// Middleware: once a change through the API has been committed (a mutating request answered
/// 2xx), compile and publish a new snapshot. It runs inside the audit layer's task, so a
/// client that disconnects cannot skip it.
pub async fn publish_after_change(
    axum::extract::State(st): axum::extract::State<crate::state::AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let change = crate::guards::is_mutating(req.method()) && req.uri().path().starts_with("/api/");
    let resp = next.run(req).await;
    if change && resp.status().is_success() {
        st.snapshots.notify_change();
    }
    resp
}
