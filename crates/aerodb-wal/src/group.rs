//! Group commit: many concurrent committers share one fsync.
//!
//! One thread owns the [`WalWriter`]. It takes every request waiting in its
//! queue, appends them in arrival order (assigning CommitIds), fsyncs once,
//! hands the durable records to the [`DurableSink`] (which applies them to
//! the store so they become visible, MVCC-2), publishes the durable point,
//! and only then answers the committers (CORE-1).
//!
//! A committer's [`CommitTicket`] can be waited on by blocking
//! ([`CommitTicket::wait`]) or awaited as a `Future` by any async runtime:
//! the acknowledgement slot wakes either kind of waiter, so an async server
//! never parks a thread per pending commit. The crate stays runtime-agnostic.

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
use crate::record::{Op, RecordEncodeError, RecordPosition};
use crate::writer::{AppendError, WalWriter};

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
    /// Its write set.
    pub ops: Vec<Op>,
}

/// Receives each fsynced group, in order, before committers are answered.
pub trait DurableSink: Send + 'static {
    /// Makes `records` visible. An error here means the store no longer
    /// matches the WAL: the committer stops accepting writes.
    fn on_durable(&mut self, records: &[DurableRecord]) -> Result<(), String>;
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
    tx: Option<SyncSender<Request>>,
    thread: Option<JoinHandle<()>>,
    durable: Arc<DurableWatch>,
    fsyncs: Arc<AtomicU64>,
}

impl GroupCommitter {
    /// Starts the commit thread owning `writer`.
    pub fn start(writer: WalWriter, sink: impl DurableSink, durable: Arc<DurableWatch>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Request>(MAX_BATCH_RECORDS);
        let watch = durable.clone();
        let fsyncs = Arc::new(AtomicU64::new(0));
        let counter = fsyncs.clone();
        let thread = std::thread::Builder::new().name("wal-group-commit".into()).spawn(move || run(writer, sink, rx, watch, &counter))?;
        Ok(GroupCommitter { tx: Some(tx), thread: Some(thread), durable, fsyncs })
    }

    /// Queues a write set. The CommitId is assigned when it is appended.
    pub fn submit(&self, ops: Vec<Op>) -> CommitTicket {
        let (ticket, reply) = CommitTicket::new();
        if let Some(tx) = &self.tx {
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
}

impl Drop for GroupCommitter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut writer: WalWriter, mut sink: impl DurableSink, rx: Receiver<Request>, durable: Arc<DurableWatch>, fsyncs: &AtomicU64) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut bytes: usize = batch[0].ops.iter().map(|o| o.collection().len() + o.key().len() + o.doc().map_or(0, <[u8]>::len)).sum();
        while batch.len() < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(req) => {
                    bytes += req.ops.iter().map(|o| o.collection().len() + o.key().len() + o.doc().map_or(0, <[u8]>::len)).sum::<usize>();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        if let Some(reason) = &failed {
            for req in batch {
                req.reply.send(Err(CommitError::WalFailed(reason.clone())));
            }
            continue;
        }
        let mut appended = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch {
            match writer.append(&req.ops) {
                Ok(rec) => {
                    appended.push(DurableRecord { position: rec.position, state_digest: rec.state_digest, ops: req.ops });
                    replies.push(req.reply);
                }
                Err(AppendError::Encode(e)) => {
                    req.reply.send(Err(CommitError::Encode(e)));
                }
                Err(AppendError::Log(e)) => {
                    failed = Some(e.to_string());
                    req.reply.send(Err(CommitError::WalFailed(e.to_string())));
                }
            }
        }
        if failed.is_none() && !appended.is_empty() {
            match writer.sync() {
                Ok(_) => {
                    fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failed = Some(e.to_string()),
            }
        }
        if failed.is_none() && !appended.is_empty() {
            if let Err(e) = sink.on_durable(&appended) {
                failed = Some(e);
            }
        }
        if let Some(reason) = &failed {
            tracing::error!(%reason, "WAL failure: refusing all further writes (CORE-1)");
            for reply in replies {
                reply.send(Err(CommitError::WalFailed(reason.clone())));
            }
            continue;
        }
        if let Some(last) = appended.last() {
            durable.advance(DurablePoint { lsn: last.position.end_lsn, commit_id: last.position.commit_id });
        }
        for (reply, rec) in replies.into_iter().zip(&appended) {
            reply.send(Ok(CommitReceipt { position: rec.position }));
        }
    }
    durable.close();
}
