//! Version chains, read views and the one apply function (CORE-4).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use aerodb_wal::record::Op;
use aerodb_wal::{CommitId, Fingerprint, Lsn, RecordPosition, StateDigest, GENESIS_FINGERPRINT};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use thiserror::Error;

/// One version of a document: the commit that created it and its body,
/// or `None` for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// CommitId that created this version.
    pub commit_id: CommitId,
    /// Full document body (canonical JSON), or `None` for a delete.
    pub doc: Option<Bytes>,
}

/// The store's position in history: everything up to and including
/// `commit_id` is applied and visible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AppliedState {
    /// Last applied CommitId (0 = empty).
    pub commit_id: CommitId,
    /// End LSN of that commit's record.
    pub end_lsn: Lsn,
    /// Fingerprint of that record.
    pub fingerprint: Fingerprint,
    /// State digest over every version with CommitId <= `commit_id`.
    pub state_digest: StateDigest,
}

impl AppliedState {
    /// The empty state at genesis.
    pub const GENESIS: AppliedState = AppliedState { commit_id: 0, end_lsn: 0, fingerprint: GENESIS_FINGERPRINT, state_digest: StateDigest::EMPTY };
}

/// One record to apply, from whichever path produced it (primary commit,
/// primary recovery, replica apply, snapshot-plus-WAL restore).
#[derive(Clone, Copy, Debug)]
pub struct ApplyInput<'a> {
    /// Record position and identity.
    pub position: RecordPosition,
    /// Digest the record carries (state after it).
    pub state_digest: StateDigest,
    /// Its write set.
    pub ops: &'a [Op],
}

/// Why a record could not be applied. Nothing of it became visible.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ApplyError {
    /// The record is not the next commit (REPL-2, REPL-7).
    #[error("record CommitId {found} at LSN {lsn} does not follow applied CommitId {applied} ending at LSN {applied_end_lsn}")]
    NotNext {
        /// CommitId of the record.
        found: CommitId,
        /// Its LSN.
        lsn: Lsn,
        /// Applied CommitId.
        applied: CommitId,
        /// Applied end LSN.
        applied_end_lsn: Lsn,
    },
    /// Recomputed digest differs from the record's (REPL-4, F-D3).
    #[error("state digest mismatch at CommitId {commit_id}: record carries {carried}, recomputed {recomputed}")]
    DigestMismatch {
        /// The record's CommitId.
        commit_id: CommitId,
        /// Digest in the record (the primary's).
        carried: StateDigest,
        /// Digest this node computed.
        recomputed: StateDigest,
    },
}

impl ApplyError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::NotNext { .. } => "APPLY_OUT_OF_ORDER",
            ApplyError::DigestMismatch { .. } => "APPLY_DIVERGED",
        }
    }
    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        match self {
            ApplyError::NotNext { .. } => "REPL-2",
            ApplyError::DigestMismatch { .. } => "REPL-4",
        }
    }
}

/// Why a read view cannot be opened at the requested bound.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ViewError {
    /// R is above the last applied commit (RS-3 on replicas).
    #[error("read view {requested} is beyond the applied CommitId {applied}")]
    BeyondApplied {
        /// Requested R.
        requested: CommitId,
        /// Applied CommitId.
        applied: CommitId,
    },
    /// R is below the history horizon (RS-4).
    #[error("read view {requested} is below the history horizon {horizon}")]
    BelowHorizon {
        /// Requested R.
        requested: CommitId,
        /// Oldest answerable CommitId.
        horizon: CommitId,
    },
}

type Chains = BTreeMap<Bytes, BTreeMap<Bytes, Vec<Version>>>;

/// Called with the new applied CommitId after each apply, once the commit is
/// visible. Lets a server wake its waiting readers with its own runtime's
/// primitives (this crate stays runtime-agnostic). It must be cheap and
/// must not call back into the store's apply path. Calls may arrive out of
/// order under concurrent appliers: keep the maximum.
pub type AppliedObserver = Arc<dyn Fn(CommitId) + Send + Sync>;

struct Inner {
    collections: Chains,
    applied: AppliedState,
    versions: u64,
}

