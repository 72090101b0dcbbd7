//! Scrub (CORE-6, F-SC1): stored data is re-verified, not trusted. Every
//! retained snapshot and every sealed WAL segment is read again in the
//! background, at a bounded IO rate, and checked completely: a snapshot's
//! every file crc32c, its structure and its state digest (computed while
//! streaming, never by building a store); a sealed segment's header, every
//! record's crc32c and the chain.
//!
//! This module is the pure core and the per-target checks:
//!
//! * [`ScrubState`] — passes, progress and findings, driven by
//!   [`ScrubState::begin_pass`] / [`ScrubState::next_target`] /
//!   [`ScrubState::finish_target`] with the applied CommitId and the time
//!   passed in ("when" is reported in commits, never wall-clock), so a
//!   deterministic simulator can drive it.
//! * [`pace_wait_ms`] — how long to wait so the bytes read stay within the
//!   rate.
//! * [`check_target`] — one target's IO check through the `Disk` trait.
//!
//! The thread that loops over them lives at the node's edge. A damaged
//! published snapshot is withdrawn by the caller with
//! [`crate::dir::withdraw_snapshot`] (renamed out of the published
//! namespace, kept for forensics), so neither primary recovery nor a
//! bootstrap ever uses it.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::PathBuf;

use aerodb_wal::disk::Disk;
use aerodb_wal::seal_check::{verify_sealed_segment, SealedSegmentError};
use aerodb_wal::{ChainTip, CommitId, Lsn};
use serde::Serialize;

use crate::error::SnapshotError;
use crate::load::verify_snapshot_streaming;

/// Default scrub rate: 8 MiB/s.
pub const DEFAULT_SCRUB_BYTES_PER_SECOND: u64 = 8 * 1024 * 1024;
/// Default pause between the end of one pass and the start of the next.
pub const DEFAULT_SCRUB_PASS_INTERVAL_MS: u64 = 60_000;
/// Findings kept in memory (newest); the total is counted.
pub const MAX_FINDINGS: usize = 64;

/// How scrubbing runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubPolicy {
    /// Read rate bound in bytes per second (0 = scrub disabled).
    pub bytes_per_second: u64,
    /// Pause between the end of a pass and the start of the next.
    pub pass_interval_ms: u64,
}

impl Default for ScrubPolicy {
    fn default() -> Self {
        ScrubPolicy { bytes_per_second: DEFAULT_SCRUB_BYTES_PER_SECOND, pass_interval_ms: DEFAULT_SCRUB_PASS_INTERVAL_MS }
    }
}

/// How long to wait before reading more, so that `bytes` read since a pass
/// started `elapsed_ms` ago stay within `bytes_per_second`. Pure.
pub fn pace_wait_ms(bytes_per_second: u64, bytes: u64, elapsed_ms: u64) -> u64 {
    if bytes_per_second == 0 {
        return 0;
    }
    let due_ms = u128::from(bytes) * 1000 / u128::from(bytes_per_second);
    u64::try_from(due_ms).unwrap_or(u64::MAX).saturating_sub(elapsed_ms)
}

/// What a target is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A published snapshot of this node (withdrawn when damaged).
    Snapshot,
    /// A replica's installed bootstrap snapshot (reported when damaged).
    BootstrapSnapshot,
    /// A sealed WAL segment (no longer appended to).
    WalSegment,
}

/// One thing to re-verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubTarget {
    /// What it is.
    pub kind: TargetKind,
    /// Its name relative to the data directory (e.g. `snapshots/00000000000000000042`).
    pub name: String,
    /// Its path.
    #[serde(skip)]
    pub path: PathBuf,
    /// For a segment: where the next segment says it ends.
    #[serde(skip)]
    pub expected_end: Option<ChainTip>,
    /// For a snapshot: the cluster it must belong to.
    #[serde(skip)]
    pub cluster_id: Option<String>,
}

/// Damage found by a check, before the caller acts on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// The damaged file, relative to the data directory.
    pub file: String,
    /// File offset where the damaged range starts.
    pub offset: u64,
    /// Length of the range known to hold the damage (None: from `offset` on).
    pub length: Option<u64>,
    /// LSN of the damaged record (WAL segments).
    pub lsn: Option<Lsn>,
    /// Stable code of the failed check.
    pub code: &'static str,
    /// Rule of the failed check (e.g. `CORE-2`, `F-S4`).
    pub check_rule: &'static str,
    /// What is wrong.
    pub detail: String,
}

