//! Running a primary or standalone node: open the data directory, recover,
//! bind the listeners (printing `listening <surface> <addr>`), serve until
//! SIGINT/SIGTERM, then stop cleanly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_mvcc::{GcPolicy, PrimaryEngine, WriteLimits};
use aerodb_snapshot::{recover_primary, PrimaryRecoveryReport, SnapshotPolicy, SnapshotScheduler};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::ChainTip;
use tokio::net::TcpListener;

use crate::client_api;
use crate::datadir::{random_hex_id, DataDir, Identity, Role};
use crate::error::StartupError;
use crate::service::PrimaryService;

/// Options shared by primary and standalone nodes.
#[derive(Clone, Debug)]
pub struct PrimaryOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Client API address.
    pub listen: String,
    /// DX API address, or None when disabled.
    pub dx_listen: Option<String>,
    /// Replication address (primary only).
    pub repl_listen: Option<String>,
    /// Take a snapshot every N bytes of WAL (0 = never).
    pub snapshot_every_bytes: u64,
    /// Whether WAL wholly before the oldest snapshot may be removed.
    pub wal_retention_after_snapshot: bool,
    /// Target segment size.
    pub segment_target_bytes: u64,
    /// Input limits.
    pub limits: WriteLimits,
    /// MVCC history retention (`--history-retain-commits`, MVCC-4).
    pub gc: GcPolicy,
}

impl PrimaryOptions {
    /// Defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> Self {
        PrimaryOptions {
            data_dir,
            listen: "127.0.0.1:7700".into(),
            dx_listen: Some("127.0.0.1:7702".into()),
            repl_listen: Some("127.0.0.1:7701".into()),
            snapshot_every_bytes: 0,
            wal_retention_after_snapshot: false,
            segment_target_bytes: DEFAULT_SEGMENT_TARGET_BYTES,
            limits: WriteLimits::default(),
            gc: GcPolicy::default(),
        }
    }
}

/// A primary (or standalone) node's opened state, before serving.
pub struct OpenedPrimary {
    /// Identity on disk.
    pub identity: Identity,
    /// The engine.
    pub engine: Arc<PrimaryEngine>,
    /// What the primary's recovery did: snapshot used, snapshots rejected,
    /// incomplete snapshot directories removed, and the WAL replay.
    // Read by the DX API, which a build without replication does not have.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub primary_recovery: PrimaryRecoveryReport,
    /// The snapshot scheduler (snapshots by WAL volume, on request, and
    /// retention). Declared before the lock: it stops before the lock is
    /// released; a holder of another `Arc` should call `stop()` at shutdown.
    pub snapshots: Arc<SnapshotScheduler>,
    _lock: std::fs::File,
}

impl Drop for OpenedPrimary {
    fn drop(&mut self) {
        // No snapshot may be written once the directory lock is released,
        // even if another component still holds the scheduler.
        self.snapshots.stop();
    }
}

/// Opens (initialising if new) a primary/standalone data directory and
/// recovers it: newest valid snapshot, then verify the WAL and replay it
/// after the snapshot, resume CommitIds at C+1; starts the snapshot
/// scheduler.
pub fn open_primary(opts: &PrimaryOptions, role: Role) -> Result<OpenedPrimary, StartupError> {
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let dir = DataDir::new(&opts.data_dir);
    let lock = dir.lock()?;
    let identity = match dir.read_identity(&*disk)? {
        Some(id) => {
            DataDir::check_role(&id, role)?;
            id
        }
        None => initialise(&*disk, &dir, role)?,
    };
    let (store, appender, primary_recovery) = recover_primary(disk.clone(), &dir.snapshots(), &dir.wal(), &identity.cluster_id)
        .map_err(|e| StartupError::Recovery { code: e.code(), rule_id: e.rule_id(), detail: e.to_string() })?;
    let recovery = &primary_recovery.store;
    tracing::info!(
        snapshot = ?primary_recovery.snapshot_used.as_ref().map(|s| s.commit_id),
        rejected_snapshots = primary_recovery.rejected_snapshots.len(),
        removed_incomplete_snapshots = ?primary_recovery.removed_incomplete,
        replayed = ?recovery.replayed,
        records_verified = recovery.wal.records_verified,
        commit_id = recovery.applied.commit_id,
        history_horizon = store.history_horizon(),
        end_lsn = recovery.applied.end_lsn,
        state_digest = %recovery.applied.state_digest,
        torn_tail = ?recovery.wal.torn_tail,
        "recovery complete"
    );
    let engine = PrimaryEngine::start_with_gc(Arc::new(store), appender, opts.limits, opts.segment_target_bytes, opts.gc)
        .map_err(|e| StartupError::Other(format!("cannot start the commit thread: {e}")))?;
    let policy = SnapshotPolicy::new(opts.snapshot_every_bytes, opts.wal_retention_after_snapshot);
    let rejected: Vec<u64> = primary_recovery.rejected_snapshots.iter().map(|r| r.commit_id).collect();
    let snapshots = SnapshotScheduler::start(disk, dir.snapshots(), &engine, &identity.cluster_id, policy, &rejected)
        .map_err(|e| StartupError::Other(format!("cannot start the snapshot scheduler: {e}")))?;
    log_snapshots_held(&snapshots);
    Ok(OpenedPrimary { identity, engine: Arc::new(engine), primary_recovery, snapshots: Arc::new(snapshots), _lock: lock })
}

