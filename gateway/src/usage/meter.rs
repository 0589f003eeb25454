//! Counts the usage of one response as it passes through, chunk by chunk.
//!
//! - `text/event-stream`: every event is parsed as it completes; nothing is held back except
//!   the bytes of an event not yet complete, and only when the usage-only chunk is being
//!   removed (otherwise the chunk passes through untouched and the parser reads a copy).
//! - JSON: the body is copied aside up to [`JSON_KEEP_BYTES`] and parsed at its end; a larger
//!   body (a big embeddings batch) keeps only its last [`JSON_TAIL_BYTES`], where every
//!   provider puts `usage`.
//! - `Content-Encoding: gzip` (the gateway asks for `identity`, but a server may ignore it):
//!   decoded on the side for counting; the client still gets the bytes the server sent. Other
//!   encodings (`br`, `zstd`, `deflate`) are not counted: usage stays unknown and is logged.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use pingora::http::ResponseHeader;

use super::extract::{self, Body, Dialect};
use super::sse::{SseItem, SseParser};
use super::Usage;

/// A JSON body up to this size is parsed whole.
pub const JSON_KEEP_BYTES: usize = 1 << 20;
/// Of a larger one, this much of the end is kept.
pub const JSON_TAIL_BYTES: usize = 64 << 10;
/// Compressed input fed to the decoder per step, bounding what one step can inflate to.
const GUNZIP_STEP: usize = 1024;

enum Mode {
    /// Not decided yet (before the response head).
    Pending,
    /// Nothing to count (not JSON nor SSE, or an encoding we do not decode).
    Off,
    Json {
        buf: Vec<u8>,
        truncated: bool,
    },
    Sse(SseParser),
}

/// The meter of one response.
pub struct UsageMeter {
    dialect: Dialect,
    /// Remove OpenAI's usage-only chunk (the gateway asked for it; the client did not).
    strip_usage_chunk: bool,
    mode: Mode,
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
    items: Vec<SseItem>,
    /// What was counted (`None`: nothing yet).
    pub usage: Option<Usage>,
    /// The model the provider says answered.
    pub model: Option<String>,
    /// Whether the response reached its end (for SSE: the provider's final event).
    pub complete: bool,
    /// Why the usage could not be counted, when it could not.
    pub uncounted: Option<&'static str>,
}

impl UsageMeter {
    /// A meter for a response in `dialect`.
    pub fn new(dialect: Dialect, strip_usage_chunk: bool) -> Self {
        Self {
            dialect,
            strip_usage_chunk,
            mode: Mode::Pending,
            gunzip: None,
            items: Vec::new(),
            usage: None,
            model: None,
            complete: false,
            uncounted: None,
        }
    }

    /// Whether the usage-only chunk will be removed (as planned before the response head).
    pub fn strips_usage_chunk(&self) -> bool {
        self.strip_usage_chunk
    }

