//! The primary's WAL writer: the only place CommitIds are assigned
//! (REPL-2), always in WAL order, each exactly previous + 1.

use crate::hash::StateDigest;
use crate::log::{LogError, Preallocation, SegmentAppender, SegmentList};
use crate::record::{encode_gc_record, encode_record, Op, RecordEncodeError, RecordPosition};
use crate::validate::ChainTip;
use crate::Lsn;

/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_TARGET_BYTES: u64 = 64 * 1024 * 1024;

/// Appended bytes held in memory before they are written anyway: a group
/// is written with one `write` at [`WalWriter::sync`], and this bounds
/// what a writer that is not synced for a long time holds.
pub const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// A record appended (not yet durable until [`WalWriter::sync`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendedRecord {
    /// Where it is and what identifies it.
    pub position: RecordPosition,
    /// State digest after it.
    pub state_digest: StateDigest,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The write set cannot be encoded; nothing was written and no CommitId used.
    #[error(transparent)]
    Encode(#[from] RecordEncodeError),
    /// The log failed; the writer is unusable.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The record would end beyond `limit` (the crash window after the last
    /// durable mark, CORE-5); nothing was written and no CommitId used.
    #[error("record would end at LSN {end_lsn}, beyond the limit {limit}")]
    BeyondLimit {
        /// Where the record would end.
        end_lsn: Lsn,
        /// The limit.
        limit: Lsn,
    },
}

/// Assigns CommitIds, chains fingerprints and digests, and appends records.
///
/// Appended records are gathered in memory and written to the segment with
/// one `write` when the writer syncs (or rolls to a new segment, or holds
/// [`MAX_PENDING_BYTES`], or is dropped; a GC record is written at once,
/// since it is fsynced alone right after): a commit group costs one write
/// and one fsync, not a write per record. Nothing is durable, or visible to
/// WAL readers, before [`WalWriter::sync`] either way (CORE-1).
pub struct WalWriter {
    appender: SegmentAppender,
    /// Encoded records appended after the appender's end, not yet written.
    pending: Vec<u8>,
    tip: ChainTip,
    digest: StateDigest,
    segment_target_bytes: u64,
    /// Nothing appended since construction (i.e. since recovery).
    fresh: bool,
}

impl WalWriter {
    /// Continues after a recovered history whose last record is `tip` with
    /// state digest `digest`.
    pub fn new(appender: SegmentAppender, tip: ChainTip, digest: StateDigest, segment_target_bytes: u64) -> Self {
        WalWriter { appender, pending: Vec::new(), tip, digest, segment_target_bytes: segment_target_bytes.max(1), fresh: true }
    }

    /// Encodes `ops` as the next commit and appends it.
    pub fn append(&mut self, ops: &[Op]) -> Result<AppendedRecord, AppendError> {
        self.append_within(ops, None)
    }

    /// [`WalWriter::append`], refusing (with nothing written) a record that
    /// would end beyond `limit`.
    pub fn append_within(&mut self, ops: &[Op], limit: Option<Lsn>) -> Result<AppendedRecord, AppendError> {
        let mut commit_id = self.tip.commit_id + 1;
        if self.fresh && self.tip.commit_id > 0 && crate::plant::is_active(crate::plant::Plant::ReuseCommitId) {
            commit_id = self.tip.commit_id;
        }
        let digest = self.digest.after_ops(commit_id, ops);
        let (bytes, fingerprint) = encode_record(commit_id, digest, self.tip.fingerprint, ops)?;
        self.append_encoded(commit_id, digest, bytes, fingerprint, limit)
    }

    /// Appends a GC record (MVCC-4) as the next record: it takes the next
    /// CommitId like a commit and states the new history `horizon` and the
    /// state digest after it, which the caller computed from the store
    /// (the writer knows no versions). Nothing is written on error,
    /// including when it would end beyond `limit` (the crash window, CORE-5).
    pub fn append_gc(&mut self, horizon: crate::CommitId, digest_after: StateDigest, limit: Option<Lsn>) -> Result<AppendedRecord, AppendError> {
        let commit_id = self.tip.commit_id + 1;
        let (bytes, fingerprint) = encode_gc_record(commit_id, digest_after, self.tip.fingerprint, horizon)?;
        let appended = self.append_encoded(commit_id, digest_after, bytes, fingerprint, limit)?;
        // A GC record is fsynced alone right after: it reaches the file at
        // once, so a crash before its fsync finds it there (F-G2).
        self.write_pending()?;
        Ok(appended)
    }

