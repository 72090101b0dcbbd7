//! The primary-side harness: a primary node made of production code only,
//! over a [`SimDisk`].
//!
//! - Start: initialise the data directory as `aerodb`'s `node.rs` does
//!   (WAL genesis segment, then the identity file), then
//!   [`aerodb_snapshot::recover_primary`] (newest valid snapshot + WAL
//!   replay through `aerodb_mvcc::recover_store`).
//! - Commits: [`GroupCommitCore`] (the group step the node's commit thread
//!   runs) with the production [`StoreSink`]. The two halves run at
//!   different simulated times: append when a group starts; fsync, apply,
//!   publish and acknowledge when the simulated fsync completes, so a slow
//!   fsync and a crash before it completes are real.
//! - Snapshots: [`aerodb_snapshot::create_snapshot_with`] and the
//!   scheduler's retention pass [`aerodb_snapshot::retire`].
//!
//! Invariants (after every event, against [`Model`]): no acknowledged
//! write lost (unless recovery refused to start for a legitimate reason,
//! or an injected fault damaged exactly the lost bytes); CommitIds never
//! reused; the recovered state's digest and fingerprint equal the model's
//! at the recovered CommitId; reads at random R equal the model; a WAL or
//! snapshot failure happens only when a fault was injected.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use aerodb_mvcc::input::validate_write_set;
use aerodb_mvcc::{ClientOp, Store, StoreSink, WriteLimits};
use aerodb_snapshot::{create_snapshot_with, recover_primary, retire, PrimaryRecoveryReport, SnapshotOptions, SnapshotPolicy};
use aerodb_wal::checksummed::{read_checksummed, write_checksummed};
use aerodb_wal::disk::Disk;
use aerodb_wal::durable::{DurablePoint, DurableWatch};
use aerodb_wal::group::{AppendedGroup, CommitError, CommitReceipt, GroupCommitCore, GroupRequest};
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::segment::{parse_segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, CommitId};
use serde::{Deserialize, Serialize};

use crate::disk::SimDisk;
use crate::model::Model;
use crate::net::{NetEvent, NodeId};
use crate::plan::node_root;
use crate::rng::{stream, SimRng};
use crate::world::{ClientOutcome, Io, RequestId, SimNode, StartOutcome};

const TIMER_GROUP: u64 = 1;
const TIMER_SNAPSHOT: u64 = 2;
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
    /// WAL retention after snapshots.
    pub wal_retention: bool,
}

impl PrimaryConfig {
    /// Draws the configuration for `seed`.
    pub fn for_seed(seed: u64) -> Self {
        let mut rng = SimRng::new(seed, stream::OPTIONS);
        PrimaryConfig {
            segment_target_bytes: *rng.pick(&[1_024, 4_096, 65_536]).unwrap_or(&4_096),
            snapshot_every_ms: *rng.pick(&[0, 1_000, 3_000, 8_000]).unwrap_or(&0),
            snapshot_file_bytes: *rng.pick(&[2_048, 65_536, 1 << 20]).unwrap_or(&4_096),
            wal_retention: rng.ratio(1, 2),
        }
    }
}

/// Identity file body, the same JSON as `aerodb`'s `datadir::Identity`.
#[derive(Serialize, Deserialize)]
struct Identity {
    format_version: u32,
    role: String,
    cluster_id: String,
}

struct Running {
    store: Arc<Store>,
    core: GroupCommitCore<StoreSink>,
    cluster_id: String,
    queue: Vec<GroupRequest<RequestId>>,
    /// Group waiting for its fsync: token, group, injected errors at its start.
    in_flight: Option<(u64, AppendedGroup<RequestId>, u64)>,
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
}

type Answers = Vec<(RequestId, Result<CommitReceipt, CommitError>)>;

impl PrimaryNode {
    /// A primary whose data directory is node `id`'s root.
    pub fn new(id: NodeId, config: PrimaryConfig) -> Self {
        PrimaryNode { root: node_root(id), config, model: Model::default(), running: None, checks: 0 }
    }

