#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Garbage collection through GC records (MVCC-4), reads pinned across it
//! (MVCC-5, F-G1), the primary's retention policy and memory that stays
//! bounded by live data and the retention window (RES-1).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use aerodb_mvcc::gc::retained_versions;
use aerodb_mvcc::{ApplyError, Store, ViewError};
use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::record::decode_record;
use aerodb_wal::{CommitId, RecordBody, StateDigest};
use bytes::Bytes;
use common::*;
use proptest::prelude::*;

const COLL: &str = "c";
const KEYS: usize = 6;

fn key(i: usize) -> String {
    format!("k{i}")
}

/// What a read at R answers for one key: the document, or not found (a
/// tombstone and no version at all both mean "not found").
fn read(store: &Arc<Store>, r: CommitId, k: &str) -> Option<(CommitId, Bytes)> {
    let view = store.read_view(Some(r)).unwrap();
    view.get(COLL.as_bytes(), k.as_bytes()).and_then(|v| v.doc.map(|d| (v.commit_id, d)))
}

fn scan_all(store: &Arc<Store>, r: CommitId) -> Vec<(Bytes, CommitId, Bytes)> {
    store.read_view(Some(r)).unwrap().scan(COLL.as_bytes(), None, None, 1000).items
}

/// The digest and count of the versions of `full` (which keeps all
/// history) that are retained at `horizon`.
fn retained_digest(full: &Store, horizon: CommitId) -> (StateDigest, u64) {
    let (mut d, mut n) = (StateDigest::EMPTY, 0);
    for i in 0..KEYS {
        let chain = full.version_chain(COLL.as_bytes(), key(i).as_bytes());
        for v in retained_versions(&chain, horizon) {
            d = d.plus_version(version_hash_parts(v.commit_id, COLL.as_bytes(), key(i).as_bytes(), v.doc.as_deref()));
            n += 1;
        }
    }
    (d, n)
}

