//! Explanation objects (REPLICATION.md §10): `replication.safety`,
//! `replication.halt`, `recovery.process` and `mvcc.read_visibility`.
//!
//! Every explanation has the same shape:
//!
//! ```json
//! {"explanation_type":"replication.safety",
//!  "observed_snapshot":{"snapshot_id":"live","commit_id":42},
//!  "inputs":{},
//!  "rules_applied":[{"rule_id":"RS-3","description":"...","evaluation":true,"evidence":{}}],
//!  "conclusion":{}}
//! ```
//!
//! Rules are applied in a fixed order per explanation type and role, none
//! skipped. `evaluation` is `true` (holds), `false` (does not hold) or
//! `null` when the evidence needed is missing; missing evidence is stated in
//! that rule's `evidence.missing`, and a conclusion that depends on it is
//! `undetermined` (F-O1). Every cited `rule_id` is in [`crate::rules::RULES`]
//! and its `description` is the registry's summary (one wording for every
//! explanation); every number is copied from observed state (P5-I15).

use serde::Serialize;
use serde_json::{json, Value};

use aerodb_mvcc::store::visible_in;
use aerodb_mvcc::{AppliedState, Version};
use aerodb_repl_core::fence::Fence;
use aerodb_repl_core::gate::{evaluate, GateDecision};
use aerodb_repl_core::halt::{Reason, ReasonView};
use aerodb_repl_core::state::StateKind;
use aerodb_repl_core::status::ReplicaObserved;
use aerodb_wal::mark_check::MarkViolation;
use aerodb_wal::CommitId;

use crate::facts::{FenceFacts, PrimaryFacts, ReplicaFacts};
use crate::halts::{halt_code, operator_action, REBOOTSTRAP_COMMAND};
use crate::rules;
use crate::views::{default_read_inputs, replica_node_state};

/// `observed_snapshot` of an explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedSnapshot {
    /// Always `live`: the node's state now.
    pub snapshot_id: &'static str,
    /// The node's applied CommitId when observed (null without a store).
    pub commit_id: Option<CommitId>,
}

/// One rule as applied by an explanation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleApplied {
    /// A rule ID from [`crate::rules::RULES`].
    pub rule_id: &'static str,
    /// What the rule requires.
    pub description: String,
    /// `true` holds, `false` does not hold, `null` evidence missing.
    pub evaluation: Option<bool>,
    /// The real numbers and states it was judged on (or what is missing).
    pub evidence: Value,
}

/// An explanation object.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// `replication.safety`, `replication.halt`, `recovery.process` or `mvcc.read_visibility`.
    pub explanation_type: &'static str,
    /// When (in history) it was observed.
    pub observed_snapshot: ObservedSnapshot,
    /// What the explanation was asked and computed from.
    pub inputs: Value,
    /// Every rule, in a fixed order.
    pub rules_applied: Vec<RuleApplied>,
    /// The verdict and its numbers.
    pub conclusion: Value,
}

impl Explanation {
    /// Every rule ID the explanation cites, in order.
    pub fn cited_rule_ids(&self) -> Vec<&'static str> {
        self.rules_applied.iter().map(|r| r.rule_id).collect()
    }

    /// The first rule whose evaluation is `false`.
    pub fn first_failing_rule(&self) -> Option<&RuleApplied> {
        self.rules_applied.iter().find(|r| r.evaluation == Some(false))
    }

    /// The explanation as a JSON value (field order as declared).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Explanation type names.
pub mod types {
    /// Why reads are or are not safe now.
    pub const SAFETY: &str = "replication.safety";
    /// Why replication stopped.
    pub const HALT: &str = "replication.halt";
    /// What the last recovery did.
    pub const RECOVERY: &str = "recovery.process";
    /// Why a version of one key is visible at R.
    pub const READ: &str = "mvcc.read_visibility";
}

fn observed(commit_id: Option<CommitId>) -> ObservedSnapshot {
    ObservedSnapshot { snapshot_id: "live", commit_id }
}

/// A rule from the registry with its summary as description. An ID the
/// registry does not know (e.g. a code from a newer peer) is never cited
/// as such: it is reported under F-O1 with the unknown ID as evidence.
fn rule(id: &str, evaluation: Option<bool>, evidence: Value) -> RuleApplied {
    match rules::rule(id) {
        Some(r) => RuleApplied { rule_id: r.id, description: r.summary.to_string(), evaluation, evidence },
        None => RuleApplied {
            rule_id: "F-O1",
            description: "the observed state cites a rule ID this build does not know; it is reported verbatim and not evaluated".to_string(),
            evaluation: None,
            evidence: json!({"cited_rule_id": id, "evidence": evidence, "missing": "the rule's definition"}),
        },
    }
}

fn missing(what: &str) -> Value {
    json!({"missing": what})
}

/// Rule IDs whose evaluation is null (evidence missing), in order.
fn missing_rules(rules: &[RuleApplied]) -> Vec<&'static str> {
    rules.iter().filter(|r| r.evaluation.is_none()).map(|r| r.rule_id).collect()
}

/// `Some(false)` wins over `None`, which wins over `Some(true)`.
fn verdict(rules: &[RuleApplied]) -> Option<bool> {
    if rules.iter().any(|r| r.evaluation == Some(false)) {
        Some(false)
    } else if rules.iter().any(|r| r.evaluation.is_none()) {
        None
    } else {
        Some(true)
    }
}

fn halt_summary(h: &ReasonView) -> Value {
    json!({"code": h.code, "rule_id": h.rule_id, "failure": h.failure, "lsn": h.lsn, "commit_id": h.commit_id, "detail": h.detail})
}

// ---------------------------------------------------------------------------
// replication.safety
// ---------------------------------------------------------------------------

/// What a read asked for (both `None` for the default read at C_replica).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadBound {
    /// Requested `at`.
    pub at: Option<CommitId>,
    /// Requested `min_commit`.
    pub min_commit: Option<CommitId>,
}

/// `replication.safety` of a replica for the default read (R = C_replica).
pub fn replica_safety(f: &ReplicaFacts) -> Explanation {
    let inputs = default_read_inputs(&f.observed, f.applied.as_ref(), f.history_horizon.unwrap_or(0));
    safety_from_decision(&evaluate(&inputs), ReadBound::default(), &f.observed, f.applied.as_ref())
}

