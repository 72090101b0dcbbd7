//! The v2 authentication phase on the wire (docs/protocol.md,
//! "Authentication"): four frame types, kept apart from the handshake
//! messages. Binary layouts, all fixed-size except AUTH_REFUSE:
//!
//! ```text
//! AUTH_BEGIN     (11, replica → primary)  version u32 LE | replica nonce [32]              36 bytes
//! AUTH_CHALLENGE (12, primary → replica)  primary nonce [32] | cluster id [32 ASCII hex]
//!                                         | primary proof [32]                               96 bytes
//! AUTH_PROOF     (13, replica → primary)  replica proof [32]                                 32 bytes
//! AUTH_REFUSE    (14, primary → replica)  JSON {"code","detail"}
//! ```
//!
//! Every field is validated when decoded (RES-4): exact lengths, the cluster
//! id by its newtype, the refusal code by its enum, `detail` bounded.

use crate::auth::{AuthRefuse, Nonce, Proof, NONCE_LEN, PROOF_LEN};
use crate::ids::ClusterId;
use crate::wire::frame::{Frame, FrameType};
use crate::wire::message::{MessageError, MAX_DETAIL_BYTES};

/// One message of the authentication phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthMessage {
    /// Replica → primary: opens the exchange.
    Begin {
        /// The protocol version the replica speaks.
        protocol_version: u32,
        /// The replica's fresh nonce.
        replica_nonce: Nonce,
    },
    /// Primary → replica: the primary's nonce and its proof.
    Challenge {
        /// The primary's fresh nonce.
        primary_nonce: Nonce,
        /// The primary's cluster id (signed by the proof).
        cluster_id: ClusterId,
        /// HMAC over the primary transcript.
        proof: Proof,
    },
    /// Replica → primary: the replica's proof, covering the HELLO that follows.
    Proof {
        /// HMAC over the replica transcript and the HELLO payload.
        proof: Proof,
    },
    /// Primary → replica: refused.
    Refuse(AuthRefuse),
}

fn array<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.try_into().ok()
}

impl AuthMessage {
    /// The frame type this message travels in.
    pub fn kind(&self) -> FrameType {
        match self {
            AuthMessage::Begin { .. } => FrameType::AuthBegin,
            AuthMessage::Challenge { .. } => FrameType::AuthChallenge,
            AuthMessage::Proof { .. } => FrameType::AuthProof,
            AuthMessage::Refuse(_) => FrameType::AuthRefuse,
        }
    }

