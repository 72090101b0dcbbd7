//! The pure decision recovery takes about the end of the WAL (CORE-3,
//! CORE-5, F-P4): given what a scan found and the durable high-water mark,
//! may the invalid bytes at the tail be dropped, or must startup refuse?
//!
//! * [`TailRule::DropTornTail`] — a replica's own WAL (it never
//!   acknowledged anything and re-fetches what it drops) and offline dumps:
//!   a torn tail is dropped and reported (CORE-3).
//! * [`TailRule::Mark`] — a primary or standalone node (CORE-5): the WAL
//!   must reach the mark with the mark's record; after a clean shutdown no
//!   byte may be dropped; after a crash only invalid bytes after the mark,
//!   within the crash window the mark's writer enforced, may be dropped.
//! * [`TailRule::AcceptLoss`] — the operator's explicit
//!   `--accept-lost-history`: truncate to the last valid record even before
//!   the mark, and say exactly what was lost.
//!
//! Nothing here reads a file or a clock: the same findings and rule always
//! give the same verdict.

use serde::Serialize;
use thiserror::Error;

use crate::mark::DurableMark;
use crate::record::MAX_RECORD_LEN;
use crate::recovery::TornTail;
use crate::validate::ChainTip;
use crate::{CommitId, Lsn};

/// Which bytes recovery may drop from the end of the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum TailRule {
    /// Drop a torn tail and report it (CORE-3): replicas, offline dumps.
    DropTornTail,
    /// Enforce the durable high-water mark (CORE-5).
    Mark {
        /// The mark read from disk.
        mark: DurableMark,
    },
    /// `--accept-lost-history`: truncate to the last valid record, even
    /// before the mark, and report the loss.
    AcceptLoss {
        /// The mark read from disk, if there was one.
        mark: Option<DurableMark>,
    },
}

impl TailRule {
    /// The rule's name for logs: `drop-torn-tail`, `mark` or `accept-loss`.
    pub fn name(&self) -> &'static str {
        match self {
            TailRule::DropTornTail => "drop-torn-tail",
            TailRule::Mark { .. } => "mark",
            TailRule::AcceptLoss { .. } => "accept-loss",
        }
    }

    /// The mark the rule holds, if any.
    pub fn mark(&self) -> Option<DurableMark> {
        match self {
            TailRule::DropTornTail => None,
            TailRule::Mark { mark } => Some(*mark),
            TailRule::AcceptLoss { mark } => *mark,
        }
    }
}

/// What a WAL scan found at its end (before anything was dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailFindings {
    /// Chain state at the start of the oldest segment.
    pub start: ChainTip,
    /// Chain state after the last valid record.
    pub end: ChainTip,
    /// LSN one past the last byte present in the last segment file.
    pub file_end_lsn: Lsn,
    /// Invalid bytes at the very end with no valid record after them.
    pub invalid: Option<TornTail>,
    /// The chain state at exactly the mark's LSN, when a record (or a
    /// segment start) of the valid WAL ends there.
    pub at_mark: Option<ChainTip>,
}

/// History the operator accepted to lose (`--accept-lost-history`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LostHistory {
    /// First LSN of the lost range (the new end of the WAL).
    pub from_lsn: Lsn,
    /// End of the lost range (the mark's LSN).
    pub to_lsn: Lsn,
    /// First CommitId lost.
    pub first_commit_id: CommitId,
    /// Last CommitId lost (the mark's).
    pub last_commit_id: CommitId,
}

/// Recovery's verdict on the tail: what it drops and how the WAL compares
/// with the mark. Feeds the recovery report and explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TailVerdict {
    /// The rule applied.
    pub rule: TailRule,
    /// Where the valid WAL ends.
    pub wal_end: ChainTip,
    /// One past the last byte present on disk.
    pub file_end_lsn: Lsn,
    /// Invalid bytes dropped (or, read-only, that startup would drop).
    pub drop: Option<TornTail>,
    /// Valid WAL bytes beyond the mark (written since it; after a crash
    /// they may or may not all have been acknowledged).
    pub beyond_mark_bytes: Option<u64>,
    /// The most bytes that may lie beyond the mark on disk (the crash
    /// window), when a mark applies and the shutdown was not clean.
    pub window_bytes: Option<u64>,
    /// History lost by the operator's explicit acceptance.
    pub lost: Option<LostHistory>,
}

