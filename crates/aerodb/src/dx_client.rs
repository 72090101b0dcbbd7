//! `aerodb status --dx URL [--watch]` and `aerodb explain WHAT --dx URL`:
//! the CLI on the read-only DX API, through `aerodb_client`. `status`
//! renders `/v1/replication` as tables (comfy-table); `--watch` redraws it
//! in place on a terminal and prints one snapshot per interval otherwise.
//! `explain` prints an explanation as pretty JSON.

use std::io::IsTerminal;
use std::time::Duration;

use aerodb_client::{blocking, Envelope, ExplainTarget};
use comfy_table::{presets, Table};
use serde_json::Value;

use crate::cli::ExplainWhat;
use crate::exit::Exit;
use crate::render::{failure, Api, Failure};

/// A JSON value as a table cell: strings unquoted, null as `unknown`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "unknown".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A two-column key/value table without borders (`key  value`).
fn key_values(rows: Vec<(&str, String)>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    let mut out = t.lines().map(|l| l.trim_end().to_string()).collect::<Vec<_>>().join("\n");
    out.push('\n');
    out
}

fn blocking_text(b: &Value) -> String {
    if b.is_null() {
        return "none".to_string();
    }
    let mut s = format!("{} ({})", cell(&b["code"]), cell(&b["rule_id"]));
    if !b["lsn"].is_null() {
        s.push_str(&format!(" at LSN {}", cell(&b["lsn"])));
    }
    if !b["commit_id"].is_null() {
        s.push_str(&format!(" CommitId {}", cell(&b["commit_id"])));
    }
    if let Some(d) = b["detail"].as_str().filter(|d| !d.is_empty()) {
        s.push_str(&format!(": {d}"));
    }
    s
}

/// `5 commits, 812 bytes, 1.200 s (live)`; `(last known)` when the numbers
/// are not live.
fn lag_text(lag: &Value) -> String {
    if lag.is_null() {
        return "unknown".to_string();
    }
    let seconds = lag["seconds"].as_f64().map_or("unknown".to_string(), |s| format!("{s:.3} s"));
    let as_of = match lag["as_of"].as_str() {
        Some("live") => " (live)",
        Some("last_known") => " (last known)",
        _ => "",
    };
    format!("{} commits, {} bytes, {seconds}{as_of}", cell(&lag["commits"]), cell(&lag["bytes"]))
}

fn retention_text(r: &Value) -> String {
    if r.is_null() {
        return "unknown".to_string();
    }
    format!("{} ({} bytes / {} commits left)", cell(&r["state"]), cell(&r["bytes_remaining"]), cell(&r["commits_remaining"]))
}

fn wal_retention_text(w: &Value) -> String {
    if w.is_null() {
        return "unknown".to_string();
    }
    format!(
        "{} (keep {} bytes for replicas; {} bytes held from LSN {})",
        cell(&w["mode"]),
        cell(&w["wal_keep_bytes"]),
        cell(&w["retained_bytes"]),
        cell(&w["oldest_retained_lsn"])
    )
}

/// Bootstrap progress: state, method, boundary, and bytes when the node reports them.
fn bootstrap_text(boot: &Value) -> String {
    let mut s = format!("{} ({}", cell(&boot["state"]), cell(&boot["method"]));
    if !boot["boundary_commit_id"].is_null() || !boot["boundary_lsn"].is_null() {
        s.push_str(&format!(", boundary CommitId {}, LSN {}", cell(&boot["boundary_commit_id"]), cell(&boot["boundary_lsn"])));
    }
    if let Some(phase) = boot.get("phase").and_then(Value::as_str) {
        s.push_str(&format!(", {phase}"));
    }
    if let (Some(done), Some(total)) = (boot.get("bytes_done").and_then(Value::as_u64), boot.get("bytes_total").and_then(Value::as_u64)) {
        s.push_str(&format!(", {done} of {total} bytes"));
    }
    if let Some(rate) = boot.get("rate_bytes_per_s").and_then(Value::as_u64).filter(|r| *r > 0) {
        s.push_str(&format!(", {rate} bytes/s"));
    }
    if let Some(eta) = boot.get("eta_s").and_then(Value::as_u64) {
        s.push_str(&format!(", eta {eta} s"));
    }
    if let Some(resumes) = boot.get("resumes").and_then(Value::as_u64).filter(|r| *r > 0) {
        s.push_str(&format!(", resumed {resumes}x"));
    }
    s.push(')');
    s
}

