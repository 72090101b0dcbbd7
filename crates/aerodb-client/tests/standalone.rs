//! The client against a real `aerodb standalone` process over real TCP.
//!
//! The binary is `$AERODB_BIN` when set, else `aerodb` next to this test's
//! target directory (`cargo test --workspace` builds it before any test
//! runs), else it is built once with `cargo build -p aerodb`. This crate
//! cannot depend on the binary crate (the binary depends on it), so it cannot
//! use `CARGO_BIN_EXE_aerodb` or `crates/aerodb/tests/support`; the launcher
//! below is the minimum: start on port 0, read the `listening` lines, kill
//! on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use aerodb_client::{blocking, Client, ClientError, ErrorKind, ExplainTarget, ReadOptions, ReplicationView, ScanOptions, WriteSet};
use serde_json::json;

fn aerodb_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("AERODB_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/standalone-<hash> → target/<profile>/aerodb
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
        let candidate = profile_dir.join("aerodb");
        if !candidate.exists() {
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "aerodb", "--bin", "aerodb"])
                .args(release.then_some("--release"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build -p aerodb");
            assert!(status.success(), "cargo build -p aerodb failed");
        }
        candidate
    })
    .clone()
}

/// A standalone node on port 0 with the DX API on; killed on drop.
struct Standalone {
    child: Child,
    addrs: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Standalone {
    fn start() -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(aerodb_bin())
            .args(["standalone", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0", "--snapshot-every-bytes", "0"])
            .env("RUST_LOG", "warn")
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = BTreeMap::new();
        while !(addrs.contains_key("client") && addrs.contains_key("dx")) {
            let line = lines.next().expect("the node exited before announcing its addresses").unwrap();
            let mut parts = line.split_whitespace();
            if let (Some("listening"), Some(surface), Some(addr)) = (parts.next(), parts.next(), parts.next()) {
                addrs.insert(surface.to_string(), addr.to_string());
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Standalone { child, addrs, _dir: dir }
    }

    fn url(&self, surface: &str) -> String {
        format!("http://{}", self.addrs[surface])
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// MVCC-1: put, read at views, delete and not-found round-trip through the
/// typed client, including keys that need percent-encoding and the dot
/// segments `.` and `..` (issue 11, item 9).
#[test]
fn mvcc_1_blocking_client_round_trips_documents_and_awkward_keys() {
    let node = Standalone::start();
    let c = blocking::Client::new(&node.url("client")).unwrap();
    let first = c.put("users", "alice", &json!({"age": 30})).unwrap();
    let second = c.put_json("users", "alice", r#"{"age":31}"#.into()).unwrap();
    assert_eq!(second.commit_id, first.commit_id + 1);
    let now = c.get("users", "alice", &ReadOptions::default()).unwrap();
    assert_eq!((now.commit_id, now.value().unwrap()), (second.commit_id, json!({"age": 31})));
    let then = c.get("users", "alice", &ReadOptions { at: Some(first.commit_id), ..ReadOptions::default() }).unwrap();
    assert_eq!((then.read_view, then.value().unwrap()), (first.commit_id, json!({"age": 30})));

    for key in ["..", ".", "a b", "é?#%", "x..y"] {
        let r = c.put("odd", key, &json!({"key": key})).unwrap();
        let d = c.get("odd", key, &ReadOptions::default()).unwrap();
        assert_eq!((d.commit_id, d.value().unwrap()), (r.commit_id, json!({"key": key})), "key {key:?}");
    }
    let page = c.scan("odd", &ScanOptions::default()).unwrap();
    let mut keys: Vec<&str> = page.items.iter().map(|i| i.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, [".", "..", "a b", "x..y", "é?#%"]);

    let gone = c.delete("users", "alice").unwrap();
    let e = c.get("users", "alice", &ReadOptions::default()).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(matches!(e, ClientError::Api { status: 404, read_view: Some(r), .. } if r == gone.commit_id), "{e}");
    let e = c.put("users", &"k".repeat(256), &json!(1)).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::BadRequest), "{e}");
}

/// MVCC-2 and MVCC-3: a write set commits under one CommitId; range-read
/// pages pinned with `at` all read that one view.
#[test]
fn mvcc_3_write_sets_and_paged_scans_through_the_async_client() {
    let node = Standalone::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = Client::new(&node.url("client")).unwrap();
        let ws = (0..5).fold(WriteSet::new(), |ws, i| ws.put("s", format!("k{i}"), json!(i)));
        let receipt = c.commit(&ws).await.unwrap();
        c.put("s", "k9", &json!(9)).await.unwrap();
        let mut opts = ScanOptions { limit: Some(2), read: ReadOptions { at: Some(receipt.commit_id), ..ReadOptions::default() }, ..ScanOptions::default() };
        let mut seen = Vec::new();
        loop {
            let page = c.scan("s", &opts).await.unwrap();
            assert_eq!(page.read_view, receipt.commit_id);
            seen.extend(page.items.iter().map(|i| (i.key.clone(), i.commit_id)));
            match page.next {
                Some(next) => opts.start = Some(next),
                None => break,
            }
        }
        let want: Vec<(String, u64)> = (0..5).map(|i| (format!("k{i}"), receipt.commit_id)).collect();
        assert_eq!(seen, want, "k9 is after the pinned view");
    });
}

/// CORE-1: every acknowledged put from 32 concurrent tasks on one pooled
/// client is readable with the CommitId its receipt names.
#[test]
fn core_1_every_acknowledged_concurrent_put_is_readable_with_its_commit_id() {
    let node = Standalone::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = Client::new(&node.url("client")).unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|t| {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in 0..10 {
                        let key = format!("t{t}-{i}");
                        out.push((key.clone(), c.put("load", &key, &json!({"t": t, "i": i})).await.unwrap().commit_id));
                    }
                    out
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
        let mut ids: Vec<u64> = acked.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=320).collect::<Vec<u64>>());
        for (key, id) in acked {
            assert_eq!(c.get("load", &key, &ReadOptions::default()).await.unwrap().commit_id, id);
        }
    });
}

