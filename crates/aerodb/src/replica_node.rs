//! Running a replica: open the data directory (role replica, REPL-1),
//! refuse to start on corrupt metadata (F-RC2), honour `--rebootstrap`,
//! serve the client API through the read-safety gate, and run the
//! replication supervisor until SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aerodb_mvcc::{AppliedState, ClientOp, ReadView, WriteLimits};
use aerodb_repl_core::halt::Reason;
use aerodb_repl_core::ids::{ReplicaId, ReplicaName};
use aerodb_repl_core::metadata::{read_halt, read_metadata, BootstrapMethod, ReplicaMetadata, ReplicaPaths};
use aerodb_repl_core::reads::{ReadRefusal, ReplicaHandle};
use aerodb_repl_core::status::ReplicaObserved;
use aerodb_repl_explain::explain::{replication_halt, safety_from_decision, ReadBound};
use aerodb_repl_explain::facts::RefusalCount;
use aerodb_repl_net::tls::TlsTransport;
use aerodb_repl_net::transport::{TcpTransport, Transport};
use aerodb_repl_net::{Replica, ReplicaOptions as RuntimeOptions};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::group::CommitTicket;
use axum::http::StatusCode;
use serde_json::json;

use crate::api_error::ApiError;
use crate::datadir::{random_hex_id, DataDir, Role};
use crate::error::StartupError;
use crate::http::limits::{HttpLimits, SHUTDOWN_CLEANUP_BOUND};
use crate::node::{adopt, bind_early, check_http_limits, ShutdownSignals};
use crate::service::{DocService, ReadRequest};
use crate::serving::{serve_until_signal, Listening, NodeHttp};

/// Replica options from the command line.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Primary replication address.
    pub primary: String,
    /// `--name` as given (validated before anything touches the data directory).
    pub name: Option<String>,
    /// Client API address.
    pub listen: String,
    /// DX API address (None = disabled).
    pub dx_listen: Option<String>,
    /// Bootstrap method for an empty replica.
    pub bootstrap: BootstrapMethod,
    /// Discard all state and bootstrap again.
    pub rebootstrap: bool,
    /// Bounds of the HTTP surfaces (RES-3).
    pub http: HttpLimits,
    /// Scrub policy (CORE-6).
    pub scrub: aerodb_snapshot::scrub::ScrubPolicy,
    /// `--repl-token-file`: authenticate both ways with the primary.
    pub repl_token_file: Option<PathBuf>,
    /// `--tls-ca`: reach the primary over TLS, verified against this CA.
    pub tls_ca: Option<PathBuf>,
    /// `--tls-cert/--tls-key`: TLS on this replica's client and DX APIs.
    pub tls: crate::security::TlsServerFiles,
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
}

/// The API error for a refused read: every rule's evaluation, and the same
/// evidence the `replication.safety` explanation gives for this read (its
/// `rules_applied` and `conclusion`); `rule_id` is the first failing rule.
/// `observed`/`applied` are the replica's status and store state at the
/// refusal.
pub fn read_refusal_error(r: &ReadRefusal, request: ReadBound, observed: &ReplicaObserved, applied: Option<&AppliedState>) -> ApiError {
    let explanation = safety_from_decision(&r.decision, request, observed, applied);
    let replica_commit_id = r.decision.rules.get(2).map(|x| x.evidence["replica_commit_id"].clone()).unwrap_or_default();
    // One source (issue 14, item 2): `evidence.rules` are the gate's rules
    // exactly as the embedded explanation states them (same evaluation,
    // `null` where evidence is missing, same wording), in RS-1..RS-5 order.
    let gate_ids: Vec<&str> = r.decision.rules.iter().map(|x| x.rule_id).collect();
    let rules: Vec<serde_json::Value> =
        explanation.rules_applied.iter().filter(|x| gate_ids.contains(&x.rule_id)).map(|x| serde_json::to_value(x).unwrap_or_default()).collect();
    let failing =
        explanation.rules_applied.iter().find(|x| gate_ids.contains(&x.rule_id) && x.evaluation == Some(false)).map(|f| (f.rule_id, f.description.clone()));
    let mut evidence = json!({
        "read_upper_bound": r.decision.read_upper_bound,
        "replica_commit_id": replica_commit_id,
        "replica_state": observed.state.name(),
        "rules": rules,
        "explanation": explanation.to_value(),
    });
    if let Some(h) = observed.halt() {
        let view = h.view();
        evidence["halt"] = serde_json::to_value(&view).unwrap_or_default();
        if let Some(halt) = replication_halt(observed, applied) {
            evidence["halt_explanation"] = halt.to_value();
        }
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REPLICATION_HALTED",
            Some(rule_static(h.rule_id())),
            format!("replica is halted: {} ({})", view.detail, view.code),
            evidence,
        );
    }
    let (rule, message) = match failing {
        Some((id, description)) => (id, format!("read refused: {id} does not hold: {}", description.trim_end_matches('.'))),
        None => match r.decision.first_failure() {
            // The gate refused on a rule whose evidence the explanation lacks.
            Some(f) => (f.rule_id, format!("read refused: {} could not be proven (evidence missing)", f.rule_id)),
            None => ("REPL-6", "read refused: safety could not be proven".into()),
        },
    };
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "READ_REFUSED", Some(rule), message, evidence)
}

