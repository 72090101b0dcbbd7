//! Restoring a WAL's missing or damaged tail from another node's copy
//! (`aerodb repair-wal`, CORE-5): a replica's WAL is a byte-exact copy of
//! the primary's from its bootstrap point on (REPL-3), in segment files
//! that start where the primary's did, so the bytes the primary lost can be
//! copied back verbatim once they are proven to be the same history.
//!
//! [`plan_repair`] reads both WALs without changing anything: the
//! primary's valid prefix (up to the first invalid byte, missing byte or
//! broken segment), then every replica record from that point on,
//! re-validated with the one validation routine ([`ChainValidator`]:
//! crc32c, LSN and CommitId continuity, the fingerprint chain starting
//! from the primary's last valid record), and, when the copy reaches the
//! durable mark, that the record ending at the mark is the mark's.
//! [`apply_repair`] then moves every damaged primary file aside (kept for
//! forensics), truncates the last valid segment at the join, appends or
//! creates segments with the replica's bytes verbatim (respecting the
//! replica's segment boundaries), fsyncs files and directory, checks each
//! piece's crc32c against the plan, and, when the copy reaches the mark,
//! writes a clean mark at the new end. A crash at any point leaves a valid
//! WAL prefix that recovery still refuses (it ends before the mark) and a
//! second run completes the repair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use crate::disk::{read_whole, write_atomic, Disk};
use crate::mark::{write_mark, DurableMark};
use crate::recovery::{scan_wal, RecoveryMode, WalRecoveryError};
use crate::segment::{parse_segment_file_name, segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::validate::{ChainTip, ChainValidator, ChainViolation};
use crate::Lsn;

/// The primary's WAL up to its first damage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidPrefix {
    /// Chain state at the start of the oldest segment.
    pub start: ChainTip,
    /// Chain state after the last valid record.
    pub end: ChainTip,
    /// The segment file holding the end, and its start LSN.
    pub end_segment: (String, Lsn),
    /// One past the last byte of that file (LSN).
    pub end_segment_file_end: Lsn,
    /// Segment files after the end segment (damaged or unreachable).
    pub later_files: Vec<String>,
    /// Why the prefix ends where it does (None: the WAL simply ends there).
    pub damage: Option<String>,
}

impl ValidPrefix {
    /// Whether anything beyond the valid end is present on disk.
    pub fn has_damage(&self) -> bool {
        self.damage.is_some() || !self.later_files.is_empty() || self.end_segment_file_end > self.end.end_lsn
    }
}

/// One piece of the replica's WAL to copy: the bytes `[from_lsn, to_lsn)`
/// of the replica segment file `file`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CopyPiece {
    /// Replica segment file name.
    pub file: String,
    /// Start LSN of that segment.
    pub segment_start: Lsn,
    /// First LSN copied.
    pub from_lsn: Lsn,
    /// End LSN copied.
    pub to_lsn: Lsn,
    /// Whether the piece starts a new primary segment (header copied too).
    pub new_segment: bool,
    /// crc32c of the copied record bytes (checked again when copying).
    pub crc32c: u32,
    /// Records in the piece.
    pub records: u64,
}

/// What a repair will do (see [`plan_repair`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepairPlan {
    /// The primary's valid prefix.
    pub primary: ValidPrefix,
    /// Pieces to copy, in LSN order.
    pub pieces: Vec<CopyPiece>,
    /// Where the primary's WAL will end.
    pub new_end: ChainTip,
    /// The primary's durable mark, if any.
    pub mark: Option<DurableMark>,
    /// Whether the repaired WAL reaches the mark (startup then succeeds).
    pub reaches_mark: bool,
}

/// What a repair did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepairOutcome {
    /// The plan it carried out.
    pub plan: RepairPlan,
    /// Record bytes copied.
    pub bytes_copied: u64,
    /// Records copied.
    pub records_copied: u64,
    /// Primary files moved aside (kept for forensics), relative to the backup directory.
    pub moved_aside: Vec<String>,
    /// The mark written (clean, at the new end), when the copy reaches the mark.
    pub mark_written: Option<DurableMark>,
}

