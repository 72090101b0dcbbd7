//! `cargo xtask bench`: durable commit throughput and latency, replication
//! (lag, catch-up, bootstrap, replica reads), memory under overwrites, and
//! `--vs-postgres`: the same figures for PostgreSQL 15 in the same sitting.
//!
//! Re-executes itself built with `--release` (so every figure, the
//! in-process library ones included, comes from optimised code), builds
//! the release binary and runs real nodes on port 0 in a temporary
//! directory. HTTP load comes from `aerodb-client` on one tokio thread
//! (N client tasks, keep-alive), so the load generator takes a small share
//! of the two cores; its CPU is reported apart from the nodes' (`*_cpu_pct`).
//! Latency percentiles come from HDR histograms. Prints one flat JSON object
//! on stdout; progress goes to stderr. `--quick` runs a tenth of the size.

mod cpu;
mod engine;
mod load;
mod memory;
pub(crate) mod node;
mod postgres;
mod replication;
mod versus;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

use cpu::CpuUse;
use load::Stop;

/// Size of every benchmark document in bytes (serialized JSON).
pub(crate) const DOC_BYTES: usize = 200;
/// Collection the benchmarks write to.
pub(crate) const COLLECTION: &str = "bench";

const USAGE: &str = "usage: cargo xtask bench [--quick] [--only PHASE] [--size-mb M] [--vs-postgres [--rounds N] [--duration S] [--pg-scripts DIR]]

Builds `aerodb` in release mode, runs real nodes on 127.0.0.1 and prints
one JSON object (keys are described in README.md, section Benchmarks).

  --quick        a tenth of the size (operation counts, backlog, durations)
  --only PHASE   run one phase: commits, lib, replica, catchup, memory (for
                 profiling one path; not with --vs-postgres)
  --vs-postgres  also run the PostgreSQL 15 reference scripts in the same
                 sitting, interleaved phase by phase, and print ratio_* keys
  --rounds N     interleaved rounds of every phase (default 3, minimum 1)
  --duration S   seconds per timed run in --vs-postgres (default 30; 5 with --quick)
  --size-mb M    catch-up backlog and bootstrap size in MiB (default 1024; 102 with --quick)
  --pg-scripts D the PostgreSQL scripts (default ../shared/bench/postgres)";

/// Full-size operation counts.
const C1_OPS: u64 = 2_000;
const C16_OPS: u64 = 20_000;
/// Point reads per read measurement.
const READS: u64 = 50_000;
/// WAL backlog for the catch-up and bootstrap figures (at least 1 GiB).
const BACKLOG_BYTES: u64 = 1 << 30;
/// Unmeasured operations before each measured run (per client).
pub(crate) const WARMUP_PER_CLIENT: u64 = 10;
/// Live keys of the overwrite (memory) phase.
const OVERWRITE_KEYS: u64 = 50_000;

/// Parsed command line.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    /// A tenth of the size.
    pub quick: bool,
    /// Run the PostgreSQL comparison.
    pub vs_postgres: bool,
    /// Interleaved rounds of every phase.
    pub rounds: u32,
    /// Seconds per timed run (comparison).
    pub duration_s: Option<u64>,
    /// Backlog/bootstrap size in MiB (comparison).
    pub size_mb: Option<u64>,
    /// The PostgreSQL scripts.
    pub pg_scripts: Option<PathBuf>,
    /// Run only this phase.
    pub only: Option<String>,
}

