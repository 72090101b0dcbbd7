//! Transition tests of the primary session: inputs in, exact actions out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aerodb_wal::durable::DurablePoint;
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn, GENESIS_FINGERPRINT};

use super::*;
use crate::handshake::{HelloRequest, PROTOCOL_VERSION};
use crate::ids::ReplicaId;
use crate::wire::{frame, FrameType};

const CLUSTER: &str = "0123456789abcdef0123456789abcdef";

struct History {
    cluster: ClusterId,
    durable: (Lsn, CommitId),
}

impl PrimaryHistory for History {
    fn cluster_id(&self) -> &ClusterId {
        &self.cluster
    }
    fn durable(&self) -> (Lsn, CommitId) {
        self.durable
    }
    fn oldest_retained(&self) -> ChainTip {
        ChainTip::GENESIS
    }
    fn record_end(&self, _c: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        Ok(None)
    }
}

fn history(lsn: Lsn, c: CommitId) -> History {
    History { cluster: ClusterId::parse(CLUSTER).unwrap(), durable: (lsn, c) }
}

fn session() -> PrimarySession {
    PrimarySession::new(0, SessionConfig::default(), ClusterId::parse(CLUSTER).unwrap(), DurablePoint { lsn: 100, commit_id: 2 })
}

fn hello(request: HelloRequest) -> Bytes {
    let cluster_id = Some(ClusterId::parse(CLUSTER).unwrap());
    Message::Hello(Hello { protocol_version: PROTOCOL_VERSION, cluster_id, replica_id: ReplicaId::parse("r").unwrap(), name: None, request }).to_frame()
}

fn drain(s: &mut PrimarySession) -> Vec<SessionAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn sent(actions: &[SessionAction]) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            SessionAction::Send(b) => Some(Message::decode(&frame::decode(&b.to_vec(), frame::DEFAULT_MAX_PAYLOAD).unwrap().unwrap().0).unwrap()),
            _ => None,
        })
        .collect()
}

/// The code of the ERROR frame the session sent, then the end it closed with.
fn refused(actions: &[SessionAction]) -> (ServeCode, &SessionEnd) {
    match (&sent(actions)[..], actions.last()) {
        ([Message::Error(e)], Some(SessionAction::Close(end))) => (e.code, end),
        other => panic!("expected ERROR then Close, got {other:?}"),
    }
}

/// RES-3: a connection that does not send a whole HELLO in time is
/// answered ERROR `HELLO_TIMEOUT` and closed.
#[test]
fn res_3_hello_deadline_closes_the_connection() {
    let mut s = session();
    s.handle_bytes(1, &hello(HelloRequest::Snapshot)[..5], &history(100, 2));
    let deadline = s.poll_timeout().unwrap();
    s.handle_timer(deadline - 1);
    assert!(drain(&mut s).is_empty(), "open until the deadline");
    s.handle_timer(deadline);
    assert_eq!(refused(&drain(&mut s)), (ServeCode::HelloTimeout, &SessionEnd::HelloTimeout));
}

/// RES-3: the HELLO deadline holds whatever the runtime delivers first: a
/// HELLO whose last bytes arrive at the deadline is refused, not decided.
#[test]
fn res_3_hello_completed_at_the_deadline_is_refused() {
    let mut s = session();
    let whole = hello(HelloRequest::Snapshot);
    s.handle_bytes(1, &whole[..5], &history(100, 2));
    let deadline = s.poll_timeout().unwrap();
    s.handle_bytes(deadline, &whole[5..], &history(100, 2));
    assert_eq!(refused(&drain(&mut s)), (ServeCode::HelloTimeout, &SessionEnd::HelloTimeout));
    assert!(s.view().hello.is_none(), "nothing of the late HELLO is kept");
}

/// RES-3: a frame header announcing 16 MiB is refused at once (the
/// primary only accepts small frames from replicas).
#[test]
fn res_3_oversized_frame_from_a_replica_is_refused_at_its_header() {
    let mut s = session();
    let mut header = frame::encode(FrameType::Hello, &[]);
    header[4..8].copy_from_slice(&(16u32 * 1024 * 1024 + 1024).to_le_bytes());
    s.handle_bytes(1, &header, &history(100, 2));
    let actions = drain(&mut s);
    assert!(matches!(refused(&actions), (ServeCode::FrameTooLarge, SessionEnd::Frame { error: FrameError::TooLarge { .. } })));
}

