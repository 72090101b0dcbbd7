//! The WAL record: one committed write set or one garbage-collection step,
//! byte layout in docs/formats.md.
//!
//! ```text
//! off  size  field
//!   0     4  record_len   u32 LE, whole record including this field
//!   4     4  crc32c       over bytes [8, record_len) then bytes [0, 4)
//!   8     2  magic        0xAE57 ("AE" + 'W')
//!  10     1  version      1
//!  11     1  kind         1 = commit, 2 = gc
//!  12     4  op_count     u32 LE (0 for gc)
//!  16     8  commit_id    u64 LE
//!  24    16  state_digest u128 LE (digest after applying this record)
//!  40    16  fingerprint  u128 LE = H(previous fingerprint, bytes [8,40) ++ [56,len))
//!  56     …  body
//! commit body: ops, each
//!     kind u8 (1 put, 2 delete) | collection_len u8 | key_len u8 | 0u8 |
//!     doc_len u32 LE (0 for delete) | collection | key | doc
//! gc body (record_len = 64): history_horizon u64 LE (< commit_id)
//! ```
//!
//! A GC record consumes the next CommitId like a commit (so CommitIds stay
//! dense and every continuity rule is unchanged) but creates no version:
//! the state at its CommitId G equals the state at G - 1 minus the versions
//! no read view at or above its horizon can see (MVCC-4).

use bytes::Bytes;
use thiserror::Error;

use crate::hash::{chain_fingerprint, Fingerprint, StateDigest};
use crate::le::{u128_at as le_u128, u16_at as le_u16, u32_at as le_u32, u64_at as le_u64};
use crate::{CommitId, Lsn};

/// Size of the fixed record header in bytes.
pub const RECORD_HEADER_LEN: usize = 56;
/// Hard upper bound for one record; anything larger is corruption.
pub const MAX_RECORD_LEN: usize = 64 * 1024 * 1024;
const RECORD_MAGIC: u16 = 0xAE57;
const RECORD_VERSION: u8 = 1;
const KIND_COMMIT: u8 = 1;
const KIND_GC: u8 = 2;
/// Exact length of a GC record: the header and its 8-byte horizon.
pub const GC_RECORD_LEN: usize = RECORD_HEADER_LEN + 8;
const OP_HEADER_LEN: usize = 8;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;

/// One operation of a write set. Names are raw UTF-8 bytes, validated by
/// the caller that built the write set (the WAL stores bytes, not meaning).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Creates a version holding the full document body (canonical JSON).
    Put {
        /// Collection name.
        collection: Bytes,
        /// Key within the collection.
        key: Bytes,
        /// Full document body.
        doc: Bytes,
    },
    /// Creates a tombstone version.
    Delete {
        /// Collection name.
        collection: Bytes,
        /// Key within the collection.
        key: Bytes,
    },
}

impl Op {
    /// The collection this op writes.
    pub fn collection(&self) -> &[u8] {
        match self {
            Op::Put { collection, .. } | Op::Delete { collection, .. } => collection,
        }
    }
    /// The key this op writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }
    /// The document body, or `None` for a tombstone.
    pub fn doc(&self) -> Option<&[u8]> {
        match self {
            Op::Put { doc, .. } => Some(doc),
            Op::Delete { .. } => None,
        }
    }
    fn encoded_len(&self) -> usize {
        OP_HEADER_LEN + self.collection().len() + self.key().len() + self.doc().map_or(0, <[u8]>::len)
    }
}

/// What a record does: create versions, or collect old ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    /// A committed write set (kind 1), in the order the client gave it.
    Commit(Vec<Op>),
    /// A garbage-collection step (kind 2, MVCC-4): removes every version no
    /// read view at or above `horizon` can see, and makes `horizon` the
    /// oldest answerable read view. Creates no version.
    Gc {
        /// The new history horizon H (always below the record's CommitId).
        horizon: CommitId,
    },
}

impl RecordBody {
    /// The write set of a commit; empty for a GC record.
    pub fn ops(&self) -> &[Op] {
        match self {
            RecordBody::Commit(ops) => ops,
            RecordBody::Gc { .. } => &[],
        }
    }

    /// The horizon of a GC record; `None` for a commit.
    pub fn gc_horizon(&self) -> Option<CommitId> {
        match self {
            RecordBody::Commit(_) => None,
            RecordBody::Gc { horizon } => Some(*horizon),
        }
    }

