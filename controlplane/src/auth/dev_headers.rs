//! Development mode: identity from `X-Forwarded-Email` / `X-Forwarded-Groups`, as set by an
//! authenticating proxy. Only ever used without an issuer, and only on loopback by default.

use axum::http::HeaderMap;

use super::{AuthFailure, Identity};

/// The issuer recorded for callers identified this way.
pub const DEV_ISSUER: &str = "dev-headers";

/// Reads the forwarded identity headers.
pub fn identify(headers: &HeaderMap) -> Result<Identity, AuthFailure> {
    let email = headers
        .get("x-forwarded-email")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|e| !e.is_empty() && e.len() <= 254 && e.contains('@'))
        .ok_or(AuthFailure::MissingIdentityHeaders)?;
    let groups = headers
        .get("x-forwarded-groups")
        .and_then(|v| v.to_str().ok())
        .map(|g| {
            g.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Identity {
        issuer: DEV_ISSUER.into(),
        subject: email.to_owned(),
        email: Some(email.to_owned()),
        // A header anyone can set proves nothing: break-glass never applies here.
        email_verified: false,
        groups,
    })
}
