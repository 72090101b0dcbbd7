//! Group commit: many concurrent committers share one fsync.
//!
//! One thread owns the [`WalWriter`]. It takes every request waiting in its
//! queue, appends them in arrival order (assigning CommitIds), fsyncs once,
//! hands the durable records to the [`DurableSink`] (which applies them to
//! the store so they become visible, MVCC-2), publishes the durable point,
//! and only then answers the committers (CORE-1). With a [`MarkGate`] it
//! never lets the WAL run more than the crash window beyond the last
//! durable high-water mark (CORE-5).
//!
//! A committer's [`CommitTicket`] can be waited on by blocking
//! ([`CommitTicket::wait`]) or awaited as a `Future` by any async runtime:
//! the acknowledgement slot wakes either kind of waiter, so an async server
//! never parks a thread per pending commit. The crate stays runtime-agnostic.
//!
//! After each group it asks the sink whether a garbage-collection step is
//! due ([`DurableSink::plan_gc`], a pure function of CommitIds, never of
//! time). If so, the same thread — the WAL's single writer — appends a GC
//! record (MVCC-4), fsyncs it and hands it to the sink like any record, so
//! every node applies it at the same position in the log.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use thiserror::Error;

use crate::durable::{DurablePoint, DurableWatch};
use crate::hash::StateDigest;
use crate::mark_writer::MarkGate;
use crate::record::{Op, RecordBody, RecordEncodeError, RecordPosition};
use crate::validate::ChainTip;
use crate::writer::{AppendError, WalWriter};
use crate::CommitId;

/// Most records in one group (bounds latency and memory of one batch).
const MAX_BATCH_RECORDS: usize = 4096;
/// Most encoded bytes in one group.
const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// How long the commit thread waits for a request before it cuts the
/// preallocated zeros off the current segment ([`crate::log::Preallocation`]).
/// Only what the file costs depends on it, never what the WAL holds: a
/// quiet WAL ends at its last record, as after a clean shutdown.
const IDLE_TRIM_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// A record that is durable, handed to the sink to be made visible.
#[derive(Debug)]
pub struct DurableRecord {
    /// Position and identity.
    pub position: RecordPosition,
    /// Digest after it.
    pub state_digest: StateDigest,
    /// What it does (a write set, or a GC step).
    pub body: RecordBody,
}

/// A garbage-collection step the sink wants written (MVCC-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcPlan {
    /// The new history horizon H.
    pub horizon: CommitId,
    /// The state digest after removing every version no view >= H can see.
    pub state_digest: StateDigest,
}

/// Receives each fsynced group, in order, before committers are answered.
pub trait DurableSink: Send + 'static {
    /// Makes `records` visible. An error here means the store no longer
    /// matches the WAL: the committer stops accepting writes.
    fn on_durable(&mut self, records: &[DurableRecord]) -> Result<(), String>;

    /// Called after every applied group with the WAL's tip (everything up
    /// to it is applied): a GC step to write next, if one is due. The
    /// decision must depend only on the log (CommitIds), never on time or
    /// on how commits were grouped into fsyncs beyond the tip itself.
    /// Default: never.
    fn plan_gc(&mut self, tip: ChainTip) -> Option<GcPlan> {
        let _ = tip;
        None
    }
}

/// What a committer gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitReceipt {
    /// The record's position and identity.
    pub position: RecordPosition,
}

/// Why a commit was not acknowledged. No variant means "maybe written":
/// an unacknowledged commit may or may not survive a crash, but an
/// acknowledged one always does.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CommitError {
    /// The write set cannot be encoded; no CommitId was used.
    #[error(transparent)]
    Encode(#[from] RecordEncodeError),
    /// The WAL failed (IO or fsync); the node accepts no more writes.
    #[error("WAL failure, writes stopped: {0}")]
    WalFailed(String),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
}

