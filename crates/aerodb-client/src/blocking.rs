//! A blocking facade for command-line programs: the same calls as the async
//! clients, each run to completion on a private single-threaded runtime
//! (no extra threads; keep-alive connections are reused between calls).
//!
//! Do not call these from inside an async runtime: such a call returns
//! [`ClientError::Runtime`] instead of blocking the runtime's thread.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::dx::{Envelope, ExplainTarget, Explanation, ReplicationView};
use crate::error::ClientError;
use crate::node_url::NodeUrl;
use crate::transport::ClientConfig;
use crate::types::{CommitReceipt, Document, ReadOptions, ScanOptions, ScanPage, WriteSet};

/// The private runtime that runs one call at a time.
#[derive(Debug)]
struct Runner {
    rt: tokio::runtime::Runtime,
}

impl Runner {
    fn new() -> Result<Runner, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ClientError::Runtime(format!("cannot create a runtime: {e}")))?;
        Ok(Runner { rt })
    }

    fn run<T>(&self, call: impl std::future::Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(ClientError::Runtime("called from inside an async runtime; use aerodb_client::Client there".into()));
        }
        self.rt.block_on(call)
    }
}

/// Blocking client of a node's client API (see [`crate::Client`]).
#[derive(Debug)]
pub struct Client {
    inner: crate::Client,
    runner: Runner,
}

impl Client {
    /// A client of the node at `node` with default timeouts.
    pub fn new(node: &str) -> Result<Client, ClientError> {
        Client::with_config(node, ClientConfig::default())
    }

    /// A client with explicit timeouts and bounds.
    pub fn with_config(node: &str, config: ClientConfig) -> Result<Client, ClientError> {
        let url = NodeUrl::parse(node)?;
        let runner = Runner::new()?;
        let inner = {
            let _guard = runner.rt.enter();
            crate::Client::from_url(url, config)
        };
        Ok(Client { inner, runner })
    }

    /// The node this client talks to.
    pub fn url(&self) -> &NodeUrl {
        self.inner.url()
    }

    /// See [`crate::Client::put`].
    pub fn put<T: Serialize + ?Sized>(&self, collection: &str, key: &str, doc: &T) -> Result<CommitReceipt, ClientError> {
        self.runner.run(self.inner.put(collection, key, doc))
    }

    /// See [`crate::Client::put_json`].
    pub fn put_json(&self, collection: &str, key: &str, json: Bytes) -> Result<CommitReceipt, ClientError> {
        self.runner.run(self.inner.put_json(collection, key, json))
    }

    /// See [`crate::Client::delete`].
    pub fn delete(&self, collection: &str, key: &str) -> Result<CommitReceipt, ClientError> {
        self.runner.run(self.inner.delete(collection, key))
    }

    /// See [`crate::Client::commit`].
    pub fn commit(&self, write_set: &WriteSet) -> Result<CommitReceipt, ClientError> {
        self.runner.run(self.inner.commit(write_set))
    }

    /// See [`crate::Client::get`].
    pub fn get(&self, collection: &str, key: &str, opts: &ReadOptions) -> Result<Document, ClientError> {
        self.runner.run(self.inner.get(collection, key, opts))
    }

    /// See [`crate::Client::scan`].
    pub fn scan(&self, collection: &str, opts: &ScanOptions) -> Result<ScanPage, ClientError> {
        self.runner.run(self.inner.scan(collection, opts))
    }
}

/// Blocking client of a node's DX API (see [`crate::DxClient`]).
#[derive(Debug)]
pub struct DxClient {
    inner: crate::DxClient,
    runner: Runner,
}

impl DxClient {
    /// A client of the DX API at `dx` with default timeouts.
    pub fn new(dx: &str) -> Result<DxClient, ClientError> {
        DxClient::with_config(dx, ClientConfig::default())
    }

    /// A client with explicit timeouts and bounds.
    pub fn with_config(dx: &str, config: ClientConfig) -> Result<DxClient, ClientError> {
        let url = NodeUrl::parse(dx)?;
        let runner = Runner::new()?;
        let inner = {
            let _guard = runner.rt.enter();
            crate::DxClient::from_url(url, config)
        };
        Ok(DxClient { inner, runner })
    }

    /// The node this client talks to.
    pub fn url(&self) -> &NodeUrl {
        self.inner.url()
    }

    /// See [`crate::DxClient::envelope`].
    pub fn envelope<T: DeserializeOwned>(&self, path: &str) -> Result<Envelope<T>, ClientError> {
        self.runner.run(self.inner.envelope(path))
    }

    /// See [`crate::DxClient::status`].
    pub fn status(&self) -> Result<Envelope<Value>, ClientError> {
        self.runner.run(self.inner.status())
    }

    /// See [`crate::DxClient::replication`].
    pub fn replication(&self) -> Result<Envelope<ReplicationView>, ClientError> {
        self.runner.run(self.inner.replication())
    }

    /// See [`crate::DxClient::wal`].
    pub fn wal(&self) -> Result<Envelope<Value>, ClientError> {
        self.runner.run(self.inner.wal())
    }

    /// See [`crate::DxClient::mvcc`].
    pub fn mvcc(&self) -> Result<Envelope<Value>, ClientError> {
        self.runner.run(self.inner.mvcc())
    }

    /// See [`crate::DxClient::snapshots`].
    pub fn snapshots(&self) -> Result<Envelope<Value>, ClientError> {
        self.runner.run(self.inner.snapshots())
    }

    /// See [`crate::DxClient::scrub`].
    pub fn scrub(&self) -> Result<Envelope<Value>, ClientError> {
        self.runner.run(self.inner.scrub())
    }

    /// See [`crate::DxClient::explain`].
    pub fn explain(&self, target: &ExplainTarget) -> Result<Envelope<Explanation>, ClientError> {
        self.runner.run(self.inner.explain(target))
    }

    /// See [`crate::DxClient::metrics`].
    pub fn metrics(&self) -> Result<String, ClientError> {
        self.runner.run(self.inner.metrics())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_closed_port_is_unreachable_not_a_hang() {
        // Bind then drop a listener: the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Client::new(&format!("127.0.0.1:{port}")).unwrap();
        let e = c.get("c", "k", &ReadOptions::default()).unwrap_err();
        assert_eq!(e.code(), "UNREACHABLE", "{e}");
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}/v1/docs/c/k")), "{e}");
    }

    #[test]
    fn a_silent_server_times_out_within_the_bound() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ClientConfig { request_timeout: std::time::Duration::from_millis(200), ..ClientConfig::default() };
        let c = DxClient::with_config(&addr.to_string(), config).unwrap();
        // The listener accepts (kernel backlog) but never answers.
        let e = c.status().unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        drop(listener);
    }

    #[test]
    fn bad_urls_fail_before_anything_is_built() {
        assert_eq!(Client::new("http://").unwrap_err().code(), "BAD_URL");
        assert_eq!(DxClient::new("unix://x").unwrap_err().code(), "BAD_URL");
    }

    #[test]
    fn the_blocking_facade_refuses_to_run_inside_a_runtime() {
        let c = Client::new("127.0.0.1:1").unwrap();
        let outer = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let e = outer.block_on(async { c.get("c", "k", &ReadOptions::default()) }).unwrap_err();
        assert_eq!(e.code(), "RUNTIME", "{e}");
    }
}
