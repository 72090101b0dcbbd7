#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! F-S4, F-S3, F-S1 and REPL-4 for the primary's recovery: every way to
//! break a snapshot is rejected with its own code and recovery falls back
//! to an older base with the same final digest; a snapshot whose cut does
//! not match the WAL is a hard failure; incomplete snapshot directories
//! are removed and reported.

mod common;

use std::fs;
use std::path::Path;

use aerodb_mvcc::AppliedState;
use aerodb_snapshot::{
    cleanup_incomplete, create_snapshot_with, list_snapshots, load_snapshot, recover_primary, validate_snapshot, PrimaryRecoveryError, SnapshotOptions,
    StreamLoad,
};
use aerodb_wal::checksummed::write_checksummed;
use common::*;

const OPTIONS: SnapshotOptions = SnapshotOptions { file_target_bytes: 2048, batch_keys: 4, fsync_in_background: true };

/// A WAL of 140 commits with snapshots at 60 (older) and 120 (newer).
struct Fixture {
    l: Layout,
    old: u64,
    new: u64,
    expected: AppliedState,
}

fn fixture() -> Fixture {
    let l = Layout::new();
    let mut h = History::create(&l.wal(), 4096);
    h.commit_samples(60, "fx");
    let old = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap().commit_id;
    h.commit_samples(60, "fx");
    let newer = create_snapshot_with(&*disk(), &l.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    assert!(newer.files >= 3, "fixture needs several data files");
    h.commit_samples(20, "fx");
    let expected = h.store.applied();
    drop(h);
    Fixture { l, old, new: newer.commit_id, expected }
}

/// Rewrites the manifest body and re-checksums it (a consistent but wrong manifest).
fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let env: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let mut body = env["body"].clone();
    f(&mut body);
    write_checksummed(&*disk(), &path, &body).unwrap();
}

fn flip(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    b[at] ^= 0x20;
    fs::write(path, b).unwrap();
}

fn data(dir: &Path, i: u32) -> std::path::PathBuf {
    dir.join(format!("data-{i:06}.bin"))
}

/// Rewrites data file `i` with `f` applied and records its new size and
/// crc32c in the (re-checksummed) manifest, so only deeper checks can tell.
fn rewrite_data_consistently(dir: &Path, i: u32, f: impl FnOnce(&mut Vec<u8>)) {
    let path = data(dir, i);
    let mut b = fs::read(&path).unwrap();
    f(&mut b);
    fs::write(&path, &b).unwrap();
    let (size, crc) = (b.len() as u64, crc32c::crc32c(&b));
    edit_manifest(dir, |m| {
        m["files"][i as usize]["size"] = size.into();
        m["files"][i as usize]["crc32c"] = crc.into();
    });
}

