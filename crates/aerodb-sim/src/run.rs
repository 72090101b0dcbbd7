//! Running seeds: one seed on one thread (bit-identical on replay), many
//! seeds spread over worker threads, and the summary the CLI prints.

use std::sync::atomic::{AtomicU64, Ordering};

use aerodb_wal::plant::Plant;
use serde_json::json;

use crate::faults::FaultCounters;
use crate::net::NodeId;
use crate::primary::{PrimaryConfig, PrimaryNode};
use crate::replica::{ReplicaNode, ReplicaSimConfig};
use crate::rng::{stream, SimRng};
use crate::world::{RunOptions, RunReport, SimNode, World};

/// Runs one seed with `plant` active (when the build has planted bugs).
pub fn run_seed(seed: u64, plant: Option<Plant>, options: &RunOptions) -> RunReport {
    #[cfg(feature = "planted-bugs")]
    let _plant = plant.map(aerodb_wal::plant::activate);
    #[cfg(not(feature = "planted-bugs"))]
    let _ = plant;
    World::new(seed, nodes_for_seed(seed), options.clone()).with_replication_checks(seed).run()
}

/// The nodes of `seed`'s world: the primary (node 0) and 1–3 replicas.
pub fn nodes_for_seed(seed: u64) -> Vec<Box<dyn SimNode>> {
    let primary = PrimaryConfig::for_seed(seed);
    let replicas = SimRng::new(seed, stream::REPLICA_OPTIONS).range(1, 3) as NodeId;
    let mut nodes: Vec<Box<dyn SimNode>> = Vec::new();
    for id in 1..=replicas {
        nodes.push(Box::new(ReplicaNode::new(id, ReplicaSimConfig::for_seed(seed, id, &primary))));
    }
    nodes.insert(0, Box::new(PrimaryNode::new(0, primary)));
    nodes
}

/// Runs seeds `start..start + count` on `threads` worker threads; reports
/// come back in seed order. Each seed runs wholly on one thread, so the
/// thread count never changes a seed's outcome.
pub fn run_seeds(start: u64, count: u64, plant: Option<Plant>, threads: usize, options: &RunOptions) -> Vec<RunReport> {
    let next = AtomicU64::new(0);
    let mut reports: Vec<RunReport> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        mine.push(run_seed(start + i, plant, options));
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    reports.sort_by_key(|r| r.seed);
    reports
}

/// The command that replays `seed`.
pub fn replay_command(seed: u64, plant: Option<Plant>) -> String {
    match plant {
        Some(p) => format!("cargo xtask sim --seed {seed} --plant {}", p.name()),
        None => format!("cargo xtask sim --seed {seed}"),
    }
}

/// One line per failing seed: its first violation and the replay command.
pub fn failure_lines(reports: &[RunReport], plant: Option<Plant>) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| {
            let v = r.violations.first()?;
            let what = v.what.replace(['\n', '\r'], " ");
            Some(format!("FAIL seed {} {} at {} ms on node {}: {what} | replay: {}", r.seed, v.rule, v.at_ms, v.node, replay_command(r.seed, plant)))
        })
        .collect()
}

/// The summary JSON object (the CLI's last stdout line).
pub fn summary(reports: &[RunReport], plant: Option<Plant>, single: bool) -> serde_json::Value {
    let mut faults = FaultCounters::default();
    let mut outcomes: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    // Always reported, zero or not: the durable-mark outcomes (CORE-5).
    for key in ["starts_refused_core_5", "acked_lost_beyond_mark_to_damage"] {
        outcomes.insert(key, 0);
    }
    let mut simulated_ms = 0u64;
    let mut events = 0u64;
    let (mut sent, mut acked, mut failed) = (0u64, 0u64, 0u64);
    for r in reports {
        faults.merge(&r.faults);
        for (k, v) in &r.outcomes {
            *outcomes.entry(k).or_insert(0) += v;
        }
        simulated_ms += r.simulated_ms;
        events += r.events;
        sent += r.requests.0;
        acked += r.requests.1;
        failed += r.requests.2;
    }
    let failing: Vec<u64> = reports.iter().filter(|r| !r.violations.is_empty()).map(|r| r.seed).collect();
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    let mut out = json!({
        "seeds": reports.len(),
        "start_seed": reports.first().map_or(0, |r| r.seed),
        "violations": violations,
        "failing_seeds": failing.iter().take(100).collect::<Vec<_>>(),
        "plant": plant.map(Plant::name),
        "faults": faults.to_json(),
        "faults_total": faults.total(),
        "simulated_seconds": simulated_ms as f64 / 1000.0,
        "events": events,
        "requests": { "sent": sent, "acked": acked, "failed": failed },
        "outcomes": outcomes,
    });
    if single {
        if let (Some(r), Some(obj)) = (reports.first(), out.as_object_mut()) {
            obj.insert("seed".into(), r.seed.into());
            obj.insert("trace_hash".into(), r.trace_hash.clone().into());
            obj.insert("violation_details".into(), serde_json::to_value(&r.violations).unwrap_or_default());
        }
    }
    out
}
