//! One replica's decisions as a sans-IO state machine.
//!
//! Inputs arrive through `handle_*` with the current time; outputs are
//! [`ReplicaAction`]s the runtime polls and executes, reporting each
//! storage action's result back as exactly one [`Completion`]. The engine
//! keeps the runtime state ([`ReplicaState`]), the pipeline's sans-IO part
//! ([`StreamState`]) and the per-connection link; every verdict — halt or
//! retry, validate, what to apply — is made here.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use aerodb_mvcc::{AppliedState, ApplyError};
use aerodb_wal::{ChainTip, Lsn};

use super::backoff::Backoff;
use super::{ConnId, Millis};
use crate::auth::{AuthFailure, AuthRefuseCode, Nonce, ReplToken};
use crate::commit_times::LagClock;
use crate::halt::{Blocked, Halt, StorageOp};
use crate::handshake::{Accept, Hello, HelloRequest, SnapshotResume, PROTOCOL_VERSION};
use crate::ids::{ClusterId, ReplicaId, ReplicaName};
use crate::metadata::{BootstrapMethod, ReplicaMetadata};
use crate::pipeline::{PersistWork, PipelineError, StreamState, ValidatedRecord};
use crate::positions::{Positions, PrimaryProgress, ProgressTimes};
use crate::replica::{BootstrapError, ReadyInfo};
use crate::state::{BootstrapPhase, BootstrapProgress, ReplicaState, StateKind, StateMachine};
use crate::status::ReplicaObserved;
use crate::wire::{frame, AuthMessage, Frame, FrameDecoder, FrameError, FrameType, Message, MessageError, ReceivedChunk, DEFAULT_MAX_PAYLOAD};

/// Timeouts and retry pacing. They close connections and schedule
/// retries; they never decide what is true (REPL-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaTiming {
    /// From connecting to the primary's answer to HELLO.
    pub handshake_timeout_ms: Millis,
    /// Silence after which a streaming connection is considered dead (the
    /// primary sends PROGRESS at least every 500 ms when idle).
    pub idle_timeout_ms: Millis,
    /// First retry delay.
    pub backoff_min_ms: Millis,
    /// Longest retry delay (jittered below it).
    pub backoff_max_ms: Millis,
}

impl Default for ReplicaTiming {
    fn default() -> Self {
        ReplicaTiming { handshake_timeout_ms: 10_000, idle_timeout_ms: 10_000, backoff_min_ms: 50, backoff_max_ms: 10_000 }
    }
}

/// What a replica engine is configured with.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// The primary's replication address (shown in explanations).
    pub primary: String,
    /// Operator-chosen name (`--name`).
    pub name: Option<ReplicaName>,
    /// How an empty replica bootstraps.
    pub bootstrap: BootstrapMethod,
    /// The id to use if this replica has none yet.
    pub new_replica_id: ReplicaId,
    /// Timeouts and backoff.
    pub timing: ReplicaTiming,
    /// Most bytes accepted from the primary but not yet applied (or, while
    /// bootstrapping, not yet written): beyond it the engine stops taking
    /// frames until storage catches up (backpressure to the socket).
    pub max_unapplied_bytes: u64,
    /// Seed of the retry jitter.
    pub seed: u64,
    /// The metadata on disk when the process started (read before recovery
    /// so a bootstrapped replica is never shown as uninitialised).
    pub recorded: Option<ReplicaMetadata>,
}

/// Most records in one [`ReplicaAction::Apply`] (one store lock batch,
/// [`crate::storage::MAX_APPLY_BATCH`]). Records made durable by one fsync
/// are handed to the applier in actions of at most this many, each
/// answered by its own `Applied`: the unapplied bytes (the backpressure
/// budget) fall as apply progresses, so the socket and the WAL sink keep
/// receiving the next records while the applier works instead of waiting
/// for a whole fsync batch to be applied, and C_replica and the REPORT
/// advance once per batch.
pub const MAX_APPLY_RECORDS: usize = crate::storage::MAX_APPLY_BATCH;

/// Outputs the runtime executes, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplicaAction {
    /// Run replica recovery on the local files; answer with
    /// [`ReplicaEngine::handle_recovered`].
    Recover,
    /// Open a connection to the primary; answer with `handle_connected` or
    /// `handle_connect_failed`.
    Connect {
        /// The connection's id.
        conn: ConnId,
    },
    /// Send one encoded frame.
    Send {
        /// Connection.
        conn: ConnId,
        /// The frame bytes.
        frame: Bytes,
    },
    /// Close a connection.
    Close {
        /// Connection.
        conn: ConnId,
    },
    /// Append received WAL and fsync → [`Completion::Persisted`].
    Persist(PersistWork),
    /// Durably drop received bytes after `to` that were never validated →
    /// [`Completion::Truncated`].
    TruncateUnvalidated {
        /// The validated end.
        to: Lsn,
    },
    /// Apply validated, durable records in order → [`Completion::Applied`].
    Apply {
        /// The records.
        records: Vec<ValidatedRecord>,
    },
    /// Bootstrap by WAL from genesis (empty store, WAL at LSN 0, metadata
    /// committed) → [`Completion::Installed`].
    BootstrapGenesis {
        /// Cluster id from the primary's ACCEPT.
        cluster_id: ClusterId,
        /// This replica's id.
        replica_id: ReplicaId,
    },
    /// Start a snapshot transfer with these manifest bytes → [`Completion::BootstrapBegun`].
    BootstrapBegin {
        /// The manifest, verbatim.
        manifest: Bytes,
    },
    /// Write one piece of a snapshot file → [`Completion::PieceWritten`].
    BootstrapPiece {
        /// File index in the manifest.
        file_index: u32,
        /// Offset in the file.
        offset: u64,
        /// Bytes.
        bytes: Bytes,
    },
    /// Validate, install and commit the transferred snapshot → [`Completion::Installed`].
    BootstrapFinish {
        /// Cluster id from the primary's ACCEPT.
        cluster_id: ClusterId,
        /// This replica's id.
        replica_id: ReplicaId,
    },
    /// Remove an uncommitted bootstrap → [`Completion::Discarded`].
    BootstrapDiscard,
    /// Persist the halt (REPL-5) before anything else is done.
    PersistHalt {
        /// The halt.
        halt: Halt,
    },
}

