//! Frames on the replication port (docs/protocol.md):
//!
//! ```text
//! off size field
//!   0    2 magic        0xAE52 LE
//!   2    1 frame type
//!   3    1 reserved     0
//!   4    4 payload_len  u32 LE (<= the receiver's maximum)
//!   8    4 crc32c       over bytes [0, 8) then the payload
//!  12    … payload
//! ```
//!
//! Decoding is total: any byte sequence yields a frame, "need more bytes",
//! or a typed error, never a panic, and a decoder never allocates more
//! than one maximum-size frame (it keeps what its caller hands over, as
//! handed). The maximum is per direction: a primary accepts
//! only small frames from replicas (HELLO, REPORT), a replica accepts WAL
//! chunks up to [`DEFAULT_MAX_PAYLOAD`].

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Frame header length.
pub const FRAME_HEADER_LEN: usize = 12;
const FRAME_MAGIC: u16 = 0xAE52;
/// Largest payload a replica accepts from a primary: a 16 MiB WAL chunk
/// plus room for its chunk header.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024 + 1024;
/// Largest payload a primary accepts from a replica: replicas only send
/// HELLO and REPORT, both far smaller (RES-3: an announced 16 MiB frame is
/// refused after its 12-byte header, before anything is buffered).
pub const MAX_REPLICA_PAYLOAD: usize = 64 * 1024;

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FrameType {
    /// Replica → primary: handshake (JSON).
    Hello = 1,
    /// Primary → replica: handshake accepted (JSON).
    Accept = 2,
    /// Primary → replica: handshake refused (JSON).
    Refuse = 3,
    /// Primary → replica: verbatim WAL bytes (binary).
    Wal = 4,
    /// Primary → replica: (C_primary, durable LSN) (binary).
    Progress = 5,
    /// Replica → primary: received/validated/applied positions (binary).
    Report = 6,
    /// Primary → replica: snapshot manifest bytes.
    SnapshotBegin = 7,
    /// Primary → replica: a piece of one snapshot file (binary).
    SnapshotChunk = 8,
    /// Primary → replica: snapshot transfer complete.
    SnapshotEnd = 9,
    /// Primary → replica: the primary cannot serve (JSON).
    Error = 10,
    /// Replica → primary: start of the token authentication phase (binary, v2).
    AuthBegin = 11,
    /// Primary → replica: the primary's nonce, cluster id and proof (binary, v2).
    AuthChallenge = 12,
    /// Replica → primary: the replica's proof over the HELLO that follows (binary, v2).
    AuthProof = 13,
    /// Primary → replica: authentication refused (JSON, v2).
    AuthRefuse = 14,
}

impl FrameType {
    /// Every frame type, in wire order.
    pub const ALL: [FrameType; 14] = [
        FrameType::Hello,
        FrameType::Accept,
        FrameType::Refuse,
        FrameType::Wal,
        FrameType::Progress,
        FrameType::Report,
        FrameType::SnapshotBegin,
        FrameType::SnapshotChunk,
        FrameType::SnapshotEnd,
        FrameType::Error,
        FrameType::AuthBegin,
        FrameType::AuthChallenge,
        FrameType::AuthProof,
        FrameType::AuthRefuse,
    ];

    /// The type with wire value `v`, if any.
    pub fn from_u8(v: u8) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| *t as u8 == v)
    }
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Type.
    pub kind: FrameType,
    /// Payload.
    pub payload: Bytes,
}

/// Why bytes are not a valid frame. Every variant ends the connection.
#[derive(Clone, Debug, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum FrameError {
    /// The peer does not speak this protocol (first bytes wrong).
    #[error("bad frame magic {found:#06x}: peer is not an AeroDB replication endpoint")]
    BadMagic {
        /// What arrived.
        found: u16,
    },
    /// Unknown frame type.
    #[error("unknown frame type {found}")]
    UnknownType {
        /// The type byte.
        found: u8,
    },
    /// Reserved byte not zero.
    #[error("reserved header byte is {found}, expected 0")]
    Reserved {
        /// The reserved byte.
        found: u8,
    },
    /// Payload above the receiver's maximum.
    #[error("frame payload of {len} bytes exceeds the maximum {max}")]
    TooLarge {
        /// Declared length.
        len: usize,
        /// Maximum.
        max: usize,
    },
    /// crc32c mismatch.
    #[error("frame crc32c mismatch")]
    Checksum,
}

