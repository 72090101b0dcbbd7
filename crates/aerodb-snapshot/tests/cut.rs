#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! P5-I8 and §7 determinism: a snapshot is an exact MVCC cut, taken while
//! commits continue, and its bytes are a pure function of the cut.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::ClientOp;
use aerodb_snapshot::{create_snapshot, create_snapshot_with, load_snapshot, validate_snapshot, SnapshotOptions, MAX_FSYNCS_IN_FLIGHT};
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
    let options = SnapshotOptions { file_target_bytes: 4096, batch_keys: 3, ..SnapshotOptions::default() };
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
    let options = SnapshotOptions { file_target_bytes: 2048, batch_keys: 5, ..SnapshotOptions::default() };
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

/// An `OsDisk` that logs the data-file and manifest operations in order,
/// and fails the `n`th append to a data file when told to.
struct LoggingDisk {
    log: std::sync::Mutex<Vec<String>>,
    fail_append: Option<usize>,
    appends: std::sync::atomic::AtomicUsize,
    /// A data file whose fsync fails.
    fail_sync: Option<String>,
    /// Fsyncs running now, and the most seen at once.
    syncing: std::sync::atomic::AtomicUsize,
    max_syncing: std::sync::atomic::AtomicUsize,
}

struct LoggingFile<'a> {
    disk: &'a LoggingDisk,
    name: String,
    inner: Box<dyn aerodb_wal::disk::DiskFile>,
}

impl LoggingDisk {
    fn new(fail_append: Option<usize>) -> &'static LoggingDisk {
        Box::leak(Box::new(LoggingDisk {
            log: std::sync::Mutex::new(Vec::new()),
            fail_append,
            appends: 0.into(),
            fail_sync: None,
            syncing: 0.into(),
            max_syncing: 0.into(),
        }))
    }
    fn failing_sync(name: &str) -> &'static LoggingDisk {
        Box::leak(Box::new(LoggingDisk {
            log: std::sync::Mutex::new(Vec::new()),
            fail_append: None,
            appends: 0.into(),
            fail_sync: Some(name.into()),
            syncing: 0.into(),
            max_syncing: 0.into(),
        }))
    }
    fn note(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }
}

impl aerodb_wal::disk::DiskFile for LoggingFile<'static> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn append(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.name.starts_with("data-") {
            let n = self.disk.appends.fetch_add(1, Ordering::SeqCst);
            if self.disk.fail_append == Some(n) {
                return Err(std::io::Error::other("injected write failure"));
            }
        }
        self.inner.append(buf)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.disk.fail_sync.as_deref() == Some(self.name.as_str()) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        // Noted once durable (data files are fsynced on threads of their own).
        let now = self.disk.syncing.fetch_add(1, Ordering::SeqCst) + 1;
        self.disk.max_syncing.fetch_max(now, Ordering::SeqCst);
        let synced = self.inner.sync_data();
        self.disk.syncing.fetch_sub(1, Ordering::SeqCst);
        synced?;
        self.disk.note(format!("sync {}", self.name));
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.inner.truncate(len)
    }
}

impl aerodb_wal::disk::Disk for &'static LoggingDisk {
    fn create(&self, path: &std::path::Path) -> std::io::Result<Box<dyn aerodb_wal::disk::DiskFile>> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.note(format!("create {name}"));
        Ok(Box::new(LoggingFile { disk: self, name, inner: aerodb_wal::disk::OsDisk.create(path)? }))
    }
    fn open(&self, path: &std::path::Path) -> std::io::Result<Box<dyn aerodb_wal::disk::DiskFile>> {
        aerodb_wal::disk::OsDisk.open(path)
    }
    fn list(&self, dir: &std::path::Path) -> std::io::Result<Vec<String>> {
        aerodb_wal::disk::OsDisk.list(dir)
    }
    fn create_dir_all(&self, dir: &std::path::Path) -> std::io::Result<()> {
        aerodb_wal::disk::OsDisk.create_dir_all(dir)
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.note(format!("rename {name}"));
        aerodb_wal::disk::OsDisk.rename(from, to)
    }
    fn sync_dir(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.note(format!("sync_dir {name}"));
        aerodb_wal::disk::OsDisk.sync_dir(dir)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        aerodb_wal::disk::OsDisk.remove_file(path)
    }
    fn remove_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        aerodb_wal::disk::OsDisk.remove_dir_all(path)
    }
    fn read_bounded(&self, path: &std::path::Path, max_len: u64) -> std::io::Result<Vec<u8>> {
        aerodb_wal::disk::OsDisk.read_bounded(path, max_len)
    }
    fn exists(&self, path: &std::path::Path) -> bool {
        aerodb_wal::disk::OsDisk.exists(path)
    }
}

