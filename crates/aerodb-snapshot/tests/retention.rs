#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! P5-I9 and the snapshot policy: WAL retention removes only segments
//! wholly before the oldest kept snapshot, recovery still works after it,
//! and the scheduler snapshots by WAL volume and keeps the newest two.

mod common;

use std::fs;
use std::time::Duration;

use aerodb_snapshot::{create_snapshot_with, list_snapshots, read_manifest, recover_primary, SnapshotOptions, SnapshotPolicy, SnapshotScheduler};
use aerodb_wal::log::SegmentList;
use aerodb_wal::recovery::{recover_wal, scan_wal, RecoveryMode, ReplayRefusal};
use aerodb_wal::segment::segment_file_name;
use common::*;

const OPTIONS: SnapshotOptions = SnapshotOptions { file_target_bytes: 4096, batch_keys: 8, fsync_in_background: true };

fn segment_list(l: &Layout) -> SegmentList {
    let (appender, _) = recover_wal(disk(), &l.wal(), |_, _| Ok(())).unwrap();
    appender.segments().clone()
}

/// (commit_id, end_lsn) of every record in the WAL.
fn record_ends(l: &Layout) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    scan_wal(disk(), &l.wal(), RecoveryMode::ReadOnly, |_, pos| {
        out.push((pos.commit_id, pos.end_lsn));
        Ok::<(), ReplayRefusal>(())
    })
    .unwrap();
    out
}

/// P5-I9: `remove_segments_before(L)` removes exactly the segments that end
/// at or before L (never the one containing L, never the last), the list
/// and the directory agree afterwards, and recovery from the oldest
/// snapshot still works — including when L_snap is exactly a segment start,
/// where the kept segment's header proves the cut.
#[test]
fn p5_i9_retention_removes_only_segments_wholly_before_the_oldest_snapshot() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 512);
    h.commit_samples(100, "ret");
    let expected = h.store.applied();
    drop(h);
    let segments = segment_list(&l).snapshot();
    assert!(segments.len() > 10);
    // A commit that ends exactly where a segment starts (a segment boundary).
    let ends = record_ends(&l);
    let boundary_seg = segments[4];
    let (c_b, l_b) = *ends.iter().find(|(_, end)| *end == boundary_seg.header.start_lsn).unwrap();
    // Identical history in another directory, stopped at c_b, snapshotted into this layout.
    let twin = Layout::new();
    let mut h2 = History::create(&twin.wal(), 512);
    h2.commit_samples(c_b, "ret");
    let oldest = create_snapshot_with(&*disk(), &l.snapshots(), &h2.store, CLUSTER, &OPTIONS, None).unwrap();
    assert_eq!((oldest.commit_id, oldest.lsn), (c_b, l_b));
    h2.commit_samples(60 - c_b, "ret");
    let newer = create_snapshot_with(&*disk(), &l.snapshots(), &h2.store, CLUSTER, &OPTIONS, None).unwrap();
    drop(h2);

    let list = segment_list(&l);
    assert!(list.remove_segments_before(&*disk(), 0).unwrap().is_empty());
    let removed = list.remove_segments_before(&*disk(), oldest.lsn).unwrap();
    let expected_removed: Vec<String> = segments[..4].iter().map(|s| segment_file_name(s.header.start_lsn)).collect();
    assert_eq!(removed, expected_removed, "exactly the segments ending at or before L_snap");
    assert_eq!(list.first_lsn(), Some(oldest.lsn));
    let on_disk = names(&l.wal());
    assert_eq!(on_disk.len(), segments.len() - 4);
    assert_eq!(on_disk[0], segment_file_name(oldest.lsn));

    // Recovery from the newest snapshot, and from the oldest (newest broken), both work.
    let (store, _, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    assert_eq!((store.applied(), report.snapshot_used.map(|s| s.commit_id)), (expected, Some(newer.commit_id)));
    fs::remove_file(newer.path.join("data-000000.bin")).unwrap();
    let (store, _, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    assert_eq!((store.applied(), report.snapshot_used.map(|s| s.commit_id)), (expected, Some(oldest.commit_id)));
    assert_eq!(report.rejected_snapshots[0].code, "SNAPSHOT_MISSING_FILE");

    // An LSN strictly inside a segment keeps that segment.
    let list = segment_list(&l);
    let inside = segments[6];
    let lsn = inside.header.start_lsn + 1;
    let removed = list.remove_segments_before(&*disk(), lsn).unwrap();
    assert_eq!(removed, vec![segment_file_name(segments[4].header.start_lsn), segment_file_name(segments[5].header.start_lsn)]);
    assert!(l.wal().join(segment_file_name(inside.header.start_lsn)).exists(), "the segment containing L is kept");
    // Beyond the end: everything but the last segment goes, never the last.
    let removed = list.remove_segments_before(&*disk(), u64::MAX).unwrap();
    assert_eq!(removed.len(), segments.len() - 7);
    assert_eq!(names(&l.wal()), vec![segment_file_name(segments.last().unwrap().header.start_lsn)]);
    assert_eq!(list.snapshot().len(), 1);
}

/// F-S4: when retention removed the WAL's head and every snapshot that
/// could start the remaining WAL fails validation, recovery refuses with
/// RECOVERY_NO_BASE (listing the rejected snapshots) instead of guessing.
#[test]
fn f_s4_no_usable_base_after_retention_when_every_snapshot_is_broken() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 512);
    h.commit_samples(50, "nb");
    let snap = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    h.commit_samples(20, "nb");
    drop(h);
    assert!(!segment_list(&l).remove_segments_before(&*disk(), snap.lsn).unwrap().is_empty());
    fs::write(snap.path.join("extra"), b"x").unwrap();
    let err = match recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER) {
        Err(e) => e,
        Ok(_) => panic!("recovered without a base"),
    };
    assert_eq!((err.code(), err.rule_id()), ("RECOVERY_NO_BASE", "F-S4"), "{err}");
    assert!(err.to_string().contains("SNAPSHOT_EXTRA_FILE"), "{err}");
}

