//! Serving a node's HTTP surfaces until SIGINT/SIGTERM and stopping within
//! a bounded time (RES-3), for every role.
//!
//! On the signal: the shutdown flag is set, so both surfaces stop accepting,
//! every waiting read is answered 503 `SHUTTING_DOWN`, every connection is
//! closed gracefully (the response in progress finishes; a half-sent head is
//! answered and closed), and after `--shutdown-timeout-ms` whatever is still
//! open is cut. A watchdog bounds the rest of the stop (engine, replication,
//! snapshots): past `--shutdown-timeout-ms` + [`SHUTDOWN_CLEANUP_BOUND`] the
//! process exits anyway, with a one-line reason and exit code 1.

use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::WriteLimits;
use axum::Router;
use tokio::net::TcpListener;

use crate::api_error::ApiError;
use crate::client_api::{self, ClientApi};
use crate::http::body::BodyBudget;
use crate::http::limits::{millis, HttpLimits, SHUTDOWN_CLEANUP_BOUND};
use crate::http::server::{self, RenderRefusal, Surface};
use crate::http::shutdown::Shutdown;
use crate::http::stats::SurfaceStats;
use crate::node::ShutdownSignals;
use crate::service::DocService;
use crate::waiting::{AppliedWatch, ReadWaiters};

/// Exit code when the stop overran its bound and the watchdog ended the process.
pub const EXIT_SHUTDOWN_OVERRAN: i32 = 1;

/// The HTTP state of one node: bounds, counters, waiting reads, body
/// budget, the applied-CommitId watch and the shutdown signal.
pub struct NodeHttp {
    /// Every bound in force.
    pub limits: HttpLimits,
    /// Client API counters.
    pub client: Arc<SurfaceStats>,
    /// DX API counters.
    pub dx: Arc<SurfaceStats>,
    /// Waiting reads.
    pub waiters: Arc<ReadWaiters>,
    /// In-flight body bytes.
    pub budget: Arc<BodyBudget>,
    /// The applied CommitId, fed by the store's observer.
    pub applied: AppliedWatch,
    /// Set on SIGINT/SIGTERM.
    pub shutdown: Shutdown,
    /// TLS for both surfaces (`--tls-cert/--tls-key`), or plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl NodeHttp {
    /// Fresh state under `limits`, serving HTTPS with `tls` when given.
    pub fn with_tls(limits: HttpLimits, tls: Option<tokio_rustls::TlsAcceptor>) -> Arc<Self> {
        let applied = AppliedWatch::new();
        Arc::new(NodeHttp {
            limits,
            client: Arc::new(SurfaceStats::new("client", limits.client)),
            dx: Arc::new(SurfaceStats::new("dx", limits.dx)),
            waiters: ReadWaiters::new(limits.max_waiting_reads, applied.clone()),
            budget: BodyBudget::new(limits.body_budget_bytes),
            applied,
            shutdown: Shutdown::new(),
            tls,
        })
    }

    /// The client API router for `service`.
    pub fn client_router(&self, service: Arc<dyn DocService>, write_limits: WriteLimits) -> Router {
        client_api::router(Arc::new(ClientApi {
            service,
            limits: write_limits,
            body_timeout: self.limits.client.body_timeout,
            budget: self.budget.clone(),
            waiters: self.waiters.clone(),
            stats: self.client.clone(),
            shutdown: self.shutdown.clone(),
        }))
    }
}

/// The client API's refusal body: `{"error":{...}}`.
fn client_refusal_body() -> RenderRefusal {
    Arc::new(|r| serde_json::to_vec(&ApiError::from(r.clone()).body()).unwrap_or_default())
}

/// A bound listener and what serves it.
pub struct Listening {
    /// The bound socket.
    pub listener: TcpListener,
    /// The router.
    pub router: Router,
}

/// Serves the client API (and the DX API when given, with its own refusal
/// body) until SIGINT/SIGTERM, then stops them within the shutdown timeout.
/// Starts the shutdown watchdog when the signal arrives.
pub async fn serve_until_signal(http: &Arc<NodeHttp>, signals: ShutdownSignals, client: Listening, dx: Option<(Listening, RenderRefusal)>) {
    raise_fd_limit(&http.limits);
    let timeout = http.limits.shutdown_timeout;
    let client_surface = Surface::with_tls(http.client.clone(), http.shutdown.clone(), client_refusal_body(), http.tls.clone());
    let client_task = tokio::spawn(server::serve(client.listener, client_surface, client.router, timeout));
    let dx_task = dx.map(|(l, render)| {
        let surface = Surface::with_tls(http.dx.clone(), http.shutdown.clone(), render, http.tls.clone());
        tokio::spawn(server::serve(l.listener, surface, l.router, timeout))
    });
    signals.recv().await;
    start_watchdog(timeout + SHUTDOWN_CLEANUP_BOUND);
    http.shutdown.trigger();
    let _ = client_task.await;
    if let Some(t) = dx_task {
        let _ = t.await;
    }
    tracing::info!("HTTP surfaces stopped");
}

/// Ends the process if the stop takes longer than `bound` (a stuck disk,
/// a long snapshot): the bound holds whatever happens.
fn start_watchdog(bound: Duration) {
    let spawned = std::thread::Builder::new().name("shutdown-watchdog".into()).spawn(move || {
        std::thread::sleep(bound);
        tracing::error!(bound_ms = millis(bound), "shutdown did not finish in time (RES-3); exiting now");
        eprintln!("aerodb: shutdown did not finish within {} ms (RES-3); exiting", millis(bound));
        std::process::exit(EXIT_SHUTDOWN_OVERRAN);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the shutdown watchdog");
    }
}

/// Raises the soft limit on open files so the connection caps can be
/// reached (each connection is a file descriptor); warns when the hard
/// limit is too low.
fn raise_fd_limit(limits: &HttpLimits) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = (limits.client.max_connections + limits.dx.max_connections + 256) as u64;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft >= wanted {
        return;
    }
    let target = wanted.min(hard);
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        tracing::warn!(error = %e, soft, hard, wanted, "cannot raise the open-file limit");
    } else if target < wanted {
        tracing::warn!(limit = target, wanted, "the open-file limit is below what the connection caps need");
    }
}
