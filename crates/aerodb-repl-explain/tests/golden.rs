#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Golden files (insta) for every explanation type, every halt and blocking
//! code of the catalogue (`halts.rs`), every refusal rule of the read-safety gate, and the
//! DX views and metrics. Every input is built from real state: real WAL
//! records encoded by `aerodb-wal`, real chain violations from a
//! `ChainValidator` fed bad bytes, real apply errors from a `Store`, real
//! handshake refusals from `decide`, real recovery reports from
//! `recover_primary` / `recover_replica` over files in a temporary
//! directory, and real status from `ReplicaShared` transitions. Halts that
//! `aerodb-repl-net` builds inline are rebuilt here exactly as its
//! supervisor builds them, from real errors. Run-specific values (temporary
//! paths) are replaced before pinning; everything else is deterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aerodb_mvcc::{AppliedState, ApplyInput, Store};
use aerodb_repl_core::gate::{evaluate, GateDecision};
use aerodb_repl_core::halt::{Blocked, Halt, Reason, StorageOp};
use aerodb_repl_core::handshake::{decide, Decision, Hello, HelloRequest, PrimaryHistory, PROTOCOL_VERSION};
use aerodb_repl_core::ids::ReplicaName;
use aerodb_repl_core::ids::{ClusterId, ReplicaId};
use aerodb_repl_core::metadata::{write_metadata, BootstrapBoundary, BootstrapMethod, ReplicaMetadata, ReplicaPaths, METADATA_FORMAT};
use aerodb_repl_core::pipeline::ReceivedChunk;
use aerodb_repl_core::registry::{KnownReplica, WalPoint};
use aerodb_repl_core::replica::{bootstrap_from_genesis, recover_replica, Recovered, SnapshotFiles};
use aerodb_repl_core::state::{BootstrapPhase, BootstrapProgress, ReplicaState, StateKind, StateMachine};
use aerodb_repl_core::status::{PrimaryProgress, ReplicaObserved};
use aerodb_repl_core::wire::{frame, FrameType, Message, ServeCode, ServeError};
use aerodb_repl_explain::explain::{self, Explanation, ReadBound, ReadQuery, RecoveryInput};
use aerodb_repl_explain::facts::{
    DurabilityFacts, FenceFacts, HttpFacts, HttpSurfaceFacts, KnownReplicaFacts, PeerReplica, PrimaryFacts, RefusalCount, RegistryFacts, ReplPortFacts,
    ReplicaFacts, WalFile,
};
use aerodb_repl_explain::halts::HALT_CODES;
use aerodb_repl_explain::views::{self, default_read_inputs};
use aerodb_repl_explain::{metrics, rules};
use aerodb_snapshot::{create_snapshot, list_snapshots, read_manifest, recover_primary_with, SchedulerStatus, SnapshotInfo, SnapshotPolicy};
use aerodb_wal::checksummed::write_checksummed;
use aerodb_wal::disk::OsDisk;
use aerodb_wal::durable::DurablePoint;
use aerodb_wal::history::{HistoryLossFile, StartupDurability};
use aerodb_wal::log::{SegmentAppender, SegmentList, WalReader};
use aerodb_wal::mark::{write_mark, DurableMark};
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::mark_writer::{MarkPolicy, MarkStatus};
use aerodb_wal::record::encode_record;
use aerodb_wal::recovery::recover_wal;
use aerodb_wal::segment::{parse_segment_file_name, segment_file_name, SegmentHeader};
use aerodb_wal::{ChainTip, ChainValidator, ChainViolation, CommitId, Fingerprint, Lsn, Op, RecordBody, RecordPosition, StateDigest, GENESIS_FINGERPRINT};
use bytes::Bytes;
use serde_json::{json, Value};
use tempfile::TempDir;

const CLUSTER: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
const OTHER_CLUSTER: &str = "0badc0de0badc0de0badc0de0badc0de";
const REPLICA_ID: &str = "feedfacefeedfacefeedfacefeedface";
const PRIMARY_ADDR: &str = "primary.example:7701";

// ---------------------------------------------------------------------------
// A real history: six commits encoded by the WAL's own encoder.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Rec {
    commit_id: CommitId,
    lsn: Lsn,
    end_lsn: Lsn,
    bytes: Vec<u8>,
    fingerprint: Fingerprint,
    digest: StateDigest,
    ops: Vec<Op>,
}

impl Rec {
    fn position(&self) -> RecordPosition {
        RecordPosition { lsn: self.lsn, end_lsn: self.end_lsn, commit_id: self.commit_id, fingerprint: self.fingerprint }
    }
    fn tip(&self) -> ChainTip {
        ChainTip { end_lsn: self.end_lsn, commit_id: self.commit_id, fingerprint: self.fingerprint }
    }
    fn applied(&self) -> AppliedState {
        AppliedState { commit_id: self.commit_id, end_lsn: self.end_lsn, fingerprint: self.fingerprint, state_digest: self.digest }
    }
    fn body(&self) -> RecordBody {
        RecordBody::Commit(self.ops.clone())
    }
}

fn put(key: &'static str, doc: &'static str) -> Op {
    Op::Put { collection: Bytes::from_static(b"users"), key: Bytes::from_static(key.as_bytes()), doc: Bytes::from_static(doc.as_bytes()) }
}

fn del(key: &'static str) -> Op {
    Op::Delete { collection: Bytes::from_static(b"users"), key: Bytes::from_static(key.as_bytes()) }
}

