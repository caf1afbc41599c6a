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

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn lit(v: &mut Vec<u8>, s: &[u8]) {
    v.push(s.len() as u8);
    v.extend_from_slice(s);
}

/// One long gRPC connection with `calls` unary calls, HPACK dynamic table reused as real clients do (the first
/// call inserts `:path`, `:authority` and `content-type`, later calls index them), one segment per message.
fn synthetic_grpc(calls: u32) -> Vec<StreamChunk> {
    let flow = FlowKey {
        ip_src: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip_dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port_src: 40000,
        port_dst: 50051,
        l4_protocol: L4Protocol::Tcp,
    };
    let mut out = Vec::new();
    let mut t = 1_000_000u64;
    let mut push = |dir, bytes: Vec<u8>| {
        t += 50;
        out.push(StreamChunk {
            flow_id: 1,
            flow,
            direction: dir,
            time_us: t,
            seq: None,
            gap_before: 0,
            bytes: bytes.into(),
            origin: ChunkOrigin::Packet,
        });
    };
    let mut c = fathom_protocols::http2::frame::PREFACE.to_vec();
    c.extend(frame(4, 0, 0, &[]));
    push(Direction::ClientToServer, c);
    push(Direction::ServerToClient, frame(4, 0, 0, &[]));
    for i in 0..calls {
        let id = 2 * i + 1;
        let mut req = vec![0x83, 0x86];
        let mut resp = vec![0x88];
        if i == 0 {
            req.push(0x44);
            lit(&mut req, b"/demo.v1.Catalog/GetItem");
            req.push(0x41);
            lit(&mut req, b"catalog.internal:50051");
            req.push(0x5f);
            lit(&mut req, b"application/grpc");
            resp.push(0x5f);
            lit(&mut resp, b"application/grpc");
        } else {
            req.extend_from_slice(&[0xc0, 0xbf, 0xbe]);
            resp.push(0xbe);
        }
        req.extend_from_slice(&[0x00, 0x0b]);
        req.extend_from_slice(b"traceparent");
        lit(
            &mut req,
            b"00-ae40f7d399d2edbec917149794cab8d4-808075942aa72cd7-01",
        );
        let mut c = frame(1, 0x4, id, &req);
        c.extend(frame(0, 0x1, id, &[0u8; 20]));
        push(Direction::ClientToServer, c);
        let mut s = frame(1, 0x4, id, &resp);
        s.extend(frame(0, 0, id, &[0u8; 60]));
        let mut trailers = vec![0x00, 0x0b];
        trailers.extend_from_slice(b"grpc-status");
        lit(&mut trailers, b"0");
        s.extend(frame(1, 0x5, id, &trailers));
        push(Direction::ServerToClient, s);
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("http2");
    let inputs = [
        ("http2.pcap", chunks("http2.pcap", 18081)),
        ("grpc.pcap", chunks("grpc.pcap", 15051)),
        ("synthetic-grpc-10k-calls", synthetic_grpc(10_000)),
    ];
    for (name, input) in inputs {
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
