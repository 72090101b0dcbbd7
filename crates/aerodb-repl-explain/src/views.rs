//! DX views: the `/v1/...` data objects and the response envelope
//! (REPLICATION.md §10). Pure functions of observed state; deterministic
//! field order; no timestamps; only raw numbers and states.

use serde::Serialize;
use serde_json::{json, Value};

use aerodb_mvcc::AppliedState;
use aerodb_repl_core::gate::{evaluate, GateInputs};
use aerodb_repl_core::halt::Reason;
use aerodb_repl_core::state::StateKind;
use aerodb_repl_core::status::{BootstrapState, ReplicaObserved};
use aerodb_snapshot::scrub::ScrubStatus;
use aerodb_wal::{CommitId, Lsn};

use crate::explain::read_views;
use crate::facts::{PrimaryFacts, ReplicaFacts};

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
///
/// `Uninitialized` until a bootstrap has committed (REPLICATION.md §2, F-S1:
/// an interrupted bootstrap leaves the replica uninitialised).
pub fn replica_node_state(o: &ReplicaObserved) -> &'static str {
    o.node_state().name()
}

fn connection_state(state: StateKind) -> &'static str {
    match state {
        StateKind::Streaming => "connected",
        StateKind::Connecting | StateKind::Bootstrapping => "connecting",
        _ => "disconnected",
    }
}

/// The gate's inputs for a default read now (R = C_replica), built by the
/// one builder the read path uses too.
pub fn default_read_inputs(o: &ReplicaObserved, applied: Option<&AppliedState>, history_horizon: CommitId) -> GateInputs {
    GateInputs::capture(o, applied.map(|a| (a.commit_id, history_horizon)), None, None)
}

/// A halt or blocking reason as `blocking_reason` shows it.
fn reason_json(o: &ReplicaObserved) -> Option<Value> {
    let view = o.halt().map(Reason::view).or_else(|| o.blocking().map(Reason::view))?;
    Some(json!({"code": view.code, "rule_id": view.rule_id, "detail": view.detail, "lsn": view.lsn, "commit_id": view.commit_id}))
}

/// `/v1/replication` on a replica.
pub fn replica_replication(o: &ReplicaObserved, applied: Option<&AppliedState>, history_horizon: CommitId) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let c_replica = applied.map(|a| a.commit_id);
    // C_replica and the applied LSN come from the same source (the store), so
    // they always describe the same record.
    let applied_lsn: Lsn = applied.map_or(o.positions.applied_lsn, |a| a.end_lsn);
    if applied.is_none() {
        notes.push("no local state yet (not bootstrapped or halted before recovery): replica_commit_id and LSNs are unknown".to_string());
    }
    if o.primary.is_none() {
        notes.push("the primary has not reported its position since this process started: primary_commit_id and lag are unknown".to_string());
    }
    let lag = match (o.primary, c_replica) {
        (Some(p), Some(c)) => {
            crate::replicas::lag_json(Some(p.commit_id.saturating_sub(c)), Some(p.durable_lsn.saturating_sub(applied_lsn)), o.lag_ms, o.lag_is_live())
        }
        _ => crate::replicas::lag_json(None, None, None, false),
    };
    if o.primary.is_some() && !o.lag_is_live() {
        notes.push("lag is last-known: the replica is not streaming from its primary now; the numbers are those of the primary's last report".to_string());
    }
    let gate = evaluate(&default_read_inputs(o, applied, history_horizon));
    let blocking = reason_json(o);
    let bootstrap_state = bootstrap_state_name(o.bootstrap_state());
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
        "snapshot_bootstrap": snapshot_bootstrap(o, bootstrap_state),
        "history_horizon": history_horizon,
        "read_safety": if gate.admitted { "safe" } else { "unsafe" },
        "blocking_reason": blocking,
        "lag": lag,
        "connection": {
            "state": connection_state(o.kind()),
            "primary": o.primary_addr,
            "reconnects": o.reconnects,
            "handshakes": o.handshakes,
        },
        "cluster_id": o.cluster_id(),
        "replica_id": o.replica_id,
        "name": o.name.as_ref().map_or(o.replica_id.as_str(), |n| n.as_str()),
    });
    (data, notes)
}

