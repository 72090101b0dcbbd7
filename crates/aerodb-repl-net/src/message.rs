//! Typed messages carried by frames, and their (total) decoders.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

use aerodb_repl_core::handshake::{Accept, Hello, Refuse};
use aerodb_repl_core::pipeline::ReceivedChunk;
use aerodb_repl_core::status::{Positions, PrimaryProgress};
use aerodb_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};

use crate::frame::{Frame, FrameType};

/// A primary-side failure to serve (never a verdict about the replica).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServeError {
    /// Stable code.
    pub code: String,
    /// Detail.
    pub detail: String,
}

/// One decoded message.
#[derive(Clone, Debug)]
pub enum Message {
    /// Handshake request.
    Hello(Hello),
    /// Handshake accepted.
    Accept(Accept),
    /// Handshake refused.
    Refuse(Refuse),
    /// WAL bytes.
    Wal(ReceivedChunk),
    /// Primary progress.
    Progress(PrimaryProgress),
    /// Replica positions.
    Report(Positions),
    /// Snapshot manifest bytes.
    SnapshotBegin(Bytes),
    /// A piece of a snapshot file.
    SnapshotChunk {
        /// Index into the manifest's file list.
        file_index: u32,
        /// Byte offset in that file.
        offset: u64,
        /// The bytes.
        bytes: Bytes,
    },
    /// Snapshot transfer complete.
    SnapshotEnd,
    /// The primary cannot serve.
    Error(ServeError),
}

/// A frame whose payload does not match its type.
#[derive(Debug, Error)]
#[error("malformed {kind:?} frame: {detail}")]
pub struct MessageError {
    /// Frame type.
    pub kind: FrameType,
    /// What is wrong.
    pub detail: String,
}

fn json<T: DeserializeOwned>(f: &Frame) -> Result<T, MessageError> {
    serde_json::from_slice(&f.payload).map_err(|e| MessageError { kind: f.kind, detail: e.to_string() })
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

impl Message {
    /// Decodes a frame's payload according to its type.
    pub fn decode(f: &Frame) -> Result<Message, MessageError> {
        let bad = |detail: &str| MessageError { kind: f.kind, detail: detail.to_string() };
        let p = &f.payload;
        Ok(match f.kind {
            FrameType::Hello => Message::Hello(json(f)?),
            FrameType::Accept => Message::Accept(json(f)?),
            FrameType::Refuse => Message::Refuse(json(f)?),
            FrameType::Error => Message::Error(json(f)?),
            FrameType::Wal => {
                let start_lsn = u64_at(p, 0).ok_or_else(|| bad("short header"))?;
                let flags = *p.get(8).ok_or_else(|| bad("short header"))?;
                let (segment_start, body_at) = match flags {
                    0 => (None, 9),
                    1 => {
                        let h = p.get(9..9 + SEGMENT_HEADER_LEN as usize).ok_or_else(|| bad("short segment header"))?;
                        let header = SegmentHeader::decode(h).map_err(|e| bad(&e.to_string()))?;
                        (Some(header), 9 + SEGMENT_HEADER_LEN as usize)
                    }
                    _ => return Err(bad("unknown flags")),
                };
                Message::Wal(ReceivedChunk { start_lsn, segment_start, bytes: p.slice(body_at..) })
            }
            FrameType::Progress => {
                if p.len() != 16 {
                    return Err(bad("length"));
                }
                Message::Progress(PrimaryProgress { commit_id: u64_at(p, 0).unwrap_or(0), durable_lsn: u64_at(p, 8).unwrap_or(0) })
            }
            FrameType::Report => {
                if p.len() != 32 {
                    return Err(bad("length"));
                }
                Message::Report(Positions {
                    received_lsn: u64_at(p, 0).unwrap_or(0),
                    validated_lsn: u64_at(p, 8).unwrap_or(0),
                    applied_lsn: u64_at(p, 16).unwrap_or(0),
                    applied_commit_id: u64_at(p, 24).unwrap_or(0),
                })
            }
            FrameType::SnapshotBegin => Message::SnapshotBegin(p.clone()),
            FrameType::SnapshotChunk => {
                let idx = p.get(0..4).ok_or_else(|| bad("short header"))?;
                let file_index = u32::from_le_bytes([idx[0], idx[1], idx[2], idx[3]]);
                let offset = u64_at(p, 4).ok_or_else(|| bad("short header"))?;
                Message::SnapshotChunk { file_index, offset, bytes: p.slice(12..) }
            }
            FrameType::SnapshotEnd => {
                if !p.is_empty() {
                    return Err(bad("non-empty"));
                }
                Message::SnapshotEnd
            }
        })
    }

    /// Encodes into (frame type, payload).
    pub fn encode(&self) -> (FrameType, Vec<u8>) {
        let to_json = |v: &dyn erased::Ser| v.to_vec();
        match self {
            Message::Hello(h) => (FrameType::Hello, to_json(h)),
            Message::Accept(a) => (FrameType::Accept, to_json(a)),
            Message::Refuse(r) => (FrameType::Refuse, to_json(r)),
            Message::Error(e) => (FrameType::Error, to_json(e)),
            Message::Wal(c) => {
                let mut out = Vec::with_capacity(9 + SEGMENT_HEADER_LEN as usize + c.bytes.len());
                out.extend_from_slice(&c.start_lsn.to_le_bytes());
                match &c.segment_start {
                    Some(h) => {
                        out.push(1);
                        out.extend_from_slice(&h.encode());
                    }
                    None => out.push(0),
                }
                out.extend_from_slice(&c.bytes);
                (FrameType::Wal, out)
            }
            Message::Progress(p) => {
                let mut out = Vec::with_capacity(16);
                out.extend_from_slice(&p.commit_id.to_le_bytes());
                out.extend_from_slice(&p.durable_lsn.to_le_bytes());
                (FrameType::Progress, out)
            }
            Message::Report(p) => {
                let mut out = Vec::with_capacity(32);
                for v in [p.received_lsn, p.validated_lsn, p.applied_lsn, p.applied_commit_id] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                (FrameType::Report, out)
            }
            Message::SnapshotBegin(b) => (FrameType::SnapshotBegin, b.to_vec()),
            Message::SnapshotChunk { file_index, offset, bytes } => {
                let mut out = Vec::with_capacity(12 + bytes.len());
                out.extend_from_slice(&file_index.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(bytes);
                (FrameType::SnapshotChunk, out)
            }
            Message::SnapshotEnd => (FrameType::SnapshotEnd, Vec::new()),
        }
    }
}

mod erased {
    /// Object-safe JSON serialization for the control messages.
    pub trait Ser {
        fn to_vec(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_vec(&self) -> Vec<u8> {
            // Serializing plain structs of strings and integers cannot fail.
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}
