//! Graceful shutdown. On SIGTERM Pingora stops accepting and waits a fixed grace period; this
//! service marks the gateway not ready at once and exits as soon as the last in-flight request
//! has finished, so a drained gateway does not sit out the whole grace period.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Watches for shutdown and exits when drained.
pub struct Drainer {
    /// Requests in flight.
    pub in_flight: Arc<AtomicUsize>,
    /// Set when draining begins (readiness turns 503).
    pub draining: Arc<AtomicBool>,
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
        tracing::info!("graceful shutdown: drained, exiting");
        std::process::exit(0);
    }
}
