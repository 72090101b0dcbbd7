//! The simulated world: nodes, their disks, the network, the clients, the
//! fault plan and the event loop that drives them.
//!
//! A node is anything implementing [`SimNode`]. The world calls it with
//! inputs (start, timer, disk completion, network event, client request)
//! and the node acts only through [`Io`]: arm timers, schedule disk
//! completions, connect/send/close, answer clients, report violations.
//! That is the runtime a sans-IO engine's actions are executed by: "send
//! bytes" → [`Io::send`], "arm timer" → [`Io::arm_timer`], "fsync" → the
//! node calls the production function on [`Io::disk`] when the completion
//! event [`Io::disk_done_after`] fires, and so on.
//!
//! After every event the world checks every running node's invariants
//! ([`SimNode::check`]) and crashes any node whose disk "died"
//! ([`crate::disk::SimDisk::die_after`]).

use std::collections::{BTreeMap, VecDeque};

use crate::disk::{CrashKind, SimDisk};
use crate::faults::{FaultClass, FaultCounters};
use crate::net::{NetEvent, NetRates, NodeId, SimNet};
use crate::plan::{node_root, FaultAction, FaultPlan, PlanConfig};
use crate::rng::{stream, SimRng};
use crate::sched::Scheduler;
use crate::time::SimTime;
use crate::trace::{Trace, TraceEncode};

/// A client request id: `(client << 32) | sequence`.
pub type RequestId = u64;

/// Everything that can happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Something from the network for a node.
    Net(NetEvent),
    /// A network event already admitted, held while its node was paused.
    NetHeld(NetEvent),
    /// A timer a node armed.
    Timer {
        /// Node.
        node: NodeId,
        /// The process incarnation that armed it (stale ones are dropped).
        incarnation: u64,
        /// The node's token.
        token: u64,
    },
    /// A disk operation a node started completes (e.g. an fsync).
    DiskDone {
        /// Node.
        node: NodeId,
        /// The process incarnation that started it.
        incarnation: u64,
        /// The node's token.
        token: u64,
    },
    /// A client issues its next request.
    Client {
        /// Client index.
        client: u32,
    },
    /// A fault from the plan.
    Fault(FaultAction),
    /// A crashed node's process starts again.
    Restart {
        /// Node.
        node: NodeId,
    },
    /// A paused node resumes.
    Resume {
        /// Node.
        node: NodeId,
    },
    /// A slow-fsync window ends.
    FsyncNormal {
        /// Node.
        node: NodeId,
    },
    /// End of the fault phase.
    Heal,
    /// End of the run.
    End,
}

impl From<NetEvent> for Event {
    fn from(e: NetEvent) -> Self {
        Event::Net(e)
    }
}

impl TraceEncode for Event {
    fn encode(&self, t: &mut Trace) {
        match self {
            Event::Net(e) => e.encode(t),
            Event::NetHeld(e) => {
                t.entry("held");
                e.encode(t);
            }
            Event::Timer { node, incarnation, token } => {
                t.entry("timer").u64(u64::from(*node)).u64(*incarnation).u64(*token);
            }
            Event::DiskDone { node, incarnation, token } => {
                t.entry("disk_done").u64(u64::from(*node)).u64(*incarnation).u64(*token);
            }
            Event::Client { client } => {
                t.entry("client").u64(u64::from(*client));
            }
            Event::Fault(f) => f.encode(t),
            Event::Restart { node } => {
                t.entry("restart").u64(u64::from(*node));
            }
            Event::Resume { node } => {
                t.entry("resume").u64(u64::from(*node));
            }
            Event::FsyncNormal { node } => {
                t.entry("fsync_normal").u64(u64::from(*node));
            }
            Event::Heal => {
                t.entry("heal");
            }
            Event::End => {
                t.entry("end");
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Net,
    NetHeld,
    Other,
}

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// Simulated time (ms).
    pub at_ms: u64,
    /// Node.
    pub node: NodeId,
    /// Rule ID it breaks.
    pub rule: &'static str,
    /// What happened, with evidence.
    pub what: String,
}

/// How a client request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    /// Acknowledged with this CommitId.
    Acked(u64),
    /// Refused or failed (may or may not have been written).
    Failed(&'static str),
}

/// How a start (recovery) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// Running.
    Up,
    /// Failed for a transient reason (an injected IO error, the disk died):
    /// the operator restarts it later.
    Retry,
    /// Refused to start for a legitimate, reported reason: it stays down.
    Refused {
        /// Stable code.
        code: &'static str,
        /// Rule ID.
        rule: &'static str,
    },
}

/// What a node's handlers may do.
pub struct Io<'a> {
    node: NodeId,
    incarnation: u64,
    sched: &'a mut Scheduler<Event>,
    net: &'a mut SimNet,
    disk: &'a SimDisk,
    rng: &'a mut SimRng,
    env: &'a mut Env,
}