/// Maps a rule ID string to the static form the error body uses.
fn rule_static(id: &str) -> &'static str {
    aerodb_repl_explain::rules::rule(id).map_or("REPL-5", |r| r.id)
}

impl ReplicaService {
    /// The REPL-1 refusal of every write: says what this node is and where
    /// writes go, and what the address it knows is (the primary's
    /// replication port, which accepts only replicas). No read explanation:
    /// a write is not a read.
    fn write_rejected(&self) -> ApiError {
        let observed = self.handle.shared.observe();
        self.refusals.record("WRITE_REJECTED", Some("REPL-1"));
        let primary = observed.primary_addr.clone();
        let client = primary_client_address(&primary, observed.primary_client_addr);
        let message = match &client {
            Some(addr) => format!("this node is a replica and never accepts writes (REPL-1); send writes to the primary's client API at {addr}"),
            None => format!(
                "this node is a replica and never accepts writes (REPL-1); send writes to the primary's client API (its --listen address, \
                 default port 7700), not to {primary}: that is the primary's replication port, which serves replicas only"
            ),
        };
        ApiError::new(
            StatusCode::FORBIDDEN,
            "WRITE_REJECTED",
            Some("REPL-1"),
            message,
            json!({
                "role": "replica",
                "node_state": aerodb_repl_explain::views::replica_node_state(&observed),
                "replica_state": observed.state.name(),
                // From the primary's ACCEPT; null until one arrived (never guessed, F-O1).
                "primary_client_addr": client,
                "primary_replication_addr": primary,
                "writes_accepted_by": "the primary's client API (--listen); its replication address serves replicas only",
            }),
        )
    }
}

/// Where writes go: the client API address the primary sent in its ACCEPT.
/// A primary bound to every interface (`0.0.0.0`, `::`) is named by the
/// host this replica reaches it at (`--primary`) with that port.
pub fn primary_client_address(primary_addr: &str, client: Option<std::net::SocketAddr>) -> Option<String> {
    let client = client?;
    if !client.ip().is_unspecified() {
        return Some(client.to_string());
    }
    let host = primary_addr.rsplit_once(':').map_or(primary_addr, |(h, _)| h);
    Some(format!("{host}:{}", client.port()))
}

impl DocService for ReplicaService {
    fn check_writable(&self) -> Result<(), ApiError> {
        Err(self.write_rejected())
    }

    fn submit(&self, _ops: Vec<ClientOp>) -> Result<CommitTicket, ApiError> {
        Err(self.write_rejected())
    }