/// The MVCC store. Versions at or below the applied CommitId are immutable,
/// so a read view at R never sees anything change underneath it (MVCC-3).
pub struct Store {
    inner: RwLock<Inner>,
    views: Mutex<BTreeMap<CommitId, u64>>,
    history_horizon: CommitId,
    applied_signal: Mutex<CommitId>,
    applied_changed: Condvar,
    observer: std::sync::OnceLock<AppliedObserver>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// A visible version found by a point read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visible {
    /// CommitId of the version that is visible at the view.
    pub commit_id: CommitId,
    /// Its body, or `None` when the visible version is a tombstone.
    pub doc: Option<Bytes>,
}

/// One page of a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPage {
    /// `(key, commit_id, doc)` of each visible document, in key order.
    pub items: Vec<(Bytes, CommitId, Bytes)>,
    /// Key to continue from, or `None` when the range is exhausted.
    pub next: Option<Bytes>,
}

/// A version as written into or read from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedVersion {
    /// Collection.
    pub collection: Bytes,
    /// Key.
    pub key: Bytes,
    /// CommitId.
    pub commit_id: CommitId,
    /// Body or tombstone.
    pub doc: Option<Bytes>,
}

impl Store {
    /// An empty store at genesis with full history.
    pub fn new() -> Store {
        Store::with_state(Chains::new(), AppliedState::GENESIS, 0)
    }

    fn with_state(collections: Chains, applied: AppliedState, versions: u64) -> Store {
        Store {
            inner: RwLock::new(Inner { collections, applied, versions }),
            views: Mutex::new(BTreeMap::new()),
            history_horizon: 0,
            applied_signal: Mutex::new(applied.commit_id),
            applied_changed: Condvar::new(),
            observer: std::sync::OnceLock::new(),
        }
    }

    /// What is applied now.
    pub fn applied(&self) -> AppliedState {
        self.inner.read().applied
    }

    /// Number of versions held.
    pub fn version_count(&self) -> u64 {
        self.inner.read().versions
    }

    /// Oldest CommitId whose read view this store answers exactly. Every
    /// version is retained (no garbage collection yet), so this is 0.
    pub fn history_horizon(&self) -> CommitId {
        self.history_horizon
    }

    /// Applies one record: the single apply function every path uses
    /// (CORE-4). Checks that it is the next commit and that the recomputed
    /// state digest equals the one the record carries (REPL-4) before any
    /// version is inserted, then inserts all of them and advances the
    /// applied state under one write lock, so readers see the whole commit
    /// or none of it (MVCC-2).
    pub fn apply(&self, input: ApplyInput<'_>) -> Result<AppliedState, ApplyError> {
        let mut inner = self.inner.write();
        let applied = inner.applied;
        let position = input.position;
        if position.commit_id != applied.commit_id + 1 || position.lsn != applied.end_lsn {
            return Err(ApplyError::NotNext { found: position.commit_id, lsn: position.lsn, applied: applied.commit_id, applied_end_lsn: applied.end_lsn });
        }
        let recomputed = applied.state_digest.after_ops(position.commit_id, input.ops);
        if recomputed != input.state_digest {
            return Err(ApplyError::DigestMismatch { commit_id: position.commit_id, carried: input.state_digest, recomputed });
        }
        for op in input.ops {
            // The op's names are refcounted slices of the record: cloning them allocates nothing.
            let (collection, key, doc) = match op {
                Op::Put { collection, key, doc } => (collection, key, Some(doc.clone())),
                Op::Delete { collection, key } => (collection, key, None),
            };
            let chain = inner.collections.entry(collection.clone()).or_default().entry(key.clone()).or_default();
            chain.push(Version { commit_id: position.commit_id, doc });
        }
        inner.versions += input.ops.len() as u64;
        inner.applied = AppliedState { commit_id: position.commit_id, end_lsn: position.end_lsn, fingerprint: position.fingerprint, state_digest: recomputed };
        let applied = inner.applied;
        drop(inner);
        *self.applied_signal.lock() = applied.commit_id;
        self.applied_changed.notify_all();
        if let Some(observe) = self.observer.get() {
            observe(applied.commit_id);
        }
        Ok(applied)
    }

    /// Installs the applied-CommitId observer (at most one per store) and
    /// calls it once with the current applied CommitId, so the observer
    /// never misses a commit applied before it was installed. Returns the
    /// observer back if one is already installed.
    pub fn set_applied_observer(&self, observer: AppliedObserver) -> Result<(), AppliedObserver> {
        self.observer.set(observer.clone())?;
        observer(self.applied().commit_id);
        Ok(())
    }