/// `snapshot_bootstrap`: the state, method and boundary; while a snapshot
/// transfer is in progress (or interrupted and kept to resume, F-S1) also
/// its `phase`, `bytes_done`, `bytes_total`, `rate_bytes_per_s`, `eta_s`
/// (estimated seconds remaining), `resumed_from` and `resumes`.
fn snapshot_bootstrap(o: &ReplicaObserved, state: &str) -> Value {
    let mut v = json!({
        "state": state,
        "method": o.bootstrap().map(|b| b.method).unwrap_or(o.bootstrap_method_requested),
        "boundary_commit_id": o.bootstrap().map(|b| b.boundary_commit_id),
        "boundary_lsn": o.bootstrap().map(|b| b.boundary_lsn),
    });
    if let (Some(p), Some(map)) = (o.transfer.filter(|_| o.metadata.is_none()), v.as_object_mut()) {
        map.insert("phase".into(), json!(p.phase.name()));
        map.insert("bytes_done".into(), json!(p.bytes_done));
        map.insert("bytes_total".into(), json!(p.bytes_total));
        map.insert("rate_bytes_per_s".into(), json!(p.rate_bytes_per_s));
        map.insert("eta_s".into(), json!(p.eta_s));
        map.insert("resumed_from".into(), json!(p.resumed_from));
        map.insert("resumes".into(), json!(p.resumes));
    }
    v
}

// ---------------------------------------------------------------------------
// Replica views over captured facts
// ---------------------------------------------------------------------------

fn bootstrap_state_name(s: BootstrapState) -> &'static str {
    match s {
        BootstrapState::NotStarted => "not_started",
        BootstrapState::InProgress => "in_progress",
        BootstrapState::Complete => "complete",
    }
}

fn blocking_reason(o: &ReplicaObserved) -> Value {
    reason_json(o).map_or(Value::Null, |mut v| {
        v["halts"] = json!(o.halt().is_some());
        v
    })
}

const NO_STORE_NOTE: &str = "no local state yet (not bootstrapped, or halted before recovery): C_replica, LSNs, digest and horizon are unknown";

/// `/v1/replication` on a replica, from captured facts.
pub fn replica_replication_view(f: &ReplicaFacts) -> (Value, Vec<String>) {
    replica_replication(&f.observed, f.applied.as_ref(), f.history_horizon.unwrap_or(0))
}

/// `/v1/status` on a replica.
pub fn replica_status(f: &ReplicaFacts) -> (Value, Vec<String>) {
    let o = &f.observed;
    let gate = evaluate(&default_read_inputs(o, f.applied.as_ref(), f.history_horizon.unwrap_or(0)));
    let mut notes = Vec::new();
    if f.applied.is_none() {
        notes.push(NO_STORE_NOTE.to_string());
    }
    let data = json!({
        "role": "replica",
        "node_state": replica_node_state(o),
        "replica_state": o.state.name(),
        "commit_id": f.applied.map(|a| a.commit_id),
        "wal_applied_lsn": f.applied.map(|a| a.end_lsn),
        "durable_lsn": f.applied.map(|_| o.positions.received_lsn),
        "read_safety": if gate.admitted { "safe" } else { "unsafe" },
        "accepts_writes": false,
        "blocking_reason": blocking_reason(o),
        "cluster_id": o.cluster_id(),
        "replica_id": o.replica_id,
        "name": o.name.as_ref().map_or(o.replica_id.as_str(), |n| n.as_str()),
        "flags": {
            "replication": true,
            "primary": o.primary_addr,
            "bootstrap": o.bootstrap_method_requested,
        },
    });
    (data, notes)
}

