#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! The crash and divergence half of the replication failure matrix,
//! against real `aerodb` processes over real TCP: primary crashes around
//! the WAL fsync with a replica attached (F-P1, F-P2), replica crashes in
//! every pipeline stage (F-R1, F-R2, F-A1, F-A2) and during recovery
//! (F-RC1), corrupt replica metadata (F-RC2), and a primary whose history
//! was rolled back (F-D1, F-D2).
//!
//! Crash points are armed through `FAILPOINTS` (test builds only); the
//! process aborts there and is restarted without them. While it runs, a
//! background reader records every admitted replica read; at the end each
//! one is compared with the primary's answer at the same read view, so a
//! partially applied or invented state that was ever visible fails the
//! test (MVCC-2, P5-I11). Non-halting tests end with the replica's WAL a
//! byte-exact prefix of the primary's (REPL-3) and equal state digests at
//! equal CommitIds (REPL-4).

mod repl_crash_support;
mod repl_support;

use serde_json::json;

use repl_crash_support::*;
use repl_support::Node;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A primary (stderr logged, `RUST_LOG=info` so its handshake decisions
/// are visible) with `commits` write sets, and a WAL-bootstrapped replica
/// caught up with it, read by a recorder.
struct Cluster {
    tmp: tempfile::TempDir,
    primary: Node,
    primary_log: std::path::PathBuf,
    replica: Node,
    recorder: Recorder,
}

fn cluster(commits: u64) -> Cluster {
    let tmp = tmp();
    let primary_log = tmp.path().join("primary.log");
    let primary = spawn_logged(&primary_args_port0(&tmp.path().join("p")), &[("RUST_LOG", "info")], &tmp.path().join("p"), &primary_log);
    if commits > 0 {
        workload(&primary, "a", commits, 64);
    }
    let recorder = Recorder::start();
    let replica = start_replica_logged(&tmp.path().join("r"), primary.repl.as_ref().unwrap(), "wal", &[], &tmp.path().join("r0.log"));
    recorder.point_at(&replica.client);
    replica.wait_caught_up(commits);
    Cluster { tmp, primary, primary_log, replica, recorder }
}

fn primary_args_port0(dir: &std::path::Path) -> Vec<String> {
    let mut args = vec!["primary".to_string(), "--data-dir".to_string(), dir.display().to_string()];
    for a in ["--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"] {
        args.push(a.to_string());
    }
    args
}

/// Restarts a (stopped) replica with `envs`, stderr to `log`, and points
/// the recorder at it.
fn restart_replica(args: &[String], dir: &std::path::Path, envs: &[(&str, &str)], log: &std::path::Path, recorder: &Recorder) -> Node {
    let node = spawn_logged(args, envs, dir, log);
    recorder.point_at(&node.client);
    node
}

/// The handshake decisions the primary logged (in order), ANSI colours removed.
fn decisions(log: &str) -> Vec<String> {
    let plain = repl_support::strip_ansi(log);
    let field = |l: &str, name: &str| l.split(&format!("{name}=")).nth(1).and_then(|v| v.split_whitespace().next()).map(|v| v.trim_matches('"').to_string());
    plain
        .lines()
        .filter_map(|l| match field(l, "decision")?.as_str() {
            "stream" => Some(format!("StreamFrom({})", field(l, "start_lsn")?)),
            other => Some(other.to_string()),
        })
        .collect()
}

/// F-P1, CORE-1, REPL-3, REPL-4, REPL-9: the primary crashes after
/// assigning a CommitId, before the fsync, with a replica attached. The
/// write is never acknowledged; the replica never receives a byte of it
/// (the primary ships only below its durable LSN); after a power loss
/// (the un-fsynced bytes dropped) and restart the record is absent on the
/// primary and the replica, and CommitId 6 is assigned to the next write,
/// which the replica receives.
#[test]
fn f_p1_primary_crash_before_fsync_never_reaches_the_replica_and_is_absent_after_restart() {
    let Cluster { tmp, primary, primary_log: _, replica, recorder } = cluster(5);
    let addrs = PrimaryAddrs::of(&primary);
    assert_eq!(primary.stop(), Some(0));
    let log = tmp.path().join("primary-armed.log");
    let primary = addrs.start(&[("FAILPOINTS", "wal.before_fsync=return")], &log);
    replica.wait_replication("replica re-handshaked with the restarted primary", |v| {
        v["replica_state"] == "Streaming" && v["connection"]["handshakes"].as_u64() >= Some(2)
    });
    let durable = primary.replication()["durable_lsn"].as_u64().unwrap();

    let res = try_http("PUT", &format!("http://{}/v1/docs/{COLL}/lost", primary.client), Some(&json!({"lost": true})));
    assert!(res.is_err(), "the write must not be acknowledged: {res:?}");
    wait_crash(primary, "wal.before_fsync", &log);

    // The replica holds nothing beyond the primary's durable LSN.
    let v = replica.wait_replication("replica notices the primary is gone", |v| v["replica_state"] != "Streaming");
    assert_eq!((v["replica_commit_id"].as_u64(), v["wal_received_lsn"].as_u64()), (Some(5), Some(durable)), "{v}");
    assert_eq!(wal_file_end(&replica.data_dir), durable, "no byte of the unacknowledged record reached the replica's WAL");
    assert!(wal_file_end(&addrs.dir) > durable, "the record was appended (not fsynced) before the crash");

    // Power loss at the crash point: the bytes that were never fsynced are gone.
    cut_wal_at(&addrs.dir, durable, 0);
    let primary = addrs.start(&[], &tmp.path().join("primary-2.log"));
    assert_eq!(primary.get(COLL, "lost", "").0, 404, "the unacknowledged record is absent after restart");
    let (status, body) = primary.put(COLL, "next", &json!({"next": true}));
    assert_eq!((status, body["commit_id"].as_u64()), (200, Some(6)), "CommitId 6 goes to the next write: the lost one was never acknowledged");

    replica.wait_caught_up(6);
    let (status, body) = replica.get(COLL, "lost", "");
    assert_eq!((status, body["read_view"].as_u64()), (404, Some(6)), "{body}");
    assert_eq!(replica.get(COLL, "next", "").1["commit_id"], 6);
    assert_converged(&primary, &[&replica]);
    let reads = check_recorded(&primary, recorder);
    assert!(reads.iter().all(|r| !r.body.to_string().contains("\"lost\":true")), "no replica read ever saw the lost write");
}

/// F-P2, CORE-1, REPL-2, REPL-3, REPL-4: the primary crashes after the
/// fsync, before the record is applied, acknowledged or shipped. The
/// replica has not received it; the restarted primary replays it with its
/// CommitId, the replica receives it later, and CommitIds continue.
#[test]
fn f_p2_primary_crash_after_fsync_is_replayed_and_shipped_later_and_commit_ids_continue() {
    let Cluster { tmp, primary, primary_log: _, replica, recorder } = cluster(5);
    let addrs = PrimaryAddrs::of(&primary);
    assert_eq!(primary.stop(), Some(0));
    let log = tmp.path().join("primary-armed.log");
    let primary = addrs.start(&[("FAILPOINTS", "wal.after_fsync=return")], &log);
    replica.wait_replication("replica re-handshaked with the restarted primary", |v| {
        v["replica_state"] == "Streaming" && v["connection"]["handshakes"].as_u64() >= Some(2)
    });
    let durable = primary.replication()["durable_lsn"].as_u64().unwrap();

    let res = try_http("PUT", &format!("http://{}/v1/docs/{COLL}/durable", primary.client), Some(&json!({"durable": 1})));
    assert!(res.is_err(), "the write is not acknowledged: {res:?}");
    wait_crash(primary, "wal.after_fsync", &log);
    assert!(wal_file_end(&addrs.dir) > durable, "the record is in the primary's WAL");
    let v = replica.wait_replication("replica notices the primary is gone", |v| v["replica_state"] != "Streaming");
    assert_eq!((v["replica_commit_id"].as_u64(), v["wal_received_lsn"].as_u64()), (Some(5), Some(durable)), "not shipped before the crash: {v}");

    let primary = addrs.start(&[], &tmp.path().join("primary-2.log"));
    assert_eq!(primary.get(COLL, "durable", ""), (200, json!({"read_view": 6, "commit_id": 6, "doc": {"durable": 1}})), "replayed on restart");
    replica.wait_caught_up(6);
    assert_eq!(replica.get(COLL, "durable", "").1, json!({"read_view": 6, "commit_id": 6, "doc": {"durable": 1}}), "the replica receives it later");
    let (status, body) = primary.put(COLL, "next", &json!(7));
    assert_eq!((status, body["commit_id"].as_u64()), (200, Some(7)), "CommitIds continue at C+1");
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
    let ids: Vec<u64> = wal_dump(&addrs.dir).iter().map(|r| r.commit_id).collect();
    assert_eq!(ids, (1..=7).collect::<Vec<_>>());
}

/// F-R1, REPL-9, P5-I4, P5-I11, CORE-3, REPL-3, REPL-4: the replica
/// crashes after appending received bytes, before their fsync. The bytes
/// it had are the primary's (prefix rule holds even then); after a power
/// loss drops the un-fsynced bytes (leaving a torn fragment), recovery
/// drops the torn tail, the replica resumes receiving exactly at its last
/// durable LSN (the primary's logged handshake decision), catches up, and
/// nothing partial was ever visible.
#[test]
fn f_r1_crash_before_received_bytes_durable_resumes_from_last_durable_lsn() {
    let Cluster { tmp, primary, primary_log, replica, recorder } = cluster(10);
    let durable = replica.replication()["wal_received_lsn"].as_u64().unwrap();
    let args = replica.args.clone();
    let dir = replica.data_dir.clone();
    assert_eq!(replica.stop(), Some(0));

    let log = tmp.path().join("r-armed.log");
    let replica = restart_replica(&args, &dir, &[("FAILPOINTS", "replica.before_fsync=return")], &log, &recorder);
    replica.wait_caught_up(10);
    workload(&primary, "b", 5, 64);
    wait_crash(replica, "replica.before_fsync", &log);

    let end = wal_file_end(&dir);
    assert!(end > durable, "the received chunk was appended before the crash");
    repl_support::assert_wal_prefix(&primary.data_dir, &dir);
    // Power loss: the un-fsynced bytes are lost, but for a torn fragment.
    cut_wal_at(&dir, durable, 5.min(end - durable));
    let before_restart = std::fs::read_to_string(&primary_log).unwrap().len();

    let replica = restart_replica(&args, &dir, &[], &tmp.path().join("r-2.log"), &recorder);
    replica.wait_caught_up(15);
    let (_, explained) = replica.dx_get("/v1/explain/recovery");
    let conclusion = &explained["data"]["conclusion"];
    assert_eq!(
        (conclusion["bytes_truncated"].as_u64(), conclusion["final_lsn"].as_u64(), conclusion["final_commit_id"].as_u64()),
        (Some(5), Some(durable), Some(10)),
        "the torn tail was dropped and reported (CORE-3): {explained}"
    );
    let since = log_since(&primary_log, before_restart);
    let decided = decisions(&since);
    assert_eq!(decided.first().map(String::as_str), Some(format!("StreamFrom({durable})").as_str()), "receive resumes from the last durable LSN: {decided:?}");
    workload(&primary, "c", 3, 64);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// F-R2, P5-I5, P5-I11, REPL-9, REPL-3, REPL-4: the replica crashes
/// after received bytes are durable, before validation. Nothing from
/// them was applied or visible before the crash; on restart (with no
/// primary reachable) recovery validates them and applies them — C_replica
/// equals the last durable record and its digest the one that record
/// carries — yet reads stay refused until a handshake proves the prefix
/// (RS-1); then it catches up.
#[test]
fn f_r2_crash_after_persist_before_validation_validates_on_restart() {
    let Cluster { tmp, primary, primary_log: _, replica, recorder } = cluster(10);
    let args = replica.args.clone();
    let dir = replica.data_dir.clone();
    assert_eq!(replica.stop(), Some(0));

    let log = tmp.path().join("r-armed.log");
    let replica = restart_replica(&args, &dir, &[("FAILPOINTS", "replica.after_persist=return")], &log, &recorder);
    let armed = recorder.incarnation();
    replica.wait_caught_up(10);
    workload(&primary, "b", 5, 64);
    wait_crash(replica, "replica.after_persist", &log);

    repl_support::assert_wal_prefix(&primary.data_dir, &dir);
    let on_disk = wal_dump(&dir);
    let last = on_disk.last().unwrap().clone();
    assert!(last.commit_id > 10, "the chunk was durable before the crash: {last:?}");
    assert_eq!(last.end, wal_file_end(&dir), "only whole records were received");

    // Recovery alone (no primary reachable) validates and applies them.
    let isolated = start_replica_logged(&dir, &dead_addr(), "wal", &[], &tmp.path().join("r-isolated.log"));
    recorder.point_at(&isolated.client);
    let v = isolated.wait_replication("recovery replayed the persisted bytes", |v| v["replica_commit_id"].is_u64() && v["replica_state"] != "Recovering");
    assert_eq!(v["replica_commit_id"], last.commit_id, "{v}");
    assert_eq!(v["state_digest"], last.digest.as_str(), "the digest the primary wrote into record {}", last.commit_id);
    assert_eq!((v["wal_validated_lsn"].as_u64(), v["wal_applied_lsn"].as_u64()), (Some(last.end), Some(last.end)));
    let (status, body) = isolated.get(COLL, "k0", "");
    assert_eq!((status, body["error"]["rule_id"].clone()), (503, json!("RS-1")), "no reads before a handshake proves the prefix: {body}");
    assert_eq!(isolated.stop(), Some(0));

    let replica = restart_replica(&args, &dir, &[], &tmp.path().join("r-2.log"), &recorder);
    assert_converged(&primary, &[&replica]);
    let reads = check_recorded(&primary, recorder);
    assert!(reads.iter().filter(|r| r.incarnation == armed).all(|r| r.read_view <= 10), "nothing from the unvalidated chunk was visible before the crash");
}

/// F-A1, MVCC-2, P5-I11, REPL-9, CORE-4, REPL-3, REPL-4: the replica
/// crashes in the middle of applying a multi-record chunk (after its
/// first record). No partial state was ever visible; replay resumes
/// deterministically from the durable WAL and it catches up.
#[test]
fn f_a1_crash_mid_apply_has_no_partial_visibility_and_replays_deterministically() {
    let Cluster { tmp, primary, primary_log: _, replica, recorder } = cluster(10);
    let args = replica.args.clone();
    let dir = replica.data_dir.clone();
    assert_eq!(replica.stop(), Some(0));
    // A backlog: the reconnecting replica receives it as one chunk of 10 records.
    workload(&primary, "b", 10, 64);

    let log = tmp.path().join("r-armed.log");
    let replica = restart_replica(&args, &dir, &[("FAILPOINTS", "replica.mid_apply=return")], &log, &recorder);
    let armed = recorder.incarnation();
    wait_crash(replica, "replica.mid_apply", &log);
    repl_support::assert_wal_prefix(&primary.data_dir, &dir);
    assert_eq!(wal_dump(&dir).last().unwrap().commit_id, 20, "the whole chunk was durable");

    let replica = restart_replica(&args, &dir, &[], &tmp.path().join("r-2.log"), &recorder);
    replica.wait_caught_up(20);
    workload(&primary, "c", 3, 64);
    assert_converged(&primary, &[&replica]);
    let reads = check_recorded(&primary, recorder);
    assert!(reads.iter().filter(|r| r.incarnation == armed).all(|r| r.read_view <= 11), "at most the one applied record was visible before the crash");
}

/// F-A2, P5-I11, REPL-4, REPL-9, REPL-3: the replica crashes right after
/// applying a record, with no metadata written for it (there is none per
/// record) — here after a whole first chunk and the first record of a
/// second one of a multi-frame backlog. Recovery alone reconciles: C_replica is
/// the last durable record and the state digest is exactly the one the
/// primary wrote into it; then it catches up with the same digest.
#[test]
fn f_a2_crash_after_apply_before_metadata_update_reconciles_to_same_digest() {
    let Cluster { tmp, primary, primary_log: _, replica, recorder } = cluster(5);
    let args = replica.args.clone();
    let dir = replica.data_dir.clone();
    assert_eq!(replica.stop(), Some(0));
    // ~10.8 MB of backlog: shipped as several multi-record chunks (the primary
    // sends at most 4 MiB per WAL frame, docs/protocol.md).
    workload(&primary, "big", 300, 12_000);

    let log = tmp.path().join("r-armed.log");
    let replica = restart_replica(&args, &dir, &[("FAILPOINTS", "replica.mid_apply=1*off->return")], &log, &recorder);
    let armed = recorder.incarnation();
    wait_crash(replica, "replica.mid_apply", &log);
    repl_support::assert_wal_prefix(&primary.data_dir, &dir);
    let last = wal_dump(&dir).last().unwrap().clone();
    // The receiver may run ahead of the applier (a pipelined replica), so the
    // WAL can hold the whole backlog; the crash came in a later apply batch.
    assert!(last.commit_id > 6 && last.commit_id <= 305, "the crash came in a later chunk: {last:?}");

    let isolated = start_replica_logged(&dir, &dead_addr(), "wal", &[], &tmp.path().join("r-isolated.log"));
    recorder.point_at(&isolated.client);
    let v = isolated.wait_replication("recovery finished", |v| v["replica_commit_id"].is_u64() && v["replica_state"] != "Recovering");
    assert_eq!((v["replica_commit_id"].as_u64(), v["state_digest"].as_str()), (Some(last.commit_id), Some(last.digest.as_str())), "{v}");
    assert_eq!(isolated.stop(), Some(0));

    let replica = restart_replica(&args, &dir, &[], &tmp.path().join("r-2.log"), &recorder);
    assert_converged(&primary, &[&replica]);
    let reads = check_recorded(&primary, recorder);
    assert!(reads.iter().filter(|r| r.incarnation == armed).all(|r| r.read_view <= last.commit_id));
}

/// F-RC1, REPL-9, P5-I11, CORE-4, REPL-3, REPL-4: a replica killed while
/// streaming (one crash) and then crashed twice more during recovery
/// (`replica.mid_recovery`) recovers to exactly the state a copy of its
/// files recovers to after the single crash: same CommitId, state digest,
/// LSNs and WAL bytes. Then it catches up.
#[test]
fn f_rc1_crash_during_recovery_restarts_with_the_same_outcome_as_one_crash() {
    let Cluster { tmp, primary, primary_log: _, replica, recorder } = cluster(10);
    let args = replica.args.clone();
    let dir = replica.data_dir.clone();
    workload(&primary, "b", 10, 64);
    replica.wait_replication("replica past CommitId 10", |v| v["replica_commit_id"].as_u64() > Some(10));
    replica.kill();
    let once = tmp.path().join("r-once");
    copy_dir(&dir, &once);

    for n in 0..2 {
        let log = tmp.path().join(format!("r-recovery-crash-{n}.log"));
        let node = start_replica_logged(&dir, &dead_addr(), "wal", &[("FAILPOINTS", "replica.mid_recovery=return")], &log);
        wait_crash(node, "replica.mid_recovery", &log);
    }
    let outcome = |d: &std::path::Path, name: &str| {
        let node = start_replica_logged(d, &dead_addr(), "wal", &[], &tmp.path().join(format!("{name}.log")));
        let v = node.wait_replication("recovery finished", |v| v["replica_commit_id"].is_u64() && v["replica_state"] != "Recovering");
        let (_, explained) = node.dx_get("/v1/explain/recovery");
        assert_eq!(explained["data"]["conclusion"]["outcome"], "recovered", "{explained}");
        assert_eq!(node.stop(), Some(0));
        (
            v["replica_commit_id"].clone(),
            v["state_digest"].clone(),
            v["wal_validated_lsn"].clone(),
            v["wal_applied_lsn"].clone(),
            explained["data"]["conclusion"].clone(),
        )
    };
    let after_three = outcome(&dir, "r-after-three");
    let after_one = outcome(&once, "r-after-one");
    assert_eq!(after_three, after_one, "recovery after crashes during recovery = recovery after one crash");
    let segs = |d: &std::path::Path| segments(d).iter().map(|p| (p.file_name().unwrap().to_owned(), std::fs::read(p).unwrap())).collect::<Vec<_>>();
    assert!(segs(&dir) == segs(&once), "the same WAL files after recovery");

    let replica = restart_replica(&args, &dir, &[], &tmp.path().join("r-2.log"), &recorder);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// F-RC2, REPL-9: corrupt replica metadata — one flipped byte (checksum)
/// and, separately, a truncated file — makes the replica refuse to start:
/// non-zero exit and one line on stderr naming `replica/replica.json` and
/// the failed check. With the intact file it starts and catches up.
#[test]
fn f_rc2_corrupt_replica_metadata_refuses_to_start_naming_file_and_check() {
    let Cluster { tmp: _tmp, primary, primary_log: _, replica, recorder } = cluster(3);
    let args = replica.args.clone();
    let dir = replica.data_dir.clone();
    assert_eq!(replica.stop(), Some(0));
    let meta = dir.join("replica").join("replica.json");
    let original = std::fs::read(&meta).unwrap();

    // One changed character inside the replica id: still JSON, wrong checksum.
    let text = String::from_utf8(original.clone()).unwrap();
    let at = text.find("\"replica_id\":\"").unwrap() + "\"replica_id\":\"".len();
    let mut flipped = original.clone();
    flipped[at] = if flipped[at] == b'0' { b'1' } else { b'0' };
    let mut truncated = original.clone();
    truncated.truncate(original.len() / 2);

    for (bytes, check) in [(flipped, "META_CHECKSUM_MISMATCH"), (truncated, "META_MALFORMED")] {
        std::fs::write(&meta, &bytes).unwrap();
        let (code, stdout, stderr) = run_to_exit(&args);
        assert_eq!(code, Some(1), "refuses to start ({check}); stdout: {stdout}; stderr: {stderr}");
        assert!(!stdout.contains("listening"), "serves nothing: {stdout}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one-line reason: {stderr}");
        assert!(lines[0].contains(&meta.display().to_string()), "names the file: {stderr}");
        assert!(lines[0].contains(check), "names the check {check}: {stderr}");
        assert!(lines[0].contains("F-RC2"), "{stderr}");
        assert_eq!(std::fs::read(&meta).unwrap(), bytes, "the corrupt file is left as it was");
    }

    std::fs::write(&meta, &original).unwrap();
    let replica = repl_support::spawn(&args, &[], &dir);
    recorder.point_at(&replica.client);
    workload(&primary, "b", 2, 64);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// The F-D1/F-D2 setting: a replica applied CommitIds 1..=10; the
/// primary's data directory is then restored from a copy taken at
/// CommitId 5 (its history 6..=10 is lost). Returns the restored primary
/// (started) and two stopped copies of the replica.
struct RolledBack {
    tmp: tempfile::TempDir,
    primary: Node,
    replica_dir: std::path::PathBuf,
    replica_copy: std::path::PathBuf,
    /// The replica's resume point: (end LSN, CommitId, fingerprint) of record 10.
    tip: Dumped,
}

fn rolled_back() -> RolledBack {
    let tmp = tmp();
    let pdir = tmp.path().join("p");
    let primary = repl_support::start_primary(&pdir, &[], &[]);
    workload(&primary, "a", 5, 64);
    assert_eq!(primary.stop(), Some(0));
    copy_dir(&pdir, &tmp.path().join("p-at-5"));
    let primary = repl_support::start_primary(&pdir, &[], &[]);
    workload(&primary, "lost", 5, 64);
    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    assert_converged(&primary, &[&replica]);
    assert_eq!(replica.stop(), Some(0));
    assert_eq!(primary.stop(), Some(0));
    let copy = tmp.path().join("r-copy");
    copy_dir(&rdir, &copy);
    let tip = wal_dump(&rdir).last().unwrap().clone();
    assert_eq!(tip.commit_id, 10);

    std::fs::remove_dir_all(&pdir).unwrap();
    copy_dir(&tmp.path().join("p-at-5"), &pdir);
    let primary = repl_support::start_primary(&pdir, &[], &[]);
    assert_eq!(repl_support::primary_state(&primary).0, 5, "the primary's history is rolled back to CommitId 5");
    RolledBack { tmp, primary, replica_dir: rdir, replica_copy: copy, tip }
}

/// Checks the halt's two sides: what the replica stated (its resume
/// point) and what the primary answered; returns the primary's side.
fn assert_resume_halt(halt: &serde_json::Value, code: &str, rule: &str, row: &str, tip: &Dumped) -> serde_json::Value {
    assert_eq!((halt["code"].as_str(), halt["rule_id"].as_str(), halt["failure"].as_str()), (Some(code), Some(rule), Some(row)), "{halt}");
    assert_eq!((halt["lsn"].as_u64(), halt["commit_id"].as_u64()), (Some(tip.end), Some(tip.commit_id)), "{halt}");
    let request = &halt["evidence"]["replica"]["request"];
    assert_eq!(
        (request["kind"].as_str(), request["end_lsn"].as_u64(), request["commit_id"].as_u64(), request["fingerprint"].as_str()),
        (Some("resume"), Some(tip.end), Some(tip.commit_id), Some(tip.fingerprint.as_str())),
        "replica side: its resume point: {halt}"
    );
    halt["evidence"]["primary"].clone()
}

/// F-D1, REPL-5, P5-I15: the primary's history was rolled back and then
/// continued differently (CommitIds 6..=13 with other contents). A
/// replica that applied the lost 6..=10 reconnects: its record 10 has
/// another fingerprint than the primary's record 10, so the handshake
/// answers DIVERGED and the replica halts — reads refused, writes
/// rejected — with both sides' values in the halt, and stays halted
/// across a restart. The primary, whose acknowledged history the replica
/// proves was rewritten, is fenced (REPL-11, F-P5): its next write is
/// refused with PRIMARY_FENCED.
#[test]
fn f_d1_primary_history_rolled_back_and_rewritten_halts_replica_diverged() {
    let RolledBack { tmp: _tmp, primary, replica_dir, replica_copy: _, tip } = rolled_back();
    workload(&primary, "other", 8, 64);
    let durable = primary.replication()["durable_lsn"].as_u64().unwrap();
    assert!(durable > tip.end, "the new history is longer than the replica's, so this is not REPLICA_AHEAD");

    let replica = repl_support::start_replica(&replica_dir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    let v = wait_halted(&replica, "DIVERGED");
    assert_eq!((v["blocking_reason"]["rule_id"].as_str(), v["replica_commit_id"].as_u64()), (Some("REPL-5"), Some(10)), "{v}");
    assert!(v["blocking_reason"]["detail"].as_str().unwrap().contains(&tip.end.to_string()), "{v}");
    let halt = halt_of(&replica);
    let primary_side = assert_resume_halt(&halt, "DIVERGED", "REPL-5", "F-D1", &tip);
    let primary_fp = primary_side["primary_record_fingerprint"].as_str().expect("the primary's record 10 is named");
    assert_ne!(primary_fp, tip.fingerprint, "the two sides' fingerprints of CommitId 10 differ: {halt}");
    assert_eq!(primary_side["primary_commit_id"], 13, "{halt}");
    assert_eq!(primary_side["primary_durable_lsn"], durable, "{halt}");

    let replica = replica.restart(&[]);
    let v = wait_halted(&replica, "DIVERGED");
    assert_eq!(v["replica_state"], "Halted", "a halt is never cleared automatically (REPL-5)");
    assert_eq!(wal_dump(&replica_dir).last().unwrap(), &tip, "the halted replica kept its history: nothing was healed or overwritten");
    let (status, body) = primary.put(COLL, "after", &json!(1));
    assert_eq!((status, body["error"]["code"].as_str(), body["error"]["rule_id"].as_str()), (503, Some("PRIMARY_FENCED"), Some("REPL-11")), "{body}");
}

/// F-D2, REPL-3, REPL-5: the primary lost history (its data directory
/// was restored from CommitId 5); a replica that applied up to CommitId
/// 10 is ahead of it: REPLICA_AHEAD, the replica halts with its resume
/// point and the primary's durable LSN and CommitId in the halt, and stays
/// halted across a restart even after the primary has written more (once
/// the operator lifted the fence the replica's proof put on it, REPL-11).
#[test]
fn f_d2_replica_ahead_of_rolled_back_primary_halts_replica_ahead() {
    let RolledBack { tmp: _tmp, primary, replica_dir: _, replica_copy, tip } = rolled_back();
    let durable = primary.replication()["durable_lsn"].as_u64().unwrap();
    let replica = repl_support::start_replica(&replica_copy, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    let v = wait_halted(&replica, "REPLICA_AHEAD");
    assert_eq!(v["blocking_reason"]["rule_id"], "REPL-3", "{v}");
    let detail = v["blocking_reason"]["detail"].as_str().unwrap();
    assert!(detail.contains(&tip.end.to_string()) && detail.contains(&durable.to_string()), "both sides' LSNs: {detail}");
    let halt = halt_of(&replica);
    let primary_side = assert_resume_halt(&halt, "REPLICA_AHEAD", "REPL-3", "F-D2", &tip);
    assert_eq!((primary_side["primary_durable_lsn"].as_u64(), primary_side["primary_commit_id"].as_u64()), (Some(durable), Some(5)), "{halt}");

    assert_eq!(primary.put(COLL, "fenced", &json!(1)).0, 503, "the replica's proof fenced the primary (REPL-11)");
    let pdir = primary.data_dir.clone();
    assert_eq!(primary.stop(), Some(0));
    let primary = repl_support::start_primary(&pdir, &["--lift-fence"], &[]);
    workload(&primary, "more", 8, 64);
    let replica = replica.restart(&[]);
    wait_halted(&replica, "REPLICA_AHEAD");
    assert_eq!(halt_of(&replica), halt, "the persisted halt is unchanged");
}
