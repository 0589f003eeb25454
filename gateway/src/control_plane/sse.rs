//! A minimal incremental Server-Sent Events reader for the snapshot stream: bytes in, whole
//! events out. Comment lines (heartbeats) are skipped; an event larger than the limit is an
//! error, so a broken or hostile peer cannot grow the buffer without bound.

/// One event: its name (`message` when none was given) and its data lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field.
    pub name: String,
    /// The `data:` fields.
    pub data: String,
}

/// The stream sent an event larger than the reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event larger than {0} bytes")]
pub struct TooLarge(pub usize);

/// Buffers partial lines between chunks.
pub struct Reader {
    buf: Vec<u8>,
    name: String,
    data: String,
    has_data: bool,
    max: usize,
}

impl Reader {
    /// A reader refusing events over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            name: String::new(),
            data: String::new(),
            has_data: false,
            max,
        }
    }

    /// Feeds a chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let line = &self.buf[start..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if line.is_empty() {
                if self.has_data {
                    let name = if self.name.is_empty() {
                        "message".to_owned()
                    } else {
                        std::mem::take(&mut self.name)
                    };
                    events.push(Event {
                        name,
                        data: std::mem::take(&mut self.data),
                    });
                }
                self.name.clear();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.name = value.to_owned(),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
            if self.data.len() > self.max {
                return Err(TooLarge(self.max));
            }
        }
        self.buf.drain(..start);
        if self.buf.len() > self.max {
            return Err(TooLarge(self.max));
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut r = Reader::new(1024);
        let mut all = Vec::new();
        for chunk in [
            &b": hb\n\nevent: snap"[..],
            b"shot\ndata: {\"a\"",
            b":1}\r\n\r\nevent: current\ndata: 5\n",
            b"\ndata: x\ndata: y\n\n",
        ] {
            all.extend(r.feed(chunk).unwrap_or_default());
        }
        assert_eq!(
            all,
            vec![
                Event {
                    name: "snapshot".into(),
                    data: "{\"a\":1}".into()
                },
                Event {
                    name: "current".into(),
                    data: "5".into()
                },
                Event {
                    name: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut r = Reader::new(16);
        assert_eq!(r.feed(&[b'a'; 40]), Err(TooLarge(16)));
        let mut r = Reader::new(16);
        assert_eq!(r.feed(b"data: 0123456789abcdefg\n"), Err(TooLarge(16)));
    }
}
