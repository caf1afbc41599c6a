//! MySQL parser throughput on the shared capture's conversations (`mysql.pcap`) and on a large result set.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{mysql::MysqlParser, Engine, L7Parser, Limits, ParseCtx};
use std::hint::black_box;
use std::sync::Arc;

#[path = "../src/mysql/fixtures.rs"]
mod fixtures;

fn flow() -> FlowKey {
    FlowKey {
        ip_src: [127, 0, 0, 1].into(),
        ip_dst: [127, 0, 0, 1].into(),
        port_src: 44646,
        port_dst: 13306,
        l4_protocol: L4Protocol::Tcp,
    }
}

fn dir(client: bool) -> Direction {
    if client {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    }
}

/// Feed a conversation to a fresh flow parser (no engine): returns messages emitted.
fn parse_direct(segs: &[(bool, Vec<u8>)], limits: &Limits) -> usize {
    let key = flow();
    let mut fp = MysqlParser.new_flow(&key, limits);
    let mut offs = [0u64; 2];
    let mut out = Vec::new();
    let mut n = 0;
    for (c, b) in segs {
        let d = dir(*c);
        let ctx = ParseCtx {
            direction: d,
            flow: &key,
            stream_offset: offs[d.index()],
            time_us: 0,
            limits,
            datagram: false,
        };
        let used = fp.parse(b, &ctx, &mut out).unwrap_or(b.len());
        offs[d.index()] += used as u64;
        n += out.len();
        out.clear();
    }
    n
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut convo: Vec<(bool, Vec<u8>)> = Vec::new();
    convo.extend(fixtures::PYMYSQL.iter().map(|(c, b)| (*c, b.to_vec())));
    let bytes: usize = convo.iter().map(|s| s.1.len()).sum();
    let mut g = c.benchmark_group("mysql");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("pymysql_conversation_direct", |b| {
        b.iter(|| black_box(parse_direct(black_box(&convo), &limits)))
    });
    let mut conn: Vec<(bool, Vec<u8>)> = Vec::new();
    conn.extend(fixtures::CONNECTOR.iter().map(|(c, b)| (*c, b.to_vec())));
    let cbytes: usize = conn.iter().map(|s| s.1.len()).sum();
    g.throughput(Throughput::Bytes(cbytes as u64));
    g.bench_function("connector_conversation_engine", |b| {
        b.iter(|| {
            let mut e = Engine::new(vec![Arc::new(MysqlParser)], limits.clone());
            let mut logs = Vec::new();
            for (i, (cl, bytes)) in conn.iter().enumerate() {
                e.on_chunk(
                    &StreamChunk {
                        flow_id: 1,
                        flow: flow(),
                        direction: dir(*cl),
                        time_us: i as u64,
                        seq: None,
                        gap_before: 0,
                        bytes: bytes::Bytes::copy_from_slice(bytes),
                        origin: ChunkOrigin::Packet,
                    },
                    &mut logs,
                );
            }
            e.finish(&mut logs);
            black_box(logs.len())
        })
    });
    // A 10,000-row text result set after the capture's handshake: rows are skipped, never buffered.
    let mut big: Vec<(bool, Vec<u8>)> = fixtures::PYMYSQL[..3]
        .iter()
        .map(|(c, b)| (*c, b.to_vec()))
        .collect();
    big.push((true, packet(0, b"\x03SELECT id, customer FROM orders")));
    let mut rs = packet(1, b"\x02");
    rs.extend(packet(2, b"\x03def\x04shop\x06orders\x06orders\x02id\x02id\x0c?\x00\x0b\x00\x00\x00\x03\x03B\x00\x00\x00"));
    rs.extend(packet(3, b"\x03def\x04shop\x06orders\x06orders\x08customer\x08customer\x0c-\x00\x00\x01\x00\x00\xfd\x00\x00\x00\x00\x00"));
    rs.extend(packet(4, b"\xfe\x00\x00\x22\x00"));
    for i in 0..10_000u32 {
        let row = format!("\x05{:05}\x0dcustomer-{:04}", i, i % 10_000);
        rs.extend(packet((5 + i) as u8, row.as_bytes()));
    }
    rs.extend(packet(0, b"\xfe\x00\x00\x22\x00"));
    let rbytes = rs.len();
    for seg in rs.chunks(65_483) {
        big.push((false, seg.to_vec()));
    }
    g.throughput(Throughput::Bytes(rbytes as u64));
    g.bench_function("result_set_10k_rows_direct", |b| {
        b.iter(|| black_box(parse_direct(black_box(&big), &limits)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
