//! AeroDB replication core.
//!
//! This crate owns what replication decides: node roles and the replica
//! runtime state machine, the handshake decision, the receiver → validator
//! → applier pipeline, the replica metadata file, replica recovery and
//! bootstrap installation, the read-safety gate, and the primary's fence
//! (REPL-11: the pure rule that a handshake proves lost history, and the
//! persisted fence state). It is sans-IO at its
//! decision points: state transitions, handshake decisions and gate
//! verdicts are pure functions of their inputs; files are reached only
//! through the `Disk` trait; it never opens a socket, spawns a thread or
//! reads a clock, and no decision here may depend on time (REPL-10).

pub mod fence;
pub mod gate;
pub mod halt;
pub mod handshake;
pub mod metadata;
pub mod pipeline;
pub mod reads;
pub mod replica;
pub mod state;
pub mod status;

pub use halt::HaltReason;
pub use state::ReplicaState;
