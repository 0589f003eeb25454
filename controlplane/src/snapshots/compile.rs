//! Compiles the store's rows into a [`Snapshot`]: one org per org row, each project with its
//! policy folded in, keys as digests, providers with secret *references* only.

use std::collections::HashMap;

use gateway_schema::{
    EndpointFamily, GuardrailRule, KeyDigest, KeySpec, ModelPattern, OrgSpec, ProjectSpec,
    ProviderKind, ProviderSpec, RouteSpec, SecretRef, Slug, Snapshot,
};

use crate::store::{ConfigRows, PolicyRow};

/// A stored value that cannot be part of a snapshot (the API validates everything it stores,
/// so this means the database was edited by hand or is corrupt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot compile the snapshot: {what} {id}: {reason}")]
pub struct CompileError {
    what: &'static str,
    id: i64,
    reason: String,
}

fn bad(what: &'static str, id: i64) -> impl Fn(String) -> CompileError {
    move |reason| CompileError { what, id, reason }
}

fn slug(what: &'static str, id: i64, s: &str) -> Result<Slug, CompileError> {
    Slug::parse(s).map_err(|e| bad(what, id)(e.to_string()))
}

fn positive(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0)
}

/// Builds the snapshot (version 0: the publisher numbers it).
pub fn compile(rows: &ConfigRows) -> Result<Snapshot, CompileError> {
    let mut orgs: Vec<OrgSpec> = Vec::with_capacity(rows.orgs.len());
    let mut org_index = HashMap::new();
    for o in &rows.orgs {
        org_index.insert(o.id, orgs.len());
        orgs.push(OrgSpec {
            slug: slug("org", o.id, &o.slug)?,
            providers: Vec::new(),
            routes: Vec::new(),
            projects: Vec::new(),
        });
    }

    let mut provider_slugs = HashMap::new();
    for p in &rows.providers {
        let Some(&oi) = org_index.get(&p.org_id) else {
            continue;
        };
        let err = bad("provider", p.id);
        let spec = ProviderSpec {
            name: slug("provider", p.id, &p.slug)?,
            kind: p.kind.parse::<ProviderKind>().map_err(&err)?,
            base_url: p
                .base_url
                .parse()
                .map_err(|e: url::ParseError| err(e.to_string()))?,
            api_key: p
                .api_key_ref
                .as_deref()
                .map(SecretRef::parse)
                .transpose()
                .map_err(|e| err(e.to_string()))?,
            api_key_optional: false,
            connect_timeout_ms: 10_000,
            read_timeout_ms: 300_000,
        };
        provider_slugs.insert(p.id, spec.name.clone());
        orgs[oi].providers.push(spec);
    }

    for r in &rows.routes {
        let (Some(&oi), Some(provider)) =
            (org_index.get(&r.org_id), provider_slugs.get(&r.provider_id))
        else {
            continue;
        };
        orgs[oi].routes.push(RouteSpec {
            model: ModelPattern::try_from(r.model.clone()).map_err(bad("route", r.id))?,
            provider: provider.clone(),
            upstream_model: r.upstream_model.clone(),
        });
    }

    let policies: HashMap<i64, &PolicyRow> = rows.policies.iter().map(|p| (p.id, p)).collect();
    let mut project_at = HashMap::new();
    for p in &rows.projects {
        let Some(&oi) = org_index.get(&p.org_id) else {
            continue;
        };
        let policy = p.policy_id.and_then(|id| policies.get(&id).copied());
        let allowed_models = match policy.and_then(|pol| pol.allowed_models.as_deref()) {
            None => None,
            Some(json) => Some(
                serde_json::from_str::<Vec<ModelPattern>>(json)
                    .map_err(|e| bad("policy", p.policy_id.unwrap_or_default())(e.to_string()))?,
            ),
        };
        let policy_err = || bad("policy", p.policy_id.unwrap_or_default());
        let endpoints = match policy.and_then(|pol| pol.endpoints.as_deref()) {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<EndpointFamily>>(json)
                .map_err(|e| policy_err()(e.to_string()))?,
        };
        // A default provider deleted since the policy named it is dropped, not fatal: the
        // gateway then falls back as documented, and every other change still publishes.
        let default_provider = match policy.and_then(|pol| pol.default_provider.as_deref()) {
            None => None,
            Some(name) => {
                let name = Slug::parse(name).map_err(|e| policy_err()(e.to_string()))?;
                orgs[oi]
                    .providers
                    .iter()
                    .any(|pr| pr.name == name)
                    .then_some(name)
            }
        };
        let cache = match policy.and_then(|pol| pol.cache.as_deref()) {
            None => None,
            Some(json) => Some(
                serde_json::from_str::<gateway_schema::CacheSpec>(json)
                    .map_err(|e| policy_err()(e.to_string()))?,
            ),
        };
        let guardrails = match policy.and_then(|pol| pol.guardrails.as_deref()) {
            None => Vec::new(),
            Some(json) => serde_json::from_str::<Vec<GuardrailRule>>(json)
                .map_err(|e| policy_err()(e.to_string()))?,
        };
        project_at.insert(p.id, (oi, orgs[oi].projects.len()));
        orgs[oi].projects.push(ProjectSpec {
            slug: slug("project", p.id, &p.slug)?,
            keys: Vec::new(),
            allowed_models,
            max_request_bytes: positive(policy.and_then(|pol| pol.max_request_bytes)),
            requests_per_minute: positive(policy.and_then(|pol| pol.requests_per_minute)),
            tokens_per_minute: positive(policy.and_then(|pol| pol.tokens_per_minute)),
            monthly_budget_cents: positive(policy.and_then(|pol| pol.monthly_budget_cents)),
            max_in_flight: positive(policy.and_then(|pol| pol.max_in_flight)),
            endpoints,
            default_provider,
            cache,
            guardrails,
        });
    }

    for k in &rows.keys {
        let Some(&(oi, pi)) = project_at.get(&k.project_id) else {
            continue;
        };
        orgs[oi].projects[pi].keys.push(KeySpec {
            digest: KeyDigest::parse_hex(&k.digest).map_err(bad("key", k.id))?,
            id: Some(k.key_id.clone()),
            prefix: Some(k.prefix.clone()),
            revoked: k.revoked_at.is_some(),
            expires_at: k.expires_at,
            requests_per_minute: None,
            tokens_per_minute: None,
        });
    }

    Ok(Snapshot {
        version: 0,
        max_request_bytes: gateway_schema::DEFAULT_MAX_REQUEST_BYTES,
        providers: Vec::new(),
        routes: Vec::new(),
        projects: Vec::new(),
        orgs,
        prices: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OrgRow, ProjectRow, ProviderRow};

    fn rows(endpoints: Option<&str>, default_provider: Option<&str>) -> ConfigRows {
        ConfigRows {
            orgs: vec![OrgRow {
                id: 1,
                slug: "acme".into(),
                display_name: "Acme".into(),
                created_at: 0,
            }],
            providers: vec![ProviderRow {
                id: 1,
                org_id: 1,
                slug: "openai".into(),
                kind: "openai".into(),
                base_url: "https://api.openai.com".into(),
                api_key_ref: Some("env:OPENAI_API_KEY".into()),
                created_at: 0,
            }],
            routes: Vec::new(),
            policies: vec![PolicyRow {
                id: 1,
                org_id: 1,
                slug: "files".into(),
                allowed_models: None,
                max_request_bytes: None,
                requests_per_minute: None,
                tokens_per_minute: None,
                monthly_budget_cents: None,
                created_at: 0,
                max_in_flight: None,
                endpoints: endpoints.map(str::to_owned),
                default_provider: default_provider.map(str::to_owned),
                cache: None,
                guardrails: None,
            }],
            projects: vec![ProjectRow {
                id: 1,
                org_id: 1,
                slug: "web".into(),
                display_name: "Web".into(),
                policy_id: Some(1),
                created_at: 0,
            }],
            keys: Vec::new(),
        }
    }

    fn project(rows: &ConfigRows) -> ProjectSpec {
        compile(rows)
            .unwrap_or_else(|e| panic!("{e}"))
            .orgs
            .remove(0)
            .projects
            .remove(0)
    }

    #[test]
    fn a_policy_brings_its_endpoint_families_and_default_provider() {
        let p = project(&rows(Some(r#"["files","batches"]"#), Some("openai")));
        assert_eq!(
            p.endpoints,
            vec![EndpointFamily::Files, EndpointFamily::Batches]
        );
        assert_eq!(
            p.default_provider.as_ref().map(Slug::as_str),
            Some("openai")
        );
        let p = project(&rows(None, None));
        assert!(p.endpoints.is_empty());
        assert_eq!(p.default_provider, None);
    }

    #[test]
    fn a_deleted_default_provider_is_dropped_not_fatal() {
        let p = project(&rows(None, Some("gone")));
        assert_eq!(p.default_provider, None);
    }

    #[test]
    fn a_corrupt_endpoint_list_is_a_compile_error() {
        assert!(compile(&rows(Some(r#"["everything"]"#), None)).is_err());
    }
}
