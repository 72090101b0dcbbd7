//! The positions a replica and a primary tell each other about (REPORT and
//! PROGRESS frames) and publish for observability.

use serde::{Deserialize, Serialize};

use aerodb_wal::{CommitId, Lsn};

/// A replica's pipeline positions: always `applied <= validated <= received`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// Durable end of received WAL bytes.
    pub received_lsn: Lsn,
    /// End of the validated prefix.
    pub validated_lsn: Lsn,
    /// End of the applied prefix.
    pub applied_lsn: Lsn,
    /// C_replica.
    pub applied_commit_id: CommitId,
}

/// What the primary last told a replica about its own history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryProgress {
    /// C_primary.
    pub commit_id: CommitId,
    /// Primary durable LSN.
    pub durable_lsn: Lsn,
}

/// The primary's wall-clock facts a PROGRESS frame carries (protocol
/// version 2), for lag in seconds. Observability only: no decision may
/// depend on them (REPL-10). Times are Unix milliseconds on the primary's
/// clock; `0` means unknown (for example a commit made before the primary
/// process started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressTimes {
    /// The primary's clock when it sent the frame.
    pub primary_time_ms: u64,
    /// When the frame's `commit_id` became durable on the primary.
    pub commit_time_ms: u64,
    /// CommitId of the first record of the WAL frame that follows (0 for a
    /// heartbeat).
    pub next_commit_id: CommitId,
    /// When `next_commit_id` became durable on the primary.
    pub next_commit_time_ms: u64,
}

/// Largest time a peer may state (2^53 ms: exact as a JSON number, about
/// 285,000 years after 1970).
pub const MAX_TIME_MS: u64 = 1 << 53;
