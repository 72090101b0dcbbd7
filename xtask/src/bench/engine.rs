//! The library side of the bench: the same workload through
//! `aerodb_mvcc::PrimaryEngine` in-process (validate → WAL append → group
//! fsync → apply → acknowledge), without HTTP.

use std::path::Path;
use std::sync::Arc;

use aerodb_mvcc::{ClientOp, PrimaryEngine, Store, WriteLimits};
use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::ChainTip;
use bytes::Bytes;

use super::{doc_json, key, run_clients, RunStats, COLLECTION};

/// `total` durable commits from `clients` threads on a fresh WAL in `dir`.
pub(crate) fn load(dir: &Path, clients: u64, total: u64) -> Result<RunStats, String> {
    let appender = SegmentAppender::create(OsDisk::shared(), &dir.join("wal"), ChainTip::GENESIS.segment_header())
        .map_err(|e| format!("cannot create a WAL in {}: {e}", dir.display()))?;
    let engine = PrimaryEngine::start(Arc::new(Store::new()), appender, WriteLimits::default(), DEFAULT_SEGMENT_TARGET_BYTES)
        .map_err(|e| format!("cannot start the engine: {e}"))?;
    let stats = run_clients(clients, total, |_, n| {
        let op = ClientOp::Put { collection: COLLECTION.into(), key: key("lib", n), doc: Bytes::from(doc_json(n)) };
        let ticket = engine.submit(vec![op]).map_err(|e| format!("write set refused: {e}"))?;
        ticket.wait().map(|_| ()).map_err(|e| format!("commit failed: {e}"))
    })?;
    // Stopping the engine lets the writer finish a GC record it owes; GC
    // records take CommitIds of their own.
    let store = engine.store().clone();
    drop(engine);
    let (applied, gc_records) = (store.applied().commit_id, store.gc_stats().gc_records_applied);
    if applied - gc_records != total {
        return Err(format!("expected {total} commits, the store applied {applied} records of which {gc_records} GC records"));
    }
    Ok(stats)
}
