#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
// These tests read the DX API (and replication), which a build without the
// `replication` feature does not have: its nodes never print `listening dx`.
#![cfg(feature = "replication")]
//! CORE-5 and F-P4 against the real binary: acknowledged history is never
//! shortened silently. After a clean stop, every kind of damage to the
//! WAL's tail (a flipped byte in the last record, a zeroed last 4 KiB
//! block, truncation by one record, by 700 KB, the loss of the whole last
//! segment) refuses startup with the mark, the WAL end and the damaged
//! range, fails `aerodb verify`, and changes nothing. After SIGKILL at named
//! crash points, only damage after the durable mark is dropped, within the
//! crash window, and it is reported; damage before the mark still refuses.

mod repl_crash_support;
mod repl_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use repl_crash_support::{
    copy_dir, flip_byte, run_to_exit, segment_lsn, segments, spawn_logged, wait_crash, wal_dump, wal_file_end, Dumped, SEGMENT_HEADER_LEN,
};
use repl_support::{http, spawn, Node};
use serde_json::{json, Value};

const COLL: &str = "d";
/// Small segments, so the WAL spans several files.
const SEGMENT_BYTES: &str = "1048576";
/// Documents written per scenario (about 1 KB each: ~1.9 MB of WAL).
const DOCS: u64 = 1900;

