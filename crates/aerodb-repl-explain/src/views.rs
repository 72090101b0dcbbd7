//! DX views: the `/v1/...` data objects and the response envelope
//! (REPLICATION.md §10). Pure functions of observed state; deterministic
//! field order; no timestamps; only raw numbers and states.

use serde::Serialize;
use serde_json::{json, Value};

use aerodb_mvcc::AppliedState;
use aerodb_repl_core::gate::{evaluate, GateInputs};
use aerodb_repl_core::state::ReplicaState;
use aerodb_repl_core::status::{BootstrapState, ReplicaObserved};
use aerodb_wal::{CommitId, Lsn};

/// `observed_at` of the envelope.
#[derive(Clone, Debug, Serialize)]
pub struct ObservedAt {
    /// Always `live`: views describe the node now.
    pub snapshot: &'static str,
    /// The node's applied CommitId when observed (null if it has no store yet).
    pub commit_id: Option<CommitId>,
}

/// The DX response envelope.
#[derive(Clone, Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    /// `v1`.
    pub api_version: &'static str,
    /// When (in history) this was observed.
    pub observed_at: ObservedAt,
    /// The view.
    pub data: T,
    /// Notes on incomplete parts (F-O1).
    pub notes: Vec<String>,
}

/// Wraps a view in the envelope.
pub fn envelope<T: Serialize>(commit_id: Option<CommitId>, data: T, notes: Vec<String>) -> Envelope<T> {
    Envelope { api_version: "v1", observed_at: ObservedAt { snapshot: "live", commit_id }, data, notes }
}

/// Node role state (exact names from REPLICATION.md §2).
pub fn replica_node_state(o: &ReplicaObserved) -> &'static str {
    if o.halt.is_some() || o.state == ReplicaState::Halted {
        "ReplicationHalted"
    } else {
        "ReplicaActive"
    }
}

fn connection_state(state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Streaming => "connected",
        ReplicaState::Connecting | ReplicaState::Bootstrapping => "connecting",
        _ => "disconnected",
    }
}

/// The gate's verdict for a default read now (R = C_replica).
pub fn default_read_inputs(o: &ReplicaObserved, applied: Option<&AppliedState>, history_horizon: CommitId) -> GateInputs {
    GateInputs {
        replica_active: o.halt.is_none(),
        state: o.state,
        handshakes_since_start: o.handshakes,
        integrity_failure: o.halt.as_ref().map(|h| h.code.clone()),
        replica_commit_id: applied.map_or(0, |a| a.commit_id),
        history_horizon,
        requested_at: None,
        min_commit: None,
    }
}

/// `/v1/replication` on a replica.
pub fn replica_replication(o: &ReplicaObserved, applied: Option<&AppliedState>, history_horizon: CommitId) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let c_replica = applied.map(|a| a.commit_id);
    let applied_lsn: Lsn = o.positions.applied_lsn;
    if applied.is_none() {
        notes.push("no local state yet (not bootstrapped or halted before recovery): replica_commit_id and LSNs are unknown".to_string());
    }
    if o.primary.is_none() {
        notes.push("the primary has not reported its position since this process started: primary_commit_id and lag are unknown".to_string());
    }
    let lag = match (o.primary, c_replica) {
        (Some(p), Some(c)) => json!({"commits": p.commit_id.saturating_sub(c), "bytes": p.durable_lsn.saturating_sub(applied_lsn)}),
        _ => json!({"commits": null, "bytes": null}),
    };
    let gate = evaluate(&default_read_inputs(o, applied, history_horizon));
    let blocking = o.halt.as_ref().or(o.blocking.as_ref()).map(|h| json!({"code": h.code, "rule_id": h.rule_id, "detail": h.detail, "lsn": h.lsn, "commit_id": h.commit_id}));
    let bootstrap_state = match o.bootstrap_state {
        BootstrapState::NotStarted => "not_started",
        BootstrapState::InProgress => "in_progress",
        BootstrapState::Complete => "complete",
    };
    let known = applied.is_some();
    let data = json!({
        "role": "replica",
        "node_state": replica_node_state(o),
        "replica_state": o.state.name(),
        "replica_commit_id": c_replica,
        "primary_commit_id": o.primary.map(|p| p.commit_id),
        "primary_durable_lsn": o.primary.map(|p| p.durable_lsn),
        "wal_received_lsn": known.then_some(o.positions.received_lsn),
        "wal_validated_lsn": known.then_some(o.positions.validated_lsn),
        "wal_applied_lsn": known.then_some(applied_lsn),
        "state_digest": applied.map(|a| a.state_digest.to_string()),
        "snapshot_bootstrap": {
            "state": bootstrap_state,
            "method": o.bootstrap.map(|b| b.method).unwrap_or(o.bootstrap_method_requested),
            "boundary_commit_id": o.bootstrap.map(|b| b.boundary_commit_id),
            "boundary_lsn": o.bootstrap.map(|b| b.boundary_lsn),
        },
        "history_horizon": history_horizon,
        "read_safety": if gate.admitted { "safe" } else { "unsafe" },
        "blocking_reason": blocking,
        "lag": lag,
        "connection": {
            "state": connection_state(o.state),
            "primary": o.primary_addr,
            "reconnects": o.reconnects,
            "handshakes": o.handshakes,
        },
        "cluster_id": o.cluster_id,
        "replica_id": o.replica_id,
    });
    (data, notes)
}
