//! The primary's replication port: an accept loop with a connection cap,
//! and one thread per connection that drives a sans-IO
//! [`PrimarySession`]: bytes from a reader thread, durable-point wake-ups
//! and timers arrive on one channel; WAL and snapshot reads and socket
//! writes are executed here. Blocking writes give natural TCP backpressure.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use aerodb_repl_core::auth::ReplToken;
use aerodb_repl_core::engine::primary::{PrimarySession, SessionAction, SessionConfig, SessionEnd};
use aerodb_repl_core::fence::FenceLatch;
use aerodb_repl_core::ids::ClusterId;
use aerodb_repl_core::primary_io::{open_served_snapshot, PrimaryWal, ServedSnapshot, SnapshotSource};
use aerodb_repl_core::registry::WalPoint;
use aerodb_repl_core::wire::{FrameError, Message, ServeCode, ServeError, MAX_REPLICA_PAYLOAD};
use aerodb_wal::disk::Disk;
use aerodb_wal::durable::DurablePoint;
use aerodb_wal::log::LogError;

use crate::clock::{wall_ms, Clock};
pub use crate::registry::{ConnectedReplica, ReplicaRegistry};
use crate::security::fresh_nonce;
use crate::tls::{self, Accepted};
use crate::transport::{plain_connection, Connection};

/// Codes the replication port counts its refusals under (RES-3, RES-4), in
/// the order `/metrics` lists them: over the connection cap, no HELLO in
/// time, a frame too large, a malformed frame or field (or a REPORT beyond
/// what was sent).
pub const REJECT_CODES: [&str; 4] = ["TOO_MANY_CONNECTIONS", "HELLO_TIMEOUT", "FRAME_TOO_LARGE", "PROTOCOL_ERROR"];

/// The [`REJECT_CODES`] entry a session end counts under, if it was a refusal.
fn reject_code(end: &SessionEnd) -> Option<&'static str> {
    match end {
        SessionEnd::HelloTimeout => Some("HELLO_TIMEOUT"),
        SessionEnd::Frame { error: FrameError::TooLarge { .. } } => Some("FRAME_TOO_LARGE"),
        SessionEnd::Frame { .. } | SessionEnd::Protocol { .. } => Some("PROTOCOL_ERROR"),
        _ => None,
    }
}

/// What a refused connection did wrong, for the log (peer text in it is
/// already bounded and escaped, RES-4).
fn refusal_detail(end: &SessionEnd, hello_timeout_ms: u64) -> String {
    match end {
        SessionEnd::HelloTimeout => format!("no complete HELLO within {hello_timeout_ms} ms of the accept"),
        SessionEnd::Frame { error } => error.to_string(),
        SessionEnd::Protocol { error } => error.to_string(),
        _ => String::new(),
    }
}

/// Records how a connection ended — the refusal counted under its code
/// and logged, the peer removed from the registry — before the socket is
/// closed, so a peer that has seen the close finds its refusal already in
/// `/metrics` and itself gone from `/v1/replication` (RES-3, RES-4).
fn account_end(ctx: &PrimaryContext, id: u64, end: Option<&SessionEnd>, config: SessionConfig, peer: &str) {
    if let Some((end, code)) = end.and_then(|e| reject_code(e).map(|c| (e, c))) {
        ctx.registry.reject(code);
        tracing::info!(%peer, code, detail = %refusal_detail(end, config.hello_timeout_ms), "replication connection closed: refused at a bound or for invalid input (RES-3, RES-4)");
    }
    ctx.registry.remove(id, end, ctx.wal.durable_watch().current().commit_id);
}

/// Limits of the replication port.
#[derive(Clone, Copy, Debug)]
pub struct PrimaryServerConfig {
    /// Session pacing.
    pub session: SessionConfig,
    /// Most concurrent connections; more are answered TOO_MANY_CONNECTIONS (RES-3).
    pub max_connections: usize,
}

