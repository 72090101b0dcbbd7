//! WAL retention (RES-2): which WAL a primary keeps, as a pure function.
//!
//! The WAL a node must keep for its own recovery starts at the **snapshot
//! floor**: the `L_snap` of the oldest kept snapshot (recovery = newest
//! valid snapshot + WAL after it, falling back to older ones, P5-I9). With
//! no usable snapshot the whole WAL is needed and nothing is ever removed.
//!
//! Before the snapshot floor, WAL is kept only for replicas, and only up to
//! `--wal-keep-bytes` behind the durable end (the cap line `end − cap`):
//!
//! - `--wal-retention all`: everything after the cap line is kept, whether a
//!   replica needs it or not (like PostgreSQL's `wal_keep_size`);
//! - `--wal-retention after-oldest-snapshot`: only what the replicas the
//!   primary knows still need (their last-known resume points, the
//!   registry's holds), never behind the cap line (like replication slots
//!   with `max_slot_wal_keep_size`).
//!
//! So the WAL on disk is at most what the snapshots need plus the cap, and
//! a replica whose resume point falls behind the cap line loses its WAL at
//! the next retention pass (after the next snapshot) and is answered
//! `WAL_UNAVAILABLE`. The floor is decided here; removal of whole segments
//! wholly before it is [`aerodb_wal::log::SegmentList::remove_segments_before`].
//! Nothing here depends on time (REPL-10); holds never affect what a
//! handshake decides.

use serde::Serialize;

use aerodb_wal::Lsn;

/// Default `--wal-keep-bytes`: 1 GiB of WAL kept for replicas beyond what
/// snapshots need.
pub const DEFAULT_WAL_KEEP_BYTES: u64 = 1024 * 1024 * 1024;

/// What `--wal-retention` keeps before the snapshot floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionMode {
    /// Everything within the cap (`--wal-retention all`, the default).
    All,
    /// Only what known replicas need, within the cap
    /// (`--wal-retention after-oldest-snapshot`).
    AfterOldestSnapshot,
}

impl RetentionMode {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionMode::All => "all",
            RetentionMode::AfterOldestSnapshot => "after-oldest-snapshot",
        }
    }
}

/// The facts one retention decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionInputs {
    /// `L_snap` of the oldest kept usable snapshot (None: no snapshot, the
    /// whole WAL is needed for recovery).
    pub snapshot_floor: Option<Lsn>,
    /// The durable end of the WAL.
    pub end_lsn: Lsn,
    /// The oldest LSN a known replica needs (None: no replica holds WAL).
    pub replica_hold: Option<Lsn>,
}

/// The cap line: the oldest LSN the cap lets replicas keep.
pub fn cap_line(end_lsn: Lsn, keep_bytes: u64) -> Lsn {
    end_lsn.saturating_sub(keep_bytes)
}

/// The retention floor: WAL wholly before it may be removed. Never after
/// the snapshot floor (recovery needs it), never before the cap line for
/// the sake of a replica (RES-2).
pub fn retention_floor(mode: RetentionMode, keep_bytes: u64, inputs: RetentionInputs) -> Lsn {
    let Some(snapshot_floor) = inputs.snapshot_floor else {
        return 0;
    };
    let cap = cap_line(inputs.end_lsn, keep_bytes);
    let for_replicas = match mode {
        RetentionMode::All => cap,
        RetentionMode::AfterOldestSnapshot => inputs.replica_hold.map_or(Lsn::MAX, |hold| hold.max(cap)),
    };
    snapshot_floor.min(for_replicas)
}

/// The oldest LSN the replicas a primary knows still need (their
/// last-known resume points, and the cut of a snapshot being served).
/// Implemented by the primary's replica registry; only retention reads it.
pub trait WalHolds: Send + Sync {
    /// The oldest LSN any known replica needs, if any.
    fn oldest_needed(&self) -> Option<Lsn>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(snapshot_floor: Option<Lsn>, end_lsn: Lsn, replica_hold: Option<Lsn>) -> RetentionInputs {
        RetentionInputs { snapshot_floor, end_lsn, replica_hold }
    }

    /// RES-2: without a snapshot nothing is removable; the floor never
    /// passes the snapshot floor; `all` keeps everything within the cap.
    #[test]
    fn res_2_floor_never_passes_what_snapshots_need() {
        for mode in [RetentionMode::All, RetentionMode::AfterOldestSnapshot] {
            assert_eq!(retention_floor(mode, 100, inputs(None, 10_000, None)), 0, "no snapshot: keep all");
            assert_eq!(retention_floor(mode, 100, inputs(Some(500), 10_000, Some(0))), 500, "a replica far behind the cap holds nothing");
            assert!(retention_floor(mode, 0, inputs(Some(500), 10_000, Some(9_000))) <= 500);
        }
        assert_eq!(retention_floor(RetentionMode::All, 1_000, inputs(Some(9_500), 10_000, None)), 9_000, "all: the cap line");
        assert_eq!(retention_floor(RetentionMode::All, 1_000, inputs(Some(5_000), 10_000, None)), 5_000);
        assert_eq!(retention_floor(RetentionMode::All, u64::MAX, inputs(Some(5_000), 10_000, None)), 0, "a huge cap keeps everything");
    }

    /// RES-2: `after-oldest-snapshot` keeps what known replicas need, but
    /// never behind the cap line.
    #[test]
    fn res_2_replica_holds_are_capped() {
        let m = RetentionMode::AfterOldestSnapshot;
        assert_eq!(retention_floor(m, 1_000, inputs(Some(9_500), 10_000, None)), 9_500, "no replica: only snapshots");
        assert_eq!(retention_floor(m, 1_000, inputs(Some(9_500), 10_000, Some(9_200))), 9_200, "within the cap: held");
        assert_eq!(retention_floor(m, 1_000, inputs(Some(9_500), 10_000, Some(8_000))), 9_000, "behind the cap: cut at the cap line");
        assert_eq!(retention_floor(m, 1_000, inputs(Some(9_500), 10_000, Some(9_900))), 9_500, "ahead of the snapshot: snapshots decide");
        assert_eq!(cap_line(500, 1_000), 0);
    }
}
