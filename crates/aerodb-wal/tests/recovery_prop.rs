#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Property tests of recovery over random histories: what is written and
//! synced is replayed exactly (CORE-1, CORE-4); any cut of the last segment
//! is a torn tail that keeps exactly the whole records (CORE-3); any damaged
//! record is corruption unless it is the very last one (CORE-3).

mod common;

use std::path::Path;

use aerodb_wal::recovery::WalRecoveryError;
use aerodb_wal::segment::SEGMENT_HEADER_LEN;
use aerodb_wal::writer::AppendedRecord;
use aerodb_wal::{ChainViolation, Op};
use bytes::Bytes;
use common::*;
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    let name = |re: &'static str| re.prop_map(|s: String| Bytes::from(s.into_bytes()));
    prop_oneof![
        3 => (name("[a-c]{1,4}"), name("[a-z0-9]{1,12}"), proptest::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(collection, key, doc)| Op::Put { collection, key, doc: Bytes::from(doc) }),
        1 => (name("[a-c]{1,4}"), name("[a-z0-9]{1,12}")).prop_map(|(collection, key)| Op::Delete { collection, key }),
    ]
}

fn history() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op(), 1..4), 1..30)
}

fn target() -> impl Strategy<Value = u64> {
    prop_oneof![Just(512u64), Just(2048), Just(NO_ROLL)]
}

fn write_history(dir: &Path, sets: &[Vec<Op>], target: u64) -> Vec<AppendedRecord> {
    let mut w = new_writer(dir, target);
    let written: Vec<_> = sets.iter().map(|ops| w.append(ops).unwrap()).collect();
    w.sync().unwrap();
    written
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// CORE-3 / CORE-4: random histories replay exactly as written; cutting
    /// the last segment file at any length ≥ its header is a torn tail (never
    /// corruption) that keeps exactly the records that were whole, and the
    /// history then continues with the next CommitId at the cut point.
    #[test]
    fn core_3_prop_write_recover_and_truncate_last_segment(
        sets in history(),
        target in target(),
        cuts in proptest::collection::vec(any::<u64>(), 1..5),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let written = write_history(tmp.path(), &sets, target);
        let positions: Vec<_> = written.iter().map(|a| a.position).collect();

        let rec = recover(tmp.path()).unwrap();
        prop_assert_eq!(rec.report.torn_tail.clone(), None);
        prop_assert_eq!(rec.positions(), positions.clone());
        prop_assert_eq!(replayed_ops(&rec), sets.clone());
        prop_assert_eq!(rec.report.records_verified, sets.len() as u64);
        for ((r, _), a) in rec.replayed.iter().zip(&written) {
            prop_assert_eq!(r.state_digest, a.state_digest);
        }
        drop(rec);

        let (seg_start, seg_path) = segment_files(tmp.path()).last().unwrap().clone();
        let full = std::fs::read(&seg_path).unwrap();
        let full_len = full.len() as u64;
        for cut in cuts {
            let cut = SEGMENT_HEADER_LEN + cut % (full_len - SEGMENT_HEADER_LEN + 1);
            std::fs::write(&seg_path, &full).unwrap();
            truncate_file(&seg_path, cut);
            let cut_lsn = seg_start + (cut - SEGMENT_HEADER_LEN);
            let kept: Vec<_> = positions.iter().copied().filter(|p| p.end_lsn <= cut_lsn).collect();
            let end = kept.last().map_or(0, |p| p.end_lsn).max(seg_start);

            let rec = match recover(tmp.path()) {
                Ok(r) => r,
                Err(e) => return Err(TestCaseError::fail(format!("cut at {cut}: {e}"))),
            };
            prop_assert_eq!(rec.positions(), kept.clone());
            prop_assert_eq!(rec.report.end.end_lsn, end);
            prop_assert_eq!(rec.report.end.commit_id, kept.len() as u64);
            match &rec.report.torn_tail {
                None => prop_assert_eq!(cut_lsn, end, "bytes dropped without a report"),
                Some(t) => {
                    prop_assert!(cut_lsn > end);
                    prop_assert_eq!((t.lsn, t.bytes_dropped), (end, cut_lsn - end));
                }
            }
            prop_assert_eq!(file_len(&seg_path), SEGMENT_HEADER_LEN + (end - seg_start));

            // The history continues right after the last whole record.
            let mut w = rec.into_writer(target);
            let next = w.append(&sets[0]).unwrap();
            prop_assert_eq!((next.position.lsn, next.position.commit_id), (end, kept.len() as u64 + 1));
            w.sync().unwrap();
            drop(w);
            let again = recover(tmp.path()).unwrap();
            prop_assert_eq!(again.report.torn_tail.clone(), None);
            prop_assert_eq!(again.report.end.commit_id, kept.len() as u64 + 1);
            // Later segments can only exist if the continuation rolled; remove them for the next cut.
            for (start, path) in segment_files(tmp.path()) {
                if start > seg_start {
                    std::fs::remove_file(path).unwrap();
                }
            }
        }
    }

    /// CORE-3: damaging one byte of one record halts recovery with
    /// corruption at that record's LSN, unless it is the very last record of
    /// the WAL, in which case it alone is dropped as a torn tail.
    #[test]
    fn core_3_prop_damage_is_corruption_unless_last_record(
        sets in history(),
        target in target(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let written = write_history(tmp.path(), &sets, target);
        let victim = written[which.index(written.len())].position;
        let (path, off) = locate(tmp.path(), victim.lsn);
        let len = victim.end_lsn - victim.lsn;
        flip_byte(&path, off + at.index(len as usize) as u64, mask);
        let before = std::fs::read(&path).unwrap();
        let is_last = victim.commit_id == written.len() as u64;
        match recover(tmp.path()) {
            Ok(rec) => {
                prop_assert!(is_last, "damage in record {} was not reported", victim.commit_id);
                let t = rec.report.torn_tail.clone().unwrap();
                prop_assert_eq!((t.lsn, t.bytes_dropped), (victim.lsn, len));
                prop_assert_eq!(rec.positions().len(), written.len() - 1);
            }
            Err(WalRecoveryError::Corruption { violation, .. }) => {
                prop_assert!(!is_last, "a damaged final record must be a torn tail: {}", violation);
                prop_assert!(matches!(violation, ChainViolation::InvalidRecord { .. }), "{:?}", violation);
                prop_assert_eq!(violation.lsn(), victim.lsn);
                prop_assert_eq!(std::fs::read(&path).unwrap(), before, "corruption must not be truncated");
            }
            Err(e) => return Err(TestCaseError::fail(format!("unexpected {e}"))),
        }
    }
}
