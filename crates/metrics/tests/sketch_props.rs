//! The sketch's accuracy and merge guarantees, and the 1 s → 1 min merge in the aggregator.

use fathom_metrics::sketch::{LatencySketch, MAX_SCALE};
use fathom_metrics::{Aggregator, Config};
use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
use proptest::prelude::*;

/// Latencies spread over many magnitudes (0 µs .. ~1.8 h), with duplicates.
fn latencies() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            1 => Just(0u64),
            8 => (0u32..33, any::<u64>()).prop_map(|(bits, r)| r >> (64 - bits.max(1))),
            2 => 1u64..5,
        ],
        1..400,
    )
}

/// The exact value the sketch's quantile estimates: rank ⌊q (n-1)⌋ of the sorted values.
fn exact(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
    sorted[rank]
}

fn sketch_of(values: &[u64], scale: u8) -> LatencySketch {
    let mut s = LatencySketch::new(scale);
    values.iter().for_each(|v| s.add(*v));
    s
}

proptest! {
    #[test]
    fn quantiles_within_relative_accuracy(
        values in latencies(),
        scale in 0u8..=MAX_SCALE,
        extra_q in 0.0f64..1.0,
    ) {
        let s = sketch_of(&values, scale);
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let alpha = s.relative_accuracy();
        for q in [0.0, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0, extra_q] {
            let x = exact(&sorted, q) as f64;
            let e = s.quantile(q).unwrap();
            prop_assert!((e - x).abs() <= alpha * x * (1.0 + 1e-9) + 1e-9,
                "q={q} exact={x} estimate={e} alpha={alpha}");
            // The integer form adds at most half a microsecond.
            let ei = s.quantile_us(q).unwrap() as f64;
            prop_assert!((ei - x).abs() <= alpha * x * (1.0 + 1e-9) + 0.5 + 1e-9);
        }
        prop_assert_eq!(s.max(), sorted.last().copied());
        prop_assert_eq!(s.min(), sorted.first().copied());
        prop_assert_eq!(s.count(), values.len() as u64);
    }

    #[test]
    fn merge_equals_sketch_of_union(values in latencies(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(values.len() + 1)).collect();
        cuts.push(0);
        cuts.push(values.len());
        cuts.sort_unstable();
        let mut merged = LatencySketch::default();
        for w in cuts.windows(2) {
            merged.merge(&sketch_of(&values[w[0]..w[1]], merged.scale())).unwrap();
        }
        let whole = sketch_of(&values, merged.scale());
        prop_assert_eq!(&merged, &whole);
        for q in [0.5, 0.9, 0.99] {
            prop_assert_eq!(merged.quantile(q), whole.quantile(q));
        }
    }

    /// Logs spread over the seconds of one minute: the 1 min row is the sketch of all of them, and its counts
    /// are the sums of the 1 s rows.
    #[test]
    fn minute_row_is_the_union_of_its_seconds(
        logs in prop::collection::vec((0u64..60_000_000, 1u64..10_000_000, 0u8..4), 1..300)
    ) {
        let base = 1_800_000_000_000_000u64; // a minute boundary
        let mut agg = Aggregator::new(Config::default());
        let mut sorted_logs = logs.clone();
        sorted_logs.sort_unstable();
        let mut all = LatencySketch::default();
        for (offset, duration, st) in &sorted_logs {
            let mut log = RequestLog::new(L7Protocol::Grpc);
            log.ip_dst = "::1".into();
            log.port_dst = 50051;
            log.endpoint = Some("/pkg.Svc/Get".into());
            log.end_time_us = base + offset;
            log.start_time_us = log.end_time_us.saturating_sub(*duration);
            log.response_duration_us = Some(*duration);
            log.response_status = [ResponseStatus::Ok, ResponseStatus::ClientError,
                ResponseStatus::ServerError, ResponseStatus::Timeout][*st as usize];
            log.captured_request_byte = 10;
            log.captured_response_byte = 1 + duration % 7;
            all.add(*duration);
            agg.observe_log(&log);
        }
        let rows = agg.flush().rows;
        let minute: Vec<_> = rows.iter().filter(|r| r.window_s == 60).collect();
        prop_assert_eq!(minute.len(), 1);
        let m = minute[0];
        prop_assert_eq!(m.server.as_str(), "[::1]:50051");
        prop_assert_eq!(m.window_start_us, base);
        let secs: Vec<_> = rows.iter().filter(|r| r.window_s == 1).collect();
        prop_assert_eq!(m.request, secs.iter().map(|r| r.request).sum::<u64>());
        prop_assert_eq!(m.request, logs.len() as u64);
        prop_assert_eq!(m.error_client, secs.iter().map(|r| r.error_client).sum::<u64>());
        prop_assert_eq!(m.error_server, secs.iter().map(|r| r.error_server).sum::<u64>());
        prop_assert_eq!(m.timeout, secs.iter().map(|r| r.timeout).sum::<u64>());
        prop_assert_eq!(m.byte_response, secs.iter().map(|r| r.byte_response).sum::<u64>());
        prop_assert_eq!(m.latency_p50_us, all.quantile_us(0.5));
        prop_assert_eq!(m.latency_p90_us, all.quantile_us(0.9));
        prop_assert_eq!(m.latency_p99_us, all.quantile_us(0.99));
        prop_assert_eq!(m.latency_max_us, all.max());
        prop_assert_eq!(m.latency_max_us, secs.iter().filter_map(|r| r.latency_max_us).max());
    }
}

