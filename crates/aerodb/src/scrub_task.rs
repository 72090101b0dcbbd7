//! The scrub thread (CORE-6, F-SC1): the thin edge around the pure scrub
//! core of `aerodb-snapshot`. It lists what to re-verify, reads it through
//! the pure pacing (`pace_wait_ms`, at most `--scrub-bytes-per-second`),
//! records outcomes stated in CommitIds, and withdraws a damaged published
//! snapshot (renamed out of the published namespace, kept for forensics)
//! so neither primary recovery nor a bootstrap uses it.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aerodb_snapshot::scrub::{check_target, pace_wait_ms, FindingAction, ScrubPolicy, ScrubState, ScrubStatus, ScrubTarget, TargetKind, TargetOutcome};
use aerodb_snapshot::{list_snapshots, withdraw_snapshot, SnapshotScheduler};
use aerodb_wal::disk::Disk;
use aerodb_wal::log::SegmentList;
use aerodb_wal::segment::{parse_segment_file_name, segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::{ChainTip, CommitId};
use parking_lot::Mutex;

/// Longest single wait, so a stop request is seen promptly.
const SLICE: Duration = Duration::from_millis(100);

/// Withdraws a damaged published snapshot and says what was done.
pub type Withdraw = Box<dyn Fn(&ScrubTarget) -> FindingAction + Send + Sync>;

/// What the scrub of one node reads and how it reacts.
pub struct ScrubSources {
    /// Lists the targets of a new pass.
    pub targets: Box<dyn Fn() -> Vec<ScrubTarget> + Send + Sync>,
    /// The node's applied CommitId now ("when", in commits).
    pub commit_id: Box<dyn Fn() -> Option<CommitId> + Send + Sync>,
    /// Withdraws a damaged published snapshot (primary and standalone).
    pub withdraw: Option<Withdraw>,
}

/// The running scrub. Stops (and joins) when dropped.
pub struct ScrubHandle {
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    state: Arc<Mutex<ScrubState>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ScrubHandle {
    /// Starts the scrub thread (none when the policy disables scrubbing;
    /// the status then says so).
    pub fn start(policy: ScrubPolicy, disk: Arc<dyn Disk>, sources: ScrubSources) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(ScrubState::new(policy)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = if policy.bytes_per_second > 0 {
            let (state, stop) = (state.clone(), stop.clone());
            Some(std::thread::Builder::new().name("scrub".into()).spawn(move || run(&state, &stop, &*disk, &sources))?)
        } else {
            tracing::info!("scrub disabled (--scrub-bytes-per-second 0)");
            None
        };
        Ok(ScrubHandle { state, stop, thread: Mutex::new(thread) })
    }

    /// What the scrub has done and found.
    #[cfg_attr(not(feature = "replication"), allow(dead_code))]
    pub fn status(&self) -> ScrubStatus {
        self.state.lock().status()
    }

    /// Stops the thread and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().take() {
            if t.join().is_err() {
                tracing::error!("scrub thread panicked");
            }
        }
    }
}

impl Drop for ScrubHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits `ms`, in slices, unless a stop is requested.
fn wait(stop: &AtomicBool, ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        // Pacing and pass scheduling only: no decision about data depends on it (REPL-10).
        std::thread::sleep(left.min(SLICE));
    }
}

