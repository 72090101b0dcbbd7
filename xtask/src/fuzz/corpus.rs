//! `cargo xtask fuzz-corpus`: seed corpora for every fuzz target, taken
//! from a real cluster. It builds the release binary and runs, on 127.0.0.1:
//!
//! 1. a primary with small WAL segments and a short MVCC history (so the
//!    WAL has several segments and GC records), written to through
//!    `aerodb-client` (puts, deletes, multi-op commits, reads and scans);
//! 2. a replica bootstrapping from a snapshot and one from WAL, through a
//!    recording TCP proxy on the replication port;
//! 3. the primary killed and its WAL tail cut, restarted with
//!    `--accept-lost-history` (`history-loss.json`); the WAL replica then
//!    proves the loss at its handshake, so the primary fences itself
//!    (`fence.json`) and the replica halts (`replica/halt.json`);
//! 4. one connection announcing an oversized frame (an ERROR frame back),
//!    and one sending HELLO without the token (an AUTH_REFUSE back).
//!
//! Every node shares one `--repl-token-file`, so the recorded connections
//! carry the protocol version 2 authentication phase (AUTH_BEGIN,
//! AUTH_CHALLENGE, AUTH_PROOF) before each HELLO; the replicas send a
//! `--name`; PROGRESS carries the commit times. A few messages a calm run
//! never sends (a snapshot-resume HELLO and ACCEPT) are added from the
//! node's own encoder. The primary's replica registry (`replicas.json`)
//! and the token file are `meta_files` seeds.
//!
//! The client API traffic also goes through a recording proxy. Seeds are
//! the files the nodes wrote, the frames and HTTP requests the proxies
//! saw, cut to at most [`MAX_SEED`] bytes, in the input conventions of
//! `fuzz/src/lib.rs` (a mode byte first; several files as length-prefixed
//! pieces). The output replaces `fuzz/corpus/<target>/`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aerodb_client::{blocking, ReadOptions, ScanOptions, WriteSet};
use aerodb_repl_core::handshake::{Accept, Hello, HelloRequest, SnapshotResume, PROTOCOL_VERSION};
use aerodb_repl_core::ids::{ClusterId, ReplicaId, ReplicaName};
use aerodb_repl_core::wire::{frame, Frame, FrameDecoder, FrameType, Message, DEFAULT_MAX_PAYLOAD};
use aerodb_wal::record::peek_record_len;
use serde_json::{json, Value};

use crate::bench::node::{build_release, Node};

/// Largest seed written (libFuzzer works best on small inputs).
const MAX_SEED: usize = 8 * 1024;
/// Most seeds per target (the corpus stays small; the fuzzer finds the rest).
const MAX_SEEDS_PER_TARGET: usize = 40;
/// Most seeds of one kind (frame type, HTTP method) in a target.
const MAX_SEEDS_PER_KIND: usize = 3;
/// Most bytes a proxy records per direction and connection.
const MAX_RECORDED: usize = 1 << 20;
/// Deadline for the cluster to reach each state.
const DEADLINE: Duration = Duration::from_secs(60);

/// One proxied connection: what the client sent and what the server sent.
#[derive(Default)]
struct Conn {
    up: Vec<u8>,
    down: Vec<u8>,
}

