//! Fuzz targets for every parser that takes untrusted input. Each target is a plain function
//! of the input bytes that must never panic and checks what the parser promises (a property,
//! not only "no crash"). `fuzz_targets/*.rs` hand them to libFuzzer (`scripts/fuzz.sh`);
//! `tests/replay.rs` runs every stored input through them on stable, so an input that once
//! crashed stays fixed.
//!
//! | target | parser |
//! | --- | --- |
//! | [`model_body`] | the body's `model` extraction and rewrite (`gateway::routing`) |
//! | [`request_path`] | the request path → surface and upstream path (`gateway::routing`) |
//! | [`key_headers`] | the virtual-key headers (`gateway::auth`) |
//! | [`gateway_config`] | the standalone config file (`gateway::config`) |
//! | [`oidc_token`] | the control plane's bearer header, token header and claims (`controlplane::auth`) |
//! | [`jwks_document`] | the issuer's JWKS document (`controlplane::auth::jwks`) |
//! | [`slug`] | slug validation (`gateway_schema::Slug`, the control plane's path/body guard) |
//! | [`signed_snapshot`] | the snapshot envelope, its signature check and payload (`gateway_schema::signed`) |
//! | [`sse_stream`] | the gateway's reader of the control plane's snapshot stream (`gateway::control_plane::sse`) |
//! | [`usage_sse`] | the SSE parser and usage extraction of provider responses (`gateway::usage`) |
//! | [`multipart`] | the `multipart/form-data` boundary, `model` field and rewrite (`gateway::multipart`) |
//! | [`object_refs`] | object references in request bodies (`gateway::ownership::refs`) |
//! | [`endpoint_class`] | the endpoint allowlist (`gateway::endpoints`) |

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use gateway::config::GatewayFile;
use gateway::proxy::errors::Reject;
use gateway::routing::{self, Surface};
use gateway::state::ActiveConfig;
use gateway_schema::{KeyDigest, Slug};
use jsonwebtoken::{Algorithm, EncodingKey};
use pingora::http::RequestHeader;

/// The one virtual key the fuzzing config knows.
const KNOWN_KEY: &[u8] = b"gwk_fuzz_known_key";
/// Byte that separates the fields of a structured input.
const SEP: u8 = 0xff;

fn config() -> &'static ActiveConfig {
    static CFG: OnceLock<ActiveConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        // IP-literal hosts and no secrets: building resolves nothing over the network.
        let text = format!(
            "providers:\n\
             \x20 - {{name: openai, kind: openai-compatible, base_url: \"http://127.0.0.1:9\"}}\n\
             \x20 - {{name: anthropic, kind: openai-compatible, base_url: \"http://127.0.0.1:9/anthropic\"}}\n\
             routes:\n\
             \x20 - {{model: \"gpt-*\", provider: openai}}\n\
             projects:\n\
             \x20 - slug: fuzz\n\
             \x20   keys: [{{digest: \"{}\"}}]\n",
            KeyDigest::of(KNOWN_KEY)
        );
        let file = GatewayFile::parse(Path::new("fuzz.yaml"), &text)
            .unwrap_or_else(|e| panic!("fuzzing config: {e}"));
        ActiveConfig::build(&file.snapshot, 1).unwrap_or_else(|e| panic!("fuzzing config: {e}"))
    })
}

