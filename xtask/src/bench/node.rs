//! Node processes for the bench: build the release binary, run nodes on
//! port 0, read their `listening` lines, and reach them through
//! `aerodb-client`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use aerodb_client::{blocking, ClientConfig, ReplicationView};

use super::COLLECTION;

/// `cargo build --release` of `packages`; returns the path of the binary
/// target `bin` (read from cargo's JSON messages, so CARGO_TARGET_DIR is
/// honoured).
pub(crate) fn build_release_bin(packages: &[&str], bin: &str) -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("xtask has no parent directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "--release", "--message-format=json-render-diagnostics"];
    for p in packages {
        args.extend(["-p", p]);
    }
    eprintln!("bench: cargo {}", args.join(" "));
    let out = Command::new(cargo).current_dir(root).args(&args).stderr(Stdio::inherit()).output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!("cargo {} failed ({})", args.join(" "), out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact" && m["target"]["name"] == bin && m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|x| x == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo did not report the {bin} executable"))
}

/// `cargo build --release -p aerodb`; returns the built executable's path.
/// `AERODB_BENCH_BINARY=<path>` runs the node phases on that binary instead
/// (an A/B comparison of two builds in one sitting).
pub(crate) fn build_release() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("AERODB_BENCH_BINARY") {
        eprintln!("bench: nodes run {} (AERODB_BENCH_BINARY)", Path::new(&path).display());
        return Ok(PathBuf::from(path));
    }
    build_release_bin(&["aerodb"], "aerodb")
}

/// A running node.
pub(crate) struct Node {
    child: Child,
    client_addr: String,
    addrs: std::collections::BTreeMap<String, String>,
}

impl Node {
    /// Starts `binary standalone` on `data_dir` (plus `flags`) with the
    /// client API on port 0 and waits for its `listening client ADDR` line.
    pub(crate) fn start(binary: &Path, data_dir: &Path, flags: &[&str]) -> Result<Node, String> {
        let dir = data_dir.display().to_string();
        let mut args = vec!["standalone", "--data-dir", &dir, "--listen", "127.0.0.1:0", "--dx-listen", "off", "--snapshot-every-bytes", "0"];
        args.extend_from_slice(flags);
        Node::start_with(binary, &args, &["client"])
    }

    /// Starts `binary <args>` and waits until every surface in `surfaces`
    /// (`client`, `dx`, `repl`) has printed its `listening` line.
    pub(crate) fn start_with(binary: &Path, args: &[&str], surfaces: &[&str]) -> Result<Node, String> {
        let mut child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut addrs = std::collections::BTreeMap::new();
        while !surfaces.iter().all(|s| addrs.contains_key(*s)) {
            match lines.next() {
                Some(Ok(line)) => {
                    let mut parts = line.split_whitespace();
                    if let (Some("listening"), Some(surface), Some(addr)) = (parts.next(), parts.next(), parts.next()) {
                        addrs.insert(surface.to_string(), addr.to_string());
                    }
                }
                _ => {
                    let _ = child.kill();
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    return Err(format!("the node exited before announcing {surfaces:?} ({status})"));
                }
            }
        }
        // Keep draining stdout so the node never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let client_addr = addrs.get("client").cloned().unwrap_or_default();
        let node = Node { child, client_addr, addrs };
        node.wait_ready()?;
        Ok(node)
    }

    /// Address of a surface.
    pub(crate) fn addr(&self, surface: &str) -> Result<&str, String> {
        self.addrs.get(surface).map(String::as_str).ok_or_else(|| format!("the node has no {surface} address"))
    }

    /// `/v1/replication` of this node's DX API.
    pub(crate) fn replication(&self) -> Result<ReplicationView, String> {
        let dx = blocking::DxClient::new(self.addr("dx")?).map_err(|e| e.to_string())?;
        dx.replication().map(|env| env.data).map_err(|e| e.to_string())
    }

    /// `http://ADDR` of the client API.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.client_addr)
    }

    /// An async client of the client API, pooled for `clients` concurrent tasks.
    pub(crate) fn client(&self, clients: usize) -> Result<aerodb_client::Client, String> {
        let config = ClientConfig { max_idle_connections: clients.max(1), request_timeout: std::time::Duration::from_secs(120), ..ClientConfig::default() };
        aerodb_client::Client::with_config(&self.url(), config).map_err(|e| e.to_string())
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes.
    pub(crate) fn rss_bytes(&self) -> Result<u64, String> {
        super::cpu::rss_bytes(self.pid()).ok_or_else(|| format!("cannot read the RSS of process {}", self.pid()))
    }

    /// One served request: the server loop (and its SIGINT handler) is up.
    fn wait_ready(&self) -> Result<(), String> {
        let client = blocking::Client::new(&self.url()).map_err(|e| e.to_string())?;
        match client.get(COLLECTION, "ready", &aerodb_client::ReadOptions::default()) {
            // Any answer from the node proves the server loop is up (a replica
            // that is not caught up yet answers 503 READ_REFUSED, which is fine here).
            Ok(_) | Err(aerodb_client::ClientError::Api { .. }) => Ok(()),
            Err(e) => Err(format!("the node does not answer: {e}")),
        }
    }

    /// SIGINT and wait for a clean exit.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        let sent = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().map_err(|e| format!("cannot run kill: {e}"))?;
        if !sent.success() {
            let _ = self.child.kill();
            return Err("kill -INT failed".into());
        }
        let status = self.child.wait().map_err(|e| format!("cannot wait for the node: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the node did not shut down cleanly: {status}"))
        }
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
