//! What a request cost, and monthly budgets.
//!
//! Costs are exact integers: prices are micro-units of currency per million tokens, so
//! `tokens × price` is in pico-units (10⁻¹² of the currency). Nothing is rounded per request;
//! a sum of costs is exact and is rounded once, where it is shown.

pub mod budget;
pub mod calendar;
pub mod prices;

pub use budget::{BudgetExceeded, Budgets};
pub use prices::{Price, PriceTable};

/// Pico-units (10⁻¹²) of currency per cent.
pub const PICO_PER_CENT: u128 = 10_000_000_000;