/// `model` extraction and rewrite: the rewrite keeps every other field, its result names
/// exactly the new model, and every body whose model can be read can also be rewritten (a
/// route with `upstream_model` never fails on a body the router accepted).
pub fn model_body(data: &[u8]) {
    const NEW: &str = "fuzz-upstream-model";
    let model = routing::model_of(data);
    let rewritten = routing::rewrite_model(data, NEW);
    if let Ok(Some(_)) = &model {
        assert!(
            rewritten.is_ok(),
            "model_of read a model but rewrite_model refused the body"
        );
    }
    if let Ok(out) = rewritten {
        assert!(
            model.is_ok(),
            "rewrite_model took a body model_of calls invalid"
        );
        match routing::model_of(&out) {
            Ok(Some(m)) => assert_eq!(m, NEW),
            other => panic!("rewritten body does not name the new model: {other:?}"),
        }
        // Every other field's value exactly as sent (as text: a number past f64's range is
        // valid JSON the router forwards, but no `serde_json::Value`).
        let fields = |b: &[u8]| {
            let mut m: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_slice(b).unwrap_or_else(|e| panic!("not an object: {e}"));
            m.remove("model");
            m.into_iter()
                .map(|(k, v)| (k, v.get().to_owned()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(data),
            fields(&out),
            "rewrite changed fields other than model"
        );
    }
}

/// Request path → surface → native provider: dot segments and encoded separators are always
/// refused; a native path's provider is one of the key's org and the rest is a slice of the
/// path; the upstream path stays under the provider's base path.
pub fn request_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let cfg = config();
    let result = routing::surface(path);
    let dotted = path.split('/').any(|s| s == "." || s == "..");
    if dotted {
        assert_eq!(result, Err(Reject::InvalidPath), "dot segments accepted");
    }
    match result {
        Ok(Surface::OpenAi) => assert!(path == "/v1" || path.starts_with("/v1/")),
        Ok(Surface::Native { rest_start }) => {
            let rest = path
                .get(rest_start..)
                .unwrap_or_else(|| panic!("rest_start {rest_start} is not inside {path:?}"));
            assert!(rest.is_empty() || rest.starts_with('/'));
            let org = cfg
                .org_of(0)
                .unwrap_or_else(|| panic!("the fuzzing project has no org"));
            if let Ok(provider) = routing::native_provider(org, path, rest_start) {
                assert!(provider < cfg.providers.len());
                assert!(org.provider_by_name.values().any(|&p| p == provider));
            }
            let upstream = routing::upstream_path("/base", rest, query);
            let upstream_path = upstream.split('?').next().unwrap_or_default();
            assert!(upstream_path.starts_with("/base/"), "{upstream}");
            assert!(
                !upstream_path.split('/').any(|s| s == "." || s == ".."),
                "{upstream}"
            );
        }
        Err(_) => {}
    }
}

/// Key headers: the presented key is never empty or padded, and only the known key
/// authenticates, from whichever header carries it.
pub fn key_headers(data: &[u8]) {
    let mut req = match RequestHeader::build("POST", b"/v1/chat/completions", None) {
        Ok(r) => r,
        Err(e) => panic!("request: {e}"),
    };
    let mut values = data.splitn(3, |b| *b == SEP);
    for name in ["authorization", "x-api-key", "api-key"] {
        let Some(v) = values.next() else { break };
        if let Ok(v) = http::HeaderValue::from_bytes(v) {
            let _ = req.insert_header(name, v);
        }
    }
    let presented = gateway::auth::presented_key(&req);
    if let Some(k) = presented {
        assert!(!k.is_empty());
        assert_eq!(k.trim_ascii(), k, "key keeps surrounding whitespace");
    }
    if gateway::auth::authenticate(config(), &req, 0).is_ok() {
        assert_eq!(
            presented,
            Some(KNOWN_KEY),
            "a key other than the known one passed"
        );
    }
}

/// The standalone config: any text either loads or is refused with an error, never a panic;
/// what loads is valid.
pub fn gateway_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = GatewayFile::parse(Path::new("fuzz.yaml"), text) {
        assert!(file.server.validate().is_ok());
        assert!(file.snapshot.validate().is_ok());
    }
}

struct Oidc {
    runtime: tokio::runtime::Runtime,
    verifier: controlplane::auth::oidc::OidcVerifier,
    signing_key: EncodingKey,
}

const ISSUER: &str = "http://127.0.0.1:9";
const AUDIENCE: &str = "controlplane";
/// The kid of the test-only EC key the fuzzing issuer publishes.
pub const OIDC_KID: &str = "fuzz-ec-1";

