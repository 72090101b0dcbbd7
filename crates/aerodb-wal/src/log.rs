//! The on-disk WAL as a list of segments: appending raw bytes (shared by the
//! primary's writer and a replica's receiver) and reading whole records back.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use thiserror::Error;

use crate::disk::{Disk, DiskFile};
use crate::record::{check_record, peek_record_len, RecordDecodeError};
use crate::segment::{segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::Lsn;

/// One segment as the log knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SegmentInfo {
    /// Header (start LSN and the chain state at that start).
    pub header: SegmentHeader,
    /// First LSN after the last byte written to this segment.
    pub end_lsn: Lsn,
}

/// The list of segments, shared between the single appender and any number
/// of readers. Only the appender (and retention) mutates it.
#[derive(Clone)]
pub struct SegmentList {
    inner: Arc<RwLock<Vec<SegmentInfo>>>,
    dir: Arc<PathBuf>,
}

impl SegmentList {
    pub(crate) fn new(dir: PathBuf, segments: Vec<SegmentInfo>) -> Self {
        SegmentList { inner: Arc::new(RwLock::new(segments)), dir: Arc::new(dir) }
    }
    /// Copy of the current list, oldest first.
    pub fn snapshot(&self) -> Vec<SegmentInfo> {
        self.inner.read().clone()
    }
    /// WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// First LSN still held (start of the oldest segment).
    pub fn first_lsn(&self) -> Option<Lsn> {
        self.inner.read().first().map(|s| s.header.start_lsn)
    }
    /// The segment containing `lsn` (or starting exactly at it).
    pub fn find(&self, lsn: Lsn) -> Option<SegmentInfo> {
        let list = self.inner.read();
        let idx = list.partition_point(|s| s.header.start_lsn <= lsn);
        if idx == 0 {
            return None;
        }
        // The next segment would have been chosen if it started at `lsn`,
        // so `lsn == end_lsn` here means "at the end of the last segment".
        let seg = list[idx - 1];
        (lsn <= seg.end_lsn).then_some(seg)
    }
    fn push(&self, info: SegmentInfo) {
        self.inner.write().push(info);
    }
    fn set_last_end(&self, end: Lsn) {
        if let Some(last) = self.inner.write().last_mut() {
            last.end_lsn = end;
        }
    }
    /// Forgets segments that end at or before `lsn` (after their files were removed).
    pub(crate) fn retain_from(&self, keep: impl Fn(&SegmentInfo) -> bool) {
        self.inner.write().retain(keep);
    }

    /// Puts `segments` (older than every listed one) back at the front.
    fn restore_front(&self, segments: &[SegmentInfo]) {
        let mut list = self.inner.write();
        let rest = std::mem::take(&mut *list);
        list.extend_from_slice(segments);
        list.extend(rest);
    }

    /// WAL retention: removes the files of the segments wholly before `lsn`
    /// (every byte, and the end of their last record, at or below `lsn`),
    /// oldest first, and returns their names. Never removes the segment
    /// containing `lsn` nor the last segment, so the WAL still continues
    /// from `lsn`: either the record ending at `lsn` is kept, or the first
    /// kept segment starts exactly at `lsn` and its header states that
    /// record's identity. The list is updated before any file is removed
    /// (readers then get `WAL_UNAVAILABLE` for those LSNs), segments whose
    /// removal failed are put back, and the directory is fsynced afterwards.
    pub fn remove_segments_before(&self, disk: &dyn Disk, lsn: Lsn) -> Result<Vec<String>, LogError> {
        let list = self.snapshot();
        let removable: Vec<SegmentInfo> = list.iter().take(list.len().saturating_sub(1)).take_while(|s| s.end_lsn <= lsn).copied().collect();
        let Some(last_removed) = removable.last().copied() else {
            return Ok(Vec::new());
        };
        self.retain_from(|s| s.header.start_lsn > last_removed.header.start_lsn);
        let mut removed = Vec::with_capacity(removable.len());
        let mut result = Ok(());
        for seg in &removable {
            let name = segment_file_name(seg.header.start_lsn);
            let path = self.dir.join(&name);
            if let Err(e) = disk.remove_file(&path) {
                result = Err(LogError::io("remove segment", &path, e));
                break;
            }
            removed.push(name);
        }
        if removed.len() < removable.len() {
            // The files that could not be removed are still held: the list
            // must keep naming them, or a later pass would remove the
            // segments after them and leave a gap (found by the simulator).
            self.restore_front(&removable[removed.len()..]);
        }
        if !removed.is_empty() {
            disk.sync_dir(&self.dir).map_err(|e| LogError::io("sync WAL dir", &self.dir, e))?;
        }
        result.map(|()| removed)
    }
}

