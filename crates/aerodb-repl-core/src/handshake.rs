//! The handshake: what a replica states about its history, and the
//! primary's pure decision about it (REPLICATION.md §4, REPL-5, F-D1, F-D2,
//! F-C1). The primary keeps no per-replica state that affects this.

use std::fmt;

use serde::{Deserialize, Serialize};

use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn, GENESIS_FINGERPRINT};

use crate::ids::{ClusterId, ReplicaId, ReplicaName};

/// Replication protocol version spoken by this build. Version 2 added the
/// primary's commit times to PROGRESS (lag in seconds), the cap to the
/// WAL_UNAVAILABLE evidence, the snapshot transfer resume (F-S1):
/// [`HelloRequest::SnapshotResume`] and [`Accept::snapshot_resume`], and the
/// token authentication phase (AUTH_BEGIN/CHALLENGE/PROOF/REFUSE) before
/// HELLO when a token is configured. A peer speaking another version is
/// refused with `PROTOCOL_VERSION` (docs/protocol.md, "Versions").
pub const PROTOCOL_VERSION: u32 = 2;

/// What the replica asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HelloRequest {
    /// Continue after this history tip.
    Resume {
        /// End LSN of the replica's last record.
        end_lsn: Lsn,
        /// Its CommitId.
        commit_id: CommitId,
        /// Its fingerprint (hex).
        fingerprint: Fingerprint,
    },
    /// Send a snapshot for bootstrap.
    Snapshot,
    /// Send a snapshot for bootstrap, continuing an interrupted transfer of
    /// the snapshot with this manifest at `file_index`/`offset` if the
    /// primary still serves that very snapshot (F-S1); otherwise a whole
    /// snapshot, as for [`HelloRequest::Snapshot`].
    SnapshotResume(SnapshotResume),
}

/// Where an interrupted snapshot transfer continues: the manifest it
/// belongs to (its bytes' crc32c and length) and the first byte the
/// replica does not hold yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResume {
    /// crc32c of the manifest bytes of SNAPSHOT_BEGIN.
    pub manifest_crc32c: u32,
    /// Their length.
    pub manifest_len: u64,
    /// The data file the next byte belongs to.
    pub file_index: u32,
    /// Its offset in that file.
    pub offset: u64,
}

impl SnapshotResume {
    /// Whether `manifest` is the manifest this resume point belongs to.
    pub fn matches(&self, manifest: &[u8]) -> bool {
        manifest.len() as u64 == self.manifest_len && crc32c::crc32c(manifest) == self.manifest_crc32c
    }
}

impl HelloRequest {
    /// The resume request for a validated history tip.
    pub fn resume(tip: ChainTip) -> HelloRequest {
        HelloRequest::Resume { end_lsn: tip.end_lsn, commit_id: tip.commit_id, fingerprint: tip.fingerprint }
    }
}

/// Replica → primary, first frame of every connection. Every field is
/// validated when the frame is decoded (RES-4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version.
    pub protocol_version: u32,
    /// Cluster id recorded at bootstrap, if any.
    pub cluster_id: Option<ClusterId>,
    /// The replica's own id.
    pub replica_id: ReplicaId,
    /// The operator's name for the replica (`--name`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ReplicaName>,
    /// What it asks for.
    pub request: HelloRequest,
}

/// Primary → replica when the handshake is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The primary's cluster id.
    pub cluster_id: ClusterId,
    /// C_primary.
    pub primary_commit_id: CommitId,
    /// Primary durable LSN.
    pub durable_lsn: Lsn,
    /// Where streaming starts (the replica's end LSN), or None for a snapshot session.
    pub start_lsn: Option<Lsn>,
    /// A snapshot session continuing the transfer the replica asked to
    /// resume: the point it continues at (the one asked for). Absent when
    /// the whole snapshot follows (another snapshot, or no resume asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_resume: Option<SnapshotResume>,
    /// The primary's client API address as it bound it (`--listen`), so a
    /// replica can tell clients where writes go (observability only).
    /// Optional and additive: absent from older primaries, ignored by older
    /// replicas; a malformed address fails the frame's decoding (RES-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<std::net::SocketAddr>,
}

