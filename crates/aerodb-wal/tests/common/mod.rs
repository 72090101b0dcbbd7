//! Helpers shared by the aerodb-wal component tests: building WALs in temp
//! directories with the real file system, recovering them, and poking at the
//! segment files directly.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::SegmentAppender;
use aerodb_wal::recovery::{recover_wal, WalRecoveryError, WalRecoveryReport};
use aerodb_wal::segment::{parse_segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::{AppendedRecord, WalWriter};
use aerodb_wal::{ChainTip, Lsn, Op, Record, RecordPosition, StateDigest};
use bytes::Bytes;

/// Large enough that tests using it never roll a segment.
pub const NO_ROLL: u64 = 64 * 1024 * 1024;

pub fn put(collection: &str, key: &str, doc: &str) -> Op {
    Op::Put {
        collection: Bytes::copy_from_slice(collection.as_bytes()),
        key: Bytes::copy_from_slice(key.as_bytes()),
        doc: Bytes::copy_from_slice(doc.as_bytes()),
    }
}

pub fn del(collection: &str, key: &str) -> Op {
    Op::Delete { collection: Bytes::copy_from_slice(collection.as_bytes()), key: Bytes::copy_from_slice(key.as_bytes()) }
}

/// A deterministic, varied write set for commit number `i`.
pub fn sample_ops(i: u64) -> Vec<Op> {
    let mut ops = vec![put("users", &format!("user-{i}"), &format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 23) as usize * 3)))];
    if matches!(i % 3, 0) {
        ops.push(del("users", &format!("user-{}", i / 2)));
    }
    if matches!(i % 5, 0) {
        ops.push(put("orders", &format!("o{i}"), "{\"total\":42}"));
    }
    ops
}

/// A fresh WAL at genesis in `dir`.
pub fn new_writer(dir: &Path, segment_target: u64) -> WalWriter {
    let appender = SegmentAppender::create(OsDisk::shared(), dir, ChainTip::GENESIS.segment_header()).expect("create WAL");
    WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, segment_target)
}

/// Appends `sample_ops(1..=n)` (continuing from the writer's tip) and syncs.
pub fn write_samples(writer: &mut WalWriter, n: u64) -> Vec<AppendedRecord> {
    let first = writer.tip().commit_id + 1;
    let out: Vec<AppendedRecord> = (first..first + n).map(|i| writer.append(&sample_ops(i)).expect("append")).collect();
    writer.sync().expect("sync");
    out
}

/// Everything one recovery returned.
pub struct Recovered {
    pub appender: SegmentAppender,
    pub report: WalRecoveryReport,
    pub replayed: Vec<(Record, RecordPosition)>,
}

impl Recovered {
    /// A writer continuing after the recovered history.
    pub fn into_writer(self, segment_target: u64) -> WalWriter {
        let digest = self.replayed.last().map_or(StateDigest::EMPTY, |(r, _)| r.state_digest);
        WalWriter::new(self.appender, self.report.end, digest, segment_target)
    }
    pub fn positions(&self) -> Vec<RecordPosition> {
        self.replayed.iter().map(|(_, p)| *p).collect()
    }
}

/// Recovers `dir`, collecting every replayed record.
pub fn recover(dir: &Path) -> Result<Recovered, WalRecoveryError> {
    let mut replayed = Vec::new();
    let (appender, report) = recover_wal(OsDisk::shared(), dir, |rec, pos| {
        replayed.push((rec.clone(), pos));
        Ok(())
    })?;
    Ok(Recovered { appender, report, replayed })
}

/// Segment files in `dir`, sorted by start LSN.
pub fn segment_files(dir: &Path) -> Vec<(Lsn, PathBuf)> {
    let mut out: Vec<(Lsn, PathBuf)> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry"))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            parse_segment_file_name(&name).map(|lsn| (lsn, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The file holding the record that starts at `lsn`, and the file offset of `lsn`.
pub fn locate(dir: &Path, lsn: Lsn) -> (PathBuf, u64) {
    let files = segment_files(dir);
    let (start, path) = files.iter().rev().find(|(start, _)| *start <= lsn).expect("segment holding lsn").clone();
    (path, SEGMENT_HEADER_LEN + (lsn - start))
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("metadata").len()
}

pub fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).expect("open for append");
    f.write_all(bytes).expect("append bytes");
    f.sync_all().expect("sync");
}

/// XORs the byte at `offset` of `path` with `mask`.
pub fn flip_byte(path: &Path, offset: u64, mask: u8) {
    let mut data = fs::read(path).expect("read");
    data[offset as usize] ^= mask;
    fs::write(path, data).expect("write");
}

pub fn truncate_file(path: &Path, len: u64) {
    let f = fs::OpenOptions::new().write(true).open(path).expect("open");
    f.set_len(len).expect("set_len");
}

/// The ops of every replayed record.
pub fn replayed_ops(r: &Recovered) -> Vec<Vec<Op>> {
    r.replayed.iter().map(|(rec, _)| rec.ops().to_vec()).collect()
}