impl CommitError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            CommitError::Encode(RecordEncodeError::TooLarge { .. }) => "WRITE_SET_TOO_LARGE",
            CommitError::Encode(_) => "BAD_REQUEST",
            CommitError::WalFailed(_) => "WAL_FAILED",
            CommitError::ShuttingDown => "SHUTTING_DOWN",
        }
    }
}

struct Request {
    ops: Vec<Op>,
    reply: AckSender,
}

type Ack = Result<CommitReceipt, CommitError>;

/// Where the commit thread leaves one committer's answer.
#[derive(Default)]
struct AckSlot {
    state: Mutex<AckState>,
    answered: Condvar,
}

#[derive(Default)]
enum AckState {
    /// No answer yet, nobody polled.
    #[default]
    Pending,
    /// No answer yet; the waker of the async waiter that polled last.
    Waiting(Waker),
    /// The answer, not yet taken.
    Answered(Ack),
    /// The answer was taken by the waiter.
    Taken,
}

/// The commit thread's end of an acknowledgement. Dropping it unanswered
/// (the thread stopped) answers [`CommitError::ShuttingDown`].
struct AckSender {
    slot: Arc<AckSlot>,
}

impl AckSender {
    fn send(self, ack: Ack) {
        self.answer(ack);
    }

    fn answer(&self, ack: Ack) {
        let mut state = self.slot.state.lock();
        if matches!(*state, AckState::Answered(_) | AckState::Taken) {
            return;
        }
        let previous = std::mem::replace(&mut *state, AckState::Answered(ack));
        drop(state);
        self.slot.answered.notify_all();
        if let AckState::Waiting(waker) = previous {
            waker.wake();
        }
    }
}

impl Drop for AckSender {
    fn drop(&mut self) {
        self.answer(Err(CommitError::ShuttingDown));
    }
}

/// A pending commit. It resolves only after the record is fsynced and
/// applied (CORE-1): block on it with [`CommitTicket::wait`], or `.await`
/// it (it is a `Future`) without holding a thread.
pub struct CommitTicket {
    slot: Arc<AckSlot>,
}

impl CommitTicket {
    fn new() -> (CommitTicket, AckSender) {
        let slot = Arc::new(AckSlot::default());
        (CommitTicket { slot: slot.clone() }, AckSender { slot })
    }

    /// Blocks until the acknowledgement (for threads outside an async runtime).
    pub fn wait(self) -> Result<CommitReceipt, CommitError> {
        let mut state = self.slot.state.lock();
        loop {
            if let AckState::Answered(_) = &*state {
                if let AckState::Answered(ack) = std::mem::replace(&mut *state, AckState::Taken) {
                    return ack;
                }
            }
            if let AckState::Taken = &*state {
                return Err(CommitError::ShuttingDown);
            }
            self.slot.answered.wait(&mut state);
        }
    }
}

