//! The DX HTTP server (`--dx-listen`): read-only; GET only, every other
//! method answers 405. It captures what the node knows into plain facts
//! (the only IO here: reading in-memory state, listing files) and renders
//! them with `aerodb-repl-explain`. Every JSON answer uses the envelope of
//! REPLICATION.md §10; `/metrics` is Prometheus text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aerodb_mvcc::input::validate_name;
use aerodb_mvcc::PrimaryEngine;
use aerodb_repl_core::fence::{Fence, FenceLatch};
use aerodb_repl_core::metadata::ReplicaPaths;
use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_explain::explain::{self, ReadQuery};
use aerodb_repl_explain::facts::{
    DurabilityFacts, FenceFacts, HttpFacts, HttpSurfaceFacts, KnownReplicaFacts, PeerReplica, PrimaryFacts, RefusedPeerFacts, RegistryFacts, ReplPortFacts,
    ReplSecurityFacts, ReplicaFacts, WalFile,
};
use aerodb_repl_explain::metrics;
use aerodb_repl_explain::views::{self, envelope};
use aerodb_repl_net::ReplicaRegistry;
use aerodb_snapshot::{PrimaryRecoveryReport, SnapshotScheduler};
use aerodb_wal::history::StartupDurability;
use aerodb_wal::mark_writer::{MarkGate, MarkPolicy};
use aerodb_wal::segment::parse_segment_file_name;
use aerodb_wal::CommitId;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::http::refusal::LimitRefusal;
use crate::http::server::RenderRefusal;
use crate::http::stats::SurfaceStats;
use crate::replica_node::RefusalCounters;
use crate::scrub_task::ScrubHandle;
use crate::serving::NodeHttp;

/// What a primary's (or standalone's) DX API reads.
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
    /// What recovery did at startup.
    pub recovery: Option<Arc<PrimaryRecoveryReport>>,
    /// The snapshot scheduler (snapshots held, policy, counters).
    pub snapshots: Option<Arc<SnapshotScheduler>>,
    /// The node's HTTP bounds and counters (RES-3).
    pub http: Arc<NodeHttp>,
    /// Durable mark, fence and scrub (CORE-5, REPL-11, CORE-6).
    pub guards: Option<PrimaryGuards>,
    /// Replication port security in force: (token required, TLS).
    pub repl_security: (bool, bool),
}

/// What a primary's DX API reads about its guards of acknowledged history.
#[derive(Clone)]
pub struct PrimaryGuards {
    /// What startup did about the durable mark.
    pub startup: Arc<StartupDurability>,
    /// The mark policy.
    pub policy: MarkPolicy,
    /// The mark's gate (live positions and counters).
    pub gate: Arc<MarkGate>,
    /// The fence (None on standalone).
    pub fence: Option<Arc<FenceLatch>>,
    /// The fence lifted at startup.
    pub fence_lifted: Option<Fence>,
    /// The scrub.
    pub scrub: Arc<ScrubHandle>,
}

impl PrimaryGuards {
    /// The guards of an opened primary.
    pub fn of(opened: &crate::node::OpenedPrimary) -> Self {
        PrimaryGuards {
            startup: opened.startup_durability.clone(),
            policy: opened.options.durability.mark,
            gate: opened.mark_gate.clone(),
            fence: opened.fence.clone(),
            fence_lifted: opened.fence_lifted.clone(),
            scrub: opened.scrub.clone(),
        }
    }
}

/// What a replica's DX API reads.
#[derive(Clone)]
pub struct ReplicaDx {
    /// The replica's status and store.
    pub handle: Arc<ReplicaHandle>,
    /// Client refusals counted by the client API.
    pub refusals: Arc<RefusalCounters>,
    /// Data directory root (for listing WAL segments and the bootstrap snapshot).
    pub data_dir: PathBuf,
    /// The node's HTTP bounds and counters (RES-3).
    pub http: Arc<NodeHttp>,
    /// The scrub (CORE-6).
    pub scrub: Option<Arc<ScrubHandle>>,
}

