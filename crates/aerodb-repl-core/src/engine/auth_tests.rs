//! Transition tests of the v2 authentication phase, in the openraft style:
//! inputs into [`ReplicaEngine`] and [`PrimarySession`], the exact actions
//! out. Both engines are also paired through their bytes to show that an
//! authenticated connection reaches streaming, and that a wrong, missing,
//! replayed or reflected proof is refused on both sides without a halt and
//! without a fence (REPL-1, REPL-11).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;

use aerodb_mvcc::AppliedState;
use aerodb_wal::durable::DurablePoint;
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn, StateDigest, GENESIS_FINGERPRINT};

use super::primary::{PrimarySession, SessionAction, SessionConfig, SessionEnd};
use super::replica::{RecoveryOutcome, ReplicaAction, ReplicaConfig, ReplicaEngine, ReplicaTiming};
use crate::auth::{AuthRefuse, AuthRefuseCode, Nonce, PeerAuth, ReplToken};
use crate::halt::{Blocked, Reason};
use crate::handshake::{Hello, HelloRequest, PrimaryHistory, PROTOCOL_VERSION};
use crate::ids::{ClusterId, ReplicaId};
use crate::metadata::{BootstrapBoundary, BootstrapMethod, ReplicaMetadata, METADATA_FORMAT};
use crate::replica::{ReadyInfo, StreamStart};
use crate::state::{ReplicaState, StateKind};
use crate::wire::{frame, AuthMessage, Message, ServeCode};

const CLUSTER: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "4f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f";
const OTHER_TOKEN: &str = "0000000000000000111111111111111122222222222222223333333333333333";
const NR: Nonce = Nonce([0x11; 32]);
const NP: Nonce = Nonce([0x22; 32]);

fn token(t: &str) -> ReplToken {
    ReplToken::parse(t.as_bytes()).unwrap()
}
fn cluster() -> ClusterId {
    ClusterId::parse(CLUSTER).unwrap()
}

struct History;
impl PrimaryHistory for History {
    fn cluster_id(&self) -> &ClusterId {
        static C: std::sync::OnceLock<ClusterId> = std::sync::OnceLock::new();
        C.get_or_init(cluster)
    }
    fn durable(&self) -> (Lsn, CommitId) {
        (100, 2)
    }
    fn oldest_retained(&self) -> ChainTip {
        ChainTip::GENESIS
    }
    fn record_end(&self, _c: CommitId) -> Result<Option<(Lsn, Fingerprint)>, String> {
        Ok(None)
    }
}

fn session(auth: Option<&str>) -> PrimarySession {
    let s = PrimarySession::new(0, SessionConfig::default(), cluster(), DurablePoint { lsn: 100, commit_id: 2 });
    match auth {
        Some(t) => s.with_auth(token(t), NP),
        None => s,
    }
}

fn replica(auth: Option<&str>) -> ReplicaEngine {
    let config = ReplicaConfig {
        primary: "127.0.0.1:7701".into(),
        name: None,
        bootstrap: BootstrapMethod::Wal,
        new_replica_id: ReplicaId::parse("r1").unwrap(),
        timing: ReplicaTiming::default(),
        max_unapplied_bytes: 1 << 20,
        seed: 7,
        recorded: None,
    };
    let e = ReplicaEngine::new(config);
    match auth {
        Some(t) => e.with_auth(token(t)),
        None => e,
    }
}

/// A bootstrapped replica (holds state: a halt would be sticky) at genesis,
/// with the connection `Connect { conn: 1 }` pending.
fn bootstrapped(auth: Option<&str>) -> ReplicaEngine {
    let mut e = replica(auth);
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
    let info = ReadyInfo {
        metadata,
        start: StreamStart { applied: AppliedState::GENESIS, segment: ChainTip::GENESIS.segment_header(), segment_len: 0 },
        report: None,
    };
    e.handle_start(0);
    e.handle_recovered(0, RecoveryOutcome::Ready(info));
    assert_eq!(drain_r(&mut e), vec![ReplicaAction::Recover, ReplicaAction::Connect { conn: 1 }]);
    e
}