/// The outcome of checking one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetOutcome {
    /// Every check passed; this many bytes were read.
    Verified {
        /// Bytes read.
        bytes: u64,
    },
    /// The target disappeared meanwhile (retention, pruning): not damage.
    Vanished,
    /// The target is damaged.
    Damaged {
        /// What is wrong and where.
        damage: Damage,
        /// Bytes read before the damage was found.
        bytes: u64,
        /// What the caller did about it.
        action: FindingAction,
    },
    /// The target could not be read (IO error): reported, retried next pass.
    Unreadable {
        /// The IO error.
        detail: String,
    },
    /// The check was stopped part way (the node is shutting down, RES-3):
    /// neither verified nor damaged, and not counted.
    Interrupted,
}

/// What was done about a finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FindingAction {
    /// Reported only (WAL segments, a replica's bootstrap snapshot).
    Reported,
    /// The snapshot was renamed out of the published namespace.
    Withdrawn {
        /// Its new name, relative to the data directory.
        to: String,
    },
    /// Withdrawing failed; the snapshot is still published.
    WithdrawFailed {
        /// Why.
        error: String,
    },
}

/// One finding, as reported in `GET /v1/scrub`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubFinding {
    /// Always `CORE-6`.
    pub rule_id: &'static str,
    /// What the target was.
    pub kind: TargetKind,
    /// The target's name.
    pub target: String,
    /// The damage.
    #[serde(flatten)]
    pub damage: Damage,
    /// The node's applied CommitId when the damage was first found.
    pub found_at_commit_id: Option<CommitId>,
    /// The pass that first found it.
    pub found_in_pass: u64,
    /// The last pass that found it again.
    pub last_seen_in_pass: u64,
    /// What was done about it.
    pub action: FindingAction,
}

/// Progress of the pass in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PassProgress {
    /// Pass number (from 1).
    pub pass: u64,
    /// Applied CommitId when it started.
    pub started_at_commit_id: Option<CommitId>,
    /// Targets in this pass.
    pub targets_total: u64,
    /// Targets checked so far.
    pub targets_done: u64,
    /// Bytes read so far.
    pub bytes_done: u64,
    /// The target being checked.
    pub current_target: Option<String>,
}

/// Summary of the last completed pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PassSummary {
    /// Pass number.
    pub pass: u64,
    /// Applied CommitId when it started.
    pub started_at_commit_id: Option<CommitId>,
    /// Applied CommitId when it finished.
    pub finished_at_commit_id: Option<CommitId>,
    /// Targets verified clean.
    pub verified: u64,
    /// Targets found damaged.
    pub damaged: u64,
    /// Targets that disappeared meanwhile.
    pub vanished: u64,
    /// Targets that could not be read.
    pub unreadable: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// Everything `GET /v1/scrub` shows (deterministic field order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScrubStatus {
    /// The policy in force.
    pub policy: ScrubPolicy,
    /// Whether scrubbing runs at all.
    pub enabled: bool,
    /// Passes completed by this process.
    pub passes_completed: u64,
    /// The pass in progress.
    pub current_pass: Option<PassProgress>,
    /// The last completed pass.
    pub last_pass: Option<PassSummary>,
    /// Bytes verified by this process.
    pub bytes_verified_total: u64,
    /// Targets verified clean by this process.
    pub targets_verified_total: u64,
    /// Distinct findings by this process.
    pub findings_total: u64,
    /// The newest findings (at most [`MAX_FINDINGS`]), oldest first.
    pub findings: Vec<ScrubFinding>,
}

struct Pass {
    progress: PassProgress,
    summary: PassSummary,
    queue: VecDeque<ScrubTarget>,
    started_ms: u64,
}

/// The scrub's pure state (see the module docs).
pub struct ScrubState {
    policy: ScrubPolicy,
    passes_completed: u64,
    current: Option<Pass>,
    last: Option<PassSummary>,
    last_end_ms: Option<u64>,
    bytes_total: u64,
    verified_total: u64,
    findings_total: u64,
    findings: VecDeque<ScrubFinding>,
}

