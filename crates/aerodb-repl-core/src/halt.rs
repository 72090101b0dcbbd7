//! Why a replica stopped (a halt: persisted, never cleared automatically,
//! REPL-5) or cannot make progress right now (a blocking reason: retried).
//! Both are typed enums carrying their evidence; the stable code, the rule
//! ID, the failure-matrix row and the JSON evidence are derived from the
//! variant, never stored as free text.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use aerodb_mvcc::{AppliedState, ApplyError};
use aerodb_wal::{ChainViolation, CommitId, Lsn};

use crate::auth::AuthFailure;
use crate::handshake::{HelloRequest, Refuse};
use crate::ids::ClusterId;
use crate::metadata::BootstrapBoundary;
use crate::wire::{FrameError, MessageError, ServeError};

/// What every halt and blocking reason exposes to explanations and the DX API.
pub trait Reason {
    /// Stable code (docs/operations.md lists every one).
    fn code(&self) -> &'static str;
    /// Rule enforced.
    fn rule_id(&self) -> &'static str;
    /// Failure-matrix row this is an instance of, if any.
    fn failure_row(&self) -> Option<&'static str>;
    /// LSN involved, when known.
    fn lsn(&self) -> Option<Lsn>;
    /// CommitId involved, when known.
    fn commit_id(&self) -> Option<CommitId>;
    /// One human-readable line.
    fn detail(&self) -> String;
    /// Structured evidence (both sides' values where there are two sides).
    fn evidence(&self) -> Value;
    /// The serialisable summary the DX API shows.
    fn view(&self) -> ReasonView {
        ReasonView {
            code: self.code().to_string(),
            rule_id: self.rule_id().to_string(),
            detail: self.detail(),
            lsn: self.lsn(),
            commit_id: self.commit_id(),
            failure: self.failure_row().map(str::to_string),
            evidence: self.evidence(),
        }
    }
}

/// A halt or blocking reason as the DX API and explanations render it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReasonView {
    /// Stable code.
    pub code: String,
    /// Rule enforced.
    pub rule_id: String,
    /// Human-readable detail.
    pub detail: String,
    /// LSN where it happened, when known.
    pub lsn: Option<Lsn>,
    /// CommitId involved, when known.
    pub commit_id: Option<CommitId>,
    /// Failure-matrix row.
    pub failure: Option<String>,
    /// Structured evidence.
    pub evidence: Value,
}

/// What went wrong with a snapshot (bootstrap transfer or installed copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotFault {
    /// Could not be read or written.
    Io,
    /// A listed file is missing.
    MissingFile,
    /// An unlisted file is present.
    ExtraFile,
    /// The manifest is invalid.
    Manifest,
    /// An unsupported format.
    Format,
    /// Another cluster's snapshot.
    Cluster,
    /// A file has another size than the manifest says.
    Size,
    /// A crc32c mismatch.
    Checksum,
    /// Not a valid MVCC cut.
    Corrupt,
    /// The loaded state's digest differs from the manifest's.
    Digest,
    /// A version that cannot be encoded.
    Unencodable,
    /// Creation was cancelled.
    Cancelled,
}

impl SnapshotFault {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            SnapshotFault::Io => "SNAPSHOT_IO",
            SnapshotFault::MissingFile => "SNAPSHOT_MISSING_FILE",
            SnapshotFault::ExtraFile => "SNAPSHOT_EXTRA_FILE",
            SnapshotFault::Manifest => "SNAPSHOT_MANIFEST",
            SnapshotFault::Format => "SNAPSHOT_FORMAT",
            SnapshotFault::Cluster => "SNAPSHOT_CLUSTER",
            SnapshotFault::Size => "SNAPSHOT_SIZE",
            SnapshotFault::Checksum => "SNAPSHOT_CHECKSUM",
            SnapshotFault::Corrupt => "SNAPSHOT_CORRUPT",
            SnapshotFault::Digest => "SNAPSHOT_DIGEST",
            SnapshotFault::Unencodable => "SNAPSHOT_UNENCODABLE",
            SnapshotFault::Cancelled => "SNAPSHOT_CANCELLED",
        }
    }
    /// `F-S4` for a snapshot found invalid, `REPL-8` for failing to read or produce one.
    pub fn rule_id(self) -> &'static str {
        match self {
            SnapshotFault::Io | SnapshotFault::Unencodable | SnapshotFault::Cancelled => "REPL-8",
            _ => "F-S4",
        }
    }
}

