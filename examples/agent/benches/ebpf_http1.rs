//! Criterion bench: the agent's parse stage and `--json logs` writer on eBPF-like HTTP/1 traffic (what
//! `fathom-agent --ebpf --json logs` does per request after the ring buffer: chunks with syscall origins →
//! engine → RequestLog → JSON line), in memory on one thread. 16 keep-alive connections of a server process,
//! each request (a wrk-style GET) and response (head + a 612-byte body, as nginx's default page) one chunk.
//!
//! `cargo bench -p fathom-agent --no-default-features --bench ebpf_http1 -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fathom_agent::{run_source, Output, RunOptions};
use fathom_capture::{CaptureError, Counters, EventSource};
use fathom_model::{
    ChunkOrigin, Direction, FlowKey, L4Protocol, ProcessName, StreamChunk, StreamEvent, TapSide,
};

const CONNECTIONS: u64 = 16;
const REQUESTS: u64 = 4096;

/// Replays prepared batches.
struct Replay {
    batches: std::vec::IntoIter<Vec<StreamEvent>>,
    counters: Counters,
}

impl EventSource for Replay {
    fn next_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<bool, CaptureError> {
        match self.batches.next() {
            Some(b) => {
                out.extend(b);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

fn traffic() -> Vec<Vec<StreamEvent>> {
    let request = Bytes::from_static(b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\r\n");
    let mut response =
        b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 27 Nov 2026 08:00:00 GMT\r\n\
Content-Type: text/html\r\nContent-Length: 612\r\nLast-Modified: Fri, 27 Nov 2026 07:00:00 GMT\r\n\
Connection: keep-alive\r\nETag: \"6927f5e0-264\"\r\nAccept-Ranges: bytes\r\n\r\n"
            .to_vec();
    response.extend_from_slice(&[b'x'; 612]);
    let response = Bytes::from(response);
    let comm = ProcessName::new("nginx");
    let mut seq = [[1000u32; 2]; CONNECTIONS as usize];
    let mut events = Vec::new();
    let t0 = 1_795_000_000_000_000u64;
    for i in 0..REQUESTS {
        let c = i % CONNECTIONS;
        let flow = FlowKey {
            ip_src: [127, 0, 0, 1].into(),
            ip_dst: [127, 0, 0, 1].into(),
            port_src: 40000 + c as u16,
            port_dst: 18080,
            l4_protocol: L4Protocol::Tcp,
        };
        for (d, bytes, dt) in [
            (Direction::ClientToServer, &request, 0),
            (Direction::ServerToClient, &response, 40),
        ] {
            let s = &mut seq[c as usize][d.index()];
            events.push(StreamEvent::Chunk(StreamChunk {
                flow_id: c + 1,
                flow,
                direction: d,
                time_us: t0 + i * 15 + dt,
                seq: Some(*s),
                gap_before: 0,
                bytes: bytes.clone(),
                origin: ChunkOrigin::Syscall {
                    pid: 4242,
                    tid: 4242,
                    fd: 10 + c as u32,
                    comm,
                    syscall_trace_id: i * 2 + d.index() as u64 + 1,
                    tls_plaintext: false,
                    side: TapSide::ServerProcess,
                },
            }));
            *s = s.wrapping_add(bytes.len() as u32);
        }
    }
    events.chunks(1024).map(<[StreamEvent]>::to_vec).collect()
}

fn bench(c: &mut Criterion) {
    let batches = traffic();
    let options = RunOptions {
        single_thread: true,
        ..RunOptions::default()
    };
    let mut g = c.benchmark_group("ebpf_http1");
    g.throughput(Throughput::Elements(REQUESTS));
    g.bench_function("parse_and_json_logs", |b| {
        let mut out = Vec::with_capacity(4 << 20);
        b.iter(|| {
            out.clear();
            let source = Replay {
                batches: batches.clone().into_iter(),
                counters: Counters::default(),
            };
            let stats = run_source(source, &options, |o| {
                if let Output::Log(l) = o {
                    fathom_agent::json::write_log(l, &mut out);
                    out.push(b'\n');
                }
            })
            .expect("replays");
            assert_eq!(stats.logs, REQUESTS);
            out.len()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
