//! An incremental Server-Sent Events parser: bytes in, events out. Pure (no I/O, no clock), so
//! a fuzzer can drive it, and bounded: an event larger than [`MAX_EVENT_BYTES`] is passed over
//! (its bytes are still reported, so nothing a client should see is lost).
//!
//! Every input byte is reported exactly once, in order, as the `raw` of one [`SseItem`] (when
//! `keep_raw` is on): a caller that drops an item's raw bytes removes exactly that event from
//! the stream, and a caller that concatenates them all reproduces the input.

use bytes::{Bytes, BytesMut};

/// Longest event kept for parsing (1 MiB); longer ones are reported raw, unparsed.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// One dispatched event (the `event` and `data` fields of the spec; `id`/`retry` ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field (empty when absent).
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// A piece of the input: a complete event (with its bytes) or bytes that form no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseItem {
    /// The input bytes this item covers (empty unless `keep_raw`).
    pub raw: Bytes,
    /// The event, when these bytes completed one with data.
    pub event: Option<SseEvent>,
}

/// Parser state between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: BytesMut,
    scanned: usize,
    event: String,
    data: String,
    has_data: bool,
    /// The current event passed the size cap: ignore its fields until the blank line.
    skipping: bool,
    /// The buffer starts in the middle of a line (after a cap flush).
    mid_line: bool,
    keep_raw: bool,
}

impl SseParser {
    /// A parser; `keep_raw` reports each item's bytes (needed to re-emit a filtered stream).
    pub fn new(keep_raw: bool) -> Self {
        Self {
            keep_raw,
            ..Self::default()
        }
    }

    /// Feeds `input`; appends every item it completes to `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<SseItem>) {
        self.buf.extend_from_slice(input);
        loop {
            let rest = &self.buf[self.scanned..];
            let Some(i) = memchr::memchr2(b'\n', b'\r', rest) else {
                break;
            };
            let term = if rest[i] == b'\r' {
                match rest.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => break, // a `\r` at the end may be the first half of `\r\n`
                }
            } else {
                1
            };
            let line_start = self.scanned;
            self.scanned += i + term;
            if std::mem::take(&mut self.mid_line) {
                continue; // the tail of a line whose head was flushed
            }
            if i == 0 {
                self.dispatch(out);
            } else if !self.skipping {
                let line = &self.buf[line_start..line_start + i];
                field(line, &mut self.event, &mut self.data, &mut self.has_data);
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            // Too big to parse: report its bytes now, and ignore the rest of this event.
            let tail_is_partial_line = self.scanned < self.buf.len();
            let raw = self.buf.split().freeze();
            self.scanned = 0;
            self.skipping = true;
            self.mid_line = tail_is_partial_line;
            self.reset_fields();
            out.push(SseItem {
                raw: self.raw(raw),
                event: None,
            });
        }
    }

    /// The end of the stream: reports what is left (an event without its blank line is not
    /// dispatched, as the spec says).
    pub fn finish(&mut self) -> Option<SseItem> {
        self.reset_fields();
        self.skipping = false;
        self.mid_line = false;
        self.scanned = 0;
        if self.buf.is_empty() {
            return None;
        }
        let raw = self.buf.split().freeze();
        Some(SseItem {
            raw: self.raw(raw),
            event: None,
        })
    }

    fn raw(&self, b: Bytes) -> Bytes {
        if self.keep_raw {
            b
        } else {
            Bytes::new()
        }
    }

    fn reset_fields(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }

    fn dispatch(&mut self, out: &mut Vec<SseItem>) {
        let raw = self.buf.split_to(self.scanned).freeze();
        self.scanned = 0;
        let fits = raw.len() <= MAX_EVENT_BYTES;
        let event = (fits && !self.skipping && self.has_data).then(|| SseEvent {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data),
        });
        self.skipping = false;
        self.reset_fields();
        out.push(SseItem {
            raw: self.raw(raw),
            event,
        });
    }
}

/// One field line of the event being read (`line` is not empty).
fn field(line: &[u8], event: &mut String, data: &mut String, has_data: &mut bool) {
    if line[0] == b':' {
        return; // comment
    }
    let (name, value) = match line.iter().position(|&b| b == b':') {
        Some(c) => {
            let v = &line[c + 1..];
            (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
        }
        None => (line, &b""[..]),
    };
    match name {
        b"data" => {
            if *has_data {
                data.push('\n');
            }
            push_lossy(data, value);
            *has_data = true;
        }
        b"event" => {
            event.clear();
            push_lossy(event, value);
        }
        _ => {}
    }
}

/// Appends `bytes` as `String::from_utf8_lossy` reads them, checking valid UTF-8 (the usual
/// case) with the fast `str::from_utf8` first.
fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<SseEvent>, Vec<u8>) {
        let mut p = SseParser::new(true);
        let mut items = Vec::new();
        for c in chunks {
            p.push(c, &mut items);
        }
        items.extend(p.finish());
        let raw: Vec<u8> = items.iter().flat_map(|i| i.raw.to_vec()).collect();
        (items.into_iter().filter_map(|i| i.event).collect(), raw)
    }

    #[test]
    fn events_split_anywhere_parse_the_same() {
        let input = b"event: message_start\ndata: {\"a\":1}\n\n: ping\n\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\r\rtail";
        let whole = run(&[input]);
        assert_eq!(
            whole.0,
            vec![
                SseEvent {
                    event: "message_start".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "x\ny".into()
                },
                SseEvent {
                    event: String::new(),
                    data: "[DONE]".into()
                },
            ]
        );
        assert_eq!(whole.1, input.to_vec());
        for cut in 0..input.len() {
            assert_eq!(run(&[&input[..cut], &input[cut..]]), whole, "cut at {cut}");
        }
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytewise), whole);
    }

    #[test]
    fn invalid_utf8_is_replaced_as_from_utf8_lossy_does() {
        let (events, _) = run(&[b"event: e\xffx\ndata: a\xff\xfeb\ndata: \xe2\x82\n\n"]);
        assert_eq!(
            events,
            vec![SseEvent {
                event: String::from_utf8_lossy(b"e\xffx").into_owned(),
                data: String::from_utf8_lossy(b"a\xff\xfeb\n\xe2\x82").into_owned(),
            }]
        );
    }

    #[test]
    fn an_oversized_event_is_passed_over_but_its_bytes_are_kept() {
        let mut big = b"data: ".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_EVENT_BYTES + 10));
        big.extend_from_slice(b"\n\ndata: after\n\n");
        let (events, raw) = run(&[&big[..1000], &big[1000..]]);
        assert_eq!(
            events,
            vec![SseEvent {
                event: String::new(),
                data: "after".into()
            }]
        );
        assert_eq!(raw, big);
    }
}
