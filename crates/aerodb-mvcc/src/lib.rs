//! AeroDB MVCC store.
//!
//! This crate owns document versions and their visibility: version chains
//! per (collection, key), read views fixed at one `read_upper_bound`
//! (MVCC-1..3), the one apply function every replay path uses (CORE-4), the
//! incrementally maintained state digest checked against every record
//! (REPL-4), input validation, and the primary's commit path on top of the
//! WAL's group committer. It never assigns CommitIds itself (the WAL writer
//! does), never makes a version visible before its record is durable, and
//! knows nothing about replication roles or the network.

pub mod input;
pub mod primary;
pub mod store;

pub use input::{ClientOp, InputError, WriteLimits};
pub use primary::{recover_store, PrimaryEngine, StoreRecoveryError, StoreRecoveryReport, StoreSink};
pub use store::{AppliedState, ApplyError, ApplyInput, ReadView, ScanPage, Store, Version, ViewError, Visible};
