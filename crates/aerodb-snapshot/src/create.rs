//! Writing a snapshot of the store's current applied state (§7).
//!
//! The cut is the store's applied state and history horizon when creation
//! starts, pinned together ([`Store::pin_cut`]): versions at or below the
//! cut are immutable and, while the pin is held, none retained at the
//! pinned horizon is purged by a GC record applied meanwhile (MVCC-5). So
//! they are streamed in batches (each batch takes the store's read lock
//! briefly) while commits and GC continue, and the snapshot holds exactly
//! the versions retained at its horizon (MVCC-4). Everything is written
//! into `snapshots/.tmp-<C_snap>/`, fsynced (files, then the directory),
//! and only then renamed to `snapshots/<C_snap>/` (REPL-9): a crash at any
//! point leaves either no snapshot or a complete one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use aerodb_mvcc::store::VersionRef;
use aerodb_mvcc::{CutPin, Store};
use aerodb_wal::checksummed::write_checksummed;
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::{CommitId, Fingerprint, Lsn, StateDigest};
use bytes::Bytes;
use serde::Serialize;

use crate::error::SnapshotError;
use crate::format::{
    data_file_name, encode_version_ref, record_len_of, snapshot_dir_name, tmp_dir_name, DataHeader, Manifest, ManifestFile, DATA_HEADER_LEN,
    DEFAULT_FILE_TARGET_BYTES, MANIFEST_FILE, SNAPSHOT_FORMAT_VERSION,
};
use crate::load::read_manifest;

/// Tunables of snapshot creation. They change how the cut is split into
/// files, never what it contains; the defaults are what the node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// A data file is closed before a record would take it past this size
    /// (a single larger record gets a file of its own size).
    pub file_target_bytes: u64,
    /// Keys read from the store per batch (one short read-lock each).
    pub batch_keys: usize,
    /// Fsync each complete data file on a thread of its own while the next
    /// one is written (every fsync still completes before the manifest is
    /// written). The node does; the simulator does not, so that its disk
    /// sees every operation in one deterministic order.
    pub fsync_in_background: bool,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions { file_target_bytes: DEFAULT_FILE_TARGET_BYTES, batch_keys: 1024, fsync_in_background: true }
    }
}

/// A published snapshot, as its manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Directory name (`C_snap` as 20 digits).
    pub name: String,
    /// Directory path.
    #[serde(skip)]
    pub path: PathBuf,
    /// C_snap.
    pub commit_id: CommitId,
    /// L_snap.
    pub lsn: Lsn,
    /// F_snap.
    pub fingerprint: Fingerprint,
    /// State digest at C_snap.
    pub state_digest: StateDigest,
    /// History horizon at C_snap.
    pub history_horizon: CommitId,
    /// Number of versions held.
    pub version_count: u64,
    /// Number of data files.
    pub files: usize,
    /// Total size of the data files in bytes.
    pub data_bytes: u64,
    /// False when the snapshot already existed and creation was a no-op.
    pub created: bool,
}

impl SnapshotInfo {
    /// Describes the snapshot in `path` from its manifest.
    pub fn from_manifest(path: &Path, manifest: &Manifest, created: bool) -> SnapshotInfo {
        SnapshotInfo {
            name: snapshot_dir_name(manifest.boundary_commit_id),
            path: path.to_path_buf(),
            commit_id: manifest.boundary_commit_id,
            lsn: manifest.boundary_lsn,
            fingerprint: manifest.boundary_fingerprint,
            state_digest: manifest.state_digest,
            history_horizon: manifest.history_horizon,
            version_count: manifest.version_count,
            files: manifest.files.len(),
            data_bytes: manifest.data_bytes(),
            created,
        }
    }
}

/// Serializes snapshot creation within the process.
static CREATE_LOCK: Mutex<()> = Mutex::new(());

/// Creates a snapshot of `store` at its current applied state in
/// `snapshots_dir` with the default [`SnapshotOptions`]. A snapshot at the
/// same boundary that already exists is returned as it is.
pub fn create_snapshot(disk: &dyn Disk, snapshots_dir: &Path, store: &Store, cluster_id: &str) -> Result<SnapshotInfo, SnapshotError> {
    create_snapshot_with(disk, snapshots_dir, store, cluster_id, &SnapshotOptions::default(), None)
}

