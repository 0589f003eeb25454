//! OpenAI-style rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.

use http::HeaderValue;
use pingora::http::ResponseHeader;

/// One limit as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trio {
    /// The limit per minute.
    pub limit: u64,
    /// What is left of it in this minute.
    pub remaining: u64,
    /// Milliseconds until the window resets.
    pub reset_ms: u64,
}

/// The headers of one response: the binding (least remaining) limit of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// Requests per minute.
    pub requests: Option<Trio>,
    /// Tokens per minute.
    pub tokens: Option<Trio>,
}

impl RateHeaders {
    /// Keeps whichever of the two has less remaining.
    pub fn tighter(a: Option<Trio>, b: Trio) -> Option<Trio> {
        Some(match a {
            Some(a) if a.remaining <= b.remaining => a,
            _ => b,
        })
    }

    /// Adds the headers to a response head.
    pub fn apply(&self, h: &mut ResponseHeader) -> pingora::Result<()> {
        // Names as static strings and numbers written straight into the header value: no
        // `format!` per header on every response.
        let names = [
            (
                self.requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            (
                self.tokens,
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
        ];
        for (trio, [limit, remaining, reset]) in names {
            if let Some(t) = trio {
                h.insert_header(limit, HeaderValue::from(t.limit))?;
                h.insert_header(remaining, HeaderValue::from(t.remaining))?;
                h.insert_header(reset, reset_text(t.reset_ms))?;
            }
        }
        Ok(())
    }
}

/// A duration in OpenAI's header style: `250ms`, `17s`, `1m0s`.
pub fn reset_text(ms: u64) -> String {
    // Written digit by digit: `format!` costs more than the rest of the header.
    let mut out = String::with_capacity(24);
    if ms < 1000 {
        push_decimal(&mut out, ms);
        out.push_str("ms");
    } else {
        let secs = ms.div_ceil(1000);
        if secs < 60 {
            push_decimal(&mut out, secs);
        } else {
            push_decimal(&mut out, secs / 60);
            out.push('m');
            push_decimal(&mut out, secs % 60);
        }
        out.push('s');
    }
    out
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_is_written_like_openai() {
        assert_eq!(reset_text(250), "250ms");
        assert_eq!(reset_text(16_200), "17s");
        assert_eq!(reset_text(60_000), "1m0s");
        assert_eq!(reset_text(0), "0ms");
        assert_eq!(reset_text(999), "999ms");
        assert_eq!(reset_text(1000), "1s");
        assert_eq!(reset_text(59_001), "1m0s");
        assert_eq!(reset_text(3_599_999), "60m0s");
        assert_eq!(
            reset_text(u64::MAX),
            format!(
                "{}m{}s",
                u64::MAX.div_ceil(1000) / 60,
                u64::MAX.div_ceil(1000) % 60
            )
        );
    }
}
