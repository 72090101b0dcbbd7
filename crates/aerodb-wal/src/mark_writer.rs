//! Keeping the durable high-water mark current while the primary runs
//! (CORE-5), off the commit path.
//!
//! * [`MarkPolicy`] — when a mark is due: at least every `every_ms` of
//!   writing or every `every_bytes` of WAL, whichever comes first. Pure:
//!   time is passed in, so a deterministic simulator can drive it.
//! * [`MarkGate`] — shared by the group committer and the mark writer. The
//!   committer publishes each durable tip to it and asks it, before every
//!   append, how far it may write ([`MarkGate::append_limit`]): durable WAL
//!   never runs more than the crash window (`2 × every_bytes`) beyond the
//!   last written mark; when the window is full the committer makes its
//!   batch durable and waits for the writer (backpressure).
//! * [`MarkWriter`] — the thin thread at the edge: waits on the gate,
//!   writes a mark when one is due, and at a clean shutdown writes the
//!   final mark with `clean_shutdown` at the exact end of the WAL.
//!
//! A mark is only ever written for a tip the committer reported durable,
//! so it never names a record that is not fsynced.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use crate::disk::Disk;
use crate::mark::{write_mark, DurableMark};
use crate::validate::ChainTip;
use crate::Lsn;

/// Default: a mark at least every 100 ms while writing.
pub const DEFAULT_MARK_EVERY_MS: u64 = 100;
/// Default: a mark at least every 4 MiB of WAL.
pub const DEFAULT_MARK_EVERY_BYTES: u64 = 4 * 1024 * 1024;
/// Upper bound of one idle wait of the writer thread; it only keeps the
/// thread responsive to a stop request and decides nothing.
const IDLE_WAIT: Duration = Duration::from_millis(200);

/// When marks are written (CORE-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MarkPolicy {
    /// A mark is due once this many milliseconds passed since the last
    /// one and the WAL grew since.
    pub every_ms: u64,
    /// A mark is due once the durable WAL grew this many bytes since the
    /// last one.
    pub every_bytes: u64,
}

impl Default for MarkPolicy {
    fn default() -> Self {
        MarkPolicy { every_ms: DEFAULT_MARK_EVERY_MS, every_bytes: DEFAULT_MARK_EVERY_BYTES }
    }
}

impl MarkPolicy {
    /// The crash window: the most WAL bytes the committer may append beyond
    /// the last written mark (`2 × every_bytes`, at least 1). One record
    /// larger than the window may still be appended when nothing is
    /// unmarked, so after a crash at most `max(window, largest record)`
    /// bytes lie beyond the mark on disk.
    pub fn window_bytes(&self) -> u64 {
        self.every_bytes.saturating_mul(2).max(1)
    }

    /// Whether a mark is due. Pure. `marked` is the last mark's LSN and
    /// `marked_at_ms` when it was written, `durable` the durable LSN now;
    /// `backpressure` is set while the committer waits for a mark.
    pub fn mark_due(&self, marked: Lsn, marked_at_ms: u64, durable: Lsn, now_ms: u64, backpressure: bool) -> bool {
        durable > marked && (backpressure || durable - marked >= self.every_bytes || now_ms.saturating_sub(marked_at_ms) >= self.every_ms)
    }

    /// How long the writer may wait before the next mark can become due by
    /// time alone (0 when it is due now). Pure.
    pub fn wait_ms(&self, marked_at_ms: u64, now_ms: u64) -> u64 {
        (marked_at_ms.saturating_add(self.every_ms)).saturating_sub(now_ms)
    }
}

/// The furthest LSN an append may end at, with the last mark at `marked`
/// and the WAL appended up to `appended_end`: `None` (no limit) when nothing
/// is unmarked, else `marked + window`. Pure.
pub fn append_limit(window_bytes: u64, marked: Lsn, appended_end: Lsn) -> Option<Lsn> {
    (appended_end > marked).then(|| marked.saturating_add(window_bytes))
}