/// Why a snapshot could not be used: its fault and the detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{detail} ({}, {})", fault.code(), fault.rule_id())]
pub struct SnapshotRejected {
    /// What kind of failure.
    pub fault: SnapshotFault,
    /// Detail naming the file and what is wrong.
    pub detail: String,
}

impl From<&aerodb_snapshot::SnapshotError> for SnapshotRejected {
    fn from(e: &aerodb_snapshot::SnapshotError) -> Self {
        use aerodb_snapshot::SnapshotError as E;
        let fault = match e {
            E::Io { .. } => SnapshotFault::Io,
            E::MissingFile { .. } => SnapshotFault::MissingFile,
            E::ExtraFile { .. } => SnapshotFault::ExtraFile,
            E::Manifest { .. } => SnapshotFault::Manifest,
            E::Format { .. } => SnapshotFault::Format,
            E::Cluster { .. } => SnapshotFault::Cluster,
            E::SizeMismatch { .. } => SnapshotFault::Size,
            E::Checksum { .. } => SnapshotFault::Checksum,
            E::Corrupt { .. } => SnapshotFault::Corrupt,
            E::Digest { .. } => SnapshotFault::Digest,
            E::Unencodable { .. } => SnapshotFault::Unencodable,
            E::Cancelled => SnapshotFault::Cancelled,
        };
        SnapshotRejected { fault, detail: e.to_string() }
    }
}

/// Why replica recovery could not replay its own WAL (F-RC1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum LocalWalFailure {
    /// The WAL could not be read.
    Io {
        /// What failed.
        detail: String,
    },
    /// A segment header is damaged.
    BadSegmentHeader {
        /// Segment file.
        segment: String,
        /// What is wrong.
        detail: String,
    },
    /// Segments do not follow each other.
    SegmentLayout {
        /// Segment file.
        segment: String,
        /// What is wrong.
        detail: String,
    },
    /// A record is invalid and not a torn tail.
    Corruption {
        /// Segment file.
        segment: String,
        /// The broken rule and its evidence.
        violation: ChainViolation,
    },
    /// No segment at all.
    Empty {
        /// The WAL directory.
        dir: String,
    },
    /// The WAL does not continue the bootstrap snapshot's cut (F-S3).
    SnapshotWalMismatch {
        /// LSN where it was found, when known.
        lsn: Option<Lsn>,
        /// What differs.
        detail: String,
    },
    /// The WAL ends or is damaged before its durable high-water mark (only
    /// on nodes that keep one; CORE-5).
    BeforeMark {
        /// The mark check's stable code.
        code: String,
        /// Where the damage starts.
        lsn: Lsn,
        /// What the check found.
        detail: String,
    },
    /// Replaying a record through the apply function failed.
    Replay {
        /// Record start.
        lsn: Lsn,
        /// The stable code of the refusal (an apply error code).
        code: String,
        /// What failed.
        detail: String,
    },
}

impl LocalWalFailure {
    fn code(&self) -> &'static str {
        match self {
            LocalWalFailure::Io { .. } => "WAL_IO",
            LocalWalFailure::BadSegmentHeader { .. } => "WAL_BAD_SEGMENT_HEADER",
            LocalWalFailure::SegmentLayout { .. } => "WAL_SEGMENT_LAYOUT",
            LocalWalFailure::Corruption { .. } => "WAL_CORRUPT",
            LocalWalFailure::Empty { .. } => "WAL_EMPTY",
            LocalWalFailure::SnapshotWalMismatch { .. } => "SNAPSHOT_WAL_MISMATCH",
            LocalWalFailure::BeforeMark { .. } => "WAL_BEFORE_MARK",
            LocalWalFailure::Replay { code, .. } if code == "APPLY_DIVERGED" => "APPLY_DIVERGED",
            LocalWalFailure::Replay { code, .. } if code == "GC_BAD_HORIZON" => "GC_BAD_HORIZON",
            LocalWalFailure::Replay { .. } => "APPLY_OUT_OF_ORDER",
        }
    }
    fn rule_id(&self) -> &'static str {
        match self {
            LocalWalFailure::Corruption { violation, .. } => violation.rule_id(),
            LocalWalFailure::SegmentLayout { .. } => "REPL-7",
            LocalWalFailure::SnapshotWalMismatch { .. } => "F-S3",
            LocalWalFailure::BeforeMark { .. } => "CORE-5",
            LocalWalFailure::Replay { code, .. } if code == "APPLY_DIVERGED" => "REPL-4",
            LocalWalFailure::Replay { code, .. } if code == "GC_BAD_HORIZON" => "MVCC-4",
            LocalWalFailure::Replay { .. } => "REPL-2",
            _ => "CORE-3",
        }
    }
    fn lsn(&self) -> Option<Lsn> {
        match self {
            LocalWalFailure::Corruption { violation, .. } => Some(violation.lsn()),
            LocalWalFailure::SnapshotWalMismatch { lsn, .. } => *lsn,
            LocalWalFailure::Replay { lsn, .. } | LocalWalFailure::BeforeMark { lsn, .. } => Some(*lsn),
            _ => None,
        }
    }
}

