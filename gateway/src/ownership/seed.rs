//! Seeding ownership from the control plane: a gateway in control-plane mode reads every live
//! ownership record (`GET /internal/v1/objects`, internal secret, paged by cursor) at start
//! and again after each reconnect of its snapshot stream, so objects created before a restart
//! (or through other gateways while this one was cut off) keep their owners without Redis.
//!
//! Until the first seed completes, a gateway without Redis refuses requests that name or list
//! objects with 503 `ownership_unavailable` ([`super::Ownership::until_seeded`]): it cannot
//! tell an object of the project from another project's. Inference, and creating objects, are
//! served meanwhile. A failed seed is retried with backoff (1 s doubling to 30 s).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gateway_schema::{ObjectPage, Secret};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;

use super::Ownership;

/// Records asked for per page.
const PAGE: usize = 1000;
/// Longest wait for one page.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest page body accepted (a page of 1000 records is ~200 KiB).
const MAX_PAGE_BYTES: usize = 16 << 20;
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a seed failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot reach the control plane: {0}")]
    Http(String),
    #[error("the control plane answered {0}")]
    Status(u16),
    #[error("the control plane's page is unreadable: {0}")]
    Body(String),
}

/// Why the seeder could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SeedSetupError {
    #[error("server.control_plane.url: {0}")]
    Url(#[from] url::ParseError),
    #[error("server.control_plane.internal_secret: not a valid HTTP header value")]
    Secret,
    #[error("cannot build the HTTP client for the control plane: {0}")]
    Client(String),
}

/// The background service that seeds [`Ownership`] from the control plane.
pub struct Seeder {
    own: Arc<Ownership>,
    http: reqwest::Client,
    url: url::Url,
    auth: reqwest::header::HeaderValue,
    connections: watch::Receiver<u64>,
}

impl Seeder {
    /// A seeder reading `{base}/internal/v1/objects` with the internal secret; `connections`
    /// changes on each (re)connect of the snapshot stream, which triggers a new seed unless
    /// the last one started after it.
    pub fn new(
        own: Arc<Ownership>,
        base: &url::Url,
        secret: &Secret,
        connections: watch::Receiver<u64>,
    ) -> Result<Self, SeedSetupError> {
        let url = base.join("internal/v1/objects")?;
        let mut auth =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", secret.expose()))
                .map_err(|_| SeedSetupError::Secret)?;
        auth.set_sensitive(true);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(PAGE_TIMEOUT);
        for ca in crate::upstream_tls::extra_certificates() {
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| SeedSetupError::Client(e.to_string()))?;
        Ok(Self {
            own,
            http,
            url,
            auth,
            connections,
        })
    }

    /// Reads every page and loads it; returns the number of objects.
    pub async fn seed_once(&self) -> Result<usize, SeedError> {
        let mut after = 0i64;
        let mut total = 0;
        loop {
            let mut url = self.url.clone();
            url.query_pairs_mut()
                .append_pair("after", &after.to_string())
                .append_pair("limit", &PAGE.to_string());
            let mut resp = self
                .http
                .get(url)
                .header(reqwest::header::AUTHORIZATION, self.auth.clone())
                .send()
                .await
                .map_err(|e| SeedError::Http(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(SeedError::Status(resp.status().as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| SeedError::Http(e.to_string()))?
            {
                if body.len() + chunk.len() > MAX_PAGE_BYTES {
                    return Err(SeedError::Body("page too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            let page: ObjectPage =
                serde_json::from_slice(&body).map_err(|e| SeedError::Body(e.to_string()))?;
            total += page.objects.len();
            self.own.seed(&page.objects);
            match page.next_after {
                Some(next) if next > after => after = next,
                Some(_) => return Err(SeedError::Body("the cursor did not advance".into())),
                None => return Ok(total),
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Seeder {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut backoff = BACKOFF_MIN;
        let mut connections = self.connections.clone();
        loop {
            // A connection made before this seed starts is covered by it.
            connections.borrow_and_update();
            let wait = match self.seed_once().await {
                Ok(n) => {
                    self.own.seeded(n);
                    backoff = BACKOFF_MIN;
                    None
                }
                Err(e) => {
                    self.own.seed_failed();
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "cannot seed object ownership from the control plane");
                    let w = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    Some(w)
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = connections.changed() => {
                    if changed.is_err() {
                        // No stream any more (shutting down): wait for the backoff or the end.
                        if let Some(w) = wait {
                            tokio::time::sleep(w).await;
                        } else {
                            let _ = shutdown.changed().await;
                            return;
                        }
                    }
                }
                _ = async {
                    match wait {
                        Some(w) => tokio::time::sleep(w).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }
}
