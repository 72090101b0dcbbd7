//! Reads that wait for `min_commit` (RES-3): a waiting read holds no
//! thread. It awaits a tokio `watch` of the applied CommitId, which the
//! store's applied observer feeds after every commit; at most
//! `--max-waiting-reads` wait at once (over it: 503
//! `TOO_MANY_WAITING_READS`), and node shutdown answers every waiting read
//! with 503 `SHUTTING_DOWN`. Waiting never changes what is admitted: the
//! read is judged (by the gate on replicas) after the wait, whatever ended it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::AppliedObserver;
use aerodb_wal::CommitId;
use tokio::sync::watch;

use crate::http::refusal::LimitRefusal;
use crate::http::shutdown::Shutdown;

/// The applied CommitId, published for async waiters.
#[derive(Clone, Debug)]
pub struct AppliedWatch {
    tx: Arc<watch::Sender<CommitId>>,
}

impl Default for AppliedWatch {
    fn default() -> Self {
        AppliedWatch::new()
    }
}

impl AppliedWatch {
    /// A watch at CommitId 0.
    pub fn new() -> Self {
        AppliedWatch { tx: Arc::new(watch::channel(0).0) }
    }

    /// The observer to install on a store: publishes each applied CommitId
    /// (keeping the maximum, so calls out of order never move it back).
    pub fn observer(&self) -> AppliedObserver {
        let tx = self.tx.clone();
        Arc::new(move |c: CommitId| {
            tx.send_if_modified(|v| {
                let newer = c > *v;
                if newer {
                    *v = c;
                }
                newer
            });
        })
    }

    /// The last published CommitId.
    #[cfg(test)]
    pub fn current(&self) -> CommitId {
        *self.tx.borrow()
    }
}

/// The bounded set of waiting reads.
#[derive(Debug)]
pub struct ReadWaiters {
    max: usize,
    waiting: AtomicUsize,
    applied: AppliedWatch,
}

/// One waiting read's place; dropping it frees the place.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ReadWaiters {
    /// At most `max` waiting reads on `applied`.
    pub fn new(max: usize, applied: AppliedWatch) -> Arc<Self> {
        Arc::new(ReadWaiters { max, waiting: AtomicUsize::new(0), applied })
    }

    // Read by the DX API (`/metrics`), which a build without replication does not have.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    /// Reads waiting now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed) as u64
    }

    /// Waits until the applied CommitId reaches `target`, `wait` passes, or
    /// the node shuts down (refused with `SHUTTING_DOWN`). Returns at once
    /// when nothing needs waiting for; refuses when too many reads wait.
    pub async fn wait_for(&self, target: CommitId, wait: Duration, shutdown: &Shutdown) -> Result<(), LimitRefusal> {
        let mut rx = self.applied.tx.subscribe();
        if wait.is_zero() || *rx.borrow_and_update() >= target {
            return Ok(());
        }
        if shutdown.is_triggered() {
            return Err(LimitRefusal::ShuttingDown);
        }
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .map_err(|_| LimitRefusal::TooManyWaitingReads { max: self.max })?;
        let _place = Place(&self.waiting);
        tokio::select! {
            // The sender lives as long as `self`: an error cannot happen; either way the gate decides next.
            _ = rx.wait_for(|c| *c >= target) => Ok(()),
            () = tokio::time::sleep(wait) => Ok(()),
            () = shutdown.triggered() => Err(LimitRefusal::ShuttingDown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RES-3: a waiting read is woken by the observer when the CommitId is
    /// reached, times out otherwise (the caller judges the read next), is
    /// refused over the cap and at shutdown; places are returned.
    #[tokio::test]
    async fn res_3_waiting_reads_are_bounded_woken_and_refused_at_shutdown() {
        let applied = AppliedWatch::new();
        let waiters = ReadWaiters::new(1, applied.clone());
        let shutdown = Shutdown::new();
        assert_eq!(waiters.wait_for(0, Duration::from_secs(60), &shutdown).await, Ok(()));

        let observe = applied.observer();
        let w = waiters.clone();
        let s = shutdown.clone();
        let first = tokio::spawn(async move { w.wait_for(5, Duration::from_secs(600), &s).await });
        while waiters.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(waiters.wait_for(5, Duration::from_secs(600), &shutdown).await, Err(LimitRefusal::TooManyWaitingReads { max: 1 }));
        observe(3);
        observe(5);
        observe(4);
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(applied.current(), 5, "out-of-order calls never move it back");
        assert_eq!(waiters.waiting(), 0);

        assert_eq!(waiters.wait_for(9, Duration::from_millis(1), &shutdown).await, Ok(()), "a timed-out wait returns; the gate decides");
        let w = waiters.clone();
        let s = shutdown.clone();
        let pending = tokio::spawn(async move { w.wait_for(9, Duration::from_secs(600), &s).await });
        while waiters.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        shutdown.trigger();
        assert_eq!(pending.await.unwrap(), Err(LimitRefusal::ShuttingDown));
        assert_eq!(waiters.waiting(), 0);
    }
}
