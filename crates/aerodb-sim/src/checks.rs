//! Cross-node invariants, checked after every event against the primary's
//! reference model ([`crate::model::Model`]: what the primary wrote):
//!
//! - **REPL-3 / P5-I4** every replica's WAL bytes from its bootstrap LSN to
//!   its validated (and durable) LSN equal the primary's at the same LSNs,
//!   checked incrementally as they arrive (mismatches are excused only
//!   where an injected fault explains them: damage on the replica's disk,
//!   or durable history the primary itself lost to damage);
//! - **REPL-4** equal state digests (and horizons, fingerprints and end
//!   LSNs) at equal CommitIds on every node;
//! - **REPL-6 / RS-3** a real read through the replica's gate
//!   ([`aerodb_repl_core::reads::ReplicaHandle::open_read`]) at a random R
//!   and/or `min_commit`: an admitted read answers exactly what the
//!   primary's history answers at that view, and its replica has applied
//!   `min_commit`;
//! - **F-N1 (liveness)** at the end of the run (the heal phase ended, the
//!   clients stopped writing `quiet_ms` before it), every running,
//!   non-halted replica has applied exactly the primary's durable
//!   CommitId.

use std::collections::BTreeMap;

use aerodb_repl_core::state::StateKind;
use aerodb_wal::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::Lsn;

use crate::net::NodeId;
use crate::primary::PrimaryNode;
use crate::replica::ReplicaNode;
use crate::rng::{stream, SimRng};
use crate::time::SimTime;
use crate::world::{NodeView, Violation, WorldCheck};

/// The cross-node checks of a primary (node 0) and its replicas.
pub struct ReplicationChecks {
    rng: SimRng,
    /// Per replica: (its WAL generation, the LSN checked up to).
    checked: BTreeMap<NodeId, (u64, Lsn)>,
    reads: u64,
    /// Outcome counters (reported through the run's outcomes).
    pub counts: BTreeMap<&'static str, u64>,
}

impl ReplicationChecks {
    /// Checks drawing their random choices from `seed`'s checks stream.
    pub fn new(seed: u64) -> Self {
        ReplicationChecks { rng: SimRng::new(seed, stream::CHECKS), checked: BTreeMap::new(), reads: 0, counts: BTreeMap::new() }
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_insert(0) += 1;
    }

    /// REPL-3: the replica's new durable WAL bytes equal the primary's.
    fn prefix(&mut self, now: SimTime, view: &NodeView<'_>, replica: &ReplicaNode, primary: &PrimaryNode, out: &mut Vec<Violation>) {
        let (Some((dir, segments, boundary)), Some(p)) = (replica.wal(), replica.positions()) else { return };
        let generation = replica.generation();
        let entry = self.checked.entry(view.id).or_insert((generation, boundary));
        if entry.0 != generation {
            *entry = (generation, boundary);
        }
        // Received bytes of a record still incomplete are not validated
        // yet (the receiver checks only framing and LSN order, §5): the
        // validator halts on them or the reconnect drops them. The prefix
        // rule holds for what the replica validated.
        let from = entry.1.max(boundary).min(p.validated_lsn);
        let to = p.validated_lsn;
        entry.1 = to;
        if from >= to {
            return;
        }
        let model = primary.model();
        for seg in segments.iter().filter(|s| s.header.start_lsn < to && s.end_lsn > from) {
            let a = from.max(seg.header.start_lsn);
            let b = to.min(seg.end_lsn);
            let path = dir.join(segment_file_name(seg.header.start_lsn));
            let offset = SEGMENT_HEADER_LEN + (a - seg.header.start_lsn);
            let held = view.disk.current_range(&path, offset, (b - a) as usize).unwrap_or_default();
            let want = model.bytes(a, (b - a) as usize);
            let Some(i) = held.iter().zip(want).position(|(x, y)| x != y).or_else(|| (held.len() != want.len()).then(|| held.len().min(want.len()))) else {
                continue;
            };
            let lsn = a + i as u64;
            let damaged = view.disk.damage_at(&path).iter().any(|d| d.start <= offset + i as u64 && offset + (i as u64) < d.end);
            let rewritten = model.rewritten_from().is_some_and(|r| r <= lsn);
            if damaged || rewritten {
                self.count(if damaged { "prefix_mismatch_replica_damage" } else { "prefix_mismatch_primary_lost_history" });
                return;
            }
            out.push(Violation {
                at_ms: now.ms(),
                node: view.id,
                rule: "REPL-3",
                what: format!(
                    "replica {} holds byte {:?} at LSN {lsn} (segment {}, validated up to {to}), the primary wrote {:?} there (its WAL ends at {})",
                    view.id,
                    held.get(i),
                    seg.header.start_lsn,
                    want.get(i),
                    model.end_lsn()
                ),
            });
            return;
        }
    }

