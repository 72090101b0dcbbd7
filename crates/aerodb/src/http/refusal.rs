//! Requests refused because a bound was reached (RES-3): one typed enum,
//! each with its HTTP status, stable code, rule and evidence. The client API
//! answers them in its error body, the DX API in its envelope.

use axum::http::StatusCode;
use serde_json::{json, Value};
use thiserror::Error;

use crate::api_error::ApiError;

/// The rule every bound enforces.
pub const RULE: &str = "RES-3";

/// A request or connection refused at a bound.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum LimitRefusal {
    /// The surface already has its maximum of open connections.
    #[error("this port already has {max} open connections (its maximum); try again later")]
    TooManyConnections {
        /// The cap.
        max: usize,
    },
    /// The request line is longer than allowed.
    #[error("request line of {bytes}+ bytes exceeds the URL limit of {max} bytes")]
    UriTooLong {
        /// Bytes seen (at least).
        bytes: usize,
        /// The limit on the request target.
        max: usize,
    },
    /// The header section is larger than allowed.
    #[error("request headers of {bytes}+ bytes exceed the limit of {max} bytes")]
    HeadersTooLarge {
        /// Bytes seen (at least).
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// More header lines than allowed.
    #[error("request has more than {max} header lines")]
    TooManyHeaders {
        /// The limit.
        max: usize,
    },
    /// The head is not valid HTTP/1.
    #[error("malformed HTTP request: {detail}")]
    BadHttp {
        /// What is wrong.
        detail: String,
    },
    /// The head did not arrive in time.
    #[error("the request head did not arrive within {timeout_ms} ms")]
    HeaderTimeout {
        /// The limit.
        timeout_ms: u64,
    },
    /// The body is larger than this endpoint accepts.
    #[error("request body of {} bytes exceeds the limit of {max} bytes", bytes.map_or_else(|| "more".to_string(), |b| b.to_string()))]
    BodyTooLarge {
        /// Declared or received size, when known.
        bytes: Option<u64>,
        /// The endpoint's limit.
        max: usize,
    },
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    BodyTimeout {
        /// The limit.
        timeout_ms: u64,
    },
    /// Request bodies in flight already use the node-wide budget.
    #[error("{in_flight} bytes of request bodies are in flight; {requested} more would exceed the node's budget of {budget}; try again later")]
    BodyBudgetExhausted {
        /// Bytes this request needs.
        requested: u64,
        /// Bytes held by other requests.
        in_flight: u64,
        /// The budget.
        budget: usize,
    },
    /// Too many reads are already waiting for `min_commit`.
    #[error("{max} reads are already waiting for a CommitId (the maximum); retry without wait_ms or later")]
    TooManyWaitingReads {
        /// The cap.
        max: usize,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

impl LimitRefusal {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            LimitRefusal::TooManyConnections { .. } => "TOO_MANY_CONNECTIONS",
            LimitRefusal::UriTooLong { .. } => "URI_TOO_LONG",
            LimitRefusal::HeadersTooLarge { .. } | LimitRefusal::TooManyHeaders { .. } => "HEADERS_TOO_LARGE",
            LimitRefusal::BadHttp { .. } => "BAD_HTTP_REQUEST",
            LimitRefusal::HeaderTimeout { .. } => "HEADER_TIMEOUT",
            LimitRefusal::BodyTooLarge { .. } => "BODY_TOO_LARGE",
            LimitRefusal::BodyTimeout { .. } => "BODY_TIMEOUT",
            LimitRefusal::BodyBudgetExhausted { .. } => "BODY_BUDGET_EXHAUSTED",
            LimitRefusal::TooManyWaitingReads { .. } => "TOO_MANY_WAITING_READS",
            LimitRefusal::ShuttingDown => "SHUTTING_DOWN",
        }
    }

    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            LimitRefusal::TooManyConnections { .. }
            | LimitRefusal::BodyBudgetExhausted { .. }
            | LimitRefusal::TooManyWaitingReads { .. }
            | LimitRefusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            LimitRefusal::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            LimitRefusal::HeadersTooLarge { .. } | LimitRefusal::TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            LimitRefusal::BadHttp { .. } => StatusCode::BAD_REQUEST,
            LimitRefusal::HeaderTimeout { .. } | LimitRefusal::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            LimitRefusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// Structured evidence: the numbers of the bound.
    pub fn evidence(&self) -> Value {
        match self {
            LimitRefusal::TooManyConnections { max } => json!({"max_connections": max}),
            LimitRefusal::UriTooLong { bytes, max } => json!({"request_line_bytes_at_least": bytes, "max_url_bytes": max}),
            LimitRefusal::HeadersTooLarge { bytes, max } => json!({"header_bytes_at_least": bytes, "max_header_bytes": max}),
            LimitRefusal::TooManyHeaders { max } => json!({"max_header_count": max}),
            LimitRefusal::BadHttp { detail } => json!({"detail": detail}),
            LimitRefusal::HeaderTimeout { timeout_ms } => json!({"header_timeout_ms": timeout_ms}),
            LimitRefusal::BodyTooLarge { bytes, max } => json!({"body_bytes": bytes, "max_body_bytes": max}),
            LimitRefusal::BodyTimeout { timeout_ms } => json!({"body_timeout_ms": timeout_ms}),
            LimitRefusal::BodyBudgetExhausted { requested, in_flight, budget } => {
                json!({"requested_bytes": requested, "in_flight_bytes": in_flight, "body_budget_bytes": budget})
            }
            LimitRefusal::TooManyWaitingReads { max } => json!({"max_waiting_reads": max}),
            LimitRefusal::ShuttingDown => json!({}),
        }
    }

    /// Every code, in a fixed order (rejection counters list them all).
    pub const CODES: [&'static str; 10] = [
        "TOO_MANY_CONNECTIONS",
        "URI_TOO_LONG",
        "HEADERS_TOO_LARGE",
        "BAD_HTTP_REQUEST",
        "HEADER_TIMEOUT",
        "BODY_TOO_LARGE",
        "BODY_TIMEOUT",
        "BODY_BUDGET_EXHAUSTED",
        "TOO_MANY_WAITING_READS",
        "SHUTTING_DOWN",
    ];
}

