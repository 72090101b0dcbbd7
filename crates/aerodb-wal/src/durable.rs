//! Publishing the durable position so other threads (replication senders,
//! waiting readers) can block until it advances, without polling.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::{CommitId, Lsn};

/// A durable (fsynced) and applied position of the primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DurablePoint {
    /// End of the last fsynced record.
    pub lsn: Lsn,
    /// CommitId of that record.
    pub commit_id: CommitId,
}

/// A subscriber's wake-up: returns false once it no longer wants them.
type Subscriber = Box<dyn Fn(DurablePoint) -> bool + Send>;

/// Watchable durable position; also carries a "closed" flag for shutdown.
#[derive(Default)]
pub struct DurableWatch {
    state: Mutex<WatchState>,
    changed: Condvar,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// The point, the closed flag and the lowest LSN a blocked waiter waits to
/// pass. Waking only when that LSN is passed keeps a waiter with a far
/// target (the snapshot scheduler waits for 256 MiB of WAL) asleep through
/// every commit instead of waking it once per group.
#[derive(Clone, Copy, Debug)]
struct WatchState {
    point: DurablePoint,
    closed: bool,
    /// `Lsn::MAX` when no waiter is blocked. Only ever lowered by a waiter
    /// and reset when waiters are woken, so it is at most every blocked
    /// waiter's target: a waiter is never left asleep past its target (a
    /// stale, lower value only causes a spurious wake-up).
    wake_beyond: Lsn,
}

impl Default for WatchState {
    fn default() -> Self {
        WatchState { point: DurablePoint::default(), closed: false, wake_beyond: Lsn::MAX }
    }
}

impl DurableWatch {
    /// Starts at `point`.
    pub fn new(point: DurablePoint) -> Self {
        DurableWatch { state: Mutex::new(WatchState { point, ..WatchState::default() }), changed: Condvar::new(), subscribers: Mutex::new(Vec::new()) }
    }

    /// Calls `notify` with every new durable point (and once with the
    /// current one) until it returns false. For event loops that wait on
    /// one channel for several sources; `notify` must not block.
    pub fn subscribe(&self, notify: impl Fn(DurablePoint) -> bool + Send + 'static) {
        // Holding the list while reading the point: an advance racing with
        // this call either is seen here or notifies the new subscriber.
        let mut subscribers = self.subscribers.lock();
        if notify(self.current()) {
            subscribers.push(Box::new(notify));
        }
    }
    /// The current durable point.
    pub fn current(&self) -> DurablePoint {
        self.state.lock().point
    }
    /// Advances the point (never backwards) and wakes waiters.
    pub fn advance(&self, point: DurablePoint) {
        let mut s = self.state.lock();
        if point.lsn > s.point.lsn {
            s.point = point;
            if point.lsn > s.wake_beyond {
                s.wake_beyond = Lsn::MAX;
                self.changed.notify_all();
            }
            drop(s);
            self.subscribers.lock().retain(|notify| notify(point));
        }
    }
    /// Marks the watch closed (shutdown) and wakes every waiter.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
    }
    /// Whether the watch is closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }
    /// Blocks until the durable LSN exceeds `lsn`, the watch closes, or
    /// `max_wait` passes (the wait bound only keeps idle threads responsive;
    /// it never decides anything). Returns the point seen last.
    pub fn wait_beyond(&self, lsn: Lsn, max_wait: Duration) -> DurablePoint {
        let mut s = self.state.lock();
        if s.point.lsn <= lsn && !s.closed {
            s.wake_beyond = s.wake_beyond.min(lsn);
            let _ = self.changed.wait_for(&mut s, max_wait);
        }
        s.point
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;

    /// Waits (with a deadline) until some waiter is blocked beyond `lsn`.
    fn until_blocked_beyond(watch: &DurableWatch, lsn: Lsn) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while watch.state.lock().wake_beyond != lsn {
            assert!(Instant::now() < deadline, "no waiter blocked beyond {lsn}");
            std::thread::yield_now();
        }
    }

    fn at(lsn: Lsn) -> DurablePoint {
        DurablePoint { lsn, commit_id: lsn }
    }

    /// CORE-1 (the durable point is published to every waiter): a waiter
    /// with a far target stays asleep through advances below it (no
    /// wake-up per commit), a nearer waiter is woken at its own target
    /// meanwhile, and each ends with a point beyond its target. A missed
    /// wake-up would hang this test (the waits are an hour long).
    #[test]
    fn core_1_durable_waiters_wake_only_beyond_their_target() {
        let watch = Arc::new(DurableWatch::new(at(0)));
        let hour = Duration::from_secs(3600);
        // Like the snapshot scheduler: wait again until the target is passed.
        let far = std::thread::spawn({
            let watch = watch.clone();
            move || {
                let mut returns = 0;
                loop {
                    let point = watch.wait_beyond(1000, hour);
                    returns += 1;
                    if point.lsn > 1000 {
                        return (point, returns);
                    }
                }
            }
        });
        until_blocked_beyond(&watch, 1000);
        for lsn in [10, 20, 30] {
            watch.advance(at(lsn));
            assert_eq!(watch.state.lock().wake_beyond, 1000, "an advance below every target wakes nobody");
        }
        let near = std::thread::spawn({
            let watch = watch.clone();
            move || watch.wait_beyond(40, hour)
        });
        until_blocked_beyond(&watch, 40);
        watch.advance(at(50));
        assert_eq!(near.join().unwrap(), at(50));
        // Woken with the near waiter, the far one found its target not
        // passed and blocked again.
        until_blocked_beyond(&watch, 1000);
        watch.advance(at(1001));
        assert_eq!(far.join().unwrap(), (at(1001), 2), "woken once with the near waiter and once beyond its target, never by the advances below");
        assert_eq!(watch.wait_beyond(5, hour), at(1001), "a target already passed does not block");
        let closing = std::thread::spawn({
            let watch = watch.clone();
            move || watch.wait_beyond(5000, hour)
        });
        until_blocked_beyond(&watch, 5000);
        watch.close();
        assert_eq!(closing.join().unwrap(), at(1001));
    }
}
