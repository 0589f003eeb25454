//! `/internal/v1/snapshots/stream` and `/internal/v1/gateways/status`: how gateways receive
//! signed snapshots and report what they applied (internal secret checked by the auth layer).
//!
//! The stream is Server-Sent Events: `event: snapshot` with a `SignedSnapshot` as its data,
//! sent at once when the gateway's `x-gateway-version` is older than the current snapshot and
//! again for every newer one; `event: current` with the current version every
//! [`HEARTBEAT`], which keeps idle connections open through proxies and lets gateways measure
//! how fresh their snapshot is.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiJson;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{now_millis, GatewayRow};

/// How often the stream says which version is current.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// Counts a stream as a connected gateway until it is dropped.
struct Connected(prometheus::IntGauge);

impl Connected {
    fn new(g: prometheus::IntGauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// A gateway id: 1 to 128 characters of `[A-Za-z0-9._:-]`.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// `GET /internal/v1/snapshots/stream`.
pub async fn stream(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !st.snapshots.enabled() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "snapshots_disabled",
            "this control plane has no snapshot signing key (snapshots.signing_key)",
        )
        .into_response();
    }
    let have: u64 = header(&headers, "x-gateway-version")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Some(id) = header(&headers, "x-gateway-id").filter(|id| valid_id(id)) {
        let row = GatewayRow {
            id: id.to_owned(),
            address: String::new(),
            source_addr: peer.to_string(),
            version: i64::try_from(have).unwrap_or(i64::MAX),
            unresolved: "[]".into(),
            last_error: None,
            last_seen_ms: now_millis(),
        };
        if let Err(e) = st.store.touch_gateway(&row).await {
            tracing::warn!(error = %e, "cannot record the gateway");
        }
    }
    let rx = st.snapshots.subscribe();
    let guard = Connected::new(st.metrics.connected_gateways.clone());
    let state = (rx, have, guard, tokio::time::Instant::now(), true);
    let closed = st.snapshots.closed();
    let events = futures_util::stream::unfold(
        state,
        |(mut rx, mut sent, guard, mut next_beat, first)| async move {
            loop {
                let current = rx.borrow_and_update().clone();
                if let Some(p) = current.as_ref().filter(|p| p.version > sent) {
                    sent = p.version;
                    let ev = Event::default().event("snapshot").data(p.envelope.as_str());
                    return Some((Ok::<_, Infallible>(ev), (rx, sent, guard, next_beat, false)));
                }
                if first || tokio::time::Instant::now() >= next_beat {
                    next_beat = tokio::time::Instant::now() + HEARTBEAT;
                    let v = current.as_ref().map_or(0, |p| p.version);
                    let ev = Event::default().event("current").data(v.to_string());
                    return Some((Ok(ev), (rx, sent, guard, next_beat, false)));
                }
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    () = tokio::time::sleep_until(next_beat) => {}
                }
            }
        },
    );
    // take_until: the stream ends when the control plane shuts down.
    Sse::new(futures_util::StreamExt::take_until(events, closed)).into_response()
}

/// Body of `POST /internal/v1/gateways/status`.
#[derive(Debug, Deserialize)]
pub struct StatusReport {
    /// The gateway's id.
    pub id: String,
    /// Its proxy listen address.
    #[serde(default)]
    pub address: String,
    /// The snapshot version it has applied.
    #[serde(default)]
    pub version: u64,
    /// Provider key references it could not resolve (never values).
    #[serde(default)]
    pub unresolved: Vec<String>,
    /// Its last error.
    #[serde(default)]
    pub last_error: Option<String>,
}

fn clip(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// `POST /internal/v1/gateways/status`.
pub async fn status(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(r): ApiJson<StatusReport>,
) -> Result<StatusCode, ApiError> {
    if !valid_id(&r.id) {
        return Err(ApiError::bad_request(
            "invalid_gateway_id",
            "id must be 1 to 128 characters of [A-Za-z0-9._:-]",
        ));
    }
    let unresolved: Vec<String> = r
        .unresolved
        .iter()
        .take(1000)
        .map(|u| clip(u, 300))
        .collect();
    let row = GatewayRow {
        id: r.id,
        address: clip(&r.address, 256),
        source_addr: peer.to_string(),
        version: i64::try_from(r.version).unwrap_or(i64::MAX),
        unresolved: serde_json::to_string(&unresolved).map_err(|_| ApiError::internal())?,
        last_error: r.last_error.as_deref().map(|e| clip(e, 1000)),
        last_seen_ms: now_millis(),
    };
    st.store.upsert_gateway(&row).await?;
    Ok(StatusCode::NO_CONTENT)
}
