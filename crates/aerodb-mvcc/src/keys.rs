//! The key index of one collection: its keys in byte order, each with its
//! version chain.
//!
//! A B-tree whose leaves are sorted vectors of up to [`LEAF_MAX`] keys,
//! found through a `BTreeMap` of their *fences* (the lowest key a leaf may
//! hold; the first leaf's is the empty name, below every key). Why not a
//! `BTreeMap<Name, Chain>`: std's map has no cursor on stable Rust, so
//! every insert searches from the root, about eleven key comparisons per
//! level, and the replica's apply thread spent most of its time there
//! during catch-up. Keys written in ascending order (sequence numbers,
//! time-ordered ids: the common case, and a catch-up backlog) go to the
//! last leaf: two comparisons and a push, one fence insert per
//! [`LEAF_MAX`] keys, and leaves left full. Other inserts cost a fence
//! search over a map [`LEAF_MAX`]/2..[`LEAF_MAX`] times smaller than the
//! key count, a binary search and a shift of at most [`LEAF_MAX`] entries.
//!
//! Invariants (checked by `KeyIndex::check` in tests): leaves are keyed by
//! fences in increasing order; each leaf's keys are strictly increasing,
//! at least its fence and below the next leaf's fence; the first leaf's
//! fence is empty; no leaf is empty and none holds more than
//! [`LEAF_MAX`] keys; the map is empty exactly when the index is.

use std::borrow::Borrow;
use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::chain::{Chain, Name, Stored};

/// Most keys in one leaf. Ascending inserts fill leaves to it; a random
/// insert shifts half of it on average (8 entries of 56 bytes).
pub(crate) const LEAF_MAX: usize = 16;

/// A leaf that falls below this many keys after a removal is merged into
/// a neighbour that has room (so deletions never leave a trail of
/// near-empty leaves).
const LEAF_MIN: usize = LEAF_MAX / 4;

/// One leaf: keys in increasing order with their chains.
type Leaf = Vec<(Name, Chain)>;

/// The keys of one collection (see the module documentation).
#[derive(Default)]
pub(crate) struct KeyIndex {
    leaves: BTreeMap<Name, Leaf>,
    len: usize,
}

/// Where `key` is or would be in a sorted leaf.
fn search<Q: Ord + ?Sized>(leaf: &Leaf, key: &Q) -> Result<usize, usize>
where
    Name: Borrow<Q>,
{
    leaf.binary_search_by(|(k, _)| k.borrow().cmp(key))
}

/// `key` as a search key that compares without a `memcmp` call per
/// comparison (see `Name::cmp`), when it is short enough to be inline.
fn inline_probe(key: &[u8]) -> Option<Name> {
    (key.len() <= Name::INLINE).then(|| Name::new(key))
}

impl KeyIndex {
    /// An index over keys already in strictly increasing order (a
    /// snapshot's), in full leaves.
    pub fn from_sorted(entries: Vec<(Name, Chain)>) -> KeyIndex {
        let len = entries.len();
        let mut leaves = BTreeMap::new();
        let mut entries = entries.into_iter().peekable();
        let mut fence = Some(Name::new(b""));
        while entries.peek().is_some() {
            let leaf: Leaf = entries.by_ref().take(LEAF_MAX).collect();
            let this_fence = fence.take().unwrap_or_else(|| leaf[0].0.clone());
            leaves.insert(this_fence, leaf);
        }
        KeyIndex { leaves, len }
    }