    /// Blocks until the applied CommitId reaches `target` or `max_wait`
    /// passes; returns the applied CommitId seen last. Waiting never changes
    /// what a read is admitted to see: callers re-check afterwards.
    pub fn wait_for_commit(&self, target: CommitId, max_wait: std::time::Duration) -> CommitId {
        let mut applied = self.applied_signal.lock();
        if *applied < target {
            let _ = self.applied_changed.wait_while_for(&mut applied, |a| *a < target, max_wait);
        }
        *applied
    }

    /// Opens a read view at `at` (default: the applied CommitId). The view
    /// is fixed for its whole life (MVCC-3).
    pub fn read_view(self: &Arc<Self>, at: Option<CommitId>) -> Result<ReadView, ViewError> {
        let applied = self.applied().commit_id;
        let r = at.unwrap_or(applied);
        if r > applied {
            return Err(ViewError::BeyondApplied { requested: r, applied });
        }
        if r < self.history_horizon {
            return Err(ViewError::BelowHorizon { requested: r, horizon: self.history_horizon });
        }
        *self.views.lock().entry(r).or_insert(0) += 1;
        Ok(ReadView { store: self.clone(), read_upper_bound: r })
    }

    /// Read views currently open: `(R, how many)`, ascending.
    pub fn active_read_views(&self) -> Vec<(CommitId, u64)> {
        self.views.lock().iter().map(|(r, n)| (*r, *n)).collect()
    }

    /// Every version of one key, oldest first (for explanations).
    pub fn version_chain(&self, collection: &[u8], key: &[u8]) -> Vec<Version> {
        let inner = self.inner.read();
        inner.collections.get(collection).and_then(|c| c.get(key)).cloned().unwrap_or_default()
    }

    /// Up to `max` versions with CommitId <= `upto`, in (collection, key,
    /// CommitId) order, starting strictly after `after` (a (collection, key)
    /// pair). Returns the versions and where to resume. Snapshot creation
    /// uses this to stream a cut without holding the lock for long.
    pub fn versions_upto(&self, upto: CommitId, after: Option<&(Bytes, Bytes)>, max_keys: usize) -> (Vec<OwnedVersion>, Option<(Bytes, Bytes)>) {
        let inner = self.inner.read();
        let mut out = Vec::new();
        let mut keys = 0usize;
        let mut last: Option<(Bytes, Bytes)> = None;
        let start_coll = match after {
            Some((c, _)) => Bound::Included(c.clone()),
            None => Bound::Unbounded,
        };
        for (coll, chains) in inner.collections.range((start_coll, Bound::Unbounded)) {
            let key_start = match after {
                Some((c, k)) if c == coll => Bound::Excluded(k.clone()),
                _ => Bound::Unbounded,
            };
            for (key, chain) in chains.range((key_start, Bound::Unbounded)) {
                if keys == max_keys {
                    return (out, last);
                }
                keys += 1;
                for v in chain.iter().take_while(|v| v.commit_id <= upto) {
                    out.push(OwnedVersion { collection: coll.clone(), key: key.clone(), commit_id: v.commit_id, doc: v.doc.clone() });
                }
                last = Some((coll.clone(), key.clone()));
            }
        }
        (out, None)
    }

    /// Builds a store from versions loaded from a snapshot. Versions must
    /// arrive in strictly increasing (collection, key, CommitId) order.
    pub fn builder() -> StoreBuilder {
        StoreBuilder { collections: Chains::new(), digest: StateDigest::EMPTY, versions: 0, last: None }
    }
}

/// Why snapshot versions cannot form a store.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum LoadError {
    /// Versions out of order or duplicated.
    #[error("versions out of order at version #{index}")]
    OutOfOrder {
        /// Index of the offending version.
        index: u64,
    },
    /// A version is newer than the cut.
    #[error("version with CommitId {commit_id} is beyond the cut {cut}")]
    BeyondCut {
        /// The version's CommitId.
        commit_id: CommitId,
        /// The cut.
        cut: CommitId,
    },
    /// The loaded state's digest differs from the promised one (F-S4).
    #[error("loaded state digest {computed} differs from the expected {expected}")]
    DigestMismatch {
        /// Digest promised by the snapshot.
        expected: StateDigest,
        /// Digest of what was loaded.
        computed: StateDigest,
    },
}

