//! Redis parser throughput on pipelined GET/SET traffic (the shape of redis.pcap's pipelined burst, with
//! 64-byte and 512-byte values), parser alone and through the Engine.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::redis::RedisParser;
use fathom_protocols::{Engine, L7Parser, Limits, ParseCtx};
use std::sync::Arc;

fn flow() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 41640,
        port_dst: 6379,
        l4_protocol: L4Protocol::Tcp,
    }
}

/// `n` pipelined SET/GET pairs with `value_len`-byte values, and the server's replies.
fn traffic(n: usize, value_len: usize) -> (Vec<u8>, Vec<u8>) {
    let value = vec![b'v'; value_len];
    let mut c = Vec::new();
    let mut s = Vec::new();
    for i in 0..n {
        let key = format!("user:{i:06}");
        c.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${value_len}\r\n",
                key.len()
            )
            .as_bytes(),
        );
        c.extend_from_slice(&value);
        c.extend_from_slice(b"\r\n");
        c.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
        s.extend_from_slice(b"+OK\r\n");
        s.extend_from_slice(format!("${value_len}\r\n").as_bytes());
        s.extend_from_slice(&value);
        s.extend_from_slice(b"\r\n");
    }
    (c, s)
}

fn bench(cr: &mut Criterion) {
    let limits = Limits::default();
    let key = flow();
    let mut g = cr.benchmark_group("redis");
    for value_len in [64usize, 512] {
        let (c, s) = traffic(1000, value_len);
        let total = (c.len() + s.len()) as u64;
        g.throughput(Throughput::Bytes(total));
        g.bench_with_input(
            BenchmarkId::new("parser", value_len),
            &(c.clone(), s.clone()),
            |b, (c, s)| {
                let mut out = Vec::with_capacity(4096);
                b.iter(|| {
                    let mut p = RedisParser.new_flow(&key, &limits);
                    out.clear();
                    for (dir, data) in [
                        (Direction::ClientToServer, c),
                        (Direction::ServerToClient, s),
                    ] {
                        let ctx = ParseCtx {
                            direction: dir,
                            flow: &key,
                            stream_offset: 0,
                            time_us: 0,
                            limits: &limits,
                            datagram: false,
                        };
                        let n = p.parse(data, &ctx, &mut out).unwrap();
                        assert_eq!(n, data.len());
                    }
                    assert_eq!(out.len(), 4000);
                    out.len()
                })
            },
        );
        let chunks: Vec<StreamChunk> = c
            .chunks(16 * 1024)
            .map(|b| (Direction::ClientToServer, b))
            .chain(s.chunks(16 * 1024).map(|b| (Direction::ServerToClient, b)))
            .map(|(direction, b)| StreamChunk {
                flow_id: 1,
                flow: key,
                direction,
                time_us: 1,
                seq: None,
                gap_before: 0,
                bytes: bytes::Bytes::copy_from_slice(b),
                origin: ChunkOrigin::Packet,
            })
            .collect();
        g.bench_with_input(
            BenchmarkId::new("engine", value_len),
            &chunks,
            |b, chunks| {
                let mut logs = Vec::with_capacity(4096);
                b.iter(|| {
                    let mut e = Engine::new(
                        vec![Arc::new(RedisParser) as Arc<dyn L7Parser>],
                        Limits::default(),
                    );
                    logs.clear();
                    for ch in chunks {
                        e.on_chunk(ch, &mut logs);
                    }
                    e.finish(&mut logs);
                    assert_eq!(logs.len(), 2000);
                    logs.len()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
