//! The primary's replication port: an accept loop with a connection cap,
//! and one thread per connection that drives a sans-IO
//! [`PrimarySession`]: bytes from a reader thread, durable-point wake-ups
//! and timers arrive on one channel; WAL and snapshot reads and socket
//! writes are executed here. Blocking writes give natural TCP backpressure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use aerodb_repl_core::engine::primary::{PrimarySession, SessionAction, SessionConfig, SessionEnd, SessionView};
use aerodb_repl_core::fence::FenceLatch;
use aerodb_repl_core::ids::ClusterId;
use aerodb_repl_core::positions::Positions;
use aerodb_repl_core::primary_io::{open_served_snapshot, PrimaryWal, ServedSnapshot, SnapshotSource};
use aerodb_repl_core::wire::{FrameError, Message, ServeError, MAX_REPLICA_PAYLOAD};
use aerodb_wal::disk::Disk;
use aerodb_wal::durable::DurablePoint;
use aerodb_wal::Lsn;

use crate::clock::Clock;

/// What one connected replica reported (observability only: never a write
/// acknowledgement).
#[derive(Clone, Debug, Serialize)]
pub struct ConnectedReplica {
    /// Replica id from its hello (empty before the hello).
    pub replica_id: String,
    /// Its name, if it sent one.
    pub name: Option<String>,
    /// Peer address.
    pub peer: String,
    /// `handshake`, `streaming` or `snapshot`.
    pub session: &'static str,
    /// Last reported positions (None before the first report).
    pub reported: Option<Positions>,
    /// LSN the primary has sent up to.
    pub sent_lsn: Lsn,
    /// WAL bytes shipped on this connection.
    #[serde(skip)]
    shipped_bytes: u64,
}

/// Codes the replication port counts its refusals under (RES-3, RES-4), in
/// the order `/metrics` lists them: over the connection cap, no HELLO in
/// time, a frame too large, a malformed frame or field (or a REPORT beyond
/// what was sent).
pub const REJECT_CODES: [&str; 4] = ["TOO_MANY_CONNECTIONS", "HELLO_TIMEOUT", "FRAME_TOO_LARGE", "PROTOCOL_ERROR"];

/// The [`REJECT_CODES`] index a session end counts under, if it was a refusal.
fn reject_index(end: &SessionEnd) -> Option<usize> {
    match end {
        SessionEnd::HelloTimeout => Some(1),
        SessionEnd::Frame { error: FrameError::TooLarge { .. } } => Some(2),
        SessionEnd::Frame { .. } | SessionEnd::Protocol { .. } => Some(3),
        _ => None,
    }
}

