//! The logging phase: one structured access-log line and the metrics of one request.
//! Never a body, never a key: only ids, names from config, numbers and codes.

use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::Gateway;

const NONE: &str = "-";

/// Records the finished request.
pub fn log_request(
    gw: &Gateway,
    session: &mut Session,
    e: Option<&pingora::Error>,
    ctx: &mut RequestCtx,
) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .or_else(|| ctx.reject.as_ref().map(|r| r.status()))
        .unwrap_or(0);
    let cfg = ctx.config.as_deref();
    let project = cfg
        .zip(ctx.project)
        .map_or(NONE, |(c, i)| &*c.projects[i].label);
    let provider = cfg
        .zip(ctx.provider)
        .map_or(NONE, |(c, i)| &*c.providers[i].name);
    let model = ctx.model_label.as_deref().unwrap_or(NONE);
    let elapsed = ctx.started.elapsed();
    let upstream = ctx.upstream_started.map(|t| t.elapsed());

    let now_ms = crate::limits::now_ms();
    let settled = match (ctx.gov.as_mut(), cfg) {
        (Some(gov), Some(c)) => gw.gov.settle(gov, &c.prices, provider, model, now_ms),
        _ => Default::default(),
    };
    // A cache hit is reported as a hit (with what it saved), not as usage.
    let hit = super::cache::was_hit(ctx);
    if let (Some(gov), Some(_), false) = (ctx.gov.as_ref(), ctx.provider, hit) {
        let facts = crate::governance::RequestFacts {
            request_id: &ctx.request_id,
            provider,
            route: model,
            status,
            latency_ms: ctx.started.elapsed().as_millis() as u64,
            now_ms,
        };
        gw.gov.report(gov, &settled, facts);
    }
    let cache = ctx.cache.as_ref().map(|c| c.header());
    super::cache::finish(
        gw,
        &mut ctx.cache,
        &ctx.request_id,
        &settled,
        e.is_none(),
        now_ms,
    );
    let usage = settled.usage;

    let m = &gw.metrics;
    let status_label = status_text(status);
    m.requests
        .with_label_values(&[provider, model, project, status_label.as_str()])
        .inc();
    m.request_duration
        .with_label_values(&[provider])
        .observe(elapsed.as_secs_f64());
    if let Some(u) = upstream {
        m.upstream_duration
            .with_label_values(&[provider])
            .observe(u.as_secs_f64());
    }
    m.request_bytes
        .with_label_values(&[provider])
        .inc_by(ctx.request_bytes as u64);
    m.response_bytes
        .with_label_values(&[provider])
        .inc_by(ctx.response_bytes as u64);

    tracing::info!(
        target: "access",
        request_id = %ctx.request_id,
        method = %session.req_header().method,
        project,
        provider,
        model,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        upstream_ms = upstream.map(|u| u.as_secs_f64() * 1000.0),
        request_bytes = ctx.request_bytes,
        response_bytes = ctx.response_bytes,
        code = ctx.reject.as_ref().map(|r| r.code()),
        input_tokens = usage.map(|u| u.input),
        output_tokens = usage.map(|u| u.output),
        cache_read_tokens = usage.map(|u| u.cache_read),
        cache_write_tokens = usage.map(|u| u.cache_write),
        cost_pico = settled.cost_pico,
        complete = settled.metered.then_some(settled.complete),
        cache,
        error = e.map(|e| e.etype().as_str()),
    );
}

fn status_text(status: u16) -> String {
    if status == 0 {
        "none".to_owned()
    } else {
        status.to_string()
    }
}
