//! `--json metrics` / `--prometheus` wiring: the metric rows the agent's pipeline produces on the shared
//! captures account for exactly the logs and flows the same pipeline produces (every log in one 1 s and one
//! 1 min window, every flow's packets and bytes in the L4 rows). The counts themselves are checked against the
//! captures' ground truth in `crates/metrics/tests/truth_counts.rs`.

use fathom_agent::{run_pcap, Output, RunOptions};
use fathom_metrics::{Config, DriverOptions, L4Row, MetricRow, MetricsDriver};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn pcaps() -> Vec<PathBuf> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap();
    manifest["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| data(s["pcap"].as_str().unwrap()))
        .collect()
}

type Key = (String, String, Option<String>);

#[test]
fn metric_rows_account_for_every_log_and_flow() {
    for pcap in pcaps() {
        let mut driver = MetricsDriver::new(
            Config::default(),
            DriverOptions {
                json_rows: true,
                json_l4_rows: true,
                clock_from_records: true,
                ..DriverOptions::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        let mut logs: BTreeMap<Key, u64> = BTreeMap::new();
        let (mut packets, mut bytes, mut flows) = (0u64, 0u64, 0u64);
        run_pcap(&pcap, &RunOptions::default(), |o| match &o {
            Output::Log(l) => {
                let server = match l.ip_dst.parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", l.port_dst),
                    _ => format!("{}:{}", l.ip_dst, l.port_dst),
                };
                let key = (
                    l.l7_protocol.as_str().to_string(),
                    server,
                    l.endpoint.clone(),
                );
                *logs.entry(key).or_default() += 1;
                driver.on_log(l, &mut out).unwrap();
            }
            Output::Flow(f) => {
                flows += 1;
                packets += f.packet_tx + f.packet_rx;
                bytes += f.byte_tx + f.byte_rx;
                driver.on_flow(f, &mut out).unwrap();
            }
        })
        .unwrap();
        driver.finish(&mut out).unwrap();
        let mut red: [BTreeMap<Key, u64>; 2] = Default::default();
        let mut l4 = [(0u64, 0u64, 0u64); 2];
        for line in String::from_utf8(out).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v.get("l7_protocol").is_some() {
                let r: MetricRow = serde_json::from_value(v).unwrap();
                let i = usize::from(r.window_s == 60);
                *red[i]
                    .entry((r.l7_protocol, r.server, r.endpoint))
                    .or_default() += r.request;
            } else {
                let r: L4Row = serde_json::from_value(v).unwrap();
                let i = usize::from(r.window_s == 60);
                l4[i].0 += r.flow;
                l4[i].1 += r.packet_tx + r.packet_rx;
                l4[i].2 += r.byte_tx + r.byte_rx;
            }
        }
        let name = pcap.display();
        assert_eq!(red[0], logs, "{name}: 1 s rows");
        assert_eq!(red[1], logs, "{name}: 1 min rows");
        assert!(flows > 0, "{name}: no flows");
        assert_eq!(l4[0], (flows, packets, bytes), "{name}: 1 s L4 rows");
        assert_eq!(l4[1], (flows, packets, bytes), "{name}: 1 min L4 rows");
    }
}

#[test]
fn cli_json_metrics_prints_only_metric_rows() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args([
            "--pcap",
            data("redis.pcap").to_str().unwrap(),
            "--json",
            "metrics",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let _: MetricRow = serde_json::from_str(line).expect("a metric row");
    }
}

#[test]
fn cli_rejects_a_bad_otlp_url() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args([
            "--pcap",
            data("redis.pcap").to_str().unwrap(),
            "--otlp",
            "ftp://x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OTLP"));
}