fn drain_r(e: &mut ReplicaEngine) -> Vec<ReplicaAction> {
    std::iter::from_fn(|| e.poll_action()).collect()
}
fn drain_p(s: &mut PrimarySession) -> Vec<SessionAction> {
    std::iter::from_fn(|| s.poll_action()).collect()
}
fn decode(bytes: &[u8]) -> Message {
    Message::decode(&frame::decode(bytes, frame::DEFAULT_MAX_PAYLOAD).unwrap().unwrap().0).unwrap()
}
fn replica_sent(actions: &[ReplicaAction]) -> Vec<Message> {
    actions.iter().filter_map(|a| if let ReplicaAction::Send { frame, .. } = a { Some(decode(frame)) } else { None }).collect()
}
fn replica_bytes(actions: &[ReplicaAction]) -> Vec<u8> {
    actions.iter().filter_map(|a| if let ReplicaAction::Send { frame, .. } = a { Some(frame.to_vec()) } else { None }).flatten().collect()
}
fn primary_sent(actions: &[SessionAction]) -> Vec<Message> {
    actions.iter().filter_map(|a| if let SessionAction::Send(b) = a { Some(decode(&b.to_vec())) } else { None }).collect()
}
fn primary_bytes(actions: &[SessionAction]) -> Vec<u8> {
    actions.iter().filter_map(|a| if let SessionAction::Send(b) = a { Some(b.to_vec()) } else { None }).flatten().collect()
}
fn blocked(e: &ReplicaEngine) -> &Blocked {
    match e.state() {
        ReplicaState::Disconnected { blocked, .. } => blocked,
        other => panic!("expected Disconnected, got {other:?}"),
    }
}
fn hello_frame(request: HelloRequest) -> (Bytes, Vec<u8>) {
    let m = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: Some(cluster()),
        replica_id: ReplicaId::parse("r9").unwrap(),
        name: None,
        request,
    });
    (m.to_frame(), m.payload())
}
fn auth(m: AuthMessage) -> Bytes {
    Message::Auth(m).to_frame()
}
const AHEAD: HelloRequest = HelloRequest::Resume { end_lsn: 900, commit_id: 9, fingerprint: Fingerprint(9) };

/// REPL-1: with the same token on both sides the replica sends AUTH_BEGIN
/// (its nonce) first, answers a valid AUTH_CHALLENGE with AUTH_PROOF and
/// then the HELLO the proof covers, and the pair reaches streaming with an
/// authenticated peer.
#[test]
fn repl_1_authenticated_exchange_reaches_streaming() {
    let (mut r, mut p) = (bootstrapped(Some(TOKEN)), session(Some(TOKEN)));
    r.handle_connected_with_nonce(1, 1, NR);
    let out = drain_r(&mut r);
    assert_eq!(replica_sent(&out), vec![Message::Auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR })]);
    p.handle_bytes(1, &replica_bytes(&out), &History);
    let challenge = drain_p(&mut p);
    let proof = token(TOKEN).primary_proof(PROTOCOL_VERSION, &cluster(), &NR, &NP);
    assert_eq!(primary_sent(&challenge), vec![Message::Auth(AuthMessage::Challenge { primary_nonce: NP, cluster_id: cluster(), proof })]);
    assert_eq!(p.peer_auth(), PeerAuth::Unauthenticated);
    r.handle_bytes(2, 1, &primary_bytes(&challenge));
    let out = drain_r(&mut r);
    let msgs = replica_sent(&out);
    let [Message::Auth(AuthMessage::Proof { proof }), Message::Hello(hello)] = &msgs[..] else { panic!("{msgs:?}") };
    let payload = Message::Hello(hello.clone()).payload();
    assert_eq!(*proof, token(TOKEN).replica_proof(PROTOCOL_VERSION, &cluster(), &NR, &NP, &payload));
    p.handle_bytes(2, &replica_bytes(&out), &History);
    assert_eq!(p.peer_auth(), PeerAuth::Authenticated);
    let accepted = drain_p(&mut p);
    assert!(matches!(primary_sent(&accepted).first(), Some(Message::Accept(a)) if a.start_lsn == Some(0)), "{accepted:?}");
    r.handle_bytes(3, 1, &primary_bytes(&accepted));
    assert_eq!(r.state().kind(), StateKind::Streaming);
}

