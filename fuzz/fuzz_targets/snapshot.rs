//! Snapshot validation and loading (docs/formats.md §4, REPL-8, F-S4): the
//! first piece of the input is `manifest.json`, the others are data files
//! (`data-000000.bin`, ...), in a directory named after the manifest's
//! boundary. With mode bit 0 the manifest's sizes and checksums and its
//! envelope crc are recomputed from the given files (bit 1 also reseals the
//! data file headers), so the fuzzer reaches the version records.
//! Properties: never a panic; loading into a store and the scrub's
//! streaming verification agree (both accept, or both refuse with the same
//! code); a loaded snapshot also validates; every error has an F-S4 code.
#![no_main]

use std::path::Path;

use aerodb_snapshot::format::{data_file_name, snapshot_dir_name};
use aerodb_snapshot::load::{load_snapshot, validate_snapshot, verify_snapshot_streaming};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const CODES: &[&str] = &[
    "SNAPSHOT_MISSING_FILE",
    "SNAPSHOT_EXTRA_FILE",
    "SNAPSHOT_MANIFEST",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_CLUSTER",
    "SNAPSHOT_SIZE",
    "SNAPSHOT_CHECKSUM",
    "SNAPSHOT_CORRUPT",
    "SNAPSHOT_DIGEST",
];

/// The manifest body as JSON, if the envelope parses.
fn body_of(manifest: &[u8]) -> Option<Value> {
    let env: Value = serde_json::from_slice(manifest).ok()?;
    env.get("body").cloned()
}

/// Recomputes sizes and checksums in the manifest from `files`, and the envelope crc.
fn fix_manifest(manifest: &[u8], files: &[Vec<u8>]) -> Vec<u8> {
    let Some(mut body) = body_of(manifest) else { return manifest.to_vec() };
    if let Some(list) = body.get_mut("files").and_then(Value::as_array_mut) {
        for (entry, bytes) in list.iter_mut().zip(files) {
            if let Some(obj) = entry.as_object_mut() {
                obj.insert("size".into(), Value::from(bytes.len() as u64));
                obj.insert("crc32c".into(), Value::from(crc32c::crc32c(bytes)));
            }
        }
    }
    let raw = body.to_string();
    format!("{{\"crc32c\":{},\"body\":{raw}}}\n", crc32c::crc32c(raw.as_bytes())).into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut parts: Vec<Vec<u8>> = aerodb_fuzz::pieces(rest, 5).into_iter().map(<[u8]>::to_vec).collect();
    if parts.is_empty() {
        return;
    }
    let mut manifest = parts.remove(0);
    let mut files = parts;
    if mode & 2 == 2 {
        for f in &mut files {
            if f.len() >= 32 {
                let crc = crc32c::crc32c(&f[0..28]);
                f[28..32].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
    if mode & 1 == 1 {
        manifest = fix_manifest(&manifest, &files);
    }
    let boundary = body_of(&manifest).and_then(|b| b.get("boundary_commit_id").and_then(Value::as_u64)).unwrap_or(0);
    let dir = Path::new("/d/snapshots").join(snapshot_dir_name(boundary));
    let (_sim, disk) = aerodb_fuzz::mem_disk(&[&dir]);
    aerodb_fuzz::put_file(&*disk, &dir.join("manifest.json"), &manifest);
    for (i, f) in files.iter().enumerate() {
        aerodb_fuzz::put_file(&*disk, &dir.join(data_file_name(i as u32)), f);
    }
    let cluster = if mode & 4 == 4 { Some("0123456789abcdef0123456789abcdef") } else { None };
    let loaded = load_snapshot(&*disk, &dir, cluster);
    let streamed = verify_snapshot_streaming(&*disk, &dir, cluster, &mut |_| std::ops::ControlFlow::Continue(()));
    let validated = validate_snapshot(&*disk, &dir, cluster);
    for r in [loaded.as_ref().err(), streamed.as_ref().err(), validated.as_ref().err()].into_iter().flatten() {
        assert!(CODES.contains(&r.code()), "unexpected code {}: {r}", r.code());
        assert_eq!(r.rule_id(), "F-S4");
    }
    match (&loaded, &streamed) {
        (Ok((store, m)), Ok((m2, bytes))) => {
            assert_eq!(m, m2);
            assert_eq!(*bytes, m.data_bytes());
            assert_eq!(store.applied(), m.cut());
            assert_eq!(validated.as_ref().ok(), Some(m), "a loaded snapshot validates");
        }
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "load and streaming verification refuse alike: {a} / {b}"),
        (a, b) => panic!(
            "load and streaming verification disagree: {:?} / {:?}",
            a.as_ref().map(|_| ()).map_err(|e| e.to_string()),
            b.as_ref().map(|_| ()).map_err(|e| e.to_string())
        ),
    }
});
