//! Live eBPF capture: a Python HTTP server and curl on loopback, traced by `EbpfSource`; the chunks must hold
//! the request and response bytes with the right processes and addresses, and the protocol engine must turn them
//! into HTTP/1 logs. Needs root (skips otherwise; fails instead under `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use fathom_capture::{EbpfConfig, EbpfSource, EventSource};
use fathom_model::{ChunkOrigin, Direction, RequestLog, StreamEvent, TapSide};
use fathom_protocols::{builtin_parsers, Engine, Limits};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    assert!(
        std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
        "FATHOM_REQUIRE_LIVE is set but {why}"
    );
    eprintln!("skipping ebpf_live: {why}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn drain_for(src: &mut EbpfSource, d: Duration, events: &mut Vec<StreamEvent>) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        src.next_events(events).expect("ebpf source");
    }
}

/// HTTP/1.0 requests with writev + readv, then sendmsg + recvmsg (each response read to the end).
const VECTORED_CLIENT: &str = r#"
import os, socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
os.writev(s.fileno(), [b"GET /vec-writev HTTP/1.0\r\n", b"Host: x\r\n\r\n"])
while True:
    b1, b2 = bytearray(7), bytearray(4096)
    n = os.readv(s.fileno(), [b1, b2])
    if n == 0:
        break
s.close()
s = socket.create_connection(("127.0.0.1", port))
s.sendmsg([b"GET /vec-sendmsg ", b"HTTP/1.0\r\nHost: x\r\n\r\n"])
while True:
    data, _, _, _ = s.recvmsg(4096)
    if not data:
        break
s.close()
"#;

