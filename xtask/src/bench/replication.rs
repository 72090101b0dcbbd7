//! The replication side of the bench: commit throughput with a replica
//! attached, replication lag under sustained 16-client load, point reads on
//! a replica versus the primary, catch-up over a large WAL backlog, and
//! snapshot creation and bootstrap of about 1 GiB.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_mvcc::{recover_store, ClientOp, PrimaryEngine, Store, WriteLimits};
use aerodb_wal::disk::OsDisk;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::node::{http_load, Node};
use super::{doc_json, key, round, run_clients, COLLECTION};

/// Ops per record in the catch-up backlog: large enough to write about
/// 1 GiB of WAL quickly through the library, small enough to stay a
/// realistic write set.
const BACKLOG_OPS_PER_RECORD: usize = 10;
const READ_CLIENTS: u64 = 8;
const DEADLINE: Duration = Duration::from_secs(1800);

fn primary(binary: &Path, dir: &Path) -> Result<Node, String> {
    let d = dir.display().to_string();
    Node::start_with(
        binary,
        &["primary", "--data-dir", &d, "--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--snapshot-every-bytes", "0"],
        &["client", "repl", "dx"],
    )
}

fn replica(binary: &Path, dir: &Path, primary: &Node, bootstrap: &str) -> Result<Node, String> {
    let d = dir.display().to_string();
    let repl = primary.addr("repl")?.to_string();
    Node::start_with(
        binary,
        &["replica", "--data-dir", &d, "--primary", &repl, "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--bootstrap", bootstrap],
        &["client", "dx"],
    )
}

/// Waits (polling the DX API) until the replica streams at `commit_id` or
/// later (the primary may append a GC record after the last write).
fn wait_caught_up(replica: &Node, commit_id: u64) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let v = replica.dx("/v1/replication")?;
        if v["replica_state"] == "Streaming" && v["replica_commit_id"].as_u64() >= Some(commit_id) {
            return Ok(());
        }
        if v["replica_state"] == "Halted" {
            return Err(format!("replica halted: {}", v["blocking_reason"]));
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("replica did not reach CommitId {commit_id}: {v}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn median_max(mut xs: Vec<u64>) -> (u64, u64) {
    xs.sort_unstable();
    let median = xs.get(xs.len() / 2).copied().unwrap_or(0);
    (median, xs.last().copied().unwrap_or(0))
}

/// Point reads of `keys` by 8 clients; returns reads/s.
fn read_load(url: &str, keys: &[String], total: u64) -> Result<f64, String> {
    let agents: Vec<ureq::Agent> = (0..READ_CLIENTS).map(|_| ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()).collect();
    let stats = run_clients(READ_CLIENTS, total, |client, n| {
        let agent = agents.get(client as usize).ok_or("no agent")?;
        let k = &keys[(n.wrapping_mul(2_654_435_761) % keys.len() as u64) as usize];
        let url = format!("{url}/v1/docs/{COLLECTION}/{k}");
        match agent.get(&url).call() {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!("GET {url}: {}", r.status())),
            Err(e) => Err(format!("GET {url}: {e}")),
        }
    })?;
    Ok(stats.ops as f64 / stats.wall.as_secs_f64().max(1e-9))
}