fn run(state: &Mutex<ScrubState>, stop: &AtomicBool, disk: &dyn Disk, sources: &ScrubSources) {
    let origin = Instant::now();
    let now_ms = || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let rate = state.lock().policy().bytes_per_second;
    while !stop.load(Ordering::SeqCst) {
        let due = state.lock().pass_due(now_ms());
        if due {
            let targets = (sources.targets)();
            tracing::debug!(targets = targets.len(), "scrub pass starting (CORE-6)");
            state.lock().begin_pass(targets, (sources.commit_id)(), now_ms());
        }
        let Some(target) = state.lock().next_target() else {
            let idle = state.lock().wait_for_pass_ms(now_ms());
            wait(stop, idle.clamp(1, SLICE.as_millis() as u64));
            continue;
        };
        let mut pace = |n: u64| {
            let mut s = state.lock();
            s.add_bytes(n);
            let (started, done) = s.pass_clock().unwrap_or((0, 0));
            drop(s);
            wait(stop, pace_wait_ms(rate, done, now_ms().saturating_sub(started)));
            // A stop ends the check between two chunks: shutdown never
            // waits for the rest of a large target to be read (RES-3).
            if stop.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut outcome = check_target(disk, &target, &mut pace);
        if outcome == TargetOutcome::Interrupted {
            break;
        }
        if let TargetOutcome::Damaged { damage, action, .. } = &mut outcome {
            if target.kind == TargetKind::Snapshot {
                if let Some(withdraw) = &sources.withdraw {
                    *action = withdraw(&target);
                }
            }
            tracing::error!(
                file = %damage.file,
                offset = damage.offset,
                code = damage.code,
                check = damage.check_rule,
                detail = %damage.detail,
                action = %serde_json::to_string(&action).unwrap_or_default(),
                "SCRUB FOUND DAMAGE in stored data (CORE-6, F-SC1)"
            );
        }
        if let TargetOutcome::Unreadable { detail } = &outcome {
            tracing::warn!(target = %target.name, %detail, "scrub could not read a target; it is retried next pass");
        }
        state.lock().finish_target(outcome, (sources.commit_id)(), now_ms());
    }
}

/// A primary's (or standalone's) targets: every published snapshot and
/// every sealed WAL segment (all but the last), each expected to end where
/// the next one starts.
pub fn primary_targets(disk: &dyn Disk, root: &Path, segments: &SegmentList, cluster_id: &str) -> Vec<ScrubTarget> {
    let mut out: Vec<ScrubTarget> = list_snapshots(disk, &root.join("snapshots"))
        .unwrap_or_default()
        .into_iter()
        .rev()
        .map(|s| ScrubTarget {
            kind: TargetKind::Snapshot,
            name: format!("snapshots/{}", s.name),
            path: s.path,
            expected_end: None,
            cluster_id: Some(cluster_id.to_string()),
        })
        .collect();
    let list = segments.snapshot();
    for pair in list.windows(2) {
        let name = segment_file_name(pair[0].header.start_lsn);
        out.push(ScrubTarget {
            kind: TargetKind::WalSegment,
            name: format!("wal/{name}"),
            path: segments.dir().join(&name),
            expected_end: Some(ChainTip::of_segment(&pair[1].header)),
            cluster_id: None,
        });
    }
    out
}

/// A replica's targets: its installed bootstrap snapshot and its sealed WAL
/// segment files (all but the last), each expected to end where the next
/// file's header says it starts.
#[cfg_attr(not(feature = "replication"), allow(dead_code))]
pub fn replica_targets(disk: &dyn Disk, root: &Path) -> Vec<ScrubTarget> {
    let mut out = Vec::new();
    let snapshot = root.join("replica").join("snapshot");
    if disk.exists(&snapshot) {
        out.push(ScrubTarget { kind: TargetKind::BootstrapSnapshot, name: "replica/snapshot".into(), path: snapshot, expected_end: None, cluster_id: None });
    }
    let wal = root.join("wal");
    let mut files: Vec<(u64, String)> =
        disk.list(&wal).unwrap_or_default().into_iter().filter_map(|n| parse_segment_file_name(&n).map(|lsn| (lsn, n))).collect();
    files.sort();
    for pair in files.windows(2) {
        let next = header_tip(disk, &wal.join(&pair[1].1));
        out.push(ScrubTarget {
            kind: TargetKind::WalSegment,
            name: format!("wal/{}", pair[0].1),
            path: wal.join(&pair[0].1),
            expected_end: next,
            cluster_id: None,
        });
    }
    out
}

fn header_tip(disk: &dyn Disk, path: &Path) -> Option<ChainTip> {
    let file = disk.open(path).ok()?;
    let mut buf = [0u8; SEGMENT_HEADER_LEN as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    SegmentHeader::decode(&buf).ok().map(|h| ChainTip::of_segment(&h))
}

/// Withdraws a damaged published snapshot and asks the scheduler for a
/// fresh one, so a valid base exists again.
pub fn withdraw_and_replace(disk: Arc<dyn Disk>, snapshots_dir: PathBuf, scheduler: Arc<SnapshotScheduler>) -> Withdraw {
    Box::new(move |target| {
        let commit_id = target.path.file_name().and_then(|n| n.to_str()).and_then(aerodb_snapshot::format::parse_snapshot_dir_name);
        let Some(commit_id) = commit_id else {
            return FindingAction::WithdrawFailed { error: format!("{} is not a published snapshot name", target.name) };
        };
        match withdraw_snapshot(&*disk, &snapshots_dir, commit_id) {
            Ok(to) => {
                match scheduler.request_snapshot(true) {
                    Ok(info) => tracing::info!(commit_id = info.commit_id, "a fresh snapshot replaces the withdrawn one"),
                    Err(e) => tracing::warn!(code = e.code(), error = %e, "could not create a snapshot to replace the withdrawn one"),
                }
                FindingAction::Withdrawn { to: format!("snapshots/{to}") }
            }
            Err(e) => FindingAction::WithdrawFailed { error: e.to_string() },
        }
    })
}
