#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Checksummed metadata files (F-RC2: "corrupt ⇒ refuse to start"): a
//! written file reads back identically, and any damage is reported as a
//! checksum or format error, never a panic and never different data.

use aerodb_wal::checksummed::{read_checksummed, write_checksummed, ChecksummedFileError};
use aerodb_wal::disk::OsDisk;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    cluster_id: String,
    role: String,
    last_commit_id: u64,
    fingerprint: String,
    peers: Vec<String>,
    note: Option<String>,
}

fn sample() -> Meta {
    Meta {
        cluster_id: "0123456789abcdef0123456789abcdef".into(),
        role: "replica".into(),
        last_commit_id: 4_294_967_301,
        fingerprint: "4145524f44422d47454e455349532d31".into(),
        peers: vec!["10.0.0.1:7000".into(), "ünïcødé-peer".into()],
        note: Some("quote \" and backslash \\ and newline \n".into()),
    }
}

/// CORE-2: a checksummed file round-trips exactly, and rewriting it
/// replaces the content atomically (no temp file left behind).
#[test]
fn core_2_checksummed_file_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("replica.json");
    let disk = OsDisk::shared();
    write_checksummed(&*disk, &path, &sample()).unwrap();
    assert_eq!(read_checksummed::<Meta>(&*disk, &path).unwrap(), sample());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\"crc32c\":"), "{text}");
    assert!(text.ends_with('\n'));

    let mut changed = sample();
    changed.last_commit_id += 1;
    changed.note = None;
    write_checksummed(&*disk, &path, &changed).unwrap();
    assert_eq!(read_checksummed::<Meta>(&*disk, &path).unwrap(), changed);
    let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("replica.json")]);

    // Deterministic: writing the same value twice gives the same bytes.
    let again = tmp.path().join("again.json");
    write_checksummed(&*disk, &again, &changed).unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&path).unwrap());
}

/// CORE-2: every single-bit flip of every byte is refused with a checksum
/// or malformed error, never a panic. The one harmless exception is the
/// trailing newline turning into other JSON whitespace: the content read is
/// then still exactly what was written.
#[test]
fn core_2_checksummed_file_any_flip_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("meta.json");
    let disk = OsDisk::shared();
    write_checksummed(&*disk, &path, &sample()).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut checksum_errors = 0;
    let mut malformed_errors = 0;
    for at in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[at] ^= 1 << bit;
            std::fs::write(&path, &bad).unwrap();
            match read_checksummed::<Meta>(&*disk, &path) {
                Err(e @ ChecksummedFileError::Checksum { .. }) => {
                    assert_eq!(e.code(), "META_CHECKSUM_MISMATCH");
                    checksum_errors += 1;
                }
                Err(e @ ChecksummedFileError::Malformed { .. }) => {
                    assert_eq!(e.code(), "META_MALFORMED");
                    malformed_errors += 1;
                }
                Err(e) => panic!("flip {at}/{bit}: unexpected {e:?}"),
                Ok(meta) => {
                    assert_eq!(at, good.len() - 1, "flip at {at} bit {bit} went undetected");
                    assert!(matches!(bad[at], b' ' | b'\t' | b'\r'), "{:#x}", bad[at]);
                    assert_eq!(meta, sample(), "undetected flip changed the data");
                }
            }
        }
    }
    assert!(checksum_errors > 0 && malformed_errors > 0);
}

/// CORE-2: a truncated, empty, missing or oversized file is refused with
/// an error (dropping only the trailing newline is harmless).
#[test]
fn core_2_checksummed_file_truncation_and_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("meta.json");
    let disk = OsDisk::shared();
    write_checksummed(&*disk, &path, &sample()).unwrap();
    let good = std::fs::read(&path).unwrap();
    for cut in 0..good.len() - 1 {
        std::fs::write(&path, &good[..cut]).unwrap();
        let err = read_checksummed::<Meta>(&*disk, &path).unwrap_err();
        assert!(matches!(err, ChecksummedFileError::Malformed { .. }), "cut {cut}: {err:?}");
    }
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert_eq!(read_checksummed::<Meta>(&*disk, &path).unwrap(), sample());

    // A valid envelope whose body is another type is malformed, not accepted.
    #[derive(Serialize)]
    struct Other {
        x: u8,
    }
    write_checksummed(&*disk, &path, &Other { x: 1 }).unwrap();
    assert!(matches!(read_checksummed::<Meta>(&*disk, &path), Err(ChecksummedFileError::Malformed { .. })));

    let missing = read_checksummed::<Meta>(&*disk, &tmp.path().join("absent.json")).unwrap_err();
    assert!(matches!(missing, ChecksummedFileError::Io { .. }));
    assert_eq!(missing.code(), "META_UNREADABLE");

    std::fs::write(&path, vec![b' '; 2 * 1024 * 1024]).unwrap();
    assert!(matches!(read_checksummed::<Meta>(&*disk, &path), Err(ChecksummedFileError::Io { .. })));
}