/// Refusal codes (exact names from REPLICATION.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum RefusalCode {
    /// Another cluster.
    CLUSTER_MISMATCH,
    /// The replica's history differs from the primary's.
    DIVERGED,
    /// The replica holds history beyond the primary's durable LSN.
    REPLICA_AHEAD,
    /// The primary no longer holds the WAL needed; snapshot needed.
    WAL_UNAVAILABLE,
    /// Unsupported protocol version.
    PROTOCOL_VERSION,
}

impl RefusalCode {
    /// The exact code string.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::CLUSTER_MISMATCH => "CLUSTER_MISMATCH",
            RefusalCode::DIVERGED => "DIVERGED",
            RefusalCode::REPLICA_AHEAD => "REPLICA_AHEAD",
            RefusalCode::WAL_UNAVAILABLE => "WAL_UNAVAILABLE",
            RefusalCode::PROTOCOL_VERSION => "PROTOCOL_VERSION",
        }
    }
    /// Rule enforced by the refusal.
    pub fn rule_id(self) -> &'static str {
        match self {
            RefusalCode::CLUSTER_MISMATCH => "REPL-1",
            RefusalCode::DIVERGED => "REPL-5",
            RefusalCode::REPLICA_AHEAD => "REPL-3",
            RefusalCode::WAL_UNAVAILABLE => "RES-2",
            RefusalCode::PROTOCOL_VERSION => "REPL-1",
        }
    }
    /// Failure-matrix row.
    pub fn failure_row(self) -> Option<&'static str> {
        match self {
            RefusalCode::CLUSTER_MISMATCH => Some("F-C1"),
            RefusalCode::DIVERGED => Some("F-D1"),
            RefusalCode::REPLICA_AHEAD => Some("F-D2"),
            RefusalCode::WAL_UNAVAILABLE | RefusalCode::PROTOCOL_VERSION => None,
        }
    }
    /// Every refusal except WAL_UNAVAILABLE halts a replica that holds state.
    pub fn halts(self) -> bool {
        self != RefusalCode::WAL_UNAVAILABLE
    }
}

/// The primary's side of a refusal: typed evidence per code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum Refusal {
    /// The replica speaks another protocol version.
    ProtocolVersion {
        /// The version the primary speaks.
        primary_protocol_version: u32,
    },
    /// The replica belongs to another cluster.
    ClusterMismatch {
        /// The primary's cluster id.
        primary_cluster_id: ClusterId,
    },
    /// The replica's resume point is beyond the primary's durable history.
    ReplicaAhead {
        /// Primary durable LSN.
        primary_durable_lsn: Lsn,
        /// C_primary.
        primary_commit_id: CommitId,
    },
    /// The primary no longer retains the WAL the replica needs (RES-2).
    WalUnavailable {
        /// First LSN the primary still holds.
        oldest_retained_lsn: Lsn,
        /// CommitId just before it.
        oldest_retained_commit_id: CommitId,
        /// Primary durable LSN.
        primary_durable_lsn: Lsn,
        /// C_primary.
        primary_commit_id: CommitId,
        /// `--wal-keep-bytes`: the most WAL the primary keeps for replicas
        /// beyond what its snapshots need (None if it did not say).
        wal_keep_bytes: Option<u64>,
    },
    /// The primary's record at the replica's resume point differs.
    Diverged {
        /// Primary durable LSN.
        primary_durable_lsn: Lsn,
        /// C_primary.
        primary_commit_id: CommitId,
        /// End LSN of the primary's record with the replica's CommitId (None: no such record).
        primary_record_end_lsn: Option<Lsn>,
        /// Its fingerprint.
        primary_record_fingerprint: Option<Fingerprint>,
    },
}

impl Refusal {
    /// The code of this refusal.
    pub fn code(&self) -> RefusalCode {
        match self {
            Refusal::ProtocolVersion { .. } => RefusalCode::PROTOCOL_VERSION,
            Refusal::ClusterMismatch { .. } => RefusalCode::CLUSTER_MISMATCH,
            Refusal::ReplicaAhead { .. } => RefusalCode::REPLICA_AHEAD,
            Refusal::WalUnavailable { .. } => RefusalCode::WAL_UNAVAILABLE,
            Refusal::Diverged { .. } => RefusalCode::DIVERGED,
        }
    }
}

/// Primary → replica when the handshake is refused: the typed evidence and
/// a human-readable detail. Wire form: `{"code": ..., fields..., "detail": ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refuse {
    /// The refusal and the primary's evidence.
    #[serde(flatten)]
    pub refusal: Refusal,
    /// Human-readable detail (bounded when decoded).
    pub detail: String,
}

