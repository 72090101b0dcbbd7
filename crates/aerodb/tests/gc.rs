#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! Garbage collection with real `aerodb` processes over real TCP: the
//! primary writes GC records (`--history-retain-commits`), replicas apply
//! them, every node ends with the same horizon, state digest and versions,
//! and every node refuses reads below the horizon under RS-4 (MVCC-4,
//! F-G1, RS-4). Crash points around the GC record and during a snapshot
//! taken after GC show recovery reaching the horizon and digest of a node
//! that never crashed (F-G2).

mod repl_crash_support;
mod repl_support;

use serde_json::{json, Value};

use repl_crash_support::*;
use repl_support::{start_primary, wait_for, Node};

/// `--history-retain-commits` of these tests: a GC record every 2 commits
/// once 22 exist (step = max(2, N/10)).
const RETAIN: u64 = 20;
const STEP: u64 = 2;
/// Keys the overwrite workload cycles through.
const KEYS_N: u64 = 10;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn mvcc(node: &Node) -> Value {
    let (status, body) = node.dx_get("/v1/mvcc");
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn num(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Overwrites (and every seventh write deletes) keys `k0..k9`; returns the
/// CommitIds acknowledged. CommitIds increase but skip the GC records'.
fn overwrite(primary: &Node, tag: &str, n: u64) -> Vec<u64> {
    let mut acked = Vec::new();
    for i in 0..n {
        let key = format!("k{}", i % KEYS_N);
        let (status, body) = if i % 7 == 6 {
            repl_support::http("DELETE", &format!("http://{}/v1/docs/{COLL}/{key}", primary.client), None)
        } else {
            primary.put(COLL, &key, &json!({"tag": tag, "i": i, "pad": "x".repeat(100)}))
        };
        assert_eq!(status, 200, "{body}");
        let c = num(&body, "commit_id");
        assert!(acked.last().is_none_or(|l| c > *l), "CommitIds increase");
        acked.push(c);
    }
    acked
}

/// Waits until the primary owes no GC record: the policy is due only right
/// after a commit, so once `C - N < H + step` nothing changes until the
/// next write. Returns its `/v1/mvcc`.
fn settled(primary: &Node, retain: u64, step: u64) -> Value {
    wait_for("the primary to write the GC record its last commit made due", || {
        let m = mvcc(primary);
        (num(&m, "commit_id") < num(&m, "history_horizon") + retain + step).then_some(m)
    })
}

/// Every node's `/v1/mvcc` says the same horizon, digest, CommitId and
/// retained versions; returns the horizon.
fn assert_same_history(primary: &Node, replicas: &[&Node]) -> u64 {
    let p = mvcc(primary);
    for r in replicas {
        let m = mvcc(r);
        for field in ["commit_id", "state_digest", "history_horizon", "versions"] {
            assert_eq!(m[field], p[field], "{field}: replica {m} vs primary {p}");
        }
        assert_eq!(m["gc"]["versions_awaiting_purge"], 0, "{m}");
    }
    num(&p, "history_horizon")
}

/// RS-4 on `node`: a read below the horizon is refused with the numbers.
fn assert_rs_4(node: &Node, horizon: u64) {
    let (status, body) = node.get(COLL, "k1", &format!("?at={}", horizon - 1));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "READ_REFUSED", "{body}");
    assert_eq!(body["error"]["rule_id"], "RS-4", "{body}");
    let text = body["error"]["evidence"].to_string();
    assert!(text.contains(&format!("\"history_horizon\":{horizon}")), "{body}");
    assert!(text.contains(&format!("\"read_upper_bound\":{}", horizon - 1)), "{body}");
}

/// The last GC record in a data directory's WAL: (CommitId, horizon).
fn last_gc(dir: &std::path::Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new(repl_support::bin()).args(["wal-dump", "--data-dir", dir.to_str().unwrap()]).env("RUST_LOG", "off").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().rev().find_map(|l| {
        let horizon = l.split("[gc horizon=").nth(1)?.trim_end_matches(']').parse().ok()?;
        let c = l.split_whitespace().find_map(|w| w.strip_prefix("commit_id="))?.parse().ok()?;
        Some((c, horizon))
    })
}

/// MVCC-4, F-G1, RS-4, REPL-4, RES-1: a primary keeping 20 commits of
/// history writes GC records while it overwrites ten keys; a replica that
/// streamed the WAL from genesis and one bootstrapped later from a snapshot
/// (which carries the horizon) apply them over real TCP. Every node ends
/// at the same CommitId with the same digest, horizon and retained
/// versions, its WAL a prefix of the primary's; reads at and above the
/// horizon answer the same everywhere, and reads below it are refused
/// under RS-4 with the numbers on the primary and on both replicas.
#[test]
fn f_g1_mvcc_4_gc_over_tcp_keeps_digests_equal_and_refuses_reads_below_the_horizon_everywhere() {
    let t = tmp();
    let primary = start_primary(&t.path().join("p"), &["--history-retain-commits", &RETAIN.to_string()], &[]);
    let by_wal = start_replica_logged(&t.path().join("r1"), primary.repl.as_ref().unwrap(), "wal", &[], &t.path().join("r1.log"));
    overwrite(&primary, "a", 150);
    settled(&primary, RETAIN, STEP);
    let by_snapshot = start_replica_logged(&t.path().join("r2"), primary.repl.as_ref().unwrap(), "snapshot", &[], &t.path().join("r2.log"));
    let acked = overwrite(&primary, "b", 60);
    let m = settled(&primary, RETAIN, STEP);
    let (c, h) = (num(&m, "commit_id"), num(&m, "history_horizon"));
    assert!(c > *acked.last().unwrap(), "GC records took CommitIds of their own");
    assert!(c - h > RETAIN && c - h <= RETAIN + STEP, "C - N at the last GC record: C {c}, H {h}");
    assert!(num(&m["gc"], "gc_records_applied") >= 50, "{m}");
    assert_converged(&primary, &[&by_wal, &by_snapshot]);
    assert_eq!(assert_same_history(&primary, &[&by_wal, &by_snapshot]), h);
    // RES-1: ten live keys, a retention window of 20 single-op commits.
    assert!(num(&m, "versions") <= KEYS_N + RETAIN + STEP, "{m}");
    let boot = by_snapshot.replication()["snapshot_bootstrap"].clone();
    assert!(num(&boot, "boundary_commit_id") > RETAIN, "the snapshot was cut after GC: {boot}");

    for node in [&primary, &by_wal, &by_snapshot] {
        assert_rs_4(node, h);
        for r in [h, c] {
            for k in 0..KEYS_N {
                let path = format!("?at={r}");
                assert_eq!(node.get(COLL, &format!("k{k}"), &path), primary.get(COLL, &format!("k{k}"), &path), "k{k} at {r}");
            }
            let scan = |n: &Node| repl_support::http("GET", &format!("http://{}/v1/docs/{COLL}?at={r}", n.client), None);
            assert_eq!(scan(node), scan(&primary));
        }
        let (status, body) = node.dx_get(&format!("/v1/explain/read?collection={COLL}&key=k1&at={}", h - 1));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["conclusion"]["outcome"], "refused", "{body}");
        assert_eq!(body["data"]["conclusion"]["refused_by"], "RS-4", "{body}");
        let (status, metrics) = repl_support::try_http("GET", &format!("http://{}/metrics", node.dx.as_ref().unwrap()), None).unwrap();
        assert_eq!(status, 200);
        assert!(metrics.as_str().unwrap().contains(&format!("aerodb_history_horizon {h}")), "{metrics}");
    }
    assert_eq!(last_gc(&primary.data_dir).map(|g| g.1), Some(h));
}

