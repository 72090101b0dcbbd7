//! Offline tools over a data directory: `verify` and `wal-dump`. Both are
//! read-only: they never truncate, repair or create anything.

use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::mark::read_mark;
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::recovery::{scan_wal_with, RecoveryMode, ReplayRefusal};

use crate::datadir::{DataDir, Identity, Role};
use crate::exit::Exit;

/// Why an offline tool cannot work on a directory (the same code and rule
/// for `verify` and `wal-dump`).
#[derive(Debug)]
pub struct ToolFailure {
    /// Exit code.
    pub exit: Exit,
    /// Stable code.
    pub code: &'static str,
    /// Rule.
    pub rule_id: &'static str,
    /// One line.
    pub message: String,
}

impl ToolFailure {
    /// `message [CODE, RULE]`.
    pub fn line(&self) -> String {
        format!("{} [{}, {}]", self.message, self.code, self.rule_id)
    }
}

/// Opens a data directory for an offline tool: it must exist
/// (`NO_SUCH_DIRECTORY`, bad arguments) and hold an identity file
/// (`NOT_A_DATA_DIR`, REPL-1: without one the directory has no role).
pub fn open_data_dir(disk: &dyn Disk, path: &std::path::Path) -> Result<(DataDir, Identity), ToolFailure> {
    let dir = DataDir::new(path);
    if !disk.exists(path) {
        return Err(ToolFailure {
            exit: Exit::BadArguments,
            code: "NOT_A_DATA_DIR",
            rule_id: "REPL-1",
            message: format!("{} is not a directory (no AeroDB data directory there)", path.display()),
        });
    }
    match dir.read_identity(disk) {
        Ok(Some(id)) => Ok((dir, id)),
        Ok(None) => Err(ToolFailure {
            exit: Exit::Failure,
            code: "NOT_A_DATA_DIR",
            rule_id: "REPL-1",
            message: format!("{} is missing: not an AeroDB data directory (or its identity was removed)", dir.identity().display()),
        }),
        Err(e) => Err(ToolFailure { exit: Exit::Failure, code: e.code(), rule_id: "F-RC2", message: e.to_string() }),
    }
}

/// The cluster a directory belongs to: the identity's, or for a replica
/// the one its bootstrap recorded (a replica learns its cluster then).
fn cluster_of(disk: &dyn Disk, dir: &DataDir, id: &Identity) -> String {
    if !id.cluster_id.is_empty() {
        return id.cluster_id.clone();
    }
    #[cfg(feature = "replication")]
    {
        use aerodb_repl_core::metadata::{read_metadata, ReplicaPaths};
        match read_metadata(disk, &ReplicaPaths::new(dir.root())) {
            Ok(Some(m)) => m.cluster_id.to_string(),
            Ok(None) => "none yet (the replica has not bootstrapped)".to_string(),
            Err(_) => "unknown (replica metadata unreadable: see below)".to_string(),
        }
    }
    #[cfg(not(feature = "replication"))]
    {
        let _ = (disk, dir);
        "unknown".to_string()
    }
}

/// The rule `verify` judges the WAL's end under: the same as startup's
/// (CORE-5), read-only. `Err(exit code)` after printing the failure.
fn verify_tail_rule(disk: &dyn Disk, dir: &DataDir, id: &Identity) -> Result<TailRule, i32> {
    if id.role == Role::Replica {
        outln!("ok    durable mark: not kept by a replica (it drops its own torn tail and re-fetches it; it never acknowledged it) [CORE-3]");
        return Ok(TailRule::DropTornTail);
    }
    match read_mark(disk, &dir.wal()) {
        Ok(Some(m)) => {
            outln!(
                "ok    durable mark: LSN {} CommitId {} ({}), crash window {} byte(s)",
                m.end_lsn,
                m.commit_id,
                if m.clean_shutdown { "clean shutdown: no byte may be dropped" } else { "written while running" },
                m.window_bytes
            );
            Ok(TailRule::Mark { mark: m })
        }
        Ok(None) if id.durable_mark => {
            outln!(
                "FAIL  durable mark: {} is missing although this directory keeps one [MARK_MISSING, CORE-5]",
                aerodb_wal::mark::mark_path(&dir.wal()).display()
            );
            Err(1)
        }
        Ok(None) => {
            outln!("note  durable mark: none (the directory predates durable marks); only CORE-3 bounds a torn tail [CORE-5]");
            Ok(TailRule::DropTornTail)
        }
        Err(e) => {
            outln!("FAIL  durable mark: {e} [{}, CORE-5]", e.code());
            Err(1)
        }
    }
}

