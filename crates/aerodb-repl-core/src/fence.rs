//! Fencing (REPL-11, F-P5): when a replica's handshake proves that the
//! primary's history is shorter than, or different from, history the
//! primary once made durable, the primary stops acknowledging writes,
//! persists the fence, and explains it. Only an explicit operator action
//! (`aerodb primary --lift-fence`) lifts it.
//!
//! * [`fence_for`] — the pure rule: a handshake answered `REPLICA_AHEAD`,
//!   or `DIVERGED`, to a replica of the same cluster fences the primary.
//!   Every byte a replica holds was shipped from below the primary's
//!   durable LSN, so such a replica proves acknowledged history that the
//!   primary no longer has (or has rewritten).
//! * [`FenceLatch`] — the primary-side state: set in memory first (writes
//!   stop at once), then persisted in `fence.json` (checksummed JSON,
//!   atomic and fsynced) so it survives restarts. The first proof is kept;
//!   later proofs are counted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use aerodb_wal::checksummed::{read_checksummed, write_checksummed, ChecksummedFileError};
use aerodb_wal::disk::Disk;
use aerodb_wal::{CommitId, Fingerprint, Lsn};

use crate::auth::PeerAuth;
use crate::handshake::{Hello, HelloRequest, Refusal, Refuse};
use crate::ids::ClusterId;

/// File name of the persisted fence in the primary's data directory.
pub const FENCE_FILE: &str = "fence.json";
/// Format version of `fence.json`.
pub const FENCE_FORMAT: u32 = 1;

/// The replica's resume point that proved the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// End LSN of the replica's last record.
    pub end_lsn: Lsn,
    /// Its CommitId.
    pub commit_id: CommitId,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
}

/// The replica that proved it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencingReplica {
    /// Replica id from its hello.
    pub replica_id: String,
    /// Its name, when it gave one.
    pub name: Option<String>,
    /// Cluster id it stated.
    pub cluster_id: String,
    /// Its resume point.
    pub resume: ResumePoint,
}

/// The primary's side when the proof arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencedPrimary {
    /// The primary's durable LSN.
    pub durable_lsn: Lsn,
    /// C_primary.
    pub commit_id: CommitId,
    /// End LSN of the primary's record with the replica's CommitId, if it has one.
    pub record_end_lsn: Option<Lsn>,
    /// Fingerprint of that record, if it has one.
    pub record_fingerprint: Option<Fingerprint>,
}

/// A fence: the proof that the primary lost or rewrote acknowledged
/// history. Persisted as the body of `fence.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fence {
    /// Format version ([`FENCE_FORMAT`]).
    pub format_version: u32,
    /// The handshake answer that proved it: `REPLICA_AHEAD` or `DIVERGED`.
    pub code: String,
    /// Always `REPL-11`.
    pub rule_id: String,
    /// Always `F-P5`.
    pub failure: String,
    /// The replica's side.
    pub replica: FencingReplica,
    /// The primary's side.
    pub primary: FencedPrimary,
    /// The handshake's detail.
    pub detail: String,
}

impl Fence {
    /// The evidence a refused write carries: the replica (id and name),
    /// its resume point, and the primary's end.
    pub fn evidence(&self) -> serde_json::Value {
        serde_json::json!({
            "fence_code": self.code,
            "failure": self.failure,
            "replica_id": self.replica.replica_id,
            "replica_name": self.replica.name,
            "replica_resume_point": {
                "end_lsn": self.replica.resume.end_lsn,
                "commit_id": self.replica.resume.commit_id,
                "fingerprint": self.replica.resume.fingerprint,
            },
            "primary_end": {
                "durable_lsn": self.primary.durable_lsn,
                "commit_id": self.primary.commit_id,
                "record_end_lsn": self.primary.record_end_lsn,
                "record_fingerprint": self.primary.record_fingerprint,
            },
            "lifted_by": "aerodb primary --lift-fence",
        })
    }
}