    /// How many keys.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chain of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Chain> {
        match inline_probe(key) {
            Some(probe) => self.get_by(&probe),
            None => self.get_by(key),
        }
    }

    fn get_by<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&Chain>
    where
        Name: Borrow<Q>,
    {
        let (_, leaf) = self.leaves.range::<Q, _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        search(leaf, key).ok().map(|i| &leaf[i].1)
    }

    /// The chain of `key`, to change it.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Chain> {
        match inline_probe(key) {
            Some(probe) => self.get_mut_by(&probe),
            None => self.get_mut_by(key),
        }
    }

    fn get_mut_by<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut Chain>
    where
        Name: Borrow<Q>,
    {
        let (_, leaf) = self.leaves.range_mut::<Q, _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        search(leaf, key).ok().map(|i| &mut leaf[i].1)
    }

    /// Adds `version` as the newest of `key` (a new key gets a chain of
    /// it). `shadowed` is called first with the key's previous newest
    /// version, if the key exists.
    pub fn push_version(&mut self, key: &[u8], version: Stored, shadowed: impl FnOnce(&Stored)) {
        match inline_probe(key) {
            Some(probe) => self.push_version_by(&probe, key, version, shadowed),
            None => self.push_version_by(key, key, version, shadowed),
        }
    }

    /// [`KeyIndex::push_version`] searching with `probe` (`key` itself,
    /// or its inline name).
    fn push_version_by<Q: Ord + ?Sized>(&mut self, probe: &Q, key: &[u8], version: Stored, shadowed: impl FnOnce(&Stored))
    where
        Name: Borrow<Q>,
    {
        // The fast path: a key above every key appends to the last leaf, or
        // starts a new last leaf when that one is full.
        let append = match self.leaves.last_entry() {
            None => Some(Name::new(b"")),
            Some(mut last) if last.key().borrow() <= probe => {
                let leaf = last.get_mut();
                if leaf.last().is_none_or(|(k, _)| k.borrow() < probe) {
                    if leaf.len() < LEAF_MAX {
                        leaf.push((Name::new(key), Chain::One(version)));
                        self.len += 1;
                        return;
                    }
                    Some(Name::new(key))
                } else {
                    None
                }
            }
            Some(_) => None,
        };
        if let Some(fence) = append {
            let mut leaf = Vec::with_capacity(if self.len == 0 { 1 } else { LEAF_MAX });
            leaf.push((Name::new(key), Chain::One(version)));
            self.leaves.insert(fence, leaf);
            self.len += 1;
            return;
        }
        let Some((_, leaf)) = self.leaves.range_mut::<Q, _>((Bound::Unbounded, Bound::Included(probe))).next_back() else {
            // Not reached: the first leaf's fence is empty, below every
            // key. Were it missing, the key belongs to a new first leaf.
            self.leaves.insert(Name::new(b""), vec![(Name::new(key), Chain::One(version))]);
            self.len += 1;
            return;
        };
        let at = match search(leaf, probe) {
            Ok(i) => {
                let chain = &mut leaf[i].1;
                shadowed(chain.newest());
                chain.push(version);
                return;
            }
            Err(at) => at,
        };
        let entry = (Name::new(key), Chain::One(version));
        self.len += 1;
        if leaf.len() < LEAF_MAX {
            leaf.insert(at, entry);
            return;
        }
        // A full leaf splits in two halves (an append past its end took
        // the fast path or belongs below the next fence).
        let half = LEAF_MAX / 2;
        let mut right = Vec::with_capacity(LEAF_MAX);
        right.extend(leaf.drain(half..));
        if at <= half {
            leaf.insert(at, entry);
        } else {
            right.insert(at - half, entry);
        }
        let right_fence = right[0].0.clone();
        self.leaves.insert(right_fence, right);
    }

    /// Removes `key` and its chain.
    pub fn remove(&mut self, key: &[u8]) -> Option<Chain> {
        let (fence, leaf) = self.leaves.range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        let i = search(leaf, key).ok()?;
        let (_, chain) = leaf.remove(i);
        self.len -= 1;
        if leaf.len() < LEAF_MIN {
            let fence = fence.clone();
            self.merge_small(&fence);
        } else if leaf.capacity() >= 4 * leaf.len() {
            leaf.shrink_to(2 * leaf.len());
        }
        Some(chain)
    }

    /// Merges the small leaf fenced by `fence` into its left neighbour, or
    /// its right neighbour into it, where the merged leaf fits (an empty
    /// leaf fits anywhere, so none is left empty); drops every leaf when
    /// the index is empty.
    fn merge_small(&mut self, fence: &Name) {
        if self.len == 0 {
            self.leaves.clear();
            return;
        }
        let Some(small_len) = self.leaves.get(fence).map(Vec::len) else {
            return;
        };
        let left_fits = self.leaves.range::<Name, _>(..fence).next_back().is_some_and(|(_, left)| left.len() + small_len <= LEAF_MAX);
        if left_fits {
            let small = self.leaves.remove(fence).unwrap_or_default();
            if let Some((_, left)) = self.leaves.range_mut::<Name, _>(..fence).next_back() {
                left.extend(small);
            }
            return;
        }
        let right = self.leaves.range::<Name, _>((Bound::Excluded(fence), Bound::Unbounded)).next();
        let Some(right_fence) = right.filter(|(_, right)| small_len + right.len() <= LEAF_MAX).map(|(f, _)| f.clone()) else {
            return;
        };
        let right = self.leaves.remove(&right_fence).unwrap_or_default();
        if let Some(small) = self.leaves.get_mut(fence) {
            small.extend(right);
        }
    }

    /// Keys within the bounds, in order, with their chains.
    pub fn range<'a>(&'a self, lower: Bound<&'a [u8]>, upper: Bound<&'a [u8]>) -> Range<'a> {
        let (start_leaf, skip) = match lower {
            Bound::Unbounded => (Bound::Unbounded, None),
            Bound::Included(k) | Bound::Excluded(k) => match self.leaves.range::<[u8], _>((Bound::Unbounded, Bound::Included(k))).next_back() {
                Some((fence, _)) => (Bound::Included(fence.as_bytes()), Some(lower)),
                None => (Bound::Unbounded, Some(lower)),
            },
        };
        let mut leaves = self.leaves.range::<[u8], _>((start_leaf, Bound::Unbounded));
        let mut current = leaves.next().map_or(&[][..], |(_, leaf)| &leaf[..]);
        if let Some(lower) = skip {
            let start = match lower {
                Bound::Included(k) => current.partition_point(|(n, _)| n.as_bytes() < k),
                Bound::Excluded(k) => current.partition_point(|(n, _)| n.as_bytes() <= k),
                Bound::Unbounded => 0,
            };
            current = &current[start..];
        }
        Range { leaves, current: current.iter(), upper, done: false }
    }

    /// Every key in order, with its chain.
    pub fn iter(&self) -> Range<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

