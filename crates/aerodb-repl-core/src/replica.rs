//! Replica recovery (§8) and bootstrap installation (§7): pure functions of
//! the files on disk (P5-I11). A crash at any point leaves either a
//! committed bootstrap (`replica.json` written last) or nothing that is
//! used: partial transfers are discarded and bootstrap starts again (F-S1,
//! F-S2). A crash during recovery just runs recovery again (F-RC1).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use aerodb_mvcc::{recover_store, AppliedState, Store, StoreRecoveryReport};
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::ChainTip;

use crate::halt::HaltReason;
use crate::metadata::{
    read_halt, read_metadata, write_halt, write_metadata, BootstrapBoundary, BootstrapMethod, MetadataError, ReplicaMetadata, ReplicaPaths, METADATA_FORMAT,
};
use crate::pipeline::ReplicaPipeline;

/// Why a snapshot could not be used, with its stable code and rule.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
#[error("{detail} ({code}, {rule_id})")]
pub struct SnapshotRejected {
    /// Stable code (e.g. SNAPSHOT_CHECKSUM).
    pub code: String,
    /// Rule (F-S4 / REPL-8).
    pub rule_id: String,
    /// Detail.
    pub detail: String,
}

/// The snapshot format, as replication needs it. Implemented with
/// `aerodb-snapshot` by the node; replication never parses data files.
pub trait SnapshotFormat: Send + Sync {
    /// The files the manifest in `dir` promises: plain names and sizes.
    fn manifest_files(&self, dir: &Path) -> Result<Vec<(String, u64)>, SnapshotRejected>;
    /// Validates a snapshot directory completely (every checksum, the
    /// manifest, the cluster id, and the state digest after loading) and
    /// returns the loaded store with its cut (REPL-8, F-S4).
    fn load(&self, dir: &Path, expected_cluster: &str) -> Result<(Store, AppliedState), SnapshotRejected>;
}

/// What replica recovery did: feeds `recovery.process`.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaRecoveryReport {
    /// Bootstrap boundary from the metadata.
    pub bootstrap: BootstrapBoundary,
    /// Snapshot loaded (its cut), if bootstrapped from a snapshot.
    pub snapshot_used: Option<AppliedState>,
    /// WAL verification and replay.
    pub wal: StoreRecoveryReport,
    /// Partial bootstrap files discarded.
    pub discarded: Vec<String>,
}

/// A replica ready to connect.
pub struct ReadyReplica {
    /// Its metadata.
    pub metadata: ReplicaMetadata,
    /// The store.
    pub store: Arc<Store>,
    /// The pipeline positioned at the end of the validated WAL.
    pub pipeline: ReplicaPipeline,
    /// Recovery report, when this came from recovery.
    pub report: Option<ReplicaRecoveryReport>,
}

/// Outcome of replica recovery.
pub enum Recovered {
    /// Nothing committed: bootstrap needed. Lists what was discarded.
    Uninitialised {
        /// Partial files removed.
        discarded: Vec<String>,
    },
    /// A persisted or newly found integrity failure.
    Halted {
        /// Why.
        halt: Box<HaltReason>,
        /// Metadata, if readable.
        metadata: Option<ReplicaMetadata>,
    },
    /// Recovered and ready.
    Ready(Box<ReadyReplica>),
}

fn remove_if_exists(disk: &dyn Disk, path: &Path, discarded: &mut Vec<String>) -> std::io::Result<()> {
    if disk.exists(path) {
        disk.remove_dir_all(path)?;
        discarded.push(path.display().to_string());
    }
    Ok(())
}

/// Removes everything a bootstrap may have left without committing.
pub fn discard_uncommitted(disk: &dyn Disk, paths: &ReplicaPaths) -> std::io::Result<Vec<String>> {
    let mut discarded = Vec::new();
    remove_if_exists(disk, &paths.bootstrap_tmp(), &mut discarded)?;
    remove_if_exists(disk, &paths.snapshot(), &mut discarded)?;
    remove_if_exists(disk, &paths.wal, &mut discarded)?;
    if let Some(parent) = paths.dir.parent() {
        if disk.exists(&paths.dir) {
            disk.sync_dir(&paths.dir)?;
        }
        disk.sync_dir(parent)?;
    }
    Ok(discarded)
}

