//! OpenAI-style rate-limit headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.

use http::{HeaderName, HeaderValue};
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

    /// How many headers [`Self::apply`] adds.
    pub fn count(&self) -> usize {
        3 * (usize::from(self.requests.is_some()) + usize::from(self.tokens.is_some()))
    }

    /// Adds the headers to a response head.
    pub fn apply(&self, h: &mut ResponseHeader) -> pingora::Result<()> {
        // Names built once and numbers written straight into the header value: no name is
        // parsed and no `format!` runs per header on every response.
        for (trio, [limit, remaining, reset]) in
            [(self.requests, &REQUEST_NAMES), (self.tokens, &TOKEN_NAMES)]
        {
            if let Some(t) = trio {
                h.insert_static_header(limit, HeaderValue::from(t.limit))?;
                h.insert_static_header(remaining, HeaderValue::from(t.remaining))?;
                let reset_value = HeaderValue::try_from(reset_text(t.reset_ms)).map_err(|_| {
                    pingora::Error::explain(pingora::ErrorType::InternalError, "reset header value")
                })?;
                h.insert_static_header(reset, reset_value)?;
            }
        }
        Ok(())
    }
}

static REQUEST_NAMES: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
static TOKEN_NAMES: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

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

    /// The headers reach the wire spelled as OpenAI spells them, replacing any the provider
    /// sent, on a head that preserves the provider's header case (as Pingora parses one).
    #[test]
    fn the_headers_are_written_on_the_wire_replacing_the_providers() {
        let mut h = ResponseHeader::build(200, Some(2)).unwrap();
        h.append_header("Content-Type", "application/json").unwrap();
        h.append_header("X-RateLimit-Limit-Requests", "7").unwrap();
        let headers = RateHeaders {
            requests: Some(Trio {
                limit: 600,
                remaining: 599,
                reset_ms: 100,
            }),
            tokens: Some(Trio {
                limit: 200_000,
                remaining: 199_000,
                reset_ms: 61_000,
            }),
        };
        assert_eq!(headers.count(), 6);
        h.reserve_headers(headers.count()).unwrap();
        headers.apply(&mut h).unwrap();
        let mut wire = Vec::new();
        h.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        let mut lines: Vec<&str> = wire.split("\r\n").filter(|l| !l.is_empty()).collect();
        lines.sort_unstable();
        assert_eq!(
            lines,
            [
                "Content-Type: application/json",
                "x-ratelimit-limit-requests: 600",
                "x-ratelimit-limit-tokens: 200000",
                "x-ratelimit-remaining-requests: 599",
                "x-ratelimit-remaining-tokens: 199000",
                "x-ratelimit-reset-requests: 100ms",
                "x-ratelimit-reset-tokens: 1m1s",
            ]
        );
        assert_eq!(RateHeaders::default().count(), 0);
    }

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
