#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Crash matrix, random moments (ARCHITECTURE "Tests" 4): the real binary
//! under 16 concurrent writers is killed with SIGKILL after a seeded random
//! number of acknowledged writes, several times, and restarted each time.
//! Afterwards every acknowledged write is present with its content and
//! CommitId (CORE-1), CommitIds are contiguous from 1 (REPL-2), writes that
//! were never acknowledged are either absent or present whole (F-P1, F-P2,
//! MVCC-2), and the primary continues at C+1.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::{run_tool, start, try_request, wal_dump, Node, NodeOptions, DEADLINE};

const WRITERS: u64 = 16;
const ROUNDS: u64 = 5;
const SEED: u64 = 0xAE20_DB5E_ED01;
const COLLECTION: &str = "crash";

#[derive(Clone, Debug)]
struct Ack {
    key: String,
    doc: Value,
    commit_id: u64,
}

#[derive(Clone, Debug)]
struct Attempt {
    key: String,
    doc: Value,
    error: String,
}

#[derive(Default)]
struct RoundLog {
    acks: Vec<Ack>,
    unacked: Vec<Attempt>,
    unexpected: Vec<String>,
}

/// Runs 16 writers against `node` until `kill_after` writes of this round
/// are acknowledged, then SIGKILLs it. Returns what the clients saw.
fn round(node: Node, round: u64, kill_after: usize) -> RoundLog {
    let log = Arc::new((Mutex::new(RoundLog::default()), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = node.url();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, stop, url) = (log.clone(), stop.clone(), url.clone());
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(SEED ^ (round << 32) ^ w);
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
                for seq in 0u64.. {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    let key = format!("r{round}-w{w:02}-{seq:05}");
                    let pad: String = (0..rng.gen_range(0..64)).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect();
                    let doc = json!({"round": round, "writer": w, "seq": seq, "pad": pad, "n": rng.gen::<u32>()});
                    let result = try_request(&agent, "PUT", &format!("{url}/v1/docs/{COLLECTION}/{key}"), Some(doc.to_string().as_bytes()));
                    let (lock, cv) = &*log;
                    let mut l = lock.lock().unwrap();
                    match result {
                        Ok((200, body)) => match body["commit_id"].as_u64() {
                            Some(commit_id) => l.acks.push(Ack { key, doc, commit_id }),
                            None => l.unexpected.push(format!("200 without commit_id: {body}")),
                        },
                        Ok((status, body)) => l.unexpected.push(format!("{status} {body}")),
                        Err(error) => {
                            // The node died with this write in flight (or before it was sent).
                            l.unacked.push(Attempt { key, doc, error });
                            cv.notify_all();
                            return;
                        }
                    }
                    cv.notify_all();
                }
            })
        })
        .collect();
    {
        let (lock, cv) = &*log;
        let guard = lock.lock().unwrap();
        let (guard, timeout) = cv.wait_timeout_while(guard, DEADLINE, |l| l.acks.len() < kill_after && l.unexpected.is_empty()).unwrap();
        assert!(!timeout.timed_out(), "round {round}: only {} of {kill_after} writes acknowledged before the deadline", guard.acks.len());
    }
    // SIGKILL at this random moment, with up to 16 writes in flight.
    node.kill();
    stop.store(true, Ordering::Release);
    for w in writers {
        w.join().unwrap();
    }
    let (lock, _) = &*log;
    let result = std::mem::take(&mut *lock.lock().unwrap());
    result
}