/// Why a repair was refused or failed. Refusals (everything but `Io`)
/// change nothing.
#[derive(Debug, Error)]
pub enum RepairError {
    /// The primary's WAL cannot be read, or its first segment is damaged.
    #[error("the primary's WAL cannot be repaired from a copy: {0}")]
    PrimaryUnreadable(String),
    /// The replica's WAL fails verification.
    #[error("the replica's WAL is not a valid copy: {0}")]
    ReplicaInvalid(#[source] Box<WalRecoveryError>),
    /// The replica holds nothing beyond the primary's valid end.
    #[error("the replica's WAL ends at LSN {replica_end} (CommitId {replica_commit_id}), not beyond the primary's valid end at LSN {primary_end} (CommitId {primary_commit_id}): nothing to copy")]
    NothingToCopy {
        /// Replica WAL end.
        replica_end: Lsn,
        /// Its last CommitId.
        replica_commit_id: u64,
        /// Primary valid end.
        primary_end: Lsn,
        /// Its last CommitId.
        primary_commit_id: u64,
    },
    /// The replica's WAL starts after the primary's damage.
    #[error("the replica's WAL starts at LSN {replica_start}, after the primary's valid end at LSN {primary_end}: the missing range is not in the copy")]
    Gap {
        /// First LSN the replica holds.
        replica_start: Lsn,
        /// Primary valid end.
        primary_end: Lsn,
    },
    /// The replica's history does not continue the primary's valid prefix.
    #[error("the replica's history does not continue the primary's at LSN {lsn}: {violation}")]
    ChainsDoNotJoin {
        /// Where the chains part.
        lsn: Lsn,
        /// The broken check, both sides' values.
        violation: ChainViolation,
    },
    /// The replica's record at the durable mark is not the mark's.
    #[error("the durable mark names CommitId {} ending at LSN {} with fingerprint {}, but the replica's copy {}", mark.commit_id, mark.end_lsn, mark.fingerprint, found.map_or("has no record ending there".to_string(), |t| format!("has CommitId {} with fingerprint {}", t.commit_id, t.fingerprint)))]
    MarkMismatch {
        /// The mark.
        mark: DurableMark,
        /// What the copy holds at the mark's LSN.
        found: Option<ChainTip>,
    },
    /// A piece's bytes changed between planning and copying.
    #[error("replica file {file} changed during the repair (crc32c {expected:#010x} planned, {found:#010x} read)")]
    Changed {
        /// Replica file.
        file: String,
        /// Planned crc32c.
        expected: u32,
        /// crc32c read.
        found: u32,
    },
    /// An IO operation failed part-way: re-run the repair.
    #[error("IO error during {op} on {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl RepairError {
    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        RepairError::Io { op, path: path.display().to_string(), source }
    }
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RepairError::PrimaryUnreadable(_) => "REPAIR_PRIMARY_UNREADABLE",
            RepairError::ReplicaInvalid(_) => "REPAIR_REPLICA_INVALID",
            RepairError::NothingToCopy { .. } => "REPAIR_NOTHING_TO_COPY",
            RepairError::Gap { .. } => "REPAIR_GAP",
            RepairError::ChainsDoNotJoin { .. } => "REPAIR_CHAINS_DO_NOT_JOIN",
            RepairError::MarkMismatch { .. } => "REPAIR_MARK_MISMATCH",
            RepairError::Changed { .. } => "REPAIR_REPLICA_CHANGED",
            RepairError::Io { .. } => "REPAIR_IO",
        }
    }
    /// Rule enforced.
    pub fn rule_id(&self) -> &'static str {
        match self {
            RepairError::ChainsDoNotJoin { .. } => "REPL-5",
            RepairError::ReplicaInvalid(_) | RepairError::Changed { .. } => "REPL-3",
            _ => "CORE-5",
        }
    }
}

