//! Running a primary or standalone node: open the data directory, recover,
//! bind the listeners (printing `listening <surface> <addr>`), serve until
//! SIGINT/SIGTERM, then stop cleanly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_mvcc::{GcPolicy, PrimaryEngine, WriteLimits};
use aerodb_snapshot::scrub::ScrubPolicy;
use aerodb_snapshot::{recover_primary_with, PrimaryRecoveryReport, SnapshotPolicy, SnapshotScheduler};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::history::StartupDurability;
use aerodb_wal::log::{Preallocation, SegmentAppender};
use aerodb_wal::mark::{write_mark, DurableMark};
use aerodb_wal::mark_writer::{MarkGate, MarkWriter};
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::ChainTip;
use tokio::net::TcpListener;

use crate::client_api;
use crate::datadir::{random_hex_id, DataDir, Identity, Role};
use crate::durability::{choose_tail_rule, recovery_refusal, seal_startup, DurabilityOptions};
use crate::error::StartupError;
use crate::http::limits::HttpLimits;
use crate::scrub_task::{primary_targets, withdraw_and_replace, ScrubHandle, ScrubSources};
use crate::service::PrimaryService;
use crate::serving::{serve_until_signal, Listening, NodeHttp};

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
    /// `--wal-retention after-oldest-snapshot`: before the oldest snapshot
    /// keep only what known replicas need (within the cap).
    pub wal_retention_after_snapshot: bool,
    /// `--wal-keep-bytes` (RES-2).
    pub wal_keep_bytes: u64,
    /// `--wal-preallocate-bytes`: zeros written ahead of the WAL's records
    /// at a time (0 = never).
    pub wal_preallocate_bytes: u64,
    /// `--forget-replica` ids or names (primary only).
    pub forget_replicas: Vec<String>,
    /// Target segment size.
    pub segment_target_bytes: u64,
    /// Input limits.
    pub limits: WriteLimits,
    /// Bounds of the HTTP surfaces (RES-3).
    pub http: HttpLimits,
    /// Durable mark, accepted loss and fence options (CORE-5, REPL-11).
    pub durability: DurabilityOptions,
    /// Scrub policy (CORE-6).
    pub scrub: ScrubPolicy,
    /// MVCC history retention (`--history-retain-commits`, MVCC-4).
    pub gc: GcPolicy,
    /// `--tls-cert/--tls-key`.
    pub tls: crate::security::TlsServerFiles,
    /// `--repl-token-file` (primary only).
    pub repl_token_file: Option<PathBuf>,
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
            wal_keep_bytes: aerodb_snapshot::DEFAULT_WAL_KEEP_BYTES,
            wal_preallocate_bytes: 0,
            forget_replicas: Vec::new(),
            segment_target_bytes: DEFAULT_SEGMENT_TARGET_BYTES,
            limits: WriteLimits::default(),
            http: HttpLimits::default(),
            durability: DurabilityOptions::default(),
            scrub: ScrubPolicy::default(),
            gc: GcPolicy::default(),
            tls: crate::security::TlsServerFiles::default(),
            repl_token_file: None,
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
    /// What startup did about the durable mark (CORE-5).
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub startup_durability: Arc<StartupDurability>,
    /// The durable mark's gate (positions and counters).
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub mark_gate: Arc<MarkGate>,
    /// The fence (REPL-11); None on a standalone node.
    #[cfg(feature = "replication")]
    pub fence: Option<Arc<aerodb_repl_core::fence::FenceLatch>>,
    /// The fence `--lift-fence` removed at this startup.
    #[cfg(feature = "replication")]
    pub fence_lifted: Option<aerodb_repl_core::fence::Fence>,
    /// The replicas this primary knows (persisted registry, RES-2 holds);
    /// None on a standalone node.
    #[cfg(feature = "replication")]
    pub replicas: Option<Arc<aerodb_repl_net::ReplicaRegistry>>,
    /// Background re-verification (CORE-6).
    pub scrub: Arc<ScrubHandle>,
    /// The options it was opened with.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub options: PrimaryOptions,
    marker: MarkWriter,
    _lock: std::fs::File,
}

