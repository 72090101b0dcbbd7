//! The replica pipeline (REPLICATION.md §5): receiver → validator →
//! applier, each owning one position. This module is the sans-IO part:
//! [`StreamState`] decides what to persist, validates, and decides what to
//! apply; the storage executors in [`crate::storage`] do the file and store
//! work and report completions back. [`ReplicaPipeline`] composes both
//! synchronously (used by tests and by tools that need no concurrency).
//!
//! - Receiver: a chunk must start at exactly the end of what was handed to
//!   storage; a segment may start only at a record boundary. Anything else
//!   is a protocol error (F-N2): nothing is persisted, the connection drops.
//! - Validator: crc32c, LSN continuity, CommitId = previous + 1 and the
//!   fingerprint chain, record by record (a record split across chunks
//!   waits for the rest); any violation halts (F-V1, F-V2, F-D1).
//! - Applier: only records that are both validated and durable are handed
//!   out for apply, in order (P5-I5).
//!
//! Published positions always satisfy `applied <= validated <= received`
//! (`validated` counts only durable bytes).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use aerodb_mvcc::{AppliedState, Store};
use aerodb_wal::log::{LogError, SegmentAppender};
use aerodb_wal::record::{peek_record_len, RecordDecodeError};
use aerodb_wal::segment::SegmentHeader;
use aerodb_wal::{ChainTip, ChainValidator, ChainViolation, Lsn, Record, RecordPosition};

use crate::halt::Halt;
use crate::positions::Positions;
use crate::storage::{Applier, WalSink};
use crate::wire::MessageError;

pub use crate::wire::ReceivedChunk;

/// A record that passed validation, with its position.
pub type ValidatedRecord = (Record, RecordPosition);

/// Why a chunk was not taken.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The peer broke the protocol (out-of-order LSN, bad segment start):
    /// drop the connection, keep state, persist nothing (F-N2).
    #[error("protocol error: {0}")]
    Protocol(MessageError),
    /// An integrity failure: halt.
    #[error("integrity failure")]
    Halt(Box<Halt>),
    /// Local IO failed (only from [`ReplicaPipeline`], which runs storage inline).
    #[error(transparent)]
    Io(#[from] LogError),
}

fn protocol(detail: String) -> PipelineError {
    PipelineError::Protocol(MessageError { kind: "Wal".into(), detail })
}

/// What storage must make durable for one accepted chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistWork {
    /// LSN of the first byte.
    pub start_lsn: Lsn,
    /// A new segment starting at `start_lsn`, with the primary's header.
    pub new_segment: Option<SegmentHeader>,
    /// Verbatim bytes.
    pub bytes: Bytes,
}

/// The sans-IO state of a replica's WAL stream after bootstrap or recovery.
#[derive(Debug)]
pub struct StreamState {
    /// Header of the replica's current (last) segment.
    segment: SegmentHeader,
    /// Bytes in the current segment (after its header) handed to storage.
    segment_len: u64,
    /// End of everything handed to storage (durable or not).
    issued_end: Lsn,
    /// End of the bytes storage reported durable (`received_lsn`).
    durable_end: Lsn,
    validator: ChainValidator,
    /// Received bytes after the validator's tip: the start of a record
    /// whose rest has not arrived.
    pending: Bytes,
    /// Validated records not yet handed out for apply (waiting for their
    /// bytes to become durable).
    validated: VecDeque<ValidatedRecord>,
    /// End of the records handed out for apply.
    apply_issued_end: Lsn,
    /// What storage reported applied.
    applied: AppliedState,
}

impl StreamState {
    /// A stream continuing after a recovered (or freshly bootstrapped) WAL
    /// whose validated, durable and applied end is `applied`, with
    /// `segment` its last segment header and `segment_len` the bytes in it.
    pub fn new(applied: AppliedState, segment: SegmentHeader, segment_len: u64) -> Self {
        let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
        StreamState {
            segment,
            segment_len,
            issued_end: tip.end_lsn,
            durable_end: tip.end_lsn,
            validator: ChainValidator::new(tip),
            pending: Bytes::new(),
            validated: VecDeque::new(),
            apply_issued_end: tip.end_lsn,
            applied,
        }
    }

    /// The resume point to state in a handshake: the end of the validated
    /// history. Only meaningful when no bytes beyond it are held (see
    /// [`StreamState::unvalidated_tail`]).
    pub fn resume_tip(&self) -> ChainTip {
        self.validator.tip()
    }

    /// Received bytes that were never validated (a record cut by a
    /// disconnect): `Some(tip end)` when storage must drop them before the
    /// next handshake resumes from the tip.
    pub fn unvalidated_tail(&self) -> Option<Lsn> {
        (self.issued_end > self.validator.tip().end_lsn).then_some(self.validator.tip().end_lsn)
    }

