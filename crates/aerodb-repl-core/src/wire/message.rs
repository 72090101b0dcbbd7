//! Typed messages carried by frames, their (total) decoders, and the
//! validation of every field a peer sends (RES-4): ids and cluster ids by
//! their newtypes, text fields bounded, positions ordered.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use aerodb_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::{CommitId, Lsn};

use crate::handshake::{Accept, Hello, Refuse};
use crate::positions::{Positions, PrimaryProgress, ProgressTimes, MAX_TIME_MS};
use crate::wire::auth::AuthMessage;
use crate::wire::frame::{encode_parts, encode_with, Frame, FrameType, OutFrame};

/// Longest human-readable text (`detail`) accepted from a peer.
pub const MAX_DETAIL_BYTES: usize = 4096;
/// Longest detail of a [`MessageError`]: a decode error may quote the
/// peer's bytes (a serde error quotes the offending string), and is logged
/// and shown, so it carries at most this much of them (RES-4).
pub const MAX_ERROR_DETAIL_BYTES: usize = 512;

/// `text` as it may be stored, logged or shown (RES-4): control characters
/// escaped (no terminal escapes or forged log lines from a peer), and at
/// most `max` bytes, cut on a character boundary with a note of the
/// original length. Idempotent: shown text is shown unchanged.
pub fn shown_text(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    let mut cut = false;
    for c in text.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            cut = true;
            break;
        }
    }
    if cut {
        let note = format!(" ... ({} bytes)", text.len());
        let room = if note.len() <= max { max - note.len() } else { max };
        let mut end = room.min(out.len());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        if note.len() <= max {
            out.push_str(&note);
        }
    }
    out
}

/// WAL bytes as they arrived from the primary (one WAL frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedChunk {
    /// LSN of the first byte.
    pub start_lsn: Lsn,
    /// The primary's segment header when the chunk starts a segment.
    pub segment_start: Option<SegmentHeader>,
    /// Verbatim bytes (whole records when sent by an AeroDB primary; the
    /// receiver does not rely on it).
    pub bytes: Bytes,
}

impl ReceivedChunk {
    /// First LSN after the chunk.
    pub fn end_lsn(&self) -> Lsn {
        self.start_lsn.saturating_add(self.bytes.len() as u64)
    }
}

/// Why the primary does not serve a connection: it cannot (its own WAL or
/// snapshot, its connection cap, shutdown), or it refuses what the peer
/// sent (a frame too large, a malformed frame or field, no HELLO in time).
/// Never a verdict about the replica's history: the replica retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServeCode {
    /// No snapshot can be served for a bootstrap (REPL-8).
    SnapshotUnavailable,
    /// The primary cannot read its own WAL to decide or to ship (REPL-10: it never guesses).
    PrimaryWalUnreadable,
    /// The replication port is at its connection limit (RES-3).
    TooManyConnections,
    /// The primary is shutting down.
    ShuttingDown,
    /// The replica's frame announced a payload above what a primary accepts
    /// from a replica (RES-3): refused at its header, nothing buffered.
    FrameTooLarge,
    /// A malformed or unexpected frame or field from the replica: a HELLO
    /// field outside its documented format, a REPORT claiming more than the
    /// primary sent, a bad frame (RES-4, F-N2).
    ProtocolError,
    /// No complete HELLO within the deadline after the connection was
    /// accepted (RES-3).
    HelloTimeout,
    /// The replication port speaks TLS only and the replica connected in
    /// plain TCP (sent unencrypted, before any TLS).
    TlsRequired,
}