impl fmt::Display for LocalWalFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocalWalFailure::Io { detail } => write!(f, "cannot read the local WAL: {detail}"),
            LocalWalFailure::BadSegmentHeader { segment, detail } => write!(f, "segment {segment}: {detail}"),
            LocalWalFailure::SegmentLayout { segment, detail } => write!(f, "segment {segment}: {detail}"),
            LocalWalFailure::Corruption { segment, violation } => write!(f, "WAL corruption in {segment}: {violation}"),
            LocalWalFailure::Empty { dir } => write!(f, "no WAL segments in {dir}"),
            LocalWalFailure::SnapshotWalMismatch { detail, .. } => write!(f, "WAL does not continue the bootstrap snapshot: {detail}"),
            LocalWalFailure::BeforeMark { detail, .. } => write!(f, "{detail}"),
            LocalWalFailure::Replay { lsn, detail, .. } => write!(f, "replay stopped at LSN {lsn}: {detail}"),
        }
    }
}

impl From<&aerodb_mvcc::StoreRecoveryError> for LocalWalFailure {
    fn from(e: &aerodb_mvcc::StoreRecoveryError) -> Self {
        use aerodb_mvcc::StoreRecoveryError as S;
        use aerodb_wal::recovery::WalRecoveryError as W;
        match e {
            S::BaseMismatch { detail } => LocalWalFailure::SnapshotWalMismatch { lsn: None, detail: detail.clone() },
            S::Wal(w) => match w {
                W::Log(l) => LocalWalFailure::Io { detail: l.to_string() },
                W::BadSegmentHeader { segment, error } => LocalWalFailure::BadSegmentHeader { segment: segment.clone(), detail: error.to_string() },
                W::SegmentLayout { segment, detail } => LocalWalFailure::SegmentLayout { segment: segment.clone(), detail: detail.clone() },
                W::Corruption { segment, violation } => LocalWalFailure::Corruption { segment: segment.clone(), violation: violation.clone() },
                W::Empty(dir) => LocalWalFailure::Empty { dir: dir.clone() },
                W::Mark(v) => LocalWalFailure::BeforeMark { code: v.code().to_string(), lsn: v.lsn(), detail: v.to_string() },
                W::Replay { lsn, detail, code: "SNAPSHOT_WAL_MISMATCH", .. } => {
                    LocalWalFailure::SnapshotWalMismatch { lsn: Some(*lsn), detail: detail.clone() }
                }
                W::Replay { lsn, detail, code, .. } => LocalWalFailure::Replay { lsn: *lsn, code: (*code).to_string(), detail: detail.clone() },
            },
        }
    }
}

/// Which check a replica metadata file failed (F-RC2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MetaCheck {
    /// The file could not be read.
    MetaUnreadable,
    /// Not the expected JSON.
    MetaMalformed,
    /// crc32c mismatch.
    MetaChecksumMismatch,
    /// Unsupported format version.
    MetaVersion,
    /// A partial bootstrap could not be discarded.
    DiscardFailed,
}

