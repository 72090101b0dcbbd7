#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
// These tests read the DX API (and replication), which a build without the
// `replication` feature does not have: its nodes never print `listening dx`.
#![cfg(feature = "replication")]
//! CORE-6 and F-SC1 against running nodes: the background scrub re-reads
//! every retained snapshot and sealed WAL segment at a bounded rate, reports
//! damage in `GET /v1/scrub` (file, offset, rule CORE-6, when in CommitIds)
//! and `/metrics`, and withdraws a damaged snapshot so neither recovery nor
//! a bootstrap uses it.

mod repl_crash_support;
mod repl_support;

use repl_crash_support::{assert_converged, run_to_exit, segment_lsn, segments, wal_dump, workload, SEGMENT_HEADER_LEN};
use repl_support::{start_primary, start_replica, wait_for, Node};
use serde_json::{json, Value};

const FAST_SCRUB: &[&str] = &["--scrub-pass-interval-ms", "20", "--scrub-bytes-per-second", "8388608"];

/// Flips one byte in place (one `pwrite`, the file never shrinks): damage
/// as a disk would make it, while the scrub may be reading the file.
fn flip_byte(path: &std::path::Path, offset: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset as u64).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], offset as u64).unwrap();
    f.sync_all().unwrap();
}

fn scrub(node: &Node) -> Value {
    let (status, body) = node.dx_get("/v1/scrub");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["api_version"], "v1");
    body["data"].clone()
}

