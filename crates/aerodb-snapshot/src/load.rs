//! Validating and loading snapshots (REPL-8, F-S4).
//!
//! Validation checks, in this order: the manifest (present, at most 1 MiB,
//! checksum, format version, well-formed, consistent with the directory
//! name), the cluster id, the exact file set (no missing, no extra file),
//! each file's size, and each file's crc32c and header. Loading does the
//! same in one streaming pass per file while decoding the versions into a
//! [`StoreBuilder`], then checks the version count and the state digest of
//! what was loaded against the manifest. Nothing read from disk can panic
//! the process; every failure is a typed [`SnapshotError`].

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::path::Path;

use aerodb_mvcc::store::{LoadError, StoreBuilder, VersionRef};
use aerodb_mvcc::Store;
use aerodb_wal::checksummed::{read_checksummed, ChecksummedFileError};
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::{CommitId, StateDigest};
use bytes::Bytes;

use crate::error::SnapshotError;
use crate::format::{
    data_file_name, decode_version_ref, parse_snapshot_dir_name, DataHeader, DataHeaderError, DecodedRef, Manifest, ManifestFile, DATA_HEADER_LEN,
    MANIFEST_FILE, READABLE_SNAPSHOT_FORMATS, TMP_PREFIX, VERSION_HEADER_LEN,
};

/// Bytes read from a data file at a time.
const READ_CHUNK: usize = 4 * 1024 * 1024;

fn dir_label(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string())
}

/// Reads and checks the manifest of the snapshot in `dir`: present,
/// bounded, checksummed, a format version this build reads, well-formed,
/// and naming the boundary its directory name states.
pub fn read_manifest(disk: &dyn Disk, dir: &Path) -> Result<Manifest, SnapshotError> {
    let snapshot = dir_label(dir);
    let path = dir.join(MANIFEST_FILE);
    if !disk.exists(&path) {
        return Err(SnapshotError::MissingFile { snapshot, file: MANIFEST_FILE.into() });
    }
    let body: serde_json::Value = read_checksummed(disk, &path).map_err(|e| match e {
        ChecksummedFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            SnapshotError::MissingFile { snapshot: snapshot.clone(), file: MANIFEST_FILE.into() }
        }
        ChecksummedFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::InvalidData => {
            SnapshotError::Manifest { snapshot: snapshot.clone(), detail: source.to_string() }
        }
        ChecksummedFileError::Io { source, .. } => SnapshotError::io("read manifest", &path, source),
        other => SnapshotError::Manifest { snapshot: snapshot.clone(), detail: other.to_string() },
    })?;
    let version = body.get("format_version").and_then(serde_json::Value::as_u64);
    if !version.is_some_and(|v| READABLE_SNAPSHOT_FORMATS.iter().any(|r| u64::from(*r) == v)) {
        let shown = body.get("format_version").map_or_else(|| "none".to_string(), ToString::to_string);
        return Err(SnapshotError::Format {
            snapshot,
            file: MANIFEST_FILE.into(),
            detail: format!("manifest format_version {shown}, this build reads {READABLE_SNAPSHOT_FORMATS:?}"),
        });
    }
    // Format 2 states its horizon; format 1 predates garbage collection and
    // must not claim one (it is read as horizon 0).
    let has_horizon = body.get("history_horizon").is_some();
    if has_horizon != (version != Some(1)) {
        let detail = if has_horizon { "a format 1 manifest has no history_horizon" } else { "history_horizon is missing" };
        return Err(SnapshotError::Manifest { snapshot, detail: detail.into() });
    }
    let manifest: Manifest = serde_json::from_value(body).map_err(|e| SnapshotError::Manifest { snapshot: snapshot.clone(), detail: e.to_string() })?;
    check_manifest(&snapshot, &manifest)?;
    Ok(manifest)
}