fn segment_files(disk: &dyn Disk, dir: &Path) -> Result<Vec<(Lsn, String)>, std::io::Error> {
    let mut out: Vec<(Lsn, String)> = disk.list(dir)?.into_iter().filter_map(|n| parse_segment_file_name(&n).map(|lsn| (lsn, n))).collect();
    out.sort();
    Ok(out)
}

/// The primary's WAL up to the first invalid byte, missing byte or broken
/// segment (never an error for damage: the damage is what is repaired).
pub fn valid_prefix(disk: &dyn Disk, dir: &Path) -> Result<ValidPrefix, RepairError> {
    let unreadable = |e: std::io::Error| RepairError::PrimaryUnreadable(format!("{}: {e}", dir.display()));
    let files = segment_files(disk, dir).map_err(unreadable)?;
    let Some((first_lsn, first_name)) = files.first().cloned() else {
        return Err(RepairError::PrimaryUnreadable(format!("no WAL segments in {}", dir.display())));
    };
    let mut validator: Option<ChainValidator> = None;
    let mut start = ChainTip::GENESIS;
    let mut end_segment = (first_name.clone(), first_lsn);
    let mut end_file_end = first_lsn;
    let mut damage = None;
    let mut used = 0usize;
    for (index, (name_lsn, name)) in files.iter().enumerate() {
        let contents = read_whole(disk, &dir.join(name)).map_err(unreadable)?;
        let header = match SegmentHeader::decode(&contents) {
            Ok(h) if h.start_lsn == *name_lsn => h,
            Ok(h) => {
                damage = Some(format!("segment {name}: header says start LSN {}", h.start_lsn));
                break;
            }
            Err(e) => {
                damage = Some(format!("segment {name}: {e}"));
                break;
            }
        };
        let chain = match validator.as_mut() {
            None => {
                start = ChainTip::of_segment(&header);
                validator.insert(ChainValidator::new(start))
            }
            Some(v) => {
                if let Err(violation) = v.check_segment_start(&header) {
                    damage = Some(format!("segment {name}: {violation}"));
                    break;
                }
                v
            }
        };
        used = index + 1;
        end_segment = (name.clone(), header.start_lsn);
        let body = Bytes::from(contents).slice(SEGMENT_HEADER_LEN as usize..);
        end_file_end = header.start_lsn + body.len() as u64;
        let mut offset = 0usize;
        while offset < body.len() {
            match chain.validate(header.start_lsn + offset as u64, &body.slice(offset..)) {
                Ok((_, position)) => offset = (position.end_lsn - header.start_lsn) as usize,
                Err(violation) => {
                    let is_last = index + 1 == files.len();
                    let data_end = crate::recovery::data_end(&body, offset);
                    if is_last && data_end == offset {
                        // Only zeros follow: preallocated space, not WAL
                        // and not damage (`Preallocation`).
                        end_file_end = header.start_lsn + offset as u64;
                    } else {
                        damage = Some(format!("segment {name}: {violation}"));
                    }
                    break;
                }
            }
        }
        if damage.is_some() {
            break;
        }
    }
    if validator.is_none() {
        return Err(RepairError::PrimaryUnreadable(format!("the first segment {first_name} is damaged: {}", damage.unwrap_or_default())));
    }
    let end = validator.map_or(start, |v| v.tip());
    let later_files = files.iter().skip(used).map(|(_, n)| n.clone()).collect();
    Ok(ValidPrefix { start, end, end_segment, end_segment_file_end: end_file_end, later_files, damage })
}

