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
use aerodb_mvcc::{ClientOp, InputError, WriteLimits};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::api_error::ApiError;
use crate::canonical::canonical_json;
use crate::http::body::{read_body, BodyBudget, BodyReservation, BodyRules};
use crate::http::refusal::LimitRefusal;
use crate::http::shutdown::Shutdown;
use crate::http::stats::SurfaceStats;
use crate::service::{acknowledged, DocService, ReadRequest, MAX_WAIT_MS};
use crate::waiting::ReadWaiters;

/// Default and maximum page size of range reads.
const DEFAULT_SCAN_LIMIT: usize = 100;
const MAX_SCAN_LIMIT: usize = 1000;

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

/// Canonical bytes of one document, refused above the document limit.
fn canonical_doc(text: &[u8], max_doc_bytes: usize) -> Result<Bytes, ApiError> {
    let doc = canonical_json(text).map_err(|e| ApiError::bad_request("BAD_JSON", format!("body is not valid JSON: {e}")))?;
    if doc.len() > max_doc_bytes {
        return Err(InputError::DocTooLarge { size: doc.len(), max: max_doc_bytes }.into());
    }
    Ok(Bytes::from(doc))
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

/// A `/v1/commit` body. Documents stay raw slices of the body until each is
/// canonicalised in turn.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody<'a> {
    #[serde(borrow)]
    ops: Vec<RawOp<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp<'a> {
    op: String,
    collection: String,
    key: String,
    #[serde(borrow, default)]
    doc: RawDoc<'a>,
}

/// A `doc` field: absent, or any JSON value (`null` included) kept raw.
#[derive(Default)]
struct RawDoc<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawDoc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| RawDoc(Some(raw)))
    }
}

/// Parses a `/v1/commit` body into client ops: the op count is checked
/// before any document is touched, then documents are canonicalised one at
/// a time (each refused above the document limit as soon as it is seen).
pub fn parse_commit(bytes: &[u8], limits: &WriteLimits) -> Result<Vec<ClientOp>, ApiError> {
    let bad = |detail: String| ApiError::bad_request("BAD_REQUEST", format!("invalid commit body: {detail}"));
    let parsed: CommitBody<'_> = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if parsed.ops.len() > limits.max_ops {
        return Err(InputError::TooManyOps { count: parsed.ops.len(), max: limits.max_ops }.into());
    }
    let mut ops = Vec::with_capacity(parsed.ops.len());
    for (i, op) in parsed.ops.into_iter().enumerate() {
        let RawOp { op, collection, key, doc } = op;
        ops.push(match (op.as_str(), doc.0) {
            ("put", Some(raw)) => ClientOp::Put { collection, key, doc: canonical_doc(raw.get().as_bytes(), limits.max_doc_bytes)? },
            ("put", None) => return Err(bad(format!("op {i}: put needs a doc"))),
            ("delete", None) => ClientOp::Delete { collection, key },
            ("delete", Some(_)) => return Err(bad(format!("op {i}: delete takes no doc"))),
            (other, _) => return Err(bad(format!("op {i}: unknown op {other:?}, expected put or delete"))),
        });
    }
    Ok(ops)
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
            let req = read_request(&params)?;
            let limit = parse_u64(&params, "limit")?.map_or(DEFAULT_SCAN_LIMIT, |l| usize::try_from(l).unwrap_or(usize::MAX));
            if limit == 0 || limit > MAX_SCAN_LIMIT {
                return Err(ApiError::bad_request("BAD_REQUEST", format!("limit must be 1..={MAX_SCAN_LIMIT}")));
            }
            api.wait(req).await?;
            let view = api.service.open_read(req)?;
            let page = view.scan(collection.as_bytes(), params.get("start").map(|s| s.as_bytes()), params.get("end").map(|s| s.as_bytes()), limit);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// §11 / RES-3: a commit body's ops are checked in order; `null` is a
    /// document; unknown ops, a put without a doc and a delete with one are
    /// refused; too many ops are refused before any document is parsed.
    #[test]
    fn res_3_commit_body_parses_raw_documents_one_at_a_time() {
        let limits = WriteLimits::default();
        let body = br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":{"z":1, "a" : [ 1.0 ]}},{"op":"put","collection":"c","key":"n","doc":null},{"op":"delete","collection":"c","key":"b"}]}"#;
        let ops = parse_commit(body, &limits).unwrap();
        assert_eq!(
            ops,
            vec![
                ClientOp::Put { collection: "c".into(), key: "a".into(), doc: Bytes::from_static(br#"{"a":[1.0],"z":1}"#) },
                ClientOp::Put { collection: "c".into(), key: "n".into(), doc: Bytes::from_static(b"null") },
                ClientOp::Delete { collection: "c".into(), key: "b".into() },
            ]
        );
        for bad in [
            &br#"{"ops":[{"op":"put","collection":"c","key":"k"}]}"#[..],
            br#"{"ops":[{"op":"delete","collection":"c","key":"k","doc":1}]}"#,
            br#"{"ops":[{"op":"upsert","collection":"c","key":"k","doc":1}]}"#,
            br#"{"ops":[],"more":1}"#,
        ] {
            assert_eq!(parse_commit(bad, &limits).unwrap_err().code, "BAD_REQUEST");
        }
        let small = WriteLimits { max_ops: 1, ..limits };
        let two = br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":[}, {"op":"delete","collection":"c","key":"b"}]}"#;
        assert_eq!(parse_commit(two, &small).unwrap_err().code, "BAD_REQUEST", "malformed JSON is refused as a whole");
        let two = br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":1}, {"op":"delete","collection":"c","key":"b"}]}"#;
        assert_eq!(parse_commit(two, &small).unwrap_err().code, "TOO_MANY_OPS");
        let tiny = WriteLimits { max_doc_bytes: 3, ..limits };
        assert_eq!(parse_commit(br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":"long"}]}"#, &tiny).unwrap_err().code, "DOC_TOO_LARGE");
    }
}
