//! The node phases of the bench: commits on a standalone node; commits with
//! a replica streaming while lag is sampled, then point reads on the primary
//! and the replica; catch-up over a large WAL backlog and snapshot bootstrap
//! to the first admitted read.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_client::{blocking, ErrorKind, ReadOptions, ReplicationView};
use aerodb_mvcc::{recover_store, ClientOp, PrimaryEngine, Store, WriteLimits};
use aerodb_wal::disk::OsDisk;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::cpu;
use super::load::{self, Stop, Work};
use super::node::Node;
use super::{doc_json, key, round, run_clients, Ctx, RunStats, COLLECTION, WARMUP_PER_CLIENT};

/// Ops per record in the catch-up backlog: large enough to write about
/// 1 GiB of WAL quickly through the library, small enough to stay a
/// realistic write set.
pub(crate) const BACKLOG_OPS_PER_RECORD: usize = 10;
/// Concurrent readers.
pub(crate) const READ_CLIENTS: u64 = 8;
/// Concurrent writers.
pub(crate) const WRITE_CLIENTS: u64 = 16;
const DEADLINE: Duration = Duration::from_secs(1800);

pub(crate) fn primary(binary: &Path, dir: &Path) -> Result<Node, String> {
    let d = dir.display().to_string();
    Node::start_with(
        binary,
        &["primary", "--data-dir", &d, "--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--snapshot-every-bytes", "0"],
        &["client", "repl", "dx"],
    )
}

pub(crate) fn replica(binary: &Path, dir: &Path, primary: &Node, bootstrap: &str) -> Result<Node, String> {
    let d = dir.display().to_string();
    let repl = primary.addr("repl")?.to_string();
    Node::start_with(
        binary,
        &["replica", "--data-dir", &d, "--primary", &repl, "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--bootstrap", bootstrap],
        &["client", "dx"],
    )
}

/// The primary's current CommitId.
pub(crate) fn primary_commit_id(primary: &Node) -> Result<u64, String> {
    match primary.replication()? {
        ReplicationView::Primary(p) | ReplicationView::Standalone(p) => Ok(p.commit_id),
        ReplicationView::Replica(_) => Err("expected a primary, found a replica".into()),
    }
}