impl FrameError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::BadMagic { .. } => "PEER_NOT_AERODB",
            FrameError::UnknownType { .. } | FrameError::Reserved { .. } => "PROTOCOL_ERROR",
            FrameError::TooLarge { .. } => "FRAME_TOO_LARGE",
            FrameError::Checksum => "FRAME_CHECKSUM",
        }
    }
}

fn crc(header8: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header8), payload)
}

/// Encodes a frame.
pub fn encode(kind: FrameType, payload: &[u8]) -> Vec<u8> {
    encode_with(kind, payload.len(), |out| out.extend_from_slice(payload))
}

/// Encodes a frame whose payload `write_payload` appends straight after
/// the header, so a large payload (a WAL chunk, a snapshot piece) is copied
/// once, into the frame, not first into a payload buffer of its own.
/// `payload_len_hint` sizes the one allocation.
pub fn encode_with(kind: FrameType, payload_len_hint: usize, write_payload: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = open_frame(kind, payload_len_hint);
    write_payload(&mut out);
    seal_frame(&mut out, &[]);
    out
}

/// A frame's header, its length and crc32c still zero ([`seal_frame`]),
/// in a buffer with room for `payload_capacity` more bytes.
fn open_frame(kind: FrameType, payload_capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload_capacity);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&[0; FRAME_HEADER_LEN - 4]);
    out
}

/// Fills in the length and crc32c of a frame whose payload is the bytes
/// after the header in `head`, then `tail`.
fn seal_frame(head: &mut [u8], tail: &[u8]) {
    let len = (head.len() - FRAME_HEADER_LEN + tail.len()) as u32;
    head[4..8].copy_from_slice(&len.to_le_bytes());
    let c = crc32c::crc32c_append(crc(&head[0..8], &head[FRAME_HEADER_LEN..]), tail);
    head[8..FRAME_HEADER_LEN].copy_from_slice(&c.to_le_bytes());
}

/// A frame to send, as two pieces in stream order: the header with the
/// start of the payload, and the rest of the payload. A WAL chunk or a
/// snapshot piece is sent from the buffer it was read into, behind a
/// header built for it ([`encode_parts`]), instead of being copied into a
/// frame buffer of its own; every other frame is all head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutFrame {
    head: Bytes,
    body: Bytes,
}

impl OutFrame {
    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether the frame has no bytes (never: a frame has a header).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's bytes in one buffer (a copy: for tests and the
    /// simulator's network, which carry bytes).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out
    }

    /// Writes the whole frame (vectored where the writer supports it).
    pub fn write_to<W: std::io::Write + ?Sized>(&self, w: &mut W) -> std::io::Result<()> {
        let (mut head, mut body) = (&self.head[..], &self.body[..]);
        while !head.is_empty() || !body.is_empty() {
            let n = w.write_vectored(&[std::io::IoSlice::new(head), std::io::IoSlice::new(body)])?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "failed to write the whole frame"));
            }
            let from_head = n.min(head.len());
            head = &head[from_head..];
            body = &body[n - from_head..];
        }
        Ok(())
    }
}

impl From<Vec<u8>> for OutFrame {
    /// A frame encoded whole (all head).
    fn from(frame: Vec<u8>) -> Self {
        OutFrame { head: Bytes::from(frame), body: Bytes::new() }
    }
}

/// Encodes a frame whose payload is what `write_head` appends followed by
/// `body`, without copying `body`: the crc32c runs over the header, the
/// appended bytes and `body` in turn. The same bytes on the wire as
/// [`encode_with`] writing both.
pub fn encode_parts(kind: FrameType, write_head: impl FnOnce(&mut Vec<u8>), body: Bytes) -> OutFrame {
    let mut head = open_frame(kind, 64);
    write_head(&mut head);
    seal_frame(&mut head, &body);
    OutFrame { head: Bytes::from(head), body }
}

