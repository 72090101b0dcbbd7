#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Snapshots and garbage collection (MVCC-4, MVCC-5, F-G2): a snapshot
//! holds exactly the versions retained at its horizon and records it;
//! loading and recovery restore it; a snapshot taken while GC records are
//! applied keeps its cut; format 1 snapshots (before GC) are still read.

mod common;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aerodb_snapshot::format::{data_file_name, SNAPSHOT_FORMAT_VERSION};
use aerodb_snapshot::{create_snapshot_with, load_snapshot, read_manifest, recover_primary, SnapshotOptions};
use common::*;

const OPTIONS: SnapshotOptions = SnapshotOptions { file_target_bytes: 2048, batch_keys: 3, fsync_in_background: true };
const WAIT: Duration = Duration::from_secs(120);

/// MVCC-4, REPL-4: after GC records, a snapshot holds only the retained
/// versions and records the horizon (format 2); loading it gives the same
/// horizon, digest and versions, and recovery from it plus a WAL tail that
/// holds more GC records ends exactly where a full replay ends.
#[test]
fn mvcc_4_snapshot_after_gc_holds_retained_versions_and_restores_the_horizon() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(60, "gc");
    h.gc(40);
    h.commit_samples(20, "gc");
    let retained = all_versions(&h.store);
    assert!(retained.iter().all(|v| v.commit_id > 40 || v.doc.is_some()), "no tombstone at or below the horizon");
    let info = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    assert_eq!((info.commit_id, info.history_horizon, info.version_count), (81, 40, h.store.version_count()));
    let manifest = read_manifest(&*disk(), &info.path).unwrap();
    assert_eq!((manifest.format_version, manifest.history_horizon), (SNAPSHOT_FORMAT_VERSION, 40));
    let (loaded, _) = load_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
    assert_eq!((loaded.applied(), loaded.history_horizon(), loaded.version_count()), (h.store.applied(), 40, h.store.version_count()));
    assert_eq!(all_versions(&loaded), retained);
    // The loaded store keeps collecting exactly like the original.
    h.commit_samples(30, "gc");
    h.gc(100);
    h.commit_samples(5, "gc");
    let expected = h.store.applied();
    drop(h);
    let (store, _appender, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    assert_eq!(report.snapshot_used.as_ref().map(|s| s.commit_id), Some(81));
    let full = full_replay(&l.wal());
    assert_eq!((store.applied(), store.history_horizon()), (expected, 100));
    assert_eq!((full.applied(), full.history_horizon()), (expected, 100));
    assert_eq!(all_versions(&store), all_versions(&full));
    assert_eq!(store.gc_stats(), full.gc_stats().with_records_applied(store.gc_stats().gc_records_applied));
}

trait WithRecords {
    fn with_records_applied(self, n: u64) -> Self;
}
impl WithRecords for aerodb_mvcc::GcStats {
    /// GC records applied since the store was built differ between a store
    /// loaded from a snapshot and one replayed from genesis; nothing else may.
    fn with_records_applied(mut self, n: u64) -> Self {
        self.gc_records_applied = n;
        self
    }
}

/// MVCC-5, F-G2: snapshots taken while writers commit and the primary
/// writes GC records (a retention window of a few commits, so the horizon
/// passes each cut while it streams, one key per batch) hold exactly their
/// cut: creation checks the streamed digest, and each snapshot loads to
/// its manifest's cut and horizon.
#[test]
fn mvcc_5_f_g2_snapshot_streamed_while_gc_records_apply_keeps_its_cut() {
    let l = Layout::new();
    let engine = Arc::new(start_engine_gc(&l.wal(), 64 * 1024, 5));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    engine_put(&engine, "live", &format!("w{t}-{}", n % 30), &format!("{{\"n\":{n}}}"));
                    n += 1;
                }
            })
        })
        .collect();
    assert!(engine.store().wait_for_commit(300, WAIT) >= 300, "writers made no progress");
    let options = SnapshotOptions { file_target_bytes: 4096, batch_keys: 1, ..SnapshotOptions::default() };
    let mut infos = Vec::new();
    for _ in 0..3 {
        let info = create_snapshot_with(&*disk(), &l.snapshots(), engine.store(), CLUSTER, &options, None).unwrap();
        assert!(info.history_horizon > 0, "GC ran before the cut");
        let target = info.commit_id + 50;
        assert!(engine.store().wait_for_commit(target, WAIT) >= target);
        infos.push(info);
    }
    assert!(engine.store().history_horizon() > infos[0].commit_id, "the horizon passed the first cut while writers ran");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    for info in &infos {
        let (loaded, manifest) = load_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
        assert_eq!(loaded.applied(), manifest.cut());
        assert_eq!(loaded.history_horizon(), info.history_horizon);
        assert_eq!(loaded.version_count(), info.version_count);
    }
    assert_eq!(engine.store().active_read_views(), Vec::new(), "snapshot pins are released");
    assert_eq!(engine.store().gc_stats().versions_awaiting_purge, 0);
}

/// MVCC-4: a format 1 snapshot (written before garbage collection, no
/// `history_horizon`) still loads, as horizon 0 with full history, and
/// recovery from it replays GC records written after it.
#[test]
fn mvcc_4_format_1_snapshot_still_loads_as_horizon_0() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(30, "v1");
    let info = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    // Rewrite it exactly as the first format wrote it.
    let manifest = read_manifest(&*disk(), &info.path).unwrap();
    let mut files = Vec::new();
    for (i, f) in manifest.files.iter().enumerate() {
        let path = info.path.join(data_file_name(i as u32));
        let mut b = fs::read(&path).unwrap();
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &b).unwrap();
        files.push((f.name.clone(), crc32c::crc32c(&b)));
    }
    edit_manifest_body(&info.path, |m| {
        m["format_version"] = 1.into();
        m.as_object_mut().unwrap().remove("history_horizon");
        for (i, (_, crc)) in files.iter().enumerate() {
            m["files"][i]["crc32c"] = (*crc).into();
        }
    });
    let (loaded, m) = load_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
    assert_eq!((m.format_version, m.history_horizon, loaded.history_horizon()), (1, 0, 0));
    assert_eq!(loaded.applied(), h.store.applied());
    assert_eq!(all_versions(&loaded), all_versions(&h.store));
    h.gc(25);
    h.commit_samples(3, "v1");
    let expected = (h.store.applied(), all_versions(&h.store));
    drop(h);
    let (store, _appender, report) = recover_primary(disk(), &l.snapshots(), &l.wal(), CLUSTER).unwrap();
    assert_eq!(report.snapshot_used.as_ref().map(|s| s.commit_id), Some(30));
    assert_eq!((store.applied(), all_versions(&store)), expected);
    assert_eq!(store.history_horizon(), 25);
}
