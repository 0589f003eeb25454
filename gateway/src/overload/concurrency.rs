//! In-flight caps: a per-project counter that survives config reloads (the new config takes
//! the old counters over, by `org/project`), and guards that release a slot when dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A project's in-flight counter, shared by every config generation that has the project.
#[derive(Debug, Default, Clone)]
pub struct InFlightCounter(Arc<AtomicU64>);

impl InFlightCounter {
    /// Takes a slot if fewer than `max` are taken (`None` = no cap).
    pub fn try_enter(&self, max: Option<u64>) -> Option<Slot> {
        let limit = max.unwrap_or(u64::MAX);
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.0.clone()))
    }

    /// Slots taken now.
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// One request's slot; released on drop.
#[derive(Debug)]
pub struct Slot(Arc<AtomicU64>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_released() {
        let c = InFlightCounter::default();
        let a = c.try_enter(Some(2));
        let b = c.try_enter(Some(2));
        assert!(a.is_some() && b.is_some());
        assert!(c.try_enter(Some(2)).is_none());
        drop(a);
        assert!(c.try_enter(Some(2)).is_some());
        assert_eq!(
            c.current(),
            1,
            "the slot taken just above was dropped at once"
        );
        assert!(c.try_enter(None).is_some());
    }
}
