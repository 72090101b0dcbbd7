//! When snapshots are taken and what is retained.
//!
//! A background thread waits on the primary's durable position and takes a
//! snapshot each time `snapshot_every_bytes` of WAL have become durable
//! since the last snapshot's L_snap. The replication layer can ask for one
//! with [`SnapshotScheduler::request_snapshot`]. After each snapshot only
//! the newest [`SnapshotPolicy::keep`] are kept, and WAL segments wholly
//! before the retention floor are removed ([`crate::retention`], RES-2:
//! never what the oldest kept snapshot needs, and before it only what the
//! cap and the replicas' holds allow). Snapshots that recovery rejected
//! (F-S4) are never counted among the kept ones nor used as a retention
//! base; they are deleted once a new snapshot exists. Snapshots are taken
//! one at a time.

use std::collections::BTreeSet;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use aerodb_mvcc::{PrimaryEngine, Store};
use aerodb_wal::disk::Disk;
use aerodb_wal::durable::DurableWatch;
use aerodb_wal::log::SegmentList;
use aerodb_wal::{CommitId, Lsn};
use serde::Serialize;

use crate::create::{create_snapshot_with, SnapshotInfo, SnapshotOptions};
use crate::dir::{delete_snapshot, list_snapshots};
use crate::error::SnapshotError;
use crate::load::read_manifest;
use crate::retention::{retention_floor, RetentionInputs, RetentionMode, WalHolds, DEFAULT_WAL_KEEP_BYTES};

/// Snapshots kept by default (the newest two).
pub const DEFAULT_KEEP: usize = 2;

/// Upper bound of one idle wait; it only keeps the thread responsive to a
/// stop request and decides nothing (REPL-10).
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// What the scheduler does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotPolicy {
    /// Take a snapshot each time this many WAL bytes became durable since
    /// the last snapshot's L_snap (0 = never automatically).
    pub snapshot_every_bytes: u64,
    /// `--wal-retention after-oldest-snapshot`: before the oldest kept
    /// snapshot keep only what known replicas need (within the cap);
    /// otherwise (`all`) keep everything within the cap.
    pub wal_retention_after_snapshot: bool,
    /// Snapshots kept (at least 1).
    pub keep: usize,
    /// `--wal-keep-bytes`: the most WAL kept behind the durable end for
    /// replicas, beyond what snapshots need (RES-2).
    pub wal_keep_bytes: u64,
}

impl SnapshotPolicy {
    /// The policy for the node's two flags, keeping [`DEFAULT_KEEP`]
    /// snapshots and [`DEFAULT_WAL_KEEP_BYTES`] of WAL for replicas.
    pub fn new(snapshot_every_bytes: u64, wal_retention_after_snapshot: bool) -> Self {
        SnapshotPolicy { snapshot_every_bytes, wal_retention_after_snapshot, keep: DEFAULT_KEEP, wal_keep_bytes: DEFAULT_WAL_KEEP_BYTES }
    }

    /// The same policy with another `--wal-keep-bytes`.
    pub fn with_wal_keep_bytes(self, wal_keep_bytes: u64) -> Self {
        SnapshotPolicy { wal_keep_bytes, ..self }
    }

    /// The retention mode (`--wal-retention`).
    pub fn retention_mode(&self) -> RetentionMode {
        if self.wal_retention_after_snapshot {
            RetentionMode::AfterOldestSnapshot
        } else {
            RetentionMode::All
        }
    }
}

/// Counters and the last outcome, for observability.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchedulerStatus {
    /// Snapshots created by this process.
    pub snapshots_created: u64,
    /// The most recent snapshot created or returned.
    pub last_snapshot: Option<SnapshotInfo>,
    /// Old snapshots deleted by this process.
    pub snapshots_deleted: u64,
    /// WAL segment files removed by retention in this process.
    pub segments_removed: u64,
    /// The retention floor of the last retention pass (RES-2), if one ran.
    pub retention_floor: Option<Lsn>,
    /// The last failure (creation, pruning or retention), if any.
    pub last_error: Option<String>,
}

