//! `GET /api/v1/gateways`: every gateway connected or heard from recently, with the snapshot
//! version it applied, so an admin can tell at a glance whether a change is live everywhere.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::rbac::Need;
use crate::state::AppState;
use crate::store::now_millis;

/// Gateways not heard from for this long are dropped from the list.
pub const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;
/// Gateways heard from within this long count as connected (they report every 10 s).
pub const CONNECTED_WITHIN_MS: i64 = 30 * 1000;

/// One gateway as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Gateway {
    /// Its id (`--gateway-id`, default host name and pid).
    pub id: String,
    /// The proxy address it reports.
    pub address: String,
    /// Where its last report came from.
    pub source_addr: String,
    /// The snapshot version it has applied (0: none yet).
    pub version: i64,
    /// Whether that is the version this control plane serves.
    pub current: bool,
    /// Heard from within the last 30 seconds.
    pub connected: bool,
    /// When it was last heard from (Unix milliseconds).
    pub last_seen_ms: i64,
    /// Provider key references it could not resolve (names only, never values).
    pub unresolved: Vec<String>,
    /// Its last snapshot refusal or connection error.
    pub last_error: Option<String>,
}

/// The list.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayList {
    /// The version this control plane serves (0: none).
    pub current_version: u64,
    /// Gateways seen in the last 10 minutes, by id.
    pub items: Vec<Gateway>,
}

/// List gateways and the snapshot version each has applied.
#[utoipa::path(get, path = "/api/v1/gateways", tag = "gateways",
    responses((status = 200, body = GatewayList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_gateways(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<GatewayList>, ApiError> {
    caller.authorize(None, Need::ReadGateways)?;
    let now = now_millis();
    let rows = st.store.list_gateways(now - FORGET_AFTER_MS).await?;
    let current_version = st.snapshots.current().map_or(0, |p| p.version);
    let items = rows
        .into_iter()
        .map(|r| Gateway {
            current: u64::try_from(r.version).is_ok_and(|v| v == current_version && v > 0),
            connected: now - r.last_seen_ms <= CONNECTED_WITHIN_MS,
            unresolved: serde_json::from_str(&r.unresolved).unwrap_or_default(),
            id: r.id,
            address: r.address,
            source_addr: r.source_addr,
            version: r.version,
            last_seen_ms: r.last_seen_ms,
            last_error: r.last_error,
        })
        .collect();
    Ok(Json(GatewayList {
        current_version,
        items,
    }))
}