fn args(role: &str, dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![role.into(), "--data-dir".into(), dir.display().to_string()];
    a.extend(["--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--wal-segment-bytes", SEGMENT_BYTES].iter().map(|s| s.to_string()));
    if role == "primary" {
        a.extend(["--repl-listen".to_string(), "127.0.0.1:0".to_string()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn doc(i: u64) -> Value {
    json!({"i": i, "pad": "p".repeat(900)})
}

/// Writes documents 1..=n; returns the CommitIds acknowledged (stops at
/// the first transport error: the node died at an armed crash point).
fn write_docs(node: &Node, n: u64) -> Vec<u64> {
    let mut acked = Vec::new();
    for i in 1..=n {
        match repl_support::try_http("PUT", &format!("http://{}/v1/docs/{COLL}/k{i:05}", node.client), Some(&doc(i))) {
            Ok((200, body)) => acked.push(body["commit_id"].as_u64().unwrap()),
            Ok((status, body)) => panic!("write {i}: {status} {body}"),
            Err(_) => break,
        }
    }
    acked
}

/// The durable mark as docs/formats.md lays it out: (end LSN, CommitId, clean_shutdown).
fn read_mark(dir: &Path) -> (u64, u64, bool) {
    let b = std::fs::read(dir.join("wal").join("durable.mark")).unwrap();
    assert_eq!((b.len(), &b[0..8]), (64, &b"AERODBHM"[..]));
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let flags = u32::from_le_bytes(b[12..16].try_into().unwrap());
    (u64_at(16), u64_at(24), flags & 1 == 1)
}

/// The segment file holding LSN `lsn` (a record start) and its start LSN.
fn segment_of(dir: &Path, lsn: u64) -> (PathBuf, u64) {
    let seg = segments(dir).into_iter().rev().find(|s| segment_lsn(s) <= lsn).unwrap();
    let start = segment_lsn(&seg);
    (seg, start)
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

/// A damage and the LSN where the valid WAL ends after it.
type Damage = fn(&Path, &[Dumped]) -> u64;

/// The five damages of the issue, plus garbage after the end (a torn
/// write). Each returns the end of the valid WAL it leaves.
const DAMAGES: &[(&str, Damage)] = &[
    ("flipped byte in the last record", |dir, recs| {
        let last = recs.last().unwrap();
        let (seg, start) = segment_of(dir, last.lsn);
        flip_byte(&seg, (SEGMENT_HEADER_LEN + (last.lsn + last.end) / 2 - start) as usize);
        last.lsn
    }),
    ("zeroed last 4 KiB block", |dir, recs| {
        let seg = segments(dir).pop().unwrap();
        let mut b = std::fs::read(&seg).unwrap();
        let len = b.len();
        b[len - 4096..].fill(0);
        std::fs::write(&seg, b).unwrap();
        let first_bad = segment_lsn(&seg) + (len as u64 - 4096 - SEGMENT_HEADER_LEN);
        recs.iter().find(|r| r.end > first_bad).unwrap().lsn
    }),
    ("truncated by one record", |dir, recs| {
        let last = recs.last().unwrap();
        let (seg, start) = segment_of(dir, last.lsn);
        set_len(&seg, SEGMENT_HEADER_LEN + last.lsn - start);
        last.lsn
    }),
    ("truncated by 700 KB", |dir, recs| {
        let seg = segments(dir).pop().unwrap();
        let len = std::fs::metadata(&seg).unwrap().len();
        assert!(len > SEGMENT_HEADER_LEN + 700 * 1024, "the last segment holds more than 700 KB ({len})");
        set_len(&seg, len - 700 * 1024);
        let cut = segment_lsn(&seg) + len - 700 * 1024 - SEGMENT_HEADER_LEN;
        recs.iter().find(|r| r.end > cut).unwrap().lsn
    }),
    ("lost the whole last segment", |dir, _| {
        let segs = segments(dir);
        assert!(segs.len() >= 2, "the WAL spans several segments");
        let last = segs.last().unwrap();
        std::fs::remove_file(last).unwrap();
        segment_lsn(last)
    }),
    ("garbage after the end", |dir, recs| {
        let seg = segments(dir).pop().unwrap();
        let mut b = std::fs::read(&seg).unwrap();
        b.extend_from_slice(&[0xA5; 300]);
        std::fs::write(&seg, b).unwrap();
        recs.last().unwrap().end
    }),
];

/// Every WAL file's bytes (to prove nothing was changed).
fn wal_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    segments(dir).into_iter().map(|s| (s.clone(), std::fs::read(&s).unwrap())).collect()
}

fn verify(dir: &Path) -> (Option<i32>, String) {
    let (code, out, _) = run_to_exit(&["verify".into(), "--data-dir".into(), dir.display().to_string()]);
    (code, out)
}

/// Starts the node expecting a refusal; returns (exit code, stderr with logs).
fn refused_start(role: &str, dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(repl_support::bin()).args(args(role, dir, extra)).env("RUST_LOG", "error").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).lines().all(|l| !l.starts_with("listening")), "a refused node serves nothing");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The node's `recovery.process` explanation.
fn recovery(node: &Node) -> Value {
    node.dx_get("/v1/explain/recovery").1["data"].clone()
}

fn rule<'a>(e: &'a Value, id: &str) -> &'a Value {
    e["rules_applied"].as_array().unwrap().iter().find(|r| r["rule_id"] == id).unwrap_or_else(|| panic!("{id} in {e}"))
}

/// CORE-5, F-P4 (primary, and the same rule on a standalone node): after a
/// clean stop each damage refuses startup with a one-line reason naming
/// the mark, the WAL end and the damaged range (code WAL_BEFORE_MARK, or
/// WAL_DAMAGED_AFTER_CLEAN_SHUTDOWN for bytes after the end), logs the
/// `recovery.process` explanation of the refusal, fails `aerodb verify`
/// (rule CORE-5), truncates nothing, and stays refused on a second try.
#[test]
fn f_p4_core_5_damage_after_a_clean_stop_refuses_start_fails_verify_and_truncates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for role in ["primary", "standalone"] {
        let base = tmp.path().join(format!("{role}-base"));
        let node = spawn(&args(role, &base, &[]), &[], &base);
        let acked = write_docs(&node, if role == "primary" { DOCS } else { 300 });
        assert_eq!(node.stop(), Some(0));
        let (mark_lsn, mark_commit, clean) = read_mark(&base);
        assert!(clean, "a clean stop writes a clean-shutdown mark");
        assert_eq!((mark_lsn, mark_commit), (wal_file_end(&base), *acked.last().unwrap()), "at the exact end of the WAL");
        let recs = wal_dump(&base);
        for (name, damage) in DAMAGES {
            if role == "standalone" && (name.contains("700") || name.contains("segment")) {
                continue;
            }
            let dir = tmp.path().join(format!("{role}-{}", name.replace(' ', "-")));
            copy_dir(&base, &dir);
            let valid_end = damage(&dir, &recs);
            let before = wal_bytes(&dir);
            let want = if *name == "garbage after the end" { "WAL_DAMAGED_AFTER_CLEAN_SHUTDOWN" } else { "WAL_BEFORE_MARK" };

            let (code, out) = verify(&dir);
            assert_eq!(code, Some(1), "{role} {name}: verify fails:\n{out}");
            let fail: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
            assert_eq!(fail.len(), 1, "{out}");
            assert!(fail[0].contains(want) && fail[0].contains("CORE-5") && fail[0].contains("F-P4"), "{role} {name}: {}", fail[0]);
            assert!(!out.contains("truncating") && !out.contains("will truncate"), "verify never claims to truncate: {out}");

            let (code, stderr) = refused_start(role, &dir, &[]);
            assert_eq!(code, Some(1), "{role} {name}: {stderr}");
            let reason: Vec<&str> = stderr.lines().filter(|l| l.contains("refusing to start")).collect();
            assert_eq!(reason.len(), 1, "one reason line: {stderr}");
            assert!(reason[0].contains(want) && reason[0].contains("CORE-5"), "{role} {name}: {}", reason[0]);
            assert!(reason[0].contains(&format!("durable mark at LSN {mark_lsn} (CommitId {mark_commit}")), "the mark: {}", reason[0]);
            if want == "WAL_BEFORE_MARK" {
                assert!(reason[0].contains(&format!("WAL ends at LSN {valid_end}")), "the WAL end: {}", reason[0]);
                assert!(reason[0].contains(&format!("LSNs {valid_end}..")), "the damaged range: {}", reason[0]);
            }
            let explained =
                stderr.lines().find(|l| l.contains("recovery.process of the refused startup")).unwrap_or_else(|| panic!("explanation logged: {stderr}"));
            assert!(explained.contains("\"outcome\":\"refused\"") && explained.contains(&format!("\"mark_lsn\":{mark_lsn}")), "{explained}");
            assert_eq!(wal_bytes(&dir), before, "{role} {name}: nothing truncated or repaired");
            assert_eq!(refused_start(role, &dir, &[]).0, Some(1), "still refused on a second try");
        }
    }
}

