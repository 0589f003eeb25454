//! Which surface a path belongs to, the body's `model`, and the upstream path.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;

use crate::json_scan::{once, top_level_fields, Scan, Unsure};
use crate::proxy::errors::Reject;
use crate::state::Org;

/// The two request surfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Surface {
    /// `/v1/...`: OpenAI-compatible, routed by the body's `model`.
    OpenAi,
    /// `/{provider}/...`: native pass-through; the provider's name is `path[1..rest_start]`
    /// and the provider path begins at `rest_start`.
    Native { rest_start: usize },
}

/// Classifies a request path. Dot segments and encoded slashes/dots are refused so the path
/// a provider sees is the path the gateway checked. Which provider a native path names is
/// decided only after authentication, within the key's org ([`native_provider`]).
pub fn surface(path: &str) -> Result<Surface, Reject> {
    if has_ambiguous_segments(path) {
        return Err(Reject::InvalidPath);
    }
    if path == "/v1" || path.starts_with("/v1/") {
        return Ok(Surface::OpenAi);
    }
    let rest = path.strip_prefix('/').ok_or(Reject::UnknownPath)?;
    let name_end = rest.find('/').unwrap_or(rest.len());
    if name_end == 0 {
        return Err(Reject::UnknownPath);
    }
    Ok(Surface::Native {
        rest_start: 1 + name_end,
    })
}

/// The provider a native path names, within `org`: another org's provider of that name is
/// as unknown as one that exists nowhere.
pub fn native_provider(org: &Org, path: &str, rest_start: usize) -> Result<usize, Reject> {
    path.get(1..rest_start)
        .and_then(|name| org.provider_by_name.get(name))
        .copied()
        .ok_or(Reject::UnknownPath)
}

fn has_ambiguous_segments(path: &str) -> bool {
    // Every ambiguity below needs a `.`, a `%` or a `\\`: an ordinary path has none and is
    // spared the searches.
    if memchr::memchr3(b'.', b'%', b'\\', path.as_bytes()).is_none() {
        return false;
    }
    let lower_has = |needle: &str| {
        path.as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    path.split('/').any(|seg| seg == "." || seg == "..")
        || lower_has("%2e")
        || lower_has("%2f")
        || lower_has("%5c")
        || path.contains('\\')
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The body's top-level `model`: `Ok(None)` when the JSON object has none (or it is not a
/// string), `Err(InvalidJson)` when the body is not a JSON object.
///
/// The whole body must be UTF-8 (JSON is): serde skips fields it ignores without checking
/// their bytes, so without this a body with invalid UTF-8 in another field was routed, yet
/// refused by [`rewrite_model`] on an aliased route (found by the `model_body` fuzz target).
pub fn model_of(body: &[u8]) -> Result<Option<Cow<'_, str>>, Reject> {
    let text = std::str::from_utf8(body).map_err(|_| Reject::InvalidJson)?;
    // One pass over the body when it can be sure of the answer below (an ordinary request).
    if let Ok(model) = top_level_model(body) {
        return Ok(model.map(Cow::Borrowed));
    }
    model_by_serde(text)
}

/// [`model_of`] by a serde parse (the definition the one-pass scan keeps to).
fn model_by_serde(text: &str) -> Result<Option<Cow<'_, str>>, Reject> {
    // serde also builds a struct from a JSON array (`["gpt-4o"]` would name a model): only an
    // object has a `model`; any other valid JSON has none (also found by the fuzz target).
    if !text.trim_start().starts_with('{') {
        return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Ok(None),
            Err(_) => Err(Reject::InvalidJson),
        };
    }
    match serde_json::from_str::<ModelField<'_>>(text) {
        Ok(m) => Ok(m.model),
        Err(e) if e.is_data() => Ok(None),
        Err(_) => Err(Reject::InvalidJson),
    }
}

/// [`model_of`]'s answer from one strict pass ([`crate::json_scan`]), when it is sure of serde's:
/// the body is a JSON object whose `model`, if present once, is `null` or a string without
/// escapes. A body that is valid UTF-8 and passes the scan parses, so serde gives the same.
fn top_level_model(body: &[u8]) -> Scan<Option<&str>> {
    let mut model: Option<Option<&str>> = None;
    top_level_fields(body, |key, c| {
        if key != b"model" {
            return c.value(1).map(|_| ());
        }
        let value = if c.null()? {
            None
        } else {
            let (text, escaped) = c.string()?;
            if escaped {
                return Err(Unsure);
            }
            Some(std::str::from_utf8(text).map_err(|_| Unsure)?)
        };
        once(&mut model, value)
    })?;
    Ok(model.flatten())
}