/// Registry of connected replicas, keyed by connection number.
#[derive(Default)]
pub struct ReplicaRegistry {
    inner: Mutex<BTreeMap<u64, ConnectedReplica>>,
    next: AtomicU64,
    shipped_bytes: AtomicU64,
    open: AtomicUsize,
    rejects: [AtomicU64; 4],
    limits: Mutex<Vec<(&'static str, u64)>>,
}

impl ReplicaRegistry {
    /// Replicas past their handshake, in connection order.
    pub fn list(&self) -> Vec<ConnectedReplica> {
        self.inner.lock().values().filter(|r| r.session != "handshake").cloned().collect()
    }
    /// WAL bytes shipped since start.
    pub fn shipped_bytes(&self) -> u64 {
        self.shipped_bytes.load(Ordering::Relaxed)
    }
    /// Connections open on the replication port now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    /// Connections refused because the port was at its cap.
    pub fn refused_over_cap(&self) -> u64 {
        self.rejects[0].load(Ordering::Relaxed)
    }
    /// Connections refused or closed for a bound or invalid input since
    /// start, by code (every one of [`REJECT_CODES`], zeros included).
    pub fn rejects(&self) -> Vec<(&'static str, u64)> {
        REJECT_CODES.iter().zip(&self.rejects).map(|(code, n)| (*code, n.load(Ordering::Relaxed))).collect()
    }
    /// The bounds of the port being served (empty before it serves).
    pub fn limits(&self) -> Vec<(&'static str, u64)> {
        self.limits.lock().clone()
    }
    fn reject(&self, index: usize) {
        if let Some(n) = self.rejects.get(index) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn add(&self, peer: String) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = ConnectedReplica { replica_id: String::new(), name: None, peer, session: "handshake", reported: None, sent_lsn: 0, shipped_bytes: 0 };
        self.inner.lock().insert(id, entry);
        id
    }
    fn update(&self, id: u64, view: &SessionView) {
        if let Some(r) = self.inner.lock().get_mut(&id) {
            if let Some(h) = &view.hello {
                r.replica_id = h.replica_id.to_string();
                r.name = h.name.as_ref().map(ToString::to_string);
            }
            self.shipped_bytes.fetch_add(view.shipped_bytes.saturating_sub(r.shipped_bytes), Ordering::Relaxed);
            r.shipped_bytes = view.shipped_bytes;
            r.session = view.session;
            r.reported = view.reported;
            r.sent_lsn = view.sent_lsn;
        }
    }
    fn remove(&self, id: u64) {
        self.inner.lock().remove(&id);
    }
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
    /// Connected replicas.
    pub registry: Arc<ReplicaRegistry>,
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
        *registry.limits.lock() = config.limits();
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
            ctx.registry.reject(0);
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
            let end = serve_connection(stream, &conn_ctx, config.session, id, &conn_stop);
            conn_ctx.registry.remove(id);
            if let Some(index) = end.as_ref().and_then(reject_index) {
                conn_ctx.registry.reject(index);
            }
            conn_ctx.registry.open.fetch_sub(1, Ordering::SeqCst);
            tracing::info!(%peer, end = ?end, "replication connection closed");
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

fn serve_connection(stream: TcpStream, ctx: &PrimaryContext, config: SessionConfig, id: u64, stop: &AtomicBool) -> Option<SessionEnd> {
    let clock = Clock::new();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let (tx, rx) = mpsc::sync_channel::<Inbound>(16);
    let mut reader = stream.try_clone().ok()?;
    let reader_tx = tx.clone();
    let reader_thread = std::thread::Builder::new()
        .name("repl-conn-read".into())
        .spawn(move || {
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
        })
        .ok()?;
    let wake: SyncSender<Inbound> = tx;
    ctx.wal.durable_watch().subscribe(move |p| !matches!(wake.try_send(Inbound::Durable(p)), Err(mpsc::TrySendError::Disconnected(_))));
    let mut session = PrimarySession::new(clock.now(), config, ctx.cluster_id.clone(), ctx.wal.durable_watch().current());
    let mut wal_reader = ctx.wal.reader();
    let mut served: Option<ServedSnapshot> = None;
    let mut writer = stream.try_clone().ok()?;
    let mut end = None;
    while end.is_none() {
        // A durable wake-up dropped by a full channel is recovered here.
        session.handle_durable(clock.now(), ctx.wal.durable_watch().current());
        while let Some(action) = session.poll_action() {
            let now = clock.now();
            match action {
                SessionAction::Send(frame) => {
                    if writer.write_all(&frame).and_then(|()| writer.flush()).is_err() {
                        session.handle_closed(now);
                    }
                }
                SessionAction::ReadWal { from, limit, max_bytes } => match PrimaryWal::read(&mut wal_reader, from, limit, max_bytes) {
                    Ok(chunk) => session.handle_wal_read(now, chunk),
                    Err(e) => session.handle_wal_read_failed(now, e.to_string()),
                },
                SessionAction::PrepareSnapshot => match ctx.snapshots.snapshot_dir().and_then(|dir| open_served_snapshot(&*ctx.disk, &dir)) {
                    Ok(s) => {
                        let (manifest, sizes) = (s.manifest.clone(), s.sizes());
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
                SessionAction::Close(e) => end = Some(e),
            }
        }
        ctx.registry.update(id, &session.view());
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
    let _ = stream.shutdown(Shutdown::Both);
    let _ = reader_thread.join();
    end
}