/// REPL-9: creation (encoder and writer thread) fsyncs every data file
/// exactly once, after its last byte and before the manifest is written,
/// then the directory, then publishes by rename; a write failure on the
/// writer thread is reported as the IO error it is and publishes nothing
/// (no snapshot, no temporary directory), and the same store then
/// snapshots to the same bytes as on a healthy disk. Each data file is
/// fsynced on a thread of its own: every fsync completes before the
/// manifest is written, and a failed one publishes nothing either.
#[test]
fn repl_9_data_files_fsynced_once_before_the_manifest_and_a_failed_write_publishes_nothing() {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(150, "durable");
    let options = SnapshotOptions { file_target_bytes: 2048, batch_keys: 5, ..SnapshotOptions::default() };

    let logged = LoggingDisk::new(None);
    let dir = tempfile::tempdir().unwrap();
    let info = create_snapshot_with(&logged, dir.path(), &h.store, CLUSTER, &options, None).unwrap();
    assert!(info.files > 2, "several data files");
    let log = logged.log.lock().unwrap().clone();
    let pos = |what: &str| log.iter().position(|l| l == what).unwrap_or_else(|| panic!("{what} missing from {log:?}"));
    let manifest_created = log.iter().position(|l| l.starts_with("create") && l.contains("manifest")).unwrap();
    for i in 0..info.files {
        let name = format!("data-{i:06}.bin");
        assert_eq!(log.iter().filter(|l| **l == format!("sync {name}")).count(), 1, "{name} fsynced once: {log:?}");
        assert!(pos(&format!("create {name}")) < pos(&format!("sync {name}")));
        assert!(pos(&format!("sync {name}")) < manifest_created, "{name} durable before the manifest: {log:?}");
    }
    let most = logged.max_syncing.load(Ordering::SeqCst);
    assert!((1..=MAX_FSYNCS_IN_FLIGHT).contains(&most), "{most} data-file fsyncs at once (RES-1 bound)");
    let tmp_synced = pos(&format!("sync_dir .tmp-{}", info.name));
    assert!(manifest_created < tmp_synced && tmp_synced < pos(&format!("rename {}", info.name)), "{log:?}");
    validate_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();

    let failing = LoggingDisk::new(Some(1));
    let bad = tempfile::tempdir().unwrap();
    let e = create_snapshot_with(&failing, bad.path(), &h.store, CLUSTER, &options, None).unwrap_err();
    assert_eq!(e.code(), "SNAPSHOT_IO", "{e}");
    assert!(e.to_string().contains("injected write failure"), "{e}");
    assert!(names(bad.path()).is_empty(), "nothing published, nothing left: {:?}", names(bad.path()));

    let again = create_snapshot_with(&*disk(), bad.path(), &h.store, CLUSTER, &options, None).unwrap();
    assert_eq!(dir_bytes(&again.path), dir_bytes(&info.path));

    // A data file's fsync (on its own thread) fails: reported, nothing published.
    let failing = LoggingDisk::failing_sync("data-000001.bin");
    let bad = tempfile::tempdir().unwrap();
    let e = create_snapshot_with(&failing, bad.path(), &h.store, CLUSTER, &options, None).unwrap_err();
    assert_eq!(e.code(), "SNAPSHOT_IO", "{e}");
    assert!(e.to_string().contains("injected fsync failure"), "{e}");
    assert!(names(bad.path()).is_empty(), "nothing published, nothing left: {:?}", names(bad.path()));
    assert!(!failing.log.lock().unwrap().iter().any(|l| l.contains("manifest")), "no manifest after a failed fsync");
}
