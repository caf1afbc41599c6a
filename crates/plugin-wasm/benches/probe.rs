//! Per-call overhead of a WASM plugin: a trivial probe, and a parse of one small message.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{Direction, FlowKey, L4Protocol};
use fathom_plugin_wasm::{PluginConfig, PluginHost};
use fathom_protocols::{L7Parser, Limits, ParseCtx, ProbeInput};
use std::hint::black_box;

/// Probe says "yes" at once; parse consumes everything as one request.
const TRIVIAL: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "fathom_abi_version") (result i32) (i32.const 1))
  (func (export "fathom_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "fathom_probe") (param i32 i32 i32) (result i32) (i32.const 2))
  (func (export "fathom_parse") (param $p i32) (param $n i32) (param i32) (result i32)
    (memory.fill (i32.const 16) (i32.const 0) (i32.const 72))
    (i32.store (i32.const 16) (local.get $n))
    (i32.const 16))
)
"#;

fn bench(c: &mut Criterion) {
    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let plugin = host.load("trivial", TRIVIAL.as_bytes()).unwrap();
    let flow = FlowKey {
        ip_src: "10.0.0.1".parse().unwrap(),
        ip_dst: "10.0.0.2".parse().unwrap(),
        port_src: 40000,
        port_dst: 7000,
        l4_protocol: L4Protocol::Tcp,
    };
    let payload = b"FRPC\0\0\0\0\x01\0\x07GetUser";
    let mut g = c.benchmark_group("wasm_plugin");
    g.throughput(Throughput::Elements(1));
    g.bench_function("probe_16B", |b| {
        b.iter(|| {
            plugin.probe(black_box(&ProbeInput {
                payload,
                direction: Direction::ClientToServer,
                flow: &flow,
            }))
        })
    });
    let limits = Limits::default();
    let mut parser = plugin.new_flow(&flow, &limits);
    let mut out = Vec::with_capacity(4);
    g.bench_function("parse_one_message_18B", |b| {
        b.iter(|| {
            out.clear();
            let ctx = ParseCtx {
                direction: Direction::ClientToServer,
                flow: &flow,
                stream_offset: 0,
                time_us: 0,
                limits: &limits,
                datagram: false,
            };
            parser.parse(black_box(payload), &ctx, &mut out).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
