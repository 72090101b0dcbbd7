//! Running a replica: open the data directory (role replica, REPL-1),
//! refuse to start on corrupt metadata (F-RC2), honour `--rebootstrap`,
//! serve the client API through the read-safety gate, and run the
//! replication supervisor until SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::{AppliedState, ClientOp, ReadView};
use aerodb_repl_core::gate::evaluate;
use aerodb_repl_core::metadata::{read_halt, read_metadata, BootstrapMethod, ReplicaMetadata, ReplicaPaths};
use aerodb_repl_core::reads::{ReadRefusal, ReplicaHandle};
use aerodb_repl_core::status::{ReplicaObserved, ReplicaShared};
use aerodb_repl_explain::explain::{replication_halt, safety_from_decision, ReadBound};
use aerodb_repl_explain::facts::RefusalCount;
use aerodb_repl_explain::views::default_read_inputs;
use aerodb_repl_net::client::{run_replica as run_supervisor, ReplicaClientConfig, StopSignal};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::CommitId;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::api_error::ApiError;
use crate::client_api;
use crate::datadir::{random_hex_id, DataDir, Role};
use crate::error::StartupError;
use crate::node::{bind, ShutdownSignals};
use crate::service::{DocService, ReadRequest, MAX_WAIT_MS};
use crate::snapshot_glue::SnapshotFiles;

/// Replica options from the command line.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Primary replication address.
    pub primary: String,
    /// Client API address.
    pub listen: String,
    /// DX API address (None = disabled).
    pub dx_listen: Option<String>,
    /// Bootstrap method for an empty replica.
    pub bootstrap: BootstrapMethod,
    /// Discard all state and bootstrap again.
    pub rebootstrap: bool,
    /// Scrub policy (CORE-6).
    pub scrub: aerodb_snapshot::scrub::ScrubPolicy,
}

/// Client requests a replica refused, by (code, rule): the counters behind
/// `aerodb_client_refusals_total` on `/metrics`.
#[derive(Default)]
pub struct RefusalCounters {
    counts: parking_lot::Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl RefusalCounters {
    /// Counts one refusal.
    pub fn record(&self, code: &'static str, rule_id: Option<&str>) {
        *self.counts.lock().entry((code, rule_id.unwrap_or("").to_string())).or_insert(0) += 1;
    }

    /// The counts, ordered by (code, rule).
    pub fn snapshot(&self) -> Vec<RefusalCount> {
        self.counts.lock().iter().map(|((code, rule_id), count)| RefusalCount { code: (*code).to_string(), rule_id: rule_id.clone(), count: *count }).collect()
    }
}

/// Client API of a replica: never writes (REPL-1), reads through the gate.
pub struct ReplicaService {
    handle: Arc<ReplicaHandle>,
    refusals: Arc<RefusalCounters>,
}

impl ReplicaService {
    /// Wraps a replica handle; refusals are counted in `refusals`.
    pub fn new(handle: Arc<ReplicaHandle>, refusals: Arc<RefusalCounters>) -> Self {
        ReplicaService { handle, refusals }
    }

