#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! The DX API against real `aerodb` processes on 127.0.0.1 (REPLICATION.md
//! §10, INTERFACE.md "DX API"): every endpoint for every role, in the
//! envelope; explanations pinned with insta after replacing run-specific
//! values (cluster and replica ids, addresses, data directories); numbers
//! cross-checked against what the client API returned (P5-I15); a halted
//! replica explaining its halt with both sides' evidence, and client
//! refusals embedding the same evidence; answers during a failure (F-O1);
//! read-only enforcement; Prometheus exposition; byte-identical answers
//! for the same persisted state; and the CLI (`aerodb status|explain`).

mod repl_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use repl_support::{bin, http, spawn, start_primary, start_replica, wait_for, Node};

/// Every DX path (INTERFACE.md order); `/v1/explain/read` with a key.
const PATHS: &[&str] = &[
    "/v1/status",
    "/v1/wal",
    "/v1/mvcc",
    "/v1/snapshots",
    "/v1/replication",
    "/v1/explain/replication",
    "/v1/explain/recovery",
    "/v1/explain/read?collection=users&key=alice",
    "/v1/scrub",
    "/metrics",
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// GET returning (status, content type, raw body).
fn get_raw(addr: &str, path: &str) -> (u16, String, String) {
    let resp = match ureq::get(&format!("http://{addr}{path}")).timeout(Duration::from_secs(30)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {addr}{path}: {e}"),
    };
    let status = resp.status();
    let ctype = resp.content_type().to_string();
    (status, ctype, resp.into_string().unwrap())
}

/// Any method; returns (status, JSON body).
fn call(method: &str, addr: &str, path: &str) -> (u16, Value) {
    let resp = match ureq::request(method, &format!("http://{addr}{path}")).timeout(Duration::from_secs(30)).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {addr}{path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn dx(node: &Node) -> &str {
    node.dx.as_deref().expect("dx enabled")
}

/// GET a JSON endpoint; asserts 200 and the envelope; returns the envelope.
fn envelope(node: &Node, path: &str) -> Value {
    let (status, ctype, body) = get_raw(dx(node), path);
    assert_eq!(status, 200, "{path}: {body}");
    assert!(ctype.starts_with("application/json"), "{path}: {ctype}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_envelope(&v, path);
    v
}

fn assert_envelope(v: &Value, what: &str) {
    let keys: BTreeSet<&str> = v.as_object().unwrap_or_else(|| panic!("{what}: not an object: {v}")).keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["api_version", "observed_at", "data", "notes"]), "{what}: {v}");
    assert_eq!(v["api_version"], "v1", "{what}");
    assert_eq!(v["observed_at"]["snapshot"], "live", "{what}");
    assert!(v["observed_at"]["commit_id"].is_u64() || v["observed_at"]["commit_id"].is_null(), "{what}");
    assert!(v["notes"].is_array(), "{what}");
}

/// The §10 explanation shape; every cited rule is registered (P5-I15); a
/// null evaluation states what is missing (F-O1).
fn assert_explanation(e: &Value, ty: &str) {
    let keys: BTreeSet<&str> = e.as_object().unwrap_or_else(|| panic!("not an explanation: {e}")).keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["explanation_type", "observed_snapshot", "inputs", "rules_applied", "conclusion"]), "{e}");
    assert_eq!(e["explanation_type"], ty);
    assert_eq!(e["observed_snapshot"]["snapshot_id"], "live");
    let rules = e["rules_applied"].as_array().unwrap();
    assert!(!rules.is_empty());
    for r in rules {
        let id = r["rule_id"].as_str().unwrap();
        assert!(aerodb_repl_explain::rules::rule(id).is_some(), "{ty} cites unregistered rule {id}");
        assert!(r["description"].as_str().is_some_and(|d| !d.is_empty()));
        match &r["evaluation"] {
            Value::Bool(_) => {}
            Value::Null => assert!(r["evidence"]["missing"].is_string(), "null evaluation without stated missing evidence: {r}"),
            other => panic!("evaluation {other}"),
        }
    }
    assert!(e["conclusion"].is_object());
}