fn oidc() -> &'static Oidc {
    static OIDC: OnceLock<Oidc> = OnceLock::new();
    OIDC.get_or_init(|| {
        let pem = include_bytes!("../../controlplane/tests/fixtures/test-only-ec-1.pem");
        let signing_key = EncodingKey::from_ec_pem(pem).unwrap_or_else(|e| panic!("key: {e}"));
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&signing_key, Algorithm::ES256)
            .unwrap_or_else(|e| panic!("jwk: {e}"));
        jwk.common.key_id = Some(OIDC_KID.into());
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        // An issuer nobody listens on: an unknown kid's refresh fails at once, and only once.
        let cfg: controlplane::config::OidcConfig = serde_yaml_ng::from_str(&format!(
            "{{issuer: \"{ISSUER}\", audience: [{AUDIENCE}], unknown_kid_refresh_interval_secs: 86400, jwks_max_age_secs: 86400, http_timeout_ms: 200}}"
        ))
        .unwrap_or_else(|e| panic!("oidc config: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let metrics =
            controlplane::metrics::Metrics::new().unwrap_or_else(|e| panic!("metrics: {e}"));
        let keys = runtime.block_on(async {
            controlplane::auth::jwks::JwksCache::with_document(&cfg, metrics, jwks.as_bytes())
                .unwrap_or_else(|e| panic!("jwks: {e}"))
        });
        let verifier =
            controlplane::auth::oidc::OidcVerifier::with_keys(&cfg, Arc::new(keys));
        Oidc {
            runtime,
            verifier,
            signing_key,
        }
    })
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// A compact JWS over exactly these header and claims bytes, validly signed by the issuer's
/// test key (so the fuzzer reaches the checks after the signature).
pub fn signed_token(header: &[u8], claims: &[u8]) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &oidc().signing_key, Algorithm::ES256)
            .unwrap_or_else(|e| panic!("sign: {e}"));
    format!("{message}.{signature}")
}

/// The control plane's token handling. The first byte picks what the rest is:
/// 0 — a raw `Authorization` header value (bearer parsing, then the token as sent);
/// 1 — the claims of a token with a valid header and signature;
/// 2 — header and claims (split at 0xFF) of a validly signed token.
/// A token is accepted only from the configured issuer, for the configured audience, with a
/// subject; anything else is an error, never a panic.
pub fn oidc_token(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => {
            let Ok(value) = http::HeaderValue::from_bytes(rest) else {
                return;
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            match controlplane::auth::bearer(&headers) {
                Some(t) => t.to_owned(),
                None => return,
            }
        }
        1 => {
            let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{OIDC_KID}"}}"#);
            signed_token(header.as_bytes(), rest)
        }
        _ => {
            let (header, claims) = match rest.iter().position(|b| *b == SEP) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b"{}"[..]),
            };
            signed_token(header, claims)
        }
    };
    oidc_token_accepts(&token);
}

/// Whether the fuzzing issuer's verifier accepts `token`; an accepted token is checked to come
/// from the configured issuer, for the configured audience, with a subject.
pub fn oidc_token_accepts(token: &str) -> bool {
    let o = oidc();
    let Ok(identity) = o.runtime.block_on(o.verifier.verify(token)) else {
        return false;
    };
    assert_eq!(identity.issuer, ISSUER);
    assert!(!identity.subject.is_empty());
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|c| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
        })
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok())
        .unwrap_or_default();
    let aud_ok = match &claims["aud"] {
        serde_json::Value::String(a) => a == AUDIENCE,
        serde_json::Value::Array(a) => a.iter().any(|v| v == AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "accepted a token not meant for us: {claims}");
    true
}

