//! Transition tests in the openraft style: feed inputs, assert the exact
//! actions the engine emits and the state it is in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::{Bytes, BytesMut};

use aerodb_mvcc::AppliedState;
use aerodb_wal::record::encode_record;
use aerodb_wal::segment::SegmentHeader;
use aerodb_wal::{ChainTip, Fingerprint, Lsn, Op, StateDigest, GENESIS_FINGERPRINT};

use super::*;
use crate::handshake::{Refusal, Refuse, SnapshotResume};
use crate::metadata::{BootstrapBoundary, METADATA_FORMAT};
use crate::replica::StreamStart;
use crate::state::StateKind;
use crate::wire::{frame, FrameType, Message};

const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

fn config(bootstrap: BootstrapMethod) -> ReplicaConfig {
    ReplicaConfig {
        primary: "127.0.0.1:7701".into(),
        name: None,
        bootstrap,
        new_replica_id: ReplicaId::parse("r1").unwrap(),
        timing: ReplicaTiming::default(),
        max_unapplied_bytes: 1 << 20,
        seed: 7,
        recorded: None,
    }
}

fn cluster() -> ClusterId {
    ClusterId::parse(CLUSTER).unwrap()
}

fn drain(e: &mut ReplicaEngine) -> Vec<ReplicaAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn frame_of(m: Message) -> Bytes {
    m.to_frame()
}

fn sent_messages(actions: &[ReplicaAction]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            ReplicaAction::Send { frame, .. } => {
                let (f, _) = frame::decode(frame, frame::DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
                Some(Message::decode(&f).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// Records 1..=n of a small history starting at genesis: their bytes and tips.
fn history(n: u64) -> (Vec<Bytes>, Vec<ChainTip>) {
    let mut tip = ChainTip::GENESIS;
    let (mut recs, mut tips) = (Vec::new(), Vec::new());
    for i in 1..=n {
        let ops = vec![Op::Put { collection: Bytes::from_static(b"c"), key: Bytes::from(format!("k{i}")), doc: Bytes::from(format!("{{\"i\":{i}}}")) }];
        let (bytes, fp) = encode_record(i, StateDigest(i as u128), tip.fingerprint, &ops).unwrap();
        tip = ChainTip { end_lsn: tip.end_lsn + bytes.len() as u64, commit_id: i, fingerprint: fp };
        recs.push(Bytes::from(bytes));
        tips.push(tip);
    }
    (recs, tips)
}

fn ready_at_genesis() -> ReadyInfo {
    let metadata = ReplicaMetadata {
        format_version: METADATA_FORMAT,
        cluster_id: cluster(),
        replica_id: ReplicaId::parse("r1").unwrap(),
        bootstrap: BootstrapBoundary {
            method: BootstrapMethod::Wal,
            boundary_commit_id: 0,
            boundary_lsn: 0,
            boundary_fingerprint: GENESIS_FINGERPRINT,
            boundary_state_digest: StateDigest::EMPTY,
        },
    };
    ReadyInfo { metadata, start: StreamStart { applied: AppliedState::GENESIS, segment: ChainTip::GENESIS.segment_header(), segment_len: 0 }, report: None }
}

/// An engine recovered at genesis, connected on conn 1 and streaming.
fn streaming() -> ReplicaEngine {
    let mut e = accepted(config(BootstrapMethod::Wal), 3, 1000);
    assert_eq!(e.state().kind(), StateKind::Streaming);
    drain(&mut e);
    e
}

/// An engine with `cfg`, recovered at genesis, connected on conn 1 and
/// accepted from LSN 0 by a primary at `primary_commit_id` / `durable_lsn`
/// (the actions of the handshake not yet drained).
fn accepted(cfg: ReplicaConfig, primary_commit_id: u64, durable_lsn: Lsn) -> ReplicaEngine {
    let mut e = ReplicaEngine::new(cfg);
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Ready(ready_at_genesis()));
    e.handle_connected(1, 1);
    let accept = Accept { cluster_id: cluster(), primary_commit_id, durable_lsn, start_lsn: Some(0), snapshot_resume: None, client_addr: None };
    e.handle_bytes(2, 1, &frame_of(Message::Accept(accept)));
    e
}

fn wal(start_lsn: Lsn, bytes: Bytes) -> Bytes {
    frame_of(Message::Wal(ReceivedChunk { start_lsn, segment_start: None, bytes }))
}

/// P5-I8 / F-S1: an empty replica asks for a snapshot, writes every piece,
/// installs it, and only then connects to stream; nothing is applied before.
#[test]
fn p5_i8_snapshot_bootstrap_emits_transfer_then_install_then_connect() {
    let mut e = ReplicaEngine::new(config(BootstrapMethod::Snapshot));
    e.handle_start(0);
    assert_eq!(drain(&mut e), vec![ReplicaAction::Recover]);
    e.handle_recovered(0, RecoveryOutcome::Uninitialised);
    assert_eq!(drain(&mut e), vec![ReplicaAction::Connect { conn: 1 }]);
    assert_eq!(e.state().kind(), StateKind::Bootstrapping);
    e.handle_connected(1, 1);
    let hello = sent_messages(&drain(&mut e));
    assert!(matches!(&hello[..], [Message::Hello(h)] if h.request == HelloRequest::Snapshot && h.cluster_id.is_none()));
    let accept = Accept { cluster_id: cluster(), primary_commit_id: 9, durable_lsn: 900, start_lsn: None, snapshot_resume: None, client_addr: None };
    let mut wire = frame_of(Message::Accept(accept)).to_vec();
    wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(b"{manifest}"))));
    wire.extend_from_slice(&frame_of(Message::SnapshotChunk { file_index: 0, offset: 0, bytes: Bytes::from_static(b"abc") }));
    wire.extend_from_slice(&frame_of(Message::SnapshotEnd));
    e.handle_bytes(2, 1, &wire);
    assert_eq!(
        drain(&mut e),
        vec![
            ReplicaAction::BootstrapBegin { manifest: Bytes::from_static(b"{manifest}") },
            ReplicaAction::BootstrapPiece { file_index: 0, offset: 0, bytes: Bytes::from_static(b"abc") },
            ReplicaAction::BootstrapFinish { cluster_id: cluster(), replica_id: ReplicaId::parse("r1").unwrap() },
        ]
    );
    assert!(matches!(e.state(), ReplicaState::Bootstrapping { progress, .. } if progress.phase == BootstrapPhase::Installing && progress.bytes_done == 3));
    e.handle_completion(3, Completion::BootstrapBegun { bytes_total: 3 });
    e.handle_completion(3, Completion::PieceWritten { bytes: 3 });
    let mut info = ready_at_genesis();
    info.metadata.bootstrap.method = BootstrapMethod::Snapshot;
    e.handle_completion(4, Completion::Installed { info });
    assert_eq!(drain(&mut e), vec![ReplicaAction::Close { conn: 1 }, ReplicaAction::Connect { conn: 2 }]);
    assert_eq!(e.state().kind(), StateKind::Connecting);
}

