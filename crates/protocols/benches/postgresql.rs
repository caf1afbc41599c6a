//! PostgreSQL parser throughput on the shared capture's psycopg conversation (`postgresql.pcap`) and on a large
//! result set.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{postgresql::PostgresqlParser, Engine, L7Parser, Limits, ParseCtx};
use std::hint::black_box;
use std::sync::Arc;

#[path = "../src/postgresql/fixtures.rs"]
mod fixtures;

fn flow() -> FlowKey {
    FlowKey {
        ip_src: [127, 0, 0, 1].into(),
        ip_dst: [127, 0, 0, 1].into(),
        port_src: 41874,
        port_dst: 15432,
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

fn parse_direct(segs: &[(bool, Vec<u8>)], limits: &Limits) -> usize {
    let key = flow();
    let mut fp = PostgresqlParser.new_flow(&key, limits);
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

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let convo: Vec<(bool, Vec<u8>)> = fixtures::PSYCOPG
        .iter()
        .map(|(c, b)| (*c, b.to_vec()))
        .collect();
    let bytes: usize = convo.iter().map(|s| s.1.len()).sum();
    let mut g = c.benchmark_group("postgresql");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("psycopg_conversation_direct", |b| {
        b.iter(|| black_box(parse_direct(black_box(&convo), &limits)))
    });
    g.bench_function("psycopg_conversation_engine", |b| {
        b.iter(|| {
            let mut e = Engine::new(vec![Arc::new(PostgresqlParser)], limits.clone());
            let mut logs = Vec::new();
            for (i, (cl, bytes)) in convo.iter().enumerate() {
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
    // A 10,000-row simple-query result after the capture's startup.
    let mut big: Vec<(bool, Vec<u8>)> = fixtures::PSYCOPG[..8]
        .iter()
        .map(|(c, b)| (*c, b.to_vec()))
        .collect();
    big.push((true, msg(b'Q', b"SELECT id, owner FROM accounts\0")));
    let mut rs = msg(b'T', b"\x00\x02id\x00\x00\x00\x40\x01\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00owner\x00\x00\x00\x40\x01\x00\x02\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00");
    for i in 0..10_000u32 {
        let id = format!("{i}");
        let owner = format!("owner-{i:05}");
        let mut body = 2u16.to_be_bytes().to_vec();
        body.extend_from_slice(&(id.len() as u32).to_be_bytes());
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&(owner.len() as u32).to_be_bytes());
        body.extend_from_slice(owner.as_bytes());
        rs.extend(msg(b'D', &body));
    }
    rs.extend(msg(b'C', b"SELECT 10000\0"));
    rs.extend(msg(b'Z', b"I"));
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