/// Why the WAL contradicts its mark. Every variant refuses startup and
/// fails `aerodb verify` (CORE-5, F-P4); nothing is truncated.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize)]
#[serde(tag = "violation", rename_all = "snake_case")]
pub enum MarkViolation {
    /// The valid WAL ends before the mark: acknowledged history is missing
    /// or damaged.
    #[error("{}", ends_before_text(mark, wal_end, invalid.as_ref(), *damaged_from, *damaged_to))]
    EndsBeforeMark {
        /// The mark.
        mark: DurableMark,
        /// Where the valid WAL ends.
        wal_end: ChainTip,
        /// One past the last byte present on disk.
        file_end_lsn: Lsn,
        /// Invalid bytes at the tail, if any (else the bytes are missing).
        invalid: Option<TornTail>,
        /// First LSN of the damaged range (= the valid end).
        damaged_from: Lsn,
        /// End of the damaged range (the larger of the mark and the file end).
        damaged_to: Lsn,
    },
    /// Invalid bytes after a clean shutdown, where no byte may be dropped.
    #[error(
        "{} invalid byte(s) at LSN {} in {} ({}) after the durable mark at LSN {} (CommitId {}, clean shutdown): after a clean shutdown no byte may be dropped",
        invalid.bytes_dropped, invalid.lsn, invalid.segment, invalid.reason, mark.end_lsn, mark.commit_id
    )]
    InvalidAfterCleanShutdown {
        /// The mark.
        mark: DurableMark,
        /// Where the valid WAL ends.
        wal_end: ChainTip,
        /// The invalid bytes.
        invalid: TornTail,
    },
    /// The WAL reaches the mark but its record there is another one: the
    /// history the mark names was rewritten.
    #[error(
        "the durable mark names CommitId {} ending at LSN {} with fingerprint {}, but the WAL {}",
        mark.commit_id, mark.end_lsn, mark.fingerprint,
        match found { Some(t) => format!("has CommitId {} with fingerprint {} there", t.commit_id, t.fingerprint), None => "has no record ending there".to_string() }
    )]
    HistoryDiffersAtMark {
        /// The mark.
        mark: DurableMark,
        /// What the WAL holds at the mark's LSN.
        found: Option<ChainTip>,
    },
    /// Invalid bytes extend beyond what the writer could have appended
    /// since the mark: not a torn write.
    #[error(
        "invalid bytes end at LSN {file_end_lsn}, {} byte(s) beyond the durable mark at LSN {} but the crash window is {window_bytes} byte(s): not a torn write",
        file_end_lsn.saturating_sub(mark.end_lsn), mark.end_lsn
    )]
    TailBeyondWindow {
        /// The mark.
        mark: DurableMark,
        /// Where the valid WAL ends.
        wal_end: ChainTip,
        /// One past the last byte present on disk.
        file_end_lsn: Lsn,
        /// The bound that was exceeded.
        window_bytes: u64,
    },
}

fn ends_before_text(mark: &DurableMark, wal_end: &ChainTip, invalid: Option<&TornTail>, from: Lsn, to: Lsn) -> String {
    let invalid = invalid.map(|t| format!(" ({} invalid byte(s) at LSN {} in {}: {})", t.bytes_dropped, t.lsn, t.segment, t.reason)).unwrap_or_default();
    let lost = if wal_end.commit_id < mark.commit_id {
        format!("CommitIds {}..={} are acknowledged and not in the WAL", wal_end.commit_id + 1, mark.commit_id)
    } else {
        format!("the WAL holds another history (CommitId {} ends at LSN {})", wal_end.commit_id, wal_end.end_lsn)
    };
    format!(
        "WAL ends at LSN {} (CommitId {}) before the durable mark at LSN {} (CommitId {}{}): LSNs {from}..{to} damaged or missing{invalid}; {lost}",
        wal_end.end_lsn,
        wal_end.commit_id,
        mark.end_lsn,
        mark.commit_id,
        clean_label(mark)
    )
}

fn clean_label(mark: &DurableMark) -> &'static str {
    if mark.clean_shutdown {
        ", clean shutdown"
    } else {
        ", written while running"
    }
}

