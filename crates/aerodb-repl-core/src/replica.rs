//! Replica recovery (§8) and bootstrap installation (§7): pure functions of
//! the files on disk (P5-I11). A crash at any point leaves either a
//! committed bootstrap (`replica.json` written last) or nothing that is
//! used: partial transfers are discarded and bootstrap starts again (F-S1,
//! F-S2). A crash during recovery just runs recovery again (F-RC1).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use aerodb_mvcc::{recover_store, AppliedState, Store, StoreRecoveryReport};
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::segment::SegmentHeader;
use aerodb_wal::ChainTip;

use crate::halt::MetaCheck;
use crate::halt::{Halt, LocalWalFailure, SnapshotFault, SnapshotRejected};
use crate::ids::{ClusterId, ReplicaId};
use crate::metadata::{
    read_halt, read_metadata, write_halt, write_metadata, BootstrapBoundary, BootstrapMethod, MetadataError, ReplicaMetadata, ReplicaPaths, METADATA_FORMAT,
};
use crate::storage::WalSink;

/// The snapshot format, as replication needs it.
pub trait SnapshotFormat: Send + Sync {
    /// The files the manifest in `dir` promises: plain names and sizes.
    fn manifest_files(&self, dir: &Path) -> Result<Vec<(String, u64)>, SnapshotRejected>;
    /// Validates a snapshot directory completely (every checksum, the
    /// manifest, the cluster id, and the state digest after loading) and
    /// returns the loaded store with its cut (REPL-8, F-S4).
    fn load(&self, dir: &Path, expected_cluster: &ClusterId) -> Result<(Store, AppliedState), SnapshotRejected>;
    /// A streamed validation and load of the snapshot whose manifest is in
    /// `dir`, fed with the data files' bytes as they arrive: the same
    /// checks as [`SnapshotFormat::load`] without reading anything back.
    fn stream(&self, dir: &Path) -> Result<Box<dyn SnapshotStream>, SnapshotRejected>;
}

/// A snapshot validated and loaded from its bytes as they arrive.
pub trait SnapshotStream: Send {
    /// The next bytes of file `file_index` (files in manifest order, each
    /// file's bytes in order). A file is checked completely (size, crc32c,
    /// header, records) as soon as its last byte arrived.
    fn piece(&mut self, file_index: u32, bytes: Bytes) -> Result<(), SnapshotRejected>;
    /// Every byte arrived: the rest of the validation (every file complete,
    /// the cluster id, the version count, the state digest) and the store
    /// at the snapshot's cut (REPL-8, F-S4).
    fn finish(self: Box<Self>, expected_cluster: &ClusterId) -> Result<(Store, AppliedState), SnapshotRejected>;
}

impl SnapshotStream for aerodb_snapshot::StreamLoad {
    fn piece(&mut self, file_index: u32, bytes: Bytes) -> Result<(), SnapshotRejected> {
        aerodb_snapshot::StreamLoad::piece(self, file_index as usize, bytes).map_err(|e| SnapshotRejected::from(&e))
    }

    fn finish(self: Box<Self>, expected_cluster: &ClusterId) -> Result<(Store, AppliedState), SnapshotRejected> {
        let (store, manifest) = aerodb_snapshot::StreamLoad::finish(*self, Some(expected_cluster.as_str())).map_err(|e| SnapshotRejected::from(&e))?;
        Ok((store, manifest.cut()))
    }
}

/// [`SnapshotFormat`] over `aerodb-snapshot`'s on-disk format, through a [`Disk`].
pub struct SnapshotFiles {
    disk: Arc<dyn Disk>,
}

impl SnapshotFiles {
    /// The format on `disk`.
    pub fn new(disk: Arc<dyn Disk>) -> Self {
        SnapshotFiles { disk }
    }
}

impl SnapshotFormat for SnapshotFiles {
    fn manifest_files(&self, dir: &Path) -> Result<Vec<(String, u64)>, SnapshotRejected> {
        let manifest = aerodb_snapshot::read_manifest(&*self.disk, dir).map_err(|e| SnapshotRejected::from(&e))?;
        Ok(manifest.files.into_iter().map(|f| (f.name, f.size)).collect())
    }

    fn load(&self, dir: &Path, expected_cluster: &ClusterId) -> Result<(Store, AppliedState), SnapshotRejected> {
        let (store, manifest) = aerodb_snapshot::load_snapshot(&*self.disk, dir, Some(expected_cluster.as_str())).map_err(|e| SnapshotRejected::from(&e))?;
        Ok((store, manifest.cut()))
    }

