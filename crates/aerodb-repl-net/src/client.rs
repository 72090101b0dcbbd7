//! The replica's side of the connection: the supervisor thread that runs
//! recovery, bootstrap and streaming, and turns what the wire brings into
//! inputs for repl-core. Every verdict (halt, refuse, validate, apply) is
//! repl-core's; this loop only moves bytes and performs the transitions
//! those verdicts call for.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex};
use serde_json::json;

use aerodb_repl_core::halt::HaltReason;
use aerodb_repl_core::handshake::{Accept, Hello, HelloRequest, PROTOCOL_VERSION};
use aerodb_repl_core::metadata::{BootstrapMethod, ReplicaMetadata, ReplicaPaths};
use aerodb_repl_core::pipeline::PipelineError;
use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_core::replica::{
    bootstrap_from_genesis, discard_uncommitted, persist_halt, recover_replica, BootstrapError, ReadyReplica, Recovered, SnapshotFormat, SnapshotTransfer,
};
use aerodb_repl_core::state::ReplicaState;
use aerodb_repl_core::status::{BootstrapState, PrimaryProgress};
use aerodb_wal::disk::Disk;
use aerodb_wal::ChainTip;

use crate::frame::{self, write_frame, Frame, FrameError, DEFAULT_MAX_PAYLOAD};
use crate::message::{Message, ServeError};

/// Read timeout of one poll (lets the loop notice a stop request).
const POLL: Duration = Duration::from_millis(250);
/// Silence after which a connection is considered dead. The primary sends
/// progress at least every 500 ms, so only a dead or stalled link is this quiet.
const IDLE_POLLS: u32 = 40;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A stop request shared with the node's signal handler.
#[derive(Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    /// Requests a stop.
    pub fn stop(&self) {
        *self.stopped.lock() = true;
        self.changed.notify_all();
    }
    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.lock()
    }
    /// Waits up to `d`; returns true if stopped.
    pub fn wait(&self, d: Duration) -> bool {
        let mut s = self.stopped.lock();
        if !*s {
            let _ = self.changed.wait_for(&mut s, d);
        }
        *s
    }
}

/// How the replica connects and bootstraps.
#[derive(Clone, Debug)]
pub struct ReplicaClientConfig {
    /// Primary replication address.
    pub primary: String,
    /// Bootstrap method for an empty replica.
    pub method: BootstrapMethod,
    /// Replica id to use if this replica has none yet.
    pub new_replica_id: String,
    /// Data directory root.
    pub root: PathBuf,
}

/// How a session ended: blocked (no halt: retry), halted, or stopped.
enum SessionEnd {
    Blocked(Box<HaltReason>),
    Halt(Box<HaltReason>),
    Stopped,
}

fn blocked(code: &str, rule: &str, detail: impl Into<String>) -> SessionEnd {
    SessionEnd::Blocked(Box::new(HaltReason::new(code, rule, detail, None, None, json!({}))))
}

fn halted(reason: HaltReason) -> SessionEnd {
    SessionEnd::Halt(Box::new(reason))
}

