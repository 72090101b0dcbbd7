#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use aerodb_wal::disk::OsDisk;
use aerodb_wal::{ChainTip, Fingerprint};

use super::*;
use crate::handshake::PROTOCOL_VERSION;

fn id(s: &str) -> ReplicaId {
    ReplicaId::parse(s).unwrap()
}

fn hello(replica: &str, name: Option<&str>, resume: Option<(Lsn, CommitId)>) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: None,
        replica_id: id(replica),
        name: name.map(|n| ReplicaName::parse(n).unwrap()),
        request: match resume {
            Some((end_lsn, commit_id)) => HelloRequest::Resume { end_lsn, commit_id, fingerprint: Fingerprint(commit_id.into()) },
            None => HelloRequest::Snapshot,
        },
    }
}

fn positions(applied_lsn: Lsn, applied_commit_id: CommitId) -> Positions {
    Positions { received_lsn: applied_lsn + 10, validated_lsn: applied_lsn + 5, applied_lsn, applied_commit_id }
}

fn facts(end_lsn: Lsn, c_primary: CommitId, keep: u64, oldest: (Lsn, CommitId)) -> RetentionFacts {
    RetentionFacts {
        end_lsn,
        c_primary,
        wal_keep_bytes: keep,
        oldest_retained: ChainTip { end_lsn: oldest.0, commit_id: oldest.1, fingerprint: Fingerprint(7) },
    }
}

/// RES-2: the forecast counts down byte for byte as the primary writes
/// while the replica stands still, turns `beyond_cap` at the cap line and
/// `lost` once the WAL it needs is gone; commits are estimated at the
/// average record size since its position.
#[test]
fn res_2_forecast_counts_down_to_the_cap_and_then_to_lost() {
    let need = Some(WalPoint { lsn: 10_000, commit_id: 100 });
    let f = forecast(need, &facts(12_000, 120, 5_000, (0, 0)));
    assert_eq!(f.state, RetentionState::Reserved);
    assert_eq!((f.needed_lsn, f.needed_commit_id), (Some(10_000), Some(100)));
    assert_eq!(f.bytes_remaining, Some(3_000));
    assert_eq!(f.commits_remaining, Some(30), "100 bytes per commit since its position");
    let later = forecast(need, &facts(14_500, 145, 5_000, (0, 0)));
    assert_eq!(later.bytes_remaining, Some(500), "2500 bytes written: 2500 fewer remain");
    let at_cap = forecast(need, &facts(15_000, 150, 5_000, (0, 0)));
    assert_eq!((at_cap.state, at_cap.bytes_remaining), (RetentionState::Reserved, Some(0)));
    let beyond = forecast(need, &facts(15_001, 150, 5_000, (0, 0)));
    assert_eq!((beyond.state, beyond.bytes_remaining, beyond.commits_remaining), (RetentionState::BeyondCap, Some(0), Some(0)));
    let lost = forecast(need, &facts(20_000, 200, 5_000, (12_000, 120)));
    assert_eq!((lost.state, lost.bytes_remaining), (RetentionState::Lost, Some(0)));
    let resumable = forecast(need, &facts(20_000, 200, 50_000, (10_000, 100)));
    assert_eq!(resumable.state, RetentionState::Reserved, "the first kept segment starts exactly at its position");
    let genesis = forecast(Some(WalPoint { lsn: 0, commit_id: 0 }), &facts(20_000, 200, 50_000, (64, 1)));
    assert_eq!(genesis.state, RetentionState::Lost);
    let unknown = forecast(None, &facts(20_000, 200, 50_000, (0, 0)));
    assert_eq!((unknown.state, unknown.bytes_remaining), (RetentionState::Unknown, None));
}