type Breakage = (&'static str, fn(&Path), &'static str, Option<&'static str>);

/// Each way to break a snapshot: name, mutation, code from `load_snapshot`,
/// code from `validate_snapshot` (None: only a full load can tell).
fn breakages() -> Vec<Breakage> {
    vec![
        (
            "truncated data file",
            |d| {
                let p = data(d, 1);
                let len = fs::metadata(&p).unwrap().len();
                fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 1).unwrap();
            },
            "SNAPSHOT_SIZE",
            Some("SNAPSHOT_SIZE"),
        ),
        (
            "truncated to the header",
            |d| {
                fs::OpenOptions::new().write(true).open(data(d, 0)).unwrap().set_len(32).unwrap();
            },
            "SNAPSHOT_SIZE",
            Some("SNAPSHOT_SIZE"),
        ),
        (
            "flipped byte in a record",
            |d| {
                let p = data(d, 1);
                let len = fs::metadata(&p).unwrap().len() as usize;
                flip(&p, len / 2);
            },
            "SNAPSHOT_CHECKSUM",
            Some("SNAPSHOT_CHECKSUM"),
        ),
        ("flipped record length", |d| flip(&data(d, 0), 32 + 1), "SNAPSHOT_CHECKSUM", Some("SNAPSHOT_CHECKSUM")),
        ("flipped byte in a data header", |d| flip(&data(d, 0), 17), "SNAPSHOT_CHECKSUM", Some("SNAPSHOT_CHECKSUM")),
        (
            "flipped byte in the manifest",
            |d| {
                let p = d.join("manifest.json");
                let text = fs::read_to_string(&p).unwrap();
                let at = text.find("\"version_count\":").unwrap() + "\"version_count\":".len();
                flip(&p, at);
            },
            "SNAPSHOT_MANIFEST",
            Some("SNAPSHOT_MANIFEST"),
        ),
        ("manifest is not JSON", |d| fs::write(d.join("manifest.json"), b"{\"crc32c\":1,").unwrap(), "SNAPSHOT_MANIFEST", Some("SNAPSHOT_MANIFEST")),
        ("manifest above 1 MiB", |d| fs::write(d.join("manifest.json"), vec![b' '; 1024 * 1024 + 1]).unwrap(), "SNAPSHOT_MANIFEST", Some("SNAPSHOT_MANIFEST")),
        ("manifest: wrong state digest", |d| edit_manifest(d, |m| m["state_digest"] = "0000000000000000000000000000abcd".into()), "SNAPSHOT_DIGEST", None),
        ("manifest: wrong format version", |d| edit_manifest(d, |m| m["format_version"] = 3.into()), "SNAPSHOT_FORMAT", Some("SNAPSHOT_FORMAT")),
        (
            "manifest: format 2 without its history horizon",
            |d| {
                edit_manifest(d, |m| {
                    m.as_object_mut().unwrap().remove("history_horizon");
                })
            },
            "SNAPSHOT_MANIFEST",
            Some("SNAPSHOT_MANIFEST"),
        ),
        (
            "manifest: history horizon at the boundary",
            |d| edit_manifest(d, |m| m["history_horizon"] = m["boundary_commit_id"].clone()),
            "SNAPSHOT_MANIFEST",
            Some("SNAPSHOT_MANIFEST"),
        ),
        (
            "manifest: history horizon the versions held contradict (MVCC-4)",
            |d| edit_manifest(d, |m| m["history_horizon"] = (m["boundary_commit_id"].as_u64().unwrap() - 1).into()),
            "SNAPSHOT_CORRUPT",
            None,
        ),
        (
            "data file of format 1 in a format 2 snapshot",
            |d| {
                rewrite_data_consistently(d, 0, |b| {
                    b[8..12].copy_from_slice(&1u32.to_le_bytes());
                    let crc = crc32c::crc32c(&b[0..28]);
                    b[28..32].copy_from_slice(&crc.to_le_bytes());
                })
            },
            "SNAPSHOT_FORMAT",
            Some("SNAPSHOT_FORMAT"),
        ),
        (
            "manifest: boundary differs from the directory name",
            |d| edit_manifest(d, |m| m["boundary_commit_id"] = 7.into()),
            "SNAPSHOT_MANIFEST",
            Some("SNAPSHOT_MANIFEST"),
        ),
        ("manifest: wrong file crc32c", |d| edit_manifest(d, |m| m["files"][0]["crc32c"] = 12345.into()), "SNAPSHOT_CHECKSUM", Some("SNAPSHOT_CHECKSUM")),
        ("manifest: wrong file size", |d| edit_manifest(d, |m| m["files"][1]["size"] = 40.into()), "SNAPSHOT_SIZE", Some("SNAPSHOT_SIZE")),
        (
            "manifest: wrong version count",
            |d| {
                edit_manifest(d, |m| {
                    let n = m["version_count"].as_u64().unwrap();
                    m["version_count"] = (n + 1).into();
                })
            },
            "SNAPSHOT_CORRUPT",
            None,
        ),
        ("manifest: unknown field", |d| edit_manifest(d, |m| m["taken_at"] = "noon".into()), "SNAPSHOT_MANIFEST", Some("SNAPSHOT_MANIFEST")),
        ("manifest: bad fingerprint text", |d| edit_manifest(d, |m| m["boundary_fingerprint"] = "xyz".into()), "SNAPSHOT_MANIFEST", Some("SNAPSHOT_MANIFEST")),
        ("manifest: file renamed", |d| edit_manifest(d, |m| m["files"][0]["name"] = "data-9.bin".into()), "SNAPSHOT_MANIFEST", Some("SNAPSHOT_MANIFEST")),
        ("manifest: wrong cluster", |d| edit_manifest(d, |m| m["cluster_id"] = OTHER_CLUSTER.into()), "SNAPSHOT_CLUSTER", Some("SNAPSHOT_CLUSTER")),
        ("manifest missing", |d| fs::remove_file(d.join("manifest.json")).unwrap(), "SNAPSHOT_MISSING_FILE", Some("SNAPSHOT_MISSING_FILE")),
        ("data file missing", |d| fs::remove_file(data(d, 1)).unwrap(), "SNAPSHOT_MISSING_FILE", Some("SNAPSHOT_MISSING_FILE")),
        ("extra file", |d| fs::write(d.join("notes.txt"), b"hello").unwrap(), "SNAPSHOT_EXTRA_FILE", Some("SNAPSHOT_EXTRA_FILE")),
        ("extra directory", |d| fs::create_dir(d.join("sub")).unwrap(), "SNAPSHOT_EXTRA_FILE", Some("SNAPSHOT_EXTRA_FILE")),
        (
            "data: doc byte changed, checksums consistent",
            |d| {
                rewrite_data_consistently(d, 0, |b| {
                    let at = b.windows(4).position(|w| w == b"\"n\":").unwrap() + 4;
                    b[at] = if b[at] == b'9' { b'1' } else { b'9' };
                })
            },
            "SNAPSHOT_DIGEST",
            None,
        ),
        (
            "data: last record dropped, checksums consistent",
            |d| {
                rewrite_data_consistently(d, 0, |b| {
                    // Walk the records and cut the last one off.
                    let mut at = 32;
                    let mut last = at;
                    while at < b.len() {
                        last = at;
                        at += u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
                    }
                    b.truncate(last);
                })
            },
            "SNAPSHOT_CORRUPT",
            None,
        ),
        ("data: trailing garbage, checksums consistent", |d| rewrite_data_consistently(d, 2, |b| b.extend_from_slice(&[1, 0])), "SNAPSHOT_CORRUPT", None),
        ("data: bad magic, checksums consistent", |d| rewrite_data_consistently(d, 0, |b| b[0] = b'X'), "SNAPSHOT_FORMAT", Some("SNAPSHOT_FORMAT")),
        (
            "data: files swapped, checksums consistent",
            |d| {
                let (a, b) = (fs::read(data(d, 0)).unwrap(), fs::read(data(d, 1)).unwrap());
                fs::write(data(d, 0), &b).unwrap();
                fs::write(data(d, 1), &a).unwrap();
                edit_manifest(d, |m| {
                    let files = m["files"].as_array_mut().unwrap();
                    let (f0, f1) = (files[0].clone(), files[1].clone());
                    files[0]["size"] = f1["size"].clone();
                    files[0]["crc32c"] = f1["crc32c"].clone();
                    files[1]["size"] = f0["size"].clone();
                    files[1]["crc32c"] = f0["crc32c"].clone();
                });
            },
            "SNAPSHOT_CORRUPT",
            Some("SNAPSHOT_CORRUPT"),
        ),
    ]
}