    fn stream(&self, dir: &Path) -> Result<Box<dyn SnapshotStream>, SnapshotRejected> {
        let manifest = aerodb_snapshot::read_manifest(&*self.disk, dir).map_err(|e| SnapshotRejected::from(&e))?;
        let label = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Box::new(aerodb_snapshot::StreamLoad::new(&label, manifest)))
    }
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

/// Where a replica's WAL stream continues: its validated, durable and
/// applied end, and its last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamStart {
    /// Applied state (= validated = durable end after recovery).
    pub applied: AppliedState,
    /// The last segment's header.
    pub segment: SegmentHeader,
    /// Bytes in the last segment after its header.
    pub segment_len: u64,
}

/// A replica ready to connect: the decisions' inputs ([`ReadyInfo`]) and
/// the storage the runtime executes them with.
pub struct ReadyReplica {
    /// Its metadata and where its stream continues.
    pub info: ReadyInfo,
    /// The store.
    pub store: Arc<Store>,
    /// The WAL appender.
    pub sink: WalSink,
}

/// What the engine needs to know about a ready replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyInfo {
    /// Its metadata.
    pub metadata: ReplicaMetadata,
    /// Where its stream continues.
    pub start: StreamStart,
    /// Recovery report, when this came from recovery (as JSON, for the DX API).
    pub report: Option<serde_json::Value>,
}

fn ready(metadata: ReplicaMetadata, store: Store, appender: SegmentAppender, report: Option<serde_json::Value>) -> ReadyReplica {
    let applied = store.applied();
    let last = appender.segments().snapshot().last().copied();
    let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
    let start = StreamStart {
        applied,
        segment: last.map_or(tip.segment_header(), |s| s.header),
        segment_len: last.map_or(0, |s| s.end_lsn.saturating_sub(s.header.start_lsn)),
    };
    ReadyReplica { info: ReadyInfo { metadata, start, report }, store: Arc::new(store), sink: WalSink::new(appender) }
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
        halt: Box<Halt>,
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

/// Removes everything a bootstrap may have left without committing. Once
/// a bootstrap committed (`replica.json` exists) the installed snapshot and
/// the WAL are the replica's state and stay: only a leftover transfer
/// directory goes. (A runtime may run a discard queued behind a finish
/// that then committed: the engine abandons a transfer whose piece failed
/// while its finish is already queued, and that finish can still validate
/// and commit the complete snapshot.)
pub fn discard_uncommitted(disk: &dyn Disk, paths: &ReplicaPaths) -> std::io::Result<Vec<String>> {
    let mut discarded = Vec::new();
    remove_if_exists(disk, &paths.bootstrap_tmp(), &mut discarded)?;
    if !disk.exists(&paths.metadata()) {
        remove_if_exists(disk, &paths.snapshot(), &mut discarded)?;
        remove_if_exists(disk, &paths.wal, &mut discarded)?;
    }
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
pub fn persist_halt(disk: &dyn Disk, paths: &ReplicaPaths, halt: &Halt) {
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
            check: MetaCheck::DiscardFailed,
            detail: e.to_string(),
        })?;
        return Ok(Recovered::Uninitialised { discarded });
    };
    let mut discarded = Vec::new();
    let _ = remove_if_exists(&*disk, &paths.bootstrap_tmp(), &mut discarded);
    let halt_with = |halt: Halt| {
        persist_halt(&*disk, paths, &halt);
        Ok(Recovered::Halted { halt: Box::new(halt), metadata: Some(metadata.clone()) })
    };
    let (store, snapshot_used) = match metadata.bootstrap.method {
        BootstrapMethod::Wal => (Store::new(), None),
        BootstrapMethod::Snapshot => match format.load(&paths.snapshot(), &metadata.cluster_id) {
            Ok((store, cut)) => {
                let b = metadata.bootstrap;
                if (cut.commit_id, cut.end_lsn, cut.fingerprint) != (b.boundary_commit_id, b.boundary_lsn, b.boundary_fingerprint) {
                    return halt_with(Halt::InstalledSnapshotMismatch { snapshot_cut: cut, recorded_boundary: b });
                }
                (store, Some(cut))
            }
            Err(rejected) => return halt_with(Halt::InstalledSnapshotInvalid { rejected }),
        },
    };
    aerodb_wal::crash_point!("replica.mid_recovery");
    match recover_store(disk.clone(), &paths.wal, &store) {
        Ok((appender, wal)) => {
            if let Some(t) = &wal.wal.torn_tail {
                tracing::warn!(
                    segment = %t.segment,
                    lsn = t.lsn,
                    bytes_dropped = t.bytes_dropped,
                    reason = %t.reason,
                    "dropped an unvalidated torn tail of the replica's own WAL (never acknowledged; it is fetched again from the primary)"
                );
            }
            let report = ReplicaRecoveryReport { bootstrap: metadata.bootstrap, snapshot_used, wal, discarded };
            let report = serde_json::to_value(&report).ok();
            Ok(Recovered::Ready(Box::new(ready(metadata, store, appender, report))))
        }
        Err(e) => halt_with(Halt::LocalWal { failure: LocalWalFailure::from(&e) }),
    }
}

