//! The one owner of the live config: an [`ArcSwap`] holding the current [`ActiveConfig`].
//!
//! The hot path does one `load_full()` per request and keeps that `Arc` in its context, so an
//! in-flight request finishes on the config it began with while a reload swaps in a new one.
//! Both sources of config go through [`LiveConfig::install`]: a standalone file (reloaded on
//! SIGHUP or change) and a signed snapshot pushed by the control plane.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use gateway_schema::Snapshot;

use crate::config::GatewayFile;
use crate::metrics::Metrics;
use crate::state::{ActiveConfig, BuildError, MissingKeys};

/// Holds the live config and knows how to rebuild it.
pub struct LiveConfig {
    current: ArcSwap<ActiveConfig>,
    generation: AtomicU64,
    /// Serialises installs (file reloads and pushed snapshots), never taken by the hot path.
    install_lock: Mutex<()>,
    path: PathBuf,
    metrics: Arc<Metrics>,
    /// Why no snapshot is loaded yet (shown by `/readyz` while not ready).
    waiting_reason: Mutex<String>,
}

/// Why a reload was refused (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("config file {path}: {source}")]
    Build { path: PathBuf, source: BuildError },
    #[error("snapshot version {offered} is older than the running version {running}")]
    Older { offered: u64, running: u64 },
    #[error("snapshot: {0}")]
    Snapshot(BuildError),
}

impl LiveConfig {
    /// Starts with an already built config.
    pub fn new(initial: ActiveConfig, path: PathBuf, metrics: Arc<Metrics>) -> Self {
        metrics.config_generation.set(initial.generation as i64);
        metrics
            .snapshot_version
            .set(initial.snapshot_version as i64);
        Self {
            generation: AtomicU64::new(initial.generation),
            current: ArcSwap::from_pointee(initial),
            install_lock: Mutex::new(()),
            path,
            metrics,
            waiting_reason: Mutex::new("no snapshot loaded yet".into()),
        }
    }

    /// Builds generation 1 from `file`.
    pub fn build_initial(file: &GatewayFile, path: &Path) -> Result<ActiveConfig, ReloadError> {
        ActiveConfig::build(&file.snapshot, 1).map_err(|source| ReloadError::Build {
            path: path.to_owned(),
            source,
        })
    }

    /// The current config: one atomic load, no lock.
    pub fn load(&self) -> Arc<ActiveConfig> {
        self.current.load_full()
    }

    /// Whether a snapshot has been loaded (generation 0 is the empty placeholder).
    pub fn is_loaded(&self) -> bool {
        self.generation.load(Ordering::Acquire) > 0
    }

    /// Re-reads the file, builds the new config off the hot path and swaps it in with one
    /// store. On any error the running config stays and the error is returned (and counted).
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let result = GatewayFile::load(&self.path)
            .map_err(ReloadError::from)
            .and_then(|file| {
                self.install(&file.snapshot, MissingKeys::FailUnlessOptional, false)
                    .map_err(|e| match e {
                        ReloadError::Snapshot(source) => ReloadError::Build {
                            path: self.path.clone(),
                            source,
                        },
                        other => other,
                    })
            });
        match result {
            Ok(generation) => {
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(generation, path = %self.path.display(), "config reloaded");
                Ok(generation)
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "config reload refused; keeping the running config");
                Err(e)
            }
        }
    }

    /// Compiles a validated snapshot and swaps it in: the one build-and-swap path of both
    /// config sources. With `only_newer`, a snapshot older than the running one is refused
    /// (a pushed snapshot never goes back in time). Blocking (secrets, DNS): off the hot path.
    pub fn install(
        &self,
        snapshot: &Snapshot,
        missing: MissingKeys,
        only_newer: bool,
    ) -> Result<u64, ReloadError> {
        let _serial = self
            .install_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = self.current.load();
        if only_newer && self.is_loaded() && snapshot.version < running.snapshot_version {
            return Err(ReloadError::Older {
                offered: snapshot.version,
                running: running.snapshot_version,
            });
        }
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let mut cfg = ActiveConfig::build_with(snapshot, generation, missing)
            .map_err(ReloadError::Snapshot)?;
        cfg.adopt_counters(&running);
        self.current.store(Arc::new(cfg));
        self.generation.store(generation, Ordering::Release);
        self.metrics.config_generation.set(generation as i64);
        self.metrics.snapshot_version.set(snapshot.version as i64);
        Ok(generation)
    }

    /// Records why no snapshot is loaded yet, for `/readyz` and the log.
    pub fn set_waiting_reason(&self, reason: impl Into<String>) {
        *self
            .waiting_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = reason.into();
    }

    /// Why no snapshot is loaded yet.
    pub fn waiting_reason(&self) -> String {
        self.waiting_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The config file this owner reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
