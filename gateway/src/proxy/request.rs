//! The request phase: request id, surface, key, body (capped), model routing, policy and
//! guardrails.
//! Everything here is decided before a byte goes upstream.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_schema::ProviderKind;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::ctx::RequestCtx;
use super::errors::{write_reject, Reject};
use super::{cache, models, Gateway};
// Header names read on every request, prebuilt (a `&str` name is parsed on every lookup).
use super::upstream::{ANTHROPIC_VERSION_HEADER as ANTHROPIC_VERSION, X_REQUEST_ID};
use crate::body_model::BodyModel;
use crate::routing::{self, Surface};
use crate::state::ActiveConfig;
use crate::{auth, body, default_provider, endpoints, isolation};

/// Returns `Ok(true)` when the gateway answered the request itself.
pub async fn request_filter(
    gw: &Gateway,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<bool> {
    ctx.request_id = crate::request_id::from_inbound(
        session
            .req_header()
            .headers
            .get(&X_REQUEST_ID)
            .map(|v| v.as_bytes()),
    );
    // Kept-alive connections idle out after `server.idle_timeout_seconds` (Pingora's own
    // default is 60 s); a session already told to close stays closing.
    if session.as_mut().get_keepalive().is_some() {
        session.as_mut().set_keepalive(Some(gw.idle_timeout_secs));
    }
    if let Err(reject) = gw.head_caps.check(session.req_header()) {
        gw.metrics
            .rejections
            .with_label_values(&[reject.code()])
            .inc();
        write_reject(session, &reject, &ctx.request_id, true).await?;
        ctx.reject = Some(reject);
        return Ok(true);
    }
    let cfg = gw.live.load();
    ctx.config = Some(cfg.clone());
    match admit(gw, &cfg, session, ctx).await {
        Ok(Admitted::Proxy) => Ok(false),
        Ok(Admitted::Answered) => Ok(true),
        Err(reject) => {
            gw.metrics
                .rejections
                .with_label_values(&[reject.code()])
                .inc();
            if reject == Reject::BodyTimeout {
                gw.conn_metrics
                    .timeouts
                    .with_label_values(&[gw.listener, "body"])
                    .inc();
            }
            if reject == Reject::Overloaded {
                let project = ctx.project.map_or("-", |i| &*cfg.projects[i].label);
                gw.metrics
                    .sheds
                    .with_label_values(&["overloaded", "gateway", project])
                    .inc();
            }
            // A body we did not read in full leaves the connection unusable for another request.
            let close = !session.as_mut().is_body_done();
            write_reject(session, &reject, &ctx.request_id, close).await?;
            ctx.reject = Some(reject);
            Ok(true)
        }
    }
}

enum Admitted {
    Proxy,
    Answered,
}

async fn admit(
    gw: &Gateway,
    cfg: &ActiveConfig,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<Admitted, Reject> {
    let surface = routing::surface(session.req_header().uri.path())?;
    if cfg.generation == 0 {
        return Err(Reject::NoSnapshot);
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let key = auth::authenticate_entry(cfg, session.req_header(), now)?;
    let project_idx = key.project;
    ctx.project = Some(project_idx);
    let project = &cfg.projects[project_idx];
    let org = &cfg.orgs[project.org];
    // The in-flight cap first: a request it refuses takes nothing from the rate limits.
    admit_in_flight(gw, cfg, project_idx, ctx)?;
    let now_ms = crate::limits::now_ms();
    let gov = ctx
        .gov
        .insert(gw.gov.admit(&project.policy, &key.policy, now_ms).await?);
    let mut reservation = gw.body_budget.reservation();
    let read = body::read_capped(
        session,
        project.max_request_bytes,
        gw.body_read_timeout,
        &mut reservation,
    )
    .await;
    ctx.body_reservation = Some(reservation);
    let body = read?;
    ctx.request_bytes = body.as_ref().map_or(0, Bytes::len);
    ctx.has_anthropic_version = session
        .req_header()
        .headers
        .contains_key(&ANTHROPIC_VERSION);

    let req = session.req_header();
    let path = req.uri.path();
    let query = req.uri.query();
    let body = BodyModel::new(&req.headers, body.as_ref());
    let (idx, provider_path) = match surface {
        Surface::OpenAi => {
            if req.method == "GET" && body.body().is_none() {
                if path == "/v1/models" || path == "/v1/models/" {
                    write_model_list(session, cfg, project_idx, &ctx.request_id).await?;
                    return Ok(Admitted::Answered);
                }
                if let Some(m) = models::retrieve_id(path).map(str::to_owned) {
                    models::write_model(session, cfg, project_idx, &m, &ctx.request_id).await?;
                    return Ok(Admitted::Answered);
                }
            }
            let idx = match &body.model()? {
                Some(model) => {
                    let route = org.route(model).ok_or(Reject::ModelNotFound)?;
                    if !project.allows(model) {
                        return Err(Reject::ModelNotAllowed);
                    }
                    let upstream = route.upstream_model.as_deref().unwrap_or(model.as_ref());
                    if project.policy.monthly_budget_cents.is_some()
                        && cfg.prices.price(upstream).is_none()
                    {
                        return Err(Reject::ModelNotPriced {
                            model: upstream.to_owned(),
                        });
                    }
                    ctx.body = match &route.upstream_model {
                        Some(m) if **m != **model => body.rewrite(m)?,
                        _ => body.body().cloned(),
                    };
                    gov.plan(
                        cfg.providers[route.provider].kind,
                        path,
                        &mut ctx.body,
                        Some(upstream),
                    );
                    ctx.model_label = Some(route.label.clone());
                    route.provider
                }
                None => {
                    // Only endpoints that create or name objects may omit the model.
                    let endpoint = endpoints::classify(
                        ProviderKind::Openai,
                        &req.method,
                        path,
                        &project.endpoints,
                    )?;
                    if endpoint.family.is_none() {
                        return Err(Reject::MissingModel);
                    }
                    ctx.body = body.body().cloned();
                    ctx.model_label = Some(Arc::from("none"));
                    let idx = default_provider::resolve(cfg, org, project)?;
                    gov.plan(cfg.providers[idx].kind, path, &mut ctx.body, None);
                    idx
                }
            };
            (idx, path)
        }
        Surface::Native { rest_start } => {
            let idx = routing::native_provider(org, path, rest_start)?;
            if project.allowed_models.is_some() {
                // A restricted project must name an allowed model whenever it sends a body to
                // an inference endpoint, so an unreadable body cannot slip past the model
                // policy; a named model must be allowed on any endpoint.
                let kind = cfg.providers[idx].kind;
                match body.model_if_any()? {
                    Some(m) if !project.allows(&m) => return Err(Reject::ModelNotAllowed),
                    None if body.body().is_some()
                        && endpoints::is_inference(kind, &req.method, &path[rest_start..]) =>
                    {
                        return Err(Reject::ModelNotAllowed)
                    }
                    _ => {}
                }
            }
            if project.policy.monthly_budget_cents.is_some() {
                if let Some(m) = body.model_if_any()? {
                    if cfg.prices.price(&m).is_none() {
                        return Err(Reject::ModelNotPriced { model: m.into() });
                    }
                }
            }
            ctx.body = body.body().cloned();
            gov.plan(
                cfg.providers[idx].kind,
                &path[rest_start..],
                &mut ctx.body,
                None,
            );
            ctx.model_label = Some(Arc::from("native"));
            (idx, &path[rest_start..])
        }
    };
    let provider = &cfg.providers[idx];
    if provider.key_missing {
        return Err(Reject::ProviderKeyMissing);
    }
    if let Some(rules) = &project.guardrails {
        let who = crate::guardrails::Subject {
            request_id: &ctx.request_id,
            org: &org.slug,
            project: &project.slug,
            label: &project.label,
            key_id: key.policy.id.as_deref(),
        };
        crate::guardrails::enforce(&gw.guardrails, rules, &req.headers, &mut ctx.body, who)?;
    }
    let request = isolation::Request {
        cfg,
        project: project_idx,
        provider: idx,
        method: &req.method,
        path: provider_path,
        body: body.scannable(),
    };
    ctx.objects = isolation::check(&gw.ownership, request).await?;
    ctx.provider = Some(idx);
    ctx.upstream_path = Some(routing::upstream_path(
        &provider.base_path,
        provider_path,
        query,
    ));
    // Step 6, guardrails, goes here: they may redact `ctx.body`, which the cache keys on.
    // Step 7: the exact-match response cache, on the body exactly as it would go upstream.
    if cache::lookup(gw, cfg, session, ctx).await? {
        return Ok(Admitted::Answered);
    }
    Ok(Admitted::Proxy)
}

/// The per-gateway and per-project in-flight caps; the project's slot is kept in `ctx` until
/// the request (a stream included) ends.
fn admit_in_flight(
    gw: &Gateway,
    cfg: &ActiveConfig,
    project_idx: usize,
    ctx: &mut RequestCtx,
) -> Result<(), Reject> {
    let over_gateway = gw
        .max_in_flight
        .is_some_and(|max| gw.in_flight.load(std::sync::atomic::Ordering::Acquire) as u64 > max);
    let project = &cfg.projects[project_idx];
    let slot = (!over_gateway)
        .then(|| project.in_flight.try_enter(project.max_in_flight))
        .flatten();
    match slot {
        Some(s) => {
            ctx.project_slot = Some(s);
            Ok(())
        }
        None => {
            let scope = if over_gateway { "gateway" } else { "project" };
            gw.metrics
                .sheds
                .with_label_values(&["concurrency_limit", scope, &project.label])
                .inc();
            Err(Reject::ConcurrencyLimit)
        }
    }
}

/// `GET /v1/models`: the exact model routes this project may use, in OpenAI's list shape.
async fn write_model_list(
    session: &mut Session,
    cfg: &ActiveConfig,
    project_idx: usize,
    request_id: &str,
) -> Result<(), Reject> {
    let project = &cfg.projects[project_idx];
    let org = &cfg.orgs[project.org];
    let mut names: Vec<&str> = org
        .exact_routes
        .keys()
        .map(String::as_str)
        .filter(|m| project.allows(m))
        .collect();
    names.sort_unstable();
    let data: Vec<serde_json::Value> = names
        .iter()
        .map(|m| {
            let owner = org
                .route(m)
                .map_or("gateway", |r| &*cfg.providers[r.provider].name);
            serde_json::json!({"id": m, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    let body = Bytes::from(serde_json::json!({"object": "list", "data": data}).to_string());
    let write = async {
        let mut h = ResponseHeader::build(200, Some(3))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("x-request-id", request_id)?;
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    };
    write.await.map_err(|_| Reject::Internal)
}
