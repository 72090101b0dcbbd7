//! Typed answers of the read-only DX API (INTERFACE.md "DX API",
//! REPLICATION.md §10).
//!
//! Every JSON answer is an [`Envelope`]. `/v1/replication` and the
//! explanations are typed ([`ReplicationView`], [`Explanation`]); fields the
//! node adds later are ignored, and fields it may omit or leave `null` are
//! `Option`s. The other views (`status`, `wal`, `mvcc`, `snapshots`, `scrub`)
//! are still growing and come as `serde_json::Value` inside the envelope.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `observed_at` of an envelope: which state the answer describes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedAt {
    /// `live` (the only snapshot id today).
    pub snapshot: String,
    /// The CommitId the answer was computed at (`null` before a replica
    /// holds any state).
    #[serde(default)]
    pub commit_id: Option<u64>,
}

/// The envelope every DX JSON answer uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// `v1`.
    pub api_version: String,
    /// Which state the answer describes.
    pub observed_at: ObservedAt,
    /// The view, explanation or error.
    pub data: T,
    /// Notes about incomplete or last-known parts (F-O1).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Lag in commits, bytes and seconds (`null` when unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lag {
    /// Commits behind.
    #[serde(default)]
    pub commits: Option<u64>,
    /// WAL bytes behind.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Age of the oldest commit not applied yet, on the primary's clock
    /// (observability only).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Whether the numbers are live or the last known (`null` when nothing is known).
    #[serde(default)]
    pub as_of: Option<LagAsOf>,
}

/// Whether lag figures are live or the last known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagAsOf {
    /// From a connection streaming now.
    Live,
    /// The last numbers heard (not streaming now).
    LastKnown,
}

/// When a primary last heard from a replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LastSeen {
    /// C_primary at that moment.
    #[serde(default)]
    pub commit_id: Option<u64>,
    /// Seconds ago (0 while connected).
    #[serde(default)]
    pub seconds_ago: Option<f64>,
}

/// How much WAL the primary may still write before a replica is cut off (RES-2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionForecast {
    /// `reserved`, `beyond_cap`, `lost` or `unknown`.
    #[serde(default)]
    pub state: String,
    /// LSN the replica needs the WAL from.
    #[serde(default)]
    pub needed_lsn: Option<u64>,
    /// CommitId before it.
    #[serde(default)]
    pub needed_commit_id: Option<u64>,
    /// WAL bytes left before it falls behind `--wal-keep-bytes`.
    #[serde(default)]
    pub bytes_remaining: Option<u64>,
    /// The same in commits (an estimate).
    #[serde(default)]
    pub commits_remaining: Option<u64>,
    /// `--wal-keep-bytes`.
    #[serde(default)]
    pub wal_keep_bytes: Option<u64>,
}

/// Positions a replica reported to its primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedPositions {
    /// Received (durable) LSN.
    pub received_lsn: u64,
    /// Validated LSN.
    pub validated_lsn: u64,
    /// Applied LSN.
    pub applied_lsn: u64,
    /// Applied CommitId.
    pub applied_commit_id: u64,
}

/// One replica as its primary sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaEntry {
    /// The replica's id.
    pub replica_id: String,
    /// Peer address.
    #[serde(default)]
    pub peer: Option<String>,
    /// Session kind (`streaming`, `snapshot`, ...).
    #[serde(default)]
    pub session: Option<String>,
    /// Last LSN sent.
    #[serde(default)]
    pub sent_lsn: Option<u64>,
    /// Last reported positions (`null` before the first report).
    #[serde(default)]
    pub reported: Option<ReportedPositions>,
    /// Lag (`null` before the first report).
    #[serde(default)]
    pub lag: Option<Lag>,
    /// Its `--name` (its id when it gave none).
    #[serde(default)]
    pub name: Option<String>,
    /// The address it last connected from.
    #[serde(default)]
    pub address: Option<String>,
    /// `streaming`, `snapshot` or `disconnected`.
    #[serde(default)]
    pub state: Option<String>,
    /// Handshakes accepted from it, ever.
    #[serde(default)]
    pub connections: Option<u64>,
    /// When the primary last heard from it.
    #[serde(default)]
    pub last_seen: Option<LastSeen>,
    /// How its last connection ended.
    #[serde(default)]
    pub last_disconnect_reason: Option<String>,
    /// The retention forecast (RES-2).
    #[serde(default)]
    pub retention: Option<RetentionForecast>,
}

/// `/v1/replication` on a primary or standalone node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrimaryReplication {
    /// Node lifecycle state.
    #[serde(default)]
    pub node_state: Option<String>,
    /// CommitId high-water mark (applied).
    pub commit_id: u64,
    /// Durable LSN.
    pub durable_lsn: u64,
    /// Cluster id.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// State digest at `commit_id`.
    #[serde(default)]
    pub state_digest: Option<String>,
    /// WAL bytes shipped to replicas in total.
    #[serde(default)]
    pub wal_shipped_bytes: Option<u64>,
    /// Replicas (absent on a standalone node).
    #[serde(default)]
    pub replicas: Vec<ReplicaEntry>,
}