    fn wal(&self) -> PathBuf {
        self.root.join("wal")
    }
    /// The model of what was written and acknowledged.
    pub fn model(&self) -> &Model {
        &self.model
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

    /// Mirrors `aerodb`'s `node::initialise`: WAL genesis segment first,
    /// identity last, so a crash in between simply initialises again.
    fn initialise(&self, disk: &Arc<dyn Disk>, rng: &mut SimRng) -> std::io::Result<()> {
        let wal = self.wal();
        if disk.exists(&wal) {
            disk.remove_dir_all(&wal)?;
        }
        disk.create_dir_all(&wal)?;
        disk.sync_dir(&self.root)?;
        SegmentAppender::create(disk.clone(), &wal, ChainTip::GENESIS.segment_header()).map_err(|e| std::io::Error::other(e.to_string()))?;
        let cluster_id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        write_checksummed(&**disk, &self.identity(), &Identity { format_version: 1, role: "primary".into(), cluster_id })
    }

    /// A start failed: transient if a fault was injected during it,
    /// legitimate if stored data was damaged, otherwise a bug.
    fn start_failed(io: &mut Io<'_>, errors_before: u64, code: &'static str, rule: &'static str, what: String) -> StartOutcome {
        let disk = io.disk().clone();
        io.trace().entry("start_failed").str(code);
        if disk.injected_errors() > errors_before || disk.is_dead() {
            io.count("start_retried");
            return StartOutcome::Retry;
        }
        if disk.ever_damaged() {
            io.count("start_refused_damaged");
            return StartOutcome::Refused { code, rule };
        }
        io.violation(rule, format!("start refused on a disk no fault damaged: {code}: {what}"));
        StartOutcome::Refused { code, rule }
    }

    /// Checks a successful recovery against the model and aligns the model.
    fn check_recovery(&mut self, io: &mut Io<'_>, disk: &SimDisk, report: &PrimaryRecoveryReport, store: &Store) {
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
            if self.loss_explained_by_damage(disk, report) {
                io.trace().entry("excused_loss").u64(lost.len() as u64);
                io.count("acked_lost_to_damage");
                self.model.excuse_losses_above(c);
            } else {
                io.violation(
                    "CORE-1",
                    format!(
                        "acknowledged commits {:?} lost: recovery ended at CommitId {c} (torn tail {:?}, snapshot {:?})",
                        lost,
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
        self.model.truncate(c);
    }

    /// Whether injected damage hit the record at which recovery cut the WAL.
    ///
    /// Without a durable high-water mark, a latent error in the last record
    /// looks exactly like a torn write, so recovery drops it (and any
    /// acknowledged commits from there on): the simulator reports that as
    /// `acked_lost_to_damage` in `outcomes`, not as a violation. CORE-5's
    /// mark narrows this to records after the mark; when it lands, excuse
    /// only losses beyond the mark and treat any other as a violation.
    fn loss_explained_by_damage(&self, disk: &SimDisk, report: &PrimaryRecoveryReport) -> bool {
        let Some(t) = &report.store.wal.torn_tail else {
            return disk.ever_damaged();
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
        let group = r.core.append_group(batch, &mut |req, res| answers.push((req, res)));
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
        let Some(r) = self.running.as_mut() else { return };
        if group.is_empty() {
            if !r.queue.is_empty() && !r.group_timer {
                r.group_timer = true;
                io.arm_timer(0, TIMER_GROUP);
            }
            return;
        }
        let token = r.next_token;
        r.next_token += 1;
        r.in_flight = Some((token, group, errors));
        let latency = io.fsync_latency();
        io.disk_done_after(latency, token);
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
        let newly_failed = !was_failed && r.core.failure().is_some();
        let failure = r.core.failure().map(str::to_string);
        self.answer(io, answers);
        if newly_failed {
            self.wal_failed(io, errors, failure.unwrap_or_default());
        }
        if let Some(r) = self.running.as_mut() {
            if !r.queue.is_empty() && !r.group_timer {
                r.group_timer = true;
                let delay = io.rng().range(0, 2);
                io.arm_timer(delay, TIMER_GROUP);
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
        let options = SnapshotOptions { file_target_bytes: config.snapshot_file_bytes, batch_keys: 8 };
        let created = create_snapshot_with(&*shared, &snapshots, &r.store, &r.cluster_id, &options, None);
        let outcome = match created {
            Ok(info) => {
                io.trace().entry("snapshot").u64(info.commit_id).u128(info.state_digest.0);
                io.count("snapshots");
                let policy = SnapshotPolicy::new(1, config.wal_retention);
                retire(&*shared, &snapshots, r.core.writer().segments(), &policy, &r.rejected).result.map_err(|e| (e.code(), e.to_string()))
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
        let at = io.rng().range(0, c);
        let Ok(view) = r.store.read_view(Some(at)) else {
            io.violation("MVCC-1", format!("no read view at {at} although {c} is applied"));
            return;
        };
        if self.checks.is_multiple_of(64) {
            // Every key at once, against the oracle.
            for ((coll, key), _) in self.model.chains() {
                let got = view.get(coll, key).map(|v| (v.commit_id, v.doc));
                let want = self.model.visible(coll, key, at);
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
            let want = self.model.visible(coll, key, at);
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
                return Self::start_failed(io, before, "INIT_IO", "REPL-9", e.to_string());
            }
        }
        let identity: Identity = match read_checksummed(&*shared, &self.identity()) {
            Ok(id) => id,
            Err(e) => return Self::start_failed(io, before, e.code(), "REPL-9", e.to_string()),
        };
        let (store, appender, report) = match recover_primary(shared.clone(), &self.snapshots(), &self.wal(), &identity.cluster_id) {
            Ok(x) => x,
            Err(e) => return Self::start_failed(io, before, e.code(), e.rule_id(), e.to_string()),
        };
        if disk.is_dead() || disk.injected_errors() > before {
            // Recovery succeeded although an operation failed on the way:
            // still check what it produced, then let the world crash it.
            if disk.is_dead() {
                return StartOutcome::Retry;
            }
        }
        self.check_recovery(io, &disk, &report, &store);
        let applied = store.applied();
        let tip = ChainTip { end_lsn: applied.end_lsn, commit_id: applied.commit_id, fingerprint: applied.fingerprint };
        if appender.end_lsn() != tip.end_lsn {
            io.violation("CORE-4", format!("WAL ends at LSN {} but the store is applied to LSN {}", appender.end_lsn(), tip.end_lsn));
            return StartOutcome::Refused { code: "WAL_STORE_MISMATCH", rule: "CORE-4" };
        }
        let store = Arc::new(store);
        let writer = WalWriter::new(appender, tip, applied.state_digest, self.config.segment_target_bytes);
        let durable = Arc::new(DurableWatch::new(DurablePoint { lsn: tip.end_lsn, commit_id: tip.commit_id }));
        // No mark gate and no GC step yet: the harness drives the two group
        // halves itself.
        let core = GroupCommitCore::new(writer, StoreSink::new(store.clone(), aerodb_mvcc::GcPolicy::default()), durable, None);
        let rejected = report.rejected_snapshots.iter().map(|r| r.commit_id).collect();
        self.running = Some(Running {
            store,
            core,
            cluster_id: identity.cluster_id,
            queue: Vec::new(),
            in_flight: None,
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
        StartOutcome::Up
    }

    fn kill(&mut self) -> Vec<RequestId> {
        self.running.take().map(|r| r.pending.into_iter().collect()).unwrap_or_default()
    }

    fn on_timer(&mut self, io: &mut Io<'_>, token: u64) {
        match token {
            TIMER_GROUP => self.start_group(io),
            TIMER_SNAPSHOT => self.snapshot(io),
            _ => {}
        }
    }

    fn on_disk_done(&mut self, io: &mut Io<'_>, token: u64) {
        self.complete_group(io, token);
    }

    fn on_net(&mut self, _io: &mut Io<'_>, _event: NetEvent) {}

    fn on_client(&mut self, io: &mut Io<'_>, request: RequestId, ops: Vec<ClientOp>) -> bool {
        let Some(r) = self.running.as_mut() else { return false };
        let ops = match validate_write_set(ops, &WriteLimits::default()) {
            Ok(ops) => ops,
            Err(e) => {
                io.reply(request, ClientOutcome::Failed(e.code()));
                return true;
            }
        };
        r.pending.insert(request);
        r.queue.push(GroupRequest { ops, reply: request });
        if r.in_flight.is_none() && !r.group_timer {
            r.group_timer = true;
            let delay = io.rng().range(0, 2);
            io.arm_timer(delay, TIMER_GROUP);
        }
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
