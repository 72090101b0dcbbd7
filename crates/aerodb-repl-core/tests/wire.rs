#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! Frames and messages on the replication port: every message round-trips
//! through a frame, and the decoders are total on arbitrary input (F-N2:
//! damaged, truncated or foreign bytes are an error, never a panic and
//! never a different valid message).

use aerodb_repl_core::handshake::{Accept, Hello, HelloRequest, Refusal, Refuse, PROTOCOL_VERSION};
use aerodb_repl_core::ids::{ClusterId, ReplicaId, ReplicaName};
use aerodb_repl_core::pipeline::ReceivedChunk;
use aerodb_repl_core::status::{Positions, PrimaryProgress, ProgressTimes};
use aerodb_repl_core::wire::{frame, Frame, FrameDecoder, FrameType, Message, ServeCode, ServeError, DEFAULT_MAX_PAYLOAD, FRAME_HEADER_LEN};
use aerodb_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::Fingerprint;
use bytes::Bytes;
use proptest::prelude::*;

const ALL_TYPES: [FrameType; 14] = FrameType::ALL;

fn cid() -> ClusterId {
    ClusterId::parse("c0ffee00c0ffee00c0ffee00c0ffee00").unwrap()
}

fn rid(s: &str) -> ReplicaId {
    ReplicaId::parse(s).unwrap()
}

fn resume() -> aerodb_repl_core::handshake::SnapshotResume {
    aerodb_repl_core::handshake::SnapshotResume { manifest_crc32c: 0xdead_beef, manifest_len: 812, file_index: 2, offset: 3 << 20 }
}

/// F-S1: the version-2 resume request and answer have the documented JSON
/// shape (docs/protocol.md), and a version-1 ACCEPT (no `snapshot_resume`)
/// still decodes, as a whole-snapshot answer.
#[test]
fn f_s1_snapshot_resume_request_and_accept_json_shape() {
    let hello = serde_json::to_value(HelloRequest::SnapshotResume(resume())).unwrap();
    assert_eq!(
        hello,
        serde_json::json!({"kind": "snapshot_resume", "manifest_crc32c": 0xdead_beef_u32, "manifest_len": 812, "file_index": 2, "offset": 3 << 20})
    );
    let accept: Accept = serde_json::from_value(
        serde_json::json!({"cluster_id": "c0ffee00c0ffee00c0ffee00c0ffee00", "primary_commit_id": 1, "durable_lsn": 2, "start_lsn": null}),
    )
    .unwrap();
    assert_eq!(accept.snapshot_resume, None);
    let plain = serde_json::to_value(&accept).unwrap();
    assert!(plain.get("snapshot_resume").is_none(), "absent when not resuming: {plain}");
}

