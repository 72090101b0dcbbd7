//! A primary and a replica in one process, assembled from the library
//! crates only (no code from the `aerodb` binary):
//!
//! 1. the primary: a WAL from genesis, recovery into an MVCC store, the
//!    group committer ([`PrimaryEngine`]) and a snapshot scheduler (the
//!    snapshot source a snapshot bootstrap would use); a few commits;
//! 2. its replication port: [`PrimaryServer::serve`] on `127.0.0.1:0`;
//! 3. a replica in another directory: [`Replica::open`] over plain TCP,
//!    bootstrapping from the primary's WAL (genesis);
//! 4. waits (polling with a deadline) until the replica reports it applied
//!    the primary's CommitId, then reads a document through the replica's
//!    read-safety gate ([`ReplicaHandle::open_read`]); commits once more
//!    while the replica streams and reads that too; prints the replica's
//!    status;
//! 5. stops both cleanly.
//!
//! What the `aerodb` binary adds around the same pieces — identity.json,
//! the data directory lock, the durable mark (CORE-5), the fence
//! (REPL-11), the persisted replica registry, security and the HTTP APIs —
//! is left out; see `crates/aerodb/src/node.rs` and `replica_node.rs`.
//!
//! Run: `cargo run -p aerodb-repl-net --example in_process_replica`

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aerodb_mvcc::{ClientOp, PrimaryEngine, WriteLimits};
use aerodb_repl_core::halt::Reason;
use aerodb_repl_core::ids::{ClusterId, ReplicaId};
use aerodb_repl_core::metadata::BootstrapMethod;
use aerodb_repl_core::primary_io::PrimaryWal;
use aerodb_repl_core::reads::ReplicaHandle;
use aerodb_repl_net::primary::PrimarySecurity;
use aerodb_repl_net::transport::TcpTransport;
use aerodb_repl_net::{PrimaryContext, PrimaryServer, PrimaryServerConfig, Replica, ReplicaOptions, ReplicaRegistry};
use aerodb_snapshot::{recover_primary, SnapshotPolicy, SnapshotScheduler};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::writer::DEFAULT_SEGMENT_TARGET_BYTES;
use aerodb_wal::{ChainTip, CommitId};
use bytes::Bytes;

/// Any 32 lower-case hex characters; a real node keeps its own in identity.json.
const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

/// How long the replica may take to catch up before the example gives up.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(30);

fn put(key: &str, doc: &str) -> ClientOp {
    ClientOp::Put { collection: "users".into(), key: key.into(), doc: Bytes::copy_from_slice(doc.as_bytes()) }
}

