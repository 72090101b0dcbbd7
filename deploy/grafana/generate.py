#!/usr/bin/env python3
# Generates aerodb-replication.json (the Grafana dashboard). Edit this file,
# then run `python3 deploy/grafana/generate.py`; deploy/check fails when the
# committed JSON differs from what this script writes.
import json
import pathlib
import sys
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
I = 'instance=~"$instance"'
R = 'instance=~"$instance",peer=~"$replica"'
panels = []
pid = [0]
y = [0]
x = [0]
rowh = [0]

def nid():
    pid[0] += 1
    return pid[0]

def row(title):
    if x[0] != 0:
        y[0] += rowh[0]; x[0] = 0; rowh[0] = 0
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1

def place(w, h):
    if x[0] + w > 24:
        y[0] += rowh[0]; x[0] = 0; rowh[0] = 0
    g = {"h": h, "w": w, "x": x[0], "y": y[0]}
    x[0] += w; rowh[0] = max(rowh[0], h)
    return g

def targets(qs, instant=False, fmt=None):
    out = []
    for i, q in enumerate(qs):
        expr, legend = q
        t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
        if instant:
            t["instant"] = True; t["range"] = False
        if fmt:
            t["format"] = fmt
        out.append(t)
    return out

def ts(title, qs, unit="short", desc="", w=12, h=8, stack=False, decimals=None):
    p = {"type": "timeseries", "title": title, "id": nid(), "datasource": DS, "description": desc,
         "gridPos": place(w, h),
         "fieldConfig": {"defaults": {"unit": unit, "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                                                               "showPoints": "never", "spanNulls": False,
                                                               "stacking": {"mode": "normal" if stack else "none", "group": "A"}}},
                         "overrides": []},
         "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull", "max"]},
                     "tooltip": {"mode": "multi", "sort": "desc"}},
         "targets": targets(qs)}
    if decimals is not None:
        p["fieldConfig"]["defaults"]["decimals"] = decimals
    panels.append(p)

def stat(title, qs, desc="", w=6, h=4, mappings=None, thresholds=None, text_mode="value_and_name", unit="short"):
    p = {"type": "stat", "title": title, "id": nid(), "datasource": DS, "description": desc,
         "gridPos": place(w, h),
         "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or [],
                                      "thresholds": thresholds or {"mode": "absolute", "steps": [{"color": "green", "value": None}]},
                                      "color": {"mode": "thresholds"}}, "overrides": []},
         "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                     "colorMode": "background", "graphMode": "none", "justifyMode": "auto", "textMode": text_mode,
                     "orientation": "auto"},
         "targets": targets(qs, instant=True)}
    panels.append(p)

def timeline(title, qs, mappings, desc="", w=12, h=8):
    p = {"type": "state-timeline", "title": title, "id": nid(), "datasource": DS, "description": desc,
         "gridPos": place(w, h),
         "fieldConfig": {"defaults": {"mappings": mappings, "color": {"mode": "thresholds"},
                                      "thresholds": {"mode": "absolute", "steps": [{"color": "transparent", "value": None}]},
                                      "custom": {"fillOpacity": 80, "lineWidth": 0}}, "overrides": []},
         "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "alignValue": "left",
                     "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                     "tooltip": {"mode": "single", "sort": "none"}},
         "targets": targets(qs)}
    panels.append(p)

def text(title, content, w=24, h=4):
    panels.append({"type": "text", "title": title, "id": nid(), "gridPos": place(w, h),
                   "options": {"mode": "markdown", "content": content}})

def vm(pairs):
    return [{"type": "value", "options": {str(k): {"text": t, "color": c, "index": i} for i, (k, t, c) in enumerate(pairs)}}]

RED = {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}]}
STATES = [("Initializing", "blue"), ("Recovering", "blue"), ("Bootstrapping", "purple"), ("Connecting", "yellow"),
          ("Streaming", "green"), ("Disconnected", "orange"), ("Halted", "red")]
state_expr = "sum by (job, instance) (\n" + "\n  or ".join(
    f'aerodb_replica_state{{{I},state="{s}"}} * {i+1}' for i, (s, _) in enumerate(STATES)) + "\n)"