impl Refuse {
    /// The refusal code.
    pub fn code(&self) -> RefusalCode {
        self.refusal.code()
    }
}

/// What the primary knows about its own history, as the decision needs it.
pub trait PrimaryHistory {
    /// Cluster id.
    fn cluster_id(&self) -> &ClusterId;
    /// (durable LSN, C_primary).
    fn durable(&self) -> (Lsn, CommitId);
    /// Chain state at the start of the oldest retained segment.
    fn oldest_retained(&self) -> ChainTip;
    /// (end LSN, fingerprint) of the record with this CommitId, if retained
    /// and durable. Errors reading the WAL are reported as `Err(detail)`.
    fn record_end(&self, commit_id: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String>;
    /// `--wal-keep-bytes` in force, stated in a WAL_UNAVAILABLE refusal
    /// (RES-2). Evidence only: the decision never reads it.
    fn wal_keep_bytes(&self) -> Option<u64> {
        None
    }
}

/// The primary's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Stream WAL from this LSN.
    StreamFrom(Lsn),
    /// Serve a snapshot.
    ServeSnapshot,
    /// Refuse.
    Refuse(Refuse),
    /// The primary could not read its own WAL to decide; close the
    /// connection without a verdict (never guess).
    Undecided(String),
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::StreamFrom(lsn) => write!(f, "stream from LSN {lsn}"),
            Decision::ServeSnapshot => f.write_str("serve a snapshot"),
            Decision::Refuse(r) => write!(f, "refuse {}: {}", r.code().as_str(), r.detail),
            Decision::Undecided(d) => write!(f, "undecided: {d}"),
        }
    }
}

fn refuse(refusal: Refusal, detail: String) -> Decision {
    Decision::Refuse(Refuse { refusal, detail })
}

