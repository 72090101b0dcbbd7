//! HTTP/1 request framing of the client and DX APIs (RES-3): the sans-IO
//! `RequestFramer` that checks every request head against the URL and
//! header limits before the HTTP library sees it, fed the same byte stream
//! whole and in arbitrary pieces, with small limits or the defaults.
//! Properties: never a panic; the bytes released and the refusal do not
//! depend on how the stream was cut (read sizes are the client's choice);
//! released bytes are always a prefix of the stream; a refusal of a head
//! has a stable RES-3 code and an HTTP status.
#![no_main]

use aerodb::http::framer::{HeadLimits, Refused, RequestFramer};
use aerodb::http::limits::{DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_URL_BYTES};
use libfuzzer_sys::fuzz_target;

/// Feeds `pieces` the way the connection wrapper does; returns the released
/// bytes and the refusal.
fn run(limits: HeadLimits, pieces: &[&[u8]]) -> (Vec<u8>, Option<Refused>) {
    let mut framer = RequestFramer::new(limits);
    let mut held: Vec<u8> = Vec::new();
    let mut released = Vec::new();
    for piece in pieces {
        let fed = framer.feed(piece);
        assert!(fed.approved <= piece.len());
        let held_before = held.len();
        held.extend_from_slice(piece);
        // Held bytes are a head in progress: released only with an approved prefix.
        let n = if fed.approved > 0 { held_before + fed.approved } else { 0 };
        released.extend(held.drain(..n));
        if let Some(r) = fed.refusal {
            return (released, Some(r));
        }
    }
    (released, None)
}

fuzz_target!(|data: &[u8]| {
    let [mode, seed, stream @ ..] = data else { return };
    let limits = if mode & 1 == 1 {
        HeadLimits { max_url_bytes: DEFAULT_MAX_URL_BYTES, max_header_bytes: DEFAULT_MAX_HEADER_BYTES }
    } else {
        HeadLimits { max_url_bytes: 64, max_header_bytes: 256 }
    };
    let whole = run(limits, &[stream]);
    let cut = run(limits, &aerodb_fuzz::chunks(stream, *seed));
    assert_eq!(cut, whole, "the outcome does not depend on read sizes");
    assert!(whole.0.len() <= stream.len());
    assert_eq!(&stream[..whole.0.len()], &whole.0[..], "released bytes are a prefix of the stream");
    if let Some(Refused::Head(r)) = &whole.1 {
        assert!(!r.code().is_empty());
        assert!(r.status().is_client_error() || r.status().is_server_error());
        let _ = (r.to_string(), r.evidence());
    }
});
