//! The compiled, immutable config the hot path reads: lookup indexes built off the hot path
//! from a validated [`Snapshot`], with provider secrets resolved and upstream hosts resolved.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use gateway_schema::{KeyDigest, ModelPattern, ProviderKind, Secret, SecretResolveError, Snapshot};
use http::HeaderValue;

/// Why a snapshot could not be compiled (validation has already passed).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{field} ({reference}): {source}")]
    Secret {
        field: String,
        reference: String,
        source: SecretResolveError,
    },
    #[error("{field}: the key contains characters not allowed in an HTTP header")]
    SecretNotHeaderSafe { field: String },
    #[error("{field}: {reason}")]
    Guardrails { field: String, reason: String },
    #[error("{field}: host {host} is not a valid header value: {reason}")]
    BadHost {
        field: String,
        host: String,
        reason: String,
    },
}

/// One virtual key's entry in the digest index.
#[derive(Debug)]
pub struct KeyEntry {
    /// Index into [`ActiveConfig::projects`].
    pub project: usize,
    /// Revoked keys are rejected.
    pub revoked: bool,
    /// Unix seconds after which the key is rejected.
    pub expires_at: Option<i64>,
    /// The key's id and rate limits.
    pub policy: crate::limits::KeyPolicy,
}

/// A project as the hot path needs it.
#[derive(Debug)]
pub struct Project {
    /// Slug, unique within its org.
    pub slug: Arc<str>,
    /// Index into [`ActiveConfig::orgs`].
    pub org: usize,
    /// `org/project`: how metrics and logs name the project (a bounded label: from config).
    pub label: Arc<str>,
    /// `None`: every routed model.
    pub allowed_models: Option<Vec<ModelPattern>>,
    /// Effective body cap (project's or global).
    pub max_request_bytes: u64,
    /// Most requests in flight at once on this gateway (`None`: no cap).
    pub max_in_flight: Option<u64>,
    /// Requests in flight now; carried over from the previous config by `org/project`.
    pub in_flight: crate::overload::concurrency::InFlightCounter,
    /// `org/project`, rate limits and budget.
    pub policy: crate::limits::ProjectPolicy,
    /// Endpoint families beyond inference the project may use.
    pub endpoints: Vec<gateway_schema::EndpointFamily>,
    /// Provider name (in the project's org) for `/v1` requests that name no model.
    pub default_provider: Option<Arc<str>>,
    /// The response cache, when the project enables it.
    pub cache: Option<Arc<crate::cache::ProjectCache>>,
    /// The project's guardrails, compiled once per snapshot (`None`: it has none).
    pub guardrails: Option<crate::guardrails::Guardrails>,
}

impl Project {
    /// Whether the project may use `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|pats| pats.iter().any(|p| p.matches(model)))
    }
}

