//! The storage executors a replica's runtime runs its engine's disk work
//! with: [`WalSink`] appends received WAL to the replica's own segment
//! files and fsyncs (the receiver's durable position), [`Applier`] applies
//! validated records through the one apply function (CORE-4). Production
//! runs them on their own threads; the simulator runs the same code over a
//! simulated disk. They decide nothing: what to persist and apply comes
//! from [`crate::pipeline::StreamState`].

use std::sync::Arc;

use aerodb_mvcc::{AppliedState, ApplyError, ApplyInput, Store};
use aerodb_wal::log::{LogError, SegmentAppender, SegmentList};
use aerodb_wal::Lsn;

use crate::pipeline::{PersistWork, ValidatedRecord};

/// Appends received WAL bytes verbatim and makes them durable.
pub struct WalSink {
    appender: SegmentAppender,
}

impl WalSink {
    /// Wraps the appender of the replica's recovered (or new) WAL.
    pub fn new(appender: SegmentAppender) -> Self {
        WalSink { appender }
    }

    /// The segment list (for readers and observability).
    pub fn segments(&self) -> &SegmentList {
        self.appender.segments()
    }

    /// Appends one accepted chunk (starting a segment where the primary
    /// did) and fsyncs; returns the durable end.
    pub fn persist(&mut self, work: &PersistWork) -> Result<Lsn, LogError> {
        self.persist_all(std::slice::from_ref(work))
    }

    /// Appends accepted chunks in order (each starting a segment where the
    /// primary did; a segment is fsynced before the next one starts) and
    /// fsyncs once at the end: one fsync for a batch of chunks that queued
    /// up while the previous fsync ran. Returns the durable end. Nothing is
    /// reported durable before the fsync that covers it returned.
    pub fn persist_all(&mut self, works: &[PersistWork]) -> Result<Lsn, LogError> {
        for work in works {
            if let Some(header) = work.new_segment {
                self.appender.start_segment(header)?;
            }
            self.appender.append(work.start_lsn, &work.bytes)?;
        }
        aerodb_wal::crash_point!("replica.before_fsync");
        let through = self.appender.sync()?;
        aerodb_wal::crash_point!("replica.after_persist");
        Ok(through)
    }

    /// Drops received bytes after `to` that were never validated (a record
    /// cut by a disconnect), durably, so the next session resumes at `to`.
    pub fn truncate_unvalidated(&mut self, to: Lsn) -> Result<(), LogError> {
        self.appender.truncate_tail(to)
    }
}

/// Applies validated records to the store.
pub struct Applier {
    store: Arc<Store>,
}

impl Applier {
    /// Applies to `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Applier { store }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Applies `records` in order through the one apply function
    /// ([`Store::apply_batch`]: one store write lock and one applied
    /// notification per batch of at most [`MAX_APPLY_BATCH`] records, so a
    /// read never waits behind a whole backlog); a digest mismatch stops
    /// before that commit becomes visible (F-D3). Returns the applied state
    /// after the last one, or the failing record's LSN and error.
    pub fn apply(&self, records: &[ValidatedRecord]) -> Result<AppliedState, (Lsn, ApplyError)> {
        let mut state = self.store.applied();
        // The first record is applied on its own: the crash point between two
        // records of one apply (nothing of apply is durable) follows it.
        let (first, rest) = records.split_at(records.len().min(1));
        for (n, batch) in std::iter::once(first).chain(rest.chunks(MAX_APPLY_BATCH)).enumerate() {
            if n == 1 {
                aerodb_wal::crash_point!("replica.mid_apply");
            }
            if batch.is_empty() {
                continue;
            }
            let (applied, failed) = self.store.apply_batch(batch.iter().map(|(r, p)| ApplyInput::of_record(*p, r)));
            state = applied;
            if let Some((i, e)) = failed {
                return Err((batch[i].1.lsn, e));
            }
        }
        Ok(state)
    }
}

/// Most records applied under one store write lock: bounds how long a read
/// waits for the lock (about a millisecond of apply work).
pub const MAX_APPLY_BATCH: usize = 256;
