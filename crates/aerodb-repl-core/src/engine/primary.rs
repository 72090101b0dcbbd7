//! One connection on the primary's replication port as a sans-IO state
//! machine: the HELLO deadline, the handshake decision
//! ([`crate::handshake::decide`]), WAL shipping strictly below the durable
//! LSN (F-P1) with PROGRESS heartbeats, snapshot serving, REPORT
//! validation (RES-4) and the fence a replica's proof raises (REPL-11).
//!
//! The runtime feeds bytes, the durable point, WAL and snapshot reads and
//! time; it executes the [`SessionAction`]s. Nothing here reads a file or
//! a socket.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use aerodb_wal::durable::DurablePoint;
use aerodb_wal::log::WalChunk;
use aerodb_wal::record::{peek_record_len, record_identity};
use aerodb_wal::{CommitId, Lsn};

use super::Millis;
use crate::auth::{AuthRefuse, AuthRefuseCode, Nonce, PeerAuth, Proof, ReplToken};
use crate::commit_times::CommitTimes;
use crate::fence::{fence_for, Fence};
use crate::handshake::{decide, Accept, Decision, Hello, HelloRequest, PrimaryHistory, Refusal, RefusalCode, Refuse, PROTOCOL_VERSION};
use crate::ids::ClusterId;
use crate::positions::{Positions, PrimaryProgress, ProgressTimes};
use crate::wire::message::check_report;
use crate::wire::{AuthMessage, FrameDecoder, FrameError, Message, MessageError, OutFrame, ReceivedChunk, ServeCode, ServeError, MAX_REPLICA_PAYLOAD};

/// Pacing and sizes of a session. Timeouts only close connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long a new connection may take to send a whole HELLO (RES-3).
    pub hello_timeout_ms: Millis,
    /// PROGRESS is sent at least this often while idle (keeps replicas'
    /// idle timers from firing on a healthy link).
    pub heartbeat_ms: Millis,
    /// Most WAL bytes per frame.
    pub max_chunk_bytes: usize,
    /// Snapshot file piece size.
    pub snapshot_piece_bytes: usize,
    /// The primary's client API address, sent in ACCEPT (observability only).
    pub client_addr: Option<std::net::SocketAddr>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { hello_timeout_ms: 5_000, heartbeat_ms: 500, max_chunk_bytes: 4 * 1024 * 1024, snapshot_piece_bytes: 1024 * 1024, client_addr: None }
    }
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum SessionEnd {
    /// The handshake was refused.
    Refused {
        /// Code.
        code: RefusalCode,
    },
    /// No complete HELLO within the deadline.
    HelloTimeout,
    /// A framing error from the replica.
    Frame {
        /// What was wrong.
        error: FrameError,
    },
    /// A malformed or unexpected message from the replica.
    Protocol {
        /// What was wrong.
        error: MessageError,
    },
    /// The primary could not serve (its own WAL or snapshot unreadable).
    CannotServe {
        /// Code.
        code: ServeCode,
    },
    /// A snapshot was sent completely.
    SnapshotServed,
    /// The replica closed the connection.
    PeerClosed,
    /// The WAL the replica was being sent was removed by retention (RES-2):
    /// the connection closes and its next handshake is answered
    /// `WAL_UNAVAILABLE` with the numbers.
    WalRetired,
    /// Token authentication refused the peer (v2 auth phase).
    AuthRefused {
        /// Code sent in AUTH_REFUSE.
        code: AuthRefuseCode,
    },
    /// The peer closed after AUTH_CHALLENGE without proving the token: it
    /// could not verify this primary's proof (another token), or gave up.
    /// Counted as `AUTH_FAILED`.
    AuthAbandoned,
}