/// Accumulates snapshot versions, recomputing the state digest.
pub struct StoreBuilder {
    collections: Chains,
    digest: StateDigest,
    versions: u64,
    last: Option<(Bytes, Bytes, CommitId)>,
}

impl StoreBuilder {
    /// Adds the next version.
    pub fn add(&mut self, v: OwnedVersion) -> Result<(), LoadError> {
        if let Some((c, k, id)) = &self.last {
            let ordered = (c, k, *id) < (&v.collection, &v.key, v.commit_id);
            if !ordered {
                return Err(LoadError::OutOfOrder { index: self.versions });
            }
        }
        self.digest = self.digest.plus_version(aerodb_wal::hash::version_hash_parts(v.commit_id, &v.collection, &v.key, v.doc.as_deref()));
        self.last = Some((v.collection.clone(), v.key.clone(), v.commit_id));
        self.collections.entry(v.collection).or_default().entry(v.key).or_default().push(Version { commit_id: v.commit_id, doc: v.doc });
        self.versions += 1;
        Ok(())
    }

    /// Digest of everything added so far.
    pub fn digest(&self) -> StateDigest {
        self.digest
    }

    /// Finishes the store at the snapshot cut, verifying the digest and
    /// that no version is beyond the cut.
    pub fn finish(self, cut: AppliedState) -> Result<Store, LoadError> {
        if self.digest != cut.state_digest {
            return Err(LoadError::DigestMismatch { expected: cut.state_digest, computed: self.digest });
        }
        for chains in self.collections.values() {
            for chain in chains.values() {
                if let Some(v) = chain.last().filter(|v| v.commit_id > cut.commit_id) {
                    return Err(LoadError::BeyondCut { commit_id: v.commit_id, cut: cut.commit_id });
                }
            }
        }
        Ok(Store::with_state(self.collections, cut, self.versions))
    }
}

/// A pinned read view at `read_upper_bound` (MVCC-1, MVCC-3). Dropping it
/// unregisters it from the store's active views.
pub struct ReadView {
    store: Arc<Store>,
    read_upper_bound: CommitId,
}

impl ReadView {
    /// R: the view sees versions with CommitId <= R.
    pub fn read_upper_bound(&self) -> CommitId {
        self.read_upper_bound
    }

    /// The visible version of a key (MVCC-1): the largest CommitId <= R.
    /// `None` when no version exists at or below R.
    pub fn get(&self, collection: &[u8], key: &[u8]) -> Option<Visible> {
        let inner = self.store.inner.read();
        let chain = inner.collections.get(collection)?.get(key)?;
        visible_in(chain, self.read_upper_bound).map(|v| Visible { commit_id: v.commit_id, doc: v.doc.clone() })
    }

    /// Visible, non-deleted documents with `start <= key < end`, at most
    /// `limit` of them. Every page of a paginated scan using this view sees
    /// the same state (MVCC-3).
    pub fn scan(&self, collection: &[u8], start: Option<&[u8]>, end: Option<&[u8]>, limit: usize) -> ScanPage {
        let inner = self.store.inner.read();
        let mut items = Vec::new();
        let Some(chains) = inner.collections.get(collection) else {
            return ScanPage { items, next: None };
        };
        let lower = start.map_or(Bound::Unbounded, |s| Bound::Included(Bytes::copy_from_slice(s)));
        let upper = end.map_or(Bound::Unbounded, |e| Bound::Excluded(Bytes::copy_from_slice(e)));
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return ScanPage { items, next: None };
            }
        }
        for (key, chain) in chains.range((lower, upper)) {
            let Some(v) = visible_in(chain, self.read_upper_bound) else { continue };
            let Some(doc) = &v.doc else { continue };
            if items.len() == limit {
                return ScanPage { items, next: Some(key.clone()) };
            }
            items.push((key.clone(), v.commit_id, doc.clone()));
        }
        ScanPage { items, next: None }
    }
}

impl Drop for ReadView {
    fn drop(&mut self) {
        let mut views = self.store.views.lock();
        if let Some(n) = views.get_mut(&self.read_upper_bound) {
            *n -= 1;
            if *n == 0 {
                views.remove(&self.read_upper_bound);
            }
        }
    }
}

/// MVCC-1: the version with the largest CommitId <= r.
pub fn visible_in(chain: &[Version], r: CommitId) -> Option<&Version> {
    let idx = chain.partition_point(|v| v.commit_id <= r);
    idx.checked_sub(1).map(|i| &chain[i])
}