# ---------------------------------------------------------------- overview
row("Overview")
stat("Nodes", [(f'aerodb_node_info{{{I}}}', "{{instance}} {{role}} {{node_state}}")],
     "aerodb_node_info: role and node state per node (1 = present).", w=8, h=5, text_mode="name")
stat("Replica halted (code)", [(f'aerodb_replica_halted{{{I}}} == 1', "{{instance}} {{code}}")],
     "aerodb_replica_halted == 1: the code a replica is halted with. Empty when no replica is halted. "
     "Run `aerodb explain replication --dx INSTANCE` (docs/operations.md \"Halt codes\").",
     w=6, h=5, text_mode="name", thresholds={"mode": "absolute", "steps": [{"color": "red", "value": None}]})
stat("Primary fenced (REPL-11)", [(f'aerodb_primary_fenced{{{I}}}', "{{instance}}")],
     "aerodb_primary_fenced: 1 while a replica's proof of lost history fences this primary. Lift with `aerodb primary --lift-fence` after fixing the cause.",
     w=5, h=5, mappings=vm([(0, "not fenced", "green"), (1, "FENCED", "red")]), thresholds=RED)
stat("Scrub findings (CORE-6)", [(f'aerodb_scrub_findings{{{I}}}', "{{instance}}")],
     "aerodb_scrub_findings: damaged files found by the scrub since start. Details: GET /v1/scrub.", w=5, h=5, thresholds=RED)

# ---------------------------------------------------------------- commits
row("Commits")
ts("Commit rate", [
    (f'rate(aerodb_commits_total{{{I}}}[$__rate_interval])', "{{instance}} acknowledged/s"),
    (f'deriv(aerodb_commit_id{{{I}}}[$__rate_interval])', "{{instance}} CommitId/s (applied)"),
    (f'rate(aerodb_wal_fsyncs_total{{{I}}}[$__rate_interval])', "{{instance}} WAL fsyncs/s (groups)"),
], "ops", "aerodb_commits_total (primary/standalone), the slope of aerodb_commit_id on every node, aerodb_wal_fsyncs_total (one per commit group).")
ts("CommitId: primary vs replicas", [
    (f'aerodb_commit_id{{{I}}}', "{{instance}} applied"),
    (f'aerodb_durable_commit_id{{{I}}}', "{{instance}} durable"),
    (f'aerodb_replica_reported_commit_id{{{R}}}', "{{peer}} reported to {{instance}}"),
    (f'aerodb_primary_commit_id{{{I}}}', "{{instance}} primary's (as last reported)"),
], "none", "aerodb_commit_id (C_primary / C_replica), aerodb_durable_commit_id, aerodb_replica_reported_commit_id (primary's view per replica), aerodb_primary_commit_id (replica's view of the primary).", decimals=0)
ts("WAL positions (LSN) per stage", [
    (f'aerodb_wal_lsn{{{I}}}', "{{instance}} {{stage}}"),
    (f'aerodb_primary_durable_lsn{{{I}}}', "{{instance}} primary durable (reported)"),
    (f'aerodb_replica_sent_lsn{{{R}}}', "{{peer}} sent by {{instance}}"),
    (f'aerodb_replica_reported_lsn{{{R},stage="applied"}}', "{{peer}} applied (reported)"),
], "decbytes", "aerodb_wal_lsn{stage=received|validated|applied|durable}, aerodb_primary_durable_lsn, aerodb_replica_sent_lsn, aerodb_replica_reported_lsn.", w=24)

# ---------------------------------------------------------------- lag
row("Replication lag")
ts("Lag (seconds) per replica", [
    (f'aerodb_replica_lag_seconds{{{R}}}', "{{peer}} (seen from {{instance}})"),
    (f'aerodb_replication_lag_seconds{{{I}}}', "{{instance}} (replica's own view)"),
], "s", "Age of the oldest commit not applied yet, on the primary's clock (0 when caught up). Observability only (REPL-10). "
        "aerodb_replica_lag_seconds on the primary; aerodb_replication_lag_seconds on the replica (last known when not live).", w=8)
