#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! MVCC-1: for read view R, the visible version of a key is the one with the
//! largest CommitId <= R; a tombstone means not found. Checked against a
//! model at every R, for point reads and range reads.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use aerodb_mvcc::{Store, ViewError, Visible};
use aerodb_wal::{CommitId, Op};
use bytes::Bytes;
use common::{apply_next, op_del, op_put, text};
use proptest::prelude::*;

/// What the model says is visible: `(CommitId, Some(doc) | None for tombstone)`.
type ModelVersion = (CommitId, Option<String>);

/// model[key] = every version of that key, oldest first.
fn model_visible(model: &BTreeMap<String, Vec<ModelVersion>>, key: &str, r: CommitId) -> Option<ModelVersion> {
    model.get(key)?.iter().rev().find(|(c, _)| *c <= r).cloned()
}

/// Checks point reads and an unbounded scan at every R in 0..=C against the model.
fn check_every_view(store: &Arc<Store>, collection: &str, model: &BTreeMap<String, Vec<ModelVersion>>, extra_keys: &[&str]) {
    let c = store.applied().commit_id;
    for r in 0..=c {
        let view = store.read_view(Some(r)).unwrap();
        assert_eq!(view.read_upper_bound(), r);
        let mut expected_scan = Vec::new();
        for key in model.keys().map(String::as_str).chain(extra_keys.iter().copied()) {
            let got = view.get(collection.as_bytes(), key.as_bytes());
            match model_visible(model, key, r) {
                None => assert_eq!(got, None, "key {key} at R={r}: no version <= R exists"),
                Some((cid, None)) => assert_eq!(got, Some(Visible { commit_id: cid, doc: None }), "key {key} at R={r}: tombstone {cid}"),
                Some((cid, Some(doc))) => {
                    let got = got.unwrap_or_else(|| panic!("key {key} at R={r}: expected version {cid}"));
                    assert_eq!(got.commit_id, cid, "key {key} at R={r}");
                    assert_eq!(text(got.doc.as_ref().unwrap()), doc, "key {key} at R={r}");
                    expected_scan.push((key.to_string(), cid, doc));
                }
            }
        }
        expected_scan.sort();
        let page = view.scan(collection.as_bytes(), None, None, usize::MAX);
        let got: Vec<(String, CommitId, String)> =
            page.items.iter().map(|(k, c, d)| (String::from_utf8(k.to_vec()).unwrap(), *c, text(d).to_string())).collect();
        assert_eq!(got, expected_scan, "scan at R={r}: tombstoned and not-yet-written keys are absent");
        assert_eq!(page.next, None);
    }
}

/// MVCC-1: a hand-written version chain with puts, overwrites, a tombstone
/// and a re-creation after the tombstone, read at every R.
#[test]
fn mvcc_1_version_chain_visible_version_is_largest_commit_id_at_or_below_r() {
    let store = Arc::new(Store::new());
    let history: Vec<Vec<Op>> = vec![
        vec![op_put("c", "a", "\"a1\""), op_put("c", "b", "\"b1\"")], // 1
        vec![op_put("c", "a", "\"a2\"")],                             // 2
        vec![op_del("c", "b"), op_put("c", "c", "\"c3\"")],           // 3: tombstone b
        vec![op_put("other", "a", "\"x4\"")],                         // 4: other collection only
        vec![op_put("c", "b", "\"b5\""), op_del("c", "a")],           // 5: b re-created, a deleted
        vec![op_del("c", "never-existed")],                           // 6: tombstone without a prior version
    ];
    for ops in &history {
        apply_next(&store, ops);
    }
    assert_eq!(store.applied().commit_id, 6);

    // (key, R, expected visible (CommitId, doc or tombstone)).
    type Case = (&'static str, CommitId, Option<(CommitId, Option<&'static str>)>);
    let cases: &[Case] = &[
        ("a", 0, None),
        ("a", 1, Some((1, Some("\"a1\"")))),
        ("a", 2, Some((2, Some("\"a2\"")))),
        ("a", 4, Some((2, Some("\"a2\"")))),
        ("a", 5, Some((5, None))),
        ("a", 6, Some((5, None))),
        ("b", 2, Some((1, Some("\"b1\"")))),
        ("b", 3, Some((3, None))),
        ("b", 4, Some((3, None))),
        ("b", 5, Some((5, Some("\"b5\"")))),
        ("c", 2, None),
        ("c", 3, Some((3, Some("\"c3\"")))),
        ("never-existed", 5, None),
        ("never-existed", 6, Some((6, None))),
    ];
    for (key, r, expected) in cases {
        let view = store.read_view(Some(*r)).unwrap();
        let got = view.get(b"c", key.as_bytes());
        let expected = expected.map(|(cid, doc)| Visible { commit_id: cid, doc: doc.map(|d| Bytes::copy_from_slice(d.as_bytes())) });
        assert_eq!(got, expected, "key {key} at R={r}");
    }
    // The other collection's "a" is a different key.
    let view = store.read_view(Some(6)).unwrap();
    assert_eq!(view.get(b"other", b"a").map(|v| v.commit_id), Some(4));
    assert_eq!(store.read_view(Some(3)).unwrap().get(b"other", b"a"), None);

    // Full chains are kept, oldest first.
    let chain: Vec<CommitId> = store.version_chain(b"c", b"b").iter().map(|v| v.commit_id).collect();
    assert_eq!(chain, vec![1, 3, 5]);

    let mut model: BTreeMap<String, Vec<ModelVersion>> = BTreeMap::new();
    for (i, ops) in history.iter().enumerate() {
        for op in ops.iter().filter(|o| o.collection() == b"c") {
            let key = String::from_utf8(op.key().to_vec()).unwrap();
            let doc = op.doc().map(|d| String::from_utf8(d.to_vec()).unwrap());
            model.entry(key).or_default().push((i as CommitId + 1, doc));
        }
    }
    check_every_view(&store, "c", &model, &["zzz", "0"]);
}

