//! `/metrics`: the same raw numbers as the DX views, in the Prometheus text
//! exposition format (version 0.0.4), encoded by the `prometheus-client`
//! crate. Only numbers and states: no health verdicts. A value the node
//! does not know is omitted, never guessed (F-O1). Output order is fixed:
//! the same facts render the same bytes.
//!
//! Every family is built here, through [`Exposition`] (`family`, `sample`,
//! `single`), and encoded in one place ([`Exposition::render`]); the list
//! in docs/operations.md ("Metrics") is checked against what these
//! functions emit (`tests/metrics_docs.rs`).

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use aerodb_repl_core::gate::evaluate;
use aerodb_repl_core::halt::Reason;
use aerodb_repl_core::state::StateKind;
use aerodb_snapshot::scrub::ScrubStatus;

use crate::facts::{HttpFacts, KnownReplicaFacts, PrimaryFacts, ProcessFacts, RegistryFacts, ReplPortFacts, ReplicaFacts};
use crate::halts::HALT_CODES;
use crate::views::default_read_inputs;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every replica runtime state, in the order the gauge lists them.
const REPLICA_STATES: [StateKind; 7] = StateKind::ALL;

/// Read refusals listed even when zero, so the series always exist.
const GATE_RULES: [&str; 5] = ["RS-1", "RS-2", "RS-3", "RS-4", "RS-5"];

/// One sample's value.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SampleValue {
    /// An integer (positions, counts, CommitIds).
    Int(u64),
    /// A float (seconds).
    Float(f64),
}

/// One metric family as built: name (counters end in `_total`), type,
/// help, and its samples in order.
#[derive(Clone, Debug)]
struct FamilyDef {
    name: String,
    counter: bool,
    help: String,
    samples: Vec<(Vec<(String, String)>, SampleValue)>,
}

/// Builds one exposition, family by family, in a fixed order.
#[derive(Default, Debug)]
struct Exposition {
    families: Vec<FamilyDef>,
}

