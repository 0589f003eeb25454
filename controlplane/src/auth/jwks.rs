//! The issuer's signing keys: discovered, fetched, cached and refreshed without letting a
//! client make us hammer the issuer.
//!
//! - Keys older than `jwks_max_age_secs` are refreshed on next use; a failed refresh keeps the
//!   cached keys (issuer down: keep verifying, never fail open).
//! - An unknown `kid` triggers at most one refresh per `unknown_kid_refresh_interval_secs`, and
//!   is then remembered as unknown for `unknown_kid_negative_cache_secs`.
//! - Only asymmetric signing keys are kept (RSA → RS*/PS*, EC P-256/P-384 → ES256/ES384);
//!   `oct` keys, encryption keys and keys without a `kid` are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::config::OidcConfig;
use crate::metrics::Metrics;

/// A verification key and the algorithms it may be used with.
pub struct VerifyKey {
    /// Algorithms allowed with this key (from its `alg`, or its type's asymmetric family).
    pub algorithms: Vec<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request to the issuer failed: {0}")]
    Http(String),
    #[error("issuer answered {0}")]
    Status(u16),
    #[error("document is not valid: {0}")]
    Invalid(String),
    #[error("discovery `issuer` is {found:?}, expected exactly {expected:?}")]
    IssuerMismatch { expected: String, found: String },
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

type KeyMap = HashMap<String, Arc<VerifyKey>>;

/// The largest number of unknown kids remembered; past it the memory is reset (the refresh
/// interval still bounds fetches).
const NEGATIVE_CACHE_CAP: usize = 10_000;
/// The largest JWKS document accepted.
const MAX_DOC_BYTES: usize = 512 * 1024;

/// The key cache of one issuer.
pub struct JwksCache {
    http: reqwest::Client,
    issuer: String,
    max_age: Duration,
    unknown_interval: Duration,
    negative_ttl: Duration,
    jwks_uri: RwLock<Option<String>>,
    keys: RwLock<Arc<KeyMap>>,
    fetched_at: Mutex<Option<Instant>>,
    last_attempt: Mutex<Option<Instant>>,
    last_unknown_refresh: Mutex<Option<Instant>>,
    negative: Mutex<HashMap<String, Instant>>,
    refresh_lock: tokio::sync::Mutex<()>,
    metrics: Metrics,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl JwksCache {
    /// A cache with nothing fetched yet.
    pub fn new(cfg: &OidcConfig, metrics: Metrics) -> Result<Self, FetchError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.http_timeout_ms))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &cfg.ca_bundle {
            for ca in ca_bundle(path)? {
                builder = builder.add_root_certificate(ca);
            }
        }
        let http = builder
            .build()
            .map_err(|e| FetchError::Http(e.to_string()))?;
        Ok(Self {
            http,
            issuer: cfg.issuer.clone(),
            max_age: Duration::from_secs(cfg.jwks_max_age_secs),
            unknown_interval: Duration::from_secs(cfg.unknown_kid_refresh_interval_secs),
            negative_ttl: Duration::from_secs(cfg.unknown_kid_negative_cache_secs),
            jwks_uri: RwLock::new(None),
            keys: RwLock::new(Arc::new(HashMap::new())),
            fetched_at: Mutex::new(None),
            last_attempt: Mutex::new(None),
            last_unknown_refresh: Mutex::new(None),
            negative: Mutex::new(HashMap::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// A cache that starts with the usable keys of `jwks` (a JWKS document) as freshly
    /// fetched ones: token verification without an issuer to fetch from (fuzzing, offline
    /// checks). Unknown kids still go to `cfg.issuer` under the usual limits.
    pub fn with_document(
        cfg: &OidcConfig,
        metrics: Metrics,
        jwks: &[u8],
    ) -> Result<Self, FetchError> {
        let cache = Self::new(cfg, metrics)?;
        let keys = parse_jwks(jwks)?;
        if let Ok(mut k) = cache.keys.write() {
            *k = Arc::new(keys);
        }
        *lock(&cache.fetched_at) = Some(Instant::now());
        Ok(cache)
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.keys.read().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fetches discovery (once) and the JWKS now, replacing the cached keys on success.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let _guard = self.refresh_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<usize, FetchError> {
        *lock(&self.last_attempt) = Some(Instant::now());
        let res = self.fetch().await;
        let outcome = if res.is_ok() { "ok" } else { "error" };
        self.metrics
            .jwks_fetches
            .with_label_values(&[outcome])
            .inc();
        match res {
            Ok(map) => {
                let n = map.len();
                if let Ok(mut k) = self.keys.write() {
                    *k = Arc::new(map);
                }
                *lock(&self.fetched_at) = Some(Instant::now());
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh issuer keys; keeping the cached ones");
                Err(e)
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        if body.len() > MAX_DOC_BYTES {
            return Err(FetchError::Invalid("document too large".into()));
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::Invalid(e.to_string()))
    }

    async fn fetch(&self) -> Result<KeyMap, FetchError> {
        let known = self.jwks_uri.read().ok().and_then(|u| u.clone());
        let jwks_uri = match known {
            Some(u) => u,
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let d: Discovery = self.get_json(&url).await?;
                if d.issuer != self.issuer {
                    return Err(FetchError::IssuerMismatch {
                        expected: self.issuer.clone(),
                        found: d.issuer,
                    });
                }
                let parsed =
                    url::Url::parse(&d.jwks_uri).map_err(|e| FetchError::Invalid(e.to_string()))?;
                let issuer_https = self.issuer.starts_with("https://");
                if parsed.scheme() != "https" && (issuer_https || parsed.scheme() != "http") {
                    return Err(FetchError::Invalid("jwks_uri must be https".into()));
                }
                if let Ok(mut u) = self.jwks_uri.write() {
                    *u = Some(d.jwks_uri.clone());
                }
                d.jwks_uri
            }
        };
        let raw: RawJwks = match self.get_json(&jwks_uri).await {
            Ok(r) => r,
            Err(e) => {
                // The issuer may have moved its keys: discover again on the next attempt.
                if let Ok(mut u) = self.jwks_uri.write() {
                    *u = None;
                }
                return Err(e);
            }
        };
        Ok(keys_of(raw))
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.read().ok().and_then(|k| k.get(kid).cloned())
    }

    fn due(last: Option<Instant>, every: Duration) -> bool {
        last.is_none_or(|t| t.elapsed() >= every)
    }

    /// The key for `kid`, refreshing under the rules above. `None`: reject the token.
    pub async fn key(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        // Stale keys are refreshed at most once per retry period, even while the issuer is
        // down: requests that queued behind a failed attempt do not each retry it.
        let retry = self.max_age.min(self.unknown_interval);
        let needs = || {
            Self::due(*lock(&self.fetched_at), self.max_age)
                && Self::due(*lock(&self.last_attempt), retry)
        };
        if needs() {
            let _guard = self.refresh_lock.lock().await;
            if needs() {
                let _ = self.refresh_locked().await;
            }
        }
        if let Some(k) = self.cached(kid) {
            return Some(k);
        }
        {
            let mut neg = lock(&self.negative);
            if neg
                .get(kid)
                .is_some_and(|t| t.elapsed() < self.negative_ttl)
            {
                return None;
            }
            if neg.len() >= NEGATIVE_CACHE_CAP {
                let ttl = self.negative_ttl;
                neg.retain(|_, t| t.elapsed() < ttl);
                if neg.len() >= NEGATIVE_CACHE_CAP {
                    neg.clear();
                }
            }
        }
        let may_refresh = {
            let mut last = lock(&self.last_unknown_refresh);
            if Self::due(*last, self.unknown_interval) {
                *last = Some(Instant::now());
                true
            } else {
                false
            }
        };
        if may_refresh {
            let _ = self.refresh().await;
            if let Some(k) = self.cached(kid) {
                return Some(k);
            }
        }
        lock(&self.negative).insert(kid.to_owned(), Instant::now());
        None
    }
}

const RSA_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The CA certificates of `oidc.ca_bundle` (PEM; at least one).
fn ca_bundle(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, FetchError> {
    let invalid = |reason: String| {
        FetchError::Invalid(format!("oidc.ca_bundle {}: {reason}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in the file".into()));
    }
    Ok(certs)
}

/// The usable keys of a JWKS document (the issuer's: untrusted input). Entries that are not
/// valid JWKs, or not usable signing keys, are dropped, exactly as on a fetch.
pub fn parse_jwks(doc: &[u8]) -> Result<HashMap<String, Arc<VerifyKey>>, FetchError> {
    if doc.len() > MAX_DOC_BYTES {
        return Err(FetchError::Invalid("document too large".into()));
    }
    let raw: RawJwks =
        serde_json::from_slice(doc).map_err(|e| FetchError::Invalid(e.to_string()))?;
    Ok(keys_of(raw))
}

fn keys_of(raw: RawJwks) -> KeyMap {
    let mut map = HashMap::new();
    for v in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(v) else {
            continue;
        };
        if let Some((kid, key)) = usable_key(&jwk) {
            map.insert(kid, Arc::new(key));
        }
    }
    map
}

/// Keeps asymmetric signing keys with a `kid`; the allowed algorithms come from the key.
fn usable_key(jwk: &Jwk) -> Option<(String, VerifyKey)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if let Some(u) = &jwk.common.public_key_use {
        if *u != PublicKeyUse::Signature {
            return None;
        }
    }
    if let Some(ops) = &jwk.common.key_operations {
        if !ops.contains(&KeyOperations::Verify) {
            return None;
        }
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        // Symmetric (`oct`), EdDSA and unknown key types are never used.
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(ka) => {
            let alg = Algorithm::try_from(ka).ok()?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
        None => family,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, VerifyKey { algorithms, key }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        std::fs::read(p).unwrap()
    }

    fn rsa_jwk() -> serde_json::Value {
        let enc = EncodingKey::from_rsa_pem(&fixture("test-only-rsa-1.pem")).unwrap();
        let mut v =
            serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap()).unwrap();
        v["kid"] = "k".into();
        v
    }

    fn parse(v: serde_json::Value) -> Option<Vec<Algorithm>> {
        let jwk: Jwk = serde_json::from_value(v).ok()?;
        usable_key(&jwk).map(|(_, k)| k.algorithms)
    }

    #[test]
    fn keeps_signing_keys_with_the_algorithms_of_their_type() {
        assert_eq!(parse(rsa_jwk()), Some(vec![Algorithm::RS256]));
        let mut no_alg = rsa_jwk();
        no_alg.as_object_mut().unwrap().remove("alg");
        assert_eq!(parse(no_alg), Some(RSA_ALGS.to_vec()));
        let enc = EncodingKey::from_ec_pem(&fixture("test-only-ec-1.pem")).unwrap();
        let mut ec =
            serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::ES256).unwrap()).unwrap();
        ec["kid"] = "e".into();
        ec["use"] = "sig".into();
        assert_eq!(parse(ec), Some(vec![Algorithm::ES256]));
    }

    #[test]
    fn drops_symmetric_encryption_mismatched_and_anonymous_keys() {
        let oct = serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldA", "alg": "HS256"});
        assert_eq!(parse(oct), None);
        let mut enc = rsa_jwk();
        enc["use"] = "enc".into();
        assert_eq!(parse(enc), None);
        let mut ops = rsa_jwk();
        ops["key_ops"] = serde_json::json!(["encrypt"]);
        assert_eq!(parse(ops), None);
        let mut mismatched = rsa_jwk();
        mismatched["alg"] = "ES256".into();
        assert_eq!(parse(mismatched), None);
        let mut hs = rsa_jwk();
        hs["alg"] = "HS256".into();
        assert_eq!(parse(hs), None);
        let mut anonymous = rsa_jwk();
        anonymous.as_object_mut().unwrap().remove("kid");
        assert_eq!(parse(anonymous), None);
    }
}
