//! The one owner of the live config: an [`ArcSwap`] holding the current [`ActiveConfig`].
//!
//! The hot path does one `load_full()` per request and keeps that `Arc` in its context, so an
//! in-flight request finishes on the config it began with while a reload swaps in a new one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::GatewayFile;
use crate::metrics::Metrics;
use crate::state::ActiveConfig;

/// Holds the live config and knows how to rebuild it from the config file.
pub struct LiveConfig {
    current: ArcSwap<ActiveConfig>,
    generation: AtomicU64,
    path: PathBuf,
    metrics: Arc<Metrics>,
}

/// Why a reload was refused (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("config file {path}: {source}")]
    Build {
        path: PathBuf,
        source: crate::state::BuildError,
    },
}

impl LiveConfig {
    /// Starts with an already built config.
    pub fn new(initial: ActiveConfig, path: PathBuf, metrics: Arc<Metrics>) -> Self {
        metrics.config_generation.set(initial.generation as i64);
        Self {
            generation: AtomicU64::new(initial.generation),
            current: ArcSwap::from_pointee(initial),
            path,
            metrics,
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

    /// Re-reads the file, builds the new config off the hot path and swaps it in with one
    /// store. On any error the running config stays and the error is returned (and counted).
    pub fn reload(&self) -> Result<u64, ReloadError> {
        let result = GatewayFile::load(&self.path)
            .map_err(ReloadError::from)
            .and_then(|file| {
                let generation = self.generation.load(Ordering::Relaxed) + 1;
                ActiveConfig::build(&file.snapshot, generation).map_err(|source| {
                    ReloadError::Build {
                        path: self.path.clone(),
                        source,
                    }
                })
            });
        match result {
            Ok(cfg) => {
                let generation = cfg.generation;
                self.generation.store(generation, Ordering::Relaxed);
                self.current.store(Arc::new(cfg));
                self.metrics.config_generation.set(generation as i64);
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

    /// The config file this owner reloads from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
