//! Version chains, read views and the one apply function (CORE-4).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::record::{Op, Record, RecordBody};
use aerodb_wal::{CommitId, Fingerprint, Lsn, RecordPosition, StateDigest, GENESIS_FINGERPRINT};
use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use thiserror::Error;

use crate::chain::{Chain, Name, Stored};
use crate::gc::{path_names, retained, retained_versions, Candidate, GcQueue};
use crate::keys::KeyIndex;

/// One version of a document: the commit that created it and its body,
/// or `None` for a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// CommitId that created this version.
    pub commit_id: CommitId,
    /// Full document body (canonical JSON), or `None` for a delete.
    pub doc: Option<Bytes>,
}

/// What the visibility and retention rules need of a version (implemented
/// by [`Version`] and by the store's internal form of it).
pub trait ChainEntry {
    /// CommitId that created the version.
    fn commit_id(&self) -> CommitId;
    /// Whether the version is a delete.
    fn is_tombstone(&self) -> bool;
}

impl ChainEntry for Version {
    fn commit_id(&self) -> CommitId {
        self.commit_id
    }
    fn is_tombstone(&self) -> bool {
        self.doc.is_none()
    }
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
    /// What the record does: a write set or a GC step.
    pub body: &'a RecordBody,
}

impl<'a> ApplyInput<'a> {
    /// The input for a decoded record at `position`.
    pub fn of_record(position: RecordPosition, record: &'a Record) -> Self {
        ApplyInput { position, state_digest: record.state_digest, body: &record.body }
    }
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
    /// A GC record's horizon moves backwards, or is not below its own
    /// CommitId (MVCC-4): applying it would admit reads whose versions are
    /// gone.
    #[error(
        "GC record {commit_id} states horizon {horizon}, but the horizon is already {current} (it may only move forward and stay below the record's CommitId)"
    )]
    BadHorizon {
        /// The GC record's CommitId.
        commit_id: CommitId,
        /// Horizon it states.
        horizon: CommitId,
        /// The store's horizon before it.
        current: CommitId,
    },
}

