#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! Heap bytes the store holds per live key under overwrites (RES-1): the
//! bench's memory workload (`cargo xtask bench --only memory`) applied
//! in-process through the one apply function, with GC records written by
//! the default retention policy, measured as resident memory.
//!
//! ```sh
//! cargo run --release -p aerodb-mvcc --example store_memory [keys] [passes] [retain_commits]
//! ```
//!
//! Single-threaded, so the growth of the resident set is the store's heap
//! (glibc's main arena) plus the allocator's own overhead.

use aerodb_mvcc::{ApplyInput, GcPolicy, Store};
use aerodb_wal::{Fingerprint, Op, RecordBody, RecordPosition};
use bytes::Bytes;

mod workload;
use workload::{doc, DOC_BYTES};

/// Resident set size of this process in bytes (`/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).expect("resident pages") * 4096
}

fn apply(store: &Store, body: RecordBody, digest: aerodb_wal::StateDigest) {
    let applied = store.applied();
    let commit_id = applied.commit_id + 1;
    let position = RecordPosition { lsn: applied.end_lsn, end_lsn: applied.end_lsn + 300, commit_id, fingerprint: Fingerprint(u128::from(commit_id)) };
    store.apply(ApplyInput { position, state_digest: digest, body: &body }).expect("apply");
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let keys = args.first().copied().unwrap_or(50_000);
    let passes = args.get(1).copied().unwrap_or(10);
    let policy = GcPolicy::new(args.get(2).copied().unwrap_or(GcPolicy::DEFAULT_RETAIN_COMMITS));
    let store = Store::new();
    let base = rss();
    let live = keys * DOC_BYTES as u64;
    println!("{keys} keys x {DOC_BYTES} B ({live} live bytes), retain {} commits", policy.retain_commits);
    for pass in 1..=passes {
        for n in 0..keys {
            // Like the bench: the WAL record's op is a slice of a bigger buffer.
            let op = Op::Put { collection: Bytes::from_static(b"bench"), key: Bytes::from(format!("ow-{n}")), doc: doc(pass * keys + n) };
            let ops = vec![op];
            let commit_id = store.applied().commit_id + 1;
            let digest = store.applied().state_digest.after_ops(commit_id, &ops);
            apply(&store, RecordBody::Commit(ops), digest);
            if let Some(horizon) = policy.due(commit_id, store.history_horizon()) {
                let digest = store.gc_digest(horizon).expect("reachable horizon");
                apply(&store, RecordBody::Gc { horizon }, digest);
            }
        }
        let grown = rss().saturating_sub(base);
        let stats = store.gc_stats();
        let window = store.applied().commit_id - stats.history_horizon;
        let window_bytes = stats.versions_held.saturating_sub(keys) * DOC_BYTES as u64;
        println!(
            "pass {pass:2}: heap growth {grown:>10} B = {:.1} B/key = {:.2} x live; held {} versions; window {window} commits, {window_bytes} B of superseded documents; growth / (live + window) {:.2}",
            grown as f64 / keys as f64,
            grown as f64 / live as f64,
            stats.versions_held,
            grown as f64 / (live + window_bytes) as f64,
        );
    }
}
