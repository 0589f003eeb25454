//! Live reload: SIGHUP or a change of the config file rebuilds the config off the hot path
//! (in a blocking task) and swaps it in; an invalid file keeps the running config.
//!
//! The file is polled (size, mtime, inode) once a second rather than watched with inotify:
//! polling also sees Kubernetes ConfigMap updates, which swap a symlink, and costs nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::live::LiveConfig;

/// How often the config file is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How often provider host names are re-resolved.
const DNS_REFRESH: Duration = Duration::from_secs(30);
/// How often while some provider host has no address at all.
const DNS_RETRY: Duration = Duration::from_secs(5);

/// The reload background service.
pub struct Reloader {
    /// The config owner to reload.
    pub live: Arc<LiveConfig>,
    /// Whether to poll the file (SIGHUP always works).
    pub watch_file: bool,
    /// Whether the file is the snapshot's source. Off in control-plane mode, where only the
    /// background DNS refresh runs here.
    pub file_snapshots: bool,
}

#[derive(PartialEq, Eq, Clone, Copy)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
    })
}

impl Reloader {
    async fn reload(&self) {
        let live = self.live.clone();
        // Reading files, resolving secrets and DNS are blocking: keep them off the runtime.
        if let Err(e) = tokio::task::spawn_blocking(move || live.reload()).await {
            tracing::error!(error = %e, "config reload task failed");
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot install the SIGHUP handler; reload on file change only");
                None
            }
        };
        let path = self.live.path().to_owned();
        let mut last = stamp(&path);
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        let mut last_dns = tokio::time::Instant::now();
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hup.as_mut().filter(|_| self.file_snapshots) { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP received: reloading config");
                    last = stamp(&path);
                    self.reload().await;
                }
                _ = tick.tick() => {
                    let now = stamp(&path);
                    if self.file_snapshots && self.watch_file && now.is_some() && now != last {
                        last = now;
                        tracing::info!(path = %path.display(), "config file changed: reloading");
                        self.reload().await;
                    }
                    let cfg = self.live.load();
                    let due = if cfg.has_unresolved() { DNS_RETRY } else { DNS_REFRESH };
                    if last_dns.elapsed() >= due {
                        last_dns = tokio::time::Instant::now();
                        let _ = tokio::task::spawn_blocking(move || cfg.refresh_dns()).await;
                    }
                }
            }
        }
    }
}
