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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

    /// A cheap early answer to "could [`DurableSink::plan_gc`] plan a step
    /// at `tip`?" (false only when it certainly would not). A caller that
    /// led a group asks this instead of planning itself, so a GC step never
    /// delays its answer; when true, the commit thread plans and writes the
    /// step. Default: true (always let the thread look).
    fn gc_may_be_due(&mut self, tip: ChainTip) -> bool {
        let _ = tip;
        true
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

/// Requests waiting for the commit thread, and whether it still takes any.
#[derive(Default)]
struct Queue {
    items: VecDeque<Request>,
    closed: bool,
    /// A caller led a group after which a GC step may be due: the commit
    /// thread runs [`GroupCommitCore::gc_step`] (off the caller's path).
    gc_wanted: bool,
}

/// What the committer's callers and its thread share.
struct Shared<S> {
    queue: Mutex<Queue>,
    /// Signalled when the queue goes from empty to non-empty, or closes.
    arrived: Condvar,
    /// The group step. Whoever holds it leads one group: the commit thread,
    /// or a caller of [`GroupCommitter::submit_or_lead`] that found nothing
    /// queued and nobody leading.
    core: Mutex<LeaderState<S>>,
    /// Requests submitted and not yet answered by a completed group step
    /// (queued or in the group being led). A caller leads only when this
    /// was zero: under concurrent load the commit thread gathers groups
    /// and callers never block on an fsync.
    pending: AtomicUsize,
    /// Consecutive groups the commit thread led that held one request:
    /// evidence that commits arrive one at a time. A caller leads only
    /// after [`LEAD_AFTER_SINGLE_GROUPS`] of them; any larger group (load
    /// grew) sends callers back to the queue, so under concurrency no
    /// HTTP worker ever blocks on an fsync.
    single_groups: AtomicUsize,
}

/// Groups of one in a row the commit thread must see before callers lead.
const LEAD_AFTER_SINGLE_GROUPS: usize = 4;

/// The core and whether it was closed (the commit thread ended).
struct LeaderState<S> {
    core: GroupCommitCore<S>,
    closed: bool,
}

/// The type-erased half of [`Shared`] a [`GroupCommitter`] holds.
trait Leader: Send + Sync {
    /// Queues `req`, or leads its group on this thread when nothing is
    /// queued and no group is in flight (then `req` is answered on return).
    fn submit(&self, req: Request, may_lead: bool);
    /// Stops taking requests and wakes the thread.
    fn close(&self);
}

impl<S: DurableSink> Leader for Shared<S> {
    fn submit(&self, req: Request, may_lead: bool) {
        let mut queue = self.queue.lock();
        if queue.closed {
            // Dropping the reply answers ShuttingDown.
            return;
        }
        let idle = self.pending.fetch_add(1, Ordering::AcqRel) == 0;
        let serial = self.single_groups.load(Ordering::Acquire) >= LEAD_AFTER_SINGLE_GROUPS;
        if may_lead && idle && serial && queue.items.is_empty() {
            if let Some(mut leader) = self.core.try_lock() {
                // Holding the core before the queue is released: a close
                // racing with this waits for the group to complete.
                drop(queue);
                let mut gc_wanted = false;
                if !leader.closed {
                    lead_group(&mut leader.core, vec![GroupRequest { ops: req.ops, reply: req.reply }]);
                    gc_wanted = leader.core.gc_may_be_due();
                }
                drop(leader);
                self.pending.fetch_sub(1, Ordering::AcqRel);
                if gc_wanted {
                    self.queue.lock().gc_wanted = true;
                    self.arrived.notify_one();
                }
                return;
            }
        }
        let was_empty = queue.items.is_empty();
        queue.items.push_back(req);
        drop(queue);
        if was_empty {
            self.arrived.notify_one();
        }
    }

    fn close(&self) {
        self.queue.lock().closed = true;
        self.arrived.notify_all();
    }
}

/// Handle to group commit: a commit thread, and callers that may lead a
/// group themselves when the committer is idle. Dropping it stops the
/// thread after the queued requests are handled.
pub struct GroupCommitter {
    leader: Arc<dyn Leader>,
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
        let core = GroupCommitCore::new(writer, sink, durable.clone(), gate);
        let fsyncs = core.fsync_counter();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
            core: Mutex::new(LeaderState { core, closed: false }),
            pending: AtomicUsize::new(0),
            single_groups: AtomicUsize::new(0),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new().name("wal-group-commit".into()).spawn(move || run(&for_thread))?;
        Ok(GroupCommitter { leader: shared, thread: Mutex::new(Some(thread)), durable, fsyncs })
    }

    /// Queues a write set for the commit thread and returns at once. The
    /// CommitId is assigned when it is appended.
    pub fn submit(&self, ops: Vec<Op>) -> CommitTicket {
        let (ticket, reply) = CommitTicket::new();
        self.leader.submit(Request { ops, reply }, false);
        ticket
    }

    /// Like [`GroupCommitter::submit`], but when nothing is queued and no
    /// group is in flight the calling thread leads the group itself:
    /// appends, fsyncs, applies and answers before returning (the ticket is
    /// then ready), saving the hand-off to the commit thread and back. It
    /// therefore may block for one group step (an fsync; a mark wait when
    /// the crash window is full). Otherwise it queues like `submit`. Same
    /// guarantees either way: acknowledged only after fsync and apply
    /// (CORE-1), bounded by the durable mark (CORE-5).
    pub fn submit_or_lead(&self, ops: Vec<Op>) -> CommitTicket {
        let (ticket, reply) = CommitTicket::new();
        self.leader.submit(Request { ops, reply }, true);
        ticket
    }

    /// Submits and waits (leading the group when the committer is idle).
    pub fn commit(&self, ops: Vec<Op>) -> Result<CommitReceipt, CommitError> {
        self.submit_or_lead(ops).wait()
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
        self.leader.close();
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

/// Takes the queued requests that fit in one group (at least one).
fn take_batch(queue: &mut Queue) -> Vec<GroupRequest<AckSender>> {
    let mut bytes = 0;
    let mut batch = Vec::new();
    while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
        let Some(req) = queue.items.pop_front() else { break };
        bytes += ops_bytes(&req.ops);
        batch.push(GroupRequest { ops: req.ops, reply: req.reply });
    }
    batch
}

/// Leads one group: runs the group step on `batch` (waiting for the mark
/// writer whenever the crash window is full), then lets the sink's GC step
/// run. Every request is answered on return.
fn lead<S: DurableSink>(core: &mut GroupCommitCore<S>, batch: Vec<GroupRequest<AckSender>>) {
    lead_group(core, batch);
    core.gc_step();
}

/// The group step of [`lead`] without the GC step.
fn lead_group<S: DurableSink>(core: &mut GroupCommitCore<S>, mut batch: Vec<GroupRequest<AckSender>>) {
    let mut answer = |reply: AckSender, result: Ack| reply.send(result);
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
}

/// The commit thread: gathers whatever is queued into one group and leads
/// it, until the committer closes and the queue is empty; then closes the
/// core (no caller leads after that).
fn run<S: DurableSink>(shared: &Shared<S>) {
    loop {
        let batch = {
            let mut queue = shared.queue.lock();
            while queue.items.is_empty() && !queue.closed && !queue.gc_wanted {
                shared.arrived.wait(&mut queue);
            }
            let gc_only = queue.items.is_empty() && queue.gc_wanted;
            queue.gc_wanted = false;
            if gc_only {
                drop(queue);
                shared.core.lock().core.gc_step();
                continue;
            }
            if queue.items.is_empty() {
                break;
            }
            take_batch(&mut queue)
        };
        let n = batch.len();
        if n == 1 {
            shared.single_groups.fetch_add(1, Ordering::AcqRel);
        } else {
            shared.single_groups.store(0, Ordering::Release);
        }
        lead(&mut shared.core.lock().core, batch);
        shared.pending.fetch_sub(n, Ordering::AcqRel);
    }
    let mut leader = shared.core.lock();
    leader.closed = true;
    leader.core.close();
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

    /// Whether a GC step may be due at the tip ([`DurableSink::gc_may_be_due`]).
    pub fn gc_may_be_due(&mut self) -> bool {
        self.failed.is_none() && self.sink.gc_may_be_due(self.writer.tip())
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

    /// The commit thread is ending: closes the durable watch and tells the
    /// mark gate whether it ended cleanly (a clean mark is written only if
    /// no write failed).
    pub fn close(&mut self) {
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