/// Phases `--only` selects.
const PHASES: &[&str] = &["commits", "lib", "replica", "catchup", "memory"];

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options { quick: false, vs_postgres: false, rounds: 3, duration_s: None, size_mb: None, pg_scripts: None, only: None };
    let mut it = args.iter();
    let number = |flag: &str, v: Option<&String>| -> Result<u64, String> {
        v.and_then(|s| s.parse::<u64>().ok()).filter(|n| *n > 0).ok_or_else(|| format!("{flag} needs a positive integer"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--vs-postgres" => o.vs_postgres = true,
            "--rounds" => o.rounds = u32::try_from(number("--rounds", it.next())?).map_err(|_| "--rounds is too large")?,
            "--duration" => o.duration_s = Some(number("--duration", it.next())?),
            "--size-mb" => o.size_mb = Some(number("--size-mb", it.next())?),
            "--pg-scripts" => o.pg_scripts = Some(PathBuf::from(it.next().ok_or("--pg-scripts needs a directory")?)),
            "--only" => {
                let phase = it.next().filter(|p| PHASES.contains(&p.as_str())).ok_or_else(|| format!("--only needs one of {PHASES:?}"))?;
                o.only = Some(phase.clone());
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !o.vs_postgres && (o.duration_s.is_some() || o.pg_scripts.is_some()) {
        return Err("--duration and --pg-scripts apply to --vs-postgres".into());
    }
    if o.vs_postgres && o.only.is_some() {
        return Err("--only does not apply to --vs-postgres".into());
    }
    Ok(Some(o))
}

/// Set in the environment of the release build of xtask that
/// `cargo xtask bench` re-executes (so it does not re-execute again).
const REEXEC_ENV: &str = "AERODB_BENCH_RELEASE";

/// The profile this xtask was built in (`release` or `dev`).
pub(crate) fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    }
}

/// `cargo xtask` runs in the dev profile (so `cargo test` stays fast):
/// the library figures (`commit_lib_*`, `snapshot_*_mb_per_s`) would come
/// from unoptimised workspace crates. A dev build therefore builds xtask
/// and `aerodb` with `--release` and re-executes itself; returns the
/// child's exit code, or `None` when this is already the release build.
fn reexec_release(args: &[String]) -> Option<i32> {
    if !cfg!(debug_assertions) || std::env::var_os(REEXEC_ENV).is_some() {
        return None;
    }
    let exe = match node::build_release_bin(&["xtask", "aerodb"], "xtask") {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("cargo xtask bench: {e}");
            return Some(1);
        }
    };
    eprintln!("bench: re-executing the release build {}", exe.display());
    match std::process::Command::new(&exe).arg("bench").args(args).env(REEXEC_ENV, "1").status() {
        Ok(status) => Some(status.code().unwrap_or(1)),
        Err(e) => {
            eprintln!("cargo xtask bench: cannot run {}: {e}", exe.display());
            Some(1)
        }
    }
}

/// Runs `cargo xtask bench`; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    if let Some(code) = parse_args(args).ok().flatten().and_then(|_| reexec_release(args)) {
        return code;
    }
    let options = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("cargo xtask bench: {e}\n{USAGE}");
            return 2;
        }
    };
    let result = Ctx::new().and_then(|ctx| if options.vs_postgres { versus::run(&ctx, &options) } else { bench(&ctx, &options) });
    match result {
        Ok(report) => {
            println!("{}", Value::Object(report));
            0
        }
        Err(e) => {
            eprintln!("cargo xtask bench: {e}");
            1
        }
    }
}

/// What every phase needs: the runtime the load runs on, the release
/// binary, and a temporary directory.
pub(crate) struct Ctx {
    /// One-thread runtime for all async HTTP load.
    pub rt: tokio::runtime::Runtime,
    /// The release `aerodb`.
    pub binary: PathBuf,
    dir: tempfile::TempDir,
    seq: std::sync::atomic::AtomicU64,
}

impl Ctx {
    fn new() -> Result<Ctx, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
        let binary = node::build_release()?;
        let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        Ok(Ctx { rt, binary, dir, seq: std::sync::atomic::AtomicU64::new(0) })
    }

    /// A fresh directory path `<tmp>/<name>-<n>`.
    pub(crate) fn fresh(&self, name: &str) -> PathBuf {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir.path().join(format!("{name}-{n}"))
    }

    /// The temporary directory.
    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// A latency histogram in microseconds, 1 µs .. 10 min, 3 significant digits.
