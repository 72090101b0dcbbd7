#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! §11 bad input against the real binary: every malformed request gets a
//! clear error with a stable code and the documented body; nothing is
//! stored (the CommitId does not advance, the WAL gains no record) and the
//! node keeps serving.

mod support;

use serde_json::{json, Value};
use support::{assert_error, start_node, wal_dump, Node};

/// Request body limit the node enforces (16 MiB write set + 64 KiB slack).
const MAX_BODY: usize = 16 * 1024 * 1024 + 64 * 1024;

/// Writes one document so there is state to protect, and returns C.
fn seed(node: &Node) -> u64 {
    node.put_doc("c", "existing", &json!({"v": 1}))
}

/// Nothing was stored: C is unchanged, the existing document is intact, and
/// the next valid write gets C+1.
fn assert_nothing_stored_and_still_serving(node: &Node, c: u64) {
    assert_eq!(node.commit_id(), c, "a refused request must not advance the CommitId");
    assert_eq!(node.get("/v1/docs/c/existing"), (200, json!({"read_view": c, "commit_id": 1, "doc": {"v": 1}})));
    assert_eq!(node.put_doc("c", "after", &json!("ok")), c + 1, "the node keeps serving");
}

/// §11: bodies that are not valid JSON, and /v1/commit bodies with unknown
/// ops, unknown fields, missing or empty op lists, are refused with 400.
#[test]
fn bad_input_malformed_json_and_commit_bodies_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    let c = seed(&node);

    assert_error(&node.put("/v1/docs/c/k", r#"{"a":"#), 400, "BAD_JSON");
    assert_error(&node.put("/v1/docs/c/k", ""), 400, "BAD_JSON");
    assert_error(&node.put("/v1/docs/c/k", "{\"a\":1} trailing"), 400, "BAD_JSON");
    let commit_bodies = [
        r#"{"ops":[{"op":"upsert","collection":"c","key":"k","doc":1}]}"#,
        r#"{"ops":[{"op":"put","collection":"c","key":"k","doc":1,"extra":true}]}"#,
        r#"{"ops":[{"op":"put","collection":"c","key":"k"}]}"#,
        r#"{"ops":[{"collection":"c","key":"k","doc":1}]}"#,
        r#"{"ops":{"op":"put"}}"#,
        r#"{"nope":[]}"#,
        r#"{"ops":[]}"#,
        r#"[1,2,3]"#,
        "not json",
        r#"{"ops":[{"op":"put","collection":"c","key":"k","doc":1},{"op":"delete","collection":"c","key":"k"}]}"#,
    ];
    for body in commit_bodies {
        assert_error(&node.post("/v1/commit", body), 400, "BAD_REQUEST");
    }
    assert_nothing_stored_and_still_serving(&node, c);
    node.stop_clean();
}

/// §11: collection and key are 1..=255 bytes of UTF-8 without '/': a
/// percent-encoded '/', 256 bytes, an empty name and invalid UTF-8 are
/// refused on writes and reads.
#[test]
fn bad_input_bad_collection_and_key_names_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    let c = seed(&node);
    let long = "k".repeat(256);

    for path in [
        "/v1/docs/c/a%2Fb",
        "/v1/docs/a%2Fb/k",
        "/v1/docs/c/%2F",
        &format!("/v1/docs/c/{long}"),
        &format!("/v1/docs/{long}/k"),
        "/v1/docs//k",
        "/v1/docs/c/%FF",
    ] {
        assert_error(&node.put(path, "1"), 400, "BAD_REQUEST");
        assert_error(&node.delete(path), 400, "BAD_REQUEST");
        assert_error(&node.get(path), 400, "BAD_REQUEST");
    }
    for path in ["/v1/docs/a%2Fb", &format!("/v1/docs/{long}")] {
        assert_error(&node.get(path), 400, "BAD_REQUEST");
    }
    for (collection, key) in [("c", ""), ("", "k"), ("c", "a/b"), ("a/b", "k"), ("c", long.as_str())] {
        let body = json!({"ops": [{"op": "put", "collection": collection, "key": key, "doc": 1}]});
        assert_error(&node.post("/v1/commit", &body.to_string()), 400, "BAD_REQUEST");
        let body = json!({"ops": [{"op": "delete", "collection": collection, "key": key}]});
        assert_error(&node.post("/v1/commit", &body.to_string()), 400, "BAD_REQUEST");
    }
    // An empty key segment does not name a document at all.
    let (status, body) = node.put("/v1/docs/c/", "1");
    assert!(status == 400 || status == 404, "empty key: {status} {body}");
    support::assert_error_shape(&body);
    assert_nothing_stored_and_still_serving(&node, c);

    // Boundary: 255 bytes is a valid name, stored and read back.
    let max = "k".repeat(255);
    let cid = node.put_doc(&max, &max, &json!(255));
    assert_eq!(node.get(&format!("/v1/docs/{max}/{max}")), (200, json!({"read_view": cid, "commit_id": cid, "doc": 255})));
    node.stop_clean();
}

