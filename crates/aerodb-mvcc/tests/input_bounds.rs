#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! §11 bad input: every write set is bounded and validated before it gets a
//! CommitId. A refused write set stores nothing and uses no CommitId.

mod common;

use aerodb_mvcc::input::{validate_name, validate_write_set, MAX_NAME_BYTES};
use aerodb_mvcc::{ClientOp, InputError, WriteLimits};
use aerodb_wal::Op;
use bytes::Bytes;
use common::{commit, del, fresh_engine, fresh_engine_with, put, wal_records};

fn doc_of(len: usize) -> ClientOp {
    ClientOp::Put { collection: "c".into(), key: "k".into(), doc: Bytes::from(vec![b'1'; len]) }
}

fn bad_name(field: &'static str, detail: &str) -> InputError {
    InputError::BadName { field, detail: detail.into() }
}

/// §11: an empty write set is refused.
#[test]
fn input_empty_write_set_is_refused() {
    let err = validate_write_set(vec![], &WriteLimits::default()).unwrap_err();
    assert_eq!(err, InputError::Empty);
    assert_eq!(err.code(), "BAD_REQUEST");
}

/// §11: the same (collection, key) twice in one write set is refused, but
/// the same key in two collections is fine.
#[test]
fn input_duplicate_key_in_one_write_set_is_refused() {
    let err = validate_write_set(vec![put("c", "k", "1"), del("c", "k")], &WriteLimits::default()).unwrap_err();
    assert_eq!(err, InputError::DuplicateKey { collection: "c".into(), key: "k".into() });
    assert_eq!(err.code(), "BAD_REQUEST");
    assert_eq!(validate_write_set(vec![put("c", "k", "1"), put("d", "k", "1")], &WriteLimits::default()).unwrap().len(), 2);
}

/// §11: more operations than `max_ops` are refused; exactly `max_ops` pass.
#[test]
fn input_too_many_ops_is_refused() {
    let limits = WriteLimits::default();
    let ops = |n: usize| (0..n).map(|i| put("c", &format!("k{i}"), "1")).collect::<Vec<_>>();
    assert_eq!(validate_write_set(ops(limits.max_ops), &limits).unwrap().len(), limits.max_ops);
    let err = validate_write_set(ops(limits.max_ops + 1), &limits).unwrap_err();
    assert_eq!(err, InputError::TooManyOps { count: limits.max_ops + 1, max: limits.max_ops });
    assert_eq!(err.code(), "TOO_MANY_OPS");
}

/// §11: a document above `max_doc_bytes` (default 1 MiB) is refused with
/// DOC_TOO_LARGE; one of exactly the limit passes.
#[test]
fn input_document_too_large_is_refused() {
    let limits = WriteLimits::default();
    assert_eq!(limits.max_doc_bytes, 1024 * 1024);
    assert!(validate_write_set(vec![doc_of(limits.max_doc_bytes)], &limits).is_ok());
    let err = validate_write_set(vec![doc_of(limits.max_doc_bytes + 1)], &limits).unwrap_err();
    assert_eq!(err, InputError::DocTooLarge { size: limits.max_doc_bytes + 1, max: limits.max_doc_bytes });
    assert_eq!(err.code(), "DOC_TOO_LARGE");
}

/// §11: the total write-set size is bounded.
#[test]
fn input_write_set_too_large_is_refused() {
    let limits = WriteLimits { max_doc_bytes: 100, max_ops: 10, max_write_set_bytes: 250 };
    let ops: Vec<ClientOp> = (0..3).map(|i| ClientOp::Put { collection: "c".into(), key: format!("k{i}"), doc: Bytes::from(vec![b'1'; 90]) }).collect();
    let err = validate_write_set(ops, &limits).unwrap_err();
    assert_eq!(err, InputError::WriteSetTooLarge { size: 279, max: 250 });
    assert_eq!(err.code(), "WRITE_SET_TOO_LARGE");
}

/// §11: collection and key are 1..=255 bytes of UTF-8 without '/': empty,
/// 256 bytes and '/' are refused for both fields; 255 bytes passes; the
/// length is counted in bytes, not characters.
#[test]
fn input_bad_names_are_refused() {
    let limits = WriteLimits::default();
    let long = "k".repeat(MAX_NAME_BYTES + 1);
    let max = "k".repeat(MAX_NAME_BYTES);
    let cases: Vec<(ClientOp, InputError)> = vec![
        (put("c", "", "1"), bad_name("key", "empty")),
        (put("", "k", "1"), bad_name("collection", "empty")),
        (put("c", "a/b", "1"), bad_name("key", "contains '/'")),
        (del("a/b", "k"), bad_name("collection", "contains '/'")),
        (put("c", "/", "1"), bad_name("key", "contains '/'")),
        (put("c", &long, "1"), bad_name("key", "longer than 255 bytes")),
        (del(&long, "k"), bad_name("collection", "longer than 255 bytes")),
        // 128 two-byte characters = 256 bytes.
        (put("c", &"é".repeat(128), "1"), bad_name("key", "longer than 255 bytes")),
    ];
    for (op, expected) in cases {
        let err = validate_write_set(vec![op.clone()], &limits).unwrap_err();
        assert_eq!(err, expected, "{op:?}");
        assert_eq!(err.code(), "BAD_REQUEST");
    }
    // A bad name anywhere in the set refuses the whole set.
    assert!(validate_write_set(vec![put("c", "ok", "1"), put("c", "a/b", "1")], &limits).is_err());
    // Boundaries that pass.
    let ok = validate_write_set(vec![put(&max, &max, "1"), put("c", &"é".repeat(127), "1"), put("c", "k", "")], &limits).unwrap();
    assert_eq!(ok.len(), 3);
    assert_eq!(validate_name("key", &max), Ok(()));
    assert!(matches!(&ok[0], Op::Put { collection, key, .. } if collection.len() == 255 && key.len() == 255));
}

/// §11: write sets refused by PrimaryEngine::submit use no CommitId and
/// write nothing to the WAL; the next valid write gets CommitId 1.
#[test]
fn input_refused_write_sets_use_no_commit_id_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = fresh_engine(dir.path());
    let refused = vec![
        vec![],
        vec![put("c", "k", "1"), put("c", "k", "2")],
        vec![put("c", "a/b", "1")],
        vec![put("c", &"x".repeat(256), "1")],
        vec![doc_of(1024 * 1024 + 1)],
        (0..1001).map(|i| put("c", &format!("k{i}"), "1")).collect(),
    ];
    for ops in refused {
        assert!(engine.submit(ops).is_err());
    }
    assert_eq!(engine.store().applied().commit_id, 0);
    assert_eq!(commit(&engine, vec![put("c", "k", "{}")]), 1);
    drop(engine);
    let records = wal_records(dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.commit_id, 1);

    // Engine-specific limits are the ones enforced.
    let small = tempfile::tempdir().unwrap();
    let engine = fresh_engine_with(small.path(), WriteLimits { max_doc_bytes: 4, max_ops: 2, max_write_set_bytes: 100 }, 1 << 20);
    assert_eq!(engine.submit(vec![put("c", "k", "12345")]).err().map(|e| e.code()), Some("DOC_TOO_LARGE"));
    assert_eq!(engine.submit(vec![put("c", "a", "1"), put("c", "b", "1"), put("c", "d", "1")]).err().map(|e| e.code()), Some("TOO_MANY_OPS"));
    assert_eq!(commit(&engine, vec![put("c", "k", "1234")]), 1);
}
