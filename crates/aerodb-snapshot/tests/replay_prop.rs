#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! REPL-4 over random workloads: snapshot + WAL tail and full WAL replay
//! reconstruct the identical state (same digest, same versions).

mod common;

use std::collections::BTreeSet;

use aerodb_mvcc::recover_store;
use aerodb_snapshot::{create_snapshot_with, load_snapshot, recover_primary, SnapshotOptions};
use aerodb_wal::recovery::recover_wal;
use aerodb_wal::Op;
use common::*;
use proptest::prelude::*;

/// One op: (collection 0..2, key 0..8, Some(doc size) for a put or None for a delete).
type RawOp = (u8, u8, Option<u8>);

fn write_set(raw: &[RawOp], commit: usize) -> Vec<Op> {
    let mut seen = BTreeSet::new();
    raw.iter()
        .filter(|(c, k, _)| seen.insert((*c, *k)))
        .map(|(c, k, doc)| {
            let (c, k) = (format!("c{c}"), format!("k{k}"));
            match doc {
                Some(n) => put(&c, &k, &format!("{{\"at\":{commit},\"v\":\"{}\"}}", "z".repeat(*n as usize))),
                None => del(&c, &k),
            }
        })
        .collect()
}

fn workload() -> impl Strategy<Value = Vec<Vec<RawOp>>> {
    let op = (0u8..2, 0u8..8, proptest::option::weighted(0.8, 0u8..120));
    proptest::collection::vec(proptest::collection::vec(op, 1..5), 1..50)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// REPL-4, P5-I9: for random workloads, snapshot points, segment sizes
    /// and data-file sizes, (a) loading the snapshot and replaying the WAL
    /// after L_snap, (b) replaying the whole WAL from genesis, and (c) the
    /// primary's recovery — also after WAL retention removed every segment
    /// wholly before L_snap — all end with the same applied state (CommitId,
    /// LSN, fingerprint, state digest) and exactly the same versions.
    #[test]
    fn repl_4_snapshot_plus_wal_tail_equals_full_replay(
        sets in workload(),
        cut_at in 0.0f64..=1.0,
        segment_target in prop_oneof![Just(256u64), Just(1024), Just(1 << 20)],
        file_target in prop_oneof![Just(64u64), Just(700), Just(1 << 20)],
        batch_keys in 1usize..6,
        retention in any::<bool>(),
    ) {
        let l = Layout::new();
        let k = ((sets.len() as f64) * cut_at) as usize;
        let mut h = History::create(&l.wal(), segment_target);
        for (i, raw) in sets[..k].iter().enumerate() {
            h.commit(&write_set(raw, i));
        }
        let options = SnapshotOptions { file_target_bytes: file_target, batch_keys, ..SnapshotOptions::default() };
        let info = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &options, None).unwrap();
        prop_assert_eq!(info.commit_id, k as u64);
        for (i, raw) in sets[k..].iter().enumerate() {
            h.commit(&write_set(raw, k + i));
        }
        let expected = h.store.applied();
        let expected_versions = all_versions(&h.store);
        drop(h);

        let (from_snapshot, manifest) = load_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
        prop_assert_eq!(from_snapshot.applied(), manifest.cut());
        let (_, report) = recover_store(disk(), &l.wal(), &from_snapshot).unwrap();
        prop_assert_eq!(report.replayed.map(|r| r.0), (k < sets.len()).then_some(k as u64 + 1));
        prop_assert_eq!(from_snapshot.applied(), expected);
        prop_assert_eq!(&all_versions(&from_snapshot), &expected_versions);

        let full = full_replay(&l.wal());
        prop_assert_eq!(full.applied(), expected);
        prop_assert_eq!(&all_versions(&full), &expected_versions);

        if retention {
            let (appender, _) = recover_wal(disk(), &l.wal(), |_, _| Ok(())).unwrap();
            let removed = appender.segments().remove_segments_before(&*disk(), info.lsn).unwrap();
            for name in &removed {
                prop_assert!(!l.wal().join(name).exists());
            }
        }
        let (store, appender, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
        prop_assert_eq!(report.snapshot_used.map(|s| s.commit_id), Some(k as u64));
        prop_assert_eq!(store.applied(), expected);
        prop_assert_eq!(appender.end_lsn(), expected.end_lsn);
        prop_assert_eq!(&all_versions(&store), &expected_versions);
    }
}
