//! MQTT parser throughput on packets from the shared capture `mqtt.pcap`.
//!
//! `parse`: the broker → subscriber direction of the mosquitto_sub session (PUBLISH QoS 0/1/2 and PUBREL,
//! 48-byte packets) repeated to 64 KiB, through the flow parser. `engine`: the whole paho MQTT 5 session
//! (both directions, 11 logs) through `Engine`, pairing included.
#![allow(missing_docs)] // criterion_group! generates an undocumented function

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::{mqtt, Engine, L7Parser, Limits, ParseCtx};
use std::hint::black_box;
use std::sync::Arc;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SUB_RX: &str = "3430001973656e736f72732f636f62616c74302f74656c656d6574727900017b22736571223a302c2274656d70223a32307d3230001973656e736f72732f636f62616c74302f74656c656d6574727900027b22736571223a312c2274656d70223a32317d302e001973656e736f72732f636f62616c74302f74656c656d657472797b22736571223a322c2274656d70223a32327d302e001973656e736f72732f636f62616c74302f74656c656d657472797b22736571223a332c2274656d70223a32337d62020001";

const PAHO_V5: &[(bool, &str)] = &[
    (
        true,
        "101b00044d5154540502012c00000e666174686f6d2d7061686f2d7635",
    ),
    (false, "200900000622000a210014"),
    (true, "8216000100001073656e736f72732f2b2f616c6572747301"),
    (false, "900400010001"),
    (
        true,
        "301f001573656e736f72732f726176656e312f616c6572747300616c6572742030",
    ),
    (
        false,
        "301f001573656e736f72732f726176656e312f616c6572747300616c6572742030",
    ),
    (
        true,
        "3221001573656e736f72732f726176656e312f616c65727473000300616c6572742031",
    ),
    (
        false,
        "3221001573656e736f72732f726176656e312f616c65727473000100616c6572742031",
    ),
    (true, "40020001"),
    (false, "40020003"),
    (
        true,
        "3421001573656e736f72732f726176656e312f616c65727473000400616c6572742032",
    ),
    (false, "50020004"),
    (true, "62020004"),
    (
        false,
        "3221001573656e736f72732f726176656e312f616c65727473000200616c6572742032",
    ),
    (true, "40020002"),
    (false, "70020004"),
    (true, "a215000500001073656e736f72732f2b2f616c65727473"),
    (false, "b00400050000"),
    (true, "e000"),
];

fn flow() -> FlowKey {
    FlowKey {
        ip_src: [127, 0, 0, 1].into(),
        ip_dst: [127, 0, 0, 1].into(),
        port_src: 40000,
        port_dst: 1883,
        l4_protocol: L4Protocol::Tcp,
    }
}

fn bench(c: &mut Criterion) {
    let unit = hex(SUB_RX);
    let mut buf = Vec::new();
    while buf.len() < 64 * 1024 {
        buf.extend_from_slice(&unit);
    }
    let limits = Limits::default();
    let fk = flow();
    let mut g = c.benchmark_group("mqtt");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("parse_publishes_64k", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            let mut f = mqtt::MqttParser.new_flow(&fk, &limits);
            out.clear();
            let ctx = ParseCtx {
                direction: Direction::ServerToClient,
                flow: &fk,
                stream_offset: 0,
                time_us: 0,
                limits: &limits,
                datagram: false,
            };
            let n = f.parse(black_box(&buf), &ctx, &mut out).unwrap();
            black_box((n, out.len()))
        })
    });
    let chunks: Vec<(Direction, bytes::Bytes)> = PAHO_V5
        .iter()
        .map(|(c2s, h)| {
            let d = if *c2s {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            };
            (d, bytes::Bytes::from(hex(h)))
        })
        .collect();
    let total: usize = chunks.iter().map(|(_, b)| b.len()).sum();
    g.throughput(Throughput::Bytes(total as u64 * 100));
    g.bench_function("engine_paho_v5_session_x100", |b| {
        let parsers: Vec<Arc<dyn L7Parser>> = vec![Arc::new(mqtt::MqttParser)];
        let mut e = Engine::new(parsers, Limits::default());
        let mut logs = Vec::with_capacity(2048);
        let mut id = 0u64;
        b.iter(|| {
            logs.clear();
            for _ in 0..100 {
                id += 1;
                for (i, (d, bytes)) in chunks.iter().enumerate() {
                    let chunk = StreamChunk {
                        flow_id: id,
                        flow: fk,
                        direction: *d,
                        time_us: i as u64,
                        seq: None,
                        gap_before: 0,
                        bytes: bytes.clone(),
                        origin: ChunkOrigin::Packet,
                    };
                    e.on_chunk(&chunk, &mut logs);
                }
                e.finish(&mut logs);
            }
            assert_eq!(logs.len(), 1100);
            black_box(logs.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
