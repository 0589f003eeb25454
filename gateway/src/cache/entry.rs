//! A stored response and its wire form in Redis: a magic line, the metadata as JSON behind a
//! 4-byte big-endian length, then the body bytes exactly as the client received them.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::usage::Usage;

const MAGIC: &[u8] = b"AIGWCACHE1\n";
/// Metadata larger than this is not ours (a corrupt or foreign value).
const MAX_META: usize = 16 * 1024;

/// One stored 200 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `x-request-id` of the response that was stored.
    pub source_request_id: String,
    /// Its `content-type` (`application/json` or `text/event-stream`...).
    pub content_type: String,
    /// The body the client received (for a stream: every SSE byte up to its final event).
    pub body: Bytes,
    /// Tokens it used, when the provider reported them.
    pub usage: Option<Usage>,
    /// The model that answered, when known.
    pub model: Option<String>,
    /// When it was stored, Unix milliseconds.
    pub stored_at_ms: u64,
    /// When it stops being served, Unix milliseconds.
    pub expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    source_request_id: String,
    content_type: String,
    usage: Option<[u64; 4]>,
    model: Option<String>,
    stored_at_ms: u64,
    expires_at_ms: u64,
}

impl Entry {
    /// Bytes it holds in memory, for the cache's byte bound.
    pub fn weight(&self) -> u32 {
        let n = self.body.len()
            + self.source_request_id.len()
            + self.content_type.len()
            + self.model.as_ref().map_or(0, String::len)
            + 160; // the struct, the key and the map's own bookkeeping, roughly
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The Redis value.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let meta = Meta {
            source_request_id: self.source_request_id.clone(),
            content_type: self.content_type.clone(),
            usage: self
                .usage
                .map(|u| [u.input, u.output, u.cache_read, u.cache_write]),
            model: self.model.clone(),
            stored_at_ms: self.stored_at_ms,
            expires_at_ms: self.expires_at_ms,
        };
        let meta = serde_json::to_vec(&meta).ok()?;
        let len = u32::try_from(meta.len()).ok()?;
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + meta.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        Some(out)
    }

    /// Reads a Redis value; `None` when it is not one of ours.
    pub fn decode(value: Vec<u8>) -> Option<Self> {
        let rest = value.strip_prefix(MAGIC)?;
        let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > MAX_META {
            return None;
        }
        let meta: Meta = serde_json::from_slice(rest.get(4..4 + len)?).ok()?;
        let start = MAGIC.len() + 4 + len;
        let body = Bytes::from(value).slice(start..);
        Some(Self {
            source_request_id: meta.source_request_id,
            content_type: meta.content_type,
            body,
            usage: meta
                .usage
                .map(|[input, output, cache_read, cache_write]| Usage {
                    input,
                    output,
                    cache_read,
                    cache_write,
                }),
            model: meta.model,
            stored_at_ms: meta.stored_at_ms,
            expires_at_ms: meta.expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_foreign_values() {
        let e = Entry {
            source_request_id: "req-1".into(),
            content_type: "application/json".into(),
            body: Bytes::from_static(b"{\"id\":\"x\"}"),
            usage: Some(Usage {
                input: 3,
                output: 4,
                cache_read: 1,
                cache_write: 0,
            }),
            model: Some("gpt-4o".into()),
            stored_at_ms: 10,
            expires_at_ms: 20,
        };
        let bytes = e.encode().unwrap_or_default();
        assert_eq!(Entry::decode(bytes.clone()), Some(e));
        assert_eq!(Entry::decode(b"something else".to_vec()), None);
        assert_eq!(Entry::decode(bytes[..MAGIC.len() + 6].to_vec()), None);
    }
}
