//! AeroDB snapshots: MVCC-cut checkpoints of the primary's store.
//!
//! This crate owns the snapshot directory (`snapshots/`): writing a cut of
//! the store at a boundary `C_snap` (with the LSN and fingerprint of the
//! record that ends it) into data files plus a checksummed manifest,
//! installing it atomically, validating every byte of it before use
//! (REPL-8, F-S4), loading it back into a [`aerodb_mvcc::Store`] with the
//! state digest verified, the primary's recovery policy (newest valid
//! snapshot + WAL after it, falling back to older snapshots and finally the
//! WAL from genesis), the snapshot/retention scheduler and the WAL
//! retention rule (RES-2, [`retention`]), and the scrub's
//! pure core and checks (CORE-6: re-verifying retained snapshots and sealed
//! WAL segments at a bounded rate, withdrawing damaged snapshots).
//!
//! It must never treat a snapshot as more authoritative than the WAL: a
//! snapshot that fails validation is rejected (and reported), never
//! repaired; a snapshot whose cut does not match the WAL is a hard failure
//! (F-S3); it never makes a partially written snapshot visible under its
//! final name (REPL-9), and never writes timestamps or anything else that
//! would make two snapshots of the same state differ.
#![deny(missing_docs)]

pub mod create;
pub mod dir;
pub mod error;
pub mod format;
pub mod load;
pub mod recovery;
pub mod retention;
pub mod scheduler;
pub mod scrub;

pub use create::{create_snapshot, create_snapshot_with, SnapshotInfo, SnapshotOptions, MAX_FSYNCS_IN_FLIGHT};
pub use dir::{cleanup_incomplete, delete_snapshot, list_snapshots, prune_snapshots, withdraw_snapshot, SnapshotRef};
pub use error::SnapshotError;
pub use format::{Manifest, ManifestFile};
pub use load::{load_snapshot, read_manifest, validate_snapshot, verify_snapshot_streaming, StreamLoad};
pub use recovery::{recover_primary, recover_primary_with, PrimaryRecoveryError, PrimaryRecoveryReport, RejectedSnapshot, SnapshotUsed};
pub use retention::{RetentionMode, WalHolds, DEFAULT_WAL_KEEP_BYTES};
pub use scheduler::{newest_usable, retire, retire_with_holds, RetireOutcome, SchedulerStatus, SnapshotPolicy, SnapshotScheduler};