/// The result of one storage action.
#[derive(Clone, Debug, PartialEq)]
pub enum Completion {
    /// A `Persist` finished: everything up to `through` is durable.
    Persisted {
        /// Durable end.
        through: Lsn,
    },
    /// A `TruncateUnvalidated` finished.
    Truncated,
    /// An `Apply` finished.
    Applied {
        /// Applied state after the batch.
        state: AppliedState,
    },
    /// A bootstrap committed (genesis or snapshot).
    Installed {
        /// Where the new stream starts.
        info: ReadyInfo,
    },
    /// `BootstrapBegin` wrote the manifest.
    BootstrapBegun {
        /// Bytes the manifest promises.
        bytes_total: u64,
    },
    /// A piece was written.
    PieceWritten {
        /// Its length.
        bytes: u64,
    },
    /// An uncommitted bootstrap was removed.
    Discarded,
    /// A storage action failed.
    Failed(StorageFailure),
}

/// Why a storage action failed.
#[derive(Clone, Debug, PartialEq)]
pub enum StorageFailure {
    /// Appending, syncing or truncating received WAL.
    Wal {
        /// What was being done.
        op: StorageOp,
        /// The error.
        detail: String,
    },
    /// Applying a record.
    Apply {
        /// Record start.
        lsn: Lsn,
        /// What failed.
        error: ApplyError,
    },
    /// A bootstrap step.
    Bootstrap(BootstrapError),
}

/// What recovery found.
#[derive(Clone, Debug, PartialEq)]
pub enum RecoveryOutcome {
    /// Nothing committed: bootstrap.
    Uninitialised,
    /// A persisted halt, a newly found integrity failure, or metadata that
    /// cannot be trusted.
    Halted {
        /// Why.
        halt: Halt,
        /// Metadata, if readable.
        metadata: Option<ReplicaMetadata>,
    },
    /// Recovered and ready to connect.
    Ready(ReadyInfo),
}

/// Where the current connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkPhase {
    /// `Connect` emitted; waiting for the transport.
    Opening,
    /// AUTH_BEGIN sent (a token is configured); waiting for the primary's
    /// AUTH_CHALLENGE. Nothing the peer says before it proved the token
    /// can halt this replica.
    Authenticating,
    /// HELLO sent; waiting for ACCEPT / REFUSE / ERROR.
    Handshaking,
    /// ACCEPTed by an empty replica bootstrapping from genesis: waiting
    /// for the genesis install before taking WAL frames.
    InstallingGenesis,
    /// Receiving WAL.
    Streaming,
    /// Receiving a snapshot (manifest seen or not).
    Transfer {
        /// SNAPSHOT_BEGIN arrived.
        begun: bool,
    },
    /// SNAPSHOT_END arrived; installing. The connection is done.
    TransferDone,
}

/// One connection's data. Exists exactly while the state has a connection
/// (checked by [`ReplicaEngine::check_invariants`]).
#[derive(Debug)]
struct Link {
    conn: ConnId,
    phase: LinkPhase,
    decoder: FrameDecoder,
    frames: u64,
    /// Handshake deadline, or the last time anything arrived while streaming.
    clock: Millis,
    request: Option<HelloRequest>,
    accepted: Option<Accept>,
    /// While authenticating: this connection's nonce and the HELLO to send
    /// once the primary proved the token.
    pending: Option<(Nonce, Hello)>,
    /// The cluster id the primary proved the token for (AUTH_CHALLENGE).
    proven_cluster: Option<ClusterId>,
    /// The primary closed the connection while snapshot frames it sent
    /// were still buffered here (held back by backpressure): they are
    /// taken first, and the link ends only if they do not finish the
    /// transfer (F-S1: a served transfer is never cut by its own EOF).
    closed: Option<String>,
}

/// A snapshot transfer handed to storage, kept across connections while
/// the replica is uninitialised, so an interrupted transfer resumes from
/// the bytes already written (F-S1) if the primary still serves the same
/// snapshot. Storage writes pieces in order and reports a failure of any
/// of them (which discards the transfer), and a reconnect waits until
/// every piece was written, so the resume point is exactly what storage
/// holds.
#[derive(Clone, Debug)]
struct Transfer {
    /// SNAPSHOT_BEGIN's manifest bytes (the snapshot's identity).
    manifest: Bytes,
    /// Where the next byte belongs.
    next_file: u32,
    next_offset: u64,
    /// Progress (observability).
    progress: BootstrapProgress,
    /// When the current connection's transfer started, and the bytes held then.
    session_started: Millis,
}

impl Transfer {
    fn resume_point(&self) -> SnapshotResume {
        SnapshotResume {
            manifest_crc32c: crc32c::crc32c(&self.manifest),
            manifest_len: self.manifest.len() as u64,
            file_index: self.next_file,
            offset: self.next_offset,
        }
    }

    /// Whether a piece at `file_index`/`offset` continues the transfer:
    /// the next byte of the current file, or the start of a later one.
    fn continues(&self, file_index: u32, offset: u64) -> bool {
        (file_index == self.next_file && offset == self.next_offset) || (file_index > self.next_file && offset == 0)
    }

    /// Counts a piece and refreshes the rate and the estimate.
    fn advance(&mut self, now: Millis, file_index: u32, offset: u64, len: u64) {
        self.next_file = file_index;
        self.next_offset = offset.saturating_add(len);
        let p = &mut self.progress;
        p.phase = BootstrapPhase::Transferring;
        p.bytes_done = p.bytes_done.saturating_add(len);
        let elapsed_ms = now.saturating_sub(self.session_started);
        if elapsed_ms >= 100 {
            p.rate_bytes_per_s = p.bytes_done.saturating_sub(p.resumed_from).saturating_mul(1000) / elapsed_ms;
        }
        p.eta_s = (p.rate_bytes_per_s > 0 && p.bytes_total > 0).then(|| p.bytes_total.saturating_sub(p.bytes_done).div_ceil(p.rate_bytes_per_s));
    }
}