/// §11: query parameters that are not unsigned integers, and page limits
/// outside 1..=1000, are refused with 400.
#[test]
fn bad_input_bad_query_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    let c = seed(&node);
    for query in ["at=abc", "at=-1", "at=1.5", "at=", "at=99999999999999999999999", "min_commit=x", "wait_ms=abc", "wait_ms=30001"] {
        assert_error(&node.get(&format!("/v1/docs/c/existing?{query}")), 400, "BAD_REQUEST");
        assert_error(&node.get(&format!("/v1/docs/c?{query}")), 400, "BAD_REQUEST");
    }
    for query in ["limit=0", "limit=abc", "limit=1001", "limit=-5"] {
        assert_error(&node.get(&format!("/v1/docs/c?{query}")), 400, "BAD_REQUEST");
    }
    assert_eq!(node.get("/v1/docs/c?limit=1000").0, 200);
    assert_eq!(node.get("/v1/docs/c?limit=1").1["next"], Value::Null);
    assert_nothing_stored_and_still_serving(&node, c);
    node.stop_clean();
}

/// §11: a request body above the body limit is refused with 413; a document
/// above 1 MiB (in a body under the limit) with 400 DOC_TOO_LARGE, through
/// PUT and /v1/commit; too many ops with 400 TOO_MANY_OPS.
#[test]
fn bad_input_oversize_body_and_oversize_document_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node("standalone", dir.path());
    let c = seed(&node);

    let oversize = vec![b'7'; MAX_BODY + 1024];
    let resp = support::request("PUT", &format!("{}/v1/docs/c/big", node.url()), Some(&oversize));
    assert_error(&resp, 413, "BODY_TOO_LARGE");
    let resp = support::request("POST", &format!("{}/v1/commit", node.url()), Some(&oversize));
    assert_error(&resp, 413, "BODY_TOO_LARGE");

    let big_doc = json!("x".repeat(1024 * 1024));
    let resp = node.put("/v1/docs/c/big", &big_doc.to_string());
    assert_error(&resp, 400, "DOC_TOO_LARGE");
    assert_eq!(resp.1["error"]["evidence"]["max"], 1024 * 1024);
    let body = json!({"ops": [{"op": "put", "collection": "c", "key": "small", "doc": 1}, {"op": "put", "collection": "c", "key": "big", "doc": big_doc}]});
    assert_error(&node.post("/v1/commit", &body.to_string()), 400, "DOC_TOO_LARGE");
    assert_eq!(node.get("/v1/docs/c/small").0, 404, "no op of a refused write set is stored");

    let ops: Vec<Value> = (0..1001).map(|i| json!({"op": "put", "collection": "c", "key": format!("k{i}"), "doc": i})).collect();
    assert_error(&node.post("/v1/commit", &json!({ "ops": ops }).to_string()), 400, "TOO_MANY_OPS");

    // A document just under the limit is accepted.
    let fits = json!("y".repeat(1024 * 1024 - 2));
    let resp = node.put("/v1/docs/c/fits", &fits.to_string());
    assert_eq!(resp, (200, json!({"commit_id": c + 1})));
    assert_eq!(node.get("/v1/docs/c/fits").1["doc"], fits);

    assert_nothing_stored_and_still_serving(&node, c + 1);
    let records = wal_dump(dir.path());
    assert_eq!(records.iter().map(|r| r.commit_id).collect::<Vec<_>>(), vec![1, 2, 3], "only the accepted writes are in the WAL");
    node.stop_clean();
}
