//! The primary's view of its replicas at run time: the connections open on
//! the replication port and the persisted registry of every replica the
//! primary has served ([`aerodb_repl_core::registry`]), kept across
//! disconnects and restarts in `replicas.json`, plus the primary's commit
//! times (lag in seconds). This module does the IO (the file, the wall
//! clock, the logs); what is recorded, when a replica is forgotten and the
//! retention forecast are pure functions in `aerodb-repl-core`.
//!
//! Observability only, except for RES-2: with `--wal-retention
//! after-oldest-snapshot` the registry's holds keep WAL a known replica
//! still needs, within `--wal-keep-bytes` ([`WalHolds`]). Nothing here is
//! read by a handshake decision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use aerodb_repl_core::commit_times::CommitTimes;
use aerodb_repl_core::engine::primary::{SessionEnd, SessionView};
use aerodb_repl_core::handshake::HelloRequest;
use aerodb_repl_core::ids::ReplicaId;
use aerodb_repl_core::positions::Positions;
use aerodb_repl_core::registry::{read_registry, write_registry, KnownReplica, Registry, WalPoint, REGISTRY_FILE};
use aerodb_snapshot::retention::WalHolds;
use aerodb_wal::disk::Disk;
use aerodb_wal::{CommitId, Lsn};

use crate::clock::wall_ms;
use crate::primary::REJECT_CODES;
use crate::security::SecurityStats;

/// Reports are written to `replicas.json` at most this often (connects,
/// disconnects and forgets are written at once). A position on disk is at
/// most this old, so after a crash retention holds slightly more WAL,
/// never less than a replica had reported.
pub const REGISTRY_WRITE_INTERVAL: Duration = Duration::from_secs(1);

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
    /// The handshake was accepted on this connection.
    #[serde(skip)]
    accepted: bool,
}

/// A replica the primary knows, with its live connection if it has one.
#[derive(Clone, Debug)]
pub struct KnownReplicaStatus {
    /// The persisted entry.
    pub known: KnownReplica,
    /// Its connection, while one is open and past its handshake.
    pub connection: Option<ConnectedReplica>,
}

/// What startup did with `replicas.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RegistryStartup {
    /// The file (None when the registry is not persisted).
    pub file: Option<String>,
    /// Replicas read back from it.
    pub loaded: usize,
    /// Why it could not be used (a stable code and the detail): the node
    /// started with an empty registry.
    pub load_error: Option<(String, String)>,
    /// Where the unusable file was moved (kept for inspection).
    pub moved_aside: Option<String>,
    /// Replicas removed by `--forget-replica` at this startup (`id (name)`).
    pub forgotten: Vec<String>,
    /// `--forget-replica` values that matched no replica.
    pub forget_unmatched: Vec<String>,
}

struct Store {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

struct Known {
    registry: Registry,
    /// Changes not yet written.
    generation: u64,
    last_write: Option<Instant>,
}

/// The primary's replicas: connections open now and every replica served.
pub struct ReplicaRegistry {
    inner: Mutex<BTreeMap<u64, ConnectedReplica>>,
    known: Mutex<Known>,
    /// Serialises file writes; holds the generation last written.
    written: Mutex<u64>,
    store: Option<Store>,
    startup: RegistryStartup,
    commit_times: Arc<CommitTimes>,
    next: AtomicU64,
    shipped_bytes: AtomicU64,
    pub(crate) open: AtomicUsize,
    /// Refusals of the port's bounds since start, one per [`REJECT_CODES`] entry.
    rejects: [AtomicU64; REJECT_CODES.len()],
    /// The bounds of the port being served (empty before it serves).
    limits: Mutex<Vec<(&'static str, u64)>>,
    /// Peers refused by token authentication or TLS since start.
    pub(crate) security: SecurityStats,
}

impl Default for ReplicaRegistry {
    /// An in-memory registry (not persisted), commit times unknown before
    /// CommitId 0.
    fn default() -> Self {
        ReplicaRegistry::with(Registry::default(), None, RegistryStartup::default(), 0)
    }
}

impl ReplicaRegistry {
    fn with(registry: Registry, store: Option<Store>, startup: RegistryStartup, known_after: CommitId) -> Self {
        ReplicaRegistry {
            inner: Mutex::new(BTreeMap::new()),
            known: Mutex::new(Known { registry, generation: 0, last_write: None }),
            written: Mutex::new(0),
            store,
            startup,
            commit_times: Arc::new(CommitTimes::new(known_after)),
            next: AtomicU64::new(0),
            shipped_bytes: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            rejects: Default::default(),
            limits: Mutex::new(Vec::new()),
            security: SecurityStats::default(),
        }
    }

