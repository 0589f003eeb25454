//! Control-plane mode: the gateway takes its snapshot from the control plane's stream instead
//! of a file, verifies every snapshot with the control plane's public key, swaps it in through
//! the same [`LiveConfig::install`] path a file reload uses, keeps the last good one on disk,
//! and reports its status.
//!
//! Delivery is Server-Sent Events on `GET /internal/v1/snapshots/stream` (internal secret in
//! `Authorization: Bearer`): an event `snapshot` carries a [`SignedSnapshot`], an event
//! `current` (every few seconds) carries the newest version, which both keeps idle proxies
//! from closing the connection and tells the gateway its snapshot is still current. A gateway
//! that hears nothing for [`STALL_TIMEOUT`] reconnects; reconnects back off exponentially with
//! full jitter, so a control-plane restart does not bring every gateway back at once.

pub mod lkg;
pub mod spend;
pub mod sse;
mod status;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gateway_schema::{Secret, SignedSnapshot, VerifyError, VerifyingKey};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::ControlPlaneSettings;
use crate::live::{LiveConfig, ReloadError};
use crate::metrics::Metrics;
use crate::state::MissingKeys;

/// No byte from the stream for this long: the connection is presumed dead.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest snapshot event accepted (a snapshot of 100,000 keys is ~20 MiB).
const MAX_EVENT_BYTES: usize = 256 * 1024 * 1024;
/// First reconnect delay; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Why control-plane mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("server.control_plane.{field} ({reference}): {reason}")]
    Secret {
        field: &'static str,
        reference: String,
        reason: String,
    },
    #[error("server.control_plane.public_key: {0}")]
    PublicKey(gateway_schema::signed::KeyError),
    #[error("server.control_plane.internal_secret: not a valid HTTP header value")]
    SecretNotHeaderSafe,
    #[error("cannot build the HTTP client for the control plane: {0}")]
    Client(String),
}

/// What the gateway reports to the control plane about itself.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GatewayStatus {
    /// This gateway's id.
    pub id: String,
    /// Its proxy listen address.
    pub address: String,
    /// The snapshot version in force (0: none).
    pub version: u64,
    /// Provider key references that did not resolve, never their values.
    pub unresolved: Vec<String>,
    /// The last snapshot refusal or connection error, if any.
    pub last_error: Option<String>,
}

/// The control-plane client: one per gateway process (the background service).
pub struct ControlPlaneClient(pub Arc<Client>);

/// The client's state, shared with the blocking tasks that verify and install snapshots.
pub struct Client {
    live: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    settings: ControlPlaneSettings,
    key: VerifyingKey,
    auth_header: reqwest::header::HeaderValue,
    http: reqwest::Client,
    status: Mutex<GatewayStatus>,
    /// Why the last-known-good file could not be used (kept for `/readyz`'s reason).
    lkg_problem: Mutex<Option<String>>,
    /// Counts the stream's connections (object ownership re-seeds on each: records made
    /// elsewhere while this gateway was cut off).
    connections: tokio::sync::watch::Sender<u64>,
}

