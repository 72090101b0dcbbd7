#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Named crash points (armed in test builds through `FAILPOINTS`) around
//! the WAL fsync: F-P1 (crash after a CommitId is assigned, before fsync)
//! and F-P2 (crash after fsync, before the write is applied and
//! acknowledged), each followed by a restart without crash points.

mod support;

use std::path::Path;

use serde_json::json;
use support::{request, segment_files, start, start_node, wal_dump, NodeOptions};

/// Starts a node armed to abort at `failpoint`, sends one write, and
/// returns once the process died without acknowledging it.
fn crash_one_write_at(dir: &Path, failpoint: &str, key: &str) {
    let mut node = start(NodeOptions::new("standalone", dir).env("FAILPOINTS", &format!("{failpoint}=return")));
    let url = format!("{}/v1/docs/c/{key}", node.url());
    let agent = ureq::AgentBuilder::new().build();
    let res = support::try_request(&agent, "PUT", &url, Some(br#"{"a":1}"#));
    assert!(res.is_err(), "write must not be acknowledged, got {res:?}");
    let status = node.wait_exit();
    assert!(!status.success(), "the crash point aborts the process");
    assert!(node.stderr().contains(&format!("crash point {failpoint} reached")), "{}", node.stderr());
}

/// F-P1: a crash between CommitId assignment and fsync never acknowledges
/// the write. A crash there loses whatever was not fsynced when the machine
/// goes down with the process: with those bytes gone, the record is absent
/// after restart (C = 0, key not found) and the next write gets CommitId 1.
#[test]
fn f_p1_crash_point_before_fsync_aborts_without_ack() {
    let dir = tempfile::tempdir().unwrap();
    // Initialise, so the durable starting point is known: the segment header only.
    start_node("standalone", dir.path()).stop_clean();
    let segment = segment_files(dir.path()).pop().unwrap();
    let durable_len = std::fs::metadata(&segment).unwrap().len();

    crash_one_write_at(dir.path(), "wal.before_fsync", "k");

    // Power loss at the crash point: everything after the last fsync is gone.
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(durable_len).unwrap();

    let node = start_node("standalone", dir.path());
    let (status, body) = node.get("/v1/docs/c/k");
    assert_eq!(status, 404, "the unacknowledged record is absent: {body}");
    assert_eq!(body["read_view"], 0);
    assert_eq!(node.put_doc("c", "next", &json!({"b": 2})), 1, "CommitId 1 is assigned again: it was never acknowledged");
    assert_eq!(node.get("/v1/docs/c/k").0, 404);
    node.stop_clean();
    let records = wal_dump(dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].commit_id, records[0].ops.clone()), (1, vec!["put c/next".to_string()]));
}

/// F-P1 (process-only crash): bytes handed to the OS before the crash may
/// survive a process abort, so an unacknowledged record is either absent
/// (and the next write gets CommitId 1) or replayed whole with exactly the
/// content sent (and the next write gets 2): never partial, never
/// renumbered, CommitIds contiguous, and the WAL verifies.
#[test]
fn f_p1_process_crash_before_fsync_leaves_the_record_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    crash_one_write_at(dir.path(), "wal.before_fsync", "k");
    let node = start_node("standalone", dir.path());
    let (status, body) = node.get("/v1/docs/c/k");
    let next = match status {
        404 => {
            assert_eq!(body["read_view"], 0);
            1
        }
        200 => {
            assert_eq!(body, json!({"read_view": 1, "commit_id": 1, "doc": {"a": 1}}));
            2
        }
        _ => panic!("unexpected {status} {body}"),
    };
    assert_eq!(node.put_doc("c", "next", &json!(2)), next);
    node.stop_clean();
    let ids: Vec<u64> = wal_dump(dir.path()).iter().map(|r| r.commit_id).collect();
    assert_eq!(ids, (1..=next).collect::<Vec<_>>());
    let (code, stdout, _) = support::run_tool(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
}

/// F-P2: a crash after the record is fsynced but before it is applied and
/// acknowledged: the client got no answer, yet the record is durable, so
/// it is replayed on restart with its CommitId, and CommitIds continue.
#[test]
fn f_p2_crash_after_fsync_is_replayed_on_restart_and_commit_ids_continue() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    for i in 1..=3u64 {
        assert_eq!(node.put_doc("c", &format!("before{i}"), &json!(i)), i);
    }
    node.stop_clean();

    crash_one_write_at(dir.path(), "wal.after_fsync", "k");

    let node = start_node("standalone", dir.path());
    assert_eq!(node.get("/v1/docs/c/k"), (200, json!({"read_view": 4, "commit_id": 4, "doc": {"a": 1}})), "the durable record is replayed");
    for i in 1..=3u64 {
        assert_eq!(node.get(&format!("/v1/docs/c/before{i}")).1["commit_id"], i);
    }
    assert_eq!(node.put_doc("c", "next", &json!(5)), 5, "CommitIds continue at C+1");
    let resp = request("GET", &format!("{}/v1/docs/c/k?at=3", node.url()), None);
    assert_eq!(resp.0, 404, "not visible before its CommitId");
    node.stop_clean();
    let ids: Vec<u64> = wal_dump(dir.path()).iter().map(|r| r.commit_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}
