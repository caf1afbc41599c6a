//! HTTP/1 parser benchmarks on the real bytes of `http1.pcap` (tests/fixtures/http1_segments.rs).
//!
//! - `heads/*`: head parsing alone (request and response heads from the capture, httparse + framing + trace
//!   header scan, no allocation).
//! - `flow/keepalive`: the full `FlowParser` (heads, log fields, body skipping, pairing queue) on the
//!   keep-alive connection's two byte streams, repeated, fed in 1460-byte segments.
//! - `engine/keepalive`: the same through `Engine` (chunks, buffering, pairing, RequestLog assembly).
//!
//! Times are CPU time of the benchmark thread (per-core figures), not wall time.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, StreamChunk};
use fathom_protocols::http1::{parse_request, parse_response, Http1Parser, Parsed};
use fathom_protocols::tracectx::TraceConfig;
use fathom_protocols::{Engine, L7Parser, Limits, ParseCtx};
use std::time::{Duration, Instant};

#[allow(dead_code)]
mod fixtures {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/http1_segments.rs"
    ));
}
use fixtures::HTTP1_PCAP;

const REPEAT: usize = 200;

/// CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`): the machine running the benchmarks is shared by
/// many jobs, so wall time would measure the scheduler, not the parser.
fn cpu_now() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Time `iters` runs of `f` in CPU time of this thread.
fn cpu_time<R>(iters: u64, mut f: impl FnMut() -> R) -> Duration {
    let (c0, w0) = (cpu_now(), Instant::now());
    for _ in 0..iters {
        black_box(f());
    }
    match (c0, cpu_now()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => w0.elapsed(),
    }
}
const MSS: usize = 1460;

fn key() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 59624,
        port_dst: 18080,
        l4_protocol: L4Protocol::Tcp,
    }
}

/// The keep-alive connection's request and response streams.
fn streams() -> (Vec<u8>, Vec<u8>) {
    let (mut c, mut s) = (Vec::new(), Vec::new());
    for seg in HTTP1_PCAP.iter().filter(|s| s.stream == 0) {
        if seg.to_server {
            c.extend_from_slice(seg.bytes);
        } else {
            s.extend_from_slice(seg.bytes);
        }
    }
    (c, s)
}

fn heads(c: &mut Criterion) {
    let limits = Limits::default();
    let cfg = TraceConfig::default();
    // All request heads and response heads of the capture (bodies cut off).
    let mut reqs: Vec<&[u8]> = Vec::new();
    let mut resps: Vec<&[u8]> = Vec::new();
    for seg in HTTP1_PCAP {
        let b = seg.bytes;
        let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = &b[..end + 4];
        if head.starts_with(b"HTTP/1.") {
            resps.push(head);
        } else {
            reqs.push(head);
        }
    }
    let req_bytes: usize = reqs.iter().map(|h| h.len()).sum();
    let resp_bytes: usize = resps.iter().map(|h| h.len()).sum();
    let mut g = c.benchmark_group("heads");
    g.throughput(Throughput::Bytes(req_bytes as u64));
    g.bench_function("request", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut n = 0;
                for h in &reqs {
                    if let Ok(Parsed::Complete(r)) = parse_request(black_box(h), &limits, &cfg) {
                        n += r.len;
                    }
                }
                n
            })
        })
    });
    g.throughput(Throughput::Bytes(resp_bytes as u64));
    g.bench_function("response", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut n = 0;
                for h in &resps {
                    if let Ok(Parsed::Complete(r)) = parse_response(black_box(h), &limits, &cfg) {
                        n += r.len;
                    }
                }
                n
            })
        })
    });
    g.finish();
}

fn flow(c: &mut Criterion) {
    let (cs, ss) = streams();
    let (cs, ss) = (cs.repeat(REPEAT), ss.repeat(REPEAT));
    let limits = Limits::default();
    let parser = Http1Parser::default();
    let k = key();
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Bytes((cs.len() + ss.len()) as u64));
    g.bench_function("keepalive", |b| {
        let mut out = Vec::with_capacity(64);
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut p = parser.new_flow(&k, &limits);
                let mut msgs = 0usize;
                // Requests and responses interleaved segment by segment, as a session would feed them; bytes
                // not consumed come back with the next segment (the streams are contiguous: no copy needed).
                let mut pos = [0usize; 2];
                let mut next = [0usize; 2];
                while next[0] < cs.len() || next[1] < ss.len() {
                    for (d, dir, src) in [
                        (0, Direction::ClientToServer, &cs),
                        (1, Direction::ServerToClient, &ss),
                    ] {
                        if next[d] >= src.len() {
                            continue;
                        }
                        next[d] = (next[d] + MSS).min(src.len());
                        let data = &src[pos[d]..next[d]];
                        let ctx = ParseCtx {
                            direction: dir,
                            flow: &k,
                            stream_offset: pos[d] as u64,
                            time_us: 0,
                            limits: &limits,
                            datagram: false,
                        };
                        pos[d] += p.parse(data, &ctx, &mut out).unwrap_or(data.len());
                        msgs += out.len();
                        out.clear();
                    }
                }
                msgs
            })
        })
    });
    g.finish();
}

fn engine(c: &mut Criterion) {
    let segs: Vec<_> = HTTP1_PCAP.iter().filter(|s| s.stream == 0).collect();
    let bytes: usize = segs.iter().map(|s| s.bytes.len()).sum::<usize>() * REPEAT;
    let k = key();
    let chunks: Vec<StreamChunk> = (0..REPEAT)
        .flat_map(|_| segs.iter())
        .map(|s| StreamChunk {
            flow_id: 1,
            flow: k,
            direction: if s.to_server {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            },
            time_us: s.time_us,
            seq: None,
            gap_before: 0,
            bytes: bytes::Bytes::from_static(s.bytes),
            origin: ChunkOrigin::Packet,
        })
        .collect();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("keepalive", |b| {
        let mut logs = Vec::with_capacity(4096);
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let mut e = Engine::new(fathom_protocols::builtin_parsers(), Limits::default());
                for ch in &chunks {
                    e.on_chunk(ch, &mut logs);
                }
                e.finish(&mut logs);
                let n = logs.len();
                logs.clear();
                n
            })
        })
    });
    g.finish();
}

#[allow(missing_docs)]
mod groups {
    use super::*;
    criterion_group!(benches, heads, flow, engine);
}
criterion_main!(groups::benches);