/// REPL-5 / F-D1: a replica holding state halts on DIVERGED, persisting the
/// halt before anything else, and never leaves Halted.
#[test]
fn repl_5_refusal_of_a_bootstrapped_replica_halts_and_persists() {
    let mut e = ReplicaEngine::new(config(BootstrapMethod::Wal));
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Ready(ready_at_genesis()));
    e.handle_connected(1, 1);
    drain(&mut e);
    let refusal = Refusal::Diverged { primary_durable_lsn: 10, primary_commit_id: 1, primary_record_end_lsn: None, primary_record_fingerprint: None };
    e.handle_bytes(2, 1, &frame_of(Message::Refuse(Refuse { refusal, detail: "differs".into() })));
    let actions = drain(&mut e);
    assert!(matches!(&actions[..], [ReplicaAction::PersistHalt { halt: Halt::Refused { .. } }, ReplicaAction::Close { conn: 1 }]), "{actions:?}");
    assert_eq!(e.state().kind(), StateKind::Halted);
    e.handle_timer(1_000_000);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.state().kind(), StateKind::Halted);
}

/// F-C1 (issue: wrong --primary): an empty replica that reaches something
/// that is not an AeroDB primary blocks and retries; it never persists a halt.
#[test]
fn f_c1_empty_replica_pointed_at_a_non_primary_blocks_and_retries() {
    let mut e = ReplicaEngine::new(config(BootstrapMethod::Snapshot));
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Uninitialised);
    e.handle_connected(1, 1);
    drain(&mut e);
    e.handle_bytes(2, 1, b"HTTP/1.1 400 Bad Request\r\n\r\n");
    let actions = drain(&mut e);
    assert!(!actions.iter().any(|a| matches!(a, ReplicaAction::PersistHalt { .. })), "{actions:?}");
    assert!(matches!(e.state(), ReplicaState::Disconnected { blocked: Blocked::PeerNotAerodb { .. }, .. }));
    let retry = e.poll_timeout().unwrap();
    e.handle_timer(retry);
    assert!(drain(&mut e).contains(&ReplicaAction::Connect { conn: 2 }));
}

