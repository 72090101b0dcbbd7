//! Client read requests (INTERFACE.md "Client API", §11): a request target
//! `path?query` is split as the router does, each path segment is
//! percent-decoded (as axum's `Path` does) and checked as a collection or
//! key name, and the query string is decoded (as axum's `Query` does) and
//! read by `read_request` and `scan_request`. Properties: never a panic;
//! refusals are `BAD_REQUEST`; accepted values are within their bounds
//! (`wait_ms` ≤ 30000, `limit` 1..=1000) and equal to what the query said.
#![no_main]

use std::collections::HashMap;

use aerodb::request::{read_request, scan_request, MAX_SCAN_LIMIT, MAX_WAIT_MS};
use aerodb_mvcc::input::validate_name;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else { return };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    for segment in path.split('/') {
        if let Ok(name) = percent_encoding::percent_decode_str(segment).decode_utf8() {
            match validate_name("key", &name) {
                Ok(()) => assert!(!name.is_empty() && name.len() <= 255 && !name.contains('/')),
                Err(e) => assert_eq!(e.code(), "BAD_REQUEST"),
            }
        }
    }
    let Ok(params) = serde_urlencoded::from_str::<HashMap<String, String>>(query) else { return };
    let number = |k: &str| params.get(k).map(|v| v.parse::<u64>());
    match read_request(&params) {
        Ok(r) => {
            assert!(r.wait_ms <= MAX_WAIT_MS);
            assert_eq!(r.at.map(Ok), number("at"));
            assert_eq!(r.min_commit.map(Ok), number("min_commit"));
        }
        Err(e) => assert_eq!(e.code, "BAD_REQUEST"),
    }
    match scan_request(&params) {
        Ok(s) => {
            assert!((1..=MAX_SCAN_LIMIT).contains(&s.limit));
            assert_eq!(s.start.as_ref(), params.get("start"));
            assert_eq!(s.end.as_ref(), params.get("end"));
            assert_eq!(Ok(s.read), read_request(&params).map_err(|e| e.code));
        }
        Err(e) => assert_eq!(e.code, "BAD_REQUEST"),
    }
});
