//! The replica's receive buffers (the socket edge of the pipeline's
//! receiver). Bytes read from the socket are copied once, from a reused
//! read buffer into one buffer per frame, sized from the frame's header, and
//! handed to the engine as owned pieces: consecutive pieces of a frame are
//! adjacent parts of one allocation, so the engine's frame decoder joins
//! them and returns the frame without copying it
//! ([`aerodb_repl_core::wire::FrameDecoder::push_owned`]), and the WAL
//! records the validator slices out of it share it too.
//!
//! This module only sizes buffers: it reads the announced length of a
//! header and never trusts it. Every check of a frame (magic, type, size
//! bound, crc32c) is the engine's. A header announcing more than the bound
//! is handed over alone; the engine's decoder rejects it.

use bytes::BytesMut;

use aerodb_repl_core::wire::{announced_len, FRAME_HEADER_LEN};

/// Splits a received byte stream into per-frame buffers.
#[derive(Debug)]
pub struct FrameAssembler {
    /// The current frame's buffer (its unsent part).
    frame: BytesMut,
    /// Header bytes of the next frame while fewer than a header arrived.
    header: [u8; FRAME_HEADER_LEN],
    header_have: usize,
    /// Body bytes of the current frame still to come.
    body_left: usize,
    max_payload: usize,
}

impl FrameAssembler {
    /// Buffers for frames of at most `max_payload` payload bytes.
    pub fn new(max_payload: usize) -> Self {
        FrameAssembler { frame: BytesMut::new(), header: [0; FRAME_HEADER_LEN], header_have: 0, body_left: 0, max_payload }
    }

