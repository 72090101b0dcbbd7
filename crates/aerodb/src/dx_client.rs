//! `aerodb status --dx URL` and `aerodb explain ... --dx URL`: a small
//! client of the read-only DX API. `status` prints `/v1/replication` as a
//! table; `explain` prints an explanation as pretty JSON. Both exit
//! non-zero with a one-line reason when the node cannot be reached.

use serde_json::Value;

use crate::client::{base_url, call, segment};

/// Fetches a DX path and returns the envelope, or a one-line reason.
fn fetch(dx: &str, path: &str) -> Result<Value, String> {
    let url = format!("{}{path}", base_url(dx));
    let answer = call("GET", &url, None).map_err(|e| format!("cannot reach the DX API at {dx}: {e}"))?;
    if answer.status != 200 {
        let err = answer.body.pointer("/data/error").or_else(|| answer.body.get("error")).cloned().unwrap_or(answer.body.clone());
        return Err(format!("the DX API answered {}: {}", answer.status, err));
    }
    if answer.body.get("api_version").and_then(Value::as_str) != Some("v1") {
        return Err(format!("{url} did not answer with a DX v1 envelope: {}", answer.body));
    }
    Ok(answer.body)
}

/// A JSON value as a table cell: strings unquoted, null as `unknown`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "unknown".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows_to_text(rows: &[(String, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
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

fn replica_table(d: &Value) -> String {
    let boot = &d["snapshot_bootstrap"];
    let conn = &d["connection"];
    let lag = &d["lag"];
    let rows = vec![
        ("role".to_string(), cell(&d["role"])),
        ("node state".to_string(), cell(&d["node_state"])),
        ("replica state".to_string(), cell(&d["replica_state"])),
        ("read safety".to_string(), cell(&d["read_safety"])),
        ("replica commit id".to_string(), cell(&d["replica_commit_id"])),
        ("primary commit id".to_string(), cell(&d["primary_commit_id"])),
        ("wal received lsn".to_string(), cell(&d["wal_received_lsn"])),
        ("wal validated lsn".to_string(), cell(&d["wal_validated_lsn"])),
        ("wal applied lsn".to_string(), cell(&d["wal_applied_lsn"])),
        ("primary durable lsn".to_string(), cell(&d["primary_durable_lsn"])),
        ("lag".to_string(), lag_text(lag)),
        ("history horizon".to_string(), cell(&d["history_horizon"])),
        (
            "bootstrap".to_string(),
            format!(
                "{} ({}, boundary CommitId {}, LSN {})",
                cell(&boot["state"]),
                cell(&boot["method"]),
                cell(&boot["boundary_commit_id"]),
                cell(&boot["boundary_lsn"])
            ),
        ),
        ("blocking reason".to_string(), blocking_text(&d["blocking_reason"])),
        (
            "connection".to_string(),
            format!(
                "{} to {} (reconnects {}, handshakes {})",
                cell(&conn["state"]),
                cell(&conn["primary"]),
                cell(&conn["reconnects"]),
                cell(&conn["handshakes"])
            ),
        ),
        ("state digest".to_string(), cell(&d["state_digest"])),
        ("cluster id".to_string(), cell(&d["cluster_id"])),
        ("replica id".to_string(), cell(&d["replica_id"])),
        ("name".to_string(), cell(&d["name"])),
    ];
    rows_to_text(&rows)
}

