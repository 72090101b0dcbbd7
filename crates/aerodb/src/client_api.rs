//! The client HTTP API (INTERFACE.md "Client API"): documents by key,
//! atomic write sets, point and range reads at a read view.

use std::collections::HashMap;
use std::sync::Arc;

use aerodb_mvcc::input::validate_name;
use aerodb_mvcc::ClientOp;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::service::{DocService, ReadRequest, MAX_WAIT_MS};

/// Default and maximum page size of range reads.
const DEFAULT_SCAN_LIMIT: usize = 100;
const MAX_SCAN_LIMIT: usize = 1000;

type Shared = Arc<dyn DocService>;

/// Builds the client API router.
pub fn router(service: Shared, max_body_bytes: usize) -> Router {
    let limits = BodyLimit(max_body_bytes);
    Router::new()
        .route("/v1/docs/{collection}/{key}", get(get_doc).put(put_doc).delete(delete_doc))
        .route("/v1/docs/{collection}", get(scan_docs))
        .route("/v1/commit", post(commit))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state((service, limits))
}

#[derive(Clone, Copy)]
struct BodyLimit(usize);

type AppState = (Shared, BodyLimit);

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NO_SUCH_ENDPOINT", None, "no such endpoint", json!({}))
}

/// A known path with a method it does not serve: 405 with the documented
/// error body (axum's default 405 has an empty body); axum keeps the
/// `Allow` header.
async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", None, "method not allowed on this endpoint", json!({}))
}

/// Reads the body up to `limit` bytes; 413 above it.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            None,
            format!("request body exceeds {limit} bytes"),
            json!({"max_body_bytes": limit}),
        )),
        Err(e) => Err(ApiError::bad_request("BAD_REQUEST", format!("cannot read body: {e}"))),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request("BAD_JSON", format!("body is not valid JSON: {e}")))
}

/// Canonical bytes of a document: serde_json with sorted object keys, so the
/// same value always produces the same WAL bytes.
fn canonical(doc: &Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(doc).map(Bytes::from).map_err(|e| ApiError::bad_request("BAD_JSON", e.to_string()))
}

async fn run_write(service: Shared, ops: Vec<ClientOp>) -> Response {
    match tokio::task::spawn_blocking(move || service.write(ops)).await {
        Ok(Ok(commit_id)) => axum::Json(json!({"commit_id": commit_id})).into_response(),
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", None, e.to_string(), json!({})).into_response(),
    }
}

async fn put_doc(State((service, limit)): State<AppState>, path: Result<Path<(String, String)>, PathRejection>, body: Body) -> Response {
    let result = async {
        let Path((collection, key)) = path.map_err(path_error)?;
        let bytes = read_body(body, limit.0).await?;
        let doc = canonical(&parse_json(&bytes)?)?;
        Ok::<_, ApiError>(vec![ClientOp::Put { collection, key, doc }])
    }
    .await;
    match result {
        Ok(ops) => run_write(service, ops).await,
        Err(e) => e.into_response(),
    }
}

async fn delete_doc(State((service, _)): State<AppState>, path: Result<Path<(String, String)>, PathRejection>) -> Response {
    match path {
        Ok(Path((collection, key))) => run_write(service, vec![ClientOp::Delete { collection, key }]).await,
        Err(e) => path_error(e).into_response(),
    }
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad_request("BAD_REQUEST", format!("invalid path: {e}"))
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad_request("BAD_REQUEST", format!("invalid query: {e}"))
}