/// REPL-1: different tokens. The replica refuses the primary's proof
/// (closes, blocked AUTH_FAILED, no halt); the primary refuses a replica
/// proof made with another token (AUTH_REFUSE AUTH_FAILED, then close).
#[test]
fn repl_1_wrong_token_is_refused_on_both_sides_without_a_halt() {
    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected_with_nonce(1, 1, NR);
    drain_r(&mut r);
    let mut other = session(Some(OTHER_TOKEN));
    other.handle_bytes(1, &auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR }), &History);
    r.handle_bytes(2, 1, &primary_bytes(&drain_p(&mut other)));
    assert_eq!(drain_r(&mut r), vec![ReplicaAction::Close { conn: 1 }], "no proof, no HELLO, no PersistHalt");
    // The primary sees the peer leave after its challenge: counted as AUTH_FAILED there.
    other.handle_closed(3);
    assert_eq!(drain_p(&mut other), vec![SessionAction::Close(SessionEnd::AuthAbandoned)]);
    assert_eq!(blocked(&r).code(), "AUTH_FAILED");
    assert_eq!(blocked(&r).rule_id(), "REPL-1");
    assert!(blocked(&r).detail().contains("could not prove"), "{}", blocked(&r).detail());

    let mut p = session(Some(TOKEN));
    p.handle_bytes(1, &auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR }), &History);
    drain_p(&mut p);
    let (hello, payload) = hello_frame(AHEAD);
    let wrong = token(OTHER_TOKEN).replica_proof(PROTOCOL_VERSION, &cluster(), &NR, &NP, &payload);
    let mut wire = auth(AuthMessage::Proof { proof: wrong }).to_vec();
    wire.extend_from_slice(&hello);
    p.handle_bytes(2, &wire, &History);
    let out = drain_p(&mut p);
    assert!(matches!(&primary_sent(&out)[..], [Message::Auth(AuthMessage::Refuse(AuthRefuse { code: AuthRefuseCode::AUTH_FAILED, .. }))]), "{out:?}");
    assert_eq!(out.last(), Some(&SessionAction::Close(SessionEnd::AuthRefused { code: AuthRefuseCode::AUTH_FAILED })));
    assert!(!out.iter().any(|a| matches!(a, SessionAction::Fence(_))), "REPL-11: a wrong token never fences");

    // The replica explains the primary's refusal of its proof, again without a halt.
    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected_with_nonce(1, 1, NR);
    drain_r(&mut r);
    r.handle_bytes(2, 1, &primary_bytes(&out));
    assert_eq!(blocked(&r).code(), "AUTH_FAILED");
    assert!(blocked(&r).detail().contains("rejected"));
}

/// REPL-1: a primary with a token refuses a replica that sends HELLO
/// without authenticating (AUTH_REQUIRED); that replica is blocked with
/// the same code, never halted.
#[test]
fn repl_1_primary_with_token_refuses_a_replica_without_one() {
    let mut p = session(Some(TOKEN));
    p.handle_bytes(1, &hello_frame(HelloRequest::Snapshot).0, &History);
    let out = drain_p(&mut p);
    assert!(matches!(&primary_sent(&out)[..], [Message::Auth(AuthMessage::Refuse(AuthRefuse { code: AuthRefuseCode::AUTH_REQUIRED, .. }))]));
    assert_eq!(out.last(), Some(&SessionAction::Close(SessionEnd::AuthRefused { code: AuthRefuseCode::AUTH_REQUIRED })));

    let mut r = bootstrapped(None);
    r.handle_connected(1, 1);
    assert!(matches!(&replica_sent(&drain_r(&mut r))[..], [Message::Hello(_)]));
    r.handle_bytes(2, 1, &primary_bytes(&out));
    assert_eq!(drain_r(&mut r), vec![ReplicaAction::Close { conn: 1 }]);
    assert_eq!(blocked(&r).code(), "AUTH_REQUIRED");
    assert!(blocked(&r).detail().contains("--repl-token-file"));
}

