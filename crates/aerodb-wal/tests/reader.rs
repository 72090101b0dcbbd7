#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Segment rolling and reading whole records back (the bytes a primary
//! ships): records never straddle segments (§1 "WAL segment"), every
//! returned record is crc-verified (CORE-2), chunks stay inside one segment
//! and only durable bytes are served (CORE-1, §4).

mod common;

use aerodb_wal::disk::OsDisk;
use aerodb_wal::log::{LogError, SegmentList, WalReader};
use aerodb_wal::record::{decode_record, RecordDecodeError};
use aerodb_wal::segment::{segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::AppendedRecord;
use aerodb_wal::{Lsn, RecordPosition};
use common::*;

const TARGET: u64 = 4096;

/// A write set of roughly `size` bytes.
fn sized_ops(i: u64, size: usize) -> Vec<aerodb_wal::Op> {
    vec![put("c", &format!("k{i}"), &"d".repeat(size))]
}

fn rolled_wal(dir: &std::path::Path) -> (Vec<AppendedRecord>, SegmentList) {
    let mut w = new_writer(dir, TARGET);
    let mut written = Vec::new();
    for i in 1..=400u64 {
        // Mixed sizes, including records larger than the segment target.
        let size = match i % 50 {
            0 => 6000,
            25 => (TARGET as usize) - 70,
            _ => (i as usize * 37) % 700,
        };
        written.push(w.append(&sized_ops(i, size)).unwrap());
    }
    w.sync().unwrap();
    let segments = w.segments().clone();
    drop(w);
    (written, segments)
}

/// The segment (start LSN) holding the record at `p`, checking that the
/// record lies entirely inside it.
fn holding_segment(files: &[(Lsn, std::path::PathBuf)], p: &RecordPosition) -> Lsn {
    let idx = files.partition_point(|(s, _)| *s <= p.lsn) - 1;
    let start = files[idx].0;
    let seg_end = start + file_len(&files[idx].1) - SEGMENT_HEADER_LEN;
    assert!(p.end_lsn <= seg_end, "record {p:?} straddles segment {start}..{seg_end}");
    start
}

/// §1 segments: with a 4 KiB target, records spread over many segments;
/// no record straddles two; a segment exceeds the target only when it holds
/// a single record larger than the target; every header declares the chain
/// state of the record ending at its start; recovery reads them all.
#[test]
fn repl_7_segment_rolling_never_splits_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, segments) = rolled_wal(tmp.path());
    let files = segment_files(tmp.path());
    assert!(files.len() > 20, "only {} segments", files.len());
    assert_eq!(segments.snapshot().len(), files.len());

    for (i, (start, path)) in files.iter().enumerate() {
        let data = std::fs::read(path).unwrap();
        let header = SegmentHeader::decode(&data).unwrap();
        assert_eq!(header.start_lsn, *start);
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), segment_file_name(*start));
        let body = (data.len() as u64) - SEGMENT_HEADER_LEN;
        let in_seg: Vec<_> = written.iter().filter(|a| holding_segment(&files, &a.position) == *start).collect();
        assert!(!in_seg.is_empty(), "segment {start} is empty");
        assert!(body <= TARGET || in_seg.len() == 1, "segment {start} holds {body} bytes in {} records", in_seg.len());
        assert_eq!(in_seg.first().unwrap().position.lsn, *start, "segment starts with a record");
        assert_eq!(in_seg.last().unwrap().position.end_lsn, start + body, "segment ends with a whole record");
        if i == 0 {
            assert_eq!((header.prev_commit_id, *start), (0, 0));
        } else {
            let prev = written.iter().find(|a| a.position.end_lsn == *start).unwrap();
            assert_eq!(header.prev_commit_id, prev.position.commit_id);
            assert_eq!(header.prev_fingerprint, prev.position.fingerprint);
        }
        let info = segments.snapshot()[i];
        assert_eq!((info.header, info.end_lsn), (header, start + body));
    }

    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.positions(), written.iter().map(|a| a.position).collect::<Vec<_>>());
    assert_eq!(rec.report.segments, segments.snapshot());
    assert_eq!(rec.report.torn_tail, None);
}

