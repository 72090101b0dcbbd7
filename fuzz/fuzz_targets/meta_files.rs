//! Every small file read at startup (docs/formats.md §1, §3, §6, §7, §9;
//! F-RC2, REPL-11, CORE-5, RES-2, REPL-1), through the node's own readers
//! on an in-memory disk: `replica/replica.json`, `replica/halt.json`,
//! `fence.json`, `history-loss.json`, a snapshot's `manifest.json`, the
//! primary's replica registry `replicas.json`, a `--repl-token-file`, and
//! the bare envelope (`aerodb_wal::checksummed`, which `identity.json`
//! uses too). The first byte picks the file (low 3 bits) and asks for the
//! envelope crc to be recomputed (bit 3), so mutated bodies reach the
//! body checks. Properties: never a panic; every refusal has a stable
//! code; whatever is accepted is written back by the node's writer and
//! reads back equal; a token is accepted exactly when it has the
//! documented format, and its refusal never depends on its bytes.
#![no_main]

use std::path::Path;

use aerodb_repl_core::auth::{ReplToken, MAX_TOKEN_BYTES, MIN_TOKEN_BYTES};
use aerodb_repl_core::fence::{fence_path, read_fence};
use aerodb_repl_core::halt::Reason;
use aerodb_repl_core::metadata::{read_halt, read_metadata, write_halt, write_metadata, ReplicaPaths};
use aerodb_repl_core::registry::{read_registry, write_registry, REGISTRY_FILE};
use aerodb_snapshot::format::{snapshot_dir_name, SNAPSHOT_FORMAT_VERSION};
use aerodb_snapshot::load::read_manifest;
use aerodb_wal::checksummed::{read_checksummed, write_checksummed};
use aerodb_wal::history::{history_loss_path, read_history_losses};
use libfuzzer_sys::fuzz_target;

