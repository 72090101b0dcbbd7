#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Whole-simulator properties: determinism, the primary harness's
//! invariants on fault-heavy seeds, planted bugs caught, the CLI contract.

use std::process::Command;

use aerodb_sim::run::{run_seed, run_seeds};
use aerodb_sim::world::RunOptions;

/// Short seeds. The heal phase must exceed what the liveness bound has to
/// cover: a segment delayed up to 3 s past a black-holed direction keeps
/// a replica's idle timer (2.5 s) fresh, then a reconnect after at most
/// 1 s of backoff and the catch-up (seed 407 missed a 4 s heal phase by
/// 0.14 s once persists were batched).
fn short() -> RunOptions {
    RunOptions { fault_phase_ms: 6_000, heal_phase_ms: 8_000, ..RunOptions::default() }
}

/// REPL-10: a seed replays bit-identically (same trace hash, same faults,
/// same outcome), whatever the thread count; different seeds differ.
#[test]
fn repl_10_same_seed_replays_with_the_same_trace_hash() {
    let opts = short();
    let a: Vec<_> = (0..4).map(|s| run_seed(s, None, &opts)).collect();
    let b = run_seeds(0, 4, None, 3, &opts);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.trace_hash, y.trace_hash, "seed {}", x.seed);
        assert_eq!(x.faults, y.faults);
        assert_eq!(x.events, y.events);
        assert_eq!(x.violations, y.violations);
    }
    assert_ne!(a[0].trace_hash, a[1].trace_hash);
    assert!(a.iter().all(|r| r.events > 100 && r.faults.total() > 0));
}

/// CORE-1 / CORE-5 / REPL-4 / MVCC-1: on fault-heavy seeds the production
/// primary never loses an acknowledged write, never reuses a CommitId,
/// recovers to the model's digest and answers reads like the model.
#[test]
fn core_1_core_5_primary_harness_holds_every_invariant_under_faults() {
    for r in run_seeds(100, 12, None, 2, &short()) {
        assert!(r.violations.is_empty(), "seed {}: {:?}", r.seed, r.violations);
        assert!(r.requests.1 > 0, "seed {} acknowledged nothing", r.seed);
    }
}

/// Runs seeds 0, 1, ... with `plant` active, a few at a time on two
/// threads, until one fails; returns that seed's first violation. Every
/// plant must be caught within 500 seeds (issue 10).
#[cfg(feature = "planted-bugs")]
fn first_catch(plant: aerodb_wal::plant::Plant, options: &RunOptions) -> (u64, aerodb_sim::world::Violation) {
    const BATCH: u64 = 4;
    for start in (0..500).step_by(BATCH as usize) {
        for r in run_seeds(start, BATCH, Some(plant), 2, options) {
            if let Some(v) = r.violations.first() {
                return (r.seed, v.clone());
            }
        }
    }
    panic!("no seed below 500 caught {}", plant.name());
}

/// CORE-1: the planted `ack-before-fsync` bug (group commit acknowledges
/// at append) is caught within 500 seeds.
#[cfg(feature = "planted-bugs")]
#[test]
fn core_1_planted_ack_before_fsync_is_caught() {
    let (_, v) = first_catch(aerodb_wal::plant::Plant::AckBeforeFsync, &short());
    assert_eq!(v.rule, "CORE-1", "{v:?}");
}

/// CORE-5 / REPL-2: the planted `reuse-commit-id` bug (the writer reuses
/// the last CommitId after recovery) is caught within 500 seeds.
#[cfg(feature = "planted-bugs")]
#[test]
fn core_5_planted_reuse_commit_id_is_caught() {
    let (_, v) = first_catch(aerodb_wal::plant::Plant::ReuseCommitId, &short());
    assert!(["CORE-5", "REPL-2"].contains(&v.rule), "{v:?}");
}

