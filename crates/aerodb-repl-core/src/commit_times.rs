//! When commits became durable, in the primary's wall-clock time, and the
//! replica's lag in seconds computed from them. Observability only:
//! REPL-10 forbids deciding anything by time, and nothing here is read by
//! a decision. Times are Unix milliseconds passed in by the runtime; `0`
//! means unknown.
//!
//! - On the primary, [`CommitTimes`] indexes `CommitId → time it became
//!   durable` (one entry per durable-point advance, i.e. per commit group),
//!   bounded: when full, the older half is thinned, so recent commits keep
//!   exact times and older ones coarser ones (a lookup then returns a time
//!   no earlier than the commit's, so lag is never overstated).
//! - Both sides compute lag the same way ([`lag_ms`]): 0 when the replica
//!   has applied the primary's newest known commit, otherwise the primary's
//!   clock minus the time the oldest commit the replica has not applied
//!   became durable (MySQL's `Seconds_Behind_Source`, on the primary's
//!   clock only, so clock skew between hosts does not enter).
//! - On a replica, [`LagClock`] keeps what PROGRESS frames said (protocol
//!   version 2): the primary's clock and the times of the commits it
//!   reported.

use std::collections::VecDeque;

use parking_lot::Mutex;

use aerodb_wal::CommitId;

use crate::positions::{PrimaryProgress, ProgressTimes};

/// Entries a [`CommitTimes`] index holds at most.
///
/// 16,384 entries of 16 bytes: 256 KiB, a fixed cost of the primary
/// (RES-1). Commits made durable in the same millisecond share one entry,
/// so at most the last 16 s of writing are exact, older ones thinned.
pub const MAX_PRIMARY_COMMIT_TIMES: usize = 16_384;

/// Entries a replica's [`LagClock`] holds at most.
pub const MAX_REPLICA_COMMIT_TIMES: usize = 1_024;

/// A bounded list of `(CommitId, time)` pairs in CommitId order: each entry
/// says its commit (and so every earlier one) was durable by its time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TimeIndex {
    entries: VecDeque<(CommitId, u64)>,
}

impl TimeIndex {
    /// Inserts `(commit_id, time)` in CommitId order (for a CommitId held
    /// already, the earlier time wins: both are times it was durable by);
    /// thins the older half when more than `cap` entries are held.
    fn push(&mut self, commit_id: CommitId, time_ms: u64, cap: usize) {
        if time_ms == 0 {
            return;
        }
        // A later commit durable in the same millisecond as the newest entry
        // replaces that entry's CommitId: every commit up to the new one was
        // durable by that time, so lookups answer exactly as before.
        if let Some((c, t)) = self.entries.back_mut() {
            if commit_id > *c && time_ms == *t {
                *c = commit_id;
                return;
            }
        }
        let i = self.entries.partition_point(|(c, _)| *c < commit_id);
        match self.entries.get_mut(i) {
            Some((c, t)) if *c == commit_id => {
                *t = (*t).min(time_ms);
                return;
            }
            _ => self.entries.insert(i, (commit_id, time_ms)),
        }
        if self.entries.len() >= cap.max(4) {
            // Drop every other entry of the older half: a lookup there then
            // answers with a later entry's time (lag understated, never
            // overstated); recent commits keep exact times.
            let half = self.entries.len() / 2;
            let mut i = 0usize;
            self.entries.retain(|_| {
                let keep = i >= half || i % 2 == 1;
                i += 1;
                keep
            });
        }
    }

    /// The time of the first entry at or after `commit_id` (a time at which
    /// `commit_id` was durable), if any.
    fn at_or_after(&self, commit_id: CommitId) -> Option<u64> {
        let i = self.entries.partition_point(|(c, _)| *c < commit_id);
        self.entries.get(i).map(|(_, t)| *t)
    }