/// `/v1/wal` on a replica: its segment files and the three pipeline
/// positions (received = durable on the replica), plus the torn tail its
/// last recovery dropped.
pub fn replica_wal(f: &ReplicaFacts) -> (Value, Vec<String>) {
    let o = &f.observed;
    let mut notes = Vec::new();
    let known = f.applied.is_some();
    if !known {
        notes.push(NO_STORE_NOTE.to_string());
    }
    let segments = match &f.wal_files {
        Ok(files) => Value::Array(files.iter().map(|w| json!({"file": w.name, "start_lsn": w.start_lsn, "file_bytes": w.bytes})).collect()),
        Err(e) => {
            notes.push(format!("the WAL directory could not be listed: {e}"));
            Value::Null
        }
    };
    let recovery = o.recovery.as_ref();
    if recovery.is_none() {
        notes.push("no recovery report in this process: torn-tail truncation is unknown (none ran, or it was a fresh bootstrap)".to_string());
    }
    let data = json!({
        "role": "replica",
        "segments": segments,
        "wal_received_lsn": known.then_some(o.positions.received_lsn),
        "wal_validated_lsn": known.then_some(o.positions.validated_lsn),
        "wal_applied_lsn": f.applied.map(|a| a.end_lsn),
        "durable_lsn": known.then_some(o.positions.received_lsn),
        "primary_durable_lsn": o.primary.map(|p| p.durable_lsn),
        "bootstrap_lsn": o.bootstrap().map(|b| b.boundary_lsn),
        "torn_tail": recovery.and_then(|r| r.pointer("/wal/wal/torn_tail")).cloned(),
        "removed_temp_files": recovery.and_then(|r| r.pointer("/wal/wal/removed_temp_files")).cloned(),
        "records_verified_at_recovery": recovery.and_then(|r| r.pointer("/wal/wal/records_verified")).cloned(),
    });
    (data, notes)
}

/// `/v1/mvcc` on a replica.
pub fn replica_mvcc(f: &ReplicaFacts) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    if f.applied.is_none() {
        notes.push(NO_STORE_NOTE.to_string());
    }
    let a = f.applied;
    let data = json!({
        "role": "replica",
        "commit_id": a.map(|a| a.commit_id),
        "end_lsn": a.map(|a| a.end_lsn),
        "fingerprint": a.map(|a| a.fingerprint.to_string()),
        "state_digest": a.map(|a| a.state_digest.to_string()),
        "history_horizon": f.history_horizon,
        "versions": f.version_count,
        "gc": gc_view(f.gc.as_ref(), None),
        "active_read_views": read_views(&f.active_read_views),
    });
    (data, notes)
}

/// The `gc` object of `/v1/mvcc` (MVCC-4, MVCC-5, RES-1). Replicas have no
/// retention policy of their own: they apply the primary's GC records.
fn gc_view(gc: Option<&aerodb_mvcc::GcStats>, retain_commits: Option<u64>) -> Value {
    json!({
        "history_retain_commits": retain_commits,
        "gc_step_commits": retain_commits.map(|n| aerodb_mvcc::GcPolicy::new(n).step()),
        "gc_records_applied": gc.map(|g| g.gc_records_applied),
        "versions_held": gc.map(|g| g.versions_held),
        "versions_awaiting_purge": gc.map(|g| g.versions_awaiting_purge),
        "gc_candidates": gc.map(|g| g.gc_candidates),
    })
}