/// Internal consistency of a manifest.
fn check_manifest(snapshot: &str, m: &Manifest) -> Result<(), SnapshotError> {
    let bad = |detail: String| Err(SnapshotError::Manifest { snapshot: snapshot.to_string(), detail });
    let named = parse_snapshot_dir_name(snapshot).or_else(|| snapshot.strip_prefix(TMP_PREFIX).and_then(parse_snapshot_dir_name));
    if let Some(named) = named {
        if named != m.boundary_commit_id {
            return bad(format!("boundary_commit_id {} but the directory is named for {named}", m.boundary_commit_id));
        }
    }
    if m.files.is_empty() {
        return bad("no data files listed".into());
    }
    for (i, f) in m.files.iter().enumerate() {
        let expected = u32::try_from(i).map(data_file_name).unwrap_or_default();
        if f.name != expected {
            return bad(format!("file #{i} is named {:?}, expected {expected:?}", f.name));
        }
        if f.size < DATA_HEADER_LEN as u64 {
            return bad(format!("{} has size {} (smaller than a header)", f.name, f.size));
        }
    }
    if m.boundary_commit_id == 0 && (m.version_count != 0 || m.boundary_lsn != 0) {
        return bad("a snapshot at CommitId 0 must be empty and start at LSN 0".into());
    }
    if m.history_horizon > 0 && m.history_horizon >= m.boundary_commit_id {
        return bad(format!("history_horizon {} is not below boundary_commit_id {}", m.history_horizon, m.boundary_commit_id));
    }
    Ok(())
}

fn check_cluster(snapshot: &str, m: &Manifest, expected: Option<&str>) -> Result<(), SnapshotError> {
    match expected {
        Some(cluster) if cluster != m.cluster_id => {
            Err(SnapshotError::Cluster { snapshot: snapshot.to_string(), expected: cluster.to_string(), found: m.cluster_id.clone() })
        }
        _ => Ok(()),
    }
}

/// The directory must hold exactly the manifest and the listed files.
fn check_file_set(disk: &dyn Disk, dir: &Path, snapshot: &str, m: &Manifest) -> Result<(), SnapshotError> {
    let present: BTreeSet<String> = disk.list(dir).map_err(|e| SnapshotError::io("list snapshot dir", dir, e))?.into_iter().collect();
    let mut expected: BTreeSet<String> = m.files.iter().map(|f| f.name.clone()).collect();
    expected.insert(MANIFEST_FILE.to_string());
    if let Some(missing) = expected.difference(&present).next() {
        return Err(SnapshotError::MissingFile { snapshot: snapshot.to_string(), file: missing.clone() });
    }
    if let Some(extra) = present.difference(&expected).next() {
        return Err(SnapshotError::ExtraFile { snapshot: snapshot.to_string(), file: extra.clone() });
    }
    Ok(())
}

