//! Where a JSON request body holds the text a user sent, as spans of the body: OpenAI's
//! `messages[].content` (a string or an array of content parts), `input` (responses,
//! embeddings, moderations), `prompt` (completions), `instructions` (responses), and
//! Anthropic's `system` and `messages[].content` (a string or blocks, tool results included),
//! also in each inline request of a message batch (`requests[].params`).
//!
//! Each string is found through serde's borrowed `RawValue`s, so its position in the body is
//! exact and it is decoded by the same parser that validated the body: an escape (`\u0073k-`)
//! cannot hide a match. Keys are decoded too, and every occurrence of a repeated key is
//! scanned, since a provider might read either.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Top-level fields whose strings (at any depth, through text-bearing keys) users wrote.
const TOP_KEYS: &[&str] = &["messages", "system", "input", "prompt", "instructions"];

/// Keys of nested objects whose string values (or arrays of strings and parts) are text:
/// message and part `content`/`text`, tool-call `arguments`, tool `output`, nested `input`.
const TEXT_KEYS: &[&str] = &[
    "content",
    "text",
    "arguments",
    "output",
    "input",
    "prompt",
    "system",
    "instructions",
];

/// Nesting followed below a top-level field (`messages` → message → `content` → part →
/// `content` → block → `text` is 7). Deeper values are not a shape any provider reads as text.
const MAX_DEPTH: usize = 10;

/// One string the user sent: where its JSON token (quotes included) lies in the body, and its
/// decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSpan<'a> {
    /// Byte range of the JSON string token in the body.
    pub raw: Range<usize>,
    /// The decoded string.
    pub text: Cow<'a, str>,
}

/// The body is JSON a strict parser refuses (another parser might still read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unparsable;

/// Whether `body` is meant as JSON: its first non-blank byte opens an object or an array.
pub fn looks_like_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

/// The user text of a JSON body, in body order. A body that is not a JSON object has none;
/// one that does not parse is [`Unparsable`].
pub fn user_texts(body: &[u8]) -> Result<Vec<TextSpan<'_>>, Unparsable> {
    let mut out = Vec::new();
    let entries: Entries<'_> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            // Valid JSON that is not an object (an array, a number...) names no messages.
            return serde_json::from_slice::<serde::de::IgnoredAny>(body)
                .map(|_| out)
                .map_err(|_| Unparsable);
        }
        Err(_) => return Err(Unparsable),
    };
    request(body.as_ptr() as usize, entries, true, &mut out)?;
    out.sort_by_key(|s| s.raw.start);
    Ok(out)
}

