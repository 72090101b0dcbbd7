//! The sans-IO replication engine: state machines that take inputs with
//! the current time passed in (`handle_*`) and emit outputs the runtime
//! polls and executes (`poll_action`, `poll_timeout`). They own no socket,
//! file, thread or clock; `aerodb-repl-net` runs them over TCP and real
//! files, the simulator (`crates/aerodb-sim`) over a simulated network and
//! disk. Modelled on quinn-proto's `handle_*`/`poll_*` split and
//! openraft's engine/runtime split: tests assert the exact actions a
//! transition emits.
//!
//! - [`replica::ReplicaEngine`]: one replica's lifecycle — recovery result,
//!   bootstrap (WAL from genesis or snapshot transfer), handshake outcomes
//!   (halt vs retry), streaming through the receiver → validator → applier
//!   pipeline, reconnects with backoff and jitter, halts.
//! - [`primary::PrimarySession`]: one connection on the primary's
//!   replication port — the HELLO deadline, the handshake decision, WAL
//!   shipping below the durable LSN, snapshot serving, REPORT validation,
//!   and the fence a replica's proof raises (REPL-11).
//!
//! Timers only close connections and schedule retries; no decision about
//! what is true depends on time (REPL-10).

pub mod backoff;
pub mod primary;
pub mod replica;

pub use crate::state::{ConnId, Millis};

#[cfg(test)]
mod auth_tests;
