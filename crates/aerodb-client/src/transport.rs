//! The one HTTP/1.1 transport under both clients: a hyper-util connection
//! pool with keep-alive, bounded connect and request timeouts, a bounded
//! answer size, and the mapping of transport failures to [`ClientError`].
//!
//! TLS: an `https://` node gets a pool whose connector is hyper-rustls
//! wrapping the same `HttpConnector`, verifying the node against
//! [`ClientConfig::tls`] (chosen by scheme in [`Transport::new`]); request
//! building and error mapping are shared. A TLS failure (unknown CA, wrong
//! name, a plain port) is [`ClientError::Tls`].

use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Pool;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::ClientError;
use crate::node_url::{NodeUrl, Scheme};
use crate::tls::{tls_cause, TlsConfig};

/// Timeouts and bounds of a client. Every call is bounded in time: connect
/// within `connect_timeout`, complete answer within `request_timeout` (plus
/// `wait_ms` for reads that wait for a CommitId).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Longest a TCP connect may take (default 5 s).
    pub connect_timeout: Duration,
    /// Longest a whole request may take, connect included (default 30 s).
    pub request_timeout: Duration,
    /// Idle keep-alive connections kept per node (default 64).
    pub max_idle_connections: usize,
    /// How long an idle connection is kept (default 60 s).
    pub idle_timeout: Duration,
    /// Largest answer body accepted (default 64 MiB); larger is a protocol error.
    pub max_answer_bytes: usize,
    /// The CA an `https://` node is verified against (`--tls-ca`). An
    /// `https://` URL without it is refused with [`ClientError::Tls`] on
    /// first use.
    pub tls: Option<TlsConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_idle_connections: 64,
            idle_timeout: Duration::from_secs(60),
            max_answer_bytes: 64 << 20,
            tls: None,
        }
    }
}

/// A complete HTTP answer.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The request URL (for error messages).
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

/// The pool of one scheme.
#[derive(Clone, Debug)]
enum Pools {
    Http(Pool<HttpConnector, Full<Bytes>>),
    Https(Pool<HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// `https://` without a CA: every request fails with this detail.
    NoTrust(String),
}

/// One node's connection pool.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    pool: Pools,
    base: NodeUrl,
    config: ClientConfig,
}

/// The error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl Transport {
    /// A pool for `base`. Builds no connection and needs no runtime; the
    /// first request connects.
    pub(crate) fn new(base: NodeUrl, config: ClientConfig) -> Transport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.connect_timeout));
        let mut builder = Pool::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new()).pool_idle_timeout(config.idle_timeout).pool_max_idle_per_host(config.max_idle_connections);
        let pool = match (base.scheme(), &config.tls) {
            (Scheme::Http, _) => {
                connector.enforce_http(true);
                Pools::Http(builder.build(connector))
            }
            (Scheme::Https, Some(tls)) => {
                connector.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((**tls.rustls_config()).clone())
                    .https_only()
                    .enable_http1()
                    .wrap_connector(connector);
                Pools::Https(builder.build(https))
            }
            (Scheme::Https, None) => Pools::NoTrust("an https:// node needs a CA to verify it against (--tls-ca)".into()),
        };
        Transport { pool, base, config }
    }

    /// The node.
    pub(crate) fn base(&self) -> &NodeUrl {
        &self.base
    }

    /// Sends one request and reads the whole answer, within the request
    /// timeout plus `extra`.
    pub(crate) async fn send(&self, method: Method, path_and_query: &str, body: Option<Bytes>, extra: Duration) -> Result<Answer, ClientError> {
        let url = self.base.join(path_and_query);
        let mut builder = Request::builder().method(method).uri(url.as_str());
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::BadUrl { input: url.clone(), reason: format!("not a valid request URI: {e}") })?;
        let timeout = self.config.request_timeout.saturating_add(extra);
        let exchange = async {
            let result = match &self.pool {
                Pools::Http(pool) => pool.request(request).await,
                Pools::Https(pool) => pool.request(request).await,
                Pools::NoTrust(detail) => return Err(ClientError::Tls { url: url.clone(), detail: detail.clone() }),
            };
            let response = result.map_err(|e| {
                if let Some(detail) = tls_cause(&e) {
                    ClientError::Tls { url: url.clone(), detail: format!("{detail} ({})", chain(&e)) }
                } else if e.is_connect() {
                    ClientError::Unreachable { url: url.clone(), detail: chain(&e) }
                } else {
                    ClientError::Protocol { url: url.clone(), status: None, detail: chain(&e) }
                }
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), self.config.max_answer_bytes).collect().await.map_err(|e| ClientError::Protocol {
                url: url.clone(),
                status: Some(status),
                detail: format!("cannot read the answer body: {}", chain(e.as_ref())),
            })?;
            Ok(body.to_bytes()).map(|body| (status, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, body))) => Ok(Answer { url, status, body }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout { url, timeout }),
        }
    }
}
