//! Records shipped to the control plane in batches, at least once, with nothing lost while it
//! is unreachable: the hot path hands a record to a bounded queue ([`IngestQueue::submit`],
//! never blocking); a background [`Shipper`] batches the queue, POSTs each batch to
//! `{control_plane.url}/internal/v1/ingest/{kind}` and, when that fails, writes it to the
//! on-disk [`spool::Spool`], which it drains (oldest first) once the control plane answers.
//! The control plane stores records idempotently on their `id`, so a batch retried after a
//! lost answer is never counted twice. Generic over the record type: usage now, cache hits
//! and guardrail blocks later, each with its own kind, token, queue and spool directory.

pub mod spool;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_schema::Secret;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::IngestSettings;
use spool::Spool;

/// Records waiting in memory before the queue refuses more (then counted as dropped).
const QUEUE_CAPACITY: usize = 65_536;
/// Longest wait between delivery attempts while the control plane is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Ingest metrics, labelled by record kind.
#[derive(Clone)]
pub struct IngestMetrics {
    spool_depth: IntGaugeVec,
    spool_dropped: IntCounterVec,
    queue_dropped: IntCounterVec,
    sent: IntCounterVec,
}

impl IngestMetrics {
    /// Creates and registers them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let spool_depth = IntGaugeVec::new(
            Opts::new(
                "gateway_ingest_spool_records",
                "Records waiting in the on-disk spool",
            ),
            &["kind"],
        )?;
        let spool_dropped = IntCounterVec::new(
            Opts::new(
                "gateway_ingest_spool_dropped_total",
                "Records dropped because the spool was full (oldest first)",
            ),
            &["kind"],
        )?;
        let queue_dropped = IntCounterVec::new(
            Opts::new(
                "gateway_ingest_queue_dropped_total",
                "Records dropped because the in-memory queue was full",
            ),
            &["kind"],
        )?;
        let sent = IntCounterVec::new(
            Opts::new(
                "gateway_ingest_records_total",
                "Records by delivery outcome (stored, refused, spooled)",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(spool_depth.clone()))?;
        registry.register(Box::new(spool_dropped.clone()))?;
        registry.register(Box::new(queue_dropped.clone()))?;
        registry.register(Box::new(sent.clone()))?;
        Ok(Self {
            spool_depth,
            spool_dropped,
            queue_dropped,
            sent,
        })
    }
}

/// The hot path's side: a bounded, non-blocking queue.
pub struct IngestQueue<T> {
    kind: &'static str,
    tx: mpsc::Sender<T>,
    metrics: IngestMetrics,
}

impl<T> IngestQueue<T> {
    /// Queues a record; when the queue is full the record is dropped and counted.
    pub fn submit(&self, record: T) {
        if self.tx.try_send(record).is_err() {
            self.metrics
                .queue_dropped
                .with_label_values(&[self.kind])
                .inc();
        }
    }
}

/// Where and how to deliver one kind of record.
pub struct Target {
    /// `usage`, ...: the last path segment of the ingest endpoint and the metrics label.
    pub kind: &'static str,
    /// `{control_plane.url}/internal/v1/ingest/{kind}`.
    pub url: url::Url,
    /// The internal secret (`Authorization: Bearer`).
    pub secret: Secret,
    /// This kind's ingest token (`x-ingest-token`).
    pub token: Secret,
}

/// The background side: batches, delivers, spools, drains.
pub struct Shipper<T> {
    target: Target,
    settings: IngestSettings,
    client: reqwest::Client,
    rx: Mutex<Option<mpsc::Receiver<T>>>,
    spool: Arc<Mutex<Spool>>,
    metrics: IngestMetrics,
}

/// What became of one delivery attempt.
enum Delivery {
    Stored,
    /// The control plane refused the batch as invalid: retrying cannot help.
    Refused(u16),
    /// Unreachable, timed out, or a status worth retrying.
    Failed(String),
}

#[derive(Serialize)]
struct Batch<'a, T> {
    records: &'a [T],
}

/// Why ingest could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum IngestSetupError {
    #[error("control_plane.ingest.spool_dir {path}: {source}")]
    Spool {
        path: String,
        source: std::io::Error,
    },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Builds the queue and the shipper of one record kind (its spool opened, leftovers found).
