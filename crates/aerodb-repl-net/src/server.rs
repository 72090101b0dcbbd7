//! The primary's replication endpoint: answers handshakes with the pure
//! decision from repl-core, streams WAL bytes verbatim and only below the
//! durable LSN (F-P1), serves snapshots, and records what replicas report
//! (observability only: nothing here is a write acknowledgement).
//!
//! One thread per connection: a replica connection is long-lived and
//! mostly sequential file reads; threads keep backpressure (TCP) and
//! blocking reads simple, and the number of replicas is small.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;

use aerodb_repl_core::fence::FenceLatch;
use aerodb_repl_core::handshake::{decide, Accept, Decision, Hello, PrimaryHistory};
use aerodb_repl_core::pipeline::ReceivedChunk;
use aerodb_repl_core::status::{Positions, PrimaryProgress};
use aerodb_wal::disk::Disk;
use aerodb_wal::durable::DurableWatch;
use aerodb_wal::log::{SegmentList, WalReader};
use aerodb_wal::record::{peek_record_len, record_identity};
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn};

use crate::frame::{read_frame, write_frame, DEFAULT_MAX_PAYLOAD};
use crate::message::{Message, ServeError};

/// Most WAL bytes per frame.
const MAX_WAL_CHUNK: usize = 4 * 1024 * 1024;
/// Progress heartbeat while idle (keeps idle connections alive; never a verdict).
const IDLE_HEARTBEAT: Duration = Duration::from_millis(500);
/// How long a new connection may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Snapshot file piece size.
const SNAPSHOT_PIECE: usize = 1024 * 1024;

/// A snapshot ready to send: its manifest bytes and its files in manifest order.
pub struct SnapshotToServe {
    /// Raw `manifest.json` bytes.
    pub manifest: Vec<u8>,
    /// Data files, in the manifest's order.
    pub files: Vec<PathBuf>,
}

/// Provides the snapshot a bootstrapping replica receives (creating one if
/// none exists).
pub trait SnapshotProvider: Send + Sync {
    /// The snapshot to serve, or why none can be served.
    fn snapshot_for_bootstrap(&self) -> Result<SnapshotToServe, String>;
}

/// What one connected replica reported (observability only).
#[derive(Clone, Debug, Serialize)]
pub struct ConnectedReplica {
    /// Replica id from its hello.
    pub replica_id: String,
    /// Peer address.
    pub peer: String,
    /// `streaming` or `snapshot`.
    pub session: &'static str,
    /// Last reported positions (None before the first report).
    pub reported: Option<Positions>,
    /// LSN the primary has sent up to.
    pub sent_lsn: Lsn,
}

/// Registry of connected replicas, keyed by connection number.
#[derive(Default)]
pub struct ReplicaRegistry {
    inner: Mutex<BTreeMap<u64, ConnectedReplica>>,
    next: AtomicU64,
    shipped_bytes: AtomicU64,
}

impl ReplicaRegistry {
    /// Connected replicas, in connection order.
    pub fn list(&self) -> Vec<ConnectedReplica> {
        self.inner.lock().values().cloned().collect()
    }
    /// WAL bytes shipped since start.
    pub fn shipped_bytes(&self) -> u64 {
        self.shipped_bytes.load(Ordering::Relaxed)
    }
    fn add(&self, r: ConnectedReplica) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().insert(id, r);
        id
    }
    fn update(&self, id: u64, f: impl FnOnce(&mut ConnectedReplica)) {
        if let Some(r) = self.inner.lock().get_mut(&id) {
            f(r);
        }
    }
    fn remove(&self, id: u64) {
        self.inner.lock().remove(&id);
    }
}

/// Everything the server needs from the primary.
#[derive(Clone)]
pub struct PrimaryContext {
    /// Cluster id.
    pub cluster_id: String,
    /// Disk.
    pub disk: Arc<dyn Disk>,
    /// WAL segments.
    pub segments: SegmentList,
    /// Durable point.
    pub durable: Arc<DurableWatch>,
    /// Snapshot source.
    pub snapshots: Arc<dyn SnapshotProvider>,
    /// Connected replicas.
    pub replicas: Arc<ReplicaRegistry>,
    /// Stop flag.
    pub stop: Arc<AtomicBool>,
    /// The primary's fence (REPL-11): a handshake proving lost history trips it.
    pub fence: Option<Arc<FenceLatch>>,
}

/// The primary's history, read from its WAL for handshake decisions.
struct WalHistory<'a> {
    ctx: &'a PrimaryContext,
}