/// The issuer's JWKS document: only asymmetric signing keys survive, each with at least one
/// algorithm, none of them HMAC (no `alg` confusion with a public key as a shared secret).
pub fn jwks_document(data: &[u8]) {
    if let Ok(keys) = controlplane::auth::jwks::parse_jwks(data) {
        for (kid, key) in keys {
            assert!(!kid.is_empty());
            assert!(!key.algorithms.is_empty());
            for alg in &key.algorithms {
                assert!(
                    !matches!(
                        alg,
                        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 | Algorithm::EdDSA
                    ),
                    "kept a key usable with {alg:?}"
                );
            }
        }
    }
}

/// Slugs: accepted exactly when the rule holds (1–63 of `a-z 0-9 -`, no edge hyphen), the
/// same through serde and the control plane's guard, and a slug round-trips unchanged.
pub fn slug(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let rule = (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    let parsed = Slug::parse(s);
    assert_eq!(
        parsed.is_ok(),
        rule,
        "Slug::parse disagrees with the rule on {s:?}"
    );
    let via_serde = serde_json::from_value::<Slug>(serde_json::Value::String(s.to_owned()));
    assert_eq!(via_serde.is_ok(), rule, "serde disagrees on {s:?}");
    let via_guard = controlplane::guards::slug::parse("org", s);
    assert_eq!(
        via_guard.is_ok(),
        rule,
        "the control plane guard disagrees on {s:?}"
    );
    if let Ok(slug) = parsed {
        assert_eq!(slug.as_str(), s);
        let json = serde_json::to_string(&slug).unwrap_or_else(|e| panic!("{e}"));
        let back: Slug = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, slug);
    }
}

struct Signer {
    key_pair: ring::signature::Ed25519KeyPair,
    verifying: gateway_schema::signed::VerifyingKey,
}

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let generated = gateway_schema::signed::SigningKey::generate()
            .unwrap_or_else(|e| panic!("keygen: {e}"));
        let pkcs8 = base64::engine::general_purpose::STANDARD
            .decode(generated.private_pkcs8_b64.expose())
            .unwrap_or_else(|e| panic!("pkcs8: {e}"));
        let key_pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
            .unwrap_or_else(|e| panic!("pkcs8: {e}"));
        let verifying = gateway_schema::signed::VerifyingKey::from_base64(&generated.public_b64)
            .unwrap_or_else(|e| panic!("public key: {e}"));
        Signer {
            key_pair,
            verifying,
        }
    })
}

/// The snapshot envelope and signature check. The first byte picks what the rest is:
/// 0 — the envelope JSON as received (stream event data or the last-known-good file);
/// 1 — a payload, wrapped in an envelope *validly signed* by the trusted key with its real
/// hash (so the fuzzer reaches payload parsing and validation; the version is read from the
/// payload when it has one).
/// What verifies is a valid snapshot whose version equals the envelope's.
pub fn signed_snapshot(data: &[u8]) {
    use gateway_schema::signed::SignedSnapshot;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let s = signer();
    let envelope = if mode % 2 == 0 {
        match SignedSnapshot::from_json(rest) {
            Ok(e) => e,
            Err(_) => return,
        }
    } else {
        let Ok(payload) = std::str::from_utf8(rest) else {
            return;
        };
        let version = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v["version"].as_u64())
            .unwrap_or(0);
        let signature = s.key_pair.sign(payload.as_bytes());
        SignedSnapshot {
            version,
            sha256: gateway_schema::signed::sha256_hex(payload.as_bytes()),
            signature: base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
            payload: payload.to_owned(),
        }
    };
    if let Ok(snapshot) = envelope.verify(&s.verifying) {
        assert_eq!(snapshot.version, envelope.version);
        assert!(snapshot.validate().is_ok());
        if mode % 2 == 0 {
            // Only the trusted key signs: an envelope from the input verifies only if the
            // input carried a signature this process made, which it cannot.
            panic!("an envelope not signed by the trusted key verified");
        }
    }
}

