//! Shared helpers for black-box tests of the real `aerodb` binary: start a
//! node on port 0 and read its `listening <surface> <addr>` lines, stop it
//! with SIGINT or kill it with SIGKILL, run offline subcommands, and talk
//! HTTP/JSON to it. Role-agnostic: replica helpers build on [`NodeOptions`]
//! and [`Node`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous deadline for anything a test waits on (startup, exit, a condition).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The binary under test (built with armable crash points in test builds).
pub fn aerodb_bin() -> &'static str {
    env!("CARGO_BIN_EXE_aerodb")
}

/// How to start one node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// `primary`, `standalone` or `replica`.
    pub role: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Arguments after `--data-dir DIR` (defaults bind every surface on port 0).
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Surfaces whose `listening` line must appear before the node counts
    /// as started (`client` always; add `dx`, `repl` when enabled).
    pub surfaces: Vec<String>,
}

impl NodeOptions {
    /// Defaults: client API on 127.0.0.1:0, DX off, and (primary) the
    /// replication port on 127.0.0.1:0. Waits for the `client` line only.
    pub fn new(role: &str, data_dir: &Path) -> Self {
        let mut args: Vec<String> = ["--listen", "127.0.0.1:0", "--dx-listen", "off"].iter().map(|s| s.to_string()).collect();
        if role == "primary" {
            args.extend(["--repl-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        NodeOptions { role: role.into(), data_dir: data_dir.to_path_buf(), args, env: Vec::new(), surfaces: vec!["client".into()] }
    }

    /// Adds command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `--flag value`, replacing an earlier value of the same flag.
    pub fn flag(mut self, flag: &str, value: &str) -> Self {
        if let Some(i) = self.args.iter().position(|a| a == flag) {
            if i + 1 < self.args.len() {
                self.args[i + 1] = value.into();
                return self;
            }
        }
        self.args.extend([flag.to_string(), value.to_string()]);
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Enables the DX API on port 0 and waits for its `listening dx` line.
    pub fn with_dx(self) -> Self {
        self.flag("--dx-listen", "127.0.0.1:0").expect_surface("dx")
    }

    /// Also waits for `listening <surface>` before returning from start.
    pub fn expect_surface(mut self, surface: &str) -> Self {
        if !self.surfaces.iter().any(|s| s == surface) {
            self.surfaces.push(surface.into());
        }
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(aerodb_bin());
        cmd.arg(&self.role).arg("--data-dir").arg(&self.data_dir).args(&self.args);
        cmd.env_remove("FAILPOINTS");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }
}

/// A node process that did not come up: its exit status and stderr.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status (None if it was still running at the deadline and was killed).
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// Stdout lines seen before it exited.
    pub stdout: Vec<String>,
}

/// Captured output of a running node: stdout lines and stderr text.
#[derive(Clone, Default)]
pub struct Output {
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Output {
    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
    /// Stdout lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A running `aerodb` node. Dropping it kills the process.
pub struct Node {
    /// The process.
    pub child: Child,
    /// Client API address (`host:port`).
    pub client_addr: String,
    /// DX API address, when enabled.
    pub dx_addr: Option<String>,
    /// Replication address, when announced.
    pub repl_addr: Option<String>,
    /// Every `listening` line: surface → address.
    pub addrs: BTreeMap<String, String>,
    /// How it was started (restart with [`Node::restart`]).
    pub options: NodeOptions,
    /// Its stdout/stderr.
    pub output: Output,
    lines: Receiver<String>,
}

/// Keeps the last 256 KiB of stderr.
const MAX_STDERR: usize = 256 * 1024;

/// Starts the stdout and stderr reader threads. Returns the stdout lines
/// and a channel that closes when stderr reaches EOF (the process exited).
fn spawn_readers(child: &mut Child, output: &Output) -> (Receiver<String>, Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let (stderr_done_tx, stderr_done) = mpsc::channel::<()>();
    if let Some(stdout) = child.stdout.take() {
        let lines = output.stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = lines.lock() {
                    l.push(line.clone());
                }
                let _ = tx.send(line);
            }
        });
    }
    if let Some(mut stderr) = child.stderr.take() {
        let buf = output.stderr.clone();
        std::thread::spawn(move || {
            let _done = stderr_done_tx;
            let mut chunk = [0u8; 8192];
            loop {
                match stderr.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if let Ok(mut b) = buf.lock() {
                            b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                            if b.len() > MAX_STDERR {
                                let cut = b.len() - MAX_STDERR / 2;
                                let cut = (cut..b.len()).find(|i| b.is_char_boundary(*i)).unwrap_or(b.len());
                                b.drain(..cut);
                            }
                        }
                    }
                }
            }
        });
    }
    (rx, stderr_done)
}

