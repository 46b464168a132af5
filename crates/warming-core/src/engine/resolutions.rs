//! Turns whose outcome the return prior has not counted yet.
//!
//! The prior estimates how often a turn is followed by another. Counting a
//! turn the moment it settles, as one that has not returned, biases that
//! rate low: on a busy server a large share of turns are seconds old, and
//! most of their users are still reading. So a turn is counted only once
//! its first TTL is over, together with its return if the user came back
//! within that TTL; a later return is counted when it happens. Quick
//! returns and fresh turns are thus always counted side by side, never one
//! before the other.

use std::collections::VecDeque;
use std::num::NonZeroU64;

use crate::{ReturnPrior, Timestamp};

/// A settled turn waiting for its first TTL to pass. Sixteen bytes: a busy
/// server holds one per turn of the last TTL.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// When its outcome within the TTL is known.
    due: Timestamp,
    /// The turn's depth in its conversation.
    depth: u32,
    /// The gap, ms, after which the user came back within the TTL, or
    /// `NOT_RETURNED`.
    returned_after_ms: u32,
}

/// `Open::returned_after_ms` of a turn whose user has not come back.
const NOT_RETURNED: u32 = u32::MAX;

/// Settled turns in the order they settled; the engine's clock only moves
/// forward and every turn waits the same TTL, so the queue is in due order.
#[derive(Debug)]
pub(crate) struct Resolutions {
    queue: VecDeque<Open>,
    /// Sequence number of the queue's front; numbers start at 1, so a
    /// conversation's `Option<NonZeroU64>` costs no more than a `u64`.
    head: u64,
}

impl Default for Resolutions {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            head: 1,
        }
    }
}

impl Resolutions {
    /// A turn at `depth` settled; its outcome is known at `due`. Returns its
    /// sequence number, for [`returned`](Self::returned).
    pub fn open(&mut self, due: Timestamp, depth: u32) -> NonZeroU64 {
        self.queue.push_back(Open {
            due,
            depth,
            returned_after_ms: NOT_RETURNED,
        });
        NonZeroU64::new(self.head + self.queue.len() as u64 - 1)
            .expect("sequence numbers start at 1")
    }

    /// The user of turn `seq` came back after `gap_ms`. `false` when that
    /// turn was already counted (its TTL passed): the caller counts the
    /// return itself.
    pub fn returned(&mut self, seq: NonZeroU64, gap_ms: u64) -> bool {
        let Some(index) = seq.get().checked_sub(self.head) else {
            return false;
        };
        match self.queue.get_mut(index as usize) {
            Some(open) => {
                // Only returns within the TTL are held here, and a TTL fits
                // in u32 ms (49 days); anything longer is counted now.
                match u32::try_from(gap_ms) {
                    Ok(ms) if ms != NOT_RETURNED => {
                        open.returned_after_ms = ms;
                        true
                    }
                    _ => false,
                }
            }
            None => false,
        }
    }

    /// Counts every turn whose TTL has passed by `now`, with its quick
    /// return if any.
    pub fn resolve(&mut self, now: Timestamp, prior: &mut ReturnPrior) {
        while let Some(open) = self.queue.front().copied() {
            if open.due > now {
                break;
            }
            self.queue.pop_front();
            self.head += 1;
            prior.observe_turn(open.depth);
            if open.returned_after_ms != NOT_RETURNED {
                prior.observe_return(open.depth, u64::from(open.returned_after_ms));
            }
        }
    }

    /// Turns not counted yet.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_and_its_quick_return_are_counted_together_once_the_ttl_passed() {
        let mut r = Resolutions::default();
        let mut prior = ReturnPrior::default();
        let t0 = Timestamp::from_millis(1_000);
        let quick = r.open(t0.plus_millis(300_000), 1);
        let _idle = r.open(t0.plus_millis(300_010), 1);
        assert!(r.returned(quick, 20_000));
        r.resolve(t0.plus_millis(299_999), &mut prior);
        assert_eq!(prior, ReturnPrior::default(), "nothing counted early");
        r.resolve(t0.plus_millis(300_000), &mut prior);
        assert_eq!((prior.turns[0], prior.returns[0]), (1, 1));
        r.resolve(t0.plus_millis(400_000), &mut prior);
        assert_eq!((prior.turns[0], prior.returns[0]), (2, 1));
        assert_eq!(r.len(), 0);
        // Counted already: the caller records a late return itself.
        assert!(!r.returned(quick, 500_000));
    }
}