/// Validates a header; returns (type, payload length, stored crc).
fn parse_header(h: &[u8], max_payload: usize) -> Result<(FrameType, usize, u32), FrameError> {
    let magic = u16::from_le_bytes([h[0], h[1]]);
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let kind = FrameType::from_u8(h[2]).ok_or(FrameError::UnknownType { found: h[2] })?;
    if h[3] != 0 {
        return Err(FrameError::Reserved { found: h[3] });
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > max_payload {
        return Err(FrameError::TooLarge { len, max: max_payload });
    }
    Ok((kind, len, u32::from_le_bytes([h[8], h[9], h[10], h[11]])))
}

/// Decodes one frame from the start of `buf`: `Ok(None)` if more bytes are
/// needed, otherwise the frame and the bytes it used.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(h) = buf.get(..FRAME_HEADER_LEN) else { return Ok(None) };
    let (kind, len, stored) = parse_header(h, max_payload)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else { return Ok(None) };
    if crc(&h[0..8], payload) != stored {
        return Err(FrameError::Checksum);
    }
    Ok(Some((Frame { kind, payload: Bytes::copy_from_slice(payload) }, FRAME_HEADER_LEN + len)))
}

/// The payload length a frame header announces, unchecked: for sizing
/// receive buffers only (the decoder checks the header before trusting it).
pub fn announced_len(header: &[u8]) -> usize {
    match header.get(4..8) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => 0,
    }
}

/// A byte-stream frame decoder for one connection: bytes go in as they
/// arrive, whole frames come out. It allocates at most one frame of the
/// configured maximum (a header announcing more is an error at once).
#[derive(Debug)]
pub struct FrameDecoder {
    /// The stream from the start of the next frame: the bytes decoded next.
    /// Empty only when `later` is empty too.
    buf: BytesMut,
    /// Owned pieces that follow `buf` in the stream but not in memory, in
    /// order. A complete frame the engine holds back (backpressure) stays
    /// in `buf` while the next frame's pieces arrive; they wait here and
    /// become `buf` once that frame is taken, instead of being copied
    /// behind it.
    later: VecDeque<BytesMut>,
    max_payload: usize,
}

/// Whether `next` starts where `prev` ends in memory (so joining them may
/// be free: [`BytesMut::unsplit`] still copies if they are two allocations).
fn adjacent(prev: &BytesMut, next: &BytesMut) -> bool {
    prev.as_ptr().wrapping_add(prev.len()) == next.as_ptr()
}

