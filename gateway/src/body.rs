//! Request-body buffering with a hard cap: refuse as soon as the cap is known to be passed —
//! from `Content-Length` before reading anything, or while reading a chunked body — so a
//! partial request is never forwarded and memory per request stays bounded.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;

use crate::overload::budget::Reservation;
use crate::proxy::errors::Reject;

/// The declared `Content-Length`, if any. `Err` when it is present but malformed (Pingora
/// already rejects most framing errors before a filter runs; this is defence in depth).
pub fn declared_length(session: &Session) -> Result<Option<u64>, Reject> {
    match session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
    {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(Reject::BodyRead),
    }
}

/// Reads the whole body, refusing with 413 once it would pass `cap` bytes, and with 503
/// `overloaded` when the body-memory budget cannot cover it: the declared length is reserved
/// before a byte is read, a chunked body's reservation grows with each chunk.
/// Returns `None` for a request without a body.
pub async fn read_capped(
    session: &mut Session,
    cap: u64,
    timeout: Duration,
    reservation: &mut Reservation,
) -> Result<Option<Bytes>, Reject> {
    let declared = declared_length(session)?;
    if let Some(len) = declared {
        if len > cap {
            return Err(Reject::BodyTooLarge { limit: cap });
        }
        if !reservation.cover(len) {
            return Err(Reject::Overloaded);
        }
    }
    if session.as_mut().is_body_empty() {
        return Ok(None);
    }
    let read = async {
        let mut acc = Accumulator::default();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    let total = acc.len + chunk.len() as u64;
                    if total > cap {
                        return Err(Reject::BodyTooLarge { limit: cap });
                    }
                    if !reservation.cover(total) {
                        return Err(Reject::Overloaded);
                    }
                    acc.push(chunk, declared);
                }
                Ok(None) => return Ok(Some(acc.finish())),
                Err(_) => return Err(Reject::BodyRead),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(Reject::BodyTimeout),
    }
}

/// Collects chunks; a body that arrives in one chunk is kept as is, without a copy.
#[derive(Default)]
struct Accumulator {
    len: u64,
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

impl Accumulator {
    fn push(&mut self, chunk: Bytes, declared: Option<u64>) {
        self.len += chunk.len() as u64;
        if let Some(joined) = self.joined.as_mut() {
            // With a declared length (already reserved in the memory budget), grow straight to
            // it instead of doubling past it, so a buffer never holds more than was reserved.
            if let Some(d) = declared {
                if joined.capacity() - joined.len() < chunk.len() {
                    joined.reserve((d as usize).saturating_sub(joined.len()).max(chunk.len()));
                }
            }
            joined.extend_from_slice(&chunk);
        } else if let Some(first) = self.first.take() {
            // Trust a declared length only up to 1 MiB up front, so a slow client announcing
            // a large body cannot make the gateway reserve the whole cap before sending it.
            let capacity = declared.map_or(self.len as usize * 2, |d| d.min(1 << 20) as usize);
            let mut joined = BytesMut::with_capacity(capacity.max(self.len as usize));
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&chunk);
            self.joined = Some(joined);
        } else {
            self.first = Some(chunk);
        }
    }

    fn finish(self) -> Bytes {
        match (self.joined, self.first) {
            (Some(joined), _) => joined.freeze(),
            (None, Some(first)) => first,
            (None, None) => Bytes::new(),
        }
    }
}