struct Shared {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    store: Arc<Store>,
    durable: Arc<DurableWatch>,
    segments: SegmentList,
    cluster_id: String,
    policy: SnapshotPolicy,
    options: SnapshotOptions,
    /// Snapshots recovery rejected: never kept, never a retention base.
    rejected: BTreeSet<CommitId>,
    /// What known replicas still need (the primary's replica registry).
    holds: RwLock<Option<Arc<dyn WalHolds>>>,
    stop: AtomicBool,
    /// L_snap of the newest snapshot known.
    last_lsn: AtomicU64,
    create_lock: Mutex<()>,
    status: Mutex<SchedulerStatus>,
    status_changed: Condvar,
}

/// Takes snapshots on the primary: by WAL volume in a background thread,
/// and on request. Stops (and joins its thread) when dropped.
pub struct SnapshotScheduler {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SnapshotScheduler {
    /// Starts the scheduler for `engine`'s store and WAL with the default
    /// [`SnapshotOptions`]. `rejected` are the boundaries of snapshots that
    /// recovery rejected (`PrimaryRecoveryReport::rejected_snapshots`). The
    /// background thread runs only when `policy.snapshot_every_bytes > 0`.
    pub fn start(
        disk: Arc<dyn Disk>,
        snapshots_dir: PathBuf,
        engine: &PrimaryEngine,
        cluster_id: &str,
        policy: SnapshotPolicy,
        rejected: &[CommitId],
    ) -> Result<Self, SnapshotError> {
        Self::start_with(disk, snapshots_dir, engine, cluster_id, policy, SnapshotOptions::default(), rejected)
    }

    /// [`SnapshotScheduler::start`] with explicit snapshot options.
    pub fn start_with(
        disk: Arc<dyn Disk>,
        snapshots_dir: PathBuf,
        engine: &PrimaryEngine,
        cluster_id: &str,
        policy: SnapshotPolicy,
        options: SnapshotOptions,
        rejected: &[CommitId],
    ) -> Result<Self, SnapshotError> {
        let policy = SnapshotPolicy { keep: policy.keep.max(1), ..policy };
        let rejected: BTreeSet<CommitId> = rejected.iter().copied().collect();
        let newest_lsn = newest_usable(&*disk, &snapshots_dir, &rejected)?.map_or(0, |s| s.lsn);
        let shared = Arc::new(Shared {
            disk,
            dir: snapshots_dir,
            store: engine.store().clone(),
            durable: engine.durable().clone(),
            segments: engine.segments().clone(),
            cluster_id: cluster_id.to_string(),
            policy,
            options,
            rejected,
            holds: RwLock::new(None),
            stop: AtomicBool::new(false),
            last_lsn: AtomicU64::new(newest_lsn),
            create_lock: Mutex::new(()),
            status: Mutex::new(SchedulerStatus::default()),
            status_changed: Condvar::new(),
        });
        let thread = if policy.snapshot_every_bytes > 0 {
            let worker = shared.clone();
            let handle = std::thread::Builder::new()
                .name("snapshot-scheduler".into())
                .spawn(move || run(&worker))
                .map_err(|e| SnapshotError::io("spawn snapshot thread", &shared.dir, e))?;
            Some(handle)
        } else {
            None
        };
        tracing::info!(
            every_bytes = policy.snapshot_every_bytes,
            wal_retention = policy.retention_mode().as_str(),
            wal_keep_bytes = policy.wal_keep_bytes,
            keep = policy.keep,
            "snapshot scheduler started"
        );
        Ok(SnapshotScheduler { shared, thread: Mutex::new(thread) })
    }

    /// The snapshot for a replica bootstrap: the newest snapshot held (not
    /// rejected at recovery), or, when none exists or `fresh` is set, a new
    /// one at the current applied state (a no-op if one exists at exactly
    /// that CommitId).
    pub fn request_snapshot(&self, fresh: bool) -> Result<SnapshotInfo, SnapshotError> {
        if !fresh {
            if let Some(info) = newest_usable(&*self.shared.disk, &self.shared.dir, &self.shared.rejected)? {
                return Ok(info);
            }
        }
        self.shared.snapshot_now()
    }

    /// Snapshots held (whose manifests read back), newest first.
    pub fn held(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        held(&*self.shared.disk, &self.shared.dir)
    }

    /// Counters and the last outcome.
    pub fn status(&self) -> SchedulerStatus {
        lock(&self.shared.status).clone()
    }

    /// The policy in force.
    pub fn policy(&self) -> SnapshotPolicy {
        self.shared.policy
    }

    /// Lets retention keep what the replicas a primary knows still need
    /// (within `--wal-keep-bytes`, RES-2). Only WAL retention reads it.
    pub fn set_wal_holds(&self, holds: Arc<dyn WalHolds>) {
        *self.shared.holds.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(holds);
    }

