//! WAL segment header decoding (docs/formats.md §2.1) and segment file
//! names: total, and a decoded header re-encodes to exactly its 64 bytes.
#![no_main]

use aerodb_wal::segment::{parse_segment_file_name, segment_file_name, SegmentHeader, SEGMENT_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        aerodb_fuzz::reseal_header64(&mut bytes);
    }
    match SegmentHeader::decode(&bytes) {
        Ok(h) => assert_eq!(h.encode()[..], bytes[..SEGMENT_HEADER_LEN as usize], "a valid header is exactly its encoding"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(name) = std::str::from_utf8(rest) {
        if let Some(lsn) = parse_segment_file_name(name) {
            assert_eq!(segment_file_name(lsn), name, "segment names round-trip");
        }
    }
});