#[derive(Clone, Debug)]
enum Step {
    Put(usize, u8),
    Delete(usize),
    Pair(usize, u8),
    Gc(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..KEYS, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => (0..KEYS).prop_map(Step::Delete),
        1 => (0..KEYS, any::<u8>()).prop_map(|(k, v)| Step::Pair(k, v)),
        2 => any::<u8>().prop_map(Step::Gc),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// MVCC-4: after any mix of commits and GC records, every read at
    /// R >= H answers exactly what a store that never collected answers,
    /// views below H are refused, and the state digest and version count
    /// are those of exactly the versions retained at H (so they are equal
    /// on every node applying the same records: REPL-4). The full-history
    /// store applies the same GC records with horizon 0, which remove
    /// nothing, so CommitIds stay aligned.
    #[test]
    fn mvcc_4_gc_store_reads_like_full_history_at_and_above_the_horizon(steps in proptest::collection::vec(step(), 1..50)) {
        let gc = Arc::new(Store::new());
        let full = Arc::new(Store::new());
        for (n, s) in steps.iter().enumerate() {
            match s {
                Step::Put(k, v) => {
                    let ops = [op_put(COLL, &key(*k), &format!("{{\"v\":{v},\"n\":{n}}}"))];
                    apply_next(&gc, &ops);
                    apply_next(&full, &ops);
                }
                Step::Delete(k) => {
                    apply_next(&gc, &[op_del(COLL, &key(*k))]);
                    apply_next(&full, &[op_del(COLL, &key(*k))]);
                }
                Step::Pair(k, v) => {
                    let ops = [op_del(COLL, &key(*k)), op_put(COLL, &key((k + 1) % KEYS), &format!("{v}"))];
                    apply_next(&gc, &ops);
                    apply_next(&full, &ops);
                }
                Step::Gc(d) => {
                    let (h, c) = (gc.history_horizon(), gc.applied().commit_id);
                    let horizon = h + u64::from(*d) % (c - h + 1);
                    apply_gc(&gc, horizon).unwrap();
                    apply_gc(&full, 0).unwrap();
                }
            }
            prop_assert_eq!(gc.applied().commit_id, full.applied().commit_id);
        }
        let (h, c) = (gc.history_horizon(), gc.applied().commit_id);
        prop_assert_eq!(full.history_horizon(), 0);
        let (digest, count) = retained_digest(&full, h);
        prop_assert_eq!(gc.applied().state_digest, digest);
        prop_assert_eq!(gc.version_count(), count);
        prop_assert_eq!(gc.gc_stats().versions_held, count, "nothing pinned: everything removed is purged");
        for r in h..=c {
            for i in 0..KEYS {
                prop_assert_eq!(read(&gc, r, &key(i)), read(&full, r, &key(i)), "key {} at R {} (H {})", i, r, h);
            }
            prop_assert_eq!(scan_all(&gc, r), scan_all(&full, r));
        }
        if h > 0 {
            prop_assert_eq!(gc.read_view(Some(h - 1)).err(), Some(ViewError::BelowHorizon { requested: h - 1, horizon: h }));
        }
        for i in 0..KEYS {
            let kept: Vec<_> = retained_versions(&full.version_chain(COLL.as_bytes(), key(i).as_bytes()), h).cloned().collect();
            prop_assert_eq!(gc.version_chain(COLL.as_bytes(), key(i).as_bytes()), kept);
        }
    }
}

/// A store with three overwrites of `a`, a deleted `b` and a live `c`.
fn history() -> Arc<Store> {
    let store = Arc::new(Store::new());
    apply_next(&store, &[op_put(COLL, "a", "1"), op_put(COLL, "b", "1")]); // 1
    apply_next(&store, &[op_put(COLL, "a", "2")]); // 2
    apply_next(&store, &[op_del(COLL, "b"), op_put(COLL, "c", "1")]); // 3
    apply_next(&store, &[op_put(COLL, "a", "3")]); // 4
    store
}

/// MVCC-4, F-D3: a GC record whose digest is not the digest of what it
/// removes is refused with APPLY_DIVERGED before anything changes.
#[test]
fn mvcc_4_gc_record_with_a_wrong_digest_is_refused_and_changes_nothing() {
    let store = history();
    let before = (store.applied(), store.gc_stats(), scan_all(&store, 1), scan_all(&store, 4));
    let right = store.gc_digest(3).unwrap();
    assert_ne!(right, store.applied().state_digest, "GC at 3 removes versions");
    let err = apply_gc_with(&store, 3, store.applied().state_digest).unwrap_err();
    assert_eq!(err.code(), "APPLY_DIVERGED");
    assert!(matches!(err, ApplyError::DigestMismatch { commit_id: 5, recomputed, .. } if recomputed == right), "{err:?}");
    assert_eq!((store.applied(), store.gc_stats(), scan_all(&store, 1), scan_all(&store, 4)), before);
    apply_gc(&store, 3).unwrap();
    assert_eq!(store.history_horizon(), 3);
}

/// MVCC-4: a GC record may not move the horizon backwards (it would admit
/// reads whose versions are gone) nor state a horizon at or above itself.
#[test]
fn mvcc_4_gc_horizon_moving_backwards_is_refused() {
    let store = history();
    apply_gc(&store, 3).unwrap();
    let before = (store.applied(), store.gc_stats());
    let err = apply_gc_with(&store, 2, store.applied().state_digest).unwrap_err();
    assert_eq!((err.code(), err.rule_id()), ("GC_BAD_HORIZON", "MVCC-4"));
    assert_eq!(err, ApplyError::BadHorizon { commit_id: 6, horizon: 2, current: 3 });
    let err = apply_gc_with(&store, 6, store.applied().state_digest).unwrap_err();
    assert_eq!(err.code(), "GC_BAD_HORIZON");
    assert_eq!((store.applied(), store.gc_stats()), before);
    // The same horizon again removes nothing and is accepted.
    apply_gc_with(&store, 3, store.applied().state_digest).unwrap();
    assert_eq!(store.gc_stats().gc_records_applied, 2);
}

/// MVCC-4: what a GC record removes, exactly: shadowed versions at or
/// below H, a tombstone that is the newest at or below H and everything
/// under it; never the newest live version at or below H, never anything
/// above H.
#[test]
fn mvcc_4_gc_removes_exactly_the_versions_no_view_at_or_above_the_horizon_sees() {
    let store = history();
    assert_eq!(store.version_count(), 6);
    apply_gc(&store, 3).unwrap();
    let ids = |k: &str| store.version_chain(COLL.as_bytes(), k.as_bytes()).iter().map(|v| v.commit_id).collect::<Vec<_>>();
    assert_eq!(ids("a"), [2, 4], "a@1 shadowed by a@2 <= H; a@2 is the newest <= H; a@4 > H");
    assert_eq!(ids("b"), Vec::<CommitId>::new(), "the tombstone b@3 <= H goes with b@1 under it");
    assert_eq!(ids("c"), [3]);
    assert_eq!(store.version_count(), 3);
    assert_eq!(store.gc_stats().versions_held, 3);
    assert_eq!(read(&store, 3, "a").unwrap().0, 2);
    assert_eq!(read(&store, 3, "b"), None);
    assert_eq!(read(&store, 5, "a").unwrap().0, 4);
}

/// MVCC-5, F-G1: views pinned below and above the new horizon before a GC
/// record is applied read exactly what they read before it, page after
/// page; new views below H are refused (RS-4); the removed versions stay
/// in memory only until the last view below H is dropped.
#[test]
fn mvcc_5_f_g1_views_pinned_below_and_above_the_horizon_read_unchanged_across_gc() {
    let store = history();
    let below = store.read_view(Some(1)).unwrap();
    let above = store.read_view(Some(3)).unwrap();
    let snap = |v: &aerodb_mvcc::ReadView| {
        let keys = ["a", "b", "c"].map(|k| v.get(COLL.as_bytes(), k.as_bytes()).and_then(|x| x.doc));
        (keys, v.scan(COLL.as_bytes(), None, None, 10).items)
    };
    let (b0, a0) = (snap(&below), snap(&above));
    assert!(b0.0[1].is_some(), "b@1 is visible at 1");
    apply_gc(&store, 3).unwrap();
    apply_next(&store, &[op_put(COLL, "a", "4"), op_del(COLL, "c")]);
    apply_gc(&store, 5).unwrap();
    assert_eq!(snap(&below), b0, "MVCC-5: the view at 1 completes with the versions it pinned");
    assert_eq!(snap(&above), a0, "the view at 3 too");
    assert_eq!(store.read_view(Some(1)).err(), Some(ViewError::BelowHorizon { requested: 1, horizon: 5 }));
    assert_eq!(store.read_view(Some(4)).err(), Some(ViewError::BelowHorizon { requested: 4, horizon: 5 }));
    let stats = store.gc_stats();
    assert!(stats.versions_awaiting_purge > 0, "{stats:?}");
    assert_eq!(stats.versions_held, stats.versions + stats.versions_awaiting_purge);
    drop(below);
    assert_eq!(snap(&above), a0);
    drop(above);
    let stats = store.gc_stats();
    assert_eq!((stats.versions_awaiting_purge, stats.versions_held), (0, stats.versions), "purged once no view needs them");
    assert_eq!(store.active_read_views(), Vec::new());
}

/// MVCC-5, MVCC-3: a long paginated range read pinned at R keeps one view
/// while commits and GC records that move the horizon past R are applied
/// between its pages: the pages together equal a one-shot scan at R.
#[test]
fn mvcc_5_long_range_read_pinned_across_gc_records_completes_unchanged() {
    let store = Arc::new(Store::new());
    for round in 0..3 {
        for i in 0..40 {
            apply_next(&store, &[op_put(COLL, &format!("k{i:02}"), &format!("{{\"round\":{round}}}"))]);
        }
    }
    let r = store.applied().commit_id;
    let expected = scan_all(&store, r);
    let view = store.read_view(Some(r)).unwrap();
    let mut got = Vec::new();
    let mut start: Option<Bytes> = None;
    loop {
        let page = view.scan(COLL.as_bytes(), start.as_deref(), None, 7);
        got.extend(page.items);
        for i in 0..40 {
            if i % 3 == 0 {
                apply_next(&store, &[op_del(COLL, &format!("k{i:02}"))]);
            } else {
                apply_next(&store, &[op_put(COLL, &format!("k{i:02}"), "{\"round\":9}")]);
            }
        }
        let c = store.applied().commit_id;
        apply_gc(&store, c).unwrap();
        match page.next {
            Some(n) => start = Some(n),
            None => break,
        }
    }
    assert!(store.history_horizon() > r, "GC moved the horizon past the pinned view");
    assert_eq!(got, expected);
    assert!(store.gc_stats().versions_awaiting_purge > 0);
    drop(view);
    assert_eq!(store.gc_stats().versions_awaiting_purge, 0);
}

/// MVCC-4 / REPL-10: the primary writes GC records at the policy's
/// cadence, each taking the next CommitId (CommitIds stay dense); replaying
/// the WAL reaches the same horizon, digest and reads as the primary.
#[test]
fn mvcc_4_primary_writes_gc_records_by_commit_id_and_replay_reaches_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine_gc(dir.path(), 10);
    for i in 0..120 {
        commit(&engine, vec![put("c", &format!("k{}", i % 7), &format!("{{\"i\":{i}}}"))]);
    }
    let store = engine.store().clone();
    // Dropping the engine stops the commit thread, GC records included.
    drop(engine);
    let (applied, horizon, stats) = (store.applied(), store.history_horizon(), store.gc_stats());
    let records = wal_records(dir.path());
    let ids: Vec<CommitId> = records.iter().map(|(r, _)| r.commit_id).collect();
    assert_eq!(ids, (1..=applied.commit_id).collect::<Vec<_>>(), "CommitIds stay dense");
    let gcs: Vec<(CommitId, CommitId)> = records.iter().filter_map(|(r, _)| r.body.gc_horizon().map(|h| (r.commit_id, h))).collect();
    assert!(gcs.len() >= 5, "{gcs:?}");
    let mut last = 0;
    for (g, h) in &gcs {
        assert_eq!(*h, g - 1 - 10, "horizon = C - N when GC record {g} was written");
        assert!(*h >= last + GcStep::of(10));
        last = *h;
    }
    assert_eq!(horizon, last);
    assert_eq!(stats.gc_records_applied, gcs.len() as u64);
    let (replayed, _) = recover_fresh(dir.path());
    assert_eq!(replayed.applied(), applied);
    assert_eq!(replayed.history_horizon(), horizon);
    assert_eq!(replayed.version_count(), stats.versions);
    assert_eq!(all_versions(&replayed), all_versions(&store));
    for r in horizon..=applied.commit_id {
        assert_eq!(scan_all(&replayed, r), scan_all(&store, r));
    }
}