/// CORE-2 / §4: `read_chunk` returns only whole, crc-verified records,
/// never crosses a segment, flags segment starts exactly, respects the size
/// hint (but always returns at least one record), and the chunks from LSN 0
/// to the end concatenate to exactly the segment files minus headers.
#[test]
fn core_2_read_chunk_returns_whole_verified_records_within_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, segments) = rolled_wal(tmp.path());
    let files = segment_files(tmp.path());
    let expected_stream: Vec<u8> = files.iter().flat_map(|(_, p)| std::fs::read(p).unwrap()[SEGMENT_HEADER_LEN as usize..].to_vec()).collect();
    let end = written.last().unwrap().position.end_lsn;
    assert_eq!(expected_stream.len() as u64, end);
    let starts: Vec<Lsn> = written.iter().map(|a| a.position.lsn).collect();
    let infos = segments.snapshot();

    // Both the writer's live list and the list recovery rebuilds.
    let recovered = recover(tmp.path()).unwrap();
    for list in [segments.clone(), recovered.appender.segments().clone()] {
        for max_bytes in [0usize, 1, 100, 700, 3000, 10_000, usize::MAX] {
            let mut reader = WalReader::new(OsDisk::shared(), list.clone());
            let mut stream = Vec::new();
            let mut lsn = 0;
            let mut chunks = 0;
            while lsn < end {
                let chunk = reader.read_chunk(lsn, end, max_bytes).unwrap();
                chunks += 1;
                assert_eq!(chunk.start_lsn, lsn);
                assert!(!chunk.bytes.is_empty(), "no progress at {lsn}");
                let seg = infos.iter().rev().find(|s| s.header.start_lsn <= lsn).unwrap();
                let chunk_end = lsn + chunk.bytes.len() as u64;
                assert!(chunk_end <= seg.end_lsn, "chunk {lsn}..{chunk_end} crosses segment end {}", seg.end_lsn);
                assert_eq!(chunk.segment_start, (lsn == seg.header.start_lsn).then_some(seg.header));
                // Whole records only, each one verified.
                let mut at = 0usize;
                let mut n = 0u32;
                while at < chunk.bytes.len() {
                    assert!(starts.binary_search(&(lsn + at as u64)).is_ok(), "chunk cuts a record at {}", lsn + at as u64);
                    let (record, len) = decode_record(&chunk.bytes.slice(at..)).unwrap();
                    let idx = starts.binary_search(&(lsn + at as u64)).unwrap();
                    assert_eq!(record.commit_id, written[idx].position.commit_id);
                    at += len;
                    n += 1;
                }
                assert_eq!(n, chunk.records);
                assert!(starts.binary_search(&chunk_end).is_ok() || chunk_end == end);
                let first_len = (written[starts.binary_search(&lsn).unwrap()].position.end_lsn - lsn) as usize;
                assert!(chunk.bytes.len() <= max_bytes.max(first_len), "chunk of {} bytes for hint {max_bytes}", chunk.bytes.len());
                stream.extend_from_slice(&chunk.bytes);
                lsn = chunk_end;
            }
            assert_eq!(stream, expected_stream, "max_bytes {max_bytes}");
            assert!(chunks >= infos.len());
            if max_bytes <= 1 {
                assert_eq!(chunks, written.len(), "a tiny hint still returns exactly one record per chunk");
            }
            let at_end = reader.read_chunk(end, end, max_bytes).unwrap();
            assert_eq!((at_end.bytes.len(), at_end.records), (0, 0));
        }
    }
}

/// §4: a read never goes past `limit_lsn` (the durable LSN a sender was
/// given), and asking at the limit returns an empty chunk.
#[test]
fn core_1_read_chunk_stops_at_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, segments) = rolled_wal(tmp.path());
    let mut reader = WalReader::new(OsDisk::shared(), segments);
    for k in [3usize, 57, 200] {
        let limit = written[k].position.end_lsn;
        let mut lsn = 0;
        while lsn < limit {
            let chunk = reader.read_chunk(lsn, limit, 1 << 20).unwrap();
            assert!(!chunk.bytes.is_empty());
            lsn += chunk.bytes.len() as u64;
            assert!(lsn <= limit);
        }
        assert_eq!(lsn, limit);
        let empty = reader.read_chunk(limit, limit, 1 << 20).unwrap();
        assert!(empty.bytes.is_empty());
    }
}

/// CORE-1 / §4: bytes appended but not yet fsynced are invisible to
/// readers; they appear once synced.
#[test]
fn core_1_reader_sees_only_fsynced_records() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), NO_ROLL);
    let synced = write_samples(&mut w, 3);
    let durable_end = synced.last().unwrap().position.end_lsn;
    let mut reader = WalReader::new(OsDisk::shared(), w.segments().clone());
    let pending: Vec<AppendedRecord> = (4..=6).map(|i| w.append(&sample_ops(i)).unwrap()).collect();
    assert_eq!(w.segments().snapshot().last().unwrap().end_lsn, durable_end);
    let chunk = reader.read_chunk(0, u64::MAX, usize::MAX).unwrap();
    assert_eq!((chunk.records, chunk.bytes.len() as u64), (3, durable_end));
    let chunk = reader.read_chunk(durable_end, u64::MAX, usize::MAX).unwrap();
    assert!(chunk.bytes.is_empty(), "unsynced bytes were served");
    let beyond = pending[0].position.end_lsn;
    assert!(matches!(reader.read_chunk(beyond, u64::MAX, usize::MAX), Err(LogError::NotHeld { .. })));

    let new_end = w.sync().unwrap();
    assert_eq!(new_end, pending.last().unwrap().position.end_lsn);
    let chunk = reader.read_chunk(durable_end, u64::MAX, usize::MAX).unwrap();
    assert_eq!((chunk.records, chunk.start_lsn + chunk.bytes.len() as u64), (3, new_end));
}

