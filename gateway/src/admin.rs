//! The admin listener: `/healthz` (live), `/readyz` (ready to serve) and `/metrics`.
//! Separate port from the proxy, so it can stay private to the cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

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

/// The admin listener's HTTP application: [`AdminApp`]'s answers, with the gateway's own
/// handling of slow, vanished and malformed clients (Pingora's `HttpServer` logs each one at
/// ERROR and keeps idle connections 60 s).
pub struct AdminServer {
    /// The endpoints.
    pub app: AdminApp,
    /// Caps on the request head.
    pub head_caps: crate::proxy::errors::HeadCaps,
    /// Seconds a kept-alive connection may stay idle.
    pub idle_timeout_secs: u64,
    /// Slow and vanished clients.
    pub conn_metrics: crate::connections::ConnMetrics,
}

#[async_trait]
impl HttpServerApp for AdminServer {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match http.read_request().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                let answer = crate::proxy::head_error(
                    &self.head_caps,
                    &self.conn_metrics,
                    &self.app.metrics,
                    "admin",
                    &e,
                    http.session_type(),
                );
                if let Some((header, body)) = answer {
                    if let Err(e) = http.write_error_response(*header, body).await {
                        tracing::debug!(error = %e, "admin: writing an error response failed");
                    }
                }
                return None;
            }
        }
        let resp = match self.head_caps.check(http.req_header()) {
            Err(reject) => {
                self.app
                    .metrics
                    .rejections
                    .with_label_values(&[reject.code()])
                    .inc();
                http.set_keepalive(None);
                reply(reject.status(), "application/json", reject.body().to_vec())
            }
            Ok(()) => {
                if *shutdown.borrow() {
                    http.set_keepalive(None);
                } else {
                    http.set_keepalive(Some(self.idle_timeout_secs));
                }
                self.app.response(&mut http).await
            }
        };
        let (parts, body) = resp.into_parts();
        let header: ResponseHeader = parts.into();
        if let Err(e) = http.write_response_header(Box::new(header)).await {
            tracing::debug!(error = %e, "admin: client went away");
            return None;
        }
        if let Err(e) = http.write_response_body(body.into(), true).await {
            tracing::debug!(error = %e, "admin: client went away");
            return None;
        }
        let persistent = HttpPersistentSettings::for_session(&http);
        match http.finish().await {
            Ok(reusable) => reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, persistent)),
            Err(e) => {
                tracing::debug!(error = %e, "admin: finishing the response failed");
                None
            }
        }
    }
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
