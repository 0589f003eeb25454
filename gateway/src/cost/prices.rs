//! The price table: the snapshot's `prices` first (first match wins), then the shipped
//! default table for current OpenAI and Anthropic models. Prices are integer micro-units of
//! currency (USD for the defaults) per million tokens.

use gateway_schema::{ModelPattern, PriceSpec};

use crate::usage::Usage;

/// Prices of one model, micro-units per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Uncached input tokens.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Cached input tokens read.
    pub cache_read: u64,
    /// Input tokens written to a prompt cache (Anthropic).
    pub cache_write: u64,
}

impl Price {
    /// Exact cost of `usage` in pico-units (10⁻¹² of the currency), saturating.
    pub fn cost_pico(&self, u: &Usage) -> u64 {
        let sum = u128::from(u.input) * u128::from(self.input)
            + u128::from(u.output) * u128::from(self.output)
            + u128::from(u.cache_read) * u128::from(self.cache_read)
            + u128::from(u.cache_write) * u128::from(self.cache_write);
        u64::try_from(sum).unwrap_or(u64::MAX)
    }
}

const fn p(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// Shipped defaults (USD, list prices per million tokens, in micro-dollars), most specific
/// prefix first: `gpt-4o-mini*` must come before `gpt-4o*`. A dated model name
/// (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`) matches its family's prefix.
pub const DEFAULT_PRICES: &[(&str, Price)] = &[
    // OpenAI
    ("gpt-5-nano*", p(50_000, 400_000, 5_000, 50_000)),
    ("gpt-5-mini*", p(250_000, 2_000_000, 25_000, 250_000)),
    ("gpt-5*", p(1_250_000, 10_000_000, 125_000, 1_250_000)),
    ("gpt-4.1-nano*", p(100_000, 400_000, 25_000, 100_000)),
    ("gpt-4.1-mini*", p(400_000, 1_600_000, 100_000, 400_000)),
    ("gpt-4.1*", p(2_000_000, 8_000_000, 500_000, 2_000_000)),
    ("gpt-4o-mini*", p(150_000, 600_000, 75_000, 150_000)),
    ("gpt-4o*", p(2_500_000, 10_000_000, 1_250_000, 2_500_000)),
    (
        "gpt-4-turbo*",
        p(10_000_000, 30_000_000, 10_000_000, 10_000_000),
    ),
    ("gpt-3.5-turbo*", p(500_000, 1_500_000, 500_000, 500_000)),
    ("o4-mini*", p(1_100_000, 4_400_000, 275_000, 1_100_000)),
    ("o3-mini*", p(1_100_000, 4_400_000, 550_000, 1_100_000)),
    ("o3*", p(2_000_000, 8_000_000, 500_000, 2_000_000)),
    ("o1-mini*", p(1_100_000, 4_400_000, 550_000, 1_100_000)),
    ("o1*", p(15_000_000, 60_000_000, 7_500_000, 15_000_000)),
    ("text-embedding-3-small*", p(20_000, 0, 20_000, 20_000)),
    ("text-embedding-3-large*", p(130_000, 0, 130_000, 130_000)),
    ("text-embedding-ada-002*", p(100_000, 0, 100_000, 100_000)),
    // Anthropic (cache read 0.1×, cache write 1.25× the input price)
    (
        "claude-opus-4-5*",
        p(5_000_000, 25_000_000, 500_000, 6_250_000),
    ),
    (
        "claude-opus-4*",
        p(15_000_000, 75_000_000, 1_500_000, 18_750_000),
    ),
    (
        "claude-3-opus*",
        p(15_000_000, 75_000_000, 1_500_000, 18_750_000),
    ),
    (
        "claude-sonnet-4*",
        p(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-3-7-sonnet*",
        p(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-3-5-sonnet*",
        p(3_000_000, 15_000_000, 300_000, 3_750_000),
    ),
    (
        "claude-haiku-4-5*",
        p(1_000_000, 5_000_000, 100_000, 1_250_000),
    ),
    (
        "claude-3-5-haiku*",
        p(800_000, 4_000_000, 80_000, 1_000_000),
    ),
    ("claude-3-haiku*", p(250_000, 1_250_000, 30_000, 300_000)),
];

/// The compiled table of one config.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    overrides: Vec<(ModelPattern, Price)>,
}

impl PriceTable {
    /// Compiles the snapshot's overrides.
    pub fn new(specs: &[PriceSpec]) -> Self {
        Self {
            overrides: specs
                .iter()
                .map(|s| {
                    (
                        s.model.clone(),
                        p(
                            s.input_per_mtok,
                            s.output_per_mtok,
                            s.cached_input_per_mtok.unwrap_or(s.input_per_mtok),
                            s.cache_write_per_mtok.unwrap_or(s.input_per_mtok),
                        ),
                    )
                })
                .collect(),
        }
    }

    /// The price of `model`: the first matching override, else the first matching default.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.overrides
            .iter()
            .find(|(pat, _)| pat.matches(model))
            .map(|(_, p)| *p)
            .or_else(|| {
                DEFAULT_PRICES
                    .iter()
                    .find(|(pat, _)| match pat.strip_suffix('*') {
                        Some(prefix) => model.starts_with(prefix),
                        None => model == *pat,
                    })
                    .map(|(_, p)| *p)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_default_wins_and_overrides_come_first() {
        let t = PriceTable::default();
        assert_eq!(
            t.price("gpt-4o-mini-2024-07-18").map(|p| p.input),
            Some(150_000)
        );
        assert_eq!(
            t.price("gpt-4o-2024-08-06").map(|p| p.input),
            Some(2_500_000)
        );
        assert_eq!(
            t.price("claude-3-5-haiku-latest").map(|p| p.output),
            Some(4_000_000)
        );
        assert_eq!(t.price("llama-3"), None);
        let spec: PriceSpec = match serde_json::from_value(serde_json::json!(
            {"model": "gpt-4o*", "input_per_mtok": 1, "output_per_mtok": 2}
        )) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let t = PriceTable::new(&[spec]);
        assert_eq!(t.price("gpt-4o-mini"), Some(p(1, 2, 1, 1)));
    }

    #[test]
    fn cost_is_exact_in_pico_units() {
        let u = Usage {
            input: 1_000,
            output: 500,
            cache_read: 2_000,
            cache_write: 100,
        };
        // 1000×3 + 500×15 + 2000×0.3 + 100×3.75 micro-dollars per million tokens.
        let price = p(3_000_000, 15_000_000, 300_000, 3_750_000);
        assert_eq!(price.cost_pico(&u), 11_475_000_000);
    }
}