/// An upstream provider with everything needed to reach it.
#[derive(Debug)]
pub struct Provider {
    /// Name (a bounded metrics label).
    pub name: Arc<str>,
    /// Wire protocol.
    pub kind: ProviderKind,
    /// HTTPS?
    pub tls: bool,
    /// Host name, for `Host` and SNI.
    pub host: String,
    /// `Host` header value (`host[:port]`).
    pub host_header: HeaderValue,
    /// `(host, port)` to resolve.
    pub resolve_target: (String, u16),
    /// Resolved addresses: resolved at build, refreshed in the background (see
    /// [`ActiveConfig::refresh_dns`]); empty while the name does not resolve.
    pub addrs: ArcSwap<Vec<SocketAddr>>,
    /// Whether the last lookup failed (so a failing name is logged once, not every retry).
    pub resolve_failing: std::sync::atomic::AtomicBool,
    /// Base path without trailing slash (`""` or `/openai`).
    pub base_path: String,
    /// The credential header to inject, prebuilt (`None` when the provider has no key).
    pub auth: Option<(&'static http::HeaderName, HeaderValue)>,
    /// A key is configured but optional and not set: requests get 503 until it is.
    pub key_missing: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Read timeout (covers time to first token).
    pub read_timeout: Duration,
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// The route's own pattern as written in config: the bounded `model` metrics label.
    pub label: Arc<str>,
    /// Index into [`ActiveConfig::providers`].
    pub provider: usize,
    /// Model name sent upstream instead of the client's.
    pub upstream_model: Option<Arc<str>>,
}

/// One org's namespace: its providers by name and its route table. Indexes point into the
/// config-wide [`ActiveConfig::providers`], so a request can only reach what its key's org names.
#[derive(Debug, Default)]
pub struct Org {
    /// Org slug.
    pub slug: Arc<str>,
    /// Provider name -> index (the `/{provider}/...` pass-through surface).
    pub provider_by_name: HashMap<String, usize>,
    /// Exact model routes.
    pub exact_routes: HashMap<String, Route>,
    /// Prefix routes, longest prefix first.
    pub prefix_routes: Vec<(String, Route)>,
}

impl Org {
    /// The route for a model name: an exact route, else the longest matching prefix.
    pub fn route(&self, model: &str) -> Option<&Route> {
        self.exact_routes.get(model).or_else(|| {
            self.prefix_routes
                .iter()
                .find(|(p, _)| model.starts_with(p.as_str()))
                .map(|(_, r)| r)
        })
    }
}

/// How a provider key that does not resolve is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKeys {
    /// A standalone file: fatal unless the provider says `api_key_optional`.
    FailUnlessOptional,
    /// A pushed snapshot: never fatal; the provider answers 503 `provider_key_missing` and the
    /// reference is reported to the control plane.
    Tolerate,
}

/// Everything the hot path reads, for one config generation. Immutable once built.
#[derive(Debug)]
pub struct ActiveConfig {
    /// Local generation, bumped at every successful (re)load; 0 before any snapshot.
    pub generation: u64,
    /// The snapshot's own version.
    pub snapshot_version: u64,
    /// Global body cap.
    pub max_request_bytes: u64,
    /// Digest -> key.
    pub keys: HashMap<[u8; 32], KeyEntry>,
    /// Orgs (the implicit one of a standalone file included).
    pub orgs: Vec<Org>,
    /// Projects of every org.
    pub projects: Vec<Project>,
    /// Providers of every org.
    pub providers: Vec<Provider>,
    /// Provider key references that did not resolve (`org/provider: env:NAME`), never values.
    pub unresolved: Vec<String>,
    /// Model prices: the snapshot's, then the shipped defaults.
    pub prices: crate::cost::PriceTable,
}

impl ActiveConfig {
    /// Compiles a validated snapshot. Resolves secrets and DNS: blocking, off the hot path.
    pub fn build(snapshot: &Snapshot, generation: u64) -> Result<Self, BuildError> {
        Self::build_with(snapshot, generation, MissingKeys::FailUnlessOptional)
    }

    /// A config with nothing in it: every key is unknown. Served (as not ready) until the
    /// first snapshot arrives.
    pub fn empty() -> Self {
        Self {
            generation: 0,
            snapshot_version: 0,
            max_request_bytes: gateway_schema::DEFAULT_MAX_REQUEST_BYTES,
            keys: HashMap::new(),
            orgs: Vec::new(),
            projects: Vec::new(),
            providers: Vec::new(),
            unresolved: Vec::new(),
            prices: crate::cost::PriceTable::default(),
        }
    }

