//! Token authentication of the replication port (protocol v2 auth phase,
//! docs/protocol.md "Authentication").
//!
//! Both sides hold the same secret (`--repl-token-file`) and prove it to
//! each other with HMAC-SHA256 over a transcript of fresh nonces from both
//! sides, the primary's cluster id, the protocol version and the role of the
//! prover; the replica's proof also covers the exact HELLO bytes it sends
//! next. The secret never crosses the wire.
//!
//! * **Replay**: every proof covers both nonces; each side picks its own
//!   nonce freshly per connection (the runtime draws it from the OS RNG and
//!   passes it in), so a recorded proof never verifies on another
//!   connection.
//! * **Reflection**: the prover's role is in the transcript (`P` for the
//!   primary, `R` for the replica), so a primary's proof can never be
//!   played back as a replica's proof or the other way round.
//! * **Cluster binding**: the primary's cluster id is in both proofs, so a
//!   token shared by two clusters does not let a peer of one authenticate
//!   for the other, and fencing (REPL-11) can require a peer authenticated
//!   for this cluster ([`PeerAuth`]).
//! * Proofs are compared in constant time (`ring::hmac::verify`).
//!
//! This module is pure: no RNG, no clock, no file. Reading and checking the
//! token file lives in the runtime (`aerodb-repl-net`), which hands the
//! bytes to [`ReplToken::parse`].

use std::fmt;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::ids::ClusterId;

/// Length of a nonce in bytes.
pub const NONCE_LEN: usize = 32;
/// Length of a proof (HMAC-SHA256) in bytes.
pub const PROOF_LEN: usize = 32;
/// Domain-separation label at the start of every transcript.
pub const AUTH_LABEL: &[u8] = b"aerodb-repl-auth-v2\0";
/// Shortest accepted token, in bytes (e.g. `openssl rand -hex 32` gives 64).
pub const MIN_TOKEN_BYTES: usize = 32;
/// Longest accepted token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Largest token file read (RES-4): anything bigger is refused unread.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// A nonce: fresh random bytes per connection and side, supplied by the
/// runtime (the engines never draw randomness themselves).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_LEN]);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", hex(&self.0[..4]))
    }
}

/// A proof: HMAC-SHA256 of a transcript under the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Proof(pub [u8; PROOF_LEN]);

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proof({}…)", hex(&self.0[..4]))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Who proves: part of every transcript, so proofs cannot be reflected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofRole {
    /// The primary proves it holds the token.
    Primary,
    /// The replica proves it holds the token (and that it sends this HELLO).
    Replica,
}

impl ProofRole {
    fn byte(self) -> u8 {
        match self {
            ProofRole::Primary => b'P',
            ProofRole::Replica => b'R',
        }
    }
}

/// Why token bytes are not acceptable. Never contains the token itself.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct TokenFormatError {
    /// What is wrong (lengths and positions only, never content).
    pub detail: String,
}

/// The shared secret of the replication port. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ReplToken {
    key: hmac::Key,
}

impl fmt::Debug for ReplToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplToken(<redacted>)")
    }
}

impl ReplToken {
    /// Validates token file contents (RES-4): one line of
    /// [`MIN_TOKEN_BYTES`]..=[`MAX_TOKEN_BYTES`] printable ASCII characters
    /// without spaces, optionally followed by one line break.
    pub fn parse(bytes: &[u8]) -> Result<ReplToken, TokenFormatError> {
        let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.len() < MIN_TOKEN_BYTES || body.len() > MAX_TOKEN_BYTES {
            return Err(TokenFormatError {
                detail: format!("the token is {} bytes; it must be {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes on one line", body.len()),
            });
        }
        if let Some(at) = body.iter().position(|b| !(0x21..=0x7e).contains(b)) {
            return Err(TokenFormatError {
                detail: format!("byte {at} of the token is not a printable ASCII character (no spaces, tabs, line breaks or non-ASCII inside the token)"),
            });
        }
        Ok(ReplToken { key: hmac::Key::new(hmac::HMAC_SHA256, body) })
    }

    fn sign(&self, transcript: &[u8]) -> Proof {
        let tag = hmac::sign(&self.key, transcript);
        let mut out = [0u8; PROOF_LEN];
        out.copy_from_slice(tag.as_ref());
        Proof(out)
    }

    fn verify(&self, transcript: &[u8], proof: &Proof) -> bool {
        // Constant time in the proof's bytes (ring compares the tags with a
        // constant-time comparison).
        hmac::verify(&self.key, transcript, &proof.0).is_ok()
    }

