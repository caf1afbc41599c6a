//! A stress run of the aggregator's hot path: `cargo run --release -p fathom-metrics --example stress -- [SERIES] [LOGS]`.
//!
//! Feeds LOGS logs (default 20 000 000) over about SERIES series (default 10 000; 256 server/endpoint pairs times
//! SERIES/256 server ports), with time moving 1 µs per log and `advance` every 4096 logs, so windows roll and
//! rows are built as in a 1 M logs/s stream. Logs are reused from a small batch (hot in cache, as when the agent
//! hands them over as parsed). Prints logs per second of this thread's CPU time and of wall time.

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
    let ports = u32::try_from(series.div_ceil(256))
        .unwrap_or(1)
        .clamp(1, 60_000);
    let t0 = 1_800_000_000_000_000u64;
    let mut x = 0x9E37_79B9u32;
    let mut batch: Vec<RequestLog> = (0..256)
        .map(|i| {
            let mut l = RequestLog::new(L7Protocol::Http1);
            l.ip_dst = format!("10.1.0.{}", i % 16);
            l.endpoint = Some(format!("/api/v1/items/{}", i / 16));
            l
        })
        .collect();
    let mut agg = Aggregator::new(Config {
        max_series: 256 * ports as usize,
        ..Config::default()
    });
    let cpu = cpu_time::ThreadTime::now();
    let wall = Instant::now();
    let (mut rows, mut n, mut clock) = (0usize, 0usize, t0);
    while n < total {
        for _ in 0..16 {
            for l in batch.iter_mut() {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                l.port_dst = 8000 + ((x >> 8) % ports) as u16;
                l.end_time_us = clock;
                l.response_duration_us = Some(100 + u64::from(x >> 20));
                clock += 1;
                agg.observe_log(l);
            }
        }
        n += 16 * batch.len();
        rows += agg.advance(clock).rows.len();
    }
    rows += agg.flush().rows.len();
    let (cpu, wall) = (cpu.elapsed().as_secs_f64(), wall.elapsed().as_secs_f64());
    println!(
        "{n} logs, {} series, {rows} rows: {:.2} M logs/s per core (thread CPU), {:.2} M logs/s wall",
        agg.stats().series,
        n as f64 / cpu / 1e6,
        n as f64 / wall / 1e6
    );
}