impl ApplyError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::NotNext { .. } => "APPLY_OUT_OF_ORDER",
            ApplyError::DigestMismatch { .. } => "APPLY_DIVERGED",
            ApplyError::BadHorizon { .. } => "GC_BAD_HORIZON",
        }
    }
    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        match self {
            ApplyError::NotNext { .. } => "REPL-2",
            ApplyError::DigestMismatch { .. } => "REPL-4",
            ApplyError::BadHorizon { .. } => "MVCC-4",
        }
    }
    /// CommitId of the record that was refused.
    pub fn commit_id(&self) -> CommitId {
        match self {
            ApplyError::NotNext { found, .. } => *found,
            ApplyError::DigestMismatch { commit_id, .. } | ApplyError::BadHorizon { commit_id, .. } => *commit_id,
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

/// Per collection, per key, the key's versions (RES-1: the compact
/// representation of [`crate::chain`]).
type Chains = BTreeMap<Name, KeyIndex>;

/// Called with the new applied CommitId after each apply, once the commit is
/// visible. Lets a server wake its waiting readers with its own runtime's
/// primitives (this crate stays runtime-agnostic). It must be cheap and
/// must not call back into the store's apply path. Calls may arrive out of
/// order under concurrent appliers: keep the maximum.
pub type AppliedObserver = Arc<dyn Fn(CommitId) + Send + Sync>;

struct Inner {
    collections: Chains,
    applied: AppliedState,
    /// Versions retained at the horizon (in the digest).
    versions: u64,
    /// Versions physically held (retained + removed but not yet purged).
    held: u64,
    /// The history horizon (MVCC-4).
    horizon: CommitId,
    /// GC records applied by this store since it was built.
    gc_records: u64,
    gc: GcQueue,
}

/// Open read views and the horizon they are checked against, under one
/// lock so a view is never registered below a horizon that was already
/// applied.
#[derive(Default)]
struct Pins {
    views: BTreeMap<CommitId, u64>,
    horizon: CommitId,
}

impl Pins {
    /// Everything a pinned view or the horizon may still need is removable
    /// only at or below this CommitId.
    fn purge_limit(&self) -> CommitId {
        self.views.keys().next().map_or(self.horizon, |min| (*min).min(self.horizon))
    }
}

/// What garbage collection has done to a store (observability).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcStats {
    /// The history horizon.
    pub history_horizon: CommitId,
    /// Versions retained at the horizon (the ones in the state digest).
    pub versions: u64,
    /// Versions physically held in memory (retained plus removed ones a
    /// pinned read still needs).
    pub versions_held: u64,
    /// Versions removed by GC records but kept for pinned reads (MVCC-5).
    pub versions_awaiting_purge: u64,
    /// Superseded versions queued to be removed by a future GC record.
    pub gc_candidates: u64,
    /// GC records applied since this store was built (recovery included).
    pub gc_records_applied: u64,
}

/// The MVCC store. Versions at or below the applied CommitId are immutable,
/// so a read view at R never sees anything change underneath it (MVCC-3);
/// a GC record removes versions only once no pinned view needs them
/// (MVCC-5).
pub struct Store {
    inner: RwLock<Inner>,
    pins: Mutex<Pins>,
    /// Mirrors `inner.gc.unpurged()` so dropping a view can tell cheaply
    /// whether a purge may be due.
    unpurged: AtomicUsize,
    /// The applied CommitId, published after each apply (batch) for the
    /// hot read path (a read gate and `read_view` without the store lock).
    applied_commit: AtomicU64,
    /// The history horizon, published with it (MVCC-4).
    horizon: AtomicU64,
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

/// A version borrowed from the store or from a snapshot's bytes (no copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VersionRef<'a> {
    /// Collection.
    pub collection: &'a [u8],
    /// Key.
    pub key: &'a [u8],
    /// CommitId.
    pub commit_id: CommitId,
    /// Body or tombstone.
    pub doc: Option<&'a [u8]>,
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
        Store::with_state(Chains::new(), AppliedState::GENESIS, 0, 0, GcQueue::default())
    }

    fn with_state(collections: Chains, applied: AppliedState, versions: u64, horizon: CommitId, gc: GcQueue) -> Store {
        Store {
            inner: RwLock::new(Inner { collections, applied, versions, held: versions, horizon, gc_records: 0, gc }),
            pins: Mutex::new(Pins { views: BTreeMap::new(), horizon }),
            unpurged: AtomicUsize::new(0),
            applied_commit: AtomicU64::new(applied.commit_id),
            horizon: AtomicU64::new(horizon),
            applied_signal: Mutex::new(applied.commit_id),
            applied_changed: Condvar::new(),
            observer: std::sync::OnceLock::new(),
        }
    }

    /// What is applied now.
    pub fn applied(&self) -> AppliedState {
        self.inner.read().applied
    }

    /// Number of versions retained at the history horizon: the versions the
    /// state digest covers (identical on every node at the same CommitId).
    pub fn version_count(&self) -> u64 {
        self.inner.read().versions
    }

    /// Oldest CommitId whose read view this store answers exactly
    /// (MVCC-4): 0 until the first GC record is applied.
    pub fn history_horizon(&self) -> CommitId {
        self.horizon.load(Ordering::Acquire)
    }

    /// Garbage-collection counters (observability).
    pub fn gc_stats(&self) -> GcStats {
        let inner = self.inner.read();
        GcStats {
            history_horizon: inner.horizon,
            versions: inner.versions,
            versions_held: inner.held,
            versions_awaiting_purge: inner.gc.unpurged() as u64,
            gc_candidates: (inner.gc.len() - inner.gc.unpurged()) as u64,
            gc_records_applied: inner.gc_records,
        }
    }

    /// The state digest a GC record stating `horizon` must carry if it is
    /// applied right after the current applied state, or `None` when such a
    /// record would be refused (horizon behind the current one). The
    /// primary's writer uses this to write GC records (MVCC-4); it reads
    /// the queue of candidates only, never the whole store.
    pub fn gc_digest(&self, horizon: CommitId) -> Option<StateDigest> {
        let inner = self.inner.read();
        if horizon < inner.horizon || horizon > inner.applied.commit_id {
            return None;
        }
        let removal = inner.gc.removal_at(horizon);
        Some(inner.applied.state_digest.minus_hashes(removal.hash_sum))
    }

    /// Applies one record: the single apply function every path uses
    /// (CORE-4). Checks that it is the next record and that the recomputed
    /// state digest equals the one the record carries (REPL-4) before
    /// anything changes, then applies it and advances the applied state
    /// under one write lock, so readers see the whole record or none of it
    /// (MVCC-2).
    ///
    /// A commit inserts its versions (copied into right-sized allocations,
    /// so a version never pins a WAL read buffer: RES-1). A GC record
    /// removes exactly the versions no view at or above its horizon can see
    /// and advances the horizon (MVCC-4); removed versions a pinned view
    /// still needs stay in memory until it is dropped (MVCC-5).
    pub fn apply(&self, input: ApplyInput<'_>) -> Result<AppliedState, ApplyError> {
        let mut inner = self.inner.write();
        let applied = self.apply_locked(&mut inner, input)?;
        drop(inner);
        self.applied_published(applied.commit_id);
        Ok(applied)
    }

    /// Applies `inputs` in order under one write lock, each through the
    /// one apply function ([`Store::apply`]'s checks and effects, record by
    /// record), then tells the applied observer and wakes waiters once.
    /// A reader waits for the batch's lock, so it sees each record whole or
    /// not at all (MVCC-2), exactly as with one apply per record.
    /// Stops at the first record that fails: the records before it stay
    /// applied and visible, the failing one and those after it are not
    /// (F-D3). Returns the applied state after the last applied record,
    /// and the failing record's index and error, if any.
    pub fn apply_batch<'a>(&self, inputs: impl IntoIterator<Item = ApplyInput<'a>>) -> (AppliedState, Option<(usize, ApplyError)>) {
        let mut inner = self.inner.write();
        let before = inner.applied;
        let mut failed = None;
        for (index, input) in inputs.into_iter().enumerate() {
            if let Err(e) = self.apply_locked(&mut inner, input) {
                failed = Some((index, e));
                break;
            }
        }
        let applied = inner.applied;
        drop(inner);
        if applied != before {
            self.applied_published(applied.commit_id);
        }
        (applied, failed)
    }

    /// The one apply function (CORE-4), under the write lock: the order
    /// check, the digest check, the record's effects, the purge.
    fn apply_locked(&self, inner: &mut Inner, input: ApplyInput<'_>) -> Result<AppliedState, ApplyError> {
        let applied = inner.applied;
        let position = input.position;
        if position.commit_id != applied.commit_id + 1 || position.lsn != applied.end_lsn {
            return Err(ApplyError::NotNext { found: position.commit_id, lsn: position.lsn, applied: applied.commit_id, applied_end_lsn: applied.end_lsn });
        }
        let applied = match input.body {
            RecordBody::Commit(ops) => inner.apply_commit(position, input.state_digest, ops)?,
            RecordBody::Gc { horizon } => {
                let applied = inner.apply_gc(position, input.state_digest, *horizon)?;
                self.pins.lock().horizon = *horizon;
                self.horizon.store(*horizon, Ordering::Release);
                applied
            }
        };
        self.purge_locked(inner);
        self.applied_commit.store(applied.commit_id, Ordering::Release);
        Ok(applied)
    }

    /// After the write lock is released: wake waiters and tell the observer.
    fn applied_published(&self, commit_id: CommitId) {
        *self.applied_signal.lock() = commit_id;
        self.applied_changed.notify_all();
        if let Some(observe) = self.observer.get() {
            observe(commit_id);
        }
    }

    /// The applied CommitId, without taking the store lock (the hot read
    /// path). Equal to `applied().commit_id` once an apply returned.
    pub fn applied_commit_id(&self) -> CommitId {
        self.applied_commit.load(Ordering::Acquire)
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

    /// Physically removes the versions GC records removed that no pinned
    /// view needs any more. Runs after every apply and when the last view
    /// below the horizon is dropped.
    fn purge_locked(&self, inner: &mut Inner) {
        if inner.gc.unpurged() > 0 {
            let limit = self.pins.lock().purge_limit();
            inner.purge(limit);
            self.unpurged.store(inner.gc.unpurged(), Ordering::Relaxed);
        }
    }

    fn purge(&self) {
        let mut inner = self.inner.write();
        self.purge_locked(&mut inner);
    }

    /// Registers a view at `r` unless `r` is below the horizon.
    fn pin(&self, r: CommitId) -> Result<(), ViewError> {
        let mut pins = self.pins.lock();
        if r < pins.horizon {
            return Err(ViewError::BelowHorizon { requested: r, horizon: pins.horizon });
        }
        *pins.views.entry(r).or_insert(0) += 1;
        Ok(())
    }

    /// Unregisters a view at `r`; purges if it was the last one holding
    /// back removed versions.
    fn unpin(&self, r: CommitId) {
        let held_back = {
            let mut pins = self.pins.lock();
            if let Some(n) = pins.views.get_mut(&r) {
                *n -= 1;
                if *n == 0 {
                    pins.views.remove(&r);
                }
            }
            r < pins.horizon
        };
        if held_back && self.unpurged.load(Ordering::Relaxed) > 0 {
            self.purge();
        }
    }

    /// Pins the current applied state and horizon together for a snapshot
    /// (§7, MVCC-5): until the pin is dropped, no version retained at the
    /// pinned horizon is purged, whatever GC records are applied meanwhile.
    pub fn pin_cut(&self) -> CutPin<'_> {
        let inner = self.inner.read();
        let (cut, horizon) = (inner.applied, inner.horizon);
        // The horizon cannot move while the read lock is held, so this pin is never refused.
        *self.pins.lock().views.entry(horizon).or_insert(0) += 1;
        drop(inner);
        CutPin { store: self, cut, horizon }
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
    /// is fixed for its whole life (MVCC-3), GC records applied meanwhile
    /// included (MVCC-5). A view below the history horizon is refused
    /// (RS-4): the versions it needs may be gone.
    pub fn read_view(self: &Arc<Self>, at: Option<CommitId>) -> Result<ReadView, ViewError> {
        let applied = self.applied_commit_id();
        let r = at.unwrap_or(applied);
        if r > applied {
            return Err(ViewError::BeyondApplied { requested: r, applied });
        }
        self.pin(r)?;
        Ok(ReadView { store: self.clone(), read_upper_bound: r })
    }

    /// Read views currently open: `(R, how many)`, ascending.
    pub fn active_read_views(&self) -> Vec<(CommitId, u64)> {
        self.pins.lock().views.iter().map(|(r, n)| (*r, *n)).collect()
    }

    /// The versions of one key retained at the history horizon, oldest
    /// first (for explanations; never depends on when the purge ran).
    pub fn version_chain(&self, collection: &[u8], key: &[u8]) -> Vec<Version> {
        let inner = self.inner.read();
        let chain = inner.collections.get(collection).and_then(|c| c.get(key)).map_or(&[][..], Chain::as_slice);
        retained_versions(chain, inner.horizon).map(Stored::to_version).collect()
    }

    /// Up to `max_keys` keys' versions with CommitId <= `upto` retained at
    /// the current history horizon, in (collection, key, CommitId) order,
    /// starting strictly after `after` (a (collection, key) pair). Returns
    /// the versions and where to resume.
    pub fn versions_upto(&self, upto: CommitId, after: Option<&(Bytes, Bytes)>, max_keys: usize) -> (Vec<OwnedVersion>, Option<(Bytes, Bytes)>) {
        let horizon = self.inner.read().horizon;
        self.versions_in(upto, horizon, after, max_keys)
    }

    /// [`Store::versions_upto`] for the cut of a [`CutPin`]: the versions
    /// of the pinned state, retained at the pinned horizon. Snapshot
    /// creation streams a cut with this without holding the lock for long.
    pub fn versions_of_cut(&self, pin: &CutPin<'_>, after: Option<&(Bytes, Bytes)>, max_keys: usize) -> (Vec<OwnedVersion>, Option<(Bytes, Bytes)>) {
        self.versions_in(pin.cut.commit_id, pin.horizon, after, max_keys)
    }

    fn versions_in(&self, upto: CommitId, horizon: CommitId, after: Option<&(Bytes, Bytes)>, max_keys: usize) -> (Vec<OwnedVersion>, Option<(Bytes, Bytes)>) {
        let mut out: Vec<OwnedVersion> = Vec::new();
        // One copy of each name, shared by that key's versions.
        let mut names: Option<(Bytes, Bytes)> = None;
        let next = self.visit_in(upto, horizon, after, max_keys, &mut |v| {
            let same_key = names.as_ref().is_some_and(|(c, k)| c[..] == *v.collection && k[..] == *v.key);
            if !same_key {
                let collection = match &names {
                    Some((c, _)) if c[..] == *v.collection => c.clone(),
                    _ => Bytes::copy_from_slice(v.collection),
                };
                names = Some((collection, Bytes::copy_from_slice(v.key)));
            }
            if let Some((collection, key)) = &names {
                out.push(OwnedVersion { collection: collection.clone(), key: key.clone(), commit_id: v.commit_id, doc: v.doc.map(Bytes::copy_from_slice) });
            }
        });
        (out, next)
    }

    /// [`Store::versions_of_cut`] without copying: calls `visit` with each
    /// version of up to `max_keys` keys of the pinned cut, borrowed from
    /// the store under its read lock (so `visit` must be quick and must not
    /// block or call into the store), in (collection, key, CommitId) order
    /// after `after`. Returns where to resume. Snapshot creation encodes
    /// the versions in place with it.
    pub fn visit_cut(
        &self,
        pin: &CutPin<'_>,
        after: Option<&(Bytes, Bytes)>,
        max_keys: usize,
        visit: &mut dyn FnMut(VersionRef<'_>),
    ) -> Option<(Bytes, Bytes)> {
        self.visit_in(pin.cut.commit_id, pin.horizon, after, max_keys, visit)
    }

    fn visit_in(
        &self,
        upto: CommitId,
        horizon: CommitId,
        after: Option<&(Bytes, Bytes)>,
        max_keys: usize,
        visit: &mut dyn FnMut(VersionRef<'_>),
    ) -> Option<(Bytes, Bytes)> {
        let inner = self.inner.read();
        let mut keys = 0usize;
        let mut last: Option<(&Name, &Name)> = None;
        let start_coll = match after {
            Some((c, _)) => Bound::Included(&c[..]),
            None => Bound::Unbounded,
        };
        for (coll, chains) in inner.collections.range::<[u8], _>((start_coll, Bound::Unbounded)) {
            let key_start = match after {
                Some((c, k)) if c[..] == *coll.as_bytes() => Bound::Excluded(&k[..]),
                _ => Bound::Unbounded,
            };
            for (key, chain) in chains.range(key_start, Bound::Unbounded) {
                if keys == max_keys {
                    return last.map(|(c, k)| (Bytes::copy_from_slice(c.as_bytes()), Bytes::copy_from_slice(k.as_bytes())));
                }
                keys += 1;
                let chain = chain.as_slice();
                for (i, v) in chain.iter().enumerate().take_while(|(_, v)| v.commit_id <= upto) {
                    if retained(chain, i, horizon) {
                        visit(VersionRef { collection: coll.as_bytes(), key: key.as_bytes(), commit_id: v.commit_id, doc: v.doc.as_deref() });
                    }
                }
                last = Some((coll, key));
            }
        }
        None
    }

    /// Builds a store from versions loaded from a snapshot. Versions must
    /// arrive in strictly increasing (collection, key, CommitId) order.
    pub fn builder() -> StoreBuilder {
        StoreBuilder { collections: Chains::new(), current: None, digest: StateDigest::EMPTY, versions: 0 }
    }
}

/// A pinned applied state and horizon (see [`Store::pin_cut`]).
pub struct CutPin<'a> {
    store: &'a Store,
    cut: AppliedState,
    horizon: CommitId,
}

impl CutPin<'_> {
    /// The pinned applied state (the snapshot's boundary).
    pub fn cut(&self) -> AppliedState {
        self.cut
    }
    /// The history horizon at that state.
    pub fn horizon(&self) -> CommitId {
        self.horizon
    }
}

