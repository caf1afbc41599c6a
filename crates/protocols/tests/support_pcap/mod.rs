//! A minimal pcap → Engine driver for tests, so parser tests can run on real captures without depending on
//! the capture crate (which `protocols` must not depend on). Classic pcap only (LE/BE, µs/ns), link types
//! Ethernet (with VLAN tags), raw IP, Linux cooked (SLL) and BSD null; IPv4/IPv6 without extension headers;
//! naive TCP ordering (retransmissions dropped by sequence number, holes reported as `gap_before`).
//! Flows are oriented by a known server port.

#![allow(dead_code)]

use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, RequestLog, StreamChunk};
use fathom_protocols::{builtin_parsers, Engine, EngineStats, Limits};
use std::collections::HashMap;
use std::net::IpAddr;

/// One transport payload.
pub struct Packet {
    pub time_us: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub l4: L4Protocol,
    pub tcp: Option<(u32, u8)>, // (seq, flags)
    pub payload: Vec<u8>,
}

fn u16be(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn ip_packet(b: &[u8], time_us: u64) -> Option<Packet> {
    let v = b.first()? >> 4;
    let (src, dst, proto, l4b): (IpAddr, IpAddr, u8, &[u8]) = match v {
        4 => {
            let ihl = ((b[0] & 0xf) as usize) * 4;
            let total = u16be(b, 2)? as usize;
            let s: [u8; 4] = b.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = b.get(16..20)?.try_into().ok()?;
            (
                s.into(),
                d.into(),
                *b.get(9)?,
                b.get(ihl..total.min(b.len()))?,
            )
        }
        6 => {
            let plen = u16be(b, 4)? as usize;
            let s: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = b.get(24..40)?.try_into().ok()?;
            (
                s.into(),
                d.into(),
                *b.get(6)?,
                b.get(40..(40 + plen).min(b.len()))?,
            )
        }
        _ => return None,
    };
    match proto {
        17 => Some(Packet {
            time_us,
            src,
            dst,
            sport: u16be(l4b, 0)?,
            dport: u16be(l4b, 2)?,
            l4: L4Protocol::Udp,
            tcp: None,
            payload: l4b.get(8..)?.to_vec(),
        }),
        6 => {
            let off = ((*l4b.get(12)? >> 4) as usize) * 4;
            let seq = u32::from_be_bytes(l4b.get(4..8)?.try_into().ok()?);
            Some(Packet {
                time_us,
                src,
                dst,
                sport: u16be(l4b, 0)?,
                dport: u16be(l4b, 2)?,
                l4: L4Protocol::Tcp,
                tcp: Some((seq, *l4b.get(13)?)),
                payload: l4b.get(off..)?.to_vec(),
            })
        }
        _ => None,
    }
}

/// Read a classic pcap file into transport packets.
pub fn read_pcap(bytes: &[u8]) -> Vec<Packet> {
    let magic = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let (le, nano) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        _ => panic!("not a classic pcap"),
    };
    let u32at = |i: usize| {
        let a: [u8; 4] = bytes[i..i + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32at(20);
    let mut pos = 24;
    let mut out = Vec::new();
    while pos + 16 <= bytes.len() {
        let sec = u32at(pos) as u64;
        let frac = u32at(pos + 4) as u64;
        let caplen = u32at(pos + 8) as usize;
        let data = &bytes[pos + 16..(pos + 16 + caplen).min(bytes.len())];
        pos += 16 + caplen;
        let time_us = sec * 1_000_000 + if nano { frac / 1000 } else { frac };
        let ip = match linktype {
            1 => {
                let mut off = 12;
                let mut et = u16be(data, off);
                while et == Some(0x8100) || et == Some(0x88a8) {
                    off += 4;
                    et = u16be(data, off);
                }
                data.get(off + 2..)
            }
            101 | 12 | 14 => Some(data),
            113 => data.get(16..),
            0 => data.get(4..),
            _ => None,
        };
        if let Some(p) = ip.and_then(|ip| ip_packet(ip, time_us)) {
            out.push(p);
        }
    }
    out
}

#[derive(Default)]
struct TcpDir {
    /// Initial sequence number (of the first payload byte).
    isn: Option<u32>,
    /// Relative offset of the next byte to deliver.
    next: u64,
    /// Segments ahead of `next` (out of order), by relative offset.
    ahead: std::collections::BTreeMap<u64, (u64, Vec<u8>)>,
}

/// Most out-of-order segments held per direction before a hole is declared lost.
const MAX_AHEAD: usize = 64;

struct Flow {
    id: u64,
    key: FlowKey,
    dirs: [TcpDir; 2],
}

fn deliver(
    engine: &mut Engine,
    logs: &mut Vec<RequestLog>,
    f: &mut Flow,
    direction: Direction,
    force: bool,
) {
    let d = &mut f.dirs[direction.index()];
    loop {
        let Some((&off, _)) = d.ahead.iter().next() else {
            return;
        };
        if off > d.next && !force && d.ahead.len() <= MAX_AHEAD {
            return;
        }
        let (time_us, mut payload) = d.ahead.remove(&off).unwrap();
        let mut gap = 0;
        if off < d.next {
            let dup = (d.next - off) as usize;
            if dup >= payload.len() {
                continue;
            }
            payload.drain(..dup);
        } else {
            gap = off - d.next;
        }
        let begin = d.next + gap;
        d.next = begin + payload.len() as u64;
        let chunk = StreamChunk {
            flow_id: f.id,
            flow: f.key,
            direction,
            time_us,
            seq: Some(d.isn.unwrap_or(0).wrapping_add(begin as u32)),
            gap_before: gap,
            bytes: bytes::Bytes::from(payload),
            origin: ChunkOrigin::Packet,
        };
        engine.on_chunk(&chunk, logs);
    }
}

/// Run the built-in parsers on a capture; flows whose port is in `server_ports` are oriented towards it.
pub fn logs_from_pcap(bytes: &[u8], server_ports: &[u16]) -> (Vec<RequestLog>, EngineStats) {
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    let mut logs = Vec::new();
    let mut flows: HashMap<FlowKey, Flow> = HashMap::new();
    for p in read_pcap(bytes) {
        let to_server = server_ports.contains(&p.dport) || !server_ports.contains(&p.sport);
        let key = if to_server {
            FlowKey {
                ip_src: p.src,
                ip_dst: p.dst,
                port_src: p.sport,
                port_dst: p.dport,
                l4_protocol: p.l4,
            }
        } else {
            FlowKey {
                ip_src: p.dst,
                ip_dst: p.src,
                port_src: p.dport,
                port_dst: p.sport,
                l4_protocol: p.l4,
            }
        };
        let n = flows.len() as u64;
        let f = flows.entry(key).or_insert_with(|| Flow {
            id: n + 1,
            key,
            dirs: Default::default(),
        });
        let direction = if to_server {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        match p.tcp {
            Some((s, flags)) => {
                let d = &mut f.dirs[direction.index()];
                let syn = flags & 0x02 != 0;
                let first = if syn { s.wrapping_add(1) } else { s };
                let isn = *d.isn.get_or_insert(first);
                if p.payload.is_empty() {
                    continue;
                }
                let off = first.wrapping_sub(isn) as u64;
                d.ahead.entry(off).or_insert((p.time_us, p.payload));
                deliver(&mut engine, &mut logs, f, direction, false);
            }
            None => {
                if p.payload.is_empty() {
                    continue;
                }
                let chunk = StreamChunk {
                    flow_id: f.id,
                    flow: key,
                    direction,
                    time_us: p.time_us,
                    seq: None,
                    gap_before: 0,
                    bytes: bytes::Bytes::from(p.payload),
                    origin: ChunkOrigin::Packet,
                };
                engine.on_chunk(&chunk, &mut logs);
            }
        }
    }
    let mut all: Vec<_> = flows.into_values().collect();
    all.sort_by_key(|f| f.id);
    for f in &mut all {
        deliver(&mut engine, &mut logs, f, Direction::ClientToServer, true);
        deliver(&mut engine, &mut logs, f, Direction::ServerToClient, true);
    }
    engine.finish(&mut logs);
    (logs, engine.stats().clone())
}
