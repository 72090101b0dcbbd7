#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Regression tests for bugs the simulator found, reduced to production
//! calls over the simulated disk.

use std::path::Path;
use std::sync::Arc;

use aerodb_sim::disk::{IoClass, SimDisk};
use aerodb_sim::rng::SimRng;
use aerodb_wal::disk::Disk;
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::recovery::recover_wal;
use aerodb_wal::segment::segment_file_name;
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, Op, StateDigest};
use bytes::Bytes;

fn op(i: u64) -> Vec<Op> {
    vec![Op::Put { collection: Bytes::from_static(b"c"), key: Bytes::from(format!("k{i}")), doc: Bytes::from(vec![b'x'; 100]) }]
}

/// REPL-7 (simulator seed 501): WAL retention forgot every segment it meant
/// to remove before removing them; when removing the oldest failed (EIO),
/// that file stayed on disk but out of the list, and the next retention
/// pass removed the segments after it, leaving a gap that made recovery
/// refuse to start. Retention must keep the list equal to the files.
#[test]
fn repl_7_failed_segment_removal_never_leaves_a_gap() {
    let disk = SimDisk::new(SimRng::new(1, 1));
    let wal = Path::new("/n/wal");
    disk.mkdir_durable(wal).unwrap();
    let shared: Arc<dyn Disk> = disk.shared();
    let appender = SegmentAppender::create(shared.clone(), wal, ChainTip::GENESIS.segment_header()).unwrap();
    let mut writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, 300);
    for i in 0..12 {
        writer.append(&op(i)).unwrap();
        writer.sync().unwrap();
    }
    let segments = writer.segments().clone();
    let list = segments.snapshot();
    assert!(list.len() >= 5, "{} segments", list.len());
    let cut = list[3].header.start_lsn;
    let oldest = wal.join(segment_file_name(list[0].header.start_lsn));
    disk.fail_next(IoClass::Write, Some(&oldest), 1);
    assert!(segments.remove_segments_before(&*shared, cut).is_err());
    // A later pass (after the next snapshot) retires further.
    let _ = segments.remove_segments_before(&*shared, list[5].header.start_lsn);
    // Whatever was removed, what is left on disk is a contiguous WAL and
    // the list names exactly the files present.
    let (_, report) = recover_wal(shared.clone(), wal, |_, _| Ok(())).unwrap();
    assert_eq!(report.end.commit_id, 12);
    let files: Vec<String> = shared.list(wal).unwrap();
    let listed: Vec<String> = segments.snapshot().iter().map(|s| segment_file_name(s.header.start_lsn)).collect();
    assert_eq!(files, listed);
}

/// REPL-9 / F-S4 (simulator seed 660): when fsyncing the data directory
/// after creating `snapshots/` failed, the next snapshot saw the directory
/// existing and never synced its entry; WAL retention then removed the WAL
/// before it, and a power loss took the whole `snapshots/` directory, so
/// recovery had no base. A published snapshot must survive power loss.
#[test]
fn repl_9_published_snapshot_survives_power_loss_after_a_failed_dir_sync() {
    use aerodb_sim::disk::CrashKind;
    use aerodb_snapshot::{create_snapshot, list_snapshots, load_snapshot};
    let disk = SimDisk::new(SimRng::new(2, 1));
    let root = Path::new("/n");
    disk.mkdir_durable(root).unwrap();
    let snapshots = root.join("snapshots");
    let store = aerodb_mvcc::Store::new();
    disk.fail_next(IoClass::Sync, Some(root), 1);
    assert!(create_snapshot(&disk, &snapshots, &store, "cluster").is_err());
    let info = create_snapshot(&disk, &snapshots, &store, "cluster").unwrap();
    disk.crash(CrashKind::PowerLoss { torn: true });
    let held = list_snapshots(&disk, &snapshots).unwrap();
    assert_eq!(held.iter().map(|s| s.commit_id).collect::<Vec<_>>(), vec![info.commit_id]);
    load_snapshot(&disk, &held[0].path, Some("cluster")).unwrap();
}

