//! Cross-field rules of a snapshot, checked once when it is loaded.

use std::collections::HashSet;
use std::fmt;

use crate::{ProviderKind, Snapshot};

/// One broken rule: the field's path (`providers[1].base_url`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every broken rule of a snapshot, so an operator fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<SchemaError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The largest cap accepted: 1 GiB. Larger would let one request pin that much memory.
pub const MAX_REQUEST_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;

impl Snapshot {
    /// Checks every rule that serde's per-field parsing cannot: references, uniqueness, limits.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = Vec::new();
        let mut err = |field: String, reason: &str| {
            errs.push(SchemaError {
                field,
                reason: reason.to_owned(),
            })
        };

        if self.max_request_bytes == 0 || self.max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
            err(
                "max_request_bytes".into(),
                "must be between 1 and 1073741824 (1 GiB)",
            );
        }

        let mut orgs = HashSet::new();
        let mut digests = HashSet::new();
        for (i, o) in self.orgs.iter().enumerate() {
            let implicit_clash = o.slug.as_str() == crate::IMPLICIT_ORG && self.has_implicit_org();
            if !orgs.insert(o.slug.as_str()) || implicit_clash {
                err(
                    format!("orgs[{i}].slug"),
                    "duplicate org slug (`default` is taken by the top-level providers, routes and projects)",
                );
            }
        }
        for org in self.orgs() {
            validate_org(&org, self.max_request_bytes, &mut digests, &mut err);
        }
        for (i, p) in self.prices.iter().enumerate() {
            if p.input_per_mtok > MAX_PRICE || p.output_per_mtok > MAX_PRICE {
                err(
                    format!("prices[{i}]"),
                    "prices must be at most 1000000000000 micro-units per million tokens",
                );
            }
        }

        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }
}

/// The largest price accepted per million tokens (10^12 micro-units), so a cost never
/// overflows `u64` for any token count a response can carry.
pub const MAX_PRICE: u64 = 1_000_000_000_000;

fn validate_org(
    org: &crate::OrgView<'_>,
    global_cap: u64,
    digests: &mut HashSet<crate::KeyDigest>,
    err: &mut impl FnMut(String, &str),
) {
    let mut providers = HashSet::new();
    for (i, p) in org.providers.iter().enumerate() {
        let at = |f: &str| org.field(&format!("providers[{i}].{f}"));
        if !providers.insert(p.name.as_str()) {
            err(at("name"), "duplicate provider name");
        }
        if !matches!(p.base_url.scheme(), "http" | "https") {
            err(at("base_url"), "must be an http:// or https:// URL");
        }
        if p.base_url.host_str().is_none_or(str::is_empty) {
            err(at("base_url"), "must name a host");
        }
        if p.base_url.query().is_some() || p.base_url.fragment().is_some() {
            err(at("base_url"), "must not have a query or fragment");
        }
        if !p.base_url.username().is_empty() || p.base_url.password().is_some() {
            err(at("base_url"), "must not carry credentials; use api_key");
        }
        let key_required = matches!(p.kind, ProviderKind::Openai | ProviderKind::Anthropic);
        if key_required && p.api_key.is_none() {
            err(
                at("api_key"),
                "is required for this provider kind (env:NAME or file:/path)",
            );
        }
        if p.connect_timeout_ms == 0 || p.connect_timeout_ms > 600_000 {
            err(at("connect_timeout_ms"), "must be between 1 and 600000");
        }
        if p.read_timeout_ms == 0 || p.read_timeout_ms > 3_600_000 {
            err(at("read_timeout_ms"), "must be between 1 and 3600000");
        }
    }

    for (i, r) in org.routes.iter().enumerate() {
        if !providers.contains(r.provider.as_str()) {
            err(
                org.field(&format!("routes[{i}].provider")),
                "names no provider in `providers`",
            );
        }
        if let Some(m) = &r.upstream_model {
            if m.is_empty() || m.len() > 256 || m.chars().any(char::is_control) {
                err(
                    org.field(&format!("routes[{i}].upstream_model")),
                    "must be 1 to 256 printable characters",
                );
            }
        }
    }

    let mut projects = HashSet::new();
    for (i, p) in org.projects.iter().enumerate() {
        let at = |f: &str| org.field(&format!("projects[{i}].{f}"));
        if !projects.insert(p.slug.as_str()) {
            err(at("slug"), "duplicate project slug");
        }
        if let Some(cap) = p.max_request_bytes {
            if cap == 0 || cap > global_cap {
                err(
                    at("max_request_bytes"),
                    "must be at least 1 and may only lower the global max_request_bytes",
                );
            }
        }
        for (field, v) in [
            ("requests_per_minute", p.requests_per_minute),
            ("tokens_per_minute", p.tokens_per_minute),
            ("max_in_flight", p.max_in_flight),
        ] {
            if v == Some(0) {
                err(at(field), "must be at least 1 (omit it for no limit)");
            }
        }
        if let Some((field, reason)) = p.cache.as_ref().and_then(|c| c.check().err()) {
            err(at(&format!("cache.{field}")), reason);
        }
        if let Some(d) = &p.default_provider {
            if !providers.contains(d.as_str()) {
                err(at("default_provider"), "names no provider in `providers`");
            }
        }
        crate::guardrails::validate_rules(&p.guardrails, &mut |field, reason| {
            err(at(&field), &reason)
        });
        for (j, k) in p.keys.iter().enumerate() {
            let at = |f: &str| org.field(&format!("projects[{i}].keys[{j}].{f}"));
            if !digests.insert(k.digest.clone()) {
                err(at("digest"), "the same key digest appears twice");
            }
            if let Some(prefix) = &k.prefix {
                if !is_token(prefix) {
                    err(
                        at("prefix"),
                        "must be at most 32 characters of [A-Za-z0-9_-]",
                    );
                }
            }
            if let Some(id) = &k.id {
                if !is_token(id) {
                    err(at("id"), "must be at most 32 characters of [A-Za-z0-9_-]");
                }
            }
            for (field, v) in [
                ("requests_per_minute", k.requests_per_minute),
                ("tokens_per_minute", k.tokens_per_minute),
            ] {
                if v == Some(0) {
                    err(at(field), "must be at least 1 (omit it for no limit)");
                }
            }
        }
    }
}