/// A TCP proxy that records the bytes of every connection.
struct Recorder {
    addr: String,
    upstream: Arc<Mutex<String>>,
    conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn pump(mut from: TcpStream, mut to: TcpStream, conn: &Arc<Mutex<Conn>>, up: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                {
                    let mut c = lock(conn);
                    let rec = if up { &mut c.up } else { &mut c.down };
                    let room = MAX_RECORDED.saturating_sub(rec.len()).min(n);
                    rec.extend_from_slice(&buf[..room]);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Recorder {
    fn start(upstream: &str) -> Result<Recorder, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("proxy bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?.to_string();
        let upstream = Arc::new(Mutex::new(upstream.to_string()));
        let conns: Arc<Mutex<Vec<Arc<Mutex<Conn>>>>> = Arc::default();
        let (up, all) = (upstream.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let target = lock(&up).clone();
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let conn = Arc::new(Mutex::new(Conn::default()));
                lock(&all).push(conn.clone());
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                let up_conn = conn.clone();
                std::thread::spawn(move || pump(client, server, &up_conn, true));
                std::thread::spawn(move || pump(s2, c2, &conn, false));
            }
        });
        Ok(Recorder { addr, upstream, conns })
    }

    fn retarget(&self, upstream: &str) {
        *lock(&self.upstream) = upstream.to_string();
    }

    /// (up, down) bytes of every connection so far.
    fn streams(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        lock(&self.conns).iter().map(|c| lock(c)).map(|c| (c.up.clone(), c.down.clone())).collect()
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > DEADLINE {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn replication(node: &Node) -> Value {
    node.addr("dx")
        .ok()
        .and_then(|dx| blocking::DxClient::new(dx).ok())
        .and_then(|dx| dx.envelope::<Value>("/v1/replication").ok())
        .map_or(Value::Null, |env| env.data)
}

fn e(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// Writes and reads a varied workload; returns the last CommitId.
fn workload(client: &blocking::Client, keys: std::ops::Range<u64>) -> Result<u64, String> {
    let mut last = 0;
    for i in keys {
        let doc = match i % 6 {
            0 => json!({"name": format!("user {i}"), "tags": ["a", "b"], "age": i, "active": true}),
            1 => json!([1, 2.5, -3, 1e10, null, "x\u{e9}\u{1F600}"]),
            2 => json!("a plain string with \"quotes\" and \\ backslash"),
            3 => json!({"nested": {"deeper": {"list": [{"k": i}], "empty": {}}}, "z": 0, "a": 1}),
            4 => json!(null),
            _ => json!(i),
        };
        last = client.put("users", &format!("user-{i:03}"), &doc).map_err(e)?.commit_id;
        if i % 7 == 3 {
            last = client.delete("users", &format!("user-{:03}", i - 1)).map_err(e)?.commit_id;
        }
        if i % 10 == 5 {
            let set = WriteSet::new()
                .put("orders", format!("o-{i}"), json!({"items": [i, i + 1], "total": 9.99}))
                .put("orders", format!("o-{}", i + 100), json!({"note": "second op"}))
                .delete("users", format!("user-{:03}", i - 2));
            last = client.commit(&set).map_err(e)?.commit_id;
        }
    }
    let at = ReadOptions { at: Some(last.saturating_sub(1)), min_commit: Some(last), wait_ms: Some(100) };
    let _ = client.get("users", "user-001", &at);
    let scan = ScanOptions { start: Some("user-002".into()), end: Some("user-020".into()), limit: Some(5), read: ReadOptions::default() };
    let _ = client.scan("users", &scan);
    Ok(last)
}

fn primary_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "primary",
        "--data-dir",
        &dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--repl-listen",
        "127.0.0.1:0",
        "--dx-listen",
        "127.0.0.1:0",
        "--snapshot-every-bytes",
        "0",
        "--wal-segment-bytes",
        "4096",
        "--history-retain-commits",
        "4",
        "--durable-mark-every-bytes",
        "4096",
        "--durable-mark-every-ms",
        "10",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().map(ToString::to_string));
    args
}

fn start(bin: &Path, args: &[String], surfaces: &[&str]) -> Result<Node, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start_with(bin, &args, surfaces)
}

fn start_replica(bin: &Path, dir: &Path, primary: &str, method: &str, token: &Path) -> Result<Node, String> {
    let args: Vec<String> = [
        "replica",
        "--data-dir",
        &dir.display().to_string(),
        "--primary",
        primary,
        "--listen",
        "127.0.0.1:0",
        "--dx-listen",
        "127.0.0.1:0",
        "--bootstrap",
        method,
        "--name",
        &format!("corpus-{method}"),
        "--repl-token-file",
        &token.display().to_string(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    start(bin, &args, &["client", "dx"])
}

/// The seeds of every target, by target name.
#[derive(Default)]
struct Seeds(BTreeMap<&'static str, Vec<(String, Vec<u8>)>>);

impl Seeds {
    /// Adds a seed named `<kind>-<n>` unless the target already has
    /// [`MAX_SEEDS_PER_KIND`] of that kind.
    fn add_kind(&mut self, target: &'static str, kind: &str, bytes: Vec<u8>) {
        let n = self.0.get(target).map_or(0, |l| l.iter().filter(|(name, _)| name.rsplit_once('-').is_some_and(|(k, _)| k == kind)).count());
        if n < MAX_SEEDS_PER_KIND {
            self.add(target, format!("{kind}-{}", n + 1), bytes);
        }
    }

    fn add(&mut self, target: &'static str, name: impl Into<String>, mut bytes: Vec<u8>) {
        bytes.truncate(MAX_SEED);
        let list = self.0.entry(target).or_default();
        if list.len() < MAX_SEEDS_PER_TARGET && !list.iter().any(|(_, b)| *b == bytes) {
            list.push((name.into(), bytes));
        }
    }

    fn write(&self, out: &Path) -> Result<Vec<(String, usize, u64)>, String> {
        let mut summary = Vec::new();
        for (target, seeds) in &self.0 {
            let dir = out.join(target);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|err| format!("remove {}: {err}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir).map_err(|err| format!("create {}: {err}", dir.display()))?;
            let mut bytes = 0;
            for (name, data) in seeds {
                std::fs::write(dir.join(name), data).map_err(|err| format!("write seed {name}: {err}"))?;
                bytes += data.len() as u64;
            }
            summary.push((target.to_string(), seeds.len(), bytes));
        }
        Ok(summary)
    }
}

/// A HELLO as a named replica sends it.
fn corpus_hello(request: HelloRequest) -> Result<Message, String> {
    Ok(Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: None,
        replica_id: ReplicaId::parse("fedcba9876543210fedcba9876543210").map_err(e)?,
        name: Some(ReplicaName::parse("corpus-raw").map_err(e)?),
        request,
    }))
}

fn with_mode(mode: &[u8], body: &[u8]) -> Vec<u8> {
    [mode, body].concat()
}

/// Length-prefixed pieces (fuzz/src/lib.rs).
fn pieces(files: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in files {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("read {}: {err}", path.display()))
}

/// Segment files of a WAL directory, in LSN order.
fn segments(wal: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(wal)
        .map_err(|err| format!("list {}: {err}", wal.display()))?
        .filter_map(Result::ok)
        .map(|d| d.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    names.iter().map(|p| read(p)).collect()
}

/// Every whole frame of a recorded stream.
fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut d = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    d.push(stream);
    let mut out = Vec::new();
    while let Ok(Some(f)) = d.next_frame() {
        out.push(f);
    }
    out
}

/// Request heads and bodies of a recorded HTTP/1 stream (Content-Length bodies only).
fn http_requests(mut stream: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(end) = stream.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&stream[..end]).to_string();
        let len = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse::<usize>().ok()))
            .unwrap_or(0);
        let body_end = (end + 4 + len).min(stream.len());
        out.push((head, stream[end + 4..body_end].to_vec()));
        stream = &stream[body_end..];
    }
    out
}