/// Either role.
#[derive(Clone)]
enum DxNode {
    Primary(Box<PrimaryDx>),
    Replica(ReplicaDx),
}

impl PrimaryDx {
    fn facts(&self) -> PrimaryFacts {
        let store = self.engine.store();
        let applied = store.applied();
        let gc = store.gc_stats();
        let durable = self.engine.durable().current();
        let replicas = self.replicas.as_ref().map(|r| r.list().into_iter().map(peer_replica).collect());
        let registry = self.replicas.as_ref().map(|r| registry_facts(r, applied.commit_id));
        PrimaryFacts {
            role: self.role,
            cluster_id: self.cluster_id.clone(),
            applied,
            durable,
            history_horizon: gc.history_horizon,
            version_count: gc.versions,
            gc: Some(gc),
            history_retain_commits: Some(self.engine.gc_policy().retain_commits),
            active_read_views: store.active_read_views(),
            segments: self.engine.segments().snapshot(),
            recovery: self.recovery.as_deref().cloned(),
            snapshots: match &self.snapshots {
                Some(s) => s.held().map_err(|e| format!("{e} [{}]", e.code())),
                None => Err("this node runs no snapshot scheduler".to_string()),
            },
            snapshot_policy: self.snapshots.as_ref().map(|s| s.policy()),
            snapshot_status: self.snapshots.as_ref().map(|s| s.status()),
            replicas,
            registry,
            now_ms: Some(aerodb_repl_net::clock::wall_ms()),
            wal_shipped_bytes: self.replicas.as_ref().map(|r| r.shipped_bytes()),
            wal_fsyncs: Some(self.engine.fsyncs()),
            http: Some(http_facts(&self.http)),
            repl_port: self.replicas.as_ref().map(|r| ReplPortFacts {
                open_connections: r.open_connections() as u64,
                limits: r.limits(),
                rejects: r.rejects(),
            }),
            durability: self.guards.as_ref().map(|g| DurabilityFacts { startup: (*g.startup).clone(), policy: g.policy, live: g.gate.status() }),
            fence: self.guards.as_ref().and_then(|g| {
                g.fence.as_ref().map(|latch| FenceFacts { current: latch.current(), lifted_at_startup: g.fence_lifted.clone(), proofs: latch.proofs() })
            }),
            scrub: self.guards.as_ref().map(|g| g.scrub.status()),
            // Shown once a token or TLS is configured, or a peer was refused
            // (a node with neither and no refusal keeps its v1 shape).
            repl_security: self.replicas.as_ref().and_then(|r| {
                let sec = r.security();
                let facts = ReplSecurityFacts {
                    token_required: self.repl_security.0,
                    tls: self.repl_security.1,
                    refused: sec.counts(),
                    last_refused: sec.last().map(|l| RefusedPeerFacts { peer: l.peer, code: l.code, detail: l.detail }),
                };
                (facts.token_required || facts.tls || !facts.refused.is_empty()).then_some(facts)
            }),
        }
    }
}

fn peer_replica(c: aerodb_repl_net::primary::ConnectedReplica) -> PeerReplica {
    PeerReplica { replica_id: c.replica_id, name: c.name, peer: c.peer, session: c.session.to_string(), reported: c.reported, sent_lsn: c.sent_lsn }
}

/// The registry as facts: every known replica with its connection and the
/// commit time of the first commit it has not applied (lag in seconds).
fn registry_facts(registry: &ReplicaRegistry, c_primary: CommitId) -> RegistryFacts {
    let times = registry.commit_times();
    let replicas = registry
        .known()
        .into_iter()
        .map(|k| {
            let oldest_unapplied_commit_time_ms = k.known.needs().filter(|n| n.commit_id < c_primary).and_then(|n| times.time_of(n.commit_id + 1));
            KnownReplicaFacts { known: k.known, connection: k.connection.map(peer_replica), oldest_unapplied_commit_time_ms }
        })
        .collect();
    let startup = registry.startup();
    let (forgotten_total, evicted_total) = registry.forgotten_and_evicted();
    RegistryFacts {
        replicas,
        file: startup.file.clone(),
        loaded_at_startup: startup.loaded,
        load_error: startup.load_error.clone(),
        moved_aside: startup.moved_aside.clone(),
        forgotten_at_startup: startup.forgotten.clone(),
        forgotten_total,
        evicted_total,
    }
}

