//! AeroDB's deterministic simulator.
//!
//! One process, one thread per seed, one seeded PRNG: a seed fully
//! determines a run (which faults hit when, what every client writes, every
//! latency), so any failure replays bit-identically with
//! `cargo xtask sim --seed S`. Nodes run the production engines over
//! [`disk::SimDisk`] (an in-memory [`aerodb_wal::disk::Disk`] with a
//! durability model and storage faults) and [`net::SimNet`] (segments with
//! delivery times and network faults), driven by [`sched::Scheduler`]
//! (a min-heap on simulated time). Invariants are checked after every
//! event, and a liveness check follows a final heal phase.
//!
//! This crate owns the simulated world (time, randomness, disk, network,
//! fault plan, invariant checks, harnesses) and the `aerodb-sim` binary.
//! It must never read a wall clock, iterate a `HashMap`, spawn threads
//! inside a seed, or reimplement production logic that it is meant to
//! test: harnesses call the same functions the node calls.

pub mod checks;
pub mod disk;
pub mod faults;
pub mod model;
pub mod net;
pub mod plan;
pub mod primary;
pub mod registry;
pub mod replica;
pub mod rng;
pub mod run;
pub mod sched;
pub mod serve;
pub mod time;
pub mod trace;
pub mod world;