fn write_sets() -> Vec<Vec<Op>> {
    vec![
        vec![put("alice", r#"{"v":1}"#)],
        vec![put("bob", r#"{"v":1}"#)],
        vec![put("alice", r#"{"v":2}"#), put("carol", r#"{"v":1}"#)],
        vec![del("alice")],
        vec![put("alice", r#"{"v":3}"#)],
        vec![put("bob", r#"{"v":2}"#)],
    ]
}

/// Encodes `sets` as a chain after `tip` with `digest` as the state before.
fn chain_after(tip: ChainTip, digest: StateDigest, sets: Vec<Vec<Op>>) -> Vec<Rec> {
    let (mut lsn, mut fp, mut d) = (tip.end_lsn, tip.fingerprint, digest);
    let mut out = Vec::new();
    for (i, ops) in sets.into_iter().enumerate() {
        let commit_id = tip.commit_id + 1 + i as u64;
        d = d.after_ops(commit_id, &ops);
        let (bytes, f) = encode_record(commit_id, d, fp, &ops).unwrap();
        let end_lsn = lsn + bytes.len() as u64;
        out.push(Rec { commit_id, lsn, end_lsn, bytes, fingerprint: f, digest: d, ops });
        lsn = end_lsn;
        fp = f;
    }
    out
}

fn history() -> Vec<Rec> {
    chain_after(ChainTip::GENESIS, StateDigest::EMPTY, write_sets())
}

/// A WAL directory with one segment starting at `tip` holding `recs`.
fn write_wal(dir: &Path, tip: ChainTip, recs: &[Rec]) {
    let mut app = SegmentAppender::create(OsDisk::shared(), dir, tip.segment_header()).unwrap();
    for r in recs {
        app.append(r.lsn, &r.bytes).unwrap();
    }
    app.sync().unwrap();
}

/// A store with `recs` applied through the one apply function.
fn store_with(recs: &[Rec]) -> Arc<Store> {
    let store = Store::new();
    for r in recs {
        store.apply(ApplyInput { position: r.position(), state_digest: r.digest, body: &r.body() }).unwrap();
    }
    Arc::new(store)
}

// ---------------------------------------------------------------------------
// Redaction and pinning
// ---------------------------------------------------------------------------

/// Replaces every occurrence of the temporary directory in strings.
fn redact(v: Value, dir: &Path) -> Value {
    let needle = dir.display().to_string();
    match v {
        Value::String(s) => Value::String(s.replace(&needle, "<tmp>")),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| redact(x, dir)).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, redact(x, dir))).collect()),
        other => other,
    }
}

/// Every cited rule ID must be registered (P5-I15), the shape must be the
/// one of REPLICATION.md §10, and rules must be in a fixed order with
/// evaluations true/false/null.
fn check_explanation(e: &Explanation) {
    for id in e.cited_rule_ids() {
        assert!(rules::rule(id).is_some(), "{} cites unregistered rule {id}", e.explanation_type);
    }
    let v = e.to_value();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 5);
    for k in ["explanation_type", "observed_snapshot", "inputs", "rules_applied", "conclusion"] {
        assert!(v.get(k).is_some(), "missing {k}");
    }
    assert_eq!(v["observed_snapshot"]["snapshot_id"], "live");
    for r in v["rules_applied"].as_array().unwrap() {
        assert!(r["evaluation"].is_boolean() || r["evaluation"].is_null());
        if r["evaluation"].is_null() {
            assert!(r["evidence"]["missing"].is_string(), "null evaluation without stated missing evidence: {r}");
        }
    }
}

fn pin(name: &str, e: &Explanation, dir: Option<&Path>) {
    check_explanation(e);
    let v = e.to_value();
    let v = match dir {
        Some(d) => redact(v, d),
        None => v,
    };
    insta::assert_json_snapshot!(name, v);
}

fn pin_value(name: &str, v: Value) {
    insta::assert_json_snapshot!(name, v);
}

// ---------------------------------------------------------------------------
// Replica status built through the real state machine
// ---------------------------------------------------------------------------

fn wal_boundary() -> BootstrapBoundary {
    BootstrapBoundary {
        method: BootstrapMethod::Wal,
        boundary_commit_id: 0,
        boundary_lsn: 0,
        boundary_fingerprint: GENESIS_FINGERPRINT,
        boundary_state_digest: StateDigest::EMPTY,
    }
}

fn cluster() -> ClusterId {
    ClusterId::parse(CLUSTER).unwrap()
}

fn replica_id() -> ReplicaId {
    ReplicaId::parse(REPLICA_ID).unwrap()
}

/// A replica's observable status driven through the real state machine
/// (every state with its data), as the engine publishes it.
struct Obs {
    machine: StateMachine,
    base: ReplicaObserved,
}

impl Obs {
    fn new(addr: &str, method: BootstrapMethod) -> Obs {
        let base = ReplicaObserved {
            state: ReplicaState::Initializing,
            handshakes: 0,
            reconnects: 0,
            positions: Default::default(),
            primary: None,
            lag_ms: None,
            metadata: None,
            replica_id: replica_id(),
            name: None,
            bootstrap_method_requested: method,
            primary_addr: addr.to_string(),
            primary_client_addr: None,
            recovery: None,
            transfer: None,
        };
        Obs { machine: StateMachine::new(), base }
    }
    fn go(&mut self, kind: StateKind) {
        let state = match kind {
            StateKind::Recovering => ReplicaState::Recovering,
            StateKind::Bootstrapping => {
                ReplicaState::Bootstrapping { conn: 1, progress: BootstrapProgress { phase: BootstrapPhase::Requesting, ..BootstrapProgress::default() } }
            }
            StateKind::Connecting => ReplicaState::Connecting { conn: 1, after: self.machine.state().blocked().cloned() },
            StateKind::Streaming => ReplicaState::Streaming { conn: 1 },
            StateKind::Disconnected => {
                ReplicaState::Disconnected { blocked: Blocked::ConnectionLost { detail: "primary closed the connection".into() }, retry_at: 0 }
            }
            StateKind::Initializing | StateKind::Halted => panic!("not a golden step: {kind:?}"),
        };
        self.machine.transition(state, "golden").unwrap();
    }
    fn halt(&mut self, halt: Halt) {
        self.machine.transition(ReplicaState::Halted { halt }, "golden").unwrap();
    }
    fn block(&mut self, blocked: Blocked) {
        self.machine.transition(ReplicaState::Disconnected { blocked, retry_at: 0 }, "golden").unwrap();
    }
    fn update(&mut self, f: impl FnOnce(&mut ReplicaObserved)) {
        f(&mut self.base);
    }
    fn observe(&self) -> ReplicaObserved {
        let mut o = self.base.clone();
        o.state = self.machine.state().clone();
        o.handshakes = self.machine.handshakes();
        o.reconnects = self.machine.reconnects();
        o
    }
}

fn shared_through(states: &[StateKind]) -> Obs {
    shared_for(PRIMARY_ADDR, BootstrapMethod::Wal, states)
}

/// A replica of `--primary addr` asking for `method` bootstrap, moved through `states`.
fn shared_for(addr: &str, method: BootstrapMethod, states: &[StateKind]) -> Obs {
    let mut s = Obs::new(addr, method);
    for st in states {
        s.go(*st);
    }
    s
}

/// A WAL-bootstrapped replica that applied `applied` records of the history
/// and heard C_primary = 6 from the primary, in `states`.
fn replica_at(states: &[StateKind], applied: usize) -> (Obs, Arc<Store>) {
    replica_of(PRIMARY_ADDR, states, applied)
}

/// [`replica_at`] for a replica whose `--primary` is `addr`.
fn replica_of(addr: &str, states: &[StateKind], applied: usize) -> (Obs, Arc<Store>) {
    let recs = history();
    let store = store_with(&recs[..applied]);
    let mut s = shared_for(addr, BootstrapMethod::Wal, states);
    let a = store.applied();
    s.update(|o| {
        o.metadata = Some(metadata(wal_boundary(), CLUSTER));
        o.positions =
            aerodb_repl_core::status::Positions { received_lsn: a.end_lsn, validated_lsn: a.end_lsn, applied_lsn: a.end_lsn, applied_commit_id: a.commit_id };
    });
    if states.contains(&StateKind::Streaming) {
        let last = &recs[recs.len() - 1];
        s.update(|o| o.primary = Some(PrimaryProgress { commit_id: last.commit_id, durable_lsn: last.end_lsn }));
    }
    (s, store)
}

const STREAMING: &[StateKind] = &[StateKind::Recovering, StateKind::Connecting, StateKind::Streaming];

fn replica_facts(o: ReplicaObserved, store: Option<&Arc<Store>>, wal_dir: Option<&Path>) -> ReplicaFacts {
    ReplicaFacts {
        observed: o,
        applied: store.map(|s| s.applied()),
        history_horizon: store.map(|s| s.history_horizon()),
        version_count: store.map(|s| s.version_count()),
        gc: store.map(|s| s.gc_stats()),
        active_read_views: store.map(|s| s.active_read_views()).unwrap_or_default(),
        wal_files: Ok(wal_dir.map(list_wal).unwrap_or_default()),
        bootstrap_snapshot_bytes: None,
        refusals: vec![
            RefusalCount { code: "READ_REFUSED".into(), rule_id: "RS-3".into(), count: 2 },
            RefusalCount { code: "WRITE_REJECTED".into(), rule_id: "REPL-1".into(), count: 1 },
        ],
        http: None,
        scrub: None,
    }
}

fn list_wal(dir: &Path) -> Vec<WalFile> {
    let mut out: Vec<WalFile> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            parse_segment_file_name(&name).map(|start_lsn| WalFile { name, start_lsn, bytes: e.metadata().unwrap().len() })
        })
        .collect();
    out.sort_by_key(|w| w.start_lsn);
    out
}

/// The halt explanation of a streaming replica at CommitId 3 that halts with `h`.
fn halted_streaming(h: Halt) -> (ReplicaObserved, AppliedState) {
    let (mut s, store) = replica_at(STREAMING, 3);
    s.halt(h);
    (s.observe(), store.applied())
}

fn pin_halt(code: &str, h: Halt, dir: Option<&Path>) {
    assert_eq!(h.code(), code, "the real constructor produced another code: {h:?}");
    let (o, a) = halted_streaming(h);
    let e = explain::replication_halt(&o, Some(&a)).unwrap();
    assert_eq!(e.conclusion["code"], code);
    assert_eq!(e.rules_applied[0].evaluation, Some(false));
    pin(&format!("halt_{}", code.to_ascii_lowercase()), &e, dir);
}

/// A halt found during replica recovery (no store yet).
fn pin_recovery_halt(name: &str, h: Halt, dir: &Path) {
    let mut s = shared_through(&[StateKind::Recovering]);
    s.halt(h);
    let o = s.observe();
    let e = explain::replication_halt(&o, None).unwrap();
    pin(name, &e, Some(dir));
}

// ---------------------------------------------------------------------------
// Halts from received WAL: a real ChainValidator fed bad bytes (F-V1, F-V2, F-D1)
// ---------------------------------------------------------------------------

fn validator_after_3() -> (ChainValidator, Vec<Rec>) {
    let recs = history();
    (ChainValidator::new(recs[2].tip()), recs)
}

fn violation(f: impl FnOnce(&mut ChainValidator, &[Rec]) -> Result<(), ChainViolation>) -> ChainViolation {
    let (mut v, recs) = validator_after_3();
    f(&mut v, &recs).expect_err("bad bytes must be rejected")
}

/// CORE-2 / F-V1: a flipped byte fails the crc32c.
#[test]
fn core_2_golden_halt_checksum_mismatch() {
    let v = violation(|v, recs| {
        let mut b = recs[3].bytes.clone();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        v.validate(recs[3].lsn, &Bytes::from(b)).map(|_| ())
    });
    pin_halt("CHECKSUM_MISMATCH", Halt::from_violation(&v), None);
}

/// CORE-2 / F-V1: truncated bytes are not a record.
#[test]
fn core_2_golden_halt_invalid_record() {
    let v = violation(|v, recs| {
        let b = recs[3].bytes[..recs[3].bytes.len() / 2].to_vec();
        v.validate(recs[3].lsn, &Bytes::from(b)).map(|_| ())
    });
    pin_halt("INVALID_RECORD", Halt::from_violation(&v), None);
}

/// REPL-7 / F-V2: a record that does not start where the history ends.
#[test]
fn repl_7_golden_halt_lsn_gap() {
    let v = violation(|v, recs| v.validate(recs[3].lsn + 8, &Bytes::from(recs[3].bytes.clone())).map(|_| ()));
    pin_halt("LSN_GAP", Halt::from_violation(&v), None);
}

/// REPL-2 / F-V2: CommitId 5 after 3.
#[test]
fn repl_2_golden_halt_commit_id_gap() {
    let v = violation(|v, recs| {
        // Commit 5 of a history that skipped 4, placed where 4 must start.
        let skipped = chain_after(ChainTip { commit_id: 4, ..recs[2].tip() }, recs[2].digest, vec![recs[4].ops.clone()]);
        v.validate(recs[3].lsn, &Bytes::from(skipped[0].bytes.clone())).map(|_| ())
    });
    pin_halt("COMMIT_ID_GAP", Halt::from_violation(&v), None);
}

/// REPL-5 / F-D1: record 4 of a divergent history (another record 3 before it).
#[test]
fn repl_5_golden_halt_fingerprint_mismatch() {
    let v = violation(|v, recs| {
        let divergent = chain_after(recs[1].tip(), recs[1].digest, vec![vec![put("dave", r#"{"v":9}"#)], recs[3].ops.clone()]);
        v.validate(recs[3].lsn, &Bytes::from(divergent[1].bytes.clone())).map(|_| ())
    });
    pin_halt("FINGERPRINT_MISMATCH", Halt::from_violation(&v), None);
}

/// REPL-7 / F-V2: a segment header that declares another previous commit.
#[test]
fn repl_7_golden_halt_segment_discontinuity() {
    let v = violation(|v, recs| v.check_segment_start(&SegmentHeader { start_lsn: recs[2].end_lsn, prev_commit_id: 2, prev_fingerprint: recs[1].fingerprint }));
    pin_halt("SEGMENT_DISCONTINUITY", Halt::from_violation(&v), None);
}

// ---------------------------------------------------------------------------
// Halts from apply: a real Store (F-D3, F-V2)
// ---------------------------------------------------------------------------

/// REPL-4 / F-D3: the record carries a digest the replica does not recompute.
#[test]
fn repl_4_golden_halt_apply_diverged() {
    let recs = history();
    let store = store_with(&recs[..3]);
    let divergent = chain_after(recs[2].tip(), recs[2].digest, vec![vec![put("alice", r#"{"v":99}"#)]]);
    let e = store.apply(ApplyInput { position: recs[3].position(), state_digest: divergent[0].digest, body: &recs[3].body() }).unwrap_err();
    pin_halt("APPLY_DIVERGED", Halt::from_apply(&e, recs[3].lsn), None);
}

/// REPL-2 / F-V2: a validated record that is not the next commit for the store.
#[test]
fn repl_2_golden_halt_apply_out_of_order() {
    let recs = history();
    let store = store_with(&recs[..3]);
    let e = store.apply(ApplyInput { position: recs[4].position(), state_digest: recs[4].digest, body: &recs[4].body() }).unwrap_err();
    pin_halt("APPLY_OUT_OF_ORDER", Halt::from_apply(&e, recs[4].lsn), None);
}

// ---------------------------------------------------------------------------
// Halts from the handshake: the primary's real decision (F-D1, F-D2, F-C1)
// ---------------------------------------------------------------------------

struct History(Vec<Rec>);

impl PrimaryHistory for History {
    fn cluster_id(&self) -> &ClusterId {
        static C: std::sync::OnceLock<ClusterId> = std::sync::OnceLock::new();
        C.get_or_init(cluster)
    }
    fn durable(&self) -> (Lsn, CommitId) {
        self.0.last().map_or((0, 0), |r| (r.end_lsn, r.commit_id))
    }
    fn oldest_retained(&self) -> ChainTip {
        ChainTip::GENESIS
    }
    fn record_end(&self, commit_id: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        Ok(self.0.iter().find(|r| r.commit_id == commit_id).map(|r| (r.end_lsn, r.fingerprint)))
    }
}

fn hello(tip: ChainTip) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: Some(cluster()),
        replica_id: replica_id(),
        name: None,
        request: HelloRequest::Resume { end_lsn: tip.end_lsn, commit_id: tip.commit_id, fingerprint: tip.fingerprint },
    }
}

fn refused(h: &Hello) -> Halt {
    match decide(&History(history()), h) {
        Decision::Refuse(r) => {
            assert!(r.code().halts());
            Halt::Refused { refuse: r, request: h.request, replica_cluster_id: h.cluster_id.clone() }
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// REPL-5 / F-D1: the replica's record 3 is not the primary's.
#[test]
fn f_d1_golden_halt_diverged() {
    let recs = history();
    let divergent = chain_after(recs[1].tip(), recs[1].digest, vec![vec![put("dave", r#"{"v":9}"#)]]);
    pin_halt("DIVERGED", refused(&hello(divergent[0].tip())), None);
}

/// REPL-3 / F-D2: the replica holds commits 7 and 8 the primary does not.
#[test]
fn f_d2_golden_halt_replica_ahead() {
    let recs = history();
    let ahead = chain_after(recs[5].tip(), recs[5].digest, vec![vec![put("erin", r#"{"v":1}"#)], vec![put("erin", r#"{"v":2}"#)]]);
    pin_halt("REPLICA_AHEAD", refused(&hello(ahead[1].tip())), None);
}

/// REPL-1 / F-C1: the replica belongs to another cluster (refused by the primary).
#[test]
fn f_c1_golden_halt_cluster_mismatch() {
    let mut h = hello(history()[2].tip());
    h.cluster_id = Some(ClusterId::parse(OTHER_CLUSTER).unwrap());
    pin_halt("CLUSTER_MISMATCH", refused(&h), None);
}

/// REPL-1 / F-C1: the primary accepted but names another cluster (the replica's own check).
#[test]
fn f_c1_golden_halt_cluster_mismatch_at_accept() {
    let h = Halt::ClusterMismatchAtAccept { replica_cluster_id: cluster(), primary_cluster_id: ClusterId::parse(OTHER_CLUSTER).unwrap() };
    let (o, a) = halted_streaming(h);
    pin("halt_cluster_mismatch_at_accept", &explain::replication_halt(&o, Some(&a)).unwrap(), None);
}

/// REPL-1: another protocol version.
#[test]
fn repl_1_golden_halt_protocol_version() {
    let mut h = hello(history()[2].tip());
    h.protocol_version = PROTOCOL_VERSION + 1;
    pin_halt("PROTOCOL_VERSION", refused(&h), None);
}

/// REPL-1 / F-C1: the address answers, but not as an AeroDB primary (an
/// HTTP server's answer decoded as a frame).
#[test]
fn f_c1_golden_halt_peer_not_aerodb() {
    let err = frame::decode(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", frame::DEFAULT_MAX_PAYLOAD).unwrap_err();
    assert_eq!(err.code(), "PEER_NOT_AERODB");
    let aerodb_repl_core::wire::FrameError::BadMagic { found } = err else { panic!("not a bad magic: {err:?}") };
    let h = Halt::PeerNotAerodb { primary: PRIMARY_ADDR.into(), found_magic: found };
    pin_halt("PEER_NOT_AERODB", h, None);
}

// ---------------------------------------------------------------------------
// Halts from local IO (REPL-9)
// ---------------------------------------------------------------------------

/// REPL-9: the replica cannot write received WAL (a real IO error).
#[test]
fn repl_9_golden_halt_replica_io_error() {
    let dir = TempDir::new().unwrap();
    let e = std::fs::OpenOptions::new().append(true).open(dir.path().join("missing").join("00000000000000000000.seg")).unwrap_err();
    let h = Halt::Storage { op: StorageOp::PersistWal, detail: e.to_string() };
    pin_halt("REPLICA_IO_ERROR", h, Some(dir.path()));
}

/// REPL-9: bootstrap state cannot be written (the data directory is a file).
#[test]
fn repl_9_golden_halt_bootstrap_io() {
    let dir = TempDir::new().unwrap();
    let root = dir.path().join("not-a-dir");
    std::fs::write(&root, b"x").unwrap();
    let err = bootstrap_from_genesis(OsDisk::shared(), &ReplicaPaths::new(&root), &cluster(), &replica_id()).err().expect("must fail on a file");
    let h = Halt::Storage { op: StorageOp::Bootstrap, detail: err.to_string() };
    pin_halt("BOOTSTRAP_IO", h, Some(dir.path()));
}

// ---------------------------------------------------------------------------
// Halts found by replica recovery: real files, real recover_replica
// ---------------------------------------------------------------------------

/// The node's snapshot format over `aerodb-snapshot`.
fn files() -> SnapshotFiles {
    SnapshotFiles::new(OsDisk::shared())
}

fn metadata(boundary: BootstrapBoundary, cluster: &str) -> ReplicaMetadata {
    ReplicaMetadata { format_version: METADATA_FORMAT, cluster_id: ClusterId::parse(cluster).unwrap(), replica_id: replica_id(), bootstrap: boundary }
}

/// A replica bootstrapped by WAL from genesis holding all six commits.
fn wal_replica(root: &Path) -> ReplicaPaths {
    let paths = ReplicaPaths::new(root);
    write_wal(&paths.wal, ChainTip::GENESIS, &history());
    write_metadata(&OsDisk, &paths, &metadata(wal_boundary(), CLUSTER)).unwrap();
    paths
}

fn snapshot_boundary(rec: &Rec) -> BootstrapBoundary {
    BootstrapBoundary {
        method: BootstrapMethod::Snapshot,
        boundary_commit_id: rec.commit_id,
        boundary_lsn: rec.end_lsn,
        boundary_fingerprint: rec.fingerprint,
        boundary_state_digest: rec.digest,
    }
}

/// A replica bootstrapped from the primary's snapshot at CommitId 3, with
/// commits 4..6 in its WAL.
fn snapshot_replica(root: &Path) -> ReplicaPaths {
    let recs = history();
    let store = store_with(&recs[..3]);
    let snaps = root.join("primary-snapshots");
    let info = create_snapshot(&OsDisk, &snaps, &store, CLUSTER).unwrap();
    let paths = ReplicaPaths::new(root);
    std::fs::create_dir_all(paths.snapshot()).unwrap();
    for entry in std::fs::read_dir(&info.path).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), paths.snapshot().join(entry.file_name())).unwrap();
    }
    std::fs::remove_dir_all(&snaps).unwrap();
    write_wal(&paths.wal, recs[2].tip(), &recs[3..]);
    write_metadata(&OsDisk, &paths, &metadata(snapshot_boundary(&recs[2]), CLUSTER)).unwrap();
    paths
}

fn recovery_halt(paths: &ReplicaPaths) -> Halt {
    match recover_replica(OsDisk::shared(), paths, &files()) {
        Ok(Recovered::Halted { halt, .. }) => *halt,
        Ok(_) => panic!("recovery did not halt"),
        Err(e) => panic!("metadata error {e}"),
    }
}

/// The halt the supervisor records when recovery refuses the metadata (F-RC2).
fn metadata_halt(paths: &ReplicaPaths) -> Halt {
    match recover_replica(OsDisk::shared(), paths, &files()) {
        Err(e) => e.to_halt(),
        Ok(_) => panic!("corrupt metadata was accepted"),
    }
}

/// F-S3: the installed snapshot's cut differs from the recorded boundary.
#[test]
fn f_s3_golden_halt_snapshot_metadata_mismatch() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    let recs = history();
    write_metadata(&OsDisk, &paths, &metadata(snapshot_boundary(&recs[1]), CLUSTER)).unwrap();
    let h = recovery_halt(&paths);
    assert_eq!(h.code(), "SNAPSHOT_METADATA_MISMATCH");
    pin_recovery_halt("halt_snapshot_metadata_mismatch", h, dir.path());
}

fn data_file(paths: &ReplicaPaths) -> PathBuf {
    let m = read_manifest(&OsDisk, &paths.snapshot()).unwrap();
    paths.snapshot().join(&m.files[0].name)
}

/// F-S4: every way the installed bootstrap snapshot can fail validation.
#[test]
fn f_s4_golden_halt_snapshot_rejection_codes() {
    type Damage = fn(&ReplicaPaths);
    let cases: [(&str, Damage); 6] = [
        ("SNAPSHOT_CHECKSUM", |p| {
            let f = data_file(p);
            let mut b = std::fs::read(&f).unwrap();
            let last = b.len() - 1;
            b[last] ^= 0x01;
            std::fs::write(&f, b).unwrap();
        }),
        ("SNAPSHOT_SIZE", |p| {
            let f = data_file(p);
            let b = std::fs::read(&f).unwrap();
            std::fs::write(&f, &b[..b.len() - 1]).unwrap();
        }),
        ("SNAPSHOT_MISSING_FILE", |p| std::fs::remove_file(data_file(p)).unwrap()),
        ("SNAPSHOT_EXTRA_FILE", |p| std::fs::write(p.snapshot().join("stray.bin"), b"stray").unwrap()),
        ("SNAPSHOT_MANIFEST", |p| std::fs::write(p.snapshot().join("manifest.json"), b"{\"crc32c\":1,\"body\":{}}").unwrap()),
        ("SNAPSHOT_CLUSTER", |p| write_metadata(&OsDisk, p, &metadata(snapshot_boundary(&history()[2]), OTHER_CLUSTER)).unwrap()),
    ];
    for (code, damage) in cases {
        let dir = TempDir::new().unwrap();
        let paths = snapshot_replica(dir.path());
        damage(&paths);
        let h = recovery_halt(&paths);
        assert_eq!(h.code(), code, "{h:?}");
        assert_eq!(h.failure_row(), Some("F-S4"));
        pin_recovery_halt(&format!("halt_{}", code.to_ascii_lowercase()), h, dir.path());
    }
}

/// F-RC1 / CORE-3: corruption inside the replica's own WAL (not a torn tail).
#[test]
fn f_rc1_golden_halt_local_wal_corrupt() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    let seg = paths.wal.join(segment_file_name(0));
    let mut b = std::fs::read(&seg).unwrap();
    let recs = history();
    let at = 64 + recs[2].lsn as usize + recs[2].bytes.len() - 1;
    b[at] ^= 0x10;
    std::fs::write(&seg, b).unwrap();
    let h = recovery_halt(&paths);
    assert_eq!(h.code(), "WAL_CORRUPT");
    pin_recovery_halt("halt_wal_corrupt", h, dir.path());
}

/// F-RC2: every metadata check that refuses a replica's start.
#[test]
fn f_rc2_golden_halt_metadata_codes() {
    type Damage = fn(&ReplicaPaths);
    let cases: [(&str, Damage); 4] = [
        ("META_MALFORMED", |p| std::fs::write(p.metadata(), b"not json at all").unwrap()),
        ("META_CHECKSUM_MISMATCH", |p| {
            let text = std::fs::read_to_string(p.metadata()).unwrap();
            std::fs::write(p.metadata(), text.replace(REPLICA_ID, &REPLICA_ID.replace('f', "e"))).unwrap();
        }),
        ("META_VERSION", |p| {
            let mut m = metadata(wal_boundary(), CLUSTER);
            m.format_version = METADATA_FORMAT + 1;
            write_metadata(&OsDisk, p, &m).unwrap();
        }),
        ("META_UNREADABLE", |p| {
            std::fs::remove_file(p.metadata()).unwrap();
            std::fs::create_dir(p.metadata()).unwrap();
        }),
    ];
    for (code, damage) in cases {
        let dir = TempDir::new().unwrap();
        let paths = wal_replica(dir.path());
        damage(&paths);
        let h = metadata_halt(&paths);
        assert_eq!(h.code(), code, "{h:?}");
        pin_recovery_halt(&format!("halt_{}", code.to_ascii_lowercase()), h, dir.path());
    }
}

// ---------------------------------------------------------------------------
// Installed bootstrap snapshot damaged so that only the content checks fail
// ---------------------------------------------------------------------------

/// crc32c (Castagnoli), bitwise: rewrites a damaged data file's checksum in
/// its manifest so that only the content check can fail. Checked against
/// the snapshot writer's own crc32c before it is used (`rewrite_data_file`).
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// Rewrites the installed snapshot's first data file with `damage` and then
/// its manifest entry (size and crc32c, through the checksummed envelope),
/// so that the file-level checks pass and only the content check fails.
fn rewrite_data_file(paths: &ReplicaPaths, damage: impl FnOnce(&mut Vec<u8>)) {
    let dir = paths.snapshot();
    let mut m = read_manifest(&OsDisk, &dir).unwrap();
    let f = dir.join(&m.files[0].name);
    let mut b = std::fs::read(&f).unwrap();
    assert_eq!(crc32c(&b), m.files[0].crc32c, "the test's crc32c must be the snapshot's");
    damage(&mut b);
    std::fs::write(&f, &b).unwrap();
    m.files[0].size = b.len() as u64;
    m.files[0].crc32c = crc32c(&b);
    write_checksummed(&OsDisk, &dir.join("manifest.json"), &m).unwrap();
    assert!(read_manifest(&OsDisk, &dir).is_ok(), "the rewritten manifest must pass its own checks");
}

/// Recovers the snapshot-bootstrapped replica and pins the halt (F-S4 row).
fn pin_snapshot_halt(code: &str, paths: &ReplicaPaths, dir: &Path) {
    let h = recovery_halt(paths);
    assert_eq!(h.code(), code, "{h:?}");
    assert_eq!(h.failure_row(), Some("F-S4"));
    pin_recovery_halt(&format!("halt_{}", code.to_ascii_lowercase()), h, dir);
}

/// F-S4: the installed snapshot's data file header declares format_version
/// 3 (header crc32c and the manifest's file crc32c rewritten to match), so
/// only the format check refuses it.
#[test]
fn f_s4_golden_halt_snapshot_format() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    rewrite_data_file(&paths, |b| {
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        let header_crc = crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&header_crc.to_le_bytes());
    });
    pin_snapshot_halt("SNAPSHOT_FORMAT", &paths, dir.path());
}

/// F-S4: the first version record of the installed snapshot's data file has
/// an unknown kind byte; the file's crc32c and size in the manifest are
/// rewritten to match, so every checksum passes and only decoding fails.
#[test]
fn f_s4_golden_halt_snapshot_corrupt() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    // Data header is 32 bytes; a version record's kind byte is at offset 12.
    rewrite_data_file(&paths, |b| b[32 + 12] = 7);
    pin_snapshot_halt("SNAPSHOT_CORRUPT", &paths, dir.path());
}

/// F-S4: one document byte of the installed snapshot changed (`{"v":1}`
/// became `{"v":7}`) with the manifest's crc32c rewritten to match: the
/// file decodes, but the state digest of the loaded store differs from the
/// manifest's.
#[test]
fn f_s4_golden_halt_snapshot_digest() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    rewrite_data_file(&paths, |b| {
        let at = b.windows(5).position(|w| w == br#""v":1"#).expect("a document of the history") + 4;
        b[at] = b'7';
    });
    pin_snapshot_halt("SNAPSHOT_DIGEST", &paths, dir.path());
}

/// REPL-8 / F-S4: the installed snapshot cannot be read: a real IO error
/// (its data file is a directory, so opening it fails with EISDIR, also as
/// root).
#[test]
fn repl_8_golden_halt_snapshot_io() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    let f = data_file(&paths);
    std::fs::remove_file(&f).unwrap();
    std::fs::create_dir(&f).unwrap();
    let h = recovery_halt(&paths);
    assert_eq!((h.code(), h.rule_id(), h.failure_row()), ("SNAPSHOT_IO", "REPL-8", Some("F-S4")), "{h:?}");
    pin_recovery_halt("halt_snapshot_io", h, dir.path());
}

// ---------------------------------------------------------------------------
// The replica's own WAL damaged: real recover_replica over real files (F-RC1)
// ---------------------------------------------------------------------------

/// Recovers the replica and checks the halt's code, rule and F-RC1 row.
fn local_wal_halt(paths: &ReplicaPaths, code: &str, rule_id: &str) -> Halt {
    let h = recovery_halt(paths);
    assert_eq!((h.code(), h.rule_id(), h.failure_row()), (code, rule_id, Some("F-RC1")), "{h:?}");
    h
}

/// CORE-3 / F-RC1: one flipped byte in the replica's WAL segment header
/// (inside `prev_commit_id`) fails the header's crc32c.
#[test]
fn core_3_golden_halt_wal_bad_segment_header() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    let seg = paths.wal.join(segment_file_name(0));
    let mut b = std::fs::read(&seg).unwrap();
    b[24] ^= 0x01;
    std::fs::write(&seg, b).unwrap();
    let h = local_wal_halt(&paths, "WAL_BAD_SEGMENT_HEADER", "CORE-3");
    pin_recovery_halt("halt_wal_bad_segment_header", h, dir.path());
}

/// REPL-7 / F-RC1: the replica's only segment was renamed: its file name
/// says it starts at the end of commit 1, its header says LSN 0.
#[test]
fn repl_7_golden_halt_wal_segment_layout() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    std::fs::rename(paths.wal.join(segment_file_name(0)), paths.wal.join(segment_file_name(history()[0].end_lsn))).unwrap();
    let h = local_wal_halt(&paths, "WAL_SEGMENT_LAYOUT", "REPL-7");
    pin_recovery_halt("halt_wal_segment_layout", h, dir.path());
}

/// CORE-3 / F-RC1: a bootstrapped replica whose WAL directory holds no segment.
#[test]
fn core_3_golden_halt_wal_empty() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    std::fs::remove_file(paths.wal.join(segment_file_name(0))).unwrap();
    let h = local_wal_halt(&paths, "WAL_EMPTY", "CORE-3");
    pin_recovery_halt("halt_wal_empty", h, dir.path());
}

/// CORE-3 / F-RC1: the replica's WAL cannot be read: a real IO error
/// (`wal/` is a regular file, so listing it fails with ENOTDIR, also as
/// root).
#[test]
fn core_3_golden_halt_wal_io() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    std::fs::remove_dir_all(&paths.wal).unwrap();
    std::fs::write(&paths.wal, b"not a directory").unwrap();
    let h = local_wal_halt(&paths, "WAL_IO", "CORE-3");
    pin_recovery_halt("halt_wal_io", h, dir.path());
}

/// F-S3 / F-RC1: a replica bootstrapped from the snapshot at CommitId 3
/// whose WAL does not continue that cut: the WAL holds another record 3
/// (replay refuses it), or stops before the cut (the cut is not in it).
#[test]
fn f_s3_golden_halt_snapshot_wal_mismatch() {
    let recs = history();
    let divergent = chain_after(recs[1].tip(), recs[1].digest, vec![vec![put("dave", r#"{"v":9}"#)]]);
    let wals: [(&str, Vec<Rec>); 2] = [
        ("halt_snapshot_wal_mismatch", vec![recs[0].clone(), recs[1].clone(), divergent[0].clone()]),
        ("halt_snapshot_wal_mismatch_base_not_in_wal", recs[..2].to_vec()),
    ];
    for (name, wal) in wals {
        let dir = TempDir::new().unwrap();
        let paths = snapshot_replica(dir.path());
        std::fs::remove_dir_all(&paths.wal).unwrap();
        write_wal(&paths.wal, ChainTip::GENESIS, &wal);
        let h = local_wal_halt(&paths, "SNAPSHOT_WAL_MISMATCH", "F-S3");
        pin_recovery_halt(name, h, dir.path());
    }
}

/// F-RC2: an uninitialised replica (no `replica.json`) cannot discard its
/// partial bootstrap: a real IO error (`replica/bootstrap.tmp` is a regular
/// file, so removing it as a directory tree fails with ENOTDIR, also as
/// root). Recorded as the supervisor records every metadata refusal.
#[test]
fn f_rc2_golden_halt_discard_failed() {
    let dir = TempDir::new().unwrap();
    let paths = ReplicaPaths::new(dir.path());
    std::fs::create_dir_all(&paths.dir).unwrap();
    std::fs::write(paths.bootstrap_tmp(), b"partial").unwrap();
    let h = metadata_halt(&paths);
    assert_eq!((h.code(), h.rule_id()), ("DISCARD_FAILED", "F-RC2"), "{h:?}");
    pin_recovery_halt("halt_discard_failed", h, dir.path());
}

// ---------------------------------------------------------------------------
// Blocking codes: no halt, progress stops until the next attempt. Each is
// recorded as the supervisor records it (`o.blocking`, then Disconnected)
// and pinned through `/v1/replication`, which shows it as blocking_reason.
// ---------------------------------------------------------------------------

/// Records `reason` on replica `s` (with its store; None: no local state
/// yet) exactly as the supervisor does, checks that it is no halt, and pins
/// the replication view as `blocking_<code>`.
fn pin_blocking(code: &str, rule_id: &str, reason: Blocked, (mut s, store): (Obs, Option<Arc<Store>>), dir: Option<&Path>) {
    assert_eq!((reason.code(), reason.rule_id()), (code, rule_id), "{reason:?}");
    assert!(HALT_CODES.iter().any(|c| c.code == code && !c.halts), "{code} is not a blocking code of the catalogue");
    if store.is_none() {
        s.update(|o| o.metadata = None);
    }
    s.block(reason);
    let f = replica_facts(s.observe(), store.as_ref(), None);
    assert!(explain::replication_halt(&f.observed, f.applied.as_ref()).is_none(), "a blocking code must not explain as a halt");
    assert_eq!(explain::replica_safety(&f).conclusion["blocking_reason"]["code"], code);
    let v = view(views::replica_replication_view(&f));
    assert_eq!(v["data"]["blocking_reason"]["code"], code);
    let v = match dir {
        Some(d) => redact(v, d),
        None => v,
    };
    pin_value(&format!("blocking_{}", code.to_ascii_lowercase()), v);
}

/// What the replica records for a frame that fails to decode (the client's `frame_error`).
fn frame_blocked(bytes: &[u8]) -> Blocked {
    let error = frame::decode(bytes, frame::DEFAULT_MAX_PAYLOAD).expect_err("the frame must be rejected");
    Blocked::Frame { error }
}

/// A real WAL frame carrying record 4, as the primary ships it.
fn wal_frame() -> Vec<u8> {
    let r = &history()[3];
    let (kind, payload) = Message::Wal(ReceivedChunk { start_lsn: r.lsn, segment_start: None, bytes: Bytes::from(r.bytes.clone()) }).encode();
    frame::encode(kind, &payload)
}

/// What the replica records when the primary answers its hello with an
/// Error frame: the primary's message goes through a real frame, is decoded
/// by the replica and recorded as the client's handshake records it.
fn served_error(code: ServeCode, detail: String) -> Blocked {
    let (kind, payload) = Message::Error(ServeError { code, detail }).encode();
    let bytes = frame::encode(kind, &payload);
    let (frame, _) = frame::decode(&bytes, frame::DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    let Ok(Message::Error(error)) = Message::decode(&frame) else { panic!("not an error frame") };
    Blocked::PrimaryCannotServe { error }
}

/// A primary's real WAL as the handshake sees it (as `aerodb-repl-net`'s
/// `WalHistory`): the segments of a recovered WAL directory, read back
/// with a `WalReader`.
struct PrimaryWal {
    segments: SegmentList,
    end: ChainTip,
}

impl PrimaryWal {
    fn recover(dir: &Path) -> PrimaryWal {
        let (appender, report) = recover_wal(OsDisk::shared(), dir, |_, _| Ok(())).unwrap();
        PrimaryWal { segments: appender.segments().clone(), end: report.end }
    }
}

impl PrimaryHistory for PrimaryWal {
    fn cluster_id(&self) -> &ClusterId {
        static C: std::sync::OnceLock<ClusterId> = std::sync::OnceLock::new();
        C.get_or_init(cluster)
    }
    fn durable(&self) -> (Lsn, CommitId) {
        (self.end.end_lsn, self.end.commit_id)
    }
    fn oldest_retained(&self) -> ChainTip {
        self.segments.snapshot().first().map_or(ChainTip::GENESIS, |s| ChainTip::of_segment(&s.header))
    }
    fn record_end(&self, commit_id: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        let Some(seg) = self.segments.snapshot().into_iter().rev().find(|s| s.header.prev_commit_id < commit_id) else { return Ok(None) };
        let chunk =
            WalReader::new(OsDisk::shared(), self.segments.clone()).read_chunk(seg.header.start_lsn, seg.end_lsn, usize::MAX).map_err(|e| e.to_string())?;
        let mut v = ChainValidator::new(ChainTip::of_segment(&seg.header));
        let mut lsn = seg.header.start_lsn;
        while lsn < seg.end_lsn {
            let (_, p) = v.validate(lsn, &chunk.bytes.slice((lsn - seg.header.start_lsn) as usize..)).map_err(|e| e.to_string())?;
            if p.commit_id == commit_id {
                return Ok(Some((p.end_lsn, p.fingerprint)));
            }
            lsn = p.end_lsn;
        }
        Ok(None)
    }
    fn wal_keep_bytes(&self) -> Option<u64> {
        Some(WAL_KEEP_BYTES)
    }
}

/// `--wal-keep-bytes` the golden primaries state in WAL_UNAVAILABLE.
const WAL_KEEP_BYTES: u64 = 4096;

/// A recovered replica at CommitId `applied` whose handshake just failed.
fn connecting(applied: usize) -> (Obs, Option<Arc<Store>>) {
    let (s, store) = replica_at(&[StateKind::Recovering, StateKind::Connecting], applied);
    (s, Some(store))
}

/// A replica streaming at CommitId `applied` when its connection ended.
fn streaming(applied: usize) -> (Obs, Option<Arc<Store>>) {
    let (s, store) = replica_at(STREAMING, applied);
    (s, Some(store))
}

/// F-N1: `--primary` without a port cannot be resolved: the real
/// `to_socket_addrs` error, recorded as the client's `Conn::open` records
/// it (no DNS lookup is made).
#[test]
fn f_n1_golden_blocking_connect_failed() {
    let addr = "primary.example";
    let e = std::net::ToSocketAddrs::to_socket_addrs(addr).map(|_| ()).expect_err("an address without a port does not resolve");
    let h = Blocked::ConnectFailed { primary: addr.into(), detail: e.to_string() };
    let (s, store) = replica_of(addr, &[StateKind::Recovering, StateKind::Connecting], 3);
    pin_blocking("CONNECT_FAILED", "F-N1", h, (s, Some(store)), None);
}

/// F-N1: the primary closed a streaming connection (a read returned 0
/// bytes), rebuilt exactly as the client's `Conn::next` records it.
#[test]
fn f_n1_golden_blocking_connection_lost() {
    let h = Blocked::ConnectionLost { detail: "primary closed the connection".into() };
    pin_blocking("CONNECTION_LOST", "F-N1", h, streaming(6), None);
}

/// F-N1: no frame within the idle limit, rebuilt exactly as the client's
/// `Conn::next` records it (the limit is a poll count, not an error).
#[test]
fn f_n1_golden_blocking_connection_idle() {
    let h = Blocked::ConnectionIdle { idle_limit_ms: 10_000 };
    pin_blocking("CONNECTION_IDLE", "F-N1", h, streaming(6), None);
}

/// F-N2: a real WAL frame whose type byte was changed to one no version defines.
#[test]
fn f_n2_golden_blocking_protocol_error() {
    let mut b = wal_frame();
    b[2] = 42;
    pin_blocking("PROTOCOL_ERROR", "F-N2", frame_blocked(&b), streaming(3), None);
}

/// F-N2: a real frame whose payload exceeds the replica's maximum by one byte.
#[test]
fn f_n2_golden_blocking_frame_too_large() {
    let b = frame::encode(FrameType::Wal, &vec![0u8; frame::DEFAULT_MAX_PAYLOAD + 1]);
    pin_blocking("FRAME_TOO_LARGE", "F-N2", frame_blocked(&b), streaming(3), None);
}

/// F-N2: a real WAL frame with one payload byte flipped in transit.
#[test]
fn f_n2_golden_blocking_frame_checksum() {
    let mut b = wal_frame();
    let last = b.len() - 1;
    b[last] ^= 0x20;
    pin_blocking("FRAME_CHECKSUM", "F-N2", frame_blocked(&b), streaming(3), None);
}

/// RES-2, REPL-7: a replica at CommitId 2 asks to resume from a primary
/// whose real WAL directory starts after CommitId 3 (older segments
/// retired beyond `--wal-keep-bytes`): the primary's `decide` refuses with
/// the non-halting WAL_UNAVAILABLE, with the numbers (the replica's resume
/// point, the oldest LSN and CommitId held, the primary's end, the cap).
#[test]
fn res_2_golden_blocking_wal_unavailable() {
    let dir = TempDir::new().unwrap();
    let wal = dir.path().join("wal");
    let recs = history();
    write_wal(&wal, recs[2].tip(), &recs[3..]);
    let hello = hello(recs[1].tip());
    let primary = PrimaryWal::recover(&wal);
    assert_eq!(primary.record_end(4), Ok(Some((recs[3].end_lsn, recs[3].fingerprint))), "the primary's WAL reads back");
    let Decision::Refuse(r) = decide(&primary, &hello) else { panic!("expected a refusal") };
    assert!(!r.code().halts());
    let blocked = Blocked::Refused { refuse: r, request: hello.request };
    let (mut s, store) = connecting(2);
    s.block(blocked.clone());
    let f = replica_facts(s.observe(), store.as_ref(), None);
    let e = explain::replica_safety(&f);
    let text = e.to_value().to_string();
    assert!(text.contains(&format!("\"wal_keep_bytes\":{WAL_KEEP_BYTES}")) && text.contains("\"oldest_retained_commit_id\":3"), "{text}");
    pin("explain_blocking_wal_unavailable", &e, None);
    pin_blocking("WAL_UNAVAILABLE", "RES-2", blocked, connecting(2), None);
}

/// REPL-10: the primary cannot read its own WAL to decide the handshake: a
/// real IO error (its segment file was removed after recovery listed it),
/// so `decide` is undecided and the primary answers with an Error frame.
#[test]
fn repl_10_golden_blocking_primary_wal_unreadable() {
    let dir = TempDir::new().unwrap();
    let wal = dir.path().join("wal");
    write_wal(&wal, ChainTip::GENESIS, &history());
    let primary = PrimaryWal::recover(&wal);
    std::fs::remove_file(wal.join(segment_file_name(0))).unwrap();
    let Decision::Undecided(detail) = decide(&primary, &hello(history()[2].tip())) else { panic!("expected no verdict") };
    pin_blocking("PRIMARY_WAL_UNREADABLE", "REPL-10", served_error(ServeCode::PrimaryWalUnreadable, detail), connecting(3), Some(dir.path()));
}

/// REPL-8: an empty replica asks for a snapshot and the primary cannot
/// create one: a real `create_snapshot` IO error (its `snapshots/` is a
/// regular file). The primary answers with an Error frame; the replica
/// blocks (no halt) and retries.
#[test]
fn repl_8_golden_blocking_snapshot_unavailable() {
    let dir = TempDir::new().unwrap();
    let snaps = dir.path().join("snapshots");
    std::fs::write(&snaps, b"not a directory").unwrap();
    let e = create_snapshot(&OsDisk, &snaps, &store_with(&history()[..3]), CLUSTER).expect_err("snapshots/ is a file");
    let h = served_error(ServeCode::SnapshotUnavailable, e.to_string());
    let s = shared_for(PRIMARY_ADDR, BootstrapMethod::Snapshot, &[StateKind::Recovering, StateKind::Bootstrapping]);
    pin_blocking("SNAPSHOT_UNAVAILABLE", "REPL-8", h, (s, None), Some(dir.path()));
}

/// RES-3: the replication port is at its connection cap; the primary
/// answers the connection with an Error frame (the message its accept
/// loop sends) and closes it; the replica blocks and retries.
#[test]
fn res_3_golden_blocking_too_many_connections() {
    let ServeError { code, detail } = ServeError::too_many_connections(64);
    pin_blocking("TOO_MANY_CONNECTIONS", "RES-3", served_error(code, detail), connecting(3), None);
}

/// RES-3: a connection whose HELLO did not arrive in full within the
/// deadline: the primary's real session answers with an Error frame; the
/// replica blocks and retries.
#[test]
fn res_3_golden_blocking_hello_timeout() {
    use aerodb_repl_core::engine::primary::{PrimarySession, SessionAction, SessionConfig};
    let mut session = PrimarySession::new(0, SessionConfig::default(), cluster(), aerodb_wal::durable::DurablePoint { lsn: 0, commit_id: 0 });
    let deadline = session.poll_timeout().unwrap();
    session.handle_timer(deadline);
    let Some(SessionAction::Send(bytes)) = session.poll_action() else { panic!("the session answers before it closes") };
    let (frame, _) = frame::decode(&bytes.to_vec(), frame::DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    let Ok(Message::Error(ServeError { code, detail })) = Message::decode(&frame) else { panic!("not an error frame") };
    pin_blocking("HELLO_TIMEOUT", "RES-3", served_error(code, detail), connecting(3), None);
}

/// P5-I14: `docs/operations.md` lists every halt and blocking code with its
/// rule, failure row and operator action exactly as explanations give them.
#[test]
fn p5_i14_operations_doc_lists_every_halt_and_blocking_code() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md")).unwrap();
    for c in HALT_CODES {
        let row = doc.lines().find(|l| l.starts_with(&format!("| `{}` |", c.code))).unwrap_or_else(|| panic!("docs/operations.md has no row for {}", c.code));
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells, [format!("`{}`", c.code).as_str(), c.rule_id, c.failure.unwrap_or("—"), c.meaning, c.action], "row of {}", c.code);
    }
}

/// Every halting and blocking code in the catalogue has a golden file above, each produced from real state.
#[test]
fn p5_i15_every_halt_code_has_a_golden_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for c in HALT_CODES {
        let kind = if c.halts { "halt" } else { "blocking" };
        let file = dir.join(format!("golden__{kind}_{}.snap", c.code.to_ascii_lowercase()));
        assert!(file.exists() || std::env::var("INSTA_UPDATE").is_ok_and(|v| v == "always"), "no golden file for {}: {}", c.code, file.display());
    }
}

// ---------------------------------------------------------------------------
// replication.safety: each refusal rule RS-1..RS-4, and admitted reads
// ---------------------------------------------------------------------------

fn safety_for(o: &ReplicaObserved, store: Option<&Arc<Store>>, request: ReadBound, horizon_override: Option<CommitId>) -> Explanation {
    let applied = store.map(|s| s.applied());
    let mut inputs = default_read_inputs(o, applied.as_ref(), store.map_or(0, |s| s.history_horizon()));
    inputs.requested_at = request.at;
    inputs.min_commit = request.min_commit;
    if let Some(h) = horizon_override {
        inputs.history_horizon = h;
    }
    let decision: GateDecision = evaluate(&inputs);
    explain::safety_from_decision(&decision, request, o, applied.as_ref())
}

/// RS-1: recovered, connecting, no handshake proven yet.
#[test]
fn rs_1_golden_refusal_before_handshake() {
    let (s, store) = replica_at(&[StateKind::Recovering, StateKind::Connecting], 6);
    let e = safety_for(&s.observe(), Some(&store), ReadBound::default(), None);
    assert_eq!(e.conclusion["first_failing_rule"], "RS-1");
    pin("safety_rs_1_connecting_before_handshake", &e, None);
}

/// RS-2: an integrity failure is recorded (the replica halted on a checksum).
#[test]
fn rs_2_golden_refusal_integrity_failure() {
    let v = violation(|v, recs| {
        let mut b = recs[3].bytes.clone();
        b[20] ^= 0x01;
        v.validate(recs[3].lsn, &Bytes::from(b)).map(|_| ())
    });
    let (o, _) = halted_streaming(Halt::from_violation(&v));
    let store = store_with(&history()[..3]);
    let e = safety_for(&o, Some(&store), ReadBound::default(), None);
    assert_eq!(e.rules_applied[1].rule_id, "RS-2");
    assert_eq!(e.rules_applied[1].evaluation, Some(false));
    pin("safety_rs_2_integrity_failure", &e, None);
}

/// RS-3: R above C_replica, and min_commit not reached.
#[test]
fn rs_3_golden_refusal_bound_and_min_commit() {
    let (s, store) = replica_at(STREAMING, 4);
    let o = s.observe();
    let e = safety_for(&o, Some(&store), ReadBound { at: Some(5), min_commit: None }, None);
    assert_eq!(e.conclusion["first_failing_rule"], "RS-3");
    pin("safety_rs_3_at_beyond_replica", &e, None);
    let e = safety_for(&o, Some(&store), ReadBound { at: None, min_commit: Some(6) }, None);
    assert_eq!(e.conclusion["first_failing_rule"], "RS-3");
    pin("safety_rs_3_min_commit_not_reached", &e, None);
}

/// RS-4: R below the history horizon. The store keeps full history (horizon
/// 0), so the gate is fed a horizon of 3, as a store that collected old
/// versions would report.
#[test]
fn rs_4_golden_refusal_below_history_horizon() {
    let (s, store) = replica_at(STREAMING, 6);
    let e = safety_for(&s.observe(), Some(&store), ReadBound { at: Some(2), min_commit: None }, Some(3));
    assert_eq!(e.conclusion["first_failing_rule"], "RS-4");
    pin("safety_rs_4_below_history_horizon", &e, None);
}

/// RS-5 / REPL-6: a streaming replica admits the default read; a
/// disconnected one after a proven handshake still does.
#[test]
fn rs_5_golden_admitted_reads() {
    let (mut s, store) = replica_at(STREAMING, 6);
    let e = explain::replica_safety(&replica_facts(s.observe(), Some(&store), None));
    assert_eq!(e.conclusion["read_safety"], "safe");
    pin("safety_streaming_safe", &e, None);
    s.block(Blocked::ConnectionLost { detail: "primary closed the connection".into() });
    let e = explain::replica_safety(&replica_facts(s.observe(), Some(&store), None));
    assert_eq!(e.conclusion["read_safety"], "safe");
    pin("safety_disconnected_after_handshake_safe", &e, None);
}

/// F-O1: no store, primary unreachable: what is unknown is stated.
#[test]
fn f_o1_golden_safety_without_local_state() {
    let mut s = shared_through(&[StateKind::Recovering, StateKind::Connecting]);
    s.block(Blocked::ConnectFailed { primary: PRIMARY_ADDR.into(), detail: "connection refused".into() });
    let f = replica_facts(s.observe(), None, None);
    let e = explain::replica_safety(&f);
    assert_eq!(e.conclusion["read_safety"], "unsafe");
    pin("safety_f_o1_no_local_state", &e, None);
    let (data, notes) = views::replica_replication_view(&f);
    assert!(!notes.is_empty());
    pin_value("view_replica_replication_f_o1", json!({"data": data, "notes": notes}));
    pin("read_f_o1_no_local_state", &explain::replica_read_visibility(&f, &ReadQuery { collection: "users", key: "alice", at: None }, None), None);
    pin("recovery_replica_not_run", &explain::replica_recovery(&f), None);
}

/// The primary's safety explanation.
#[test]
fn repl_1_golden_primary_safety() {
    let (f, _dir) = primary_with_snapshots();
    pin("safety_primary", &explain::primary_safety(&f), None);
}

// ---------------------------------------------------------------------------
// recovery.process
// ---------------------------------------------------------------------------

/// A primary whose WAL holds six commits plus a torn tail; returns its facts.
fn primary_with_torn_tail() -> (PrimaryFacts, TempDir) {
    let dir = TempDir::new().unwrap();
    let wal = dir.path().join("wal");
    write_wal(&wal, ChainTip::GENESIS, &history());
    let seg = wal.join(segment_file_name(0));
    let mut b = std::fs::read(&seg).unwrap();
    b.extend_from_slice(&history()[0].bytes[..30]);
    std::fs::write(&seg, b).unwrap();
    let f = primary_facts(dir.path(), "standalone");
    (f, dir)
}

/// A primary with a valid snapshot at 3, a damaged one at 6, an incomplete
/// snapshot directory, and six commits of WAL.
fn primary_with_snapshots() -> (PrimaryFacts, TempDir) {
    let dir = TempDir::new().unwrap();
    let recs = history();
    let snaps = dir.path().join("snapshots");
    create_snapshot(&OsDisk, &snaps, &store_with(&recs[..3]), CLUSTER).unwrap();
    let bad = create_snapshot(&OsDisk, &snaps, &store_with(&recs), CLUSTER).unwrap();
    let m = read_manifest(&OsDisk, &bad.path).unwrap();
    let f = bad.path.join(&m.files[0].name);
    let mut b = std::fs::read(&f).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0x02;
    std::fs::write(&f, b).unwrap();
    std::fs::create_dir_all(snaps.join(".tmp-00000000000000000007")).unwrap();
    write_wal(&dir.path().join("wal"), ChainTip::GENESIS, &recs);
    let f = primary_facts(dir.path(), "primary");
    (f, dir)
}

/// Recovers the primary in `root` for real and captures its facts.
fn primary_facts(root: &Path, role: &'static str) -> PrimaryFacts {
    // A running mark at genesis (a crash after the first startup): recovery judges the tail against it (CORE-5).
    let wal = root.join("wal");
    let mark_found = DurableMark::at(ChainTip::GENESIS, false, MarkPolicy::default().window_bytes());
    write_mark(&OsDisk, &wal, &mark_found).unwrap();
    let (store, appender, report) =
        recover_primary_with(OsDisk::shared(), &root.join("snapshots"), &wal, CLUSTER, TailRule::Mark { mark: mark_found }).unwrap();
    let applied = store.applied();
    let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
    let mark_written = DurableMark::at(tip, false, MarkPolicy::default().window_bytes());
    let held: Vec<SnapshotInfo> = list_snapshots(&OsDisk, &root.join("snapshots"))
        .unwrap()
        .into_iter()
        .filter_map(|s| read_manifest(&OsDisk, &s.path).ok().map(|m| SnapshotInfo::from_manifest(&s.path, &m, false)))
        .collect();
    let recs = history();
    PrimaryFacts {
        role,
        cluster_id: CLUSTER.into(),
        applied,
        durable: DurablePoint { lsn: applied.end_lsn, commit_id: applied.commit_id },
        history_horizon: store.history_horizon(),
        version_count: store.version_count(),
        gc: Some(store.gc_stats()),
        history_retain_commits: Some(aerodb_mvcc::GcPolicy::DEFAULT_RETAIN_COMMITS),
        active_read_views: vec![(4, 1), (6, 2)],
        segments: appender.segments().snapshot(),
        recovery: Some(report),
        snapshots: Ok(held),
        snapshot_policy: Some(SnapshotPolicy::new(1 << 20, false).with_wal_keep_bytes(300)),
        snapshot_status: Some(SchedulerStatus::default()),
        replicas: (role == "primary").then(|| golden_peers(&recs)),
        registry: (role == "primary").then(|| golden_registry(&recs)),
        now_ms: Some(NOW_MS),
        wal_shipped_bytes: (role == "primary").then_some(recs[5].end_lsn),
        wal_fsyncs: Some(0),
        http: None,
        repl_port: (role == "primary").then(|| ReplPortFacts {
            open_connections: 2,
            limits: vec![("max_connections", 64), ("hello_timeout_ms", 5000), ("max_frame_payload_bytes", 65536)],
            rejects: vec![("TOO_MANY_CONNECTIONS", 0), ("HELLO_TIMEOUT", 1), ("FRAME_TOO_LARGE", 0), ("PROTOCOL_ERROR", 2)],
        }),
        durability: Some(DurabilityFacts {
            startup: StartupDurability {
                mark_file: "present",
                mark_found: Some(mark_found),
                mark_written: Some(mark_written),
                accept_lost_history: false,
                accepted_loss: None,
                history_losses: HistoryLossFile { format_version: 1, losses: Vec::new(), older_losses: 0 },
            },
            policy: MarkPolicy::default(),
            live: MarkStatus {
                marked: Some(tip),
                durable: Some(tip),
                marks_written: 1,
                backpressure_waits: 0,
                window_bytes: MarkPolicy::default().window_bytes(),
                failed: false,
            },
        }),
        fence: (role == "primary").then(FenceFacts::default),
        scrub: None,
        repl_security: None,
    }
}

/// The golden primary's wall clock (Unix ms).
const NOW_MS: u64 = 1_700_000_000_000;

/// The connections open on the golden primary: `east` streaming, an
/// unnamed replica being sent a snapshot.
fn golden_peers(recs: &[Rec]) -> Vec<PeerReplica> {
    vec![
        PeerReplica {
            replica_id: REPLICA_ID.into(),
            name: Some("east".into()),
            peer: "replica.example:40000".into(),
            session: "streaming".into(),
            reported: Some(aerodb_repl_core::status::Positions {
                received_lsn: recs[5].end_lsn,
                validated_lsn: recs[5].end_lsn,
                applied_lsn: recs[4].end_lsn,
                applied_commit_id: 5,
            }),
            sent_lsn: recs[5].end_lsn,
        },
        PeerReplica {
            replica_id: "0123456789abcdef0123456789abcdef".into(),
            name: None,
            peer: "replica.example:40001".into(),
            session: "snapshot".into(),
            reported: None,
            sent_lsn: 0,
        },
    ]
}

/// The golden primary's registry: `east` streaming 1.5 s behind, `west`
/// disconnected a minute ago and beyond the cap, an unnamed replica
/// bootstrapping from a snapshot.
fn golden_registry(recs: &[Rec]) -> RegistryFacts {
    let peers = golden_peers(recs);
    let known = |id: &str, name: Option<&str>, address: &str, last_seen_ms: u64, last_seen_commit_id: u64| KnownReplica {
        replica_id: ReplicaId::parse(id).unwrap(),
        name: name.map(|n| ReplicaName::parse(n).unwrap()),
        address: address.into(),
        first_seen_ms: NOW_MS - 3_600_000,
        last_seen_ms,
        last_seen_commit_id,
        connections: 2,
        resume: None,
        reported: None,
        snapshot: None,
        last_end: Some("PEER_CLOSED".into()),
    };
    let mut east = known(REPLICA_ID, Some("east"), "10.0.0.7:40000", NOW_MS, 6);
    east.resume = Some(WalPoint { lsn: recs[2].end_lsn, commit_id: 3 });
    east.reported = peers[0].reported;
    let mut west = known("babe0000babe0000babe0000babe0000", Some("west"), "10.0.0.8:40100", NOW_MS - 60_000, 4);
    west.reported = Some(aerodb_repl_core::status::Positions {
        received_lsn: recs[1].end_lsn,
        validated_lsn: recs[1].end_lsn,
        applied_lsn: recs[1].end_lsn,
        applied_commit_id: 2,
    });
    let mut boot = known("0123456789abcdef0123456789abcdef", None, "10.0.0.9:40001", NOW_MS, 6);
    boot.connections = 1;
    boot.last_end = None;
    boot.snapshot = Some(WalPoint { lsn: recs[3].end_lsn, commit_id: 4 });
    RegistryFacts {
        replicas: vec![
            KnownReplicaFacts { known: boot, connection: Some(peers[1].clone()), oldest_unapplied_commit_time_ms: Some(NOW_MS - 500) },
            KnownReplicaFacts { known: east, connection: Some(peers[0].clone()), oldest_unapplied_commit_time_ms: Some(NOW_MS - 1_500) },
            KnownReplicaFacts { known: west, connection: None, oldest_unapplied_commit_time_ms: None },
        ],
        file: Some("<dir>/replicas.json".into()),
        loaded_at_startup: 2,
        load_error: None,
        moved_aside: None,
        forgotten_at_startup: Vec::new(),
        forgotten_total: 1,
        evicted_total: 0,
    }
}

/// CORE-3: the torn tail is truncated and reported with its reason.
#[test]
fn core_3_golden_recovery_primary_torn_tail() {
    let (f, dir) = primary_with_torn_tail();
    let e = explain::primary_recovery(&f);
    assert_eq!(e.conclusion["outcome"], "recovered");
    assert!(e.conclusion["bytes_truncated"].as_u64().is_some_and(|n| n > 0));
    pin("recovery_primary_torn_tail", &e, Some(dir.path()));
}

/// REPL-8 / F-S4 / F-S1: newest snapshot rejected, older one used, incomplete one removed, WAL replayed after it.
#[test]
fn f_s4_golden_recovery_primary_snapshot_rejected_and_used() {
    let (f, dir) = primary_with_snapshots();
    let e = explain::primary_recovery(&f);
    assert_eq!(e.conclusion["base"]["commit_id"], 3);
    pin("recovery_primary_snapshot", &e, Some(dir.path()));
}

/// Recovers the replica at `paths` for real and pins its `recovery.process`.
fn pin_replica_recovery(name: &str, paths: &ReplicaPaths, dir: &TempDir) {
    let Ok(Recovered::Ready(ready)) = recover_replica(OsDisk::shared(), paths, &files()) else { panic!("recovery failed") };
    let report = ready.info.report.clone().unwrap();
    let e = explain::recovery_process(&RecoveryInput {
        role: "replica",
        report: Some(&report),
        halt: None,
        replica_state: Some(StateKind::Connecting),
        commit_id: Some(6),
        durability: None,
        fence: None,
    });
    assert_eq!(e.conclusion["outcome"], "recovered");
    pin(name, &e, Some(dir.path()));
}

/// CORE-4: a WAL-bootstrapped replica recovers by replaying its whole WAL.
#[test]
fn core_4_golden_recovery_replica_wal() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    pin_replica_recovery("recovery_replica_wal", &paths, &dir);
}

/// P5-I9: a snapshot-bootstrapped replica loads exactly its cut and replays after it.
#[test]
fn p5_i9_golden_recovery_replica_snapshot() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    pin_replica_recovery("recovery_replica_snapshot", &paths, &dir);
}

/// F-RC2: recovery stopped at a halt: no report, the halt is the evidence.
#[test]
fn f_rc2_golden_recovery_replica_halted() {
    let dir = TempDir::new().unwrap();
    let paths = wal_replica(dir.path());
    std::fs::write(paths.metadata(), b"garbage").unwrap();
    let h = metadata_halt(&paths).view();
    let e = explain::recovery_process(&RecoveryInput {
        role: "replica",
        report: None,
        halt: Some(&h),
        replica_state: Some(StateKind::Halted),
        commit_id: None,
        durability: None,
        fence: None,
    });
    assert_eq!(e.conclusion["outcome"], "halted");
    pin("recovery_replica_halted", &e, Some(dir.path()));
}

/// F-O1: recovery still running: undetermined, missing evidence stated.
#[test]
fn f_o1_golden_recovery_in_progress() {
    let e = explain::recovery_process(&RecoveryInput {
        role: "replica",
        report: None,
        halt: None,
        replica_state: Some(StateKind::Recovering),
        commit_id: None,
        durability: None,
        fence: None,
    });
    assert_eq!(e.conclusion["outcome"], "undetermined");
    pin("recovery_replica_in_progress", &e, None);
}

// ---------------------------------------------------------------------------
// mvcc.read_visibility
// ---------------------------------------------------------------------------

/// MVCC-1: one key's chain at every interesting R on a primary.
#[test]
fn mvcc_1_golden_read_visibility_primary() {
    let (f, _dir) = primary_with_torn_tail();
    let store = store_with(&history());
    let chain = store.version_chain(b"users", b"alice");
    for (name, at) in [("default", None), ("at_0", Some(0)), ("at_2", Some(2)), ("at_4_tombstone", Some(4)), ("at_7_beyond", Some(7))] {
        let e = explain::primary_read_visibility(&f, &ReadQuery { collection: "users", key: "alice", at }, &chain);
        pin(&format!("read_primary_{name}"), &e, None);
    }
    let missing = store.version_chain(b"users", b"zed");
    pin("read_primary_never_written", &explain::primary_read_visibility(&f, &ReadQuery { collection: "users", key: "zed", at: None }, &missing), None);
}

/// MVCC-1 / RS-3: on a replica the gate comes first, then the chain.
#[test]
fn mvcc_1_golden_read_visibility_replica() {
    let (s, store) = replica_at(STREAMING, 5);
    let f = replica_facts(s.observe(), Some(&store), None);
    let chain = store.version_chain(b"users", b"alice");
    for (name, at) in [("default", None), ("at_3", Some(3)), ("at_6_beyond", Some(6))] {
        let e = explain::replica_read_visibility(&f, &ReadQuery { collection: "users", key: "alice", at }, Some(&chain));
        pin(&format!("read_replica_{name}"), &e, None);
    }
}

// ---------------------------------------------------------------------------
// Views and metrics
// ---------------------------------------------------------------------------

fn view(pair: (Value, Vec<String>)) -> Value {
    json!({"data": pair.0, "notes": pair.1})
}

/// P5-I14: every primary view, pinned.
#[test]
fn p5_i14_golden_primary_views_and_metrics() {
    let (f, dir) = primary_with_snapshots();
    for (name, v) in [
        ("status", views::primary_status(&f)),
        ("wal", views::primary_wal(&f)),
        ("mvcc", views::primary_mvcc(&f)),
        ("snapshots", views::primary_snapshots(&f)),
        ("replication", views::primary_replication(&f)),
    ] {
        pin_value(&format!("view_primary_{name}"), redact(view(v), dir.path()));
    }
    insta::assert_snapshot!("metrics_primary", metrics::primary_metrics(&f));
}

/// P5-I14: every replica view, pinned (streaming, snapshot-bootstrapped, with refusals counted).
#[test]
fn p5_i14_golden_replica_views_and_metrics() {
    let dir = TempDir::new().unwrap();
    let paths = snapshot_replica(dir.path());
    let Ok(Recovered::Ready(ready)) = recover_replica(OsDisk::shared(), &paths, &files()) else { panic!("recovery failed") };
    let mut s = shared_through(STREAMING);
    let recs = history();
    let applied = ready.store.applied();
    s.update(|o| {
        o.metadata = Some(ready.info.metadata.clone());
        o.positions = aerodb_repl_core::status::Positions {
            received_lsn: applied.end_lsn,
            validated_lsn: applied.end_lsn,
            applied_lsn: applied.end_lsn,
            applied_commit_id: applied.commit_id,
        };
        o.primary = Some(PrimaryProgress { commit_id: 8, durable_lsn: recs[5].end_lsn + 100 });
        o.lag_ms = Some(1_500);
        o.name = Some(ReplicaName::parse("east").unwrap());
        o.recovery = ready.info.report.clone().map(Arc::new);
    });
    let mut f = replica_facts(s.observe(), Some(&ready.store), Some(&paths.wal));
    f.bootstrap_snapshot_bytes = Some(4096);
    for (name, v) in [
        ("status", views::replica_status(&f)),
        ("wal", views::replica_wal(&f)),
        ("mvcc", views::replica_mvcc(&f)),
        ("snapshots", views::replica_snapshots(&f)),
        ("replication", views::replica_replication_view(&f)),
    ] {
        pin_value(&format!("view_replica_{name}"), redact(view(v), dir.path()));
    }
    insta::assert_snapshot!("metrics_replica", metrics::replica_metrics(&f));
    pin("recovery_replica_from_facts", &explain::replica_recovery(&f), Some(dir.path()));
}

/// REPL-10, RES-2: the primary's `/v1/replication` lists every replica it
/// knows — streaming, bootstrapping, disconnected — with its name, address,
/// last-known positions, last seen, lag in commits, bytes and seconds
/// (`live` or `last_known`) and its retention forecast (`reserved`,
/// `beyond_cap` under a 300-byte `--wal-keep-bytes`), and `/metrics` has
/// one series set per replica labelled by name, never by address.
#[test]
fn res_2_golden_primary_registry_view_and_metrics() {
    let (f, dir) = primary_with_snapshots();
    let v = views::primary_replication(&f);
    let replicas = v.0["replicas"].as_array().unwrap().clone();
    let states: Vec<&str> = replicas.iter().map(|r| r["retention"]["state"].as_str().unwrap()).collect();
    assert!(states.contains(&"reserved") && states.contains(&"beyond_cap"), "{states:?}");
    assert_eq!(replicas.iter().map(|r| r["lag"]["as_of"].as_str().unwrap()).collect::<Vec<_>>(), ["live", "live", "last_known"]);
    pin_value("view_primary_replication_registry", redact(view(v), dir.path()));
    let text = metrics::primary_metrics(&f);
    assert!(!text.contains("peer=\"replica.example") && !text.contains("peer=\"10.0.0"), "{text}");
    assert!(text.contains("aerodb_replica_lag_seconds{replica_id=\"feedfacefeedfacefeedfacefeedface\",peer=\"east\"} 1.5"), "{text}");
}

/// REPL-10: a replica whose primary is gone shows its last-known lag,
/// marked `last_known` (never a live `lag 0`), with a note; `/metrics`
/// says `aerodb_replication_lag_live 0`.
#[test]
fn repl_10_golden_replica_lag_last_known_while_disconnected() {
    let (mut s, store) = streaming(4);
    s.update(|o| {
        o.primary = Some(PrimaryProgress { commit_id: 4, durable_lsn: history()[3].end_lsn });
        o.lag_ms = Some(0);
    });
    let live = replica_facts(s.observe(), store.as_ref(), None);
    let v = view(views::replica_replication_view(&live));
    assert_eq!(v["data"]["lag"]["as_of"], "live");
    assert!(metrics::replica_metrics(&live).contains("aerodb_replication_lag_live 1"));
    s.block(Blocked::ConnectionLost { detail: "primary closed the connection".into() });
    let f = replica_facts(s.observe(), store.as_ref(), None);
    let v = view(views::replica_replication_view(&f));
    assert_eq!((v["data"]["lag"]["as_of"].as_str(), v["data"]["lag"]["commits"].as_u64()), (Some("last_known"), Some(0)));
    assert!(metrics::replica_metrics(&f).contains("aerodb_replication_lag_live 0"));
    pin_value("view_replica_replication_lag_last_known", v);
}

/// The HTTP facts of a node with some load and some refusals.
fn http_facts() -> HttpFacts {
    let surface = |name: &'static str, open: u64, max: u64, rejected: u64| HttpSurfaceFacts {
        surface: name,
        open_connections: open,
        limits: vec![
            ("max_connections", max),
            ("header_timeout_ms", 5000),
            ("body_timeout_ms", 30000),
            ("max_url_bytes", 8192),
            ("max_header_bytes", 16384),
            ("max_header_count", 100),
        ],
        rejects: vec![("TOO_MANY_CONNECTIONS", rejected), ("URI_TOO_LONG", 1), ("HEADERS_TOO_LARGE", 0)],
    };
    HttpFacts {
        surfaces: vec![surface("client", 7, 2048, 3), surface("dx", 1, 64, 0)],
        waiting_reads: 5,
        body_bytes_in_flight: 4096,
        limits: vec![("max_waiting_reads", 1024), ("body_budget_bytes", 67108864), ("shutdown_timeout_ms", 3000)],
    }
}

/// The `aerodb_http_*` families of an exposition.
fn http_lines(exposition: &str) -> String {
    exposition.lines().filter(|l| l.contains("aerodb_http_")).collect::<Vec<_>>().join("\n")
}

/// RES-3: every HTTP bound, the open connections, waiting reads, in-flight
/// body bytes and refusals by code are on `/metrics`, the same on a primary
/// and a replica.
#[test]
fn res_3_golden_http_metrics() {
    let (mut f, _dir) = primary_with_snapshots();
    f.http = Some(http_facts());
    let primary = http_lines(&metrics::primary_metrics(&f));
    insta::assert_snapshot!("metrics_http", primary);
    let store = store_with(&history()[..3]);
    let mut r = replica_facts(shared_through(STREAMING).observe(), Some(&store), None);
    r.http = Some(http_facts());
    assert_eq!(http_lines(&metrics::replica_metrics(&r)), primary);
}

/// P5-I14: a halted replica's metrics carry the halt code as a 0/1 gauge.
#[test]
fn p5_i14_golden_halted_replica_metrics() {
    let recs = history();
    let v = violation(|v, _| v.validate(recs[3].lsn + 1, &Bytes::from(recs[3].bytes.clone())).map(|_| ()));
    let (o, _) = halted_streaming(Halt::from_violation(&v));
    let store = store_with(&recs[..3]);
    let f = replica_facts(o, Some(&store), None);
    insta::assert_snapshot!("metrics_replica_halted", metrics::replica_metrics(&f));
    pin_value("view_replica_replication_halted", view(views::replica_replication_view(&f)));
}

/// REPL-4: the same state renders the same bytes, every time.
#[test]
fn repl_4_same_state_renders_identical_bytes() {
    let render = || {
        let (f, dir) = primary_with_snapshots();
        let e = explain::primary_recovery(&f).to_value();
        (serde_json::to_string(&redact(e, dir.path())).unwrap(), metrics::primary_metrics(&f))
    };
    assert_eq!(render(), render());
}

// ---------------------------------------------------------------------------
// Durable mark (CORE-5, F-P4), fencing (REPL-11, F-P5), scrub (CORE-6, F-SC1)
// ---------------------------------------------------------------------------

/// A real fence: the primary (six commits) answers REPLICA_AHEAD to a
/// replica of its cluster that holds CommitIds up to 8.
fn real_fence() -> aerodb_repl_core::fence::Fence {
    let recs = history();
    let mut h = hello(ChainTip { end_lsn: recs[5].end_lsn + 240, commit_id: 8, fingerprint: Fingerprint(0x0a0b_0c0d) });
    h.name = Some(aerodb_repl_core::ids::ReplicaName::parse("replica-east").unwrap());
    let primary = History(recs);
    let Decision::Refuse(refuse) = decide(&primary, &h) else { panic!("expected a refusal") };
    aerodb_repl_core::fence::fence_for(&cluster(), aerodb_repl_core::auth::PeerAuth::NotRequired, &h, &refuse).expect("REPLICA_AHEAD fences")
}

/// REPL-11, F-P5: a fenced primary explains the fence: REPL-11 fails in
/// `replication.safety` (writes refused, reads safe), `/v1/replication`,
/// `/v1/status` and `/metrics` show it, and the recovery explanation says a
/// persisted fence holds.
#[test]
fn repl_11_golden_fenced_primary_explains_the_fence() {
    let (mut f, dir) = primary_with_snapshots();
    f.fence = Some(FenceFacts { current: Some(real_fence()), lifted_at_startup: None, proofs: 1 });
    let e = explain::primary_safety(&f);
    assert_eq!(e.first_failing_rule().map(|r| r.rule_id), Some("REPL-11"));
    assert_eq!((e.conclusion["read_safety"].as_str(), e.conclusion["accepts_writes"].as_bool()), (Some("safe"), Some(false)));
    pin("safety_primary_fenced", &e, None);
    pin_value("view_primary_replication_fenced", redact(view(views::primary_replication(&f)), dir.path()));
    pin_value("view_primary_status_fenced", redact(view(views::primary_status(&f)), dir.path()));
    let m = metrics::primary_metrics(&f);
    assert!(m.contains("aerodb_primary_fenced 1"), "{m}");
    let r = explain::primary_recovery(&f);
    assert_eq!(r.rules_applied.last().map(|x| x.rule_id), Some("REPL-11"));
    pin("recovery_primary_fenced", &r, Some(dir.path()));
}

/// REPL-11: `--lift-fence` is recorded in the recovery explanation with
/// the proof it lifted.
#[test]
fn repl_11_golden_recovery_records_the_lifted_fence() {
    let (mut f, dir) = primary_with_snapshots();
    f.fence = Some(FenceFacts { current: None, lifted_at_startup: Some(real_fence()), proofs: 0 });
    let r = explain::primary_recovery(&f);
    let lifted = r.rules_applied.iter().find(|x| x.rule_id == "REPL-11").unwrap();
    assert_eq!(lifted.evaluation, Some(true));
    assert!(lifted.evidence["lifted_at_startup"]["replica_id"].is_string(), "{}", lifted.evidence);
    pin("recovery_primary_fence_lifted", &r, Some(dir.path()));
}

/// A clean-shutdown mark at the end of the six-commit WAL in `dir`, then `damage`.
fn refused_recovery(damage: impl FnOnce(&Path, &[Rec])) -> (aerodb_wal::mark_check::MarkViolation, TempDir) {
    let dir = TempDir::new().unwrap();
    let wal = dir.path().join("wal");
    let recs = history();
    write_wal(&wal, ChainTip::GENESIS, &recs);
    let mark = DurableMark::at(recs[5].tip(), true, MarkPolicy::default().window_bytes());
    write_mark(&OsDisk, &wal, &mark).unwrap();
    damage(&wal.join(segment_file_name(0)), &recs);
    let err = match recover_primary_with(OsDisk::shared(), &dir.path().join("snapshots"), &wal, CLUSTER, TailRule::Mark { mark }) {
        Ok(_) => panic!("recovery must refuse"),
        Err(e) => e,
    };
    (err.mark_violation().cloned().unwrap_or_else(|| panic!("a mark violation: {err}")), dir)
}

/// F-P4, CORE-5: the refused startup's `recovery.process`: the mark, the
/// WAL end, the damaged range, nothing truncated; for a missing last
/// record, a flipped byte in it, and garbage after a clean shutdown.
#[test]
fn f_p4_golden_recovery_refused_before_the_mark() {
    let (missing, _d1) = refused_recovery(|seg, recs| {
        let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
        f.set_len(64 + recs[5].lsn).unwrap();
    });
    let (flipped, _d2) = refused_recovery(|seg, recs| {
        let mut b = std::fs::read(seg).unwrap();
        b[(64 + recs[5].lsn + 20) as usize] ^= 0x10;
        std::fs::write(seg, b).unwrap();
    });
    let (garbage, _d3) = refused_recovery(|seg, _| {
        let mut b = std::fs::read(seg).unwrap();
        b.extend_from_slice(&[0xEE; 40]);
        std::fs::write(seg, b).unwrap();
    });
    for (name, v, code) in [
        ("recovery_refused_last_record_missing", missing, "WAL_BEFORE_MARK"),
        ("recovery_refused_last_record_flipped", flipped, "WAL_BEFORE_MARK"),
        ("recovery_refused_garbage_after_clean_shutdown", garbage, "WAL_DAMAGED_AFTER_CLEAN_SHUTDOWN"),
    ] {
        let e = explain::recovery_refused("primary", &v);
        assert_eq!((e.conclusion["outcome"].as_str(), e.conclusion["code"].as_str()), (Some("refused"), Some(code)), "{name}");
        assert_eq!(e.first_failing_rule().map(|r| r.rule_id), Some("CORE-5"));
        assert_eq!(e.conclusion["bytes_truncated"], 0);
        pin(name, &e, None);
    }
}

/// CORE-5: an accepted loss (`--accept-lost-history`) is recovered by
/// truncating to the last valid record and explained with the lost LSNs
/// and CommitIds.
#[test]
fn core_5_golden_recovery_accepted_loss() {
    let dir = TempDir::new().unwrap();
    let wal = dir.path().join("wal");
    let recs = history();
    write_wal(&wal, ChainTip::GENESIS, &recs);
    let mark = DurableMark::at(recs[5].tip(), true, MarkPolicy::default().window_bytes());
    write_mark(&OsDisk, &wal, &mark).unwrap();
    let seg = wal.join(segment_file_name(0));
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(64 + recs[4].lsn + 7).unwrap();
    let (store, appender, report) =
        recover_primary_with(OsDisk::shared(), &dir.path().join("snapshots"), &wal, CLUSTER, TailRule::AcceptLoss { mark: Some(mark) }).unwrap();
    let loss = aerodb_wal::history::HistoryLossRecord::from_verdict(&report.store.wal.tail, Some(&mark), "").unwrap();
    assert_eq!(loss.lost.map(|l| (l.first_commit_id, l.last_commit_id)), Some((5, 6)));
    let applied = store.applied();
    let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
    let mut facts = primary_facts(dir.path(), "standalone");
    facts.recovery = Some(report);
    facts.segments = appender.segments().snapshot();
    facts.durability = Some(DurabilityFacts {
        startup: StartupDurability {
            mark_file: "present",
            mark_found: Some(mark),
            mark_written: Some(DurableMark::at(tip, false, MarkPolicy::default().window_bytes())),
            accept_lost_history: true,
            accepted_loss: Some(loss.clone()),
            history_losses: HistoryLossFile { format_version: 1, losses: vec![loss], older_losses: 0 },
        },
        policy: MarkPolicy::default(),
        live: MarkStatus {
            marked: Some(tip),
            durable: Some(tip),
            marks_written: 1,
            backpressure_waits: 0,
            window_bytes: MarkPolicy::default().window_bytes(),
            failed: false,
        },
    });
    let e = explain::primary_recovery(&facts);
    assert_eq!(e.conclusion["history_lost_at_this_startup"]["lost"]["first_commit_id"], 5);
    pin("recovery_primary_accepted_loss", &e, Some(dir.path()));
}

/// CORE-6, F-SC1: `/v1/scrub` after a pass that withdrew a damaged
/// snapshot and found a damaged sealed segment ("when" in CommitIds), with
/// its metrics; and on a node without a scrub.
#[test]
fn f_sc1_golden_scrub_view_and_metrics() {
    use aerodb_snapshot::scrub::{Damage, FindingAction, ScrubPolicy, ScrubState, ScrubTarget, TargetKind, TargetOutcome};
    let target = |kind: TargetKind, name: &str| ScrubTarget { kind, name: name.into(), path: PathBuf::from(name), expected_end: None, cluster_id: None };
    let mut s = ScrubState::new(ScrubPolicy::default());
    s.begin_pass(
        vec![
            target(TargetKind::Snapshot, "snapshots/00000000000000000006"),
            target(TargetKind::Snapshot, "snapshots/00000000000000000003"),
            target(TargetKind::WalSegment, "wal/00000000000000000000.seg"),
        ],
        Some(6),
        0,
    );
    s.add_bytes(4096);
    s.finish_target(TargetOutcome::Verified { bytes: 4096 }, Some(6), 10);
    s.finish_target(
        TargetOutcome::Damaged {
            damage: Damage {
                file: "snapshots/00000000000000000003/data-000000.bin".into(),
                offset: 0,
                length: Some(812),
                lsn: None,
                code: "SNAPSHOT_CHECKSUM",
                check_rule: "F-S4",
                detail: "snapshot 00000000000000000003: data-000000.bin crc32c mismatch (manifest 0x1badb002, computed 0x0defaced)".into(),
            },
            bytes: 812,
            action: FindingAction::Withdrawn { to: "snapshots/.damaged-00000000000000000003".into() },
        },
        Some(7),
        20,
    );
    s.finish_target(
        TargetOutcome::Damaged {
            damage: Damage {
                file: "wal/00000000000000000000.seg".into(),
                offset: 64 + 118,
                length: None,
                lsn: Some(118),
                code: "CHECKSUM_MISMATCH",
                check_rule: "CORE-2",
                detail: "invalid record at LSN 118: crc32c mismatch: stored 0x00000001, computed 0x00000002".into(),
            },
            bytes: 300,
            action: FindingAction::Reported,
        },
        Some(7),
        30,
    );
    let status = s.status();
    pin_value("view_scrub_findings", view(views::scrub_view("primary", Some(&status))));
    pin_value("view_scrub_none", view(views::scrub_view("replica", None)));
    let (mut f, _dir) = primary_with_snapshots();
    f.scrub = Some(status);
    let m = metrics::primary_metrics(&f);
    let scrub_lines: Vec<&str> = m.lines().filter(|l| l.contains("aerodb_scrub")).collect();
    insta::assert_snapshot!("metrics_scrub", scrub_lines.join("\n"));
}

// ---------------------------------------------------------------------------
// Garbage collection: real GC records (MVCC-4, RS-4)
// ---------------------------------------------------------------------------

/// A real GC record after `last` stating `horizon` (the WAL's own encoder,
/// the digest the store predicts), applied to `store` through the one
/// apply function. Returns its bytes.
fn apply_real_gc(store: &Store, last: &Rec, horizon: CommitId) -> Vec<u8> {
    let digest = store.gc_digest(horizon).unwrap();
    let (bytes, fp) = aerodb_wal::record::encode_gc_record(last.commit_id + 1, digest, last.fingerprint, horizon).unwrap();
    let position = RecordPosition { lsn: last.end_lsn, end_lsn: last.end_lsn + bytes.len() as u64, commit_id: last.commit_id + 1, fingerprint: fp };
    store.apply(ApplyInput { position, state_digest: digest, body: &RecordBody::Gc { horizon } }).unwrap();
    bytes
}

/// A streaming replica that applied the six commits and then a GC record
/// (CommitId 7) stating horizon 3.
fn replica_after_gc() -> (Obs, Arc<Store>) {
    let (mut s, store) = replica_at(STREAMING, 6);
    apply_real_gc(&store, &history()[5], 3);
    let a = store.applied();
    s.update(|o| {
        o.positions =
            aerodb_repl_core::status::Positions { received_lsn: a.end_lsn, validated_lsn: a.end_lsn, applied_lsn: a.end_lsn, applied_commit_id: a.commit_id };
        o.primary = Some(PrimaryProgress { commit_id: a.commit_id, durable_lsn: a.end_lsn });
    });
    (s, store)
}

/// RS-4, MVCC-4 on a replica: after a real GC record at horizon 3, a read
/// at 2 is refused under RS-4 with the numbers (safety and read
/// explanations), and a read at 3 is admitted over the retained chain
/// (alice@1 is gone; alice@2 is the newest version at or below 3).
#[test]
fn rs_4_golden_replica_refusal_after_a_real_gc_record() {
    let (s, store) = replica_after_gc();
    assert_eq!((store.history_horizon(), store.applied().commit_id), (3, 7));
    let o = s.observe();
    let e = safety_for(&o, Some(&store), ReadBound { at: Some(2), min_commit: None }, None);
    assert_eq!(e.conclusion["first_failing_rule"], "RS-4");
    pin("safety_rs_4_after_gc_record", &e, None);
    let f = replica_facts(o, Some(&store), None);
    let chain = store.version_chain(b"users", b"alice");
    assert_eq!(chain.iter().map(|v| v.commit_id).collect::<Vec<_>>(), [3, 4, 5]);
    for (name, at) in [("below", 2), ("at", 3)] {
        let e = explain::replica_read_visibility(&f, &ReadQuery { collection: "users", key: "alice", at: Some(at) }, Some(&chain));
        pin(&format!("read_replica_{name}_gc_horizon"), &e, None);
    }
    pin_value("view_replica_mvcc_after_gc", view(views::replica_mvcc(&f)));
}

/// RS-4, MVCC-4 on a primary recovered for real from a WAL holding six
/// commits and a GC record at horizon 3: its read explanation refuses R = 2
/// under RS-4 and answers R = 3 from the retained chain; `/v1/mvcc` shows
/// the horizon and GC counters.
#[test]
fn rs_4_golden_primary_refusal_after_a_real_gc_record() {
    let dir = TempDir::new().unwrap();
    let recs = history();
    let store = store_with(&recs);
    let gc = apply_real_gc(&store, &recs[5], 3);
    let mut app = SegmentAppender::create(OsDisk::shared(), &dir.path().join("wal"), ChainTip::GENESIS.segment_header()).unwrap();
    for r in &recs {
        app.append(r.lsn, &r.bytes).unwrap();
    }
    app.append(recs[5].end_lsn, &gc).unwrap();
    app.sync().unwrap();
    drop(app);
    let f = primary_facts(dir.path(), "primary");
    assert_eq!((f.history_horizon, f.applied), (3, store.applied()));
    let chain = store.version_chain(b"users", b"alice");
    for (name, at) in [("below", 2), ("at", 3)] {
        let e = explain::primary_read_visibility(&f, &ReadQuery { collection: "users", key: "alice", at: Some(at) }, &chain);
        pin(&format!("read_primary_{name}_gc_horizon"), &e, None);
    }
    assert_eq!(explain::primary_read_visibility(&f, &ReadQuery { collection: "users", key: "alice", at: Some(2) }, &chain).conclusion["refused_by"], "RS-4");
    pin_value("view_primary_mvcc_after_gc", view(views::primary_mvcc(&f)));
}

/// MVCC-4 / F-D3: a GC record whose horizon moves backwards is refused by
/// the apply function and halts the replica with GC_BAD_HORIZON.
#[test]
fn mvcc_4_golden_halt_gc_bad_horizon() {
    let (_, store) = replica_after_gc();
    let a = store.applied();
    let (bytes, fp) = aerodb_wal::record::encode_gc_record(a.commit_id + 1, a.state_digest, a.fingerprint, 2).unwrap();
    let position = RecordPosition { lsn: a.end_lsn, end_lsn: a.end_lsn + bytes.len() as u64, commit_id: a.commit_id + 1, fingerprint: fp };
    let e = store.apply(ApplyInput { position, state_digest: a.state_digest, body: &RecordBody::Gc { horizon: 2 } }).unwrap_err();
    assert_eq!(store.applied(), a, "nothing applied");
    pin_halt("GC_BAD_HORIZON", Halt::from_apply(&e, position.lsn), None);
}

// ---------------------------------------------------------------------------
// docs/operations.md lists every metric family and label (issue 14, item 10)
// ---------------------------------------------------------------------------

/// The `| `name` | type | labels | ...` rows of docs/operations.md's metrics table.
fn documented_metrics() -> std::collections::BTreeMap<String, (String, std::collections::BTreeSet<String>)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operations.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| `aerodb_") || l.starts_with("| `process_"))
        .map(|l| {
            let cols: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let labels = if cols[2] == "—" { Default::default() } else { cols[2].split(", ").map(|x| x.trim_matches('`').to_string()).collect() };
            (cols[0].trim_matches('`').to_string(), (cols[1].to_string(), labels))
        })
        .collect()
}

/// Family name → (type, label names seen on its samples) of an exposition.
fn emitted_metrics(text: &str, into: &mut std::collections::BTreeMap<String, (String, std::collections::BTreeSet<String>)>) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            into.entry(name.to_string()).or_insert_with(|| (kind.to_string(), Default::default()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap();
            let name = &line[..name_end];
            let entry = into.get_mut(name).unwrap_or_else(|| panic!("sample {line:?} without a TYPE line"));
            if let Some(labels) = line[name_end..].strip_prefix('{') {
                let labels = &labels[..labels.rfind('}').unwrap()];
                for pair in labels.split("\",") {
                    entry.1.insert(pair.split_once('=').unwrap().0.to_string());
                }
            }
        }
    }
}

/// P5-I14, F-O1: docs/operations.md lists exactly the metric families and
/// labels the node emits: every family and label a primary, a standalone
/// node and a replica (streaming, halted) emit is documented with its type,
/// and every documented family is emitted by one of them.
#[test]
fn p5_i14_operations_doc_lists_every_metric_family_and_label() {
    use aerodb_repl_explain::facts::ProcessFacts;
    use aerodb_snapshot::scrub::{ScrubPolicy, ScrubState, ScrubTarget, TargetKind};
    let process = ProcessFacts {
        resident_memory_bytes: Some(1),
        virtual_memory_bytes: Some(2),
        cpu_seconds: Some(0.5),
        open_fds: Some(3),
        max_fds: Some(4),
        start_time_seconds: Some(5.0),
        threads: Some(6),
    };
    let mut scrub = ScrubState::new(ScrubPolicy::default());
    let target = ScrubTarget { kind: TargetKind::WalSegment, name: "wal/x.seg".into(), path: PathBuf::from("x.seg"), expected_end: None, cluster_id: None };
    scrub.begin_pass(vec![target], Some(1), 0);
    scrub.add_bytes(10);
    let mut emitted = std::collections::BTreeMap::new();

    let (mut p, _dir) = primary_with_snapshots();
    p.http = Some(http_facts());
    p.scrub = Some(scrub.status());
    p.repl_security = Some(aerodb_repl_explain::facts::ReplSecurityFacts {
        token_required: true,
        tls: false,
        refused: vec![("AUTH_FAILED".to_string(), 1)],
        last_refused: None,
    });
    emitted_metrics(&metrics::primary_metrics_with(&p, Some(&process)), &mut emitted);
    let standalone_dir = TempDir::new().unwrap();
    write_wal(&standalone_dir.path().join("wal"), ChainTip::GENESIS, &history());
    emitted_metrics(&metrics::primary_metrics(&primary_facts(standalone_dir.path(), "standalone")), &mut emitted);

    let (o, store) = replica_at(STREAMING, 3);
    let mut observed = o.observe();
    observed.lag_ms = Some(1_500);
    let mut r = replica_facts(observed, Some(&store), None);
    r.http = Some(http_facts());
    r.scrub = Some(scrub.status());
    emitted_metrics(&metrics::replica_metrics_with(&r, Some(&process)), &mut emitted);
    let recs = history();
    let v = violation(|v, _| v.validate(recs[3].lsn + 1, &Bytes::from(recs[3].bytes.clone())).map(|_| ()));
    let (halted, _) = halted_streaming(Halt::from_violation(&v));
    emitted_metrics(&metrics::replica_metrics(&replica_facts(halted, Some(&store), None)), &mut emitted);

    let documented = documented_metrics();
    assert!(documented.len() > 50, "the metrics table was not found in docs/operations.md");
    for (name, (kind, labels)) in &emitted {
        let Some((doc_kind, doc_labels)) = documented.get(name) else { panic!("{name} ({kind}) is emitted but not in docs/operations.md") };
        assert_eq!(doc_kind, kind, "{name}: the type in docs/operations.md");
        if !labels.is_empty() {
            assert_eq!(doc_labels, labels, "{name}: the labels in docs/operations.md");
        }
    }
    let never: Vec<&String> = documented.keys().filter(|name| !emitted.contains_key(*name)).collect();
    assert!(never.is_empty(), "documented but never emitted: {never:?}");
}
