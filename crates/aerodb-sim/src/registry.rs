//! The primary's replica registry in the simulation: the production
//! [`Registry`] (who was served, what each last said, what WAL each still
//! needs) driven from the sessions' views exactly as
//! `aerodb_repl_net::registry::ReplicaRegistry` drives it (accept when a
//! session leaves its handshake, each new REPORT, the cut of a snapshot
//! being served, how a connection ended), with the simulated wall clock,
//! persisted in `replicas.json` through [`write_registry`] on the
//! [`crate::disk::SimDisk`] (changes of membership at once, reports at most
//! once a simulated second, as the production registry) and read back at
//! start through [`read_registry`] (an unusable file: start empty, as
//! production does). Its holds ([`WalHolds`]) feed the retention pass
//! (RES-2, `--wal-keep-bytes`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use aerodb_repl_core::engine::primary::{SessionEnd, SessionView};
use aerodb_repl_core::ids::ReplicaId;
use aerodb_repl_core::positions::Positions;
use aerodb_repl_core::registry::{read_registry, write_registry, Registry, WalPoint};
use aerodb_snapshot::WalHolds;
use aerodb_wal::disk::Disk;
use aerodb_wal::{CommitId, Lsn};

use crate::net::ConnId;

/// Reports are written at most this often (simulated ms), as production's
/// `REGISTRY_WRITE_INTERVAL`.
const WRITE_INTERVAL_MS: u64 = 1_000;

/// The simulated wall clock: Unix ms at simulated time 0 (commit times
/// and the registry's "last seen" are observability only, REPL-10).
pub const WALL_EPOCH_MS: u64 = 1_750_000_000_000;

struct Conn {
    peer: String,
    replica: Option<ReplicaId>,
    accepted: bool,
    reported: Option<Positions>,
}

/// The registry of a running primary.
pub struct SimRegistry {
    known: Registry,
    conns: BTreeMap<ConnId, Conn>,
    urgent: bool,
    reported: bool,
    last_write_ms: Option<u64>,
}

impl SimRegistry {
    /// Reads `replicas.json` in `dir`; an unusable file gives an empty
    /// registry and its error code.
    pub fn open(disk: &dyn Disk, dir: &Path) -> (Self, Option<&'static str>) {
        let (known, error) = match read_registry(disk, dir) {
            Ok(found) => (found.unwrap_or_default(), None),
            Err(e) => (Registry::default(), Some(e.code())),
        };
        (SimRegistry { known, conns: BTreeMap::new(), urgent: error.is_some(), reported: false, last_write_ms: None }, error)
    }

    /// Replicas known.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Whether no replica is known.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// A connection from `peer` was accepted on the port.
    pub fn add(&mut self, conn: ConnId, peer: String) {
        self.conns.insert(conn, Conn { peer, replica: None, accepted: false, reported: None });
    }

    /// One step of a session (production `ReplicaRegistry::update`).
    pub fn update(&mut self, conn: ConnId, view: &SessionView, wall_ms: u64, c_primary: CommitId) {
        let connected: BTreeSet<ReplicaId> = self.conns.iter().filter(|(c, x)| **c != conn && x.accepted).filter_map(|(_, x)| x.replica.clone()).collect();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let Some(hello) = &view.hello else { return };
        c.replica = Some(hello.replica_id.clone());
        let report = (view.reported != c.reported).then_some(view.reported).flatten();
        c.reported = view.reported;
        if !c.accepted && view.session != "handshake" {
            c.accepted = true;
            let mut others = connected;
            others.remove(&hello.replica_id);
            let _ = self.known.accept(hello, &c.peer, wall_ms, c_primary, &others);
            self.urgent = true;
        }
        if let Some(p) = report {
            self.known.report(&hello.replica_id, p, wall_ms, c_primary);
            self.reported = true;
        }
    }

    /// A snapshot with this cut is being sent on `conn`.
    pub fn snapshot_served(&mut self, conn: ConnId, cut: WalPoint) {
        if let Some(replica) = self.conns.get(&conn).and_then(|c| c.replica.clone()) {
            self.known.snapshot_served(&replica, cut);
            self.urgent = true;
        }
    }

    /// Connection `conn` ended (None: the primary stopped).
    pub fn remove(&mut self, conn: ConnId, end: Option<&SessionEnd>, wall_ms: u64, c_primary: CommitId) {
        let Some(c) = self.conns.remove(&conn) else { return };
        let Some(replica) = c.replica else { return };
        if self.known.get(&replica).is_some() {
            self.known.ended(&replica, end.map_or("PRIMARY_STOPPING", SessionEnd::code), wall_ms, c_primary);
            self.urgent = true;
        }
    }

    /// Writes the file if a change is due (best effort: observability
    /// only; a failed write is retried at the next change).
    pub fn flush(&mut self, disk: &dyn Disk, dir: &Path, now_ms: u64) {
        let due = self.urgent || (self.reported && self.last_write_ms.is_none_or(|t| now_ms.saturating_sub(t) >= WRITE_INTERVAL_MS));
        if !due {
            return;
        }
        if write_registry(disk, dir, &self.known).is_ok() {
            self.urgent = false;
            self.reported = false;
            self.last_write_ms = Some(now_ms);
        }
    }
}

/// RES-2: retention keeps what known replicas still need (within the cap).
impl WalHolds for SimRegistry {
    fn oldest_needed(&self) -> Option<Lsn> {
        self.known.oldest_needed()
    }
}
