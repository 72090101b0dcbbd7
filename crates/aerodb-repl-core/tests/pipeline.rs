#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Component tests of the replica pipeline (REPLICATION.md §5) with real
//! files: a primary WAL written by the real `WalWriter` in a scratch
//! directory, shipped in chunks into a `ReplicaPipeline` over a real
//! `SegmentAppender` and `Store`.

use std::sync::Arc;

use aerodb_mvcc::Store;
use aerodb_repl_core::pipeline::{PipelineError, ReceivedChunk, ReplicaPipeline};
use aerodb_repl_core::status::Positions;
use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::{SegmentAppender, WalReader};
use aerodb_wal::record::encode_record;
use aerodb_wal::segment::SEGMENT_HEADER_LEN;
use aerodb_wal::writer::{AppendedRecord, WalWriter};
use aerodb_wal::{ChainTip, Lsn, Op, StateDigest};
use bytes::Bytes;
use proptest::prelude::*;
use tempfile::TempDir;

fn put(key: &str, doc: &str) -> Op {
    Op::Put { collection: Bytes::from_static(b"c"), key: Bytes::copy_from_slice(key.as_bytes()), doc: Bytes::copy_from_slice(doc.as_bytes()) }
}

fn ops_for(i: u64) -> Vec<Op> {
    let mut ops = vec![put(&format!("k{}", i % 5), &format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat((i % 9) as usize * 4)))];
    if i.is_multiple_of(3) {
        ops.push(Op::Delete { collection: Bytes::from_static(b"c"), key: Bytes::copy_from_slice(format!("k{}", (i + 1) % 5).as_bytes()) });
    }
    ops
}

/// A primary WAL of `n` commits: the records' positions and the stream bytes from LSN 0.
struct PrimaryWal {
    _dir: TempDir,
    records: Vec<AppendedRecord>,
    bytes: Bytes,
}

fn primary_wal(n: u64) -> PrimaryWal {
    let dir = tempfile::tempdir().unwrap();
    let appender = SegmentAppender::create(OsDisk::shared(), &dir.path().join("wal"), ChainTip::GENESIS.segment_header()).unwrap();
    let mut writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, 64 * 1024 * 1024);
    let records: Vec<_> = (1..=n).map(|i| writer.append(&ops_for(i)).unwrap()).collect();
    let end = writer.sync().unwrap();
    let mut reader = WalReader::new(OsDisk::shared(), writer.segments().clone());
    let chunk = reader.read_chunk(0, end, usize::MAX / 2).unwrap();
    assert_eq!(chunk.bytes.len() as u64, end);
    PrimaryWal { _dir: dir, records, bytes: chunk.bytes }
}

impl PrimaryWal {
    fn range(&self, from: Lsn, to: Lsn) -> Bytes {
        self.bytes.slice(from as usize..to as usize)
    }
    /// Records `a..=b` (1-based CommitIds) as one chunk.
    fn commits(&self, a: u64, b: u64) -> ReceivedChunk {
        let from = self.records[a as usize - 1].position.lsn;
        let to = self.records[b as usize - 1].position.end_lsn;
        chunk(from, self.range(from, to))
    }
}

fn chunk(start_lsn: Lsn, bytes: Bytes) -> ReceivedChunk {
    ReceivedChunk { start_lsn, segment_start: None, bytes }
}

struct Replica {
    dir: TempDir,
    pipeline: ReplicaPipeline,
}

fn replica() -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let appender = SegmentAppender::create(OsDisk::shared(), &dir.path().join("wal"), ChainTip::GENESIS.segment_header()).unwrap();
    let pipeline = ReplicaPipeline::new(appender, Arc::new(Store::new()));
    Replica { dir, pipeline }
}

fn ordered(p: &Positions) {
    assert!(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn, "applied <= validated <= received violated: {p:?}");
}

impl Replica {
    /// Takes a chunk, checking the position order after every stage.
    fn take(&mut self, c: ReceivedChunk) -> Result<(), PipelineError> {
        let r = self.pipeline.take(c);
        ordered(&self.pipeline.positions());
        r
    }
    fn positions(&self) -> Positions {
        self.pipeline.positions()
    }
    /// The replica's WAL bytes (one segment, header excluded).
    fn wal_bytes(&self) -> Vec<u8> {
        let seg =
            std::fs::read_dir(self.dir.path().join("wal")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "seg")).unwrap();
        std::fs::read(seg).unwrap()[SEGMENT_HEADER_LEN as usize..].to_vec()
    }
    fn visible(&self, key: &str, at: Option<u64>) -> Option<u64> {
        let view = self.pipeline.store().read_view(at).unwrap();
        view.get(b"c", key.as_bytes()).map(|v| v.commit_id)
    }
}

