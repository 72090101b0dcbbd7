//! Opening a WAL directory after a crash (§8, CORE-3): verify every segment
//! and record, truncate only a torn tail, halt on anything else.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use crate::disk::{read_whole, Disk};
use crate::log::{LogError, SegmentAppender, SegmentInfo, SegmentList};
use crate::mark_check::{judge_tail, MarkViolation, TailFindings, TailRule, TailVerdict};
use crate::record::{decode_record, Record, RecordPosition};
use crate::segment::{parse_segment_file_name, segment_file_name, SegmentHeader, SegmentHeaderError, SEGMENT_HEADER_LEN, SEGMENT_SUFFIX};
use crate::validate::{ChainTip, ChainValidator, ChainViolation};
use crate::Lsn;

/// Bytes dropped from the end of the WAL because they were a torn write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    /// Segment file that held them.
    pub segment: String,
    /// LSN where the invalid bytes start (the new end of the WAL).
    pub lsn: Lsn,
    /// How many bytes were dropped.
    pub bytes_dropped: u64,
    /// Why the first dropped byte could not start a valid record.
    pub reason: String,
}

/// Why a tail of only zeros is dropped.
const ZERO_TAIL_REASON: &str = "only zeros after the last valid record (space preallocated ahead of the records, or a tail the file system zero-filled)";

/// Zeros after the last valid record of the last segment: space the
/// primary preallocated and had not yet written records into
/// ([`crate::log::Preallocation`]), or a tail the file system zero-filled.
/// Not WAL, and never judged as a torn write or lost history (CORE-5): they
/// are cut off with the torn tail (counted in its `bytes_dropped`) whatever
/// the durable mark says, and reported here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreallocatedSpace {
    /// Segment file that held them.
    pub segment: String,
    /// LSN the zeros would have held (where the WAL's bytes end).
    pub lsn: Lsn,
    /// How many zero bytes.
    pub bytes: u64,
}

/// What recovery found and did; feeds the `recovery.process` explanation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalRecoveryReport {
    /// Segments held after recovery, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// Chain state at the start of the oldest segment.
    pub start: ChainTip,
    /// Chain state after the last valid record.
    pub end: ChainTip,
    /// Records verified.
    pub records_verified: u64,
    /// Torn tail dropped, if any (CORE-3); in read-only mode, the torn
    /// tail startup would drop.
    pub torn_tail: Option<TornTail>,
    /// How the end of the WAL was judged: the rule (durable mark, CORE-5),
    /// the WAL end, the mark comparison and what was dropped or lost.
    pub tail: TailVerdict,
    /// Leftover temporary files removed (interrupted segment creation).
    pub removed_temp_files: Vec<String>,
    /// Zeros found after the WAL's last byte, part of `torn_tail` (cut off
    /// in repair mode with it).
    pub preallocated: Option<PreallocatedSpace>,
}

/// Why the WAL cannot be opened. Every variant halts startup.
#[derive(Debug, Error)]
pub enum WalRecoveryError {
    /// IO failure.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A segment header is invalid (CORE-2/CORE-3).
    #[error("segment {segment}: {error} (CORE-3)")]
    BadSegmentHeader {
        /// File name.
        segment: String,
        /// What is wrong.
        error: SegmentHeaderError,
    },
    /// A file name and its header disagree, or segments do not follow each other.
    #[error("segment {segment}: {detail} (REPL-7)")]
    SegmentLayout {
        /// File name.
        segment: String,
        /// What is wrong.
        detail: String,
    },
    /// A record is invalid and it is not a torn tail (CORE-3).
    #[error("WAL corruption in {segment}: {violation} (CORE-3, {})", violation.rule_id())]
    Corruption {
        /// File name.
        segment: String,
        /// The broken rule and its evidence.
        violation: ChainViolation,
    },
    /// The directory holds no segment at all.
    #[error("no WAL segments in {0}")]
    Empty(String),
    /// The WAL ends, or is invalid, before the durable high-water mark, or
    /// otherwise contradicts it (CORE-5, F-P4). Nothing was truncated.
    #[error("{0} (CORE-5, F-P4)")]
    Mark(#[from] Box<MarkViolation>),
    /// The caller's replay hook refused a record.
    #[error("replay stopped at LSN {lsn}: {detail}")]
    Replay {
        /// Record start.
        lsn: Lsn,
        /// Why.
        detail: String,
        /// Stable code of the hook's error.
        code: &'static str,
        /// Rule it enforces.
        rule_id: &'static str,
    },
}

impl WalRecoveryError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            WalRecoveryError::Log(e) => e.code(),
            WalRecoveryError::BadSegmentHeader { .. } => "WAL_BAD_SEGMENT_HEADER",
            WalRecoveryError::SegmentLayout { .. } => "WAL_SEGMENT_LAYOUT",
            WalRecoveryError::Corruption { .. } => "WAL_CORRUPT",
            WalRecoveryError::Empty(_) => "WAL_EMPTY",
            WalRecoveryError::Mark(v) => v.code(),
            WalRecoveryError::Replay { code, .. } => code,
        }
    }
    /// The LSN the failure was found at, when it is known.
    pub fn lsn(&self) -> Option<Lsn> {
        match self {
            WalRecoveryError::Corruption { violation, .. } => Some(violation.lsn()),
            WalRecoveryError::Replay { lsn, .. } => Some(*lsn),
            WalRecoveryError::Mark(v) => Some(v.lsn()),
            _ => None,
        }
    }

    /// Rule ID this failure enforces.
    pub fn rule_id(&self) -> &'static str {
        match self {
            WalRecoveryError::Corruption { violation, .. } => violation.rule_id(),
            WalRecoveryError::Replay { rule_id, .. } => rule_id,
            WalRecoveryError::SegmentLayout { .. } => "REPL-7",
            WalRecoveryError::Mark(v) => v.rule_id(),
            _ => "CORE-3",
        }
    }
}