impl Future for CommitTicket {
    type Output = Result<CommitReceipt, CommitError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, AckState::Taken) {
            AckState::Answered(ack) => Poll::Ready(ack),
            AckState::Taken => Poll::Ready(Err(CommitError::ShuttingDown)),
            AckState::Pending | AckState::Waiting(_) => {
                *state = AckState::Waiting(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Handle to the group-commit thread. Dropping it stops the thread after
/// the queued requests are handled.
pub struct GroupCommitter {
    tx: Mutex<Option<SyncSender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    durable: Arc<DurableWatch>,
    fsyncs: Arc<AtomicU64>,
}

impl GroupCommitter {
    /// Starts the commit thread owning `writer`.
    pub fn start(writer: WalWriter, sink: impl DurableSink, durable: Arc<DurableWatch>) -> std::io::Result<Self> {
        Self::start_with(writer, sink, durable, None)
    }

    /// [`GroupCommitter::start`] bounded by a durable mark (CORE-5): before
    /// each append the committer asks `gate` how far it may write; when the
    /// crash window is full it makes what it appended durable, answers
    /// those committers, and waits for the mark writer before appending
    /// more. It publishes every durable tip to the gate.
    pub fn start_with(writer: WalWriter, sink: impl DurableSink, durable: Arc<DurableWatch>, gate: Option<Arc<MarkGate>>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Request>(MAX_BATCH_RECORDS);
        let core = GroupCommitCore::new(writer, sink, durable.clone(), gate);
        let fsyncs = core.fsync_counter();
        let thread = std::thread::Builder::new().name("wal-group-commit".into()).spawn(move || run(core, rx))?;
        Ok(GroupCommitter { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)), durable, fsyncs })
    }

    /// Queues a write set. The CommitId is assigned when it is appended.
    pub fn submit(&self, ops: Vec<Op>) -> CommitTicket {
        let (ticket, reply) = CommitTicket::new();
        let tx = self.tx.lock().clone();
        if let Some(tx) = tx {
            // If the thread is gone the request (and its reply) is dropped,
            // which answers the ticket with ShuttingDown.
            let _ = tx.send(Request { ops, reply });
        }
        ticket
    }

    /// Submits and waits.
    pub fn commit(&self, ops: Vec<Op>) -> Result<CommitReceipt, CommitError> {
        self.submit(ops).wait()
    }

    /// The durable point watch.
    pub fn durable(&self) -> &Arc<DurableWatch> {
        &self.durable
    }

    /// Successful WAL fsyncs since start (one per commit group).
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Stops accepting writes, lets the thread answer every queued request,
    /// and waits for it to exit. Later submissions report shutdown.
    /// Idempotent.
    pub fn close(&self) {
        self.tx.lock().take();
        let thread = self.thread.lock().take();
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("group commit thread panicked");
            }
        }
    }
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Encoded size estimate of a write set, for bounding a batch.
fn ops_bytes(ops: &[Op]) -> usize {
    ops.iter().map(|o| o.collection().len() + o.key().len() + o.doc().map_or(0, <[u8]>::len)).sum()
}

/// The commit thread: gathers whatever is queued into one group, runs the
/// group step on it (waiting for the mark writer whenever the crash window
/// is full), then lets the sink's GC step run.
fn run<S: DurableSink>(mut core: GroupCommitCore<S>, rx: Receiver<Request>) {
    let mut answer = |reply: AckSender, result: Ack| reply.send(result);
    loop {
        let next = if core.writer.has_preallocated_tail() {
            match rx.recv_timeout(IDLE_TRIM_AFTER) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    core.trim_preallocation();
                    continue;
                }
                received => received.ok(),
            }
        } else {
            rx.recv().ok()
        };
        let Some(first) = next else { break };
        let mut bytes = ops_bytes(&first.ops);
        let mut batch = vec![GroupRequest { ops: first.ops, reply: first.reply }];
        while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += ops_bytes(&req.ops);
                    batch.push(GroupRequest { ops: req.ops, reply: req.reply });
                }
                Err(_) => break,
            }
        }
        loop {
            let mut group = core.append_group(batch, &mut answer);
            let blocked = group.take_blocked();
            core.complete_group(group, &mut answer);
            if blocked.is_empty() {
                break;
            }
            core.wait_for_mark();
            batch = blocked;
        }
        core.gc_step();
    }
    core.close();
}

/// One commit request of a group: a write set and the caller's reply
/// token (an acknowledgement slot in the node, a request id in the
/// simulator).
#[derive(Debug)]
pub struct GroupRequest<R> {
    /// The write set.
    pub ops: Vec<Op>,
    /// Handed back with the outcome.
    pub reply: R,
}

/// A group whose records are appended but not yet durable: the state
/// between the two halves of the group step.
#[must_use = "a group must be completed, or its committers are never answered"]
#[derive(Debug)]
pub struct AppendedGroup<R> {
    records: Vec<DurableRecord>,
    /// `None` where the committer was already answered.
    replies: Vec<Option<R>>,
    /// Requests not appended because the crash window after the last
    /// durable mark is full (CORE-5), in arrival order.
    blocked: Vec<GroupRequest<R>>,
}

