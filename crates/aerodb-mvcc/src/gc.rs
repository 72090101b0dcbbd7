//! MVCC garbage collection (MVCC-4, MVCC-5, RES-1): the retention policy
//! the primary applies, the rule that says which versions a horizon keeps,
//! and the queue that finds the versions a GC record removes without
//! scanning the store.
//!
//! A version of a key is *removable at horizon H* when no read view at
//! R >= H can see it: it is shadowed by a newer version with CommitId <= H,
//! or it is a tombstone with CommitId <= H (a read at R >= H then finds
//! either a newer version or nothing, exactly as with the tombstone).
//! Every version becomes removable at one CommitId that is known the moment
//! it stops being the newest (or, for a tombstone, the moment it is
//! written), so candidates are queued in CommitId order as records are
//! applied and a GC record only pops the front of the queue.
//!
//! Removal happens in two steps. Applying a GC record removes the versions
//! *logically*: they leave the state digest, the version count, snapshots
//! and explanations, and views below H can no longer be opened. They are
//! purged *physically* once no read view that pinned an older state still
//! needs them (MVCC-5), so a read in flight is never cancelled or changed.

use std::collections::VecDeque;

use aerodb_wal::CommitId;
use serde::Serialize;

use crate::chain::Name;
use crate::store::ChainEntry;

/// How much MVCC history the primary keeps behind its newest commit
/// (`--history-retain-commits`). The policy decides only from CommitIds,
/// never from time (REPL-10), and only the primary applies it: replicas
/// apply the GC records it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GcPolicy {
    /// N: read views at C - N and later stay answerable.
    pub retain_commits: u64,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy { retain_commits: GcPolicy::DEFAULT_RETAIN_COMMITS }
    }
}

impl GcPolicy {
    /// Default N (docs/operations.md): 10,000 commits of history.
    pub const DEFAULT_RETAIN_COMMITS: u64 = 10_000;

    /// A policy keeping `retain_commits` commits of history.
    pub fn new(retain_commits: u64) -> Self {
        GcPolicy { retain_commits }
    }

    /// How far the target horizon must be ahead of the current one before
    /// a GC record is written: N / 10, at least 2. Bounds the GC records to
    /// about one per N/10 commits, and the history held to N + N/10 commits.
    /// At least 2 because a GC record takes a CommitId itself: with a step
    /// of 1 every GC record would make the next one due.
    pub fn step(&self) -> u64 {
        (self.retain_commits / 10).max(2)
    }

    /// The horizon a GC record should state after the record with CommitId
    /// `tip`, given the current `horizon`: `tip - N` once that is at least
    /// [`GcPolicy::step`] ahead of `horizon`, else `None`. The result is
    /// always below `tip + 1`, the CommitId the GC record will take.
    pub fn due(&self, tip: CommitId, horizon: CommitId) -> Option<CommitId> {
        let target = tip.checked_sub(self.retain_commits)?;
        (target >= horizon.saturating_add(self.step())).then_some(target)
    }
}

/// Whether the version at `index` of `chain` (oldest first) is retained at
/// horizon `horizon`: it is newer than the horizon, or it is the newest
/// version at or below the horizon and not a tombstone. Snapshots and
/// explanations use this, so they never depend on when the purge ran.
pub fn retained<V: ChainEntry>(chain: &[V], index: usize, horizon: CommitId) -> bool {
    let above = chain.partition_point(|v| v.commit_id() <= horizon);
    index >= above || (index + 1 == above && !chain[index].is_tombstone())
}

/// The versions of `chain` retained at `horizon`, oldest first.
pub fn retained_versions<V: ChainEntry>(chain: &[V], horizon: CommitId) -> impl Iterator<Item = &V> {
    chain.iter().enumerate().filter(move |(i, _)| retained(chain, *i, horizon)).map(|(_, v)| v)
}

/// A version that becomes removable once the horizon reaches `removable_at`.
/// One exists per superseded version inside the retention window, none per
/// live key (RES-1).
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    /// Horizon from which no view can see the version.
    pub removable_at: CommitId,
    /// The version's CommitId.
    pub commit_id: CommitId,
    /// The version's hash, subtracted from the digest when it is removed
    /// (low and high halves: 8-byte alignment keeps the entry at 56 bytes).
    hash: [u64; 2],
    /// Its collection and key: the collection's length in one byte, the
    /// collection, the key (short ones need no allocation).
    path: Name,
}

impl Candidate {
    /// The candidate for version `commit_id` of `collection`/`key`.
    /// Names are at most 255 bytes (longer ones never pass validation;
    /// one would only make this candidate's path ambiguous, never unsafe).
    pub fn new(removable_at: CommitId, collection: &[u8], key: &[u8], commit_id: CommitId, hash: u128) -> Candidate {
        let mut buf = [0u8; 1 + 2 * 255];
        let coll_len = collection.len().min(255);
        let key_len = key.len().min(255);
        buf[0] = coll_len as u8;
        buf[1..1 + coll_len].copy_from_slice(&collection[..coll_len]);
        buf[1 + coll_len..1 + coll_len + key_len].copy_from_slice(&key[..key_len]);
        let path = Name::new(&buf[..1 + coll_len + key_len]);
        Candidate { removable_at, commit_id, hash: [hash as u64, (hash >> 64) as u64], path }
    }

    /// The version's hash.
    pub fn hash(&self) -> u128 {
        u128::from(self.hash[0]) | (u128::from(self.hash[1]) << 64)
    }

    /// The collection-and-key path (see [`path_names`]).
    #[cfg(test)]
    pub fn path(&self) -> &Name {
        &self.path
    }

