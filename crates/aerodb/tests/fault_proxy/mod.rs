//! A fault-injecting TCP proxy for the replication port (F-N1, F-N2, F-V1,
//! F-V2, F-D3 tests): it sits between a replica and the primary's
//! `--repl-listen` address, forwards replica → primary bytes verbatim and
//! primary → replica bytes frame by frame, and lets a test:
//!
//! - cut every connection now, refuse new ones while partitioned (accept then
//!   close at once) and allow them again;
//! - stall primary → replica forwarding until released (the forwarding
//!   threads wait on a condvar);
//! - damage one primary → replica frame: corrupt a payload byte (frame crc
//!   now wrong), duplicate it, or reorder it with the next WAL frame;
//! - rewrite WAL frames and re-encode them with a valid frame crc: flip a
//!   byte inside one record (only the record crc32c catches it), drop one
//!   record and shift later LSNs (a gap), or give one record a wrong state
//!   digest while keeping the fingerprint chain valid (re-chaining every
//!   later record across frames);
//! - retarget the upstream (a restarted primary listens on a new port).
//!
//! Every fault fires once and is logged as a [`FaultEvent`] with the real
//! LSN / CommitId / digests it touched.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use aerodb_repl_core::pipeline::ReceivedChunk;
use aerodb_repl_core::wire::Message;
use aerodb_repl_core::wire::{frame, Frame, FrameType, DEFAULT_MAX_PAYLOAD, FRAME_HEADER_LEN};
use aerodb_wal::record::{decode_record, encode_body, peek_record_len, record_identity};
use aerodb_wal::{CommitId, Fingerprint, Lsn, StateDigest, GENESIS_FINGERPRINT};
use bytes::Bytes;

/// What to do to the targeted primary → replica WAL frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Flip one payload byte and keep the old frame crc (→ FRAME_CHECKSUM).
    CorruptFrame,
    /// Send the frame twice (→ out-of-order LSN, a protocol error).
    DuplicateFrame,
    /// Hold the frame and send it after the next WAL frame (→ out-of-order LSN).
    ReorderWithNextWal,
    /// Flip one byte inside the targeted record and re-encode the frame with
    /// a valid frame crc (→ record crc32c mismatch, F-V1 / CORE-2).
    FlipRecordByte,
    /// Remove the targeted record; later WAL frames are shifted down by its
    /// length (→ CommitId / LSN discontinuity, F-V2).
    DropRecord,
    /// Give the targeted record a wrong state digest, recompute its
    /// fingerprint and crc, and re-chain every later record (→ APPLY_DIVERGED, F-D3).
    RewriteDigest,
}

/// Which WAL frame a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The n-th WAL frame seen after arming (1 = the next one); record
    /// actions hit its first record.
    NthWalFrame(u64),
    /// The WAL frame carrying the record with this CommitId (and that record).
    Commit(CommitId),
}

/// One fault that fired.
#[derive(Clone, Debug)]
pub struct FaultEvent {
    pub action: Action,
    /// start_lsn of the frame as the primary sent it.
    pub frame_start_lsn: Lsn,
    /// Start LSN of the record touched (record actions), as the primary numbered it.
    pub record_lsn: Option<Lsn>,
    /// CommitId of the record touched (record actions) or of the frame's first record.
    pub commit_id: Option<CommitId>,
    /// CommitIds of every record in the frame as the primary sent it.
    pub frame_commits: Vec<CommitId>,
    /// RewriteDigest: the digest the primary wrote.
    pub original_digest: Option<StateDigest>,
    /// RewriteDigest: the digest the replica received instead.
    pub forged_digest: Option<StateDigest>,
}

struct Armed {
    action: Action,
    target: Target,
    /// WAL frames seen when armed (for `NthWalFrame`).
    base: u64,
}

/// One registered connection: both sockets, to cut them.
struct Conn {
    id: u64,
    replica: TcpStream,
    primary: TcpStream,
}

