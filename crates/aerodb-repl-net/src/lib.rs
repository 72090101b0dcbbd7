//! AeroDB replication transport.
//!
//! This crate owns the bytes on the replication port: the frame format
//! (length + crc32c on every frame, a maximum size, total decoders), the
//! typed messages, the primary's connection server and the replica's
//! client loop. It moves WAL bytes verbatim and never decides what is true:
//! handshake verdicts, validation, apply and halts are decided by
//! `aerodb-repl-core`; this crate only carries inputs to it and outputs
//! from it.

pub mod client;
pub mod frame;
pub mod message;
pub mod server;
