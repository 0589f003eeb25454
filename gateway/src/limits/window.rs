//! A fixed one-minute window counter in a single atomic word: the minute it counts (low 24 bits
//! of the Unix minute) and the count (40 bits). One compare-and-swap both rolls the window over
//! and counts, so there is no lock and no race between "new minute" and "increment".

use std::sync::atomic::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const STAMP_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

fn pack(minute: u64, count: u64) -> u64 {
    ((minute & STAMP_MASK) << COUNT_BITS) | count.min(COUNT_MASK)
}

fn count_in(word: u64, minute: u64) -> u64 {
    if word >> COUNT_BITS == minute & STAMP_MASK {
        word & COUNT_MASK
    } else {
        0
    }
}

/// Counts events in the current minute; a new minute starts from zero.
#[derive(Debug, Default)]
pub struct MinuteCounter(AtomicU64);

impl MinuteCounter {
    /// The count of `minute` (0 if the counter last counted another minute).
    pub fn get(&self, minute: u64) -> u64 {
        count_in(self.0.load(Ordering::Acquire), minute)
    }

    /// Counts one if the count is below `limit`: `Ok(count after)`, or `Err(count)` unchanged.
    pub fn try_acquire(&self, minute: u64, limit: u64) -> Result<u64, u64> {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let count = count_in(cur, minute);
            if count >= limit {
                return Err(count);
            }
            match self.0.compare_exchange_weak(
                cur,
                pack(minute, count + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(count + 1),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds `n` (saturating) to `minute`'s count; returns the count after.
    pub fn add(&self, minute: u64, n: u64) -> u64 {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let after = count_in(cur, minute).saturating_add(n).min(COUNT_MASK);
            match self.0.compare_exchange_weak(
                cur,
                pack(minute, after),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return after,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back one count taken in `minute` (a request admitted by this scope but refused
    /// by another). Nothing happens once the window has moved on.
    pub fn release(&self, minute: u64) {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let count = count_in(cur, minute);
            if count == 0 {
                return;
            }
            match self.0.compare_exchange_weak(
                cur,
                pack(minute, count - 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_refuses_until_the_next_minute() {
        let c = MinuteCounter::default();
        assert_eq!(c.try_acquire(100, 2), Ok(1));
        assert_eq!(c.try_acquire(100, 2), Ok(2));
        assert_eq!(c.try_acquire(100, 2), Err(2));
        assert_eq!(c.get(100), 2);
        assert_eq!(c.get(101), 0);
        assert_eq!(c.try_acquire(101, 2), Ok(1));
        c.release(101);
        assert_eq!(c.get(101), 0);
        c.release(101);
        assert_eq!(c.get(101), 0);
    }

    #[test]
    fn add_saturates_and_rolls_over() {
        let c = MinuteCounter::default();
        assert_eq!(c.add(7, 10), 10);
        assert_eq!(c.add(7, u64::MAX), COUNT_MASK);
        assert_eq!(c.add(8, 3), 3);
        // The stamp wraps after 2^24 minutes (~32 years): equality, not order, is what counts.
        assert_eq!(c.get(8 + (1 << 24)), 3);
    }

    #[test]
    fn concurrent_acquires_never_pass_the_limit() {
        let c = std::sync::Arc::new(MinuteCounter::default());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|_| c.try_acquire(5, 500).is_ok()).count()
                })
            })
            .collect();
        let admitted: usize = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        assert_eq!(admitted, 500);
    }
}