/// Errors of appending or reading WAL files.
#[derive(Debug, Error)]
pub enum LogError {
    /// An IO operation failed.
    #[error("WAL IO error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File or directory.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Bytes were offered at an LSN other than the current end.
    #[error("append at LSN {offered} but the WAL ends at {end}")]
    OutOfOrder {
        /// Where the bytes claimed to start.
        offered: Lsn,
        /// Where the WAL ends.
        end: Lsn,
    },
    /// A read asked for an LSN this node does not hold.
    #[error("LSN {lsn} is not held (WAL covers {first}..{end})")]
    NotHeld {
        /// Requested LSN.
        lsn: Lsn,
        /// First held LSN.
        first: Lsn,
        /// End of the WAL.
        end: Lsn,
    },
    /// A stored record failed its checksum when read back (CORE-2).
    #[error("stored record at LSN {lsn} is invalid: {error}")]
    Corrupt {
        /// Record start.
        lsn: Lsn,
        /// What is wrong.
        error: RecordDecodeError,
    },
    /// A previous fsync failed; the log refuses further appends.
    #[error("WAL is poisoned after a failed fsync; restart to recover")]
    Poisoned,
}

impl LogError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        LogError::Io { op, path: path.display().to_string(), source }
    }
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::Io { .. } => "WAL_IO",
            LogError::OutOfOrder { .. } => "WAL_OUT_OF_ORDER",
            LogError::NotHeld { .. } => "WAL_UNAVAILABLE",
            LogError::Corrupt { .. } => "WAL_CORRUPT",
            LogError::Poisoned => "WAL_POISONED",
        }
    }
}

/// Appends raw, already-encoded record bytes to the last segment and starts
/// new segments. It checks only LSN order; record validity is the caller's.
pub struct SegmentAppender {
    disk: Arc<dyn Disk>,
    segments: SegmentList,
    file: Box<dyn DiskFile>,
    start_lsn: Lsn,
    end_lsn: Lsn,
    synced_lsn: Lsn,
    /// Length of the current segment file, header and any preallocated
    /// zeros included.
    file_len: u64,
    preallocation: Preallocation,
    /// No preallocated zero is written at or beyond this LSN (the durable
    /// mark's crash window, CORE-5), unless a record itself reaches it.
    preallocation_limit: Option<Lsn>,
    poisoned: bool,
}

/// Whether the appender grows the current segment file ahead of its
/// records with zeros.
///
/// `fdatasync` after an append that grows a file must also commit the new
/// length (a journal commit on ext4: a second flush); after a write inside
/// the file's length it flushes only the data. So a primary started with
/// `--wal-preallocate-bytes` writes zeros ahead of its records, a chunk at
/// a time, and its commits overwrite them (what PostgreSQL does for every
/// WAL segment). It is opt-in: a node killed right after an acknowledgement
/// then has zeros after its last record, where anything that inspects or
/// damages a WAL tail by file length expects the last record. The zeros are not WAL:
/// recovery, verification and repair read the WAL up to its last valid
/// record and treat zeros from there to the end of the last segment as
/// unused space, never as a torn tail ([`crate::recovery`]). They are cut
/// off when a segment is sealed and whenever the writer asks
/// ([`SegmentAppender::trim_preallocation`]: at clean shutdown, and when
/// the committer is idle), so sealed segments end at their last record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocation {
    /// The file ends at the last appended byte (the default; replicas).
    Off,
    /// The file is grown by at least this many bytes of zeros at a time.
    Chunks(u64),
}

/// Zeros written when the current segment file is grown.
static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];

