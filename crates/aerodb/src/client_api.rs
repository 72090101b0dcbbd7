//! The client HTTP API (INTERFACE.md "Client API"): documents by key,
//! atomic write sets, point and range reads at a read view.
//!
//! Every handler runs on the async runtime without a blocking-pool hop:
//! writes await their group-commit acknowledgement, reads are in-memory,
//! and waiting reads await the applied CommitId ([`crate::waiting`]).
//! Writes check the node's role first (REPL-1), before the path or body is
//! read; bodies are bounded before they are read ([`crate::http::body`]);
//! documents are canonicalised one at a time without a value tree.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::input::validate_name;
use aerodb_mvcc::{ClientOp, WriteLimits};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::json;

use crate::api_error::ApiError;
use crate::http::body::{read_body, BodyBudget, BodyReservation, BodyRules};
use crate::http::refusal::LimitRefusal;
use crate::http::shutdown::Shutdown;
use crate::http::stats::SurfaceStats;
use crate::request::{canonical_doc, parse_commit, read_request, scan_request, ReadRequest};
use crate::service::{acknowledged, DocService};
use crate::waiting::ReadWaiters;

/// A PUT body may exceed the document limit by this much (whitespace the
/// canonical form drops); above it: 413 before anything is read.
pub const PUT_BODY_SLACK: usize = 64 * 1024;
/// A `/v1/commit` body may exceed the write-set limit by this much (the
/// JSON around the documents); above it: 413 before anything is read.
pub const COMMIT_BODY_OVERHEAD: usize = 64 * 1024;

/// Largest request body the client API accepts under `limits`.
pub fn largest_body(limits: &WriteLimits) -> usize {
    (limits.max_write_set_bytes + COMMIT_BODY_OVERHEAD).max(limits.max_doc_bytes + PUT_BODY_SLACK)
}

/// Everything the client API's handlers share.
pub struct ClientApi {
    /// The node's document service.
    pub service: Arc<dyn DocService>,
    /// Write-set limits (document size, op count, write-set size).
    pub limits: WriteLimits,
    /// Time a request body has to arrive.
    pub body_timeout: Duration,
    /// Node-wide budget of in-flight body bytes.
    pub budget: Arc<BodyBudget>,
    /// Waiting reads.
    pub waiters: Arc<ReadWaiters>,
    /// The client surface's counters (refusals by code).
    pub stats: Arc<SurfaceStats>,
    /// The node's shutdown signal (waiting reads end with `SHUTTING_DOWN`).
    pub shutdown: Shutdown,
}

impl ClientApi {
    fn refused(&self, r: LimitRefusal) -> ApiError {
        self.stats.reject(&r);
        r.into()
    }

    async fn body(&self, body: Body, max_bytes: usize) -> Result<(Bytes, BodyReservation), ApiError> {
        read_body(body, BodyRules { max_bytes, timeout: self.body_timeout }, &self.budget).await.map_err(|r| self.refused(r))
    }

    /// Waits for `min_commit` when asked to; the read is judged afterwards.
    async fn wait(&self, req: ReadRequest) -> Result<(), ApiError> {
        match req.min_commit {
            Some(n) if req.wait_ms > 0 => self.waiters.wait_for(n, Duration::from_millis(req.wait_ms), &self.shutdown).await.map_err(|r| self.refused(r)),
            _ => Ok(()),
        }
    }

    async fn commit(&self, ops: Vec<ClientOp>) -> Result<Response, ApiError> {
        let commit_id = acknowledged(self.service.submit(ops)?).await?;
        Ok(json_response(StatusCode::OK, format!("{{\"commit_id\":{commit_id}}}")))
    }
}

type Api = State<Arc<ClientApi>>;

/// Builds the client API router.
pub fn router(api: Arc<ClientApi>) -> Router {
    Router::new()
        .route("/v1/docs/{collection}/{key}", get(get_doc).put(put_doc).delete(delete_doc))
        .route("/v1/docs/{collection}", get(scan_docs))
        .route("/v1/commit", post(commit))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(api)
}

/// An unknown path on the client API: 404 with the endpoints it serves
/// and where the DX endpoints are (the usual mistake is asking the client
/// port for `/v1/status`, `/v1/replication` or `/metrics`).
async fn not_found(uri: axum::http::Uri) -> ApiError {
    let path = uri.path().chars().take(200).collect::<String>();
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NO_SUCH_ENDPOINT",
        None,
        "no such endpoint on the client API (documents: /v1/docs/{collection}[/{key}], /v1/commit); \
         /v1/status, /v1/replication, /v1/explain/... and /metrics are on the DX port (--dx-listen, default 7702)",
        json!({"path": path, "endpoints": ["/v1/docs/{collection}/{key}", "/v1/docs/{collection}", "/v1/commit"], "dx_port_hint": "--dx-listen (default 127.0.0.1:7702; a replica's default is 7712)"}),
    )
}