/// CORE-2 / REPL-3: the planted `skip-record-checksum` bug (records are
/// accepted without their crc32c check) is caught within 500 seeds: a
/// record whose checksum bytes were forged in flight is validated and
/// persisted, and the replica's WAL stops being a byte prefix of the
/// primary's.
#[cfg(feature = "planted-bugs")]
#[test]
fn core_2_planted_skip_record_checksum_is_caught() {
    let (_, v) = first_catch(aerodb_wal::plant::Plant::SkipRecordChecksum, &RunOptions::default());
    assert_eq!(v.rule, "REPL-3", "{v:?}");
}

/// REPL-6 / RS-3: the planted `gate-on-received` bug (the read gate judges
/// C_replica on what was received, not applied) is caught within 500
/// seeds: a read with `min_commit` beyond the applied commit is admitted.
#[cfg(feature = "planted-bugs")]
#[test]
fn repl_6_planted_gate_on_received_is_caught() {
    let (_, v) = first_catch(aerodb_wal::plant::Plant::GateOnReceived, &short());
    assert_eq!(v.rule, "RS-3", "{v:?}");
}

/// REPL-4 / F-D3: the planted `skip-digest-check` bug (apply stops
/// comparing state digests) is caught within 500 seeds: a record corrupted
/// in the replica's memory after validation is applied, and the replica's
/// digest differs from the primary's at that CommitId.
#[cfg(feature = "planted-bugs")]
#[test]
fn repl_4_planted_skip_digest_check_is_caught() {
    let (_, v) = first_catch(aerodb_wal::plant::Plant::SkipDigestCheck, &short());
    assert!(["REPL-4", "REPL-6"].contains(&v.rule), "{v:?}");
}

fn sim(args: &[&str]) -> (i32, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_aerodb-sim")).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    (out.status.code().unwrap_or(-1), stdout.lines().map(str::to_string).collect())
}

/// REPL-10: the CLI contract: the last stdout line is one JSON object with
/// `seeds`, `violations`, `faults`, `simulated_seconds` and, for one seed,
/// a `trace_hash` identical on every replay; exit 0 iff no violation;
/// bad usage exits 2; `--plant` needs the planted-bugs build.
#[test]
fn repl_10_cli_prints_a_json_summary_and_replays_identically() {
    let (code, lines) = sim(&["--seed", "7"]);
    assert_eq!(code, 0, "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    for key in ["seeds", "violations", "faults", "simulated_seconds", "trace_hash"] {
        assert!(last.get(key).is_some(), "missing {key}: {last}");
    }
    assert_eq!(last["seeds"], 1);
    assert_eq!(last["violations"], 0);
    assert!(last["faults"].as_object().unwrap().contains_key("crash_power_loss"));
    let (_, again) = sim(&["--seed", "7"]);
    let again: serde_json::Value = serde_json::from_str(again.last().unwrap()).unwrap();
    assert_eq!(last["trace_hash"], again["trace_hash"]);

    let (code, lines) = sim(&["--seeds", "2", "--start-seed", "40"]);
    assert_eq!(code, 0, "{lines:?}");
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["seeds"], 2);
    assert!(last.get("trace_hash").is_none());

    assert_eq!(sim(&["--seeds"]).0, 2);
    assert_eq!(sim(&["--seed", "1", "--seeds", "2"]).0, 2);
    assert_eq!(sim(&["--seed", "1", "--plant", "no-such-bug"]).0, 2);
    if !aerodb_wal::plant::COMPILED {
        assert_eq!(sim(&["--seed", "1", "--plant", "ack-before-fsync"]).0, 2);
    } else {
        let (code, lines) = sim(&["--seeds", "5", "--plant", "ack-before-fsync"]);
        assert_eq!(code, 1);
        assert!(lines[0].contains("replay: cargo xtask sim --seed") && lines[0].contains("--plant ack-before-fsync"), "{lines:?}");
    }
}

