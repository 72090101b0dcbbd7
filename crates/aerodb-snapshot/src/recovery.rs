//! The primary's recovery (§8): newest valid local snapshot + WAL after it.
//!
//! Snapshots are tried newest first. One that fails validation (F-S4) is
//! rejected loudly and recorded, and the next older one is tried; with none
//! left the WAL is replayed from genesis. The WAL is the authority: once a
//! snapshot is loaded, the WAL must continue its cut exactly (P5-I9), and a
//! mismatch (F-S3) is a hard failure, never a reason to try another base.

use std::path::Path;
use std::sync::Arc;

use aerodb_mvcc::{recover_store_with, Store, StoreRecoveryError, StoreRecoveryReport};
use aerodb_wal::disk::Disk;
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::segment::{parse_segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::{CommitId, Fingerprint, Lsn, StateDigest};
use serde::Serialize;
use thiserror::Error;

use crate::dir::{cleanup_incomplete, list_snapshots};
use crate::error::SnapshotError;
use crate::load::load_snapshot;

/// The snapshot recovery started from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotUsed {
    /// Directory name.
    pub name: String,
    /// C_snap.
    pub commit_id: CommitId,
    /// L_snap.
    pub lsn: Lsn,
    /// F_snap.
    pub fingerprint: Fingerprint,
    /// State digest at C_snap (verified after loading).
    pub state_digest: StateDigest,
    /// Versions loaded.
    pub version_count: u64,
}

/// A snapshot that recovery did not use, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectedSnapshot {
    /// Directory name.
    pub name: String,
    /// C_snap from the directory name.
    pub commit_id: CommitId,
    /// Stable code of the failure.
    pub code: &'static str,
    /// Rule enforced.
    pub rule_id: &'static str,
    /// The failure, in words.
    pub reason: String,
}

/// What the primary's recovery did; feeds the recovery explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrimaryRecoveryReport {
    /// The snapshot used as the base, or `None` for the WAL from genesis.
    pub snapshot_used: Option<SnapshotUsed>,
    /// Snapshots that failed validation, newest first.
    pub rejected_snapshots: Vec<RejectedSnapshot>,
    /// Incomplete snapshot directories removed (F-S1).
    pub removed_incomplete: Vec<String>,
    /// WAL verification and replay after the base.
    pub store: StoreRecoveryReport,
}

/// Why the primary cannot recover. Every variant aborts startup.
#[derive(Debug, Error)]
pub enum PrimaryRecoveryError {
    /// The snapshots directory could not be listed or cleaned.
    #[error("snapshots directory: {0}")]
    Snapshots(#[source] SnapshotError),
    /// WAL verification or replay failed, or the WAL does not continue the
    /// snapshot's cut (F-S3).
    #[error("{}: {source}", base_label(*snapshot))]
    Store {
        /// C_snap of the snapshot used as the base (None = genesis).
        snapshot: Option<CommitId>,
        /// The failure.
        #[source]
        source: Box<StoreRecoveryError>,
    },
    /// No valid snapshot is left and the WAL does not start at genesis, so
    /// no base can be proven.
    #[error(
        "no usable base: the WAL starts at LSN {wal_start_lsn} after CommitId {wal_start_commit_id}, and {} snapshot(s) were rejected ({})",
        rejected.len(),
        rejected.iter().map(|r| format!("{}: {}", r.name, r.code)).collect::<Vec<_>>().join(", ")
    )]
    NoBase {
        /// Where the WAL starts.
        wal_start_lsn: Lsn,
        /// CommitId before the WAL's first record.
        wal_start_commit_id: CommitId,
        /// Snapshots rejected on the way.
        rejected: Vec<RejectedSnapshot>,
    },
}

fn base_label(snapshot: Option<CommitId>) -> String {
    match snapshot {
        Some(c) => format!("recovery from snapshot {c}"),
        None => "recovery from genesis".to_string(),
    }
}

impl PrimaryRecoveryError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            PrimaryRecoveryError::Snapshots(e) => e.code(),
            PrimaryRecoveryError::Store { source, .. } => source.code(),
            PrimaryRecoveryError::NoBase { .. } => "RECOVERY_NO_BASE",
        }
    }
    /// The durable-mark violation that refused recovery (CORE-5, F-P4), if
    /// that was the failure.
    pub fn mark_violation(&self) -> Option<&aerodb_wal::mark_check::MarkViolation> {
        match self {
            PrimaryRecoveryError::Store { source, .. } => source.mark_violation(),
            _ => None,
        }
    }

    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        match self {
            PrimaryRecoveryError::Snapshots(_) => "REPL-9",
            PrimaryRecoveryError::Store { source, .. } => source.rule_id(),
            PrimaryRecoveryError::NoBase { .. } => "F-S4",
        }
    }
}

