//! The endpoint allowlist: which provider endpoints a project may reach, per provider kind.
//!
//! Every project's requests go upstream with the same provider key, so the provider sees one
//! account. Anything that is not inference (files, batches, stored responses, account
//! administration) would let one tenant see what another did with that key. So a path is
//! forwarded only when it matches a rule of the provider kind's table *exactly* — lowercase
//! literal segments, no empty segment (double or trailing slash), object ids of a strict
//! character set, the exact method (no `HEAD`) — and the rule's family is inference or one
//! the project's policy enables. Anything else is 403 `endpoint_not_allowed`. The path that
//! goes upstream is the path classified here (the query string is appended unchanged).
//!
//! Account and organisation administration (`/v1/organization(s)/...`, usage and billing
//! dashboards) is refused before the table is consulted, whatever the policy says.

use gateway_schema::{EndpointFamily, ProviderKind};
use http::Method;

use crate::proxy::errors::Reject;

/// What an allowed request does with provider-side objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Inference: creates nothing the gateway tracks (body references are still checked).
    Inference,
    /// `POST /v1/responses`: inference that stores the response unless `store: false`.
    ResponsesCreate,
    /// Creates an object: the response's `id` becomes the project's.
    Create,
    /// Lists objects: the provider's list is filtered to the project's own.
    List,
    /// Acts on the objects named in the path, which must all be the project's.
    Use,
    /// Deletes the one object named in the path (the project's): its record goes with it.
    Delete,
}

/// An allowed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `None` for inference, else the policy family that enabled it.
    pub family: Option<EndpointFamily>,
    /// What it does with provider objects.
    pub effect: Effect,
    /// Byte ranges of the path's object ids (each must be owned by the project).
    pub ids: Vec<std::ops::Range<usize>>,
}