/// `/v1/snapshots` on a replica: the installed bootstrap snapshot, if any.
pub fn replica_snapshots(f: &ReplicaFacts) -> (Value, Vec<String>) {
    let o = &f.observed;
    let mut notes = Vec::new();
    let held = match o.bootstrap() {
        Some(b) if b.method == aerodb_repl_core::metadata::BootstrapMethod::Snapshot => {
            if f.bootstrap_snapshot_bytes.is_none() {
                notes.push("the installed bootstrap snapshot's size could not be read".to_string());
            }
            vec![json!({
                "name": "replica/snapshot",
                "commit_id": b.boundary_commit_id,
                "lsn": b.boundary_lsn,
                "fingerprint": b.boundary_fingerprint.to_string(),
                "state_digest": b.boundary_state_digest.to_string(),
                "data_bytes": f.bootstrap_snapshot_bytes,
            })]
        }
        _ => Vec::new(),
    };
    if o.bootstrap().is_none() {
        notes.push("the replica has no committed bootstrap yet".to_string());
    }
    let data = json!({
        "role": "replica",
        "snapshots": held,
        "bootstrap": {
            "state": bootstrap_state_name(o.bootstrap_state()),
            "method": o.bootstrap().map(|b| b.method).unwrap_or(o.bootstrap_method_requested),
            "boundary_commit_id": o.bootstrap().map(|b| b.boundary_commit_id),
            "boundary_lsn": o.bootstrap().map(|b| b.boundary_lsn),
            "boundary_fingerprint": o.bootstrap().map(|b| b.boundary_fingerprint.to_string()),
            "boundary_state_digest": o.bootstrap().map(|b| b.boundary_state_digest.to_string()),
        },
    });
    (data, notes)
}

// ---------------------------------------------------------------------------
// Primary / standalone views
// ---------------------------------------------------------------------------

/// `/v1/replication` on a primary (or standalone): its position, its WAL
/// retention (RES-2) and one entry per replica it knows, connected or not
/// (name, id, address, state, last-known positions, last seen, lag in
/// commits, bytes and seconds, retention forecast).
pub fn primary_replication(f: &PrimaryFacts) -> (Value, Vec<String>) {
    let applied = f.applied;
    let mut notes = Vec::new();
    if f.replicas.is_none() {
        notes.push("replication is disabled on this node: no replicas can connect".to_string());
    }
    let replicas: Vec<Value> = match &f.registry {
        Some(registry) => {
            if registry.replicas.iter().any(|r| r.known.needs().is_some_and(|n| n.commit_id < applied.commit_id) && r.oldest_unapplied_commit_time_ms.is_none()) {
                notes.push("lag.seconds is null where the commit a replica waits for was made before this primary process started (commit times are kept in memory)".to_string());
            }
            if let Some((code, detail)) = &registry.load_error {
                notes.push(format!("the replica registry file could not be read at startup ({code}: {detail}); replicas known before are missing until they reconnect"));
            }
            registry.replicas.iter().map(|r| crate::replicas::known_replica_entry(f, r)).collect()
        }
        None => f
            .replicas
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let lag = r.reported.map(|p| {
                    crate::replicas::lag_json(Some(applied.commit_id.saturating_sub(p.applied_commit_id)), Some(f.durable.lsn.saturating_sub(p.applied_lsn)), None, r.session == "streaming")
                });
                json!({"replica_id": r.replica_id, "name": r.name.as_deref().unwrap_or(&r.replica_id), "peer": r.peer, "session": r.session, "sent_lsn": r.sent_lsn, "reported": r.reported, "lag": lag})
            })
            .collect(),
    };
    let data = json!({
        "role": f.role,
        "node_state": "PrimaryActive",
        "commit_id": applied.commit_id,
        "durable_lsn": f.durable.lsn,
        "durable_commit_id": f.durable.commit_id,
        "state_digest": applied.state_digest.to_string(),
        "history_horizon": f.history_horizon,
        "cluster_id": f.cluster_id,
        "replicas": replicas,
        "wal_retention": crate::replicas::wal_retention_json(f),
        "registry": crate::replicas::registry_json(f),
        "wal_shipped_bytes": f.wal_shipped_bytes,
        "fence": fence_view(f),
    });
    let mut data = data;
    if let Some(sec) = &f.repl_security {
        // Peers refused by token authentication or TLS (REPL-1), by code.
        let refused: serde_json::Map<String, Value> = sec.refused.iter().map(|(c, n)| (c.clone(), json!(n))).collect();
        data["security"] = json!({"token_required": sec.token_required, "tls": sec.tls, "refused": refused, "last_refused": sec.last_refused});
    }
    (data, notes)
}

