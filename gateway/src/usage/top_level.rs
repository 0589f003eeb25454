//! A fast path for [`Body::parse`](super::extract::Body::parse): one validating pass over a
//! JSON document ([`crate::json_scan`]) that reads the few top-level fields usage counting
//! needs (`type`, `model`, `usage`, `choices`) and skips every other value without building
//! anything. Only the `usage` object itself goes through serde.
//!
//! It answers only when it is sure to give exactly what the full serde parse gives: strict
//! JSON (see [`crate::json_scan`]), a top-level object, no duplicate field of interest, no
//! `message` or `response` (nested bodies), `type` and `model` strings without escapes.
//! Anything else returns `None`, and the caller falls back to the full parse.

use serde::de::IgnoredAny;

use super::extract::{Body, Details, RawUsage};
use crate::json_scan::{once, top_level_fields, Cursor, Scan, Unsure};

/// A top-level `Option<String>` field: `null`, or a string without escapes in valid UTF-8
/// (what serde would copy byte for byte).
fn plain_string_or_null(c: &mut Cursor<'_>) -> Scan<Option<String>> {
    if c.null()? {
        return Ok(None);
    }
    let (text, escaped) = c.string()?;
    if escaped {
        return Err(Unsure);
    }
    let text = std::str::from_utf8(text).map_err(|_| Unsure)?;
    Ok(Some(text.to_owned()))
}

/// A `usage` value as serde reads it into `Option<RawUsage>`, when sure: `null`, or an object
/// whose known fields appear once each, as `null` or unsigned integers (the `*_details` as
/// `null` or objects with `cached_tokens` likewise); other fields skipped.
fn usage_or_null(c: &mut Cursor<'_>) -> Scan<Option<RawUsage>> {
    if c.null()? {
        return Ok(None);
    }
    let mut u = RawUsage::default();
    let mut seen = [false; 8];
    c.object_fields(|key, c| {
        let slot = match key {
            b"prompt_tokens" => 0,
            b"completion_tokens" => 1,
            b"prompt_tokens_details" => 2,
            b"input_tokens" => 3,
            b"output_tokens" => 4,
            b"input_tokens_details" => 5,
            b"cache_read_input_tokens" => 6,
            b"cache_creation_input_tokens" => 7,
            _ => return c.value(2).map(|_| ()),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(Unsure);
        }
        match slot {
            0 => u.prompt_tokens = c.u64_or_null()?,
            1 => u.completion_tokens = c.u64_or_null()?,
            2 => u.prompt_tokens_details = details_or_null(c)?,
            3 => u.input_tokens = c.u64_or_null()?,
            4 => u.output_tokens = c.u64_or_null()?,
            5 => u.input_tokens_details = details_or_null(c)?,
            6 => u.cache_read_input_tokens = c.u64_or_null()?,
            _ => u.cache_creation_input_tokens = c.u64_or_null()?,
        }
        Ok(())
    })?;
    Ok(Some(u))
}

/// A `*_tokens_details` value as serde reads it into `Option<Details>`, when sure.
fn details_or_null(c: &mut Cursor<'_>) -> Scan<Option<Details>> {
    if c.null()? {
        return Ok(None);
    }
    let mut cached: Option<Option<u64>> = None;
    c.object_fields(|key, c| {
        if key == b"cached_tokens" {
            once(&mut cached, c.u64_or_null()?)
        } else {
            c.value(3).map(|_| ())
        }
    })?;
    Ok(Some(Details {
        cached_tokens: cached.flatten(),
    }))
}

/// The [`Body`] serde would parse from `bytes`, or `None` when unsure (see the module docs).
pub fn parse(bytes: &[u8]) -> Option<Body> {
    scan(bytes).ok()
}

