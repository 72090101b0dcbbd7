//! The primary's reference model: everything the harness knows about what
//! was written and acknowledged, kept across crashes, against which the
//! production store, recovery and every replica are checked.
//!
//! - `history`: every record the WAL writer appended in the current
//!   lineage (commits and GC records), indexed by CommitId (truncated to
//!   what recovery kept after a crash; unacknowledged commits may
//!   legitimately vanish).
//! - `stream`: the bytes of those records in LSN order, encoded here with
//!   the production encoder from the model's own inputs (not read back
//!   from the primary's disk): the reference every replica's WAL must be a
//!   byte prefix of (REPL-3).
//! - `acked`: CommitId → fingerprint of every acknowledged commit, forever
//!   (minus commits whose loss an injected data-damaging fault explains).
//! - `versions`: a plain BTreeMap oracle of every key's versions, giving the
//!   expected answer of a read at any R at or above the history horizon.
//! - `digests`: the state digest after each record, computed here from the
//!   write sets and, for a GC record, by subtracting the versions no read
//!   view at or above its horizon can see (MVCC-4), found from the chains
//!   (not taken from the writer or the store).

use std::collections::BTreeMap;

use aerodb_wal::hash::{version_hash, version_hash_parts};
use aerodb_wal::record::{encode_gc_record, encode_record, Op};
use aerodb_wal::{CommitId, Fingerprint, Lsn, RecordPosition, StateDigest, GENESIS_FINGERPRINT};
use bytes::Bytes;

/// What a written record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrittenKind {
    /// A write set.
    Commit,
    /// A GC step stating this history horizon.
    Gc {
        /// The horizon H.
        horizon: CommitId,
    },
}

/// One record the writer appended.
#[derive(Clone, Debug)]
pub struct Written {
    /// Its position and identity.
    pub position: RecordPosition,
    /// Commit or GC.
    pub kind: WrittenKind,
}

/// A key's versions: (CommitId, body or tombstone), ascending.
type Chain = Vec<(CommitId, Option<Bytes>)>;

/// The reference model.
#[derive(Default)]
pub struct Model {
    history: Vec<Written>,
    digests: Vec<StateDigest>,
    /// History horizon after each record.
    horizons: Vec<CommitId>,
    /// Record bytes in LSN order from LSN 0.
    stream: Vec<u8>,
    acked: BTreeMap<CommitId, Fingerprint>,
    versions: BTreeMap<(Bytes, Bytes), Chain>,
    /// Per CommitId R: the summed hashes of the versions that become
    /// removable once the horizon reaches R (no view at or above R can see
    /// them: shadowed by a newer version with CommitId R, or a tombstone
    /// written at R).
    removable: BTreeMap<CommitId, u128>,
    /// Acknowledged commits whose loss injected damage explains.
    pub excused_losses: u64,
    /// Lowest LSN from which durable history was ever cut by an excused
    /// loss: a replica may legitimately hold other bytes from there on
    /// (it then halts, and the primary is fenced, REPL-11).
    rewritten_from: Option<Lsn>,
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

    /// Digest after record `c` (0 = empty).
    pub fn digest(&self, c: CommitId) -> Option<StateDigest> {
        if c == 0 {
            return Some(StateDigest::EMPTY);
        }
        self.digests.get(c as usize - 1).copied()
    }

    /// History horizon after record `c`.
    pub fn horizon(&self, c: CommitId) -> Option<CommitId> {
        if c == 0 {
            return Some(0);
        }
        self.horizons.get(c as usize - 1).copied()
    }

    /// End of the written stream.
    pub fn end_lsn(&self) -> Lsn {
        self.stream.len() as Lsn
    }

    /// The primary's WAL bytes `[from, from + len)`, as far as written.
    pub fn bytes(&self, from: Lsn, len: usize) -> &[u8] {
        let start = (from as usize).min(self.stream.len());
        let end = start.saturating_add(len).min(self.stream.len());
        &self.stream[start..end]
    }

    /// From which LSN a replica may legitimately hold other bytes (durable
    /// history the primary lost to injected damage), if ever.
    pub fn rewritten_from(&self) -> Option<Lsn> {
        self.rewritten_from
    }

    fn check_next(&self, position: RecordPosition) -> Result<(), Mismatch> {
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
        if position.lsn != self.end_lsn() {
            return Err((
                "REPL-7",
                format!("record {} starts at LSN {} but the previous record ended at {}", position.commit_id, position.lsn, self.end_lsn()),
            ));
        }
        Ok(())
    }

    fn previous_fingerprint(&self) -> Fingerprint {
        self.history.last().map_or(GENESIS_FINGERPRINT, |w| w.position.fingerprint)
    }

    /// Appends the record's bytes as the model encodes them; the writer's
    /// must have the same length and fingerprint.
    fn push(
        &mut self,
        position: RecordPosition,
        kind: WrittenKind,
        digest: StateDigest,
        horizon: CommitId,
        encoded: (Vec<u8>, Fingerprint),
    ) -> Result<(), Mismatch> {
        let (bytes, fingerprint) = encoded;
        if fingerprint != position.fingerprint || bytes.len() as u64 != position.end_lsn - position.lsn {
            return Err((
                "REPL-4",
                format!(
                    "record {} was written with fingerprint {} and {} bytes; the model encodes fingerprint {fingerprint} and {} bytes",
                    position.commit_id,
                    position.fingerprint,
                    position.end_lsn - position.lsn,
                    bytes.len()
                ),
            ));
        }
        self.stream.extend_from_slice(&bytes);
        self.history.push(Written { position, kind });
        self.digests.push(digest);
        self.horizons.push(horizon);
        Ok(())
    }

