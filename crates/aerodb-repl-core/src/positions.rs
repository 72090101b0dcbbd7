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
