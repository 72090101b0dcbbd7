#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-6 / F-SC1 for the scrub's checks with real files: a snapshot is
//! verified completely by streaming (every crc32c, structure, the state
//! digest) and a flipped byte in any data file is found with its file and
//! range; a consistent-but-wrong file (checksums rewritten) is still caught
//! by the digest; a withdrawn snapshot leaves the published namespace and
//! is kept; sealed WAL segments are checked record by record.

mod common;

use std::fs;
use std::ops::ControlFlow;
use std::path::Path;

use aerodb_snapshot::scrub::{check_target, FindingAction, ScrubTarget, TargetKind, TargetOutcome};
use aerodb_snapshot::{create_snapshot_with, list_snapshots, withdraw_snapshot, SnapshotOptions};
use aerodb_wal::checksummed::write_checksummed;
use common::*;

const OPTIONS: SnapshotOptions = SnapshotOptions { file_target_bytes: 2048, batch_keys: 4, fsync_in_background: true };

fn snapshot_target(l: &Layout, c: u64) -> ScrubTarget {
    ScrubTarget {
        kind: TargetKind::Snapshot,
        name: format!("snapshots/{c:020}"),
        path: l.snapshot(c),
        expected_end: None,
        cluster_id: Some(CLUSTER.to_string()),
    }
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x04;
    fs::write(path, b).unwrap();
}

/// CORE-6, F-SC1: a good snapshot verifies with every byte paced; a flipped
/// byte in its second data file is reported as SNAPSHOT_CHECKSUM on that
/// file (the whole file is the smallest range its crc32c names); a file
/// rewritten with matching checksums is caught by the streamed state
/// digest; withdrawing moves it out of the published namespace and keeps it.
#[test]
fn f_sc1_scrub_check_finds_a_flipped_byte_in_a_snapshot_and_withdraws_it() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(80, "scrub");
    let info = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    assert!(info.files >= 2);
    let target = snapshot_target(&l, info.commit_id);
    let mut paced = 0u64;
    match check_target(&*disk(), &target, &mut |n| {
        paced += n;
        ControlFlow::Continue(())
    }) {
        TargetOutcome::Verified { bytes } => assert_eq!(bytes, info.data_bytes),
        other => panic!("{other:?}"),
    }
    assert_eq!(paced, info.data_bytes, "every data byte read is paced");

    let file = l.snapshot(info.commit_id).join("data-000001.bin");
    let len = fs::metadata(&file).unwrap().len();
    flip(&file, len as usize / 2);
    match check_target(&*disk(), &target, &mut |_| ControlFlow::Continue(())) {
        TargetOutcome::Damaged { damage, action, .. } => {
            assert_eq!(damage.file, format!("snapshots/{:020}/data-000001.bin", info.commit_id));
            assert_eq!((damage.code, damage.check_rule, damage.offset, damage.length), ("SNAPSHOT_CHECKSUM", "F-S4", 0, Some(len)));
            assert_eq!(action, FindingAction::Reported);
        }
        other => panic!("{other:?}"),
    }
    // The same flip with the manifest's crc32c rewritten to match: only the digest can tell.
    let bytes = fs::read(&file).unwrap();
    let path = l.snapshot(info.commit_id).join("manifest.json");
    let env: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut body = env["body"].clone();
    body["files"][1]["crc32c"] = crc32c::crc32c(&bytes).into();
    write_checksummed(&*disk(), &path, &body).unwrap();
    match check_target(&*disk(), &target, &mut |_| ControlFlow::Continue(())) {
        TargetOutcome::Damaged { damage, .. } => assert!(["SNAPSHOT_DIGEST", "SNAPSHOT_CORRUPT"].contains(&damage.code), "{damage:?}"),
        other => panic!("{other:?}"),
    }

    let to = withdraw_snapshot(&*disk(), &l.snapshots(), info.commit_id).unwrap();
    assert_eq!(to, format!(".damaged-{:020}", info.commit_id));
    assert!(list_snapshots(&*disk(), &l.snapshots()).unwrap().is_empty(), "withdrawn from the published namespace");
    assert!(l.snapshots().join(&to).join("data-000001.bin").exists(), "kept for forensics");
    assert!(matches!(check_target(&*disk(), &target, &mut |_| ControlFlow::Continue(())), TargetOutcome::Vanished));
    // Withdrawn again under the same CommitId: another name.
    create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    assert_eq!(withdraw_snapshot(&*disk(), &l.snapshots(), info.commit_id).unwrap(), format!(".damaged-{:020}-1", info.commit_id));
}

/// RES-3, CORE-6: a scrub check of a snapshot stops between two chunks
/// when its pacer asks (a shutdown): the outcome is `Interrupted`, not
/// verified and not damage, and the scrub state neither counts it nor
/// moves past it (the next run checks it again).
#[test]
fn res_3_core_6_scrub_check_of_a_snapshot_stops_between_chunks_when_asked() {
    use aerodb_snapshot::scrub::{ScrubPolicy, ScrubState};
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(80, "scrub");
    let info = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    assert!(info.files >= 3);
    let target = snapshot_target(&l, info.commit_id);
    let mut calls = 0u32;
    let mut paced = 0u64;
    let outcome = check_target(&*disk(), &target, &mut |n| {
        calls += 1;
        if calls == 2 {
            return ControlFlow::Break(());
        }
        paced += n;
        ControlFlow::Continue(())
    });
    assert_eq!(outcome, TargetOutcome::Interrupted);
    assert_eq!(calls, 2, "no read is asked for after the stop");
    assert!(paced < info.data_bytes, "the rest of the snapshot is not read");

    let mut state = ScrubState::new(ScrubPolicy::default());
    state.begin_pass(vec![target.clone()], Some(info.commit_id), 0);
    state.finish_target(TargetOutcome::Interrupted, Some(info.commit_id), 1);
    assert_eq!(state.next_target(), Some(target), "the interrupted target is still next");
    let status = state.status();
    assert_eq!((status.targets_verified_total, status.findings_total, status.passes_completed), (0, 0, 0));
}