/// `replication.safety` from a gate decision already taken (the refusal of
/// a client read embeds exactly this, so an error and the explanation give
/// the same evidence). `applied` is the replica store's state (None before
/// bootstrap).
pub fn safety_from_decision(decision: &GateDecision, request: ReadBound, o: &ReplicaObserved, applied: Option<&AppliedState>) -> Explanation {
    let mut rules_applied: Vec<RuleApplied> = decision
        .rules
        .iter()
        .map(|r| {
            let unknown_state = applied.is_none() && (r.rule_id == "RS-3" || r.rule_id == "RS-4");
            if unknown_state {
                let mut evidence = r.evidence.clone();
                evidence["missing"] = json!("no local state yet: C_replica and the history horizon are unknown");
                rule(r.rule_id, None, evidence)
            } else {
                rule(r.rule_id, Some(r.evaluation), r.evidence.clone())
            }
        })
        .collect();
    rules_applied.push(pipeline_rule(o, applied));
    rules_applied.push(prefix_rule(o, applied));
    let safe = verdict(&rules_applied);
    let first_failing = rules_applied.iter().find(|r| r.evaluation == Some(false)).map(|r| r.rule_id);
    let conclusion = json!({
        "read_safety": match safe { Some(true) => "safe", Some(false) => "unsafe", None => "undetermined" },
        "admitted": decision.admitted,
        "first_failing_rule": first_failing,
        "read_upper_bound": decision.read_upper_bound,
        "replica_commit_id": applied.map(|a| a.commit_id),
        "node_state": replica_node_state(o),
        "replica_state": o.state.name(),
        // A halt is explained in full by `replication.halt`; a blocking reason
        // (which never halts) carries its detail and both sides' evidence here.
        "blocking_reason": o.halt().map(|h| json!({"code": h.code(), "rule_id": h.rule_id()})).or_else(|| {
            o.blocking().map(|b| json!({"code": b.code(), "rule_id": b.rule_id(), "lsn": b.lsn(), "commit_id": b.commit_id(), "detail": b.detail(), "evidence": b.evidence()}))
        }),
        "missing_evidence": missing_rules(&rules_applied),
    });
    Explanation {
        explanation_type: types::SAFETY,
        observed_snapshot: observed(applied.map(|a| a.commit_id)),
        inputs: json!({"role": "replica", "requested_at": request.at, "min_commit": request.min_commit, "read_upper_bound": decision.read_upper_bound}),
        rules_applied,
        conclusion,
    }
}

/// P5-I5: the pipeline's stages never overtake each other.
fn pipeline_rule(o: &ReplicaObserved, applied: Option<&AppliedState>) -> RuleApplied {
    let p = o.positions;
    let evidence = json!({
        "wal_received_lsn": p.received_lsn,
        "wal_validated_lsn": p.validated_lsn,
        "wal_applied_lsn": p.applied_lsn,
        "applied_commit_id": p.applied_commit_id,
        "check": "wal_applied_lsn <= wal_validated_lsn <= wal_received_lsn",
    });
    match applied {
        None => {
            let mut e = evidence;
            e["missing"] = json!("no local state yet: the pipeline has no positions");
            rule("P5-I5", None, e)
        }
        Some(_) => rule("P5-I5", Some(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn), evidence),
    }
}

/// REPL-3: the replica's history is a proven prefix of the primary's, with
/// the CommitId and LSN comparisons against what the primary reported.
fn prefix_rule(o: &ReplicaObserved, applied: Option<&AppliedState>) -> RuleApplied {
    let c_replica = applied.map(|a| a.commit_id);
    let applied_lsn = applied.map(|_| o.positions.applied_lsn);
    let evidence = json!({
        "handshakes_since_start": o.handshakes,
        "reconnects": o.reconnects,
        "resume_point_proven": o.handshakes > 0,
        "bootstrap_boundary": o.bootstrap().map(|b| json!({"method": b.method, "commit_id": b.boundary_commit_id, "lsn": b.boundary_lsn})),
        "replica_commit_id": c_replica,
        "wal_applied_lsn": applied_lsn,
        "primary_commit_id": o.primary.map(|p| p.commit_id),
        "primary_durable_lsn": o.primary.map(|p| p.durable_lsn),
        "commits_behind_primary": o.primary.zip(c_replica).map(|(p, c)| p.commit_id.saturating_sub(c)),
        "bytes_behind_primary": o.primary.zip(applied_lsn).map(|(p, l)| p.durable_lsn.saturating_sub(l)),
        "integrity_failure": o.halt().map(|h| h.code()),
    });
    if o.halt().is_some() {
        return rule("REPL-3", Some(false), evidence);
    }
    if o.handshakes == 0 {
        let mut e = evidence;
        e["missing"] =
            json!("no handshake has proven the replica's resume point (end LSN, CommitId, fingerprint) against the primary since this process started");
        return rule("REPL-3", None, e);
    }
    rule("REPL-3", Some(true), evidence)
}

/// `replication.safety` of a primary or standalone node: it is the single
/// writer and serves reads at any R ≤ C_primary.
pub fn primary_safety(f: &PrimaryFacts) -> Explanation {
    let c = f.applied.commit_id;
    let rules_applied = vec![
        rule("REPL-1", Some(true), json!({"role": f.role, "node_state": "PrimaryActive", "cluster_id": f.cluster_id})),
        rule(
            "MVCC-2",
            Some(true),
            json!({
                "commit_id": c,
                "durable_commit_id": f.durable.commit_id,
                "durable_lsn": f.durable.lsn,
                "applied_lsn": f.applied.end_lsn,
                "how": "a commit is applied to the store only after its WAL record is fsynced (group commit)",
            }),
        ),
        rule("MVCC-3", Some(true), json!({"history_horizon": f.history_horizon, "active_read_views": read_views(&f.active_read_views)})),
    ];
    let mut rules_applied = rules_applied;
    if let Some(fence) = &f.fence {
        rules_applied.push(fence_rule(fence));
    }
    let fenced = f.fence.as_ref().and_then(|x| x.current.as_ref());
    Explanation {
        explanation_type: types::SAFETY,
        observed_snapshot: observed(Some(c)),
        inputs: json!({"role": f.role}),
        rules_applied,
        conclusion: json!({
            "read_safety": "safe",
            "node_state": "PrimaryActive",
            "role": f.role,
            "readable_range": {"from_commit_id": f.history_horizon, "to_commit_id": c},
            "accepts_writes": fenced.is_none(),
            "write_refusal": fenced.map(|_| json!({"code": "PRIMARY_FENCED", "rule_id": "REPL-11", "operator_action": FENCE_ACTION})),
            "missing_evidence": Vec::<&str>::new(),
        }),
    }
}

