//! How the CLI reports a failed call (pure, unit-tested): one short human
//! line plus hints by default, the full error object with `--json`, and
//! the distinct exit code of [`crate::exit::Exit`].
//!
//! Every message names the node once (no repeated "cannot reach ...:
//! cannot reach ..." prefixes) and, where a wrong port is the likely cause,
//! says which port to use.

use aerodb_client::{ApiError, ClientError, ErrorKind, NodeUrl};
use serde_json::{json, Value};

use crate::exit::Exit;

/// Default ports, for hints.
pub const DEFAULT_CLIENT_PORT: u16 = 7700;
/// The primary's default replication port.
pub const DEFAULT_REPL_PORT: u16 = 7701;
/// The primary's default DX port.
pub const DEFAULT_DX_PORT: u16 = 7702;

/// Which API the command meant to talk to (for wrong-port hints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// The client API (`--listen`): put, get, delete, scan.
    Client,
    /// The DX API (`--dx-listen`): status, explain.
    Dx,
}

impl Api {
    fn port_hint(self) -> String {
        match self {
            Api::Client => format!("use the node's client API port (--listen, default {DEFAULT_CLIENT_PORT}; a replica's default is 7710)"),
            Api::Dx => format!("use the node's DX port (--dx-listen, default {DEFAULT_DX_PORT}; a replica's default is 7712)"),
        }
    }
}

/// A failure rendered for the operator.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// One short line (without the `aerodb: ` prefix).
    pub message: String,
    /// What to do next, one line each.
    pub hints: Vec<String>,
    /// The full answer for `--json`: `{"error": {code, rule_id, message, evidence}}`
    /// (plus `read_view` on a 404 read).
    pub json: Value,
}

impl Failure {
    /// A failure found before anything was sent (arguments).
    pub fn bad_arguments(code: &str, message: impl Into<String>) -> Failure {
        let message = message.into();
        Failure {
            exit: Exit::BadArguments,
            json: json!({"error": {"code": code, "rule_id": null, "message": message, "evidence": {}}}),
            message,
            hints: Vec::new(),
        }
    }

    /// Prints the failure (human lines on stderr, or the JSON object on
    /// stdout with `--json`) and returns the exit code.
    pub fn report(&self, as_json: bool) -> i32 {
        if as_json {
            outln!("{}", self.json);
        } else {
            eprintln!("aerodb: {}", self.message);
            for hint in &self.hints {
                eprintln!("  hint: {hint}");
            }
        }
        self.exit.code()
    }
}

/// `io error text (os error N)` → `io error text`, first letter lower-case.
fn short_cause(detail: &str) -> String {
    let last = detail.rsplit(": ").next().unwrap_or(detail).trim();
    let last = match last.find(" (os error") {
        Some(i) => &last[..i],
        None => last,
    };
    let mut chars = last.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => "no detail".to_string(),
    }
}

/// The error object of a transport failure, in the node's envelope shape.
fn local_error(code: &str, message: &str, evidence: Value) -> Value {
    json!({"error": {"code": code, "rule_id": null, "message": message, "evidence": evidence}})
}