/// Loads the snapshot in `dir` the way a replica's bootstrap does: the
/// manifest, then every data file's bytes in `piece`-byte pieces through a
/// [`StreamLoad`]. None when the manifest is unreadable or a listed file is
/// missing (a transfer would never start or finish).
fn stream_load(dir: &Path, piece: usize) -> Option<Result<(aerodb_mvcc::Store, aerodb_snapshot::Manifest), aerodb_snapshot::SnapshotError>> {
    let manifest = aerodb_snapshot::read_manifest(&*disk(), dir).ok()?;
    let files: Vec<Vec<u8>> = manifest.files.iter().map(|f| fs::read(dir.join(&f.name))).collect::<Result<_, _>>().ok()?;
    let mut load = StreamLoad::new("streamed", manifest);
    for (i, bytes) in files.iter().enumerate() {
        for p in bytes.chunks(piece) {
            if let Err(e) = load.piece(i, bytes::Bytes::copy_from_slice(p)) {
                return Some(Err(e));
            }
        }
    }
    Some(load.finish(Some(CLUSTER)))
}

/// F-S4, REPL-8: a snapshot streamed in pieces of any size (a replica's
/// bootstrap, nothing read back) loads the same state, digest and versions
/// as a load from disk; pieces out of file order are refused.
#[test]
fn f_s4_streamed_load_equals_the_load_from_disk_for_any_piece_size() {
    let f = fixture();
    let dir = f.l.snapshot(f.new);
    let (from_disk, manifest) = load_snapshot(&*disk(), &dir, Some(CLUSTER)).unwrap();
    for piece in [1, 3, 20, 33, 1000, 4096, 1 << 20] {
        let (streamed, m) = stream_load(&dir, piece).unwrap().unwrap();
        assert_eq!(m, manifest);
        assert_eq!(streamed.applied(), from_disk.applied(), "piece {piece}");
        assert_eq!(streamed.version_count(), from_disk.version_count(), "piece {piece}");
        assert_eq!(streamed.versions_upto(u64::MAX, None, usize::MAX), from_disk.versions_upto(u64::MAX, None, usize::MAX), "piece {piece}");
    }
    let mut load = StreamLoad::new("streamed", manifest);
    let err = load.piece(1, bytes::Bytes::from_static(b"x")).unwrap_err();
    assert_eq!((err.code(), err.rule_id()), ("SNAPSHOT_SIZE", "F-S4"), "file 1 cannot start before file 0 is whole");
    let load = StreamLoad::new("streamed", aerodb_snapshot::read_manifest(&*disk(), &dir).unwrap());
    assert_eq!(load.finish(Some(CLUSTER)).err().map(|e| e.code()), Some("SNAPSHOT_SIZE"), "nothing arrived");
}

