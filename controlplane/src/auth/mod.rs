//! Authentication: who is calling. OIDC bearer tokens when an issuer is configured, forwarded
//! identity headers only in development mode, and a shared secret for component calls.

pub mod dev_headers;
pub mod internal;
pub mod jwks;
pub mod oidc;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::audit::AuditCtx;
use crate::error::ApiError;
use crate::rbac::Grants;
use crate::state::AppState;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token issuer (`dev-headers` in development mode).
    pub issuer: String,
    /// The token subject.
    pub subject: String,
    /// Email, when the token carries one.
    pub email: Option<String>,
    /// Whether the issuer verified the email.
    pub email_verified: bool,
    /// Group names from the groups claim.
    pub groups: Vec<String>,
}

/// Why a request was not authenticated. The code goes to the audit log and a metric label
/// (bounded set); the client only sees 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no bearer token")]
    MissingToken,
    #[error("token is not a well-formed JWT")]
    MalformedToken,
    #[error("token header has no kid")]
    MissingKid,
    #[error("no issuer key has this kid")]
    UnknownKid,
    #[error("token algorithm is not allowed for its key")]
    BadAlgorithm,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("wrong issuer")]
    BadIssuer,
    #[error("wrong audience")]
    BadAudience,
    #[error("a required claim is missing or malformed")]
    BadClaims,
    #[error("issuer keys are not available")]
    KeysUnavailable,
    #[error("forwarded identity headers missing or malformed")]
    MissingIdentityHeaders,
    #[error("internal secret missing or wrong")]
    BadInternalSecret,
    #[error("ingest token missing or wrong")]
    BadIngestToken,
}

impl AuthFailure {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedToken => "malformed_token",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::BadAlgorithm => "bad_algorithm",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadIssuer => "bad_issuer",
            Self::BadAudience => "bad_audience",
            Self::BadClaims => "bad_claims",
            Self::KeysUnavailable => "keys_unavailable",
            Self::MissingIdentityHeaders => "missing_identity_headers",
            Self::BadInternalSecret => "bad_internal_secret",
            Self::BadIngestToken => "bad_ingest_token",
        }
    }
}

/// How callers are identified.
pub enum Authenticator {
    /// Verified OIDC bearer tokens.
    Oidc(Arc<oidc::OidcVerifier>),
    /// Development only: trust `X-Forwarded-Email` / `X-Forwarded-Groups`.
    DevHeaders,
}

impl Authenticator {
    /// Identifies the caller from the request headers.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Identity, AuthFailure> {
        match self {
            Self::Oidc(v) => {
                // Forwarded identity headers are ignored entirely in this mode.
                let token = bearer(headers).ok_or(AuthFailure::MissingToken)?;
                v.verify(token).await
            }
            Self::DevHeaders => dev_headers::identify(headers),
        }
    }
}

/// The longest bearer value looked at; longer is malformed (bounds the work per request).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The value of `Authorization: Bearer ...`, if well-formed.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then_some(token)
}

/// The authenticated caller of a user-facing request, for handlers.
#[derive(Clone)]
pub struct Caller {
    /// Who.
    pub identity: Arc<Identity>,
    /// Their roles.
    pub grants: Arc<Grants>,
    /// The audit note of this request.
    pub audit: AuditCtx,
}

impl Caller {
    /// Authorizes `need` on `org` and notes the deciding role in the audit record.
    pub fn authorize(&self, org: Option<&str>, need: crate::rbac::Need) -> Result<(), ApiError> {
        match self.grants.authorize(org, need) {
            Ok(g) => {
                self.audit.set_role(g.0);
                Ok(())
            }
            Err(e) => {
                self.audit.set_role(self.grants.summary());
                self.audit.set_denied();
                Err(e)
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// The only paths served without authentication: exact matches, no normalisation.
pub fn is_probe_path(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// Middleware: authenticates every request except the probes.
pub async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_probe_path(path) {
        return next.run(req).await;
    }
    let audit = req
        .extensions()
        .get::<AuditCtx>()
        .cloned()
        .unwrap_or_default();
    if path.starts_with("/internal/") {
        return match internal::check_secret(&st.internal, req.headers()) {
            Ok(()) => {
                audit.set_component();
                next.run(req).await
            }
            Err(f) => reject(&st, &audit, f),
        };
    }
    match st.auth.identify(req.headers()).await {
        Ok(identity) => {
            let grants = Grants::resolve(&st.config.rbac, &identity);
            audit.set_actor(&identity);
            audit.set_role(grants.summary());
            req.extensions_mut().insert(Caller {
                identity: Arc::new(identity),
                grants: Arc::new(grants),
                audit,
            });
            next.run(req).await
        }
        Err(f) => reject(&st, &audit, f),
    }
}

/// 401 with the reason noted for the audit log and metrics.
pub fn reject(st: &AppState, audit: &AuditCtx, f: AuthFailure) -> Response {
    audit.set_reason(f.code());
    st.metrics
        .auth_failures
        .with_label_values(&[f.code()])
        .inc();
    ApiError::unauthenticated().into_response()
}