/// F-C1 / REPL-5: a replica that holds state and reaches a non-primary halts.
#[test]
fn f_c1_bootstrapped_replica_pointed_at_a_non_primary_halts() {
    let mut e = ReplicaEngine::new(config(BootstrapMethod::Wal));
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Ready(ready_at_genesis()));
    e.handle_connected(1, 1);
    drain(&mut e);
    e.handle_bytes(2, 1, b"HTTP/1.1 400 Bad Request\r\n\r\n");
    assert!(matches!(e.state(), ReplicaState::Halted { halt: Halt::PeerNotAerodb { .. } }));
}

/// P5-I5 / F-V1: a record whose checksum fails inside a valid frame halts
/// before anything is persisted or applied.
#[test]
fn f_v1_corrupt_record_halts_before_persist() {
    let mut e = streaming();
    let (recs, _) = history(2);
    let mut bad = recs[0].to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    e.handle_bytes(3, 1, &wal(0, Bytes::from(bad)));
    let actions = drain(&mut e);
    assert!(!actions.iter().any(|a| matches!(a, ReplicaAction::Persist(_) | ReplicaAction::Apply { .. })), "{actions:?}");
    assert!(matches!(e.state(), ReplicaState::Halted { halt: Halt::Chain { .. } }));
}

/// P5-I5: records are handed to apply only once durable and validated, in order.
#[test]
fn p5_i5_apply_waits_for_durability() {
    let mut e = streaming();
    let (recs, tips) = history(3);
    let bytes: Vec<u8> = recs.iter().flat_map(|r| r.to_vec()).collect();
    e.handle_bytes(3, 1, &wal(0, Bytes::from(bytes.clone())));
    let actions = drain(&mut e);
    assert!(matches!(&actions[..], [ReplicaAction::Persist(w)] if w.start_lsn == 0 && w.bytes.len() == bytes.len()), "{actions:?}");
    assert_eq!(e.positions().applied_lsn, 0);
    assert_eq!(e.positions().validated_lsn, 0, "validated counts only durable bytes");
    e.handle_completion(4, Completion::Persisted { through: tips[2].end_lsn });
    let actions = drain(&mut e);
    assert!(matches!(&actions[..], [ReplicaAction::Apply { records }] if records.len() == 3), "{actions:?}");
    assert_eq!(e.positions().validated_lsn, tips[2].end_lsn);
    let applied = AppliedState { commit_id: 3, end_lsn: tips[2].end_lsn, fingerprint: tips[2].fingerprint, state_digest: StateDigest(3) };
    e.handle_completion(5, Completion::Applied { state: applied });
    let sent = sent_messages(&drain(&mut e));
    assert!(matches!(&sent[..], [Message::Report(p)] if p.applied_commit_id == 3));
}

/// P5-I4 / P5-I5: bytes handed over as owned buffers (the production
/// runtime's receive path, one buffer per frame, no copy) and the same bytes
/// copied in (the simulator's path) make exactly the same decisions, under
/// any cut of the stream: the same persists, the same records applied.
#[test]
fn p5_i4_owned_and_copied_receive_paths_decide_the_same() {
    let (recs, tips) = history(3);
    let mut stream = Vec::new();
    let mut at = 0;
    for r in &recs {
        stream.extend_from_slice(&wal(at, r.clone()));
        at += r.len() as u64;
    }
    let run = |feed: &dyn Fn(&mut ReplicaEngine)| {
        let mut e = streaming();
        feed(&mut e);
        let mut actions = drain(&mut e);
        e.handle_completion(4, Completion::Persisted { through: tips[2].end_lsn });
        actions.extend(drain(&mut e));
        (actions, e.positions())
    };
    let copied = run(&|e| e.handle_bytes(3, 1, &stream));
    assert_eq!(copied.0.iter().filter(|a| matches!(a, ReplicaAction::Persist(_))).count(), 3, "{:?}", copied.0);
    assert!(copied.0.iter().any(|a| matches!(a, ReplicaAction::Apply { records } if records.len() == 3)), "{:?}", copied.0);
    for cut in [1, 7, 12, 13, 50, stream.len()] {
        let owned = run(&|e| {
            for piece in stream.chunks(cut) {
                e.handle_received(3, 1, BytesMut::from(piece));
            }
        });
        assert_eq!(owned, copied, "cut {cut}");
    }
}

