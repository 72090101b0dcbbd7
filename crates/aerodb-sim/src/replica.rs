//! The replica harness: a replica node running the production
//! [`ReplicaEngine`], its actions executed the way the production runtime
//! (`aerodb_repl_net::replica`) executes them, minus the threads:
//!
//! - one FIFO disk worker (recovery through [`recover_replica`], received
//!   WAL through [`WalSink::persist_all`], persists queued meanwhile
//!   sharing one fsync as in production, bootstrap through [`bootstrap_from_genesis`]
//!   and [`SnapshotTransfer`], halts through [`persist_halt`]) and one
//!   FIFO apply worker ([`Applier`], the one apply function), each job
//!   taking simulated time (a persist takes an fsync's), so receive,
//!   fsync and apply overlap as in the pipelined production replica;
//! - connections over [`crate::net::SimNet`]: `Connect`/`Send`/`Close`
//!   actions, and delivered segments fed to `handle_bytes` only while the
//!   engine wants bytes (the production socket reader's backpressure: a
//!   close is seen after the data before it);
//! - one timer at the engine's `poll_timeout`;
//! - token authentication when the seed's primary requires a token
//!   (`with_auth`; each connection's nonce from the seeded PRNG);
//! - an interrupted snapshot transfer stays with the disk worker across
//!   connections (as the production `DiskWorker` keeps it), so the engine's
//!   resume request continues the same [`SnapshotTransfer`] (F-S1);
//! - the published status and store behind a production
//!   [`ReplicaHandle`], so reads go through the real gate.
//!
//! Before the engine starts, the data directory is opened as the `aerodb`
//! binary does it: `--rebootstrap` (the operator's action, modelled after
//! the heal for halted replicas and those the primary's retention left
//! behind) removes the replica's state, and unreadable metadata refuses
//! the start (F-RC2).
//!
//! The node's own invariants (after every event): `applied <= validated
//! <= received`; a halted engine stays halted in its incarnation, and a
//! replica whose halt reached the disk is halted after every restart until
//! the operator re-bootstraps it (REPL-5). Cross-node invariants (WAL
//! prefix, digests, reads, catching up) are in [`crate::checks`].

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_mvcc::Store;
use aerodb_repl_core::auth::{Nonce, ReplToken, NONCE_LEN};
use aerodb_repl_core::engine::replica::{Completion, RecoveryOutcome, ReplicaAction, ReplicaConfig, ReplicaEngine, ReplicaTiming, StorageFailure};
use aerodb_repl_core::engine::ConnId as EngineConn;
use aerodb_repl_core::halt::{Blocked, StorageOp};
use aerodb_repl_core::handshake::RefusalCode;
use aerodb_repl_core::ids::{ReplicaId, ReplicaName};
use aerodb_repl_core::metadata::{read_halt, read_metadata, BootstrapMethod, ReplicaPaths};
use aerodb_repl_core::pipeline::ValidatedRecord;
use aerodb_repl_core::positions::Positions;
use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_core::replica::{
    bootstrap_from_genesis, discard_uncommitted, persist_halt, recover_replica, BootstrapError, Recovered, SnapshotFiles, SnapshotTransfer,
};
use aerodb_repl_core::state::{ReplicaState, StateKind};
use aerodb_repl_core::status::ReplicaShared;
use aerodb_repl_core::storage::{Applier, WalSink};
use aerodb_wal::log::SegmentInfo;
use aerodb_wal::{Lsn, Op, RecordBody};

use crate::disk::SimDisk;
use crate::faults::FaultClass;
use crate::net::{ConnId, NetEvent, NodeId};
use crate::plan::node_root;
use crate::primary::PrimaryConfig;
use crate::rng::{stream, SimRng};
use crate::world::{start_failed, Io, RequestId, SimNode, StartOutcome};

const TIMER_ENGINE: u64 = 1;
const JOB_DISK: u64 = 1;
const JOB_APPLY: u64 = 2;
/// Most queued persists sharing one fsync (the production disk worker's bound).
const MAX_PERSIST_BATCH: usize = 64;
/// The primary's node id.
const PRIMARY: NodeId = 0;

