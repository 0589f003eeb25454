//! Usage counting from what the provider returns, without ever holding a stream back:
//! [`sse`] (an incremental SSE parser), [`extract`] (usage in OpenAI's and Anthropic's JSON
//! shapes), [`meter`] (one response: JSON or SSE, identity or gzip, optional removal of the
//! usage-only chunk the gateway asked for) and [`request`] (asking OpenAI streams for usage).

pub mod extract;
pub mod meter;
pub mod request;
pub mod sse;
mod top_level;

pub use meter::UsageMeter;

/// Tokens of one response, by kind. `input` excludes cached tokens, so the four kinds add up
/// to everything the provider counted and each has its own price.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Uncached input (prompt) tokens.
    pub input: u64,
    /// Output (completion) tokens, reasoning included.
    pub output: u64,
    /// Input tokens read from a prompt cache.
    pub cache_read: u64,
    /// Input tokens written to a prompt cache (Anthropic).
    pub cache_write: u64,
}

impl Usage {
    /// Every token: what a tokens-per-minute limit counts.
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// `(kind label, count)` pairs, for metrics and records.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("input", self.input),
            ("output", self.output),
            ("cache_read", self.cache_read),
            ("cache_write", self.cache_write),
        ]
    }
}