/// F-N2 / REPL-7: a chunk that starts at the wrong LSN is a protocol error:
/// connection dropped, nothing persisted, fresh handshake later.
#[test]
fn f_n2_out_of_order_chunk_drops_the_connection_and_persists_nothing() {
    let mut e = streaming();
    let (recs, _) = history(2);
    e.handle_bytes(3, 1, &wal(5, recs[1].clone()));
    let actions = drain(&mut e);
    assert_eq!(actions, vec![ReplicaAction::Close { conn: 1 }]);
    assert!(matches!(e.state(), ReplicaState::Disconnected { blocked: Blocked::Protocol { .. }, .. }));
}

/// RES-3 (issue 11 item 3): a record split across two frames and then a
/// disconnect does not livelock: the unvalidated half is dropped durably
/// before the next handshake, which resumes at the validated end.
#[test]
fn res_3_split_record_and_disconnect_resume_at_the_validated_end() {
    let mut e = streaming();
    let (recs, tips) = history(2);
    let mut first = recs[0].to_vec();
    first.extend_from_slice(&recs[1][..10]);
    e.handle_bytes(3, 1, &wal(0, Bytes::from(first.clone())));
    drain(&mut e);
    e.handle_completion(4, Completion::Persisted { through: first.len() as u64 });
    drain(&mut e);
    e.handle_closed(5, 1, "reset".into());
    assert_eq!(drain(&mut e), vec![ReplicaAction::Close { conn: 1 }]);
    let retry = e.poll_timeout().unwrap();
    e.handle_timer(retry);
    assert_eq!(drain(&mut e), vec![ReplicaAction::TruncateUnvalidated { to: tips[0].end_lsn }]);
    e.handle_completion(retry, Completion::Truncated);
    assert_eq!(drain(&mut e), vec![ReplicaAction::Connect { conn: 2 }]);
    e.handle_connected(retry + 1, 2);
    let sent = sent_messages(&drain(&mut e));
    assert!(matches!(&sent[..], [Message::Hello(h)] if h.request == HelloRequest::resume(tips[0])), "{sent:?}");
    let accept = Accept {
        cluster_id: cluster(),
        primary_commit_id: 2,
        durable_lsn: tips[1].end_lsn,
        start_lsn: Some(tips[0].end_lsn),
        snapshot_resume: None,
        client_addr: None,
    };
    e.handle_bytes(retry + 2, 2, &frame_of(Message::Accept(accept)));
    drain(&mut e);
    e.handle_bytes(retry + 3, 2, &wal(tips[0].end_lsn, recs[1].clone()));
    let actions = drain(&mut e);
    assert!(matches!(&actions[..], [ReplicaAction::Persist(w)] if w.start_lsn == tips[0].end_lsn), "{actions:?}");
}

/// REPL-10 / F-N1: silence beyond the idle limit only closes the connection.
#[test]
fn f_n1_idle_connection_is_closed_and_retried() {
    let mut e = streaming();
    let deadline = e.poll_timeout().unwrap();
    e.handle_timer(deadline - 1);
    assert!(drain(&mut e).is_empty());
    e.handle_timer(deadline);
    assert_eq!(drain(&mut e), vec![ReplicaAction::Close { conn: 1 }]);
    assert!(matches!(e.state(), ReplicaState::Disconnected { blocked: Blocked::ConnectionIdle { .. }, .. }));
}

/// F-C1: an ACCEPT naming another cluster than the recorded one halts.
#[test]
fn f_c1_accept_from_another_cluster_halts() {
    let mut e = ReplicaEngine::new(config(BootstrapMethod::Wal));
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Ready(ready_at_genesis()));
    e.handle_connected(1, 1);
    drain(&mut e);
    let other = ClusterId::parse("fedcba9876543210fedcba9876543210").unwrap();
    let accept = Accept { cluster_id: other, primary_commit_id: 0, durable_lsn: 0, start_lsn: Some(0), snapshot_resume: None, client_addr: None };
    e.handle_bytes(2, 1, &frame_of(Message::Accept(accept)));
    assert!(matches!(e.state(), ReplicaState::Halted { halt: Halt::ClusterMismatchAtAccept { .. } }));
}

