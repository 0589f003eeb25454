//! Guardrail block records: what the gateway reports to the control plane each time a rule
//! blocks or redacts a request. Ids, names from config and the rule's id: never the text
//! that matched, never a key.

use serde::{Deserialize, Serialize};

use crate::guardrails::{is_rule_id, GuardrailAction};

/// One rule acting on one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailBlockRecord {
    /// Unique per record, minted by the gateway: the idempotency key.
    pub id: String,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// When the rule acted, Unix milliseconds.
    pub at_ms: i64,
    /// Org slug.
    pub org: String,
    /// Project slug.
    pub project: String,
    /// The virtual key's id, when the snapshot names one.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The rule's id (from the project's policy).
    pub rule_id: String,
    /// `block` or `redact`.
    pub action: GuardrailAction,
}

/// The body of `POST /internal/v1/ingest/guardrail-blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailBlockBatch {
    /// The records, at most [`crate::usage::MAX_BATCH`].
    pub records: Vec<GuardrailBlockRecord>,
}

impl GuardrailBlockRecord {
    /// Checks every field an untrusted sender controls; returns the first bad one.
    pub fn validate(&self) -> Result<(), &'static str> {
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        };
        if !id_ok(&self.id) {
            return Err("id");
        }
        if !id_ok(&self.request_id) {
            return Err("request_id");
        }
        if crate::Slug::parse(&self.org).is_err() {
            return Err("org");
        }
        if crate::Slug::parse(&self.project).is_err() {
            return Err("project");
        }
        if self
            .key_id
            .as_deref()
            .is_some_and(|k| !id_ok(k) || k.len() > 32)
        {
            return Err("key_id");
        }
        if !is_rule_id(&self.rule_id) {
            return Err("rule_id");
        }
        if self.at_ms < 0 {
            return Err("at_ms");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_a_bad_field_names_it() {
        let good = GuardrailBlockRecord {
            id: "g-1".into(),
            request_id: "req-1".into(),
            at_ms: 1,
            org: "acme".into(),
            project: "web".into(),
            key_id: Some("key_1".into()),
            rule_id: "no-cards".into(),
            action: GuardrailAction::Block,
        };
        assert_eq!(good.validate(), Ok(()));
        let bad = |f: fn(&mut GuardrailBlockRecord)| {
            let mut r = good.clone();
            f(&mut r);
            r.validate()
        };
        assert_eq!(bad(|r| r.id = "a b".into()), Err("id"));
        assert_eq!(bad(|r| r.project = "Web".into()), Err("project"));
        assert_eq!(bad(|r| r.rule_id = "x".repeat(65)), Err("rule_id"));
        assert_eq!(bad(|r| r.at_ms = -1), Err("at_ms"));
    }
}
