//! The one record-chain validation routine, shared by primary recovery,
//! replica validation and offline `verify` (P5-I5, REPL-2, REPL-7).

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use crate::hash::{Fingerprint, GENESIS_FINGERPRINT};
use crate::record::{decode_record, expected_fingerprint, Record, RecordDecodeError, RecordPosition};
use crate::segment::SegmentHeader;
use crate::{CommitId, Lsn};

/// Where a validated history ends: the next record must start at
/// `end_lsn`, carry `commit_id + 1` and chain from `fingerprint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChainTip {
    /// First LSN after the last validated record.
    pub end_lsn: Lsn,
    /// CommitId of the last validated record (0 = none).
    pub commit_id: CommitId,
    /// Fingerprint of the last validated record.
    pub fingerprint: Fingerprint,
}

impl ChainTip {
    /// The tip of an empty history.
    pub const GENESIS: ChainTip = ChainTip { end_lsn: 0, commit_id: 0, fingerprint: GENESIS_FINGERPRINT };

    /// The chain state a segment header declares at its start.
    pub fn of_segment(h: &SegmentHeader) -> ChainTip {
        ChainTip { end_lsn: h.start_lsn, commit_id: h.prev_commit_id, fingerprint: h.prev_fingerprint }
    }

    /// The segment header that continues the history from this tip.
    pub fn segment_header(&self) -> SegmentHeader {
        SegmentHeader { start_lsn: self.end_lsn, prev_commit_id: self.commit_id, prev_fingerprint: self.fingerprint }
    }
}

/// A record that broke the history rules, with the evidence to prove it.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, serde::Deserialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum ChainViolation {
    /// Bytes at `lsn` are not a valid record (CORE-2, F-V1).
    #[error("invalid record at LSN {lsn}: {error}")]
    InvalidRecord {
        /// Where the bad record starts.
        lsn: Lsn,
        /// What is wrong with it.
        error: RecordDecodeError,
    },
    /// A record did not start where the previous one ended (REPL-7, F-V2).
    #[error("LSN discontinuity: expected a record at {expected}, got one at {found}")]
    LsnDiscontinuity {
        /// Where the next record had to start.
        expected: Lsn,
        /// Where it started.
        found: Lsn,
    },
    /// CommitId is not previous + 1 (REPL-2, F-V2).
    #[error("CommitId discontinuity at LSN {lsn}: expected {expected}, found {found}")]
    CommitIdDiscontinuity {
        /// Record start.
        lsn: Lsn,
        /// previous + 1.
        expected: CommitId,
        /// What the record carries.
        found: CommitId,
    },
    /// The fingerprint does not chain from the previous record (REPL-5, F-D1).
    #[error("fingerprint chain broken at LSN {lsn} (CommitId {commit_id}): expected {expected}, found {found}")]
    FingerprintMismatch {
        /// Record start.
        lsn: Lsn,
        /// The record's CommitId.
        commit_id: CommitId,
        /// H(previous fingerprint, record).
        expected: Fingerprint,
        /// What the record carries.
        found: Fingerprint,
    },
    /// A segment header does not continue the chain (REPL-7, F-S3).
    #[error("segment at LSN {start_lsn} declares previous ({declared_commit_id}, {declared_fingerprint}) but the history ends at LSN {tip_lsn} with ({tip_commit_id}, {tip_fingerprint})")]
    SegmentDiscontinuity {
        /// The segment's start LSN.
        start_lsn: Lsn,
        /// CommitId the header declares.
        declared_commit_id: CommitId,
        /// Fingerprint the header declares.
        declared_fingerprint: Fingerprint,
        /// Where the validated history ends.
        tip_lsn: Lsn,
        /// Its last CommitId.
        tip_commit_id: CommitId,
        /// Its last fingerprint.
        tip_fingerprint: Fingerprint,
    },
}

