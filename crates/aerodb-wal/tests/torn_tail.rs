#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-3 at the end of the WAL: a torn tail is truncated and reported, and
//! the history continues exactly after the last whole record.

mod common;

use std::path::Path;

use aerodb_wal::record::encode_record;
use aerodb_wal::recovery::TornTail;
use aerodb_wal::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::AppendedRecord;
use aerodb_wal::{ChainTip, StateDigest};
use common::*;

const RECORDS: u64 = 10;

/// Writes `RECORDS` records in one segment and returns their positions.
fn ten_records(dir: &Path) -> Vec<AppendedRecord> {
    let mut w = new_writer(dir, NO_ROLL);
    write_samples(&mut w, RECORDS)
}

/// The bytes the writer would produce for commit `RECORDS + 1`.
fn next_record_bytes(written: &[AppendedRecord]) -> Vec<u8> {
    let last = written.last().unwrap();
    let ops = sample_ops(RECORDS + 1);
    let digest = last.state_digest.after_ops(RECORDS + 1, &ops);
    encode_record(RECORDS + 1, digest, last.position.fingerprint, &ops).unwrap().0
}

/// Checks a recovery that must have dropped exactly the bytes after
/// `written[..keep]`, then that the history continues at the right LSN and
/// CommitId and survives another recovery.
fn assert_torn_and_resumes(dir: &Path, written: &[AppendedRecord], keep: usize, dropped: u64) {
    let seg0 = dir.join(segment_file_name(0));
    let end = if keep == 0 { 0 } else { written[keep - 1].position.end_lsn };
    let rec = recover(dir).unwrap();
    let torn: &TornTail = rec.report.torn_tail.as_ref().expect("torn tail reported");
    assert_eq!(torn.segment, segment_file_name(0));
    assert_eq!(torn.lsn, end, "torn tail starts where the last whole record ends");
    assert_eq!(torn.bytes_dropped, dropped);
    assert!(!torn.reason.is_empty());
    assert_eq!(file_len(&seg0), SEGMENT_HEADER_LEN + end, "file shortened to the last whole record");
    assert_eq!(rec.report.records_verified, keep as u64);
    assert_eq!(rec.report.end.end_lsn, end);
    assert_eq!(rec.report.end.commit_id, keep as u64);
    let expected_positions: Vec<_> = written[..keep].iter().map(|a| a.position).collect();
    assert_eq!(rec.positions(), expected_positions);
    assert_eq!(rec.report.segments.last().unwrap().end_lsn, end);

    // Appending continues exactly after the last whole record.
    let mut w = rec.into_writer(NO_ROLL);
    let next = w.append(&sample_ops(keep as u64 + 1)).unwrap();
    assert_eq!(next.position.lsn, end);
    assert_eq!(next.position.commit_id, keep as u64 + 1);
    w.sync().unwrap();
    drop(w);

    // The continued history is whole and chained: a second recovery is clean.
    let again = recover(dir).unwrap();
    assert_eq!(again.report.torn_tail, None);
    assert_eq!(again.report.records_verified, keep as u64 + 1);
    assert_eq!(again.report.end.commit_id, keep as u64 + 1);
    assert_eq!(again.positions().last().copied(), Some(next.position));
    assert_eq!(again.replayed.last().unwrap().0.ops(), &sample_ops(keep as u64 + 1)[..]);
}

/// CORE-3: arbitrary garbage after the last record is a torn tail: it is
/// truncated, reported with its LSN and size, and the WAL continues.
#[test]
fn core_3_torn_tail_garbage_is_truncated_and_reported() {
    let garbage: &[&[u8]] = &[
        b"\xde\xad\xbe\xef not a record at all, just bytes",
        b"\x01",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        &[0u8; 4096],                 // zero fill left by a crash after the file was extended
        &[0x38, 0, 0, 0, 0xAA, 0xBB], // plausible length (56), nothing else
    ];
    for g in garbage {
        let tmp = tempfile::tempdir().unwrap();
        let written = ten_records(tmp.path());
        append_bytes(&tmp.path().join(segment_file_name(0)), g);
        assert_torn_and_resumes(tmp.path(), &written, RECORDS as usize, g.len() as u64);
    }
}