impl MetaCheck {
    /// Stable code.
    pub fn code(self) -> &'static str {
        match self {
            MetaCheck::MetaUnreadable => "META_UNREADABLE",
            MetaCheck::MetaMalformed => "META_MALFORMED",
            MetaCheck::MetaChecksumMismatch => "META_CHECKSUM_MISMATCH",
            MetaCheck::MetaVersion => "META_VERSION",
            MetaCheck::DiscardFailed => "DISCARD_FAILED",
        }
    }
}

/// Where a local storage operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageOp {
    /// Appending or syncing received WAL.
    PersistWal,
    /// Truncating received bytes that were never validated.
    TruncateUnvalidated,
    /// Writing the bootstrap state (genesis WAL, installed snapshot, metadata).
    Bootstrap,
}

/// Why a replica halted. Persisted in `replica/halt.json`; only
/// `--rebootstrap` clears it (REPL-5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Halt {
    /// Received WAL broke the chain rules (F-V1, F-V2, F-D1).
    Chain {
        /// The violation and its evidence.
        violation: ChainViolation,
    },
    /// Applying a validated record failed: digest mismatch (F-D3) or out of order.
    Apply {
        /// Record start.
        lsn: Lsn,
        /// What failed.
        error: ApplyError,
    },
    /// The primary refused the handshake with a halting code (F-C1, F-D1, F-D2).
    Refused {
        /// The primary's refusal and evidence.
        refuse: Refuse,
        /// What the replica asked for (its side of the evidence).
        request: HelloRequest,
        /// The replica's recorded cluster id.
        replica_cluster_id: Option<ClusterId>,
    },
    /// ACCEPT named another cluster than the one recorded (F-C1).
    ClusterMismatchAtAccept {
        /// Recorded at bootstrap.
        replica_cluster_id: ClusterId,
        /// What the primary sent.
        primary_cluster_id: ClusterId,
    },
    /// The peer does not speak the replication protocol, and this replica
    /// already holds state (F-C1).
    PeerNotAerodb {
        /// The `--primary` address.
        primary: String,
        /// The magic that arrived instead.
        found_magic: u16,
    },
    /// The installed bootstrap snapshot failed validation (F-S4).
    InstalledSnapshotInvalid {
        /// Why.
        rejected: SnapshotRejected,
    },
    /// The installed snapshot's cut differs from the recorded boundary (F-S3).
    InstalledSnapshotMismatch {
        /// The snapshot's cut.
        snapshot_cut: AppliedState,
        /// The boundary in `replica.json`.
        recorded_boundary: BootstrapBoundary,
    },
    /// Replaying the local WAL at startup failed (F-RC1).
    LocalWal {
        /// What failed.
        failure: LocalWalFailure,
    },
    /// Replica metadata cannot be trusted (F-RC2).
    Metadata {
        /// File.
        file: String,
        /// Which check failed.
        check: MetaCheck,
        /// Detail.
        detail: String,
    },
    /// A local write or fsync failed (REPL-9).
    Storage {
        /// What was being done.
        op: StorageOp,
        /// The error.
        detail: String,
    },
}

