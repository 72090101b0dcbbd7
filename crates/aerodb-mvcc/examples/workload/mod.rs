//! The document the store examples write: the bench's 200-byte JSON body.

use bytes::Bytes;

/// Bytes of every document.
pub const DOC_BYTES: usize = 200;

/// Document number `n`, padded to exactly [`DOC_BYTES`].
pub fn doc(n: u64) -> Bytes {
    let mut s = format!("{{\"n\":{n},\"pad\":\"");
    while s.len() < DOC_BYTES - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    Bytes::from(s)
}