/// World state nodes report into.
#[derive(Default)]
pub struct Env {
    violations: Vec<Violation>,
    replies: Vec<(RequestId, ClientOutcome)>,
    slow_fsync: BTreeMap<NodeId, u64>,
    counters: FaultCounters,
    acks_after_heal: u64,
    healed: bool,
    outcomes: BTreeMap<&'static str, u64>,
}

impl Io<'_> {
    /// Current simulated time.
    pub fn now(&self) -> SimTime {
        self.sched.now()
    }
    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }
    /// The node's disk.
    pub fn disk(&self) -> &SimDisk {
        self.disk
    }
    /// The node's random stream.
    pub fn rng(&mut self) -> &mut SimRng {
        self.rng
    }
    /// Fires [`SimNode::on_timer`] with `token` after `after_ms` (dropped
    /// if the process crashes first).
    pub fn arm_timer(&mut self, after_ms: u64, token: u64) {
        let (node, incarnation) = (self.node, self.incarnation);
        self.sched.after(after_ms, Event::Timer { node, incarnation, token });
    }
    /// Fires [`SimNode::on_disk_done`] with `token` after `after_ms`.
    pub fn disk_done_after(&mut self, after_ms: u64, token: u64) {
        let (node, incarnation) = (self.node, self.incarnation);
        self.sched.after(after_ms, Event::DiskDone { node, incarnation, token });
    }
    /// How long an fsync issued now takes (slow during a slow-fsync fault).
    pub fn fsync_latency(&mut self) -> u64 {
        match self.env.slow_fsync.get(&self.node) {
            Some(ms) => {
                self.env.counters.bump(FaultClass::SlowFsync);
                *ms
            }
            None => self.rng.range(1, 12),
        }
    }
    /// Starts a connection to `to`.
    pub fn connect(&mut self, to: NodeId) -> crate::net::ConnId {
        self.net.connect(self.sched, self.node, to)
    }
    /// Sends one segment (one frame) on `conn`.
    pub fn send(&mut self, conn: crate::net::ConnId, bytes: Vec<u8>) {
        self.net.send(self.sched, conn, self.node, bytes);
    }
    /// Closes `conn`.
    pub fn close(&mut self, conn: crate::net::ConnId) {
        self.net.close(self.sched, conn, self.node);
    }
    /// Whether this node may send more on `conn` (flow control).
    pub fn window_open(&self, conn: crate::net::ConnId) -> bool {
        self.net.window_open(conn, self.node)
    }
    /// Waits for `conn`'s window: [`crate::net::NetEvent::Writable`] follows.
    pub fn wait_writable(&mut self, conn: crate::net::ConnId) {
        self.net.wait_writable(self.sched, conn, self.node);
    }
    /// This node's application took `n` bytes of `conn` from its socket buffer.
    pub fn consumed(&mut self, conn: crate::net::ConnId, n: u64) {
        self.net.consumed(self.sched, conn, self.node, n);
    }
    /// Answers a client request.
    pub fn reply(&mut self, request: RequestId, outcome: ClientOutcome) {
        if self.env.healed && matches!(outcome, ClientOutcome::Acked(_)) {
            self.env.acks_after_heal += 1;
        }
        self.env.replies.push((request, outcome));
    }
    /// Reports a broken invariant.
    pub fn violation(&mut self, rule: &'static str, what: String) {
        let at_ms = self.now().ms();
        self.sched.trace().entry("violation").u64(u64::from(self.node)).str(rule).str(&what);
        self.env.violations.push(Violation { at_ms, node: self.node, rule, what });
    }
    /// The trace, to record outcomes.
    pub fn trace(&mut self) -> &mut Trace {
        self.sched.trace()
    }
    /// Counts an injected fault of `class` (the harness injected it itself).
    pub fn fault(&mut self, class: FaultClass) {
        self.env.counters.bump(class);
    }
    /// Counts a notable outcome (reported in the summary's `outcomes`).
    pub fn count(&mut self, outcome: &'static str) {
        *self.env.outcomes.entry(outcome).or_insert(0) += 1;
    }
    /// Whether the heal phase has begun.
    pub fn healed(&self) -> bool {
        self.env.healed
    }
}