impl SessionEnd {
    /// A stable code for logs and the replica registry.
    pub fn code(&self) -> &'static str {
        match self {
            SessionEnd::Refused { code } => code.as_str(),
            SessionEnd::HelloTimeout => "HELLO_TIMEOUT",
            SessionEnd::Frame { error } => error.code(),
            SessionEnd::Protocol { .. } => "PROTOCOL_ERROR",
            SessionEnd::CannotServe { code } => code.as_str(),
            SessionEnd::SnapshotServed => "SNAPSHOT_SERVED",
            SessionEnd::PeerClosed => "PEER_CLOSED",
            SessionEnd::WalRetired => "WAL_RETIRED",
            SessionEnd::AuthRefused { code } => code.as_str(),
            SessionEnd::AuthAbandoned => "AUTH_FAILED",
        }
    }
}

/// Outputs the runtime executes, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum SessionAction {
    /// Send one frame (a WAL chunk's bytes stay in the buffer they were
    /// read into: [`OutFrame`]).
    Send(OutFrame),
    /// Read whole records from `from` up to `limit` (the durable LSN),
    /// about `max_bytes` → `handle_wal_read` / `handle_wal_read_failed`.
    ReadWal {
        /// First LSN.
        from: Lsn,
        /// Durable LSN bound.
        limit: Lsn,
        /// Byte budget.
        max_bytes: usize,
    },
    /// Choose (or create) the snapshot to serve → `handle_snapshot_ready` / `handle_snapshot_failed`.
    PrepareSnapshot,
    /// Read a piece of snapshot file `file_index` → `handle_snapshot_piece` / `handle_snapshot_failed`.
    ReadSnapshot {
        /// File index in the manifest.
        file_index: u32,
        /// Offset.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// A replica proved the primary lost or rewrote durable history: fence
    /// (persist first, REPL-11) before the refusal is sent.
    Fence(Box<Fence>),
    /// Close the connection.
    Close(SessionEnd),
}

/// Where the token authentication of this connection is (docs/protocol.md,
/// "Authentication"). It all happens before HELLO is decided.
#[derive(Clone, Debug)]
enum AuthPhase {
    /// No token configured: HELLO comes first (AUTH_BEGIN is refused AUTH_NOT_CONFIGURED).
    Off,
    /// Waiting for AUTH_BEGIN.
    AwaitingBegin { token: ReplToken, nonce: Nonce },
    /// AUTH_CHALLENGE sent; waiting for AUTH_PROOF.
    Challenged { token: ReplToken, nonce: Nonce, replica_nonce: Nonce },
    /// AUTH_PROOF received; the HELLO that follows must verify under it.
    Proved { token: ReplToken, nonce: Nonce, replica_nonce: Nonce, proof: Proof },
    /// The peer proved the token for this cluster.
    Authenticated,
}

impl AuthPhase {
    fn peer(&self) -> PeerAuth {
        match self {
            AuthPhase::Off => PeerAuth::NotRequired,
            AuthPhase::Authenticated => PeerAuth::Authenticated,
            _ => PeerAuth::Unauthenticated,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    AwaitingHello { deadline: Millis },
    Streaming { next_lsn: Lsn, reading: bool, last_sent: Millis },
    Snapshot { files: Vec<u64>, file: usize, offset: u64, reading: bool },
    PreparingSnapshot,
    Closed,
}

/// What the registry shows about the replica on this connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionView {
    /// The replica's hello, once received.
    pub hello: Option<Hello>,
    /// `handshake`, `streaming` or `snapshot`.
    pub session: &'static str,
    /// Last REPORT (validated against what was sent).
    pub reported: Option<Positions>,
    /// LSN the primary has sent up to.
    pub sent_lsn: Lsn,
    /// WAL bytes shipped on this connection.
    pub shipped_bytes: u64,
    /// Whether the peer authenticated (token configured) or need not.
    pub peer_auth: PeerAuth,
}

/// One replication connection on the primary.
pub struct PrimarySession {
    config: SessionConfig,
    cluster_id: ClusterId,
    phase: Phase,
    decoder: FrameDecoder,
    durable: DurablePoint,
    hello: Option<Hello>,
    reported: Option<Positions>,
    sent: PrimaryProgress,
    shipped_bytes: u64,
    auth: AuthPhase,
    actions: VecDeque<SessionAction>,
    /// The primary's commit times (PROGRESS v2); None: times unknown.
    commit_times: Option<Arc<CommitTimes>>,
    /// The primary's wall clock (Unix ms) as last passed in; 0 = unknown.
    wall_ms: u64,
}

impl PrimarySession {
    /// A session for a connection accepted at `now`.
    pub fn new(now: Millis, config: SessionConfig, cluster_id: ClusterId, durable: DurablePoint) -> Self {
        PrimarySession {
            config,
            cluster_id,
            phase: Phase::AwaitingHello { deadline: now.saturating_add(config.hello_timeout_ms) },
            decoder: FrameDecoder::new(MAX_REPLICA_PAYLOAD),
            durable,
            hello: None,
            reported: None,
            sent: PrimaryProgress::default(),
            shipped_bytes: 0,
            auth: AuthPhase::Off,
            actions: VecDeque::new(),
            commit_times: None,
            wall_ms: 0,
        }
    }