ts("Lag (commits) per replica", [
    (f'aerodb_replica_lag_commits{{{R}}}', "{{peer}} (seen from {{instance}})"),
    (f'aerodb_replication_lag_commits{{{I}}}', "{{instance}} (replica's own view)"),
], "short", "C_primary minus the replica's CommitId: aerodb_replica_lag_commits (primary), aerodb_replication_lag_commits (replica).", w=8)
ts("Lag (bytes) per replica", [
    (f'aerodb_replica_lag_bytes{{{R}}}', "{{peer}} (seen from {{instance}})"),
    (f'aerodb_replication_lag_bytes{{{I}}}', "{{instance}} (replica's own view)"),
], "decbytes", "Durable LSN minus the replica's LSN: aerodb_replica_lag_bytes (primary), aerodb_replication_lag_bytes (replica).", w=8)

# ---------------------------------------------------------------- replica state
row("Replica state and connections")
timeline("Replica runtime state", [(state_expr, "{{instance}}")],
         vm([(i + 1, s, c) for i, (s, c) in enumerate(STATES)]),
         "aerodb_replica_state{state} (1 for the current state), one row per replica.")
timeline("Lag figures live (1) or last known (0)", [(f'aerodb_replication_lag_live{{{I}}}', "{{instance}}")],
         vm([(0, "last known", "orange"), (1, "live", "green")]),
         "aerodb_replication_lag_live on each replica.", w=6)
stat("Blocking reason", [(f'aerodb_replica_blocked{{{I}}}', "{{instance}} {{code}} ({{rule_id}})")],
     "aerodb_replica_blocked{code,rule_id}: what blocks progress without a halt (absent when nothing does).",
     w=6, h=8, text_mode="name", thresholds={"mode": "absolute", "steps": [{"color": "orange", "value": None}]})
timeline("Replicas connected to the primary", [(f'aerodb_replica_connected{{{R}}}', "{{peer}} @ {{instance}}")],
         vm([(0, "disconnected", "orange"), (1, "connected", "green")]),
         "aerodb_replica_connected per replica the primary knows (connected or not).")
ts("Replica counts on the primary", [
    (f'aerodb_replicas_connected{{{I}}}', "{{instance}} connected"),
    (f'aerodb_replicas_known{{{I}}}', "{{instance}} known"),
], "short", "aerodb_replicas_connected, aerodb_replicas_known (at most 128).", w=6, decimals=0)
ts("Last seen (seconds ago)", [(f'aerodb_replica_last_seen_seconds{{{R}}}', "{{peer}} @ {{instance}}")], "s",
   "aerodb_replica_last_seen_seconds: 0 while connected.", w=6)
ts("Connections, reconnects, handshakes", [
    (f'increase(aerodb_replica_connections_total{{{R}}}[$__rate_interval])', "{{peer}} connections accepted by {{instance}}"),
    (f'increase(aerodb_replica_reconnects_total{{{I}}}[$__rate_interval])', "{{instance}} reconnects"),
    (f'increase(aerodb_replica_handshakes_total{{{I}}}[$__rate_interval])', "{{instance}} handshakes"),
    (f'increase(aerodb_fence_proofs_total{{{I}}}[$__rate_interval])', "{{instance}} fence proofs (REPL-11)"),
], "short", "aerodb_replica_connections_total (primary, per replica), aerodb_replica_reconnects_total (every retry, also while the primary is down) and "
            "aerodb_replica_handshakes_total (replica), aerodb_fence_proofs_total (primary). The node has no counter of "
            "refused replication handshakes: refusals show as a replica halt or blocking code.")
ts("Bytes streamed to replicas", [
    (f'rate(aerodb_wal_shipped_bytes_total{{{I}}}[$__rate_interval])', "{{instance}}"),
], "Bps", "aerodb_wal_shipped_bytes_total on the primary.")