/// Counters and positions of the mark, for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MarkStatus {
    /// The last mark written (the one on disk).
    pub marked: Option<ChainTip>,
    /// The durable tip the committer last reported.
    pub durable: Option<ChainTip>,
    /// Marks written by this process.
    pub marks_written: u64,
    /// Times the committer waited for a mark (window full).
    pub backpressure_waits: u64,
    /// The crash window in force.
    pub window_bytes: u64,
    /// Whether writing a mark failed (writes are then refused).
    pub failed: bool,
}

struct GateState {
    durable: ChainTip,
    marked: ChainTip,
    waiting: bool,
    committer_closed: bool,
    committer_failed: bool,
    failed: Option<String>,
    stopped: bool,
    marks_written: u64,
    backpressure_waits: u64,
}

/// Shared by the group committer and the mark writer (see module docs).
pub struct MarkGate {
    state: Mutex<GateState>,
    changed: Condvar,
    window_bytes: u64,
}

impl MarkGate {
    /// A gate whose last mark (already on disk) names `marked`, which is
    /// also the durable tip, with the given crash window.
    pub fn new(marked: ChainTip, window_bytes: u64) -> Self {
        let state = GateState {
            durable: marked,
            marked,
            waiting: false,
            committer_closed: false,
            committer_failed: false,
            failed: None,
            stopped: false,
            marks_written: 0,
            backpressure_waits: 0,
        };
        MarkGate { state: Mutex::new(state), changed: Condvar::new(), window_bytes: window_bytes.max(1) }
    }

    /// The crash window in force.
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes
    }

    /// Committer: the furthest LSN the next append may end at (see
    /// [`append_limit`]).
    pub fn append_limit(&self, appended_end: Lsn) -> Option<Lsn> {
        append_limit(self.window_bytes, self.state.lock().marked.end_lsn, appended_end)
    }

    /// Committer: the furthest LSN any byte of the WAL file may be written
    /// at, zeros preallocated ahead of the records included: the last mark
    /// plus the window. A crash can then leave torn or garbage bytes only
    /// within the window recovery allows after the mark (CORE-5).
    pub fn preallocation_limit(&self) -> Lsn {
        self.state.lock().marked.end_lsn.saturating_add(self.window_bytes)
    }

    /// Committer: `tip` is durable (fsynced and applied). The writer is
    /// woken only when it has something new to consider: the first durable
    /// write after everything was marked (a mark may be due by time at
    /// once), the byte threshold reached, or the committer waiting; it
    /// otherwise wakes on its own when a mark becomes due by time.
    pub fn durable(&self, tip: ChainTip) {
        let mut s = self.state.lock();
        if tip.end_lsn > s.durable.end_lsn {
            let was_marked = s.durable.end_lsn <= s.marked.end_lsn;
            s.durable = tip;
            if was_marked || tip.end_lsn - s.marked.end_lsn >= self.window_bytes / 2 || s.waiting {
                self.changed.notify_all();
            }
        }
    }

    /// Committer: blocks until a mark at or beyond `tip` is written (the
    /// window is empty again). Err when marks can no longer be written:
    /// the committer must then refuse writes, since it could no longer
    /// bound what a crash may lose.
    pub fn wait_marked(&self, tip: ChainTip) -> Result<(), String> {
        let mut s = self.state.lock();
        let mut counted = false;
        loop {
            if let Some(e) = &s.failed {
                return Err(format!("the durable mark cannot be written: {e} (CORE-5)"));
            }
            if s.marked.end_lsn >= tip.end_lsn {
                s.waiting = false;
                return Ok(());
            }
            if s.stopped {
                return Err("the durable mark writer stopped (CORE-5)".to_string());
            }
            if !counted {
                s.backpressure_waits += 1;
                counted = true;
            }
            s.waiting = true;
            self.changed.notify_all();
            self.changed.wait_for(&mut s, IDLE_WAIT);
        }
    }

    /// Committer: it stopped (after draining its queue); `failed` when a
    /// WAL failure left bytes of unknown state behind.
    pub fn committer_closed(&self, failed: bool) {
        let mut s = self.state.lock();
        s.committer_closed = true;
        s.committer_failed |= failed;
        self.changed.notify_all();
    }

    /// Counters and positions now.
    pub fn status(&self) -> MarkStatus {
        let s = self.state.lock();
        MarkStatus {
            marked: Some(s.marked),
            durable: Some(s.durable),
            marks_written: s.marks_written,
            backpressure_waits: s.backpressure_waits,
            window_bytes: self.window_bytes,
            failed: s.failed.is_some(),
        }
    }

    /// Mark writer: the durable tip a mark is due for now under `policy`
    /// (`marked_at_ms` is when the last mark was written), or `None`.
    /// `backpressure` adds to the gate's own "committer waiting" flag: a
    /// runtime whose committer cannot block on [`MarkGate::wait_marked`]
    /// (the deterministic simulator) says here that it is waiting. Pure
    /// given the gate's state; the writer thread decides the same way.
    pub fn due(&self, policy: &MarkPolicy, marked_at_ms: u64, now_ms: u64, backpressure: bool) -> Option<ChainTip> {
        let s = self.state.lock();
        if s.stopped || s.failed.is_some() {
            return None;
        }
        due_tip(&s, policy, marked_at_ms, now_ms, backpressure)
    }

    fn record_written(&self, tip: ChainTip) {
        let mut s = self.state.lock();
        if tip.end_lsn >= s.marked.end_lsn {
            s.marked = tip;
        }
        s.marks_written += 1;
        self.changed.notify_all();
    }

    fn record_failure(&self, error: String) {
        let mut s = self.state.lock();
        s.failed = Some(error);
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.state.lock().stopped = true;
        self.changed.notify_all();
    }
}

