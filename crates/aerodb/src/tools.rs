//! Offline tools over a data directory: `verify` and `wal-dump`. Both are
//! read-only: they never truncate, repair or create anything.

use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::recovery::{scan_wal, RecoveryMode, ReplayRefusal};
use aerodb_wal::{Op, RecordBody};

use crate::datadir::DataDir;

/// `aerodb verify`: prints each check and the first failure with its rule
/// ID. Exit code 0 only if everything checks.
pub fn verify(data_dir: &std::path::Path) -> i32 {
    let disk = OsDisk::shared();
    let dir = DataDir::new(data_dir);
    match dir.read_identity(&*disk) {
        Ok(Some(id)) => outln!("ok    identity: role {} cluster {}", id.role.as_str(), id.cluster_id),
        Ok(None) => {
            outln!("FAIL  identity: {} missing (not an AeroDB data directory?) [REPL-1]", dir.identity().display());
            return 1;
        }
        Err(e) => {
            outln!("FAIL  identity: {e} [F-RC2]");
            return 1;
        }
    }
    let mut gc = GcSeen::default();
    match scan_wal(disk.clone(), &dir.wal(), RecoveryMode::ReadOnly, |record, _| gc.see(record)) {
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
                outln!(
                    "note  wal: torn tail of {} byte(s) at LSN {} in {} ({}); startup will truncate it [CORE-3]",
                    t.bytes_dropped,
                    t.lsn,
                    t.segment,
                    t.reason
                );
            }
        }
        Err(e) => {
            outln!("FAIL  wal: {e} [{}]", e.rule_id());
            return 1;
        }
    }
    let extra = crate::verify_ext::verify_more(&*disk, &dir);
    if extra != 0 {
        return extra;
    }
    outln!("all checks passed");
    0
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

/// `aerodb wal-dump`: one line per record from `from`, at most `limit`.
pub fn wal_dump(data_dir: &std::path::Path, from: u64, limit: Option<u64>) -> i32 {
    let disk: std::sync::Arc<dyn Disk> = OsDisk::shared();
    let dir = DataDir::new(data_dir);
    let mut printed = 0u64;
    let result = scan_wal(disk, &dir.wal(), RecoveryMode::ReadOnly, |record, pos| {
        if pos.lsn < from || limit.is_some_and(|l| printed >= l) {
            return Ok(());
        }
        let ops: Vec<String> = match &record.body {
            RecordBody::Commit(ops) => ops
                .iter()
                .map(|op| {
                    let kind = match op {
                        Op::Put { .. } => "put",
                        Op::Delete { .. } => "delete",
                    };
                    format!("{kind} {}/{}", String::from_utf8_lossy(op.collection()), String::from_utf8_lossy(op.key()))
                })
                .collect(),
            // A GC record creates no version: it states the new history horizon (MVCC-4).
            RecordBody::Gc { horizon } => vec![format!("gc horizon={horizon}")],
        };
        outln!(
            "lsn={} end={} commit_id={} ops={} fingerprint={} digest={} [{}]",
            pos.lsn,
            pos.end_lsn,
            pos.commit_id,
            record.ops().len(),
            pos.fingerprint,
            record.state_digest,
            ops.join(", ")
        );
        printed += 1;
        Ok::<(), ReplayRefusal>(())
    });
    match result {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("wal-dump stopped: {e} [{}]", e.rule_id());
            1
        }
    }
}
