//! The gateway's status report: `POST /internal/v1/gateways/status` after every snapshot it
//! applies or refuses and every [`INTERVAL`], so `GET /api/v1/gateways` shows each gateway's
//! version, unresolved references and last error.

use std::time::Duration;

use super::GatewayStatus;

/// How often the status is reported while nothing changes.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Posts the status; failures are logged at debug level (the stream's own errors say more).
pub async fn post(
    http: &reqwest::Client,
    base: &url::Url,
    auth: &reqwest::header::HeaderValue,
    status: &GatewayStatus,
) {
    let Ok(url) = base.join("internal/v1/gateways/status") else {
        return;
    };
    let sent = http
        .post(url)
        .header(reqwest::header::AUTHORIZATION, auth.clone())
        .timeout(Duration::from_secs(5))
        .json(status)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => tracing::debug!(status = %r.status(), "status report refused"),
        Err(e) => tracing::debug!(error = %e, "status report failed"),
    }
}
