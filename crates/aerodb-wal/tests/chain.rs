#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! REPL-2 / REPL-7 / REPL-5: the history chain. CommitIds are exactly
//! previous + 1, records follow each other without gaps, segments declare
//! the chain state they continue, and fingerprints chain. Checked both by
//! the shared `ChainValidator` and by recovery.

mod common;

use std::path::Path;

use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::{LogError, SegmentAppender};
use aerodb_wal::record::{encode_record, expected_fingerprint, RecordDecodeError};
use aerodb_wal::recovery::WalRecoveryError;
use aerodb_wal::segment::{segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::{ChainTip, ChainValidator, ChainViolation, CommitId, Fingerprint, StateDigest};
use bytes::Bytes;
use common::*;

/// Encodes commit `commit_id` (ops = sample_ops(commit_id)) chained from `prev`.
fn rec(commit_id: CommitId, prev: Fingerprint) -> (Vec<u8>, Fingerprint) {
    encode_record(commit_id, StateDigest(u128::from(commit_id)), prev, &sample_ops(commit_id)).unwrap()
}

/// A genesis WAL whose single segment holds exactly `records`, appended raw.
fn raw_wal(dir: &Path, records: &[Vec<u8>]) {
    let mut app = SegmentAppender::create(OsDisk::shared(), dir, ChainTip::GENESIS.segment_header()).unwrap();
    for r in records {
        app.append(app.end_lsn(), r).unwrap();
    }
    app.sync().unwrap();
}

/// Recovery of a WAL whose record at `lsn` is CRC-valid but breaks the chain
/// must fail with `expected`, even at the very end (it is not a torn tail),
/// and must not change the file.
fn assert_chain_break(dir: &Path, expected: &ChainViolation) {
    let path = dir.join(segment_file_name(0));
    let before = std::fs::read(&path).unwrap();
    let err = recover(dir).err().expect("must fail");
    let WalRecoveryError::Corruption { segment, violation } = &err else { panic!("{err:?}") };
    assert_eq!(segment, &segment_file_name(0));
    assert_eq!(violation, expected);
    assert_eq!(err.rule_id(), expected.rule_id());
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing truncated");
}

/// REPL-2: a record whose CommitId skips ahead fails validation with
/// CommitIdDiscontinuity, in the validator and in recovery (at the tail and
/// in the middle).
#[test]
fn repl_2_commit_id_gap_is_rejected() {
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let (r3, f3) = rec(3, f1);
    let lsn2 = r1.len() as u64;

    let mut v = ChainValidator::new(ChainTip::GENESIS);
    v.validate(0, &Bytes::from(r1.clone())).unwrap();
    let tip = v.tip();
    let err = v.validate(lsn2, &Bytes::from(r3.clone())).unwrap_err();
    let expected = ChainViolation::CommitIdDiscontinuity { lsn: lsn2, expected: 2, found: 3 };
    assert_eq!(err, expected);
    assert_eq!((err.code(), err.rule_id(), err.lsn()), ("COMMIT_ID_GAP", "REPL-2", lsn2));
    assert_eq!(v.tip(), tip, "a failed validation does not move the tip");

    // At the tail of the WAL: CRC-valid, so never mistaken for a torn tail.
    let tmp = tempfile::tempdir().unwrap();
    raw_wal(tmp.path(), &[r1.clone(), r3.clone()]);
    assert_chain_break(tmp.path(), &expected);

    // In the middle, with a valid-looking record after it.
    let (r4, _) = rec(4, f3);
    let tmp = tempfile::tempdir().unwrap();
    raw_wal(tmp.path(), &[r1, r3, r4]);
    assert_chain_break(tmp.path(), &expected);
}

/// REPL-2, regression of a `wal_recovery` fuzz crash (an add overflow):
/// a segment whose header declares the previous CommitId u64::MAX cannot
/// be continued. Whatever CommitId the next record carries (0, as a
/// wrapping `+ 1` would expect, or u64::MAX again) it is a
/// CommitIdDiscontinuity, and the tip stays where it was.
#[test]
fn repl_2_a_history_ending_at_the_largest_commit_id_cannot_be_continued() {
    let tip = ChainTip { end_lsn: 0, commit_id: CommitId::MAX, fingerprint: ChainTip::GENESIS.fingerprint };
    for found in [0, 1, CommitId::MAX] {
        let (r, _) = rec(found, tip.fingerprint);
        let mut v = ChainValidator::new(tip);
        let err = v.validate(0, &Bytes::from(r)).unwrap_err();
        assert_eq!(err, ChainViolation::CommitIdDiscontinuity { lsn: 0, expected: CommitId::MAX, found });
        assert_eq!((err.code(), err.rule_id()), ("COMMIT_ID_GAP", "REPL-2"));
        assert_eq!(v.tip(), tip);
    }
}

/// REPL-2 / REPL-7: a duplicated record (same CommitId again, no gap) and a
/// CommitId going backwards are rejected.
#[test]
fn repl_2_duplicate_and_backward_commit_ids_are_rejected() {
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let (r2, f2) = rec(2, f1);
    let lsn3 = (r1.len() + r2.len()) as u64;

    // The same record twice.
    let tmp = tempfile::tempdir().unwrap();
    raw_wal(tmp.path(), &[r1.clone(), r2.clone(), r2.clone()]);
    assert_chain_break(tmp.path(), &ChainViolation::CommitIdDiscontinuity { lsn: lsn3, expected: 3, found: 2 });

    // CommitId 1 again, correctly chained from record 2.
    let (back, _) = rec(1, f2);
    let mut v = ChainValidator::new(ChainTip::GENESIS);
    v.validate(0, &Bytes::from(r1)).unwrap();
    v.validate(lsn3 - r2.len() as u64, &Bytes::from(r2)).unwrap();
    assert_eq!(v.validate(lsn3, &Bytes::from(back)).unwrap_err(), ChainViolation::CommitIdDiscontinuity { lsn: lsn3, expected: 3, found: 1 });
}

/// REPL-5 / REPL-2: a record with the right CommitId whose fingerprint was
/// chained from the wrong predecessor fails with FingerprintMismatch.
#[test]
fn repl_2_wrong_previous_fingerprint_is_rejected() {
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let (bad2, bad_f2) = rec(2, ChainTip::GENESIS.fingerprint);
    let lsn2 = r1.len() as u64;
    let expected = ChainViolation::FingerprintMismatch { lsn: lsn2, commit_id: 2, expected: expected_fingerprint(f1, &bad2), found: bad_f2 };
    assert_ne!(expected_fingerprint(f1, &bad2), bad_f2);

    let mut v = ChainValidator::new(ChainTip::GENESIS);
    v.validate(0, &Bytes::from(r1.clone())).unwrap();
    let err = v.validate(lsn2, &Bytes::from(bad2.clone())).unwrap_err();
    assert_eq!(err, expected);
    assert_eq!((err.code(), err.rule_id()), ("FINGERPRINT_MISMATCH", "REPL-5"));

    let tmp = tempfile::tempdir().unwrap();
    raw_wal(tmp.path(), &[r1, bad2]);
    assert_chain_break(tmp.path(), &expected);
}

/// REPL-7: the validator refuses a record that does not start where the
/// history ends (gap or overlap), and accepts a properly chained sequence
/// whose positions are contiguous.
#[test]
fn repl_7_validator_rejects_lsn_gaps_and_overlaps() {
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let (r2, f2) = rec(2, f1);
    let mut v = ChainValidator::new(ChainTip::GENESIS);
    let (record, p1) = v.validate(0, &Bytes::from(r1.clone())).unwrap();
    assert_eq!(record.commit_id, 1);
    assert_eq!(record.ops(), &sample_ops(1)[..]);
    assert_eq!((p1.lsn, p1.end_lsn, p1.commit_id, p1.fingerprint), (0, r1.len() as u64, 1, f1));
    let end = p1.end_lsn;
    for wrong in [end + 1, end - 1, 0] {
        let err = v.validate(wrong, &Bytes::from(r2.clone())).unwrap_err();
        assert_eq!(err, ChainViolation::LsnDiscontinuity { expected: end, found: wrong });
        assert_eq!((err.code(), err.rule_id(), err.lsn()), ("LSN_GAP", "REPL-7", wrong));
    }
    let (_, p2) = v.validate(end, &Bytes::from(r2.clone())).unwrap();
    assert_eq!(v.tip(), ChainTip { end_lsn: p2.end_lsn, commit_id: 2, fingerprint: f2 });

    // An invalid record is reported as such, with its LSN (CORE-2).
    let (r3, _) = rec(3, f2);
    let mut bad = r3;
    bad[30] ^= 1;
    let err = v.validate(p2.end_lsn, &Bytes::from(bad)).unwrap_err();
    assert!(matches!(err, ChainViolation::InvalidRecord { lsn, error: RecordDecodeError::Checksum { .. } } if lsn == p2.end_lsn), "{err:?}");
    assert_eq!((err.code(), err.rule_id()), ("CHECKSUM_MISMATCH", "CORE-2"));
}

/// REPL-7: the appender accepts bytes only at the current end of the WAL.
#[test]
fn repl_7_appender_refuses_out_of_order_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let mut app = SegmentAppender::create(OsDisk::shared(), tmp.path(), ChainTip::GENESIS.segment_header()).unwrap();
    app.append(0, &r1).unwrap();
    let end = r1.len() as u64;
    for wrong in [0, end - 1, end + 1] {
        let err = app.append(wrong, &r1).unwrap_err();
        assert!(matches!(err, LogError::OutOfOrder { offered, end: e } if offered == wrong && e == end), "{err:?}");
        assert_eq!(err.code(), "WAL_OUT_OF_ORDER");
    }
    let hdr = ChainTip { end_lsn: end + 5, commit_id: 1, fingerprint: f1 }.segment_header();
    assert!(matches!(app.start_segment(hdr), Err(LogError::OutOfOrder { .. })));
    app.sync().unwrap();
    assert_eq!(file_len(&tmp.path().join(segment_file_name(0))), SEGMENT_HEADER_LEN + end);
    drop(app);
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 1);
}