/// F-S4: every way to break a snapshot (truncated file, flipped byte,
/// wrong manifest field, missing file, extra file, wrong cluster, content
/// that only the digest or the record structure can catch) is rejected
/// with its own stable code and rule F-S4, by `validate_snapshot` where the
/// check does not need a load, and always by `load_snapshot`.
#[test]
fn f_s4_every_broken_snapshot_is_rejected_with_its_code() {
    let f = fixture();
    let pristine = dir_bytes(&f.l.snapshot(f.new));
    validate_snapshot(&*disk(), &f.l.snapshot(f.new), Some(CLUSTER)).unwrap();
    for (name, brk, load_code, validate_code) in breakages() {
        let dir = f.l.snapshot(f.new);
        fs::remove_dir_all(&dir).unwrap();
        fs::create_dir(&dir).unwrap();
        for (file, bytes) in &pristine {
            fs::write(dir.join(file), bytes).unwrap();
        }
        brk(&dir);
        let err = load_snapshot(&*disk(), &dir, Some(CLUSTER)).err().unwrap_or_else(|| panic!("{name}: load accepted a broken snapshot"));
        assert_eq!(err.code(), load_code, "{name}: {err}");
        assert_eq!(err.rule_id(), "F-S4", "{name}");
        let validated = validate_snapshot(&*disk(), &dir, Some(CLUSTER));
        assert_eq!(validated.as_ref().err().map(|e| e.code()), validate_code, "{name}: {validated:?}");
        // A bootstrap's streamed load of the same bytes (pieces of any size)
        // rejects it with the same code, unless only the directory (a file
        // missing or extra) or the manifest itself is wrong.
        let directory_only = matches!(load_code, "SNAPSHOT_EXTRA_FILE" | "SNAPSHOT_MISSING_FILE");
        if let Some(streamed) = stream_load(&dir, 7_777).filter(|_| !directory_only) {
            assert_eq!(streamed.err().map(|e| e.code()), Some(load_code), "{name}: streamed");
        }
    }
    // And the pristine snapshot under a foreign cluster id.
    let dir = f.l.snapshot(f.old);
    let err = load_snapshot(&*disk(), &dir, Some(OTHER_CLUSTER)).err().unwrap();
    assert_eq!((err.code(), err.rule_id()), ("SNAPSHOT_CLUSTER", "F-S4"));
    assert_eq!(validate_snapshot(&*disk(), &dir, Some(OTHER_CLUSTER)).err().unwrap().code(), "SNAPSHOT_CLUSTER");
}

