//! The primary's reference model: everything the harness knows about what
//! was written and acknowledged, kept across crashes, against which the
//! production store and recovery are checked.
//!
//! - `history`: every record the WAL writer appended in the current
//!   lineage, indexed by CommitId (truncated to what recovery kept after a
//!   crash; unacknowledged commits may legitimately vanish).
//! - `acked`: CommitId → fingerprint of every acknowledged commit, forever
//!   (minus commits whose loss an injected data-damaging fault explains).
//! - `versions`: a plain BTreeMap oracle of every key's versions, giving the
//!   expected answer of a read at any R.
//! - `digests`: the state digest after each commit, computed here from the
//!   write sets (not taken from the writer).

use std::collections::BTreeMap;

use aerodb_wal::hash::version_hash;
use aerodb_wal::record::Op;
use aerodb_wal::{CommitId, Fingerprint, RecordPosition, StateDigest};
use bytes::Bytes;

/// One record the writer appended.
#[derive(Clone, Debug)]
pub struct Written {
    /// Its position and identity.
    pub position: RecordPosition,
}

/// A key's versions: (CommitId, body or tombstone), ascending.
type Chain = Vec<(CommitId, Option<Bytes>)>;

/// The reference model.
#[derive(Default)]
pub struct Model {
    history: Vec<Written>,
    digests: Vec<StateDigest>,
    acked: BTreeMap<CommitId, Fingerprint>,
    versions: BTreeMap<(Bytes, Bytes), Chain>,
    /// Acknowledged commits whose loss injected damage explains.
    pub excused_losses: u64,
}

/// A disagreement between production and the model: rule and evidence.
pub type Mismatch = (&'static str, String);

impl Model {
    /// CommitId of the last written record in the lineage.
    pub fn written(&self) -> CommitId {
        self.history.len() as CommitId
    }

    /// Highest acknowledged CommitId.
    pub fn max_acked(&self) -> CommitId {
        self.acked.keys().next_back().copied().unwrap_or(0)
    }

    /// The written record with CommitId `c`.
    pub fn record(&self, c: CommitId) -> Option<&Written> {
        c.checked_sub(1).and_then(|i| self.history.get(i as usize))
    }

    /// The written record starting at `lsn`.
    pub fn record_at_lsn(&self, lsn: u64) -> Option<&Written> {
        let i = self.history.partition_point(|w| w.position.lsn < lsn);
        self.history.get(i).filter(|w| w.position.lsn == lsn)
    }

    /// Digest after commit `c` (0 = empty).
    pub fn digest(&self, c: CommitId) -> Option<StateDigest> {
        if c == 0 {
            return Some(StateDigest::EMPTY);
        }
        self.digests.get(c as usize - 1).copied()
    }

    /// The writer appended a record: it must be the next CommitId at the
    /// next LSN, must not reuse an acknowledged CommitId, and must carry the
    /// digest the model computes.
    pub fn on_append(&mut self, position: RecordPosition, carried: StateDigest, ops: &[Op]) -> Result<(), Mismatch> {
        let expected = self.written() + 1;
        if let Some(f) = self.acked.get(&position.commit_id) {
            if *f != position.fingerprint {
                return Err((
                    "CORE-5",
                    format!("CommitId {} assigned again (fingerprint {} was acknowledged, now {})", position.commit_id, f, position.fingerprint),
                ));
            }
        }
        if position.commit_id != expected {
            return Err(("REPL-2", format!("the writer assigned CommitId {} after {}", position.commit_id, expected - 1)));
        }
        if let Some(prev) = self.history.last() {
            if position.lsn != prev.position.end_lsn {
                return Err((
                    "REPL-7",
                    format!("record {} starts at LSN {} but {} ended at {}", position.commit_id, position.lsn, prev.position.commit_id, prev.position.end_lsn),
                ));
            }
        }
        let before = self.digest(expected - 1).unwrap_or(StateDigest::EMPTY);
        let digest = ops.iter().fold(before, |d, op| d.plus_version(version_hash(position.commit_id, op)));
        if digest != carried {
            return Err(("REPL-4", format!("record {} carries digest {carried}, the model computes {digest}", position.commit_id)));
        }
        for op in ops {
            let chain = self.versions.entry((Bytes::copy_from_slice(op.collection()), Bytes::copy_from_slice(op.key()))).or_default();
            chain.push((position.commit_id, op.doc().map(Bytes::copy_from_slice)));
        }
        self.history.push(Written { position });
        self.digests.push(digest);
        Ok(())
    }

    /// A commit was acknowledged: it must be the written record at that
    /// CommitId, and no other fingerprint was ever acknowledged for it.
    pub fn on_ack(&mut self, position: RecordPosition) -> Result<(), Mismatch> {
        let c = position.commit_id;
        match self.record(c) {
            Some(w) if w.position == position => {}
            Some(w) => return Err(("CORE-1", format!("acknowledged {position:?} but the writer wrote {:?}", w.position))),
            None => return Err(("CORE-1", format!("acknowledged CommitId {c}, which was never written"))),
        }
        if let Some(prev) = self.acked.insert(c, position.fingerprint) {
            if prev != position.fingerprint {
                return Err(("CORE-5", format!("CommitId {c} acknowledged twice with different fingerprints ({prev} then {})", position.fingerprint)));
            }
        }
        Ok(())
    }

    /// Acknowledged commits above `c` (lost if recovery ended at `c`).
    pub fn acked_above(&self, c: CommitId) -> Vec<CommitId> {
        self.acked.range(c + 1..).map(|(k, _)| *k).collect()
    }

    /// Forgets acknowledged commits above `c` (their loss is explained by
    /// injected damage).
    pub fn excuse_losses_above(&mut self, c: CommitId) {
        let lost = self.acked_above(c);
        self.excused_losses += lost.len() as u64;
        for k in lost {
            self.acked.remove(&k);
        }
    }

    /// Recovery kept the lineage up to `c`: forget the written records
    /// after it (never acknowledged, or excused).
    pub fn truncate(&mut self, c: CommitId) {
        if c >= self.written() {
            return;
        }
        self.history.truncate(c as usize);
        self.digests.truncate(c as usize);
        for chain in self.versions.values_mut() {
            while chain.last().is_some_and(|(id, _)| *id > c) {
                chain.pop();
            }
        }
        self.versions.retain(|_, chain| !chain.is_empty());
    }

    /// The visible version of a key at `r` (MVCC-1): (CommitId, body).
    pub fn visible(&self, collection: &[u8], key: &[u8], r: CommitId) -> Option<(CommitId, Option<Bytes>)> {
        let chain = self.versions.get(&(Bytes::copy_from_slice(collection), Bytes::copy_from_slice(key)))?;
        let i = chain.partition_point(|(id, _)| *id <= r);
        i.checked_sub(1).and_then(|i| chain.get(i)).cloned()
    }

    /// Number of keys ever written in the lineage.
    pub fn key_count(&self) -> usize {
        self.versions.len()
    }

    /// The `i`-th key in (collection, key) order.
    pub fn key_at(&self, i: usize) -> Option<&(Bytes, Bytes)> {
        self.versions.keys().nth(i)
    }

    /// Every key with its chain, in order.
    pub fn chains(&self) -> impl Iterator<Item = (&(Bytes, Bytes), &Chain)> {
        self.versions.iter()
    }
}
