#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! CORE-2/CORE-3 against the real binary: `aerodb verify` passes a good
//! directory and names the rule on a corrupted one; startup refuses
//! mid-log corruption with a one-line reason and changes nothing; a torn
//! tail (invalid bytes at the very end) is truncated and the node serves.

mod support;

use std::io::Write;
use std::path::Path;

use serde_json::json;
use support::{run_tool, segment_files, start_node, try_start, wal_dump, NodeOptions};

const SEGMENT_HEADER_LEN: u64 = 64;

/// Writes `n` documents through a standalone node and stops it cleanly.
fn populate(dir: &Path, n: u64) -> Vec<(String, serde_json::Value)> {
    let node = start_node("standalone", dir);
    let docs: Vec<(String, serde_json::Value)> = (1..=n).map(|i| (format!("k{i:03}"), json!({"i": i, "text": format!("document number {i}")}))).collect();
    for (i, (key, doc)) in docs.iter().enumerate() {
        assert_eq!(node.put_doc("docs", key, doc), i as u64 + 1);
    }
    node.stop_clean();
    docs
}

/// Writes `n` documents through a standalone node and kills it with
/// SIGKILL (a crash: its durable mark is a running one, CORE-5).
fn populate_then_crash(dir: &Path, n: u64) -> Vec<(String, serde_json::Value)> {
    let node = start_node("standalone", dir);
    let docs: Vec<(String, serde_json::Value)> = (1..=n).map(|i| (format!("k{i:03}"), json!({"i": i, "text": format!("document number {i}")}))).collect();
    for (i, (key, doc)) in docs.iter().enumerate() {
        assert_eq!(node.put_doc("docs", key, doc), i as u64 + 1);
    }
    node.kill();
    docs
}

fn verify(dir: &Path) -> (Option<i32>, String) {
    let (code, stdout, _) = run_tool(&["verify", "--data-dir", dir.to_str().unwrap()]);
    (code, stdout)
}

/// Every document is present at its CommitId and the next write gets n+1.
fn assert_serves_all(dir: &Path, docs: &[(String, serde_json::Value)]) {
    let node = start_node("standalone", dir);
    assert_eq!(node.commit_id(), docs.len() as u64);
    for (i, (key, doc)) in docs.iter().enumerate() {
        let cid = i as u64 + 1;
        assert_eq!(node.get(&format!("/v1/docs/docs/{key}?at={cid}")).1, json!({"read_view": cid, "commit_id": cid, "doc": doc}));
    }
    assert_eq!(node.put_doc("docs", "next", &json!("after recovery")), docs.len() as u64 + 1);
    node.stop_clean();
}

fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

/// CORE-2: `aerodb verify` exits 0 on a good data directory and reports
/// what it checked.
#[test]
fn core_2_verify_passes_a_good_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), 12);
    let (code, stdout) = verify(dir.path());
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("wal") && l.contains("12 record(s)")), "{stdout}");
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"));
}

/// CORE-2, CORE-3: one flipped byte in the middle of the WAL (valid records
/// after it) is corruption: `verify` exits non-zero naming the rule, startup
/// refuses with a one-line reason citing CORE-3, and nothing on disk is
/// repaired or truncated.
#[test]
fn core_3_mid_log_corruption_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), 30);
    let records = wal_dump(dir.path());
    let segment = segment_files(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // A byte inside record 15's body: 14 whole records before it, 15 after.
    let victim = &records[14];
    let offset = (SEGMENT_HEADER_LEN + (victim.lsn + victim.end_lsn) / 2) as usize;
    bytes[offset] ^= 0x5A;
    std::fs::write(&segment, &bytes).unwrap();

    let (code, stdout) = verify(dir.path());
    assert!(code.is_some_and(|c| c != 0), "verify must fail on corruption: {stdout}");
    let fail: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(fail.len(), 1, "the first failure, once: {stdout}");
    assert!(fail[0].contains("CORE-3") && fail[0].contains("CORE-2"), "names the rules: {}", fail[0]);
    assert!(fail[0].contains(&format!("LSN {}", victim.lsn)), "names the LSN of the bad record: {}", fail[0]);
    assert!(!stdout.contains("all checks passed"));

    let failure = match try_start(NodeOptions::new("standalone", dir.path())) {
        Ok(_) => panic!("a node must not start on a corrupted WAL (CORE-3)"),
        Err(f) => f,
    };
    assert!(failure.status.and_then(|s| s.code()).is_some_and(|c| c != 0), "{:?}", failure.status);
    let reason: Vec<&str> = failure.stderr.lines().filter(|l| l.contains("refusing to start")).collect();
    assert_eq!(reason.len(), 1, "one reason line:\n{}", failure.stderr);
    assert!(reason[0].contains("CORE-3"), "cites CORE-3: {}", reason[0]);
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "corruption is never repaired or truncated");
    // Still refused on a second attempt: the halt is not cleared by retrying.
    assert!(try_start(NodeOptions::new("standalone", dir.path())).is_err());
}

/// CORE-3, CORE-5: after a crash, garbage appended after the last valid
/// record (after the durable mark, within the crash window) is a torn tail:
/// `verify` reports it (and passes), startup truncates exactly those bytes
/// and serves every record, and CommitIds continue. (After a clean
/// shutdown the same bytes refuse startup: see tests/durability.rs.)
#[test]
fn core_3_torn_tail_garbage_is_truncated_at_startup_and_the_node_serves() {
    let dir = tempfile::tempdir().unwrap();
    let docs = populate_then_crash(dir.path(), 10);
    let segment = segment_files(dir.path()).pop().unwrap();
    let good_len = std::fs::metadata(&segment).unwrap().len();
    append(&segment, &[0xA5; 100]);

    let (code, stdout) = verify(dir.path());
    assert_eq!(code, Some(0), "a torn tail is not corruption: {stdout}");
    assert!(stdout.lines().any(|l| l.contains("torn tail of 100 byte(s)") && l.contains("CORE-3")), "{stdout}");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_len + 100, "verify is read-only");

    let node = start_node("standalone", dir.path());
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), good_len, "startup truncated exactly the torn tail");
    node.stop_clean();
    assert_serves_all(dir.path(), &docs);
    let (code, stdout) = verify(dir.path());
    assert_eq!(code, Some(0));
    assert!(!stdout.contains("torn tail"), "{stdout}");
}

/// CORE-3, CORE-5: the first half of a record at the end of the WAL (a
/// write torn by a crash, after the durable mark) is dropped at startup;
/// every whole record survives.
#[test]
fn core_3_torn_partial_record_at_the_tail_is_truncated_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let docs = populate_then_crash(dir.path(), 5);
    let records = wal_dump(dir.path());
    let segment = segment_files(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let last = records.last().unwrap();
    let start = (SEGMENT_HEADER_LEN + last.lsn) as usize;
    let end = (SEGMENT_HEADER_LEN + last.end_lsn) as usize;
    assert_eq!(end, bytes.len());
    // A copy of the last record, cut in half, as if the next append was torn.
    append(&segment, &bytes[start..start + (end - start) / 2]);

    let (code, stdout) = verify(dir.path());
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("torn tail"), "{stdout}");
    assert_serves_all(dir.path(), &docs);
    assert_eq!(wal_dump(dir.path()).len(), 6);
}