#[derive(Deserialize)]
struct CommitBody {
    ops: Vec<CommitOp>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum CommitOp {
    Put { collection: String, key: String, doc: Value },
    Delete { collection: String, key: String },
}

async fn commit(State((service, limit)): State<AppState>, body: Body) -> Response {
    let result = async {
        let bytes = read_body(body, limit.0).await?;
        let parsed: CommitBody = serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("BAD_REQUEST", format!("invalid commit body: {e}")))?;
        parsed
            .ops
            .into_iter()
            .map(|op| match op {
                CommitOp::Put { collection, key, doc } => Ok(ClientOp::Put { collection, key, doc: canonical(&doc)? }),
                CommitOp::Delete { collection, key } => Ok(ClientOp::Delete { collection, key }),
            })
            .collect::<Result<Vec<_>, ApiError>>()
    }
    .await;
    match result {
        Ok(ops) => run_write(service, ops).await,
        Err(e) => e.into_response(),
    }
}

fn parse_u64(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| v.parse::<u64>().map_err(|_| ApiError::bad_request("BAD_REQUEST", format!("query parameter {name} must be an unsigned integer"))))
        .transpose()
}

fn read_request(params: &HashMap<String, String>) -> Result<ReadRequest, ApiError> {
    let wait_ms = parse_u64(params, "wait_ms")?.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request("BAD_REQUEST", format!("wait_ms is limited to {MAX_WAIT_MS}")));
    }
    Ok(ReadRequest { at: parse_u64(params, "at")?, min_commit: parse_u64(params, "min_commit")?, wait_ms })
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn doc_text(doc: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(doc)
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORED_DOC_INVALID", Some("CORE-2"), "stored document is not UTF-8", json!({})))
}

async fn get_doc(
    State((service, _)): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let result = tokio::task::spawn_blocking(move || -> Result<Response, ApiError> {
        let Path((collection, key)) = path.map_err(path_error)?;
        let Query(params) = query.map_err(query_error)?;
        validate_name("collection", &collection)?;
        validate_name("key", &key)?;
        let req = read_request(&params)?;
        let view = service.open_read(req)?;
        let r = view.read_upper_bound();
        match view.get(collection.as_bytes(), key.as_bytes()) {
            Some(aerodb_mvcc::Visible { commit_id, doc: Some(doc) }) => {
                // The stored bytes are canonical JSON; splice them without re-parsing.
                let body = format!("{{\"read_view\":{r},\"commit_id\":{commit_id},\"doc\":{}}}", doc_text(&doc)?);
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
    })
    .await;
    flatten(result)
}

async fn scan_docs(
    State((service, _)): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let result = tokio::task::spawn_blocking(move || -> Result<Response, ApiError> {
        let Path(collection) = path.map_err(path_error)?;
        let Query(params) = query.map_err(query_error)?;
        validate_name("collection", &collection)?;
        let req = read_request(&params)?;
        let limit = parse_u64(&params, "limit")?.map_or(DEFAULT_SCAN_LIMIT, |l| l as usize);
        if limit == 0 || limit > MAX_SCAN_LIMIT {
            return Err(ApiError::bad_request("BAD_REQUEST", format!("limit must be 1..={MAX_SCAN_LIMIT}")));
        }
        let view = service.open_read(req)?;
        let page = view.scan(collection.as_bytes(), params.get("start").map(|s| s.as_bytes()), params.get("end").map(|s| s.as_bytes()), limit);
        let mut body = format!("{{\"read_view\":{},\"items\":[", view.read_upper_bound());
        for (i, (key, commit_id, doc)) in page.items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let key = serde_json::to_string(&String::from_utf8_lossy(key)).unwrap_or_default();
            body.push_str(&format!("{{\"key\":{key},\"commit_id\":{commit_id},\"doc\":{}}}", doc_text(doc)?));
        }
        let next = match &page.next {
            Some(k) => serde_json::to_string(&String::from_utf8_lossy(k)).unwrap_or_default(),
            None => "null".into(),
        };
        body.push_str(&format!("],\"next\":{next}}}"));
        Ok(json_response(StatusCode::OK, body))
    })
    .await;
    flatten(result)
}

fn flatten(result: Result<Result<Response, ApiError>, tokio::task::JoinError>) -> Response {
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", None, e.to_string(), json!({})).into_response(),
    }
}