# ---------------------------------------------------------------- retention
row("WAL retention (RES-2)")
ts("WAL retained vs --wal-keep-bytes", [
    (f'aerodb_wal_retained_bytes{{{I}}}', "{{instance}} retained"),
    (f'aerodb_wal_keep_bytes{{{I}}}', "{{instance}} --wal-keep-bytes"),
], "bytes", "aerodb_wal_retained_bytes (durable LSN minus first LSN held), aerodb_wal_keep_bytes. Snapshots may need WAL beyond the cap.", w=8)
ts("Retention forecast: bytes remaining per replica", [
    (f'aerodb_replica_retention_bytes_remaining{{{R}}}', "{{peer}} @ {{instance}}"),
], "bytes", "aerodb_replica_retention_bytes_remaining: WAL the primary may still write before the replica falls behind --wal-keep-bytes.", w=8)
ts("Retention forecast: commits remaining per replica", [
    (f'aerodb_replica_retention_commits_remaining{{{R}}}', "{{peer}} @ {{instance}}"),
], "short", "aerodb_replica_retention_commits_remaining (estimated at the average record size).", w=8)
stat("Retention state per replica", [(f'aerodb_replica_retention_state{{{R}}} == 1', "{{peer}}: {{state}}")],
     "aerodb_replica_retention_state{state=reserved|beyond_cap|lost|unknown}.", w=8, h=6, text_mode="name",
     thresholds={"mode": "absolute", "steps": [{"color": "blue", "value": None}]})
ts("WAL segments and snapshots", [
    (f'aerodb_wal_segments{{{I}}}', "{{instance}} segments"),
    (f'aerodb_snapshots_held{{{I}}}', "{{instance}} snapshots held"),
    (f'increase(aerodb_wal_segments_removed_total{{{I}}}[$__rate_interval])', "{{instance}} segments removed"),
    (f'increase(aerodb_snapshots_created_total{{{I}}}[$__rate_interval])', "{{instance}} snapshots created"),
], "short", "aerodb_wal_segments, aerodb_snapshots_held, aerodb_wal_segments_removed_total, aerodb_snapshots_created_total.", w=8, h=6)
ts("First LSN held / newest snapshot", [
    (f'aerodb_wal_first_lsn{{{I}}}', "{{instance}} first LSN held"),
    (f'aerodb_snapshot_newest_commit_id{{{I}}}', "{{instance}} newest snapshot C_snap"),
], "none", "aerodb_wal_first_lsn, aerodb_snapshot_newest_commit_id.", w=8, h=6)

# ---------------------------------------------------------------- durability
row("Durable mark (CORE-5) and scrub (CORE-6)")
ts("Durable mark: unmarked bytes vs crash window", [
    (f'aerodb_durable_unmarked_bytes{{{I}}}', "{{instance}} unmarked"),
    (f'aerodb_durable_mark_window_bytes{{{I}}}', "{{instance}} crash window"),
], "bytes", "aerodb_durable_unmarked_bytes (durable WAL beyond the mark), aerodb_durable_mark_window_bytes.", w=8)
ts("Durable mark: CommitIds", [
    (f'aerodb_durable_commit_id{{{I}}} - aerodb_durable_mark_commit_id{{{I}}}', "{{instance}} durable - mark"),
], "short", "aerodb_durable_commit_id minus aerodb_durable_mark_commit_id.", w=8)
ts("Durable mark: writes and waits", [
    (f'rate(aerodb_durable_marks_written_total{{{I}}}[$__rate_interval])', "{{instance}} marks written/s"),
    (f'rate(aerodb_durable_mark_waits_total{{{I}}}[$__rate_interval])', "{{instance}} committer waits/s"),
], "ops", "aerodb_durable_marks_written_total, aerodb_durable_mark_waits_total (window full: commits waited).", w=8)
ts("Scrub throughput", [
    (f'rate(aerodb_scrub_bytes_total{{{I}}}[$__rate_interval])', "{{instance}} verified"),
    (f'aerodb_scrub_bytes_per_second{{{I}}}', "{{instance}} bound"),
], "Bps", "aerodb_scrub_bytes_total, aerodb_scrub_bytes_per_second (0 = disabled).", w=8)
ts("Scrub passes and targets", [
    (f'increase(aerodb_scrub_passes_total{{{I}}}[1h])', "{{instance}} passes/h"),
    (f'increase(aerodb_scrub_targets_verified_total{{{I}}}[1h])', "{{instance}} targets verified/h"),
    (f'aerodb_scrub_findings{{{I}}}', "{{instance}} findings"),
], "short", "aerodb_scrub_passes_total, aerodb_scrub_targets_verified_total, aerodb_scrub_findings.", w=8)
ts("Recovery and accepted losses", [
    (f'aerodb_recovery_torn_tail_bytes{{{I}}}', "{{instance}} torn tail dropped at last recovery (bytes)"),
    (f'aerodb_history_losses{{{I}}}', "{{instance}} accepted history losses"),
], "short", "aerodb_recovery_torn_tail_bytes (CORE-3), aerodb_history_losses (CORE-5, --accept-lost-history).", w=8)