impl SegmentAppender {
    /// Opens the last segment of a recovered WAL for appending.
    pub(crate) fn open_last(disk: Arc<dyn Disk>, segments: SegmentList) -> Result<Self, LogError> {
        let last = segments.snapshot().last().copied();
        let Some(last) = last else {
            return Err(LogError::NotHeld { lsn: 0, first: 0, end: 0 });
        };
        let path = segments.dir().join(segment_file_name(last.header.start_lsn));
        let file = disk.open(&path).map_err(|e| LogError::io("open segment", &path, e))?;
        let file_len = file.len().map_err(|e| LogError::io("stat segment", &path, e))?;
        Ok(SegmentAppender {
            disk,
            segments,
            file,
            start_lsn: last.header.start_lsn,
            end_lsn: last.end_lsn,
            synced_lsn: last.end_lsn,
            file_len,
            preallocation: Preallocation::Off,
            preallocation_limit: None,
            poisoned: false,
        })
    }

    /// Creates a WAL directory holding one empty segment that continues
    /// from `header` (genesis, or a snapshot cut on a replica).
    pub fn create(disk: Arc<dyn Disk>, dir: &Path, header: SegmentHeader) -> Result<Self, LogError> {
        disk.create_dir_all(dir).map_err(|e| LogError::io("create WAL dir", dir, e))?;
        let file = create_segment_file(&*disk, dir, &header)?;
        let segments = SegmentList::new(dir.to_path_buf(), vec![SegmentInfo { header, end_lsn: header.start_lsn }]);
        Ok(SegmentAppender {
            disk,
            segments,
            file,
            start_lsn: header.start_lsn,
            end_lsn: header.start_lsn,
            synced_lsn: header.start_lsn,
            file_len: SEGMENT_HEADER_LEN,
            preallocation: Preallocation::Off,
            preallocation_limit: None,
            poisoned: false,
        })
    }

    /// Grows segment files ahead of the records by `preallocation` (see
    /// [`Preallocation`]).
    pub fn with_preallocation(mut self, preallocation: Preallocation) -> Self {
        self.set_preallocation(preallocation);
        self
    }

    /// [`SegmentAppender::with_preallocation`] in place.
    pub fn set_preallocation(&mut self, preallocation: Preallocation) {
        self.preallocation = match preallocation {
            Preallocation::Chunks(0) => Preallocation::Off,
            other => other,
        };
    }

    /// Bounds preallocation: no zero is written at or beyond `limit`
    /// (`None`: no bound). A crash may tear any byte written since the
    /// last fsync, zeros included, so the group committer passes the
    /// durable mark plus the crash window: torn bytes then never lie
    /// further beyond the mark than recovery allows (CORE-5).
    pub fn set_preallocation_limit(&mut self, limit: Option<Lsn>) {
        self.preallocation_limit = limit;
    }

    /// Whether segment files are grown ahead of the records.
    pub fn preallocates(&self) -> bool {
        self.preallocation != Preallocation::Off
    }

    /// Whether the current segment file holds preallocated zeros after
    /// its last appended byte.
    pub fn has_preallocated_tail(&self) -> bool {
        self.file_len > self.logical_file_len()
    }

    /// Length the current segment file has without preallocated zeros.
    fn logical_file_len(&self) -> u64 {
        SEGMENT_HEADER_LEN + (self.end_lsn - self.start_lsn)
    }

    /// Durably cuts the preallocated zeros off the current segment file,
    /// so that it ends at its last appended byte (which this also makes
    /// durable). Nothing appended is touched.
    pub fn trim_preallocation(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if !self.has_preallocated_tail() {
            return Ok(());
        }
        let len = self.logical_file_len();
        if let Err(e) = self.file.truncate(len) {
            self.poisoned = true;
            return Err(LogError::io("trim preallocated zeros", &self.current_path(), e));
        }
        self.file_len = len;
        self.synced_lsn = self.end_lsn;
        self.segments.set_last_end(self.end_lsn);
        Ok(())
    }

    /// Writes zeros after the file's end so that it holds at least
    /// `needed` bytes: a whole chunk at a time, but never past the
    /// preallocation limit.
    fn preallocate(&mut self, needed: u64, chunk: u64) -> std::io::Result<()> {
        let mut target = needed.div_ceil(chunk).saturating_mul(chunk);
        if let Some(limit) = self.preallocation_limit {
            let limit_len = SEGMENT_HEADER_LEN.saturating_add(limit.saturating_sub(self.start_lsn));
            target = target.min(limit_len).max(needed);
        }
        while self.file_len < target {
            let n = (target - self.file_len).min(ZEROS.len() as u64) as usize;
            self.file.write_at(&ZEROS[..n], self.file_len)?;
            self.file_len += n as u64;
        }
        Ok(())
    }

