//! The read-safety gate (REPLICATION.md §6, REPL-6, P5-I12): a pure
//! function from what the replica knows now to an admit/refuse decision
//! with every rule's evaluation and evidence, in the fixed order RS-1..RS-5.
//! [`GateInputs::capture`] is the one way to build the inputs, for reads
//! and explanations alike.

use serde::Serialize;
use serde_json::json;

use aerodb_wal::CommitId;

use crate::halt::Reason;
use crate::state::StateKind;
use crate::status::{NodeState, ReplicaObserved};

/// Everything the gate looks at. Captured once per read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateInputs {
    /// Whether the node is `ReplicaActive`: bootstrapped and not halted.
    pub replica_active: bool,
    /// Runtime state.
    pub state: StateKind,
    /// Successful handshakes since this process started.
    pub handshakes_since_start: u64,
    /// Recorded integrity failure code, if any (gap, checksum, divergence).
    pub integrity_failure: Option<String>,
    /// C_replica.
    pub replica_commit_id: CommitId,
    /// History horizon.
    pub history_horizon: CommitId,
    /// Requested bound `at`, if given.
    pub requested_at: Option<CommitId>,
    /// `min_commit`, if given.
    pub min_commit: Option<CommitId>,
}

impl GateInputs {
    /// The inputs for a read (or an explanation of one) now: the replica's
    /// published status, its store's applied CommitId and history horizon
    /// (None before bootstrap), and the request.
    pub fn capture(o: &ReplicaObserved, store: Option<(CommitId, CommitId)>, requested_at: Option<CommitId>, min_commit: Option<CommitId>) -> Self {
        GateInputs {
            replica_active: o.node_state() == NodeState::ReplicaActive,
            state: o.kind(),
            handshakes_since_start: o.handshakes,
            integrity_failure: o.halt().map(|h| h.code().to_string()),
            replica_commit_id: store.map_or(0, |s| s.0),
            history_horizon: store.map_or(0, |s| s.1),
            requested_at,
            min_commit,
        }
    }

    /// R: the requested `at`, or C_replica.
    pub fn read_upper_bound(&self) -> CommitId {
        self.requested_at.unwrap_or(self.replica_commit_id)
    }
}

/// One rule's evaluation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleEvaluation {
    /// Rule ID.
    pub rule_id: &'static str,
    /// What the rule requires.
    pub description: &'static str,
    /// Whether it holds.
    pub evaluation: bool,
    /// The numbers and states it was judged on.
    pub evidence: serde_json::Value,
}

/// The gate's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GateDecision {
    /// R the read would use.
    pub read_upper_bound: CommitId,
    /// Every rule, RS-1..RS-5 in order, none skipped.
    pub rules: Vec<RuleEvaluation>,
    /// Whether the read is admitted (all rules hold).
    pub admitted: bool,
}

impl GateDecision {
    /// The first failing rule, if any.
    pub fn first_failure(&self) -> Option<&RuleEvaluation> {
        self.rules.iter().find(|r| !r.evaluation)
    }

    /// Records the outcome of actually pinning the view at R (RS-5): the
    /// decision is admitted only if the pin held.
    pub fn pinned(&mut self, outcome: Result<CommitId, String>) {
        let r = self.read_upper_bound;
        if let Some(rs5) = self.rules.iter_mut().find(|x| x.rule_id == "RS-5") {
            match outcome {
                Ok(view) => {
                    rs5.evaluation = view == r;
                    rs5.evidence = json!({"read_upper_bound": r, "pinned_view": view, "pinned": view == r});
                }
                Err(reason) => {
                    rs5.evaluation = false;
                    rs5.evidence = json!({"read_upper_bound": r, "pinned": false, "reason": reason});
                }
            }
        }
        self.admitted = self.rules.iter().all(|x| x.evaluation);
    }
}

/// Rule descriptions (as in REPLICATION.md §6).
pub const RS1: &str = "node is ReplicaActive and Streaming, or Disconnected/Connecting after a successful handshake since start";
/// RS-2.
pub const RS2: &str = "no integrity failure is recorded (gap, checksum, divergence)";
/// RS-3.
pub const RS3: &str = "R <= C_replica (and C_replica >= min_commit when given)";
/// RS-4.
pub const RS4: &str = "R >= history horizon";
/// RS-5.
pub const RS5: &str = "the read pins one read view at R for its whole duration";