    /// REPL-4: the replica's applied state is the primary's at that CommitId.
    fn digest(&mut self, now: SimTime, view: &NodeView<'_>, replica: &ReplicaNode, primary: &PrimaryNode, out: &mut Vec<Violation>) {
        let Some(store) = replica.store() else { return };
        let applied = store.applied();
        let c = applied.commit_id;
        let model = primary.model();
        if model.rewritten_from().is_some_and(|r| r < applied.end_lsn) {
            return;
        }
        let fail = |what: String| Violation { at_ms: now.ms(), node: view.id, rule: "REPL-4", what };
        if c > 0 {
            match model.record(c) {
                Some(w) if w.position.end_lsn == applied.end_lsn && w.position.fingerprint == applied.fingerprint => {}
                other => {
                    out.push(fail(format!(
                        "replica {} applied CommitId {c} ending at LSN {} fingerprint {}, the primary wrote {:?}",
                        view.id,
                        applied.end_lsn,
                        applied.fingerprint,
                        other.map(|w| w.position)
                    )));
                    return;
                }
            }
        }
        if model.digest(c) != Some(applied.state_digest) {
            out.push(fail(format!("replica {} has digest {} at CommitId {c}, the primary's is {:?}", view.id, applied.state_digest, model.digest(c))));
            return;
        }
        if model.horizon(c) != Some(store.history_horizon()) {
            out.push(Violation {
                at_ms: now.ms(),
                node: view.id,
                rule: "MVCC-4",
                what: format!("replica {} has history horizon {} at CommitId {c}, the primary's is {:?}", view.id, store.history_horizon(), model.horizon(c)),
            });
        }
    }