fn metric(node: &Node, name: &str) -> Option<f64> {
    let text = node.dx_get("/metrics").1.as_str().unwrap().to_string();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Waits for a scrub pass that started at CommitId `c` or later and
/// completed; returns its summary.
fn wait_clean_pass_from(node: &Node, c: u64) -> Value {
    wait_for(&format!("a completed scrub pass started at CommitId {c}"), || {
        let s = scrub(node);
        let last = s["last_pass"].clone();
        (last["started_at_commit_id"].as_u64().is_some_and(|x| x >= c)).then_some(last)
    })
}

/// Waits for a finding on `file`; returns it.
fn wait_finding(node: &Node, file: &str) -> Value {
    wait_for(&format!("a scrub finding on {file}"), || {
        let s = scrub(node);
        s["findings"].as_array().and_then(|f| f.iter().find(|x| x["file"] == file).cloned())
    })
}

fn snapshot_names(node: &Node) -> Vec<String> {
    node.dx_get("/v1/snapshots").1["data"]["snapshots"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

/// F-SC1, CORE-6: a primary holds two snapshots and several sealed WAL
/// segments, and a first scrub pass finds them all clean. One byte of the
/// older snapshot's data file is then flipped while the node runs: the
/// scrub reports it (file, byte range, rule CORE-6, the failed check
/// SNAPSHOT_CHECKSUM, the CommitId when found) in `/v1/scrub` and
/// `/metrics`, withdraws the snapshot (renamed `.damaged-<C>`, kept) so it
/// is no longer listed, served or used at the next startup, and writes
/// keep working. A flipped byte in a sealed WAL segment is reported with
/// the damaged record's file offset and LSN.
#[test]
fn f_sc1_scrub_finds_a_flipped_byte_in_an_older_snapshot_while_the_node_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let mut extra = vec!["--snapshot-every-bytes", "20000", "--wal-segment-bytes", "16384"];
    extra.extend_from_slice(FAST_SCRUB);
    let primary = start_primary(&dir, &extra, &[]);
    for i in 0..80u64 {
        assert_eq!(primary.put("s", &format!("k{i:03}"), &json!({"i": i, "pad": "s".repeat(700)})).0, 200);
    }
    let c = primary.replication()["commit_id"].as_u64().unwrap();
    // No further snapshot is due: the newest is within 20000 bytes of the durable end.
    wait_for("two snapshots and no snapshot due", || {
        let v = primary.dx_get("/v1/snapshots").1["data"].clone();
        let durable = primary.replication()["durable_lsn"].as_u64().unwrap();
        let held = v["snapshots"].as_array().unwrap().clone();
        (held.len() == 2 && held[0]["lsn"].as_u64().unwrap() + 20000 > durable).then_some(())
    });
    let first = wait_clean_pass_from(&primary, c);
    assert_eq!(first["damaged"], 0, "{first}");
    assert!(first["verified"].as_u64().unwrap() >= 2 + 3, "two snapshots and the sealed segments: {first}");
    assert!(scrub(&primary)["policy"]["bytes_per_second"].as_u64().unwrap() >= 8 * 1024 * 1024);

    let older = snapshot_names(&primary)[1].clone();
    let data = dir.join("snapshots").join(&older).join("data-000000.bin");
    let len = std::fs::metadata(&data).unwrap().len();
    flip_byte(&data, len as usize / 2);
    let file = format!("snapshots/{older}/data-000000.bin");
    let f = wait_finding(&primary, &file);
    assert_eq!(
        (f["rule_id"].as_str(), f["code"].as_str(), f["check_rule"].as_str(), f["kind"].as_str()),
        (Some("CORE-6"), Some("SNAPSHOT_CHECKSUM"), Some("F-S4"), Some("snapshot")),
        "{f}"
    );
    assert_eq!((f["offset"].as_u64(), f["length"].as_u64()), (Some(0), Some(len)), "the file's whole-file crc32c names the range: {f}");
    assert_eq!(f["found_at_commit_id"].as_u64(), Some(c), "{f}");
    let to = format!("snapshots/.damaged-{older}");
    assert_eq!((f["action"]["action"].as_str(), f["action"]["to"].as_str()), (Some("withdrawn"), Some(to.as_str())), "{f}");
    assert!(!snapshot_names(&primary).contains(&older), "withdrawn from the published snapshots");
    assert!(dir.join(&to).join("data-000000.bin").exists(), "kept for forensics");
    assert_eq!(metric(&primary, "aerodb_scrub_findings"), Some(1.0));
    assert_eq!(primary.put("s", "after", &json!(1)).0, 200, "writes keep working");

    // The next startup never uses the withdrawn snapshot; verify says what it is.
    assert_eq!(primary.stop(), Some(0));
    let (code, out, _) = run_to_exit(&["verify".into(), "--data-dir".into(), dir.display().to_string()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!(".damaged-{older} was withdrawn by the scrub")), "{out}");
    let primary = start_primary(&dir, &extra, &[]);
    let rec = primary.dx_get("/v1/explain/recovery").1["data"].clone();
    assert_ne!(rec["conclusion"]["base"]["name"], older.as_str(), "{rec}");
    assert!(
        rec["rules_applied"].as_array().unwrap().iter().all(|r| !r.to_string().contains(&format!("\"{older}\""))),
        "the withdrawn snapshot is not even a candidate"
    );

    // A sealed WAL segment: the damaged record is named by file offset and LSN.
    let seg = segments(&dir).into_iter().next().unwrap();
    let start = segment_lsn(&seg);
    let recs = wal_dump(&dir);
    let victim = recs.iter().find(|r| r.lsn >= start + 100).unwrap();
    flip_byte(&seg, (SEGMENT_HEADER_LEN + victim.lsn - start + 30) as usize);
    let name = format!("wal/{}", seg.file_name().unwrap().to_str().unwrap());
    let f = wait_finding(&primary, &name);
    assert_eq!(
        (f["kind"].as_str(), f["code"].as_str(), f["check_rule"].as_str(), f["rule_id"].as_str()),
        (Some("wal_segment"), Some("CHECKSUM_MISMATCH"), Some("CORE-2"), Some("CORE-6")),
        "{f}"
    );
    assert_eq!((f["offset"].as_u64(), f["lsn"].as_u64()), (Some(SEGMENT_HEADER_LEN + victim.lsn - start), Some(victim.lsn)), "{f}");
    assert_eq!(f["action"]["action"], "reported");
}

/// CORE-6: a replica scrubs its installed bootstrap snapshot and its sealed
/// WAL segments (clean passes counted in `/v1/scrub` and `/metrics`), and
/// reports a flipped byte in a sealed segment without changing anything.
#[test]
fn core_6_replica_scrubs_its_bootstrap_snapshot_and_sealed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = start_primary(&tmp.path().join("p"), &["--wal-segment-bytes", "8192"], &[]);
    workload(&primary, "a", 10, 200);
    let rdir = tmp.path().join("r");
    let mut extra = vec!["--bootstrap", "snapshot"];
    extra.extend_from_slice(FAST_SCRUB);
    let replica = start_replica(&rdir, primary.repl.as_ref().unwrap(), &extra, &[]);
    workload(&primary, "b", 60, 200);
    let (c, _) = assert_converged(&primary, &[&replica]);
    let pass = wait_clean_pass_from(&replica, c);
    assert_eq!(pass["damaged"], 0, "{pass}");
    assert!(pass["verified"].as_u64().unwrap() >= 3, "the bootstrap snapshot and sealed segments: {pass}");
    assert!(metric(&replica, "aerodb_scrub_passes_total").unwrap() >= 1.0);
    assert_eq!(scrub(&replica)["role"], "replica");

    let seg = segments(&rdir).into_iter().find(|s| std::fs::metadata(s).unwrap().len() > SEGMENT_HEADER_LEN + 100).unwrap();
    let before = std::fs::metadata(&seg).unwrap().len();
    flip_byte(&seg, (SEGMENT_HEADER_LEN + 10) as usize);
    let name = format!("wal/{}", seg.file_name().unwrap().to_str().unwrap());
    let f = wait_finding(&replica, &name);
    assert_eq!(
        (f["code"].as_str(), f["offset"].as_u64(), f["action"]["action"].as_str()),
        (Some("CHECKSUM_MISMATCH"), Some(SEGMENT_HEADER_LEN), Some("reported")),
        "{f}"
    );
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), before, "the scrub changes nothing");
}
