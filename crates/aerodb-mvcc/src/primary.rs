//! Rebuilding a store from the WAL (every replay path) and the primary's
//! commit path: validate input → append → group fsync → apply → acknowledge.

use std::path::Path;
use std::sync::Arc;

use aerodb_wal::disk::Disk;
use aerodb_wal::durable::{DurablePoint, DurableWatch};
use aerodb_wal::group::{CommitTicket, DurableRecord, DurableSink, GcPlan, GroupCommitter};
use aerodb_wal::log::{SegmentAppender, SegmentList};
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::mark_writer::MarkGate;
use aerodb_wal::recovery::{recover_wal_with, ReplayRefusal, WalRecoveryError, WalRecoveryReport};
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, CommitId};
use serde::Serialize;
use thiserror::Error;

use crate::gc::GcPolicy;
use crate::input::{validate_write_set, ClientOp, InputError, WriteLimits};
use crate::store::{AppliedState, ApplyInput, Store};

/// Result of rebuilding a store from (optionally) a snapshot and the WAL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreRecoveryReport {
    /// What WAL recovery verified and dropped.
    pub wal: WalRecoveryReport,
    /// State the replay started from (genesis or the snapshot cut).
    pub base: AppliedState,
    /// First and last CommitId replayed (None when nothing was replayed).
    pub replayed: Option<(CommitId, CommitId)>,
    /// Final applied state.
    pub applied: AppliedState,
}

/// Why a store could not be rebuilt.
#[derive(Debug, Error)]
pub enum StoreRecoveryError {
    /// WAL verification or replay failed.
    #[error(transparent)]
    Wal(#[from] WalRecoveryError),
    /// The WAL does not continue the base (snapshot cut) exactly (F-S3).
    #[error("WAL does not continue the base state: {detail} (F-S3)")]
    BaseMismatch {
        /// What differs.
        detail: String,
    },
}

impl StoreRecoveryError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreRecoveryError::Wal(e) => e.code(),
            StoreRecoveryError::BaseMismatch { .. } => "SNAPSHOT_WAL_MISMATCH",
        }
    }
    /// LSN of the failure, when known.
    pub fn lsn(&self) -> Option<aerodb_wal::Lsn> {
        match self {
            StoreRecoveryError::Wal(e) => e.lsn(),
            StoreRecoveryError::BaseMismatch { .. } => None,
        }
    }

    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        match self {
            StoreRecoveryError::Wal(e) => e.rule_id(),
            StoreRecoveryError::BaseMismatch { .. } => "F-S3",
        }
    }

    /// The durable-mark violation that refused recovery (CORE-5, F-P4), if
    /// that was the failure.
    pub fn mark_violation(&self) -> Option<&aerodb_wal::mark_check::MarkViolation> {
        match self {
            StoreRecoveryError::Wal(WalRecoveryError::Mark(v)) => Some(v),
            _ => None,
        }
    }
}

/// Verifies the WAL in `wal_dir` and replays every record after `store`'s
/// applied state through [`Store::apply`] (CORE-4). Records at or before the
/// base are verified but not applied; the record ending the base must match
/// it exactly (LSN and fingerprint), and the first record after it must be
/// base + 1 (P5-I9, F-S3).
pub fn recover_store(disk: Arc<dyn Disk>, wal_dir: &Path, store: &Store) -> Result<(SegmentAppender, StoreRecoveryReport), StoreRecoveryError> {
    recover_store_with(disk, wal_dir, store, TailRule::DropTornTail)
}

/// [`recover_store`] judging the end of the WAL under `tail` (a primary's
/// durable high-water mark, CORE-5).
pub fn recover_store_with(
    disk: Arc<dyn Disk>,
    wal_dir: &Path,
    store: &Store,
    tail: TailRule,
) -> Result<(SegmentAppender, StoreRecoveryReport), StoreRecoveryError> {
    let base = store.applied();
    let mut base_seen = base.commit_id == 0;
    let mut replayed: Option<(CommitId, CommitId)> = None;
    let (appender, wal) = recover_wal_with(disk, wal_dir, tail, |record, position| {
        if position.commit_id < base.commit_id {
            return Ok(());
        }
        if position.commit_id == base.commit_id {
            if position.end_lsn != base.end_lsn || position.fingerprint != base.fingerprint {
                return Err(ReplayRefusal {
                    code: "SNAPSHOT_WAL_MISMATCH",
                    rule_id: "F-S3",
                    detail: format!(
                        "record {} ends at LSN {} with fingerprint {}, base says LSN {} fingerprint {}",
                        position.commit_id, position.end_lsn, position.fingerprint, base.end_lsn, base.fingerprint
                    ),
                });
            }
            base_seen = true;
            return Ok(());
        }
        store.apply(ApplyInput::of_record(position, record)).map_err(|e| ReplayRefusal { code: e.code(), rule_id: e.rule_id(), detail: e.to_string() })?;
        replayed = Some((replayed.map_or(position.commit_id, |r| r.0), position.commit_id));
        Ok(())
    })?;
    // A WAL that starts exactly at the base (a segment whose header is the cut) also proves it.
    if !base_seen
        && ChainTip::of_segment(&wal.segments[0].header) == (ChainTip { end_lsn: base.end_lsn, commit_id: base.commit_id, fingerprint: base.fingerprint })
    {
        base_seen = true;
    }
    if !base_seen {
        return Err(StoreRecoveryError::BaseMismatch {
            detail: format!(
                "base CommitId {} (LSN {}) is not in the WAL, which covers CommitIds {}..={}",
                base.commit_id,
                base.end_lsn,
                wal.start.commit_id + 1,
                wal.end.commit_id
            ),
        });
    }
    let applied = store.applied();
    Ok((appender, StoreRecoveryReport { wal, base, replayed, applied }))
}