/// Starts a node; Err when the process exits (or never announces every
/// expected surface within [`DEADLINE`]).
pub fn try_start(options: NodeOptions) -> Result<Node, StartFailure> {
    let mut child = options.command().spawn().expect("spawn aerodb");
    let output = Output::default();
    let (lines, stderr_done) = spawn_readers(&mut child, &output);
    let mut addrs = BTreeMap::new();
    let deadline = Instant::now() + DEADLINE;
    while !options.surfaces.iter().all(|s| addrs.contains_key(s)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("listening ") {
                    if let Some((surface, addr)) = rest.split_once(' ') {
                        addrs.insert(surface.to_string(), addr.trim().to_string());
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                // Stdout closed: the process is exiting.
                let status = wait_deadline(&mut child, DEADLINE);
                // Stderr is complete once its reader saw EOF (bounded wait).
                let _ = stderr_done.recv_timeout(DEADLINE);
                return Err(StartFailure { status, stderr: output.stderr(), stdout: output.stdout() });
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure { status: None, stderr: output.stderr(), stdout: output.stdout() });
            }
        }
    }
    let client_addr = addrs.get("client").cloned().unwrap_or_default();
    Ok(Node { child, client_addr, dx_addr: addrs.get("dx").cloned(), repl_addr: addrs.get("repl").cloned(), addrs, options, output, lines })
}

/// Starts a node or panics with its stderr.
pub fn start(options: NodeOptions) -> Node {
    match try_start(options) {
        Ok(node) => node,
        Err(f) => panic!("node did not start: status {:?}\nstdout: {:?}\nstderr:\n{}", f.status, f.stdout, f.stderr),
    }
}

/// Starts a node with default options for `role` on `data_dir`.
pub fn start_node(role: &str, data_dir: &Path) -> Node {
    start(NodeOptions::new(role, data_dir))
}

