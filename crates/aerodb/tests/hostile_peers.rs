#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
#![cfg(feature = "replication")]
//! RES-3 and RES-4 on the replication port, against real `aerodb`
//! processes over real sockets: hostile replicas against a real primary
//! (connection cap, HELLO deadline, oversized frames, invalid HELLO
//! fields, a REPORT claiming more than was sent) and a scripted fake
//! primary against a real replica (an ACCEPT whose cluster id is not one;
//! a record split across frames and a disconnect: the livelock of issue
//! 11 item 3). These are the hostile-input cases 3 to 6 of issue 11.

mod fake_peer;
mod repl_support;

use std::path::Path;
use std::time::Duration;

use aerodb_repl_core::handshake::{HelloRequest, PROTOCOL_VERSION};
use aerodb_repl_core::positions::ProgressTimes;
use aerodb_repl_core::status::{Positions, PrimaryProgress};
use aerodb_repl_core::wire::{frame, FrameType, Message, ServeCode, ServeError};
use aerodb_wal::record::record_identity;
use aerodb_wal::ChainTip;
use serde_json::{json, Value};
use tempfile::TempDir;

use fake_peer::{accept, hello, wal, FakePrimary, Next, Peer, RealWal, DEADLINE};
use repl_support::{assert_wal_prefix, spawn_to, start_primary, start_replica, wait_for, Node};

const ALL_MAX: &str = "18446744073709551615";

/// A primary logging at `info` into `log` (to check what it logs about hostile peers).
fn primary_logging_to(dir: &Path, log: &Path) -> Node {
    let args: Vec<String> =
        ["primary", "--data-dir", &dir.display().to_string(), "--listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dx-listen", "127.0.0.1:0"]
            .iter()
            .map(ToString::to_string)
            .collect();
    spawn_to(&args, &[("RUST_LOG", "info")], dir, Some(log))
}

fn repl_addr(node: &Node) -> String {
    node.repl.clone().expect("a primary has a replication port")
}

/// The `/metrics` text of a node.
fn metrics(node: &Node) -> String {
    match node.dx_get("/metrics") {
        (200, Value::String(text)) => text,
        other => panic!("GET /metrics: {other:?}"),
    }
}

/// One sample of `/metrics`, e.g. `aerodb_repl_rejects_total{code="HELLO_TIMEOUT"}`.
fn metric(node: &Node, sample: &str) -> u64 {
    let text = metrics(node);
    text.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.trim().parse::<u64>().ok()))
        .unwrap_or_else(|| panic!("no sample {sample} in /metrics:\n{text}"))
}

fn rejects(node: &Node, code: &str) -> u64 {
    metric(node, &format!("aerodb_repl_rejects_total{{code=\"{code}\"}}"))
}

/// The primary still serves: a write is acknowledged and its replication view answers.
fn still_serving(primary: &Node, key: &str) {
    let (status, body) = primary.put("c", key, &json!({"still": "serving"}));
    assert_eq!(status, 200, "{body}");
    assert!(primary.replication()["commit_id"].as_u64().is_some());
}

/// The header of a frame announcing a 16 MiB + 1 KiB payload (the largest a
/// replica accepts from a primary; far above what a primary accepts).
fn oversized_header() -> Vec<u8> {
    let mut header = frame::encode(FrameType::Hello, &[]);
    header[4..8].copy_from_slice(&((16u32 << 20) + 1024).to_le_bytes());
    header
}

fn genesis() -> HelloRequest {
    HelloRequest::resume(ChainTip::GENESIS)
}

/// RES-3: the replication port serves at most 64 connections. With 64
/// replicas' sessions open, the 65th connection is answered ERROR
/// `TOO_MANY_CONNECTIONS` and closed; the primary keeps serving writes,
/// counts the refusal in `/metrics`, and once the sessions end a real
/// replica connects and catches up.
#[test]
fn res_3_repl_port_refuses_the_65th_connection_with_too_many_connections() {
    let dir = TempDir::new().unwrap();
    let primary = start_primary(dir.path(), &[], &[]);
    let repl = repl_addr(&primary);
    still_serving(&primary, "before");
    // 64 sessions past their handshake (a whole HELLO each: no deadline cuts them).
    let mut held = Vec::new();
    for i in 0..64 {
        let mut p = Peer::connect(&repl);
        p.send(&hello(&format!("holder-{i}"), genesis())).unwrap();
        assert!(matches!(p.recv(), Message::Accept(_)), "session {i} accepted");
        held.push(p);
    }
    assert_eq!(metric(&primary, "aerodb_repl_connections_open"), 64);
    let mut extra = Peer::connect(&repl);
    let refused = extra.error_then_close().expect("the 65th connection is answered before it is closed");
    assert_eq!(refused, ServeError::too_many_connections(64));
    assert_eq!(refused.code.as_str(), "TOO_MANY_CONNECTIONS");
    assert_eq!(rejects(&primary, "TOO_MANY_CONNECTIONS"), 1);
    assert_eq!(metric(&primary, "aerodb_repl_limit{limit=\"max_connections\"}"), 64);
    still_serving(&primary, "at-the-cap");

    for p in held {
        p.close();
    }
    wait_for("the held sessions to end", || (metric(&primary, "aerodb_repl_connections_open") == 0).then_some(()));
    let rdir = TempDir::new().unwrap();
    let replica = start_replica(rdir.path(), &repl, &[], &[]);
    replica.wait_caught_up(primary.replication()["commit_id"].as_u64().unwrap());
}