fn replica_table(d: &Value) -> String {
    let conn = &d["connection"];
    key_values(vec![
        ("role", cell(&d["role"])),
        ("node state", cell(&d["node_state"])),
        ("replica state", cell(&d["replica_state"])),
        ("read safety", cell(&d["read_safety"])),
        ("replica commit id", cell(&d["replica_commit_id"])),
        ("primary commit id", cell(&d["primary_commit_id"])),
        ("wal received lsn", cell(&d["wal_received_lsn"])),
        ("wal validated lsn", cell(&d["wal_validated_lsn"])),
        ("wal applied lsn", cell(&d["wal_applied_lsn"])),
        ("primary durable lsn", cell(&d["primary_durable_lsn"])),
        ("lag", lag_text(&d["lag"])),
        ("history horizon", cell(&d["history_horizon"])),
        ("bootstrap", bootstrap_text(&d["snapshot_bootstrap"])),
        ("blocking reason", blocking_text(&d["blocking_reason"])),
        (
            "connection",
            format!(
                "{} to {} (reconnects {}, handshakes {})",
                cell(&conn["state"]),
                cell(&conn["primary"]),
                cell(&conn["reconnects"]),
                cell(&conn["handshakes"])
            ),
        ),
        ("state digest", cell(&d["state_digest"])),
        ("cluster id", cell(&d["cluster_id"])),
        ("replica id", cell(&d["replica_id"])),
        ("name", cell(&d["name"])),
    ])
}

/// When the primary last heard from a replica.
fn last_seen_text(r: &Value) -> String {
    let seen = &r["last_seen"];
    match seen["seconds_ago"].as_f64() {
        Some(_) if r["state"] != "disconnected" => format!("now (CommitId {})", cell(&seen["commit_id"])),
        Some(s) => format!("{s:.0} s ago (CommitId {})", cell(&seen["commit_id"])),
        None => format!("CommitId {}", cell(&seen["commit_id"])),
    }
}

/// One row per replica the primary knows (connected or not).
fn replicas_table(replicas: &[Value], terminal: bool) -> String {
    let mut t = Table::new();
    t.load_style(if terminal { presets::UTF8_FULL_CONDENSED } else { presets::ASCII_FULL_CONDENSED });
    t.set_header(vec!["NAME", "REPLICA", "ADDRESS", "STATE", "APPLIED LSN", "APPLIED COMMIT", "LAG", "LAST SEEN", "RETENTION"]);
    for r in replicas {
        let rep = &r["reported"];
        t.add_row(vec![
            cell(&r["name"]),
            cell(&r["replica_id"]),
            cell(&r["address"]),
            cell(&r["state"]),
            cell(&rep["applied_lsn"]),
            cell(&rep["applied_commit_id"]),
            lag_text(&r["lag"]),
            last_seen_text(r),
            retention_text(&r["retention"]),
        ]);
    }
    t.trim_fmt() + "\n"
}

fn primary_table(d: &Value, terminal: bool) -> String {
    let replicas = d["replicas"].as_array().cloned().unwrap_or_default();
    let mut out = key_values(vec![
        ("role", cell(&d["role"])),
        ("node state", cell(&d["node_state"])),
        ("commit id", cell(&d["commit_id"])),
        ("durable lsn", cell(&d["durable_lsn"])),
        ("state digest", cell(&d["state_digest"])),
        ("cluster id", cell(&d["cluster_id"])),
        ("wal shipped bytes", cell(&d["wal_shipped_bytes"])),
        ("fence", fence_cell(&d["fence"])),
        ("wal retention", wal_retention_text(&d["wal_retention"])),
        ("replicas known", replicas.len().to_string()),
        ("replicas connected", replicas.iter().filter(|r| r["state"] != "disconnected").count().to_string()),
    ]);
    if !replicas.is_empty() {
        out.push('\n');
        out.push_str(&replicas_table(&replicas, terminal));
    }
    out
}

