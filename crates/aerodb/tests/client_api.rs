#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! The client API contract (INTERFACE.md "Client API") against the real
//! binary: response shapes, read views (MVCC-1, MVCC-3), atomic write sets
//! (MVCC-2), pagination, and the error body.

mod support;

use serde_json::{json, Value};
use support::{assert_error, assert_error_shape, start_node};

/// Keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

/// MVCC-1, CORE-1: PUT, DELETE and GET with and without `at` return exactly
/// the documented shapes; a tombstone or a key not yet written at R is a
/// 404 `{"read_view":R,"error":{...}}`.
#[test]
fn mvcc_1_point_reads_writes_and_deletes_have_the_documented_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());

    let (status, body) = node.put("/v1/docs/users/alice", r#"{"name":"Alice","age":30}"#);
    assert_eq!((status, body.clone()), (200, json!({"commit_id": 1})));
    assert_eq!(node.put("/v1/docs/users/alice", r#"{"name":"Alice","age":31}"#), (200, json!({"commit_id": 2})));

    assert_eq!(node.get("/v1/docs/users/alice"), (200, json!({"read_view": 2, "commit_id": 2, "doc": {"name": "Alice", "age": 31}})));
    assert_eq!(node.get("/v1/docs/users/alice?at=1"), (200, json!({"read_view": 1, "commit_id": 1, "doc": {"name": "Alice", "age": 30}})));

    // Not yet written at R=0.
    let (status, body) = node.get("/v1/docs/users/alice?at=0");
    assert_eq!(status, 404);
    assert_eq!(keys(&body), ["error", "read_view"]);
    assert_eq!(body["read_view"], 0);
    let error = assert_error_shape(&body);
    assert_eq!(error["code"], "NOT_FOUND");
    assert_eq!(error["rule_id"], "MVCC-1");

    assert_eq!(node.delete("/v1/docs/users/alice"), (200, json!({"commit_id": 3})));
    let (status, body) = node.get("/v1/docs/users/alice");
    assert_eq!(status, 404, "a tombstone means not found: {body}");
    assert_eq!(body["read_view"], 3);
    assert_eq!(assert_error_shape(&body)["code"], "NOT_FOUND");
    assert_eq!(node.get("/v1/docs/users/alice?at=2").0, 200, "older views still see the version");

    // Never-written key in an unknown collection.
    let (status, body) = node.get("/v1/docs/nothing/here");
    assert_eq!((status, body["read_view"].clone()), (404, json!(3)));

    // Any JSON value is a document, returned as the same value.
    for (i, doc) in
        [json!(42), json!("text"), json!([1, "two", null]), json!(null), json!({"z": 1, "a": {"nested": [true, false]}}), json!(-1.5)].into_iter().enumerate()
    {
        let cid = node.put_doc("values", &format!("v{i}"), &doc);
        assert_eq!(node.get(&format!("/v1/docs/values/v{i}")), (200, json!({"read_view": cid, "commit_id": cid, "doc": doc})));
    }
    node.stop_clean();
}

/// MVCC-2: POST /v1/commit is one atomic write set with one CommitId:
/// nothing of it at R-1, all of it at R.
#[test]
fn mvcc_2_commit_endpoint_is_one_atomic_write_set() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    node.put_doc("acct", "a", &json!({"balance": 100}));
    let body = json!({"ops": [
        {"op": "put", "collection": "acct", "key": "a", "doc": {"balance": 60}},
        {"op": "put", "collection": "acct", "key": "b", "doc": {"balance": 40}},
        {"op": "put", "collection": "log", "key": "t1", "doc": {"from": "a", "to": "b", "amount": 40}},
    ]});
    assert_eq!(node.post("/v1/commit", &body.to_string()), (200, json!({"commit_id": 2})));
    assert_eq!(node.get("/v1/docs/acct/a?at=1").1["doc"], json!({"balance": 100}));
    assert_eq!(node.get("/v1/docs/acct/b?at=1").0, 404);
    assert_eq!(node.get("/v1/docs/log/t1?at=1").0, 404);
    for (path, doc) in [
        ("/v1/docs/acct/a", json!({"balance": 60})),
        ("/v1/docs/acct/b", json!({"balance": 40})),
        ("/v1/docs/log/t1", json!({"from": "a", "to": "b", "amount": 40})),
    ] {
        assert_eq!(node.get(path), (200, json!({"read_view": 2, "commit_id": 2, "doc": doc})));
    }
    let delete = json!({"ops": [{"op": "delete", "collection": "acct", "key": "b"}, {"op": "put", "collection": "acct", "key": "c", "doc": 1}]});
    assert_eq!(node.post("/v1/commit", &delete.to_string()), (200, json!({"commit_id": 3})));
    assert_eq!(node.get("/v1/docs/acct/b").0, 404);
    assert_eq!(node.get("/v1/docs/acct/c").1["commit_id"], 3);
    node.stop_clean();
}

/// MVCC-1, MVCC-3: range reads return `{"read_view","items":[{"key","commit_id","doc"}],"next"}`,
/// honour start/end/limit, and paginating with `next` and `at` pinned to the
/// first page's view sees one state even while writes continue.
#[test]
fn mvcc_3_range_reads_paginate_on_one_pinned_view() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    let ops: Vec<Value> = (0..12).map(|i| json!({"op": "put", "collection": "items", "key": format!("k{i:02}"), "doc": {"i": i}})).collect();
    assert_eq!(node.post("/v1/commit", &json!({ "ops": ops }).to_string()).1["commit_id"], 1);
    node.delete("/v1/docs/items/k04");
    node.put_doc("other", "k00", &json!("not in items"));

    // Bounds: start inclusive, end exclusive, tombstones skipped.
    let (status, body) = node.get("/v1/docs/items?start=k02&end=k06");
    assert_eq!(status, 200);
    assert_eq!(keys(&body), ["items", "next", "read_view"]);
    assert_eq!(body["read_view"], 3);
    assert_eq!(body["next"], Value::Null);
    assert_eq!(
        body["items"],
        json!([
            {"key": "k02", "commit_id": 1, "doc": {"i": 2}},
            {"key": "k03", "commit_id": 1, "doc": {"i": 3}},
            {"key": "k05", "commit_id": 1, "doc": {"i": 5}},
        ])
    );

    // Paginate at a pinned view while writes happen between pages.
    let first = node.get("/v1/docs/items?limit=4").1;
    let r = first["read_view"].as_u64().unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 4);
    assert_eq!(first["next"], "k05");
    let mut all: Vec<Value> = first["items"].as_array().unwrap().clone();
    let mut next = first["next"].as_str().map(str::to_string);
    let mut page = 0;
    while let Some(start) = next {
        // Writes between pages: new key before the cursor, overwrite and delete after it.
        node.put_doc("items", &format!("k0{page}a"), &json!("new"));
        node.put_doc("items", "k11", &json!({"overwritten": page}));
        node.delete(&format!("/v1/docs/items/k{:02}", 6 + page));
        let body = node.get(&format!("/v1/docs/items?limit=4&start={start}&at={r}")).1;
        assert_eq!(body["read_view"], r, "every page uses the pinned view");
        all.extend(body["items"].as_array().unwrap().iter().cloned());
        next = body["next"].as_str().map(str::to_string);
        page += 1;
    }
    let expected: Vec<Value> = (0..12).filter(|i| *i != 4).map(|i| json!({"key": format!("k{i:02}"), "commit_id": 1, "doc": {"i": i}})).collect();
    assert_eq!(all, expected, "pagination at one view sees exactly the state at R={r}");

    // The head has moved on.
    let head = node.get("/v1/docs/items?limit=1000").1;
    assert!(head["read_view"].as_u64().unwrap() > r);
    assert_ne!(head["items"], json!(expected));

    // `at` on a scan reaches back before the deletion; an empty collection is an empty page.
    let old = node.get("/v1/docs/items?at=1&start=k04&end=k05").1;
    assert_eq!(old["items"], json!([{"key": "k04", "commit_id": 1, "doc": {"i": 4}}]));
    assert_eq!(node.get("/v1/docs/empty").1, json!({"read_view": head["read_view"], "items": [], "next": null}));
    node.stop_clean();
}

