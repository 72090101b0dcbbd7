//! What a replica publishes about itself: a consistent snapshot of its
//! engine ([`ReplicaObserved`]) that the DX API, the read gate and
//! explanations read, and the shared handle the runtime publishes into.
//! The engine is the only writer; everything here is derived from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::halt::{Blocked, Halt};
use crate::ids::{ClusterId, ReplicaId, ReplicaName};
use crate::metadata::{BootstrapBoundary, BootstrapMethod, ReplicaMetadata};
use crate::state::{ReplicaState, StateKind};

pub use crate::positions::{Positions, PrimaryProgress, ProgressTimes};

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

/// Node role states for a replica (REPLICATION.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum NodeState {
    /// No bootstrap has committed.
    Uninitialized,
    /// Bootstrapped and not halted.
    ReplicaActive,
    /// Halted (now or from before a restart).
    ReplicationHalted,
}

impl NodeState {
    /// The exact name.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Uninitialized => "Uninitialized",
            NodeState::ReplicaActive => "ReplicaActive",
            NodeState::ReplicationHalted => "ReplicationHalted",
        }
    }
}

/// A consistent copy of everything observable about a replica.
#[derive(Clone, Debug)]
pub struct ReplicaObserved {
    /// Runtime state with its data (halt, blocking reason, bootstrap progress).
    pub state: ReplicaState,
    /// Successful handshakes since start.
    pub handshakes: u64,
    /// Reconnects since start.
    pub reconnects: u64,
    /// Pipeline positions.
    pub positions: Positions,
    /// Last progress from the primary (None if never).
    pub primary: Option<PrimaryProgress>,
    /// Lag in milliseconds on the primary's clock at the last PROGRESS
    /// (0 when caught up with it; None when unknown). Live while
    /// `Streaming`, last-known otherwise. Observability only (REPL-10).
    pub lag_ms: Option<u64>,
    /// Metadata once bootstrapped.
    pub metadata: Option<ReplicaMetadata>,
    /// This replica's id.
    pub replica_id: ReplicaId,
    /// Its operator-chosen name.
    pub name: Option<ReplicaName>,
    /// Method requested for an empty replica.
    pub bootstrap_method_requested: BootstrapMethod,
    /// The primary address.
    pub primary_addr: String,
    /// The primary's client API address from its last ACCEPT (None until
    /// one arrives, or from a primary that does not send it).
    pub primary_client_addr: Option<std::net::SocketAddr>,
    /// Last recovery report (JSON), if recovery ran.
    pub recovery: Option<Arc<serde_json::Value>>,
    /// Snapshot transfer progress while bootstrapping, or of an
    /// interrupted transfer kept to resume (F-S1).
    pub transfer: Option<crate::state::BootstrapProgress>,
}

impl ReplicaObserved {
    /// The state's name.
    pub fn kind(&self) -> StateKind {
        self.state.kind()
    }
    /// Whether the lag figures are live (streaming: the primary's position
    /// and clock arrive continuously) rather than last-known (issue 14: a
    /// replica whose primary is down never claims a live lag).
    pub fn lag_is_live(&self) -> bool {
        self.state.kind() == StateKind::Streaming && self.primary.is_some()
    }
    /// The halt, if halted.
    pub fn halt(&self) -> Option<&Halt> {
        self.state.halt()
    }
    /// Why progress is blocked without a halt.
    pub fn blocking(&self) -> Option<&Blocked> {
        self.state.blocked()
    }
    /// Cluster id, once bootstrapped.
    pub fn cluster_id(&self) -> Option<&ClusterId> {
        self.metadata.as_ref().map(|m| &m.cluster_id)
    }
    /// The bootstrap boundary, once bootstrapped.
    pub fn bootstrap(&self) -> Option<BootstrapBoundary> {
        self.metadata.as_ref().map(|m| m.bootstrap)
    }
    /// Bootstrap progress.
    pub fn bootstrap_state(&self) -> BootstrapState {
        if self.metadata.is_some() {
            BootstrapState::Complete
        } else if self.state.kind() == StateKind::Bootstrapping || self.transfer.is_some() {
            BootstrapState::InProgress
        } else {
            BootstrapState::NotStarted
        }
    }
    /// The node role state: `Uninitialized` until a bootstrap commits.
    pub fn node_state(&self) -> NodeState {
        if self.halt().is_some() {
            NodeState::ReplicationHalted
        } else if self.metadata.is_some() {
            NodeState::ReplicaActive
        } else {
            NodeState::Uninitialized
        }
    }
}

/// The published status of a running replica: the engine's last observed
/// snapshot, plus C_replica as an atomic so readers and waiters need no lock.
pub struct ReplicaShared {
    observed: RwLock<ReplicaObserved>,
    applied_commit_id: AtomicU64,
}

impl ReplicaShared {
    /// A status starting at `initial`.
    pub fn new(initial: ReplicaObserved) -> Self {
        let applied = initial.positions.applied_commit_id;
        ReplicaShared { observed: RwLock::new(initial), applied_commit_id: AtomicU64::new(applied) }
    }

    /// A copy of the current observations.
    pub fn observe(&self) -> ReplicaObserved {
        self.observed.read().clone()
    }

    /// Reads part of the observations without copying all of it.
    pub fn with<R>(&self, f: impl FnOnce(&ReplicaObserved) -> R) -> R {
        f(&self.observed.read())
    }

    /// Publishes a new snapshot (the runtime, after an engine step).
    pub fn publish(&self, observed: ReplicaObserved) {
        self.applied_commit_id.store(observed.positions.applied_commit_id, Ordering::Release);
        *self.observed.write() = observed;
    }

    /// C_replica as last published.
    pub fn applied_commit_id(&self) -> u64 {
        self.applied_commit_id.load(Ordering::Acquire)
    }
}
