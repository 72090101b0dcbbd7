//! Typed errors: the server's error envelope as a value ([`ApiError`]), and
//! one [`ClientError`] variant per way a call can fail before or without one.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The error object every AeroDB refusal carries:
/// `{"error":{"code","rule_id","message","evidence"}}` (INTERFACE.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code, e.g. `READ_REFUSED`.
    pub code: String,
    /// The rule enforced (e.g. `RS-3`), when one applies.
    #[serde(default)]
    pub rule_id: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Structured evidence (numbers and states).
    #[serde(default)]
    pub evidence: Value,
}

/// The well-known error codes of INTERFACE.md, for matching without string
/// compares. Anything else is [`ErrorKind::Other`]; the code string in
/// [`ApiError::code`] stays authoritative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `NOT_FOUND`: no version visible at the read view (404).
    NotFound,
    /// `READ_REFUSED`: the read-safety gate refused the read (503).
    ReadRefused,
    /// `WRITE_REJECTED`: a write sent to a replica or halted node (403).
    WriteRejected,
    /// `REPLICATION_HALTED`: the node is halted (503).
    ReplicationHalted,
    /// `PRIMARY_FENCED`: the primary refuses writes (503, REPL-11).
    PrimaryFenced,
    /// A malformed request: `BAD_REQUEST`, `BAD_JSON`, `DOC_TOO_LARGE`,
    /// `BODY_TOO_LARGE`, invalid names, ... (400/413).
    BadRequest,
    /// `NO_SUCH_ENDPOINT` / `METHOD_NOT_ALLOWED`: probably the wrong port
    /// (client API vs DX API vs replication port).
    WrongEndpoint,
    /// Any other code.
    Other,
}

impl ApiError {
    /// The kind of a well-known code.
    pub fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            "NOT_FOUND" => ErrorKind::NotFound,
            "READ_REFUSED" => ErrorKind::ReadRefused,
            "WRITE_REJECTED" => ErrorKind::WriteRejected,
            "REPLICATION_HALTED" => ErrorKind::ReplicationHalted,
            "PRIMARY_FENCED" => ErrorKind::PrimaryFenced,
            "NO_SUCH_ENDPOINT" | "METHOD_NOT_ALLOWED" => ErrorKind::WrongEndpoint,
            "DOC_TOO_LARGE" | "BODY_TOO_LARGE" | "TOO_MANY_OPS" | "WRITE_SET_TOO_LARGE" => ErrorKind::BadRequest,
            c if c.starts_with("BAD_") => ErrorKind::BadRequest,
            _ => ErrorKind::Other,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule_id {
            Some(rule) => write!(f, "{} ({rule}): {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node URL is not one this client can use (nothing was sent).
    #[error("bad node URL {input:?}: {reason}")]
    BadUrl {
        /// What was given.
        input: String,
        /// Why it is refused.
        reason: String,
    },
    /// No TCP connection could be made (refused, unroutable, DNS failure,
    /// connect timeout).
    #[error("cannot reach {url}: {detail}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The underlying reason, one line.
        detail: String,
    },
    /// No complete answer within the request timeout.
    #[error("no answer from {url} within {timeout:?}")]
    Timeout {
        /// The request URL.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The peer did not speak the expected HTTP/JSON (connection closed
    /// mid-answer, not JSON, wrong shape, oversize answer, not an AeroDB
    /// endpoint).
    #[error("unexpected answer from {url}{}: {detail}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Protocol {
        /// The request URL.
        url: String,
        /// HTTP status, when a response head arrived.
        status: Option<u16>,
        /// What was wrong, one line.
        detail: String,
    },
    /// The node answered with its error envelope.
    #[error("{url} answered HTTP {status}: {error}")]
    Api {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The read view R, for refusals of reads that carry one (404 NOT_FOUND).
        read_view: Option<u64>,
        /// The error object (boxed: keeps `Result<_, ClientError>` small).
        error: Box<ApiError>,
    },
    /// The blocking facade was used where it cannot run (inside an async
    /// runtime), or its runtime could not be created.
    #[error("blocking client: {0}")]
    Runtime(String),
    /// TLS failed: the CA file is unusable, or the node's certificate does
    /// not verify against it (wrong CA, wrong host name), or the node does
    /// not speak TLS on that port.
    #[error("TLS with {url}: {detail}")]
    Tls {
        /// The request URL (or the CA file for a configuration error).
        url: String,
        /// What failed, one line.
        detail: String,
    },
}

impl ClientError {
    /// A stable code: the server's code for [`ClientError::Api`], otherwise
    /// `BAD_URL`, `UNREACHABLE`, `TIMEOUT`, `PROTOCOL`, `RUNTIME` or `TLS`.
    pub fn code(&self) -> &str {
        match self {
            ClientError::BadUrl { .. } => "BAD_URL",
            ClientError::Unreachable { .. } => "UNREACHABLE",
            ClientError::Timeout { .. } => "TIMEOUT",
            ClientError::Protocol { .. } => "PROTOCOL",
            ClientError::Api { error, .. } => &error.code,
            ClientError::Runtime(_) => "RUNTIME",
            ClientError::Tls { .. } => "TLS",
        }
    }

