//! TLS benchmarks on the real conversations of `shared/data/tls.pcap` (tests/golden/tls): whole
//! handshakes through the Engine, and the application-data skip path.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::tls::TlsParser;
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

fn chunks(convs: &[Vec<(Direction, Vec<u8>)>], rounds: u64) -> Vec<StreamChunk> {
    let mut out = Vec::new();
    let mut id = 0;
    for _ in 0..rounds {
        for conv in convs {
            id += 1;
            let flow = FlowKey {
                ip_src: [127, 0, 0, 1].into(),
                ip_dst: [127, 0, 0, 1].into(),
                port_src: 30000 + (id % 30000) as u16,
                port_dst: 18443,
                l4_protocol: L4Protocol::Tcp,
            };
            for (i, (d, b)) in conv.iter().enumerate() {
                out.push(StreamChunk {
                    flow_id: id,
                    flow,
                    direction: *d,
                    time_us: i as u64,
                    seq: None,
                    gap_before: 0,
                    bytes: bytes::Bytes::from(b.clone()),
                    origin: ChunkOrigin::Packet,
                });
            }
        }
    }
    out
}

fn run(input: &[StreamChunk]) -> usize {
    let mut engine = Engine::new(vec![Arc::new(TlsParser)], Limits::default());
    let mut logs = Vec::with_capacity(1024);
    for c in input {
        engine.on_chunk(c, &mut logs);
    }
    engine.finish(&mut logs);
    logs.len()
}

fn bench(c: &mut Criterion) {
    let convs: Vec<_> = [
        include_str!("../tests/golden/tls/tls13_h2.txt"),
        include_str!("../tests/golden/tls/tls13_http11.txt"),
        include_str!("../tests/golden/tls/tls12_http11.txt"),
        include_str!("../tests/golden/tls/tls12_python.txt"),
        include_str!("../tests/golden/tls/alert_unknown_sni.txt"),
        include_str!("../tests/golden/tls/alert_no_sni.txt"),
    ]
    .iter()
    .map(|t| segments(t))
    .collect();
    let mut g = c.benchmark_group("tls");
    let input = chunks(&convs, 50);
    let bytes: usize = input.iter().map(|c| c.bytes.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("engine_handshakes_300_logs", |b| {
        b.iter_batched(
            || (),
            |_| assert_eq!(run(&input), 300),
            BatchSize::SmallInput,
        )
    });

    // One TLS 1.2 connection followed by 4 MB of application data in 16 KB records, 1448-byte segments.
    let mut conv = segments(include_str!("../tests/golden/tls/tls12_http11.txt"));
    let mut stream = Vec::new();
    for _ in 0..256 {
        stream.extend_from_slice(&[23, 3, 3, 0x40, 0x00]);
        stream.extend(std::iter::repeat_n(0xa5u8, 16384));
    }
    for seg in stream.chunks(1448) {
        conv.push((Direction::ServerToClient, seg.to_vec()));
    }
    let input = chunks(&[conv], 1);
    let bytes: usize = input.iter().map(|c| c.bytes.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("engine_skip_4mb_application_data", |b| {
        b.iter_batched(|| (), |_| assert_eq!(run(&input), 1), BatchSize::SmallInput)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