/// F-S4, REPL-4: with the newest snapshot broken in any way, recovery
/// rejects it (reported with its code, files left untouched), uses the
/// older snapshot plus the WAL after it, and ends in exactly the state a
/// full WAL replay gives.
#[test]
fn f_s4_recovery_falls_back_to_the_older_snapshot_with_the_same_digest() {
    for (name, brk, load_code, _) in breakages() {
        let f = fixture();
        let dir = f.l.snapshot(f.new);
        brk(&dir);
        let broken = dir_bytes(&dir);
        let (store, appender, report) = recover_primary(disk(), &f.l.snapshots(), &f.l.wal(), CLUSTER).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(store.applied(), f.expected, "{name}");
        assert_eq!(appender.end_lsn(), f.expected.end_lsn);
        assert_eq!(report.snapshot_used.as_ref().map(|s| s.commit_id), Some(f.old), "{name}");
        assert_eq!(report.rejected_snapshots.len(), 1, "{name}");
        let rejected = &report.rejected_snapshots[0];
        assert_eq!((rejected.commit_id, rejected.code, rejected.rule_id), (f.new, load_code, "F-S4"), "{name}");
        assert_eq!(report.store.replayed, Some((f.old + 1, f.expected.commit_id)), "{name}");
        assert_eq!(dir_bytes(&dir), broken, "{name}: a rejected snapshot is not modified");
        drop((store, appender));
        assert_eq!(full_replay(&f.l.wal()).applied(), f.expected);
    }
}

/// F-S4, REPL-4: with every snapshot broken, recovery replays the WAL from
/// genesis and reaches the same state; the report lists both rejections.
#[test]
fn f_s4_recovery_falls_back_to_genesis_when_every_snapshot_is_broken() {
    let f = fixture();
    flip(&data(&f.l.snapshot(f.new), 0), 40);
    edit_manifest(&f.l.snapshot(f.old), |m| m["cluster_id"] = OTHER_CLUSTER.into());
    let (store, _, report) = recover_primary(disk(), &f.l.snapshots(), &f.l.wal(), CLUSTER).unwrap();
    assert_eq!(store.applied(), f.expected);
    assert_eq!(all_versions(&store), all_versions(&full_replay(&f.l.wal())));
    assert!(report.snapshot_used.is_none());
    let codes: Vec<_> = report.rejected_snapshots.iter().map(|r| (r.commit_id, r.code)).collect();
    assert_eq!(codes, vec![(f.new, "SNAPSHOT_CHECKSUM"), (f.old, "SNAPSHOT_CLUSTER")]);
    assert_eq!(report.store.replayed, Some((1, f.expected.commit_id)));
}

/// REPL-4: recovery from the newest valid snapshot plus the WAL tail
/// reaches the same state as a full replay, and says which snapshot it used.
#[test]
fn repl_4_recovery_uses_the_newest_valid_snapshot() {
    let f = fixture();
    let (store, _, report) = recover_primary(disk(), &f.l.snapshots(), &f.l.wal(), CLUSTER).unwrap();
    assert_eq!(store.applied(), f.expected);
    let used = report.snapshot_used.unwrap();
    assert_eq!(used.commit_id, f.new);
    assert!(report.rejected_snapshots.is_empty() && report.removed_incomplete.is_empty());
    assert_eq!(report.store.replayed, Some((f.new + 1, f.expected.commit_id)));
    assert_eq!(all_versions(&store), all_versions(&full_replay(&f.l.wal())));
}

