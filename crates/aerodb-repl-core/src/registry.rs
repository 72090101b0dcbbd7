//! The primary's registry of the replicas it has served, like a
//! PostgreSQL replication slot: who each replica is (id, `--name`, last
//! address), what it last said about its position (the resume point of its
//! last HELLO, the positions of its last REPORT, the cut of a snapshot it
//! was sent), and when it was last seen. It survives disconnects and
//! primary restarts (`replicas.json`, docs/formats.md §9) and is bounded.
//!
//! What it decides: nothing about history. The handshake decision never
//! reads it (REPL-5, §4 "the primary keeps no per-replica state that
//! affects correctness"). Its only effect is RES-2's: with
//! `--wal-retention after-oldest-snapshot`, WAL a known replica still needs
//! is kept, within `--wal-keep-bytes` ([`Registry::oldest_needed`]). It
//! also gives the per-replica retention forecast ([`forecast`]).
//!
//! Everything in it came from a validated HELLO or REPORT (RES-4: ids and
//! names by their newtypes, positions ordered and never beyond what the
//! primary sent) or from the primary's own socket and clock; the file is
//! re-validated when read back. Transitions are pure functions with the
//! time passed in; the file IO goes through the [`Disk`] trait.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use aerodb_wal::checksummed::{read_checksummed, write_checksummed, ChecksummedFileError};
use aerodb_wal::disk::Disk;
use aerodb_wal::{ChainTip, CommitId, Lsn};

use crate::handshake::{Hello, HelloRequest};
use crate::ids::{ReplicaId, ReplicaName};
use crate::positions::Positions;

/// The registry file in the primary's data directory.
pub const REGISTRY_FILE: &str = "replicas.json";

/// Its format version.
pub const REGISTRY_FORMAT_VERSION: u32 = 1;

/// Replicas remembered at most. Twice the replication port's connection
/// cap, so a disconnected entry can always make room for a new replica.
pub const MAX_KNOWN_REPLICAS: usize = 128;

/// Longest address or end reason stored.
pub const MAX_TEXT_LEN: usize = 64;

/// A position in the WAL: the end LSN of a record and its CommitId.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalPoint {
    /// End LSN.
    pub lsn: Lsn,
    /// CommitId of the record ending there.
    pub commit_id: CommitId,
}

/// One replica the primary has served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownReplica {
    /// The replica's id (from its HELLO).
    pub replica_id: ReplicaId,
    /// Its `--name`, if it gave one.
    pub name: Option<ReplicaName>,
    /// The address it last connected from.
    pub address: String,
    /// When it was first served (Unix ms, the primary's clock).
    pub first_seen_ms: u64,
    /// When it was last heard from (Unix ms).
    pub last_seen_ms: u64,
    /// C_primary when it was last heard from ("when" in commits).
    pub last_seen_commit_id: CommitId,
    /// Connections accepted from it.
    pub connections: u64,
    /// The resume point of its last accepted HELLO (None for a snapshot
    /// request).
    pub resume: Option<WalPoint>,
    /// Its last REPORT on the current or last connection.
    pub reported: Option<Positions>,
    /// The cut of the snapshot it was last sent for a bootstrap (until it
    /// resumes streaming).
    pub snapshot: Option<WalPoint>,
    /// How its last connection ended (a stable code), or null while its
    /// first connection lasts.
    pub last_end: Option<String>,
}

impl KnownReplica {
    /// Its name, or its id when it gave none (INTERFACE.md: `--name`
    /// defaults to the replica id).
    pub fn display_name(&self) -> &str {
        self.name.as_ref().map_or(self.replica_id.as_str(), ReplicaName::as_str)
    }

    /// What it needs from the primary's WAL to resume: the position it last
    /// reported as applied (its resume point is never before it), else the
    /// resume point it last stated, else the cut of the snapshot it was
    /// sent. None: it holds nothing yet.
    pub fn needs(&self) -> Option<WalPoint> {
        self.reported.map(|p| WalPoint { lsn: p.applied_lsn, commit_id: p.applied_commit_id }).or(self.resume).or(self.snapshot)
    }

    fn seen(&mut self, now_ms: u64, c_primary: CommitId) {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
        self.last_seen_commit_id = self.last_seen_commit_id.max(c_primary);
    }
}

