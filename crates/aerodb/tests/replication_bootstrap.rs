#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! The bootstrap, read-safety and authority half of the replication
//! failure matrix, against real `aerodb` processes over real TCP: crashes
//! during snapshot bootstrap (F-S1, F-S2, and before the bootstrap
//! commit), a snapshot cut that does not match the resume point (F-S3), a
//! corrupt installed snapshot (F-S4), snapshot-vs-WAL bootstrap
//! equivalence (REPL-4, P5-I8, P5-I9), another cluster or a non-primary
//! as the primary (F-C1), unsafe reads (F-RS1), a paginated range read
//! while apply continues (F-RS2), and the single writer (REPL-1).
//!
//! Non-halting tests end with the replica's WAL a byte-exact prefix of the
//! primary's (REPL-3), equal state digests at equal CommitIds (REPL-4),
//! and every admitted replica read equal to the primary's answer at the
//! same read view.

mod repl_crash_support;
mod repl_support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use repl_crash_support::*;
use repl_support::Node;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Completed snapshot directories of a primary (`snapshots/<20 digits>`), by CommitId.
fn primary_snapshots(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir.join("snapshots")) else { return Vec::new() };
    let mut out: Vec<(u64, PathBuf)> = entries
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())).then(|| (name.parse().unwrap(), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The record of `commit_id` in a data directory's WAL.
fn record(dir: &Path, commit_id: u64) -> Dumped {
    wal_dump(dir).into_iter().find(|r| r.commit_id == commit_id).unwrap_or_else(|| panic!("no record {commit_id} in {}", dir.display()))
}

/// A read refused by the gate: checks the documented error body shape
/// `{"error":{"code","rule_id","message","evidence"}}` and that the
/// evidence lists RS-1..RS-5 in order. Returns the error object.
fn refused(node: &Node, query: &str, rule: &str) -> Value {
    let (status, body) = node.get(COLL, "k0", query);
    assert_eq!(status, 503, "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{body}");
    let err = &body["error"];
    let mut fields: Vec<&String> = err.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(fields, ["code", "evidence", "message", "rule_id"], "{body}");
    assert_eq!((err["code"].as_str(), err["rule_id"].as_str()), (Some("READ_REFUSED"), Some(rule)), "{body}");
    assert!(!err["message"].as_str().unwrap().is_empty());
    let ids: Vec<&str> = err["evidence"]["rules"].as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["RS-1", "RS-2", "RS-3", "RS-4", "RS-5"], "every rule, in order: {body}");
    let first_failing = err["evidence"]["rules"].as_array().unwrap().iter().find(|r| r["evaluation"] == false).unwrap();
    assert_eq!(first_failing["rule_id"], rule, "{body}");
    err.clone()
}

/// Waits until a replica that cannot reach its primary has given up one
/// connection attempt (it is then Disconnected, or already trying again).
fn wait_connect_failed(node: &Node) -> Value {
    node.wait_replication("a failed connection attempt", |v| v["blocking_reason"]["code"] == "CONNECT_FAILED")
}

/// F-S1 / F-S2 / bootstrap commit: arms `point` on a replica bootstrapping
/// by snapshot from a primary holding > 1 MiB of versions (so the transfer
/// has several pieces), checks what the crash left (`after_crash`), then
/// restarts it with no primary reachable: the uncommitted bootstrap is
/// discarded, the replica stays uninitialised (no snapshot, no metadata,
/// no WAL, bootstrap not complete, reads refused under RS-1). Restarted
/// with the primary, bootstrap completes from scratch and it catches up.
fn crash_during_bootstrap(point: &str, after_crash: impl Fn(&Path)) {
    let tmp = tmp();
    let primary = repl_support::start_primary(&tmp.path().join("p"), &[], &[]);
    let boundary = workload(&primary, "big", 40, 12_000);
    let rdir = tmp.path().join("r");
    let log = tmp.path().join("r-armed.log");
    let replica = start_replica_logged(&rdir, primary.repl.as_ref().unwrap(), "snapshot", &[("FAILPOINTS", &format!("{point}=return"))], &log);
    wait_crash(replica, point, &log);
    let r = rdir.join("replica");
    assert!(!r.join("replica.json").exists(), "the bootstrap was not committed");
    assert!(!r.join("halt.json").exists(), "a crash is not a halt");
    after_crash(&rdir);

    let isolated = start_replica_logged(&rdir, &dead_addr(), "snapshot", &[], &tmp.path().join("r-isolated.log"));
    let v = wait_connect_failed(&isolated);
    assert_ne!(v["snapshot_bootstrap"]["state"], "complete", "{v}");
    assert_eq!((v["replica_commit_id"].clone(), v["snapshot_bootstrap"]["boundary_commit_id"].clone()), (Value::Null, Value::Null), "no state: {v}");
    for gone in ["bootstrap.tmp", "snapshot", "replica.json"] {
        assert!(!r.join(gone).exists(), "{gone} was discarded");
    }
    assert!(!rdir.join("wal").exists() || segments(&rdir).is_empty(), "no WAL");
    let err = refused(&isolated, "", "RS-1");
    assert_eq!(err["evidence"]["rules"][0]["evidence"]["handshakes_since_start"], 0, "{err}");
    assert_eq!(isolated.stop(), Some(0));

    let recorder = Recorder::start();
    let replica = start_replica_logged(&rdir, primary.repl.as_ref().unwrap(), "snapshot", &[], &tmp.path().join("r-2.log"));
    recorder.point_at(&replica.client);
    let v = replica.wait_caught_up(boundary);
    assert_eq!((v["snapshot_bootstrap"]["state"].as_str(), v["snapshot_bootstrap"]["method"].as_str()), (Some("complete"), Some("snapshot")), "{v}");
    assert_eq!(v["snapshot_bootstrap"]["boundary_commit_id"], boundary, "{v}");
    workload(&primary, "after", 3, 64);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// F-S1, REPL-9, P5-I8, REPL-3, REPL-4: a crash in the middle of the
/// snapshot transfer (after its first piece) leaves a partial transfer in
/// `replica/bootstrap.tmp`; it is discarded, the replica stays
/// uninitialised with no WAL applied, and bootstrap restarts from scratch.
#[test]
fn f_s1_crash_during_snapshot_transfer_discards_partial_snapshot_and_bootstraps_from_scratch() {
    crash_during_bootstrap("bootstrap.mid_transfer", |rdir| {
        let tmp = rdir.join("replica").join("bootstrap.tmp");
        let manifest = checksummed_body(&tmp.join("manifest.json"));
        let promised: u64 = manifest["files"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum();
        let held: u64 =
            std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap()).filter(|e| e.file_name() != "manifest.json").map(|e| e.metadata().unwrap().len()).sum();
        assert!(held > 0 && held < promised, "a partial transfer: {held} of {promised} bytes");
        assert!(!rdir.join("replica").join("snapshot").exists());
        assert!(!rdir.join("wal").exists(), "no WAL before the bootstrap is installed");
    });
}

/// Data bytes of the snapshot the primary in `pdir` served.
fn served_snapshot_bytes(pdir: &Path) -> u64 {
    let (_, snap) = primary_snapshots(pdir).pop().expect("the primary made a snapshot for the bootstrap");
    let manifest = checksummed_body(&snap.join("manifest.json"));
    manifest["files"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).sum()
}

/// F-S1, REPL-9, P5-I8, REPL-3, REPL-4: the connection is cut in the
/// middle of the snapshot transfer (a proxy forwards 1.5 MB of a larger
/// snapshot stream, closes, then refuses reconnects): the replica stays
/// uninitialised — no snapshot, no metadata, no WAL, bootstrap not
/// complete, reads refused under RS-1 — while the verified bytes are kept
/// to resume (`snapshot_bootstrap.phase` = `interrupted`, with the bytes
/// held). A restarted process starts the transfer again from scratch and,
/// given the primary again, bootstraps.
#[test]
fn f_s1_disconnect_during_snapshot_transfer_keeps_verified_chunks_and_stays_uninitialised() {
    const CUT: usize = 1_500_000;
    let tmp = tmp();
    let pdir = tmp.path().join("p");
    let primary = repl_support::start_primary(&pdir, &[], &[]);
    let boundary = workload(&primary, "big", 70, 12_000);
    let (proxy, cut) = cutting_proxy(primary.repl.as_ref().unwrap(), CUT);
    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, &proxy, &["--bootstrap", "snapshot"], &[]);
    let v = wait_connect_failed(&replica);
    assert_eq!(cut.join().unwrap(), CUT, "the connection was cut by the proxy, not ended by the primary");
    let size = served_snapshot_bytes(&pdir);
    assert!(size > CUT as u64, "the cut came in the middle of the transfer ({size} bytes of data files)");

    let boot = &v["snapshot_bootstrap"];
    assert_eq!((boot["state"].as_str(), boot["phase"].as_str()), (Some("in_progress"), Some("interrupted")), "{v}");
    let held = boot["bytes_done"].as_u64().unwrap();
    assert!(held > 0 && held < CUT as u64 && boot["bytes_total"].as_u64() == Some(size), "{v}");
    assert_eq!(v["replica_commit_id"], Value::Null, "{v}");
    let r = rdir.join("replica");
    for gone in ["snapshot", "replica.json", "halt.json"] {
        assert!(!r.join(gone).exists(), "{gone} is absent: nothing installed, nothing halted");
    }
    let written: u64 = std::fs::read_dir(r.join("bootstrap.tmp"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "manifest.json")
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(written, held, "the bytes kept to resume are the bytes written");
    assert!(!rdir.join("wal").exists() || segments(&rdir).is_empty(), "no WAL");
    refused(&replica, "", "RS-1");
    assert_eq!(replica.stop(), Some(0));

    let recorder = Recorder::start();
    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    recorder.point_at(&replica.client);
    let v = replica.wait_caught_up(boundary);
    assert_eq!((v["snapshot_bootstrap"]["state"].as_str(), v["snapshot_bootstrap"]["boundary_commit_id"].as_u64()), (Some("complete"), Some(boundary)), "{v}");
    assert!(!r.join("bootstrap.tmp").exists());
    workload(&primary, "after", 3, 64);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// F-S1, REPL-8, REPL-3, REPL-4: the connection is cut in the middle of the
/// snapshot transfer and the replica reconnects to a primary that still
/// serves the same snapshot: the transfer resumes from the bytes already
/// verified and written — the resumed connection carries only the rest of
/// the snapshot (the primary → replica byte count proves nothing was sent
/// twice) — then validates completely, installs, streams, and ends with
/// the primary's state digest (REPL-4) and a byte-exact WAL prefix.
#[test]
fn f_s1_interrupted_transfer_resumes_without_resending_verified_bytes() {
    const CUT: usize = 1_500_000;
    let tmp = tmp();
    let pdir = tmp.path().join("p");
    let primary = repl_support::start_primary(&pdir, &[], &[]);
    let boundary = workload(&primary, "big", 70, 12_000);
    let proxy = ResumingProxy::start(primary.repl.as_ref().unwrap(), CUT);
    let rdir = tmp.path().join("r");
    let log = tmp.path().join("r.log");
    let recorder = Recorder::start();
    let replica = start_replica_logged(&rdir, &proxy.addr, "snapshot", &[("RUST_LOG", "info")], &log);
    recorder.point_at(&replica.client);
    let v = replica.wait_caught_up(boundary);
    assert_eq!((v["snapshot_bootstrap"]["state"].as_str(), v["snapshot_bootstrap"]["boundary_commit_id"].as_u64()), (Some("complete"), Some(boundary)), "{v}");
    let size = served_snapshot_bytes(&pdir);
    let counts = proxy.counts();
    assert!(counts.len() >= 2, "a second connection: {counts:?}");
    assert_eq!(counts[0], CUT, "the first connection was cut mid-transfer ({size} bytes of data files)");
    // The replica logged how many verified bytes it held when it resumed
    // (whole pieces: the piece the cut split was never verified, so not kept).
    let text = repl_support::strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default());
    let line = text.lines().find(|l| l.contains("resuming the snapshot transfer")).unwrap_or_else(|| panic!("the replica logged the resume: {text}"));
    let held: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("bytes_done="))
        .and_then(|n| n.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line:?}"));
    assert!(held > 0 && held <= CUT as u64, "{line}");
    // The resumed session carries the rest of the snapshot plus frame
    // headers, the handshake and the manifest: never the held bytes again.
    let rest = size - held;
    let resumed = counts[1] as u64;
    assert!(
        resumed >= rest && resumed < rest + 64 * 1024,
        "resumed session sent {resumed} bytes for the {rest} bytes not yet held (snapshot {size}): {counts:?}"
    );
    workload(&primary, "after", 3, 64);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// F-S2, REPL-8, REPL-9, P5-I8: a crash after the transfer, before
/// validation completes: the unvalidated snapshot is never used; it is
/// discarded and bootstrap restarts from scratch.
#[test]
fn f_s2_crash_after_transfer_before_validation_bootstraps_again_from_scratch() {
    crash_during_bootstrap("bootstrap.before_validate", |rdir| {
        let tmp = rdir.join("replica").join("bootstrap.tmp");
        let manifest = checksummed_body(&tmp.join("manifest.json"));
        for f in manifest["files"].as_array().unwrap() {
            assert_eq!(std::fs::metadata(tmp.join(f["name"].as_str().unwrap())).unwrap().len(), f["size"].as_u64().unwrap(), "the transfer was complete");
        }
        assert!(!rdir.join("replica").join("snapshot").exists(), "not installed before validation");
        assert!(!rdir.join("wal").exists());
    });
}

/// REPL-9, P5-I8, P5-I11: a crash after the snapshot was validated and
/// installed and the WAL created at its boundary, but before
/// `replica/replica.json` (the commit point) was written: restart discards
/// the uncommitted install and bootstraps again.
#[test]
fn repl_9_crash_before_bootstrap_commit_discards_the_install_and_bootstraps_again() {
    crash_during_bootstrap("bootstrap.before_commit", |rdir| {
        let installed = rdir.join("replica").join("snapshot");
        let manifest = checksummed_body(&installed.join("manifest.json"));
        let segs = segments(rdir);
        assert_eq!(segs.len(), 1, "the WAL was created");
        assert_eq!(segment_lsn(&segs[0]), manifest["boundary_lsn"].as_u64().unwrap(), "at the snapshot boundary (P5-I9)");
        assert!(!rdir.join("replica").join("bootstrap.tmp").exists(), "the transfer was renamed into place");
    });
}

/// F-S3, REPL-8, P5-I9: the installed snapshot's cut does not match the
/// boundary the replica recorded (and its WAL continues from): the
/// replica's snapshot is replaced by another valid snapshot of the same
/// cluster at a later cut. Recovery fails hard: the replica halts with
/// SNAPSHOT_METADATA_MISMATCH naming both cuts, refuses reads, and stays
/// halted across a restart.
#[test]
fn f_s3_installed_snapshot_cut_differs_from_recorded_boundary_halts() {
    let tmp = tmp();
    let pdir = tmp.path().join("p");
    let primary = repl_support::start_primary(&pdir, &["--snapshot-every-bytes", "4096"], &[]);
    workload(&primary, "a", 15, 64);
    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    let (c, _) = assert_converged(&primary, &[&replica]);
    let v = replica.replication();
    let first_cut = v["snapshot_bootstrap"]["boundary_commit_id"].as_u64().unwrap();
    assert!(first_cut > 0 && first_cut <= c, "{v}");
    let args = replica.args.clone();
    assert_eq!(replica.stop(), Some(0));

    workload(&primary, "b", 30, 64);
    let (later_cut, later) =
        repl_support::wait_for("a later snapshot on the primary", || primary_snapshots(&pdir).into_iter().rev().find(|(cut, _)| *cut > first_cut));
    let installed = rdir.join("replica").join("snapshot");
    std::fs::remove_dir_all(&installed).unwrap();
    copy_dir(&later, &installed);

    let replica = repl_support::spawn(&args, &[], &rdir);
    let v = wait_halted(&replica, "SNAPSHOT_METADATA_MISMATCH");
    assert_eq!(v["blocking_reason"]["rule_id"], "F-S3", "{v}");
    let halt = halt_of(&replica);
    assert_eq!(halt["failure"], "F-S3", "{halt}");
    assert_eq!(halt["evidence"]["snapshot_cut"]["commit_id"], later_cut, "{halt}");
    assert_eq!(halt["evidence"]["recorded_boundary"]["boundary_commit_id"], first_cut, "{halt}");
    let detail = halt["detail"].as_str().unwrap();
    assert!(detail.contains(&later_cut.to_string()) && detail.contains(&first_cut.to_string()), "{detail}");

    let replica = replica.restart(&[]);
    wait_halted(&replica, "SNAPSHOT_METADATA_MISMATCH");
    assert_eq!(checksummed_body(&rdir.join("replica").join("halt.json"))["code"], "SNAPSHOT_METADATA_MISMATCH", "the halt is persisted");
    let (code, stdout, _) = run_to_exit(&["verify".to_string(), "--data-dir".to_string(), rdir.display().to_string()]);
    assert!(code == Some(1) && stdout.contains("FAIL") && stdout.contains("F-S3"), "offline verify agrees: {stdout}");
}

/// F-S3, F-D1, REPL-5, P5-I9: a replica bootstrapped from a snapshot of
/// primary A resumes exactly at the snapshot cut (L_snap, C_snap, F_snap).
/// Pointed at primary B — the same cluster (a copy of A's data directory
/// taken before any write) with a different history — that resume point
/// does not match B's WAL: B answers DIVERGED and the replica halts with
/// both sides' values (its resume point = the snapshot cut; B's record at
/// that CommitId).
#[test]
fn f_s3_f_d1_snapshot_resume_point_not_matching_the_primary_wal_halts_diverged() {
    let tmp = tmp();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let a = repl_support::start_primary(&a_dir, &[], &[]);
    assert_eq!(a.stop(), Some(0));
    copy_dir(&a_dir, &b_dir);
    let a = repl_support::start_primary(&a_dir, &[], &[]);
    let b = repl_support::start_primary(&b_dir, &[], &[]);
    assert_eq!(a.replication()["cluster_id"], b.replication()["cluster_id"], "one cluster, two histories");
    workload(&a, "from-a", 10, 64);
    workload(&b, "from-b", 12, 64);

    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, a.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    assert_converged(&a, &[&replica]);
    let v = replica.replication();
    assert_eq!(v["snapshot_bootstrap"]["boundary_commit_id"], 10, "{v}");
    assert!(wal_dump(&rdir).is_empty(), "nothing after the cut yet");
    let cut = record(&a_dir, 10);
    assert_eq!(v["snapshot_bootstrap"]["boundary_lsn"], cut.end, "{v}");
    assert_eq!(replica.stop(), Some(0));

    let replica = repl_support::start_replica(&rdir, b.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    let v = wait_halted(&replica, "DIVERGED");
    assert_eq!(v["blocking_reason"]["rule_id"], "REPL-5", "{v}");
    let halt = halt_of(&replica);
    assert_eq!(halt["failure"], "F-D1", "{halt}");
    let request = &halt["evidence"]["replica"]["request"];
    assert_eq!(
        (request["end_lsn"].as_u64(), request["commit_id"].as_u64(), request["fingerprint"].as_str()),
        (Some(cut.end), Some(10), Some(cut.fingerprint.as_str())),
        "replica side: the snapshot cut: {halt}"
    );
    let theirs = record(&b_dir, 10);
    let primary_side = &halt["evidence"]["primary"];
    assert_eq!(primary_side["primary_record_fingerprint"], theirs.fingerprint.as_str(), "primary side: B's record 10: {halt}");
    assert_ne!(theirs.fingerprint, cut.fingerprint);
    assert_eq!(primary_side["primary_commit_id"], 12, "{halt}");
    assert!(wal_dump(&rdir).is_empty(), "nothing of B's history was received");
}

/// F-S4, REPL-8, CORE-2: one flipped byte in the replica's installed
/// snapshot data file is caught when recovery re-validates the snapshot:
/// the replica halts with SNAPSHOT_CHECKSUM (rule F-S4), serves no reads,
/// and changes nothing on disk besides recording the halt; the primary is
/// unaffected.
#[test]
fn f_s4_corrupt_installed_snapshot_is_rejected_on_restart_and_replica_halts() {
    let tmp = tmp();
    let primary = repl_support::start_primary(&tmp.path().join("p"), &[], &[]);
    workload(&primary, "a", 10, 64);
    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    assert_converged(&primary, &[&replica]);
    let args = replica.args.clone();
    assert_eq!(replica.stop(), Some(0));

    let data = rdir.join("replica").join("snapshot").join("data-000000.bin");
    let len = std::fs::metadata(&data).unwrap().len() as usize;
    flip_byte(&data, len / 2);
    let files_before = snapshot_of_files(&rdir);

    let replica = repl_support::spawn(&args, &[], &rdir);
    let v = wait_halted(&replica, "SNAPSHOT_CHECKSUM");
    assert_eq!(v["blocking_reason"]["rule_id"], "F-S4", "{v}");
    let halt = halt_of(&replica);
    assert_eq!(halt["failure"], "F-S4", "{halt}");
    assert!(halt["detail"].as_str().unwrap().contains("data-000000.bin"), "names the file: {halt}");
    let mut files_after = snapshot_of_files(&rdir);
    assert!(files_after.remove(Path::new("replica/halt.json")).is_some(), "the halt is recorded");
    assert!(files_after == files_before, "the replica is unchanged: nothing repaired, removed or replayed");
    let (code, stdout, _) = run_to_exit(&["verify".to_string(), "--data-dir".to_string(), rdir.display().to_string()]);
    assert!(code == Some(1) && stdout.contains("FAIL") && stdout.contains("F-S4"), "offline verify agrees: {stdout}");

    let before = repl_support::primary_state(&primary);
    let (status, body) = primary.put(COLL, "after", &json!(1));
    assert_eq!((status, body["commit_id"].as_u64()), (200, Some(before.0 + 1)), "the primary is unaffected");
}

/// Every file under a data directory (except the lock) and its bytes.
fn snapshot_of_files(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else if e.file_name() != "LOCK" {
                out.insert(e.path().strip_prefix(root).unwrap().to_path_buf(), std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// REPL-4, P5-I8, P5-I9, REPL-8, REPL-3: replica X bootstraps by snapshot,
/// replica Y by WAL from genesis; both reach the primary's state digest at
/// the same CommitId. X's snapshot boundary is the primary's record 20
/// (C_snap, L_snap), its WAL starts exactly there — first segment named
/// L_snap, first record CommitId C_snap+1 at LSN L_snap — and every
/// record after it is the primary's; Y's WAL is the primary's whole WAL.
#[test]
fn repl_4_snapshot_and_wal_bootstrap_reach_the_same_digest_at_the_same_commit_id() {
    let tmp = tmp();
    let pdir = tmp.path().join("p");
    let primary = repl_support::start_primary(&pdir, &[], &[]);
    workload(&primary, "a", 20, 64);
    let recorder = Recorder::start();
    let (xdir, ydir) = (tmp.path().join("x"), tmp.path().join("y"));
    let x = repl_support::start_replica(&xdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    recorder.point_at(&x.client);
    let y = repl_support::start_replica(&ydir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    let y_recorder = Recorder::start();
    y_recorder.point_at(&y.client);
    x.wait_caught_up(20);
    y.wait_caught_up(20);
    workload(&primary, "b", 10, 64);
    assert_converged(&primary, &[&x, &y]);

    let cut = record(&pdir, 20);
    let xs = x.replication()["snapshot_bootstrap"].clone();
    assert_eq!(xs, json!({"state": "complete", "method": "snapshot", "boundary_commit_id": 20, "boundary_lsn": cut.end}));
    let manifest = checksummed_body(&xdir.join("replica").join("snapshot").join("manifest.json"));
    assert_eq!(
        (manifest["boundary_commit_id"].as_u64(), manifest["boundary_lsn"].as_u64(), manifest["boundary_fingerprint"].as_str()),
        (Some(20), Some(cut.end), Some(cut.fingerprint.as_str())),
        "an exact cut at the primary's record 20"
    );
    assert_eq!(segment_lsn(&segments(&xdir)[0]), cut.end, "X's WAL starts exactly at L_snap (P5-I9)");
    let x_records = wal_dump(&xdir);
    assert_eq!((x_records[0].lsn, x_records[0].commit_id), (cut.end, 21), "the first record after the cut is CommitId C_snap+1 at L_snap");
    let p_records = wal_dump(&pdir);
    assert_eq!(x_records[..], p_records[20..], "no gap, no overlap: exactly the primary's records after the cut");
    assert_eq!(wal_dump(&ydir), p_records, "WAL bootstrap holds the whole history");
    let ys = y.replication()["snapshot_bootstrap"].clone();
    assert_eq!(ys, json!({"state": "complete", "method": "wal", "boundary_commit_id": 0, "boundary_lsn": 0}));
    assert_eq!(segment_lsn(&segments(&ydir)[0]), 0);
    let reads = check_recorded(&primary, recorder);
    assert!(reads.iter().all(|r| r.read_view >= 20), "no read of a partial bootstrap (P5-I8)");
    check_recorded(&primary, y_recorder);
}

/// F-C1, REPL-1: a replica bootstrapped from primary A, restarted pointed
/// at primary B of another cluster, halts with CLUSTER_MISMATCH naming both
/// cluster ids, keeps its state, and stays halted across a restart; B is
/// unaffected.
#[test]
fn f_c1_replica_pointed_at_another_cluster_halts_cluster_mismatch() {
    let tmp = tmp();
    let a = repl_support::start_primary(&tmp.path().join("a"), &[], &[]);
    let b = repl_support::start_primary(&tmp.path().join("b"), &[], &[]);
    workload(&a, "a", 3, 64);
    workload(&b, "b", 2, 64);
    let (a_cluster, b_cluster) = (a.replication()["cluster_id"].clone(), b.replication()["cluster_id"].clone());
    assert_ne!(a_cluster, b_cluster);
    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, a.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    assert_converged(&a, &[&replica]);
    assert_eq!(replica.stop(), Some(0));
    let history = wal_dump(&rdir);

    let replica = repl_support::start_replica(&rdir, b.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    let v = wait_halted(&replica, "CLUSTER_MISMATCH");
    assert_eq!(v["blocking_reason"]["rule_id"], "REPL-1", "{v}");
    let halt = halt_of(&replica);
    assert_eq!(halt["failure"], "F-C1", "{halt}");
    assert_eq!(halt["evidence"]["replica"]["cluster_id"], a_cluster, "replica side: {halt}");
    assert_eq!(halt["evidence"]["primary"]["primary_cluster_id"], b_cluster, "primary side: {halt}");
    let replica = replica.restart(&[]);
    wait_halted(&replica, "CLUSTER_MISMATCH");
    assert_eq!(wal_dump(&rdir), history, "the replica kept its own history");
    assert_eq!(b.put(COLL, "x", &json!(1)).1["commit_id"], 3, "B is unaffected");
}

/// F-C1, REPL-1, REPL-5: a replica pointed at something that is not an
/// AeroDB primary (here another node's client port) is refused: an empty
/// replica never persists a halt for whom it reached — it reports
/// PEER_NOT_AERODB as its blocking reason, stays uninitialised and retries,
/// and restarted with the right `--primary` it bootstraps without any
/// operator action. A replica that already holds state and reaches a
/// non-primary halts, and the halt is sticky across restarts.
#[test]
fn f_c1_replica_pointed_at_a_non_primary_blocks_when_empty_and_halts_when_bootstrapped() {
    let tmp = tmp();
    let primary = repl_support::start_primary(&tmp.path().join("p"), &[], &[]);
    workload(&primary, "a", 3, 64);
    let recorder = Recorder::start();
    let other = repl_support::start_replica(&tmp.path().join("other"), primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    recorder.point_at(&other.client);
    other.wait_caught_up(3);

    let rdir = tmp.path().join("r");
    let replica = repl_support::start_replica(&rdir, &other.client, &[], &[]);
    let v = replica.wait_replication("blocked on PEER_NOT_AERODB", |v| v["blocking_reason"]["code"] == "PEER_NOT_AERODB");
    assert_eq!((v["blocking_reason"]["rule_id"].as_str(), v["node_state"].as_str()), (Some("REPL-1"), Some("Uninitialized")), "{v}");
    assert_ne!(v["replica_state"], "Halted", "{v}");
    assert_eq!((v["replica_commit_id"].clone(), v["snapshot_bootstrap"]["state"].as_str()), (Value::Null, Some("not_started")), "{v}");
    replica.wait_replication("retrying with backoff", |v| v["connection"]["reconnects"].as_u64().unwrap_or(0) >= 2);
    assert!(!rdir.join("replica").join("halt.json").exists(), "no halt is persisted for whom an empty replica reached");
    assert!(!rdir.join("replica").join("replica.json").exists() && !rdir.join("replica").join("snapshot").exists(), "nothing bootstrapped");
    drop(replica);

    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &[], &[]);
    replica.wait_caught_up(3);

    let dir2 = tmp.path().join("r2");
    let bootstrapped = repl_support::start_replica(&dir2, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    bootstrapped.wait_caught_up(3);
    drop(bootstrapped);
    let pointed_wrong = repl_support::start_replica(&dir2, &other.client, &[], &[]);
    let v = wait_halted(&pointed_wrong, "PEER_NOT_AERODB");
    assert_eq!(v["blocking_reason"]["rule_id"], "REPL-1", "{v}");
    let halt = halt_of(&pointed_wrong);
    assert_eq!((halt["failure"].as_str(), halt["evidence"]["primary"].as_str()), (Some("F-C1"), Some(other.client.as_str())), "{halt}");
    let pointed_wrong = pointed_wrong.restart(&[]);
    wait_halted(&pointed_wrong, "PEER_NOT_AERODB");

    workload(&primary, "b", 2, 64);
    assert_converged(&primary, &[&other, &replica]);
    check_recorded(&primary, recorder);
}

/// F-RS1, RS-1, RS-3, REPL-6, P5-I12: reads while unsafe are refused with
/// the reason and the numbers, every rule RS-1..RS-5 reported in order:
/// before the first handshake (a fresh replica bootstrapping; a
/// bootstrapped replica whose primary is unreachable — RS-1 even though it
/// holds data), `at` above C_replica (RS-3 with R and C_replica), and
/// `min_commit` above C_replica (RS-3 with N and C_replica). Once safe the
/// read is admitted, and a read with `min_commit=N` and `wait_ms` succeeds
/// once the replica applies N.
#[test]
fn f_rs1_unsafe_reads_are_refused_with_reason_and_numbers() {
    let tmp = tmp();
    let primary = repl_support::start_primary(&tmp.path().join("p"), &[], &[]);
    workload(&primary, "a", 5, 64);
    let rdir = tmp.path().join("r");

    // Bootstrapping, before any handshake.
    let fresh = repl_support::start_replica(&rdir, &dead_addr(), &["--bootstrap", "snapshot"], &[]);
    wait_connect_failed(&fresh);
    let err = refused(&fresh, "", "RS-1");
    let rs1 = &err["evidence"]["rules"][0]["evidence"];
    assert_eq!(rs1["handshakes_since_start"], 0, "{err}");
    assert!(["Bootstrapping", "Disconnected"].contains(&rs1["replica_state"].as_str().unwrap()), "{err}");
    assert_eq!(err["evidence"]["replica_state"], rs1["replica_state"]);
    assert_eq!(fresh.stop(), Some(0));

    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    replica.wait_caught_up(5);
    assert_eq!(replica.stop(), Some(0));

    // Holding CommitId 5 but with no primary to prove its prefix against.
    let unproven = repl_support::start_replica(&rdir, &dead_addr(), &["--bootstrap", "snapshot"], &[]);
    let v = wait_connect_failed(&unproven);
    assert_eq!((v["replica_commit_id"].as_u64(), v["read_safety"].as_str()), (Some(5), Some("unsafe")), "{v}");
    let err = refused(&unproven, "", "RS-1");
    assert_eq!(
        (err["evidence"]["replica_commit_id"].as_u64(), err["evidence"]["rules"][0]["evidence"]["handshakes_since_start"].as_u64()),
        (Some(5), Some(0)),
        "{err}"
    );
    assert_eq!(unproven.stop(), Some(0));

    let recorder = Recorder::start();
    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "snapshot"], &[]);
    recorder.point_at(&replica.client);
    replica.wait_caught_up(5);
    let err = refused(&replica, "?at=9", "RS-3");
    assert_eq!((err["evidence"]["read_upper_bound"].as_u64(), err["evidence"]["replica_commit_id"].as_u64()), (Some(9), Some(5)), "{err}");
    assert_eq!(err["evidence"]["rules"][0]["evaluation"], true, "RS-1 holds once streaming: {err}");
    let err = refused(&replica, "?min_commit=6", "RS-3");
    let rs3 = &err["evidence"]["rules"][2]["evidence"];
    assert_eq!((rs3["min_commit"].as_u64(), rs3["replica_commit_id"].as_u64()), (Some(6), Some(5)), "{err}");

    assert_eq!(replica.get(COLL, "k0", "?at=5").1["read_view"], 5, "admitted once safe");
    assert_eq!(replica.get(COLL, "k0", "?min_commit=5").1["read_view"], 5);
    let url = format!("http://{}/v1/docs/{COLL}/late?min_commit=6&wait_ms=20000", replica.client);
    let waiting = std::thread::spawn(move || repl_support::http("GET", &url, None));
    let (status, body) = primary.put(COLL, "late", &json!({"late": 6}));
    assert_eq!((status, body["commit_id"].as_u64()), (200, Some(6)));
    let (status, body) = waiting.join().unwrap();
    assert_eq!((status, body), (200, json!({"read_view": 6, "commit_id": 6, "doc": {"late": 6}})), "admitted once the replica applied 6");
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// F-RS2, MVCC-3, RS-5: a range read paginated over many requests at
/// `at=R` keeps one view while the replica keeps applying commits that
/// update, delete and insert keys inside the range between pages: every
/// page answers read_view R, and the pages together equal the primary's
/// scan at R (and differ from the replica's newest state).
#[test]
fn f_rs2_paginated_range_read_keeps_one_read_view_while_apply_continues() {
    let tmp = tmp();
    let primary = repl_support::start_primary(&tmp.path().join("p"), &[], &[]);
    for i in 0..10 {
        let ops: Vec<Value> = (0..3).map(|j| json!({"op": "put", "collection": "range", "key": format!("r{:02}", i * 3 + j), "doc": {"v": 0}})).collect();
        assert_eq!(repl_support::http("POST", &format!("http://{}/v1/commit", primary.client), Some(&json!({ "ops": ops }))).0, 200);
    }
    let recorder = Recorder::start();
    let replica = repl_support::start_replica(&tmp.path().join("r"), primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    recorder.point_at(&replica.client);
    let r = 10u64;
    replica.wait_caught_up(r);

    let mut pages = 0;
    let mut items: Vec<Value> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let start = next.as_ref().map(|k| format!("&start={k}")).unwrap_or_default();
        let (status, page) = repl_support::http("GET", &format!("http://{}/v1/docs/range?at={r}&limit=4{start}", replica.client), None);
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["read_view"], r, "every page uses the pinned view: {page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        pages += 1;
        // The replica's state changes between pages: update, delete and insert inside the range.
        let ops = json!({"ops": [
            {"op": "put", "collection": "range", "key": format!("r{:02}", (pages * 7) % 30), "doc": {"v": pages}},
            {"op": "delete", "collection": "range", "key": format!("r{:02}", (pages * 11 + 1) % 30)},
            {"op": "put", "collection": "range", "key": format!("r{:02}x", pages * 2), "doc": {"new": pages}},
        ]});
        let (_, body) = repl_support::http("POST", &format!("http://{}/v1/commit", primary.client), Some(&ops));
        replica.wait_caught_up(body["commit_id"].as_u64().unwrap());
        match page["next"].as_str() {
            Some(k) => next = Some(k.to_string()),
            None => break,
        }
    }
    assert!(pages >= 8, "many requests: {pages}");
    let (_, at_r) = repl_support::http("GET", &format!("http://{}/v1/docs/range?at={r}&limit=1000", primary.client), None);
    assert_eq!(Value::Array(items.clone()), at_r["items"], "the pages together are the primary's scan at R");
    let (_, newest) = repl_support::http("GET", &format!("http://{}/v1/docs/range?limit=1000", replica.client), None);
    assert_ne!(Value::Array(items), newest["items"], "the replica's state did change meanwhile");
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}

/// REPL-1: a replica rejects every write (PUT, DELETE, POST /v1/commit)
/// with 403 WRITE_REJECTED citing REPL-1 and nothing is written anywhere;
/// its data directory refuses to start as a primary or standalone node
/// (non-zero exit, one line naming REPL-1) and still starts as a replica.
#[test]
fn repl_1_replica_rejects_writes_and_its_data_dir_cannot_start_as_primary() {
    let tmp = tmp();
    let primary = repl_support::start_primary(&tmp.path().join("p"), &[], &[]);
    workload(&primary, "a", 3, 64);
    let rdir = tmp.path().join("r");
    let recorder = Recorder::start();
    let replica = repl_support::start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    recorder.point_at(&replica.client);
    replica.wait_caught_up(3);

    let base = format!("http://{}", replica.client);
    let attempts = [
        ("PUT", format!("{base}/v1/docs/{COLL}/w"), Some(json!({"w": 1}))),
        ("DELETE", format!("{base}/v1/docs/{COLL}/k0"), None),
        ("POST", format!("{base}/v1/commit"), Some(json!({"ops": [{"op": "put", "collection": COLL, "key": "w", "doc": 1}]}))),
    ];
    for (method, url, body) in &attempts {
        let (status, resp) = repl_support::http(method, url, body.as_ref());
        assert_eq!(status, 403, "{method}: {resp}");
        assert_eq!((resp["error"]["code"].as_str(), resp["error"]["rule_id"].as_str()), (Some("WRITE_REJECTED"), Some("REPL-1")), "{method}: {resp}");
        assert_eq!(resp["error"]["evidence"]["role"], "replica");
    }
    assert_eq!(repl_support::primary_state(&primary).0, 3, "nothing was written on the primary");
    assert_eq!(replica.replication()["replica_commit_id"], 3);
    assert_eq!(replica.get(COLL, "w", "").0, 404);
    let args = replica.args.clone();
    assert_eq!(replica.stop(), Some(0));

    for role in ["primary", "standalone"] {
        let mut cmd: Vec<String> =
            [role, "--data-dir", rdir.to_str().unwrap(), "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"].iter().map(|s| s.to_string()).collect();
        if role == "primary" {
            cmd.extend(["--repl-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        let (code, stdout, stderr) = run_to_exit(&cmd);
        assert_eq!(code, Some(1), "{role}: {stdout} {stderr}");
        assert!(!stdout.contains("listening"), "{role} serves nothing: {stdout}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one-line reason: {stderr}");
        assert!(lines[0].contains("REPL-1") && lines[0].contains("replica"), "{stderr}");
    }

    let replica = repl_support::spawn(&args, &[], &rdir);
    recorder.point_at(&replica.client);
    workload(&primary, "b", 2, 64);
    assert_converged(&primary, &[&replica]);
    check_recorded(&primary, recorder);
}
