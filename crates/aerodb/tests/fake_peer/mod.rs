//! A scripted peer on the replication port, speaking the real wire format
//! through `aerodb_repl_core::wire` (frames and typed messages): a fake
//! primary that a real `aerodb replica` connects to, and a fake replica
//! connection to a real `aerodb primary`. Tests script every frame. A
//! payload the typed messages cannot express (an ACCEPT whose cluster id is
//! not one, on purpose) is sent as raw JSON inside a real frame
//! ([`Peer::send_raw`]). Every wait has a deadline; nothing sleeps.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use aerodb_repl_core::handshake::{Accept, Hello, HelloRequest, PROTOCOL_VERSION};
use aerodb_repl_core::ids::{ClusterId, ReplicaId};
use aerodb_repl_core::wire::{frame, FrameDecoder, FrameType, Message, ReceivedChunk, ServeError, DEFAULT_MAX_PAYLOAD};
use aerodb_wal::record::peek_record_len;
use aerodb_wal::segment::{SegmentHeader, SEGMENT_HEADER_LEN};
use aerodb_wal::Lsn;
use bytes::Bytes;

/// Deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A listening fake primary: accepts connections in the background; a test
/// takes them one by one with [`FakePrimary::accept`].
pub struct FakePrimary {
    pub addr: String,
    conns: Receiver<TcpStream>,
}

impl FakePrimary {
    pub fn bind() -> FakePrimary {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, conns) = mpsc::channel();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        FakePrimary { addr, conns }
    }

    /// The next connection a replica opened.
    pub fn accept(&self) -> Peer {
        let stream = self.conns.recv_timeout(DEADLINE).expect("a replica connects to the fake primary");
        Peer::new(stream, DEFAULT_MAX_PAYLOAD)
    }

    /// How many more connections arrived and wait to be accepted.
    pub fn pending(&self) -> usize {
        self.conns.try_iter().count()
    }
}

/// What reading the next frame gave.
#[derive(Debug)]
pub enum Next {
    Message(Message),
    /// The peer closed the connection (or reset it).
    Closed,
    /// Nothing complete within the wait.
    Nothing,
}

/// One connection speaking frames.
pub struct Peer {
    pub stream: TcpStream,
    decoder: FrameDecoder,
}

impl Peer {
    fn new(stream: TcpStream, max_payload: usize) -> Peer {
        stream.set_nodelay(true).unwrap();
        Peer { stream, decoder: FrameDecoder::new(max_payload) }
    }

    /// A connection to a real primary's replication port (as a replica).
    pub fn connect(addr: &str) -> Peer {
        Peer::new(TcpStream::connect(addr).unwrap(), DEFAULT_MAX_PAYLOAD)
    }

    /// Sends one message in its frame.
    pub fn send(&mut self, m: &Message) -> std::io::Result<()> {
        self.stream.write_all(&m.to_frame())
    }

    /// Sends a real frame around a payload written by hand: only for
    /// hostile payloads the typed messages cannot express.
    pub fn send_raw(&mut self, kind: FrameType, payload: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(&frame::encode(kind, payload))
    }

    /// Sends raw bytes (a frame header on its own, a byte of a frame).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next message, waiting at most `wait`.
    pub fn next_within(&mut self, wait: Duration) -> Next {
        let until = Instant::now() + wait;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => return Next::Message(Message::decode(&f).unwrap_or_else(|e| panic!("the node sent a malformed {:?}: {e}", f.kind))),
                Ok(None) => {}
                Err(e) => panic!("the node sent a bad frame: {e}"),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Nothing;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 64 * 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => return Next::Closed,
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Next::Nothing,
                Err(_) => return Next::Closed,
            }
        }
    }

    /// The next message; panics if the peer closes or the deadline passes.
    pub fn recv(&mut self) -> Message {
        match self.next_within(DEADLINE) {
            Next::Message(m) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// The next HELLO.
    pub fn recv_hello(&mut self) -> Hello {
        match self.recv() {
            Message::Hello(h) => h,
            other => panic!("expected HELLO, got {other:?}"),
        }
    }

    /// Reads until the peer closes; returns the ERROR it sent first, if any
    /// (other messages, e.g. WAL of a session being refused, are skipped).
    pub fn error_then_close(&mut self) -> Option<ServeError> {
        let mut error = None;
        let until = Instant::now() + DEADLINE;
        loop {
            match self.next_within(until.saturating_duration_since(Instant::now())) {
                Next::Message(Message::Error(e)) if error.is_none() => error = Some(e),
                Next::Message(_) => {}
                Next::Closed => return error,
                Next::Nothing => panic!("the node did not close the connection in time (error so far: {error:?})"),
            }
        }
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A HELLO as a real replica sends it.
pub fn hello(replica_id: &str, request: HelloRequest) -> Message {
    Message::Hello(Hello { protocol_version: PROTOCOL_VERSION, cluster_id: None, replica_id: ReplicaId::parse(replica_id).unwrap(), name: None, request })
}

/// An ACCEPT of `cluster_id` streaming from `start_lsn` (None: a snapshot).
pub fn accept(cluster_id: &str, commit_id: u64, durable_lsn: Lsn, start_lsn: Option<Lsn>) -> Message {
    Message::Accept(Accept {
        cluster_id: ClusterId::parse(cluster_id).unwrap(),
        primary_commit_id: commit_id,
        durable_lsn,
        start_lsn,
        client_addr: None,
        snapshot_resume: None,
    })
}

/// A WAL frame: `bytes` at `start_lsn`, starting the segment `segment` when given.
pub fn wal(start_lsn: Lsn, segment: Option<SegmentHeader>, bytes: &[u8]) -> Message {
    Message::Wal(ReceivedChunk { start_lsn, segment_start: segment, bytes: Bytes::copy_from_slice(bytes) })
}

/// A real primary's WAL, read back from its data directory: the first
/// segment's header and the records after it (each its exact bytes).
pub struct RealWal {
    pub header: SegmentHeader,
    pub records: Vec<Vec<u8>>,
}

impl RealWal {
    /// Reads the first segment of `data_dir/wal` (the tests write few
    /// enough records for it to hold them all).
    pub fn read(data_dir: &Path) -> RealWal {
        let bytes = std::fs::read(data_dir.join("wal").join(aerodb_wal::segment::segment_file_name(0))).unwrap();
        let header = SegmentHeader::decode(&bytes).unwrap();
        let mut records = Vec::new();
        let mut at = SEGMENT_HEADER_LEN as usize;
        while let Ok(len) = peek_record_len(&bytes[at..]) {
            records.push(bytes[at..at + len].to_vec());
            at += len;
        }
        RealWal { header, records }
    }

    /// End LSN of the first `n` records.
    pub fn end_of(&self, n: usize) -> Lsn {
        self.header.start_lsn + self.records[..n].iter().map(|r| r.len() as u64).sum::<u64>()
    }
}
