//! Flow table and TCP reassembly on crafted packets: handshake and RTT, wraparound, mid-stream starts,
//! overlaps, out-of-order overflow, port reuse, timeouts, eviction, IPv4 fragments.

use bytes::Bytes;
use etherparse::PacketBuilder;
use fathom_capture::{Config, FlowTable, LinkType, Packet};
use fathom_model::{CloseType, Direction, FlowEnd, StreamChunk, StreamEvent};

const C: [u8; 4] = [10, 0, 0, 1];
const S: [u8; 4] = [10, 0, 0, 2];
const SYN: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 4;
const RST: u8 = 8;

/// An Ethernet/IPv4/TCP frame from client (`to_server`) or server.
fn tcp(to_server: bool, seq: u32, ack: u32, fl: u8, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if to_server {
        (C, S, 40000, 8080)
    } else {
        (S, C, 8080, 40000)
    };
    let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 65535);
    if fl & SYN != 0 {
        b = b.syn();
    }
    if fl & ACK != 0 {
        b = b.ack(ack);
    }
    if fl & FIN != 0 {
        b = b.fin();
    }
    if fl & RST != 0 {
        b = b.rst();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn udp(to_server: bool, payload: &[u8]) -> Vec<u8> {
    let (src, dst, sp, dp) = if to_server {
        (C, S, 40001, 53)
    } else {
        (S, C, 53, 40001)
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src, dst, 64)
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    out
}

struct Run {
    table: FlowTable,
    events: Vec<StreamEvent>,
}

impl Run {
    fn new(config: Config) -> Run {
        Run {
            table: FlowTable::new(config),
            events: Vec::new(),
        }
    }
    fn feed(&mut self, ts_us: u64, frame: Vec<u8>) {
        let p = Packet {
            ts_us,
            link_type: LinkType::ETHERNET,
            orig_len: frame.len() as u32,
            data: Bytes::from(frame),
        };
        self.table.process(&p, &mut self.events);
    }
    fn finish(mut self) -> (Vec<StreamChunk>, Vec<FlowEnd>, FlowTable) {
        self.table.finish(&mut self.events);
        let mut chunks = Vec::new();
        let mut ends = Vec::new();
        for e in self.events {
            match e {
                StreamEvent::Chunk(c) => chunks.push(c),
                StreamEvent::FlowEnd(f) => ends.push(*f),
            }
        }
        (chunks, ends, self.table)
    }
}

fn stream(chunks: &[StreamChunk], dir: Direction) -> (Vec<u8>, u64) {
    let mut v = Vec::new();
    let mut gaps = 0;
    for c in chunks.iter().filter(|c| c.direction == dir) {
        gaps += c.gap_before;
        v.extend_from_slice(&c.bytes);
    }
    (v, gaps)
}

fn handshake(r: &mut Run, cisn: u32, sisn: u32) {
    r.feed(1_000, tcp(true, cisn, 0, SYN, b""));
    r.feed(
        1_100,
        tcp(false, sisn, cisn.wrapping_add(1), SYN | ACK, b""),
    );
    r.feed(
        1_250,
        tcp(true, cisn.wrapping_add(1), sisn.wrapping_add(1), ACK, b""),
    );
}

#[test]
fn handshake_orientation_rtt_and_fin() {
    let mut r = Run::new(Config::default());
    handshake(&mut r, 100, 5000);
    r.feed(2_000, tcp(true, 101, 5001, ACK, b"GET / HTTP/1.1\r\n\r\n"));
    r.feed(
        2_100,
        tcp(false, 5001, 119, ACK, b"HTTP/1.1 200 OK\r\n\r\n"),
    );
    r.feed(3_000, tcp(true, 119, 5020, FIN | ACK, b""));
    r.feed(3_100, tcp(false, 5020, 120, FIN | ACK, b""));
    r.feed(3_200, tcp(true, 120, 5021, ACK, b""));
    let (chunks, ends, _) = r.finish();
    assert_eq!(ends.len(), 1);
    let f = &ends[0];
    assert_eq!(f.flow.port_dst, 8080);
    assert_eq!(f.record.rtt_us, Some(250));
    assert_eq!(f.record.close_type, CloseType::Fin);
    assert_eq!((f.record.packet_tx, f.record.packet_rx), (5, 3));
    assert_eq!(
        (f.record.payload_byte_tx, f.record.payload_byte_rx),
        (18, 19)
    );
    assert_eq!(
        stream(&chunks, Direction::ClientToServer).0,
        b"GET / HTTP/1.1\r\n\r\n"
    );
    assert_eq!(chunks[0].seq, Some(101));
    assert_eq!(chunks[1].direction, Direction::ServerToClient);
}

#[test]
fn sequence_wraparound() {
    let mut r = Run::new(Config::default());
    let isn = u32::MAX - 5;
    handshake(&mut r, isn, 7);
    let mut seq = isn.wrapping_add(1);
    let mut want = Vec::new();
    for i in 0..6u8 {
        let p = [b'a' + i; 3];
        r.feed(2_000 + u64::from(i), tcp(true, seq, 8, ACK, &p));
        want.extend_from_slice(&p);
        seq = seq.wrapping_add(3);
    }
    // A retransmission from before the wrap is dropped.
    r.feed(3_000, tcp(true, isn.wrapping_add(1), 8, ACK, b"aaa"));
    let (chunks, ends, t) = r.finish();
    let (got, gaps) = stream(&chunks, Direction::ClientToServer);
    assert_eq!(got, want);
    assert_eq!(gaps, 0);
    assert_eq!(ends[0].record.retrans_tx, 1);
    assert_eq!(t.counters().tcp_retransmissions, 1);
}

#[test]
fn out_of_order_overlaps_and_duplicates() {
    let mut r = Run::new(Config::default());
    handshake(&mut r, 0, 0);
    // Stream "0123456789abcdef" sent as [4..8] [0..4] [2..10] (overlap) [12..16] [8..14] (overlap) dup [12..16].
    let s = b"0123456789abcdef";
    let seg = |a: usize, b: usize| tcp(true, 1 + a as u32, 1, ACK, &s[a..b]);
    r.feed(2_000, seg(4, 8));
    r.feed(2_001, seg(0, 4));
    r.feed(2_002, seg(2, 10));
    r.feed(2_003, seg(12, 16));
    r.feed(2_004, seg(12, 16));
    r.feed(2_005, seg(8, 14));
    let (chunks, ends, _) = r.finish();
    let (got, gaps) = stream(&chunks, Direction::ClientToServer);
    assert_eq!(got, s);
    assert_eq!(gaps, 0);
    let f = &ends[0];
    assert_eq!(f.record.payload_byte_tx, 16);
    assert_eq!(f.out_of_order[0], 2);
    assert!(f.record.retrans_tx >= 2);
    // Chunks carry their own sequence numbers.
    let mut next = 1u32;
    for c in chunks.iter() {
        assert_eq!(c.seq, Some(next));
        next += c.bytes.len() as u32;
    }
}

#[test]
fn hole_declared_at_cap_and_at_end() {
    let cfg = Config {
        max_ooo_segments_per_direction: 2,
        ..Config::default()
    };
    let mut r = Run::new(cfg);
    handshake(&mut r, 0, 0);
    r.feed(2_000, tcp(true, 1, 1, ACK, b"aaaa"));
    // bytes 5..9 lost; three segments after the hole: the third overflows the cap.
    r.feed(2_001, tcp(true, 9, 1, ACK, b"cccc"));
    r.feed(2_002, tcp(true, 13, 1, ACK, b"dddd"));
    r.feed(2_003, tcp(true, 17, 1, ACK, b"eeee"));
    // Another hole (21..25) that never fills: declared at the flow's end.
    r.feed(2_004, tcp(true, 25, 1, ACK, b"gggg"));
    let (chunks, ends, t) = r.finish();
    let c: Vec<(u64, &[u8])> = chunks
        .iter()
        .map(|c| (c.gap_before, &c.bytes[..]))
        .collect();
    assert_eq!(
        c,
        vec![
            (0, &b"aaaa"[..]),
            (4, b"cccc"),
            (0, b"dddd"),
            (0, b"eeee"),
            (4, b"gggg")
        ]
    );
    assert_eq!(ends[0].record.lost_byte_tx, 8);
    assert_eq!(t.counters().tcp_ooo_overflows, 1);
}

#[test]
fn mid_stream_start_uses_port_rule_and_first_seq() {
    let mut r = Run::new(Config::default());
    // No handshake; the first packet is the server's response (8080 < 32768 <= 40000: 8080 is the server).
    r.feed(1_000, tcp(false, 777, 55, ACK, b"+OK\r\n"));
    r.feed(1_001, tcp(true, 55, 782, ACK, b"PING\r\n"));
    r.feed(1_002, tcp(false, 782, 61, ACK, b"+PONG\r\n"));
    let (chunks, ends, _) = r.finish();
    assert_eq!(ends[0].flow.port_dst, 8080);
    assert_eq!(ends[0].record.rtt_us, None);
    assert_eq!(ends[0].record.close_type, CloseType::OpenAtEnd);
    assert_eq!(
        stream(&chunks, Direction::ServerToClient).0,
        b"+OK\r\n+PONG\r\n"
    );
    assert_eq!(stream(&chunks, Direction::ClientToServer).0, b"PING\r\n");
}

#[test]
fn rst_and_port_reuse_start_new_flows() {
    let mut r = Run::new(Config::default());
    handshake(&mut r, 100, 200);
    r.feed(2_000, tcp(true, 101, 201, ACK, b"one"));
    r.feed(2_100, tcp(false, 201, 104, RST | ACK, b""));
    // A trailing packet of the reset flow stays in it.
    r.feed(2_200, tcp(true, 104, 201, ACK, b""));
    // Same 5-tuple, new ISN: a new flow.
    handshake(&mut r, 9000, 300);
    r.feed(3_000, tcp(true, 9001, 301, ACK, b"two"));
    let (chunks, ends, t) = r.finish();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[0].record.close_type, CloseType::Rst);
    assert_eq!(ends[0].resets, [0, 1]);
    assert_eq!(ends[0].record.packet_tx, 4);
    assert_eq!(ends[1].record.close_type, CloseType::OpenAtEnd);
    assert_ne!(ends[0].flow_id, ends[1].flow_id);
    assert_eq!(chunks.len(), 2);
    assert_eq!(&chunks[1].bytes[..], b"two");
    assert_eq!(t.counters().flows_port_reused, 1);
}