/// REPL-3 / P5-I4: the replica's WAL is a byte-exact prefix of the primary's.
fn assert_prefix(r: &Replica, p: &PrimaryWal) {
    let mine = r.wal_bytes();
    assert_eq!(mine.len() as u64, r.positions().received_lsn, "every received byte is on disk");
    assert!(p.bytes.len() >= mine.len() && p.bytes[..mine.len()] == mine[..], "replica WAL is not a prefix of the primary's");
}

fn halt_of(r: Result<(), PipelineError>) -> aerodb_repl_core::halt::ReasonView {
    match r {
        Err(PipelineError::Halt(h)) => aerodb_repl_core::Reason::view(&*h),
        other => panic!("expected a halt, got {other:?}"),
    }
}

fn flip(bytes: &Bytes, at: usize) -> Bytes {
    let mut b = bytes.to_vec();
    b[at] ^= 0x10;
    Bytes::from(b)
}

/// P5-I5 / CORE-2 / F-V1: a chunk holding a damaged record halts; nothing of
/// that chunk is applied (not even the valid record before the damaged one),
/// so applied_lsn and C_replica are unchanged and no version becomes visible.
#[test]
fn p5_i5_chunk_with_bad_record_halts_and_leaves_applied_unchanged() {
    let p = primary_wal(6);
    let mut r = replica();
    r.take(p.commits(1, 2)).unwrap();
    let before = r.positions();
    assert_eq!(before.applied_commit_id, 2);
    let good = p.commits(3, 5);
    let bad_record = &p.records[3];
    let at = (bad_record.position.end_lsn - 1 - good.start_lsn) as usize;
    let damaged = chunk(good.start_lsn, flip(&good.bytes, at));
    let h = halt_of(r.take(damaged));
    assert_eq!(h.code, "CHECKSUM_MISMATCH");
    assert_eq!(h.rule_id, "CORE-2");
    assert_eq!(h.failure.as_deref(), Some("F-V1"));
    assert_eq!(h.lsn, Some(bad_record.position.lsn), "the halt cites the damaged record's LSN");
    let after = r.positions();
    assert_eq!(after.applied_lsn, before.applied_lsn, "P5-I5: nothing applied");
    assert_eq!(after.applied_commit_id, 2, "P5-I5: C_replica unchanged");
    assert_eq!(r.pipeline.store().applied().commit_id, 2);
    assert!(after.validated_lsn <= bad_record.position.lsn, "the damaged record is never validated: {after:?}");
    // Commit 3 wrote key k3 (3 % 5).
    assert_ne!(r.visible("k3", None), Some(3), "commit 3 must not be visible");
    assert!(r.pipeline.store().read_view(Some(3)).is_err(), "no read view beyond C_replica");
}

/// P5-I5 / CORE-2 / F-V1: a damaged first record leaves validated and applied positions where they were.
#[test]
fn p5_i5_damaged_first_record_is_neither_validated_nor_applied() {
    let p = primary_wal(3);
    let mut r = replica();
    r.take(p.commits(1, 1)).unwrap();
    let before = r.positions();
    let c = p.commits(2, 3);
    let h = halt_of(r.take(chunk(c.start_lsn, flip(&c.bytes, 20))));
    assert_eq!(h.code, "CHECKSUM_MISMATCH");
    assert_eq!(h.lsn, Some(c.start_lsn));
    let after = r.positions();
    assert_eq!((after.validated_lsn, after.applied_lsn, after.applied_commit_id), (before.validated_lsn, before.applied_lsn, 1));
}

/// REPL-4 / F-D3 / P5-I5: a record with a valid crc and fingerprint chain but
/// a wrong state digest validates, yet halts at apply (APPLY_DIVERGED) before
/// the commit becomes visible; the halt carries both digests.
#[test]
fn repl_4_forged_digest_halts_at_apply_before_the_commit_is_visible() {
    let p = primary_wal(2);
    let mut r = replica();
    r.take(p.commits(1, 1)).unwrap();
    let tip = r.pipeline.resume_tip();
    let real = p.records[1].state_digest;
    let forged = StateDigest(real.0 ^ 1);
    let (bytes, _) = encode_record(2, forged, tip.fingerprint, &ops_for(2)).unwrap();
    let h = halt_of(r.take(chunk(tip.end_lsn, Bytes::from(bytes))));
    assert_eq!(h.code, "APPLY_DIVERGED");
    assert_eq!(h.rule_id, "REPL-4");
    assert_eq!(h.failure.as_deref(), Some("F-D3"));
    assert_eq!(h.commit_id, Some(2));
    assert_eq!(h.evidence["carried"], forged.to_string());
    assert_eq!(h.evidence["recomputed"], real.to_string());
    let pos = r.positions();
    assert_eq!(pos.applied_commit_id, 1, "halted before serving commit 2");
    assert!(pos.applied_lsn < pos.validated_lsn, "validated but not applied: {pos:?}");
}

