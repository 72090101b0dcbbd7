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
use std::path::Path;

use aerodb_mvcc::store::{LoadError, OwnedVersion, StoreBuilder};
use aerodb_mvcc::Store;
use aerodb_wal::checksummed::{read_checksummed, ChecksummedFileError};
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::{CommitId, StateDigest};
use bytes::Bytes;

use crate::error::SnapshotError;
use crate::format::{
    data_file_name, decode_version, parse_snapshot_dir_name, DataHeader, DataHeaderError, Decoded, Manifest, ManifestFile, DATA_HEADER_LEN, MANIFEST_FILE,
    READABLE_SNAPSHOT_FORMATS, TMP_PREFIX,
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
trait VersionSink {
    fn add(&mut self, v: OwnedVersion) -> Result<(), String>;
}

impl VersionSink for StoreBuilder {
    fn add(&mut self, v: OwnedVersion) -> Result<(), String> {
        StoreBuilder::add(self, v).map_err(|e| e.to_string())
    }
}

/// Checks the version order and sums the state digest without keeping any
/// version: memory stays bounded whatever the snapshot's size.
#[derive(Default)]
struct DigestSink {
    digest: StateDigest,
    last: Option<(Bytes, Bytes, CommitId)>,
    versions: u64,
}

impl VersionSink for DigestSink {
    fn add(&mut self, v: OwnedVersion) -> Result<(), String> {
        if let Some((c, k, id)) = &self.last {
            if (c, k, *id) >= (&v.collection, &v.key, v.commit_id) {
                return Err(LoadError::OutOfOrder { index: self.versions }.to_string());
            }
        }
        self.digest = self.digest.plus_version(version_hash_parts(v.commit_id, &v.collection, &v.key, v.doc.as_deref()));
        self.versions += 1;
        self.last = Some((v.collection, v.key, v.commit_id));
        Ok(())
    }
}

/// Verifies the snapshot in `dir` completely — manifest, cluster id (when
/// given), exact file set, every file's size, header, crc32c and records,
/// the version count, and the state digest — by streaming every data file
/// once in bounded chunks, without building a store (scrub, CORE-6).
/// `pace` is called with the byte count of each chunk before it is read,
/// so the caller can bound the IO rate. Returns the manifest and the bytes
/// read.
pub fn verify_snapshot_streaming(
    disk: &dyn Disk,
    dir: &Path,
    expected_cluster: Option<&str>,
    pace: &mut dyn FnMut(u64),
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
        stream_file(disk, dir, index, f, &manifest, None, &mut |_| {})?;
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
        count += stream_file(disk, dir, index, f, &manifest, Some(&mut builder), &mut |_| {})?;
    }
    if count != manifest.version_count {
        return Err(SnapshotError::Corrupt {
            snapshot,
            file: MANIFEST_FILE.into(),
            offset: 0,
            detail: format!("manifest says {} versions, the data files hold {count}", manifest.version_count),
        });
    }
    let store = builder.finish_at(manifest.cut(), manifest.history_horizon).map_err(|e| match e {
        LoadError::DigestMismatch { expected, computed } => SnapshotError::Digest { snapshot: snapshot.clone(), expected, computed },
        other => SnapshotError::Corrupt { snapshot: snapshot.clone(), file: MANIFEST_FILE.into(), offset: 0, detail: other.to_string() },
    })?;
    Ok((store, manifest))
}