impl OpenedPrimary {
    /// Clean shutdown: stops the scrub and the snapshot scheduler, lets the
    /// committer answer every queued write, then writes the clean-shutdown
    /// mark at the exact end of the WAL (CORE-5) while the lock is held.
    pub fn close(&self) {
        self.scrub.stop();
        self.snapshots.stop();
        self.engine.close();
        match self.marker.finish_clean() {
            Ok(Some(_)) => {}
            Ok(None) => tracing::warn!("the shutdown is not clean: the next startup treats it as a crash"),
            Err(e) => tracing::error!(error = %e, "cannot write the clean-shutdown mark: the next startup treats this stop as a crash (CORE-5)"),
        }
    }
}

impl Drop for OpenedPrimary {
    fn drop(&mut self) {
        // No snapshot or mark may be written once the directory lock is
        // released, even if another component still holds them.
        self.scrub.stop();
        self.snapshots.stop();
        self.marker.stop();
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
    let (mut identity, created) = match dir.read_identity(&*disk)? {
        Some(id) => {
            DataDir::check_role(&id, role)?;
            (id, false)
        }
        None => (initialise(&*disk, &dir, role)?, true),
    };
    let durability = opts.durability;
    let choice = choose_tail_rule(&*disk, &dir, &identity, created, durability.accept_lost_history)?;
    let (store, appender, primary_recovery) =
        recover_primary_with(disk.clone(), &dir.snapshots(), &dir.wal(), &identity.cluster_id, choice.rule).map_err(|e| recovery_refusal(&e, role))?;
    let recovery = &primary_recovery.store;
    tracing::info!(
        snapshot_commit_id = primary_recovery.snapshot_used.as_ref().map(|s| s.commit_id),
        rejected_snapshots = primary_recovery.rejected_snapshots.len(),
        removed_incomplete_snapshots = %primary_recovery.removed_incomplete.join(", "),
        replayed_from = recovery.replayed.map(|r| r.0),
        replayed_to = recovery.replayed.map(|r| r.1),
        records_verified = recovery.wal.records_verified,
        commit_id = recovery.applied.commit_id,
        history_horizon = store.history_horizon(),
        end_lsn = recovery.applied.end_lsn,
        state_digest = %recovery.applied.state_digest,
        torn_tail_bytes = recovery.wal.torn_tail.as_ref().map_or(0, |t| t.bytes_dropped),
        "recovery complete"
    );
    #[cfg(feature = "replication")]
    let (fence, fence_lifted) = match role {
        Role::Primary => {
            let (latch, lifted) = crate::durability::open_fence(disk.clone(), &dir, durability.lift_fence)?;
            (Some(latch), lifted)
        }
        _ => {
            if durability.lift_fence {
                tracing::info!("--lift-fence: a standalone node serves no replicas and is never fenced");
            }
            (None, None)
        }
    };
    // CORE-5: the running mark is on disk before any write is accepted.
    let (startup_durability, mark_gate) = seal_startup(&*disk, &dir, &mut identity, &choice, &primary_recovery, &durability)?;
    let marker = MarkWriter::start(disk.clone(), dir.wal(), mark_gate.clone(), durability.mark)
        .map_err(|e| StartupError::Other(format!("cannot start the durable mark writer: {e}")))?;
    let appender = appender.with_preallocation(Preallocation::Chunks(opts.wal_preallocate_bytes));
    let engine = PrimaryEngine::start_with(Arc::new(store), appender, opts.limits, opts.segment_target_bytes, Some(mark_gate.clone()), opts.gc)
        .map_err(|e| StartupError::Other(format!("cannot start the commit thread: {e}")))?;
    let policy = SnapshotPolicy::new(opts.snapshot_every_bytes, opts.wal_retention_after_snapshot).with_wal_keep_bytes(opts.wal_keep_bytes);
    let rejected: Vec<u64> = primary_recovery.rejected_snapshots.iter().map(|r| r.commit_id).collect();
    let snapshots = SnapshotScheduler::start(disk.clone(), dir.snapshots(), &engine, &identity.cluster_id, policy, &rejected)
        .map_err(|e| StartupError::Other(format!("cannot start the snapshot scheduler: {e}")))?;
    #[cfg(feature = "replication")]
    let replicas = match role {
        Role::Primary => {
            let known_after = engine.durable().current().commit_id;
            let registry = Arc::new(aerodb_repl_net::ReplicaRegistry::open(disk.clone(), dir.root().to_path_buf(), known_after, &opts.forget_replicas));
            // RES-2: retention keeps what known replicas still need, within --wal-keep-bytes.
            snapshots.set_wal_holds(registry.clone());
            Some(registry)
        }
        _ => {
            if !opts.forget_replicas.is_empty() {
                tracing::info!("--forget-replica: a standalone node serves no replicas");
            }
            None
        }
    };
    log_snapshots_held(&snapshots);
    let engine = Arc::new(engine);
    let snapshots = Arc::new(snapshots);
    let scrub = start_scrub(disk, &dir, &engine, &snapshots, &identity.cluster_id, opts.scrub)?;
    Ok(OpenedPrimary {
        identity,
        engine,
        primary_recovery,
        snapshots,
        startup_durability: Arc::new(startup_durability),
        mark_gate,
        #[cfg(feature = "replication")]
        fence,
        #[cfg(feature = "replication")]
        fence_lifted,
        #[cfg(feature = "replication")]
        replicas,
        scrub,
        options: opts.clone(),
        marker,
        _lock: lock,
    })
}

/// Starts the scrub over this node's snapshots and sealed WAL segments.
fn start_scrub(
    disk: Arc<dyn Disk>,
    dir: &DataDir,
    engine: &Arc<PrimaryEngine>,
    snapshots: &Arc<SnapshotScheduler>,
    cluster_id: &str,
    policy: ScrubPolicy,
) -> Result<Arc<ScrubHandle>, StartupError> {
    let (list_disk, root, segments, cluster) = (disk.clone(), dir.root().to_path_buf(), engine.segments().clone(), cluster_id.to_string());
    let store = engine.store().clone();
    let sources = ScrubSources {
        targets: Box::new(move || primary_targets(&*list_disk, &root, &segments, &cluster)),
        commit_id: Box::new(move || Some(store.applied().commit_id)),
        withdraw: Some(withdraw_and_replace(disk.clone(), dir.snapshots(), snapshots.clone())),
    };
    ScrubHandle::start(policy, disk, sources).map(Arc::new).map_err(|e| StartupError::Other(format!("cannot start the scrub: {e}")))
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
    // The mark exists before the identity, so every initialised directory has one (CORE-5).
    let window = aerodb_wal::mark_writer::MarkPolicy::default().window_bytes();
    write_mark(disk, &wal, &DurableMark::at(ChainTip::GENESIS, false, window)).map_err(|e| StartupError::io("write durable mark", &wal, e))?;
    let cluster_id = random_hex_id()?;
    let id = dir.write_identity(disk, role, &cluster_id)?;
    tracing::info!(role = role.as_str(), cluster_id, "initialised data directory");
    Ok(id)
}

/// Binds `addr` before anything touches the data directory (a bad or
/// busy address refuses startup with nothing written); the listener is
/// announced later, when the node serves ([`adopt`]).
pub fn bind_early(surface: &str, addr: &str) -> Result<std::net::TcpListener, StartupError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| StartupError::BadFlags(format!("cannot bind the {surface} address {addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| StartupError::Other(format!("cannot configure the {surface} listener: {e}")))?;
    Ok(listener)
}

/// Takes an early-bound listener into the runtime and prints
/// `listening <surface> <bound addr>` on stdout.
pub fn adopt(surface: &str, listener: std::net::TcpListener) -> Result<TcpListener, StartupError> {
    let bound: SocketAddr = listener.local_addr().map_err(|e| StartupError::Other(format!("cannot read bound {surface} address: {e}")))?;
    let listener = TcpListener::from_std(listener).map_err(|e| StartupError::Other(format!("cannot serve the {surface} address: {e}")))?;
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

/// Checks the HTTP bounds before anything touches the data directory.
pub fn check_http_limits(limits: &HttpLimits, write_limits: &WriteLimits) -> Result<(), StartupError> {
    limits.validate(client_api::largest_body(write_limits)).map_err(StartupError::BadFlags)
}

/// Runs a primary or standalone node until a shutdown signal, then stops
/// within the bounded shutdown time (RES-3, see [`crate::serving`]).
pub fn run_primary(opts: PrimaryOptions, role: Role) -> Result<(), StartupError> {
    check_http_limits(&opts.http, &opts.limits)?;
    // Security files are checked before the data directory is touched.
    let tls = crate::security::server_config(&opts.tls)?;
    #[cfg(feature = "replication")]
    let token = match role {
        Role::Primary => crate::security::load_token(opts.repl_token_file.as_deref())?,
        _ => None,
    };
    #[cfg(not(feature = "replication"))]
    if opts.repl_token_file.is_some() {
        return Err(StartupError::BadFlags("--repl-token-file needs a build with replication (P5-I16)".into()));
    }
    // Every address is bound before the data directory is opened or created.
    let client_listener = bind_early("client", &opts.listen)?;
    #[cfg(feature = "replication")]
    let repl_listener = match (&opts.repl_listen, role) {
        (Some(addr), Role::Primary) => Some(bind_early("repl", addr)?),
        _ => None,
    };
    let dx_listener = match &opts.dx_listen {
        Some(addr) if cfg!(feature = "replication") => Some(bind_early("dx", addr)?),
        _ => None,
    };
    let opened = open_primary(&opts, role)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aerodb-http")
        .build()
        .map_err(|e| StartupError::Other(format!("cannot start the runtime: {e}")))?;
    let engine = opened.engine.clone();
    let cluster_id = opened.identity.cluster_id.clone();
    #[cfg(feature = "replication")]
    let mut replication: Option<aerodb_repl_net::PrimaryServer> = None;
    let http = NodeHttp::with_tls(opts.http, tls.clone().map(tokio_rustls::TlsAcceptor::from));
    // Waiting reads are woken by the store itself after each commit.
    let _ = engine.store().set_applied_observer(http.applied.observer());
    runtime.block_on(async {
        let signals = ShutdownSignals::install()?;
        #[cfg(feature = "replication")]
        let client_addr = client_listener.local_addr().ok();
        let client = adopt("client", client_listener)?;
        #[cfg(feature = "replication")]
        let replicas = match repl_listener {
            Some(listener) => {
                let security = aerodb_repl_net::primary::PrimarySecurity { token: token.clone(), tls: tls.clone() };
                let server = crate::primary_repl::start(listener, &opened, client_addr, security)?;
                let registry = server.registry().clone();
                replication = Some(server);
                Some(registry)
            }
            _ => None,
        };
        #[cfg(not(feature = "replication"))]
        let replicas: Option<()> = None;
        #[cfg(feature = "replication")]
        let dx = match dx_listener {
            Some(listener) => {
                let listener = adopt("dx", listener)?;
                let dx = crate::dx::PrimaryDx {
                    role: role.as_str(),
                    engine: engine.clone(),
                    cluster_id: cluster_id.clone(),
                    replicas,
                    recovery: Some(Arc::new(opened.primary_recovery.clone())),
                    snapshots: Some(opened.snapshots.clone()),
                    http: http.clone(),
                    guards: Some(crate::dx::PrimaryGuards::of(&opened)),
                    repl_security: (token.is_some(), tls.is_some()),
                };
                let (router, render) = crate::dx::primary_router(dx);
                Some((Listening { listener, router }, render))
            }
            None => None,
        };
        #[cfg(not(feature = "replication"))]
        let dx = {
            let _: Option<()> = replicas;
            let _ = dx_listener;
            if opts.dx_listen.is_some() {
                tracing::info!("this build has no replication or DX code (P5-I16): --dx-listen is ignored");
            }
            None
        };
        #[cfg(feature = "replication")]
        let fence = opened.fence.clone().map(crate::durability::fence_check);
        #[cfg(not(feature = "replication"))]
        let fence = None;
        let router = http.client_router(Arc::new(PrimaryService::new(engine).with_fence(fence)), opts.limits);
        tracing::info!(role = role.as_str(), %cluster_id, tls = tls.is_some(), "serving");
        serve_until_signal(&http, signals, Listening { listener: client, router }, dx).await;
        Ok::<(), StartupError>(())
    })?;
    // Stops accepting replicas and ends every session before the data directory is released.
    #[cfg(feature = "replication")]
    drop(replication);
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    opened.close();
    drop(opened);
    tracing::info!("stopped cleanly");
    Ok(())
}