    /// Stable name of the record kind (`commit` or `gc`) for tools and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            RecordBody::Commit(_) => "commit",
            RecordBody::Gc { .. } => "gc",
        }
    }
}

/// A fully decoded and checksum-verified record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// CommitId assigned by the primary.
    pub commit_id: CommitId,
    /// State digest after applying this record.
    pub state_digest: StateDigest,
    /// Chained history fingerprint of this record.
    pub fingerprint: Fingerprint,
    /// What the record does.
    pub body: RecordBody,
}

impl Record {
    /// The write set of a commit record; empty for a GC record.
    pub fn ops(&self) -> &[Op] {
        self.body.ops()
    }
}

/// Why bytes at some LSN are not a valid record. Each variant is a distinct,
/// stable reason that errors and explanations report verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum RecordDecodeError {
    /// Fewer bytes than a record header or than the declared length.
    #[error("truncated record: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Declared length outside `[RECORD_HEADER_LEN, MAX_RECORD_LEN]`.
    #[error("record length {len} out of bounds")]
    BadLength {
        /// The declared length.
        len: usize,
    },
    /// Stored and computed crc32c differ (CORE-2).
    #[error("crc32c mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Checksum stored in the record.
        stored: u32,
        /// Checksum of the bytes present.
        computed: u32,
    },
    /// Magic, version or kind is not one this build knows.
    #[error("bad record header: {what}")]
    BadHeader {
        /// Which header field is wrong.
        what: std::borrow::Cow<'static, str>,
    },
    /// The op list does not parse or does not fill the record exactly.
    #[error("malformed op list: {what}")]
    BadOps {
        /// What is wrong with the op list.
        what: std::borrow::Cow<'static, str>,
    },
    /// A GC record's body is malformed (wrong length, ops, or a horizon
    /// not below its own CommitId).
    #[error("malformed gc record: {what}")]
    BadGc {
        /// What is wrong with it.
        what: std::borrow::Cow<'static, str>,
    },
}

impl RecordDecodeError {
    /// Stable machine-readable code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            RecordDecodeError::Truncated { .. } => "RECORD_TRUNCATED",
            RecordDecodeError::BadLength { .. } => "RECORD_BAD_LENGTH",
            RecordDecodeError::Checksum { .. } => "CHECKSUM_MISMATCH",
            RecordDecodeError::BadHeader { .. } => "RECORD_BAD_HEADER",
            RecordDecodeError::BadOps { .. } => "RECORD_BAD_OPS",
            RecordDecodeError::BadGc { .. } => "RECORD_BAD_GC",
        }
    }
}

fn record_crc(rec: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&rec[8..]), &rec[0..4])
}

/// Reads the declared length of the record starting at `bytes[0]`, checking
/// only that it is within bounds and present. Used to cut whole records out
/// of a byte range without decoding them.
pub fn peek_record_len(bytes: &[u8]) -> Result<usize, RecordDecodeError> {
    if bytes.len() < 4 {
        return Err(RecordDecodeError::Truncated { needed: 4, available: bytes.len() });
    }
    let len = le_u32(bytes, 0) as usize;
    if !(RECORD_HEADER_LEN..=MAX_RECORD_LEN).contains(&len) {
        return Err(RecordDecodeError::BadLength { len });
    }
    if bytes.len() < len {
        return Err(RecordDecodeError::Truncated { needed: len, available: bytes.len() });
    }
    Ok(len)
}

/// Verifies length, crc32c and header of the record at the start of `bytes`
/// and returns its length. Does not parse ops (see [`decode_record`]).
pub fn check_record(bytes: &[u8]) -> Result<usize, RecordDecodeError> {
    let len = peek_record_len(bytes)?;
    let rec = &bytes[..len];
    let stored = le_u32(rec, 4);
    let computed = record_crc(rec);
    if stored != computed && !crate::plant::is_active(crate::plant::Plant::SkipRecordChecksum) {
        return Err(RecordDecodeError::Checksum { stored, computed });
    }
    if le_u16(rec, 8) != RECORD_MAGIC {
        return Err(RecordDecodeError::BadHeader { what: std::borrow::Cow::Borrowed("magic") });
    }
    if rec[10] != RECORD_VERSION {
        return Err(RecordDecodeError::BadHeader { what: std::borrow::Cow::Borrowed("version") });
    }
    if rec[11] != KIND_COMMIT && rec[11] != KIND_GC {
        return Err(RecordDecodeError::BadHeader { what: std::borrow::Cow::Borrowed("kind") });
    }
    Ok(len)
}

