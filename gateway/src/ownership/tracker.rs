//! The response side of ownership: record the ids a provider's response creates, and filter
//! list responses down to the project's own objects.
//!
//! Creation responses are read as they stream past (a copy of at most [`MAX_RECORD_BYTES`]):
//! the record is made before the last chunk goes to the client, so the id is owned before the
//! client can use it. A list response is held back (up to [`MAX_LIST_BYTES`]), filtered and
//! sent as one chunk; a list the gateway cannot read (too large, compressed, not JSON) is
//! answered as an empty list rather than passed through.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use serde_json::Value;

use super::{object_kind, Ownership, Parties};
use crate::endpoints::is_object_id;

/// Largest creation response read for ids.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Largest list response filtered.
pub const MAX_LIST_BYTES: usize = 16 << 20;
/// Bytes of an SSE stream scanned for the created response's id.
const MAX_SSE_SCAN: usize = 64 << 10;

/// What to do with the response.
#[derive(Debug)]
pub enum Mode {
    /// Record the top-level `id` and nested file ids.
    Create,
    /// Record nested file ids (a batch's output file, an upload's file).
    Use,
    /// Keep only these ids in the list's `data`.
    List(HashSet<String>),
    /// Forget this id once the provider confirms its deletion.
    Delete(String),
}

/// Per-request response tracking, kept in the request context.
pub struct Tracker {
    own: Arc<Ownership>,
    who: Parties,
    /// The kind of object the endpoint creates (when the response does not say).
    kind: &'static str,
    mode: Mode,
    readable: bool,
    success: bool,
    sse: bool,
    json: bool,
    buf: Vec<u8>,
    overflow: bool,
    recorded: bool,
}

impl Tracker {
    /// Tracks one response to `who`, from an endpoint creating objects of `kind`.
    pub fn new(own: Arc<Ownership>, who: Parties, kind: &'static str, mode: Mode) -> Self {
        Self {
            own,
            who,
            kind,
            mode,
            readable: true,
            success: false,
            sse: false,
            json: false,
            buf: Vec::new(),
            overflow: false,
            recorded: false,
        }
    }

