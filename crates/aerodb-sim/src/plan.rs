//! The fault plan: per seed, a random schedule that injects every fault
//! class at realistic rates during the fault phase, then a heal phase
//! (every fault lifted, every node restarted) after which liveness is
//! checked.
//!
//! The rates themselves are drawn per seed (TigerBeetle's VOPR does the
//! same): some seeds are crash-heavy, some have latent sector errors, some
//! are calm, so a sweep covers both frequent and rare interleavings. Data
//! damage is injected in at most a few places per seed, so a seed tests
//! detection rather than manufacturing a world where nothing could survive.

use std::path::PathBuf;

use crate::disk::{CrashKind, IoClass};
use crate::net::{NetRates, NodeId};
use crate::rng::SimRng;
use crate::time::SimTime;
use crate::trace::{Trace, TraceEncode};

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Crash `node` now; it restarts after `restart_after_ms`.
    Crash {
        /// Node.
        node: NodeId,
        /// Power loss (torn or not) or process kill.
        kind: CrashKind,
        /// Delay before the restart.
        restart_after_ms: u64,
    },
    /// `node`'s process dies after `ops` more mutating disk operations
    /// (mid-commit, mid-snapshot, mid-segment-roll).
    DieAfter {
        /// Node.
        node: NodeId,
        /// Operations that still succeed.
        ops: u64,
    },
    /// `node`'s next start (recovery) dies after `ops` mutating operations.
    DieDuringNextStart {
        /// Node.
        node: NodeId,
        /// Operations that still succeed.
        ops: u64,
    },
    /// `node` handles no event for `for_ms`.
    Pause {
        /// Node.
        node: NodeId,
        /// Duration.
        for_ms: u64,
    },
    /// A bit flip in synced data under the node's directory `under`.
    BitFlip {
        /// Node.
        node: NodeId,
        /// Directory (relative to the node's root; empty = anywhere).
        under: String,
    },
    /// A zeroed sector in synced data.
    ZeroBlock {
        /// Node.
        node: NodeId,
        /// Directory (relative to the node's root).
        under: String,
    },
    /// The node's next append is misdirected.
    Misdirect {
        /// Node.
        node: NodeId,
    },
    /// The next `count` operations of `class` under `under` fail with EIO.
    Eio {
        /// Node.
        node: NodeId,
        /// Reads, writes or fsyncs.
        class: IoClass,
        /// Directory (relative to the node's root).
        under: String,
        /// How many operations fail.
        count: u32,
    },
    /// fsyncs on `node` take `latency_ms` for `for_ms`.
    SlowFsync {
        /// Node.
        node: NodeId,
        /// Window length.
        for_ms: u64,
        /// fsync latency during the window.
        latency_ms: u64,
    },
    /// Partition `a` from `b` (one- or two-way) for `for_ms`.
    Partition {
        /// One side.
        a: NodeId,
        /// Other side.
        b: NodeId,
        /// Only `a → b` blocked.
        one_way: bool,
        /// Until healed.
        for_ms: u64,
    },
    /// Heal the partition between `a` and `b`.
    HealPartition {
        /// One side.
        a: NodeId,
        /// Other side.
        b: NodeId,
    },
    /// Reset every connection between `a` and `b`.
    Reset {
        /// One side.
        a: NodeId,
        /// Other side.
        b: NodeId,
    },
    /// Per-segment network fault rates for `for_ms` (then calm again).
    NetWeather {
        /// The rates.
        rates: NetRates,
        /// Duration.
        for_ms: u64,
    },
    /// Back to calm network rates.
    NetCalm,
}