const META_CODES: &[&str] = &["META_UNREADABLE", "META_MALFORMED", "META_CHECKSUM_MISMATCH", "META_VERSION"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode & 8 == 8 { aerodb_fuzz::reseal_envelope(rest) } else { rest.to_vec() };
    let root = Path::new("/d");
    let paths = ReplicaPaths::new(root);
    // A manifest must name the boundary its directory is named after.
    let boundary = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|env| env.get("body").and_then(|b| b.get("boundary_commit_id")).and_then(serde_json::Value::as_u64))
        .unwrap_or(0);
    let snap = root.join("snapshots").join(snapshot_dir_name(boundary));
    let (_sim, disk) = aerodb_fuzz::mem_disk(&[root, &paths.dir, &snap]);
    let disk = &*disk;
    match mode & 7 {
        0 => {
            aerodb_fuzz::put_file(disk, &paths.metadata(), &bytes);
            match read_metadata(disk, &paths) {
                Ok(Some(meta)) => {
                    write_metadata(disk, &paths, &meta).expect("write back");
                    assert_eq!(read_metadata(disk, &paths).expect("read back"), Some(meta));
                }
                Ok(None) => panic!("a present replica.json is never read as absent"),
                Err(e) => {
                    let halt = e.to_halt();
                    assert!(META_CODES.contains(&halt.code()), "{}", halt.code());
                }
            }
        }
        1 => {
            aerodb_fuzz::put_file(disk, &paths.halt(), &bytes);
            match read_halt(disk, &paths) {
                Ok(Some(halt)) => {
                    let _ = (halt.code(), halt.rule_id(), halt.detail());
                    write_halt(disk, &paths, &halt).expect("write back");
                    assert_eq!(read_halt(disk, &paths).expect("read back"), Some(halt));
                }
                Ok(None) => panic!("a present halt.json is never read as absent"),
                Err(e) => assert!(META_CODES.contains(&e.to_halt().code())),
            }
        }
        2 => {
            aerodb_fuzz::put_file(disk, &fence_path(root), &bytes);
            match read_fence(disk, root) {
                Ok(Some(fence)) => {
                    let _ = fence.evidence();
                    write_checksummed(disk, &fence_path(root), &fence).expect("write back");
                    assert_eq!(read_fence(disk, root).expect("read back"), Some(fence));
                }
                Ok(None) => panic!("a present fence.json is never read as absent"),
                Err(e) => assert!(e.code.starts_with("META_") || e.code == "FENCE_VERSION", "{}", e.code),
            }
        }
        3 => {
            aerodb_fuzz::put_file(disk, &history_loss_path(root), &bytes);
            match read_history_losses(disk, root) {
                Ok(file) => {
                    write_checksummed(disk, &history_loss_path(root), &file).expect("write back");
                    assert_eq!(read_history_losses(disk, root).expect("read back"), file);
                }
                Err(e) => assert!(e.code.starts_with("META_"), "{}", e.code),
            }
        }
        4 => {
            aerodb_fuzz::put_file(disk, &snap.join("manifest.json"), &bytes);
            match read_manifest(disk, &snap) {
                // This build writes only the current format (a format 1 manifest is read, never written).
                Ok(m) if m.format_version == SNAPSHOT_FORMAT_VERSION => {
                    write_checksummed(disk, &snap.join("manifest.json"), &m).expect("write back");
                    assert_eq!(read_manifest(disk, &snap).expect("read back"), m);
                }
                Ok(m) => assert_eq!(m.history_horizon, 0, "a format 1 manifest is read with horizon 0"),
                Err(e) => assert!(["SNAPSHOT_MANIFEST", "SNAPSHOT_FORMAT"].contains(&e.code()), "{}", e.code()),
            }
        }
        5 => {
            aerodb_fuzz::put_file(disk, &root.join(REGISTRY_FILE), &bytes);
            match read_registry(disk, root) {
                Ok(Some(registry)) => {
                    for r in registry.list() {
                        let _ = (r.display_name(), registry.get(&r.replica_id));
                    }
                    let _ = registry.oldest_needed();
                    write_registry(disk, root, &registry).expect("write back");
                    let again = read_registry(disk, root).expect("read back").expect("present");
                    // The writer orders entries by replica id; the content is the same.
                    assert_eq!(again.to_file(), registry.to_file());
                }
                Ok(None) => panic!("a present replicas.json is never read as absent"),
                Err(e) => assert!(META_CODES.contains(&e.code()), "{}", e.code()),
            }
        }
        6 => {
            // A --repl-token-file's contents (the file checks before it are the node's).
            let body = rest.strip_suffix(b"\n").unwrap_or(rest);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            let valid = (MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&body.len()) && body.iter().all(|b| (0x21..=0x7e).contains(b));
            match ReplToken::parse(rest) {
                Ok(token) => {
                    assert!(valid, "an invalid token was accepted");
                    assert_eq!(format!("{token:?}"), "ReplToken(<redacted>)");
                }
                Err(e) => {
                    assert!(!valid, "a valid token was refused: {e}");
                    // The refusal never quotes the token: it is the same for every
                    // file with the same layout of printable and other bytes (a
                    // substring test alone is fooled by a "token" that spells
                    // words of the message itself).
                    let masked: Vec<u8> = rest.iter().map(|b| if (0x21..=0x7e).contains(b) { b'x' } else { *b }).collect();
                    let same = ReplToken::parse(&masked).map(|_| ()).expect_err("the masked file is as invalid");
                    assert_eq!(e.detail, same.detail, "the refusal depends on the token's bytes");
                }
            }
        }
        _ => {
            let path = root.join("identity.json");
            aerodb_fuzz::put_file(disk, &path, &bytes);
            match read_checksummed::<serde_json::Value>(disk, &path) {
                Ok(v) => {
                    write_checksummed(disk, &path, &v).expect("write back");
                    assert_eq!(read_checksummed::<serde_json::Value>(disk, &path).expect("read back"), v);
                }
                Err(e) => assert!(META_CODES.contains(&e.code()), "{}", e.code()),
            }
        }
    }
});