/// F-G2, CORE-1, REPL-4: the primary is killed at `point` while writing
/// its first GC record (appended before its fsync, or fsynced before it is
/// applied). With `power_loss` the bytes never fsynced are dropped as a
/// power failure would. The restarted primary keeps every acknowledged
/// write and has the horizon of the last GC record its WAL holds; a
/// replica that streams that WAL from genesis (a node that never crashed)
/// ends with the same horizon, digest and versions, and both keep
/// collecting and converging afterwards.
fn crash_around_the_gc_record(point: &str, power_loss: bool) {
    let t = tmp();
    let dir = t.path().join("p");
    let log = t.path().join("p-armed.log");
    let mut args: Vec<String> =
        ["primary", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(["--history-retain-commits".to_string(), "5".to_string()]);
    let fp = format!("{point}=return");
    let primary = spawn_logged(&args, &[("FAILPOINTS", fp.as_str())], &dir, &log);
    let mut acked = Vec::new();
    for i in 0..50u64 {
        match try_http("PUT", &format!("http://{}/v1/docs/{COLL}/k{}", primary.client, i % 3), Some(&json!({"i": i}))) {
            Ok((200, body)) => acked.push((i, num(&body, "commit_id"))),
            _ => break,
        }
    }
    let (_, dir) = wait_crash(primary, point, &log);
    let (gc_commit, gc_horizon) = last_gc(&dir).expect("the GC record was appended before the crash");
    // The GC record is the WAL's last record, right after the commit that
    // made it due (whose acknowledgement may or may not have reached the
    // client before the abort).
    assert!(gc_commit > acked.last().unwrap().1, "the GC record follows every acknowledged commit");
    assert_eq!(wal_dump(&dir).last().map(|r| r.commit_id), Some(gc_commit));
    let expected_horizon = if power_loss {
        let dump = wal_dump(&dir);
        let gc = dump.iter().find(|r| r.commit_id == gc_commit).unwrap();
        cut_wal_at(&dir, gc.lsn, 0);
        assert_eq!(last_gc(&dir), None, "the never-fsynced GC record is gone");
        0
    } else {
        gc_horizon
    };

    let primary = spawn_logged(&args, &[], &dir, &t.path().join("p-2.log"));
    for (i, c) in &acked {
        let (status, body) = primary.get(COLL, &format!("k{}", i % 3), "");
        assert_eq!(status, 200, "{body}");
        assert!(num(&body, "commit_id") >= *c, "acknowledged write {i} ({c}) kept: {body}");
    }
    assert_eq!(num(&mvcc(&primary), "history_horizon"), expected_horizon);
    let replica = start_replica_logged(&t.path().join("r"), primary.repl.as_ref().unwrap(), "wal", &[], &t.path().join("r.log"));
    replica.wait_caught_up(num(&mvcc(&primary), "commit_id"));
    assert_eq!(assert_same_history(&primary, &[&replica]), expected_horizon);
    assert_verifies(&dir);

    overwrite(&primary, "after", 30);
    settled(&primary, 5, 2);
    assert_converged(&primary, &[&replica]);
    let h = assert_same_history(&primary, &[&replica]);
    assert!(h > expected_horizon);
    assert_rs_4(&primary, h);
    assert_rs_4(&replica, h);
}

/// F-G2: crash after the GC record is appended, before its fsync; the
/// process crash leaves its bytes in the page cache, so recovery finds and
/// replays it (the same apply function as every record).
#[test]
fn f_g2_crash_before_the_gc_record_fsync_recovers_the_horizon_of_a_node_that_never_crashed() {
    crash_around_the_gc_record("gc.before_fsync", false);
}

/// F-G2: the same crash followed by a power loss: the GC record was never
/// fsynced, so it is gone; no write was acknowledged with it, and the
/// horizon is the one before it on the primary and on a fresh replica.
#[test]
fn f_g2_power_loss_before_the_gc_record_fsync_drops_it_and_keeps_the_old_horizon() {
    crash_around_the_gc_record("gc.before_fsync", true);
}

/// F-G2: crash after the GC record is fsynced, before it is applied:
/// recovery replays it and reaches its horizon.
#[test]
fn f_g2_crash_after_the_gc_record_fsync_before_apply_recovers_its_horizon() {
    crash_around_the_gc_record("gc.before_apply", false);
}

/// F-G2, MVCC-4: the primary keeps 5 commits of history and snapshots
/// every 4 KiB of WAL, so its first snapshot is taken after GC records;
/// it is killed at `point` inside that snapshot. The restarted primary has
/// the horizon of its last GC record and the digest and versions of a
/// replica that streamed its WAL from genesis. Once a snapshot is
/// published (holding the horizon) the primary is SIGKILLed; recovery from
/// that snapshot and a replica bootstrapped from it reach the same horizon
/// and digest again.
fn crash_during_a_snapshot_after_gc(point: &str) {
    let t = tmp();
    let dir = t.path().join("p");
    let log = t.path().join("p-armed.log");
    let mut args: Vec<String> =
        ["primary", "--data-dir", dir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(["--history-retain-commits", "5", "--snapshot-every-bytes", "4096"].iter().map(|s| s.to_string()));
    let fp = format!("{point}=return");
    let primary = spawn_logged(&args, &[("FAILPOINTS", fp.as_str())], &dir, &log);
    for i in 0..10_000u64 {
        if try_http("PUT", &format!("http://{}/v1/docs/{COLL}/k{}", primary.client, i % 4), Some(&json!({"i": i, "pad": "p".repeat(100)}))).is_err() {
            break;
        }
    }
    let (_, dir) = wait_crash(primary, point, &log);
    let (_, gc_horizon) = last_gc(&dir).expect("GC records precede the snapshot");

    let primary = spawn_logged(&args, &[], &dir, &t.path().join("p-2.log"));
    assert_eq!(num(&mvcc(&primary), "history_horizon"), gc_horizon);
    let replica = start_replica_logged(&t.path().join("r1"), primary.repl.as_ref().unwrap(), "wal", &[], &t.path().join("r1.log"));
    replica.wait_caught_up(num(&mvcc(&primary), "commit_id"));
    assert_same_history(&primary, &[&replica]);

    // Write until a snapshot is published, let GC settle, then SIGKILL.
    let snapshot = wait_for("a snapshot after GC", || {
        overwrite(&primary, "more", 5);
        let (_, body) = primary.dx_get("/v1/snapshots");
        body["data"]["snapshots"].as_array().and_then(|s| s.first().cloned())
    });
    let m = settled(&primary, 5, 2);
    let addrs = PrimaryAddrs::of(&primary);
    primary.kill();
    let primary = spawn_logged(
        &addrs.args().into_iter().chain(["--history-retain-commits".to_string(), "5".to_string()]).collect::<Vec<_>>(),
        &[],
        &dir,
        &t.path().join("p-3.log"),
    );
    let (_, recovery) = primary.dx_get("/v1/explain/recovery");
    assert!(recovery.to_string().contains(snapshot["name"].as_str().unwrap()), "recovery used the snapshot: {recovery}");
    let after = mvcc(&primary);
    for field in ["commit_id", "state_digest", "history_horizon", "versions"] {
        assert_eq!(after[field], m[field], "{field} after SIGKILL and recovery from the snapshot");
    }
    let by_snapshot = start_replica_logged(&t.path().join("r2"), primary.repl.as_ref().unwrap(), "snapshot", &[], &t.path().join("r2.log"));
    overwrite(&primary, "last", 10);
    settled(&primary, 5, 2);
    assert_converged(&primary, &[&replica, &by_snapshot]);
    let h = assert_same_history(&primary, &[&replica, &by_snapshot]);
    assert_rs_4(&by_snapshot, h);
}

/// F-G2: crash after the snapshot's data files are written (GC already
/// ran), before its manifest.
#[test]
fn f_g2_crash_writing_a_snapshot_after_gc_recovers_the_same_horizon_and_digest() {
    crash_during_a_snapshot_after_gc("snapshot.after_data_files");
}

/// F-G2: crash after the snapshot is complete and fsynced, before it is
/// published by its rename.
#[test]
fn f_g2_crash_publishing_a_snapshot_after_gc_recovers_the_same_horizon_and_digest() {
    crash_during_a_snapshot_after_gc("snapshot.before_rename");
}
