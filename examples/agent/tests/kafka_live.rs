//! Live test: librdkafka's mock cluster (hosted by an idle `kcat -X test.mock.num.brokers=1` producer), kcat
//! clients (metadata, a producer with one message per ProduceRequest, a consumer reading to the end), captured
//! with tcpdump on loopback, then the agent pipeline on the capture. The expected logs are the clients' own
//! accounting: every `Sent XRequest (vN, ..., CorrId N)` in kcat's `-d protocol` log, paired when a
//! `Received ... CorrId N` follows, else a timeout.

mod rk_live;

use rk_live::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// (api, version, corr id, answered) from a librdkafka `-d protocol` log.
fn accounting(log: &str) -> Vec<(String, u32, u64, bool)> {
    let num = |s: &str| -> u64 {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let mut sent = Vec::new();
    let mut received = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Sent ").nth(1) {
            let Some((api, tail)) = rest.split_once("Request (v") else {
                continue;
            };
            let Some(corr) = tail.split("CorrId ").nth(1) else {
                continue;
            };
            let api = if api == "ApiVersion" {
                "ApiVersions"
            } else {
                api
            };
            sent.push((api.to_string(), num(tail) as u32, num(corr)));
        } else if let Some(rest) = line.split("Received ").nth(1) {
            if let Some(corr) = rest.split("CorrId ").nth(1) {
                received.push(num(corr));
            }
        }
    }
    sent.into_iter()
        .map(|(a, v, c)| {
            let answered = received.contains(&c);
            (a, v, c, answered)
        })
        .collect()
}

fn kcat(port: u16, client_id: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new("kcat")
        .args(["-b", &format!("127.0.0.1:{port}"), "-d", "protocol"])
        .args(["-X", &format!("client.id={client_id}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kcat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
        + "\u{0}"
        + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn kafka_live_workload_matches_logs() {
    for bin in ["kcat", "tcpdump"] {
        if !have(bin) {
            eprintln!("SKIPPED: {bin} not installed");
            return;
        }
    }
    let dir = scratch("kafka");
    let errf = dir.join("mock.err");
    // The mock cluster lives inside an idle producer whose stdin stays open (held by the guard's child).
    let host = Command::new("kcat")
        .args([
            "-X",
            "test.mock.num.brokers=1",
            "-b",
            "127.0.0.1:1",
            "-P",
            "-t",
            "__mock_host",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .expect("kcat mock host starts");
    let _host = Guard::new("kcat-mock", host);
    let deadline = Instant::now() + Duration::from_secs(20);
    let port: u16 = loop {
        let txt = std::fs::read_to_string(&errf).unwrap_or_default();
        if let Some(p) = txt.split("replaced with 127.0.0.1:").nth(1) {
            break p
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "mock cluster did not report its port"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_tcp(port);
    // Let the host producer finish its own bootstrap exchange before the capture starts.
    std::thread::sleep(Duration::from_millis(1500));
    let pcap = dir.join("kafka-live.pcap");
    let dump = tcpdump(&pcap, port);

    let messages = 5;
    let lines: String = (0..messages).map(|i| format!("order-{i}\n")).collect();
    let mut runs = Vec::new();
    runs.push((
        "live-metadata",
        None,
        kcat(port, "live-metadata", &["-L"], ""),
    ));
    runs.push((
        "live-producer",
        Some("orders"),
        kcat(
            port,
            "live-producer",
            &[
                "-P",
                "-t",
                "orders",
                "-p",
                "0",
                "-X",
                "linger.ms=0",
                "-X",
                "batch.num.messages=1",
            ],
            &lines,
        ),
    ));
    let consumed = kcat(
        port,
        "live-consumer",
        &["-C", "-t", "orders", "-p", "0", "-o", "beginning", "-e"],
        "",
    );
    let got_msgs = consumed
        .split('\u{0}')
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("order-"))
        .count();
    assert_eq!(got_msgs, messages);
    runs.push(("live-consumer", Some("orders"), consumed));
    stop_capture(dump);

    // Expected: the clients' accounting.
    let mut want: BTreeMap<String, u32> = BTreeMap::new();
    let mut produce = 0;
    for (client, topic, out) in &runs {
        let log = out.split('\u{0}').nth(1).unwrap();
        for (api, ver, corr, answered) in accounting(log) {
            produce += u32::from(api == "Produce");
            let resource = match api.as_str() {
                "Produce" | "Fetch" | "ListOffsets" => topic.unwrap_or("-"),
                _ => "*",
            };
            let status = if answered { "ok" } else { "timeout" };
            *want
                .entry(format!("{client}|{corr}|{api}|{ver}|{resource}|{status}"))
                .or_default() += 1;
        }
    }
    assert_eq!(produce, messages as u32, "one ProduceRequest per message");

    let (logs, _) = fathom_agent::logs_from_pcap(&pcap).unwrap();
    let mut got: BTreeMap<String, u32> = BTreeMap::new();
    for l in logs
        .iter()
        .filter(|l| l.port_dst == port && l.l7_protocol.as_str() == "kafka")
        .filter(|l| {
            l.request_domain
                .as_deref()
                .is_some_and(|d| d.starts_with("live-"))
        })
    {
        let api = l.request_type.clone().unwrap_or_default();
        let resource = match api.as_str() {
            "Produce" | "Fetch" | "ListOffsets" => l.request_resource.clone().unwrap_or("-".into()),
            _ => "*".into(),
        };
        assert_eq!(l.response_code, None, "{l:?}");
        *got.entry(format!(
            "{}|{}|{}|{}|{}|{}",
            l.request_domain.as_deref().unwrap_or(""),
            l.request_id.unwrap_or(u64::MAX),
            api,
            l.version.as_deref().unwrap_or(""),
            resource,
            l.response_status.as_str()
        ))
        .or_default() += 1;
    }
    assert!(want.len() >= 15, "workload too small: {want:?}");
    assert_eq!(got, want);
    let _ = std::fs::remove_dir_all(&dir);
}
