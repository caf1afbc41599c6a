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
            Output::BatchDone => {}
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every server with a flow in the capture, as the L4 series name it.
fn flow_servers(pcap: &Path) -> std::collections::BTreeSet<String> {
    fathom_agent::flows_from_pcap(pcap)
        .unwrap()
        .iter()
        .map(|f| match f.ip_dst.contains(':') {
            true => format!("[{}]:{}", f.ip_dst, f.port_dst),
            false => format!("{}:{}", f.ip_dst, f.port_dst),
        })
        .collect()
}

#[test]
fn cli_serves_prometheus_after_a_pcap() {
    use std::io::{Read, Write};
    let pcap = data("microservices.pcap");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args([
            "--pcap",
            pcap.to_str().unwrap(),
            "--prometheus",
            &addr,
            "--duration",
            "20",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
            continue;
        };
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        // Published at the end of the file: the flow totals are there.
        if body.contains("fathom_l4_packets_total") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let servers: std::collections::BTreeSet<String> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "fathom_l4_packets_total")
        .filter_map(|s| s.labels.get("server").map(str::to_string))
        .collect();
    assert_eq!(servers, flow_servers(&pcap), "{body}");
}

#[test]
fn cli_pushes_otlp() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../crates/metrics/tests/otlp_receiver.py"
    );
    let out = std::env::temp_dir().join(format!("fathom-agent-otlp-{}.jsonl", std::process::id()));
    let required = std::env::var_os("FATHOM_REQUIRE_OTLP").is_some();
    let Ok(mut rx) = std::process::Command::new("python3")
        .arg(script)
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(!required, "python3 not runnable");
        return;
    };
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(rx.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let Some(port) = line.strip_prefix("PORT ").map(|p| p.trim().to_string()) else {
        let _ = rx.wait();
        assert!(!required, "receiver did not start: {line}");
        return;
    };
    let pcap = data("microservices.pcap");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args([
            "--pcap",
            pcap.to_str().unwrap(),
            "--otlp",
            &format!("http://127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let _ = rx.kill();
    let _ = rx.wait();
    assert!(status.success());
    let got = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let servers: std::collections::BTreeSet<String> = got
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|p| p["metric"] == "fathom.l4.packets")
        .filter_map(|p| p["attributes"]["server"].as_str().map(str::to_string))
        .collect();
    assert_eq!(servers, flow_servers(&pcap));
}

/// End to end on the shared captures: per server, the metric rows' request and error counts (1 s and 1 min)
/// equal the manifest's ground truth (`expected_request_logs`, `by_status`: the generating clients' accounting).
#[test]
fn metric_rows_match_ground_truth() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("manifest.json")).unwrap()).unwrap();
    for sc in manifest["scenarios"].as_array().unwrap() {
        let pcap = data(sc["pcap"].as_str().unwrap());
        let mut driver = MetricsDriver::new(
            Config::default(),
            DriverOptions {
                json_rows: true,
                clock_from_records: true,
                ..DriverOptions::default()
            },
        )
        .unwrap();
        let mut out = Vec::new();
        run_pcap(&pcap, &RunOptions::default(), |o| {
            let r = match &o {
                Output::Log(l) => driver.on_log(l, &mut out),
                Output::Flow(f) => driver.on_flow(f, &mut out),
                Output::BatchDone => Ok(()),
            };
            r.unwrap();
        })
        .unwrap();
        driver.finish(&mut out).unwrap();
        let rows: Vec<MetricRow> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let servers = sc["servers"].as_array().unwrap();
        for (gkey, g) in sc["ground_truth"].as_object().unwrap() {
            let (proto, port_key) = gkey.split_once('@').unwrap_or((gkey, gkey));
            let port = servers
                .iter()
                .find(|s| s["port_key"] == port_key || s["protocol"] == port_key)
                .and_then(|s| s["port"].as_u64())
                .unwrap();
            let by = |k: &str| g["by_status"][k].as_u64().unwrap_or(0);
            let expected = [
                g["expected_request_logs"].as_u64().unwrap(),
                by("client_error"),
                by("server_error"),
                by("timeout"),
            ];
            for window_s in [1, 60] {
                let mut got = [0u64; 4];
                for r in rows.iter().filter(|r| {
                    r.window_s == window_s
                        && r.l7_protocol == proto
                        && r.server.ends_with(&format!(":{port}"))
                }) {
                    got[0] += r.request;
                    got[1] += r.error_client;
                    got[2] += r.error_server;
                    got[3] += r.timeout;
                }
                assert_eq!(
                    got,
                    expected,
                    "{} {gkey} {window_s} s: [request, client, server, timeout]",
                    pcap.display()
                );
            }
        }
    }
}
