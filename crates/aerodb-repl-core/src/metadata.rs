//! The replica metadata file `replica/replica.json`: checksummed, replaced
//! atomically, and the commit point of a bootstrap. Without it a replica is
//! uninitialised and any partial bootstrap state is discarded (F-S1, F-S2).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use aerodb_wal::checksummed::{read_checksummed, write_checksummed, ChecksummedFileError};
use aerodb_wal::disk::Disk;
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn, StateDigest};

use crate::halt::{Halt, MetaCheck, Reason};
use crate::ids::{ClusterId, ReplicaId};

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

impl BootstrapMethod {
    /// The method as written on the command line and in JSON (`wal`, `snapshot`).
    pub fn as_str(self) -> &'static str {
        match self {
            BootstrapMethod::Wal => "wal",
            BootstrapMethod::Snapshot => "snapshot",
        }
    }
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
    pub cluster_id: ClusterId,
    /// This replica's id.
    pub replica_id: ReplicaId,
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
#[error("replica metadata {file} failed check {}: {detail} (F-RC2)", check.code())]
pub struct MetadataError {
    /// File.
    pub file: String,
    /// Which check failed.
    pub check: MetaCheck,
    /// Detail.
    pub detail: String,
}

impl MetadataError {
    /// The halt a replica records for it (F-RC2).
    pub fn to_halt(&self) -> Halt {
        Halt::Metadata { file: self.file.clone(), check: self.check, detail: self.detail.clone() }
    }
}

fn meta_check(e: &ChecksummedFileError) -> MetaCheck {
    match e {
        ChecksummedFileError::Io { .. } => MetaCheck::MetaUnreadable,
        ChecksummedFileError::Malformed { .. } => MetaCheck::MetaMalformed,
        ChecksummedFileError::Checksum { .. } => MetaCheck::MetaChecksumMismatch,
    }
}

/// Reads `replica.json`; `Ok(None)` when absent (uninitialised replica).
pub fn read_metadata(disk: &dyn Disk, paths: &ReplicaPaths) -> Result<Option<ReplicaMetadata>, MetadataError> {
    let path = paths.metadata();
    if !disk.exists(&path) {
        return Ok(None);
    }
    let meta: ReplicaMetadata = read_checksummed(disk, &path).map_err(|e: ChecksummedFileError| MetadataError {
        file: path.display().to_string(),
        check: meta_check(&e),
        detail: e.to_string(),
    })?;
    if meta.format_version != METADATA_FORMAT {
        return Err(MetadataError {
            file: path.display().to_string(),
            check: MetaCheck::MetaVersion,
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

/// Body of `replica/halt.json`: the stable code, rule and detail for
/// people and tools reading the file, and the typed halt with its evidence
/// (the only part read back).
#[derive(Serialize, Deserialize)]
struct PersistedHalt {
    code: String,
    rule_id: String,
    detail: String,
    halt: Halt,
}

/// Reads a persisted halt; `Ok(None)` when the replica is not halted.
pub fn read_halt(disk: &dyn Disk, paths: &ReplicaPaths) -> Result<Option<Halt>, MetadataError> {
    let path = paths.halt();
    if !disk.exists(&path) {
        return Ok(None);
    }
    read_checksummed(disk, &path).map(|p: PersistedHalt| Some(p.halt)).map_err(|e: ChecksummedFileError| MetadataError {
        file: path.display().to_string(),
        check: meta_check(&e),
        detail: e.to_string(),
    })
}

/// Persists a halt atomically (REPL-5: never cleared automatically).
pub fn write_halt(disk: &dyn Disk, paths: &ReplicaPaths, halt: &Halt) -> std::io::Result<()> {
    disk.create_dir_all(&paths.dir)?;
    let body = PersistedHalt { code: halt.code().to_string(), rule_id: halt.rule_id().to_string(), detail: halt.detail(), halt: halt.clone() };
    write_checksummed(disk, &paths.halt(), &body)
}