/// A known path with a method it does not serve: 405 with the documented
/// error body (axum's default 405 has an empty body); axum keeps the
/// `Allow` header.
async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", None, "method not allowed on this endpoint", json!({}))
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn put_doc(State(api): Api, path: Result<Path<(String, String)>, PathRejection>, body: Body) -> Response {
    respond(
        async {
            api.service.check_writable()?;
            let Path((collection, key)) = path.map_err(path_error)?;
            // Bad names are refused before the body is read.
            validate_name("collection", &collection)?;
            validate_name("key", &key)?;
            let (bytes, _reservation) = api.body(body, api.limits.max_doc_bytes + PUT_BODY_SLACK).await?;
            let doc = canonical_doc(&bytes, api.limits.max_doc_bytes)?;
            drop(bytes);
            api.commit(vec![ClientOp::Put { collection, key, doc }]).await
        }
        .await,
    )
}

async fn delete_doc(State(api): Api, path: Result<Path<(String, String)>, PathRejection>) -> Response {
    respond(
        async {
            api.service.check_writable()?;
            let Path((collection, key)) = path.map_err(path_error)?;
            api.commit(vec![ClientOp::Delete { collection, key }]).await
        }
        .await,
    )
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("BAD_REQUEST", format!("invalid path: {e}"))
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request("BAD_REQUEST", format!("invalid query: {e}"))
}

async fn commit(State(api): Api, body: Body) -> Response {
    respond(
        async {
            api.service.check_writable()?;
            let (bytes, _reservation) = api.body(body, api.limits.max_write_set_bytes + COMMIT_BODY_OVERHEAD).await?;
            let ops = parse_commit(&bytes, &api.limits)?;
            drop(bytes);
            api.commit(ops).await
        }
        .await,
    )
}

fn doc_text(doc: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(doc)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORED_DOC_INVALID", Some("CORE-2"), "stored document is not UTF-8", json!({})))
}

async fn get_doc(
    State(api): Api,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    respond(
        async {
            let Path((collection, key)) = path.map_err(path_error)?;
            let Query(params) = query.map_err(query_error)?;
            validate_name("collection", &collection)?;
            validate_name("key", &key)?;
            let req = read_request(&params)?;
            api.wait(req).await?;
            let view = api.service.open_read(req)?;
            let r = view.read_upper_bound();
            match view.get(collection.as_bytes(), key.as_bytes()) {
                Some(aerodb_mvcc::Visible { commit_id, doc: Some(doc) }) => {
                    // The stored bytes are canonical JSON; splice them without re-parsing.
                    let text = doc_text(&doc)?;
                    let mut body = String::with_capacity(text.len() + 64);
                    let _ = write!(body, "{{\"read_view\":{r},\"commit_id\":{commit_id},\"doc\":{text}}}");
                    Ok(json_response(StatusCode::OK, body))
                }
                visible => {
                    let evidence = match visible {
                        Some(v) => json!({"collection": collection, "key": key, "tombstone_commit_id": v.commit_id}),
                        None => json!({"collection": collection, "key": key}),
                    };
                    let err = ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", Some("MVCC-1"), format!("no visible version at read view {r}"), evidence);
                    #[derive(serde::Serialize)]
                    struct NotFound<'a> {
                        read_view: u64,
                        error: crate::api_error::ErrorObject<'a>,
                    }
                    Ok((StatusCode::NOT_FOUND, axum::Json(NotFound { read_view: r, error: err.error_object() })).into_response())
                }
            }
        }
        .await,
    )
}

async fn scan_docs(State(api): Api, path: Result<Path<String>, PathRejection>, query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    respond(
        async {
            let Path(collection) = path.map_err(path_error)?;
            let Query(params) = query.map_err(query_error)?;
            validate_name("collection", &collection)?;
            let scan = scan_request(&params)?;
            api.wait(scan.read).await?;
            let view = api.service.open_read(scan.read)?;
            let page = view.scan(collection.as_bytes(), scan.start.as_deref().map(str::as_bytes), scan.end.as_deref().map(str::as_bytes), scan.limit);
            let size: usize = page.items.iter().map(|(k, _, d)| k.len() + d.len() + 48).sum();
            let mut body = String::with_capacity(size + 64);
            let _ = write!(body, "{{\"read_view\":{},\"items\":[", view.read_upper_bound());
            for (i, (key, commit_id, doc)) in page.items.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let key = serde_json::to_string(&String::from_utf8_lossy(key)).unwrap_or_default();
                let _ = write!(body, "{{\"key\":{key},\"commit_id\":{commit_id},\"doc\":{}}}", doc_text(doc)?);
            }
            let next = match &page.next {
                Some(k) => serde_json::to_string(&String::from_utf8_lossy(k)).unwrap_or_default(),
                None => "null".into(),
            };
            let _ = write!(body, "],\"next\":{next}}}");
            Ok(json_response(StatusCode::OK, body))
        }
        .await,
    )
}