impl Client {
    /// Resolves the secrets and the public key (blocking: at start).
    pub fn new(
        settings: ControlPlaneSettings,
        listen: &str,
        live: Arc<LiveConfig>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let resolve = |field: &'static str, r: &gateway_schema::SecretRef| {
            r.resolve().map_err(|e| SetupError::Secret {
                field,
                reference: r.to_string(),
                reason: e.to_string(),
            })
        };
        let secret: Secret = resolve("internal_secret", &settings.internal_secret)?;
        let public = resolve("public_key", &settings.public_key)?;
        let key = VerifyingKey::from_base64(public.expose()).map_err(SetupError::PublicKey)?;
        let mut auth_header =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                .map_err(|_| SetupError::SecretNotHeaderSafe)?;
        auth_header.set_sensitive(true);
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        for ca in crate::upstream_tls::extra_certificates() {
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| SetupError::Client(e.to_string()))?;
        let id = settings
            .gateway_id
            .clone()
            .unwrap_or_else(default_gateway_id);
        Ok(Self {
            status: Mutex::new(GatewayStatus {
                id,
                address: listen.to_owned(),
                ..GatewayStatus::default()
            }),
            live,
            metrics,
            settings,
            key,
            auth_header,
            http,
            lkg_problem: Mutex::new(None),
            connections: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Sees the number of connections of the snapshot stream change on each (re)connect.
    pub fn connections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.connections.subscribe()
    }

    /// Loads the last-known-good file, if there is one and it verifies. Blocking: at start,
    /// before the listeners open, so a gateway restarted while the control plane is down
    /// serves at once.
    pub fn load_last_known_good(&self) {
        let path = &self.settings.last_known_good;
        let problem = |text: String| {
            *self
                .lkg_problem
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
        };
        match lkg::read(path) {
            Ok(None) => {
                problem(format!("no last-known-good file at {}", path.display()));
                let reason = format!(
                    "waiting for the first snapshot from the control plane at {}; no last-known-good file at {}",
                    self.settings.url,
                    path.display()
                );
                tracing::warn!("{reason}");
                self.live.set_waiting_reason(reason);
            }
            Ok(Some(signed)) => match self.apply(&signed, false) {
                Ok(version) => {
                    tracing::info!(version, path = %path.display(), "serving the last-known-good snapshot until the control plane answers");
                }
                Err(e) => {
                    problem(format!(
                        "the last-known-good file {} was refused ({e})",
                        path.display()
                    ));
                    let reason = format!(
                        "the last-known-good file {} was refused ({e}); waiting for the control plane at {}",
                        path.display(),
                        self.settings.url
                    );
                    tracing::error!("{reason}");
                    self.live.set_waiting_reason(reason);
                }
            },
            Err(e) => {
                problem(format!(
                    "the last-known-good file {} is unreadable ({e})",
                    path.display()
                ));
                self.metrics
                    .snapshot_rejections
                    .with_label_values(&["unreadable"])
                    .inc();
                let reason = format!(
                    "cannot read the last-known-good file {}: {e}; waiting for the control plane at {}",
                    path.display(),
                    self.settings.url
                );
                tracing::error!("{reason}");
                self.live.set_waiting_reason(reason);
            }
        }
    }

    /// Verifies and installs a signed snapshot; with `persist`, writes it as the new
    /// last-known-good file. Refusals are counted and recorded for the status report.
    fn apply(&self, signed: &SignedSnapshot, persist: bool) -> Result<u64, ApplyError> {
        let result = self.verify_and_install(signed);
        match &result {
            Ok(_) => {
                let cfg = self.live.load();
                {
                    let mut st = self.lock_status();
                    st.version = cfg.snapshot_version;
                    st.unresolved = cfg.unresolved.clone();
                    st.last_error = None;
                }
                for r in &cfg.unresolved {
                    tracing::warn!(reference = %r, "provider key reference does not resolve; that provider answers 503 provider_key_missing");
                }
                if persist {
                    if let Err(e) = lkg::write(&self.settings.last_known_good, signed) {
                        tracing::error!(error = %e, path = %self.settings.last_known_good.display(), "cannot write the last-known-good snapshot");
                    }
                }
                self.confirm();
            }
            Err(e) => {
                self.metrics
                    .snapshot_rejections
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::error!(version = signed.version, reason = e.reason(), error = %e, "snapshot refused; keeping the running one");
                self.lock_status().last_error = Some(e.to_string());
            }
        }
        result
    }

    fn verify_and_install(&self, signed: &SignedSnapshot) -> Result<u64, ApplyError> {
        let snapshot = signed.verify(&self.key).map_err(ApplyError::Verify)?;
        let running = self.live.load();
        if self.live.is_loaded() && snapshot.version == running.snapshot_version {
            return Ok(running.generation); // already in force
        }
        self.live
            .install(&snapshot, MissingKeys::Tolerate, true)
            .map_err(ApplyError::Install)?;
        tracing::info!(version = snapshot.version, "snapshot applied");
        Ok(snapshot.version)
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, GatewayStatus> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn confirm(&self) {
        self.metrics
            .snapshot_confirmed_ms
            .store(crate::metrics::unix_millis(), Ordering::Relaxed);
    }

    /// One connection: reads events until the stream ends, stalls or shutdown.
    async fn stream_once(self: &Arc<Self>, shutdown: &mut ShutdownWatch) -> Result<(), String> {
        let url = self
            .settings
            .url
            .join("internal/v1/snapshots/stream")
            .map_err(|e| e.to_string())?;
        let running = self.live.load();
        let have = if self.live.is_loaded() {
            running.snapshot_version
        } else {
            0
        };
        let id = self.lock_status().id.clone();
        let request = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.auth_header.clone())
            .header("x-gateway-id", id)
            .header("x-gateway-version", have.to_string())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let mut resp = tokio::time::timeout(STALL_TIMEOUT, request.send())
            .await
            .map_err(|_| "timed out connecting".to_owned())?
            .map_err(|e| format!("cannot connect: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "the control plane refused the snapshot stream with status {}",
                resp.status()
            ));
        }
        self.metrics.control_plane_connected.set(1);
        tracing::info!(url = %self.settings.url, "snapshot stream connected");
        self.connections.send_modify(|n| *n += 1);
        let mut reader = sse::Reader::new(MAX_EVENT_BYTES);
        loop {
            let chunk = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                c = tokio::time::timeout(STALL_TIMEOUT, resp.chunk()) => c,
            };
            let chunk = match chunk {
                Err(_) => return Err("the stream went silent".into()),
                Ok(Err(e)) => return Err(format!("stream error: {e}")),
                Ok(Ok(None)) => return Err("the control plane closed the stream".into()),
                Ok(Ok(Some(c))) => c,
            };
            for event in reader.feed(&chunk).map_err(|e| e.to_string())? {
                self.handle_event(event).await;
            }
        }
    }

    async fn handle_event(self: &Arc<Self>, event: sse::Event) {
        match event.name.as_str() {
            "snapshot" => {
                let signed = match SignedSnapshot::from_json(event.data.as_bytes()) {
                    Ok(s) => s,
                    Err(e) => {
                        let e = ApplyError::Verify(e);
                        self.metrics
                            .snapshot_rejections
                            .with_label_values(&[e.reason()])
                            .inc();
                        tracing::error!(error = %e, "snapshot event refused");
                        self.lock_status().last_error = Some(e.to_string());
                        return;
                    }
                };
                // Verifying, compiling (secrets, DNS) and writing the file block: off the runtime.
                let inner = self.clone();
                let _ = tokio::task::spawn_blocking(move || inner.apply(&signed, true)).await;
                self.report().await;
            }
            "current" => {
                let current: Option<u64> = event.data.trim().parse().ok();
                let running = self.live.load();
                if self.live.is_loaded() && current == Some(running.snapshot_version) {
                    self.confirm();
                }
            }
            _ => {}
        }
    }

    async fn report(&self) {
        let st = self.lock_status().clone();
        status::post(&self.http, &self.settings.url, &self.auth_header, &st).await;
    }
}