/// A connection with a buffered frame reader that survives read timeouts.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    scratch: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn, SessionEnd> {
        let mut last = None;
        let addrs = addr.to_socket_addrs().map_err(|e| blocked("CONNECT_FAILED", "F-N1", format!("cannot resolve {addr}: {e}")))?;
        for a in addrs {
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    stream.set_read_timeout(Some(POLL)).map_err(|e| blocked("CONNECT_FAILED", "F-N1", e.to_string()))?;
                    return Ok(Conn { stream, buf: BytesMut::with_capacity(8 * 1024 * 1024), scratch: vec![0u8; 256 * 1024] });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(blocked("CONNECT_FAILED", "F-N1", format!("cannot connect to {addr}: {}", last.map_or("no address".into(), |e| e.to_string()))))
    }

    fn send(&mut self, m: &Message) -> Result<(), SessionEnd> {
        let (kind, payload) = m.encode();
        write_frame(&mut self.stream, kind, &payload).and_then(|_| self.stream.flush()).map_err(|e| blocked("CONNECTION_LOST", "F-N1", e.to_string()))
    }

    /// Next frame; `Ok(None)` after `IDLE_POLLS` silent polls is a dead link.
    fn next(&mut self, stop: &StopSignal) -> Result<Frame, SessionEnd> {
        let mut silent = 0u32;
        loop {
            match frame::take(&mut self.buf, DEFAULT_MAX_PAYLOAD) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(frame_error(e)),
            }
            if stop.is_stopped() {
                return Err(SessionEnd::Stopped);
            }
            match self.stream.read(&mut self.scratch) {
                Ok(0) => return Err(blocked("CONNECTION_LOST", "F-N1", "primary closed the connection")),
                Ok(n) => {
                    silent = 0;
                    self.buf.extend_from_slice(&self.scratch[..n]);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    silent += 1;
                    if silent >= IDLE_POLLS {
                        return Err(blocked("CONNECTION_IDLE", "F-N1", "no frame from the primary within the idle limit"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(blocked("CONNECTION_LOST", "F-N1", e.to_string())),
            }
        }
    }
}

/// The primary could not serve: block and retry (never a halt).
fn serve_error(e: &ServeError) -> SessionEnd {
    SessionEnd::Blocked(Box::new(HaltReason::primary_cannot_serve(&e.code, &e.detail)))
}

fn frame_error(e: FrameError) -> SessionEnd {
    blocked(e.code(), "F-N2", e.to_string())
}

/// Connects and performs the handshake.
fn handshake(cfg: &ReplicaClientConfig, hello: &Hello, stop: &StopSignal) -> Result<(Conn, Accept), SessionEnd> {
    let mut conn = Conn::open(&cfg.primary)?;
    conn.send(&Message::Hello(hello.clone()))?;
    let frame = match conn.next(stop) {
        Ok(f) => f,
        Err(SessionEnd::Blocked(reason)) if reason.code == "PEER_NOT_AERODB" => {
            return Err(halted(
                HaltReason::new(
                    "PEER_NOT_AERODB",
                    "REPL-1",
                    format!("{} does not answer as an AeroDB primary: {}", cfg.primary, reason.detail),
                    None,
                    None,
                    json!({"primary": cfg.primary}),
                )
                .with_failure("F-C1"),
            ))
        }
        Err(e) => return Err(e),
    };
    match Message::decode(&frame) {
        Ok(Message::Accept(a)) => {
            if let Some(expected) = &hello.cluster_id {
                if &a.cluster_id != expected {
                    return Err(halted(
                        HaltReason::new(
                            "CLUSTER_MISMATCH",
                            "REPL-1",
                            format!("primary is cluster {}, replica belongs to {expected}", a.cluster_id),
                            None,
                            None,
                            json!({"replica_cluster_id": expected, "primary_cluster_id": a.cluster_id}),
                        )
                        .with_failure("F-C1"),
                    ));
                }
            }
            Ok((conn, a))
        }
        Ok(Message::Refuse(r)) => {
            let reason = HaltReason::from_refusal(&r, hello);
            if r.code.halts() {
                Err(halted(reason))
            } else {
                Err(SessionEnd::Blocked(Box::new(reason)))
            }
        }
        Ok(Message::Error(e)) => Err(serve_error(&e)),
        Ok(other) => Err(blocked("PROTOCOL_ERROR", "F-N2", format!("unexpected answer to hello: {other:?}"))),
        Err(e) => Err(blocked("PROTOCOL_ERROR", "F-N2", e.to_string())),
    }
}

/// The supervisor: runs until stopped. Never returns early on a halt: a
/// halted replica keeps its status observable until the process stops.
pub fn run_replica(handle: Arc<ReplicaHandle>, disk: Arc<dyn Disk>, format: Arc<dyn SnapshotFormat>, cfg: ReplicaClientConfig, stop: Arc<StopSignal>) {
    let shared = handle.shared.clone();
    let paths = ReplicaPaths::new(&cfg.root);
    let _ = shared.transition(ReplicaState::Recovering, "process start");
    let recovered = match recover_replica(disk.clone(), &paths, &*format) {
        Ok(r) => r,
        Err(e) => {
            shared.halt(HaltReason::new(e.check, "F-RC2", e.to_string(), None, None, json!({"file": e.file})).with_failure("F-RC2"));
            stop.wait(Duration::MAX);
            return;
        }
    };
    let mut first: Option<(Conn, Accept)> = None;
    let mut ready = match recovered {
        Recovered::Halted { halt, metadata } => {
            if let Some(m) = &metadata {
                publish_metadata(&handle, m, BootstrapState::Complete);
            }
            shared.halt(*halt);
            stop.wait(Duration::MAX);
            return;
        }
        Recovered::Ready(r) => {
            let r = *r;
            shared.update(|o| o.recovery = r.report.as_ref().and_then(|rep| serde_json::to_value(rep).ok()));
            r
        }
        Recovered::Uninitialised { discarded } => {
            if !discarded.is_empty() {
                tracing::warn!(?discarded, "discarded an uncommitted bootstrap (F-S1/F-S2)");
            }
            match bootstrap(&handle, disk.clone(), &paths, &*format, &cfg, &stop) {
                Some((r, conn)) => {
                    first = conn;
                    r
                }
                None => return,
            }
        }
    };
    handle.set_store(ready.store.clone());
    publish_metadata(&handle, &ready.metadata, BootstrapState::Complete);
    shared.update(|o| o.positions = ready.pipeline.positions());
    stream_forever(&handle, disk, &paths, &cfg, &stop, &mut ready, first);
}

fn publish_metadata(handle: &ReplicaHandle, m: &ReplicaMetadata, state: BootstrapState) {
    handle.shared.update(|o| {
        o.cluster_id = Some(m.cluster_id.clone());
        o.replica_id = Some(m.replica_id.clone());
        o.bootstrap = Some(m.bootstrap);
        o.bootstrap_state = state;
    });
}

fn halt(handle: &ReplicaHandle, disk: &dyn Disk, paths: &ReplicaPaths, reason: HaltReason, stop: &StopSignal) {
    persist_halt(disk, paths, &reason);
    handle.shared.halt(reason);
    stop.wait(Duration::MAX);
}

struct Backoff(Duration);
impl Backoff {
    fn wait(&mut self, stop: &StopSignal) -> bool {
        let stopped = stop.wait(self.0);
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        stopped
    }
    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }
}

/// Bootstraps an empty replica. Returns None when stopped or halted.
fn bootstrap(
    handle: &ReplicaHandle,
    disk: Arc<dyn Disk>,
    paths: &ReplicaPaths,
    format: &dyn SnapshotFormat,
    cfg: &ReplicaClientConfig,
    stop: &StopSignal,
) -> Option<(ReadyReplica, Option<(Conn, Accept)>)> {
    let shared = &handle.shared;
    let mut backoff = Backoff(BACKOFF_MIN);
    shared.update(|o| o.replica_id = Some(cfg.new_replica_id.clone()));
    loop {
        let outcome = match cfg.method {
            BootstrapMethod::Snapshot => {
                let _ = shared.transition(ReplicaState::Bootstrapping, "empty replica: snapshot bootstrap");
                shared.update(|o| o.bootstrap_state = BootstrapState::InProgress);
                snapshot_session(disk.clone(), paths, format, cfg, stop).map(|r| (r, None))
            }
            BootstrapMethod::Wal => {
                let _ = shared.transition(ReplicaState::Connecting, "empty replica: WAL bootstrap from genesis");
                let tip = ChainTip::GENESIS;
                let hello = Hello {
                    protocol_version: PROTOCOL_VERSION,
                    cluster_id: None,
                    replica_id: cfg.new_replica_id.clone(),
                    request: HelloRequest::Resume { end_lsn: tip.end_lsn, commit_id: tip.commit_id, fingerprint: tip.fingerprint },
                };
                handshake(cfg, &hello, stop).and_then(|(conn, accept)| {
                    bootstrap_from_genesis(disk.clone(), paths, &accept.cluster_id, &cfg.new_replica_id)
                        .map(|r| (r, Some((conn, accept))))
                        .map_err(|e| halted(HaltReason::new("BOOTSTRAP_IO", "REPL-9", e.to_string(), None, None, json!({}))))
                })
            }
        };
        match outcome {
            Ok(r) => {
                tracing::info!(method = ?cfg.method, boundary = ?r.0.metadata.bootstrap, "bootstrap committed");
                return Some(r);
            }
            Err(SessionEnd::Halt(reason)) => {
                // Nothing was installed and no bootstrap runs any more: report
                // it as not started (as a restart of this halted replica does).
                shared.update(|o| o.bootstrap_state = BootstrapState::NotStarted);
                halt(handle, &*disk, paths, *reason, stop);
                return None;
            }
            Err(SessionEnd::Stopped) => return None,
            Err(SessionEnd::Blocked(reason)) => {
                tracing::warn!(code = %reason.code, detail = %reason.detail, "bootstrap attempt failed; replica stays uninitialised");
                if let Err(e) = discard_uncommitted(&*disk, paths) {
                    tracing::error!(error = %e, "cannot discard the partial bootstrap");
                }
                shared.update(|o| {
                    o.blocking = Some(*reason);
                    o.bootstrap_state = BootstrapState::NotStarted;
                });
                let _ = shared.transition(ReplicaState::Disconnected, "bootstrap attempt failed");
                if backoff.wait(stop) {
                    return None;
                }
            }
        }
    }
}

fn snapshot_session(
    disk: Arc<dyn Disk>,
    paths: &ReplicaPaths,
    format: &dyn SnapshotFormat,
    cfg: &ReplicaClientConfig,
    stop: &StopSignal,
) -> Result<ReadyReplica, SessionEnd> {
    let hello = Hello { protocol_version: PROTOCOL_VERSION, cluster_id: None, replica_id: cfg.new_replica_id.clone(), request: HelloRequest::Snapshot };
    let (mut conn, accept) = handshake(cfg, &hello, stop)?;
    let rejected = |e: BootstrapError| match e {
        BootstrapError::Rejected(r) => blocked(&r.code, &r.rule_id, r.detail),
        BootstrapError::Protocol(d) => blocked("PROTOCOL_ERROR", "F-N2", d),
        BootstrapError::Io(d) => blocked("BOOTSTRAP_IO", "REPL-9", d),
    };
    let manifest = match Message::decode(&conn.next(stop)?) {
        Ok(Message::SnapshotBegin(m)) => m,
        Ok(Message::Error(e)) => return Err(serve_error(&e)),
        other => return Err(blocked("PROTOCOL_ERROR", "F-N2", format!("expected a snapshot manifest, got {other:?}"))),
    };
    let mut transfer = SnapshotTransfer::begin(disk, paths, format, &manifest).map_err(rejected)?;
    loop {
        match Message::decode(&conn.next(stop)?) {
            Ok(Message::SnapshotChunk { file_index, offset, bytes }) => transfer.piece(file_index, offset, &bytes).map_err(rejected)?,
            Ok(Message::SnapshotEnd) => break,
            other => return Err(blocked("PROTOCOL_ERROR", "F-N2", format!("unexpected frame during snapshot transfer: {other:?}"))),
        }
    }
    transfer.finish(format, &accept.cluster_id, &cfg.new_replica_id).map_err(rejected)
}

fn stream_forever(
    handle: &ReplicaHandle,
    disk: Arc<dyn Disk>,
    paths: &ReplicaPaths,
    cfg: &ReplicaClientConfig,
    stop: &StopSignal,
    ready: &mut ReadyReplica,
    mut first: Option<(Conn, Accept)>,
) {
    let shared = &handle.shared;
    let mut backoff = Backoff(BACKOFF_MIN);
    loop {
        let session = match first.take() {
            Some(c) => Ok(c),
            None => {
                let _ = shared.transition(ReplicaState::Connecting, "connecting to the primary");
                let tip = ready.pipeline.resume_tip();
                let hello = Hello {
                    protocol_version: PROTOCOL_VERSION,
                    cluster_id: Some(ready.metadata.cluster_id.clone()),
                    replica_id: ready.metadata.replica_id.clone(),
                    request: HelloRequest::Resume { end_lsn: tip.end_lsn, commit_id: tip.commit_id, fingerprint: tip.fingerprint },
                };
                handshake(cfg, &hello, stop)
            }
        };
        let end = match session {
            Ok((mut conn, accept)) => {
                shared.update(|o| {
                    o.primary = Some(PrimaryProgress { commit_id: accept.primary_commit_id, durable_lsn: accept.durable_lsn });
                    o.blocking = None;
                });
                let _ = shared.transition(ReplicaState::Streaming, "handshake accepted: resume point proven");
                backoff.reset();
                stream(handle, &mut conn, ready, stop)
            }
            Err(e) => e,
        };
        match end {
            SessionEnd::Stopped => return,
            SessionEnd::Halt(reason) => {
                halt(handle, &*disk, paths, *reason, stop);
                return;
            }
            SessionEnd::Blocked(reason) => {
                tracing::warn!(code = %reason.code, detail = %reason.detail, "replication connection ended");
                shared.update(|o| o.blocking = Some(*reason));
                let _ = shared.transition(ReplicaState::Disconnected, "connection ended");
                if backoff.wait(stop) {
                    return;
                }
            }
        }
    }
}

fn stream(handle: &ReplicaHandle, conn: &mut Conn, ready: &mut ReadyReplica, stop: &StopSignal) -> SessionEnd {
    let shared = &handle.shared;
    // Report at once, so the primary shows a caught-up replica's positions
    // before any WAL flows (observability only: never an acknowledgement).
    if let Err(end) = conn.send(&Message::Report(ready.pipeline.positions())) {
        return end;
    }
    loop {
        let frame = match conn.next(stop) {
            Ok(f) => f,
            Err(end) => return end,
        };
        match Message::decode(&frame) {
            Ok(Message::Wal(chunk)) => {
                let taken = ready.pipeline.take(chunk, |p| shared.update(|o| o.positions = p));
                match taken {
                    Ok(()) => {
                        if let Err(end) = conn.send(&Message::Report(ready.pipeline.positions())) {
                            return end;
                        }
                    }
                    Err(PipelineError::Protocol(d)) => return blocked("PROTOCOL_ERROR", "F-N2", d),
                    Err(PipelineError::Halt(h)) => return SessionEnd::Halt(h),
                    Err(PipelineError::Io(e)) => return halted(HaltReason::new("REPLICA_IO_ERROR", "REPL-9", e.to_string(), None, None, json!({}))),
                }
            }
            Ok(Message::Progress(p)) => shared.update(|o| o.primary = Some(p)),
            Ok(Message::Error(e)) => return serve_error(&e),
            Ok(other) => return blocked("PROTOCOL_ERROR", "F-N2", format!("unexpected frame while streaming: {other:?}")),
            Err(e) => return blocked("PROTOCOL_ERROR", "F-N2", e.to_string()),
        }
    }
}