impl Drop for CutPin<'_> {
    fn drop(&mut self) {
        self.store.unpin(self.horizon);
    }
}

/// The `skip-digest-check` planted bug (simulator builds only, see
/// `aerodb_wal::plant`): apply stops comparing digests (breaks REPL-4).
fn skip_digest_check() -> bool {
    aerodb_wal::plant::is_active(aerodb_wal::plant::Plant::SkipDigestCheck)
}

impl Inner {
    /// Applies a commit: digest check first, then every version.
    fn apply_commit(&mut self, position: RecordPosition, carried: StateDigest, ops: &[Op]) -> Result<AppliedState, ApplyError> {
        let commit_id = position.commit_id;
        let recomputed = self.applied.state_digest.after_ops(commit_id, ops);
        if recomputed != carried && !skip_digest_check() {
            return Err(ApplyError::DigestMismatch { commit_id, carried, recomputed });
        }
        for op in ops {
            self.insert(commit_id, op);
        }
        self.versions += ops.len() as u64;
        self.held += ops.len() as u64;
        self.applied = AppliedState { commit_id, end_lsn: position.end_lsn, fingerprint: position.fingerprint, state_digest: recomputed };
        Ok(self.applied)
    }

    /// Inserts one version, copying names and body into allocations of
    /// their own (RES-1: a decoded op is a slice of a whole WAL segment or
    /// network chunk), and queues what it makes removable. A key's first
    /// version is held inline (no chain allocation).
    fn insert(&mut self, commit_id: CommitId, op: &Op) {
        let (collection, key) = (op.collection(), op.key());
        let version = Stored::new(commit_id, op.doc());
        let tombstone = version.doc.is_none();
        // One search of the collection map (a hit but for a collection's
        // first version) and one of the key index (two comparisons for a
        // key above every other one).
        let chains = match self.collections.get_mut(collection) {
            Some(chains) => chains,
            None => self.collections.entry(Name::new(collection)).or_default(),
        };
        let gc = &mut self.gc;
        chains.push_version(key, version, |prev| {
            // The version this one shadows becomes removable once the
            // horizon reaches this commit (a tombstone is queued already,
            // at its own).
            if prev.doc.is_some() {
                let hash = version_hash_parts(prev.commit_id, collection, key, prev.doc.as_deref());
                gc.push(Candidate::new(commit_id, collection, key, prev.commit_id, hash));
            }
        });
        if tombstone {
            let hash = version_hash_parts(commit_id, collection, key, None);
            self.gc.push(Candidate::new(commit_id, collection, key, commit_id, hash));
        }
    }