impl ServeCode {
    /// The exact code string.
    pub fn as_str(self) -> &'static str {
        match self {
            ServeCode::SnapshotUnavailable => "SNAPSHOT_UNAVAILABLE",
            ServeCode::PrimaryWalUnreadable => "PRIMARY_WAL_UNREADABLE",
            ServeCode::TooManyConnections => "TOO_MANY_CONNECTIONS",
            ServeCode::ShuttingDown => "SHUTTING_DOWN",
            ServeCode::FrameTooLarge => "FRAME_TOO_LARGE",
            ServeCode::ProtocolError => "PROTOCOL_ERROR",
            ServeCode::HelloTimeout => "HELLO_TIMEOUT",
            ServeCode::TlsRequired => "TLS_REQUIRED",
        }
    }
    /// The rule behind it.
    pub fn rule_id(self) -> &'static str {
        match self {
            ServeCode::SnapshotUnavailable => "REPL-8",
            ServeCode::PrimaryWalUnreadable => "REPL-10",
            ServeCode::TooManyConnections => "RES-3",
            ServeCode::ShuttingDown => "F-N1",
            ServeCode::FrameTooLarge | ServeCode::HelloTimeout => "RES-3",
            ServeCode::ProtocolError => "RES-4",
            ServeCode::TlsRequired => "REPL-1",
        }
    }
}

/// A primary-side failure to serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeError {
    /// Stable code.
    pub code: ServeCode,
    /// Detail (bounded when decoded).
    pub detail: String,
}

impl ServeError {
    /// The answer to a connection beyond the replication port's cap of
    /// `max` connections (RES-3): the replica retries with backoff.
    pub fn too_many_connections(max: usize) -> ServeError {
        ServeError { code: ServeCode::TooManyConnections, detail: format!("the replication port serves at most {max} connections; retry later") }
    }
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Handshake request.
    Hello(Hello),
    /// Handshake accepted.
    Accept(Accept),
    /// Handshake refused.
    Refuse(Refuse),
    /// WAL bytes.
    Wal(ReceivedChunk),
    /// Primary progress and, since protocol version 2, its commit times.
    Progress(PrimaryProgress, ProgressTimes),
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
    /// The v2 token authentication phase ([`crate::wire::auth`]).
    Auth(AuthMessage),
}

/// A frame whose payload does not match its type (a protocol error, F-N2).
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("malformed {kind} frame: {detail}")]
pub struct MessageError {
    /// Frame type name.
    pub kind: String,
    /// What is wrong.
    pub detail: String,
}

impl MessageError {
    /// The error for a `kind` frame, its detail shown boundedly (RES-4: a
    /// decoder's message may quote the peer's bytes).
    pub(crate) fn new(kind: FrameType, detail: impl Into<String>) -> Self {
        MessageError { kind: format!("{kind:?}"), detail: shown_text(&detail.into(), MAX_ERROR_DETAIL_BYTES) }
    }
}

fn json<T: DeserializeOwned>(f: &Frame) -> Result<T, MessageError> {
    serde_json::from_slice(&f.payload).map_err(|e| MessageError::new(f.kind, e.to_string()))
}