/// [`create_snapshot`] with explicit options and an optional cancel flag
/// (checked between batches; a cancelled creation publishes nothing).
pub fn create_snapshot_with(
    disk: &dyn Disk,
    snapshots_dir: &Path,
    store: &Store,
    cluster_id: &str,
    options: &SnapshotOptions,
    cancel: Option<&AtomicBool>,
) -> Result<SnapshotInfo, SnapshotError> {
    // One creation at a time in this process: two creators of the same
    // boundary would otherwise share one temporary directory.
    let _one_at_a_time = CREATE_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let pin = store.pin_cut();
    let cut = pin.cut();
    ensure_dir(disk, snapshots_dir)?;
    let final_dir = snapshots_dir.join(snapshot_dir_name(cut.commit_id));
    if disk.exists(&final_dir) {
        let manifest = read_manifest(disk, &final_dir)?;
        tracing::debug!(commit_id = cut.commit_id, "snapshot already exists");
        return Ok(SnapshotInfo::from_manifest(&final_dir, &manifest, false));
    }
    let tmp_dir = snapshots_dir.join(tmp_dir_name(cut.commit_id));
    if disk.exists(&tmp_dir) {
        disk.remove_dir_all(&tmp_dir).map_err(|e| SnapshotError::io("remove stale temporary snapshot", &tmp_dir, e))?;
    }
    disk.create_dir_all(&tmp_dir).map_err(|e| SnapshotError::io("create temporary snapshot dir", &tmp_dir, e))?;
    match write_contents(disk, &tmp_dir, store, &pin, cluster_id, options, cancel) {
        Ok(manifest) => {
            aerodb_wal::crash_point!("snapshot.before_rename");
            disk.rename(&tmp_dir, &final_dir).map_err(|e| SnapshotError::io("publish snapshot", &final_dir, e))?;
            disk.sync_dir(snapshots_dir).map_err(|e| SnapshotError::io("sync snapshots dir", snapshots_dir, e))?;
            let info = SnapshotInfo::from_manifest(&final_dir, &manifest, true);
            tracing::info!(
                commit_id = info.commit_id,
                lsn = info.lsn,
                state_digest = %info.state_digest,
                versions = info.version_count,
                data_bytes = info.data_bytes,
                files = info.files,
                "snapshot created"
            );
            Ok(info)
        }
        Err(e) => {
            if let Err(rm) = disk.remove_dir_all(&tmp_dir) {
                tracing::warn!(dir = %tmp_dir.display(), error = %rm, "cannot remove an abandoned temporary snapshot; startup will remove it");
            }
            Err(e)
        }
    }
}

/// Creates `dir` if needed and makes its entry in the parent durable. The
/// parent is synced even when `dir` already exists: an earlier attempt may
/// have created it and then failed to sync (found by the simulator), and a
/// snapshot that WAL retention relies on must not sit in a directory that
/// a power loss can take away.
fn ensure_dir(disk: &dyn Disk, dir: &Path) -> Result<(), SnapshotError> {
    if !disk.exists(dir) {
        disk.create_dir_all(dir).map_err(|e| SnapshotError::io("create snapshots dir", dir, e))?;
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        disk.sync_dir(parent).map_err(|e| SnapshotError::io("sync data dir", parent, e))?;
    }
    Ok(())
}