/// REPL-7: the validator's segment check accepts only a header declaring
/// exactly the current tip.
#[test]
fn repl_7_validator_segment_start_must_match_tip() {
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let mut v = ChainValidator::new(ChainTip::GENESIS);
    v.check_segment_start(&ChainTip::GENESIS.segment_header()).unwrap();
    v.validate(0, &Bytes::from(r1.clone())).unwrap();
    let good = v.tip().segment_header();
    v.check_segment_start(&good).unwrap();
    let end = r1.len() as u64;
    for bad in [
        SegmentHeader { start_lsn: end + 1, ..good },
        SegmentHeader { prev_commit_id: 2, ..good },
        SegmentHeader { prev_fingerprint: Fingerprint(f1.0 ^ 1), ..good },
    ] {
        let err = v.check_segment_start(&bad).unwrap_err();
        assert_eq!(
            err,
            ChainViolation::SegmentDiscontinuity {
                start_lsn: bad.start_lsn,
                declared_commit_id: bad.prev_commit_id,
                declared_fingerprint: bad.prev_fingerprint,
                tip_lsn: end,
                tip_commit_id: 1,
                tip_fingerprint: f1,
            }
        );
        assert_eq!((err.code(), err.rule_id()), ("SEGMENT_DISCONTINUITY", "REPL-7"));
    }
}

