//! The audit trail: every mutating request and every authentication or authorization failure
//! becomes one record (time, actor, role, action, resource, outcome, request id, source).
//! Never a body, a token or a key: only fields this module picks are written.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Identity;
use crate::error::ErrorCode;
use crate::headers::RequestId;
use crate::state::AppState;
use crate::store::{now_millis, AuditRecord, Store};

#[derive(Debug, Default, Clone)]
struct Note {
    issuer: Option<String>,
    subject: Option<String>,
    email: Option<String>,
    role: Option<String>,
    reason: Option<String>,
    denied: bool,
}

/// What layers and handlers learn about a request, for its audit record.
#[derive(Debug, Default, Clone)]
pub struct AuditCtx(Arc<Mutex<Note>>);

impl AuditCtx {
    fn with(&self, f: impl FnOnce(&mut Note)) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }

    /// Records the verified caller.
    pub fn set_actor(&self, id: &Identity) {
        self.with(|n| {
            n.issuer = Some(id.issuer.clone());
            n.subject = Some(id.subject.clone());
            n.email = id.email.clone();
        });
    }

    /// Records a component (internal secret) caller.
    pub fn set_component(&self) {
        self.with(|n| {
            n.issuer = Some("internal".into());
            n.subject = Some("component".into());
        });
    }

    /// Records the role that decided.
    pub fn set_role(&self, role: String) {
        self.with(|n| n.role = Some(role));
    }

    /// Marks the request as refused by authorization (recorded even when answered 404).
    pub fn set_denied(&self) {
        self.with(|n| n.denied = true);
    }

    /// Records a failure reason code.
    pub fn set_reason(&self, reason: &str) {
        self.with(|n| n.reason = Some(reason.to_owned()));
    }

    fn take(&self) -> Note {
        let mut out = Note::default();
        self.with(|n| out = n.clone());
        out
    }
}

/// Only these characters are copied from a path into a record; anything else (encoded
/// bytes, CR/LF, colons...) replaces the whole path with a marker.
fn safe_resource(path: &str) -> String {
    let ok = path.len() <= 512
        && path
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"/-_.".contains(&b));
    if ok {
        path.to_owned()
    } else {
        "<invalid path>".into()
    }
}

fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "denied",
        s if s >= 500 => "error",
        s if s >= 400 => "rejected",
        _ => "success",
    }
}

/// Middleware: writes the record once the response is known.
pub async fn record(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let ctx = AuditCtx::default();
    req.extensions_mut().insert(ctx.clone());
    let method = req.method().clone();
    let action_path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "<unmatched>".into());
    let resource = safe_resource(req.uri().path());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let source_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".into());

    // The request runs to completion in its own task, so a client that disconnects
    // mid-request cannot cancel the change after it is made but before it is recorded.
    let task = tokio::spawn(async move {
        let resp = next.run(req).await;
        let rec = build(
            &ctx,
            &method,
            &action_path,
            resource,
            request_id,
            source_addr,
            &resp,
        );
        if let Some(rec) = rec {
            write(&st, &rec).await;
        }
        resp
    });
    match task.await {
        Ok(resp) => resp,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            crate::error::ApiError::internal().into_response()
        }
    }
}

/// The record for a finished request, or None when it is not audited (a successful read).
fn build(
    ctx: &AuditCtx,
    method: &Method,
    action_path: &str,
    resource: String,
    request_id: String,
    source_addr: String,
    resp: &Response,
) -> Option<AuditRecord> {
    let status = resp.status();
    let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let auth_failure = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
    let note = ctx.take();
    if !(mutating || auth_failure || note.denied) {
        return None;
    }
    // Component telemetry that succeeded (gateway status reports, ingest batches) changes no
    // configuration and would flood the log; its failures are still recorded.
    if action_path.starts_with("/internal/") && status.is_success() {
        return None;
    }
    let reason = note
        .reason
        .or_else(|| resp.extensions().get::<ErrorCode>().map(|c| c.0.to_owned()));
    Some(AuditRecord {
        id: 0,
        at_ms: now_millis(),
        actor_issuer: note.issuer,
        actor_subject: note.subject,
        actor_email: note.email,
        role: note.role,
        action: format!("{method} {action_path}"),
        resource,
        outcome: if note.denied {
            "denied"
        } else {
            outcome(status)
        }
        .into(),
        status: i64::from(status.as_u16()),
        reason,
        request_id,
        source_addr,
    })
}

async fn write(st: &AppState, rec: &AuditRecord) {
    match st.store.append_audit(rec).await {
        Ok(()) => st.metrics.audit_records.inc(),
        Err(e) => {
            st.metrics.audit_write_failures.inc();
            tracing::error!(error = %e, request_id = %rec.request_id, "cannot write audit record");
        }
    }
}

/// Retention periods, in days.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Audit records.
    pub audit_days: u32,
    /// Usage records.
    pub usage_days: u32,
    /// Guardrail block records.
    pub guardrail_blocks_days: u32,
}

/// Purges audit, usage and guardrail block records older than their retention periods now
/// and then hourly, until shutdown.
pub async fn retention_task(
    store: Store,
    retention: Retention,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let days_ms = |d: u32| i64::from(d) * 24 * 3600 * 1000;
    let retention_days = retention.audit_days;
    let usage_retention_days = retention.usage_days;
    let guardrail_blocks_retention_days = retention.guardrail_blocks_days;
    let keep_ms = days_ms(retention_days);
    let usage_keep_ms = days_ms(usage_retention_days);
    let blocks_keep_ms = days_ms(guardrail_blocks_retention_days);
    loop {
        match store.purge_audit(now_millis() - keep_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, retention_days, "purged old audit records"),
            Err(e) => tracing::warn!(error = %e, "audit retention purge failed"),
        }
        match store.purge_usage(now_millis() - usage_keep_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, usage_retention_days, "purged old usage records"),
            Err(e) => tracing::warn!(error = %e, "usage retention purge failed"),
        }
        // Cache hits are usage's other half (what was saved): same retention.
        match store.purge_cache_hits(now_millis() - usage_keep_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                purged = n,
                usage_retention_days,
                "purged old cache-hit records"
            ),
            Err(e) => tracing::warn!(error = %e, "cache-hit retention purge failed"),
        }
        match store
            .purge_guardrail_blocks(now_millis() - blocks_keep_ms)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                purged = n,
                guardrail_blocks_retention_days,
                "purged old guardrail block records"
            ),
            Err(e) => tracing::warn!(error = %e, "guardrail block retention purge failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