/// A hook error from replay: code, rule and detail.
#[derive(Debug)]
pub struct ReplayRefusal {
    /// Stable code.
    pub code: &'static str,
    /// Rule enforced.
    pub rule_id: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

/// What recovery may change on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Startup: remove temporary files and truncate a torn tail.
    Repair,
    /// Offline checks (`aerodb verify`): change nothing, report everything.
    ReadOnly,
}

/// Recovers the WAL in `dir` for appending ([`RecoveryMode::Repair`]),
/// dropping a torn tail wherever it is ([`TailRule::DropTornTail`]: a
/// replica's own WAL), and returns the appender positioned at its end with
/// the report.
pub fn recover_wal(
    disk: Arc<dyn Disk>,
    dir: &Path,
    replay: impl FnMut(&Record, RecordPosition) -> Result<(), ReplayRefusal>,
) -> Result<(SegmentAppender, WalRecoveryReport), WalRecoveryError> {
    recover_wal_with(disk, dir, TailRule::DropTornTail, replay)
}

/// [`recover_wal`] judging the tail under `tail` (a primary passes its
/// durable high-water mark, CORE-5): nothing is truncated unless the rule
/// allows it.
pub fn recover_wal_with(
    disk: Arc<dyn Disk>,
    dir: &Path,
    tail: TailRule,
    replay: impl FnMut(&Record, RecordPosition) -> Result<(), ReplayRefusal>,
) -> Result<(SegmentAppender, WalRecoveryReport), WalRecoveryError> {
    let report = scan_wal_with(disk.clone(), dir, RecoveryMode::Repair, tail, replay)?;
    let segments = SegmentList::new(dir.to_path_buf(), report.segments.clone());
    let appender = SegmentAppender::open_last(disk, segments)?;
    Ok((appender, report))
}

/// [`scan_wal_with`] under [`TailRule::DropTornTail`].
pub fn scan_wal(
    disk: Arc<dyn Disk>,
    dir: &Path,
    mode: RecoveryMode,
    replay: impl FnMut(&Record, RecordPosition) -> Result<(), ReplayRefusal>,
) -> Result<WalRecoveryReport, WalRecoveryError> {
    scan_wal_with(disk, dir, mode, TailRule::DropTornTail, replay)
}

