//! The `snapshots/` directory: listing published snapshots, removing
//! incomplete ones at startup (F-S1), and deleting old ones atomically.

use std::path::{Path, PathBuf};

use aerodb_wal::disk::Disk;
use aerodb_wal::CommitId;
use serde::Serialize;

use crate::error::SnapshotError;
use crate::format::{parse_snapshot_dir_name, snapshot_dir_name, DAMAGED_PREFIX, DEL_PREFIX, TMP_PREFIX};

/// A published snapshot directory (not yet validated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotRef {
    /// C_snap, from the directory name.
    pub commit_id: CommitId,
    /// Directory name.
    pub name: String,
    /// Directory path.
    #[serde(skip)]
    pub path: PathBuf,
}

/// Published snapshots in `snapshots_dir`, newest first. Only directories
/// named with exactly 20 digits count; temporary and other entries are
/// ignored. A missing `snapshots_dir` holds no snapshot.
pub fn list_snapshots(disk: &dyn Disk, snapshots_dir: &Path) -> Result<Vec<SnapshotRef>, SnapshotError> {
    if !disk.exists(snapshots_dir) {
        return Ok(Vec::new());
    }
    let names = disk.list(snapshots_dir).map_err(|e| SnapshotError::io("list snapshots dir", snapshots_dir, e))?;
    let mut out: Vec<SnapshotRef> = names
        .into_iter()
        .filter_map(|name| parse_snapshot_dir_name(&name).map(|commit_id| SnapshotRef { commit_id, path: snapshots_dir.join(&name), name }))
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.commit_id));
    Ok(out)
}

/// Removes every incomplete snapshot directory (`.tmp-*`: creation or
/// transfer interrupted; `.del-*`: deletion interrupted) and returns their
/// names for the recovery explanation (F-S1). They were never visible.
pub fn cleanup_incomplete(disk: &dyn Disk, snapshots_dir: &Path) -> Result<Vec<String>, SnapshotError> {
    if !disk.exists(snapshots_dir) {
        return Ok(Vec::new());
    }
    let names = disk.list(snapshots_dir).map_err(|e| SnapshotError::io("list snapshots dir", snapshots_dir, e))?;
    let mut removed = Vec::new();
    for name in names.into_iter().filter(|n| n.starts_with(TMP_PREFIX) || n.starts_with(DEL_PREFIX)) {
        let path = snapshots_dir.join(&name);
        disk.remove_dir_all(&path).map_err(|e| SnapshotError::io("remove incomplete snapshot", &path, e))?;
        tracing::warn!(dir = %name, "removed an incomplete snapshot directory (F-S1)");
        removed.push(name);
    }
    if !removed.is_empty() {
        disk.sync_dir(snapshots_dir).map_err(|e| SnapshotError::io("sync snapshots dir", snapshots_dir, e))?;
    }
    Ok(removed)
}

/// Deletes the snapshot at `commit_id`: it is first renamed out of the
/// published namespace (`.del-<C>`, made durable), then removed, so a crash
/// never leaves a half-deleted snapshot under a published name.
pub fn delete_snapshot(disk: &dyn Disk, snapshots_dir: &Path, commit_id: CommitId) -> Result<(), SnapshotError> {
    let name = snapshot_dir_name(commit_id);
    let path = snapshots_dir.join(&name);
    let doomed = snapshots_dir.join(format!("{DEL_PREFIX}{name}"));
    disk.rename(&path, &doomed).map_err(|e| SnapshotError::io("retire snapshot", &path, e))?;
    disk.sync_dir(snapshots_dir).map_err(|e| SnapshotError::io("sync snapshots dir", snapshots_dir, e))?;
    disk.remove_dir_all(&doomed).map_err(|e| SnapshotError::io("remove retired snapshot", &doomed, e))?;
    disk.sync_dir(snapshots_dir).map_err(|e| SnapshotError::io("sync snapshots dir", snapshots_dir, e))
}

/// Deletes all but the newest `keep` snapshots; returns the deleted boundaries.
pub fn prune_snapshots(disk: &dyn Disk, snapshots_dir: &Path, keep: usize) -> Result<Vec<CommitId>, SnapshotError> {
    let mut deleted = Vec::new();
    for old in list_snapshots(disk, snapshots_dir)?.into_iter().skip(keep) {
        delete_snapshot(disk, snapshots_dir, old.commit_id)?;
        tracing::info!(commit_id = old.commit_id, "deleted old snapshot");
        deleted.push(old.commit_id);
    }
    Ok(deleted)
}

/// Withdraws a damaged snapshot (CORE-6, F-SC1): renames `<C>` out of the
/// published namespace to `.damaged-<C>` (`.damaged-<C>-<n>` if that name
/// is taken) and fsyncs `snapshots/`, so neither recovery nor a bootstrap
/// ever uses it; its files are kept for forensics and never removed
/// automatically. Returns the new directory name.
pub fn withdraw_snapshot(disk: &dyn Disk, snapshots_dir: &Path, commit_id: CommitId) -> Result<String, SnapshotError> {
    let name = snapshot_dir_name(commit_id);
    let path = snapshots_dir.join(&name);
    let mut target = format!("{DAMAGED_PREFIX}{name}");
    let mut n = 0u32;
    while disk.exists(&snapshots_dir.join(&target)) {
        n += 1;
        target = format!("{DAMAGED_PREFIX}{name}-{n}");
    }
    disk.rename(&path, &snapshots_dir.join(&target)).map_err(|e| SnapshotError::io("withdraw damaged snapshot", &path, e))?;
    disk.sync_dir(snapshots_dir).map_err(|e| SnapshotError::io("sync snapshots dir", snapshots_dir, e))?;
    tracing::error!(snapshot = %name, withdrawn_to = %target, "DAMAGED SNAPSHOT WITHDRAWN: it will never be used for recovery or bootstrap (CORE-6)");
    Ok(target)
}