impl TraceEncode for FaultAction {
    fn encode(&self, t: &mut Trace) {
        let n = |x: NodeId| u64::from(x);
        match self {
            FaultAction::Crash { node, kind, restart_after_ms } => {
                let k = match kind {
                    CrashKind::Process => 0,
                    CrashKind::PowerLoss { torn: false } => 1,
                    CrashKind::PowerLoss { torn: true } => 2,
                };
                t.entry("fault.crash").u64(n(*node)).u64(k).u64(*restart_after_ms)
            }
            FaultAction::DieAfter { node, ops } => t.entry("fault.die_after").u64(n(*node)).u64(*ops),
            FaultAction::DieDuringNextStart { node, ops } => t.entry("fault.die_during_start").u64(n(*node)).u64(*ops),
            FaultAction::Pause { node, for_ms } => t.entry("fault.pause").u64(n(*node)).u64(*for_ms),
            FaultAction::BitFlip { node, under } => t.entry("fault.bit_flip").u64(n(*node)).str(under),
            FaultAction::ZeroBlock { node, under } => t.entry("fault.zero_block").u64(n(*node)).str(under),
            FaultAction::Misdirect { node } => t.entry("fault.misdirect").u64(n(*node)),
            FaultAction::Eio { node, class, under, count } => t.entry("fault.eio").u64(n(*node)).u64(*class as u64).str(under).u64(u64::from(*count)),
            FaultAction::SlowFsync { node, for_ms, latency_ms } => t.entry("fault.slow_fsync").u64(n(*node)).u64(*for_ms).u64(*latency_ms),
            FaultAction::Partition { a, b, one_way, for_ms } => t.entry("fault.partition").u64(n(*a)).u64(n(*b)).u64(u64::from(*one_way)).u64(*for_ms),
            FaultAction::HealPartition { a, b } => t.entry("fault.heal_partition").u64(n(*a)).u64(n(*b)),
            FaultAction::Reset { a, b } => t.entry("fault.reset").u64(n(*a)).u64(n(*b)),
            FaultAction::NetWeather { rates, for_ms } => t
                .entry("fault.net_weather")
                .u64(u64::from(rates.drop_ppm))
                .u64(u64::from(rates.delay_ppm))
                .u64(u64::from(rates.reorder_ppm))
                .u64(u64::from(rates.duplicate_ppm))
                .u64(u64::from(rates.corrupt_ppm))
                .u64(u64::from(rates.forge_ppm))
                .u64(*for_ms),
            FaultAction::NetCalm => t.entry("fault.net_calm"),
        };
    }
}

/// What the plan is generated for.
#[derive(Clone, Debug)]
pub struct PlanConfig {
    /// Nodes in the world (ids `0..nodes`).
    pub nodes: u32,
    /// End of the fault phase (the heal).
    pub heal_at: SimTime,
}

/// Rates drawn for one seed (mean intervals in ms; 0 = never).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlanRates {
    /// Mean time between crashes of some node.
    pub crash_every_ms: u64,
    /// Mean time between pauses.
    pub pause_every_ms: u64,
    /// Latent data damage events in the seed (bit flips, zeroed blocks).
    pub latent_errors: u64,
    /// Misdirected writes in the seed.
    pub misdirected_writes: u64,
    /// Mean time between EIO bursts.
    pub eio_every_ms: u64,
    /// Mean time between slow-fsync windows.
    pub slow_fsync_every_ms: u64,
    /// Mean time between network events (partitions, resets, weather).
    pub net_every_ms: u64,
}

/// A seed's fault schedule.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// The rates it was drawn with.
    pub rates: PlanRates,
    /// Faults in time order.
    pub faults: Vec<(SimTime, FaultAction)>,
}

/// Where a storage fault lands on `node`: its WAL most often, then its
/// snapshots (a primary's `snapshots/`, a replica's `replica/`: metadata,
/// halt file and bootstrap snapshot), sometimes anywhere. Node 0 is the
/// primary.
fn dir_choice(rng: &mut SimRng, node: NodeId) -> String {
    match rng.below(10) {
        0..=5 => "wal".into(),
        6..=8 if node == 0 => "snapshots".into(),
        6..=8 => "replica".into(),
        _ => String::new(),
    }
}

