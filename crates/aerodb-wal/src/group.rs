//! Group commit: many concurrent committers share one fsync.
//!
//! One thread owns the [`WalWriter`]. It takes every request waiting in its
//! queue, appends them in arrival order (assigning CommitIds), fsyncs once,
//! hands the durable records to the [`DurableSink`] (which applies them to
//! the store so they become visible, MVCC-2), publishes the durable point,
//! and only then answers the committers (CORE-1).
//!
//! After each group it asks the sink whether a garbage-collection step is
//! due ([`DurableSink::plan_gc`], a pure function of CommitIds, never of
//! time). If so, the same thread — the WAL's single writer — appends a GC
//! record (MVCC-4), fsyncs it and hands it to the sink like any record, so
//! every node applies it at the same position in the log.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use thiserror::Error;

use crate::durable::{DurablePoint, DurableWatch};
use crate::hash::StateDigest;
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
        let watch = durable.clone();
        let fsyncs = Arc::new(AtomicU64::new(0));
        let counter = fsyncs.clone();
        let thread = std::thread::Builder::new().name("wal-group-commit".into()).spawn(move || run(writer, sink, rx, watch, &counter))?;
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
                let _ = req.reply.send(Err(CommitError::WalFailed(reason.clone())));
            }
            continue;
        }
        let mut appended = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch {
            match writer.append(&req.ops) {
                Ok(rec) => {
                    appended.push(DurableRecord { position: rec.position, state_digest: rec.state_digest, body: RecordBody::Commit(req.ops) });
                    replies.push(req.reply);
                }
                Err(AppendError::Encode(e)) => {
                    let _ = req.reply.send(Err(CommitError::Encode(e)));
                }
                Err(AppendError::Log(e)) => {
                    failed = Some(e.to_string());
                    let _ = req.reply.send(Err(CommitError::WalFailed(e.to_string())));
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
                let _ = reply.send(Err(CommitError::WalFailed(reason.clone())));
            }
            continue;
        }
        if let Some(last) = appended.last() {
            durable.advance(DurablePoint { lsn: last.position.end_lsn, commit_id: last.position.commit_id });
        }
        for (reply, rec) in replies.into_iter().zip(&appended) {
            let _ = reply.send(Ok(CommitReceipt { position: rec.position }));
        }
        if let Some(plan) = sink.plan_gc(writer.tip()) {
            if let Err(reason) = write_gc(&mut writer, &mut sink, &durable, fsyncs, plan) {
                tracing::error!(%reason, "WAL failure while writing a GC record: refusing all further writes (CORE-1)");
                failed = Some(reason);
            }
        }
    }
    durable.close();
}

/// Appends, fsyncs and applies one GC record, then publishes it as durable.
/// A crash anywhere in here leaves either no GC record or a whole one that
/// recovery replays through the same apply function (F-G2).
fn write_gc(writer: &mut WalWriter, sink: &mut impl DurableSink, durable: &DurableWatch, fsyncs: &AtomicU64, plan: GcPlan) -> Result<(), String> {
    let rec = writer.append_gc(plan.horizon, plan.state_digest).map_err(|e| e.to_string())?;
    crate::crash_point!("gc.before_fsync");
    writer.sync().map_err(|e| e.to_string())?;
    fsyncs.fetch_add(1, Ordering::Relaxed);
    crate::crash_point!("gc.before_apply");
    let record = DurableRecord { position: rec.position, state_digest: rec.state_digest, body: RecordBody::Gc { horizon: plan.horizon } };
    sink.on_durable(std::slice::from_ref(&record))?;
    tracing::debug!(commit_id = rec.position.commit_id, horizon = plan.horizon, "GC record applied (MVCC-4)");
    durable.advance(DurablePoint { lsn: rec.position.end_lsn, commit_id: rec.position.commit_id });
    Ok(())
}