/// A short non-secret identifier: 1 to 32 characters of `[A-Za-z0-9_-]`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use crate::Snapshot;

    fn parse(json: serde_json::Value) -> Snapshot {
        match serde_json::from_value(json) {
            Ok(s) => s,
            Err(e) => panic!("fixture does not parse: {e}"),
        }
    }

    #[test]
    fn valid_snapshot_passes() {
        let s = parse(serde_json::json!({
            "providers": [{"name": "openai", "kind": "openai", "base_url": "https://api.openai.com", "api_key": "env:OPENAI_API_KEY"}],
            "routes": [{"model": "gpt-*", "provider": "openai"}],
            "projects": [{"slug": "demo", "keys": [{"digest": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}], "max_request_bytes": 1024}]
        }));
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.max_request_bytes, crate::DEFAULT_MAX_REQUEST_BYTES);
    }

    #[test]
    fn every_broken_rule_is_named_with_its_field() {
        let d = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let s = parse(serde_json::json!({
            "max_request_bytes": 100,
            "providers": [
                {"name": "openai", "kind": "openai", "base_url": "ftp://x"},
                {"name": "openai", "kind": "openai-compatible", "base_url": "http://u:p@h/?q", "read_timeout_ms": 0}
            ],
            "routes": [{"model": "x", "provider": "nope"}],
            "projects": [
                {"slug": "a", "keys": [{"digest": d}], "max_request_bytes": 101},
                {"slug": "a", "keys": [{"digest": d}]}
            ]
        }));
        let errs = match s.validate() {
            Err(e) => e.to_string(),
            Ok(()) => panic!("broken snapshot validated"),
        };
        for needle in [
            "providers[0].base_url: must be an http:// or https:// URL",
            "providers[0].api_key: is required",
            "providers[1].name: duplicate provider name",
            "providers[1].base_url: must not have a query",
            "providers[1].base_url: must not carry credentials",
            "providers[1].read_timeout_ms",
            "routes[0].provider: names no provider",
            "projects[0].max_request_bytes: must be at least 1 and may only lower",
            "projects[1].slug: duplicate project slug",
            "projects[1].keys[0].digest: the same key digest appears twice",
        ] {
            assert!(errs.contains(needle), "missing {needle:?} in {errs}");
        }
    }

    #[test]
    fn orgs_are_separate_namespaces_with_global_key_digests() {
        let d = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let provider = serde_json::json!({"name": "openai", "kind": "openai-compatible", "base_url": "http://a"});
        let ok = parse(serde_json::json!({
            "orgs": [
                {"slug": "a", "providers": [provider], "routes": [{"model": "*", "provider": "openai"}], "projects": [{"slug": "p"}]},
                {"slug": "b", "providers": [provider], "routes": [{"model": "*", "provider": "openai"}], "projects": [{"slug": "p", "keys": [{"digest": d}]}]}
            ]
        }));
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            ok.orgs().map(|o| o.slug).collect::<Vec<_>>(),
            vec!["a", "b"],
            "no implicit org when the top level is empty and orgs exist"
        );
        let bad = parse(serde_json::json!({
            "projects": [{"slug": "x", "keys": [{"digest": d}]}],
            "orgs": [
                {"slug": "default"},
                {"slug": "b", "routes": [{"model": "*", "provider": "openai"}],
                 "projects": [{"slug": "p", "tokens_per_minute": 0, "keys": [{"digest": d}]}]},
                {"slug": "b"}
            ]
        }));
        let errs = match bad.validate() {
            Err(e) => e.to_string(),
            Ok(()) => panic!("broken snapshot validated"),
        };
        for needle in [
            "orgs[0].slug: duplicate org slug",
            "orgs[2].slug: duplicate org slug",
            "orgs[1].routes[0].provider: names no provider",
            "orgs[1].projects[0].tokens_per_minute: must be at least 1",
            "orgs[1].projects[0].keys[0].digest: the same key digest appears twice",
        ] {
            assert!(errs.contains(needle), "missing {needle:?} in {errs}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_fail_to_parse() {
        let bad = [
            serde_json::json!({"provders": []}),
            serde_json::json!({"projects": [{"slug": "Bad_Slug"}]}),
            serde_json::json!({"projects": [{"slug": "a", "keys": [{"digest": "abc"}]}]}),
            serde_json::json!({"providers": [{"name": "p", "kind": "gemini", "base_url": "https://x"}]}),
            serde_json::json!({"routes": [{"model": "a*b*", "provider": "p"}]}),
        ];
        for b in bad {
            assert!(
                serde_json::from_value::<Snapshot>(b.clone()).is_err(),
                "{b}"
            );
        }
    }
}