/// The background thread that writes marks (see module docs). Stops (and
/// joins) when dropped, without writing a clean-shutdown mark.
pub struct MarkWriter {
    gate: Arc<MarkGate>,
    disk: Arc<dyn Disk>,
    wal_dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MarkWriter {
    /// Starts the writer for the WAL in `wal_dir`. The gate's mark must be
    /// on disk already (startup writes it before accepting writes).
    pub fn start(disk: Arc<dyn Disk>, wal_dir: PathBuf, gate: Arc<MarkGate>, policy: MarkPolicy) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (disk, wal_dir, gate, stop) = (disk.clone(), wal_dir.clone(), gate.clone(), stop.clone());
            std::thread::Builder::new().name("durable-mark".into()).spawn(move || run(&*disk, &wal_dir, &gate, policy, &stop))?
        };
        tracing::info!(
            every_ms = policy.every_ms,
            every_bytes = policy.every_bytes,
            window_bytes = gate.window_bytes(),
            "durable mark writer started (CORE-5)"
        );
        Ok(MarkWriter { gate, disk, wal_dir, stop, thread: Mutex::new(Some(thread)) })
    }

    /// The gate the committer must use.
    pub fn gate(&self) -> &Arc<MarkGate> {
        &self.gate
    }

    /// Stops the thread and waits for it (a mark being written completes).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.gate.stop();
        if let Some(handle) = self.thread.lock().take() {
            if handle.join().is_err() {
                tracing::error!("durable mark writer thread panicked");
            }
        }
    }

    /// Clean shutdown: stops the thread and, if the committer has stopped
    /// after draining without a WAL failure, writes the final mark with
    /// `clean_shutdown` at the exact end of the WAL. Returns that mark, or
    /// `None` when the shutdown cannot be called clean (the mark on disk
    /// then stays a running one, and the next recovery treats the stop as
    /// a crash).
    pub fn finish_clean(&self) -> std::io::Result<Option<DurableMark>> {
        self.stop();
        let (tip, clean) = {
            let s = self.gate.state.lock();
            (s.durable, s.committer_closed && !s.committer_failed && s.failed.is_none())
        };
        if !clean {
            tracing::warn!("shutdown is not clean (the committer did not drain, or a WAL or mark write failed): no clean-shutdown mark written");
            return Ok(None);
        }
        let mark = DurableMark::at(tip, true, self.gate.window_bytes);
        write_mark(&*self.disk, &self.wal_dir, &mark)?;
        self.gate.record_written(tip);
        tracing::info!(end_lsn = mark.end_lsn, commit_id = mark.commit_id, "clean-shutdown durable mark written (CORE-5)");
        Ok(Some(mark))
    }
}

