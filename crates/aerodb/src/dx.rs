//! The DX HTTP server (`--dx-listen`): read-only; GET only, every other
//! method answers 405. Views are rendered by `aerodb-repl-explain`.

use std::sync::Arc;

use aerodb_mvcc::PrimaryEngine;
use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_explain::views::{envelope, replica_replication};
use aerodb_repl_net::server::ReplicaRegistry;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::api_error::ApiError;

/// What a primary's DX API reads.
#[derive(Clone)]
pub struct PrimaryDx {
    /// Role name (`primary` or `standalone`).
    pub role: &'static str,
    /// Engine.
    pub engine: Arc<PrimaryEngine>,
    /// Cluster id.
    pub cluster_id: String,
    /// Connected replicas (None on standalone).
    pub replicas: Option<Arc<ReplicaRegistry>>,
}

async fn fallback(method: Method) -> Response {
    if method != Method::GET {
        return ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", None, "the DX API is read-only: GET only", json!({"method": method.as_str()})).into_response();
    }
    ApiError::new(StatusCode::NOT_FOUND, "NO_SUCH_ENDPOINT", None, "no such DX endpoint", json!({})).into_response()
}

async fn replica_view(State(handle): State<Arc<ReplicaHandle>>) -> Response {
    let observed = handle.shared.observe();
    let store = handle.store();
    let applied = store.as_ref().map(|s| s.applied());
    let horizon = store.as_ref().map_or(0, |s| s.history_horizon());
    let (data, notes) = replica_replication(&observed, applied.as_ref(), horizon);
    Json(envelope(applied.map(|a| a.commit_id), data, notes)).into_response()
}

async fn primary_view(State(dx): State<PrimaryDx>) -> Response {
    let applied = dx.engine.store().applied();
    let durable = dx.engine.durable().current();
    let replicas: Vec<serde_json::Value> = dx
        .replicas
        .as_ref()
        .map(|r| r.list())
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let lag = r.reported.map(|p| json!({"commits": applied.commit_id.saturating_sub(p.applied_commit_id), "bytes": durable.lsn.saturating_sub(p.applied_lsn)}));
            json!({"replica_id": r.replica_id, "peer": r.peer, "session": r.session, "sent_lsn": r.sent_lsn, "reported": r.reported, "lag": lag})
        })
        .collect();
    let data = json!({
        "role": dx.role,
        "node_state": "PrimaryActive",
        "commit_id": applied.commit_id,
        "durable_lsn": durable.lsn,
        "state_digest": applied.state_digest.to_string(),
        "cluster_id": dx.cluster_id,
        "replicas": replicas,
        "wal_shipped_bytes": dx.replicas.as_ref().map(|r| r.shipped_bytes()),
    });
    Json(envelope(Some(applied.commit_id), data, Vec::new())).into_response()
}

/// Serves a replica's DX API.
pub async fn serve_replica(listener: TcpListener, handle: Arc<ReplicaHandle>) {
    let app = Router::new().route("/v1/replication", get(replica_view)).fallback(fallback).with_state(handle);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "DX server failed");
    }
}

/// Serves a primary's (or standalone's) DX API.
pub async fn serve_primary(listener: TcpListener, dx: PrimaryDx) {
    let app = Router::new().route("/v1/replication", get(primary_view)).fallback(fallback).with_state(dx);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "DX server failed");
    }
}