impl Halt {
    /// A halt for received WAL that broke the chain.
    pub fn from_violation(v: &ChainViolation) -> Self {
        Halt::Chain { violation: v.clone() }
    }
    /// A halt for a failed apply of the record at `lsn`.
    pub fn from_apply(e: &ApplyError, lsn: Lsn) -> Self {
        Halt::Apply { lsn, error: e.clone() }
    }
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Reason for Halt {
    fn code(&self) -> &'static str {
        match self {
            Halt::Chain { violation } => violation.code(),
            Halt::Apply { error, .. } => error.code(),
            Halt::Refused { refuse, .. } => refuse.code().as_str(),
            Halt::ClusterMismatchAtAccept { .. } => "CLUSTER_MISMATCH",
            Halt::PeerNotAerodb { .. } => "PEER_NOT_AERODB",
            Halt::InstalledSnapshotInvalid { rejected } => rejected.fault.code(),
            Halt::InstalledSnapshotMismatch { .. } => "SNAPSHOT_METADATA_MISMATCH",
            Halt::LocalWal { failure } => failure.code(),
            Halt::Metadata { check, .. } => check.code(),
            Halt::Storage { op: StorageOp::Bootstrap, .. } => "BOOTSTRAP_IO",
            Halt::Storage { .. } => "REPLICA_IO_ERROR",
        }
    }
    fn rule_id(&self) -> &'static str {
        match self {
            Halt::Chain { violation } => violation.rule_id(),
            Halt::Apply { error, .. } => error.rule_id(),
            Halt::Refused { refuse, .. } => refuse.code().rule_id(),
            Halt::ClusterMismatchAtAccept { .. } | Halt::PeerNotAerodb { .. } => "REPL-1",
            Halt::InstalledSnapshotInvalid { rejected } => rejected.fault.rule_id(),
            Halt::InstalledSnapshotMismatch { .. } => "F-S3",
            Halt::LocalWal { failure } => failure.rule_id(),
            Halt::Metadata { .. } => "F-RC2",
            Halt::Storage { .. } => "REPL-9",
        }
    }
    fn failure_row(&self) -> Option<&'static str> {
        match self {
            Halt::Chain { violation: ChainViolation::InvalidRecord { .. } } => Some("F-V1"),
            Halt::Chain { violation: ChainViolation::FingerprintMismatch { .. } } => Some("F-D1"),
            Halt::Chain { .. } => Some("F-V2"),
            Halt::Apply { error: ApplyError::DigestMismatch { .. } | ApplyError::BadHorizon { .. }, .. } => Some("F-D3"),
            Halt::Apply { .. } => Some("F-V2"),
            Halt::Refused { refuse, .. } => refuse.code().failure_row(),
            Halt::ClusterMismatchAtAccept { .. } | Halt::PeerNotAerodb { .. } => Some("F-C1"),
            Halt::InstalledSnapshotInvalid { .. } => Some("F-S4"),
            Halt::InstalledSnapshotMismatch { .. } => Some("F-S3"),
            Halt::LocalWal { .. } => Some("F-RC1"),
            Halt::Metadata { .. } => Some("F-RC2"),
            Halt::Storage { .. } => None,
        }
    }
    fn lsn(&self) -> Option<Lsn> {
        match self {
            Halt::Chain { violation } => Some(violation.lsn()),
            Halt::Apply { lsn, .. } => Some(*lsn),
            Halt::Refused { request: HelloRequest::Resume { end_lsn, .. }, .. } => Some(*end_lsn),
            Halt::InstalledSnapshotMismatch { snapshot_cut, .. } => Some(snapshot_cut.end_lsn),
            Halt::LocalWal { failure } => failure.lsn(),
            _ => None,
        }
    }
    fn commit_id(&self) -> Option<CommitId> {
        match self {
            Halt::Chain { violation: ChainViolation::CommitIdDiscontinuity { found, .. } } => Some(*found),
            Halt::Chain { violation: ChainViolation::FingerprintMismatch { commit_id, .. } } => Some(*commit_id),
            Halt::Apply { error, .. } => Some(error.commit_id()),
            Halt::Refused { request: HelloRequest::Resume { commit_id, .. }, .. } => Some(*commit_id),
            Halt::InstalledSnapshotMismatch { snapshot_cut, .. } => Some(snapshot_cut.commit_id),
            _ => None,
        }
    }
    fn detail(&self) -> String {
        match self {
            Halt::Chain { violation } => violation.to_string(),
            Halt::Apply { error, .. } => error.to_string(),
            Halt::Refused { refuse, .. } => refuse.detail.clone(),
            Halt::ClusterMismatchAtAccept { replica_cluster_id, primary_cluster_id } => {
                format!("primary is cluster {primary_cluster_id}, replica belongs to {replica_cluster_id}")
            }
            Halt::PeerNotAerodb { primary, found_magic } => {
                format!("{primary} does not answer as an AeroDB primary (first bytes {found_magic:#06x}, expected the replication frame magic)")
            }
            Halt::InstalledSnapshotInvalid { rejected } => format!("installed bootstrap snapshot is invalid: {}", rejected.detail),
            Halt::InstalledSnapshotMismatch { snapshot_cut, recorded_boundary } => format!(
                "installed snapshot cut ({}, LSN {}) differs from the recorded boundary ({}, LSN {})",
                snapshot_cut.commit_id, snapshot_cut.end_lsn, recorded_boundary.boundary_commit_id, recorded_boundary.boundary_lsn
            ),
            Halt::LocalWal { failure } => format!("local WAL recovery failed: {failure}"),
            Halt::Metadata { file, detail, .. } => format!("replica metadata {file}: {detail}"),
            Halt::Storage { op, detail } => format!("local storage failed ({op:?}): {detail}"),
        }
    }
    fn evidence(&self) -> Value {
        match self {
            Halt::Chain { violation } => to_value(violation),
            Halt::Apply { error, .. } => to_value(error),
            Halt::Refused { refuse, request, replica_cluster_id } => {
                json!({"replica": {"request": request, "cluster_id": replica_cluster_id}, "primary": to_value(&refuse.refusal)})
            }
            Halt::ClusterMismatchAtAccept { replica_cluster_id, primary_cluster_id } => {
                json!({"replica_cluster_id": replica_cluster_id, "primary_cluster_id": primary_cluster_id})
            }
            Halt::PeerNotAerodb { primary, found_magic } => json!({"primary": primary, "found_magic": format!("{found_magic:#06x}")}),
            Halt::InstalledSnapshotInvalid { rejected } => to_value(rejected),
            Halt::InstalledSnapshotMismatch { snapshot_cut, recorded_boundary } => {
                json!({"snapshot_cut": snapshot_cut, "recorded_boundary": recorded_boundary})
            }
            Halt::LocalWal { failure } => to_value(failure),
            Halt::Metadata { file, check, .. } => json!({"file": file, "check": check.code()}),
            Halt::Storage { op, .. } => json!({"op": op}),
        }
    }
}

