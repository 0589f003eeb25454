//! The cache key, and the body rules that make a request bypass the cache.
//!
//! The key is SHA-256 over length-prefixed fields: a format tag, org, project, provider,
//! upstream model, upstream path (with query), whether the gateway removes the usage-only
//! chunk from a stream, the version/beta headers ([`VARY_HEADERS`]), and the request body in
//! canonical form. Canonical form: object keys
//! sorted (by their decoded text) and every insignificant space removed; strings are
//! re-encoded from their decoded text (so `"\u0061"` and `"a"` are one string); numbers keep
//! their exact text (`1` and `1.0` stay different: the provider may treat them differently,
//! and a miss is always safe). An object with a duplicate key is refused (`not_json`): which
//! value a provider uses is not ours to guess.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use gateway_schema::{CacheAllowance, CacheSpec};

/// Format tag: changes whenever the key's recipe does, so old entries are never misread.
const KEY_FORMAT: &[u8] = b"aigw-cache-key-v1";

/// A cache key: SHA-256 of the request's identity and canonical body.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Lowercase hex, for Redis keys.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", &self.hex()[..12])
    }
}

/// Why a request does not use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// `cache-control: no-cache` or `no-store` on the request.
    Header,
    /// Not a POST.
    Method,
    /// No body, not a JSON object, or an object with a duplicate key.
    NotJson,
    /// `temperature` above 0, not allowed by the project.
    Temperature,
    /// `n` above 1, not allowed by the project.
    N,
    /// `tools` or `functions` present, not allowed by the project.
    Tools,
    /// The request creates, uses or lists provider objects (files, batches, stored responses).
    Stateful,
}

impl Bypass {
    /// The metric label and `x-cache-bypass` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Header => "no_cache_header",
            Self::Method => "method",
            Self::NotJson => "not_json",
            Self::Temperature => "temperature",
            Self::N => "n",
            Self::Tools => "tools",
            Self::Stateful => "stateful",
        }
    }
}

/// Who and where a request goes: the key's fields besides the body.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// Org slug.
    pub org: &'a str,
    /// Project slug.
    pub project: &'a str,
    /// Provider name.
    pub provider: &'a str,
    /// The model sent upstream (`""` when the gateway did not route by model).
    pub upstream_model: &'a str,
    /// The upstream path and query.
    pub path: &'a str,
    /// Whether the gateway removes the usage-only chunk from this request's stream (the same
    /// upstream body then yields different client bytes).
    pub strips_usage_chunk: bool,
    /// The request headers that change a provider's answer ([`VARY_HEADERS`]), as
    /// `name=value` lines.
    pub vary: &'a [u8],
}

/// Request headers that select a provider's API version or beta features: part of the key.
pub const VARY_HEADERS: &[&str] = &["anthropic-version", "anthropic-beta", "openai-beta"];

/// Whether a `cache-control` request header value asks not to use a cache.
pub fn header_bypasses(value: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|d| {
        let d = d.trim_ascii();
        let name = d.split(|&b| b == b'=').next().unwrap_or(d).trim_ascii();
        name.eq_ignore_ascii_case(b"no-cache") || name.eq_ignore_ascii_case(b"no-store")
    })
}

/// The key of a request body sent by `id`, or why the body bypasses the cache under `policy`.
pub fn key(id: Identity<'_>, body: &[u8], policy: &CacheSpec) -> Result<Key, Bypass> {
    let top: Entries<'_> = serde_json::from_slice(body).map_err(|_| Bypass::NotJson)?;
    for (name, value) in &top.0 {
        if let Some((bypass, allowance)) = non_deterministic(name, value.get()) {
            if !policy.allows(allowance) {
                return Err(bypass);
            }
        }
    }
    let mut h = Hasher::new();
    h.field(KEY_FORMAT);
    h.field(id.org.as_bytes());
    h.field(id.project.as_bytes());
    h.field(id.provider.as_bytes());
    h.field(id.upstream_model.as_bytes());
    h.field(id.path.as_bytes());
    h.field(&[u8::from(id.strips_usage_chunk)]);
    h.field(id.vary);
    h.object(top)?;
    Ok(h.finish())
}

/// Whether a top-level member makes the answer vary between identical requests.
fn non_deterministic(name: &str, raw: &str) -> Option<(Bypass, CacheAllowance)> {
    let number = || serde_json::from_str::<f64>(raw).ok();
    match name {
        "temperature" if number().is_some_and(|t| t > 0.0) => {
            Some((Bypass::Temperature, CacheAllowance::Temperature))
        }
        "n" if number().is_some_and(|n| n > 1.0) => Some((Bypass::N, CacheAllowance::N)),
        "tools" | "functions" => {
            let empty = raw == "null"
                || serde_json::from_str::<Vec<&RawValue>>(raw).is_ok_and(|v| v.is_empty());
            (!empty).then_some((Bypass::Tools, CacheAllowance::Tools))
        }
        _ => None,
    }
}

/// SHA-256 fed with canonical JSON through a small buffer (few, large updates).
struct Hasher {
    ctx: ring::digest::Context,
    buf: Vec<u8>,
}

