//! Per-call overhead of DeepFlow-ABI plugins against the Fathom ABI, in one run: `check_payload` of a
//! minimal WAT plugin (pulls the context and the payload through `vm_read_ctx_base` / `vm_read_payload`, as
//! every SDK plugin does), of the Rust test plugin (std, a real context parse, a protocol-name result), and
//! its `parse_payload` of one FRPC request (one protobuf frame back); the Fathom-ABI trivial probe is the
//! reference.
#![allow(missing_docs)]

#[path = "../tests/common/deepflow_plugin.rs"]
mod deepflow_plugin;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{Direction, FlowKey, L4Protocol};
use fathom_plugin_wasm::{PluginConfig, PluginHost};
use fathom_protocols::{L7Parser, Limits, ParseCtx, ProbeInput};
use std::hint::black_box;

const FATHOM_TRIVIAL: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "fathom_abi_version") (result i32) (i32.const 1))
  (func (export "fathom_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "fathom_probe") (param i32 i32 i32) (result i32) (i32.const 2))
  (func (export "fathom_parse") (param i32 i32 i32) (result i32) (i32.const 0))
)
"#;

const DEEPFLOW_MINIMAL: &str = r#"
(module
  (import "deepflow" "vm_read_ctx_base" (func $ctx (param i32 i32) (result i32)))
  (import "deepflow" "vm_read_payload" (func $payload (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\01")
  (func (export "_start"))
  (func (export "get_hook_bitmap") (result i32) (i32.const 16))
  (func (export "check_payload") (result i32)
    (drop (call $ctx (i32.const 512) (i32.const 256)))
    (drop (call $payload (i32.const 1024) (i32.const 4096)))
    (i32.const 1))
  (func (export "parse_payload") (result i32) (i32.const 0))
)
"#;

fn bench(c: &mut Criterion) {
    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let flow = FlowKey {
        ip_src: "10.0.0.1".parse().unwrap(),
        ip_dst: "10.0.0.2".parse().unwrap(),
        port_src: 40000,
        port_dst: 7000,
        l4_protocol: L4Protocol::Tcp,
    };
    let payload = b"FRPC\0\0\0\0\x01\0\x07GetUser";
    let input = ProbeInput {
        payload,
        direction: Direction::ClientToServer,
        flow: &flow,
    };
    let mut g = c.benchmark_group("wasm_plugin_abi");
    g.throughput(Throughput::Elements(1));
    let fathom = host.load("trivial", FATHOM_TRIVIAL.as_bytes()).unwrap();
    g.bench_function("fathom_probe_18B", |b| {
        b.iter(|| fathom.probe(black_box(&input)))
    });
    let minimal = host
        .load_any("minimal", DEEPFLOW_MINIMAL.as_bytes())
        .unwrap();
    let minimal = minimal.parser().unwrap();
    g.bench_function("deepflow_check_payload_wat_18B", |b| {
        b.iter(|| minimal.probe(black_box(&input)))
    });
    if let Some(wasm) = deepflow_plugin::build_plugin(false) {
        let rust = host.load_any("frpc", &wasm).unwrap().parser().unwrap();
        g.bench_function("deepflow_check_payload_rust_18B", |b| {
            b.iter(|| rust.probe(black_box(&input)))
        });
        let limits = Limits::default();
        let mut parser = rust.new_flow(&flow, &limits);
        let mut out = Vec::with_capacity(4);
        g.bench_function("deepflow_parse_payload_rust_18B", |b| {
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
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
