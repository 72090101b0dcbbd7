#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
// These tests read the DX API (and replication), which a build without the
// `replication` feature does not have: its nodes never print `listening dx`.
#![cfg(feature = "replication")]
//! REPL-11, F-P5 and CORE-5 with real primaries and real replicas over TCP:
//! a primary that lost acknowledged history is fenced by the replica that
//! proves it (across restarts, until `--lift-fence`); `aerodb repair-wal`
//! restores a lost WAL tail from a replica's verified copy and the replica
//! keeps streaming; `--accept-lost-history` records the loss, and a replica
//! that still holds the lost commits then fences the primary.

mod repl_crash_support;
mod repl_support;

use std::path::Path;

use repl_crash_support::{
    assert_converged, checksummed_body, copy_dir, run_to_exit, segment_lsn, segments, wait_halted, wal_dump, workload, COLL, SEGMENT_HEADER_LEN,
};
use repl_support::{assert_wal_prefix, start_primary, start_replica, Node};
use serde_json::{json, Value};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn rule<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["rules_applied"].as_array().unwrap().iter().find(|r| r["rule_id"] == id).unwrap_or_else(|| panic!("{id} in {e}"))
}

fn explain(node: &Node, what: &str) -> Value {
    let (status, body) = node.dx_get(&format!("/v1/explain/{what}"));
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn metric(node: &Node, name: &str) -> Option<f64> {
    let text = node.dx_get("/metrics").1.as_str().unwrap().to_string();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Drops every WAL record after CommitId `keep` (whole later segments
/// included): acknowledged history lost from the primary's disk.
fn lose_after(dir: &Path, keep: u64) {
    let recs = wal_dump(dir);
    let cut = recs.iter().find(|r| r.commit_id == keep + 1).unwrap().lsn;
    for seg in segments(dir) {
        let start = segment_lsn(&seg);
        if start > cut || (start == cut && start > 0) {
            std::fs::remove_file(&seg).unwrap();
        } else if start <= cut && cut - start < std::fs::metadata(&seg).unwrap().len() - SEGMENT_HEADER_LEN {
            std::fs::OpenOptions::new().write(true).open(&seg).unwrap().set_len(SEGMENT_HEADER_LEN + cut - start).unwrap();
        }
    }
}

fn primary_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["primary".into(), "--data-dir".into(), dir.display().to_string()];
    a.extend(["--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"].iter().map(|s| s.to_string()));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Asserts the primary in `dir` refuses to start because its WAL ends before its mark.
fn assert_refuses_before_mark(dir: &Path) {
    let (code, _, stderr) = run_to_exit(&primary_args(dir, &[]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("refusing to start") && stderr.contains("WAL_BEFORE_MARK") && stderr.contains("CORE-5"), "{stderr}");
}

fn repair(primary: &Path, replica: &Path) -> (Option<i32>, String) {
    let (code, out, err) =
        run_to_exit(&["repair-wal".into(), "--data-dir".into(), primary.display().to_string(), "--from".into(), replica.display().to_string()]);
    (code, format!("{out}{err}"))
}

/// REPL-11, F-P5, F-D2: a primary rolled back to an older copy of its data
/// directory (CommitId 5) meets a replica that applied CommitIds up to 10.
/// The replica halts (REPLICA_AHEAD) and its proof fences the primary:
/// every write answers 503 PRIMARY_FENCED (rule REPL-11) with the replica's
/// id, its resume point and the primary's end as evidence; reads and DX
/// keep working; `/v1/explain/replication`, `/v1/replication` and
/// `/metrics` show the fence; it is persisted (`fence.json`) and holds
/// across a restart; `--lift-fence` lifts it and the recovery explanation
/// records the lift; it stays lifted afterwards.
#[test]
fn repl_11_f_p5_rolled_back_primary_is_fenced_over_tcp_across_restarts_until_lift_fence() {
    let tmp = tmp();
    let pdir = tmp.path().join("p");
    let primary = start_primary(&pdir, &[], &[]);
    workload(&primary, "a", 5, 64);
    assert_eq!(primary.stop(), Some(0));
    copy_dir(&pdir, &tmp.path().join("p-at-5"));
    let primary = start_primary(&pdir, &[], &[]);
    workload(&primary, "lost", 5, 64);
    let rdir = tmp.path().join("r");
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    assert_converged(&primary, &[&replica]);
    let replica_id = replica.replication()["replica_id"].as_str().unwrap().to_string();
    assert_eq!(replica.stop(), Some(0));
    assert_eq!(primary.stop(), Some(0));
    let tip = wal_dump(&rdir).last().unwrap().clone();
    std::fs::remove_dir_all(&pdir).unwrap();
    copy_dir(&tmp.path().join("p-at-5"), &pdir);

    let primary = start_primary(&pdir, &[], &[]);
    assert_eq!(primary.put(COLL, "before-proof", &json!(1)).1["commit_id"], 6, "not fenced before a replica proves anything");
    let durable = primary.replication()["durable_lsn"].as_u64().unwrap();
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    wait_halted(&replica, "REPLICA_AHEAD");

    let check_fenced = |primary: &Node| {
        let (status, body) = primary.put(COLL, "refused", &json!({"x": 1}));
        assert_eq!((status, body["error"]["code"].as_str(), body["error"]["rule_id"].as_str()), (503, Some("PRIMARY_FENCED"), Some("REPL-11")), "{body}");
        let ev = &body["error"]["evidence"];
        assert_eq!(ev["replica_id"], replica_id.as_str(), "{ev}");
        assert_eq!(ev["fence_code"], "REPLICA_AHEAD");
        assert_eq!(
            (
                ev["replica_resume_point"]["end_lsn"].as_u64(),
                ev["replica_resume_point"]["commit_id"].as_u64(),
                ev["replica_resume_point"]["fingerprint"].as_str()
            ),
            (Some(tip.end), Some(10), Some(tip.fingerprint.as_str())),
            "{ev}"
        );
        assert_eq!((ev["primary_end"]["durable_lsn"].as_u64(), ev["primary_end"]["commit_id"].as_u64()), (Some(durable), Some(6)), "{ev}");
        assert_eq!(primary.get(COLL, "k0", "").0, 200, "reads keep working");
        let safety = explain(primary, "replication");
        assert_eq!(rule(&safety, "REPL-11")["evaluation"], false, "{safety}");
        assert_eq!((safety["conclusion"]["read_safety"].as_str(), safety["conclusion"]["accepts_writes"].as_bool()), (Some("safe"), Some(false)));
        assert_eq!(primary.replication()["fence"]["fenced"], true);
        assert_eq!(metric(primary, "aerodb_primary_fenced"), Some(1.0));
    };
    check_fenced(&primary);
    let persisted = checksummed_body(&pdir.join("fence.json"));
    assert_eq!((persisted["code"].as_str(), persisted["rule_id"].as_str()), (Some("REPLICA_AHEAD"), Some("REPL-11")), "{persisted}");

    // Across a restart: still fenced, and the recovery explanation says why.
    assert_eq!(primary.stop(), Some(0));
    let primary = start_primary(&pdir, &[], &[]);
    check_fenced(&primary);
    let rec = explain(&primary, "recovery");
    assert_eq!(rule(&rec, "REPL-11")["evidence"]["in_force"]["replica_id"], replica_id.as_str(), "{rec}");

    // Lifted only by the operator, and the lift is recorded.
    assert_eq!(primary.stop(), Some(0));
    let primary = start_primary(&pdir, &["--lift-fence"], &[]);
    assert_eq!(primary.put(COLL, "after-lift", &json!(1)).1["commit_id"], 7);
    let rec = explain(&primary, "recovery");
    assert_eq!(rule(&rec, "REPL-11")["evidence"]["lifted_at_startup"]["replica_id"], replica_id.as_str(), "{rec}");
    assert!(!pdir.join("fence.json").exists());
    assert_eq!(metric(&primary, "aerodb_primary_fenced"), Some(0.0));
    assert_eq!(primary.stop(), Some(0));
    let primary = start_primary(&pdir, &[], &[]);
    assert_eq!(primary.put(COLL, "later", &json!(1)).1["commit_id"], 8, "the lift holds across restarts");
    let replica = replica.restart(&[]);
    wait_halted(&replica, "REPLICA_AHEAD");
}

/// CORE-5, REPL-3: a primary loses its last 800 acknowledged commits (the
/// tail of one segment and every later segment). It refuses to start;
/// `aerodb repair-wal --from` its stopped replica verifies every record of
/// the replica's copy against the primary's last valid record and copies
/// the bytes back verbatim, respecting segment boundaries; the primary then
/// starts with all 1000 commits, `verify` passes, and the replica keeps
/// streaming from where it was (no halt) while new writes replicate.
#[test]
fn core_5_repair_wal_restores_800_commits_from_a_replica_that_keeps_streaming() {
    let tmp = tmp();
    let (pdir, rdir) = (tmp.path().join("p"), tmp.path().join("r"));
    let seg = ["--wal-segment-bytes", "65536"];
    let primary = start_primary(&pdir, &seg, &[]);
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    for i in 1..=1000u64 {
        assert_eq!(primary.put(COLL, &format!("d{i:04}"), &json!({"i": i, "pad": "r".repeat(150)})).1["commit_id"], i);
    }
    assert_converged(&primary, &[&replica]);
    assert_eq!(replica.stop(), Some(0));
    assert_eq!(primary.stop(), Some(0));
    let whole = wal_dump(&pdir);
    assert!(segments(&pdir).len() > 3, "the WAL spans segments");
    lose_after(&pdir, 200);
    assert_eq!(wal_dump(&pdir).len(), 200);
    assert_refuses_before_mark(&pdir);

    let (code, out) = repair(&pdir, &rdir);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("copied 800 record(s)") && out.contains("durable mark updated"), "{out}");
    assert_eq!(wal_dump(&pdir), whole, "every record is back, byte-identical in identity and position");
    assert_wal_prefix(&pdir, &rdir);
    let (code, out, _) = run_to_exit(&["verify".into(), "--data-dir".into(), pdir.display().to_string()]);
    assert_eq!(code, Some(0), "{out}");

    let primary = start_primary(&pdir, &seg, &[]);
    assert_eq!(primary.replication()["commit_id"], 1000);
    for i in (201..=1000).step_by(37).chain([1000]) {
        let (status, body) = primary.get(COLL, &format!("d{i:04}"), "");
        assert_eq!((status, body["commit_id"].as_u64(), body["doc"]["i"].as_u64()), (200, Some(i), Some(i)), "{body}");
    }
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    workload(&primary, "after-repair", 20, 64);
    assert_converged(&primary, &[&replica]);
    assert_eq!(replica.replication()["blocking_reason"], Value::Null);
}

/// CORE-5: a replica whose copy ends before the primary's durable mark
/// restores what it holds (exit code 3, "partial"), leaves the mark in
/// place so startup still refuses, and a replica of another history (same
/// cluster, different records) is refused because the fingerprint chains
/// do not join, with nothing changed.
#[test]
fn core_5_repair_wal_short_of_the_mark_is_partial_and_a_foreign_history_is_refused() {
    let tmp = tmp();
    let (pdir, rdir) = (tmp.path().join("p"), tmp.path().join("r"));
    let primary = start_primary(&pdir, &[], &[]);
    assert_eq!(primary.stop(), Some(0));
    copy_dir(&pdir, &tmp.path().join("b"));
    let primary = start_primary(&pdir, &[], &[]);
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    workload(&primary, "a", 30, 64);
    assert_converged(&primary, &[&replica]);
    assert_eq!(replica.stop(), Some(0));
    workload(&primary, "a-more", 20, 64);
    assert_eq!(primary.stop(), Some(0));
    lose_after(&pdir, 10);

    // The same cluster, another history: B wrote other records after the common (empty) start.
    let bdir = tmp.path().join("b");
    let b = start_primary(&bdir, &[], &[]);
    let brdir = tmp.path().join("rb");
    let breplica = start_replica(&brdir, b.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    workload(&b, "b", 40, 64);
    assert_converged(&b, &[&breplica]);
    assert_eq!(breplica.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    let before = wal_dump(&pdir);
    let (code, out) = repair(&pdir, &brdir);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("REPAIR_CHAINS_DO_NOT_JOIN") && out.contains("nothing changed"), "{out}");
    assert_eq!(wal_dump(&pdir), before, "nothing changed");

    let (code, out) = repair(&pdir, &rdir);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("partial") && out.contains("REPAIR_SHORT_OF_MARK"), "{out}");
    assert_eq!(wal_dump(&pdir).len(), 30, "what the replica held is restored");
    assert_refuses_before_mark(&pdir);
}

/// CORE-5, REPL-11, F-P5: the primary loses CommitIds 16..=20 (after a
/// clean stop, its replica holds them). It refuses to start; with
/// `--accept-lost-history` it starts at CommitId 15, records the lost
/// LSNs and CommitIds durably and explains them in `/v1/explain/recovery`
/// (and keeps explaining them after later restarts). When the replica that
/// still holds the lost commits reconnects, it halts (REPLICA_AHEAD) and
/// the primary is fenced: nothing is silently forked.
#[test]
fn core_5_repl_11_accept_lost_history_is_recorded_and_the_replica_holding_it_fences_the_primary() {
    let tmp = tmp();
    let (pdir, rdir) = (tmp.path().join("p"), tmp.path().join("r"));
    let primary = start_primary(&pdir, &[], &[]);
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    workload(&primary, "w", 20, 64);
    assert_converged(&primary, &[&replica]);
    assert_eq!(replica.stop(), Some(0));
    assert_eq!(primary.stop(), Some(0));
    let recs = wal_dump(&pdir);
    lose_after(&pdir, 15);
    assert_refuses_before_mark(&pdir);

    let primary = start_primary(&pdir, &["--accept-lost-history"], &[]);
    assert_eq!(primary.replication()["commit_id"], 15);
    let rec = explain(&primary, "recovery");
    let lost = &rec["conclusion"]["history_lost_at_this_startup"]["lost"];
    assert_eq!((lost["first_commit_id"].as_u64(), lost["last_commit_id"].as_u64()), (Some(16), Some(20)), "{rec}");
    assert_eq!((lost["from_lsn"].as_u64(), lost["to_lsn"].as_u64()), (Some(recs[14].end), Some(recs[19].end)), "{rec}");
    assert_eq!(rule(&rec, "CORE-5")["evidence"]["accept_lost_history"], true);
    let file = checksummed_body(&pdir.join("history-loss.json"));
    assert_eq!(file["losses"][0]["lost"]["first_commit_id"], 16, "{file}");
    assert_eq!(primary.put(COLL, "new", &json!(1)).1["commit_id"], 16, "CommitIds continue after the accepted end");

    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    wait_halted(&replica, "REPLICA_AHEAD");
    let (status, body) = primary.put(COLL, "refused", &json!(1));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("PRIMARY_FENCED")), "{body}");
    assert_eq!(body["error"]["evidence"]["replica_resume_point"]["commit_id"], 20, "{body}");

    assert_eq!(primary.stop(), Some(0));
    let primary = start_primary(&pdir, &[], &[]);
    let rec = explain(&primary, "recovery");
    assert_eq!(rec["conclusion"]["history_lost_at_this_startup"], Value::Null);
    assert_eq!(rec["conclusion"]["history_losses"][0]["lost"]["last_commit_id"], 20, "the loss stays explained: {rec}");
    assert_eq!(primary.put(COLL, "still", &json!(1)).0, 503, "still fenced after a restart");
}
