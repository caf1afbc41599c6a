//! FRPC through `fathom_protocols::Engine`: the WASM plugins (WAT, and when the toolchains are there Rust and
//! C, built from `examples/plugins/`) against the same protocol parsed natively (a Rust `L7Parser` below), in
//! one criterion run, in payload MB/s. Plus the cost of one HTTP hook call (`MessageHook::on_message` on a
//! `WasmPlugin`): a hook that changes nothing, and the Rust HTTP hook example.
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{chunk, flow, frpc_request, frpc_response};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{Direction, FlowKey, L7Protocol, ResponseStatus, StreamChunk};
use fathom_plugin_wasm::{PluginConfig, PluginHost};
use fathom_protocols::{
    builtin_parsers, Correlation, Engine, FlowParser, HookInput, L7Parser, Limits, LogInfo,
    Message, MessageHook, MessageKind, ParseCtx, ParseError, ParseErrorKind, Probe, ProbeInput,
};
use std::hint::black_box;
use std::sync::Arc;

/// FRPC parsed natively: the same rules as the example plugins.
struct NativeFrpc;
struct NativeFlow;

impl L7Parser for NativeFrpc {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Custom("frpc".into())
    }
    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        if input.payload.starts_with(b"FRPC") {
            Probe::Yes
        } else {
            Probe::No
        }
    }
    fn new_flow(&self, _: &FlowKey, _: &Limits) -> Box<dyn FlowParser> {
        Box::new(NativeFlow)
    }
}

impl FlowParser for NativeFlow {
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError> {
        let mut off = 0;
        while data.len() - off >= 11 {
            let d = &data[off..];
            if !d.starts_with(b"FRPC") || d[4] > 1 {
                return Err(ParseError::new(ParseErrorKind::Invalid, off));
            }
            let total = 11 + u16::from_be_bytes([d[9], d[10]]) as usize;
            if d.len() < total {
                break;
            }
            let id = u32::from_be_bytes([d[5], d[6], d[7], d[8]]) as u64;
            let body = &d[11..total];
            let mut info = LogInfo {
                request_id: Some(id),
                ..LogInfo::default()
            };
            let kind = if d[4] == 0 {
                info.request_type = Some(String::from_utf8_lossy(body).into_owned());
                MessageKind::Request
            } else {
                let st = *body
                    .first()
                    .ok_or(ParseError::new(ParseErrorKind::Invalid, off))?;
                info.response_code = Some(st as i64);
                info.response_status = Some(match st {
                    0 => ResponseStatus::Ok,
                    1 => ResponseStatus::ClientError,
                    _ => ResponseStatus::ServerError,
                });
                if st != 0 && body.len() > 1 {
                    info.response_exception =
                        Some(String::from_utf8_lossy(&body[1..]).into_owned());
                }
                MessageKind::Response
            };
            out.push(
                Message::new(
                    ctx.direction,
                    kind,
                    Correlation::ById(id),
                    ctx.pos(off),
                    ctx.pos(off + total),
                )
                .with_info(info),
            );
            off += total;
        }
        Ok(off)
    }
    fn on_gap(&mut self, _: Direction, _: u64) {}
}

/// 200 rounds of 10 pipelined requests and their 10 responses on one flow.
fn traffic() -> (Vec<StreamChunk>, u64) {
    let f = flow(40000, 7000);
    let methods = [
        "GetUser",
        "ListOrders",
        "DeleteUser",
        "UpdateInventoryLevels",
    ];
    let mut chunks = Vec::new();
    let mut bytes = 0;
    let mut id = 0u32;
    for round in 0..200u64 {
        let mut req = Vec::new();
        let mut resp = Vec::new();
        for k in 0..10 {
            id += 1;
            let m = methods[(id as usize) % methods.len()];
            req.extend(frpc_request(id, m));
            let st = (k % 3) as u8;
            resp.extend(frpc_response(
                id,
                st,
                if st == 0 { "" } else { "request failed" },
            ));
        }
        bytes += (req.len() + resp.len()) as u64;
        chunks.push(chunk(
            1,
            f,
            Direction::ClientToServer,
            1_000 * round + 1,
            0,
            &req,
        ));
        chunks.push(chunk(
            1,
            f,
            Direction::ServerToClient,
            1_000 * round + 2,
            0,
            &resp,
        ));
    }
    (chunks, bytes)
}

fn run(parser: &Arc<dyn L7Parser>, chunks: &[StreamChunk]) -> usize {
    let mut engine = Engine::new(Vec::new(), Limits::default());
    engine.register(parser.clone());
    let mut logs = Vec::with_capacity(2048);
    for c in chunks {
        engine.on_chunk(c, &mut logs);
    }
    engine.finish(&mut logs);
    logs.len()
}

