//! `cargo xtask bench --vs-postgres`: AeroDB and PostgreSQL 15 in one
//! sitting, interleaved phase by phase (A B A B), with ratio_* keys.
//!
//! Per round (`--rounds`, default 3), the fsync-bound phases: AeroDB commits
//! at 1 and 16 clients on a standalone node and at 16 clients with a replica
//! streaming (lag sampled), then PostgreSQL's `02_commit_throughput.sh` and
//! `05_lag.sh`. Then, again once per round: catch-up and bootstrap (AeroDB,
//! then `03_catchup.sh` and `04_bootstrap.sh`), and point reads (AeroDB,
//! then `06_reads.sh`). Every timed run lasts `--duration` seconds on both
//! sides.

use serde_json::{json, Map, Value};

use super::load::Stop;
use super::postgres::{value, Measurement, Scripts};
use super::replication::{self, median_max};
use super::{round, Ctx, Options};

/// Machine description keys (cores, CPU model, kernel).
pub(crate) fn machine(out: &mut Map<String, Value>) {
    out.insert("bench_build".into(), Value::from(super::build_profile()));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
    out.insert("machine_cores".into(), Value::from(cores));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()));
    out.insert("machine_cpu".into(), cpu.map_or(Value::Null, Value::String));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    out.insert("machine_kernel".into(), kernel.map_or(Value::Null, Value::String));
    out.insert("bench_client".into(), Value::String("aerodb-client (hyper 1, HTTP/1.1 keep-alive) on one tokio thread".into()));
}

/// Median (mean of the middle two for an even count).
fn median(xs: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) { (v[m - 1] + v[m]) / 2.0 } else { v[m] })
}

/// `{"min","median","max","n","better"}` of the per-round ratios
/// `aerodb[i] / postgres[i]`; rounds with a zero denominator are left out.
pub(crate) fn ratio(aerodb: &[f64], postgres: &[f64], better: &str) -> Value {
    let ratios: Vec<f64> = aerodb.iter().zip(postgres).filter(|(_, p)| **p > 0.0).map(|(a, p)| a / p).collect();
    let min = ratios.iter().copied().reduce(f64::min);
    let max = ratios.iter().copied().reduce(f64::max);
    let num = |x: Option<f64>| x.map_or(Value::Null, |x| round(x, 3));
    json!({"min": num(min), "median": num(median(&ratios)), "max": num(max), "n": ratios.len(), "better": better})
}

/// Raw per-round values of one figure on both sides.
#[derive(Default)]
struct Series {
    aerodb: Vec<f64>,
    postgres: Vec<f64>,
}

fn nums(xs: &[f64]) -> Value {
    Value::Array(xs.iter().map(|x| round(*x, 3)).collect())
}

/// The figures compared, in the order of issue 13's table:
/// (ratio key, AeroDB raw key, PostgreSQL raw key, better).
const FIGURES: &[(&str, &str, &str, &str)] = &[
    ("ratio_commit_c1", "aerodb_commit_c1_per_s", "postgres_insert_noreplica_c1_tps", "higher"),
    ("ratio_commit_c16", "aerodb_commit_c16_per_s", "postgres_insert_noreplica_c16_tps", "higher"),
    ("ratio_commit_c16_with_replica", "aerodb_commit_c16_with_replica_per_s", "postgres_insert_replica_c16_tps", "higher"),
    ("ratio_catchup_rows_per_s", "aerodb_catchup_ops_per_s", "postgres_bulk_catchup_rows_rate", "higher"),
    ("ratio_catchup_mb_per_s", "aerodb_catchup_wal_mb_per_s", "postgres_bulk_catchup_wal_rate", "higher"),
    ("ratio_bootstrap_s", "aerodb_bootstrap_s", "postgres_basebackup_plus_standby_ready_s", "lower"),
    ("ratio_bootstrap_mb_per_s", "aerodb_bootstrap_mb_per_s", "postgres_bootstrap_mb_per_s", "higher"),
    ("ratio_replica_reads", "aerodb_replica_reads_per_s", "postgres_kv_pointread_standby_c8_tps", "higher"),
    ("ratio_primary_reads", "aerodb_primary_reads_per_s", "postgres_kv_pointread_primary_c8_tps", "higher"),
    ("ratio_lag_bytes_median", "aerodb_lag_bytes_median", "postgres_current_minus_replay_bytes_median", "lower"),
    ("ratio_lag_bytes_max", "aerodb_lag_bytes_max", "postgres_current_minus_replay_bytes_max", "lower"),
    ("ratio_commit_c1_preallocated", "aerodb_commit_c1_preallocated_per_s", "postgres_insert_noreplica_c1_tps", "higher"),
];

