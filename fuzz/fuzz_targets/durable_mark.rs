//! Durable high-water mark decoding (docs/formats.md §2.3, CORE-5): total,
//! and a decoded mark re-encodes to exactly its 64 bytes.
#![no_main]

use aerodb_wal::mark::DurableMark;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 {
        aerodb_fuzz::reseal_header64(&mut bytes);
    }
    match DurableMark::decode(&bytes) {
        Ok(mark) => assert_eq!(mark.encode()[..], bytes[..], "a valid mark is exactly its encoding"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
