#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! CORE-4: replay is deterministic and goes through the one apply function;
//! applying a record twice is refused and changes nothing. REPL-4: the
//! digest a record carries is checked against the recomputed one and a
//! mismatch is refused before anything becomes visible.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use aerodb_mvcc::{ApplyError, ApplyInput, ClientOp, Store};
use aerodb_wal::{CommitId, Record, RecordPosition, StateDigest};
use bytes::Bytes;
use common::{all_versions, commit, del, fresh_engine, put, recover_fresh, reopen_engine, wal_records};
use proptest::prelude::*;

/// A varied, deterministic workload: multi-op write sets, overwrites,
/// deletes, several collections.
fn workload(engine: &aerodb_mvcc::PrimaryEngine, n: u64) {
    for i in 1..=n {
        let mut ops = vec![put("users", &format!("u{}", i % 17), &format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 9) as usize)))];
        if i % 3 == 0 {
            ops.push(del("users", &format!("u{}", (i + 5) % 17)));
        }
        if i % 4 == 0 {
            ops.push(put("orders", &format!("o{i}"), "[1,2,3]"));
        }
        commit(engine, ops);
    }
}

/// Applies every record of `records` to `store` through the one apply function.
fn apply_all(store: &Store, records: &[(Record, RecordPosition)]) {
    for (record, position) in records {
        store.apply(ApplyInput { position: *position, state_digest: record.state_digest, body: &record.body }).unwrap();
    }
}

/// One observed read: (R, "collection/key", visible (CommitId, doc or tombstone)).
type ObservedRead = (CommitId, String, Option<(CommitId, Option<Bytes>)>);

/// Every key's visible (CommitId, doc) at every R: the observable state.
fn reads_at_every_view(store: &Arc<Store>) -> Vec<ObservedRead> {
    let keys: Vec<(Bytes, Bytes)> =
        all_versions(store).into_iter().map(|v| (v.collection, v.key)).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let mut out = Vec::new();
    for r in 0..=store.applied().commit_id {
        let view = store.read_view(Some(r)).unwrap();
        for (c, k) in &keys {
            let got = view.get(c, k).map(|v| (v.commit_id, v.doc));
            out.push((r, format!("{}/{}", String::from_utf8_lossy(c), String::from_utf8_lossy(k)), got));
        }
    }
    out
}

/// CORE-4: recovering the same WAL directory twice into fresh stores gives
/// the identical applied state (CommitId, LSN, fingerprint, digest) and
/// identical versions, equal to what the live primary had.
#[test]
fn core_4_recovering_the_same_wal_twice_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    workload(&engine, 60);
    let live_state = engine.store().applied();
    let live_versions = all_versions(engine.store());
    let live_reads = reads_at_every_view(engine.store());
    drop(engine);

    let (a, report_a) = recover_fresh(dir.path());
    let (b, report_b) = recover_fresh(dir.path());
    assert_eq!(a.applied(), live_state);
    assert_eq!(b.applied(), live_state);
    assert_eq!(report_a, report_b, "recovery reports are identical");
    assert_eq!(report_a.replayed, Some((1, 60)));
    assert_eq!(report_a.wal.torn_tail, None);
    assert_eq!(all_versions(&a), live_versions);
    assert_eq!(all_versions(&b), live_versions);
    assert_eq!(reads_at_every_view(&a), live_reads);
    assert_eq!(reads_at_every_view(&b), live_reads);
    assert_ne!(live_state.state_digest, StateDigest::EMPTY);
}

/// CORE-4: the primary's recovery (recover_store) and a plain replay of the
/// WAL's records through Store::apply (what a replica does) reach the same
/// state: one apply function for every path.
#[test]
fn core_4_recovery_and_record_by_record_apply_reach_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    workload(&engine, 25);
    drop(engine);
    let records = wal_records(dir.path());
    assert_eq!(records.len(), 25);
    let replica = Arc::new(Store::new());
    apply_all(&replica, &records);
    let (recovered, _) = recover_fresh(dir.path());
    assert_eq!(replica.applied(), recovered.applied());
    assert_eq!(all_versions(&replica), all_versions(&recovered));
}