// Indices into FIGURES (and the per-figure series), in FIGURES' order.
const COMMIT_C1: usize = 0;
const COMMIT_C16: usize = 1;
const COMMIT_C16_REPLICA: usize = 2;
const CATCHUP_ROWS: usize = 3;
const CATCHUP_MB: usize = 4;
const BOOTSTRAP_S: usize = 5;
const BOOTSTRAP_MB: usize = 6;
const REPLICA_READS: usize = 7;
const PRIMARY_READS: usize = 8;
const LAG_MEDIAN: usize = 9;
const LAG_MAX: usize = 10;
const COMMIT_C1_PREALLOCATED: usize = 11;

/// The opt-in flag the `ratio_commit_c1_preallocated` runs add (1 MiB chunks).
const PREALLOCATE_FLAGS: &[&str] = &["--wal-preallocate-bytes", "1048576"];

/// Stated in the output: how the two sides' workloads differ.
const NOTES: &[&str] = &[
    "ratios are AeroDB / PostgreSQL per round (rounds paired in order); `better` says which direction favours AeroDB",
    "commits: AeroDB PUT of one 200-byte JSON document per commit over HTTP/1.1 keep-alive from aerodb-client (one tokio thread); PostgreSQL insert.sql (one 200-byte text row per transaction, synchronous_commit=on) from pgbench -M prepared; both fsync before acknowledging; c1/c16 without a replica, c16 with one asynchronous replica streaming; same duration per run",
    "AeroDB c1/c16 run on a standalone node (replication disabled); PostgreSQL's on a primary without a standby",
    "ratio_commit_c1_preallocated: AeroDB c1 on a standalone node started with --wal-preallocate-bytes 1048576 (off by default: zeros written ahead of the WAL's records, as PostgreSQL's wal_init_zero does by default), against the same PostgreSQL c1 runs; every other figure uses the default configuration",
    "catch-up: AeroDB replays a backlog written through the library with 10 puts of 200 bytes per record (rows = puts); PostgreSQL replays its bulk workload (INSERT..SELECT of 100,000 200-byte rows per transaction); both from replica start to replayed everything",
    "bootstrap: AeroDB from replica process start (empty data directory) to the first read admitted by the gate at the primary's CommitId, over a snapshot of the catch-up state; PostgreSQL pg_basebackup -X stream of a database of about the same size plus pg_ctl start to the first successful SELECT (warm page cache, COLD=0)",
    "reads: 8 concurrent clients, point reads by key of 200-byte documents; AeroDB over HTTP (GET, JSON answer), PostgreSQL select_kv.sql via pgbench -M prepared; same number of rows/keys on both",
    "bootstrap sizes differ: 04_bootstrap.sh grows its table in 500k-row batches until pg_database_size >= --size-mb (it overshoots by up to ~130 MB), while AeroDB's snapshot holds the catch-up state; ratio_bootstrap_mb_per_s (AeroDB snapshot bytes / PostgreSQL database bytes, per second) corrects for that; compare aerodb_snapshot_bytes with postgres_db_size_bytes",
    "lag: AeroDB primary durable LSN minus the replica's applied LSN, during the 16-client commit run with a replica, taken once a second (t = 1 .. duration-2, like 05_lag.sh) for the ratio; aerodb_lag_bytes_*_10ms use every 10 ms sample; PostgreSQL pg_current_wal_lsn() - replay_lsn sampled once a second by 05_lag.sh during its own 16-client run",
    "CPU: *_client_cpu_pct is the bench process (load generator) and *_server_cpu_pct the AeroDB nodes, as % of one core; postgres_*_cpu_busy is whole-machine busy % from the scripts",
];