/// What an operator does about a fence (docs/operations.md, "Fencing").
pub const FENCE_ACTION: &str = "find out how this primary lost the history the fencing replica holds (restored from an old backup, a damaged disk, `--accept-lost-history`); restore it with `aerodb repair-wal --data-dir DIR --from REPLICA_DIR` (both stopped) where possible; then restart it with `aerodb primary --lift-fence` and re-bootstrap replicas that hold the other history";

/// REPL-11 on a primary: whether a replica proved lost history (the
/// primary then refuses every write with PRIMARY_FENCED).
fn fence_rule(f: &FenceFacts) -> RuleApplied {
    match &f.current {
        None => rule(
            "REPL-11",
            Some(true),
            json!({"fenced": false, "proofs_since_start": f.proofs, "lifted_at_startup": f.lifted_at_startup.as_ref().map(Fence::evidence)}),
        ),
        Some(fence) => rule(
            "REPL-11",
            Some(false),
            json!({
                "fenced": true,
                "code": fence.code,
                "failure": fence.failure,
                "detail": fence.detail,
                "proof": fence.evidence(),
                "proofs_since_start": f.proofs,
                "consequence": "every write is refused with 503 PRIMARY_FENCED; reads and DX keep working",
                "operator_action": FENCE_ACTION,
            }),
        ),
    }
}

pub(crate) fn read_views(v: &[(CommitId, u64)]) -> Value {
    Value::Array(v.iter().map(|(r, n)| json!({"read_upper_bound": r, "count": n})).collect())
}

// ---------------------------------------------------------------------------
// replication.halt
// ---------------------------------------------------------------------------

/// Both sides' values of a halt, where the failure has two sides.
fn both_sides(h: &ReasonView) -> Value {
    let e = &h.evidence;
    let get = |k: &str| e.get(k).cloned().unwrap_or(Value::Null);
    match h.code.as_str() {
        "FINGERPRINT_MISMATCH" => json!({
            "replica": {"expected_fingerprint": get("expected"), "note": "chained from the replica's validated history"},
            "primary": {"record_fingerprint": get("found"), "commit_id": get("commit_id"), "lsn": get("lsn")},
        }),
        "COMMIT_ID_GAP" => json!({
            "replica": {"expected_commit_id": get("expected")},
            "primary": {"record_commit_id": get("found"), "lsn": get("lsn")},
        }),
        "LSN_GAP" => json!({
            "replica": {"expected_lsn": get("expected")},
            "primary": {"record_lsn": get("found")},
        }),
        "SEGMENT_DISCONTINUITY" => json!({
            "replica": {"tip_lsn": get("tip_lsn"), "tip_commit_id": get("tip_commit_id"), "tip_fingerprint": get("tip_fingerprint")},
            "primary": {"segment_start_lsn": get("start_lsn"), "declared_commit_id": get("declared_commit_id"), "declared_fingerprint": get("declared_fingerprint")},
        }),
        "CHECKSUM_MISMATCH" | "INVALID_RECORD" => json!({
            "replica": {"check": "crc32c and record structure recomputed on the received bytes", "lsn": get("lsn")},
            "primary": {"record_error": get("error")},
        }),
        "APPLY_DIVERGED" => json!({
            "replica": {"recomputed_state_digest": get("recomputed")},
            "primary": {"carried_state_digest": get("carried"), "commit_id": get("commit_id")},
        }),
        "APPLY_OUT_OF_ORDER" => json!({
            "replica": {"applied_commit_id": get("applied"), "applied_end_lsn": get("applied_end_lsn")},
            "primary": {"record_commit_id": get("found"), "record_lsn": get("lsn")},
        }),
        "CLUSTER_MISMATCH" if e.get("replica_cluster_id").is_some() => json!({
            "replica": {"cluster_id": get("replica_cluster_id")},
            "primary": {"cluster_id": get("primary_cluster_id")},
        }),
        "SNAPSHOT_METADATA_MISMATCH" => json!({
            "replica": {"recorded_boundary": get("recorded_boundary"), "installed_snapshot_cut": get("snapshot_cut")},
            "primary": Value::Null,
        }),
        _ if e.get("replica").is_some() || e.get("primary").is_some() => json!({"replica": get("replica"), "primary": get("primary")}),
        _ => json!({"replica": e, "primary": Value::Null}),
    }
}

/// `replication.halt` when the replica is halted (None otherwise).
pub fn replication_halt(o: &ReplicaObserved, applied: Option<&AppliedState>) -> Option<Explanation> {
    let h = &o.halt()?.view();
    let halted_now = o.kind() == StateKind::Halted;
    let mut rules_applied = vec![rule(
        &h.rule_id,
        Some(false),
        json!({
            "code": h.code,
            "detail": h.detail,
            "lsn": h.lsn,
            "commit_id": h.commit_id,
            "both_sides": both_sides(h),
            "recorded": h.evidence,
        }),
    )];
    // The failure-matrix row's required outcome, unless the row is the rule itself (F-S3, F-S4, F-RC2).
    if let Some(row) = h.failure.as_ref().filter(|row| **row != h.rule_id) {
        rules_applied.push(rule(
            row,
            Some(halted_now),
            json!({"required_outcome": "replica halts and refuses reads", "replica_state": o.state.name(), "node_state": replica_node_state(o)}),
        ));
    }
    rules_applied.push(rule("RS-2", Some(false), json!({"integrity_failure": h.code, "consequence": "every read is refused (REPLICATION_HALTED)"})));
    rules_applied.push(rule(
        "REPL-1",
        Some(true),
        json!({"node_state": replica_node_state(o), "accepts_writes": false, "consequence": "every write is rejected (WRITE_REJECTED)"}),
    ));
    let known = halt_code(&h.code);
    let conclusion = json!({
        "halted": true,
        "code": h.code,
        "rule_id": h.rule_id,
        "failure": h.failure,
        "lsn": h.lsn,
        "commit_id": h.commit_id,
        "meaning": known.map(|k| k.meaning),
        "operator_action": operator_action(&h.code),
        "cleared_by": REBOOTSTRAP_COMMAND,
        "node_state": replica_node_state(o),
        "replica_state": o.state.name(),
    });
    Some(Explanation {
        explanation_type: types::HALT,
        observed_snapshot: observed(applied.map(|a| a.commit_id)),
        inputs: json!({
            "halt": halt_summary(h),
            "replica_state": o.state.name(),
            "positions": applied.map(|_| o.positions),
            "primary_reported": o.primary,
        }),
        rules_applied,
        conclusion,
    })
}

// ---------------------------------------------------------------------------
// recovery.process
// ---------------------------------------------------------------------------