/// REPL-1: a replica with a token refuses a primary without one: the
/// primary answers AUTH_BEGIN with AUTH_NOT_CONFIGURED, the replica is
/// blocked with that code and never sends its HELLO.
#[test]
fn repl_1_replica_with_token_refuses_a_primary_without_one() {
    let mut p = session(None);
    p.handle_bytes(1, &auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR }), &History);
    let out = drain_p(&mut p);
    assert!(matches!(&primary_sent(&out)[..], [Message::Auth(AuthMessage::Refuse(AuthRefuse { code: AuthRefuseCode::AUTH_NOT_CONFIGURED, .. }))]));
    assert_eq!(out.last(), Some(&SessionAction::Close(SessionEnd::AuthRefused { code: AuthRefuseCode::AUTH_NOT_CONFIGURED })));

    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected_with_nonce(1, 1, NR);
    drain_r(&mut r);
    r.handle_bytes(2, 1, &primary_bytes(&out));
    assert_eq!(drain_r(&mut r), vec![ReplicaAction::Close { conn: 1 }]);
    assert_eq!(blocked(&r).code(), "AUTH_NOT_CONFIGURED");
}

/// REPL-5 / REPL-1: a peer that skips the challenge cannot halt a replica
/// that requires a token: a REFUSE DIVERGED (which would halt after
/// authentication) or an ACCEPT before AUTH_CHALLENGE only blocks it.
#[test]
fn repl_5_unauthenticated_peer_cannot_halt_a_replica() {
    let diverged = crate::handshake::Refuse {
        refusal: crate::handshake::Refusal::Diverged {
            primary_durable_lsn: 1,
            primary_commit_id: 1,
            primary_record_end_lsn: None,
            primary_record_fingerprint: None,
        },
        detail: "forged".into(),
    };
    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected_with_nonce(1, 1, NR);
    drain_r(&mut r);
    r.handle_bytes(2, 1, &Message::Refuse(diverged).to_frame());
    assert_eq!(drain_r(&mut r), vec![ReplicaAction::Close { conn: 1 }], "no PersistHalt");
    assert_eq!(r.state().kind(), StateKind::Disconnected);
    assert_eq!(blocked(&r).code(), "DIVERGED");

    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected_with_nonce(1, 1, NR);
    drain_r(&mut r);
    let accept =
        crate::handshake::Accept { cluster_id: cluster(), primary_commit_id: 0, durable_lsn: 0, start_lsn: Some(0), snapshot_resume: None, client_addr: None };
    r.handle_bytes(2, 1, &Message::Accept(accept).to_frame());
    assert_eq!(blocked(&r).code(), "AUTH_FAILED");
    assert_ne!(r.state().kind(), StateKind::Streaming);
}

/// REPL-1: replay and reflection. A replica proof recorded on one
/// connection does not verify on the next (the primary's nonce is fresh);
/// the primary's own proof reflected back as AUTH_PROOF does not verify
/// (the role is signed); a HELLO changed after proving does not verify.
#[test]
fn repl_1_replayed_reflected_and_altered_proofs_are_refused() {
    let (_, payload) = hello_frame(AHEAD);
    let recorded = token(TOKEN).replica_proof(PROTOCOL_VERSION, &cluster(), &NR, &NP, &payload);
    let fresh = PrimarySession::new(0, SessionConfig::default(), cluster(), DurablePoint { lsn: 100, commit_id: 2 }).with_auth(token(TOKEN), Nonce([0x33; 32]));
    let reflected = token(TOKEN).primary_proof(PROTOCOL_VERSION, &cluster(), &NR, &NP);
    let (other_hello, _) = hello_frame(HelloRequest::Snapshot);
    for (mut s, proof, hello) in
        [(fresh, recorded, hello_frame(AHEAD).0), (session(Some(TOKEN)), reflected, hello_frame(AHEAD).0), (session(Some(TOKEN)), recorded, other_hello)]
    {
        let mut wire = auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR }).to_vec();
        wire.extend_from_slice(&auth(AuthMessage::Proof { proof }));
        wire.extend_from_slice(&hello);
        s.handle_bytes(1, &wire, &History);
        let out = drain_p(&mut s);
        assert_eq!(out.last(), Some(&SessionAction::Close(SessionEnd::AuthRefused { code: AuthRefuseCode::AUTH_FAILED })), "{out:?}");
        assert!(!out.iter().any(|a| matches!(a, SessionAction::Fence(_))));
        assert_eq!(s.peer_auth(), PeerAuth::Unauthenticated);
    }
}

