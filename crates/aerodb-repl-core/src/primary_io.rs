//! The primary's side of replication storage: its WAL as the handshake
//! decision sees it ([`PrimaryWal`] implements
//! [`crate::handshake::PrimaryHistory`]), WAL reads for shipping, and the
//! snapshot a bootstrapping replica receives ([`SnapshotSource`]). Shared by
//! the production runtime and the simulator; all IO goes through the
//! [`Disk`] trait.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use aerodb_snapshot::{read_manifest, SnapshotScheduler};
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::durable::DurableWatch;
use aerodb_wal::log::{LogError, SegmentList, WalChunk, WalReader};
use aerodb_wal::record::{peek_record_len, record_identity};
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn};

use crate::handshake::PrimaryHistory;
use crate::ids::ClusterId;

/// Largest manifest served.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The primary's WAL, for handshakes and shipping.
#[derive(Clone)]
pub struct PrimaryWal {
    cluster_id: ClusterId,
    disk: Arc<dyn Disk>,
    segments: SegmentList,
    durable: Arc<DurableWatch>,
    wal_keep_bytes: Option<u64>,
}

impl PrimaryWal {
    /// The WAL of a running primary.
    pub fn new(cluster_id: ClusterId, disk: Arc<dyn Disk>, segments: SegmentList, durable: Arc<DurableWatch>) -> Self {
        PrimaryWal { cluster_id, disk, segments, durable, wal_keep_bytes: None }
    }
    /// States `--wal-keep-bytes` in WAL_UNAVAILABLE refusals (RES-2).
    pub fn with_wal_keep_bytes(mut self, keep: u64) -> Self {
        self.wal_keep_bytes = Some(keep);
        self
    }
    /// The durable point watch.
    pub fn durable_watch(&self) -> &Arc<DurableWatch> {
        &self.durable
    }
    /// A reader for shipping (keeps its last segment open).
    pub fn reader(&self) -> WalReader {
        WalReader::new(self.disk.clone(), self.segments.clone())
    }
    /// Reads whole, checksum-verified records from `from`, never past `limit` (CORE-2, F-P1).
    pub fn read(reader: &mut WalReader, from: Lsn, limit: Lsn, max_bytes: usize) -> Result<WalChunk, LogError> {
        reader.read_chunk(from, limit, max_bytes)
    }
}

impl PrimaryHistory for PrimaryWal {
    fn cluster_id(&self) -> &ClusterId {
        &self.cluster_id
    }
    fn durable(&self) -> (Lsn, CommitId) {
        let p = self.durable.current();
        (p.lsn, p.commit_id)
    }
    fn oldest_retained(&self) -> ChainTip {
        self.segments.snapshot().first().map_or(ChainTip::GENESIS, |s| ChainTip::of_segment(&s.header))
    }
    fn wal_keep_bytes(&self) -> Option<u64> {
        self.wal_keep_bytes
    }
    fn record_end(&self, commit_id: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        let durable = self.durable.current();
        if commit_id == 0 || commit_id > durable.commit_id {
            return Ok(None);
        }
        let segments = self.segments.snapshot();
        let Some(seg) = segments.iter().rev().find(|s| s.header.prev_commit_id < commit_id) else { return Ok(None) };
        let mut reader = self.reader();
        let mut lsn = seg.header.start_lsn;
        let limit = durable.lsn.min(seg.end_lsn);
        while lsn < limit {
            let chunk = reader.read_chunk(lsn, limit, 4 * 1024 * 1024).map_err(|e| e.to_string())?;
            if chunk.bytes.is_empty() {
                break;
            }
            let mut at = 0usize;
            while at < chunk.bytes.len() {
                let len = peek_record_len(&chunk.bytes[at..]).map_err(|e| e.to_string())?;
                let (id, fp) = record_identity(&chunk.bytes[at..at + len]);
                if id == commit_id {
                    return Ok(Some((lsn + (at + len) as u64, fp)));
                }
                at += len;
            }
            lsn += chunk.bytes.len() as u64;
        }
        Ok(None)
    }
}

/// A snapshot being served: its manifest bytes and its open files, opened
/// before anything is sent so retention cannot remove them mid-transfer.
pub struct ServedSnapshot {
    /// Raw `manifest.json` bytes.
    pub manifest: Bytes,
    /// Its cut: `L_snap`.
    pub boundary_lsn: Lsn,
    /// Its cut: `C_snap`.
    pub boundary_commit_id: CommitId,
    files: Vec<Box<dyn DiskFile>>,
    sizes: Vec<u64>,
}

impl ServedSnapshot {
    /// Sizes of the data files, in manifest order.
    pub fn sizes(&self) -> Vec<u64> {
        self.sizes.clone()
    }
    /// Reads `len` bytes of file `file_index` at `offset`.
    pub fn read(&self, file_index: u32, offset: u64, len: usize) -> Result<Bytes, String> {
        let file = self.files.get(file_index as usize).ok_or_else(|| format!("no snapshot file #{file_index}"))?;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(|e| format!("read snapshot file #{file_index} at {offset}: {e}"))?;
        Ok(Bytes::from(buf))
    }
}

/// Chooses the snapshot a bootstrapping replica receives.
pub trait SnapshotSource: Send + Sync {
    /// The snapshot directory to serve (creating one if none exists).
    fn snapshot_dir(&self) -> Result<PathBuf, String>;
}

/// The primary's scheduler: its newest kept snapshot, created on demand.
impl SnapshotSource for SnapshotScheduler {
    fn snapshot_dir(&self) -> Result<PathBuf, String> {
        self.request_snapshot(false).map(|info| info.path).map_err(|e| e.to_string())
    }
}

/// Opens the snapshot in `dir` for serving: reads its manifest (bounded)
/// and opens every data file.
pub fn open_served_snapshot(disk: &dyn Disk, dir: &std::path::Path) -> Result<ServedSnapshot, String> {
    let manifest = read_manifest(disk, dir).map_err(|e| e.to_string())?;
    let raw = disk.read_bounded(&dir.join(aerodb_snapshot::format::MANIFEST_FILE), MAX_MANIFEST_BYTES).map_err(|e| e.to_string())?;
    let mut files = Vec::with_capacity(manifest.files.len());
    let mut sizes = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let path = dir.join(&f.name);
        files.push(disk.open(&path).map_err(|e| format!("open {}: {e}", path.display()))?);
        sizes.push(f.size);
    }
    Ok(ServedSnapshot { manifest: Bytes::from(raw), boundary_lsn: manifest.boundary_lsn, boundary_commit_id: manifest.boundary_commit_id, files, sizes })
}