#[test]
fn idle_timeouts_in_capture_time() {
    let cfg = Config {
        udp_idle_timeout_us: 5_000_000,
        tcp_idle_timeout_us: 60_000_000,
        ..Config::default()
    };
    let mut r = Run::new(cfg);
    r.feed(1_000_000, udp(true, b"q1"));
    r.feed(1_000_100, udp(false, b"a1"));
    handshake(&mut r, 1, 1);
    // 10 s later: the UDP flow timed out, the TCP one did not; a new UDP packet is a new flow.
    r.feed(11_000_000, udp(true, b"q2"));
    let (_, ends, t) = r.finish();
    assert_eq!(ends.len(), 3);
    assert_eq!(ends[0].record.close_type, CloseType::Timeout);
    assert_eq!(ends[0].flow.port_dst, 53);
    assert_eq!((ends[0].record.packet_tx, ends[0].record.packet_rx), (1, 1));
    assert_eq!(t.counters().flows_timed_out, 1);
    assert_eq!(ends[1].record.close_type, CloseType::OpenAtEnd);
}

#[test]
fn advancing_time_without_packets_times_flows_out() {
    let mut r = Run::new(Config::default());
    r.feed(1_000_000, udp(true, b"q"));
    let mut out = Vec::new();
    r.table.advance(
        1_000_000 + Config::DEFAULT_UDP_IDLE_TIMEOUT_US + 2_000_000,
        &mut out,
    );
    assert!(
        matches!(&out[..], [StreamEvent::FlowEnd(f)] if f.record.close_type == CloseType::Timeout)
    );
    assert_eq!(r.table.live_flows(), 0);
}

