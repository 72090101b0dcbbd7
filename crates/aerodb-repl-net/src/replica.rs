//! Running a replica: the engine on its own thread, fed by a socket reader
//! thread per connection, a disk worker (recovery, WAL appends and fsyncs,
//! bootstrap installs, halts) and an apply worker. Channels carry inputs to
//! the engine; the engine's actions are executed here in order. Storage
//! actions run FIFO on their worker, so their completions arrive in the
//! order the engine issued them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use aerodb_repl_core::auth::{Nonce, ReplToken};
use aerodb_repl_core::engine::replica::{Completion, RecoveryOutcome, ReplicaAction, ReplicaConfig, ReplicaEngine, ReplicaTiming, StorageFailure};
use aerodb_repl_core::engine::ConnId;
use aerodb_repl_core::halt::StorageOp;
use aerodb_repl_core::ids::{ReplicaId, ReplicaName};
use aerodb_repl_core::metadata::{BootstrapMethod, ReplicaMetadata, ReplicaPaths};
use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_core::replica::{
    bootstrap_from_genesis, discard_uncommitted, persist_halt, recover_replica, BootstrapError, FileSyncer, ReadyReplica, Recovered, SnapshotFiles,
    SnapshotFormat, SnapshotStream, SnapshotTransfer,
};
use aerodb_repl_core::status::ReplicaShared;
use aerodb_repl_core::storage::{Applier, WalSink};
use aerodb_repl_core::wire::DEFAULT_MAX_PAYLOAD;
use aerodb_wal::disk::Disk;

use crate::clock::Clock;
use crate::receive::FrameAssembler;
use crate::security::fresh_nonce;
use crate::transport::{Connection, Transport};

/// How a replica runs.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// Data directory root.
    pub data_dir: PathBuf,
    /// The primary's replication address.
    pub primary: String,
    /// Operator-chosen name (`--name`).
    pub name: Option<ReplicaName>,
    /// How an empty replica bootstraps.
    pub bootstrap: BootstrapMethod,
    /// The id to use if the replica has none yet.
    pub new_replica_id: ReplicaId,
    /// Timeouts and backoff.
    pub timing: ReplicaTiming,
    /// Most bytes received but not yet applied before the socket is paused.
    pub max_unapplied_bytes: u64,
    /// Seed of the retry jitter.
    pub seed: u64,
    /// The metadata on disk at startup, if the replica is bootstrapped.
    pub recorded: Option<ReplicaMetadata>,
    /// `--repl-token-file`: authenticate both ways on every connection.
    pub token: Option<ReplToken>,
}

impl ReplicaOptions {
    /// Options with the documented defaults.
    pub fn new(data_dir: PathBuf, primary: String, bootstrap: BootstrapMethod, new_replica_id: ReplicaId, seed: u64) -> Self {
        ReplicaOptions {
            data_dir,
            primary,
            name: None,
            bootstrap,
            new_replica_id,
            timing: ReplicaTiming::default(),
            max_unapplied_bytes: 16 * 1024 * 1024,
            seed,
            recorded: None,
            token: None,
        }
    }
}

/// Inputs to the engine thread.
enum Event {
    Bytes(ConnId, Vec<bytes::BytesMut>),
    Connected(ConnId, Box<dyn Write + Send>, Arc<dyn Fn() + Send + Sync>, Option<Nonce>),
    ConnectFailed(ConnId, String),
    Closed(ConnId, String),
    Recovered(RecoveryOutcome),
    Completion(Completion),
    Stop,
}

