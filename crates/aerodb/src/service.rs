//! What the client API needs from a node, independent of its role: whether
//! it accepts writes at all (answered before a request is read further,
//! REPL-1), queueing a write set for group commit (the acknowledgement is
//! awaited, never a parked thread), and opening a read view now (through
//! the replica's gate on replicas). Waiting for `min_commit` happens before
//! `open_read`, in the HTTP layer ([`crate::waiting`]), and never changes
//! what `open_read` admits.

use std::sync::Arc;

use aerodb_mvcc::{ClientOp, PrimaryEngine, ReadView, Store, ViewError};
use aerodb_wal::group::CommitTicket;
use aerodb_wal::CommitId;
use axum::http::StatusCode;
use serde_json::json;

use crate::api_error::ApiError;

pub use crate::request::ReadRequest;

/// A node's document service.
pub trait DocService: Send + Sync + 'static {
    /// Whether this node accepts writes now. Checked first, before the
    /// request's path or body is read (a replica answers 403
    /// `WRITE_REJECTED`, REPL-1, whatever the request holds).
    fn check_writable(&self) -> Result<(), ApiError>;
    /// Validates a write set and queues it for group commit; the ticket
    /// resolves once the record is fsynced and applied (CORE-1).
    fn submit(&self, ops: Vec<ClientOp>) -> Result<CommitTicket, ApiError>;
    /// Opens a read view for the request now (never waits).
    fn open_read(&self, req: ReadRequest) -> Result<ReadView, ApiError>;
}

/// Awaits a commit's acknowledgement: the CommitId once durable, or the
/// error that stopped it.
pub async fn acknowledged(ticket: CommitTicket) -> Result<CommitId, ApiError> {
    match ticket.await {
        Ok(receipt) => Ok(receipt.position.commit_id),
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), Some("CORE-1"), e.to_string(), json!({}))),
    }
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
    fn check_writable(&self) -> Result<(), ApiError> {
        // REPL-11: a fenced primary never builds new commits on top of lost history.
        match self.fence.as_ref().and_then(|check| check()) {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        }
    }

    fn submit(&self, ops: Vec<ClientOp>) -> Result<CommitTicket, ApiError> {
        Ok(self.engine.submit(ops)?)
    }

    fn open_read(&self, req: ReadRequest) -> Result<ReadView, ApiError> {
        open_view_at(self.engine.store(), req)
    }
}

/// Opens a view on `store` honouring `at` and `min_commit` (primary
/// semantics: any R <= C and >= the history horizon; `min_commit` above C
/// is refused under RS-3 with both numbers).
pub fn open_view_at(store: &Arc<Store>, req: ReadRequest) -> Result<ReadView, ApiError> {
    if let Some(n) = req.min_commit {
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
    store.read_view(req.at).map_err(|e| view_refusal(&e))
}

/// The refusal for a view that cannot be opened.
pub fn view_refusal(e: &ViewError) -> ApiError {
    let (rule, evidence) = match e {
        ViewError::BeyondApplied { requested, applied } => ("RS-3", json!({"read_upper_bound": requested, "commit_id": applied})),
        ViewError::BelowHorizon { requested, horizon } => ("RS-4", json!({"read_upper_bound": requested, "history_horizon": horizon})),
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "READ_REFUSED", Some(rule), e.to_string(), evidence)
}
