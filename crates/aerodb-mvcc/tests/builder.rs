#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The snapshot loader's store builder and the cut visitor snapshot
//! creation encodes from.

mod common;

use aerodb_mvcc::store::{LoadError, OwnedVersion, VersionRef};
use aerodb_mvcc::{AppliedState, Store};
use aerodb_wal::hash::version_hash_parts;
use aerodb_wal::{Fingerprint, StateDigest};
use bytes::Bytes;

fn v(c: &str, k: &str, id: u64) -> OwnedVersion {
    OwnedVersion { collection: Bytes::from(c.to_string()), key: Bytes::from(k.to_string()), commit_id: id, doc: Some(Bytes::from(format!("{{\"v\":{id}}}"))) }
}

/// F-S4: the builder refuses any version that does not follow the previous
/// one in (collection, key, CommitId) order, duplicates included, whether
/// it repeats a key, goes back within a key, within a collection or to an
/// earlier collection, and with names long enough to be held on the heap.
#[test]
fn f_s4_builder_refuses_versions_out_of_order() {
    let long = "k".repeat(40);
    let good = [v("a", "k1", 1), v("a", "k1", 3), v("a", "k2", 2), v("a", &long, 4), v("b", "k0", 5)];
    let bad = [v("b", "k0", 5), v("b", "k0", 4), v("a", "z", 9), v("b", "a", 9), v("a", &long, 9)];
    for wrong in bad {
        let mut builder = Store::builder();
        for x in &good {
            builder.add(x.clone()).unwrap();
        }
        assert_eq!(builder.add(wrong.clone()), Err(LoadError::OutOfOrder { index: good.len() as u64 }), "{wrong:?}");
    }
    let mut builder = Store::builder();
    builder.add(v("a", "k1", 1)).unwrap();
    let long_ref = VersionRef { collection: b"a", key: long.as_bytes(), commit_id: 1, doc: None };
    builder.add_ref(long_ref).unwrap();
    assert_eq!(builder.add_ref(long_ref), Err(LoadError::OutOfOrder { index: 2 }));
}

/// F-S4: a store built from versions holds exactly them, with the digest
/// of their hashes, and the cut visitor lends them back in order, resuming
/// exactly where a batch stopped.
#[test]
fn f_s4_builder_round_trips_through_the_cut_visitor() {
    let long = "k".repeat(40);
    let versions = [v("a", "k1", 1), v("a", "k1", 3), v("a", "k2", 2), v("a", &long, 4), v("b", "k0", 5)];
    let mut builder = Store::builder();
    let mut digest = StateDigest::EMPTY;
    for x in &versions {
        digest = digest.plus_version(version_hash_parts(x.commit_id, &x.collection, &x.key, x.doc.as_deref()));
        builder.add(x.clone()).unwrap();
    }
    assert_eq!(builder.digest(), digest);
    let store = builder.finish(AppliedState { commit_id: 5, end_lsn: 500, fingerprint: Fingerprint(5), state_digest: digest }).unwrap();
    assert_eq!(common::all_versions(&store), versions.to_vec());
    for batch in 1..=5 {
        let pin = store.pin_cut();
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let next = store.visit_cut(&pin, after.as_ref(), batch, &mut |r| {
                seen.push(OwnedVersion {
                    collection: Bytes::copy_from_slice(r.collection),
                    key: Bytes::copy_from_slice(r.key),
                    commit_id: r.commit_id,
                    doc: r.doc.map(Bytes::copy_from_slice),
                })
            });
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, versions.to_vec(), "batches of {batch} keys");
    }
}
