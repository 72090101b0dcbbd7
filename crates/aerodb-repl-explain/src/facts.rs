//! What the DX server captures about a node at one moment, as plain data.
//! The server (which does the IO) fills these once per request; every view,
//! explanation and metric in this crate is a pure function of them.

use aerodb_mvcc::{AppliedState, GcStats};
use aerodb_repl_core::status::{Positions, ReplicaObserved};
use aerodb_snapshot::{PrimaryRecoveryReport, SchedulerStatus, SnapshotInfo, SnapshotPolicy};
use aerodb_wal::durable::DurablePoint;
use aerodb_wal::log::SegmentInfo;
use aerodb_wal::{CommitId, Lsn};

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
    /// Last reported positions (None before the first report).
    pub reported: Option<Positions>,
    /// LSN the primary has sent up to.
    pub sent_lsn: Lsn,
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
    /// WAL bytes shipped to replicas since start (None when replication is disabled).
    pub wal_shipped_bytes: Option<u64>,
    /// WAL fsyncs since start (None if unknown to the caller).
    pub wal_fsyncs: Option<u64>,
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
}
