//! `aerodb wal-dump`: the WAL record by record, read-only. One text line
//! per record by default; `--json` prints one JSON object per line (stable
//! field names, docs/operations.md "wal-dump"); `--commit N..M` selects
//! records by CommitId; `--stats` prints counts instead of records.

use std::collections::BTreeMap;
use std::path::Path;

use aerodb_wal::disk::{Disk, OsDisk};
use aerodb_wal::recovery::{scan_wal, segment_name, RecoveryMode, ReplayRefusal};
use aerodb_wal::{CommitId, Op, Record, RecordBody, RecordPosition};
use serde_json::json;

use crate::exit::Exit;

/// An inclusive CommitId range (`--commit N..M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitRange {
    /// First CommitId selected.
    pub first: CommitId,
    /// Last CommitId selected.
    pub last: CommitId,
}

impl CommitRange {
    fn contains(self, c: CommitId) -> bool {
        (self.first..=self.last).contains(&c)
    }
}

/// Parses `N..M`, `N..`, `..M`, `N..=M` or `N`.
pub fn parse_commit_range(s: &str) -> Result<CommitRange, String> {
    let num = |t: &str| t.trim().parse::<u64>().map_err(|_| format!("{t:?} is not a CommitId; expected N..M, N.., ..M or N"));
    let range = match s.split_once("..") {
        None => {
            let n = num(s)?;
            CommitRange { first: n, last: n }
        }
        Some((a, b)) => {
            let b = b.strip_prefix('=').unwrap_or(b);
            let first = if a.trim().is_empty() { 0 } else { num(a)? };
            let last = if b.trim().is_empty() { u64::MAX } else { num(b)? };
            CommitRange { first, last }
        }
    };
    if range.first > range.last {
        return Err(format!("empty CommitId range {s:?}: {} is after {}", range.first, range.last));
    }
    Ok(range)
}

/// What to print.
#[derive(Clone, Copy, Debug)]
pub struct DumpOptions {
    /// First LSN.
    pub from: u64,
    /// Most records.
    pub limit: Option<u64>,
    /// CommitId range.
    pub commit: Option<CommitRange>,
    /// JSON lines.
    pub json: bool,
    /// Statistics instead of records.
    pub stats: bool,
}

/// The ops of a record as `put c/k`, `delete c/k`, `gc horizon=H`.
fn op_texts(record: &Record) -> Vec<String> {
    match &record.body {
        RecordBody::Commit(ops) => ops
            .iter()
            .map(|op| {
                let kind = match op {
                    Op::Put { .. } => "put",
                    Op::Delete { .. } => "delete",
                };
                format!("{kind} {}/{}", String::from_utf8_lossy(op.collection()), String::from_utf8_lossy(op.key()))
            })
            .collect(),
        // A GC record creates no version: it states the new history horizon (MVCC-4).
        RecordBody::Gc { horizon } => vec![format!("gc horizon={horizon}")],
    }
}

/// One record as a text line (pure).
pub fn text_line(record: &Record, pos: &RecordPosition) -> String {
    format!(
        "lsn={} end={} commit_id={} ops={} fingerprint={} digest={} [{}]",
        pos.lsn,
        pos.end_lsn,
        pos.commit_id,
        record.ops().len(),
        pos.fingerprint,
        record.state_digest,
        op_texts(record).join(", ")
    )
}

/// One record as a JSON line (pure). Fields: `lsn`, `end_lsn`, `bytes`,
/// `commit_id`, `kind` (`commit`|`gc`), `fingerprint`, `state_digest`,
/// `ops` (`[{"op","collection","key","doc_bytes"}]`), `gc_horizon`.
pub fn json_line(record: &Record, pos: &RecordPosition) -> String {
    let (kind, ops, horizon) = match &record.body {
        RecordBody::Commit(ops) => {
            let ops: Vec<_> = ops
                .iter()
                .map(|op| {
                    let (name, doc_bytes) = match op {
                        Op::Put { doc, .. } => ("put", Some(doc.len())),
                        Op::Delete { .. } => ("delete", None),
                    };
                    json!({"op": name, "collection": String::from_utf8_lossy(op.collection()), "key": String::from_utf8_lossy(op.key()), "doc_bytes": doc_bytes})
                })
                .collect();
            ("commit", ops, None)
        }
        RecordBody::Gc { horizon } => ("gc", Vec::new(), Some(*horizon)),
    };
    json!({
        "lsn": pos.lsn,
        "end_lsn": pos.end_lsn,
        "bytes": pos.end_lsn - pos.lsn,
        "commit_id": pos.commit_id,
        "kind": kind,
        "fingerprint": pos.fingerprint.to_string(),
        "state_digest": record.state_digest.to_string(),
        "ops": ops,
        "gc_horizon": horizon,
    })
    .to_string()
}

/// Counts over the selected records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records selected.
    pub records: u64,
    /// Commit records.
    pub commits: u64,
    /// GC records.
    pub gc_records: u64,
    /// Record bytes (header included).
    pub bytes: u64,
    /// Put ops.
    pub puts: u64,
    /// Delete ops.
    pub deletes: u64,
    /// First and last CommitId selected.
    pub commit_ids: Option<(CommitId, CommitId)>,
    /// First LSN and end LSN of the selection.
    pub lsns: Option<(u64, u64)>,
    /// Per segment start LSN: (records, bytes).
    pub segments: BTreeMap<u64, (u64, u64)>,
}

