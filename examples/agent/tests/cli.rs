//! CLI tests of the built `fathom-agent` binary on the shared captures.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args(args)
        .output()
        .expect("agent runs")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fathom-agent-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

type Conv = BTreeMap<String, (u64, u64)>;

/// Exact per-stream, per-sender frames and bytes from tshark fields.
fn tshark_streams(path: &Path, l4: &str) -> Vec<Conv> {
    let out = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-Y",
            l4,
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            &format!("{l4}.stream"),
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            &format!("{l4}.srcport"),
            "-e",
            "frame.len",
        ])
        .output()
        .expect("tshark runs");
    let mut streams: BTreeMap<u64, Conv> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let p: Vec<&str> = line.split('|').collect();
        if p.len() < 5 || p[0].is_empty() {
            continue;
        }
        let stream: u64 = p[0].split(',').next().unwrap().parse().unwrap();
        let ip = if p[1].is_empty() { p[2] } else { p[1] };
        let e = streams
            .entry(stream)
            .or_default()
            .entry(format!("{}|{}", ip.split(',').next_back().unwrap(), p[3]))
            .or_default();
        e.0 += 1;
        e.1 += p[4].parse::<u64>().unwrap();
    }
    streams.into_values().collect()
}

fn agent_flows(stdout: &[u8]) -> Vec<(String, Conv)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let mut c = Conv::new();
            let n = |k: &str| v[k].as_u64().unwrap();
            if n("packet_tx") > 0 {
                c.insert(
                    format!("{}|{}", v["ip_src"].as_str().unwrap(), v["port_src"]),
                    (n("packet_tx"), n("byte_tx")),
                );
            }
            if n("packet_rx") > 0 {
                c.insert(
                    format!("{}|{}", v["ip_dst"].as_str().unwrap(), v["port_dst"]),
                    (n("packet_rx"), n("byte_rx")),
                );
            }
            (v["l4_protocol"].as_str().unwrap().to_string(), c)
        })
        .collect()
}

#[test]
fn json_flows_match_tshark_on_every_shared_capture() {
    let mut pcaps: Vec<PathBuf> = std::fs::read_dir(data(""))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    pcaps.sort();
    assert!(pcaps.len() >= 12);
    let (mut total, mut ok) = (0, 0);
    for pcap in &pcaps {
        let out = agent(&["--pcap", pcap.to_str().unwrap(), "--json", "flows"]);
        assert!(
            out.status.success(),
            "{}: {}",
            pcap.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let ours = agent_flows(&out.stdout);
        for l4 in ["tcp", "udp"] {
            let mut got: HashMap<Conv, usize> = HashMap::new();
            for (_, c) in ours.iter().filter(|(p, _)| p == l4) {
                *got.entry(c.clone()).or_default() += 1;
            }
            for c in tshark_streams(pcap, l4) {
                total += 1;
                match got.get_mut(&c) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        ok += 1;
                    }
                    _ => eprintln!("{}: tshark flow {c:?} not in our output", pcap.display()),
                }
            }
            assert!(
                got.values().all(|&n| n == 0),
                "{}: extra flows {got:?}",
                pcap.display()
            );
        }
    }
    eprintln!("flows matching tshark: {ok}/{total}");
    assert_eq!(ok, total);
}

#[test]
fn json_output_is_only_json_lines() {
    for kind in ["flows", "logs"] {
        let out = agent(&[
            "--pcap",
            data("http1.pcap").to_str().unwrap(),
            "--json",
            kind,
        ]);
        assert!(out.status.success());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            assert!(v.is_object());
        }
    }
}