/// Decides a handshake. Pure: the same history and hello always give the
/// same decision; nothing depends on time or on earlier connections.
pub fn decide(history: &dyn PrimaryHistory, hello: &Hello) -> Decision {
    let (durable_lsn, c_primary) = history.durable();
    if hello.protocol_version != PROTOCOL_VERSION {
        return refuse(
            Refusal::ProtocolVersion { primary_protocol_version: PROTOCOL_VERSION },
            format!("replica speaks protocol {}, primary speaks {PROTOCOL_VERSION}", hello.protocol_version),
        );
    }
    if let Some(cluster) = &hello.cluster_id {
        if cluster != history.cluster_id() {
            return refuse(
                Refusal::ClusterMismatch { primary_cluster_id: history.cluster_id().clone() },
                format!("replica belongs to cluster {cluster}, primary is cluster {}", history.cluster_id()),
            );
        }
    }
    let (end_lsn, commit_id, fingerprint) = match hello.request {
        HelloRequest::Snapshot | HelloRequest::SnapshotResume(_) => return Decision::ServeSnapshot,
        HelloRequest::Resume { end_lsn, commit_id, fingerprint } => (end_lsn, commit_id, fingerprint),
    };
    if end_lsn > durable_lsn || commit_id > c_primary {
        return refuse(
            Refusal::ReplicaAhead { primary_durable_lsn: durable_lsn, primary_commit_id: c_primary },
            format!("replica history ends at LSN {end_lsn} (CommitId {commit_id}); primary durable history ends at LSN {durable_lsn} (CommitId {c_primary})"),
        );
    }
    let oldest = history.oldest_retained();
    if commit_id < oldest.commit_id || (commit_id == 0 && oldest.end_lsn > 0) {
        let keep = history.wal_keep_bytes();
        let cap = keep.map_or(String::new(), |k| {
            format!("; it keeps at most {k} bytes of WAL for replicas beyond what its snapshots need (--wal-keep-bytes) and the replica is {} bytes behind its durable LSN {durable_lsn}", durable_lsn.saturating_sub(end_lsn))
        });
        return refuse(
            Refusal::WalUnavailable {
                oldest_retained_lsn: oldest.end_lsn,
                oldest_retained_commit_id: oldest.commit_id,
                primary_durable_lsn: durable_lsn,
                primary_commit_id: c_primary,
                wal_keep_bytes: keep,
            },
            format!(
                "primary retains WAL from LSN {} (after CommitId {}); replica needs it from LSN {end_lsn} (after CommitId {commit_id}){cap}; re-bootstrap the replica from a snapshot (RES-2)",
                oldest.end_lsn, oldest.commit_id
            ),
        );
    }
    let record = if commit_id == oldest.commit_id {
        Some((oldest.end_lsn, oldest.fingerprint))
    } else if commit_id == 0 {
        Some((0, GENESIS_FINGERPRINT))
    } else {
        match history.record_end(commit_id) {
            Ok(r) => r,
            Err(e) => return Decision::Undecided(e),
        }
    };
    match record {
        Some((lsn, fp)) if lsn == end_lsn && fp == fingerprint => Decision::StreamFrom(end_lsn),
        other => refuse(
            Refusal::Diverged {
                primary_durable_lsn: durable_lsn,
                primary_commit_id: c_primary,
                primary_record_end_lsn: other.map(|r| r.0),
                primary_record_fingerprint: other.map(|r| r.1),
            },
            format!("replica's record {commit_id} ends at LSN {end_lsn} with fingerprint {fingerprint}; the primary's differs"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    struct Fake {
        cluster: ClusterId,
        records: Vec<(Lsn, Fingerprint)>,
        oldest: ChainTip,
    }
    impl PrimaryHistory for Fake {
        fn cluster_id(&self) -> &ClusterId {
            &self.cluster
        }
        fn durable(&self) -> (Lsn, CommitId) {
            (self.records.last().map_or(0, |r| r.0), self.records.len() as u64)
        }
        fn oldest_retained(&self) -> ChainTip {
            self.oldest
        }
        fn record_end(&self, c: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
            Ok(self.records.get((c as usize).wrapping_sub(1)).copied())
        }
    }

    const C1: &str = "0123456789abcdef0123456789abcdef";
    const C2: &str = "fedcba9876543210fedcba9876543210";

    fn fake() -> Fake {
        Fake {
            cluster: ClusterId::parse(C1).unwrap(),
            records: vec![(100, Fingerprint(1)), (200, Fingerprint(2)), (300, Fingerprint(3))],
            oldest: ChainTip::GENESIS,
        }
    }
    fn hello(end_lsn: Lsn, commit_id: CommitId, fp: u128) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: Some(ClusterId::parse(C1).unwrap()),
            replica_id: ReplicaId::parse("r").unwrap(),
            name: None,
            request: HelloRequest::Resume { end_lsn, commit_id, fingerprint: Fingerprint(fp) },
        }
    }
    fn code(d: Decision) -> Option<RefusalCode> {
        match d {
            Decision::Refuse(r) => Some(r.code()),
            _ => None,
        }
    }

    /// REPL-5 / F-D1: a matching resume point streams; any difference is DIVERGED.
    #[test]
    fn f_d1_handshake_detects_divergence() {
        let f = fake();
        assert_eq!(decide(&f, &hello(200, 2, 2)), Decision::StreamFrom(200));
        assert_eq!(decide(&f, &hello(0, 0, GENESIS_FINGERPRINT.0)), Decision::StreamFrom(0));
        assert_eq!(code(decide(&f, &hello(200, 2, 9))), Some(RefusalCode::DIVERGED));
        assert_eq!(code(decide(&f, &hello(250, 2, 2))), Some(RefusalCode::DIVERGED));
        assert_eq!(code(decide(&f, &hello(5, 0, GENESIS_FINGERPRINT.0))), Some(RefusalCode::DIVERGED));
    }

    /// F-D2: a replica beyond the primary's durable history is REPLICA_AHEAD.
    #[test]
    fn f_d2_replica_ahead_is_refused() {
        let f = fake();
        assert_eq!(code(decide(&f, &hello(400, 4, 4))), Some(RefusalCode::REPLICA_AHEAD));
        assert_eq!(code(decide(&f, &hello(300, 9, 3))), Some(RefusalCode::REPLICA_AHEAD));
    }

    /// F-C1: another cluster or protocol is refused; both halt.
    #[test]
    fn f_c1_cluster_and_protocol_mismatch_refused() {
        let f = fake();
        let mut h = hello(0, 0, GENESIS_FINGERPRINT.0);
        h.cluster_id = Some(ClusterId::parse(C2).unwrap());
        assert_eq!(code(decide(&f, &h)), Some(RefusalCode::CLUSTER_MISMATCH));
        let mut h = hello(0, 0, GENESIS_FINGERPRINT.0);
        h.protocol_version = 99;
        assert_eq!(code(decide(&f, &h)), Some(RefusalCode::PROTOCOL_VERSION));
        assert!(RefusalCode::CLUSTER_MISMATCH.halts() && !RefusalCode::WAL_UNAVAILABLE.halts());
    }

    /// REPL-7: WAL the primary no longer holds is WAL_UNAVAILABLE; a resume
    /// exactly at the oldest retained segment start is proven by its header.
    #[test]
    fn repl_7_wal_unavailable_after_retention() {
        let mut f = fake();
        f.oldest = ChainTip { end_lsn: 200, commit_id: 2, fingerprint: Fingerprint(2) };
        assert_eq!(code(decide(&f, &hello(100, 1, 1))), Some(RefusalCode::WAL_UNAVAILABLE));
        assert_eq!(code(decide(&f, &hello(0, 0, GENESIS_FINGERPRINT.0))), Some(RefusalCode::WAL_UNAVAILABLE));
        assert_eq!(decide(&f, &hello(200, 2, 2)), Decision::StreamFrom(200));
        assert_eq!(code(decide(&f, &hello(200, 2, 7))), Some(RefusalCode::DIVERGED));
    }

    /// RES-2: a WAL_UNAVAILABLE refusal carries the numbers: the oldest LSN
    /// and CommitId held, the primary's durable position and the cap, and
    /// its detail names the replica's resume point; the cap is evidence
    /// only (the decision is the same without it). A protocol-1 replica is
    /// refused PROTOCOL_VERSION naming version 2.
    #[test]
    fn res_2_wal_unavailable_refusal_carries_the_numbers() {
        struct Capped(Fake);
        impl PrimaryHistory for Capped {
            fn cluster_id(&self) -> &ClusterId {
                self.0.cluster_id()
            }
            fn durable(&self) -> (Lsn, CommitId) {
                self.0.durable()
            }
            fn oldest_retained(&self) -> ChainTip {
                self.0.oldest_retained()
            }
            fn record_end(&self, c: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
                self.0.record_end(c)
            }
            fn wal_keep_bytes(&self) -> Option<u64> {
                Some(150)
            }
        }
        let mut f = fake();
        f.oldest = ChainTip { end_lsn: 200, commit_id: 2, fingerprint: Fingerprint(2) };
        let Decision::Refuse(r) = decide(&Capped(f), &hello(100, 1, 1)) else { panic!("expected a refusal") };
        assert_eq!(
            r.refusal,
            Refusal::WalUnavailable {
                oldest_retained_lsn: 200,
                oldest_retained_commit_id: 2,
                primary_durable_lsn: 300,
                primary_commit_id: 3,
                wal_keep_bytes: Some(150)
            }
        );
        for needle in ["from LSN 200 (after CommitId 2)", "from LSN 100 (after CommitId 1)", "at most 150 bytes", "200 bytes behind its durable LSN 300"] {
            assert!(r.detail.contains(needle), "{needle:?} not in {}", r.detail);
        }
        assert_eq!((r.code().rule_id(), r.code().halts()), ("RES-2", false));
        let mut f = fake();
        f.oldest = ChainTip { end_lsn: 200, commit_id: 2, fingerprint: Fingerprint(2) };
        let Decision::Refuse(plain) = decide(&f, &hello(100, 1, 1)) else { panic!("expected a refusal") };
        assert!(matches!(plain.refusal, Refusal::WalUnavailable { wal_keep_bytes: None, .. }));
        let mut v1 = hello(0, 0, GENESIS_FINGERPRINT.0);
        v1.protocol_version = 1;
        let Decision::Refuse(r) = decide(&fake(), &v1) else { panic!("expected a refusal") };
        assert_eq!(r.refusal, Refusal::ProtocolVersion { primary_protocol_version: 2 });
    }

    /// RES-4: a refusal round-trips on the wire with its typed evidence and
    /// evidence that does not match its code is rejected.
    #[test]
    fn res_4_refusal_wire_form_is_typed() {
        let d = decide(&fake(), &hello(200, 2, 9));
        let Decision::Refuse(r) = d else { panic!("expected a refusal") };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.starts_with("{\"code\":\"DIVERGED\""), "{text}");
        assert_eq!(serde_json::from_str::<Refuse>(&text).unwrap(), r);
        let bad = r#"{"code":"REPLICA_AHEAD","oldest_retained_lsn":1,"detail":"x"}"#;
        assert!(serde_json::from_str::<Refuse>(bad).is_err());
    }
}