/// Writes data files and the manifest into `tmp_dir` and makes them and the
/// directory durable. The versions are encoded on this thread while a
/// writer thread checksums, appends and fsyncs what was encoded (each file
/// once, when it is complete), so encoding overlaps the disk.
fn write_contents(
    disk: &dyn Disk,
    tmp_dir: &Path,
    store: &Store,
    pin: &CutPin<'_>,
    cluster_id: &str,
    options: &SnapshotOptions,
    cancel: Option<&AtomicBool>,
) -> Result<Manifest, SnapshotError> {
    let cut = pin.cut();
    let ((digest, count), file_list) = std::thread::scope(|scope| -> Result<((StateDigest, u64), Vec<ManifestFile>), SnapshotError> {
        let (jobs, job_rx) = mpsc::sync_channel::<WriteJob>(WRITE_QUEUE);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let writer = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn_scoped(scope, move || write_files(disk, tmp_dir, &job_rx, &free_tx, options.fsync_in_background))
            .map_err(|e| SnapshotError::io("start the snapshot writer thread", tmp_dir, e))?;
        let mut files = DataFilesEncoder::new(jobs, free_rx, cut.commit_id, options.file_target_bytes);
        let encoded = encode_cut(&mut files, store, pin, options, cancel).and_then(|done| files.finish().map(|()| done));
        drop(files);
        let written =
            writer.join().unwrap_or_else(|_| Err(SnapshotError::io("write data files", tmp_dir, std::io::Error::other("the snapshot writer thread panicked"))));
        // A write failure stops the encoder too: report the cause.
        match (encoded, written) {
            (Ok(done), Ok(files)) => Ok((done, files)),
            (_, Err(e)) | (Err(e), Ok(_)) => Err(e),
        }
    })?;
    // Assert what must hold: the versions streamed are exactly the cut.
    if digest != cut.state_digest {
        return Err(SnapshotError::Digest { snapshot: tmp_dir_name(cut.commit_id), expected: cut.state_digest, computed: digest });
    }
    aerodb_wal::crash_point!("snapshot.after_data_files");
    let manifest = Manifest {
        format_version: SNAPSHOT_FORMAT_VERSION,
        cluster_id: cluster_id.to_string(),
        boundary_commit_id: cut.commit_id,
        boundary_lsn: cut.end_lsn,
        boundary_fingerprint: cut.fingerprint,
        state_digest: cut.state_digest,
        history_horizon: pin.horizon(),
        version_count: count,
        files: file_list,
    };
    let manifest_path = tmp_dir.join(MANIFEST_FILE);
    write_checksummed(disk, &manifest_path, &manifest).map_err(|e| SnapshotError::io("write manifest", &manifest_path, e))?;
    disk.sync_dir(tmp_dir).map_err(|e| SnapshotError::io("sync snapshot dir", tmp_dir, e))?;
    Ok(manifest)
}

/// Streams the versions of the cut in batches into `files`, summing their
/// state digest. Each batch is encoded in place from the store, under its
/// read lock (no copy of a version first); what the batch gives the writer
/// thread is handed over after the lock is released, so a slow disk never
/// holds up the store. Returns the digest and the number of versions.
fn encode_cut(
    files: &mut DataFilesEncoder,
    store: &Store,
    pin: &CutPin<'_>,
    options: &SnapshotOptions,
    cancel: Option<&AtomicBool>,
) -> Result<(StateDigest, u64), SnapshotError> {
    let mut digest = StateDigest::EMPTY;
    let mut count = 0u64;
    let mut after: Option<(Bytes, Bytes)> = None;
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(SnapshotError::Cancelled);
        }
        let mut failed = None;
        let next = store.visit_cut(pin, after.as_ref(), options.batch_keys.max(1), &mut |v| {
            if failed.is_some() {
                return;
            }
            digest = digest.plus_version(version_hash_parts(v.commit_id, v.collection, v.key, v.doc));
            match files.add(&v) {
                Ok(()) => count += 1,
                Err(e) => failed = Some(e),
            }
        });
        files.send_queued()?;
        if let Some(e) = failed {
            return Err(e);
        }
        match next {
            Some(n) => after = Some(n),
            None => return Ok((digest, count)),
        }
    }
}

/// Encoded bytes queued for the writer thread (about 8 MiB).
const WRITE_QUEUE: usize = 8;

/// Size of one buffer handed to the writer thread.
const WRITE_BUFFER: usize = 1024 * 1024;

/// What the encoder hands the writer thread, in file order.
enum WriteJob {
    /// Create data file number `index`.
    Open(u32),
    /// The next bytes of the open file.
    Data(Vec<u8>),
    /// The open file is complete: fsync it.
    Close,
}