    /// Drops entries at or before `commit_id` (no longer needed).
    fn forget_through(&mut self, commit_id: CommitId) {
        while self.entries.front().is_some_and(|(c, _)| *c <= commit_id) {
            self.entries.pop_front();
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The primary's index of when its commits became durable (Unix ms),
/// shared by the replication sessions and the DX API.
pub struct CommitTimes {
    /// Commits at or before it have no known time (made before this
    /// process started).
    known_after: CommitId,
    index: Mutex<TimeIndex>,
}

impl CommitTimes {
    /// An empty index; commits at or before `known_after` (the durable
    /// CommitId at startup) have no known time.
    pub fn new(known_after: CommitId) -> Self {
        CommitTimes { known_after, index: Mutex::new(TimeIndex::default()) }
    }

    /// Records that every commit up to `commit_id` was durable at `time_ms`.
    pub fn record(&self, commit_id: CommitId, time_ms: u64) {
        if commit_id > self.known_after {
            self.index.lock().push(commit_id, time_ms, MAX_PRIMARY_COMMIT_TIMES);
        }
    }

    /// When `commit_id` became durable (or a later time, see the module
    /// docs), if known.
    pub fn time_of(&self, commit_id: CommitId) -> Option<u64> {
        if commit_id <= self.known_after {
            return None;
        }
        self.index.lock().at_or_after(commit_id)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.index.lock().len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Lag in milliseconds on the primary's clock: 0 when `applied` has reached
/// `c_primary`; otherwise `now_ms` minus `oldest_unapplied_time_ms` (the
/// time the first commit after `applied` became durable). None when a
/// needed time is unknown.
pub fn lag_ms(applied: CommitId, c_primary: CommitId, now_ms: Option<u64>, oldest_unapplied_time_ms: Option<u64>) -> Option<u64> {
    if applied >= c_primary {
        return Some(0);
    }
    Some(now_ms?.saturating_sub(oldest_unapplied_time_ms?))
}

/// What a replica learned from PROGRESS frames about the primary's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LagClock {
    index: TimeIndex,
    primary_time_ms: Option<u64>,
}

impl LagClock {
    /// A PROGRESS arrived; `applied` is C_replica now (older entries are
    /// dropped).
    pub fn on_progress(&mut self, progress: PrimaryProgress, times: ProgressTimes, applied: CommitId) {
        self.index.forget_through(applied);
        if times.next_commit_id > applied {
            self.index.push(times.next_commit_id, times.next_commit_time_ms, MAX_REPLICA_COMMIT_TIMES);
        }
        self.index.push(progress.commit_id, times.commit_time_ms, MAX_REPLICA_COMMIT_TIMES);
        if times.primary_time_ms != 0 {
            self.primary_time_ms = Some(times.primary_time_ms);
        }
    }

    /// Lag in milliseconds at C_replica = `applied` against the primary's
    /// last reported position (as of the last PROGRESS: live while
    /// streaming, last-known otherwise). None when unknown.
    pub fn lag_ms(&self, applied: CommitId, primary: Option<PrimaryProgress>) -> Option<u64> {
        let primary = primary?;
        lag_ms(applied, primary.commit_id, self.primary_time_ms, self.index.at_or_after(applied.saturating_add(1)))
    }

    /// Entries held (bounded by [`MAX_REPLICA_COMMIT_TIMES`]).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no commit time is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(commit_id: CommitId) -> PrimaryProgress {
        PrimaryProgress { commit_id, durable_lsn: commit_id * 100 }
    }

    /// REPL-10: lag in seconds is a pure function of the primary's times;
    /// caught up is 0, behind is the age of the oldest unapplied commit.
    #[test]
    fn repl_10_lag_is_the_age_of_the_oldest_unapplied_commit() {
        assert_eq!(lag_ms(5, 5, Some(9_000), None), Some(0));
        assert_eq!(lag_ms(6, 5, None, None), Some(0));
        assert_eq!(lag_ms(4, 5, Some(9_000), Some(7_500)), Some(1_500));
        assert_eq!(lag_ms(4, 5, Some(7_000), Some(7_500)), Some(0), "a clock step backwards never makes lag negative");
        assert_eq!(lag_ms(4, 5, None, Some(7_500)), None);
        assert_eq!(lag_ms(4, 5, Some(9_000), None), None);
    }

    /// REPL-10: the primary's index answers with the time the commit became
    /// durable (the first group at or after it), nothing for commits before
    /// the process started, and stays bounded.
    #[test]
    fn repl_10_commit_times_index_is_exact_for_recent_commits_and_bounded() {
        let t = CommitTimes::new(10);
        t.record(10, 1_000);
        t.record(13, 2_000);
        t.record(13, 2_500);
        t.record(20, 3_000);
        assert_eq!(t.time_of(10), None, "committed before this process started");
        assert_eq!(t.time_of(11), Some(2_000));
        assert_eq!(t.time_of(13), Some(2_000));
        assert_eq!(t.time_of(14), Some(3_000));
        assert_eq!(t.time_of(21), None);
        let big = CommitTimes::new(0);
        for c in 1..=(3 * MAX_PRIMARY_COMMIT_TIMES as u64) {
            big.record(c, c * 10);
        }
        assert!(big.len() <= MAX_PRIMARY_COMMIT_TIMES);
        let last = 3 * MAX_PRIMARY_COMMIT_TIMES as u64;
        assert_eq!(big.time_of(last), Some(last * 10), "recent commits keep exact times");
        let old = big.time_of(5).unwrap();
        assert!(old >= 50, "a thinned entry never predates the commit");
    }

    /// REPL-10, RES-1: commits made durable in the same millisecond share
    /// one entry, and every one of them still answers that time.
    #[test]
    fn repl_10_commits_durable_in_the_same_millisecond_share_one_entry() {
        let t = CommitTimes::new(0);
        t.record(5, 1_000);
        for c in 6..=1_000 {
            t.record(c, 2_000);
        }
        t.record(1_001, 3_000);
        assert_eq!(t.len(), 3);
        assert_eq!(t.time_of(5), Some(1_000));
        assert_eq!(t.time_of(6), Some(2_000));
        assert_eq!(t.time_of(1_000), Some(2_000));
        assert_eq!(t.time_of(1_001), Some(3_000));
    }

    /// REPL-10: a replica's lag clock follows PROGRESS frames: live numbers
    /// move with the primary's clock, the first commit of each WAL frame
    /// gives exact ages while catching up, and entries stay bounded.
    #[test]
    fn repl_10_replica_lag_clock_follows_progress() {
        let mut c = LagClock::default();
        assert_eq!(c.lag_ms(0, None), None, "no PROGRESS yet: unknown");
        let t = |now, commit, next, next_t| ProgressTimes { primary_time_ms: now, commit_time_ms: commit, next_commit_id: next, next_commit_time_ms: next_t };
        c.on_progress(progress(50), t(10_000, 9_900, 1, 1_000), 0);
        assert_eq!(c.lag_ms(0, Some(progress(50))), Some(9_000), "commit 1 waits since 1000");
        assert_eq!(c.lag_ms(50, Some(progress(50))), Some(0));
        c.on_progress(progress(50), t(12_000, 9_900, 0, 0), 10);
        assert_eq!(c.lag_ms(10, Some(progress(50))), Some(2_100), "commit 11 is only known to be durable by 9900");
        c.on_progress(progress(50), t(12_500, 9_900, 11, 5_000), 10);
        assert_eq!(c.lag_ms(10, Some(progress(50))), Some(7_500));
        for i in 0..(4 * MAX_REPLICA_COMMIT_TIMES as u64) {
            c.on_progress(progress(100 + i), t(20_000 + i, 15_000 + i, 0, 0), 10);
        }
        assert!(c.len() <= MAX_REPLICA_COMMIT_TIMES);
        assert!(!c.is_empty());
    }
}