    /// Compiles a validated snapshot, treating unresolvable provider keys as `missing` says.
    pub fn build_with(
        snapshot: &Snapshot,
        generation: u64,
        missing: MissingKeys,
    ) -> Result<Self, BuildError> {
        let mut cfg = Self {
            generation,
            snapshot_version: snapshot.version,
            max_request_bytes: snapshot.max_request_bytes,
            prices: crate::cost::PriceTable::new(&snapshot.prices),
            ..Self::empty()
        };
        for view in snapshot.orgs() {
            let org_index = cfg.orgs.len();
            let mut org = Org {
                slug: Arc::from(view.slug),
                ..Org::default()
            };
            for (i, p) in view.providers.iter().enumerate() {
                let index = cfg.providers.len();
                let field = view.field(&format!("providers[{i}].api_key"));
                let provider = build_provider(&field, p, missing)?;
                if provider.key_missing {
                    if let Some(r) = &p.api_key {
                        cfg.unresolved
                            .push(format!("{}/{}: {r}", view.slug, p.name));
                    }
                }
                cfg.providers.push(provider);
                org.provider_by_name.insert(p.name.to_string(), index);
            }
            for (pi, p) in view.projects.iter().enumerate() {
                let index = cfg.projects.len();
                let guardrails =
                    crate::guardrails::Guardrails::compile(&p.guardrails).map_err(|reason| {
                        BuildError::Guardrails {
                            field: view.field(&format!("projects[{pi}]")),
                            reason,
                        }
                    })?;
                cfg.projects.push(Project {
                    slug: Arc::from(p.slug.as_str()),
                    org: org_index,
                    label: Arc::from(format!("{}/{}", view.slug, p.slug)),
                    allowed_models: p.allowed_models.clone(),
                    max_request_bytes: p.max_request_bytes.unwrap_or(snapshot.max_request_bytes),
                    max_in_flight: p.max_in_flight,
                    in_flight: Default::default(),
                    policy: crate::limits::ProjectPolicy::new(view.slug, p),
                    endpoints: p.endpoints.clone(),
                    default_provider: p.default_provider.as_ref().map(|d| Arc::from(d.as_str())),
                    cache: p
                        .cache
                        .as_ref()
                        .filter(|c| c.enabled)
                        .map(|c| Arc::new(crate::cache::ProjectCache::new(c))),
                    guardrails,
                });
                for k in &p.keys {
                    cfg.keys.insert(
                        *k.digest.as_bytes(),
                        KeyEntry {
                            project: index,
                            revoked: k.revoked,
                            expires_at: k.expires_at,
                            policy: crate::limits::KeyPolicy::new(k),
                        },
                    );
                }
            }
            for r in view.routes {
                let Some(&provider) = org.provider_by_name.get(r.provider.as_str()) else {
                    continue; // validation guarantees the provider exists
                };
                let route = Route {
                    label: Arc::from(String::from(r.model.clone())),
                    provider,
                    upstream_model: r.upstream_model.as_deref().map(Arc::from),
                };
                match &r.model {
                    ModelPattern::Exact(m) => {
                        org.exact_routes.entry(m.clone()).or_insert(route);
                    }
                    ModelPattern::Prefix(p) => org.prefix_routes.push((p.clone(), route)),
                }
            }
            // Longest prefix wins; the sort is stable, so equal lengths keep file order.
            org.prefix_routes
                .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            cfg.orgs.push(org);
        }
        Ok(cfg)
    }

    /// Takes over the in-flight counters of the projects `previous` also has (same
    /// `org/project`), so a reload neither forgets running requests nor resets a cap.
    pub fn adopt_counters(&mut self, previous: &ActiveConfig) {
        let old: HashMap<&str, &crate::overload::concurrency::InFlightCounter> = previous
            .projects
            .iter()
            .map(|p| (&*p.label, &p.in_flight))
            .collect();
        for p in &mut self.projects {
            if let Some(c) = old.get(&*p.label) {
                p.in_flight = (*c).clone();
            }
        }
    }

    /// The org a project belongs to.
    pub fn org_of(&self, project: usize) -> Option<&Org> {
        self.orgs.get(self.projects.get(project)?.org)
    }

    /// Looks a presented key up by its digest.
    pub fn key(&self, presented: &[u8]) -> Option<&KeyEntry> {
        self.keys.get(KeyDigest::of(presented).as_bytes())
    }
}

