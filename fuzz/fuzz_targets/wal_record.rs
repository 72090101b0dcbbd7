//! WAL record decoding (docs/formats.md §2.2, CORE-2): `peek_record_len`,
//! `check_record` and `decode_record` agree with each other, never panic,
//! and a decoded record re-encodes to the bytes it came from (except the
//! fingerprint, which depends on the previous record).
#![no_main]

use aerodb_wal::record::{check_record, decode_record, encode_body, peek_record_len, RecordDecodeError};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        aerodb_fuzz::reseal_record(&mut bytes);
    }
    let bytes = Bytes::from(bytes);
    let peeked = peek_record_len(&bytes);
    let checked = check_record(&bytes);
    let decoded = decode_record(&bytes);
    if let Err(e) = &peeked {
        assert_eq!(checked.as_ref().err(), Some(e), "check_record starts with peek_record_len");
    }
    match (&checked, &decoded) {
        (Err(c), Err(d)) => assert_eq!(c, d, "decode_record fails the way check_record does"),
        (Ok(_), Err(d)) => assert!(matches!(d, RecordDecodeError::BadOps { .. } | RecordDecodeError::BadGc { .. }), "{d:?} after a passing check"),
        (Err(c), Ok(_)) => panic!("decode_record accepted what check_record refused: {c:?}"),
        (Ok(len), Ok((record, len2))) => {
            assert_eq!(len, len2);
            assert_eq!(Ok(*len), peeked);
            let (encoded, _) =
                encode_body(record.commit_id, record.state_digest, aerodb_wal::GENESIS_FINGERPRINT, &record.body).expect("a decoded record re-encodes");
            assert_eq!(encoded.len(), *len);
            let rec = &bytes[..*len];
            assert_eq!(encoded[0..4], rec[0..4], "length");
            assert_eq!(encoded[8..40], rec[8..40], "header");
            assert_eq!(encoded[56..], rec[56..], "body");
        }
    }
    for r in [&checked.map(|_| ()), &decoded.map(|_| ())] {
        if let Err(e) = r {
            assert!(e.code().starts_with("RECORD_") || e.code() == "CHECKSUM_MISMATCH");
            let _ = e.to_string();
        }
    }
});