struct GcStep;
impl GcStep {
    fn of(n: u64) -> u64 {
        aerodb_mvcc::GcPolicy::new(n).step()
    }
}

/// RES-1: ten passes of overwrites over the same keys leave the versions
/// held bounded by the live keys plus the retention window, and flat from
/// pass 5 to pass 10, on the primary and on a store rebuilt from its WAL.
#[test]
fn res_1_versions_held_stay_bounded_across_overwrite_passes() {
    const LIVE: usize = 40;
    const RETAIN: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine_gc(dir.path(), RETAIN);
    let bound = LIVE as u64 + RETAIN + GcStep::of(RETAIN) + 1;
    let mut per_pass = Vec::new();
    for pass in 0..10 {
        for k in 0..LIVE {
            commit(&engine, vec![put("c", &format!("k{k}"), &format!("{{\"pass\":{pass},\"pad\":\"{}\"}}", "x".repeat(64)))]);
        }
        let s = engine.store().gc_stats();
        assert!(s.versions_held <= bound, "pass {pass}: {s:?} above {bound}");
        per_pass.push(s.versions_held);
    }
    let late = &per_pass[4..];
    assert!(late.iter().max().unwrap() - late.iter().min().unwrap() <= GcStep::of(RETAIN) + 1, "flat from pass 5 on: {per_pass:?}");
    let store = engine.store().clone();
    drop(engine);
    let applied = store.applied();
    let (replayed, _) = recover_fresh(dir.path());
    assert_eq!(replayed.applied(), applied);
    assert!(replayed.gc_stats().versions_held <= bound);
}