/// RES-3: the engine stops taking frames while too much is unapplied
/// (backpressure to the socket), and resumes when storage catches up.
#[test]
fn res_3_backpressure_while_storage_lags() {
    let mut cfg = config(BootstrapMethod::Wal);
    cfg.max_unapplied_bytes = 1;
    let mut e = accepted(cfg, 2, 1000);
    drain(&mut e);
    let (recs, tips) = history(2);
    let mut wire = wal(0, recs[0].clone()).to_vec();
    wire.extend_from_slice(&wal(tips[0].end_lsn, recs[1].clone()));
    e.handle_bytes(3, 1, &wire);
    let actions = drain(&mut e);
    assert_eq!(actions.iter().filter(|a| matches!(a, ReplicaAction::Persist(_))).count(), 1, "{actions:?}");
    assert!(!e.wants_bytes());
    e.handle_completion(4, Completion::Persisted { through: tips[0].end_lsn });
    drain(&mut e);
    let applied = AppliedState { commit_id: 1, end_lsn: tips[0].end_lsn, fingerprint: tips[0].fingerprint, state_digest: StateDigest(1) };
    e.handle_completion(5, Completion::Applied { state: applied });
    let actions = drain(&mut e);
    assert!(actions.iter().any(|a| matches!(a, ReplicaAction::Persist(w) if w.start_lsn == tips[0].end_lsn)), "{actions:?}");
}

/// RES-3: a record larger than the whole budget still arrives. While only
/// its start is unapplied, nothing can be applied to free the budget, so
/// the engine keeps taking frames (the record is bounded by
/// MAX_RECORD_LEN); once it is whole the budget applies again.
#[test]
fn res_3_a_record_larger_than_the_budget_is_taken_to_its_end() {
    let (recs, tips) = history(2);
    let mut cfg = config(BootstrapMethod::Wal);
    cfg.max_unapplied_bytes = 8;
    assert!(recs[0].len() > 8 && recs[1].len() > 8, "every record is larger than the budget");
    let mut e = accepted(cfg, 2, 1000);
    drain(&mut e);
    // Record 1 in three frames, then record 2 in one, all read at once.
    let r = &recs[0];
    let cuts = [0, 5, r.len() / 2, r.len()];
    let mut wire = Vec::new();
    for w in cuts.windows(2) {
        wire.extend_from_slice(&wal(w[0] as u64, r.slice(w[0]..w[1])));
    }
    wire.extend_from_slice(&wal(tips[0].end_lsn, recs[1].clone()));
    e.handle_bytes(3, 1, &wire);
    let persisted: Vec<(Lsn, usize)> = drain(&mut e)
        .into_iter()
        .filter_map(|a| match a {
            ReplicaAction::Persist(w) => Some((w.start_lsn, w.bytes.len())),
            _ => None,
        })
        .collect();
    let pieces: Vec<(Lsn, usize)> = cuts.windows(2).map(|w| (w[0] as u64, w[1] - w[0])).collect();
    assert_eq!(persisted, pieces, "all of record 1 is taken; record 2 waits for the budget");
    assert!(!e.wants_bytes(), "record 1 is whole and unapplied: the budget holds again");
    e.handle_completion(4, Completion::Persisted { through: tips[0].end_lsn });
    let actions = drain(&mut e);
    assert!(matches!(&actions[..], [ReplicaAction::Apply { records }] if records.len() == 1), "{actions:?}");
    let applied = AppliedState { commit_id: 1, end_lsn: tips[0].end_lsn, fingerprint: tips[0].fingerprint, state_digest: StateDigest(1) };
    e.handle_completion(5, Completion::Applied { state: applied });
    let actions = drain(&mut e);
    assert!(actions.iter().any(|a| matches!(a, ReplicaAction::Persist(w) if w.start_lsn == tips[0].end_lsn)), "record 2 is taken: {actions:?}");
}