/// What accepting a replica changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptOutcome {
    /// A disconnected entry with the same name but another id (the same
    /// replica, re-bootstrapped) that this one replaced.
    pub replaced: Option<KnownReplica>,
    /// The least recently seen disconnected entry forgotten to stay within
    /// [`MAX_KNOWN_REPLICAS`].
    pub evicted: Option<KnownReplica>,
    /// The registry is full of connected replicas: this one is not
    /// remembered (it is still served).
    pub not_remembered: bool,
}

/// The registry: every replica the primary has served, bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    replicas: Vec<KnownReplica>,
    forgotten: u64,
    evicted: u64,
}

/// The registry file's body (docs/formats.md §9).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// [`REGISTRY_FORMAT_VERSION`].
    pub format_version: u32,
    /// Known replicas, ordered by replica id.
    pub replicas: Vec<KnownReplica>,
    /// Entries an operator removed with `--forget-replica` since the file was created.
    pub forgotten: u64,
    /// Entries forgotten to stay within the cap since the file was created.
    pub evicted: u64,
}

/// Why the registry file could not be used.
#[derive(Debug, Error)]
pub enum RegistryLoadError {
    /// Unreadable, malformed or failing its checksum.
    #[error("{0}")]
    File(#[from] ChecksummedFileError),
    /// A format version this build does not read.
    #[error("{path}: format version {found}, this build reads {REGISTRY_FORMAT_VERSION}")]
    Version {
        /// File path.
        path: String,
        /// Version found.
        found: u32,
    },
    /// Parsed, but a field is out of its documented range.
    #[error("{path}: {detail}")]
    Invalid {
        /// File path.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

impl RegistryLoadError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryLoadError::File(e) => e.code(),
            RegistryLoadError::Version { .. } => "META_VERSION",
            RegistryLoadError::Invalid { .. } => "META_MALFORMED",
        }
    }
}

fn bounded_text(text: &str) -> String {
    text.chars().take(MAX_TEXT_LEN).collect()
}

impl Registry {
    /// Known replicas ordered by (name, id): deterministic output.
    pub fn list(&self) -> Vec<KnownReplica> {
        let mut out = self.replicas.clone();
        out.sort_by(|a, b| (a.display_name(), &a.replica_id).cmp(&(b.display_name(), &b.replica_id)));
        out
    }

    /// The entry for `id`.
    pub fn get(&self, id: &ReplicaId) -> Option<&KnownReplica> {
        self.replicas.iter().find(|r| &r.replica_id == id)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// Whether no replica is known.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Entries removed by `--forget-replica` over the file's life.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }

    /// Entries evicted to stay within the cap over the file's life.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn entry(&mut self, id: &ReplicaId) -> Option<&mut KnownReplica> {
        self.replicas.iter_mut().find(|r| &r.replica_id == id)
    }

