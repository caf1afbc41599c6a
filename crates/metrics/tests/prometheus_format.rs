//! The Prometheus exposition, read back by real parsers: the `prometheus-parse` crate always, and the
//! official `promtool check metrics` (Debian package `prometheus`) when it is installed (required when
//! `FATHOM_REQUIRE_PROMTOOL=1`).

use fathom_metrics::prometheus::{render, PrometheusServer};
use fathom_metrics::{Aggregator, Config, Snapshot};
use fathom_model::{
    CloseType, FlowKey, FlowRecord, L4Protocol, L7Protocol, RequestLog, ResponseStatus,
};
use prometheus_parse::{Scrape, Value};
use std::io::{BufRead, Read, Write};

const T0: u64 = 1_800_000_000_000_000;

fn snapshot(endpoints: &[&str]) -> Snapshot {
    let mut agg = Aggregator::new(Config::default());
    for (i, ep) in endpoints.iter().enumerate() {
        for k in 0..10u64 {
            let mut l = RequestLog::new(L7Protocol::Http1);
            l.ip_dst = "10.0.0.2".into();
            l.port_dst = 80;
            l.endpoint = Some(ep.to_string());
            l.end_time_us = T0 + k * 1000 + i as u64;
            l.response_duration_us = Some(1000 * (k + 1));
            l.response_status = match k {
                0 => ResponseStatus::ClientError,
                1 => ResponseStatus::ServerError,
                2 => ResponseStatus::Timeout,
                _ => ResponseStatus::Ok,
            };
            l.captured_request_byte = 100;
            l.captured_response_byte = 1000;
            agg.observe_log(&l);
        }
    }
    let key = FlowKey {
        ip_src: "10.0.0.1".parse().unwrap(),
        ip_dst: "fd00::2".parse().unwrap(),
        port_src: 40000,
        port_dst: 5432,
        l4_protocol: L4Protocol::Tcp,
    };
    let mut f = FlowRecord::new(&key, T0);
    f.end_time_us = T0 + 1000;
    f.rtt_us = Some(120);
    f.close_type = CloseType::Rst;
    f.packet_tx = 3;
    agg.observe_flow(&f);
    agg.advance(T0 + 62_000_000);
    agg.snapshot()
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses")
}

#[test]
fn exposition_parses_with_expected_values() {
    let snap = snapshot(&["/users", "/orders"]);
    let text = render(&snap);
    let scrape = parse(&text);
    let find = |metric: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{text}"))
            .value
            .clone()
    };
    let users = [
        ("l7_protocol", "http1"),
        ("server", "10.0.0.2:80"),
        ("endpoint", "/users"),
    ];
    assert_eq!(find("fathom_requests_total", &users), Value::Counter(10.0));
    for class in ["client", "server", "timeout"] {
        let mut l = users.to_vec();
        l.push(("class", class));
        assert_eq!(find("fathom_request_errors_total", &l), Value::Counter(1.0));
    }
    assert_eq!(
        find("fathom_request_bytes_total", &users),
        Value::Counter(1000.0)
    );
    assert_eq!(
        find("fathom_response_bytes_total", &users),
        Value::Counter(10_000.0)
    );
    match find("fathom_request_duration_seconds", &users) {
        Value::Summary(qs) => {
            assert_eq!(qs.len(), 3);
            let p50 = qs.iter().find(|q| q.quantile == 0.5).unwrap().count;
            // Rank ⌊0.5·9⌋ = 4 of 1..10 ms is 5 ms, within the sketch's 1.08 %.
            assert!((p50 - 0.005).abs() <= 0.005 * 0.0109, "p50 {p50}");
        }
        other => panic!("not a summary: {other:?}"),
    }
    assert_eq!(
        find("fathom_request_duration_seconds_count", &users),
        Value::Untyped(10.0)
    );
    assert_eq!(
        find("fathom_request_duration_seconds_sum", &users),
        Value::Untyped(0.055)
    );
    let l4 = [("l4_protocol", "tcp"), ("server", "[fd00::2]:5432")];
    let mut rst = l4.to_vec();
    rst.push(("reason", "rst"));
    assert_eq!(
        find("fathom_l4_connections_closed_total", &rst),
        Value::Counter(1.0)
    );
    let mut tx = l4.to_vec();
    tx.push(("direction", "tx"));
    assert_eq!(find("fathom_l4_packets_total", &tx), Value::Counter(3.0));
    assert_eq!(
        find("fathom_metrics_series", &[("kind", "red")]),
        Value::Gauge(2.0)
    );
    // Every family has HELP and TYPE.
    for name in [
        "fathom_requests_total",
        "fathom_request_errors_total",
        "fathom_request_duration_seconds",
        "fathom_l4_handshake_rtt_seconds",
    ] {
        assert!(scrape.docs.contains_key(name), "no HELP for {name}");
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no TYPE for {name}"
        );
    }
}

/// Label values that need escaping survive `promtool`'s parser (the official one).
#[test]
fn promtool_accepts_the_exposition() {
    let snap = snapshot(&[
        "/plain",
        "/q\"uote",
        "/back\\slash",
        "/new\nline",
        "/ünï,cödé=1",
    ]);
    let text = render(&snap);
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("FATHOM_REQUIRE_PROMTOOL").is_none(),
                "promtool required but not runnable: {e}"
            );
            eprintln!("promtool not installed (apt-get install prometheus): skipped");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 0 when clean, 3 on lint problems, 1 on parse errors: we want it clean.
    assert!(out.status.success(), "promtool: {report}\n{text}");
    assert!(report.trim().is_empty(), "promtool lint: {report}");
}

#[test]
fn server_answers_scrapes() {
    let server = PrometheusServer::bind("127.0.0.1:0").unwrap();
    server.publish(&snapshot(&["/a"]));
    let scrape = |path: &str| {
        let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    let resp = scrape("/metrics");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"));
    let scrape_body = parse(body);
    assert!(scrape_body
        .samples
        .iter()
        .any(|s| s.metric == "fathom_requests_total" && s.labels.get("endpoint") == Some("/a")));
    assert!(scrape("/nope").starts_with("HTTP/1.1 404"));
    // Stops on drop.
    let addr = server.local_addr();
    drop(server);
    let gone = std::net::TcpStream::connect(addr)
        .map(|s| std::io::BufReader::new(s).lines().next().is_none())
        .unwrap_or(true);
    assert!(gone);
}
