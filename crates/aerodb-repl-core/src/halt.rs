//! Why a replica halted: a stable code, the rule it enforces and evidence.
//! Persisted in the replica metadata so a halt survives restarts.

use serde::{Deserialize, Serialize};

use aerodb_wal::{CommitId, Lsn};

/// A halt (or blocking) reason with evidence. Codes are stable; operators
/// look them up in docs/operations.md.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltReason {
    /// Stable code, e.g. `CHECKSUM_MISMATCH`, `DIVERGED`, `APPLY_DIVERGED`.
    pub code: String,
    /// Rule ID enforced.
    pub rule_id: String,
    /// Human-readable detail.
    pub detail: String,
    /// LSN where it happened, when known.
    pub lsn: Option<Lsn>,
    /// CommitId involved, when known.
    pub commit_id: Option<CommitId>,
    /// Failure-matrix row this halt is an instance of (e.g. `F-V1`).
    pub failure: Option<String>,
    /// Structured evidence (both sides' values where there are two sides).
    pub evidence: serde_json::Value,
}

impl HaltReason {
    /// Builds a reason.
    pub fn new(code: &str, rule_id: &str, detail: impl Into<String>, lsn: Option<Lsn>, commit_id: Option<CommitId>, evidence: serde_json::Value) -> Self {
        HaltReason { code: code.to_string(), rule_id: rule_id.to_string(), detail: detail.into(), lsn, commit_id, failure: None, evidence }
    }

    /// Tags the failure-matrix row.
    #[must_use]
    pub fn with_failure(mut self, row: &str) -> Self {
        self.failure = Some(row.to_string());
        self
    }

    /// From a validation failure of received WAL (F-V1, F-V2, F-D1).
    pub fn from_violation(v: &aerodb_wal::ChainViolation) -> Self {
        let commit_id = match v {
            aerodb_wal::ChainViolation::CommitIdDiscontinuity { found, .. } => Some(*found),
            aerodb_wal::ChainViolation::FingerprintMismatch { commit_id, .. } => Some(*commit_id),
            _ => None,
        };
        let row = match v {
            aerodb_wal::ChainViolation::InvalidRecord { .. } => "F-V1",
            aerodb_wal::ChainViolation::FingerprintMismatch { .. } => "F-D1",
            _ => "F-V2",
        };
        HaltReason::new(v.code(), v.rule_id(), v.to_string(), Some(v.lsn()), commit_id, serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
            .with_failure(row)
    }

    /// From a handshake refusal, with both sides' evidence: the replica's
    /// request and the primary's values (F-C1, F-D1, F-D2).
    pub fn from_refusal(r: &crate::handshake::Refuse, hello: &crate::handshake::Hello) -> Self {
        let (lsn, commit_id) = match &hello.request {
            crate::handshake::HelloRequest::Resume { end_lsn, commit_id, .. } => (Some(*end_lsn), Some(*commit_id)),
            crate::handshake::HelloRequest::Snapshot => (None, None),
        };
        let evidence = serde_json::json!({"replica": {"request": hello.request, "cluster_id": hello.cluster_id}, "primary": r.evidence});
        let h = HaltReason::new(r.code.as_str(), r.code.rule_id(), r.detail.clone(), lsn, commit_id, evidence);
        match r.code.failure_row() {
            Some(row) => h.with_failure(row),
            None => h,
        }
    }

    /// A blocking reason (not a halt) for a primary that could not serve:
    /// never a verdict about the replica, which retries. A missing snapshot
    /// concerns snapshot authority (REPL-8); any other failure is the
    /// primary declining to guess (REPL-10).
    pub fn primary_cannot_serve(code: &str, detail: &str) -> Self {
        let rule = if code == "SNAPSHOT_UNAVAILABLE" { "REPL-8" } else { "REPL-10" };
        HaltReason::new(code, rule, format!("primary cannot serve: {detail}"), None, None, serde_json::json!({}))
    }

    /// From an apply failure (F-D3 digest mismatch, out-of-order apply, or
    /// a GC record whose horizon moves backwards).
    pub fn from_apply(e: &aerodb_mvcc::ApplyError, lsn: Lsn) -> Self {
        let row = match e {
            aerodb_mvcc::ApplyError::NotNext { .. } => "F-V2",
            aerodb_mvcc::ApplyError::DigestMismatch { .. } | aerodb_mvcc::ApplyError::BadHorizon { .. } => "F-D3",
        };
        HaltReason::new(e.code(), e.rule_id(), e.to_string(), Some(lsn), Some(e.commit_id()), serde_json::to_value(e).unwrap_or(serde_json::Value::Null))
            .with_failure(row)
    }
}
