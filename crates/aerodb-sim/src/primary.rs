//! The primary-side harness: a primary node made of production code only,
//! over a [`SimDisk`].
//!
//! - Start: initialise the data directory as `aerodb`'s `node.rs` does
//!   (WAL genesis segment, the first durable mark, then the identity
//!   file); choose the tail rule from the mark on disk as
//!   `aerodb`'s `durability.rs` does ([`TailRule::Mark`], CORE-5); read the
//!   fence (REPL-11); [`aerodb_snapshot::recover_primary_with`] (newest
//!   valid snapshot + WAL replay, judged against the mark); write the
//!   running mark at the recovered end before accepting a write.
//! - Commits: [`GroupCommitCore`] (the group step the node's commit thread
//!   runs) with the production [`StoreSink`] (which plans GC records from a
//!   small [`GcPolicy`]) and a [`MarkGate`]. The two halves run at
//!   different simulated times: append when a group starts; fsync, apply,
//!   publish and acknowledge when the simulated fsync completes, so a slow
//!   fsync and a crash before it completes are real. Requests beyond the
//!   crash window come back from `append_group` (`take_blocked`): the group
//!   completes, the mark step runs, and they are appended next, as the
//!   commit thread's loop does. After a batch, `gc_step` writes a GC record
//!   when the policy says so.
//! - The mark writer: [`MarkGate::due`] and [`write_due_mark`] (the steps
//!   the writer thread runs), on a timer and after each group.
//! - Snapshots: [`aerodb_snapshot::create_snapshot_with`] and the
//!   scheduler's retention pass [`aerodb_snapshot::retire_with_holds`]
//!   (`--wal-retention`, a per-seed `--wal-keep-bytes`, the replica
//!   registry's holds: RES-2).
//! - Replication: [`crate::serve::ReplicationPort`] serves each replica
//!   connection with the production `PrimarySession` (commit times in
//!   PROGRESS, token authentication on some seeds), and the replica
//!   registry ([`crate::registry::SimRegistry`], `replicas.json`) records
//!   them.
//!
//! Invariants (after every event, against [`Model`]): no acknowledged
//! write lost after a start the durable-mark check accepted (a start it
//! refused is an allowed outcome, counted; only records beyond the mark
//! whose bytes an injected fault damaged may be lost); CommitIds never
//! reused; the recovered state's digest, horizon and fingerprint equal the
//! model's at the recovered CommitId; reads at random R equal the model; a
//! WAL, mark or snapshot failure happens only when a fault was injected; a
//! fence only when durable history was really lost.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_mvcc::input::validate_write_set;
use aerodb_mvcc::{ClientOp, GcPolicy, Store, StoreSink, WriteLimits};
use aerodb_repl_core::auth::ReplToken;
use aerodb_repl_core::commit_times::CommitTimes;
use aerodb_repl_core::engine::primary::SessionConfig;
use aerodb_repl_core::fence::{read_fence, FenceLatch};
use aerodb_repl_core::ids::ClusterId;
use aerodb_repl_core::primary_io::PrimaryWal;
use aerodb_snapshot::{
    create_snapshot_with, newest_usable, recover_primary_with, retire_with_holds, PrimaryRecoveryReport, SnapshotOptions, SnapshotPolicy,
    DEFAULT_WAL_KEEP_BYTES,
};
use aerodb_wal::checksummed::{read_checksummed, write_checksummed};
use aerodb_wal::disk::Disk;
use aerodb_wal::durable::{DurablePoint, DurableWatch};
use aerodb_wal::group::{AppendedGroup, CommitError, CommitReceipt, GroupCommitCore, GroupRequest};
use aerodb_wal::log::{Preallocation, SegmentAppender};
use aerodb_wal::mark::{read_mark, write_mark, DurableMark};
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::mark_writer::{write_due_mark, MarkGate, MarkPolicy};
use aerodb_wal::segment::{parse_segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, CommitId};
use serde::{Deserialize, Serialize};

use crate::disk::SimDisk;
use crate::model::Model;
use crate::net::{NetEvent, NodeId};
use crate::plan::node_root;
use crate::registry::{SimRegistry, WALL_EPOCH_MS};
use crate::rng::{stream, SimRng};
use crate::serve::{PortContext, ReplicationPort, SESSION_TIMER};
use crate::world::{start_failed, ClientOutcome, Io, RequestId, SimNode, StartOutcome};

const TIMER_GROUP: u64 = 1;
const TIMER_SNAPSHOT: u64 = 2;
const TIMER_MARK: u64 = 3;
/// Most requests in one group (the node's bound is larger; groups here are small anyway).
const MAX_GROUP: usize = 256;

