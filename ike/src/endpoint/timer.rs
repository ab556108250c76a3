//! Timers, in the manner of quinn-proto's `connection/timer.rs`: the kinds of deadline one
//! IKE SA has ([`Timer`], [`TimerTable`]), and the endpoint-wide heap that holds each
//! SA's earliest one ([`Deadlines`]), so no timer path visits every SA. A leaf.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::IkeSaId;

/// A kind of deadline of one IKE SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Retransmit our outstanding request, or give up (RFC 7296 2.1).
    Retransmit,
    /// A responder's half-open SA expires without IKE_AUTH (RFC 7296 2.6).
    HalfOpen,
    /// Rekey the IKE SA (RFC 7296 2.18).
    RekeyIke,
    /// Rekey the child SA due first (RFC 7296 2.8).
    RekeyChild,
    /// Check liveness after a quiet spell (RFC 7296 2.4).
    Dpd,
    /// Delete a rekeyed IKE SA that the peer, which should have deleted it (RFC 7296
    /// 1.3.2), left behind.
    Retire,
    /// Ask again for a new child SA the peer answered TEMPORARY_FAILURE (RFC 7296 2.25).
    RetryChild,
}

impl Timer {
    const COUNT: usize = 7;
}

/// The armed deadlines of one IKE SA, one slot per [`Timer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; Timer::COUNT],
}

impl TimerTable {
    /// Arms `timer` at `at`.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.data.iter().flatten().min().copied()
    }
}

/// Each IKE SA's earliest deadline in one min-heap. An SA that re-arms pushes a new
/// entry and leaves the old one in place (lazy deletion): an entry counts only while
/// it equals the deadline the SA has armed, and stale ones are dropped when they reach
/// the top or when they outnumber the live ones.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, IkeSaId)>>,
}

impl Deadlines {
    /// Adds `id`'s new deadline.
    pub(crate) fn push(&mut self, at: Instant, id: IkeSaId) {
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest entry, O(1). After [`Deadlines::settle`] it is a live one.
    pub(crate) fn peek(&self) -> Option<(Instant, IkeSaId)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    /// Removes the earliest entry, O(log n).
    pub(crate) fn pop(&mut self) -> Option<(Instant, IkeSaId)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Drops stale entries from the top, so that [`Deadlines::peek`] sees a live one,
    /// and rebuilds the heap when stale entries outnumber the `live` SAs (amortized
    /// O(1) per push). `is_live(at, id)`: `id` still has `at` armed.
    pub(crate) fn settle(&mut self, live: usize, is_live: impl Fn(Instant, IkeSaId) -> bool) {
        if self.heap.len() > 2 * live + 64 {
            self.heap.retain(|Reverse((at, id))| is_live(*at, *id));
        }
        while let Some(Reverse((at, id))) = self.heap.peek() {
            if is_live(*at, *id) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn table_gives_the_earliest_armed_timer() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Dpd, t0 + Duration::from_secs(30));
        t.set(Timer::RekeyChild, t0 + Duration::from_secs(10));
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn stale_entries_are_skipped_and_compacted() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut d = Deadlines::default();
        // SA 1 armed at 5 then re-armed at 50; SA 2 at 20.
        d.push(at(5), IkeSaId(1));
        d.push(at(20), IkeSaId(2));
        d.push(at(50), IkeSaId(1));
        let armed = |s: u64, id: u64| match id {
            1 => s == 50,
            _ => s == 20,
        };
        let live = |a: Instant, id: IkeSaId| armed(a.duration_since(t0).as_secs(), id.0);
        d.settle(2, live);
        assert_eq!(d.peek(), Some((at(20), IkeSaId(2))));
        // Many re-arms of one SA: the heap is rebuilt, not left to grow.
        for s in 100..1000 {
            d.push(at(s), IkeSaId(1));
        }
        d.settle(2, live);
        assert!(d.heap.len() <= 2 * 2 + 64, "{}", d.heap.len());
        assert_eq!(d.pop(), Some((at(20), IkeSaId(2))));
        d.settle(2, live);
        assert_eq!(d.peek(), Some((at(50), IkeSaId(1))));
    }
}