/// The snapshot stream's SSE reader: no event exceeds the limit, and the events do not depend
/// on how the bytes were split into chunks (the input's 0xFF bytes mark the chunk borders).
pub fn sse_stream(data: &[u8]) {
    use gateway::control_plane::sse::Reader;
    const MAX: usize = 512;
    let mut chunked = Reader::new(MAX);
    let mut chunked_events = Vec::new();
    let mut too_large = false;
    for chunk in data.split(|b| *b == SEP) {
        match chunked.feed(chunk) {
            Ok(events) => chunked_events.extend(events),
            Err(_) => {
                too_large = true;
                break;
            }
        }
    }
    let whole: Vec<u8> = data.iter().copied().filter(|b| *b != SEP).collect();
    let mut single = Reader::new(MAX);
    if let Ok(events) = single.feed(&whole) {
        if !too_large {
            assert_eq!(chunked_events, events, "events depend on chunk borders");
        }
        for e in &events {
            assert!(e.data.len() <= MAX, "an event over the limit was returned");
        }
    }
}

/// Provider responses: the SSE parser reports every input byte exactly once, in order (so a
/// filtered stream is the input minus whole events), its events do not depend on chunk
/// borders (0xFF bytes), usage extraction from any event or tail never panics, and the
/// one-pass body reading agrees with the full parse on every event and on the whole input.
pub fn usage_sse(data: &[u8]) {
    use gateway::usage::extract::{self, Dialect};
    use gateway::usage::sse::{SseItem, SseParser};
    let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut parser = SseParser::new(true);
        let mut items = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut items);
        }
        if let Some(last) = parser.finish() {
            items.push(last);
        }
        items
    };
    let chunked: Vec<SseItem> = run(&mut data.split(|b| *b == SEP));
    let whole: Vec<u8> = data.iter().copied().filter(|b| *b != SEP).collect();
    let raw: Vec<u8> = chunked.iter().flat_map(|i| i.raw.iter().copied()).collect();
    assert_eq!(raw, whole, "raw bytes are not the input, once and in order");
    let single: Vec<SseItem> = run(&mut std::iter::once(&whole[..]));
    let events = |items: &[SseItem]| {
        items
            .iter()
            .filter_map(|i| i.event.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        events(&chunked),
        events(&single),
        "events depend on chunk borders"
    );
    // The one-pass reading of a body (usage's fast path) answers exactly as the full parse.
    let same_as_full_parse = |bytes: &[u8]| {
        assert_eq!(
            extract::Body::parse(bytes),
            extract::Body::parse_full(bytes),
            "the one-pass parse differs from the full parse"
        );
    };
    for e in events(&single) {
        same_as_full_parse(e.data.as_bytes());
        for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
            let _ = extract::from_json(e.data.as_bytes(), dialect);
        }
    }
    same_as_full_parse(&whole);
    for dialect in [Dialect::OpenAi, Dialect::Anthropic] {
        let _ = extract::from_json(&whole, dialect);
        let _ = extract::usage_in_tail(&whole, dialect);
    }
}

