//! `server.control_plane.ingest`: how records are batched to the control plane and spooled
//! while it is unreachable.

use std::path::PathBuf;

use serde::Deserialize;

fn default_spool_dir() -> PathBuf {
    PathBuf::from("gateway-spool")
}
fn default_spool_max_records() -> u64 {
    1_000_000
}
fn default_batch_size() -> usize {
    500
}
fn default_flush_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    5000
}

/// The `server.control_plane.ingest` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Directory of the on-disk spool (one subdirectory per record kind).
    #[serde(default = "default_spool_dir")]
    pub spool_dir: PathBuf,
    /// Most records kept on disk per kind; beyond, the oldest batches are dropped (counted).
    #[serde(default = "default_spool_max_records")]
    pub spool_max_records: u64,
    /// Records per batch (at most 500, what the control plane accepts).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a record waits in memory before its batch is sent.
    #[serde(default = "default_flush_ms")]
    pub flush_ms: u64,
    /// Timeout of one batch upload.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            spool_dir: default_spool_dir(),
            spool_max_records: default_spool_max_records(),
            batch_size: default_batch_size(),
            flush_ms: default_flush_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl IngestSettings {
    /// Checks the values serde cannot; returns `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let at = |f: &str| format!("control_plane.ingest.{f}");
        if self.batch_size == 0 || self.batch_size > gateway_schema::usage::MAX_BATCH {
            return Err((at("batch_size"), "must be between 1 and 500".into()));
        }
        if self.spool_max_records == 0 {
            return Err((at("spool_max_records"), "must be at least 1".into()));
        }
        if self.flush_ms == 0 || self.flush_ms > 60_000 {
            return Err((at("flush_ms"), "must be between 1 and 60000".into()));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 120_000 {
            return Err((at("timeout_ms"), "must be between 1 and 120000".into()));
        }
        Ok(())
    }
}