impl Drop for MarkWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer's decision: the durable tip, when a mark is due for it.
fn due_tip(s: &GateState, policy: &MarkPolicy, marked_at_ms: u64, now_ms: u64, backpressure: bool) -> Option<ChainTip> {
    policy.mark_due(s.marked.end_lsn, marked_at_ms, s.durable.end_lsn, now_ms, s.waiting || backpressure).then_some(s.durable)
}

/// Writes the mark naming `tip` (a tip the committer reported durable, as
/// [`MarkGate::due`] returns) and records it in the gate; on failure the
/// gate records it and writes stop at the committer's next wait (CORE-5).
/// The one write step of the writer thread, and of runtimes that drive the
/// writer themselves (the deterministic simulator).
pub fn write_due_mark(disk: &dyn Disk, wal_dir: &std::path::Path, gate: &MarkGate, tip: ChainTip) -> std::io::Result<()> {
    let mark = DurableMark::at(tip, false, gate.window_bytes);
    match write_mark(disk, wal_dir, &mark) {
        Ok(()) => {
            gate.record_written(tip);
            tracing::trace!(end_lsn = tip.end_lsn, commit_id = tip.commit_id, "durable mark written");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot write the durable mark: refusing further writes (CORE-5)");
            gate.record_failure(e.to_string());
            Err(e)
        }
    }
}

fn run(disk: &dyn Disk, wal_dir: &std::path::Path, gate: &MarkGate, policy: MarkPolicy, stop: &AtomicBool) {
    // audit: allow-clock(mark cadence only; what a mark says is decided by the durable tip, never by time)
    let origin = Instant::now();
    let now_ms = || u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut marked_at_ms = now_ms();
    loop {
        let tip = {
            let mut s = gate.state.lock();
            loop {
                if stop.load(Ordering::SeqCst) || s.stopped || s.failed.is_some() {
                    return;
                }
                let now = now_ms();
                if let Some(tip) = due_tip(&s, &policy, marked_at_ms, now, false) {
                    break tip;
                }
                let wait = if s.durable.end_lsn > s.marked.end_lsn { policy.wait_ms(marked_at_ms, now).max(1) } else { u64::MAX };
                gate.changed.wait_for(&mut s, IDLE_WAIT.min(Duration::from_millis(wait)));
            }
        };
        if write_due_mark(disk, wal_dir, gate, tip).is_err() {
            return;
        }
        marked_at_ms = now_ms();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CORE-5: a mark is due by bytes, by time while writing, or on
    /// backpressure, and never when nothing new is durable.
    #[test]
    fn core_5_mark_due_by_bytes_time_or_backpressure() {
        let p = MarkPolicy { every_ms: 100, every_bytes: 4096 };
        assert!(!p.mark_due(1000, 0, 1000, 1_000_000, true), "nothing new");
        assert!(p.mark_due(1000, 0, 1000 + 4096, 1, false), "by bytes");
        assert!(!p.mark_due(1000, 0, 1000 + 4095, 99, false));
        assert!(p.mark_due(1000, 0, 1001, 100, false), "by time");
        assert!(p.mark_due(1000, 0, 1001, 1, true), "backpressure");
        assert_eq!(p.wait_ms(50, 120), 30);
        assert_eq!(p.wait_ms(50, 500), 0);
        assert_eq!(p.window_bytes(), 8192);
    }

    /// CORE-5: appends are limited to the window beyond the last mark, and
    /// unlimited only when nothing is unmarked.
    #[test]
    fn core_5_append_limit_bounds_unmarked_bytes() {
        assert_eq!(append_limit(8192, 1000, 1000), None);
        assert_eq!(append_limit(8192, 1000, 1001), Some(9192));
    }
}