#[test]
fn cut_file_prints_earlier_flows_then_fails_with_offset() {
    let bytes = std::fs::read(data("http1.pcap")).unwrap();
    let cut = bytes.len() * 2 / 3;
    let path = tmp("cut.pcap");
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let out = agent(&["--pcap", path.to_str().unwrap(), "--json", "flows"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("offset"), "{stderr}");
    // The offset named is the start of the cut record: a record boundary before the cut.
    let offset: usize = stderr
        .split("offset ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .expect("an offset in the message");
    assert!(offset < cut && offset > 24, "{offset}");
    let flows = agent_flows(&out.stdout);
    assert!(!flows.is_empty());
    let full = agent(&[
        "--pcap",
        data("http1.pcap").to_str().unwrap(),
        "--json",
        "flows",
    ]);
    assert!(flows.len() <= agent_flows(&full.stdout).len());
    // Not a capture at all.
    let junk = tmp("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file").unwrap();
    let out = agent(&["--pcap", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap"));
}

#[test]
fn unsupported_options_exit_2() {
    let pcap = data("http1.pcap");
    let p = pcap.to_str().unwrap();
    #[allow(unused_mut)]
    let mut cases = vec![
        vec!["--pcap", p, "--json", "traces"],
        vec!["--pcap", p, "--tags", "tags.yaml"],
        vec!["--pcap", p, "--plugin", "x.wasm"],
        vec!["--pcap", p, "--otlp", "https://x"],
        vec!["--pcap", p, "--server", "http://x"],
        vec!["--pcap", p, "--duration", "3"],
        vec![],
        vec!["--pcap", p, "--json", "bogus"],
    ];
    // With the `ebpf` feature, `--ebpf` is a live capture (tests/ebpf_live.rs).
    #[cfg(not(feature = "ebpf"))]
    cases.push(vec!["--ebpf"]);
    // With the `afpacket` feature, `--iface` is a live capture (tests/afpacket_live.rs).
    #[cfg(not(feature = "afpacket"))]
    {
        cases.push(vec!["--iface", "lo"]);
        cases.push(vec!["--iface", "lo", "--prometheus", "127.0.0.1:9100"]);
    }
    // Fanout and filter options need --iface.
    cases.push(vec!["--pcap", p, "--capture-threads", "2"]);
    cases.push(vec!["--pcap", p, "--bpf-filter-file", "f.bpf"]);
    for args in cases {
        let out = agent(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn summary_without_json() {
    let out = agent(&["--pcap", data("dns.pcap").to_str().unwrap()]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("Flows per protocol"), "{s}");
    assert!(s.contains("Capture counters"), "{s}");
}

#[test]
fn library_helpers() {
    let flows = fathom_agent::flows_from_pcap(&data("http1.pcap")).unwrap();
    assert_eq!(flows.len(), 8);
    let (logs, stats) = fathom_agent::logs_from_pcap(&data("http1.pcap")).unwrap();
    assert_eq!(stats.flows, 8);
    assert_eq!(stats.logs, logs.len() as u64);
    assert_eq!(stats.capture.packets, 129);
}

/// The human summary's RED table: one row per endpoint, busiest first, with rate, error %, p50 and p99. Counts
/// come from the manifest's ground truth for microservices.pcap (front: 6 requests, 1 client error; Redis:
/// GET 6, SET 3; PostgreSQL: 4 Execute).
#[test]
fn summary_red_table_is_busiest_first() {
    let out = agent(&["--pcap", data("microservices.pcap").to_str().unwrap()]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    let table: Vec<Vec<&str>> = s
        .lines()
        .skip_while(|l| !l.starts_with("Requests per endpoint"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            // protocol, server, endpoint (may contain spaces), then 9 numeric columns.
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = f.len();
            let mut row = vec![f[0], f[1]];
            row.push(
                l.split_whitespace()
                    .skip(2)
                    .take(n - 11)
                    .last()
                    .unwrap_or(""),
            );
            row.extend_from_slice(&f[n - 9..]);
            row
        })
        .collect();
    assert!(
        s.contains("p50_us") && s.contains("p99_us") && s.contains("error%") && s.contains("req/s"),
        "{s}"
    );
    let requests: Vec<u64> = table.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(
        requests.windows(2).all(|w| w[0] >= w[1]),
        "not busiest first: {requests:?}"
    );
    let row = |server: &str, ep: &str| {
        table
            .iter()
            .find(|r| r[1] == server && r[2] == ep && r.len() == 12)
            .unwrap_or_else(|| panic!("no row {server} {ep} in {s}"))
    };
    let front = row("127.0.0.1:18082", "/shop/orders/{id}");
    assert_eq!(front[3], "6");
    assert_eq!(front[5], "16.7"); // 1 client error of 6
    assert_eq!(row("127.0.0.1:16379", "GET")[3], "6");
    assert_eq!(row("127.0.0.1:16379", "SET")[3], "3");
    let pg: u64 = table
        .iter()
        .filter(|r| r[0] == "postgresql")
        .map(|r| r[3].parse::<u64>().unwrap())
        .sum();
    assert_eq!(pg, 4);
    for r in &table {
        let (p50, p99): (u64, u64) = (r[9].parse().unwrap(), r[10].parse().unwrap());
        assert!(p50 <= p99, "{r:?}");
    }
}