/// `/v1/status` on a primary (or standalone).
pub fn primary_status(f: &PrimaryFacts) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    if f.snapshot_policy.is_none() {
        notes.push("no snapshot scheduler information: snapshot flags are unknown".to_string());
    }
    let data = json!({
        "role": f.role,
        "node_state": "PrimaryActive",
        "accepts_writes": f.fence.as_ref().is_none_or(|x| x.current.is_none()),
        "fenced": f.fence.as_ref().map(|x| x.current.is_some()),
        "commit_id": f.applied.commit_id,
        "durable_commit_id": f.durable.commit_id,
        "durable_lsn": f.durable.lsn,
        "state_digest": f.applied.state_digest.to_string(),
        "cluster_id": f.cluster_id,
        "flags": {
            "replication": f.replicas.is_some(),
            "snapshot_every_bytes": f.snapshot_policy.map(|p| p.snapshot_every_bytes),
            "wal_retention": f.snapshot_policy.map(|p| p.retention_mode().as_str()),
            "wal_keep_bytes": f.snapshot_policy.map(|p| p.wal_keep_bytes),
            "snapshots_kept": f.snapshot_policy.map(|p| p.keep),
            "durable_mark_every_ms": f.durability.as_ref().map(|d| d.policy.every_ms),
            "durable_mark_every_bytes": f.durability.as_ref().map(|d| d.policy.every_bytes),
            "scrub_bytes_per_second": f.scrub.as_ref().map(|s| s.policy.bytes_per_second),
            "history_retain_commits": f.history_retain_commits,
        },
    });
    (data, notes)
}

/// `/v1/wal` on a primary (or standalone).
pub fn primary_wal(f: &PrimaryFacts) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let wal = f.recovery.as_ref().map(|r| &r.store.wal);
    if wal.is_none() {
        notes.push("no recovery report: torn-tail truncation at startup is unknown".to_string());
    }
    let segments: Vec<Value> = f
        .segments
        .iter()
        .map(|s| json!({"start_lsn": s.header.start_lsn, "end_lsn": s.end_lsn, "prev_commit_id": s.header.prev_commit_id, "prev_fingerprint": s.header.prev_fingerprint.to_string()}))
        .collect();
    let data = json!({
        "role": f.role,
        "segments": segments,
        "first_lsn": f.segments.first().map(|s| s.header.start_lsn),
        "wal_applied_lsn": f.applied.end_lsn,
        "durable_lsn": f.durable.lsn,
        "durable_commit_id": f.durable.commit_id,
        "torn_tail": wal.map(|w| serde_json::to_value(&w.torn_tail).unwrap_or(Value::Null)),
        "removed_temp_files": wal.map(|w| &w.removed_temp_files),
        "records_verified_at_recovery": wal.map(|w| w.records_verified),
        "tail_at_recovery": wal.map(|w| serde_json::to_value(&w.tail).unwrap_or(Value::Null)),
        // The live mark moves on its own cadence: its position and counters are in /metrics
        // (aerodb_durable_mark_*), so this view stays a function of what was persisted at startup.
        "durable_mark": f.durability.as_ref().map(|d| {
            json!({
                "written_at_startup": d.startup.mark_written,
                "window_bytes": d.live.window_bytes,
                "every_ms": d.policy.every_ms,
                "every_bytes": d.policy.every_bytes,
                "failed": d.live.failed,
            })
        }),
    });
    (data, notes)
}

/// The fence of a primary (REPL-11), or null on a standalone node.
fn fence_view(f: &PrimaryFacts) -> Value {
    match &f.fence {
        None => Value::Null,
        Some(x) => json!({
            "fenced": x.current.is_some(),
            "code": x.current.as_ref().map(|c| c.code.clone()),
            "rule_id": x.current.as_ref().map(|_| "REPL-11"),
            "evidence": x.current.as_ref().map(|c| c.evidence()),
            "proofs_since_start": x.proofs,
            "lifted_at_startup": x.lifted_at_startup.as_ref().map(|c| c.evidence()),
        }),
    }
}

