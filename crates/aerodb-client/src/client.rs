//! The async clients: [`Client`] for the client API (`--listen`) and
//! [`DxClient`] for the DX API (`--dx-listen`). Both are cheap to clone
//! (clones share one keep-alive pool) and safe to use from many tasks.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dx::{Envelope, ExplainTarget, Explanation, ReplicationView};
use crate::error::{ApiError, ClientError};
use crate::node_url::NodeUrl;
use crate::path;
use crate::transport::{Answer, ClientConfig, Transport};
use crate::types::{CommitReceipt, Document, ReadOptions, ScanOptions, ScanPage, WriteSet};

/// The error bodies a node sends: `{"error":{..}}` on the client API (with
/// `read_view` on a 404 read) and `{"data":{"error":{..}}}` on the DX API.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    read_view: Option<u64>,
    #[serde(default)]
    data: Option<Box<ErrorBody>>,
}

/// The first `n` characters of a body, for protocol errors.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

/// A non-2xx answer as a typed error.
fn error_answer(a: Answer) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(&a.body) {
        Ok(ErrorBody { error: Some(error), read_view, .. }) => ClientError::Api { url: a.url, status: a.status, read_view, error: Box::new(error) },
        Ok(ErrorBody { data: Some(inner), .. }) if inner.error.is_some() => {
            let ErrorBody { error, read_view, .. } = *inner;
            match error {
                Some(error) => ClientError::Api { url: a.url, status: a.status, read_view, error: Box::new(error) },
                None => ClientError::Protocol { url: a.url, status: Some(a.status), detail: "error answer without an error object".into() },
            }
        }
        _ => ClientError::Protocol {
            url: a.url,
            status: Some(a.status),
            detail: format!("not an AeroDB error answer (is this the right port?): {}", excerpt(&a.body)),
        },
    }
}

/// A 2xx answer's JSON body as `T`; anything else as a typed error.
fn decode<T: DeserializeOwned>(a: Answer) -> Result<T, ClientError> {
    if !(200..300).contains(&a.status) {
        return Err(error_answer(a));
    }
    serde_json::from_slice(&a.body).map_err(|e| ClientError::Protocol {
        url: a.url.clone(),
        status: Some(a.status),
        detail: format!("answer does not have the expected shape ({e}): {}", excerpt(&a.body)),
    })
}

/// A DX envelope; refuses answers that are not a `v1` envelope.
fn decode_envelope<T: DeserializeOwned>(a: Answer) -> Result<Envelope<T>, ClientError> {
    let (url, status) = (a.url.clone(), a.status);
    let env: Envelope<T> = decode(a)?;
    if env.api_version != "v1" {
        return Err(ClientError::Protocol { url, status: Some(status), detail: format!("DX api_version {:?}, expected \"v1\"", env.api_version) });
    }
    Ok(env)
}

/// Extra time a read may take beyond the request timeout: its `wait_ms`.
fn wait_extra(opts: &ReadOptions) -> Duration {
    Duration::from_millis(opts.wait_ms.unwrap_or(0))
}

/// An async client of one node's client API.
///
/// Writes return a [`CommitReceipt`] only once the write is durable on the
/// primary; refusals come back as [`ClientError::Api`] with the node's code,
/// rule and evidence.
#[derive(Clone, Debug)]
pub struct Client {
    transport: Transport,
}

impl Client {
    /// A client of the node at `node` (see [`NodeUrl::parse`]) with default
    /// timeouts. Validates the URL; connects on first use.
    pub fn new(node: &str) -> Result<Client, ClientError> {
        Client::with_config(node, ClientConfig::default())
    }

    /// A client with explicit timeouts and bounds.
    pub fn with_config(node: &str, config: ClientConfig) -> Result<Client, ClientError> {
        Ok(Client::from_url(NodeUrl::parse(node)?, config))
    }

    /// A client of an already validated URL.
    pub fn from_url(node: NodeUrl, config: ClientConfig) -> Client {
        Client { transport: Transport::new(node, config) }
    }

