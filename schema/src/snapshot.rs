//! The snapshot: everything a gateway enforces, in one serialisable value.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{KeyDigest, SecretRef, Slug};

/// The default request-body cap: 10 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 10 * 1024 * 1024;

fn default_max_request_bytes() -> u64 {
    DEFAULT_MAX_REQUEST_BYTES
}

/// Everything a gateway enforces. Unknown fields are rejected so a typo never silently
/// disables a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Grows with every change the control plane commits; 0 in standalone files.
    #[serde(default)]
    pub version: u64,
    /// Global request-body cap in bytes; a project may only lower it.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: u64,
    /// Upstream LLM providers.
    #[serde(default)]
    pub providers: Vec<ProviderSpec>,
    /// The model route table for the OpenAI-compatible `/v1` surface, matched in order.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Tenants and their virtual keys.
    #[serde(default)]
    pub projects: Vec<ProjectSpec>,
    /// Organisations, each with its own providers, routes and projects. The top-level
    /// `providers`, `routes` and `projects` form one more, implicit org named
    /// [`IMPLICIT_ORG`] (so a standalone file without `orgs` keeps working unchanged).
    /// A key only ever reaches the providers, routes and policy of its own org.
    #[serde(default)]
    pub orgs: Vec<OrgSpec>,
    /// Model prices (per million tokens, integer micro-units of currency), first match wins;
    /// consulted before the gateway's shipped default table.
    #[serde(default)]
    pub prices: Vec<PriceSpec>,
}

/// The slug of the org formed by a snapshot's top-level providers, routes and projects.
pub const IMPLICIT_ORG: &str = "default";

/// One organisation: a namespace of providers, routes and projects. Two orgs may use the
/// same provider or project names with different meanings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    /// Org identifier (the `org` half of `org/project` in metrics and logs).
    pub slug: Slug,
    /// Upstream LLM providers of this org.
    #[serde(default)]
    pub providers: Vec<ProviderSpec>,
    /// This org's model route table.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// This org's projects.
    #[serde(default)]
    pub projects: Vec<ProjectSpec>,
}

/// A borrowed view of one org, the implicit one included: what [`Snapshot::orgs`] yields.
#[derive(Debug, Clone, Copy)]
pub struct OrgView<'a> {
    /// Org slug ([`IMPLICIT_ORG`] for the top level).
    pub slug: &'a str,
    /// Path prefix of this org's fields in error messages (`""` or `orgs[2].`).
    pub field_prefix: Option<usize>,
    /// Providers.
    pub providers: &'a [ProviderSpec],
    /// Routes.
    pub routes: &'a [RouteSpec],
    /// Projects.
    pub projects: &'a [ProjectSpec],
}

impl OrgView<'_> {
    /// The path of a field of this org in error messages: `providers[0].name` or
    /// `orgs[2].providers[0].name`.
    pub fn field(&self, rest: &str) -> String {
        match self.field_prefix {
            None => rest.to_owned(),
            Some(i) => format!("orgs[{i}].{rest}"),
        }
    }
}

impl Snapshot {
    /// Whether the top-level lists hold anything (and so form the implicit org).
    pub fn has_implicit_org(&self) -> bool {
        !(self.providers.is_empty() && self.routes.is_empty() && self.projects.is_empty())
            || self.orgs.is_empty()
    }

    /// Every org: the implicit one first (when it has content, or when there are no others),
    /// then `orgs` in order.
    pub fn orgs(&self) -> impl Iterator<Item = OrgView<'_>> {
        let implicit = self.has_implicit_org().then(|| OrgView {
            slug: IMPLICIT_ORG,
            field_prefix: None,
            providers: &self.providers,
            routes: &self.routes,
            projects: &self.projects,
        });
        implicit
            .into_iter()
            .chain(self.orgs.iter().enumerate().map(|(i, o)| OrgView {
                slug: o.slug.as_str(),
                field_prefix: Some(i),
                providers: &o.providers,
                routes: &o.routes,
                projects: &o.projects,
            }))
    }
}

/// The price of a model, per million tokens, in integer micro-units of currency
/// (1 USD = 1,000,000): exact arithmetic, no floating point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    /// The upstream model name it applies to: exact or `prefix*`.
    pub model: ModelPattern,
    /// Per million input (prompt) tokens.
    pub input_per_mtok: u64,
    /// Per million output (completion) tokens.
    pub output_per_mtok: u64,
    /// Per million cached input tokens read (defaults to the input price).
    #[serde(default)]
    pub cached_input_per_mtok: Option<u64>,
    /// Per million tokens written to a prompt cache (Anthropic; defaults to the input price).
    #[serde(default)]
    pub cache_write_per_mtok: Option<u64>,
}

/// Provider endpoint families beyond inference that a project's policy may enable. Stateful
/// families create provider-side objects; the gateway keeps each one owned by its project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointFamily {
    /// OpenAI `/v1/files`.
    Files,
    /// OpenAI `/v1/uploads`.
    Uploads,
    /// OpenAI `/v1/batches`.
    Batches,
    /// OpenAI `/v1/vector_stores`.
    VectorStores,
    /// OpenAI stored responses (`store: true`, `previous_response_id`, `/v1/responses/{id}`).
    StoredResponses,
    /// OpenAI `/v1/fine_tuning`.
    FineTuning,
    /// Anthropic `/v1/messages/batches`.
    MessageBatches,
    /// Anthropic `/v1/files`.
    AnthropicFiles,
}