impl Default for PrimaryServerConfig {
    fn default() -> Self {
        PrimaryServerConfig { session: SessionConfig::default(), max_connections: 64 }
    }
}

impl PrimaryServerConfig {
    /// The port's bounds as `(name, value)`, in a fixed order (for `/metrics`).
    pub fn limits(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("max_connections", self.max_connections as u64),
            ("hello_timeout_ms", self.session.hello_timeout_ms),
            ("max_frame_payload_bytes", MAX_REPLICA_PAYLOAD as u64),
        ]
    }
}

/// Everything the server needs from the primary.
#[derive(Clone)]
pub struct PrimaryContext {
    /// Cluster id.
    pub cluster_id: ClusterId,
    /// The WAL (handshakes and shipping).
    pub wal: PrimaryWal,
    /// Disk (snapshot files).
    pub disk: Arc<dyn Disk>,
    /// Snapshot source for bootstraps.
    pub snapshots: Arc<dyn SnapshotSource>,
    /// The primary's fence (REPL-11): a replica's proof of lost history
    /// trips it (None on a node that is never fenced).
    pub fence: Option<Arc<FenceLatch>>,
    /// The replicas the primary knows (connections, the persisted
    /// registry, commit times).
    pub registry: Arc<ReplicaRegistry>,
    /// Token authentication and TLS of the port (default: neither).
    pub security: PrimarySecurity,
}

/// Security of the replication port.
#[derive(Clone, Default)]
pub struct PrimarySecurity {
    /// `--repl-token-file`: every replica must prove it (and the primary
    /// proves it back) before its HELLO is decided.
    pub token: Option<ReplToken>,
    /// `--tls-cert/--tls-key`: the port speaks TLS only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running replication port. Stops when dropped.
pub struct PrimaryServer {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    registry: Arc<ReplicaRegistry>,
    thread: Option<JoinHandle<()>>,
}

impl PrimaryServer {
    /// Serves replicas on `listener` until stopped.
    pub fn serve(listener: TcpListener, ctx: PrimaryContext, config: PrimaryServerConfig) -> std::io::Result<PrimaryServer> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let registry = ctx.registry.clone();
        registry.set_limits(config.limits());
        // The primary's commit times, for lag in seconds (observability only).
        let (times, watching) = (registry.commit_times().clone(), stop.clone());
        ctx.wal.durable_watch().subscribe(move |p| {
            times.record(p.commit_id, wall_ms());
            !watching.load(Ordering::Relaxed)
        });
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("repl-accept".into()).spawn(move || accept_loop(&listener, &ctx, config, &flag))?;
        Ok(PrimaryServer { stop, addr, registry, thread: Some(thread) })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The replica registry.
    pub fn registry(&self) -> &Arc<ReplicaRegistry> {
        &self.registry
    }

    /// Stops accepting and ends every session (each within its next wake-up).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("replication accept thread panicked");
            }
        }
        self.registry.flush();
    }
}

impl Drop for PrimaryServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, ctx: &PrimaryContext, config: PrimaryServerConfig, stop: &Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "replication accept failed");
                continue;
            }
        };
        if ctx.registry.open.load(Ordering::SeqCst) >= config.max_connections {
            ctx.registry.reject("TOO_MANY_CONNECTIONS");
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.write_all(&Message::Error(ServeError::too_many_connections(config.max_connections)).to_frame());
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        ctx.registry.open.fetch_add(1, Ordering::SeqCst);
        let (conn_ctx, conn_stop) = (ctx.clone(), stop.clone());
        let spawned = std::thread::Builder::new().name("repl-conn".into()).spawn(move || {
            let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let id = conn_ctx.registry.add(peer.clone());
            // One clock from the accept: the HELLO deadline covers the TLS
            // handshake and the authentication phase as well (RES-3).
            let clock = Clock::new();
            // The TLS handshake runs here, after the cap and within the HELLO deadline.
            match open_connection(stream, &conn_ctx, config.session, &peer) {
                // Accounts for the connection's end itself, before it closes the socket.
                Some(conn) => serve_connection(conn, &clock, &conn_ctx, config.session, id, &conn_stop, &peer),
                None => account_end(&conn_ctx, id, None, config.session, &peer),
            }
            conn_ctx.registry.open.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            ctx.registry.open.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "cannot spawn a replication connection thread");
        }
    }
}