    /// Forgets the unvalidated tail (storage dropped it): the receiver
    /// expects the next chunk exactly at the validated end again.
    pub fn tail_dropped(&mut self) {
        let tip = self.validator.tip().end_lsn;
        let dropped = self.issued_end - tip;
        self.issued_end = tip;
        self.durable_end = self.durable_end.min(tip);
        self.segment_len = self.segment_len.saturating_sub(dropped);
        self.pending = Bytes::new();
    }

    /// Whether storage still has persists outstanding.
    pub fn persists_in_flight(&self) -> bool {
        self.issued_end != self.durable_end
    }

    /// Bytes accepted but not yet applied (for backpressure).
    pub fn unapplied_bytes(&self) -> u64 {
        self.issued_end.saturating_sub(self.applied.end_lsn)
    }

    /// Whether every complete record received is applied, so what is
    /// unapplied is at most the start of one record still arriving. Only
    /// more bytes can free the budget then: a record larger than the
    /// budget (up to `MAX_RECORD_LEN`) must still arrive whole.
    pub fn only_a_partial_record_unapplied(&self) -> bool {
        self.applied.end_lsn == self.validator.tip().end_lsn
    }

    /// What storage reported applied.
    pub fn applied(&self) -> AppliedState {
        self.applied
    }

    /// Current positions: `validated` counts only durable bytes.
    pub fn positions(&self) -> Positions {
        Positions {
            received_lsn: self.durable_end,
            validated_lsn: self.validator.tip().end_lsn.min(self.durable_end),
            applied_lsn: self.applied.end_lsn,
            applied_commit_id: self.applied.commit_id,
        }
    }

    /// Receiver + validator for one chunk. On success returns what storage
    /// must persist; the chunk's complete records are validated and queued
    /// for apply once durable. On error nothing changed and nothing is to
    /// be persisted.
    pub fn receive(&mut self, chunk: ReceivedChunk) -> Result<PersistWork, PipelineError> {
        if chunk.start_lsn != self.issued_end {
            return Err(protocol(format!("chunk starts at LSN {} but the replica WAL ends at {}", chunk.start_lsn, self.issued_end)));
        }
        let mut new_segment = None;
        if let Some(header) = chunk.segment_start {
            if header.start_lsn != chunk.start_lsn {
                return Err(protocol(format!("segment header says LSN {} for a chunk at {}", header.start_lsn, chunk.start_lsn)));
            }
            let at_boundary = self.pending.is_empty() && self.validator.tip().end_lsn == self.issued_end;
            if !at_boundary {
                return Err(protocol(format!("segment starts at LSN {} inside an incomplete record", header.start_lsn)));
            }
            if self.segment_len > 0 || header != self.segment {
                // Both describe the history at this LSN; the header must continue it.
                self.validator.check_segment_start(&header).map_err(|v| PipelineError::Halt(Box::new(Halt::from_violation(&v))))?;
            }
            if self.segment_len > 0 {
                new_segment = Some(header);
            }
        }
        let records = self.validate(&chunk.bytes)?;
        let len = chunk.bytes.len() as u64;
        if let Some(h) = new_segment {
            self.segment = h;
            self.segment_len = 0;
        }
        self.segment_len += len;
        self.issued_end += len;
        self.validated.extend(records);
        Ok(PersistWork { start_lsn: chunk.start_lsn, new_segment, bytes: chunk.bytes })
    }

    /// Validates `bytes` after the pending partial record. Commits the
    /// validator's progress only if every complete record is valid.
    ///
    /// A chunk rarely starts at a record boundary, so a partial record is
    /// usually pending. Only the bytes that complete it are copied (joined
    /// to it); the rest of the chunk is validated in place, as slices of
    /// the received buffer, instead of copying every chunk whole.
    fn validate(&mut self, bytes: &Bytes) -> Result<Vec<ValidatedRecord>, PipelineError> {
        let mut validator = self.validator.clone();
        let mut records = Vec::new();
        let pending = if self.pending.is_empty() {
            validate_run(&mut validator, bytes.clone(), &mut records)?
        } else {
            let take = self.bytes_completing_pending(bytes);
            let left = validate_run(&mut validator, joined(&self.pending, &bytes[..take]), &mut records)?;
            let rest = bytes.slice(take..);
            match (left.is_empty(), rest.is_empty()) {
                (_, true) => left,
                (true, false) => validate_run(&mut validator, rest, &mut records)?,
                // Not reached: `take` completes the pending record as its
                // header declares it. Whatever is left is validated joined.
                (false, false) => validate_run(&mut validator, joined(&left, &rest), &mut records)?,
            }
        };
        self.validator = validator;
        self.pending = pending;
        Ok(records)
    }