/// What `recovery.process` is computed from.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryInput<'a> {
    /// `primary`, `standalone` or `replica`.
    pub role: &'a str,
    /// The last recovery report as JSON (a serialized
    /// `PrimaryRecoveryReport` or `ReplicaRecoveryReport`), or None when no
    /// recovery completed in this process.
    pub report: Option<&'a Value>,
    /// A halt that stopped (or prevented) recovery.
    pub halt: Option<&'a ReasonView>,
    /// Replica runtime state (None on a primary).
    pub replica_state: Option<StateKind>,
    /// Applied CommitId now.
    pub commit_id: Option<CommitId>,
    /// What startup did about the durable mark (a serialized
    /// `StartupDurability`; primaries and standalone nodes), judged under
    /// CORE-5.
    pub durability: Option<&'a Value>,
    /// The fence at startup: `{"at_startup": Fence|null, "lifted": Fence|null}`
    /// (primaries only), judged under REPL-11.
    pub fence: Option<&'a Value>,
}

/// `recovery.process` of a primary or standalone node.
pub fn primary_recovery(f: &PrimaryFacts) -> Explanation {
    let report = f.recovery.as_ref().and_then(|r| serde_json::to_value(r).ok());
    let durability = f.durability.as_ref().and_then(|d| serde_json::to_value(&d.startup).ok());
    let fence = f.fence.as_ref().map(|x| {
        json!({
            "in_force": x.current.as_ref().map(Fence::evidence),
            "lifted_at_startup": x.lifted_at_startup.as_ref().map(Fence::evidence),
        })
    });
    recovery_process(&RecoveryInput {
        role: f.role,
        report: report.as_ref(),
        halt: None,
        replica_state: None,
        commit_id: Some(f.applied.commit_id),
        durability: durability.as_ref(),
        fence: fence.as_ref(),
    })
}

/// `recovery.process` of a replica.
pub fn replica_recovery(f: &ReplicaFacts) -> Explanation {
    let halt = f.observed.halt().map(Reason::view);
    recovery_process(&RecoveryInput {
        role: "replica",
        report: f.observed.recovery.as_deref(),
        halt: halt.as_ref(),
        replica_state: Some(f.observed.kind()),
        commit_id: f.applied.map(|a| a.commit_id),
        durability: None,
        fence: None,
    })
}

/// A field of the report: `Some(Value::Null)` is a recorded null (e.g. "no
/// torn tail"), `None` is missing evidence.
fn field<'a>(report: &'a Value, pointer: &str) -> Option<&'a Value> {
    report.pointer(pointer)
}

fn u64_at(report: &Value, pointer: &str) -> Option<u64> {
    field(report, pointer).and_then(Value::as_u64)
}

/// A rule judged on fields that must all be present; otherwise its
/// evaluation is null and the missing fields are listed.
fn evidence_rule(id: &str, report: &Value, fields: &[(&str, &str)], check: impl FnOnce(&Value) -> bool) -> RuleApplied {
    let mut evidence = serde_json::Map::new();
    let mut absent = Vec::new();
    for (name, pointer) in fields {
        match field(report, pointer) {
            Some(v) => {
                evidence.insert((*name).to_string(), v.clone());
            }
            None => absent.push(*name),
        }
    }
    let mut evidence = Value::Object(evidence);
    if absent.is_empty() {
        let ok = check(&evidence);
        rule(id, Some(ok), evidence)
    } else {
        evidence["missing"] = json!(format!("the recovery report lacks: {}", absent.join(", ")));
        rule(id, None, evidence)
    }
}