#[allow(clippy::expect_used)] // constant, valid bounds: this cannot fail
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latencies, CPU and wall time of one measured run.
pub(crate) struct RunStats {
    /// Operations completed.
    pub ops: u64,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Per-operation latencies in microseconds.
    pub hist: Histogram<u64>,
    /// Client and server CPU (HTTP runs only).
    pub cpu: Option<CpuUse>,
}

impl RunStats {
    pub(crate) fn per_s(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) in milliseconds.
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1e3
    }

    /// Adds `<prefix>_per_s`, `_p50_ms`, `_p99_ms`, `_ops` and, for HTTP
    /// runs, `_client_cpu_pct` and `_server_cpu_pct` (100 = one core).
    pub(crate) fn record(&self, out: &mut Map<String, Value>, prefix: &str) {
        out.insert(format!("{prefix}_per_s"), round(self.per_s(), 1));
        out.insert(format!("{prefix}_p50_ms"), round(self.quantile_ms(0.50), 3));
        out.insert(format!("{prefix}_p99_ms"), round(self.quantile_ms(0.99), 3));
        out.insert(format!("{prefix}_ops"), Value::from(self.ops));
        if let Some(cpu) = self.cpu {
            out.insert(format!("{prefix}_client_cpu_pct"), round(cpu.client_pct, 1));
            out.insert(format!("{prefix}_server_cpu_pct"), round(cpu.server_pct, 1));
        }
    }
}

pub(crate) fn round(x: f64, digits: i32) -> Value {
    let f = 10f64.powi(digits);
    serde_json::Number::from_f64((x * f).round() / f).map_or(Value::Null, Value::Number)
}

/// A 200-byte JSON document (serialized without whitespace) unique to `n`.
pub(crate) fn doc_json(n: u64) -> String {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    let tail = "\"}";
    let pad = DOC_BYTES.saturating_sub(head.len() + tail.len());
    let doc = format!("{head}{}{tail}", "x".repeat(pad));
    debug_assert_eq!(doc.len(), DOC_BYTES.max(head.len() + tail.len()));
    doc
}

/// Key of operation `n` in run `run`.
pub(crate) fn key(run: &str, n: u64) -> String {
    format!("{run}-{n:08}")
}

fn bench(ctx: &Ctx, options: &Options) -> Result<Map<String, Value>, String> {
    let (quick, only) = (options.quick, options.only.as_deref());
    let scale = if quick { 10 } else { 1 };
    let backlog_bytes = options.size_mb.map_or(BACKLOG_BYTES / scale, |mb| mb << 20);
    let (c1_ops, c16_ops) = (C1_OPS / scale, C16_OPS / scale);
    let runs = |phase: &str| only.is_none_or(|o| o == phase);
    let mut out = Map::new();
    out.insert("quick".into(), Value::Bool(quick));
    out.insert("doc_bytes".into(), Value::from(DOC_BYTES as u64));
    versus::machine(&mut out);

    if runs("commits") {
        eprintln!("bench: HTTP, standalone node, {c1_ops} commits at 1 client, {c16_ops} at 16 clients");
        let (c1, c16) = replication::standalone_commits(ctx, Stop::Ops(c1_ops), Stop::Ops(c16_ops))?;
        c1.record(&mut out, "commit_c1");
        c16.record(&mut out, "commit_c16");
    }
    if runs("lib") {
        eprintln!("bench: library API (PrimaryEngine in-process), same workload");
        let lib_c1 = engine::load(&ctx.fresh("lib-c1"), 1, c1_ops)?;
        let lib_c16 = engine::load(&ctx.fresh("lib-c16"), 16, c16_ops)?;
        lib_c1.record(&mut out, "commit_lib_c1");
        lib_c16.record(&mut out, "commit_lib_c16");
    }
    if runs("replica") {
        let lag = replication::with_replica(ctx, Stop::Ops(c16_ops), Some(Stop::Ops(READS / scale)))?;
        lag.record(&mut out);
    }
    if runs("catchup") {
        let cb = replication::catch_up_and_bootstrap(ctx, backlog_bytes, true)?;
        cb.record(&mut out);
    }
    if runs("memory") {
        let mem = memory::overwrite(ctx, OVERWRITE_KEYS / scale)?;
        mem.record(&mut out);
    }
    Ok(out)
}