    /// The primary's proof for this connection.
    pub fn primary_proof(&self, version: u32, cluster_id: &ClusterId, replica_nonce: &Nonce, primary_nonce: &Nonce) -> Proof {
        self.sign(&transcript(ProofRole::Primary, version, cluster_id, replica_nonce, primary_nonce, &[]))
    }

    /// The replica's proof for this connection and the HELLO payload it sends.
    pub fn replica_proof(&self, version: u32, cluster_id: &ClusterId, replica_nonce: &Nonce, primary_nonce: &Nonce, hello: &[u8]) -> Proof {
        self.sign(&transcript(ProofRole::Replica, version, cluster_id, replica_nonce, primary_nonce, hello))
    }

    /// Checks a primary's proof (constant time).
    pub fn verify_primary(&self, version: u32, cluster_id: &ClusterId, replica_nonce: &Nonce, primary_nonce: &Nonce, proof: &Proof) -> bool {
        self.verify(&transcript(ProofRole::Primary, version, cluster_id, replica_nonce, primary_nonce, &[]), proof)
    }

    /// Checks a replica's proof over the HELLO payload that followed it (constant time).
    pub fn verify_replica(&self, version: u32, cluster_id: &ClusterId, replica_nonce: &Nonce, primary_nonce: &Nonce, hello: &[u8], proof: &Proof) -> bool {
        self.verify(&transcript(ProofRole::Replica, version, cluster_id, replica_nonce, primary_nonce, hello), proof)
    }
}

/// The bytes a proof signs (docs/protocol.md):
///
/// ```text
/// AUTH_LABEL (20) | version u32 LE | role (1: 'P' or 'R') | cluster id (32 ASCII hex)
///   | replica nonce (32) | primary nonce (32) | hello_len u32 LE | hello payload
/// ```
///
/// The primary's proof has an empty HELLO (`hello_len` 0).
pub fn transcript(role: ProofRole, version: u32, cluster_id: &ClusterId, replica_nonce: &Nonce, primary_nonce: &Nonce, hello: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(AUTH_LABEL.len() + 4 + 1 + 32 + 2 * NONCE_LEN + 4 + hello.len());
    t.extend_from_slice(AUTH_LABEL);
    t.extend_from_slice(&version.to_le_bytes());
    t.push(role.byte());
    t.extend_from_slice(cluster_id.as_str().as_bytes());
    t.extend_from_slice(&replica_nonce.0);
    t.extend_from_slice(&primary_nonce.0);
    // HELLO payloads are bounded by the primary's 64 KiB frame limit.
    t.extend_from_slice(&u32::try_from(hello.len()).unwrap_or(u32::MAX).to_le_bytes());
    t.extend_from_slice(hello);
    t
}

/// Codes of an AUTH_REFUSE frame (primary → replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(non_camel_case_types)]
pub enum AuthRefuseCode {
    /// The primary requires a token; the replica sent HELLO without authenticating.
    AUTH_REQUIRED,
    /// The replica's proof did not verify (wrong token, or a replayed or reflected proof).
    AUTH_FAILED,
    /// The replica offered authentication but this primary has no token configured.
    AUTH_NOT_CONFIGURED,
}

impl AuthRefuseCode {
    /// Every code, in a fixed order (for counters).
    pub const ALL: [AuthRefuseCode; 3] = [AuthRefuseCode::AUTH_REQUIRED, AuthRefuseCode::AUTH_FAILED, AuthRefuseCode::AUTH_NOT_CONFIGURED];

    /// The exact code string.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthRefuseCode::AUTH_REQUIRED => "AUTH_REQUIRED",
            AuthRefuseCode::AUTH_FAILED => "AUTH_FAILED",
            AuthRefuseCode::AUTH_NOT_CONFIGURED => "AUTH_NOT_CONFIGURED",
        }
    }
}

/// The AUTH_REFUSE payload: `{"code","detail"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRefuse {
    /// Stable code.
    pub code: AuthRefuseCode,
    /// Human-readable detail (bounded when decoded).
    pub detail: String,
}

/// How the peer on a primary's connection stands with respect to
/// authentication. Fencing (REPL-11) accepts proof only from a peer that
/// is not [`PeerAuth::Unauthenticated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerAuth {
    /// No token is configured: every peer is taken as it comes (v1 behaviour).
    NotRequired,
    /// The peer proved the token for this cluster on this connection.
    Authenticated,
    /// A token is configured and the peer has not proved it.
    Unauthenticated,
}

