#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! CORE-1 / REPL-2 / MVCC-2 through the group committer: CommitIds are
//! assigned once, contiguously, in WAL order; a commit is acknowledged only
//! after its record is fsynced and handed to the sink; an acknowledged
//! commit survives recovery; a WAL failure is never acknowledged.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aerodb_wal::disk::{Disk, DiskFile, OsDisk};
use aerodb_wal::durable::{DurablePoint, DurableWatch};
use aerodb_wal::group::{CommitError, CommitReceipt, DurableRecord, DurableSink, GroupCommitCore, GroupCommitter, GroupRequest};
use aerodb_wal::log::{SegmentAppender, SegmentList};
use aerodb_wal::record::{RecordEncodeError, MAX_RECORD_LEN};
use aerodb_wal::segment::{segment_file_name, SEGMENT_HEADER_LEN};
use aerodb_wal::writer::WalWriter;
use aerodb_wal::{ChainTip, Op, RecordPosition, StateDigest};
use bytes::Bytes;
use common::*;

/// The real file system, remembering how many bytes of each file were
/// fsynced last, and able to fail fsync on demand.
#[derive(Clone, Default)]
struct TrackingDisk {
    synced: Arc<Mutex<HashMap<PathBuf, u64>>>,
    fail_sync: Arc<AtomicBool>,
    /// `append` calls per file (write syscalls on the real disk).
    appends: Arc<Mutex<HashMap<PathBuf, usize>>>,
}

struct TrackingFile {
    path: PathBuf,
    inner: Box<dyn DiskFile>,
    disk: TrackingDisk,
}

impl TrackingDisk {
    fn synced_len(&self, path: &Path) -> u64 {
        self.synced.lock().unwrap().get(path).copied().unwrap_or(0)
    }
    fn appends(&self, path: &Path) -> usize {
        self.appends.lock().unwrap().get(path).copied().unwrap_or(0)
    }
    fn wrap(&self, path: &Path, inner: Box<dyn DiskFile>) -> Box<dyn DiskFile> {
        Box::new(TrackingFile { path: path.to_path_buf(), inner, disk: self.clone() })
    }
}

impl DiskFile for TrackingFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        *self.disk.appends.lock().unwrap().entry(self.path.clone()).or_default() += 1;
        self.inner.append(buf)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        *self.disk.appends.lock().unwrap().entry(self.path.clone()).or_default() += 1;
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.disk.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()?;
        let len = self.inner.len()?;
        self.disk.synced.lock().unwrap().insert(self.path.clone(), len);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)?;
        self.disk.synced.lock().unwrap().insert(self.path.clone(), len);
        Ok(())
    }
}

impl Disk for TrackingDisk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.synced.lock().unwrap().remove(path);
        Ok(self.wrap(path, OsDisk.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(self.wrap(path, OsDisk.open(path)?))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsDisk.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsDisk.create_dir_all(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsDisk.rename(from, to)?;
        let mut synced = self.synced.lock().unwrap();
        let len = synced.remove(from).unwrap_or(0);
        synced.insert(to.to_path_buf(), len);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsDisk.sync_dir(dir)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsDisk.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        OsDisk.remove_dir_all(path)
    }
    fn read_bounded(&self, path: &Path, max_len: u64) -> io::Result<Vec<u8>> {
        OsDisk.read_bounded(path, max_len)
    }
    fn exists(&self, path: &Path) -> bool {
        OsDisk.exists(path)
    }
}

/// What the sink was handed for one record.
type Seen = (RecordPosition, StateDigest, Vec<Op>);

/// A sink that records every durable record it is handed, in order.
#[derive(Clone, Default)]
struct RecordingSink {
    seen: Arc<Mutex<Vec<Seen>>>,
    batches: Arc<Mutex<usize>>,
    fail_after: Option<usize>,
}

impl DurableSink for RecordingSink {
    fn on_durable(&mut self, records: &[DurableRecord]) -> Result<(), String> {
        let mut seen = self.seen.lock().unwrap();
        if self.fail_after.is_some_and(|n| seen.len() >= n) {
            return Err("store no longer matches the WAL".into());
        }
        for r in records {
            // Handed over in WAL order, contiguous with what came before.
            if let Some((prev, _, _)) = seen.last() {
                assert_eq!(r.position.commit_id, prev.commit_id + 1);
                assert_eq!(r.position.lsn, prev.end_lsn);
            } else {
                assert_eq!((r.position.commit_id, r.position.lsn), (1, 0));
            }
            seen.push((r.position, r.state_digest, r.body.ops().to_vec()));
        }
        *self.batches.lock().unwrap() += 1;
        Ok(())
    }
}

fn start(dir: &Path, disk: Arc<dyn Disk>, target: u64, sink: RecordingSink) -> (GroupCommitter, SegmentList) {
    let appender = SegmentAppender::create(disk, dir, ChainTip::GENESIS.segment_header()).unwrap();
    let writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, target);
    let segments = writer.segments().clone();
    let durable = Arc::new(DurableWatch::new(DurablePoint::default()));
    (GroupCommitter::start(writer, sink, durable).unwrap(), segments)
}

