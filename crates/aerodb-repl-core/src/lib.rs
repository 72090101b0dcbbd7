//! AeroDB replication core.
//!
//! This crate owns what replication decides and the wire format it speaks:
//! the sans-IO engines ([`engine::replica::ReplicaEngine`],
//! [`engine::primary::PrimarySession`]), the replica runtime state machine
//! ([`state`]), the handshake decision ([`handshake`]), the receiver →
//! validator → applier pipeline ([`pipeline`]) and its storage executors
//! ([`storage`]), replica recovery and bootstrap installation
//! ([`replica`]), the replica metadata files ([`metadata`]), typed halts
//! and blocking reasons ([`halt`]), the read-safety gate ([`gate`],
//! [`reads`]), the primary's fence ([`fence`], REPL-11: the pure rule that
//! a handshake proves lost history, and the persisted fence state),
//! peer-supplied identifiers ([`ids`]), the frames and messages on the
//! replication port ([`wire`]), the primary's registry of the replicas it
//! has served with its retention forecast ([`registry`], RES-2), and lag in
//! seconds from the primary's commit times ([`commit_times`];
//! observability only, REPL-10), and the token authentication of the
//! replication port ([`auth`]: HMAC proofs over both sides' nonces; the
//! nonces come from the runtime).
//!
//! It must never open a socket, spawn a thread or read a clock: time is
//! passed in, files are reached only through the `Disk` trait, and no
//! decision here may depend on time (REPL-10). The runtimes that move
//! bytes live in `aerodb-repl-net` (production) and `aerodb-sim`
//! (deterministic simulation).
#![deny(missing_docs)]

pub mod auth;
pub mod commit_times;
pub mod engine;
pub mod fence;
pub mod gate;
pub mod halt;
pub mod handshake;
pub mod ids;
pub mod metadata;
pub mod pipeline;
pub mod positions;
pub mod primary_io;
pub mod reads;
pub mod registry;
pub mod replica;
pub mod state;
pub mod status;
pub mod storage;
pub mod wire;

pub use halt::{Blocked, Halt, Reason};
pub use state::ReplicaState;