/// CORE-1 (simulator seed 9): a process died while rolling to a new WAL
/// segment, after the rename but before the directory fsync; the page
/// cache kept the new segment's entry, recovery continued in it, fsynced
/// the data of new commits and acknowledged them, and a later power loss
/// removed the never-durable entry with every acknowledged commit in it.
/// Recovery must make the directory entries it continues from durable.
#[test]
fn core_1_commits_in_a_segment_whose_entry_was_not_durable_survive_power_loss() {
    use aerodb_sim::disk::CrashKind;
    let disk = SimDisk::new(SimRng::new(3, 1));
    let wal = Path::new("/n/wal");
    disk.mkdir_durable(wal).unwrap();
    let shared: Arc<dyn Disk> = disk.shared();
    let appender = SegmentAppender::create(shared.clone(), wal, ChainTip::GENESIS.segment_header()).unwrap();
    let mut writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, 300);
    writer.append(&op(0)).unwrap();
    writer.append(&op(1)).unwrap();
    writer.sync().unwrap();
    // The next append rolls: create tmp, write header, fsync, rename — and
    // the process dies at the directory fsync.
    disk.die_after(4);
    assert!(writer.append(&op(2)).is_err());
    drop(writer);
    disk.crash(CrashKind::Process);

    let (appender, report) = recover_wal(shared.clone(), wal, |_, _| Ok(())).unwrap();
    assert_eq!(report.end.commit_id, 2);
    let digest = StateDigest::EMPTY.after_ops(1, &op(0)).after_ops(2, &op(1));
    let mut writer = WalWriter::new(appender, report.end, digest, 1 << 20);
    let acked = writer.append(&op(2)).unwrap();
    writer.sync().unwrap();
    assert_eq!(acked.position.commit_id, 3);
    // Acknowledged now. Power loss:
    disk.crash(CrashKind::PowerLoss { torn: false });
    let (_, report) = recover_wal(shared, wal, |_, _| Ok(())).unwrap();
    assert_eq!(report.end.commit_id, 3, "the acknowledged commit survives");
}

/// F-S1 (simulator seed 87, before the fix): a duplicated snapshot piece
/// failed in storage after the engine had already queued the transfer's
/// finish; the engine abandoned the transfer and queued a discard behind
/// the finish. The finish validated the complete snapshot and committed the
/// bootstrap, then the discard deleted the installed snapshot and the new
/// WAL under the committed `replica.json`. A discard after a committed
/// bootstrap must leave the replica's state alone.
#[test]
fn f_s1_discard_queued_behind_a_committed_bootstrap_keeps_it() {
    use aerodb_repl_core::ids::{ClusterId, ReplicaId};
    use aerodb_repl_core::metadata::ReplicaPaths;
    use aerodb_repl_core::replica::{discard_uncommitted, recover_replica, Recovered, SnapshotFiles, SnapshotTransfer};
    use aerodb_snapshot::{create_snapshot, read_manifest};

    let disk = SimDisk::new(SimRng::new(4, 1));
    let (primary, replica) = (Path::new("/p"), Path::new("/r"));
    disk.mkdir_durable(&primary.join("wal")).unwrap();
    disk.mkdir_durable(replica).unwrap();
    let shared: Arc<dyn Disk> = disk.shared();
    // A primary with some history and a snapshot of it.
    let wal = primary.join("wal");
    let appender = SegmentAppender::create(shared.clone(), &wal, ChainTip::GENESIS.segment_header()).unwrap();
    let mut writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, 1 << 20);
    let mut digest = StateDigest::EMPTY;
    for i in 0..8 {
        digest = digest.after_ops(i + 1, &op(i));
        writer.append(&op(i)).unwrap();
    }
    writer.sync().unwrap();
    let store = aerodb_mvcc::Store::new();
    aerodb_mvcc::recover_store(shared.clone(), &wal, &store).unwrap();
    assert_eq!(store.applied().state_digest, digest);
    let cluster = "0123456789abcdef0123456789abcdef";
    let info = create_snapshot(&disk, &primary.join("snapshots"), &store, cluster).unwrap();
    // The replica receives it whole and commits the bootstrap.
    let paths = ReplicaPaths::new(replica);
    let format = SnapshotFiles::new(shared.clone());
    let manifest = disk.read_bounded(&info.path.join("manifest.json"), 1 << 20).unwrap();
    let mut transfer = SnapshotTransfer::begin(shared.clone(), &paths, &format, &bytes::Bytes::from(manifest)).unwrap();
    for (i, f) in read_manifest(&disk, &info.path).unwrap().files.iter().enumerate() {
        let bytes = disk.read_bounded(&info.path.join(&f.name), 1 << 20).unwrap();
        transfer.piece(i as u32, 0, &bytes::Bytes::from(bytes)).unwrap();
    }
    let (cluster_id, replica_id) = (ClusterId::parse(cluster).unwrap(), ReplicaId::parse("r1").unwrap());
    let ready = transfer.finish(&cluster_id, &replica_id).unwrap();
    assert_eq!(ready.info.start.applied.commit_id, 8);
    drop(ready);
    // The discard the engine queued behind the finish runs now.
    discard_uncommitted(&disk, &paths).unwrap();
    match recover_replica(shared, &paths, &format).unwrap() {
        Recovered::Ready(ready) => {
            assert_eq!(ready.info.start.applied.commit_id, 8);
            assert_eq!(ready.store.applied().state_digest, digest);
        }
        _ => panic!("the committed bootstrap was discarded"),
    }
}
