//! Shared support for replication integration tests: real `aerodb`
//! processes on 127.0.0.1 port 0, HTTP helpers, and waiting for conditions
//! with a deadline (never a fixed sleep).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous deadline for conditions in tests (never a timing assertion).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A running node process and its bound addresses.
pub struct Node {
    pub child: Child,
    pub data_dir: PathBuf,
    pub client: String,
    pub dx: Option<String>,
    pub repl: Option<String>,
    pub args: Vec<String>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aerodb")
}

/// Starts `aerodb <args>` with `envs`, reads `listening` lines until every
/// expected surface is known.
pub fn spawn(args: &[String], envs: &[(&str, &str)], data_dir: &Path) -> Node {
    spawn_to(args, envs, data_dir, None)
}

/// [`spawn`], writing the node's stderr to `log` when given (so a test can
/// read what it said before dying) instead of inheriting it.
///
/// A node restarted on the fixed ports of an earlier one can find a port
/// taken meanwhile by another test's ephemeral connection; when its log
/// says so, the start is retried until the port is free (deadline).
pub fn spawn_to(args: &[String], envs: &[(&str, &str)], data_dir: &Path, log: Option<&Path>) -> Node {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match try_spawn_to(args, envs, data_dir, log) {
            Ok(node) => return node,
            Err(said) if said.contains("Address already in use") && Instant::now() < deadline => continue,
            Err(said) => panic!("{said}"),
        }
    }
}

fn try_spawn_to(args: &[String], envs: &[(&str, &str)], data_dir: &Path, log: Option<&Path>) -> Result<Node, String> {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::inherit(),
    };
    let mut cmd = Command::new(bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(stderr).env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn aerodb");
    let stdout = child.stdout.take().unwrap();
    let wants_dx = !args.iter().any(|a| a == "off");
    let wants_repl = args.first().map(String::as_str) == Some("primary");
    // stdout is read on its own thread so a node that never announces a
    // surface fails the test at the deadline instead of hanging CI.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            // Once the test stops listening, keep draining so the child never blocks on a full pipe.
            let _ = lines_tx.send(std::mem::take(&mut line));
        }
    });
    let (mut client, mut dx, mut repl) = (None, None, None);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let line = match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("aerodb {args:?} did not announce every surface within {DEADLINE:?}: client {client:?}, dx {dx:?}, repl {repl:?}");
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().ok();
                let said = log.map(|l| std::fs::read_to_string(l).unwrap_or_default()).unwrap_or_default();
                return Err(format!("aerodb {args:?} exited before listening: {status:?}; stderr: {said}"));
            }
        };
        let mut parts = line.split_whitespace();
        if parts.next() == Some("listening") {
            match (parts.next(), parts.next()) {
                (Some("client"), Some(a)) => client = Some(a.to_string()),
                (Some("dx"), Some(a)) => dx = Some(a.to_string()),
                (Some("repl"), Some(a)) => repl = Some(a.to_string()),
                _ => {}
            }
        }
        if client.is_some() && (dx.is_some() || !wants_dx) && (repl.is_some() || !wants_repl) {
            break;
        }
    }
    Ok(Node { child, data_dir: data_dir.to_path_buf(), client: client.unwrap(), dx, repl, args: args.to_vec() })
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