    /// The writer appended a commit: it must be the next CommitId at the
    /// next LSN, must not reuse an acknowledged CommitId, and must carry the
    /// digest the model computes.
    pub fn on_append(&mut self, position: RecordPosition, carried: StateDigest, ops: &[Op]) -> Result<(), Mismatch> {
        self.check_next(position)?;
        let before = self.digest(self.written()).unwrap_or(StateDigest::EMPTY);
        let digest = ops.iter().fold(before, |d, op| d.plus_version(version_hash(position.commit_id, op)));
        if digest != carried {
            return Err(("REPL-4", format!("record {} carries digest {carried}, the model computes {digest}", position.commit_id)));
        }
        let encoded = encode_record(position.commit_id, digest, self.previous_fingerprint(), ops).map_err(|e| ("REPL-4", e.to_string()))?;
        let horizon = self.horizon(self.written()).unwrap_or(0);
        self.push(position, WrittenKind::Commit, digest, horizon, encoded)?;
        let c = position.commit_id;
        for op in ops {
            let (coll, key) = (op.collection(), op.key());
            let chain = self.versions.entry((Bytes::copy_from_slice(coll), Bytes::copy_from_slice(key))).or_default();
            let mut removable = 0u128;
            // The version this one shadows becomes removable at C.
            if let Some((prev, Some(doc))) = chain.last() {
                removable = removable.wrapping_add(version_hash_parts(*prev, coll, key, Some(doc)));
            }
            // A tombstone is removable from its own CommitId on.
            if op.doc().is_none() {
                removable = removable.wrapping_add(version_hash_parts(c, coll, key, None));
            }
            chain.push((c, op.doc().map(Bytes::copy_from_slice)));
            let slot = self.removable.entry(c).or_insert(0);
            *slot = slot.wrapping_add(removable);
        }
        Ok(())
    }

    /// The writer appended a GC record: continuity as for a commit, a
    /// horizon that never moves back and stays below its own CommitId, and
    /// the digest of the state minus exactly the versions the new horizon
    /// makes removable.
    pub fn on_gc(&mut self, position: RecordPosition, carried: StateDigest, horizon: CommitId) -> Result<(), Mismatch> {
        self.check_next(position)?;
        let previous = self.horizon(self.written()).unwrap_or(0);
        if horizon < previous || horizon >= position.commit_id {
            return Err(("MVCC-4", format!("GC record {} states horizon {horizon} after horizon {previous}", position.commit_id)));
        }
        // MVCC-4: exactly the versions no view at R >= H can see, that no
        // earlier GC record removed already.
        let removed = self.removable.range(previous + 1..=horizon).fold(0u128, |sum, (_, h)| sum.wrapping_add(*h));
        let before = self.digest(self.written()).unwrap_or(StateDigest::EMPTY);
        let digest = before.minus_hashes(removed);
        if digest != carried {
            return Err(("MVCC-4", format!("GC record {} (horizon {horizon}) carries digest {carried}, the model computes {digest}", position.commit_id)));
        }
        let encoded = encode_gc_record(position.commit_id, digest, self.previous_fingerprint(), horizon).map_err(|e| ("MVCC-4", e.to_string()))?;
        self.push(position, WrittenKind::Gc { horizon }, digest, horizon, encoded)
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
    /// injected damage); replicas may hold them and prove the loss.
    pub fn excuse_losses_above(&mut self, c: CommitId) {
        let lost = self.acked_above(c);
        self.excused_losses += lost.len() as u64;
        for k in lost {
            self.acked.remove(&k);
        }
        if let Some(w) = self.record(c + 1) {
            let from = w.position.lsn;
            self.rewritten_from = Some(self.rewritten_from.map_or(from, |r| r.min(from)));
        }
    }

    /// Recovery kept the lineage up to `c`: forget the written records
    /// after it (never acknowledged, or excused).
    pub fn truncate(&mut self, c: CommitId) {
        if c >= self.written() {
            return;
        }
        let end = self.record(c).map_or(0, |w| w.position.end_lsn);
        self.stream.truncate(end as usize);
        self.history.truncate(c as usize);
        self.digests.truncate(c as usize);
        self.horizons.truncate(c as usize);
        // Versions shadowed by a forgotten commit are no longer removable.
        self.removable.split_off(&(c + 1));
        for chain in self.versions.values_mut() {
            while chain.last().is_some_and(|(id, _)| *id > c) {
                chain.pop();
            }
        }
        self.versions.retain(|_, chain| !chain.is_empty());
    }

    /// The visible version of a key at `r` (MVCC-1): (CommitId, body), on
    /// a node whose history horizon is `horizon` (`r >= horizon`). A
    /// tombstone at or below the horizon reads as "no version": GC removes
    /// those, and both mean "not found".
    pub fn visible(&self, collection: &[u8], key: &[u8], r: CommitId, horizon: CommitId) -> Option<(CommitId, Option<Bytes>)> {
        let chain = self.versions.get(&(Bytes::copy_from_slice(collection), Bytes::copy_from_slice(key)))?;
        let i = chain.partition_point(|(id, _)| *id <= r);
        i.checked_sub(1).and_then(|i| chain.get(i)).filter(|(c, doc)| doc.is_some() || *c > horizon).cloned()
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
