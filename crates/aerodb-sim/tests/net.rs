#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The simulated network's delivery and fault model (REPL-7, CORE-2).

use aerodb_repl_core::wire::frame::{decode, encode, FrameType, DEFAULT_MAX_PAYLOAD};
use aerodb_repl_core::wire::{Message, ReceivedChunk};
use aerodb_sim::faults::FaultClass;
use aerodb_sim::net::{forge_frame, forge_record_checksum, NetEvent, NetRates, SimNet};
use aerodb_sim::rng::SimRng;
use aerodb_sim::sched::Scheduler;
use aerodb_sim::trace::{Trace, TraceEncode};

struct Ev(NetEvent);
impl From<NetEvent> for Ev {
    fn from(e: NetEvent) -> Self {
        Ev(e)
    }
}
impl TraceEncode for Ev {
    fn encode(&self, t: &mut Trace) {
        self.0.encode(t);
    }
}

/// Runs the scheduler to the end, returning admitted events in order.
fn drain(net: &mut SimNet, s: &mut Scheduler<Ev>) -> Vec<NetEvent> {
    let mut out = Vec::new();
    while let Some((_, Ev(e))) = s.pop() {
        if net.admit(&e) {
            out.push(e);
        }
    }
    out
}

fn open(net: &mut SimNet, s: &mut Scheduler<Ev>) -> u64 {
    net.set_up(2, true);
    let conn = net.connect(s, 1, 2);
    let got = drain(net, s);
    assert_eq!(got, vec![NetEvent::Accepted { conn, node: 2, peer: 1 }, NetEvent::Connected { conn, node: 1 }]);
    conn
}

fn delivered(events: &[NetEvent]) -> Vec<Vec<u8>> {
    events.iter().filter_map(|e| if let NetEvent::Deliver { bytes, .. } = e { Some(bytes.clone()) } else { None }).collect()
}