/// P5-I4 / P5-I5 / REPL-3: a record split across chunks (even inside its
/// length field) is received and persisted at once, but validated and
/// applied only once complete; the WAL stays a prefix of the primary's.
#[test]
fn p5_i4_record_split_across_chunks_is_held_until_complete() {
    let p = primary_wal(4);
    let mut r = replica();
    let rec2 = &p.records[1].position;
    // Record 1 plus the first 2 bytes of record 2 (inside its length field).
    r.take(chunk(0, p.range(0, rec2.lsn + 2))).unwrap();
    let pos = r.positions();
    assert_eq!(pos.received_lsn, rec2.lsn + 2);
    assert_eq!(pos.validated_lsn, rec2.lsn, "the partial record waits");
    assert_eq!(pos.applied_commit_id, 1);
    assert_prefix(&r, &p);
    // More of it, still incomplete.
    r.take(chunk(rec2.lsn + 2, p.range(rec2.lsn + 2, rec2.end_lsn - 1))).unwrap();
    let pos = r.positions();
    assert_eq!((pos.validated_lsn, pos.applied_commit_id), (rec2.lsn, 1));
    assert_eq!(pos.received_lsn, rec2.end_lsn - 1);
    assert_prefix(&r, &p);
    // The last byte completes record 2; record 3 arrives split in the same chunk.
    let rec3 = &p.records[2].position;
    r.take(chunk(rec2.end_lsn - 1, p.range(rec2.end_lsn - 1, rec3.lsn + 30))).unwrap();
    let pos = r.positions();
    assert_eq!((pos.validated_lsn, pos.applied_lsn, pos.applied_commit_id), (rec2.end_lsn, rec2.end_lsn, 2));
    r.take(chunk(rec3.lsn + 30, p.range(rec3.lsn + 30, p.bytes.len() as u64))).unwrap();
    let pos = r.positions();
    assert_eq!(pos.applied_commit_id, 4);
    assert_eq!(pos.applied_lsn, p.bytes.len() as u64);
    assert_eq!(r.pipeline.store().applied().state_digest, p.records[3].state_digest, "REPL-4");
    assert_prefix(&r, &p);
}

/// P5-I4 / CORE-2: a split record whose damage is only visible once complete halts then, not before.
#[test]
fn p5_i4_split_record_is_validated_once_complete() {
    let p = primary_wal(2);
    let mut r = replica();
    r.take(p.commits(1, 1)).unwrap();
    let rec2 = p.records[1].position;
    let damaged = flip(&p.range(rec2.lsn, rec2.end_lsn), (rec2.end_lsn - rec2.lsn) as usize - 1);
    let half = (rec2.end_lsn - rec2.lsn) as usize / 2;
    r.take(chunk(rec2.lsn, damaged.slice(..half))).unwrap();
    assert_eq!(r.positions().validated_lsn, rec2.lsn);
    let h = halt_of(r.take(chunk(rec2.lsn + half as u64, damaged.slice(half..))));
    assert_eq!(h.code, "CHECKSUM_MISMATCH");
    assert_eq!(h.lsn, Some(rec2.lsn));
    assert_eq!(r.positions().applied_commit_id, 1);
}

/// P5-I4 / CORE-2: a pending record whose length field, split across two
/// chunks, declares an impossible length halts (an invalid record) once the
/// field is whole, and a declared length longer than the record (the
/// validator takes exactly that many bytes to complete it) halts on the
/// checksum; nothing of either record is applied.
#[test]
fn p5_i4_a_split_record_with_a_damaged_length_field_halts() {
    let p = primary_wal(3);
    let rec2 = p.records[1].position;
    for (length, code) in [(u32::MAX, "INVALID_RECORD"), ((rec2.end_lsn - rec2.lsn) as u32 + 7, "CHECKSUM_MISMATCH")] {
        let mut rest = p.range(rec2.lsn + 2, p.bytes.len() as u64).to_vec();
        rest[..2].copy_from_slice(&length.to_le_bytes()[2..]);
        let mut head = p.range(0, rec2.lsn + 2).to_vec();
        let at = head.len() - 2;
        head[at..].copy_from_slice(&length.to_le_bytes()[..2]);
        let mut r = replica();
        r.take(chunk(0, Bytes::from(head))).unwrap();
        assert_eq!(r.positions().validated_lsn, rec2.lsn, "the partial record waits");
        let h = halt_of(r.take(chunk(rec2.lsn + 2, Bytes::from(rest))));
        assert_eq!((h.code.as_str(), h.lsn), (code, Some(rec2.lsn)), "declared length {length}");
        assert_eq!(r.positions().applied_commit_id, 1);
    }
}