    /// The replica's `replication.safety` explanation now (default read).
    fn safety_now(&self) -> Value {
        let observed = self.handle.shared.observe();
        let store = self.handle.store();
        let applied = store.as_ref().map(|s| s.applied());
        let inputs = default_read_inputs(&observed, applied.as_ref(), store.as_ref().map_or(0, |s| s.history_horizon()));
        safety_from_decision(&evaluate(&inputs), ReadBound::default(), &observed, applied.as_ref()).to_value()
    }
}

/// The API error for a refused read: every rule's evaluation, and the same
/// evidence the `replication.safety` explanation gives for this read (its
/// `rules_applied` and `conclusion`); `rule_id` is the first failing rule.
/// `observed`/`applied` are the replica's status and store state at the
/// refusal.
pub fn read_refusal_error(r: &ReadRefusal, request: ReadBound, observed: &ReplicaObserved, applied: Option<&AppliedState>) -> ApiError {
    let explanation = safety_from_decision(&r.decision, request, observed, applied);
    let failing = r.decision.first_failure();
    let replica_commit_id = r.decision.rules.get(2).map(|x| x.evidence["replica_commit_id"].clone()).unwrap_or_default();
    let mut evidence = json!({
        "read_upper_bound": r.decision.read_upper_bound,
        "replica_commit_id": replica_commit_id,
        "replica_state": observed.state.name(),
        "rules": r.decision.rules,
        "explanation": explanation.to_value(),
    });
    if let Some(h) = observed.halt.as_ref() {
        evidence["halt"] = serde_json::to_value(h).unwrap_or_default();
        if let Some(halt) = replication_halt(observed, applied) {
            evidence["halt_explanation"] = halt.to_value();
        }
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REPLICATION_HALTED",
            Some(rule_static(&h.rule_id)),
            format!("replica is halted: {} ({})", h.detail, h.code),
            evidence,
        );
    }
    let rule = failing.map_or("REPL-6", |f| f.rule_id);
    let message = match failing {
        Some(f) => format!("read refused: {} does not hold", f.rule_id),
        None => "read refused: safety could not be proven".into(),
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "READ_REFUSED", Some(rule), message, evidence)
}

/// Maps a rule ID string to the static form the error body uses.
fn rule_static(id: &str) -> &'static str {
    aerodb_repl_explain::rules::rule(id).map_or("REPL-5", |r| r.id)
}

impl DocService for ReplicaService {
    fn write(&self, _ops: Vec<ClientOp>) -> Result<CommitId, ApiError> {
        let observed = self.handle.shared.observe();
        self.refusals.record("WRITE_REJECTED", Some("REPL-1"));
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "WRITE_REJECTED",
            Some("REPL-1"),
            "this node is a replica: only the primary accepts writes",
            json!({"role": "replica", "replica_state": observed.state.name(), "primary": observed.primary_addr, "explanation": self.safety_now()}),
        ))
    }

    fn open_read(&self, req: ReadRequest) -> Result<ReadView, ApiError> {
        if let (Some(n), Some(store)) = (req.min_commit, self.handle.store()) {
            if req.wait_ms > 0 && store.applied().commit_id < n {
                // Waiting only delays the evaluation; the gate decides afterwards.
                store.wait_for_commit(n, Duration::from_millis(req.wait_ms.min(MAX_WAIT_MS)));
            }
        }
        self.handle.open_read(req.at, req.min_commit).map_err(|r| {
            let observed = self.handle.shared.observe();
            let applied = self.handle.store().map(|s| s.applied());
            let e = read_refusal_error(&r, ReadBound { at: req.at, min_commit: req.min_commit }, &observed, applied.as_ref());
            self.refusals.record(e.code, e.rule_id);
            e
        })
    }
}

/// Opens the replica's data directory; refuses on role mismatch or
/// corrupt metadata. Returns the lock.
fn open_dir(disk: &dyn Disk, opts: &ReplicaOptions) -> Result<(std::fs::File, Option<ReplicaMetadata>), StartupError> {
    let dir = DataDir::new(&opts.data_dir);
    let lock = dir.lock()?;
    match dir.read_identity(disk)? {
        Some(id) => DataDir::check_role(&id, Role::Replica)?,
        None => {
            // A replica learns its cluster at bootstrap (recorded in replica.json).
            dir.write_identity(disk, Role::Replica, "")?;
        }
    }
    let paths = ReplicaPaths::new(dir.root());
    if opts.rebootstrap {
        for path in [&paths.wal, &paths.dir] {
            if disk.exists(path) {
                disk.remove_dir_all(path).map_err(|e| StartupError::io("remove for --rebootstrap", path, e))?;
            }
        }
        disk.sync_dir(dir.root()).map_err(|e| StartupError::io("sync", dir.root(), e))?;
        tracing::warn!("--rebootstrap: discarded all replica state (including any halt); bootstrapping again");
    }
    let meta_error =
        |e: aerodb_repl_core::metadata::MetadataError| StartupError::Metadata { code: e.check, file: e.file.clone(), detail: format!("{} (F-RC2)", e.detail) };
    let metadata = read_metadata(disk, &paths).map_err(meta_error)?;
    read_halt(disk, &paths).map_err(meta_error)?;
    Ok((lock, metadata))
}

