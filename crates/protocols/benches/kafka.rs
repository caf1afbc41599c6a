//! Kafka parser throughput: pipelined Produce v7 requests (1 KiB records, as librdkafka sends them) and their
//! responses, parser alone.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fathom_model::{Direction, FlowKey, L4Protocol};
use fathom_protocols::kafka::KafkaParser;
use fathom_protocols::{L7Parser, Limits, ParseCtx};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// `n` Produce v7 requests with a `record_len`-byte record batch each, and their responses.
fn traffic(n: usize, record_len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for corr in 0..n as i32 {
        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes()); // Produce
        b.extend_from_slice(&7i16.to_be_bytes());
        b.extend_from_slice(&corr.to_be_bytes());
        b.extend_from_slice(&15i16.to_be_bytes());
        b.extend_from_slice(b"kcat-producer-a");
        b.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id
        b.extend_from_slice(&1i16.to_be_bytes()); // acks
        b.extend_from_slice(&30_000i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&6i16.to_be_bytes());
        b.extend_from_slice(b"orders");
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes());
        b.extend_from_slice(&(record_len as i32).to_be_bytes());
        b.extend(std::iter::repeat_n(0xabu8, record_len));
        c.extend(frame(&b));
        let mut r = Vec::new();
        r.extend_from_slice(&corr.to_be_bytes());
        r.extend_from_slice(&1i32.to_be_bytes());
        r.extend_from_slice(&6i16.to_be_bytes());
        r.extend_from_slice(b"orders");
        r.extend_from_slice(&1i32.to_be_bytes());
        r.extend_from_slice(&0i32.to_be_bytes()); // partition
        r.extend_from_slice(&0i16.to_be_bytes()); // error
        r.extend_from_slice(&i64::from(corr).to_be_bytes()); // base offset
        r.extend_from_slice(&(-1i64).to_be_bytes()); // log append time
        r.extend_from_slice(&0i64.to_be_bytes()); // log start offset
        r.extend_from_slice(&0i32.to_be_bytes()); // record errors
        r.extend_from_slice(&(-1i16).to_be_bytes()); // error message
        r.extend_from_slice(&0i32.to_be_bytes()); // throttle
        s.extend(frame(&r));
    }
    (c, s)
}

fn bench(cr: &mut Criterion) {
    let limits = Limits::default();
    let key = FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 35814,
        port_dst: 9092,
        l4_protocol: L4Protocol::Tcp,
    };
    let mut g = cr.benchmark_group("kafka");
    for record_len in [100usize, 1024] {
        let (c, s) = traffic(200, record_len);
        g.throughput(Throughput::Bytes((c.len() + s.len()) as u64));
        g.bench_with_input(
            BenchmarkId::new("produce", record_len),
            &(c, s),
            |b, (c, s)| {
                let mut out = Vec::with_capacity(512);
                b.iter(|| {
                    let mut p = KafkaParser.new_flow(&key, &limits);
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
                    assert_eq!(out.len(), 400);
                    assert!(out.iter().all(|m| m.info.response_code.is_none()));
                    out.len()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
