//! The async load generator: N client tasks on the bench's one-thread tokio
//! runtime, sharing one keep-alive pool of `aerodb-client`, each recording
//! latencies into its own HDR histogram. Runs stop after a number of
//! operations or after a duration.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_client::{Client, ReadOptions};
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::runtime::Runtime;

use super::cpu::CpuMeter;
use super::{doc_json, key, new_histogram, RunStats, COLLECTION};

/// When a run ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stop {
    /// After exactly this many operations.
    Ops(u64),
    /// After this long (operations started before the deadline complete).
    For(Duration),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Ops(n) => write!(f, "{n} operations"),
            Stop::For(d) => write!(f, "{} s", d.as_secs_f64()),
        }
    }
}

/// What each operation does. Operation `n` is deterministic.
#[derive(Debug)]
pub(crate) enum Work {
    /// One 200-byte put per commit of key `key(run, n)`.
    Put {
        /// Key prefix.
        run: String,
    },
    /// Overwrite key `ow-(n mod keys)` with a 200-byte document.
    Overwrite {
        /// Live keys.
        keys: u64,
        /// Added to `n` to make each pass's documents distinct.
        pass_base: u64,
    },
    /// Point read of a pseudo-random key of `keys`.
    Get {
        /// Keys that exist.
        keys: Arc<Vec<String>>,
    },
}

/// Key of overwrite slot `i`.
pub(crate) fn overwrite_key(i: u64) -> String {
    format!("ow-{i:08}")
}

impl Work {
    async fn exec(&self, client: &Client, n: u64) -> Result<(), String> {
        let result = match self {
            Work::Put { run } => client.put_json(COLLECTION, &key(run, n), Bytes::from(doc_json(n))).await.map(drop),
            Work::Overwrite { keys, pass_base } => {
                client.put_json(COLLECTION, &overwrite_key(n % keys.max(&1)), Bytes::from(doc_json(pass_base + n))).await.map(drop)
            }
            Work::Get { keys } => {
                let k = keys.get((n.wrapping_mul(2_654_435_761) % keys.len().max(1) as u64) as usize).ok_or("no keys to read")?;
                client.get(COLLECTION, k, &ReadOptions::default()).await.map(drop)
            }
        };
        result.map_err(|e| e.to_string())
    }
}

struct Shared {
    next: AtomicU64,
    failed: AtomicBool,
    limit: u64,
    deadline: Option<Instant>,
}

async fn client_task(client: Client, work: Arc<Work>, shared: Arc<Shared>) -> Result<(u64, Histogram<u64>), String> {
    let mut hist = new_histogram();
    let mut done = 0u64;
    loop {
        if shared.failed.load(Ordering::Relaxed) || shared.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= shared.limit {
            break;
        }
        let t = Instant::now();
        if let Err(e) = work.exec(&client, n).await {
            shared.failed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        hist.saturating_record(t.elapsed().as_micros() as u64);
        done += 1;
    }
    Ok((done, hist))
}

/// Runs `work` from `clients` concurrent tasks until `stop`; measures the
/// bench's and the `server_pids`' CPU over the run.
pub(crate) fn run(rt: &Runtime, client: &Client, work: Work, clients: u64, stop: Stop, server_pids: &[u32]) -> Result<RunStats, String> {
    let (limit, deadline) = match stop {
        Stop::Ops(n) => (n, None),
        Stop::For(d) => (u64::MAX, Some(Instant::now() + d)),
    };
    let shared = Arc::new(Shared { next: AtomicU64::new(0), failed: AtomicBool::new(false), limit, deadline });
    let work = Arc::new(work);
    let meter = CpuMeter::start(server_pids);
    let start = Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(client_task(client.clone(), work.clone(), shared.clone()))).collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await.unwrap_or_else(|e| Err(format!("a client task failed: {e}"))));
        }
        results
    });
    let wall = start.elapsed();
    let cpu = meter.finish();
    let mut hist = new_histogram();
    let mut ops = 0;
    for r in results {
        let (done, h) = r?;
        ops += done;
        hist.add(&h).map_err(|e| format!("cannot merge histograms: {e}"))?;
    }
    Ok(RunStats { ops, wall, hist, cpu: Some(cpu) })
}