fn scan(bytes: &[u8]) -> Scan<Body> {
    // Each field as seen: `Some(value)` once read, so a duplicate is caught.
    let mut kind: Option<Option<String>> = None;
    let mut model: Option<Option<String>> = None;
    let mut usage: Option<Option<RawUsage>> = None;
    let mut choices: Option<Option<usize>> = None;
    top_level_fields(bytes, |key, c| {
        match key {
            b"type" => once(&mut kind, plain_string_or_null(c)?)?,
            b"model" => once(&mut model, plain_string_or_null(c)?)?,
            b"usage" => once(&mut usage, usage_or_null(c)?)?,
            b"choices" => {
                let n = if c.null()? { None } else { Some(c.array(2)?) };
                once(&mut choices, n)?;
            }
            b"message" | b"response" => return Err(Unsure),
            _ => {
                c.value(1)?;
            }
        }
        Ok(())
    })?;
    Ok(Body {
        kind: kind.flatten(),
        model: model.flatten(),
        usage: usage.flatten(),
        choices: choices.flatten().map(|n| vec![IgnoredAny; n]),
        message: None,
        response: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every provider shape the meter reads: whole responses and stream events.
    const SHAPES: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hi \"there\"\n\u00e9","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":50,"completion_tokens":7,"total_tokens":57,"prompt_tokens_details":{"cached_tokens":20,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}},"system_fingerprint":"fp_1"}"#,
        r#"{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-3.5-turbo-instruct","choices":[{"text":"x","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
        r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,1e-7,-2.5E+3,0]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#,
        r#"{"id":"resp_1","object":"response","created_at":1741476542,"status":"completed","model":"gpt-4.1","output":[{"type":"message","id":"msg_1","status":"completed","role":"assistant","content":[{"type":"output_text","text":"ok","annotations":[]}]}],"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":60},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":109}}"#,
        r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":30,"cache_read_input_tokens":100,"output_tokens":4}}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}"#,
        r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        r#"{"type":"message_stop"}"#,
        r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}"#,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        r#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#,
        " \n\t{ \"model\" : \"m\" ,\r\n \"usage\" : { \"prompt_tokens\" : 1 } } \n",
        "{}",
    ];

    /// Inputs that must be left to the full parse or that the fast path must read exactly as
    /// serde does.
    const ADVERSARIAL: &[&str] = &[
        // `usage` inside a string, and nested below the top level.
        r#"{"note":"\"usage\":{\"prompt_tokens\":9}","model":"m"}"#,
        r#"{"data":{"usage":{"prompt_tokens":9}},"model":"m"}"#,
        r#"{"choices":[{"usage":{"prompt_tokens":9}}],"usage":{"prompt_tokens":1}}"#,
        // Nested bodies: left to the full parse.
        r#"{"type":"message_start","message":{"model":"claude","usage":{"input_tokens":9}}}"#,
        r#"{"type":"response.completed","response":{"model":"gpt","usage":{"input_tokens":9,"output_tokens":2}}}"#,
        r#"{"object":"response","response":{"usage":{"input_tokens":3}}}"#,
        // Duplicate fields of interest (serde refuses), and of others (ignored).
        r#"{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}"#,
        r#"{"model":"a","model":"b","usage":{"prompt_tokens":1}}"#,
        r#"{"type":"a","type":"b"}"#,
        r#"{"choices":[],"choices":[]}"#,
        r#"{"x":1,"x":2,"usage":{"prompt_tokens":1}}"#,
        r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2}}"#,
        // Wrong types.
        r#"{"model":5,"usage":{"prompt_tokens":1}}"#,
        r#"{"type":{"a":1}}"#,
        r#"{"choices":{},"usage":{"prompt_tokens":1}}"#,
        r#"{"choices":"x"}"#,
        r#"{"usage":"x"}"#,
        r#"{"usage":[1,2]}"#,
        r#"{"usage":{"prompt_tokens":-1}}"#,
        r#"{"usage":{"prompt_tokens":1.5}}"#,
        r#"{"usage":{"prompt_tokens":18446744073709551616}}"#,
        r#"{"usage":{"prompt_tokens_details":{"cached_tokens":"x"}}}"#,
        r#"{"usage":null,"model":null,"type":null,"choices":null}"#,
        // The usage object read field by field: numbers as serde reads them into u64.
        r#"{"usage":{"prompt_tokens":0,"completion_tokens":18446744073709551615}}"#,
        r#"{"usage":{"prompt_tokens":-0}}"#,
        r#"{"usage":{"prompt_tokens":00}}"#,
        r#"{"usage":{"prompt_tokens":1e2}}"#,
        r#"{"usage":{"prompt_tokens":1.0}}"#,
        r#"{"usage":{"prompt_tokens":"5"}}"#,
        r#"{"usage":{"prompt_tokens":true}}"#,
        r#"{"usage":{"prompt_tokens":null,"input_tokens":7}}"#,
        r#"{"usage":{ "prompt_tokens" : 5 , "x" : {"prompt_tokens":[1,{"a":null}]} }}"#,
        r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":null}}"#,
        r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":[3]}}"#,
        r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":{"cached_tokens":2,"cached_tokens":3}}}"#,
        r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":{"audio":1,"cached_tokens":null}}}"#,
        r#"{"usage":{"prompt_tokens":5,"prompt_tokens_details":{},"prompt_tokens_details":{}}}"#,
        r#"{"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":9}}}"#,
        r#"{"usage":{"cache_read_input_tokens":1,"cache_creation_input_tokens":2,"output_tokens":3}}"#,
        r#"{"usage":{"pr\u006fmpt_tokens":5}}"#,
        r#"{"usage":{}}"#,
        // Escapes: in keys (left to the full parse), in values, invalid ones.
        r#"{"us\u0061ge":{"prompt_tokens":3}}"#,
        r#"{"mod\u0065l":"m","usage":{"prompt_tokens":3}}"#,
        r#"{"model":"a\u0062c","usage":{"prompt_tokens":3}}"#,
        r#"{"model":"a\"b","usage":{"prompt_tokens":3}}"#,
        r#"{"x":"\ud800","usage":{"prompt_tokens":3}}"#,
        r#"{"model":"\ud800","usage":{"prompt_tokens":3}}"#,
        r#"{"x":"\x","usage":{"prompt_tokens":3}}"#,
        r#"{"x":"\u12g4","usage":{"prompt_tokens":3}}"#,
        r#"{"x":"\u12","usage":{"prompt_tokens":3}}"#,
        r#"{"x":"a\\","usage":{"prompt_tokens":3}}"#,
        r#"{"x":"a\\\"","usage":{"prompt_tokens":3}}"#,
        "{\"x\":\"tab\there\",\"usage\":{\"prompt_tokens\":3}}",
        "{\"x\":\"nul\u{0}\",\"usage\":{\"prompt_tokens\":3}}",
        "{\"x\":\"\u{7f}\",\"usage\":{\"prompt_tokens\":3}}",
        "{\"mødel\":\"m\",\"usage\":{\"prompt_tokens\":3}}",
        "{\"model\":\"mødel\",\"usage\":{\"prompt_tokens\":3}}",
        // Numbers and literals.
        r#"{"x":-0,"y":0.5,"z":1e5,"w":1E+2,"v":-1.25e-3,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":01,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":1.,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":.5,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":1e,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":1e+,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":-,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":+1,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":nul,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":truex,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":NaN,"usage":{"prompt_tokens":3}}"#,
        r#"{"x":123456789012345678901234567890,"usage":{"prompt_tokens":3}}"#,
        // Structure.
        r#"{"usage":{"prompt_tokens":3},}"#,
        r#"{"usage":{"prompt_tokens":3}} x"#,
        r#"{"usage":{"prompt_tokens":3}}{}"#,
        r#"{"x":[1,],"usage":{"prompt_tokens":3}}"#,
        r#"{"x":[,1],"usage":{"prompt_tokens":3}}"#,
        r#"{"x":{"a":1,},"usage":{"prompt_tokens":3}}"#,
        r#"{"x":{"a"},"usage":{"prompt_tokens":3}}"#,
        r#"{"x":{1:2},"usage":{"prompt_tokens":3}}"#,
        r#"{"x" "y","usage":{"prompt_tokens":3}}"#,
        r#"{,"usage":{"prompt_tokens":3}}"#,
        r#"{"usage":{"prompt_tokens":3}"#,
        r#"["m",{"prompt_tokens":3}]"#,
        r#"[null,"m",{"prompt_tokens":3}]"#,
        "\u{feff}{\"usage\":{\"prompt_tokens\":3}}",
        "\u{c}{\"usage\":{\"prompt_tokens\":3}}",
        "",
        "null",
        "\"usage\"",
    ];

    fn check(input: &[u8]) {
        assert_eq!(
            Body::parse(input),
            Body::parse_full(input),
            "{}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn provider_shapes_take_the_fast_path_and_agree_with_serde() {
        for s in SHAPES {
            let fast = parse(s.as_bytes());
            assert!(fast.is_some(), "not read fast: {s}");
            assert_eq!(fast, Body::parse_full(s.as_bytes()), "{s}");
        }
        let chat = parse(SHAPES[0].as_bytes()).unwrap_or_default();
        assert_eq!(chat.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert!(chat.usage.is_some());
        assert_eq!(chat.choices.map(|c| c.len()), Some(1));
        // Usage objects are read by the scan itself, numbers included.
        let resp = parse(SHAPES[3].as_bytes()).unwrap_or_default();
        assert_eq!(
            resp.usage
                .map(|u| u.to_usage(super::super::extract::Dialect::OpenAi)),
            Some(super::super::Usage {
                input: 40,
                output: 9,
                cache_read: 60,
                cache_write: 0
            })
        );
        let usage_only = parse(SHAPES[6].as_bytes()).unwrap_or_default();
        assert!(usage_only.is_usage_only_chunk());
    }

    #[test]
    fn adversarial_inputs_agree_with_serde() {
        for s in ADVERSARIAL {
            check(s.as_bytes());
        }
        // Invalid UTF-8: in a skipped string (serde skips it unchecked), in `model`, in a key.
        check(b"{\"x\":\"\xff\",\"usage\":{\"prompt_tokens\":3}}");
        check(b"{\"model\":\"\xff\",\"usage\":{\"prompt_tokens\":3}}");
        check(b"{\"\xff\":1,\"usage\":{\"prompt_tokens\":3}}");
        // Deep nesting, below and beyond what the fast path walks.
        for depth in [10, 63, 64, 65, 200] {
            let deep = format!(
                "{{\"x\":{}1{},\"usage\":{{\"prompt_tokens\":3}}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            check(deep.as_bytes());
        }
    }

    #[test]
    fn truncated_bodies_agree_with_serde() {
        for s in SHAPES.iter().chain(ADVERSARIAL) {
            let b = s.as_bytes();
            for cut in 0..b.len() {
                check(&b[..cut]);
                check(&b[cut..]);
            }
        }
    }

    #[test]
    fn random_edits_agree_with_serde() {
        // A few random insertions, deletions and replacements of JSON-significant bytes per
        // case, many cases.
        let inputs: Vec<&[u8]> = SHAPES
            .iter()
            .chain(ADVERSARIAL)
            .map(|s| s.as_bytes())
            .collect();
        crate::json_scan::random_edits(
            &inputs,
            b"\"\\{}[],: 0123456789-+.eEntrufals\x00\x1f\x7f\xc3\xa9\xff",
            0x9e37_79b9_7f4a_7c15,
            20_000,
            check,
        );
    }

    #[test]
    fn single_byte_corruptions_agree_with_serde() {
        let swaps = b"\"\\{}[],: 0-.eEn\x01\xff";
        for s in SHAPES {
            let b = s.as_bytes();
            for at in 0..b.len() {
                for &x in swaps {
                    let mut m = b.to_vec();
                    m[at] = x;
                    check(&m);
                }
            }
        }
    }
}