/// `aerodb verify`: prints each check and the first failure with its rule
/// ID. Exit code 0 only if everything checks.
pub fn verify(data_dir: &std::path::Path) -> i32 {
    let disk = OsDisk::shared();
    let (dir, id) = match open_data_dir(&*disk, data_dir) {
        Ok(opened) => opened,
        Err(f) => {
            outln!("FAIL  identity: {}", f.line());
            return f.exit.code();
        }
    };
    outln!("ok    identity: role {} cluster {}", id.role.as_str(), cluster_of(&*disk, &dir, &id));
    let rule = match verify_tail_rule(&*disk, &dir, &id) {
        Ok(rule) => rule,
        Err(code) => return code,
    };
    let mut gc = GcSeen::default();
    match scan_wal_with(disk.clone(), &dir.wal(), RecoveryMode::ReadOnly, rule, |record, _| gc.see(record)) {
        Ok(report) => {
            outln!(
                "ok    wal: {} segment(s), {} record(s), CommitIds {}..={}, LSN {}..{}",
                report.segments.len(),
                report.records_verified,
                report.start.commit_id + 1,
                report.end.commit_id,
                report.start.end_lsn,
                report.end.end_lsn
            );
            match gc.last {
                Some((commit_id, horizon)) => outln!(
                    "ok    gc: {} GC record(s), horizons non-decreasing, last at CommitId {commit_id} with history horizon {horizon} [MVCC-4]",
                    gc.records
                ),
                None => outln!("ok    gc: no GC record in the WAL held (history horizon unchanged) [MVCC-4]"),
            }
            if let Some(t) = &report.torn_tail {
                let why = match rule {
                    TailRule::Mark { mark } => format!(
                        "after the durable mark at LSN {}, within the crash window of a process that crashed: a torn write, which startup drops and reports",
                        mark.end_lsn
                    ),
                    _ => "at the very end with no valid record after it: a torn write, which startup drops and reports".to_string(),
                };
                outln!(
                    "note  wal: torn tail of {} byte(s) at LSN {} in {} ({}) {why}; verify changed nothing [CORE-3, CORE-5]",
                    t.bytes_dropped,
                    t.lsn,
                    t.segment,
                    t.reason
                );
            }
            if let Some(p) = &report.preallocated {
                outln!(
                    "note  wal: {} byte(s) of preallocated zeros after the last record (LSN {}) in {}: space the primary wrote ahead of its records, not WAL; startup cuts them off; verify changed nothing [CORE-5]",
                    p.bytes,
                    p.lsn,
                    p.segment
                );
            }
        }
        Err(e) => {
            outln!("FAIL  wal: {e} [{}, {}]", e.code(), e.rule_id());
            return 1;
        }
    }
    note_guards(&*disk, &dir);
    let extra = crate::verify_ext::verify_more(&*disk, &dir);
    if extra != 0 {
        return extra;
    }
    outln!("all checks passed");
    0
}

/// Notes (never failures) about history losses an operator accepted and
/// a fence in force.
fn note_guards(disk: &dyn Disk, dir: &DataDir) {
    match aerodb_wal::history::read_history_losses(disk, dir.root()) {
        Ok(h) => {
            for loss in &h.losses {
                let lost = loss
                    .lost
                    .map(|l| format!("LSNs {}..{}, CommitIds {}..={}", l.from_lsn, l.to_lsn, l.first_commit_id, l.last_commit_id))
                    .unwrap_or_else(|| "unbounded (no mark)".into());
                outln!("note  history: the operator accepted a loss ({}): {lost}; the WAL continued at LSN {} [CORE-5]", loss.reason, loss.wal_end.end_lsn);
            }
        }
        Err(e) => outln!("note  history: {e}"),
    }
    if disk.exists(&dir.root().join("fence.json")) {
        outln!(
            "note  fence: fence.json is present: this primary is fenced (a replica proved it lost acknowledged history); see /v1/explain/replication [REPL-11]"
        );
    }
}

/// GC records seen while verifying: horizons must never move backwards
/// (MVCC-4; each is also below its own CommitId, checked by the decoder).
#[derive(Default)]
struct GcSeen {
    records: u64,
    last: Option<(u64, u64)>,
}

impl GcSeen {
    fn see(&mut self, record: &aerodb_wal::Record) -> Result<(), ReplayRefusal> {
        let Some(horizon) = record.body.gc_horizon() else { return Ok(()) };
        if let Some((at, previous)) = self.last.filter(|(_, previous)| horizon < *previous) {
            return Err(ReplayRefusal {
                code: "GC_BAD_HORIZON",
                rule_id: "MVCC-4",
                detail: format!("GC record {} states horizon {horizon}, below horizon {previous} of GC record {at}", record.commit_id),
            });
        }
        self.records += 1;
        self.last = Some((record.commit_id, horizon));
        Ok(())
    }
}
