//! Logs per second per core into the aggregator's hot path (`observe_log`), and the cost of closing windows.
//!
//! `cargo bench -p fathom-metrics --bench aggregate -- --warm-up-time 1 --measurement-time 3`
//!
//! Two measurements: `aggregate_cpu/*` counts the bench thread's CPU time (per-core throughput, meaningful on a
//! shared, loaded machine), `aggregate_wall/*` counts wall-clock time.

#![allow(missing_docs)] // criterion_group! generates undocumented functions

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fathom_metrics::{Aggregator, Config};
use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
use std::hint::black_box;
use std::time::Duration;

const T0: u64 = 1_800_000_000_000_000;
/// Logs per batch: small enough to stay in cache, as logs do when the agent hands them over as parsed.
const BATCH: usize = 256;

/// `n` logs over `servers × endpoints` series and 4 protocols, 15 µs apart, with latencies spread over
/// 50 µs..~50 ms and a few errors, as a parser would produce them.
fn logs(n: usize, servers: usize, endpoints: usize) -> Vec<RequestLog> {
    let protos = [
        L7Protocol::Http1,
        L7Protocol::Redis,
        L7Protocol::Mysql,
        L7Protocol::Grpc,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (x % servers as u64) as usize;
            let e = ((x >> 20) % endpoints as u64) as usize;
            let mut l = RequestLog::new(protos[s % protos.len()].clone());
            l.ip_src = "10.0.0.1".into();
            l.ip_dst = format!("10.1.{}.{}", s / 250, s % 250);
            l.port_dst = 8000 + (s % 7) as u16;
            l.endpoint = Some(format!("/api/v1/resource{e}"));
            l.end_time_us = T0 + i as u64 * 15;
            let d = 50 << ((x >> 40) % 10);
            l.response_duration_us = Some(d + (x >> 50) % d);
            l.start_time_us = l.end_time_us - d;
            l.response_status = match (x >> 33) % 50 {
                0 => ResponseStatus::ClientError,
                1 => ResponseStatus::ServerError,
                2 => ResponseStatus::Timeout,
                _ => ResponseStatus::Ok,
            };
            l.captured_request_byte = 200;
            l.captured_response_byte = 1500;
            l
        })
        .collect()
}

/// The bench thread's CPU time.
struct ThreadCpu;

struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        "ns"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/s (thread CPU)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = Duration;
    fn start(&self) -> cpu_time::ThreadTime {
        cpu_time::ThreadTime::now()
    }
    fn end(&self, i: cpu_time::ThreadTime) -> Duration {
        i.elapsed()
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

const SHAPES: [(&str, usize, usize); 3] = [
    ("200_series", 20, 10),
    ("10k_series", 500, 20),
    ("100k_series", 5000, 20),
];

fn hot_path<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut g = c.benchmark_group(group);
    for (name, servers, endpoints) in SHAPES {
        // Steady state: every series exists, the same 1 s windows are being filled. The batch rotates through
        // a larger set of logs so every series is hit.
        let all = logs(servers * endpoints * 4, servers, endpoints);
        let mut agg = Aggregator::new(Config {
            max_series: servers * endpoints,
            ..Config::default()
        });
        all.iter().for_each(|l| agg.observe_log(l));
        let mut at = 0;
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(format!("observe_log/{name}"), |b| {
            b.iter(|| {
                let start = at;
                at = (at + BATCH) % (all.len() - BATCH);
                for l in &all[start..start + BATCH] {
                    agg.observe_log(black_box(l));
                }
            })
        });
    }
    g.finish();
}

fn bench_cpu(c: &mut Criterion<ThreadCpu>) {
    hot_path(c, "aggregate_cpu");
}

fn bench_wall(c: &mut Criterion) {
    hot_path(c, "aggregate_wall");
    let mut g = c.benchmark_group("aggregate_wall");
    // Cold: a fresh aggregator per batch (series creation, every 1 s window rolled once), then advance and
    // flush (row building, sorting).
    let batch = logs(65_536, 20, 10);
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("fresh_observe_advance_flush/200_series", |b| {
        b.iter_batched(
            || Aggregator::new(Config::default()),
            |mut agg| {
                let mut rows = 0;
                for (i, l) in batch.iter().enumerate() {
                    agg.observe_log(l);
                    if i % 4096 == 0 {
                        rows += agg.advance(l.end_time_us).rows.len();
                    }
                }
                rows + agg.flush().rows.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = bench_cpu
}
criterion_group!(wall, bench_wall);
criterion_main!(cpu, wall);