/// CORE-4, REPL-2, REPL-7: applying the same record twice (or any record
/// that is not exactly the next one) is refused with NotNext and changes
/// nothing.
#[test]
fn core_4_applying_a_record_twice_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    workload(&engine, 10);
    drop(engine);
    let records = wal_records(dir.path());
    let store = Arc::new(Store::new());
    apply_all(&store, &records);
    let before_state = store.applied();
    let before_versions = all_versions(&store);
    let before_count = store.version_count();

    for (record, position) in [&records[9], &records[0], &records[4]] {
        let err = store.apply(ApplyInput { position: *position, state_digest: record.state_digest, body: &record.body }).unwrap_err();
        assert_eq!(err, ApplyError::NotNext { found: position.commit_id, lsn: position.lsn, applied: 10, applied_end_lsn: before_state.end_lsn });
        assert_eq!(err.code(), "APPLY_OUT_OF_ORDER");
        assert_eq!(err.rule_id(), "REPL-2");
        assert_eq!(store.applied(), before_state);
        assert_eq!(store.version_count(), before_count);
        assert_eq!(all_versions(&store), before_versions);
    }

    // Skipping ahead is refused too: a fresh store cannot start at record 2.
    let fresh = Store::new();
    let (record, position) = &records[1];
    assert!(matches!(
        fresh.apply(ApplyInput { position: *position, state_digest: record.state_digest, body: &record.body }),
        Err(ApplyError::NotNext { found: 2, applied: 0, .. })
    ));
    // Right CommitId at the wrong LSN is refused as well.
    let (record, position) = &records[0];
    let shifted = RecordPosition { lsn: position.lsn + 1, end_lsn: position.end_lsn + 1, ..*position };
    assert!(matches!(
        fresh.apply(ApplyInput { position: shifted, state_digest: record.state_digest, body: &record.body }),
        Err(ApplyError::NotNext { found: 1, .. })
    ));
    assert_eq!(fresh.applied(), aerodb_mvcc::AppliedState::GENESIS);
    assert_eq!(fresh.version_count(), 0);
}

/// CORE-4: recovery is idempotent: reopening, committing more and
/// reopening again continues the same history (CommitIds resume at C+1)
/// and yields the digest a single uninterrupted run would have.
#[test]
fn core_4_restart_resumes_at_c_plus_1_with_the_same_digest_as_an_uninterrupted_run() {
    let interrupted = tempfile::tempdir().unwrap();
    let engine = fresh_engine(interrupted.path());
    workload(&engine, 7);
    drop(engine);
    let (engine, report) = reopen_engine(interrupted.path());
    assert_eq!(report.applied.commit_id, 7);
    assert_eq!(commit(&engine, vec![put("users", "after", "{}")]), 8);
    drop(engine);
    let (engine, _) = reopen_engine(interrupted.path());
    let interrupted_state = engine.store().applied();
    drop(engine);

    let straight = tempfile::tempdir().unwrap();
    let engine = fresh_engine(straight.path());
    workload(&engine, 7);
    commit(&engine, vec![put("users", "after", "{}")]);
    assert_eq!(engine.store().applied(), interrupted_state, "same WAL bytes, same state");
}

/// REPL-4, F-D3: a record whose carried digest differs from the recomputed
/// one is refused with DigestMismatch (both digests as evidence) and none of
/// its versions becomes visible; the correct record still applies after.
#[test]
fn repl_4_wrong_state_digest_is_refused_and_nothing_becomes_visible() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    workload(&engine, 5);
    drop(engine);
    let records = wal_records(dir.path());
    let store = Arc::new(Store::new());
    apply_all(&store, &records[..4]);
    let before = store.applied();
    let before_versions = all_versions(&store);

    let (record, position) = &records[4];
    let wrong = StateDigest(record.state_digest.0.wrapping_add(1));
    let err = store.apply(ApplyInput { position: *position, state_digest: wrong, body: &record.body }).unwrap_err();
    assert_eq!(err, ApplyError::DigestMismatch { commit_id: 5, carried: wrong, recomputed: record.state_digest });
    assert_eq!(err.code(), "APPLY_DIVERGED");
    assert_eq!(err.rule_id(), "REPL-4");
    assert_eq!(store.applied(), before);
    assert_eq!(all_versions(&store), before_versions);
    assert!(store.read_view(Some(5)).is_err(), "CommitId 5 is not visible");

    // Same digest but different ops (a replica whose apply would diverge).
    let mut tampered = record.ops().to_vec();
    tampered.push(aerodb_wal::Op::Delete { collection: Bytes::from_static(b"users"), key: Bytes::from_static(b"ghost") });
    assert!(matches!(
        store.apply(ApplyInput { position: *position, state_digest: record.state_digest, body: &aerodb_wal::RecordBody::Commit(tampered.clone()) }),
        Err(ApplyError::DigestMismatch { commit_id: 5, .. })
    ));
    assert_eq!(store.applied(), before);

    store.apply(ApplyInput { position: *position, state_digest: record.state_digest, body: &record.body }).unwrap();
    assert_eq!(store.applied().commit_id, 5);
}

/// The apply input of a decoded record.
fn input((r, p): &(Record, RecordPosition)) -> ApplyInput<'_> {
    ApplyInput::of_record(*p, r)
}

