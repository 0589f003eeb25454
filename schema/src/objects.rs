//! Ownership records of provider objects: what a gateway reports to the control plane each
//! time a project creates (or deletes) an object at a provider through it, and what a gateway
//! reads back at start to know who owns what. Never content: ids, slugs and a kind.

use serde::{Deserialize, Serialize};

/// One object created (or, with `deleted`, deleted) by a project at a provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRecord {
    /// Org slug.
    pub org: String,
    /// Owning project's slug.
    pub project: String,
    /// Provider name (the provider account the object lives in, with the org).
    pub provider: String,
    /// What the object is: `file`, `batch`, `response`, ... (see [`OBJECT_KINDS`]).
    pub kind: String,
    /// The provider's id of the object.
    pub object_id: String,
    /// When the gateway saw the creation (or deletion), Unix milliseconds.
    pub at_ms: i64,
    /// A tombstone: the owner deleted the object at the provider.
    #[serde(default)]
    pub deleted: bool,
}

/// The body of `POST /internal/v1/ingest/objects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectBatch {
    /// The records, at most [`MAX_BATCH`].
    pub records: Vec<ObjectRecord>,
}

/// Most records in one batch.
pub const MAX_BATCH: usize = 500;

/// The kinds a gateway reports (a closed set: they are also metric labels).
pub const OBJECT_KINDS: &[&str] = &[
    "file",
    "upload",
    "batch",
    "vector_store",
    "vector_store_file_batch",
    "response",
    "fine_tuning_job",
    "message_batch",
];

/// Provider object ids: `file-abc`, `batch_abc`, `resp_abc`, `msgbatch_abc`... (the gateway
/// accepts no other shape in a path or a body).
pub fn is_object_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl ObjectRecord {
    /// Checks every field an untrusted sender controls; returns the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        for (f, v) in [
            ("org", &self.org),
            ("project", &self.project),
            ("provider", &self.provider),
        ] {
            if crate::Slug::try_from(v.clone()).is_err() {
                return Err(f.into());
            }
        }
        if !OBJECT_KINDS.contains(&self.kind.as_str()) {
            return Err("kind".into());
        }
        if !is_object_id(&self.object_id) {
            return Err("object_id".into());
        }
        if self.at_ms < 0 {
            return Err("at_ms".into());
        }
        Ok(())
    }
}

/// One owned object, as the control plane serves it to gateways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedObject {
    /// Org slug.
    pub org: String,
    /// Owning project's slug.
    pub project: String,
    /// Provider name.
    pub provider: String,
    /// What the object is.
    pub kind: String,
    /// The provider's id.
    pub object_id: String,
    /// When it was created, Unix milliseconds.
    pub created_at_ms: i64,
}

/// A page of `GET /internal/v1/objects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectPage {
    /// Live (not deleted) objects, oldest record first.
    pub objects: Vec<OwnedObject>,
    /// The cursor of the next page (`after=`), absent on the last page.
    #[serde(default)]
    pub next_after: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ObjectRecord {
        ObjectRecord {
            org: "acme".into(),
            project: "app".into(),
            provider: "openai".into(),
            kind: "file".into(),
            object_id: "file-abc_1".into(),
            at_ms: 1,
            deleted: false,
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert_eq!(record().validate(), Ok(()));
        let bad = |f: fn(&mut ObjectRecord)| {
            let mut r = record();
            f(&mut r);
            r.validate().err().unwrap_or_default()
        };
        assert_eq!(bad(|r| r.org = "Acme".into()), "org");
        assert_eq!(bad(|r| r.project = String::new()), "project");
        assert_eq!(bad(|r| r.provider = "a/b".into()), "provider");
        assert_eq!(bad(|r| r.kind = "secret".into()), "kind");
        assert_eq!(bad(|r| r.object_id = "file:1".into()), "object_id");
        assert_eq!(bad(|r| r.object_id = "x".repeat(129)), "object_id");
        assert_eq!(bad(|r| r.at_ms = -1), "at_ms");
    }
}