enum Inbound {
    Bytes(Vec<u8>),
    Durable(DurablePoint),
    Closed,
}

/// Longest wait of a connection thread (bounds how long a stop takes to be seen).
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How long one socket write may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection's halves: plain TCP, or TLS when the port is configured
/// for it (a plain peer on a TLS port is answered `TLS_REQUIRED` in the
/// replication protocol and counted; a failed handshake is counted).
fn open_connection(stream: TcpStream, ctx: &PrimaryContext, config: SessionConfig, peer: &str) -> Option<Connection> {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Some(tls_config) = &ctx.security.tls else {
        return plain_connection(stream).ok();
    };
    let deadline = Duration::from_millis(config.hello_timeout_ms);
    match tls::accept(stream, tls_config.clone(), deadline, WRITE_TIMEOUT) {
        Ok(Accepted::Tls(conn)) => Some(conn),
        Ok(Accepted::Plain(mut sock, first)) => {
            let detail = format!("this replication port requires TLS (the peer sent plain bytes starting {first:#04x}); start the replica with --tls-ca");
            tracing::warn!(%peer, code = "TLS_REQUIRED", "replication peer refused: {detail}");
            ctx.registry.security.refused(peer, "TLS_REQUIRED", &detail);
            let e = ServeError { code: ServeCode::TlsRequired, detail };
            let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = sock.write_all(&Message::Error(e).to_frame());
            let _ = sock.shutdown(Shutdown::Both);
            None
        }
        Err(e) => {
            tracing::warn!(%peer, code = "TLS_HANDSHAKE_FAILED", error = %e, "replication peer refused: TLS handshake failed");
            ctx.registry.security.refused(peer, "TLS_HANDSHAKE_FAILED", &e.to_string());
            if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
                // The handshake ran out of the HELLO deadline (RES-3).
                ctx.registry.reject("HELLO_TIMEOUT");
            }
            None
        }
    }
}

