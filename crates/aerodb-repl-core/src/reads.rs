//! Serving a read on a replica: evaluate the gate once, then pin one view
//! at R (RS-5, MVCC-3). A state change after the view is pinned cannot
//! change what the read sees: versions <= R are immutable (F-RS2).

use std::sync::Arc;

use parking_lot::RwLock;

use aerodb_mvcc::{AppliedObserver, ReadView, Store, ViewError};
use aerodb_wal::CommitId;

use crate::gate::{admits, evaluate, GateDecision, GateInputs};
use crate::status::ReplicaShared;

/// Shared handle to a running replica: its published status and (once
/// bootstrapped) its store. Readers take snapshots; only the runtime writes.
pub struct ReplicaHandle {
    /// Status.
    pub shared: Arc<ReplicaShared>,
    store: RwLock<Option<Arc<Store>>>,
    observer: std::sync::OnceLock<AppliedObserver>,
}

/// A refused read: the whole gate decision plus whether the replica is halted.
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
        ReplicaHandle { shared, store: RwLock::new(None), observer: std::sync::OnceLock::new() }
    }
    /// Installs the store (after recovery or bootstrap), with the applied
    /// observer if one was set.
    pub fn set_store(&self, store: Arc<Store>) {
        // Checked under the write lock: an observer set concurrently either
        // is seen here or sees this store (it reads the slot after setting).
        let mut slot = self.store.write();
        if let Some(observer) = self.observer.get() {
            // A store that already has an observer keeps it.
            let _ = store.set_applied_observer(observer.clone());
        }
        *slot = Some(store);
    }
    /// Sets the observer told C_replica after every apply, on the current
    /// store and on every store installed later (the node binary wakes its
    /// waiting reads with it). At most one; returns it back if already set.
    pub fn set_applied_observer(&self, observer: AppliedObserver) -> Result<(), AppliedObserver> {
        self.observer.set(observer.clone())?;
        if let Some(store) = self.store() {
            let _ = store.set_applied_observer(observer);
        }
        Ok(())
    }
    /// The store, if bootstrapped.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.read().clone()
    }

    /// The gate inputs for a read right now.
    pub fn gate_inputs(&self, at: Option<CommitId>, min_commit: Option<CommitId>) -> GateInputs {
        let store = self.store.read().as_ref().map(|s| (s.applied_commit_id(), s.history_horizon()));
        self.shared.with(|o| GateInputs::capture(o, store, at, min_commit))
    }

    /// Evaluates the gate and, if admitted, pins a view at R; RS-5 records
    /// whether the pin held.
    pub fn open_read(&self, at: Option<CommitId>, min_commit: Option<CommitId>) -> Result<ReadView, ReadRefusal> {
        let inputs = self.gate_inputs(at, min_commit);
        // The admitted case decides the same rules without their evidence;
        // anything else is judged again below with every rule explained.
        if let Some(r) = admits(&inputs) {
            if let Some(view) = self.store().and_then(|store| store.read_view(Some(r)).ok()).filter(|v| v.read_upper_bound() == r) {
                return Ok(view);
            }
        }
        let mut decision = evaluate(&inputs);
        let halted = inputs.integrity_failure.is_some();
        if !decision.admitted {
            return Err(ReadRefusal { decision, halted });
        }
        let pinned = match self.store() {
            Some(store) => store.read_view(Some(decision.read_upper_bound)),
            None => {
                decision.pinned(Err("the replica has no store".to_string()));
                return Err(ReadRefusal { decision, halted });
            }
        };
        match pinned {
            Ok(view) => {
                decision.pinned(Ok(view.read_upper_bound()));
                if decision.admitted {
                    Ok(view)
                } else {
                    Err(ReadRefusal { decision, halted })
                }
            }
            // C_replica only grows, but a GC record applied since the gate
            // ran can have moved the horizon past R: judge again with the
            // horizon that refused the view, so the refusal cites RS-4 with
            // its numbers (P5-I12), and RS-5 records the failed pin.
            Err(e @ ViewError::BelowHorizon { .. }) => {
                let mut again = self.gate_inputs(at, min_commit);
                again.requested_at = Some(decision.read_upper_bound);
                again.min_commit = None;
                let mut decision = evaluate(&again);
                decision.pinned(Err(e.to_string()));
                Err(ReadRefusal { decision, halted })
            }
            Err(e) => {
                decision.pinned(Err(e.to_string()));
                Err(ReadRefusal { decision, halted })
            }
        }
    }
}