pub fn channel<T>(
    target: Target,
    settings: &IngestSettings,
    metrics: IngestMetrics,
) -> Result<(IngestQueue<T>, Shipper<T>), IngestSetupError> {
    let dir = settings.spool_dir.join(target.kind);
    let spool = Spool::open(&dir, settings.spool_max_records).map_err(|source| {
        IngestSetupError::Spool {
            path: dir.display().to_string(),
            source,
        }
    })?;
    metrics
        .spool_depth
        .with_label_values(&[target.kind])
        .set(spool.depth() as i64);
    if !spool.is_empty() {
        tracing::info!(
            kind = target.kind,
            records = spool.depth(),
            "ingest spool has records from a previous run; delivering them"
        );
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .build()
        .map_err(|e| IngestSetupError::Client(e.to_string()))?;
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    Ok((
        IngestQueue {
            kind: target.kind,
            tx,
            metrics: metrics.clone(),
        },
        Shipper {
            target,
            settings: settings.clone(),
            client,
            rx: Mutex::new(Some(rx)),
            spool: Arc::new(Mutex::new(spool)),
            metrics,
        },
    ))
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Shipper<T> {
    /// Runs until `shutdown` (with an [`crate::drain::ExitTask`]'s signal: once the last
    /// request has finished); then delivers what is still in memory, or spools it when the
    /// control plane does not take it, so a graceful exit loses nothing.
    pub async fn run(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let mut batch: Vec<T> = Vec::with_capacity(self.settings.batch_size);
        let mut tick = tokio::time::interval(Duration::from_millis(self.settings.flush_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at = Instant::now();
        let mut backoff = Duration::from_secs(1);
        let mut down = false;
        loop {
            let stop = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => {
                        batch.push(r);
                        if batch.len() < self.settings.batch_size {
                            continue;
                        }
                        false
                    }
                    None => true,
                },
                _ = tick.tick() => false,
                _ = shutdown.changed() => true,
            };
            if stop {
                while let Ok(r) = rx.try_recv() {
                    batch.push(r);
                }
                while !batch.is_empty() {
                    let n = batch.len().min(self.settings.batch_size);
                    let chunk: Vec<T> = batch.drain(..n).collect();
                    let direct = !down && self.spool_depth() == 0;
                    if !direct || !self.deliver(&chunk).await {
                        down = true;
                        self.spool_batch(chunk).await;
                    }
                }
                return;
            }
            if !batch.is_empty() {
                let b = std::mem::take(&mut batch);
                let direct = !down && self.spool_depth() == 0;
                if !direct || !self.deliver(&b).await {
                    self.spool_batch(b).await;
                    if !down {
                        down = true;
                        retry_at = Instant::now() + backoff;
                        tracing::warn!(
                            kind = self.target.kind,
                            "control plane unreachable: spooling records to disk"
                        );
                    }
                }
            }
            if self.spool_depth() > 0 && Instant::now() >= retry_at {
                if self.drain().await {
                    if down {
                        tracing::info!(
                            kind = self.target.kind,
                            "control plane reachable again: spool delivered"
                        );
                    }
                    down = false;
                    backoff = Duration::from_secs(1);
                } else {
                    down = true;
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn spool_depth(&self) -> u64 {
        self.spool.lock().map_or(0, |s| s.depth())
    }

    /// Delivers `batch` now; `false` when it should be spooled and retried.
    async fn deliver(&self, batch: &[T]) -> bool {
        match self.post(batch).await {
            Delivery::Stored => {
                self.count("stored", batch.len());
                true
            }
            Delivery::Refused(status) => {
                self.count("refused", batch.len());
                tracing::error!(
                    kind = self.target.kind,
                    status,
                    records = batch.len(),
                    "control plane refused an ingest batch as invalid; dropping it"
                );
                true
            }
            Delivery::Failed(reason) => {
                tracing::debug!(kind = self.target.kind, %reason, "ingest delivery failed");
                false
            }
        }
    }

    fn count(&self, outcome: &str, n: usize) {
        self.metrics
            .sent
            .with_label_values(&[self.target.kind, outcome])
            .inc_by(n as u64);
    }

    async fn post(&self, batch: &[T]) -> Delivery {
        let res = self
            .client
            .post(self.target.url.clone())
            .bearer_auth(self.target.secret.expose())
            .header("x-ingest-token", self.target.token.expose())
            .json(&Batch { records: batch })
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => Delivery::Stored,
            Ok(r) => {
                let s = r.status().as_u16();
                if matches!(s, 400 | 413 | 422) {
                    Delivery::Refused(s)
                } else {
                    Delivery::Failed(format!("status {s}"))
                }
            }
            // reqwest errors may quote the URL; it carries no secret (those are headers).
            Err(e) => Delivery::Failed(e.to_string()),
        }
    }

    /// Writes a batch to the spool (blocking I/O, off the runtime).
    async fn spool_batch(&self, batch: Vec<T>) {
        let n = batch.len();
        let spool = self.spool.clone();
        let res = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
            s.push(&batch).map(|dropped| (dropped, s.depth()))
        })
        .await;
        match res {
            Ok(Ok((dropped, depth))) => {
                self.count("spooled", n);
                self.set_depth(depth);
                if dropped > 0 {
                    self.metrics
                        .spool_dropped
                        .with_label_values(&[self.target.kind])
                        .inc_by(dropped);
                    tracing::warn!(
                        kind = self.target.kind,
                        dropped,
                        "ingest spool full: dropped the oldest records"
                    );
                }
            }
            Ok(Err(e)) => {
                self.metrics
                    .spool_dropped
                    .with_label_values(&[self.target.kind])
                    .inc_by(n as u64);
                tracing::error!(kind = self.target.kind, error = %e, records = n, "cannot write the ingest spool; records lost");
            }
            Err(e) => tracing::error!(error = %e, "ingest spool task failed"),
        }
    }

    fn set_depth(&self, depth: u64) {
        self.metrics
            .spool_depth
            .with_label_values(&[self.target.kind])
            .set(depth as i64);
    }

    /// Sends spooled batches oldest first; `true` when the spool is empty.
    async fn drain(&self) -> bool {
        loop {
            let spool = self.spool.clone();
            let oldest = tokio::task::spawn_blocking(move || {
                spool
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .oldest::<T>()
            })
            .await;
            let (seq, batch) = match oldest {
                Ok(Ok(Some(x))) => x,
                Ok(Ok(None)) => return true,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the ingest spool");
                    return false;
                }
                Err(_) => return false,
            };
            if !self.deliver(&batch).await {
                return false;
            }
            let spool = self.spool.clone();
            let removed = tokio::task::spawn_blocking(move || {
                let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
                s.remove(seq).map(|()| s.depth())
            })
            .await;
            match removed {
                Ok(Ok(depth)) => self.set_depth(depth),
                _ => {
                    tracing::error!("cannot remove a delivered batch from the spool");
                    return false;
                }
            }
        }
    }
}