fn four_segments(dir: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut w = new_writer(dir, 1024);
    write_samples(&mut w, 40);
    drop(w);
    let files = segment_files(dir);
    assert!(files.len() >= 4, "got {} segments", files.len());
    files
}

/// REPL-7: a missing middle segment is a gap: recovery fails at the next
/// segment with SegmentDiscontinuity naming both ends of the gap.
#[test]
fn repl_7_missing_middle_segment_fails_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let files = four_segments(tmp.path());
    let (s1, s2) = (files[1].0, files[2].0);
    std::fs::remove_file(&files[1].1).unwrap();
    let err = recover(tmp.path()).err().unwrap();
    assert_eq!((err.code(), err.rule_id()), ("WAL_CORRUPT", "REPL-7"));
    let WalRecoveryError::Corruption { segment, violation } = &err else { panic!("{err:?}") };
    assert_eq!(segment, &segment_file_name(s2));
    assert!(matches!(violation, ChainViolation::SegmentDiscontinuity { start_lsn, tip_lsn, .. } if *start_lsn == s2 && *tip_lsn == s1), "{violation:?}");
    assert_eq!(violation.lsn(), s2);
}

/// REPL-7: a segment header that is well-formed (valid checksum) but whose
/// prev fields do not continue the previous segment fails recovery.
#[test]
fn repl_7_segment_header_not_chaining_fails_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let files = four_segments(tmp.path());
    let (s2, p2) = files[2].clone();
    let original = std::fs::read(&p2).unwrap();
    let good = SegmentHeader::decode(&original).unwrap();
    for bad in [
        SegmentHeader { prev_commit_id: good.prev_commit_id + 1, ..good },
        SegmentHeader { prev_commit_id: good.prev_commit_id - 1, ..good },
        SegmentHeader { prev_fingerprint: Fingerprint(good.prev_fingerprint.0.wrapping_add(1)), ..good },
    ] {
        let mut data = original.clone();
        data[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&bad.encode());
        std::fs::write(&p2, &data).unwrap();
        let err = recover(tmp.path()).err().unwrap();
        assert_eq!(err.rule_id(), "REPL-7");
        let WalRecoveryError::Corruption { segment, violation } = &err else { panic!("{err:?}") };
        assert_eq!(segment, &segment_file_name(s2));
        assert!(
            matches!(violation, ChainViolation::SegmentDiscontinuity { start_lsn, declared_commit_id, declared_fingerprint, tip_lsn, tip_commit_id, tip_fingerprint }
                if *start_lsn == s2 && *declared_commit_id == bad.prev_commit_id && *declared_fingerprint == bad.prev_fingerprint
                && *tip_lsn == s2 && *tip_commit_id == good.prev_commit_id && *tip_fingerprint == good.prev_fingerprint),
            "{violation:?}"
        );
        assert_eq!(std::fs::read(&p2).unwrap(), data, "nothing repaired");
    }
    std::fs::write(&p2, &original).unwrap();
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 40);
}

