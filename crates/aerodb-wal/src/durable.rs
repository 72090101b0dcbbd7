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
    state: Mutex<(DurablePoint, bool)>,
    changed: Condvar,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl DurableWatch {
    /// Starts at `point`.
    pub fn new(point: DurablePoint) -> Self {
        DurableWatch { state: Mutex::new((point, false)), changed: Condvar::new(), subscribers: Mutex::new(Vec::new()) }
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
        self.state.lock().0
    }
    /// Advances the point (never backwards) and wakes waiters.
    pub fn advance(&self, point: DurablePoint) {
        let mut s = self.state.lock();
        if point.lsn > s.0.lsn {
            s.0 = point;
            self.changed.notify_all();
            drop(s);
            self.subscribers.lock().retain(|notify| notify(point));
        }
    }
    /// Marks the watch closed (shutdown) and wakes every waiter.
    pub fn close(&self) {
        self.state.lock().1 = true;
        self.changed.notify_all();
    }
    /// Whether the watch is closed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().1
    }
    /// Blocks until the durable LSN exceeds `lsn`, the watch closes, or
    /// `max_wait` passes (the wait bound only keeps idle threads responsive;
    /// it never decides anything). Returns the point seen last.
    pub fn wait_beyond(&self, lsn: Lsn, max_wait: Duration) -> DurablePoint {
        let mut s = self.state.lock();
        if s.0.lsn <= lsn && !s.1 {
            let _ = self.changed.wait_for(&mut s, max_wait);
        }
        s.0
    }
}
