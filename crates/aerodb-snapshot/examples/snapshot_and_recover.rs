//! Commits a few write sets, takes an MVCC-cut snapshot while the store is
//! live, validates it byte by byte, commits more, and recovers the primary
//! the way a restarting node does: the newest valid snapshot plus the WAL
//! after its cut, with the state digest checked at the end.
//!
//! Run: `cargo run -p aerodb-snapshot --example snapshot_and_recover`

use std::sync::Arc;

use aerodb_mvcc::{recover_store, ClientOp, PrimaryEngine, Store, WriteLimits};
use aerodb_snapshot::{create_snapshot, recover_primary, validate_snapshot};
use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::ChainTip;
use bytes::Bytes;

/// Any 32 lower-case hex characters; a real node keeps its own in identity.json.
const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

fn put(key: &str, n: u64) -> ClientOp {
    ClientOp::Put { collection: "users".into(), key: key.into(), doc: Bytes::from(format!("{{\"n\":{n}}}")) }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (wal, snapshots) = (dir.path().join("wal"), dir.path().join("snapshots"));
    SegmentAppender::create(OsDisk::shared(), &wal, ChainTip::GENESIS.segment_header())?;
    let store = Store::new();
    let (appender, _) = recover_store(OsDisk::shared(), &wal, &store)?;
    let engine = PrimaryEngine::start(Arc::new(store), appender, WriteLimits::default(), DEFAULT_SEGMENT_TARGET_BYTES)?;

    for n in 1..=5 {
        engine.submit(vec![put(&format!("user-{n}"), n)])?.wait()?;
    }
    // The cut is the applied state at the moment the snapshot starts; later
    // commits do not leak into it.
    let info = create_snapshot(&OsDisk, &snapshots, engine.store(), CLUSTER)?;
    println!("snapshot {} at CommitId {} (LSN {}), {} version(s) in {} file(s)", info.name, info.commit_id, info.lsn, info.version_count, info.files);
    let manifest = validate_snapshot(&OsDisk, &info.path, Some(CLUSTER))?;
    println!("validated: every file's size and crc32c, every record, the version count and the digest ({})", manifest.state_digest);

    for n in 6..=8 {
        engine.submit(vec![put(&format!("user-{n}"), n)])?.wait()?;
    }
    let digest = engine.store().applied().state_digest;
    engine.close();

    let (store, _appender, report) = recover_primary(OsDisk::shared(), &snapshots, &wal, CLUSTER)?;
    let base = report.snapshot_used.as_ref().map_or("genesis".to_string(), |s| format!("snapshot {}", s.commit_id));
    println!("recovered from {base} plus the WAL after it: CommitId {}, same digest: {}", store.applied().commit_id, store.applied().state_digest == digest);
    Ok(())
}