    /// The node this client talks to.
    pub fn url(&self) -> &NodeUrl {
        self.transport.base()
    }

    /// `PUT /v1/docs/{collection}/{key}` with `doc` serialised as JSON.
    pub async fn put<T: Serialize + ?Sized>(&self, collection: &str, key: &str, doc: &T) -> Result<CommitReceipt, ClientError> {
        let body = serde_json::to_vec(doc).map_err(|e| ClientError::Protocol {
            url: self.url().join(&path::doc_path(collection, key)),
            status: None,
            detail: format!("the document cannot be serialised as JSON: {e}"),
        })?;
        self.put_json(collection, key, Bytes::from(body)).await
    }

    /// `PUT /v1/docs/{collection}/{key}` with a body that already is JSON
    /// text (sent as is; the node validates it).
    pub async fn put_json(&self, collection: &str, key: &str, json: Bytes) -> Result<CommitReceipt, ClientError> {
        decode(self.transport.send(Method::PUT, &path::doc_path(collection, key), Some(json), Duration::ZERO).await?)
    }

    /// `DELETE /v1/docs/{collection}/{key}`.
    pub async fn delete(&self, collection: &str, key: &str) -> Result<CommitReceipt, ClientError> {
        decode(self.transport.send(Method::DELETE, &path::doc_path(collection, key), None, Duration::ZERO).await?)
    }

    /// `POST /v1/commit`: one atomic write set.
    pub async fn commit(&self, write_set: &WriteSet) -> Result<CommitReceipt, ClientError> {
        let body = serde_json::to_vec(write_set).map_err(|e| ClientError::Protocol {
            url: self.url().join("/v1/commit"),
            status: None,
            detail: format!("the write set cannot be serialised: {e}"),
        })?;
        decode(self.transport.send(Method::POST, "/v1/commit", Some(Bytes::from(body)), Duration::ZERO).await?)
    }

    /// `GET /v1/docs/{collection}/{key}`: the visible version at the read
    /// view. No visible version is `Err(ClientError::Api)` with code
    /// `NOT_FOUND` and the `read_view` (see [`ClientError::is_not_found`]).
    pub async fn get(&self, collection: &str, key: &str, opts: &ReadOptions) -> Result<Document, ClientError> {
        decode(self.transport.send(Method::GET, &path::get_path(collection, key, opts), None, wait_extra(opts)).await?)
    }

    /// `GET /v1/docs/{collection}?...`: one page of a range read.
    pub async fn scan(&self, collection: &str, opts: &ScanOptions) -> Result<ScanPage, ClientError> {
        decode(self.transport.send(Method::GET, &path::scan_path(collection, opts), None, wait_extra(&opts.read)).await?)
    }
}

/// An async client of one node's read-only DX API.
#[derive(Clone, Debug)]
pub struct DxClient {
    transport: Transport,
}

impl DxClient {
    /// A client of the DX API at `dx` (see [`NodeUrl::parse`]).
    pub fn new(dx: &str) -> Result<DxClient, ClientError> {
        DxClient::with_config(dx, ClientConfig::default())
    }

    /// A client with explicit timeouts and bounds.
    pub fn with_config(dx: &str, config: ClientConfig) -> Result<DxClient, ClientError> {
        Ok(DxClient::from_url(NodeUrl::parse(dx)?, config))
    }

    /// A client of an already validated URL.
    pub fn from_url(dx: NodeUrl, config: ClientConfig) -> DxClient {
        DxClient { transport: Transport::new(dx, config) }
    }

    /// The node this client talks to.
    pub fn url(&self) -> &NodeUrl {
        self.transport.base()
    }

