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
use std::sync::Mutex;

use aerodb_mvcc::store::OwnedVersion;
use aerodb_mvcc::{CutPin, Store};
use aerodb_wal::checksummed::write_checksummed;
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::{CommitId, Fingerprint, Lsn, StateDigest};
use bytes::Bytes;
use serde::Serialize;

use crate::error::SnapshotError;
use crate::format::{
    data_file_name, encode_version, snapshot_dir_name, tmp_dir_name, version_record_len, DataHeader, Manifest, ManifestFile, DATA_HEADER_LEN,
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
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions { file_target_bytes: DEFAULT_FILE_TARGET_BYTES, batch_keys: 1024 }
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
/// directory durable.
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
    let mut files = DataFilesWriter::new(disk, tmp_dir, cut.commit_id, options.file_target_bytes)?;
    let mut digest = StateDigest::EMPTY;
    let mut count = 0u64;
    let mut after: Option<(Bytes, Bytes)> = None;
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(SnapshotError::Cancelled);
        }
        let (batch, next) = store.versions_of_cut(pin, after.as_ref(), options.batch_keys.max(1));
        for v in &batch {
            digest = digest.plus_version(version_hash_parts(v.commit_id, &v.collection, &v.key, v.doc.as_deref()));
            files.add(v)?;
            count += 1;
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    // Assert what must hold: the versions streamed are exactly the cut.
    if digest != cut.state_digest {
        return Err(SnapshotError::Digest { snapshot: tmp_dir_name(cut.commit_id), expected: cut.state_digest, computed: digest });
    }
    let file_list = files.finish()?;
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

/// Appends version records into size-bounded data files.
struct DataFilesWriter<'a> {
    disk: &'a dyn Disk,
    dir: &'a Path,
    boundary: CommitId,
    target: u64,
    done: Vec<ManifestFile>,
    current: Option<OpenDataFile>,
}

struct OpenDataFile {
    name: String,
    file: Box<dyn DiskFile>,
    size: u64,
    crc: u32,
    buf: Vec<u8>,
}

const WRITE_BUFFER: usize = 1024 * 1024;

impl<'a> DataFilesWriter<'a> {
    fn new(disk: &'a dyn Disk, dir: &'a Path, boundary: CommitId, target: u64) -> Result<Self, SnapshotError> {
        let mut w = DataFilesWriter { disk, dir, boundary, target, done: Vec::new(), current: None };
        w.open_next()?;
        Ok(w)
    }

    fn open_next(&mut self) -> Result<(), SnapshotError> {
        let index = u32::try_from(self.done.len()).map_err(|_| SnapshotError::Unencodable { detail: "too many data files".into() })?;
        let name = data_file_name(index);
        let path = self.dir.join(&name);
        let file = self.disk.create(&path).map_err(|e| SnapshotError::io("create data file", &path, e))?;
        let header = DataHeader { format_version: SNAPSHOT_FORMAT_VERSION, boundary_commit_id: self.boundary, file_index: index }.encode();
        let mut buf = Vec::with_capacity(WRITE_BUFFER);
        buf.extend_from_slice(&header);
        self.current = Some(OpenDataFile { name, file, size: DATA_HEADER_LEN as u64, crc: crc32c::crc32c(&header), buf });
        Ok(())
    }

    fn add(&mut self, v: &OwnedVersion) -> Result<(), SnapshotError> {
        let len = version_record_len(v) as u64;
        let full = self.current.as_ref().is_some_and(|c| c.size > DATA_HEADER_LEN as u64 && c.size + len > self.target);
        if full {
            self.close_current()?;
            self.open_next()?;
        }
        let Some(cur) = self.current.as_mut() else {
            return Err(SnapshotError::Unencodable { detail: "no open data file".into() });
        };
        let start = cur.buf.len();
        encode_version(&mut cur.buf, v).map_err(|detail| SnapshotError::Unencodable { detail })?;
        cur.crc = crc32c::crc32c_append(cur.crc, &cur.buf[start..]);
        cur.size += len;
        if cur.buf.len() >= WRITE_BUFFER {
            flush(self.dir, cur)?;
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), SnapshotError> {
        if let Some(mut cur) = self.current.take() {
            flush(self.dir, &mut cur)?;
            let path = self.dir.join(&cur.name);
            cur.file.sync_data().map_err(|e| SnapshotError::io("fsync data file", &path, e))?;
            self.done.push(ManifestFile { name: cur.name, size: cur.size, crc32c: cur.crc });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<ManifestFile>, SnapshotError> {
        self.close_current()?;
        Ok(self.done)
    }
}

fn flush(dir: &Path, cur: &mut OpenDataFile) -> Result<(), SnapshotError> {
    if !cur.buf.is_empty() {
        cur.file.append(&cur.buf).map_err(|e| SnapshotError::io("write data file", &dir.join(&cur.name), e))?;
        cur.buf.clear();
    }
    Ok(())
}