    /// Blocks until this process has created at least `count` snapshots or
    /// `max_wait` passes; returns the count seen last.
    pub fn wait_for_created(&self, count: u64, max_wait: Duration) -> u64 {
        let status = lock(&self.shared.status);
        let (status, _) =
            self.shared.status_changed.wait_timeout_while(status, max_wait, |s| s.snapshots_created < count).unwrap_or_else(std::sync::PoisonError::into_inner);
        status.snapshots_created
    }

    /// Stops the background thread (cancelling a snapshot in progress,
    /// which then publishes nothing) and waits for it.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = lock(&self.thread).take() {
            if handle.join().is_err() {
                tracing::error!("snapshot scheduler thread panicked");
            }
        }
    }
}

impl Drop for SnapshotScheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every snapshot whose manifest reads back, newest first.
fn held(disk: &dyn Disk, dir: &std::path::Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    let mut out = Vec::new();
    for s in list_snapshots(disk, dir)? {
        match read_manifest(disk, &s.path) {
            Ok(m) => out.push(SnapshotInfo::from_manifest(&s.path, &m, false)),
            Err(e) => tracing::warn!(snapshot = %s.name, code = e.code(), error = %e, "snapshot manifest unreadable"),
        }
    }
    Ok(out)
}

fn newest_usable(disk: &dyn Disk, dir: &std::path::Path, rejected: &BTreeSet<CommitId>) -> Result<Option<SnapshotInfo>, SnapshotError> {
    Ok(held(disk, dir)?.into_iter().find(|s| !rejected.contains(&s.commit_id)))
}

fn run(shared: &Shared) {
    let every = shared.policy.snapshot_every_bytes;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let target = shared.last_lsn.load(Ordering::SeqCst).saturating_add(every);
        let point = shared.durable.wait_beyond(target.saturating_sub(1), IDLE_WAIT);
        if shared.stop.load(Ordering::SeqCst) || shared.durable.is_closed() {
            break;
        }
        if point.lsn < target {
            continue;
        }
        match shared.snapshot_now() {
            Ok(_) => {}
            Err(SnapshotError::Cancelled) => break,
            Err(e) => {
                // Try again only after another `every` bytes: no retry loop on a persistent failure.
                tracing::warn!(code = e.code(), error = %e, "scheduled snapshot failed");
                shared.last_lsn.fetch_max(point.lsn, Ordering::SeqCst);
            }
        }
    }
    tracing::debug!("snapshot scheduler stopped");
}

impl Shared {
    /// Creates a snapshot at the current applied state, then prunes and
    /// applies retention. One at a time.
    fn snapshot_now(&self) -> Result<SnapshotInfo, SnapshotError> {
        let _one_at_a_time = lock(&self.create_lock);
        let result = create_snapshot_with(&*self.disk, &self.dir, &self.store, &self.cluster_id, &self.options, Some(&self.stop));
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                self.record(|s| s.last_error = Some(e.to_string()));
                return Err(e);
            }
        };
        self.last_lsn.fetch_max(info.lsn, Ordering::SeqCst);
        let created = info.created;
        self.record(|s| {
            s.snapshots_created += u64::from(created);
            s.last_snapshot = Some(info.clone());
        });
        if let Err(e) = self.retire() {
            tracing::warn!(code = e.code(), error = %e, "snapshot retention failed (nothing unsafe was removed)");
            self.record(|s| s.last_error = Some(e.to_string()));
        }
        Ok(info)
    }

    /// Keeps the newest snapshots and retires WAL ([`retire_with_holds`]).
    fn retire(&self) -> Result<(), SnapshotError> {
        let holds = self.holds.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let outcome = retire_with_holds(&*self.disk, &self.dir, &self.segments, &self.policy, &self.rejected, holds.as_deref());
        self.record(|s| {
            s.snapshots_deleted += outcome.deleted.len() as u64;
            s.segments_removed += outcome.segments_removed.len() as u64;
            if outcome.retention_floor.is_some() {
                s.retention_floor = outcome.retention_floor;
            }
        });
        outcome.result
    }

    fn record(&self, f: impl FnOnce(&mut SchedulerStatus)) {
        let mut status = lock(&self.status);
        f(&mut status);
        drop(status);
        self.status_changed.notify_all();
    }
}