/// Flips one bit of one document of `records` (the memory fault): returns
/// the CommitId of the record hit, or `None` when no record has a document.
fn flip_a_document_bit(rng: &mut SimRng, records: &mut [ValidatedRecord]) -> Option<u64> {
    let mut docs = Vec::new();
    for (i, (record, _)) in records.iter().enumerate() {
        for (j, op) in record.ops().iter().enumerate() {
            if op.doc().is_some_and(|d| !d.is_empty()) {
                docs.push((i, j));
            }
        }
    }
    let (i, j) = *rng.pick(&docs)?;
    let (record, _) = records.get_mut(i)?;
    let RecordBody::Commit(ops) = &mut record.body else { return None };
    let Some(Op::Put { doc, .. }) = ops.get_mut(j) else { return None };
    let mut bytes = doc.to_vec();
    let at = rng.below(bytes.len() as u64) as usize;
    bytes[at] ^= 1 << rng.below(8);
    *doc = bytes::Bytes::from(bytes);
    Some(record.commit_id)
}

/// Tunables of one replica, drawn per seed and node.
#[derive(Clone, Debug)]
pub struct ReplicaSimConfig {
    /// How the empty replica bootstraps.
    pub bootstrap: BootstrapMethod,
    /// Timeouts and backoff (short: a seed lasts 30 simulated seconds).
    pub timing: ReplicaTiming,
    /// Backpressure bound.
    pub max_unapplied_bytes: u64,
    /// When the process first starts.
    pub first_start_ms: u64,
    /// Chance (ppm) that a bit flips in memory in a batch of validated
    /// records before it is applied (during the fault phase).
    pub memory_flip_ppm: u32,
    /// The replication token (`--repl-token-file`), when the primary requires one.
    pub token: Option<ReplToken>,
}

impl ReplicaSimConfig {
    /// Draws replica `node`'s configuration for `seed`. WAL bootstrap from
    /// genesis is chosen only when the primary never retires WAL (a
    /// primary that does answers it `WAL_UNAVAILABLE` forever).
    pub fn for_seed(seed: u64, node: NodeId, primary: &PrimaryConfig) -> Self {
        let mut rng = SimRng::new(seed, stream::REPLICA_OPTIONS + u64::from(node));
        let wal = !primary.retires_wal() && rng.ratio(1, 2);
        ReplicaSimConfig {
            bootstrap: if wal { BootstrapMethod::Wal } else { BootstrapMethod::Snapshot },
            timing: ReplicaTiming { handshake_timeout_ms: 2_000, idle_timeout_ms: 2_500, backoff_min_ms: 20, backoff_max_ms: 1_000 },
            max_unapplied_bytes: *rng.pick(&[4_096, 16_384, 65_536]).unwrap_or(&16_384),
            first_start_ms: *rng.pick(&[0, 0, 500, 3_000, 8_000]).unwrap_or(&0),
            memory_flip_ppm: *rng.pick(&[0, 0, 1_000, 5_000]).unwrap_or(&0),
            token: primary.token(),
        }
    }
}

/// Storage work for the disk worker, in the engine's order.
#[derive(Debug)]
enum DiskJob {
    Recover,
    Action(ReplicaAction),
}

/// One connection: the network's id for it and what arrived on it but was
/// not taken yet (the socket buffer while the engine applies backpressure).
struct Link {
    net: ConnId,
    connected: bool,
    closed: bool,
    pending: VecDeque<Vec<u8>>,
}

struct Running {
    engine: ReplicaEngine,
    handle: Arc<ReplicaHandle>,
    published: u64,
    disk_jobs: VecDeque<DiskJob>,
    disk_busy: bool,
    apply_jobs: VecDeque<Vec<ValidatedRecord>>,
    apply_busy: bool,
    sink: Option<WalSink>,
    transfer: Option<SnapshotTransfer>,
    links: BTreeMap<EngineConn, Link>,
    by_net: BTreeMap<ConnId, EngineConn>,
    timer_at: Option<u64>,
    /// The engine halted in this incarnation.
    halted: bool,
    /// Snapshot transfer resumes seen (F-S1).
    resumes: u64,
}

