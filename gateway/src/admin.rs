//! The admin listener: `/healthz` (live), `/readyz` (ready to serve) and `/metrics`.
//! Separate port from the proxy, so it can stay private to the cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::live::LiveConfig;
use crate::metrics::Metrics;

/// Serves the admin endpoints.
pub struct AdminApp {
    /// Metrics to render.
    pub metrics: Arc<Metrics>,
    /// The live config (readiness: a config is loaded).
    pub live: Arc<LiveConfig>,
    /// Set once a graceful shutdown has begun: readiness turns 503.
    pub draining: Arc<AtomicBool>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert("content-type", v);
    }
    let len = resp.body().len();
    resp.headers_mut().insert("content-length", len.into());
    resp
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let json = "application/json";
        match session.req_header().uri.path() {
            "/healthz" => reply(200, json, br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                if self.draining.load(Ordering::Acquire) {
                    reply(503, json, br#"{"status":"draining"}"#.to_vec())
                } else if !self.live.is_loaded() {
                    let body = serde_json::json!({
                        "status": "not_ready",
                        "reason": self.live.waiting_reason(),
                    });
                    reply(503, json, body.to_string().into_bytes())
                } else {
                    let cfg = self.live.load();
                    let body = serde_json::json!({
                        "status": "ready",
                        "config_generation": cfg.generation,
                        "snapshot_version": cfg.snapshot_version,
                    });
                    reply(200, json, body.to_string().into_bytes())
                }
            }
            "/metrics" => {
                // Per-project in-flight counts are read here, at scrape time, not per request.
                let cfg = self.live.load();
                self.metrics.project_in_flight.reset();
                for p in &cfg.projects {
                    self.metrics
                        .project_in_flight
                        .with_label_values(&[&*p.label])
                        .set(p.in_flight.current() as i64);
                }
                reply(200, "text/plain; version=0.0.4", self.metrics.render())
            }
            _ => reply(404, json, br#"{"error":{"message":"not found","type":"not_found_error","param":null,"code":"unknown_path"}}"#.to_vec()),
        }
    }
}