pub fn start_primary(dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Node {
    let mut args = s(&["primary", "--data-dir"]);
    args.push(dir.display().to_string());
    args.extend(s(&["--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]));
    args.extend(s(extra));
    spawn(&args, envs, dir)
}

pub fn start_replica(dir: &Path, primary_repl: &str, extra: &[&str], envs: &[(&str, &str)]) -> Node {
    let mut args = s(&["replica", "--data-dir"]);
    args.push(dir.display().to_string());
    args.extend(s(&["--primary", primary_repl, "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]));
    args.extend(s(extra));
    spawn(&args, envs, dir)
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// SIGKILL and reap.
    pub fn kill(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.clone()
    }
    /// SIGINT and wait; returns the exit code.
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        self.child.wait().ok().and_then(|s| s.code())
    }
    /// Waits for the process to exit by itself (e.g. an armed crash point).
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
    /// Restarts the same command (same data dir and flags) with new envs.
    pub fn restart(self, envs: &[(&str, &str)]) -> Node {
        let args = self.args.clone();
        let dir = self.kill();
        spawn(&args, envs, &dir)
    }

    pub fn put(&self, collection: &str, key: &str, doc: &Value) -> (u16, Value) {
        http("PUT", &format!("http://{}/v1/docs/{collection}/{key}", self.client), Some(doc))
    }
    pub fn get(&self, collection: &str, key: &str, query: &str) -> (u16, Value) {
        http("GET", &format!("http://{}/v1/docs/{collection}/{key}{query}", self.client), None)
    }
    /// `/v1/replication` data object.
    pub fn replication(&self) -> Value {
        let dx = self.dx.as_ref().expect("dx enabled");
        let (status, body) = http("GET", &format!("http://{dx}/v1/replication"), None);
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }
    pub fn dx_get(&self, path: &str) -> (u16, Value) {
        let dx = self.dx.as_ref().expect("dx enabled");
        http("GET", &format!("http://{dx}{path}"), None)
    }
    /// Waits until `/v1/replication` satisfies `pred`; panics with the last view at the deadline.
    pub fn wait_replication(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, || {
            let v = self.replication();
            pred(&v).then_some(v)
        })
    }
    /// Waits until the replica is Streaming at `commit_id`.
    pub fn wait_caught_up(&self, commit_id: u64) -> Value {
        self.wait_replication(&format!("replica streaming at {commit_id}"), |v| v["replica_state"] == "Streaming" && v["replica_commit_id"] == commit_id)
    }
    pub fn wait_state(&self, state: &str) -> Value {
        self.wait_replication(&format!("replica_state {state}"), |v| v["replica_state"] == state)
    }
    /// Waits until a replica that lost its primary has settled: it retried
    /// at least once since `reconnects_before` (a retry waits for every
    /// received byte to be persisted and drops an unvalidated tail first),
    /// is Disconnected again, and has applied everything it validated.
    pub fn wait_disconnected_settled(&self, reconnects_before: u64) -> Value {
        self.wait_replication("replica disconnected, retried and settled", |v| {
            v["replica_state"] == "Disconnected"
                && v["connection"]["reconnects"].as_u64().is_some_and(|r| r > reconnects_before)
                && v["wal_received_lsn"] == v["wal_validated_lsn"]
                && v["wal_validated_lsn"] == v["wal_applied_lsn"]
        })
    }
    /// Waits until the replica is Halted and every record it validated
    /// before the halt has drained into its store (a pipelined replica
    /// halts at once; its applier finishes the valid work already queued,
    /// unless the apply itself failed).
    pub fn wait_halted_settled(&self) -> Value {
        self.wait_replication("replica halted and settled", |v| {
            let apply_failed = v["blocking_reason"]["code"].as_str().is_some_and(|c| c.starts_with("APPLY_"));
            v["replica_state"] == "Halted" && (apply_failed || v["wal_applied_lsn"].is_null() || v["wal_applied_lsn"] == v["wal_validated_lsn"])
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it returns Some, or panics after [`DEADLINE`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        std::thread::yield_now();
        // Polling pause between checks (not a wait for replication): keeps the 2-core box responsive.
        std::thread::sleep(Duration::from_millis(20)); // audit: allow-sleep(poll interval of a deadline-bounded condition wait)
    }
}

/// One HTTP request; `Err` on a transport failure (e.g. the process died).
pub fn try_http(method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let req = ureq::request(method, url).timeout(Duration::from_secs(30));
    let res = match body {
        Some(b) => req.send_string(&b.to_string()),
        None => req.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let text = resp.into_string().map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// One HTTP request; returns (status, JSON body). Panics on transport failure.
pub fn http(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    try_http(method, url, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// The primary's state digest and CommitId.
pub fn primary_state(primary: &Node) -> (u64, String) {
    let v = primary.replication();
    (v["commit_id"].as_u64().unwrap(), v["state_digest"].as_str().unwrap().to_string())
}

/// REPL-3: the replica's WAL bytes equal the primary's over the replica's
/// LSN range (segment files are compared by LSN, headers excluded).
pub fn assert_wal_prefix(primary_dir: &Path, replica_dir: &Path) {
    let read_stream = |dir: &Path| -> Vec<(u64, Vec<u8>)> {
        let mut segs: Vec<_> =
            std::fs::read_dir(dir.join("wal")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "seg")).collect();
        segs.sort();
        segs.iter()
            .map(|p| {
                let lsn: u64 = p.file_stem().unwrap().to_str().unwrap().parse().unwrap();
                (lsn, std::fs::read(p).unwrap()[64..].to_vec())
            })
            .collect()
    };
    let flatten = |segs: Vec<(u64, Vec<u8>)>| -> (u64, Vec<u8>) {
        let start = segs.first().map_or(0, |s| s.0);
        let mut all = Vec::new();
        for (lsn, bytes) in segs {
            assert_eq!(start + all.len() as u64, lsn, "segments are contiguous");
            all.extend(bytes);
        }
        (start, all)
    };
    let (p_start, p) = flatten(read_stream(primary_dir));
    let (r_start, r) = flatten(read_stream(replica_dir));
    assert!(r_start >= p_start, "replica WAL starts before the primary's");
    let off = (r_start - p_start) as usize;
    assert!(off + r.len() <= p.len(), "replica WAL is longer than the primary's (REPL-3)");
    assert!(p[off..off + r.len()] == r[..], "replica WAL bytes differ from the primary's (REPL-3)");
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
