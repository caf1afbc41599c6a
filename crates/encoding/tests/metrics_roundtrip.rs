//! Metric batches: exact round trips of AutoMetrics rows and sketches (arbitrary and from the real aggregator),
//! shared dictionary sync with log batches, hostile input.
#![cfg(feature = "metrics")]

use fathom_encoding::{
    DecodeError, Encoder, GlobalDictionary, L4Record, MetricBatch, RedRecord, SyncMode, HEADER_LEN,
};
use fathom_metrics::{Aggregator, Config, L4Row, LatencySketch, MetricRow};
use fathom_model::{
    CloseType, FlowKey, FlowRecord, L4Protocol, L7Protocol, RequestLog, ResponseStatus,
};
use proptest::prelude::*;

fn arb_sketch() -> impl Strategy<Value = LatencySketch> {
    (
        0u8..=6,
        proptest::collection::vec(prop_oneof![Just(0u64), 1u64..100_000, any::<u64>()], 0..40),
    )
        .prop_map(|(scale, values)| {
            let mut s = LatencySketch::new(scale);
            for v in values {
                s.add(v);
            }
            s
        })
}

prop_compose! {
    fn arb_red()(
        win in (any::<u64>(), prop_oneof![Just(1u32), Just(60u32), any::<u32>()]),
        key in (prop_oneof![Just("http1".to_string()), "[a-z]{1,8}"], "[0-9.:]{1,21}", proptest::option::of("/[a-z/{}]{0,12}")),
        counts in proptest::array::uniform4(any::<u64>()),
        q in proptest::array::uniform4(proptest::option::of(any::<u64>())),
        bytes in (any::<u64>(), any::<u64>()),
        latency in proptest::option::of(arb_sketch()),
    ) -> RedRecord {
        RedRecord {
            row: MetricRow {
                window_start_us: win.0, window_s: win.1,
                l7_protocol: key.0, server: key.1, endpoint: key.2,
                request: counts[0], error_client: counts[1], error_server: counts[2], timeout: counts[3],
                latency_p50_us: q[0], latency_p90_us: q[1], latency_p99_us: q[2], latency_max_us: q[3],
                byte_request: bytes.0, byte_response: bytes.1,
            },
            latency,
        }
    }
}