/// `snapshot_bootstrap` of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapView {
    /// `not_started`, `in_progress` or `complete`.
    pub state: String,
    /// `snapshot` or `wal`, when known.
    #[serde(default)]
    pub method: Option<String>,
    /// Boundary CommitId, when known.
    #[serde(default)]
    pub boundary_commit_id: Option<u64>,
    /// Boundary LSN, when known.
    #[serde(default)]
    pub boundary_lsn: Option<u64>,
    /// While a snapshot transfer is in progress or interrupted:
    /// `requesting`, `transferring`, `installing` or `interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Snapshot bytes received so far (transfer in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    /// Snapshot bytes the manifest promises (transfer in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Transfer rate in bytes per second (transfer in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bytes_per_s: Option<u64>,
    /// Estimated seconds until every byte arrived (transfer in progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<u64>,
    /// Bytes held when the current connection resumed the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    /// Times the transfer was resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumes: Option<u64>,
}

/// Why a replica does not advance or refuses reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingReason {
    /// Stable code.
    pub code: String,
    /// Rule.
    #[serde(default)]
    pub rule_id: Option<String>,
    /// Detail.
    #[serde(default)]
    pub detail: Option<String>,
    /// LSN involved.
    #[serde(default)]
    pub lsn: Option<u64>,
    /// CommitId involved.
    #[serde(default)]
    pub commit_id: Option<u64>,
}

/// A replica's connection to its primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    /// `connected`, `disconnected`, ...
    pub state: String,
    /// The primary's replication address.
    #[serde(default)]
    pub primary: Option<String>,
    /// Reconnects so far.
    #[serde(default)]
    pub reconnects: Option<u64>,
    /// Successful handshakes so far.
    #[serde(default)]
    pub handshakes: Option<u64>,
}

/// `/v1/replication` on a replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReplication {
    /// Node lifecycle state.
    #[serde(default)]
    pub node_state: Option<String>,
    /// Replica runtime state (`Streaming`, `Halted`, ...).
    pub replica_state: String,
    /// Applied CommitId C_replica.
    #[serde(default)]
    pub replica_commit_id: Option<u64>,
    /// Last CommitId reported by the primary (`null` if never).
    #[serde(default)]
    pub primary_commit_id: Option<u64>,
    /// Received LSN.
    #[serde(default)]
    pub wal_received_lsn: Option<u64>,
    /// Validated LSN.
    #[serde(default)]
    pub wal_validated_lsn: Option<u64>,
    /// Applied LSN.
    #[serde(default)]
    pub wal_applied_lsn: Option<u64>,
    /// Bootstrap progress.
    #[serde(default)]
    pub snapshot_bootstrap: Option<BootstrapView>,
    /// MVCC history horizon.
    #[serde(default)]
    pub history_horizon: Option<u64>,
    /// `safe` or `unsafe`.
    #[serde(default)]
    pub read_safety: Option<String>,
    /// Why it is blocked, if it is.
    #[serde(default)]
    pub blocking_reason: Option<BlockingReason>,
    /// Lag.
    #[serde(default)]
    pub lag: Lag,
    /// Connection to the primary.
    #[serde(default)]
    pub connection: Option<ConnectionView>,
    /// State digest at `replica_commit_id`.
    #[serde(default)]
    pub state_digest: Option<String>,
}

/// `/v1/replication`, by the node's role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ReplicationView {
    /// A primary.
    Primary(PrimaryReplication),
    /// A standalone node (replication disabled).
    Standalone(PrimaryReplication),
    /// A replica.
    Replica(Box<ReplicaReplication>),
}

/// One rule an explanation applied, in its fixed order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleApplication {
    /// Rule ID.
    pub rule_id: String,
    /// The rule's text.
    #[serde(default)]
    pub description: String,
    /// `true`, `false` or `null` (undetermined: evidence missing).
    #[serde(default)]
    pub evaluation: Option<bool>,
    /// Evidence.
    #[serde(default)]
    pub evidence: Value,
}

/// An explanation object (`/v1/explain/...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// `replication.safety`, `recovery.process`, `mvcc.read_visibility`, ...
    pub explanation_type: String,
    /// Which state it explains.
    #[serde(default)]
    pub observed_snapshot: Value,
    /// Inputs.
    #[serde(default)]
    pub inputs: Value,
    /// The rules, in order.
    #[serde(default)]
    pub rules_applied: Vec<RuleApplication>,
    /// Conclusion.
    #[serde(default)]
    pub conclusion: Value,
}

/// What `explain` explains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExplainTarget {
    /// `/v1/explain/replication`.
    Replication,
    /// `/v1/explain/recovery`.
    Recovery,
    /// `/v1/explain/read?collection&key[&at]`.
    Read {
        /// Collection.
        collection: String,
        /// Key.
        key: String,
        /// Read view.
        at: Option<u64>,
    },
}

