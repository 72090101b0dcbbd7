//! `cargo xtask bench`: durable commit throughput and latency, and the
//! replication figures (lag, catch-up, bootstrap, replica reads).
//!
//! Builds the release binary, starts a standalone node on port 0 in a
//! temporary directory, and measures durable commits (one 200-byte JSON
//! put per commit) over HTTP at 1 and 16 concurrent clients, then the same
//! workload through the library's commit path in-process
//! (`aerodb_mvcc::PrimaryEngine`). Operation counts are fixed (not
//! durations); `--quick` runs a tenth of them. Prints one flat JSON object
//! on stdout; progress goes to stderr.

mod engine;
mod node;
mod replication;

use std::time::Duration;

use serde_json::{Map, Value};

/// Size of every benchmark document in bytes (serialized JSON).
pub(crate) const DOC_BYTES: usize = 200;
/// Collection the benchmarks write to.
pub(crate) const COLLECTION: &str = "bench";

const USAGE: &str = "usage: cargo xtask bench [--quick]

Builds `aerodb` in release mode and prints one JSON object with durable
commit throughput (commits/s) and latency (p50/p99 ms) at 1 and 16
concurrent clients, over HTTP and through the library API.

  --quick   run a tenth of the operations";

/// Full-size operation counts.
const C1_OPS: u64 = 2_000;
const C16_OPS: u64 = 20_000;
/// Point reads per read measurement.
const READS: u64 = 50_000;
/// WAL backlog for the catch-up and bootstrap figures (at least 1 GiB).
const BACKLOG_BYTES: u64 = 1 << 30;
/// Unmeasured operations before each measured run (per client).
const WARMUP_PER_CLIENT: u64 = 10;

/// Runs `cargo xtask bench`; returns the process exit code.
pub fn run(args: &[String]) -> i32 {
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            other => {
                eprintln!("cargo xtask bench: unknown argument `{other}`\n{USAGE}");
                return 2;
            }
        }
    }
    match bench(quick) {
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

/// Latencies and wall time of one measured run.
pub(crate) struct RunStats {
    /// Operations measured.
    pub ops: u64,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Per-operation latencies, any order.
    pub latencies: Vec<Duration>,
}

impl RunStats {
    fn per_s(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) in milliseconds, nearest rank.
    fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1].as_secs_f64() * 1e3
    }

    /// Adds `<prefix>_per_s`, `_p50_ms`, `_p99_ms`, `_ops` to `out`.
    fn record(&self, out: &mut Map<String, Value>, prefix: &str) {
        out.insert(format!("{prefix}_per_s"), round(self.per_s(), 1));
        out.insert(format!("{prefix}_p50_ms"), round(self.quantile_ms(0.50), 3));
        out.insert(format!("{prefix}_p99_ms"), round(self.quantile_ms(0.99), 3));
        out.insert(format!("{prefix}_ops"), Value::from(self.ops));
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

fn bench(quick: bool) -> Result<Map<String, Value>, String> {
    let scale = if quick { 10 } else { 1 };
    let (c1_ops, c16_ops) = (C1_OPS / scale, C16_OPS / scale);
    let mut out = Map::new();
    out.insert("quick".into(), Value::Bool(quick));
    out.insert("doc_bytes".into(), Value::from(DOC_BYTES as u64));

    let binary = node::build_release()?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a temporary directory: {e}"))?;

    eprintln!("bench: HTTP, standalone node, {c1_ops} commits at 1 client, {c16_ops} at 16 clients");
    let server = node::Node::start(&binary, &dir.path().join("http"))?;
    let http = (|| -> Result<(RunStats, RunStats), String> {
        node::http_load(&server.url(), "warm", 16, 16 * WARMUP_PER_CLIENT)?;
        let c1 = node::http_load(&server.url(), "c1", 1, c1_ops)?;
        let c16 = node::http_load(&server.url(), "c16", 16, c16_ops)?;
        Ok((c1, c16))
    })();
    let stopped = server.stop();
    let (c1, c16) = http?;
    stopped?;
    c1.record(&mut out, "commit_c1");
    c16.record(&mut out, "commit_c16");

    eprintln!("bench: library API (PrimaryEngine in-process), same workload");
    let lib_c1 = engine::load(&dir.path().join("lib-c1"), 1, c1_ops)?;
    let lib_c16 = engine::load(&dir.path().join("lib-c16"), 16, c16_ops)?;
    lib_c1.record(&mut out, "commit_lib_c1");
    lib_c16.record(&mut out, "commit_lib_c16");

    replication::lag_and_reads(&binary, dir.path(), c16_ops, READS / scale, &mut out)?;
    replication::catch_up_and_bootstrap(&binary, dir.path(), BACKLOG_BYTES / scale, &mut out)?;
    Ok(out)
}

/// Runs `total` operations on `clients` threads; each thread calls `op(n)`
/// for the global operation numbers it claims. Returns the merged stats.
pub(crate) fn run_clients<F>(clients: u64, total: u64, op: F) -> Result<RunStats, String>
where
    F: Fn(u64, u64) -> Result<(), String> + Sync,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let next = AtomicU64::new(0);
    let start = std::time::Instant::now();
    let results: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|client| {
                let (next, op) = (&next, &op);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            return Ok(lat);
                        }
                        let t = std::time::Instant::now();
                        op(client, n)?;
                        lat.push(t.elapsed());
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a client thread panicked".into()))).collect()
    });
    let wall = start.elapsed();
    let mut latencies = Vec::with_capacity(total as usize);
    for r in results {
        latencies.extend(r?);
    }
    Ok(RunStats { ops: total, wall, latencies })
}

#[cfg(test)]
mod tests {
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
    fn quantiles_use_nearest_rank() {
        let stats = RunStats { ops: 100, wall: Duration::from_secs(2), latencies: (1..=100).map(Duration::from_millis).collect() };
        assert_eq!(stats.quantile_ms(0.5), 50.0);
        assert_eq!(stats.quantile_ms(0.99), 99.0);
        assert_eq!(stats.per_s(), 50.0);
    }
}
