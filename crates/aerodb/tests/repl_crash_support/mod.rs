//! Helpers shared by the crash, bootstrap and divergence replication tests
//! (`replication_crash.rs`, `replication_bootstrap.rs`), on top of the
//! common `repl_support`: nodes whose stderr is captured to a file (to
//! prove which crash point fired), restarting a primary on its old ports,
//! a background reader that records every admitted replica read (to
//! compare each with the primary's answer at the same read view), a
//! deterministic multi-op workload, WAL-file inspection and the common
//! end-of-test convergence checks (REPL-3, REPL-4).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::repl_support::{self, wait_for, Node};

/// Collection every workload writes.
pub const COLL: &str = "c";
/// Keys the workload cycles through (and the reader reads).
pub const KEYS: u64 = 8;
/// Length of a WAL segment header (segment files hold records after it).
pub const SEGMENT_HEADER_LEN: u64 = 64;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub use crate::repl_support::try_http;

/// Starts `aerodb <args>` like `repl_support::spawn`, but writes the
/// node's stderr to `log` so a test can read what it said before dying.
pub fn spawn_logged(args: &[String], envs: &[(&str, &str)], data_dir: &Path, log: &Path) -> Node {
    repl_support::spawn_to(args, envs, data_dir, Some(log))
}

/// Arguments of a replica on port 0.
pub fn replica_args(dir: &Path, primary: &str, bootstrap: &str) -> Vec<String> {
    let mut args = s(&["replica", "--data-dir"]);
    args.push(dir.display().to_string());
    args.extend(s(&["--primary", primary, "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--bootstrap", bootstrap]));
    args
}

/// Starts a replica (port 0) whose stderr goes to `log`.
pub fn start_replica_logged(dir: &Path, primary: &str, bootstrap: &str, envs: &[(&str, &str)], log: &Path) -> Node {
    spawn_logged(&replica_args(dir, primary, bootstrap), envs, dir, log)
}

/// Where a primary listens, so it can be restarted on the same ports (a
/// running replica keeps its `--primary` address and reconnects).
#[derive(Clone, Debug)]
pub struct PrimaryAddrs {
    pub dir: PathBuf,
    pub client: String,
    pub repl: String,
    pub dx: String,
}

impl PrimaryAddrs {
    pub fn of(node: &Node) -> Self {
        PrimaryAddrs { dir: node.data_dir.clone(), client: node.client.clone(), repl: node.repl.clone().unwrap(), dx: node.dx.clone().unwrap() }
    }
    pub fn args(&self) -> Vec<String> {
        let mut args = s(&["primary", "--data-dir"]);
        args.push(self.dir.display().to_string());
        args.extend(s(&["--listen", &self.client, "--repl-listen", &self.repl, "--dx-listen", &self.dx]));
        args
    }
    /// Starts the primary on these ports (stderr to `log`).
    pub fn start(&self, envs: &[(&str, &str)], log: &Path) -> Node {
        spawn_logged(&self.args(), envs, &self.dir, log)
    }
}

/// A 127.0.0.1 address nothing listens on (bound once, then released):
/// a replica pointed there can recover but never reach a primary.
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Waits (with the support deadline) for `node` to abort at the armed
/// crash point `point`: SIGABRT, and its stderr (`log`) says so.
/// Returns the node's arguments and data directory for a restart.
pub fn wait_crash(mut node: Node, point: &str, log: &Path) -> (Vec<String>, PathBuf) {
    let status = wait_for(&format!("process to abort at crash point {point}"), || node.child.try_wait().unwrap());
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(status.signal(), Some(6), "expected an abort at {point}, got {status:?}; stderr: {stderr}");
    assert!(stderr.contains(&format!("crash point {point} reached")), "stderr does not name crash point {point}: {stderr}");
    (node.args.clone(), node.data_dir.clone())
}

/// Recursively copies a directory (a stopped node's data directory).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

/// Segment files of a data directory, in LSN order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> =
        std::fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "seg")).collect();
    segs.sort();
    segs
}

/// Start LSN of a segment file (its name).
pub fn segment_lsn(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// End LSN of every byte in the WAL files (durable or not).
pub fn wal_file_end(dir: &Path) -> u64 {
    let last = segments(dir).pop().unwrap();
    segment_lsn(&last) + std::fs::metadata(&last).unwrap().len() - SEGMENT_HEADER_LEN
}

/// Drops every WAL byte at or after `lsn` plus `keep_extra` bytes: the
/// bytes a power failure loses when they were never fsynced (a torn tail
/// when `keep_extra` cuts a record).
pub fn cut_wal_at(dir: &Path, lsn: u64, keep_extra: u64) {
    let last = segments(dir).pop().unwrap();
    let start = segment_lsn(&last);
    assert!(lsn >= start, "cut point {lsn} is before the last segment ({start})");
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(SEGMENT_HEADER_LEN + lsn - start + keep_extra).unwrap();
    f.sync_all().unwrap();
}

/// One record as `aerodb wal-dump` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dumped {
    pub lsn: u64,
    pub end: u64,
    pub commit_id: u64,
    pub fingerprint: String,
    pub digest: String,
}

