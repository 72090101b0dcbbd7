#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The simulated disk's durability and fault model (REPL-9, CORE-1, CORE-3).

use std::path::Path;

use aerodb_sim::disk::{CrashKind, IoClass, SimDisk};
use aerodb_sim::faults::FaultClass;
use aerodb_sim::rng::SimRng;
use aerodb_wal::disk::{write_atomic, Disk};

fn disk(seed: u64) -> SimDisk {
    let d = SimDisk::new(SimRng::new(seed, 9));
    d.mkdir_durable(Path::new("/n")).unwrap();
    d
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// CORE-1: appended bytes survive power loss only once `sync_data` made
/// them durable (and the file's directory entry was synced).
#[test]
fn core_1_sim_disk_only_synced_bytes_survive_power_loss() {
    let d = disk(1);
    let mut f = d.create(p("/n/a")).unwrap();
    d.sync_dir(p("/n")).unwrap();
    f.append(b"hello").unwrap();
    f.sync_data().unwrap();
    f.append(b" world").unwrap();
    assert_eq!(d.current_bytes(p("/n/a")).unwrap(), b"hello world");
    assert_eq!(d.synced_bytes(p("/n/a")).unwrap(), b"hello");
    d.crash(CrashKind::PowerLoss { torn: false });
    assert_eq!(d.read_bounded(p("/n/a"), 100).unwrap(), b"hello");
    // A handle from before the crash is stale.
    assert!(f.append(b"x").is_err());
    assert!(f.sync_data().is_err());
}

/// CORE-1: a process crash keeps the page cache; only power loss loses it.
#[test]
fn core_1_sim_disk_process_crash_keeps_unsynced_bytes() {
    let d = disk(2);
    let mut f = d.create(p("/n/a")).unwrap();
    f.append(b"abc").unwrap();
    d.crash(CrashKind::Process);
    assert_eq!(d.read_bounded(p("/n/a"), 100).unwrap(), b"abc");
    d.crash(CrashKind::PowerLoss { torn: false });
    assert!(!d.exists(p("/n/a")), "entry never synced");
}

/// REPL-9: create, rename and remove are durable only after `sync_dir` of
/// the parent; a synced file whose entry was not synced is gone.
#[test]
fn repl_9_sim_disk_directory_entries_need_sync_dir() {
    let d = disk(3);
    let mut f = d.create(p("/n/a")).unwrap();
    f.append(b"data").unwrap();
    f.sync_data().unwrap();
    d.crash(CrashKind::PowerLoss { torn: false });
    assert!(!d.exists(p("/n/a")));

    let mut f = d.create(p("/n/a")).unwrap();
    f.append(b"data").unwrap();
    f.sync_data().unwrap();
    d.sync_dir(p("/n")).unwrap();
    d.rename(p("/n/a"), p("/n/b")).unwrap();
    assert!(d.exists(p("/n/b")) && !d.exists(p("/n/a")));
    d.crash(CrashKind::PowerLoss { torn: false });
    assert!(d.exists(p("/n/a")) && !d.exists(p("/n/b")), "rename undone");

    d.remove_file(p("/n/a")).unwrap();
    d.crash(CrashKind::PowerLoss { torn: false });
    assert_eq!(d.read_bounded(p("/n/a"), 10).unwrap(), b"data", "removal undone");
    d.remove_file(p("/n/a")).unwrap();
    d.sync_dir(p("/n")).unwrap();
    d.crash(CrashKind::PowerLoss { torn: false });
    assert!(!d.exists(p("/n/a")));

    d.create_dir_all(p("/n/x/y")).unwrap();
    d.sync_dir(p("/n/x")).unwrap();
    d.crash(CrashKind::PowerLoss { torn: false });
    assert!(!d.exists(p("/n/x")), "the parent's entry for x was never synced");
    assert_eq!(d.list_durable_files(), Vec::<std::path::PathBuf>::new());
}

/// REPL-9: `write_atomic` crashed after any number of its mutating steps,
/// with power loss (torn or not) or a process crash, leaves either the
/// old file or the new one, never a mix, and never nothing.
#[test]
fn repl_9_sim_disk_write_atomic_is_old_or_new_at_every_crash_point() {
    for k in 0..8 {
        for kind in [CrashKind::PowerLoss { torn: true }, CrashKind::PowerLoss { torn: false }, CrashKind::Process] {
            for seed in 0..4 {
                let d = disk(seed);
                write_atomic(&d, p("/n/meta"), b"old contents").unwrap();
                d.die_after(k);
                let result = write_atomic(&d, p("/n/meta"), b"new contents!");
                assert_eq!(result.is_ok(), !d.is_dead(), "k={k}");
                d.crash(kind);
                let got = d.read_bounded(p("/n/meta"), 100).unwrap();
                assert!(got == b"old contents" || got == b"new contents!", "k={k} {kind:?}: {got:?}");
                if result.is_ok() {
                    assert_eq!(got, b"new contents!", "completed write_atomic is durable");
                }
            }
        }
    }
}

/// REPL-9: after "die after K operations" every operation fails, reads
/// included, until the crash.
#[test]
fn repl_9_sim_disk_dead_process_fails_every_operation_until_crash() {
    let d = disk(4);
    let mut f = d.create(p("/n/a")).unwrap();
    d.die_after(1);
    f.append(b"1").unwrap();
    assert!(f.append(b"2").is_err());
    assert!(d.is_dead());
    assert!(d.list(p("/n")).is_err());
    assert!(d.open(p("/n/a")).is_err());
    assert!(d.read_bounded(p("/n/a"), 10).is_err());
    assert_eq!(d.counters().get(FaultClass::CrashMidOperation), 1);
    d.crash(CrashKind::Process);
    assert!(!d.is_dead());
    assert_eq!(d.read_bounded(p("/n/a"), 10).unwrap(), b"1");
}

/// CORE-3: a torn write keeps a prefix of the unsynced tail (maybe with a
/// garbage partial last sector) on top of the synced bytes, never more.
#[test]
fn core_3_sim_disk_torn_write_keeps_a_prefix_of_the_unsynced_tail() {
    let mut torn = 0;
    let mut garbage = 0;
    for seed in 0..64 {
        let d = disk(seed);
        let mut f = d.create(p("/n/a")).unwrap();
        d.sync_dir(p("/n")).unwrap();
        let synced: Vec<u8> = (0..700u32).map(|i| i as u8).collect();
        f.append(&synced).unwrap();
        f.sync_data().unwrap();
        let tail: Vec<u8> = (0..2000u32).map(|i| (i * 7) as u8).collect();
        f.append(&tail).unwrap();
        let injected = d.crash(CrashKind::PowerLoss { torn: true });
        let got = d.read_bounded(p("/n/a"), 1 << 20).unwrap();
        assert!(got.len() >= synced.len() && got.len() <= synced.len() + tail.len());
        assert_eq!(&got[..synced.len()], &synced[..], "synced bytes never change");
        let survived = &got[synced.len()..];
        if injected.contains(&FaultClass::TornGarbage) {
            garbage += 1;
            let end = got.len();
            let clean_to = (end / 512 * 512).max(synced.len()) - synced.len();
            assert_eq!(&survived[..clean_to], &tail[..clean_to]);
        } else {
            assert_eq!(survived, &tail[..survived.len()]);
        }
        torn += usize::from(injected.contains(&FaultClass::TornWrite));
    }
    assert!(torn > 5 && garbage > 2, "torn={torn} garbage={garbage}");
}

/// CORE-2: bit flips and zeroed blocks change synced bytes, are visible to
/// reads, and are recorded as damage on the file.
#[test]
fn core_2_sim_disk_latent_errors_damage_synced_bytes_and_are_recorded() {
    let d = disk(5);
    let mut f = d.create(p("/n/a")).unwrap();
    d.sync_dir(p("/n")).unwrap();
    let data = vec![0xAAu8; 2048];
    f.append(&data).unwrap();
    f.sync_data().unwrap();
    let (path, off) = d.flip_random_bit(p("/n")).unwrap();
    assert_eq!(path, p("/n/a"));
    let got = d.read_bounded(p("/n/a"), 4096).unwrap();
    assert_eq!(got.iter().zip(&data).filter(|(a, b)| a != b).count(), 1);
    assert_ne!(got[off as usize], 0xAA);
    let (_, start) = d.zero_random_block(p("/n")).unwrap();
    assert_eq!(start % 512, 0);
    let got = d.read_bounded(p("/n/a"), 4096).unwrap();
    assert!(got[start as usize..start as usize + 512].iter().all(|b| *b == 0));
    d.crash(CrashKind::PowerLoss { torn: false });
    assert_eq!(d.read_bounded(p("/n/a"), 4096).unwrap(), got, "damage is durable");
    assert_eq!(d.damage_at(p("/n/a")).len(), 2);
    assert!(d.ever_damaged());
    assert!(d.flip_random_bit(p("/elsewhere")).is_none());
}

/// CORE-2: a misdirected append leaves stale zeros where it should have
/// gone and overwrites synced bytes elsewhere; both ranges are recorded.
#[test]
fn core_2_sim_disk_misdirected_append_lands_elsewhere() {
    for seed in 0..8 {
        let d = disk(seed);
        let mut f = d.create(p("/n/a")).unwrap();
        f.append(&[1u8; 1000]).unwrap();
        f.sync_data().unwrap();
        d.misdirect_next_append(Some(p("/n")));
        f.append(&[7u8; 100]).unwrap();
        let got = d.current_bytes(p("/n/a")).unwrap();
        assert_eq!(got.len(), 1100);
        assert!(got[1000..].iter().all(|b| *b == 0), "intended range is stale");
        assert_eq!(got[..1000].iter().filter(|b| **b == 7).count(), 100, "landed inside the file");
        assert_eq!(d.damage_at(p("/n/a")).len(), 2);
        assert_eq!(d.counters().get(FaultClass::MisdirectedWrite), 1);
        // Only the next append is misdirected.
        f.append(&[9u8; 10]).unwrap();
        assert_eq!(&d.current_bytes(p("/n/a")).unwrap()[1100..], &[9u8; 10]);
    }
}

/// CORE-1: EIO rules fail exactly the next K matching operations (by class
/// and path prefix) and are counted.
#[test]
fn core_1_sim_disk_eio_rules_fail_the_next_k_matching_operations() {
    let d = disk(6);
    d.create_dir_all(p("/n/wal")).unwrap();
    let mut w = d.create(p("/n/wal/s")).unwrap();
    let mut o = d.create(p("/n/other")).unwrap();
    d.fail_next(IoClass::Write, Some(p("/n/wal")), 2);
    assert!(o.append(b"ok").is_ok());
    assert!(w.append(b"x").is_err());
    assert!(w.append(b"x").is_err());
    assert!(w.append(b"x").is_ok());
    d.fail_next(IoClass::Sync, None, 1);
    assert!(o.sync_data().is_err());
    assert!(o.sync_data().is_ok());
    d.fail_next(IoClass::Read, Some(p("/n/other")), 1);
    let mut buf = [0u8; 2];
    assert!(o.read_exact_at(&mut buf, 0).is_err());
    o.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"ok");
    let c = d.counters();
    assert_eq!((c.get(FaultClass::WriteEio), c.get(FaultClass::FsyncEio), c.get(FaultClass::ReadEio)), (2, 1, 1));
    assert_eq!(d.injected_errors(), 4);
    d.fail_next(IoClass::Write, None, 5);
    d.heal();
    assert!(w.append(b"y").is_ok());
}