/// What one retention pass removed, and how it ended.
#[derive(Debug)]
pub struct RetireOutcome {
    /// Snapshots deleted (C_snap), oldest last.
    pub deleted: Vec<CommitId>,
    /// WAL segment files removed.
    pub segments_removed: Vec<String>,
    /// The retention floor this pass decided (None if it stopped before).
    pub retention_floor: Option<Lsn>,
    /// The first failure, if any (nothing unsafe was removed).
    pub result: Result<(), SnapshotError>,
}

/// One retention pass, run after each snapshot by the scheduler (and by the
/// simulator): keeps the newest `policy.keep` snapshots (those in
/// `rejected`, which recovery refused, never count and are deleted) and
/// removes WAL segments wholly before the retention floor
/// ([`crate::retention::retention_floor`]): never what the oldest kept
/// snapshot needs, so the WAL still continues every kept snapshot (P5-I9),
/// and before it only what `--wal-retention` and `--wal-keep-bytes` let go
/// (RES-2). No replica holds: see [`retire_with_holds`].
pub fn retire(disk: &dyn Disk, dir: &std::path::Path, segments: &SegmentList, policy: &SnapshotPolicy, rejected: &BTreeSet<CommitId>) -> RetireOutcome {
    retire_with_holds(disk, dir, segments, policy, rejected, None)
}

/// [`retire`], keeping what `holds` (the primary's known replicas) still
/// need within the cap.
pub fn retire_with_holds(
    disk: &dyn Disk,
    dir: &std::path::Path,
    segments: &SegmentList,
    policy: &SnapshotPolicy,
    rejected: &BTreeSet<CommitId>,
    holds: Option<&dyn WalHolds>,
) -> RetireOutcome {
    let mut outcome = RetireOutcome { deleted: Vec::new(), segments_removed: Vec::new(), retention_floor: None, result: Ok(()) };
    outcome.result = retire_into(disk, dir, segments, policy, rejected, holds, &mut outcome);
    outcome
}

fn retire_into(
    disk: &dyn Disk,
    dir: &std::path::Path,
    segments: &SegmentList,
    policy: &SnapshotPolicy,
    rejected: &BTreeSet<CommitId>,
    holds: Option<&dyn WalHolds>,
    outcome: &mut RetireOutcome,
) -> Result<(), SnapshotError> {
    let deleted = &mut outcome.deleted;
    let keep = policy.keep.max(1);
    let (refused, usable): (Vec<_>, Vec<_>) = list_snapshots(disk, dir)?.into_iter().partition(|s| rejected.contains(&s.commit_id));
    for old in refused.iter().chain(usable.iter().skip(keep)) {
        delete_snapshot(disk, dir, old.commit_id)?;
        tracing::info!(commit_id = old.commit_id, rejected_at_recovery = rejected.contains(&old.commit_id), "deleted old snapshot");
        deleted.push(old.commit_id);
    }
    // The WAL must still continue the oldest snapshot kept, so only
    // segments wholly before its L_snap may go; before it, the cap and the
    // replicas' holds decide (RES-2).
    let Some(oldest) = usable.get(keep.min(usable.len()).saturating_sub(1)) else {
        return Ok(());
    };
    let snapshot_floor: Lsn = read_manifest(disk, &oldest.path)?.boundary_lsn;
    let end_lsn = segments.snapshot().last().map_or(0, |s| s.end_lsn);
    let inputs = RetentionInputs { snapshot_floor: Some(snapshot_floor), end_lsn, replica_hold: holds.and_then(|h| h.oldest_needed()) };
    let lsn = retention_floor(policy.retention_mode(), policy.wal_keep_bytes, inputs);
    outcome.retention_floor = Some(lsn);
    let gone = segments.remove_segments_before(disk, lsn).map_err(|e| SnapshotError::Io {
        op: "remove WAL segments",
        path: segments.dir().display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    if !gone.is_empty() {
        tracing::info!(
            before_lsn = lsn,
            snapshot_floor,
            end_lsn,
            wal_keep_bytes = policy.wal_keep_bytes,
            replica_hold = inputs.replica_hold,
            segments = gone.len(),
            first = gone.first().map(String::as_str).unwrap_or(""),
            last = gone.last().map(String::as_str).unwrap_or(""),
            "removed WAL segments wholly before the retention floor (RES-2)"
        );
        outcome.segments_removed.extend(gone);
    }
    Ok(())
}
