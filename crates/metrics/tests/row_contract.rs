//! The JSON rows' field lists and types: `MetricRow` is design.md's "The metric row" contract, exactly;
//! `L4Row` is documented in docs/metrics.md.

use fathom_metrics::{Aggregator, Config, L4Row, MetricRow};
use fathom_model::{FlowKey, FlowRecord, L4Protocol, L7Protocol, RequestLog};
use serde_json::Value;

/// (field, JSON type: "s" string, "i" integer; a trailing "?" means nullable), in output order.
const METRIC_ROW: &[(&str, &str)] = &[
    ("window_start_us", "i"),
    ("window_s", "i"),
    ("l7_protocol", "s"),
    ("server", "s"),
    ("endpoint", "s?"),
    ("request", "i"),
    ("error_client", "i"),
    ("error_server", "i"),
    ("timeout", "i"),
    ("latency_p50_us", "i?"),
    ("latency_p90_us", "i?"),
    ("latency_p99_us", "i?"),
    ("latency_max_us", "i?"),
    ("byte_request", "i"),
    ("byte_response", "i"),
];

const L4_ROW: &[(&str, &str)] = &[
    ("window_start_us", "i"),
    ("window_s", "i"),
    ("l4_protocol", "s"),
    ("server", "s"),
    ("flow", "i"),
    ("new_connection", "i"),
    ("close_fin", "i"),
    ("close_rst", "i"),
    ("close_timeout", "i"),
    ("retrans_tx", "i"),
    ("retrans_rx", "i"),
    ("packet_tx", "i"),
    ("packet_rx", "i"),
    ("byte_tx", "i"),
    ("byte_rx", "i"),
    ("lost_byte_tx", "i"),
    ("lost_byte_rx", "i"),
    ("rtt_p50_us", "i?"),
    ("rtt_p90_us", "i?"),
    ("rtt_p99_us", "i?"),
    ("rtt_max_us", "i?"),
];

fn check(json: &str, contract: &[(&str, &str)]) {
    // Field order as printed.
    let v: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
    let keys: Vec<&str> = v.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = contract.iter().map(|(k, _)| *k).collect();
    let mut got = keys.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "{json}");
    for (name, ty) in contract {
        let f = &v[*name];
        let (base, nullable) = ty.strip_suffix('?').map_or((*ty, false), |b| (b, true));
        if f.is_null() {
            assert!(nullable, "{name} null in {json}");
            continue;
        }
        match base {
            "s" => assert!(f.is_string(), "{name}"),
            _ => assert!(f.is_u64(), "{name}"),
        }
    }
    let order: Vec<&str> = contract.iter().map(|(k, _)| *k).collect();
    let pos: Vec<usize> = order
        .iter()
        .map(|k| json.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "field order: {json}");
}

#[test]
fn rows_follow_their_contracts() {
    let mut agg = Aggregator::new(Config::default());
    let mut with_latency = RequestLog::new(L7Protocol::Http1);
    with_latency.ip_dst = "10.0.0.1".into();
    with_latency.end_time_us = 1_800_000_000_000_000;
    with_latency.response_duration_us = Some(5);
    with_latency.endpoint = Some("/x".into());
    let mut one_way = with_latency.clone();
    one_way.response_duration_us = None;
    one_way.endpoint = None;
    agg.observe_log(&with_latency);
    agg.observe_log(&one_way);
    let key = FlowKey {
        ip_src: "10.0.0.2".parse().unwrap(),
        ip_dst: "10.0.0.1".parse().unwrap(),
        port_src: 1,
        port_dst: 2,
        l4_protocol: L4Protocol::Udp,
    };
    agg.observe_flow(&FlowRecord::new(&key, 1_800_000_000_000_000));
    let closed = agg.flush();
    assert_eq!(closed.rows.len(), 4);
    for r in &closed.rows {
        check(&serde_json::to_string(r).unwrap(), METRIC_ROW);
        let back: MetricRow = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
        assert_eq!(&back, r);
    }
    assert!(closed.rows.iter().any(|r| r.latency_p50_us.is_none()));
    assert!(closed.rows.iter().any(|r| r.latency_p50_us == Some(5)));
    assert_eq!(closed.l4_rows.len(), 2);
    for r in &closed.l4_rows {
        check(&serde_json::to_string(r).unwrap(), L4_ROW);
        let back: L4Row = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
        assert_eq!(&back, r);
    }
}