    /// The shared segment list (for readers).
    pub fn segments(&self) -> &SegmentList {
        &self.segments
    }
    /// End of the bytes appended so far (durable or not).
    pub fn end_lsn(&self) -> Lsn {
        self.end_lsn
    }
    /// End of the bytes known durable.
    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn
    }
    /// Bytes in the current segment after its header.
    pub fn current_segment_len(&self) -> u64 {
        self.end_lsn - self.start_lsn
    }

    /// Appends bytes that must start exactly at the current end.
    pub fn append(&mut self, lsn: Lsn, bytes: &[u8]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if lsn != self.end_lsn {
            return Err(LogError::OutOfOrder { offered: lsn, end: self.end_lsn });
        }
        let offset = self.logical_file_len();
        let end = offset + bytes.len() as u64;
        let written = match self.preallocation {
            Preallocation::Off => self.file.append(bytes),
            Preallocation::Chunks(chunk) => {
                let grown = if end > self.file_len { self.preallocate(end, chunk) } else { Ok(()) };
                grown.and_then(|()| self.file.write_at(bytes, offset))
            }
        };
        if let Err(e) = written {
            // A short write leaves unknown bytes in the file: refuse more.
            self.poisoned = true;
            return Err(LogError::io("append", &self.current_path(), e));
        }
        self.end_lsn += bytes.len() as u64;
        self.file_len = self.file_len.max(end);
        Ok(())
    }

    /// Makes every appended byte durable. After a failed fsync the page
    /// cache state is unknown, so the appender poisons itself (restart and
    /// let recovery decide what is on disk).
    pub fn sync(&mut self) -> Result<Lsn, LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if self.synced_lsn == self.end_lsn {
            return Ok(self.synced_lsn);
        }
        crate::crash_point!("wal.before_fsync");
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(LogError::io("fsync", &self.current_path(), e));
        }
        self.synced_lsn = self.end_lsn;
        self.segments.set_last_end(self.end_lsn);
        crate::crash_point!("wal.after_fsync");
        Ok(self.synced_lsn)
    }

    /// Syncs the current segment and starts a new one at the current end,
    /// declaring `header` (which must start at the current end).
    pub fn start_segment(&mut self, header: SegmentHeader) -> Result<(), LogError> {
        if header.start_lsn != self.end_lsn {
            return Err(LogError::OutOfOrder { offered: header.start_lsn, end: self.end_lsn });
        }
        self.sync()?;
        // A sealed segment ends at its last record.
        self.trim_preallocation()?;
        let file = create_segment_file(&*self.disk, self.segments.dir(), &header)?;
        self.file = file;
        self.file_len = SEGMENT_HEADER_LEN;
        self.start_lsn = header.start_lsn;
        self.segments.push(SegmentInfo { header, end_lsn: header.start_lsn });
        Ok(())
    }

    /// Durably drops the bytes after `to` in the current segment (a
    /// replica's received-but-never-validated tail; never used on a
    /// primary's acknowledged history). `to` must lie in the current
    /// segment and at or before its end.
    pub fn truncate_tail(&mut self, to: Lsn) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if to < self.start_lsn || to > self.end_lsn {
            return Err(LogError::OutOfOrder { offered: to, end: self.end_lsn });
        }
        if to == self.end_lsn {
            return self.sync().map(|_| ());
        }
        if let Err(e) = self.file.truncate(SEGMENT_HEADER_LEN + (to - self.start_lsn)) {
            self.poisoned = true;
            return Err(LogError::io("truncate tail", &self.current_path(), e));
        }
        self.end_lsn = to;
        self.synced_lsn = to;
        self.file_len = self.logical_file_len();
        self.segments.set_last_end(to);
        Ok(())
    }

    fn current_path(&self) -> PathBuf {
        self.segments.dir().join(segment_file_name(self.start_lsn))
    }
}