/// Tunables of the harness, drawn per seed.
#[derive(Clone, Debug, Serialize)]
pub struct PrimaryConfig {
    /// WAL segment size target (small, so segments roll often).
    pub segment_target_bytes: u64,
    /// Mean time between snapshots (0 = never).
    pub snapshot_every_ms: u64,
    /// Snapshot data file size target.
    pub snapshot_file_bytes: u64,
    /// `--wal-retention after-oldest-snapshot` (else `all`).
    pub wal_retention: bool,
    /// `--wal-keep-bytes`: WAL kept for replicas behind the durable end
    /// beyond what snapshots need (RES-2); small on some seeds, so
    /// retention removes WAL even with `--wal-retention all`.
    pub wal_keep_bytes: u64,
    /// Whether the replication port requires a token (`--repl-token-file`
    /// on the primary and every replica).
    pub repl_token: bool,
    /// When durable marks are written (CORE-5); small, so the crash
    /// window fills and writers wait for the mark often.
    pub mark: MarkPolicy,
    /// History retention (`--history-retain-commits`), small so GC records
    /// are frequent (MVCC-4).
    pub gc_retain_commits: u64,
    /// Zeros the WAL writer preallocates ahead of its records at a time
    /// (0 = none; the node uses `WAL_PREALLOCATION_CHUNK`): small, so
    /// crashes leave torn records inside preallocated zeros and recovery
    /// must tell the two apart.
    pub wal_preallocation: u64,
    /// Replication session pacing (small chunks and pieces, so frames are
    /// many and transfers interleave with faults).
    #[serde(skip)]
    pub session: SessionConfig,
}

impl PrimaryConfig {
    /// Draws the configuration for `seed`.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = SimRng::new(seed, stream::OPTIONS);
        let segment_target_bytes = *rng.pick(&[4_096, 16_384, 65_536]).unwrap_or(&16_384);
        let snapshot_every_ms = *rng.pick(&[0, 1_000, 3_000, 8_000]).unwrap_or(&0);
        let snapshot_file_bytes = *rng.pick(&[2_048, 65_536, 1 << 20]).unwrap_or(&4_096);
        let wal_retention = rng.ratio(1, 2);
        let mark = MarkPolicy { every_ms: *rng.pick(&[20, 100]).unwrap_or(&100), every_bytes: *rng.pick(&[1_024, 8_192, 65_536]).unwrap_or(&8_192) };
        let gc_retain_commits = *rng.pick(&[6, 30, 120]).unwrap_or(&30);
        let session = SessionConfig {
            hello_timeout_ms: 2_000,
            heartbeat_ms: 500,
            max_chunk_bytes: *rng.pick(&[4_096, 16_384, 65_536]).unwrap_or(&16_384),
            snapshot_piece_bytes: *rng.pick(&[300, 4_096, 65_536]).unwrap_or(&4_096),
            client_addr: Some(std::net::SocketAddr::from(([10, 0, 0, 0], 8080))),
        };
        let d = DEFAULT_WAL_KEEP_BYTES;
        let wal_keep_bytes = *rng.pick(&[8_192, 65_536, d, d, d, d]).unwrap_or(&d);
        let repl_token = rng.ratio(1, 3);
        // Drawn last, so every earlier option keeps its value per seed.
        let wal_preallocation = *rng.pick(&[0, 512, 4_096]).unwrap_or(&0);
        PrimaryConfig {
            wal_preallocation,
            segment_target_bytes,
            snapshot_every_ms,
            snapshot_file_bytes,
            wal_retention,
            wal_keep_bytes,
            repl_token,
            mark,
            gc_retain_commits,
            session,
        }
    }

    /// Whether retention may ever remove WAL (after a snapshot): with
    /// `--wal-retention all` and the default `--wal-keep-bytes` it never
    /// does in a seed's lifetime.
    pub fn retires_wal(&self) -> bool {
        self.wal_retention || self.wal_keep_bytes < DEFAULT_WAL_KEEP_BYTES
    }

    /// The retention policy (`keep` 1: the newest snapshot).
    fn snapshot_policy(&self) -> SnapshotPolicy {
        SnapshotPolicy::new(1, self.wal_retention).with_wal_keep_bytes(self.wal_keep_bytes)
    }

    /// The replication token every node of the seed uses, if any.
    pub fn token(&self) -> Option<ReplToken> {
        self.repl_token.then(|| ReplToken::parse(SIM_TOKEN).ok()).flatten()
    }
}

/// The token of seeds whose replication port requires one.
const SIM_TOKEN: &[u8] = b"aerodb-sim-replication-token-0123456789abcdef";

/// Identity file body, the same JSON as `aerodb`'s `datadir::Identity`.
#[derive(Serialize, Deserialize)]
struct Identity {
    format_version: u32,
    role: String,
    cluster_id: String,
    #[serde(default)]
    durable_mark: bool,
}

