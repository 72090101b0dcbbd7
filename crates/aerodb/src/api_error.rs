//! The one error body every client-facing refusal uses:
//! `{"error":{"code","rule_id","message","evidence"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// An error answer with a stable code, optional rule ID and evidence.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Rule enforced, if any.
    pub rule_id: Option<&'static str>,
    /// Human-readable message.
    pub message: String,
    /// Structured evidence (numbers, states).
    pub evidence: Value,
}

impl ApiError {
    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code, rule_id: None, message: message.into(), evidence: json!({}) }
    }
    /// Any status.
    pub fn new(status: StatusCode, code: &'static str, rule_id: Option<&'static str>, message: impl Into<String>, evidence: Value) -> Self {
        ApiError { status, code, rule_id, message: message.into(), evidence }
    }
    /// The error object, fields in the documented order.
    pub fn error_object(&self) -> ErrorObject<'_> {
        ErrorObject { code: self.code, rule_id: self.rule_id, message: &self.message, evidence: &self.evidence }
    }
    /// The JSON body `{"error": {...}}`.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody { error: self.error_object() }
    }
}

/// `{"code","rule_id","message","evidence"}` in this order.
#[derive(serde::Serialize)]
pub struct ErrorObject<'a> {
    code: &'static str,
    rule_id: Option<&'static str>,
    message: &'a str,
    evidence: &'a Value,
}

/// `{"error": ErrorObject}`.
#[derive(serde::Serialize)]
pub struct ErrorBody<'a> {
    error: ErrorObject<'a>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<aerodb_mvcc::InputError> for ApiError {
    fn from(e: aerodb_mvcc::InputError) -> Self {
        let evidence = serde_json::to_value(&e).unwrap_or(Value::Null);
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), None, e.to_string(), evidence)
    }
}
