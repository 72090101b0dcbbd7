//! The event scheduler: a min-heap keyed by (simulated time, sequence
//! number). The sequence number is assigned at scheduling time, so events
//! due at the same millisecond run in the order they were scheduled: the
//! tie-break is deterministic and never depends on the heap's internals.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::time::SimTime;
use crate::trace::{Trace, TraceEncode};

struct Entry<E> {
    at: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Deterministic discrete-event scheduler with a trace of what it ran.
pub struct Scheduler<E> {
    heap: BinaryHeap<Reverse<Entry<E>>>,
    next_seq: u64,
    now: SimTime,
    processed: u64,
    trace: Trace,
}

impl<E: TraceEncode> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl<E: TraceEncode> Scheduler<E> {
    /// An empty scheduler at time zero.
    pub fn new() -> Self {
        Scheduler { heap: BinaryHeap::new(), next_seq: 0, now: SimTime::ZERO, processed: 0, trace: Trace::new() }
    }

    /// The current simulated time (the time of the event being processed).
    pub fn now(&self) -> SimTime {
        self.now
    }

    /// Schedules `event` at `at` (never in the past: clamped to now).
    pub fn at(&mut self, at: SimTime, event: E) {
        let at = at.max(self.now);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Reverse(Entry { at, seq, event }));
    }

    /// Schedules `event` `delay_ms` from now.
    pub fn after(&mut self, delay_ms: u64, event: E) {
        self.at(self.now.plus(delay_ms), event);
    }

    /// Time of the next event, if any.
    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Takes the next event, advances the clock to it and records it in
    /// the trace.
    pub fn pop(&mut self) -> Option<(SimTime, E)> {
        let Reverse(entry) = self.heap.pop()?;
        self.now = entry.at;
        self.processed += 1;
        self.trace.entry("event").u64(entry.at.ms());
        entry.event.encode(&mut self.trace);
        Some((entry.at, entry.event))
    }

    /// Events waiting.
    pub fn pending(&self) -> usize {
        self.heap.len()
    }

    /// Events processed so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The trace (for recording outcomes next to events).
    pub fn trace(&mut self) -> &mut Trace {
        &mut self.trace
    }

    /// The trace hash so far.
    pub fn trace_hex(&self) -> String {
        self.trace.hex()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Ev(u64);
    impl TraceEncode for Ev {
        fn encode(&self, t: &mut Trace) {
            t.entry("ev").u64(self.0);
        }
    }

    /// REPL-10: events run in (time, scheduling order); equal times keep
    /// the order they were scheduled in; the clock never goes back.
    #[test]
    fn repl_10_scheduler_orders_by_time_then_sequence() {
        let mut s = Scheduler::new();
        s.at(SimTime(10), Ev(1));
        s.at(SimTime(5), Ev(2));
        s.at(SimTime(10), Ev(3));
        s.at(SimTime(5), Ev(4));
        let mut got = Vec::new();
        while let Some((t, e)) = s.pop() {
            if e.0 == 2 {
                s.at(SimTime(0), Ev(5)); // in the past: runs now, after what is already due
            }
            got.push((t.ms(), e.0));
        }
        assert_eq!(got, vec![(5, 2), (5, 4), (5, 5), (10, 1), (10, 3)]);
        assert_eq!(s.processed(), 5);
    }

    /// REPL-10: the same schedule gives the same trace hash; any difference
    /// in an event or its time changes it.
    #[test]
    fn repl_10_trace_hash_is_a_function_of_the_events() {
        let run = |events: &[(u64, u64)]| {
            let mut s = Scheduler::new();
            for (t, v) in events {
                s.at(SimTime(*t), Ev(*v));
            }
            while s.pop().is_some() {}
            s.trace_hex()
        };
        let a = run(&[(1, 1), (2, 2)]);
        assert_eq!(a, run(&[(1, 1), (2, 2)]));
        assert_ne!(a, run(&[(1, 1), (2, 3)]));
        assert_ne!(a, run(&[(1, 1), (3, 2)]));
    }
}