impl MarkViolation {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            MarkViolation::EndsBeforeMark { .. } => "WAL_BEFORE_MARK",
            MarkViolation::InvalidAfterCleanShutdown { .. } => "WAL_DAMAGED_AFTER_CLEAN_SHUTDOWN",
            MarkViolation::HistoryDiffersAtMark { .. } => "WAL_MARK_MISMATCH",
            MarkViolation::TailBeyondWindow { .. } => "WAL_TAIL_BEYOND_WINDOW",
        }
    }
    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        "CORE-5"
    }
    /// Failure-matrix row.
    pub fn failure(&self) -> &'static str {
        "F-P4"
    }
    /// The mark.
    pub fn mark(&self) -> DurableMark {
        match self {
            MarkViolation::EndsBeforeMark { mark, .. }
            | MarkViolation::InvalidAfterCleanShutdown { mark, .. }
            | MarkViolation::HistoryDiffersAtMark { mark, .. }
            | MarkViolation::TailBeyondWindow { mark, .. } => *mark,
        }
    }
    /// The LSN where the damage starts.
    pub fn lsn(&self) -> Lsn {
        match self {
            MarkViolation::EndsBeforeMark { damaged_from, .. } => *damaged_from,
            MarkViolation::InvalidAfterCleanShutdown { invalid, .. } => invalid.lsn,
            MarkViolation::HistoryDiffersAtMark { mark, .. } => mark.end_lsn,
            MarkViolation::TailBeyondWindow { wal_end, .. } => wal_end.end_lsn,
        }
    }
    /// The damaged LSN range `[from, to)`.
    pub fn damaged_range(&self) -> (Lsn, Lsn) {
        match self {
            MarkViolation::EndsBeforeMark { damaged_from, damaged_to, .. } => (*damaged_from, *damaged_to),
            MarkViolation::InvalidAfterCleanShutdown { invalid, .. } => (invalid.lsn, invalid.lsn + invalid.bytes_dropped),
            MarkViolation::HistoryDiffersAtMark { mark, found } => (found.map_or(0, |t| t.end_lsn.min(mark.end_lsn)), mark.end_lsn),
            MarkViolation::TailBeyondWindow { wal_end, file_end_lsn, .. } => (wal_end.end_lsn, *file_end_lsn),
        }
    }
    /// Where the valid WAL ends, when known.
    pub fn wal_end(&self) -> Option<ChainTip> {
        match self {
            MarkViolation::EndsBeforeMark { wal_end, .. }
            | MarkViolation::InvalidAfterCleanShutdown { wal_end, .. }
            | MarkViolation::TailBeyondWindow { wal_end, .. } => Some(*wal_end),
            MarkViolation::HistoryDiffersAtMark { .. } => None,
        }
    }
}

/// The most bytes that may lie on disk beyond `mark` after a crash. The
/// group committer appends a record only while it ends within
/// `window_bytes` of the last mark, except one record of any size when
/// nothing is unmarked, so with the valid WAL ending exactly at the mark a
/// single torn record may be as long as the largest record.
pub fn crash_window(mark: &DurableMark, wal_end: Lsn) -> u64 {
    if wal_end == mark.end_lsn {
        mark.window_bytes.max(MAX_RECORD_LEN as u64)
    } else {
        mark.window_bytes
    }
}

/// Judges the tail of the WAL under `rule` (see the module docs).
pub fn judge_tail(rule: &TailRule, f: &TailFindings) -> Result<TailVerdict, Box<MarkViolation>> {
    let verdict = |drop: Option<TornTail>, mark: Option<&DurableMark>, window: Option<u64>, lost: Option<LostHistory>| TailVerdict {
        rule: *rule,
        wal_end: f.end,
        file_end_lsn: f.file_end_lsn,
        drop,
        beyond_mark_bytes: mark.map(|m| f.end.end_lsn.saturating_sub(m.end_lsn)),
        window_bytes: window,
        lost,
    };
    match rule {
        TailRule::DropTornTail => Ok(verdict(f.invalid.clone(), None, None, None)),
        TailRule::AcceptLoss { mark } => {
            let lost = mark.as_ref().and_then(|m| lost_history(m, f));
            Ok(verdict(f.invalid.clone(), mark.as_ref(), None, lost))
        }
        TailRule::Mark { mark } => {
            if f.end.end_lsn < mark.end_lsn {
                return Err(Box::new(MarkViolation::EndsBeforeMark {
                    mark: *mark,
                    wal_end: f.end,
                    file_end_lsn: f.file_end_lsn,
                    invalid: f.invalid.clone(),
                    damaged_from: f.end.end_lsn,
                    damaged_to: f.file_end_lsn.max(mark.end_lsn),
                }));
            }
            if !history_at_mark_matches(mark, f) {
                return Err(Box::new(MarkViolation::HistoryDiffersAtMark { mark: *mark, found: f.at_mark }));
            }
            let Some(invalid) = &f.invalid else {
                return Ok(verdict(None, Some(mark), (!mark.clean_shutdown).then(|| crash_window(mark, f.end.end_lsn)), None));
            };
            if mark.clean_shutdown {
                return Err(Box::new(MarkViolation::InvalidAfterCleanShutdown { mark: *mark, wal_end: f.end, invalid: invalid.clone() }));
            }
            let window = crash_window(mark, f.end.end_lsn);
            if f.file_end_lsn.saturating_sub(mark.end_lsn) > window {
                return Err(Box::new(MarkViolation::TailBeyondWindow { mark: *mark, wal_end: f.end, file_end_lsn: f.file_end_lsn, window_bytes: window }));
            }
            Ok(verdict(Some(invalid.clone()), Some(mark), Some(window), None))
        }
    }
}