/// Decodes and checksum-verifies the record at the start of `bytes`
/// (CORE-2). Returns the record and its length. `bytes` may extend past the
/// record; ops borrow from it without copying (the store copies what it
/// keeps, so a retained version never pins a read buffer: RES-1).
pub fn decode_record(bytes: &Bytes) -> Result<(Record, usize), RecordDecodeError> {
    let len = check_record(bytes)?;
    let rec = bytes.slice(..len);
    let body = match rec[11] {
        KIND_GC => RecordBody::Gc { horizon: decode_gc_body(&rec)? },
        _ => RecordBody::Commit(decode_ops(&rec)?),
    };
    let record = Record { commit_id: le_u64(&rec, 16), state_digest: StateDigest(le_u128(&rec, 24)), fingerprint: Fingerprint(le_u128(&rec, 40)), body };
    Ok((record, len))
}

/// The horizon of a checked GC record: exactly 8 body bytes, no ops, and a
/// horizon below the record's own CommitId.
fn decode_gc_body(rec: &Bytes) -> Result<CommitId, RecordDecodeError> {
    if rec.len() != GC_RECORD_LEN {
        return Err(RecordDecodeError::BadGc { what: std::borrow::Cow::Borrowed("length") });
    }
    if le_u32(rec, 12) != 0 {
        return Err(RecordDecodeError::BadGc { what: std::borrow::Cow::Borrowed("op count") });
    }
    let horizon = le_u64(rec, RECORD_HEADER_LEN);
    if horizon >= le_u64(rec, 16) {
        return Err(RecordDecodeError::BadGc { what: std::borrow::Cow::Borrowed("horizon not below its CommitId") });
    }
    Ok(horizon)
}

/// The ops of a checked commit record.
fn decode_ops(rec: &Bytes) -> Result<Vec<Op>, RecordDecodeError> {
    let len = rec.len();
    let op_count = le_u32(rec, 12) as usize;
    // Each op needs at least its header plus one byte of collection and key.
    if op_count == 0 || op_count > (len - RECORD_HEADER_LEN) / (OP_HEADER_LEN + 2) {
        return Err(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("op count") });
    }
    let mut ops = Vec::with_capacity(op_count);
    let mut at = RECORD_HEADER_LEN;
    for _ in 0..op_count {
        if at + OP_HEADER_LEN > len {
            return Err(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("op header past end") });
        }
        let kind = rec[at];
        let coll_len = rec[at + 1] as usize;
        let key_len = rec[at + 2] as usize;
        let doc_len = le_u32(rec, at + 4) as usize;
        if rec[at + 3] != 0 || coll_len == 0 || key_len == 0 {
            return Err(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("op header fields") });
        }
        let body = at + OP_HEADER_LEN;
        let end = body
            .checked_add(coll_len + key_len)
            .and_then(|e| e.checked_add(doc_len))
            .filter(|e| *e <= len)
            .ok_or(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("op body past end") })?;
        let collection = rec.slice(body..body + coll_len);
        let key = rec.slice(body + coll_len..body + coll_len + key_len);
        let op = match kind {
            OP_PUT => Op::Put { collection, key, doc: rec.slice(body + coll_len + key_len..end) },
            OP_DELETE if doc_len == 0 => Op::Delete { collection, key },
            OP_DELETE => return Err(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("delete with body") }),
            _ => return Err(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("op kind") }),
        };
        ops.push(op);
        at = end;
    }
    if at != len {
        return Err(RecordDecodeError::BadOps { what: std::borrow::Cow::Borrowed("trailing bytes") });
    }
    Ok(ops)
}

/// Recomputes the fingerprint a record must carry given its predecessor's.
pub fn expected_fingerprint(previous: Fingerprint, record_bytes: &[u8]) -> Fingerprint {
    chain_fingerprint(previous, &[&record_bytes[8..40], &record_bytes[RECORD_HEADER_LEN..]])
}

/// Reads the fields a chain check needs from an already-checked record.
pub fn record_identity(record_bytes: &[u8]) -> (CommitId, Fingerprint) {
    (le_u64(record_bytes, 16), Fingerprint(le_u128(record_bytes, 40)))
}

/// Encodes a record of either kind (see [`encode_record`] and
/// [`encode_gc_record`]).
pub fn encode_body(
    commit_id: CommitId,
    state_digest: StateDigest,
    previous: Fingerprint,
    body: &RecordBody,
) -> Result<(Vec<u8>, Fingerprint), RecordEncodeError> {
    match body {
        RecordBody::Commit(ops) => encode_record(commit_id, state_digest, previous, ops),
        RecordBody::Gc { horizon } => encode_gc_record(commit_id, state_digest, previous, *horizon),
    }
}