/// RES-2: a caught-up replica's commits are estimated over the retained
/// WAL; a cap of u64::MAX never overflows.
#[test]
fn res_2_forecast_estimates_commits_over_the_retained_wal_and_never_overflows() {
    let caught_up = forecast(Some(WalPoint { lsn: 20_000, commit_id: 200 }), &facts(20_000, 200, 1_000, (0, 0)));
    assert_eq!((caught_up.bytes_remaining, caught_up.commits_remaining), (Some(1_000), Some(10)));
    let huge = forecast(Some(WalPoint { lsn: 5, commit_id: 1 }), &facts(10, 1, u64::MAX, (0, 0)));
    assert_eq!(huge.state, RetentionState::Reserved);
    assert!(huge.bytes_remaining.unwrap() > 1 << 62);
    let empty = forecast(Some(WalPoint { lsn: 0, commit_id: 0 }), &facts(0, 0, 10, (0, 0)));
    assert_eq!((empty.bytes_remaining, empty.commits_remaining), (Some(10), None), "no commit: no estimate");
}

/// RES-2: a replica's need is its last reported applied position, else its
/// resume point, else the cut of the snapshot it was sent; the registry's
/// hold is the oldest need; nothing after a snapshot request fails.
#[test]
fn res_2_registry_holds_what_known_replicas_need() {
    let none = BTreeSet::new();
    let mut r = Registry::default();
    assert_eq!(r.oldest_needed(), None);
    r.accept(&hello("a", Some("east"), Some((500, 5))), "127.0.0.1:4000", 1_000, 9, &none);
    r.accept(&hello("b", None, None), "127.0.0.1:4001", 1_000, 9, &none);
    assert_eq!(r.oldest_needed(), Some(500));
    assert_eq!(r.get(&id("b")).unwrap().needs(), None, "a bootstrap holds nothing until a snapshot is sent");
    r.snapshot_served(&id("b"), WalPoint { lsn: 300, commit_id: 3 });
    assert_eq!(r.oldest_needed(), Some(300));
    r.report(&id("a"), positions(800, 8), 1_100, 10);
    r.accept(&hello("b", None, Some((300, 3))), "127.0.0.1:4002", 1_200, 10, &none);
    assert_eq!(r.oldest_needed(), Some(300));
    r.report(&id("b"), positions(900, 9), 1_300, 10);
    assert_eq!(r.oldest_needed(), Some(800));
    let b = r.get(&id("b")).unwrap();
    assert_eq!((b.connections, b.snapshot, b.address.as_str(), b.last_seen_ms), (2, None, "127.0.0.1:4002", 1_300));
    r.ended(&id("a"), "PEER_CLOSED", 1_400, 11);
    let a = r.get(&id("a")).unwrap();
    assert_eq!((a.last_end.as_deref(), a.last_seen_commit_id, a.display_name()), (Some("PEER_CLOSED"), 11, "east"));
    assert_eq!(r.get(&id("b")).unwrap().display_name(), "b", "the name defaults to the id");
    r.ended(&id("zzz"), "PEER_CLOSED", 1_400, 11);
    assert_eq!(r.len(), 2, "ended never adds a replica");
    assert_eq!(r.forget("east").len(), 1);
    assert_eq!(r.forget("b").len(), 1);
    assert!(r.is_empty());
    assert_eq!(r.forgotten(), 2);
    assert_eq!(r.oldest_needed(), None);
}