/// Starts the scrub over the replica's bootstrap snapshot and sealed WAL
/// segments (CORE-6): damage is reported, never repaired.
fn start_scrub(disk: Arc<dyn Disk>, opts: &ReplicaOptions, handle: &Arc<ReplicaHandle>) -> Result<Arc<crate::scrub_task::ScrubHandle>, StartupError> {
    let (list_disk, root, handle) = (disk.clone(), opts.data_dir.clone(), handle.clone());
    let sources = crate::scrub_task::ScrubSources {
        targets: Box::new(move || crate::scrub_task::replica_targets(&*list_disk, &root)),
        commit_id: Box::new(move || handle.store().map(|s| s.applied().commit_id)),
        withdraw: None,
    };
    crate::scrub_task::ScrubHandle::start(opts.scrub, disk, sources).map(Arc::new).map_err(|e| StartupError::Other(format!("cannot start the scrub: {e}")))
}

/// Runs a replica until a shutdown signal.
pub fn run_replica(opts: ReplicaOptions) -> Result<(), StartupError> {
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let (lock, metadata) = open_dir(&*disk, &opts)?;
    let shared = Arc::new(ReplicaShared::new(&opts.primary, opts.bootstrap));
    if let Some(m) = metadata {
        // Initialised on disk: say so from the first moment, even while a long
        // recovery runs (the node state is ReplicaActive, not Uninitialized).
        shared.update(|o| {
            o.cluster_id = Some(m.cluster_id.clone());
            o.replica_id = Some(m.replica_id.clone());
            o.bootstrap = Some(m.bootstrap);
            o.bootstrap_state = aerodb_repl_core::status::BootstrapState::Complete;
        });
    }
    let handle = Arc::new(ReplicaHandle::new(shared));
    let stop = Arc::new(StopSignal::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aerodb-http")
        .build()
        .map_err(|e| StartupError::Other(format!("cannot start the runtime: {e}")))?;
    let refusals = Arc::new(RefusalCounters::default());
    let service: Arc<dyn DocService> = Arc::new(ReplicaService::new(handle.clone(), refusals.clone()));
    let result = runtime.block_on(async {
        let signals = ShutdownSignals::install()?;
        let client = bind("client", &opts.listen).await?;
        let dx = match &opts.dx_listen {
            Some(addr) => Some(bind("dx", addr).await?),
            None => None,
        };
        let cfg = ReplicaClientConfig { primary: opts.primary.clone(), method: opts.bootstrap, new_replica_id: random_hex_id()?, root: opts.data_dir.clone() };
        let supervisor = {
            let (handle, disk, stop) = (handle.clone(), disk.clone(), stop.clone());
            std::thread::Builder::new()
                .name("replica-supervisor".into())
                .spawn(move || run_supervisor(handle, disk, Arc::new(SnapshotFiles), cfg, stop))
                .map_err(|e| StartupError::Other(format!("cannot start the replication supervisor: {e}")))?
        };
        let scrub = start_scrub(disk.clone(), &opts, &handle)?;
        let dx_task = dx.map(|listener| {
            let dx = crate::dx::ReplicaDx { handle: handle.clone(), refusals: refusals.clone(), data_dir: opts.data_dir.clone(), scrub: Some(scrub.clone()) };
            tokio::spawn(crate::dx::serve_replica(listener, dx))
        });
        let served = axum::serve(client, client_api::router(service, 64 * 1024)).with_graceful_shutdown(signals.recv()).await;
        stop.stop();
        if let Some(t) = dx_task {
            t.abort();
        }
        let _ = tokio::task::spawn_blocking(move || supervisor.join()).await;
        scrub.stop();
        served.map_err(|e| StartupError::Other(format!("client API server failed: {e}")))
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(lock);
    result?;
    tracing::info!("stopped cleanly");
    Ok(())
}