impl PrimaryHistory for WalHistory<'_> {
    fn cluster_id(&self) -> &str {
        &self.ctx.cluster_id
    }
    fn durable(&self) -> (Lsn, CommitId) {
        let p = self.ctx.durable.current();
        (p.lsn, p.commit_id)
    }
    fn oldest_retained(&self) -> ChainTip {
        self.ctx.segments.snapshot().first().map_or(ChainTip::GENESIS, |s| ChainTip::of_segment(&s.header))
    }
    fn record_end(&self, commit_id: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        find_record_end(self.ctx, commit_id)
    }
}

/// Finds (end LSN, fingerprint) of the durable record `commit_id` by
/// walking the one segment that must contain it.
fn find_record_end(ctx: &PrimaryContext, commit_id: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
    let durable = ctx.durable.current();
    if commit_id == 0 || commit_id > durable.commit_id {
        return Ok(None);
    }
    let segments = ctx.segments.snapshot();
    let Some(seg) = segments.iter().rev().find(|s| s.header.prev_commit_id < commit_id) else { return Ok(None) };
    let mut reader = WalReader::new(ctx.disk.clone(), ctx.segments.clone());
    let mut lsn = seg.header.start_lsn;
    let limit = durable.lsn.min(seg.end_lsn);
    while lsn < limit {
        let chunk = reader.read_chunk(lsn, limit, 4 * 1024 * 1024).map_err(|e| e.to_string())?;
        if chunk.bytes.is_empty() {
            break;
        }
        let mut at = 0usize;
        while at < chunk.bytes.len() {
            let len = peek_record_len(&chunk.bytes[at..]).map_err(|e| e.to_string())?;
            let (id, fp) = record_identity(&chunk.bytes[at..at + len]);
            if id == commit_id {
                return Ok(Some((lsn + (at + len) as u64, fp)));
            }
            at += len;
        }
        lsn += chunk.bytes.len() as u64;
    }
    Ok(None)
}