/// Records a halt durably (best effort on a failing disk: the in-memory
/// halt still stops everything).
pub fn persist_halt(disk: &dyn Disk, paths: &ReplicaPaths, halt: &HaltReason) {
    if let Err(e) = write_halt(disk, paths, halt) {
        tracing::error!(error = %e, "cannot persist the halt; it holds until this process exits");
    }
}

/// Recovers a replica from its files alone. Corrupt metadata is the only
/// error (F-RC2: refuse to start); integrity failures in the snapshot or
/// WAL become a persisted halt.
pub fn recover_replica(disk: Arc<dyn Disk>, paths: &ReplicaPaths, format: &dyn SnapshotFormat) -> Result<Recovered, MetadataError> {
    let halt = read_halt(&*disk, paths)?;
    let metadata = read_metadata(&*disk, paths)?;
    if let Some(halt) = halt {
        return Ok(Recovered::Halted { halt: Box::new(halt), metadata });
    }
    let Some(metadata) = metadata else {
        let discarded = discard_uncommitted(&*disk, paths).map_err(|e| MetadataError {
            file: paths.dir.display().to_string(),
            check: "DISCARD_FAILED",
            detail: e.to_string(),
        })?;
        return Ok(Recovered::Uninitialised { discarded });
    };
    let mut discarded = Vec::new();
    let _ = remove_if_exists(&*disk, &paths.bootstrap_tmp(), &mut discarded);
    let halt_with = |halt: HaltReason| {
        persist_halt(&*disk, paths, &halt);
        Ok(Recovered::Halted { halt: Box::new(halt), metadata: Some(metadata.clone()) })
    };
    let (store, snapshot_used) = match metadata.bootstrap.method {
        BootstrapMethod::Wal => (Store::new(), None),
        BootstrapMethod::Snapshot => match format.load(&paths.snapshot(), &metadata.cluster_id) {
            Ok((store, cut)) => {
                let b = metadata.bootstrap;
                if (cut.commit_id, cut.end_lsn, cut.fingerprint) != (b.boundary_commit_id, b.boundary_lsn, b.boundary_fingerprint) {
                    return halt_with(
                        HaltReason::new(
                            "SNAPSHOT_METADATA_MISMATCH",
                            "F-S3",
                            format!(
                                "installed snapshot cut ({}, LSN {}) differs from the recorded boundary ({}, LSN {})",
                                cut.commit_id, cut.end_lsn, b.boundary_commit_id, b.boundary_lsn
                            ),
                            Some(cut.end_lsn),
                            Some(cut.commit_id),
                            serde_json::json!({"snapshot_cut": cut, "recorded_boundary": b}),
                        )
                        .with_failure("F-S3"),
                    );
                }
                (store, Some(cut))
            }
            Err(e) => {
                return halt_with(
                    HaltReason::new(
                        &e.code,
                        &e.rule_id,
                        format!("installed bootstrap snapshot is invalid: {}", e.detail),
                        None,
                        None,
                        serde_json::to_value(&e).unwrap_or_default(),
                    )
                    .with_failure("F-S4"),
                )
            }
        },
    };
    aerodb_wal::crash_point!("replica.mid_recovery");
    match recover_store(disk.clone(), &paths.wal, &store) {
        Ok((appender, wal)) => {
            let store = Arc::new(store);
            let pipeline = ReplicaPipeline::new(appender, store.clone());
            let report = ReplicaRecoveryReport { bootstrap: metadata.bootstrap, snapshot_used, wal, discarded };
            Ok(Recovered::Ready(Box::new(ReadyReplica { metadata, store, pipeline, report: Some(report) })))
        }
        Err(e) => halt_with(
            HaltReason::new(e.code(), e.rule_id(), format!("local WAL recovery failed: {e}"), e.lsn(), None, serde_json::json!({"error": e.to_string()}))
                .with_failure("F-RC1"),
        ),
    }
}