    fn open_read(&self, req: ReadRequest) -> Result<ReadView, ApiError> {
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
    let meta_error = |e: aerodb_repl_core::metadata::MetadataError| StartupError::Metadata {
        code: e.check.code(),
        file: e.file.clone(),
        detail: format!("{} (F-RC2)", e.detail),
    };
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
    check_http_limits(&opts.http, &WriteLimits::default())?;
    let name = match &opts.name {
        Some(n) => Some(ReplicaName::parse(n).map_err(|e| StartupError::BadFlags(format!("--name: {e}")))?),
        None => None,
    };
    // Security files are checked before the data directory is touched.
    let token = crate::security::load_token(opts.repl_token_file.as_deref())?;
    let transport: Arc<dyn Transport> = match &opts.tls_ca {
        Some(ca) => Arc::new(TlsTransport::new(crate::security::client_config(ca)?)),
        None => Arc::new(TcpTransport),
    };
    let server_tls = crate::security::server_config(&opts.tls)?;
    // Every address is bound before the data directory is opened or created.
    let client_listener = bind_early("client", &opts.listen)?;
    let dx_listener = opts.dx_listen.as_deref().map(|addr| bind_early("dx", addr)).transpose()?;
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let (lock, metadata) = open_dir(&*disk, &opts)?;
    let new_replica_id = ReplicaId::parse(&random_hex_id()?).map_err(|e| StartupError::Other(e.to_string()))?;
    let seed = u64::from_str_radix(&random_hex_id()?[..16], 16).unwrap_or(0);
    let mut runtime_options = RuntimeOptions::new(opts.data_dir.clone(), opts.primary.clone(), opts.bootstrap, new_replica_id, seed);
    runtime_options.name = name;
    // Initialised on disk: the replica says so from the first moment, even
    // while a long recovery runs (ReplicaActive, not Uninitialized).
    runtime_options.recorded = metadata;
    runtime_options.token = token;
    let http = NodeHttp::with_tls(opts.http, server_tls.map(tokio_rustls::TlsAcceptor::from));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aerodb-http")
        .build()
        .map_err(|e| StartupError::Other(format!("cannot start the runtime: {e}")))?;
    let refusals = Arc::new(RefusalCounters::default());
    let result = runtime.block_on(async {
        let signals = ShutdownSignals::install()?;
        let client = adopt("client", client_listener)?;
        let dx = dx_listener.map(|l| adopt("dx", l)).transpose()?;
        let replica = Replica::open(runtime_options, disk.clone(), transport).map_err(|e| StartupError::Other(format!("cannot start the replica: {e}")))?;
        let handle = replica.handle().clone();
        let progress_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let progress = crate::bootstrap_progress::spawn(handle.clone(), progress_stop.clone());
        // Waiting reads are woken by whichever store the replica installs.
        let _ = handle.set_applied_observer(http.applied.observer());
        let service: Arc<dyn DocService> = Arc::new(ReplicaService::new(handle.clone(), refusals.clone()));
        let scrub = start_scrub(disk.clone(), &opts, &handle)?;
        let dx = dx.map(|listener| {
            let dx = crate::dx::ReplicaDx {
                handle: handle.clone(),
                refusals: refusals.clone(),
                data_dir: opts.data_dir.clone(),
                http: http.clone(),
                scrub: Some(scrub.clone()),
            };
            let (router, render) = crate::dx::replica_router(dx);
            (Listening { listener, router }, render)
        });
        let router = http.client_router(service, WriteLimits::default());
        serve_until_signal(&http, signals, Listening { listener: client, router }, dx).await;
        progress_stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(progress);
        // The replica stops at its next wake-up; the process does not wait
        // for it longer than the cleanup bound (the watchdog ends it anyway).
        let mut replica = replica;
        let joined = tokio::task::spawn_blocking(move || replica.stop());
        if tokio::time::timeout(SHUTDOWN_CLEANUP_BOUND / 2, joined).await.is_err() {
            tracing::warn!("the replica did not stop in time; exiting without it");
        }
        scrub.stop();
        Ok::<(), StartupError>(())
    });
    runtime.shutdown_timeout(Duration::from_millis(500));
    drop(lock);
    result?;
    tracing::info!("stopped cleanly");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// REPL-1: a rejected write names the primary's client API, with the host
    /// the replica reaches the primary at when the primary binds every interface.
    #[test]
    fn repl_1_write_rejected_names_the_primary_client_api_address() {
        assert_eq!(primary_client_address("db1:7701", Some("10.0.0.5:7700".parse().unwrap())).as_deref(), Some("10.0.0.5:7700"));
        assert_eq!(primary_client_address("db1.example:7701", Some("0.0.0.0:7700".parse().unwrap())).as_deref(), Some("db1.example:7700"));
        assert_eq!(primary_client_address("[fd00::1]:7701", Some("[::]:7700".parse().unwrap())).as_deref(), Some("[fd00::1]:7700"));
        assert_eq!(primary_client_address("db1:7701", None), None);
    }
}