/// `recovery.process` from a report (pure; see [`RecoveryInput`]).
pub fn recovery_process(input: &RecoveryInput<'_>) -> Explanation {
    let replica = input.role == "replica";
    let store = if replica { "/wal" } else { "/store" };
    let p = |suffix: &str| format!("{store}{suffix}");
    let ids: &[&str] = if replica {
        &["F-RC2", "F-S1", "REPL-8", "CORE-2", "CORE-3", "P5-I9", "CORE-4", "REPL-4", "REPL-9"]
    } else if input.role == "primary" {
        &["F-S1", "REPL-8", "CORE-2", "CORE-3", "CORE-5", "P5-I9", "CORE-4", "REPL-4", "REPL-9", "REPL-11"]
    } else {
        &["F-S1", "REPL-8", "CORE-2", "CORE-3", "CORE-5", "P5-I9", "CORE-4", "REPL-4", "REPL-9"]
    };
    let inputs = json!({"role": input.role, "report": if input.report.is_some() { "last recovery of this process" } else { "none" }});
    let Some(report) = input.report else {
        return recovery_without_report(input, ids, inputs);
    };
    let mut rules_applied = Vec::new();
    for id in ids {
        let r = match *id {
            "F-RC2" => evidence_rule(id, report, &[("bootstrap", "/bootstrap")], |_| true),
            "F-S1" => {
                let list = if replica { ("discarded", "/discarded") } else { ("removed_incomplete", "/removed_incomplete") };
                evidence_rule(id, report, &[list], |_| true)
            }
            "REPL-8" => {
                if replica {
                    evidence_rule(id, report, &[("bootstrap", "/bootstrap"), ("snapshot_used", "/snapshot_used")], |e| {
                        // A snapshot-bootstrapped replica must have loaded exactly the recorded cut.
                        match e["bootstrap"]["method"].as_str() {
                            Some("snapshot") => {
                                e["snapshot_used"]["commit_id"] == e["bootstrap"]["boundary_commit_id"]
                                    && e["snapshot_used"]["end_lsn"] == e["bootstrap"]["boundary_lsn"]
                            }
                            _ => e["snapshot_used"].is_null(),
                        }
                    })
                } else {
                    evidence_rule(id, report, &[("snapshot_used", "/snapshot_used"), ("rejected_snapshots", "/rejected_snapshots")], |_| true)
                }
            }
            "CORE-2" => evidence_rule(
                id,
                report,
                &[
                    ("records_verified", &p("/wal/records_verified")),
                    ("wal_start", &p("/wal/start")),
                    ("wal_end", &p("/wal/end")),
                    ("segments", &p("/wal/segments")),
                ],
                |_| true,
            ),
            "CORE-3" => evidence_rule(id, report, &[("torn_tail", &p("/wal/torn_tail"))], |e| {
                // Only bytes at the very end may be dropped: the new end of the WAL is where they started.
                e["torn_tail"].is_null() || e["torn_tail"]["lsn"].as_u64().is_some()
            }),
            "P5-I9" => evidence_rule(id, report, &[("base", &p("/base")), ("replayed", &p("/replayed"))], |e| match e["replayed"].as_array() {
                Some(range) => range.first().and_then(Value::as_u64) == e["base"]["commit_id"].as_u64().map(|c| c + 1),
                None => e["replayed"].is_null(),
            }),
            "CORE-4" => evidence_rule(id, report, &[("base", &p("/base")), ("replayed", &p("/replayed")), ("applied", &p("/applied"))], |e| {
                let last = e["replayed"].as_array().and_then(|r| r.get(1)).and_then(Value::as_u64).or(e["base"]["commit_id"].as_u64());
                last == e["applied"]["commit_id"].as_u64()
            }),
            "REPL-4" => evidence_rule(id, report, &[("final_state", &p("/applied"))], |e| e["final_state"]["state_digest"].is_string()),
            "CORE-5" => mark_rule(report, input.durability),
            "REPL-11" => startup_fence_rule(input.fence),
            _ => evidence_rule(id, report, &[("removed_temp_files", &p("/wal/removed_temp_files"))], |_| true),
        };
        rules_applied.push(r);
    }
    let ok = verdict(&rules_applied);
    let base = if replica {
        match field(report, "/bootstrap/method").and_then(Value::as_str) {
            Some("snapshot") => {
                json!({"kind": "bootstrap_snapshot", "commit_id": field(report, "/bootstrap/boundary_commit_id"), "lsn": field(report, "/bootstrap/boundary_lsn")})
            }
            Some(m) => {
                json!({"kind": format!("bootstrap_{m}"), "commit_id": field(report, "/bootstrap/boundary_commit_id"), "lsn": field(report, "/bootstrap/boundary_lsn")})
            }
            None => Value::Null,
        }
    } else {
        match field(report, "/snapshot_used") {
            Some(Value::Null) => json!({"kind": "genesis", "commit_id": 0, "lsn": 0}),
            Some(s) => json!({"kind": "snapshot", "name": s.get("name"), "commit_id": s.get("commit_id"), "lsn": s.get("lsn")}),
            None => Value::Null,
        }
    };
    let replayed = field(report, &p("/replayed")).cloned();
    let conclusion = json!({
        "outcome": match ok { Some(true) => "recovered", Some(false) => "inconsistent", None => "undetermined" },
        "base": base,
        "wal_replay": {
            "from_lsn": u64_at(report, &p("/base/end_lsn")),
            "to_lsn": u64_at(report, &p("/applied/end_lsn")),
            "commit_ids": replayed,
        },
        "bytes_truncated": field(report, &p("/wal/torn_tail")).map(|t| t.get("bytes_dropped").cloned().unwrap_or(json!(0))),
        "truncation_reason": field(report, &p("/wal/torn_tail")).and_then(|t| t.get("reason")).cloned(),
        "preallocated_bytes_cut": field(report, &p("/wal/preallocated")).map(|t| t.get("bytes").cloned().unwrap_or(json!(0))),
        "final_commit_id": u64_at(report, &p("/applied/commit_id")),
        "final_lsn": u64_at(report, &p("/applied/end_lsn")),
        "final_state_digest": field(report, &p("/applied/state_digest")),
        "halt": input.halt.map(halt_summary),
        "missing_evidence": missing_rules(&rules_applied),
    });
    let mut conclusion = conclusion;
    if !replica {
        let d = input.durability;
        conclusion["durable_mark_found"] = d.and_then(|d| d.get("mark_found")).cloned().unwrap_or(Value::Null);
        conclusion["durable_mark_written"] = d.and_then(|d| d.get("mark_written")).cloned().unwrap_or(Value::Null);
        conclusion["history_lost_at_this_startup"] = d.and_then(|d| d.get("accepted_loss")).cloned().unwrap_or(Value::Null);
        conclusion["history_losses"] = d.and_then(|d| d.pointer("/history_losses/losses")).cloned().unwrap_or(Value::Null);
    }
    if input.role == "primary" {
        conclusion["fence"] = input.fence.cloned().unwrap_or(Value::Null);
    }
    Explanation { explanation_type: types::RECOVERY, observed_snapshot: observed(input.commit_id), inputs, rules_applied, conclusion }
}

fn recovery_without_report(input: &RecoveryInput<'_>, ids: &[&str], inputs: Value) -> Explanation {
    let (outcome, why) = match (input.halt, input.replica_state) {
        (Some(_), _) => ("halted", "recovery stopped at a halt (or a halt persisted by an earlier run prevented it): no recovery report exists"),
        (None, Some(StateKind::Initializing | StateKind::Recovering)) => ("undetermined", "recovery is still running: no report yet"),
        (None, Some(_)) => ("not_run", "no recovery ran in this process: the replica was empty and bootstrapped instead"),
        (None, None) => ("undetermined", "the node did not provide its recovery report"),
    };
    let mut rules_applied = Vec::new();
    if let Some(h) = input.halt {
        rules_applied.push(rule(
            &h.rule_id,
            Some(false),
            json!({"code": h.code, "detail": h.detail, "lsn": h.lsn, "commit_id": h.commit_id, "recorded": h.evidence}),
        ));
    }
    // The halt's own rule was just evaluated from its evidence; every other rule lacks a report.
    let halt_rule = input.halt.map(|h| h.rule_id.as_str());
    rules_applied.extend(ids.iter().filter(|id| Some(**id) != halt_rule).map(|id| rule(id, None, missing(why))));
    let missing_evidence = missing_rules(&rules_applied);
    Explanation {
        explanation_type: types::RECOVERY,
        observed_snapshot: observed(input.commit_id),
        inputs,
        rules_applied,
        conclusion: json!({
            "outcome": outcome,
            "reason": why,
            "halt": input.halt.map(halt_summary),
            "operator_action": input.halt.map(|h| operator_action(&h.code)),
            "missing_evidence": missing_evidence,
        }),
    }
}

