//! Group commit: many concurrent committers share one fsync.
//!
//! One thread owns the [`WalWriter`]. It takes every request waiting in its
//! queue, appends them in arrival order (assigning CommitIds), fsyncs once,
//! hands the durable records to the [`DurableSink`] (which applies them to
//! the store so they become visible, MVCC-2), publishes the durable point,
//! and only then answers the committers (CORE-1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

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
    reply: SyncSender<Result<CommitReceipt, CommitError>>,
}

/// A pending commit; [`CommitTicket::wait`] blocks until it is durable.
pub struct CommitTicket {
    rx: Receiver<Result<CommitReceipt, CommitError>>,
}

impl CommitTicket {
    /// Waits for the acknowledgement.
    pub fn wait(self) -> Result<CommitReceipt, CommitError> {
        self.rx.recv().unwrap_or(Err(CommitError::ShuttingDown))
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
        let core = GroupCommitCore::new(writer, sink, durable.clone());
        let fsyncs = core.fsync_counter();
        let thread = std::thread::Builder::new().name("wal-group-commit".into()).spawn(move || run(core, rx))?;
        Ok(GroupCommitter { tx: Some(tx), thread: Some(thread), durable, fsyncs })
    }

    /// Queues a write set. The CommitId is assigned when it is appended.
    pub fn submit(&self, ops: Vec<Op>) -> CommitTicket {
        let (reply, rx) = mpsc::sync_channel(1);
        if let Some(tx) = &self.tx {
            // If the thread is gone the reply sender is dropped and wait() reports shutdown.
            let _ = tx.send(Request { ops, reply });
        }
        CommitTicket { rx }
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

/// Encoded size estimate of a write set, for bounding a batch.
fn ops_bytes(ops: &[Op]) -> usize {
    ops.iter().map(|o| o.collection().len() + o.key().len() + o.doc().map_or(0, <[u8]>::len)).sum()
}

/// The commit thread: gathers whatever is queued into one group and runs
/// the group step on it.
fn run<S: DurableSink>(mut core: GroupCommitCore<S>, rx: Receiver<Request>) {
    while let Ok(first) = rx.recv() {
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
        core.commit_group(batch, &mut |reply: SyncSender<Result<CommitReceipt, CommitError>>, result| {
            let _ = reply.send(result);
        });
    }
    core.durable().close();
}

/// One commit request of a group: a write set and the caller's reply
/// token (a channel in the node, a request id in the simulator).
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
}

/// The synchronous group-commit step, shared by the node's commit thread
/// ([`GroupCommitter`]) and the deterministic simulator, which runs the two
/// halves at different simulated times so a crash can fall between them.
///
/// 1. [`GroupCommitCore::append_group`] appends every request in order,
///    assigning CommitIds (REPL-2); nothing is acknowledged.
/// 2. [`GroupCommitCore::complete_group`] fsyncs once, hands the durable
///    records to the sink (MVCC-2), publishes the durable point and only
///    then acknowledges (CORE-1).
///
/// After any WAL or sink failure the core refuses every later request
/// (`WAL_FAILED`) until the process restarts and recovery decides what is
/// on disk.
pub struct GroupCommitCore<S> {
    writer: WalWriter,
    sink: S,
    durable: Arc<DurableWatch>,
    fsyncs: Arc<AtomicU64>,
    failed: Option<String>,
}

impl<S: DurableSink> GroupCommitCore<S> {
    /// A core owning `writer`, applying through `sink`, publishing to `durable`.
    pub fn new(writer: WalWriter, sink: S, durable: Arc<DurableWatch>) -> Self {
        GroupCommitCore { writer, sink, durable, fsyncs: Arc::new(AtomicU64::new(0)), failed: None }
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

    /// First half of the step: appends each request in order. Requests that
    /// fail here (unencodable, WAL failure) are answered through `answer` at
    /// once; the others wait in the returned group.
    pub fn append_group<R>(&mut self, batch: Vec<GroupRequest<R>>, answer: &mut impl FnMut(R, Result<CommitReceipt, CommitError>)) -> AppendedGroup<R> {
        let mut group = AppendedGroup { records: Vec::with_capacity(batch.len()), replies: Vec::with_capacity(batch.len()) };
        for req in batch {
            if let Some(reason) = &self.failed {
                answer(req.reply, Err(CommitError::WalFailed(reason.clone())));
                continue;
            }
            match self.writer.append(&req.ops) {
                Ok(rec) => {
                    let mut reply = Some(req.reply);
                    if crate::plant::is_active(crate::plant::Plant::AckBeforeFsync) {
                        if let Some(r) = reply.take() {
                            answer(r, Ok(CommitReceipt { position: rec.position }));
                        }
                    }
                    group.records.push(DurableRecord { position: rec.position, state_digest: rec.state_digest, ops: req.ops });
                    group.replies.push(reply);
                }
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
        let AppendedGroup { records, replies } = group;
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
            tracing::error!(%reason, "WAL failure: refusing all further writes (CORE-1)");
            for reply in replies.into_iter().flatten() {
                answer(reply, Err(CommitError::WalFailed(reason.clone())));
            }
            return;
        }
        if let Some(last) = records.last() {
            self.durable.advance(DurablePoint { lsn: last.position.end_lsn, commit_id: last.position.commit_id });
        }
        for (reply, rec) in replies.into_iter().zip(&records) {
            if let Some(reply) = reply {
                answer(reply, Ok(CommitReceipt { position: rec.position }));
            }
        }
    }

    /// The whole step at once (the node's commit thread).
    pub fn commit_group<R>(&mut self, batch: Vec<GroupRequest<R>>, answer: &mut impl FnMut(R, Result<CommitReceipt, CommitError>)) {
        let group = self.append_group(batch, answer);
        self.complete_group(group, answer);
    }
}