/// RES-3 / P5-I5: records made durable by one fsync go to the applier in
/// bounded batches (one store lock, one `Applied`, one REPORT and one
/// C_replica publication each), only once validated and durable; each
/// batch applied frees its bytes from the backpressure budget, so the
/// socket reopens while later batches are still being applied.
#[test]
fn res_3_p5_i5_apply_batches_are_bounded_and_each_frees_the_budget() {
    let n = MAX_APPLY_RECORDS as u64 * 2 + 3;
    let (recs, tips) = history(n);
    let total = tips[n as usize - 1].end_lsn;
    let mut cfg = config(BootstrapMethod::Wal);
    cfg.max_unapplied_bytes = total;
    let mut e = accepted(cfg, n, total);
    drain(&mut e);
    let all: Vec<u8> = recs.iter().flat_map(|r| r.to_vec()).collect();
    e.handle_bytes(3, 1, &wal(0, Bytes::from(all)));
    let actions = drain(&mut e);
    assert!(matches!(&actions[..], [ReplicaAction::Persist(_)]), "nothing is applied before it is durable: {actions:?}");
    assert!(!e.wants_bytes(), "the whole budget is unapplied");
    e.handle_completion(4, Completion::Persisted { through: total });
    let batches: Vec<Vec<ValidatedRecord>> = drain(&mut e)
        .into_iter()
        .map(|a| match a {
            ReplicaAction::Apply { records } => records,
            other => panic!("expected only Apply actions, got {other:?}"),
        })
        .collect();
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![MAX_APPLY_RECORDS, MAX_APPLY_RECORDS, 3]);
    let commit_ids: Vec<u64> = batches.iter().flatten().map(|(_, p)| p.commit_id).collect();
    assert_eq!(commit_ids, (1..=n).collect::<Vec<_>>(), "in order, each once");
    let mut reported = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let last = batch[batch.len() - 1].1;
        let state = AppliedState { commit_id: last.commit_id, end_lsn: last.end_lsn, fingerprint: last.fingerprint, state_digest: StateDigest(0) };
        e.handle_completion(5 + i as u64, Completion::Applied { state });
        assert!(e.wants_bytes(), "batch {i} applied: the socket reopens");
        assert_eq!(e.positions().applied_commit_id, last.commit_id);
        let sent = sent_messages(&drain(&mut e));
        assert!(matches!(&sent[..], [Message::Report(p)] if p.applied_commit_id == last.commit_id), "one REPORT per batch: {sent:?}");
        reported.push(last.commit_id);
    }
    assert_eq!(reported, vec![MAX_APPLY_RECORDS as u64, 2 * MAX_APPLY_RECORDS as u64, n]);
}

/// F-V2: a segment header that does not continue the chain halts.
#[test]
fn f_v2_segment_start_that_breaks_the_chain_halts() {
    let mut e = streaming();
    let (recs, tips) = history(1);
    e.handle_bytes(3, 1, &wal(0, recs[0].clone()));
    drain(&mut e);
    let header = SegmentHeader { start_lsn: tips[0].end_lsn, prev_commit_id: 1, prev_fingerprint: Fingerprint(12345) };
    let chunk = ReceivedChunk { start_lsn: tips[0].end_lsn, segment_start: Some(header), bytes: Bytes::new() };
    e.handle_bytes(4, 1, &frame_of(Message::Wal(chunk)));
    assert!(matches!(e.state(), ReplicaState::Halted { halt: Halt::Chain { .. } }));
    let _ = FrameType::Wal;
}

/// An empty replica bootstrapping by snapshot: recovered, connected on
/// conn 1, HELLO sent.
fn snapshot_hello_sent() -> ReplicaEngine {
    let mut e = ReplicaEngine::new(config(BootstrapMethod::Snapshot));
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Uninitialised);
    e.handle_connected(1, 1);
    drain(&mut e);
    e
}

fn snapshot_accept(resume: Option<SnapshotResume>) -> Bytes {
    frame_of(Message::Accept(Accept {
        cluster_id: cluster(),
        primary_commit_id: 9,
        durable_lsn: 900,
        start_lsn: None,
        snapshot_resume: resume,
        client_addr: None,
    }))
}

fn chunk(file_index: u32, offset: u64, bytes: &'static [u8]) -> Bytes {
    frame_of(Message::SnapshotChunk { file_index, offset, bytes: Bytes::from_static(bytes) })
}

const MANIFEST: &[u8] = b"{manifest}";

/// A transfer of MANIFEST that wrote "abcde" of file 0 and then lost its
/// connection (every piece written): Disconnected, transfer kept.
fn interrupted_transfer() -> ReplicaEngine {
    let mut e = snapshot_hello_sent();
    let mut wire = snapshot_accept(None).to_vec();
    wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(MANIFEST))));
    wire.extend_from_slice(&chunk(0, 0, b"abc"));
    wire.extend_from_slice(&chunk(0, 3, b"de"));
    e.handle_bytes(1_000, 1, &wire);
    drain(&mut e);
    e.handle_completion(1_001, Completion::BootstrapBegun { bytes_total: 12 });
    e.handle_completion(1_002, Completion::PieceWritten { bytes: 3 });
    e.handle_completion(1_003, Completion::PieceWritten { bytes: 2 });
    e.handle_closed(1_500, 1, "reset".into());
    assert_eq!(drain(&mut e), vec![ReplicaAction::Close { conn: 1 }], "nothing is discarded on a lost connection");
    assert_eq!(e.state().kind(), StateKind::Disconnected);
    e
}

fn reconnect(e: &mut ReplicaEngine) -> Vec<Message> {
    let ReplicaState::Disconnected { retry_at, .. } = e.state().clone() else { panic!("not disconnected: {:?}", e.state()) };
    e.handle_timer(retry_at);
    assert_eq!(drain(e), vec![ReplicaAction::Connect { conn: 2 }]);
    assert_eq!(e.state().kind(), StateKind::Bootstrapping);
    e.handle_connected(retry_at, 2);
    sent_messages(&drain(e))
}

