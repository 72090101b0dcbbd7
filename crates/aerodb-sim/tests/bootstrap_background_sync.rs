#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The production runtime's bootstrap fsyncs each completed snapshot file
//! on a thread of its own (`SnapshotTransfer::sync_with`, the runtime's
//! `ThreadSyncer`): the bootstrap still commits only once every file is
//! durable. Here the same kind of syncer runs over the simulated disk.

use std::path::Path;
use std::sync::Arc;

use aerodb_repl_core::ids::{ClusterId, ReplicaId};
use aerodb_repl_core::metadata::ReplicaPaths;
use aerodb_repl_core::replica::{recover_replica, BootstrapError, FileSyncer, Recovered, SnapshotFiles, SnapshotTransfer};
use aerodb_sim::disk::{CrashKind, IoClass, SimDisk};
use aerodb_sim::rng::SimRng;
use aerodb_snapshot::{create_snapshot_with, read_manifest, SnapshotOptions};
use aerodb_wal::disk::{Disk, DiskFile};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, Op, StateDigest};
use bytes::Bytes;

const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

/// Each file's fsync on a thread of its own, like the runtime's.
#[derive(Default)]
struct Background(Vec<std::thread::JoinHandle<std::io::Result<()>>>);

impl FileSyncer for Background {
    fn start(&mut self, file: Box<dyn DiskFile>) -> std::io::Result<()> {
        self.0.push(std::thread::spawn(move || file.sync_data()));
        Ok(())
    }
    fn wait_all(&mut self) -> std::io::Result<()> {
        let results: Vec<_> = self.0.drain(..).map(|t| t.join().unwrap()).collect();
        results.into_iter().collect()
    }
}

/// A primary at CommitId 40 with a snapshot split into several small files;
/// returns the disk, the snapshot directory and the state digest.
fn primary_snapshot() -> (SimDisk, std::path::PathBuf, StateDigest) {
    let disk = SimDisk::new(SimRng::new(9, 1));
    let primary = Path::new("/p");
    disk.mkdir_durable(&primary.join("wal")).unwrap();
    disk.mkdir_durable(Path::new("/r")).unwrap();
    let shared: Arc<dyn Disk> = disk.shared();
    let appender = SegmentAppender::create(shared.clone(), &primary.join("wal"), ChainTip::GENESIS.segment_header()).unwrap();
    let mut writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, 1 << 20);
    let mut digest = StateDigest::EMPTY;
    for i in 0..40u64 {
        let ops = vec![Op::Put { collection: Bytes::from_static(b"c"), key: Bytes::from(format!("k{i:03}")), doc: Bytes::from(vec![b'x'; 100]) }];
        digest = digest.after_ops(i + 1, &ops);
        writer.append(&ops).unwrap();
    }
    writer.sync().unwrap();
    let store = aerodb_mvcc::Store::new();
    aerodb_mvcc::recover_store(shared, &primary.join("wal"), &store).unwrap();
    let options = SnapshotOptions { file_target_bytes: 1024, ..SnapshotOptions::default() };
    let info = create_snapshot_with(&disk, &primary.join("snapshots"), &store, CLUSTER, &options, None).unwrap();
    assert!(info.files > 3, "{} files", info.files);
    (disk, info.path, digest)
}

fn transfer(disk: &SimDisk, snapshot: &Path) -> SnapshotTransfer {
    let shared: Arc<dyn Disk> = disk.shared();
    let paths = ReplicaPaths::new(Path::new("/r"));
    let manifest = disk.read_bounded(&snapshot.join("manifest.json"), 1 << 20).unwrap();
    let mut t = SnapshotTransfer::begin(shared.clone(), &paths, &SnapshotFiles::new(shared), &Bytes::from(manifest)).unwrap();
    t.sync_with(Box::<Background>::default());
    for (i, f) in read_manifest(disk, snapshot).unwrap().files.iter().enumerate() {
        let bytes = Bytes::from(disk.read_bounded(&snapshot.join(&f.name), 1 << 20).unwrap());
        // Two pieces per file: a file completes while the next one starts.
        let half = bytes.len() / 2;
        t.piece(i as u32, 0, &bytes.slice(..half)).unwrap();
        t.piece(i as u32, half as u64, &bytes.slice(half..)).unwrap();
    }
    t
}

/// REPL-9: with the files fsynced in the background, a power loss right
/// after the bootstrap committed finds every file durable: the replica
/// recovers to the snapshot's state.
#[test]
fn repl_9_background_fsyncs_are_durable_before_the_bootstrap_commits() {
    let (disk, snapshot, digest) = primary_snapshot();
    let t = transfer(&disk, &snapshot);
    let (cluster_id, replica_id) = (ClusterId::parse(CLUSTER).unwrap(), ReplicaId::parse("r1").unwrap());
    let ready = t.finish(&cluster_id, &replica_id).unwrap();
    assert_eq!(ready.store.applied().state_digest, digest);
    drop(ready);
    disk.crash(CrashKind::PowerLoss { torn: false });
    let shared: Arc<dyn Disk> = disk.shared();
    match recover_replica(shared.clone(), &ReplicaPaths::new(Path::new("/r")), &SnapshotFiles::new(shared)).unwrap() {
        Recovered::Ready(ready) => {
            assert_eq!(ready.info.start.applied.commit_id, 40);
            assert_eq!(ready.store.applied().state_digest, digest);
        }
        _ => panic!("the committed bootstrap did not survive the power loss"),
    }
}

/// REPL-9: a background fsync that fails fails the transfer before
/// anything is installed.
#[test]
fn repl_9_a_failed_background_fsync_fails_the_bootstrap() {
    let (disk, snapshot, _) = primary_snapshot();
    // The fsync of the second data file fails (on its background thread).
    let second = read_manifest(&disk, &snapshot).unwrap().files[1].name.clone();
    disk.fail_next(IoClass::Sync, Some(&Path::new("/r/replica/bootstrap.tmp").join(second)), 1);
    let t = transfer(&disk, &snapshot);
    let (cluster_id, replica_id) = (ClusterId::parse(CLUSTER).unwrap(), ReplicaId::parse("r1").unwrap());
    match t.finish(&cluster_id, &replica_id) {
        Err(BootstrapError::Io(_)) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a failed fsync was ignored"),
    }
    let shared: Arc<dyn Disk> = disk.shared();
    assert!(matches!(
        recover_replica(shared.clone(), &ReplicaPaths::new(Path::new("/r")), &SnapshotFiles::new(shared)).unwrap(),
        Recovered::Uninitialised { .. }
    ));
}
