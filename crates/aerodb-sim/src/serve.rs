//! The primary's replication port in the simulation: one production
//! [`PrimarySession`] per accepted connection, its actions executed
//! against the primary's WAL and snapshots on its [`crate::disk::SimDisk`],
//! frames carried by [`crate::net::SimNet`]. This mirrors
//! `aerodb_repl_net::primary::serve_connection` action for action, minus
//! the threads: bytes in → `handle_bytes`; a durable point →
//! `handle_durable` and the (simulated) wall clock → `handle_wall_clock`
//! (PROGRESS commit times from the primary's [`CommitTimes`]); `ReadWal`
//! → [`PrimaryWal::read`], WAL retention removed meanwhile (`NOT_HELD`) →
//! `handle_wal_retired` (RES-2); `PrepareSnapshot` → the newest usable
//! snapshot or a new one (the scheduler's choice) and
//! [`open_served_snapshot`], a replica asking to resume that snapshot's
//! transfer gets the rest (F-S1); `ReadSnapshot` → [`ServedSnapshot::read`];
//! `Fence` → the production [`FenceLatch`]; timers → `handle_timer`. With
//! a replication token (drawn per seed) every session authenticates first
//! (`with_auth`, a nonce from the seeded PRNG). After each step the
//! session's view goes to the replica registry ([`SimRegistry`]) as
//! production's does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_repl_core::auth::{Nonce, ReplToken, NONCE_LEN};
use aerodb_repl_core::commit_times::CommitTimes;
use aerodb_repl_core::engine::primary::{PrimarySession, SessionAction, SessionConfig, SessionEnd};
use aerodb_repl_core::fence::{Fence, FenceLatch};
use aerodb_repl_core::ids::ClusterId;
use aerodb_repl_core::primary_io::{open_served_snapshot, PrimaryWal, ServedSnapshot};
use aerodb_repl_core::registry::WalPoint;
use aerodb_wal::disk::Disk;
use aerodb_wal::log::{LogError, WalReader};

use crate::net::{ConnId, NodeId};
use crate::registry::{SimRegistry, WALL_EPOCH_MS};
use crate::world::Io;

/// Timer tokens of sessions: this bit set, the connection id below it.
pub const SESSION_TIMER: u64 = 1 << 48;

/// What a session needs from the primary while it runs.
pub struct PortContext<'a> {
    /// The primary's WAL: handshake history and shipping.
    pub wal: &'a PrimaryWal,
    /// The primary's disk (snapshot files).
    pub disk: &'a dyn Disk,
    /// The snapshot to serve a bootstrapping replica (the scheduler's
    /// choice: the newest usable one, or a new one).
    pub snapshot_dir: &'a mut dyn FnMut() -> Result<PathBuf, String>,
    /// The primary's fence (REPL-11).
    pub fence: &'a FenceLatch,
    /// The replicas the primary knows (RES-2 holds, observability).
    pub registry: &'a mut SimRegistry,
    /// When commits became durable (PROGRESS v2 commit times).
    pub commit_times: &'a Arc<CommitTimes>,
    /// The replication token, when the port requires one.
    pub token: Option<&'a ReplToken>,
}

struct Served {
    session: PrimarySession,
    reader: WalReader,
    snapshot: Option<ServedSnapshot>,
    timer_at: Option<u64>,
    /// The connection's window is full: the production thread is blocked
    /// in a socket write, so the session handles nothing until the
    /// replica consumed enough (TCP backpressure, which also makes a
    /// lagging replica's WAL chunks large).
    stalled: bool,
}

/// The sessions of a running primary, by connection.
pub struct ReplicationPort {
    config: SessionConfig,
    cluster_id: ClusterId,
    sessions: BTreeMap<ConnId, Served>,
    /// Fences tripped since the caller last looked.
    fences: Vec<Fence>,
}