/// A replica node driven by the simulator.
pub struct ReplicaNode {
    id: NodeId,
    root: PathBuf,
    paths: ReplicaPaths,
    config: ReplicaSimConfig,
    running: Option<Running>,
    /// The halt (its code) that reached the disk durably: the replica must
    /// be halted after every restart until it is re-bootstrapped.
    halt_durable: Option<String>,
    /// The operator asked for `--rebootstrap` at the next start.
    rebootstrap: bool,
    /// Changes whenever the replica's WAL may have been replaced (start,
    /// bootstrap install): the prefix check starts over.
    generation: u64,
}

impl ReplicaNode {
    /// Replica node `id`.
    pub fn new(id: NodeId, config: ReplicaSimConfig) -> Self {
        let root = node_root(id);
        ReplicaNode { id, paths: ReplicaPaths::new(&root), root, config, running: None, halt_durable: None, rebootstrap: false, generation: 0 }
    }

    /// Its configuration.
    pub fn config(&self) -> &ReplicaSimConfig {
        &self.config
    }

    /// The read handle (status and store), while running.
    pub fn handle(&self) -> Option<&Arc<ReplicaHandle>> {
        self.running.as_ref().map(|r| &r.handle)
    }

    /// The store, once recovered or bootstrapped.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.running.as_ref().and_then(|r| r.handle.store())
    }

    /// The engine's runtime state.
    pub fn state_kind(&self) -> Option<StateKind> {
        self.running.as_ref().map(|r| r.engine.state().kind())
    }

    /// The engine's pipeline positions.
    pub fn positions(&self) -> Option<Positions> {
        self.running.as_ref().map(|r| r.engine.positions())
    }

    /// The engine's state, for explanations in violations.
    pub fn describe(&self) -> String {
        match &self.running {
            Some(r) => format!(
                "{:?}, positions {:?}, primary progress {:?}, disk jobs {} (busy {}), apply jobs {} (busy {}), links {:?}, wants bytes {}",
                r.engine.state(),
                r.engine.positions(),
                r.engine.observe().primary,
                r.disk_jobs.len(),
                r.disk_busy,
                r.apply_jobs.len(),
                r.apply_busy,
                r.links.iter().map(|(c, l)| (*c, l.net, l.connected, l.closed, l.pending.len())).collect::<Vec<_>>(),
                r.engine.wants_bytes()
            ),
            None => "down".into(),
        }
    }

    /// The replica's WAL: its directory, its segments, and where its
    /// history starts (the bootstrap boundary), once it has one.
    pub fn wal(&self) -> Option<(PathBuf, Vec<SegmentInfo>, Lsn)> {
        let r = self.running.as_ref()?;
        let sink = r.sink.as_ref()?;
        let boundary = r.engine.observe().metadata.map(|m| m.bootstrap.boundary_lsn)?;
        Some((sink.segments().dir().to_path_buf(), sink.segments().snapshot(), boundary))
    }

    /// See the field.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn settle(&mut self, io: &mut Io<'_>) {
        let Some(r) = self.running.as_mut() else { return };
        let now = io.now().ms();
        loop {
            while let Some(action) = r.engine.poll_action() {
                Self::execute(r, io, action);
            }
            let Some(current) = r.engine.state().conn() else { break };
            let Some(link) = r.links.get_mut(&current) else { break };
            if r.engine.wants_bytes() {
                if let Some(bytes) = link.pending.pop_front() {
                    io.consumed(link.net, bytes.len() as u64);
                    r.engine.handle_bytes(now, current, &bytes);
                    continue;
                }
            }
            if link.closed && link.pending.is_empty() {
                let net = link.net;
                r.links.remove(&current);
                r.by_net.remove(&net);
                r.engine.handle_closed(now, current, "the primary closed the connection".into());
                continue;
            }
            break;
        }
        if r.engine.version() != r.published {
            r.published = r.engine.version();
            r.handle.shared.publish(r.engine.observe());
        }
        if let ReplicaState::Bootstrapping { progress, .. } = r.engine.state() {
            if progress.resumes > r.resumes {
                r.resumes = progress.resumes;
                io.trace().entry("snapshot_transfer_resumed").u64(progress.bytes_done);
                io.count("snapshot_transfers_resumed");
            }
        }
        if r.engine.state().kind() == StateKind::Halted && !r.halted {
            r.halted = true;
            io.trace().entry("replica_halted").str(r.engine.state().halt().map_or("", |h| aerodb_repl_core::Reason::code(h)));
            io.count("replica_halts");
        }
        if !r.disk_busy {
            if let Some(job) = r.disk_jobs.front() {
                let latency = match job {
                    DiskJob::Action(ReplicaAction::Persist(_)) => io.fsync_latency(),
                    DiskJob::Recover => io.rng().range(1, 10),
                    DiskJob::Action(_) => io.rng().range(1, 4),
                };
                r.disk_busy = true;
                io.disk_done_after(latency, JOB_DISK);
            }
        }
        if !r.apply_busy && !r.apply_jobs.is_empty() {
            r.apply_busy = true;
            let latency = io.rng().range(0, 2);
            io.disk_done_after(latency, JOB_APPLY);
        }
        if let Some(t) = r.engine.poll_timeout() {
            if r.timer_at.is_none_or(|at| t < at) {
                r.timer_at = Some(t);
                io.arm_timer(t.saturating_sub(now), TIMER_ENGINE);
            }
        }
    }

    /// Executes one engine action as the production runtime's `execute`.
    fn execute(r: &mut Running, io: &mut Io<'_>, action: ReplicaAction) {
        match action {
            ReplicaAction::Connect { conn } => {
                let net = io.connect(PRIMARY);
                r.links.insert(conn, Link { net, connected: false, closed: false, pending: VecDeque::new() });
                r.by_net.insert(net, conn);
            }
            ReplicaAction::Send { conn, frame } => {
                if let Some(link) = r.links.get(&conn).filter(|l| l.connected && !l.closed) {
                    io.send(link.net, frame.to_vec());
                }
            }
            ReplicaAction::Close { conn } => {
                if let Some(link) = r.links.remove(&conn) {
                    r.by_net.remove(&link.net);
                    io.close(link.net);
                }
            }
            ReplicaAction::Recover => r.disk_jobs.push_back(DiskJob::Recover),
            ReplicaAction::Apply { records } => r.apply_jobs.push_back(records),
            other => r.disk_jobs.push_back(DiskJob::Action(other)),
        }
    }

    /// The disk worker finished its next job (the production `DiskWorker`).
    fn disk_job(&mut self, io: &mut Io<'_>) {
        let disk = io.disk().clone();
        let shared = disk.shared();
        let now = io.now().ms();
        let paths = self.paths.clone();
        let Some(r) = self.running.as_mut() else { return };
        r.disk_busy = false;
        let Some(job) = r.disk_jobs.pop_front() else { return };
        let format = SnapshotFiles::new(shared.clone());
        let wal_failed = |op, e: &dyn std::fmt::Display| Completion::Failed(StorageFailure::Wal { op, detail: e.to_string() });
        let no_transfer = || Completion::Failed(StorageFailure::Bootstrap(BootstrapError::Protocol("no transfer in progress".into())));
        let mut repeat = 1;
        let completion = match job {
            DiskJob::Recover => {
                let outcome = match recover_replica(shared.clone(), &paths, &format) {
                    Ok(Recovered::Ready(ready)) => {
                        r.handle.set_store(ready.store);
                        r.sink = Some(ready.sink);
                        self.generation += 1;
                        io.count("replica_recoveries");
                        RecoveryOutcome::Ready(ready.info)
                    }
                    Ok(Recovered::Uninitialised { .. }) => RecoveryOutcome::Uninitialised,
                    Ok(Recovered::Halted { halt, metadata }) => RecoveryOutcome::Halted { halt: *halt, metadata },
                    Err(e) => RecoveryOutcome::Halted { halt: e.to_halt(), metadata: None },
                };
                r.engine.handle_recovered(now, outcome);
                if r.engine.state().kind() == StateKind::Halted {
                    Self::note_durable_halt(&mut self.halt_durable, &disk, &paths);
                }
                None
            }
            DiskJob::Action(action) => match action {
                ReplicaAction::Persist(work) => {
                    // Persists that queued up meanwhile share one fsync (the
                    // production disk worker's batch), one completion each.
                    let mut batch = vec![work];
                    while batch.len() < MAX_PERSIST_BATCH {
                        match r.disk_jobs.front() {
                            Some(DiskJob::Action(ReplicaAction::Persist(_))) => {
                                if let Some(DiskJob::Action(ReplicaAction::Persist(work))) = r.disk_jobs.pop_front() {
                                    batch.push(work);
                                }
                            }
                            _ => break,
                        }
                    }
                    if batch.len() > 1 {
                        io.count("replica_persist_batches");
                    }
                    repeat = batch.len();
                    Some(match r.sink.as_mut().map(|s| s.persist_all(&batch)) {
                        Some(Ok(through)) => Completion::Persisted { through },
                        Some(Err(e)) => wal_failed(StorageOp::PersistWal, &e),
                        None => wal_failed(StorageOp::PersistWal, &"no WAL is open"),
                    })
                }
                ReplicaAction::TruncateUnvalidated { to } => Some(match r.sink.as_mut().map(|s| s.truncate_unvalidated(to)) {
                    Some(Ok(())) => Completion::Truncated,
                    Some(Err(e)) => wal_failed(StorageOp::TruncateUnvalidated, &e),
                    None => wal_failed(StorageOp::TruncateUnvalidated, &"no WAL is open"),
                }),
                ReplicaAction::BootstrapGenesis { cluster_id, replica_id } => {
                    Some(match bootstrap_from_genesis(shared.clone(), &paths, &cluster_id, &replica_id) {
                        Ok(ready) => {
                            r.handle.set_store(ready.store);
                            r.sink = Some(ready.sink);
                            self.generation += 1;
                            io.count("bootstraps_wal");
                            Completion::Installed { info: ready.info }
                        }
                        Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                    })
                }
                ReplicaAction::BootstrapBegin { manifest } => Some(match SnapshotTransfer::begin(shared.clone(), &paths, &format, &manifest) {
                    Ok(t) => {
                        let bytes_total = t.bytes_total();
                        r.transfer = Some(t);
                        Completion::BootstrapBegun { bytes_total }
                    }
                    Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                }),
                ReplicaAction::BootstrapPiece { file_index, offset, bytes } => Some(match r.transfer.as_mut() {
                    Some(t) => match t.piece(file_index, offset, &bytes) {
                        Ok(()) => Completion::PieceWritten { bytes: bytes.len() as u64 },
                        Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                    },
                    None => no_transfer(),
                }),
                ReplicaAction::BootstrapFinish { cluster_id, replica_id } => Some(match r.transfer.take() {
                    Some(t) => match t.finish(&cluster_id, &replica_id) {
                        Ok(ready) => {
                            r.handle.set_store(ready.store);
                            r.sink = Some(ready.sink);
                            self.generation += 1;
                            io.count("bootstraps_snapshot");
                            Completion::Installed { info: ready.info }
                        }
                        Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                    },
                    None => no_transfer(),
                }),
                ReplicaAction::BootstrapDiscard => {
                    r.transfer = None;
                    let _ = discard_uncommitted(&*shared, &paths);
                    Some(Completion::Discarded)
                }
                ReplicaAction::PersistHalt { halt } => {
                    persist_halt(&*shared, &paths, &halt);
                    Self::note_durable_halt(&mut self.halt_durable, &disk, &paths);
                    None
                }
                ReplicaAction::Recover
                | ReplicaAction::Connect { .. }
                | ReplicaAction::Send { .. }
                | ReplicaAction::Close { .. }
                | ReplicaAction::Apply { .. } => None,
            },
        };
        if let Some(c) = completion {
            for _ in 1..repeat {
                r.engine.handle_completion(now, c.clone());
            }
            r.engine.handle_completion(now, c);
        }
        self.settle(io);
    }

    /// Records that the halt file is on disk durably (its entry and bytes
    /// would survive a power loss now).
    fn note_durable_halt(halt_durable: &mut Option<String>, disk: &SimDisk, paths: &ReplicaPaths) {
        if halt_durable.is_some() {
            return;
        }
        let path = paths.halt();
        if disk.durable_file(&path).is_some_and(|d| Some(&d) == disk.current_bytes(&path).as_ref()) {
            if let Ok(Some(halt)) = read_halt(disk, paths) {
                *halt_durable = Some(aerodb_repl_core::Reason::code(&halt).to_string());
            }
        }
    }

    /// The apply worker finished its next job.
    fn apply_job(&mut self, io: &mut Io<'_>) {
        let now = io.now().ms();
        let Some(r) = self.running.as_mut() else { return };
        r.apply_busy = false;
        let Some(mut records) = r.apply_jobs.pop_front() else { return };
        if !io.healed() && io.rng().chance_ppm(self.config.memory_flip_ppm) {
            if let Some(commit_id) = flip_a_document_bit(io.rng(), &mut records) {
                io.fault(FaultClass::MemoryBitFlip);
                io.trace().entry("memory_bit_flip").u64(u64::from(self.id)).u64(commit_id);
            }
        }
        if let Some(store) = r.handle.store() {
            let completion = match Applier::new(store).apply(&records) {
                Ok(state) => Completion::Applied { state },
                Err((lsn, error)) => Completion::Failed(StorageFailure::Apply { lsn, error }),
            };
            r.engine.handle_completion(now, completion);
        }
        self.settle(io);
    }

    /// Whether the operator should re-bootstrap this replica: it is halted
    /// (only `--rebootstrap` clears a halt, REPL-5), or the primary no
    /// longer holds the WAL it needs (RES-2: `WAL_UNAVAILABLE`).
    fn needs_operator(&self) -> bool {
        let Some(r) = &self.running else { return false };
        let state = r.engine.state();
        state.kind() == StateKind::Halted
            || matches!(state.blocked(), Some(Blocked::Refused { refuse, .. }) if refuse.code() == RefusalCode::WAL_UNAVAILABLE && r.engine.observe().metadata.is_some())
    }
}