    /// The path and the version's CommitId (purging a taken candidate).
    pub fn into_path(self) -> (Name, CommitId) {
        (self.path, self.commit_id)
    }
}

/// The collection and the key of a candidate's path.
pub(crate) fn path_names(path: &Name) -> (&[u8], &[u8]) {
    let bytes = path.as_bytes();
    let coll_len = bytes.first().map_or(0, |n| usize::from(*n));
    let rest = bytes.get(1..).unwrap_or_default();
    rest.split_at(coll_len.min(rest.len()))
}

/// Candidates in `removable_at` order. The front `removed` entries were
/// removed logically (by a GC record) and wait to be purged physically.
///
/// Per key, candidates are queued in chain order (oldest version first), so
/// purging the front of the queue always removes the oldest version of
/// each chain it touches.
#[derive(Debug, Default)]
pub(crate) struct GcQueue {
    queue: VecDeque<Candidate>,
    removed: usize,
}

/// What applying a GC record at some horizon would remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Removal {
    /// Number of versions.
    pub versions: usize,
    /// Wrapping sum of their hashes.
    pub hash_sum: u128,
}

impl GcQueue {
    /// Queues a candidate; `removable_at` must not be below the last one's.
    pub fn push(&mut self, c: Candidate) {
        debug_assert!(self.queue.back().is_none_or(|b| b.removable_at <= c.removable_at), "GC queue out of order");
        self.queue.push_back(c);
    }

    /// Builds a queue from candidates in any order (snapshot load).
    pub fn from_unordered(mut candidates: Vec<Candidate>) -> GcQueue {
        // Stable: per key, chain order is kept for equal `removable_at`.
        candidates.sort_by_key(|c| c.removable_at);
        GcQueue { queue: candidates.into(), removed: 0 }
    }

    /// What a GC record at `horizon` removes: every candidate not yet
    /// removed whose `removable_at` is at or below it. Reads only.
    pub fn removal_at(&self, horizon: CommitId) -> Removal {
        let mut r = Removal { versions: 0, hash_sum: 0 };
        for c in self.queue.iter().skip(self.removed).take_while(|c| c.removable_at <= horizon) {
            r.versions += 1;
            r.hash_sum = r.hash_sum.wrapping_add(c.hash());
        }
        r
    }

    /// Marks the next `n` candidates as logically removed.
    pub fn mark_removed(&mut self, n: usize) {
        self.removed = (self.removed + n).min(self.queue.len());
    }

    /// Logically removed candidates not yet purged.
    pub fn unpurged(&self) -> usize {
        self.removed
    }

    /// Candidates queued (removed or not).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Takes the removed candidates that no pinned view can need: those
    /// with `removable_at <= limit` (a view at R needs none of the versions
    /// removable at or below R).
    pub fn take_purgeable(&mut self, limit: CommitId) -> Vec<Candidate> {
        let mut out = Vec::new();
        while self.removed > 0 && self.queue.front().is_some_and(|c| c.removable_at <= limit) {
            if let Some(c) = self.queue.pop_front() {
                out.push(c);
            }
            self.removed -= 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::Version;
    use bytes::Bytes;

    fn v(commit_id: CommitId, put: bool) -> Version {
        Version { commit_id, doc: put.then(|| Bytes::from_static(b"{}")) }
    }

    /// MVCC-4: the retention rule keeps what views at or above H can see.
    #[test]
    fn mvcc_4_retained_keeps_exactly_what_views_at_or_above_the_horizon_see() {
        let chain = [v(1, true), v(3, true), v(5, false), v(7, true)];
        let kept = |h| retained_versions(&chain, h).map(|v| v.commit_id).collect::<Vec<_>>();
        assert_eq!(kept(0), [1, 3, 5, 7]);
        assert_eq!(kept(2), [1, 3, 5, 7]);
        assert_eq!(kept(3), [3, 5, 7]);
        assert_eq!(kept(4), [3, 5, 7]);
        assert_eq!(kept(5), [7], "a tombstone that is the newest <= H goes, with everything under it");
        assert_eq!(kept(9), [7]);
        let dead = [v(2, true), v(4, false)];
        assert!(retained_versions(&dead, 4).next().is_none());
    }

    /// MVCC-4 / RES-1: the policy is a pure function of CommitIds with a
    /// bounded step, and never states a horizon at or above the GC record.
    #[test]
    fn mvcc_4_policy_is_a_function_of_commit_ids() {
        let p = GcPolicy::new(100);
        assert_eq!(p.step(), 10);
        assert_eq!(p.due(109, 0), None);
        assert_eq!(p.due(110, 0), Some(10));
        assert_eq!(p.due(119, 10), None);
        assert_eq!(p.due(120, 10), Some(20));
        let zero = GcPolicy::new(0);
        assert_eq!(zero.step(), 2);
        assert_eq!(zero.due(6, 4), Some(6));
        assert_eq!(zero.due(5, 4), None);
        assert_eq!(GcPolicy::new(5).due(6, 0), None);
        assert_eq!(GcPolicy::new(5).due(7, 0), Some(2));
        // A GC record never makes the next one due by itself: after the GC
        // record G = tip + 1 stating tip - N, nothing is due at G.
        for n in [0, 1, 5, 20, 10_000] {
            let p = GcPolicy::new(n);
            let tip = n + p.step() + 100;
            let h = p.due(tip, 0).unwrap();
            assert_eq!(p.due(tip + 1, h), None, "N = {n}");
        }
        assert_eq!(GcPolicy::default().retain_commits, GcPolicy::DEFAULT_RETAIN_COMMITS);
    }
}
