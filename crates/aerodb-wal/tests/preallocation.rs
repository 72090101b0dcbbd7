#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-3 / CORE-5 with a preallocating writer (`Preallocation`): zeros
//! written ahead of the records are never WAL and never judged as a torn
//! write or lost history (but reported when cut off), a torn record inside
//! them is a torn tail, zeros that replace records before the durable
//! mark are still refused (F-P4), sealed segments and a cleanly closed WAL
//! end at their last record, and no zero is written beyond the crash
//! window after the mark.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_wal::disk::OsDisk;
use aerodb_wal::durable::{DurablePoint, DurableWatch};
use aerodb_wal::group::{DurableRecord, DurableSink, GroupCommitter};
use aerodb_wal::log::Preallocation;
use aerodb_wal::mark::{read_mark, write_mark, DurableMark};
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::mark_writer::MarkGate;
use aerodb_wal::recovery::{recover_wal_with, WalRecoveryError, WalRecoveryReport};
use aerodb_wal::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::{AppendedRecord, WalWriter};
use aerodb_wal::ChainTip;
use common::*;

const CHUNK: u64 = 64 * 1024;
const DEADLINE: Duration = Duration::from_secs(60);

fn preallocating_writer(dir: &Path, segment_target: u64) -> WalWriter {
    new_writer(dir, segment_target).with_preallocation(Preallocation::Chunks(CHUNK))
}

fn segment0(dir: &Path) -> std::path::PathBuf {
    dir.join(segment_file_name(0))
}

fn tip_of(rec: &AppendedRecord) -> ChainTip {
    ChainTip { end_lsn: rec.position.end_lsn, commit_id: rec.position.commit_id, fingerprint: rec.position.fingerprint }
}

/// Writes a durable mark (crash window 1 MiB) naming `rec` and returns
/// the rule recovery applies with it, as read back from disk.
fn mark_at(dir: &Path, rec: &AppendedRecord, clean: bool) -> TailRule {
    write_mark(&OsDisk, dir, &DurableMark::at(tip_of(rec), clean, 1 << 20)).unwrap();
    TailRule::Mark { mark: read_mark(&OsDisk, dir).unwrap().unwrap() }
}

fn recover_under(dir: &Path, rule: TailRule) -> Result<WalRecoveryReport, WalRecoveryError> {
    recover_wal_with(OsDisk::shared(), dir, rule, |_, _| Ok(())).map(|(_, report)| report)
}

/// Writes `n` records with preallocation and "crashes" (drops the writer
/// without trimming): the file holds zeros after the last record.
fn crashed_wal(dir: &Path, n: u64) -> Vec<AppendedRecord> {
    let mut w = preallocating_writer(dir, NO_ROLL);
    let recs = write_samples(&mut w, n);
    assert!(w.has_preallocated_tail());
    drop(w); // a crash: the writer never trims (only close and idle do)
    recs
}

/// CORE-5, CORE-3: after a crash, zeros after the last record are
/// preallocated space: whatever the mark says (running or clean), they are
/// never judged as a torn write or lost history (the WAL's file end for the
/// mark checks is its last record); they are cut off and reported (as the
/// bytes dropped, and as preallocated zeros), and the history continues
/// right after the last record.
#[test]
fn core_5_preallocated_zeros_are_never_judged_and_are_cut_off_and_reported() {
    for clean in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let recs = crashed_wal(dir, 50);
        let last = recs.last().unwrap();
        let end = last.position.end_lsn;
        assert_eq!(file_len(&segment0(dir)), CHUNK, "one chunk preallocated");
        let rule = mark_at(dir, last, clean);

        let report = recover_under(dir, rule).unwrap();
        let zeros = CHUNK - SEGMENT_HEADER_LEN - end;
        assert_eq!(report.tail.file_end_lsn, end, "zeros are not bytes of the WAL");
        let space = report.preallocated.clone().expect("zeros reported");
        assert_eq!((space.lsn, space.bytes), (end, zeros));
        let dropped = report.torn_tail.clone().expect("what is cut off is reported");
        assert_eq!((dropped.lsn, dropped.bytes_dropped), (end, zeros), "clean={clean}");
        assert!(dropped.reason.contains("only zeros"), "{}", dropped.reason);
        assert_eq!(report.tail.drop.as_ref().map(|d| d.bytes_dropped), Some(zeros));
        assert_eq!(file_len(&segment0(dir)), SEGMENT_HEADER_LEN + end, "zeros cut off");

        let rec = recover(dir).unwrap();
        assert_eq!(rec.report.preallocated, None);
        let mut w = rec.into_writer(NO_ROLL).with_preallocation(Preallocation::Chunks(CHUNK));
        let next = w.append(&sample_ops(51)).unwrap();
        assert_eq!((next.position.lsn, next.position.commit_id), (end, 51));
        w.sync().unwrap();
    }
}