/// Encodes version records into size-bounded data files: the file layout
/// is decided here; the bytes go to the writer thread.
struct DataFilesEncoder {
    jobs: mpsc::SyncSender<WriteJob>,
    /// Buffers the writer thread has emptied, for reuse.
    free: mpsc::Receiver<Vec<u8>>,
    boundary: CommitId,
    target: u64,
    files: u32,
    /// The open file's size so far and its bytes not yet handed over.
    current: Option<(u64, Vec<u8>)>,
    /// Jobs decided but not yet handed over ([`DataFilesEncoder::send_queued`]).
    queued: Vec<WriteJob>,
}

impl DataFilesEncoder {
    fn new(jobs: mpsc::SyncSender<WriteJob>, free: mpsc::Receiver<Vec<u8>>, boundary: CommitId, target: u64) -> Self {
        DataFilesEncoder { jobs, free, boundary, target, files: 0, current: None, queued: Vec::new() }
    }

    /// Queues a job for the writer thread (never blocks: encoding runs
    /// under the store's read lock).
    fn send(&mut self, job: WriteJob) {
        self.queued.push(job);
    }

    /// Hands the queued jobs over (waits while the writer is behind);
    /// fails only when the writer thread stopped (its error is the one
    /// reported).
    fn send_queued(&mut self) -> Result<(), SnapshotError> {
        for job in self.queued.drain(..) {
            self.jobs.send(job).map_err(|_| SnapshotError::Io {
                op: "write data files",
                path: String::new(),
                source: std::io::Error::other("the snapshot writer stopped"),
            })?;
        }
        Ok(())
    }

    fn buffer(&self) -> Vec<u8> {
        self.free.try_recv().unwrap_or_else(|_| Vec::with_capacity(WRITE_BUFFER + WRITE_BUFFER / 4))
    }

    fn open_next(&mut self) -> Result<(), SnapshotError> {
        let index = self.files;
        self.files = index.checked_add(1).ok_or_else(|| SnapshotError::Unencodable { detail: "too many data files".into() })?;
        self.send(WriteJob::Open(index));
        let header = DataHeader { format_version: SNAPSHOT_FORMAT_VERSION, boundary_commit_id: self.boundary, file_index: index }.encode();
        let mut buf = self.buffer();
        buf.extend_from_slice(&header);
        self.current = Some((DATA_HEADER_LEN as u64, buf));
        Ok(())
    }