/// One segment of a rule's path pattern.
#[derive(Clone, Copy)]
enum Seg {
    /// A literal segment, compared byte for byte.
    Lit(&'static str),
    /// A provider object id owned by some project.
    Id,
    /// A model name (not an owned object).
    Model,
}

struct Rule {
    method: &'static str,
    path: &'static [Seg],
    family: Option<EndpointFamily>,
    effect: Effect,
}

use EndpointFamily as F;
use Seg::{Id, Lit as L, Model};

const fn rule(
    method: &'static str,
    path: &'static [Seg],
    family: Option<EndpointFamily>,
    effect: Effect,
) -> Rule {
    Rule {
        method,
        path,
        family,
        effect,
    }
}

const fn inference(method: &'static str, path: &'static [Seg]) -> Rule {
    rule(method, path, None, Effect::Inference)
}

const fn fam(
    family: EndpointFamily,
    method: &'static str,
    path: &'static [Seg],
    effect: Effect,
) -> Rule {
    rule(method, path, Some(family), effect)
}

const V1: Seg = L("v1");

/// OpenAI and OpenAI-compatible servers.
#[rustfmt::skip]
const OPENAI: &[Rule] = &[
    inference("POST", &[V1, L("chat"), L("completions")]),
    inference("POST", &[V1, L("completions")]),
    inference("POST", &[V1, L("embeddings")]),
    inference("POST", &[V1, L("moderations")]),
    inference("POST", &[V1, L("audio"), L("transcriptions")]),
    inference("POST", &[V1, L("audio"), L("translations")]),
    inference("POST", &[V1, L("audio"), L("speech")]),
    inference("POST", &[V1, L("images"), L("generations")]),
    inference("POST", &[V1, L("images"), L("edits")]),
    inference("POST", &[V1, L("images"), L("variations")]),
    inference("GET", &[V1, L("models")]),
    inference("GET", &[V1, L("models"), Model]),
    rule("POST", &[V1, L("responses")], None, Effect::ResponsesCreate),
    // Stored responses.
    fam(F::StoredResponses, "GET", &[V1, L("responses"), Id], Effect::Use),
    fam(F::StoredResponses, "DELETE", &[V1, L("responses"), Id], Effect::Delete),
    fam(F::StoredResponses, "POST", &[V1, L("responses"), Id, L("cancel")], Effect::Use),
    fam(F::StoredResponses, "GET", &[V1, L("responses"), Id, L("input_items")], Effect::Use),
    // Files.
    fam(F::Files, "POST", &[V1, L("files")], Effect::Create),
    fam(F::Files, "GET", &[V1, L("files")], Effect::List),
    fam(F::Files, "GET", &[V1, L("files"), Id], Effect::Use),
    fam(F::Files, "DELETE", &[V1, L("files"), Id], Effect::Delete),
    fam(F::Files, "GET", &[V1, L("files"), Id, L("content")], Effect::Use),
    // Uploads (a completed upload's file is recorded from the response).
    fam(F::Uploads, "POST", &[V1, L("uploads")], Effect::Create),
    fam(F::Uploads, "POST", &[V1, L("uploads"), Id, L("parts")], Effect::Use),
    fam(F::Uploads, "POST", &[V1, L("uploads"), Id, L("complete")], Effect::Use),
    fam(F::Uploads, "POST", &[V1, L("uploads"), Id, L("cancel")], Effect::Use),
    // Batches (output and error files are recorded from the batch objects).
    fam(F::Batches, "POST", &[V1, L("batches")], Effect::Create),
    fam(F::Batches, "GET", &[V1, L("batches")], Effect::List),
    fam(F::Batches, "GET", &[V1, L("batches"), Id], Effect::Use),
    fam(F::Batches, "POST", &[V1, L("batches"), Id, L("cancel")], Effect::Use),
    // Vector stores.
    fam(F::VectorStores, "POST", &[V1, L("vector_stores")], Effect::Create),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores")], Effect::List),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores"), Id], Effect::Use),
    fam(F::VectorStores, "POST", &[V1, L("vector_stores"), Id], Effect::Use),
    fam(F::VectorStores, "DELETE", &[V1, L("vector_stores"), Id], Effect::Delete),
    fam(F::VectorStores, "POST", &[V1, L("vector_stores"), Id, L("search")], Effect::Use),
    fam(F::VectorStores, "POST", &[V1, L("vector_stores"), Id, L("files")], Effect::Create),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores"), Id, L("files")], Effect::Use),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores"), Id, L("files"), Id], Effect::Use),
    fam(F::VectorStores, "POST", &[V1, L("vector_stores"), Id, L("files"), Id], Effect::Use),
    fam(F::VectorStores, "DELETE", &[V1, L("vector_stores"), Id, L("files"), Id], Effect::Use),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores"), Id, L("files"), Id, L("content")], Effect::Use),
    fam(F::VectorStores, "POST", &[V1, L("vector_stores"), Id, L("file_batches")], Effect::Create),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores"), Id, L("file_batches"), Id], Effect::Use),
    fam(F::VectorStores, "POST", &[V1, L("vector_stores"), Id, L("file_batches"), Id, L("cancel")], Effect::Use),
    fam(F::VectorStores, "GET", &[V1, L("vector_stores"), Id, L("file_batches"), Id, L("files")], Effect::Use),
    // Fine-tuning jobs (checkpoint permissions are account administration: not listed).
    fam(F::FineTuning, "POST", &[V1, L("fine_tuning"), L("jobs")], Effect::Create),
    fam(F::FineTuning, "GET", &[V1, L("fine_tuning"), L("jobs")], Effect::List),
    fam(F::FineTuning, "GET", &[V1, L("fine_tuning"), L("jobs"), Id], Effect::Use),
    fam(F::FineTuning, "POST", &[V1, L("fine_tuning"), L("jobs"), Id, L("cancel")], Effect::Use),
    fam(F::FineTuning, "POST", &[V1, L("fine_tuning"), L("jobs"), Id, L("pause")], Effect::Use),
    fam(F::FineTuning, "POST", &[V1, L("fine_tuning"), L("jobs"), Id, L("resume")], Effect::Use),
    fam(F::FineTuning, "GET", &[V1, L("fine_tuning"), L("jobs"), Id, L("events")], Effect::Use),
    fam(F::FineTuning, "GET", &[V1, L("fine_tuning"), L("jobs"), Id, L("checkpoints")], Effect::Use),
];