/// Encodes a GC record (kind 2) stating the new history horizon, which
/// must be below `commit_id` (MVCC-4). Its checksum and fingerprint are
/// computed exactly as for a commit.
pub fn encode_gc_record(
    commit_id: CommitId,
    state_digest: StateDigest,
    previous: Fingerprint,
    horizon: CommitId,
) -> Result<(Vec<u8>, Fingerprint), RecordEncodeError> {
    if horizon >= commit_id {
        return Err(RecordEncodeError::BadHorizon { horizon, commit_id });
    }
    let mut buf = Vec::with_capacity(GC_RECORD_LEN);
    buf.extend_from_slice(&(GC_RECORD_LEN as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    buf.push(RECORD_VERSION);
    buf.push(KIND_GC);
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&commit_id.to_le_bytes());
    buf.extend_from_slice(&state_digest.0.to_le_bytes());
    buf.extend_from_slice(&[0; 16]);
    buf.extend_from_slice(&horizon.to_le_bytes());
    Ok(seal(buf, previous))
}

/// Fills in the fingerprint and the crc32c of an encoded record.
fn seal(mut buf: Vec<u8>, previous: Fingerprint) -> (Vec<u8>, Fingerprint) {
    let fingerprint = expected_fingerprint(previous, &buf);
    buf[40..56].copy_from_slice(&fingerprint.0.to_le_bytes());
    let crc = record_crc(&buf);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    (buf, fingerprint)
}

/// Encodes a commit record, computing its checksum and chained fingerprint.
/// The caller (the writer) is the only place CommitIds are assigned.
pub fn encode_record(commit_id: CommitId, state_digest: StateDigest, previous: Fingerprint, ops: &[Op]) -> Result<(Vec<u8>, Fingerprint), RecordEncodeError> {
    if ops.is_empty() {
        return Err(RecordEncodeError::Empty);
    }
    let len = RECORD_HEADER_LEN + ops.iter().map(Op::encoded_len).sum::<usize>();
    if len > MAX_RECORD_LEN {
        return Err(RecordEncodeError::TooLarge { len });
    }
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    buf.push(RECORD_VERSION);
    buf.push(KIND_COMMIT);
    buf.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    buf.extend_from_slice(&commit_id.to_le_bytes());
    buf.extend_from_slice(&state_digest.0.to_le_bytes());
    buf.extend_from_slice(&[0; 16]);
    for op in ops {
        let (c, k) = (op.collection(), op.key());
        if c.is_empty() || c.len() > 255 || k.is_empty() || k.len() > 255 {
            return Err(RecordEncodeError::BadName);
        }
        let (kind, doc) = match op {
            Op::Put { doc, .. } => (OP_PUT, &doc[..]),
            Op::Delete { .. } => (OP_DELETE, &[][..]),
        };
        buf.extend_from_slice(&[kind, c.len() as u8, k.len() as u8, 0]);
        buf.extend_from_slice(&(doc.len() as u32).to_le_bytes());
        buf.extend_from_slice(c);
        buf.extend_from_slice(k);
        buf.extend_from_slice(doc);
    }
    Ok(seal(buf, previous))
}

/// Why a write set cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RecordEncodeError {
    /// A record must create at least one version.
    #[error("empty write set")]
    Empty,
    /// Encoded size above [`MAX_RECORD_LEN`].
    #[error("record of {len} bytes exceeds the maximum")]
    TooLarge {
        /// Encoded length.
        len: usize,
    },
    /// Collection or key empty or longer than 255 bytes.
    #[error("collection and key must be 1..=255 bytes")]
    BadName,
    /// A GC record's horizon must be below its own CommitId.
    #[error("gc horizon {horizon} is not below the record's CommitId {commit_id}")]
    BadHorizon {
        /// The horizon.
        horizon: CommitId,
        /// The record's CommitId.
        commit_id: CommitId,
    },
}