    /// REPL-6: one real read through the replica's gate.
    fn read(&mut self, now: SimTime, view: &NodeView<'_>, replica: &ReplicaNode, primary: &PrimaryNode, out: &mut Vec<Violation>) {
        let Some(handle) = replica.handle() else { return };
        let model = primary.model();
        let top = model.written();
        let r = self.rng.range(0, top);
        let n = self.rng.range(0, top);
        let (at, min_commit) = match self.rng.below(4) {
            0 => (None, None),
            1 => (Some(r), None),
            2 => (None, Some(n)),
            _ => (Some(r), Some(n)),
        };
        let fail = |rule: &'static str, what: String| Violation { at_ms: now.ms(), node: view.id, rule, what };
        let view_r = match handle.open_read(at, min_commit) {
            Ok(v) => v,
            Err(refusal) => {
                self.count(if refusal.halted { "replica_reads_refused_halted" } else { "replica_reads_refused" });
                return;
            }
        };
        self.count("replica_reads_admitted");
        self.reads += 1;
        let r = view_r.read_upper_bound();
        let Some(store) = handle.store() else { return };
        let applied = store.applied().commit_id;
        if replica.state_kind() == Some(StateKind::Halted) {
            out.push(fail("RS-1", format!("replica {} admitted a read at R={r} while halted", view.id)));
            return;
        }
        if let Some(n) = min_commit {
            if applied < n || (at.is_none() && r < n) {
                out.push(fail(
                    "RS-3",
                    format!("replica {} admitted a read (at {at:?}, min_commit {n}) at R={r} with only CommitId {applied} applied", view.id),
                ));
                return;
            }
        }
        if model.rewritten_from().is_some_and(|from| model.record(r).is_none_or(|w| w.position.end_lsn > from)) {
            return;
        }
        let horizon = store.history_horizon();
        let keys: Vec<_> = if self.reads.is_multiple_of(32) {
            model.chains().map(|(k, _)| k.clone()).collect()
        } else {
            let count = model.key_count() as u64;
            if count == 0 {
                return;
            }
            model.key_at(self.rng.below(count) as usize).cloned().into_iter().collect()
        };
        for (coll, key) in keys {
            let got = view_r.get(&coll, &key).map(|v| (v.commit_id, v.doc));
            let want = model.visible(&coll, &key, r, horizon);
            if got != want {
                out.push(fail(
                    "REPL-6",
                    format!(
                        "replica {} read {coll:?}/{key:?} at R={r} (at {at:?}, min_commit {min_commit:?}): {got:?}; the primary's history says {want:?}",
                        view.id
                    ),
                ));
                return;
            }
        }
    }
}

impl WorldCheck for ReplicationChecks {
    fn check(&mut self, now: SimTime, nodes: &[NodeView<'_>], out: &mut Vec<Violation>) {
        let Some(primary) = nodes.first().and_then(|v| v.node.as_any().downcast_ref::<PrimaryNode>()) else { return };
        for view in nodes.iter().skip(1).filter(|v| v.running) {
            let Some(replica) = view.node.as_any().downcast_ref::<ReplicaNode>() else { continue };
            self.prefix(now, view, replica, primary, out);
            self.digest(now, view, replica, primary, out);
            if !out.is_empty() {
                return;
            }
        }
        let running: Vec<&NodeView<'_>> = nodes.iter().skip(1).filter(|v| v.running).collect();
        if running.is_empty() {
            return;
        }
        let view = running[self.rng.below(running.len() as u64) as usize];
        if let Some(replica) = view.node.as_any().downcast_ref::<ReplicaNode>() {
            self.read(now, view, replica, primary, out);
        }
    }

    fn outcomes(&self) -> BTreeMap<&'static str, u64> {
        self.counts.clone()
    }

    fn check_liveness(&mut self, now: SimTime, nodes: &[NodeView<'_>], out: &mut Vec<Violation>) {
        let Some(pv) = nodes.first() else { return };
        let Some(primary) = pv.node.as_any().downcast_ref::<PrimaryNode>() else { return };
        let Some(target) = primary.durable().filter(|_| pv.running) else {
            self.count("liveness_skipped_primary_down");
            return;
        };
        for view in nodes.iter().skip(1).filter(|v| v.running) {
            let Some(replica) = view.node.as_any().downcast_ref::<ReplicaNode>() else { continue };
            if replica.state_kind() == Some(StateKind::Halted) {
                self.count("replicas_halted_at_end");
                continue;
            }
            let applied = replica.store().map_or(0, |s| s.applied().commit_id);
            if applied == target.commit_id {
                self.count("replicas_caught_up");
                continue;
            }
            if pv.disk.ever_damaged() {
                // The primary may be unable to read what this replica needs.
                self.count("replicas_behind_a_damaged_primary");
                continue;
            }
            out.push(Violation {
                at_ms: now.ms(),
                node: view.id,
                rule: "F-N1",
                what: format!(
                    "replica {} applied CommitId {applied}, the primary's durable CommitId is {} at the end of the heal phase (its state: {})",
                    view.id,
                    target.commit_id,
                    replica.describe()
                ),
            });
        }
    }
}
