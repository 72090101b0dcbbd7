//! What a replica publishes about itself: one shared, read-mostly view that
//! the DX API, the read gate and explanations take snapshots of. Each field
//! group has one writer (supervisor: state and connection; pipeline:
//! positions) — others only read.

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use aerodb_wal::{CommitId, Lsn};

use crate::halt::HaltReason;
use crate::metadata::{BootstrapBoundary, BootstrapMethod};
use crate::state::{InvalidTransition, ReplicaState, StateMachine};

/// Bootstrap progress as observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BootstrapState {
    /// No bootstrap yet.
    NotStarted,
    /// Transfer or install under way.
    InProgress,
    /// Bootstrap committed.
    Complete,
}

/// Pipeline positions (owned by the pipeline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Positions {
    /// Durable end of received WAL bytes.
    pub received_lsn: Lsn,
    /// End of the validated prefix.
    pub validated_lsn: Lsn,
    /// End of the applied prefix.
    pub applied_lsn: Lsn,
    /// C_replica.
    pub applied_commit_id: CommitId,
}

/// What the primary last told us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrimaryProgress {
    /// C_primary.
    pub commit_id: CommitId,
    /// Primary durable LSN.
    pub durable_lsn: Lsn,
}

/// A consistent copy of everything observable.
#[derive(Clone, Debug, Serialize)]
pub struct ReplicaObserved {
    /// Runtime state.
    pub state: ReplicaState,
    /// Successful handshakes since start.
    pub handshakes: u64,
    /// Reconnects since start.
    pub reconnects: u64,
    /// Pipeline positions.
    pub positions: Positions,
    /// Last progress from the primary (None if never).
    pub primary: Option<PrimaryProgress>,
    /// Bootstrap progress.
    pub bootstrap_state: BootstrapState,
    /// Boundary once bootstrapped.
    pub bootstrap: Option<BootstrapBoundary>,
    /// Method requested for an empty replica.
    pub bootstrap_method_requested: BootstrapMethod,
    /// Persisted halt, if halted.
    pub halt: Option<HaltReason>,
    /// Why progress is blocked without a halt (e.g. WAL_UNAVAILABLE, connection error).
    pub blocking: Option<HaltReason>,
    /// The primary address.
    pub primary_addr: String,
    /// Cluster id (once known).
    pub cluster_id: Option<String>,
    /// Replica id.
    pub replica_id: Option<String>,
    /// Last recovery report (JSON), if recovery ran.
    pub recovery: Option<serde_json::Value>,
}

/// What the read gate reads from the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateFacts {
    /// Runtime state.
    pub state: ReplicaState,
    /// Successful handshakes since start.
    pub handshakes: u64,
    /// Code of the persisted halt, if halted.
    pub halt_code: Option<String>,
    /// Whether a bootstrap has committed (otherwise the node is Uninitialized).
    pub initialised: bool,
}

/// The shared status. Cheap to read.
pub struct ReplicaShared {
    machine: Mutex<StateMachine>,
    observed: RwLock<ReplicaObserved>,
}

impl ReplicaShared {
    /// A fresh status for a replica of `primary_addr`.
    pub fn new(primary_addr: &str, method: BootstrapMethod) -> Self {
        ReplicaShared {
            machine: Mutex::new(StateMachine::new()),
            observed: RwLock::new(ReplicaObserved {
                state: ReplicaState::Initializing,
                handshakes: 0,
                reconnects: 0,
                positions: Positions::default(),
                primary: None,
                bootstrap_state: BootstrapState::NotStarted,
                bootstrap: None,
                bootstrap_method_requested: method,
                halt: None,
                blocking: None,
                primary_addr: primary_addr.to_string(),
                cluster_id: None,
                replica_id: None,
                recovery: None,
            }),
        }
    }

    /// A copy of the current observations.
    pub fn observe(&self) -> ReplicaObserved {
        self.observed.read().clone()
    }

    /// The few facts the read gate needs, without copying the whole status
    /// (this runs on every read).
    pub fn gate_facts(&self) -> GateFacts {
        let o = self.observed.read();
        GateFacts {
            state: o.state,
            handshakes: o.handshakes,
            halt_code: o.halt.as_ref().map(|h| h.code.clone()),
            initialised: o.bootstrap_state == BootstrapState::Complete,
        }
    }

    /// Performs a validated state transition (supervisor only).
    pub fn transition(&self, to: ReplicaState, why: &str) -> Result<(), InvalidTransition> {
        let mut m = self.machine.lock();
        if m.state() == to {
            return Ok(());
        }
        m.transition(to, why)?;
        let mut o = self.observed.write();
        o.state = m.state();
        o.handshakes = m.handshakes();
        o.reconnects = m.reconnects();
        Ok(())
    }

    /// Halts: records the reason and moves to Halted.
    pub fn halt(&self, reason: HaltReason) {
        tracing::error!(code = %reason.code, rule_id = %reason.rule_id, lsn = ?reason.lsn, commit_id = ?reason.commit_id, detail = %reason.detail, "replica halted");
        self.observed.write().halt = Some(reason);
        let _ = self.transition(ReplicaState::Halted, "integrity failure");
    }

    /// Updates any group of fields through a closure (each caller touches
    /// only the fields it owns).
    pub fn update(&self, f: impl FnOnce(&mut ReplicaObserved)) {
        f(&mut self.observed.write());
    }
}
