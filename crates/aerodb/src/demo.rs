//! `aerodb demo`: the local walkthrough. Real nodes (this same binary) on
//! 127.0.0.1 port 0 in a temporary directory: a primary and two replicas,
//! one bootstrapped from WAL and one from a snapshot; a replica killed with
//! SIGKILL mid-stream and restarted; lag shown as numbers; a read refused
//! with its explanation and then admitted; final digests compared.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_client::{blocking, ClientError, ReadOptions};
use serde_json::{json, Value};

use crate::cli::DemoArgs;

/// Bound on every wait in the demo (the demo fails loudly past it).
const WAIT_LIMIT: Duration = Duration::from_secs(60);
const WRITERS: u64 = 8;

struct DemoNode {
    name: &'static str,
    args: Vec<String>,
    child: Child,
    client: String,
    dx: String,
    dx_client: blocking::DxClient,
    repl: Option<String>,
}

impl DemoNode {
    fn start(name: &'static str, args: Vec<String>, log: &Path) -> Result<DemoNode, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the aerodb binary: {e}"))?;
        let stderr = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut child = Command::new(exe)
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout);
        let wants_repl = args.first().map(String::as_str) == Some("primary");
        let (mut client, mut dx, mut repl) = (None, None, None);
        while client.is_none() || dx.is_none() || (wants_repl && repl.is_none()) {
            let mut line = String::new();
            if lines.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                let _ = child.wait();
                return Err(format!("{name} exited before listening; see {}", log.display()));
            }
            let mut parts = line.split_whitespace();
            if parts.next() == Some("listening") {
                let (surface, addr) = (parts.next(), parts.next().map(str::to_string));
                match surface {
                    Some("client") => client = addr,
                    Some("dx") => dx = addr,
                    Some("repl") => repl = addr,
                    _ => {}
                }
            }
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            while lines.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        let dx = dx.unwrap_or_default();
        let dx_client = blocking::DxClient::new(&dx).map_err(|e| format!("{name}: {e}"))?;
        Ok(DemoNode { name, args, child, client: client.unwrap_or_default(), dx, dx_client, repl })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stop(&mut self) -> Result<(), String> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).map_err(|e| format!("cannot signal {}: {e}", self.name))?;
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("{} exited with {status} on SIGINT", self.name));
        }
        Ok(())
    }

    fn view(&self) -> Result<Value, String> {
        self.dx_client.envelope::<Value>("/v1/replication").map(|env| env.data).map_err(|e| e.to_string())
    }

    /// A client of this node's client API.
    fn api(&self) -> Result<blocking::Client, String> {
        blocking::Client::new(&self.client).map_err(|e| format!("{}: {e}", self.name))
    }
}