impl Hasher {
    fn new() -> Self {
        Self {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            buf: Vec::with_capacity(4096),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > 4096 {
            self.ctx.update(&self.buf);
            self.buf.clear();
            if bytes.len() > 4096 {
                self.ctx.update(bytes);
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// A length-prefixed field, so no two different field lists hash alike.
    fn field(&mut self, bytes: &[u8]) {
        self.put(&(bytes.len() as u64).to_be_bytes());
        self.put(bytes);
    }

    fn string(&mut self, s: &str) -> Result<(), Bypass> {
        let encoded = serde_json::to_string(s).map_err(|_| Bypass::NotJson)?;
        self.put(encoded.as_bytes());
        Ok(())
    }

    fn object(&mut self, mut entries: Entries<'_>) -> Result<(), Bypass> {
        entries.0.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if entries.0.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Bypass::NotJson);
        }
        self.put(b"{");
        for (i, (k, v)) in entries.0.iter().enumerate() {
            if i > 0 {
                self.put(b",");
            }
            self.string(k)?;
            self.put(b":");
            self.value(v)?;
        }
        self.put(b"}");
        Ok(())
    }

    fn value(&mut self, v: &RawValue) -> Result<(), Bypass> {
        let raw = v.get();
        match raw.as_bytes().first() {
            Some(b'{') => {
                let entries: Entries<'_> =
                    serde_json::from_str(raw).map_err(|_| Bypass::NotJson)?;
                self.object(entries)
            }
            Some(b'[') => {
                let items: Vec<&RawValue> =
                    serde_json::from_str(raw).map_err(|_| Bypass::NotJson)?;
                self.put(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.put(b",");
                    }
                    self.value(item)?;
                }
                self.put(b"]");
                Ok(())
            }
            Some(b'"') => {
                let s: String = serde_json::from_str(raw).map_err(|_| Bypass::NotJson)?;
                self.string(&s)
            }
            // Numbers, true, false, null: their exact text (a raw value has no outer space).
            _ => {
                self.put(raw.as_bytes());
                Ok(())
            }
        }
    }

    fn finish(mut self) -> Key {
        self.ctx.update(&self.buf);
        let d = self.ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Key(out)
    }
}

/// An object's members in document order, duplicates kept (so they can be refused).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Entries<'a>, M::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: Identity<'static> = Identity {
        org: "acme",
        project: "web",
        provider: "openai",
        upstream_model: "gpt-4o",
        path: "/v1/chat/completions",
        strips_usage_chunk: false,
        vary: b"",
    };

    fn k(body: &str) -> Result<Key, Bypass> {
        key(ID, body.as_bytes(), &CacheSpec::default())
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = k(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
        let b = k(
            "{ \"temperature\" : 0,\n \"messages\": [ {\"content\":\"h\\u0069\", \"role\":\"user\"} ],\"model\":\"m\" }",
        );
        assert!(a.is_ok());
        assert_eq!(a, b);
    }

    #[test]
    fn values_are_preserved_exactly() {
        let base = k(r#"{"model":"m","x":1}"#);
        assert_ne!(base, k(r#"{"model":"m","x":1.0}"#));
        assert_ne!(
            k(r#"{"model":"m","x":0.10000000000000000555}"#),
            k(r#"{"model":"m","x":0.1}"#)
        );
        assert_ne!(base, k(r#"{"model":"m","x":"1"}"#));
        assert_ne!(k(r#"{"a":["x","y"]}"#), k(r#"{"a":["y","x"]}"#));
    }

    #[test]
    fn every_identity_field_is_in_the_key() {
        let body = br#"{"model":"m"}"#;
        let spec = CacheSpec::default();
        let base = key(ID, body, &spec);
        for other in [
            Identity { org: "other", ..ID },
            Identity {
                project: "other",
                ..ID
            },
            Identity {
                provider: "other",
                ..ID
            },
            Identity {
                upstream_model: "other",
                ..ID
            },
            Identity {
                path: "/v1/completions",
                ..ID
            },
            Identity {
                strips_usage_chunk: true,
                ..ID
            },
            Identity {
                vary: b"anthropic-beta=x\n",
                ..ID
            },
            // Length prefixes: moving a byte between two fields changes the key.
            Identity {
                org: "acmew",
                project: "eb",
                ..ID
            },
        ] {
            assert_ne!(base, key(other, body, &spec), "{other:?}");
        }
    }

    #[test]
    fn bypass_rules() {
        assert_eq!(k("not json"), Err(Bypass::NotJson));
        assert_eq!(k("[1]"), Err(Bypass::NotJson));
        assert_eq!(k(r#"{"a":1,"a":2}"#), Err(Bypass::NotJson));
        assert_eq!(k(r#"{"x":{"a":1,"a":1}}"#), Err(Bypass::NotJson));
        assert_eq!(k(r#"{"temperature":0.2}"#), Err(Bypass::Temperature));
        assert!(k(r#"{"temperature":0}"#).is_ok());
        assert!(k(r#"{"temperature":null}"#).is_ok());
        assert_eq!(k(r#"{"n":2}"#), Err(Bypass::N));
        assert!(k(r#"{"n":1}"#).is_ok());
        assert_eq!(k(r#"{"tools":[{"type":"function"}]}"#), Err(Bypass::Tools));
        assert_eq!(k(r#"{"functions":[{"name":"f"}]}"#), Err(Bypass::Tools));
        assert!(k(r#"{"tools":[ ]}"#).is_ok());
        let allow_all = CacheSpec {
            allow: vec![
                CacheAllowance::Temperature,
                CacheAllowance::N,
                CacheAllowance::Tools,
            ],
            ..CacheSpec::default()
        };
        assert!(key(
            ID,
            br#"{"temperature":1,"n":3,"tools":[{"type":"function"}]}"#,
            &allow_all
        )
        .is_ok());
    }

    #[test]
    fn cache_control_directives() {
        assert!(header_bypasses(b"no-cache"));
        assert!(header_bypasses(b"max-age=0, No-Store"));
        assert!(header_bypasses(b"no-cache=\"x\""));
        assert!(!header_bypasses(b"max-age=60"));
        assert!(!header_bypasses(b"no-transform"));
    }
}
