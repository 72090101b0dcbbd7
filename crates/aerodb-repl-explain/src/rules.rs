//! The single registry of rule IDs from `REPLICATION.md`.
//!
//! Every rule the replication specification names has exactly one entry in
//! [`RULES`], in document order. Tests, error payloads and explanations cite
//! these IDs verbatim; `docs/invariants.md` maps each one to the tests that
//! prove it, and `cargo xtask audit` parses this file (the `id: "..."` fields
//! of [`RULES`]) to check that every ID is documented and proven by a test.

/// One rule of the replication specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable ID exactly as the specification spells it, e.g. `"CORE-2"`.
    pub id: &'static str,
    /// The family the ID belongs to: `"REPL"`, `"CORE"`, `"MVCC"`, `"P5"`,
    /// `"RS"` (read-safety gate), `"F"` (failure matrix) or `"RES"` (bounded
    /// resources).
    pub family: &'static str,
    /// One-line summary taken from the specification.
    pub summary: &'static str,
}

/// Every rule of `REPLICATION.md`, in document order.
pub const RULES: &[Rule] = &[
    // §3 Replication semantics
    Rule {
        id: "REPL-1",
        family: "REPL",
        summary: "Single writer: exactly one node acknowledges writes; replicas and halted nodes never do; if authority is unclear, refuse.",
    },
    Rule {
        id: "REPL-2",
        family: "REPL",
        summary: "Commit authority: CommitIds come only from the primary; a record whose CommitId is not exactly C+1 is fatal.",
    },
    Rule {
        id: "REPL-3",
        family: "REPL",
        summary: "History prefix: a replica's WAL is always a byte-exact prefix of the primary's WAL from its bootstrap point on.",
    },
    Rule {
        id: "REPL-4",
        family: "REPL",
        summary: "Deterministic reconstruction: the same snapshot plus the same WAL prefix yields the identical state digest on every node.",
    },
    Rule {
        id: "REPL-5",
        family: "REPL",
        summary: "No invisible divergence: any difference from the primary's history is detected and halts the replica; never healed automatically.",
    },
    Rule {
        id: "REPL-6",
        family: "REPL",
        summary: "Replica read safety: if safety cannot be proven, the read is refused.",
    },
    Rule {
        id: "REPL-7",
        family: "REPL",
        summary: "WAL completeness: records are shipped and applied in order with no gaps, duplicates or overlaps; a gap halts.",
    },
    Rule {
        id: "REPL-8",
        family: "REPL",
        summary: "Snapshot authority: a bootstrap snapshot comes from the primary, is a valid self-contained checksummed MVCC cut, validated before use.",
    },
    Rule {
        id: "REPL-9",
        family: "REPL",
        summary: "Crash safety: after a crash at any point every node recovers to a state satisfying all invariants; partial state is completed or discarded.",
    },
    Rule {
        id: "REPL-10",
        family: "REPL",
        summary: "No heuristic progress: no correctness decision depends on wall-clock time, timeouts, heartbeats or guesses.",
    },
    Rule {
        id: "REPL-11",
        family: "REPL",
        summary: "Fencing: when a replica proves the primary lost or rewrote durable history, the primary refuses every write (PRIMARY_FENCED), persists the fence and explains it; only an operator lifts it.",
    },
    // §3 Durability and MVCC, preserved from the core
    Rule {
        id: "CORE-1",
        family: "CORE",
        summary: "A write is acknowledged only after its WAL record is fsynced; an acknowledged write is never lost.",
    },
    Rule {
        id: "CORE-2",
        family: "CORE",
        summary: "Every WAL record carries a crc32c checksum that is verified before the record is used anywhere.",
    },
    Rule {
        id: "CORE-3",
        family: "CORE",
        summary: "Corruption is detected and halts, never skipped or repaired; recovery may drop only a torn tail, and reports it.",
    },
    Rule {
        id: "CORE-4",
        family: "CORE",
        summary: "Replay is deterministic and reuses one apply function for primary recovery, replica apply and snapshot-plus-WAL restore.",
    },
    Rule {
        id: "CORE-5",
        family: "CORE",
        summary: "Acknowledged history is never shortened silently and no CommitId is assigned twice: a checksummed durable high-water mark bounds what recovery may drop; WAL ending or invalid before it refuses start.",
    },
    Rule {
        id: "CORE-6",
        family: "CORE",
        summary: "Stored data is re-verified (scrub): every retained snapshot and sealed WAL segment is checked again at a bounded IO rate; damage is reported and a damaged snapshot is never used or shipped.",
    },
    Rule {
        id: "MVCC-1",
        family: "MVCC",
        summary: "Visibility: for read view R the visible version is the one with the largest CommitId ≤ R; a tombstone means not found.",
    },
    Rule {
        id: "MVCC-2",
        family: "MVCC",
        summary: "Atomic visibility: all versions of one commit become visible together, and only once durable.",
    },
    Rule {
        id: "MVCC-3",
        family: "MVCC",
        summary: "A read view is fixed for the whole read; range reads use one view; WAL applied meanwhile does not change what it sees.",
    },
    Rule {
        id: "MVCC-4",
        family: "MVCC",
        summary: "History retention: versions are removed only by a GC record in the WAL stating horizon H, applied by every node at the same log position; reads at R >= H unchanged, reads below H refused.",
    },
    Rule {
        id: "MVCC-5",
        family: "MVCC",
        summary: "GC never changes a read in flight: a read that pinned its view before a GC record was applied completes with the versions it pinned.",
    },
    // §3 Implementation invariants
    Rule {
        id: "P5-I4",
        family: "P5",
        summary: "The prefix rule (REPL-3) holds continuously: during receive, validation, apply and recovery.",
    },
    Rule {
        id: "P5-I5",
        family: "P5",
        summary: "Validate before apply: checksum, CommitId continuity, LSN continuity and fingerprint are verified before a record is applied or exposed.",
    },
    Rule {
        id: "P5-I6",
        family: "P5",
        summary: "CommitIds on replicas are immutable facts from the primary.",
    },
    Rule {
        id: "P5-I8",
        family: "P5",
        summary: "Snapshot bootstrap is an exact cut, durably complete and validated before WAL resumes; no reads during bootstrap.",
    },
    Rule {
        id: "P5-I9",
        family: "P5",
        summary: "After a snapshot at (C_snap, L_snap, F_snap), WAL resumes exactly at L_snap with CommitId C_snap+1 and previous fingerprint F_snap.",
    },
    Rule {
        id: "P5-I11",
        family: "P5",
        summary: "After any crash, replica state is derivable from its durable files alone, and no partially applied record is visible.",
    },
    Rule {
        id: "P5-I12",
        family: "P5",
        summary: "Read safety is proven per read, not assumed from lag or time.",
    },
    Rule {
        id: "P5-I14",
        family: "P5",
        summary: "Every replication state, offset and blocking reason is observable through the DX API.",
    },
    Rule {
        id: "P5-I15",
        family: "P5",
        summary: "Explanations cite real LSNs, real CommitIds, real states and rule IDs; nothing synthetic.",
    },
    Rule {
        id: "P5-I16",
        family: "P5",
        summary: "Replication is removable (standalone at startup, cargo feature at compile time) without changing the primary's behaviour.",
    },
    // §6 Read-safety gate
    Rule {
        id: "RS-1",
        family: "RS",
        summary: "Node is ReplicaActive and Streaming, or Disconnected/Connecting after a successful handshake in this process; never before that proof or when Halted.",
    },
    Rule {
        id: "RS-2",
        family: "RS",
        summary: "No integrity failure is recorded (no gap, checksum, divergence).",
    },
    Rule {
        id: "RS-3",
        family: "RS",
        summary: "R ≤ C_replica (and C_replica ≥ min_commit when given).",
    },
    Rule {
        id: "RS-4",
        family: "RS",
        summary: "R ≥ history horizon (the versions that R needs exist locally).",
    },
    Rule {
        id: "RS-5",
        family: "RS",
        summary: "The read pins one read view at R for its whole duration.",
    },
    // §9 Failure matrix
    Rule {
        id: "F-P1",
        family: "F",
        summary: "Primary crashes after assigning a CommitId, before fsync: never acknowledged, absent after restart, no replica sees it.",
    },
    Rule {
        id: "F-P2",
        family: "F",
        summary: "Primary crashes after fsync, before shipping: replayed on restart, replicas receive it later, CommitIds continue.",
    },
    Rule {
        id: "F-P3",
        family: "F",
        summary: "Primary crashes while shipping: replica keeps only whole, validated records and resumes on reconnect.",
    },
    Rule {
        id: "F-R1",
        family: "F",
        summary: "Replica crashes before received bytes are durable: those bytes are discarded; receive resumes from the last durable LSN.",
    },
    Rule {
        id: "F-R2",
        family: "F",
        summary: "Replica crashes after persisting, before validation: bytes are validated on restart; nothing applied before that.",
    },
    Rule {
        id: "F-V1",
        family: "F",
        summary: "Checksum mismatch in received WAL: rejected, replica halts, reads refused, explanation cites CORE-2/F-V1 with the LSN.",
    },
    Rule {
        id: "F-V2",
        family: "F",
        summary: "Gap, overlap, duplicate or out-of-order record inside validated WAL: rejected, state unchanged, replica halts; a chunk that merely starts at the wrong LSN is a protocol error (F-N2).",
    },
    Rule {
        id: "F-A1",
        family: "F",
        summary: "Crash in the middle of applying: no partial visibility; replay resumes deterministically.",
    },
    Rule {
        id: "F-A2",
        family: "F",
        summary: "Crash after apply, before any metadata update: recovery reconciles to the same final state digest.",
    },
    Rule {
        id: "F-S1",
        family: "F",
        summary: "Crash or disconnect during snapshot transfer: resumes from verified chunks if the primary still holds that snapshot, else the partial snapshot is discarded; uninitialised until it validates; no WAL applied.",
    },
    Rule {
        id: "F-S2",
        family: "F",
        summary: "Crash after transfer, before validation completes: snapshot invalid; bootstrap restarts from scratch.",
    },
    Rule {
        id: "F-S3",
        family: "F",
        summary: "WAL resume point does not match the snapshot cut: hard failure, replica halts.",
    },
    Rule {
        id: "F-S4",
        family: "F",
        summary: "Snapshot fails validation (checksum, manifest, digest, cluster): rejected; replica unchanged.",
    },
    Rule {
        id: "F-RC1",
        family: "F",
        summary: "Crash during replica recovery: recovery restarts with the same outcome as one crash.",
    },
    Rule {
        id: "F-RC2",
        family: "F",
        summary: "Corrupt replica metadata: replica refuses to start; explanation says which file and check.",
    },
    Rule {
        id: "F-RS1",
        family: "F",
        summary: "Read requested while unsafe: refused with reason and numbers.",
    },
    Rule {
        id: "F-RS2",
        family: "F",
        summary: "Replica state changes during a read: the read keeps its pinned view or is refused; never a mixed view.",
    },
    Rule {
        id: "F-N1",
        family: "F",
        summary: "Network partition or connection loss: replica stops advancing, serves only safe reads, resumes with a fresh handshake.",
    },
    Rule {
        id: "F-N2",
        family: "F",
        summary: "Duplicated, reordered or corrupted frames: detected; connection dropped or replica halted; nothing wrong applied.",
    },
    Rule {
        id: "F-D1",
        family: "F",
        summary: "Replica history diverges from the primary's: detected at handshake or on the record; replica halts; both sides' values explained.",
    },
    Rule {
        id: "F-D2",
        family: "F",
        summary: "Replica is ahead of the primary (primary lost history): REPLICA_AHEAD; replica halts.",
    },
    Rule {
        id: "F-D3",
        family: "F",
        summary: "Recomputed state digest differs from the record's: APPLY_DIVERGED; replica halts before serving that commit; both digests explained.",
    },
    Rule {
        id: "F-C1",
        family: "F",
        summary: "Replica connects to a node of another cluster, or to a non-primary: refused; replica halts (REPL-1).",
    },
    Rule {
        id: "F-O1",
        family: "F",
        summary: "DX endpoint queried during a failure: answers with what is known, marks incomplete parts, never guesses.",
    },
    Rule {
        id: "F-P4",
        family: "F",
        summary: "Primary WAL ends or is damaged before its durable high-water mark (also after a clean shutdown): refuses to start with mark, WAL end and damaged range; verify fails; nothing truncated.",
    },
    Rule {
        id: "F-P5",
        family: "F",
        summary: "A replica proves the primary lost or rewrote acknowledged history: the replica halts and the primary is fenced; writes refused with PRIMARY_FENCED, reads work, fence survives restarts.",
    },
    Rule {
        id: "F-G1",
        family: "F",
        summary: "GC record applied while reads are pinned below or above the new horizon: pinned reads complete unchanged; new reads below H refused under RS-4 on every node; digests stay equal.",
    },
    Rule {
        id: "F-G2",
        family: "F",
        summary: "Crash during GC, or during a snapshot that follows one: recovery reaches the same horizon and digest as a node that never crashed.",
    },
    Rule {
        id: "F-SC1",
        family: "F",
        summary: "A retained snapshot or sealed WAL segment is damaged while the node runs: the scrub reports file, offset and CORE-6; a damaged snapshot is withdrawn from bootstrap and recovery.",
    },
    // §12 Bounded resources
    Rule {
        id: "RES-1",
        family: "RES",
        summary: "Memory grows with live data and the retention window, never with the length of the write history.",
    },
    Rule {
        id: "RES-2",
        family: "RES",
        summary: "Primary WAL is bounded: kept for snapshots and served replicas up to --wal-keep-bytes; beyond it WAL_UNAVAILABLE with numbers; per-replica forecast published.",
    },
    Rule {
        id: "RES-3",
        family: "RES",
        summary: "Every external connection and request is bounded in count, size and time; waiting reads hold no worker thread; SIGTERM completes in bounded time.",
    },
    Rule {
        id: "RES-4",
        family: "RES",
        summary: "Whatever arrives from a peer is validated against its documented format and range before it is stored, logged or shown.",
    },
];