/// What one crash scenario leaves: the crashed directory, its records, the
/// mark on disk and the CommitIds acknowledged before the crash.
struct Crashed {
    dir: PathBuf,
    recs: Vec<Dumped>,
    mark: (u64, u64, bool),
    acked: Vec<u64>,
}

/// Runs a primary armed with `failpoint`, writes until it aborts there, and
/// returns what the crash left.
fn crash(tmp: &Path, name: &str, failpoint: &str, extra: &[&str]) -> Crashed {
    let dir = tmp.join(name);
    let log = tmp.join(format!("{name}.log"));
    let node = spawn_logged(&args("primary", &dir, extra), &[("FAILPOINTS", failpoint)], &dir, &log);
    let acked = write_docs(&node, 4 * DOCS);
    let point = failpoint.split('=').next().unwrap();
    wait_crash(node, point, &log);
    let recs = wal_dump(&dir);
    let mark = read_mark(&dir);
    assert!(!mark.2, "a crash leaves a running mark");
    let last_acked = *acked.last().unwrap();
    assert!(mark.1 <= recs.last().unwrap().commit_id && last_acked <= recs.last().unwrap().commit_id, "nothing acknowledged is missing before damage");
    Crashed { dir, recs, mark, acked }
}

/// Runs a primary, writes `DOCS` documents and kills it with SIGKILL.
fn sigkill(tmp: &Path, name: &str, extra: &[&str]) -> Crashed {
    let dir = tmp.join(name);
    let node = spawn(&args("primary", &dir, extra), &[], &dir);
    let acked = write_docs(&node, DOCS);
    assert_eq!(acked.len() as u64, DOCS);
    node.kill();
    let recs = wal_dump(&dir);
    let mark = read_mark(&dir);
    assert!(!mark.2, "a crash leaves a running mark");
    assert!(recs.last().unwrap().commit_id >= DOCS, "every acknowledged write survives a process crash");
    Crashed { dir, recs, mark, acked }
}