impl<R> AppendedGroup<R> {
    /// The records appended, in WAL order.
    pub fn records(&self) -> &[DurableRecord] {
        &self.records
    }
    /// Whether nothing was appended (no fsync is needed).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    /// Takes the requests that did not fit in the crash window. Complete
    /// this group, wait until a mark covers the tip
    /// ([`GroupCommitCore::wait_for_mark`] or the simulator's own mark
    /// step), then append them as the next group.
    pub fn take_blocked(&mut self) -> Vec<GroupRequest<R>> {
        std::mem::take(&mut self.blocked)
    }
}

/// The synchronous group-commit step, shared by the node's commit thread
/// ([`GroupCommitter`]) and the deterministic simulator, which runs the two
/// halves at different simulated times so a crash can fall between them.
///
/// 1. [`GroupCommitCore::append_group`] appends every request in order,
///    assigning CommitIds (REPL-2), as long as each record fits in the
///    crash window after the last durable mark (CORE-5); nothing is
///    acknowledged.
/// 2. [`GroupCommitCore::complete_group`] fsyncs once, hands the durable
///    records to the sink (MVCC-2), publishes the durable point and only
///    then acknowledges (CORE-1).
/// 3. [`GroupCommitCore::gc_step`] writes the GC record the sink asks for,
///    if any (MVCC-4).
///
/// After any WAL or sink failure the core refuses every later request
/// (`WAL_FAILED`) until the process restarts and recovery decides what is
/// on disk.
pub struct GroupCommitCore<S> {
    writer: WalWriter,
    sink: S,
    durable: Arc<DurableWatch>,
    fsyncs: Arc<AtomicU64>,
    gate: Option<Arc<MarkGate>>,
    failed: Option<String>,
}

impl<S: DurableSink> GroupCommitCore<S> {
    /// A core owning `writer`, applying through `sink`, publishing to
    /// `durable`, bounded by the durable mark `gate` when there is one.
    pub fn new(writer: WalWriter, sink: S, durable: Arc<DurableWatch>, gate: Option<Arc<MarkGate>>) -> Self {
        GroupCommitCore { writer, sink, durable, fsyncs: Arc::new(AtomicU64::new(0)), gate, failed: None }
    }

    /// The durable point watch.
    pub fn durable(&self) -> &Arc<DurableWatch> {
        &self.durable
    }