/// RES-1: a version never keeps the buffer it was decoded from alive: a
/// record decoded from a large read buffer (a whole segment at recovery,
/// a network chunk on a replica) is applied, and the stored body lives in
/// an allocation of its own.
#[test]
fn res_1_stored_versions_do_not_pin_the_buffer_they_were_decoded_from() {
    let ops = [op_put(COLL, "k", "{\"small\":true}")];
    let (position, digest) = next_input(&Store::new(), &ops);
    let (bytes, _) = aerodb_wal::record::encode_record(1, digest, position.fingerprint, &ops).unwrap();
    let mut big = bytes.clone();
    big.resize(1 << 20, 0);
    let buffer = Bytes::from(big);
    let (record, len) = decode_record(&buffer).unwrap();
    let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
    assert!(matches!(&record.body, RecordBody::Commit(ops) if range.contains(&(ops[0].doc().unwrap().as_ptr() as usize))), "decoding is zero-copy");
    let store = Arc::new(Store::new());
    let position = aerodb_wal::RecordPosition { end_lsn: len as u64, ..position };
    store.apply(aerodb_mvcc::ApplyInput::of_record(position, &record)).unwrap();
    drop(record);
    let doc = store.read_view(None).unwrap().get(COLL.as_bytes(), b"k").unwrap().doc.unwrap();
    assert!(!range.contains(&(doc.as_ptr() as usize)), "the stored body is a copy");
    assert_eq!(&doc[..], b"{\"small\":true}");

    // Snapshot load: versions decoded from a read chunk are copied too.
    let mut builder = Store::builder();
    let chunk = Bytes::from(vec![b'x'; 1 << 20]);
    builder
        .add(aerodb_mvcc::store::OwnedVersion { collection: chunk.slice(0..1), key: chunk.slice(1..2), commit_id: 1, doc: Some(chunk.slice(2..10)) })
        .unwrap();
    let digest = builder.digest();
    let cut = aerodb_mvcc::AppliedState { commit_id: 1, end_lsn: 100, fingerprint: aerodb_wal::Fingerprint(1), state_digest: digest };
    let loaded = Arc::new(builder.finish(cut).unwrap());
    let doc = loaded.read_view(None).unwrap().get(b"x", b"x").unwrap().doc.unwrap();
    let chunk_range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
    assert!(!chunk_range.contains(&(doc.as_ptr() as usize)));
}