/// Runs the comparison; returns the JSON object.
pub(crate) fn run(ctx: &Ctx, o: &Options) -> Result<Map<String, Value>, String> {
    let duration = o.duration_s.unwrap_or(if o.quick { 5 } else { 30 });
    let size_mb = o.size_mb.unwrap_or(if o.quick { 102 } else { 1024 });
    let rounds = o.rounds.max(1);
    let read_rows: u64 = if o.quick { 10_000 } else { 100_000 };
    Scripts::ensure_postgres()?;
    let pg = Scripts::locate(o.pg_scripts.as_deref())?;
    let d = std::time::Duration::from_secs(duration);
    let res = ctx.root().join("postgres-results");

    let mut out = Map::new();
    machine(&mut out);
    out.insert("quick".into(), Value::Bool(o.quick));
    out.insert("rounds".into(), Value::from(rounds));
    out.insert("duration_s".into(), Value::from(duration));
    out.insert("size_mb".into(), Value::from(size_mb));
    out.insert("read_rows".into(), Value::from(read_rows));
    out.insert("doc_bytes".into(), Value::from(super::DOC_BYTES as u64));
    let mut series: Vec<Series> = FIGURES.iter().map(|_| Series::default()).collect();
    let mut extra: Map<String, Value> = Map::new();
    let mut push_extra = |key: String, v: f64| {
        if let Value::Array(a) = extra.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
            a.push(round(v, 3));
        }
    };

    for r in 1..=rounds {
        eprintln!("bench: --vs-postgres round {r}/{rounds}: commits and lag, AeroDB then PostgreSQL");
        let (c1, c16) = replication::standalone_commits(ctx, Stop::For(d), Stop::For(d))?;
        let c1_preallocated = replication::standalone_c1_with(ctx, PREALLOCATE_FLAGS, Stop::For(d))?;
        let lag = replication::with_replica(ctx, Stop::For(d), None)?;
        series[COMMIT_C1].aerodb.push(c1.per_s());
        series[COMMIT_C1_PREALLOCATED].aerodb.push(c1_preallocated.per_s());
        series[COMMIT_C16].aerodb.push(c16.per_s());
        series[COMMIT_C16_REPLICA].aerodb.push(lag.commits.per_s());
        // Compared at PostgreSQL's cadence (one sample a second); the 10 ms series is kept too.
        let (bm, bx) = median_max(replication::once_per_second(&lag.lag, duration).iter().map(|s| s.bytes).collect());
        series[LAG_MEDIAN].aerodb.push(bm as f64);
        series[LAG_MAX].aerodb.push(bx as f64);
        let (bm10, bx10) = median_max(lag.lag.iter().map(|s| s.bytes).collect());
        push_extra("aerodb_lag_bytes_median_10ms".into(), bm10 as f64);
        push_extra("aerodb_lag_bytes_max_10ms".into(), bx10 as f64);
        for (name, stats) in [("commit_c1", &c1), ("commit_c16", &c16), ("commit_c16_with_replica", &lag.commits)] {
            push_extra(format!("aerodb_{name}_p99_ms"), stats.quantile_ms(0.99));
            if let Some(cpu) = stats.cpu {
                push_extra(format!("aerodb_{name}_client_cpu_pct"), cpu.client_pct);
                push_extra(format!("aerodb_{name}_server_cpu_pct"), cpu.server_pct);
            }
        }

        let commits = pg.run("02_commit_throughput.sh", &[("REPS", "1".into()), ("DURATION", duration.to_string())], &res)?;
        series[COMMIT_C1].postgres.push(value(&commits, "commit", "insert_noreplica_c1_tps")?);
        series[COMMIT_C1_PREALLOCATED].postgres.push(value(&commits, "commit", "insert_noreplica_c1_tps")?);
        series[COMMIT_C16].postgres.push(value(&commits, "commit", "insert_noreplica_c16_tps")?);
        series[COMMIT_C16_REPLICA].postgres.push(value(&commits, "commit", "insert_replica_c16_tps")?);
        for name in ["insert_noreplica_c1", "insert_noreplica_c16", "insert_replica_c16"] {
            if let Ok(v) = value(&commits, "commit", &format!("{name}_cpu_busy")) {
                push_extra(format!("postgres_{name}_cpu_busy"), v);
            }
        }
        let lag_pg = pg.run("05_lag.sh", &[("REPS", "1".into()), ("DURATION", duration.max(5).to_string())], &res)?;
        series[LAG_MEDIAN].postgres.push(value(&lag_pg, "lag", "current_minus_replay_bytes_median")?);
        series[LAG_MAX].postgres.push(value(&lag_pg, "lag", "current_minus_replay_bytes_max")?);
    }

    // The single-run phases too run once per round, interleaved (A B A B):
    // one catch-up or read run on this machine moves by 30-40 % between
    // sittings, so a lone pair is not a ratio to trust.
    for r in 1..=rounds {
        eprintln!("bench: --vs-postgres round {r}/{rounds}: catch-up and bootstrap over {size_mb} MiB, AeroDB then PostgreSQL");
        let cb = replication::catch_up_and_bootstrap(ctx, size_mb << 20, false)?;
        series[CATCHUP_ROWS].aerodb.push(cb.ops_per_s());
        series[CATCHUP_MB].aerodb.push(cb.wal_mb_per_s());
        series[BOOTSTRAP_S].aerodb.push(cb.bootstrap_s);
        series[BOOTSTRAP_MB].aerodb.push(cb.snapshot_bytes as f64 / 1e6 / cb.bootstrap_s.max(1e-9));
        push_extra("aerodb_snapshot_bytes".into(), cb.snapshot_bytes as f64);
        push_extra("aerodb_backlog_wal_bytes".into(), cb.wal_bytes as f64);
        let catchup = pg.run("03_catchup.sh", &[("REPS", "1".into()), ("WAL_TARGET_MB", size_mb.to_string()), ("WORKLOADS", "bulk".into())], &res)?;
        series[CATCHUP_ROWS].postgres.push(value(&catchup, "catchup", "bulk_catchup_rows_rate")?);
        series[CATCHUP_MB].postgres.push(value(&catchup, "catchup", "bulk_catchup_wal_rate")?);
        let boot = pg.run("04_bootstrap.sh", &[("REPS", "1".into()), ("SIZES_MB", size_mb.to_string()), ("COLD", "0".into())], &res)?;
        let pg_boot_s = bootstrap_s(&boot, size_mb)?;
        series[BOOTSTRAP_S].postgres.push(pg_boot_s);
        let db_bytes = value(&boot, "bootstrap", &format!("db_{size_mb}MiB_size"))? * (1u64 << 30) as f64;
        series[BOOTSTRAP_MB].postgres.push(db_bytes / 1e6 / pg_boot_s.max(1e-9));
        push_extra("postgres_db_size_bytes".into(), db_bytes);

        eprintln!("bench: --vs-postgres round {r}/{rounds}: point reads over {read_rows} keys, AeroDB then PostgreSQL");
        let reads = replication::with_replica(ctx, Stop::Ops(read_rows), Some(Stop::For(d)))?;
        if let (Some(p), Some(rr)) = (&reads.primary_reads, &reads.replica_reads) {
            series[REPLICA_READS].aerodb.push(rr.per_s());
            series[PRIMARY_READS].aerodb.push(p.per_s());
            for (name, stats) in [("replica_reads", rr), ("primary_reads", p)] {
                if let Some(cpu) = stats.cpu {
                    push_extra(format!("aerodb_{name}_client_cpu_pct"), cpu.client_pct);
                    push_extra(format!("aerodb_{name}_server_cpu_pct"), cpu.server_pct);
                }
            }
        }
        let reads_pg = pg.run("06_reads.sh", &[("REPS", "1".into()), ("DURATION", duration.to_string()), ("NROWS", read_rows.to_string())], &res)?;
        series[REPLICA_READS].postgres.push(value(&reads_pg, "reads", "kv_pointread_standby_c8_tps")?);
        series[PRIMARY_READS].postgres.push(value(&reads_pg, "reads", "kv_pointread_primary_c8_tps")?);
    }

    for ((ratio_key, a_key, p_key, better), s) in FIGURES.iter().zip(&series) {
        out.insert((*ratio_key).into(), ratio(&s.aerodb, &s.postgres, better));
        out.insert((*a_key).into(), nums(&s.aerodb));
        out.insert((*p_key).into(), nums(&s.postgres));
    }
    out.extend(extra);
    out.insert("notes".into(), Value::Array(NOTES.iter().map(|n| Value::String((*n).into())).collect()));
    Ok(out)
}