fn bounded(kind: FrameType, detail: &str) -> Result<(), MessageError> {
    if detail.len() > MAX_DETAIL_BYTES {
        return Err(MessageError::new(kind, format!("detail of {} bytes exceeds {MAX_DETAIL_BYTES}", detail.len())));
    }
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// PROGRESS payload length (protocol version 2): six u64 LE.
pub const PROGRESS_LEN: usize = 48;

const WAL_FLAG_CONTINUES: u8 = 0;
const WAL_FLAG_SEGMENT_START: u8 = 1;

impl Message {
    /// Decodes a frame's payload according to its type, validating every
    /// field against its documented format and range (RES-4).
    pub fn decode(f: &Frame) -> Result<Message, MessageError> {
        let bad = |detail: &str| MessageError::new(f.kind, detail);
        let p = &f.payload;
        if let Some(auth) = AuthMessage::decode(f) {
            return auth.map(Message::Auth);
        }
        Ok(match f.kind {
            FrameType::Hello => Message::Hello(json(f)?),
            FrameType::Accept => Message::Accept(json(f)?),
            FrameType::Refuse => {
                let mut r: Refuse = json(f)?;
                bounded(f.kind, &r.detail)?;
                r.detail = shown_text(&r.detail, MAX_DETAIL_BYTES);
                Message::Refuse(r)
            }
            FrameType::Error => {
                let mut e: ServeError = json(f)?;
                bounded(f.kind, &e.detail)?;
                e.detail = shown_text(&e.detail, MAX_DETAIL_BYTES);
                Message::Error(e)
            }
            FrameType::Wal => {
                let start_lsn = u64_at(p, 0).ok_or_else(|| bad("short header"))?;
                let flags = *p.get(8).ok_or_else(|| bad("short header"))?;
                let (segment_start, body_at) = match flags {
                    WAL_FLAG_CONTINUES => (None, 9),
                    WAL_FLAG_SEGMENT_START => {
                        let h = p.get(9..9 + SEGMENT_HEADER_LEN as usize).ok_or_else(|| bad("short segment header"))?;
                        let header = SegmentHeader::decode(h).map_err(|e| bad(&e.to_string()))?;
                        (Some(header), 9 + SEGMENT_HEADER_LEN as usize)
                    }
                    _ => return Err(bad("unknown flags")),
                };
                if start_lsn.checked_add((p.len() - body_at) as u64).is_none() {
                    return Err(bad("chunk end overflows the LSN space"));
                }
                Message::Wal(ReceivedChunk { start_lsn, segment_start, bytes: p.slice(body_at..) })
            }
            FrameType::Progress => {
                let field = |i: usize| u64_at(p, i * 8);
                let (
                    Some(commit_id),
                    Some(durable_lsn),
                    Some(primary_time_ms),
                    Some(commit_time_ms),
                    Some(next_commit_id),
                    Some(next_commit_time_ms),
                    PROGRESS_LEN,
                ) = (field(0), field(1), field(2), field(3), field(4), field(5), p.len())
                else {
                    return Err(bad("length"));
                };
                if [primary_time_ms, commit_time_ms, next_commit_time_ms].iter().any(|t| *t > MAX_TIME_MS) {
                    return Err(bad("a time beyond 2^53 ms"));
                }
                if next_commit_id > commit_id {
                    return Err(bad("next_commit_id beyond commit_id"));
                }
                let times = ProgressTimes { primary_time_ms, commit_time_ms, next_commit_id, next_commit_time_ms };
                Message::Progress(PrimaryProgress { commit_id, durable_lsn }, times)
            }
            FrameType::Report => {
                let fields = (u64_at(p, 0), u64_at(p, 8), u64_at(p, 16), u64_at(p, 24), p.len());
                let (Some(received_lsn), Some(validated_lsn), Some(applied_lsn), Some(applied_commit_id), 32) = fields else {
                    return Err(bad("length"));
                };
                let positions = Positions { received_lsn, validated_lsn, applied_lsn, applied_commit_id };
                if !(applied_lsn <= validated_lsn && validated_lsn <= received_lsn) {
                    return Err(bad("positions out of order (need applied <= validated <= received)"));
                }
                Message::Report(positions)
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
            FrameType::AuthBegin | FrameType::AuthChallenge | FrameType::AuthProof | FrameType::AuthRefuse => {
                return Err(bad("authentication frame not decoded by the auth family"))
            }
        })
    }

    /// The frame type this message travels in.
    pub fn kind(&self) -> FrameType {
        match self {
            Message::Hello(_) => FrameType::Hello,
            Message::Accept(_) => FrameType::Accept,
            Message::Refuse(_) => FrameType::Refuse,
            Message::Wal(_) => FrameType::Wal,
            Message::Progress(..) => FrameType::Progress,
            Message::Report(_) => FrameType::Report,
            Message::SnapshotBegin(_) => FrameType::SnapshotBegin,
            Message::SnapshotChunk { .. } => FrameType::SnapshotChunk,
            Message::SnapshotEnd => FrameType::SnapshotEnd,
            Message::Error(_) => FrameType::Error,
            Message::Auth(a) => a.kind(),
        }
    }

    /// Encodes the payload.
    pub fn payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload_len_hint());
        self.write_payload(&mut out);
        out
    }

    /// About how long the payload is (exact for the bulk messages).
    fn payload_len_hint(&self) -> usize {
        match self {
            Message::Wal(c) => 9 + SEGMENT_HEADER_LEN as usize + c.bytes.len(),
            Message::SnapshotChunk { bytes, .. } => 12 + bytes.len(),
            Message::SnapshotBegin(b) => b.len(),
            _ => 64,
        }
    }

    /// Appends the payload to `out`.
    fn write_payload(&self, out: &mut Vec<u8>) {
        self.write_payload_head(out);
        if let Some(bulk) = self.bulk() {
            out.extend_from_slice(bulk);
        }
    }

    /// The bytes a WAL chunk or snapshot piece carries: the end of its
    /// payload, sent from the buffer they were read into
    /// ([`Message::to_out_frame`]). `None` for every other message.
    fn bulk(&self) -> Option<&Bytes> {
        match self {
            Message::Wal(c) => Some(&c.bytes),
            Message::SnapshotChunk { bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    /// Appends the payload up to its bulk bytes ([`Message::bulk`]): the
    /// whole payload of a message without any.
    fn write_payload_head(&self, out: &mut Vec<u8>) {
        fn to_json<T: Serialize>(out: &mut Vec<u8>, v: &T) {
            // Plain structs of strings, integers and enums always serialize.
            let _ = serde_json::to_writer(out, v);
        }
        match self {
            Message::Hello(h) => to_json(out, h),
            Message::Accept(a) => to_json(out, a),
            Message::Refuse(r) => to_json(out, r),
            Message::Error(e) => to_json(out, e),
            Message::Wal(c) => {
                out.extend_from_slice(&c.start_lsn.to_le_bytes());
                match &c.segment_start {
                    Some(h) => {
                        out.push(WAL_FLAG_SEGMENT_START);
                        out.extend_from_slice(&h.encode());
                    }
                    None => out.push(WAL_FLAG_CONTINUES),
                }
            }
            Message::Progress(p, t) => {
                for v in [p.commit_id, p.durable_lsn, t.primary_time_ms, t.commit_time_ms, t.next_commit_id, t.next_commit_time_ms] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Message::Report(p) => {
                for v in [p.received_lsn, p.validated_lsn, p.applied_lsn, p.applied_commit_id] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            Message::SnapshotBegin(b) => out.extend_from_slice(b),
            Message::SnapshotChunk { file_index, offset, .. } => {
                out.extend_from_slice(&file_index.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
            }
            Message::SnapshotEnd => {}
            Message::Auth(a) => out.extend_from_slice(&a.payload()),
        }
    }

    /// Encodes into (frame type, payload).
    pub fn encode(&self) -> (FrameType, Vec<u8>) {
        (self.kind(), self.payload())
    }

    /// The whole frame (header and payload) ready to send.
    pub fn to_frame(&self) -> Bytes {
        Bytes::from(encode_with(self.kind(), self.payload_len_hint(), |out| self.write_payload(out)))
    }

    /// The frame to send: the same bytes as [`Message::to_frame`], but a
    /// WAL chunk's or snapshot piece's bytes stay in their own buffer (the
    /// one they were read into) behind the header, instead of being
    /// copied into the frame.
    pub fn to_out_frame(&self) -> OutFrame {
        match self.bulk() {
            Some(bulk) => encode_parts(self.kind(), |out| self.write_payload_head(out), bulk.clone()),
            None => OutFrame::from(encode_with(self.kind(), self.payload_len_hint(), |out| self.write_payload(out))),
        }
    }
}

/// A REPORT claims positions the primary never sent (RES-4): shown and
/// stored positions are always within what the primary itself sent.
pub fn check_report(report: &Positions, sent_lsn: Lsn, sent_commit_id: CommitId) -> Result<(), MessageError> {
    if report.received_lsn > sent_lsn || report.applied_commit_id > sent_commit_id {
        return Err(MessageError {
            kind: "Report".into(),
            detail: format!(
                "replica reports received LSN {} / CommitId {} but the primary has sent only up to LSN {sent_lsn} / CommitId {sent_commit_id}",
                report.received_lsn, report.applied_commit_id
            ),
        });
    }
    Ok(())
}