proptest! {
    /// Whatever the order of records, the clock moves and the cap: every log is in exactly one 1 s row and
    /// one 1 min row, and the error counts add up.
    #[test]
    fn no_log_is_lost_or_double_counted(
        events in prop::collection::vec(
            (0u64..180_000_000, 0u8..6, 0u8..4, prop::option::of(0u64..2_000_000), any::<bool>()),
            1..400,
        ),
        cap in 1usize..6,
        grace in prop_oneof![Just(0u64), Just(1_000_000u64), Just(5_000_000u64)],
    ) {
        let base = 1_800_000_000_000_000u64;
        let mut agg = Aggregator::new(Config { max_series: cap, grace_us: grace, idle_evict_us: 30_000_000, ..Config::default() });
        let mut rows = Vec::new();
        let mut clock = 0;
        let (mut n, mut errors) = (0u64, 0u64);
        for (t, ep, st, d, tick) in &events {
            let mut log = RequestLog::new(L7Protocol::Redis);
            log.ip_dst = "10.0.0.9".into();
            log.port_dst = 6379;
            log.endpoint = Some(format!("CMD{ep}"));
            log.end_time_us = base + t;
            log.response_duration_us = *d;
            log.response_status = [ResponseStatus::Ok, ResponseStatus::ClientError,
                ResponseStatus::ServerError, ResponseStatus::Timeout][*st as usize];
            errors += u64::from(*st > 0);
            agg.observe_log(&log);
            n += 1;
            if *tick {
                clock = clock.max(base + t);
                rows.extend(agg.advance(clock).rows);
            }
        }
        rows.extend(agg.flush().rows);
        for w in [1, 60] {
            let ws: Vec<_> = rows.iter().filter(|r| r.window_s == w).collect();
            prop_assert_eq!(ws.iter().map(|r| r.request).sum::<u64>(), n);
            prop_assert_eq!(ws.iter().map(|r| r.error_client + r.error_server + r.timeout).sum::<u64>(), errors);
            // One row per series per window.
            let mut keys: Vec<_> = ws.iter().map(|r| (r.window_start_us, &r.server, &r.endpoint)).collect();
            let len = keys.len();
            keys.sort();
            keys.dedup();
            prop_assert_eq!(keys.len(), len);
        }
        prop_assert!(agg.stats().series <= cap);
    }
}

/// `Config::keep_sketches`: each closed row comes with its window's sketch, holding exactly the durations fed
/// in that window (count, min, max, sum known from the input), and the 1 min sketch is the merge of its seconds.
#[test]
fn kept_sketches_are_the_windows_own() {
    let t0 = 1_700_000_040_000_000u64; // a minute boundary
    let durations: [&[u64]; 2] = [&[100, 250, 4000], &[7, 90_000]];
    for keep in [false, true] {
        let mut agg = Aggregator::new(Config {
            keep_sketches: keep,
            ..Config::default()
        });
        for (sec, ds) in durations.iter().enumerate() {
            for (i, d) in ds.iter().enumerate() {
                let mut log = RequestLog::new(L7Protocol::Http1);
                log.ip_dst = "10.0.0.2".into();
                log.port_dst = 80;
                log.end_time_us = t0 + sec as u64 * 1_000_000 + i as u64 * 1000 + 500_000;
                log.start_time_us = log.end_time_us - d;
                log.response_duration_us = Some(*d);
                agg.observe_log(&log);
            }
        }
        let closed = agg.flush();
        assert_eq!(closed.rows.len(), 3); // two 1 s windows, one 1 min window
        if !keep {
            assert!(closed.latency.is_empty() && closed.rtt.is_empty());
            continue;
        }
        assert_eq!(closed.latency.len(), closed.rows.len());
        for (row, s) in closed.rows.iter().zip(&closed.latency) {
            let fed: Vec<u64> = match (row.window_s, row.window_start_us) {
                (60, _) => durations.concat(),
                (1, w) => durations[((w - t0) / 1_000_000) as usize].to_vec(),
                _ => unreachable!(),
            };
            assert_eq!(s.count(), fed.len() as u64);
            assert_eq!(s.sum(), fed.iter().sum::<u64>());
            assert_eq!(
                (s.min(), s.max()),
                (fed.iter().min().copied(), fed.iter().max().copied())
            );
            assert_eq!(s.max(), row.latency_max_us);
            assert_eq!(s.quantile_us(0.5), row.latency_p50_us);
        }
    }
}