/// CORE-5, F-P4 after SIGKILL and after aborts at named crash points
/// (`wal.after_fsync` with the mark far behind, `mark.after_write` with the
/// mark just written): for every damage, the node starts exactly when the valid WAL
/// still reaches the mark. Then every commit up to the mark is served,
/// what was dropped lies after the mark and within the crash window, and
/// the recovery explanation (CORE-5) reports the mark, the WAL end, the
/// bytes dropped and the window; otherwise startup refuses with
/// WAL_BEFORE_MARK and verify fails.
#[test]
fn core_5_f_p4_after_crash_points_loss_is_bounded_by_the_window_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let scenarios = [
        // Marks by time every 10 min and by bytes every 4 MiB: the mark stays at the startup one.
        crash(tmp.path(), "after-fsync", "wal.after_fsync=1799*off->return", &["--durable-mark-every-ms", "600000", "--durable-mark-every-bytes", "4194304"]),
        // A mark every 64 KiB; abort right after the 30th one is durable.
        crash(tmp.path(), "after-mark", "mark.after_write=30*off->return", &["--durable-mark-every-ms", "600000", "--durable-mark-every-bytes", "65536"]),
        // SIGKILL at the end of a burst of writes, marks every 64 KiB or 100 ms.
        sigkill(tmp.path(), "sigkill", &["--durable-mark-every-bytes", "65536"]),
    ];
    let mut started = 0;
    let mut refused = 0;
    for c in &scenarios {
        let (mark_lsn, mark_commit, _) = c.mark;
        let window = if c.dir.ends_with("after-fsync") { 8 * 1024 * 1024 } else { 128 * 1024 };
        assert!(c.acked.iter().all(|&cid| cid <= c.recs.last().unwrap().commit_id), "every acknowledged commit is in the crashed WAL");
        assert!(wal_file_end(&c.dir) - mark_lsn <= window, "the committer kept the WAL within the window of the mark");
        for (name, damage) in DAMAGES {
            let dir = c.dir.with_file_name(format!("{}-{}", c.dir.file_name().unwrap().to_str().unwrap(), name.replace(' ', "-")));
            copy_dir(&c.dir, &dir);
            if segments(&dir).len() < 2 && name.contains("segment") {
                continue;
            }
            if name.contains("700") && std::fs::metadata(segments(&dir).pop().unwrap()).unwrap().len() <= SEGMENT_HEADER_LEN + 700 * 1024 {
                continue;
            }
            let valid_end = damage(&dir, &c.recs);
            if valid_end < mark_lsn {
                refused += 1;
                let (code, stderr) = refused_start("primary", &dir, &[]);
                assert_eq!(code, Some(1), "{name}: damage before the mark at {mark_lsn} refuses: {stderr}");
                assert!(stderr.contains("WAL_BEFORE_MARK"), "{name}: {stderr}");
                assert_eq!(verify(&dir).0, Some(1), "{name}");
                continue;
            }
            started += 1;
            let node = spawn(&args("primary", &dir, &[]), &[], &dir);
            let e = recovery(&node);
            let core5 = rule(&e, "CORE-5");
            assert_eq!(core5["evaluation"], true, "{name}: {core5}");
            let ev = &core5["evidence"];
            assert_eq!((ev["mark_found"]["end_lsn"].as_u64(), ev["mark_found"]["commit_id"].as_u64()), (Some(mark_lsn), Some(mark_commit)), "{name}: {ev}");
            assert_eq!(ev["wal_end"]["end_lsn"].as_u64(), Some(valid_end), "{name}: the WAL end is reported: {ev}");
            let dropped = ev["bytes_dropped"].as_u64().unwrap();
            let window_reported = ev["window_bytes"].as_u64().unwrap();
            assert!(valid_end + dropped - mark_lsn <= window_reported, "{name}: dropped bytes lie after the mark, within the window: {ev}");
            assert_eq!(e["conclusion"]["bytes_truncated"].as_u64().unwrap_or(0), dropped, "{name}");
            let wal_view = node.dx_get("/v1/wal").1;
            assert_eq!(wal_view["data"]["torn_tail"]["bytes_dropped"].as_u64().unwrap_or(0), dropped, "{name}: /v1/wal reports the drop");
            // Every commit up to the mark (and every acknowledged one still in the WAL) is served.
            let c_now = node.replication()["commit_id"].as_u64().unwrap();
            assert!(c_now >= mark_commit, "{name}: C {c_now} below the mark's {mark_commit}");
            for cid in [1, mark_commit.max(1), c_now] {
                let (status, body) = http("GET", &format!("http://{}/v1/docs/{COLL}/k{cid:05}", node.client), None);
                assert_eq!((status, body["commit_id"].as_u64()), (200, Some(cid)), "{name}: {body}");
            }
            // CommitIds continue after the recovered end, never reusing one still in the WAL.
            let (status, body) = node.put(COLL, "after", &json!(1));
            assert_eq!((status, body["commit_id"].as_u64()), (200, Some(c_now + 1)), "{name}: {body}");
            assert_eq!(node.stop(), Some(0));
            let (code, out) = verify(&dir);
            assert_eq!(code, Some(0), "{name}: {out}");
        }
    }
    assert!(started >= 6 && refused >= 2, "both outcomes exercised: {started} started, {refused} refused");
}

