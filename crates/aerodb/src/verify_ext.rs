//! Checks `aerodb verify` adds for snapshots and replica metadata.

use std::collections::{BTreeMap, BTreeSet};

use aerodb_snapshot::format::{DAMAGED_PREFIX, DEL_PREFIX, TMP_PREFIX};
use aerodb_snapshot::{list_snapshots, load_snapshot, Manifest};
use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::recovery::{scan_wal, RecoveryMode, ReplayRefusal, WalRecoveryReport};
use aerodb_wal::{ChainTip, CommitId, Fingerprint, Lsn};

use crate::datadir::DataDir;

/// Runs the snapshot and replica-metadata checks; 0 when all pass.
pub fn verify_more(disk: &dyn Disk, dir: &DataDir) -> i32 {
    let snapshots = verify_snapshots(disk, dir);
    if snapshots != 0 {
        return snapshots;
    }
    verify_replica(disk, dir)
}

/// Checks replica metadata and a persisted halt (F-RC2), and that an
/// installed bootstrap snapshot is the one the metadata records.
#[cfg(feature = "replication")]
fn verify_replica(disk: &dyn Disk, dir: &DataDir) -> i32 {
    use aerodb_repl_core::metadata::{read_halt, read_metadata, BootstrapMethod, ReplicaPaths};
    let paths = ReplicaPaths::new(dir.root());
    if !disk.exists(&paths.dir) {
        return 0;
    }
    let meta = match read_metadata(disk, &paths) {
        Ok(Some(m)) => m,
        Ok(None) => {
            outln!("ok    replica: no committed bootstrap (uninitialised; the next start bootstraps)");
            return 0;
        }
        Err(e) => {
            outln!("FAIL  replica metadata: {e} [F-RC2]");
            return 1;
        }
    };
    let b = meta.bootstrap;
    outln!(
        "ok    replica metadata: cluster {} replica {} bootstrap {} at CommitId {} LSN {}",
        meta.cluster_id,
        meta.replica_id,
        b.method.as_str(),
        b.boundary_commit_id,
        b.boundary_lsn
    );
    if b.method == BootstrapMethod::Snapshot {
        match aerodb_snapshot::load_snapshot(disk, &paths.snapshot(), Some(meta.cluster_id.as_str())) {
            Ok((_, m)) if (m.boundary_commit_id, m.boundary_lsn, m.boundary_fingerprint) == (b.boundary_commit_id, b.boundary_lsn, b.boundary_fingerprint) => {
                outln!("ok    replica snapshot: matches the recorded boundary");
            }
            Ok((_, m)) => {
                outln!("FAIL  replica snapshot: cut CommitId {} LSN {} differs from the recorded boundary [F-S3]", m.boundary_commit_id, m.boundary_lsn);
                return 1;
            }
            Err(e) => {
                outln!("FAIL  replica snapshot: {e} [{}]", e.rule_id());
                return 1;
            }
        }
    }
    match read_halt(disk, &paths) {
        Ok(None) => 0,
        Ok(Some(h)) => {
            let h = aerodb_repl_core::halt::Reason::view(&h);
            let at = |what: &str, v: Option<u64>| v.map(|v| format!(" {what} {v}")).unwrap_or_default();
            outln!("FAIL  replica: halted with {}{}{}: {} [{}]", h.code, at("at LSN", h.lsn), at("CommitId", h.commit_id), h.detail, h.rule_id);
            1
        }
        Err(e) => {
            outln!("FAIL  replica halt record: {e} [F-RC2]");
            1
        }
    }
}

#[cfg(not(feature = "replication"))]
fn verify_replica(_disk: &dyn Disk, _dir: &DataDir) -> i32 {
    0
}

