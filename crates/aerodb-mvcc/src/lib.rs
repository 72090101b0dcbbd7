//! AeroDB MVCC store.
//!
//! This crate owns document versions and their visibility: version chains
//! per (collection, key), read views fixed at one `read_upper_bound`
//! (MVCC-1..3), the one apply function every replay path uses (CORE-4), the
//! incrementally maintained state digest checked against every record
//! (REPL-4), garbage collection of old versions through GC records and the
//! primary's retention policy (MVCC-4, MVCC-5, RES-1), input validation,
//! and the primary's commit path on top of the WAL's group committer. It
//! never assigns CommitIds itself (the WAL writer does), never makes a
//! version visible before its record is durable, never removes a version
//! except by applying a GC record, and knows nothing about replication
//! roles or the network.
//!
//! A primary's commit path and a read view, over a WAL in a temporary
//! directory:
//!
//! ```
//! use std::sync::Arc;
//! use aerodb_mvcc::{recover_store, ClientOp, PrimaryEngine, Store, WriteLimits};
//! use aerodb_wal::{disk::OsDisk, log::SegmentAppender, ChainTip};
//!
//! let dir = tempfile::tempdir().unwrap();
//! SegmentAppender::create(OsDisk::shared(), dir.path(), ChainTip::GENESIS.segment_header()).unwrap();
//! let store = Store::new();
//! let (appender, _) = recover_store(OsDisk::shared(), dir.path(), &store).unwrap();
//! let engine = PrimaryEngine::start(Arc::new(store), appender, WriteLimits::default(), 1 << 20).unwrap();
//! let put = ClientOp::Put { collection: "users".into(), key: "alice".into(), doc: r#"{"v":1}"#.into() };
//! let receipt = engine.submit(vec![put]).unwrap().wait().unwrap(); // fsynced and applied
//! let view = engine.store().read_view(None).unwrap();
//! assert_eq!(view.get(b"users", b"alice").map(|v| v.commit_id), Some(receipt.position.commit_id));
//! engine.close();
//! ```

mod chain;
pub mod gc;
pub mod input;
mod keys;
pub mod primary;
pub mod store;

pub use gc::GcPolicy;
pub use input::{ClientOp, InputError, WriteLimits};
pub use primary::{recover_store, recover_store_with, PrimaryEngine, StoreRecoveryError, StoreRecoveryReport, StoreSink};
pub use store::{AppliedObserver, AppliedState, ApplyError, ApplyInput, ChainEntry, CutPin, GcStats, ReadView, ScanPage, Store, Version, ViewError, Visible};