    /// Applies a GC record: removes (logically) every queued candidate
    /// removable at `horizon`, after checking the horizon and the digest.
    fn apply_gc(&mut self, position: RecordPosition, carried: StateDigest, horizon: CommitId) -> Result<AppliedState, ApplyError> {
        let commit_id = position.commit_id;
        if horizon < self.horizon || horizon >= commit_id {
            return Err(ApplyError::BadHorizon { commit_id, horizon, current: self.horizon });
        }
        let removal = self.gc.removal_at(horizon);
        let recomputed = self.applied.state_digest.minus_hashes(removal.hash_sum);
        if recomputed != carried && !skip_digest_check() {
            return Err(ApplyError::DigestMismatch { commit_id, carried, recomputed });
        }
        self.gc.mark_removed(removal.versions);
        self.versions -= removal.versions as u64;
        self.horizon = horizon;
        self.gc_records += 1;
        self.applied = AppliedState { commit_id, end_lsn: position.end_lsn, fingerprint: position.fingerprint, state_digest: recomputed };
        Ok(self.applied)
    }

    /// Physically removes the logically removed versions that are
    /// removable at or below `limit`. Per key they are the oldest versions
    /// of the chain, so each chain loses a prefix.
    fn purge(&mut self, limit: CommitId) {
        let taken = self.gc.take_purgeable(limit);
        if taken.is_empty() {
            return;
        }
        let mut per_key: HashMap<Name, Vec<CommitId>> = HashMap::new();
        for c in taken {
            let (path, commit_id) = c.into_path();
            per_key.entry(path).or_default().push(commit_id);
        }
        for (path, commits) in per_key {
            let (collection, key) = path_names(&path);
            let Some(chains) = self.collections.get_mut(collection) else { continue };
            let Some(chain) = chains.get_mut(key) else { continue };
            let before = chain.as_slice().len();
            let versions = chain.as_slice();
            let prefix = versions.len() >= commits.len() && versions.iter().zip(&commits).all(|(v, c)| v.commit_id == *c);
            let left = if prefix {
                chain.remove_oldest(commits.len())
            } else {
                // Not expected (candidates are queued in chain order); stay exact anyway.
                debug_assert!(false, "GC candidates are not a prefix of their chain");
                chain.remove_commits(&commits)
            };
            let after = if left { chain.as_slice().len() } else { 0 };
            self.held -= (before - after) as u64;
            if !left {
                chains.remove(key);
                if chains.is_empty() {
                    self.collections.remove(collection);
                }
            }
        }
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
    /// The history horizon is not below the cut (MVCC-4).
    #[error("history horizon {horizon} is not below the cut {cut}")]
    HorizonBeyondCut {
        /// The horizon.
        horizon: CommitId,
        /// The cut.
        cut: CommitId,
    },
    /// A version no view at or above the horizon can see: a snapshot holds
    /// only retained versions (MVCC-4).
    #[error("version {collection}/{key}@{commit_id} is not retained at the history horizon {horizon}")]
    NotRetained {
        /// Collection (lossy UTF-8).
        collection: String,
        /// Key (lossy UTF-8).
        key: String,
        /// The version's CommitId.
        commit_id: CommitId,
        /// The horizon.
        horizon: CommitId,
    },
}

/// One collection's chains in key order, as a snapshot delivers them.
type SortedChains = Vec<(Name, Chain)>;

/// Accumulates snapshot versions, recomputing the state digest. Versions
/// arrive sorted, so each collection's keys are collected in order and its
/// map is built in bulk when the next collection starts (no tree insert
/// per version).
pub struct StoreBuilder {
    collections: Chains,
    /// The collection being filled: its name and its chains, in key order.
    current: Option<(Name, SortedChains)>,
    digest: StateDigest,
    versions: u64,
}

impl StoreBuilder {
    /// Adds the next version. Names and body are copied into allocations
    /// of their own (RES-1: decoded versions are slices of a read chunk).
    pub fn add(&mut self, v: OwnedVersion) -> Result<(), LoadError> {
        self.add_ref(VersionRef { collection: &v.collection, key: &v.key, commit_id: v.commit_id, doc: v.doc.as_deref() })
    }

