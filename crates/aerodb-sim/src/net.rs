//! `SimNet`: connections between simulated nodes.
//!
//! A connection joins an initiator and an acceptor. Every `send` is one
//! segment (one frame's bytes) scheduled for delivery after a latency;
//! without faults each direction is in order (like TCP). Faults, drawn per
//! segment from [`NetRates`]: drop (the segment is lost and, as on a TCP
//! connection whose path went black, nothing more arrives in that
//! direction: the receiver learns only by its own timeouts), delay (a stall that also holds back
//! later segments), reorder (delivered ahead of earlier ones), duplicate,
//! corrupt (random bytes changed: framing catches it) and forge (bytes
//! inside the frame's payload rewritten and the frame crc32c recomputed
//! per docs/protocol.md, so framing passes and only record checksums,
//! fingerprints and digests can catch it). Partitions (one- or two-way)
//! silently drop segments and make connects time out; a reset drops what
//! is in flight and tells both ends. Connects succeed only if the target
//! is up and no partition separates the two nodes.
//!
//! Flow control, as TCP's windows give it: bytes a receiving application
//! has not consumed yet (in flight, or delivered and waiting in its socket
//! buffer) count against the connection's window ([`WINDOW_BYTES`]); a
//! sender whose window is full stops sending ([`SimNet::window_open`],
//! [`SimNet::wait_writable`]) and is told [`NetEvent::Writable`] once the
//! receiver consumed enough ([`SimNet::consumed`]). A segment lost to a
//! black hole is never consumed, so its sender stalls, as on TCP.
//!
//! The network holds no clock: every operation takes the scheduler, whose
//! `now` is the time of the event being processed.

use std::collections::{BTreeMap, BTreeSet};

use crate::faults::{FaultClass, FaultCounters};
use crate::rng::SimRng;
use crate::sched::Scheduler;
use crate::trace::{Trace, TraceEncode};

/// A simulated node's id.
pub type NodeId = u32;
/// A connection's id (never reused within a run).
pub type ConnId = u64;

/// Frame header length (docs/protocol.md).
pub const FRAME_HEADER_LEN: usize = 12;

/// Bytes a connection holds unconsumed per direction before the sender
/// must wait (the socket buffers of both ends).
pub const WINDOW_BYTES: u64 = 64 * 1024;

/// Per-segment fault probabilities (parts per million) and latencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRates {
    /// Segment dropped.
    pub drop_ppm: u32,
    /// Segment delayed by `delay_ms` (a stall).
    pub delay_ppm: u32,
    /// Segment delivered ahead of earlier ones.
    pub reorder_ppm: u32,
    /// Segment delivered twice.
    pub duplicate_ppm: u32,
    /// Random bytes changed.
    pub corrupt_ppm: u32,
    /// Payload bytes rewritten with a valid frame crc32c.
    pub forge_ppm: u32,
    /// Usual one-way latency range.
    pub latency_ms: (u64, u64),
    /// Extra latency of a delayed segment.
    pub delay_ms: (u64, u64),
}

impl NetRates {
    /// A fault-free network with 1–5 ms latency.
    pub const CALM: NetRates =
        NetRates { drop_ppm: 0, delay_ppm: 0, reorder_ppm: 0, duplicate_ppm: 0, corrupt_ppm: 0, forge_ppm: 0, latency_ms: (1, 5), delay_ms: (200, 3000) };
}

impl Default for NetRates {
    fn default() -> Self {
        NetRates::CALM
    }
}

/// What the network tells a node. The world hands each to
/// [`SimNet::admit`] before the node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// The initiator's connect succeeded.
    Connected {
        /// Connection.
        conn: ConnId,
        /// The initiator.
        node: NodeId,
    },
    /// The initiator's connect failed (target down, or partitioned: a timeout).
    ConnectFailed {
        /// Connection.
        conn: ConnId,
        /// The initiator.
        node: NodeId,
    },
    /// The acceptor has a new connection from `peer`.
    Accepted {
        /// Connection.
        conn: ConnId,
        /// The acceptor.
        node: NodeId,
        /// The initiator.
        peer: NodeId,
    },
    /// One segment arrives at `node`.
    Deliver {
        /// Connection.
        conn: ConnId,
        /// Receiving node.
        node: NodeId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The connection is gone for `node` (peer closed, reset, peer crashed).
    Closed {
        /// Connection.
        conn: ConnId,
        /// The node told.
        node: NodeId,
    },
    /// `node` waited for its window ([`SimNet::wait_writable`]) and may
    /// send again.
    Writable {
        /// Connection.
        conn: ConnId,
        /// The sender told.
        node: NodeId,
    },
}