/// `aerodb wal-dump --data-dir DIR` (offline, read-only), parsed.
pub fn wal_dump(dir: &Path) -> Vec<Dumped> {
    let out = Command::new(repl_support::bin()).args(["wal-dump", "--data-dir", dir.to_str().unwrap()]).env("RUST_LOG", "off").output().unwrap();
    assert!(out.status.success(), "wal-dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let field = |name: &str| {
                line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("no {name} in {line}")).to_string()
            };
            Dumped {
                lsn: field("lsn").parse().unwrap(),
                end: field("end").parse().unwrap(),
                commit_id: field("commit_id").parse().unwrap(),
                fingerprint: field("fingerprint"),
                digest: field("digest"),
            }
        })
        .collect()
}

/// The body of a checksummed JSON file (`{"crc32c":..,"body":{..}}`).
pub fn checksummed_body(path: &Path) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["body"].clone()
}

/// Flips one byte of a file in place.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

/// Commits `n` write sets on the primary, each one atomic `POST
/// /v1/commit` with three puts (and every fourth also a delete) over
/// [`KEYS`] keys, documents padded to `pad` bytes. Returns the last
/// CommitId; asserts CommitIds are consecutive.
pub fn workload(primary: &Node, tag: &str, n: u64, pad: usize) -> u64 {
    let mut last = None;
    for i in 0..n {
        let mut ops = Vec::new();
        for j in 0..3 {
            let key = format!("k{}", (i * 3 + j) % KEYS);
            ops.push(json!({"op": "put", "collection": COLL, "key": key, "doc": {"tag": tag, "i": i, "j": j, "pad": "x".repeat(pad)}}));
        }
        if i % 4 == 3 {
            ops.push(json!({"op": "delete", "collection": COLL, "key": format!("k{}", (i * 3 + 5) % KEYS)}));
        }
        let (status, body) = repl_support::http("POST", &format!("http://{}/v1/commit", primary.client), Some(&json!({ "ops": ops })));
        assert_eq!(status, 200, "{body}");
        let c = body["commit_id"].as_u64().unwrap();
        if let Some(prev) = last {
            assert_eq!(c, prev + 1, "CommitIds are consecutive (REPL-2)");
        }
        last = Some(c);
    }
    last.unwrap_or_else(|| repl_support::primary_state(primary).0)
}

/// What the reader observed: one admitted read (200, or 404 with a read
/// view) on one replica incarnation.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Which replica process (numbered by [`Recorder::point_at`]).
    pub incarnation: u64,
    /// Path and query to repeat on the primary with `at=read_view`.
    pub primary_path: String,
    pub read_view: u64,
    pub status: u16,
    pub body: Value,
}

struct RecShared {
    target: Mutex<(Option<String>, u64)>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A background reader: reads the current replica's client API in a loop
/// (point reads of every key, full scans, and `min_commit` reads that wait
/// server-side for the next commit, which paces the loop) and records every
/// admitted read. When the replica process is gone it waits for
/// [`Recorder::point_at`] to name the next one.
pub struct Recorder {
    shared: Arc<RecShared>,
    thread: Option<JoinHandle<(Vec<Observed>, u64)>>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let shared = Arc::new(RecShared { target: Mutex::new((None, 0)), changed: Condvar::new(), stop: AtomicBool::new(false) });
        let s2 = shared.clone();
        let thread = std::thread::spawn(move || read_loop(&s2));
        Recorder { shared, thread: Some(thread) }
    }

    /// Reads from this replica client address from now on (a new incarnation).
    pub fn point_at(&self, client: &str) {
        let mut t = self.shared.target.lock().unwrap();
        t.0 = Some(client.to_string());
        t.1 += 1;
        self.shared.changed.notify_all();
    }

    /// The current incarnation number.
    pub fn incarnation(&self) -> u64 {
        self.shared.target.lock().unwrap().1
    }

    /// Stops reading; returns the admitted reads and the number of refused ones.
    pub fn finish(mut self) -> (Vec<Observed>, u64) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
    }
}