impl ChainViolation {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ChainViolation::InvalidRecord { error: RecordDecodeError::Checksum { .. }, .. } => "CHECKSUM_MISMATCH",
            ChainViolation::InvalidRecord { .. } => "INVALID_RECORD",
            ChainViolation::LsnDiscontinuity { .. } => "LSN_GAP",
            ChainViolation::CommitIdDiscontinuity { .. } => "COMMIT_ID_GAP",
            ChainViolation::FingerprintMismatch { .. } => "FINGERPRINT_MISMATCH",
            ChainViolation::SegmentDiscontinuity { .. } => "SEGMENT_DISCONTINUITY",
        }
    }
    /// The rule this violation breaks.
    pub fn rule_id(&self) -> &'static str {
        match self {
            ChainViolation::InvalidRecord { .. } => "CORE-2",
            ChainViolation::LsnDiscontinuity { .. } => "REPL-7",
            ChainViolation::CommitIdDiscontinuity { .. } => "REPL-2",
            ChainViolation::FingerprintMismatch { .. } => "REPL-5",
            ChainViolation::SegmentDiscontinuity { .. } => "REPL-7",
        }
    }
    /// The LSN the violation was found at.
    pub fn lsn(&self) -> Lsn {
        match self {
            ChainViolation::InvalidRecord { lsn, .. } | ChainViolation::CommitIdDiscontinuity { lsn, .. } | ChainViolation::FingerprintMismatch { lsn, .. } => {
                *lsn
            }
            ChainViolation::LsnDiscontinuity { found, .. } => *found,
            ChainViolation::SegmentDiscontinuity { start_lsn, .. } => *start_lsn,
        }
    }
}

/// Validates records one after another against the history so far.
#[derive(Clone, Debug)]
pub struct ChainValidator {
    tip: ChainTip,
}

impl ChainValidator {
    /// Starts validating after `tip`.
    pub fn new(tip: ChainTip) -> Self {
        ChainValidator { tip }
    }

    /// The end of the history validated so far.
    pub fn tip(&self) -> ChainTip {
        self.tip
    }

    /// Checks that a segment starting here continues the chain.
    pub fn check_segment_start(&self, header: &SegmentHeader) -> Result<(), ChainViolation> {
        if ChainTip::of_segment(header) != self.tip {
            return Err(ChainViolation::SegmentDiscontinuity {
                start_lsn: header.start_lsn,
                declared_commit_id: header.prev_commit_id,
                declared_fingerprint: header.prev_fingerprint,
                tip_lsn: self.tip.end_lsn,
                tip_commit_id: self.tip.commit_id,
                tip_fingerprint: self.tip.fingerprint,
            });
        }
        Ok(())
    }

    /// Validates the record that starts at `lsn` (the first byte of
    /// `bytes`): checksum, LSN continuity, CommitId = previous + 1 and the
    /// fingerprint chain. On success the tip advances past it. On failure
    /// nothing changes.
    pub fn validate(&mut self, lsn: Lsn, bytes: &Bytes) -> Result<(Record, RecordPosition), ChainViolation> {
        if lsn != self.tip.end_lsn {
            return Err(ChainViolation::LsnDiscontinuity { expected: self.tip.end_lsn, found: lsn });
        }
        let (record, len) = decode_record(bytes).map_err(|error| ChainViolation::InvalidRecord { lsn, error })?;
        // A tip at CommitId u64::MAX (only a hostile or corrupt segment header
        // declares one) has no successor: every record after it breaks the
        // chain (`expected` then shows the saturated u64::MAX).
        let expected_commit = self.tip.commit_id.saturating_add(1);
        if self.tip.commit_id == CommitId::MAX || record.commit_id != expected_commit {
            return Err(ChainViolation::CommitIdDiscontinuity { lsn, expected: expected_commit, found: record.commit_id });
        }
        let expected_fp = expected_fingerprint(self.tip.fingerprint, &bytes[..len]);
        if record.fingerprint != expected_fp {
            return Err(ChainViolation::FingerprintMismatch { lsn, commit_id: record.commit_id, expected: expected_fp, found: record.fingerprint });
        }
        let end_lsn = lsn + len as u64;
        self.tip = ChainTip { end_lsn, commit_id: record.commit_id, fingerprint: record.fingerprint };
        let position = RecordPosition { lsn, end_lsn, commit_id: record.commit_id, fingerprint: record.fingerprint };
        Ok((record, position))
    }
}