impl ScrubState {
    /// A scrub that has not run yet.
    pub fn new(policy: ScrubPolicy) -> Self {
        ScrubState {
            policy,
            passes_completed: 0,
            current: None,
            last: None,
            last_end_ms: None,
            bytes_total: 0,
            verified_total: 0,
            findings_total: 0,
            findings: VecDeque::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> ScrubPolicy {
        self.policy
    }

    /// Whether a new pass should start now: scrubbing is enabled, no pass
    /// runs, and the pause after the last pass is over.
    pub fn pass_due(&self, now_ms: u64) -> bool {
        self.policy.bytes_per_second > 0
            && self.current.is_none()
            && self.last_end_ms.is_none_or(|end| now_ms.saturating_sub(end) >= self.policy.pass_interval_ms)
    }

    /// How long until the next pass is due (0 when due or running).
    pub fn wait_for_pass_ms(&self, now_ms: u64) -> u64 {
        match self.last_end_ms {
            Some(end) if self.current.is_none() => (end.saturating_add(self.policy.pass_interval_ms)).saturating_sub(now_ms),
            _ => 0,
        }
    }

    /// Starts a pass over `targets`.
    pub fn begin_pass(&mut self, targets: Vec<ScrubTarget>, commit_id: Option<CommitId>, now_ms: u64) {
        let pass = self.passes_completed + 1;
        let progress = PassProgress {
            pass,
            started_at_commit_id: commit_id,
            targets_total: targets.len() as u64,
            targets_done: 0,
            bytes_done: 0,
            current_target: targets.first().map(|t| t.name.clone()),
        };
        let summary =
            PassSummary { pass, started_at_commit_id: commit_id, finished_at_commit_id: None, verified: 0, damaged: 0, vanished: 0, unreadable: 0, bytes: 0 };
        let empty = targets.is_empty();
        self.current = Some(Pass { progress, summary, queue: targets.into(), started_ms: now_ms });
        if empty {
            self.end_pass(commit_id, now_ms);
        }
    }

    fn end_pass(&mut self, commit_id: Option<CommitId>, now_ms: u64) {
        if let Some(pass) = self.current.take() {
            let mut summary = pass.summary;
            summary.finished_at_commit_id = commit_id;
            self.last = Some(summary);
            self.passes_completed += 1;
            self.last_end_ms = Some(now_ms);
        }
    }

    /// The next target of the running pass.
    pub fn next_target(&self) -> Option<ScrubTarget> {
        self.current.as_ref().and_then(|p| p.queue.front().cloned())
    }

    /// When the running pass started (for pacing) and the bytes it read.
    pub fn pass_clock(&self) -> Option<(u64, u64)> {
        self.current.as_ref().map(|p| (p.started_ms, p.progress.bytes_done))
    }

    /// Bytes being read now count towards the pass (progress while a large
    /// target is checked).
    pub fn add_bytes(&mut self, bytes: u64) {
        if let Some(p) = self.current.as_mut() {
            p.progress.bytes_done += bytes;
        }
    }

    /// Records the outcome of the target [`ScrubState::next_target`]
    /// returned. Ends the pass after its last target.
    pub fn finish_target(&mut self, outcome: TargetOutcome, commit_id: Option<CommitId>, now_ms: u64) {
        if outcome == TargetOutcome::Interrupted {
            // Left where it is: the next run checks it again from the start.
            return;
        }
        let Some(pass) = self.current.as_mut() else { return };
        let Some(target) = pass.queue.pop_front() else { return };
        pass.progress.targets_done += 1;
        pass.progress.current_target = pass.queue.front().map(|t| t.name.clone());
        match outcome {
            TargetOutcome::Verified { bytes } => {
                pass.summary.verified += 1;
                pass.summary.bytes += bytes;
                self.bytes_total += bytes;
                self.verified_total += 1;
            }
            TargetOutcome::Vanished => pass.summary.vanished += 1,
            TargetOutcome::Interrupted => {}
            TargetOutcome::Unreadable { .. } => pass.summary.unreadable += 1,
            TargetOutcome::Damaged { damage, bytes, action } => {
                pass.summary.damaged += 1;
                pass.summary.bytes += bytes;
                self.bytes_total += bytes;
                let number = pass.progress.pass;
                let known = self.findings.iter_mut().find(|f| f.damage.file == damage.file && f.damage.code == damage.code);
                match known {
                    Some(f) => {
                        f.last_seen_in_pass = number;
                        f.action = action;
                    }
                    None => {
                        self.findings_total += 1;
                        self.findings.push_back(ScrubFinding {
                            rule_id: "CORE-6",
                            kind: target.kind.clone(),
                            target: target.name.clone(),
                            damage,
                            found_at_commit_id: commit_id,
                            found_in_pass: number,
                            last_seen_in_pass: number,
                            action,
                        });
                        while self.findings.len() > MAX_FINDINGS {
                            self.findings.pop_front();
                        }
                    }
                }
            }
        }
        if pass.queue.is_empty() {
            self.end_pass(commit_id, now_ms);
        }
    }

    /// Everything observable now.
    pub fn status(&self) -> ScrubStatus {
        ScrubStatus {
            policy: self.policy,
            enabled: self.policy.bytes_per_second > 0,
            passes_completed: self.passes_completed,
            current_pass: self.current.as_ref().map(|p| p.progress.clone()),
            last_pass: self.last.clone(),
            bytes_verified_total: self.bytes_total,
            targets_verified_total: self.verified_total,
            findings_total: self.findings_total,
            findings: self.findings.iter().cloned().collect(),
        }
    }
}

/// Checks one target through `disk` (see the module docs); `pace` is called
/// with each chunk's size before it is read, and a `Break` from it ends the
/// check at once with [`TargetOutcome::Interrupted`]. A damaged snapshot is
/// returned with [`FindingAction::Reported`]: withdrawing it is the
/// caller's decision.
pub fn check_target(disk: &dyn Disk, target: &ScrubTarget, pace: &mut dyn FnMut(u64) -> ControlFlow<()>) -> TargetOutcome {
    let mut read = 0u64;
    let mut counting = |n: u64| {
        read += n;
        pace(n)
    };
    match target.kind {
        TargetKind::WalSegment => match verify_sealed_segment(disk, &target.path, target.expected_end, &mut counting) {
            Ok(check) => TargetOutcome::Verified { bytes: check.bytes },
            Err(SealedSegmentError::Vanished) => TargetOutcome::Vanished,
            Err(SealedSegmentError::Interrupted) => TargetOutcome::Interrupted,
            Err(SealedSegmentError::Io(e)) => TargetOutcome::Unreadable { detail: e.to_string() },
            Err(SealedSegmentError::Damaged(d)) => TargetOutcome::Damaged {
                damage: Damage {
                    file: target.name.clone(),
                    offset: d.offset,
                    length: None,
                    lsn: d.lsn,
                    code: d.code,
                    check_rule: d.check_rule,
                    detail: d.detail,
                },
                bytes: read,
                action: FindingAction::Reported,
            },
        },
        TargetKind::Snapshot | TargetKind::BootstrapSnapshot => {
            if !disk.exists(&target.path) {
                return TargetOutcome::Vanished;
            }
            match verify_snapshot_streaming(disk, &target.path, target.cluster_id.as_deref(), &mut counting) {
                Ok((_, bytes)) => TargetOutcome::Verified { bytes },
                // Removed (pruned) while it was read: not damage.
                Err(_) if !disk.exists(&target.path) => TargetOutcome::Vanished,
                Err(SnapshotError::Cancelled) => TargetOutcome::Interrupted,
                Err(SnapshotError::Io { source, .. }) => TargetOutcome::Unreadable { detail: source.to_string() },
                Err(e) => TargetOutcome::Damaged { damage: snapshot_damage(disk, target, &e), bytes: read, action: FindingAction::Reported },
            }
        }
    }
}

/// Where in a snapshot the damage is: the file and the smallest range the
/// checks can name (a data file's crc32c covers the whole file).
fn snapshot_damage(disk: &dyn Disk, target: &ScrubTarget, e: &SnapshotError) -> Damage {
    let in_dir = |file: &str| format!("{}/{file}", target.name);
    let size = |file: &str| disk.open(&target.path.join(file)).and_then(|f| f.len()).ok();
    let (file, offset, length) = match e {
        SnapshotError::Corrupt { file, offset, .. } => (in_dir(file), *offset, None),
        SnapshotError::Checksum { file, .. } => (in_dir(file), 0, size(file)),
        SnapshotError::SizeMismatch { file, .. } | SnapshotError::Format { file, .. } => (in_dir(file), 0, size(file)),
        SnapshotError::MissingFile { file, .. } | SnapshotError::ExtraFile { file, .. } => (in_dir(file), 0, None),
        SnapshotError::Manifest { .. } | SnapshotError::Cluster { .. } => (in_dir(crate::format::MANIFEST_FILE), 0, size(crate::format::MANIFEST_FILE)),
        _ => (target.name.clone(), 0, None),
    };
    Damage { file, offset, length, lsn: None, code: e.code(), check_rule: e.rule_id(), detail: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> ScrubTarget {
        ScrubTarget { kind: TargetKind::WalSegment, name: name.into(), path: PathBuf::from(name), expected_end: None, cluster_id: None }
    }

    fn damaged(file: &str) -> TargetOutcome {
        TargetOutcome::Damaged {
            damage: Damage { file: file.into(), offset: 64, length: None, lsn: Some(0), code: "CHECKSUM_MISMATCH", check_rule: "CORE-2", detail: "x".into() },
            bytes: 10,
            action: FindingAction::Reported,
        }
    }

    /// CORE-6: pacing keeps the bytes read within the rate.
    #[test]
    fn core_6_pacing_bounds_the_read_rate() {
        let rate = 8 * 1024 * 1024;
        assert_eq!(pace_wait_ms(rate, 0, 0), 0);
        assert_eq!(pace_wait_ms(rate, rate, 0), 1000);
        assert_eq!(pace_wait_ms(rate, rate, 400), 600);
        assert_eq!(pace_wait_ms(rate, rate / 2, 900), 0);
        assert_eq!(pace_wait_ms(0, u64::MAX, 0), 0);
        assert_eq!(pace_wait_ms(1, u64::MAX, 0), u64::MAX);
    }

    /// CORE-6, F-SC1: a pass visits every target once, counts bytes, ends
    /// with a summary stated in CommitIds, records a finding once per file
    /// and code, and the next pass waits for the interval.
    #[test]
    fn f_sc1_passes_progress_and_findings_are_stated_in_commits() {
        let mut s = ScrubState::new(ScrubPolicy { bytes_per_second: 1000, pass_interval_ms: 500 });
        assert!(s.pass_due(0));
        s.begin_pass(vec![target("wal/a.seg"), target("wal/b.seg")], Some(10), 0);
        assert!(!s.pass_due(0));
        assert_eq!(s.next_target().map(|t| t.name), Some("wal/a.seg".into()));
        s.add_bytes(100);
        s.finish_target(TargetOutcome::Verified { bytes: 100 }, Some(11), 10);
        s.finish_target(damaged("wal/b.seg"), Some(12), 20);
        let st = s.status();
        assert_eq!((st.passes_completed, st.findings_total, st.bytes_verified_total), (1, 1, 110));
        let last = st.last_pass.unwrap();
        assert_eq!((last.started_at_commit_id, last.finished_at_commit_id, last.verified, last.damaged), (Some(10), Some(12), 1, 1));
        assert_eq!((st.findings[0].found_at_commit_id, st.findings[0].rule_id), (Some(12), "CORE-6"));
        assert!(!s.pass_due(400));
        assert_eq!(s.wait_for_pass_ms(400), 120);
        assert!(s.pass_due(520));
        s.begin_pass(vec![target("wal/b.seg")], Some(20), 520);
        s.finish_target(damaged("wal/b.seg"), Some(21), 530);
        let st = s.status();
        assert_eq!((st.findings_total, st.findings.len(), st.findings[0].found_in_pass, st.findings[0].last_seen_in_pass), (1, 1, 1, 2));
        s.begin_pass(Vec::new(), Some(30), 2000);
        assert_eq!((s.status().passes_completed, s.status().current_pass), (3, None), "an empty pass completes at once");
        let disabled = ScrubState::new(ScrubPolicy { bytes_per_second: 0, pass_interval_ms: 0 });
        assert!(!disabled.pass_due(0) && !disabled.status().enabled);
    }
}
