//! What a node's startup knows about its durable history (CORE-5): the mark
//! it found and the one it wrote, and the permanent record of history an
//! operator explicitly accepted to lose (`--accept-lost-history`).
//!
//! The record lives in `history-loss.json` in the data directory
//! (checksummed JSON, replaced atomically and fsynced). Entries are only
//! ever appended and the file is never removed, so every later startup
//! still explains the loss. It is written before the mark moves back, so a
//! crash in between leaves the WAL still before the old mark (startup
//! refuses again) rather than an unrecorded loss.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checksummed::{read_checksummed, write_checksummed, ChecksummedFileError};
use crate::disk::Disk;
use crate::mark::DurableMark;
use crate::mark_check::{LostHistory, TailVerdict};
use crate::validate::ChainTip;
use crate::{CommitId, Fingerprint, Lsn};

/// File name of the loss record in the data directory.
pub const HISTORY_LOSS_FILE: &str = "history-loss.json";
/// Format version of `history-loss.json`.
pub const HISTORY_LOSS_FORMAT: u32 = 1;
/// Most entries kept (the file stays far below the 1 MiB bound of
/// checksummed files); the oldest are folded into `older_losses`.
pub const MAX_LOSS_ENTRIES: usize = 1000;

/// A history tip as recorded in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedTip {
    /// End LSN.
    pub end_lsn: Lsn,
    /// CommitId.
    pub commit_id: CommitId,
    /// Fingerprint.
    pub fingerprint: Fingerprint,
}

impl From<ChainTip> for RecordedTip {
    fn from(t: ChainTip) -> Self {
        RecordedTip { end_lsn: t.end_lsn, commit_id: t.commit_id, fingerprint: t.fingerprint }
    }
}

/// One accepted loss.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLossRecord {
    /// Why the history was lost: `wal_before_mark` (the WAL ended or was
    /// invalid before the mark), `invalid_tail_truncated` (only invalid
    /// bytes after the mark were dropped, without the crash-window check),
    /// `mark_missing` or `mark_unreadable` (no trustworthy mark bounded the
    /// loss).
    pub reason: String,
    /// The mark the WAL contradicted (None when it was missing or unreadable).
    pub mark: Option<RecordedTip>,
    /// Whether that mark was written at a clean shutdown.
    pub mark_clean_shutdown: Option<bool>,
    /// Where the WAL ends after truncation: new CommitIds continue after it.
    pub wal_end: RecordedTip,
    /// The lost LSN range and CommitIds (None when no mark says what was lost).
    pub lost: Option<LostRange>,
    /// Invalid tail bytes truncated.
    pub bytes_truncated: u64,
}

/// LSNs and CommitIds lost (copied from [`LostHistory`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostRange {
    /// First LSN lost.
    pub from_lsn: Lsn,
    /// End of the lost range.
    pub to_lsn: Lsn,
    /// First CommitId lost.
    pub first_commit_id: CommitId,
    /// Last CommitId lost.
    pub last_commit_id: CommitId,
}

impl From<LostHistory> for LostRange {
    fn from(l: LostHistory) -> Self {
        LostRange { from_lsn: l.from_lsn, to_lsn: l.to_lsn, first_commit_id: l.first_commit_id, last_commit_id: l.last_commit_id }
    }
}

impl HistoryLossRecord {
    /// The record of an accepted recovery verdict, if it lost anything:
    /// history before the mark, invalid bytes truncated, or anything at all
    /// without a trustworthy mark (`reason_without_mark`).
    pub fn from_verdict(verdict: &TailVerdict, mark: Option<&DurableMark>, reason_without_mark: &str) -> Option<Self> {
        let bytes_truncated = verdict.drop.as_ref().map_or(0, |t| t.bytes_dropped);
        let reason = match (mark, verdict.lost) {
            (Some(_), Some(_)) => "wal_before_mark",
            (None, _) if !reason_without_mark.is_empty() => reason_without_mark,
            _ if bytes_truncated > 0 => "invalid_tail_truncated",
            _ => return None,
        };
        Some(HistoryLossRecord {
            reason: reason.to_string(),
            mark: mark.map(|m| RecordedTip::from(m.tip())),
            mark_clean_shutdown: mark.map(|m| m.clean_shutdown),
            wal_end: verdict.wal_end.into(),
            lost: verdict.lost.map(LostRange::from),
            bytes_truncated,
        })
    }
}

/// Body of `history-loss.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLossFile {
    /// Format version ([`HISTORY_LOSS_FORMAT`]).
    pub format_version: u32,
    /// Accepted losses, oldest first.
    pub losses: Vec<HistoryLossRecord>,
    /// Entries dropped beyond [`MAX_LOSS_ENTRIES`] (oldest first).
    pub older_losses: u64,
}