impl NetEvent {
    /// The node this event is for.
    pub fn node(&self) -> NodeId {
        match self {
            NetEvent::Connected { node, .. }
            | NetEvent::ConnectFailed { node, .. }
            | NetEvent::Accepted { node, .. }
            | NetEvent::Deliver { node, .. }
            | NetEvent::Closed { node, .. }
            | NetEvent::Writable { node, .. } => *node,
        }
    }
}

impl TraceEncode for NetEvent {
    fn encode(&self, t: &mut Trace) {
        match self {
            NetEvent::Connected { conn, node } => t.entry("net.connected").u64(*conn).u64(u64::from(*node)),
            NetEvent::ConnectFailed { conn, node } => t.entry("net.connect_failed").u64(*conn).u64(u64::from(*node)),
            NetEvent::Accepted { conn, node, peer } => t.entry("net.accepted").u64(*conn).u64(u64::from(*node)).u64(u64::from(*peer)),
            NetEvent::Deliver { conn, node, bytes } => t.entry("net.deliver").u64(*conn).u64(u64::from(*node)).bytes(bytes),
            NetEvent::Closed { conn, node } => t.entry("net.closed").u64(*conn).u64(u64::from(*node)),
            NetEvent::Writable { conn, node } => t.entry("net.writable").u64(*conn).u64(u64::from(*node)),
        };
    }
}

#[derive(Clone, Debug)]
struct Conn {
    initiator: NodeId,
    acceptor: NodeId,
    /// Hard reset: nothing more is delivered.
    reset: bool,
    /// Sides that closed (no more sends from them).
    closed_by: BTreeSet<NodeId>,
    /// Sides already told the connection is gone.
    told_closed: BTreeSet<NodeId>,
    /// Latest scheduled delivery per receiving node (in-order delivery).
    last_delivery: BTreeMap<NodeId, u64>,
    /// Receiving nodes this connection lost a segment to: nothing more
    /// reaches them on it (a byte stream cannot skip a segment).
    black_holed: BTreeSet<NodeId>,
    /// Per receiving node: bytes sent to it not yet consumed.
    unconsumed: BTreeMap<NodeId, u64>,
    /// Senders waiting for their window.
    waiting: BTreeSet<NodeId>,
}

impl Conn {
    fn peer_of(&self, node: NodeId) -> NodeId {
        if node == self.initiator {
            self.acceptor
        } else {
            self.initiator
        }
    }
}

/// The simulated network.
pub struct SimNet {
    rng: SimRng,
    rates: NetRates,
    up: BTreeSet<NodeId>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    counters: FaultCounters,
}

impl SimNet {
    /// A network with no node up and calm rates.
    pub fn new(rng: SimRng) -> Self {
        SimNet {
            rng,
            rates: NetRates::CALM,
            up: BTreeSet::new(),
            blocked: BTreeSet::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            counters: FaultCounters::default(),
        }
    }

    /// Sets the per-segment fault rates.
    pub fn set_rates(&mut self, rates: NetRates) {
        self.rates = rates;
    }

    /// The rates in force.
    pub fn rates(&self) -> NetRates {
        self.rates
    }

    /// Marks `node` as accepting connections (its process is up) or not.
    pub fn set_up(&mut self, node: NodeId, up: bool) {
        if up {
            self.up.insert(node);
        } else {
            self.up.remove(&node);
        }
    }

    fn latency(&mut self) -> u64 {
        let (lo, hi) = self.rates.latency_ms;
        self.rng.range(lo, hi)
    }

