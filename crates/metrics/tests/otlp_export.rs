//! OTLP/HTTP export to a real receiver: `tests/otlp_receiver.py` decodes our protobuf with the
//! `opentelemetry-proto` PyPI package (the reference generated code) and writes the data points it got.
//! Skipped when python3 or the package is missing, unless `FATHOM_REQUIRE_OTLP=1`.
#![cfg(feature = "otlp")]

use fathom_metrics::otlp::{OtlpError, OtlpExporter};
use fathom_metrics::{Aggregator, Config};
use fathom_model::{FlowKey, FlowRecord, L4Protocol, L7Protocol, RequestLog, ResponseStatus};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const T0: u64 = 1_800_000_000_000_000;

struct Receiver {
    child: Child,
    port: u16,
    out: std::path::PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.out);
    }
}

fn start_receiver() -> Option<Receiver> {
    let required = std::env::var_os("FATHOM_REQUIRE_OTLP").is_some();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_receiver.py");
    let out = std::env::temp_dir().join(format!("fathom-otlp-{}.jsonl", std::process::id()));
    let child = Command::new("python3")
        .arg(script)
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(!required, "python3 not runnable: {e}");
            eprintln!("python3 not runnable: skipped");
            return None;
        }
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let Some(port) = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
    else {
        let _ = child.kill();
        let _ = child.wait();
        assert!(!required, "receiver did not start: {line}");
        eprintln!("receiver did not start ({}): skipped", line.trim());
        return None;
    };
    Some(Receiver { child, port, out })
}

fn aggregator() -> Aggregator {
    let mut agg = Aggregator::new(Config::default());
    let series = [
        (L7Protocol::Http1, "10.0.0.2", 80, Some("/users")),
        (L7Protocol::Http1, "10.0.0.2", 80, Some("/orders")),
        (L7Protocol::Redis, "10.0.0.3", 6379, Some("GET")),
        (L7Protocol::Dns, "10.0.0.53", 53, None),
        (
            L7Protocol::Custom("myproto".into()),
            "fd00::7",
            9000,
            Some("op"),
        ),
    ];
    for (i, (p, ip, port, ep)) in series.iter().enumerate() {
        for k in 0..5u64 {
            let mut l = RequestLog::new(p.clone());
            l.ip_dst = ip.to_string();
            l.port_dst = *port;
            l.endpoint = ep.map(str::to_string);
            l.end_time_us = T0 + k * 10_000 + i as u64;
            l.response_duration_us = Some(200 + k);
            l.response_status = if k == 0 {
                ResponseStatus::ServerError
            } else {
                ResponseStatus::Ok
            };
            agg.observe_log(&l);
        }
    }
    let key = FlowKey {
        ip_src: "10.0.0.1".parse().unwrap(),
        ip_dst: "10.0.0.2".parse().unwrap(),
        port_src: 40000,
        port_dst: 80,
        l4_protocol: L4Protocol::Tcp,
    };
    let mut f = FlowRecord::new(&key, T0);
    f.rtt_us = Some(50);
    f.byte_tx = 1234;
    agg.observe_flow(&f);
    agg.advance(T0 + 65_000_000);
    agg
}

#[test]
fn receiver_gets_every_series() {
    let Some(rx) = start_receiver() else { return };
    let agg = aggregator();
    let snap = agg.snapshot();
    let exporter = OtlpExporter::new(&format!("http://127.0.0.1:{}", rx.port)).unwrap();
    exporter.export(&snap).unwrap();
    let got: Vec<Value> = std::fs::read_to_string(&rx.out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of =
        |metric: &str| -> Vec<&Value> { got.iter().filter(|p| p["metric"] == metric).collect() };
    let key = |p: &Value| {
        let a = &p["attributes"];
        (
            a["l7_protocol"].as_str().unwrap_or("").to_string(),
            a["server"].as_str().unwrap_or("").to_string(),
            a["endpoint"].as_str().map(str::to_string),
        )
    };
    let expected: BTreeSet<_> = snap
        .red
        .iter()
        .map(|s| (s.l7_protocol.clone(), s.server.clone(), s.endpoint.clone()))
        .collect();
    assert_eq!(expected.len(), 5);
    for metric in [
        "fathom.requests",
        "fathom.request.errors",
        "fathom.request.duration",
        "fathom.request.bytes",
        "fathom.response.bytes",
    ] {
        let seen: BTreeSet<_> = of(metric).into_iter().map(key).collect();
        assert_eq!(seen, expected, "{metric}");
    }
    for p in of("fathom.requests") {
        assert_eq!(p["value"], 5);
        assert_eq!(p["kind"], "sum");
        assert_eq!(p["monotonic"], true);
        assert_eq!(p["temporality"], 2, "cumulative");
        assert_eq!(p["resource"]["service.name"], "fathom-agent");
        assert_eq!(p["start_time_unix_nano"], T0 * 1000);
    }
    for p in of("fathom.request.errors") {
        let want = if p["attributes"]["class"] == "server" {
            1
        } else {
            0
        };
        assert_eq!(p["value"], want);
    }
    for p in of("fathom.request.duration") {
        assert_eq!(p["count"], 5);
        assert!((p["sum"].as_f64().unwrap() - 0.00101).abs() < 1e-9);
        assert_eq!(p["quantiles"]["1.0"], 0.000204);
    }
    let l4 = of("fathom.l4.bytes");
    assert!(l4.iter().any(|p| p["attributes"]["server"] == "10.0.0.2:80"
        && p["attributes"]["direction"] == "tx"
        && p["value"] == 1234));
    assert_eq!(of("fathom.l4.handshake_rtt").len(), 1);
}

#[test]
fn receiver_errors_are_reported() {
    let Some(rx) = start_receiver() else { return };
    let exporter =
        OtlpExporter::new(&format!("http://127.0.0.1:{}/wrong/v1/metrics", rx.port)).unwrap();
    match exporter.export(&aggregator().snapshot()) {
        Err(OtlpError::Status { status: 404 }) => {}
        other => panic!("expected a 404, got {other:?}"),
    }
}