/// Looks up a rule by its exact ID (case-sensitive, e.g. `"RS-3"`).
///
/// Returns `None` for IDs the specification does not define.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const FAMILY_ORDER: &[&str] = &["REPL", "CORE", "MVCC", "P5", "RS", "F", "RES"];

    #[test]
    fn rules_registry_has_unique_ids() {
        let mut seen = BTreeSet::new();
        for r in RULES {
            assert!(seen.insert(r.id), "duplicate rule id {}", r.id);
        }
        assert_eq!(seen.len(), RULES.len());
    }

    #[test]
    fn rules_registry_has_every_spec_rule_count_per_family() {
        let count = |f: &str| RULES.iter().filter(|r| r.family == f).count();
        assert_eq!(count("REPL"), 11);
        assert_eq!(count("CORE"), 6);
        assert_eq!(count("MVCC"), 5);
        assert_eq!(count("P5"), 10);
        assert_eq!(count("RS"), 5);
        assert_eq!(count("F"), 29);
        assert_eq!(count("RES"), 4);
        assert_eq!(RULES.len(), 70);
    }

    #[test]
    fn rules_registry_ids_are_well_formed_and_match_their_family() {
        for r in RULES {
            let (prefix, rest) = r.id.split_once('-').expect("id has a dash");
            assert_eq!(prefix, r.family, "family of {}", r.id);
            let number = match r.family {
                "P5" => rest.strip_prefix('I').expect("P5 ids are P5-I<n>"),
                "F" => rest.trim_start_matches(|c: char| c.is_ascii_uppercase()),
                _ => rest,
            };
            assert!(!number.is_empty(), "{} has no number", r.id);
            assert!(number.bytes().all(|b| b.is_ascii_digit()), "{} number", r.id);
            assert!(!number.starts_with('0'), "{} has a leading zero", r.id);
            if r.family == "F" {
                assert!(rest.len() > number.len(), "{} has no letters", r.id);
            }
        }
    }

    #[test]
    fn rules_registry_is_in_document_order_by_family() {
        let mut last = 0;
        for r in RULES {
            let pos = FAMILY_ORDER.iter().position(|f| *f == r.family).expect("known family");
            assert!(pos >= last, "{} is out of document order", r.id);
            last = pos;
        }
        // Within the numbered families the numbers strictly increase.
        let trailing_number = |id: &str| -> u32 { id.rsplit(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()).expect("id ends in a number") };
        for pair in RULES.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.family == b.family && a.family != "F" {
                assert!(trailing_number(a.id) < trailing_number(b.id), "{} then {}", a.id, b.id);
            }
        }
    }

    #[test]
    fn rules_registry_summaries_are_single_table_safe_lines() {
        for r in RULES {
            assert!(!r.summary.trim().is_empty(), "{} has no summary", r.id);
            assert!(!r.summary.contains('\n'), "{} summary spans lines", r.id);
            assert!(!r.summary.contains('|'), "{} summary breaks tables", r.id);
        }
    }

    #[test]
    fn rule_lookup_finds_registered_ids_and_rejects_unknown_ones() {
        for r in RULES {
            assert_eq!(rule(r.id), Some(r));
        }
        assert_eq!(rule("CORE-2").map(|r| r.family), Some("CORE"));
        assert_eq!(rule("F-RC2").map(|r| r.family), Some("F"));
        assert!(rule("core-2").is_none());
        assert!(rule("CORE-21").is_none());
        assert!(rule("P5-I7").is_none());
        assert!(rule("").is_none());
    }
}