    /// Lets PROGRESS frames carry the primary's commit times (lag in
    /// seconds on replicas; observability only, REPL-10).
    pub fn with_commit_times(mut self, times: Arc<CommitTimes>) -> Self {
        self.commit_times = Some(times);
        self
    }

    /// The primary's wall clock now (Unix ms), stated in the PROGRESS
    /// frames that follow. Passed in by the runtime; decides nothing.
    pub fn handle_wall_clock(&mut self, wall_ms: u64) {
        self.wall_ms = wall_ms;
    }

    fn times(&self, progress: PrimaryProgress, next_commit_id: CommitId) -> ProgressTimes {
        let time = |c: CommitId| if c == 0 { 0 } else { self.commit_times.as_ref().and_then(|t| t.time_of(c)).unwrap_or(0) };
        ProgressTimes { primary_time_ms: self.wall_ms, commit_time_ms: time(progress.commit_id), next_commit_id, next_commit_time_ms: time(next_commit_id) }
    }

    /// Requires token authentication on this connection: the replica must
    /// prove `token` (and this session proves it back) before its HELLO is
    /// decided. `nonce` is this connection's fresh primary nonce, drawn by
    /// the runtime from the OS RNG.
    pub fn with_auth(mut self, token: ReplToken, nonce: Nonce) -> Self {
        self.auth = AuthPhase::AwaitingBegin { token, nonce };
        self
    }

    /// How the peer stands with respect to authentication.
    pub fn peer_auth(&self) -> PeerAuth {
        self.auth.peer()
    }

    /// The next action.
    pub fn poll_action(&mut self) -> Option<SessionAction> {
        self.actions.pop_front()
    }