impl FaultPlan {
    /// Draws the plan for one seed from `rng`.
    pub fn generate(rng: &mut SimRng, cfg: &PlanConfig) -> FaultPlan {
        let pick = |rng: &mut SimRng, choices: &[u64]| *rng.pick(choices).unwrap_or(&0);
        let rates = PlanRates {
            crash_every_ms: pick(rng, &[1_500, 3_000, 6_000, 12_000]),
            pause_every_ms: pick(rng, &[0, 5_000, 15_000]),
            latent_errors: pick(rng, &[0, 0, 0, 0, 0, 0, 1, 1, 2, 3]),
            misdirected_writes: pick(rng, &[0, 0, 0, 0, 0, 0, 1, 1]),
            eio_every_ms: pick(rng, &[0, 3_000, 8_000]),
            slow_fsync_every_ms: pick(rng, &[0, 4_000, 10_000]),
            net_every_ms: if cfg.nodes > 1 { pick(rng, &[1_000, 3_000, 8_000]) } else { 0 },
        };
        let end = cfg.heal_at.ms();
        let nodes = cfg.nodes.max(1);
        let mut faults = Vec::new();
        let poisson = |rng: &mut SimRng, every: u64, faults: &mut Vec<(SimTime, FaultAction)>, make: &mut dyn FnMut(&mut SimRng) -> FaultAction| {
            if every == 0 {
                return;
            }
            let mut t = rng.exp_ms(every);
            while t < end {
                faults.push((SimTime(t), make(rng)));
                t += rng.exp_ms(every).max(1);
            }
        };
        poisson(rng, rates.crash_every_ms, &mut faults, &mut |rng| {
            let node = rng.below(u64::from(nodes)) as NodeId;
            match rng.below(10) {
                0..=3 => FaultAction::Crash { node, kind: CrashKind::PowerLoss { torn: rng.ratio(3, 4) }, restart_after_ms: rng.range(10, 2_000) },
                4..=5 => FaultAction::Crash { node, kind: CrashKind::Process, restart_after_ms: rng.range(10, 2_000) },
                6..=7 => FaultAction::DieAfter { node, ops: rng.range(0, 40) },
                _ => FaultAction::DieDuringNextStart { node, ops: rng.range(0, 25) },
            }
        });
        poisson(rng, rates.pause_every_ms, &mut faults, &mut |rng| FaultAction::Pause {
            node: rng.below(u64::from(nodes)) as NodeId,
            for_ms: rng.range(50, 3_000),
        });
        poisson(rng, rates.eio_every_ms, &mut faults, &mut |rng| {
            let class = match rng.below(3) {
                0 => IoClass::Read,
                1 => IoClass::Write,
                _ => IoClass::Sync,
            };
            let node = rng.below(u64::from(nodes)) as NodeId;
            FaultAction::Eio { node, class, under: dir_choice(rng, node), count: rng.range(1, 3) as u32 }
        });
        poisson(rng, rates.slow_fsync_every_ms, &mut faults, &mut |rng| FaultAction::SlowFsync {
            node: rng.below(u64::from(nodes)) as NodeId,
            for_ms: rng.range(200, 3_000),
            latency_ms: rng.range(100, 1_500),
        });
        // Damage lands in the second half of the fault phase: a single node
        // rightly refuses to start on a damaged WAL, which ends what the
        // seed can explore, so the first half always runs undamaged.
        for _ in 0..rates.latent_errors {
            let at = SimTime(rng.range(end / 2, end.saturating_sub(1)));
            let node = rng.below(u64::from(nodes)) as NodeId;
            let under = dir_choice(rng, node);
            let action = if rng.ratio(1, 2) { FaultAction::BitFlip { node, under } } else { FaultAction::ZeroBlock { node, under } };
            faults.push((at, action));
        }
        for _ in 0..rates.misdirected_writes {
            let at = SimTime(rng.range(end / 2, end.saturating_sub(1)));
            faults.push((at, FaultAction::Misdirect { node: rng.below(u64::from(nodes)) as NodeId }));
        }
        if nodes > 1 {
            poisson(rng, rates.net_every_ms, &mut faults, &mut |rng| {
                let a = rng.below(u64::from(nodes)) as NodeId;
                let b = (a + 1 + rng.below(u64::from(nodes) - 1) as NodeId) % nodes;
                match rng.below(3) {
                    0 => FaultAction::Partition { a, b, one_way: rng.ratio(1, 2), for_ms: rng.range(100, 5_000) },
                    1 => FaultAction::Reset { a, b },
                    _ => FaultAction::NetWeather {
                        rates: NetRates {
                            drop_ppm: rng.range(0, 20_000) as u32,
                            delay_ppm: rng.range(0, 20_000) as u32,
                            reorder_ppm: rng.range(0, 20_000) as u32,
                            duplicate_ppm: rng.range(0, 20_000) as u32,
                            corrupt_ppm: rng.range(0, 10_000) as u32,
                            forge_ppm: rng.range(0, 10_000) as u32,
                            ..NetRates::CALM
                        },
                        for_ms: rng.range(500, 5_000),
                    },
                }
            });
        }
        faults.sort_by_key(|(t, _)| *t);
        FaultPlan { rates, faults }
    }
}

/// A node's data directory root in the simulated file system.
pub fn node_root(node: NodeId) -> PathBuf {
    PathBuf::from(format!("/node{node}"))
}
