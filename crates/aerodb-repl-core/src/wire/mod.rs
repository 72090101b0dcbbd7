//! The replication wire protocol (docs/protocol.md): frames and the typed
//! messages they carry. Pure encoding and decoding; the sockets live in
//! `aerodb-repl-net`, the decisions in [`crate::engine`].

pub mod auth;
pub mod frame;
pub mod message;

pub use auth::AuthMessage;
pub use frame::{Frame, FrameDecoder, FrameError, FrameType, DEFAULT_MAX_PAYLOAD, FRAME_HEADER_LEN, MAX_REPLICA_PAYLOAD};
pub use message::{Message, MessageError, ReceivedChunk, ServeCode, ServeError};