# ---------------------------------------------------------------- mvcc
row("MVCC history and GC")
ts("History window (commits)", [
    (f'aerodb_commit_id{{{I}}} - aerodb_history_horizon{{{I}}}', "{{instance}} CommitId - horizon"),
    (f'aerodb_history_retain_commits{{{I}}}', "{{instance}} --history-retain-commits"),
], "short", "aerodb_commit_id minus aerodb_history_horizon, aerodb_history_retain_commits (primary).", w=8)
ts("Versions", [
    (f'aerodb_versions{{{I}}}', "{{instance}} retained"),
    (f'aerodb_versions_held{{{I}}}', "{{instance}} held"),
    (f'aerodb_versions_awaiting_purge{{{I}}}', "{{instance}} awaiting purge"),
    (f'aerodb_gc_candidates{{{I}}}', "{{instance}} GC candidates"),
], "short", "aerodb_versions, aerodb_versions_held, aerodb_versions_awaiting_purge, aerodb_gc_candidates.", w=8)
ts("GC records and read views", [
    (f'rate(aerodb_gc_records_applied_total{{{I}}}[$__rate_interval])', "{{instance}} GC records/s"),
    (f'aerodb_active_read_views{{{I}}}', "{{instance}} read views open"),
], "short", "aerodb_gc_records_applied_total, aerodb_active_read_views.", w=8)

# ---------------------------------------------------------------- http
row("HTTP surfaces (RES-3) and refusals")
ts("Refusals at a bound by surface and code", [
    (f'sum by (instance, surface, code) (increase(aerodb_http_rejects_total{{{I}}}[$__rate_interval])) > 0', "{{instance}} {{surface}} {{code}}"),
], "short", "aerodb_http_rejects_total{surface,code} (RES-3). The node exports no total request counter: only refusals are counted.", w=8)
ts("Client refusals by code and rule (replicas)", [
    (f'sum by (instance, code, rule_id) (increase(aerodb_client_refusals_total{{{I}}}[$__rate_interval])) > 0', "{{instance}} {{code}} {{rule_id}}"),
], "short", "aerodb_client_refusals_total{code,rule_id}: reads refused by the read-safety gate (RS-1..RS-5) and other client refusals.", w=8)
ts("Read gate admits at C_replica", [(f'aerodb_read_admitted{{{I}}}', "{{instance}}")], "short",
   "aerodb_read_admitted: 1 when the read-safety gate admits a read at C_replica now.", w=8, decimals=0)
ts("Connections open vs limit", [
    (f'aerodb_http_connections_open{{{I}}}', "{{instance}} {{surface}} open"),
    (f'aerodb_http_limit{{{I},limit="max_connections"}}', "{{instance}} {{surface}} max"),
], "short", "aerodb_http_connections_open{surface}, aerodb_http_limit{limit=\"max_connections\"}.", w=8)
ts("Waiting reads", [
    (f'aerodb_http_waiting_reads{{{I}}}', "{{instance}} waiting"),
    (f'aerodb_http_limit{{{I},surface="node",limit="max_waiting_reads"}}', "{{instance}} max"),
], "short", "aerodb_http_waiting_reads (reads waiting for min_commit), aerodb_http_limit{limit=\"max_waiting_reads\"}.", w=8)
ts("Request body bytes in flight vs budget", [
    (f'aerodb_http_body_bytes_in_flight{{{I}}}', "{{instance}} in flight"),
    (f'aerodb_http_limit{{{I},surface="node",limit="body_budget_bytes"}}', "{{instance}} budget"),
], "bytes", "aerodb_http_body_bytes_in_flight, aerodb_http_limit{limit=\"body_budget_bytes\"}.", w=8)