/// The fence row (REPL-11): who fenced the primary, or that it is not.
fn fence_cell(f: &Value) -> String {
    match f["fenced"].as_bool() {
        Some(true) => format!("FENCED ({}, REPL-11) by replica {}: writes refused until --lift-fence", cell(&f["code"]), cell(&f["evidence"]["replica_id"])),
        Some(false) => "not fenced".to_string(),
        None => "none (no replicas)".to_string(),
    }
}

/// Renders a `/v1/replication` envelope as tables (pure). `terminal`
/// picks box-drawing borders over ASCII ones.
pub fn status_text(envelope: &Value, terminal: bool) -> String {
    let d = &envelope["data"];
    let mut out = if d["role"] == "replica" { replica_table(d) } else { primary_table(d, terminal) };
    for note in envelope["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("note: {}\n", cell(note)));
    }
    out
}

/// How `aerodb status` runs.
#[derive(Clone, Copy, Debug)]
pub struct StatusOptions {
    /// Print the whole envelope as JSON.
    pub json: bool,
    /// Refresh every `interval` (until interrupted, or `count` times).
    pub watch: bool,
    /// Refresh interval.
    pub interval: Duration,
    /// Stop after this many snapshots (`--watch` only).
    pub count: Option<u64>,
}

fn dx_client(dx: &str) -> Result<blocking::DxClient, Failure> {
    blocking::DxClient::new(dx).map_err(|e| failure(&e, None, Api::Dx))
}

fn fetch_status(client: &blocking::DxClient) -> Result<Envelope<Value>, Failure> {
    client.envelope::<Value>("/v1/replication").map_err(|e| failure(&e, Some(client.url()), Api::Dx))
}

fn envelope_value(env: &Envelope<Value>) -> Value {
    serde_json::to_value(env).unwrap_or(Value::Null)
}

/// `aerodb status --dx URL`.
pub fn status(dx: &str, opts: StatusOptions) -> i32 {
    let client = match dx_client(dx) {
        Ok(c) => c,
        Err(f) => return f.report(opts.json),
    };
    let terminal = std::io::stdout().is_terminal();
    if !opts.watch {
        return match fetch_status(&client) {
            Ok(env) => {
                let value = envelope_value(&env);
                if opts.json {
                    outln!("{value}");
                } else {
                    out!("{}", status_text(&value, terminal));
                }
                Exit::Ok.code()
            }
            Err(f) => f.report(opts.json),
        };
    }
    let mut shown = 0u64;
    loop {
        let now = chrono_free_now();
        let (frame, last) = match fetch_status(&client) {
            Ok(env) => {
                let value = envelope_value(&env);
                let frame = if opts.json {
                    value.to_string() + "\n"
                } else {
                    format!("{} at {now} (every {} s)\n{}", client.url(), opts.interval.as_secs_f64(), status_text(&value, terminal))
                };
                (frame, Exit::Ok.code())
            }
            Err(f) => {
                let frame = if opts.json { f.json.to_string() + "\n" } else { format!("{} at {now}\n{}\n", client.url(), f.message) };
                (frame, f.exit.code())
            }
        };
        if terminal && !opts.json {
            // Redraw in place: cursor home, clear the screen.
            out!("\x1b[H\x1b[2J{frame}");
        } else {
            out!("{frame}{}", if opts.json { "" } else { "\n" });
        }
        shown += 1;
        if opts.count.is_some_and(|c| shown >= c) {
            return last;
        }
        std::thread::sleep(opts.interval);
    }
}

/// The wall-clock time of day (UTC, `HH:MM:SS`) for the watch header.
fn chrono_free_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day % 3600 / 60, day % 60)
}

/// The DX target of an `explain` request, or a usage error.
pub fn explain_target(what: ExplainWhat, collection: Option<&str>, key: Option<&str>, at: Option<u64>) -> Result<ExplainTarget, String> {
    match what {
        ExplainWhat::Replication | ExplainWhat::Recovery => {
            if collection.is_some() || key.is_some() || at.is_some() {
                return Err(format!("`explain {}` takes no COLLECTION, KEY or --at", what.name()));
            }
            Ok(if what == ExplainWhat::Replication { ExplainTarget::Replication } else { ExplainTarget::Recovery })
        }
        ExplainWhat::Read => {
            let (Some(c), Some(k)) = (collection, key) else {
                return Err("`explain read` needs COLLECTION and KEY: aerodb explain read COLLECTION KEY [--at N] --dx URL".to_string());
            };
            Ok(ExplainTarget::Read { collection: c.to_string(), key: k.to_string(), at })
        }
    }
}