/// REPL-7: a segment whose header start LSN disagrees with its file name,
/// or a `.seg` file with a malformed name, is a layout error.
#[test]
fn repl_7_segment_name_and_header_must_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let files = four_segments(tmp.path());
    let (s2, p2) = files[2].clone();
    let original = std::fs::read(&p2).unwrap();
    let good = SegmentHeader::decode(&original).unwrap();
    let mut data = original.clone();
    data[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&SegmentHeader { start_lsn: s2 + 1, ..good }.encode());
    std::fs::write(&p2, &data).unwrap();
    let err = recover(tmp.path()).err().unwrap();
    assert_eq!((err.code(), err.rule_id()), ("WAL_SEGMENT_LAYOUT", "REPL-7"));
    assert!(matches!(&err, WalRecoveryError::SegmentLayout { segment, .. } if *segment == segment_file_name(s2)), "{err:?}");
    std::fs::write(&p2, &original).unwrap();

    let stray = tmp.path().join("12345.seg");
    std::fs::write(&stray, b"").unwrap();
    let err = recover(tmp.path()).err().unwrap();
    assert!(matches!(&err, WalRecoveryError::SegmentLayout { segment, .. } if segment == "12345.seg"), "{err:?}");
    std::fs::remove_file(&stray).unwrap();
    assert_eq!(recover(tmp.path()).unwrap().report.records_verified, 40);
}

/// REPL-7: a directory without any segment is refused, never treated as an
/// empty history.
#[test]
fn repl_7_empty_wal_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = recover(tmp.path()).err().unwrap();
    assert!(matches!(err, WalRecoveryError::Empty(_)), "{err:?}");
    assert_eq!(err.code(), "WAL_EMPTY");
}

/// REPL-7: a WAL whose oldest segments were retired starts from the chain
/// state its first remaining segment declares, and validates from there.
#[test]
fn repl_7_recovery_starts_from_first_segment_header() {
    let tmp = tempfile::tempdir().unwrap();
    let files = four_segments(tmp.path());
    std::fs::remove_file(&files[0].1).unwrap();
    let h1 = SegmentHeader::decode(&std::fs::read(&files[1].1).unwrap()).unwrap();
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.report.start, ChainTip::of_segment(&h1));
    assert_eq!(rec.report.segments.first().unwrap().header, h1);
    assert_eq!(rec.replayed.first().unwrap().1.lsn, h1.start_lsn);
    assert_eq!(rec.replayed.first().unwrap().0.commit_id, h1.prev_commit_id + 1);
    assert_eq!(rec.report.end.commit_id, 40);
}

/// REPL-9: a leftover temporary file from an interrupted segment creation
/// is removed and reported; the history is unaffected.
#[test]
fn repl_9_leftover_segment_temp_file_is_removed_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    four_segments(tmp.path());
    let name = format!("{}.tmp", segment_file_name(999_999));
    std::fs::write(tmp.path().join(&name), b"half a header").unwrap();
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.report.removed_temp_files, vec![name.clone()]);
    assert!(!tmp.path().join(&name).exists());
    assert_eq!(rec.report.records_verified, 40);
    assert_eq!(rec.report.torn_tail, None);
}

/// REPL-2 / P5-I15: a chain violation and a recovery report serialize with
/// their real evidence (rule-relevant LSNs, CommitIds, fingerprints) for the
/// explanation layer.
#[test]
fn repl_2_violation_and_report_serialize_with_evidence() {
    let (r1, f1) = rec(1, ChainTip::GENESIS.fingerprint);
    let (r3, _) = rec(3, f1);
    let tmp = tempfile::tempdir().unwrap();
    raw_wal(tmp.path(), &[r1.clone(), r3]);
    let err = recover(tmp.path()).err().unwrap();
    let WalRecoveryError::Corruption { violation, .. } = &err else { panic!("{err:?}") };
    let json = serde_json::to_value(violation).unwrap();
    assert_eq!(json, serde_json::json!({"violation": "commit_id_discontinuity", "lsn": r1.len(), "expected": 2, "found": 3}));
    let text = err.to_string();
    assert!(text.contains("REPL-2") && text.contains(&format!("LSN {}", r1.len())), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    raw_wal(tmp.path(), std::slice::from_ref(&r1));
    append_bytes(&tmp.path().join(segment_file_name(0)), b"xyz");
    let report = recover(tmp.path()).unwrap().report;
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["end"]["commit_id"], 1);
    assert_eq!(json["end"]["end_lsn"], r1.len());
    assert_eq!(json["end"]["fingerprint"], f1.to_string());
    assert_eq!(json["torn_tail"]["lsn"], r1.len());
    assert_eq!(json["torn_tail"]["bytes_dropped"], 3);
    assert_eq!(json["records_verified"], 1);
}