/// RES-3: a connection that trickles its HELLO one byte per second is
/// answered ERROR `HELLO_TIMEOUT` and closed at the HELLO deadline, long
/// before its HELLO is complete; the primary keeps serving.
#[test]
fn res_3_hello_trickled_a_byte_per_second_is_cut_at_the_deadline() {
    let dir = TempDir::new().unwrap();
    let primary = start_primary(dir.path(), &[], &[]);
    let mut p = Peer::connect(&repl_addr(&primary));
    let whole = hello("trickler", genesis()).to_frame();
    let mut sent = 0;
    let error = loop {
        assert!(sent < whole.len(), "the whole HELLO arrived a byte per second without being cut");
        if p.send_bytes(&whole[sent..=sent]).is_err() {
            break p.error_then_close();
        }
        sent += 1;
        // The trickler's pace: one byte, then up to a second for the primary's answer.
        match p.next_within(Duration::from_secs(1)) {
            Next::Message(Message::Error(e)) => break Some(e),
            Next::Message(m) => panic!("unexpected {m:?} before the HELLO was complete"),
            Next::Closed => break None,
            Next::Nothing => {}
        }
    };
    assert_eq!(error.map(|e| e.code), Some(ServeCode::HelloTimeout));
    assert!(sent < whole.len(), "cut after {sent} of {} bytes", whole.len());
    assert!(matches!(p.next_within(DEADLINE), Next::Closed), "closed after the ERROR");
    assert_eq!(rejects(&primary, "HELLO_TIMEOUT"), 1);
    assert_eq!(metric(&primary, "aerodb_repl_limit{limit=\"hello_timeout_ms\"}"), 5000);
    still_serving(&primary, "after-trickle");
}

/// RES-3: 30 connections each announcing a 16 MiB + 1 KiB frame are each
/// answered ERROR `FRAME_TOO_LARGE` as soon as the 12-byte header arrived
/// and closed, so the payload they go on to send is never read or
/// buffered (the write fails); the primary keeps serving.
#[test]
fn res_3_connections_announcing_16_mib_frames_are_refused_at_the_header() {
    let dir = TempDir::new().unwrap();
    let primary = start_primary(dir.path(), &[], &[]);
    let repl = repl_addr(&primary);
    let mut peers: Vec<Peer> = (0..30).map(|_| Peer::connect(&repl)).collect();
    for p in &mut peers {
        p.send_bytes(&oversized_header()).unwrap();
    }
    for p in &mut peers {
        assert_eq!(p.error_then_close().map(|e| e.code), Some(ServeCode::FrameTooLarge));
    }
    let payload = vec![0u8; 16 << 20];
    for p in &mut peers {
        p.stream.set_write_timeout(Some(DEADLINE)).unwrap();
        assert!(p.send_bytes(&payload).is_err(), "the primary stopped reading after the header");
    }
    assert_eq!(rejects(&primary, "FRAME_TOO_LARGE"), 30);
    assert_eq!(metric(&primary, "aerodb_repl_limit{limit=\"max_frame_payload_bytes\"}"), 64 * 1024);
    still_serving(&primary, "after-oversized-frames");
}