    fn add(&mut self, v: &VersionRef<'_>) -> Result<(), SnapshotError> {
        let len = record_len_of(v) as u64;
        let full = self.current.as_ref().is_some_and(|(size, _)| *size > DATA_HEADER_LEN as u64 && size + len > self.target);
        if full || self.current.is_none() {
            self.close_current()?;
            self.open_next()?;
        }
        let Some((size, buf)) = self.current.as_mut() else {
            return Err(SnapshotError::Unencodable { detail: "no open data file".into() });
        };
        encode_version_ref(buf, v).map_err(|detail| SnapshotError::Unencodable { detail })?;
        *size += len;
        if buf.len() >= WRITE_BUFFER {
            let next = self.buffer();
            if let Some((_, buf)) = self.current.as_mut() {
                let full = std::mem::replace(buf, next);
                self.send(WriteJob::Data(full));
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), SnapshotError> {
        if let Some((_, buf)) = self.current.take() {
            self.send(WriteJob::Data(buf));
            self.send(WriteJob::Close);
        }
        Ok(())
    }

    /// Closes the last file (a cut with no versions still gets one, holding
    /// only its header).
    fn finish(&mut self) -> Result<(), SnapshotError> {
        if self.files == 0 {
            self.open_next()?;
        }
        self.close_current()?;
        self.send_queued()
    }
}

/// The writer thread: creates each data file, checksums and appends the
/// bytes it is handed, and fsyncs each file once, when it is complete.
/// Returns the files closed, in order. Stops at the first failure (the
/// encoder then stops too) or when the encoder is done or gave up.
fn write_files(
    disk: &dyn Disk,
    dir: &Path,
    jobs: &mpsc::Receiver<WriteJob>,
    free: &mpsc::Sender<Vec<u8>>,
    background: bool,
) -> Result<Vec<ManifestFile>, SnapshotError> {
    if !background {
        return write_files_syncing(disk, dir, jobs, free, &mut |name, file| {
            file.sync_data().map_err(|e| SnapshotError::io("fsync data file", &dir.join(name), e))
        });
    }
    std::thread::scope(|scope| {
        let join = |sync: std::thread::ScopedJoinHandle<'_, Result<(), SnapshotError>>| {
            sync.join().unwrap_or_else(|_| Err(SnapshotError::io("fsync data file", dir, std::io::Error::other("the fsync thread panicked"))))
        };
        let mut syncing = std::collections::VecDeque::new();
        let written = write_files_syncing(disk, dir, jobs, free, &mut |name, file| {
            // Each complete file is fsynced on a thread of its own while the
            // next one is written; every fsync is joined, at the latest
            // below, before the files are reported (and so before the
            // manifest is written). At most MAX_FSYNCS_IN_FLIGHT run at
            // once: beyond it the writer waits for the oldest, so a slow
            // disk slows creation down instead of piling up threads.
            while syncing.len() >= MAX_FSYNCS_IN_FLIGHT || syncing.front().is_some_and(|s: &std::thread::ScopedJoinHandle<'_, _>| s.is_finished()) {
                if let Some(oldest) = syncing.pop_front() {
                    join(oldest)?;
                }
            }
            let path = dir.join(name);
            let sync = std::thread::Builder::new()
                .name("snapshot-fsync".into())
                .spawn_scoped(scope, move || file.sync_data().map_err(|e| SnapshotError::io("fsync data file", &path, e)))
                .map_err(|e| SnapshotError::io("start a snapshot fsync thread", &dir.join(name), e))?;
            syncing.push_back(sync);
            Ok(())
        });
        let mut synced = Ok(());
        for sync in syncing {
            let outcome = join(sync);
            if synced.is_ok() {
                synced = outcome;
            }
        }
        let files = written?;
        synced.map(|()| files)
    })
}

/// Most data-file fsyncs in flight at once while a snapshot is created.
pub const MAX_FSYNCS_IN_FLIGHT: usize = 4;

/// Starts making a complete data file (its name, the open file) durable.
type CloseFile<'a> = dyn FnMut(&str, Box<dyn DiskFile>) -> Result<(), SnapshotError> + 'a;

/// [`write_files`]' loop: `close` starts making each complete file
/// durable.
fn write_files_syncing(
    disk: &dyn Disk,
    dir: &Path,
    jobs: &mpsc::Receiver<WriteJob>,
    free: &mpsc::Sender<Vec<u8>>,
    close: &mut CloseFile<'_>,
) -> Result<Vec<ManifestFile>, SnapshotError> {
    let mut done = Vec::new();
    let mut open: Option<(String, Box<dyn DiskFile>, u64, u32)> = None;
    while let Ok(job) = jobs.recv() {
        match job {
            WriteJob::Open(index) => {
                let name = data_file_name(index);
                let path = dir.join(&name);
                let file = disk.create(&path).map_err(|e| SnapshotError::io("create data file", &path, e))?;
                open = Some((name, file, 0, 0));
            }
            WriteJob::Data(mut buf) => {
                let Some((name, file, size, crc)) = open.as_mut() else {
                    return Err(SnapshotError::Unencodable { detail: "data for no open data file".into() });
                };
                if !buf.is_empty() {
                    *crc = crc32c::crc32c_append(*crc, &buf);
                    *size += buf.len() as u64;
                    file.append(&buf).map_err(|e| SnapshotError::io("write data file", &dir.join(&*name), e))?;
                }
                buf.clear();
                let _ = free.send(buf);
            }
            WriteJob::Close => {
                if let Some((name, file, size, crc)) = open.take() {
                    close(&name, file)?;
                    done.push(ManifestFile { name, size, crc32c: crc });
                }
            }
        }
    }
    Ok(done)
}