/// Why a bootstrap attempt failed. None of these leaves anything installed.
#[derive(Debug, Error)]
pub enum BootstrapError {
    /// The transfer broke protocol (out-of-order piece, unknown file): retry.
    #[error("snapshot transfer protocol error: {0}")]
    Protocol(String),
    /// The snapshot failed validation (F-S4): rejected, replica unchanged.
    #[error("snapshot rejected: {0}")]
    Rejected(SnapshotRejected),
    /// Local IO failed.
    #[error("bootstrap IO error: {0}")]
    Io(String),
}

fn io(e: impl std::fmt::Display) -> BootstrapError {
    BootstrapError::Io(e.to_string())
}

/// Creates the replica's WAL directory with one empty segment continuing
/// from `tip`, replacing anything there.
fn fresh_wal(disk: Arc<dyn Disk>, paths: &ReplicaPaths, tip: ChainTip) -> Result<SegmentAppender, BootstrapError> {
    if disk.exists(&paths.wal) {
        disk.remove_dir_all(&paths.wal).map_err(io)?;
    }
    let appender = SegmentAppender::create(disk.clone(), &paths.wal, tip.segment_header()).map_err(io)?;
    if let Some(root) = paths.wal.parent() {
        disk.sync_dir(root).map_err(io)?;
    }
    Ok(appender)
}

/// Bootstrap by WAL from genesis: an empty store and an empty WAL at
/// LSN 0, committed by writing the metadata.
pub fn bootstrap_from_genesis(disk: Arc<dyn Disk>, paths: &ReplicaPaths, cluster_id: &str, replica_id: &str) -> Result<ReadyReplica, BootstrapError> {
    let appender = fresh_wal(disk.clone(), paths, ChainTip::GENESIS)?;
    let applied = AppliedState::GENESIS;
    let metadata = ReplicaMetadata {
        format_version: METADATA_FORMAT,
        cluster_id: cluster_id.to_string(),
        replica_id: replica_id.to_string(),
        bootstrap: BootstrapBoundary {
            method: BootstrapMethod::Wal,
            boundary_commit_id: 0,
            boundary_lsn: 0,
            boundary_fingerprint: applied.fingerprint,
            boundary_state_digest: applied.state_digest,
        },
    };
    write_metadata(&*disk, paths, &metadata).map_err(io)?;
    let store = Arc::new(Store::new());
    let pipeline = ReplicaPipeline::new(appender, store.clone());
    Ok(ReadyReplica { metadata, store, pipeline, report: None })
}

/// A snapshot transfer being written into `replica/bootstrap.tmp/`.
pub struct SnapshotTransfer {
    disk: Arc<dyn Disk>,
    paths: ReplicaPaths,
    files: Vec<(String, u64)>,
    current: Option<(u32, Box<dyn DiskFile>, u64)>,
    finished_files: u32,
}

fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

impl SnapshotTransfer {
    /// Starts a transfer: discards any previous partial one and writes the manifest.
    pub fn begin(disk: Arc<dyn Disk>, paths: &ReplicaPaths, format: &dyn SnapshotFormat, manifest: &[u8]) -> Result<Self, BootstrapError> {
        let tmp = paths.bootstrap_tmp();
        if disk.exists(&tmp) {
            disk.remove_dir_all(&tmp).map_err(io)?;
        }
        disk.create_dir_all(&tmp).map_err(io)?;
        let mut f = disk.create(&tmp.join("manifest.json")).map_err(io)?;
        f.append(manifest).map_err(io)?;
        f.sync_data().map_err(io)?;
        let files = format.manifest_files(&tmp).map_err(BootstrapError::Rejected)?;
        if files.iter().any(|(n, _)| !plain_file_name(n) || n == "manifest.json") {
            return Err(BootstrapError::Protocol("manifest names a file outside the snapshot directory".into()));
        }
        Ok(SnapshotTransfer { disk, paths: paths.clone(), files, current: None, finished_files: 0 })
    }