fn read_loop(shared: &RecShared) -> (Vec<Observed>, u64) {
    let mut seen = Vec::new();
    let mut refused = 0u64;
    let mut last_c = 0u64;
    let mut i = 0u64;
    loop {
        let (addr, gen) = {
            let mut t = shared.target.lock().unwrap();
            while t.0.is_none() && !shared.stop.load(Ordering::SeqCst) {
                t = shared.changed.wait(t).unwrap();
            }
            if shared.stop.load(Ordering::SeqCst) {
                return (seen, refused);
            }
            (t.0.clone().unwrap(), t.1)
        };
        i += 1;
        let key = format!("k{}", i % KEYS);
        let (url, primary_path) = match i % 3 {
            0 => (format!("http://{addr}/v1/docs/{COLL}?limit=1000"), format!("/v1/docs/{COLL}?limit=1000")),
            1 => (format!("http://{addr}/v1/docs/{COLL}/{key}"), format!("/v1/docs/{COLL}/{key}?")),
            _ => (format!("http://{addr}/v1/docs/{COLL}/{key}?min_commit={}&wait_ms=200", last_c + 1), format!("/v1/docs/{COLL}/{key}?")),
        };
        match try_http("GET", &url, None) {
            Ok((status, body)) => match body["read_view"].as_u64() {
                Some(rv) if status == 200 || status == 404 => {
                    last_c = last_c.max(rv);
                    seen.push(Observed { incarnation: gen, primary_path, read_view: rv, status, body });
                }
                _ => {
                    assert_eq!(status, 503, "a replica read is admitted or refused: {body}");
                    refused += 1;
                }
            },
            Err(_) => {
                // The process is gone: wait until the test names the next one.
                let mut t = shared.target.lock().unwrap();
                while t.1 == gen && !shared.stop.load(Ordering::SeqCst) {
                    t = shared.changed.wait(t).unwrap();
                }
            }
        }
    }
}

/// Every admitted replica read equals the primary's answer at the same
/// read view (MVCC-1, MVCC-2: no partial or invented state was ever
/// visible). Returns the number of distinct reads checked.
pub fn assert_reads_match_primary(primary: &Node, reads: &[Observed]) -> usize {
    let mut distinct: BTreeMap<(String, u64), (u16, Value)> = BTreeMap::new();
    for r in reads {
        let k = (r.primary_path.clone(), r.read_view);
        if let Some(prev) = distinct.get(&k) {
            assert_eq!(prev, &(r.status, r.body.clone()), "two replica reads of {} at read view {} differ", k.0, k.1);
        } else {
            distinct.insert(k, (r.status, r.body.clone()));
        }
    }
    for ((path, rv), answer) in &distinct {
        let sep = if path.ends_with('?') { "" } else { "&" };
        let (status, body) = repl_support::http("GET", &format!("http://{}{path}{sep}at={rv}", primary.client), None);
        assert_eq!(&(status, body), answer, "replica read {path} at read view {rv} differs from the primary's");
    }
    distinct.len()
}

/// The end of every non-halting test: each replica reaches the primary's
/// CommitId with the same state digest (REPL-4) and applied LSN, and its
/// WAL is a byte-exact prefix of the primary's (REPL-3). Returns (C, digest).
pub fn assert_converged(primary: &Node, replicas: &[&Node]) -> (u64, String) {
    let p = primary.replication();
    let (c, digest) = (p["commit_id"].as_u64().unwrap(), p["state_digest"].as_str().unwrap().to_string());
    for r in replicas {
        // The view's CommitId (from the store) and applied LSN (from the
        // pipeline's published positions) are read separately and can be
        // one record apart for an instant, so wait for both.
        let v = r.wait_replication(&format!("replica streaming at CommitId {c}, applied LSN {}", p["durable_lsn"]), |v| {
            v["replica_state"] == "Streaming" && v["replica_commit_id"] == c && v["wal_applied_lsn"] == p["durable_lsn"]
        });
        assert_eq!(v["state_digest"], digest.as_str(), "REPL-4: same state digest at CommitId {c}: {v}");
        assert_eq!(v["read_safety"], "safe");
        repl_support::assert_wal_prefix(&primary.data_dir, &r.data_dir);
        assert_verifies(&r.data_dir);
    }
    assert_verifies(&primary.data_dir);
    (c, digest)
}

/// `aerodb verify` (offline, read-only) passes on a data directory: WAL,
/// snapshots, replica metadata and installed snapshot all check (P5-I11).
pub fn assert_verifies(dir: &Path) {
    let args: Vec<String> = vec!["verify".into(), "--data-dir".into(), dir.display().to_string()];
    let (code, stdout, stderr) = run_to_exit(&args);
    assert_eq!(code, Some(0), "aerodb verify {}: {stdout} {stderr}", dir.display());
}

/// Finishes the reader and checks its reads against the primary; asserts
/// that at least one read was admitted.
pub fn check_recorded(primary: &Node, recorder: Recorder) -> Vec<Observed> {
    let (reads, _refused) = recorder.finish();
    assert!(!reads.is_empty(), "the reader saw no admitted read");
    assert_reads_match_primary(primary, &reads);
    reads
}