/// Why `history-loss.json` cannot be read (startup refuses: the record of
/// an accepted loss must not silently disappear).
#[derive(Debug, thiserror::Error)]
#[error("history loss record {file}: {detail} ({code}, CORE-5)")]
pub struct HistoryFileError {
    /// File.
    pub file: String,
    /// Stable code.
    pub code: &'static str,
    /// What is wrong.
    pub detail: String,
}

/// The path of the loss record in a data directory.
pub fn history_loss_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HISTORY_LOSS_FILE)
}

/// Reads every recorded loss (empty when none was ever accepted).
pub fn read_history_losses(disk: &dyn Disk, data_dir: &Path) -> Result<HistoryLossFile, HistoryFileError> {
    let path = history_loss_path(data_dir);
    if !disk.exists(&path) {
        return Ok(HistoryLossFile { format_version: HISTORY_LOSS_FORMAT, ..HistoryLossFile::default() });
    }
    let file = path.display().to_string();
    let body: HistoryLossFile =
        read_checksummed(disk, &path).map_err(|e: ChecksummedFileError| HistoryFileError { file: file.clone(), code: e.code(), detail: e.to_string() })?;
    if body.format_version != HISTORY_LOSS_FORMAT {
        return Err(HistoryFileError { file, code: "META_VERSION", detail: format!("unsupported format_version {}", body.format_version) });
    }
    Ok(body)
}

/// Appends `record` durably (unless the newest entry is the same, e.g. a
/// restart that accepted the same loss twice) and returns the file.
pub fn append_history_loss(disk: &dyn Disk, data_dir: &Path, record: HistoryLossRecord) -> Result<HistoryLossFile, HistoryFileError> {
    let mut body = read_history_losses(disk, data_dir)?;
    if body.losses.last() != Some(&record) {
        body.losses.push(record);
        while body.losses.len() > MAX_LOSS_ENTRIES {
            body.losses.remove(0);
            body.older_losses += 1;
        }
        let path = history_loss_path(data_dir);
        write_checksummed(disk, &path, &body).map_err(|e| HistoryFileError { file: path.display().to_string(), code: "IO_ERROR", detail: e.to_string() })?;
    }
    Ok(body)
}

/// What startup found and did about the durable mark (feeds the
/// `recovery.process` explanation, rule CORE-5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StartupDurability {
    /// `present`, `created` (a new directory), `missing_legacy` (a
    /// directory from a version without marks: recovered under CORE-3
    /// alone, then given a mark), `missing_accepted` or
    /// `unreadable_accepted` (`--accept-lost-history`).
    pub mark_file: &'static str,
    /// The mark found at startup.
    pub mark_found: Option<DurableMark>,
    /// The mark written after recovery, before any write was accepted.
    pub mark_written: Option<DurableMark>,
    /// Whether the operator passed `--accept-lost-history`.
    pub accept_lost_history: bool,
    /// The loss this startup accepted, if any.
    pub accepted_loss: Option<HistoryLossRecord>,
    /// Every loss ever accepted on this data directory, oldest first.
    pub history_losses: HistoryLossFile,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mark_check::TailRule;

    fn verdict(lost: Option<LostHistory>, dropped: u64) -> TailVerdict {
        TailVerdict {
            rule: TailRule::DropTornTail,
            wal_end: ChainTip { end_lsn: 400, commit_id: 4, fingerprint: Fingerprint(4) },
            file_end_lsn: 400 + dropped,
            drop: (dropped > 0).then(|| crate::recovery::TornTail { segment: "s".into(), lsn: 400, bytes_dropped: dropped, reason: "r".into() }),
            beyond_mark_bytes: None,
            window_bytes: None,
            lost,
        }
    }

    /// CORE-5: an accepted loss is recorded durably, once, and read back.
    #[test]
    fn core_5_accepted_loss_is_recorded_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = crate::disk::OsDisk;
        let mark = DurableMark::at(ChainTip { end_lsn: 500, commit_id: 5, fingerprint: Fingerprint(5) }, true, 1);
        let lost = LostHistory { from_lsn: 400, to_lsn: 500, first_commit_id: 5, last_commit_id: 5 };
        assert_eq!(HistoryLossRecord::from_verdict(&verdict(None, 0), Some(&mark), ""), None, "nothing lost");
        let rec = HistoryLossRecord::from_verdict(&verdict(Some(lost), 30), Some(&mark), "").unwrap();
        assert_eq!((rec.reason.as_str(), rec.bytes_truncated, rec.lost.map(|l| l.first_commit_id)), ("wal_before_mark", 30, Some(5)));
        append_history_loss(&disk, tmp.path(), rec.clone()).unwrap();
        append_history_loss(&disk, tmp.path(), rec.clone()).unwrap();
        let missing = HistoryLossRecord::from_verdict(&verdict(None, 0), None, "mark_missing").unwrap();
        let file = append_history_loss(&disk, tmp.path(), missing.clone()).unwrap();
        assert_eq!(file.losses, vec![rec, missing]);
        assert_eq!(read_history_losses(&disk, tmp.path()).unwrap(), file);
    }
}
