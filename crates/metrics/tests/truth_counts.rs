//! Request and error counts in the metric rows equal the logs they come from.
//!
//! The logs are built from the shared captures' ground truth (`truth/*.jsonl`: each record's `proto`, `type`,
//! `status` and `t`, the client's own accounting), and the expected counts come from `manifest.json`
//! (`expected_request_logs`, `by_status`, `by_request_type` per server), not from our output.

use fathom_metrics::{Aggregator, Config, MetricRow};
use fathom_model::{L7Protocol, RequestLog, ResponseStatus};
use serde_json::Value;
use std::collections::BTreeMap;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn status(s: &str) -> ResponseStatus {
    match s {
        "ok" => ResponseStatus::Ok,
        "client_error" => ResponseStatus::ClientError,
        "server_error" => ResponseStatus::ServerError,
        "timeout" => ResponseStatus::Timeout,
        other => panic!("unknown status {other}"),
    }
}

/// Expected per `(protocol, port)`: requests, by status, by request type.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    requests: u64,
    by_status: BTreeMap<String, u64>,
    by_type: BTreeMap<String, u64>,
}

/// Every truth record as a RequestLog (server 127.0.0.1:port from the manifest, endpoint = request type),
/// sorted by time, and the manifest's expectations.
fn truth_logs() -> (Vec<RequestLog>, BTreeMap<(String, u16), Expected>) {
    let manifest = read_json(&format!("{DATA}/manifest.json"));
    let mut logs = Vec::new();
    let mut expected: BTreeMap<(String, u16), Expected> = BTreeMap::new();
    for sc in manifest["scenarios"].as_array().unwrap() {
        let servers = sc["servers"].as_array().unwrap();
        let port_of = |key: &str| -> u16 {
            let s = servers
                .iter()
                .find(|s| s["port_key"] == key || s["protocol"] == key)
                .unwrap_or_else(|| panic!("no server {key}"));
            s["port"].as_u64().unwrap() as u16
        };
        for (gkey, g) in sc["ground_truth"].as_object().unwrap() {
            let (proto, port_key) = gkey.split_once('@').unwrap_or((gkey, gkey));
            let e = expected
                .entry((proto.to_string(), port_of(port_key)))
                .or_default();
            e.requests += g["expected_request_logs"].as_u64().unwrap();
            for (k, n) in g["by_status"].as_object().unwrap() {
                *e.by_status.entry(k.clone()).or_default() += n.as_u64().unwrap();
            }
            for (k, n) in g["by_request_type"].as_object().unwrap() {
                *e.by_type.entry(k.clone()).or_default() += n.as_u64().unwrap();
            }
        }
        let truth =
            std::fs::read_to_string(format!("{DATA}/{}", sc["truth_file"].as_str().unwrap()))
                .unwrap();
        for line in truth.lines().filter(|l| !l.trim().is_empty()) {
            let r: Value = serde_json::from_str(line).unwrap();
            if r["kind"] == "event" {
                continue; // not a request log (the Dubbo heartbeat)
            }
            let proto = r["proto"].as_str().unwrap();
            let port = match r["server"].as_str() {
                Some(key) => port_of(key),
                None => port_of(proto),
            };
            let mut log = RequestLog::new(L7Protocol::from_name(proto));
            log.ip_src = "127.0.0.1".into();
            log.ip_dst = "127.0.0.1".into();
            log.port_dst = port;
            log.request_type = r["type"].as_str().map(str::to_string);
            log.endpoint = log.request_type.clone();
            log.response_code = r["code"].as_i64();
            log.response_status = status(r["status"].as_str().unwrap());
            let t = (r["t"].as_f64().unwrap() * 1e6) as u64;
            log.start_time_us = t;
            log.end_time_us = t;
            logs.push(log);
        }
    }
    logs.sort_by_key(|l| l.end_time_us);
    (logs, expected)
}

fn actual(rows: &[MetricRow], window_s: u32) -> BTreeMap<(String, u16), Expected> {
    let mut out: BTreeMap<(String, u16), Expected> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.window_s == window_s) {
        let port: u16 = r.server.rsplit_once(':').unwrap().1.parse().unwrap();
        let e = out.entry((r.l7_protocol.clone(), port)).or_default();
        e.requests += r.request;
        let ok = r.request - r.error_client - r.error_server - r.timeout;
        for (k, n) in [
            ("ok", ok),
            ("client_error", r.error_client),
            ("server_error", r.error_server),
            ("timeout", r.timeout),
        ] {
            if n > 0 {
                *e.by_status.entry(k.to_string()).or_default() += n;
            }
        }
        *e.by_type
            .entry(r.endpoint.clone().unwrap_or_default())
            .or_default() += r.request;
    }
    out
}

#[test]
fn counts_equal_ground_truth_in_both_window_lengths() {
    let (logs, expected) = truth_logs();
    assert!(logs.len() > 250, "too few truth records: {}", logs.len());
    let mut agg = Aggregator::new(Config {
        grace_us: 0,
        ..Config::default()
    });
    let mut rows = Vec::new();
    for log in &logs {
        rows.extend(agg.advance(log.end_time_us).rows);
        agg.observe_log(log);
    }
    rows.extend(agg.flush().rows);
    assert_eq!(agg.stats().late_logs, 0);
    assert_eq!(agg.stats().logs, logs.len() as u64);
    assert_eq!(actual(&rows, 1), expected, "1 s windows");
    assert_eq!(actual(&rows, 60), expected, "1 min windows");
    // Windows are aligned and of the stated length.
    for r in &rows {
        assert_eq!(r.window_start_us % (u64::from(r.window_s) * 1_000_000), 0);
    }
}

#[test]
fn counts_survive_out_of_order_and_late_logs() {
    let (mut logs, expected) = truth_logs();
    // Reverse every block of 7 logs: out of order within a few seconds.
    for chunk in logs.chunks_mut(7) {
        chunk.reverse();
    }
    let mut agg = Aggregator::new(Config {
        grace_us: 0,
        ..Config::default()
    });
    let mut rows = Vec::new();
    let mut clock = 0;
    for log in &logs {
        clock = clock.max(log.end_time_us);
        rows.extend(agg.advance(clock).rows);
        agg.observe_log(log);
    }
    rows.extend(agg.flush().rows);
    assert!(
        agg.stats().late_logs > 0,
        "the test should produce late logs"
    );
    assert_eq!(actual(&rows, 1), expected);
    assert_eq!(actual(&rows, 60), expected);
}

#[test]
fn service_tag_names_the_server() {
    let (mut logs, _) = truth_logs();
    for log in logs
        .iter_mut()
        .filter(|l| l.l7_protocol == L7Protocol::Redis)
    {
        log.tags.insert("k8s.service".into(), "cache".into());
    }
    let mut agg = Aggregator::new(Config {
        service_tag: Some("k8s.service".into()),
        ..Config::default()
    });
    logs.iter().for_each(|l| agg.observe_log(l));
    let rows = agg.flush().rows;
    let redis: Vec<&MetricRow> = rows.iter().filter(|r| r.l7_protocol == "redis").collect();
    assert!(!redis.is_empty());
    assert!(redis.iter().all(|r| r.server == "cache"));
    let n: u64 = redis
        .iter()
        .filter(|r| r.window_s == 60)
        .map(|r| r.request)
        .sum();
    assert_eq!(n, 36 + 9); // redis.pcap + microservices.pcap
}