/// Applies durable groups to the store; the group committer's sink (the
/// node's commit thread and the simulator use this same sink). It also
/// decides, from CommitIds alone, when the writer logs a GC record.
pub struct StoreSink {
    store: Arc<Store>,
    gc: GcPolicy,
}

impl StoreSink {
    /// A sink applying to `store` that plans GC records by `gc`.
    pub fn new(store: Arc<Store>, gc: GcPolicy) -> Self {
        StoreSink { store, gc }
    }
}

impl DurableSink for StoreSink {
    /// Applies the whole group under one store write lock and wakes
    /// readers and the applied observer once ([`Store::apply_batch`]: each
    /// record still goes through the one apply function, CORE-4, and is
    /// seen whole or not at all, MVCC-2).
    fn on_durable(&mut self, records: &[DurableRecord]) -> Result<(), String> {
        let inputs = records.iter().map(|r| ApplyInput { position: r.position, state_digest: r.state_digest, body: &r.body });
        match self.store.apply_batch(inputs) {
            (_, None) => Ok(()),
            (_, Some((_, e))) => Err(e.to_string()),
        }
    }

    fn plan_gc(&mut self, tip: ChainTip) -> Option<GcPlan> {
        if self.store.applied().commit_id != tip.commit_id {
            return None;
        }
        let horizon = self.gc.due(tip.commit_id, self.store.history_horizon())?;
        let state_digest = self.store.gc_digest(horizon)?;
        Some(GcPlan { horizon, state_digest })
    }
}

/// The primary's write path over a recovered store and WAL.
pub struct PrimaryEngine {
    store: Arc<Store>,
    committer: GroupCommitter,
    segments: SegmentList,
    limits: WriteLimits,
    gc: GcPolicy,
}

impl PrimaryEngine {
    /// Starts the commit thread with the default history retention
    /// ([`GcPolicy::default`]). `appender` and `store` must come from the
    /// same [`recover_store`] call.
    pub fn start(store: Arc<Store>, appender: SegmentAppender, limits: WriteLimits, segment_target_bytes: u64) -> std::io::Result<Self> {
        Self::start_with_gc(store, appender, limits, segment_target_bytes, GcPolicy::default())
    }

    /// [`PrimaryEngine::start`] with an explicit history retention: the
    /// commit thread writes a GC record whenever `gc` says one is due
    /// (MVCC-4).
    pub fn start_with_gc(store: Arc<Store>, appender: SegmentAppender, limits: WriteLimits, segment_target_bytes: u64, gc: GcPolicy) -> std::io::Result<Self> {
        Self::start_with(store, appender, limits, segment_target_bytes, None, gc)
    }

    /// [`PrimaryEngine::start_with_gc`] with the group committer also
    /// bounded by a durable mark gate (CORE-5).
    pub fn start_with(
        store: Arc<Store>,
        appender: SegmentAppender,
        limits: WriteLimits,
        segment_target_bytes: u64,
        mark: Option<Arc<MarkGate>>,
        gc: GcPolicy,
    ) -> std::io::Result<Self> {
        let applied = store.applied();
        let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
        if appender.end_lsn() != tip.end_lsn {
            return Err(std::io::Error::other(format!("WAL ends at LSN {} but the store is applied to LSN {}", appender.end_lsn(), tip.end_lsn)));
        }
        let segments = appender.segments().clone();
        let writer = WalWriter::new(appender, tip, applied.state_digest, segment_target_bytes);
        let durable = Arc::new(DurableWatch::new(DurablePoint { lsn: tip.end_lsn, commit_id: tip.commit_id }));
        let committer = GroupCommitter::start_with(writer, StoreSink { store: store.clone(), gc }, durable, mark)?;
        Ok(PrimaryEngine { store, committer, segments, limits, gc })
    }

    /// Validates a write set and queues it for group commit. The returned
    /// ticket resolves only after the record is fsynced and applied (CORE-1).
    pub fn submit(&self, ops: Vec<ClientOp>) -> Result<CommitTicket, InputError> {
        let ops = validate_write_set(ops, &self.limits)?;
        Ok(self.committer.submit(ops))
    }

    /// The store (for reads).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Durable point watch (replication ships only below it).
    pub fn durable(&self) -> &Arc<DurableWatch> {
        self.committer.durable()
    }

    /// Segment list (for WAL readers and observability).
    pub fn segments(&self) -> &SegmentList {
        &self.segments
    }

    /// Successful WAL fsyncs since start (group commit: one per group).
    pub fn fsyncs(&self) -> u64 {
        self.committer.fsyncs()
    }

    /// Input limits in force.
    pub fn limits(&self) -> &WriteLimits {
        &self.limits
    }

    /// Stops accepting writes, answers every queued one, and waits for the
    /// commit thread to exit (clean shutdown). Later writes report
    /// shutdown. Idempotent.
    pub fn close(&self) {
        self.committer.close();
    }

    /// History retention in force.
    pub fn gc_policy(&self) -> GcPolicy {
        self.gc
    }
}