    /// Successful WAL fsyncs so far.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    fn fsync_counter(&self) -> Arc<AtomicU64> {
        self.fsyncs.clone()
    }

    /// Why writes stopped, if they did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The writer (for its tip and segment list).
    pub fn writer(&self) -> &WalWriter {
        &self.writer
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn append_limit(&self) -> Option<crate::Lsn> {
        self.gate.as_ref().and_then(|g| g.append_limit(self.writer.tip().end_lsn))
    }

    /// First half of the step: appends each request in order. Requests that
    /// fail here (unencodable, WAL failure) are answered through `answer` at
    /// once; the others wait in the returned group. From the first request
    /// whose record would end beyond the crash window on, requests are
    /// handed back unappended ([`AppendedGroup::take_blocked`]).
    pub fn append_group<R>(&mut self, batch: Vec<GroupRequest<R>>, answer: &mut impl FnMut(R, Result<CommitReceipt, CommitError>)) -> AppendedGroup<R> {
        let mut group = AppendedGroup { records: Vec::with_capacity(batch.len()), replies: Vec::with_capacity(batch.len()), blocked: Vec::new() };
        if let Some(gate) = self.gate.as_ref().filter(|_| self.writer.preallocates()) {
            // Zeros written ahead of the records stay inside the crash
            // window too (the mark only advances, so this bound stays safe).
            self.writer.set_preallocation_limit(Some(gate.preallocation_limit()));
        }
        for req in batch {
            if let Some(reason) = &self.failed {
                answer(req.reply, Err(CommitError::WalFailed(reason.clone())));
                continue;
            }
            if !group.blocked.is_empty() {
                group.blocked.push(req);
                continue;
            }
            match self.writer.append_within(&req.ops, self.append_limit()) {
                Ok(rec) => {
                    let mut reply = Some(req.reply);
                    if crate::plant::is_active(crate::plant::Plant::AckBeforeFsync) {
                        if let Some(r) = reply.take() {
                            answer(r, Ok(CommitReceipt { position: rec.position }));
                        }
                    }
                    group.records.push(DurableRecord { position: rec.position, state_digest: rec.state_digest, body: RecordBody::Commit(req.ops) });
                    group.replies.push(reply);
                }
                Err(AppendError::BeyondLimit { .. }) => group.blocked.push(req),
                Err(AppendError::Encode(e)) => answer(req.reply, Err(CommitError::Encode(e))),
                Err(AppendError::Log(e)) => {
                    self.failed = Some(e.to_string());
                    answer(req.reply, Err(CommitError::WalFailed(e.to_string())));
                }
            }
        }
        group
    }

    /// Second half of the step: fsync, sink, publish, acknowledge (in WAL
    /// order). Any failure answers every waiting committer `WAL_FAILED`.
    pub fn complete_group<R>(&mut self, group: AppendedGroup<R>, answer: &mut impl FnMut(R, Result<CommitReceipt, CommitError>)) {
        let AppendedGroup { records, replies, blocked } = group;
        if self.failed.is_none() && !records.is_empty() {
            match self.writer.sync() {
                Ok(_) => {
                    self.fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.failed = Some(e.to_string()),
            }
        }
        if self.failed.is_none() && !records.is_empty() {
            if let Err(e) = self.sink.on_durable(&records) {
                self.failed = Some(e);
            }
        }
        if let Some(reason) = &self.failed {
            let waiting: Vec<R> = replies.into_iter().flatten().chain(blocked.into_iter().map(|b| b.reply)).collect();
            if !waiting.is_empty() {
                tracing::error!(%reason, "WAL failure: refusing all further writes (CORE-1)");
            }
            for reply in waiting {
                answer(reply, Err(CommitError::WalFailed(reason.clone())));
            }
            return;
        }
        debug_assert!(blocked.is_empty(), "blocked requests are taken before the group completes");
        if let Some(last) = records.last() {
            self.durable.advance(DurablePoint { lsn: last.position.end_lsn, commit_id: last.position.commit_id });
            if let Some(gate) = &self.gate {
                gate.durable(self.writer.tip());
            }
        }
        for (reply, rec) in replies.into_iter().zip(&records) {
            if let Some(reply) = reply {
                answer(reply, Ok(CommitReceipt { position: rec.position }));
            }
        }
    }

    /// The whole step at once, without a mark gate (tests, tools).
    pub fn commit_group<R>(&mut self, batch: Vec<GroupRequest<R>>, answer: &mut impl FnMut(R, Result<CommitReceipt, CommitError>)) {
        let mut group = self.append_group(batch, answer);
        let blocked = group.take_blocked();
        self.complete_group(group, answer);
        for req in blocked {
            answer(req.reply, Err(CommitError::WalFailed("the crash window is full and this caller cannot wait for a mark".into())));
        }
    }

    /// Blocks until the mark writer has marked everything durable (the
    /// crash window is empty again). If marks can no longer be written,
    /// writes stop: the committer could no longer bound what a crash may
    /// lose (CORE-5).
    pub fn wait_for_mark(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let Some(gate) = &self.gate else { return };
        if let Err(reason) = gate.wait_marked(self.writer.tip()) {
            tracing::error!(%reason, "cannot bound the crash window: refusing all further writes (CORE-5)");
            self.failed = Some(reason);
        }
    }

    /// Writes the GC step the sink asks for, if any (MVCC-4). A record that
    /// would not fit in the crash window is simply left for a later group:
    /// GC is never urgent enough to wait for a mark. Returns the GC record
    /// when one was appended (durable and applied, unless writes stopped
    /// on the way: [`GroupCommitCore::failure`]).
    pub fn gc_step(&mut self) -> Option<GcAppended> {
        if self.failed.is_some() {
            return None;
        }
        let plan = self.sink.plan_gc(self.writer.tip())?;
        let limit = self.append_limit();
        let mut appended = None;
        match self.write_gc(plan, limit, &mut appended) {
            // Beyond the crash window: the next mark advance lets it through.
            Ok(()) | Err(GcWriteError::Append(AppendError::BeyondLimit { .. })) => {}
            Err(e) => {
                tracing::error!(reason = %e, "WAL failure while writing a GC record: refusing all further writes (CORE-1)");
                self.failed = Some(e.to_string());
            }
        }
        appended
    }

    /// Appends, fsyncs and applies one GC record, then publishes it as
    /// durable. A crash anywhere in here leaves either no GC record or a
    /// whole one that recovery replays through the same apply function (F-G2).
    fn write_gc(&mut self, plan: GcPlan, limit: Option<crate::Lsn>, appended: &mut Option<GcAppended>) -> Result<(), GcWriteError> {
        let rec = self.writer.append_gc(plan.horizon, plan.state_digest, limit)?;
        *appended = Some(GcAppended { position: rec.position, state_digest: rec.state_digest, horizon: plan.horizon });
        crate::crash_point!("gc.before_fsync");
        self.writer.sync().map_err(AppendError::Log)?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        crate::crash_point!("gc.before_apply");
        let record = DurableRecord { position: rec.position, state_digest: rec.state_digest, body: RecordBody::Gc { horizon: plan.horizon } };
        self.sink.on_durable(std::slice::from_ref(&record)).map_err(GcWriteError::Apply)?;
        tracing::debug!(commit_id = rec.position.commit_id, horizon = plan.horizon, "GC record applied (MVCC-4)");
        self.durable.advance(DurablePoint { lsn: rec.position.end_lsn, commit_id: rec.position.commit_id });
        if let Some(gate) = &self.gate {
            gate.durable(self.writer.tip());
        }
        Ok(())
    }

    /// Durably cuts the preallocated zeros off the current segment
    /// ([`WalWriter::trim_preallocation`]); a failure stops writes like any
    /// WAL failure (the file's state is then unknown).
    pub fn trim_preallocation(&mut self) {
        if self.failed.is_some() || !self.writer.has_preallocated_tail() {
            return;
        }
        if let Err(e) = self.writer.trim_preallocation() {
            tracing::error!(reason = %e, "WAL failure while trimming preallocated zeros: refusing all further writes (CORE-1)");
            self.failed = Some(e.to_string());
        }
    }

    /// The commit thread is ending: closes the durable watch and tells the
    /// mark gate whether it ended cleanly (a clean mark is written only if
    /// no write failed).
    pub fn close(&mut self) {
        // A cleanly shut down WAL ends at its last record.
        self.trim_preallocation();
        self.durable.close();
        if let Some(gate) = &self.gate {
            gate.committer_closed(self.failed.is_some());
        }
    }
}

/// A GC record [`GroupCommitCore::gc_step`] appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcAppended {
    /// Its position and identity.
    pub position: RecordPosition,
    /// The state digest it carries.
    pub state_digest: StateDigest,
    /// The history horizon it states.
    pub horizon: CommitId,
}

/// Why a GC step failed.
#[derive(Debug, thiserror::Error)]
enum GcWriteError {
    /// Appending or syncing the GC record failed.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The store refused the GC record.
    #[error("the store refused the GC record: {0}")]
    Apply(String),
}