/// Anthropic (its OpenAI-compatible chat endpoint included, which the `/v1` surface uses).
#[rustfmt::skip]
const ANTHROPIC: &[Rule] = &[
    inference("POST", &[V1, L("messages")]),
    inference("POST", &[V1, L("messages"), L("count_tokens")]),
    inference("POST", &[V1, L("complete")]),
    inference("POST", &[V1, L("chat"), L("completions")]),
    inference("GET", &[V1, L("models")]),
    inference("GET", &[V1, L("models"), Model]),
    // Message batches.
    fam(F::MessageBatches, "POST", &[V1, L("messages"), L("batches")], Effect::Create),
    fam(F::MessageBatches, "GET", &[V1, L("messages"), L("batches")], Effect::List),
    fam(F::MessageBatches, "GET", &[V1, L("messages"), L("batches"), Id], Effect::Use),
    fam(F::MessageBatches, "DELETE", &[V1, L("messages"), L("batches"), Id], Effect::Delete),
    fam(F::MessageBatches, "POST", &[V1, L("messages"), L("batches"), Id, L("cancel")], Effect::Use),
    fam(F::MessageBatches, "GET", &[V1, L("messages"), L("batches"), Id, L("results")], Effect::Use),
    // Files (beta).
    fam(F::AnthropicFiles, "POST", &[V1, L("files")], Effect::Create),
    fam(F::AnthropicFiles, "GET", &[V1, L("files")], Effect::List),
    fam(F::AnthropicFiles, "GET", &[V1, L("files"), Id], Effect::Use),
    fam(F::AnthropicFiles, "DELETE", &[V1, L("files"), Id], Effect::Delete),
    fam(F::AnthropicFiles, "GET", &[V1, L("files"), Id, L("content")], Effect::Use),
];

/// First path segments (after `/v1`, compared case-insensitively) that administer an account:
/// never forwarded, whatever a policy says.
const ADMIN_SEGMENTS: &[&str] = &[
    "organization",
    "organizations",
    "dashboard",
    "usage",
    "billing",
    "admin_api_keys",
    "api_keys",
    "projects",
    "users",
    "invites",
    "audit_logs",
    "workspaces",
];

/// Whether `path` (the provider-relative path) administers the provider account.
pub fn is_admin(path: &str) -> bool {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let first = segs.next().unwrap_or("");
    let second = if first.eq_ignore_ascii_case("v1") {
        segs.next().unwrap_or("")
    } else {
        first
    };
    ADMIN_SEGMENTS
        .iter()
        .any(|a| second.eq_ignore_ascii_case(a))
}

/// Classifies a request to a provider of `kind`: `path` is what the provider will see (without
/// the query string), `enabled` the project's policy. `Err(EndpointNotAllowed)` when the
/// endpoint is unknown, administrative, or of a family the policy does not enable.
pub fn classify(
    kind: ProviderKind,
    method: &Method,
    path: &str,
    enabled: &[EndpointFamily],
) -> Result<Endpoint, Reject> {
    if is_admin(path) {
        return Err(Reject::EndpointNotAllowed { admin: true });
    }
    let table = match kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => OPENAI,
        ProviderKind::Anthropic => ANTHROPIC,
    };
    let mut ids = Vec::new();
    let found = table.iter().find(|r| {
        ids.clear();
        r.method == method.as_str() && matches(r.path, path, &mut ids)
    });
    match found {
        Some(r) if r.family.is_none_or(|f| enabled.contains(&f)) => Ok(Endpoint {
            family: r.family,
            effect: r.effect,
            ids,
        }),
        _ => Err(Reject::EndpointNotAllowed { admin: false }),
    }
}

/// Whether the endpoint is inference (allowed with no family enabled): such a request must
/// name its model.
pub fn is_inference(kind: ProviderKind, method: &Method, path: &str) -> bool {
    classify(kind, method, path, &[]).is_ok()
}

/// Whether `path` matches `pattern` exactly; collects the byte ranges of `Id` segments.
fn matches(pattern: &[Seg], path: &str, ids: &mut Vec<std::ops::Range<usize>>) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut offset = 1;
    let mut segs = rest.split('/');
    for p in pattern {
        let Some(seg) = segs.next() else {
            return false;
        };
        let ok = match p {
            Seg::Lit(l) => seg == *l,
            Seg::Id => is_object_id(seg),
            Seg::Model => is_model_id(seg),
        };
        if !ok {
            return false;
        }
        if matches!(p, Seg::Id) {
            ids.push(offset..offset + seg.len());
        }
        offset += seg.len() + 1;
    }
    segs.next().is_none()
}