/// Builds the cluster, runs the scenario and writes the seeds into `out`.
pub(super) fn generate(out: &Path) -> Result<Vec<(String, usize, u64)>, String> {
    let bin = build_release()?;
    let tmp = tempfile::tempdir().map_err(e)?;
    let (p_dir, r1_dir, r2_dir) = (tmp.path().join("primary"), tmp.path().join("replica-snapshot"), tmp.path().join("replica-wal"));

    // One replication token for every node (owner-only permissions, as the node requires).
    let token = tmp.path().join("repl.token");
    std::fs::write(&token, "corpus-token-0123456789abcdef0123456789abcdef\n").map_err(e)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).map_err(e)?;
    }
    let token_arg = token.display().to_string();
    let with_token = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<&str> = vec!["--repl-token-file", &token_arg];
        args.extend_from_slice(extra);
        primary_args(&p_dir, &args)
    };

    eprintln!("fuzz-corpus: primary, two replicas, workload");
    let primary = start(&bin, &with_token(&[]), &["client", "repl", "dx"])?;
    let http = Recorder::start(primary.addr("client")?)?;
    let repl = Recorder::start(primary.addr("repl")?)?;
    let client = blocking::Client::new(&format!("http://{}", http.addr)).map_err(e)?;
    workload(&client, 0..30)?;
    let r1 = start_replica(&bin, &r1_dir, &repl.addr, "snapshot", &token)?;
    let r2 = start_replica(&bin, &r2_dir, &repl.addr, "wal", &token)?;
    let last = workload(&client, 30..60)?;
    for r in [&r1, &r2] {
        wait_for("replicas caught up", || replication(r)["replica_commit_id"].as_u64() >= Some(last))?;
    }

    // A frame header announcing 16 MiB + 1 KiB: the primary answers ERROR and closes.
    let mut raw = TcpStream::connect(&repl.addr).map_err(e)?;
    let mut header = frame::encode(FrameType::Hello, &[]);
    header[4..8].copy_from_slice(&((16u32 << 20) + 1024).to_le_bytes());
    raw.write_all(&header).map_err(e)?;
    raw.set_read_timeout(Some(Duration::from_secs(10))).map_err(e)?;
    let _ = raw.read_to_end(&mut Vec::new());

    // A HELLO without the token: the primary answers AUTH_REFUSE (AUTH_REQUIRED) and closes.
    let mut raw = TcpStream::connect(&repl.addr).map_err(e)?;
    raw.write_all(&corpus_hello(HelloRequest::Snapshot)?.to_frame()).map_err(e)?;
    raw.set_read_timeout(Some(Duration::from_secs(10))).map_err(e)?;
    let _ = raw.read_to_end(&mut Vec::new());

    eprintln!("fuzz-corpus: lose the primary's tail, restart with --accept-lost-history, fence");
    r1.stop()?;
    drop(primary); // SIGKILL
    let mut seg_paths: Vec<PathBuf> = std::fs::read_dir(p_dir.join("wal"))
        .map_err(e)?
        .filter_map(Result::ok)
        .map(|d| d.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    seg_paths.sort();
    let tail = seg_paths.last().ok_or("the primary has no WAL segment")?;
    let len = std::fs::metadata(tail).map_err(e)?.len();
    std::fs::OpenOptions::new().write(true).open(tail).and_then(|f| f.set_len(len.saturating_sub(100).max(64))).map_err(e)?;
    let primary = start(&bin, &with_token(&["--accept-lost-history"]), &["client", "repl", "dx"])?;
    repl.retarget(primary.addr("repl")?);
    wait_for("the WAL replica to halt on the lost history", || replication(&r2)["replica_state"] == "Halted")?;
    wait_for("the primary's fence", || p_dir.join("fence.json").exists())?;
    r2.stop()?;
    primary.stop()?;

    eprintln!("fuzz-corpus: writing seeds");
    let mut seeds = Seeds::default();
    // WAL: records, headers, whole segments, the mark.
    let r2_segments = segments(&r2_dir.join("wal"))?;
    let p_segments = segments(&p_dir.join("wal"))?;
    let mut kinds: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for seg in &r2_segments {
        seeds.add(
            "wal_segment_header",
            format!("header-{}", seeds.0.get("wal_segment_header").map_or(0, Vec::len)),
            with_mode(&[0], &seg[..64.min(seg.len())]),
        );
        let mut at = 64;
        while let Some(Ok(len)) = seg.get(at..).map(peek_record_len) {
            let rec = &seg[at..at + len];
            let label = match (rec[11], u32::from_le_bytes([rec[12], rec[13], rec[14], rec[15]])) {
                (2, _) => "gc".to_string(),
                (_, n) if n > 1 => "multi-op".to_string(),
                (_, _) if rec[56] == 2 => "delete".to_string(),
                _ => format!("put-{}", rec.len() / 64),
            };
            kinds.entry(label).or_insert_with(|| rec.to_vec());
            at += len;
        }
    }
    for (label, rec) in &kinds {
        seeds.add("wal_record", format!("record-{label}"), with_mode(&[0], rec));
    }
    let mark = read(&p_dir.join("wal").join("durable.mark"))?;
    seeds.add("durable_mark", "durable-mark-clean", with_mode(&[0], &mark));
    seeds.add("wal_recovery", "replica-first-segments", with_mode(&[0], &pieces(&refs(&r2_segments[..r2_segments.len().min(2)]))));
    seeds.add("wal_recovery", "replica-last-segments", with_mode(&[0], &pieces(&refs(&r2_segments[r2_segments.len().saturating_sub(2)..]))));
    let mut with_mark = vec![mark.clone()];
    with_mark.extend(p_segments[p_segments.len().saturating_sub(2)..].iter().cloned());
    seeds.add("wal_recovery", "primary-mark-and-last-segments", with_mode(&[2], &pieces(&refs(&with_mark))));

    // Snapshots: the primary's and the installed bootstrap copy.
    let snaps = p_dir.join("snapshots");
    let mut snapshot_dirs: Vec<PathBuf> = std::fs::read_dir(&snaps).map_err(e)?.filter_map(Result::ok).map(|d| d.path()).filter(|p| p.is_dir()).collect();
    snapshot_dirs.push(r1_dir.join("replica").join("snapshot"));
    for (i, dir) in snapshot_dirs.iter().enumerate() {
        let manifest = read(&dir.join("manifest.json"))?;
        let mut files = vec![manifest.clone()];
        let mut data: Vec<PathBuf> =
            std::fs::read_dir(dir).map_err(e)?.filter_map(Result::ok).map(|d| d.path()).filter(|p| p.extension().is_some_and(|x| x == "bin")).collect();
        data.sort();
        for d in data {
            files.push(read(&d)?);
        }
        seeds.add("snapshot", format!("snapshot-{i}"), with_mode(&[0], &pieces(&refs(&files))));
        seeds.add("meta_files", format!("manifest-{i}"), with_mode(&[4], &manifest));
    }

    // Checksummed metadata files.
    for (mode, label, path) in [
        (0u8, "replica-json-snapshot", r1_dir.join("replica").join("replica.json")),
        (0, "replica-json-wal", r2_dir.join("replica").join("replica.json")),
        (1, "halt-json-replica-ahead", r2_dir.join("replica").join("halt.json")),
        (2, "fence-json-replica-ahead", p_dir.join("fence.json")),
        (3, "history-loss-json", p_dir.join("history-loss.json")),
        (5, "replicas-json", p_dir.join("replicas.json")),
        (6, "repl-token-file", token.clone()),
        (7, "identity-json-primary", p_dir.join("identity.json")),
        (7, "identity-json-replica", r1_dir.join("identity.json")),
    ] {
        seeds.add("meta_files", label, with_mode(&[mode], &read(&path)?));
    }

    // Replication frames, as the proxy saw them.
    for (i, (up, down)) in repl.streams().iter().enumerate() {
        if !up.is_empty() {
            seeds.add("repl_frame", format!("conn-{i}-replica-to-primary"), with_mode(&[0, 7], up));
        }
        if !down.is_empty() {
            seeds.add("repl_frame", format!("conn-{i}-primary-to-replica"), with_mode(&[1, 13], down));
        }
        for f in frames(up).into_iter().chain(frames(down)) {
            seeds.add_kind("repl_message", &format!("{:?}", f.kind).to_lowercase(), with_mode(&[f.kind as u8 - 1], &f.payload));
        }
    }

    // Messages of protocol version 2 a calm run does not send, from the node's own encoder.
    let resume = SnapshotResume { manifest_crc32c: 0x1234_5678, manifest_len: 812, file_index: 1, offset: 65_536 };
    let cluster = ClusterId::parse("0123456789abcdef0123456789abcdef").map_err(e)?;
    let accept = Accept {
        cluster_id: cluster,
        primary_commit_id: 60,
        durable_lsn: 9_000,
        start_lsn: None,
        snapshot_resume: Some(resume),
        client_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 7_700))),
    };
    for m in [corpus_hello(HelloRequest::SnapshotResume(resume))?, Message::Accept(accept)] {
        let (kind, payload) = m.encode();
        seeds.add_kind("repl_message", &format!("{kind:?}-snapshot-resume").to_lowercase(), with_mode(&[kind as u8 - 1], &payload));
    }

    // Client API requests, as the proxy saw them.
    for (i, (up, _)) in http.streams().iter().enumerate() {
        seeds.add("http_framer", format!("conn-{i}-small-limits"), with_mode(&[0, 3], up));
        seeds.add("http_framer", format!("conn-{i}-default-limits"), with_mode(&[1, 11], up));
        for (head, body) in http_requests(up) {
            let mut words = head.split_whitespace();
            let (method, target) = (words.next().unwrap_or_default().to_lowercase(), words.next().unwrap_or_default().to_string());
            if !body.is_empty() {
                seeds.add_kind("client_commit", if method == "post" { "commit" } else { "put" }, with_mode(&[0], &body));
            }
            let kind = if target.contains('?') { format!("{method}-query") } else { method };
            seeds.add_kind("client_query", &kind, target.into_bytes());
        }
    }
    seeds.write(out)
}
