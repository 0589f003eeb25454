//! Usage from the JSON a provider returns, in OpenAI's and Anthropic's shapes:
//!
//! - OpenAI chat completions, completions, embeddings: `usage.prompt_tokens` (cached ones
//!   included, `usage.prompt_tokens_details.cached_tokens` of them), `usage.completion_tokens`;
//! - OpenAI responses: `usage.input_tokens` (`input_tokens_details.cached_tokens` of them
//!   cached), `usage.output_tokens`; in a stream, `response.completed` (and `.incomplete`,
//!   `.failed`) carry it under `response.usage`;
//! - Anthropic messages: `usage.input_tokens` (uncached), `cache_read_input_tokens`,
//!   `cache_creation_input_tokens`, `output_tokens`; in a stream `message_start` carries the
//!   input side under `message.usage` and `message_delta` the cumulative output count.

use serde::Deserialize;

use super::Usage;

#[derive(Deserialize, Default, Debug, PartialEq)]
pub(super) struct Details {
    #[serde(default)]
    pub(super) cached_tokens: Option<u64>,
}

/// Every usage field either shape may carry.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct RawUsage {
    #[serde(default)]
    pub(super) prompt_tokens: Option<u64>,
    #[serde(default)]
    pub(super) completion_tokens: Option<u64>,
    #[serde(default)]
    pub(super) prompt_tokens_details: Option<Details>,
    #[serde(default)]
    pub(super) input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) output_tokens: Option<u64>,
    #[serde(default)]
    pub(super) input_tokens_details: Option<Details>,
    #[serde(default)]
    pub(super) cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub(super) cache_creation_input_tokens: Option<u64>,
}

/// Which convention `input_tokens` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI and compatible servers: input counts include cached tokens.
    OpenAi,
    /// Anthropic: input counts exclude cache reads and writes.
    Anthropic,
}

impl RawUsage {
    /// Normalises to [`Usage`].
    pub fn to_usage(&self, dialect: Dialect) -> Usage {
        if let Some(prompt) = self.prompt_tokens {
            let cached = self
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(prompt);
            return Usage {
                input: prompt - cached,
                output: self.completion_tokens.unwrap_or(0),
                cache_read: cached,
                cache_write: 0,
            };
        }
        let input = self.input_tokens.unwrap_or(0);
        match dialect {
            Dialect::Anthropic => Usage {
                input,
                output: self.output_tokens.unwrap_or(0),
                cache_read: self.cache_read_input_tokens.unwrap_or(0),
                cache_write: self.cache_creation_input_tokens.unwrap_or(0),
            },
            Dialect::OpenAi => {
                let cached = self
                    .input_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0)
                    .min(input);
                Usage {
                    input: input - cached,
                    output: self.output_tokens.unwrap_or(0),
                    cache_read: cached,
                    cache_write: 0,
                }
            }
        }
    }
}

/// The fields of a whole JSON response, or of one SSE event's data, that matter here.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct Body {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: Option<RawUsage>,
    /// OpenAI chunks: `[]` on the usage-only chunk.
    #[serde(default)]
    pub choices: Option<Vec<serde::de::IgnoredAny>>,
    /// Anthropic `message_start`.
    #[serde(default)]
    pub message: Option<Box<Body>>,
    /// OpenAI responses stream events.
    #[serde(default)]
    pub response: Option<Box<Body>>,
}

impl Body {
    /// Parses a JSON document; `None` when it is not a JSON object. A one-pass scan of the
    /// top level answers when it can be sure of serde's answer (every provider's ordinary
    /// response); anything else gets the full parse.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        super::top_level::parse(bytes).or_else(|| Self::parse_full(bytes))
    }

    /// The full serde parse (the definition [`Body::parse`] keeps to).
    pub fn parse_full(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether this is OpenAI's usage-only stream chunk (`choices: []` with a usage).
    pub fn is_usage_only_chunk(&self) -> bool {
        self.usage.is_some() && self.choices.as_ref().is_some_and(Vec::is_empty)
    }
}

/// Usage from a whole (non-streamed) JSON response: `(usage, model)`.
pub fn from_json(bytes: &[u8], dialect: Dialect) -> Option<(Usage, Option<String>)> {
    let body = Body::parse(bytes)?;
    // A stored response fetched back, or a whole `response` object, nests it.
    let inner = match (&body.usage, &body.response) {
        (None, Some(r)) => r,
        _ => &body,
    };
    let usage = inner.usage.as_ref()?.to_usage(dialect);
    Some((usage, inner.model.clone().or(body.model)))
}

/// Finds the top-level-looking `"usage": {...}` object in the tail of a JSON body too large
/// to keep whole (usage comes last in every provider's shape). Best effort: the last
/// `"usage"` key followed by an object that parses.
pub fn usage_in_tail(tail: &[u8], dialect: Dialect) -> Option<Usage> {
    let needle = b"\"usage\"";
    let mut end = tail.len();
    while let Some(pos) = tail[..end].windows(needle.len()).rposition(|w| w == needle) {
        end = pos;
        let after = &tail[pos + needle.len()..];
        let Some(after) = after.trim_ascii_start().strip_prefix(b":") else {
            continue;
        };
        let after = after.trim_ascii_start();
        if after.first() != Some(&b'{') {
            continue;
        }
        if let Some(obj) = object_prefix(after) {
            if let Ok(raw) = serde_json::from_slice::<RawUsage>(obj) {
                return Some(raw.to_usage(dialect));
            }
        }
    }
    None
}

/// The JSON object at the start of `s` (balanced braces outside strings).
fn object_prefix(s: &[u8]) -> Option<&[u8]> {
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, &b) in s.iter().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(&s[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
        Usage {
            input,
            output,
            cache_read,
            cache_write,
        }
    }

    #[test]
    fn every_shape_normalises() {
        let chat = br#"{"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57,"prompt_tokens_details":{"cached_tokens":20}}}"#;
        assert_eq!(
            from_json(chat, Dialect::OpenAi),
            Some((u(30, 7, 20, 0), Some("gpt-4o-2024-08-06".into())))
        );
        let emb = br#"{"object":"list","data":[],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(
            from_json(emb, Dialect::OpenAi).map(|x| x.0),
            Some(u(8, 0, 0, 0))
        );
        let resp = br#"{"object":"response","model":"gpt-4.1","usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":60},"output_tokens":9,"total_tokens":109}}"#;
        assert_eq!(
            from_json(resp, Dialect::OpenAi).map(|x| x.0),
            Some(u(40, 9, 60, 0))
        );
        let anth = br#"{"type":"message","model":"claude-sonnet-4-5","usage":{"input_tokens":12,"cache_read_input_tokens":100,"cache_creation_input_tokens":30,"output_tokens":4}}"#;
        assert_eq!(
            from_json(anth, Dialect::Anthropic).map(|x| x.0),
            Some(u(12, 4, 100, 30))
        );
        assert_eq!(from_json(b"[1]", Dialect::OpenAi), None);
        assert_eq!(from_json(br#"{"ok":true}"#, Dialect::OpenAi), None);
    }

    #[test]
    fn usage_is_found_in_the_tail_of_a_large_body() {
        let tail = br#"0.1,0.2]}],"note":"\"usage\": {nope","usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        assert_eq!(usage_in_tail(tail, Dialect::OpenAi), Some(u(8, 0, 0, 0)));
        assert_eq!(usage_in_tail(b"no usage here", Dialect::OpenAi), None);
    }
}