    /// Opens the registry persisted in `dir` (the primary's data
    /// directory). An unusable file is moved aside to
    /// `replicas.json.damaged` and the node starts with an empty registry
    /// (it is observability; the loss is logged and shown). `forget` are
    /// the operator's `--forget-replica` ids or names, removed now.
    /// `known_after` is the durable CommitId at startup (commits at or
    /// before it have no known commit time).
    pub fn open(disk: Arc<dyn Disk>, dir: PathBuf, known_after: CommitId, forget: &[String]) -> Self {
        let path = dir.join(REGISTRY_FILE);
        let mut startup = RegistryStartup { file: Some(path.display().to_string()), ..RegistryStartup::default() };
        let mut registry = match read_registry(&*disk, &dir) {
            Ok(found) => found.unwrap_or_default(),
            Err(e) => {
                let aside = dir.join(format!("{REGISTRY_FILE}.damaged"));
                tracing::error!(code = e.code(), error = %e, moved_to = %aside.display(), "the replica registry cannot be read: starting with an empty one (observability only; WAL held for known replicas is released)");
                match disk.rename(&path, &aside).and_then(|()| disk.sync_dir(&dir)) {
                    Ok(()) => startup.moved_aside = Some(aside.display().to_string()),
                    Err(io) => tracing::error!(error = %io, "cannot move the damaged replica registry aside"),
                }
                startup.load_error = Some((e.code().to_string(), e.to_string()));
                Registry::default()
            }
        };
        startup.loaded = registry.len();
        for key in forget {
            let gone = registry.forget(key);
            if gone.is_empty() {
                tracing::warn!(replica = %key, "--forget-replica: no known replica has this id or name");
                startup.forget_unmatched.push(key.clone());
            }
            for r in gone {
                tracing::info!(replica_id = %r.replica_id, name = r.display_name(), address = %r.address, "--forget-replica: replica forgotten (its WAL is no longer held)");
                startup.forgotten.push(format!("{} ({})", r.replica_id, r.display_name()));
            }
        }
        for r in registry.list() {
            tracing::info!(replica_id = %r.replica_id, name = r.display_name(), address = %r.address, last_seen_commit_id = r.last_seen_commit_id, "known replica (disconnected)");
        }
        let this = ReplicaRegistry::with(registry, Some(Store { disk, dir }), startup, known_after);
        if !this.startup.forgotten.is_empty() || this.startup.load_error.is_some() {
            this.changed(true);
        }
        this
    }

    /// What startup did with the registry file.
    pub fn startup(&self) -> &RegistryStartup {
        &self.startup
    }

    /// The primary's commit times (lag in seconds).
    pub fn commit_times(&self) -> &Arc<CommitTimes> {
        &self.commit_times
    }

    /// Replicas past their handshake, in connection order.
    pub fn list(&self) -> Vec<ConnectedReplica> {
        self.inner.lock().values().filter(|r| r.accepted).cloned().collect()
    }

    /// Every replica the primary knows, ordered by (name, id), each with
    /// its connection while one is open.
    pub fn known(&self) -> Vec<KnownReplicaStatus> {
        let connections = self.list();
        let list = self.known.lock().registry.list();
        list.into_iter()
            .map(|known| {
                let connection = connections.iter().rev().find(|c| c.replica_id == known.replica_id.as_str()).cloned();
                KnownReplicaStatus { known, connection }
            })
            .collect()
    }

    /// `(forgotten, evicted)` over the registry file's life.
    pub fn forgotten_and_evicted(&self) -> (u64, u64) {
        let k = self.known.lock();
        (k.registry.forgotten(), k.registry.evicted())
    }