    /// A replica's handshake was accepted (WAL streaming or a snapshot).
    /// `connected` are the replicas with a connection open now: they are
    /// never replaced or evicted.
    pub fn accept(&mut self, hello: &Hello, address: &str, now_ms: u64, c_primary: CommitId, connected: &BTreeSet<ReplicaId>) -> AcceptOutcome {
        let mut outcome = AcceptOutcome::default();
        let resume = match hello.request {
            HelloRequest::Resume { end_lsn, commit_id, .. } => Some(WalPoint { lsn: end_lsn, commit_id }),
            HelloRequest::Snapshot | HelloRequest::SnapshotResume(_) => None,
        };
        if self.get(&hello.replica_id).is_none() {
            if let Some(name) = &hello.name {
                // The same name under another id: the same replica, re-bootstrapped.
                if let Some(i) = self.replicas.iter().position(|r| r.name.as_ref() == Some(name) && !connected.contains(&r.replica_id)) {
                    outcome.replaced = Some(self.replicas.remove(i));
                }
            }
        }
        if self.get(&hello.replica_id).is_none() && self.replicas.len() >= MAX_KNOWN_REPLICAS {
            let oldest = self
                .replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| !connected.contains(&r.replica_id))
                .min_by_key(|(_, r)| (r.last_seen_ms, r.last_seen_commit_id))
                .map(|(i, _)| i);
            match oldest {
                Some(i) => {
                    outcome.evicted = Some(self.replicas.remove(i));
                    self.evicted += 1;
                }
                None => {
                    outcome.not_remembered = true;
                    return outcome;
                }
            }
        }
        let address = bounded_text(address);
        match self.entry(&hello.replica_id) {
            Some(r) => {
                r.name = hello.name.clone();
                r.address = address;
                r.connections = r.connections.saturating_add(1);
                r.resume = resume;
                r.reported = None;
                r.snapshot = None;
                r.seen(now_ms, c_primary);
            }
            None => self.replicas.push(KnownReplica {
                replica_id: hello.replica_id.clone(),
                name: hello.name.clone(),
                address,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                last_seen_commit_id: c_primary,
                connections: 1,
                resume,
                reported: None,
                snapshot: None,
                last_end: None,
            }),
        }
        outcome
    }

    /// A replica's REPORT (already validated against what was sent, RES-4).
    pub fn report(&mut self, id: &ReplicaId, positions: Positions, now_ms: u64, c_primary: CommitId) {
        if let Some(r) = self.entry(id) {
            r.reported = Some(positions);
            r.seen(now_ms, c_primary);
        }
    }

    /// A snapshot with this cut is being sent to the replica.
    pub fn snapshot_served(&mut self, id: &ReplicaId, cut: WalPoint) {
        if let Some(r) = self.entry(id) {
            r.snapshot = Some(cut);
        }
    }

    /// A known replica's connection ended (or its handshake was refused)
    /// with `code`. Unknown replicas are not added.
    pub fn ended(&mut self, id: &ReplicaId, code: &str, now_ms: u64, c_primary: CommitId) {
        if let Some(r) = self.entry(id) {
            r.last_end = Some(bounded_text(code));
            r.seen(now_ms, c_primary);
        }
    }

    /// Removes every entry whose id or name is `key` (the operator's
    /// `--forget-replica`), returning them.
    pub fn forget(&mut self, key: &str) -> Vec<KnownReplica> {
        let (gone, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.replicas).into_iter().partition(|r| r.replica_id.as_str() == key || r.name.as_ref().is_some_and(|n| n.as_str() == key));
        self.replicas = kept;
        self.forgotten = self.forgotten.saturating_add(gone.len() as u64);
        gone
    }

    /// The oldest LSN a known replica needs (RES-2 holds).
    pub fn oldest_needed(&self) -> Option<Lsn> {
        self.replicas.iter().filter_map(|r| r.needs()).map(|p| p.lsn).min()
    }

    /// The file body.
    pub fn to_file(&self) -> RegistryFile {
        let mut replicas = self.replicas.clone();
        replicas.sort_by(|a, b| a.replica_id.cmp(&b.replica_id));
        RegistryFile { format_version: REGISTRY_FORMAT_VERSION, replicas, forgotten: self.forgotten, evicted: self.evicted }
    }

    /// A registry from a file body, every field checked against its
    /// documented range (RES-4).
    pub fn from_file(file: RegistryFile, path: &str) -> Result<Registry, RegistryLoadError> {
        let invalid = |detail: String| RegistryLoadError::Invalid { path: path.to_string(), detail };
        if file.format_version != REGISTRY_FORMAT_VERSION {
            return Err(RegistryLoadError::Version { path: path.to_string(), found: file.format_version });
        }
        if file.replicas.len() > MAX_KNOWN_REPLICAS {
            return Err(invalid(format!("{} replicas, at most {MAX_KNOWN_REPLICAS}", file.replicas.len())));
        }
        let mut ids = BTreeSet::new();
        for r in &file.replicas {
            if !ids.insert(r.replica_id.clone()) {
                return Err(invalid(format!("replica {} listed twice", r.replica_id)));
            }
            if r.address.len() > MAX_TEXT_LEN || r.address.parse::<SocketAddr>().is_err() {
                return Err(invalid(format!("replica {}: address is not an IP address and port", r.replica_id)));
            }
            if r.last_end.as_ref().is_some_and(|e| e.len() > MAX_TEXT_LEN || !e.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')) {
                return Err(invalid(format!("replica {}: last_end is not a code", r.replica_id)));
            }
            if let Some(p) = r.reported {
                if !(p.applied_lsn <= p.validated_lsn && p.validated_lsn <= p.received_lsn) {
                    return Err(invalid(format!("replica {}: reported positions out of order", r.replica_id)));
                }
            }
            if r.first_seen_ms > r.last_seen_ms {
                return Err(invalid(format!("replica {}: first seen after last seen", r.replica_id)));
            }
        }
        Ok(Registry { replicas: file.replicas, forgotten: file.forgotten, evicted: file.evicted })
    }
}