/// A start failed: transient (a retry) if a fault was injected during it,
/// a legitimate refusal (the node stays down) if a fault damaged stored
/// data on its disk, otherwise a violation of `rule`: a node must start on
/// an undamaged disk.
pub fn start_failed(io: &mut Io<'_>, errors_before: u64, code: &'static str, rule: &'static str, what: String) -> StartOutcome {
    let disk = io.disk().clone();
    io.trace().entry("start_failed").str(code);
    if disk.injected_errors() > errors_before || disk.is_dead() {
        io.count("start_retried");
        return StartOutcome::Retry;
    }
    if disk.ever_damaged() {
        io.count("start_refused_damaged");
        return StartOutcome::Refused { code, rule };
    }
    io.violation(rule, format!("start refused on a disk no fault damaged: {code}: {what}"));
    StartOutcome::Refused { code, rule }
}

/// A simulated node (its process). The world owns its disk.
pub trait SimNode {
    /// Starts the process: open (initialise if new) and recover the data
    /// directory on `io.disk()`.
    fn start(&mut self, io: &mut Io<'_>) -> StartOutcome;
    /// The process dies: drop all in-memory state. Returns the client
    /// requests it was holding (their outcome is unknown to the client).
    fn kill(&mut self) -> Vec<RequestId>;
    /// A timer armed by this incarnation fired.
    fn on_timer(&mut self, io: &mut Io<'_>, token: u64);
    /// A disk completion started by this incarnation fired.
    fn on_disk_done(&mut self, io: &mut Io<'_>, token: u64);
    /// A network event.
    fn on_net(&mut self, io: &mut Io<'_>, event: NetEvent);
    /// A client write set. Returns false if this node does not take writes.
    fn on_client(&mut self, io: &mut Io<'_>, request: RequestId, ops: Vec<aerodb_mvcc::ClientOp>) -> bool;
    /// Invariants, checked after every event while the node runs.
    fn check(&mut self, io: &mut Io<'_>);
    /// Whether the process wants an operator restart (e.g. writes stopped
    /// after a WAL failure).
    fn needs_restart(&self) -> bool;
    /// Liveness at the end of the run (after the heal phase).
    fn check_liveness(&mut self, io: &mut Io<'_>);
    /// The concrete node, for cross-node checks ([`WorldCheck`]) to downcast.
    fn as_any(&self) -> &dyn std::any::Any;
    /// When the process first starts (simulated ms; default at once).
    fn first_start_ms(&self) -> u64 {
        0
    }
    /// The heal phase began and this node refused to start: whether the
    /// operator acts (e.g. a replica's `--rebootstrap`) and it starts again.
    fn operator_restart(&mut self) -> bool {
        false
    }
}

/// What a cross-node check sees of one node.
pub struct NodeView<'a> {
    /// Node id.
    pub id: NodeId,
    /// Whether its process runs (and is not paused).
    pub running: bool,
    /// Whether it refused to start for a legitimate reason (stays down).
    pub refused: bool,
    /// Its disk (current and synced bytes of any file).
    pub disk: &'a SimDisk,
    /// The node (downcast with `as_any()`).
    pub node: &'a dyn SimNode,
}

/// An invariant over several nodes (e.g. "every replica's WAL is a byte
/// prefix of the primary's", "equal digests at equal CommitIds"), checked
/// after every event next to each node's own [`SimNode::check`].
pub trait WorldCheck {
    /// Reports violations into `out`.
    fn check(&mut self, now: SimTime, nodes: &[NodeView<'_>], out: &mut Vec<Violation>);
    /// Liveness after the heal phase (default: nothing).
    fn check_liveness(&mut self, _now: SimTime, _nodes: &[NodeView<'_>], _out: &mut Vec<Violation>) {}
    /// Outcome counters to report in the run's `outcomes` (default: none).
    fn outcomes(&self) -> BTreeMap<&'static str, u64> {
        BTreeMap::new()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Up,
    Down,
    Refused,
}

struct Slot {
    node: Box<dyn SimNode>,
    disk: SimDisk,
    rng: SimRng,
    status: Status,
    incarnation: u64,
    paused: bool,
    deferred: VecDeque<Event>,
    restart_pending: bool,
    die_on_start: Option<u64>,
    /// When the process last went down.
    down_since: SimTime,
}

/// Client workload: each client issues write sets over a small key space
/// (so overwrites and deletes of live keys are common), one at a time.
pub struct Workload {
    rng: SimRng,
    clients: u32,
    keys: u64,
    collections: u64,
    think_ms: u64,
    seq: BTreeMap<u32, u64>,
    /// Requests sent, acknowledged, failed.
    pub stats: (u64, u64, u64),
}

impl Workload {
    fn new(seed: u64) -> Self {
        let mut rng = SimRng::new(seed, stream::WORKLOAD);
        let clients = rng.range(1, 4) as u32;
        let keys = *rng.pick(&[4u64, 16, 64]).unwrap_or(&16);
        let collections = rng.range(1, 2);
        let think_ms = *rng.pick(&[20u64, 60, 150]).unwrap_or(&60);
        Workload { rng, clients, keys, collections, think_ms, seq: BTreeMap::new(), stats: (0, 0, 0) }
    }

    fn write_set(&mut self, client: u32, seq: u64) -> Vec<aerodb_mvcc::ClientOp> {
        let n = self.rng.range(1, 4);
        let mut used = std::collections::BTreeSet::new();
        let mut ops = Vec::new();
        for i in 0..n {
            let coll = format!("c{}", self.rng.below(self.collections));
            let key = format!("k{}", self.rng.below(self.keys));
            if !used.insert((coll.clone(), key.clone())) {
                continue;
            }
            if self.rng.ratio(1, 5) {
                ops.push(aerodb_mvcc::ClientOp::Delete { collection: coll, key });
            } else {
                let pad = "x".repeat(self.rng.below(200) as usize);
                let doc = format!("{{\"client\":{client},\"seq\":{seq},\"op\":{i},\"pad\":\"{pad}\"}}");
                ops.push(aerodb_mvcc::ClientOp::Put { collection: coll, key, doc: bytes::Bytes::from(doc) });
            }
        }
        ops
    }
}

/// A node down for less than this at the end is restarting, not stuck.
const RESTART_GRACE_MS: u64 = 1_000;

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Length of the fault phase.
    pub fault_phase_ms: u64,
    /// Length of the heal phase (liveness window).
    pub heal_phase_ms: u64,
    /// Clients stop writing this long before the end, so replicas can be
    /// required to have caught up with the primary at the end (the
    /// liveness bound).
    pub quiet_ms: u64,
    /// Stop at the first violation.
    pub stop_at_first_violation: bool,
    /// Print every event to stderr (debugging a seed).
    pub verbose: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { fault_phase_ms: 20_000, heal_phase_ms: 10_000, quiet_ms: 4_000, stop_at_first_violation: true, verbose: false }
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Broken invariants.
    pub violations: Vec<Violation>,
    /// Faults injected, per class.
    pub faults: FaultCounters,
    /// Simulated time covered.
    pub simulated_ms: u64,
    /// Events processed.
    pub events: u64,
    /// Trace hash.
    pub trace_hash: String,
    /// Client requests (sent, acknowledged, failed).
    pub requests: (u64, u64, u64),
    /// Notable outcomes counted by nodes (recoveries, refusals, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
}

/// The world of one seed.
pub struct World {
    seed: u64,
    sched: Scheduler<Event>,
    net: SimNet,
    slots: Vec<Slot>,
    env: Env,
    workload: Workload,
    options: RunOptions,
    checks: Vec<Box<dyn WorldCheck>>,
}

impl World {
    /// Adds a cross-node invariant, checked after every event.
    pub fn add_check(&mut self, check: Box<dyn WorldCheck>) {
        self.checks.push(check);
    }

    /// Adds the replication invariants ([`crate::checks::ReplicationChecks`])
    /// when the world has replicas.
    #[must_use]
    pub fn with_replication_checks(mut self, seed: u64) -> Self {
        if self.slots.len() > 1 {
            self.add_check(Box::new(crate::checks::ReplicationChecks::new(seed)));
        }
        self
    }

    fn views(&self) -> Vec<NodeView<'_>> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| NodeView {
                id: i as NodeId,
                running: s.status == Status::Up && !s.paused,
                refused: s.status == Status::Refused,
                disk: &s.disk,
                node: &*s.node,
            })
            .collect()
    }

    fn run_world_checks(&mut self, liveness: bool) {
        if self.checks.is_empty() {
            return;
        }
        let mut checks = std::mem::take(&mut self.checks);
        let mut out = Vec::new();
        let now = self.sched.now();
        {
            let views = self.views();
            for c in &mut checks {
                if liveness {
                    c.check_liveness(now, &views, &mut out);
                } else {
                    c.check(now, &views, &mut out);
                }
            }
        }
        self.checks = checks;
        for v in out {
            self.sched.trace().entry("violation").u64(u64::from(v.node)).str(v.rule).str(&v.what);
            self.env.violations.push(v);
        }
    }

    /// A world running `nodes` (node `i` gets its own disk with `/node<i>`
    /// created durably). Node 0 takes the client writes.
    pub fn new(seed: u64, nodes: Vec<Box<dyn SimNode>>, options: RunOptions) -> World {
        let slots = nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                let id = i as u64;
                let disk = SimDisk::new(SimRng::new(seed, stream::DISK + id));
                // The operator created the data directory; only what the node writes is at risk.
                let _ = disk.mkdir_durable(&node_root(i as NodeId));
                Slot {
                    node,
                    disk,
                    rng: SimRng::new(seed, stream::NODE + id),
                    status: Status::Down,
                    incarnation: 0,
                    paused: false,
                    deferred: VecDeque::new(),
                    restart_pending: false,
                    die_on_start: None,
                    down_since: SimTime::ZERO,
                }
            })
            .collect();
        World {
            seed,
            sched: Scheduler::new(),
            net: SimNet::new(SimRng::new(seed, stream::NET)),
            slots,
            env: Env::default(),
            workload: Workload::new(seed),
            options,
            checks: Vec::new(),
        }
    }

    fn io<'a>(slot: &'a mut Slot, node: NodeId, sched: &'a mut Scheduler<Event>, net: &'a mut SimNet, env: &'a mut Env) -> (&'a mut Box<dyn SimNode>, Io<'a>) {
        let io = Io { node, incarnation: slot.incarnation, sched, net, disk: &slot.disk, rng: &mut slot.rng, env };
        (&mut slot.node, io)
    }

    /// Runs the seed to the end and reports.
    pub fn run(mut self) -> RunReport {
        let heal_at = SimTime(self.options.fault_phase_ms);
        let end = heal_at.plus(self.options.heal_phase_ms);
        let plan = FaultPlan::generate(&mut SimRng::new(self.seed, stream::PLAN), &PlanConfig { nodes: self.slots.len() as u32, heal_at });
        for (at, f) in plan.faults {
            self.sched.at(at, Event::Fault(f));
        }
        for node in 0..self.slots.len() as NodeId {
            let first = self.slots.get(node as usize).map_or(0, |s| s.node.first_start_ms());
            self.sched.at(SimTime(first), Event::Restart { node });
        }
        for client in 0..self.workload.clients {
            let delay = self.workload.rng.range(1, 20);
            self.sched.after(delay, Event::Client { client });
        }
        self.sched.at(heal_at, Event::Heal);
        self.sched.at(end, Event::End);
        while let Some((now, event)) = self.sched.pop() {
            if self.options.verbose && !matches!(event, Event::Client { .. } | Event::Timer { .. } | Event::DiskDone { .. }) {
                eprintln!("{now} {event:?}");
            }
            if event == Event::End {
                break;
            }
            self.dispatch(event);
            self.after_event();
            if self.options.stop_at_first_violation && !self.env.violations.is_empty() {
                break;
            }
        }
        if self.env.violations.is_empty() || !self.options.stop_at_first_violation {
            self.liveness();
        }
        for c in &self.checks {
            for (k, v) in c.outcomes() {
                *self.env.outcomes.entry(k).or_insert(0) += v;
            }
        }
        let mut faults = self.env.counters.clone();
        faults.merge(self.net.counters());
        for s in &self.slots {
            faults.merge(&s.disk.counters());
        }
        let trace_hash = self.sched.trace_hex();
        RunReport {
            seed: self.seed,
            violations: self.env.violations,
            faults,
            simulated_ms: self.sched.now().ms(),
            events: self.sched.processed(),
            trace_hash,
            requests: self.workload.stats,
            outcomes: self.env.outcomes,
        }
    }

    fn dispatch(&mut self, event: Event) {
        let event_kind = match &event {
            Event::Net(_) => EventKind::Net,
            Event::NetHeld(_) => EventKind::NetHeld,
            _ => EventKind::Other,
        };
        match event {
            Event::Net(e) | Event::NetHeld(e) => {
                let node = e.node();
                if event_kind == EventKind::Net && !self.net.admit(&e) {
                    return;
                }
                let Some(slot) = self.slots.get_mut(node as usize) else { return };
                if slot.status != Status::Up {
                    return;
                }
                if slot.paused {
                    slot.deferred.push_back(Event::NetHeld(e));
                    return;
                }
                let (n, mut io) = Self::io(slot, node, &mut self.sched, &mut self.net, &mut self.env);
                n.on_net(&mut io, e);
            }
            Event::Timer { node, incarnation, token } | Event::DiskDone { node, incarnation, token } => {
                let Some(slot) = self.slots.get_mut(node as usize) else { return };
                if slot.incarnation != incarnation || slot.status != Status::Up {
                    return;
                }
                if slot.paused {
                    slot.deferred.push_back(event);
                    return;
                }
                let is_timer = matches!(event, Event::Timer { .. });
                let (n, mut io) = Self::io(slot, node, &mut self.sched, &mut self.net, &mut self.env);
                if is_timer {
                    n.on_timer(&mut io, token);
                } else {
                    n.on_disk_done(&mut io, token);
                }
            }
            Event::Client { client } => self.client(client),
            Event::Fault(f) => self.fault(f),
            Event::Restart { node } => self.restart(node),
            Event::Resume { node } => {
                let Some(slot) = self.slots.get_mut(node as usize) else { return };
                slot.paused = false;
                let deferred: Vec<Event> = slot.deferred.drain(..).collect();
                for e in deferred {
                    self.sched.after(0, e);
                }
            }
            Event::FsyncNormal { node } => {
                self.env.slow_fsync.remove(&node);
            }
            Event::Heal => self.heal(),
            Event::End => {}
        }
    }

    fn client(&mut self, client: u32) {
        // Writing stops `quiet_ms` before the end, but never before half of the heal phase passed.
        let quiet = self.options.quiet_ms.min(self.options.heal_phase_ms / 2);
        let quiet_from = self.options.fault_phase_ms + self.options.heal_phase_ms - quiet;
        if self.sched.now().ms() >= quiet_from {
            return;
        }
        let seq = {
            let s = self.workload.seq.entry(client).or_insert(0);
            *s += 1;
            *s
        };
        let request = (u64::from(client) << 32) | seq;
        let ops = self.workload.write_set(client, seq);
        self.workload.stats.0 += 1;
        let Some(slot) = self.slots.get_mut(0) else { return };
        if slot.paused && slot.status == Status::Up {
            // The request waits in the paused process's socket buffer.
            slot.deferred.push_back(Event::Client { client });
            self.workload.stats.0 -= 1;
            if let Some(s) = self.workload.seq.get_mut(&client) {
                *s -= 1;
            }
            return;
        }
        let accepted = slot.status == Status::Up && {
            let (n, mut io) = Self::io(slot, 0, &mut self.sched, &mut self.net, &mut self.env);
            n.on_client(&mut io, request, ops)
        };
        if !accepted {
            self.env.replies.push((request, ClientOutcome::Failed("UNAVAILABLE")));
        }
    }

    fn fault(&mut self, f: FaultAction) {
        if self.env.healed {
            return;
        }
        match f {
            FaultAction::Crash { node, kind, restart_after_ms } => {
                let class = match kind {
                    CrashKind::Process => FaultClass::CrashProcess,
                    CrashKind::PowerLoss { .. } => FaultClass::CrashPowerLoss,
                };
                if self.crash(node, kind, restart_after_ms) {
                    self.env.counters.bump(class);
                }
            }
            FaultAction::DieAfter { node, ops } => {
                if let Some(s) = self.slots.get(node as usize).filter(|s| s.status == Status::Up) {
                    s.disk.die_after(ops);
                }
            }
            FaultAction::DieDuringNextStart { node, ops } => {
                if let Some(s) = self.slots.get_mut(node as usize) {
                    s.die_on_start = Some(ops);
                }
            }
            FaultAction::Pause { node, for_ms } => {
                if let Some(s) = self.slots.get_mut(node as usize).filter(|s| s.status == Status::Up && !s.paused) {
                    s.paused = true;
                    self.env.counters.bump(FaultClass::Pause);
                    self.sched.after(for_ms, Event::Resume { node });
                }
            }
            FaultAction::BitFlip { node, under } => {
                if let Some(s) = self.slots.get(node as usize) {
                    let hit = s.disk.flip_random_bit(&node_root(node).join(&under));
                    self.sched.trace().entry("bit_flip").u64(u64::from(node)).str(&format!("{hit:?}"));
                }
            }
            FaultAction::ZeroBlock { node, under } => {
                if let Some(s) = self.slots.get(node as usize) {
                    let hit = s.disk.zero_random_block(&node_root(node).join(&under));
                    self.sched.trace().entry("zero_block").u64(u64::from(node)).str(&format!("{hit:?}"));
                }
            }
            FaultAction::Misdirect { node } => {
                if let Some(s) = self.slots.get(node as usize) {
                    s.disk.misdirect_next_append(Some(&node_root(node)));
                }
            }
            FaultAction::Eio { node, class, under, count } => {
                if let Some(s) = self.slots.get(node as usize) {
                    s.disk.fail_next(class, Some(&node_root(node).join(&under)), count);
                }
            }
            FaultAction::SlowFsync { node, for_ms, latency_ms } => {
                self.env.slow_fsync.insert(node, latency_ms);
                self.sched.after(for_ms, Event::FsyncNormal { node });
            }
            FaultAction::Partition { a, b, one_way, for_ms } => {
                self.net.partition(a, b, one_way);
                self.sched.after(for_ms, Event::Fault(FaultAction::HealPartition { a, b }));
            }
            FaultAction::HealPartition { a, b } => self.net.heal_partition(a, b),
            FaultAction::Reset { a, b } => {
                self.net.reset_between(&mut self.sched, a, b);
            }
            FaultAction::NetWeather { rates, for_ms } => {
                self.net.set_rates(rates);
                self.sched.after(for_ms, Event::Fault(FaultAction::NetCalm));
            }
            FaultAction::NetCalm => self.net.set_rates(NetRates::CALM),
        }
    }

    /// Crashes `node` if it runs; schedules its restart. Returns whether it ran.
    fn crash(&mut self, node: NodeId, kind: CrashKind, restart_after_ms: u64) -> bool {
        let Some(slot) = self.slots.get_mut(node as usize) else { return false };
        if slot.status != Status::Up {
            return false;
        }
        let lost = slot.node.kill();
        for request in lost {
            self.env.replies.push((request, ClientOutcome::Failed("CONNECTION_LOST")));
        }
        slot.disk.crash(kind);
        if self.options.verbose {
            eprintln!("{} node {node} crashed: {kind:?}", self.sched.now());
        }
        slot.incarnation += 1;
        slot.status = Status::Down;
        slot.down_since = self.sched.now();
        slot.paused = false;
        // Clients waiting on the paused process see their connection drop and retry.
        let waiting: Vec<u32> = slot.deferred.drain(..).filter_map(|e| if let Event::Client { client } = e { Some(client) } else { None }).collect();
        for client in waiting {
            let delay = self.workload.rng.range(20, 500);
            self.sched.after(delay, Event::Client { client });
        }
        self.net.node_down(&mut self.sched, node);
        self.sched.trace().entry("crashed").u64(u64::from(node));
        if !slot.restart_pending {
            slot.restart_pending = true;
            self.sched.after(restart_after_ms, Event::Restart { node });
        }
        true
    }

    fn restart(&mut self, node: NodeId) {
        let Some(slot) = self.slots.get_mut(node as usize) else { return };
        slot.restart_pending = false;
        if slot.status != Status::Down {
            return;
        }
        if let Some(ops) = slot.die_on_start.take().filter(|_| !self.env.healed) {
            slot.disk.die_after(ops);
        }
        slot.incarnation += 1;
        let (n, mut io) = Self::io(slot, node, &mut self.sched, &mut self.net, &mut self.env);
        let outcome = n.start(&mut io);
        let code = match &outcome {
            StartOutcome::Up => "up",
            StartOutcome::Retry => "retry",
            StartOutcome::Refused { code, .. } => code,
        };
        self.sched.trace().entry("started").u64(u64::from(node)).str(code);
        if self.options.verbose {
            eprintln!("{} node {node} start: {code}", self.sched.now());
        }
        let Some(slot) = self.slots.get_mut(node as usize) else { return };
        match outcome {
            StartOutcome::Up if !slot.disk.is_dead() => {
                slot.status = Status::Up;
                self.net.set_up(node, true);
            }
            StartOutcome::Refused { .. } => slot.status = Status::Refused,
            _ => {
                // Transient (or the process died during recovery): crash what
                // is left and let the operator try again.
                let lost = slot.node.kill();
                for request in lost {
                    self.env.replies.push((request, ClientOutcome::Failed("CONNECTION_LOST")));
                }
                let kind = if slot.rng.ratio(1, 2) { CrashKind::PowerLoss { torn: true } } else { CrashKind::Process };
                slot.disk.crash(kind);
                slot.incarnation += 1;
                slot.restart_pending = true;
                slot.down_since = self.sched.now();
                let delay = slot.rng.range(50, 1_000);
                self.sched.after(delay, Event::Restart { node });
            }
        }
    }

    fn heal(&mut self) {
        self.env.healed = true;
        self.net.heal_all();
        self.env.slow_fsync.clear();
        for node in 0..self.slots.len() as NodeId {
            let Some(slot) = self.slots.get_mut(node as usize) else { continue };
            slot.disk.heal();
            slot.die_on_start = None;
            if slot.paused {
                self.sched.after(0, Event::Resume { node });
            }
            if slot.status == Status::Refused && slot.node.operator_restart() {
                slot.status = Status::Down;
            }
            if slot.status == Status::Down && !slot.restart_pending {
                slot.restart_pending = true;
                self.sched.after(1, Event::Restart { node });
            }
        }
    }

    fn after_event(&mut self) {
        // Processes whose disk died mid-operation crash now.
        for node in 0..self.slots.len() as NodeId {
            let dead = self.slots.get(node as usize).is_some_and(|s| s.status == Status::Up && s.disk.is_dead());
            let wants = self.slots.get(node as usize).is_some_and(|s| s.status == Status::Up && s.node.needs_restart());
            if dead || wants {
                let (kind, delay) = {
                    let Some(slot) = self.slots.get_mut(node as usize) else { continue };
                    let kind = if dead && slot.rng.ratio(1, 2) { CrashKind::PowerLoss { torn: true } } else { CrashKind::Process };
                    // An operator restart (the node asked for it) is quick.
                    let delay = if dead { slot.rng.range(10, 1_000) } else { slot.rng.range(10, 200) };
                    (kind, delay)
                };
                self.crash(node, kind, delay);
            }
        }
        for node in 0..self.slots.len() as NodeId {
            let Some(slot) = self.slots.get_mut(node as usize) else { continue };
            if slot.status == Status::Up && !slot.paused {
                let (n, mut io) = Self::io(slot, node, &mut self.sched, &mut self.net, &mut self.env);
                n.check(&mut io);
            }
        }
        self.run_world_checks(false);
        // Clients hear back and go on.
        let replies = std::mem::take(&mut self.env.replies);
        for (request, outcome) in replies {
            let client = (request >> 32) as u32;
            let delay = match outcome {
                ClientOutcome::Acked(id) => {
                    self.workload.stats.1 += 1;
                    self.sched.trace().entry("ack").u64(request).u64(id);
                    self.workload.rng.range(0, self.workload.think_ms)
                }
                ClientOutcome::Failed(code) => {
                    self.workload.stats.2 += 1;
                    self.sched.trace().entry("failed").u64(request).str(code);
                    self.workload.rng.range(20, 500)
                }
            };
            self.sched.after(delay, Event::Client { client });
        }
    }

    fn liveness(&mut self) {
        let now = self.sched.now();
        for node in 0..self.slots.len() as NodeId {
            let Some(slot) = self.slots.get_mut(node as usize) else { continue };
            let mut status = slot.status.clone();
            if status == Status::Down && now.since(slot.down_since) < RESTART_GRACE_MS {
                // Crashed (or restarted by the operator) moments ago; its
                // restart is scheduled.
                *self.env.outcomes.entry("restarting_at_end").or_insert(0) += 1;
                status = Status::Refused;
            }
            let (n, mut io) = Self::io(slot, node, &mut self.sched, &mut self.net, &mut self.env);
            match status {
                Status::Up => n.check_liveness(&mut io),
                Status::Refused => {}
                Status::Down => io.violation("REPL-9", format!("node {node} is still down {} ms after the heal", self.options.heal_phase_ms)),
            }
        }
        self.run_world_checks(true);
        if self.workload.clients > 0 && self.env.acks_after_heal == 0 && self.slots.first().is_some_and(|s| s.status == Status::Up) {
            let at_ms = self.sched.now().ms();
            self.env.violations.push(Violation { at_ms, node: 0, rule: "CORE-1", what: "no client write was acknowledged after the heal (liveness)".into() });
        }
    }
}

impl World {
    /// The network rates (for harnesses that want a calm start).
    pub fn set_net_rates(&mut self, rates: NetRates) {
        self.net.set_rates(rates);
    }
}
