//! Heap bytes per live series, measured with a counting global allocator.
//!
//! `cargo bench -p fathom-metrics --bench series_bytes`: creates N series whose latencies span a realistic
//! range, lets their 1 s windows roll into the 1 min windows (both sketches allocated), and prints the live
//! heap bytes per series (aggregator state only; the logs are built before counting).
#![allow(unsafe_code)] // the GlobalAlloc impl

use fathom_metrics::{Aggregator, Config};
use fathom_model::{L7Protocol, RequestLog};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const T0: u64 = 1_800_000_000_000_000;

fn measure(series: usize, per_series: usize, lo_us: u64, spread: u32) -> f64 {
    // Logs first (not counted).
    let mut logs = Vec::with_capacity(series * per_series);
    for k in 0..per_series {
        for s in 0..series {
            let mut l = RequestLog::new(L7Protocol::Http1);
            l.ip_dst = format!("10.{}.{}.{}", s >> 16, (s >> 8) & 255, s & 255);
            l.port_dst = 8080;
            l.endpoint = Some(format!("/api/v1/items/{}", s % 50));
            // Two seconds of traffic so the 1 s windows roll into the 1 min window.
            l.end_time_us = T0 + (k * 2_000_000 / per_series) as u64;
            // Latencies spread over `spread` octaves above `lo_us`.
            let oct = (k as u32 * 7 + s as u32) % spread.max(1);
            l.response_duration_us = Some((lo_us << oct) + (k as u64 * 37) % (lo_us << oct));
            logs.push(l);
        }
    }
    let before = LIVE.load(Ordering::Relaxed);
    let mut agg = Aggregator::new(Config {
        max_series: series,
        ..Config::default()
    });
    for l in &logs {
        agg.observe_log(l);
    }
    let rows = agg.advance(T0 + 2_500_000).rows; // closes the 1 s windows, keeps the minute open
    drop(rows);
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(agg.stats().series, series);
    let per = (after - before) as f64 / series as f64;
    drop(agg);
    per
}

fn main() {
    // Ignore criterion-style arguments (`--bench`, filters).
    for (series, per, lo, spread, what) in [
        (10_000, 20, 100, 3, "latencies 100 µs..800 µs (3 octaves)"),
        (10_000, 40, 100, 10, "latencies 100 µs..100 ms (10 octaves)"),
        (
            100_000,
            4,
            1000,
            1,
            "one latency band (1 octave), 100k series",
        ),
    ] {
        let b = measure(series, per, lo, spread);
        println!("series_bytes: {series} series, {per} logs each, {what}: {b:.0} heap bytes per live series");
    }
}