/// Reads the registry file in `dir`: None when there is none.
pub fn read_registry(disk: &dyn Disk, dir: &Path) -> Result<Option<Registry>, RegistryLoadError> {
    let path = dir.join(REGISTRY_FILE);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let file: RegistryFile = read_checksummed(disk, &path)?;
    Registry::from_file(file, &path.display().to_string()).map(Some)
}

/// Writes the registry file in `dir` atomically and durably.
pub fn write_registry(disk: &dyn Disk, dir: &Path, registry: &Registry) -> std::io::Result<()> {
    write_checksummed(disk, &dir.join(REGISTRY_FILE), &registry.to_file())
}

// ---------------------------------------------------------------------------
// Retention forecast (RES-2)
// ---------------------------------------------------------------------------

/// Where a replica stands against the primary's WAL retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionState {
    /// Its resume point is within `--wal-keep-bytes` of the durable end:
    /// its WAL is kept.
    Reserved,
    /// It is further behind than the cap: its WAL is still held, but the
    /// next retention pass that reaches it (after a snapshot) removes it.
    BeyondCap,
    /// The WAL it needs is gone: it will be answered `WAL_UNAVAILABLE` and
    /// must be re-bootstrapped.
    Lost,
    /// It has stated no position yet (bootstrapping).
    Unknown,
}

/// The primary's WAL as the forecast needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionFacts {
    /// Durable end LSN.
    pub end_lsn: Lsn,
    /// C_primary (durable).
    pub c_primary: CommitId,
    /// `--wal-keep-bytes`.
    pub wal_keep_bytes: u64,
    /// Chain state at the start of the oldest retained segment.
    pub oldest_retained: ChainTip,
}

/// How much WAL may still be written before a replica is cut off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionForecast {
    /// Where it stands.
    pub state: RetentionState,
    /// The LSN it needs the WAL from.
    pub needed_lsn: Option<Lsn>,
    /// The CommitId before it.
    pub needed_commit_id: Option<CommitId>,
    /// WAL bytes the primary may still write before this replica falls
    /// behind the cap (0 once it has).
    pub bytes_remaining: Option<u64>,
    /// The same in commits, at the average record size of the WAL written
    /// since its position (an estimate).
    pub commits_remaining: Option<u64>,
}

/// The retention forecast for a replica that needs `needs` (RES-2). Pure.
pub fn forecast(needs: Option<WalPoint>, f: &RetentionFacts) -> RetentionForecast {
    let Some(need) = needs else {
        return RetentionForecast { state: RetentionState::Unknown, needed_lsn: None, needed_commit_id: None, bytes_remaining: None, commits_remaining: None };
    };
    let oldest = f.oldest_retained;
    // Exactly the handshake's WAL_UNAVAILABLE condition (handshake::decide).
    let lost = need.commit_id < oldest.commit_id || (need.commit_id == 0 && oldest.end_lsn > 0);
    let bytes = need.lsn.saturating_add(f.wal_keep_bytes).saturating_sub(f.end_lsn);
    let state = if lost {
        RetentionState::Lost
    } else if need.lsn.saturating_add(f.wal_keep_bytes) >= f.end_lsn {
        RetentionState::Reserved
    } else {
        RetentionState::BeyondCap
    };
    let bytes_remaining = if lost { 0 } else { bytes };
    let per_commit = average_record_bytes(need, f);
    RetentionForecast {
        state,
        needed_lsn: Some(need.lsn),
        needed_commit_id: Some(need.commit_id),
        bytes_remaining: Some(bytes_remaining),
        commits_remaining: per_commit.map(|avg| bytes_remaining / avg),
    }
}

/// Average bytes per commit: over the WAL written since the replica's
/// position, else over the retained WAL; None when no commit is there.
fn average_record_bytes(need: WalPoint, f: &RetentionFacts) -> Option<u64> {
    let span = |from_lsn: Lsn, from_commit: CommitId| {
        let (bytes, commits) = (f.end_lsn.checked_sub(from_lsn)?, f.c_primary.checked_sub(from_commit)?);
        (bytes > 0 && commits > 0).then(|| (bytes / commits).max(1))
    };
    span(need.lsn, need.commit_id).or_else(|| span(f.oldest_retained.end_lsn, f.oldest_retained.commit_id))
}

#[cfg(test)]
mod tests;
