//! Component-to-control-plane trust: a shared internal secret on every `/internal/` call, and a
//! separate token per ingest kind. Compared in constant time over SHA-256 digests, so neither
//! the content nor the length of a secret leaks through timing.

use axum::http::HeaderMap;
use gateway_schema::Secret;
use subtle::ConstantTimeEq;

use super::{bearer, AuthFailure};
use crate::config::{ConfigError, InternalConfig};

/// The header carrying an ingest token.
pub const INGEST_TOKEN_HEADER: &str = "x-ingest-token";

/// What kind of data an ingest call carries; each has its own token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    /// Token usage reports.
    Usage,
    /// Response-cache hits.
    CacheHits,
    /// Guardrail blocks.
    GuardrailBlocks,
    /// Ownership records of provider objects.
    Objects,
}

impl IngestKind {
    /// Parses the path segment.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "usage" => Some(Self::Usage),
            "cache-hits" => Some(Self::CacheHits),
            "guardrail-blocks" => Some(Self::GuardrailBlocks),
            "objects" => Some(Self::Objects),
            _ => None,
        }
    }
}

/// Digests of the resolved secrets (the plaintexts are not kept).
#[derive(Default)]
pub struct InternalSecrets {
    secret: Option<[u8; 32]>,
    usage: Option<[u8; 32]>,
    cache_hits: Option<[u8; 32]>,
    guardrail_blocks: Option<[u8; 32]>,
    objects: Option<[u8; 32]>,
}

fn digest(s: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn resolve(
    r: Option<&gateway_schema::SecretRef>,
    field: &'static str,
) -> Result<Option<[u8; 32]>, ConfigError> {
    r.map(|r| {
        r.resolve()
            .map(|s: Secret| digest(s.expose()))
            .map_err(|e| ConfigError::Secret {
                field,
                reason: e.to_string(),
            })
    })
    .transpose()
}

impl InternalSecrets {
    /// Resolves the configured references now (at start).
    pub fn load(cfg: &InternalConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            secret: resolve(cfg.secret.as_ref(), "internal.secret")?,
            usage: resolve(
                cfg.usage_ingest_token.as_ref(),
                "internal.usage_ingest_token",
            )?,
            cache_hits: resolve(
                cfg.cache_hits_ingest_token.as_ref(),
                "internal.cache_hits_ingest_token",
            )?,
            guardrail_blocks: resolve(
                cfg.guardrail_blocks_ingest_token.as_ref(),
                "internal.guardrail_blocks_ingest_token",
            )?,
            objects: resolve(
                cfg.objects_ingest_token.as_ref(),
                "internal.objects_ingest_token",
            )?,
        })
    }

    /// For tests and embedding: secrets from values.
    pub fn from_values(secret: Option<&str>, usage: Option<&str>) -> Self {
        Self {
            secret: secret.map(digest),
            usage: usage.map(digest),
            ..Self::default()
        }
    }

    /// The same, with an objects ingest token.
    pub fn with_objects_token(mut self, token: &str) -> Self {
        self.objects = Some(digest(token));
        self
    }
}

fn matches(expected: Option<&[u8; 32]>, presented: Option<&str>) -> bool {
    match (expected, presented) {
        (Some(e), Some(p)) => bool::from(digest(p).ct_eq(e)),
        _ => false,
    }
}

/// Checks `Authorization: Bearer <internal secret>`. No configured secret: every call fails.
pub fn check_secret(s: &InternalSecrets, headers: &HeaderMap) -> Result<(), AuthFailure> {
    if matches(s.secret.as_ref(), bearer(headers)) {
        Ok(())
    } else {
        Err(AuthFailure::BadInternalSecret)
    }
}

/// Checks the ingest token for `kind` (a token of another kind does not pass).
pub fn check_ingest(
    s: &InternalSecrets,
    kind: IngestKind,
    headers: &HeaderMap,
) -> Result<(), AuthFailure> {
    let expected = match kind {
        IngestKind::Usage => s.usage.as_ref(),
        IngestKind::CacheHits => s.cache_hits.as_ref(),
        IngestKind::GuardrailBlocks => s.guardrail_blocks.as_ref(),
        IngestKind::Objects => s.objects.as_ref(),
    };
    let presented = headers
        .get(INGEST_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    if matches(expected, presented) {
        Ok(())
    } else {
        Err(AuthFailure::BadIngestToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_must_match_exactly_and_unset_secret_rejects_everything() {
        let s = InternalSecrets::from_values(Some("s3cret"), Some("usage-tok"));
        let mut h = HeaderMap::new();
        assert_eq!(check_secret(&s, &h), Err(AuthFailure::BadInternalSecret));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert_eq!(check_secret(&s, &h), Ok(()));
        h.insert("authorization", "Bearer s3cret2".parse().unwrap());
        assert_eq!(check_secret(&s, &h), Err(AuthFailure::BadInternalSecret));
        let none = InternalSecrets::default();
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(check_secret(&none, &h), Err(AuthFailure::BadInternalSecret));
        h.insert(INGEST_TOKEN_HEADER, "usage-tok".parse().unwrap());
        assert_eq!(check_ingest(&s, IngestKind::Usage, &h), Ok(()));
        assert_eq!(
            check_ingest(&s, IngestKind::CacheHits, &h),
            Err(AuthFailure::BadIngestToken)
        );
        assert_eq!(
            check_ingest(&s, IngestKind::Objects, &h),
            Err(AuthFailure::BadIngestToken)
        );
        let s = s.with_objects_token("objects-tok");
        h.insert(INGEST_TOKEN_HEADER, "objects-tok".parse().unwrap());
        assert_eq!(check_ingest(&s, IngestKind::Objects, &h), Ok(()));
        assert_eq!(
            check_ingest(&s, IngestKind::Usage, &h),
            Err(AuthFailure::BadIngestToken)
        );
    }
}
