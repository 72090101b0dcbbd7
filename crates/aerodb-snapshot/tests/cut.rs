#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! P5-I8 and §7 determinism: a snapshot is an exact MVCC cut, taken while
//! commits continue, and its bytes are a pure function of the cut.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::ClientOp;
use aerodb_snapshot::{create_snapshot, create_snapshot_with, load_snapshot, validate_snapshot, SnapshotOptions};
use aerodb_wal::recovery::{scan_wal, RecoveryMode, ReplayRefusal};
use common::*;

const WAIT: Duration = Duration::from_secs(120);

/// P5-I8: a snapshot taken while four threads keep committing through the
/// `PrimaryEngine` holds exactly the versions with CommitId <= C_snap
/// (nothing later, nothing missing), its boundary is the real WAL record
/// C_snap (L_snap, F_snap and the digest that record carries), and
/// commits continue past the cut.
#[test]
fn p5_i8_snapshot_during_concurrent_writes_holds_exactly_the_cut() {
    let l = Layout::new();
    let engine = Arc::new(start_engine(&l.wal(), 64 * 1024));
    for i in 0..200u64 {
        engine_put(&engine, "pre", &format!("k{}", i % 50), &format!("{{\"i\":{i}}}"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{t}-{}", n % 40);
                    let op = if n % 7 == 6 {
                        ClientOp::Delete { collection: "live".into(), key }
                    } else {
                        client_put("live", &key, &format!("{{\"t\":{t},\"n\":{n}}}"))
                    };
                    engine.submit(vec![op]).unwrap().wait().unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    assert!(engine.store().wait_for_commit(400, WAIT) >= 400, "writers made no progress");
    let options = SnapshotOptions { file_target_bytes: 4096, batch_keys: 3 };
    let info = create_snapshot_with(&*disk(), &l.snapshots(), engine.store(), CLUSTER, &options, None).unwrap();
    assert!(info.created);
    assert!(info.files > 1, "small file target splits the cut into several files");
    let cut = info.commit_id;
    assert!(engine.store().wait_for_commit(cut + 200, WAIT) >= cut + 200, "commits continue after the cut");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    let live = all_versions(engine.store());
    assert!(live.iter().any(|v| v.commit_id > cut), "the live store moved past the cut");
    let expected: Vec<_> = live.into_iter().filter(|v| v.commit_id <= cut).collect();
    let (loaded, manifest) = load_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
    assert_eq!(loaded.applied(), manifest.cut());
    assert_eq!(manifest.boundary_commit_id, cut);
    assert_eq!(manifest.version_count, expected.len() as u64);
    assert_eq!(all_versions(&loaded), expected, "exactly the versions <= C_snap");

    drop(engine);
    let mut boundary = None;
    scan_wal(disk(), &l.wal(), RecoveryMode::ReadOnly, |record, pos| {
        if pos.commit_id == cut {
            boundary = Some((pos.end_lsn, pos.fingerprint, record.state_digest));
        }
        Ok::<(), ReplayRefusal>(())
    })
    .unwrap();
    assert_eq!(boundary, Some((info.lsn, info.fingerprint, info.state_digest)), "L_snap, F_snap and the digest are those of record C_snap");
}

/// REPL-8 (§7: snapshot names and contents are deterministic): two
/// snapshots of the same state, taken from the same store or from a store
/// rebuilt independently from the same WAL, are byte-identical, and
/// creating a snapshot that already exists is a no-op.
#[test]
fn repl_8_two_snapshots_of_the_same_state_are_byte_identical() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(150, "det");
    let options = SnapshotOptions { file_target_bytes: 2048, batch_keys: 5 };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let ia = create_snapshot_with(&*disk(), a.path(), &h.store, CLUSTER, &options, None).unwrap();
    let ib = create_snapshot_with(&*disk(), b.path(), &h.store, CLUSTER, &options, None).unwrap();
    drop(h);
    let rebuilt = full_replay(&l.wal());
    let ic = create_snapshot_with(&*disk(), c.path(), &rebuilt, CLUSTER, &options, None).unwrap();
    assert!(ia.files > 1);
    assert_eq!(ia.name, format!("{:020}", ia.commit_id));
    assert_eq!(names(a.path()), vec![ia.name.clone()]);
    assert_eq!(names(b.path()), names(a.path()));
    assert_eq!(names(c.path()), names(a.path()));
    let bytes_a = dir_bytes(&ia.path);
    assert_eq!(bytes_a, dir_bytes(&ib.path));
    assert_eq!(bytes_a, dir_bytes(&ic.path));
    assert!(!String::from_utf8_lossy(&bytes_a["manifest.json"]).contains("time"));

    let again = create_snapshot(&*disk(), a.path(), &rebuilt, CLUSTER).unwrap();
    assert!(!again.created, "existing snapshot returned as it is");
    assert_eq!(again.commit_id, ia.commit_id);
    assert_eq!(dir_bytes(&ia.path), bytes_a);
    validate_snapshot(&*disk(), &ia.path, Some(CLUSTER)).unwrap();
}

/// REPL-8: a snapshot of an empty store (C_snap = 0) is valid and loads
/// back into the empty state.
#[test]
fn repl_8_snapshot_of_the_empty_state_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = aerodb_mvcc::Store::new();
    let info = create_snapshot(&*disk(), dir.path(), &store, CLUSTER).unwrap();
    assert_eq!((info.commit_id, info.lsn, info.version_count), (0, 0, 0));
    let (loaded, _) = load_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
    assert_eq!(loaded.applied(), aerodb_mvcc::AppliedState::GENESIS);
}