impl FrameDecoder {
    /// A decoder accepting payloads up to `max_payload` bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameDecoder { buf: BytesMut::new(), later: VecDeque::new(), max_payload }
    }

    /// Appends received bytes (copied into the decoder's buffer, which is
    /// grown once for the whole frame its header announces).
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.later.is_empty() {
            self.push_owned(BytesMut::from(bytes));
            return;
        }
        self.buf.extend_from_slice(bytes);
        if let Some(h) = self.buf.get(..FRAME_HEADER_LEN) {
            // A header announcing more than the bound is refused by next_frame.
            let len = announced_len(h);
            if len <= self.max_payload {
                self.buf.reserve((FRAME_HEADER_LEN + len).saturating_sub(self.buf.len()));
            }
        }
    }

    /// Appends received bytes the runtime already owns. When they continue
    /// the buffered bytes in the same allocation (a runtime reading each
    /// frame into one buffer of the frame's size) nothing is copied, and
    /// the frame returned later shares that allocation; pieces of a frame
    /// that arrive while an earlier frame is still buffered wait, uncopied,
    /// until it is taken. The same frames and errors as by
    /// [`FrameDecoder::push`]: every check is made by
    /// [`FrameDecoder::next_frame`].
    pub fn push_owned(&mut self, bytes: BytesMut) {
        if bytes.is_empty() {
            return;
        }
        match self.later.back_mut() {
            Some(last) if adjacent(last, &bytes) => last.unsplit(bytes),
            Some(_) => self.later.push_back(bytes),
            None if self.buf.is_empty() || adjacent(&self.buf, &bytes) => self.buf.unsplit(bytes),
            None => self.later.push_back(bytes),
        }
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.later.iter().map(BytesMut::len).sum::<usize>()
    }

    /// Whether a frame has started arriving but is not complete (used for
    /// frame deadlines: a peer that trickles a frame is cut off).
    pub fn mid_frame(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Joins the next waiting piece to `buf`, which must reach `need`
    /// bytes: free when it is adjacent, one copy (and one growth to `need`)
    /// when not. False when no piece waits.
    fn join_next(&mut self, need: usize) -> bool {
        let Some(piece) = self.later.pop_front() else { return false };
        if !self.buf.is_empty() && !adjacent(&self.buf, &piece) {
            self.buf.reserve(need.saturating_sub(self.buf.len()).max(piece.len()));
        }
        self.buf.unsplit(piece);
        true
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed. The
    /// payload shares the buffer's allocation (no copy).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        while self.buf.len() < FRAME_HEADER_LEN {
            if !self.join_next(FRAME_HEADER_LEN) {
                return Ok(None);
            }
        }
        let h = &self.buf[..FRAME_HEADER_LEN];
        let (kind, len, stored) = parse_header(h, self.max_payload)?;
        let header: [u8; 8] = [h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]];
        while self.buf.len() < FRAME_HEADER_LEN + len {
            if !self.join_next(FRAME_HEADER_LEN + len) {
                return Ok(None);
            }
        }
        if crc(&header, &self.buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len]) != stored {
            return Err(FrameError::Checksum);
        }
        let frame = self.buf.split_to(FRAME_HEADER_LEN + len).freeze();
        if self.buf.is_empty() {
            if let Some(next) = self.later.pop_front() {
                self.buf = next;
            }
        }
        Ok(Some(Frame { kind, payload: frame.slice(FRAME_HEADER_LEN..) }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// F-N2: every single-byte corruption of a frame is detected.
    #[test]
    fn f_n2_frame_corruption_detected() {
        let f = encode(FrameType::Wal, b"hello wal bytes");
        assert_eq!(decode(&f, 1024).unwrap().unwrap().0.payload, Bytes::from_static(b"hello wal bytes"));
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x10;
            assert!(
                !matches!(decode(&bad, 1024), Ok(Some((fr, _))) if fr.payload == Bytes::from_static(b"hello wal bytes") && fr.kind == FrameType::Wal),
                "flip at {i}"
            );
        }
        assert!(matches!(decode(&f, 4), Err(FrameError::TooLarge { .. })));
        assert!(matches!(decode(&f[..5], 1024), Ok(None)));
        let mut d = FrameDecoder::new(1024);
        d.push(&f);
        d.push(&f[..3]);
        let taken = d.next_frame().unwrap().unwrap();
        assert_eq!(taken.payload, Bytes::from_static(b"hello wal bytes"));
        assert_eq!(d.buffered(), 3);
        assert!(d.next_frame().unwrap().is_none());
    }

    /// RES-3: a header announcing more than the maximum is refused after
    /// 12 bytes, before any payload is buffered.
    #[test]
    fn res_3_oversized_frame_refused_at_its_header() {
        let mut d = FrameDecoder::new(MAX_REPLICA_PAYLOAD);
        let mut header = encode(FrameType::Hello, &[]);
        header[4..8].copy_from_slice(&(16u32 * 1024 * 1024).to_le_bytes());
        d.push(&header);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
        assert!(d.buffered() <= FRAME_HEADER_LEN);
    }

    proptest::proptest! {
        /// F-N2: the decoder is total on arbitrary bytes, fed in arbitrary pieces.
        #[test]
        fn f_n2_decoder_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), cut in 0usize..200) {
            let _ = decode(&data, 64);
            let mut d = FrameDecoder::new(64);
            let cut = cut.min(data.len());
            d.push(&data[..cut]);
            let _ = d.next_frame();
            d.push(&data[cut..]);
            while let Ok(Some(_)) = d.next_frame() {}
        }
    }
}