/// CORE-1, F-P1, F-P2, REPL-2, MVCC-2: SIGKILL under 16-client load at
/// seeded random moments, 5 times; every acknowledged write survives with
/// its content and CommitId, CommitIds are contiguous from 1, unacknowledged
/// writes are absent or whole, and the primary continues at C+1.
#[test]
fn core_1_sigkill_under_load_never_loses_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let options = NodeOptions::new("primary", dir.path());
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut acks: Vec<Ack> = Vec::new();
    let mut unacked: Vec<Attempt> = Vec::new();
    for r in 0..ROUNDS {
        let node = start(options.clone());
        // Nothing acknowledged before the crash is lost (checked at every restart).
        let c = node.commit_id();
        let max_acked = acks.iter().map(|a| a.commit_id).max().unwrap_or(0);
        assert!(c >= max_acked, "round {r}: restarted at C={c} but CommitId {max_acked} was acknowledged");
        let kill_after = rng.gen_range(30..=150);
        let log = round(node, r, kill_after);
        assert!(log.unexpected.is_empty(), "round {r}: unexpected answers: {:?}", log.unexpected);
        assert!(log.acks.len() >= kill_after);
        // CommitIds of this round continue after everything before it.
        assert!(log.acks.iter().all(|a| a.commit_id > c), "round {r}: a CommitId at or below the restart point {c} was reused");
        acks.extend(log.acks);
        unacked.extend(log.unacked);
    }

    let node = start(options.clone());
    let c = node.commit_id();

    // REPL-2: CommitIds are exactly 1..=C, in WAL order, no gap or duplicate.
    let records = wal_dump(dir.path());
    let ids: Vec<u64> = records.iter().map(|r| r.commit_id).collect();
    assert_eq!(ids, (1..=c).collect::<Vec<_>>(), "CommitIds are contiguous from 1 to C={c}");
    let ack_ids: BTreeSet<u64> = acks.iter().map(|a| a.commit_id).collect();
    assert_eq!(ack_ids.len(), acks.len(), "no CommitId was acknowledged twice");
    let by_id: BTreeMap<u64, &support::DumpedRecord> = records.iter().map(|r| (r.commit_id, r)).collect();

    // CORE-1: every acknowledged write is there, at its CommitId, with its content.
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    for a in &acks {
        let record = by_id.get(&a.commit_id).unwrap_or_else(|| panic!("acknowledged CommitId {} missing from the WAL (C={c})", a.commit_id));
        assert_eq!(record.ops, vec![format!("put {COLLECTION}/{}", a.key)], "WAL record {} holds the acknowledged write", a.commit_id);
        let resp = try_request(&agent, "GET", &format!("{}/v1/docs/{COLLECTION}/{}?at={}", node.url(), a.key, a.commit_id), None).unwrap();
        assert_eq!(resp, (200, json!({"read_view": a.commit_id, "commit_id": a.commit_id, "doc": a.doc})), "acknowledged write {} lost or changed", a.key);
    }

    // F-P1/F-P2/MVCC-2: an unacknowledged write is either absent or whole.
    let mut survived = 0;
    for u in &unacked {
        let (status, body) = try_request(&agent, "GET", &format!("{}/v1/docs/{COLLECTION}/{}", node.url(), u.key), None).unwrap();
        match status {
            404 => {}
            200 => {
                assert_eq!(body["doc"], u.doc, "unacknowledged write {} survived with other content", u.key);
                let cid = body["commit_id"].as_u64().unwrap();
                assert_eq!(by_id[&cid].ops, vec![format!("put {COLLECTION}/{}", u.key)]);
                survived += 1;
            }
            _ => panic!("unexpected answer for {}: {status} {body}", u.key),
        }
    }
    // Every record in the WAL is a write some client sent.
    let sent: BTreeSet<String> = acks.iter().map(|a| a.key.clone()).chain(unacked.iter().map(|u| u.key.clone())).collect();
    for r in &records {
        for op in &r.ops {
            let key = op.strip_prefix(&format!("put {COLLECTION}/")).unwrap_or_else(|| panic!("unexpected op {op}"));
            assert!(sent.contains(key), "record {} holds a write nobody sent: {op}", r.commit_id);
        }
    }
    assert_eq!(acks.len() + survived, records.len(), "the WAL holds exactly the acknowledged writes plus surviving unacknowledged ones");

    eprintln!("{} rounds: {} acknowledged, {} unacknowledged ({survived} survived whole), C={c}", ROUNDS, acks.len(), unacked.len());
    // The primary continues at C+1.
    assert_eq!(node.put_doc(COLLECTION, "after-the-crashes", &json!({"final": true})), c + 1);
    node.stop_clean();
    let (code, stdout, _) = run_tool(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stdout}");
}
