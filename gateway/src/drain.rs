//! Graceful shutdown. On SIGTERM Pingora stops accepting and waits a fixed grace period; this
//! service marks the gateway not ready at once and exits as soon as the last in-flight request
//! has finished, so a drained gateway does not sit out the whole grace period.
//!
//! Some work must run after the last request and before the process exits: the records those
//! requests queued (usage, Redis charges, ...) are still in memory. Each such task joins the
//! [`ExitBarrier`]; once requests are drained the drainer signals the tasks, waits until every
//! one has finished (at most [`FLUSH_TIMEOUT`]) and only then exits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::{watch, Notify};

/// Longest the drainer waits for the exit tasks once requests are drained.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Tasks that must finish between the last request and the exit.
#[derive(Clone)]
pub struct ExitBarrier {
    shared: Arc<Shared>,
}

struct Shared {
    /// Turns `true` once every request has finished.
    requests_done: watch::Sender<bool>,
    /// Tasks joined and not yet finished.
    pending: AtomicUsize,
    finished: Notify,
}

impl Default for ExitBarrier {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                requests_done: watch::channel(false).0,
                pending: AtomicUsize::new(0),
                finished: Notify::new(),
            }),
        }
    }
}

impl ExitBarrier {
    /// Registers a task the exit waits for.
    pub fn join(&self) -> ExitTask {
        self.shared.pending.fetch_add(1, Ordering::AcqRel);
        ExitTask {
            signal: self.shared.requests_done.subscribe(),
            shared: self.shared.clone(),
            finished: AtomicBool::new(false),
        }
    }

    /// Tells the tasks that requests are drained, then waits (at most `timeout`) until every
    /// one has finished; returns how many had not.
    pub async fn release(&self, timeout: Duration) -> usize {
        self.shared.requests_done.send_replace(true);
        let wait = async {
            loop {
                let notified = self.shared.finished.notified();
                if self.shared.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.shared.pending.load(Ordering::Acquire)
    }
}

/// One task's membership of the [`ExitBarrier`]: finished when dropped or on [`Self::finish`].
pub struct ExitTask {
    signal: watch::Receiver<bool>,
    shared: Arc<Shared>,
    finished: AtomicBool,
}

impl ExitTask {
    /// Turns `true` once every request has finished: the task should then flush and return.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.clone()
    }

    /// Marks the task finished (idempotent).
    pub fn finish(&self) {
        if !self.finished.swap(true, Ordering::AcqRel) {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            self.shared.finished.notify_waiters();
        }
    }
}

impl Drop for ExitTask {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Watches for shutdown and exits when drained.
pub struct Drainer {
    /// Requests in flight.
    pub in_flight: Arc<AtomicUsize>,
    /// Set when draining begins (readiness turns 503).
    pub draining: Arc<AtomicBool>,
    /// What must run after the last request.
    pub exit: ExitBarrier,
}

#[async_trait]
impl BackgroundService for Drainer {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        self.draining.store(true, Ordering::Release);
        let left = self.in_flight.load(Ordering::Acquire);
        tracing::info!(
            in_flight = left,
            "graceful shutdown: draining in-flight requests"
        );
        while self.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let unfinished = self.exit.release(FLUSH_TIMEOUT).await;
        if unfinished > 0 {
            tracing::warn!(
                tasks = unfinished,
                "graceful shutdown: exit tasks still flushing after the timeout"
            );
        }
        tracing::info!("graceful shutdown: drained, exiting");
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn release_waits_for_every_task_and_signals_them() {
        let barrier = ExitBarrier::default();
        let (a, b) = (barrier.join(), barrier.join());
        let flushed = Arc::new(AtomicUsize::new(0));
        for task in [a, b] {
            let flushed = flushed.clone();
            tokio::spawn(async move {
                let mut s = task.signal();
                while !*s.borrow() {
                    s.changed().await.ok();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                flushed.fetch_add(1, Ordering::AcqRel);
                drop(task);
            });
        }
        assert_eq!(barrier.release(Duration::from_secs(5)).await, 0);
        assert_eq!(flushed.load(Ordering::Acquire), 2);
    }

    #[tokio::test]
    async fn release_gives_up_after_the_timeout() {
        let barrier = ExitBarrier::default();
        let stuck = barrier.join();
        assert_eq!(barrier.release(Duration::from_millis(50)).await, 1);
        stuck.finish();
        stuck.finish();
        assert_eq!(barrier.release(Duration::from_millis(50)).await, 0);
    }
}