/// RES-2, RES-4: the registry is bounded: at the cap the least recently
/// seen disconnected entry is forgotten; a connected one never is; a
/// re-bootstrapped replica (same name, new id) replaces its old entry.
#[test]
fn res_2_registry_is_bounded_and_forgets_the_least_recently_seen() {
    let mut r = Registry::default();
    let none = BTreeSet::new();
    for i in 0..MAX_KNOWN_REPLICAS as u64 {
        let o = r.accept(&hello(&format!("r{i}"), None, Some((i, i))), "10.0.0.1:5000", 1_000 + i, i, &none);
        assert_eq!(o, AcceptOutcome::default());
    }
    let o = r.accept(&hello("new", None, Some((1, 1))), "10.0.0.2:5000", 9_000, 200, &none);
    assert_eq!(o.evicted.map(|e| e.replica_id), Some(id("r0")));
    assert_eq!((r.len(), r.evicted()), (MAX_KNOWN_REPLICAS, 1));
    let connected: BTreeSet<ReplicaId> = r.list().into_iter().map(|k| k.replica_id).collect();
    let o = r.accept(&hello("another", None, Some((1, 1))), "10.0.0.3:5000", 9_100, 201, &connected);
    assert!(o.not_remembered && o.evicted.is_none());
    assert!(r.get(&id("another")).is_none());
    let mut r = Registry::default();
    r.accept(&hello("old-id", Some("west"), Some((10, 1))), "10.0.0.1:5000", 1, 1, &none);
    let o = r.accept(&hello("new-id", Some("west"), None), "10.0.0.1:5001", 2, 2, &none);
    assert_eq!(o.replaced.map(|e| e.replica_id), Some(id("old-id")));
    assert_eq!(r.list().iter().map(|k| k.replica_id.as_str().to_string()).collect::<Vec<_>>(), vec!["new-id"]);
    let busy: BTreeSet<ReplicaId> = [id("new-id")].into_iter().collect();
    let o = r.accept(&hello("third-id", Some("west"), None), "10.0.0.1:5002", 3, 3, &busy);
    assert!(o.replaced.is_none(), "a connected replica with the same name is kept");
    assert_eq!(r.len(), 2);
}

/// RES-4, RES-2: the registry file round-trips through the checksummed
/// envelope; a damaged, foreign-version or out-of-range file is refused
/// with a stable code; an absent file is an empty registry.
#[test]
fn res_4_registry_file_round_trips_and_is_validated_when_read() {
    let dir = tempfile::TempDir::new().unwrap();
    let disk = OsDisk;
    assert!(read_registry(&disk, dir.path()).unwrap().is_none());
    let mut r = Registry::default();
    r.accept(&hello("a", Some("east"), Some((500, 5))), "127.0.0.1:4000", 1_000, 9, &BTreeSet::new());
    r.report(&id("a"), positions(800, 8), 1_100, 10);
    r.accept(&hello("b", None, None), "[::1]:4001", 1_000, 9, &BTreeSet::new());
    write_registry(&disk, dir.path(), &r).unwrap();
    assert_eq!(read_registry(&disk, dir.path()).unwrap(), Some(r.clone()));
    let path = dir.path().join(REGISTRY_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("east", "wast")).unwrap();
    assert_eq!(read_registry(&disk, dir.path()).unwrap_err().code(), "META_CHECKSUM_MISMATCH");
    let write_body = |body: &RegistryFile| write_checksummed(&disk, &path, body).unwrap();
    let mut body = r.to_file();
    body.format_version = 9;
    write_body(&body);
    assert_eq!(read_registry(&disk, dir.path()).unwrap_err().code(), "META_VERSION");
    let mut body = r.to_file();
    body.replicas[0].address = "not an address".into();
    write_body(&body);
    assert_eq!(read_registry(&disk, dir.path()).unwrap_err().code(), "META_MALFORMED");
    let mut body = r.to_file();
    body.replicas[0].reported = Some(Positions { received_lsn: 1, validated_lsn: 2, applied_lsn: 3, applied_commit_id: 1 });
    write_body(&body);
    assert_eq!(read_registry(&disk, dir.path()).unwrap_err().code(), "META_MALFORMED");
    let mut body = r.to_file();
    body.replicas.push(body.replicas[0].clone());
    write_body(&body);
    assert_eq!(read_registry(&disk, dir.path()).unwrap_err().code(), "META_MALFORMED");
    let mut body = r.to_file();
    body.replicas[0].last_end = Some("\u{1b}[31m".into());
    write_body(&body);
    assert_eq!(read_registry(&disk, dir.path()).unwrap_err().code(), "META_MALFORMED");
    std::fs::write(&path, r#"{"crc32c":0,"body":{"format_version":1,"replicas":[{"replica_id":"../x"}],"forgotten":0,"evicted":0}}"#).unwrap();
    assert!(read_registry(&disk, dir.path()).is_err());
}
