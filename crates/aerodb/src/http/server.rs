//! The accept loop every HTTP surface runs (RES-3): a cap on open
//! connections (over it: the surface's JSON refusal, then close), each
//! connection served by hyper through the [`Guarded`] IO wrapper with the
//! header timeout, and a bounded graceful shutdown: stop accepting, let
//! in-flight requests finish for `shutdown_timeout`, then cut whatever is
//! left. Axum routers are the services.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::http::framer::HeadLimits;
use crate::http::guarded::Guarded;
use crate::http::limits::{SurfaceLimits, LINGER_TIMEOUT, MAX_REFUSALS_IN_FLIGHT, REQUEST_LINE_OVERHEAD};
use crate::http::refusal::LimitRefusal;
use crate::http::shutdown::Shutdown;
use crate::http::stats::SurfaceStats;

/// Renders a refusal as the surface's JSON body.
pub type RenderRefusal = Arc<dyn Fn(&LimitRefusal) -> Vec<u8> + Send + Sync>;

/// One HTTP surface: its name, bounds, counters, error body and the node's
/// shutdown signal.
pub struct Surface {
    /// Bounds in force.
    pub limits: SurfaceLimits,
    /// Counters (open connections, refusals by code).
    pub stats: Arc<SurfaceStats>,
    /// The node's shutdown signal.
    pub shutdown: Shutdown,
    render: RenderRefusal,
    refusing: AtomicUsize,
    /// TLS (`--tls-cert/--tls-key`): every connection must complete a TLS
    /// handshake within the header timeout before HTTP is read.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Surface {
    /// A surface named by `stats`, answering refusals with `render`, serving HTTPS with `tls` (plain HTTP when None).
    pub fn with_tls(stats: Arc<SurfaceStats>, shutdown: Shutdown, render: RenderRefusal, tls: Option<tokio_rustls::TlsAcceptor>) -> Arc<Self> {
        Arc::new(Surface { limits: stats.limits, stats, shutdown, render, refusing: AtomicUsize::new(0), tls })
    }

    /// `client` or `dx`.
    pub fn name(&self) -> &'static str {
        self.stats.name
    }

    /// The head limits the framer checks.
    pub fn head_limits(&self) -> HeadLimits {
        HeadLimits { max_url_bytes: self.limits.max_url_bytes, max_header_bytes: self.limits.max_header_bytes }
    }

    /// A whole HTTP/1.1 response carrying the refusal (then the connection closes).
    pub fn response_bytes(&self, refusal: &LimitRefusal) -> Vec<u8> {
        let body = (self.render)(refusal);
        let status = refusal.status();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }

    /// Largest read buffer hyper may use: a whole head within the limits
    /// (the framer has checked it already) plus room for body reads.
    fn hyper_buf_size(&self) -> usize {
        (self.limits.max_url_bytes + REQUEST_LINE_OVERHEAD + self.limits.max_header_bytes + 8192).max(64 * 1024)
    }
}

/// Serves `router` on `listener` until `shutdown` is triggered, then drains
/// for at most the surface's shutdown timeout and cuts the rest.
pub async fn serve(listener: TcpListener, surface: Arc<Surface>, router: Router, shutdown_timeout: Duration) {
    let mut connections = JoinSet::new();
    let shutdown = surface.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => accept(stream, &surface, &router, &mut connections),
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(surface = surface.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(surface = surface.name(), open, "stopped accepting; waiting for open connections");
    }
    let drained = tokio::time::timeout(shutdown_timeout, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(surface = surface.name(), cut = connections.len(), "shutdown timeout reached: cutting the connections still open");
        connections.shutdown().await;
    }
}

fn accept(stream: TcpStream, surface: &Arc<Surface>, router: &Router, connections: &mut JoinSet<()>) {
    match surface.stats.try_open() {
        Some(slot) => {
            let (surface, router) = (surface.clone(), router.clone());
            connections.spawn(async move {
                serve_connection(stream, surface, router).await;
                drop(slot);
            });
        }
        None => {
            let refusal = LimitRefusal::TooManyConnections { max: surface.limits.max_connections };
            surface.stats.reject(&refusal);
            if surface.refusing.fetch_add(1, Ordering::AcqRel) < MAX_REFUSALS_IN_FLIGHT {
                let surface = surface.clone();
                let response = surface.response_bytes(&refusal);
                connections.spawn(async move {
                    tokio::select! {
                        () = refuse_connection(stream, response) => {}
                        () = surface.shutdown.triggered() => {}
                    }
                    surface.refusing.fetch_sub(1, Ordering::AcqRel);
                });
            } else {
                surface.refusing.fetch_sub(1, Ordering::AcqRel);
                drop(stream);
            }
        }
    }
}

/// Answers an over-the-cap connection and closes it, lingering briefly so
/// the answer is read rather than reset; bounded by [`LINGER_TIMEOUT`].
async fn refuse_connection(mut stream: TcpStream, response: Vec<u8>) {
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async move {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 1024 * 1024 {
            match stream.read(&mut scratch).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// Serves one connection: plain, or after a TLS handshake bounded by the
/// header timeout (RES-3). A plain HTTP client on a TLS port gets a plain
/// 400 `TLS_REQUIRED` answer instead of a handshake failure it cannot read.
async fn serve_connection(stream: TcpStream, surface: Arc<Surface>, router: Router) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = surface.tls.clone() else {
        return serve_http(stream, surface, router).await;
    };
    let deadline = tokio::time::Instant::now() + surface.limits.header_timeout;
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        r = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => r,
        () = surface.shutdown.triggered() => return,
    };
    match peeked {
        Ok(Ok(1)) if first[0] != TLS_HANDSHAKE_BYTE => return refuse_plain_client(stream, &surface).await,
        Ok(Ok(1)) => {}
        _ => return,
    }
    let accepted = tokio::select! {
        r = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => r,
        () = surface.shutdown.triggered() => return,
    };
    match accepted {
        Ok(Ok(tls_stream)) => serve_http(tls_stream, surface, router).await,
        Ok(Err(e)) => tracing::debug!(surface = surface.name(), error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(surface = surface.name(), "TLS handshake did not finish within the header timeout"),
    }
}

/// Answers a plain HTTP client that reached a TLS port with an unencrypted
/// 400 `TLS_REQUIRED` (the JSON error body) and closes, lingering briefly
/// so the answer is read rather than reset.
async fn refuse_plain_client(stream: TcpStream, surface: &Surface) {
    tracing::debug!(surface = surface.name(), "plain HTTP on a TLS port: answered TLS_REQUIRED");
    let body = serde_json::json!({"error": {
        "code": "TLS_REQUIRED",
        "rule_id": null,
        "message": "this port serves HTTPS only (the node runs with --tls-cert/--tls-key); use https:// and --tls-ca",
        "evidence": {},
    }})
    .to_string();
    let response = format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
    refuse_connection(stream, response.into_bytes()).await;
}

/// Serves HTTP on one (plain or TLS) stream with hyper until it closes; a
/// refused head or the node's shutdown closes it gracefully (the response
/// in progress finishes).
async fn serve_http<S>(stream: S, surface: Arc<Surface>, router: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let refused = Arc::new(Notify::new());
    let io = Guarded::new(stream, surface.clone(), refused.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(surface.limits.header_timeout).max_buf_size(surface.hyper_buf_size()).keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(surface = surface.name(), error = %e, "connection ended with an error");
                }
                return;
            }
            () = surface.shutdown.triggered(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = refused.notified(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