    /// [`StoreBuilder::add`] of a borrowed version (a snapshot loader
    /// decodes versions in place). The previous version is the newest of
    /// the last key of the collection being filled: the order check needs
    /// no copy of its names.
    pub fn add_ref(&mut self, v: VersionRef<'_>) -> Result<(), LoadError> {
        let last = self.current.as_ref().and_then(|(c, chains)| chains.last().map(|(k, chain)| (c, k, chain.newest().commit_id)));
        let (same_collection, same_key) = match last {
            Some((c, k, id)) => {
                if (c.as_bytes(), k.as_bytes(), id) >= (v.collection, v.key, v.commit_id) {
                    return Err(LoadError::OutOfOrder { index: self.versions });
                }
                let same_collection = c.as_bytes() == v.collection;
                (same_collection, same_collection && k.as_bytes() == v.key)
            }
            None => (false, false),
        };
        self.digest = self.digest.plus_version(version_hash_parts(v.commit_id, v.collection, v.key, v.doc));
        let version = Stored::new(v.commit_id, v.doc);
        match &mut self.current {
            Some((_, chains)) if same_key => {
                if let Some((_, chain)) = chains.last_mut() {
                    chain.push(version);
                }
            }
            Some((_, chains)) if same_collection => chains.push((Name::new(v.key), Chain::One(version))),
            _ => {
                self.flush();
                self.current = Some((Name::new(v.collection), vec![(Name::new(v.key), Chain::One(version))]));
            }
        }
        self.versions += 1;
        Ok(())
    }

