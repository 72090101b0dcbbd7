#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-3 before the end of the WAL: invalid bytes that have valid records
//! after them (or that sit in any segment but the last) are corruption.
//! Recovery halts naming the LSN and changes nothing on disk.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aerodb_wal::record::RecordDecodeError;
use aerodb_wal::recovery::WalRecoveryError;
use aerodb_wal::segment::{segment_file_name, SegmentHeaderError, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::AppendedRecord;
use aerodb_wal::{ChainViolation, Lsn};
use common::*;

/// Every file in `dir` with its exact bytes.
fn dir_contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// Recovers `dir`, expects corruption of a record at `lsn` in `segment`,
/// and checks that no file was changed.
fn assert_corrupt_record_at(dir: &Path, segment: &str, lsn: Lsn) -> ChainViolation {
    let before = dir_contents(dir);
    let err = recover(dir).err().expect("recovery must fail");
    assert_eq!(err.code(), "WAL_CORRUPT");
    let WalRecoveryError::Corruption { segment: seg, violation } = err else { panic!("expected corruption, got {err:?}") };
    assert_eq!(seg, segment);
    assert_eq!(violation.lsn(), lsn, "{violation}");
    assert!(matches!(violation, ChainViolation::InvalidRecord { .. }), "{violation:?}");
    assert_eq!(violation.rule_id(), "CORE-2");
    assert_eq!(dir_contents(dir), before, "recovery must not truncate or repair anything");
    violation
}

/// CORE-3: flipping any single byte of a record that has valid records
/// after it (in the last segment) halts recovery with corruption naming
/// that record's LSN; the file keeps its length and bytes.
#[test]
fn core_3_mid_wal_flip_in_last_segment_halts_with_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), NO_ROLL);
    let written = write_samples(&mut w, 10);
    drop(w);
    let seg0 = tmp.path().join(segment_file_name(0));
    let len_before = file_len(&seg0);
    // Every byte of a middle record.
    let victim = written[4].position;
    for at in victim.lsn..victim.end_lsn {
        flip_byte(&seg0, SEGMENT_HEADER_LEN + at, 0x04);
        assert_corrupt_record_at(tmp.path(), &segment_file_name(0), victim.lsn);
        flip_byte(&seg0, SEGMENT_HEADER_LEN + at, 0x04);
    }
    // One byte in each of the other records that still have a successor.
    for a in &written[..9] {
        let mid = a.position.lsn + (a.position.end_lsn - a.position.lsn) / 2;
        flip_byte(&seg0, SEGMENT_HEADER_LEN + mid, 0x80);
        let v = assert_corrupt_record_at(tmp.path(), &segment_file_name(0), a.position.lsn);
        assert!(matches!(v, ChainViolation::InvalidRecord { error: RecordDecodeError::Checksum { .. }, .. }), "{v:?}");
        flip_byte(&seg0, SEGMENT_HEADER_LEN + mid, 0x80);
    }
    assert_eq!(file_len(&seg0), len_before);
    // Restored: recovers cleanly.
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 10);
}

fn many_segments(dir: &Path) -> (Vec<AppendedRecord>, Vec<(Lsn, PathBuf)>) {
    let mut w = new_writer(dir, 1024);
    let written = write_samples(&mut w, 60);
    drop(w);
    let files = segment_files(dir);
    assert!(files.len() >= 4, "need several segments, got {}", files.len());
    (written, files)
}

/// CORE-3: damage inside an earlier (non-last) segment is corruption even
/// when the damaged record is the last one of its segment: only the very
/// end of the whole WAL can be a torn tail.
#[test]
fn core_3_flip_in_earlier_segment_halts_with_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, files) = many_segments(tmp.path());
    let seg1_start = files[1].0;
    let seg2_start = files[2].0;
    let in_seg1: Vec<_> = written.iter().map(|a| a.position).filter(|p| p.lsn >= seg1_start && p.end_lsn <= seg2_start).collect();
    assert!(in_seg1.len() >= 2);
    for victim in [in_seg1[0], in_seg1[in_seg1.len() / 2], *in_seg1.last().unwrap()] {
        let (path, off) = locate(tmp.path(), victim.lsn);
        assert_eq!(path, files[1].1);
        flip_byte(&path, off + 20, 0x01);
        assert_corrupt_record_at(tmp.path(), &segment_file_name(seg1_start), victim.lsn);
        flip_byte(&path, off + 20, 0x01);
    }
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 60);
}

