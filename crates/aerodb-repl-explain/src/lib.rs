//! AeroDB replication developer-experience (DX) views and explanation objects.
//!
//! This crate owns the read-only faces of replication: the DX views served
//! under `/v1/replication` and the explanation objects served under
//! `/v1/explain/...` (`replication.safety`, `recovery.process`,
//! `mvcc.read_visibility`, `replication.halt`), plus the single registry of
//! rule IDs ([`rules`]) that tests, errors and explanations cite. Everything
//! here is a pure function from observed state to serde values: the same
//! state always renders the same bytes. This crate must never perform IO
//! (files, sockets, clocks) or mutate replication state; it only reads
//! snapshots of state that other crates own.

#![deny(missing_docs)]

pub mod explain;
pub mod facts;
pub mod halts;
pub mod metrics;
pub mod replicas;
pub mod rules;
pub mod views;
