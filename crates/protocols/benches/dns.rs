//! DNS parser benchmarks on the real messages of `shared/data/dns.pcap` (tests/golden/dns).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::dns::{self, wire, DnsParser};
use fathom_protocols::{Engine, Limits};
use std::sync::Arc;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn segments(text: &str) -> Vec<(Direction, Vec<u8>)> {
    text.lines()
        .filter_map(|l| {
            let (d, h) = l.split_once(' ')?;
            let dir = if d == "c" {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            Some((dir, hex(h.trim())))
        })
        .collect()
}

fn flow(l4: L4Protocol) -> FlowKey {
    FlowKey {
        ip_src: [127, 0, 0, 1].into(),
        ip_dst: [127, 0, 0, 1].into(),
        port_src: 50000,
        port_dst: 15353,
        l4_protocol: l4,
    }
}

/// Chunks of `rounds` repetitions of the conversation on one flow (ids repeat: each pair completes before
/// the next query with the same id).
fn chunks(segs: &[(Direction, Vec<u8>)], l4: L4Protocol, rounds: usize) -> Vec<StreamChunk> {
    let mut out = Vec::new();
    for r in 0..rounds {
        for (i, (d, b)) in segs.iter().enumerate() {
            out.push(StreamChunk {
                flow_id: 1,
                flow: flow(l4),
                direction: *d,
                time_us: (r * segs.len() + i) as u64,
                seq: None,
                gap_before: 0,
                bytes: bytes::Bytes::from(b.clone()),
                origin: ChunkOrigin::Packet,
            });
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let udp = segments(include_str!("../tests/golden/dns/udp.txt"));
    let tcp = segments(include_str!("../tests/golden/dns/tcp.txt"));

    let mut g = c.benchmark_group("dns");
    // Message view + summary alone, on the 10 UDP responses.
    let responses: Vec<&Vec<u8>> = udp
        .iter()
        .filter(|(d, _)| *d == Direction::ServerToClient)
        .map(|(_, b)| b)
        .collect();
    let bytes: usize = responses.iter().map(|b| b.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    let limits = Limits::default();
    g.bench_function("message_parse_summarize_10_responses", |b| {
        b.iter(|| {
            for r in &responses {
                let m = wire::Message::parse(r, dns::MAX_QUESTIONS).unwrap();
                std::hint::black_box(dns::to_message(
                    &m,
                    Direction::ServerToClient,
                    0,
                    r.len() as u64,
                    &limits,
                ));
            }
        })
    });

    for (name, segs, l4) in [
        ("engine_udp", &udp, L4Protocol::Udp),
        ("engine_tcp", &tcp, L4Protocol::Tcp),
    ] {
        let input = chunks(segs, l4, 100);
        let bytes: usize = input.iter().map(|c| c.bytes.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(format!("{name}_{}_logs", segs.len() / 2 * 100), |b| {
            b.iter_batched(
                || Engine::new(vec![Arc::new(DnsParser)], Limits::default()),
                |mut engine| {
                    let mut logs = Vec::with_capacity(1024);
                    for c in &input {
                        engine.on_chunk(c, &mut logs);
                    }
                    engine.finish(&mut logs);
                    assert_eq!(logs.len(), segs.len() / 2 * 100);
                    logs
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