/// The wire protocol a provider speaks, which decides how its key is injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// OpenAI: `Authorization: Bearer <key>`.
    Openai,
    /// Anthropic: `x-api-key: <key>` and `anthropic-version` when the client sent none.
    Anthropic,
    /// Any OpenAI-compatible server (vLLM, Ollama, Groq, ...): `Authorization: Bearer <key>`.
    OpenaiCompatible,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    /// Parses the kind as written in configs.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "openai" => Ok(Self::Openai),
            "anthropic" => Ok(Self::Anthropic),
            "openai-compatible" => Ok(Self::OpenaiCompatible),
            _ => Err("kind must be openai, anthropic or openai-compatible".into()),
        }
    }
}

impl ProviderKind {
    /// The kind as written in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::OpenaiCompatible => "openai-compatible",
        }
    }
}

fn default_connect_timeout_ms() -> u64 {
    10_000
}
fn default_read_timeout_ms() -> u64 {
    300_000
}

/// An upstream provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Also the native pass-through prefix: `/{name}/...`.
    pub name: Slug,
    /// Wire protocol.
    pub kind: ProviderKind,
    /// `http(s)://host[:port][/path]`; request paths (`/v1/...`) are appended to its path.
    pub base_url: Url,
    /// Where the provider key lives. Required for `openai` and `anthropic`.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    /// When true, a missing key does not stop the gateway from starting: requests routed to
    /// this provider get 503 `provider_key_missing` until the key is set. For quickstarts.
    #[serde(default)]
    pub api_key_optional: bool,
    /// TCP + TLS connect timeout.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest silence allowed between bytes from the upstream (time to first token included).
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
}

/// A model route: which provider serves a model name on the `/v1` surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The model name clients send: exact (`gpt-4o`) or a prefix ending in `*` (`gpt-*`).
    pub model: ModelPattern,
    /// Provider name.
    pub provider: Slug,
    /// Rewrite the body's `model` to this before forwarding (aliases).
    #[serde(default)]
    pub upstream_model: Option<String>,
}

/// A model name or a `prefix*` pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ModelPattern {
    /// Matches one name exactly.
    Exact(String),
    /// Matches every name starting with the prefix (written `prefix*`; `*` alone matches all).
    Prefix(String),
}

impl ModelPattern {
    /// Whether `model` matches.
    pub fn matches(&self, model: &str) -> bool {
        match self {
            Self::Exact(m) => m == model,
            Self::Prefix(p) => model.starts_with(p.as_str()),
        }
    }
}

impl TryFrom<String> for ModelPattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 256 {
            return Err("model name must be 1 to 256 characters".into());
        }
        if s.chars().any(|c| c.is_control()) {
            return Err("model name must not contain control characters".into());
        }
        match s.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                Err("`*` is allowed only once, at the end of a model pattern".into())
            }
            Some(prefix) => Ok(Self::Prefix(prefix.to_owned())),
            None if s.contains('*') => {
                Err("`*` is allowed only once, at the end of a model pattern".into())
            }
            None => Ok(Self::Exact(s)),
        }
    }
}

impl From<ModelPattern> for String {
    fn from(p: ModelPattern) -> String {
        match p {
            ModelPattern::Exact(m) => m,
            ModelPattern::Prefix(p) => format!("{p}*"),
        }
    }
}

/// A tenant: its virtual keys and policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// Project identifier (also a metrics label).
    pub slug: Slug,
    /// Virtual keys, by digest.
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    /// Models the project may use; absent means every routed model.
    #[serde(default)]
    pub allowed_models: Option<Vec<ModelPattern>>,
    /// A lower request-body cap for this project.
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
    /// Requests per minute for the whole project.
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Tokens (input + output) per minute for the whole project.
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
    /// Spend per calendar month (UTC), in cents of the price table's currency.
    #[serde(default)]
    pub monthly_budget_cents: Option<u64>,
    /// Most requests of this project in flight at once on one gateway (streams count until
    /// they end).
    #[serde(default)]
    pub max_in_flight: Option<u64>,
    /// Endpoint families beyond inference this project may use.
    #[serde(default)]
    pub endpoints: Vec<EndpointFamily>,
    /// Provider for requests that name no model (files, batches), per provider kind's surface.
    #[serde(default)]
    pub default_provider: Option<Slug>,
    /// The exact-match response cache; absent: no cache.
    #[serde(default)]
    pub cache: Option<crate::CacheSpec>,
    /// Rules applied to the text users send, in order (see [`crate::guardrails`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<crate::GuardrailRule>,
}

/// One virtual key, as its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// SHA-256 of the plaintext key, 64 lowercase hex digits.
    pub digest: KeyDigest,
    /// The control plane's key id (usage records name the key by it); none in most files.
    #[serde(default)]
    pub id: Option<String>,
    /// Non-secret display prefix (`gwk_1a2b3c4d`), for logs and listings.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A revoked key is rejected with 401.
    #[serde(default)]
    pub revoked: bool,
    /// Unix time (seconds) after which the key is rejected with 401.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Requests per minute for this key alone (within the project's).
    #[serde(default)]
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute for this key alone (within the project's).
    #[serde(default)]
    pub tokens_per_minute: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::ProviderKind;

    #[test]
    fn provider_kind_parses_what_it_prints() {
        for k in [
            ProviderKind::Openai,
            ProviderKind::Anthropic,
            ProviderKind::OpenaiCompatible,
        ] {
            assert_eq!(k.as_str().parse::<ProviderKind>(), Ok(k));
        }
        assert!("gemini".parse::<ProviderKind>().is_err());
    }
}