/// Keys of a [`KeyIndex`] within bounds, in order.
pub(crate) struct Range<'a> {
    leaves: btree_map::Range<'a, Name, Leaf>,
    current: std::slice::Iter<'a, (Name, Chain)>,
    upper: Bound<&'a [u8]>,
    /// Past the upper bound.
    done: bool,
}

impl<'a> Iterator for Range<'a> {
    type Item = (&'a Name, &'a Chain);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (key, chain) = loop {
            if let Some(entry) = self.current.next() {
                break entry;
            }
            self.current = self.leaves.next()?.1.iter();
        };
        let within = match self.upper {
            Bound::Unbounded => true,
            Bound::Included(end) => key.as_bytes() <= end,
            Bound::Excluded(end) => key.as_bytes() < end,
        };
        if within {
            Some((key, chain))
        } else {
            self.done = true;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    impl KeyIndex {
        /// Checks every invariant of the module documentation.
        fn check(&self) {
            assert_eq!(self.leaves.is_empty(), self.len == 0);
            let mut count = 0;
            let mut fences = self.leaves.keys().peekable();
            if let Some(first) = fences.peek() {
                assert!(first.as_bytes().is_empty(), "the first fence is below every key");
            }
            let fences: Vec<&Name> = self.leaves.keys().collect();
            for (n, (fence, leaf)) in self.leaves.iter().enumerate() {
                assert!(!leaf.is_empty() && leaf.len() <= LEAF_MAX, "leaf of {} keys", leaf.len());
                assert!(leaf.windows(2).all(|w| w[0].0 < w[1].0), "keys increase within a leaf");
                assert!(fence <= &leaf[0].0, "keys are at least their fence");
                if let Some(next) = fences.get(n + 1) {
                    assert!(&leaf[leaf.len() - 1].0 < *next, "keys are below the next fence");
                }
                count += leaf.len();
            }
            assert_eq!(count, self.len);
        }
    }

    fn version(commit_id: u64) -> Stored {
        Stored::new(commit_id, Some(&commit_id.to_le_bytes()))
    }

    fn commits(chain: &Chain) -> Vec<u64> {
        chain.as_slice().iter().map(|v| v.commit_id).collect()
    }

    /// An operation on the index and on the model.
    #[derive(Clone, Debug)]
    enum Action {
        Push(Vec<u8>),
        Remove(Vec<u8>),
        Range(Option<(Vec<u8>, bool)>, Option<(Vec<u8>, bool)>),
    }

    /// Keys from a small alphabet (so pushes hit existing keys and
    /// removals find them), with runs of ascending keys.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![proptest::collection::vec(0u8..4, 0..4), (0u32..1000).prop_map(|n| format!("k{n:05}").into_bytes()),]
    }

    fn action() -> impl Strategy<Value = Action> {
        let bound = || proptest::option::of((key(), any::<bool>()));
        prop_oneof![
            6 => key().prop_map(Action::Push),
            3 => key().prop_map(Action::Remove),
            1 => (bound(), bound()).prop_map(|(lo, hi)| Action::Range(lo, hi)),
        ]
    }

