//! Every message payload of the replication protocol, version 2
//! (docs/protocol.md: HELLO with its optional name and snapshot resume,
//! ACCEPT with its optional snapshot resume and client address, REFUSE,
//! WAL, PROGRESS with the commit times, REPORT, SNAPSHOT_BEGIN/CHUNK/END,
//! ERROR, and the authentication phase AUTH_BEGIN/CHALLENGE/PROOF/REFUSE)
//! through `Message::decode`, the first input byte choosing the frame type
//! (every type of `FrameType::ALL`). Properties (RES-4, F-N2): never a
//! panic; a decoded message travels in its frame type and survives an
//! encode/decode round trip (binary payloads re-encode byte for byte);
//! every identifier in a decoded HELLO/ACCEPT/REFUSE/AUTH_CHALLENGE is in
//! its documented format; PROGRESS times are within 2^53 ms and its next
//! CommitId never beyond its CommitId; free text is bounded; an error names
//! the frame type and quotes the peer's bytes only boundedly; a REPORT
//! passes `check_report` only within what the primary sent.
#![no_main]

use aerodb_repl_core::auth::AuthRefuseCode;
use aerodb_repl_core::handshake::Refusal;
use aerodb_repl_core::ids::{ClusterId, ReplicaId, ReplicaName};
use aerodb_repl_core::positions::MAX_TIME_MS;
use aerodb_repl_core::wire::message::{check_report, MAX_DETAIL_BYTES};
use aerodb_repl_core::wire::{AuthMessage, Frame, FrameType, Message};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

/// Longest error detail a decoder may produce from peer bytes.
const MAX_SHOWN: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let kind = FrameType::ALL[usize::from(selector) % FrameType::ALL.len()];
    let frame = Frame { kind, payload: Bytes::copy_from_slice(payload) };
    match Message::decode(&frame) {
        Ok(message) => {
            assert_eq!(message.kind(), kind);
            let (k, bytes) = message.encode();
            assert_eq!(k, kind);
            let again = Message::decode(&Frame { kind, payload: Bytes::from(bytes.clone()) }).expect("an encoded message decodes");
            assert_eq!(again, message, "round trip");
            if !matches!(kind, FrameType::Hello | FrameType::Accept | FrameType::Refuse | FrameType::Error | FrameType::AuthRefuse) {
                assert_eq!(bytes, payload, "binary payloads re-encode byte for byte");
            }
            check_fields(&message);
            if let Message::Report(p) = &message {
                assert!(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn);
                let (sent_lsn, sent_cid) = (p.received_lsn.wrapping_sub(u64::from(selector & 1)), p.applied_commit_id);
                let ok = check_report(p, sent_lsn, sent_cid).is_ok();
                assert_eq!(ok, p.received_lsn <= sent_lsn && p.applied_commit_id <= sent_cid);
            }
        }
        Err(e) => {
            assert_eq!(e.kind, format!("{kind:?}"));
            assert!(e.detail.len() <= MAX_SHOWN, "a decode error quotes {} bytes of peer input", e.detail.len());
        }
    }
});

fn valid_cluster(c: &ClusterId) {
    assert_eq!(ClusterId::parse(c.as_str()).as_ref(), Ok(c));
}

fn check_fields(m: &Message) {
    match m {
        Message::Hello(h) => {
            if let Some(c) = &h.cluster_id {
                valid_cluster(c);
            }
            assert_eq!(ReplicaId::parse(h.replica_id.as_str()).as_ref(), Ok(&h.replica_id));
            if let Some(n) = &h.name {
                assert_eq!(ReplicaName::parse(n.as_str()).as_ref(), Ok(n));
            }
        }
        Message::Accept(a) => valid_cluster(&a.cluster_id),
        Message::Refuse(r) => {
            assert!(r.detail.len() <= MAX_DETAIL_BYTES);
            if let Refusal::ClusterMismatch { primary_cluster_id } = &r.refusal {
                valid_cluster(primary_cluster_id);
            }
        }
        Message::Error(e) => assert!(e.detail.len() <= MAX_DETAIL_BYTES),
        Message::Progress(p, t) => {
            assert!([t.primary_time_ms, t.commit_time_ms, t.next_commit_time_ms].iter().all(|ms| *ms <= MAX_TIME_MS), "{t:?}");
            assert!(t.next_commit_id <= p.commit_id, "{p:?} {t:?}");
        }
        Message::Auth(AuthMessage::Challenge { cluster_id, .. }) => valid_cluster(cluster_id),
        Message::Auth(AuthMessage::Refuse(r)) => {
            assert!(r.detail.len() <= MAX_DETAIL_BYTES);
            assert!(AuthRefuseCode::ALL.contains(&r.code));
        }
        _ => {}
    }
}
