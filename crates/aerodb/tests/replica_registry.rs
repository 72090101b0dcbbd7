#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! The primary's view of its replicas over real TCP with real `aerodb`
//! processes: the persisted registry (names, last-known positions, last
//! seen; across disconnects and primary restarts), bounded WAL retention
//! with its per-replica forecast and `WAL_UNAVAILABLE` at the cap (RES-2),
//! lag in seconds live vs last-known (REPL-10: observability only), and a
//! protocol-1 replica refused by a protocol-2 primary.

mod repl_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;

use aerodb_repl_core::handshake::{Hello, HelloRequest, RefusalCode};
use aerodb_repl_core::ids::ReplicaId;
use aerodb_repl_core::wire::{FrameDecoder, Message, DEFAULT_MAX_PAYLOAD};
use aerodb_wal::GENESIS_FINGERPRINT;
use repl_support::{http, spawn, start_primary, start_replica, wait_for, Node};

fn put_many(primary: &Node, from: u64, n: u64, pad: usize) -> u64 {
    let mut last = 0;
    for i in from..from + n {
        let (status, body) = primary.put("docs", &format!("k{}", i % 17), &json!({"i": i, "pad": "p".repeat(pad)}));
        assert_eq!(status, 200, "{body}");
        last = body["commit_id"].as_u64().unwrap();
    }
    last
}

/// The primary's registry entry named `name`.
fn entry(primary: &Node, name: &str) -> Option<Value> {
    primary.replication()["replicas"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned()
}

fn wait_entry(primary: &Node, what: &str, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, || entry(primary, name).filter(|e| pred(e)))
}

fn metrics(node: &Node) -> String {
    let dx = node.dx.as_ref().unwrap();
    let resp = ureq::get(&format!("http://{dx}/metrics")).call().unwrap();
    resp.into_string().unwrap()
}