/// Provider object ids: `file-abc`, `batch_abc`, `resp_abc`, `msgbatch_abc`, `vs_abc`...
pub fn is_object_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Model names in a path (`gpt-4o`, `ft:gpt-4o-mini:org:x:abc`, `claude-3-5-haiku-20241022`).
fn is_model_id(s: &str) -> bool {
    // `.` and `..` are dot segments, never a model: the router refuses such paths before this
    // (400), and the classifier must not accept them on its own either (found by the
    // `endpoint_class` fuzz target: `GET /v1/models/.`).
    (1..=256).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[EndpointFamily] = &[
        F::Files,
        F::Uploads,
        F::Batches,
        F::VectorStores,
        F::StoredResponses,
        F::FineTuning,
        F::MessageBatches,
        F::AnthropicFiles,
    ];

    fn check(
        kind: ProviderKind,
        method: &str,
        path: &str,
        enabled: &[EndpointFamily],
    ) -> Result<Endpoint, Reject> {
        let m = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        classify(kind, &m, path, enabled)
    }

    fn allowed(kind: ProviderKind, method: &str, path: &str, enabled: &[EndpointFamily]) -> bool {
        check(kind, method, path, enabled).is_ok()
    }

    #[test]
    fn dot_segments_are_never_a_model() {
        for p in ["/v1/models/.", "/v1/models/.."] {
            assert!(!allowed(ProviderKind::Openai, "GET", p, ALL), "{p}");
        }
        assert!(allowed(
            ProviderKind::Openai,
            "GET",
            "/v1/models/gpt-4.1",
            ALL
        ));
        assert!(allowed(ProviderKind::Openai, "GET", "/v1/models/...", ALL));
    }

    #[test]
    fn inference_passes_by_default() {
        for (m, p) in [
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/completions"),
            ("POST", "/v1/embeddings"),
            ("POST", "/v1/responses"),
            ("POST", "/v1/moderations"),
            ("POST", "/v1/audio/transcriptions"),
            ("POST", "/v1/audio/translations"),
            ("POST", "/v1/audio/speech"),
            ("POST", "/v1/images/generations"),
            ("POST", "/v1/images/edits"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/gpt-4o"),
            ("GET", "/v1/models/ft:gpt-4o-mini:acme:x:abc123"),
        ] {
            for kind in [ProviderKind::Openai, ProviderKind::OpenaiCompatible] {
                assert!(allowed(kind, m, p, &[]), "{m} {p}");
            }
        }
        for (m, p) in [
            ("POST", "/v1/messages"),
            ("POST", "/v1/messages/count_tokens"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/claude-3-5-haiku-20241022"),
        ] {
            assert!(allowed(ProviderKind::Anthropic, m, p, &[]), "{m} {p}");
        }
    }

    #[test]
    fn stateful_endpoints_are_denied_by_default() {
        for (m, p) in [
            ("GET", "/v1/files"),
            ("POST", "/v1/files"),
            ("GET", "/v1/files/file-abc"),
            ("DELETE", "/v1/files/file-abc"),
            ("GET", "/v1/batches"),
            ("POST", "/v1/batches"),
            ("GET", "/v1/fine_tuning/jobs"),
            ("GET", "/v1/responses/resp_123"),
            ("DELETE", "/v1/responses/resp_123"),
            ("GET", "/v1/vector_stores"),
            ("POST", "/v1/uploads"),
            ("POST", "/v1/assistants"),
            ("POST", "/v1/threads"),
            ("GET", "/v1/conversations/conv_1"),
        ] {
            assert_eq!(
                check(ProviderKind::Openai, m, p, &[]),
                Err(Reject::EndpointNotAllowed { admin: false }),
                "{m} {p}"
            );
        }
        for (m, p) in [
            ("GET", "/v1/messages/batches"),
            ("POST", "/v1/messages/batches"),
            ("GET", "/v1/files"),
            ("GET", "/v1/files/file_011"),
        ] {
            assert!(!allowed(ProviderKind::Anthropic, m, p, &[]), "{m} {p}");
        }
    }

    #[test]
    fn a_family_enables_exactly_its_endpoints() {
        let e = check(ProviderKind::Openai, "GET", "/v1/files", &[F::Files]);
        assert_eq!(e.as_ref().map(|e| e.effect), Ok(Effect::List));
        assert!(!allowed(
            ProviderKind::Openai,
            "GET",
            "/v1/batches",
            &[F::Files]
        ));
        // Anthropic's files family is not OpenAI's.
        assert!(!allowed(
            ProviderKind::Anthropic,
            "GET",
            "/v1/files",
            &[F::Files]
        ));
        assert!(allowed(
            ProviderKind::Anthropic,
            "GET",
            "/v1/files",
            &[F::AnthropicFiles]
        ));
        assert!(!allowed(
            ProviderKind::Openai,
            "GET",
            "/v1/files",
            &[F::AnthropicFiles]
        ));
        let e = check(
            ProviderKind::Anthropic,
            "POST",
            "/v1/messages/batches/msgbatch_01/cancel",
            &[F::MessageBatches],
        );
        let e = e.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(e.effect, Effect::Use);
        assert_eq!(e.ids.len(), 1);
        assert_eq!(e.ids.first(), Some(&(21..32)));
    }

    #[test]
    fn path_ids_are_located_exactly() {
        let path = "/v1/vector_stores/vs_1/files/file-2";
        let e =
            check(ProviderKind::Openai, "DELETE", path, ALL).unwrap_or_else(|e| panic!("{e:?}"));
        let ids: Vec<&str> = e.ids.iter().map(|r| &path[r.clone()]).collect();
        assert_eq!(ids, ["vs_1", "file-2"]);
        assert_eq!(e.family, Some(F::VectorStores));
    }

    #[test]
    fn administration_is_refused_whatever_the_policy() {
        for (m, p) in [
            ("GET", "/v1/organization/users"),
            ("POST", "/v1/organization/admin_api_keys"),
            ("GET", "/v1/organization/projects"),
            ("GET", "/v1/organization/invites"),
            ("GET", "/v1/organization/audit_logs"),
            ("GET", "/v1/organization/usage/completions"),
            ("GET", "/v1/organization/costs"),
            ("GET", "/v1/Organization/users"),
            ("GET", "/V1/ORGANIZATION/users"),
            ("GET", "/v1/organizations/users"),
            ("GET", "/v1/organizations/workspaces"),
            ("GET", "/v1/organizations/api_keys"),
            ("GET", "/v1/dashboard/billing/usage"),
            ("GET", "/dashboard/billing/subscription"),
            ("GET", "/v1/usage"),
            ("GET", "//v1//organization/users"),
        ] {
            for kind in [
                ProviderKind::Openai,
                ProviderKind::Anthropic,
                ProviderKind::OpenaiCompatible,
            ] {
                assert_eq!(
                    check(kind, m, p, ALL),
                    Err(Reject::EndpointNotAllowed { admin: true }),
                    "{m} {p}"
                );
            }
        }
    }

    #[test]
    fn bypass_attempts_are_denied() {
        for (m, p) in [
            ("GET", "/V1/files"),
            ("GET", "/v1/Files"),
            ("GET", "/v1/files/"),
            ("GET", "/v1//files"),
            ("GET", "//v1/files"),
            ("GET", "/v1/files/file-abc/"),
            ("GET", "/v1/files//file-abc"),
            ("HEAD", "/v1/files"),
            ("HEAD", "/v1/models"),
            ("OPTIONS", "/v1/chat/completions"),
            ("GET", "/v1/chat/completions"),
            ("POST", "/v1/chat/completions/"),
            ("POST", "/v1/chat//completions"),
            ("POST", "/v1/chat/completions;x=1"),
            ("POST", "/v1/%63hat/completions"),
            ("GET", "/v1/files/file%2Dabc"),
            ("GET", "/v1/files/file-abc;jsessionid=1"),
            ("GET", "/v1/files/file-abc/content/extra"),
            ("PUT", "/v1/files/file-abc"),
            ("POST", "/v1/responses/"),
            ("GET", "v1/models"),
            ("GET", ""),
            ("GET", "/"),
            ("POST", "/v1"),
        ] {
            assert!(!allowed(ProviderKind::Openai, m, p, ALL), "{m} {p}");
        }
        let long = format!("/v1/files/{}", "a".repeat(129));
        assert!(!allowed(ProviderKind::Openai, "GET", &long, ALL));
    }
}
