//! Asking an OpenAI-style stream for its usage: a chat or text completion stream reports
//! usage only when `stream_options.include_usage` is true. When the client did not ask, the
//! gateway asks for it and removes the extra usage-only chunk from what the client sees, so
//! code that reads `chunk.choices[0]` keeps working.

use bytes::Bytes;
use serde::Deserialize;

#[derive(Deserialize)]
struct StreamFields {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Whether the path is an OpenAI endpoint whose streams report usage only on request.
pub fn needs_usage_option(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    p.ends_with("/chat/completions") || p.ends_with("/v1/completions")
}

/// Whether `body` spells `stream`, or holds a `\u` escape. The finder is built once, and a
/// `\u` is looked for at each backslash (few in a body): no searcher set up per request.
fn may_name_stream(body: &[u8]) -> bool {
    static STREAM: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"stream"));
    STREAM.find(body).is_some()
        || memchr::memchr_iter(b'\\', body).any(|at| body.get(at + 1) == Some(&b'u'))
}

/// For a streamed request that did not ask for usage: the body with
/// `stream_options.include_usage: true` added (other stream options kept). `None` when the
/// body is not a stream, already asks, or is not a JSON object.
pub fn with_usage_option(body: &[u8]) -> Option<Bytes> {
    // Most requests do not stream: a body that never spells `stream` (nor any `\u` escape,
    // which could spell the key) cannot ask for it, and is spared a second parse.
    if !may_name_stream(body) {
        return None;
    }
    let fields: StreamFields = serde_json::from_slice(body).ok()?;
    if fields.stream != Some(true)
        || fields.stream_options.and_then(|o| o.include_usage) == Some(true)
    {
        return None;
    }
    // Only `stream_options` is re-encoded; every other value keeps the client's exact text.
    let fields: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).ok()?;
    let mut options: serde_json::Map<String, serde_json::Value> = fields
        .get("stream_options")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    options.insert("include_usage".into(), serde_json::Value::Bool(true));
    let options = serde_json::value::to_raw_value(&options).ok()?;
    crate::routing::set_top_level(body, "stream_options", options).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_include_usage_only_to_streams_that_did_not_ask() {
        let out = with_usage_option(br#"{"model":"m","stream":true,"stream_options":{"x":1}}"#)
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"x": 1, "include_usage": true})
        );
        assert_eq!(v["model"], "m");
        assert!(with_usage_option(br#"{"model":"m","stream":false}"#).is_none());
        assert!(with_usage_option(br#"{"model":"m"}"#).is_none());
        assert!(
            with_usage_option(br#"{"stream":true,"stream_options":{"include_usage":true}}"#)
                .is_none()
        );
        assert!(with_usage_option(b"[]").is_none());
        for (body, may) in [
            (&br#"{"stream":true}"#[..], true),
            (br#"{"a":"\u0073"}"#, true),
            (br#"{"a":"\\u"}"#, true),
            (br#"{"a":"\\"}"#, false),
            (br#"{"a":"strea"}"#, false),
            (br#"\"#, false),
            (b"", false),
        ] {
            let by_search = memchr::memmem::find(body, b"stream").is_some()
                || memchr::memmem::find(body, b"\\u").is_some();
            assert_eq!(may_name_stream(body), may, "{body:?}");
            assert_eq!(by_search, may, "{body:?}");
        }
        // A key spelled with escapes is still read (the quick check looks for `\u`).
        assert!(with_usage_option(br#"{"model":"m","str\u0065am":true}"#).is_some());
        assert!(needs_usage_option("/v1/chat/completions"));
        assert!(needs_usage_option("/openai/v1/completions"));
        assert!(!needs_usage_option("/v1/embeddings"));
    }
}