/// Creates a segment file durably: header written to a temporary name,
/// fsynced, renamed into place, directory fsynced.
fn create_segment_file(disk: &dyn Disk, dir: &Path, header: &SegmentHeader) -> Result<Box<dyn DiskFile>, LogError> {
    let path = dir.join(segment_file_name(header.start_lsn));
    crate::disk::write_atomic(disk, &path, &header.encode()).map_err(|e| LogError::io("create segment", &path, e))?;
    disk.open(&path).map_err(|e| LogError::io("open segment", &path, e))
}

/// A run of whole, checksum-verified records read from one segment.
#[derive(Clone, Debug)]
pub struct WalChunk {
    /// LSN of the first byte.
    pub start_lsn: Lsn,
    /// Set when `start_lsn` is the start of a segment: its header.
    pub segment_start: Option<SegmentHeader>,
    /// Verbatim WAL bytes (whole records only).
    pub bytes: Bytes,
    /// Number of records in `bytes`.
    pub records: u32,
}

/// Reads whole records back from segment files. Cheap to create; keeps the
/// last opened segment file.
pub struct WalReader {
    disk: Arc<dyn Disk>,
    segments: SegmentList,
    open: Option<(Lsn, Box<dyn DiskFile>)>,
}

impl WalReader {
    /// A reader over `segments`.
    pub fn new(disk: Arc<dyn Disk>, segments: SegmentList) -> Self {
        WalReader { disk, segments, open: None }
    }

    /// Reads whole records starting at `lsn` (a record boundary), not past
    /// `limit_lsn` and about `max_bytes` (at least one record if any is
    /// available). Each record's crc32c is verified before it is returned
    /// (CORE-2). Returns an empty chunk when `lsn == limit_lsn`.
    pub fn read_chunk(&mut self, lsn: Lsn, limit_lsn: Lsn, max_bytes: usize) -> Result<WalChunk, LogError> {
        let Some(seg) = self.segments.find(lsn) else {
            let list = self.segments.snapshot();
            let first = list.first().map_or(0, |s| s.header.start_lsn);
            let end = list.last().map_or(0, |s| s.end_lsn);
            return Err(LogError::NotHeld { lsn, first, end });
        };
        let segment_start = (lsn == seg.header.start_lsn).then_some(seg.header);
        let stop = seg.end_lsn.min(limit_lsn);
        if lsn >= stop {
            return Ok(WalChunk { start_lsn: lsn, segment_start, bytes: Bytes::new(), records: 0 });
        }
        let want = ((stop - lsn) as usize).min(max_bytes.max(crate::record::RECORD_HEADER_LEN));
        let mut buf = self.read_at(seg.header.start_lsn, lsn, want)?;
        // Cut to whole records; extend once if the first record is larger than `want`.
        let mut cut = 0usize;
        let mut records = 0u32;
        loop {
            match peek_record_len(&buf[cut..]) {
                Ok(len) => {
                    check_record(&buf[cut..]).map_err(|error| LogError::Corrupt { lsn: lsn + cut as u64, error })?;
                    cut += len;
                    records += 1;
                }
                Err(RecordDecodeError::Truncated { needed, .. }) if records == 0 && (needed as u64) <= stop - lsn => {
                    buf = self.read_at(seg.header.start_lsn, lsn, needed)?;
                }
                Err(RecordDecodeError::Truncated { .. }) if records > 0 => break,
                Err(error) => return Err(LogError::Corrupt { lsn: lsn + cut as u64, error }),
            }
            if cut == buf.len() {
                break;
            }
        }
        buf.truncate(cut);
        Ok(WalChunk { start_lsn: lsn, segment_start, bytes: Bytes::from(buf), records })
    }

    fn read_at(&mut self, seg_start: Lsn, lsn: Lsn, len: usize) -> Result<Vec<u8>, LogError> {
        let path = self.segments.dir().join(segment_file_name(seg_start));
        let open = match self.open.take() {
            Some(open) if open.0 == seg_start => open,
            _ => (seg_start, self.disk.open(&path).map_err(|e| LogError::io("open segment", &path, e))?),
        };
        let (_, file) = self.open.insert(open);
        file.read_vec_at(len, SEGMENT_HEADER_LEN + (lsn - seg_start)).map_err(|e| LogError::io("read", &path, e))
    }
}
