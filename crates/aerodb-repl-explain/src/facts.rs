//! What the DX server captures about a node at one moment, as plain data.
//! The server (which does the IO) fills these once per request; every view,
//! explanation and metric in this crate is a pure function of them.

use aerodb_mvcc::{AppliedState, GcStats};
use aerodb_repl_core::fence::Fence;
use aerodb_repl_core::registry::KnownReplica;
use aerodb_repl_core::status::{Positions, ReplicaObserved};
use aerodb_snapshot::scrub::ScrubStatus;
use aerodb_snapshot::{PrimaryRecoveryReport, SchedulerStatus, SnapshotInfo, SnapshotPolicy};
use aerodb_wal::durable::DurablePoint;
use aerodb_wal::history::StartupDurability;
use aerodb_wal::log::SegmentInfo;
use aerodb_wal::mark_writer::{MarkPolicy, MarkStatus};
use aerodb_wal::{CommitId, Lsn};
use serde::Serialize;

/// A primary's fence (REPL-11): the one in force, the one the operator
/// lifted at startup, and how many handshakes proved lost history.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FenceFacts {
    /// The fence in force (every write is refused), if any.
    pub current: Option<Fence>,
    /// The fence `--lift-fence` removed at this startup, if any.
    pub lifted_at_startup: Option<Fence>,
    /// Handshakes that proved lost history since this process started.
    pub proofs: u64,
}

/// The durable high-water mark (CORE-5) of a primary or standalone node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurabilityFacts {
    /// What startup found and did (mark read and written, accepted losses).
    pub startup: StartupDurability,
    /// When marks are written.
    pub policy: MarkPolicy,
    /// The mark now (positions and counters).
    pub live: MarkStatus,
}

/// One replica connected to a primary, as the primary last heard from it
/// (observability only: never a write acknowledgement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerReplica {
    /// Replica id from its hello.
    pub replica_id: String,
    /// Peer address.
    pub peer: String,
    /// `streaming` or `snapshot`.
    pub session: String,
    /// Its name, if it gave one.
    pub name: Option<String>,
    /// Last reported positions (None before the first report).
    pub reported: Option<Positions>,
    /// LSN the primary has sent up to.
    pub sent_lsn: Lsn,
}

/// One replica the primary knows (its persisted registry entry), with its
/// live connection while one is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownReplicaFacts {
    /// The registry entry (id, name, address, last-known positions, last seen).
    pub known: KnownReplica,
    /// Its connection while one is open and past its handshake.
    pub connection: Option<PeerReplica>,
    /// When the first commit it has not applied became durable on the
    /// primary (Unix ms; None when unknown or when it has applied all).
    pub oldest_unapplied_commit_time_ms: Option<u64>,
}

/// The primary's registry of the replicas it has served (RES-2, issue 14).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RegistryFacts {
    /// Every known replica, ordered by (name, id).
    pub replicas: Vec<KnownReplicaFacts>,
    /// The registry file (None when not persisted).
    pub file: Option<String>,
    /// Replicas read back from it at startup.
    pub loaded_at_startup: usize,
    /// Why the file could not be used at startup (code, detail), if so.
    pub load_error: Option<(String, String)>,
    /// Where an unusable file was moved.
    pub moved_aside: Option<String>,
    /// Replicas removed by `--forget-replica` at this startup.
    pub forgotten_at_startup: Vec<String>,
    /// Entries removed by `--forget-replica` over the file's life.
    pub forgotten_total: u64,
    /// Entries forgotten to stay within the cap over the file's life.
    pub evicted_total: u64,
}

/// A primary's (or standalone node's) observable state.
#[derive(Clone, Debug)]
pub struct PrimaryFacts {
    /// `primary` or `standalone`.
    pub role: &'static str,
    /// Cluster id.
    pub cluster_id: String,
    /// What the store has applied (C_primary and its record).
    pub applied: AppliedState,
    /// The durable (fsynced) point.
    pub durable: DurablePoint,
    /// Oldest answerable read view.
    pub history_horizon: CommitId,
    /// Versions retained at the history horizon.
    pub version_count: u64,
    /// Garbage-collection counters (None if unknown to the caller).
    pub gc: Option<GcStats>,
    /// `--history-retain-commits` in force (None if unknown to the caller).
    pub history_retain_commits: Option<u64>,
    /// Read views open now: `(R, how many)`, ascending.
    pub active_read_views: Vec<(CommitId, u64)>,
    /// WAL segments held, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// What recovery did at startup (None if unknown to the caller).
    pub recovery: Option<PrimaryRecoveryReport>,
    /// Snapshots held, newest first, or why they could not be listed.
    pub snapshots: Result<Vec<SnapshotInfo>, String>,
    /// Snapshot policy in force, when a scheduler runs.
    pub snapshot_policy: Option<SnapshotPolicy>,
    /// Scheduler counters, when a scheduler runs.
    pub snapshot_status: Option<SchedulerStatus>,
    /// Connected replicas (None when replication is disabled).
    pub replicas: Option<Vec<PeerReplica>>,
    /// Every replica the primary has served (None when replication is
    /// disabled or the caller does not know).
    pub registry: Option<RegistryFacts>,
    /// The primary's wall clock when the facts were captured (Unix ms), for
    /// lag in seconds and "last seen" (None if unknown). Observability only.
    pub now_ms: Option<u64>,
    /// WAL bytes shipped to replicas since start (None when replication is disabled).
    pub wal_shipped_bytes: Option<u64>,
    /// WAL fsyncs since start (None if unknown to the caller).
    pub wal_fsyncs: Option<u64>,
    /// The HTTP surfaces' bounds and usage (None if unknown to the caller).
    pub http: Option<HttpFacts>,
    /// The replication port's bounds and usage (None when replication is
    /// disabled or unknown to the caller).
    pub repl_port: Option<ReplPortFacts>,
    /// The durable high-water mark (None if unknown to the caller).
    pub durability: Option<DurabilityFacts>,
    /// The fence (None on a standalone node, which has no replicas).
    pub fence: Option<FenceFacts>,
    /// Background re-verification (None when the node runs no scrub).
    pub scrub: Option<ScrubStatus>,
    /// Token authentication and TLS of the replication port (None when
    /// replication is disabled or unknown to the caller).
    pub repl_security: Option<ReplSecurityFacts>,
}

