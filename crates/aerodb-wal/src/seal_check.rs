//! Re-verifying a sealed WAL segment (scrub, CORE-6): a segment that is no
//! longer appended to is read again, in bounded chunks, and must still be a
//! valid header followed by whole records that chain from it (crc32c,
//! CommitId and LSN continuity, fingerprints: the one validation routine,
//! [`ChainValidator`]), ending exactly where the next segment starts.
//!
//! Damage is reported with the file offset of the first bad byte found and
//! the check that failed; nothing is ever changed.

use std::ops::ControlFlow;
use std::path::Path;

use bytes::Bytes;
use serde::Serialize;

use crate::disk::Disk;
use crate::record::{peek_record_len, RecordDecodeError};
use crate::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::validate::{ChainTip, ChainValidator, ChainViolation};
use crate::Lsn;

/// Bytes read from a segment at a time. Small on purpose: the scrub runs
/// in the background of a serving node, and its buffer (at most a chunk
/// plus one partly read record) is memory that does not follow live data
/// (RES-1); a 1 MiB chunk kept about 2 MiB resident on every scrubbing node.
const SEAL_CHECK_CHUNK: usize = 64 * 1024;

/// What a clean check of one sealed segment covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SealedSegmentCheck {
    /// Chain state the header declares.
    pub start: ChainTip,
    /// Chain state after its last record.
    pub end: ChainTip,
    /// Records verified.
    pub records: u64,
    /// Bytes read (header included).
    pub bytes: u64,
}

/// Damage found in a sealed segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentDamage {
    /// File offset of the first damaged byte found.
    pub offset: u64,
    /// LSN of that byte (None inside the header).
    pub lsn: Option<Lsn>,
    /// Stable code of the failed check (e.g. `CHECKSUM_MISMATCH`).
    pub code: &'static str,
    /// The rule of the failed check (e.g. `CORE-2`).
    pub check_rule: &'static str,
    /// What is wrong.
    pub detail: String,
}

/// Why a sealed segment could not be confirmed.
#[derive(Debug)]
pub enum SealedSegmentError {
    /// The file no longer exists (removed by retention meanwhile): not damage.
    Vanished,
    /// The file could not be read.
    Io(std::io::Error),
    /// The bytes are damaged.
    Damaged(SegmentDamage),
    /// `pace` asked to stop (the node is shutting down, RES-3) before the
    /// whole segment was read: nothing is known about the rest.
    Interrupted,
}

fn damage(offset: u64, lsn: Option<Lsn>, code: &'static str, check_rule: &'static str, detail: String) -> SealedSegmentError {
    SealedSegmentError::Damaged(SegmentDamage { offset, lsn, code, check_rule, detail })
}

fn violation(v: &ChainViolation, start_lsn: Lsn) -> SealedSegmentError {
    damage(SEGMENT_HEADER_LEN + (v.lsn() - start_lsn), Some(v.lsn()), v.code(), v.rule_id(), v.to_string())
}

/// Verifies the sealed segment at `path` (see the module docs). When
/// `expected_end` is given (the next segment's declared start), the last
/// record must end exactly there. `pace` is called with each chunk's size
/// before it is read, so the caller can bound the IO rate; when it answers
/// `Break` the check ends at once with [`SealedSegmentError::Interrupted`]
/// (a shutdown must not wait for a whole segment to be read, RES-3).
pub fn verify_sealed_segment(
    disk: &dyn Disk,
    path: &Path,
    expected_end: Option<ChainTip>,
    pace: &mut dyn FnMut(u64) -> ControlFlow<()>,
) -> Result<SealedSegmentCheck, SealedSegmentError> {
    let file = disk.open(path).map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { SealedSegmentError::Vanished } else { SealedSegmentError::Io(e) })?;
    let len = file.len().map_err(SealedSegmentError::Io)?;
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    if len < SEGMENT_HEADER_LEN {
        return Err(damage(0, None, "WAL_BAD_SEGMENT_HEADER", "CORE-2", format!("file is {len} bytes, shorter than a segment header")));
    }
    if pace(SEGMENT_HEADER_LEN).is_break() {
        return Err(SealedSegmentError::Interrupted);
    }
    file.read_exact_at(&mut head, 0).map_err(SealedSegmentError::Io)?;
    let header = SegmentHeader::decode(&head).map_err(|e| damage(0, None, "WAL_BAD_SEGMENT_HEADER", "CORE-2", e.to_string()))?;
    let start = ChainTip::of_segment(&header);
    let mut chain = ChainValidator::new(start);
    let mut records = 0u64;
    // Read bytes not yet consumed are `pending[pos..]`, starting at LSN `at`;
    // `read` is the file offset read up to.
    let mut pending: Vec<u8> = Vec::new();
    let mut pos = 0usize;
    let mut at = header.start_lsn;
    let mut read = SEGMENT_HEADER_LEN;
    loop {
        let need = match peek_record_len(&pending[pos..]) {
            Ok(rec_len) => {
                let bytes = Bytes::copy_from_slice(&pending[pos..pos + rec_len]);
                chain.validate(at, &bytes).map_err(|v| violation(&v, header.start_lsn))?;
                pos += rec_len;
                at += rec_len as u64;
                records += 1;
                continue;
            }
            Err(RecordDecodeError::Truncated { needed, .. }) => needed,
            Err(error) => return Err(violation(&ChainViolation::InvalidRecord { lsn: at, error }, header.start_lsn)),
        };
        let left = pending.len() - pos;
        if read >= len {
            if left == 0 {
                break;
            }
            let error = RecordDecodeError::Truncated { needed: need, available: left };
            return Err(violation(&ChainViolation::InvalidRecord { lsn: at, error }, header.start_lsn));
        }
        pending.drain(..pos);
        pos = 0;
        let n = (len - read).min(SEAL_CHECK_CHUNK.max(need.saturating_sub(left)) as u64);
        if pace(n).is_break() {
            return Err(SealedSegmentError::Interrupted);
        }
        let old = pending.len();
        // Exact: no doubling beyond a chunk plus the record being completed.
        pending.reserve_exact(n as usize);
        pending.resize(old + n as usize, 0);
        file.read_exact_at(&mut pending[old..], read).map_err(SealedSegmentError::Io)?;
        read += n;
    }
    let end = chain.tip();
    if let Some(next) = expected_end {
        if next != end {
            return Err(damage(
                len,
                Some(end.end_lsn),
                "SEGMENT_DISCONTINUITY",
                "REPL-7",
                format!(
                    "segment ends at LSN {} with CommitId {} but the next segment declares LSN {} after CommitId {}",
                    end.end_lsn, end.commit_id, next.end_lsn, next.commit_id
                ),
            ));
        }
    }
    Ok(SealedSegmentCheck { start, end, records, bytes: len })
}