impl SimNode for ReplicaNode {
    fn start(&mut self, io: &mut Io<'_>) -> StartOutcome {
        let disk = io.disk().clone();
        let shared = disk.shared();
        let before = disk.injected_errors();
        self.generation += 1;
        if self.rebootstrap {
            // `aerodb replica --rebootstrap`: discard all replica state (including any halt).
            for path in [&self.paths.wal, &self.paths.dir] {
                if shared.exists(path) {
                    if let Err(e) = shared.remove_dir_all(path) {
                        return start_failed(io, before, "REBOOTSTRAP_IO", "REPL-9", e.to_string());
                    }
                }
            }
            if let Err(e) = shared.sync_dir(&self.root) {
                return start_failed(io, before, "REBOOTSTRAP_IO", "REPL-9", e.to_string());
            }
            self.rebootstrap = false;
            self.halt_durable = None;
            io.trace().entry("rebootstrap").u64(u64::from(self.id));
            io.count("operator_rebootstraps");
        }
        let recorded = match read_metadata(&*shared, &self.paths) {
            Ok(m) => m,
            Err(e) => return start_failed(io, before, e.check.code(), "F-RC2", e.to_string()),
        };
        if let Err(e) = read_halt(&*shared, &self.paths) {
            return start_failed(io, before, e.check.code(), "F-RC2", e.to_string());
        }
        let (Ok(new_replica_id), Ok(name)) =
            (ReplicaId::parse(&format!("{:016x}{:016x}", io.rng().next_u64(), io.rng().next_u64())), ReplicaName::parse(&format!("sim-replica-{}", self.id)))
        else {
            return StartOutcome::Refused { code: "BAD_ID", rule: "RES-4" };
        };
        let config = ReplicaConfig {
            primary: format!("node{PRIMARY}"),
            name: Some(name),
            bootstrap: self.config.bootstrap,
            new_replica_id,
            timing: self.config.timing,
            max_unapplied_bytes: self.config.max_unapplied_bytes,
            seed: io.rng().next_u64(),
            recorded,
        };
        let engine = match &self.config.token {
            Some(token) => ReplicaEngine::new(config).with_auth(token.clone()),
            None => ReplicaEngine::new(config),
        };
        let handle = Arc::new(ReplicaHandle::new(Arc::new(ReplicaShared::new(engine.observe()))));
        self.running = Some(Running {
            engine,
            handle,
            published: u64::MAX,
            disk_jobs: VecDeque::new(),
            disk_busy: false,
            apply_jobs: VecDeque::new(),
            apply_busy: false,
            sink: None,
            transfer: None,
            links: BTreeMap::new(),
            by_net: BTreeMap::new(),
            timer_at: None,
            halted: false,
            resumes: 0,
        });
        if let Some(r) = self.running.as_mut() {
            r.engine.handle_start(io.now().ms());
        }
        self.settle(io);
        StartOutcome::Up
    }

