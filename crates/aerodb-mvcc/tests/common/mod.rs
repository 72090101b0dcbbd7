//! Helpers shared by the aerodb-mvcc component tests: a primary engine over
//! a real WAL in a temp directory, recovery into fresh stores, and applying
//! hand-built records straight to a [`Store`].
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aerodb_mvcc::store::OwnedVersion;
use aerodb_mvcc::{recover_store, AppliedState, ApplyInput, ClientOp, PrimaryEngine, Store, StoreRecoveryReport, WriteLimits};
use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::recovery::{scan_wal, RecoveryMode};
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Op, Record, RecordPosition};
use bytes::Bytes;

/// The WAL directory inside a test's data directory.
pub fn wal_dir(root: &Path) -> PathBuf {
    root.join("wal")
}

/// A primary engine over a brand-new WAL (genesis) in `root/wal`.
pub fn fresh_engine(root: &Path) -> PrimaryEngine {
    fresh_engine_with(root, WriteLimits::default(), DEFAULT_SEGMENT_TARGET_BYTES)
}

/// [`fresh_engine`] with explicit limits and segment size.
pub fn fresh_engine_with(root: &Path, limits: WriteLimits, segment_target_bytes: u64) -> PrimaryEngine {
    let appender = SegmentAppender::create(OsDisk::shared(), &wal_dir(root), ChainTip::GENESIS.segment_header()).expect("create WAL");
    PrimaryEngine::start(Arc::new(Store::new()), appender, limits, segment_target_bytes).expect("start engine")
}

/// Recovers `root/wal` into a fresh store and starts an engine on it.
pub fn reopen_engine(root: &Path) -> (PrimaryEngine, StoreRecoveryReport) {
    let store = Store::new();
    let (appender, report) = recover_store(OsDisk::shared(), &wal_dir(root), &store).expect("recover store");
    let engine = PrimaryEngine::start(Arc::new(store), appender, WriteLimits::default(), DEFAULT_SEGMENT_TARGET_BYTES).expect("start engine");
    (engine, report)
}

/// Recovers `root/wal` into a fresh store (no engine; the appender is dropped).
pub fn recover_fresh(root: &Path) -> (Arc<Store>, StoreRecoveryReport) {
    let store = Store::new();
    let (appender, report) = recover_store(OsDisk::shared(), &wal_dir(root), &store).expect("recover store");
    drop(appender);
    (Arc::new(store), report)
}

/// Every record in `root/wal`, in order, read without changing anything.
pub fn wal_records(root: &Path) -> Vec<(Record, RecordPosition)> {
    let mut out = Vec::new();
    scan_wal(OsDisk::shared(), &wal_dir(root), RecoveryMode::ReadOnly, |record, position| {
        out.push((record.clone(), position));
        Ok(())
    })
    .expect("scan WAL");
    out
}

/// A client put.
pub fn put(collection: &str, key: &str, doc: &str) -> ClientOp {
    ClientOp::Put { collection: collection.into(), key: key.into(), doc: Bytes::copy_from_slice(doc.as_bytes()) }
}

/// A client delete.
pub fn del(collection: &str, key: &str) -> ClientOp {
    ClientOp::Delete { collection: collection.into(), key: key.into() }
}

/// A WAL put op.
pub fn op_put(collection: &str, key: &str, doc: &str) -> Op {
    Op::Put {
        collection: Bytes::copy_from_slice(collection.as_bytes()),
        key: Bytes::copy_from_slice(key.as_bytes()),
        doc: Bytes::copy_from_slice(doc.as_bytes()),
    }
}

/// A WAL delete op.
pub fn op_del(collection: &str, key: &str) -> Op {
    Op::Delete { collection: Bytes::copy_from_slice(collection.as_bytes()), key: Bytes::copy_from_slice(key.as_bytes()) }
}

/// Commits through the engine and waits for the acknowledgement.
pub fn commit(engine: &PrimaryEngine, ops: Vec<ClientOp>) -> CommitId {
    engine.submit(ops).expect("valid write set").wait().expect("commit acknowledged").position.commit_id
}

/// The next record for `store`, built by hand: continues its LSN and
/// CommitId and carries the correct digest (the fingerprint is not checked
/// by apply).
pub fn next_input(store: &Store, ops: &[Op]) -> (RecordPosition, aerodb_wal::StateDigest) {
    let applied = store.applied();
    let commit_id = applied.commit_id + 1;
    let len = 56 + ops.iter().map(|o| 8 + o.collection().len() + o.key().len() + o.doc().map_or(0, <[u8]>::len)).sum::<usize>() as u64;
    let position =
        RecordPosition { lsn: applied.end_lsn, end_lsn: applied.end_lsn + len, commit_id, fingerprint: Fingerprint(u128::from(commit_id) * 0x9E37_79B9) };
    (position, applied.state_digest.after_ops(commit_id, ops))
}

/// Applies `ops` as the next commit through the one apply function.
pub fn apply_next(store: &Store, ops: &[Op]) -> AppliedState {
    let (position, state_digest) = next_input(store, ops);
    store.apply(ApplyInput { position, state_digest, body: &aerodb_wal::RecordBody::Commit(ops.to_vec()) }).expect("apply next record")
}

/// Every version the store holds, in (collection, key, CommitId) order.
pub fn all_versions(store: &Store) -> Vec<OwnedVersion> {
    store.versions_upto(CommitId::MAX, None, usize::MAX).0
}

/// Text of a document body.
pub fn text(doc: &Bytes) -> &str {
    std::str::from_utf8(doc).expect("UTF-8 document")
}

/// A primary engine over a brand-new WAL that keeps `retain_commits` of history.
pub fn fresh_engine_gc(root: &Path, retain_commits: u64) -> PrimaryEngine {
    let appender = SegmentAppender::create(OsDisk::shared(), &wal_dir(root), ChainTip::GENESIS.segment_header()).expect("create WAL");
    PrimaryEngine::start_with_gc(
        Arc::new(Store::new()),
        appender,
        WriteLimits::default(),
        DEFAULT_SEGMENT_TARGET_BYTES,
        aerodb_mvcc::GcPolicy::new(retain_commits),
    )
    .expect("start engine")
}

/// The next record for `store` as a GC record stating `horizon` and
/// carrying `digest` (hand-built like [`next_input`]).
pub fn next_gc_input(store: &Store) -> RecordPosition {
    let applied = store.applied();
    let commit_id = applied.commit_id + 1;
    let len = aerodb_wal::record::GC_RECORD_LEN as u64;
    RecordPosition { lsn: applied.end_lsn, end_lsn: applied.end_lsn + len, commit_id, fingerprint: Fingerprint(u128::from(commit_id) * 0x9E37_79B9) }
}

/// Applies a GC record stating `horizon` with the digest the store itself
/// predicts (what the primary's writer does).
pub fn apply_gc(store: &Store, horizon: CommitId) -> Result<AppliedState, aerodb_mvcc::ApplyError> {
    let digest = store.gc_digest(horizon).expect("a horizon the store can reach");
    apply_gc_with(store, horizon, digest)
}

/// Applies a GC record stating `horizon` and carrying `digest`.
pub fn apply_gc_with(store: &Store, horizon: CommitId, digest: aerodb_wal::StateDigest) -> Result<AppliedState, aerodb_mvcc::ApplyError> {
    let body = aerodb_wal::RecordBody::Gc { horizon };
    store.apply(ApplyInput { position: next_gc_input(store), state_digest: digest, body: &body })
}