/// Polls the replica's published C_replica until it reaches `target`.
fn wait_applied(handle: &ReplicaHandle, target: CommitId) -> Result<(), String> {
    let deadline = Instant::now() + CATCH_UP_DEADLINE;
    loop {
        let applied = handle.shared.applied_commit_id();
        if applied >= target {
            return Ok(());
        }
        if let Some(halt) = handle.shared.with(|o| o.halt().map(|h| h.view().detail)) {
            return Err(format!("the replica halted: {halt}"));
        }
        if Instant::now() >= deadline {
            return Err(format!("the replica applied CommitId {applied}, not {target}, within {CATCH_UP_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads `users/key` on the replica through its read-safety gate, asking
/// for a view at least as new as `min_commit`, and prints it.
fn read_through_gate(handle: &ReplicaHandle, min_commit: CommitId, key: &str) -> Result<(), String> {
    let view = handle.open_read(None, Some(min_commit)).map_err(|r| match r.decision.first_failure() {
        Some(rule) => format!("read refused: {} does not hold: {}", rule.rule_id, rule.description),
        None => "read refused".to_string(),
    })?;
    match view.get(b"users", key.as_bytes()).and_then(|v| v.doc.map(|doc| (doc, v.commit_id))) {
        Some((doc, commit_id)) => {
            println!("replica: users/{key} = {} (CommitId {commit_id}, read at R={})", String::from_utf8_lossy(&doc), view.read_upper_bound());
            Ok(())
        }
        None => Err(format!("users/{key} is missing on the replica")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let disk: Arc<dyn Disk> = OsDisk::shared();

    // (1) The primary's data directory: a genesis WAL segment, then the
    // recovery a restarting node runs (newest valid snapshot, none here,
    // plus the WAL after it).
    let primary_dir = tempfile::tempdir()?;
    let (wal_dir, snapshots_dir) = (primary_dir.path().join("wal"), primary_dir.path().join("snapshots"));
    SegmentAppender::create(disk.clone(), &wal_dir, ChainTip::GENESIS.segment_header())?;
    let (store, appender, _report) = recover_primary(disk.clone(), &snapshots_dir, &wal_dir, CLUSTER)?;
    let engine = PrimaryEngine::start(Arc::new(store), appender, WriteLimits::default(), DEFAULT_SEGMENT_TARGET_BYTES)?;
    // Snapshots only on request (a snapshot bootstrap asks for one).
    let snapshots = Arc::new(SnapshotScheduler::start(disk.clone(), snapshots_dir, &engine, CLUSTER, SnapshotPolicy::new(0, false), &[])?);

    engine.submit(vec![put("alice", r#"{"name":"Alice","v":1}"#)])?.wait()?;
    engine.submit(vec![put("bob", r#"{"name":"Bob","v":1}"#)])?.wait()?;
    let last = engine.submit(vec![put("alice", r#"{"name":"Alice","v":2}"#)])?.wait()?;
    let target = last.position.commit_id;
    println!("primary: committed up to CommitId {target}");

    // (2) The replication port: the WAL it ships (read through the
    // segment list, bounded by the durable point), the snapshot source and
    // an in-memory registry of replicas.
    let cluster_id = ClusterId::parse(CLUSTER)?;
    let wal = PrimaryWal::new(cluster_id.clone(), disk.clone(), engine.segments().clone(), engine.durable().clone());
    let ctx = PrimaryContext {
        cluster_id,
        wal,
        disk: disk.clone(),
        snapshots: snapshots.clone(),
        fence: None,
        registry: Arc::new(ReplicaRegistry::default()),
        security: PrimarySecurity::default(),
    };
    let mut server = PrimaryServer::serve(TcpListener::bind("127.0.0.1:0")?, ctx, PrimaryServerConfig::default())?;
    println!("primary: serving replicas on {}", server.local_addr());

    // (3) The replica, in its own directory, bootstrapping from the
    // primary's WAL at genesis.
    let replica_dir = tempfile::tempdir()?;
    let options = ReplicaOptions::new(
        replica_dir.path().to_path_buf(),
        server.local_addr().to_string(),
        BootstrapMethod::Wal,
        ReplicaId::parse("example-replica")?,
        // Seed of the reconnect jitter.
        7,
    );
    let mut replica = Replica::open(options, disk, Arc::new(TcpTransport))?;
    let handle = replica.handle().clone();

    // (4) Wait until the replica applied the primary's CommitId, then read
    // through the gate: it admits the read only if every safety rule holds
    // (`min_commit` asks for at least the primary's CommitId).
    wait_applied(&handle, target)?;
    read_through_gate(&handle, target, "alice")?;
    // A commit made while the replica streams reaches it the same way.
    let target = engine.submit(vec![put("carol", r#"{"name":"Carol","v":1}"#)])?.wait()?.position.commit_id;
    println!("primary: committed CommitId {target} while the replica streams");
    wait_applied(&handle, target)?;
    read_through_gate(&handle, target, "carol")?;
    let status = handle.shared.observe();
    println!(
        "replica: state {}, node state {}, applied CommitId {} (LSN {}), received LSN {} (durable), bootstrap {}, handshakes {}",
        status.state.name(),
        status.node_state().name(),
        status.positions.applied_commit_id,
        status.positions.applied_lsn,
        status.positions.received_lsn,
        status.bootstrap().map_or("none", |b| b.method.as_str()),
        status.handshakes,
    );
    for connected in server.registry().list() {
        println!("primary: replica {} connected from {} ({})", connected.replica_id, connected.peer, connected.session);
    }

    // (5) Stop the replica, then the port, then the primary's threads.
    replica.stop();
    server.stop();
    snapshots.stop();
    engine.close();
    println!("stopped cleanly");
    Ok(())
}
