//! Tenant isolation on the provider's side, for one request about to go upstream: the
//! endpoint allowlist ([`crate::endpoints`]), then ownership of every provider object the
//! request names in its path or body ([`crate::ownership`]). Returns what the response phase
//! must do (record created ids, filter a list).

use std::sync::Arc;

use gateway_schema::EndpointFamily;
use http::Method;

use crate::endpoints::{self, Effect};
use crate::ownership::tracker::{Mode, Tracker};
use crate::ownership::{family_kind, refs, Ownership, Parties};
use crate::proxy::errors::Reject;
use crate::state::ActiveConfig;

/// The parties of a request by `project` to `provider` on `cfg`.
fn parties(cfg: &ActiveConfig, project: usize, provider: usize) -> Parties {
    let p = &cfg.projects[project];
    Parties::new(
        &cfg.orgs[p.org].slug,
        &p.slug,
        &cfg.providers[provider].name,
    )
}

/// One request about to go upstream: `project` sends `method path` (what the provider will
/// see, without the query) to `provider`.
pub struct Request<'a> {
    /// The config the request runs on.
    pub cfg: &'a ActiveConfig,
    /// Project index.
    pub project: usize,
    /// Provider index.
    pub provider: usize,
    /// Method.
    pub method: &'a Method,
    /// Provider-relative path.
    pub path: &'a str,
    /// The body to scan for object references (see [`crate::body_model::BodyModel::scannable`]).
    pub body: Option<&'a [u8]>,
}

/// Checks one request; plain inference naming no object allocates nothing here.
pub async fn check(own: &Arc<Ownership>, req: Request<'_>) -> Result<Option<Box<Tracker>>, Reject> {
    let kind = req.cfg.providers[req.provider].kind;
    let enabled = &req.cfg.projects[req.project].endpoints;
    let path = req.path;
    let endpoint = endpoints::classify(kind, req.method, path, enabled)?;
    let body = req.body.map(refs::scan).transpose()?.unwrap_or_default();

    let mut mode = match endpoint.effect {
        Effect::Inference => None,
        Effect::Create => Some(Mode::Create),
        Effect::Use => Some(Mode::Use),
        Effect::Delete => endpoint
            .ids
            .last()
            .map(|r| Mode::Delete(path[r.clone()].to_owned())),
        Effect::List => Some(Mode::List(Default::default())),
        Effect::ResponsesCreate => {
            if enabled.contains(&EndpointFamily::StoredResponses) {
                (body.store != Some(false)).then_some(Mode::Create)
            } else if body.store == Some(true) || body.previous_response {
                return Err(Reject::EndpointNotAllowed { admin: false });
            } else {
                None
            }
        }
    };

    let not_found = Reject::ObjectNotFound { kind };
    if mode.is_none() && endpoint.ids.is_empty() && body.ids.is_empty() {
        return Ok(None);
    }
    let mut ids: Vec<&str> = Vec::with_capacity(endpoint.ids.len() + body.ids.len());
    for r in &endpoint.ids {
        ids.push(&path[r.clone()]);
    }
    for id in &body.ids {
        ids.push(id);
    }
    let who = parties(req.cfg, req.project, req.provider);
    // Ids in the path are of the endpoint's family; ids in a body may name anything.
    let kind = family_kind(endpoint.family);
    let path_ids = endpoint.ids.len();
    for (i, id) in ids.into_iter().enumerate() {
        let id_kind = if i < path_ids { kind } else { "reference" };
        if !endpoints::is_object_id(id) {
            own.refused(&who, id_kind, crate::ownership::Refusal::NotOwned);
            return Err(not_found);
        }
        match own.owns(&who, id, id_kind).await {
            Ok(true) => {}
            Ok(false) => return Err(not_found),
            Err(_) => return Err(Reject::OwnershipUnavailable),
        }
    }

    if let Some(Mode::List(owned)) = &mut mode {
        *owned = own
            .owned(&who, kind)
            .await
            .map_err(|_| Reject::OwnershipUnavailable)?;
    }
    Ok(mode.map(|m| Box::new(Tracker::new(own.clone(), who, kind, m))))
}
