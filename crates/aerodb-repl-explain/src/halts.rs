//! The catalogue of halt and blocking codes: what each code a replica can
//! record means, the rule it usually enforces, and what the operator should
//! do. `replication.halt` explanations and `docs/operations.md` ("Halt
//! codes") are built from the same table, so they cannot disagree.
//!
//! The catalogue never decides anything: the halt itself (code, rule,
//! evidence) is produced by `aerodb-repl-core` / `aerodb-repl-net`; this only
//! adds the operator's next step.

/// One code a replica can record as a halt or as a blocking reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaltCode {
    /// Stable code exactly as it appears in `blocking_reason.code`.
    pub code: &'static str,
    /// The rule the code usually enforces (the halt carries the exact one).
    pub rule_id: &'static str,
    /// Failure-matrix row, when there is one.
    pub failure: Option<&'static str>,
    /// Whether the code halts the replica (true) or only blocks progress
    /// until the next connection attempt (false).
    pub halts: bool,
    /// What happened, in one line.
    pub meaning: &'static str,
    /// What the operator should do.
    pub action: &'static str,
}

const REBOOTSTRAP: &str = "aerodb replica --rebootstrap";

/// Every code, halting codes first, in a fixed order.
pub const HALT_CODES: &[HaltCode] = &[
    HaltCode {
        code: "CHECKSUM_MISMATCH",
        rule_id: "CORE-2",
        failure: Some("F-V1"),
        halts: true,
        meaning: "a received WAL record failed its crc32c check",
        action: "check the replica's disk and the network path to the primary; run `aerodb verify --data-dir` on the primary's data directory (read-only); then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "INVALID_RECORD",
        rule_id: "CORE-2",
        failure: Some("F-V1"),
        halts: true,
        meaning: "received WAL bytes are not a valid record (truncated, bad length, header or op list)",
        action: "check the replica's disk and the network path to the primary; run `aerodb verify --data-dir` on the primary's data directory (read-only); then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "LSN_GAP",
        rule_id: "REPL-7",
        failure: Some("F-V2"),
        halts: true,
        meaning: "a record did not start where the previous one ended (gap, overlap or duplicate)",
        action: "run `aerodb verify --data-dir` on the primary's data directory (read-only); then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "COMMIT_ID_GAP",
        rule_id: "REPL-2",
        failure: Some("F-V2"),
        halts: true,
        meaning: "a record's CommitId is not exactly the previous CommitId + 1",
        action: "run `aerodb verify --data-dir` on the primary's data directory (read-only); then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "FINGERPRINT_MISMATCH",
        rule_id: "REPL-5",
        failure: Some("F-D1"),
        halts: true,
        meaning: "a record's history fingerprint does not chain from the replica's history: the histories diverged",
        action: "find out why the primary's history changed (restored from a backup, re-initialised, another primary at the same address); once the primary's history is the one to keep, re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SEGMENT_DISCONTINUITY",
        rule_id: "REPL-7",
        failure: Some("F-V2"),
        halts: true,
        meaning: "a WAL segment header does not continue the validated history",
        action: "run `aerodb verify --data-dir` on the primary's data directory (read-only); then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "APPLY_DIVERGED",
        rule_id: "REPL-4",
        failure: Some("F-D3"),
        halts: true,
        meaning: "the state digest recomputed after applying a record differs from the digest the primary wrote into it",
        action: "keep a copy of the replica's data directory for diagnosis (this indicates a bug or memory/disk corruption), then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "APPLY_OUT_OF_ORDER",
        rule_id: "REPL-2",
        failure: Some("F-V2"),
        halts: true,
        meaning: "a validated record was not the next commit for the store",
        action: "keep a copy of the replica's data directory for diagnosis, then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "GC_BAD_HORIZON",
        rule_id: "MVCC-4",
        failure: Some("F-D3"),
        halts: true,
        meaning: "a GC record states a history horizon behind the replica's (or not below its own CommitId): applying it would admit reads whose versions are gone",
        action: "keep a copy of the replica's data directory for diagnosis (the primary wrote a GC record no correct primary writes: a bug or corruption), run `aerodb verify --data-dir` on the primary's data directory (read-only), then re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "DIVERGED",
        rule_id: "REPL-5",
        failure: Some("F-D1"),
        halts: true,
        meaning: "at the handshake the primary's record at the replica's resume point has another CommitId or fingerprint (or none ends there)",
        action: "find out why the primary's history changed (restored from a backup, re-initialised); once the primary's history is the one to keep, re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "REPLICA_AHEAD",
        rule_id: "REPL-3",
        failure: Some("F-D2"),
        halts: true,
        meaning: "the replica holds history beyond the primary's durable WAL: the primary lost acknowledged commits",
        action: "restore the primary (its data directory lost history the replica still has); do not re-bootstrap before deciding which history is authoritative, because `aerodb replica --rebootstrap` discards the replica's extra commits",
    },
    HaltCode {
        code: "CLUSTER_MISMATCH",
        rule_id: "REPL-1",
        failure: Some("F-C1"),
        halts: true,
        meaning: "the primary belongs to another cluster than the one the replica was bootstrapped from",
        action: "check `--primary`: it points at another cluster's primary; fix the address, or, if the replica must follow the new cluster, re-bootstrap it with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "PROTOCOL_VERSION",
        rule_id: "REPL-1",
        failure: None,
        halts: true,
        meaning: "the primary speaks another replication protocol version",
        action: "run the same AeroDB version on the primary and the replica, then restart the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "PEER_NOT_AERODB",
        rule_id: "REPL-1",
        failure: Some("F-C1"),
        halts: true,
        meaning: "the address in `--primary` does not answer as an AeroDB primary's replication port",
        action: "check `--primary` (it must be the primary's `--repl-listen` address, not its client or DX port), then restart the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_METADATA_MISMATCH",
        rule_id: "F-S3",
        failure: Some("F-S3"),
        halts: true,
        meaning: "the installed bootstrap snapshot's cut differs from the boundary recorded in the replica metadata",
        action: "the replica's files are inconsistent; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_CHECKSUM",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "a file of the installed bootstrap snapshot fails its crc32c",
        action: "check the replica's disk; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_SIZE",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "a file of the installed bootstrap snapshot has another size than its manifest says",
        action: "check the replica's disk; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_MISSING_FILE",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "a file the bootstrap snapshot's manifest lists is missing",
        action: "check that nothing removes files under the data directory; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_EXTRA_FILE",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the bootstrap snapshot directory holds a file its manifest does not list",
        action: "check that nothing writes files under the data directory; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_MANIFEST",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the bootstrap snapshot's manifest does not parse, fails its checksum or is inconsistent",
        action: "check the replica's disk; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_FORMAT",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the bootstrap snapshot uses a format this build cannot read",
        action: "run the AeroDB version that wrote the snapshot, or re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_CLUSTER",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the bootstrap snapshot belongs to another cluster",
        action: "re-bootstrap the replica from the right primary with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_CORRUPT",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the bootstrap snapshot's checksums match but its contents are not a valid MVCC cut",
        action: "keep a copy for diagnosis; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_DIGEST",
        rule_id: "F-S4",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the state digest of the loaded bootstrap snapshot differs from its manifest",
        action: "keep a copy for diagnosis; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_IO",
        rule_id: "REPL-8",
        failure: Some("F-S4"),
        halts: true,
        meaning: "the bootstrap snapshot could not be read from disk",
        action: "check the replica's disk (permissions, space, errors in the kernel log); then restart with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "WAL_CORRUPT",
        rule_id: "CORE-3",
        failure: Some("F-RC1"),
        halts: true,
        meaning: "replica recovery found corruption in its local WAL that is not a torn tail",
        action: "check the replica's disk; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "WAL_BAD_SEGMENT_HEADER",
        rule_id: "CORE-3",
        failure: Some("F-RC1"),
        halts: true,
        meaning: "replica recovery found a damaged WAL segment header",
        action: "check the replica's disk; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "WAL_SEGMENT_LAYOUT",
        rule_id: "REPL-7",
        failure: Some("F-RC1"),
        halts: true,
        meaning: "replica recovery found WAL segments that do not follow each other",
        action: "check that nothing adds or removes files under the data directory; re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "WAL_EMPTY",
        rule_id: "CORE-3",
        failure: Some("F-RC1"),
        halts: true,
        meaning: "replica recovery found no WAL segment although the replica is bootstrapped",
        action: "re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "WAL_IO",
        rule_id: "CORE-3",
        failure: Some("F-RC1"),
        halts: true,
        meaning: "replica recovery could not read its local WAL",
        action: "check the replica's disk (permissions, space, errors in the kernel log); then restart with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "SNAPSHOT_WAL_MISMATCH",
        rule_id: "F-S3",
        failure: Some("F-RC1"),
        halts: true,
        meaning: "the replica's WAL does not continue its bootstrap snapshot's cut exactly",
        action: "re-bootstrap the replica with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "REPLICA_IO_ERROR",
        rule_id: "REPL-9",
        failure: None,
        halts: true,
        meaning: "the replica could not write or sync received WAL to its disk",
        action: "check the replica's disk (space, permissions, errors in the kernel log); then restart with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "BOOTSTRAP_IO",
        rule_id: "REPL-9",
        failure: None,
        halts: true,
        meaning: "the replica could not write its bootstrap state to disk",
        action: "check the replica's disk (space, permissions); then restart with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "META_UNREADABLE",
        rule_id: "F-RC2",
        failure: Some("F-RC2"),
        halts: true,
        meaning: "a replica metadata file (replica.json or halt.json) cannot be read",
        action: "check the file's permissions and the disk; restore the file from a backup, or discard the replica's state with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "META_MALFORMED",
        rule_id: "F-RC2",
        failure: Some("F-RC2"),
        halts: true,
        meaning: "a replica metadata file does not parse",
        action: "restore the file from a backup, or discard the replica's state with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "META_CHECKSUM_MISMATCH",
        rule_id: "F-RC2",
        failure: Some("F-RC2"),
        halts: true,
        meaning: "a replica metadata file fails its checksum",
        action: "restore the file from a backup, or discard the replica's state with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "META_VERSION",
        rule_id: "F-RC2",
        failure: Some("F-RC2"),
        halts: true,
        meaning: "the replica metadata has a format version this build does not support",
        action: "run the AeroDB version that wrote it, or discard the replica's state with `aerodb replica --rebootstrap`",
    },
    HaltCode {
        code: "DISCARD_FAILED",
        rule_id: "F-RC2",
        failure: Some("F-RC2"),
        halts: true,
        meaning: "an uninitialised replica could not remove a partial bootstrap",
        action: "check the data directory's permissions; then restart with `aerodb replica --rebootstrap`",
    },
    // Blocking codes: progress stops until the next attempt; no halt.
    HaltCode {
        code: "CONNECT_FAILED",
        rule_id: "F-N1",
        failure: Some("F-N1"),
        halts: false,
        meaning: "the replica cannot connect to the primary's replication address",
        action: "check that the primary runs and that `--primary` and the network are right; the replica retries by itself and keeps serving safe reads",
    },
    HaltCode {
        code: "CONNECTION_LOST",
        rule_id: "F-N1",
        failure: Some("F-N1"),
        halts: false,
        meaning: "the replication connection closed or failed",
        action: "check the primary and the network; the replica reconnects by itself (with a fresh handshake) and keeps serving safe reads",
    },
    HaltCode {
        code: "CONNECTION_IDLE",
        rule_id: "F-N1",
        failure: Some("F-N1"),
        halts: false,
        meaning: "no frame arrived from the primary within the idle limit",
        action: "check the primary and the network; the replica reconnects by itself",
    },
    HaltCode {
        code: "PROTOCOL_ERROR",
        rule_id: "F-N2",
        failure: Some("F-N2"),
        halts: false,
        meaning: "a frame was malformed, unexpected or of an unknown type",
        action: "check for a proxy or middlebox altering the connection; the replica drops the connection and reconnects",
    },
    HaltCode {
        code: "FRAME_TOO_LARGE",
        rule_id: "F-N2",
        failure: Some("F-N2"),
        halts: false,
        meaning: "a frame exceeded the maximum size",
        action: "check for a proxy altering the connection and that both sides run the same version; the replica reconnects",
    },
    HaltCode {
        code: "FRAME_CHECKSUM",
        rule_id: "F-N2",
        failure: Some("F-N2"),
        halts: false,
        meaning: "a frame failed its crc32c (corrupted in transit)",
        action: "check the network path; the replica drops the connection and reconnects",
    },
    HaltCode {
        code: "WAL_UNAVAILABLE",
        rule_id: "RES-2",
        failure: None,
        halts: false,
        meaning: "the primary no longer retains the WAL the replica needs: the replica fell further behind than the primary's `--wal-keep-bytes` and the WAL was removed (the detail gives its resume point, the oldest LSN and CommitId the primary holds, its durable position and the cap)",
        action: "re-bootstrap the replica from a snapshot with `aerodb replica --rebootstrap --bootstrap snapshot`; to keep replicas from being cut off, raise the primary's `--wal-keep-bytes` and watch `retention` in its `/v1/replication`",
    },
    HaltCode {
        code: "PRIMARY_WAL_UNREADABLE",
        rule_id: "REPL-10",
        failure: None,
        halts: false,
        meaning: "the primary could not read its own WAL to decide the handshake or to ship records",
        action: "check the primary's disk and logs; the replica retries",
    },
    HaltCode {
        code: "SNAPSHOT_UNAVAILABLE",
        rule_id: "REPL-8",
        failure: None,
        halts: false,
        meaning: "the primary could not provide a snapshot for bootstrap",
        action: "check the primary's logs and disk space under `snapshots/`; the replica retries",
    },
    HaltCode {
        code: "TOO_MANY_CONNECTIONS",
        rule_id: "RES-3",
        failure: None,
        halts: false,
        meaning: "the primary's replication port is at its connection cap (64) and refused this connection",
        action: "check what holds connections to the primary's `--repl-listen` port (only replicas should connect); the replica retries with backoff",
    },
    HaltCode {
        code: "HELLO_TIMEOUT",
        rule_id: "RES-3",
        failure: None,
        halts: false,
        meaning: "the primary closed the connection because the replica did not finish the TLS handshake (with TLS), the token authentication (with a token) and a whole HELLO within 5 s of the connection",
        action: "check the network path between the replica and the primary (a slow or stalling link); the replica retries",
    },
];