/// The body with its top-level `model` replaced by `upstream_model`.
pub fn rewrite_model(body: &[u8], upstream_model: &str) -> Result<Bytes, Reject> {
    // Exactly the bodies `model_of` accepts: the model being replaced must itself be valid (a
    // lone surrogate in it is refused there, though `set_top_level` would copy around it).
    model_of(body)?;
    let model = serde_json::value::to_raw_value(upstream_model).map_err(|_| Reject::Internal)?;
    set_top_level(body, "model", model)
}

/// The JSON object `body` with its top-level `key` set to `value`. Every other top-level value
/// is copied as the exact text the client sent, so numbers and strings elsewhere in the body
/// are never re-encoded (a float round trip through `f64` would change long decimals).
pub fn set_top_level(
    body: &[u8],
    key: &str,
    value: Box<serde_json::value::RawValue>,
) -> Result<Bytes, Reject> {
    // Accept exactly the bodies `model_of` reads a model from, as its callers expect: UTF-8
    // throughout, JSON syntax (escapes included) checked by serde's skipping parse of each
    // value. Not a parse into `serde_json::Value`: that also refuses what JSON allows and the
    // router accepted, such as a number past f64's range (`1e400`) or a lone surrogate escape
    // in another field (found by the `model_body` fuzz target). The values are copied as sent.
    std::str::from_utf8(body).map_err(|_| Reject::InvalidJson)?;
    let mut fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).map_err(|_| Reject::InvalidJson)?;
    fields.insert(key.to_owned(), value);
    serde_json::to_vec(&fields)
        .map(Bytes::from)
        .map_err(|_| Reject::Internal)
}