    fn append_encoded(
        &mut self,
        commit_id: crate::CommitId,
        digest: StateDigest,
        bytes: Vec<u8>,
        fingerprint: crate::Fingerprint,
        limit: Option<Lsn>,
    ) -> Result<AppendedRecord, AppendError> {
        if let Some(limit) = limit {
            let end_lsn = self.tip.end_lsn + bytes.len() as u64;
            if end_lsn > limit {
                return Err(AppendError::BeyondLimit { end_lsn, limit });
            }
        }
        let segment_len = self.appender.current_segment_len() + self.pending.len() as u64;
        if segment_len > 0 && segment_len + bytes.len() as u64 > self.segment_target_bytes {
            self.write_pending()?;
            self.appender.start_segment(self.tip.segment_header())?;
        }
        let lsn = self.tip.end_lsn;
        let end_lsn = lsn + bytes.len() as u64;
        if self.pending.is_empty() {
            self.pending = bytes;
        } else {
            self.pending.extend_from_slice(&bytes);
        }
        if self.pending.len() >= MAX_PENDING_BYTES {
            self.write_pending()?;
        }
        self.tip = ChainTip { end_lsn, commit_id, fingerprint };
        self.fresh = false;
        self.digest = digest;
        Ok(AppendedRecord { position: RecordPosition { lsn, end_lsn, commit_id, fingerprint }, state_digest: digest })
    }

    /// Writes the gathered records to the segment with one `write`.
    fn write_pending(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let lsn = self.appender.end_lsn();
        let result = self.appender.append(lsn, &self.pending);
        self.pending.clear();
        if self.pending.capacity() > MAX_PENDING_BYTES {
            self.pending = Vec::new();
        }
        result
    }

    /// Writes every appended record (one `write`) and fsyncs; returns the
    /// durable LSN.
    pub fn sync(&mut self) -> Result<Lsn, LogError> {
        self.write_pending()?;
        self.appender.sync()
    }

    /// Grows segment files ahead of the records (see [`Preallocation`]).
    pub fn with_preallocation(mut self, preallocation: Preallocation) -> Self {
        self.appender.set_preallocation(preallocation);
        self
    }

    /// Bounds preallocation (see [`SegmentAppender::set_preallocation_limit`]).
    pub fn set_preallocation_limit(&mut self, limit: Option<Lsn>) {
        self.appender.set_preallocation_limit(limit);
    }

    /// Whether segment files are grown ahead of the records.
    pub fn preallocates(&self) -> bool {
        self.appender.preallocates()
    }

    /// Whether the current segment file holds preallocated zeros after the
    /// last record written to it.
    pub fn has_preallocated_tail(&self) -> bool {
        self.appender.has_preallocated_tail()
    }

    /// Writes every appended record and durably cuts the preallocated
    /// zeros off the current segment file (clean shutdown, idle).
    pub fn trim_preallocation(&mut self) -> Result<(), LogError> {
        self.write_pending()?;
        self.appender.trim_preallocation()
    }

    /// The last appended record's chain state.
    pub fn tip(&self) -> ChainTip {
        self.tip
    }

    /// The state digest after the last appended record.
    pub fn digest(&self) -> StateDigest {
        self.digest
    }

    /// Segment list for readers.
    pub fn segments(&self) -> &SegmentList {
        self.appender.segments()
    }
}

impl Drop for WalWriter {
    /// Hands records appended since the last sync to the file (not durable),
    /// as an unbuffered writer would have: what a crash then keeps is for
    /// recovery to judge, exactly as before.
    fn drop(&mut self) {
        if let Err(e) = self.write_pending() {
            tracing::debug!(error = %e, "WAL writer dropped: unsynced records not written");
        }
    }
}