/// RES-1: the store keeps each body in an allocation of exactly its
/// length with no reference count; reads, scans and snapshot streams hand
/// out equal copies, each independent of the others and of what is stored
/// (the input buffer is never kept: see
/// `res_1_stored_versions_do_not_pin_the_buffer_they_were_decoded_from`).
#[test]
fn res_1_reads_scans_and_streams_return_copies_of_the_stored_body() {
    let store = Arc::new(Store::new());
    let input = b"{\"v\":1}";
    apply_next(&store, &[op_put(COLL, "k", "{\"v\":1}")]);
    let view = store.read_view(None).unwrap();
    let a = view.get(COLL.as_bytes(), b"k").unwrap().doc.unwrap();
    let b = view.get(COLL.as_bytes(), b"k").unwrap().doc.unwrap();
    let scanned = view.scan(COLL.as_bytes(), None, None, 10).items.remove(0).2;
    let streamed = all_versions(&store).remove(0).doc.unwrap();
    for body in [&a, &b, &scanned, &streamed] {
        assert_eq!(&body[..], &input[..]);
    }
    assert_ne!(a.as_ptr(), b.as_ptr(), "each read has its own copy");
}

/// MVCC-4: the keys a store lists after GC are those with a retained
/// version; a key whose only versions were removed is gone entirely.
#[test]
fn mvcc_4_keys_with_no_retained_version_are_dropped() {
    let store = Arc::new(Store::new());
    apply_next(&store, &[op_put(COLL, "gone", "1")]);
    apply_next(&store, &[op_del(COLL, "gone")]);
    apply_next(&store, &[op_put(COLL, "kept", "1")]);
    apply_gc(&store, 3).unwrap();
    let keys: BTreeSet<Bytes> = all_versions(&store).into_iter().map(|v| v.key).collect();
    assert_eq!(keys, BTreeSet::from([Bytes::from_static(b"kept")]));
    assert_eq!(store.gc_stats().versions_held, 1);
    let view = store.read_view(None).unwrap();
    assert_eq!(view.get(COLL.as_bytes(), b"gone"), None);
}
