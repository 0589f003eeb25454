//! The admin port: liveness, readiness (the store answers) and Prometheus metrics. Bind it to
//! an internal address: it carries no authentication beyond the network.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::headers::apply_security_headers;
use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz(State(st): State<AppState>) -> Response {
    let mut r = (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response();
    apply_security_headers(&mut r, st.config.server.hsts());
    r
}

/// `GET /readyz`: the store is reachable.
pub async fn readyz(State(st): State<AppState>) -> Response {
    let reachable = tokio::time::timeout(std::time::Duration::from_secs(2), st.store.ping())
        .await
        .unwrap_or(false);
    let mut r = if reachable {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "store unreachable"})),
        )
            .into_response()
    };
    apply_security_headers(&mut r, st.config.server.hsts());
    r
}

async fn metrics(State(st): State<AppState>) -> Response {
    let mut r = (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.encode(),
    )
        .into_response();
    apply_security_headers(&mut r, st.config.server.hsts());
    r
}

/// The admin router.
pub fn router(st: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(st)
}