/// Why a pushed snapshot was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Verify(VerifyError),
    #[error(transparent)]
    Install(ReloadError),
}

impl ApplyError {
    /// Stable reason for the metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Verify(v) => v.reason(),
            Self::Install(ReloadError::Older { .. }) => "older",
            Self::Install(_) => "build",
        }
    }
}

fn default_gateway_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into());
    format!("{host}-{}", std::process::id())
}

/// Full-jitter exponential backoff: a random delay in `[0, min(max, base * 2^attempt)]`.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_MIN
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_MAX);
    let mut raw = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    let frac = (u64::from_le_bytes(raw) % 10_000) as f64 / 10_000.0;
    cap.mul_f64(frac).max(Duration::from_millis(50))
}

#[async_trait]
impl BackgroundService for ControlPlaneClient {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let client = &self.0;
        let mut attempt = 0u32;
        let mut heartbeat = tokio::time::interval(status::INTERVAL);
        loop {
            let result = {
                let stream = client.stream_once(&mut shutdown);
                tokio::pin!(stream);
                loop {
                    tokio::select! {
                        r = &mut stream => break r,
                        _ = heartbeat.tick() => client.report().await,
                    }
                }
            };
            // A stream that did connect starts the backoff afresh.
            if client.metrics.control_plane_connected.get() == 1 {
                attempt = 0;
            }
            client.metrics.control_plane_connected.set(0);
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = result {
                if attempt == 0 {
                    tracing::warn!(error = %e, "snapshot stream down; serving the current snapshot and reconnecting");
                } else {
                    tracing::debug!(error = %e, attempt, "snapshot stream still down");
                }
                if !client.live.is_loaded() {
                    let lkg = client
                        .lkg_problem
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone()
                        .unwrap_or_else(|| "no usable last-known-good file".into());
                    client.live.set_waiting_reason(format!(
                        "no snapshot yet: the control plane at {} is unreachable ({e}); {lkg}",
                        client.settings.url,
                    ));
                }
                client.lock_status().last_error = Some(e);
            }
            let wait = backoff(attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