fn thread_ops(t: usize, i: usize) -> Vec<Op> {
    vec![put(&format!("t{t}"), &format!("k{i}"), &format!("{{\"t\":{t},\"i\":{i},\"pad\":\"{}\"}}", "p".repeat((t * 7 + i) % 90)))]
}

const THREADS: usize = 16;
const PER_THREAD: usize = 25;

/// CORE-1 / REPL-2: 16 threads committing concurrently each get a unique
/// CommitId; together they are exactly 1..=total, in WAL order; every
/// acknowledgement comes after the record's bytes were fsynced, the sink
/// applied it and the durable point passed it; the sink saw everything in
/// order; and recovery finds every acknowledged commit.
#[test]
fn core_1_group_commit_concurrent_commits_are_contiguous_durable_and_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = TrackingDisk::default();
    let sink = RecordingSink::default();
    let (committer, segments) = start(tmp.path(), Arc::new(disk.clone()), 4096, sink.clone());
    let dir = tmp.path().to_path_buf();

    let receipts: Vec<(usize, usize, CommitReceipt)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (committer, segments, disk, sink, dir) = (&committer, &segments, &disk, &sink, &dir);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..PER_THREAD {
                        let receipt = committer.commit(thread_ops(t, i)).unwrap();
                        let p = receipt.position;
                        // CORE-1: the record's bytes were fsynced before the acknowledgement.
                        let seg = segments.find(p.lsn).unwrap();
                        let path = dir.join(segment_file_name(seg.header.start_lsn));
                        assert!(
                            disk.synced_len(&path) >= SEGMENT_HEADER_LEN + (p.end_lsn - seg.header.start_lsn),
                            "commit {} acknowledged before fsync",
                            p.commit_id
                        );
                        // MVCC-2: applied by the sink and published before the acknowledgement.
                        assert!(sink.seen.lock().unwrap().iter().any(|(q, _, ops)| *q == p && *ops == thread_ops(t, i)));
                        assert!(committer.durable().current().commit_id >= p.commit_id);
                        assert!(committer.durable().current().lsn >= p.end_lsn);
                        mine.push((t, i, receipt));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });

    let total = (THREADS * PER_THREAD) as u64;
    let durable = committer.durable().clone();
    let last_point = durable.current();
    drop(committer);
    assert!(durable.is_closed(), "stopping the committer closes the watch");

    // Unique, exactly 1..=total.
    let ids: BTreeSet<u64> = receipts.iter().map(|(_, _, r)| r.position.commit_id).collect();
    assert_eq!(ids.len(), receipts.len(), "duplicate CommitIds acknowledged");
    assert_eq!(ids, (1..=total).collect::<BTreeSet<_>>());

    // In WAL order: sorted by CommitId, LSNs are contiguous and increasing.
    let mut by_id: Vec<_> = receipts.clone();
    by_id.sort_by_key(|(_, _, r)| r.position.commit_id);
    let mut end = 0;
    for (_, _, r) in &by_id {
        assert_eq!(r.position.lsn, end);
        assert!(r.position.end_lsn > r.position.lsn);
        end = r.position.end_lsn;
    }
    // Each thread's commits were ordered as it issued them.
    for t in 0..THREADS {
        let mine: Vec<_> = receipts.iter().filter(|(tt, _, _)| *tt == t).map(|(_, i, r)| (*i, r.position.commit_id)).collect();
        assert!(mine.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    }

    // The sink saw every record once, in order, with the submitted ops.
    let seen = sink.seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(p, _, _)| *p).collect::<Vec<_>>(), by_id.iter().map(|(_, _, r)| r.position).collect::<Vec<_>>());
    for ((p, _, ops), (t, i, _)) in seen.iter().zip(&by_id) {
        assert_eq!(*ops, thread_ops(*t, *i), "ops of commit {}", p.commit_id);
    }
    let batches = *sink.batches.lock().unwrap();
    assert!(batches >= 1 && batches <= total as usize);
    assert_eq!(last_point, DurablePoint { lsn: end, commit_id: total });
    assert_eq!(durable.current(), last_point);
    assert!(segment_files(tmp.path()).len() > 1, "the run crossed segments");

    // CORE-1: everything acknowledged is recovered, with the same identity and digest.
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.report.torn_tail, None);
    assert_eq!(rec.positions(), by_id.iter().map(|(_, _, r)| r.position).collect::<Vec<_>>());
    for ((record, _), (_, digest, ops)) in rec.replayed.iter().zip(&seen) {
        assert_eq!(record.ops(), &ops[..]);
        assert_eq!(&record.state_digest, digest);
    }
}