#[test]
fn lru_eviction_when_full() {
    let cfg = Config {
        max_flows: 2,
        ..Config::default()
    };
    let mut t = FlowTable::new(cfg);
    let mut out = Vec::new();
    for (i, port) in [1000u16, 1001, 1000, 1002].into_iter().enumerate() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(C, S, 64)
            .udp(port, 53)
            .write(&mut f, b"x")
            .unwrap();
        let p = Packet {
            ts_us: i as u64,
            link_type: LinkType::ETHERNET,
            orig_len: f.len() as u32,
            data: Bytes::from(f),
        };
        t.process(&p, &mut out);
    }
    // 1001 was the least recently used when 1002 arrived.
    let ends: Vec<&FlowEnd> = out
        .iter()
        .filter_map(|e| {
            if let StreamEvent::FlowEnd(f) = e {
                Some(&**f)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].flow.port_src, 1001);
    assert_eq!(ends[0].record.close_type, CloseType::Evicted);
    assert_eq!(t.counters().flows_evicted, 1);
    assert_eq!(t.live_flows(), 2);
}

#[test]
fn ipv4_fragments_are_reassembled_and_bounded() {
    // A 3000-byte UDP datagram in three fragments, delivered out of order.
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut udp_bytes = Vec::new();
    udp_bytes.extend_from_slice(&40001u16.to_be_bytes());
    udp_bytes.extend_from_slice(&53u16.to_be_bytes());
    udp_bytes.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    udp_bytes.extend_from_slice(&[0, 0]);
    udp_bytes.extend_from_slice(&payload);
    let frag = |off: usize, end: usize, more: bool| {
        let data = &udp_bytes[off..end];
        let mut h =
            etherparse::Ipv4Header::new(data.len() as u16, 64, etherparse::IpNumber::UDP, C, S)
                .unwrap();
        h.identification = 77;
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((off / 8) as u16).unwrap();
        let mut f = vec![2u8; 6];
        f.extend_from_slice(&[1; 6]);
        f.extend_from_slice(&[0x08, 0x00]);
        h.write(&mut f).unwrap();
        f.extend_from_slice(data);
        f
    };
    let mut r = Run::new(Config::default());
    r.feed(1, frag(1480, 2960, true));
    r.feed(2, frag(0, 1480, true));
    r.feed(3, frag(2960, udp_bytes.len(), false));
    // An incomplete datagram (id 78) that times out.
    let mut lone = frag(0, 1480, true);
    lone[14 + 5] = 78;
    r.feed(4, lone);
    let (chunks, ends, t) = r.finish();
    assert_eq!(chunks.len(), 1);
    assert_eq!(&chunks[0].bytes[..], &payload[..]);
    assert_eq!(ends[0].record.packet_tx, 1);
    let c = &t.counters().fragments;
    assert_eq!((c.received, c.reassembled, c.dropped_timeout), (4, 1, 1));
}