impl ExplainTarget {
    /// The DX path (query values percent-encoded).
    pub fn path(&self) -> String {
        match self {
            ExplainTarget::Replication => "/v1/explain/replication".to_string(),
            ExplainTarget::Recovery => "/v1/explain/recovery".to_string(),
            ExplainTarget::Read { collection, key, at } => crate::path::explain_read_path(collection, key, *at),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    /// P5-I14: the replication view of either role parses into typed positions and lag.
    #[test]
    fn p5_i14_replication_views_of_both_roles_parse() {
        let replica = json!({"api_version": "v1", "observed_at": {"snapshot": "live", "commit_id": 5}, "notes": [], "data": {
            "role": "replica", "node_state": "ReplicaActive", "replica_state": "Streaming", "replica_commit_id": 5, "primary_commit_id": null,
            "wal_received_lsn": 454, "wal_validated_lsn": 454, "wal_applied_lsn": 454, "lag": {"commits": 0, "bytes": null},
            "snapshot_bootstrap": {"state": "complete", "method": "wal", "boundary_commit_id": 0, "boundary_lsn": 0},
            "blocking_reason": null, "read_safety": "safe", "history_horizon": 0, "new_field_from_a_later_node": [1],
            "connection": {"state": "connected", "primary": "127.0.0.1:1", "reconnects": 0, "handshakes": 1}}});
        let env: Envelope<ReplicationView> = serde_json::from_value(replica).unwrap();
        let ReplicationView::Replica(r) = env.data else { panic!("not a replica view") };
        assert_eq!((r.replica_commit_id, r.primary_commit_id, r.lag.commits, r.lag.bytes), (Some(5), None, Some(0), None));
        assert_eq!(r.snapshot_bootstrap.unwrap().state, "complete");
        let primary = json!({"role": "primary", "commit_id": 5, "durable_lsn": 454, "cluster_id": "c", "replicas": [
            {"replica_id": "r", "peer": "p", "session": "streaming", "sent_lsn": 454, "lag": {"commits": 1, "bytes": 9},
             "reported": {"received_lsn": 454, "validated_lsn": 454, "applied_lsn": 400, "applied_commit_id": 4}}]});
        let ReplicationView::Primary(p) = serde_json::from_value(primary).unwrap() else { panic!("not a primary view") };
        assert_eq!(p.replicas[0].lag.unwrap().bytes, Some(9));
        assert_eq!(p.replicas[0].reported.unwrap().applied_commit_id, 4);
        let standalone: ReplicationView = serde_json::from_value(json!({"role": "standalone", "commit_id": 0, "durable_lsn": 0})).unwrap();
        assert!(matches!(standalone, ReplicationView::Standalone(s) if s.replicas.is_empty()));
    }

    /// RES-2, REPL-10: a primary's registry entry reads back typed: name,
    /// state, last seen, lag with seconds and `as_of`, retention forecast.
    #[test]
    fn res_2_registry_entries_read_back_typed() {
        let e: ReplicaEntry = serde_json::from_value(json!({"replica_id": "r", "name": "east", "address": "10.0.0.7:4000", "peer": "10.0.0.7:4000",
            "state": "disconnected", "session": null, "connections": 3, "sent_lsn": null, "reported": null,
            "last_seen": {"commit_id": 9, "seconds_ago": 61.5}, "last_disconnect_reason": "PEER_CLOSED",
            "lag": {"commits": 4, "bytes": 400, "seconds": 2.5, "as_of": "last_known"},
            "retention": {"state": "beyond_cap", "needed_lsn": 100, "needed_commit_id": 1, "bytes_remaining": 0, "commits_remaining": 0, "wal_keep_bytes": 300}}))
        .unwrap();
        assert_eq!((e.name.as_deref(), e.state.as_deref(), e.connections), (Some("east"), Some("disconnected"), Some(3)));
        assert_eq!(e.lag, Some(Lag { commits: Some(4), bytes: Some(400), seconds: Some(2.5), as_of: Some(LagAsOf::LastKnown) }));
        assert_eq!(e.last_seen.and_then(|l| l.seconds_ago), Some(61.5));
        assert_eq!(e.retention.map(|r| (r.state, r.bytes_remaining)), Some(("beyond_cap".to_string(), Some(0))));
    }

    /// F-O1: an undetermined rule (`evaluation: null`) stays undetermined, never a guess.
    #[test]
    fn f_o1_explanations_keep_undetermined_rules() {
        let e: Explanation = serde_json::from_value(json!({"explanation_type": "replication.safety", "observed_snapshot": {"snapshot_id": "live", "commit_id": 1},
            "inputs": {}, "rules_applied": [{"rule_id": "RS-1", "description": "d", "evaluation": null, "evidence": {}}, {"rule_id": "RS-3", "evaluation": true}],
            "conclusion": {"admitted": false}}))
        .unwrap();
        assert_eq!(e.rules_applied.iter().map(|r| r.evaluation).collect::<Vec<_>>(), vec![None, Some(true)]);
        assert_eq!(ExplainTarget::Read { collection: "c".into(), key: "..".into(), at: Some(2) }.path(), "/v1/explain/read?collection=c&key=..&at=2");
        assert_eq!(ExplainTarget::Recovery.path(), "/v1/explain/recovery");
    }
}