/// REPL-2: a write set that cannot be encoded is refused without using a
/// CommitId: the next commit gets exactly previous + 1.
#[test]
fn repl_2_rejected_write_set_uses_no_commit_id() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = RecordingSink::default();
    let (committer, _) = start(tmp.path(), OsDisk::shared(), NO_ROLL, sink.clone());
    assert_eq!(committer.commit(sample_ops(1)).unwrap().position.commit_id, 1);

    let empty = committer.commit(vec![]).unwrap_err();
    assert_eq!(empty, CommitError::Encode(RecordEncodeError::Empty));
    assert_eq!(empty.code(), "BAD_REQUEST");
    let bad_name = committer.commit(vec![put("c", "", "{}")]).unwrap_err();
    assert_eq!(bad_name, CommitError::Encode(RecordEncodeError::BadName));
    let long_name = committer.commit(vec![put(&"c".repeat(256), "k", "{}")]).unwrap_err();
    assert_eq!(long_name, CommitError::Encode(RecordEncodeError::BadName));
    let huge = Op::Put { collection: Bytes::from_static(b"c"), key: Bytes::from_static(b"k"), doc: Bytes::from(vec![b'x'; MAX_RECORD_LEN]) };
    let too_large = committer.commit(vec![huge]).unwrap_err();
    assert!(matches!(too_large, CommitError::Encode(RecordEncodeError::TooLarge { .. })), "{too_large:?}");
    assert_eq!(too_large.code(), "WRITE_SET_TOO_LARGE");

    // Valid and invalid requests queued together: only the valid ones get ids.
    let tickets: Vec<_> = (0..6).map(|i| committer.submit(if matches!(i % 2, 0) { sample_ops(10 + i) } else { vec![] })).collect();
    let results: Vec<_> = tickets.into_iter().map(|t| t.wait()).collect();
    let ids: Vec<u64> = results.iter().filter_map(|r| r.as_ref().ok()).map(|r| r.position.commit_id).collect();
    assert_eq!(ids, vec![2, 3, 4]);
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 3);
    assert_eq!(committer.commit(sample_ops(5)).unwrap().position.commit_id, 5);
    drop(committer);

    let rec = recover(tmp.path()).unwrap();
    let ids: Vec<u64> = rec.replayed.iter().map(|(r, _)| r.commit_id).collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    assert_eq!(sink.seen.lock().unwrap().len(), 5);
}