struct Running {
    store: Arc<Store>,
    core: GroupCommitCore<StoreSink>,
    gate: Arc<MarkGate>,
    marked_at_ms: u64,
    cluster_id: String,
    wal: PrimaryWal,
    fence: FenceLatch,
    port: ReplicationPort,
    registry: SimRegistry,
    commit_times: Arc<CommitTimes>,
    token: Option<ReplToken>,
    queue: VecDeque<GroupRequest<RequestId>>,
    /// Group waiting for its fsync: token, group, injected errors at its start.
    in_flight: Option<(u64, AppendedGroup<RequestId>, u64)>,
    /// Requests of the group in flight that did not fit in the crash window.
    blocked: Vec<GroupRequest<RequestId>>,
    group_timer: bool,
    next_token: u64,
    pending: BTreeSet<RequestId>,
    rejected: BTreeSet<CommitId>,
    failed: bool,
}

/// A primary node driven by the simulator.
pub struct PrimaryNode {
    root: PathBuf,
    config: PrimaryConfig,
    model: Model,
    running: Option<Running>,
    checks: u64,
    /// Whether the primary was ever fenced (REPL-11).
    fenced: bool,
}

type Answers = Vec<(RequestId, Result<CommitReceipt, CommitError>)>;

impl PrimaryNode {
    /// A primary whose data directory is node `id`'s root.
    pub fn new(id: NodeId, config: PrimaryConfig) -> Self {
        PrimaryNode { root: node_root(id), config, model: Model::default(), running: None, checks: 0, fenced: false }
    }

    fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// The model of what was written and acknowledged.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The harness configuration.
    pub fn config(&self) -> &PrimaryConfig {
        &self.config
    }