fn frpc(c: &mut Criterion) {
    let (chunks, bytes) = traffic();
    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let mut parsers: Vec<(&str, Arc<dyn L7Parser>)> = vec![
        ("native_rust", Arc::new(NativeFrpc)),
        (
            "wasm_wat",
            host.load("frpc", common::frpc_ok().as_bytes()).unwrap(),
        ),
    ];
    if let Some(w) = common::build_rust_example("frpc-rust", "frpc_plugin") {
        parsers.push(("wasm_rust", host.load("frpc", &w).unwrap()));
    }
    if let Some(w) = common::build_c_frpc() {
        parsers.push(("wasm_c", host.load("frpc", &w).unwrap()));
    }
    for (_, p) in &parsers {
        assert_eq!(run(p, &chunks), 2000, "every exchange is logged");
    }
    let mut g = c.benchmark_group("frpc_engine");
    g.throughput(Throughput::Bytes(bytes));
    for (name, p) in &parsers {
        g.bench_function(*name, |b| b.iter(|| run(p, black_box(&chunks))));
    }
    g.finish();
}

/// A hook-only plugin whose hooks change nothing.
const NOOP_HOOK: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "fathom_abi_version") (result i32) (i32.const 2))
  (func (export "fathom_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "fathom_on_http_request") (param i32 i32) (result i32) (i32.const 0))
  (func (export "fathom_on_http_response") (param i32 i32) (result i32) (i32.const 0)))
"#;

fn hooks(c: &mut Criterion) {
    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let mut hooks: Vec<(&str, Arc<dyn MessageHook>)> =
        vec![("noop_wat", host.load("noop", NOOP_HOOK.as_bytes()).unwrap())];
    if let Some(w) = common::build_rust_example("http-hook-rust", "http_hook_plugin") {
        hooks.push(("http_hook_rust", host.load("http-hook", &w).unwrap()));
    }
    let f = flow(40000, 80);
    let bytes: &[u8] = b"GET /users/42?x=1 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n";
    let input = HookInput {
        protocol: &L7Protocol::Http1,
        direction: Direction::ClientToServer,
        kind: MessageKind::Request,
        flow: &f,
        flow_id: 1,
        time_us: 1,
        bytes,
        message_len: bytes.len() as u64,
    };
    let info = LogInfo {
        request_type: Some("GET".into()),
        request_resource: Some("/users/42?x=1".into()),
        request_domain: Some("api.example".into()),
        endpoint: Some("/users/{id}".into()),
        ..LogInfo::default()
    };
    let mut g = c.benchmark_group("http_hook_call");
    g.throughput(Throughput::Elements(1));
    for (name, h) in &hooks {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let mut i = info.clone();
                h.on_message(black_box(&input), &mut i);
                i
            })
        });
    }
    g.bench_function("clone_info_only", |b| b.iter(|| black_box(&info).clone()));
    g.finish();
    // The HTTP/1 engine with and without the no-op hook.
    let http: Vec<StreamChunk> = (0..100u64)
        .flat_map(|i| {
            let f = flow(41000 + i as u16, 80);
            common::http_conversation()
                .into_iter()
                .enumerate()
                .map(move |(j, (d, b))| chunk(i, f, d, 1_000 * i + j as u64, 0, &b))
        })
        .collect();
    let mut g = c.benchmark_group("http1_engine_100_exchanges");
    g.throughput(Throughput::Elements(100));
    let engine_run = |hook: Option<&Arc<dyn MessageHook>>| {
        let mut e = Engine::new(builtin_parsers(), Limits::default());
        if let Some(h) = hook {
            e.add_hook(h.clone());
        }
        let mut logs = Vec::new();
        for c in &http {
            e.on_chunk(c, &mut logs);
        }
        e.finish(&mut logs);
        logs.len()
    };
    g.bench_function("no_hook", |b| b.iter(|| engine_run(None)));
    for (name, h) in &hooks {
        g.bench_function(*name, |b| b.iter(|| engine_run(Some(h))));
    }
    g.finish();
}

/// The flow parsers alone (no engine) on one buffer of 1,000 pipelined requests: the per-call cost of the
/// sandbox against native code.
fn parser_only(c: &mut Criterion) {
    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let mut parsers: Vec<(&str, Arc<dyn L7Parser>)> = vec![
        ("native_rust", Arc::new(NativeFrpc)),
        (
            "wasm_wat",
            host.load("frpc", common::frpc_ok().as_bytes()).unwrap(),
        ),
    ];
    if let Some(w) = common::build_rust_example("frpc-rust", "frpc_plugin") {
        parsers.push(("wasm_rust", host.load("frpc", &w).unwrap()));
    }
    if let Some(w) = common::build_c_frpc() {
        parsers.push(("wasm_c", host.load("frpc", &w).unwrap()));
    }
    let buf: Vec<u8> = (0..1000u32)
        .flat_map(|i| {
            frpc_request(
                i,
                ["GetUser", "ListOrders", "UpdateInventoryLevels"][i as usize % 3],
            )
        })
        .collect();
    let f = flow(40000, 7000);
    let limits = Limits::default();
    let mut g = c.benchmark_group("frpc_parser_only_1000_requests");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    for (name, p) in &parsers {
        let mut flow_parser = p.new_flow(&f, &limits);
        let mut out = Vec::with_capacity(1000);
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                let ctx = ParseCtx {
                    direction: Direction::ClientToServer,
                    flow: &f,
                    stream_offset: 0,
                    time_us: 0,
                    limits: &limits,
                    datagram: false,
                };
                let n = flow_parser.parse(black_box(&buf), &ctx, &mut out).unwrap();
                assert_eq!(out.len(), 1000);
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parser_only, frpc, hooks);
criterion_main!(benches);
