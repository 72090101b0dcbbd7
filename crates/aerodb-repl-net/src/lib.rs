//! AeroDB replication runtime.
//!
//! This crate owns the edges of replication: TCP sockets, the threads that
//! move bytes between sockets, files and the engines, and the monotonic
//! clock. Every decision — handshake verdicts, halts, validation, what to
//! persist and apply, retries — is made by the sans-IO engines in
//! `aerodb-repl-core` ([`aerodb_repl_core::engine`]); this crate executes
//! the actions they emit and feeds back what happened. It must never decide
//! what is true about history.
//!
//! Public API: [`replica::Replica::open`] runs a replica, and
//! [`primary::PrimaryServer::serve`] runs a primary's replication port;
//! [`registry::ReplicaRegistry`] is the primary's view of its replicas
//! (connections, the persisted registry, commit times).
//! Security edges: [`security`] reads the token file and draws nonces from
//! the OS RNG for the engines' authentication exchange; [`tls`] carries the
//! replication protocol over rustls on both sides.
//!
//! A primary and a replica in one process, from the library crates alone:
//! `examples/in_process_replica.rs`.
#![deny(missing_docs)]

pub mod clock;
pub mod framed;
pub mod primary;
pub mod receive;
pub mod registry;
pub mod replica;
pub mod security;
pub mod tls;
pub mod transport;

pub use primary::{PrimaryContext, PrimaryServer, PrimaryServerConfig};
pub use registry::{KnownReplicaStatus, RegistryStartup, ReplicaRegistry};
pub use replica::{Replica, ReplicaOptions};
