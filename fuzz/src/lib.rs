//! Helpers shared by the fuzz targets: splitting one input into several
//! files, resealing checksums so the fuzzer reaches the checks behind them,
//! and an in-memory disk for the readers that take a [`Disk`].
//!
//! Input conventions (the seed corpora, written by `cargo xtask fuzz-corpus`,
//! follow them):
//! - Most targets read a first *mode* byte; its bit 0 asks the target to
//!   recompute the checksums the input carries before decoding (so mutated
//!   bodies get past the checksum to the structural checks).
//! - Several files travel in one input as *pieces*: each is a `u32 LE`
//!   length followed by that many bytes; a short tail is the last piece.

use std::path::Path;
use std::sync::Arc;

use aerodb_sim::disk::SimDisk;
use aerodb_sim::rng::SimRng;
use aerodb_wal::disk::Disk;

/// Splits `data` into at most `max` pieces (see the module docs).
pub fn pieces(mut data: &[u8], max: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < max {
        if data.len() < 4 {
            out.push(data);
            break;
        }
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let rest = &data[4..];
        let len = len.min(rest.len());
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    out
}

/// Feeds `data` in pieces whose sizes follow a small generator seeded by
/// `seed` (1 to 64 bytes, sometimes everything at once).
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = if state % 17 == 0 { data.len() - at } else { 1 + (state as usize % 64) };
        let end = (at + n).min(data.len());
        out.push(&data[at..end]);
        at = end;
    }
    out
}

/// An empty in-memory disk with `dirs` created.
pub fn mem_disk(dirs: &[&Path]) -> (SimDisk, Arc<dyn Disk>) {
    let sim = SimDisk::new(SimRng::new(0, 0));
    for d in dirs {
        // The root of a fresh SimDisk always takes new directories.
        let _ = sim.mkdir_durable(d);
    }
    let shared = sim.shared();
    (sim, shared)
}

/// Writes `bytes` at `path` on `disk` (creating the file).
pub fn put_file(disk: &dyn Disk, path: &Path, bytes: &[u8]) {
    if let Ok(mut f) = disk.create(path) {
        let _ = f.append(bytes);
        let _ = f.sync_data();
    }
}

/// Recomputes the crc32c of a 64-byte header whose checksum covers bytes
/// `[0, 60)` and sits at `[60, 64)` (WAL segment header, durable mark).
pub fn reseal_header64(b: &mut [u8]) {
    if b.len() >= 64 {
        let crc = crc32c::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the crc32c of the WAL record at the start of `b`
/// (`crc32c(record[8..len]) then record[0..4]`) when its declared length
/// is plausible and present. Returns that length.
pub fn reseal_record(b: &mut [u8]) -> Option<usize> {
    if b.len() < 8 {
        return None;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if !(56..=b.len()).contains(&len) {
        return None;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[8..len]), &b[0..4]);
    b[4..8].copy_from_slice(&crc.to_le_bytes());
    Some(len)
}

/// Reseals every record of a WAL byte stream, one after another, as far as
/// their lengths allow.
pub fn reseal_records(b: &mut [u8]) {
    let mut at = 0;
    while let Some(len) = reseal_record(&mut b[at..]) {
        at += len;
    }
}

/// Recomputes the crc32c of a checksummed JSON envelope
/// `{"crc32c":N,"body":{...}}` when it parses; otherwise returns the bytes
/// unchanged.
pub fn reseal_envelope(bytes: &[u8]) -> Vec<u8> {
    #[derive(serde::Deserialize)]
    struct Env<'a> {
        #[serde(borrow)]
        body: &'a serde_json::value::RawValue,
    }
    match serde_json::from_slice::<Env<'_>>(bytes) {
        Ok(env) => {
            let body = env.body.get();
            format!("{{\"crc32c\":{},\"body\":{body}}}\n", crc32c::crc32c(body.as_bytes())).into_bytes()
        }
        Err(_) => bytes.to_vec(),
    }
}

/// Recomputes the crc32c of every frame of a replication byte stream
/// (header bytes `[0, 8)` then the payload), as far as the lengths allow.
pub fn reseal_frames(b: &mut [u8]) {
    let mut at = 0;
    while b.len() >= at + 12 {
        let len = u32::from_le_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize;
        let Some(end) = (at + 12).checked_add(len).filter(|e| *e <= b.len()) else { return };
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b[at..at + 8]), &b[at + 12..end]);
        b[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}