    /// How many bytes at the start of `bytes` complete the pending partial
    /// record, as its length field declares it; all of `bytes` when they
    /// do not, or when the length cannot be read or is out of bounds (the
    /// validator then reports the record's fault on the joined bytes).
    fn bytes_completing_pending(&self, bytes: &[u8]) -> usize {
        let have = self.pending.len();
        let mut len_field = [0u8; 4];
        let from_pending = have.min(4);
        len_field[..from_pending].copy_from_slice(&self.pending[..from_pending]);
        let from_chunk = 4 - from_pending;
        if bytes.len() < from_chunk {
            return bytes.len();
        }
        len_field[from_pending..].copy_from_slice(&bytes[..from_chunk]);
        match peek_record_len(&len_field) {
            Err(RecordDecodeError::Truncated { needed, .. }) if needed > have => (needed - have).min(bytes.len()),
            _ => bytes.len(),
        }
    }

    /// Storage made everything up to `through` durable. Returns the
    /// validated records that may now be applied, in order.
    pub fn persisted(&mut self, through: Lsn) -> Vec<ValidatedRecord> {
        self.durable_end = self.durable_end.max(through.min(self.issued_end));
        let mut ready = Vec::new();
        while self.validated.front().is_some_and(|(_, p)| p.end_lsn <= self.durable_end) {
            if let Some(r) = self.validated.pop_front() {
                self.apply_issued_end = r.1.end_lsn;
                ready.push(r);
            }
        }
        ready
    }

    /// Storage applied everything up to `state`.
    pub fn applied_through(&mut self, state: AppliedState) {
        if state.end_lsn > self.applied.end_lsn {
            self.applied = state;
        }
        self.check_invariants();
    }

    /// What must hold at every step.
    pub fn check_invariants(&self) {
        let p = self.positions();
        debug_assert!(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn, "pipeline order violated: {p:?}");
        debug_assert!(self.applied.end_lsn <= self.apply_issued_end && self.apply_issued_end <= self.issued_end, "apply beyond receive");
    }
}

/// `a` followed by `b`, in one new buffer.
fn joined(a: &[u8], b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(a.len() + b.len());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out.freeze()
}

/// Validates the records at the start of `buf` in order, pushing each to
/// `records`; returns the bytes after the last complete record (the start
/// of a record whose rest has not arrived).
fn validate_run(validator: &mut ChainValidator, mut buf: Bytes, records: &mut Vec<ValidatedRecord>) -> Result<Bytes, PipelineError> {
    while !buf.is_empty() {
        let lsn = validator.tip().end_lsn;
        match validator.validate(lsn, &buf) {
            Ok((record, position)) => {
                buf = buf.slice((position.end_lsn - lsn) as usize..);
                records.push((record, position));
            }
            Err(ChainViolation::InvalidRecord { error: RecordDecodeError::Truncated { .. }, .. }) => break,
            Err(v) => return Err(PipelineError::Halt(Box::new(Halt::from_violation(&v)))),
        }
    }
    Ok(buf)
}

/// The three stages run synchronously on one thread: receive → persist →
/// validate → apply for each chunk.
pub struct ReplicaPipeline {
    stream: StreamState,
    sink: WalSink,
    applier: Applier,
}

impl ReplicaPipeline {
    /// A pipeline continuing from a recovered WAL whose validated and
    /// applied end is the store's applied state.
    pub fn new(appender: SegmentAppender, store: Arc<Store>) -> Self {
        let applied = store.applied();
        let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
        let last = appender.segments().snapshot().last().copied();
        let segment = last.map_or(tip.segment_header(), |s| s.header);
        let segment_len = last.map_or(0, |s| s.end_lsn - s.header.start_lsn);
        ReplicaPipeline { stream: StreamState::new(applied, segment, segment_len), sink: WalSink::new(appender), applier: Applier::new(store) }
    }

    /// The store being applied to.
    pub fn store(&self) -> &Arc<Store> {
        self.applier.store()
    }

    /// Current positions.
    pub fn positions(&self) -> Positions {
        self.stream.positions()
    }

    /// The resume point for a handshake.
    pub fn resume_tip(&self) -> ChainTip {
        self.stream.resume_tip()
    }

    /// Drops received bytes that were never validated (before a new session).
    pub fn drop_unvalidated_tail(&mut self) -> Result<(), LogError> {
        if let Some(to) = self.stream.unvalidated_tail() {
            self.sink.truncate_unvalidated(to)?;
            self.stream.tail_dropped();
        }
        Ok(())
    }

    /// Takes one chunk through all three stages.
    pub fn take(&mut self, chunk: ReceivedChunk) -> Result<(), PipelineError> {
        let work = self.stream.receive(chunk)?;
        let through = self.sink.persist(&work)?;
        let ready = self.stream.persisted(through);
        if !ready.is_empty() {
            let state = self.applier.apply(&ready).map_err(|(lsn, e)| PipelineError::Halt(Box::new(Halt::from_apply(&e, lsn))))?;
            self.stream.applied_through(state);
        }
        Ok(())
    }
}
