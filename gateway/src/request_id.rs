//! Request ids: keep a well-formed inbound `x-request-id`, otherwise mint one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use ring::rand::{SecureRandom, SystemRandom};

/// Longest inbound id kept.
const MAX_LEN: usize = 128;

/// Returns the inbound id when it is 1..=128 characters of `[A-Za-z0-9._:-]`, else a new one.
/// Anything else is replaced, so ids are safe to log and to echo in headers.
pub fn from_inbound(inbound: Option<&[u8]>) -> String {
    match inbound {
        Some(v) if is_well_formed(v) => String::from_utf8_lossy(v).into_owned(),
        _ => new_id(),
    }
}

fn is_well_formed(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 32 hex digits: a random per-process prefix and a per-process counter. Unique (not secret),
/// and free of a syscall per request.
pub fn new_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut raw = [0u8; 8];
        if SystemRandom::new().fill(&mut raw).is_err() {
            // The OS RNG failing is near impossible; the start time still separates processes.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or_default();
            raw = (nanos ^ u64::from(std::process::id())).to_le_bytes();
        }
        u64::from_le_bytes(raw)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Digit by digit into a buffer: `format!` would cost more than the rest of the request.
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate() {
        let (v, nibble) = if i < 16 {
            (prefix, 15 - i)
        } else {
            (n, 31 - i)
        };
        *d = HEX[((v >> (nibble * 4)) & 0xf) as usize];
    }
    std::str::from_utf8(&digits).unwrap_or_default().to_owned()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_well_formed_and_replaces_the_rest() {
        assert_eq!(from_inbound(Some(b"abc-123_x.y:z")), "abc-123_x.y:z");
        for bad in [
            &b""[..],
            b"a b",
            b"a\r\nx-evil: 1",
            &[b'a'; 129],
            "é".as_bytes(),
        ] {
            let id = from_inbound(Some(bad));
            assert_eq!(id.len(), 32, "{bad:?}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(from_inbound(None), from_inbound(None));
        // The same digits `format!("{prefix:016x}{n:016x}")` gives.
        for _ in 0..3 {
            let id = new_id();
            let prefix = u64::from_str_radix(&id[..16], 16).unwrap_or_default();
            let n = u64::from_str_radix(&id[16..], 16).unwrap_or_default();
            assert_eq!(id, format!("{prefix:016x}{n:016x}"));
        }
    }
}