/// Validates every snapshot completely (manifest, cluster id, file set,
/// sizes, checksums, records, state digest: F-S4) and checks that its cut
/// is the WAL's record C_snap (F-S3). Prints one line per snapshot; stops
/// at the first failure and returns 1. Read-only.
fn verify_snapshots(disk: &dyn Disk, dir: &DataDir) -> i32 {
    let snaps_dir = dir.snapshots();
    let cluster = dir.read_identity(disk).ok().flatten().map(|id| id.cluster_id);
    if disk.exists(&snaps_dir) {
        for name in disk.list(&snaps_dir).unwrap_or_default() {
            if name.starts_with(TMP_PREFIX) || name.starts_with(DEL_PREFIX) {
                outln!("note  snapshots: incomplete directory {name} (never visible); startup removes it [F-S1]");
            } else if name.starts_with(DAMAGED_PREFIX) {
                outln!("note  snapshots: {name} was withdrawn by the scrub as damaged (never used; kept for forensics) [CORE-6]");
            }
        }
    }
    let held = match list_snapshots(disk, &snaps_dir) {
        Ok(held) => held,
        Err(e) => {
            outln!("FAIL  snapshots: {e} [{}]", e.rule_id());
            return 1;
        }
    };
    if held.is_empty() {
        outln!("ok    snapshots: none");
        return 0;
    }
    let wanted: BTreeSet<CommitId> = held.iter().map(|s| s.commit_id).collect();
    let mut ends: BTreeMap<CommitId, (Lsn, Fingerprint)> = BTreeMap::new();
    let wal = scan_wal(OsDisk::shared(), &dir.wal(), RecoveryMode::ReadOnly, |_, pos| {
        if wanted.contains(&pos.commit_id) {
            ends.insert(pos.commit_id, (pos.end_lsn, pos.fingerprint));
        }
        Ok::<(), ReplayRefusal>(())
    });
    for snap in held {
        let manifest = match load_snapshot(disk, &snap.path, cluster.as_deref()) {
            Ok((_, manifest)) => manifest,
            Err(e) => {
                outln!("FAIL  snapshot {}: {e} [{}]", snap.commit_id, e.rule_id());
                return 1;
            }
        };
        let summary = format!(
            "LSN {}, {} version(s), {} file(s), {} bytes, state digest {}",
            manifest.boundary_lsn,
            manifest.version_count,
            manifest.files.len(),
            manifest.data_bytes(),
            manifest.state_digest
        );
        match cut_against_wal(&manifest, wal.as_ref().ok(), &ends) {
            Ok(note) => outln!("ok    snapshot {}: {summary}; {note}", snap.commit_id),
            Err(why) => {
                outln!("FAIL  snapshot {}: {why} [F-S3]", snap.commit_id);
                return 1;
            }
        }
    }
    0
}

/// Whether the snapshot's cut (C_snap, L_snap, F_snap) is the WAL's.
fn cut_against_wal(m: &Manifest, wal: Option<&WalRecoveryReport>, ends: &BTreeMap<CommitId, (Lsn, Fingerprint)>) -> Result<&'static str, String> {
    let Some(wal) = wal else {
        return Ok("WAL not readable, cut not cross-checked");
    };
    let cut = ChainTip { end_lsn: m.boundary_lsn, commit_id: m.boundary_commit_id, fingerprint: m.boundary_fingerprint };
    if let Some(&(lsn, fingerprint)) = ends.get(&m.boundary_commit_id) {
        if (lsn, fingerprint) == (cut.end_lsn, cut.fingerprint) {
            return Ok("cut matches the WAL");
        }
        return Err(format!(
            "cut (CommitId {}, LSN {}, fingerprint {}) differs from the WAL's record (LSN {lsn}, fingerprint {fingerprint})",
            cut.commit_id, cut.end_lsn, cut.fingerprint
        ));
    }
    if wal.start == cut {
        return Ok("cut matches the start of the WAL");
    }
    if cut.commit_id < wal.start.commit_id {
        return Ok("older than the retained WAL, cut not cross-checked");
    }
    Err(format!("CommitId {} is not in the WAL, which covers CommitIds {}..={}", cut.commit_id, wal.start.commit_id + 1, wal.end.commit_id))
}