    fn bound(b: &Option<(Vec<u8>, bool)>) -> Bound<&[u8]> {
        match b {
            None => Bound::Unbounded,
            Some((k, true)) => Bound::Included(k),
            Some((k, false)) => Bound::Excluded(k),
        }
    }

    fn within(b: &Option<(Vec<u8>, bool)>, key: &[u8], lower: bool) -> bool {
        match (b, lower) {
            (None, _) => true,
            (Some((k, true)), true) => key >= &k[..],
            (Some((k, false)), true) => key > &k[..],
            (Some((k, true)), false) => key <= &k[..],
            (Some((k, false)), false) => key < &k[..],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// MVCC-1, MVCC-3: the key index answers every lookup, chain and
        /// range scan exactly like an ordered map of the same keys, under
        /// any mix of new keys, new versions, removals and ascending runs,
        /// and keeps its structural invariants after every operation.
        #[test]
        fn mvcc_3_key_index_matches_an_ordered_map(actions in proptest::collection::vec(action(), 1..600), ascending in 0u32..400) {
            let mut index = KeyIndex::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
            let mut commit_id = 0u64;
            // An ascending run first (the fast path and full leaves), then
            // the random actions over it.
            let run = (0..ascending).map(|n| Action::Push(format!("k{:05}", n * 2).into_bytes()));
            for action in run.chain(actions) {
                match action {
                    Action::Push(k) => {
                        commit_id += 1;
                        let mut seen = None;
                        index.push_version(&k, version(commit_id), |prev| seen = Some(prev.commit_id));
                        let chain = model.entry(k.clone()).or_default();
                        prop_assert_eq!(seen, chain.last().copied(), "the shadowed version of {:?}", k);
                        chain.push(commit_id);
                    }
                    Action::Remove(k) => {
                        prop_assert_eq!(index.remove(&k).map(|c| commits(&c)), model.remove(&k));
                    }
                    Action::Range(lo, hi) => {
                        let got: Vec<(Vec<u8>, Vec<u64>)> = index.range(bound(&lo), bound(&hi)).map(|(k, c)| (k.as_bytes().to_vec(), commits(c))).collect();
                        let want: Vec<(Vec<u8>, Vec<u64>)> = model.iter().filter(|(k, _)| within(&lo, k, true) && within(&hi, k, false)).map(|(k, c)| (k.clone(), c.clone())).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                index.check();
                prop_assert_eq!(index.len(), model.len());
            }
            for (k, c) in &model {
                let (got, got_mut) = (index.get(k).map(commits), index.get_mut(k).map(|c| commits(c)));
                prop_assert_eq!(got.as_ref(), Some(c));
                prop_assert_eq!(got_mut.as_ref(), Some(c));
            }
            prop_assert!(index.get(b"absent-key").is_none());
            let all: Vec<Vec<u8>> = index.iter().map(|(k, _)| k.as_bytes().to_vec()).collect();
            prop_assert_eq!(all, model.keys().cloned().collect::<Vec<_>>());
        }
    }

    /// RES-1: keys inserted in ascending order (a catch-up backlog,
    /// sequence numbers) leave every leaf but the last full, exactly like
    /// an index built from a snapshot's sorted keys; removing them all
    /// leaves no leaf behind.
    #[test]
    fn res_1_ascending_keys_fill_every_leaf() {
        let keys: Vec<Vec<u8>> = (0..10 * LEAF_MAX + 3).map(|n| format!("backlog-{n:08}").into_bytes()).collect();
        let mut index = KeyIndex::default();
        for (n, k) in keys.iter().enumerate() {
            index.push_version(k, version(n as u64 + 1), |_| panic!("a new key shadows nothing"));
        }
        index.check();
        let sizes: Vec<usize> = index.leaves.values().map(Vec::len).collect();
        assert_eq!(sizes, [vec![LEAF_MAX; 10], vec![3]].concat());
        let built = KeyIndex::from_sorted(keys.iter().enumerate().map(|(n, k)| (Name::new(k), Chain::One(version(n as u64 + 1)))).collect());
        built.check();
        assert_eq!(built.leaves.values().map(Vec::len).collect::<Vec<_>>(), sizes);
        for k in keys.iter().rev() {
            assert!(index.remove(k).is_some());
            index.check();
        }
        assert!(index.is_empty() && index.leaves.is_empty());
    }
}