/// The verdict of each rule RS-1..RS-5 for one read, without evidence:
/// the one place the rules are decided ([`evaluate`] adds the evidence,
/// [`admits`] is the read path's check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdicts {
    /// R.
    pub read_upper_bound: CommitId,
    /// RS-1..RS-5 in order.
    pub rules: [bool; 5],
}

impl Verdicts {
    /// Whether every rule holds.
    pub fn admitted(&self) -> bool {
        self.rules.iter().all(|r| *r)
    }
}

/// Decides RS-1..RS-5 for one read. RS-5 holds when a view at R can be
/// pinned (R lies between the horizon and C_replica).
pub fn verdicts(g: &GateInputs) -> Verdicts {
    let r = g.read_upper_bound();
    let state_ok = match g.state {
        StateKind::Streaming => true,
        // After the first proof since start, a replica that lost its connection keeps
        // serving at C_replica while it reconnects (REPLICATION.md §4, §6 RS-1).
        StateKind::Disconnected | StateKind::Connecting => g.handshakes_since_start > 0,
        _ => false,
    };
    let rs1 = g.replica_active && state_ok;
    let rs2 = g.integrity_failure.is_none();
    let min_ok = g.min_commit.is_none_or(|n| g.replica_commit_id >= n);
    let rs3 = r <= g.replica_commit_id && min_ok;
    let rs4 = r >= g.history_horizon;
    let pinnable = rs1 && rs2 && r <= g.replica_commit_id && rs4;
    Verdicts { read_upper_bound: r, rules: [rs1, rs2, rs3, rs4, pinnable] }
}

/// The read path's gate: `Some(R)` when every rule holds (the same
/// verdicts [`evaluate`] explains), without building any evidence. A
/// refused read is judged again with [`evaluate`] for its explanation.
pub fn admits(g: &GateInputs) -> Option<CommitId> {
    let v = verdicts(g);
    v.admitted().then_some(v.read_upper_bound)
}