/// PostgreSQL's bootstrap time: pg_basebackup plus standby start to the
/// first SELECT (warm cache).
fn bootstrap_s(ms: &[Measurement], size_mb: u64) -> Result<f64, String> {
    Ok(value(ms, "bootstrap", &format!("basebackup_{size_mb}MiB_warm_s"))? + value(ms, "bootstrap", &format!("standby_ready_{size_mb}MiB_warm_s"))?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::bench::postgres::parse_tsv;

    #[test]
    fn ratios_pair_rounds_and_report_min_median_max() {
        let r = ratio(&[10.0, 30.0, 20.0], &[10.0, 10.0, 10.0], "higher");
        assert_eq!(r, json!({"min": 1.0, "median": 2.0, "max": 3.0, "n": 3, "better": "higher"}));
        let r = ratio(&[1.0, 4.0], &[2.0, 0.0], "lower");
        assert_eq!(r, json!({"min": 0.5, "median": 0.5, "max": 0.5, "n": 1, "better": "lower"}), "a zero denominator is left out");
        let r = ratio(&[], &[], "higher");
        assert_eq!(r["median"], Value::Null);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn figure_indices_name_their_figures() {
        assert_eq!(FIGURES[COMMIT_C1].0, "ratio_commit_c1");
        assert_eq!(FIGURES[COMMIT_C16_REPLICA].0, "ratio_commit_c16_with_replica");
        assert_eq!(FIGURES[CATCHUP_ROWS].0, "ratio_catchup_rows_per_s");
        assert_eq!(FIGURES[BOOTSTRAP_MB].0, "ratio_bootstrap_mb_per_s");
        assert_eq!(FIGURES[REPLICA_READS].0, "ratio_replica_reads");
        assert_eq!(FIGURES[PRIMARY_READS].0, "ratio_primary_reads");
        assert_eq!(FIGURES[LAG_MAX].0, "ratio_lag_bytes_max");
        assert_eq!(FIGURES[COMMIT_C1_PREALLOCATED].0, "ratio_commit_c1_preallocated");
        assert_eq!(
            (FIGURES.len(), FIGURES[COMMIT_C16].0, FIGURES[CATCHUP_MB].0, FIGURES[BOOTSTRAP_S].0, FIGURES[LAG_MEDIAN].0),
            (12, "ratio_commit_c16", "ratio_catchup_mb_per_s", "ratio_bootstrap_s", "ratio_lag_bytes_median")
        );
    }

    #[test]
    fn every_ratio_key_is_distinct_and_named_ratio() {
        let mut keys: Vec<&str> = FIGURES.iter().map(|f| f.0).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), FIGURES.len());
        assert!(keys.iter().all(|k| k.starts_with("ratio_")));
    }

    #[test]
    fn postgres_bootstrap_time_is_basebackup_plus_ready() {
        let ms = parse_tsv("t\tbootstrap\tbasebackup_64MiB_warm_s\t1.5\ts\tx\nt\tbootstrap\tstandby_ready_64MiB_warm_s\t0.25\ts\tx\n");
        assert_eq!(bootstrap_s(&ms, 64).unwrap(), 1.75);
        assert!(bootstrap_s(&ms, 1024).is_err());
    }
}
