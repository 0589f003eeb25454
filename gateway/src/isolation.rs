//! Tenant isolation on the provider's side, for one request about to go upstream: the
//! endpoint allowlist ([`crate::endpoints`]), then ownership of every provider object the
//! request names in its path or body ([`crate::ownership`]). Returns what the response phase
//! must do (record created ids, filter a list).

use std::sync::Arc;

use gateway_schema::{EndpointFamily, ProviderKind};
use http::Method;

use crate::endpoints::{self, Effect};
use crate::ownership::tracker::{Mode, Tracker};
use crate::ownership::{refs, OwnershipStore};
use crate::proxy::errors::Reject;
use crate::state::ActiveConfig;

/// Who asks, and which provider account the objects live in.
pub struct Parties {
    /// Provider kind (decides the allowlist and the not-found shape).
    pub kind: ProviderKind,
    /// `org/provider`: ids are unique per provider account.
    pub account: String,
    /// `org/project`.
    pub owner: String,
}

impl Parties {
    /// The parties of a request by `project` to `provider` on `cfg`.
    pub fn of(cfg: &ActiveConfig, project: usize, provider: usize) -> Self {
        let project = &cfg.projects[project];
        let org = &cfg.orgs[project.org].slug;
        Self {
            kind: cfg.providers[provider].kind,
            account: format!("{org}/{}", cfg.providers[provider].name),
            owner: project.label.to_string(),
        }
    }
}

/// Checks one request. `path` is what the provider will see (without the query); `json` the
/// request body unless it is a multipart form (any other body is scanned as JSON: some
/// servers parse JSON whatever the content type says).
pub async fn check(
    store: &Arc<dyn OwnershipStore>,
    who: Parties,
    enabled: &[EndpointFamily],
    method: &Method,
    path: &str,
    json: Option<&[u8]>,
) -> Result<Option<Box<Tracker>>, Reject> {
    let endpoint = endpoints::classify(who.kind, method, path, enabled)?;
    let body = json.map(refs::scan).transpose()?.unwrap_or_default();

    let mut mode = match endpoint.effect {
        Effect::Inference => None,
        Effect::Create => Some(Mode::Create),
        Effect::Use => Some(Mode::Use),
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

    let not_found = Reject::ObjectNotFound { kind: who.kind };
    let path_ids = endpoint.ids.iter().map(|r| &path[r.clone()]);
    for id in path_ids.chain(body.ids.iter().map(String::as_str)) {
        if !endpoints::is_object_id(id) {
            return Err(not_found);
        }
        match store.owns(&who.account, &who.owner, id).await {
            Ok(true) => {}
            Ok(false) => return Err(not_found),
            Err(e) => {
                tracing::warn!(error = %e, "object ownership check failed");
                return Err(Reject::OwnershipUnavailable);
            }
        }
    }

    if let Some(Mode::List(owned)) = &mut mode {
        *owned = store.owned(&who.account, &who.owner).await.map_err(|e| {
            tracing::warn!(error = %e, "could not load the project's objects for a list");
            Reject::OwnershipUnavailable
        })?;
    }
    Ok(mode.map(|m| Box::new(Tracker::new(store.clone(), who.account, who.owner, m))))
}