/// Security of a primary's replication port and the peers it refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReplSecurityFacts {
    /// `--repl-token-file` is set: replicas must authenticate.
    pub token_required: bool,
    /// `--tls-cert/--tls-key` are set: the port speaks TLS only.
    pub tls: bool,
    /// Peers refused since start, by code (`AUTH_REQUIRED`, `AUTH_FAILED`,
    /// `AUTH_NOT_CONFIGURED`, `TLS_REQUIRED`, `TLS_HANDSHAKE_FAILED`), ordered by code.
    pub refused: Vec<(String, u64)>,
    /// The most recent refusal: peer address, code and detail.
    pub last_refused: Option<RefusedPeerFacts>,
}

/// One refused peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RefusedPeerFacts {
    /// Peer address.
    pub peer: String,
    /// Stable code.
    pub code: String,
    /// What happened.
    pub detail: String,
}

/// One WAL segment file held by a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalFile {
    /// File name.
    pub name: String,
    /// LSN of its first record byte (from the file name).
    pub start_lsn: Lsn,
    /// File size in bytes (header included).
    pub bytes: u64,
}

/// How many client requests a node refused, by code and rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalCount {
    /// Stable error code (`READ_REFUSED`, `REPLICATION_HALTED`, `WRITE_REJECTED`).
    pub code: String,
    /// Rule cited by the refusal.
    pub rule_id: String,
    /// Count since start.
    pub count: u64,
}

/// A replica's observable state.
#[derive(Clone, Debug)]
pub struct ReplicaFacts {
    /// The replica's published status.
    pub observed: ReplicaObserved,
    /// What its store has applied (None before bootstrap or recovery).
    pub applied: Option<AppliedState>,
    /// History horizon of its store (None without a store).
    pub history_horizon: Option<CommitId>,
    /// Versions retained at the history horizon (None without a store).
    pub version_count: Option<u64>,
    /// Garbage-collection counters (None without a store).
    pub gc: Option<GcStats>,
    /// Read views open now: `(R, how many)`, ascending.
    pub active_read_views: Vec<(CommitId, u64)>,
    /// Its WAL segment files, oldest first, or why they could not be listed.
    pub wal_files: Result<Vec<WalFile>, String>,
    /// Size of the installed bootstrap snapshot's files (None when there is none or it cannot be read).
    pub bootstrap_snapshot_bytes: Option<u64>,
    /// Client requests refused since start.
    pub refusals: Vec<RefusalCount>,
    /// Background re-verification (None when the node runs no scrub).
    pub scrub: Option<ScrubStatus>,
    /// The HTTP surfaces' bounds and usage (None if unknown to the caller).
    pub http: Option<HttpFacts>,
}

/// The bounds of a node's HTTP surfaces and how much of them is in use
/// (RES-3), as the server counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFacts {
    /// One entry per surface (`client`, `dx`).
    pub surfaces: Vec<HttpSurfaceFacts>,
    /// Reads waiting for `min_commit` now.
    pub waiting_reads: u64,
    /// Request body bytes held now, node-wide.
    pub body_bytes_in_flight: u64,
    /// Node-wide bounds as `(name, value)`: `max_waiting_reads`,
    /// `body_budget_bytes`, `shutdown_timeout_ms`.
    pub limits: Vec<(&'static str, u64)>,
}

/// The replication port's bounds and usage (RES-3, RES-4), as the
/// primary's accept loop and sessions counted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplPortFacts {
    /// Connections open now.
    pub open_connections: u64,
    /// Its bounds as `(name, value)`: `max_connections`, `hello_timeout_ms`,
    /// `max_frame_payload_bytes` (what a primary accepts from a replica).
    pub limits: Vec<(&'static str, u64)>,
    /// Connections refused or closed since start because a bound was
    /// reached or a replica sent something invalid, by code (every code
    /// listed, zeros included).
    pub rejects: Vec<(&'static str, u64)>,
}

/// One HTTP surface's bounds and usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSurfaceFacts {
    /// `client` or `dx`.
    pub surface: &'static str,
    /// Connections open now.
    pub open_connections: u64,
    /// Its bounds as `(name, value)` (`max_connections`, `header_timeout_ms`, ...).
    pub limits: Vec<(&'static str, u64)>,
    /// Requests or connections refused at a bound since start, by code
    /// (every code listed, zeros included).
    pub rejects: Vec<(&'static str, u64)>,
}

/// The process's own resource usage, read by the server (from `/proc` on
/// Linux) when it renders `/metrics`. Every field is `None` where the
/// platform does not say.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessFacts {
    /// Resident memory, bytes.
    pub resident_memory_bytes: Option<u64>,
    /// Virtual memory, bytes.
    pub virtual_memory_bytes: Option<u64>,
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// OS threads.
    pub threads: Option<u64>,
}