/// F-S1: a transfer interrupted by a lost connection is kept (phase
/// `interrupted`, bytes written so far); the next HELLO asks to resume it at
/// exactly the bytes storage wrote; when the primary accepts that point the
/// rest continues the same transfer (no BootstrapBegin, no discard), the
/// progress counts both connections and the resume.
#[test]
fn f_s1_interrupted_transfer_resumes_from_the_bytes_written() {
    let mut e = interrupted_transfer();
    let p = e.observe().transfer.unwrap();
    assert_eq!((p.phase, p.bytes_done, p.bytes_total, p.resumes), (BootstrapPhase::Interrupted, 5, 12, 0));
    let hello = reconnect(&mut e);
    let expected = SnapshotResume { manifest_crc32c: crc32c::crc32c(MANIFEST), manifest_len: MANIFEST.len() as u64, file_index: 0, offset: 5 };
    assert!(matches!(&hello[..], [Message::Hello(h)] if h.request == HelloRequest::SnapshotResume(expected)), "{hello:?}");

    let mut wire = snapshot_accept(Some(expected)).to_vec();
    wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(MANIFEST))));
    wire.extend_from_slice(&chunk(0, 5, b"fg"));
    wire.extend_from_slice(&chunk(1, 0, b"hijkl"));
    wire.extend_from_slice(&frame_of(Message::SnapshotEnd));
    e.handle_bytes(3_000, 2, &wire);
    assert_eq!(
        drain(&mut e),
        vec![
            ReplicaAction::BootstrapPiece { file_index: 0, offset: 5, bytes: Bytes::from_static(b"fg") },
            ReplicaAction::BootstrapPiece { file_index: 1, offset: 0, bytes: Bytes::from_static(b"hijkl") },
            ReplicaAction::BootstrapFinish { cluster_id: cluster(), replica_id: ReplicaId::parse("r1").unwrap() },
        ]
    );
    let p = e.bootstrap_progress().unwrap();
    assert_eq!((p.phase, p.bytes_done, p.bytes_total, p.resumed_from, p.resumes), (BootstrapPhase::Installing, 12, 12, 5, 1));
}

/// F-S1: when the primary serves another snapshot (an ACCEPT without a
/// resume point) the partial transfer is discarded before the new one
/// begins, from its first byte.
#[test]
fn f_s1_another_snapshot_discards_the_partial_transfer_and_starts_clean() {
    let mut e = interrupted_transfer();
    reconnect(&mut e);
    let mut wire = snapshot_accept(None).to_vec();
    wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(b"{other}"))));
    wire.extend_from_slice(&chunk(0, 0, b"zz"));
    e.handle_bytes(3_000, 2, &wire);
    assert_eq!(
        drain(&mut e),
        vec![
            ReplicaAction::BootstrapDiscard,
            ReplicaAction::BootstrapBegin { manifest: Bytes::from_static(b"{other}") },
            ReplicaAction::BootstrapPiece { file_index: 0, offset: 0, bytes: Bytes::from_static(b"zz") },
        ]
    );
    let p = e.bootstrap_progress().unwrap();
    assert_eq!((p.bytes_done, p.resumed_from, p.resumes), (2, 0, 0));
}

/// F-S1, F-S4: a storage failure of an interrupted transfer (a piece that
/// failed its checks after the connection ended) discards it: the next
/// HELLO asks for a whole snapshot.
#[test]
fn f_s1_storage_failure_discards_the_interrupted_transfer() {
    let mut e = snapshot_hello_sent();
    let mut wire = snapshot_accept(None).to_vec();
    wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(MANIFEST))));
    wire.extend_from_slice(&chunk(0, 0, b"abc"));
    e.handle_bytes(1_000, 1, &wire);
    drain(&mut e);
    e.handle_completion(1_001, Completion::BootstrapBegun { bytes_total: 12 });
    e.handle_closed(1_002, 1, "reset".into());
    drain(&mut e);
    let rejected = crate::halt::SnapshotRejected { fault: crate::halt::SnapshotFault::Checksum, detail: "crc32c mismatch".into() };
    e.handle_completion(1_003, Completion::Failed(StorageFailure::Bootstrap(BootstrapError::Rejected(rejected))));
    assert_eq!(drain(&mut e), vec![ReplicaAction::BootstrapDiscard]);
    assert!(e.observe().transfer.is_none());
    e.handle_completion(1_004, Completion::Discarded);
    let hello = reconnect(&mut e);
    assert!(matches!(&hello[..], [Message::Hello(h)] if h.request == HelloRequest::Snapshot), "{hello:?}");
}