/// CORE-5 at a successful startup: what the WAL's end was judged against
/// (the durable mark), what was dropped, and any loss the operator
/// accepted. Null when the node gave no durability facts, or when the
/// directory had no mark (it predates marks: only CORE-3 bounded the drop).
fn mark_rule(report: &Value, durability: Option<&Value>) -> RuleApplied {
    let tail = field(report, "/store/wal/tail");
    let Some(d) = durability else {
        return rule("CORE-5", None, json!({"tail": tail, "missing": "the node did not provide its durable-mark facts"}));
    };
    let mut evidence = json!({
        "mark_file": d.get("mark_file"),
        "mark_found": d.get("mark_found"),
        "tail_rule": tail.and_then(|t| t.pointer("/rule/rule")),
        "wal_end": tail.and_then(|t| t.get("wal_end")),
        "file_end_lsn": tail.and_then(|t| t.get("file_end_lsn")),
        "beyond_mark_bytes": tail.and_then(|t| t.get("beyond_mark_bytes")),
        "window_bytes": tail.and_then(|t| t.get("window_bytes")),
        "bytes_dropped": tail.and_then(|t| t.get("drop")).map(|x| x.get("bytes_dropped").cloned().unwrap_or(json!(0))),
        "preallocated_zeros": field(report, "/store/wal/preallocated"),
        "accept_lost_history": d.get("accept_lost_history"),
        "accepted_loss": d.get("accepted_loss"),
        "history_losses": d.pointer("/history_losses/losses"),
        "mark_written": d.get("mark_written"),
        "check": "the WAL reaches the mark with the mark's record; after a clean shutdown nothing is dropped; after a crash only a torn tail after the mark, within the window; zeros after the last record are preallocated space, never WAL",
    });
    if tail.is_none() {
        evidence["missing"] = json!("the recovery report lacks the tail verdict");
        return rule("CORE-5", None, evidence);
    }
    if d.get("mark_file").and_then(Value::as_str) == Some("missing_legacy") {
        evidence["missing"] =
            json!("no durable mark: the data directory predates durable marks, so only CORE-3 bounded what recovery dropped; a mark was written now");
        return rule("CORE-5", None, evidence);
    }
    rule("CORE-5", Some(true), evidence)
}

/// REPL-11 at startup: a fence in force (every write refused) or lifted by
/// the operator's `--lift-fence`.
fn startup_fence_rule(fence: Option<&Value>) -> RuleApplied {
    match fence {
        None => rule("REPL-11", None, json!({"missing": "the node did not provide its fence state"})),
        Some(f) => {
            let mut evidence = f.clone();
            evidence["consequence"] = match (f.get("in_force").filter(|v| !v.is_null()), f.get("lifted_at_startup").filter(|v| !v.is_null())) {
                (Some(_), _) => json!("a persisted fence holds: every write is refused with PRIMARY_FENCED until `aerodb primary --lift-fence`"),
                (None, Some(_)) => json!("the operator lifted the fence with --lift-fence at this startup; writes are accepted"),
                (None, None) => json!("not fenced"),
            };
            rule("REPL-11", Some(true), evidence)
        }
    }
}

/// What an operator does when recovery refuses under CORE-5 (F-P4).
pub const MARK_REFUSAL_ACTION: &str = "keep this data directory as it is; restore the missing or damaged WAL tail from a replica that holds it with `aerodb repair-wal --data-dir DIR --from REPLICA_DIR` (both nodes stopped); if no copy exists, accept the loss explicitly with `aerodb primary --accept-lost-history` (the lost range is recorded; a replica that still holds the lost commits then fences this primary)";

/// `recovery.process` of a startup that refused because the WAL ends, or
/// is invalid, before the durable high-water mark (CORE-5, F-P4): the
/// mark, the WAL end, the damaged range, and that nothing was truncated.
pub fn recovery_refused(role: &str, v: &MarkViolation) -> Explanation {
    let mark = v.mark();
    let (from, to) = v.damaged_range();
    let wal_end = v.wal_end();
    let lost = wal_end.filter(|w| w.commit_id < mark.commit_id).map(|w| json!({"first_commit_id": w.commit_id + 1, "last_commit_id": mark.commit_id}));
    let rules_applied = vec![
        rule(
            "CORE-5",
            Some(false),
            json!({
                "code": v.code(),
                "detail": v.to_string(),
                "mark": mark,
                "wal_end": wal_end,
                "damaged_range": {"from_lsn": from, "to_lsn": to},
                "acknowledged_commit_ids_missing": lost,
                "violation": v,
            }),
        ),
        rule(
            "F-P4",
            Some(true),
            json!({"required_outcome": "refuse to start with the mark, the WAL end and the damaged range; aerodb verify fails; nothing is truncated; no CommitId is reused", "bytes_truncated": 0}),
        ),
        rule(
            "CORE-3",
            Some(true),
            json!({"bytes_truncated": 0, "why": "bytes at or before the durable mark held acknowledged commits: dropping them is not a torn-tail truncation"}),
        ),
    ];
    Explanation {
        explanation_type: types::RECOVERY,
        observed_snapshot: observed(None),
        inputs: json!({"role": role, "report": "refused startup"}),
        rules_applied,
        conclusion: json!({
            "outcome": "refused",
            "code": v.code(),
            "rule_id": v.rule_id(),
            "failure": v.failure(),
            "mark_lsn": mark.end_lsn,
            "mark_commit_id": mark.commit_id,
            "mark_clean_shutdown": mark.clean_shutdown,
            "wal_end_lsn": wal_end.map(|w| w.end_lsn),
            "wal_end_commit_id": wal_end.map(|w| w.commit_id),
            "damaged_from_lsn": from,
            "damaged_to_lsn": to,
            "bytes_truncated": 0,
            "operator_action": MARK_REFUSAL_ACTION,
            "missing_evidence": Vec::<&str>::new(),
        }),
    }
}

// ---------------------------------------------------------------------------
// mvcc.read_visibility
// ---------------------------------------------------------------------------

/// One key and the requested bound.
#[derive(Clone, Copy, Debug)]
pub struct ReadQuery<'a> {
    /// Collection.
    pub collection: &'a str,
    /// Key.
    pub key: &'a str,
    /// Requested R (default: the node's applied CommitId).
    pub at: Option<CommitId>,
}

