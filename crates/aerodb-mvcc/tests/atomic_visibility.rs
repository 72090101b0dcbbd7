#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! MVCC-2: all versions of one commit become visible together, and only
//! once durable. Exercised through the primary's real commit path
//! (validate → WAL append → group fsync → apply → acknowledge).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use aerodb_mvcc::Store;
use aerodb_wal::{CommitId, StateDigest};
use common::{apply_next, commit, del, fresh_engine, next_input, op_put, put, text, wal_records};

/// Keys every write set of the hammer test writes together.
const KEYS: usize = 8;
const WRITERS: u64 = 4;
const COMMITS_PER_WRITER: u64 = 60;

fn doc_for(writer: u64, seq: u64) -> String {
    format!("{{\"writer\":{writer},\"seq\":{seq}}}")
}

/// Reads every key and a full scan at one pinned view and checks that they
/// all come from the same commit, which must be exactly R (every commit of
/// the workload writes every key).
fn check_view_is_whole(store: &Arc<Store>) -> CommitId {
    let view = store.read_view(None).unwrap();
    let r = view.read_upper_bound();
    let mut seen: Option<(CommitId, String)> = None;
    for k in 0..KEYS {
        let got = view.get(b"c", format!("k{k}").as_bytes());
        if r == 0 {
            assert_eq!(got, None, "nothing is visible at R=0");
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("key k{k} missing at R={r}: half a write set visible"));
        let doc = text(got.doc.as_ref().unwrap()).to_string();
        match &seen {
            None => seen = Some((got.commit_id, doc)),
            Some((cid, d)) => {
                assert_eq!(got.commit_id, *cid, "key k{k} at R={r} comes from another commit: half a write set visible");
                assert_eq!(&doc, d, "key k{k} at R={r} has another write set's document");
            }
        }
    }
    if let Some((cid, _)) = &seen {
        assert_eq!(*cid, r, "the commit at R={r} must be fully visible at R");
    }
    let page = view.scan(b"c", None, None, usize::MAX);
    assert_eq!(page.items.len(), if r == 0 { 0 } else { KEYS }, "scan at R={r}");
    assert!(page.items.iter().all(|(_, cid, _)| *cid == r), "scan at R={r} mixes commits");
    r
}

/// MVCC-2: a reader thread hammering pinned views while four writers commit
/// 8-key write sets through PrimaryEngine never sees half a write set, and
/// every acknowledged commit is visible when its acknowledgement arrives.
#[test]
fn mvcc_2_reader_never_sees_half_a_write_set_during_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(fresh_engine(dir.path()));
    let store = engine.store().clone();
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));

    let reader = {
        let (store, done, reads) = (store.clone(), done.clone(), reads.clone());
        std::thread::spawn(move || {
            let mut last_r = 0;
            loop {
                // Read the flag first so one full check always runs after the last commit.
                let finished = done.load(Ordering::Acquire);
                let r = check_view_is_whole(&store);
                assert!(r >= last_r, "views never go backwards: {r} after {last_r}");
                last_r = r;
                reads.fetch_add(1, Ordering::Relaxed);
                if finished {
                    return last_r;
                }
            }
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for seq in 0..COMMITS_PER_WRITER {
                    let doc = doc_for(w, seq);
                    let ops = (0..KEYS).map(|k| put("c", &format!("k{k}"), &doc)).collect();
                    let cid = commit(&engine, ops);
                    // Visible (and durable) by the time it is acknowledged.
                    let view = engine.store().read_view(Some(cid)).expect("acknowledged commit is applied");
                    for k in 0..KEYS {
                        let v = view.get(b"c", format!("k{k}").as_bytes()).unwrap();
                        assert_eq!(v.commit_id, cid);
                        assert_eq!(text(v.doc.as_ref().unwrap()), doc);
                    }
                    assert!(engine.durable().current().commit_id >= cid, "acknowledged before durable");
                    acked.push(cid);
                }
                acked
            })
        })
        .collect();
    let mut all: Vec<CommitId> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    done.store(true, Ordering::Release);
    let last_seen = reader.join().unwrap();

    all.sort_unstable();
    let total = WRITERS * COMMITS_PER_WRITER;
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "CommitIds are 1..=N with no gap or duplicate");
    assert_eq!(last_seen, total, "the reader's final view sees the last commit");
    assert!(reads.load(Ordering::Relaxed) >= 1);
    // Every record is in the WAL with all 8 ops.
    let records = wal_records(dir.path());
    assert_eq!(records.len() as u64, total);
    assert!(records.iter().all(|(r, _)| r.ops().len() == KEYS));
}