/// REPL-7: without faults a connection delivers every segment once, in order.
#[test]
fn repl_7_sim_net_calm_connection_is_in_order_and_exactly_once() {
    let mut net = SimNet::new(SimRng::new(1, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    for i in 0..50u8 {
        net.send(&mut s, conn, 1, vec![i]);
    }
    assert_eq!(delivered(&drain(&mut net, &mut s)), (0..50u8).map(|i| vec![i]).collect::<Vec<_>>());
}

/// REPL-7: duplicate, reorder and delay faults happen at their rates and
/// are counted; a delivered segment is always one that was sent.
#[test]
fn repl_7_sim_net_duplicate_reorder_delay_are_injected_and_counted() {
    let mut net = SimNet::new(SimRng::new(2, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    net.set_rates(NetRates { duplicate_ppm: 100_000, reorder_ppm: 200_000, delay_ppm: 50_000, ..NetRates::CALM });
    for i in 0..500u16 {
        net.send(&mut s, conn, 1, i.to_le_bytes().to_vec());
    }
    let got: Vec<u16> = delivered(&drain(&mut net, &mut s)).iter().map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    let c = net.counters();
    for class in [FaultClass::NetDuplicate, FaultClass::NetReorder, FaultClass::NetDelay] {
        assert!(c.get(class) > 5, "{class:?}: {}", c.get(class));
    }
    assert_eq!(got.len() as u64, 500 + c.get(FaultClass::NetDuplicate));
    assert!(got.windows(2).any(|w| w[1] < w[0]), "some segment overtook another");
    assert!(got.iter().all(|v| *v < 500));
}

/// REPL-7: a dropped segment is lost and, as on a byte stream whose path
/// went black, nothing later in that direction arrives (a stream cannot
/// skip a segment); the other direction still flows.
#[test]
fn repl_7_sim_net_a_drop_black_holes_the_direction() {
    let mut net = SimNet::new(SimRng::new(12, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    net.set_rates(NetRates { drop_ppm: 50_000, ..NetRates::CALM });
    for i in 0..200u16 {
        net.send(&mut s, conn, 1, i.to_le_bytes().to_vec());
    }
    net.set_rates(NetRates::CALM);
    net.send(&mut s, conn, 2, vec![9, 9]);
    let got = delivered(&drain(&mut net, &mut s));
    assert_eq!(net.counters().get(FaultClass::NetDrop), 1);
    let forward: Vec<u16> = got.iter().filter(|b| b.as_slice() != [9, 9]).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert!(forward.len() < 200, "something was dropped");
    assert_eq!(forward, (0..forward.len() as u16).collect::<Vec<_>>(), "a prefix arrived, in order");
    assert!(got.iter().any(|b| b.as_slice() == [9, 9]), "the other direction flows");
}

/// REPL-7: flow control: a sender's window fills with bytes the receiver
/// has not consumed; it waits and is told when the receiver consumed
/// enough.
#[test]
fn repl_7_sim_net_window_blocks_the_sender_until_the_receiver_consumes() {
    let mut net = SimNet::new(SimRng::new(13, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    let chunk = vec![0u8; 16 * 1024];
    let mut sent = 0u64;
    while net.window_open(conn, 1) {
        net.send(&mut s, conn, 1, chunk.clone());
        sent += chunk.len() as u64;
    }
    assert!(sent >= aerodb_sim::net::WINDOW_BYTES);
    net.wait_writable(&mut s, conn, 1);
    let got = drain(&mut net, &mut s);
    assert!(!got.iter().any(|e| matches!(e, NetEvent::Writable { .. })), "nothing consumed yet");
    net.consumed(&mut s, conn, 2, sent);
    assert!(net.window_open(conn, 1));
    assert_eq!(drain(&mut net, &mut s), vec![NetEvent::Writable { conn, node: 1 }]);
}

/// CORE-2: a forged frame still passes production framing (its crc32c was
/// recomputed) but its payload differs; a corrupted one fails framing.
#[test]
fn core_2_sim_net_forged_frames_pass_framing_corrupted_ones_do_not() {
    let mut rng = SimRng::new(3, 3);
    let payload: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
    for _ in 0..100 {
        let mut frame = encode(FrameType::Wal, &payload);
        assert!(forge_frame(&mut rng, &mut frame));
        let (decoded, used) = decode(&frame, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_ne!(decoded.payload.as_ref(), &payload[..]);
    }
    assert!(!forge_frame(&mut rng, &mut [1, 2, 3]));

    // A forged record checksum: framing and the message decode pass; only
    // the record's crc32c (CORE-2) is wrong.
    let record = aerodb_wal::record::encode_record(
        1,
        aerodb_wal::StateDigest::EMPTY,
        aerodb_wal::GENESIS_FINGERPRINT,
        &[aerodb_wal::Op::Delete { collection: bytes::Bytes::from_static(b"c"), key: bytes::Bytes::from_static(b"k") }],
    )
    .unwrap()
    .0;
    let chunk = ReceivedChunk { start_lsn: 0, segment_start: None, bytes: bytes::Bytes::from(record.clone()) };
    let frame = Message::Wal(chunk).to_frame().to_vec();
    let forged = forge_record_checksum(&mut rng, &frame).unwrap();
    let (decoded, _) = decode(&forged, DEFAULT_MAX_PAYLOAD).unwrap().unwrap();
    let Ok(Message::Wal(got)) = Message::decode(&decoded) else { panic!("not a WAL frame") };
    assert_ne!(got.bytes.as_ref(), &record[..]);
    assert_eq!(aerodb_wal::record::check_record(&got.bytes).unwrap_err().code(), "CHECKSUM_MISMATCH");

    let mut net = SimNet::new(SimRng::new(4, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    net.set_rates(NetRates { corrupt_ppm: 1_000_000, ..NetRates::CALM });
    net.send(&mut s, conn, 1, encode(FrameType::Wal, &payload));
    let got = delivered(&drain(&mut net, &mut s));
    assert!(decode(&got[0], DEFAULT_MAX_PAYLOAD).is_err());
    assert_eq!(net.counters().get(FaultClass::NetCorrupt), 1);
}

/// REPL-10: partitions block segments and connects (one- and two-way) until
/// healed; connecting to a node that is down fails; a reset tells both ends.
#[test]
fn repl_10_sim_net_partitions_resets_and_down_nodes() {
    let mut net = SimNet::new(SimRng::new(5, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    net.partition(1, 2, true);
    net.send(&mut s, conn, 1, vec![1]);
    net.send(&mut s, conn, 2, vec![2]);
    assert_eq!(delivered(&drain(&mut net, &mut s)), vec![vec![2]], "one-way: only 2 → 1 flows");
    let c2 = net.connect(&mut s, 1, 2);
    assert_eq!(drain(&mut net, &mut s), vec![NetEvent::ConnectFailed { conn: c2, node: 1 }]);
    net.heal_partition(1, 2);
    net.partition(1, 2, false);
    net.send(&mut s, conn, 2, vec![3]);
    assert!(delivered(&drain(&mut net, &mut s)).is_empty());
    net.heal_all();
    net.send(&mut s, conn, 1, vec![4]);
    assert_eq!(delivered(&drain(&mut net, &mut s)), vec![vec![4]]);

    net.reset(&mut s, conn);
    net.send(&mut s, conn, 1, vec![5]);
    let got = drain(&mut net, &mut s);
    assert!(delivered(&got).is_empty());
    assert_eq!(got.iter().filter(|e| matches!(e, NetEvent::Closed { .. })).count(), 2);

    net.set_up(2, false);
    let c3 = net.connect(&mut s, 1, 2);
    assert_eq!(drain(&mut net, &mut s), vec![NetEvent::ConnectFailed { conn: c3, node: 1 }]);
    let c = net.counters();
    assert_eq!((c.get(FaultClass::PartitionOneWay), c.get(FaultClass::PartitionTwoWay), c.get(FaultClass::ConnReset)), (1, 1, 1));
}

/// REPL-10: a node going down resets its connections; the peer is told once.
#[test]
fn repl_10_sim_net_node_down_closes_its_connections_for_the_peer() {
    let mut net = SimNet::new(SimRng::new(6, 3));
    let mut s = Scheduler::new();
    let conn = open(&mut net, &mut s);
    net.send(&mut s, conn, 1, vec![1]);
    net.node_down(&mut s, 2);
    let got = drain(&mut net, &mut s);
    assert_eq!(got, vec![NetEvent::Closed { conn, node: 1 }]);
}
