#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! REPL-10: replication decisions are pure functions of their inputs. The
//! handshake verdict and the read gate take no clock and no hidden state,
//! so the same inputs give the same answer however often and whenever they
//! are asked (the audit separately proves repl-core never reads the clock).

use aerodb_repl_core::gate::{evaluate, GateInputs};
use aerodb_repl_core::handshake::{decide, Hello, HelloRequest, PrimaryHistory, PROTOCOL_VERSION};
use aerodb_repl_core::ids::{ClusterId, ReplicaId};
use aerodb_repl_core::state::StateKind;
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn};

const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

struct History(ClusterId);
impl PrimaryHistory for History {
    fn cluster_id(&self) -> &ClusterId {
        &self.0
    }
    fn durable(&self) -> (Lsn, CommitId) {
        (300, 3)
    }
    fn oldest_retained(&self) -> ChainTip {
        ChainTip::GENESIS
    }
    fn record_end(&self, c: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        Ok((1..=3).contains(&c).then_some((c * 100, Fingerprint(u128::from(c)))))
    }
}

/// REPL-10: the same hello against the same history always gets the same
/// verdict, for every resume point tried, whatever happened in between.
#[test]
fn repl_10_handshake_verdicts_are_pure() {
    let hellos: Vec<Hello> = (0..5u64)
        .flat_map(|c| (0..4u64).map(move |l| (c, l * 100)))
        .map(|(c, l)| Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: Some(ClusterId::parse(CLUSTER).unwrap()),
            replica_id: ReplicaId::parse("r").unwrap(),
            name: None,
            request: HelloRequest::Resume { end_lsn: l, commit_id: c, fingerprint: Fingerprint(u128::from(c)) },
        })
        .collect();
    let history = History(ClusterId::parse(CLUSTER).unwrap());
    let first: Vec<_> = hellos.iter().map(|h| format!("{:?}", decide(&history, h))).collect();
    for _ in 0..3 {
        let again: Vec<_> = hellos.iter().rev().map(|h| format!("{:?}", decide(&history, h))).collect();
        assert_eq!(first, again.into_iter().rev().collect::<Vec<_>>());
    }
}

/// REPL-10 / P5-I12: the gate's verdict depends only on the state and
/// numbers it is given, never on time: lag does not appear among its inputs.
#[test]
fn repl_10_gate_verdicts_are_pure() {
    let states = [StateKind::Streaming, StateKind::Disconnected, StateKind::Connecting, StateKind::Halted];
    for state in states {
        for c in [0u64, 5, 9] {
            let inputs = GateInputs {
                replica_active: state != StateKind::Halted,
                state,
                handshakes_since_start: 1,
                integrity_failure: None,
                replica_commit_id: c,
                history_horizon: 0,
                requested_at: Some(5),
                min_commit: None,
            };
            let a = evaluate(&inputs);
            let b = evaluate(&inputs.clone());
            assert_eq!(a, b);
            assert_eq!(a.admitted, state != StateKind::Halted && c >= 5);
        }
    }
}
