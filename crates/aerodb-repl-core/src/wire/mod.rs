//! The replication wire protocol (docs/protocol.md): frames and the typed
//! messages they carry. Pure encoding and decoding; the sockets live in
//! `aerodb-repl-net`, the decisions in [`crate::engine`].
//!
//! Bytes arrive in arbitrary pieces; the decoder yields whole frames, each
//! checked (magic, type, length bound, crc32c) before its payload is parsed:
//!
//! ```
//! use aerodb_repl_core::wire::{FrameDecoder, Message, DEFAULT_MAX_PAYLOAD};
//!
//! let sent = Message::SnapshotChunk { file_index: 0, offset: 4096, bytes: bytes::Bytes::from_static(b"data") };
//! let wire = sent.to_frame();
//! let mut decoder = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
//! decoder.push(&wire[..5]);
//! assert!(decoder.next_frame().unwrap().is_none(), "half a frame is not a frame");
//! decoder.push(&wire[5..]);
//! let frame = decoder.next_frame().unwrap().expect("a whole frame");
//! assert_eq!(Message::decode(&frame).unwrap(), sent);
//! ```

pub mod auth;
pub mod frame;
pub mod message;

pub use auth::AuthMessage;
pub use frame::{announced_len, Frame, FrameDecoder, FrameError, FrameType, OutFrame, DEFAULT_MAX_PAYLOAD, FRAME_HEADER_LEN, MAX_REPLICA_PAYLOAD};
pub use message::{Message, MessageError, ReceivedChunk, ServeCode, ServeError};