/// Plans the repair of the primary WAL in `primary_dir` from the replica
/// WAL in `replica_dir` (see the module docs). Reads both; changes nothing.
/// `Ok(None)`: nothing to repair (the primary's WAL is whole and reaches
/// the mark, and the replica holds nothing more).
pub fn plan_repair(disk: Arc<dyn Disk>, primary_dir: &Path, replica_dir: &Path, mark: Option<DurableMark>) -> Result<Option<RepairPlan>, RepairError> {
    let primary = valid_prefix(&*disk, primary_dir)?;
    let replica = scan_wal(disk.clone(), replica_dir, RecoveryMode::ReadOnly, |_, _| Ok(())).map_err(|e| RepairError::ReplicaInvalid(Box::new(e)))?;
    let d = primary.end.end_lsn;
    let reaches = |end: Lsn| mark.is_none_or(|m| end >= m.end_lsn);
    if replica.end.end_lsn <= d {
        if !primary.has_damage() && reaches(d) {
            return Ok(None);
        }
        return Err(RepairError::NothingToCopy {
            replica_end: replica.end.end_lsn,
            replica_commit_id: replica.end.commit_id,
            primary_end: d,
            primary_commit_id: primary.end.commit_id,
        });
    }
    if replica.start.end_lsn > d {
        return Err(RepairError::Gap { replica_start: replica.start.end_lsn, primary_end: d });
    }
    let mut chain = ChainValidator::new(primary.end);
    let mut at_mark: Option<ChainTip> = mark.filter(|m| m.end_lsn <= d).map(|_| primary.end);
    let mut pieces = Vec::new();
    for seg in replica.segments.iter().filter(|s| s.end_lsn > d) {
        let start = seg.header.start_lsn;
        let from = start.max(d);
        let new_segment = start >= d && start > primary.end_segment.1;
        if start >= d {
            chain.check_segment_start(&seg.header).map_err(|violation| RepairError::ChainsDoNotJoin { lsn: start, violation })?;
        }
        let file = segment_file_name(start);
        let path = replica_dir.join(&file);
        let contents = read_whole(&*disk, &path).map_err(|e| {
            RepairError::ReplicaInvalid(Box::new(WalRecoveryError::Log(crate::log::LogError::Io { op: "read", path: path.display().to_string(), source: e })))
        })?;
        let lo = (SEGMENT_HEADER_LEN + (from - start)) as usize;
        let hi = (SEGMENT_HEADER_LEN + (seg.end_lsn - start)) as usize;
        let body = Bytes::from(contents).slice(lo..hi);
        let mut offset = 0usize;
        let mut records = 0u64;
        while offset < body.len() {
            let lsn = from + offset as u64;
            let (_, position) = chain.validate(lsn, &body.slice(offset..)).map_err(|violation| RepairError::ChainsDoNotJoin { lsn, violation })?;
            if mark.is_some_and(|m| m.end_lsn == position.end_lsn) {
                at_mark = Some(chain.tip());
            }
            offset = (position.end_lsn - from) as usize;
            records += 1;
        }
        pieces.push(CopyPiece { file, segment_start: start, from_lsn: from, to_lsn: seg.end_lsn, new_segment, crc32c: crc32c::crc32c(&body), records });
    }
    let new_end = chain.tip();
    if let Some(m) = mark.filter(|m| new_end.end_lsn >= m.end_lsn && m.end_lsn >= primary.start.end_lsn) {
        if at_mark != Some(m.tip()) {
            return Err(RepairError::MarkMismatch { mark: m, found: at_mark });
        }
    }
    Ok(Some(RepairPlan { reaches_mark: reaches(new_end.end_lsn), primary, pieces, new_end, mark }))
}