/// Runs `total` operations on `clients` threads (for in-process library
/// runs); each thread calls `op(client, n)` for the operation numbers it
/// claims. Returns the merged stats.
pub(crate) fn run_clients<F>(clients: u64, total: u64, op: F) -> Result<RunStats, String>
where
    F: Fn(u64, u64) -> Result<(), String> + Sync,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(0);
    let start = std::time::Instant::now();
    let results: Vec<Result<Histogram<u64>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (next, op) = (&next, &op);
                s.spawn(move || {
                    let mut hist = new_histogram();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            return Ok(hist);
                        }
                        let t = std::time::Instant::now();
                        op(client, n)?;
                        hist.saturating_record(t.elapsed().as_micros() as u64);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a client thread panicked".into()))).collect()
    });
    let wall = start.elapsed();
    let mut hist = new_histogram();
    for r in results {
        hist.add(&r?).map_err(|e| format!("cannot merge histograms: {e}"))?;
    }
    Ok(RunStats { ops: total, wall, hist, cpu: None })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn documents_are_200_bytes_of_json() {
        for n in [0, 7, 12_345, u64::MAX] {
            let d = doc_json(n);
            assert_eq!(d.len(), DOC_BYTES);
            let v: Value = serde_json::from_str(&d).unwrap();
            assert_eq!(v["n"], n);
            assert_eq!(serde_json::to_string(&v).unwrap(), d, "already canonical");
        }
    }

    #[test]
    fn quantiles_come_from_the_histogram_within_its_precision() {
        let mut hist = new_histogram();
        for ms in 1..=100u64 {
            hist.record(ms * 1000).unwrap();
        }
        let stats = RunStats { ops: 100, wall: Duration::from_secs(2), hist, cpu: Some(CpuUse { client_pct: 12.34, server_pct: 150.0 }) };
        assert!((stats.quantile_ms(0.5) - 50.0).abs() < 0.1, "{}", stats.quantile_ms(0.5));
        assert!((stats.quantile_ms(0.99) - 99.0).abs() < 0.1, "{}", stats.quantile_ms(0.99));
        assert_eq!(stats.per_s(), 50.0);
        let mut out = Map::new();
        stats.record(&mut out, "x");
        let mut keys: Vec<&str> = out.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["x_client_cpu_pct", "x_ops", "x_p50_ms", "x_p99_ms", "x_per_s", "x_server_cpu_pct"]);
        assert_eq!(out["x_client_cpu_pct"], 12.3);
    }

    #[test]
    fn arguments_parse_and_comparison_flags_need_vs_postgres() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_args(&args("--quick --vs-postgres --rounds 4 --duration 5 --size-mb 64 --pg-scripts /x")).unwrap().unwrap();
        assert_eq!((o.quick, o.vs_postgres, o.rounds, o.duration_s, o.size_mb), (true, true, 4, Some(5), Some(64)));
        assert_eq!(o.pg_scripts.as_deref(), Some(Path::new("/x")));
        assert!(parse_args(&args("--duration 5")).is_err());
        assert!(parse_args(&args("--vs-postgres --rounds 0")).is_err());
        assert!(parse_args(&args("--nope")).is_err());
        assert_eq!(parse_args(&args("--only catchup")).unwrap().unwrap().only.as_deref(), Some("catchup"));
        assert_eq!(parse_args(&args("--only catchup --size-mb 256")).unwrap().unwrap().size_mb, Some(256));
        assert!(parse_args(&args("--only nothing")).is_err());
        assert!(parse_args(&args("--vs-postgres --only catchup")).is_err());
        assert_eq!(parse_args(&args("--help")).unwrap(), None);
    }
}