    fn kill(&mut self) -> Vec<RequestId> {
        self.running = None;
        Vec::new()
    }

    fn on_timer(&mut self, io: &mut Io<'_>, token: u64) {
        let now = io.now().ms();
        let Some(r) = self.running.as_mut() else { return };
        if token != TIMER_ENGINE {
            return;
        }
        if r.timer_at.is_some_and(|at| at <= now) {
            r.timer_at = None;
        }
        if r.engine.poll_timeout().is_some_and(|t| t <= now) {
            r.engine.handle_timer(now);
        }
        self.settle(io);
    }

    fn on_disk_done(&mut self, io: &mut Io<'_>, token: u64) {
        match token {
            JOB_DISK => self.disk_job(io),
            JOB_APPLY => self.apply_job(io),
            _ => {}
        }
    }

    fn on_net(&mut self, io: &mut Io<'_>, event: NetEvent) {
        let now = io.now().ms();
        let Some(r) = self.running.as_mut() else { return };
        match event {
            NetEvent::Connected { conn, .. } => match r.by_net.get(&conn).copied() {
                Some(ec) => {
                    if let Some(link) = r.links.get_mut(&ec) {
                        link.connected = true;
                    }
                    if self.config.token.is_some() {
                        let mut nonce = [0u8; NONCE_LEN];
                        io.rng().fill(&mut nonce);
                        r.engine.handle_connected_with_nonce(now, ec, Nonce(nonce));
                    } else {
                        r.engine.handle_connected(now, ec);
                    }
                }
                None => io.close(conn),
            },
            NetEvent::ConnectFailed { conn, .. } => {
                if let Some(ec) = r.by_net.remove(&conn) {
                    r.links.remove(&ec);
                    r.engine.handle_connect_failed(now, ec, "connect failed (primary down or unreachable)".into());
                }
            }
            NetEvent::Deliver { conn, bytes, .. } => {
                if let Some(link) = r.by_net.get(&conn).and_then(|ec| r.links.get_mut(ec)) {
                    link.pending.push_back(bytes);
                }
            }
            NetEvent::Closed { conn, .. } => {
                if let Some(ec) = r.by_net.get(&conn).copied() {
                    let current = r.engine.state().conn() == Some(ec);
                    match r.links.get_mut(&ec) {
                        Some(link) if current => link.closed = true,
                        _ => {
                            r.links.remove(&ec);
                            r.by_net.remove(&conn);
                            r.engine.handle_closed(now, ec, "connection closed".into());
                        }
                    }
                }
            }
            NetEvent::Accepted { conn, .. } => io.close(conn),
            NetEvent::Writable { .. } => {}
        }
        self.settle(io);
    }

