//! Parsing what a client sends to the client API (INTERFACE.md "Client
//! API"), before anything is stored: `/v1/commit` bodies, documents, and
//! the query parameters of reads and range reads. Every function is total:
//! any input gives a value or an [`ApiError`] with a stable code, never a
//! panic. Bodies arrive here already bounded in size
//! (`crate::http` in the binary checks them before reading).
//!
//! The node's handlers and the fuzz targets (`fuzz/`) both call these.

use std::collections::HashMap;

use aerodb_mvcc::{ClientOp, InputError, WriteLimits};
use aerodb_wal::CommitId;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api_error::ApiError;
use crate::canonical::canonical_json;

/// Longest a read may wait for `min_commit` (bounded; waiting never
/// changes what is admitted).
pub const MAX_WAIT_MS: u64 = 30_000;
/// Default page size of range reads.
pub const DEFAULT_SCAN_LIMIT: usize = 100;
/// Largest page size of range reads.
pub const MAX_SCAN_LIMIT: usize = 1000;
/// Longest parser detail quoted in an error message: a refusal never
/// echoes a client's megabytes back (the detail of a JSON error can
/// quote the offending text).
pub const MAX_ERROR_DETAIL_BYTES: usize = 512;

/// A read request's view parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// Explicit read view R (`at`).
    pub at: Option<CommitId>,
    /// CommitId the client must see (`min_commit`).
    pub min_commit: Option<CommitId>,
    /// How long to wait for `min_commit`, in milliseconds.
    pub wait_ms: u64,
}

/// A range read's parameters (besides the collection in the path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanRequest {
    /// The read view parameters.
    pub read: ReadRequest,
    /// First key (inclusive), if given.
    pub start: Option<String>,
    /// End key (exclusive), if given.
    pub end: Option<String>,
    /// Page size, 1..=[`MAX_SCAN_LIMIT`].
    pub limit: usize,
}

/// `detail` cut to at most [`MAX_ERROR_DETAIL_BYTES`] on a character boundary.
pub fn bounded_detail(detail: &str) -> String {
    if detail.len() <= MAX_ERROR_DETAIL_BYTES {
        return detail.to_string();
    }
    let mut end = MAX_ERROR_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &detail[..end], detail.len())
}

/// Canonical bytes of one document, refused above the document limit.
pub fn canonical_doc(text: &[u8], max_doc_bytes: usize) -> Result<Bytes, ApiError> {
    let doc = canonical_json(text).map_err(|e| ApiError::bad_request("BAD_JSON", format!("body is not valid JSON: {}", bounded_detail(&e.to_string()))))?;
    if doc.len() > max_doc_bytes {
        return Err(InputError::DocTooLarge { size: doc.len(), max: max_doc_bytes }.into());
    }
    Ok(Bytes::from(doc))
}

/// A `/v1/commit` body. Documents stay raw slices of the body until each is
/// canonicalised in turn.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody<'a> {
    #[serde(borrow)]
    ops: Vec<RawOp<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOp<'a> {
    op: String,
    collection: String,
    key: String,
    #[serde(borrow, default)]
    doc: RawDoc<'a>,
}

/// A `doc` field: absent, or any JSON value (`null` included) kept raw.
#[derive(Default)]
struct RawDoc<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for RawDoc<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(|raw| RawDoc(Some(raw)))
    }
}

/// Parses a `/v1/commit` body into client ops: the op count is checked
/// before any document is touched, then documents are canonicalised one at
/// a time (each refused above the document limit as soon as it is seen).
/// Names and write-set totals are checked afterwards, by the write path.
pub fn parse_commit(bytes: &[u8], limits: &WriteLimits) -> Result<Vec<ClientOp>, ApiError> {
    let bad = |detail: String| ApiError::bad_request("BAD_REQUEST", format!("invalid commit body: {}", bounded_detail(&detail)));
    let parsed: CommitBody<'_> = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if parsed.ops.len() > limits.max_ops {
        return Err(InputError::TooManyOps { count: parsed.ops.len(), max: limits.max_ops }.into());
    }
    let mut ops = Vec::with_capacity(parsed.ops.len());
    for (i, op) in parsed.ops.into_iter().enumerate() {
        let RawOp { op, collection, key, doc } = op;
        ops.push(match (op.as_str(), doc.0) {
            ("put", Some(raw)) => ClientOp::Put { collection, key, doc: canonical_doc(raw.get().as_bytes(), limits.max_doc_bytes)? },
            ("put", None) => return Err(bad(format!("op {i}: put needs a doc"))),
            ("delete", None) => ClientOp::Delete { collection, key },
            ("delete", Some(_)) => return Err(bad(format!("op {i}: delete takes no doc"))),
            (other, _) => return Err(bad(format!("op {i}: unknown op {other:?}, expected put or delete"))),
        });
    }
    Ok(ops)
}

fn parse_u64(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|v| v.parse::<u64>().map_err(|_| ApiError::bad_request("BAD_REQUEST", format!("query parameter {name} must be an unsigned integer"))))
        .transpose()
}

/// The read view parameters of a point or range read: `at`, `min_commit`
/// and `wait_ms` (at most [`MAX_WAIT_MS`]).
pub fn read_request(params: &HashMap<String, String>) -> Result<ReadRequest, ApiError> {
    let wait_ms = parse_u64(params, "wait_ms")?.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request("BAD_REQUEST", format!("wait_ms is limited to {MAX_WAIT_MS}")));
    }
    Ok(ReadRequest { at: parse_u64(params, "at")?, min_commit: parse_u64(params, "min_commit")?, wait_ms })
}

