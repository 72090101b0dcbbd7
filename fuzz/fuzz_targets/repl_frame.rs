//! The replication frame decoder (docs/protocol.md "Frames", F-N2, RES-3)
//! on a byte stream cut into arbitrary pieces, with both per-direction
//! maxima (a primary reading a replica, a replica reading a primary) and a
//! tiny one. Properties: the streaming decoder yields exactly what the
//! one-shot decoder yields on the whole stream, whatever the cut; every
//! frame re-encodes to the bytes it was decoded from; nothing beyond one
//! maximum-size frame (plus the last piece pushed) is ever buffered; every
//! payload decodes to a message or a typed error; and owned pieces (one
//! buffer's adjacent parts or separate allocations) with frames held back
//! between pieces decode to the same frames and error.
#![no_main]

use aerodb_repl_core::wire::frame::{decode, encode};
use aerodb_repl_core::wire::{Frame, FrameDecoder, FrameError, Message, DEFAULT_MAX_PAYLOAD, FRAME_HEADER_LEN, MAX_REPLICA_PAYLOAD};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, seed, rest @ ..] = data else { return };
    let max = match mode % 3 {
        0 => MAX_REPLICA_PAYLOAD,
        1 => DEFAULT_MAX_PAYLOAD,
        _ => 64,
    };
    let mut stream = rest.to_vec();
    if mode & 4 == 4 {
        aerodb_fuzz::reseal_frames(&mut stream);
    }

    // One shot over the whole stream.
    let mut expected: Vec<Frame> = Vec::new();
    let mut at = 0;
    let expected_end: Option<FrameError> = loop {
        match decode(&stream[at..], max) {
            Ok(Some((frame, used))) => {
                assert_eq!(encode(frame.kind, &frame.payload)[..], stream[at..at + used], "a frame re-encodes to its bytes");
                expected.push(frame);
                at += used;
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };

    // Streaming, piece by piece.
    let mut decoder = FrameDecoder::new(max);
    let mut got: Vec<Frame> = Vec::new();
    let mut end = None;
    'pieces: for piece in aerodb_fuzz::chunks(&stream, *seed) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => got.push(f),
                Ok(None) => break,
                Err(e) => {
                    end = Some(e);
                    break 'pieces;
                }
            }
            assert!(decoder.buffered() <= FRAME_HEADER_LEN + max + piece.len(), "buffers at most one frame");
        }
        assert!(decoder.buffered() < FRAME_HEADER_LEN + max + piece.len(), "buffers at most one frame");
    }
    assert_eq!(got, expected, "streaming and one-shot decoding agree");
    assert_eq!(end, expected_end, "and fail alike");

    // Owned pieces, as the replica's runtime hands them over: adjacent
    // parts of one buffer or allocations of their own, and frames taken
    // only after every third piece (held back, as under backpressure).
    let mut whole = BytesMut::from(&stream[..]);
    let mut owned = FrameDecoder::new(max);
    let mut got_owned: Vec<Frame> = Vec::new();
    let mut owned_end = None;
    let take = |d: &mut FrameDecoder, got: &mut Vec<Frame>| loop {
        match d.next_frame() {
            Ok(Some(f)) => got.push(f),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    };
    for (i, piece) in aerodb_fuzz::chunks(&stream, *seed).into_iter().enumerate() {
        let part = whole.split_to(piece.len());
        if (seed >> (i % 8)) & 1 == 1 {
            owned.push_owned(part);
        } else {
            owned.push_owned(BytesMut::from(&part[..]));
        }
        if i % 3 == 2 {
            owned_end = take(&mut owned, &mut got_owned);
            if owned_end.is_some() {
                break;
            }
        }
    }
    if owned_end.is_none() {
        owned_end = take(&mut owned, &mut got_owned);
    }
    assert_eq!(got_owned, expected, "owned, held-back pieces decode alike");
    assert_eq!(owned_end, expected_end, "and fail alike");
    if let Some(e) = &end {
        assert!(["PEER_NOT_AERODB", "PROTOCOL_ERROR", "FRAME_TOO_LARGE", "FRAME_CHECKSUM"].contains(&e.code()));
    }
    for f in &got {
        assert!(f.payload.len() <= max);
        let _ = Message::decode(f);
    }
});
