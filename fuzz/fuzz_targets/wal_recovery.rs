//! WAL recovery over whole segment files (docs/formats.md §2, CORE-2/3/5,
//! REPL-2/7), as startup and `aerodb verify` read them: pieces of the input
//! are segment files (named after their header's start LSN), optionally
//! preceded by a durable mark. Properties: never a panic; replayed records
//! are contiguous with CommitIds counting up by one; errors have stable
//! codes; and recovery is idempotent — what a repairing recovery leaves
//! scans clean to the same end, with no torn tail left.
#![no_main]

use std::path::Path;

use aerodb_wal::mark::DurableMark;
use aerodb_wal::mark_check::TailRule;
use aerodb_wal::recovery::{scan_wal_with, RecoveryMode, ReplayRefusal};
use aerodb_wal::segment::segment_file_name;
use aerodb_wal::{Record, RecordPosition};
use libfuzzer_sys::fuzz_target;

fn checked_replay() -> impl FnMut(&Record, RecordPosition) -> Result<(), ReplayRefusal> {
    let mut last: Option<RecordPosition> = None;
    move |record, pos| {
        assert_eq!(record.commit_id, pos.commit_id);
        assert!(pos.end_lsn > pos.lsn);
        if let Some(prev) = last {
            assert_eq!(pos.lsn, prev.end_lsn, "records are contiguous");
            assert_eq!(pos.commit_id, prev.commit_id + 1, "CommitIds count up by one");
        }
        last = Some(pos);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut files: Vec<Vec<u8>> = aerodb_fuzz::pieces(rest, 5).into_iter().map(<[u8]>::to_vec).collect();
    let mark = if mode & 2 == 2 && !files.is_empty() {
        let mut m = files.remove(0);
        if mode & 1 == 1 {
            aerodb_fuzz::reseal_header64(&mut m);
        }
        match DurableMark::decode(&m) {
            Ok(mark) => Some(mark),
            Err(_) => return,
        }
    } else {
        None
    };
    let wal = Path::new("/d/wal");
    let (_sim, disk) = aerodb_fuzz::mem_disk(&[wal]);
    for (i, f) in files.iter_mut().enumerate() {
        if mode & 1 == 1 {
            aerodb_fuzz::reseal_header64(f);
            if f.len() > 64 {
                aerodb_fuzz::reseal_records(&mut f[64..]);
            }
        }
        let lsn = match f.get(16..24) {
            Some(b) if mode & 4 == 0 => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            _ => i as u64 * 4096,
        };
        aerodb_fuzz::put_file(&*disk, &wal.join(segment_file_name(lsn)), f);
    }
    let rule = || match mark {
        Some(mark) => TailRule::Mark { mark },
        None => TailRule::DropTornTail,
    };
    let read_only = scan_wal_with(disk.clone(), wal, RecoveryMode::ReadOnly, rule(), checked_replay());
    let repaired = scan_wal_with(disk.clone(), wal, RecoveryMode::Repair, rule(), checked_replay());
    match (&read_only, &repaired) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.end, b.end, "read-only and repairing recovery end at the same record");
            assert_eq!(a.records_verified, b.records_verified);
            let again = scan_wal_with(disk.clone(), wal, RecoveryMode::ReadOnly, rule(), checked_replay())
                .unwrap_or_else(|e| panic!("a repaired WAL scans clean, not {} ({e})", e.code()));
            assert_eq!(again.end, b.end, "recovery is idempotent");
            assert!(again.torn_tail.is_none(), "a repaired WAL has no torn tail left");
        }
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "read-only and repairing recovery refuse alike"),
        (a, b) => panic!(
            "read-only and repairing recovery disagree: {:?} vs {:?}",
            a.as_ref().map(|r| r.end).map_err(|e| e.code()),
            b.as_ref().map(|r| r.end).map_err(|e| e.code())
        ),
    }
    if let Err(e) = &read_only {
        assert!(!e.code().is_empty());
        let _ = (e.to_string(), e.rule_id(), e.lsn());
    }
});
