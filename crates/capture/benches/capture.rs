//! Criterion bench: decode + flow table + TCP reassembly over the shared captures, in memory.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_capture::{Config, EventSource, FileSource, PacketCapture};
use std::path::Path;

fn load(name: &str) -> Vec<u8> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name);
    std::fs::read(p).expect("shared capture")
}

fn run(bytes: &'static [u8]) -> u64 {
    let src = FileSource::from_reader(std::io::Cursor::new(bytes)).expect("capture");
    let mut cap = PacketCapture::new(src, Config::default());
    let mut events = Vec::with_capacity(4096);
    let mut n = 0u64;
    loop {
        let more = cap.next_events(&mut events).expect("reads");
        n += events.len() as u64;
        events.clear();
        if !more {
            return n;
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("capture");
    for name in ["http1.pcap", "mysql.pcap", "redis.pcap", "dns.pcap"] {
        let bytes: &'static [u8] = Box::leak(load(name).into_boxed_slice());
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| b.iter(|| run(bytes)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