/// REPL-9: renaming a directory carries its (durable) contents; a rename
/// onto a non-empty directory is refused like on a real file system.
#[test]
fn repl_9_sim_disk_directory_rename_moves_the_subtree() {
    let d = disk(7);
    d.create_dir_all(p("/n/snap/.tmp-1")).unwrap();
    d.sync_dir(p("/n")).unwrap();
    write_atomic(&d, p("/n/snap/.tmp-1/m"), b"manifest").unwrap();
    d.rename(p("/n/snap/.tmp-1"), p("/n/snap/1")).unwrap();
    d.sync_dir(p("/n/snap")).unwrap();
    d.crash(CrashKind::PowerLoss { torn: true });
    assert_eq!(d.read_bounded(p("/n/snap/1/m"), 100).unwrap(), b"manifest");
    d.create_dir_all(p("/n/snap/2")).unwrap();
    assert!(d.rename(p("/n/snap/2"), p("/n/snap/1")).is_err());
    assert_eq!(d.list(p("/n/snap")).unwrap(), vec!["1".to_string(), "2".to_string()]);
    d.remove_dir_all(p("/n/snap/1")).unwrap();
    assert!(!d.exists(p("/n/snap/1/m")));
    d.crash(CrashKind::PowerLoss { torn: false });
    assert_eq!(d.read_bounded(p("/n/snap/1/m"), 100).unwrap(), b"manifest", "unsynced removal undone");
}

