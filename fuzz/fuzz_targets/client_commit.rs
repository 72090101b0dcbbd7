//! Client write bodies (INTERFACE.md "Client API", RES-3, §11): a
//! `POST /v1/commit` body through `parse_commit` and the write-set
//! validation behind it, and a `PUT` body through `canonical_doc`, with the
//! default limits or tiny ones (first byte). Properties: never a panic;
//! every refusal has a stable code and quotes the body only boundedly; the
//! streaming canonical form equals `serde_json`'s own `Value` round trip
//! (the bytes every earlier version wrote to the WAL) and is idempotent.
#![no_main]

use aerodb::request::{canonical_doc, parse_commit, MAX_ERROR_DETAIL_BYTES};
use aerodb_mvcc::input::validate_write_set;
use aerodb_mvcc::{ClientOp, WriteLimits};
use libfuzzer_sys::fuzz_target;

const CODES: &[&str] = &["BAD_REQUEST", "BAD_JSON", "DOC_TOO_LARGE", "TOO_MANY_OPS", "WRITE_SET_TOO_LARGE", "DUPLICATE_KEY", "EMPTY_WRITE_SET"];

fn bounded(message: &str) {
    assert!(message.len() <= 2 * MAX_ERROR_DETAIL_BYTES, "a refusal quotes {} bytes of the body", message.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else { return };
    let limits = if mode & 1 == 1 { WriteLimits { max_doc_bytes: 16, max_ops: 2, max_write_set_bytes: 64 } } else { WriteLimits::default() };

    match parse_commit(body, &limits) {
        Ok(ops) => {
            assert!(ops.len() <= limits.max_ops);
            for op in &ops {
                if let ClientOp::Put { doc, .. } = op {
                    assert!(doc.len() <= limits.max_doc_bytes);
                    assert_eq!(canonical_doc(doc, limits.max_doc_bytes).expect("canonical bytes are canonical"), doc, "canonical form is idempotent");
                }
            }
            if let Err(e) = validate_write_set(ops, &limits) {
                assert!(CODES.contains(&e.code()), "{}", e.code());
            }
        }
        Err(e) => {
            assert!(CODES.contains(&e.code), "{}", e.code);
            bounded(&e.message);
        }
    }

    let canonical = canonical_doc(body, usize::MAX);
    let reference = serde_json::from_slice::<serde_json::Value>(body).map(|v| serde_json::to_vec(&v).expect("a Value serializes"));
    match (&canonical, &reference) {
        (Ok(c), Ok(r)) => assert_eq!(&c[..], &r[..], "canonical form equals the Value round trip"),
        (Err(e), Err(_)) => {
            assert_eq!(e.code, "BAD_JSON");
            bounded(&e.message);
        }
        (c, r) => panic!("canonical_doc and serde_json disagree: {:?} / {:?}", c.as_ref().map_err(|e| &e.message), r.as_ref().map_err(ToString::to_string)),
    }
});