/// Segment files in `wal/`, oldest first.
fn list_wal_files(dir: &Path) -> Result<Vec<WalFile>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(start_lsn) = parse_segment_file_name(&name) {
            let bytes = entry.metadata().map(|m| m.len()).map_err(|e| format!("{name}: {e}"))?;
            files.push(WalFile { name, start_lsn, bytes });
        }
    }
    files.sort_by_key(|f| f.start_lsn);
    Ok(files)
}

/// Total size of the regular files in `dir` (None if unreadable or absent).
fn dir_bytes(dir: &Path) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir).ok()? {
        let meta = entry.ok()?.metadata().ok()?;
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
    }
    Some(total)
}

impl ReplicaDx {
    fn facts(&self) -> ReplicaFacts {
        let observed = self.handle.shared.observe();
        let store = self.handle.store();
        let paths = ReplicaPaths::new(&self.data_dir);
        let gc = store.as_ref().map(|s| s.gc_stats());
        let snapshot_installed = observed.bootstrap().is_some_and(|b| b.method == aerodb_repl_core::metadata::BootstrapMethod::Snapshot);
        ReplicaFacts {
            applied: store.as_ref().map(|s| s.applied()),
            history_horizon: gc.map(|g| g.history_horizon),
            version_count: gc.map(|g| g.versions),
            gc,
            active_read_views: store.as_ref().map(|s| s.active_read_views()).unwrap_or_default(),
            wal_files: if paths.wal.exists() { list_wal_files(&paths.wal) } else { Ok(Vec::new()) },
            bootstrap_snapshot_bytes: if snapshot_installed { dir_bytes(&paths.snapshot()) } else { None },
            refusals: self.refusals.snapshot(),
            scrub: self.scrub.as_ref().map(|s| s.status()),
            observed,
            http: Some(http_facts(&self.http)),
        }
    }
}

/// The endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Status,
    Wal,
    Mvcc,
    Snapshots,
    Replication,
    ExplainReplication,
    ExplainRecovery,
    ExplainRead,
    Scrub,
    Metrics,
}

/// Every DX path, in INTERFACE.md order (also used by the CLI and tests).
pub const DX_PATHS: &[&str] = &[
    "/v1/status",
    "/v1/wal",
    "/v1/mvcc",
    "/v1/snapshots",
    "/v1/replication",
    "/v1/explain/replication",
    "/v1/explain/recovery",
    "/v1/explain/read",
    "/v1/scrub",
    "/metrics",
];

/// A DX error, in the envelope like every other JSON answer.
fn error(status: StatusCode, code: &str, message: &str, evidence: Value, commit_id: Option<CommitId>) -> Response {
    let data = json!({"error": {"code": code, "rule_id": null, "message": message, "evidence": evidence}});
    (status, Json(envelope(commit_id, data, Vec::new()))).into_response()
}

/// Validated `/v1/explain/read` parameters.
struct ReadParams {
    collection: String,
    key: String,
    at: Option<CommitId>,
}

fn read_params(params: &HashMap<String, String>) -> Result<ReadParams, (String, Value)> {
    let name = |field: &'static str| -> Result<String, (String, Value)> {
        let v = params.get(field).ok_or_else(|| (format!("query parameter {field} is required"), json!({"parameter": field})))?;
        validate_name(field, v).map_err(|e| (e.to_string(), json!({"parameter": field})))?;
        Ok(v.clone())
    };
    let at = match params.get("at") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| ("query parameter at must be an unsigned integer".to_string(), json!({"parameter": "at"})))?),
        None => None,
    };
    Ok(ReadParams { collection: name("collection")?, key: name("key")?, at })
}