/// Polls `try_wait` until the process exits or `limit` passes.
pub fn wait_deadline(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            // audit: allow-sleep(poll interval of a deadline-bounded wait for process exit)
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

impl Node {
    /// `http://client_addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.client_addr)
    }

    /// `http://dx_addr` (panics when DX is off).
    pub fn dx_url(&self) -> String {
        format!("http://{}", self.dx_addr.as_ref().expect("DX API enabled"))
    }

    /// OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (a crash at a random moment) and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGINT and wait for the exit status (panics if it does not exit).
    ///
    /// The node prints `listening client` before its SIGINT handler is
    /// installed (the handler is registered when the server first polls
    /// its shutdown future), so a SIGINT sent right after startup can hit
    /// the default action and kill it. One served request first narrows
    /// that window; see the report on node.rs.
    pub fn stop(mut self) -> ExitStatus {
        if !self.client_addr.is_empty() {
            let _ = try_request(&agent(), "GET", &format!("{}/v1/docs/__probe__/__none__", self.url()), None);
        }
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("run kill -INT");
        assert!(status.success(), "kill -INT failed");
        wait_deadline(&mut self.child, DEADLINE).unwrap_or_else(|| panic!("node did not exit after SIGINT; stderr:\n{}", self.output.stderr()))
    }

    /// SIGINT, and assert a clean shutdown (exit code 0).
    pub fn stop_clean(self) {
        let output = self.output.clone();
        let status = self.stop();
        assert_eq!(status.code(), Some(0), "clean shutdown exits 0; stderr:\n{}", output.stderr());
    }

    /// Waits for the process to exit on its own (e.g. at a crash point).
    pub fn wait_exit(&mut self) -> ExitStatus {
        wait_deadline(&mut self.child, DEADLINE).unwrap_or_else(|| panic!("node did not exit; stderr:\n{}", self.output.stderr()))
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.output.stderr()
    }

    /// Next stdout line after startup, waiting up to [`DEADLINE`].
    pub fn next_stdout_line(&self) -> Option<String> {
        self.lines.recv_timeout(DEADLINE).ok()
    }

    /// Starts the same node again with the same options (after kill/stop).
    pub fn restart(options: &NodeOptions) -> Node {
        start(options.clone())
    }

    /// GET `path` on the client API.
    pub fn get(&self, path: &str) -> (u16, Value) {
        request("GET", &format!("{}{path}", self.url()), None)
    }

    /// PUT a JSON text to `path`.
    pub fn put(&self, path: &str, body: &str) -> (u16, Value) {
        request("PUT", &format!("{}{path}", self.url()), Some(body.as_bytes()))
    }

    /// DELETE `path`.
    pub fn delete(&self, path: &str) -> (u16, Value) {
        request("DELETE", &format!("{}{path}", self.url()), None)
    }

    /// POST a JSON text to `path`.
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        request("POST", &format!("{}{path}", self.url()), Some(body.as_bytes()))
    }

    /// PUT a document; returns its CommitId (panics unless 200).
    pub fn put_doc(&self, collection: &str, key: &str, doc: &Value) -> u64 {
        let (status, body) = self.put(&format!("/v1/docs/{collection}/{key}"), &doc.to_string());
        assert_eq!(status, 200, "PUT {collection}/{key}: {body}");
        body["commit_id"].as_u64().expect("commit_id")
    }

    /// The read view a default read gets now: C of this node.
    pub fn commit_id(&self) -> u64 {
        let (status, body) = self.get("/v1/docs/__probe__/__none__");
        assert!(status == 200 || status == 404, "probe read: {status} {body}");
        body["read_view"].as_u64().expect("read_view")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// One HTTP request; `(status, JSON body)` for every status (non-JSON
/// bodies come back as a JSON string). Panics on transport errors.
pub fn request(method: &str, url: &str, body: Option<&[u8]>) -> (u16, Value) {
    try_request(&agent(), method, url, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// One HTTP request on `agent`; Err(transport error text) when no response
/// arrived (connection refused or reset: e.g. the node was killed).
pub fn try_request(agent: &ureq::Agent, method: &str, url: &str, body: Option<&[u8]>) -> Result<(u16, Value), String> {
    let req = agent.request(method, url).set("content-type", "application/json");
    let result = match body {
        Some(b) => req.send_bytes(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(t.to_string()),
    };
    let status = response.status();
    let text = response.into_string().map_err(|e| e.to_string())?;
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, value))
}

/// Asserts the documented error body `{"error":{"code","rule_id","message","evidence"}}`
/// with exactly these fields, and returns the error object.
pub fn assert_error_shape(body: &Value) -> &serde_json::Map<String, Value> {
    let error = body["error"].as_object().unwrap_or_else(|| panic!("no error object in {body}"));
    let keys: Vec<&str> = error.keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["code", "evidence", "message", "rule_id"], "error fields in {body}");
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_' || ch.is_ascii_digit())),
        "stable code in {body}"
    );
    assert!(error["rule_id"].is_null() || error["rule_id"].is_string(), "rule_id is a string or null in {body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "message in {body}");
    assert!(error["evidence"].is_object(), "evidence object in {body}");
    error
}

/// Asserts an error response: status, code, and the documented body shape
/// (a top-level object with only `error`).
pub fn assert_error(resp: &(u16, Value), status: u16, code: &str) {
    let (got, body) = resp;
    assert_eq!(*got, status, "status for {body}");
    let error = assert_error_shape(body);
    assert_eq!(error["code"], code, "code in {body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only `error` at the top level: {body}");
}

/// Runs an offline subcommand (`verify`, `wal-dump`, ...) to completion:
/// `(exit code, stdout, stderr)`.
pub fn run_tool(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(aerodb_bin()).args(args).env_remove("FAILPOINTS").stdin(Stdio::null()).output().expect("run aerodb");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// One record as printed by `aerodb wal-dump`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedRecord {
    /// Start LSN.
    pub lsn: u64,
    /// End LSN.
    pub end_lsn: u64,
    /// CommitId.
    pub commit_id: u64,
    /// `put c/k` / `delete c/k` entries.
    pub ops: Vec<String>,
}

/// Every record of `data_dir`'s WAL via `aerodb wal-dump` (panics on failure).
pub fn wal_dump(data_dir: &Path) -> Vec<DumpedRecord> {
    let dir = data_dir.to_str().expect("UTF-8 path");
    let (code, stdout, stderr) = run_tool(&["wal-dump", "--data-dir", dir]);
    assert_eq!(code, Some(0), "wal-dump failed: {stderr}");
    stdout.lines().map(parse_dump_line).collect()
}

fn parse_dump_line(line: &str) -> DumpedRecord {
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in wal-dump line {line:?}"))
    };
    let ops = line.split_once(" [").and_then(|(_, rest)| rest.strip_suffix(']')).map(|s| s.split(", ").map(str::to_string).collect()).unwrap_or_default();
    DumpedRecord { lsn: field("lsn"), end_lsn: field("end"), commit_id: field("commit_id"), ops }
}