/// Why a bootstrap attempt failed. None of these leaves anything installed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
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

fn metadata_for(method: BootstrapMethod, cut: AppliedState, cluster_id: &ClusterId, replica_id: &ReplicaId) -> ReplicaMetadata {
    ReplicaMetadata {
        format_version: METADATA_FORMAT,
        cluster_id: cluster_id.clone(),
        replica_id: replica_id.clone(),
        bootstrap: BootstrapBoundary {
            method,
            boundary_commit_id: cut.commit_id,
            boundary_lsn: cut.end_lsn,
            boundary_fingerprint: cut.fingerprint,
            boundary_state_digest: cut.state_digest,
        },
    }
}

/// Bootstrap by WAL from genesis: an empty store and an empty WAL at
/// LSN 0, committed by writing the metadata.
pub fn bootstrap_from_genesis(
    disk: Arc<dyn Disk>,
    paths: &ReplicaPaths,
    cluster_id: &ClusterId,
    replica_id: &ReplicaId,
) -> Result<ReadyReplica, BootstrapError> {
    let appender = fresh_wal(disk.clone(), paths, ChainTip::GENESIS)?;
    let metadata = metadata_for(BootstrapMethod::Wal, AppliedState::GENESIS, cluster_id, replica_id);
    write_metadata(&*disk, paths, &metadata).map_err(io)?;
    Ok(ready(metadata, Store::new(), appender, None))
}

/// A snapshot transfer being written into `replica/bootstrap.tmp/` and,
/// at the same time, validated and loaded from the bytes received (its
/// [`SnapshotStream`]): nothing is read back, each file is fsynced once,
/// when its last byte was written. The stream runs inline by default; a
/// runtime may detach it ([`SnapshotTransfer::detach_stream`]) to load on
/// another thread while the transfer goes on, and hand the result to
/// [`SnapshotTransfer::install`].
pub struct SnapshotTransfer {
    disk: Arc<dyn Disk>,
    paths: ReplicaPaths,
    files: Vec<(String, u64)>,
    current: Option<(u32, Box<dyn DiskFile>, u64)>,
    finished_files: u32,
    stream: Option<Box<dyn SnapshotStream>>,
    manifest: Bytes,
    /// With [`SnapshotTransfer::sync_with`]: who makes completed files
    /// durable (the runtime's choice, possibly in the background); waited
    /// for before the snapshot counts as durable.
    syncer: Option<Box<dyn FileSyncer>>,
}