/// REPL-3 (the hook the replica harness's prefix check uses): a cross-node
/// check runs after every event, sees every node, can downcast it and read
/// its disk, and its violations fail the seed like a node's own.
#[test]
fn repl_3_world_checks_see_every_node_after_every_event() {
    use std::cell::Cell;
    use std::rc::Rc;

    use aerodb_sim::primary::{PrimaryConfig, PrimaryNode};
    use aerodb_sim::time::SimTime;
    use aerodb_sim::world::{NodeView, SimNode, Violation, World, WorldCheck};

    struct Probe {
        calls: Rc<Cell<u64>>,
        fail_at: u64,
    }
    impl WorldCheck for Probe {
        fn check(&mut self, now: SimTime, nodes: &[NodeView<'_>], out: &mut Vec<Violation>) {
            self.calls.set(self.calls.get() + 1);
            assert_eq!(nodes.len(), 1);
            let primary = nodes[0].node.as_any().downcast_ref::<PrimaryNode>().unwrap();
            if nodes[0].running {
                let store = primary.store().unwrap();
                assert!(store.applied().commit_id >= primary.model().max_acked());
                assert!(aerodb_wal::disk::Disk::exists(nodes[0].disk, &primary.wal_dir()));
            }
            if self.calls.get() == self.fail_at {
                out.push(Violation { at_ms: now.ms(), node: 0, rule: "REPL-3", what: "probe".into() });
            }
        }
    }
    let calls = Rc::new(Cell::new(0));
    let nodes: Vec<Box<dyn SimNode>> = vec![Box::new(PrimaryNode::new(0, PrimaryConfig::for_seed(3)))];
    let mut world = World::new(3, nodes, short());
    world.add_check(Box::new(Probe { calls: calls.clone(), fail_at: 500 }));
    let report = world.run();
    assert_eq!(calls.get(), 500, "stopped at the first violation");
    assert_eq!(report.violations.len(), 1);
    assert_eq!(report.violations[0].rule, "REPL-3");
}

/// REPL-3 / REPL-4 / REPL-6 / F-N1: with 1–3 replicas on the production
/// engine, fault-heavy seeds keep every replica's validated WAL a byte
/// prefix of the primary's, equal digests at equal CommitIds, admitted
/// reads equal to the primary's history, and non-halted replicas caught up
/// at the end; both bootstrap methods, GC records, durable marks, WAL
/// retired by retention (RES-2) and a full crash window all occur.
#[test]
fn repl_3_repl_4_replicas_on_the_production_engine_hold_every_invariant_under_faults() {
    let reports = run_seeds(300, 16, None, 2, &short());
    let mut outcomes = std::collections::BTreeMap::new();
    for r in &reports {
        assert!(r.violations.is_empty(), "seed {}: {:?}", r.seed, r.violations);
        for (k, v) in &r.outcomes {
            *outcomes.entry(*k).or_insert(0u64) += v;
        }
    }
    for key in [
        "bootstraps_wal",
        "bootstraps_snapshot",
        "replica_reads_admitted",
        "replicas_caught_up",
        "gc_records",
        "marks_written",
        "replica_halts",
        "retention_passes_removing_wal",
    ] {
        assert!(outcomes.get(key).copied().unwrap_or(0) > 0, "{key} never happened: {outcomes:?}");
    }
}

/// MVCC-4 / CORE-5: the primary harness writes GC records (checked against
/// the model's own digest subtraction) and durable marks, and requests
/// beyond the crash window wait for the mark and are then committed.
#[test]
fn mvcc_4_core_5_gc_records_and_the_crash_window_are_exercised() {
    let reports = run_seeds(400, 24, None, 2, &short());
    let sum = |key: &str| reports.iter().map(|r| r.outcomes.get(key).copied().unwrap_or(0)).sum::<u64>();
    assert!(reports.iter().all(|r| r.violations.is_empty()), "{:?}", reports.iter().map(|r| &r.violations).collect::<Vec<_>>());
    assert!(sum("gc_records") > 100 && sum("marks_written") > 100, "gc {} marks {}", sum("gc_records"), sum("marks_written"));
    assert!(sum("crash_window_full") > 0, "no request ever waited for the mark");
}