/// MVCC-1: the default view is the applied CommitId; a view beyond it is
/// refused rather than silently clamped.
#[test]
fn mvcc_1_default_view_is_applied_commit_and_views_beyond_it_are_refused() {
    let store = Arc::new(Store::new());
    assert_eq!(store.read_view(None).unwrap().read_upper_bound(), 0);
    apply_next(&store, &[op_put("c", "k", "1")]);
    apply_next(&store, &[op_put("c", "k", "2")]);
    let view = store.read_view(None).unwrap();
    assert_eq!(view.read_upper_bound(), 2);
    assert_eq!(view.get(b"c", b"k").unwrap().commit_id, 2);
    assert_eq!(store.read_view(Some(3)).err(), Some(ViewError::BeyondApplied { requested: 3, applied: 2 }));
    assert_eq!(store.history_horizon(), 0);
}

/// MVCC-1: range reads honour start (inclusive), end (exclusive), limit and
/// continuation, and skip keys whose visible version is a tombstone.
#[test]
fn mvcc_1_range_read_bounds_pagination_and_tombstones() {
    let store = Arc::new(Store::new());
    let ops: Vec<Op> = (0..10).map(|i| op_put("c", &format!("k{i}"), &i.to_string())).collect();
    apply_next(&store, &ops); // 1
    apply_next(&store, &[op_del("c", "k3"), op_del("c", "k4")]); // 2
    let view = store.read_view(None).unwrap();
    let keys = |p: &aerodb_mvcc::ScanPage| p.items.iter().map(|(k, _, _)| String::from_utf8(k.to_vec()).unwrap()).collect::<Vec<_>>();

    let page = view.scan(b"c", Some(b"k2"), Some(b"k7"), 100);
    assert_eq!(keys(&page), ["k2", "k5", "k6"]);
    assert_eq!(page.next, None);

    let first = view.scan(b"c", None, None, 3);
    assert_eq!(keys(&first), ["k0", "k1", "k2"]);
    let next = first.next.clone().unwrap();
    assert_eq!(&next[..], b"k5", "continuation skips tombstoned keys");
    let second = view.scan(b"c", Some(&next), None, 3);
    assert_eq!(keys(&second), ["k5", "k6", "k7"]);
    let third = view.scan(b"c", second.next.as_deref(), None, 3);
    assert_eq!(keys(&third), ["k8", "k9"]);
    assert_eq!(third.next, None);

    assert!(view.scan(b"c", Some(b"k5"), Some(b"k5"), 10).items.is_empty(), "empty range");
    assert!(view.scan(b"c", Some(b"k6"), Some(b"k2"), 10).items.is_empty(), "inverted range");
    assert!(view.scan(b"nope", None, None, 10).items.is_empty(), "unknown collection");

    // At R=1 the deleted keys are still visible.
    let old = store.read_view(Some(1)).unwrap();
    assert_eq!(old.scan(b"c", Some(b"k3"), Some(b"k5"), 10).items.len(), 2);
}

fn arb_history() -> impl Strategy<Value = Vec<Vec<(u8, Option<u16>)>>> {
    // Up to 12 commits, each touching 1..=4 distinct keys out of 6.
    prop::collection::vec(prop::collection::btree_map(0u8..6, prop::option::weighted(0.75, any::<u16>()), 1..=4).prop_map(|m| m.into_iter().collect()), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// MVCC-1: random histories of puts and tombstones; every key at every R
    /// matches the model (largest CommitId <= R, tombstone = not found).
    #[test]
    fn mvcc_1_random_histories_match_the_visibility_model(history in arb_history()) {
        let store = Arc::new(Store::new());
        let mut model: BTreeMap<String, Vec<ModelVersion>> = BTreeMap::new();
        for (i, write_set) in history.iter().enumerate() {
            let commit_id = i as CommitId + 1;
            let ops: Vec<Op> = write_set
                .iter()
                .map(|(k, doc)| {
                    let key = format!("k{k}");
                    let doc = doc.map(|d| format!("{{\"v\":{d}}}"));
                    model.entry(key.clone()).or_default().push((commit_id, doc.clone()));
                    match doc {
                        Some(d) => op_put("c", &key, &d),
                        None => op_del("c", &key),
                    }
                })
                .collect();
            prop_assert_eq!(apply_next(&store, &ops).commit_id, commit_id);
        }
        check_every_view(&store, "c", &model, &["k6", "k7"]);
    }
}