/// The WAL segment files of a data directory, in LSN order.
pub fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .expect("read wal dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Polls `cond` until it holds or [`DEADLINE`] passes; panics with `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // audit: allow-sleep(poll interval of a deadline-bounded condition wait)
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP response read off a raw socket.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body parsed as JSON (a JSON string when it is not JSON).
    pub body: Value,
}

impl RawResponse {
    /// `(status, body)`, the shape [`assert_error`] takes.
    pub fn pair(&self) -> (u16, Value) {
        (self.status, self.body.clone())
    }
}

/// A raw TCP client for the HTTP layer's own rules (RES-3): half-sent
/// heads, oversized lines, declared lengths that never arrive. Reads wait
/// at most [`DEADLINE`].
pub struct RawClient {
    /// The socket.
    pub stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr` (`host:port`).
    pub fn connect(addr: &str) -> RawClient {
        let stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(DEADLINE)).expect("read timeout");
        RawClient { stream, buf: Vec::new() }
    }

    /// Sends bytes; Err when the server already closed the connection.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.stream.write_all(bytes)
    }

    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => panic!("no answer within the deadline"),
            Err(_) => 0,
        }
    }

    /// Reads one whole response (its body framed by Content-Length);
    /// None when the connection closed first.
    pub fn try_response(&mut self) -> Option<RawResponse> {
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if self.fill() == 0 {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
        let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        while self.buf.len() < head_end + 4 + len {
            if self.fill() == 0 {
                return None;
            }
        }
        let body: Vec<u8> = self.buf.drain(..head_end + 4 + len).skip(head_end + 4).collect();
        let text = String::from_utf8_lossy(&body).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Some(RawResponse { status, headers, body })
    }

    /// Reads one whole response (panics if the connection closed first).
    pub fn response(&mut self) -> RawResponse {
        self.try_response().expect("a response before the connection closed")
    }

    /// Whether the server closed the connection (EOF after any pending
    /// bytes, or a reset), waiting up to [`DEADLINE`].
    pub fn closed(&mut self) -> bool {
        loop {
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                Err(_) => return true,
            }
        }
    }

    /// Whether nothing has arrived yet (non-blocking check; the connection is open).
    pub fn nothing_yet(&mut self) -> bool {
        self.stream.set_nonblocking(true).expect("nonblocking");
        let mut chunk = [0u8; 1];
        let idle = matches!(self.stream.peek(&mut chunk), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        self.stream.set_nonblocking(false).expect("blocking");
        idle && self.buf.is_empty()
    }
}

/// Sends `signal` (`TERM`, `INT`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// One sample of a node's `/metrics` (e.g. `aerodb_http_waiting_reads` or
/// `aerodb_http_rejects_total{surface="client",code="URI_TOO_LONG"}`).
pub fn metric(dx_url: &str, sample: &str) -> Option<f64> {
    let (status, body) = request("GET", &format!("{dx_url}/metrics"), None);
    assert_eq!(status, 200, "metrics: {body}");
    let text = body.as_str().unwrap_or_default().to_string();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| l.rsplit_once(' ').filter(|(name, _)| *name == sample).and_then(|(_, v)| v.parse().ok()))
}