/// Lag, throughput with a replica, and reads.
pub(crate) fn lag_and_reads(binary: &Path, dir: &Path, commits: u64, reads: u64, out: &mut Map<String, Value>) -> Result<(), String> {
    let p = primary(binary, &dir.join("lag-primary"))?;
    let r = replica(binary, &dir.join("lag-replica"), &p, "wal")?;
    wait_caught_up(&r, 0)?;
    eprintln!("bench: 16 clients x {commits} commits with one replica streaming; sampling lag on the primary");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, dx) = (done.clone(), p.addr("dx")?.to_string());
        std::thread::spawn(move || -> (Vec<u64>, Vec<u64>) {
            let (mut commits, mut bytes) = (Vec::new(), Vec::new());
            while !done.load(Ordering::Relaxed) {
                if let Ok(resp) = ureq::get(&format!("http://{dx}/v1/replication")).call() {
                    if let Ok(v) = resp.into_json::<Value>() {
                        if let Some(lag) = v["data"]["replicas"].get(0).map(|r| r["lag"].clone()) {
                            if let (Some(c), Some(b)) = (lag["commits"].as_u64(), lag["bytes"].as_u64()) {
                                commits.push(c);
                                bytes.push(b);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (commits, bytes)
        })
    };
    let load = http_load(&p.url(), "lag", 16, commits);
    done.store(true, Ordering::Relaxed);
    let (lag_commits, lag_bytes) = sampler.join().map_err(|_| "lag sampler panicked")?;
    let stats = load?;
    out.insert("commit_c16_with_replica_per_s".into(), round(stats.ops as f64 / stats.wall.as_secs_f64().max(1e-9), 1));
    let (cm, cx) = median_max(lag_commits.clone());
    let (bm, bx) = median_max(lag_bytes);
    out.insert("lag_commits_median".into(), Value::from(cm));
    out.insert("lag_commits_max".into(), Value::from(cx));
    out.insert("lag_bytes_median".into(), Value::from(bm));
    out.insert("lag_bytes_max".into(), Value::from(bx));
    out.insert("lag_samples".into(), Value::from(lag_commits.len() as u64));
    wait_caught_up(&r, commits)?;
    eprintln!("bench: {reads} point reads by 8 clients on the primary, then on the replica");
    let keys: Vec<String> = (0..commits).map(|n| key("lag", n)).collect();
    out.insert("primary_reads_per_s".into(), round(read_load(&p.url(), &keys, reads)?, 1));
    out.insert("replica_reads_per_s".into(), round(read_load(&r.url(), &keys, reads)?, 1));
    r.stop()?;
    p.stop()
}

/// Writes a WAL backlog of at least `bytes` into an initialised primary
/// data directory through the library; returns (records, WAL bytes).
fn write_backlog(dir: &Path, bytes: u64) -> Result<(u64, u64), String> {
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
    Ok((end.commit_id, end.lsn))
}

/// Catch-up over a backlog and snapshot creation/bootstrap.
pub(crate) fn catch_up_and_bootstrap(binary: &Path, dir: &Path, backlog_bytes: u64, out: &mut Map<String, Value>) -> Result<(), String> {
    let pdir = dir.join("backlog-primary");
    primary(binary, &pdir)?.stop()?;
    eprintln!("bench: writing a WAL backlog of {} MiB ({BACKLOG_OPS_PER_RECORD} puts per record)", backlog_bytes >> 20);
    let (records, wal_bytes) = write_backlog(&pdir, backlog_bytes)?;
    out.insert("backlog_wal_bytes".into(), Value::from(wal_bytes));
    out.insert("backlog_records".into(), Value::from(records));
    out.insert("catchup_ops_per_record".into(), Value::from(BACKLOG_OPS_PER_RECORD as u64));

    let started = Instant::now();
    let p = primary(binary, &pdir)?;
    out.insert("primary_recovery_s".into(), round(started.elapsed().as_secs_f64(), 3));
    eprintln!("bench: replica catch-up from genesis over the backlog");
    let started = Instant::now();
    let r = replica(binary, &dir.join("catchup-replica"), &p, "wal")?;
    wait_caught_up(&r, records)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    out.insert("catchup_s".into(), round(secs, 3));
    out.insert("catchup_wal_mb_per_s".into(), round(wal_bytes as f64 / 1e6 / secs, 1));
    out.insert("catchup_records_per_s".into(), round(records as f64 / secs, 1));
    r.stop()?;

    eprintln!("bench: snapshot bootstrap of the same state (snapshot created on demand by the primary)");
    let started = Instant::now();
    let r = replica(binary, &dir.join("snapshot-replica"), &p, "snapshot")?;
    wait_caught_up(&r, records)?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let snaps = aerodb_snapshot::list_snapshots(&OsDisk, &pdir.join("snapshots")).map_err(|e| e.to_string())?;
    let data_bytes = snaps.first().and_then(|s| aerodb_snapshot::read_manifest(&OsDisk, &s.path).ok()).map_or(0, |m| m.data_bytes());
    out.insert("snapshot_bytes".into(), Value::from(data_bytes));
    out.insert("bootstrap_1gib_s".into(), round(secs, 3));
    out.insert("bootstrap_mb_per_s".into(), round(data_bytes as f64 / 1e6 / secs, 1));
    r.stop()?;
    p.stop()?;

    eprintln!("bench: snapshot creation through the library on the recovered state");
    let store = Store::new();
    recover_store(OsDisk::shared(), &pdir.join("wal"), &store).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let info =
        aerodb_snapshot::create_snapshot(&OsDisk, &dir.join("bench-snapshots"), &store, "00000000000000000000000000000000").map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    out.insert("snapshot_create_mb_per_s".into(), round(info.data_bytes as f64 / 1e6 / secs, 1));
    drop(store);
    let started = Instant::now();
    let (loaded, _) = aerodb_snapshot::load_snapshot(&OsDisk, &info.path, None).map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    if loaded.applied().commit_id != records {
        return Err(format!("loaded snapshot is at CommitId {}, expected {records}", loaded.applied().commit_id));
    }
    out.insert("snapshot_load_mb_per_s".into(), round(info.data_bytes as f64 / 1e6 / secs, 1));
    Ok(())
}