/// CORE-1: when fsync fails, the commit is not acknowledged, the durable
/// point does not move, the sink does not see it, and the WAL refuses every
/// later commit (even once the disk would work again); everything
/// acknowledged before the failure is recovered.
#[test]
fn core_1_fsync_failure_is_never_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = TrackingDisk::default();
    let sink = RecordingSink::default();
    let (committer, _) = start(tmp.path(), Arc::new(disk.clone()), NO_ROLL, sink.clone());
    let acked: Vec<CommitReceipt> = (1..=5).map(|i| committer.commit(sample_ops(i)).unwrap()).collect();
    let before = committer.durable().current();
    assert_eq!(before.commit_id, 5);

    disk.fail_sync.store(true, Ordering::SeqCst);
    let err = committer.commit(sample_ops(6)).unwrap_err();
    assert!(matches!(err, CommitError::WalFailed(_)), "{err:?}");
    assert_eq!(err.code(), "WAL_FAILED");
    disk.fail_sync.store(false, Ordering::SeqCst);
    for i in 7..10 {
        assert!(matches!(committer.commit(sample_ops(i)), Err(CommitError::WalFailed(_))));
    }
    assert_eq!(committer.durable().current(), before);
    assert_eq!(sink.seen.lock().unwrap().len(), 5);
    drop(committer);

    let rec = recover(tmp.path()).unwrap();
    let positions = rec.positions();
    assert!(positions.len() >= 5);
    assert_eq!(&positions[..5], &acked.iter().map(|r| r.position).collect::<Vec<_>>()[..]);
}

/// CORE-1 / MVCC-2: if the sink cannot apply a durable group, its commits
/// are not acknowledged, the durable point does not advance, and all later
/// commits are refused.
#[test]
fn core_1_sink_failure_stops_acknowledgements() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = RecordingSink { fail_after: Some(3), ..RecordingSink::default() };
    let (committer, _) = start(tmp.path(), OsDisk::shared(), NO_ROLL, sink.clone());
    for i in 1..=3 {
        assert_eq!(committer.commit(sample_ops(i)).unwrap().position.commit_id, i);
    }
    let before = committer.durable().current();
    for i in 4..=6 {
        assert!(matches!(committer.commit(sample_ops(i)), Err(CommitError::WalFailed(_))));
    }
    assert_eq!(committer.durable().current(), before);
    assert_eq!(before.commit_id, 3);
    drop(committer);
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.replayed.iter().take(3).map(|(r, _)| r.commit_id).collect::<Vec<_>>(), vec![1, 2, 3]);
}

/// CORE-1: the durable watch only moves forward, wakes waiters with the
/// new point, and reports closure.
#[test]
fn core_1_durable_watch_moves_forward_only() {
    let watch = Arc::new(DurableWatch::new(DurablePoint { lsn: 100, commit_id: 2 }));
    watch.advance(DurablePoint { lsn: 50, commit_id: 1 });
    assert_eq!(watch.current(), DurablePoint { lsn: 100, commit_id: 2 });
    // Already beyond: returns at once with the current point.
    assert_eq!(watch.wait_beyond(99, std::time::Duration::from_secs(600)), watch.current());

    let waiter = {
        let watch = watch.clone();
        std::thread::spawn(move || watch.wait_beyond(100, std::time::Duration::from_secs(600)))
    };
    watch.advance(DurablePoint { lsn: 180, commit_id: 3 });
    assert_eq!(waiter.join().unwrap(), DurablePoint { lsn: 180, commit_id: 3 });

    let waiter = {
        let watch = watch.clone();
        std::thread::spawn(move || watch.wait_beyond(180, std::time::Duration::from_secs(600)))
    };
    assert!(!watch.is_closed());
    watch.close();
    assert_eq!(waiter.join().unwrap(), DurablePoint { lsn: 180, commit_id: 3 });
    assert!(watch.is_closed());
}