/// REPL-8, P5-I9: the scheduler takes a snapshot each time
/// `snapshot_every_bytes` of WAL became durable, keeps the newest two,
/// removes WAL segments wholly before the oldest kept one, and the node
/// recovers from the newest with the state it had.
#[test]
fn repl_8_scheduler_snapshots_by_wal_volume_keeps_two_and_retires_wal() {
    let l = Layout::new();
    let engine = start_engine(&l.wal(), 1024);
    let policy = SnapshotPolicy { snapshot_every_bytes: 2048, wal_retention_after_snapshot: true, keep: 2, wal_keep_bytes: 0 };
    let scheduler = SnapshotScheduler::start_with(disk(), l.snapshots(), &engine, CLUSTER, policy, OPTIONS, &[]).unwrap();
    let mut i = 0u64;
    while scheduler.status().snapshots_created < 4 {
        assert!(i < 50_000, "no snapshots after {i} commits: {:?}", scheduler.status());
        engine_put(&engine, "docs", &format!("d{}", i % 97), &format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(40)));
        i += 1;
    }
    scheduler.stop();
    let status = scheduler.status();
    assert!(status.snapshots_deleted >= 2, "{status:?}");
    assert!(status.segments_removed >= 1, "{status:?}");
    assert!(status.last_error.is_none(), "{status:?}");
    let held = list_snapshots(&*disk(), &l.snapshots()).unwrap();
    assert_eq!(held.len(), 2, "only the newest two are kept");
    let oldest = read_manifest(&*disk(), &held[1].path).unwrap();
    let newest = read_manifest(&*disk(), &held[0].path).unwrap();
    assert!(newest.boundary_lsn >= oldest.boundary_lsn + 2048, "one snapshot per 2048 WAL bytes");
    // The WAL still continues the oldest snapshot, and nothing wholly before it remains.
    let segs = engine.segments().snapshot();
    assert!(segs[0].header.start_lsn <= oldest.boundary_lsn);
    if segs.len() > 1 {
        assert!(segs[1].header.start_lsn > oldest.boundary_lsn);
    }
    assert_eq!(names(&l.wal()).len(), segs.len());
    let expected = engine.store().applied();
    drop(scheduler);
    drop(engine);
    let (store, _, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    assert_eq!(store.applied(), expected);
    assert_eq!(report.snapshot_used.map(|s| s.commit_id), Some(newest.boundary_commit_id));
}

/// REPL-8: `request_snapshot` creates a snapshot when none exists, returns
/// the newest one when asked for any, and a fresh one at the current
/// applied state when asked for a fresh one; with `snapshot_every_bytes` 0
/// nothing is taken automatically.
#[test]
fn repl_8_request_snapshot_returns_the_newest_or_a_fresh_one() {
    let l = Layout::new();
    let engine = start_engine(&l.wal(), 1 << 20);
    let scheduler = SnapshotScheduler::start_with(disk(), l.snapshots(), &engine, CLUSTER, SnapshotPolicy::new(0, false), OPTIONS, &[]).unwrap();
    for i in 0..30 {
        engine_put(&engine, "c", &format!("k{i}"), "{}");
    }
    assert!(list_snapshots(&*disk(), &l.snapshots()).unwrap().is_empty());
    let first = scheduler.request_snapshot(false).unwrap();
    assert!(first.created);
    assert_eq!(first.commit_id, 30);
    for i in 0..5 {
        engine_put(&engine, "c", &format!("k{i}"), "{\"v\":2}");
    }
    let same = scheduler.request_snapshot(false).unwrap();
    assert_eq!((same.commit_id, same.created), (30, false));
    let fresh = scheduler.request_snapshot(true).unwrap();
    assert_eq!((fresh.commit_id, fresh.created), (35, true));
    let again = scheduler.request_snapshot(true).unwrap();
    assert_eq!((again.commit_id, again.created), (35, false), "same state: the existing snapshot");
    assert_eq!(scheduler.wait_for_created(2, Duration::ZERO), 2);
    let held: Vec<u64> = scheduler.held().unwrap().iter().map(|s| s.commit_id).collect();
    assert_eq!(held, vec![35, 30]);
}

