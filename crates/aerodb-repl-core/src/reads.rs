//! Serving a read on a replica: evaluate the gate once, then pin one view
//! at R (RS-5, MVCC-3). A state change after the view is pinned cannot
//! change what the read sees: versions <= R are immutable (F-RS2).

use std::sync::Arc;

use parking_lot::RwLock;

use aerodb_mvcc::{ReadView, Store};
use aerodb_wal::CommitId;

use crate::gate::{evaluate, GateDecision, GateInputs};
use crate::status::ReplicaShared;

/// Shared handle to a running replica: its status and (once bootstrapped)
/// its store. Readers take snapshots; only the supervisor mutates.
pub struct ReplicaHandle {
    /// Status.
    pub shared: Arc<ReplicaShared>,
    store: RwLock<Option<Arc<Store>>>,
}

/// A refused read: the whole gate decision plus the status it was judged on.
#[derive(Debug)]
pub struct ReadRefusal {
    /// The decision (every rule with evidence).
    pub decision: GateDecision,
    /// Whether the replica is halted (answered as REPLICATION_HALTED).
    pub halted: bool,
}

impl ReplicaHandle {
    /// A handle with no store yet.
    pub fn new(shared: Arc<ReplicaShared>) -> Self {
        ReplicaHandle { shared, store: RwLock::new(None) }
    }
    /// Installs the store (after recovery or bootstrap).
    pub fn set_store(&self, store: Arc<Store>) {
        *self.store.write() = Some(store);
    }
    /// The store, if bootstrapped.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.read().clone()
    }

    /// The gate inputs for a read right now.
    pub fn gate_inputs(&self, at: Option<CommitId>, min_commit: Option<CommitId>) -> GateInputs {
        let facts = self.shared.gate_facts();
        let store = self.store();
        GateInputs {
            replica_active: facts.halt_code.is_none() && facts.initialised,
            state: facts.state,
            handshakes_since_start: facts.handshakes,
            integrity_failure: facts.halt_code,
            replica_commit_id: store.as_ref().map_or(0, |s| s.applied().commit_id),
            history_horizon: store.as_ref().map_or(0, |s| s.history_horizon()),
            requested_at: at,
            min_commit,
        }
    }

    /// Evaluates the gate and, if admitted, pins a view at R.
    pub fn open_read(&self, at: Option<CommitId>, min_commit: Option<CommitId>) -> Result<ReadView, ReadRefusal> {
        let inputs = self.gate_inputs(at, min_commit);
        let decision = evaluate(&inputs);
        let halted = inputs.integrity_failure.is_some();
        if !decision.admitted {
            return Err(ReadRefusal { decision, halted });
        }
        let Some(store) = self.store() else { return Err(ReadRefusal { decision, halted }) };
        match store.read_view(Some(decision.read_upper_bound)) {
            Ok(view) => Ok(view),
            // C_replica only grows, but a GC record applied since the gate
            // ran can have moved the horizon past R: judge again with the
            // horizon that refused the view, so the refusal cites RS-4 with
            // its numbers (P5-I12).
            Err(_) => {
                let mut again = self.gate_inputs(at, min_commit);
                again.requested_at = Some(decision.read_upper_bound);
                again.min_commit = None;
                Err(ReadRefusal { decision: evaluate(&again), halted })
            }
        }
    }
}