/// CORE-4, REPL-4, F-D3: applying records in batches (one write lock and
/// one applied notification per batch) goes through the same apply
/// function: it reaches the identical state as record-by-record apply,
/// notifies the observer once per batch, and a batch stops at a record
/// whose digest is wrong: the records before it stay applied, that one and
/// the rest are not visible, and the correct record applies afterwards.
#[test]
fn core_4_batched_apply_reaches_the_same_state_and_stops_at_a_digest_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    workload(&engine, 30);
    drop(engine);
    let records = wal_records(dir.path());
    let one_by_one = Arc::new(Store::new());
    apply_all(&one_by_one, &records);

    let batched = Arc::new(Store::new());
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = calls.clone();
    batched.set_applied_observer(Arc::new(move |c| seen.lock().unwrap().push(c))).map_err(|_| "observer").unwrap();
    let (state, failed) = batched.apply_batch(records[..10].iter().map(input));
    assert!(failed.is_none());
    assert_eq!(state, batched.applied());
    assert_eq!(batched.applied_commit_id(), records[9].1.commit_id);

    // The 15th record carries a wrong digest: the 11th..14th apply, the rest do not.
    let (bad_record, bad_position) = &records[14];
    let wrong = StateDigest(bad_record.state_digest.0.wrapping_add(1));
    let inputs = records[10..14]
        .iter()
        .map(input)
        .chain(std::iter::once(ApplyInput { position: *bad_position, state_digest: wrong, body: &bad_record.body }))
        .chain(records[15..].iter().map(input));
    let (state, failed) = batched.apply_batch(inputs);
    let (index, error) = failed.unwrap();
    assert_eq!(index, 4);
    assert_eq!(error, ApplyError::DigestMismatch { commit_id: bad_position.commit_id, carried: wrong, recomputed: bad_record.state_digest });
    assert_eq!(state.commit_id, records[13].1.commit_id);
    assert_eq!(batched.applied(), state);
    assert!(batched.read_view(Some(bad_position.commit_id)).is_err(), "the refused record is not visible");

    let (state, failed) = batched.apply_batch(records[14..].iter().map(input));
    assert!(failed.is_none());
    assert_eq!(state, one_by_one.applied());
    assert_eq!(all_versions(&batched), all_versions(&one_by_one));
    assert_eq!(reads_at_every_view(&batched), reads_at_every_view(&one_by_one));
    let expected = vec![0, records[9].1.commit_id, records[13].1.commit_id, one_by_one.applied().commit_id];
    assert_eq!(*calls.lock().unwrap(), expected, "the observer hears once per batch that applied something");
}

/// One random write set: distinct keys out of a small space, put or delete.
fn arb_write_set() -> impl Strategy<Value = Vec<(u8, u8, Option<String>)>> {
    prop::collection::btree_map((0u8..2, 0u8..8), prop::option::weighted(0.8, "[a-z0-9 ]{0,40}"), 1..=5)
        .prop_map(|m| m.into_iter().map(|((c, k), d)| (c, k, d)).collect())
}

fn to_client_ops(set: &[(u8, u8, Option<String>)]) -> Vec<ClientOp> {
    set.iter()
        .map(|(c, k, doc)| match doc {
            Some(d) => put(&format!("coll{c}"), &format!("key{k}"), &serde_json::to_string(&serde_json::json!({ "s": d })).unwrap()),
            None => del(&format!("coll{c}"), &format!("key{k}")),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// CORE-4, REPL-4: random write sets committed through the primary,
    /// then recovered into a fresh store: same applied state and digest,
    /// same versions and the same read at every R for every key as the
    /// live store, and the digest equals a from-scratch recomputation.
    #[test]
    fn core_4_repl_4_random_write_sets_recover_to_the_same_digest_and_reads(sets in prop::collection::vec(arb_write_set(), 1..16)) {
        let dir = tempfile::tempdir().unwrap();
        let engine = fresh_engine(dir.path());
        // Submit everything, then wait: group commit, CommitIds in submission order.
        let tickets: Vec<_> = sets.iter().map(|s| engine.submit(to_client_ops(s)).unwrap()).collect();
        let ids: Vec<CommitId> = tickets.into_iter().map(|t| t.wait().unwrap().position.commit_id).collect();
        prop_assert_eq!(ids, (1..=sets.len() as CommitId).collect::<Vec<_>>());
        let live = engine.store().applied();
        let live_versions = all_versions(engine.store());
        let live_reads = reads_at_every_view(engine.store());
        drop(engine);

        let (recovered, report) = recover_fresh(dir.path());
        prop_assert_eq!(recovered.applied(), live);
        prop_assert_eq!(report.applied, live);
        prop_assert_eq!(all_versions(&recovered), live_versions.clone());
        prop_assert_eq!(reads_at_every_view(&recovered), live_reads);

        // The digest is the order-independent sum over every version.
        let mut builder = Store::builder();
        for v in live_versions {
            builder.add(v).unwrap();
        }
        prop_assert_eq!(builder.digest(), live.state_digest);

        // A model of the last write per key agrees with the head view.
        let mut last: BTreeMap<(u8, u8), (CommitId, Option<String>)> = BTreeMap::new();
        for (i, s) in sets.iter().enumerate() {
            for (c, k, d) in s {
                last.insert((*c, *k), (i as CommitId + 1, d.clone()));
            }
        }
        let head = recovered.read_view(None).unwrap();
        for ((c, k), (cid, doc)) in last {
            let got = head.get(format!("coll{c}").as_bytes(), format!("key{k}").as_bytes()).unwrap();
            prop_assert_eq!(got.commit_id, cid);
            let got_doc = got.doc.map(|d| serde_json::from_slice::<serde_json::Value>(&d).unwrap()["s"].as_str().unwrap().to_string());
            prop_assert_eq!(got_doc, doc);
        }
    }
}