/// F-P1: after ACCEPT the session reads WAL only up to the durable LSN and
/// sends PROGRESS before each WAL frame.
#[test]
fn f_p1_ships_only_below_the_durable_lsn() {
    let mut s = session();
    let resume = HelloRequest::Resume { end_lsn: 0, commit_id: 0, fingerprint: GENESIS_FINGERPRINT };
    s.handle_bytes(1, &hello(resume), &history(100, 2));
    let actions = drain(&mut s);
    assert!(matches!(&sent(&actions)[..], [Message::Accept(a)] if a.start_lsn == Some(0) && a.durable_lsn == 100));
    assert!(actions.contains(&SessionAction::ReadWal { from: 0, limit: 100, max_bytes: SessionConfig::default().max_chunk_bytes }));
    let chunk = WalChunk { start_lsn: 0, segment_start: None, bytes: Bytes::from(vec![7u8; 100]), records: 2 };
    s.handle_wal_read(2, chunk);
    let out = sent(&drain(&mut s));
    assert!(matches!(&out[..], [Message::Progress(p, _), Message::Wal(c)] if p.durable_lsn == 100 && c.start_lsn == 0 && c.bytes.len() == 100));
    assert!(drain(&mut s).is_empty(), "nothing beyond the durable LSN");
    s.handle_durable(3, DurablePoint { lsn: 150, commit_id: 3 });
    assert!(drain(&mut s).contains(&SessionAction::ReadWal { from: 100, limit: 150, max_bytes: SessionConfig::default().max_chunk_bytes }));
}

/// RES-4 / REPL-11: a REPORT beyond what was sent closes the connection; a
/// replica that proves the primary lost history raises the fence before the
/// refusal is sent.
#[test]
fn res_4_report_beyond_sent_is_refused_and_repl_11_ahead_fences() {
    let mut s = session();
    s.handle_bytes(1, &hello(HelloRequest::Resume { end_lsn: 0, commit_id: 0, fingerprint: GENESIS_FINGERPRINT }), &history(100, 2));
    drain(&mut s);
    let report = Positions { received_lsn: u64::MAX, validated_lsn: 0, applied_lsn: 0, applied_commit_id: 0 };
    s.handle_bytes(2, &Message::Report(report).to_frame(), &history(100, 2));
    let actions = drain(&mut s);
    assert!(matches!(refused(&actions), (ServeCode::ProtocolError, SessionEnd::Protocol { .. })));

    let mut s = session();
    s.handle_bytes(1, &hello(HelloRequest::Resume { end_lsn: 500, commit_id: 9, fingerprint: Fingerprint(1) }), &history(100, 2));
    let actions = drain(&mut s);
    assert!(matches!(&actions[0], SessionAction::Fence(f) if f.code == "REPLICA_AHEAD"), "{actions:?}");
    assert!(matches!(&sent(&actions)[..], [Message::Refuse(_)]));
    assert_eq!(actions.last(), Some(&SessionAction::Close(SessionEnd::Refused { code: RefusalCode::REPLICA_AHEAD })));
}

/// REPL-8: a snapshot session sends ACCEPT, the manifest, every piece in
/// order and SNAPSHOT_END.
#[test]
fn repl_8_snapshot_session_sends_every_piece_in_order() {
    let mut s = PrimarySession::new(
        0,
        SessionConfig { snapshot_piece_bytes: 2, ..SessionConfig::default() },
        ClusterId::parse(CLUSTER).unwrap(),
        DurablePoint::default(),
    );
    s.handle_bytes(1, &hello(HelloRequest::Snapshot), &history(100, 2));
    assert_eq!(drain(&mut s), vec![SessionAction::PrepareSnapshot]);
    s.handle_snapshot_ready(2, Bytes::from_static(b"m"), vec![3, 0, 1]);
    let a = drain(&mut s);
    assert_eq!(a.last(), Some(&SessionAction::ReadSnapshot { file_index: 0, offset: 0, len: 2 }));
    s.handle_snapshot_piece(3, Bytes::from_static(b"ab"));
    assert_eq!(drain(&mut s).last(), Some(&SessionAction::ReadSnapshot { file_index: 0, offset: 2, len: 1 }));
    s.handle_snapshot_piece(3, Bytes::from_static(b"c"));
    assert_eq!(drain(&mut s).last(), Some(&SessionAction::ReadSnapshot { file_index: 2, offset: 0, len: 1 }));
    s.handle_snapshot_piece(3, Bytes::from_static(b"d"));
    let last = drain(&mut s);
    assert!(matches!(&sent(&last)[..], [Message::SnapshotChunk { file_index: 2, .. }, Message::SnapshotEnd]));
    assert_eq!(last.last(), Some(&SessionAction::Close(SessionEnd::SnapshotServed)));
}

fn resume_at(manifest: &[u8], file_index: u32, offset: u64) -> crate::handshake::SnapshotResume {
    crate::handshake::SnapshotResume { manifest_crc32c: crc32c::crc32c(manifest), manifest_len: manifest.len() as u64, file_index, offset }
}

