#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-5 / F-P4 with real files: the durable high-water mark bounds what
//! recovery may drop, the group committer never lets durable WAL run more
//! than the crash window beyond the last mark, and a clean shutdown writes
//! a mark at the exact end of the WAL.

mod common;

use std::fs;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_wal::disk::OsDisk;
use aerodb_wal::durable::{DurablePoint, DurableWatch};
use aerodb_wal::group::{DurableRecord, DurableSink, GroupCommitter};
use aerodb_wal::mark::{read_mark, write_mark, DurableMark};
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::mark_writer::{MarkGate, MarkPolicy, MarkWriter};
use aerodb_wal::recovery::{recover_wal_with, scan_wal_with, RecoveryMode, WalRecoveryError, WalRecoveryReport};
use aerodb_wal::segment::SEGMENT_HEADER_LEN;
use aerodb_wal::{ChainTip, StateDigest};
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// Verifies a sealed segment that must end at `expected_end`, counting the
/// bytes it paces.
fn verify_paced(path: &Path, expected_end: ChainTip) -> (aerodb_wal::seal_check::SealedSegmentCheck, u64) {
    let mut paced = 0u64;
    let ok = aerodb_wal::seal_check::verify_sealed_segment(&OsDisk, path, Some(expected_end), &mut |n| {
        paced += n;
        ControlFlow::Continue(())
    })
    .unwrap();
    (ok, paced)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // audit: allow-sleep(poll interval of a deadline-bounded condition wait)
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct NullSink;
impl DurableSink for NullSink {
    fn on_durable(&mut self, _records: &[DurableRecord]) -> Result<(), String> {
        Ok(())
    }
}

fn recover_with(dir: &Path, rule: TailRule) -> Result<WalRecoveryReport, WalRecoveryError> {
    recover_wal_with(OsDisk::shared(), dir, rule, |_, _| Ok(())).map(|(_, report)| report)
}

fn mark_rule(dir: &Path) -> TailRule {
    TailRule::Mark { mark: read_mark(&OsDisk, dir).unwrap().expect("a mark") }
}

fn segment(dir: &Path) -> std::path::PathBuf {
    segment_path(dir, 0)
}

fn segment_path(dir: &Path, start_lsn: u64) -> std::path::PathBuf {
    dir.join(aerodb_wal::segment::segment_file_name(start_lsn))
}

/// Writes `n` sample records and a mark naming record `marked` (0 = genesis).
fn wal_with_mark(dir: &Path, n: u64, marked: u64, clean: bool) -> Vec<aerodb_wal::writer::AppendedRecord> {
    let mut w = new_writer(dir, NO_ROLL);
    let recs = write_samples(&mut w, n);
    let tip = if marked == 0 {
        ChainTip::GENESIS
    } else {
        let p = recs[marked as usize - 1].position;
        ChainTip { end_lsn: p.end_lsn, commit_id: p.commit_id, fingerprint: p.fingerprint }
    };
    write_mark(&OsDisk, dir, &DurableMark::at(tip, clean, 1 << 20)).unwrap();
    recs
}

/// CORE-5: with the mark writer not running, 8 concurrent committers stall
/// once the next record would take durable WAL beyond the crash window
/// after the last mark; nothing beyond the window is ever appended. Once
/// the writer runs, every commit completes, and a clean shutdown writes
/// the mark at the exact end of the WAL, which recovery then accepts with
/// nothing dropped.
#[test]
fn core_5_group_commit_never_runs_beyond_the_mark_window() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let writer = new_writer(dir, NO_ROLL);
    write_mark(&OsDisk, dir, &DurableMark::at(ChainTip::GENESIS, false, 4096)).unwrap();
    let policy = MarkPolicy { every_ms: 3_600_000, every_bytes: 2048 };
    let gate = Arc::new(MarkGate::new(ChainTip::GENESIS, policy.window_bytes()));
    let durable = Arc::new(DurableWatch::new(DurablePoint::default()));
    let committer = Arc::new(GroupCommitter::start_with(writer, NullSink, durable.clone(), Some(gate.clone())).unwrap());
    let acked = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (committer, acked) = (committer.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0..40u64 {
                    committer.commit(sample_ops(t * 1000 + i)).unwrap();
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    wait_until("the committer to wait for a mark", || gate.status().backpressure_waits > 0);
    let status = gate.status();
    let window = policy.window_bytes();
    assert_eq!(status.marked.unwrap().end_lsn, 0, "no mark was written");
    assert!(durable.current().lsn <= window, "durable {} beyond the window {window}", durable.current().lsn);
    let on_disk = fs::metadata(segment(dir)).unwrap().len() - SEGMENT_HEADER_LEN;
    assert!(on_disk <= window, "{on_disk} bytes appended, window {window}");
    assert!(acked.load(Ordering::SeqCst) < 320, "commits stall while the window is full");

    let marker = MarkWriter::start(OsDisk::shared(), dir.to_path_buf(), gate.clone(), policy).unwrap();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(acked.load(Ordering::SeqCst), 320);
    assert!(gate.status().marks_written > 0);
    let running = read_mark(&OsDisk, dir).unwrap().unwrap();
    assert!(!running.clean_shutdown);
    assert!(durable.current().lsn - running.end_lsn <= window, "the on-disk mark is within the window of the durable end");

    committer.close();
    let clean = marker.finish_clean().unwrap().expect("a clean shutdown");
    let end = durable.current();
    assert_eq!((clean.end_lsn, clean.commit_id, clean.clean_shutdown), (end.lsn, end.commit_id, true));
    assert_eq!(read_mark(&OsDisk, dir).unwrap(), Some(clean));
    let report = recover_with(dir, mark_rule(dir)).unwrap();
    assert_eq!((report.end.end_lsn, report.torn_tail.clone(), report.tail.beyond_mark_bytes), (end.lsn, None, Some(0)));
}

/// F-P4, CORE-5: after a clean shutdown, a flipped byte in the last record,
/// a zeroed last 4 KiB block, or a missing last record is refused with the
/// mark, the WAL end and the damaged range, and nothing on disk changes.
#[test]
fn f_p4_component_damage_before_a_clean_mark_is_refused_and_nothing_truncated() {
    type Damage = fn(&Path, &[aerodb_wal::writer::AppendedRecord]);
    let damages: [(&str, Damage); 4] = [
        ("flip in the last record", |dir, recs| {
            let last = recs.last().unwrap().position;
            flip_byte(&segment(dir), SEGMENT_HEADER_LEN + (last.lsn + last.end_lsn) / 2, 0x5A);
        }),
        ("zeroed last 4 KiB block", |dir, _| {
            let mut bytes = fs::read(segment(dir)).unwrap();
            let len = bytes.len();
            bytes[len - 4096..].fill(0);
            fs::write(segment(dir), bytes).unwrap();
        }),
        ("truncated by one record", |dir, recs| {
            truncate_file(&segment(dir), SEGMENT_HEADER_LEN + recs.last().unwrap().position.lsn);
        }),
        ("garbage after the end", |dir, _| {
            let mut bytes = fs::read(segment(dir)).unwrap();
            bytes.extend_from_slice(&[0xA5; 100]);
            fs::write(segment(dir), bytes).unwrap();
        }),
    ];
    for (name, damage) in damages {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let recs = wal_with_mark(dir, 120, 120, true);
        damage(dir, &recs);
        let before = fs::read(segment(dir)).unwrap();
        let read_only = scan_wal_with(OsDisk::shared(), dir, RecoveryMode::ReadOnly, mark_rule(dir), |_, _| Ok(())).unwrap_err();
        let err = recover_with(dir, mark_rule(dir)).unwrap_err();
        assert_eq!(read_only.code(), err.code(), "{name}");
        assert_eq!(err.rule_id(), "CORE-5", "{name}");
        let expected = if name.starts_with("garbage") { "WAL_DAMAGED_AFTER_CLEAN_SHUTDOWN" } else { "WAL_BEFORE_MARK" };
        assert_eq!(err.code(), expected, "{name}: {err}");
        let WalRecoveryError::Mark(v) = &err else { panic!("{name}: {err}") };
        assert_eq!(v.mark().end_lsn, recs.last().unwrap().position.end_lsn, "{name}");
        let (from, to) = v.damaged_range();
        assert!(from < to, "{name}: a damaged range {from}..{to}");
        assert_eq!(fs::read(segment(dir)).unwrap(), before, "{name}: nothing truncated");
    }
}

/// CORE-5: after a crash (a running mark), invalid bytes after the mark are
/// a torn tail: dropped (truncated) in repair mode, left in place in
/// read-only mode, and reported with the mark comparison; the same damage
/// before the mark is refused.
#[test]
fn core_5_crash_torn_tail_after_the_mark_is_dropped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let recs = wal_with_mark(dir, 40, 30, false);
    let last = recs.last().unwrap().position;
    flip_byte(&segment(dir), SEGMENT_HEADER_LEN + (last.lsn + last.end_lsn) / 2, 0x5A);
    let len = fs::metadata(segment(dir)).unwrap().len();
    let seen = scan_wal_with(OsDisk::shared(), dir, RecoveryMode::ReadOnly, mark_rule(dir), |_, _| Ok(())).unwrap();
    assert_eq!(fs::metadata(segment(dir)).unwrap().len(), len, "read-only changes nothing");
    assert_eq!(seen.torn_tail.as_ref().map(|t| t.lsn), Some(last.lsn));
    let report = recover_with(dir, mark_rule(dir)).unwrap();
    assert_eq!(fs::metadata(segment(dir)).unwrap().len(), SEGMENT_HEADER_LEN + last.lsn, "truncated to the last valid record");
    let marked = recs[29].position.end_lsn;
    assert_eq!(report.tail.beyond_mark_bytes, Some(last.lsn - marked));
    assert_eq!(report.tail.drop.as_ref().map(|t| t.bytes_dropped), Some(last.end_lsn - last.lsn));
    assert_eq!(report.tail.window_bytes, Some(1 << 20));

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let recs = wal_with_mark(dir, 40, 40, false);
    let last = recs.last().unwrap().position;
    flip_byte(&segment(dir), SEGMENT_HEADER_LEN + (last.lsn + last.end_lsn) / 2, 0x5A);
    assert_eq!(recover_with(dir, mark_rule(dir)).unwrap_err().code(), "WAL_BEFORE_MARK");
}

/// CORE-5: a WAL that reaches the mark but holds another history there
/// (a different record ends at the mark's LSN) is refused.
#[test]
fn core_5_rewritten_history_under_the_mark_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let recs = wal_with_mark(dir, 10, 10, true);
    let mark = read_mark(&OsDisk, dir).unwrap().unwrap();
    fs::remove_file(segment(dir)).unwrap();
    let mut w = new_writer(dir, NO_ROLL);
    for i in 0..12 {
        w.append(&[put("other", &format!("k{i}"), &format!("{{\"different\":\"{}\"}}", "d".repeat(100)))]).unwrap();
    }
    w.sync().unwrap();
    write_mark(&OsDisk, dir, &mark).unwrap();
    let err = recover_with(dir, TailRule::Mark { mark }).unwrap_err();
    assert_eq!(err.code(), "WAL_MARK_MISMATCH", "{err}");
    assert_ne!(recs.len(), 0);
}