    /// The rule the server cited, if any.
    pub fn rule_id(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => error.rule_id.as_deref(),
            _ => None,
        }
    }

    /// The server's error object, if the node answered with one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api { error, .. } => Some(error.as_ref()),
            _ => None,
        }
    }

    /// The kind of the server's error, if the node answered with one.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.api_error().map(ApiError::kind)
    }

    /// Whether this is a 404 `NOT_FOUND` for a read.
    pub fn is_not_found(&self) -> bool {
        self.kind() == Some(ErrorKind::NotFound)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    /// RS-3: a refused read surfaces as a typed value with code, rule and evidence.
    #[test]
    fn rs_3_error_envelope_parses_into_a_typed_value() {
        let body = json!({"code": "READ_REFUSED", "rule_id": "RS-3", "message": "min_commit 9 is above 4", "evidence": {"min_commit": 9, "commit_id": 4}});
        let e: ApiError = serde_json::from_value(body).unwrap();
        assert_eq!(e.kind(), ErrorKind::ReadRefused);
        assert_eq!(e.rule_id.as_deref(), Some("RS-3"));
        assert_eq!(e.evidence["commit_id"], 4);
        assert_eq!(e.to_string(), "READ_REFUSED (RS-3): min_commit 9 is above 4");
        let err = ClientError::Api { url: "http://h:1/x".into(), status: 503, read_view: None, error: Box::new(e) };
        assert_eq!((err.code(), err.rule_id(), err.is_not_found()), ("READ_REFUSED", Some("RS-3"), false));
    }

    #[test]
    fn well_known_codes_have_kinds_and_unknown_codes_stay_strings() {
        let kind = |c: &str| ApiError { code: c.into(), rule_id: None, message: String::new(), evidence: Value::Null }.kind();
        assert_eq!(kind("NOT_FOUND"), ErrorKind::NotFound);
        assert_eq!(kind("WRITE_REJECTED"), ErrorKind::WriteRejected);
        assert_eq!(kind("REPLICATION_HALTED"), ErrorKind::ReplicationHalted);
        assert_eq!(kind("PRIMARY_FENCED"), ErrorKind::PrimaryFenced);
        assert_eq!(kind("BAD_JSON"), ErrorKind::BadRequest);
        assert_eq!(kind("DOC_TOO_LARGE"), ErrorKind::BadRequest);
        assert_eq!(kind("TOO_MANY_OPS"), ErrorKind::BadRequest);
        assert_eq!(kind("NO_SUCH_ENDPOINT"), ErrorKind::WrongEndpoint);
        assert_eq!(kind("SOMETHING_NEW"), ErrorKind::Other);
        let minimal: ApiError = serde_json::from_value(json!({"code": "X"})).unwrap();
        assert_eq!((minimal.rule_id, minimal.message.as_str(), minimal.evidence), (None, "", Value::Null));
    }

    #[test]
    fn transport_errors_have_distinct_codes() {
        let url = || "http://h:1/v1".to_string();
        assert_eq!(ClientError::Unreachable { url: url(), detail: "refused".into() }.code(), "UNREACHABLE");
        assert_eq!(ClientError::Timeout { url: url(), timeout: Duration::from_secs(1) }.code(), "TIMEOUT");
        let p = ClientError::Protocol { url: url(), status: Some(200), detail: "not JSON".into() };
        assert_eq!(p.code(), "PROTOCOL");
        assert_eq!(p.to_string(), "unexpected answer from http://h:1/v1 (HTTP 200): not JSON");
        assert_eq!(ClientError::Runtime("x".into()).code(), "RUNTIME");
        assert!(ClientError::Runtime("x".into()).api_error().is_none());
    }
}