/// F-S1: a replica asking to resume a transfer of the very snapshot the
/// primary serves (same manifest bytes) gets an ACCEPT naming the resume
/// point, the manifest, and only the bytes from that point on.
#[test]
fn f_s1_primary_resumes_the_same_snapshot_at_the_requested_point() {
    let mut s = PrimarySession::new(
        0,
        SessionConfig { snapshot_piece_bytes: 2, ..SessionConfig::default() },
        ClusterId::parse(CLUSTER).unwrap(),
        DurablePoint { lsn: 100, commit_id: 2 },
    );
    let r = resume_at(b"m", 0, 3);
    s.handle_bytes(1, &hello(HelloRequest::SnapshotResume(r)), &history(100, 2));
    assert_eq!(drain(&mut s), vec![SessionAction::PrepareSnapshot]);
    s.handle_snapshot_ready(2, Bytes::from_static(b"m"), vec![3, 2]);
    let a = drain(&mut s);
    assert!(matches!(&sent(&a)[..], [Message::Accept(acc), Message::SnapshotBegin(m)] if acc.snapshot_resume == Some(r) && m == &Bytes::from_static(b"m")));
    // File 0 is complete on the replica: the next read is file 1 from its start.
    assert_eq!(a.last(), Some(&SessionAction::ReadSnapshot { file_index: 1, offset: 0, len: 2 }));
    s.handle_snapshot_piece(3, Bytes::from_static(b"xy"));
    let last = drain(&mut s);
    assert!(matches!(&sent(&last)[..], [Message::SnapshotChunk { file_index: 1, offset: 0, .. }, Message::SnapshotEnd]));
}

/// F-S1: a resume point for another snapshot (other manifest bytes), or
/// beyond a file's end, gets the whole snapshot and an ACCEPT without a
/// resume point, so the replica discards its partial transfer.
#[test]
fn f_s1_primary_serves_the_whole_snapshot_when_the_resume_point_is_not_its_own() {
    for r in [resume_at(b"other manifest", 0, 1), resume_at(b"m", 0, 9), resume_at(b"m", 5, 0)] {
        let mut s = session();
        s.handle_bytes(1, &hello(HelloRequest::SnapshotResume(r)), &history(100, 2));
        assert_eq!(drain(&mut s), vec![SessionAction::PrepareSnapshot]);
        s.handle_snapshot_ready(2, Bytes::from_static(b"m"), vec![3]);
        let a = drain(&mut s);
        assert!(matches!(&sent(&a)[..], [Message::Accept(acc), Message::SnapshotBegin(_)] if acc.snapshot_resume.is_none()), "{r:?}");
        assert_eq!(a.last(), Some(&SessionAction::ReadSnapshot { file_index: 0, offset: 0, len: 3 }), "{r:?}");
    }
}

/// REPL-10: PROGRESS (protocol version 2) carries the primary's clock, the
/// time its durable commit became durable and the first commit of the WAL
/// frame that follows with its time; without an index the times are 0
/// (unknown). Observability only: nothing else in the session changes.
#[test]
fn repl_10_progress_carries_the_primarys_commit_times() {
    use aerodb_wal::record::encode_record;
    use aerodb_wal::StateDigest;
    let times = Arc::new(CommitTimes::new(0));
    times.record(1, 1_000);
    times.record(2, 2_000);
    let mut s = session().with_commit_times(times);
    s.handle_wall_clock(5_000);
    let resume = HelloRequest::Resume { end_lsn: 0, commit_id: 0, fingerprint: GENESIS_FINGERPRINT };
    s.handle_bytes(1, &hello(resume), &history(100, 2));
    drain(&mut s);
    let op = aerodb_wal::Op::Delete { collection: Bytes::from_static(b"c"), key: Bytes::from_static(b"k") };
    let (record, _) = encode_record(1, StateDigest::default(), GENESIS_FINGERPRINT, &[op]).unwrap();
    let chunk = WalChunk { start_lsn: 0, segment_start: None, bytes: Bytes::from(record), records: 1 };
    s.handle_wal_read(2, chunk);
    let out = sent(&drain(&mut s));
    let expected = ProgressTimes { primary_time_ms: 5_000, commit_time_ms: 2_000, next_commit_id: 1, next_commit_time_ms: 1_000 };
    assert!(matches!(&out[..], [Message::Progress(p, t), Message::Wal(_)] if p.commit_id == 2 && *t == expected), "{out:?}");
    s.handle_wall_clock(6_000);
    s.handle_timer(10_000);
    let out = sent(&drain(&mut s));
    let heartbeat = ProgressTimes { primary_time_ms: 6_000, commit_time_ms: 2_000, next_commit_id: 0, next_commit_time_ms: 0 };
    assert!(matches!(&out[..], [Message::Progress(_, t)] if *t == heartbeat), "{out:?}");
    let mut plain = session();
    plain.handle_bytes(1, &hello(resume), &history(100, 2));
    drain(&mut plain);
    plain.handle_timer(10_000);
    assert!(matches!(&sent(&drain(&mut plain))[..], [Message::Progress(_, t)] if *t == ProgressTimes::default()));
}

/// RES-2: WAL removed under a streaming replica closes the connection
/// (its next handshake gets WAL_UNAVAILABLE with the numbers).
#[test]
fn res_2_wal_retired_under_a_stream_closes_the_connection() {
    let mut s = session();
    s.handle_bytes(1, &hello(HelloRequest::Resume { end_lsn: 0, commit_id: 0, fingerprint: GENESIS_FINGERPRINT }), &history(100, 2));
    drain(&mut s);
    s.handle_wal_retired(2);
    assert_eq!(drain(&mut s), vec![SessionAction::Close(SessionEnd::WalRetired)]);
    assert_eq!(SessionEnd::WalRetired.code(), "WAL_RETIRED");
}