/// The `multipart/form-data` reader (`gateway::multipart`). The first byte picks what the rest
/// is: 0 — a `Content-Type` header value and a body, split at the first 0xFF; 1 — a body with
/// the boundary `XyZ123`. A content type yields a boundary only for `multipart/form-data`
/// (1–70 bytes); a model read from a body is a range of it that the rewrite replaces and
/// nothing else (what precedes and follows it is kept byte for byte), after which the body
/// names exactly the new model; rewriting a model with itself gives back the same body.
pub fn multipart(data: &[u8]) {
    use gateway::multipart;
    const NEW: &str = "fuzz-upstream-model";
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (boundary, body) = if mode % 2 == 0 {
        let (ct, body) = match rest.iter().position(|b| *b == SEP) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        // Only what a real header value can hold reaches the parser.
        let Ok(value) = http::HeaderValue::from_bytes(ct) else {
            return;
        };
        let Some(b) = multipart::boundary(value.as_bytes()) else {
            return;
        };
        assert!((1..=70).contains(&b.len()), "boundary of {} bytes", b.len());
        let essence = std::str::from_utf8(ct)
            .ok()
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        assert!(
            essence.eq_ignore_ascii_case("multipart/form-data"),
            "a boundary from {essence:?}"
        );
        (b.to_owned(), body)
    } else {
        ("XyZ123".to_owned(), rest)
    };
    let found = multipart::field(body, &boundary, "model");
    let model = multipart::model_of(body, &boundary);
    match (&found, &model) {
        (Ok(Some(r)), Ok(Some(m))) => assert_eq!(body.get(r.clone()), Some(m.as_bytes())),
        (Ok(Some(_)), Err(_)) | (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        other => panic!("field and model_of disagree: {other:?}"),
    }
    let rewritten = multipart::rewrite_model(body, &boundary, NEW);
    let Ok(Some(range)) = found else {
        assert!(rewritten.is_err(), "rewrote a body without a model field");
        return;
    };
    let out = rewritten.unwrap_or_else(|e| panic!("a body with a model field: {e:?}"));
    assert_eq!(&out[..range.start], &body[..range.start]);
    assert_eq!(&out[range.start + NEW.len()..], &body[range.end..]);
    if model.is_ok() {
        assert_eq!(multipart::model_of(&out, &boundary), Ok(Some(NEW)));
        let same = std::str::from_utf8(&body[range.clone()]).unwrap_or_default();
        let again = multipart::rewrite_model(body, &boundary, same)
            .unwrap_or_else(|e| panic!("rewrite with the same model: {e:?}"));
        assert_eq!(
            &again[..],
            body,
            "rewriting with the same model changed the body"
        );
    }
}

/// The object references a tree walk of a parsed JSON value finds, under the same rules as
/// `gateway::ownership::refs::scan` (metadata skipped, a tool call's `input` skipped,
/// `conversation` as a string or `{"id"}`): the oracle for [`object_refs`].
fn oracle_refs(v: &serde_json::Value, top: bool, ids: &mut Vec<String>) {
    use serde_json::Value;
    const ONE: &[&str] = &[
        "file_id",
        "input_file_id",
        "training_file",
        "validation_file",
        "previous_response_id",
        "vector_store_id",
        "container",
        "conversation",
    ];
    const MANY: &[&str] = &["file_ids", "vector_store_ids"];
    let push = |ids: &mut Vec<String>, id: &str| {
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    };
    match v {
        Value::Array(items) => items.iter().for_each(|i| oracle_refs(i, false, ids)),
        Value::Object(map) => {
            let tool_use = map
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("tool_use"));
            for (k, val) in map {
                match k.as_str() {
                    "metadata" => {}
                    "input" if tool_use => {}
                    k if !(top && k == "store") && ONE.contains(&k) => match val {
                        Value::String(s) => push(ids, s),
                        Value::Object(inner) if k == "conversation" => {
                            for (ik, iv) in inner {
                                match iv {
                                    Value::String(s) if ik == "id" => push(ids, s),
                                    other => oracle_refs(other, false, ids),
                                }
                            }
                        }
                        other => oracle_refs(other, false, ids),
                    },
                    k if !(top && k == "store") && MANY.contains(&k) => match val {
                        Value::Array(items) => {
                            for item in items {
                                match item {
                                    Value::String(s) => push(ids, s),
                                    other => oracle_refs(other, false, ids),
                                }
                            }
                        }
                        other => oracle_refs(other, false, ids),
                    },
                    _ => oracle_refs(val, false, ids),
                }
            }
        }
        _ => {}
    }
}