    /// The running store, if the process is up.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.running.as_ref().map(|r| &r.store)
    }

    /// The running WAL's segment list (for readers and prefix checks).
    pub fn segments(&self) -> Option<&aerodb_wal::log::SegmentList> {
        self.running.as_ref().map(|r| r.core.writer().segments())
    }

    /// The durable point published by the group committer.
    pub fn durable(&self) -> Option<DurablePoint> {
        self.running.as_ref().map(|r| r.core.durable().current())
    }

    /// Whether the primary is fenced now or ever was (REPL-11).
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// The WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.wal()
    }

    fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }
    fn identity(&self) -> PathBuf {
        self.root.join("identity.json")
    }

    /// Mirrors `aerodb`'s `node::initialise`: WAL genesis segment, then the
    /// durable mark, identity last, so a crash in between simply
    /// initialises again.
    fn initialise(&self, disk: &Arc<dyn Disk>, rng: &mut SimRng) -> std::io::Result<()> {
        let wal = self.wal();
        if disk.exists(&wal) {
            disk.remove_dir_all(&wal)?;
        }
        disk.create_dir_all(&wal)?;
        disk.sync_dir(&self.root)?;
        SegmentAppender::create(disk.clone(), &wal, ChainTip::GENESIS.segment_header()).map_err(|e| std::io::Error::other(e.to_string()))?;
        write_mark(&**disk, &wal, &DurableMark::at(ChainTip::GENESIS, false, self.config.mark.window_bytes()))?;
        let cluster_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        write_checksummed(&**disk, &self.identity(), &Identity { format_version: 1, role: "primary".into(), cluster_id, durable_mark: true })
    }

    /// The tail rule recovery judges the WAL's end under, chosen from the
    /// mark on disk (`aerodb`'s `durability::choose_tail_rule`): this
    /// directory keeps a mark, so a missing or unreadable one refuses.
    fn choose_tail_rule(&self, disk: &dyn Disk) -> Result<TailRule, (&'static str, String)> {
        match read_mark(disk, &self.wal()) {
            Ok(Some(mark)) => Ok(TailRule::Mark { mark }),
            Ok(None) => Err(("MARK_MISSING", "the durable high-water mark is missing although this directory keeps one".into())),
            Err(e) => Err((e.code(), e.to_string())),
        }
    }

    /// Checks a successful recovery against the model and aligns the model.
    fn check_recovery(&mut self, io: &mut Io<'_>, disk: &SimDisk, report: &PrimaryRecoveryReport, store: &Store, mark: Option<DurableMark>) {
        let applied = store.applied();
        let c = applied.commit_id;
        io.trace().entry("recovered").u64(c).u128(applied.state_digest.0).u128(applied.fingerprint.0);
        io.count("recoveries");
        if report.store.wal.torn_tail.is_some() {
            io.count("torn_tails_truncated");
        }
        if report.snapshot_used.is_some() {
            io.count("recoveries_from_snapshot");
        }
        if !report.rejected_snapshots.is_empty() {
            io.count("recoveries_rejecting_a_snapshot");
        }
        let lost = self.model.acked_above(c);
        if !lost.is_empty() {
            // CORE-5: the start was accepted, so only acknowledged records
            // beyond the mark may be gone, and only when an injected fault
            // damaged the bytes recovery dropped (within the crash window a
            // latent error looks exactly like a torn write).
            let beyond_mark = mark.is_some_and(|m| lost.iter().all(|l| *l > m.commit_id));
            if beyond_mark && self.loss_explained_by_damage(disk, report) {
                io.trace().entry("excused_loss").u64(lost.len() as u64);
                io.count("acked_lost_beyond_mark_to_damage");
                self.model.excuse_losses_above(c);
            } else {
                io.violation(
                    "CORE-5",
                    format!(
                        "acknowledged commits {:?} lost after a start the durable-mark check accepted: recovery ended at CommitId {c} (mark {:?}, torn tail {:?}, snapshot {:?})",
                        lost,
                        mark.map(|m| (m.commit_id, m.end_lsn)),
                        report.store.wal.torn_tail,
                        report.snapshot_used.as_ref().map(|s| s.commit_id)
                    ),
                );
                return;
            }
        }
        match self.model.record(c) {
            _ if c == 0 => {}
            Some(w) if w.position.fingerprint == applied.fingerprint && w.position.end_lsn == applied.end_lsn => {}
            Some(w) => {
                io.violation(
                    "REPL-4",
                    format!(
                        "recovered CommitId {c} ends at LSN {} fingerprint {}, but it was written at {:?}",
                        applied.end_lsn, applied.fingerprint, w.position
                    ),
                );
                return;
            }
            None => {
                io.violation("REPL-2", format!("recovered CommitId {c}, but only {} commits were ever written", self.model.written()));
                return;
            }
        }
        if self.model.digest(c) != Some(applied.state_digest) {
            io.violation(
                "REPL-4",
                format!("recovered digest {} at CommitId {c}, the acknowledged prefix's digest is {:?}", applied.state_digest, self.model.digest(c)),
            );
            return;
        }
        if self.model.horizon(c) != Some(store.history_horizon()) {
            io.violation(
                "MVCC-4",
                format!("recovered history horizon {} at CommitId {c}, the model's is {:?}", store.history_horizon(), self.model.horizon(c)),
            );
            return;
        }
        self.model.truncate(c);
    }

    /// Whether injected damage hit the record at which recovery cut the WAL.
    fn loss_explained_by_damage(&self, disk: &SimDisk, report: &PrimaryRecoveryReport) -> bool {
        let Some(t) = &report.store.wal.torn_tail else {
            return false;
        };
        let Some(seg_start) = parse_segment_file_name(&t.segment) else { return false };
        let off = SEGMENT_HEADER_LEN + (t.lsn - seg_start);
        let end = self.model.record_at_lsn(t.lsn).map_or(u64::MAX, |w| off + (w.position.end_lsn - w.position.lsn));
        disk.damage_at(&self.wal().join(&t.segment)).iter().any(|d| d.start < end && d.end > off)
    }

    fn answer(&mut self, io: &mut Io<'_>, answers: Answers) {
        for (request, result) in answers {
            if let Some(r) = self.running.as_mut() {
                r.pending.remove(&request);
            }
            match result {
                Ok(receipt) => {
                    let p = receipt.position;
                    io.trace().entry("acked").u64(p.commit_id).u128(p.fingerprint.0);
                    if let Err((rule, what)) = self.model.on_ack(p) {
                        io.violation(rule, what);
                    }
                    io.reply(request, ClientOutcome::Acked(p.commit_id));
                }
                Err(e) => io.reply(request, ClientOutcome::Failed(e.code())),
            }
        }
    }

    fn arm_group(io: &mut Io<'_>, r: &mut Running, delay: u64) {
        if !r.queue.is_empty() && !r.group_timer && r.in_flight.is_none() {
            r.group_timer = true;
            io.arm_timer(delay, TIMER_GROUP);
        }
    }

    fn start_group(&mut self, io: &mut Io<'_>) {
        let errors = io.disk().injected_errors();
        let Some(r) = self.running.as_mut() else { return };
        r.group_timer = false;
        if r.in_flight.is_some() || r.queue.is_empty() {
            return;
        }
        let n = r.queue.len().min(MAX_GROUP);
        let batch: Vec<GroupRequest<RequestId>> = r.queue.drain(..n).collect();
        let mut answers = Vec::new();
        let was_failed = r.core.failure().is_some();
        let mut group = r.core.append_group(batch, &mut |req, res| answers.push((req, res)));
        let blocked = group.take_blocked();
        let newly_failed = !was_failed && r.core.failure().is_some();
        let failure = r.core.failure().map(str::to_string);
        let mut mismatch = None;
        for rec in group.records() {
            io.trace().entry("appended").u64(rec.position.commit_id).u64(rec.position.lsn).u128(rec.position.fingerprint.0);
            let aerodb_wal::RecordBody::Commit(ops) = &rec.body else { continue };
            if let Err(m) = self.model.on_append(rec.position, rec.state_digest, ops) {
                mismatch = Some(m);
                break;
            }
        }
        if let Some((rule, what)) = mismatch {
            io.violation(rule, what);
        }
        self.answer(io, answers);
        if newly_failed {
            self.wal_failed(io, errors, failure.unwrap_or_default());
        }
        if !blocked.is_empty() {
            io.count("crash_window_full");
        }
        if group.is_empty() {
            // Nothing fitted: the window is full of durable, unmarked
            // bytes. The mark step runs now; the blocked requests go next.
            self.after_blocked(io, blocked);
            return;
        }
        let Some(r) = self.running.as_mut() else { return };
        r.blocked = blocked;
        let token = r.next_token;
        r.next_token += 1;
        r.in_flight = Some((token, group, errors));
        let latency = io.fsync_latency();
        io.disk_done_after(latency, token);
    }

    /// Requests came back beyond the crash window: the mark step runs with
    /// the committer waiting (the commit thread's `wait_for_mark`), then
    /// they are appended as the next group, ahead of newer requests.
    fn after_blocked(&mut self, io: &mut Io<'_>, blocked: Vec<GroupRequest<RequestId>>) {
        if blocked.is_empty() {
            return;
        }
        self.mark_step(io, true);
        let Some(r) = self.running.as_mut() else { return };
        let tip = r.core.writer().tip();
        let status = r.gate.status();
        if status.failed || status.marked.is_some_and(|m| m.end_lsn >= tip.end_lsn) || r.core.failure().is_some() {
            // Returns at once: the mark covers the tip, or marks failed (writes stop).
            r.core.wait_for_mark();
        } else {
            io.violation("CORE-5", format!("the committer waits for a mark covering LSN {} but the mark writer wrote none ({status:?})", tip.end_lsn));
        }
        for req in blocked.into_iter().rev() {
            r.queue.push_front(req);
        }
        Self::arm_group(io, r, 0);
    }

    fn complete_group(&mut self, io: &mut Io<'_>, token: u64) {
        let Some(r) = self.running.as_mut() else { return };
        let Some((t, group, errors)) = r.in_flight.take() else { return };
        if t != token {
            r.in_flight = Some((t, group, errors));
            return;
        }
        let was_failed = r.core.failure().is_some();
        let mut answers = Vec::new();
        r.core.complete_group(group, &mut |req, res| answers.push((req, res)));
        let blocked = std::mem::take(&mut r.blocked);
        let newly_failed = !was_failed && r.core.failure().is_some();
        let failure = r.core.failure().map(str::to_string);
        self.answer(io, answers);
        if newly_failed {
            self.wal_failed(io, errors, failure.unwrap_or_default());
        }
        if blocked.is_empty() {
            self.gc_step(io);
            self.mark_step(io, false);
        } else {
            self.after_blocked(io, blocked);
        }
        self.notify_sessions(io);
        if let Some(r) = self.running.as_mut() {
            let delay = io.rng().range(0, 2);
            Self::arm_group(io, r, delay);
        }
    }

    /// The commit thread's GC step after a batch (MVCC-4).
    fn gc_step(&mut self, io: &mut Io<'_>) {
        let errors = io.disk().injected_errors();
        let Some(r) = self.running.as_mut() else { return };
        let was_failed = r.core.failure().is_some();
        let appended = r.core.gc_step();
        let newly_failed = !was_failed && r.core.failure().is_some();
        let failure = r.core.failure().map(str::to_string);
        if let Some(gc) = appended {
            io.trace().entry("gc_appended").u64(gc.position.commit_id).u64(gc.horizon).u128(gc.state_digest.0);
            io.count("gc_records");
            if let Err((rule, what)) = self.model.on_gc(gc.position, gc.state_digest, gc.horizon) {
                io.violation(rule, what);
            }
        }
        if newly_failed {
            self.wal_failed(io, errors, failure.unwrap_or_default());
        }
    }

    /// One step of the durable-mark writer (the writer thread's decision
    /// and write). `backpressure`: the committer is waiting for it.
    fn mark_step(&mut self, io: &mut Io<'_>, backpressure: bool) {
        let disk = io.disk().clone();
        let wal = self.wal();
        let policy = self.config.mark;
        let now = io.now().ms();
        let Some(r) = self.running.as_mut() else { return };
        let Some(tip) = r.gate.due(&policy, r.marked_at_ms, now, backpressure) else { return };
        let errors = disk.injected_errors();
        match write_due_mark(&disk, &wal, &r.gate, tip) {
            Ok(()) => {
                r.marked_at_ms = now;
                io.trace().entry("marked").u64(tip.commit_id).u64(tip.end_lsn);
                io.count("marks_written");
            }
            Err(e) => {
                io.trace().entry("mark_failed").str(&e.to_string());
                io.count("mark_failures");
                if disk.injected_errors() == errors && !disk.is_dead() {
                    io.violation("CORE-5", format!("writing the durable mark failed with no injected fault: {e}"));
                }
                // The committer learns at its next wait; writes stop then.
                r.failed = true;
            }
        }
    }

    /// Writes stopped (CORE-1). Only an injected fault may cause that.
    fn wal_failed(&mut self, io: &mut Io<'_>, errors_before: u64, reason: String) {
        io.trace().entry("wal_failed").str(&reason);
        io.count("wal_failures");
        let disk = io.disk().clone();
        if disk.injected_errors() == errors_before && !disk.is_dead() {
            io.violation("CORE-1", format!("the WAL failed with no injected fault: {reason}"));
        }
        if let Some(r) = self.running.as_mut() {
            r.failed = true;
        }
    }

    fn snapshot(&mut self, io: &mut Io<'_>) {
        let disk = io.disk().clone();
        let shared = disk.shared();
        let (snapshots, config) = (self.snapshots(), self.config.clone());
        let Some(r) = self.running.as_mut() else { return };
        let before = disk.injected_errors();
        let options = SnapshotOptions { file_target_bytes: config.snapshot_file_bytes, batch_keys: 8, fsync_in_background: false };
        let created = create_snapshot_with(&*shared, &snapshots, &r.store, &r.cluster_id, &options, None);
        let outcome = match created {
            Ok(info) => {
                io.trace().entry("snapshot").u64(info.commit_id).u128(info.state_digest.0);
                io.count("snapshots");
                let policy = config.snapshot_policy();
                let outcome = retire_with_holds(&*shared, &snapshots, r.core.writer().segments(), &policy, &r.rejected, Some(&r.registry));
                if !outcome.segments_removed.is_empty() {
                    io.count("retention_passes_removing_wal");
                }
                outcome.result.map_err(|e| (e.code(), e.to_string()))
            }
            Err(e) => Err((e.code(), e.to_string())),
        };
        if let Err((code, what)) = outcome {
            io.trace().entry("snapshot_failed").str(code);
            // A damaged snapshot (bit flip, zeroed block) legitimately fails
            // retention's manifest read; anything else needs an injected error.
            if disk.injected_errors() == before && !disk.is_dead() && !disk.ever_damaged() {
                io.violation("REPL-9", format!("snapshot or retention failed with no injected fault: {code}: {what}"));
            }
        }
        let every = self.config.snapshot_every_ms;
        let next = io.rng().range(every / 2, every * 3 / 2);
        io.arm_timer(next, TIMER_SNAPSHOT);
    }

    /// Runs `f` on the replication port with its context: the WAL, the
    /// disk, the snapshot source (the scheduler's choice: the newest usable
    /// snapshot, else a new one followed by retention) and the fence.
    fn with_port(&mut self, io: &mut Io<'_>, f: impl FnOnce(&mut ReplicationPort, &mut Io<'_>, &mut PortContext<'_>)) {
        let disk = io.disk().clone();
        let (snapshots, config) = (self.snapshots(), self.config.clone());
        let Some(r) = self.running.as_mut() else { return };
        let Running { store, core, cluster_id, wal, fence, port, rejected, registry, commit_times, token, .. } = r;
        let mut created = 0u64;
        let mut snapshot_dir = || -> Result<PathBuf, String> {
            if let Some(info) = newest_usable(&disk, &snapshots, rejected).map_err(|e| e.to_string())? {
                return Ok(info.path);
            }
            let options = SnapshotOptions { file_target_bytes: config.snapshot_file_bytes, batch_keys: 8, fsync_in_background: false };
            let info = create_snapshot_with(&disk, &snapshots, store, cluster_id, &options, None).map_err(|e| e.to_string())?;
            created += 1;
            Ok(info.path)
        };
        let mut ctx = PortContext { wal, disk: &disk, snapshot_dir: &mut snapshot_dir, fence, registry, commit_times, token: token.as_ref() };
        f(port, io, &mut ctx);
        let fences = port.take_fences();
        // The scheduler's retention pass after the snapshot it created (its
        // own thread in production, so after this step here).
        if created > 0 {
            io.count("snapshots_for_bootstrap");
            let outcome = retire_with_holds(&disk, &snapshots, core.writer().segments(), &config.snapshot_policy(), rejected, Some(&*registry));
            if !outcome.segments_removed.is_empty() {
                io.count("retention_passes_removing_wal");
            }
        }
        registry.flush(&disk, &self.root, io.now().ms());
        for fence in fences {
            io.trace().entry("fenced").str(&fence.code);
            io.count("primary_fenced");
            self.fenced = true;
            // A replica holds only bytes shipped from below the durable LSN:
            // it can prove lost history only if durable history was lost.
            if self.model.rewritten_from().is_none() {
                io.violation("REPL-11", format!("fenced ({}) although no durable history was lost: {}", fence.code, fence.detail));
            }
        }
    }

    fn notify_sessions(&mut self, io: &mut Io<'_>) {
        if let Some(r) = self.running.as_ref() {
            // The production port's durable-watch subscriber: commit times for PROGRESS.
            r.commit_times.record(r.core.durable().current().commit_id, WALL_EPOCH_MS + io.now().ms());
        }
        if self.running.as_ref().is_some_and(|r| r.port.open_sessions() > 0) {
            self.with_port(io, |port, io, ctx| port.durable(io, ctx));
        }
    }

    fn check_reads(&mut self, io: &mut Io<'_>) {
        let Some(r) = self.running.as_ref() else { return };
        let applied = r.store.applied();
        let c = applied.commit_id;
        if c < self.model.max_acked() {
            io.violation("CORE-1", format!("the store is applied to {c} but {} was acknowledged", self.model.max_acked()));
            return;
        }
        if self.model.digest(c) != Some(applied.state_digest) {
            io.violation("REPL-4", format!("store digest {} at CommitId {c}, the model's is {:?}", applied.state_digest, self.model.digest(c)));
            return;
        }
        if r.in_flight.is_none() && r.core.durable().current() != (DurablePoint { lsn: applied.end_lsn, commit_id: c }) {
            io.violation("MVCC-2", format!("durable point {:?} differs from the applied state {c}@{}", r.core.durable().current(), applied.end_lsn));
            return;
        }
        let count = self.model.key_count();
        if count == 0 {
            return;
        }
        let horizon = r.store.history_horizon();
        let at = io.rng().range(horizon, c);
        let Ok(view) = r.store.read_view(Some(at)) else {
            io.violation("MVCC-1", format!("no read view at {at} although {c} is applied and the horizon is {horizon}"));
            return;
        };
        if self.checks.is_multiple_of(64) {
            // Every key at once, against the oracle.
            for ((coll, key), _) in self.model.chains() {
                let got = view.get(coll, key).map(|v| (v.commit_id, v.doc));
                let want = self.model.visible(coll, key, at, r.store.history_horizon());
                if got != want {
                    io.violation("MVCC-1", format!("read of {coll:?}/{key:?} at R={at}: store says {got:?}, model says {want:?}"));
                    return;
                }
            }
            return;
        }
        let i = io.rng().below(count as u64) as usize;
        if let Some((coll, key)) = self.model.key_at(i) {
            let got = view.get(coll, key).map(|v| (v.commit_id, v.doc));
            let want = self.model.visible(coll, key, at, r.store.history_horizon());
            if got != want {
                io.violation("MVCC-1", format!("read of {coll:?}/{key:?} at R={at}: store says {got:?}, model says {want:?}"));
            }
        }
    }
}