    /// When `handle_timer` must be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match &self.phase {
            Phase::AwaitingHello { deadline } => Some(*deadline),
            Phase::Streaming { last_sent, .. } => Some(last_sent.saturating_add(self.config.heartbeat_ms)),
            _ => None,
        }
    }

    /// Whether the session ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether a WAL read should be issued now (the runtime waits on the
    /// durable point otherwise).
    pub fn wants_wal(&self) -> Option<Lsn> {
        match &self.phase {
            Phase::Streaming { next_lsn, reading: false, .. } => Some(*next_lsn),
            _ => None,
        }
    }

    /// What the registry shows.
    pub fn view(&self) -> SessionView {
        let (session, sent_lsn) = match &self.phase {
            Phase::Streaming { next_lsn, .. } => ("streaming", *next_lsn),
            Phase::Snapshot { .. } | Phase::PreparingSnapshot => ("snapshot", 0),
            _ => ("handshake", 0),
        };
        SessionView { hello: self.hello.clone(), session, reported: self.reported, sent_lsn, shipped_bytes: self.shipped_bytes, peer_auth: self.peer_auth() }
    }

    fn close(&mut self, end: SessionEnd) {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            self.actions.push_back(SessionAction::Close(end));
        }
    }

    fn send(&mut self, m: Message) {
        self.actions.push_back(SessionAction::Send(m.to_out_frame()));
    }

    fn cannot_serve(&mut self, code: ServeCode, detail: String) {
        tracing::error!(code = code.as_str(), %detail, "cannot serve a replica");
        self.send(Message::Error(ServeError { code, detail }));
        self.close(SessionEnd::CannotServe { code });
    }

    /// Bytes from the replica. `history` answers the handshake decision.
    /// Whatever the replica sends is decoded and validated before it is
    /// stored, logged or shown (RES-4); a bad frame or field is answered
    /// with an ERROR frame carrying its stable code, then the connection
    /// closes.
    pub fn handle_bytes(&mut self, now: Millis, bytes: &[u8], history: &dyn PrimaryHistory) {
        if self.phase == Phase::Closed {
            return;
        }
        if matches!(self.phase, Phase::AwaitingHello { deadline } if now >= deadline) {
            // The deadline holds however the runtime interleaves bytes and timers.
            return self.handle_timer(now);
        }
        self.decoder.push(bytes);
        loop {
            let frame = match self.decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(error) => return self.refuse_frame(error),
            };
            let message = match Message::decode(&frame) {
                Ok(m) => m,
                Err(error) => return self.refuse_message(error),
            };
            match (&self.phase, message) {
                (Phase::AwaitingHello { .. }, Message::Auth(m)) => self.on_auth(m),
                (Phase::AwaitingHello { .. }, Message::Hello(hello)) => self.on_hello_frame(now, hello, &frame.payload, history),
                (Phase::Streaming { next_lsn, .. }, Message::Report(report)) => {
                    if let Err(error) = check_report(&report, *next_lsn, self.sent.commit_id) {
                        return self.refuse_message(error);
                    }
                    self.reported = Some(report);
                }
                (_, m) => {
                    let error = MessageError { kind: format!("{:?}", m.kind()), detail: "unexpected frame from a replica".into() };
                    return self.refuse_message(error);
                }
            }
            if self.phase == Phase::Closed {
                return;
            }
        }
    }

    /// Answers a frame error with ERROR (unless the peer does not speak
    /// the protocol at all) and closes.
    fn refuse_frame(&mut self, error: FrameError) {
        let code = match &error {
            FrameError::BadMagic { .. } => None,
            FrameError::TooLarge { .. } => Some(ServeCode::FrameTooLarge),
            FrameError::UnknownType { .. } | FrameError::Reserved { .. } | FrameError::Checksum => Some(ServeCode::ProtocolError),
        };
        if let Some(code) = code {
            self.send(Message::Error(ServeError { code, detail: error.to_string() }));
        }
        self.close(SessionEnd::Frame { error });
    }

    /// Answers a malformed, unexpected or out-of-range message with ERROR
    /// `PROTOCOL_ERROR` (its detail is already bounded) and closes.
    fn refuse_message(&mut self, error: MessageError) {
        self.send(Message::Error(ServeError { code: ServeCode::ProtocolError, detail: error.to_string() }));
        self.close(SessionEnd::Protocol { error });
    }

    fn refuse_auth(&mut self, code: AuthRefuseCode, detail: String) {
        tracing::warn!(code = code.as_str(), %detail, "replication peer refused by token authentication (REPL-1)");
        self.send(Message::Auth(AuthMessage::Refuse(AuthRefuse { code, detail })));
        self.close(SessionEnd::AuthRefused { code });
    }

    /// The authentication phase (before HELLO).
    fn on_auth(&mut self, message: AuthMessage) {
        let auth = std::mem::replace(&mut self.auth, AuthPhase::Off);
        match (auth, message) {
            (AuthPhase::Off, AuthMessage::Begin { .. }) => self.refuse_auth(
                AuthRefuseCode::AUTH_NOT_CONFIGURED,
                "this primary has no --repl-token-file: it cannot prove a token to a replica that requires one".into(),
            ),
            (AuthPhase::AwaitingBegin { token, nonce }, AuthMessage::Begin { protocol_version, replica_nonce }) => {
                if protocol_version != PROTOCOL_VERSION {
                    self.auth = AuthPhase::AwaitingBegin { token, nonce };
                    let refusal = Refusal::ProtocolVersion { primary_protocol_version: PROTOCOL_VERSION };
                    let detail = format!("replica speaks protocol {protocol_version}, primary speaks {PROTOCOL_VERSION}");
                    self.send(Message::Refuse(Refuse { refusal, detail }));
                    return self.close(SessionEnd::Refused { code: RefusalCode::PROTOCOL_VERSION });
                }
                let proof = token.primary_proof(PROTOCOL_VERSION, &self.cluster_id, &replica_nonce, &nonce);
                self.send(Message::Auth(AuthMessage::Challenge { primary_nonce: nonce, cluster_id: self.cluster_id.clone(), proof }));
                self.auth = AuthPhase::Challenged { token, nonce, replica_nonce };
            }
            (AuthPhase::Challenged { token, nonce, replica_nonce }, AuthMessage::Proof { proof }) => {
                self.auth = AuthPhase::Proved { token, nonce, replica_nonce, proof };
            }
            (auth, m) => {
                self.auth = auth;
                let error = MessageError { kind: format!("{:?}", m.kind()), detail: "unexpected authentication frame from a replica".into() };
                self.refuse_message(error);
            }
        }
    }

    /// A HELLO: decided only once the peer authenticated (or when no
    /// token is configured). The replica's proof covers these exact bytes.
    fn on_hello_frame(&mut self, now: Millis, hello: Hello, payload: &[u8], history: &dyn PrimaryHistory) {
        let auth = std::mem::replace(&mut self.auth, AuthPhase::Off);
        match auth {
            AuthPhase::Off => self.on_hello(now, hello, history),
            AuthPhase::Proved { token, nonce, replica_nonce, proof } => {
                if token.verify_replica(PROTOCOL_VERSION, &self.cluster_id, &replica_nonce, &nonce, payload, &proof) {
                    self.auth = AuthPhase::Authenticated;
                    self.on_hello(now, hello, history);
                } else {
                    self.auth = AuthPhase::Proved { token, nonce, replica_nonce, proof };
                    self.refuse_auth(
                        AuthRefuseCode::AUTH_FAILED,
                        "the replica's proof does not verify under this primary's token (different --repl-token-file, or a replayed proof)".into(),
                    );
                }
            }
            auth @ AuthPhase::AwaitingBegin { .. } => {
                self.auth = auth;
                self.refuse_auth(
                    AuthRefuseCode::AUTH_REQUIRED,
                    "this primary requires token authentication: start the replica with --repl-token-file holding the primary's token".into(),
                );
            }
            auth => {
                self.auth = auth;
                self.refuse_auth(AuthRefuseCode::AUTH_FAILED, "HELLO arrived before the replica proved the token (AUTH_PROOF)".into());
            }
        }
    }

    fn on_hello(&mut self, now: Millis, hello: Hello, history: &dyn PrimaryHistory) {
        let decision = decide(history, &hello);
        let (id, name) = (hello.replica_id.as_str(), hello.name.as_ref().map_or("", |n| n.as_str()));
        match &decision {
            Decision::StreamFrom(lsn) => tracing::info!(replica_id = id, name, decision = "stream", start_lsn = lsn, "replication handshake"),
            Decision::ServeSnapshot => tracing::info!(replica_id = id, name, decision = "snapshot", "replication handshake"),
            Decision::Refuse(r) => {
                tracing::warn!(replica_id = id, name, decision = "refuse", code = r.code().as_str(), detail = %r.detail, "replication handshake")
            }
            Decision::Undecided(d) => tracing::error!(replica_id = id, name, decision = "undecided", detail = %d, "replication handshake"),
        }
        self.hello = Some(hello.clone());
        let (durable_lsn, commit_id) = history.durable();
        self.durable = DurablePoint { lsn: durable_lsn, commit_id };
        let client_addr = self.config.client_addr;
        let accept = |start_lsn| Accept {
            cluster_id: self.cluster_id.clone(),
            primary_commit_id: commit_id,
            durable_lsn,
            start_lsn,
            snapshot_resume: None,
            client_addr,
        };
        match decision {
            Decision::Refuse(refuse) => {
                // REPL-11: only a peer of this cluster that authenticated
                // (when a token is configured) may fence the primary.
                if let Some(fence) = fence_for(&self.cluster_id, self.peer_auth(), &hello, &refuse) {
                    self.actions.push_back(SessionAction::Fence(Box::new(fence)));
                }
                let code = refuse.code();
                self.send(Message::Refuse(refuse));
                self.close(SessionEnd::Refused { code });
            }
            Decision::Undecided(detail) => self.cannot_serve(ServeCode::PrimaryWalUnreadable, detail),
            Decision::ServeSnapshot => {
                self.phase = Phase::PreparingSnapshot;
                self.actions.push_back(SessionAction::PrepareSnapshot);
            }
            Decision::StreamFrom(lsn) => {
                let a = accept(Some(lsn));
                self.send(Message::Accept(a));
                self.sent = PrimaryProgress { commit_id, durable_lsn };
                self.phase = Phase::Streaming { next_lsn: lsn, reading: false, last_sent: now };
                self.next_read();
            }
        }
    }

    /// The primary's durable point advanced.
    pub fn handle_durable(&mut self, _now: Millis, point: DurablePoint) {
        if point.lsn > self.durable.lsn {
            self.durable = point;
        }
        self.next_read();
    }

    fn next_read(&mut self) {
        let limit = self.durable.lsn;
        let max_bytes = self.config.max_chunk_bytes;
        if let Phase::Streaming { next_lsn, reading, .. } = &mut self.phase {
            if !*reading && *next_lsn < limit {
                *reading = true;
                let from = *next_lsn;
                self.actions.push_back(SessionAction::ReadWal { from, limit, max_bytes });
            }
        }
    }

    /// A `ReadWal` finished. An empty chunk means nothing durable yet.
    pub fn handle_wal_read(&mut self, now: Millis, chunk: WalChunk) {
        let Phase::Streaming { next_lsn, reading, last_sent } = &mut self.phase else { return };
        *reading = false;
        if chunk.bytes.is_empty() || chunk.start_lsn != *next_lsn {
            return;
        }
        *next_lsn += chunk.bytes.len() as u64;
        *last_sent = now;
        self.shipped_bytes += chunk.bytes.len() as u64;
        // Progress first: the replica then never holds a commit beyond what the primary last reported.
        let progress = PrimaryProgress { commit_id: self.durable.commit_id, durable_lsn: self.durable.lsn };
        self.sent = progress;
        let first = peek_record_len(&chunk.bytes).ok().and_then(|len| chunk.bytes.get(..len)).map_or(0, |r| record_identity(r).0);
        let times = self.times(progress, first.min(progress.commit_id));
        self.send(Message::Progress(progress, times));
        self.send(Message::Wal(ReceivedChunk { start_lsn: chunk.start_lsn, segment_start: chunk.segment_start, bytes: chunk.bytes }));
        self.next_read();
    }

    /// A `ReadWal` failed: the primary cannot read its own WAL (never a
    /// verdict about the replica).
    pub fn handle_wal_read_failed(&mut self, _now: Millis, detail: String) {
        self.cannot_serve(ServeCode::PrimaryWalUnreadable, detail);
    }

    /// A `ReadWal` found the WAL it was to send removed by retention
    /// (RES-2): close; the replica's next handshake is answered
    /// `WAL_UNAVAILABLE` with the numbers.
    pub fn handle_wal_retired(&mut self, _now: Millis) {
        self.close(SessionEnd::WalRetired);
    }

    /// The snapshot to serve: its manifest bytes and file sizes. A replica
    /// that asked to resume a transfer of this very snapshot (same manifest
    /// bytes) gets the rest from the point it asked for, announced in the
    /// ACCEPT; any other gets the whole snapshot (F-S1).
    pub fn handle_snapshot_ready(&mut self, _now: Millis, manifest: Bytes, file_sizes: Vec<u64>) {
        if self.phase != Phase::PreparingSnapshot {
            return;
        }
        let resume = match self.hello.as_ref().map(|h| h.request) {
            Some(HelloRequest::SnapshotResume(r)) if r.matches(&manifest) && resumable(&file_sizes, r.file_index, r.offset) => Some(r),
            _ => None,
        };
        let a = Accept {
            cluster_id: self.cluster_id.clone(),
            primary_commit_id: self.durable.commit_id,
            durable_lsn: self.durable.lsn,
            start_lsn: None,
            snapshot_resume: resume,
            client_addr: self.config.client_addr,
        };
        self.send(Message::Accept(a));
        self.send(Message::SnapshotBegin(manifest));
        let (file, offset) = resume.map_or((0, 0), |r| (r.file_index as usize, r.offset));
        self.phase = Phase::Snapshot { files: file_sizes, file, offset, reading: false };
        self.next_piece();
    }

    fn next_piece(&mut self) {
        let piece = self.config.snapshot_piece_bytes.max(1);
        let Phase::Snapshot { files, file, offset, reading } = &mut self.phase else { return };
        while *file < files.len() && *offset >= files[*file] {
            *file += 1;
            *offset = 0;
        }
        if *file >= files.len() {
            self.send(Message::SnapshotEnd);
            return self.close(SessionEnd::SnapshotServed);
        }
        let len = usize::try_from(files[*file] - *offset).map_or(piece, |rest| rest.min(piece));
        *reading = true;
        let (file_index, offset) = (*file as u32, *offset);
        self.actions.push_back(SessionAction::ReadSnapshot { file_index, offset, len });
    }

    /// A `ReadSnapshot` finished.
    pub fn handle_snapshot_piece(&mut self, _now: Millis, bytes: Bytes) {
        let Phase::Snapshot { file, offset, reading, .. } = &mut self.phase else { return };
        *reading = false;
        let (file_index, at) = (*file as u32, *offset);
        *offset += bytes.len() as u64;
        if bytes.is_empty() {
            return self.cannot_serve(ServeCode::SnapshotUnavailable, "a snapshot file is shorter than its manifest says".into());
        }
        self.send(Message::SnapshotChunk { file_index, offset: at, bytes });
        self.next_piece();
    }

    /// No snapshot can be served.
    pub fn handle_snapshot_failed(&mut self, _now: Millis, detail: String) {
        self.cannot_serve(ServeCode::SnapshotUnavailable, detail);
    }

    /// The replica closed the connection.
    pub fn handle_closed(&mut self, _now: Millis) {
        if matches!(self.auth, AuthPhase::Challenged { .. }) {
            tracing::warn!(code = "AUTH_FAILED", "replication peer closed after the token challenge: it does not hold this primary's token (REPL-1)");
            return self.close(SessionEnd::AuthAbandoned);
        }
        self.close(SessionEnd::PeerClosed);
    }

    /// Deadlines and heartbeats.
    pub fn handle_timer(&mut self, now: Millis) {
        match &mut self.phase {
            Phase::AwaitingHello { deadline } if now >= *deadline => {
                let detail = format!("no complete HELLO within {} ms of the connection", self.config.hello_timeout_ms);
                self.send(Message::Error(ServeError { code: ServeCode::HelloTimeout, detail }));
                self.close(SessionEnd::HelloTimeout);
            }
            Phase::Streaming { last_sent, reading, next_lsn } if now >= last_sent.saturating_add(self.config.heartbeat_ms) => {
                *last_sent = now;
                let caught_up = !*reading && *next_lsn >= self.durable.lsn;
                // Only a caught-up replica gets the durable point as progress; otherwise
                // progress never runs ahead of the WAL already sent.
                let progress = if caught_up { PrimaryProgress { commit_id: self.durable.commit_id, durable_lsn: self.durable.lsn } } else { self.sent };
                self.sent = progress;
                let times = self.times(progress, 0);
                self.send(Message::Progress(progress, times));
            }
            _ => {}
        }
    }
}

/// Whether a transfer can continue at `file_index`/`offset` of a snapshot
/// with these file sizes (at most at the end of that file).
fn resumable(file_sizes: &[u64], file_index: u32, offset: u64) -> bool {
    file_sizes.get(file_index as usize).is_some_and(|size| offset <= *size)
}

#[cfg(test)]
mod tests;