/// CORE-5: a mark at a segment boundary is proven by the segment header;
/// losing the whole last segment ends the WAL before the mark.
#[test]
fn core_5_mark_at_a_segment_start_and_a_lost_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = new_writer(dir, 2048);
    let recs = write_samples(&mut w, 60);
    let segments = w.segments().snapshot();
    assert!(segments.len() >= 3);
    let last_start = segments.last().unwrap().header;
    write_mark(&OsDisk, dir, &DurableMark::at(ChainTip::of_segment(&last_start), false, 1 << 20)).unwrap();
    assert!(recover_with(dir, mark_rule(dir)).is_ok());
    let end = recs.last().unwrap().position;
    write_mark(&OsDisk, dir, &DurableMark::at(ChainTip { end_lsn: end.end_lsn, commit_id: end.commit_id, fingerprint: end.fingerprint }, true, 1 << 20))
        .unwrap();
    fs::remove_file(segment_path(dir, last_start.start_lsn)).unwrap();
    let err = recover_with(dir, mark_rule(dir)).unwrap_err();
    assert_eq!(err.code(), "WAL_BEFORE_MARK", "{err}");
    assert_eq!(err.lsn(), Some(last_start.start_lsn));
    let _ = StateDigest::EMPTY;
}

/// CORE-6: a sealed segment is re-verified record by record; a flipped
/// byte is reported with the file offset of the damaged record and the
/// failed check, a missing tail as a truncated record, a wrong end against
/// the next segment as a discontinuity, and a removed file as vanished.
#[test]
fn core_6_sealed_segment_check_finds_the_damaged_record() {
    use aerodb_wal::seal_check::{verify_sealed_segment, SealedSegmentError};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = new_writer(dir, 4096);
    let recs = write_samples(&mut w, 80);
    let segments = w.segments().snapshot();
    assert!(segments.len() >= 3);
    let (first, second) = (segments[0], segments[1]);
    let path = segment_path(dir, 0);
    let (ok, paced) = verify_paced(&path, ChainTip::of_segment(&second.header));
    assert_eq!(ok.end.end_lsn, first.end_lsn);
    assert_eq!(ok.bytes, fs::metadata(&path).unwrap().len());
    assert_eq!(paced, ok.bytes, "every byte read is paced");
    assert_eq!(ok.records, recs.iter().filter(|r| r.position.end_lsn <= first.end_lsn).count() as u64);

    let victim = recs[3].position;
    flip_byte(&path, SEGMENT_HEADER_LEN + victim.lsn + 20, 0x01);
    match verify_sealed_segment(&OsDisk, &path, None, &mut |_| ControlFlow::Continue(())) {
        Err(SealedSegmentError::Damaged(d)) => {
            assert_eq!((d.offset, d.lsn, d.code, d.check_rule), (SEGMENT_HEADER_LEN + victim.lsn, Some(victim.lsn), "CHECKSUM_MISMATCH", "CORE-2"), "{d:?}");
        }
        other => panic!("{other:?}"),
    }
    flip_byte(&path, SEGMENT_HEADER_LEN + victim.lsn + 20, 0x01);
    let len = fs::metadata(&path).unwrap().len();
    truncate_file(&path, len - 10);
    match verify_sealed_segment(&OsDisk, &path, None, &mut |_| ControlFlow::Continue(())) {
        Err(SealedSegmentError::Damaged(d)) => assert_eq!(d.code, "INVALID_RECORD", "{d:?}"),
        other => panic!("{other:?}"),
    }
    let path2 = segment_path(dir, second.header.start_lsn);
    match verify_sealed_segment(&OsDisk, &path2, Some(ChainTip::GENESIS), &mut |_| ControlFlow::Continue(())) {
        Err(SealedSegmentError::Damaged(d)) => assert_eq!(d.code, "SEGMENT_DISCONTINUITY", "{d:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(verify_sealed_segment(&OsDisk, &dir.join("nope.seg"), None, &mut |_| ControlFlow::Continue(())), Err(SealedSegmentError::Vanished)));
}

/// CORE-6, RES-1: the sealed-segment check reads a segment in small
/// chunks (its buffer is memory that does not follow live data), and still
/// verifies every record exactly: records that straddle chunk boundaries
/// and a record larger than a chunk (a 200 KiB document).
#[test]
fn core_6_res_1_sealed_segment_check_reads_in_chunks_across_record_boundaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = new_writer(dir, 384 * 1024);
    let mut recs = write_samples(&mut w, 500);
    recs.push(w.append(&[put("big", "doc", &format!("{{\"pad\":\"{}\"}}", "y".repeat(200 * 1024)))]).unwrap());
    recs.extend(write_samples(&mut w, 4_000));
    let segments = w.segments().snapshot();
    assert!(segments.len() >= 2, "the first segment is sealed");
    let (first, second) = (segments[0], segments[1]);
    let path = segment_path(dir, 0);
    assert!(fs::metadata(&path).unwrap().len() > 4 * 64 * 1024, "the segment spans many chunks");
    let (ok, paced) = verify_paced(&path, ChainTip::of_segment(&second.header));
    assert_eq!(ok.end.end_lsn, first.end_lsn);
    assert_eq!(paced, ok.bytes, "every byte read is paced");
    assert_eq!(ok.records, recs.iter().filter(|r| r.position.end_lsn <= first.end_lsn).count() as u64);
    assert!(
        recs.iter().any(|r| r.position.end_lsn <= first.end_lsn && r.position.end_lsn - r.position.lsn > 200 * 1024),
        "the big record is in the checked segment"
    );
}

/// RES-3, CORE-6: the sealed-segment check stops between two chunks when
/// its pacer asks (a shutdown), reads nothing more and says it was
/// interrupted, not that the segment is good or damaged.
#[test]
fn res_3_core_6_sealed_segment_check_stops_between_chunks_when_asked() {
    use aerodb_wal::seal_check::{verify_sealed_segment, SealedSegmentError};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = new_writer(dir, 384 * 1024);
    write_samples(&mut w, 4_000);
    let path = segment_path(dir, 0);
    assert!(fs::metadata(&path).unwrap().len() > 4 * 64 * 1024, "the segment spans many chunks");
    let mut calls = 0u32;
    let mut paced = 0u64;
    let outcome = verify_sealed_segment(&OsDisk, &path, None, &mut |n| {
        calls += 1;
        if calls == 3 {
            return ControlFlow::Break(());
        }
        paced += n;
        ControlFlow::Continue(())
    });
    assert!(matches!(outcome, Err(SealedSegmentError::Interrupted)), "{outcome:?}");
    assert_eq!(calls, 3, "no read is asked for after the stop");
    assert!(paced < fs::metadata(&path).unwrap().len(), "the rest of the segment is not read");
}