/// CORE-3: a partially written next record (every kind of prefix: inside the
/// length, inside the header, inside the ops) is a torn tail.
#[test]
fn core_3_torn_tail_partial_record_is_truncated_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let written = ten_records(tmp.path());
    let next = next_record_bytes(&written);
    let pristine = std::fs::read(tmp.path().join(segment_file_name(0))).unwrap();
    for cut in [1, 2, 3, 4, 5, 8, 20, 55, 56, 57, next.len() / 2, next.len() - 1] {
        let dir = tmp.path().join(format!("cut-{cut}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(segment_file_name(0)), &pristine).unwrap();
        append_bytes(&dir.join(segment_file_name(0)), &next[..cut]);
        assert_torn_and_resumes(&dir, &written, RECORDS as usize, cut as u64);
    }
}

/// CORE-3: a whole next record with any one byte flipped (its checksum no
/// longer matches) at the very end of the WAL is a torn tail.
#[test]
fn core_3_torn_tail_flipped_last_record_is_truncated_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let written = ten_records(tmp.path());
    let next = next_record_bytes(&written);
    let pristine = std::fs::read(tmp.path().join(segment_file_name(0))).unwrap();
    let offsets: std::collections::BTreeSet<usize> = (0..next.len()).step_by(5).chain([next.len() - 1]).collect();
    for at in offsets {
        let dir = tmp.path().join(format!("flip-{at}"));
        std::fs::create_dir(&dir).unwrap();
        let mut bad = next.clone();
        bad[at] ^= 0x10;
        std::fs::write(dir.join(segment_file_name(0)), [&pristine[..], &bad[..]].concat()).unwrap();
        assert_torn_and_resumes(&dir, &written, RECORDS as usize, next.len() as u64);
    }
}

/// CORE-3: when the already-written last record itself is damaged and
/// nothing valid follows, it is the torn tail; history resumes at its LSN
/// with its CommitId reused.
#[test]
fn core_3_torn_tail_damaged_final_record_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let written = ten_records(tmp.path());
    let last = written.last().unwrap().position;
    let (path, off) = locate(tmp.path(), last.lsn);
    flip_byte(&path, off + (last.end_lsn - last.lsn) / 2, 0x01);
    assert_torn_and_resumes(tmp.path(), &written, RECORDS as usize - 1, last.end_lsn - last.lsn);
}

/// CORE-3: a torn first record leaves an empty history at genesis; the next
/// commit is CommitId 1 at LSN 0.
#[test]
fn core_3_torn_tail_in_empty_wal_resumes_at_genesis() {
    let tmp = tempfile::tempdir().unwrap();
    let w = new_writer(tmp.path(), NO_ROLL);
    drop(w);
    let ops = sample_ops(1);
    let (bytes, _) = encode_record(1, StateDigest::EMPTY.after_ops(1, &ops), ChainTip::GENESIS.fingerprint, &ops).unwrap();
    append_bytes(&tmp.path().join(segment_file_name(0)), &bytes[..bytes.len() - 3]);
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.report.end, ChainTip::GENESIS);
    assert_eq!(rec.report.torn_tail.as_ref().map(|t| (t.lsn, t.bytes_dropped)), Some((0, bytes.len() as u64 - 3)));
    assert_torn_and_resumes_empty(tmp.path(), rec);
}

fn assert_torn_and_resumes_empty(dir: &Path, rec: Recovered) {
    assert_eq!(file_len(&dir.join(segment_file_name(0))), SEGMENT_HEADER_LEN);
    let mut w = rec.into_writer(NO_ROLL);
    let first = w.append(&sample_ops(1)).unwrap();
    assert_eq!((first.position.lsn, first.position.commit_id), (0, 1));
    w.sync().unwrap();
    drop(w);
    let again = recover(dir).unwrap();
    assert_eq!(again.report.torn_tail, None);
    assert_eq!(again.positions(), vec![first.position]);
}

/// CORE-3: with many segments, only the tail of the last segment is
/// dropped; earlier segments are untouched and the history continues in
/// the last segment.
#[test]
fn core_3_torn_tail_in_last_of_many_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), 1024);
    let written = write_samples(&mut w, 60);
    drop(w);
    let files = segment_files(tmp.path());
    assert!(files.len() > 3, "expected several segments, got {}", files.len());
    let before: Vec<Vec<u8>> = files.iter().map(|(_, p)| std::fs::read(p).unwrap()).collect();
    let (last_start, last_path) = files.last().unwrap().clone();
    append_bytes(&last_path, b"torn!");

    let rec = recover(tmp.path()).unwrap();
    let torn = rec.report.torn_tail.clone().unwrap();
    assert_eq!(torn.segment, segment_file_name(last_start));
    assert_eq!((torn.lsn, torn.bytes_dropped), (written.last().unwrap().position.end_lsn, 5));
    let after: Vec<Vec<u8>> = files.iter().map(|(_, p)| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "only the torn bytes were removed");
    assert_eq!(rec.report.records_verified, 60);

    let mut w = rec.into_writer(1024);
    let next = w.append(&sample_ops(61)).unwrap();
    assert_eq!((next.position.lsn, next.position.commit_id), (torn.lsn, 61));
    w.sync().unwrap();
    drop(w);
    let again = recover(tmp.path()).unwrap();
    assert_eq!(again.report.torn_tail, None);
    assert_eq!(again.report.end.commit_id, 61);
}

/// CORE-3: a clean WAL reports no torn tail and changes no file.
#[test]
fn core_3_clean_wal_reports_no_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let written = ten_records(tmp.path());
    let path = tmp.path().join(segment_file_name(0));
    let before = std::fs::read(&path).unwrap();
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.report.torn_tail, None);
    assert!(rec.report.removed_temp_files.is_empty());
    assert_eq!(rec.report.end.end_lsn, written.last().unwrap().position.end_lsn);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
