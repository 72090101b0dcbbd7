//! Running a primary or standalone node: open the data directory, recover,
//! bind the listeners (printing `listening <surface> <addr>`), serve until
//! SIGINT/SIGTERM, then stop cleanly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_mvcc::{recover_store, PrimaryEngine, Store, StoreRecoveryReport, WriteLimits};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::ChainTip;
use tokio::net::TcpListener;

use crate::client_api;
use crate::datadir::{new_cluster_id, DataDir, Identity, Role};
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
        }
    }
}

/// A primary (or standalone) node's opened state, before serving.
pub struct OpenedPrimary {
    /// Identity on disk.
    pub identity: Identity,
    /// The engine.
    pub engine: Arc<PrimaryEngine>,
    /// What recovery did.
    pub recovery: StoreRecoveryReport,
    _lock: std::fs::File,
}

/// Opens (initialising if new) a primary/standalone data directory and
/// recovers it: verify the WAL, replay it, resume CommitIds at C+1.
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
    let store = Store::new();
    let (appender, recovery) = recover_store(disk, &dir.wal(), &store)?;
    tracing::info!(
        records_verified = recovery.wal.records_verified,
        commit_id = recovery.applied.commit_id,
        end_lsn = recovery.applied.end_lsn,
        state_digest = %recovery.applied.state_digest,
        torn_tail = ?recovery.wal.torn_tail,
        "recovery complete"
    );
    let engine = PrimaryEngine::start(Arc::new(store), appender, opts.limits, opts.segment_target_bytes).map_err(|e| StartupError::Other(format!("cannot start the commit thread: {e}")))?;
    Ok(OpenedPrimary { identity, engine: Arc::new(engine), recovery, _lock: lock })
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
    let cluster_id = new_cluster_id()?;
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

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Runs a primary or standalone node until a shutdown signal.
pub fn run_primary(opts: PrimaryOptions, role: Role) -> Result<(), StartupError> {
    let opened = open_primary(&opts, role)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("aerodb-http").build().map_err(|e| StartupError::Other(format!("cannot start the runtime: {e}")))?;
    let max_body = opts.limits.max_write_set_bytes + 64 * 1024;
    let engine = opened.engine.clone();
    let cluster_id = opened.identity.cluster_id.clone();
    runtime.block_on(async move {
        let client = bind("client", &opts.listen).await?;
        let app = client_api::router(Arc::new(PrimaryService::new(engine)), max_body);
        tracing::info!(role = role.as_str(), %cluster_id, "serving");
        axum::serve(client, app).with_graceful_shutdown(shutdown_signal()).await.map_err(|e| StartupError::Other(format!("client API server failed: {e}")))
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(opened);
    tracing::info!("stopped cleanly");
    Ok(())
}
