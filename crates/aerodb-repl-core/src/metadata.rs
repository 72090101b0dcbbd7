//! The replica metadata file `replica/replica.json`: checksummed, replaced
//! atomically, and the commit point of a bootstrap. Without it a replica is
//! uninitialised and any partial bootstrap state is discarded (F-S1, F-S2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use aerodb_wal::checksummed::{read_checksummed, write_checksummed, ChecksummedFileError};
use aerodb_wal::disk::Disk;
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn, StateDigest};

use crate::halt::HaltReason;

/// Current format version of `replica.json`.
pub const METADATA_FORMAT: u32 = 1;

/// How the replica got its initial state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootstrapMethod {
    /// From the primary's WAL, starting at genesis.
    Wal,
    /// From a primary snapshot, then WAL after its cut.
    Snapshot,
}

/// The bootstrap boundary: where the replica's own WAL starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapBoundary {
    /// Method.
    pub method: BootstrapMethod,
    /// C_snap (0 for WAL bootstrap).
    pub boundary_commit_id: CommitId,
    /// L_snap (0 for WAL bootstrap).
    pub boundary_lsn: Lsn,
    /// F_snap (genesis fingerprint for WAL bootstrap).
    pub boundary_fingerprint: Fingerprint,
    /// State digest at the boundary.
    pub boundary_state_digest: StateDigest,
}

impl BootstrapBoundary {
    /// The chain tip the replica's WAL continues from.
    pub fn tip(&self) -> ChainTip {
        ChainTip { end_lsn: self.boundary_lsn, commit_id: self.boundary_commit_id, fingerprint: self.boundary_fingerprint }
    }
}

/// Contents of `replica.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMetadata {
    /// Format version.
    pub format_version: u32,
    /// Cluster id learned from the primary at bootstrap.
    pub cluster_id: String,
    /// This replica's id.
    pub replica_id: String,
    /// Where its history starts.
    pub bootstrap: BootstrapBoundary,
}

/// Paths of a replica's files inside its data directory.
#[derive(Clone, Debug)]
pub struct ReplicaPaths {
    /// `wal/`.
    pub wal: PathBuf,
    /// `replica/`.
    pub dir: PathBuf,
}

impl ReplicaPaths {
    /// Paths under a data directory root.
    pub fn new(root: &Path) -> Self {
        ReplicaPaths { wal: root.join("wal"), dir: root.join("replica") }
    }
    /// `replica/replica.json`.
    pub fn metadata(&self) -> PathBuf {
        self.dir.join("replica.json")
    }
    /// `replica/snapshot/`: the installed bootstrap snapshot.
    pub fn snapshot(&self) -> PathBuf {
        self.dir.join("snapshot")
    }
    /// `replica/halt.json`: a persisted halt, cleared only by `--rebootstrap`.
    pub fn halt(&self) -> PathBuf {
        self.dir.join("halt.json")
    }
    /// `replica/bootstrap.tmp/`: a snapshot transfer in progress.
    pub fn bootstrap_tmp(&self) -> PathBuf {
        self.dir.join("bootstrap.tmp")
    }
}

/// Why the metadata cannot be trusted (F-RC2): the replica refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("replica metadata {file} failed check {check}: {detail} (F-RC2)")]
pub struct MetadataError {
    /// File.
    pub file: String,
    /// Which check failed (stable code).
    pub check: &'static str,
    /// Detail.
    pub detail: String,
}

/// Reads `replica.json`; `Ok(None)` when absent (uninitialised replica).
pub fn read_metadata(disk: &dyn Disk, paths: &ReplicaPaths) -> Result<Option<ReplicaMetadata>, MetadataError> {
    let path = paths.metadata();
    if !disk.exists(&path) {
        return Ok(None);
    }
    let meta: ReplicaMetadata = read_checksummed(disk, &path).map_err(|e: ChecksummedFileError| MetadataError {
        file: path.display().to_string(),
        check: e.code(),
        detail: e.to_string(),
    })?;
    if meta.format_version != METADATA_FORMAT {
        return Err(MetadataError {
            file: path.display().to_string(),
            check: "META_VERSION",
            detail: format!("unsupported format_version {}", meta.format_version),
        });
    }
    Ok(Some(meta))
}

/// Writes `replica.json` atomically and durably.
pub fn write_metadata(disk: &dyn Disk, paths: &ReplicaPaths, meta: &ReplicaMetadata) -> std::io::Result<()> {
    disk.create_dir_all(&paths.dir)?;
    write_checksummed(disk, &paths.metadata(), meta)
}

/// Reads a persisted halt; `Ok(None)` when the replica is not halted.
pub fn read_halt(disk: &dyn Disk, paths: &ReplicaPaths) -> Result<Option<HaltReason>, MetadataError> {
    let path = paths.halt();
    if !disk.exists(&path) {
        return Ok(None);
    }
    read_checksummed(disk, &path).map(Some).map_err(|e: ChecksummedFileError| MetadataError {
        file: path.display().to_string(),
        check: e.code(),
        detail: e.to_string(),
    })
}

/// Persists a halt atomically (REPL-5: never cleared automatically).
pub fn write_halt(disk: &dyn Disk, paths: &ReplicaPaths, halt: &HaltReason) -> std::io::Result<()> {
    disk.create_dir_all(&paths.dir)?;
    write_checksummed(disk, &paths.halt(), halt)
}