/// Whether the WAL holds the mark's record at the mark's LSN. A mark older
/// than the retained WAL (its segments were removed) can only be checked
/// for CommitId order.
fn history_at_mark_matches(mark: &DurableMark, f: &TailFindings) -> bool {
    if mark.end_lsn < f.start.end_lsn {
        return mark.commit_id < f.start.commit_id;
    }
    f.at_mark == Some(mark.tip())
}

fn lost_history(mark: &DurableMark, f: &TailFindings) -> Option<LostHistory> {
    if f.end.end_lsn < mark.end_lsn {
        return Some(LostHistory { from_lsn: f.end.end_lsn, to_lsn: mark.end_lsn, first_commit_id: f.end.commit_id + 1, last_commit_id: mark.commit_id });
    }
    if !history_at_mark_matches(mark, f) {
        // The WAL reaches the mark with another history: at least the marked record is lost.
        return Some(LostHistory { from_lsn: mark.end_lsn, to_lsn: mark.end_lsn, first_commit_id: mark.commit_id, last_commit_id: mark.commit_id });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Fingerprint;

    const W: u64 = 8 << 20;

    fn tip(end_lsn: Lsn, commit_id: CommitId) -> ChainTip {
        ChainTip { end_lsn, commit_id, fingerprint: Fingerprint(u128::from(commit_id) * 7 + 1) }
    }
    fn mark(end_lsn: Lsn, commit_id: CommitId, clean: bool) -> DurableMark {
        DurableMark::at(tip(end_lsn, commit_id), clean, W)
    }
    fn torn(lsn: Lsn, bytes: u64) -> TornTail {
        TornTail { segment: "00000000000000000000.seg".into(), lsn, bytes_dropped: bytes, reason: "checksum".into() }
    }
    /// Findings for a WAL whose valid part ends at `end` (records every 100
    /// bytes, CommitId = LSN / 100) with `invalid` bytes after it.
    fn found(end: Lsn, invalid: u64, probe: &DurableMark) -> TailFindings {
        let at_mark = (probe.end_lsn <= end && probe.end_lsn.is_multiple_of(100)).then(|| tip(probe.end_lsn, probe.end_lsn / 100));
        TailFindings {
            start: ChainTip::GENESIS,
            end: tip(end, end / 100),
            file_end_lsn: end + invalid,
            invalid: (invalid > 0).then(|| torn(end, invalid)),
            at_mark: if probe.end_lsn == 0 { Some(ChainTip::GENESIS) } else { at_mark },
        }
    }
    fn code(r: Result<TailVerdict, Box<MarkViolation>>) -> &'static str {
        match r {
            Ok(_) => "OK",
            Err(v) => v.code(),
        }
    }

    /// CORE-5, F-P4: after a clean shutdown, a WAL that ends before the
    /// mark (one record, or many, missing) or holds any invalid byte is
    /// refused, and nothing is dropped.
    #[test]
    fn f_p4_clean_shutdown_refuses_any_loss_or_invalid_byte() {
        let m = mark(5000, 50, true);
        let rule = TailRule::Mark { mark: m };
        assert_eq!(code(judge_tail(&rule, &found(5000, 0, &m))), "OK");
        assert_eq!(judge_tail(&rule, &found(5000, 0, &m)).map(|v| v.drop), Ok(None));
        // One record missing; 700 KB missing; last record flipped (invalid from 4900).
        assert_eq!(code(judge_tail(&rule, &found(4900, 0, &m))), "WAL_BEFORE_MARK");
        assert_eq!(code(judge_tail(&rule, &found(100, 0, &m))), "WAL_BEFORE_MARK");
        let flipped = judge_tail(&rule, &found(4900, 100, &m));
        let Err(v) = flipped else { panic!("refused") };
        assert_eq!((v.code(), v.rule_id(), v.failure(), v.damaged_range()), ("WAL_BEFORE_MARK", "CORE-5", "F-P4", (4900, 5000)));
        assert!(v.to_string().contains("CommitIds 50..=50"), "{v}");
        // Garbage after the clean mark.
        assert_eq!(code(judge_tail(&rule, &found(5000, 17, &m))), "WAL_DAMAGED_AFTER_CLEAN_SHUTDOWN");
    }

    /// CORE-5: after a crash, invalid bytes after the mark within the window
    /// are dropped and reported; before the mark, or beyond the window, refused.
    #[test]
    fn core_5_crash_drops_only_a_torn_tail_after_the_mark_within_the_window() {
        let m = mark(5000, 50, false);
        let rule = TailRule::Mark { mark: m };
        let v = judge_tail(&rule, &found(7000, 300, &m)).unwrap();
        assert_eq!((v.drop.map(|t| (t.lsn, t.bytes_dropped)), v.beyond_mark_bytes, v.window_bytes), (Some((7000, 300)), Some(2000), Some(W)));
        assert_eq!(code(judge_tail(&rule, &found(4000, 300, &m))), "WAL_BEFORE_MARK");
        assert_eq!(code(judge_tail(&rule, &found(7000, W, &m))), "WAL_TAIL_BEYOND_WINDOW");
        // Nothing valid after the mark: one torn record may be as long as the largest record.
        let big = judge_tail(&rule, &found(5000, W + 1, &m)).unwrap();
        assert_eq!(big.window_bytes, Some(MAX_RECORD_LEN as u64));
        assert_eq!(code(judge_tail(&rule, &found(5000, MAX_RECORD_LEN as u64 + 1, &m))), "WAL_TAIL_BEYOND_WINDOW");
    }

    /// CORE-5: a WAL whose record at the mark's LSN is another one is refused.
    #[test]
    fn core_5_history_rewritten_at_the_mark_is_refused() {
        let m = mark(5000, 50, false);
        let mut f = found(6000, 0, &m);
        f.at_mark = Some(tip(5000, 51));
        assert_eq!(code(judge_tail(&TailRule::Mark { mark: m }, &f)), "WAL_MARK_MISMATCH");
        f.at_mark = None;
        assert_eq!(code(judge_tail(&TailRule::Mark { mark: m }, &f)), "WAL_MARK_MISMATCH");
        // A mark older than the retained WAL is checked for CommitId order only.
        let old = mark(100, 1, false);
        let mut f = found(6000, 0, &old);
        f.start = tip(1000, 10);
        f.at_mark = None;
        assert_eq!(code(judge_tail(&TailRule::Mark { mark: old }, &f)), "OK");
    }

    /// CORE-3: replicas and offline dumps drop a torn tail wherever it is;
    /// accepting loss reports exactly the lost range.
    #[test]
    fn core_5_drop_rule_and_accepted_loss_report_what_goes() {
        let m = mark(5000, 50, true);
        let v = judge_tail(&TailRule::DropTornTail, &found(4000, 100, &m)).unwrap();
        assert_eq!(v.drop.map(|t| t.lsn), Some(4000));
        let v = judge_tail(&TailRule::AcceptLoss { mark: Some(m) }, &found(4000, 100, &m)).unwrap();
        assert_eq!(v.lost, Some(LostHistory { from_lsn: 4000, to_lsn: 5000, first_commit_id: 41, last_commit_id: 50 }));
        assert_eq!(v.drop.map(|t| t.bytes_dropped), Some(100));
        let v = judge_tail(&TailRule::AcceptLoss { mark: Some(m) }, &found(5000, 0, &m)).unwrap();
        assert_eq!(v.lost, None);
    }
}