/// Lets a socket reader run only while the engine wants bytes.
struct ReadGate {
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl ReadGate {
    fn new() -> Arc<Self> {
        Arc::new(ReadGate { state: Mutex::new((true, false)), changed: Condvar::new() })
    }
    fn set(&self, open: bool) {
        let mut s = self.state.lock();
        if s.0 != open {
            s.0 = open;
            self.changed.notify_all();
        }
    }
    fn close(&self) {
        self.state.lock().1 = true;
        self.changed.notify_all();
    }
    /// Waits until open; false once closed.
    fn wait_open(&self) -> bool {
        let mut s = self.state.lock();
        while !s.0 && !s.1 {
            self.changed.wait(&mut s);
        }
        !s.1
    }
}

struct Link {
    writer: Option<Box<dyn Write + Send>>,
    closer: Option<Arc<dyn Fn() + Send + Sync>>,
    gate: Arc<ReadGate>,
}

/// Storage work for the disk worker, in the engine's order.
enum DiskJob {
    Recover,
    Action(ReplicaAction),
}

/// A running replica. Stops (and joins its threads) when dropped.
pub struct Replica {
    handle: Arc<ReplicaHandle>,
    events: Sender<Event>,
    thread: Option<JoinHandle<()>>,
}

impl Replica {
    /// Starts a replica over `disk`, reaching the primary through `transport`.
    pub fn open(options: ReplicaOptions, disk: Arc<dyn Disk>, transport: Arc<dyn Transport>) -> std::io::Result<Replica> {
        let config = ReplicaConfig {
            primary: options.primary.clone(),
            name: options.name.clone(),
            bootstrap: options.bootstrap,
            new_replica_id: options.new_replica_id.clone(),
            timing: options.timing,
            max_unapplied_bytes: options.max_unapplied_bytes,
            seed: options.seed,
            recorded: options.recorded.clone(),
        };
        let engine = match options.token.clone() {
            Some(token) => ReplicaEngine::new(config).with_auth(token),
            None => ReplicaEngine::new(config),
        };
        let handle = Arc::new(ReplicaHandle::new(Arc::new(ReplicaShared::new(engine.observe()))));
        let (tx, rx) = mpsc::channel();
        let (disk_jobs, disk_worker) = spawn_disk_worker(disk.clone(), ReplicaPaths::new(&options.data_dir), handle.clone(), tx.clone())?;
        let (apply_jobs, apply_worker) = spawn_apply_worker(handle.clone(), tx.clone())?;
        let runtime = Runtime {
            engine,
            handle: handle.clone(),
            clock: Clock::new(),
            events: tx.clone(),
            links: BTreeMap::new(),
            disk_jobs,
            apply_jobs,
            workers: vec![disk_worker, apply_worker],
            transport,
            primary: options.primary,
            connect_timeout: Duration::from_millis(options.timing.handshake_timeout_ms),
            published: u64::MAX,
        };
        let thread = std::thread::Builder::new().name("replica-engine".into()).spawn(move || runtime.run(rx))?;
        Ok(Replica { handle, events: tx, thread: Some(thread) })
    }

    /// The replica's status and store (reads go through its gate).
    pub fn handle(&self) -> &Arc<ReplicaHandle> {
        &self.handle
    }