impl SimNode for PrimaryNode {
    fn start(&mut self, io: &mut Io<'_>) -> StartOutcome {
        let disk = io.disk().clone();
        let shared = disk.shared();
        let before = disk.injected_errors();
        if !shared.exists(&self.identity()) {
            let mut rng = io.rng().clone();
            let _ = io.rng().next_u64();
            if let Err(e) = self.initialise(&shared, &mut rng) {
                return start_failed(io, before, "INIT_IO", "REPL-9", e.to_string());
            }
        }
        let identity: Identity = match read_checksummed(&*shared, &self.identity()) {
            Ok(id) => id,
            Err(e) => return start_failed(io, before, e.code(), "REPL-9", e.to_string()),
        };
        let rule = match self.choose_tail_rule(&*shared) {
            Ok(rule) => rule,
            Err((code, what)) => return start_failed(io, before, code, "CORE-5", what),
        };
        let persisted_fence = match read_fence(&*shared, &self.root) {
            Ok(f) => f,
            Err(e) => return start_failed(io, before, e.code, "REPL-11", e.detail.clone()),
        };
        let (store, appender, report) = match recover_primary_with(shared.clone(), &self.snapshots(), &self.wal(), &identity.cluster_id, rule) {
            Ok(x) => x,
            Err(e) => {
                let outcome = start_failed(io, before, e.code(), e.rule_id(), e.to_string());
                if matches!(outcome, StartOutcome::Refused { .. }) && e.mark_violation().is_some() {
                    // The WAL ends or is damaged before its durable mark: an
                    // allowed outcome (F-P4), never a silent loss.
                    io.count("starts_refused_core_5");
                }
                return outcome;
            }
        };
        if disk.is_dead() {
            return StartOutcome::Retry;
        }
        self.check_recovery(io, &disk, &report, &store, rule.mark());
        let applied = store.applied();
        let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
        if appender.end_lsn() != tip.end_lsn || report.store.wal.end != tip {
            io.violation("CORE-4", format!("WAL ends at LSN {} but the store is applied to LSN {}", appender.end_lsn(), tip.end_lsn));
            return StartOutcome::Refused { code: "WAL_STORE_MISMATCH", rule: "CORE-4" };
        }
        // CORE-5: the running mark names the recovered end before any write is accepted.
        let window = self.config.mark.window_bytes();
        if let Err(e) = write_mark(&*shared, &self.wal(), &DurableMark::at(tip, false, window)) {
            return start_failed(io, before, "MARK_WRITE", "CORE-5", e.to_string());
        }
        let Ok(cluster) = ClusterId::parse(&identity.cluster_id) else {
            io.violation("REPL-1", format!("the identity names cluster {:?}, not 32 hex digits", identity.cluster_id));
            return StartOutcome::Refused { code: "BAD_IDENTITY", rule: "REPL-1" };
        };
        if persisted_fence.is_some() {
            self.fenced = true;
        }
        let store = Arc::new(store);
        let gate = Arc::new(MarkGate::new(tip, window));
        let writer = WalWriter::new(appender, tip, applied.state_digest, self.config.segment_target_bytes)
            .with_preallocation(Preallocation::Chunks(self.config.wal_preallocation));
        let durable = Arc::new(DurableWatch::new(DurablePoint { lsn: tip.end_lsn, commit_id: tip.commit_id }));
        let sink = StoreSink::new(store.clone(), GcPolicy::new(self.config.gc_retain_commits));
        let core = GroupCommitCore::new(writer, sink, durable.clone(), Some(gate.clone()));
        let wal = PrimaryWal::new(cluster.clone(), shared.clone(), core.writer().segments().clone(), durable).with_wal_keep_bytes(self.config.wal_keep_bytes);
        let rejected = report.rejected_snapshots.iter().map(|r| r.commit_id).collect();
        let (registry, registry_error) = SimRegistry::open(&*shared, &self.root);
        if let Some(code) = registry_error {
            // Observability only: damage to replicas.json (a bit flip) starts an empty registry.
            io.trace().entry("registry_unusable").str(code);
            io.count("registry_load_errors");
        }
        let token = self.config.token();
        self.running = Some(Running {
            store,
            core,
            gate,
            marked_at_ms: io.now().ms(),
            cluster_id: identity.cluster_id,
            wal,
            fence: FenceLatch::new(shared, self.root.clone(), persisted_fence),
            port: ReplicationPort::new(self.config.session, cluster),
            registry,
            commit_times: Arc::new(CommitTimes::new(tip.commit_id)),
            token,
            queue: VecDeque::new(),
            in_flight: None,
            blocked: Vec::new(),
            group_timer: false,
            next_token: 0,
            pending: BTreeSet::new(),
            rejected,
            failed: false,
        });
        if self.config.snapshot_every_ms > 0 {
            let first = io.rng().range(0, self.config.snapshot_every_ms);
            io.arm_timer(first, TIMER_SNAPSHOT);
        }
        io.arm_timer(self.config.mark.every_ms, TIMER_MARK);
        StartOutcome::Up
    }