/// The pure rule (REPL-11): does this refusal fence the primary? Yes when
/// the primary refused a resume request from a replica of its own cluster
/// with `REPLICA_AHEAD` (the replica holds history beyond the primary's
/// durable end) or `DIVERGED` (the primary's record at the replica's resume
/// point differs), and the peer authenticated when a token is configured
/// (`peer`: an unauthenticated peer's claims never change the primary's
/// state). The primary's side comes from the refusal's typed evidence
/// (what the decision saw).
pub fn fence_for(cluster_id: &ClusterId, peer: PeerAuth, hello: &Hello, refuse: &Refuse) -> Option<Fence> {
    if !peer.may_act() || hello.cluster_id.as_ref() != Some(cluster_id) {
        return None;
    }
    let HelloRequest::Resume { end_lsn, commit_id, fingerprint } = hello.request else { return None };
    let primary = match refuse.refusal {
        Refusal::ReplicaAhead { primary_durable_lsn, primary_commit_id } => {
            FencedPrimary { durable_lsn: primary_durable_lsn, commit_id: primary_commit_id, record_end_lsn: None, record_fingerprint: None }
        }
        Refusal::Diverged { primary_durable_lsn, primary_commit_id, primary_record_end_lsn, primary_record_fingerprint } => FencedPrimary {
            durable_lsn: primary_durable_lsn,
            commit_id: primary_commit_id,
            record_end_lsn: primary_record_end_lsn,
            record_fingerprint: primary_record_fingerprint,
        },
        _ => return None,
    };
    Some(Fence {
        format_version: FENCE_FORMAT,
        code: refuse.code().as_str().to_string(),
        rule_id: "REPL-11".to_string(),
        failure: "F-P5".to_string(),
        replica: FencingReplica {
            replica_id: hello.replica_id.to_string(),
            name: hello.name.as_ref().map(ToString::to_string),
            cluster_id: cluster_id.to_string(),
            resume: ResumePoint { end_lsn, commit_id, fingerprint },
        },
        primary,
        detail: refuse.detail.clone(),
    })
}

/// Why `fence.json` cannot be trusted: startup refuses (a fence must never
/// be lost by accident), unless the operator lifts it.
#[derive(Debug, thiserror::Error)]
#[error("fence file {file}: {detail} ({code}, REPL-11)")]
pub struct FenceFileError {
    /// File.
    pub file: String,
    /// Stable code (`META_*`, or `FENCE_VERSION`).
    pub code: &'static str,
    /// What is wrong.
    pub detail: String,
}

/// The path of `fence.json` in a data directory.
pub fn fence_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FENCE_FILE)
}

/// Reads the persisted fence; `Ok(None)` when the primary is not fenced.
pub fn read_fence(disk: &dyn Disk, data_dir: &Path) -> Result<Option<Fence>, FenceFileError> {
    let path = fence_path(data_dir);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let file = path.display().to_string();
    let fence: Fence =
        read_checksummed(disk, &path).map_err(|e: ChecksummedFileError| FenceFileError { file: file.clone(), code: e.code(), detail: e.to_string() })?;
    if fence.format_version != FENCE_FORMAT {
        return Err(FenceFileError { file, code: "FENCE_VERSION", detail: format!("unsupported format_version {}", fence.format_version) });
    }
    Ok(Some(fence))
}

/// Removes the persisted fence (the operator's `--lift-fence`), durably.
pub fn remove_fence(disk: &dyn Disk, data_dir: &Path) -> std::io::Result<()> {
    let path = fence_path(data_dir);
    if disk.exists(&path) {
        disk.remove_file(&path)?;
        disk.sync_dir(data_dir)?;
    }
    Ok(())
}

/// The primary's fence state (see the module docs).
pub struct FenceLatch {
    disk: Arc<dyn Disk>,
    data_dir: PathBuf,
    current: Mutex<Option<Fence>>,
    proofs: AtomicU64,
}

impl FenceLatch {
    /// A latch over `data_dir`, starting with the fence read at startup.
    pub fn new(disk: Arc<dyn Disk>, data_dir: PathBuf, persisted: Option<Fence>) -> Self {
        FenceLatch { disk, data_dir, current: Mutex::new(persisted), proofs: AtomicU64::new(0) }
    }

