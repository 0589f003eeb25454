//! The response cache in the proxy's phases: the lookup (request phase, after policy, body
//! and model rewrite, so the key covers the body exactly as it would go upstream), the
//! `x-cache` headers and the capture of a miss's response (response phase), and storing it
//! once the exchange is over (logging phase). The cache itself is [`crate::cache`].

use bytes::Bytes;
use gateway_schema::CacheHitRecord;
use pingora::http::{Method, ResponseHeader};
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::errors::Reject;
use super::Gateway;
use crate::cache::entry::Entry;
use crate::cache::key::{self, Bypass, Identity, Key};
use crate::cache::{Capture, ProjectCache, RequestCache};
use crate::governance::Settlement;
use crate::state::ActiveConfig;

/// Step 7: answers the request from the cache when its project enables the cache and an
/// entry is live. `Ok(true)`: answered (nothing goes upstream).
pub async fn lookup(
    gw: &Gateway,
    cfg: &ActiveConfig,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<bool, Reject> {
    let Some(project) = ctx.project.map(|i| &cfg.projects[i]) else {
        return Ok(false);
    };
    let Some(policy) = project.cache.as_deref() else {
        return Ok(false);
    };
    let m = &gw.cache.metrics;
    let key = match request_key(cfg, session, ctx, policy) {
        Ok(k) => k,
        Err(bypass) => {
            m.requests
                .with_label_values(&[&project.label, "bypass"])
                .inc();
            m.bypasses
                .with_label_values(&[&project.label, bypass.as_str()])
                .inc();
            ctx.cache = Some(RequestCache::Bypass(bypass));
            return Ok(false);
        }
    };
    let now_ms = crate::limits::now_ms();
    let Some(entry) = gw.cache.lookup(&key, now_ms).await else {
        m.requests
            .with_label_values(&[&project.label, "miss"])
            .inc();
        ctx.cache = Some(RequestCache::Miss(Box::new(Capture::new(key, policy))));
        return Ok(false);
    };
    m.requests.with_label_values(&[&project.label, "hit"]).inc();
    ctx.cache = Some(RequestCache::Hit);
    write_hit(session, ctx, &entry, now_ms).await?;
    gw.cache.report_hit(hit_record(cfg, ctx, &entry, now_ms));
    Ok(true)
}

/// The request's key, or why it bypasses the cache.
fn request_key(
    cfg: &ActiveConfig,
    session: &Session,
    ctx: &RequestCtx,
    policy: &ProjectCache,
) -> Result<Key, Bypass> {
    let req = session.req_header();
    if req.method != Method::POST {
        return Err(Bypass::Method);
    }
    if req
        .headers
        .get_all("cache-control")
        .iter()
        .any(|v| key::header_bypasses(v.as_bytes()))
    {
        return Err(Bypass::Header);
    }
    if ctx.objects.is_some() {
        return Err(Bypass::Stateful);
    }
    let (Some(project), Some(provider), Some(body)) = (
        ctx.project.map(|i| &cfg.projects[i]),
        ctx.chosen_provider(),
        ctx.body.as_deref(),
    ) else {
        return Err(Bypass::NotJson);
    };
    let gov = ctx.gov.as_ref();
    let mut vary = Vec::new();
    for name in key::VARY_HEADERS {
        for v in req.headers.get_all(*name) {
            vary.extend_from_slice(name.as_bytes());
            vary.push(b'=');
            vary.extend_from_slice(v.as_bytes());
            vary.push(b'\n');
        }
    }
    let id = Identity {
        org: &cfg.orgs[project.org].slug,
        project: &project.slug,
        provider: &provider.name,
        upstream_model: gov.and_then(|g| g.upstream_model()).unwrap_or(""),
        path: ctx.upstream_path.as_deref().unwrap_or(""),
        strips_usage_chunk: gov.is_some_and(|g| g.strips_usage_chunk()),
        vary: &vary,
    };
    key::key(id, body, &policy.spec)
}

/// Writes a stored response: its body and content type, this request's id, `x-cache: hit`,
/// the stored response's id, its age, and this request's rate-limit headers.
async fn write_hit(
    session: &mut Session,
    ctx: &mut RequestCtx,
    entry: &Entry,
    now_ms: u64,
) -> Result<(), Reject> {
    let internal = |_| Reject::Internal;
    let mut h = ResponseHeader::build(200, Some(8)).map_err(internal)?;
    h.insert_header("content-type", entry.content_type.as_str())
        .map_err(internal)?;
    h.insert_header("content-length", entry.body.len().to_string())
        .map_err(internal)?;
    h.insert_header("x-request-id", ctx.request_id.as_str())
        .map_err(internal)?;
    h.insert_header("x-cache", "hit").map_err(internal)?;
    h.insert_header(
        "x-cache-source-request-id",
        entry.source_request_id.as_str(),
    )
    .map_err(internal)?;
    let age = now_ms.saturating_sub(entry.stored_at_ms) / 1000;
    h.insert_header("age", age.to_string()).map_err(internal)?;
    if let Some(gov) = ctx.gov.as_mut() {
        gov.on_cache_hit(&mut h).map_err(internal)?;
    }
    ctx.response_bytes += entry.body.len();
    let body: Bytes = entry.body.clone();
    let write = async {
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    };
    write.await.map_err(internal)
}

/// The record of a hit: who, which stored response, and what it saved.
fn hit_record(cfg: &ActiveConfig, ctx: &RequestCtx, entry: &Entry, now_ms: u64) -> CacheHitRecord {
    let project = ctx.project.map(|i| &cfg.projects[i]);
    let usage = entry.usage.unwrap_or_default();
    let cost = entry
        .usage
        .zip(entry.model.as_deref())
        .and_then(|(u, model)| cfg.prices.price(model).map(|p| p.cost_pico(&u)));
    CacheHitRecord {
        id: crate::request_id::new_id(),
        request_id: ctx.request_id.clone(),
        source_request_id: entry.source_request_id.clone(),
        at_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
        org: project.map_or_else(String::new, |p| cfg.orgs[p.org].slug.to_string()),
        project: project.map_or_else(String::new, |p| p.slug.to_string()),
        key_id: ctx
            .gov
            .as_ref()
            .and_then(|g| g.key_id.as_deref())
            .map(str::to_owned),
        provider: ctx
            .chosen_provider()
            .map_or_else(String::new, |p| p.name.to_string()),
        route: ctx.model_label.as_deref().unwrap_or("native").to_owned(),
        model: entry.model.clone(),
        input_tokens: usage.input,
        output_tokens: usage.output,
        cache_read_tokens: usage.cache_read,
        cache_write_tokens: usage.cache_write,
        cost_saved_pico: cost,
    }
}

/// The response head: `x-cache` (and `x-cache-bypass` with the reason); a miss starts
/// capturing.
pub fn on_response_head(resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> pingora::Result<()> {
    let Some(c) = ctx.cache.as_mut() else {
        return Ok(());
    };
    resp.insert_header("x-cache", c.header())?;
    match c {
        RequestCache::Bypass(b) => resp.insert_header("x-cache-bypass", b.as_str())?,
        RequestCache::Miss(capture) => capture.on_head(resp),
        RequestCache::Hit => {}
    }
    Ok(())
}

/// One response chunk as the client receives it.
pub fn on_response_body(body: Option<&Bytes>, end_of_stream: bool, ctx: &mut RequestCtx) {
    if let Some(RequestCache::Miss(c)) = ctx.cache.as_mut() {
        c.on_body(body, end_of_stream);
    }
}

/// The end of a miss: stores its response when it is a complete 200 within the entry size.
pub fn finish(
    gw: &Gateway,
    cache: &mut Option<RequestCache>,
    request_id: &str,
    settled: &Settlement,
    ok: bool,
    now_ms: u64,
) {
    if !matches!(cache, Some(RequestCache::Miss(_))) {
        return;
    }
    let Some(RequestCache::Miss(capture)) = cache.take() else {
        return;
    };
    let complete = ok && settled.complete;
    let outcome = capture.finish(
        complete,
        request_id,
        settled.usage,
        settled.model.clone(),
        now_ms,
    );
    let label = match outcome {
        Ok((key, entry)) => {
            gw.cache.store(key, entry, now_ms);
            "stored"
        }
        Err(why) => why,
    };
    gw.cache.metrics.stores.with_label_values(&[label]).inc();
}

/// Whether the request was answered from the cache (it then has no usage record).
pub fn was_hit(ctx: &RequestCtx) -> bool {
    matches!(ctx.cache, Some(RequestCache::Hit))
}