impl Stats {
    /// Counts one record, in the segment starting at `segment_start`.
    pub fn add(&mut self, record: &Record, pos: &RecordPosition, segment_start: u64) {
        let bytes = pos.end_lsn - pos.lsn;
        self.records += 1;
        self.bytes += bytes;
        match &record.body {
            RecordBody::Commit(ops) => {
                self.commits += 1;
                for op in ops {
                    match op {
                        Op::Put { .. } => self.puts += 1,
                        Op::Delete { .. } => self.deletes += 1,
                    }
                }
            }
            RecordBody::Gc { .. } => self.gc_records += 1,
        }
        self.commit_ids = Some(self.commit_ids.map_or((pos.commit_id, pos.commit_id), |(a, _)| (a, pos.commit_id)));
        self.lsns = Some(self.lsns.map_or((pos.lsn, pos.end_lsn), |(a, _)| (a, pos.end_lsn)));
        let seg = self.segments.entry(segment_start).or_insert((0, 0));
        seg.0 += 1;
        seg.1 += bytes;
    }

    /// The statistics as one JSON object (field names documented).
    pub fn to_json(&self) -> serde_json::Value {
        let segments: Vec<_> = self
            .segments
            .iter()
            .map(|(start, (records, bytes))| json!({"segment": segment_name(*start), "start_lsn": start, "records": records, "bytes": bytes}))
            .collect();
        json!({
            "records": self.records,
            "commits": self.commits,
            "gc_records": self.gc_records,
            "bytes": self.bytes,
            "ops": {"put": self.puts, "delete": self.deletes},
            "first_commit_id": self.commit_ids.map(|c| c.0),
            "last_commit_id": self.commit_ids.map(|c| c.1),
            "first_lsn": self.lsns.map(|l| l.0),
            "end_lsn": self.lsns.map(|l| l.1),
            "segments": segments,
        })
    }

    /// The statistics as text lines.
    pub fn to_text(&self) -> String {
        let range = |r: Option<(u64, u64)>, sep: &str| r.map(|(a, b)| format!("{a}{sep}{b}")).unwrap_or_else(|| "none".into());
        let mut out = format!(
            "records     {}\ncommits     {}\ngc records  {}\nbytes       {}\nops         {} put, {} delete\ncommit ids  {}\nlsns        {}\nsegments    {}\n",
            self.records,
            self.commits,
            self.gc_records,
            self.bytes,
            self.puts,
            self.deletes,
            range(self.commit_ids, "..="),
            range(self.lsns, ".."),
            self.segments.len()
        );
        for (start, (records, bytes)) in &self.segments {
            out.push_str(&format!("  {}  {records} record(s), {bytes} bytes\n", segment_name(*start)));
        }
        out
    }
}

/// The start LSN of the segment holding `lsn`, from the segment files on disk.
fn segment_of(starts: &[u64], lsn: u64) -> u64 {
    match starts.binary_search(&lsn) {
        Ok(i) => starts[i],
        Err(0) => 0,
        Err(i) => starts[i - 1],
    }
}

/// Segment start LSNs, from the `*.seg` file names under `wal`.
fn segment_starts(disk: &dyn Disk, wal: &Path) -> Vec<u64> {
    let mut starts: Vec<u64> =
        disk.list(wal).unwrap_or_default().iter().filter_map(|name| name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok())).collect();
    starts.sort_unstable();
    starts
}

/// `aerodb wal-dump`.
pub fn run(data_dir: &Path, opts: DumpOptions) -> i32 {
    let disk: std::sync::Arc<dyn Disk> = OsDisk::shared();
    let dir = match crate::tools::open_data_dir(&*disk, data_dir) {
        Ok((dir, _)) => dir,
        Err(failure) => {
            eprintln!("wal-dump: {}", failure.line());
            return failure.exit.code();
        }
    };
    let starts = segment_starts(&*disk, &dir.wal());
    let mut printed = 0u64;
    let mut stats = Stats::default();
    let result = scan_wal(disk, &dir.wal(), RecoveryMode::ReadOnly, |record, pos| {
        if pos.lsn < opts.from || opts.commit.is_some_and(|r| !r.contains(pos.commit_id)) || opts.limit.is_some_and(|l| printed >= l) {
            return Ok(());
        }
        printed += 1;
        if opts.stats {
            stats.add(record, &pos, segment_of(&starts, pos.lsn));
        } else if opts.json {
            outln!("{}", json_line(record, &pos));
        } else {
            outln!("{}", text_line(record, &pos));
        }
        Ok::<(), ReplayRefusal>(())
    });
    if opts.stats {
        if opts.json {
            outln!("{}", stats.to_json());
        } else {
            out!("{}", stats.to_text());
        }
    }
    match result {
        Ok(_) => Exit::Ok.code(),
        Err(e) => {
            eprintln!("wal-dump stopped: {e} [{}, {}]", e.code(), e.rule_id());
            Exit::Failure.code()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn core_2_commit_ranges_parse_and_refuse_nonsense() {
        assert_eq!(parse_commit_range("3..7"), Ok(CommitRange { first: 3, last: 7 }));
        assert_eq!(parse_commit_range("3..=7"), Ok(CommitRange { first: 3, last: 7 }));
        assert_eq!(parse_commit_range("5"), Ok(CommitRange { first: 5, last: 5 }));
        assert_eq!(parse_commit_range("5.."), Ok(CommitRange { first: 5, last: u64::MAX }));
        assert_eq!(parse_commit_range("..5"), Ok(CommitRange { first: 0, last: 5 }));
        assert!(parse_commit_range("7..3").unwrap_err().contains("empty"));
        assert!(parse_commit_range("x..3").unwrap_err().contains("not a CommitId"));
        assert_eq!(segment_of(&[0, 100, 200], 150), 100);
        assert_eq!(segment_of(&[0, 100, 200], 200), 200);
        assert_eq!(segment_of(&[0, 100, 200], 999), 200);
    }
}