/// RS-3: reads beyond the applied CommitId are refused with a typed
/// READ_REFUSED carrying the rule and the numbers; a short `wait_ms`
/// does not change that.
#[test]
fn rs_3_refused_reads_arrive_as_typed_errors_with_evidence() {
    let node = Standalone::start();
    let c = blocking::Client::new(&node.url("client")).unwrap();
    let r = c.put("c", "k", &json!(1)).unwrap();
    for opts in [
        ReadOptions { min_commit: Some(r.commit_id + 5), ..ReadOptions::default() },
        ReadOptions { min_commit: Some(r.commit_id + 5), wait_ms: Some(50), ..ReadOptions::default() },
        ReadOptions { at: Some(r.commit_id + 5), ..ReadOptions::default() },
    ] {
        let e = c.get("c", "k", &opts).unwrap_err();
        assert_eq!((e.kind(), e.rule_id()), (Some(ErrorKind::ReadRefused), Some("RS-3")), "{e}");
        assert!(matches!(&e, ClientError::Api { status: 503, .. }), "{e}");
        assert!(!e.api_error().unwrap().evidence.is_null(), "{e}");
    }
    assert_eq!(c.get("c", "k", &ReadOptions { min_commit: Some(r.commit_id), wait_ms: Some(10), ..ReadOptions::default() }).unwrap().commit_id, r.commit_id);
}

/// P5-I14: every DX view of a standalone node through the typed DX client;
/// the client API and the DX API refuse each other's requests with typed
/// errors that point at the wrong port.
#[test]
fn p5_i14_dx_client_reads_every_view_and_wrong_ports_are_typed() {
    let node = Standalone::start();
    let c = blocking::Client::new(&node.url("client")).unwrap();
    let receipt = c.put("users", "alice", &json!({"a": 1})).unwrap();
    let dx = blocking::DxClient::new(&node.url("dx")).unwrap();
    let view = dx.replication().unwrap();
    assert_eq!(view.observed_at.commit_id, Some(receipt.commit_id));
    let ReplicationView::Standalone(p) = view.data else { panic!("a standalone node reports role standalone: {:?}", view.data) };
    assert_eq!(p.commit_id, receipt.commit_id);
    for env in [dx.status().unwrap(), dx.wal().unwrap(), dx.mvcc().unwrap(), dx.snapshots().unwrap()] {
        assert_eq!(env.api_version, "v1");
        assert!(env.data.is_object());
    }
    for (target, kind) in [
        (ExplainTarget::Replication, "replication.safety"),
        (ExplainTarget::Recovery, "recovery.process"),
        (ExplainTarget::Read { collection: "users".into(), key: "alice".into(), at: Some(receipt.commit_id) }, "mvcc.read_visibility"),
    ] {
        let e = dx.explain(&target).unwrap();
        assert_eq!(e.data.explanation_type, kind);
        assert!(!e.data.rules_applied.is_empty());
    }
    assert!(dx.metrics().unwrap().lines().any(|l| l.starts_with("aerodb_")));

    let on_dx = blocking::Client::new(&node.url("dx")).unwrap();
    let e = on_dx.put("users", "bob", &json!(1)).unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::WrongEndpoint), "{e}");
    let on_client = blocking::DxClient::new(&node.url("client")).unwrap();
    let e = on_client.status().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::WrongEndpoint), "{e}");
}