    fn kill(&mut self) -> Vec<RequestId> {
        self.running.take().map(|r| r.pending.into_iter().collect()).unwrap_or_default()
    }

    fn on_timer(&mut self, io: &mut Io<'_>, token: u64) {
        if token & SESSION_TIMER != 0 {
            let conn = token & !SESSION_TIMER;
            self.with_port(io, |port, io, ctx| port.timer(io, conn, ctx));
            return;
        }
        match token {
            TIMER_GROUP => self.start_group(io),
            TIMER_SNAPSHOT => self.snapshot(io),
            TIMER_MARK => {
                self.mark_step(io, false);
                if self.running.is_some() {
                    io.arm_timer((self.config.mark.every_ms / 2).max(1), TIMER_MARK);
                }
            }
            _ => {}
        }
    }

    fn on_disk_done(&mut self, io: &mut Io<'_>, token: u64) {
        self.complete_group(io, token);
    }

    fn on_net(&mut self, io: &mut Io<'_>, event: NetEvent) {
        match event {
            NetEvent::Accepted { conn, peer, .. } => self.with_port(io, |port, io, ctx| port.accepted(io, conn, peer, ctx)),
            NetEvent::Deliver { conn, bytes, .. } => self.with_port(io, |port, io, ctx| port.bytes(io, conn, &bytes, ctx)),
            NetEvent::Closed { conn, .. } => self.with_port(io, |port, io, ctx| port.closed(io, conn, ctx)),
            NetEvent::Writable { conn, .. } => self.with_port(io, |port, io, ctx| port.writable(io, conn, ctx)),
            NetEvent::Connected { conn, .. } | NetEvent::ConnectFailed { conn, .. } => io.close(conn),
        }
    }

    fn on_client(&mut self, io: &mut Io<'_>, request: RequestId, ops: Vec<ClientOp>) -> bool {
        let Some(r) = self.running.as_mut() else { return false };
        if r.fence.current().is_some() {
            io.reply(request, ClientOutcome::Failed("PRIMARY_FENCED"));
            return true;
        }
        let ops = match validate_write_set(ops, &WriteLimits::default()) {
            Ok(ops) => ops,
            Err(e) => {
                io.reply(request, ClientOutcome::Failed(e.code()));
                return true;
            }
        };
        r.pending.insert(request);
        r.queue.push_back(GroupRequest { ops, reply: request });
        let delay = io.rng().range(0, 2);
        Self::arm_group(io, r, delay);
        true
    }

    fn check(&mut self, io: &mut Io<'_>) {
        self.checks += 1;
        self.check_reads(io);
    }

    fn needs_restart(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.failed)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn check_liveness(&mut self, io: &mut Io<'_>) {
        if let Some(r) = &self.running {
            if r.failed {
                io.violation("CORE-1", "writes are still stopped at the end of the heal phase".into());
            }
        }
    }
}
