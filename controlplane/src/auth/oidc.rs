//! OIDC bearer-token verification: signature with the issuer's key (algorithm from the key,
//! never from the token alone), then `iss`, `aud`, `exp`, `nbf` and `sub`.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;

use super::jwks::JwksCache;
use super::{AuthFailure, Identity};
use crate::config::OidcConfig;
use crate::metrics::Metrics;

/// Verifies tokens of one issuer.
pub struct OidcVerifier {
    cfg: OidcConfig,
    keys: Arc<JwksCache>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl OidcVerifier {
    /// Builds the verifier and tries a first discovery + JWKS fetch (failure is logged; keys
    /// are fetched again on use, and until then every token is rejected).
    pub async fn start(
        cfg: &OidcConfig,
        metrics: Metrics,
    ) -> Result<Self, super::jwks::FetchError> {
        let keys = Arc::new(JwksCache::new(cfg, metrics)?);
        match keys.refresh().await {
            Ok(n) => tracing::info!(issuer = %cfg.issuer, keys = n, "issuer keys loaded"),
            Err(e) => tracing::error!(
                issuer = %cfg.issuer,
                error = %e,
                "cannot load issuer keys at start; every token is rejected until they load"
            ),
        }
        Ok(Self {
            cfg: cfg.clone(),
            keys,
        })
    }

    /// A verifier over an existing key cache (see [`JwksCache::with_document`]); no fetch at
    /// construction.
    pub fn with_keys(cfg: &OidcConfig, keys: Arc<JwksCache>) -> Self {
        Self {
            cfg: cfg.clone(),
            keys,
        }
    }

    /// The key cache.
    pub fn keys(&self) -> &JwksCache {
        &self.keys
    }

    /// Verifies a token and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        let header = decode_header(token).map_err(|_| AuthFailure::MalformedToken)?;
        let kid = header.kid.as_deref().ok_or(AuthFailure::MissingKid)?;
        if kid.len() > 256 {
            return Err(AuthFailure::MalformedToken);
        }
        let key = match self.keys.key(kid).await {
            Some(k) => k,
            None if self.keys.is_empty() => return Err(AuthFailure::KeysUnavailable),
            None => return Err(AuthFailure::UnknownKid),
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(AuthFailure::BadAlgorithm);
        }
        let mut v = Validation::new(header.alg);
        v.algorithms = vec![header.alg];
        v.leeway = self.cfg.leeway_secs.min(crate::config::MAX_LEEWAY_SECS);
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.set_issuer(&[self.cfg.issuer.as_str()]);
        v.set_audience(&self.cfg.audience);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<Claims>(token, &key.key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthFailure::BadAlgorithm
            }
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
            ErrorKind::InvalidIssuer => AuthFailure::BadIssuer,
            ErrorKind::InvalidAudience => AuthFailure::BadAudience,
            ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                AuthFailure::BadClaims
            }
            ErrorKind::Json(_) => AuthFailure::BadClaims,
            _ => AuthFailure::MalformedToken,
        })?;
        let c = data.claims;
        // Defence in depth: the library checked `iss`, but require the exact single string.
        if c.iss != self.cfg.issuer {
            return Err(AuthFailure::BadIssuer);
        }
        if c.sub.is_empty() {
            return Err(AuthFailure::BadClaims);
        }
        let groups = match c.rest.get(&self.cfg.groups_claim) {
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Identity {
            issuer: c.iss,
            subject: c.sub,
            email: c.email,
            email_verified: c.email_verified.unwrap_or(false),
            groups,
        })
    }
}
