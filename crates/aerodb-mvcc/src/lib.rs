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

pub mod gc;
pub mod input;
pub mod primary;
pub mod store;

pub use gc::GcPolicy;
pub use input::{ClientOp, InputError, WriteLimits};
pub use primary::{recover_store, recover_store_with, PrimaryEngine, StoreRecoveryError, StoreRecoveryReport, StoreSink};
pub use store::{AppliedObserver, AppliedState, ApplyError, ApplyInput, CutPin, GcStats, ReadView, ScanPage, Store, Version, ViewError, Visible};