/// F-S3: a snapshot whose cut does not match the WAL — one taken from a
/// different history, one whose L_snap was altered (consistently
/// checksummed), one beyond the end of the WAL — is a hard failure citing
/// F-S3. Recovery does not fall back to the valid older snapshot.
#[test]
fn f_s3_snapshot_that_does_not_match_the_wal_is_fatal() {
    type Case = (&'static str, fn(&Fixture, &Layout));
    let cases: Vec<Case> = vec![
        ("snapshot from another history", |f, other| {
            // Same CommitId, different content: copy the other history's snapshot in its place.
            fs::remove_dir_all(f.l.snapshot(f.new)).unwrap();
            fs::create_dir(f.l.snapshot(f.new)).unwrap();
            for (file, bytes) in dir_bytes(&other.snapshot(f.new)) {
                fs::write(f.l.snapshot(f.new).join(file), bytes).unwrap();
            }
        }),
        ("L_snap altered", |f, _| {
            edit_manifest(&f.l.snapshot(f.new), |m| {
                let lsn = m["boundary_lsn"].as_u64().unwrap();
                m["boundary_lsn"] = (lsn + 1).into();
            })
        }),
        ("F_snap altered", |f, _| edit_manifest(&f.l.snapshot(f.new), |m| m["boundary_fingerprint"] = "00000000000000000000000000000001".into())),
        ("snapshot beyond the WAL", |f, other| {
            // The other history's snapshot at 160: the WAL here ends at 140.
            fs::create_dir(f.l.snapshot(160)).unwrap();
            for (file, bytes) in dir_bytes(&other.snapshot(160)) {
                fs::write(f.l.snapshot(160).join(file), bytes).unwrap();
            }
        }),
    ];
    // Another history with snapshots at the same CommitId (120) and at 160.
    let other = Layout::new();
    let mut h = History::create(&other.wal(), 4096);
    h.commit_samples(120, "another");
    create_snapshot_with(&*disk(), &other.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    h.commit_samples(40, "another");
    create_snapshot_with(&*disk(), &other.snapshots(), &h.store, CLUSTER, &OPTIONS, None).unwrap();
    drop(h);
    for (name, setup) in cases {
        let f = fixture();
        setup(&f, &other);
        let err = match recover_primary(disk(), &f.l.snapshots(), &f.l.wal(), CLUSTER) {
            Err(e) => e,
            Ok((_, _, report)) => panic!("{name}: recovered with {:?}", report.snapshot_used),
        };
        assert_eq!((err.code(), err.rule_id()), ("SNAPSHOT_WAL_MISMATCH", "F-S3"), "{name}: {err}");
        assert!(matches!(err, PrimaryRecoveryError::Store { snapshot: Some(_), .. }), "{name}");
        // The snapshot itself is valid: it is the pairing with this WAL that is wrong.
        let newest = list_snapshots(&*disk(), &f.l.snapshots()).unwrap()[0].clone();
        load_snapshot(&*disk(), &newest.path, Some(CLUSTER)).unwrap();
    }
}

/// F-S1: incomplete snapshot directories (creation interrupted before the
/// rename: `.tmp-*`; deletion interrupted: `.del-*`) are never listed as
/// snapshots, are removed at recovery and reported, and a new snapshot at
/// the same boundary replaces a stale temporary directory.
#[test]
fn f_s1_incomplete_snapshot_dirs_are_removed_and_reported() {
    let f = fixture();
    let snaps = f.l.snapshots();
    // A creation that crashed after writing data files: the newest snapshot
    // moved back to its temporary name, without its manifest.
    let tmp = snaps.join(format!(".tmp-{:020}", f.new));
    fs::rename(f.l.snapshot(f.new), &tmp).unwrap();
    fs::remove_file(tmp.join("manifest.json")).unwrap();
    let del = snaps.join(format!(".del-{:020}", 3));
    fs::create_dir(&del).unwrap();
    fs::write(del.join("data-000000.bin"), b"partial").unwrap();
    let listed: Vec<u64> = list_snapshots(&*disk(), &snaps).unwrap().iter().map(|s| s.commit_id).collect();
    assert_eq!(listed, vec![f.old]);

    let (store, _, report) = recover_primary(disk(), &snaps, &f.l.wal(), CLUSTER).unwrap();
    assert_eq!(store.applied(), f.expected);
    assert_eq!(report.removed_incomplete, vec![format!(".del-{:020}", 3), format!(".tmp-{:020}", f.new)]);
    assert_eq!(report.snapshot_used.map(|s| s.commit_id), Some(f.old));
    assert_eq!(names(&snaps), vec![format!("{:020}", f.old)]);
    assert!(cleanup_incomplete(&*disk(), &snaps).unwrap().is_empty());

    // A stale temporary directory for the boundary being created is replaced.
    let stale = snaps.join(format!(".tmp-{:020}", f.expected.commit_id));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("junk"), b"junk").unwrap();
    let info = create_snapshot_with(&*disk(), &snaps, &store, CLUSTER, &OPTIONS, None).unwrap();
    assert_eq!(info.commit_id, f.expected.commit_id);
    assert!(!stale.exists());
    validate_snapshot(&*disk(), &info.path, Some(CLUSTER)).unwrap();
}