impl Exposition {
    /// Starts a family; `kind` is `gauge` or `counter` (a counter's name ends in `_total`).
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.families.push(FamilyDef { name: name.to_string(), counter: kind == "counter", help: help.to_string(), samples: Vec::new() });
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: SampleValue) {
        let labels = labels.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        match self.families.iter_mut().rev().find(|f| f.name == name) {
            Some(f) => f.samples.push((labels, value)),
            // A sample without its family is a bug in this module; keep it visible as an untyped gauge.
            None => self.families.push(FamilyDef { name: name.to_string(), counter: false, help: String::new(), samples: vec![(labels, value)] }),
        }
    }

    /// A sample of the family `name` (started with [`Exposition::family`]).
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.push(name, labels, SampleValue::Int(value));
    }

    /// A float sample (seconds).
    fn sample_f64(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, SampleValue::Float(value));
    }

    /// A family with one unlabelled sample, omitted entirely when unknown.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.family(name, kind, help);
            self.sample(name, &[], v);
        }
    }

    /// The text exposition (Prometheus 0.0.4), through prometheus-client.
    fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(self.families)));
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would leave the exposition partial, never panic.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// The built families as a prometheus-client collector (encoded in order).
#[derive(Debug)]
struct Families(Vec<FamilyDef>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            // prometheus-client adds `_total` to a counter's name itself.
            let (name, metric_type) = match f.name.strip_suffix("_total").filter(|_| f.counter) {
                Some(base) => (base, MetricType::Counter),
                None => (f.name.as_str(), MetricType::Gauge),
            };
            let mut family = encoder.encode_descriptor(name, &f.help, None, metric_type)?;
            for (labels, value) in &f.samples {
                let sample = family.encode_family(labels)?;
                match (metric_type, *value) {
                    (MetricType::Counter, SampleValue::Int(v)) => ConstCounter::new(v).encode(sample)?,
                    (MetricType::Counter, SampleValue::Float(v)) => ConstCounter::new(v).encode(sample)?,
                    (_, SampleValue::Int(v)) => ConstGauge::new(v).encode(sample)?,
                    (_, SampleValue::Float(v)) => ConstGauge::new(v).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// Process metrics (the conventional `process_*` names), when the server
/// could read them.
fn process_metrics(e: &mut Exposition, p: Option<&ProcessFacts>) {
    let Some(p) = p else { return };
    e.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.resident_memory_bytes);
    e.single("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.virtual_memory_bytes);
    if let Some(cpu) = p.cpu_seconds {
        e.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        e.sample_f64("process_cpu_seconds_total", &[], cpu);
    }
    e.single("process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds);
    e.single("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds);
    if let Some(start) = p.start_time_seconds {
        e.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
        e.sample_f64("process_start_time_seconds", &[], start);
    }
    e.single("process_threads", "gauge", "Number of OS threads in the process.", p.threads);
}

const VERSIONS_HELP: &str = "Document versions retained at the history horizon (the ones the state digest covers).";

/// Garbage-collection series (MVCC-4, MVCC-5, RES-1), omitted when unknown.
fn gc_metrics(e: &mut Exposition, gc: Option<&aerodb_mvcc::GcStats>) {
    e.single(
        "aerodb_versions_held",
        "gauge",
        "Document versions held in memory (retained plus removed ones a pinned read still needs).",
        gc.map(|g| g.versions_held),
    );
    e.single(
        "aerodb_versions_awaiting_purge",
        "gauge",
        "Versions removed by GC records, kept until the pinned reads that need them finish (MVCC-5).",
        gc.map(|g| g.versions_awaiting_purge),
    );
    e.single("aerodb_gc_candidates", "gauge", "Superseded versions a future GC record will remove.", gc.map(|g| g.gc_candidates));
    e.single("aerodb_gc_records_applied_total", "counter", "GC records applied since start (recovery included).", gc.map(|g| g.gc_records_applied));
}

/// The exposition of a primary or standalone node.
pub fn primary_metrics(f: &PrimaryFacts) -> String {
    primary_metrics_with(f, None)
}

/// The exposition of a primary or standalone node, with process metrics.
pub fn primary_metrics_with(f: &PrimaryFacts, process: Option<&ProcessFacts>) -> String {
    let mut e = Exposition::default();
    let role = f.role;
    e.family("aerodb_node_info", "gauge", "Constant 1, labelled with the node role and state.");
    e.sample("aerodb_node_info", &[("role", role), ("node_state", "PrimaryActive")], 1);
    e.single("aerodb_commit_id", "gauge", "Last applied CommitId (C_primary).", Some(f.applied.commit_id));
    e.single("aerodb_durable_commit_id", "gauge", "CommitId of the last fsynced record.", Some(f.durable.commit_id));
    e.family("aerodb_wal_lsn", "gauge", "WAL position per stage (LSN).");
    e.sample("aerodb_wal_lsn", &[("stage", "applied")], f.applied.end_lsn);
    e.sample("aerodb_wal_lsn", &[("stage", "durable")], f.durable.lsn);
    e.single("aerodb_wal_segments", "gauge", "WAL segment files held.", Some(f.segments.len() as u64));
    e.single("aerodb_wal_first_lsn", "gauge", "First LSN held in the WAL.", f.segments.first().map(|s| s.header.start_lsn));
    let recovered = f.recovery.as_ref().map(|r| r.store.applied.commit_id);
    e.single(
        "aerodb_commits_total",
        "counter",
        "Commits acknowledged by this process (C_primary minus the CommitId recovered at startup).",
        recovered.map(|c| f.applied.commit_id.saturating_sub(c)),
    );
    e.single("aerodb_wal_fsyncs_total", "counter", "WAL fsyncs by the group committer since start (one per commit group).", f.wal_fsyncs);
    e.single(
        "aerodb_recovery_torn_tail_bytes",
        "gauge",
        "Bytes of torn tail truncated by the last recovery (CORE-3).",
        f.recovery.as_ref().map(|r| r.store.wal.torn_tail.as_ref().map_or(0, |t| t.bytes_dropped)),
    );
    e.single("aerodb_history_horizon", "gauge", "Oldest CommitId whose read view is answerable.", Some(f.history_horizon));
    e.single("aerodb_history_retain_commits", "gauge", "MVCC history kept behind the newest commit (--history-retain-commits).", f.history_retain_commits);
    e.single("aerodb_versions", "gauge", VERSIONS_HELP, Some(f.version_count));
    gc_metrics(&mut e, f.gc.as_ref());
    e.single("aerodb_active_read_views", "gauge", "Read views open now.", Some(f.active_read_views.iter().map(|(_, n)| n).sum()));
    if let Ok(held) = &f.snapshots {
        e.single("aerodb_snapshots_held", "gauge", "Snapshots held.", Some(held.len() as u64));
        e.single("aerodb_snapshot_newest_commit_id", "gauge", "C_snap of the newest snapshot held.", held.first().map(|s| s.commit_id));
    }
    if let Some(s) = &f.snapshot_status {
        e.single("aerodb_snapshots_created_total", "counter", "Snapshots created by this process.", Some(s.snapshots_created));
        e.single("aerodb_snapshots_deleted_total", "counter", "Old snapshots deleted by this process.", Some(s.snapshots_deleted));
        e.single("aerodb_wal_segments_removed_total", "counter", "WAL segments removed by retention in this process.", Some(s.segments_removed));
    }
    e.single("aerodb_wal_shipped_bytes_total", "counter", "WAL bytes shipped to replicas by this process.", f.wal_shipped_bytes);
    if let Some(d) = &f.durability {
        let marked = d.live.marked;
        e.single("aerodb_durable_mark_lsn", "gauge", "End LSN the durable high-water mark names (CORE-5).", marked.map(|m| m.end_lsn));
        e.single("aerodb_durable_mark_commit_id", "gauge", "CommitId the durable high-water mark names.", marked.map(|m| m.commit_id));
        e.single(
            "aerodb_durable_unmarked_bytes",
            "gauge",
            "Durable WAL bytes beyond the mark (at most the crash window).",
            marked.map(|m| f.durable.lsn.saturating_sub(m.end_lsn)),
        );
        e.single("aerodb_durable_mark_window_bytes", "gauge", "The crash window: the most WAL bytes allowed beyond the mark.", Some(d.live.window_bytes));
        e.single("aerodb_durable_marks_written_total", "counter", "Durable marks written by this process.", Some(d.live.marks_written));
        e.single("aerodb_durable_mark_waits_total", "counter", "Times the committer waited for a mark (window full).", Some(d.live.backpressure_waits));
        e.single(
            "aerodb_history_losses",
            "gauge",
            "History losses an operator accepted on this data directory (--accept-lost-history).",
            Some(d.startup.history_losses.losses.len() as u64 + d.startup.history_losses.older_losses),
        );
    }
    if let Some(fence) = &f.fence {
        e.single(
            "aerodb_primary_fenced",
            "gauge",
            "1 while a replica's proof of lost history fences this primary (REPL-11), else 0.",
            Some(u64::from(fence.current.is_some())),
        );
        e.single("aerodb_fence_proofs_total", "counter", "Handshakes that proved lost history since start.", Some(fence.proofs));
    }
    scrub_metrics(&mut e, f.scrub.as_ref());
    if let Some(sec) = &f.repl_security {
        e.family(
            "aerodb_repl_security_enabled",
            "gauge",
            "1 when the replication port requires the mechanism (token: --repl-token-file, tls: --tls-cert), else 0.",
        );
        e.sample("aerodb_repl_security_enabled", &[("mechanism", "token")], u64::from(sec.token_required));
        e.sample("aerodb_repl_security_enabled", &[("mechanism", "tls")], u64::from(sec.tls));
        e.family("aerodb_repl_refused_peers_total", "counter", "Replication peers refused by token authentication or TLS since start, by code.");
        for (code, n) in &sec.refused {
            e.sample("aerodb_repl_refused_peers_total", &[("code", code)], *n);
        }
    }
    if let Some(replicas) = &f.replicas {
        e.single("aerodb_replicas_connected", "gauge", "Replica connections open now.", Some(replicas.len() as u64));
    }
    if let Some(policy) = &f.snapshot_policy {
        e.single("aerodb_wal_keep_bytes", "gauge", "WAL kept for replicas beyond what snapshots need (--wal-keep-bytes, RES-2).", Some(policy.wal_keep_bytes));
    }
    e.single(
        "aerodb_wal_retained_bytes",
        "gauge",
        "WAL bytes held: durable LSN minus the first LSN held.",
        f.segments.first().map(|s| f.durable.lsn.saturating_sub(s.header.start_lsn)),
    );
    if let Some(registry) = &f.registry {
        replica_registry_metrics(&mut e, f, registry);
    }
    if let Some(port) = &f.repl_port {
        repl_port_metrics(&mut e, port);
    }
    if let Some(http) = &f.http {
        http_metrics(&mut e, http);
    }
    process_metrics(&mut e, process);
    e.render()
}

/// Per-replica series of a primary, one set per replica it knows (connected
/// or not). Labels: `replica_id` and `peer` = the replica's name (its id
/// when it has none), never its ephemeral address, so a reconnect continues
/// the same series.
fn replica_registry_metrics(e: &mut Exposition, f: &PrimaryFacts, registry: &RegistryFacts) {
    use crate::replicas::{metric_peer, replica_forecast, replica_lag, retention_state_name, seconds, RETENTION_STATES};
    let rs = &registry.replicas;
    e.single("aerodb_replicas_known", "gauge", "Replicas this primary remembers (connected or not; at most 128).", Some(rs.len() as u64));
    if rs.is_empty() {
        return;
    }
    fn labels(r: &KnownReplicaFacts) -> [(&'static str, &str); 2] {
        [("replica_id", r.known.replica_id.as_str()), ("peer", metric_peer(r))]
    }
    let family = |e: &mut Exposition, name: &str, kind: &str, help: &str, value: &dyn Fn(&KnownReplicaFacts) -> Option<u64>| {
        let rows: Vec<_> = rs.iter().filter_map(|r| value(r).map(|v| (labels(r), v))).collect();
        if rows.is_empty() {
            return;
        }
        e.family(name, kind, help);
        for (l, v) in rows {
            e.sample(name, &l, v);
        }
    };
    family(e, "aerodb_replica_connected", "gauge", "1 while the replica has a connection past its handshake, else 0.", &|r| {
        Some(u64::from(r.connection.is_some()))
    });
    family(e, "aerodb_replica_connections_total", "counter", "Connections accepted from the replica (kept across restarts).", &|r| Some(r.known.connections));
    family(e, "aerodb_replica_sent_lsn", "gauge", "LSN the primary has sent the replica up to (connected replicas).", &|r| {
        r.connection.as_ref().map(|c| c.sent_lsn)
    });
    family(e, "aerodb_replica_reported_commit_id", "gauge", "CommitId the replica last reported as applied.", &|r| {
        r.known.reported.map(|p| p.applied_commit_id)
    });
    family(
        e,
        "aerodb_replica_lag_commits",
        "gauge",
        "C_primary minus the CommitId the replica last stated (live while connected, last-known otherwise).",
        &|r| replica_lag(f, r).0,
    );
    family(e, "aerodb_replica_lag_bytes", "gauge", "Durable LSN minus the LSN the replica last stated.", &|r| replica_lag(f, r).1);
    family(e, "aerodb_replica_last_seen_commit_id", "gauge", "C_primary when the replica was last heard from.", &|r| Some(r.known.last_seen_commit_id));
    family(
        e,
        "aerodb_replica_retention_bytes_remaining",
        "gauge",
        "WAL bytes the primary may still write before the replica falls behind --wal-keep-bytes (RES-2).",
        &|r| replica_forecast(f, r).and_then(|x| x.bytes_remaining),
    );
    family(
        e,
        "aerodb_replica_retention_commits_remaining",
        "gauge",
        "The same in commits (estimated at the average record size since the replica's position).",
        &|r| replica_forecast(f, r).and_then(|x| x.commits_remaining),
    );
    let reported: Vec<_> = rs.iter().filter_map(|r| r.known.reported.map(|p| (labels(r), p))).collect();
    if !reported.is_empty() {
        e.family("aerodb_replica_reported_lsn", "gauge", "Positions the replica last reported, per stage (LSN).");
        for ([l1, l2], p) in &reported {
            for (stage, v) in [("received", p.received_lsn), ("validated", p.validated_lsn), ("applied", p.applied_lsn)] {
                e.sample("aerodb_replica_reported_lsn", &[*l1, *l2, ("stage", stage)], v);
            }
        }
    }
    let lag_s: Vec<_> = rs.iter().filter_map(|r| replica_lag(f, r).2.map(|ms| (labels(r), ms))).collect();
    if !lag_s.is_empty() {
        e.family(
            "aerodb_replica_lag_seconds",
            "gauge",
            "Age of the oldest commit the replica has not applied, on the primary's clock (0 when caught up; observability only, REPL-10).",
        );
        for (l, ms) in &lag_s {
            e.sample_f64("aerodb_replica_lag_seconds", l, seconds(*ms));
        }
    }
    if let Some(now) = f.now_ms {
        e.family("aerodb_replica_last_seen_seconds", "gauge", "Seconds since the replica was last heard from (0 while connected).");
        for r in rs {
            let ms = if r.connection.is_some() { 0 } else { now.saturating_sub(r.known.last_seen_ms) };
            e.sample_f64("aerodb_replica_last_seen_seconds", &labels(r), seconds(ms));
        }
    }
    let states: Vec<_> = rs.iter().filter_map(|r| replica_forecast(f, r).map(|x| (labels(r), x.state))).collect();
    if !states.is_empty() {
        e.family(
            "aerodb_replica_retention_state",
            "gauge",
            "1 for where the replica stands against WAL retention (reserved, beyond_cap, lost, unknown), 0 for the others.",
        );
        for ([l1, l2], state) in &states {
            for s in RETENTION_STATES {
                e.sample("aerodb_replica_retention_state", &[*l1, *l2, ("state", retention_state_name(s))], u64::from(*state == s));
            }
        }
    }
}

/// The replication port's bounds and usage (RES-3, RES-4).
fn repl_port_metrics(e: &mut Exposition, port: &ReplPortFacts) {
    e.single("aerodb_repl_connections_open", "gauge", "Connections open on the replication port now.", Some(port.open_connections));
    e.family("aerodb_repl_limit", "gauge", "Every bound of the replication port (RES-3), by name.");
    for (name, value) in &port.limits {
        e.sample("aerodb_repl_limit", &[("limit", name)], *value);
    }
    e.family(
        "aerodb_repl_rejects_total",
        "counter",
        "Replication connections refused or closed at a bound or for invalid input (RES-3, RES-4) since start, by code.",
    );
    for (code, count) in &port.rejects {
        e.sample("aerodb_repl_rejects_total", &[("code", code)], *count);
    }
}

/// The HTTP surfaces' bounds and usage (RES-3), same on every role.
fn http_metrics(e: &mut Exposition, http: &HttpFacts) {
    e.family("aerodb_http_connections_open", "gauge", "HTTP connections open now, per surface.");
    for s in &http.surfaces {
        e.sample("aerodb_http_connections_open", &[("surface", s.surface)], s.open_connections);
    }
    e.family("aerodb_http_limit", "gauge", "Every HTTP bound in force (RES-3), by surface (`node` for node-wide bounds) and name.");
    for s in &http.surfaces {
        for (name, value) in &s.limits {
            e.sample("aerodb_http_limit", &[("surface", s.surface), ("limit", name)], *value);
        }
    }
    for (name, value) in &http.limits {
        e.sample("aerodb_http_limit", &[("surface", "node"), ("limit", name)], *value);
    }
    e.family("aerodb_http_rejects_total", "counter", "Connections and requests refused at a bound (RES-3) since start, by surface and code.");
    for s in &http.surfaces {
        for (code, count) in &s.rejects {
            e.sample("aerodb_http_rejects_total", &[("surface", s.surface), ("code", code)], *count);
        }
    }
    e.single("aerodb_http_waiting_reads", "gauge", "Reads waiting for min_commit now (they hold no thread).", Some(http.waiting_reads));
    e.single("aerodb_http_body_bytes_in_flight", "gauge", "Request body bytes held now, node-wide.", Some(http.body_bytes_in_flight));
}

/// The exposition of a replica.
pub fn replica_metrics(f: &ReplicaFacts) -> String {
    replica_metrics_with(f, None)
}

/// The exposition of a replica, with process metrics.
pub fn replica_metrics_with(f: &ReplicaFacts, process: Option<&ProcessFacts>) -> String {
    let o = &f.observed;
    let mut e = Exposition::default();
    let node_state = crate::views::replica_node_state(o);
    e.family("aerodb_node_info", "gauge", "Constant 1, labelled with the node role and state.");
    e.sample("aerodb_node_info", &[("role", "replica"), ("node_state", node_state)], 1);
    e.family("aerodb_replica_state", "gauge", "1 for the replica's current runtime state, 0 for the others.");
    for s in REPLICA_STATES {
        e.sample("aerodb_replica_state", &[("state", s.name())], u64::from(o.kind() == s));
    }
    let known = f.applied.is_some();
    e.single("aerodb_commit_id", "gauge", "Last applied CommitId (C_replica).", f.applied.map(|a| a.commit_id));
    if known {
        e.family("aerodb_wal_lsn", "gauge", "WAL position per stage (LSN).");
        e.sample("aerodb_wal_lsn", &[("stage", "received")], o.positions.received_lsn);
        e.sample("aerodb_wal_lsn", &[("stage", "validated")], o.positions.validated_lsn);
        e.sample("aerodb_wal_lsn", &[("stage", "applied")], o.positions.applied_lsn);
    }
    e.single("aerodb_primary_commit_id", "gauge", "C_primary as last reported by the primary.", o.primary.map(|p| p.commit_id));
    e.single("aerodb_primary_durable_lsn", "gauge", "The primary's durable LSN as last reported.", o.primary.map(|p| p.durable_lsn));
    let c = f.applied.map(|a| a.commit_id);
    e.single("aerodb_replication_lag_commits", "gauge", "Reported C_primary minus C_replica.", o.primary.zip(c).map(|(p, c)| p.commit_id.saturating_sub(c)));
    e.single(
        "aerodb_replication_lag_bytes",
        "gauge",
        "Reported primary durable LSN minus the applied LSN.",
        o.primary.filter(|_| known).map(|p| p.durable_lsn.saturating_sub(o.positions.applied_lsn)),
    );
    if let Some(ms) = o.lag_ms.filter(|_| known) {
        e.family(
            "aerodb_replication_lag_seconds",
            "gauge",
            "Age of the oldest commit not applied yet, on the primary's clock (0 when caught up; observability only, REPL-10).",
        );
        e.sample_f64("aerodb_replication_lag_seconds", &[], crate::replicas::seconds(ms));
    }
    e.single(
        "aerodb_replication_lag_live",
        "gauge",
        "1 when the lag figures are live (streaming), 0 when they are the last known (the primary is not streaming to this replica now).",
        o.primary.map(|_| u64::from(o.lag_is_live())),
    );
    e.single("aerodb_replica_reconnects_total", "counter", "Reconnections since start.", Some(o.reconnects));
    e.single("aerodb_replica_handshakes_total", "counter", "Successful handshakes since start.", Some(o.handshakes));
    e.single("aerodb_history_horizon", "gauge", "Oldest CommitId whose read view is answerable.", f.history_horizon);
    e.single("aerodb_versions", "gauge", VERSIONS_HELP, f.version_count);
    gc_metrics(&mut e, f.gc.as_ref());
    e.single("aerodb_active_read_views", "gauge", "Read views open now.", Some(f.active_read_views.iter().map(|(_, n)| n).sum()));
    let gate = evaluate(&default_read_inputs(o, f.applied.as_ref(), f.history_horizon.unwrap_or(0)));
    e.single("aerodb_read_admitted", "gauge", "1 when the read-safety gate admits a read at C_replica now, else 0.", Some(u64::from(gate.admitted)));
    e.single("aerodb_bootstrap_boundary_commit_id", "gauge", "CommitId of the bootstrap boundary.", o.bootstrap().map(|b| b.boundary_commit_id));
    e.single("aerodb_bootstrap_boundary_lsn", "gauge", "LSN of the bootstrap boundary.", o.bootstrap().map(|b| b.boundary_lsn));
    e.family("aerodb_replica_halted", "gauge", "1 for the code the replica is halted with, 0 for the others.");
    let current = o.halt().map(|h| h.code());
    for c in HALT_CODES.iter().filter(|c| c.halts) {
        e.sample("aerodb_replica_halted", &[("code", c.code)], u64::from(current == Some(c.code)));
    }
    if let Some(code) = current.filter(|code| !HALT_CODES.iter().any(|c| c.halts && c.code == *code)) {
        e.sample("aerodb_replica_halted", &[("code", code)], 1);
    }
    e.family("aerodb_replica_blocked", "gauge", "1 with the code of what blocks progress without a halt (absent when nothing does).");
    if let Some(b) = o.blocking().filter(|_| o.halt().is_none()) {
        e.sample("aerodb_replica_blocked", &[("code", b.code()), ("rule_id", b.rule_id())], 1);
    }
    e.family("aerodb_client_refusals_total", "counter", "Client requests refused since start, by code and rule.");
    let mut refusals: BTreeMap<(&str, &str), u64> = GATE_RULES.iter().map(|rule| (("READ_REFUSED", *rule), 0)).collect();
    for r in &f.refusals {
        *refusals.entry((r.code.as_str(), r.rule_id.as_str())).or_insert(0) += r.count;
    }
    for ((code, rule_id), count) in refusals {
        e.sample("aerodb_client_refusals_total", &[("code", code), ("rule_id", rule_id)], count);
    }
    if let Some(http) = &f.http {
        http_metrics(&mut e, http);
    }
    scrub_metrics(&mut e, f.scrub.as_ref());
    process_metrics(&mut e, process);
    e.render()
}

/// Scrub counters (CORE-6), when the node runs a scrub.
fn scrub_metrics(e: &mut Exposition, scrub: Option<&ScrubStatus>) {
    let Some(s) = scrub else { return };
    e.single("aerodb_scrub_bytes_per_second", "gauge", "Scrub read-rate bound (0 = disabled).", Some(s.policy.bytes_per_second));
    e.single("aerodb_scrub_passes_total", "counter", "Scrub passes completed by this process.", Some(s.passes_completed));
    e.single("aerodb_scrub_bytes_total", "counter", "Bytes re-verified by the scrub in this process.", Some(s.bytes_verified_total));
    e.single(
        "aerodb_scrub_targets_verified_total",
        "counter",
        "Snapshots and sealed WAL segments verified clean by this process.",
        Some(s.targets_verified_total),
    );
    e.single("aerodb_scrub_findings", "gauge", "Damaged files the scrub found since start (CORE-6).", Some(s.findings_total));
    e.single("aerodb_scrub_pass_bytes_done", "gauge", "Bytes read by the pass in progress.", s.current_pass.as_ref().map(|p| p.bytes_done));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// P5-I14: the exposition is Prometheus text 0.0.4 with counters named `_total`,
    /// label values escaped, families in build order and unknown values omitted.
    #[test]
    fn p5_i14_exposition_is_prometheus_text_in_build_order() {
        let mut e = Exposition::default();
        e.single("aerodb_b", "gauge", "B.", Some(2));
        e.single("aerodb_unknown", "gauge", "Never shown.", None);
        e.family("aerodb_a_total", "counter", "A.");
        e.sample("aerodb_a_total", &[("code", "X"), ("peer", "a\"b\\c\nd")], 7);
        e.family("process_cpu_seconds_total", "counter", "CPU.");
        e.sample_f64("process_cpu_seconds_total", &[], 1.5);
        e.family("aerodb_empty", "gauge", "No samples.");
        let text = e.render();
        assert_eq!(
            text,
            "# HELP aerodb_b B.\n# TYPE aerodb_b gauge\naerodb_b 2\n\
             # HELP aerodb_a_total A.\n# TYPE aerodb_a_total counter\naerodb_a_total{code=\"X\",peer=\"a\\\"b\\\\c\\nd\"} 7\n\
             # HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n\
             # HELP aerodb_empty No samples.\n# TYPE aerodb_empty gauge\n"
        );
    }
}