/// The text fields of one request object: the body itself, or (`batch`) each inline request
/// of an Anthropic message batch (`requests[].params`).
fn request<'a>(
    base: usize,
    entries: Entries<'a>,
    batch: bool,
    out: &mut Vec<TextSpan<'a>>,
) -> Result<(), Unparsable> {
    for (key, value) in entries.0 {
        if TOP_KEYS.contains(&key.as_ref()) {
            walk(base, value, true, 1, out)?;
        } else if batch && key == "requests" && value.get().starts_with('[') {
            let items: Vec<&'a RawValue> =
                serde_json::from_str(value.get()).map_err(|_| Unparsable)?;
            for item in items.into_iter().filter(|i| i.get().starts_with('{')) {
                let fields: Entries<'a> =
                    serde_json::from_str(item.get()).map_err(|_| Unparsable)?;
                for (k, params) in fields.0 {
                    if k == "params" && params.get().starts_with('{') {
                        let inner = serde_json::from_str(params.get()).map_err(|_| Unparsable)?;
                        request(base, inner, false, out)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn walk<'a>(
    base: usize,
    value: &'a RawValue,
    text: bool,
    depth: usize,
    out: &mut Vec<TextSpan<'a>>,
) -> Result<(), Unparsable> {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') if text => {
            let start = (raw.as_ptr() as usize)
                .checked_sub(base)
                .ok_or(Unparsable)?;
            out.push(TextSpan {
                raw: start..start + raw.len(),
                text: decode(raw)?,
            });
        }
        Some(b'[') if depth < MAX_DEPTH => {
            let items: Vec<&'a RawValue> = serde_json::from_str(raw).map_err(|_| Unparsable)?;
            for item in items {
                walk(base, item, text, depth + 1, out)?;
            }
        }
        Some(b'{') if depth < MAX_DEPTH => {
            let entries: Entries<'a> = serde_json::from_str(raw).map_err(|_| Unparsable)?;
            for (key, v) in entries.0 {
                walk(base, v, TEXT_KEYS.contains(&key.as_ref()), depth + 1, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A JSON string token's text: borrowed when it has no escapes.
fn decode(raw: &str) -> Result<Cow<'_, str>, Unparsable> {
    match raw.get(1..raw.len().saturating_sub(1)) {
        Some(inner) if raw.len() >= 2 && !inner.contains('\\') => Ok(Cow::Borrowed(inner)),
        _ => serde_json::from_str::<String>(raw)
            .map(Cow::Owned)
            .map_err(|_| Unparsable),
    }
}

/// A JSON object's members in order, repeated keys kept.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    out.push((key.0, map.next_value::<&'de RawValue>()?));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A decoded object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str) -> Vec<String> {
        match user_texts(body.as_bytes()) {
            Ok(spans) => spans
                .into_iter()
                .map(|s| {
                    assert_eq!(
                        serde_json::from_str::<String>(&body[s.raw.clone()])
                            .ok()
                            .as_deref(),
                        Some(&*s.text),
                        "the span is the token of the text"
                    );
                    s.text.into_owned()
                })
                .collect(),
            Err(Unparsable) => vec!["<unparsable>".into()],
        }
    }

    #[test]
    fn openai_chat_strings_and_content_parts() {
        let body = r#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"sys"},
            {"role":"user","content":[{"type":"text","text":"part one"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,AKIA"}}]},
            {"role":"assistant","tool_calls":[{"id":"c1","type":"function",
                "function":{"name":"f","arguments":"{\"q\":1}"}}]},
            {"role":"tool","tool_call_id":"c1","content":"tool says"}],
            "user":"someone@example.com","metadata":{"content":"not user text"}}"#;
        assert_eq!(
            texts(body),
            vec!["sys", "part one", "{\"q\":1}", "tool says"]
        );
    }

    #[test]
    fn anthropic_system_blocks_and_tool_results() {
        let body = r#"{"model":"claude","system":[{"type":"text","text":"be nice","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"deep"}]},
            {"type":"text","text":"hi"}]}]}"#;
        assert_eq!(texts(body), vec!["be nice", "deep", "hi"]);
        assert_eq!(
            texts(r#"{"system":"plain","messages":[{"role":"user","content":"x"}]}"#),
            vec!["plain", "x"]
        );
    }

    #[test]
    fn inputs_prompts_and_instructions() {
        assert_eq!(texts(r#"{"input":"one"}"#), vec!["one"]);
        assert_eq!(
            texts(r#"{"input":["a","b"],"prompt":["c"]}"#),
            vec!["a", "b", "c"]
        );
        assert_eq!(
            texts(r#"{"input":[[1,2,3]],"prompt":[4,5]}"#),
            Vec::<String>::new()
        );
        assert_eq!(
            texts(
                r#"{"instructions":"i","input":[{"role":"user","content":[{"type":"input_text","text":"t"}]},
                {"type":"function_call_output","call_id":"x","output":"o"}]}"#
            ),
            vec!["i", "t", "o"]
        );
    }

    #[test]
    fn escapes_are_decoded_in_keys_and_values_and_repeated_keys_all_count() {
        assert_eq!(
            texts(r#"{"m\u0065ssages":[{"role":"user","c\u006fntent":"\u0073k-x \u00e9"}]}"#),
            vec!["sk-x é"]
        );
        assert_eq!(
            texts(r#"{"prompt":"first","prompt":"second"}"#),
            vec!["first", "second"]
        );
    }

    #[test]
    fn anthropic_batch_requests_are_scanned() {
        assert_eq!(
            texts(
                r#"{"requests":[{"custom_id":"a","params":{"model":"c","messages":[{"role":"user","content":"one"}]}},
                {"custom_id":"b","params":{"system":"two","messages":[]}}]}"#
            ),
            vec!["one", "two"]
        );
    }

    #[test]
    fn non_objects_have_no_text_and_broken_json_is_unparsable() {
        assert_eq!(texts(r#"["messages"]"#), Vec::<String>::new());
        assert_eq!(texts("42"), Vec::<String>::new());
        assert_eq!(texts(r#"{"prompt":"x""#), vec!["<unparsable>"]);
        assert_eq!(texts(r#"{"prompt":"\ud800"}"#), vec!["<unparsable>"]);
        assert!(looks_like_json(b"  {"));
        assert!(!looks_like_json(b"--boundary"));
    }

    #[test]
    fn nesting_beyond_the_depth_limit_is_not_followed() {
        let mut deep = String::from(r#"{"input":"#);
        for _ in 0..MAX_DEPTH {
            deep.push('[');
        }
        deep.push_str(r#""hidden""#);
        for _ in 0..MAX_DEPTH {
            deep.push(']');
        }
        deep.push('}');
        assert_eq!(texts(&deep), Vec::<String>::new());
    }
}