impl Drop for DemoNode {
    fn drop(&mut self) {
        // Never leave a node running, whatever happened.
        self.kill();
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn say(line: &str) {
    outln!("{line}");
}

fn step(n: u32, title: &str) {
    outln!("\n== step {n}: {title}");
}

/// Progress on one line on a terminal, a line per quarter otherwise.
struct Progress {
    label: String,
    total: u64,
    tty: bool,
    last_quarter: u64,
}

impl Progress {
    fn new(label: &str, total: u64) -> Self {
        Progress { label: label.to_string(), total, tty: std::io::stdout().is_terminal(), last_quarter: 0 }
    }
    fn show(&mut self, done: u64, extra: &str) {
        let width = 30u64;
        let filled = (done * width / self.total.max(1)).min(width) as usize;
        if self.tty {
            out!("\r   {} [{}{}] {done}/{} {extra}   ", self.label, "#".repeat(filled), " ".repeat(width as usize - filled), self.total);
            let _ = std::io::stdout().flush();
        } else {
            let quarter = done * 4 / self.total.max(1);
            if quarter > self.last_quarter {
                self.last_quarter = quarter;
                outln!("   {} {done}/{} {extra}", self.label, self.total);
            }
        }
    }
    fn done(&mut self, extra: &str) {
        self.show(self.total, extra);
        if self.tty {
            outln!();
        }
    }
}

fn doc(i: u64) -> Value {
    json!({"id": i, "name": format!("user-{i:06}"), "email": format!("user{i}@example.com"), "score": i * 7 % 1000, "tags": ["demo", "aerodb"]})
}

/// [`write_range`] without a progress display.
fn write_range_quiet(primary: &DemoNode, from: u64, to: u64) -> Result<u64, String> {
    write_range_with(primary, from, to, None, |_| {})
}

/// Writes docs `from..to` with WRITERS concurrent clients, showing progress;
/// returns the highest CommitId acknowledged.
fn write_range(primary: &DemoNode, from: u64, to: u64, label: &str, on_progress: impl FnMut(u64)) -> Result<u64, String> {
    write_range_with(primary, from, to, Some(label), on_progress)
}

fn write_range_with(primary: &DemoNode, from: u64, to: u64, label: Option<&str>, mut on_progress: impl FnMut(u64)) -> Result<u64, String> {
    let next = Arc::new(AtomicU64::new(from));
    let high = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..WRITERS {
        let (next, high, done) = (next.clone(), high.clone(), done.clone());
        let client = primary.api()?;
        handles.push(std::thread::spawn(move || -> Result<(), String> {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return Ok(());
                }
                let receipt = client.put("users", &format!("u{i:06}"), &doc(i)).map_err(|e| format!("write {i} failed: {e}"))?;
                high.fetch_max(receipt.commit_id, Ordering::Relaxed);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut progress = label.map(|l| Progress::new(l, to - from));
    while handles.iter().any(|h| !h.is_finished()) {
        let d = done.load(Ordering::Relaxed);
        if let Some(p) = progress.as_mut() {
            p.show(d, "");
        }
        on_progress(d);
        std::thread::sleep(Duration::from_millis(20));
    }
    for h in handles {
        h.join().map_err(|_| "writer thread panicked".to_string())??;
    }
    if let Some(p) = progress.as_mut() {
        p.done("");
    }
    Ok(high.load(Ordering::Relaxed))
}

fn lag_line(name: &str, v: &Value) -> String {
    format!(
        "   {name:<10} state={:<13} C_replica={:<6} C_primary={:<6} lag: {} commits, {} bytes, {} s ({})  reconnects={}",
        v["replica_state"].as_str().unwrap_or("?"),
        v["replica_commit_id"],
        v["primary_commit_id"],
        v["lag"]["commits"],
        v["lag"]["bytes"],
        v["lag"]["seconds"],
        v["lag"]["as_of"].as_str().unwrap_or("unknown"),
        v["connection"]["reconnects"]
    )
}

/// Polls until `pred` holds on the node's view, printing lag numbers.
fn wait_view(node: &DemoNode, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let start = Instant::now();
    let mut last_print = Instant::now() - Duration::from_secs(1);
    loop {
        if let Ok(v) = node.view() {
            if pred(&v) {
                outln!("{}", lag_line(node.name, &v));
                return Ok(v);
            }
            if last_print.elapsed() >= Duration::from_millis(250) {
                outln!("{}", lag_line(node.name, &v));
                last_print = Instant::now();
            }
        }
        if start.elapsed() > WAIT_LIMIT {
            return Err(format!("{} did not reach: {what}", node.name));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replica_args(name: &str, dir: &Path, primary_repl: &str, bootstrap: &str) -> Vec<String> {
    let mut a = s(&["replica", "--data-dir"]);
    a.push(dir.display().to_string());
    a.extend(s(&["--primary", primary_repl, "--name", name, "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--bootstrap", bootstrap]));
    a
}

/// Runs the demo; returns the exit code.
pub fn run(args: DemoArgs) -> i32 {
    let started = Instant::now();
    let tmp = match tempfile::Builder::new().prefix("aerodb-demo-").tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("demo: cannot create a temporary directory: {e}");
            return 1;
        }
    };
    let root = tmp.path().to_path_buf();
    let result = walkthrough(&args, &root);
    if args.keep {
        let kept = tmp.keep();
        outln!("\nkept the demo directory for inspection: {}", kept.display());
    }
    match result {
        Ok(()) => {
            outln!("\nSUCCESS: all nodes hold the same history and state digest ({:.1} s)", started.elapsed().as_secs_f64());
            0
        }
        Err(e) => {
            outln!("\nFAILURE: {e}");
            1
        }
    }
}

fn walkthrough(args: &DemoArgs, root: &Path) -> Result<(), String> {
    let docs = args.docs.max(100);
    let dir = |n: &str| -> PathBuf { root.join(n) };
    outln!("AeroDB replication demo in {}", root.display());
    outln!("one primary, two read replicas, real processes on 127.0.0.1; node logs are in <dir>/*.log");

    step(1, "start the primary");
    let mut pargs = s(&["primary", "--data-dir"]);
    pargs.push(dir("primary").display().to_string());
    pargs.extend(s(&["--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--snapshot-every-bytes", "262144"]));
    let primary = DemoNode::start("primary", pargs, &root.join("primary.log"))?;
    let repl = primary.repl.clone().unwrap_or_default();
    say(&format!("   primary: client http://{}  replication {}  dx http://{}", primary.client, repl, primary.dx));

    step(2, &format!("write the first {} documents (durable: each 200 means fsynced)", docs / 2));
    let c1 = write_range(&primary, 0, docs / 2, "writing", |_| {})?;
    say(&format!("   primary is at CommitId {c1}"));

    step(3, "start replica-a (bootstrap from WAL) and replica-b (bootstrap from a snapshot)");
    let mut a = DemoNode::start("replica-a", replica_args("replica-a", &dir("replica-a"), &repl, "wal"), &root.join("replica-a.log"))?;
    let b = DemoNode::start("replica-b", replica_args("replica-b", &dir("replica-b"), &repl, "snapshot"), &root.join("replica-b.log"))?;
    wait_view(&a, "caught up", |v| v["replica_state"] == "Streaming" && v["replica_commit_id"].as_u64() == Some(c1))?;
    let vb = wait_view(&b, "caught up", |v| v["replica_state"] == "Streaming" && v["replica_commit_id"].as_u64() == Some(c1))?;
    say(&format!(
        "   replica-b bootstrapped from snapshot at CommitId {} (LSN {})",
        vb["snapshot_bootstrap"]["boundary_commit_id"], vb["snapshot_bootstrap"]["boundary_lsn"]
    ));

    step(4, "keep writing; kill replica-a with SIGKILL mid-stream (replica-b keeps streaming)");
    let third = docs / 2 + docs / 4;
    let mut killed = false;
    let c2 = write_range(&primary, docs / 2, third, "writing", |done| {
        if !killed && done >= (docs / 8).max(1) {
            a.kill();
            killed = true;
        }
    })?;
    if !killed {
        a.kill();
    }
    say(&format!("   replica-a killed; primary is at CommitId {c2}; replica-b keeps streaming:"));
    wait_view(&b, "caught up", |v| v["replica_commit_id"].as_u64() == Some(c2))?;

    step(5, "restart replica-a while writes continue; watch its lag shrink as it catches up");
    let a_args = a.args.clone();
    drop(a);
    let a = DemoNode::start("replica-a", a_args, &root.join("replica-a.restart.log"))?;
    let c3 = std::thread::scope(|scope| -> Result<u64, String> {
        let writer = scope.spawn(|| write_range_quiet(&primary, third, docs));
        let mut last = Instant::now() - Duration::from_secs(1);
        while !writer.is_finished() {
            if last.elapsed() >= Duration::from_millis(150) {
                if let Ok(v) = a.view() {
                    outln!("{}", lag_line(a.name, &v));
                }
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.join().map_err(|_| "writer panicked".to_string())?
    })?;
    say(&format!("   writes done: primary is at CommitId {c3}"));
    wait_view(&a, "caught up", |v| v["replica_state"] == "Streaming" && v["replica_commit_id"].as_u64() == Some(c3))?;
    wait_view(&b, "caught up", |v| v["replica_commit_id"].as_u64() == Some(c3))?;

    step(6, "a read refused on a replica, with its explanation, then admitted once safe");
    let next = c3 + 1;
    let reader = b.api()?;
    let wanted = ReadOptions { min_commit: Some(next), ..ReadOptions::default() };
    let refusal = match reader.get("users", "latest", &wanted) {
        Err(ClientError::Api { status: 503, error, .. }) => error,
        Err(e) => return Err(format!("expected the read to be refused (C_replica {c3} < {next}), got {e}")),
        Ok(d) => return Err(format!("expected the read to be refused (C_replica {c3} < {next}), got a document at read view {}", d.read_view)),
    };
    say(&format!("   GET replica-b /v1/docs/users/latest?min_commit={next} -> 503"));
    say(&format!("   refused: code={} rule_id={} message={}", refusal.code, refusal.rule_id.as_deref().unwrap_or("null"), refusal.message));
    // The refusal carries the replication.safety explanation of this very read.
    let explanation = &refusal.evidence["explanation"];
    say(&format!("   explanation ({}), every rule in order:", explanation["explanation_type"].as_str().unwrap_or("?")));
    for rule in explanation["rules_applied"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let holds = if rule["evaluation"] == true { "holds " } else { "FAILS " };
        say(&format!("     {:<6} {holds} evidence {}", rule["rule_id"].as_str().unwrap_or("?"), rule["evidence"]));
    }
    say(&format!("   conclusion: {}", explanation["conclusion"]));
    let receipt =
        primary.api()?.put("users", "latest", &json!({"note": "written after the refusal"})).map_err(|e| format!("write on the primary failed: {e}"))?;
    if receipt.commit_id != next {
        return Err(format!("write on the primary got CommitId {}, expected {next}", receipt.commit_id));
    }
    say(&format!("   PUT primary /v1/docs/users/latest -> CommitId {next}"));
    let waiting = ReadOptions { wait_ms: Some(10_000), ..wanted };
    let d = reader.get("users", "latest", &waiting).map_err(|e| format!("the read was not admitted once safe: {e}"))?;
    say(&format!(
        "   GET replica-b ...?min_commit={next}&wait_ms=10000 -> 200 {}",
        json!({"read_view": d.read_view, "commit_id": d.commit_id, "doc": d.value().unwrap_or(Value::Null)})
    ));

    step(7, "verify: same CommitId and state digest everywhere");
    let pv = primary.view()?;
    let target = pv["commit_id"].as_u64().unwrap_or(0);
    let va = wait_view(&a, "final", |v| v["replica_commit_id"].as_u64() == Some(target))?;
    let vb = wait_view(&b, "final", |v| v["replica_commit_id"].as_u64() == Some(target))?;
    let pv = primary.view()?;
    let mut table = comfy_table::Table::new();
    let style = if std::io::stdout().is_terminal() { comfy_table::presets::UTF8_FULL_CONDENSED } else { comfy_table::presets::ASCII_FULL_CONDENSED };
    table.load_style(style);
    table.set_header(["node", "role", "bootstrap", "CommitId", "state digest", "received LSN", "validated LSN", "applied LSN", "reconnects"]);
    table.add_row(vec![
        "primary".to_string(),
        "primary".to_string(),
        "-".to_string(),
        pv["commit_id"].to_string(),
        pv["state_digest"].as_str().unwrap_or("?").to_string(),
        "-".to_string(),
        "-".to_string(),
        pv["durable_lsn"].to_string(),
        "-".to_string(),
    ]);
    for (name, v) in [("replica-a", &va), ("replica-b", &vb)] {
        table.add_row(vec![
            name.to_string(),
            "replica".to_string(),
            v["snapshot_bootstrap"]["method"].as_str().unwrap_or("?").to_string(),
            v["replica_commit_id"].to_string(),
            v["state_digest"].as_str().unwrap_or("?").to_string(),
            v["wal_received_lsn"].to_string(),
            v["wal_validated_lsn"].to_string(),
            v["wal_applied_lsn"].to_string(),
            v["connection"]["reconnects"].to_string(),
        ]);
    }
    outln!();
    for line in table.lines() {
        outln!("   {}", line.trim_end());
    }
    for v in [&va, &vb] {
        if v["state_digest"] != pv["state_digest"] || v["replica_commit_id"] != pv["commit_id"] || v["wal_applied_lsn"] != pv["durable_lsn"] {
            return Err("a replica's state differs from the primary's".into());
        }
    }

    step(8, "stop every node cleanly (SIGINT)");
    for mut node in [a, b, primary] {
        node.stop()?;
        say(&format!("   {} stopped (exit 0)", node.name));
    }
    Ok(())
}