    /// WAL bytes shipped since start.
    pub fn shipped_bytes(&self) -> u64 {
        self.shipped_bytes.load(Ordering::Relaxed)
    }
    /// Connections open on the replication port now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    /// Peers refused by token authentication or TLS since start.
    pub fn security(&self) -> &SecurityStats {
        &self.security
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
    pub(crate) fn set_limits(&self, limits: Vec<(&'static str, u64)>) {
        *self.limits.lock() = limits;
    }
    /// Counts a refusal under `code` (one of [`REJECT_CODES`]).
    pub(crate) fn reject(&self, code: &str) {
        if let Some(n) = REJECT_CODES.iter().position(|c| *c == code).and_then(|i| self.rejects.get(i)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add(&self, peer: String) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = ConnectedReplica {
            replica_id: String::new(),
            name: None,
            peer,
            session: "handshake",
            reported: None,
            sent_lsn: 0,
            shipped_bytes: 0,
            accepted: false,
        };
        self.inner.lock().insert(id, entry);
        id
    }

    fn connected_ids(&self) -> BTreeSet<ReplicaId> {
        self.inner.lock().values().filter(|r| r.accepted).filter_map(|r| ReplicaId::parse(&r.replica_id).ok()).collect()
    }

    /// One step of a session: records the handshake, reports and progress.
    pub(crate) fn update(&self, id: u64, view: &SessionView, c_primary: CommitId) {
        let (accepted_now, report) = {
            let mut inner = self.inner.lock();
            let Some(r) = inner.get_mut(&id) else { return };
            if let Some(h) = &view.hello {
                r.replica_id = h.replica_id.to_string();
                r.name = h.name.as_ref().map(ToString::to_string);
            }
            self.shipped_bytes.fetch_add(view.shipped_bytes.saturating_sub(r.shipped_bytes), Ordering::Relaxed);
            r.shipped_bytes = view.shipped_bytes;
            // A session that closed shows its last open state (what the disconnect log reports).
            if !(r.accepted && view.session == "handshake") {
                r.session = view.session;
                r.sent_lsn = view.sent_lsn;
            }
            let report = (view.reported != r.reported).then_some(view.reported).flatten();
            r.reported = view.reported;
            let accepted_now = !r.accepted && view.session != "handshake";
            r.accepted |= accepted_now;
            (accepted_now.then(|| r.clone()), report)
        };
        let Some(hello) = &view.hello else { return };
        if let Some(conn) = accepted_now {
            let mut connected = self.connected_ids();
            connected.remove(&hello.replica_id);
            let outcome = self.known.lock().registry.accept(hello, &conn.peer, wall_ms(), c_primary, &connected);
            let (resume_lsn, resume_commit_id) = match hello.request {
                HelloRequest::Resume { end_lsn, commit_id, .. } => (Some(end_lsn), Some(commit_id)),
                HelloRequest::Snapshot | HelloRequest::SnapshotResume(_) => (None, None),
            };
            let name = hello.name.as_ref().map_or(hello.replica_id.as_str(), |n| n.as_str());
            tracing::info!(replica_id = %hello.replica_id, name, address = %conn.peer, session = view.session, resume_lsn, resume_commit_id, "replica connected");
            if let Some(old) = outcome.replaced {
                tracing::info!(replica_id = %old.replica_id, name = old.display_name(), new_replica_id = %hello.replica_id, "known replica replaced by a replica with the same name (re-bootstrapped)");
            }
            if let Some(old) = outcome.evicted {
                tracing::warn!(replica_id = %old.replica_id, name = old.display_name(), address = %old.address, "replica registry full: forgot the least recently seen disconnected replica");
            }
            if outcome.not_remembered {
                tracing::warn!(replica_id = %hello.replica_id, name, "replica registry full of connected replicas: this replica is served but not remembered");
            }
            self.changed(true);
        }
        if let Some(p) = report {
            self.known.lock().registry.report(&hello.replica_id, p, wall_ms(), c_primary);
            self.changed(false);
        }
    }

    /// A snapshot with this cut is being sent on connection `id`.
    pub(crate) fn snapshot_served(&self, id: u64, cut: WalPoint) {
        let replica = self.inner.lock().get(&id).and_then(|r| ReplicaId::parse(&r.replica_id).ok());
        if let Some(replica) = replica {
            self.known.lock().registry.snapshot_served(&replica, cut);
            self.changed(true);
        }
    }

    /// Connection `id` ended.
    pub(crate) fn remove(&self, id: u64, end: Option<&SessionEnd>, c_primary: CommitId) {
        let Some(conn) = self.inner.lock().remove(&id) else { return };
        let code = end.map_or("PRIMARY_STOPPING", SessionEnd::code);
        let Ok(replica) = ReplicaId::parse(&conn.replica_id) else {
            tracing::debug!(address = %conn.peer, reason = code, "replication connection closed before a handshake");
            return;
        };
        let name = conn.name.as_deref().unwrap_or(replica.as_str());
        let known = {
            let mut k = self.known.lock();
            let known = k.registry.get(&replica).is_some();
            k.registry.ended(&replica, code, wall_ms(), c_primary);
            known
        };
        if conn.accepted {
            tracing::info!(replica_id = %replica, name, address = %conn.peer, reason = code, sent_lsn = conn.sent_lsn, "replica disconnected");
        } else {
            tracing::info!(replica_id = %replica, name, address = %conn.peer, reason = code, "replication connection closed at its handshake");
        }
        if known {
            self.changed(true);
        }
    }

    /// Records a change; writes the file now (`urgent`) or when the last
    /// write is older than [`REGISTRY_WRITE_INTERVAL`].
    fn changed(&self, urgent: bool) {
        let Some(store) = &self.store else { return };
        let (generation, snapshot) = {
            let mut k = self.known.lock();
            k.generation += 1;
            let due = urgent || k.last_write.is_none_or(|t| t.elapsed() >= REGISTRY_WRITE_INTERVAL);
            if !due {
                return;
            }
            k.last_write = Some(Instant::now());
            (k.generation, k.registry.clone())
        };
        let mut written = self.written.lock();
        if *written >= generation {
            return;
        }
        match write_registry(&*store.disk, &store.dir, &snapshot) {
            Ok(()) => *written = generation,
            Err(e) => {
                tracing::warn!(error = %e, file = %store.dir.join(REGISTRY_FILE).display(), "cannot write the replica registry (observability only; retried at the next change)")
            }
        }
    }

    /// Writes what is not yet on disk (at shutdown).
    pub fn flush(&self) {
        let pending = {
            let k = self.known.lock();
            k.generation > *self.written.lock()
        };
        if pending {
            self.changed(true);
        }
    }
}

/// RES-2: retention keeps what known replicas still need (within the cap).
impl WalHolds for ReplicaRegistry {
    fn oldest_needed(&self) -> Option<Lsn> {
        self.known.lock().registry.oldest_needed()
    }
}