/// The request-body reference scanner (`gateway::ownership::refs`): it never refuses JSON a
/// tree parser reads, and on a body without duplicate keys (the input re-serialized from its
/// parsed tree) it finds exactly the references, `store` flag and `previous_response_id`
/// that a tree walk finds — a reference it missed would let a project use another's object.
pub fn object_refs(data: &[u8]) {
    use gateway::ownership::refs;
    let scanned = refs::scan(data);
    let Ok(tree) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    assert!(
        scanned.is_ok(),
        "refused JSON that a tree parser reads: {scanned:?}"
    );
    let canonical = tree.to_string();
    let got = refs::scan(canonical.as_bytes())
        .unwrap_or_else(|e| panic!("refused re-serialized JSON: {e:?}"));
    let mut expected = Vec::new();
    oracle_refs(&tree, true, &mut expected);
    let mut found = got.ids.clone();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "references differ on {canonical}");
    let mut dedup = got.ids.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), got.ids.len(), "ids are not deduplicated");
    let top = tree.as_object();
    assert_eq!(
        got.store,
        top.and_then(|m| m.get("store"))
            .and_then(serde_json::Value::as_bool)
    );
    assert_eq!(
        got.previous_response,
        top.is_some_and(|m| m.contains_key("previous_response_id"))
    );
}

/// The endpoint allowlist (`gateway::endpoints::classify`). The first byte picks the provider
/// kind and method, the second the families the policy enables (one bit each), the rest is
/// the path. Administration is refused whatever is enabled; what is allowed is a clean path
/// (leading `/`, no empty or dot segment), of an enabled family or inference, with object ids
/// that are real segments of the path; enabling more families never refuses more; `HEAD` and
/// unknown methods never pass.
pub fn endpoint_class(data: &[u8]) {
    use gateway::endpoints::{self, Effect};
    use gateway_schema::{EndpointFamily, ProviderKind};
    const FAMILIES: [EndpointFamily; 8] = [
        EndpointFamily::Files,
        EndpointFamily::Uploads,
        EndpointFamily::Batches,
        EndpointFamily::VectorStores,
        EndpointFamily::StoredResponses,
        EndpointFamily::FineTuning,
        EndpointFamily::MessageBatches,
        EndpointFamily::AnthropicFiles,
    ];
    let [pick, mask, path @ ..] = data else {
        return;
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let kind = [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::OpenaiCompatible,
    ][usize::from(pick % 3)];
    let method = [
        http::Method::GET,
        http::Method::POST,
        http::Method::DELETE,
        http::Method::HEAD,
        http::Method::PUT,
        http::Method::PATCH,
        http::Method::OPTIONS,
    ][usize::from((pick / 3) % 7)]
    .clone();
    let enabled: Vec<EndpointFamily> = FAMILIES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, f)| *f)
        .collect();
    let result = endpoints::classify(kind, &method, path, &enabled);
    let all = endpoints::classify(kind, &method, path, &FAMILIES);
    if endpoints::is_admin(path) {
        assert_eq!(result, Err(Reject::EndpointNotAllowed { admin: true }));
        assert_eq!(all, Err(Reject::EndpointNotAllowed { admin: true }));
        return;
    }
    let inference = endpoints::is_inference(kind, &method, path);
    let Ok(endpoint) = result else {
        assert!(!inference, "inference refused with families enabled");
        return;
    };
    assert_eq!(
        all.as_ref(),
        Ok(&endpoint),
        "enabling more families changed {path}"
    );
    assert!(
        matches!(
            method,
            http::Method::GET | http::Method::POST | http::Method::DELETE
        ),
        "{method} allowed"
    );
    assert!(path.starts_with('/'));
    assert!(
        !path[1..]
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".."),
        "unclean path allowed: {path:?}"
    );
    match endpoint.family {
        None => assert!(inference),
        Some(f) => {
            assert!(enabled.contains(&f), "{f:?} is not enabled");
            assert!(!inference);
        }
    }
    if endpoint.effect == Effect::Delete {
        assert_eq!(method, http::Method::DELETE);
        assert!(!endpoint.ids.is_empty(), "a delete names no object");
    }
    for r in &endpoint.ids {
        let id = path
            .get(r.clone())
            .unwrap_or_else(|| panic!("id range {r:?} outside {path:?}"));
        assert!(endpoints::is_object_id(id));
        assert_eq!(&path[r.start - 1..r.start], "/");
        assert!(path[r.end..].is_empty() || path[r.end..].starts_with('/'));
    }
}