    /// Builds the filled collection's map (its keys are already sorted),
    /// trimming the chains that hold history to their exact length.
    fn flush(&mut self) {
        if let Some((collection, mut chains)) = self.current.take() {
            for (_, chain) in &mut chains {
                if let Chain::Many(versions) = chain {
                    versions.shrink_to_fit();
                }
            }
            self.collections.insert(collection, KeyIndex::from_sorted(chains));
        }
    }

    /// Digest of everything added so far.
    pub fn digest(&self) -> StateDigest {
        self.digest
    }

    /// Finishes the store at the snapshot cut with full history (horizon
    /// 0), verifying the digest and that no version is beyond the cut.
    pub fn finish(self, cut: AppliedState) -> Result<Store, LoadError> {
        self.finish_at(cut, 0)
    }

    /// Finishes the store at the snapshot cut and history horizon,
    /// verifying the digest, that no version is beyond the cut, and that
    /// every version is retained at the horizon (a snapshot holds nothing
    /// else). Rebuilds the queue of GC candidates from the chains.
    pub fn finish_at(mut self, cut: AppliedState, horizon: CommitId) -> Result<Store, LoadError> {
        self.flush();
        if self.digest != cut.state_digest {
            return Err(LoadError::DigestMismatch { expected: cut.state_digest, computed: self.digest });
        }
        if horizon > 0 && horizon >= cut.commit_id {
            return Err(LoadError::HorizonBeyondCut { horizon, cut: cut.commit_id });
        }
        let mut candidates = Vec::new();
        for (collection, chains) in &self.collections {
            for (key, chain) in chains.iter() {
                let chain = chain.as_slice();
                if let Some(v) = chain.last().filter(|v| v.commit_id > cut.commit_id) {
                    return Err(LoadError::BeyondCut { commit_id: v.commit_id, cut: cut.commit_id });
                }
                for (i, v) in chain.iter().enumerate() {
                    if !retained(chain, i, horizon) {
                        return Err(LoadError::NotRetained {
                            collection: String::from_utf8_lossy(collection.as_bytes()).into_owned(),
                            key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
                            commit_id: v.commit_id,
                            horizon,
                        });
                    }
                    // A tombstone is removable from its own CommitId on, any
                    // other version once the next one exists.
                    let removable_at = match (&v.doc, chain.get(i + 1)) {
                        (None, _) => v.commit_id,
                        (Some(_), Some(next)) => next.commit_id,
                        (Some(_), None) => continue,
                    };
                    let hash = version_hash_parts(v.commit_id, collection.as_bytes(), key.as_bytes(), v.doc.as_deref());
                    candidates.push(Candidate::new(removable_at, collection.as_bytes(), key.as_bytes(), v.commit_id, hash));
                }
            }
        }
        Ok(Store::with_state(self.collections, cut, self.versions, horizon, GcQueue::from_unordered(candidates)))
    }
}

/// A pinned read view at `read_upper_bound` (MVCC-1, MVCC-3, MVCC-5).
/// Dropping it unregisters it from the store's active views.
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
    /// `None` when no version exists at or below R, or when the visible
    /// version is a tombstone at or below the history horizon (GC removes
    /// those, so whether one is still held never shows: both mean "not
    /// found").
    pub fn get(&self, collection: &[u8], key: &[u8]) -> Option<Visible> {
        let inner = self.store.inner.read();
        let chain = inner.collections.get(collection)?.get(key)?;
        visible_in(chain.as_slice(), self.read_upper_bound)
            .filter(|v| v.doc.is_some() || v.commit_id > inner.horizon)
            .map(|v| Visible { commit_id: v.commit_id, doc: v.doc_bytes() })
    }