/// Why a replica cannot make progress right now. Never persisted and never
/// a verdict about history: the replica retries with backoff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocked {
    /// The primary's address could not be reached.
    ConnectFailed {
        /// The `--primary` address.
        primary: String,
        /// The OS error.
        detail: String,
    },
    /// The connection ended.
    ConnectionLost {
        /// Why, as the transport saw it.
        detail: String,
    },
    /// Nothing arrived within the idle limit (timeouts only close
    /// connections, REPL-10).
    ConnectionIdle {
        /// The limit in milliseconds.
        idle_limit_ms: u64,
    },
    /// A frame failed its framing checks (F-N2).
    Frame {
        /// What was wrong.
        error: FrameError,
    },
    /// A frame's payload or order broke the protocol (F-N2).
    Protocol {
        /// What was wrong.
        error: MessageError,
    },
    /// The peer does not speak the protocol; this replica holds no state yet,
    /// so whom it reached is not a verdict about its history.
    PeerNotAerodb {
        /// The `--primary` address.
        primary: String,
        /// The magic that arrived instead.
        found_magic: u16,
    },
    /// The primary refused; either the refusal never halts (WAL_UNAVAILABLE),
    /// or this replica holds no state yet.
    Refused {
        /// The refusal.
        refuse: Refuse,
        /// What the replica asked for.
        request: HelloRequest,
    },
    /// The primary could not serve (it never guesses).
    PrimaryCannotServe {
        /// Its code and detail.
        error: ServeError,
    },
    /// A bootstrap snapshot failed validation; nothing was installed.
    SnapshotRejected {
        /// Why.
        rejected: SnapshotRejected,
    },
    /// Writing a bootstrap transfer failed; nothing was installed.
    BootstrapStorage {
        /// The error.
        detail: String,
    },
    /// Token authentication with the primary failed or was refused (never
    /// a halt: it is not a verdict about history).
    Auth {
        /// The `--primary` address.
        primary: String,
        /// What failed.
        failure: AuthFailure,
    },
}