/// A replica's sans-IO engine.
pub struct ReplicaEngine {
    config: ReplicaConfig,
    machine: StateMachine,
    metadata: Option<ReplicaMetadata>,
    stream: Option<StreamState>,
    link: Option<Link>,
    primary: Option<PrimaryProgress>,
    /// The primary's commit times from PROGRESS (lag in seconds; REPL-10:
    /// observability only).
    lag: LagClock,
    /// The primary's client API address from its last ACCEPT (observability only).
    primary_client_addr: Option<std::net::SocketAddr>,
    backoff: Backoff,
    next_conn: ConnId,
    /// Storage actions (other than Apply) emitted and not yet completed.
    disk_inflight: u32,
    /// Apply actions emitted and not yet completed.
    apply_inflight: u32,
    /// Snapshot piece bytes emitted and not yet written.
    transfer_inflight: u64,
    /// A retry is due but waits for storage to finish (so the resume point is final).
    connect_pending: bool,
    /// The snapshot transfer in progress or interrupted, if any.
    transfer: Option<Transfer>,
    recovery_report: Option<std::sync::Arc<serde_json::Value>>,
    /// The replication token (`--repl-token-file`): when set, every
    /// connection authenticates both ways before HELLO.
    token: Option<ReplToken>,
    actions: VecDeque<ReplicaAction>,
    stopped: bool,
    version: u64,
}

impl ReplicaEngine {
    /// A new engine in `Initializing`.
    pub fn new(config: ReplicaConfig) -> Self {
        let backoff = Backoff::new(config.timing.backoff_min_ms, config.timing.backoff_max_ms, config.seed);
        ReplicaEngine {
            metadata: config.recorded.clone(),
            config,
            machine: StateMachine::new(),
            stream: None,
            link: None,
            primary: None,
            lag: LagClock::default(),
            primary_client_addr: None,
            backoff,
            next_conn: 1,
            disk_inflight: 0,
            apply_inflight: 0,
            transfer_inflight: 0,
            connect_pending: false,
            transfer: None,
            recovery_report: None,
            token: None,
            actions: VecDeque::new(),
            stopped: false,
            version: 0,
        }
    }