fn serve_connection(conn: Connection, clock: &Clock, ctx: &PrimaryContext, config: SessionConfig, id: u64, stop: &AtomicBool, peer: &str) {
    let Connection { mut reader, mut writer, closer } = conn;
    let (tx, rx) = mpsc::sync_channel::<Inbound>(16);
    let reader_tx = tx.clone();
    let spawned = std::thread::Builder::new().name("repl-conn-read".into()).spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = reader_tx.send(Inbound::Closed);
                    return;
                }
                Ok(n) => {
                    if reader_tx.send(Inbound::Bytes(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let Ok(reader_thread) = spawned else {
        // The halves drop (closing the socket) right after the accounting.
        account_end(ctx, id, None, config, peer);
        return;
    };
    let wake: SyncSender<Inbound> = tx;
    ctx.wal.durable_watch().subscribe(move |p| !matches!(wake.try_send(Inbound::Durable(p)), Err(mpsc::TrySendError::Disconnected(_))));
    // The HELLO deadline runs from the accept (time 0 of `clock`), not from the end of the TLS handshake.
    let mut session =
        PrimarySession::new(0, config, ctx.cluster_id.clone(), ctx.wal.durable_watch().current()).with_commit_times(ctx.registry.commit_times().clone());
    if let Some(token) = &ctx.security.token {
        match fresh_nonce() {
            Ok(nonce) => session = session.with_auth(token.clone(), nonce),
            Err(e) => {
                tracing::error!(%peer, error = %e, "no nonce for the authentication exchange; closing the connection");
                account_end(ctx, id, None, config, peer);
                closer();
                let _ = reader_thread.join();
                return;
            }
        }
    }
    let mut wal_reader = ctx.wal.reader();
    let mut served: Option<ServedSnapshot> = None;
    let mut end = None;
    while end.is_none() {
        // A durable wake-up dropped by a full channel is recovered here.
        session.handle_durable(clock.now(), ctx.wal.durable_watch().current());
        session.handle_wall_clock(wall_ms());
        while let Some(action) = session.poll_action() {
            let now = clock.now();
            match action {
                SessionAction::Send(frame) => {
                    if frame.write_to(&mut writer).and_then(|()| writer.flush()).is_err() {
                        session.handle_closed(now);
                    }
                }
                SessionAction::ReadWal { from, limit, max_bytes } => match PrimaryWal::read(&mut wal_reader, from, limit, max_bytes) {
                    Ok(chunk) => session.handle_wal_read(now, chunk),
                    // Retention removed it while this replica was being sent it (RES-2).
                    Err(LogError::NotHeld { .. }) => session.handle_wal_retired(now),
                    Err(e) => session.handle_wal_read_failed(now, e.to_string()),
                },
                SessionAction::PrepareSnapshot => match ctx.snapshots.snapshot_dir().and_then(|dir| open_served_snapshot(&*ctx.disk, &dir)) {
                    Ok(s) => {
                        let (manifest, sizes) = (s.manifest.clone(), s.sizes());
                        // Registered first (the hello was accepted), then the cut it will resume from.
                        ctx.registry.update(id, &session.view(), ctx.wal.durable_watch().current().commit_id);
                        ctx.registry.snapshot_served(id, WalPoint { lsn: s.boundary_lsn, commit_id: s.boundary_commit_id });
                        served = Some(s);
                        session.handle_snapshot_ready(now, manifest, sizes);
                    }
                    Err(detail) => session.handle_snapshot_failed(now, detail),
                },
                SessionAction::ReadSnapshot { file_index, offset, len } => match served.as_ref().map(|s| s.read(file_index, offset, len)) {
                    Some(Ok(bytes)) => session.handle_snapshot_piece(now, bytes),
                    Some(Err(detail)) => session.handle_snapshot_failed(now, detail),
                    None => session.handle_snapshot_failed(now, "no snapshot is open".into()),
                },
                SessionAction::Fence(fence) => {
                    if let Some(latch) = &ctx.fence {
                        latch.trip(*fence);
                    }
                }
                SessionAction::Close(e) => {
                    match &e {
                        SessionEnd::AuthRefused { code } => {
                            let detail = match session.view().hello {
                                Some(h) => format!("replica {} refused by token authentication", h.replica_id),
                                None => "replica refused by token authentication".to_string(),
                            };
                            ctx.registry.security.refused(peer, code.as_str(), &detail);
                        }
                        SessionEnd::AuthAbandoned => ctx.registry.security.refused(
                            peer,
                            "AUTH_FAILED",
                            "the peer closed after the token challenge: it could not verify this primary's proof (another --repl-token-file)",
                        ),
                        _ => {}
                    }
                    end = Some(e);
                }
            }
        }
        ctx.registry.update(id, &session.view(), ctx.wal.durable_watch().current().commit_id);
        if end.is_some() || stop.load(Ordering::SeqCst) {
            break;
        }
        let wait = clock.until(session.poll_timeout(), MAX_WAIT);
        let now = clock.now();
        match rx.recv_timeout(wait) {
            Ok(Inbound::Bytes(bytes)) => session.handle_bytes(now, &bytes, &ctx.wal),
            Ok(Inbound::Durable(point)) => session.handle_durable(now, point),
            Ok(Inbound::Closed) | Err(RecvTimeoutError::Disconnected) => session.handle_closed(now),
            Err(RecvTimeoutError::Timeout) => session.handle_timer(clock.now()),
        }
    }
    account_end(ctx, id, end.as_ref(), config, peer);
    closer();
    let _ = reader_thread.join();
}