impl PeerAuth {
    /// Whether what the peer says may change this node's state (fence it).
    pub fn may_act(self) -> bool {
        self != PeerAuth::Unauthenticated
    }
}

/// Why a replica could not authenticate with the primary. Never a halt: it
/// says nothing about history; the replica retries with backoff, and the
/// reason is its blocking reason (code, rule REPL-1, evidence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "failure", rename_all = "snake_case")]
pub enum AuthFailure {
    /// The primary requires a token and this replica has none (AUTH_REQUIRED).
    PrimaryRequiresToken {
        /// The primary's detail.
        detail: String,
    },
    /// The primary did not accept this replica's proof (AUTH_FAILED).
    ProofRejected {
        /// The primary's detail.
        detail: String,
    },
    /// The primary's proof did not verify under this replica's token (AUTH_FAILED).
    PrimaryProofInvalid {
        /// The cluster id the peer claimed.
        claimed_cluster_id: ClusterId,
    },
    /// The peer answered without proving the token (AUTH_FAILED).
    PrimaryUnproven {
        /// The frame it sent instead of AUTH_CHALLENGE.
        answered: String,
    },
    /// This replica requires a token but the primary has none (AUTH_NOT_CONFIGURED).
    PrimaryHasNoToken {
        /// The primary's detail.
        detail: String,
    },
    /// The runtime supplied no nonce for an authenticated connection.
    NoNonce,
}

