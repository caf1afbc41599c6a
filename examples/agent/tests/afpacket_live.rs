//! `fathom-agent --iface IFACE --duration SECS --json logs` against a Python HTTP server and curl: on `lo`
//! (each request logged exactly once: outgoing copies skipped), on the host end of a veth pair whose other end is
//! in a network namespace the test creates, with a 2-thread fanout (same logs as 1 thread), and beside `--ebpf`
//! (same logs but for the fields only one side can know). Expected paths and statuses come from the requests
//! made and the status codes curl reports. Needs root, python3 and curl (skips otherwise; fails instead under
//! `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "afpacket", target_os = "linux"))]

mod live;

use live::{can_run, Proc, TempDir};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running agent whose stderr is collected in the background.
struct Agent {
    child: Child,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Agent {
    /// Start `fathom-agent ARGS --json logs` and wait until its capture has started (`ready` on stderr).
    fn start(args: &[&str], ready: Option<&str>) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
            .args(args)
            .args(["--json", "logs"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fathom-agent");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut agent = Agent {
            child,
            stderr: rx,
            lines: Vec::new(),
        };
        if let Some(ready) = ready {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !agent.lines.iter().any(|l| l.contains(ready)) {
                let left = deadline.saturating_duration_since(Instant::now());
                match agent.stderr.recv_timeout(left) {
                    Ok(l) => agent.lines.push(l),
                    Err(_) => panic!("agent {args:?} did not start: {:?}", agent.lines),
                }
            }
        }
        agent
    }

    /// Wait for the agent to exit; its status, JSON log lines, and stderr.
    fn finish(self) -> (ExitStatus, Vec<Value>, String) {
        let out = self.child.wait_with_output().expect("agent output");
        let mut lines = self.lines;
        lines.extend(self.stderr.try_iter());
        let logs = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON log line"))
            .collect();
        (out.status, logs, strip_ansi(&lines.join("\n")))
    }
}

/// `s` without ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A Python HTTP server on `addr:port` serving a temporary directory with `a.txt` and `b.txt`, optionally run
/// with a command prefix (`ip netns exec NS`).
fn http_server(prefix: &[&str], addr: IpAddr, port: u16, dir: &TempDir) -> Proc {
    std::fs::write(dir.join("a.txt"), "alpha\n".repeat(10)).expect("a.txt");
    std::fs::write(dir.join("b.txt"), "bravo\n".repeat(5000)).expect("b.txt");
    std::fs::write(dir.join("c.txt"), "charlie\n".repeat(300)).expect("c.txt");
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg("python3");
            c
        }
        None => Command::new("python3"),
    };
    let child = cmd
        .args([
            "-m",
            "http.server",
            "--bind",
            &addr.to_string(),
            &port.to_string(),
        ])
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn python3 http.server");
    let server = Proc::new("http.server", child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&(addr, port).into(), Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// The request paths of the workload for the comparison with eBPF: every response fits in one eBPF capture
/// (`EbpfConfig::capture_len`, 4096 bytes per syscall), so eBPF sees all of its bytes.
#[cfg(feature = "ebpf")]
const SMALL_PATHS: [&str; 5] = [
    "/a.txt",
    "/missing",
    "/a.txt?x=1",
    "/no/such/dir/",
    "/c.txt",
];

/// The request paths of the workload.
const PATHS: [&str; 6] = [
    "/a.txt",
    "/b.txt",
    "/missing",
    "/a.txt?x=1",
    "/no/such/dir/",
    "/b.txt",
];

/// Run curl once per path (one connection each); returns (path, status curl saw).
fn workload(addr: IpAddr, port: u16, paths: &[&str]) -> Vec<(String, i64)> {
    paths
        .iter()
        .map(|p| {
            let out = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                .arg(format!("http://{addr}:{port}{p}"))
                .output()
                .expect("curl");
            assert!(out.status.success(), "curl {p}");
            let code: i64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("curl status code");
            (p.to_string(), code)
        })
        .collect()
}

/// (resource, status) of the HTTP/1 logs to `port`, sorted; checks the fields every log must have.
fn requests(logs: &[Value], port: u16) -> Vec<(String, i64)> {
    let mut got: Vec<(String, i64)> = logs
        .iter()
        .filter(|l| l["port_dst"] == port)
        .map(|l| {
            assert_eq!(l["l7_protocol"], "http1", "{l}");
            assert_eq!(l["request_type"], "GET", "{l}");
            assert_eq!(l["tap_side"], "network", "{l}");
            assert!(
                l["req_tcp_seq"].is_u64() && l["resp_tcp_seq"].is_u64(),
                "{l}"
            );
            (
                l["request_resource"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                l["response_code"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    got.sort();
    got
}

fn sorted(mut v: Vec<(String, i64)>) -> Vec<(String, i64)> {
    v.sort();
    v
}

const READY: &str = "AF_PACKET capture started";

#[test]
fn iface_lo_logs_each_request_once() {
    if !can_run("iface_lo_logs_each_request_once", &["python3", "curl"]) {
        return;
    }
    let dir = TempDir::new("fathom-afp-lo");
    let port = live::free_port();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let _server = http_server(&[], lo, port, &dir);
    let agent = Agent::start(&["--iface", "lo", "--duration", "4"], Some(READY));
    let want = workload(lo, port, &PATHS);
    assert!(want.iter().any(|(_, c)| *c == 404) && want.iter().any(|(_, c)| *c == 200));
    let (status, logs, stderr) = agent.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(requests(&logs, port), sorted(want), "{stderr}");
    for l in logs.iter().filter(|l| l["port_dst"] == port) {
        assert_eq!(
            (&l["ip_src"], &l["ip_dst"]),
            (&Value::from("127.0.0.1"), &Value::from("127.0.0.1"))
        );
    }
}

/// Without `--duration`, Ctrl-C (SIGINT) stops the capture like the end of a duration: the agent drains the ring,
/// ends the flows, writes every log and exits 0 (a second signal would quit at once).
#[test]
fn iface_sigint_stops_and_flushes() {
    if !can_run(
        "iface_sigint_stops_and_flushes",
        &["python3", "curl", "kill"],
    ) {
        return;
    }
    let dir = TempDir::new("fathom-afp-sigint");
    let port = live::free_port();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let _server = http_server(&[], lo, port, &dir);
    let agent = Agent::start(&["--iface", "lo"], Some(READY));
    let want = workload(lo, port, &PATHS);
    std::thread::sleep(Duration::from_millis(300));
    let pid = agent.child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -INT {pid}");
    let (status, logs, stderr) = agent.finish();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("stopping the capture"), "{stderr}");
    assert_eq!(requests(&logs, port), sorted(want), "{stderr}");
}

#[test]
fn iface_fanout_two_threads_same_logs_as_one() {
    if !can_run(
        "iface_fanout_two_threads_same_logs_as_one",
        &["python3", "curl"],
    ) {
        return;
    }
    let dir = TempDir::new("fathom-afp-fanout");
    let port = live::free_port();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let _server = http_server(&[], lo, port, &dir);
    let one = Agent::start(&["--iface", "lo", "--duration", "6"], Some(READY));
    let two = Agent::start(
        &["--iface", "lo", "--duration", "6", "--capture-threads", "2"],
        Some(READY),
    );
    let paths: Vec<&str> = PATHS.iter().cycle().take(24).copied().collect();
    let want = workload(lo, port, &paths);
    let (s1, logs1, e1) = one.finish();
    let (s2, logs2, e2) = two.finish();
    assert!(s1.success() && s2.success(), "{e1}\n{e2}");
    assert_eq!(requests(&logs1, port), sorted(want.clone()), "{e1}");
    assert_eq!(requests(&logs2, port), sorted(want), "{e2}");
    // The same packets: the logs are identical but for the times, which differ by microseconds because the
    // kernel stamps each socket's copy of a packet separately.
    let full = |logs: &[Value]| {
        let mut v: Vec<(String, Value)> = logs
            .iter()
            .filter(|l| l["port_dst"] == port)
            .map(|l| {
                let mut stripped = l.clone();
                for f in ["start_time_us", "end_time_us", "response_duration_us"] {
                    stripped[f] = Value::Null;
                }
                (stripped.to_string(), l.clone())
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (full1, full2) = (full(&logs1), full(&logs2));
    assert_eq!(
        full1.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        full2.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    for ((_, a), (_, b)) in full1.iter().zip(&full2) {
        for f in ["start_time_us", "end_time_us"] {
            let (x, y) = (a[f].as_i64().unwrap_or(0), b[f].as_i64().unwrap_or(0));
            assert!((x - y).abs() < 1000, "{f}: {x} vs {y}");
        }
    }
    assert!(e2.contains("threads=2"), "{e2}");
}

/// A network namespace with a veth pair to the host, removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 100_000;
        let third = (id % 250) as u8 + 1;
        let ns = Netns {
            name: format!("fathom-afp-{id}"),
            host_if: format!("fafp{id}h"),
            host_ip: Ipv4Addr::new(10, 213, third, 1),
            ns_ip: Ipv4Addr::new(10, 213, third, 2),
        };
        let ns_if = format!("fafp{id}n");
        ns.cleanup();
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let exec = |args: &[&str]| {
            let mut v = vec!["netns", "exec", &ns.name, "ip"];
            v.extend_from_slice(args);
            ip(&v);
        };
        exec(&["addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns_if]);
        exec(&["link", "set", &ns_if, "up"]);
        exec(&["link", "set", "lo", "up"]);
        ns
    }

    fn cleanup(&self) {
        for args in [
            vec!["netns", "del", self.name.as_str()],
            vec!["link", "del", self.host_if.as_str()],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[test]
fn iface_veth_to_a_network_namespace() {
    if !can_run(
        "iface_veth_to_a_network_namespace",
        &["python3", "curl", "ip"],
    ) {
        return;
    }
    let ns = Netns::create();
    let dir = TempDir::new("fathom-afp-veth");
    let port = 8080;
    let server_ip = IpAddr::V4(ns.ns_ip);
    let server = http_server(&["ip", "netns", "exec", &ns.name], server_ip, port, &dir);
    let agent = Agent::start(&["--iface", &ns.host_if, "--duration", "4"], Some(READY));
    let want = workload(server_ip, port, &PATHS);
    let (status, logs, stderr) = agent.finish();
    drop(server);
    assert!(status.success(), "{stderr}");
    assert_eq!(requests(&logs, port), sorted(want), "{stderr}");
    for l in logs.iter().filter(|l| l["port_dst"] == port) {
        assert_eq!(l["ip_src"], ns.host_ip.to_string(), "{l}");
        assert_eq!(l["ip_dst"], ns.ns_ip.to_string(), "{l}");
    }
    // Nothing was skipped as an outgoing copy: on a veth, outgoing packets are the host's own traffic.
    assert!(stderr.contains("AF_PACKET capture started"), "{stderr}");
}

#[test]
fn iface_bad_interface_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args(["--iface", "nosuchif0", "--duration", "1", "--json", "logs"])
        .output()
        .expect("agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(
            "cannot capture on interface `nosuchif0`: no network interface named `nosuchif0`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let dir = TempDir::new("fathom-afp-filter");
    let bad = dir.join("bad.bpf");
    std::fs::write(&bad, "2\n6 0 0 0\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args(["--iface", "lo", "--bpf-filter-file"])
        .arg(&bad)
        .output()
        .expect("agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("BPF filter program, line 2: 1 instructions, 2 announced"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn iface_bpf_filter_file_keeps_only_matching_port() {
    if !can_run(
        "iface_bpf_filter_file_keeps_only_matching_port",
        &["python3", "curl", "tcpdump"],
    ) {
        return;
    }
    let dir = TempDir::new("fathom-afp-bpf");
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (p1, p2) = (live::free_port(), live::free_port());
    let _s1 = http_server(&[], lo, p1, &dir);
    let _s2 = http_server(&[], lo, p2, &dir);
    let prog = Command::new("tcpdump")
        .args(["-i", "lo", "-ddd", &format!("tcp port {p1}")])
        .output()
        .expect("tcpdump -ddd");
    assert!(prog.status.success());
    let file = dir.join("filter.bpf");
    std::fs::write(&file, &prog.stdout).expect("write filter");
    let file = file.to_string_lossy().to_string();
    let agent = Agent::start(
        &[
            "--iface",
            "lo",
            "--duration",
            "4",
            "--bpf-filter-file",
            &file,
        ],
        Some(READY),
    );
    let want = workload(lo, p1, &PATHS[..3]);
    workload(lo, p2, &PATHS[..3]);
    let (status, logs, stderr) = agent.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(requests(&logs, p1), sorted(want), "{stderr}");
    assert!(
        requests(&logs, p2).is_empty(),
        "port {p2} passed the filter"
    );
    assert!(logs.iter().all(|l| l["port_dst"] == p1), "{logs:?}");
}

/// The same workload seen by `--iface lo` and by `--ebpf` at the same time gives the same logs, except the
/// fields only one capture point can know: `tap_side`, `process_id`, `thread_id`, `process_name` and the
/// syscall trace ids (eBPF only); `req_tcp_seq`/`resp_tcp_seq` (packets only: syscalls carry no sequence
/// numbers); and the times (`start_time_us`, `end_time_us`, `response_duration_us`): a packet is stamped when the
/// packet socket receives it, a syscall when it returns, so they differ by some µs. Responses stay below the eBPF
/// capture length (4096 bytes per syscall): beyond it eBPF counts the rest as lost, and `captured_*_byte` would
/// differ too.
#[cfg(feature = "ebpf")]
#[test]
fn iface_lo_matches_ebpf() {
    if !can_run("iface_lo_matches_ebpf", &["python3", "curl"]) {
        return;
    }
    let dir = TempDir::new("fathom-afp-ebpf");
    let port = live::free_port();
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let _server = http_server(&[], lo, port, &dir);
    let packets = Agent::start(&["--iface", "lo", "--duration", "8"], Some(READY));
    let syscalls = Agent::start(&["--ebpf", "--duration", "7"], None);
    // The eBPF agent prints no readiness line: give it the time its own test gives it to attach.
    std::thread::sleep(Duration::from_millis(2500));
    let want = workload(lo, port, &SMALL_PATHS);
    let (s1, logs1, e1) = packets.finish();
    let (s2, logs2, e2) = syscalls.finish();
    assert!(s1.success(), "{e1}");
    assert!(s2.success(), "{e2}");
    assert_eq!(requests(&logs1, port), sorted(want), "{e1}");
    let strip = |l: &Value| {
        let mut l = l.clone();
        for f in [
            "tap_side",
            "process_id",
            "thread_id",
            "process_name",
            "syscall_trace_id_request",
            "syscall_trace_id_response",
            "req_tcp_seq",
            "resp_tcp_seq",
            "start_time_us",
            "end_time_us",
            "response_duration_us",
        ] {
            l[f] = Value::Null;
        }
        l.to_string()
    };
    let mut from_packets: Vec<String> = logs1
        .iter()
        .filter(|l| l["port_dst"] == port)
        .map(strip)
        .collect();
    from_packets.sort();
    for side in ["client_process", "server_process"] {
        let mut from_syscalls: Vec<String> = logs2
            .iter()
            .filter(|l| l["port_dst"] == port && l["tap_side"] == side)
            .map(strip)
            .collect();
        from_syscalls.sort();
        assert_eq!(from_packets, from_syscalls, "{side}");
    }
    // Times agree to within a few milliseconds.
    for l in logs1.iter().filter(|l| l["port_dst"] == port) {
        let twin = logs2
            .iter()
            .filter(|m| {
                m["tap_side"] == "client_process"
                    && m["port_src"] == l["port_src"]
                    && m["port_dst"] == port
            })
            .find(|m| m["request_resource"] == l["request_resource"])
            .expect("eBPF twin");
        let (a, b) = (
            l["start_time_us"].as_i64().unwrap(),
            twin["start_time_us"].as_i64().unwrap(),
        );
        assert!((a - b).abs() < 50_000, "start times {a} vs {b}");
    }
}