/// Where the versions a data file holds go while it is streamed: a store
/// being built (load), or only their digest (scrub, CORE-6).
pub(crate) trait VersionSink {
    fn add(&mut self, v: VersionRef<'_>) -> Result<(), String>;
}

impl VersionSink for StoreBuilder {
    fn add(&mut self, v: VersionRef<'_>) -> Result<(), String> {
        StoreBuilder::add_ref(self, v).map_err(|e| e.to_string())
    }
}

/// Checks the version order and sums the state digest without keeping any
/// version: memory stays bounded whatever the snapshot's size.
#[derive(Default)]
struct DigestSink {
    digest: StateDigest,
    /// The previous version's collection, key and CommitId (buffers reused).
    last: Option<(Vec<u8>, Vec<u8>, CommitId)>,
    versions: u64,
}

impl VersionSink for DigestSink {
    fn add(&mut self, v: VersionRef<'_>) -> Result<(), String> {
        if let Some((c, k, id)) = &self.last {
            if (&c[..], &k[..], *id) >= (v.collection, v.key, v.commit_id) {
                return Err(LoadError::OutOfOrder { index: self.versions }.to_string());
            }
        }
        self.digest = self.digest.plus_version(version_hash_parts(v.commit_id, v.collection, v.key, v.doc));
        self.versions += 1;
        let (c, k, id) = self.last.get_or_insert_with(Default::default);
        c.clear();
        c.extend_from_slice(v.collection);
        k.clear();
        k.extend_from_slice(v.key);
        *id = v.commit_id;
        Ok(())
    }
}

/// Verifies the snapshot in `dir` completely — manifest, cluster id (when
/// given), exact file set, every file's size, header, crc32c and records,
/// the version count, and the state digest — by streaming every data file
/// once in bounded chunks, without building a store (scrub, CORE-6).
/// `pace` is called with the byte count of each chunk before it is read,
/// so the caller can bound the IO rate; when it answers `Break` the check
/// ends at once with [`SnapshotError::Cancelled`] (a shutdown must not wait
/// for a whole snapshot to be read, RES-3). Returns the manifest and the
/// bytes read.
pub fn verify_snapshot_streaming(
    disk: &dyn Disk,
    dir: &Path,
    expected_cluster: Option<&str>,
    pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<(Manifest, u64), SnapshotError> {
    let snapshot = dir_label(dir);
    let manifest = read_manifest(disk, dir)?;
    check_cluster(&snapshot, &manifest, expected_cluster)?;
    check_file_set(disk, dir, &snapshot, &manifest)?;
    let mut sink = DigestSink::default();
    let mut bytes = 0u64;
    for (index, f) in manifest.files.iter().enumerate() {
        stream_file(disk, dir, index, f, &manifest, Some(&mut sink), pace)?;
        bytes += f.size;
    }
    if sink.versions != manifest.version_count {
        return Err(SnapshotError::Corrupt {
            snapshot,
            file: MANIFEST_FILE.into(),
            offset: 0,
            detail: format!("manifest says {} versions, the data files hold {}", manifest.version_count, sink.versions),
        });
    }
    if sink.digest != manifest.state_digest {
        return Err(SnapshotError::Digest { snapshot, expected: manifest.state_digest, computed: sink.digest });
    }
    Ok((manifest, bytes))
}

/// Validates the snapshot in `dir` completely except for the state digest
/// (which needs a load): manifest, cluster id (when `expected_cluster` is
/// given), exact file set, every file's size, header and crc32c.
pub fn validate_snapshot(disk: &dyn Disk, dir: &Path, expected_cluster: Option<&str>) -> Result<Manifest, SnapshotError> {
    let snapshot = dir_label(dir);
    let manifest = read_manifest(disk, dir)?;
    check_cluster(&snapshot, &manifest, expected_cluster)?;
    check_file_set(disk, dir, &snapshot, &manifest)?;
    for (index, f) in manifest.files.iter().enumerate() {
        stream_file(disk, dir, index, f, &manifest, None, &mut |_| ControlFlow::Continue(()))?;
    }
    Ok(manifest)
}

/// Validates and loads the snapshot in `dir` into a new [`Store`] at the
/// snapshot's cut. Each file is read once, in bounded chunks; the versions
/// it holds go straight into the store being built. Fails (F-S4) on any
/// check [`validate_snapshot`] makes, on malformed or out-of-order version
/// records, a wrong version count, a version beyond C_snap, or a state
/// digest that differs from the manifest's.
pub fn load_snapshot(disk: &dyn Disk, dir: &Path, expected_cluster: Option<&str>) -> Result<(Store, Manifest), SnapshotError> {
    let snapshot = dir_label(dir);
    let manifest = read_manifest(disk, dir)?;
    check_cluster(&snapshot, &manifest, expected_cluster)?;
    check_file_set(disk, dir, &snapshot, &manifest)?;
    let mut builder = Store::builder();
    let mut count = 0u64;
    for (index, f) in manifest.files.iter().enumerate() {
        count += stream_file(disk, dir, index, f, &manifest, Some(&mut builder), &mut |_| ControlFlow::Continue(()))?;
    }
    finish_load(&snapshot, manifest, builder, count)
}

/// A snapshot validated and loaded from its bytes as they arrive (a
/// replica's bootstrap): the data files in manifest order, each in pieces
/// of any size, each checked and decoded by the same [`FileDecoder`] a load
/// from disk uses, straight into the store being built: nothing is read
/// back. [`StreamLoad::finish`] makes the checks [`load_snapshot`] makes
/// after the files: the cluster id, the version count and the state digest.
pub struct StreamLoad {
    snapshot: String,
    manifest: Manifest,
    builder: StoreBuilder,
    current: Option<FileDecoder>,
    /// Files finished.
    done: usize,
    versions: u64,
}

impl StreamLoad {
    /// A load of the snapshot `manifest` describes (`label`: its name in
    /// errors). The manifest must have been checked ([`read_manifest`]).
    pub fn new(label: &str, manifest: Manifest) -> Self {
        StreamLoad { snapshot: label.to_string(), manifest, builder: Store::builder(), current: None, done: 0, versions: 0 }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where the next byte belongs: (file index, offset in that file).
    pub fn position(&self) -> (usize, u64) {
        (self.done, self.current.as_ref().map_or(0, FileDecoder::received))
    }

    /// Takes the next `bytes` of file `file_index`: files must come in
    /// manifest order and each file's bytes in order. A file is checked
    /// (size, crc32c, header, records) as soon as its last byte arrived.
    pub fn piece(&mut self, file_index: usize, bytes: Bytes) -> Result<(), SnapshotError> {
        if file_index > self.done {
            // The next file started: the current one is shorter than promised.
            if let Some(f) = self.manifest.files.get(self.done) {
                let found = self.current.as_ref().map_or(0, FileDecoder::received);
                return Err(SnapshotError::SizeMismatch { snapshot: self.snapshot.clone(), file: f.name.clone(), expected: f.size, found });
            }
        }
        if file_index != self.done {
            return Err(SnapshotError::Corrupt {
                snapshot: self.snapshot.clone(),
                file: MANIFEST_FILE.into(),
                offset: 0,
                detail: format!("bytes of file #{file_index} arrived while file #{} is expected", self.done),
            });
        }
        let Some(entry) = self.manifest.files.get(file_index) else {
            return Err(SnapshotError::Corrupt {
                snapshot: self.snapshot.clone(),
                file: MANIFEST_FILE.into(),
                offset: 0,
                detail: format!("no file #{file_index}"),
            });
        };
        let decoder = self.current.get_or_insert_with(|| FileDecoder::new(self.snapshot.clone(), file_index, entry, &self.manifest));
        decoder.feed(bytes, Some(&mut self.builder))?;
        if decoder.received() == entry.size {
            self.end_file()?;
        }
        Ok(())
    }

    fn end_file(&mut self) -> Result<(), SnapshotError> {
        if let Some(decoder) = self.current.take() {
            self.versions += decoder.finish()?;
            self.done += 1;
        }
        Ok(())
    }

    /// Every byte arrived: checks that every file is complete, the cluster
    /// id (when given), the version count and the state digest, and returns
    /// the store at the snapshot's cut.
    pub fn finish(mut self, expected_cluster: Option<&str>) -> Result<(Store, Manifest), SnapshotError> {
        check_cluster(&self.snapshot, &self.manifest, expected_cluster)?;
        if let Some(f) = self.manifest.files.get(self.done) {
            let found = self.current.as_ref().map_or(0, FileDecoder::received);
            return Err(SnapshotError::SizeMismatch { snapshot: self.snapshot, file: f.name.clone(), expected: f.size, found });
        }
        self.end_file()?;
        finish_load(&self.snapshot, self.manifest, self.builder, self.versions)
    }
}

/// The checks after every file was loaded: the version count and the state
/// digest (with the horizon's retention rules).
fn finish_load(snapshot: &str, manifest: Manifest, builder: StoreBuilder, count: u64) -> Result<(Store, Manifest), SnapshotError> {
    if count != manifest.version_count {
        return Err(SnapshotError::Corrupt {
            snapshot: snapshot.to_string(),
            file: MANIFEST_FILE.into(),
            offset: 0,
            detail: format!("manifest says {} versions, the data files hold {count}", manifest.version_count),
        });
    }
    let store = builder.finish_at(manifest.cut(), manifest.history_horizon).map_err(|e| match e {
        LoadError::DigestMismatch { expected, computed } => SnapshotError::Digest { snapshot: snapshot.to_string(), expected, computed },
        other => SnapshotError::Corrupt { snapshot: snapshot.to_string(), file: MANIFEST_FILE.into(), offset: 0, detail: other.to_string() },
    })?;
    Ok((store, manifest))
}

/// Reads one data file in chunks, verifying size, header and crc32c, and
/// (with a sink) decoding its versions into it, through the same
/// [`FileDecoder`] a streamed transfer uses. Returns the versions decoded.
fn stream_file(
    disk: &dyn Disk,
    dir: &Path,
    index: usize,
    entry: &ManifestFile,
    manifest: &Manifest,
    mut builder: Option<&mut (dyn VersionSink + 'static)>,
    pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<u64, SnapshotError> {
    let snapshot = dir_label(dir);
    let path = dir.join(&entry.name);
    let file = disk.open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SnapshotError::MissingFile { snapshot: snapshot.clone(), file: entry.name.clone() },
        _ => SnapshotError::io("open data file", &path, e),
    })?;
    let len = file.len().map_err(|e| SnapshotError::io("stat data file", &path, e))?;
    if len != entry.size {
        return Err(SnapshotError::SizeMismatch { snapshot, file: entry.name.clone(), expected: entry.size, found: len });
    }
    let mut decoder = FileDecoder::new(snapshot, index, entry, manifest);
    let mut read_pos = 0u64;
    while read_pos < len {
        let want = if read_pos == 0 { DATA_HEADER_LEN } else { READ_CHUNK.max(decoder.needed()) };
        let n = usize::try_from(len - read_pos).map_or(want, |r| r.min(want));
        if pace(n as u64).is_break() {
            return Err(SnapshotError::Cancelled);
        }
        let mut buf = vec![0u8; n];
        read_at(&*file, &path, &mut buf, read_pos)?;
        read_pos += n as u64;
        decoder.feed(Bytes::from(buf), builder.as_deref_mut())?;
    }
    decoder.finish()
}

/// One data file checked and decoded from its bytes as they arrive, in
/// order, in pieces of any size (a disk read or a received transfer
/// chunk): size, header, crc32c and version records. Structural problems
/// are held back until the whole file was checksummed, so a flipped byte
/// is reported as the checksum failure it is. Without a sink only the
/// checksum and header are checked.
pub(crate) struct FileDecoder {
    snapshot: String,
    name: String,
    index: usize,
    size: u64,
    expected_crc: u32,
    boundary: CommitId,
    format_version: u32,
    /// Bytes of the header received so far (until it is complete).
    header: Vec<u8>,
    received: u64,
    crc: u32,
    /// Unparsed bytes (the start of a record cut by a piece boundary) and
    /// the file offset of their first byte.
    pending: Bytes,
    pending_at: u64,
    /// Bytes the pending record needs in total (0: unknown).
    need: usize,
    deferred: Option<SnapshotError>,
    versions: u64,
    parsed: bool,
}

impl FileDecoder {
    /// A decoder for file `index` (`entry`) of `manifest`.
    pub(crate) fn new(snapshot: String, index: usize, entry: &ManifestFile, manifest: &Manifest) -> Self {
        FileDecoder {
            snapshot,
            name: entry.name.clone(),
            index,
            size: entry.size,
            expected_crc: entry.crc32c,
            boundary: manifest.boundary_commit_id,
            format_version: manifest.format_version,
            header: Vec::with_capacity(DATA_HEADER_LEN),
            received: 0,
            crc: 0,
            pending: Bytes::new(),
            pending_at: DATA_HEADER_LEN as u64,
            need: 0,
            deferred: None,
            versions: 0,
            parsed: false,
        }
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Bytes the record cut by the last piece needs in total (a reader's
    /// next read should be at least this long).
    pub(crate) fn needed(&self) -> usize {
        self.need.saturating_sub(self.pending.len())
    }

    fn corrupt(&self, offset: u64, detail: String) -> SnapshotError {
        SnapshotError::Corrupt { snapshot: self.snapshot.clone(), file: self.name.clone(), offset, detail }
    }

    /// Takes the next bytes of the file. Errors only for bytes beyond the
    /// size the manifest states; everything else is reported by
    /// [`FileDecoder::finish`].
    pub(crate) fn feed(&mut self, mut bytes: Bytes, sink: Option<&mut (dyn VersionSink + 'static)>) -> Result<(), SnapshotError> {
        if self.received.saturating_add(bytes.len() as u64) > self.size {
            return Err(SnapshotError::SizeMismatch {
                snapshot: self.snapshot.clone(),
                file: self.name.clone(),
                expected: self.size,
                found: self.received.saturating_add(bytes.len() as u64),
            });
        }
        self.received += bytes.len() as u64;
        self.parsed |= sink.is_some();
        if self.header.len() < DATA_HEADER_LEN {
            let take = (DATA_HEADER_LEN - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = bytes.slice(take..);
            if self.header.len() < DATA_HEADER_LEN {
                return Ok(());
            }
            self.crc = crc32c::crc32c(&self.header);
            self.deferred = self.check_header();
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.crc = crc32c::crc32c_append(self.crc, &bytes);
        let Some(sink) = sink.filter(|_| self.deferred.is_none()) else {
            self.pending = Bytes::new();
            return Ok(());
        };
        // Complete a record cut by the previous piece: copy only its rest.
        if !self.pending.is_empty() {
            let mut joined = Vec::with_capacity(self.need.max(self.pending.len() + VERSION_HEADER_LEN));
            joined.extend_from_slice(&self.pending);
            loop {
                let want = self.need.max(VERSION_HEADER_LEN);
                let take = want.saturating_sub(joined.len()).min(bytes.len());
                joined.extend_from_slice(&bytes[..take]);
                bytes = bytes.slice(take..);
                let chunk = Bytes::from(std::mem::take(&mut joined));
                match self.decode_at(&chunk, sink) {
                    Some(0) if bytes.is_empty() => {
                        self.pending = chunk;
                        return Ok(());
                    }
                    Some(0) => joined = chunk.to_vec(),
                    Some(used) => {
                        // A record shorter than the header size completed with
                        // bytes it did not need: give them back.
                        let extra = chunk.len() - used;
                        if extra > 0 {
                            let mut rest = chunk.slice(used..).to_vec();
                            rest.extend_from_slice(&bytes);
                            bytes = Bytes::from(rest);
                        }
                        self.pending = Bytes::new();
                        self.need = 0;
                        break;
                    }
                    None => return Ok(()),
                }
            }
        }
        let mut at = 0usize;
        while at < bytes.len() {
            match self.decode_at(&bytes[at..], sink) {
                Some(0) => {
                    self.pending = bytes.slice(at..);
                    return Ok(());
                }
                Some(used) => at += used,
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// Decodes one record at the start of `chunk` (whose first byte is at
    /// `pending_at`): `Some(len)` when one was added, `Some(0)` when the
    /// record is incomplete (`need` set), `None` after a deferred error.
    fn decode_at(&mut self, chunk: &[u8], sink: &mut dyn VersionSink) -> Option<usize> {
        match decode_version_ref(chunk) {
            Ok(DecodedRef::Version(v, rec_len)) => {
                let offset = self.pending_at;
                if v.commit_id > self.boundary {
                    self.deferred = Some(self.corrupt(offset, format!("version with CommitId {} beyond the boundary {}", v.commit_id, self.boundary)));
                    return None;
                }
                if let Err(e) = sink.add(v) {
                    self.deferred = Some(self.corrupt(offset, e));
                    return None;
                }
                self.versions += 1;
                self.pending_at += rec_len as u64;
                Some(rec_len)
            }
            Ok(DecodedRef::Incomplete(needed)) => {
                self.need = needed;
                Some(0)
            }
            Err(detail) => {
                self.deferred = Some(self.corrupt(self.pending_at, detail.to_string()));
                None
            }
        }
    }

    fn check_header(&self) -> Option<SnapshotError> {
        let (boundary, index) = (self.boundary, self.index);
        match DataHeader::decode(&self.header) {
            Ok(h) if h.boundary_commit_id != boundary || h.file_index as usize != index => {
                Some(self.corrupt(0, format!("header belongs to snapshot {} file #{}, expected {boundary} #{index}", h.boundary_commit_id, h.file_index)))
            }
            Ok(h) if h.format_version != self.format_version => Some(SnapshotError::Format {
                snapshot: self.snapshot.clone(),
                file: self.name.clone(),
                detail: format!("data file format version {} in a format {} snapshot", h.format_version, self.format_version),
            }),
            Ok(_) => None,
            Err(DataHeaderError::Format(detail)) => Some(SnapshotError::Format { snapshot: self.snapshot.clone(), file: self.name.clone(), detail }),
            Err(DataHeaderError::Checksum) => Some(self.corrupt(0, "header crc32c mismatch".into())),
            Err(DataHeaderError::Truncated) => Some(self.corrupt(0, "header truncated".into())),
        }
    }

    /// The whole file arrived: its size, crc32c, header and records are
    /// checked (in that order of precedence). Returns the versions decoded.
    pub(crate) fn finish(self) -> Result<u64, SnapshotError> {
        if self.received != self.size {
            return Err(SnapshotError::SizeMismatch { snapshot: self.snapshot, file: self.name, expected: self.size, found: self.received });
        }
        if self.crc != self.expected_crc {
            return Err(SnapshotError::Checksum { snapshot: self.snapshot, file: self.name, expected: self.expected_crc, computed: self.crc });
        }
        let mut deferred = self.deferred;
        if deferred.is_none() && self.header.len() < DATA_HEADER_LEN {
            deferred = Some(SnapshotError::Corrupt { snapshot: self.snapshot.clone(), file: self.name.clone(), offset: 0, detail: "header truncated".into() });
        }
        if deferred.is_none() && self.parsed && !self.pending.is_empty() {
            deferred = Some(SnapshotError::Corrupt {
                snapshot: self.snapshot.clone(),
                file: self.name.clone(),
                offset: self.pending_at,
                detail: format!("file ends inside a record ({} trailing bytes)", self.pending.len()),
            });
        }
        match deferred {
            Some(e) => Err(e),
            None => Ok(self.versions),
        }
    }
}

fn read_at(file: &dyn DiskFile, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), SnapshotError> {
    file.read_exact_at(buf, offset).map_err(|e| SnapshotError::io("read data file", path, e))
}