/// CORE-1 / §4: a reader following the durable watch while commits (and
/// segment rolls) happen concurrently only ever reads whole, verified
/// records below the durable point, and ends with exactly the WAL stream.
#[test]
fn core_1_reader_following_durable_point_reads_exact_stream() {
    use aerodb_wal::log::WalReader;
    use aerodb_wal::record::decode_record;

    let tmp = tempfile::tempdir().unwrap();
    let (committer, segments) = start(tmp.path(), OsDisk::shared(), 1024, RecordingSink::default());
    let watch = committer.durable().clone();
    let follower = {
        let segments = segments.clone();
        std::thread::spawn(move || {
            let mut reader = WalReader::new(OsDisk::shared(), segments);
            let mut stream = Vec::new();
            let mut next_commit = 1u64;
            let mut lsn = 0;
            loop {
                let point = watch.wait_beyond(lsn, std::time::Duration::from_secs(600));
                while lsn < point.lsn {
                    let chunk = reader.read_chunk(lsn, point.lsn, 700).unwrap();
                    assert!(!chunk.bytes.is_empty());
                    let mut at = 0;
                    while at < chunk.bytes.len() {
                        let (record, len) = decode_record(&chunk.bytes.slice(at..)).unwrap();
                        assert_eq!(record.commit_id, next_commit);
                        next_commit += 1;
                        at += len;
                    }
                    stream.extend_from_slice(&chunk.bytes);
                    lsn += chunk.bytes.len() as u64;
                    assert!(lsn <= point.lsn, "read past the durable point");
                }
                if watch.is_closed() && watch.current().lsn == lsn {
                    return (stream, next_commit - 1);
                }
            }
        })
    };
    std::thread::scope(|s| {
        for t in 0..4 {
            let committer = &committer;
            s.spawn(move || {
                for i in 0..50 {
                    committer.commit(thread_ops(t, i)).unwrap();
                }
            });
        }
    });
    drop(committer);
    let (stream, last) = follower.join().unwrap();
    assert_eq!(last, 200);
    let files = segment_files(tmp.path());
    assert!(files.len() > 5);
    let expected: Vec<u8> = files.iter().flat_map(|(_, p)| std::fs::read(p).unwrap()[SEGMENT_HEADER_LEN as usize..].to_vec()).collect();
    assert_eq!(stream, expected);
}

/// A waker that counts wake-ups and unparks the thread that polls.
struct CountingWaker {
    wakes: std::sync::atomic::AtomicUsize,
    thread: std::thread::Thread,
}

impl std::task::Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// Polls `fut` on this thread until it is ready, parking between polls
/// (a minimal executor: the WAL crate is runtime-agnostic).
fn block_on<F: std::future::Future>(fut: F, waker: &Arc<CountingWaker>) -> F::Output {
    let w = std::task::Waker::from(waker.clone());
    let mut cx = std::task::Context::from_waker(&w);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A sink that holds each group until the test releases it.
struct GatedSink {
    release: std::sync::mpsc::Receiver<()>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl DurableSink for GatedSink {
    fn on_durable(&mut self, records: &[DurableRecord]) -> Result<(), String> {
        self.release.recv().map_err(|e| e.to_string())?;
        self.seen.lock().unwrap().extend(records.iter().map(|r| r.position.commit_id));
        Ok(())
    }
}

/// CORE-1: an awaited ticket (the async acknowledgement the HTTP server
/// uses, RES-3: no thread parked per pending commit) stays pending while the
/// group is not yet handed to the sink, is woken when the commit thread
/// answers, and resolves only after the record is fsynced, applied and the
/// durable point passed it. Once the WAL path fails, awaited tickets are
/// refused, never acknowledged.
#[test]
fn core_1_awaited_ticket_resolves_only_after_fsync_and_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = OsDisk::shared();
    let appender = SegmentAppender::create(disk, tmp.path(), ChainTip::GENESIS.segment_header()).unwrap();
    let writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, NO_ROLL);
    let durable = Arc::new(DurableWatch::new(DurablePoint::default()));
    let (release, gate) = std::sync::mpsc::channel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let committer = GroupCommitter::start(writer, GatedSink { release: gate, seen: seen.clone() }, durable.clone()).unwrap();

    let waker = Arc::new(CountingWaker { wakes: std::sync::atomic::AtomicUsize::new(0), thread: std::thread::current() });
    let mut ticket = std::pin::pin!(committer.submit(sample_ops(1)));
    let w = std::task::Waker::from(waker.clone());
    let poll = std::future::Future::poll(ticket.as_mut(), &mut std::task::Context::from_waker(&w));
    assert!(poll.is_pending(), "no acknowledgement before the sink applied the group");
    assert_eq!(durable.current().commit_id, 0);
    release.send(()).unwrap();
    let receipt = block_on(ticket, &waker).unwrap();
    assert_eq!(receipt.position.commit_id, 1);
    assert!(waker.wakes.load(Ordering::SeqCst) >= 1, "the commit thread woke the waiter");
    assert_eq!(*seen.lock().unwrap(), vec![1], "applied before acknowledged");
    assert_eq!(durable.current().commit_id, 1, "durable point passed it before the acknowledgement");

    // Blocking and awaited waits agree.
    release.send(()).unwrap();
    assert_eq!(committer.submit(sample_ops(2)).wait().unwrap().position.commit_id, 2);

    // The commit thread stops (its sink fails once the gate closes): pending
    // and later tickets are never acknowledged.
    drop(release);
    let refused = block_on(committer.submit(sample_ops(3)), &waker).unwrap_err();
    assert!(matches!(refused, CommitError::WalFailed(_)), "{refused:?}");
    drop(committer);
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
}

