//! A stress run of the aggregator's hot path: `cargo run --release -p fathom-metrics --example stress -- [SERIES] [LOGS]`.
//!
//! Builds logs over SERIES series (default 10 000), feeds LOGS of them (default 20 000 000) in a loop, advancing
//! the clock every 4096 logs, and prints logs per second of this thread's CPU time and of wall time.

use fathom_metrics::{Aggregator, Config};
use fathom_model::{L7Protocol, RequestLog};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let series: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let total: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000_000);
    let t0 = 1_800_000_000_000_000u64;
    // 4 logs per series, shuffled by a xorshift so lookups hit the table at random.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut logs: Vec<RequestLog> = (0..series * 4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (x % series as u64) as usize;
            let mut l = RequestLog::new(L7Protocol::Http1);
            l.ip_dst = format!("10.{}.{}.{}", s >> 16, (s >> 8) & 255, s & 255);
            l.port_dst = 8080;
            l.endpoint = Some(format!("/api/v1/items/{}", s % 20));
            l.response_duration_us = Some(100 + (x >> 40) % 20_000);
            l
        })
        .collect();
    let mut agg = Aggregator::new(Config {
        max_series: series,
        ..Config::default()
    });
    let cpu = cpu_time::ThreadTime::now();
    let wall = Instant::now();
    let mut rows = 0usize;
    let mut n = 0usize;
    let mut clock = t0;
    'outer: loop {
        for chunk in logs.chunks_mut(4096) {
            for l in chunk.iter_mut() {
                // Time moves 1 µs per log: windows roll as they would at 1M logs/s.
                l.end_time_us = clock;
                clock += 1;
                agg.observe_log(l);
            }
            rows += agg.advance(clock).rows.len();
            n += chunk.len();
            if n >= total {
                break 'outer;
            }
        }
    }
    rows += agg.flush().rows.len();
    let (cpu, wall) = (cpu.elapsed().as_secs_f64(), wall.elapsed().as_secs_f64());
    println!(
        "{n} logs, {series} series, {rows} rows: {:.2} M logs/s per core (thread CPU), {:.2} M logs/s wall",
        n as f64 / cpu / 1e6,
        n as f64 / wall / 1e6
    );
}