/// Waits (polling the DX API) until the replica streams at `commit_id` or
/// later (the primary may append a GC record after the last write).
pub(crate) fn wait_caught_up(replica: &Node, commit_id: u64) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match replica.replication()? {
            ReplicationView::Replica(r) => {
                if r.replica_state == "Streaming" && r.replica_commit_id >= Some(commit_id) {
                    return Ok(());
                }
                if r.replica_state == "Halted" {
                    return Err(format!("replica halted: {:?}", r.blocking_reason));
                }
                if start.elapsed() > DEADLINE {
                    return Err(format!("replica did not reach CommitId {commit_id}: {r:?}"));
                }
            }
            other => return Err(format!("expected a replica view, got {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn median_max(mut xs: Vec<u64>) -> (u64, u64) {
    xs.sort_unstable();
    let median = xs.get(xs.len() / 2).copied().unwrap_or(0);
    (median, xs.last().copied().unwrap_or(0))
}

/// Runs `load` against a fresh standalone node started with the extra
/// `flags`, after a 16-client warm-up; stops the node either way.
fn on_warm_standalone<T>(ctx: &Ctx, flags: &[&str], load: impl FnOnce(&aerodb_client::Client, &[u32]) -> Result<T, String>) -> Result<T, String> {
    let server = Node::start(&ctx.binary, &ctx.fresh("http"), flags)?;
    let pids = [server.pid()];
    let result = (|| -> Result<T, String> {
        let client = server.client(WRITE_CLIENTS as usize)?;
        load::run(&ctx.rt, &client, Work::Put { run: "warm".into() }, WRITE_CLIENTS, Stop::Ops(WRITE_CLIENTS * WARMUP_PER_CLIENT), &pids)?;
        load(&client, &pids)
    })();
    let stopped = server.stop();
    let out = result?;
    stopped?;
    Ok(out)
}

/// Durable commits at 1 client on a standalone node started with the extra
/// `flags` (after the same warm-up as [`standalone_commits`]).
pub(crate) fn standalone_c1_with(ctx: &Ctx, flags: &[&str], stop: Stop) -> Result<RunStats, String> {
    on_warm_standalone(ctx, flags, |client, pids| load::run(&ctx.rt, client, Work::Put { run: "c1".into() }, 1, stop, pids))
}

/// Durable commits on a standalone node at 1 and 16 clients (after a warm-up).
pub(crate) fn standalone_commits(ctx: &Ctx, c1: Stop, c16: Stop) -> Result<(RunStats, RunStats), String> {
    on_warm_standalone(ctx, &[], |client, pids| {
        let c1 = load::run(&ctx.rt, client, Work::Put { run: "c1".into() }, 1, c1, pids)?;
        let c16 = load::run(&ctx.rt, client, Work::Put { run: "c16".into() }, WRITE_CLIENTS, c16, pids)?;
        Ok((c1, c16))
    })
}

/// Figures of a primary with one replica streaming.
pub(crate) struct LagFigures {
    /// 16-client commits with the replica attached.
    pub commits: RunStats,
    /// Lag samples taken every 10 ms during the commit run.
    pub lag: Vec<LagSample>,
    /// 8-client point reads on the primary.
    pub primary_reads: Option<RunStats>,
    /// 8-client point reads on the replica.
    pub replica_reads: Option<RunStats>,
}

impl LagFigures {
    /// Adds the stable keys (`commit_c16_with_replica_per_s`, `lag_*`,
    /// `primary_reads_per_s`, `replica_reads_per_s`) and their companions.
    pub(crate) fn record(&self, out: &mut Map<String, Value>) {
        self.commits.record(out, "commit_c16_with_replica");
        let (cm, cx) = median_max(self.lag.iter().map(|s| s.commits).collect());
        let (bm, bx) = median_max(self.lag.iter().map(|s| s.bytes).collect());
        out.insert("lag_commits_median".into(), Value::from(cm));
        out.insert("lag_commits_max".into(), Value::from(cx));
        out.insert("lag_bytes_median".into(), Value::from(bm));
        out.insert("lag_bytes_max".into(), Value::from(bx));
        out.insert("lag_samples".into(), Value::from(self.lag.len() as u64));
        if let Some(r) = &self.primary_reads {
            r.record(out, "primary_reads");
        }
        if let Some(r) = &self.replica_reads {
            r.record(out, "replica_reads");
        }
    }
}

/// One lag sample: seconds since the run started, commits and bytes behind.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LagSample {
    /// Seconds since the sampler started.
    pub at_s: f64,
    /// Commits behind.
    pub commits: u64,
    /// WAL bytes behind (primary durable LSN - replica applied LSN).
    pub bytes: u64,
}

/// The samples at PostgreSQL's cadence (`05_lag.sh`): the first sample at
/// or after each whole second t = 1 ..= duration - 2.
pub(crate) fn once_per_second(samples: &[LagSample], duration_s: u64) -> Vec<LagSample> {
    (1..=duration_s.saturating_sub(2)).filter_map(|t| samples.iter().find(|s| s.at_s >= t as f64).copied()).collect()
}

/// Samples the first replica's lag on the primary's DX API every 10 ms
/// until `done`.
fn lag_sampler(dx_addr: String, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<LagSample>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        let Ok(dx) = blocking::DxClient::new(&dx_addr) else { return samples };
        let start = Instant::now();
        while !done.load(Ordering::Relaxed) {
            if let Ok(env) = dx.replication() {
                if let ReplicationView::Primary(p) = env.data {
                    if let Some(lag) = p.replicas.first().and_then(|r| r.lag) {
                        if let (Some(commits), Some(bytes)) = (lag.commits, lag.bytes) {
                            samples.push(LagSample { at_s: start.elapsed().as_secs_f64(), commits, bytes });
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        samples
    })
}

/// 16-client commits with one replica streaming (lag sampled on the
/// primary), then, if `reads` is given, 8-client point reads of the written
/// keys on the primary and then on the replica.
pub(crate) fn with_replica(ctx: &Ctx, writes: Stop, reads: Option<Stop>) -> Result<LagFigures, String> {
    let p = primary(&ctx.binary, &ctx.fresh("lag-primary"))?;
    let r = replica(&ctx.binary, &ctx.fresh("lag-replica"), &p, "wal")?;
    wait_caught_up(&r, 0)?;
    let pids = [p.pid(), r.pid()];
    eprintln!("bench: 16 clients, {writes}, with one replica streaming; sampling lag on the primary");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = lag_sampler(p.addr("dx")?.to_string(), done.clone());
    let client = p.client(WRITE_CLIENTS as usize)?;
    let commits = load::run(&ctx.rt, &client, Work::Put { run: "lag".into() }, WRITE_CLIENTS, writes, &pids);
    done.store(true, Ordering::Relaxed);
    let lag = sampler.join().map_err(|_| "lag sampler panicked")?;
    let commits = commits?;
    let mut figures = LagFigures { lag, primary_reads: None, replica_reads: None, commits };
    let written = primary_commit_id(&p)?;
    wait_caught_up(&r, written)?;
    if let Some(stop) = reads {
        eprintln!("bench: point reads for {stop} by 8 clients on the primary, then on the replica");
        let keys = Arc::new((0..figures.commits.ops).map(|n| key("lag", n)).collect::<Vec<_>>());
        let on_primary = p.client(READ_CLIENTS as usize)?;
        figures.primary_reads = Some(load::run(&ctx.rt, &on_primary, Work::Get { keys: keys.clone() }, READ_CLIENTS, stop, &pids)?);
        let on_replica = r.client(READ_CLIENTS as usize)?;
        figures.replica_reads = Some(load::run(&ctx.rt, &on_replica, Work::Get { keys }, READ_CLIENTS, stop, &pids)?);
    }
    r.stop()?;
    p.stop()?;
    Ok(figures)
}

/// Writes a WAL backlog of at least `bytes` into an initialised primary
/// data directory through the library; returns (client commits, the last
/// CommitId, WAL bytes). The last CommitId counts every WAL record, GC
/// records the writer appended included.
fn write_backlog(dir: &Path, bytes: u64) -> Result<(u64, u64, u64), String> {
    let store = Store::new();
    let (appender, _) = recover_store(OsDisk::shared(), &dir.join("wal"), &store).map_err(|e| e.to_string())?;
    let engine = PrimaryEngine::start(Arc::new(store), appender, WriteLimits::default(), DEFAULT_SEGMENT_TARGET_BYTES).map_err(|e| e.to_string())?;
    let per_record = (BACKLOG_OPS_PER_RECORD * (super::DOC_BYTES + 40)) as u64;
    let records = bytes / per_record + 1;
    run_clients(16, records, |_, n| {
        let ops = (0..BACKLOG_OPS_PER_RECORD as u64)
            .map(|i| {
                let id = n * BACKLOG_OPS_PER_RECORD as u64 + i;
                ClientOp::Put { collection: COLLECTION.into(), key: key("backlog", id), doc: Bytes::from(doc_json(id)) }
            })
            .collect();
        engine.submit(ops).map_err(|e| e.to_string())?.wait().map(|_| ()).map_err(|e| e.to_string())
    })?;
    // Stopping the engine lets the writer finish a GC record it owes.
    let durable = engine.durable().clone();
    drop(engine);
    let end = durable.current();
    Ok((records, end.commit_id, end.lsn))
}

/// Catch-up and bootstrap figures.
pub(crate) struct CatchUpFigures {
    /// WAL bytes of the backlog.
    pub wal_bytes: u64,
    /// Records of the backlog (client commits and GC records): its last CommitId.
    pub records: u64,
    /// Client commits of the backlog (each with BACKLOG_OPS_PER_RECORD puts).
    pub commits: u64,
    /// Primary restart over the backlog.
    pub primary_recovery_s: f64,
    /// Replica from genesis to streaming at the last CommitId.
    pub catchup_s: f64,
    /// Replica start to its first admitted read at the last CommitId.
    pub bootstrap_s: f64,
    /// When the bootstrap's phases were first seen.
    pub phases: BootstrapPhases,
    /// Snapshot data bytes.
    pub snapshot_bytes: u64,
    /// Library snapshot creation and load rates (MB/s), when measured.
    pub snapshot_lib: Option<(f64, f64)>,
    /// CPU milliseconds each thread of both nodes spent during catch-up
    /// ("primary/<thread>", "replica/<thread>").
    pub catchup_cpu_ms: BTreeMap<String, f64>,
}

impl CatchUpFigures {
    /// Rows (puts) of the backlog.
    fn rows(&self) -> u64 {
        self.commits * BACKLOG_OPS_PER_RECORD as u64
    }

    /// Ops (puts) per second of catch-up.
    pub(crate) fn ops_per_s(&self) -> f64 {
        self.rows() as f64 / self.catchup_s.max(1e-9)
    }

    /// WAL MB/s of catch-up.
    pub(crate) fn wal_mb_per_s(&self) -> f64 {
        self.wal_bytes as f64 / 1e6 / self.catchup_s.max(1e-9)
    }

    /// Adds the stable keys and their companions.
    pub(crate) fn record(&self, out: &mut Map<String, Value>) {
        out.insert("backlog_wal_bytes".into(), Value::from(self.wal_bytes));
        out.insert("backlog_records".into(), Value::from(self.records));
        out.insert("catchup_ops_per_record".into(), Value::from(BACKLOG_OPS_PER_RECORD as u64));
        out.insert("primary_recovery_s".into(), round(self.primary_recovery_s, 3));
        out.insert("catchup_s".into(), round(self.catchup_s, 3));
        out.insert("catchup_wal_mb_per_s".into(), round(self.wal_mb_per_s(), 1));
        out.insert("catchup_records_per_s".into(), round(self.records as f64 / self.catchup_s.max(1e-9), 1));
        out.insert("catchup_ops_per_s".into(), round(self.ops_per_s(), 1));
        // CPU per row is far steadier than rows/s on a shared 2-core machine.
        let cpu_ms: f64 = self.catchup_cpu_ms.values().sum();
        out.insert("catchup_cpu_ms".into(), round(cpu_ms, 1));
        out.insert("catchup_cpu_us_per_row".into(), round(cpu_ms * 1e3 / self.rows().max(1) as f64, 3));
        let by_thread: Map<String, Value> = self.catchup_cpu_ms.iter().filter(|(_, ms)| **ms >= 0.5).map(|(k, ms)| (k.clone(), round(*ms, 1))).collect();
        out.insert("catchup_cpu_ms_by_thread".into(), Value::Object(by_thread));
        out.insert("snapshot_bytes".into(), Value::from(self.snapshot_bytes));
        out.insert("bootstrap_1gib_s".into(), round(self.bootstrap_s, 3));
        out.insert("bootstrap_mb_per_s".into(), round(self.snapshot_bytes as f64 / 1e6 / self.bootstrap_s.max(1e-9), 1));
        if let Some(s) = self.phases.first_byte_s {
            out.insert("bootstrap_first_byte_s".into(), round(s, 3));
        }
        if let Some(s) = self.phases.installing_s {
            out.insert("bootstrap_transfer_done_s".into(), round(s, 3));
        }
        if let Some((create, load)) = self.snapshot_lib {
            out.insert("snapshot_create_mb_per_s".into(), round(create, 1));
            out.insert("snapshot_load_mb_per_s".into(), round(load, 1));
        }
    }
}

/// When the phases of a snapshot bootstrap were first seen, in seconds
/// since the replica started (from its `snapshot_bootstrap` on the DX API).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BootstrapPhases {
    /// The first snapshot byte arrived (the primary prepared its snapshot).
    pub first_byte_s: Option<f64>,
    /// Every byte arrived; installing.
    pub installing_s: Option<f64>,
}

/// How long one waiting read of [`first_admitted_read`] may wait for its
/// CommitId (the server's `MAX_WAIT_MS`): the read returns as soon as the
/// replica applies it, so the wait costs no polling.
const CATCH_UP_WAIT_MS: u64 = 30_000;
/// While bootstrapping: how often the phases are sampled on the DX API
/// (each read waits this long, unless the CommitId is applied sooner).
const BOOTSTRAP_PHASE_SAMPLE_MS: u64 = 20;

/// Reads `key` on the replica with `min_commit` and `wait_ms` until the
/// gate admits the read: the replica answers at the CommitId asked for, so
/// the time this returns is the time a client would first read there.
/// Each read waits on the server (`wait_ms`) for the CommitId to be
/// applied and is woken by the apply, so the bench spends no CPU polling
/// while the replica works (a 503 — the gate refusing, or a bootstrap
/// under way — means "not yet"). `sample` runs after every read that was
/// not admitted.
fn first_admitted_read(replica: &Node, key: &str, min_commit: u64, wait_ms: u64, started: Instant, mut sample: impl FnMut()) -> Result<(), String> {
    let client = blocking::Client::new(&replica.url()).map_err(|e| e.to_string())?;
    let opts = ReadOptions { min_commit: Some(min_commit), wait_ms: Some(wait_ms), ..ReadOptions::default() };
    loop {
        match client.get(COLLECTION, key, &opts) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == Some(ErrorKind::ReplicationHalted) => return Err(format!("replica halted: {e}")),
            Err(e @ aerodb_client::ClientError::Api { status: 503, .. }) => {
                if started.elapsed() > DEADLINE {
                    return Err(format!("no admitted read at CommitId {min_commit} within {DEADLINE:?}: {e}"));
                }
            }
            Err(e) => return Err(format!("read at CommitId {min_commit} failed: {e}")),
        }
        sample();
        // A refusal after the wait (the CommitId applied, the gate not yet
        // passing) returns at once: do not spin on it.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// [`first_admitted_read`] on a bootstrapping replica, noting when the
/// transfer's phases were first seen on its DX API.
fn wait_first_admitted_read(replica: &Node, key: &str, min_commit: u64, started: Instant) -> Result<BootstrapPhases, String> {
    let dx = blocking::DxClient::new(replica.addr("dx")?).map_err(|e| e.to_string())?;
    let mut phases = BootstrapPhases::default();
    first_admitted_read(replica, key, min_commit, BOOTSTRAP_PHASE_SAMPLE_MS, started, || {
        if phases.installing_s.is_some() {
            return;
        }
        if let Ok(ReplicationView::Replica(r)) = dx.replication().map(|env| env.data) {
            let b = r.snapshot_bootstrap.as_ref();
            let (bytes_done, phase, state) = (b.and_then(|b| b.bytes_done), b.and_then(|b| b.phase.clone()), b.map(|b| b.state.clone()));
            let at = started.elapsed().as_secs_f64();
            if phases.first_byte_s.is_none() && bytes_done.unwrap_or(0) > 0 {
                phases.first_byte_s = Some(at);
            }
            if phase.as_deref() == Some("installing") || state.as_deref() == Some("complete") {
                phases.first_byte_s.get_or_insert(at);
                phases.installing_s = Some(at);
            }
        }
    })?;
    Ok(phases)
}

/// Catch-up over a backlog of at least `backlog_bytes`, then snapshot
/// bootstrap of the same state; with `snapshot_lib`, also snapshot creation
/// and load through the library.
pub(crate) fn catch_up_and_bootstrap(ctx: &Ctx, backlog_bytes: u64, snapshot_lib: bool) -> Result<CatchUpFigures, String> {
    let pdir = ctx.fresh("backlog-primary");
    primary(&ctx.binary, &pdir)?.stop()?;
    eprintln!("bench: writing a WAL backlog of {} MiB ({BACKLOG_OPS_PER_RECORD} puts per record)", backlog_bytes >> 20);
    let (commits, records, wal_bytes) = write_backlog(&pdir, backlog_bytes)?;

    let started = Instant::now();
    let p = primary(&ctx.binary, &pdir)?;
    let primary_recovery_s = started.elapsed().as_secs_f64();
    eprintln!("bench: replica catch-up from genesis over the backlog");
    let primary_threads = cpu::thread_cpu(p.pid());
    // The backlog's last key: both replicas are timed to a read of it at the last CommitId.
    let last_key = key("backlog", commits * BACKLOG_OPS_PER_RECORD as u64 - 1);
    let started = Instant::now();
    let r = replica(&ctx.binary, &ctx.fresh("catchup-replica"), &p, "wal")?;
    first_admitted_read(&r, &last_key, records, CATCH_UP_WAIT_MS, started, || {})?;
    let catchup_s = started.elapsed().as_secs_f64().max(1e-9);
    let mut catchup_cpu_ms = BTreeMap::new();
    for (node, before, pid) in [("replica", BTreeMap::new(), r.pid()), ("primary", primary_threads, p.pid())] {
        for (thread, ms) in cpu::thread_cpu_ms_between(&before, &cpu::thread_cpu(pid)) {
            catchup_cpu_ms.insert(format!("{node}/{thread}"), ms);
        }
    }
    r.stop()?;

    eprintln!("bench: snapshot bootstrap of the same state, timed to the first admitted read");
    let started = Instant::now();
    let r = replica(&ctx.binary, &ctx.fresh("snapshot-replica"), &p, "snapshot")?;
    let phases = wait_first_admitted_read(&r, &last_key, records, started)?;
    let bootstrap_s = started.elapsed().as_secs_f64().max(1e-9);
    let snaps = aerodb_snapshot::list_snapshots(&OsDisk, &pdir.join("snapshots")).map_err(|e| e.to_string())?;
    let snapshot_bytes = snaps.first().and_then(|s| aerodb_snapshot::read_manifest(&OsDisk, &s.path).ok()).map_or(0, |m| m.data_bytes());
    r.stop()?;
    p.stop()?;

    let snapshot_lib = if snapshot_lib { Some(library_snapshot(ctx, &pdir, records)?) } else { None };
    Ok(CatchUpFigures { wal_bytes, records, commits, primary_recovery_s, catchup_s, bootstrap_s, phases, snapshot_bytes, snapshot_lib, catchup_cpu_ms })
}

/// Snapshot creation and load through the library on the recovered state
/// of `pdir`; returns (create MB/s, load MB/s).
fn library_snapshot(ctx: &Ctx, pdir: &Path, records: u64) -> Result<(f64, f64), String> {
    eprintln!("bench: snapshot creation through the library on the recovered state");
    let store = Store::new();
    recover_store(OsDisk::shared(), &pdir.join("wal"), &store).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let info = aerodb_snapshot::create_snapshot(&OsDisk, &ctx.root().join("bench-snapshots"), &store, "00000000000000000000000000000000")
        .map_err(|e| e.to_string())?;
    let create = info.data_bytes as f64 / 1e6 / started.elapsed().as_secs_f64().max(1e-9);
    drop(store);
    let started = Instant::now();
    let (loaded, _) = aerodb_snapshot::load_snapshot(&OsDisk, &info.path, None).map_err(|e| e.to_string())?;
    let load = info.data_bytes as f64 / 1e6 / started.elapsed().as_secs_f64().max(1e-9);
    if loaded.applied().commit_id != records {
        return Err(format!("loaded snapshot is at CommitId {}, expected {records}", loaded.applied().commit_id));
    }
    Ok((create, load))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_resampled_at_postgres_cadence() {
        let samples: Vec<LagSample> = (0..600).map(|i| LagSample { at_s: i as f64 * 0.01, commits: i, bytes: 10 * i }).collect();
        let picked = once_per_second(&samples, 5);
        assert_eq!(picked.iter().map(|s| s.commits).collect::<Vec<_>>(), vec![100, 200, 300]);
        assert!(once_per_second(&samples, 2).is_empty());
        assert_eq!(median_max(vec![5, 1, 9]), (5, 9));
    }
}