#[test]
fn traces_http_between_python_and_curl() {
    if !is_root() {
        return skip("not running as root");
    }
    for tool in ["python3", "curl"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    if !std::path::Path::new("/sys/kernel/tracing/events/syscalls").exists()
        && !std::path::Path::new("/sys/kernel/debug/tracing/events/syscalls").exists()
    {
        return skip("tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)");
    }

    let mut src = match EbpfSource::start(EbpfConfig::default()) {
        Ok(s) => s,
        Err(e) => panic!("eBPF source failed to start: {e}"),
    };

    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Kill(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3"),
    );
    let server_pid = server.0.id();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        drain_for(&mut src, Duration::from_millis(50), &mut events);
    }
    let server_comm = std::fs::read_to_string(format!("/proc/{server_pid}/comm"))
        .unwrap()
        .trim()
        .to_owned();

    let requests = [("/Cargo.toml", 200), ("/no-such-file", 404), ("/", 200)];
    let mut curl_pids = Vec::new();
    for (path, _) in requests {
        let mut curl = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{port}{path}"),
            ])
            .spawn()
            .expect("spawn curl");
        curl_pids.push(curl.id());
        loop {
            src.next_events(&mut events).expect("ebpf source");
            if curl.try_wait().unwrap().is_some() {
                break;
            }
        }
    }
    // A client using the vectored calls: writev/readv on one connection, sendmsg/recvmsg on another.
    let mut vec_client = Command::new("python3")
        .args(["-c", VECTORED_CLIENT, &port.to_string()])
        .spawn()
        .expect("spawn python3 client");
    let vec_pid = vec_client.id();
    loop {
        src.next_events(&mut events).expect("ebpf source");
        if let Some(st) = vec_client.try_wait().unwrap() {
            assert!(st.success(), "vectored client failed");
            break;
        }
    }
    drain_for(&mut src, Duration::from_millis(500), &mut events);
    drop(server);
    src.stop();
    while src.next_events(&mut events).expect("ebpf source") {}
    assert_eq!(src.stats().malformed, 0);
    eprintln!(
        "ebpf stats: {:?}; counters: chunks {} flows {}",
        src.stats(),
        src.counters().chunks,
        src.counters().flows_created
    );

    // Only the test's flows (other processes on the host are traced too).
    let ours: Vec<StreamEvent> = events
        .into_iter()
        .filter(|e| match e {
            StreamEvent::Chunk(c) => c.flow.port_dst == port,
            StreamEvent::FlowEnd(f) => f.flow.port_dst == port,
        })
        .collect();
    let mut client_req = 0;
    let mut client_resp = 0;
    let mut server_req = 0;
    for e in &ours {
        let StreamEvent::Chunk(c) = e else { continue };
        assert_eq!(c.flow.ip_src.to_string(), "127.0.0.1");
        assert_eq!(c.flow.ip_dst.to_string(), "127.0.0.1");
        let ChunkOrigin::Syscall {
            pid,
            comm,
            side,
            tls_plaintext,
            ..
        } = &c.origin
        else {
            panic!("packet origin from the eBPF source");
        };
        assert!(!tls_plaintext);
        let text = String::from_utf8_lossy(&c.bytes);
        match side {
            TapSide::ClientProcess if *pid == vec_pid => {
                if c.direction == Direction::ClientToServer {
                    assert!(text.starts_with("GET /vec-"), "{text}");
                }
            }
            TapSide::ClientProcess => {
                assert!(
                    curl_pids.contains(pid),
                    "client chunk from pid {pid} ({comm})"
                );
                assert_eq!(&**comm, "curl");
                match c.direction {
                    Direction::ClientToServer => {
                        client_req += usize::from(text.starts_with("GET "))
                    }
                    Direction::ServerToClient => {
                        client_resp += usize::from(text.starts_with("HTTP/1.0 "))
                    }
                }
            }
            TapSide::ServerProcess => {
                assert_eq!(*pid, server_pid);
                assert_eq!(&**comm, server_comm);
                if c.direction == Direction::ClientToServer && text.starts_with("GET ") {
                    server_req += 1;
                }
            }
            TapSide::Network => panic!("network side from the eBPF source"),
        }
    }
    assert_eq!(client_req, requests.len(), "curl's requests");
    assert_eq!(client_resp, requests.len(), "curl's responses");
    assert_eq!(
        server_req,
        requests.len() + 2,
        "requests read by the server"
    );

    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    let mut logs: Vec<RequestLog> = Vec::new();
    for e in &ours {
        engine.on_event(e, &mut logs);
    }
    engine.finish(&mut logs);
    for side in [TapSide::ClientProcess, TapSide::ServerProcess] {
        let mut got: Vec<(String, i64)> = logs
            .iter()
            .filter(|l| l.tap_side == side && l.process_id != Some(vec_pid))
            .filter(|l| {
                !l.request_resource
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("/vec-")
            })
            .map(|l| {
                assert_eq!(l.l7_protocol.as_str(), "http1", "{l:?}");
                assert_eq!(l.request_type.as_deref(), Some("GET"));
                assert_eq!(
                    (l.ip_src.as_str(), l.ip_dst.as_str(), l.port_dst),
                    ("127.0.0.1", "127.0.0.1", port)
                );
                let pid = l.process_id.expect("process_id");
                match side {
                    TapSide::ClientProcess => {
                        assert!(curl_pids.contains(&pid));
                        assert_eq!(l.process_name.as_deref(), Some("curl"));
                    }
                    _ => {
                        assert_eq!(pid, server_pid);
                        assert_eq!(l.process_name.as_deref(), Some(server_comm.as_str()));
                    }
                }
                assert!(l.thread_id.is_some());
                (
                    l.request_resource.clone().unwrap_or_default(),
                    l.response_code.unwrap_or(0),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, i64)> = requests
            .iter()
            .map(|(p, c)| ((*p).to_owned(), *c))
            .collect();
        want.sort();
        assert_eq!(got, want, "{side:?} logs");
    }
    // The vectored client's logs, seen from the client and from the server.
    for (side, pid) in [
        (TapSide::ClientProcess, vec_pid),
        (TapSide::ServerProcess, server_pid),
    ] {
        let mut got: Vec<(String, i64)> = logs
            .iter()
            .filter(|l| l.tap_side == side && l.process_id == Some(pid))
            .filter(|l| {
                l.request_resource
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("/vec-")
            })
            .map(|l| {
                (
                    l.request_resource.clone().unwrap_or_default(),
                    l.response_code.unwrap_or(0),
                )
            })
            .collect();
        got.sort();
        let want = vec![
            ("/vec-sendmsg".to_owned(), 404),
            ("/vec-writev".to_owned(), 404),
        ];
        assert_eq!(got, want, "vectored calls, {side:?}");
    }
}