impl Reason for Blocked {
    fn code(&self) -> &'static str {
        match self {
            Blocked::ConnectFailed { .. } => "CONNECT_FAILED",
            Blocked::ConnectionLost { .. } => "CONNECTION_LOST",
            Blocked::ConnectionIdle { .. } => "CONNECTION_IDLE",
            Blocked::Frame { error } => error.code(),
            Blocked::Protocol { .. } => "PROTOCOL_ERROR",
            Blocked::PeerNotAerodb { .. } => "PEER_NOT_AERODB",
            Blocked::Refused { refuse, .. } => refuse.code().as_str(),
            Blocked::PrimaryCannotServe { error } => error.code.as_str(),
            Blocked::SnapshotRejected { rejected } => rejected.fault.code(),
            Blocked::BootstrapStorage { .. } => "BOOTSTRAP_IO",
            Blocked::Auth { failure, .. } => failure.code(),
        }
    }
    fn rule_id(&self) -> &'static str {
        match self {
            Blocked::Auth { .. } => "REPL-1",
            Blocked::ConnectFailed { .. } | Blocked::ConnectionLost { .. } | Blocked::ConnectionIdle { .. } => "F-N1",
            Blocked::Frame { .. } | Blocked::Protocol { .. } => "F-N2",
            Blocked::PeerNotAerodb { .. } => "REPL-1",
            Blocked::Refused { refuse, .. } => refuse.code().rule_id(),
            Blocked::PrimaryCannotServe { error } => error.code.rule_id(),
            Blocked::SnapshotRejected { rejected } => rejected.fault.rule_id(),
            Blocked::BootstrapStorage { .. } => "REPL-9",
        }
    }
    fn failure_row(&self) -> Option<&'static str> {
        match self {
            Blocked::ConnectFailed { .. } | Blocked::ConnectionLost { .. } | Blocked::ConnectionIdle { .. } => Some("F-N1"),
            Blocked::Frame { .. } | Blocked::Protocol { .. } => Some("F-N2"),
            Blocked::PeerNotAerodb { .. } => Some("F-C1"),
            Blocked::SnapshotRejected { .. } => Some("F-S4"),
            Blocked::Refused { .. } | Blocked::PrimaryCannotServe { .. } | Blocked::BootstrapStorage { .. } | Blocked::Auth { .. } => None,
        }
    }
    fn lsn(&self) -> Option<Lsn> {
        match self {
            Blocked::Refused { request: HelloRequest::Resume { end_lsn, .. }, .. } => Some(*end_lsn),
            _ => None,
        }
    }
    fn commit_id(&self) -> Option<CommitId> {
        match self {
            Blocked::Refused { request: HelloRequest::Resume { commit_id, .. }, .. } => Some(*commit_id),
            _ => None,
        }
    }
    fn detail(&self) -> String {
        match self {
            Blocked::ConnectFailed { primary, detail } => format!("cannot connect to {primary}: {detail}"),
            Blocked::ConnectionLost { detail } => detail.clone(),
            Blocked::ConnectionIdle { idle_limit_ms } => format!("no frame from the primary within {idle_limit_ms} ms"),
            Blocked::Frame { error } => error.to_string(),
            Blocked::Protocol { error } => error.to_string(),
            Blocked::PeerNotAerodb { primary, found_magic } => format!(
                "{primary} does not answer as an AeroDB primary (first bytes {found_magic:#06x}); is --primary the primary's replication port (--repl-listen)?"
            ),
            Blocked::Refused { refuse, .. } => refuse.detail.clone(),
            Blocked::PrimaryCannotServe { error } => format!("primary cannot serve: {}", error.detail),
            Blocked::SnapshotRejected { rejected } => format!("bootstrap snapshot rejected: {}", rejected.detail),
            Blocked::BootstrapStorage { detail } => format!("cannot write the bootstrap transfer: {detail}"),
            Blocked::Auth { primary, failure } => failure.detail(primary),
        }
    }
    fn evidence(&self) -> Value {
        match self {
            Blocked::ConnectFailed { primary, .. } => json!({"primary": primary}),
            Blocked::ConnectionLost { .. } => json!({}),
            Blocked::ConnectionIdle { idle_limit_ms } => json!({"idle_limit_ms": idle_limit_ms}),
            Blocked::Frame { error } => to_value(error),
            Blocked::Protocol { error } => to_value(error),
            Blocked::PeerNotAerodb { primary, found_magic } => json!({"primary": primary, "found_magic": format!("{found_magic:#06x}")}),
            Blocked::Refused { refuse, request } => json!({"replica": {"request": request}, "primary": to_value(&refuse.refusal)}),
            Blocked::PrimaryCannotServe { error } => json!({"code": error.code.as_str()}),
            Blocked::SnapshotRejected { rejected } => to_value(rejected),
            Blocked::BootstrapStorage { .. } => json!({}),
            Blocked::Auth { primary, failure } => json!({"primary": primary, "authentication": to_value(failure)}),
        }
    }
}
