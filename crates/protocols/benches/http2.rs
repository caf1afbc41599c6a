//! HTTP/2 and gRPC parsing throughput on the shared real captures (`http2.pcap`, `grpc.pcap`), through the
//! whole session [`Engine`] (detection, framing, HPACK, pairing, RequestLog assembly).
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{http2::Http2Parser, Engine, Limits};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/");

/// Payload chunks of a classic Ethernet pcap (IPv4/TCP on loopback, no retransmissions in these captures).
fn chunks(name: &str, server_port: u16) -> Vec<StreamChunk> {
    let raw = std::fs::read(format!("{DATA_DIR}{name}")).expect("capture");
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= raw.len() {
        let le = |j: usize| u32::from_le_bytes([raw[j], raw[j + 1], raw[j + 2], raw[j + 3]]);
        let t = u64::from(le(i)) * 1_000_000 + u64::from(le(i + 4));
        let caplen = le(i + 8) as usize;
        let pkt = &raw[i + 16..i + 16 + caplen];
        i += 16 + caplen;
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[ihl..total];
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let payload = &tcp[usize::from(tcp[12] >> 4) * 4..];
        if payload.is_empty() {
            continue;
        }
        let (direction, client) = if dport == server_port {
            (Direction::ClientToServer, sport)
        } else {
            (Direction::ServerToClient, dport)
        };
        out.push(StreamChunk {
            flow_id: u64::from(client),
            flow: FlowKey {
                ip_src: IpAddr::V4(Ipv4Addr::LOCALHOST),
                ip_dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port_src: client,
                port_dst: server_port,
                l4_protocol: L4Protocol::Tcp,
            },
            direction,
            time_us: t,
            seq: Some(seq),
            gap_before: 0,
            bytes: bytes::Bytes::copy_from_slice(payload),
            origin: ChunkOrigin::Packet,
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("http2");
    for (name, port) in [("http2.pcap", 18081u16), ("grpc.pcap", 15051)] {
        let input = chunks(name, port);
        let bytes: usize = input.iter().map(|c| c.bytes.len()).sum();
        let run = |input: &[StreamChunk]| {
            let mut e = Engine::new(vec![Arc::new(Http2Parser)], Limits::default());
            let mut logs = Vec::new();
            for c in input {
                e.on_chunk(c, &mut logs);
            }
            e.finish(&mut logs);
            logs.len()
        };
        eprintln!(
            "{name}: {bytes} payload bytes, {} logs per iteration",
            run(&input)
        );
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(format!("engine/{name}"), |b| {
            b.iter(|| black_box(run(black_box(&input))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