/// Verifies every segment header and record in `dir` (CORE-2, REPL-2,
/// REPL-7) and hands each valid record to `replay` in LSN order. Invalid
/// bytes at the very end of the last segment with no valid record after
/// them are a torn tail (CORE-3); whether they may be dropped is judged by
/// `tail` ([`judge_tail`]: against the durable mark, CORE-5) before
/// anything changes. An allowed torn tail is truncated in `Repair` mode and
/// only reported in `ReadOnly` mode. Anything else invalid is an error.
pub fn scan_wal_with(
    disk: Arc<dyn Disk>,
    dir: &Path,
    mode: RecoveryMode,
    tail: TailRule,
    mut replay: impl FnMut(&Record, RecordPosition) -> Result<(), ReplayRefusal>,
) -> Result<WalRecoveryReport, WalRecoveryError> {
    let probe = tail.mark().map(|m| m.end_lsn);
    let mut at_mark: Option<ChainTip> = None;
    let mut file_end_lsn = 0;
    let mut invalid: Option<(TornTail, std::path::PathBuf, u64)> = None;
    let mut preallocated: Option<(PreallocatedSpace, std::path::PathBuf, u64)> = None;
    let names = disk.list(dir).map_err(|e| LogError::io("list WAL dir", dir, e))?;
    let mut removed_temp_files = Vec::new();
    let mut segment_names = Vec::new();
    for name in names {
        if name.ends_with(".tmp") && mode == RecoveryMode::Repair {
            disk.remove_file(&dir.join(&name)).map_err(|e| LogError::io("remove temp file", &dir.join(&name), e))?;
            removed_temp_files.push(name);
        } else if name.ends_with(SEGMENT_SUFFIX) {
            let lsn = parse_segment_file_name(&name)
                .ok_or_else(|| WalRecoveryError::SegmentLayout { segment: name.clone(), detail: "file name is not <20-digit LSN>.seg".into() })?;
            segment_names.push((lsn, name));
        }
    }
    if mode == RecoveryMode::Repair {
        // After a process crash the directory may hold entries that reached
        // the page cache but were never fsynced (a segment created just
        // before the crash). Everything recovered is built on as durable,
        // so make the entries durable too, not only the data (CORE-1; found
        // by the simulator).
        disk.sync_dir(dir).map_err(|e| LogError::io("sync WAL dir", dir, e))?;
    }
    if segment_names.is_empty() {
        return Err(WalRecoveryError::Empty(dir.display().to_string()));
    }
    let count = segment_names.len();
    let mut infos = Vec::with_capacity(count);
    let mut validator: Option<ChainValidator> = None;
    let mut start = ChainTip::GENESIS;
    let mut records_verified = 0u64;
    for (index, (name_lsn, name)) in segment_names.into_iter().enumerate() {
        let is_last = index + 1 == count;
        let path = dir.join(&name);
        if is_last && mode == RecoveryMode::Repair {
            // After a process crash the tail may hold bytes that reached the page
            // cache but were never fsynced. Everything replayed below is then served,
            // shipped and built on as durable, so make it durable first (CORE-1,
            // MVCC-2, F-P1). Earlier segments were fsynced before the next was created.
            disk.open(&path).and_then(|f| f.sync_data()).map_err(|e| LogError::io("fsync recovered segment", &path, e))?;
        }
        let contents = read_whole(&*disk, &path).map_err(|e| LogError::io("read segment", &path, e))?;
        let header = SegmentHeader::decode(&contents).map_err(|error| WalRecoveryError::BadSegmentHeader { segment: name.clone(), error })?;
        if header.start_lsn != name_lsn {
            return Err(WalRecoveryError::SegmentLayout { segment: name, detail: format!("header says start LSN {}", header.start_lsn) });
        }
        let chain = match validator.as_mut() {
            None => {
                start = ChainTip::of_segment(&header);
                validator.insert(ChainValidator::new(start))
            }
            Some(v) => {
                v.check_segment_start(&header).map_err(|violation| WalRecoveryError::Corruption { segment: name.clone(), violation })?;
                v
            }
        };
        if probe == Some(header.start_lsn) {
            at_mark = Some(ChainTip::of_segment(&header));
        }
        let body = Bytes::from(contents).slice(SEGMENT_HEADER_LEN as usize..);
        // A header near the end of the LSN space: its bytes would pass it
        // (found by the `wal_recovery` fuzz target: an overflow).
        file_end_lsn = header.start_lsn.checked_add(body.len() as u64).ok_or_else(|| WalRecoveryError::SegmentLayout {
            segment: name.clone(),
            detail: format!("{} bytes starting at LSN {} pass the end of the LSN space", body.len(), header.start_lsn),
        })?;
        let mut offset = 0usize;
        while offset < body.len() {
            let lsn = header.start_lsn + offset as u64;
            match chain.validate(lsn, &body.slice(offset..)) {
                Ok((record, position)) => {
                    replay(&record, position).map_err(|r| WalRecoveryError::Replay { lsn, detail: r.detail, code: r.code, rule_id: r.rule_id })?;
                    records_verified += 1;
                    if probe == Some(position.end_lsn) {
                        at_mark = Some(chain.tip());
                    }
                    offset = (position.end_lsn - header.start_lsn) as usize;
                }
                Err(violation) => {
                    // Zeros from here to the end of the last segment are the
                    // primary's preallocated space, not WAL (`Preallocation`):
                    // only the bytes before them are judged as a torn tail.
                    let data_end = if is_last { data_end(&body, offset) } else { body.len() };
                    if data_end > offset {
                        let torn = is_last && matches!(violation, ChainViolation::InvalidRecord { .. }) && !valid_record_after(&body, offset, data_end);
                        if !torn {
                            return Err(WalRecoveryError::Corruption { segment: name, violation });
                        }
                        let found = TornTail { segment: name.clone(), lsn, bytes_dropped: (data_end - offset) as u64, reason: violation.to_string() };
                        invalid = Some((found, path.clone(), SEGMENT_HEADER_LEN + offset as u64));
                    }
                    let zeros = body.len() - data_end;
                    if zeros > 0 {
                        preallocated = Some((
                            PreallocatedSpace { segment: name.clone(), lsn: header.start_lsn + data_end as u64, bytes: zeros as u64 },
                            path.clone(),
                            SEGMENT_HEADER_LEN + offset as u64,
                        ));
                    }
                    file_end_lsn = header.start_lsn + data_end as u64;
                    break;
                }
            }
        }
        infos.push(SegmentInfo { header, end_lsn: header.start_lsn + offset as u64 });
    }
    let end = validator.map_or(start, |v| v.tip());
    let findings = TailFindings { start, end, file_end_lsn, invalid: invalid.as_ref().map(|i| i.0.clone()), at_mark };
    let mut verdict = judge_tail(&tail, &findings)?;
    // The judgement saw only the bytes before trailing zeros: zeros are
    // never evidence of a torn write or of lost history. What is cut off is
    // still reported whole, zeros included, as before preallocation
    // existed; `preallocated` says how much of it was zeros.
    verdict.drop = match (verdict.drop.take(), preallocated.as_ref().map(|p| &p.0)) {
        (Some(torn), Some(zeros)) => Some(TornTail { bytes_dropped: torn.bytes_dropped + zeros.bytes, ..torn }),
        (None, Some(zeros)) => {
            Some(TornTail { segment: zeros.segment.clone(), lsn: zeros.lsn, bytes_dropped: zeros.bytes, reason: ZERO_TAIL_REASON.to_string() })
        }
        (torn, None) => torn,
    };
    let cut_at = invalid.as_ref().map(|i| (&i.1, i.2)).or(preallocated.as_ref().map(|p| (&p.1, p.2)));
    if let (Some(drop), Some((path, file_len))) = (&verdict.drop, cut_at) {
        match mode {
            RecoveryMode::Repair => {
                tracing::warn!(segment = %drop.segment, lsn = drop.lsn, bytes_dropped = drop.bytes_dropped, reason = %drop.reason, rule = tail.name(), "truncating the WAL's tail after its last valid record (CORE-3, CORE-5)");
                let mut file = disk.open(path).map_err(|e| LogError::io("open segment", path, e))?;
                file.truncate(file_len).map_err(|e| LogError::io("truncate torn tail", path, e))?;
            }
            RecoveryMode::ReadOnly => {
                tracing::debug!(segment = %drop.segment, lsn = drop.lsn, bytes = drop.bytes_dropped, "torn WAL tail found (read-only: left in place)");
            }
        }
    }
    if let Some(lost) = &verdict.lost {
        tracing::warn!(
            from_lsn = lost.from_lsn,
            to_lsn = lost.to_lsn,
            first_commit_id = lost.first_commit_id,
            last_commit_id = lost.last_commit_id,
            "history before the durable mark is lost and the operator accepted it (--accept-lost-history, CORE-5)"
        );
    }
    let torn_tail = verdict.drop.clone();
    let preallocated = preallocated.map(|p| p.0);
    Ok(WalRecoveryReport { segments: infos, start, end, records_verified, torn_tail, tail: verdict, removed_temp_files, preallocated })
}

/// Whether any offset in `(from, to)` starts a checksum-valid record: if
/// one does, the invalid bytes at `from` are corruption, not a torn tail.
fn valid_record_after(body: &Bytes, from: usize, to: usize) -> bool {
    (from + 1..to).any(|at| decode_record(&body.slice(at..)).is_ok())
}

/// One past the last non-zero byte of `body` at or after `from` (`from`
/// when every byte from there on is zero).
pub(crate) fn data_end(body: &[u8], from: usize) -> usize {
    body.get(from..).and_then(|rest| rest.iter().rposition(|&b| b != 0)).map_or(from, |last| from + last + 1)
}

/// The file name of the segment starting at `lsn` (re-exported for tools).
pub fn segment_name(lsn: Lsn) -> String {
    segment_file_name(lsn)
}
