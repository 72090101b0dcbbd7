#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Node lifecycle against the real binary: role immutability (REPL-1),
//! clean shutdown on SIGINT with every acknowledged write kept (CORE-1),
//! and refusals that name their rule in one line.

mod support;

use serde_json::json;
use support::{start, start_node, try_start, NodeOptions};

/// Initialises `dir` as `first` (one write, clean stop), then starts it as
/// `second`: the start must be refused with a non-zero exit and a one-line
/// reason citing REPL-1, and the directory must still work as `first`.
fn assert_role_mismatch_refused(first: &str, second: &str) {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(first, dir.path());
    assert_eq!(node.put_doc("c", "k", &json!({"role": first})), 1);
    node.stop_clean();
    let identity_before = std::fs::read(dir.path().join("identity.json")).unwrap();

    let failure = match try_start(NodeOptions::new(second, dir.path())) {
        Ok(_) => panic!("a {first} data directory must refuse to start as {second} (REPL-1)"),
        Err(f) => f,
    };
    let code = failure.status.and_then(|s| s.code());
    assert!(code.is_some_and(|c| c != 0), "non-zero exit, got {:?}", failure.status);
    assert!(failure.stdout.iter().all(|l| !l.starts_with("listening client")), "a refused node serves nothing");
    let reason: Vec<&str> = failure.stderr.lines().filter(|l| l.contains("refusing to start")).collect();
    assert_eq!(reason.len(), 1, "exactly one reason line in stderr:\n{}", failure.stderr);
    assert!(reason[0].contains("REPL-1"), "the reason cites REPL-1: {}", reason[0]);
    assert!(reason[0].contains(first) && reason[0].contains(second), "the reason names both roles: {}", reason[0]);
    assert_eq!(std::fs::read(dir.path().join("identity.json")).unwrap(), identity_before, "the recorded role is unchanged");

    // Still usable in its own role, data intact.
    let node = start_node(first, dir.path());
    assert_eq!(node.get("/v1/docs/c/k"), (200, json!({"read_view": 1, "commit_id": 1, "doc": {"role": first}})));
    node.stop_clean();
}

/// REPL-1: a data directory initialised as standalone refuses to start as
/// primary (non-zero exit, one-line reason citing REPL-1).
#[test]
fn repl_1_role_mismatch_refuses_start_standalone_as_primary() {
    assert_role_mismatch_refused("standalone", "primary");
}

/// REPL-1: a data directory initialised as primary refuses to start as
/// standalone.
#[test]
fn repl_1_role_mismatch_refuses_start_primary_as_standalone() {
    assert_role_mismatch_refused("primary", "standalone");
}

/// REPL-1: two processes never own one data directory (the second would be
/// a second writer): the second start is refused while the first serves.
#[test]
fn repl_1_second_process_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    node.put_doc("c", "k", &json!(1));
    let failure = match try_start(NodeOptions::new("standalone", dir.path())) {
        Ok(_) => panic!("second process on one data directory must be refused"),
        Err(f) => f,
    };
    assert!(failure.status.and_then(|s| s.code()).is_some_and(|c| c != 0));
    assert!(failure.stderr.lines().any(|l| l.contains("refusing to start") && l.contains("locked")), "{}", failure.stderr);
    assert_eq!(node.put_doc("c", "k2", &json!(2)), 2, "the first node keeps serving");
    node.stop_clean();
}

/// CORE-1: SIGINT shuts the node down cleanly (exit code 0); after a
/// restart every acknowledged write is present with its CommitId and
/// CommitIds continue at C+1. Repeated twice, for standalone and primary.
#[test]
fn core_1_clean_shutdown_on_sigint_exits_0_and_keeps_every_write() {
    for role in ["standalone", "primary"] {
        let dir = tempfile::tempdir().unwrap();
        let options = NodeOptions::new(role, dir.path());
        let mut acked = Vec::new();
        for round in 0..2u64 {
            let node = start(options.clone());
            for i in 0..20u64 {
                let doc = json!({"round": round, "i": i, "role": role});
                let key = format!("r{round}-k{i}");
                let cid = node.put_doc("docs", &key, &doc);
                assert_eq!(cid, round * 20 + i + 1, "CommitIds continue at C+1 after a restart");
                acked.push((key, doc, cid));
            }
            node.stop_clean();
        }
        let node = start(options);
        assert_eq!(node.commit_id(), 40);
        for (key, doc, cid) in &acked {
            assert_eq!(node.get(&format!("/v1/docs/docs/{key}?at={cid}")), (200, json!({"read_view": cid, "commit_id": cid, "doc": doc})));
        }
        assert_eq!(node.put_doc("docs", "last", &json!(null)), 41);
        node.stop_clean();
    }
}

/// INTERFACE "Binary": bad flags are refused with a non-zero exit before
/// serving anything.
#[test]
fn bad_flags_are_refused_with_a_non_zero_exit_and_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let failure = match try_start(NodeOptions::new("standalone", &data).flag("--listen", "not-an-address")) {
        Ok(_) => panic!("an unparsable listen address must be refused"),
        Err(f) => f,
    };
    assert_eq!(failure.status.and_then(|s| s.code()), Some(2), "bad arguments: {}", failure.stderr);
    assert!(failure.stderr.lines().any(|l| l.contains("--listen") && l.contains("HOST:PORT")), "{}", failure.stderr);
    assert!(!data.exists(), "refused before the data directory is written");
    let (code, _, stderr) = support::run_tool(&["standalone", "--data-dir", data.to_str().unwrap(), "--snapshot-every-bytes", "lots"]);
    assert!(code.is_some_and(|c| c != 0), "{stderr}");
}