/// MVCC-1 over one version chain at R: every comparison and the choice.
fn visibility_rule(chain: &[Version], r: CommitId, answerable: Option<bool>, why_not: &str) -> (RuleApplied, Value) {
    let chosen = visible_in(chain, r).map(|v| v.commit_id);
    let versions: Vec<Value> = chain
        .iter()
        .map(|v| {
            json!({
                "commit_id": v.commit_id,
                "kind": if v.doc.is_some() { "put" } else { "tombstone" },
                "doc_bytes": v.doc.as_ref().map(|d| d.len()),
                "comparison": format!("{} <= {}", v.commit_id, r),
                "commit_id_le_read_upper_bound": v.commit_id <= r,
                "chosen": Some(v.commit_id) == chosen,
            })
        })
        .collect();
    let chosen_version = visible_in(chain, r);
    let mut evidence = json!({
        "read_upper_bound": r,
        "version_chain": versions,
        "chosen_commit_id": chosen,
        "rule": "the visible version is the one with the largest CommitId <= R; a tombstone means not found",
    });
    let outcome = match chosen_version {
        Some(v) if v.doc.is_some() => {
            json!({"outcome": "visible", "visible_commit_id": v.commit_id, "tombstone": false, "doc_bytes": v.doc.as_ref().map(|d| d.len())})
        }
        Some(v) => json!({"outcome": "not_found", "visible_commit_id": v.commit_id, "tombstone": true, "doc_bytes": null}),
        None => json!({"outcome": "not_found", "visible_commit_id": null, "tombstone": false, "doc_bytes": null}),
    };
    let evaluation = match answerable {
        Some(true) => Some(true),
        _ => {
            evidence["missing"] = json!(why_not);
            None
        }
    };
    (rule("MVCC-1", evaluation, evidence), outcome)
}

fn read_conclusion(rules_applied: &[RuleApplied], r: CommitId, outcome: Value) -> Value {
    let first_failing = rules_applied.iter().find(|x| x.evaluation == Some(false)).map(|x| x.rule_id);
    let mut c = match (first_failing, verdict(rules_applied)) {
        (Some(_), _) => json!({"outcome": "refused", "visible_commit_id": null, "tombstone": null, "doc_bytes": null}),
        (None, None) => json!({"outcome": "undetermined", "visible_commit_id": null, "tombstone": null, "doc_bytes": null}),
        (None, Some(_)) => outcome,
    };
    c["read_upper_bound"] = json!(r);
    c["refused_by"] = json!(first_failing);
    c["missing_evidence"] = json!(missing_rules(rules_applied));
    c
}

/// `mvcc.read_visibility` on a primary or standalone node. `chain` is the
/// key's version chain (oldest first).
pub fn primary_read_visibility(f: &PrimaryFacts, q: &ReadQuery<'_>, chain: &[Version]) -> Explanation {
    let c = f.applied.commit_id;
    let r = q.at.unwrap_or(c);
    let within = r <= c;
    let above_horizon = r >= f.history_horizon;
    let mut rules_applied = vec![
        rule(
            "MVCC-2",
            Some(within),
            json!({"read_upper_bound": r, "commit_id": c, "check": "R <= C_primary: only durable, fully applied commits are visible"}),
        ),
        rule(
            "RS-4",
            Some(above_horizon),
            json!({"read_upper_bound": r, "history_horizon": f.history_horizon, "check": "R >= history horizon: every version R needs is retained (GC records removed only versions no view at or above the horizon sees, MVCC-4); below it the read is refused"}),
        ),
    ];
    let (mvcc1, outcome) =
        visibility_rule(chain, r, Some(within && above_horizon), "R is outside the answerable range, so the local chain cannot decide what R sees");
    rules_applied.push(mvcc1);
    let conclusion = read_conclusion(&rules_applied, r, outcome);
    Explanation {
        explanation_type: types::READ,
        observed_snapshot: observed(Some(c)),
        inputs: json!({"role": f.role, "collection": q.collection, "key": q.key, "requested_at": q.at, "read_upper_bound": r}),
        rules_applied,
        conclusion,
    }
}

