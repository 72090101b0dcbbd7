#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Replication is removable (P5-I16) and CommitIds on replicas are the
//! primary's facts (P5-I6).

use std::process::Command;

#[cfg(feature = "replication")]
mod repl_support;

fn wal_dump(dir: &std::path::Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_aerodb")).args(["wal-dump", "--data-dir"]).arg(dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// P5-I6 / REPL-2: a replica's records carry exactly the primary's
/// CommitIds, LSNs and fingerprints: `wal-dump` of both is line-identical.
#[cfg(feature = "replication")]
#[test]
fn p5_i6_replica_commit_ids_are_the_primarys() {
    use repl_support::*;
    use serde_json::json;
    let root = tempfile::tempdir().unwrap();
    let primary = start_primary(&root.path().join("p"), &[], &[]);
    for i in 0..40 {
        let (status, _) = primary.put("c", &format!("k{i}"), &json!({"i": i}));
        assert_eq!(status, 200);
    }
    let replica = start_replica(&root.path().join("r"), primary.repl.as_ref().unwrap(), &["--bootstrap", "wal"], &[]);
    replica.wait_caught_up(40);
    let replica_dir = replica.kill();
    let primary_dir = primary.kill();
    let (p, r) = (wal_dump(&primary_dir), wal_dump(&replica_dir));
    assert_eq!(p.len(), 40);
    assert_eq!(p, r);
}

/// P5-I16: a standalone node has no replication port and behaves like a
/// primary for clients (writes, reads, CommitIds from 1).
#[test]
fn p5_i16_standalone_has_no_replication_port() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aerodb"))
        .args(["standalone", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--dx-listen", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening client "), "{line}");
    let addr = line.trim().trim_start_matches("listening client ").to_string();
    let body = ureq::put(&format!("http://{addr}/v1/docs/c/k")).send_string("{\"a\":1}").unwrap().into_string().unwrap();
    assert_eq!(body, "{\"commit_id\":1}");
    let _ = child.kill();
    let _ = child.wait();
    assert!(!String::from_utf8_lossy(&std::fs::read(dir.path().join("identity.json")).unwrap()).contains("replica"));
}

/// P5-I16: built without the `replication` feature the binary has no
/// replica mode and says so, with a non-zero exit.
#[cfg(not(feature = "replication"))]
#[test]
fn p5_i16_build_without_replication_has_no_replica_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aerodb")).args(["replica", "--data-dir"]).arg(dir.path()).args(["--primary", "127.0.0.1:1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("P5-I16"));
}