prop_compose! {
    fn arb_l4()(
        win in (any::<u64>(), any::<u32>()),
        tcp: bool,
        server in "[0-9.:]{1,21}",
        c in proptest::collection::vec(any::<u64>(), 13),
        q in proptest::array::uniform4(proptest::option::of(any::<u64>())),
        rtt in proptest::option::of(arb_sketch()),
    ) -> L4Record {
        L4Record {
            row: L4Row {
                window_start_us: win.0, window_s: win.1,
                l4_protocol: if tcp { L4Protocol::Tcp } else { L4Protocol::Udp },
                server,
                flow: c[0], new_connection: c[1], close_fin: c[2], close_rst: c[3], close_timeout: c[4],
                retrans_tx: c[5], retrans_rx: c[6], packet_tx: c[7], packet_rx: c[8], byte_tx: c[9],
                byte_rx: c[10], lost_byte_tx: c[11], lost_byte_rx: c[12],
                rtt_p50_us: q[0], rtt_p90_us: q[1], rtt_p99_us: q[2], rtt_max_us: q[3],
            },
            rtt,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Metric batches interleaved with log batches on one encoder (one sequence, one dictionary), acknowledged
    /// or not, compressed or not: every row and sketch decodes exactly.
    #[test]
    fn metric_batches_round_trip(
        batches in proptest::collection::vec((
            proptest::collection::vec(arb_red(), 0..12),
            proptest::collection::vec(arb_l4(), 0..6),
            any::<bool>(),
            any::<bool>(),
        ), 1..6),
    ) {
        let mut enc = Encoder::new(5, SyncMode::Acknowledged);
        let mut server = GlobalDictionary::default();
        for (red, l4, ack, compress) in batches {
            enc.set_zstd(compress.then_some(3));
            let batch = MetricBatch { red, l4 };
            let (seq, bytes) = enc.encode_metrics(&batch).unwrap();
            let got = server.decode_metrics(&bytes).unwrap();
            prop_assert_eq!((got.agent_id, got.seq), (5, seq));
            prop_assert_eq!(&got.batch, &batch);
            // A log batch on the same encoder shares the dictionary (the endpoint key) and the sequence.
            let mut log = RequestLog::new(L7Protocol::Http1);
            log.endpoint = batch.red.first().and_then(|r| r.row.endpoint.clone());
            let (lseq, lbytes) = enc.encode(std::slice::from_ref(&log)).unwrap();
            prop_assert_eq!(lseq, seq + 1);
            prop_assert_eq!(server.decode(&lbytes).unwrap().logs, vec![log]);
            if ack {
                enc.ack(lseq);
            }
        }
    }

    /// Arbitrary bytes after a valid metric header never panic.
    #[test]
    fn hostile_metric_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        let (_, mut valid) = enc.encode_metrics(&MetricBatch::default()).unwrap();
        valid.truncate(HEADER_LEN);
        valid[24..28].copy_from_slice(&(body.len() as u32).to_le_bytes());
        valid[28..32].copy_from_slice(&(body.len() as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&valid[..32]);
        h.update(&body);
        valid[32..36].copy_from_slice(&h.finalize().to_le_bytes());
        valid.extend_from_slice(&body);
        let _ = GlobalDictionary::default().decode_metrics(&valid);
    }
}

/// Rows from the real aggregator over a minute of traffic, with its 1 s and 1 min windows, RED and L4.
fn aggregated() -> MetricBatch {
    let mut agg = Aggregator::new(Config {
        keep_sketches: true,
        ..Config::default()
    });
    let t0 = 1_700_000_040_000_000u64;
    for i in 0..3000u64 {
        let mut log = RequestLog::new(if i % 3 == 0 {
            L7Protocol::Redis
        } else {
            L7Protocol::Http1
        });
        log.ip_dst = format!("10.0.0.{}", i % 7);
        log.port_dst = if i % 3 == 0 { 6379 } else { 80 };
        log.endpoint = Some(format!("/api/{}", i % 5));
        log.response_status = if i % 11 == 0 {
            ResponseStatus::ServerError
        } else {
            ResponseStatus::Ok
        };
        log.start_time_us = t0 + i * 20_000;
        log.end_time_us = log.start_time_us + 100 + (i * 7919) % 20_000;
        log.response_duration_us = Some(log.end_time_us - log.start_time_us);
        log.captured_request_byte = 100 + i % 50;
        agg.observe_log(&log);
        if i % 10 == 0 {
            let key = FlowKey {
                ip_src: [10, 1, 0, 1].into(),
                ip_dst: [10, 0, 0, (i % 7) as u8].into(),
                port_src: 40_000 + (i % 1000) as u16,
                port_dst: log.port_dst,
                l4_protocol: L4Protocol::Tcp,
            };
            let mut f = FlowRecord::new(&key, log.start_time_us);
            f.end_time_us = log.end_time_us;
            f.packet_tx = 5 + i % 3;
            f.rtt_us = Some(40 + i % 200);
            f.close_type = CloseType::Fin;
            agg.observe_flow(&f);
        }
    }
    let batch = MetricBatch::from(agg.flush());
    // The sketches are the windows' own: their quantiles are the rows'.
    for r in &batch.red {
        let s = r.latency.as_ref().expect("kept sketch");
        assert_eq!(s.quantile_us(0.99), r.row.latency_p99_us);
        assert_eq!(s.max(), r.row.latency_max_us);
    }
    for r in &batch.l4 {
        assert_eq!(r.rtt.as_ref().expect("kept sketch").max(), r.row.rtt_max_us);
    }
    batch
}

#[test]
fn aggregator_rows_round_trip_and_beat_json() {
    let batch = aggregated();
    assert!(batch.red.len() > 100 && !batch.l4.is_empty());
    let mut enc = Encoder::new(9, SyncMode::Reliable);
    let (_, bytes) = enc.encode_metrics(&batch).unwrap();
    let got = GlobalDictionary::default().decode_metrics(&bytes).unwrap();
    assert_eq!(got.batch, batch);
    // Without sketches, far smaller than the JSON lines the agent prints.
    let rows_only = MetricBatch {
        red: batch
            .red
            .iter()
            .map(|r| RedRecord::from(r.row.clone()))
            .collect(),
        l4: batch
            .l4
            .iter()
            .map(|r| L4Record::from(r.row.clone()))
            .collect(),
    };
    let (_, bytes) = enc.encode_metrics(&rows_only).unwrap();
    let json: usize = batch
        .red
        .iter()
        .map(|r| serde_json::to_string(&r.row).unwrap().len() + 1)
        .sum();
    assert!(bytes.len() * 5 < json, "{} vs {json}", bytes.len());
}

#[test]
fn metric_and_log_batches_are_told_apart() {
    let mut enc = Encoder::new(1, SyncMode::Reliable);
    let (_, m) = enc.encode_metrics(&MetricBatch::default()).unwrap();
    let (_, l) = enc.encode(&[]).unwrap();
    let mut server = GlobalDictionary::default();
    assert!(matches!(
        server.decode(&m),
        Err(DecodeError::WrongKind {
            found: "metric",
            ..
        })
    ));
    let err = server.decode_metrics(&l).unwrap_err();
    assert_eq!(
        err.to_string(),
        "this is a request log batch, not a metric batch"
    );
}

/// Every truncation and every single-byte corruption of a real metric batch is an error, never a panic.
#[test]
fn metric_truncations_and_corruptions_are_errors() {
    let mut batch = aggregated();
    batch.red.truncate(40);
    let mut sketch = LatencySketch::default();
    for v in [1, 50, 900, 12_000] {
        sketch.add(v);
    }
    batch.red[0].latency = Some(sketch);
    for compress in [None, Some(3)] {
        let mut enc = Encoder::new(1, SyncMode::Reliable);
        enc.set_zstd(compress);
        let (_, b) = enc.encode_metrics(&batch).unwrap();
        for cut in 0..b.len() {
            assert!(GlobalDictionary::default()
                .decode_metrics(&b[..cut])
                .is_err());
        }
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x41;
            assert!(
                GlobalDictionary::default().decode_metrics(&bad).is_err(),
                "flip at {i} accepted"
            );
        }
    }
}