impl AuthFailure {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::PrimaryRequiresToken { .. } => "AUTH_REQUIRED",
            AuthFailure::ProofRejected { .. } | AuthFailure::PrimaryProofInvalid { .. } | AuthFailure::PrimaryUnproven { .. } | AuthFailure::NoNonce => {
                "AUTH_FAILED"
            }
            AuthFailure::PrimaryHasNoToken { .. } => "AUTH_NOT_CONFIGURED",
        }
    }

    /// One line for the operator.
    pub fn detail(&self, primary: &str) -> String {
        match self {
            AuthFailure::PrimaryRequiresToken { .. } => {
                format!("the primary at {primary} requires token authentication: start this replica with --repl-token-file holding the primary's token")
            }
            AuthFailure::ProofRejected { .. } => {
                format!("the primary at {primary} rejected this replica's token proof: the tokens differ (check --repl-token-file on both nodes)")
            }
            AuthFailure::PrimaryProofInvalid { claimed_cluster_id } => format!(
                "the peer at {primary} (claiming cluster {claimed_cluster_id}) could not prove it holds this replica's token: wrong token on one side, or not the real primary"
            ),
            AuthFailure::PrimaryUnproven { answered } => {
                format!("the peer at {primary} answered {answered} instead of proving the token: not an authenticated AeroDB primary")
            }
            AuthFailure::PrimaryHasNoToken { .. } => format!(
                "this replica requires token authentication (--repl-token-file) but the primary at {primary} has no token configured, so it cannot prove it"
            ),
            AuthFailure::NoNonce => "the runtime supplied no nonce for the authentication exchange".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const C1: &str = "0123456789abcdef0123456789abcdef";
    const C2: &str = "fedcba9876543210fedcba9876543210";

    fn token(s: &str) -> ReplToken {
        ReplToken::parse(s.as_bytes()).unwrap()
    }
    fn cid(c: &str) -> ClusterId {
        ClusterId::parse(c).unwrap()
    }
    const NR: Nonce = Nonce([1; NONCE_LEN]);
    const NP: Nonce = Nonce([2; NONCE_LEN]);
    const T1: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
    const T2: &str = "0123456789abcdef0123456789abcdef0123456789abcdeX";

    /// REPL-1: proofs verify only under the same token, nonces, cluster,
    /// version and (for the replica) HELLO bytes.
    #[test]
    fn repl_1_hmac_proofs_verify_only_for_the_same_transcript_and_token() {
        let (t, other) = (token(T1), token(T2));
        let p = t.primary_proof(2, &cid(C1), &NR, &NP);
        assert!(t.verify_primary(2, &cid(C1), &NR, &NP, &p));
        assert!(!other.verify_primary(2, &cid(C1), &NR, &NP, &p), "another token");
        assert!(!t.verify_primary(2, &cid(C2), &NR, &NP, &p), "another cluster");
        assert!(!t.verify_primary(3, &cid(C1), &NR, &NP, &p), "another protocol version");
        assert!(!t.verify_primary(2, &cid(C1), &NP, &NR, &p), "nonces swapped");
        let r = t.replica_proof(2, &cid(C1), &NR, &NP, b"{\"hello\":1}");
        assert!(t.verify_replica(2, &cid(C1), &NR, &NP, b"{\"hello\":1}", &r));
        assert!(!t.verify_replica(2, &cid(C1), &NR, &NP, b"{\"hello\":2}", &r), "HELLO changed after proving");
        let mut flipped = r;
        flipped.0[31] ^= 1;
        assert!(!t.verify_replica(2, &cid(C1), &NR, &NP, b"{\"hello\":1}", &flipped));
    }

    /// REPL-1: a primary's proof reflected back as a replica's proof (or
    /// the other way round) never verifies: the prover's role is signed.
    #[test]
    fn repl_1_reflected_proofs_are_rejected() {
        let t = token(T1);
        let primary = t.primary_proof(2, &cid(C1), &NR, &NP);
        assert!(!t.verify_replica(2, &cid(C1), &NR, &NP, &[], &primary));
        let replica = t.replica_proof(2, &cid(C1), &NR, &NP, &[]);
        assert!(!t.verify_primary(2, &cid(C1), &NR, &NP, &replica));
        assert_ne!(primary, replica);
    }

    /// REPL-1: a proof recorded on one connection does not verify on the
    /// next, where either side picked a fresh nonce (replay).
    #[test]
    fn repl_1_replayed_proofs_fail_with_fresh_nonces() {
        let t = token(T1);
        let recorded = t.replica_proof(2, &cid(C1), &NR, &NP, b"h");
        let fresh_primary = Nonce([9; NONCE_LEN]);
        assert!(!t.verify_replica(2, &cid(C1), &NR, &fresh_primary, b"h", &recorded));
        let recorded = t.primary_proof(2, &cid(C1), &NR, &NP);
        let fresh_replica = Nonce([8; NONCE_LEN]);
        assert!(!t.verify_primary(2, &cid(C1), &fresh_replica, &NP, &recorded));
    }

    /// RES-4: token bytes are bounded in size and format; errors never
    /// contain the token; Debug is redacted.
    #[test]
    fn res_4_token_format_is_bounded_and_never_shown() {
        assert!(ReplToken::parse(format!("{T1}\n").as_bytes()).is_ok());
        assert!(ReplToken::parse(format!("{T1}\r\n").as_bytes()).is_ok());
        let short = ReplToken::parse(b"short-secret").unwrap_err();
        assert!(short.detail.contains("12 bytes") && !short.detail.contains("short-secret"), "{short}");
        assert!(ReplToken::parse("x".repeat(MAX_TOKEN_BYTES + 1).as_bytes()).is_err());
        assert!(ReplToken::parse(b"").is_err());
        let spaced = ReplToken::parse(format!("{T1} {T1}").as_bytes()).unwrap_err();
        assert!(spaced.detail.contains("byte 48"), "{spaced}");
        assert!(ReplToken::parse(format!("{T1}\n\n").as_bytes()).is_err(), "two line breaks");
        assert!(ReplToken::parse(format!("{T1}é").as_bytes()).is_err());
        assert_eq!(format!("{:?}", token(T1)), "ReplToken(<redacted>)");
        // Two parses of the same bytes are the same key.
        let p = token(T1).primary_proof(2, &cid(C1), &NR, &NP);
        assert!(token(&format!("{T1}\n")).verify_primary(2, &cid(C1), &NR, &NP, &p));
    }

    /// REPL-11: only a peer that is not unauthenticated may act.
    #[test]
    fn repl_11_peer_auth_gate() {
        assert!(PeerAuth::NotRequired.may_act());
        assert!(PeerAuth::Authenticated.may_act());
        assert!(!PeerAuth::Unauthenticated.may_act());
    }

    /// The transcript layout is fixed (docs/protocol.md).
    #[test]
    fn repl_1_transcript_layout_is_fixed() {
        let t = transcript(ProofRole::Replica, 2, &cid(C1), &NR, &NP, b"xy");
        assert_eq!(&t[..20], AUTH_LABEL);
        assert_eq!(&t[20..24], &2u32.to_le_bytes());
        assert_eq!(t[24], b'R');
        assert_eq!(&t[25..57], C1.as_bytes());
        assert_eq!(&t[57..89], &[1; 32]);
        assert_eq!(&t[89..121], &[2; 32]);
        assert_eq!(&t[121..125], &2u32.to_le_bytes());
        assert_eq!(&t[125..], b"xy");
        assert_eq!(transcript(ProofRole::Primary, 2, &cid(C1), &NR, &NP, &[])[24], b'P');
    }
}