    /// The fence in force, if any.
    pub fn current(&self) -> Option<Fence> {
        self.current.lock().clone()
    }

    /// Handshakes that proved a loss since this process started.
    pub fn proofs(&self) -> u64 {
        self.proofs.load(Ordering::Relaxed)
    }

    /// Fences the primary: in memory at once (every write is refused from
    /// now on), then durably. The first fence is kept; a later proof only
    /// counts.
    pub fn trip(&self, fence: Fence) {
        self.proofs.fetch_add(1, Ordering::Relaxed);
        let mut current = self.current.lock();
        if current.is_some() {
            tracing::warn!(replica_id = %fence.replica.replica_id, code = %fence.code, "another replica proves lost history; the primary stays fenced (REPL-11)");
            return;
        }
        tracing::error!(
            replica_id = %fence.replica.replica_id,
            code = %fence.code,
            replica_end_lsn = fence.replica.resume.end_lsn,
            replica_commit_id = fence.replica.resume.commit_id,
            primary_durable_lsn = fence.primary.durable_lsn,
            primary_commit_id = fence.primary.commit_id,
            "PRIMARY FENCED: a replica proves this primary lost or rewrote acknowledged history; every write is refused until `aerodb primary --lift-fence` (REPL-11, F-P5)"
        );
        *current = Some(fence.clone());
        drop(current);
        if let Err(e) = write_checksummed(&*self.disk, &fence_path(&self.data_dir), &fence) {
            tracing::error!(error = %e, "cannot persist the fence; it holds until this process exits (REPL-11)");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::handshake::{RefusalCode, PROTOCOL_VERSION};
    use crate::ids::{ReplicaId, ReplicaName};

    const C1: &str = "0123456789abcdef0123456789abcdef";
    const C2: &str = "fedcba9876543210fedcba9876543210";

    fn cid(c: &str) -> ClusterId {
        ClusterId::parse(c).unwrap()
    }
    fn hello(cluster: Option<&str>) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: cluster.map(cid),
            replica_id: ReplicaId::parse("r1").unwrap(),
            name: Some(ReplicaName::parse("east").unwrap()),
            request: HelloRequest::Resume { end_lsn: 900, commit_id: 9, fingerprint: Fingerprint(99) },
        }
    }
    fn refuse(code: RefusalCode) -> Refuse {
        let refusal = match code {
            RefusalCode::REPLICA_AHEAD => Refusal::ReplicaAhead { primary_durable_lsn: 500, primary_commit_id: 5 },
            RefusalCode::DIVERGED => Refusal::Diverged {
                primary_durable_lsn: 500,
                primary_commit_id: 5,
                primary_record_end_lsn: Some(880),
                primary_record_fingerprint: Some(Fingerprint(7)),
            },
            RefusalCode::WAL_UNAVAILABLE => Refusal::WalUnavailable {
                oldest_retained_lsn: 100,
                oldest_retained_commit_id: 1,
                primary_durable_lsn: 200,
                primary_commit_id: 2,
                wal_keep_bytes: Some(50),
            },
            RefusalCode::CLUSTER_MISMATCH => Refusal::ClusterMismatch { primary_cluster_id: cid(C2) },
            RefusalCode::PROTOCOL_VERSION => Refusal::ProtocolVersion { primary_protocol_version: 9 },
        };
        Refuse { refusal, detail: "d".into() }
    }