/// RES-2, REPL-10: a named replica streams (the primary shows its name,
/// address, live lag and a `reserved` forecast), disconnects (the primary
/// logs it, keeps listing it `disconnected` with its last-known positions
/// and last-known lag), and while it is away the forecast counts down byte
/// for byte as the primary writes. `/metrics` labels it by name, never by
/// its ephemeral port.
#[test]
fn res_2_forecast_counts_down_for_a_disconnected_named_replica_over_tcp() {
    let (pdir, rdir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let keep = 1_000_000u64;
    let primary = start_primary(pdir.path(), &["--wal-keep-bytes", &keep.to_string(), "--snapshot-every-bytes", "0"], &[]);
    let c = put_many(&primary, 0, 20, 50);
    let replica = start_replica(rdir.path(), primary.repl.as_ref().unwrap(), &["--name", "east", "--bootstrap", "wal"], &[]);
    let view = replica.wait_caught_up(c);
    assert_eq!(view["name"], "east");
    assert_eq!(view["lag"]["as_of"], "live");
    assert_eq!(view["lag"]["seconds"], 0.0, "caught up: no lag in time either");
    let e = wait_entry(&primary, "east streaming and reported", "east", |e| e["state"] == "streaming" && e["reported"]["applied_commit_id"] == c);
    assert_eq!(e["replica_id"], view["replica_id"]);
    assert!(e["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!((e["lag"]["commits"].as_u64(), e["lag"]["as_of"].as_str()), (Some(0), Some("live")));
    assert_eq!(e["lag"]["seconds"], 0.0);
    assert_eq!(e["retention"]["state"], "reserved");
    assert_eq!(e["retention"]["wal_keep_bytes"], keep);
    let durable = primary.replication()["durable_lsn"].as_u64().unwrap();
    let applied_lsn = e["reported"]["applied_lsn"].as_u64().unwrap();
    assert_eq!(e["retention"]["bytes_remaining"].as_u64(), Some(applied_lsn + keep - durable));
    let text = metrics(&primary);
    let id = view["replica_id"].as_str().unwrap();
    assert!(text.contains(&format!("aerodb_replica_lag_commits{{replica_id=\"{id}\",peer=\"east\"}} 0")), "{text}");
    assert!(text.contains(&format!("aerodb_replica_retention_state{{replica_id=\"{id}\",peer=\"east\",state=\"reserved\"}} 1")), "{text}");
    assert!(!text.contains("peer=\"127.0.0.1"), "no ephemeral port in a label: {text}");

    assert_eq!(replica.stop(), Some(0));
    let before = wait_entry(&primary, "east disconnected", "east", |e| e["state"] == "disconnected");
    assert_eq!(before["last_disconnect_reason"], "PEER_CLOSED");
    assert_eq!(before["lag"]["as_of"], "last_known");
    assert_eq!(before["reported"]["applied_commit_id"], c, "last-known positions are kept");
    let remaining = before["retention"]["bytes_remaining"].as_u64().unwrap();
    let durable_before = primary.replication()["durable_lsn"].as_u64().unwrap();
    let c2 = put_many(&primary, 100, 30, 80);
    let after = entry(&primary, "east").unwrap();
    let written = primary.replication()["durable_lsn"].as_u64().unwrap() - durable_before;
    assert!(written > 0);
    assert_eq!(after["retention"]["bytes_remaining"].as_u64(), Some(remaining - written), "the forecast counts down byte for byte");
    assert!(after["retention"]["commits_remaining"].as_u64().unwrap() > 0);
    assert_eq!(after["lag"]["commits"].as_u64(), Some(c2 - c), "lag grows against the last-known position");
    assert_eq!(after["state"], "disconnected");
    let text = metrics(&primary);
    assert!(text.contains(&format!("aerodb_replica_connected{{replica_id=\"{id}\",peer=\"east\"}} 0")), "{text}");
    assert!(text.contains("aerodb_replicas_known 1"), "{text}");
}

/// RES-2: with `--wal-keep-bytes` small, a replica that stays away while
/// the primary writes far beyond the cap is shown `beyond_cap`, then
/// `lost` once a snapshot's retention pass removes its WAL; when it comes
/// back it is refused `WAL_UNAVAILABLE` (rule RES-2, not a halt) with the
/// numbers: its resume point, the oldest LSN and CommitId the primary still
/// holds, and the cap.
#[test]
fn res_2_wal_unavailable_at_the_cap_with_the_numbers() {
    let (pdir, rdir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let keep = 40_000u64;
    let flags = ["--wal-keep-bytes", "40000", "--wal-segment-bytes", "8192", "--snapshot-every-bytes", "16384"];
    let primary = start_primary(pdir.path(), &flags, &[]);
    let c = put_many(&primary, 0, 10, 50);
    let replica = start_replica(rdir.path(), primary.repl.as_ref().unwrap(), &["--name", "west", "--bootstrap", "wal"], &[]);
    replica.wait_caught_up(c);
    wait_entry(&primary, "west reported", "west", |e| e["reported"]["applied_commit_id"] == c);
    let resume_lsn = replica.replication()["wal_applied_lsn"].as_u64().unwrap();
    assert_eq!(replica.stop(), Some(0));
    wait_entry(&primary, "west disconnected", "west", |e| e["state"] == "disconnected");
    let mut next = 1_000;
    let lost = wait_for("west's WAL removed by retention", || {
        next = put_many(&primary, next, 40, 200) + 1;
        entry(&primary, "west").filter(|e| e["retention"]["state"] == "lost")
    });
    assert_eq!(lost["retention"]["bytes_remaining"], 0);
    assert_eq!(lost["retention"]["needed_lsn"].as_u64(), Some(resume_lsn));
    let w = primary.replication()["wal_retention"].clone();
    assert_eq!(w["mode"], "all");
    assert_eq!(w["wal_keep_bytes"], keep);
    let oldest_lsn = w["oldest_retained_lsn"].as_u64().unwrap();
    assert!(oldest_lsn > resume_lsn, "{w}");

    let replica = start_replica(rdir.path(), primary.repl.as_ref().unwrap(), &["--name", "west", "--bootstrap", "wal"], &[]);
    let v = replica.wait_replication("WAL_UNAVAILABLE", |v| v["blocking_reason"]["code"] == "WAL_UNAVAILABLE");
    assert_eq!(v["replica_state"], "Disconnected", "WAL_UNAVAILABLE never halts");
    let b = &v["blocking_reason"];
    assert_eq!(b["rule_id"], "RES-2");
    assert_eq!((b["lsn"].as_u64(), b["commit_id"].as_u64()), (Some(resume_lsn), Some(c)), "the replica's resume point");
    let detail = b["detail"].as_str().unwrap();
    for needle in [format!("from LSN {oldest_lsn}"), format!("from LSN {resume_lsn}"), format!("at most {keep} bytes"), "--wal-keep-bytes".to_string()] {
        assert!(detail.contains(&needle), "{needle:?} missing from {detail}");
    }
    let (_, explain) = replica.dx_get("/v1/explain/replication");
    let text = explain.to_string();
    assert!(text.contains("\"wal_keep_bytes\":40000") && text.contains(&format!("\"oldest_retained_lsn\":{oldest_lsn}")), "{text}");
    let (status, _) = primary.put("docs", "after", &json!({"still": "writable"}));
    assert_eq!(status, 200, "a lost replica never affects the primary");
}

/// RES-2: the registry survives a primary restart: a replica that is away
/// is still listed with its name, id, last-known positions and connection
/// count; it reconnects as the same entry; `--forget-replica` removes it.
#[test]
fn res_2_registry_survives_a_primary_restart_and_forget_replica_removes_it() {
    let (pdir, rdir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let primary = start_primary(pdir.path(), &["--wal-retention", "after-oldest-snapshot"], &[]);
    let c = put_many(&primary, 0, 5, 10);
    let replica = start_replica(rdir.path(), primary.repl.as_ref().unwrap(), &["--name", "north"], &[]);
    replica.wait_caught_up(c);
    let first = wait_entry(&primary, "north reported", "north", |e| e["reported"]["applied_commit_id"] == c);
    assert_eq!(replica.stop(), Some(0));
    wait_entry(&primary, "north disconnected", "north", |e| e["state"] == "disconnected");
    assert_eq!(primary.stop(), Some(0));
    assert!(pdir.path().join("replicas.json").exists());

    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> =
            ["primary", "--data-dir", pdir.path().to_str().unwrap(), "--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let primary = spawn(&args(&["--wal-retention", "after-oldest-snapshot"]), &[], pdir.path());
    let e = entry(&primary, "north").expect("the registry survives the restart");
    assert_eq!(e["state"], "disconnected");
    assert_eq!(e["replica_id"], first["replica_id"]);
    assert_eq!(e["reported"], first["reported"]);
    let connections = first["connections"].as_u64().unwrap();
    assert_eq!(connections, 2, "the snapshot bootstrap, then streaming from its cut");
    assert_eq!(e["connections"], connections);
    assert_eq!(e["lag"]["as_of"], "last_known");
    assert_eq!(primary.replication()["registry"]["loaded_at_startup"], 1);
    let replica = start_replica(rdir.path(), primary.repl.as_ref().unwrap(), &["--name", "north"], &[]);
    replica.wait_caught_up(c);
    let back = wait_entry(&primary, "north back", "north", |e| e["state"] == "streaming" && e["connections"] == connections + 1);
    assert_eq!(back["replica_id"], first["replica_id"]);
    assert_eq!(replica.stop(), Some(0));
    wait_entry(&primary, "north disconnected again", "north", |e| e["state"] == "disconnected");
    assert_eq!(primary.stop(), Some(0));

    let primary = spawn(&args(&["--forget-replica", "north"]), &[], pdir.path());
    assert!(primary.replication()["replicas"].as_array().unwrap().is_empty());
    let reg = primary.replication()["registry"].clone();
    assert_eq!(reg["forgotten_total"], 1);
    assert_eq!(reg["forgotten_at_startup"].as_array().unwrap().len(), 1);
}

/// REPL-10: lag figures are live while streaming and marked last-known
/// when the primary is gone (issue 14: never a silent `lag 0`), on the
/// replica's `/v1/replication` and `/metrics`.
#[test]
fn repl_10_lag_is_live_while_streaming_and_last_known_when_the_primary_is_down() {
    let (pdir, rdir) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let primary = start_primary(pdir.path(), &[], &[]);
    let c = put_many(&primary, 0, 5, 10);
    let replica = start_replica(rdir.path(), primary.repl.as_ref().unwrap(), &["--name", "south"], &[]);
    let v = replica.wait_caught_up(c);
    assert_eq!((v["lag"]["commits"].as_u64(), v["lag"]["as_of"].as_str()), (Some(0), Some("live")));
    assert!(v["lag"]["seconds"].is_number());
    assert!(metrics(&replica).contains("aerodb_replication_lag_live 1"));
    let reconnects = v["connection"]["reconnects"].as_u64().unwrap();
    primary.kill();
    let v = replica.wait_disconnected_settled(reconnects);
    assert_eq!(v["lag"]["as_of"], "last_known", "{v}");
    assert_eq!(v["lag"]["commits"], 0, "the last-known numbers are kept, and marked");
    let (_, whole) = replica.dx_get("/v1/replication");
    assert!(whole["notes"].to_string().contains("lag is last-known"), "a note says so: {whole}");
    let text = metrics(&replica);
    assert!(text.contains("aerodb_replication_lag_live 0"), "{text}");
}

/// REPL-1: a replica speaking protocol 1 is refused by a protocol-2 primary
/// with the stable code `PROTOCOL_VERSION` and the version the primary
/// speaks (docs/protocol.md, "Versions"); it is never served.
#[test]
fn repl_1_protocol_1_replica_is_refused_with_protocol_version() {
    let pdir = TempDir::new().unwrap();
    let primary = start_primary(pdir.path(), &[], &[]);
    let mut s = TcpStream::connect(primary.repl.as_ref().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let hello = Hello {
        protocol_version: 1,
        cluster_id: None,
        replica_id: ReplicaId::parse("v1-replica").unwrap(),
        name: None,
        request: HelloRequest::Resume { end_lsn: 0, commit_id: 0, fingerprint: GENESIS_FINGERPRINT },
    };
    s.write_all(&Message::Hello(hello).to_frame()).unwrap();
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    let mut buf = [0u8; 4096];
    let frame = loop {
        if let Some(f) = decoder.next_frame().unwrap() {
            break f;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed without an answer");
        decoder.push(&buf[..n]);
    };
    let Message::Refuse(r) = Message::decode(&frame).unwrap() else { panic!("expected REFUSE") };
    assert_eq!(r.code(), RefusalCode::PROTOCOL_VERSION);
    let evidence = serde_json::to_value(&r).unwrap();
    assert_eq!(evidence["primary_protocol_version"], 2, "{evidence}");
    assert!(primary.replication()["replicas"].as_array().unwrap().is_empty(), "a refused replica is not remembered");
    let (status, _) = http("GET", &format!("http://{}/v1/status", primary.dx.as_ref().unwrap()), None);
    assert_eq!(status, 200);
}

/// RES-4: a `--name` outside its documented format is refused with
/// `BAD_FLAGS` (exit 2, bad arguments) before anything touches the data
/// directory.
#[test]
fn res_4_bad_replica_name_is_refused_before_the_data_directory_is_touched() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("replica");
    for bad in ["two words", "x".repeat(65).as_str(), "\u{1b}[31mred", "../up"] {
        let out = std::process::Command::new(repl_support::bin())
            .args(["replica", "--data-dir", data.to_str().unwrap(), "--primary", "127.0.0.1:1", "--name", bad, "--listen", "127.0.0.1:0", "--dx-listen", "off"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Bad arguments exit 2 (the CLI's exit-code table, `--help`).
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("BAD_FLAGS") && stderr.contains("--name"), "{bad:?}: {stderr}");
        assert!(!stderr.contains("\u{1b}[31mred"), "the bad value is shown escaped: {stderr}");
        assert!(!data.exists(), "nothing was created for {bad:?}");
    }
}