fn core_over(dir: &Path, disk: Arc<dyn Disk>, sink: RecordingSink) -> GroupCommitCore<RecordingSink> {
    let appender = SegmentAppender::create(disk, dir, ChainTip::GENESIS.segment_header()).unwrap();
    let writer = WalWriter::new(appender, ChainTip::GENESIS, StateDigest::EMPTY, NO_ROLL);
    GroupCommitCore::new(writer, sink, Arc::new(DurableWatch::new(DurablePoint::default())), None)
}

type Answers = Vec<(u64, Result<CommitReceipt, CommitError>)>;

/// CORE-1: a commit group reaches its segment with one write, at the
/// fsync: appending a group writes nothing to the file (nothing is
/// acknowledged or durable yet), completing it writes every record at once
/// and fsyncs, and the bytes on disk are exactly the records' bytes, in WAL
/// order, recovered whole. A writer dropped before its fsync still hands
/// its records to the file (unsynced; recovery judges them as before).
#[test]
fn core_1_group_is_written_with_one_write_at_its_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = TrackingDisk::default();
    let sink = RecordingSink::default();
    let seg = tmp.path().join(segment_file_name(0));
    let mut core = core_over(tmp.path(), Arc::new(disk.clone()), sink.clone());
    let mut answers: Answers = Vec::new();
    let batch = (1..=5).map(|i| GroupRequest { ops: sample_ops(i), reply: i }).collect();
    let group = core.append_group(batch, &mut |r, res| answers.push((r, res)));
    let end = group.records().last().unwrap().position.end_lsn;
    assert_eq!(disk.appends(&seg), 0, "nothing written before the group's fsync");
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_LEN);
    core.complete_group(group, &mut |r, res| answers.push((r, res)));
    assert_eq!(disk.appends(&seg), 1, "one write for the whole group");
    assert_eq!(disk.synced_len(&seg), SEGMENT_HEADER_LEN + end, "all of it fsynced before the answers");
    assert_eq!(answers.iter().map(|(r, res)| (*r, res.as_ref().unwrap().position.commit_id)).collect::<Vec<_>>(), (1..=5).map(|i| (i, i)).collect::<Vec<_>>());

    // A second group: one more write.
    let batch = (6..=7).map(|i| GroupRequest { ops: sample_ops(i), reply: i }).collect();
    core.commit_group(batch, &mut |r, res| answers.push((r, res)));
    assert_eq!(disk.appends(&seg), 2);
    drop(core);
    let rec = recover(tmp.path()).unwrap();
    assert_eq!(rec.report.records_verified, 7);
    assert_eq!(rec.report.torn_tail, None);

    // Appended, never synced, writer dropped: the bytes reach the file
    // unsynced, and recovery finds them whole (a process crash keeps them).
    let mut w = rec.into_writer(NO_ROLL);
    let pending = w.append(&sample_ops(8)).unwrap();
    drop(w);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_LEN + pending.position.end_lsn);
    let again = recover(tmp.path()).unwrap();
    assert_eq!(again.report.records_verified, 8);
}