/// Evaluates RS-1..RS-5 for one read with every rule's evidence. RS-5
/// holds when a view at R can be pinned (R lies between the horizon and
/// C_replica); a read then records the real pin with
/// [`GateDecision::pinned`].
pub fn evaluate(g: &GateInputs) -> GateDecision {
    let Verdicts { read_upper_bound: r, rules: [rs1, rs2, rs3, rs4, pinnable] } = verdicts(g);
    let rules = vec![
        RuleEvaluation {
            rule_id: "RS-1",
            description: RS1,
            evaluation: rs1,
            evidence: json!({"replica_active": g.replica_active, "replica_state": g.state.name(), "handshakes_since_start": g.handshakes_since_start}),
        },
        RuleEvaluation { rule_id: "RS-2", description: RS2, evaluation: rs2, evidence: json!({"integrity_failure": g.integrity_failure}) },
        RuleEvaluation {
            rule_id: "RS-3",
            description: RS3,
            evaluation: rs3,
            evidence: json!({"read_upper_bound": r, "replica_commit_id": g.replica_commit_id, "min_commit": g.min_commit}),
        },
        RuleEvaluation { rule_id: "RS-4", description: RS4, evaluation: rs4, evidence: json!({"read_upper_bound": r, "history_horizon": g.history_horizon}) },
        RuleEvaluation { rule_id: "RS-5", description: RS5, evaluation: pinnable, evidence: json!({"read_upper_bound": r, "pinnable": pinnable}) },
    ];
    let admitted = rules.iter().all(|x| x.evaluation);
    GateDecision { read_upper_bound: r, rules, admitted }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> GateInputs {
        GateInputs {
            replica_active: true,
            state: StateKind::Streaming,
            handshakes_since_start: 1,
            integrity_failure: None,
            replica_commit_id: 10,
            history_horizon: 0,
            requested_at: None,
            min_commit: None,
        }
    }

    /// RS-1: never before a proven handshake; Disconnected only after one.
    #[test]
    fn rs_1_state_rules() {
        for (state, handshakes, ok) in [
            (StateKind::Streaming, 1, true),
            (StateKind::Disconnected, 1, true),
            (StateKind::Disconnected, 0, false),
            (StateKind::Connecting, 0, false),
            (StateKind::Connecting, 2, true),
            (StateKind::Recovering, 0, false),
            (StateKind::Bootstrapping, 0, false),
            (StateKind::Initializing, 0, false),
            (StateKind::Halted, 3, false),
        ] {
            let d = evaluate(&GateInputs { state, handshakes_since_start: handshakes, ..base() });
            assert_eq!(d.admitted, ok, "{state:?}/{handshakes}");
            assert_eq!(d.rules[0].evaluation, ok);
        }
    }

    /// RS-2: a recorded integrity failure refuses every read.
    #[test]
    fn rs_2_integrity_failure_refuses() {
        let d = evaluate(&GateInputs { integrity_failure: Some("CHECKSUM_MISMATCH".into()), ..base() });
        assert!(!d.admitted);
        assert_eq!(d.first_failure().map(|r| r.rule_id), Some("RS-2"));
    }

    /// RS-3 / F-RS1: R above C_replica, or min_commit not reached, refuses with numbers.
    #[test]
    fn rs_3_bound_and_min_commit() {
        assert!(evaluate(&GateInputs { requested_at: Some(10), ..base() }).admitted);
        let d = evaluate(&GateInputs { requested_at: Some(11), ..base() });
        assert_eq!(d.first_failure().map(|r| r.rule_id), Some("RS-3"));
        let d = evaluate(&GateInputs { min_commit: Some(12), ..base() });
        assert!(!d.admitted);
        assert_eq!(d.rules[2].evidence["min_commit"], 12);
        assert_eq!(d.rules[2].evidence["replica_commit_id"], 10);
        assert!(evaluate(&GateInputs { min_commit: Some(10), ..base() }).admitted);
    }

    /// RS-4: R below the history horizon is refused.
    #[test]
    fn rs_4_history_horizon() {
        let d = evaluate(&GateInputs { requested_at: Some(3), history_horizon: 5, ..base() });
        assert_eq!(d.first_failure().map(|r| r.rule_id), Some("RS-4"));
    }

    /// RS-5 / P5-I12: every rule is evaluated and reported in order, none
    /// skipped; RS-5 is evaluated, and a failed pin refuses the read.
    #[test]
    fn rs_5_all_rules_reported_in_order_and_the_pin_is_evaluated() {
        let d = evaluate(&GateInputs { state: StateKind::Halted, integrity_failure: Some("X".into()), requested_at: Some(99), ..base() });
        let ids: Vec<_> = d.rules.iter().map(|r| r.rule_id).collect();
        assert_eq!(ids, ["RS-1", "RS-2", "RS-3", "RS-4", "RS-5"]);
        assert_eq!(d.first_failure().map(|r| r.rule_id), Some("RS-1"));
        assert!(!d.rules[4].evaluation, "nothing can be pinned for a refused read");
        let mut ok = evaluate(&base());
        assert!(ok.admitted && ok.rules[4].evaluation);
        ok.pinned(Err("below the history horizon 11".into()));
        assert!(!ok.admitted);
        assert_eq!(ok.first_failure().map(|r| r.rule_id), Some("RS-5"));
    }

    /// RS-5 / P5-I12: the read path's check without evidence ([`admits`])
    /// admits exactly the reads [`evaluate`] admits, at the same R, over
    /// every combination of state, handshakes, halt, bounds and horizon.
    #[test]
    fn rs_5_fast_admission_agrees_with_the_explained_gate() {
        let states = [StateKind::Streaming, StateKind::Disconnected, StateKind::Connecting, StateKind::Bootstrapping, StateKind::Halted, StateKind::Recovering];
        let mut cases = 0;
        for state in states {
            for (active, handshakes) in [(true, 0), (true, 1), (false, 1)] {
                for failure in [None, Some("CHECKSUM_MISMATCH".to_string())] {
                    for at in [None, Some(0), Some(4), Some(10), Some(11)] {
                        for min_commit in [None, Some(9), Some(10), Some(11)] {
                            for horizon in [0, 5] {
                                let g = GateInputs {
                                    replica_active: active,
                                    state,
                                    handshakes_since_start: handshakes,
                                    integrity_failure: failure.clone(),
                                    history_horizon: horizon,
                                    requested_at: at,
                                    min_commit,
                                    ..base()
                                };
                                let d = evaluate(&g);
                                assert_eq!(admits(&g), d.admitted.then_some(d.read_upper_bound), "{g:?}");
                                cases += 1;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 6 * 3 * 2 * 5 * 4 * 2);
    }
}
