//! The replica pipeline (REPLICATION.md §5): receiver → validator →
//! applier, each owning one position.
//!
//! - The receiver appends raw bytes at exactly the expected LSN and fsyncs
//!   (`received_lsn`). It checks only framing and LSN order.
//! - The validator decodes records from the received bytes and checks
//!   crc32c, LSN continuity, CommitId = previous + 1 and the fingerprint
//!   chain (`validated_lsn`). A record split across chunks waits for the
//!   rest; anything invalid halts (F-V1, F-V2, F-D1).
//! - The applier applies validated records one at a time through the shared
//!   apply function (`applied_lsn`, C_replica); a digest mismatch halts
//!   before the commit becomes visible (F-D3).
//!
//! Always `applied_lsn <= validated_lsn <= received_lsn` (checked after
//! every chunk).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use aerodb_mvcc::{ApplyInput, Store};
use aerodb_wal::log::{LogError, SegmentAppender};
use aerodb_wal::record::RecordDecodeError;
use aerodb_wal::segment::SegmentHeader;
use aerodb_wal::{ChainTip, ChainValidator, ChainViolation, Lsn, Record, RecordPosition};

use crate::halt::HaltReason;
use crate::status::Positions;

/// WAL bytes as they arrived from the primary.
#[derive(Clone, Debug)]
pub struct ReceivedChunk {
    /// LSN of the first byte.
    pub start_lsn: Lsn,
    /// The primary's segment header when the chunk starts a segment.
    pub segment_start: Option<SegmentHeader>,
    /// Verbatim bytes.
    pub bytes: Bytes,
}

/// Why a chunk was not taken.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The peer broke the protocol (out-of-order LSN, bad segment start):
    /// drop the connection, keep state (F-N2).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An integrity failure: halt (persisted by the caller).
    #[error("integrity failure: {} ({})", .0.code, .0.rule_id)]
    Halt(Box<HaltReason>),
    /// Local IO failed; the replica cannot continue safely.
    #[error(transparent)]
    Io(#[from] LogError),
}

/// Owns the receiver, validator and applier of one replica.
pub struct ReplicaPipeline {
    appender: SegmentAppender,
    current_segment: SegmentHeader,
    validator: ChainValidator,
    pending: Bytes,
    store: Arc<Store>,
}

impl ReplicaPipeline {
    /// A pipeline continuing from a recovered WAL whose validated and
    /// applied end is the store's applied state.
    pub fn new(appender: SegmentAppender, store: Arc<Store>) -> Self {
        let applied = store.applied();
        let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
        let current_segment = appender.segments().snapshot().last().map_or(tip.segment_header(), |s| s.header);
        ReplicaPipeline { appender, current_segment, validator: ChainValidator::new(tip), pending: Bytes::new(), store }
    }

    /// The store being applied to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Current positions.
    pub fn positions(&self) -> Positions {
        let applied = self.store.applied();
        Positions {
            received_lsn: self.appender.synced_lsn(),
            validated_lsn: self.validator.tip().end_lsn,
            applied_lsn: applied.end_lsn,
            applied_commit_id: applied.commit_id,
        }
    }

    /// The resume point to state in a handshake: the end of the validated
    /// history (bytes received but not yet validated are re-requested only
    /// if they were a torn tail; otherwise they are validated first).
    pub fn resume_tip(&self) -> ChainTip {
        self.validator.tip()
    }

    /// Takes one chunk through all three stages. `after_stage` is called
    /// with the positions after each stage so observers see progress.
    pub fn take(&mut self, chunk: ReceivedChunk, mut after_stage: impl FnMut(Positions)) -> Result<(), PipelineError> {
        self.receive(&chunk)?;
        after_stage(self.positions());
        let records = self.validate(chunk.bytes)?;
        after_stage(self.positions());
        self.apply(records)?;
        after_stage(self.positions());
        self.check_invariants();
        Ok(())
    }

    fn receive(&mut self, chunk: &ReceivedChunk) -> Result<(), PipelineError> {
        let end = self.appender.end_lsn();
        if chunk.start_lsn != end {
            return Err(PipelineError::Protocol(format!("chunk starts at LSN {} but the replica WAL ends at {end}", chunk.start_lsn)));
        }
        if let Some(header) = chunk.segment_start {
            if header.start_lsn != chunk.start_lsn {
                return Err(PipelineError::Protocol(format!("segment header says LSN {} for a chunk at {}", header.start_lsn, chunk.start_lsn)));
            }
            if self.appender.current_segment_len() > 0 {
                // A new segment can only start after every record before it was validated.
                if !self.pending.is_empty() || self.validator.tip().end_lsn != end {
                    return Err(PipelineError::Protocol(format!("segment starts at LSN {} inside an incomplete record", header.start_lsn)));
                }
                self.validator.check_segment_start(&header).map_err(|v| PipelineError::Halt(Box::new(HaltReason::from_violation(&v))))?;
                self.appender.start_segment(header)?;
                self.current_segment = header;
            } else if header != self.current_segment {
                // Our (empty) segment starts here too: both must describe the same history.
                self.validator.check_segment_start(&header).map_err(|v| PipelineError::Halt(Box::new(HaltReason::from_violation(&v))))?;
            }
        }
        self.appender.append(chunk.start_lsn, &chunk.bytes)?;
        aerodb_wal::crash_point!("replica.before_fsync");
        self.appender.sync()?;
        aerodb_wal::crash_point!("replica.after_persist");
        Ok(())
    }

    fn validate(&mut self, bytes: Bytes) -> Result<Vec<(Record, RecordPosition)>, PipelineError> {
        let mut buf = if self.pending.is_empty() {
            bytes
        } else {
            let mut joined = BytesMut::with_capacity(self.pending.len() + bytes.len());
            joined.extend_from_slice(&self.pending);
            joined.extend_from_slice(&bytes);
            joined.freeze()
        };
        let mut records = Vec::new();
        while !buf.is_empty() {
            let lsn = self.validator.tip().end_lsn;
            match self.validator.validate(lsn, &buf) {
                Ok((record, position)) => {
                    buf = buf.slice((position.end_lsn - lsn) as usize..);
                    records.push((record, position));
                }
                Err(ChainViolation::InvalidRecord { error: RecordDecodeError::Truncated { .. }, .. }) => break,
                Err(v) => return Err(PipelineError::Halt(Box::new(HaltReason::from_violation(&v)))),
            }
        }
        self.pending = buf;
        Ok(records)
    }

    fn apply(&mut self, records: Vec<(Record, RecordPosition)>) -> Result<(), PipelineError> {
        for (index, (record, position)) in records.iter().enumerate() {
            if index == 1 {
                aerodb_wal::crash_point!("replica.mid_apply");
            }
            self.store.apply(ApplyInput::of_record(*position, record)).map_err(|e| PipelineError::Halt(Box::new(HaltReason::from_apply(&e, position.lsn))))?;
        }
        Ok(())
    }

    fn check_invariants(&self) {
        let p = self.positions();
        debug_assert!(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn, "pipeline order violated: {p:?}");
    }
}
