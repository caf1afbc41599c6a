//! The flow table: bidirectional 5-tuples, client/server orientation, idle timeouts and LRU eviction in capture
//! time, per-flow L4 statistics, and the dispatch of segments to TCP reassembly.
//!
//! One hash computation per packet: flows live in a slab (`Vec`), a `hashbrown::HashTable` maps the
//! direction-independent key to the slab index, and three intrusive LRU lists (open TCP, closed TCP, UDP) order
//! flows by last activity so that timeouts and eviction only look at list heads.

use crate::counters::Counters;
use crate::decode::{self, flags, L4Segment, Skip};
use crate::frag::Defrag;
use crate::source::Packet;
use crate::tcp::{Sink, TcpDir};
use crate::Config;
use bytes::Bytes;
use fathom_model::{
    ChunkOrigin, CloseType, Direction, FlowEnd, FlowId, FlowKey, FlowRecord, L4Protocol,
    StreamChunk, StreamEvent,
};
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::net::IpAddr;

const NIL: u32 = u32::MAX;
const LIST_TCP: usize = 0;
const LIST_TCP_CLOSED: usize = 1;
const LIST_UDP: usize = 2;

/// Server ports recognised when a flow starts without a handshake (the side using one is the server).
pub const WELL_KNOWN_PORTS: &[u16] = &[
    21, 22, 23, 25, 53, 80, 110, 111, 123, 135, 139, 143, 161, 389, 443, 445, 465, 514, 587, 636,
    853, 993, 995, 1433, 1521, 1883, 2049, 2181, 2379, 3000, 3128, 3306, 3389, 4222, 5000, 5353,
    5432, 5672, 6379, 6443, 8000, 8080, 8081, 8443, 8883, 9000, 9042, 9090, 9092, 9200, 9300,
    11211, 15672, 20880, 27017, 50051,
];

/// First port of the usual ephemeral (client) range.
const EPHEMERAL_START: u16 = 32768;

/// Whether `dst` is the server side of a flow whose first packet goes `src_port -> dst_port` and carries no
/// handshake: well-known service port, then port < 1024 against a higher one, then non-ephemeral against
/// ephemeral; otherwise the first packet's destination.
pub fn dst_is_server(src_port: u16, dst_port: u16) -> bool {
    let (s, d) = (
        WELL_KNOWN_PORTS.contains(&src_port),
        WELL_KNOWN_PORTS.contains(&dst_port),
    );
    if s != d {
        return d;
    }
    let (s, d) = (src_port < 1024, dst_port < 1024);
    if s != d {
        return d;
    }
    let (s, d) = (src_port >= EPHEMERAL_START, dst_port >= EPHEMERAL_START);
    if s != d {
        return s;
    }
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: IpAddr,
    b: IpAddr,
    pa: u16,
    pb: u16,
    tcp: bool,
}

impl Key {
    /// The direction-independent key, and whether the packet's source is side `a`.
    fn new(src: IpAddr, sp: u16, dst: IpAddr, dp: u16, tcp: bool) -> (Key, bool) {
        if (src, sp) <= (dst, dp) {
            (
                Key {
                    a: src,
                    b: dst,
                    pa: sp,
                    pb: dp,
                    tcp,
                },
                true,
            )
        } else {
            (
                Key {
                    a: dst,
                    b: src,
                    pa: dp,
                    pb: sp,
                    tcp,
                },
                false,
            )
        }
    }
}

#[derive(Debug, Default)]
struct Flow {
    live: bool,
    hash: u64,
    akey: Option<Key>,
    id: FlowId,
    key: Option<FlowKey>,
    client_is_a: bool,
    tcp: bool,
    start_us: u64,
    last_us: u64,
    packets: [u64; 2],
    bytes: [u64; 2],
    udp_payload: [u64; 2],
    udp_lost: [u64; 2],
    zero_window: [u64; 2],
    resets: [u64; 2],
    dirs: [TcpDir; 2],
    fin: [bool; 2],
    rst: bool,
    syn_us: Option<u64>,
    synack_us: Option<u64>,
    rtt_us: Option<u64>,
    list: usize,
    prev: u32,
    next: u32,
}

impl Flow {
    fn closed(&self) -> bool {
        self.rst || (self.fin[0] && self.fin[1])
    }
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

/// Why a flow ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndReason {
    Timeout,
    Evicted,
    OpenAtEnd,
    Restart,
}