/// REPL-11: with a token configured, only an authenticated peer of the
/// cluster can fence the primary. The same REPLICA_AHEAD resume point
/// fences when it arrives after a valid proof, and never without one.
#[test]
fn repl_11_unauthenticated_peer_cannot_fence_the_primary() {
    let mut p = session(Some(TOKEN));
    p.handle_bytes(1, &hello_frame(AHEAD).0, &History);
    let out = drain_p(&mut p);
    assert!(!out.iter().any(|a| matches!(a, SessionAction::Fence(_))), "{out:?}");
    assert_eq!(out.last(), Some(&SessionAction::Close(SessionEnd::AuthRefused { code: AuthRefuseCode::AUTH_REQUIRED })));

    let mut p = session(Some(TOKEN));
    let (hello, payload) = hello_frame(AHEAD);
    let proof = token(TOKEN).replica_proof(PROTOCOL_VERSION, &cluster(), &NR, &NP, &payload);
    let mut wire = auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR }).to_vec();
    wire.extend_from_slice(&auth(AuthMessage::Proof { proof }));
    wire.extend_from_slice(&hello);
    p.handle_bytes(1, &wire, &History);
    let out = drain_p(&mut p);
    assert!(matches!(&out[1], SessionAction::Fence(f) if f.code == "REPLICA_AHEAD"), "{out:?}");
    assert_eq!(p.peer_auth(), PeerAuth::Authenticated);
}

/// RES-3: the whole authentication phase runs within the HELLO deadline,
/// which runs from the accept (the session's creation at 0 ms), not from
/// the first bytes; missing it is answered like any late HELLO: one ERROR
/// `HELLO_TIMEOUT`, then the close (docs/protocol.md).
#[test]
fn res_3_auth_phase_is_bounded_by_the_hello_deadline() {
    let mut p = session(Some(TOKEN));
    p.handle_bytes(1, &auth(AuthMessage::Begin { protocol_version: PROTOCOL_VERSION, replica_nonce: NR }), &History);
    drain_p(&mut p);
    let deadline = p.poll_timeout().unwrap();
    assert_eq!(deadline, SessionConfig::default().hello_timeout_ms);
    p.handle_timer(deadline - 1);
    assert!(drain_p(&mut p).is_empty(), "open until the deadline");
    p.handle_timer(deadline);
    let out = drain_p(&mut p);
    match (&primary_sent(&out)[..], out.last()) {
        ([Message::Error(e)], Some(SessionAction::Close(SessionEnd::HelloTimeout))) => assert_eq!(e.code, ServeCode::HelloTimeout, "{e:?}"),
        other => panic!("expected ERROR HELLO_TIMEOUT then Close, got {other:?}"),
    }
    assert_eq!(p.peer_auth(), PeerAuth::Unauthenticated);

    // The replica's handshake deadline covers AUTH_CHALLENGE too.
    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected_with_nonce(1, 1, NR);
    drain_r(&mut r);
    let t = r.poll_timeout().unwrap();
    r.handle_timer(t);
    assert_eq!(blocked(&r).code(), "CONNECTION_IDLE");
    // Without a nonce from the runtime the replica never authenticates blind.
    let mut r = bootstrapped(Some(TOKEN));
    r.handle_connected(1, 1);
    assert_eq!(drain_r(&mut r), vec![ReplicaAction::Close { conn: 1 }]);
    assert_eq!(blocked(&r).code(), "AUTH_FAILED");
}