/// Waits until the replica is Halted with `code`; returns its view.
pub fn wait_halted(node: &Node, code: &str) -> Value {
    let v = node.wait_halted_settled();
    assert_eq!(v["blocking_reason"]["code"], code, "{v}");
    assert_eq!(v["node_state"], "ReplicationHalted", "{v}");
    assert_eq!(v["read_safety"], "unsafe", "{v}");
    v
}

/// The full halt (with evidence) as a refused read reports it, after
/// checking that reads answer 503 REPLICATION_HALTED and writes 403.
pub fn halt_of(node: &Node) -> Value {
    let (status, body) = node.get(COLL, "k0", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "REPLICATION_HALTED", "{body}");
    let (status, w) = node.put(COLL, "k0", &json!({"x": 1}));
    assert_eq!((status, w["error"]["code"].clone(), w["error"]["rule_id"].clone()), (403, json!("WRITE_REJECTED"), json!("REPL-1")), "{w}");
    let halt = body["error"]["evidence"]["halt"].clone();
    assert_eq!(body["error"]["rule_id"], halt["rule_id"], "{body}");
    halt
}

/// Runs `aerodb <args>` to completion with stdout and stderr captured
/// (`RUST_LOG=off`, so stderr holds only what the binary prints itself);
/// kills it and fails if it is still running at the support deadline.
pub fn run_to_exit(args: &[String]) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = Command::new(repl_support::bin()).args(args).env("RUST_LOG", "off").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = {
        let child = &mut child;
        let start = std::time::Instant::now();
        wait_for(&format!("aerodb {args:?} to exit"), || {
            let st = child.try_wait().unwrap();
            if st.is_none() && start.elapsed() + Duration::from_secs(1) >= repl_support::DEADLINE {
                let _ = child.kill();
            }
            st
        })
    };
    (status.code(), out_t.join().unwrap(), err_t.join().unwrap())
}

/// Text a logged node wrote to stderr after byte `from`.
pub fn log_since(log: &Path, from: usize) -> String {
    let all = std::fs::read_to_string(log).unwrap_or_default();
    all.get(from..).unwrap_or_default().to_string()
}

/// Copies `from` to `to` until `limit` bytes went through (never more),
/// either side closes or fails; reports the running total to `progress`
/// after each write. Returns the bytes forwarded.
fn forward_up_to(from: &mut impl std::io::Read, to: &mut impl std::io::Write, limit: usize, mut progress: impl FnMut(usize)) -> usize {
    let mut forwarded = 0usize;
    let mut buf = [0u8; 64 * 1024];
    while forwarded < limit {
        let want = buf.len().min(limit - forwarded);
        match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                forwarded += n;
                progress(forwarded);
            }
        }
    }
    forwarded
}

/// A one-shot TCP proxy in front of `upstream`: it accepts exactly one
/// connection, forwards both directions, and cuts the connection (both
/// sockets shut down) once `cut_after` bytes have gone from upstream to the
/// client; it then stops listening, so every later connection attempt is
/// refused. Returns the proxy address and a handle yielding the number of
/// upstream bytes forwarded.
pub fn cutting_proxy(upstream: &str, cut_after: usize) -> (String, JoinHandle<usize>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    let handle = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        drop(listener);
        let server = TcpStream::connect(&upstream).unwrap();
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (mut s_read, mut c_write) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        let forwarded = forward_up_to(&mut s_read, &mut c_write, cut_after, |_| {});
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        forwarded
    });
    (addr, handle)
}

/// A proxy to `upstream` that cuts its first connection after forwarding
/// `cut_after` primary → replica bytes, then forwards every later
/// connection in full. Counts the primary → replica bytes of each
/// connection, in order. Stops accepting when dropped.
pub struct ResumingProxy {
    pub addr: String,
    counts: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ResumingProxy {
    pub fn start(upstream: &str, cut_after: usize) -> ResumingProxy {
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        let counts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut index = 0usize;
            loop {
                let Ok((client, _)) = listener.accept() else { return };
                // Drop wakes the accept with a connection of its own.
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { return };
                let limit = if index == 0 { cut_after } else { usize::MAX };
                c.lock().unwrap().push(0);
                let (slot, counts) = (index, c.clone());
                index += 1;
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    forward_up_to(&mut s_read, &mut c_write, limit, |forwarded| counts.lock().unwrap()[slot] = forwarded);
                    let _ = c_write.shutdown(Shutdown::Both);
                    let _ = s_read.shutdown(Shutdown::Both);
                });
            }
        });
        ResumingProxy { addr, counts, stop, thread: Some(thread) }
    }

    /// Primary → replica bytes of each connection so far, in order.
    pub fn counts(&self) -> Vec<usize> {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for ResumingProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