    /// Whether segments from `from` to `to` are blocked by a partition.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    /// Starts a connect from `from` to `to`; the outcome arrives as
    /// `Connected`/`Accepted` or `ConnectFailed`.
    pub fn connect<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, from: NodeId, to: NodeId) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let lat = self.latency();
        let partitioned = self.is_blocked(from, to) || self.is_blocked(to, from);
        if partitioned {
            let timeout = self.rng.range(1000, 3000);
            sched.after(timeout, NetEvent::ConnectFailed { conn, node: from }.into());
        } else if !self.up.contains(&to) {
            sched.after(2 * lat, NetEvent::ConnectFailed { conn, node: from }.into());
        } else {
            self.conns.insert(
                conn,
                Conn {
                    initiator: from,
                    acceptor: to,
                    reset: false,
                    closed_by: BTreeSet::new(),
                    told_closed: BTreeSet::new(),
                    last_delivery: BTreeMap::new(),
                    black_holed: BTreeSet::new(),
                    unconsumed: BTreeMap::new(),
                    waiting: BTreeSet::new(),
                },
            );
            let now = sched.now().ms();
            sched.after(lat, NetEvent::Accepted { conn, node: to, peer: from }.into());
            sched.after(2 * lat, NetEvent::Connected { conn, node: from }.into());
            if let Some(c) = self.conns.get_mut(&conn) {
                c.last_delivery.insert(to, now + lat);
                c.last_delivery.insert(from, now + 2 * lat);
            }
        }
        conn
    }

    /// Sends one segment from `from` on `conn`. Silently lost if the
    /// connection is gone or a partition blocks it (TCP gives no error
    /// either: the sender learns through `Closed` or its own timeouts).
    pub fn send<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, conn: ConnId, from: NodeId, bytes: Vec<u8>) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.reset || c.closed_by.contains(&from) || (from != c.initiator && from != c.acceptor) {
            return;
        }
        let to = c.peer_of(from);
        let len = bytes.len() as u64;
        if let Some(c) = self.conns.get_mut(&conn) {
            *c.unconsumed.entry(to).or_insert(0) += len;
        }
        let Some(c) = self.conns.get(&conn) else { return };
        if self.is_blocked(from, to) || c.black_holed.contains(&to) {
            return;
        }
        let r = self.rates;
        if self.rng.chance_ppm(r.drop_ppm) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.black_holed.insert(to);
            }
            self.counters.bump(FaultClass::NetDrop);
            return;
        }
        let mut bytes = bytes;
        if self.rng.chance_ppm(r.forge_ppm) && forge(&mut self.rng, &mut bytes) {
            self.counters.bump(FaultClass::NetForge);
        } else if self.rng.chance_ppm(r.corrupt_ppm) && !bytes.is_empty() {
            let n = self.rng.range(1, 4);
            for _ in 0..n {
                let mut i = self.rng.below(bytes.len() as u64) as usize;
                // Not the frame's payload length (bytes 4..8): a larger
                // length makes the receiver wait for bytes that never come,
                // refreshing its idle timer with every partial byte (see
                // docs/simulation.md, "bugs found").
                if (4..8).contains(&i) {
                    i = (i + 4) % bytes.len();
                }
                bytes[i] ^= (self.rng.range(1, 255)) as u8;
            }
            self.counters.bump(FaultClass::NetCorrupt);
        }
        let now = sched.now().ms();
        let lat = self.latency();
        let last = self.conns.get(&conn).and_then(|c| c.last_delivery.get(&to).copied()).unwrap_or(now);
        let mut at = (now + lat).max(last);
        if self.rng.chance_ppm(r.reorder_ppm) && last > now {
            // Overtake whatever is still in flight.
            at = now + self.rng.range(0, last - now);
            self.counters.bump(FaultClass::NetReorder);
        } else {
            if self.rng.chance_ppm(r.delay_ppm) {
                at += self.rng.range(r.delay_ms.0, r.delay_ms.1);
                self.counters.bump(FaultClass::NetDelay);
            }
            if let Some(c) = self.conns.get_mut(&conn) {
                c.last_delivery.insert(to, at);
            }
        }
        if self.rng.chance_ppm(r.duplicate_ppm) {
            let again = at + self.rng.range(0, 20);
            sched.at(crate::time::SimTime(again), NetEvent::Deliver { conn, node: to, bytes: bytes.clone() }.into());
            self.counters.bump(FaultClass::NetDuplicate);
        }
        sched.at(crate::time::SimTime(at), NetEvent::Deliver { conn, node: to, bytes }.into());
    }

    /// Whether `from` may send more on `conn` (its window is not full).
    pub fn window_open(&self, conn: ConnId, from: NodeId) -> bool {
        let Some(c) = self.conns.get(&conn) else { return true };
        c.unconsumed.get(&c.peer_of(from)).copied().unwrap_or(0) < WINDOW_BYTES
    }

    /// `from` waits for its window on `conn`: [`NetEvent::Writable`] comes
    /// when the peer consumed enough (or `Closed` when the connection ends).
    pub fn wait_writable<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, conn: ConnId, from: NodeId) {
        let open = self.window_open(conn, from);
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if open {
            sched.after(lat, NetEvent::Writable { conn, node: from }.into());
        } else {
            c.waiting.insert(from);
        }
    }

    /// The application at `by` consumed `n` bytes of `conn` (took them
    /// from its socket buffer); a sender waiting for its window below half
    /// of it is told it may write.
    pub fn consumed<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, conn: ConnId, by: NodeId, n: u64) {
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        let sender = c.peer_of(by);
        let left = c.unconsumed.entry(by).or_insert(0);
        *left = left.saturating_sub(n);
        let below = *left < WINDOW_BYTES / 2;
        if below && c.waiting.remove(&sender) && !c.reset {
            sched.after(lat, NetEvent::Writable { conn, node: sender }.into());
        }
    }

    /// `node` closes `conn` gracefully: what it sent is still delivered,
    /// then the peer learns the connection is gone.
    pub fn close<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, conn: ConnId, node: NodeId) {
        let lat = self.latency();
        let now = sched.now().ms();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.reset || !c.closed_by.insert(node) {
            return;
        }
        c.told_closed.insert(node);
        let peer = c.peer_of(node);
        let at = (now + lat).max(c.last_delivery.get(&peer).copied().unwrap_or(now));
        sched.at(crate::time::SimTime(at), NetEvent::Closed { conn, node: peer }.into());
    }

    /// Resets `conn` (a fault): in-flight segments are lost and both ends
    /// are told.
    pub fn reset<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, conn: ConnId) {
        let lat = self.latency();
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if c.reset {
            return;
        }
        c.reset = true;
        for node in [c.initiator, c.acceptor] {
            if !c.told_closed.contains(&node) {
                sched.after(lat, NetEvent::Closed { conn, node }.into());
            }
        }
        self.counters.bump(FaultClass::ConnReset);
    }

    /// Resets every open connection between `a` and `b`; returns how many.
    pub fn reset_between<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, a: NodeId, b: NodeId) -> usize {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.reset && ((c.initiator, c.acceptor) == (a, b) || (c.initiator, c.acceptor) == (b, a)))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.reset(sched, *id);
        }
        ids.len()
    }

    /// Open connections (not reset), for fault targeting.
    pub fn open_conns(&self) -> Vec<ConnId> {
        self.conns.iter().filter(|(_, c)| !c.reset && c.closed_by.is_empty()).map(|(id, _)| *id).collect()
    }

    /// `node`'s process died: its connections vanish; each peer notices
    /// after a while (an RST on its next send, or its keepalive).
    pub fn node_down<E: From<NetEvent> + TraceEncode>(&mut self, sched: &mut Scheduler<E>, node: NodeId) {
        self.up.remove(&node);
        let (lo, _) = self.rates.latency_ms;
        let mut notices = Vec::new();
        for (id, c) in self.conns.iter_mut().filter(|(_, c)| !c.reset && (c.initiator == node || c.acceptor == node)) {
            c.reset = true;
            c.told_closed.insert(node);
            let peer = c.peer_of(node);
            if !c.told_closed.contains(&peer) {
                notices.push((*id, peer));
            }
        }
        for (conn, peer) in notices {
            let after = self.rng.range(lo.max(1), 5000);
            sched.after(after, NetEvent::Closed { conn, node: peer }.into());
        }
    }

    /// Blocks `from → to` (and `to → from` unless `one_way`).
    pub fn partition(&mut self, a: NodeId, b: NodeId, one_way: bool) {
        self.blocked.insert((a, b));
        if one_way {
            self.counters.bump(FaultClass::PartitionOneWay);
        } else {
            self.blocked.insert((b, a));
            self.counters.bump(FaultClass::PartitionTwoWay);
        }
    }

    /// Removes the partition between `a` and `b` (both directions).
    pub fn heal_partition(&mut self, a: NodeId, b: NodeId) {
        self.blocked.remove(&(a, b));
        self.blocked.remove(&(b, a));
    }

    /// Heals every partition and calms the rates.
    pub fn heal_all(&mut self) {
        self.blocked.clear();
        self.rates = NetRates { latency_ms: self.rates.latency_ms, ..NetRates::CALM };
    }

    /// Decides whether a due network event reaches its node: deliveries on
    /// a reset connection or across a partition (at delivery time) are
    /// lost; `Closed` reaches each side once. Call before handing the
    /// event to the node.
    pub fn admit(&mut self, event: &NetEvent) -> bool {
        match event {
            NetEvent::Deliver { conn, node, .. } => {
                let Some(c) = self.conns.get(conn) else { return false };
                let from = c.peer_of(*node);
                !c.reset && !c.told_closed.contains(node) && !self.is_blocked(from, *node)
            }
            NetEvent::Accepted { conn, node, .. } => self.up.contains(node) && self.conns.get(conn).is_some_and(|c| !c.reset),
            NetEvent::Connected { conn, .. } => self.conns.get(conn).is_some_and(|c| !c.reset),
            NetEvent::ConnectFailed { .. } => true,
            NetEvent::Writable { conn, node } => self.conns.get(conn).is_some_and(|c| !c.reset && !c.told_closed.contains(node)),
            NetEvent::Closed { conn, node } => match self.conns.get_mut(conn) {
                Some(c) => c.told_closed.insert(*node),
                None => false,
            },
        }
    }

    /// Network fault counts.
    pub fn counters(&self) -> &FaultCounters {
        &self.counters
    }
}

