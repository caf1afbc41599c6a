//! The series cap: a flood of distinct endpoints stays within it, and the overflow is counted.

use fathom_metrics::{Aggregator, Config, OVERFLOW};
use fathom_model::{FlowRecord, L4Protocol, L7Protocol, RequestLog};

fn log(protocol: L7Protocol, endpoint: String, t: u64) -> RequestLog {
    let mut l = RequestLog::new(protocol);
    l.ip_dst = "10.1.2.3".into();
    l.port_dst = 8080;
    l.endpoint = Some(endpoint);
    l.start_time_us = t;
    l.end_time_us = t + 100;
    l.response_duration_us = Some(100);
    l
}

#[test]
fn flood_of_endpoints_stays_within_the_cap() {
    const CAP: usize = 1000;
    const FLOOD: u64 = 50_000;
    let mut agg = Aggregator::new(Config {
        max_series: CAP,
        ..Config::default()
    });
    let t0 = 1_800_000_000_000_000;
    for i in 0..FLOOD {
        agg.observe_log(&log(L7Protocol::Http1, format!("/item/{i}"), t0 + i));
        // A second protocol overflows into its own series.
        agg.observe_log(&log(L7Protocol::Redis, format!("GET k{i}"), t0 + i));
    }
    let stats = agg.stats();
    assert_eq!(stats.series, CAP);
    assert_eq!(stats.overflow_logs, 2 * FLOOD - CAP as u64);
    let rows = agg.flush().rows;
    let minute: Vec<_> = rows.iter().filter(|r| r.window_s == 60).collect();
    // CAP regular series plus one overflow series per protocol.
    assert_eq!(minute.len(), CAP + 2);
    let overflow: Vec<_> = minute.iter().filter(|r| r.server == OVERFLOW).collect();
    assert_eq!(overflow.len(), 2);
    for r in &overflow {
        assert_eq!(r.endpoint.as_deref(), Some(OVERFLOW));
    }
    let total: u64 = minute.iter().map(|r| r.request).sum();
    assert_eq!(total, 2 * FLOOD, "no log is lost");
    let over_total: u64 = overflow.iter().map(|r| r.request).sum();
    assert_eq!(over_total, stats.overflow_logs);
    // The exposition carries the counter.
    let text = fathom_metrics::prometheus::render(&agg.snapshot());
    assert!(text.contains(&format!(
        "fathom_metrics_overflow_records_total{{kind=\"red\"}} {}",
        stats.overflow_logs
    )));
}

#[test]
fn idle_series_are_evicted_and_free_the_cap() {
    let mut agg = Aggregator::new(Config {
        max_series: 10,
        idle_evict_us: 120_000_000,
        grace_us: 0,
        ..Config::default()
    });
    let t0 = 1_800_000_000_000_000;
    for i in 0..10 {
        agg.observe_log(&log(L7Protocol::Http1, format!("/a/{i}"), t0));
    }
    assert_eq!(agg.stats().series, 10);
    agg.advance(t0 + 200_000_000);
    assert_eq!(agg.stats().series, 0);
    assert_eq!(agg.stats().series_evicted, 10);
    for i in 0..10 {
        agg.observe_log(&log(L7Protocol::Http1, format!("/b/{i}"), t0 + 201_000_000));
    }
    assert_eq!(agg.stats().series, 10);
    assert_eq!(agg.stats().overflow_logs, 0);
}

fn flow(server: u16, t: u64) -> FlowRecord {
    let mut f = FlowRecord::new(
        &fathom_model::FlowKey {
            ip_src: "10.0.0.1".parse().unwrap(),
            ip_dst: "10.0.0.2".parse().unwrap(),
            port_src: 40000,
            port_dst: server,
            l4_protocol: L4Protocol::Tcp,
        },
        t,
    );
    f.end_time_us = t + 5_000;
    f.packet_tx = 5;
    f.packet_rx = 4;
    f.byte_tx = 500;
    f.byte_rx = 4000;
    f.retrans_tx = 1;
    f.rtt_us = Some(80);
    f.close_type = fathom_model::CloseType::Fin;
    f
}

#[test]
fn l4_rows_and_cap() {
    let mut agg = Aggregator::new(Config {
        max_l4_series: 3,
        ..Config::default()
    });
    let t0 = 1_800_000_000_000_000;
    for port in 1..=5u16 {
        agg.observe_flow(&flow(port, t0));
        agg.observe_flow(&flow(port, t0 + 10));
    }
    assert_eq!(agg.stats().l4_series, 3);
    assert_eq!(agg.stats().overflow_flows, 4);
    let rows = agg.flush().l4_rows;
    let minute: Vec<_> = rows.iter().filter(|r| r.window_s == 60).collect();
    assert_eq!(minute.len(), 4);
    let first = minute.iter().find(|r| r.server == "10.0.0.2:1").unwrap();
    assert_eq!(
        (first.flow, first.new_connection, first.close_fin),
        (2, 2, 2)
    );
    assert_eq!(
        (first.packet_tx, first.byte_rx, first.retrans_tx),
        (10, 8000, 2)
    );
    assert_eq!((first.rtt_p50_us, first.rtt_max_us), (Some(80), Some(80)));
    let over = minute.iter().find(|r| r.server == OVERFLOW).unwrap();
    assert_eq!(over.flow, 4);
}