    /// Takes the bytes of one socket read; appends to `out`, in stream
    /// order, every piece that is ready to hand over (the concatenation of
    /// all pieces ever returned is exactly the stream, minus the bytes of a
    /// header that has not completely arrived yet).
    pub fn take(&mut self, mut data: &[u8], out: &mut Vec<BytesMut>) {
        while !data.is_empty() {
            if self.header_have < FRAME_HEADER_LEN {
                let n = data.len().min(FRAME_HEADER_LEN - self.header_have);
                self.header[self.header_have..self.header_have + n].copy_from_slice(&data[..n]);
                self.header_have += n;
                data = &data[n..];
                if self.header_have < FRAME_HEADER_LEN {
                    break;
                }
                let len = announced_len(&self.header);
                // Within the bound: one buffer for the whole frame. Beyond it
                // the header goes alone and the decoder refuses it.
                self.body_left = if len <= self.max_payload { len } else { 0 };
                self.frame = BytesMut::with_capacity(FRAME_HEADER_LEN + self.body_left);
                self.frame.extend_from_slice(&self.header);
            } else {
                let n = data.len().min(self.body_left);
                self.frame.extend_from_slice(&data[..n]);
                self.body_left -= n;
                data = &data[n..];
            }
            if self.body_left == 0 {
                // The frame is complete: the next bytes start a header.
                self.header_have = 0;
                out.push(self.frame.split());
            }
        }
        if !self.frame.is_empty() {
            out.push(self.frame.split());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use aerodb_repl_core::wire::{frame, FrameDecoder, FrameError, FrameType};

    fn stream() -> Vec<u8> {
        let mut s = Vec::new();
        for (i, len) in [0usize, 7, 70_000, 13, 300_000, 1].into_iter().enumerate() {
            let payload: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
            s.extend(frame::encode(FrameType::Wal, &payload));
        }
        s
    }

    fn frames_of(pieces: Vec<BytesMut>, copying: bool) -> Vec<Vec<u8>> {
        let mut d = FrameDecoder::new(1 << 20);
        let mut out = Vec::new();
        for p in pieces {
            if copying {
                d.push(&p);
            } else {
                d.push_owned(p);
            }
            while let Some(f) = d.next_frame().unwrap() {
                out.push(f.payload.to_vec());
            }
        }
        assert_eq!(d.buffered(), 0);
        out
    }

    /// P5-I4: however the socket cuts the stream, the pieces handed to the
    /// engine are exactly the stream's bytes in order, and decode (without
    /// copying) to the same frames as the copying path.
    #[test]
    fn p5_i4_receive_buffers_keep_the_stream_exact_under_any_cut() {
        let s = stream();
        let expected = frames_of(vec![BytesMut::from(&s[..])], true);
        assert_eq!(expected.len(), 6);
        for cut in [1usize, 5, 12, 13, 4096, 65_536, 256 * 1024, s.len()] {
            let mut a = FrameAssembler::new(1 << 20);
            let mut pieces = Vec::new();
            for chunk in s.chunks(cut) {
                a.take(chunk, &mut pieces);
            }
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(joined, s, "cut {cut}");
            assert_eq!(frames_of(pieces.clone(), false), expected, "cut {cut}");
            assert_eq!(frames_of(pieces, true), expected, "cut {cut}");
        }
    }

    /// P5-I4: a frame read in many pieces is returned without a copy (its
    /// payload lies in the buffer the pieces were cut from).
    #[test]
    fn p5_i4_a_frame_read_in_pieces_is_decoded_without_a_copy() {
        let payload = vec![7u8; 100_000];
        let s = frame::encode(FrameType::Wal, &payload);
        let mut a = FrameAssembler::new(1 << 20);
        let mut pieces = Vec::new();
        for chunk in s.chunks(4096) {
            a.take(chunk, &mut pieces);
        }
        let first = pieces[0].as_ptr() as usize;
        let mut d = FrameDecoder::new(1 << 20);
        for p in pieces {
            d.push_owned(p);
        }
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.payload.as_ptr() as usize, first + FRAME_HEADER_LEN);
        assert_eq!(&f.payload[..], &payload[..]);
    }

    /// P5-I4 / RES-3: frames the engine holds back (backpressure) while
    /// the next frames' pieces arrive decode to exactly the same frames,
    /// however the socket cut the stream, and a frame whose pieces all
    /// arrived behind a held frame is still returned without a copy.
    #[test]
    fn p5_i4_frames_held_back_are_decoded_without_copying_the_next() {
        let s = stream();
        let expected = frames_of(vec![BytesMut::from(&s[..])], true);
        for cut in [1usize, 5, 12, 13, 4096, 65_536, 256 * 1024, s.len()] {
            let mut a = FrameAssembler::new(1 << 20);
            let mut pieces = Vec::new();
            for chunk in s.chunks(cut) {
                a.take(chunk, &mut pieces);
            }
            let mut d = FrameDecoder::new(1 << 20);
            for p in pieces {
                d.push_owned(p);
            }
            assert_eq!(d.buffered(), s.len(), "cut {cut}");
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f.payload.to_vec());
            }
            assert_eq!(got, expected, "cut {cut}");
            assert_eq!(d.buffered(), 0);

            // Pieces in allocations of their own, handed over owned or
            // copied in turn, all before any frame is taken.
            let mut d = FrameDecoder::new(1 << 20);
            for (i, chunk) in s.chunks(cut).enumerate() {
                if i % 2 == 0 {
                    d.push_owned(BytesMut::from(chunk));
                } else {
                    d.push(chunk);
                }
            }
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f.payload.to_vec());
            }
            assert_eq!(got, expected, "separate pieces, cut {cut}");
            assert_eq!(d.buffered(), 0);
        }

        let held = frame::encode(FrameType::Wal, &[1u8; 5000]);
        let payload = vec![7u8; 100_000];
        let next = frame::encode(FrameType::Wal, &payload);
        let mut a = FrameAssembler::new(1 << 20);
        let mut pieces = Vec::new();
        a.take(&held, &mut pieces);
        let held_pieces = pieces.len();
        for chunk in next.chunks(4096) {
            a.take(chunk, &mut pieces);
        }
        let next_start = pieces[held_pieces].as_ptr() as usize;
        let mut d = FrameDecoder::new(1 << 20);
        for p in pieces {
            d.push_owned(p);
        }
        assert_eq!(&d.next_frame().unwrap().unwrap().payload[..], &[1u8; 5000][..]);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.payload.as_ptr() as usize, next_start + FRAME_HEADER_LEN, "the held-back frame's successor was copied");
        assert_eq!(&f.payload[..], &payload[..]);
    }

    /// F-N2: a header announcing more than the bound is handed over alone
    /// (no buffer of the announced size) and the decoder refuses it.
    #[test]
    fn f_n2_oversized_header_is_handed_over_alone_and_refused() {
        let mut header = frame::encode(FrameType::Wal, b"")[..FRAME_HEADER_LEN].to_vec();
        header[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut a = FrameAssembler::new(1024);
        let mut pieces = Vec::new();
        a.take(&header, &mut pieces);
        assert_eq!(pieces.len(), 1);
        assert!(pieces[0].capacity() < 1024);
        let mut d = FrameDecoder::new(1024);
        d.push_owned(pieces.remove(0));
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge { .. })));
    }
}