    fn on_client(&mut self, _io: &mut Io<'_>, _request: RequestId, _ops: Vec<aerodb_mvcc::ClientOp>) -> bool {
        false
    }

    fn check(&mut self, io: &mut Io<'_>) {
        let healed = io.healed();
        let Some(r) = self.running.as_ref() else { return };
        let kind = r.engine.state().kind();
        let p = r.engine.positions();
        if !(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn) {
            io.violation("P5-I5", format!("replica {} positions out of order: {p:?}", self.id));
            return;
        }
        if r.halted && kind != StateKind::Halted {
            io.violation("REPL-5", format!("replica {} un-halted by itself: now {}", self.id, self.describe()));
            return;
        }
        if let Some(code) = &self.halt_durable {
            if !matches!(kind, StateKind::Halted | StateKind::Initializing | StateKind::Recovering) {
                io.violation("REPL-5", format!("replica {} persisted halt {code} but runs again without a re-bootstrap: {}", self.id, self.describe()));
                return;
            }
        }
        if healed && !self.rebootstrap && self.needs_operator() {
            self.rebootstrap = true;
            io.trace().entry("operator_rebootstrap").u64(u64::from(self.id));
        }
    }

    fn needs_restart(&self) -> bool {
        self.rebootstrap && self.running.is_some()
    }

    fn check_liveness(&mut self, _io: &mut Io<'_>) {}

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn first_start_ms(&self) -> u64 {
        self.config.first_start_ms
    }

    fn operator_restart(&mut self) -> bool {
        self.rebootstrap = true;
        true
    }
}
