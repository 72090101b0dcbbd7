#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! The command-line client against real `aerodb` processes on 127.0.0.1
//! (INTERFACE.md "Binary", "CLI exit codes"; docs/operations.md "The
//! command-line client"): short messages and distinct exit codes, `--json`
//! answers, wrong-port hints, node URLs refused before any lookup, `..`
//! keys kept, `status --watch`, `wal-dump --json --commit --stats`, flags
//! checked before the data directory is written, rate-limited plain-text
//! logs, and `/metrics` against the documented list.

mod repl_support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tempfile::TempDir;

use repl_support::{bin, start_primary, start_replica, wait_for, Node};

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).env("RUST_LOG", "warn").stdin(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn url(addr: &str) -> String {
    format!("http://{addr}")
}

/// A primary with a WAL-bootstrapped replica streaming.
fn pair(pd: &Path, rd: &Path) -> (Node, Node) {
    let primary = start_primary(pd, &[], &[]);
    let replica = start_replica(rd, primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    replica.wait_state("Streaming");
    (primary, replica)
}

/// P5-I14, RS-3, REPL-1, MVCC-1: every client command answers one short
/// line by default and the node's full answer with `--json`, and exits with
/// the documented code: 0 ok, 2 bad arguments, 4 not found, 5 read refused,
/// 6 write rejected, 8 unreachable; `..` keys are kept; node URLs such as
/// `http://` and `unix://x` are refused before any lookup.
#[test]
fn p5_i14_cli_exit_codes_short_messages_and_json_answers() {
    let (pd, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (primary, replica) = pair(pd.path(), rd.path());
    let (p, r) = (url(&primary.client), url(&replica.client));

    let (code, out, err) = cli(&["put", "--node", &p, "users", "alice", r#"{"name":"Alice"}"#]);
    assert_eq!((code, out.trim()), (0, "1"), "put prints the CommitId: {err}");
    let (code, out, _) = cli(&["put", "--node", &p, "users", "bob", r#"{"name":"Bob"}"#, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!({"commit_id": 2}));

    // `..` as collection and key reach the node as `..` (issue 11, item 9).
    let (code, out, err) = cli(&["put", "--node", &p, "..", "..", "42"]);
    assert_eq!((code, out.trim()), (0, "3"), "{err}");
    let (code, out, err) = cli(&["get", "--node", &p, "..", "..", "--json"]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((got["doc"].clone(), got["commit_id"].clone()), (json!(42), json!(3)), "{got}");

    // A read on the replica, waiting for the write: one human line.
    let (code, out, err) = cli(&["get", "--node", &r, "users", "alice", "--min-commit", "3", "--wait-ms", "20000"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(r#"{"name":"Alice"}  (CommitId 1, read view "#), "{out}");

    // 4: not found.
    let (code, out, err) = cli(&["get", "--node", &p, "users", "nobody"]);
    assert_eq!((code, out.as_str()), (4, ""), "{err}");
    assert!(err.starts_with("aerodb: not found: users/nobody has no visible version at read view 3"), "{err}");
    let (code, out, _) = cli(&["get", "--node", &p, "users", "nobody", "--json"]);
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, body["error"]["code"].as_str(), body["read_view"].as_u64()), (4, Some("NOT_FOUND"), Some(3)), "{body}");

    // 5: read refused by the gate (RS-3), short, naming the rule; --json has the whole evidence.
    let (code, _, err) = cli(&["get", "--node", &r, "users", "alice", "--min-commit", "99"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.starts_with("aerodb: read refused by RS-3"), "{err}");
    assert!(err.lines().next().unwrap().len() < 200, "one short line: {err}");
    let (code, out, _) = cli(&["get", "--node", &r, "users", "alice", "--min-commit", "99", "--json"]);
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, body["error"]["rule_id"].as_str()), (5, Some("RS-3")));
    assert_eq!(body["error"]["evidence"]["explanation"]["explanation_type"], "replication.safety");

    // 6: a write to a replica names where writes go, not the replication port.
    let (code, _, err) = cli(&["put", "--node", &r, "users", "carol", "{}"]);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("is a replica and never accepts writes"), "{err}");
    assert!(err.contains(&format!("send writes to the primary's client API at {}", primary.client)), "names the primary's client address: {err}");
    assert!(!err.contains(primary.repl.as_ref().unwrap()), "never the replication port as where writes go: {err}");
    let (_, out, _) = cli(&["put", "--node", &r, "users", "carol", "{}", "--json"]);
    let body: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(body["error"]["evidence"]["primary_client_addr"], primary.client.as_str(), "{body}");
    assert!(body["error"]["evidence"].get("explanation").is_none(), "a write is not a read: no read explanation in {body}");
    let (code, _, err) = cli(&["delete", "--node", &r, "users", "alice"]);
    assert_eq!(code, 6, "{err}");

    // 2: bad arguments, found before anything is sent.
    let (code, _, err) = cli(&["put", "--node", &p, "users", "x", "{not json"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid JSON"), "{err}");
    for bad in ["http://", "unix://x", "localhost"] {
        let (code, _, err) = cli(&["get", "--node", bad, "..", ".."]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.starts_with(&format!("aerodb: bad node URL {bad:?}")), "{err}");
    }
    let (code, _, err) = cli(&["explain", "everything", "--dx", replica.dx.as_ref().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("replication") && err.contains("recovery") && err.contains("read"), "explain lists its values: {err}");

    // 8: unreachable, named once.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (code, _, err) = cli(&["get", "--node", &dead, "users", "alice"]);
    assert_eq!(code, 8, "{err}");
    assert_eq!(err.lines().next().unwrap(), format!("aerodb: cannot reach http://{dead}: connection refused"));
}

/// F-N2, P5-I14: a command pointed at the wrong port says which port to
/// use: the replication port does not speak HTTP, the client port has no
/// DX endpoints (its 404 carries a hint too), the DX port has no documents.
#[test]
fn f_n2_wrong_ports_get_a_hint_naming_the_right_one() {
    let (pd, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (primary, _replica) = pair(pd.path(), rd.path());
    let (code, _, err) = cli(&["get", "--node", primary.repl.as_ref().unwrap(), "users", "alice"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not answer HTTP") && err.contains("replication port") && err.contains("default 7700"), "{err}");
    let (code, _, err) = cli(&["status", "--dx", &primary.client]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NO_SUCH_ENDPOINT") && err.contains("DX port"), "{err}");
    let (status, body) = repl_support::http("GET", &format!("http://{}/v1/status", primary.client), None);
    assert_eq!(status, 404);
    assert!(body["error"]["message"].as_str().unwrap().contains("--dx-listen"), "the client port's 404 has a hint: {body}");
    let (code, _, err) = cli(&["get", "--node", primary.dx.as_ref().unwrap(), "users", "alice"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("client API port"), "{err}");
}

/// P5-I14: `status --watch` prints one snapshot per interval when stdout is
/// not a terminal (no screen-clearing codes), and `--json` the whole view.
#[test]
fn p5_i14_status_watch_prints_snapshots_without_redrawing_into_a_pipe() {
    let (pd, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (primary, replica) = pair(pd.path(), rd.path());
    let dx = replica.dx.as_ref().unwrap();
    let (code, out, err) = cli(&["status", "--dx", dx, "--watch", "--interval", "0.1", "--count", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().filter(|l| l.starts_with("replica state")).count(), 3, "{out}");
    assert!(!out.contains('\x1b'), "no terminal control codes into a pipe: {out:?}");
    let (code, out, _) = cli(&["status", "--dx", primary.dx.as_ref().unwrap(), "--json"]);
    let view: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, view["api_version"].as_str(), view["data"]["role"].as_str()), (0, Some("v1"), Some("primary")));
    let (code, out, _) = cli(&["status", "--dx", primary.dx.as_ref().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("| REPLICA") && out.contains("streaming"), "{out}");
}

/// CORE-2, MVCC-4: `wal-dump --json` prints one object per record with the
/// documented fields, `--commit N..M` selects by CommitId, `--stats` counts.
#[test]
fn core_2_wal_dump_json_commit_range_and_stats() {
    let pd = TempDir::new().unwrap();
    let primary = start_primary(pd.path(), &[], &[]);
    for i in 0..5 {
        assert_eq!(primary.put("c", &format!("k{i}"), &json!({"i": i})).0, 200);
    }
    assert_eq!(repl_support::http("DELETE", &format!("http://{}/v1/docs/c/k0", primary.client), None).0, 200);
    let dir = pd.path().to_str().unwrap();
    let (code, out, err) = cli(&["wal-dump", "--data-dir", dir, "--json", "--commit", "2..4"]);
    assert_eq!(code, 0, "{err}");
    let records: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.iter().map(|r| r["commit_id"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3, 4]);
    let r = &records[0];
    for field in ["lsn", "end_lsn", "bytes", "commit_id", "kind", "fingerprint", "state_digest", "ops", "gc_horizon"] {
        assert!(r.get(field).is_some(), "{field} missing in {r}");
    }
    assert_eq!(r["ops"], json!([{"op": "put", "collection": "c", "key": "k1", "doc_bytes": 7}]));
    assert_eq!(r["bytes"].as_u64().unwrap(), r["end_lsn"].as_u64().unwrap() - r["lsn"].as_u64().unwrap());
    let (code, out, _) = cli(&["wal-dump", "--data-dir", dir, "--stats", "--json"]);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0);
    assert_eq!((stats["records"].as_u64(), stats["commits"].as_u64(), stats["gc_records"].as_u64()), (Some(6), Some(6), Some(0)), "{stats}");
    assert_eq!(stats["ops"], json!({"put": 5, "delete": 1}));
    assert_eq!(stats["segments"].as_array().unwrap().len(), 1);
    assert_eq!(stats["segments"][0]["records"], 6);
    let (code, out, _) = cli(&["wal-dump", "--data-dir", dir, "--stats"]);
    assert!(code == 0 && out.contains("records     6") && out.contains("1 delete"), "{out}");
}

/// REPL-1: a missing data directory is the same refusal for `verify` and
/// `wal-dump` (`NOT_A_DATA_DIR`, REPL-1, exit 2); `verify` of a replica
/// prints its cluster id and a lower-case bootstrap method.
#[test]
fn repl_1_offline_tools_agree_on_a_missing_data_dir_and_verify_names_the_replica_cluster() {
    let nope = TempDir::new().unwrap().path().join("nope");
    let (vcode, vout, _) = cli(&["verify", "--data-dir", nope.to_str().unwrap()]);
    let (dcode, _, derr) = cli(&["wal-dump", "--data-dir", nope.to_str().unwrap()]);
    assert_eq!((vcode, dcode), (2, 2), "{vout} / {derr}");
    assert!(vout.contains("[NOT_A_DATA_DIR, REPL-1]") && derr.contains("[NOT_A_DATA_DIR, REPL-1]"), "{vout} / {derr}");

    let (pd, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (primary, replica) = pair(pd.path(), rd.path());
    let cluster = primary.replication()["cluster_id"].as_str().unwrap().to_string();
    assert_eq!(replica.stop(), Some(0));
    let (code, out, _) = cli(&["verify", "--data-dir", rd.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("ok    identity: role replica cluster {cluster}")), "{out}");
    assert!(out.contains("bootstrap wal at CommitId"), "{out}");
}

/// P5-I14: bad flags are refused before the data directory is written:
/// a malformed or busy listen address, `--primary` without a port (with a
/// hint naming the replication port).
#[test]
fn p5_i14_bad_flags_are_refused_before_the_data_directory_is_written() {
    let d = TempDir::new().unwrap();
    let dir = d.path().join("data");
    let (code, _, err) = cli(&["primary", "--data-dir", dir.to_str().unwrap(), "--listen", "nonsense"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HOST:PORT"), "{err}");
    assert!(!dir.exists(), "nothing was written");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (code, _, err) = cli(&["primary", "--data-dir", dir.to_str().unwrap(), "--listen", &busy_addr, "--repl-listen", "127.0.0.1:0", "--dx-listen", "off"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("BAD_FLAGS") && err.contains(&busy_addr), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("refusing to start")).count(), 1, "printed once: {err}");
    assert!(!dir.join("identity.json").exists() && !dir.join("wal").exists(), "nothing was written");
    let (code, _, err) = cli(&["replica", "--data-dir", dir.to_str().unwrap(), "--primary", "localhost"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs a port") && err.contains("7701"), "{err}");
    assert!(!dir.exists());
    let (_, help, _) = cli(&["replica", "--help"]);
    assert!(help.contains("primary-host:7701"), "--primary's help shows an example port: {help}");
    let (_, help, _) = cli(&["--help"]);
    assert!(help.contains("Exit codes:") && help.contains("8  node unreachable"), "{help}");
}

/// F-N1: a replica whose primary is down logs plain text (no colour codes
/// into a file, no Rust debug formatting) and rate-limits its retry lines:
/// fewer lines than retries once the same failure repeats.
#[test]
fn f_n1_replica_retry_logs_are_rate_limited_and_plain() {
    let rd = TempDir::new().unwrap();
    let log = rd.path().join("replica.log");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let data = rd.path().join("data");
    let args: Vec<String> = ["replica", "--data-dir", data.to_str().unwrap(), "--primary", &dead, "--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let replica = repl_support::spawn_to(&args, &[("RUST_LOG", "info")], &data, Some(&log));
    let reconnects = 8;
    replica.wait_replication("retried several times", |v| v["connection"]["reconnects"].as_u64().unwrap_or(0) >= reconnects);
    let text = std::fs::read_to_string(&log).unwrap();
    let transitions = text.lines().filter(|l| l.contains("replica state transition")).count() as u64;
    assert!(transitions < 2 * reconnects, "{transitions} transition lines for {reconnects}+ retries:\n{text}");
    assert!(!text.contains('\x1b'), "no ANSI colour codes in a redirected log:\n{text}");
    assert!(!text.contains("Some(") && !text.contains(" { "), "no Rust debug formatting:\n{text}");
    drop(replica);
}

/// The `| `name` | type | labels |` rows of docs/operations.md.
fn documented_metrics() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md")).unwrap();
    doc.lines().filter(|l| l.starts_with("| `aerodb_") || l.starts_with("| `process_")).map(|l| l[3..].split('`').next().unwrap().to_string()).collect()
}

/// P5-I14, F-O1: every metric family a real primary and replica emit is in
/// docs/operations.md (with process metrics), in Prometheus text format.
#[test]
fn p5_i14_metrics_a_node_emits_are_all_documented() {
    let (pd, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (primary, replica) = pair(pd.path(), rd.path());
    assert_eq!(primary.put("c", "k", &json!(1)).0, 200);
    replica.wait_caught_up(1);
    let documented = documented_metrics();
    for node in [&primary, &replica] {
        let dx = node.dx.as_ref().unwrap();
        let client = aerodb_client::blocking::DxClient::new(dx).unwrap();
        let text = wait_for("metrics", || client.metrics().ok());
        let families: BTreeSet<String> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap().to_string()).collect();
        let undocumented: Vec<&String> = families.iter().filter(|f| !documented.contains(*f)).collect();
        assert!(undocumented.is_empty(), "emitted but not in docs/operations.md: {undocumented:?}");
        for process in ["process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds", "process_start_time_seconds"] {
            assert!(families.contains(process), "{process} missing:\n{text}");
        }
    }
}
