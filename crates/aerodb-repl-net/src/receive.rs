//! The replica's receive buffers (the socket edge of the pipeline's
//! receiver). Each frame gets one buffer, sized from its header; once the
//! header is in, the socket is read straight into that buffer's body
//! ([`FrameAssembler::body_target`]), and only bytes that arrived in the
//! same read as a header are copied there from a reused read buffer. The
//! filled parts are handed to the engine as owned pieces: consecutive
//! pieces of a frame are adjacent parts of one allocation, so the engine's
//! frame decoder joins them and returns the frame without copying it
//! ([`aerodb_repl_core::wire::FrameDecoder::push_owned`]), and the WAL
//! records the validator slices out of it share it too.
//!
//! This module only sizes buffers: it reads the announced length of a
//! header and never trusts it. Every check of a frame (magic, type, size
//! bound, crc32c) is the engine's. A header announcing more than the bound
//! is handed over alone; the engine's decoder rejects it.

use std::io::Read;

use bytes::BytesMut;

use aerodb_repl_core::wire::{announced_len, FRAME_HEADER_LEN};

/// Splits a received byte stream into per-frame buffers.
#[derive(Debug)]
pub struct FrameAssembler {
    /// The current frame's buffer, zero-filled to the frame's length: its
    /// first `filled` bytes arrived and were not handed over yet.
    frame: BytesMut,
    filled: usize,
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
        FrameAssembler { frame: BytesMut::new(), filled: 0, header: [0; FRAME_HEADER_LEN], header_have: 0, body_left: 0, max_payload }
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
                // the header goes alone and the decoder refuses it. Zeroed
                // (a fresh allocation of that size is zero pages already)
                // so the socket can be read straight into the body.
                self.body_left = if len <= self.max_payload { len } else { 0 };
                self.frame = BytesMut::zeroed(FRAME_HEADER_LEN + self.body_left);
                self.frame[..FRAME_HEADER_LEN].copy_from_slice(&self.header);
                self.filled = FRAME_HEADER_LEN;
            } else {
                let n = data.len().min(self.body_left);
                self.frame[self.filled..self.filled + n].copy_from_slice(&data[..n]);
                self.filled += n;
                self.body_left -= n;
                data = &data[n..];
            }
            if self.body_left == 0 {
                self.frame_done(out);
            }
        }
        self.hand_over(out);
    }

    /// Where the next socket read may go: straight into the current
    /// frame's body (at most `max` bytes, never past the frame's end), or
    /// `None` when a header is expected (read into a buffer of your own and
    /// [`FrameAssembler::take`] it).
    pub fn body_target(&mut self, max: usize) -> Option<&mut [u8]> {
        if self.header_have < FRAME_HEADER_LEN || self.body_left == 0 {
            return None;
        }
        let n = self.body_left.min(max);
        Some(&mut self.frame[self.filled..self.filled + n])
    }

    /// `n` bytes were read into the slice [`FrameAssembler::body_target`]
    /// returned: appends them to `out` as a piece.
    pub fn body_filled(&mut self, n: usize, out: &mut Vec<BytesMut>) {
        let n = n.min(self.body_left);
        self.filled += n;
        self.body_left -= n;
        if self.body_left == 0 {
            self.frame_done(out);
        } else {
            self.hand_over(out);
        }
    }

    /// The frame is complete: hand it over; the next bytes start a header.
    fn frame_done(&mut self, out: &mut Vec<BytesMut>) {
        self.header_have = 0;
        self.hand_over(out);
    }

    fn hand_over(&mut self, out: &mut Vec<BytesMut>) {
        if self.filled > 0 {
            out.push(self.frame.split_to(self.filled));
            self.filled = 0;
        }
    }

    /// One read from `reader`: straight into the current frame's body when
    /// one is arriving, else into `buf` and through
    /// [`FrameAssembler::take`]. Appends the pieces it completes to `out`;
    /// returns what `read` returned (0 at the end of the stream).
    pub fn read_from<R: Read + ?Sized>(&mut self, reader: &mut R, buf: &mut [u8], out: &mut Vec<BytesMut>) -> std::io::Result<usize> {
        match self.body_target(buf.len()) {
            Some(target) => {
                let n = reader.read(target)?;
                self.body_filled(n, out);
                Ok(n)
            }
            None => {
                let n = reader.read(buf)?;
                self.take(&buf[..n], out);
                Ok(n)
            }
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

    /// A socket that returns at most `cut` bytes per read and remembers
    /// where each read landed.
    struct Cuts<'a> {
        data: &'a [u8],
        cut: usize,
        landed: Vec<(usize, usize)>,
    }

    impl std::io::Read for Cuts<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.data.len().min(self.cut).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.landed.push((buf.as_ptr() as usize, n));
            Ok(n)
        }
    }

    fn read_all(s: &[u8], cut: usize, buf_len: usize) -> (Vec<BytesMut>, Vec<(usize, usize)>) {
        let mut socket = Cuts { data: s, cut, landed: Vec::new() };
        let mut a = FrameAssembler::new(1 << 20);
        let mut buf = vec![0u8; buf_len];
        let mut pieces = Vec::new();
        while a.read_from(&mut socket, &mut buf, &mut pieces).unwrap() > 0 {}
        (pieces, socket.landed)
    }

    /// P5-I4: reading the socket through the assembler (frame bodies read
    /// straight into their buffers) hands over exactly the stream, however
    /// the socket cuts it, and the pieces decode without a copy to the
    /// same frames as the copying path.
    #[test]
    fn p5_i4_reads_into_frame_buffers_keep_the_stream_exact_under_any_cut() {
        let s = stream();
        let expected = frames_of(vec![BytesMut::from(&s[..])], true);
        for cut in [1usize, 5, 12, 13, 4096, 65_536, s.len()] {
            for buf_len in [7usize, 4096, 256 * 1024] {
                let (pieces, _) = read_all(&s, cut, buf_len);
                let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
                assert_eq!(joined, s, "cut {cut}, read buffer {buf_len}");
                assert_eq!(frames_of(pieces, false), expected, "cut {cut}, read buffer {buf_len}");
            }
        }
    }

    /// P5-I4: once a frame's header is in, its body is read straight into
    /// the frame's buffer: of a 100,000-byte frame read 4,096 bytes at a
    /// time, only the first read (the header and the body bytes that came
    /// with it) lands in the read buffer.
    #[test]
    fn p5_i4_frame_bodies_are_read_straight_into_their_buffer() {
        let payload = vec![9u8; 100_000];
        let s = frame::encode(FrameType::Wal, &payload);
        let (pieces, landed) = read_all(&s, 4096, 256 * 1024);
        let mut d = FrameDecoder::new(1 << 20);
        for p in pieces {
            d.push_owned(p);
        }
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(&f.payload[..], &payload[..]);
        let frame_start = f.payload.as_ptr() as usize - FRAME_HEADER_LEN;
        let inside = |&(at, n): &(usize, usize)| at >= frame_start && at + n <= frame_start + s.len();
        let reads = landed.iter().filter(|(_, n)| *n > 0).count();
        assert_eq!(reads, s.len().div_ceil(4096));
        assert_eq!(landed.iter().filter(|l| l.1 > 0 && inside(l)).count(), reads - 1, "{landed:?}");
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
