//! Virtual-key authentication: find the presented key, look it up by its SHA-256 digest.

use pingora::http::RequestHeader;

use crate::proxy::errors::Reject;
use crate::state::{ActiveConfig, KeyEntry};

/// The other headers a key may come in (prebuilt: a `&str` name is parsed on every lookup).
static KEY_HEADERS: [http::HeaderName; 2] = [
    http::HeaderName::from_static("x-api-key"),
    http::HeaderName::from_static("api-key"),
];

/// The key a client presented, from `Authorization: Bearer`, `x-api-key` or `api-key` (in
/// that order: what the OpenAI, Anthropic and Azure SDKs send).
pub fn presented_key(req: &RequestHeader) -> Option<&[u8]> {
    if let Some(v) = req.headers.get(http::header::AUTHORIZATION) {
        let v = v.as_bytes();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            let token = v[7..].trim_ascii();
            if !token.is_empty() {
                return Some(token);
            }
        }
    }
    KEY_HEADERS.iter().find_map(|name| {
        req.headers
            .get(name)
            .map(|v| v.as_bytes().trim_ascii())
            .filter(|v| !v.is_empty())
    })
}

/// Authenticates the request; returns the project index.
pub fn authenticate(
    cfg: &ActiveConfig,
    req: &RequestHeader,
    now_unix: i64,
) -> Result<usize, Reject> {
    authenticate_entry(cfg, req, now_unix).map(|e| e.project)
}

/// Authenticates the request; returns the key's entry (project and policy).
pub fn authenticate_entry<'c>(
    cfg: &'c ActiveConfig,
    req: &RequestHeader,
    now_unix: i64,
) -> Result<&'c KeyEntry, Reject> {
    let key = presented_key(req).ok_or(Reject::MissingKey)?;
    let entry = cfg.key(key).ok_or(Reject::InvalidKey)?;
    if entry.revoked {
        return Err(Reject::RevokedKey);
    }
    if entry.expires_at.is_some_and(|t| now_unix >= t) {
        return Err(Reject::ExpiredKey);
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = match RequestHeader::build("POST", b"/v1/chat/completions", None) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        for (k, v) in headers {
            let _ = r.insert_header(k.to_string(), v.to_string());
        }
        r
    }

    #[test]
    fn finds_key_in_each_supported_header() {
        assert_eq!(
            presented_key(&req(&[("authorization", "Bearer k1")])),
            Some(&b"k1"[..])
        );
        assert_eq!(
            presented_key(&req(&[("authorization", "bearer  k1 ")])),
            Some(&b"k1"[..])
        );
        assert_eq!(
            presented_key(&req(&[("x-api-key", "k2")])),
            Some(&b"k2"[..])
        );
        assert_eq!(presented_key(&req(&[("api-key", "k3")])), Some(&b"k3"[..]));
        assert_eq!(presented_key(&req(&[("authorization", "Basic abc")])), None);
        assert_eq!(presented_key(&req(&[("authorization", "Bearer ")])), None);
        assert_eq!(presented_key(&req(&[])), None);
    }
}