/// Makes completed bootstrap files durable, possibly in the background.
/// A runtime with threads provides one (this crate never spawns a thread);
/// without one, each file is fsynced inline.
pub trait FileSyncer: Send {
    /// Starts making `file` durable; may return before it is.
    fn start(&mut self, file: Box<dyn DiskFile>) -> std::io::Result<()>;
    /// Returns once every file started so far is durable, or the first
    /// failure among them.
    fn wait_all(&mut self) -> std::io::Result<()>;
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
    pub fn begin(disk: Arc<dyn Disk>, paths: &ReplicaPaths, format: &dyn SnapshotFormat, manifest: &Bytes) -> Result<Self, BootstrapError> {
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
            return Err(BootstrapError::Rejected(SnapshotRejected {
                fault: SnapshotFault::Manifest,
                detail: "manifest names a file outside the snapshot directory".into(),
            }));
        }
        let stream = format.stream(&tmp).map_err(BootstrapError::Rejected)?;
        Ok(SnapshotTransfer {
            disk,
            paths: paths.clone(),
            files,
            current: None,
            finished_files: 0,
            stream: Some(stream),
            manifest: manifest.clone(),
            syncer: None,
        })
    }

    /// The manifest bytes this transfer was begun with.
    pub fn manifest(&self) -> &Bytes {
        &self.manifest
    }

    /// Total bytes the manifest promises.
    pub fn bytes_total(&self) -> u64 {
        self.files.iter().fold(0u64, |acc, (_, size)| acc.saturating_add(*size))
    }

    /// Has `syncer` make each completed file durable (e.g. on a thread of
    /// its own, so writing the next file's pieces does not wait for the
    /// disk to flush the previous one). Durability is unchanged:
    /// [`SnapshotTransfer::complete_files`] waits for every file the syncer
    /// was given (and fails if any failed) before it syncs the directory,
    /// and nothing is installed before it. The production runtime opts in;
    /// the simulator keeps every fsync inline (deterministic).
    pub fn sync_with(&mut self, syncer: Box<dyn FileSyncer>) {
        self.syncer = Some(syncer);
    }

    /// Takes the validating load out, to be fed on another thread with the
    /// same bytes in the same order (then finish with [`SnapshotTransfer::install`]).
    pub fn detach_stream(&mut self) -> Option<Box<dyn SnapshotStream>> {
        self.stream.take()
    }

    /// Writes one piece (and feeds the inline stream). Pieces must arrive
    /// in file order and offset order; a file is fsynced when its last
    /// byte was written.
    pub fn piece(&mut self, file_index: u32, offset: u64, bytes: &Bytes) -> Result<(), BootstrapError> {
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
        if offset != *written || written.saturating_add(bytes.len() as u64) > size {
            return Err(BootstrapError::Protocol(format!("piece at {offset} (+{}) does not continue file {name} at {written} of {size}", bytes.len())));
        }
        file.append(bytes).map_err(io)?;
        *written += bytes.len() as u64;
        let complete = *written == size;
        if let Some(stream) = self.stream.as_mut() {
            stream.piece(file_index, bytes.clone()).map_err(BootstrapError::Rejected)?;
        }
        if complete {
            self.close_current()?;
        }
        aerodb_wal::crash_point!("bootstrap.mid_transfer");
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), BootstrapError> {
        if let Some((_, file, _)) = self.current.take() {
            match self.syncer.as_mut() {
                Some(syncer) => syncer.start(file).map_err(io)?,
                None => file.sync_data().map_err(io)?,
            }
            self.finished_files += 1;
        }
        Ok(())
    }

    /// Makes every transferred file durable (each was fsynced when its last
    /// byte was written; zero-length files are created now) and the
    /// directory too. Fails if a file is incomplete.
    pub fn complete_files(&mut self) -> Result<(), BootstrapError> {
        self.close_current()?;
        while (self.finished_files as usize) < self.files.len() {
            let (name, size) = self.files[self.finished_files as usize].clone();
            if size != 0 {
                return Err(BootstrapError::Protocol(format!("transfer ended before file {name} was sent")));
            }
            let f = self.disk.create(&self.paths.bootstrap_tmp().join(&name)).map_err(io)?;
            f.sync_data().map_err(io)?;
            self.finished_files += 1;
        }
        if let Some(syncer) = self.syncer.as_mut() {
            syncer.wait_all().map_err(io)?;
        }
        self.disk.sync_dir(&self.paths.bootstrap_tmp()).map_err(io)?;
        aerodb_wal::crash_point!("bootstrap.before_validate");
        Ok(())
    }

    /// Completes the transfer with the inline stream: every file durable,
    /// the validation finished (F-S4), then [`SnapshotTransfer::install`].
    pub fn finish(mut self, cluster_id: &ClusterId, replica_id: &ReplicaId) -> Result<ReadyReplica, BootstrapError> {
        self.complete_files()?;
        let loaded = match self.stream.take() {
            Some(stream) => stream.finish(cluster_id),
            None => return Err(BootstrapError::Protocol("the snapshot stream was detached".into())),
        };
        self.install(loaded, cluster_id, replica_id)
    }

    /// Installs a validated and loaded snapshot: atomically, then the WAL
    /// at the cut (P5-I9), then the metadata commit. A rejected load (or
    /// any failure) removes the partial snapshot.
    pub fn install(
        self,
        loaded: Result<(Store, AppliedState), SnapshotRejected>,
        cluster_id: &ClusterId,
        replica_id: &ReplicaId,
    ) -> Result<ReadyReplica, BootstrapError> {
        let tmp = self.paths.bootstrap_tmp();
        let (store, cut) = match loaded {
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
        let metadata = metadata_for(BootstrapMethod::Snapshot, cut, cluster_id, replica_id);
        write_metadata(&*self.disk, &self.paths, &metadata).map_err(io)?;
        Ok(ready(metadata, store, appender, None))
    }
}