impl ReplicationPort {
    /// A port serving `cluster_id` with session pacing `config`.
    pub fn new(config: SessionConfig, cluster_id: ClusterId) -> Self {
        ReplicationPort { config, cluster_id, sessions: BTreeMap::new(), fences: Vec::new() }
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Fences tripped since the last call.
    pub fn take_fences(&mut self) -> Vec<Fence> {
        std::mem::take(&mut self.fences)
    }

    /// A replica (node `peer`) connected.
    pub fn accepted(&mut self, io: &mut Io<'_>, conn: ConnId, peer: NodeId, ctx: &mut PortContext<'_>) {
        let mut session = PrimarySession::new(io.now().ms(), self.config, self.cluster_id.clone(), ctx.wal.durable_watch().current())
            .with_commit_times(ctx.commit_times.clone());
        if let Some(token) = ctx.token {
            let mut nonce = [0u8; NONCE_LEN];
            io.rng().fill(&mut nonce);
            session = session.with_auth(token.clone(), Nonce(nonce));
        }
        ctx.registry.add(conn, format!("10.0.0.{peer}:{}", 40_000 + conn % 20_000));
        self.sessions.insert(conn, Served { session, reader: ctx.wal.reader(), snapshot: None, timer_at: None, stalled: false });
        self.drive(io, conn, ctx);
    }

    /// Bytes from a replica.
    pub fn bytes(&mut self, io: &mut Io<'_>, conn: ConnId, bytes: &[u8], ctx: &mut PortContext<'_>) {
        let now = io.now().ms();
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        io.consumed(conn, bytes.len() as u64);
        s.session.handle_bytes(now, bytes, ctx.wal);
        self.drive(io, conn, ctx);
    }

    /// The replica consumed enough: a stalled session goes on.
    pub fn writable(&mut self, io: &mut Io<'_>, conn: ConnId, ctx: &mut PortContext<'_>) {
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        s.stalled = false;
        self.drive(io, conn, ctx);
    }

    /// The replica closed the connection (or it was reset).
    pub fn closed(&mut self, io: &mut Io<'_>, conn: ConnId, ctx: &mut PortContext<'_>) {
        let now = io.now().ms();
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        s.session.handle_closed(now);
        self.drive(io, conn, ctx);
    }

    /// A session timer fired.
    pub fn timer(&mut self, io: &mut Io<'_>, conn: ConnId, ctx: &mut PortContext<'_>) {
        let now = io.now().ms();
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        if s.timer_at.is_some_and(|at| at <= now) {
            s.timer_at = None;
        }
        s.session.handle_timer(now);
        self.drive(io, conn, ctx);
    }

    /// The durable point advanced: every session may ship more.
    pub fn durable(&mut self, io: &mut Io<'_>, ctx: &mut PortContext<'_>) {
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            self.drive(io, conn, ctx);
        }
    }

    /// Executes the session's actions until it has none, as the
    /// production connection thread does, then re-arms its timer.
    fn drive(&mut self, io: &mut Io<'_>, conn: ConnId, ctx: &mut PortContext<'_>) {
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        if s.stalled {
            return;
        }
        let mut end: Option<SessionEnd> = None;
        s.session.handle_durable(io.now().ms(), ctx.wal.durable_watch().current());
        s.session.handle_wall_clock(WALL_EPOCH_MS + io.now().ms());
        while let Some(action) = s.session.poll_action() {
            let now = io.now().ms();
            match action {
                SessionAction::Send(frame) => {
                    io.send(conn, frame.to_vec());
                    if !io.window_open(conn) {
                        s.stalled = true;
                        io.wait_writable(conn);
                        break;
                    }
                }
                SessionAction::ReadWal { from, limit, max_bytes } => match PrimaryWal::read(&mut s.reader, from, limit, max_bytes) {
                    Ok(chunk) => s.session.handle_wal_read(now, chunk),
                    // Retention removed it while this replica was being sent it (RES-2).
                    Err(LogError::NotHeld { .. }) => s.session.handle_wal_retired(now),
                    Err(e) => s.session.handle_wal_read_failed(now, e.to_string()),
                },
                SessionAction::PrepareSnapshot => match (ctx.snapshot_dir)().and_then(|dir| open_served_snapshot(ctx.disk, &dir)) {
                    Ok(served) => {
                        let (manifest, sizes) = (served.manifest.clone(), served.sizes());
                        // Registered first (the hello was accepted), then the cut it will resume from.
                        let c_primary = ctx.wal.durable_watch().current().commit_id;
                        ctx.registry.update(conn, &s.session.view(), WALL_EPOCH_MS + now, c_primary);
                        ctx.registry.snapshot_served(conn, WalPoint { lsn: served.boundary_lsn, commit_id: served.boundary_commit_id });
                        s.snapshot = Some(served);
                        s.session.handle_snapshot_ready(now, manifest, sizes);
                    }
                    Err(detail) => s.session.handle_snapshot_failed(now, detail),
                },
                SessionAction::ReadSnapshot { file_index, offset, len } => match s.snapshot.as_ref().map(|x| x.read(file_index, offset, len)) {
                    Some(Ok(bytes)) => s.session.handle_snapshot_piece(now, bytes),
                    Some(Err(detail)) => s.session.handle_snapshot_failed(now, detail),
                    None => s.session.handle_snapshot_failed(now, "no snapshot is open".into()),
                },
                SessionAction::Fence(fence) => {
                    ctx.fence.trip((*fence).clone());
                    self.fences.push(*fence);
                }
                SessionAction::Close(e) => end = Some(e),
            }
        }
        let (wall_ms, c_primary) = (WALL_EPOCH_MS + io.now().ms(), ctx.wal.durable_watch().current().commit_id);
        ctx.registry.update(conn, &s.session.view(), wall_ms, c_primary);
        if let Some(e) = end {
            io.trace().entry("session_end").u64(conn).str(e.code());
            match e {
                SessionEnd::WalRetired => io.count("sessions_wal_retired"),
                SessionEnd::AuthRefused { .. } | SessionEnd::AuthAbandoned => io.count("sessions_auth_refused"),
                _ => {}
            }
            ctx.registry.remove(conn, Some(&e), wall_ms, c_primary);
            io.close(conn);
            self.sessions.remove(&conn);
            return;
        }
        if let Some(t) = s.session.poll_timeout() {
            if s.timer_at.is_none_or(|at| t < at) {
                s.timer_at = Some(t);
                io.arm_timer(t.saturating_sub(io.now().ms()), SESSION_TIMER | conn);
            }
        }
    }
}