    /// Inspects the response head; a list whose body will be rewritten loses its length.
    pub fn on_response_header(&mut self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        self.success = resp.status.is_success();
        let header = |name: &str| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_ascii_lowercase())
        };
        self.readable = header("content-encoding").is_none_or(|e| e == "identity");
        let content_type = header("content-type");
        self.sse = content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/event-stream"));
        self.json = content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json"));
        if self.success && matches!(self.mode, Mode::List(_)) {
            resp.remove_header("content-length");
            resp.remove_header("content-encoding");
            resp.insert_header("transfer-encoding", "chunked")?;
        }
        Ok(())
    }

    /// Sees one chunk of the response body (`end`: the last one).
    pub fn on_body(&mut self, body: &mut Option<Bytes>, end: bool) {
        if !self.success {
            return;
        }
        match &self.mode {
            Mode::Delete(id) => {
                if end {
                    self.own.forget(&self.who, id, self.kind);
                }
            }
            Mode::List(_) => {
                if let Some(chunk) = body.take() {
                    self.append(&chunk, MAX_LIST_BYTES);
                }
                if end {
                    *body = Some(self.filtered_list());
                }
            }
            Mode::Create | Mode::Use if self.sse => {
                if let Some(chunk) = body.as_ref() {
                    if !self.recorded && !self.overflow {
                        self.append(chunk, MAX_SSE_SCAN);
                        self.scan_sse();
                    }
                }
            }
            // A file's content, say: nothing to record.
            Mode::Use if !self.json => {}
            Mode::Create | Mode::Use => {
                if let Some(chunk) = body.as_ref() {
                    self.append(chunk, MAX_RECORD_BYTES);
                }
                if end {
                    self.record_json();
                }
            }
        }
    }

    fn append(&mut self, chunk: &[u8], cap: usize) {
        if self.overflow || self.buf.len() + chunk.len() > cap {
            self.overflow = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    fn record(&mut self, objects: Vec<(String, &'static str)>) {
        let objects: Vec<(String, &'static str)> = objects
            .into_iter()
            .filter(|(i, _)| is_object_id(i))
            .collect();
        if !objects.is_empty() {
            self.own.record(&self.who, objects);
        }
        self.recorded = true;
    }

    fn record_json(&mut self) {
        let parsed = (self.readable && !self.overflow)
            .then(|| serde_json::from_slice::<Value>(&self.buf).ok())
            .flatten();
        let Some(v) = parsed else {
            if matches!(self.mode, Mode::Create) {
                tracing::warn!(account = %self.who.account,
                    "could not read a creation response: the object stays unowned");
            }
            return;
        };
        let mut ids = Vec::new();
        if matches!(self.mode, Mode::Create) {
            if let Some(id) = v.get("id").and_then(Value::as_str) {
                ids.push((id.to_owned(), kind_of(&v).unwrap_or(self.kind)));
            }
        }
        nested_ids(&v, &mut ids);
        self.record(ids);
    }

    /// Finds the first SSE event that carries the created response's id (`response.id`).
    fn scan_sse(&mut self) {
        let mut found = None;
        for line in self.buf.split(|&b| b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            if let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii()) {
                if let Some(id) = v.pointer("/response/id").and_then(Value::as_str) {
                    found = Some(id.to_owned());
                    break;
                }
            }
        }
        if let Some(id) = found {
            self.buf = Vec::new();
            self.record(vec![(id, "response")]);
        }
    }

    /// The list with only the owner's entries; `first_id`/`last_id` follow what is kept.
    fn filtered_list(&mut self) -> Bytes {
        let Mode::List(owned) = &self.mode else {
            return Bytes::new();
        };
        let parsed = (self.readable && !self.overflow)
            .then(|| serde_json::from_slice::<Value>(&self.buf).ok())
            .flatten();
        let mut v = match parsed {
            Some(v @ Value::Object(_)) if v.get("data").is_some_and(Value::is_array) => v,
            _ => {
                tracing::warn!(account = %self.who.account,
                    "could not read a list response: answered as an empty list");
                serde_json::json!({"object": "list", "data": [], "has_more": false, "first_id": null, "last_id": null})
            }
        };
        let mut nested = Vec::new();
        if let Some(Value::Array(items)) = v.get_mut("data") {
            items.retain(|item| {
                item.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| owned.contains(id))
            });
            items.iter().for_each(|i| nested_ids(i, &mut nested));
            let first = items.first().and_then(|i| i.get("id")).cloned();
            let last = items.last().and_then(|i| i.get("id")).cloned();
            if let Some(obj) = v.as_object_mut() {
                for (key, value) in [("first_id", first), ("last_id", last)] {
                    if obj.contains_key(key) {
                        obj.insert(key.into(), value.unwrap_or(Value::Null));
                    }
                }
            }
        }
        self.buf = Vec::new();
        if !nested.is_empty() {
            self.record(nested);
        }
        Bytes::from(v.to_string())
    }
}

/// The kind an object's own `object` (OpenAI) or `type` (Anthropic) field names.
fn kind_of(v: &Value) -> Option<&'static str> {
    ["object", "type"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str).and_then(object_kind))
}