fn samples() -> Vec<Message> {
    let header = SegmentHeader { start_lsn: 4096, prev_commit_id: 41, prev_fingerprint: Fingerprint(0x0123_4567_89ab_cdef_0011_2233_4455_6677) };
    vec![
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: Some(cid()),
            replica_id: rid("r1"),
            name: Some(ReplicaName::parse("eu-west-1").unwrap()),
            request: HelloRequest::Resume { end_lsn: 4096, commit_id: 41, fingerprint: Fingerprint(7) },
        }),
        Message::Hello(Hello { protocol_version: PROTOCOL_VERSION, cluster_id: None, replica_id: rid("r2"), name: None, request: HelloRequest::Snapshot }),
        Message::Accept(Accept {
            cluster_id: cid(),
            primary_commit_id: 99,
            durable_lsn: 8192,
            start_lsn: Some(4096),
            snapshot_resume: None,
            client_addr: Some("10.0.0.1:7700".parse().unwrap()),
        }),
        Message::Accept(Accept { cluster_id: cid(), primary_commit_id: 0, durable_lsn: 0, start_lsn: None, snapshot_resume: None, client_addr: None }),
        Message::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: None,
            replica_id: rid("r3"),
            name: None,
            request: HelloRequest::SnapshotResume(resume()),
        }),
        Message::Accept(Accept {
            cluster_id: cid(),
            primary_commit_id: 7,
            durable_lsn: 700,
            start_lsn: None,
            snapshot_resume: Some(resume()),
            client_addr: None,
        }),
        Message::Refuse(Refuse {
            refusal: Refusal::Diverged {
                primary_durable_lsn: 9000,
                primary_commit_id: 50,
                primary_record_end_lsn: Some(4096),
                primary_record_fingerprint: Some(Fingerprint(3)),
            },
            detail: "record ending at 4096 differs".into(),
        }),
        Message::Wal(ReceivedChunk { start_lsn: 4096, segment_start: Some(header), bytes: Bytes::from_static(b"verbatim wal bytes") }),
        Message::Wal(ReceivedChunk { start_lsn: 5000, segment_start: None, bytes: Bytes::from_static(b"more") }),
        Message::Wal(ReceivedChunk { start_lsn: 0, segment_start: None, bytes: Bytes::new() }),
        Message::Progress(PrimaryProgress { commit_id: 12, durable_lsn: 3456 }, ProgressTimes::default()),
        Message::Progress(
            PrimaryProgress { commit_id: 12, durable_lsn: 3456 },
            ProgressTimes { primary_time_ms: 1_700_000_000_500, commit_time_ms: 1_700_000_000_400, next_commit_id: 11, next_commit_time_ms: 1_700_000_000_300 },
        ),
        Message::Report(Positions { received_lsn: 30, validated_lsn: 20, applied_lsn: 10, applied_commit_id: 2 }),
        Message::SnapshotBegin(Bytes::from_static(b"{\"manifest\":1}")),
        Message::SnapshotChunk { file_index: 3, offset: 1 << 20, bytes: Bytes::from_static(b"piece") },
        Message::SnapshotChunk { file_index: 0, offset: 0, bytes: Bytes::new() },
        Message::SnapshotEnd,
        Message::Error(ServeError { code: ServeCode::SnapshotUnavailable, detail: "none".into() }),
    ]
}

/// A writer that takes at most `cap` bytes per call, across the slices of
/// a vectored write.
struct Trickle {
    bytes: Vec<u8>,
    cap: usize,
}

impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.cap);
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.cap - n);
            self.bytes.extend_from_slice(&b[..take]);
            n += take;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encode → frame → bytes → frame → decode → encode gives the same frame.
