//! Blocking frame IO over `std::io` streams, for tools and tests that talk
//! the replication protocol directly. The runtimes use the engines' frame
//! decoders instead.

use std::io::{self, Read, Write};

use aerodb_repl_core::wire::{frame, Frame, FrameError, FrameType, FRAME_HEADER_LEN};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFrameError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream failed or ended.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: FrameType, payload: &[u8]) -> io::Result<()> {
    w.write_all(&frame::encode(kind, payload))
}

/// Reads one frame whose payload is at most `max_payload` bytes.
pub fn read_frame(r: &mut impl Read, max_payload: usize) -> Result<Frame, ReadFrameError> {
    let mut header = [0u8; FRAME_HEADER_LEN];
    r.read_exact(&mut header)?;
    let mut decoder = frame::FrameDecoder::new(max_payload);
    decoder.push(&header);
    if let Some(f) = decoder.next_frame()? {
        return Ok(f);
    }
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    decoder.push(&payload);
    decoder.next_frame()?.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete frame").into())
}