/// A forge: half the time, on a WAL frame, a byte of one record's own
/// crc32c field (the only bytes of a record its fingerprint does not
/// cover, so only the record checksum, CORE-2, can catch it), otherwise
/// random payload bytes ([`forge_frame`]); the frame's crc32c is fixed
/// either way. A HELLO is never forged: it is the replica's own
/// statement of its history, which nothing but a token's HMAC proof can
/// tell from a forged one, and the primary rightly fences on a stated
/// divergence below its durable point (REPL-11; seed 484, see
/// docs/simulation.md "bugs found").
fn forge(rng: &mut SimRng, bytes: &mut Vec<u8>) -> bool {
    if is_hello(bytes) {
        return false;
    }
    if rng.ratio(1, 2) {
        if let Some(forged) = forge_record_checksum(rng, bytes) {
            *bytes = forged;
            return true;
        }
    }
    forge_frame(rng, bytes)
}

/// Whether `bytes` is one HELLO frame.
fn is_hello(bytes: &[u8]) -> bool {
    use aerodb_repl_core::wire::{frame, Message};
    matches!(frame::decode(bytes, frame::DEFAULT_MAX_PAYLOAD), Ok(Some((f, _))) if matches!(Message::decode(&f), Ok(Message::Hello(_))))
}

/// Changes one byte of the crc32c field of one record in the WAL frame in
/// `bytes` and re-encodes the frame (valid framing). `None` when `bytes`
/// is not one WAL frame holding a whole record.
pub fn forge_record_checksum(rng: &mut SimRng, bytes: &[u8]) -> Option<Vec<u8>> {
    use aerodb_repl_core::wire::{frame, Message, ReceivedChunk};
    let (f, used) = frame::decode(bytes, frame::DEFAULT_MAX_PAYLOAD).ok().flatten()?;
    if used != bytes.len() {
        return None;
    }
    let Ok(Message::Wal(chunk)) = Message::decode(&f) else { return None };
    let mut starts = Vec::new();
    let mut at = 0usize;
    while let Ok(len) = aerodb_wal::record::peek_record_len(&chunk.bytes[at..]) {
        starts.push(at);
        at += len;
    }
    let start = *rng.pick(&starts)?;
    let mut body = chunk.bytes.to_vec();
    body[start + 4 + rng.below(4) as usize] ^= rng.range(1, 255) as u8;
    let message = Message::Wal(ReceivedChunk { start_lsn: chunk.start_lsn, segment_start: chunk.segment_start, bytes: bytes::Bytes::from(body) });
    Some(message.to_frame().to_vec())
}

/// Rewrites bytes inside the payload of the frame in `bytes` and fixes
/// its crc32c (header[0..8] then payload), so the frame still decodes.
/// Returns false when `bytes` is not exactly one frame with a payload.
pub fn forge_frame(rng: &mut SimRng, bytes: &mut [u8]) -> bool {
    if bytes.len() <= FRAME_HEADER_LEN {
        return false;
    }
    let payload_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if FRAME_HEADER_LEN + payload_len != bytes.len() {
        return false;
    }
    let n = rng.range(1, 3);
    for _ in 0..n {
        let i = FRAME_HEADER_LEN + rng.below(payload_len as u64) as usize;
        bytes[i] ^= rng.range(1, 255) as u8;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..8]), &bytes[FRAME_HEADER_LEN..]);
    bytes[8..12].copy_from_slice(&crc.to_le_bytes());
    true
}