/// Compiles one provider; `key_field` names its `api_key` field in errors.
fn build_provider(
    key_field: &str,
    p: &gateway_schema::ProviderSpec,
    missing: MissingKeys,
) -> Result<Provider, BuildError> {
    let tls = p.base_url.scheme() == "https";
    let host = p.base_url.host_str().unwrap_or_default().to_owned();
    let port = p
        .base_url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let resolve_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let resolve_target = (resolve_host, port);
    let mut failing = false;
    let addrs = match resolve(&resolve_target) {
        Ok(a) => a,
        Err(reason) => {
            // Not fatal: DNS may come back. Requests get 502 until it resolves.
            tracing::warn!(provider = %p.name, host = %host, %reason,
                "cannot resolve provider host; will retry in the background");
            failing = true;
            Vec::new()
        }
    };
    let host_header_text = match p.base_url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let host_header =
        HeaderValue::from_str(&host_header_text).map_err(|e| BuildError::BadHost {
            field: key_field.replace("api_key", "base_url"),
            host: host.clone(),
            reason: e.to_string(),
        })?;

    let secret: Option<Secret> = match &p.api_key {
        None => None,
        Some(r) => match r.resolve() {
            Ok(s) => Some(s),
            Err(e) if p.api_key_optional || missing == MissingKeys::Tolerate => {
                tracing::warn!(provider = %p.name, reference = %r, error = %e,
                    "provider key is not set; requests to this provider get 503 until it is");
                None
            }
            Err(source) => {
                return Err(BuildError::Secret {
                    field: key_field.to_owned(),
                    reference: r.to_string(),
                    source,
                })
            }
        },
    };
    let key_missing = p.api_key.is_some() && secret.is_none();
    let auth = match secret {
        None => None,
        Some(secret) => {
            static X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
            let (name, value) = match p.kind {
                ProviderKind::Anthropic => (&X_API_KEY, secret.expose().to_owned()),
                ProviderKind::Openai | ProviderKind::OpenaiCompatible => (
                    &http::header::AUTHORIZATION,
                    format!("Bearer {}", secret.expose()),
                ),
            };
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| BuildError::SecretNotHeaderSafe {
                    field: key_field.to_owned(),
                })?;
            value.set_sensitive(true);
            Some((name, value))
        }
    };

    Ok(Provider {
        name: Arc::from(p.name.as_str()),
        kind: p.kind,
        tls,
        host,
        host_header,
        resolve_target,
        addrs: ArcSwap::from_pointee(addrs),
        resolve_failing: std::sync::atomic::AtomicBool::new(failing),
        base_path: p.base_url.path().trim_end_matches('/').to_owned(),
        auth,
        key_missing,
        connect_timeout: Duration::from_millis(p.connect_timeout_ms),
        read_timeout: Duration::from_millis(p.read_timeout_ms),
    })
}

fn resolve((host, port): &(String, u16)) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = (host.as_str(), *port)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .collect();
    if addrs.is_empty() {
        return Err("no addresses".into());
    }
    Ok(addrs)
}

impl ActiveConfig {
    /// Re-resolves every provider host and swaps in the new addresses. Blocking DNS: run it
    /// off the hot path. Keeps the old addresses when a lookup fails.
    pub fn refresh_dns(&self) {
        for p in &self.providers {
            use std::sync::atomic::Ordering::Relaxed;
            match resolve(&p.resolve_target) {
                Ok(addrs) => {
                    p.resolve_failing.store(false, Relaxed);
                    if **p.addrs.load() != addrs {
                        tracing::info!(provider = %p.name, ?addrs, "provider addresses changed");
                        p.addrs.store(std::sync::Arc::new(addrs));
                    }
                }
                Err(reason) => {
                    if !p.resolve_failing.swap(true, Relaxed) {
                        tracing::warn!(provider = %p.name, host = %p.resolve_target.0, %reason,
                            "cannot resolve provider host; keeping the last known addresses");
                    }
                }
            }
        }
    }

    /// Whether some provider has no address yet.
    pub fn has_unresolved(&self) -> bool {
        self.providers.iter().any(|p| p.addrs.load().is_empty())
    }
}