/// `5 commits, 812 bytes, 1.2 s (live)`; `(last known)` when the numbers
/// are not live.
fn lag_text(lag: &Value) -> String {
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

fn primary_table(d: &Value) -> String {
    let replicas = d["replicas"].as_array().cloned().unwrap_or_default();
    let rows = vec![
        ("role".to_string(), cell(&d["role"])),
        ("node state".to_string(), cell(&d["node_state"])),
        ("commit id".to_string(), cell(&d["commit_id"])),
        ("durable lsn".to_string(), cell(&d["durable_lsn"])),
        ("state digest".to_string(), cell(&d["state_digest"])),
        ("cluster id".to_string(), cell(&d["cluster_id"])),
        ("wal shipped bytes".to_string(), cell(&d["wal_shipped_bytes"])),
        ("fence".to_string(), fence_cell(&d["fence"])),
        ("wal retention".to_string(), wal_retention_text(&d["wal_retention"])),
        ("replicas known".to_string(), replicas.len().to_string()),
        ("replicas connected".to_string(), replicas.iter().filter(|r| r["state"] != "disconnected").count().to_string()),
    ];
    let mut out = rows_to_text(&rows);
    if !replicas.is_empty() {
        let header = ["NAME", "REPLICA", "ADDRESS", "STATE", "APPLIED LSN", "APPLIED COMMIT", "LAG", "LAST SEEN", "RETENTION"];
        let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_string()).collect()];
        for r in &replicas {
            let rep = &r["reported"];
            let seen = &r["last_seen"];
            let last_seen = match seen["seconds_ago"].as_f64() {
                Some(_) if r["state"] != "disconnected" => format!("now (CommitId {})", cell(&seen["commit_id"])),
                Some(s) => format!("{s:.0} s ago (CommitId {})", cell(&seen["commit_id"])),
                None => format!("CommitId {}", cell(&seen["commit_id"])),
            };
            table.push(vec![
                cell(&r["name"]),
                cell(&r["replica_id"]),
                cell(&r["address"]),
                cell(&r["state"]),
                cell(&rep["applied_lsn"]),
                cell(&rep["applied_commit_id"]),
                lag_text(&r["lag"]),
                last_seen,
                retention_text(&r["retention"]),
            ]);
        }
        let widths: Vec<usize> = (0..header.len()).map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0)).collect();
        out.push('\n');
        for row in table {
            let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
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

/// Renders a `/v1/replication` envelope as a table (pure).
pub fn status_text(envelope: &Value) -> String {
    let d = &envelope["data"];
    let mut out = if d["role"] == "replica" { replica_table(d) } else { primary_table(d) };
    for note in envelope["notes"].as_array().into_iter().flatten() {
        out.push_str(&format!("note: {}\n", cell(note)));
    }
    out
}

/// `aerodb status --dx URL`.
pub fn status(dx: &str) -> i32 {
    match fetch(dx, "/v1/replication") {
        Ok(envelope) => {
            out!("{}", status_text(&envelope));
            0
        }
        Err(e) => {
            eprintln!("aerodb: {e}");
            1
        }
    }
}

/// The DX path of an `explain` request, or a usage error.
pub fn explain_path(what: &str, collection: Option<&str>, key: Option<&str>, at: Option<u64>) -> Result<String, String> {
    match what {
        "replication" | "recovery" => {
            if collection.is_some() || key.is_some() || at.is_some() {
                return Err(format!("`explain {what}` takes no COLLECTION, KEY or --at"));
            }
            Ok(format!("/v1/explain/{what}"))
        }
        "read" => {
            let (Some(c), Some(k)) = (collection, key) else {
                return Err("`explain read` needs COLLECTION and KEY: aerodb explain read COLLECTION KEY [--at N] --dx URL".to_string());
            };
            let mut path = format!("/v1/explain/read?collection={}&key={}", segment(c), segment(k));
            if let Some(n) = at {
                path.push_str(&format!("&at={n}"));
            }
            Ok(path)
        }
        other => Err(format!("unknown explanation `{other}`: use replication, recovery or read")),
    }
}

/// `aerodb explain replication|recovery|read ... --dx URL`: prints the
/// explanation (the envelope's `data`) as pretty JSON; notes go to stderr.
pub fn explain(dx: &str, what: &str, collection: Option<&str>, key: Option<&str>, at: Option<u64>) -> i32 {
    let path = match explain_path(what, collection, key, at) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("aerodb: {e}");
            return 2;
        }
    };
    match fetch(dx, &path) {
        Ok(envelope) => {
            match serde_json::to_string_pretty(&envelope["data"]) {
                Ok(text) => outln!("{text}"),
                Err(e) => {
                    eprintln!("aerodb: cannot print the explanation: {e}");
                    return 1;
                }
            }
            for note in envelope["notes"].as_array().into_iter().flatten() {
                eprintln!("note: {}", cell(note));
            }
            0
        }
        Err(e) => {
            eprintln!("aerodb: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        let t = status_text(&env);
        for (key, want) in [
            ("replica state", "Disconnected"),
            ("wal received lsn", "300"),
            ("wal validated lsn", "250"),
            ("wal applied lsn", "200"),
            ("primary commit id", "unknown"),
            ("replica commit id", "7"),
            ("lag", "unknown commits, unknown bytes, unknown"),
            ("blocking reason", "CONNECTION_LOST (F-N1): closed"),
            ("connection", "disconnected to 127.0.0.1:1 (reconnects 2, handshakes 1)"),
        ] {
            assert_eq!(row(&t, key), Some(want), "row {key:?} in\n{t}");
        }
        assert!(t.contains("note: partial"), "{t}");
    }

    /// The value of the table row `key`.
    fn row<'a>(t: &'a str, key: &str) -> Option<&'a str> {
        t.lines().find_map(|l| l.strip_prefix(key).filter(|rest| rest.starts_with("  ")).map(str::trim))
    }

    #[test]
    fn status_table_for_a_primary_has_one_row_per_replica() {
        let env = json!({"api_version": "v1", "notes": [], "data": {"role": "primary", "node_state": "PrimaryActive", "commit_id": 9, "durable_lsn": 900,
            "replicas": [{"replica_id": "r1", "name": "east", "address": "p", "state": "streaming", "sent_lsn": 900,
                          "reported": {"received_lsn": 900, "validated_lsn": 900, "applied_lsn": 800, "applied_commit_id": 8},
                          "lag": {"commits": 1, "bytes": 100, "seconds": 0.25, "as_of": "live"}, "last_seen": {"commit_id": 9, "seconds_ago": 0.0},
                          "retention": {"state": "reserved", "bytes_remaining": 5000, "commits_remaining": 50}},
                         {"replica_id": "r2", "name": "west", "address": "q", "state": "disconnected", "sent_lsn": null, "reported": null,
                          "lag": {"commits": 4, "bytes": 400, "seconds": null, "as_of": "last_known"}, "last_seen": {"commit_id": 5, "seconds_ago": 61.0},
                          "retention": {"state": "beyond_cap", "bytes_remaining": 0, "commits_remaining": 0}}]}});
        let t = status_text(&env);
        assert_eq!(row(&t, "commit id"), Some("9"), "{t}");
        assert_eq!(row(&t, "durable lsn"), Some("900"), "{t}");
        assert_eq!((row(&t, "replicas known"), row(&t, "replicas connected")), (Some("2"), Some("1")), "{t}");
        let east = t.lines().find(|l| l.starts_with("east ")).unwrap();
        assert!(
            east.contains("r1") && east.contains("1 commits, 100 bytes, 0.250 s (live)") && east.contains("reserved (5000 bytes / 50 commits left)"),
            "{t}"
        );
        let west = t.lines().find(|l| l.starts_with("west ")).unwrap();
        assert!(west.contains("disconnected") && west.contains("(last known)") && west.contains("61 s ago (CommitId 5)") && west.contains("beyond_cap"), "{t}");
    }

    #[test]
    fn explain_paths_are_validated_and_encoded() {
        assert_eq!(explain_path("replication", None, None, None).as_deref(), Ok("/v1/explain/replication"));
        assert_eq!(explain_path("read", Some("c c"), Some("k/1"), Some(4)).as_deref(), Ok("/v1/explain/read?collection=c%20c&key=k%2F1&at=4"));
        assert!(explain_path("read", Some("c"), None, None).is_err());
        assert!(explain_path("recovery", Some("c"), None, None).is_err());
        assert!(explain_path("nope", None, None, None).is_err());
    }
}
