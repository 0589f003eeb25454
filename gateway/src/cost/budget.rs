//! Monthly spend per project (UTC calendar months) against `monthly_budget_cents`.
//!
//! A request is refused once the month's spend has reached the budget; the request that
//! crosses it is the last one admitted (its cost is only known once it has run). Spend is kept
//! in memory by `org/project@YYYY-MM` (shared through Redis when configured), so a new month
//! starts from zero and a reload keeps it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use super::calendar::Month;
use super::PICO_PER_CENT;
use crate::limits::registry::Registry;
use crate::limits::ProjectPolicy;

/// A 429 `budget_exceeded`: which budget, and when it resets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// `org/project`.
    pub project: Arc<str>,
    /// The budget, in cents.
    pub budget_cents: u64,
    /// `YYYY-MM-01T00:00:00Z` of the next month.
    pub resets_at: String,
    /// Seconds until then.
    pub retry_after_secs: u64,
}

/// Budget thresholds reported when crossed, in percent.
pub const THRESHOLDS: [u32; 2] = [80, 100];

/// Spend counters.
#[derive(Default)]
pub struct Budgets {
    spend: Registry<AtomicU64>,
    month_start: AtomicI64,
}

/// The spend counter a request charges when its cost is known.
#[derive(Debug, Clone)]
pub struct SpendSlot {
    counter: Arc<AtomicU64>,
    budget_pico: u128,
}

impl SpendSlot {
    /// Adds `pico`; returns the thresholds (percent) this crossed.
    pub fn charge(&self, pico: u64) -> Vec<u32> {
        if pico == 0 {
            return Vec::new();
        }
        let before = self.counter.fetch_add(pico, Ordering::AcqRel);
        let after = before.saturating_add(pico);
        crossed(before, after, self.budget_pico)
    }
}

/// The thresholds in [`THRESHOLDS`] that spend passed going from `before` to `after`.
pub fn crossed(before: u64, after: u64, budget_pico: u128) -> Vec<u32> {
    THRESHOLDS
        .iter()
        .copied()
        .filter(|&t| {
            let line = budget_pico * u128::from(t);
            u128::from(before) * 100 < line && u128::from(after) * 100 >= line
        })
        .collect()
}

impl Budgets {
    /// Checks `project`'s budget at `now_secs`: the slot to charge, `None` without a budget,
    /// or the refusal once the month's spend has reached it.
    pub fn admit(
        &self,
        project: &ProjectPolicy,
        now_secs: i64,
    ) -> Result<Option<SpendSlot>, BudgetExceeded> {
        let Some(slot) = self.slot(project, now_secs) else {
            return Ok(None);
        };
        if u128::from(slot.counter.load(Ordering::Acquire)) >= slot.budget_pico {
            let cents = project.monthly_budget_cents.unwrap_or(0);
            return Err(exceeded(project, cents, Month::of(now_secs), now_secs));
        }
        Ok(Some(slot))
    }

    /// The month's spend counter of `project` without checking it (`None` without a budget).
    pub fn slot(&self, project: &ProjectPolicy, now_secs: i64) -> Option<SpendSlot> {
        let cents = project.monthly_budget_cents?;
        let month = Month::of(now_secs);
        self.forget_old_months(month);
        Some(SpendSlot {
            counter: self.spend.get(&spend_key(&project.name, month)),
            budget_pico: u128::from(cents) * PICO_PER_CENT,
        })
    }

    /// Raises the spend of `project` (`org/project`) in the month of `now_secs` to at least
    /// `pico` (never lowers it): spend stored by the control plane, after a restart.
    pub fn raise(&self, project: &str, now_secs: i64, pico: u64) {
        let month = Month::of(now_secs);
        self.forget_old_months(month);
        self.spend
            .get(&spend_key(project, month))
            .fetch_max(pico, Ordering::AcqRel);
    }

    fn forget_old_months(&self, month: Month) {
        let start = month.start_secs();
        if self.month_start.swap(start, Ordering::AcqRel) != start {
            let suffix = format!("@{}", month.label());
            self.spend.retain(|name| name.ends_with(&suffix));
        }
    }
}

/// The counter's name: `org/project@YYYY-MM` (also its Redis key suffix).
pub fn spend_key(project: &str, month: Month) -> String {
    let mut key = String::with_capacity(project.len() + 8);
    key.push_str(project);
    key.push('@');
    month.push_label(&mut key);
    key
}

/// The refusal for `project` in `month`.
pub fn exceeded(
    project: &ProjectPolicy,
    cents: u64,
    month: Month,
    now_secs: i64,
) -> BudgetExceeded {
    let next = month.next();
    BudgetExceeded {
        project: project.name.clone(),
        budget_cents: cents,
        resets_at: format!("{}-01T00:00:00Z", next.label()),
        retry_after_secs: u64::try_from(next.start_secs() - now_secs)
            .unwrap_or(1)
            .max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(cents: u64) -> ProjectPolicy {
        ProjectPolicy {
            org: "o".into(),
            slug: "p".into(),
            name: "o/p".into(),
            requests_per_minute: None,
            tokens_per_minute: None,
            monthly_budget_cents: Some(cents),
        }
    }

    #[test]
    fn the_request_that_crosses_is_admitted_the_next_is_refused_until_next_month() {
        let b = Budgets::default();
        let p = project(1); // one cent = 10^10 pico
        let now = 1_795_946_400; // 2026-11-29T10:00:00Z
        let slot = b
            .admit(&p, now)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("no slot"));
        assert_eq!(slot.charge(7_000_000_000), Vec::<u32>::new());
        assert_eq!(slot.charge(2_000_000_000), vec![80]);
        let slot = b
            .admit(&p, now)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("no slot"));
        assert_eq!(slot.charge(5_000_000_000), vec![100]);
        let e = match b.admit(&p, now + 1) {
            Err(e) => e,
            Ok(_) => panic!("admitted over budget"),
        };
        assert_eq!(e.resets_at, "2026-12-01T00:00:00Z");
        assert_eq!(e.retry_after_secs, 1_796_083_200 - now as u64 - 1);
        assert!(b.admit(&p, 1_796_083_200).is_ok());
    }

    #[test]
    fn one_charge_can_cross_both_thresholds() {
        assert_eq!(crossed(0, 100, 100), vec![80, 100]);
        assert_eq!(crossed(100, 200, 100), Vec::<u32>::new());
    }
}
