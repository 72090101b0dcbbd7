//! Running a replica: open the data directory (role replica, REPL-1),
//! refuse to start on corrupt metadata (F-RC2), honour `--rebootstrap`,
//! serve the client API through the read-safety gate, and run the
//! replication supervisor until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::{ClientOp, ReadView};
use aerodb_repl_core::metadata::{read_halt, read_metadata, BootstrapMethod, ReplicaPaths};
use aerodb_repl_core::reads::{ReadRefusal, ReplicaHandle};
use aerodb_repl_core::status::ReplicaShared;
use aerodb_repl_net::client::{run_replica as run_supervisor, ReplicaClientConfig, StopSignal};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::CommitId;
use axum::http::StatusCode;
use serde_json::json;

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
}

/// Client API of a replica: never writes (REPL-1), reads through the gate.
pub struct ReplicaService {
    handle: Arc<ReplicaHandle>,
}

impl ReplicaService {
    /// Wraps a replica handle.
    pub fn new(handle: Arc<ReplicaHandle>) -> Self {
        ReplicaService { handle }
    }
}

/// The API error for a refused read, carrying every rule's evaluation.
pub fn read_refusal_error(r: &ReadRefusal, state: &str, halt: Option<&aerodb_repl_core::HaltReason>) -> ApiError {
    let failing = r.decision.first_failure();
    let replica_commit_id = r.decision.rules.get(2).map(|x| x.evidence["replica_commit_id"].clone()).unwrap_or_default();
    let mut evidence = json!({
        "read_upper_bound": r.decision.read_upper_bound,
        "replica_commit_id": replica_commit_id,
        "replica_state": state,
        "rules": r.decision.rules,
    });
    if let Some(h) = halt {
        evidence["halt"] = serde_json::to_value(h).unwrap_or_default();
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "REPLICATION_HALTED", Some(rule_static(&h.rule_id)), format!("replica is halted: {} ({})", h.detail, h.code), evidence);
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
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "WRITE_REJECTED",
            Some("REPL-1"),
            "this node is a replica: only the primary accepts writes",
            json!({"role": "replica", "replica_state": observed.state.name(), "primary": observed.primary_addr}),
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
            read_refusal_error(&r, observed.state.name(), observed.halt.as_ref())
        })
    }
}

/// Opens the replica's data directory; refuses on role mismatch or
/// corrupt metadata. Returns the lock.
fn open_dir(disk: &dyn Disk, opts: &ReplicaOptions) -> Result<(std::fs::File, ReplicaPaths), StartupError> {
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
    let meta_error = |e: aerodb_repl_core::metadata::MetadataError| StartupError::Metadata { code: e.check, file: e.file.clone(), detail: format!("{} (F-RC2)", e.detail) };
    read_metadata(disk, &paths).map_err(meta_error)?;
    read_halt(disk, &paths).map_err(meta_error)?;
    Ok((lock, paths))
}

/// Runs a replica until a shutdown signal.
pub fn run_replica(opts: ReplicaOptions) -> Result<(), StartupError> {
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let (lock, _paths) = open_dir(&*disk, &opts)?;
    let shared = Arc::new(ReplicaShared::new(&opts.primary, opts.bootstrap));
    let handle = Arc::new(ReplicaHandle::new(shared));
    let stop = Arc::new(StopSignal::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("aerodb-http").build().map_err(|e| StartupError::Other(format!("cannot start the runtime: {e}")))?;
    let service: Arc<dyn DocService> = Arc::new(ReplicaService::new(handle.clone()));
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
        let dx_task = dx.map(|listener| tokio::spawn(crate::dx::serve_replica(listener, handle.clone())));
        let served = axum::serve(client, client_api::router(service, 64 * 1024)).with_graceful_shutdown(signals.recv()).await;
        stop.stop();
        if let Some(t) = dx_task {
            t.abort();
        }
        let _ = tokio::task::spawn_blocking(move || supervisor.join()).await;
        served.map_err(|e| StartupError::Other(format!("client API server failed: {e}")))
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    drop(lock);
    result?;
    tracing::info!("stopped cleanly");
    Ok(())
}
