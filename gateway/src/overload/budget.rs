//! The request-body memory budget: an atomic counter of reserved bytes and RAII reservations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Used when no container memory limit is visible: 512 MiB.
pub const DEFAULT_BUDGET_BYTES: u64 = 512 * 1024 * 1024;
/// The share of a visible container memory limit given to body buffers.
pub const LIMIT_FRACTION_PERCENT: u64 = 25;

/// The global budget (cheap to clone; all clones share it).
#[derive(Clone, Debug)]
pub struct BodyBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    used: AtomicU64,
    limit: u64,
    used_gauge: prometheus::IntGauge,
}

impl BodyBudget {
    /// A budget of `limit` bytes; `used_gauge` mirrors the bytes reserved.
    pub fn new(limit: u64, used_gauge: prometheus::IntGauge) -> Self {
        Self {
            inner: Arc::new(Inner {
                used: AtomicU64::new(0),
                limit,
                used_gauge,
            }),
        }
    }

    /// The budget's size in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty reservation on this budget, to grow as bytes arrive.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn try_add(&self, n: u64) -> bool {
        let inner = &self.inner;
        let ok = inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= inner.limit)
            })
            .is_ok();
        if ok {
            inner.used_gauge.add(n as i64);
        }
        ok
    }

    fn release(&self, n: u64) {
        self.inner.used.fetch_sub(n, Ordering::AcqRel);
        self.inner.used_gauge.sub(n as i64);
    }
}

/// Bytes reserved by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: BodyBudget,
    bytes: u64,
}

impl Reservation {
    /// Makes the reservation cover `total` bytes; `false` (nothing changed) when the budget
    /// cannot.
    pub fn cover(&mut self, total: u64) -> bool {
        if total <= self.bytes {
            return true;
        }
        let more = total - self.bytes;
        if self.budget.try_add(more) {
            self.bytes = total;
            true
        } else {
            false
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.release(self.bytes);
        }
    }
}

/// The default budget: [`LIMIT_FRACTION_PERCENT`] of the cgroup memory limit when one is set
/// (cgroup v2 `memory.max`, else v1 `memory.limit_in_bytes`), else [`DEFAULT_BUDGET_BYTES`].
pub fn default_budget() -> u64 {
    cgroup_memory_limit()
        .map(|limit| limit / 100 * LIMIT_FRACTION_PERCENT)
        .filter(|b| *b > 0)
        .unwrap_or(DEFAULT_BUDGET_BYTES)
}

fn cgroup_memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let v2 = read("/sys/fs/cgroup/memory.max");
    let v1 = read("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    let text = v2.or(v1)?;
    let n: u64 = text.trim().parse().ok()?; // "max" (no limit) does not parse
                                            // cgroup v1 reports "no limit" as a huge page-aligned number.
    (n < (1u64 << 60)).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64) -> BodyBudget {
        let g = prometheus::IntGauge::new("t", "t").unwrap_or_else(|e| panic!("{e}"));
        BodyBudget::new(limit, g)
    }

    #[test]
    fn reservations_grow_within_the_limit_and_come_back_on_drop() {
        let b = budget(100);
        let mut r1 = b.reservation();
        assert!(r1.cover(60));
        assert!(r1.cover(40), "shrinking is a no-op");
        let mut r2 = b.reservation();
        assert!(!r2.cover(41), "60 + 41 > 100");
        assert!(r2.cover(40));
        assert_eq!(b.used(), 100);
        assert!(!r2.cover(41));
        assert_eq!(r2.bytes(), 40, "a refused growth changes nothing");
        drop(r1);
        assert_eq!(b.used(), 40);
        drop(r2);
        assert_eq!(b.used(), 0);
    }
}
