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

        let mut providers = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = |f: &str| format!("providers[{i}].{f}");
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

        for (i, r) in self.routes.iter().enumerate() {
            if !providers.contains(r.provider.as_str()) {
                err(
                    format!("routes[{i}].provider"),
                    "names no provider in `providers`",
                );
            }
            if let Some(m) = &r.upstream_model {
                if m.is_empty() || m.len() > 256 || m.chars().any(char::is_control) {
                    err(
                        format!("routes[{i}].upstream_model"),
                        "must be 1 to 256 printable characters",
                    );
                }
            }
        }

        let mut projects = HashSet::new();
        let mut digests = HashSet::new();
        for (i, p) in self.projects.iter().enumerate() {
            if !projects.insert(p.slug.as_str()) {
                err(format!("projects[{i}].slug"), "duplicate project slug");
            }
            if let Some(cap) = p.max_request_bytes {
                if cap == 0 || cap > self.max_request_bytes {
                    err(
                        format!("projects[{i}].max_request_bytes"),
                        "must be at least 1 and may only lower the global max_request_bytes",
                    );
                }
            }
            for (j, k) in p.keys.iter().enumerate() {
                if !digests.insert(k.digest.clone()) {
                    err(
                        format!("projects[{i}].keys[{j}].digest"),
                        "the same key digest appears twice",
                    );
                }
                if let Some(prefix) = &k.prefix {
                    if prefix.len() > 32
                        || !prefix
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                    {
                        err(
                            format!("projects[{i}].keys[{j}].prefix"),
                            "must be at most 32 characters of [A-Za-z0-9_-]",
                        );
                    }
                }
            }
        }

        if errs.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(errs))
        }
    }
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