/// Looks up a code in the catalogue.
pub fn halt_code(code: &str) -> Option<&'static HaltCode> {
    HALT_CODES.iter().find(|c| c.code == code)
}

/// What the operator should do about `code`. Codes outside the catalogue
/// (e.g. an error code a newer primary sends) get the generic advice.
pub fn operator_action(code: &str) -> &'static str {
    halt_code(code).map_or(GENERIC_ACTION, |c| c.action)
}

/// Advice for a code the catalogue does not know.
pub const GENERIC_ACTION: &str =
    "read the halt's detail and evidence; once the cause is fixed, the halt is cleared only by `aerodb replica --rebootstrap` (or removing the data directory)";

/// The explicit operator command that clears a halt.
pub const REBOOTSTRAP_COMMAND: &str = REBOOTSTRAP;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn halt_catalogue_codes_are_unique_and_cite_registered_rules() {
        let mut seen = BTreeSet::new();
        for c in HALT_CODES {
            assert!(seen.insert(c.code), "duplicate code {}", c.code);
            assert!(crate::rules::rule(c.rule_id).is_some(), "{} cites unknown rule {}", c.code, c.rule_id);
            if let Some(f) = c.failure {
                assert!(crate::rules::rule(f).is_some(), "{} cites unknown row {f}", c.code);
            }
            assert!(!c.meaning.contains('|') && !c.action.contains('|'), "{} breaks tables", c.code);
        }
    }

    #[test]
    fn halting_codes_point_at_the_explicit_operator_action() {
        for c in HALT_CODES.iter().filter(|c| c.halts) {
            assert!(c.action.contains(REBOOTSTRAP_COMMAND), "{} must name the operator action", c.code);
        }
        assert_eq!(operator_action("NOT_A_CODE"), GENERIC_ACTION);
    }
}
