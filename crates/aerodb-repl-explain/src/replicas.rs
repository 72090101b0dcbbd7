//! The primary's view of its replicas (registry entries with lag and the
//! retention forecast, RES-2) and the lag object both roles show. Pure
//! functions of captured facts; the only time-derived numbers are lag in
//! seconds and "seconds since last seen", which REPL-10 keeps out of every
//! decision.

use serde_json::{json, Value};

use aerodb_repl_core::commit_times::lag_ms;
use aerodb_repl_core::registry::{forecast, RetentionFacts, RetentionForecast, RetentionState};
use aerodb_snapshot::retention::cap_line;
use aerodb_wal::{ChainTip, CommitId};

use crate::facts::{KnownReplicaFacts, PrimaryFacts};

/// `live` when the numbers come from a connection streaming now,
/// `last_known` when they are the last ones heard (issue 14: a replica
/// whose primary is down never shows a lag without saying so).
pub fn as_of(live: bool) -> &'static str {
    if live {
        "live"
    } else {
        "last_known"
    }
}

/// Milliseconds as seconds with millisecond resolution.
pub fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// The `lag` object: commits, bytes, seconds and whether they are live.
/// `as_of` is null only when nothing is known.
pub fn lag_json(commits: Option<u64>, bytes: Option<u64>, ms: Option<u64>, live: bool) -> Value {
    let known = commits.is_some() || bytes.is_some() || ms.is_some();
    json!({
        "commits": commits,
        "bytes": bytes,
        "seconds": ms.map(seconds),
        "as_of": known.then_some(as_of(live)),
    })
}

/// What retention needs to know about the primary's WAL, when it is known.
pub fn retention_facts(f: &PrimaryFacts) -> Option<RetentionFacts> {
    let policy = f.snapshot_policy?;
    let oldest = f.segments.first().map_or(ChainTip::GENESIS, |s| ChainTip::of_segment(&s.header));
    Some(RetentionFacts { end_lsn: f.durable.lsn, c_primary: f.durable.commit_id, wal_keep_bytes: policy.wal_keep_bytes, oldest_retained: oldest })
}

/// A known replica's retention forecast (None when the policy is unknown).
pub fn replica_forecast(f: &PrimaryFacts, r: &KnownReplicaFacts) -> Option<RetentionForecast> {
    retention_facts(f).map(|facts| forecast(r.known.needs(), &facts))
}

/// A known replica's lag against the primary now: `(commits, bytes,
/// milliseconds, live)`, from the positions it last stated.
pub fn replica_lag(f: &PrimaryFacts, r: &KnownReplicaFacts) -> (Option<u64>, Option<u64>, Option<u64>, bool) {
    let live = r.connection.is_some();
    let Some(need) = r.known.needs() else { return (None, None, None, live) };
    let c_primary = f.applied.commit_id;
    let ms = lag_ms(need.commit_id, c_primary, f.now_ms, r.oldest_unapplied_commit_time_ms);
    (Some(c_primary.saturating_sub(need.commit_id)), Some(f.durable.lsn.saturating_sub(need.lsn)), ms, live)
}

/// The retention state's name.
pub fn retention_state_name(s: RetentionState) -> &'static str {
    match s {
        RetentionState::Reserved => "reserved",
        RetentionState::BeyondCap => "beyond_cap",
        RetentionState::Lost => "lost",
        RetentionState::Unknown => "unknown",
    }
}

/// Every retention state, in the order `/metrics` lists them.
pub const RETENTION_STATES: [RetentionState; 4] = [RetentionState::Reserved, RetentionState::BeyondCap, RetentionState::Lost, RetentionState::Unknown];

/// One entry of the primary's `/v1/replication` `replicas` list.
pub fn known_replica_entry(f: &PrimaryFacts, r: &KnownReplicaFacts) -> Value {
    let k = &r.known;
    let c = r.connection.as_ref();
    let (commits, bytes, ms, live) = replica_lag(f, r);
    let keep = f.snapshot_policy.map(|p| p.wal_keep_bytes);
    let retention = replica_forecast(f, r).map(|x| {
        json!({
            "state": retention_state_name(x.state),
            "needed_lsn": x.needed_lsn,
            "needed_commit_id": x.needed_commit_id,
            "bytes_remaining": x.bytes_remaining,
            "commits_remaining": x.commits_remaining,
            "wal_keep_bytes": keep,
        })
    });
    let seen_ms = if c.is_some() { Some(0) } else { f.now_ms.map(|now| now.saturating_sub(k.last_seen_ms)) };
    json!({
        "replica_id": k.replica_id,
        "name": k.display_name(),
        "address": k.address,
        "peer": c.map_or(k.address.as_str(), |c| c.peer.as_str()),
        "state": c.map_or("disconnected", |c| c.session.as_str()),
        "session": c.map(|c| c.session.as_str()),
        "connections": k.connections,
        "sent_lsn": c.map(|c| c.sent_lsn),
        "resume": k.resume,
        "reported": k.reported,
        "last_seen": {"commit_id": k.last_seen_commit_id, "seconds_ago": seen_ms.map(seconds)},
        "last_disconnect_reason": k.last_end,
        "lag": lag_json(commits, bytes, ms, live),
        "retention": retention,
    })
}

/// The primary's WAL retention in force and where it stands (RES-2).
pub fn wal_retention_json(f: &PrimaryFacts) -> Value {
    let first = f.segments.first();
    json!({
        "mode": f.snapshot_policy.map(|p| p.retention_mode().as_str()),
        "wal_keep_bytes": f.snapshot_policy.map(|p| p.wal_keep_bytes),
        "cap_lsn": f.snapshot_policy.map(|p| cap_line(f.durable.lsn, p.wal_keep_bytes)),
        "oldest_retained_lsn": first.map(|s| s.header.start_lsn),
        "oldest_retained_commit_id": first.map(|s| s.header.prev_commit_id),
        "retained_bytes": first.map(|s| f.durable.lsn.saturating_sub(s.header.start_lsn)),
        "last_retention_floor": f.snapshot_status.as_ref().and_then(|s| s.retention_floor),
    })
}

/// The registry's own state: file, what startup did, counters.
pub fn registry_json(f: &PrimaryFacts) -> Value {
    match &f.registry {
        None => Value::Null,
        Some(r) => json!({
            "file": r.file,
            "known": r.replicas.len(),
            "connected": r.replicas.iter().filter(|x| x.connection.is_some()).count(),
            "loaded_at_startup": r.loaded_at_startup,
            "load_error": r.load_error.as_ref().map(|(code, detail)| json!({"code": code, "detail": detail})),
            "moved_aside": r.moved_aside,
            "forgotten_at_startup": r.forgotten_at_startup,
            "forgotten_total": r.forgotten_total,
            "evicted_total": r.evicted_total,
            "max_known_replicas": aerodb_repl_core::registry::MAX_KNOWN_REPLICAS,
        }),
    }
}

/// The label value a replica's `/metrics` series carry as `peer`: its name
/// (or id), never its ephemeral address, so a reconnect continues the same
/// series.
pub fn metric_peer(r: &KnownReplicaFacts) -> &str {
    r.known.display_name()
}

/// C_replica a known replica last stated, if any.
pub fn stated_commit_id(r: &KnownReplicaFacts) -> Option<CommitId> {
    r.known.needs().map(|p| p.commit_id)
}
