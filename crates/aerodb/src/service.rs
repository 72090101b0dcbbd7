//! What the client API needs from a node, independent of its role: write a
//! write set, and open a read view (through the replica's gate on replicas).

use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::{ClientOp, PrimaryEngine, ReadView, Store, ViewError};
use aerodb_wal::CommitId;
use axum::http::StatusCode;
use serde_json::json;

use crate::api_error::ApiError;

/// Longest a read may wait for `min_commit` (bounded; waiting never
/// changes what is admitted).
pub const MAX_WAIT_MS: u64 = 30_000;

/// A read request's view parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadRequest {
    /// Explicit read view R (`at`).
    pub at: Option<CommitId>,
    /// CommitId the client must see (`min_commit`).
    pub min_commit: Option<CommitId>,
    /// How long to wait for `min_commit`, in milliseconds.
    pub wait_ms: u64,
}

/// A node's document service.
pub trait DocService: Send + Sync + 'static {
    /// Commits a write set; blocks until durable. Returns the CommitId.
    fn write(&self, ops: Vec<ClientOp>) -> Result<CommitId, ApiError>;
    /// Opens a read view for the request (may block up to `wait_ms`).
    fn open_read(&self, req: ReadRequest) -> Result<ReadView, ApiError>;
}

/// Answers the refusal of a write while the primary is fenced (REPL-11),
/// or `None` when writes are allowed.
pub type FenceCheck = Arc<dyn Fn() -> Option<ApiError> + Send + Sync>;

/// The primary (or standalone) node's service.
pub struct PrimaryService {
    engine: Arc<PrimaryEngine>,
    fence: Option<FenceCheck>,
}

impl PrimaryService {
    /// Wraps an engine.
    pub fn new(engine: Arc<PrimaryEngine>) -> Self {
        PrimaryService { engine, fence: None }
    }

    /// Refuses every write while `fence` answers a refusal (REPL-11).
    pub fn with_fence(mut self, fence: Option<FenceCheck>) -> Self {
        self.fence = fence;
        self
    }
}

impl DocService for PrimaryService {
    fn write(&self, ops: Vec<ClientOp>) -> Result<CommitId, ApiError> {
        // REPL-11: a fenced primary never builds new commits on top of lost history.
        if let Some(refusal) = self.fence.as_ref().and_then(|check| check()) {
            return Err(refusal);
        }
        let ticket = self.engine.submit(ops)?;
        match ticket.wait() {
            Ok(receipt) => Ok(receipt.position.commit_id),
            Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), Some("CORE-1"), e.to_string(), json!({}))),
        }
    }

    fn open_read(&self, req: ReadRequest) -> Result<ReadView, ApiError> {
        open_view_at(self.engine.store(), req)
    }
}

/// Opens a view on `store` honouring `at`, `min_commit` and `wait_ms`
/// (primary semantics: any R <= C and >= the history horizon).
pub fn open_view_at(store: &Arc<Store>, req: ReadRequest) -> Result<ReadView, ApiError> {
    if let Some(n) = req.min_commit {
        if store.applied().commit_id < n && req.wait_ms > 0 {
            store.wait_for_commit(n, Duration::from_millis(req.wait_ms.min(MAX_WAIT_MS)));
        }
        let applied = store.applied().commit_id;
        if applied < n {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "READ_REFUSED",
                Some("RS-3"),
                format!("min_commit {n} is above the applied CommitId {applied}"),
                json!({"min_commit": n, "commit_id": applied}),
            ));
        }
    }
    let at = if req.min_commit.is_some() && req.at.is_none() { None } else { req.at };
    store.read_view(at).map_err(|e| view_refusal(&e))
}

/// The refusal for a view that cannot be opened.
pub fn view_refusal(e: &ViewError) -> ApiError {
    let (rule, evidence) = match e {
        ViewError::BeyondApplied { requested, applied } => ("RS-3", json!({"read_upper_bound": requested, "commit_id": applied})),
        ViewError::BelowHorizon { requested, horizon } => ("RS-4", json!({"read_upper_bound": requested, "history_horizon": horizon})),
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "READ_REFUSED", Some(rule), e.to_string(), evidence)
}