/// The flow table and TCP reassembler: packets in, [`StreamEvent`]s out.
///
/// Every flow ends with exactly one [`StreamEvent::FlowEnd`]; no chunk of a flow follows its end. Memory is
/// bounded by [`Config::max_flows`] flows (each at most 512 bytes of slot plus a hash table entry and its
/// out-of-order buffers, themselves capped per direction and in total) and [`Config::max_frag_datagrams`] pending fragmented datagrams.
pub struct FlowTable {
    config: Config,
    hasher: hashbrown::DefaultHashBuilder,
    index: HashTable<u32>,
    slots: Vec<Flow>,
    free: Vec<u32>,
    lists: [List; 3],
    next_id: FlowId,
    now_us: u64,
    next_sweep_us: u64,
    counters: Counters,
    defrag: Defrag,
    ooo_total: usize,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("flows", &self.index.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Default for FlowTable {
    fn default() -> Self {
        FlowTable::new(Config::default())
    }
}

impl FlowTable {
    /// An empty table with these limits.
    pub fn new(config: Config) -> FlowTable {
        FlowTable {
            config,
            hasher: hashbrown::DefaultHashBuilder::default(),
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
                len: 0,
            }; 3],
            next_id: 1,
            now_us: 0,
            next_sweep_us: 0,
            counters: Counters::default(),
            defrag: Defrag::default(),
            ooo_total: 0,
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Flows currently tracked.
    pub fn live_flows(&self) -> usize {
        self.index.len()
    }

    /// Fragmented IPv4 datagrams awaiting their other fragments.
    pub fn pending_fragments(&self) -> usize {
        self.defrag.len()
    }

    /// Handle one packet; events it causes (chunks, flow ends) are appended to `out`.
    pub fn process(&mut self, pkt: &Packet, out: &mut Vec<StreamEvent>) {
        self.counters.packets += 1;
        self.counters.bytes += u64::from(pkt.orig_len);
        let ts = pkt.ts_us;
        if ts > self.now_us {
            self.now_us = ts;
        }
        if self.now_us >= self.next_sweep_us {
            self.sweep(out);
            self.next_sweep_us = self.now_us.saturating_add(self.config.sweep_interval_us);
        }
        if let Err(skip) = self.decode_and_dispatch(pkt, out) {
            let u = &mut self.counters.undecodable;
            match skip {
                Skip::LinkType => u.link_type += 1,
                Skip::LinkHeader => u.link_header += 1,
                Skip::IpHeader => u.ip_header += 1,
                Skip::TcpHeader => u.tcp_header += 1,
                Skip::UdpHeader => u.udp_header += 1,
                Skip::Ipv6Fragment => u.ipv6_fragment += 1,
                Skip::NotIp => self.counters.non_ip_packets += 1,
                Skip::OtherTransport => self.counters.other_ip_packets += 1,
            }
        }
    }

    fn decode_and_dispatch(
        &mut self,
        pkt: &Packet,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), Skip> {
        let off = decode::link_payload(pkt.link_type, &pkt.data)?;
        let ip = decode::ip(pkt.data.get(off..).unwrap_or(&[]))?;
        if ip.proto != 6 && ip.proto != 17 {
            return Err(Skip::OtherTransport);
        }
        if let Some(frag) = ip.frag {
            let Some(whole) = self.defrag.add(
                &self.config,
                &mut self.counters.fragments,
                self.now_us,
                ip.src,
                ip.dst,
                ip.proto,
                frag,
                ip.l4,
                ip.l4_len,
            ) else {
                return Ok(());
            };
            let whole = Bytes::from(whole);
            let len = whole.len();
            let seg = if ip.proto == 6 {
                decode::tcp(&whole, len)?
            } else {
                decode::udp(&whole, len)?
            };
            self.on_segment(pkt, ip.src, ip.dst, &seg, &whole, out);
            return Ok(());
        }
        let seg = if ip.proto == 6 {
            decode::tcp(ip.l4, ip.l4_len)?
        } else {
            decode::udp(ip.l4, ip.l4_len)?
        };
        self.on_segment(pkt, ip.src, ip.dst, &seg, &pkt.data, out);
        Ok(())
    }

    fn on_segment(
        &mut self,
        pkt: &Packet,
        src: IpAddr,
        dst: IpAddr,
        seg: &L4Segment<'_>,
        buf: &Bytes,
        out: &mut Vec<StreamEvent>,
    ) {
        let ts = pkt.ts_us;
        if seg.tcp {
            self.counters.tcp_packets += 1;
        } else {
            self.counters.udp_packets += 1;
        }
        let (akey, src_is_a) = Key::new(src, seg.src_port, dst, seg.dst_port, seg.tcp);
        let hash = self.hasher.hash_one(akey);
        let slots = &self.slots;
        let mut idx = self
            .index
            .find(hash, |&i| slots[i as usize].akey == Some(akey))
            .copied();
        if let Some(i) = idx {
            let f = &self.slots[i as usize];
            if seg.tcp && seg.flags & (flags::SYN | flags::ACK) == flags::SYN {
                let d = usize::from(src_is_a != f.client_is_a);
                let restart = f.closed() || matches!(f.dirs[d].first_seq, Some(s) if s != seg.seq);
                if restart {
                    self.counters.flows_port_reused += 1;
                    self.end_flow(i, EndReason::Restart, out);
                    idx = None;
                }
            }
        }
        let i = match idx {
            Some(i) => i,
            None => self.create(akey, hash, src_is_a, src, dst, seg, ts, out),
        };
        let list = {
            let f = &mut self.slots[i as usize];
            let d = usize::from(src_is_a != f.client_is_a);
            let dir = if d == 0 {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            f.packets[d] += 1;
            f.bytes[d] += u64::from(pkt.orig_len);
            if ts > f.last_us {
                f.last_us = ts;
            }
            if seg.tcp {
                on_tcp(
                    f,
                    d,
                    dir,
                    ts,
                    seg,
                    buf,
                    &self.config,
                    &mut self.counters,
                    &mut self.ooo_total,
                    out,
                );
                if f.closed() {
                    LIST_TCP_CLOSED
                } else {
                    LIST_TCP
                }
            } else {
                let wire = seg.payload_len as u64;
                f.udp_payload[d] += wire;
                f.udp_lost[d] += wire - seg.payload.len() as u64;
                if !seg.payload.is_empty() {
                    self.counters.chunks += 1;
                    self.counters.chunk_bytes += seg.payload.len() as u64;
                    out.push(StreamEvent::Chunk(StreamChunk {
                        flow_id: f.id,
                        flow: f.key.unwrap_or_else(unreachable_key),
                        direction: dir,
                        time_us: ts,
                        seq: None,
                        gap_before: 0,
                        bytes: buf.slice_ref(seg.payload),
                        origin: ChunkOrigin::Packet,
                    }));
                }
                LIST_UDP
            }
        };
        self.touch(i, list);
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        akey: Key,
        hash: u64,
        src_is_a: bool,
        src: IpAddr,
        dst: IpAddr,
        seg: &L4Segment<'_>,
        ts: u64,
        out: &mut Vec<StreamEvent>,
    ) -> u32 {
        if self.index.len() >= self.config.max_flows.max(1) {
            // Evict the least recently active flow (the oldest list head).
            let victim = self
                .lists
                .iter()
                .filter(|l| l.head != NIL)
                .map(|l| l.head)
                .min_by_key(|&h| self.slots[h as usize].last_us);
            if let Some(v) = victim {
                self.end_flow(v, EndReason::Evicted, out);
            }
        }
        let src_is_client = if seg.tcp && seg.flags & flags::SYN != 0 {
            seg.flags & flags::ACK == 0
        } else {
            dst_is_server(seg.src_port, seg.dst_port)
        };
        let key = if src_is_client {
            FlowKey {
                ip_src: src,
                ip_dst: dst,
                port_src: seg.src_port,
                port_dst: seg.dst_port,
                l4_protocol: if seg.tcp {
                    L4Protocol::Tcp
                } else {
                    L4Protocol::Udp
                },
            }
        } else {
            FlowKey {
                ip_src: dst,
                ip_dst: src,
                port_src: seg.dst_port,
                port_dst: seg.src_port,
                l4_protocol: if seg.tcp {
                    L4Protocol::Tcp
                } else {
                    L4Protocol::Udp
                },
            }
        };
        let flow = Flow {
            live: true,
            hash,
            akey: Some(akey),
            id: self.next_id,
            key: Some(key),
            client_is_a: src_is_a == src_is_client,
            tcp: seg.tcp,
            start_us: ts,
            last_us: ts,
            prev: NIL,
            next: NIL,
            list: if seg.tcp { LIST_TCP } else { LIST_UDP },
            ..Flow::default()
        };
        self.next_id += 1;
        self.counters.flows_created += 1;
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = flow;
                i
            }
            None => {
                self.slots.push(flow);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        let hasher = &self.hasher;
        self.index.insert_unique(hash, i, |&j| {
            slots[j as usize]
                .akey
                .map(|k| hasher.hash_one(k))
                .unwrap_or(0)
        });
        self.push_tail(i);
        i
    }

    fn unlink(&mut self, i: u32) {
        let (l, prev, next) = {
            let f = &self.slots[i as usize];
            (f.list, f.prev, f.next)
        };
        if prev == NIL {
            self.lists[l].head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[l].tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
        self.lists[l].len -= 1;
        let f = &mut self.slots[i as usize];
        f.prev = NIL;
        f.next = NIL;
    }

    fn push_tail(&mut self, i: u32) {
        let l = self.slots[i as usize].list;
        let tail = self.lists[l].tail;
        {
            let f = &mut self.slots[i as usize];
            f.prev = tail;
            f.next = NIL;
        }
        if tail == NIL {
            self.lists[l].head = i;
        } else {
            self.slots[tail as usize].next = i;
        }
        self.lists[l].tail = i;
        self.lists[l].len += 1;
    }

    /// Move a flow to the tail of `list` (most recently active).
    fn touch(&mut self, i: u32, list: usize) {
        let f = &self.slots[i as usize];
        if f.list == list && f.next == NIL {
            return;
        }
        self.unlink(i);
        self.slots[i as usize].list = list;
        self.push_tail(i);
    }

    fn sweep(&mut self, out: &mut Vec<StreamEvent>) {
        let now = self.now_us;
        let timeouts = [
            self.config.tcp_idle_timeout_us,
            self.config.tcp_closed_timeout_us,
            self.config.udp_idle_timeout_us,
        ];
        for (l, timeout) in timeouts.into_iter().enumerate() {
            loop {
                let h = self.lists[l].head;
                if h == NIL || self.slots[h as usize].last_us.saturating_add(timeout) > now {
                    break;
                }
                self.end_flow(h, EndReason::Timeout, out);
            }
        }
        self.defrag
            .sweep(&self.config, &mut self.counters.fragments, now);
    }

    fn end_flow(&mut self, i: u32, reason: EndReason, out: &mut Vec<StreamEvent>) {
        self.unlink(i);
        let hash = self.slots[i as usize].hash;
        if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        let mut f = std::mem::take(&mut self.slots[i as usize]);
        self.free.push(i);
        let Some(key) = f.key else {
            return;
        };
        if f.tcp {
            for d in 0..2 {
                let mut sink = Sink {
                    flow_id: f.id,
                    key,
                    dir: if d == 0 {
                        Direction::ClientToServer
                    } else {
                        Direction::ServerToClient
                    },
                    out,
                    counters: &mut self.counters,
                    ooo_total: &mut self.ooo_total,
                };
                f.dirs[d].flush(&mut sink);
                f.dirs[d].account_tail_loss(&mut sink);
            }
        }
        let close_type = match reason {
            EndReason::Evicted => CloseType::Evicted,
            _ if f.rst => CloseType::Rst,
            _ if f.fin[0] || f.fin[1] => CloseType::Fin,
            EndReason::Timeout => CloseType::Timeout,
            EndReason::OpenAtEnd | EndReason::Restart => CloseType::OpenAtEnd,
        };
        match reason {
            EndReason::Evicted => self.counters.flows_evicted += 1,
            EndReason::Timeout => self.counters.flows_timed_out += 1,
            EndReason::OpenAtEnd => self.counters.flows_open_at_end += 1,
            EndReason::Restart => {}
        }
        let mut r = FlowRecord::new(&key, f.start_us);
        r.end_time_us = f.last_us;
        r.packet_tx = f.packets[0];
        r.packet_rx = f.packets[1];
        r.byte_tx = f.bytes[0];
        r.byte_rx = f.bytes[1];
        if f.tcp {
            let (s0, s1) = (f.dirs[0].stats, f.dirs[1].stats);
            r.payload_byte_tx = s0.payload;
            r.payload_byte_rx = s1.payload;
            r.retrans_tx = s0.retrans;
            r.retrans_rx = s1.retrans;
            r.lost_byte_tx = s0.lost;
            r.lost_byte_rx = s1.lost;
        } else {
            r.payload_byte_tx = f.udp_payload[0];
            r.payload_byte_rx = f.udp_payload[1];
            r.lost_byte_tx = f.udp_lost[0];
            r.lost_byte_rx = f.udp_lost[1];
        }
        r.rtt_us = f.rtt_us;
        r.close_type = close_type;
        out.push(StreamEvent::FlowEnd(Box::new(FlowEnd {
            flow_id: f.id,
            flow: key,
            time_us: if reason == EndReason::Timeout {
                self.now_us
            } else {
                f.last_us
            },
            record: r,
            out_of_order: [f.dirs[0].stats.ooo, f.dirs[1].stats.ooo],
            zero_window: f.zero_window,
            resets: f.resets,
        })));
    }

    /// Advance capture time without a packet (live sources call this periodically so idle flows still time out).
    pub fn advance(&mut self, now_us: u64, out: &mut Vec<StreamEvent>) {
        if now_us > self.now_us {
            self.now_us = now_us;
        }
        if self.now_us >= self.next_sweep_us {
            self.sweep(out);
            self.next_sweep_us = self.now_us.saturating_add(self.config.sweep_interval_us);
        }
    }

    /// End of input: end every flow still open (close type `open_at_end`, or `fin`/`rst` when seen), oldest
    /// flow first.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let mut live: Vec<(FlowId, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, f)| f.live)
            .map(|(i, f)| (f.id, i as u32))
            .collect();
        live.sort_unstable();
        for (_, i) in live {
            self.end_flow(i, EndReason::OpenAtEnd, out);
        }
        let now = u64::MAX;
        self.defrag
            .sweep(&self.config, &mut self.counters.fragments, now);
    }
}

fn unreachable_key() -> FlowKey {
    FlowKey {
        ip_src: IpAddr::from([0, 0, 0, 0]),
        ip_dst: IpAddr::from([0, 0, 0, 0]),
        port_src: 0,
        port_dst: 0,
        l4_protocol: L4Protocol::Udp,
    }
}

#[allow(clippy::too_many_arguments)]
fn on_tcp(
    f: &mut Flow,
    d: usize,
    dir: Direction,
    ts: u64,
    seg: &L4Segment<'_>,
    buf: &Bytes,
    config: &Config,
    counters: &mut Counters,
    ooo_total: &mut usize,
    out: &mut Vec<StreamEvent>,
) {
    let fl = seg.flags;
    let syn = fl & flags::SYN != 0;
    let ack = fl & flags::ACK != 0;
    if fl & flags::RST != 0 {
        f.resets[d] += 1;
        f.rst = true;
    }
    if syn {
        if d == 0 && !ack && f.synack_us.is_none() {
            f.syn_us = Some(ts);
        }
        if d == 1 && ack && f.synack_us.is_none() && f.syn_us.is_some() {
            f.synack_us = Some(ts);
        }
        if f.dirs[d].on_syn(seg.seq) {
            f.dirs[d].stats.retrans += 1;
            counters.tcp_retransmissions += 1;
        }
    } else if ack && d == 0 && f.rtt_us.is_none() {
        let acks_synack = f.dirs[1].isn.map(|i| i.wrapping_add(1)) == Some(seg.ack);
        if let (Some(s), Some(_), true) = (f.syn_us, f.synack_us, acks_synack) {
            f.rtt_us = Some(ts.saturating_sub(s));
        }
    }
    if seg.window == 0 && fl & (flags::SYN | flags::RST | flags::FIN) == 0 {
        f.zero_window[d] += 1;
    }
    if fl & flags::RST == 0 {
        if f.dirs[d].first_seq.is_none() {
            f.dirs[d].first_seq = Some(seg.seq);
        }
        // The sequence space this segment proves was sent (data, and the FIN's own sequence number).
        let data_seq = if syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        f.dirs[d].saw_seq(data_seq.wrapping_add(seg.payload_len as u32));
    }
    if seg.payload_len > 0 && fl & flags::RST == 0 {
        let seq = if syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        let key = f.key.unwrap_or_else(unreachable_key);
        let mut sink = Sink {
            flow_id: f.id,
            key,
            dir,
            out,
            counters,
            ooo_total,
        };
        f.dirs[d].segment(
            config,
            &mut sink,
            seq,
            seg.payload_len.min(u32::MAX as usize) as u32,
            seg.payload,
            Some(buf),
            ts,
        );
    }
    if fl & flags::FIN != 0 {
        f.fin[d] = true;
        let data_seq = if syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        f.dirs[d].on_fin(data_seq.wrapping_add(seg.payload_len as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_flow_memory_budget() {
        // The documented budget: a flow slot stays within 512 bytes (plus 8 bytes of hash table entry and its
        // out-of-order buffers, which are capped separately).
        let size = std::mem::size_of::<Flow>();
        eprintln!("size_of::<Flow>() = {size}");
        assert!(size <= 512, "{size}");
    }

    #[test]
    fn port_rule() {
        assert!(dst_is_server(51000, 6379));
        assert!(!dst_is_server(6379, 51000));
        assert!(dst_is_server(2000, 443));
        assert!(dst_is_server(40000, 900));
        assert!(!dst_is_server(15353, 40000));
        assert!(dst_is_server(40000, 15353));
        // Nothing to go by: the first packet's destination.
        assert!(dst_is_server(20000, 20001));
        assert!(dst_is_server(20001, 20000));
    }
}