    /// `GET path` as an envelope of `T` (for views without a typed method).
    pub async fn envelope<T: DeserializeOwned>(&self, path: &str) -> Result<Envelope<T>, ClientError> {
        decode_envelope(self.transport.send(Method::GET, path, None, Duration::ZERO).await?)
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Envelope<Value>, ClientError> {
        self.envelope("/v1/status").await
    }

    /// `GET /v1/replication`.
    pub async fn replication(&self) -> Result<Envelope<ReplicationView>, ClientError> {
        self.envelope("/v1/replication").await
    }

    /// `GET /v1/wal`.
    pub async fn wal(&self) -> Result<Envelope<Value>, ClientError> {
        self.envelope("/v1/wal").await
    }

    /// `GET /v1/mvcc`.
    pub async fn mvcc(&self) -> Result<Envelope<Value>, ClientError> {
        self.envelope("/v1/mvcc").await
    }

    /// `GET /v1/snapshots`.
    pub async fn snapshots(&self) -> Result<Envelope<Value>, ClientError> {
        self.envelope("/v1/snapshots").await
    }

    /// `GET /v1/scrub` (CORE-6).
    pub async fn scrub(&self) -> Result<Envelope<Value>, ClientError> {
        self.envelope("/v1/scrub").await
    }

    /// `GET /v1/explain/...`.
    pub async fn explain(&self, target: &ExplainTarget) -> Result<Envelope<Explanation>, ClientError> {
        self.envelope(&target.path()).await
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let a = self.transport.send(Method::GET, "/metrics", None, Duration::ZERO).await?;
        if a.status != 200 {
            return Err(error_answer(a));
        }
        String::from_utf8(a.body.to_vec()).map_err(|_| ClientError::Protocol { url: a.url, status: Some(a.status), detail: "metrics text is not UTF-8".into() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { url: "http://h:1/p".into(), status, body: Bytes::from(body.to_string()) }
    }

    /// MVCC-1: a 404 read keeps its read view and the NOT_FOUND error object.
    #[test]
    fn mvcc_1_not_found_keeps_the_read_view_and_error() {
        let e = decode::<Document>(answer(404, r#"{"read_view":7,"error":{"code":"NOT_FOUND","rule_id":"MVCC-1","message":"m","evidence":{"key":"k"}}}"#))
            .unwrap_err();
        assert!(e.is_not_found());
        assert!(matches!(e, ClientError::Api { status: 404, read_view: Some(7), .. }));
        assert_eq!(e.rule_id(), Some("MVCC-1"));
    }

    #[test]
    fn dx_errors_inside_the_envelope_are_typed_too() {
        let e = decode_envelope::<Value>(answer(405, r#"{"api_version":"v1","observed_at":{"snapshot":"live","commit_id":1},"data":{"error":{"code":"METHOD_NOT_ALLOWED","rule_id":null,"message":"GET only","evidence":{}}},"notes":[]}"#)).unwrap_err();
        assert_eq!(e.code(), "METHOD_NOT_ALLOWED");
        assert_eq!(e.kind(), Some(crate::ErrorKind::WrongEndpoint));
    }

    #[test]
    fn answers_that_are_not_aerodb_are_protocol_errors() {
        let e = decode::<CommitReceipt>(answer(502, "<html>bad gateway</html>")).unwrap_err();
        assert!(
            matches!(&e, ClientError::Protocol { status: Some(502), detail, .. } if detail.contains("right port") && detail.contains("bad gateway")),
            "{e}"
        );
        let e = decode::<CommitReceipt>(answer(200, r#"{"nope":1}"#)).unwrap_err();
        assert!(matches!(&e, ClientError::Protocol { status: Some(200), .. }), "{e}");
        let e = decode_envelope::<Value>(answer(200, r#"{"api_version":"v2","observed_at":{"snapshot":"live"},"data":{}}"#)).unwrap_err();
        assert!(e.to_string().contains("v2"), "{e}");
        assert_eq!(decode::<CommitReceipt>(answer(200, r#"{"commit_id":4}"#)).unwrap().commit_id, 4);
        assert_eq!(excerpt("é".repeat(300).as_bytes()).chars().count(), 201);
    }
}