/// Reads one data file in chunks, verifying size, header and crc32c, and
/// (with a sink) decoding its versions into it. Structural problems are
/// held back until the whole file was checksummed, so a flipped byte is
/// reported as the checksum failure it is. Returns the versions decoded.
fn stream_file(
    disk: &dyn Disk,
    dir: &Path,
    index: usize,
    entry: &ManifestFile,
    manifest: &Manifest,
    mut builder: Option<&mut dyn VersionSink>,
    pace: &mut dyn FnMut(u64),
) -> Result<u64, SnapshotError> {
    let snapshot = &dir_label(dir);
    let boundary: CommitId = manifest.boundary_commit_id;
    let path = dir.join(&entry.name);
    let file = disk.open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SnapshotError::MissingFile { snapshot: snapshot.to_string(), file: entry.name.clone() },
        _ => SnapshotError::io("open data file", &path, e),
    })?;
    let len = file.len().map_err(|e| SnapshotError::io("stat data file", &path, e))?;
    if len != entry.size {
        return Err(SnapshotError::SizeMismatch { snapshot: snapshot.to_string(), file: entry.name.clone(), expected: entry.size, found: len });
    }
    let corrupt = |offset: u64, detail: String| SnapshotError::Corrupt { snapshot: snapshot.to_string(), file: entry.name.clone(), offset, detail };
    let mut header = [0u8; DATA_HEADER_LEN];
    pace(DATA_HEADER_LEN as u64);
    read_at(&*file, &path, &mut header, 0)?;
    let mut crc = crc32c::crc32c(&header);
    let mut deferred: Option<SnapshotError> = match DataHeader::decode(&header) {
        Ok(h) if h.boundary_commit_id != boundary || h.file_index as usize != index => {
            Some(corrupt(0, format!("header belongs to snapshot {} file #{}, expected {boundary} #{index}", h.boundary_commit_id, h.file_index)))
        }
        Ok(h) if h.format_version != manifest.format_version => Some(SnapshotError::Format {
            snapshot: snapshot.to_string(),
            file: entry.name.clone(),
            detail: format!("data file format version {} in a format {} snapshot", h.format_version, manifest.format_version),
        }),
        Ok(_) => None,
        Err(DataHeaderError::Format(detail)) => Some(SnapshotError::Format { snapshot: snapshot.to_string(), file: entry.name.clone(), detail }),
        Err(DataHeaderError::Checksum) => Some(corrupt(0, "header crc32c mismatch".into())),
        Err(DataHeaderError::Truncated) => Some(corrupt(0, "header truncated".into())),
    };
    let mut versions = 0u64;
    let mut read_pos = DATA_HEADER_LEN as u64;
    // Unparsed bytes (the start of a record cut by the chunk boundary) and
    // the file offset of their first byte.
    let mut pending = Bytes::new();
    let mut pending_at = read_pos;
    let mut need = 0usize;
    while read_pos < len {
        let remaining = len - read_pos;
        let want = READ_CHUNK.max(need.saturating_sub(pending.len()));
        let n = usize::try_from(remaining).map_or(want, |r| r.min(want));
        pace(n as u64);
        let parsing = builder.is_some() && deferred.is_none();
        let keep = if parsing { pending.len() } else { 0 };
        let mut buf = Vec::with_capacity(keep + n);
        buf.extend_from_slice(&pending[..keep]);
        buf.resize(keep + n, 0);
        read_at(&*file, &path, &mut buf[keep..], read_pos)?;
        crc = crc32c::crc32c_append(crc, &buf[keep..]);
        read_pos += n as u64;
        let Some(b) = builder.as_deref_mut().filter(|_| parsing) else {
            pending = Bytes::new();
            continue;
        };
        let chunk = Bytes::from(buf);
        let mut at = 0usize;
        need = 0;
        while at < chunk.len() {
            match decode_version(&chunk, at) {
                Ok(Decoded::Version(v, rec_len)) => {
                    let offset = pending_at + at as u64;
                    if v.commit_id > boundary {
                        deferred = Some(corrupt(offset, format!("version with CommitId {} beyond the boundary {boundary}", v.commit_id)));
                        break;
                    }
                    if let Err(e) = b.add(v) {
                        deferred = Some(corrupt(offset, e.to_string()));
                        break;
                    }
                    versions += 1;
                    at += rec_len;
                }
                Ok(Decoded::Incomplete(needed)) => {
                    need = needed;
                    break;
                }
                Err(detail) => {
                    deferred = Some(corrupt(pending_at + at as u64, detail.to_string()));
                    break;
                }
            }
        }
        pending = chunk.slice(at.min(chunk.len())..);
        pending_at += at as u64;
    }
    if deferred.is_none() && builder.is_some() && !pending.is_empty() {
        deferred = Some(corrupt(pending_at, format!("file ends inside a record ({} trailing bytes)", pending.len())));
    }
    if crc != entry.crc32c {
        return Err(SnapshotError::Checksum { snapshot: snapshot.to_string(), file: entry.name.clone(), expected: entry.crc32c, computed: crc });
    }
    match deferred {
        Some(e) => Err(e),
        None => Ok(versions),
    }
}

fn read_at(file: &dyn DiskFile, path: &Path, buf: &mut [u8], offset: u64) -> Result<(), SnapshotError> {
    file.read_exact_at(buf, offset).map_err(|e| SnapshotError::io("read data file", path, e))
}