/// `mvcc.read_visibility` on a replica: the read-safety gate for R
/// (RS-1..RS-5), then MVCC-1 over the local chain. `chain` is None when the
/// replica has no store yet.
pub fn replica_read_visibility(f: &ReplicaFacts, q: &ReadQuery<'_>, chain: Option<&[Version]>) -> Explanation {
    let mut inputs = default_read_inputs(&f.observed, f.applied.as_ref(), f.history_horizon.unwrap_or(0));
    inputs.requested_at = q.at;
    let decision = evaluate(&inputs);
    let r = decision.read_upper_bound;
    let mut rules_applied: Vec<RuleApplied> = decision
        .rules
        .iter()
        .map(|x| {
            if f.applied.is_none() && (x.rule_id == "RS-3" || x.rule_id == "RS-4") {
                let mut e = x.evidence.clone();
                e["missing"] = json!("no local state yet: C_replica and the history horizon are unknown");
                rule(x.rule_id, None, e)
            } else {
                rule(x.rule_id, Some(x.evaluation), x.evidence.clone())
            }
        })
        .collect();
    let (mvcc1, outcome) = match chain {
        Some(chain) => visibility_rule(chain, r, Some(decision.admitted), "the read-safety gate does not admit R, so what R would see is not established"),
        None => (rule("MVCC-1", None, json!({"read_upper_bound": r, "missing": "no local state yet: the replica holds no version chain"})), Value::Null),
    };
    rules_applied.push(mvcc1);
    let conclusion = read_conclusion(&rules_applied, r, outcome);
    Explanation {
        explanation_type: types::READ,
        observed_snapshot: observed(f.applied.map(|a| a.commit_id)),
        inputs: json!({"role": "replica", "collection": q.collection, "key": q.key, "requested_at": q.at, "read_upper_bound": r}),
        rules_applied,
        conclusion,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use aerodb_repl_core::halt::{Halt, StorageOp};
    use aerodb_repl_core::ids::{ClusterId, ReplicaId};
    use aerodb_repl_core::metadata::{BootstrapBoundary, BootstrapMethod, ReplicaMetadata, METADATA_FORMAT};
    use aerodb_repl_core::state::{ReplicaState, StateMachine};
    use aerodb_repl_core::status::PrimaryProgress;
    use aerodb_wal::{StateDigest, GENESIS_FINGERPRINT};
    use bytes::Bytes;

    /// A replica's published status after moving through `path` with the
    /// real state machine; bootstrapped when it streams.
    fn replica(path: &[StateKind]) -> ReplicaObserved {
        let mut m = StateMachine::new();
        for kind in path {
            let state = match kind {
                StateKind::Recovering => ReplicaState::Recovering,
                StateKind::Connecting => ReplicaState::Connecting { conn: 1, after: None },
                StateKind::Streaming => ReplicaState::Streaming { conn: 1 },
                other => panic!("not used here: {other:?}"),
            };
            m.transition(state, "test").unwrap();
        }
        let metadata = path.contains(&StateKind::Streaming).then(|| ReplicaMetadata {
            format_version: METADATA_FORMAT,
            cluster_id: ClusterId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            replica_id: ReplicaId::parse("r1").unwrap(),
            bootstrap: BootstrapBoundary {
                method: BootstrapMethod::Wal,
                boundary_commit_id: 0,
                boundary_lsn: 0,
                boundary_fingerprint: GENESIS_FINGERPRINT,
                boundary_state_digest: StateDigest::EMPTY,
            },
        });
        ReplicaObserved {
            state: m.state().clone(),
            handshakes: m.handshakes(),
            reconnects: m.reconnects(),
            positions: Default::default(),
            primary: None,
            lag_ms: None,
            metadata,
            replica_id: ReplicaId::parse("r1").unwrap(),
            name: None,
            bootstrap_method_requested: BootstrapMethod::Wal,
            primary_addr: "127.0.0.1:7701".into(),
            primary_client_addr: None,
            recovery: None,
            transfer: None,
        }
    }

    fn halted(halt: Halt) -> ReplicaObserved {
        let mut o = replica(&[StateKind::Recovering]);
        o.state = ReplicaState::Halted { halt };
        o
    }

    fn facts(o: ReplicaObserved, applied: Option<AppliedState>) -> ReplicaFacts {
        ReplicaFacts {
            observed: o,
            applied,
            history_horizon: applied.map(|_| 0),
            version_count: applied.map(|_| 0),
            gc: None,
            active_read_views: Vec::new(),
            wal_files: Ok(Vec::new()),
            bootstrap_snapshot_bytes: None,
            refusals: Vec::new(),
            http: None,
            scrub: None,
        }
    }

    fn chain() -> Vec<Version> {
        vec![
            Version { commit_id: 2, doc: Some(Bytes::from_static(b"{\"v\":1}")) },
            Version { commit_id: 5, doc: Some(Bytes::from_static(b"{\"v\":22}")) },
            Version { commit_id: 7, doc: None },
        ]
    }

    fn all_explanations() -> Vec<Explanation> {
        let mut streaming = replica(&[StateKind::Recovering, StateKind::Connecting, StateKind::Streaming]);
        streaming.primary = Some(PrimaryProgress { commit_id: 9, durable_lsn: 900 });
        let halted = halted(Halt::Storage { op: StorageOp::PersistWal, detail: "disk full".into() });
        let applied = AppliedState { commit_id: 7, ..AppliedState::GENESIS };
        let c = chain();
        let mut out = Vec::new();
        for (o, a) in [(streaming, Some(applied)), (halted, None), (replica(&[]), None)] {
            let f = facts(o.clone(), a);
            out.push(replica_safety(&f));
            out.extend(replication_halt(&o, a.as_ref()));
            out.push(replica_recovery(&f));
            for at in [None, Some(1), Some(5), Some(7), Some(8)] {
                out.push(replica_read_visibility(&f, &ReadQuery { collection: "c", key: "k", at }, a.map(|_| c.as_slice())));
            }
        }
        let report = json!({"bootstrap": {"method": "wal"}, "wal": {}});
        out.push(recovery_process(&RecoveryInput {
            role: "replica",
            report: Some(&report),
            halt: None,
            replica_state: None,
            commit_id: None,
            durability: None,
            fence: None,
        }));
        out.push(recovery_process(&RecoveryInput {
            role: "primary",
            report: None,
            halt: None,
            replica_state: None,
            commit_id: None,
            durability: None,
            fence: None,
        }));
        out
    }

    /// P5-I15: every rule ID any explanation cites is registered.
    #[test]
    fn p5_i15_every_cited_rule_id_is_registered() {
        for e in all_explanations() {
            for id in e.cited_rule_ids() {
                assert!(rules::rule(id).is_some(), "{} cites unregistered {id}", e.explanation_type);
            }
        }
    }

    /// F-O1: a rule ID the build does not know is reported, not evaluated.
    #[test]
    fn f_o1_unknown_rule_is_reported_not_evaluated() {
        let r = rule("XYZ-9", Some(false), json!({"code": "MADE_UP"}));
        assert_eq!(r.rule_id, "F-O1");
        assert_eq!(r.evaluation, None);
        assert_eq!(r.evidence["cited_rule_id"], "XYZ-9");
        let e = replication_halt(&halted(Halt::Storage { op: StorageOp::PersistWal, detail: "disk full".into() }), None).unwrap();
        assert!(e.cited_rule_ids().iter().all(|id| rules::rule(id).is_some()), "typed halts only cite registered rules");
    }

    /// F-O1: a report missing fields yields null evaluations and an undetermined conclusion.
    #[test]
    fn f_o1_incomplete_recovery_report_is_undetermined() {
        let report = json!({"bootstrap": {"method": "wal"}, "wal": {}});
        let e = recovery_process(&RecoveryInput {
            role: "replica",
            report: Some(&report),
            halt: None,
            replica_state: None,
            commit_id: None,
            durability: None,
            fence: None,
        });
        assert_eq!(e.conclusion["outcome"], "undetermined");
        assert!(e.rules_applied.iter().any(|r| r.evaluation.is_none() && r.evidence["missing"].is_string()));
    }

    /// MVCC-1: each comparison is listed and the largest CommitId <= R is chosen.
    #[test]
    fn mvcc_1_read_visibility_chooses_largest_commit_at_or_below_r() {
        let s = replica(&[StateKind::Recovering, StateKind::Connecting, StateKind::Streaming]);
        let f = facts(s, Some(AppliedState { commit_id: 7, ..AppliedState::GENESIS }));
        let c = chain();
        let at = |r| replica_read_visibility(&f, &ReadQuery { collection: "c", key: "k", at: Some(r) }, Some(&c)).conclusion;
        assert_eq!(at(1)["outcome"], "not_found");
        assert_eq!(at(4)["visible_commit_id"], 2);
        assert_eq!(at(6)["visible_commit_id"], 5);
        assert_eq!(at(7)["tombstone"], true);
        assert_eq!(at(8)["outcome"], "refused");
        assert_eq!(at(8)["refused_by"], "RS-3");
    }

    /// RS-1: a replica that never proved its resume point is unsafe, and the
    /// missing prefix proof is stated.
    #[test]
    fn rs_1_unproven_replica_is_unsafe_with_missing_evidence_stated() {
        let s = replica(&[StateKind::Recovering, StateKind::Connecting]);
        let e = replica_safety(&facts(s, None));
        assert_eq!(e.conclusion["read_safety"], "unsafe");
        assert_eq!(e.conclusion["first_failing_rule"], "RS-1");
        let ids = e.cited_rule_ids();
        assert_eq!(ids, ["RS-1", "RS-2", "RS-3", "RS-4", "RS-5", "P5-I5", "REPL-3"]);
        assert!(e.conclusion["missing_evidence"].as_array().is_some_and(|m| !m.is_empty()));
    }
}