/// RES-4: HELLO fields are validated before anything stores, logs or shows
/// them. A HELLO carrying a 2 MB replica id is refused at its frame header
/// (`FRAME_TOO_LARGE`); a 60 KiB replica id, an id that is a path, and a
/// name with a line break and a terminal escape are refused with
/// `PROTOCOL_ERROR`, whose detail quotes at most 512 bytes with control
/// characters escaped. None of them is listed in `/v1/replication`, and the
/// primary's log has no long line and no raw control character.
#[test]
fn res_4_hello_with_an_oversized_or_invalid_id_or_name_is_refused_and_never_shown() {
    let dir = TempDir::new().unwrap();
    let logs = TempDir::new().unwrap();
    let log = logs.path().join("primary.log");
    let primary = primary_logging_to(dir.path(), &log);
    let repl = repl_addr(&primary);
    let big = "x".repeat(2 << 20);
    let hello_json = |id: &str, name: Option<&str>| {
        let mut h = json!({"protocol_version": PROTOCOL_VERSION, "cluster_id": null, "replica_id": id, "request": {"kind": "snapshot"}});
        if let Some(n) = name {
            h["name"] = json!(n);
        }
        h.to_string().into_bytes()
    };

    // 2 MB: the frame header alone is refused; the rest is never read.
    let mut p = Peer::connect(&repl);
    let raw = frame::encode(FrameType::Hello, &hello_json(&big, None));
    p.send_bytes(&raw[..frame::FRAME_HEADER_LEN]).unwrap();
    assert_eq!(p.error_then_close().map(|e| e.code), Some(ServeCode::FrameTooLarge));

    for (id, name) in [(&big[..60 * 1024], None), ("../../etc/passwd", None), ("replica-1", Some("bad name\n\u{1b}[31mforged"))] {
        let mut p = Peer::connect(&repl);
        p.send_raw(FrameType::Hello, &hello_json(id, name)).unwrap();
        let e = p.error_then_close().expect("an ERROR before the close");
        assert_eq!(e.code, ServeCode::ProtocolError, "{e:?}");
        assert!(e.detail.len() <= 1024, "the refusal quotes {} bytes", e.detail.len());
        assert!(!e.detail.chars().any(char::is_control), "{:?}", e.detail);
    }
    assert_eq!(rejects(&primary, "PROTOCOL_ERROR"), 3);
    assert_eq!(rejects(&primary, "FRAME_TOO_LARGE"), 1);
    assert_eq!(primary.replication()["replicas"], json!([]), "no refused peer is listed");
    still_serving(&primary, "after-bad-hellos");
    drop(primary);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("replication connection closed"), "the refusals are logged:\n{logged}");
    for line in logged.lines() {
        assert!(line.len() <= 4096, "a log line of {} bytes", line.len());
        assert!(!line.contains("\n\u{1b}[31mforged") && !line.contains("\u{1b}[31mforged"), "the peer's raw escape in: {line:?}");
    }
    assert!(!logged.contains(&big[..4096]), "a replica id logged in full");
}

/// RES-4: a REPORT must stay within what the primary sent on the
/// connection. A valid REPORT is shown in `/v1/replication`; one claiming
/// u64::MAX positions is answered ERROR `PROTOCOL_ERROR`, the connection is
/// closed, and the claimed numbers appear neither in `/v1/replication` nor
/// in `/metrics`.
#[test]
fn res_4_report_claiming_more_than_was_sent_is_refused_and_never_shown() {
    let dir = TempDir::new().unwrap();
    let primary = start_primary(dir.path(), &[], &[]);
    still_serving(&primary, "k");
    let mut p = Peer::connect(&repl_addr(&primary));
    p.send(&hello("reporter", genesis())).unwrap();
    assert!(matches!(p.recv(), Message::Accept(_)));
    p.send(&Message::Report(Positions::default())).unwrap();
    primary.wait_replication("the valid report listed", |v| {
        v["replicas"].as_array().is_some_and(|r| r.iter().any(|r| r["replica_id"] == "reporter" && r["reported"].is_object()))
    });
    let claim = Positions { received_lsn: u64::MAX, validated_lsn: u64::MAX, applied_lsn: u64::MAX, applied_commit_id: u64::MAX };
    p.send(&Message::Report(claim)).unwrap();
    assert_eq!(p.error_then_close().map(|e| e.code), Some(ServeCode::ProtocolError));
    assert_eq!(rejects(&primary, "PROTOCOL_ERROR"), 1);
    let view = primary.replication();
    assert!(!view.to_string().contains(ALL_MAX), "{view}");
    assert!(!metrics(&primary).contains(ALL_MAX));
    still_serving(&primary, "after-report");
}