/// `GET /v1/scrub` (both roles): the scrub's policy, the pass in progress
/// and the last one ("when" in CommitIds), totals and findings (file,
/// offset, rule CORE-6).
pub fn scrub_view(role: &str, scrub: Option<&ScrubStatus>) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let Some(s) = scrub else {
        notes.push("this node runs no scrub".to_string());
        return (
            json!({"role": role, "rule_id": "CORE-6", "enabled": false, "policy": null, "passes_completed": null, "current_pass": null, "last_pass": null, "bytes_verified_total": null, "targets_verified_total": null, "findings_total": null, "findings": null}),
            notes,
        );
    };
    if s.enabled && s.passes_completed == 0 {
        notes.push("no scrub pass has completed since this process started".to_string());
    }
    let data = json!({
        "role": role,
        "rule_id": "CORE-6",
        "enabled": s.enabled,
        "policy": s.policy,
        "passes_completed": s.passes_completed,
        "current_pass": s.current_pass,
        "last_pass": s.last_pass,
        "bytes_verified_total": s.bytes_verified_total,
        "targets_verified_total": s.targets_verified_total,
        "findings_total": s.findings_total,
        "findings": s.findings,
    });
    (data, notes)
}

/// `/v1/mvcc` on a primary (or standalone).
pub fn primary_mvcc(f: &PrimaryFacts) -> (Value, Vec<String>) {
    let a = f.applied;
    let data = json!({
        "role": f.role,
        "commit_id": a.commit_id,
        "end_lsn": a.end_lsn,
        "fingerprint": a.fingerprint.to_string(),
        "state_digest": a.state_digest.to_string(),
        "history_horizon": f.history_horizon,
        "versions": f.version_count,
        "gc": gc_view(f.gc.as_ref(), f.history_retain_commits),
        "active_read_views": read_views(&f.active_read_views),
    });
    (data, Vec::new())
}

/// `/v1/snapshots` on a primary (or standalone).
pub fn primary_snapshots(f: &PrimaryFacts) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let held = match &f.snapshots {
        Ok(list) => Value::Array(
            list.iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "commit_id": s.commit_id,
                        "lsn": s.lsn,
                        "fingerprint": s.fingerprint.to_string(),
                        "state_digest": s.state_digest.to_string(),
                        "versions": s.version_count,
                        "files": s.files,
                        "data_bytes": s.data_bytes,
                    })
                })
                .collect(),
        ),
        Err(e) => {
            notes.push(format!("snapshots could not be listed: {e}"));
            Value::Null
        }
    };
    let recovery = f.recovery.as_ref().map(|r| {
        json!({
            "snapshot_used": r.snapshot_used.as_ref().map(|s| &s.name),
            "rejected_snapshots": r.rejected_snapshots,
            "removed_incomplete": r.removed_incomplete,
        })
    });
    let scheduler = f.snapshot_status.as_ref().map(|s| {
        json!({
            "snapshots_created": s.snapshots_created,
            "snapshots_deleted": s.snapshots_deleted,
            "segments_removed": s.segments_removed,
            "last_retention_floor": s.retention_floor,
            "last_snapshot_commit_id": s.last_snapshot.as_ref().map(|l| l.commit_id),
            "last_error": s.last_error,
        })
    });
    let data = json!({
        "role": f.role,
        "snapshots": held,
        "policy": f.snapshot_policy.map(|p| json!({"snapshot_every_bytes": p.snapshot_every_bytes, "wal_retention_after_snapshot": p.wal_retention_after_snapshot, "wal_retention": p.retention_mode().as_str(), "wal_keep_bytes": p.wal_keep_bytes, "keep": p.keep})),
        "scheduler": scheduler,
        "at_startup": recovery,
    });
    (data, notes)
}