/// Position of a record in the logical WAL stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecordPosition {
    /// Start LSN.
    pub lsn: Lsn,
    /// End LSN (first byte after the record).
    pub end_lsn: Lsn,
    /// CommitId carried by the record.
    pub commit_id: CommitId,
    /// Fingerprint carried by the record.
    pub fingerprint: Fingerprint,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &str, k: &str, d: &str) -> Op {
        Op::Put { collection: Bytes::copy_from_slice(c.as_bytes()), key: Bytes::copy_from_slice(k.as_bytes()), doc: Bytes::copy_from_slice(d.as_bytes()) }
    }

    /// CORE-2: a record round-trips and every single-byte flip is caught.
    #[test]
    fn core_2_every_byte_flip_is_detected() {
        let ops = vec![put("c", "k", "{\"a\":1}"), Op::Delete { collection: Bytes::from_static(b"c"), key: Bytes::from_static(b"k2") }];
        let (bytes, fp) = encode_record(7, StateDigest(9), Fingerprint(3), &ops).unwrap();
        let b = Bytes::from(bytes.clone());
        let (rec, len) = decode_record(&b).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(rec.ops(), &ops[..]);
        assert_eq!(rec.fingerprint, fp);
        assert_eq!(expected_fingerprint(Fingerprint(3), &bytes), fp);
        assert_ne!(expected_fingerprint(Fingerprint(4), &bytes), fp);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_record(&Bytes::from(bad)).is_err(), "flip at {i} undetected");
        }
    }

    /// CORE-2: truncated records are reported as truncated, not decoded.
    #[test]
    fn core_2_truncation_is_detected() {
        let (bytes, _) = encode_record(1, StateDigest(0), Fingerprint(0), &[put("c", "k", "1")]).unwrap();
        for cut in 0..bytes.len() {
            let err = decode_record(&Bytes::copy_from_slice(&bytes[..cut])).unwrap_err();
            assert!(matches!(err, RecordDecodeError::Truncated { .. }), "cut {cut}: {err:?}");
        }
    }

    /// MVCC-4: a GC record round-trips, chains its fingerprint like a
    /// commit, and every single-byte flip is caught (CORE-2).
    #[test]
    fn mvcc_4_gc_record_round_trips_and_every_byte_flip_is_detected() {
        let (bytes, fp) = encode_gc_record(9, StateDigest(77), Fingerprint(3), 5).unwrap();
        assert_eq!(bytes.len(), GC_RECORD_LEN);
        let (rec, len) = decode_record(&Bytes::from(bytes.clone())).unwrap();
        assert_eq!(len, GC_RECORD_LEN);
        assert_eq!(rec, Record { commit_id: 9, state_digest: StateDigest(77), fingerprint: fp, body: RecordBody::Gc { horizon: 5 } });
        assert!(rec.ops().is_empty());
        assert_eq!(rec.body.gc_horizon(), Some(5));
        assert_eq!(expected_fingerprint(Fingerprint(3), &bytes), fp);
        assert_eq!(record_identity(&bytes), (9, fp));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode_record(&Bytes::from(bad)).is_err(), "flip at {i} undetected");
        }
    }

    /// MVCC-4: the GC record layout is pinned byte by byte (docs/formats.md):
    /// this fixture was written once and must decode, and be re-encoded,
    /// identically forever.
    #[test]
    fn mvcc_4_gc_record_layout_is_pinned() {
        const FIXTURE: &str =
            "40000000ba902c0357ae01020000000002010000000000000b0a0000000000000000000000000000ab5728823c455c68d7f94a64006a64700101000000000000";
        let (bytes, fp) = encode_gc_record(0x0102, StateDigest(0x0a0b), Fingerprint(1), 0x0101).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, FIXTURE);
        assert_eq!(&hex[..8], "40000000", "record_len 64");
        assert_eq!(&hex[16..24], "57ae0102", "magic, version 1, kind 2");
        assert_eq!(&hex[24..32], "00000000", "op_count 0");
        assert_eq!(&hex[32..48], "0201000000000000", "commit_id");
        assert_eq!(&hex[48..80], "0b0a0000000000000000000000000000", "state digest");
        assert_eq!(&hex[112..128], "0101000000000000", "horizon");
        let fixture: Vec<u8> = (0..FIXTURE.len()).step_by(2).map(|i| u8::from_str_radix(&FIXTURE[i..i + 2], 16).unwrap()).collect();
        let (rec, _) = decode_record(&Bytes::from(fixture)).unwrap();
        assert_eq!(rec, Record { commit_id: 0x0102, state_digest: StateDigest(0x0a0b), fingerprint: fp, body: RecordBody::Gc { horizon: 0x0101 } });
    }

    /// MVCC-4: a GC record whose horizon is not below its CommitId, that
    /// carries ops, or that has extra bytes is refused; so is encoding one.
    #[test]
    fn mvcc_4_malformed_gc_records_are_refused() {
        assert_eq!(encode_gc_record(5, StateDigest(0), Fingerprint(0), 5), Err(RecordEncodeError::BadHorizon { horizon: 5, commit_id: 5 }));
        let reseal = |mut b: Vec<u8>| {
            let crc = record_crc(&b);
            b[4..8].copy_from_slice(&crc.to_le_bytes());
            Bytes::from(b)
        };
        let (good, _) = encode_gc_record(5, StateDigest(0), Fingerprint(0), 4).unwrap();
        let mut at_own = good.clone();
        at_own[56..64].copy_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            decode_record(&reseal(at_own)).unwrap_err(),
            RecordDecodeError::BadGc { what: std::borrow::Cow::Borrowed("horizon not below its CommitId") }
        );
        let mut with_ops = good.clone();
        with_ops[12] = 1;
        assert_eq!(decode_record(&reseal(with_ops)).unwrap_err(), RecordDecodeError::BadGc { what: std::borrow::Cow::Borrowed("op count") });
        let mut longer = good.clone();
        longer.extend_from_slice(&[0; 8]);
        longer[0..4].copy_from_slice(&((GC_RECORD_LEN + 8) as u32).to_le_bytes());
        assert_eq!(decode_record(&reseal(longer)).unwrap_err().code(), "RECORD_BAD_GC");
        let mut unknown = good;
        unknown[11] = 3;
        assert_eq!(decode_record(&reseal(unknown)).unwrap_err(), RecordDecodeError::BadHeader { what: std::borrow::Cow::Borrowed("kind") });
    }

    /// CORE-2: a kind-1 record written by the first format version decodes
    /// unchanged (fixture bytes kept forever).
    #[test]
    fn core_2_version_1_commit_record_fixture_decodes_unchanged() {
        const FIXTURE: &str =
            "430000003076efca57ae0101010000000100000000000000020000000000000000000000000000008329a7447f93db48e372c57c2d8a777c0101010001000000636b31";
        let (bytes, fp) = encode_record(1, StateDigest(2), Fingerprint(3), &[put("c", "k", "1")]).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, FIXTURE);
        let fixture: Vec<u8> = (0..FIXTURE.len()).step_by(2).map(|i| u8::from_str_radix(&FIXTURE[i..i + 2], 16).unwrap()).collect();
        let (rec, _) = decode_record(&Bytes::from(fixture)).unwrap();
        assert_eq!(rec, Record { commit_id: 1, state_digest: StateDigest(2), fingerprint: fp, body: RecordBody::Commit(vec![put("c", "k", "1")]) });
    }

    proptest::proptest! {
        /// CORE-2: the decoder never panics on arbitrary bytes.
        #[test]
        fn core_2_decoder_total_on_arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode_record(&Bytes::from(data));
        }

        /// CORE-2: arbitrary content behind a valid length and crc32c (so it
        /// reaches header and op parsing) is decoded or refused, never a panic,
        /// and whatever decodes re-encodes to exactly the same bytes.
        #[test]
        fn core_2_decoder_total_behind_a_valid_checksum(body in proptest::collection::vec(proptest::num::u8::ANY, 48..400), magic in proptest::bool::ANY) {
            let mut rec = Vec::with_capacity(8 + body.len());
            rec.extend_from_slice(&((8 + body.len()) as u32).to_le_bytes());
            rec.extend_from_slice(&[0; 4]);
            rec.extend_from_slice(&body);
            if magic {
                // Make the header plausible so op parsing is reached often.
                rec[8..10].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
                rec[10] = RECORD_VERSION;
                rec[11] = if rec[13] % 5 == 0 { KIND_GC } else { KIND_COMMIT };
                let op_count = if rec[11] == KIND_GC { 0 } else { u32::from(rec[12] % 4) + 1 };
                rec[12..16].copy_from_slice(&op_count.to_le_bytes());
            }
            let crc = record_crc(&rec);
            rec[4..8].copy_from_slice(&crc.to_le_bytes());
            if let Ok((record, len)) = decode_record(&Bytes::from(rec.clone())) {
                let (again, _) = encode_body(record.commit_id, record.state_digest, Fingerprint(0), &record.body).unwrap();
                proptest::prop_assert_eq!(len, rec.len());
                proptest::prop_assert_eq!(&again[8..40], &rec[8..40]);
                proptest::prop_assert_eq!(&again[56..], &rec[56..]);
            }
        }
    }
}