/// F-S4, P5-I9: a snapshot rejected at recovery is never one of the kept
/// snapshots nor the base of WAL retention: after the next snapshot the
/// rejected one is deleted, the older valid one is kept, and only WAL
/// wholly before the valid one is removed.
#[test]
fn f_s4_snapshot_rejected_at_recovery_is_neither_kept_nor_a_retention_base() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 512);
    h.commit_samples(30, "rj");
    let valid = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    h.commit_samples(30, "rj");
    let broken = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    h.commit_samples(10, "rj");
    drop(h);
    fs::write(broken.path.join("data-000000.bin"), b"rot").unwrap();
    let (_, _, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    let rejected: Vec<u64> = report.rejected_snapshots.iter().map(|r| r.commit_id).collect();
    assert_eq!(rejected, vec![broken.commit_id]);

    let engine = start_engine(&l.wal(), 512);
    let policy = SnapshotPolicy { snapshot_every_bytes: 0, wal_retention_after_snapshot: true, keep: 2, wal_keep_bytes: 0 };
    let scheduler = SnapshotScheduler::start_with(disk(), l.snapshots(), &engine, CLUSTER, policy, OPTIONS, &rejected).unwrap();
    assert_eq!(scheduler.request_snapshot(false).unwrap().commit_id, valid.commit_id, "a rejected snapshot is never served");
    engine_put(&engine, "c", "k", "{}");
    let fresh = scheduler.request_snapshot(true).unwrap();
    let held: Vec<u64> = list_snapshots(&*disk(), &l.snapshots()).unwrap().iter().map(|s| s.commit_id).collect();
    assert_eq!(held, vec![fresh.commit_id, valid.commit_id]);
    let first = engine.segments().snapshot()[0];
    assert!(first.header.start_lsn <= valid.lsn && valid.lsn <= first.end_lsn, "WAL continues the valid snapshot");
    assert!(scheduler.status().segments_removed > 0);
    drop(scheduler);
    let expected = engine.store().applied();
    drop(engine);
    fs::remove_dir_all(&fresh.path).unwrap();
    let (store, _, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    assert_eq!(store.applied(), expected);
    assert_eq!(report.snapshot_used.map(|s| s.commit_id), Some(valid.commit_id));
}

/// A replica registry stand-in: every known replica needs the WAL from `0`.
struct HoldAt(u64);

impl aerodb_snapshot::WalHolds for HoldAt {
    fn oldest_needed(&self) -> Option<u64> {
        Some(self.0)
    }
}

/// RES-2: the scheduler's retention keeps what snapshots need, and before
/// that what the cap allows: `after-oldest-snapshot` keeps a known
/// replica's WAL only within `--wal-keep-bytes`, `all` keeps everything
/// within it; the floor is recorded for observability and recovery still
/// works from the oldest kept snapshot.
#[test]
fn res_2_scheduler_keeps_replica_wal_within_the_cap_only() {
    let run = |after_oldest: bool, keep: u64, hold: Option<u64>| -> (u64, u64, Option<u64>) {
        let l = Layout::new();
        let engine = start_engine(&l.wal(), 512);
        let policy = SnapshotPolicy { snapshot_every_bytes: 0, wal_retention_after_snapshot: after_oldest, keep: 2, wal_keep_bytes: keep };
        let scheduler = SnapshotScheduler::start_with(disk(), l.snapshots(), &engine, CLUSTER, policy, OPTIONS, &[]).unwrap();
        if let Some(lsn) = hold {
            scheduler.set_wal_holds(std::sync::Arc::new(HoldAt(lsn)));
        }
        for round in 0..3 {
            for i in 0..40 {
                engine_put(&engine, "c", &format!("k{i}"), &format!("{{\"round\":{round},\"pad\":\"{}\"}}", "p".repeat(40)));
            }
            scheduler.request_snapshot(true).unwrap();
        }
        let status = scheduler.status();
        let first = engine.segments().snapshot()[0].header.start_lsn;
        scheduler.stop();
        let expected = engine.store().applied();
        drop(scheduler);
        drop(engine);
        let (store, _, _) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
        assert_eq!(store.applied(), expected, "recovery from what retention kept");
        (first, status.segments_removed, status.retention_floor)
    };
    let (first, removed, floor) = run(true, 1 << 30, Some(0));
    assert_eq!((first, removed, floor), (0, 0, Some(0)), "a known replica at genesis within the cap keeps everything");
    let (first, removed, floor) = run(true, 0, Some(0));
    assert!(first > 0 && removed > 0, "a cap of 0 keeps nothing for replicas: {first} {removed}");
    assert_eq!(floor.map(|f| f >= first), Some(true));
    let (first, removed, _) = run(true, 1 << 30, None);
    assert!(first > 0 && removed > 0, "no known replica: only what snapshots need");
    let (first, removed, _) = run(false, 1 << 30, None);
    assert_eq!((first, removed), (0, 0), "`all` keeps everything within the cap");
    let (first, removed, _) = run(false, 2048, None);
    assert!(first > 0 && removed > 0, "`all` removes what falls behind the cap");
}