    /// Decides how to read the body from the response head (and drops `Content-Length` when
    /// the gateway will remove an event from it).
    pub fn on_head(&mut self, resp: &mut ResponseHeader) {
        // Prebuilt names and case-insensitive comparisons: no name parsed and no lowercase
        // copy made per response.
        let value = |name: &HeaderName| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let content_type = value(&header::CONTENT_TYPE).unwrap_or_default().as_bytes();
        let is_sse = content_type
            .get(..17)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"text/event-stream"));
        let is_json = content_type
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"json"));
        let encoding = value(&header::CONTENT_ENCODING);
        let is = |e: &str| encoding.is_some_and(|v| v.eq_ignore_ascii_case(e));
        if is("gzip") || is("x-gzip") {
            self.gunzip = Some(flate2::write::GzDecoder::new(Vec::new()));
            // The stream is compressed: events cannot be removed from it.
            self.strip_usage_chunk = false;
        } else if !(encoding.is_none() || is("") || is("identity")) {
            self.mode = Mode::Off;
            self.uncounted = Some("unsupported_content_encoding");
            return;
        }
        self.mode = if is_sse {
            if self.strip_usage_chunk {
                resp.remove_header(&header::CONTENT_LENGTH);
            }
            Mode::Sse(SseParser::new(self.strip_usage_chunk))
        } else if is_json {
            Mode::Json {
                buf: Vec::new(),
                truncated: false,
            }
        } else {
            self.uncounted = Some("not_json_or_sse");
            Mode::Off
        };
    }

    /// Reads one body chunk (rewriting it only to remove the usage-only chunk).
    pub fn on_body(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        if matches!(self.mode, Mode::Pending | Mode::Off) {
            return;
        }
        if matches!(self.mode, Mode::Sse(_)) && self.strip_usage_chunk {
            self.filter_sse(body, end_of_stream);
        } else {
            let chunk = body.clone().unwrap_or_default();
            if self.gunzip.is_some() {
                self.gunzip_feed(&chunk);
            } else {
                self.feed(&chunk);
            }
        }
        if end_of_stream {
            self.finish();
        }
    }

    fn gunzip_feed(&mut self, chunk: &[u8]) {
        use std::io::Write;
        for step in chunk.chunks(GUNZIP_STEP) {
            let decoded = match self.gunzip.as_mut() {
                Some(d) => match d.write_all(step) {
                    Ok(()) => std::mem::take(d.get_mut()),
                    Err(_) => {
                        self.gunzip = None;
                        self.mode = Mode::Off;
                        self.uncounted = Some("bad_gzip");
                        return;
                    }
                },
                None => return,
            };
            self.feed(&decoded);
        }
    }

    /// Feeds decoded bytes to the parser of the current mode.
    fn feed(&mut self, bytes: &[u8]) {
        match &mut self.mode {
            Mode::Json { buf, truncated } => {
                buf.extend_from_slice(bytes);
                if buf.len() > JSON_KEEP_BYTES {
                    let cut = buf.len() - JSON_TAIL_BYTES;
                    buf.drain(..cut);
                    *truncated = true;
                }
            }
            Mode::Sse(parser) => {
                let mut items = std::mem::take(&mut self.items);
                parser.push(bytes, &mut items);
                for item in items.drain(..) {
                    self.on_item(&item);
                }
                self.items = items;
            }
            Mode::Pending | Mode::Off => {}
        }
    }

    /// SSE with removal: the chunk becomes the bytes of every complete event but the
    /// usage-only one (an incomplete event waits for its end, never longer).
    fn filter_sse(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) {
        let Mode::Sse(parser) = &mut self.mode else {
            return;
        };
        let mut items = std::mem::take(&mut self.items);
        if let Some(chunk) = body.as_ref() {
            parser.push(chunk, &mut items);
        }
        if end_of_stream {
            items.extend(parser.finish());
        }
        let mut out = BytesMut::new();
        for item in items.drain(..) {
            if !self.on_item(&item) {
                out.extend_from_slice(&item.raw);
            }
        }
        self.items = items;
        *body = (!out.is_empty()).then(|| out.freeze());
    }

    /// Counts one SSE item; returns whether it is the usage-only chunk to remove.
    fn on_item(&mut self, item: &SseItem) -> bool {
        let Some(ev) = &item.event else {
            return false;
        };
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.complete = true;
            return false;
        }
        let Some(body) = Body::parse(data.as_bytes()) else {
            return false;
        };
        let kind = body.kind.as_deref().unwrap_or(ev.event.as_str());
        match kind {
            "message_start" => {
                if let Some(m) = &body.message {
                    self.set_model(m.model.as_deref());
                    if let Some(u) = &m.usage {
                        self.usage = Some(u.to_usage(Dialect::Anthropic));
                    }
                }
            }
            "message_delta" => {
                if let Some(u) = &body.usage {
                    let delta = u.to_usage(Dialect::Anthropic);
                    let mut cur = self.usage.unwrap_or_default();
                    // Output is cumulative; input fields appear only when they changed.
                    cur.output = delta.output;
                    if delta.input > 0 {
                        cur.input = delta.input;
                    }
                    if delta.cache_read > 0 {
                        cur.cache_read = delta.cache_read;
                    }
                    if delta.cache_write > 0 {
                        cur.cache_write = delta.cache_write;
                    }
                    self.usage = Some(cur);
                }
            }
            "message_stop" => self.complete = true,
            "response.completed" | "response.incomplete" | "response.failed" => {
                if let Some(r) = &body.response {
                    self.set_model(r.model.as_deref());
                    if let Some(u) = &r.usage {
                        self.usage = Some(u.to_usage(Dialect::OpenAi));
                    }
                }
                self.complete = true;
            }
            _ => {
                if let Some(u) = &body.usage {
                    self.usage = Some(u.to_usage(self.dialect));
                }
                self.set_model(body.model.as_deref());
                return self.strip_usage_chunk && body.is_usage_only_chunk();
            }
        }
        false
    }

    fn set_model(&mut self, model: Option<&str>) {
        if let Some(m) = model.filter(|m| !m.is_empty() && m.len() <= 256) {
            if self.model.as_deref() != Some(m) {
                self.model = Some(m.to_owned());
            }
        }
    }

    fn finish(&mut self) {
        if let Some(d) = self.gunzip.take() {
            if let Ok(rest) = d.finish() {
                self.feed(&rest);
            }
        }
        match std::mem::replace(&mut self.mode, Mode::Off) {
            Mode::Json { buf, truncated } => {
                self.complete = true;
                if truncated {
                    self.usage = extract::usage_in_tail(&buf, self.dialect);
                } else if let Some((usage, model)) = extract::from_json(&buf, self.dialect) {
                    self.usage = Some(usage);
                    self.set_model(model.as_deref());
                }
            }
            Mode::Sse(mut parser) => {
                if let Some(item) = parser.finish() {
                    self.on_item(&item);
                }
            }
            Mode::Pending | Mode::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(content_type: &str, encoding: Option<&str>) -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap_or_else(|e| panic!("{e}"));
        let _ = h.insert_header("content-type", content_type);
        if let Some(e) = encoding {
            let _ = h.insert_header("content-encoding", e);
        }
        h
    }

    fn run(m: &mut UsageMeter, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let mut b = Some(Bytes::copy_from_slice(c));
            m.on_body(&mut b, i + 1 == chunks.len());
            out.extend(b.unwrap_or_default());
        }
        out
    }

    const USAGE_CHUNK: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n";

    #[test]
    fn usage_only_chunk_is_removed_and_counted() {
        let text = format!(
            "data: {{\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{{\"delta\":{{\"content\":\"hi\"}}}}],\"usage\":null}}\n\n{USAGE_CHUNK}data: [DONE]\n\n"
        );
        let mut m = UsageMeter::new(Dialect::OpenAi, true);
        m.on_head(&mut head("text/event-stream", None));
        let bytes = text.as_bytes();
        let out = run(&mut m, &[&bytes[..30], &bytes[30..120], &bytes[120..]]);
        assert_eq!(String::from_utf8_lossy(&out), text.replace(USAGE_CHUNK, ""));
        assert_eq!(m.usage.map(|u| (u.input, u.output)), Some((5, 4)));
        assert!(m.complete);
        assert_eq!(m.model.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn the_head_decides_the_mode_case_insensitively() {
        let mode = |ct: &str, enc: Option<&str>| {
            let mut m = UsageMeter::new(Dialect::OpenAi, true);
            let mut h = head(ct, enc);
            m.on_head(&mut h);
            let kind = match m.mode {
                Mode::Sse(_) => "sse",
                Mode::Json { .. } => "json",
                Mode::Off => "off",
                Mode::Pending => "pending",
            };
            (kind, m.gunzip.is_some(), m.uncounted)
        };
        assert_eq!(mode("text/event-stream", None), ("sse", false, None));
        assert_eq!(
            mode(" Text/Event-Stream; charset=utf-8", None),
            ("sse", false, None)
        );
        assert_eq!(
            mode("text/event-strea", None),
            ("off", false, Some("not_json_or_sse"))
        );
        assert_eq!(
            mode("application/JSON", Some("IDENTITY")),
            ("json", false, None)
        );
        assert_eq!(
            mode("application/problem+json", Some("")),
            ("json", false, None)
        );
        assert_eq!(
            mode("application/json", Some(" X-GZip ")),
            ("json", true, None)
        );
        assert_eq!(
            mode("application/json", Some("br")),
            ("off", false, Some("unsupported_content_encoding"))
        );
        assert_eq!(
            mode("text/plain", None),
            ("off", false, Some("not_json_or_sse"))
        );
        // Stripping the usage chunk drops Content-Length from an event stream.
        let mut m = UsageMeter::new(Dialect::OpenAi, true);
        let mut h = head("text/event-stream", None);
        let _ = h.insert_header("content-length", "10");
        m.on_head(&mut h);
        assert!(h.headers.get("content-length").is_none());
    }

    #[test]
    fn gzip_json_is_counted_and_passed_through_unchanged() {
        use std::io::Write;
        let json = br#"{"model":"gpt-4o","usage":{"prompt_tokens":11,"completion_tokens":2}}"#;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = enc.write_all(json);
        let gz = enc.finish().unwrap_or_default();
        let mut m = UsageMeter::new(Dialect::OpenAi, false);
        m.on_head(&mut head("application/json", Some("gzip")));
        let out = run(&mut m, &[&gz[..10], &gz[10..]]);
        assert_eq!(out, gz);
        assert_eq!(m.usage.map(|u| (u.input, u.output)), Some((11, 2)));
    }

    #[test]
    fn anthropic_stream_cut_short_keeps_what_was_counted() {
        let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-3-5-haiku\",\"usage\":{\"input_tokens\":9,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":6}}\n\nevent: content_blo";
        let mut m = UsageMeter::new(Dialect::Anthropic, false);
        m.on_head(&mut head("text/event-stream; charset=utf-8", None));
        let mut b = Some(Bytes::from(text));
        m.on_body(&mut b, false);
        assert_eq!(
            m.usage,
            Some(Usage {
                input: 9,
                output: 6,
                cache_read: 3,
                cache_write: 0
            })
        );
        assert!(!m.complete);
    }
}