/// §4 WAL_UNAVAILABLE: reading an LSN the node does not hold (beyond the
/// end, or before the oldest retained segment) is refused with the range held.
#[test]
fn repl_7_read_chunk_outside_held_range_is_not_held() {
    let tmp = tempfile::tempdir().unwrap();
    let (written, _) = rolled_wal(tmp.path());
    let end = written.last().unwrap().position.end_lsn;
    let files = segment_files(tmp.path());
    std::fs::remove_file(&files[0].1).unwrap();
    let rec = recover(tmp.path()).unwrap();
    let first = files[1].0;
    let mut reader = WalReader::new(OsDisk::shared(), rec.appender.segments().clone());
    for lsn in [0, first - 1, end + 1, end + 10_000] {
        let err = reader.read_chunk(lsn, u64::MAX, 1024).unwrap_err();
        assert!(matches!(err, LogError::NotHeld { lsn: l, first: f, end: e } if l == lsn && f == first && e == end), "{err:?}");
        assert_eq!(err.code(), "WAL_UNAVAILABLE");
    }
    let chunk = reader.read_chunk(first, u64::MAX, 1024).unwrap();
    assert_eq!(chunk.segment_start.map(|h| h.start_lsn), Some(first));
}

/// CORE-2: a record damaged on disk after it was written is never served:
/// the reader reports it as corrupt with its LSN.
#[test]
fn core_2_reader_refuses_damaged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = new_writer(tmp.path(), NO_ROLL);
    let written = write_samples(&mut w, 10);
    let segments = w.segments().clone();
    drop(w);
    let victim = written[6].position;
    let (path, off) = locate(tmp.path(), victim.lsn);
    for (delta, mask) in [(30u64, 0x01u8), (0, 0x01), (3, 0x80), ((victim.end_lsn - victim.lsn) - 1, 0x10)] {
        flip_byte(&path, off + delta, mask);
        let mut reader = WalReader::new(OsDisk::shared(), segments.clone());
        // Reading straight at it.
        let err = reader.read_chunk(victim.lsn, u64::MAX, usize::MAX).unwrap_err();
        assert!(matches!(err, LogError::Corrupt { lsn, .. } if lsn == victim.lsn), "{err:?}");
        assert_eq!(err.code(), "WAL_CORRUPT");
        // Reading through it: never returns bytes past the damaged record's start.
        let mut lsn = 0;
        let err = loop {
            match reader.read_chunk(lsn, u64::MAX, usize::MAX) {
                Ok(chunk) => {
                    assert!(lsn + chunk.bytes.len() as u64 <= victim.lsn);
                    assert!(!chunk.bytes.is_empty());
                    lsn += chunk.bytes.len() as u64;
                }
                Err(e) => break e,
            }
        };
        assert!(matches!(err, LogError::Corrupt { lsn, ref error } if lsn == victim.lsn && !matches!(error, RecordDecodeError::BadOps { .. })), "{err:?}");
        flip_byte(&path, off + delta, mask);
    }
    let mut reader = WalReader::new(OsDisk::shared(), segments);
    let chunk = reader.read_chunk(0, u64::MAX, usize::MAX).unwrap();
    assert_eq!(chunk.records, 10);
}

/// REPL-3 (byte-exact prefix): the real file's read into a fresh buffer
/// (no zeroing first; the sender reads every shipped byte this way)
/// returns exactly the bytes at any offset and length, refuses a read past
/// the end with `UnexpectedEof` instead of returning fewer bytes, and
/// leaves appends at the file's end although it moves the cursor.
#[test]
fn repl_3_reads_into_fresh_buffers_are_exact_and_appends_stay_at_the_end() {
    use aerodb_wal::disk::Disk;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("file");
    let disk = OsDisk;
    let mut file = disk.create(&path).unwrap();
    let contents: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    file.append(&contents).unwrap();
    for (offset, len) in [(0usize, 0usize), (0, 1), (3, 4096), (65_537, 70_000), (199_999, 1), (0, 200_000), (200_000, 0)] {
        let got = file.read_vec_at(len, offset as u64).unwrap();
        assert_eq!(got, contents[offset..offset + len], "{len} bytes at {offset}");
        // The default (zero-filled, positioned) read agrees.
        let mut want = vec![0u8; len];
        file.read_exact_at(&mut want, offset as u64).unwrap();
        assert_eq!(got, want);
    }
    for (offset, len) in [(199_999u64, 2usize), (200_000, 1), (500_000, 10)] {
        let e = file.read_vec_at(len, offset).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{len} bytes at {offset}");
    }
    // The cursor was moved by the reads above: an append still goes to the end.
    file.read_vec_at(10, 5).unwrap();
    file.append(b"tail").unwrap();
    assert_eq!(file.len().unwrap(), 200_004);
    assert_eq!(file.read_vec_at(4, 200_000).unwrap(), b"tail");
}