/// `base_path + path [+ ? + query]`.
pub fn upstream_path(base_path: &str, path: &str, query: Option<&str>) -> String {
    let mut out =
        String::with_capacity(base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    out.push_str(base_path);
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(path);
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_the_router_reads_is_rewritten_whatever_json_its_other_fields_hold() {
        for (body, kept) in [
            (
                &br#"{"model":"a\u0062c","te\n":1e444444444444444444444444444444444444442}"#[..],
                r#""te\n":1e444444444444444444444444444444444444442"#,
            ),
            (br#"{"model":"gpt-4o","x":"\ud800"}"#, r#""x":"\ud800""#),
            (
                br#"{"big":123456789012345678901234567890,"model":"gpt-4o"}"#,
                r#""big":123456789012345678901234567890"#,
            ),
        ] {
            assert!(matches!(model_of(body), Ok(Some(_))), "{body:?}");
            let out = rewrite_model(body, "up").unwrap();
            assert_eq!(model_of(&out).unwrap().as_deref(), Some("up"));
            // The other values go upstream exactly as the client wrote them.
            let text = std::str::from_utf8(&out).unwrap();
            assert!(text.contains(kept), "{text}");
        }
        assert!(rewrite_model(b"{\"model\":\"a\",\"x\":\"\xff\"}", "up").is_err());
        assert!(rewrite_model(br#"{"model":"a","x":"\q"}"#, "up").is_err());
    }

    #[test]
    fn model_extraction() {
        assert_eq!(
            model_of(br#"{"model":"gpt-4o","messages":[]}"#)
                .ok()
                .flatten()
                .as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            model_of(br#"{"model":"a\u0062c"}"#)
                .ok()
                .flatten()
                .as_deref(),
            Some("abc")
        );
        assert!(matches!(model_of(br#"{"messages":[]}"#), Ok(None)));
        assert!(matches!(model_of(br#"{"model":42}"#), Ok(None)));
        assert!(matches!(model_of(br#"[1,2]"#), Ok(None)));
        assert_eq!(model_of(b"{not json").err(), Some(Reject::InvalidJson));
        assert_eq!(model_of(b"").err(), Some(Reject::InvalidJson));
        // A JSON array is not an object with a model, whatever its first element.
        assert!(matches!(model_of(br#"["gpt-4o"]"#), Ok(None)));
        assert!(matches!(model_of(br#" [""] "#), Ok(None)));
        assert_eq!(model_of(b"[\"x\"").err(), Some(Reject::InvalidJson));
        // Invalid UTF-8 in a field the router does not read still makes the body invalid.
        assert_eq!(
            model_of(b"{\"model\":\"xC\",\"mod(el\":\"\xdby\"}").err(),
            Some(Reject::InvalidJson)
        );
    }

    fn model_of_by_serde(body: &[u8]) -> Result<Option<Cow<'_, str>>, Reject> {
        model_by_serde(std::str::from_utf8(body).map_err(|_| Reject::InvalidJson)?)
    }

    #[test]
    fn the_one_pass_scan_gives_what_serde_gives() {
        let cases: &[&[u8]] = &[
            br#"{"model": "bench-model", "max_tokens": 256, "temperature": 0.2, "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "yyy"}]}"#,
            br#"{"messages":[{"role":"user","content":"\"model\":\"evil\""}],"model":"m"}"#,
            br#"{"metadata":{"model":"nested"},"model":"top"}"#,
            br#"{"metadata":{"model":"nested"}}"#,
            br#"{"model":null}"#,
            br#"{"model":"a","model":"b"}"#,
            br#"{"model":"a\"b"}"#,
            br#"{"mod\u0065l":"x"}"#,
            br#"{"model":["x"]}"#,
            br#"{"model":{"id":"x"}}"#,
            br#"{"model":42,"x":}"#,
            br#"{"model":"x","x":01}"#,
            br#"{"model":"x","x":[1,]}"#,
            br#"{"model":"x"} "#,
            br#"{"model":"x"} {}"#,
            br#"{"model":"x","#,
            br#"{"model":"x""#,
            "{\"model\":\"m\u{e9}\",\"cl\u{e9}\":\"\u{e9}\"}".as_bytes(),
            "{\"model\":\"a\tb\"}".as_bytes(),
            "\u{a0}{\"model\":\"x\"}".as_bytes(),
            " \n{\"model\":\"x\"}\r\n".as_bytes(),
            br#"[{"model":"x"}]"#,
            b"",
        ];
        let check = |b: &[u8]| {
            assert_eq!(
                model_of(b),
                model_of_by_serde(b),
                "{}",
                String::from_utf8_lossy(b)
            )
        };
        for c in cases {
            check(c);
            for cut in 0..c.len() {
                check(&c[..cut]);
                check(&c[cut..]);
            }
            for at in 0..c.len() {
                for &x in b"\"\\{}[],: 0-.emn\x01\xff" {
                    let mut m = c.to_vec();
                    m[at] = x;
                    check(&m);
                }
            }
        }
        // Random edits: insertions, deletions, replacements.
        crate::json_scan::random_edits(
            cases,
            b"\"\\{}[],: 019-.enmodl\x00\x1f\xc3\xa9\xff",
            0x2545_f491_4f6c_dd1d,
            20_000,
            |m| check(m),
        );
        // The ordinary request is answered by the scan itself.
        assert_eq!(top_level_model(cases[0]), Ok(Some("bench-model")));
        assert_eq!(top_level_model(cases[1]), Ok(Some("m")));
        assert_eq!(top_level_model(cases[2]), Ok(Some("top")));
        let deep = format!(
            "{{\"model\":\"x\",\"a\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        check(deep.as_bytes());
        assert!(top_level_model(deep.as_bytes()).is_err());
    }

    #[test]
    fn rewrite_keeps_every_other_value_byte_for_byte() {
        let body = br#"{"model":"fast","temperature":0.30000000000000004,"n":12345678901234567890123,"messages":[{"content":"\u00e9"}]}"#;
        let out = rewrite_model(body, "gpt-4o-mini").unwrap_or_default();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(r#""temperature":0.30000000000000004"#),
            "{text}"
        );
        assert!(text.contains(r#""n":12345678901234567890123"#), "{text}");
        assert!(text.contains(r#""content":"\u00e9""#), "{text}");
        assert!(text.contains(r#""model":"gpt-4o-mini""#), "{text}");
    }

    #[test]
    fn rewrite_replaces_only_model() {
        let out =
            rewrite_model(br#"{"model":"fast","stream":true}"#, "gpt-4o-mini").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["stream"], true);
    }

    #[test]
    fn upstream_paths() {
        assert_eq!(
            upstream_path("", "/v1/chat/completions", None),
            "/v1/chat/completions"
        );
        assert_eq!(
            upstream_path("/openai", "/v1/x", Some("a=1")),
            "/openai/v1/x?a=1"
        );
        assert_eq!(upstream_path("", "", None), "/");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for p in [
            "/v1/../admin",
            "/v1/./x",
            "/anthropic/%2e%2e/x",
            "/v1/a%2Fb",
            "/v1\\x",
            "/..",
        ] {
            assert!(has_ambiguous_segments(p), "{p}");
        }
        assert!(!has_ambiguous_segments("/v1/chat/completions"));
        assert!(!has_ambiguous_segments("/v1/files/file-abc.jsonl"));
        assert!(!has_ambiguous_segments("/v1/x%20y"));
        assert!(has_ambiguous_segments("\\"));
        assert!(has_ambiguous_segments("."));
        assert!(has_ambiguous_segments("%2E"));
    }
}