/// Recovers a primary (or standalone) node: removes incomplete snapshot
/// directories, loads the newest snapshot that validates (cluster id
/// `cluster_id`, every checksum, the state digest), then verifies the WAL
/// in `wal_dir` and replays it strictly after the snapshot's cut. Returns
/// the store, the WAL appender positioned at its end, and the report.
pub fn recover_primary(
    disk: Arc<dyn Disk>,
    snapshots_dir: &Path,
    wal_dir: &Path,
    cluster_id: &str,
) -> Result<(Store, SegmentAppender, PrimaryRecoveryReport), PrimaryRecoveryError> {
    recover_primary_with(disk, snapshots_dir, wal_dir, cluster_id, TailRule::DropTornTail)
}

/// [`recover_primary`] judging the end of the WAL under `tail`: a node
/// passes its durable high-water mark (CORE-5), so a WAL that ends or is
/// invalid before the mark refuses recovery (F-P4) and nothing is
/// truncated.
pub fn recover_primary_with(
    disk: Arc<dyn Disk>,
    snapshots_dir: &Path,
    wal_dir: &Path,
    cluster_id: &str,
    tail: TailRule,
) -> Result<(Store, SegmentAppender, PrimaryRecoveryReport), PrimaryRecoveryError> {
    let removed_incomplete = cleanup_incomplete(&*disk, snapshots_dir).map_err(PrimaryRecoveryError::Snapshots)?;
    let candidates = list_snapshots(&*disk, snapshots_dir).map_err(PrimaryRecoveryError::Snapshots)?;
    let mut rejected = Vec::new();
    let mut chosen = None;
    for candidate in candidates {
        match load_snapshot(&*disk, &candidate.path, Some(cluster_id)) {
            Ok((store, manifest)) => {
                chosen = Some((store, manifest, candidate.name));
                break;
            }
            Err(e) => {
                tracing::warn!(
                    snapshot = %candidate.name,
                    code = e.code(),
                    rule_id = e.rule_id(),
                    error = %e,
                    "SNAPSHOT REJECTED: it failed validation and will not be used; trying an older base (the WAL is the authority)"
                );
                rejected.push(RejectedSnapshot {
                    name: candidate.name,
                    commit_id: candidate.commit_id,
                    code: e.code(),
                    rule_id: e.rule_id(),
                    reason: e.to_string(),
                });
            }
        }
    }
    let (store, snapshot_used) = match chosen {
        Some((store, m, name)) => {
            let used = SnapshotUsed {
                name,
                commit_id: m.boundary_commit_id,
                lsn: m.boundary_lsn,
                fingerprint: m.boundary_fingerprint,
                state_digest: m.state_digest,
                version_count: m.version_count,
            };
            tracing::info!(snapshot = %used.name, commit_id = used.commit_id, lsn = used.lsn, state_digest = %used.state_digest, versions = used.version_count, "loaded snapshot; replaying the WAL after it");
            (store, Some(used))
        }
        None => {
            if let Some(start) = wal_start(&*disk, wal_dir) {
                if start.start_lsn != 0 || start.prev_commit_id != 0 {
                    return Err(PrimaryRecoveryError::NoBase { wal_start_lsn: start.start_lsn, wal_start_commit_id: start.prev_commit_id, rejected });
                }
            }
            (Store::new(), None)
        }
    };
    let base = snapshot_used.as_ref().map(|s| s.commit_id);
    let (appender, store_report) =
        recover_store_with(disk, wal_dir, &store, tail).map_err(|source| PrimaryRecoveryError::Store { snapshot: base, source: Box::new(source) })?;
    Ok((store, appender, PrimaryRecoveryReport { snapshot_used, rejected_snapshots: rejected, removed_incomplete, store: store_report }))
}

/// Header of the oldest segment, if it can be read (otherwise WAL recovery
/// reports the problem itself).
fn wal_start(disk: &dyn Disk, wal_dir: &Path) -> Option<SegmentHeader> {
    let names = disk.list(wal_dir).ok()?;
    let first = names.iter().filter_map(|n| parse_segment_file_name(n).map(|lsn| (lsn, n))).min()?;
    let file = disk.open(&wal_dir.join(first.1)).ok()?;
    let mut buf = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    SegmentHeader::decode(&buf).ok()
}
