//! End to end against a real broker: start `mosquitto` on a free port, capture loopback with `tcpdump`, run a
//! scripted `mosquitto_sub` / `mosquitto_pub` workload with known counts (QoS 0/1/2, MQTT 3.1.1 and 5), then
//! run the agent pipeline on the capture and check the logs match the workload exactly.
//!
//! Needs `mosquitto`, `mosquitto-clients` and `tcpdump` (with the right to capture); the test is skipped
//! with a message when one is missing. Every process it starts is killed on the way out, failure included
//! (a `Drop` guard).

use fathom_model::{RequestLog, ResponseStatus};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills (SIGTERM, then SIGKILL) and reaps a child process when dropped.
struct Guard {
    name: &'static str,
    child: Option<Child>,
}

impl Guard {
    fn new(name: &'static str, child: Child) -> Guard {
        Guard {
            name,
            child: Some(child),
        }
    }

    /// SIGTERM and wait up to 5 s (tcpdump flushes its file on SIGTERM), SIGKILL after.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop on SIGTERM: killing it", self.name);
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("fathom-mqtt-live-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Start tcpdump and wait for "listening on" on its stderr.
fn start_tcpdump(file: &Path, port: u16) -> Guard {
    let mut child = Command::new("tcpdump")
        .args(["-i", "lo", "-w"])
        .arg(file)
        .args(["--immediate-mode", "-B", "65536", "-U"])
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump starts");
    let stderr = child.stderr.take().unwrap();
    let guard = Guard::new("tcpdump", child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("tcpdump says 'listening on'");
    guard
}

fn start_mosquitto(dir: &Path, port: u16) -> Guard {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto starts");
    let guard = Guard::new("mosquitto", child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto does not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

fn publish(port: u16, version: &str, qos: u8, id: &str, topic: &str, msg: &str) {
    let st = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(["-q", &qos.to_string(), "-i", id, "-t", topic, "-m", msg])
        .status()
        .unwrap();
    assert!(st.success(), "mosquitto_pub {id}");
}

fn counts<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.to_string()).or_default() += 1;
    }
    m
}

#[test]
fn mosquitto_workload_logs_exactly() {
    for tool in [
        "mosquitto",
        "mosquitto_pub",
        "mosquitto_sub",
        "tcpdump",
        "stdbuf",
    ] {
        if !have(tool) {
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }
    let dir = tempdir();
    let pcap = dir.join("mqtt-live.pcap");
    let port = free_port();
    let mut tcpdump = start_tcpdump(&pcap, port);
    let mut broker = start_mosquitto(&dir, port);

    // Subscriber: MQTT 3.1.1, QoS 2 subscription, exits after 3 messages.
    // `stdbuf -oL`: its `-d` log is block-buffered on a pipe otherwise.
    let port_s = port.to_string();
    let mut sub = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-d",
            "-h",
            "127.0.0.1",
            "-p",
            &port_s,
        ])
        .args([
            "-V", "mqttv311", "-q", "2", "-i", "live-sub", "-t", "live/+/t", "-C", "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = sub.stdout.take().unwrap();
    let mut sub = Guard::new("mosquitto_sub", sub);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("received SUBACK") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("mosquitto_sub subscribed");

    // Publishers, one connection each: QoS 2 (3.1.1), QoS 1 (MQTT 5), QoS 0 (3.1.1).
    publish(port, "mqttv311", 2, "live-pub-q2", "live/a/t", "two");
    publish(port, "mqttv5", 1, "live-pub-q1", "live/b/t", "one");
    publish(port, "mqttv311", 0, "live-pub-q0", "live/c/t", "zero");

    // The subscriber exits by itself after the third message.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(c) = sub.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                assert!(st.success(), "mosquitto_sub status {st}");
                sub.child = None;
                break;
            }
        }
        assert!(Instant::now() < deadline, "mosquitto_sub did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last FINs reach the capture, then stop it (SIGTERM + wait flushes the file).
    std::thread::sleep(Duration::from_millis(300));
    broker.stop();
    tcpdump.stop();

    let (logs, stats) = fathom_agent::logs_from_pcap(&pcap).unwrap();
    let logs: Vec<RequestLog> = logs.into_iter().filter(|l| l.port_dst == port).collect();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("engine stats: {:?}", stats.engine);

    // Expected from the workload:
    // - subscriber (3.1.1): CONNECT, SUBSCRIBE, broker→subscriber PUBLISH QoS 2 (+ PUBREL), QoS 1, QoS 0
    //   (delivered at the publish QoS, below the subscription's 2), DISCONNECT = 7 logs;
    // - QoS 2 publisher: CONNECT, PUBLISH, PUBREL, DISCONNECT = 4; QoS 1 (v5): CONNECT, PUBLISH,
    //   DISCONNECT = 3; QoS 0: CONNECT, PUBLISH (one-way), DISCONNECT = 3.
    assert_eq!(logs.len(), 17, "{logs:#?}");
    assert!(logs.iter().all(|l| l.l7_protocol.as_str() == "mqtt"));
    let by_type = counts(logs.iter().filter_map(|l| l.request_type.as_deref()));
    let want: BTreeMap<String, usize> = [
        ("CONNECT", 4),
        ("SUBSCRIBE", 1),
        ("PUBLISH", 6),
        ("PUBREL", 2),
        ("DISCONNECT", 4),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(by_type, want);
    // One-way: 2 QoS 0 PUBLISH (publisher's, broker's) and 4 DISCONNECT; everything else answered.
    let one_way = logs
        .iter()
        .filter(|l| l.response_duration_us.is_none())
        .count();
    assert_eq!(one_way, 6);
    assert!(logs.iter().all(|l| l.response_status == ResponseStatus::Ok));
    // Codes: 4 CONNACK 0 and the SUBACK (granted QoS 2) 0.
    let codes =
        counts(
            logs.iter()
                .filter_map(|l| l.response_code)
                .map(|c| if c == 0 { "0" } else { "other" }),
        );
    assert_eq!(codes.get("0"), Some(&5));
    assert_eq!(codes.len(), 1);
    let versions = counts(logs.iter().filter_map(|l| l.version.as_deref()));
    assert_eq!(versions.get("5"), Some(&3));
    assert_eq!(versions.get("3.1.1"), Some(&14));
    let domains = counts(logs.iter().filter_map(|l| l.request_domain.as_deref()));
    for id in ["live-sub", "live-pub-q2", "live-pub-q1", "live-pub-q0"] {
        assert_eq!(domains.get(id), Some(&1), "client id {id}");
    }
    let topics = counts(
        logs.iter()
            .filter(|l| l.request_type.as_deref() == Some("PUBLISH"))
            .filter_map(|l| l.request_resource.as_deref()),
    );
    for t in ["live/a/t", "live/b/t", "live/c/t"] {
        assert_eq!(topics.get(t), Some(&2), "topic {t}");
    }
}