/// A short phrase for the rule a refusal failed, from its evidence.
fn read_refusal_line(e: &ApiError) -> String {
    let rule = e.rule_id.as_deref().unwrap_or("?");
    let ev = &e.evidence;
    let description = ev["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["rule_id"] == rule))
        .and_then(|r| r["description"].as_str())
        .map(|d| format!(": {}", d.trim_end_matches('.')))
        .unwrap_or_default();
    let mut replica = Vec::new();
    if let Some(state) = ev["replica_state"].as_str() {
        replica.push(format!("replica {state}"));
    }
    if let Some(c) = ev["replica_commit_id"].as_u64() {
        replica.push(format!("at CommitId {c}"));
    }
    let mut numbers = Vec::new();
    if !replica.is_empty() {
        numbers.push(replica.join(" "));
    }
    let inputs = &ev["explanation"]["inputs"];
    for (name, flag) in [("min_commit", "--min-commit"), ("requested_at", "--at")] {
        if let Some(v) = inputs[name].as_u64() {
            numbers.push(format!("asked {flag} {v}"));
        }
    }
    let numbers = if numbers.is_empty() { String::new() } else { format!(" ({})", numbers.join(", ")) };
    format!("read refused by {rule}{description}{numbers}")
}

/// Renders a failed call to `node` (the base URL the command was given).
pub fn failure(e: &ClientError, node: Option<&NodeUrl>, api: Api) -> Failure {
    let at = node.map(|n| n.to_string()).unwrap_or_else(|| "the node".to_string());
    match e {
        ClientError::BadUrl { input, reason } => {
            let message = format!("bad node URL {input:?}: {reason}");
            Failure { exit: Exit::BadArguments, json: local_error("BAD_URL", &message, json!({"input": input})), message, hints: Vec::new() }
        }
        ClientError::Unreachable { detail, .. } => {
            let message = format!("cannot reach {at}: {}", short_cause(detail));
            Failure {
                exit: Exit::Unreachable,
                json: local_error("UNREACHABLE", &message, json!({"node": at, "detail": detail})),
                message,
                hints: vec![format!("is the node running at that address? {}", api.port_hint())],
            }
        }
        ClientError::Tls { url, detail } => {
            let message = format!("TLS with {url} failed: {}", short_cause(detail));
            Failure {
                exit: Exit::Failure,
                json: local_error("TLS", &message, json!({"node": at, "url": url, "detail": detail})),
                message,
                hints: vec!["an https:// node is verified against --tls-ca (the CA that signed its --tls-cert) and the host name in the URL; a node without --tls-cert speaks plain http://".to_string()],
            }
        }
        ClientError::Timeout { timeout, .. } => {
            let message = format!("no answer from {at} within {} s", timeout.as_secs_f64());
            Failure {
                exit: Exit::Unreachable,
                json: local_error("TIMEOUT", &message, json!({"node": at, "timeout_ms": timeout.as_millis() as u64})),
                message,
                hints: vec![format!("the node accepted the connection but did not answer; {}", api.port_hint())],
            }
        }
        ClientError::Protocol { status: None, detail, .. } => {
            let message = format!("{at} did not answer HTTP ({})", short_cause(detail));
            Failure {
                exit: Exit::Failure,
                json: local_error("PROTOCOL", &message, json!({"node": at, "detail": detail})),
                message,
                hints: vec![format!(
                    "if this is the primary's replication port (--repl-listen, default {DEFAULT_REPL_PORT}), which only replicas speak: {}",
                    api.port_hint()
                )],
            }
        }
        ClientError::Protocol { status: Some(status), detail, .. } => {
            let message = format!("{at} answered HTTP {status} with something that is not an AeroDB answer");
            Failure {
                exit: Exit::Failure,
                json: local_error("PROTOCOL", &message, json!({"node": at, "status": status, "detail": detail})),
                message,
                hints: vec![format!("is {at} an AeroDB node? {}", api.port_hint())],
            }
        }
        ClientError::Runtime(detail) => {
            let message = format!("internal error: {detail}");
            Failure { exit: Exit::Failure, json: local_error("RUNTIME", &message, json!({})), message, hints: Vec::new() }
        }
        ClientError::Api { status, read_view, error, .. } => api_failure(*status, *read_view, error, &at, api),
    }
}

/// Renders the node's own error envelope.
fn api_failure(status: u16, read_view: Option<u64>, e: &ApiError, at: &str, api: Api) -> Failure {
    let mut json = json!({"error": e});
    if let Some(r) = read_view {
        json["read_view"] = json!(r);
    }
    let rule = e.rule_id.as_deref().map(|r| format!(", {r}")).unwrap_or_default();
    let (exit, message, hints) = match e.kind() {
        ErrorKind::NotFound => {
            let what = match (e.evidence["collection"].as_str(), e.evidence["key"].as_str()) {
                (Some(c), Some(k)) => format!("{c}/{k}"),
                _ => "the document".to_string(),
            };
            let view = read_view.map(|r| format!(" at read view {r}")).unwrap_or_default();
            (Exit::NotFound, format!("not found: {what} has no visible version{view}"), Vec::new())
        }
        ErrorKind::ReadRefused => (
            Exit::ReadRefused,
            read_refusal_line(e),
            vec!["retry later, lower --min-commit or --at, or see why with `aerodb explain replication --dx <the replica's DX address>` (--json prints every rule)".into()],
        ),
        ErrorKind::WriteRejected => {
            let target = match e.evidence["primary_client_addr"].as_str() {
                Some(addr) => format!("send writes to the primary's client API at {addr}"),
                None => "send writes to the primary's client API (its --listen address)".to_string(),
            };
            (Exit::WriteRejected, format!("write rejected (WRITE_REJECTED{rule}): {at} is a replica and never accepts writes; {target}"), Vec::new())
        }
        ErrorKind::PrimaryFenced => (
            Exit::WriteRejected,
            format!("write refused (PRIMARY_FENCED{rule}): {}", e.message),
            vec!["reads keep working; see `aerodb explain replication --dx <the primary's DX address>` and docs/operations.md (\"Fencing\")".into()],
        ),
        ErrorKind::ReplicationHalted => {
            let halt = &e.evidence["halt"];
            let code = halt["code"].as_str().unwrap_or("?");
            let detail = halt["detail"].as_str().map(|d| format!(": {d}")).unwrap_or_default();
            (
                Exit::Halted,
                format!("replica halted ({code}{rule}){detail}; it refuses reads and writes until an operator acts"),
                vec!["see `aerodb explain replication --dx <the replica's DX address>` and docs/operations.md (\"Halt codes\")".into()],
            )
        }
        ErrorKind::BadRequest => (Exit::BadArguments, format!("{} ({}{rule}): {}", "the node refused the request as malformed", e.code, e.message), Vec::new()),
        ErrorKind::WrongEndpoint => (
            Exit::Failure,
            format!("{at} has no such endpoint (HTTP {status} {}): {}", e.code, e.message),
            vec![format!("wrong port? {}", api.port_hint())],
        ),
        ErrorKind::Other => (Exit::Failure, format!("{} ({}{rule}): {}", at, e.code, e.message), Vec::new()),
    };
    Failure { exit, message, hints, json }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::time::Duration;

    fn node() -> NodeUrl {
        NodeUrl::parse("127.0.0.1:7710").unwrap()
    }

    fn api(status: u16, body: Value, read_view: Option<u64>) -> ClientError {
        ClientError::Api { url: "http://127.0.0.1:7710/v1/docs/c/k".into(), status, read_view, error: Box::new(serde_json::from_value(body).unwrap()) }
    }

    /// F-N1: an unreachable node is one short line naming it once, with the root cause and exit code 8.
    #[test]
    fn f_n1_unreachable_is_one_line_without_repeated_prefixes() {
        let e = ClientError::Unreachable {
            url: "http://127.0.0.1:7710/v1/docs/c/k".into(),
            detail: "client error (Connect): tcp connect error: Connection refused (os error 111)".into(),
        };
        let f = failure(&e, Some(&node()), Api::Client);
        assert_eq!(f.exit, Exit::Unreachable);
        assert_eq!(f.message, "cannot reach http://127.0.0.1:7710: connection refused");
        assert_eq!(f.message.matches("cannot reach").count(), 1);
        assert_eq!(f.json["error"]["code"], "UNREACHABLE");
        let t = failure(&ClientError::Timeout { url: "u".into(), timeout: Duration::from_millis(1500) }, Some(&node()), Api::Dx);
        assert_eq!((t.exit, t.message.as_str()), (Exit::Unreachable, "no answer from http://127.0.0.1:7710 within 1.5 s"));
    }

    /// F-N2: a port that does not speak HTTP (the replication port) gets a hint naming the client port.
    #[test]
    fn f_n2_the_replication_port_gets_a_hint_to_use_the_client_port() {
        let e = ClientError::Protocol { url: "u".into(), status: None, detail: "connection closed before message completed".into() };
        let f = failure(&e, Some(&node()), Api::Client);
        assert_eq!(f.exit, Exit::Failure);
        assert_eq!(f.message, "http://127.0.0.1:7710 did not answer HTTP (connection closed before message completed)");
        assert!(f.hints[0].contains("replication port") && f.hints[0].contains("default 7700"), "{:?}", f.hints);
        let wrong = api(404, json!({"code": "NO_SUCH_ENDPOINT", "message": "no such endpoint"}), None);
        let f = failure(&wrong, Some(&node()), Api::Dx);
        assert!(f.hints[0].contains("wrong port") && f.hints[0].contains("7702"), "{:?}", f.hints);
    }

    /// RS-3: a refused read names the failing rule, its wording and the replica's position; exit 5.
    #[test]
    fn rs_3_read_refused_is_short_and_names_the_rule() {
        let e = api(
            503,
            json!({"code": "READ_REFUSED", "rule_id": "RS-3", "message": "read refused: RS-3 does not hold",
                   "evidence": {"replica_commit_id": 4, "replica_state": "Streaming",
                                "rules": [{"rule_id": "RS-3", "description": "min_commit <= C_replica.", "evaluation": false}],
                                "explanation": {"rules_applied": [], "inputs": {"min_commit": 9, "requested_at": null}}}}),
            None,
        );
        let f = failure(&e, Some(&node()), Api::Client);
        assert_eq!(f.exit, Exit::ReadRefused);
        assert_eq!(f.message, "read refused by RS-3: min_commit <= C_replica (replica Streaming at CommitId 4, asked --min-commit 9)");
        assert!(f.message.len() < 200);
        assert_eq!(f.json["error"]["evidence"]["replica_commit_id"], 4, "--json keeps the full answer");
    }

    /// REPL-1: a rejected write says where writes go (the primary's client API) and exits 6.
    #[test]
    fn repl_1_write_rejected_names_the_primary_client_address() {
        let e = api(403, json!({"code": "WRITE_REJECTED", "rule_id": "REPL-1", "message": "m", "evidence": {"primary_client_addr": "10.0.0.1:7700"}}), None);
        let f = failure(&e, Some(&node()), Api::Client);
        assert_eq!(f.exit, Exit::WriteRejected);
        assert!(f.message.ends_with("send writes to the primary's client API at 10.0.0.1:7700"), "{}", f.message);
        let e = api(403, json!({"code": "WRITE_REJECTED", "rule_id": "REPL-1", "message": "m", "evidence": {"primary_client_addr": null}}), None);
        assert!(failure(&e, Some(&node()), Api::Client).message.contains("its --listen address"));
        let fenced = api(503, json!({"code": "PRIMARY_FENCED", "rule_id": "REPL-11", "message": "fenced by r"}), None);
        assert_eq!(failure(&fenced, Some(&node()), Api::Client).exit, Exit::WriteRejected);
    }

    /// MVCC-1: not found names the key and read view; exit 4; halted exits 7; malformed input exits 2.
    #[test]
    fn mvcc_1_not_found_halted_and_bad_input_have_their_own_exit_codes() {
        let e = api(404, json!({"code": "NOT_FOUND", "rule_id": "MVCC-1", "message": "m", "evidence": {"collection": "users", "key": ".."}}), Some(9));
        let f = failure(&e, Some(&node()), Api::Client);
        assert_eq!((f.exit, f.message.as_str()), (Exit::NotFound, "not found: users/.. has no visible version at read view 9"));
        assert_eq!(f.json["read_view"], 9);
        let h = api(
            503,
            json!({"code": "REPLICATION_HALTED", "rule_id": "REPL-1", "message": "m", "evidence": {"halt": {"code": "CLUSTER_MISMATCH", "detail": "other cluster"}}}),
            None,
        );
        let f = failure(&h, Some(&node()), Api::Client);
        assert_eq!(f.exit, Exit::Halted);
        assert!(f.message.starts_with("replica halted (CLUSTER_MISMATCH, REPL-1): other cluster"), "{}", f.message);
        let b = api(400, json!({"code": "BAD_REQUEST", "message": "key too long"}), None);
        assert_eq!(failure(&b, Some(&node()), Api::Client).exit, Exit::BadArguments);
        let u = failure(&ClientError::BadUrl { input: "unix://x".into(), reason: "unsupported scheme".into() }, None, Api::Client);
        assert_eq!((u.exit, u.json["error"]["code"].as_str()), (Exit::BadArguments, Some("BAD_URL")));
    }
}