/// The parameters of a range read: the read view, `start`, `end` and
/// `limit` (1..=[`MAX_SCAN_LIMIT`], default [`DEFAULT_SCAN_LIMIT`]).
pub fn scan_request(params: &HashMap<String, String>) -> Result<ScanRequest, ApiError> {
    let read = read_request(params)?;
    let limit = parse_u64(params, "limit")?.map_or(DEFAULT_SCAN_LIMIT, |l| usize::try_from(l).unwrap_or(usize::MAX));
    if limit == 0 || limit > MAX_SCAN_LIMIT {
        return Err(ApiError::bad_request("BAD_REQUEST", format!("limit must be 1..={MAX_SCAN_LIMIT}")));
    }
    Ok(ScanRequest { read, start: params.get("start").cloned(), end: params.get("end").cloned(), limit })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// §11 / RES-3: a commit body's ops are checked in order; `null` is a
    /// document; unknown ops, a put without a doc and a delete with one are
    /// refused; too many ops are refused before any document is parsed.
    #[test]
    fn res_3_commit_body_parses_raw_documents_one_at_a_time() {
        let limits = WriteLimits::default();
        let body = br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":{"z":1, "a" : [ 1.0 ]}},{"op":"put","collection":"c","key":"n","doc":null},{"op":"delete","collection":"c","key":"b"}]}"#;
        let ops = parse_commit(body, &limits).unwrap();
        assert_eq!(
            ops,
            vec![
                ClientOp::Put { collection: "c".into(), key: "a".into(), doc: Bytes::from_static(br#"{"a":[1.0],"z":1}"#) },
                ClientOp::Put { collection: "c".into(), key: "n".into(), doc: Bytes::from_static(b"null") },
                ClientOp::Delete { collection: "c".into(), key: "b".into() },
            ]
        );
        for bad in [
            &br#"{"ops":[{"op":"put","collection":"c","key":"k"}]}"#[..],
            br#"{"ops":[{"op":"delete","collection":"c","key":"k","doc":1}]}"#,
            br#"{"ops":[{"op":"upsert","collection":"c","key":"k","doc":1}]}"#,
            br#"{"ops":[],"more":1}"#,
        ] {
            assert_eq!(parse_commit(bad, &limits).unwrap_err().code, "BAD_REQUEST");
        }
        let small = WriteLimits { max_ops: 1, ..limits };
        let two = br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":[}, {"op":"delete","collection":"c","key":"b"}]}"#;
        assert_eq!(parse_commit(two, &small).unwrap_err().code, "BAD_REQUEST", "malformed JSON is refused as a whole");
        let two = br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":1}, {"op":"delete","collection":"c","key":"b"}]}"#;
        assert_eq!(parse_commit(two, &small).unwrap_err().code, "TOO_MANY_OPS");
        let tiny = WriteLimits { max_doc_bytes: 3, ..limits };
        assert_eq!(parse_commit(br#"{"ops":[{"op":"put","collection":"c","key":"a","doc":"long"}]}"#, &tiny).unwrap_err().code, "DOC_TOO_LARGE");
    }

    /// RES-3: a refusal quotes at most a bounded piece of what the client
    /// sent (an unknown 1 MiB field name or op is not echoed back whole).
    #[test]
    fn res_3_refusals_quote_client_input_boundedly() {
        let limits = WriteLimits::default();
        let huge = "x".repeat(1024 * 1024);
        for body in [
            format!(r#"{{"ops":[{{"op":"{huge}","collection":"c","key":"k"}}]}}"#),
            format!(r#"{{"ops":[{{"op":"put","collection":"c","key":"k","doc":1,"{huge}":1}}]}}"#),
            format!(r#"{{"ops":[{{"op":"put","collection":"c","key":"k","doc":{{"a":"{huge}}}}}]}}"#),
        ] {
            let e = parse_commit(body.as_bytes(), &limits).unwrap_err();
            assert_eq!(e.code, "BAD_REQUEST");
            assert!(e.message.len() < 2 * MAX_ERROR_DETAIL_BYTES, "{} bytes", e.message.len());
        }
        let e = canonical_doc(format!("\"{huge}").as_bytes(), usize::MAX).unwrap_err();
        assert!(e.message.len() < 2 * MAX_ERROR_DETAIL_BYTES);
        assert_eq!(bounded_detail("é".repeat(400).as_str()).len(), 512 + "... (800 bytes)".len());
    }

    /// §11: query parameters are unsigned integers within their bounds.
    #[test]
    fn res_3_read_and_scan_parameters_are_bounded() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        assert_eq!(
            read_request(&q(&[("at", "5"), ("min_commit", "3"), ("wait_ms", "10")])).unwrap(),
            ReadRequest { at: Some(5), min_commit: Some(3), wait_ms: 10 }
        );
        for bad in [&[("at", "-1")][..], &[("wait_ms", "30001")], &[("min_commit", "1e3")], &[("at", "18446744073709551616")]] {
            assert_eq!(read_request(&q(bad)).unwrap_err().code, "BAD_REQUEST");
        }
        assert_eq!(scan_request(&q(&[])).unwrap().limit, DEFAULT_SCAN_LIMIT);
        for bad in ["0", "1001", "18446744073709551615", "x"] {
            assert_eq!(scan_request(&q(&[("limit", bad)])).unwrap_err().code, "BAD_REQUEST");
        }
    }
}