/// CORE-3, CORE-5: a record torn inside preallocated zeros after the mark
/// is a torn tail: it and the zeros after it are dropped and reported as
/// one range, the zeros after its last non-zero byte also as preallocated
/// space.
#[test]
fn core_5_a_torn_record_inside_preallocated_zeros_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let recs = crashed_wal(dir, 50);
    let marked = &recs[39];
    let rule = mark_at(dir, marked, false);
    let last = recs.last().unwrap().position;
    // The last record's second half never reached the disk: zeros again.
    let mut bytes = fs::read(segment0(dir)).unwrap();
    let cut = SEGMENT_HEADER_LEN + (last.lsn + last.end_lsn) / 2;
    bytes[cut as usize..(SEGMENT_HEADER_LEN + last.end_lsn) as usize].fill(0);
    fs::write(segment0(dir), &bytes).unwrap();
    let torn_end = bytes[..cut as usize].iter().rposition(|&b| b != 0).unwrap() as u64 + 1 - SEGMENT_HEADER_LEN;

    let report = recover_under(dir, rule).unwrap();
    let torn = report.torn_tail.clone().expect("the torn record is reported");
    assert_eq!((torn.lsn, torn.bytes_dropped), (last.lsn, bytes.len() as u64 - SEGMENT_HEADER_LEN - last.lsn));
    assert!(!torn.reason.contains("only zeros"), "{}", torn.reason);
    assert_eq!(report.preallocated.as_ref().map(|p| (p.lsn, p.bytes)), Some((torn_end, bytes.len() as u64 - SEGMENT_HEADER_LEN - torn_end)));
    assert_eq!(report.end.end_lsn, last.lsn);
    assert_eq!(file_len(&segment0(dir)), SEGMENT_HEADER_LEN + last.lsn);
}

/// F-P4: zeros where acknowledged records were (the WAL ends before the
/// mark) are refused even though only zeros follow, and nothing on disk
/// changes; the evidence names the mark and the range.
#[test]
fn f_p4_zeros_before_the_mark_are_refused_not_taken_for_preallocated_space() {
    for clean in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let recs = crashed_wal(dir, 50);
        let last = recs.last().unwrap();
        let rule = mark_at(dir, last, clean);
        let mut bytes = fs::read(segment0(dir)).unwrap();
        let from = (SEGMENT_HEADER_LEN + recs[44].position.lsn) as usize;
        bytes[from..].fill(0);
        fs::write(segment0(dir), &bytes).unwrap();

        let err = recover_under(dir, rule).unwrap_err();
        assert_eq!((err.code(), err.rule_id()), ("WAL_BEFORE_MARK", "CORE-5"), "clean={clean}: {err}");
        let WalRecoveryError::Mark(v) = &err else { panic!("{err}") };
        assert_eq!(v.damaged_range(), (recs[44].position.lsn, last.position.end_lsn));
        assert_eq!(fs::read(segment0(dir)).unwrap(), bytes, "nothing truncated");
    }
}

/// CORE-6 / REPL-7: a sealed segment ends exactly at its last record (the
/// preallocated zeros are cut off before the next segment is created), so
/// only the last segment can ever hold zeros.
#[test]
fn core_6_sealed_segments_end_at_their_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = preallocating_writer(dir, 4096);
    write_samples(&mut w, 200);
    let segments = w.segments().snapshot();
    assert!(segments.len() > 3, "expected several segments, got {}", segments.len());
    for s in &segments[..segments.len() - 1] {
        let path = dir.join(segment_file_name(s.header.start_lsn));
        assert_eq!(file_len(&path), SEGMENT_HEADER_LEN + (s.end_lsn - s.header.start_lsn), "{}", path.display());
    }
    let last = segments.last().unwrap();
    assert!(file_len(&dir.join(segment_file_name(last.header.start_lsn))) > SEGMENT_HEADER_LEN + (last.end_lsn - last.header.start_lsn));
}

/// CORE-5: the writer never writes a preallocated zero at or beyond its
/// limit (the mark plus the crash window), unless a record itself needs
/// the space; then it writes exactly what the record needs.
#[test]
fn core_5_preallocation_stays_within_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut w = preallocating_writer(dir, NO_ROLL);
    w.set_preallocation_limit(Some(1000));
    let first = write_samples(&mut w, 1);
    assert_eq!(file_len(&segment0(dir)), SEGMENT_HEADER_LEN + 1000, "zeros stop at the limit");
    let recs = write_samples(&mut w, 40);
    let end = recs.last().unwrap().position.end_lsn;
    assert!(end > 1000 && first[0].position.end_lsn < 1000);
    assert_eq!(file_len(&segment0(dir)), SEGMENT_HEADER_LEN + end, "past the limit only the records' own bytes");
}

struct NullSink;
impl DurableSink for NullSink {
    fn on_durable(&mut self, _records: &[DurableRecord]) -> Result<(), String> {
        Ok(())
    }
}

/// CORE-5: the group committer cuts the zeros off when it has been idle
/// and when it closes: a quiet WAL, like a cleanly shut down one, ends at
/// its last record.
#[test]
fn core_5_the_committer_cuts_preallocated_zeros_when_idle_and_at_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let writer = preallocating_writer(dir, NO_ROLL);
    let gate = Arc::new(MarkGate::new(ChainTip::GENESIS, 1 << 20));
    let durable = Arc::new(DurableWatch::new(DurablePoint::default()));
    let committer = GroupCommitter::start_with(writer, NullSink, durable.clone(), Some(gate)).unwrap();
    let logical = |durable: &DurableWatch| SEGMENT_HEADER_LEN + durable.current().lsn;
    committer.commit(sample_ops(1)).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while file_len(&segment0(dir)) != logical(&durable) {
        assert!(Instant::now() < deadline, "the idle committer never cut the zeros off");
        // audit: allow-sleep(poll interval of a deadline-bounded condition wait)
        std::thread::sleep(Duration::from_millis(5));
    }
    for i in 2..30 {
        committer.commit(sample_ops(i)).unwrap();
    }
    committer.close();
    assert_eq!(file_len(&segment0(dir)), logical(&durable), "a closed WAL ends at its last record");
}
