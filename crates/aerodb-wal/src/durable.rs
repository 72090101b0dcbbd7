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

/// Watchable durable position; also carries a "closed" flag for shutdown.
#[derive(Default)]
pub struct DurableWatch {
    state: Mutex<(DurablePoint, bool)>,
    changed: Condvar,
}

impl DurableWatch {
    /// Starts at `point`.
    pub fn new(point: DurablePoint) -> Self {
        DurableWatch { state: Mutex::new((point, false)), changed: Condvar::new() }
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