/// Objects a provider creates on the owner's behalf and names inside another object: a
/// batch's output and error files, an upload's file, a fine-tuning job's result files (all
/// files).
fn nested_ids(v: &Value, ids: &mut Vec<(String, &'static str)>) {
    for key in ["output_file_id", "error_file_id"] {
        if let Some(id) = v.get(key).and_then(Value::as_str) {
            ids.push((id.to_owned(), "file"));
        }
    }
    if let Some(id) = v.pointer("/file/id").and_then(Value::as_str) {
        ids.push((id.to_owned(), "file"));
    }
    if let Some(Value::Array(files)) = v.get("result_files") {
        ids.extend(
            files
                .iter()
                .filter_map(Value::as_str)
                .map(|f| (f.to_owned(), "file")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::memory::MemoryOwnership;

    fn tracker(store: &Arc<MemoryOwnership>, mode: Mode) -> Tracker {
        let metrics = crate::ownership::OwnershipMetrics::register(&prometheus::Registry::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let own = Arc::new(Ownership::new(store.clone(), metrics));
        Tracker::new(own, Parties::new("default", "a", "openai"), "file", mode)
    }

    fn head(status: u16, ct: &str) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap_or_else(|e| panic!("{e}"));
        let _ = h.insert_header("content-type", ct);
        let _ = h.insert_header("content-length", "10");
        h
    }

    #[test]
    fn creation_is_recorded_from_a_chunked_json_response() {
        let store = Arc::new(MemoryOwnership::new());
        let mut t = tracker(&store, Mode::Create);
        t.on_response_header(&mut head(200, "application/json"))
            .unwrap_or_default();
        let mut a = Some(Bytes::from_static(br#"{"id":"batch_1","output_file_id":"#));
        t.on_body(&mut a, false);
        let mut b = Some(Bytes::from_static(br#""file-out"}"#));
        t.on_body(&mut b, true);
        assert_eq!(
            store.owner_of("default/openai", "batch_1").as_deref(),
            Some("default/a")
        );
        assert_eq!(
            store.owner_of("default/openai", "file-out").as_deref(),
            Some("default/a")
        );
        assert!(a.is_some() && b.is_some(), "chunks pass through");
    }

    #[test]
    fn failed_creation_records_nothing() {
        let store = Arc::new(MemoryOwnership::new());
        let mut t = tracker(&store, Mode::Create);
        t.on_response_header(&mut head(400, "application/json"))
            .unwrap_or_default();
        t.on_body(&mut Some(Bytes::from_static(br#"{"id":"file-x"}"#)), true);
        assert!(store.owner_of("default/openai", "file-x").is_none());
    }

    #[test]
    fn a_streamed_response_id_is_recorded() {
        let store = Arc::new(MemoryOwnership::new());
        let mut t = tracker(&store, Mode::Create);
        t.on_response_header(&mut head(200, "text/event-stream"))
            .unwrap_or_default();
        t.on_body(&mut Some(Bytes::from_static(b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"re")), false);
        t.on_body(&mut Some(Bytes::from_static(b"sp_1\"}}\n\n")), false);
        assert_eq!(
            store.owner_of("default/openai", "resp_1").as_deref(),
            Some("default/a")
        );
    }

    #[test]
    fn lists_keep_only_owned_entries() {
        let store = Arc::new(MemoryOwnership::new());
        let owned = HashSet::from(["file-a".to_owned()]);
        let mut t = tracker(&store, Mode::List(owned));
        let mut h = head(200, "application/json");
        t.on_response_header(&mut h).unwrap_or_default();
        assert!(h.headers.get("content-length").is_none());
        let mut chunk = Some(Bytes::from_static(
            br#"{"object":"list","data":[{"id":"file-b"},{"id":"file-a"}],"first_id":"file-b","last_id":"file-a","has_more":false}"#,
        ));
        t.on_body(&mut chunk, false);
        assert!(chunk.is_none(), "held back until the end");
        let mut end = None;
        t.on_body(&mut end, true);
        let v: Value = serde_json::from_slice(&end.unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["data"], serde_json::json!([{"id": "file-a"}]));
        assert_eq!(v["first_id"], "file-a");
    }

    #[test]
    fn an_unreadable_list_is_empty() {
        let store = Arc::new(MemoryOwnership::new());
        let mut t = tracker(&store, Mode::List(HashSet::from(["file-a".to_owned()])));
        let mut h = head(200, "application/json");
        let _ = h.insert_header("content-encoding", "gzip");
        t.on_response_header(&mut h).unwrap_or_default();
        let mut chunk = Some(Bytes::from_static(b"\x1f\x8b garbage"));
        t.on_body(&mut chunk, true);
        let v: Value = serde_json::from_slice(&chunk.unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["data"], serde_json::json!([]));
    }
}