/// CORE-3: an earlier segment cut short inside a record is corruption
/// (truncated record), not a torn tail; cut at a record boundary, the next
/// segment's header no longer continues the chain (REPL-7).
#[test]
fn core_3_truncated_earlier_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, files) = many_segments(tmp.path());
    let (s1, p1) = files[1].clone();
    let s2 = files[2].0;
    let last_in_s1 = written.iter().map(|a| a.position).rfind(|p| p.end_lsn == s2).unwrap();
    assert!(last_in_s1.lsn >= s1);
    let full = std::fs::read(&p1).unwrap();

    // Inside the last record of segment 1.
    truncate_file(&p1, SEGMENT_HEADER_LEN + (last_in_s1.lsn - s1) + 10);
    let v = assert_corrupt_record_at(tmp.path(), &segment_file_name(s1), last_in_s1.lsn);
    assert!(matches!(v, ChainViolation::InvalidRecord { error: RecordDecodeError::Truncated { .. }, .. }), "{v:?}");

    // Exactly at a record boundary: segment 2 declares a history segment 1 no longer reaches.
    truncate_file(&p1, SEGMENT_HEADER_LEN + (last_in_s1.lsn - s1));
    let before = dir_contents(tmp.path());
    let err = recover(tmp.path()).err().unwrap();
    let WalRecoveryError::Corruption { segment, violation } = &err else { panic!("{err:?}") };
    assert_eq!(segment, &segment_file_name(s2));
    assert!(
        matches!(violation, ChainViolation::SegmentDiscontinuity { start_lsn, tip_lsn, .. } if *start_lsn == s2 && *tip_lsn == last_in_s1.lsn),
        "{violation:?}"
    );
    assert_eq!(err.rule_id(), "REPL-7");
    assert_eq!(dir_contents(tmp.path()), before);

    std::fs::write(&p1, full).unwrap();
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 60);
}

/// REPL-7: a segment whose (checksum-valid) header starts it so close to
/// the end of the LSN space that its bytes would pass it is refused as a
/// segment layout error, never read with overflowing LSNs (found by the
/// `wal_recovery` fuzz target: an arithmetic overflow in recovery).
#[test]
fn repl_7_segment_past_the_end_of_the_lsn_space_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let start = u64::MAX - 8;
    let header = aerodb_wal::segment::SegmentHeader { start_lsn: start, prev_commit_id: 3, prev_fingerprint: aerodb_wal::Fingerprint(7) };
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(&[0x2a; 40]);
    std::fs::write(tmp.path().join(segment_file_name(start)), &bytes).unwrap();
    let err = recover(tmp.path()).err().unwrap();
    assert_eq!(err.code(), "WAL_SEGMENT_LAYOUT", "{err}");
    assert_eq!(err.rule_id(), "REPL-7");
    // Bytes ending exactly at the end of the LSN space are read (here: a torn tail, dropped).
    bytes.truncate(64 + 8);
    std::fs::write(tmp.path().join(segment_file_name(start)), &bytes).unwrap();
    let recovered = recover(tmp.path()).unwrap();
    assert_eq!(recovered.report.torn_tail.map(|t| (t.lsn, t.bytes_dropped)), Some((start, 8)));
}

/// CORE-3: a segment header whose reserved bytes are not zero is not a
/// header this build wrote, even with a matching crc32c: recovery halts on
/// it instead of reading it as a valid header (found by the
/// `wal_segment_header` fuzz target: a decoded header did not re-encode to
/// its own bytes).
#[test]
fn core_3_segment_header_with_nonzero_reserved_bytes_halts() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, files) = many_segments(tmp.path());
    let (_, path) = files[1].clone();
    let original = std::fs::read(&path).unwrap();
    let mut bytes = original.clone();
    bytes[50] = 0x69;
    let crc = crc32c::crc32c(&bytes[0..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(aerodb_wal::segment::SegmentHeader::decode(&bytes), Err(SegmentHeaderError::Reserved));
    std::fs::write(&path, &bytes).unwrap();
    let before = dir_contents(tmp.path());
    let err = recover(tmp.path()).err().unwrap();
    assert_eq!(err.code(), "WAL_BAD_SEGMENT_HEADER");
    assert_eq!(err.rule_id(), "CORE-3");
    assert!(matches!(err, WalRecoveryError::BadSegmentHeader { error: SegmentHeaderError::Reserved, .. }), "{err:?}");
    assert_eq!(dir_contents(tmp.path()), before, "nothing changed on disk");
    std::fs::write(&path, original).unwrap();
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 60);
}

/// CORE-3: a damaged segment header halts recovery, in the last segment as
/// well (a header is never a torn tail: segments are created atomically).
#[test]
fn core_3_damaged_segment_header_halts() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, files) = many_segments(tmp.path());
    for (start, path) in [files[0].clone(), files[2].clone(), files.last().unwrap().clone()] {
        for at in [0u64, 9, 17, 30, 47, 63] {
            flip_byte(&path, at, 0x02);
            let before = dir_contents(tmp.path());
            let err = recover(tmp.path()).err().unwrap();
            assert_eq!(err.code(), "WAL_BAD_SEGMENT_HEADER");
            assert_eq!(err.rule_id(), "CORE-3");
            let WalRecoveryError::BadSegmentHeader { segment, error } = &err else { panic!("{err:?}") };
            assert_eq!(segment, &segment_file_name(start));
            assert!(matches!(error, SegmentHeaderError::Magic | SegmentHeaderError::Checksum), "{error:?}");
            assert_eq!(dir_contents(tmp.path()), before);
            flip_byte(&path, at, 0x02);
        }
    }
    // A last segment shorter than its header.
    let (_, last) = files.last().unwrap().clone();
    let full = std::fs::read(&last).unwrap();
    truncate_file(&last, SEGMENT_HEADER_LEN - 1);
    let err = recover(tmp.path()).err().unwrap();
    assert!(matches!(err, WalRecoveryError::BadSegmentHeader { error: SegmentHeaderError::Truncated, .. }), "{err:?}");
    std::fs::write(&last, full).unwrap();
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 60);
}
