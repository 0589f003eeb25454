//! Month-to-date spend from the control plane. Spend lives in memory (or Redis), so without
//! this a restarted gateway, or one whose Redis lost its data, would start the month from zero
//! and let a project spend its budget again. The control plane holds every gateway's reported
//! usage: this task asks it for the month's spend per project at start and every
//! [`INTERVAL`], and raises each counter to it (never lowers one: the local counter is ahead
//! of what has been reported). Between two refreshes a gateway without Redis sees other
//! gateways' spend with that delay; with Redis, spend is shared at once and this only
//! restores what Redis lost.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Deserialize;

use super::Client;
use crate::cost::calendar::Month;
use crate::governance::Governor;

/// How often spend is refreshed once it has been read.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// How soon a failed read is retried.
const RETRY: Duration = Duration::from_secs(5);

/// `GET /internal/v1/spend`'s answer.
#[derive(Debug, Deserialize)]
struct SpendAnswer {
    projects: Vec<ProjectSpend>,
}

#[derive(Debug, Deserialize)]
struct ProjectSpend {
    org: String,
    project: String,
    cost_pico: u64,
}

/// The background task.
pub struct SpendSync {
    /// The control-plane client (its URL, secret and HTTP client).
    pub client: Arc<Client>,
    /// Where spend counters live.
    pub gov: Arc<Governor>,
}

impl SpendSync {
    /// Reads the month's spend and raises the counters; how many projects it named.
    async fn refresh(&self) -> Result<usize, String> {
        let now_secs = crate::limits::now_ms() as i64 / 1000;
        let month = Month::of(now_secs);
        let mut url = self
            .client
            .settings
            .url
            .join("internal/v1/spend")
            .map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("from_ms", &(month.start_secs() * 1000).to_string())
            .append_pair("to_ms", &(month.next().start_secs() * 1000).to_string());
        let r = self
            .client
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                self.client.auth_header.clone(),
            )
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("status {}", r.status()));
        }
        let answer: SpendAnswer = r.json().await.map_err(|e| e.to_string())?;
        let spend: Vec<(String, u64)> = answer
            .projects
            .into_iter()
            .map(|p| (format!("{}/{}", p.org, p.project), p.cost_pico))
            .collect();
        self.gov.seed_spend(&spend, now_secs).await;
        Ok(spend.len())
    }
}

#[async_trait]
impl BackgroundService for SpendSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut restored = false;
        loop {
            let wait = match self.refresh().await {
                Ok(n) => {
                    if !restored {
                        tracing::info!(
                            projects = n,
                            "month-to-date spend read from the control plane"
                        );
                        restored = true;
                    }
                    INTERVAL
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read spend from the control plane");
                    RETRY
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