/// Logs every snapshot the node holds at startup.
fn log_snapshots_held(snapshots: &SnapshotScheduler) {
    match snapshots.held() {
        Ok(held) if held.is_empty() => tracing::info!("no snapshots held"),
        Ok(held) => {
            for s in held {
                tracing::info!(commit_id = s.commit_id, lsn = s.lsn, state_digest = %s.state_digest, versions = s.version_count, data_bytes = s.data_bytes, "snapshot held");
            }
        }
        Err(e) => tracing::warn!(code = e.code(), error = %e, "cannot list snapshots"),
    }
}

/// Initialises an empty directory: WAL genesis segment first, identity
/// last, so a crash in between leaves no identity and initialisation simply
/// runs again (nothing can have been acknowledged).
fn initialise(disk: &dyn Disk, dir: &DataDir, role: Role) -> Result<Identity, StartupError> {
    let wal = dir.wal();
    if disk.exists(&wal) {
        disk.remove_dir_all(&wal).map_err(|e| StartupError::io("remove half-initialised WAL", &wal, e))?;
    }
    disk.create_dir_all(&wal).map_err(|e| StartupError::io("create", &wal, e))?;
    disk.sync_dir(dir.root()).map_err(|e| StartupError::io("sync", dir.root(), e))?;
    let shared: Arc<dyn Disk> = OsDisk::shared();
    SegmentAppender::create(shared, &wal, ChainTip::GENESIS.segment_header()).map_err(|e| StartupError::Other(e.to_string()))?;
    let cluster_id = random_hex_id()?;
    let id = dir.write_identity(disk, role, &cluster_id)?;
    tracing::info!(role = role.as_str(), cluster_id, "initialised data directory");
    Ok(id)
}

/// Binds `addr` and prints `listening <surface> <bound addr>` on stdout.
pub async fn bind(surface: &str, addr: &str) -> Result<TcpListener, StartupError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| StartupError::Other(format!("cannot bind {surface} address {addr}: {e}")))?;
    let bound: SocketAddr = listener.local_addr().map_err(|e| StartupError::Other(format!("cannot read bound {surface} address: {e}")))?;
    announce(surface, bound);
    Ok(listener)
}

/// Prints the `listening` line and flushes it so scripts see it at once.
pub fn announce(surface: &str, addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {surface} {addr}");
    let _ = out.flush();
}

/// SIGINT/SIGTERM handlers, installed before any `listening` line is
/// printed so a signal sent right after startup always means a clean stop.
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers (inside the runtime).
    pub fn install() -> Result<Self, StartupError> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind| signal(kind).map_err(|e| StartupError::Other(format!("cannot install signal handlers: {e}")));
        Ok(ShutdownSignals { interrupt: install(SignalKind::interrupt())?, terminate: install(SignalKind::terminate())? })
    }

    /// Resolves when SIGINT or SIGTERM arrives.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        tracing::info!("shutdown requested");
    }
}

/// Runs a primary or standalone node until a shutdown signal.
pub fn run_primary(opts: PrimaryOptions, role: Role) -> Result<(), StartupError> {
    let opened = open_primary(&opts, role)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aerodb-http")
        .build()
        .map_err(|e| StartupError::Other(format!("cannot start the runtime: {e}")))?;
    let max_body = opts.limits.max_write_set_bytes + 64 * 1024;
    let engine = opened.engine.clone();
    let cluster_id = opened.identity.cluster_id.clone();
    let stop_replication = Arc::new(std::sync::atomic::AtomicBool::new(false));
    runtime.block_on(async {
        let signals = ShutdownSignals::install()?;
        let client = bind("client", &opts.listen).await?;
        #[cfg(feature = "replication")]
        let replicas = match (&opts.repl_listen, role) {
            (Some(addr), Role::Primary) => Some(crate::primary_repl::start(addr, &opened, stop_replication.clone())?),
            _ => None,
        };
        #[cfg(not(feature = "replication"))]
        let replicas: Option<()> = None;
        #[cfg(feature = "replication")]
        if let Some(addr) = &opts.dx_listen {
            let listener = bind("dx", addr).await?;
            let dx = crate::dx::PrimaryDx {
                role: role.as_str(),
                engine: engine.clone(),
                cluster_id: cluster_id.clone(),
                replicas,
                recovery: Some(Arc::new(opened.primary_recovery.clone())),
                snapshots: Some(opened.snapshots.clone()),
            };
            tokio::spawn(crate::dx::serve_primary(listener, dx));
        }
        #[cfg(not(feature = "replication"))]
        if opts.dx_listen.is_some() {
            let _: Option<()> = replicas;
            tracing::info!("this build has no replication or DX code (P5-I16): --dx-listen is ignored");
        }
        let app = client_api::router(Arc::new(PrimaryService::new(engine)), max_body);
        tracing::info!(role = role.as_str(), %cluster_id, "serving");
        axum::serve(client, app).with_graceful_shutdown(signals.recv()).await.map_err(|e| StartupError::Other(format!("client API server failed: {e}")))
    })?;
    stop_replication.store(true, std::sync::atomic::Ordering::Relaxed);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(opened);
    tracing::info!("stopped cleanly");
    Ok(())
}