/// CORE-1 / MVCC-2: the factored group step answers nobody when appending;
/// only completing it (fsync, sink, publish) acknowledges, in WAL order,
/// with contiguous CommitIds; the bytes were fsynced before the answer.
#[test]
fn core_1_group_step_acknowledges_only_when_completed() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = TrackingDisk::default();
    let sink = RecordingSink::default();
    let mut core = core_over(tmp.path(), Arc::new(disk.clone()), sink.clone());
    let mut answers: Answers = Vec::new();
    let batch = (1..=3).map(|i| GroupRequest { ops: sample_ops(i), reply: i }).collect();
    let group = core.append_group(batch, &mut |r, res| answers.push((r, res)));
    assert!(answers.is_empty(), "nothing is acknowledged before the fsync");
    assert_eq!(group.records().iter().map(|r| r.position.commit_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(core.durable().current(), DurablePoint::default());
    assert!(sink.seen.lock().unwrap().is_empty());
    let path = tmp.path().join(segment_file_name(0));
    assert_eq!(disk.synced_len(&path), SEGMENT_HEADER_LEN, "appended bytes are not yet durable");

    core.complete_group(group, &mut |r, res| answers.push((r, res)));
    let ids: Vec<(u64, u64)> = answers.iter().map(|(r, res)| (*r, res.as_ref().unwrap().position.commit_id)).collect();
    assert_eq!(ids, vec![(1, 1), (2, 2), (3, 3)]);
    let last = answers.last().unwrap().1.as_ref().unwrap().position;
    assert_eq!(disk.synced_len(&path), SEGMENT_HEADER_LEN + last.end_lsn);
    assert_eq!(core.durable().current(), DurablePoint { lsn: last.end_lsn, commit_id: 3 });
    assert_eq!(sink.seen.lock().unwrap().len(), 3);
    assert_eq!(core.fsyncs(), 1);
    assert!(core.failure().is_none());
}

/// CORE-1: an fsync failure while completing a group answers every waiting
/// committer `WAL_FAILED`, publishes nothing, and every later group is
/// refused without touching the WAL.
#[test]
fn core_1_group_step_fsync_failure_answers_wal_failed_and_stops_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = TrackingDisk::default();
    let sink = RecordingSink::default();
    let mut core = core_over(tmp.path(), Arc::new(disk.clone()), sink.clone());
    let mut answers: Answers = Vec::new();
    core.commit_group(vec![GroupRequest { ops: sample_ops(1), reply: 1 }], &mut |r, res| answers.push((r, res)));
    assert!(answers[0].1.is_ok());
    let before = core.durable().current();

    let group = core.append_group((2..=3).map(|i| GroupRequest { ops: sample_ops(i), reply: i }).collect(), &mut |r, res| answers.push((r, res)));
    disk.fail_sync.store(true, Ordering::SeqCst);
    core.complete_group(group, &mut |r, res| answers.push((r, res)));
    disk.fail_sync.store(false, Ordering::SeqCst);
    assert!(answers[1..].iter().all(|(_, res)| matches!(res, Err(CommitError::WalFailed(_)))));
    assert_eq!(answers.len(), 3);
    assert!(core.failure().is_some());
    assert_eq!(core.durable().current(), before);

    let tip = core.writer().tip();
    core.commit_group(vec![GroupRequest { ops: sample_ops(4), reply: 4 }], &mut |r, res| answers.push((r, res)));
    assert!(matches!(answers[3], (4, Err(CommitError::WalFailed(_)))));
    assert_eq!(core.writer().tip(), tip, "a failed core appends nothing more");
    assert_eq!(sink.seen.lock().unwrap().len(), 1);
}

/// REPL-2: a write set that cannot be encoded is answered at once while
/// appending and uses no CommitId; the rest of the group is unaffected.
#[test]
fn repl_2_group_step_unencodable_request_is_answered_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut core = core_over(tmp.path(), OsDisk::shared(), RecordingSink::default());
    let mut answers: Answers = Vec::new();
    let huge = vec![put("c", "", "{}")];
    let batch = vec![GroupRequest { ops: sample_ops(1), reply: 1 }, GroupRequest { ops: huge, reply: 2 }, GroupRequest { ops: sample_ops(3), reply: 3 }];
    let group = core.append_group(batch, &mut |r, res| answers.push((r, res)));
    assert!(matches!(answers.as_slice(), [(2, Err(CommitError::Encode(RecordEncodeError::BadName)))]));
    core.complete_group(group, &mut |r, res| answers.push((r, res)));
    let ids: Vec<(u64, u64)> = answers[1..].iter().map(|(r, res)| (*r, res.as_ref().unwrap().position.commit_id)).collect();
    assert_eq!(ids, vec![(1, 1), (3, 2)]);
}