/// RS-3 on a primary: a read view beyond C, or a `min_commit` above C, is
/// refused with 503 READ_REFUSED and the numbers; `min_commit` at or below C
/// is admitted.
#[test]
fn rs_3_read_beyond_the_applied_commit_is_refused_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    node.put_doc("c", "k", &json!(1));
    let resp = node.get("/v1/docs/c/k?at=2");
    assert_error(&resp, 503, "READ_REFUSED");
    assert_eq!(resp.1["error"]["rule_id"], "RS-3");
    assert_eq!(resp.1["error"]["evidence"]["commit_id"], 1);
    let resp = node.get("/v1/docs/c?at=9");
    assert_error(&resp, 503, "READ_REFUSED");
    let resp = node.get("/v1/docs/c/k?min_commit=5");
    assert_error(&resp, 503, "READ_REFUSED");
    assert_eq!(resp.1["error"]["rule_id"], "RS-3");
    assert_eq!(node.get("/v1/docs/c/k?min_commit=1"), (200, json!({"read_view": 1, "commit_id": 1, "doc": 1})));
    node.stop_clean();
}

/// Error body contract: unknown endpoints and wrong methods answer with the
/// documented `{"error":{"code","rule_id","message","evidence"}}` body.
#[test]
fn error_body_shape_for_unknown_endpoints_and_methods() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    assert_error(&node.get("/v2/nothing"), 404, "NO_SUCH_ENDPOINT");
    assert_error(&node.get("/v1/commit"), 405, "METHOD_NOT_ALLOWED");
    assert_error(&node.post("/v1/docs/c/k", "1"), 405, "METHOD_NOT_ALLOWED");
    assert_error(&node.put("/v1/docs/c", "1"), 405, "METHOD_NOT_ALLOWED");
    assert_eq!(node.commit_id(), 0, "nothing was written");
    node.stop_clean();
}