impl From<LimitRefusal> for ApiError {
    fn from(r: LimitRefusal) -> Self {
        ApiError::new(r.status(), r.code(), Some(RULE), r.to_string(), r.evidence())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RES-3: every refusal has a listed code, a 4xx/5xx status, and an
    /// evidence object.
    #[test]
    fn res_3_every_refusal_has_a_listed_code_status_and_evidence() {
        let all = [
            LimitRefusal::TooManyConnections { max: 1 },
            LimitRefusal::UriTooLong { bytes: 2, max: 1 },
            LimitRefusal::HeadersTooLarge { bytes: 2, max: 1 },
            LimitRefusal::TooManyHeaders { max: 1 },
            LimitRefusal::BadHttp { detail: "x".into() },
            LimitRefusal::HeaderTimeout { timeout_ms: 1 },
            LimitRefusal::BodyTooLarge { bytes: None, max: 1 },
            LimitRefusal::BodyTimeout { timeout_ms: 1 },
            LimitRefusal::BodyBudgetExhausted { requested: 1, in_flight: 1, budget: 1 },
            LimitRefusal::TooManyWaitingReads { max: 1 },
            LimitRefusal::ShuttingDown,
        ];
        for r in all {
            assert!(LimitRefusal::CODES.contains(&r.code()), "{r:?}");
            assert!(r.status().is_client_error() || r.status().is_server_error());
            assert!(r.evidence().is_object());
            let e = ApiError::from(r);
            assert_eq!(e.rule_id, Some(RULE));
        }
    }
}