fn round_trip(m: &Message) -> Message {
    let (kind, payload) = m.encode();
    let wire = frame::encode(kind, &payload);
    assert_eq!(wire.len(), FRAME_HEADER_LEN + payload.len());
    // The one-copy frame the engines send is byte for byte the same frame,
    // and so is the two-piece frame the primary writes (its WAL bytes
    // unmoved), however few bytes each vectored write takes.
    assert_eq!(&m.to_frame()[..], &wire[..], "{m:?}");
    let out = m.to_out_frame();
    assert_eq!(out.to_vec(), wire, "{m:?}");
    for cap in [1, 3, FRAME_HEADER_LEN + 1, usize::MAX] {
        let mut w = Trickle { bytes: Vec::new(), cap };
        out.write_to(&mut w).unwrap();
        assert_eq!(w.bytes, wire, "{m:?}, {cap} bytes per write");
    }
    let (f, used) = frame::decode(&wire, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    assert_eq!(used, wire.len());
    assert_eq!(f.kind, kind);
    let back = Message::decode(&f).unwrap();
    assert_eq!(back.encode(), (kind, payload), "{m:?}");
    back
}

/// F-N2: every message type survives a frame round trip with its fields intact.
#[test]
fn f_n2_every_message_round_trips_through_a_frame() {
    for m in samples() {
        let back = round_trip(&m);
        match (&m, &back) {
            (Message::Hello(a), Message::Hello(b)) => assert_eq!(a, b),
            (Message::Accept(a), Message::Accept(b)) => assert_eq!(a, b),
            (Message::Refuse(a), Message::Refuse(b)) => assert_eq!(a, b),
            (Message::Wal(a), Message::Wal(b)) => {
                assert_eq!(a.start_lsn, b.start_lsn);
                assert_eq!(a.segment_start, b.segment_start);
                assert_eq!(a.bytes, b.bytes);
            }
            (Message::Progress(a, x), Message::Progress(b, y)) => assert_eq!((a, x), (b, y)),
            (Message::Report(a), Message::Report(b)) => assert_eq!(a, b),
            (Message::SnapshotBegin(a), Message::SnapshotBegin(b)) => assert_eq!(a, b),
            (Message::SnapshotChunk { file_index: i1, offset: o1, bytes: b1 }, Message::SnapshotChunk { file_index: i2, offset: o2, bytes: b2 }) => {
                assert_eq!((i1, o1, b1), (i2, o2, b2));
            }
            (Message::SnapshotEnd, Message::SnapshotEnd) => {}
            (Message::Error(a), Message::Error(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} came back as {b:?}"),
        }
    }
}

/// F-N2: frames written back to back are decoded in order from any split
/// of the stream, and a stream that ends mid-frame yields no frame.
#[test]
fn f_n2_stream_of_frames_reads_back_in_order_and_truncation_is_an_error() {
    let msgs = samples();
    let mut wire = Vec::new();
    for m in &msgs {
        wire.extend_from_slice(&m.to_frame());
    }
    for piece in [1usize, 7, 64, wire.len()] {
        let mut d = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
        let mut got = Vec::new();
        for chunk in wire.chunks(piece) {
            d.push(chunk);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(Message::decode(&f).unwrap());
            }
        }
        assert_eq!(got.len(), msgs.len(), "piece size {piece}");
        for (a, b) in got.iter().zip(&msgs) {
            assert_eq!(a.encode(), b.encode());
        }
    }
    let cut = wire.len() - 3;
    let mut d = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
    d.push(&wire[..cut]);
    let mut n = 0;
    while d.next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, msgs.len() - 1, "the cut frame is never returned");
    // The incremental decoder asks for more bytes instead.
    let (kind, payload) = msgs[5].encode();
    let one = frame::encode(kind, &payload);
    for n in 0..one.len() {
        assert!(matches!(frame::decode(&one[..n], DEFAULT_MAX_PAYLOAD), Ok(None)), "prefix of {n} bytes");
    }
}

/// F-N2: frame errors have stable codes: foreign bytes, unknown types, a
/// reserved byte, an oversize length and a damaged crc are each reported.
#[test]
fn f_n2_frame_errors_have_stable_codes() {
    let good = frame::encode(FrameType::Progress, &[0u8; 48]);
    let code = |b: &[u8], max: usize| frame::decode(b, max).unwrap_err().code();
    assert_eq!(code(b"GET / HTTP/1.1\r\n\r\n", DEFAULT_MAX_PAYLOAD), "PEER_NOT_AERODB");
    let mut t = good.clone();
    t[2] = 0xEE;
    assert_eq!(code(&t, DEFAULT_MAX_PAYLOAD), "PROTOCOL_ERROR");
    let mut t = good.clone();
    t[3] = 1;
    assert_eq!(code(&t, DEFAULT_MAX_PAYLOAD), "PROTOCOL_ERROR");
    assert_eq!(code(&good, 47), "FRAME_TOO_LARGE");
    let mut t = good.clone();
    t[FRAME_HEADER_LEN + 3] ^= 1;
    assert_eq!(code(&t, DEFAULT_MAX_PAYLOAD), "FRAME_CHECKSUM");
    let mut t = good;
    t[9] ^= 1;
    assert_eq!(code(&t, DEFAULT_MAX_PAYLOAD), "FRAME_CHECKSUM");
}