    /// REPL-11: REPLICA_AHEAD or DIVERGED from a replica of the same
    /// cluster fences; any other outcome, another cluster, or a snapshot
    /// request does not.
    #[test]
    fn repl_11_only_proof_of_lost_history_from_the_cluster_fences() {
        let ahead = fence_for(&cid(C1), PeerAuth::NotRequired, &hello(Some(C1)), &refuse(RefusalCode::REPLICA_AHEAD)).unwrap();
        assert_eq!((ahead.code.as_str(), ahead.rule_id.as_str(), ahead.failure.as_str()), ("REPLICA_AHEAD", "REPL-11", "F-P5"));
        assert_eq!(ahead.replica.resume, ResumePoint { end_lsn: 900, commit_id: 9, fingerprint: Fingerprint(99) });
        assert_eq!(ahead.replica.name.as_deref(), Some("east"));
        assert_eq!((ahead.primary.durable_lsn, ahead.primary.commit_id, ahead.primary.record_end_lsn), (500, 5, None));
        let diverged = fence_for(&cid(C1), PeerAuth::NotRequired, &hello(Some(C1)), &refuse(RefusalCode::DIVERGED)).unwrap();
        assert_eq!((diverged.primary.record_end_lsn, diverged.primary.record_fingerprint), (Some(880), Some(Fingerprint(7))));
        for code in [RefusalCode::WAL_UNAVAILABLE, RefusalCode::CLUSTER_MISMATCH, RefusalCode::PROTOCOL_VERSION] {
            assert!(fence_for(&cid(C1), PeerAuth::NotRequired, &hello(Some(C1)), &refuse(code)).is_none(), "{code:?}");
        }
        assert!(fence_for(&cid(C1), PeerAuth::NotRequired, &hello(Some(C2)), &refuse(RefusalCode::DIVERGED)).is_none());
        assert!(fence_for(&cid(C1), PeerAuth::NotRequired, &hello(None), &refuse(RefusalCode::REPLICA_AHEAD)).is_none());
        let mut snap = hello(Some(C1));
        snap.request = HelloRequest::Snapshot;
        assert!(fence_for(&cid(C1), PeerAuth::NotRequired, &snap, &refuse(RefusalCode::DIVERGED)).is_none());
    }

    /// REPL-11: when a token is configured, a peer that did not
    /// authenticate never fences, even with a proof that would; an
    /// authenticated peer of the cluster does.
    #[test]
    fn repl_11_unauthenticated_peer_never_fences() {
        for code in [RefusalCode::REPLICA_AHEAD, RefusalCode::DIVERGED] {
            assert!(fence_for(&cid(C1), PeerAuth::Unauthenticated, &hello(Some(C1)), &refuse(code)).is_none(), "{code:?}");
            assert!(fence_for(&cid(C1), PeerAuth::Authenticated, &hello(Some(C1)), &refuse(code)).is_some(), "{code:?}");
            assert!(fence_for(&cid(C1), PeerAuth::Authenticated, &hello(Some(C2)), &refuse(code)).is_none(), "{code:?}");
        }
    }

    /// REPL-11, F-P5: a tripped latch refuses at once, persists the fence
    /// (checksummed), keeps the first proof, and only removing it lifts it.
    #[test]
    fn repl_11_fence_persists_keeps_the_first_proof_and_is_lifted_only_by_removal() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = aerodb_wal::disk::OsDisk::shared();
        let latch = FenceLatch::new(disk.clone(), tmp.path().to_path_buf(), None);
        assert!(latch.current().is_none());
        latch.trip(fence_for(&cid(C1), PeerAuth::NotRequired, &hello(Some(C1)), &refuse(RefusalCode::REPLICA_AHEAD)).unwrap());
        latch.trip(fence_for(&cid(C1), PeerAuth::NotRequired, &hello(Some(C1)), &refuse(RefusalCode::DIVERGED)).unwrap());
        assert_eq!(latch.proofs(), 2);
        let fence = latch.current().unwrap();
        assert_eq!(fence.code, "REPLICA_AHEAD", "the first proof is kept");
        assert_eq!(read_fence(&*disk, tmp.path()).ok().flatten(), Some(fence.clone()));
        let restarted = FenceLatch::new(disk.clone(), tmp.path().to_path_buf(), read_fence(&*disk, tmp.path()).ok().flatten());
        assert_eq!(restarted.current(), Some(fence));
        remove_fence(&*disk, tmp.path()).unwrap();
        assert!(read_fence(&*disk, tmp.path()).ok().flatten().is_none());
        std::fs::write(fence_path(tmp.path()), b"{\"crc32c\":1,\"body\":{}}\n").unwrap();
        assert_eq!(read_fence(&*disk, tmp.path()).map(|_| ()).map_err(|e| e.code), Err("META_CHECKSUM_MISMATCH"));
    }
}
