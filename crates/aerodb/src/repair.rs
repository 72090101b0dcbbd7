//! `aerodb repair-wal --data-dir PRIMARY_DIR --from REPLICA_DIR`: restores
//! a primary's missing or damaged WAL tail from a replica's verified copy
//! (CORE-5). Offline: it takes both directories' locks, so both nodes must
//! be stopped. The plan and the copy are `aerodb_wal::repair`'s; this
//! module checks the two directories belong together (roles, cluster id),
//! prints what it does, and maps outcomes to exit codes:
//!
//! * 0 — repaired (the WAL now reaches its durable mark), or nothing to repair;
//! * 1 — refused: nothing was changed (the reason and its code are printed);
//! * 3 — partial: the replica's copy ends before the durable mark; what it
//!   holds was restored, the mark was left in place, so startup still
//!   refuses; repair again from a replica that is further ahead, or accept
//!   the rest of the loss with `aerodb primary --accept-lost-history`.

use std::path::Path;
use std::sync::Arc;

use aerodb_repl_core::metadata::{read_metadata, ReplicaPaths};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::mark::read_mark;
use aerodb_wal::mark_writer::MarkPolicy;
use aerodb_wal::repair::{apply_repair, backup_dir, plan_repair};

use crate::datadir::{DataDir, Role};

/// Exit code of a partial repair (the copy ends before the mark).
const PARTIAL: i32 = crate::exit::Exit::Partial.code();

fn fail(what: &str, detail: &str, code: &str, rule: &str) -> i32 {
    outln!("FAIL  {what}: {detail} [{code}, {rule}]");
    1
}

/// Runs `aerodb repair-wal`.
pub fn run(primary_root: &Path, replica_root: &Path) -> i32 {
    let disk: Arc<dyn Disk> = OsDisk::shared();
    for (label, root) in [("primary", primary_root), ("replica", replica_root)] {
        if !disk.exists(&root.join("identity.json")) {
            return fail(label, &format!("{} is not an AeroDB data directory (no identity.json)", root.display()), "REPAIR_NOT_A_DATA_DIR", "CORE-5");
        }
    }
    let (primary, replica) = (DataDir::new(primary_root), DataDir::new(replica_root));
    // Both locks are held until the repair ends: both nodes must be stopped.
    let _locks = match (primary.lock(), replica.lock()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail("lock", &format!("{e}; stop both nodes first"), e.code(), "REPL-1"),
    };
    let identity = match primary.read_identity(&*disk) {
        Ok(Some(id)) if id.role == Role::Primary => id,
        Ok(Some(id)) => {
            return fail("primary", &format!("{} is a {} directory, not a primary's", primary_root.display(), id.role.as_str()), "ROLE_MISMATCH", "REPL-1")
        }
        Ok(None) => return fail("primary", "no identity", "REPAIR_NOT_A_DATA_DIR", "CORE-5"),
        Err(e) => return fail("primary identity", &e.to_string(), e.code(), "F-RC2"),
    };
    match replica.read_identity(&*disk) {
        Ok(Some(id)) if id.role == Role::Replica => {}
        Ok(Some(id)) => {
            return fail("--from", &format!("{} is a {} directory, not a replica's", replica_root.display(), id.role.as_str()), "ROLE_MISMATCH", "REPL-1")
        }
        Ok(None) => return fail("--from", "no identity", "REPAIR_NOT_A_DATA_DIR", "CORE-5"),
        Err(e) => return fail("replica identity", &e.to_string(), e.code(), "F-RC2"),
    }
    match read_metadata(&*disk, &ReplicaPaths::new(replica_root)) {
        Ok(Some(m)) if m.cluster_id.as_str() == identity.cluster_id => outln!("ok    replica {} of cluster {}", m.replica_id, m.cluster_id),
        Ok(Some(m)) => {
            return fail(
                "--from",
                &format!("the replica belongs to cluster {}, the primary is cluster {}", m.cluster_id, identity.cluster_id),
                "CLUSTER_MISMATCH",
                "REPL-1",
            )
        }
        Ok(None) => return fail("--from", "the replica never completed a bootstrap: it holds no copy", "REPAIR_NOTHING_TO_COPY", "CORE-5"),
        Err(e) => return fail("replica metadata", &e.to_string(), e.check.code(), "F-RC2"),
    }
    let mark = match read_mark(&*disk, &primary.wal()) {
        Ok(mark) => mark,
        Err(e) => {
            outln!("note  durable mark: {e}; repairing without it and writing a new one");
            None
        }
    };
    let plan = match plan_repair(disk.clone(), &primary.wal(), &replica.wal(), mark) {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            outln!("ok    nothing to repair: the primary's WAL is whole and reaches its durable mark");
            return 0;
        }
        Err(e) => return fail("repair refused, nothing changed", &e.to_string(), e.code(), e.rule_id()),
    };
    let p = &plan.primary;
    outln!(
        "ok    primary WAL valid up to LSN {} (CommitId {}){}",
        p.end.end_lsn,
        p.end.commit_id,
        p.damage.as_ref().map(|d| format!("; then {d}")).unwrap_or_default()
    );
    if let Some(m) = &plan.mark {
        outln!("ok    durable mark at LSN {} (CommitId {}{})", m.end_lsn, m.commit_id, if m.clean_shutdown { ", clean shutdown" } else { "" });
    }
    outln!(
        "ok    replica copy verified from LSN {} to {} (CommitIds {}..={}): crc32c, CommitId continuity and the fingerprint chain join the primary's",
        p.end.end_lsn,
        plan.new_end.end_lsn,
        p.end.commit_id + 1,
        plan.new_end.commit_id
    );
    let backup = backup_dir(&*disk, primary_root);
    let window = MarkPolicy::default().window_bytes();
    let reaches = plan.reaches_mark;
    let outcome = match apply_repair(&*disk, &primary.wal(), &replica.wal(), plan, &backup, window) {
        Ok(o) => o,
        Err(e) => return fail("repair failed part-way (re-run it)", &e.to_string(), e.code(), e.rule_id()),
    };
    if !outcome.moved_aside.is_empty() {
        outln!("ok    damaged files kept in {}: {}", backup.display(), outcome.moved_aside.join(", "));
    }
    outln!(
        "ok    copied {} record(s), {} byte(s) verbatim; WAL now ends at LSN {} (CommitId {})",
        outcome.records_copied,
        outcome.bytes_copied,
        outcome.plan.new_end.end_lsn,
        outcome.plan.new_end.commit_id
    );
    if reaches {
        outln!("ok    durable mark updated; the primary can start with every acknowledged commit");
        0
    } else {
        let m = outcome.plan.mark.map(|m| (m.end_lsn, m.commit_id)).unwrap_or_default();
        outln!(
            "FAIL  partial: the replica's copy ends at LSN {} (CommitId {}), before the durable mark at LSN {} (CommitId {}); startup still refuses: repair again from a replica that is further ahead, or accept the loss with `aerodb primary --accept-lost-history` [REPAIR_SHORT_OF_MARK, CORE-5]",
            outcome.plan.new_end.end_lsn,
            outcome.plan.new_end.commit_id,
            m.0,
            m.1
        );
        PARTIAL
    }
}