struct State {
    upstream: String,
    partitioned: bool,
    stalled: bool,
    /// Bumped by every cut; a connection from an older epoch is dead.
    epoch: u64,
    conns: Vec<Conn>,
    next_conn: u64,
    accepted: u64,
    refused: u64,
    /// Pump threads currently waiting in a stall with a frame in hand.
    stall_waiters: u64,
    wal_frames_seen: u64,
    armed: Vec<Armed>,
    events: Vec<FaultEvent>,
    /// Original fingerprint of every record seen (and of the record before each segment).
    original_fps: BTreeMap<CommitId, Fingerprint>,
    /// After a RewriteDigest: (CommitId, fingerprint) of the last forged record;
    /// every later record is re-chained from it.
    rechain: Option<(CommitId, Fingerprint)>,
    /// After a DropRecord: bytes removed so far; later WAL frames start this much lower.
    lsn_shift: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopped: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The proxy. Dropping it stops accepting and cuts every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (the primary's repl address).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                upstream: upstream.to_string(),
                partitioned: false,
                stalled: false,
                epoch: 0,
                conns: Vec::new(),
                next_conn: 0,
                accepted: 0,
                refused: 0,
                stall_waiters: 0,
                wal_frames_seen: 0,
                armed: Vec::new(),
                events: Vec::new(),
                original_fps: BTreeMap::from([(0, GENESIS_FINGERPRINT)]),
                rechain: None,
                lsn_shift: 0,
            }),
            changed: Condvar::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
        });
        let s = shared.clone();
        thread::Builder::new().name("fault-proxy-accept".into()).spawn(move || accept_loop(listener, s)).unwrap();
        FaultProxy { addr, shared }
    }

    /// The address replicas connect to.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Forward new connections to another address (existing ones are not touched).
    pub fn set_upstream(&self, upstream: &str) {
        self.shared.lock().upstream = upstream.to_string();
    }

    /// Cuts every open connection now (both directions, both sockets).
    pub fn cut(&self) {
        let mut st = self.shared.lock();
        cut_locked(&mut st);
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Partition: cut everything and refuse (accept, then close) every new connection until [`heal`](Self::heal).
    pub fn partition(&self) {
        let mut st = self.shared.lock();
        st.partitioned = true;
        cut_locked(&mut st);
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Ends a partition: new connections are forwarded again.
    pub fn heal(&self) {
        self.shared.lock().partitioned = false;
    }

    /// Stops forwarding primary → replica bytes until [`release`](Self::release).
    pub fn stall(&self) {
        self.shared.lock().stalled = true;
    }

    /// Resumes primary → replica forwarding.
    pub fn release(&self) {
        self.shared.lock().stalled = false;
        self.shared.changed.notify_all();
    }

    /// Number of forwarding threads holding a frame because of a stall.
    pub fn stall_waiters(&self) -> u64 {
        self.shared.lock().stall_waiters
    }

    /// Arms a one-shot fault.
    pub fn arm(&self, action: Action, target: Target) {
        let mut st = self.shared.lock();
        let base = st.wal_frames_seen;
        st.armed.push(Armed { action, target, base });
    }

    /// Removes every fault that has not fired yet.
    pub fn disarm(&self) {
        self.shared.lock().armed.clear();
    }

    /// Faults that fired, in order.
    pub fn events(&self) -> Vec<FaultEvent> {
        self.shared.lock().events.clone()
    }

    /// Connections forwarded to the primary so far.
    pub fn accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    /// Connections refused (accepted and closed) while partitioned.
    pub fn refused(&self) -> u64 {
        self.shared.lock().refused
    }

    /// WAL frames seen from the primary so far.
    pub fn wal_frames_seen(&self) -> u64 {
        self.shared.lock().wal_frames_seen
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn cut_locked(st: &mut State) {
    st.epoch += 1;
    for c in st.conns.drain(..) {
        let _ = c.replica.shutdown(Shutdown::Both);
        let _ = c.primary.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.is_stopped() {
            return;
        }
        let Ok(replica) = incoming else { continue };
        let upstream = shared.lock().upstream.clone();
        let primary = if shared.lock().partitioned { None } else { TcpStream::connect(&upstream).ok() };
        let mut st = shared.lock();
        let Some(primary) = primary.filter(|_| !st.partitioned) else {
            // Refused: the replica sees the connection close before any answer.
            st.refused += 1;
            let _ = replica.shutdown(Shutdown::Both);
            continue;
        };
        let _ = replica.set_nodelay(true);
        let _ = primary.set_nodelay(true);
        let id = st.next_conn;
        st.next_conn += 1;
        st.accepted += 1;
        let epoch = st.epoch;
        let (Ok(r2), Ok(p2), Ok(r3), Ok(p3)) = (replica.try_clone(), primary.try_clone(), replica.try_clone(), primary.try_clone()) else {
            let _ = replica.shutdown(Shutdown::Both);
            let _ = primary.shutdown(Shutdown::Both);
            continue;
        };
        st.conns.push(Conn { id, replica: r2, primary: p2 });
        drop(st);
        let s = shared.clone();
        thread::Builder::new().name("fault-proxy-up".into()).spawn(move || pump_up(s, id, replica, primary)).unwrap();
        let s = shared.clone();
        thread::Builder::new().name("fault-proxy-down".into()).spawn(move || pump_down(s, id, epoch, p3, r3)).unwrap();
    }
}

fn close(shared: &Shared, id: u64, a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
    shared.lock().conns.retain(|c| c.id != id);
}

/// Replica → primary: verbatim.
fn pump_up(shared: Arc<Shared>, id: u64, mut replica: TcpStream, mut primary: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match replica.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if primary.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    close(&shared, id, &replica, &primary);
}

/// Primary → replica: frame by frame, through the fault logic.
fn pump_down(shared: Arc<Shared>, id: u64, epoch: u64, mut primary: TcpStream, mut replica: TcpStream) {
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 256 * 1024];
    let mut held: Option<Vec<u8>> = None;
    let mut raw_mode = false;
    'outer: loop {
        // Forward every complete frame in the buffer.
        loop {
            if raw_mode {
                if buf.is_empty() {
                    break;
                }
                let out = std::mem::take(&mut buf);
                if !forward(&shared, epoch, &mut replica, &[out]) {
                    break 'outer;
                }
                break;
            }
            match frame::decode(&buf, DEFAULT_MAX_PAYLOAD) {
                Ok(Some((f, used))) => {
                    let raw: Vec<u8> = buf.drain(..used).collect();
                    let outs = shared.lock().on_frame(f, raw, &mut held);
                    if !forward(&shared, epoch, &mut replica, &outs) {
                        break 'outer;
                    }
                }
                Ok(None) => break,
                // Not a frame stream we understand: pass the rest through untouched.
                Err(_) => raw_mode = true,
            }
        }
        match primary.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    close(&shared, id, &primary, &replica);
}

/// Writes `outs` to the replica, first waiting (on the condvar) while the
/// proxy is stalled. False when the connection was cut or failed.
fn forward(shared: &Shared, epoch: u64, replica: &mut TcpStream, outs: &[Vec<u8>]) -> bool {
    if outs.is_empty() {
        return true;
    }
    {
        let mut st = shared.lock();
        if st.stalled && st.epoch == epoch {
            st.stall_waiters += 1;
            while st.stalled && st.epoch == epoch && !shared.is_stopped() {
                st = shared.changed.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            st.stall_waiters -= 1;
        }
        if st.epoch != epoch || shared.is_stopped() {
            return false;
        }
    }
    for out in outs {
        if replica.write_all(out).is_err() {
            return false;
        }
    }
    replica.flush().is_ok()
}

/// (offset in chunk bytes, length, CommitId, original fingerprint) of each whole record.
fn split_records(bytes: &[u8]) -> Option<Vec<(usize, usize, CommitId, Fingerprint)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = peek_record_len(&bytes[at..]).ok()?;
        let (commit_id, fp) = record_identity(&bytes[at..at + len]);
        out.push((at, len, commit_id, fp));
        at += len;
    }
    Some(out)
}

fn reencode(bytes: &[u8], digest: Option<StateDigest>, previous: Fingerprint) -> (Vec<u8>, Fingerprint, StateDigest) {
    let (record, _) = decode_record(&Bytes::copy_from_slice(bytes)).expect("the primary ships valid records");
    let original = record.state_digest;
    let (out, fp) = encode_body(record.commit_id, digest.unwrap_or(original), previous, &record.body).expect("re-encode a record");
    (out, fp, original)
}

impl State {
    /// Decides what to send for one frame from the primary.
    fn on_frame(&mut self, f: Frame, raw: Vec<u8>, held: &mut Option<Vec<u8>>) -> Vec<Vec<u8>> {
        if f.kind != FrameType::Wal {
            return vec![raw];
        }
        let Ok(Message::Wal(chunk)) = Message::decode(&f) else { return vec![raw] };
        self.wal_frames_seen += 1;
        let Some(records) = split_records(&chunk.bytes) else { return vec![raw] };
        if let Some(h) = chunk.segment_start {
            self.original_fps.insert(h.prev_commit_id, h.prev_fingerprint);
        }
        for &(_, _, commit_id, fp) in &records {
            self.original_fps.insert(commit_id, fp);
        }
        let first_commit = records.first().map(|r| r.2);
        let seen = self.wal_frames_seen;
        let fired = self.armed.iter().position(|a| match a.target {
            Target::NthWalFrame(n) => seen == a.base + n,
            Target::Commit(c) => records.iter().any(|r| r.2 == c),
        });
        let fired = fired.map(|i| self.armed.remove(i));
        let target_commit = match fired.as_ref().map(|a| a.target) {
            Some(Target::Commit(c)) => Some(c),
            Some(Target::NthWalFrame(_)) => first_commit,
            None => None,
        };
        let action = fired.as_ref().map(|a| a.action);
        let mut event = FaultEvent {
            action: action.unwrap_or(Action::CorruptFrame),
            frame_start_lsn: chunk.start_lsn,
            record_lsn: None,
            commit_id: target_commit,
            frame_commits: records.iter().map(|r| r.2).collect(),
            original_digest: None,
            forged_digest: None,
        };

        // Rebuild the record bytes when a record action fires or a rewrite is in force.
        let record_action = matches!(action, Some(Action::FlipRecordByte | Action::DropRecord | Action::RewriteDigest));
        let mut out_chunk = chunk.clone();
        let mut modified = self.lsn_shift > 0;
        out_chunk.start_lsn = chunk.start_lsn - self.lsn_shift;
        if let Some(h) = out_chunk.segment_start.as_mut() {
            h.start_lsn -= self.lsn_shift;
        }
        if record_action || self.rechain.is_some() {
            modified = true;
            let mut body = Vec::with_capacity(chunk.bytes.len());
            let mut dropped = 0u64;
            for &(at, len, commit_id, _) in &records {
                let bytes = &chunk.bytes[at..at + len];
                let is_target = record_action && Some(commit_id) == target_commit;
                if is_target {
                    event.record_lsn = Some(chunk.start_lsn + at as u64);
                }
                match action {
                    Some(Action::DropRecord) if is_target => dropped += len as u64,
                    Some(Action::FlipRecordByte) if is_target => {
                        let mut b = bytes.to_vec();
                        // The last byte lies in the op bodies: covered by the record crc only.
                        let last = b.len() - 1;
                        b[last] ^= 0x20;
                        body.extend_from_slice(&b);
                    }
                    Some(Action::RewriteDigest) if is_target => {
                        let previous = *self.original_fps.get(&(commit_id - 1)).expect("the proxy saw the record before the forged one");
                        let (record, _) = decode_record(&Bytes::copy_from_slice(bytes)).expect("valid record");
                        let forged = StateDigest(record.state_digest.0 ^ 0x5a5a_5a5a_0000_0000_0000_0000_a5a5_a5a5);
                        let (b, fp, original) = reencode(bytes, Some(forged), previous);
                        event.original_digest = Some(original);
                        event.forged_digest = Some(forged);
                        self.rechain = Some((commit_id, fp));
                        body.extend_from_slice(&b);
                    }
                    _ => match self.rechain {
                        Some((forged_commit, previous)) if commit_id > forged_commit => {
                            let (b, fp, _) = reencode(bytes, None, previous);
                            self.rechain = Some((commit_id, fp));
                            body.extend_from_slice(&b);
                        }
                        _ => body.extend_from_slice(bytes),
                    },
                }
            }
            self.lsn_shift += dropped;
            if body.is_empty() && out_chunk.segment_start.is_none() {
                // Nothing left to send in this frame.
                if fired.is_some() {
                    self.events.push(event);
                }
                return Vec::new();
            }
            out_chunk.bytes = Bytes::from(body);
        }
        let mut raw = if modified {
            let (kind, payload) =
                Message::Wal(ReceivedChunk { start_lsn: out_chunk.start_lsn, segment_start: out_chunk.segment_start, bytes: out_chunk.bytes }).encode();
            frame::encode(kind, &payload)
        } else {
            raw
        };
        if fired.is_some() {
            self.events.push(event);
        }
        let mut outs = Vec::new();
        match action {
            Some(Action::CorruptFrame) => {
                let payload_len = raw.len() - FRAME_HEADER_LEN;
                raw[FRAME_HEADER_LEN + payload_len / 2] ^= 0x5a;
                outs.push(raw);
            }
            Some(Action::DuplicateFrame) => {
                outs.push(raw.clone());
                outs.push(raw);
            }
            Some(Action::ReorderWithNextWal) => {
                *held = Some(raw);
                return outs;
            }
            _ => outs.push(raw),
        }
        // A frame held for reordering goes out after this one.
        if let Some(h) = held.take() {
            outs.push(h);
        }
        outs
    }
}