    /// Requires token authentication with the primary on every
    /// connection (`--repl-token-file`). The runtime then answers each
    /// `Connect` with [`ReplicaEngine::handle_connected_with_nonce`].
    pub fn with_auth(mut self, token: ReplToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Whether a token is configured.
    pub fn requires_auth(&self) -> bool {
        self.token.is_some()
    }

    // ----- outputs -------------------------------------------------------

    /// The next action to execute, in order.
    pub fn poll_action(&mut self) -> Option<ReplicaAction> {
        self.actions.pop_front()
    }

    /// When [`ReplicaEngine::handle_timer`] must be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.stopped {
            return None;
        }
        match (self.machine.state(), &self.link) {
            (ReplicaState::Disconnected { retry_at, .. }, _) if !self.connect_pending => Some(*retry_at),
            (_, Some(link)) => match link.phase {
                LinkPhase::Opening | LinkPhase::Authenticating | LinkPhase::Handshaking => Some(link.clock),
                LinkPhase::Streaming | LinkPhase::Transfer { .. } => Some(link.clock.saturating_add(self.config.timing.idle_timeout_ms)),
                LinkPhase::InstallingGenesis | LinkPhase::TransferDone => None,
            },
            _ => None,
        }
    }

    /// Whether the engine takes more bytes now (backpressure: the runtime
    /// stops reading the socket while this is false).
    pub fn wants_bytes(&self) -> bool {
        let Some(link) = &self.link else { return false };
        if link.phase == LinkPhase::InstallingGenesis || link.phase == LinkPhase::TransferDone {
            return false;
        }
        let unapplied = self.stream.as_ref().map_or(0, StreamState::unapplied_bytes);
        // A record larger than the budget is taken to its end (it is bounded
        // by MAX_RECORD_LEN), or it could never be applied to free the budget.
        let record_arriving = self.stream.as_ref().is_some_and(StreamState::only_a_partial_record_unapplied);
        (unapplied < self.config.max_unapplied_bytes || record_arriving) && self.transfer_inflight < self.config.max_unapplied_bytes
    }

    /// A counter that changes whenever anything observable changed.
    pub fn version(&self) -> u64 {
        self.version
    }

    // ----- observation ---------------------------------------------------

    /// The runtime state.
    pub fn state(&self) -> &ReplicaState {
        self.machine.state()
    }

    /// Pipeline positions (zero before bootstrap).
    pub fn positions(&self) -> Positions {
        self.stream.as_ref().map(StreamState::positions).unwrap_or_default()
    }

    /// A consistent copy of everything observable.
    pub fn observe(&self) -> ReplicaObserved {
        ReplicaObserved {
            state: self.machine.state().clone(),
            handshakes: self.machine.handshakes(),
            reconnects: self.machine.reconnects(),
            positions: self.positions(),
            primary: self.primary,
            lag_ms: self.lag.lag_ms(self.positions().applied_commit_id, self.primary),
            metadata: self.metadata.clone(),
            replica_id: self.replica_id().clone(),
            name: self.config.name.clone(),
            bootstrap_method_requested: self.config.bootstrap,
            primary_addr: self.config.primary.clone(),
            primary_client_addr: self.primary_client_addr,
            recovery: self.recovery_report.clone(),
            transfer: self.bootstrap_progress(),
        }
    }

    /// The snapshot transfer's progress: live while bootstrapping, kept
    /// (phase `Interrupted`) while an interrupted transfer waits to resume.
    pub fn bootstrap_progress(&self) -> Option<BootstrapProgress> {
        match self.machine.state() {
            ReplicaState::Bootstrapping { progress, .. } => Some(*progress),
            _ => self.transfer.as_ref().map(|t| BootstrapProgress { phase: BootstrapPhase::Interrupted, rate_bytes_per_s: 0, eta_s: None, ..t.progress }),
        }
    }

    fn replica_id(&self) -> &ReplicaId {
        self.metadata.as_ref().map_or(&self.config.new_replica_id, |m| &m.replica_id)
    }

    // ----- inputs --------------------------------------------------------

    /// The process started: recover the local files.
    pub fn handle_start(&mut self, _now: Millis) {
        if self.machine.state().kind() == StateKind::Initializing && self.transition(ReplicaState::Recovering, "process start") {
            self.actions.push_back(ReplicaAction::Recover);
        }
        self.finish_step();
    }

    /// Recovery's result.
    pub fn handle_recovered(&mut self, now: Millis, outcome: RecoveryOutcome) {
        if self.stopped || self.machine.state().kind() != StateKind::Recovering {
            return;
        }
        match outcome {
            RecoveryOutcome::Halted { halt, metadata } => {
                self.metadata = metadata.or(self.metadata.take());
                // Already persisted by recovery (or metadata that cannot be trusted: never persisted).
                self.enter_halt(halt, false);
            }
            RecoveryOutcome::Uninitialised => {
                self.metadata = None;
                self.connect_now(now);
            }
            RecoveryOutcome::Ready(info) => {
                self.start_stream(&info);
                self.recovery_report = info.report.map(std::sync::Arc::new);
                self.connect_now(now);
            }
        }
        self.finish_step();
    }

    /// The transport connected `conn` (no token configured).
    pub fn handle_connected(&mut self, now: Millis, conn: ConnId) {
        self.connected(now, conn, None);
    }

    /// The transport connected `conn`; `nonce` is this connection's fresh
    /// replica nonce, drawn by the runtime from the OS RNG (used when a
    /// token is configured).
    pub fn handle_connected_with_nonce(&mut self, now: Millis, conn: ConnId, nonce: Nonce) {
        self.connected(now, conn, Some(nonce));
    }

    fn connected(&mut self, now: Millis, conn: ConnId, nonce: Option<Nonce>) {
        if !self.is_current(conn) {
            self.actions.push_back(ReplicaAction::Close { conn });
            return;
        }
        let request = match (&self.stream, self.config.bootstrap) {
            (Some(s), _) => HelloRequest::resume(s.resume_tip()),
            (None, BootstrapMethod::Wal) => HelloRequest::resume(ChainTip::GENESIS),
            (None, BootstrapMethod::Snapshot) => match &self.transfer {
                Some(t) => HelloRequest::SnapshotResume(t.resume_point()),
                None => HelloRequest::Snapshot,
            },
        };
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: self.metadata.as_ref().map(|m| m.cluster_id.clone()),
            replica_id: self.replica_id().clone(),
            name: self.config.name.clone(),
            request,
        };
        let deadline = now.saturating_add(self.config.timing.handshake_timeout_ms);
        if self.token.is_some() {
            let Some(nonce) = nonce else {
                self.end_link(now, Blocked::Auth { primary: self.config.primary.clone(), failure: AuthFailure::NoNonce });
                return self.finish_step();
            };
            if let Some(link) = self.link.as_mut() {
                link.phase = LinkPhase::Authenticating;
                link.request = Some(request);
                link.clock = deadline;
                link.pending = Some((nonce, hello));
            }
            self.send(Message::Auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: nonce }));
            return self.finish_step();
        }
        if let Some(link) = self.link.as_mut() {
            link.phase = LinkPhase::Handshaking;
            link.request = Some(request);
            link.clock = deadline;
        }
        self.send(Message::Hello(hello));
        self.finish_step();
    }

    /// The transport could not connect `conn`.
    pub fn handle_connect_failed(&mut self, now: Millis, conn: ConnId, detail: String) {
        if self.is_current(conn) {
            self.end_link(now, Blocked::ConnectFailed { primary: self.config.primary.clone(), detail });
        }
        self.finish_step();
    }

    /// The connection `conn` ended (peer closed, reset, write failed).
    pub fn handle_closed(&mut self, now: Millis, conn: ConnId, detail: String) {
        if self.is_current(conn) {
            match self.link.as_mut() {
                // Frames the primary sent before closing are taken first.
                Some(link) if matches!(link.phase, LinkPhase::Transfer { .. }) && link.decoder.buffered() > 0 => {
                    link.closed = Some(detail);
                    self.pump(now);
                }
                Some(link) if link.phase != LinkPhase::TransferDone => self.end_link(now, Blocked::ConnectionLost { detail }),
                _ => {}
            }
        }
        self.finish_step();
    }

    /// Bytes arrived on `conn` (copied into the link's frame decoder).
    pub fn handle_bytes(&mut self, now: Millis, conn: ConnId, bytes: &[u8]) {
        self.received(now, conn, |decoder| decoder.push(bytes));
    }

    /// Bytes arrived on `conn` in a buffer the runtime hands over: the
    /// same decisions as [`ReplicaEngine::handle_bytes`], without copying
    /// when the runtime reads each frame into one buffer
    /// ([`FrameDecoder::push_owned`]).
    pub fn handle_received(&mut self, now: Millis, conn: ConnId, bytes: BytesMut) {
        self.received(now, conn, |decoder| decoder.push_owned(bytes));
    }

    fn received(&mut self, now: Millis, conn: ConnId, push: impl FnOnce(&mut FrameDecoder)) {
        if !self.is_current(conn) {
            return;
        }
        if let Some(link) = self.link.as_mut() {
            push(&mut link.decoder);
            if matches!(link.phase, LinkPhase::Streaming | LinkPhase::Transfer { .. }) {
                link.clock = now;
            }
        }
        self.pump(now);
        self.finish_step();
    }

    /// Time passed: deadlines and retries.
    pub fn handle_timer(&mut self, now: Millis) {
        if self.stopped {
            return;
        }
        if let ReplicaState::Disconnected { retry_at, .. } = self.machine.state() {
            if now >= *retry_at {
                self.retry(now);
            }
        } else if let Some(link) = &self.link {
            let idle = self.config.timing.idle_timeout_ms;
            let expired = match link.phase {
                LinkPhase::Opening | LinkPhase::Authenticating | LinkPhase::Handshaking => now >= link.clock,
                LinkPhase::Streaming | LinkPhase::Transfer { .. } => now >= link.clock.saturating_add(idle),
                LinkPhase::InstallingGenesis | LinkPhase::TransferDone => false,
            };
            if expired {
                let limit = if matches!(link.phase, LinkPhase::Opening | LinkPhase::Authenticating | LinkPhase::Handshaking) {
                    self.config.timing.handshake_timeout_ms
                } else {
                    idle
                };
                self.end_link(now, Blocked::ConnectionIdle { idle_limit_ms: limit });
            }
        }
        self.finish_step();
    }

    /// A storage action finished.
    pub fn handle_completion(&mut self, now: Millis, completion: Completion) {
        self.version += 1;
        match completion {
            Completion::Applied { state } => {
                self.apply_inflight = self.apply_inflight.saturating_sub(1);
                if let Some(stream) = self.stream.as_mut() {
                    stream.applied_through(state);
                }
                self.report();
            }
            Completion::Failed(StorageFailure::Apply { lsn, error }) => {
                self.apply_inflight = self.apply_inflight.saturating_sub(1);
                self.halt(Halt::from_apply(&error, lsn));
            }
            other => {
                self.disk_inflight = self.disk_inflight.saturating_sub(1);
                self.storage_done(now, other);
            }
        }
        if !self.stopped {
            self.pump(now);
            if self.connect_pending && self.disk_inflight == 0 {
                self.retry(now);
            }
        }
        self.finish_step();
    }

    /// The node is shutting down: close the connection, emit nothing more.
    pub fn handle_stop(&mut self, _now: Millis) {
        if let Some(link) = self.link.take() {
            self.actions.push_back(ReplicaAction::Close { conn: link.conn });
        }
        self.stopped = true;
        self.version += 1;
    }

    // ----- internals -----------------------------------------------------

    fn finish_step(&mut self) {
        self.check_invariants();
    }

    /// What must hold after every step (debug and test builds).
    pub fn check_invariants(&self) {
        self.machine.check_invariants();
        let state = self.machine.state();
        if !self.stopped {
            debug_assert_eq!(state.conn(), self.link.as_ref().map(|l| l.conn), "the link exists exactly while the state has a connection");
        }
        debug_assert!(state.kind() != StateKind::Streaming || self.stream.is_some(), "streaming without a bootstrapped stream");
        debug_assert!(self.stream.is_none() || self.metadata.is_some(), "a stream exists only for a bootstrapped replica");
        let before_stream = matches!(state.kind(), StateKind::Initializing | StateKind::Recovering | StateKind::Halted);
        debug_assert!(self.metadata.is_none() || self.stream.is_some() || before_stream, "a bootstrapped replica past recovery has a stream");
        if let Some(stream) = &self.stream {
            stream.check_invariants();
        }
    }

    fn transition(&mut self, to: ReplicaState, why: &str) -> bool {
        self.version += 1;
        match self.machine.transition(to, why) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "refused an invalid replica state transition");
                debug_assert!(false, "{e}");
                false
            }
        }
    }

    fn is_current(&self, conn: ConnId) -> bool {
        !self.stopped && self.link.as_ref().is_some_and(|l| l.conn == conn)
    }

    fn start_stream(&mut self, info: &ReadyInfo) {
        self.metadata = Some(info.metadata.clone());
        self.stream = Some(StreamState::new(info.start.applied, info.start.segment, info.start.segment_len));
        self.version += 1;
    }

    fn send(&mut self, message: Message) {
        if let Some(link) = &self.link {
            self.actions.push_back(ReplicaAction::Send { conn: link.conn, frame: message.to_frame() });
        }
    }

    fn report(&mut self) {
        if self.link.as_ref().is_some_and(|l| l.phase == LinkPhase::Streaming) {
            self.send(Message::Report(self.positions()));
        }
    }

    fn connect_now(&mut self, now: Millis) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let after = self.machine.state().blocked().cloned();
        let target = if self.metadata.is_none() && self.config.bootstrap == BootstrapMethod::Snapshot {
            let progress = self.transfer.as_ref().map_or_else(BootstrapProgress::default, |t| BootstrapProgress {
                phase: BootstrapPhase::Requesting,
                rate_bytes_per_s: 0,
                eta_s: None,
                ..t.progress
            });
            ReplicaState::Bootstrapping { conn, progress }
        } else {
            ReplicaState::Connecting { conn, after }
        };
        let why = if self.metadata.is_none() { "empty replica: bootstrapping" } else { "connecting to the primary" };
        if self.transition(target, why) {
            let decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
            let clock = now.saturating_add(self.config.timing.handshake_timeout_ms);
            self.link = Some(Link {
                conn,
                phase: LinkPhase::Opening,
                decoder,
                frames: 0,
                clock,
                request: None,
                accepted: None,
                pending: None,
                proven_cluster: None,
                closed: None,
            });
            self.actions.push_back(ReplicaAction::Connect { conn });
        }
    }

    /// A retry is due: wait for storage to settle, drop an unvalidated tail
    /// (so the resume point and the receiver agree), then connect.
    fn retry(&mut self, now: Millis) {
        if self.disk_inflight > 0 {
            self.connect_pending = true;
            return;
        }
        if let Some(to) = self.stream.as_ref().and_then(StreamState::unvalidated_tail) {
            self.disk_inflight += 1;
            self.connect_pending = true;
            self.actions.push_back(ReplicaAction::TruncateUnvalidated { to });
            return;
        }
        self.connect_pending = false;
        self.connect_now(now);
    }

    /// Ends the current connection for `blocked` and schedules a retry.
    fn end_link(&mut self, now: Millis, blocked: Blocked) {
        let Some(link) = self.link.take() else { return };
        self.actions.push_back(ReplicaAction::Close { conn: link.conn });
        // An interrupted snapshot transfer is kept: the next connection asks
        // to resume it (F-S1); storage failures discard it (bootstrap_failed).
        let retry_at = now.saturating_add(self.backoff.next_delay());
        self.transition(ReplicaState::Disconnected { blocked, retry_at }, "connection ended");
    }

    fn halt(&mut self, halt: Halt) {
        self.enter_halt(halt, true);
    }

    fn enter_halt(&mut self, halt: Halt, persist: bool) {
        if self.machine.state().kind() == StateKind::Halted {
            return;
        }
        if persist {
            self.actions.push_back(ReplicaAction::PersistHalt { halt: halt.clone() });
        }
        if let Some(link) = self.link.take() {
            self.actions.push_back(ReplicaAction::Close { conn: link.conn });
        }
        self.connect_pending = false;
        self.transition(ReplicaState::Halted { halt }, "integrity failure");
    }

    /// Takes whole frames from the link while the engine can act on them.
    fn pump(&mut self, now: Millis) {
        while self.wants_bytes() {
            let Some(link) = self.link.as_mut() else { return };
            let first = link.frames == 0;
            match link.decoder.next_frame() {
                Ok(Some(frame)) => {
                    link.frames += 1;
                    self.on_frame(now, frame);
                }
                Ok(None) => {
                    // Every whole frame was taken: a closed link ends now.
                    if let Some(detail) = link.closed.take() {
                        if link.phase != LinkPhase::TransferDone {
                            self.end_link(now, Blocked::ConnectionLost { detail });
                        }
                    }
                    return;
                }
                Err(e) => {
                    self.on_frame_error(now, e, first);
                    return;
                }
            }
        }
    }

    fn on_frame_error(&mut self, now: Millis, error: FrameError, first: bool) {
        match error {
            FrameError::BadMagic { found } if first => {
                let primary = self.config.primary.clone();
                if self.metadata.is_some() {
                    self.halt(Halt::PeerNotAerodb { primary, found_magic: found });
                } else {
                    // Whom an empty replica reached says nothing about its history: retry.
                    self.end_link(now, Blocked::PeerNotAerodb { primary, found_magic: found });
                }
            }
            error => self.end_link(now, Blocked::Frame { error }),
        }
    }

    fn protocol_error(&mut self, now: Millis, kind: &str, detail: String) {
        self.end_link(now, Blocked::Protocol { error: MessageError { kind: kind.into(), detail } });
    }

    fn on_frame(&mut self, now: Millis, frame: Frame) {
        let message = match Message::decode(&frame) {
            Ok(m) => m,
            Err(error) => return self.end_link(now, Blocked::Protocol { error }),
        };
        let Some(phase) = self.link.as_ref().map(|l| l.phase) else { return };
        match (phase, message) {
            (_, Message::Error(error)) => self.end_link(now, Blocked::PrimaryCannotServe { error }),
            (LinkPhase::Authenticating, Message::Auth(AuthMessage::Challenge { primary_nonce, cluster_id, proof })) => {
                self.on_challenge(now, primary_nonce, cluster_id, proof)
            }
            (LinkPhase::Authenticating | LinkPhase::Handshaking, Message::Auth(AuthMessage::Refuse(refuse))) => {
                let failure = match refuse.code {
                    AuthRefuseCode::AUTH_REQUIRED => AuthFailure::PrimaryRequiresToken { detail: refuse.detail },
                    AuthRefuseCode::AUTH_FAILED => AuthFailure::ProofRejected { detail: refuse.detail },
                    AuthRefuseCode::AUTH_NOT_CONFIGURED => AuthFailure::PrimaryHasNoToken { detail: refuse.detail },
                };
                self.end_link(now, Blocked::Auth { primary: self.config.primary.clone(), failure });
            }
            // The peer has not proved the token: what it says is never a
            // verdict about this replica's history (no halt).
            (LinkPhase::Authenticating, Message::Refuse(refuse)) => {
                let request = self.link.as_ref().and_then(|l| l.request).unwrap_or(HelloRequest::Snapshot);
                self.end_link(now, Blocked::Refused { refuse, request });
            }
            (LinkPhase::Authenticating, m) => {
                let failure = AuthFailure::PrimaryUnproven { answered: format!("{:?}", m.kind()) };
                self.end_link(now, Blocked::Auth { primary: self.config.primary.clone(), failure });
            }
            (LinkPhase::Handshaking, Message::Accept(accept)) => self.on_accept(now, accept),
            (LinkPhase::Handshaking, Message::Refuse(refuse)) => {
                let request = self.link.as_ref().and_then(|l| l.request).unwrap_or(HelloRequest::Snapshot);
                if self.metadata.is_some() && refuse.code().halts() {
                    let replica_cluster_id = self.metadata.as_ref().map(|m| m.cluster_id.clone());
                    self.halt(Halt::Refused { refuse, request, replica_cluster_id });
                } else {
                    self.end_link(now, Blocked::Refused { refuse, request });
                }
            }
            (LinkPhase::Streaming, Message::Progress(p, times)) => self.on_progress(now, p, times),
            (LinkPhase::Streaming, Message::Wal(chunk)) => self.on_wal(now, chunk),
            (LinkPhase::Transfer { begun: false }, Message::SnapshotBegin(manifest)) => self.on_snapshot_begin(now, manifest),
            (LinkPhase::Transfer { begun: true }, Message::SnapshotChunk { file_index, offset, bytes }) => {
                self.on_snapshot_chunk(now, file_index, offset, bytes)
            }
            (LinkPhase::Transfer { begun: true }, Message::SnapshotEnd) => self.on_snapshot_end(),
            (LinkPhase::TransferDone, _) => {}
            (phase, m) => self.protocol_error(now, &format!("{:?}", m.kind()), format!("unexpected frame in phase {phase:?}")),
        }
    }

    /// AUTH_CHALLENGE: check the primary's proof (constant time), then
    /// prove the token back over the exact HELLO bytes and send them.
    fn on_challenge(&mut self, now: Millis, primary_nonce: Nonce, cluster_id: ClusterId, proof: crate::auth::Proof) {
        let (Some(token), Some((nonce, hello))) = (self.token.clone(), self.link.as_mut().and_then(|l| l.pending.take())) else {
            return self.protocol_error(now, "AuthChallenge", "AUTH_CHALLENGE without a pending authentication".into());
        };
        if !token.verify_primary(PROTOCOL_VERSION, &cluster_id, &nonce, &primary_nonce, &proof) {
            let failure = AuthFailure::PrimaryProofInvalid { claimed_cluster_id: cluster_id };
            return self.end_link(now, Blocked::Auth { primary: self.config.primary.clone(), failure });
        }
        let payload = Message::Hello(hello).payload();
        let proof = token.replica_proof(PROTOCOL_VERSION, &cluster_id, &nonce, &primary_nonce, &payload);
        self.send(Message::Auth(AuthMessage::Proof { proof }));
        if let Some(link) = self.link.as_mut() {
            link.phase = LinkPhase::Handshaking;
            link.proven_cluster = Some(cluster_id);
            // The HELLO goes out as exactly the bytes the proof covers.
            self.actions.push_back(ReplicaAction::Send { conn: link.conn, frame: Bytes::from(frame::encode(FrameType::Hello, &payload)) });
        }
    }

    fn on_accept(&mut self, now: Millis, accept: Accept) {
        let proven = self.link.as_ref().and_then(|l| l.proven_cluster.clone());
        if proven.as_ref().is_some_and(|c| *c != accept.cluster_id) {
            return self.protocol_error(now, "Accept", format!("ACCEPT names cluster {} but the primary proved the token for {proven:?}", accept.cluster_id));
        }
        if let Some(m) = &self.metadata {
            if accept.cluster_id != m.cluster_id {
                let halt = Halt::ClusterMismatchAtAccept { replica_cluster_id: m.cluster_id.clone(), primary_cluster_id: accept.cluster_id };
                return self.halt(halt);
            }
        }
        let progress = PrimaryProgress { commit_id: accept.primary_commit_id, durable_lsn: accept.durable_lsn };
        let expected_start = match (&self.stream, self.config.bootstrap) {
            (Some(s), _) => Some(s.resume_tip().end_lsn),
            (None, BootstrapMethod::Wal) => Some(0),
            (None, BootstrapMethod::Snapshot) => None,
        };
        if accept.start_lsn != expected_start {
            let lsn = |l: Option<Lsn>| l.map_or_else(|| "a snapshot session".to_string(), |l| format!("LSN {l}"));
            return self.protocol_error(now, "Accept", format!("ACCEPT starts at {}, the replica asked for {}", lsn(accept.start_lsn), lsn(expected_start)));
        }
        self.primary = Some(progress);
        self.primary_client_addr = accept.client_addr.or(self.primary_client_addr);
        let (cluster_id, replica_id) = (accept.cluster_id.clone(), self.replica_id().clone());
        let Some(link) = self.link.as_mut() else { return };
        link.accepted = Some(accept);
        link.clock = now;
        match (&self.stream, self.config.bootstrap) {
            (Some(_), _) => {
                link.phase = LinkPhase::Streaming;
                let conn = link.conn;
                self.backoff.reset();
                self.transition(ReplicaState::Streaming { conn }, "handshake accepted: resume point proven");
                self.report();
            }
            (None, BootstrapMethod::Wal) => {
                link.phase = LinkPhase::InstallingGenesis;
                self.disk_inflight += 1;
                self.actions.push_back(ReplicaAction::BootstrapGenesis { cluster_id, replica_id });
            }
            (None, BootstrapMethod::Snapshot) => {
                link.phase = LinkPhase::Transfer { begun: false };
                let resume = link.accepted.as_ref().and_then(|a| a.snapshot_resume);
                let asked = match link.request {
                    Some(HelloRequest::SnapshotResume(r)) => Some(r),
                    _ => None,
                };
                match (resume, asked) {
                    // The primary continues where this replica asked: keep what storage holds.
                    (Some(r), Some(a)) if r == a => {
                        if let Some(t) = self.transfer.as_mut() {
                            t.progress.resumed_from = t.progress.bytes_done;
                            t.progress.resumes += 1;
                            t.session_started = now;
                            tracing::info!(
                                bytes_done = t.progress.bytes_done,
                                file_index = r.file_index,
                                offset = r.offset,
                                "resuming the snapshot transfer (F-S1)"
                            );
                        }
                    }
                    (Some(r), _) => {
                        return self.protocol_error(now, "Accept", format!("ACCEPT resumes a snapshot transfer at {r:?}, the replica asked for {asked:?}"));
                    }
                    // A whole snapshot follows: what an interrupted transfer left is discarded.
                    (None, _) => self.drop_transfer(),
                }
                let progress = self.transfer.as_ref().map_or_else(BootstrapProgress::default, |t| t.progress);
                if let ReplicaState::Bootstrapping { progress: p, .. } = self.machine.data_mut() {
                    *p = BootstrapProgress { phase: BootstrapPhase::Transferring, ..progress };
                }
                self.version += 1;
            }
        }
    }

    fn on_snapshot_begin(&mut self, now: Millis, manifest: Bytes) {
        let Some(link) = self.link.as_mut() else { return };
        let resumed = link.accepted.as_ref().is_some_and(|a| a.snapshot_resume.is_some());
        if resumed {
            // The resume point named this manifest; the bytes must be the same.
            if self.transfer.as_ref().is_none_or(|t| t.manifest != manifest) {
                self.drop_transfer();
                return self.protocol_error(now, "SnapshotBegin", "a resumed transfer announced another manifest".into());
            }
            if let Some(link) = self.link.as_mut() {
                link.phase = LinkPhase::Transfer { begun: true };
            }
            return;
        }
        link.phase = LinkPhase::Transfer { begun: true };
        self.transfer =
            Some(Transfer { manifest: manifest.clone(), next_file: 0, next_offset: 0, progress: BootstrapProgress::default(), session_started: now });
        self.disk_inflight += 1;
        self.actions.push_back(ReplicaAction::BootstrapBegin { manifest });
    }

    fn on_snapshot_chunk(&mut self, now: Millis, file_index: u32, offset: u64, bytes: Bytes) {
        let Some(t) = self.transfer.as_mut() else { return };
        if !t.continues(file_index, offset) {
            let (f, o) = (t.next_file, t.next_offset);
            return self.protocol_error(
                now,
                "SnapshotChunk",
                format!("piece of file #{file_index} at {offset} does not continue the transfer at file #{f}, offset {o}"),
            );
        }
        let len = bytes.len() as u64;
        t.advance(now, file_index, offset, len);
        let progress = t.progress;
        self.disk_inflight += 1;
        self.transfer_inflight += len;
        if let ReplicaState::Bootstrapping { progress: p, .. } = self.machine.data_mut() {
            *p = progress;
        }
        self.version += 1;
        self.actions.push_back(ReplicaAction::BootstrapPiece { file_index, offset, bytes });
    }

    /// Forgets the transfer and has storage remove what it wrote.
    fn drop_transfer(&mut self) {
        if self.transfer.take().is_some() {
            self.disk_inflight += 1;
            self.actions.push_back(ReplicaAction::BootstrapDiscard);
        }
    }

    fn on_progress(&mut self, now: Millis, p: PrimaryProgress, times: ProgressTimes) {
        if let Some(last) = self.primary {
            if p.commit_id < last.commit_id || p.durable_lsn < last.durable_lsn {
                return self.protocol_error(
                    now,
                    "Progress",
                    format!(
                        "primary progress went backwards: CommitId {} durable LSN {} then CommitId {} durable LSN {}",
                        last.commit_id, last.durable_lsn, p.commit_id, p.durable_lsn
                    ),
                );
            }
        }
        self.primary = Some(p);
        self.lag.on_progress(p, times, self.positions().applied_commit_id);
        self.version += 1;
    }

    fn on_wal(&mut self, now: Millis, chunk: ReceivedChunk) {
        let Some(stream) = self.stream.as_mut() else { return };
        match stream.receive(chunk) {
            Ok(work) => {
                self.disk_inflight += 1;
                self.actions.push_back(ReplicaAction::Persist(work));
            }
            Err(PipelineError::Protocol(error)) => self.end_link(now, Blocked::Protocol { error }),
            Err(PipelineError::Halt(halt)) => self.halt(*halt),
            Err(PipelineError::Io(e)) => self.halt(Halt::Storage { op: StorageOp::PersistWal, detail: e.to_string() }),
        }
    }

    fn on_snapshot_end(&mut self) {
        let Some(link) = self.link.as_mut() else { return };
        link.phase = LinkPhase::TransferDone;
        let cluster_id = link.accepted.as_ref().map(|a| a.cluster_id.clone());
        if let ReplicaState::Bootstrapping { progress, .. } = self.machine.data_mut() {
            progress.phase = BootstrapPhase::Installing;
        }
        self.version += 1;
        if let Some(cluster_id) = cluster_id {
            self.disk_inflight += 1;
            let replica_id = self.replica_id().clone();
            self.actions.push_back(ReplicaAction::BootstrapFinish { cluster_id, replica_id });
        }
    }

    fn storage_done(&mut self, now: Millis, completion: Completion) {
        let halted = self.machine.state().kind() == StateKind::Halted;
        if halted && !matches!(completion, Completion::Persisted { .. }) {
            // Nothing is installed or retried once halted (REPL-5). Records
            // validated before the halt still drain into the store below, so
            // a halted replica's state is everything valid it received.
            return;
        }
        match completion {
            Completion::Persisted { through } => {
                if let Some(stream) = self.stream.as_mut() {
                    let mut ready = stream.persisted(through).into_iter().peekable();
                    while ready.peek().is_some() {
                        // Bounded actions: each is reported applied on its own, so
                        // the unapplied budget frees as apply progresses.
                        let records: Vec<ValidatedRecord> = ready.by_ref().take(MAX_APPLY_RECORDS).collect();
                        self.apply_inflight += 1;
                        self.actions.push_back(ReplicaAction::Apply { records });
                    }
                    self.version += 1;
                }
            }
            Completion::Truncated => {
                if let Some(stream) = self.stream.as_mut() {
                    stream.tail_dropped();
                }
            }
            Completion::Installed { info } => self.installed(now, info),
            Completion::BootstrapBegun { bytes_total } => {
                if let Some(t) = self.transfer.as_mut() {
                    t.progress.bytes_total = bytes_total;
                }
                if let ReplicaState::Bootstrapping { progress, .. } = self.machine.data_mut() {
                    progress.bytes_total = bytes_total;
                }
                self.version += 1;
            }
            Completion::PieceWritten { bytes } => self.transfer_inflight = self.transfer_inflight.saturating_sub(bytes),
            Completion::Discarded => self.transfer_inflight = 0,
            Completion::Failed(StorageFailure::Wal { op, detail }) => self.halt(Halt::Storage { op, detail }),
            Completion::Failed(StorageFailure::Bootstrap(error)) => self.bootstrap_failed(now, error),
            Completion::Applied { .. } | Completion::Failed(StorageFailure::Apply { .. }) => {}
        }
    }

    fn installed(&mut self, now: Millis, info: ReadyInfo) {
        if self.metadata.is_some() {
            return;
        }
        self.start_stream(&info);
        self.transfer_inflight = 0;
        self.transfer = None;
        tracing::info!(
            method = info.metadata.bootstrap.method.as_str(),
            commit_id = info.metadata.bootstrap.boundary_commit_id,
            lsn = info.metadata.bootstrap.boundary_lsn,
            "bootstrap committed"
        );
        let phase = self.link.as_ref().map(|l| l.phase);
        match phase {
            Some(LinkPhase::InstallingGenesis) => {
                if let Some(link) = self.link.as_mut() {
                    link.phase = LinkPhase::Streaming;
                    link.clock = now;
                    let conn = link.conn;
                    self.backoff.reset();
                    self.transition(ReplicaState::Streaming { conn }, "bootstrapped from genesis: streaming");
                    self.report();
                }
            }
            Some(LinkPhase::TransferDone) => {
                if let Some(link) = self.link.take() {
                    self.actions.push_back(ReplicaAction::Close { conn: link.conn });
                }
                self.backoff.reset();
                self.connect_now(now);
            }
            // The connection already ended: the retry resumes from the new cut.
            _ => {}
        }
    }

    fn bootstrap_failed(&mut self, now: Millis, error: BootstrapError) {
        let phase = self.link.as_ref().map(|l| l.phase);
        match (phase, error) {
            (Some(LinkPhase::InstallingGenesis), BootstrapError::Io(detail)) => self.halt(Halt::Storage { op: StorageOp::Bootstrap, detail }),
            (Some(LinkPhase::InstallingGenesis | LinkPhase::Transfer { .. } | LinkPhase::TransferDone), error) => {
                let blocked = match error {
                    BootstrapError::Rejected(rejected) => Blocked::SnapshotRejected { rejected },
                    BootstrapError::Protocol(detail) => Blocked::Protocol { error: MessageError { kind: "SnapshotChunk".into(), detail } },
                    BootstrapError::Io(detail) => Blocked::BootstrapStorage { detail },
                };
                tracing::warn!(code = crate::halt::Reason::code(&blocked), "bootstrap attempt failed; the replica stays uninitialised");
                // Nothing of a failed transfer is kept: the next attempt starts clean.
                self.drop_transfer();
                self.end_link(now, blocked);
            }
            // A completion of an attempt whose connection already ended: a
            // transfer storage could not continue is not resumed.
            _ => self.drop_transfer(),
        }
    }
}

#[cfg(test)]
mod tests;
