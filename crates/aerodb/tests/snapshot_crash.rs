#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
#![cfg(feature = "replication")] // these tests read the DX API, which a build without replication does not have (P5-I16)
//! F-S1, REPL-9 with a real process: a standalone node that crashes while
//! publishing a snapshot leaves no visible partial snapshot, recovers, and
//! keeps every acknowledged write.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

struct Node {
    child: Child,
    addr: String,
    _stdout: BufReader<ChildStdout>,
}

impl Node {
    /// Starts `aerodb standalone` on port 0 and reads its client address.
    fn start(data_dir: &Path, log: &Path, failpoints: Option<&str>) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aerodb"));
        cmd.args(["standalone", "--data-dir"]).arg(data_dir).args(["--listen", "127.0.0.1:0", "--dx-listen", "off", "--snapshot-every-bytes", "4096"]);
        cmd.env_remove("FAILPOINTS");
        if let Some(fp) = failpoints {
            cmd.env("FAILPOINTS", fp);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::from(File::create(log).unwrap())).spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "node exited before listening: {}", fs::read_to_string(log).unwrap_or_default());
            if let Some(addr) = line.trim().strip_prefix("listening client ") {
                break addr.to_string();
            }
        };
        Node { child, addr, _stdout: stdout }
    }

    /// The CommitId of an acknowledged write, or why it was not acknowledged.
    fn put(&self, key: &str, doc: &Value) -> Result<u64, String> {
        let resp = ureq::put(&format!("http://{}/v1/docs/docs/{key}", self.addr))
            .set("content-type", "application/json")
            .send_string(&doc.to_string())
            .map_err(|e| e.to_string())?;
        let body: Value = resp.into_json().unwrap();
        Ok(body["commit_id"].as_u64().unwrap())
    }

    fn get(&self, key: &str) -> Value {
        ureq::get(&format!("http://{}/v1/docs/docs/{key}", self.addr)).call().unwrap_or_else(|e| panic!("GET {key}: {e}")).into_json().unwrap()
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn doc(i: u64) -> Value {
    json!({"i": i, "pad": "p".repeat(150)})
}

/// Published snapshot directories (20 digits) and other entries of `snapshots/`.
fn snapshot_entries(data_dir: &Path) -> (Vec<String>, Vec<String>) {
    let dir: PathBuf = data_dir.join("snapshots");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names.into_iter().partition(|n| n.len() == 20 && n.bytes().all(|c| c.is_ascii_digit()))
}

/// F-S1, REPL-9: the node is killed at `snapshot.before_rename` (every
/// snapshot file and the directory fsynced, not yet renamed into place)
/// while clients write. After the crash no published snapshot exists, only
/// the temporary directory; `aerodb verify` passes; the restarted node
/// removes the temporary directory, recovers from the WAL with every
/// acknowledged write present, takes a complete snapshot, and a further
/// restart recovers from that snapshot with the same data.
#[test]
fn f_s1_crash_before_snapshot_rename_leaves_no_partial_snapshot_and_loses_no_ack() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let node = Node::start(data.path(), &logs.path().join("1.log"), Some("snapshot.before_rename=return"));
    let mut node = node;
    let mut acked: Vec<(String, u64)> = Vec::new();
    let mut last_commit = 0u64;
    let mut i = 0u64;
    // Write until the process is gone; a failed write is unacknowledged
    // (it may or may not have committed) and is not expected afterwards.
    let status = loop {
        assert!(i < 20_000, "the node never reached the crash point");
        let key = format!("k{i}");
        i += 1;
        match node.put(&key, &doc(i - 1)) {
            Ok(commit_id) => {
                assert!(commit_id > last_commit, "CommitIds increase");
                last_commit = commit_id;
                acked.push((key, i - 1));
            }
            Err(_) => {
                if let Some(status) = node.child.try_wait().unwrap() {
                    break status;
                }
            }
        }
    };
    assert!(!status.success(), "the node must have crashed");
    let log = fs::read_to_string(logs.path().join("1.log")).unwrap();
    assert!(log.contains("crash point snapshot.before_rename reached"), "{log}");
    assert!(!acked.is_empty());
    let (published, other) = snapshot_entries(data.path());
    assert!(published.is_empty(), "no visible partial snapshot: {published:?}");
    assert_eq!(other.len(), 1, "{other:?}");
    assert!(other[0].starts_with(".tmp-"), "{other:?}");

    let verify = Command::new(env!("CARGO_BIN_EXE_aerodb")).args(["verify", "--data-dir"]).arg(data.path()).output().unwrap();
    let verify_out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{verify_out}");
    assert!(verify_out.contains("incomplete directory .tmp-"), "{verify_out}");

    // Restart without the crash point: the incomplete directory is gone
    // before the node serves, and every acknowledged write is there.
    let crashed_tmp = other[0].clone();
    let node = Node::start(data.path(), &logs.path().join("2.log"), None);
    // Recovery logs before the node listens; a snapshot the restarted
    // scheduler may already be writing can reuse the same temporary name,
    // so the removal is checked in the log.
    let log = fs::read_to_string(logs.path().join("2.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("removed an incomplete snapshot directory") && l.contains(&crashed_tmp)), "{log}");
    let published = snapshot_entries(data.path()).0;
    for (key, i) in &acked {
        let got = node.get(key);
        assert_eq!(got["doc"], doc(*i), "{key}");
    }
    // Writes continue; the scheduler now publishes a complete snapshot.
    let mut j = i;
    let mut published = published;
    while published.is_empty() {
        assert!(j < i + 20_000, "no snapshot after restart");
        let key = format!("k{j}");
        let commit_id = node.put(&key, &doc(j)).unwrap();
        assert!(commit_id > last_commit, "CommitIds continue after recovery");
        last_commit = commit_id;
        acked.push((key, j));
        j += 1;
        published = snapshot_entries(data.path()).0;
    }
    node.kill();

    let verify = Command::new(env!("CARGO_BIN_EXE_aerodb")).args(["verify", "--data-dir"]).arg(data.path()).output().unwrap();
    let verify_out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{verify_out}");
    assert!(verify_out.contains(&format!("ok    snapshot {}", published[0].trim_start_matches('0'))), "{verify_out}");

    // Recovery from that snapshot plus the WAL after it serves the same data.
    let node = Node::start(data.path(), &logs.path().join("3.log"), None);
    let log = fs::read_to_string(logs.path().join("3.log")).unwrap();
    assert!(log.contains("loaded snapshot"), "{log}");
    for (key, i) in &acked {
        assert_eq!(node.get(key)["doc"], doc(*i), "{key}");
    }
    node.kill();
}