/// CORE-5, CORE-3 with `--wal-preallocate-bytes`: a primary killed (SIGKILL)
/// right after a burst of acknowledged writes may leave zeros after its last
/// record, never anything else; `verify` passes and notes them; startup cuts
/// exactly them off and reports them (the bytes dropped, all of them
/// preallocated zeros), serves the acknowledged writes and continues
/// CommitIds; a clean stop leaves the WAL ending at its last record with the
/// clean mark there.
#[test]
fn core_5_a_preallocating_primary_killed_after_acks_keeps_every_write_and_reports_the_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = ["--durable-mark-every-bytes", "65536", "--wal-preallocate-bytes", "1048576"];
    let c = sigkill(tmp.path(), "preallocated", &extra);
    let last = c.recs.last().unwrap();
    let seg = segments(&c.dir).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let logical = (SEGMENT_HEADER_LEN + last.end - segment_lsn(&seg)) as usize;
    assert!(bytes.len() >= logical, "the last record is whole");
    assert!(bytes[logical..].iter().all(|&b| b == 0), "only zeros follow the last record");
    // Usually a chunk's worth: the idle trim (20 ms without a commit) rarely beats the kill.
    let zeros = (bytes.len() - logical) as u64;
    let (code, out) = verify(&c.dir);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.contains("preallocated zeros"), zeros > 0, "{out}");
    assert_eq!(out.contains("only zeros after the last valid record"), zeros > 0, "{out}");

    let node = spawn(&args("primary", &c.dir, &extra), &[], &c.dir);
    assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, logical, "startup cut exactly the zeros off");
    let e = recovery(&node);
    assert_eq!(e["conclusion"]["preallocated_bytes_cut"].as_u64().unwrap_or(0), zeros, "{e}");
    assert_eq!(e["conclusion"]["bytes_truncated"].as_u64().unwrap_or(0), zeros, "{e}");
    assert_eq!(rule(&e, "CORE-5")["evaluation"], true, "{e}");
    let c_now = node.replication()["commit_id"].as_u64().unwrap();
    assert_eq!(c_now, last.commit_id, "every record of the crashed WAL is served");
    for &cid in [c.acked.first(), c.acked.get(c.acked.len() / 2), c.acked.last()].iter().flatten() {
        let (status, body) = http("GET", &format!("http://{}/v1/docs/{COLL}/k{cid:05}", node.client), None);
        assert_eq!((status, body["commit_id"].as_u64()), (200, Some(*cid)), "{body}");
    }
    let (status, body) = node.put(COLL, "after", &json!(1));
    assert_eq!((status, body["commit_id"].as_u64()), (200, Some(c_now + 1)), "{body}");
    assert_eq!(node.stop(), Some(0));
    assert_eq!(read_mark(&c.dir), (wal_file_end(&c.dir), c_now + 1, true), "a clean stop cuts the zeros off and marks the exact end");
    let (code, out) = verify(&c.dir);
    assert!(code == Some(0) && !out.contains("preallocated"), "{out}");
}

/// CORE-5: the group committer never lets durable WAL run more than the
/// crash window beyond the last mark, observed from outside: under
/// continuous writes with marks every 64 KiB, the mark on disk stays
/// within 128 KiB (+ one record) of the WAL's end whenever it is sampled,
/// and `/metrics` states the window.
#[test]
fn core_5_durable_wal_stays_within_the_window_of_the_mark_under_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let node = spawn(&args("primary", &dir, &["--durable-mark-every-ms", "600000", "--durable-mark-every-bytes", "65536"]), &[], &dir);
    let client = node.client.clone();
    let writer = std::thread::spawn(move || {
        for i in 1..=1200u64 {
            let (status, _) = http("PUT", &format!("http://{client}/v1/docs/{COLL}/k{i:05}"), Some(&doc(i)));
            assert_eq!(status, 200);
        }
    });
    let mut samples = 0;
    while !writer.is_finished() {
        // The end first: the mark read afterwards can only be newer.
        let end = wal_file_end(&dir);
        let (mark_lsn, _, _) = read_mark(&dir);
        assert!(end.saturating_sub(mark_lsn) <= 128 * 1024, "WAL end {end}, mark {mark_lsn}: beyond the 128 KiB window");
        samples += 1;
        std::thread::yield_now();
    }
    writer.join().unwrap();
    assert!(samples > 0);
    let (_, metrics) = node.dx_get("/metrics");
    let text = metrics.as_str().unwrap().to_string();
    assert!(text.contains("aerodb_durable_mark_window_bytes 131072"), "{text}");
    assert_eq!(node.stop(), Some(0));
    assert_eq!(read_mark(&dir), (wal_file_end(&dir), 1200, true), "a clean stop marks the exact end");
}