# ---------------------------------------------------------------- process
row("Process")
ts("Resident memory", [(f'process_resident_memory_bytes{{{I}}}', "{{instance}}")], "bytes",
   "process_resident_memory_bytes (from /proc/self/status). Memory is bounded by design (RES-1): see Versions and History window above.", w=8)
ts("CPU", [(f'rate(process_cpu_seconds_total{{{I}}}[$__rate_interval])', "{{instance}}")], "percentunit",
   "rate(process_cpu_seconds_total): user plus system CPU, in cores.", w=8)
ts("File descriptors and threads", [
    (f'process_open_fds{{{I}}}', "{{instance}} open fds"),
    (f'process_max_fds{{{I}}}', "{{instance}} max fds"),
    (f'process_threads{{{I}}}', "{{instance}} threads"),
], "short", "process_open_fds, process_max_fds (the soft limit), process_threads.", w=8)

dash = {
    "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "Prometheus scraping the AeroDB DX ports",
                  "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
    "__requires": [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
        {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
        {"type": "panel", "id": "state-timeline", "name": "State timeline", "version": ""},
        {"type": "panel", "id": "text", "name": "Text", "version": ""},
    ],
    "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                              "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                              "type": "dashboard"}]},
    "description": "AeroDB replication: commits, lag, replica state, WAL retention (RES-2), durable mark (CORE-5), scrub (CORE-6), fencing (REPL-11), HTTP bounds (RES-3). Scrape the DX ports.",
    "editable": True,
    "fiscalYearStartMonth": 0,
    "graphTooltip": 1,
    "id": None,
    "links": [],
    "panels": panels,
    "refresh": "30s",
    "schemaVersion": 39,
    "tags": ["aerodb", "replication"],
    "templating": {"list": [
        {"name": "job", "label": "job", "type": "query", "datasource": DS,
         "query": {"query": "label_values(aerodb_node_info, job)", "refId": "job"},
         "definition": "label_values(aerodb_node_info, job)", "refresh": 2, "includeAll": True, "multi": True,
         "allValue": ".*", "current": {}, "options": [], "sort": 1, "hide": 0, "regex": ""},
        {"name": "instance", "label": "node (DX address)", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(aerodb_node_info{job=~"$job"}, instance)', "refId": "instance"},
         "definition": 'label_values(aerodb_node_info{job=~"$job"}, instance)', "refresh": 2, "includeAll": True,
         "multi": True, "allValue": ".*", "current": {}, "options": [], "sort": 1, "hide": 0, "regex": ""},
        {"name": "replica", "label": "replica (name on the primary)", "type": "query", "datasource": DS,
         "query": {"query": 'label_values(aerodb_replica_connected{job=~"$job"}, peer)', "refId": "replica"},
         "definition": 'label_values(aerodb_replica_connected{job=~"$job"}, peer)', "refresh": 2, "includeAll": True,
         "multi": True, "allValue": ".*", "current": {}, "options": [], "sort": 1, "hide": 0, "regex": ""},
    ]},
    "time": {"from": "now-6h", "to": "now"},
    "timepicker": {},
    "timezone": "",
    "title": "AeroDB replication",
    "uid": "aerodb-replication",
    "version": 1,
    "weekStart": "",
}
# The job filter also applies to every query that filters on instance.
s = json.dumps(dash, indent=2, ensure_ascii=False)
s = s.replace('instance=~\\"$instance\\"', 'job=~\\"$job\\",instance=~\\"$instance\\"')
out = sys.argv[1] if len(sys.argv) > 1 else str(pathlib.Path(__file__).with_name("aerodb-replication.json"))
open(out, "w").write(s + "\n")