impl DxNode {
    fn commit_id(&self) -> Option<CommitId> {
        match self {
            DxNode::Primary(p) => Some(p.engine.store().applied().commit_id),
            DxNode::Replica(r) => r.handle.store().map(|s| s.applied().commit_id),
        }
    }

    /// Renders one endpoint. Views and explanations are computed from one
    /// capture of facts, so every number in an answer is from one moment.
    fn render(&self, endpoint: Endpoint, params: &HashMap<String, String>) -> Response {
        let read = if endpoint == Endpoint::ExplainRead {
            match read_params(params) {
                Ok(p) => Some(p),
                Err((message, evidence)) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message, evidence, self.commit_id()),
            }
        } else {
            None
        };
        let (commit_id, data, notes): (Option<CommitId>, Value, Vec<String>) = match self {
            DxNode::Primary(p) => {
                // The chain is read before the facts: a commit is inserted and
                // applied under one lock, so every version listed is <= the
                // observed CommitId.
                let chain = read.as_ref().map(|q| p.engine.store().version_chain(q.collection.as_bytes(), q.key.as_bytes()));
                let f = p.facts();
                let c = Some(f.applied.commit_id);
                let (data, notes) = match endpoint {
                    Endpoint::Status => views::primary_status(&f),
                    Endpoint::Wal => views::primary_wal(&f),
                    Endpoint::Mvcc => views::primary_mvcc(&f),
                    Endpoint::Snapshots => views::primary_snapshots(&f),
                    Endpoint::Replication => views::primary_replication(&f),
                    Endpoint::ExplainReplication => (explain::primary_safety(&f).to_value(), Vec::new()),
                    Endpoint::ExplainRecovery => (explain::primary_recovery(&f).to_value(), Vec::new()),
                    Endpoint::ExplainRead => match &read {
                        Some(q) => {
                            let query = ReadQuery { collection: &q.collection, key: &q.key, at: q.at };
                            (explain::primary_read_visibility(&f, &query, chain.as_deref().unwrap_or_default()).to_value(), Vec::new())
                        }
                        None => (Value::Null, Vec::new()),
                    },
                    Endpoint::Scrub => views::scrub_view(f.role, f.scrub.as_ref()),
                    Endpoint::Metrics => return metrics_response(metrics::primary_metrics_with(&f, Some(&crate::process_stats::sample()))),
                };
                (c, data, notes)
            }
            DxNode::Replica(r) => {
                let chain = read.as_ref().and_then(|q| r.handle.store().map(|s| s.version_chain(q.collection.as_bytes(), q.key.as_bytes())));
                let f = r.facts();
                let c = f.applied.map(|a| a.commit_id);
                let (data, notes) = match endpoint {
                    Endpoint::Status => views::replica_status(&f),
                    Endpoint::Wal => views::replica_wal(&f),
                    Endpoint::Mvcc => views::replica_mvcc(&f),
                    Endpoint::Snapshots => views::replica_snapshots(&f),
                    Endpoint::Replication => views::replica_replication_view(&f),
                    Endpoint::ExplainReplication => {
                        // One replication.safety explanation; when halted it carries the
                        // replication.halt explanation in its conclusion.
                        let mut safety = explain::replica_safety(&f).to_value();
                        if let Some(halt) = explain::replication_halt(&f.observed, f.applied.as_ref()) {
                            safety["conclusion"]["halt_explanation"] = halt.to_value();
                        }
                        (safety, Vec::new())
                    }
                    Endpoint::ExplainRecovery => (explain::replica_recovery(&f).to_value(), Vec::new()),
                    Endpoint::ExplainRead => match &read {
                        Some(q) => {
                            let query = ReadQuery { collection: &q.collection, key: &q.key, at: q.at };
                            (explain::replica_read_visibility(&f, &query, chain.as_deref()).to_value(), Vec::new())
                        }
                        None => (Value::Null, Vec::new()),
                    },
                    Endpoint::Scrub => views::scrub_view("replica", f.scrub.as_ref()),
                    Endpoint::Metrics => return metrics_response(metrics::replica_metrics_with(&f, Some(&crate::process_stats::sample()))),
                };
                (c, data, notes)
            }
        };
        Json(envelope(commit_id, data, notes)).into_response()
    }
}

