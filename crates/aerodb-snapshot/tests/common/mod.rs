//! Helpers shared by the aerodb-snapshot component tests: WALs and stores
//! built with the real file system in temp directories, and byte-level
//! access to snapshot files.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aerodb_mvcc::store::OwnedVersion;
use aerodb_mvcc::{recover_store, ApplyInput, ClientOp, PrimaryEngine, Store, WriteLimits};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, Op, StateDigest};
use bytes::Bytes;

pub const CLUSTER: &str = "0123456789abcdef0123456789abcdef";
pub const OTHER_CLUSTER: &str = "fedcba9876543210fedcba9876543210";

pub fn disk() -> Arc<dyn Disk> {
    OsDisk::shared()
}

/// A data directory layout in a temp dir: `wal/` and `snapshots/`.
pub struct Layout {
    pub tmp: tempfile::TempDir,
}

impl Layout {
    pub fn new() -> Self {
        Layout { tmp: tempfile::tempdir().unwrap() }
    }
    pub fn wal(&self) -> PathBuf {
        self.tmp.path().join("wal")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.tmp.path().join("snapshots")
    }
    pub fn snapshot(&self, commit_id: u64) -> PathBuf {
        self.snapshots().join(format!("{commit_id:020}"))
    }
}

pub fn put(c: &str, k: &str, d: &str) -> Op {
    Op::Put { collection: Bytes::copy_from_slice(c.as_bytes()), key: Bytes::copy_from_slice(k.as_bytes()), doc: Bytes::copy_from_slice(d.as_bytes()) }
}

pub fn del(c: &str, k: &str) -> Op {
    Op::Delete { collection: Bytes::copy_from_slice(c.as_bytes()), key: Bytes::copy_from_slice(k.as_bytes()) }
}

/// A deterministic, varied write set for commit number `i` (`salt` varies the history).
pub fn sample_ops(i: u64, salt: &str) -> Vec<Op> {
    let mut ops = vec![put("users", &format!("user-{}", i % 17), &format!("{{\"n\":{i},\"s\":\"{salt}\",\"pad\":\"{}\"}}", "x".repeat((i % 11) as usize * 7)))];
    if i.is_multiple_of(3) {
        ops.push(del("users", &format!("user-{}", (i / 3) % 17 + 100)));
    }
    if i.is_multiple_of(4) {
        ops.push(put("orders", &format!("o{}", i % 9), "{\"total\":42}"));
    }
    ops
}

/// A WAL at genesis plus the store it feeds, written through the real
/// writer and the one apply function.
pub struct History {
    pub writer: WalWriter,
    pub store: Store,
}

impl History {
    pub fn create(wal_dir: &Path, segment_target: u64) -> Self {
        let appender = SegmentAppender::create(disk(), wal_dir, ChainTip::GENESIS.segment_header()).unwrap();
        History { writer: WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, segment_target), store: Store::new() }
    }

    /// Appends, fsyncs and applies one write set.
    pub fn commit(&mut self, ops: &[Op]) {
        let rec = self.writer.append(ops).unwrap();
        self.writer.sync().unwrap();
        self.store.apply(ApplyInput { position: rec.position, state_digest: rec.state_digest, body: &aerodb_wal::RecordBody::Commit(ops.to_vec()) }).unwrap();
    }

    pub fn commit_samples(&mut self, n: u64, salt: &str) {
        for _ in 0..n {
            let i = self.writer.tip().commit_id + 1;
            self.commit(&sample_ops(i, salt));
        }
    }
}

/// Every version a store holds, in (collection, key, CommitId) order.
pub fn all_versions(store: &Store) -> Vec<OwnedVersion> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let (batch, next) = store.versions_upto(u64::MAX, after.as_ref(), 64);
        out.extend(batch);
        match next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// Replays the whole WAL from genesis into a fresh store.
pub fn full_replay(wal_dir: &Path) -> Store {
    let store = Store::new();
    recover_store(disk(), wal_dir, &store).unwrap();
    store
}

/// Every file of a directory with its bytes.
pub fn dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() {
                (format!("{name}/"), Vec::new())
            } else {
                (name, fs::read(e.path()).unwrap())
            }
        })
        .collect()
}

/// Directory names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A primary engine over a (possibly new) WAL directory.
pub fn start_engine(wal_dir: &Path, segment_target: u64) -> PrimaryEngine {
    if !wal_dir.exists() {
        SegmentAppender::create(disk(), wal_dir, ChainTip::GENESIS.segment_header()).unwrap();
    }
    let store = Store::new();
    let (appender, _) = recover_store(disk(), wal_dir, &store).unwrap();
    PrimaryEngine::start(Arc::new(store), appender, WriteLimits::default(), segment_target).unwrap()
}

pub fn client_put(c: &str, k: &str, d: &str) -> ClientOp {
    ClientOp::Put { collection: c.into(), key: k.into(), doc: Bytes::copy_from_slice(d.as_bytes()) }
}

/// Commits one put through the engine and returns its CommitId.
pub fn engine_put(engine: &PrimaryEngine, c: &str, k: &str, d: &str) -> u64 {
    engine.submit(vec![client_put(c, k, d)]).unwrap().wait().unwrap().position.commit_id
}

impl History {
    /// Appends, fsyncs and applies a GC record stating `horizon`, with the
    /// digest the store predicts (what the primary's writer does).
    pub fn gc(&mut self, horizon: u64) {
        let digest = self.store.gc_digest(horizon).unwrap();
        let rec = self.writer.append_gc(horizon, digest, None).unwrap();
        self.writer.sync().unwrap();
        self.store.apply(ApplyInput { position: rec.position, state_digest: rec.state_digest, body: &aerodb_wal::RecordBody::Gc { horizon } }).unwrap();
    }
}

/// A primary engine over a (possibly new) WAL directory that keeps
/// `retain_commits` commits of history.
pub fn start_engine_gc(wal_dir: &Path, segment_target: u64, retain_commits: u64) -> PrimaryEngine {
    if !wal_dir.exists() {
        SegmentAppender::create(disk(), wal_dir, ChainTip::GENESIS.segment_header()).unwrap();
    }
    let store = Store::new();
    let (appender, _) = recover_store(disk(), wal_dir, &store).unwrap();
    PrimaryEngine::start_with_gc(Arc::new(store), appender, WriteLimits::default(), segment_target, aerodb_mvcc::GcPolicy::new(retain_commits)).unwrap()
}

/// Rewrites the manifest body and re-checksums it.
pub fn edit_manifest_body(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let env: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut body = env["body"].clone();
    f(&mut body);
    aerodb_wal::checksummed::write_checksummed(&*disk(), &path, &body).unwrap();
}