    /// Writes one piece. Pieces must arrive in file order and offset order.
    pub fn piece(&mut self, file_index: u32, offset: u64, bytes: &[u8]) -> Result<(), BootstrapError> {
        let Some((name, size)) = self.files.get(file_index as usize).cloned() else {
            return Err(BootstrapError::Protocol(format!("piece for unknown file #{file_index}")));
        };
        if self.current.as_ref().map(|c| c.0) != Some(file_index) {
            self.close_current()?;
            if file_index != self.finished_files {
                return Err(BootstrapError::Protocol(format!("file #{file_index} out of order")));
            }
            let file = self.disk.create(&self.paths.bootstrap_tmp().join(&name)).map_err(io)?;
            self.current = Some((file_index, file, 0));
        }
        let Some((_, file, written)) = self.current.as_mut() else { return Err(BootstrapError::Protocol("no open file".into())) };
        if offset != *written || *written + bytes.len() as u64 > size {
            return Err(BootstrapError::Protocol(format!("piece at {offset} (+{}) does not continue file {name} at {written} of {size}", bytes.len())));
        }
        file.append(bytes).map_err(io)?;
        *written += bytes.len() as u64;
        aerodb_wal::crash_point!("bootstrap.mid_transfer");
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), BootstrapError> {
        if let Some((_, file, _)) = self.current.take() {
            file.sync_data().map_err(io)?;
            self.finished_files += 1;
        }
        Ok(())
    }

    /// Completes the transfer: fsync, validate everything (F-S4), install
    /// atomically, create the WAL at the cut (P5-I9) and commit the
    /// metadata. Any failure removes the partial snapshot.
    pub fn finish(mut self, format: &dyn SnapshotFormat, cluster_id: &str, replica_id: &str) -> Result<ReadyReplica, BootstrapError> {
        self.close_current()?;
        // Zero-length files get no pieces: create them now.
        while (self.finished_files as usize) < self.files.len() {
            let (name, size) = self.files[self.finished_files as usize].clone();
            if size != 0 {
                return Err(BootstrapError::Protocol(format!("transfer ended before file {name} was sent")));
            }
            let f = self.disk.create(&self.paths.bootstrap_tmp().join(&name)).map_err(io)?;
            f.sync_data().map_err(io)?;
            self.finished_files += 1;
        }
        let tmp = self.paths.bootstrap_tmp();
        self.disk.sync_dir(&tmp).map_err(io)?;
        aerodb_wal::crash_point!("bootstrap.before_validate");
        let (store, cut) = match format.load(&tmp, cluster_id) {
            Ok(v) => v,
            Err(e) => {
                let _ = self.disk.remove_dir_all(&tmp);
                return Err(BootstrapError::Rejected(e));
            }
        };
        let installed = self.paths.snapshot();
        if self.disk.exists(&installed) {
            self.disk.remove_dir_all(&installed).map_err(io)?;
        }
        self.disk.rename(&tmp, &installed).map_err(io)?;
        self.disk.sync_dir(&self.paths.dir).map_err(io)?;
        let tip = ChainTip { end_lsn: cut.end_lsn, commit_id: cut.commit_id, fingerprint: cut.fingerprint };
        let appender = fresh_wal(self.disk.clone(), &self.paths, tip)?;
        aerodb_wal::crash_point!("bootstrap.before_commit");
        let metadata = ReplicaMetadata {
            format_version: METADATA_FORMAT,
            cluster_id: cluster_id.to_string(),
            replica_id: replica_id.to_string(),
            bootstrap: BootstrapBoundary {
                method: BootstrapMethod::Snapshot,
                boundary_commit_id: cut.commit_id,
                boundary_lsn: cut.end_lsn,
                boundary_fingerprint: cut.fingerprint,
                boundary_state_digest: cut.state_digest,
            },
        };
        write_metadata(&*self.disk, &self.paths, &metadata).map_err(io)?;
        let store = Arc::new(store);
        let pipeline = ReplicaPipeline::new(appender, store.clone());
        Ok(ReadyReplica { metadata, store, pipeline, report: None })
    }
}