fn metrics_response(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

async fn answer(node: DxNode, endpoint: Endpoint, params: Params) -> Response {
    let params = match params {
        Ok(Query(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &format!("invalid query: {e}"), json!({}), node.commit_id()),
    };
    match tokio::task::spawn_blocking(move || node.render(endpoint, &params)).await {
        Ok(r) => r,
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "DX_INTERNAL", &format!("rendering failed: {e}"), json!({}), None),
    }
}

macro_rules! handler {
    ($name:ident, $endpoint:expr) => {
        async fn $name(State(node): State<DxNode>, params: Params) -> Response {
            answer(node, $endpoint, params).await
        }
    };
}

handler!(status, Endpoint::Status);
handler!(wal, Endpoint::Wal);
handler!(mvcc, Endpoint::Mvcc);
handler!(snapshots, Endpoint::Snapshots);
handler!(replication, Endpoint::Replication);
handler!(explain_replication, Endpoint::ExplainReplication);
handler!(explain_recovery, Endpoint::ExplainRecovery);
handler!(explain_read, Endpoint::ExplainRead);
handler!(scrub, Endpoint::Scrub);
handler!(metrics_text, Endpoint::Metrics);

/// The DX API is read-only: any method other than GET is 405, on every path
/// (known or not), before anything else runs.
async fn only_get(State(node): State<DxNode>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        let method = request.method().as_str().to_string();
        return error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", "the DX API is read-only: GET only", json!({"method": method}), node.commit_id());
    }
    next.run(request).await
}

async fn not_found(State(node): State<DxNode>) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NO_SUCH_ENDPOINT",
        "no such DX endpoint; documents (/v1/docs/...) are on the client API port (--listen, default 7700)",
        json!({"endpoints": DX_PATHS}),
        node.commit_id(),
    )
}

fn router(node: DxNode) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/wal", get(wal))
        .route("/v1/mvcc", get(mvcc))
        .route("/v1/snapshots", get(snapshots))
        .route("/v1/replication", get(replication))
        .route("/v1/explain/replication", get(explain_replication))
        .route("/v1/explain/recovery", get(explain_recovery))
        .route("/v1/explain/read", get(explain_read))
        .route("/v1/scrub", get(scrub))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(node.clone(), only_get))
        .with_state(node)
}

/// The DX API's refusal body (RES-3 bounds): the error in the envelope.
fn refusal_body(node: DxNode) -> RenderRefusal {
    Arc::new(move |r: &LimitRefusal| {
        let e = ApiError::from(r.clone());
        let data = json!({"error": e.error_object()});
        serde_json::to_vec(&envelope(node.commit_id(), data, Vec::new())).unwrap_or_default()
    })
}

/// A replica's DX router and its refusal body.
pub fn replica_router(dx: ReplicaDx) -> (Router, RenderRefusal) {
    let node = DxNode::Replica(dx);
    (router(node.clone()), refusal_body(node))
}

/// A primary's (or standalone's) DX router and its refusal body.
pub fn primary_router(dx: PrimaryDx) -> (Router, RenderRefusal) {
    let node = DxNode::Primary(Box::new(dx));
    (router(node.clone()), refusal_body(node))
}

/// What the HTTP layer counted, as facts for `/metrics`.
fn http_facts(http: &NodeHttp) -> HttpFacts {
    let surface =
        |s: &SurfaceStats| HttpSurfaceFacts { surface: s.name, open_connections: s.open_connections(), limits: s.limits.named(), rejects: s.rejects() };
    HttpFacts {
        surfaces: vec![surface(&http.client), surface(&http.dx)],
        waiting_reads: http.waiters.waiting(),
        body_bytes_in_flight: http.budget.in_flight(),
        limits: http.limits.node_named(),
    }
}