    /// Encodes the payload.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            AuthMessage::Begin { protocol_version, replica_nonce } => [&protocol_version.to_le_bytes()[..], &replica_nonce.0].concat(),
            AuthMessage::Challenge { primary_nonce, cluster_id, proof } => [&primary_nonce.0[..], cluster_id.as_str().as_bytes(), &proof.0].concat(),
            AuthMessage::Proof { proof } => proof.0.to_vec(),
            // A struct of an enum and a string always serializes.
            AuthMessage::Refuse(r) => serde_json::to_vec(r).unwrap_or_default(),
        }
    }

    /// Decodes an auth frame; `None` for a frame of another family.
    pub fn decode(f: &Frame) -> Option<Result<AuthMessage, MessageError>> {
        let bad = |detail: &str| MessageError::new(f.kind, detail);
        let p = &f.payload[..];
        Some(match f.kind {
            FrameType::AuthBegin => match (p.get(..4).and_then(array::<4>), p.get(4..).and_then(array::<NONCE_LEN>)) {
                (Some(v), Some(n)) => Ok(AuthMessage::Begin { protocol_version: u32::from_le_bytes(v), replica_nonce: Nonce(n) }),
                _ => Err(bad("length (expected 36 bytes)")),
            },
            FrameType::AuthChallenge => {
                if p.len() != NONCE_LEN + 32 + PROOF_LEN {
                    return Some(Err(bad("length (expected 96 bytes)")));
                }
                let (nonce, rest) = p.split_at(NONCE_LEN);
                let (cluster, proof) = rest.split_at(32);
                let cluster_id = match std::str::from_utf8(cluster).map_err(|_| ()).and_then(|c| ClusterId::parse(c).map_err(|_| ())) {
                    Ok(c) => c,
                    Err(()) => return Some(Err(bad("cluster id is not 32 lowercase hex digits"))),
                };
                match (array::<NONCE_LEN>(nonce), array::<PROOF_LEN>(proof)) {
                    (Some(n), Some(pr)) => Ok(AuthMessage::Challenge { primary_nonce: Nonce(n), cluster_id, proof: Proof(pr) }),
                    _ => Err(bad("length (expected 96 bytes)")),
                }
            }
            FrameType::AuthProof => match array::<PROOF_LEN>(p) {
                Some(proof) => Ok(AuthMessage::Proof { proof: Proof(proof) }),
                None => Err(bad("length (expected 32 bytes)")),
            },
            FrameType::AuthRefuse => match serde_json::from_slice::<AuthRefuse>(p) {
                Ok(r) if r.detail.len() > MAX_DETAIL_BYTES => Err(bad(&format!("detail of {} bytes exceeds {MAX_DETAIL_BYTES}", r.detail.len()))),
                Ok(r) => Ok(AuthMessage::Refuse(r)),
                Err(e) => Err(bad(&e.to_string())),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use bytes::Bytes;

    use super::*;
    use crate::auth::AuthRefuseCode;
    use crate::wire::message::MAX_ERROR_DETAIL_BYTES;
    use crate::wire::Message;

    fn frame(kind: FrameType, payload: &[u8]) -> Frame {
        Frame { kind, payload: Bytes::copy_from_slice(payload) }
    }

    /// RES-4: auth messages round-trip with exact layouts, and anything of
    /// the wrong length or format is a typed error.
    #[test]
    fn res_4_auth_messages_round_trip_and_reject_malformed_payloads() {
        let cid = ClusterId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let samples = [
            AuthMessage::Begin { protocol_version: 2, replica_nonce: Nonce([7; 32]) },
            AuthMessage::Challenge { primary_nonce: Nonce([1; 32]), cluster_id: cid, proof: Proof([3; 32]) },
            AuthMessage::Proof { proof: Proof([4; 32]) },
            AuthMessage::Refuse(AuthRefuse { code: AuthRefuseCode::AUTH_FAILED, detail: "no".into() }),
        ];
        let lens = [36, 96, 32];
        for (i, m) in samples.iter().enumerate() {
            let wire = Message::Auth(m.clone()).to_frame();
            let mut d = crate::wire::FrameDecoder::new(1024);
            d.push(&wire);
            let f = d.next_frame().unwrap().unwrap();
            assert_eq!(f.kind, m.kind());
            if let Some(len) = lens.get(i) {
                assert_eq!(f.payload.len(), *len);
            }
            assert_eq!(Message::decode(&f).unwrap(), Message::Auth(m.clone()));
        }
        let bad = |kind, p: &[u8]| assert!(Message::decode(&frame(kind, p)).is_err(), "{kind:?} {} bytes accepted", p.len());
        bad(FrameType::AuthBegin, &[0; 35]);
        bad(FrameType::AuthBegin, &[0; 37]);
        bad(FrameType::AuthChallenge, &[0; 95]);
        bad(FrameType::AuthChallenge, &[b'z'; 96]);
        let mut upper = vec![0u8; 32];
        upper.extend_from_slice(b"0123456789ABCDEF0123456789ABCDEF");
        upper.extend_from_slice(&[0; 32]);
        bad(FrameType::AuthChallenge, &upper);
        bad(FrameType::AuthProof, &[0; 31]);
        bad(FrameType::AuthRefuse, br#"{"code":"NOPE","detail":""}"#);
        bad(FrameType::AuthRefuse, br#"{"code":"AUTH_FAILED","detail":"","extra":1}"#);
        let long = format!(r#"{{"code":"AUTH_FAILED","detail":"{}"}}"#, "x".repeat(MAX_DETAIL_BYTES + 1));
        bad(FrameType::AuthRefuse, long.as_bytes());
    }

    /// RES-4, F-N2: a malformed AUTH_REFUSE quotes the peer's bytes only
    /// boundedly (regression: the fuzzer's `repl_message` found a refusal
    /// code of 1,000 bytes quoted whole in the JSON decoder's message).
    #[test]
    fn res_4_a_malformed_auth_refuse_quotes_the_peer_boundedly() {
        let payload = format!(r#"{{"code":"{}","detail":""}}"#, "S".repeat(4 * MAX_ERROR_DETAIL_BYTES));
        let e = AuthMessage::decode(&frame(FrameType::AuthRefuse, payload.as_bytes())).unwrap().unwrap_err();
        assert_eq!(e.kind, "AuthRefuse");
        assert!(e.detail.len() <= MAX_ERROR_DETAIL_BYTES, "quoted {} bytes", e.detail.len());
        assert!(e.detail.contains("unknown variant"), "{}", e.detail);
    }
}