/// F-S1, F-N2: a resumed transfer must continue exactly where the replica
/// asked: an ACCEPT naming another point, or a piece elsewhere, ends the
/// connection as a protocol error without writing anything.
#[test]
fn f_s1_a_resumed_transfer_continues_only_where_the_replica_asked() {
    let expected = SnapshotResume { manifest_crc32c: crc32c::crc32c(MANIFEST), manifest_len: MANIFEST.len() as u64, file_index: 0, offset: 5 };
    let mut e = interrupted_transfer();
    reconnect(&mut e);
    let mut wire = snapshot_accept(Some(expected)).to_vec();
    wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(MANIFEST))));
    wire.extend_from_slice(&chunk(0, 0, b"abcde"));
    e.handle_bytes(3_000, 2, &wire);
    assert_eq!(drain(&mut e), vec![ReplicaAction::Close { conn: 2 }]);
    assert!(matches!(e.state(), ReplicaState::Disconnected { blocked: Blocked::Protocol { .. }, .. }));

    let mut e = interrupted_transfer();
    reconnect(&mut e);
    e.handle_bytes(3_000, 2, &snapshot_accept(Some(SnapshotResume { offset: 4, ..expected })));
    assert_eq!(drain(&mut e), vec![ReplicaAction::Close { conn: 2 }]);
    assert!(matches!(e.state(), ReplicaState::Disconnected { blocked: Blocked::Protocol { .. }, .. }));
}

/// F-S1: the primary closes the connection right after SNAPSHOT_END while
/// the replica still holds frames it sent (taken slowly, backpressure):
/// they are taken first and the transfer finishes on this connection, with
/// no reconnect and no resume; a connection whose buffered frames end
/// short of SNAPSHOT_END is lost only after what was whole was taken.
#[test]
fn f_s1_frames_buffered_before_the_primary_closed_finish_the_transfer() {
    for complete in [true, false] {
        let mut cfg = config(BootstrapMethod::Snapshot);
        cfg.max_unapplied_bytes = 1;
        let mut e = ReplicaEngine::new(cfg);
        e.handle_start(0);
        e.handle_recovered(0, RecoveryOutcome::Uninitialised);
        e.handle_connected(1, 1);
        drain(&mut e);
        let mut wire = snapshot_accept(None).to_vec();
        wire.extend_from_slice(&frame_of(Message::SnapshotBegin(Bytes::from_static(MANIFEST))));
        wire.extend_from_slice(&chunk(0, 0, b"abc"));
        wire.extend_from_slice(&chunk(0, 3, b"de"));
        if complete {
            wire.extend_from_slice(&frame_of(Message::SnapshotEnd));
        } else {
            // Half of the next frame.
            let next = chunk(0, 5, b"fg");
            wire.extend_from_slice(&next[..next.len() / 2]);
        }
        e.handle_bytes(1_000, 1, &wire);
        let actions = drain(&mut e);
        assert_eq!(actions.iter().filter(|a| matches!(a, ReplicaAction::BootstrapPiece { .. })).count(), 1, "{actions:?}");
        assert!(!e.wants_bytes());
        e.handle_closed(1_001, 1, "primary closed the connection".into());
        assert_eq!(drain(&mut e), vec![], "held-back frames are taken before the close");
        assert_eq!(e.state().kind(), StateKind::Bootstrapping);
        e.handle_completion(1_002, Completion::BootstrapBegun { bytes_total: 5 });
        e.handle_completion(1_003, Completion::PieceWritten { bytes: 3 });
        assert_eq!(drain(&mut e), vec![ReplicaAction::BootstrapPiece { file_index: 0, offset: 3, bytes: Bytes::from_static(b"de") }]);
        e.handle_completion(1_004, Completion::PieceWritten { bytes: 2 });
        let actions = drain(&mut e);
        if complete {
            assert_eq!(actions, vec![ReplicaAction::BootstrapFinish { cluster_id: cluster(), replica_id: ReplicaId::parse("r1").unwrap() }]);
            assert_eq!(e.state().kind(), StateKind::Bootstrapping);
        } else {
            assert_eq!(actions, vec![ReplicaAction::Close { conn: 1 }]);
            assert_eq!(e.state().kind(), StateKind::Disconnected);
            assert_eq!(e.observe().transfer.unwrap().bytes_done, 5, "the partial transfer is kept for the resume");
        }
    }
}
