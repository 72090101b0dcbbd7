#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-4: recovery replays every record, in order, exactly once, with the
//! identities the writer assigned; replay is a pure function of the files.

mod common;

use aerodb_wal::disk::OsDisk;
use aerodb_wal::recovery::{recover_wal, ReplayRefusal, WalRecoveryError};
use aerodb_wal::segment::segment_file_name;
use aerodb_wal::{ChainTip, StateDigest};
use common::*;

/// CORE-4: the replay hook receives every record in WAL order, CommitIds
/// contiguous from 1, positions and digests exactly as the writer returned
/// them, across segment boundaries.
#[test]
fn core_4_replay_sees_every_record_in_order_with_writer_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), 2048);
    let written = write_samples(&mut w, 80);
    let tip = w.tip();
    drop(w);
    assert!(segment_files(tmp.path()).len() > 3);

    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.replayed.len(), 80);
    let mut digest = StateDigest::EMPTY;
    let mut prev_end = 0;
    for (i, ((record, pos), appended)) in rec.replayed.iter().zip(&written).enumerate() {
        let cid = i as u64 + 1;
        assert_eq!(record.commit_id, cid);
        assert_eq!(pos.commit_id, cid);
        assert_eq!(*pos, appended.position);
        assert_eq!(pos.lsn, prev_end, "LSNs are contiguous across segments");
        assert_eq!(record.fingerprint, pos.fingerprint);
        assert_eq!(record.ops(), &sample_ops(cid)[..]);
        digest = digest.after_ops(cid, record.ops());
        assert_eq!(record.state_digest, digest);
        assert_eq!(record.state_digest, appended.state_digest);
        prev_end = pos.end_lsn;
    }
    assert_eq!(rec.report.start, ChainTip::GENESIS);
    assert_eq!(rec.report.end, tip);
    assert_eq!(rec.report.records_verified, 80);
    assert_eq!(rec.report.segments.last().unwrap().end_lsn, tip.end_lsn);
}

/// CORE-4: recovery is deterministic and idempotent: recovering the same
/// files twice yields identical reports and identical replay sequences, and
/// recovering after a torn-tail truncation yields the truncated history
/// again, without a second truncation.
#[test]
fn core_4_recovery_twice_is_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), 1500);
    write_samples(&mut w, 50);
    drop(w);
    let a = recover(tmp.path()).unwrap();
    let (a_report, a_replayed) = (a.report.clone(), a.replayed.clone());
    drop(a);
    let b = recover(tmp.path()).unwrap();
    assert_eq!(b.report, a_report);
    assert_eq!(b.replayed, a_replayed);
    drop(b);

    // With a torn tail: the first recovery drops it, the next ones see the same history.
    let (last_start, last_path) = segment_files(tmp.path()).last().unwrap().clone();
    append_bytes(&last_path, &[7u8; 33]);
    let c = recover(tmp.path()).unwrap();
    let torn = c.report.torn_tail.clone().unwrap();
    assert_eq!((torn.segment.as_str(), torn.lsn, torn.bytes_dropped), (segment_file_name(last_start).as_str(), a_report.end.end_lsn, 33));
    assert_eq!(c.replayed, a_replayed);
    let c_report = c.report.clone();
    drop(c);
    let d = recover(tmp.path()).unwrap();
    assert_eq!(d.report.torn_tail, None);
    assert_eq!(d.report, a_report);
    assert_eq!(WalReport::from(&c_report), WalReport::from(&d.report));
    assert_eq!(d.replayed, a_replayed);
}

/// The parts of a report that do not depend on what was dropped.
#[derive(Debug, PartialEq)]
struct WalReport {
    start: ChainTip,
    end: ChainTip,
    records: u64,
    segments: usize,
}
impl From<&aerodb_wal::recovery::WalRecoveryReport> for WalReport {
    fn from(r: &aerodb_wal::recovery::WalRecoveryReport) -> Self {
        WalReport { start: r.start, end: r.end, records: r.records_verified, segments: r.segments.len() }
    }
}

/// CORE-4: a history written across several writer sessions (recover, keep
/// writing, recover) replays as one contiguous sequence.
#[test]
fn core_4_replay_across_restarts_is_contiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), 1024);
    let mut all = write_samples(&mut w, 15);
    drop(w);
    for _ in 0..3 {
        let rec = recover(tmp.path()).unwrap();
        assert_eq!(rec.positions(), all.iter().map(|a| a.position).collect::<Vec<_>>());
        let mut w = rec.into_writer(1024);
        all.extend(write_samples(&mut w, 15));
    }
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.positions(), all.iter().map(|a| a.position).collect::<Vec<_>>());
    let ids: Vec<u64> = rec.replayed.iter().map(|(r, _)| r.commit_id).collect();
    assert_eq!(ids, (1..=60).collect::<Vec<_>>());
    assert_eq!(replayed_ops(&rec), (1..=60).map(sample_ops).collect::<Vec<_>>());
    let digests: Vec<_> = rec.replayed.iter().map(|(r, _)| r.state_digest).collect();
    assert_eq!(digests, all.iter().map(|a| a.state_digest).collect::<Vec<_>>());
}

/// CORE-4: when the replay hook refuses a record, recovery stops right
/// there with the hook's code and rule, after handing over exactly the
/// records before it, and changes nothing on disk.
#[test]
fn core_4_replay_refusal_stops_recovery_at_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), 1024);
    let written = write_samples(&mut w, 30);
    drop(w);
    let before: Vec<Vec<u8>> = segment_files(tmp.path()).iter().map(|(_, p)| std::fs::read(p).unwrap()).collect();
    let mut seen = Vec::new();
    let err = recover_wal(OsDisk::shared(), tmp.path(), |r, pos| {
        seen.push(pos);
        if r.commit_id == 17 {
            return Err(ReplayRefusal { code: "STATE_DIGEST_MISMATCH", rule_id: "REPL-4", detail: "digest differs".into() });
        }
        Ok(())
    })
    .err()
    .unwrap();
    let WalRecoveryError::Replay { lsn, code, rule_id, ref detail } = err else { panic!("{err:?}") };
    assert_eq!(lsn, written[16].position.lsn);
    assert_eq!((code, rule_id, detail.as_str()), ("STATE_DIGEST_MISMATCH", "REPL-4", "digest differs"));
    assert_eq!((err.code(), err.rule_id()), ("STATE_DIGEST_MISMATCH", "REPL-4"));
    assert_eq!(seen, written[..17].iter().map(|a| a.position).collect::<Vec<_>>());
    let after: Vec<Vec<u8>> = segment_files(tmp.path()).iter().map(|(_, p)| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after);
}
