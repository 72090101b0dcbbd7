//! Planted bugs: deliberate defects that exist only so the deterministic
//! simulator (`crates/aerodb-sim`) can prove it catches them.
//!
//! They are compiled in only with the `planted-bugs` cargo feature, which
//! only the simulator's own invocation enables (`cargo xtask sim` runs
//! `cargo run -p aerodb-sim --features planted-bugs`). Without the feature
//! [`is_active`] is the constant `false`, so every planted branch is dead
//! code the optimiser removes: the `aerodb` binary and `cargo test
//! --workspace` never contain a reachable planted bug.
//!
//! A plant is selected per thread ([`activate`]): the simulator runs each
//! seed on one thread and activates the plant named by `--plant` there, so
//! parallel seeds (and parallel tests) never see each other's plant. A site
//! is one line: `if plant::is_active(Plant::X) { /* the bug */ }`. Sites in
//! `aerodb-mvcc` and `aerodb-repl-core` call this module too; their crates
//! forward the `planted-bugs` feature here.

/// One planted bug. The names are the simulator's `--plant NAME` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plant {
    /// Group commit acknowledges a commit as soon as it is appended, before
    /// its fsync completes (breaks CORE-1).
    AckBeforeFsync,
    /// The WAL writer reuses the last CommitId for the first commit after
    /// recovery (breaks REPL-2 / CORE-5).
    ReuseCommitId,
    /// The record check (`record::check_record`, behind every decode,
    /// validation and WAL read) accepts a record whose crc32c does not
    /// match (breaks CORE-2).
    SkipRecordChecksum,
    /// The replica read gate (`aerodb_repl_core::gate`) judges C_replica on
    /// what the replica received from the primary rather than what it
    /// applied (breaks REPL-6).
    GateOnReceived,
    /// The store's apply (`aerodb_mvcc::Store::apply`) skips the
    /// state-digest comparison (breaks REPL-4).
    SkipDigestCheck,
}

impl Plant {
    /// Every plant, in a fixed order.
    pub const ALL: [Plant; 5] = [Plant::AckBeforeFsync, Plant::ReuseCommitId, Plant::SkipRecordChecksum, Plant::GateOnReceived, Plant::SkipDigestCheck];

    /// The `--plant` name.
    pub fn name(self) -> &'static str {
        match self {
            Plant::AckBeforeFsync => "ack-before-fsync",
            Plant::ReuseCommitId => "reuse-commit-id",
            Plant::SkipRecordChecksum => "skip-record-checksum",
            Plant::GateOnReceived => "gate-on-received",
            Plant::SkipDigestCheck => "skip-digest-check",
        }
    }

    /// Parses a `--plant` name.
    pub fn from_name(name: &str) -> Option<Plant> {
        Plant::ALL.into_iter().find(|p| p.name() == name)
    }

    #[cfg(feature = "planted-bugs")]
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// Whether this build contains the planted bugs at all.
pub const COMPILED: bool = cfg!(feature = "planted-bugs");

#[cfg(feature = "planted-bugs")]
thread_local! {
    static ACTIVE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether `plant` is active on this thread. Always `false` without the
/// `planted-bugs` feature.
#[inline]
pub fn is_active(plant: Plant) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        ACTIVE.with(|a| a.get() & plant.bit() != 0)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = plant;
        false
    }
}

/// Keeps a plant active on this thread until dropped.
#[cfg(feature = "planted-bugs")]
#[must_use = "the plant is deactivated when the guard is dropped"]
pub struct PlantGuard {
    previous: u32,
}

/// Activates `plant` on the current thread until the guard is dropped.
#[cfg(feature = "planted-bugs")]
pub fn activate(plant: Plant) -> PlantGuard {
    let previous = ACTIVE.with(|a| a.replace(a.get() | plant.bit()));
    PlantGuard { previous }
}

#[cfg(feature = "planted-bugs")]
impl Drop for PlantGuard {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CORE-1: plants are named for the simulator's CLI and, without the
    /// feature, never active.
    #[test]
    fn core_1_plant_names_round_trip_and_are_inert_without_the_feature() {
        for p in Plant::ALL {
            assert_eq!(Plant::from_name(p.name()), Some(p));
            if !COMPILED {
                assert!(!is_active(p));
            }
        }
        assert_eq!(Plant::from_name("no-such-bug"), None);
    }

    /// CORE-1: an activated plant is visible only on its own thread and only
    /// while its guard lives.
    #[cfg(feature = "planted-bugs")]
    #[test]
    fn core_1_plant_is_thread_local_and_scoped() {
        let guard = activate(Plant::AckBeforeFsync);
        assert!(is_active(Plant::AckBeforeFsync));
        assert!(!is_active(Plant::ReuseCommitId));
        assert!(!std::thread::spawn(|| is_active(Plant::AckBeforeFsync)).join().unwrap_or(true));
        drop(guard);
        assert!(!is_active(Plant::AckBeforeFsync));
    }
}