/// `aerodb explain replication|recovery|read ... --dx URL`: prints the
/// explanation (the envelope's `data`) as pretty JSON, notes on stderr;
/// with `--json` the whole envelope on one line.
pub fn explain(dx: &str, what: ExplainWhat, collection: Option<&str>, key: Option<&str>, at: Option<u64>, json: bool) -> i32 {
    let target = match explain_target(what, collection, key, at) {
        Ok(t) => t,
        Err(e) => return Failure::bad_arguments("BAD_ARGUMENTS", e).report(json),
    };
    let client = match dx_client(dx) {
        Ok(c) => c,
        Err(f) => return f.report(json),
    };
    match client.envelope::<Value>(&target.path()) {
        Ok(env) => {
            if json {
                outln!("{}", envelope_value(&env));
                return Exit::Ok.code();
            }
            match serde_json::to_string_pretty(&env.data) {
                Ok(text) => outln!("{text}"),
                Err(e) => {
                    eprintln!("aerodb: cannot print the explanation: {e}");
                    return Exit::Failure.code();
                }
            }
            for note in &env.notes {
                eprintln!("note: {note}");
            }
            Exit::Ok.code()
        }
        Err(e) => failure(&e, Some(client.url()), Api::Dx).report(json),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    /// The value of the table row `key`.
    fn row<'a>(t: &'a str, key: &str) -> Option<&'a str> {
        t.lines().find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with("  ")).map(str::trim))
    }

    /// P5-I14: the status table shows every stage, CommitIds, lag, blocking reason and connection.
    #[test]
    fn p5_i14_status_table_shows_replica_positions_and_unknowns() {
        let env = json!({"api_version": "v1", "notes": ["partial"], "data": {
            "role": "replica", "node_state": "ReplicaActive", "replica_state": "Disconnected", "read_safety": "safe",
            "replica_commit_id": 7, "primary_commit_id": null, "wal_received_lsn": 300, "wal_validated_lsn": 250, "wal_applied_lsn": 200,
            "lag": {"commits": null, "bytes": null}, "history_horizon": 0,
            "snapshot_bootstrap": {"state": "complete", "method": "wal", "boundary_commit_id": 0, "boundary_lsn": 0},
            "blocking_reason": {"code": "CONNECTION_LOST", "rule_id": "F-N1", "detail": "closed", "lsn": null, "commit_id": null},
            "connection": {"state": "disconnected", "primary": "127.0.0.1:1", "reconnects": 2, "handshakes": 1}}});
        let t = status_text(&env, false);
        for (key, want) in [
            ("replica state", "Disconnected"),
            ("wal received lsn", "300"),
            ("wal validated lsn", "250"),
            ("wal applied lsn", "200"),
            ("primary commit id", "unknown"),
            ("replica commit id", "7"),
            ("lag", "unknown commits, unknown bytes, unknown"),
            ("bootstrap", "complete (wal, boundary CommitId 0, LSN 0)"),
            ("blocking reason", "CONNECTION_LOST (F-N1): closed"),
            ("connection", "disconnected to 127.0.0.1:1 (reconnects 2, handshakes 1)"),
        ] {
            assert_eq!(row(&t, key), Some(want), "row {key:?} in\n{t}");
        }
        assert!(t.contains("note: partial"), "{t}");
    }

    /// P5-I14: lag seconds, last-known lag and bootstrap bytes are shown when the node reports them.
    #[test]
    fn p5_i14_status_shows_last_known_lag_and_bootstrap_bytes() {
        assert_eq!(lag_text(&json!({"commits": 3, "bytes": 90, "seconds": 1.5, "as_of": "last_known"})), "3 commits, 90 bytes, 1.500 s (last known)");
        assert_eq!(lag_text(&json!({"commits": 0, "bytes": 0, "seconds": 0.0, "as_of": "live"})), "0 commits, 0 bytes, 0.000 s (live)");
        assert_eq!(lag_text(&Value::Null), "unknown");
        let boot = json!({"state": "in_progress", "method": "snapshot", "boundary_commit_id": null, "boundary_lsn": null, "bytes_done": 10, "bytes_total": 40});
        assert_eq!(bootstrap_text(&boot), "in_progress (snapshot, 10 of 40 bytes)");
        let transfer = json!({"state": "in_progress", "method": "snapshot", "boundary_commit_id": null, "boundary_lsn": null, "phase": "transferring",
            "bytes_done": 10, "bytes_total": 40, "rate_bytes_per_s": 5, "eta_s": 6, "resumed_from": 4, "resumes": 1});
        assert_eq!(bootstrap_text(&transfer), "in_progress (snapshot, transferring, 10 of 40 bytes, 5 bytes/s, eta 6 s, resumed 1x)");
        let interrupted = json!({"state": "in_progress", "method": "snapshot", "phase": "interrupted", "bytes_done": 10, "bytes_total": 40,
            "rate_bytes_per_s": 0, "eta_s": null, "resumed_from": 0, "resumes": 0});
        assert_eq!(bootstrap_text(&interrupted), "in_progress (snapshot, interrupted, 10 of 40 bytes)");
    }

    #[test]
    fn p5_i14_status_table_for_a_primary_has_one_row_per_replica() {
        let env = json!({"api_version": "v1", "notes": [], "data": {"role": "primary", "node_state": "PrimaryActive", "commit_id": 9, "durable_lsn": 900,
            "replicas": [{"replica_id": "r1", "name": "east", "address": "p", "state": "streaming", "sent_lsn": 900,
                          "reported": {"received_lsn": 900, "validated_lsn": 900, "applied_lsn": 800, "applied_commit_id": 8},
                          "lag": {"commits": 1, "bytes": 100, "seconds": 0.25, "as_of": "live"}, "last_seen": {"commit_id": 9, "seconds_ago": 0.0},
                          "retention": {"state": "reserved", "bytes_remaining": 5000, "commits_remaining": 50}},
                         {"replica_id": "r2", "name": "west", "address": "q", "state": "disconnected", "sent_lsn": null, "reported": null,
                          "lag": {"commits": 4, "bytes": 400, "seconds": null, "as_of": "last_known"}, "last_seen": {"commit_id": 5, "seconds_ago": 61.0},
                          "retention": {"state": "beyond_cap", "bytes_remaining": 0, "commits_remaining": 0}}]}});
        let t = status_text(&env, false);
        assert_eq!(row(&t, "commit id"), Some("9"), "{t}");
        assert_eq!(row(&t, "durable lsn"), Some("900"), "{t}");
        assert_eq!((row(&t, "replicas known"), row(&t, "replicas connected")), (Some("2"), Some("1")), "{t}");
        let east = t.lines().find(|l| l.starts_with("| east ")).unwrap();
        assert!(
            east.contains("r1") && east.contains("1 commits, 100 bytes, 0.250 s (live)") && east.contains("reserved (5000 bytes / 50 commits left)"),
            "{t}"
        );
        let west = t.lines().find(|l| l.starts_with("| west ")).unwrap();
        assert!(west.contains("disconnected") && west.contains("(last known)") && west.contains("61 s ago (CommitId 5)") && west.contains("beyond_cap"), "{t}");
        assert!(t.is_ascii(), "ASCII borders when not on a terminal");
        assert!(!status_text(&env, true).is_ascii(), "box drawing on a terminal");
    }

    #[test]
    fn p5_i14_explain_targets_are_validated() {
        assert_eq!(explain_target(ExplainWhat::Replication, None, None, None), Ok(ExplainTarget::Replication));
        assert_eq!(explain_target(ExplainWhat::Read, Some("c c"), Some(".."), Some(4)).unwrap().path(), "/v1/explain/read?collection=c%20c&key=..&at=4");
        assert!(explain_target(ExplainWhat::Read, Some("c"), None, None).is_err());
        assert!(explain_target(ExplainWhat::Recovery, Some("c"), None, None).is_err());
    }
}
