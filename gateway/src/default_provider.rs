//! The provider for `/v1` requests that name no model (file uploads and lists, batches,
//! stored responses): the project's `default_provider`, else the only provider of the
//! project's org speaking OpenAI's protocol (`openai` or `openai-compatible`), else 400
//! `no_default_provider`. Guessing between two OpenAI-protocol providers would put a tenant's
//! files in an account the admin did not choose, so the gateway refuses instead.

use gateway_schema::ProviderKind;

use crate::proxy::errors::Reject;
use crate::state::{ActiveConfig, Org, Project};

/// The provider index for a model-less `/v1` request of `project`, within its `org`.
pub fn resolve(cfg: &ActiveConfig, org: &Org, project: &Project) -> Result<usize, Reject> {
    if let Some(name) = project.default_provider.as_deref() {
        return org
            .provider_by_name
            .get(name)
            .copied()
            .ok_or(Reject::NoDefaultProvider);
    }
    let mut openai = org.provider_by_name.values().copied().filter(|&i| {
        matches!(
            cfg.providers[i].kind,
            ProviderKind::Openai | ProviderKind::OpenaiCompatible
        )
    });
    match (openai.next(), openai.next()) {
        (Some(i), None) => Ok(i),
        _ => Err(Reject::NoDefaultProvider),
    }
}