/// REPL-9: at power loss the file system may have committed some unsynced
/// directory changes on its own, but only in order: the survivors are a
/// prefix of the changes, and a rename is all or nothing.
#[test]
fn repl_9_sim_disk_unsynced_directory_changes_survive_only_as_an_ordered_prefix() {
    let mut kept_some = 0;
    for seed in 0..60 {
        let d = disk(seed);
        write_atomic(&d, p("/n/old"), b"x").unwrap();
        for name in ["a", "b", "c", "d"] {
            d.create(&Path::new("/n").join(name)).unwrap();
        }
        d.rename(p("/n/old"), p("/n/new")).unwrap();
        let injected = d.crash(CrashKind::PowerLoss { torn: true });
        let names = d.list(p("/n")).unwrap();
        let created: Vec<&str> = ["a", "b", "c", "d"].into_iter().filter(|n| names.iter().any(|x| x == n)).collect();
        assert_eq!(created, ["a", "b", "c", "d"][..created.len()].to_vec(), "seed {seed}: {names:?}");
        let renamed = names.iter().any(|n| n == "new");
        assert_ne!(renamed, names.iter().any(|n| n == "old"), "seed {seed}: a rename is atomic: {names:?}");
        if renamed {
            assert_eq!(created.len(), 4, "the rename came last");
        }
        if injected.contains(&FaultClass::UnsyncedMetadataKept) {
            kept_some += 1;
        } else {
            assert!(created.is_empty() && !renamed);
        }
        // Whatever survived is durable now: another power loss changes nothing.
        d.crash(CrashKind::PowerLoss { torn: false });
        assert_eq!(d.list(p("/n")).unwrap(), names);
    }
    assert!(kept_some > 3, "{kept_some}");
}