/// F-N2 / REPL-7 / P5-I4: a chunk that does not start at the replica's WAL
/// end (skipped, duplicated, reordered or overlapping) is a protocol error:
/// nothing is persisted, validated or applied, and the pipeline continues
/// normally with the right chunk afterwards.
#[test]
fn f_n2_out_of_order_chunk_is_a_protocol_error_and_nothing_is_persisted() {
    let p = primary_wal(4);
    let mut r = replica();
    r.take(p.commits(1, 1)).unwrap();
    let before = r.positions();
    let wal_before = r.wal_bytes();
    let wrong = [
        p.commits(3, 3),                                                                                 // skipped ahead (reordered)
        p.commits(1, 1),                                                                                 // duplicate
        chunk(before.received_lsn - 5, p.range(before.received_lsn - 5, p.records[1].position.end_lsn)), // overlap
        chunk(before.received_lsn + 1, Bytes::from_static(b"x")),
    ];
    for c in wrong {
        let start = c.start_lsn;
        match r.take(c) {
            Err(PipelineError::Protocol(e)) => assert!(e.detail.contains(&start.to_string()), "{e}"),
            other => panic!("chunk at {start}: expected a protocol error, got {other:?}"),
        }
        assert_eq!(r.positions(), before, "nothing moved for the chunk at {start}");
        assert_eq!(r.wal_bytes(), wal_before, "nothing persisted for the chunk at {start}");
    }
    // A segment header that does not describe the chunk's start is a protocol error too.
    let mut c = p.commits(2, 2);
    c.segment_start = Some(ChainTip { end_lsn: c.start_lsn + 1, commit_id: 1, fingerprint: p.records[0].position.fingerprint }.segment_header());
    assert!(matches!(r.take(c), Err(PipelineError::Protocol(_))));
    assert_eq!(r.positions(), before);
    r.take(p.commits(2, 4)).unwrap();
    assert_eq!(r.positions().applied_commit_id, 4);
    assert_prefix(&r, &p);
}

/// REPL-7 / REPL-2 / F-V2: a chunk at the right LSN whose first record is not
/// the next commit (a record missing in between) halts with a gap code.
#[test]
fn repl_7_missing_record_at_the_right_lsn_halts_with_a_gap() {
    let p = primary_wal(3);
    let mut r = replica();
    r.take(p.commits(1, 1)).unwrap();
    let end = r.positions().received_lsn;
    let rec3 = p.records[2].position;
    let h = halt_of(r.take(chunk(end, p.range(rec3.lsn, rec3.end_lsn))));
    assert!(["COMMIT_ID_GAP", "LSN_GAP"].contains(&h.code.as_str()), "{h:?}");
    assert!(["REPL-2", "REPL-7"].contains(&h.rule_id.as_str()), "{h:?}");
    assert_eq!(h.failure.as_deref(), Some("F-V2"));
    assert_eq!(r.positions().applied_commit_id, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// P5-I4 / REPL-3 / REPL-4: whatever the chunking of the stream, after
    /// every stage applied <= validated <= received, every record is applied
    /// exactly once in order, the WAL is a prefix of the primary's at every
    /// step, and the final state digest is the primary's.
    #[test]
    fn p5_i4_any_chunking_keeps_positions_ordered_and_wal_a_prefix(cuts in prop::collection::btree_set(1usize..2000, 0..12)) {
        let p = primary_wal(12);
        let total = p.bytes.len();
        let mut bounds: Vec<usize> = cuts.into_iter().filter(|c| *c < total).collect();
        bounds.push(total);
        let mut r = replica();
        let mut from = 0usize;
        let mut last_applied = 0u64;
        for to in bounds {
            r.take(chunk(from as u64, p.bytes.slice(from..to))).unwrap();
            let pos = r.positions();
            prop_assert_eq!(pos.received_lsn, to as u64);
            prop_assert!(pos.applied_commit_id >= last_applied);
            last_applied = pos.applied_commit_id;
            // Applied exactly the records wholly received.
            let whole = p.records.iter().filter(|x| x.position.end_lsn <= to as u64).count() as u64;
            prop_assert_eq!(pos.applied_commit_id, whole);
            assert_prefix(&r, &p);
            from = to;
        }
        prop_assert_eq!(r.pipeline.store().applied().state_digest, p.records[11].state_digest);
    }
}