/// Replaces run-specific substrings everywhere, and blanks `peer` and
/// `address` (a replica's ephemeral port).
fn redact(v: &Value, subs: &[(String, &str)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (from, to) in subs {
                if !from.is_empty() {
                    s = s.replace(from.as_str(), to);
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| redact(x, subs)).collect()),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, x)| (k.clone(), if (k == "peer" || k == "address") && x.is_string() { json!("[peer]") } else { redact(x, subs) })).collect(),
        ),
        other => other.clone(),
    }
}

fn node_subs(nodes: &[(&Node, &str)]) -> Vec<(String, &'static str)> {
    let mut subs = Vec::new();
    for (n, _) in nodes {
        subs.push((n.data_dir.display().to_string(), "[data-dir]"));
        subs.push((n.client.clone(), "[client-addr]"));
        if let Some(d) = &n.dx {
            subs.push((d.clone(), "[dx-addr]"));
        }
        if let Some(r) = &n.repl {
            subs.push((r.clone(), "[repl-addr]"));
        }
    }
    subs
}

/// Validates a Prometheus text exposition and returns `series → value`.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let valid_name = |n: &str| {
        let mut chars = n.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped: BTreeSet<String> = BTreeSet::new();
    let mut series = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(valid_name(name), "bad metric name in {line:?}");
            match kind {
                "HELP" => {
                    assert!(!tail.trim().is_empty(), "empty HELP: {line:?}");
                    assert!(helped.insert(name.to_string()), "duplicate HELP: {line:?}");
                }
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail), "bad TYPE: {line:?}");
                    assert!(typed.insert(name.to_string(), tail.to_string()).is_none(), "duplicate TYPE: {line:?}");
                }
                _ => panic!("unknown comment line {line:?}"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment {line:?}");
        let (head, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value is not a float: {line:?}"));
        let name = head.split('{').next().unwrap();
        assert!(valid_name(name), "bad sample name {line:?}");
        assert!(typed.contains_key(name), "sample before its TYPE: {line:?}");
        let labels = &head[name.len()..];
        if !labels.is_empty() {
            let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).unwrap_or_else(|| panic!("bad labels {line:?}"));
            let mut rest = inner;
            while !rest.is_empty() {
                let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                assert!(valid_name(k), "bad label name in {line:?}");
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        if typed[name] == "counter" {
            assert!(v >= 0.0, "negative counter {line:?}");
        }
        assert!(series.insert(head.to_string(), v).is_none(), "duplicate series {line:?}");
    }
    series
}

fn metrics(node: &Node) -> BTreeMap<String, f64> {
    let (status, ctype, body) = get_raw(dx(node), "/metrics");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    parse_metrics(&body)
}

fn put(node: &Node, key: &str, doc: Value) -> u64 {
    let (status, body) = node.put("users", key, &doc);
    assert_eq!(status, 200, "{body}");
    body["commit_id"].as_u64().unwrap()
}

fn delete(node: &Node, key: &str) -> u64 {
    let (status, body) = http("DELETE", &format!("http://{}/v1/docs/users/{key}", node.client), None);
    assert_eq!(status, 200, "{body}");
    body["commit_id"].as_u64().unwrap()
}

/// alice: put, put, delete, put; bob: put. Returns alice's CommitIds and the last one.
fn workload(primary: &Node) -> (Vec<u64>, u64) {
    let a1 = put(primary, "alice", json!({"name": "alice", "v": 1}));
    let b1 = put(primary, "bob", json!({"name": "bob", "v": 1}));
    let a2 = put(primary, "alice", json!({"name": "alice", "v": 2}));
    let a3 = delete(primary, "alice");
    let a4 = put(primary, "alice", json!({"name": "alice", "v": 3}));
    assert_eq!((a1, b1, a2, a3, a4), (1, 2, 3, 4, 5));
    (vec![a1, a2, a3, a4], a4)
}

/// Waits until the primary has heard the replica report `commit_id` as applied.
fn wait_primary_sees(primary: &Node, commit_id: u64) -> Value {
    primary.wait_replication("primary sees the replica's report", |v| {
        v["replicas"].as_array().is_some_and(|r| r.len() == 1 && r[0]["reported"]["applied_commit_id"] == commit_id)
    })
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).env("RUST_LOG", "warn").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A started primary with the workload and a WAL-bootstrapped replica caught up.
struct Pair {
    _dirs: (TempDir, TempDir),
    primary: Node,
    replica: Node,
    alice: Vec<u64>,
    last: u64,
}

fn pair() -> Pair {
    let (pd, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let primary = start_primary(pd.path(), &[], &[]);
    let (alice, last) = workload(&primary);
    let replica = start_replica(rd.path(), primary.repl.as_deref().unwrap(), &["--bootstrap", "wal"], &[]);
    replica.wait_caught_up(last);
    wait_primary_sees(&primary, last);
    Pair { _dirs: (pd, rd), primary, replica, alice, last }
}

fn pair_subs(p: &Pair) -> Vec<(String, &'static str)> {
    let cluster = p.primary.replication()["cluster_id"].as_str().unwrap().to_string();
    let replica_id = p.replica.replication()["replica_id"].as_str().unwrap().to_string();
    let mut subs = node_subs(&[(&p.primary, "primary"), (&p.replica, "replica")]);
    subs.push((cluster, "[cluster-id]"));
    subs.push((replica_id, "[replica-id]"));
    subs
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// P5-I14: every endpoint answers on a primary and a replica, in the
/// envelope; views and explanations are pinned (run-specific values
/// replaced); metrics parse; the CLI prints the same views.
#[test]
fn p5_i14_every_endpoint_for_primary_and_replica_pinned() {
    let p = pair();
    let subs = pair_subs(&p);
    for (role, node) in [("primary", &p.primary), ("replica", &p.replica)] {
        for path in PATHS.iter().filter(|p| **p != "/metrics") {
            let env = envelope(node, path);
            assert_eq!(env["observed_at"]["commit_id"], p.last, "{role} {path}");
        }
        let m = metrics(node);
        assert_eq!(m.get("aerodb_commit_id"), Some(&(p.last as f64)), "{role}");
        let safety = envelope(node, "/v1/explain/replication")["data"].clone();
        assert_explanation(&safety, "replication.safety");
        assert!(safety["conclusion"].get("halt_explanation").is_none(), "not halted: only replication.safety");
        assert_eq!(safety["conclusion"]["read_safety"], "safe");
        assert_explanation(&envelope(node, "/v1/explain/recovery")["data"], "recovery.process");
        assert_explanation(&envelope(node, "/v1/explain/read?collection=users&key=alice&at=3")["data"], "mvcc.read_visibility");
        for path in [
            "/v1/status",
            "/v1/wal",
            "/v1/mvcc",
            "/v1/snapshots",
            "/v1/replication",
            "/v1/explain/replication",
            "/v1/explain/read?collection=users&key=alice&at=3",
        ] {
            let name = format!("{role}{}", path.replace("/v1", "").replace(['/', '?', '&', '='], "_"));
            insta::assert_json_snapshot!(name, redact(&envelope(node, path), &subs));
        }
        insta::assert_json_snapshot!(format!("{role}_explain_recovery"), redact(&envelope(node, "/v1/explain/recovery"), &subs));
    }
    // Replica metrics: every LSN stage, lag, counters, state gauge.
    let m = metrics(&p.replica);
    let view = p.replica.replication();
    for stage in ["received", "validated", "applied"] {
        assert_eq!(m[&format!("aerodb_wal_lsn{{stage=\"{stage}\"}}")], view[format!("wal_{stage}_lsn")].as_f64().unwrap());
    }
    assert_eq!(m["aerodb_replication_lag_commits"], 0.0);
    assert_eq!(m["aerodb_replica_state{state=\"Streaming\"}"], 1.0);
    assert_eq!(m["aerodb_replica_handshakes_total"], 1.0);
    let pm = metrics(&p.primary);
    assert!(pm.keys().any(|k| k.starts_with("aerodb_replica_lag_commits{")), "{pm:?}");
    assert!(pm["aerodb_wal_shipped_bytes_total"] > 0.0);

    // CLI: status tables and explanations.
    let (code, out, err) = cli(&["status", "--dx", dx(&p.replica)]);
    assert_eq!(code, 0, "{err}");
    for want in ["replica state", "Streaming", "wal received lsn", "wal validated lsn", "wal applied lsn", "primary commit id", "blocking reason", "connection"]
    {
        assert!(out.contains(want), "status output lacks {want:?}:\n{out}");
    }
    let (code, out, err) = cli(&["status", "--dx", &format!("http://{}", dx(&p.primary))]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("durable lsn") && out.lines().any(|l| l.starts_with("replicas") && l.ends_with(" 1")) && out.contains("REPLICA"), "{out}");
    let (code, out, err) = cli(&["explain", "read", "users", "alice", "--at", "3", "--dx", dx(&p.replica)]);
    assert_eq!(code, 0, "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed, envelope(&p.replica, "/v1/explain/read?collection=users&key=alice&at=3")["data"]);
    for what in ["replication", "recovery"] {
        let (code, out, err) = cli(&["explain", what, "--dx", dx(&p.primary)]);
        assert_eq!(code, 0, "{err}");
        assert!(serde_json::from_str::<Value>(&out).is_ok(), "{out}");
    }
    let (code, _, err) = cli(&["explain", "read", "--dx", dx(&p.primary)]);
    assert_ne!(code, 0);
    assert!(err.contains("COLLECTION and KEY"), "{err}");
}

/// P5-I15: explanations cite the real numbers: the CommitIds the client API
/// returned, the LSNs the replication view shows, and what reads at the
/// same R actually return.
#[test]
fn p5_i15_explanations_cite_real_commit_ids_lsns_and_reads() {
    let p = pair();
    let view = p.replica.replication();
    let safety = &envelope(&p.replica, "/v1/explain/replication")["data"];
    let prefix = safety["rules_applied"].as_array().unwrap().iter().find(|r| r["rule_id"] == "REPL-3").unwrap();
    assert_eq!(prefix["evaluation"], true);
    assert_eq!(prefix["evidence"]["replica_commit_id"], p.last);
    assert_eq!(prefix["evidence"]["primary_commit_id"], p.last);
    assert_eq!(prefix["evidence"]["wal_applied_lsn"], view["wal_applied_lsn"]);
    assert_eq!(prefix["evidence"]["commits_behind_primary"], 0);
    let pipeline = safety["rules_applied"].as_array().unwrap().iter().find(|r| r["rule_id"] == "P5-I5").unwrap();
    for stage in ["received", "validated", "applied"] {
        assert_eq!(pipeline["evidence"][format!("wal_{stage}_lsn")], view[format!("wal_{stage}_lsn")]);
    }
    assert_eq!(view["wal_applied_lsn"], p.primary.replication()["durable_lsn"]);

    for node in [&p.primary, &p.replica] {
        for r in 0..=p.last {
            let e = envelope(node, &format!("/v1/explain/read?collection=users&key=alice&at={r}"))["data"].clone();
            assert_explanation(&e, "mvcc.read_visibility");
            let mvcc1 = e["rules_applied"].as_array().unwrap().iter().find(|x| x["rule_id"] == "MVCC-1").unwrap().clone();
            let chain: Vec<u64> = mvcc1["evidence"]["version_chain"].as_array().unwrap().iter().map(|v| v["commit_id"].as_u64().unwrap()).collect();
            assert_eq!(chain, p.alice, "the chain lists the CommitIds the writes returned");
            let (status, body) = node.get("users", "alice", &format!("?at={r}"));
            match e["conclusion"]["outcome"].as_str().unwrap() {
                "visible" => {
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["commit_id"], e["conclusion"]["visible_commit_id"]);
                }
                "not_found" => assert_eq!(status, 404, "R={r}: {body}"),
                other => panic!("unexpected outcome {other} at R={r}"),
            }
        }
        let beyond = envelope(node, &format!("/v1/explain/read?collection=users&key=alice&at={}", p.last + 1))["data"].clone();
        assert_eq!(beyond["conclusion"]["outcome"], "refused");
        assert_eq!(node.get("users", "alice", &format!("?at={}", p.last + 1)).0, 503);
        let recovery = envelope(node, "/v1/explain/recovery")["data"].clone();
        assert_explanation(&recovery, "recovery.process");
    }
    // A restarted replica's recovery explanation replays exactly the commits it holds.
    let replica = p.replica.restart(&[]);
    replica.wait_caught_up(p.last);
    let recovery = envelope(&replica, "/v1/explain/recovery")["data"].clone();
    assert_eq!(recovery["conclusion"]["outcome"], "recovered");
    assert_eq!(recovery["conclusion"]["wal_replay"]["commit_ids"], json!([1, p.last]));
    assert_eq!(recovery["conclusion"]["final_commit_id"], p.last);
    assert_eq!(recovery["conclusion"]["final_lsn"], replica.replication()["wal_applied_lsn"]);
    assert_eq!(recovery["conclusion"]["final_state_digest"], replica.replication()["state_digest"]);
    let mut subs = node_subs(&[(&p.primary, "primary"), (&replica, "replica")]);
    subs.push((replica.replication()["cluster_id"].as_str().unwrap().to_string(), "[cluster-id]"));
    subs.push((replica.replication()["replica_id"].as_str().unwrap().to_string(), "[replica-id]"));
    insta::assert_json_snapshot!("replica_explain_recovery_after_restart", redact(&recovery, &subs));
}

/// P5-I14 / F-C1: a replica halted by another cluster's primary explains
/// the halt with both sides' values and the operator action; client
/// refusals carry the same evidence; metrics show the halt code.
#[test]
fn p5_i14_halted_replica_explains_halt_and_refusals_embed_it() {
    let (pa, pb, rd) = (TempDir::new().unwrap(), TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = start_primary(pa.path(), &[], &[]);
    put(&a, "alice", json!({"v": 1}));
    let replica = start_replica(rd.path(), a.repl.as_deref().unwrap(), &["--bootstrap", "wal"], &[]);
    replica.wait_caught_up(1);
    let cluster_a = replica.replication()["cluster_id"].as_str().unwrap().to_string();
    let replica_id = replica.replication()["replica_id"].as_str().unwrap().to_string();
    replica.kill();
    let b = start_primary(pb.path(), &[], &[]);
    let cluster_b = b.replication()["cluster_id"].as_str().unwrap().to_string();
    let replica = start_replica(rd.path(), b.repl.as_deref().unwrap(), &["--bootstrap", "wal"], &[]);
    replica.wait_halted_settled();

    let safety = envelope(&replica, "/v1/explain/replication")["data"].clone();
    assert_explanation(&safety, "replication.safety");
    let halt = safety["conclusion"]["halt_explanation"].clone();
    assert_explanation(&halt, "replication.halt");
    assert_eq!(safety["conclusion"]["read_safety"], "unsafe");
    assert_eq!(halt["conclusion"]["code"], "CLUSTER_MISMATCH");
    assert_eq!(halt["conclusion"]["rule_id"], "REPL-1");
    assert!(halt["conclusion"]["operator_action"].as_str().unwrap().contains("aerodb replica --rebootstrap"));
    let sides = &halt["rules_applied"][0]["evidence"]["both_sides"];
    let text = sides.to_string();
    assert!(text.contains(&cluster_a) && text.contains(&cluster_b), "both clusters in the evidence: {sides}");

    // Client refusals carry the same evidence as the explanation.
    let (status, body) = replica.get("users", "alice", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "REPLICATION_HALTED");
    assert_eq!(body["error"]["rule_id"], "REPL-1");
    let embedded = &body["error"]["evidence"]["explanation"];
    assert_eq!(embedded["rules_applied"], safety["rules_applied"]);
    assert_eq!(embedded["conclusion"]["read_safety"], "unsafe");
    assert_eq!(body["error"]["evidence"]["halt_explanation"]["conclusion"], halt["conclusion"]);
    let (status, body) = replica.put("users", "alice", &json!({"v": 2}));
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "WRITE_REJECTED");
    assert_eq!(body["error"]["rule_id"], "REPL-1");
    // A write is not a read: no read explanation (no "admitted") in its evidence (issue 14).
    assert_eq!(body["error"]["evidence"]["node_state"], "ReplicationHalted", "{body}");
    assert!(body["error"]["evidence"].get("explanation").is_none(), "{body}");
    assert!(!body.to_string().contains("admitted"), "{body}");

    let m = metrics(&replica);
    assert_eq!(m["aerodb_replica_halted{code=\"CLUSTER_MISMATCH\"}"], 1.0);
    assert_eq!(m["aerodb_replica_halted{code=\"DIVERGED\"}"], 0.0);
    assert_eq!(m["aerodb_client_refusals_total{code=\"REPLICATION_HALTED\",rule_id=\"REPL-1\"}"], 1.0);
    assert_eq!(m["aerodb_client_refusals_total{code=\"WRITE_REJECTED\",rule_id=\"REPL-1\"}"], 1.0);
    assert_eq!(m["aerodb_replica_state{state=\"Halted\"}"], 1.0);

    let view = replica.replication();
    assert_eq!(view["blocking_reason"]["code"], "CLUSTER_MISMATCH");
    let (code, out, _) = cli(&["status", "--dx", dx(&replica)]);
    assert_eq!(code, 0);
    assert!(out.contains("CLUSTER_MISMATCH (REPL-1)") && out.contains("ReplicationHalted"), "{out}");
    // The CLI: a read of a halted replica exits 7 (halted), a write 6 (write rejected).
    let client = format!("http://{}", replica.client);
    let (code, _, err) = cli(&["get", "--node", &client, "users", "alice"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.starts_with("aerodb: replica halted (CLUSTER_MISMATCH, REPL-1)"), "{err}");
    let (code, _, err) = cli(&["put", "--node", &client, "users", "alice", "1"]);
    assert_eq!(code, 6, "{err}");

    let mut subs = node_subs(&[(&a, "a"), (&b, "b"), (&replica, "replica")]);
    subs.push((cluster_a, "[cluster-a]"));
    subs.push((cluster_b, "[cluster-b]"));
    subs.push((replica_id, "[replica-id]"));
    insta::assert_json_snapshot!("halted_replica_explain_replication", redact(&safety, &subs));
}

/// F-O1: a replica that never reached its primary answers every endpoint
/// with what it knows, marks unknowns as null with notes, states missing
/// evidence, and concludes without guessing.
#[test]
fn f_o1_dx_answers_during_failure_with_what_is_known() {
    let rd = TempDir::new().unwrap();
    // Port 1 on loopback: nothing listens there, so every connection is refused.
    let dead_addr = "127.0.0.1:1".to_string();
    let replica = start_replica(rd.path(), &dead_addr, &["--bootstrap", "wal"], &[]);
    let view = replica.wait_replication("blocked on CONNECT_FAILED", |v| v["blocking_reason"]["code"] == "CONNECT_FAILED");
    assert!(view["replica_commit_id"].is_null() && view["wal_applied_lsn"].is_null() && view["primary_commit_id"].is_null(), "{view}");
    assert_eq!(view["read_safety"], "unsafe");
    assert_eq!(view["lag"], json!({"commits": null, "bytes": null, "seconds": null, "as_of": null}));

    for path in PATHS.iter().filter(|p| **p != "/metrics") {
        let env = envelope(&replica, path);
        assert!(env["observed_at"]["commit_id"].is_null(), "{path}");
        if ["/v1/status", "/v1/wal", "/v1/mvcc", "/v1/replication"].contains(path) {
            assert!(!env["notes"].as_array().unwrap().is_empty(), "{path} marks its incomplete parts: {env}");
        }
    }
    let safety = envelope(&replica, "/v1/explain/replication")["data"].clone();
    assert_explanation(&safety, "replication.safety");
    assert_eq!(safety["conclusion"]["read_safety"], "unsafe");
    assert_eq!(safety["conclusion"]["first_failing_rule"], "RS-1");
    let missing: Vec<&str> = safety["conclusion"]["missing_evidence"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(missing, ["RS-3", "RS-4", "P5-I5", "REPL-3"]);
    let read = envelope(&replica, "/v1/explain/read?collection=users&key=alice")["data"].clone();
    assert_explanation(&read, "mvcc.read_visibility");
    assert_eq!(read["conclusion"]["outcome"], "refused");
    assert!(read["rules_applied"].as_array().unwrap().iter().any(|r| r["rule_id"] == "MVCC-1" && r["evaluation"].is_null()));
    let recovery = envelope(&replica, "/v1/explain/recovery")["data"].clone();
    assert_explanation(&recovery, "recovery.process");
    assert_eq!(recovery["conclusion"]["outcome"], "not_run");

    let (status, body) = replica.get("users", "alice", "");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "READ_REFUSED");
    assert_eq!(body["error"]["rule_id"], "RS-1");
    assert_eq!(body["error"]["evidence"]["explanation"]["conclusion"]["first_failing_rule"], "RS-1");
    assert_eq!(body["error"]["evidence"]["explanation"]["conclusion"]["missing_evidence"], json!(missing));
    // One source (issue 14, item 2): the gate rules in `evidence.rules` are the
    // explanation's own entries, same evaluation (null where evidence is missing)
    // and same wording; nothing in the body contradicts itself.
    let rules = body["error"]["evidence"]["rules"].as_array().unwrap();
    let applied = body["error"]["evidence"]["explanation"]["rules_applied"].as_array().unwrap();
    assert_eq!(rules.iter().map(|r| r["rule_id"].as_str().unwrap()).collect::<Vec<_>>(), ["RS-1", "RS-2", "RS-3", "RS-4", "RS-5"]);
    for r in rules {
        let same = applied.iter().find(|a| a["rule_id"] == r["rule_id"]).unwrap();
        assert_eq!(r, same, "evidence.rules and explanation.rules_applied disagree on {}", r["rule_id"]);
    }
    assert!(rules.iter().any(|r| r["rule_id"] == "RS-3" && r["evaluation"].is_null()), "RS-3 is undetermined without local state: {rules:?}");

    let m = metrics(&replica);
    assert!(!m.contains_key("aerodb_commit_id"), "unknown values are omitted, never guessed");
    assert!(!m.contains_key("aerodb_replication_lag_commits"));
    assert_eq!(m["aerodb_client_refusals_total{code=\"READ_REFUSED\",rule_id=\"RS-1\"}"], 1.0);
    assert_eq!(m["aerodb_replica_blocked{code=\"CONNECT_FAILED\",rule_id=\"F-N1\"}"], 1.0);
    assert!(m.keys().filter(|k| k.starts_with("aerodb_replica_halted{")).all(|k| m[k] == 0.0));

    // The CLI reaches the node and prints unknowns as such; an unreachable node is a clear error.
    let (code, out, err) = cli(&["status", "--dx", dx(&replica)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unknown") && out.contains("CONNECT_FAILED"), "{out}");
    for args in [vec!["status", "--dx", dead_addr.as_str()], vec!["explain", "recovery", "--dx", dead_addr.as_str()]] {
        let (code, _, err) = cli(&args);
        assert_eq!(code, 8, "{args:?}: exit code 8 = node unreachable");
        assert!(err.starts_with(&format!("aerodb: cannot reach http://{dead_addr}: connection refused")), "{err}");
        assert_eq!(err.matches("cannot reach").count(), 1, "{err}");
    }
}

/// P5-I14: the DX API is read-only: POST/PUT/DELETE/PATCH on every endpoint
/// (and on unknown paths) answer 405 in the envelope, and nothing changes.
#[test]
fn p5_i14_dx_api_is_read_only_every_endpoint_answers_405() {
    let p = pair();
    for node in [&p.primary, &p.replica] {
        let before: Vec<String> = ["/v1/status", "/v1/wal", "/v1/mvcc", "/v1/snapshots"].iter().map(|path| get_raw(dx(node), path).2).collect();
        for path in PATHS.iter().chain(&["/v1/nothing", "/"]) {
            for method in ["POST", "PUT", "DELETE", "PATCH"] {
                let (status, body) = call(method, dx(node), path);
                assert_eq!(status, 405, "{method} {path}: {body}");
                assert_envelope(&body, path);
                assert_eq!(body["data"]["error"]["code"], "METHOD_NOT_ALLOWED");
            }
        }
        let after: Vec<String> = ["/v1/status", "/v1/wal", "/v1/mvcc", "/v1/snapshots"].iter().map(|path| get_raw(dx(node), path).2).collect();
        assert_eq!(before, after, "a refused method changed nothing");
        let (status, body) = call("GET", dx(node), "/v1/nothing");
        assert_eq!(status, 404);
        assert_eq!(body["data"]["error"]["code"], "NO_SUCH_ENDPOINT");
        let (status, body) = call("GET", dx(node), "/v1/explain/read?collection=users");
        assert_eq!(status, 400, "{body}");
        assert_envelope(&body, "bad read");
        let (status, _) = call("GET", dx(node), "/v1/explain/read?collection=users&key=alice&at=minus-one");
        assert_eq!(status, 400);
    }
    assert_eq!(p.primary.replication()["commit_id"], p.last);
    assert_eq!(p.replica.replication()["replica_commit_id"], p.last);
}

fn standalone(dir: &Path, extra: &[&str]) -> Node {
    let mut args: Vec<String> = ["standalone", "--data-dir"].iter().map(|s| s.to_string()).collect();
    args.push(dir.display().to_string());
    args.extend(["--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"].iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn(&args, &[], dir)
}

/// REPL-4 / P5-I15: the same persisted state, restarted twice, renders
/// byte-identical DX answers (status, WAL, MVCC, snapshots, recovery).
#[test]
fn p5_i15_same_persisted_state_renders_byte_identical_dx_responses() {
    let dir = TempDir::new().unwrap();
    let writer = standalone(dir.path(), &["--snapshot-every-bytes", "600"]);
    for i in 0..12u64 {
        let key = format!("k{}", i % 5);
        put(&writer, &key, json!({"i": i, "pad": "x".repeat(40)}));
        if i % 4 == 3 {
            delete(&writer, &key);
        }
    }
    // Wait until the scheduler is idle: a snapshot exists, its status is
    // recorded, retention ran, and less than `every` bytes follow it, so
    // nothing is being written when the node stops.
    wait_for("the snapshot scheduler caught up", || {
        let s = envelope(&writer, "/v1/snapshots")["data"].clone();
        let durable = envelope(&writer, "/v1/status")["data"]["durable_lsn"].as_u64()?;
        let held = s["snapshots"].as_array()?;
        let newest = held.first()?;
        let idle = (1..=2).contains(&held.len()) && newest["lsn"].as_u64()? + 600 > durable && s["scheduler"]["last_snapshot_commit_id"] == newest["commit_id"];
        idle.then_some(())
    });
    assert_eq!(writer.stop(), Some(0));
    let paths = ["/v1/status", "/v1/wal", "/v1/mvcc", "/v1/snapshots", "/v1/explain/recovery"];
    let render = || {
        let node = standalone(dir.path(), &["--snapshot-every-bytes", "0"]);
        let bodies: Vec<String> = paths
            .iter()
            .map(|p| {
                let (status, _, body) = get_raw(dx(&node), p);
                assert_eq!(status, 200, "{p}: {body}");
                body
            })
            .collect();
        assert_eq!(node.stop(), Some(0));
        bodies
    };
    let first = render();
    let second = render();
    for (i, p) in paths.iter().enumerate() {
        assert_eq!(first[i], second[i], "{p} differs between two restarts of the same state");
    }
    let recovery: Value = serde_json::from_str(&first[4]).unwrap();
    assert_eq!(recovery["data"]["conclusion"]["base"]["kind"], "snapshot", "recovery started from the snapshot: {recovery}");
}

/// P5-I14: `--dx-listen off` serves no DX API and changes nothing else:
/// the same writes produce byte-identical WAL files with and without it.
#[test]
fn p5_i14_dx_listen_off_changes_nothing_but_the_dx_api() {
    let (on_dir, off_dir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let on = standalone(on_dir.path(), &[]);
    let mut args: Vec<String> = ["standalone", "--data-dir"].iter().map(|s| s.to_string()).collect();
    args.push(off_dir.path().display().to_string());
    args.extend(["--listen", "127.0.0.1:0", "--dx-listen", "off"].iter().map(|s| s.to_string()));
    let off = spawn(&args, &[], off_dir.path());
    assert!(off.dx.is_none(), "no `listening dx` line with --dx-listen off");
    for node in [&on, &off] {
        workload(node);
        let (status, body) = node.get("users", "alice", "?at=3");
        assert_eq!((status, body["commit_id"].clone()), (200, json!(3)));
    }
    assert_eq!(on.stop(), Some(0));
    assert_eq!(off.stop(), Some(0));
    let wal = |d: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d.join("wal"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(wal(on_dir.path()), wal(off_dir.path()));
}