    /// Visible, non-deleted documents with `start <= key < end`, at most
    /// `limit` of them. Every page of a paginated scan using this view sees
    /// the same state (MVCC-3), GC records applied meanwhile included
    /// (MVCC-5).
    pub fn scan(&self, collection: &[u8], start: Option<&[u8]>, end: Option<&[u8]>, limit: usize) -> ScanPage {
        let inner = self.store.inner.read();
        let mut items = Vec::new();
        let Some(chains) = inner.collections.get(collection) else {
            return ScanPage { items, next: None };
        };
        let lower = start.map_or(Bound::Unbounded, Bound::Included);
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                return ScanPage { items, next: None };
            }
        }
        for (key, chain) in chains.range(lower, upper) {
            let Some(v) = visible_in(chain.as_slice(), self.read_upper_bound) else { continue };
            if v.doc.is_none() {
                continue;
            }
            if items.len() == limit {
                return ScanPage { items, next: Some(Bytes::copy_from_slice(key.as_bytes())) };
            }
            let Some(doc) = v.doc_bytes() else { continue };
            items.push((Bytes::copy_from_slice(key.as_bytes()), v.commit_id, doc));
        }
        ScanPage { items, next: None }
    }
}

impl Drop for ReadView {
    fn drop(&mut self) {
        self.store.unpin(self.read_upper_bound);
    }
}

/// MVCC-1: the version with the largest CommitId <= r.
pub fn visible_in<V: ChainEntry>(chain: &[V], r: CommitId) -> Option<&V> {
    let idx = chain.partition_point(|v| v.commit_id() <= r);
    idx.checked_sub(1).map(|i| &chain[i])
}