    /// Stops the replica and waits for its engine thread.
    pub fn stop(&mut self) {
        let _ = self.events.send(Event::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("replica engine thread panicked");
            }
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Runtime {
    engine: ReplicaEngine,
    handle: Arc<ReplicaHandle>,
    clock: Clock,
    events: Sender<Event>,
    links: BTreeMap<ConnId, Link>,
    disk_jobs: Sender<DiskJob>,
    apply_jobs: Sender<ReplicaAction>,
    workers: Vec<JoinHandle<()>>,
    transport: Arc<dyn Transport>,
    primary: String,
    connect_timeout: Duration,
    published: u64,
}

/// Longest idle wait of the engine thread (only bounds a missed wake-up).
const MAX_WAIT: Duration = Duration::from_millis(500);

impl Runtime {
    fn run(mut self, rx: Receiver<Event>) {
        self.engine.handle_start(self.clock.now());
        loop {
            self.execute();
            self.publish();
            let wait = self.clock.until(self.engine.poll_timeout(), MAX_WAIT);
            let event = match rx.recv_timeout(wait) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => {
                    self.engine.handle_timer(self.clock.now());
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let now = self.clock.now();
            match event {
                Event::Stop => {
                    self.engine.handle_stop(now);
                    self.execute();
                    self.publish();
                    break;
                }
                Event::Bytes(conn, pieces) => {
                    for piece in pieces {
                        self.engine.handle_received(now, conn, piece);
                    }
                }
                Event::Connected(conn, writer, closer, nonce) => {
                    if let Some(link) = self.links.get_mut(&conn) {
                        link.writer = Some(writer);
                        link.closer = Some(closer);
                    }
                    match nonce {
                        Some(nonce) => self.engine.handle_connected_with_nonce(now, conn, nonce),
                        None => self.engine.handle_connected(now, conn),
                    }
                }
                Event::ConnectFailed(conn, detail) => {
                    self.links.remove(&conn);
                    self.engine.handle_connect_failed(now, conn, detail);
                }
                Event::Closed(conn, detail) => self.engine.handle_closed(now, conn, detail),
                Event::Recovered(outcome) => self.engine.handle_recovered(now, outcome),
                Event::Completion(c) => self.engine.handle_completion(now, c),
            }
            if self.engine.poll_timeout().is_some_and(|t| t <= self.clock.now()) {
                self.engine.handle_timer(self.clock.now());
            }
        }
        for (_, link) in std::mem::take(&mut self.links) {
            close_link(&link);
        }
        // Closing the job queues lets the workers finish what was queued and exit.
        let Runtime { disk_jobs, apply_jobs, workers, .. } = self;
        drop((disk_jobs, apply_jobs));
        for worker in workers {
            if worker.join().is_err() {
                tracing::error!("a replica storage worker panicked");
            }
        }
    }

    fn publish(&mut self) {
        let wants = self.engine.wants_bytes();
        for link in self.links.values() {
            link.gate.set(wants);
        }
        if self.engine.version() != self.published {
            self.published = self.engine.version();
            self.handle.shared.publish(self.engine.observe());
        }
    }

    fn execute(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                ReplicaAction::Connect { conn } => self.connect(conn),
                ReplicaAction::Send { conn, frame } => {
                    let failed = match self.links.get_mut(&conn).and_then(|l| l.writer.as_mut()) {
                        Some(w) => w.write_all(&frame).and_then(|()| w.flush()).err(),
                        None => None,
                    };
                    if let Some(e) = failed {
                        let _ = self.events.send(Event::Closed(conn, format!("write failed: {e}")));
                    }
                }
                ReplicaAction::Close { conn } => {
                    if let Some(link) = self.links.remove(&conn) {
                        close_link(&link);
                    }
                }
                ReplicaAction::Recover => {
                    let _ = self.disk_jobs.send(DiskJob::Recover);
                }
                ReplicaAction::Apply { records } => {
                    let _ = self.apply_jobs.send(ReplicaAction::Apply { records });
                }
                other => {
                    let _ = self.disk_jobs.send(DiskJob::Action(other));
                }
            }
        }
    }

    fn connect(&mut self, conn: ConnId) {
        let gate = ReadGate::new();
        self.links.insert(conn, Link { writer: None, closer: None, gate: gate.clone() });
        let (transport, addr, timeout, events) = (self.transport.clone(), self.primary.clone(), self.connect_timeout, self.events.clone());
        let wants_nonce = self.engine.requires_auth();
        let spawned = std::thread::Builder::new().name("replica-conn".into()).spawn(move || match transport.connect(&addr, timeout) {
            Ok(Connection { reader, writer, closer }) => {
                let closer: Arc<dyn Fn() + Send + Sync> = Arc::from(closer);
                // A fresh nonce per connection, from the OS RNG (the engine never draws randomness).
                let nonce = match wants_nonce.then(fresh_nonce).transpose() {
                    Ok(n) => n,
                    Err(e) => {
                        closer();
                        let _ = events.send(Event::ConnectFailed(conn, format!("no nonce for the authentication exchange: {e}")));
                        return;
                    }
                };
                if events.send(Event::Connected(conn, writer, closer.clone(), nonce)).is_ok() {
                    read_loop(conn, reader, &gate, &events);
                }
                closer();
            }
            Err(e) => {
                let _ = events.send(Event::ConnectFailed(conn, e.to_string()));
            }
        });
        if let Err(e) = spawned {
            let _ = self.events.send(Event::ConnectFailed(conn, format!("cannot start a connection thread: {e}")));
        }
    }
}

fn close_link(link: &Link) {
    link.gate.close();
    if let Some(closer) = &link.closer {
        closer();
    }
}

/// Reads from the socket while the engine wants bytes, into one buffer
/// per frame ([`FrameAssembler`]: a frame's body is read straight into
/// it; only bytes read together with a header are copied there).
fn read_loop(conn: ConnId, mut reader: Box<dyn Read + Send>, gate: &ReadGate, events: &Sender<Event>) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut frames = FrameAssembler::new(DEFAULT_MAX_PAYLOAD);
    while gate.wait_open() {
        let mut pieces = Vec::new();
        match frames.read_from(&mut *reader, &mut buf, &mut pieces) {
            Ok(0) => {
                let _ = events.send(Event::Closed(conn, "primary closed the connection".into()));
                return;
            }
            Ok(_) => {
                if !pieces.is_empty() && events.send(Event::Bytes(conn, pieces)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = events.send(Event::Closed(conn, e.to_string()));
                return;
            }
        }
    }
}

fn spawn_disk_worker(
    disk: Arc<dyn Disk>,
    paths: ReplicaPaths,
    handle: Arc<ReplicaHandle>,
    events: Sender<Event>,
) -> std::io::Result<(Sender<DiskJob>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<DiskJob>();
    let thread = std::thread::Builder::new().name("replica-disk".into()).spawn(move || {
        let format = SnapshotFiles::new(disk.clone());
        let mut worker = DiskWorker { disk, paths, handle, sink: None, transfer: None };
        let mut next = None;
        while let Some(job) = next.take().or_else(|| rx.recv().ok()) {
            let completions = match job {
                DiskJob::Recover => {
                    // The engine may have stopped; the job still ran to completion.
                    let _ = events.send(Event::Recovered(worker.recover(&format)));
                    continue;
                }
                DiskJob::Action(ReplicaAction::Persist(work)) => {
                    // Persists that queued up while the last fsync ran share one
                    // fsync; the first other job waits for the batch.
                    let mut batch = vec![work];
                    while batch.len() < MAX_PERSIST_BATCH {
                        match rx.try_recv() {
                            Ok(DiskJob::Action(ReplicaAction::Persist(work))) => batch.push(work),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    worker.persist(&batch)
                }
                DiskJob::Action(action) => worker.execute(action, &format).into_iter().collect(),
            };
            for completion in completions {
                let _ = events.send(Event::Completion(completion));
            }
        }
    })?;
    Ok((tx, thread))
}

struct DiskWorker {
    disk: Arc<dyn Disk>,
    paths: ReplicaPaths,
    handle: Arc<ReplicaHandle>,
    sink: Option<WalSink>,
    transfer: Option<(SnapshotTransfer, Loader)>,
}

/// Pieces a snapshot loader may hold queued: the disk worker waits when the
/// loader is this far behind (so the transfer's backpressure reaches the
/// socket), about 64 MiB with 1 MiB pieces.
const LOADER_QUEUE: usize = 64;

/// A snapshot transfer's validating load on a thread of its own, fed the
/// pieces the disk worker wrote (no copy: the received bytes are shared),
/// so decoding and building the store overlap the transfer.
struct Loader {
    pieces: Option<mpsc::SyncSender<(u32, bytes::Bytes)>>,
    thread: Option<JoinHandle<()>>,
    /// The first rejection, as soon as a file fails its checks.
    failed: Arc<Mutex<Option<aerodb_repl_core::halt::SnapshotRejected>>>,
    result: Receiver<Result<(aerodb_mvcc::Store, aerodb_mvcc::AppliedState), aerodb_repl_core::halt::SnapshotRejected>>,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
    cluster: Arc<Mutex<Option<aerodb_repl_core::ids::ClusterId>>>,
}

impl Loader {
    fn spawn(mut stream: Box<dyn SnapshotStream>) -> std::io::Result<Loader> {
        let (tx, rx) = mpsc::sync_channel::<(u32, bytes::Bytes)>(LOADER_QUEUE);
        let (result_tx, result) = mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cluster: Arc<Mutex<Option<aerodb_repl_core::ids::ClusterId>>> = Arc::new(Mutex::new(None));
        let (f, c, cl) = (failed.clone(), cancelled.clone(), cluster.clone());
        let thread = std::thread::Builder::new().name("replica-snapshot-load".into()).spawn(move || {
            let mut rejected = None;
            while let Ok((file_index, bytes)) = rx.recv() {
                if c.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                if rejected.is_none() {
                    if let Err(e) = stream.piece(file_index, bytes) {
                        *f.lock() = Some(e.clone());
                        rejected = Some(e);
                    }
                }
            }
            // The sender is gone: either the transfer finished (the cluster
            // id is set) or it was abandoned.
            let Some(cluster) = cl.lock().take() else { return };
            let outcome = match rejected {
                Some(e) => Err(e),
                None => stream.finish(&cluster),
            };
            let _ = result_tx.send(outcome);
        })?;
        Ok(Loader { pieces: Some(tx), thread: Some(thread), failed, result, cancelled, cluster })
    }

    /// Hands a written piece over (waits while the loader is far behind).
    fn feed(&self, file_index: u32, bytes: bytes::Bytes) -> Result<(), aerodb_repl_core::halt::SnapshotRejected> {
        if let Some(e) = self.failed.lock().clone() {
            return Err(e);
        }
        if let Some(tx) = &self.pieces {
            let _ = tx.send((file_index, bytes));
        }
        Ok(())
    }

    /// Every piece was handed over: waits for the rest of the validation.
    fn finish(
        mut self,
        cluster: &aerodb_repl_core::ids::ClusterId,
    ) -> Result<(aerodb_mvcc::Store, aerodb_mvcc::AppliedState), aerodb_repl_core::halt::SnapshotRejected> {
        *self.cluster.lock() = Some(cluster.clone());
        self.pieces = None;
        let outcome = self.result.recv().unwrap_or_else(|_| {
            Err(aerodb_repl_core::halt::SnapshotRejected { fault: aerodb_repl_core::halt::SnapshotFault::Io, detail: "the snapshot loader stopped".into() })
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        outcome
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
        self.pieces = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fsyncs each completed bootstrap file on a thread of its own, so the
/// disk worker writes the next file's pieces meanwhile;
/// [`FileSyncer::wait_all`] joins them all (the bootstrap's directory sync
/// and install wait for it). At most [`MAX_RUNNING_FSYNCS`] run at once:
/// finished ones are joined as new ones start, and beyond the bound the
/// oldest is waited for first, so a slow disk slows the transfer down
/// instead of piling up threads (RES-1).
#[derive(Default)]
pub struct ThreadSyncer {
    running: std::collections::VecDeque<JoinHandle<std::io::Result<()>>>,
    first_error: Option<std::io::Error>,
}

/// Most bootstrap file fsyncs in flight at once.
pub const MAX_RUNNING_FSYNCS: usize = 4;

impl ThreadSyncer {
    fn join(&mut self, sync: JoinHandle<std::io::Result<()>>) {
        if let Err(e) = sync.join().unwrap_or_else(|_| Err(std::io::Error::other("the fsync thread panicked"))) {
            self.first_error.get_or_insert(e);
        }
    }
}

impl FileSyncer for ThreadSyncer {
    fn start(&mut self, file: Box<dyn aerodb_wal::disk::DiskFile>) -> std::io::Result<()> {
        let (finished, running): (Vec<_>, Vec<_>) = self.running.drain(..).partition(|s| s.is_finished());
        self.running = running.into();
        for sync in finished {
            self.join(sync);
        }
        while self.running.len() >= MAX_RUNNING_FSYNCS {
            if let Some(oldest) = self.running.pop_front() {
                self.join(oldest);
            }
        }
        let sync = std::thread::Builder::new().name("bootstrap-fsync".into()).spawn(move || file.sync_data())?;
        self.running.push_back(sync);
        Ok(())
    }

    fn wait_all(&mut self) -> std::io::Result<()> {
        while let Some(sync) = self.running.pop_front() {
            self.join(sync);
        }
        self.first_error.take().map_or(Ok(()), Err)
    }
}

/// Most queued persists sharing one fsync (bounds the time until the
/// first of them is reported durable).
const MAX_PERSIST_BATCH: usize = 64;

impl DiskWorker {
    /// Appends a batch of accepted chunks and fsyncs once: one `Persisted`
    /// completion per chunk (the engine counts one per action), all after
    /// the fsync that made them durable.
    fn persist(&mut self, batch: &[aerodb_repl_core::pipeline::PersistWork]) -> Vec<Completion> {
        let completion = match self.sink.as_mut().map(|s| s.persist_all(batch)) {
            Some(Ok(through)) => Completion::Persisted { through },
            Some(Err(e)) => Completion::Failed(StorageFailure::Wal { op: StorageOp::PersistWal, detail: e.to_string() }),
            None => Completion::Failed(StorageFailure::Wal { op: StorageOp::PersistWal, detail: "no WAL is open".into() }),
        };
        vec![completion; batch.len()]
    }

    fn install(&mut self, ready: ReadyReplica) -> Completion {
        self.handle.set_store(ready.store);
        self.sink = Some(ready.sink);
        Completion::Installed { info: ready.info }
    }

    fn recover(&mut self, format: &dyn SnapshotFormat) -> RecoveryOutcome {
        match recover_replica(self.disk.clone(), &self.paths, format) {
            Ok(Recovered::Ready(ready)) => match self.install(*ready) {
                Completion::Installed { info } => RecoveryOutcome::Ready(info),
                _ => RecoveryOutcome::Uninitialised,
            },
            Ok(Recovered::Uninitialised { discarded }) => {
                if !discarded.is_empty() {
                    tracing::warn!(discarded = %discarded.join(", "), "discarded an uncommitted bootstrap (F-S1/F-S2)");
                }
                RecoveryOutcome::Uninitialised
            }
            Ok(Recovered::Halted { halt, metadata }) => RecoveryOutcome::Halted { halt: *halt, metadata },
            Err(e) => RecoveryOutcome::Halted { halt: e.to_halt(), metadata: None },
        }
    }

    fn execute(&mut self, action: ReplicaAction, format: &dyn SnapshotFormat) -> Option<Completion> {
        let wal_failed = |op, e: &dyn std::fmt::Display| Completion::Failed(StorageFailure::Wal { op, detail: e.to_string() });
        Some(match action {
            ReplicaAction::Persist(work) => return self.persist(std::slice::from_ref(&work)).pop(),
            ReplicaAction::TruncateUnvalidated { to } => match self.sink.as_mut().map(|s| s.truncate_unvalidated(to)) {
                Some(Ok(())) => Completion::Truncated,
                Some(Err(e)) => wal_failed(StorageOp::TruncateUnvalidated, &e),
                None => wal_failed(StorageOp::TruncateUnvalidated, &"no WAL is open"),
            },
            ReplicaAction::BootstrapGenesis { cluster_id, replica_id } => {
                match bootstrap_from_genesis(self.disk.clone(), &self.paths, &cluster_id, &replica_id) {
                    Ok(ready) => self.install(ready),
                    Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                }
            }
            ReplicaAction::BootstrapBegin { manifest } => match SnapshotTransfer::begin(self.disk.clone(), &self.paths, format, &manifest) {
                Ok(mut t) => {
                    t.sync_with(Box::<ThreadSyncer>::default());
                    let bytes_total = t.bytes_total();
                    let loader = match t.detach_stream().map(Loader::spawn) {
                        Some(Ok(loader)) => loader,
                        Some(Err(e)) => return Some(Completion::Failed(StorageFailure::Bootstrap(BootstrapError::Io(e.to_string())))),
                        None => return Some(Completion::Failed(StorageFailure::Bootstrap(BootstrapError::Protocol("no snapshot stream".into())))),
                    };
                    self.transfer = Some((t, loader));
                    Completion::BootstrapBegun { bytes_total }
                }
                Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
            },
            ReplicaAction::BootstrapPiece { file_index, offset, bytes } => match self.transfer.as_mut() {
                Some((t, loader)) => {
                    match t.piece(file_index, offset, &bytes).and_then(|()| loader.feed(file_index, bytes.clone()).map_err(BootstrapError::Rejected)) {
                        Ok(()) => Completion::PieceWritten { bytes: bytes.len() as u64 },
                        Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                    }
                }
                None => Completion::Failed(StorageFailure::Bootstrap(BootstrapError::Protocol("no transfer in progress".into()))),
            },
            ReplicaAction::BootstrapFinish { cluster_id, replica_id } => match self.transfer.take() {
                Some((mut t, loader)) => match t.complete_files() {
                    Ok(()) => match t.install(loader.finish(&cluster_id), &cluster_id, &replica_id) {
                        Ok(ready) => self.install(ready),
                        Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                    },
                    Err(e) => Completion::Failed(StorageFailure::Bootstrap(e)),
                },
                None => Completion::Failed(StorageFailure::Bootstrap(BootstrapError::Protocol("no transfer in progress".into()))),
            },
            ReplicaAction::BootstrapDiscard => {
                self.transfer = None;
                if let Err(e) = discard_uncommitted(&*self.disk, &self.paths) {
                    tracing::error!(error = %e, "cannot discard the partial bootstrap");
                }
                Completion::Discarded
            }
            ReplicaAction::PersistHalt { halt } => {
                persist_halt(&*self.disk, &self.paths, &halt);
                return None;
            }
            ReplicaAction::Recover | ReplicaAction::Connect { .. } | ReplicaAction::Send { .. } | ReplicaAction::Close { .. } | ReplicaAction::Apply { .. } => {
                return None
            }
        })
    }
}

fn spawn_apply_worker(handle: Arc<ReplicaHandle>, events: Sender<Event>) -> std::io::Result<(Sender<ReplicaAction>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<ReplicaAction>();
    let thread = std::thread::Builder::new().name("replica-apply".into()).spawn(move || {
        while let Ok(action) = rx.recv() {
            let ReplicaAction::Apply { records } = action else { continue };
            let completion = match handle.store() {
                Some(store) => match Applier::new(store).apply(&records) {
                    Ok(state) => Completion::Applied { state },
                    Err((lsn, error)) => Completion::Failed(StorageFailure::Apply { lsn, error }),
                },
                None => continue,
            };
            let _ = events.send(Event::Completion(completion));
        }
    })?;
    Ok((tx, thread))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file whose fsync counts, or fails.
    struct Fake {
        synced: Arc<AtomicUsize>,
        fail: bool,
    }

    impl aerodb_wal::disk::DiskFile for Fake {
        fn read_exact_at(&self, _buf: &mut [u8], _offset: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn append(&mut self, _buf: &[u8]) -> std::io::Result<()> {
            Ok(())
        }
        fn write_at(&mut self, _buf: &[u8], _offset: u64) -> std::io::Result<()> {
            Ok(())
        }
        fn sync_data(&self) -> std::io::Result<()> {
            if self.fail {
                return Err(std::io::Error::other("fsync failed"));
            }
            self.synced.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn len(&self) -> std::io::Result<u64> {
            Ok(0)
        }
        fn truncate(&mut self, _len: u64) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// REPL-9: the runtime's background syncer returns from `wait_all` only
    /// after every file it was given was fsynced, and reports a failed
    /// fsync (the bootstrap then fails before anything is installed).
    #[test]
    fn repl_9_thread_syncer_waits_for_every_fsync_and_reports_failures() {
        let synced = Arc::new(AtomicUsize::new(0));
        let mut syncer = ThreadSyncer::default();
        for _ in 0..5 {
            syncer.start(Box::new(Fake { synced: synced.clone(), fail: false })).unwrap();
        }
        syncer.wait_all().unwrap();
        assert_eq!(synced.load(Ordering::SeqCst), 5);
        syncer.start(Box::new(Fake { synced: synced.clone(), fail: true })).unwrap();
        syncer.start(Box::new(Fake { synced: synced.clone(), fail: false })).unwrap();
        assert!(syncer.wait_all().is_err());
        assert_eq!(synced.load(Ordering::SeqCst), 6, "the other file was still waited for");
        syncer.wait_all().unwrap();
    }

    /// REPL-9, RES-1: however many files a bootstrap has, at most
    /// `MAX_RUNNING_FSYNCS` fsync threads are kept at once, a failure
    /// among those joined early is still reported by `wait_all`, and every
    /// file is fsynced before `wait_all` returns.
    #[test]
    fn repl_9_res_1_thread_syncer_keeps_a_bounded_number_of_fsyncs() {
        let synced = Arc::new(AtomicUsize::new(0));
        let mut syncer = ThreadSyncer::default();
        syncer.start(Box::new(Fake { synced: synced.clone(), fail: true })).unwrap();
        for _ in 0..40 {
            syncer.start(Box::new(Fake { synced: synced.clone(), fail: false })).unwrap();
            assert!(syncer.running.len() <= MAX_RUNNING_FSYNCS, "{} fsyncs kept", syncer.running.len());
        }
        assert!(syncer.wait_all().is_err(), "the early failure is reported");
        assert_eq!(synced.load(Ordering::SeqCst), 40);
        assert!(syncer.running.is_empty());
        syncer.wait_all().unwrap();
    }
}