/// RES-4 (replica side): an ACCEPT whose cluster id is not 32 lowercase hex
/// digits — a path (`../../not-a-cluster`) or 2 MB of text — is refused: the
/// replica closes the connection, shows a bounded `PROTOCOL_ERROR`, and
/// stores nothing (no `replica/replica.json`). A valid ACCEPT afterwards
/// bootstraps it with that primary's cluster id.
#[test]
fn res_4_accept_with_an_invalid_cluster_id_is_refused_and_nothing_is_stored() {
    let fake = FakePrimary::bind();
    let dir = TempDir::new().unwrap();
    let replica = start_replica(dir.path(), &fake.addr, &["--bootstrap", "wal"], &[]);
    let meta = dir.path().join("replica").join("replica.json");
    let huge = "a".repeat(2 << 20);
    for bad in ["../../not-a-cluster", huge.as_str()] {
        let mut conn = fake.accept();
        assert_eq!(conn.recv_hello().request, genesis());
        let payload = json!({"cluster_id": bad, "primary_commit_id": 0, "durable_lsn": 0, "start_lsn": 0}).to_string();
        conn.send_raw(FrameType::Accept, payload.as_bytes()).unwrap();
        assert!(matches!(conn.next_within(DEADLINE), Next::Closed), "the replica drops the connection");
        let v = replica.wait_replication("a protocol error shown", |v| v["blocking_reason"]["code"] == "PROTOCOL_ERROR");
        let detail = v["blocking_reason"]["detail"].as_str().unwrap();
        assert!(detail.len() <= 1024 && !detail.contains(&huge[..1024]), "{} bytes shown", detail.len());
        assert!(!meta.exists(), "nothing stored after an ACCEPT of {} bytes", payload.len());
    }
    let good = "0123456789abcdef0123456789abcdef";
    let mut conn = fake.accept();
    conn.recv_hello();
    conn.send(&accept(good, 0, 0, Some(0))).unwrap();
    wait_for("replica.json written", || std::fs::read_to_string(&meta).ok().filter(|m| m.contains(good)));
}

/// F-N2 / P5-I4 (issue 11 item 3, the split-record livelock): a scripted
/// primary ships three whole records and the first half of the fourth in
/// one WAL frame, then drops the connection. The real replica validates and
/// applies the three, and on reconnecting drops the unvalidated half and
/// states the validated end in a fresh HELLO (not the received end, which
/// looped on PROTOCOL_ERROR before); streamed from there it makes progress
/// after exactly one reconnect, and its WAL is byte for byte the primary's.
#[test]
fn f_n2_p5_i4_record_split_across_frames_then_a_disconnect_resumes_at_the_validated_end() {
    // A real primary's WAL.
    let pdir = TempDir::new().unwrap();
    let primary = start_primary(pdir.path(), &[], &[]);
    for i in 0..8 {
        still_serving(&primary, &format!("k{i}"));
    }
    let cluster = primary.replication()["cluster_id"].as_str().unwrap().to_string();
    assert_eq!(primary.stop(), Some(0));
    let real = RealWal::read(pdir.path());
    let n = real.records.len();
    let end = real.end_of(n);
    let progress = Message::Progress(PrimaryProgress { commit_id: n as u64, durable_lsn: end }, ProgressTimes::default());

    let fake = FakePrimary::bind();
    let rdir = TempDir::new().unwrap();
    let replica = start_replica(rdir.path(), &fake.addr, &["--bootstrap", "wal"], &[]);

    // Session 1: records 1..=3 and half of record 4, then the connection drops.
    let k = 3;
    let half = real.records[k].len() / 2;
    let mut s1 = fake.accept();
    assert_eq!(s1.recv_hello().request, genesis());
    s1.send(&accept(&cluster, n as u64, end, Some(0))).unwrap();
    s1.send(&progress).unwrap();
    let mut bytes = real.records[..k].concat();
    bytes.extend_from_slice(&real.records[k][..half]);
    s1.send(&wal(0, Some(real.header), &bytes)).unwrap();
    let validated = real.end_of(k);
    replica.wait_replication("three records applied and half a record received", |v| {
        v["replica_commit_id"] == k as u64 && v["wal_validated_lsn"] == validated && v["wal_received_lsn"] == validated + half as u64
    });
    s1.close();

    // Session 2: a fresh handshake at the validated end.
    let mut s2 = fake.accept();
    let (commit_id, fingerprint) = record_identity(&real.records[k - 1]);
    assert_eq!(s2.recv_hello().request, HelloRequest::Resume { end_lsn: validated, commit_id, fingerprint }, "resume at the validated end");
    s2.send(&accept(&cluster, n as u64, end, Some(validated))).unwrap();
    s2.send(&progress).unwrap();
    s2.send(&wal(validated, None, &real.records[k..].concat())).unwrap();
    let v = replica.wait_caught_up(n as u64);
    assert_eq!(v["connection"]["reconnects"], 1, "{v}");
    assert!(v["blocking_reason"].is_null(), "{v}");
    assert_eq!(fake.pending(), 0, "no further connection: no PROTOCOL_ERROR loop");
    assert_wal_prefix(pdir.path(), rdir.path());
    let replica_wal = std::fs::read(rdir.path().join("wal").join(aerodb_wal::segment::segment_file_name(0))).unwrap();
    assert_eq!(replica_wal.len() as u64, 64 + end, "the half record is in the replica's WAL once, in place");
    drop(s2);
}