/// Binds the replication listener.
pub fn bind(addr: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Accepts connections until the stop flag is set (one thread each).
pub fn serve(listener: TcpListener, ctx: PrimaryContext) {
    for conn in listener.incoming() {
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        match conn {
            Ok(stream) => {
                let ctx = ctx.clone();
                let spawned = std::thread::Builder::new().name("repl-conn".into()).spawn(move || {
                    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                    if let Err(e) = serve_connection(stream, &ctx) {
                        tracing::info!(%peer, error = %e, "replication connection closed");
                    }
                });
                if let Err(e) = spawned {
                    tracing::error!(error = %e, "cannot spawn a replication connection thread");
                }
            }
            Err(e) => tracing::warn!(error = %e, "replication accept failed"),
        }
    }
}

fn send(w: &mut impl Write, m: &Message) -> std::io::Result<()> {
    let (kind, payload) = m.encode();
    write_frame(w, kind, &payload)
}

fn serve_connection(stream: TcpStream, ctx: &PrimaryContext) -> Result<(), String> {
    let peer: Option<SocketAddr> = stream.peer_addr().ok();
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let mut writer = BufWriter::with_capacity(MAX_WAL_CHUNK + 4096, stream.try_clone().map_err(|e| e.to_string())?);
    let frame = read_frame(&mut reader, DEFAULT_MAX_PAYLOAD).map_err(|e| e.to_string())?;
    let hello: Hello = match Message::decode(&frame) {
        Ok(Message::Hello(h)) => h,
        Ok(other) => return Err(format!("expected hello, got {other:?}")),
        Err(e) => return Err(e.to_string()),
    };
    let history = WalHistory { ctx };
    let decision = decide(&history, &hello);
    tracing::info!(replica_id = %hello.replica_id, request = ?hello.request, decision = ?decision, "replication handshake");
    if let Some(fence) = &ctx.fence {
        // REPL-11: a replica that proves lost or rewritten history fences this primary.
        fence.observe(&ctx.cluster_id, &hello, None, &decision, history.durable());
    }
    let durable = ctx.durable.current();
    let accept = |start_lsn| Accept { cluster_id: ctx.cluster_id.clone(), primary_commit_id: durable.commit_id, durable_lsn: durable.lsn, start_lsn };
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    match decision {
        Decision::Refuse(r) => {
            send(&mut writer, &Message::Refuse(r)).map_err(|e| e.to_string())?;
            writer.flush().map_err(|e| e.to_string())
        }
        Decision::Undecided(detail) => {
            tracing::error!(%detail, "cannot read own WAL to answer a handshake");
            send(&mut writer, &Message::Error(ServeError { code: "PRIMARY_WAL_UNREADABLE".into(), detail })).map_err(|e| e.to_string())?;
            writer.flush().map_err(|e| e.to_string())
        }
        Decision::ServeSnapshot => {
            let id = ctx.replicas.add(ConnectedReplica { replica_id: hello.replica_id.clone(), peer, session: "snapshot", reported: None, sent_lsn: 0 });
            let result = serve_snapshot(&mut writer, ctx, accept(None));
            ctx.replicas.remove(id);
            result
        }
        Decision::StreamFrom(lsn) => {
            let id = ctx.replicas.add(ConnectedReplica { replica_id: hello.replica_id.clone(), peer, session: "streaming", reported: None, sent_lsn: lsn });
            let result = stream_wal(reader, &mut writer, ctx, id, lsn, accept(Some(lsn)));
            ctx.replicas.remove(id);
            result
        }
    }
}

fn serve_snapshot(w: &mut impl Write, ctx: &PrimaryContext, accept: Accept) -> Result<(), String> {
    let snap = match ctx.snapshots.snapshot_for_bootstrap() {
        Ok(s) => s,
        Err(detail) => {
            send(w, &Message::Error(ServeError { code: "SNAPSHOT_UNAVAILABLE".into(), detail: detail.clone() })).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            return Err(detail);
        }
    };
    // Open every file before sending anything so retention cannot remove them mid-transfer.
    let mut files = Vec::with_capacity(snap.files.len());
    for path in &snap.files {
        files.push(ctx.disk.open(path).map_err(|e| format!("open {}: {e}", path.display()))?);
    }
    send(w, &Message::Accept(accept)).map_err(|e| e.to_string())?;
    send(w, &Message::SnapshotBegin(bytes::Bytes::from(snap.manifest))).map_err(|e| e.to_string())?;
    for (index, file) in files.iter().enumerate() {
        let len = file.len().map_err(|e| e.to_string())?;
        let mut offset = 0u64;
        while offset < len {
            let n = ((len - offset) as usize).min(SNAPSHOT_PIECE);
            let mut buf = vec![0u8; n];
            file.read_exact_at(&mut buf, offset).map_err(|e| e.to_string())?;
            send(w, &Message::SnapshotChunk { file_index: index as u32, offset, bytes: bytes::Bytes::from(buf) }).map_err(|e| e.to_string())?;
            offset += n as u64;
        }
    }
    send(w, &Message::SnapshotEnd).map_err(|e| e.to_string())?;
    w.flush().map_err(|e| e.to_string())
}

fn stream_wal(mut reader: TcpStream, w: &mut impl Write, ctx: &PrimaryContext, id: u64, start: Lsn, accept: Accept) -> Result<(), String> {
    send(w, &Message::Accept(accept)).map_err(|e| e.to_string())?;
    w.flush().map_err(|e| e.to_string())?;
    // Reports arrive on their own thread; the connection closing ends it and this loop.
    let closed = Arc::new(AtomicBool::new(false));
    {
        let closed = closed.clone();
        let registry = ctx.replicas.clone();
        reader.set_read_timeout(None).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name("repl-reports".into())
            .spawn(move || {
                while let Ok(frame) = read_frame(&mut reader, 1024) {
                    match Message::decode(&frame) {
                        Ok(Message::Report(p)) => registry.update(id, |r| r.reported = Some(p)),
                        _ => break,
                    }
                }
                closed.store(true, Ordering::Relaxed);
            })
            .map_err(|e| e.to_string())?;
    }
    let mut wal = WalReader::new(ctx.disk.clone(), ctx.segments.clone());
    let mut next = start;
    loop {
        if closed.load(Ordering::Relaxed) || ctx.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let point = ctx.durable.current();
        let progress = PrimaryProgress { commit_id: point.commit_id, durable_lsn: point.lsn };
        if next < point.lsn {
            let chunk = match wal.read_chunk(next, point.lsn, MAX_WAL_CHUNK) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(lsn = next, error = %e, "cannot read own WAL for shipping");
                    let _ = send(w, &Message::Error(ServeError { code: e.code().into(), detail: e.to_string() }));
                    let _ = w.flush();
                    return Err(e.to_string());
                }
            };
            if chunk.bytes.is_empty() {
                ctx.durable.wait_beyond(next, IDLE_HEARTBEAT);
                continue;
            }
            let len = chunk.bytes.len() as u64;
            // Progress first: the replica then never holds a commit beyond what the primary last reported.
            send(w, &Message::Progress(progress)).map_err(|e| e.to_string())?;
            send(w, &Message::Wal(ReceivedChunk { start_lsn: chunk.start_lsn, segment_start: chunk.segment_start, bytes: chunk.bytes }))
                .map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            next += len;
            ctx.replicas.shipped_bytes.fetch_add(len, Ordering::Relaxed);
            ctx.replicas.update(id, |r| r.sent_lsn = next);
        } else {
            send(w, &Message::Progress(progress)).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            if ctx.durable.is_closed() {
                return Ok(());
            }
            ctx.durable.wait_beyond(next, IDLE_HEARTBEAT);
        }
    }
}