/// MVCC-2: a multi-op write set mixing puts and deletes across collections
/// appears at exactly one CommitId: nothing of it at R-1, all of it at R.
#[test]
fn mvcc_2_multi_op_commit_is_all_or_nothing_at_its_commit_id() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    let c1 = commit(&engine, vec![put("users", "u1", "{\"n\":1}"), put("users", "u2", "{\"n\":2}")]);
    let c2 = commit(&engine, vec![put("users", "u3", "{\"n\":3}"), del("users", "u1"), put("orders", "o1", "{\"t\":9}"), put("users", "u2", "{\"n\":22}")]);
    assert_eq!((c1, c2), (1, 2));
    let store = engine.store();
    let before = store.read_view(Some(1)).unwrap();
    assert!(before.get(b"users", b"u3").is_none());
    assert!(before.get(b"orders", b"o1").is_none());
    assert_eq!(before.get(b"users", b"u1").unwrap().doc.as_deref(), Some(&b"{\"n\":1}"[..]));
    assert_eq!(before.get(b"users", b"u2").unwrap().commit_id, 1);
    let after = store.read_view(Some(2)).unwrap();
    assert_eq!(after.get(b"users", b"u3").unwrap().commit_id, 2);
    assert_eq!(after.get(b"orders", b"o1").unwrap().commit_id, 2);
    assert_eq!(after.get(b"users", b"u1").unwrap().doc, None, "tombstone from the same commit");
    assert_eq!(after.get(b"users", b"u2").unwrap().commit_id, 2);
    assert_eq!(store.version_count(), 6);
}

/// MVCC-2 (and REPL-4): a record refused by apply makes none of its
/// versions visible, even though some of them would be valid on their own.
#[test]
fn mvcc_2_refused_record_makes_none_of_its_versions_visible() {
    let store = Arc::new(Store::new());
    apply_next(&store, &[op_put("c", "a", "1")]);
    let ops = vec![op_put("c", "a", "2"), op_put("c", "b", "2")];
    let (position, digest) = next_input(&store, &ops);
    let wrong = StateDigest(digest.0 ^ 1);
    let before = store.applied();
    assert!(store.apply(aerodb_mvcc::ApplyInput { position, state_digest: wrong, body: &aerodb_wal::RecordBody::Commit(ops.clone()) }).is_err());
    assert_eq!(store.applied(), before);
    assert_eq!(store.version_count(), 1);
    assert!(store.version_chain(b"c", b"b").is_empty());
    assert_eq!(store.read_view(None).unwrap().get(b"c", b"a").unwrap().commit_id, 1);
}

/// MVCC-2 (and RES-3's waiting reads, which are woken by it): the applied
/// observer is called once per commit, only after every version of that
/// commit is visible, with CommitIds in order; installing it reports the
/// current applied CommitId at once (nothing applied before is missed); a
/// store takes one observer.
#[test]
fn mvcc_2_applied_observer_is_called_after_each_commit_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    commit(&engine, vec![put("c", "k0", "1")]);
    let store = engine.store().clone();
    let observed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (seen, reader) = (observed.clone(), Arc::downgrade(&store));
    store
        .set_applied_observer(Arc::new(move |c: CommitId| {
            if let Some(store) = reader.upgrade() {
                let view = store.read_view(None).unwrap();
                assert!(view.read_upper_bound() >= c, "observer called before commit {c} is visible");
                if c > 0 {
                    assert!(view.get(b"c", format!("k{}", c - 1).as_bytes()).is_some(), "commit {c} not visible to the observer");
                }
            }
            seen.lock().push(c);
        }))
        .map_err(|_| ())
        .unwrap();
    for i in 1..4u64 {
        commit(&engine, vec![put("c", &format!("k{i}"), &i.to_string())]);
    }
    assert_eq!(*observed.lock(), vec![1, 2, 3, 4]);
    assert!(store.set_applied_observer(Arc::new(|_| {})).is_err(), "one observer per store");
}
