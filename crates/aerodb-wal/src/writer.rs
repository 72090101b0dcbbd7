//! The primary's WAL writer: the only place CommitIds are assigned
//! (REPL-2), always in WAL order, each exactly previous + 1.

use crate::hash::StateDigest;
use crate::log::{LogError, SegmentAppender, SegmentList};
use crate::record::{encode_gc_record, encode_record, Op, RecordEncodeError, RecordPosition};
use crate::validate::ChainTip;
use crate::Lsn;

/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_TARGET_BYTES: u64 = 64 * 1024 * 1024;

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
pub struct WalWriter {
    appender: SegmentAppender,
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
        WalWriter { appender, tip, digest, segment_target_bytes: segment_target_bytes.max(1), fresh: true }
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
        self.append_encoded(commit_id, digest_after, bytes, fingerprint, limit)
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
        if self.appender.current_segment_len() > 0 && self.appender.current_segment_len() + bytes.len() as u64 > self.segment_target_bytes {
            self.appender.start_segment(self.tip.segment_header())?;
        }
        let lsn = self.tip.end_lsn;
        self.appender.append(lsn, &bytes)?;
        let end_lsn = lsn + bytes.len() as u64;
        self.tip = ChainTip { end_lsn, commit_id, fingerprint };
        self.fresh = false;
        self.digest = digest;
        Ok(AppendedRecord { position: RecordPosition { lsn, end_lsn, commit_id, fingerprint }, state_digest: digest })
    }

    /// fsyncs everything appended; returns the durable LSN.
    pub fn sync(&mut self) -> Result<Lsn, LogError> {
        self.appender.sync()
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