/// Carries out `plan` on the primary WAL in `primary_dir` (see the module
/// docs). Damaged files and the original of the truncated segment are kept
/// in `backup_dir`. `window_bytes` is the crash window stated in the new
/// mark when the plan had none.
pub fn apply_repair(
    disk: &dyn Disk,
    primary_dir: &Path,
    replica_dir: &Path,
    plan: RepairPlan,
    backup_dir: &Path,
    window_bytes: u64,
) -> Result<RepairOutcome, RepairError> {
    disk.create_dir_all(backup_dir).map_err(|e| RepairError::io("create backup dir", backup_dir, e))?;
    let mut moved_aside = Vec::new();
    // Keep the original of the segment that will be truncated, then move every later file aside.
    let (end_name, end_start) = plan.primary.end_segment.clone();
    let end_path = primary_dir.join(&end_name);
    let original = read_whole(disk, &end_path).map_err(|e| RepairError::io("read", &end_path, e))?;
    if plan.primary.end_segment_file_end > plan.primary.end.end_lsn {
        write_atomic(disk, &backup_dir.join(&end_name), &original).map_err(|e| RepairError::io("back up", &end_path, e))?;
        moved_aside.push(end_name.clone());
    }
    for name in &plan.primary.later_files {
        let from = primary_dir.join(name);
        disk.rename(&from, &backup_dir.join(name)).map_err(|e| RepairError::io("move aside", &from, e))?;
        moved_aside.push(name.clone());
    }
    disk.sync_dir(backup_dir).map_err(|e| RepairError::io("sync", backup_dir, e))?;
    disk.sync_dir(primary_dir).map_err(|e| RepairError::io("sync", primary_dir, e))?;
    let keep = SEGMENT_HEADER_LEN + (plan.primary.end.end_lsn - end_start);
    let mut file = disk.open(&end_path).map_err(|e| RepairError::io("open", &end_path, e))?;
    file.truncate(keep).map_err(|e| RepairError::io("truncate", &end_path, e))?;
    let mut bytes_copied = 0u64;
    let mut records_copied = 0u64;
    for piece in &plan.pieces {
        let src = replica_dir.join(&piece.file);
        let contents = read_whole(disk, &src).map_err(|e| RepairError::io("read", &src, e))?;
        let lo = (SEGMENT_HEADER_LEN + (piece.from_lsn - piece.segment_start)) as usize;
        let hi = (SEGMENT_HEADER_LEN + (piece.to_lsn - piece.segment_start)) as usize;
        let body = contents.get(lo..hi).ok_or_else(|| RepairError::Changed { file: piece.file.clone(), expected: piece.crc32c, found: 0 })?;
        let found = crc32c::crc32c(body);
        if found != piece.crc32c {
            return Err(RepairError::Changed { file: piece.file.clone(), expected: piece.crc32c, found });
        }
        if piece.new_segment {
            let target = primary_dir.join(segment_file_name(piece.segment_start));
            write_atomic(disk, &target, &contents[..hi]).map_err(|e| RepairError::io("create segment", &target, e))?;
            file = disk.open(&target).map_err(|e| RepairError::io("open", &target, e))?;
        } else {
            file.append(body).map_err(|e| RepairError::io("append", &end_path, e))?;
            file.sync_data().map_err(|e| RepairError::io("fsync", &end_path, e))?;
        }
        crate::crash_point!("repair.after_piece");
        bytes_copied += body.len() as u64;
        records_copied += piece.records;
    }
    disk.sync_dir(primary_dir).map_err(|e| RepairError::io("sync", primary_dir, e))?;
    let mark_written = if plan.reaches_mark {
        let mark = DurableMark::at(plan.new_end, true, plan.mark.map_or(window_bytes, |m| m.window_bytes));
        write_mark(disk, primary_dir, &mark).map_err(|e| RepairError::io("write durable mark", primary_dir, e))?;
        Some(mark)
    } else {
        None
    };
    Ok(RepairOutcome { plan, bytes_copied, records_copied, moved_aside, mark_written })
}

/// Where [`apply_repair`] keeps what it replaces: `<data-dir>/damaged/wal-<n>`
/// for the first `n` not yet used.
pub fn backup_dir(disk: &dyn Disk, data_dir: &Path) -> PathBuf {
    let base = data_dir.join("damaged");
    (1u32..).map(|n| base.join(format!("wal-{n}"))).find(|p| !disk.exists(p)).unwrap_or_else(|| base.join("wal"))
}
