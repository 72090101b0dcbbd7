#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! In-process rates of the replica's two store-building paths over the
//! bench's catch-up workload (`cargo xtask bench --only catchup`): records
//! of 10 puts of 200-byte documents under fresh keys, applied through
//! [`Store::apply_batch`] in batches (catch-up apply), and the same
//! versions added to a [`aerodb_mvcc::store::StoreBuilder`] (snapshot
//! load). One thread, no IO: the store's own cost, free of the noise of a
//! shared machine's sockets and disks. Prints the best of `rounds`.
//!
//! With `scattered`, the same keys arrive in a scattered order (key
//! number `n * 7919 mod puts`) instead of ascending: the key index's
//! general insert instead of its append path.
//!
//! ```sh
//! cargo run --release -p aerodb-mvcc --example apply_rate [records] [rounds] [scattered]
//! ```

use std::time::Instant;

use aerodb_mvcc::store::OwnedVersion;
use aerodb_mvcc::{AppliedState, ApplyInput, Store};
use aerodb_wal::{Fingerprint, Op, RecordBody, RecordPosition, StateDigest};
use bytes::Bytes;

mod workload;
use workload::doc;

const OPS_PER_RECORD: u64 = 10;
const BATCH: usize = 64;

fn key(n: u64) -> Bytes {
    Bytes::from(format!("backlog-{n:08}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| args.get(i).map_or(default, |a| a.parse().expect("a number"));
    let (records, rounds) = (number(0, 112_000), number(1, 3));
    let scattered = args.get(2).is_some_and(|a| a == "scattered");
    let puts = records * OPS_PER_RECORD;
    assert!(!scattered || !puts.is_multiple_of(7919), "7919 must not divide the number of puts");
    // The records, with the positions and digests a primary would give them.
    let mut bodies = Vec::with_capacity(records as usize);
    let mut digest = StateDigest::EMPTY;
    for r in 0..records {
        let ops: Vec<Op> = (0..OPS_PER_RECORD)
            .map(|i| {
                let n = r * OPS_PER_RECORD + i;
                let k = if scattered { n * 7919 % puts } else { n };
                Op::Put { collection: Bytes::from_static(b"bench"), key: key(k), doc: doc(n) }
            })
            .collect();
        let commit_id = r + 1;
        digest = digest.after_ops(commit_id, &ops);
        let position = RecordPosition { lsn: r * 3000, end_lsn: (r + 1) * 3000, commit_id, fingerprint: Fingerprint(u128::from(commit_id)) };
        bodies.push((position, digest, RecordBody::Commit(ops)));
    }
    let mut versions: Vec<OwnedVersion> = bodies
        .iter()
        .flat_map(|(position, _, body)| {
            let ops = match body {
                RecordBody::Commit(ops) => &ops[..],
                RecordBody::Gc { .. } => &[],
            };
            ops.iter().map(|op| OwnedVersion {
                collection: Bytes::copy_from_slice(op.collection()),
                key: Bytes::copy_from_slice(op.key()),
                commit_id: position.commit_id,
                doc: op.doc().map(Bytes::copy_from_slice),
            })
        })
        .collect();
    // A snapshot delivers versions in key order.
    versions.sort_by(|a, b| a.key.cmp(&b.key));
    let ops = puts;
    let (mut best_apply, mut best_build, mut best_finish) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let store = Store::new();
        let started = Instant::now();
        for batch in bodies.chunks(BATCH) {
            let (_, failed) = store.apply_batch(batch.iter().map(|(p, d, b)| ApplyInput { position: *p, state_digest: *d, body: b }));
            assert!(failed.is_none(), "{failed:?}");
        }
        best_apply = best_apply.min(started.elapsed().as_secs_f64());
        drop(store);

        let mut builder = Store::builder();
        let started = Instant::now();
        for v in &versions {
            builder.add(v.clone()).expect("sorted");
        }
        let last = &bodies[bodies.len() - 1];
        let cut = AppliedState { commit_id: last.0.commit_id, end_lsn: last.0.end_lsn, fingerprint: last.0.fingerprint, state_digest: last.1 };
        let finishing = Instant::now();
        let store = builder.finish(cut).expect("digest");
        best_finish = best_finish.min(finishing.elapsed().as_secs_f64());
        best_build = best_build.min(started.elapsed().as_secs_f64());
        drop(store);
    }
    println!("apply_batch: {ops} puts in {best_apply:.3} s = {:.0} puts/s", ops as f64 / best_apply);
    println!("builder: {ops} versions in {best_build:.3} s = {:.0} versions/s, of which finish {best_finish:.3} s", ops as f64 / best_build);
}
