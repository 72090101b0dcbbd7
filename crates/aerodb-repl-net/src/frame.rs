//! Frames on the replication port (docs/protocol.md):
//!
//! ```text
//! off size field
//!   0    2 magic        0xAE52 LE
//!   2    1 frame type
//!   3    1 reserved     0
//!   4    4 payload_len  u32 LE (<= the configured maximum)
//!   8    4 crc32c       over bytes [0, 8) then the payload
//!  12    … payload
//! ```
//!
//! Decoding is total: any byte sequence yields a frame or a typed error,
//! never a panic, and never allocates more than the maximum frame size.

use std::io::{self, Read, Write};

use bytes::Bytes;
use thiserror::Error;

/// Frame header length.
pub const FRAME_HEADER_LEN: usize = 12;
const FRAME_MAGIC: u16 = 0xAE52;
/// Default maximum payload: 16 MiB plus room for a chunk header.
pub const DEFAULT_MAX_PAYLOAD: usize = 16 * 1024 * 1024 + 1024;

/// Frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl FrameType {
    fn from_u8(v: u8) -> Option<FrameType> {
        Some(match v {
            1 => FrameType::Hello,
            2 => FrameType::Accept,
            3 => FrameType::Refuse,
            4 => FrameType::Wal,
            5 => FrameType::Progress,
            6 => FrameType::Report,
            7 => FrameType::SnapshotBegin,
            8 => FrameType::SnapshotChunk,
            9 => FrameType::SnapshotEnd,
            10 => FrameType::Error,
            _ => return None,
        })
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

/// Why bytes are not a valid frame.
#[derive(Debug, Error)]
pub enum FrameError {
    /// The peer does not speak this protocol (first bytes wrong).
    #[error("bad frame magic {found:#06x}: peer is not an AeroDB replication endpoint")]
    BadMagic {
        /// What arrived.
        found: u16,
    },
    /// Unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// Reserved byte not zero.
    #[error("reserved header byte is {0}, expected 0")]
    Reserved(u8),
    /// Payload above the maximum.
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
    /// The connection ended or failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::BadMagic { .. } => "PEER_NOT_AERODB",
            FrameError::UnknownType(_) | FrameError::Reserved(_) => "PROTOCOL_ERROR",
            FrameError::TooLarge { .. } => "FRAME_TOO_LARGE",
            FrameError::Checksum => "FRAME_CHECKSUM",
            FrameError::Io(_) => "CONNECTION_LOST",
        }
    }
}

fn crc(header8: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header8), payload)
}

/// Encodes a frame.
pub fn encode(kind: FrameType, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let c = crc(&out[0..8], payload);
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Writes one frame (header and payload in one buffer).
pub fn write_frame(w: &mut impl Write, kind: FrameType, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(kind, payload))
}

/// Validates a header; returns (type, payload length, stored crc).
fn parse_header(h: &[u8; FRAME_HEADER_LEN], max_payload: usize) -> Result<(FrameType, usize, u32), FrameError> {
    let magic = u16::from_le_bytes([h[0], h[1]]);
    if magic != FRAME_MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let kind = FrameType::from_u8(h[2]).ok_or(FrameError::UnknownType(h[2]))?;
    if h[3] != 0 {
        return Err(FrameError::Reserved(h[3]));
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > max_payload {
        return Err(FrameError::TooLarge { len, max: max_payload });
    }
    Ok((kind, len, u32::from_le_bytes([h[8], h[9], h[10], h[11]])))
}

/// Reads one frame from a stream.
pub fn read_frame(r: &mut impl Read, max_payload: usize) -> Result<Frame, FrameError> {
    let mut h = [0u8; FRAME_HEADER_LEN];
    r.read_exact(&mut h)?;
    let (kind, len, stored) = parse_header(&h, max_payload)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    if crc(&h[0..8], &payload) != stored {
        return Err(FrameError::Checksum);
    }
    Ok(Frame { kind, payload: Bytes::from(payload) })
}

/// Decodes one frame from the start of `buf`: `Ok(None)` if more bytes are
/// needed, otherwise the frame and the bytes it used.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(h) = buf.get(..FRAME_HEADER_LEN) else { return Ok(None) };
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(h);
    let (kind, len, stored) = parse_header(&header, max_payload)?;
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else { return Ok(None) };
    if crc(&header[0..8], payload) != stored {
        return Err(FrameError::Checksum);
    }
    Ok(Some((Frame { kind, payload: Bytes::copy_from_slice(payload) }, FRAME_HEADER_LEN + len)))
}

/// Like [`decode`], but takes the frame out of `buf` without copying its
/// payload (the payload shares `buf`'s allocation).
pub fn take(buf: &mut bytes::BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    let Some(h) = buf.get(..FRAME_HEADER_LEN) else { return Ok(None) };
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(h);
    let (kind, len, stored) = parse_header(&header, max_payload)?;
    if buf.len() < FRAME_HEADER_LEN + len {
        return Ok(None);
    }
    if crc(&header[0..8], &buf[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len]) != stored {
        return Err(FrameError::Checksum);
    }
    let frame = buf.split_to(FRAME_HEADER_LEN + len).freeze();
    Ok(Some(Frame { kind, payload: frame.slice(FRAME_HEADER_LEN..) }))
}

#[cfg(test)]
mod tests {
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
        let mut buf = bytes::BytesMut::from(&f[..]);
        buf.extend_from_slice(&f[..3]);
        let taken = take(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(taken.payload, Bytes::from_static(b"hello wal bytes"));
        assert_eq!(&buf[..], &f[..3]);
        assert!(take(&mut buf, 1024).unwrap().is_none());
    }

    proptest::proptest! {
        /// F-N2: the decoder is total on arbitrary bytes.
        #[test]
        fn f_n2_decoder_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&data, 64);
        }
    }
}