/// F-N2: payloads that do not match their frame type are typed errors.
#[test]
fn f_n2_malformed_payloads_are_rejected() {
    let bad = |kind: FrameType, payload: &[u8]| {
        let f = Frame { kind, payload: Bytes::copy_from_slice(payload) };
        assert!(Message::decode(&f).is_err(), "{kind:?} {payload:?} accepted");
    };
    bad(FrameType::Hello, b"{}");
    bad(FrameType::Hello, b"not json");
    bad(FrameType::Accept, b"[1,2]");
    bad(FrameType::Refuse, br#"{"code":"NO_SUCH_CODE","detail":"","evidence":null}"#);
    bad(FrameType::Error, b"");
    bad(FrameType::Wal, &[0u8; 8]);
    bad(FrameType::Wal, &[0, 0, 0, 0, 0, 0, 0, 0, 2]);
    // Flag 1 promises a segment header: missing, short or damaged.
    bad(FrameType::Wal, &[0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let header = SegmentHeader { start_lsn: 0, prev_commit_id: 0, prev_fingerprint: Fingerprint(1) }.encode();
    let mut p = vec![0u8; 9];
    p[8] = 1;
    p.extend_from_slice(&header[..SEGMENT_HEADER_LEN as usize - 1]);
    bad(FrameType::Wal, &p);
    let mut p = vec![0u8; 9];
    p[8] = 1;
    let mut damaged = header;
    damaged[20] ^= 0xFF;
    p.extend_from_slice(&damaged);
    bad(FrameType::Wal, &p);
    bad(FrameType::Progress, &[0u8; 15]);
    bad(FrameType::Progress, &[0u8; 16]); // a protocol-1 PROGRESS
    bad(FrameType::Progress, &[0u8; 47]);
    bad(FrameType::Progress, &[0u8; 49]);
    bad(FrameType::Report, &[0u8; 31]);
    bad(FrameType::SnapshotChunk, &[0u8; 11]);
    bad(FrameType::SnapshotEnd, b"x");
}

/// RES-4: a decode error may quote what the peer sent (serde quotes the
/// offending string), so it quotes at most `MAX_ERROR_DETAIL_BYTES` of it,
/// with control characters escaped: a 60 KiB HELLO field of the wrong type,
/// a 2 MB cluster id in an ACCEPT and an invalid name never reach a log
/// line or the DX API whole.
#[test]
fn res_4_decode_errors_quote_peer_bytes_boundedly() {
    use aerodb_repl_core::wire::message::MAX_ERROR_DETAIL_BYTES;
    let huge = "A".repeat(60 * 1024);
    let escape = "\u{1b}[31m\nforged log line";
    for (kind, payload) in [
        (FrameType::Hello, format!(r#"{{"protocol_version":"{huge}","cluster_id":null,"replica_id":"r","request":{{"kind":"snapshot"}}}}"#)),
        (FrameType::Hello, format!(r#"{{"protocol_version":1,"cluster_id":null,"replica_id":"{huge}","request":{{"kind":"snapshot"}}}}"#)),
        (FrameType::Hello, format!(r#"{{"protocol_version":1,"cluster_id":null,"replica_id":"r","name":"{escape}","request":{{"kind":"snapshot"}}}}"#)),
        (FrameType::Accept, format!(r#"{{"cluster_id":"{}","primary_commit_id":1,"durable_lsn":1,"start_lsn":0}}"#, "../".repeat(700_000))),
        (FrameType::Accept, r#"{"cluster_id":"../../not-a-cluster","primary_commit_id":1,"durable_lsn":1,"start_lsn":0}"#.to_string()),
        (FrameType::Error, format!(r#"{{"code":"{huge}","detail":""}}"#)),
    ] {
        let err = Message::decode(&Frame { kind, payload: Bytes::from(payload) }).unwrap_err();
        assert!(err.detail.len() <= MAX_ERROR_DETAIL_BYTES, "{kind:?}: {} bytes", err.detail.len());
        assert!(!err.detail.chars().any(char::is_control), "{kind:?}: {:?}", err.detail);
        assert!(!err.to_string().contains('\n'));
    }
}

/// RES-4: the free text a primary sends (REFUSE and ERROR `detail`, at most
/// 4 KiB) is stored and shown with control characters escaped, and the
/// escaping is stable (a decoded message round-trips unchanged).
#[test]
fn res_4_peer_detail_text_is_shown_escaped() {
    use aerodb_repl_core::wire::message::{shown_text, MAX_DETAIL_BYTES};
    let raw = serde_json::to_vec(&serde_json::json!({"code": "SHUTTING_DOWN", "detail": "line\nforged\u{1b}[2J"})).unwrap();
    let Message::Error(decoded) = Message::decode(&Frame { kind: FrameType::Error, payload: Bytes::from(raw) }).unwrap() else { panic!() };
    assert_eq!(decoded.detail, "line\\nforged\\u{1b}[2J");
    assert_eq!(
        Message::decode(&Frame { kind: FrameType::Error, payload: Bytes::from(Message::Error(decoded.clone()).payload()) }).unwrap(),
        Message::Error(decoded)
    );
    let controls = "\u{7}".repeat(MAX_DETAIL_BYTES);
    let shown = shown_text(&controls, MAX_DETAIL_BYTES);
    assert!(shown.len() <= MAX_DETAIL_BYTES && shown.ends_with(&format!("({} bytes)", controls.len())), "{shown}");
    assert_eq!(shown_text(&shown, MAX_DETAIL_BYTES), shown, "idempotent");
    assert!(shown_text("é".repeat(10).as_str(), 9).len() <= 9);
}

/// RES-4: a PROGRESS (protocol version 2) is exactly six u64; its times
/// are bounded and its next CommitId never beyond its CommitId.
#[test]
fn res_4_progress_times_are_validated() {
    let payload = |fields: [u64; 6]| -> Vec<u8> { fields.iter().flat_map(|v| v.to_le_bytes()).collect() };
    let decode = |fields: [u64; 6]| Message::decode(&Frame { kind: FrameType::Progress, payload: Bytes::from(payload(fields)) });
    let ok = decode([9, 900, 1_700_000_000_000, 1_699_999_999_000, 7, 1_699_999_998_000]).unwrap();
    let times =
        ProgressTimes { primary_time_ms: 1_700_000_000_000, commit_time_ms: 1_699_999_999_000, next_commit_id: 7, next_commit_time_ms: 1_699_999_998_000 };
    assert_eq!(ok, Message::Progress(PrimaryProgress { commit_id: 9, durable_lsn: 900 }, times));
    assert!(decode([9, 900, 1 << 54, 0, 0, 0]).is_err(), "primary time beyond 2^53 ms");
    assert!(decode([9, 900, 0, u64::MAX, 0, 0]).is_err(), "commit time beyond 2^53 ms");
    assert!(decode([9, 900, 0, 0, 0, (1 << 53) + 1]).is_err(), "next commit time beyond 2^53 ms");
    assert!(decode([9, 900, 0, 0, 10, 0]).is_err(), "next commit beyond the durable commit");
    assert!(decode([9, 900, 0, 0, 9, 0]).is_ok());
}

fn frame_type() -> impl Strategy<Value = FrameType> {
    prop::sample::select(ALL_TYPES.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// F-N2: `Message::decode` is total: any payload under any frame type
    /// yields a message or a typed error, never a panic; whatever it
    /// accepts re-encodes to the same payload.
    #[test]
    fn f_n2_message_decode_never_panics(kind in frame_type(), payload in prop::collection::vec(any::<u8>(), 0..160)) {
        let f = Frame { kind, payload: Bytes::from(payload.clone()) };
        if let Ok(m) = Message::decode(&f) {
            let (k, p) = m.encode();
            prop_assert_eq!(k, kind);
            if !matches!(kind, FrameType::Hello | FrameType::Accept | FrameType::Refuse | FrameType::Error) {
                // Binary messages are canonical; JSON ones may re-order or re-space.
                prop_assert_eq!(p, payload);
            }
        }
    }

    /// F-N2: WAL payloads with a valid header prefix and arbitrary tails
    /// (the common shape of a damaged WAL frame) never panic either.
    #[test]
    fn f_n2_wal_payload_decode_never_panics(lsn in any::<u64>(), flags in 0u8..4, tail in prop::collection::vec(any::<u8>(), 0..120)) {
        let mut p = lsn.to_le_bytes().to_vec();
        p.push(flags);
        p.extend_from_slice(&tail);
        let _ = Message::decode(&Frame { kind: FrameType::Wal, payload: Bytes::from(p) });
    }

    /// F-N2: a WAL message round-trips for any position, header and bytes.
    #[test]
    fn f_n2_wal_message_round_trips(lsn in any::<u64>(), with_header in any::<bool>(), prev in any::<u64>(), fp in any::<u128>(), bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let segment_start = with_header.then_some(SegmentHeader { start_lsn: lsn, prev_commit_id: prev, prev_fingerprint: Fingerprint(fp) });
        let m = Message::Wal(ReceivedChunk { start_lsn: lsn, segment_start, bytes: Bytes::from(bytes.clone()) });
        match round_trip(&m) {
            Message::Wal(c) => {
                prop_assert_eq!(c.start_lsn, lsn);
                prop_assert_eq!(c.segment_start, segment_start);
                prop_assert_eq!(c.bytes, Bytes::from(bytes));
            }
            other => prop_assert!(false, "came back as {:?}", other),
        }
    }

    /// F-N2: the frame decoder is total on arbitrary byte streams, and what
    /// it accepts decodes as a message without panicking.
    #[test]
    fn f_n2_frame_then_message_decode_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(Some((f, used))) = frame::decode(&data, 1024) {
            prop_assert!(used <= data.len());
            let _ = Message::decode(&f);
        }
    }

    /// F-N2: any single flipped bit of an encoded frame is detected: the
    /// decoder never returns the original frame's type and payload as a
    /// valid frame from the damaged bytes.
    #[test]
    fn f_n2_any_bit_flip_is_detected(kind in frame_type(), payload in prop::collection::vec(any::<u8>(), 0..64), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let wire = frame::encode(kind, &payload);
        let mut bad = wire.clone();
        let i = pos.index(bad.len());
        bad[i] ^= 1 << bit;
        if let Ok(Some((f, _))) = frame::decode(&bad, DEFAULT_MAX_PAYLOAD) {
            prop_assert!(false, "flip at {} accepted as {:?}", i, f.kind);
        }
    }
}

/// RES-4: ACCEPT's optional client address is additive (absent from older
/// primaries) and validated when decoded: a malformed one fails the frame.
#[test]
fn res_4_accept_client_addr_is_optional_and_validated() {
    let decode = |json: &str| Message::decode(&frame::decode(&frame::encode(FrameType::Accept, json.as_bytes()), DEFAULT_MAX_PAYLOAD).unwrap().unwrap().0);
    let old = format!(r#"{{"cluster_id":"{}","primary_commit_id":1,"durable_lsn":2,"start_lsn":null}}"#, cid());
    assert!(matches!(decode(&old), Ok(Message::Accept(Accept { client_addr: None, .. }))));
    let bad = format!(r#"{{"cluster_id":"{}","primary_commit_id":1,"durable_lsn":2,"start_lsn":null,"client_addr":"../../x"}}"#, cid());
    assert!(decode(&bad).is_err());
    let long = format!(r#"{{"cluster_id":"{}","primary_commit_id":1,"durable_lsn":2,"start_lsn":null,"client_addr":"{}"}}"#, cid(), "9".repeat(100_000));
    assert!(decode(&long).is_err());
}
