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

/// A free loopback port and the Python `script` serving it (its only argument), once it printed "ready".
fn ready_python_server(script: &str) -> (u16, Kill) {
    use std::io::BufRead;
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 server");
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the server's ready line");
    assert_eq!(line.trim(), "ready");
    (port, Kill(server))
}

/// The live tests of this file run one at a time: each measures its own process (RSS) and its own traffic.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
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
    let _serial = serial();
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
    // A request from this process, which runs the source: it is excluded in the kernel, so only the server's
    // side of this exchange may show up.
    {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        s.write_all(b"GET /from-the-tracer HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        assert!(resp.starts_with(b"HTTP/1.0 404"));
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

    let me = std::process::id();
    assert!(
        events.iter().all(|e| !matches!(e, StreamEvent::Chunk(c)
            if matches!(&c.origin, ChunkOrigin::Syscall { pid, .. } if *pid == me))),
        "the tracing process traced itself"
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
        requests.len() + 3,
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
            .filter(|l| l.request_resource.as_deref() != Some("/from-the-tracer"))
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

/// A sequential HTTP/1.0 server: one request per connection, "ok" as the body, until killed.
const SHORT_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        chunk = c.recv(4096)
        if not chunk:
            break
        data += chunk
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()
"#;

/// N short connections: connect, send one request, read the whole response, close; the last one is not closed:
/// the process exits with it open (the kernel closes it, no close() call).
const SHORT_CLIENT: &str = r#"
import os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
ok = 0
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /c/%d HTTP/1.0\r\nHost: x\r\n\r\n" % i)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    if i < n - 1:
        s.close()
    ok += data.endswith(b"ok")
print(ok)
sys.stdout.flush()
os._exit(0)
"#;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 10,000 short connections between two Python processes: every request is logged from both processes, or every
/// loss is counted (ring-buffer drops, per-socket sequence gaps); the socket and flow tables drain back to empty
/// on close, and the resident memory of the capturing process stays bounded.
#[test]
fn ten_thousand_short_connections() {
    const N: usize = 10_000;
    let _serial = serial();
    if !is_root() {
        return skip("not running as root");
    }
    if !have("python3") {
        return skip("python3 is not installed");
    }
    let (port, server) = ready_python_server(SHORT_SERVER);
    let server_pid = server.0.id();
    let mut src = EbpfSource::start(EbpfConfig {
        comms: vec!["python3".into()],
        ..EbpfConfig::default()
    })
    .unwrap_or_else(|e| panic!("eBPF source failed to start: {e}"));
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    let rss_before = rss_kib();
    let started = Instant::now();
    let mut client = Command::new("python3")
        .args(["-c", SHORT_CLIENT, &port.to_string(), &N.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 client");
    let client_pid = client.id();
    let mut events = Vec::new();
    let mut logs: Vec<RequestLog> = Vec::new();
    let mut counts = [0usize; 2]; // client-side, server-side logs on our port
    let mut other_pids = 0usize;
    let mut count = |logs: &mut Vec<RequestLog>, counts: &mut [usize; 2]| {
        for l in logs.drain(..) {
            if l.port_dst != port || l.l7_protocol.as_str() != "http1" {
                continue;
            }
            match (l.tap_side, l.process_id) {
                (TapSide::ClientProcess, Some(p)) if p == client_pid => counts[0] += 1,
                (TapSide::ServerProcess, Some(p)) if p == server_pid => counts[1] += 1,
                _ => other_pids += 1,
            }
        }
    };
    let mut peak_sockets = 0;
    let status = loop {
        src.next_events(&mut events).expect("ebpf source");
        for e in events.drain(..) {
            engine.on_event(&e, &mut logs);
        }
        count(&mut logs, &mut counts);
        peak_sockets = peak_sockets.max(src.stats().live_sockets);
        if let Some(st) = client.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "client too slow"
        );
    };
    assert!(status.success());
    let client_elapsed = started.elapsed();
    let mut ok = String::new();
    {
        use std::io::Read;
        client
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut ok)
            .unwrap();
    }
    assert_eq!(ok.trim(), N.to_string(), "the client's own count");
    // Drain what is still in the ring buffer, then look at the live tables before stopping.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_millis(1500) {
        src.next_events(&mut events).expect("ebpf source");
        for e in events.drain(..) {
            engine.on_event(&e, &mut logs);
        }
        count(&mut logs, &mut counts);
    }
    let live = src.stats().clone();
    let rss_after = rss_kib();
    src.stop();
    while src.next_events(&mut events).expect("ebpf source") {
        for e in events.drain(..) {
            engine.on_event(&e, &mut logs);
        }
        count(&mut logs, &mut counts);
    }
    engine.finish(&mut logs);
    count(&mut logs, &mut counts);
    let st = src.stats().clone();
    let secs = client_elapsed.as_secs_f64();
    eprintln!(
        "10k short connections: {secs:.2} s, {} events ({:.0}/s), ring drops {}, lost events {}, reordered {}, \
         logs client {} server {}, live sockets/flows after {}/{} (peak sockets {peak_sockets}), \
         RSS {rss_before} KiB -> {rss_after} KiB",
        st.events,
        st.events as f64 / secs,
        st.ring_drops,
        st.lost_events,
        st.reordered_events,
        counts[0],
        counts[1],
        live.live_sockets,
        live.live_flows,
    );
    assert_eq!(st.malformed, 0);
    assert_eq!(other_pids, 0, "logs on our port from other processes");
    // Every request is logged from both processes, or the loss is counted.
    let lost = (st.ring_drops + st.lost_events) as usize;
    if lost == 0 {
        assert_eq!(
            counts,
            [N, N],
            "no loss counted, so every request is logged"
        );
    } else {
        assert!(
            counts[0] + lost >= N && counts[1] + lost >= N,
            "{counts:?}, lost {lost}"
        );
    }
    // Every socket was closed (the last one by the client's exit): the tables are empty again, and memory did not
    // grow with the connections.
    assert!(
        live.live_sockets == 0 && live.live_flows == 0,
        "live tables after close: {live:?}"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

/// The overhead benchmark's floor: the empty programs load and attach to every tracepoint of [`PROGRAMS`] (their
/// names must match the real ones) and to the OpenSSL functions of the system libssl, then detach.
///
/// [`PROGRAMS`]: fathom_capture::ebpf::PROGRAMS
#[test]
fn noop_probes_attach_where_the_real_programs_do() {
    if !is_root() {
        return skip("not root");
    }
    let _guard = serial();
    let ssl = fathom_capture::ebpf::SslConfig::default();
    let floor = fathom_capture::ebpf::NoopProbes::attach(&ssl, &[std::process::id()])
        .unwrap_or_else(|e| panic!("the empty programs failed to attach: {e}"));
    drop(floor);
    // Unscoped: the uprobes go into every process that maps libssl.
    let again = fathom_capture::ebpf::NoopProbes::attach(&ssl, &[]);
    assert!(again.is_ok(), "{:?}", again.err());
    let raw = fathom_capture::ebpf::NoopProbes::attach_raw();
    assert!(raw.is_ok(), "{:?}", raw.err());
    let copying = fathom_capture::ebpf::NoopProbes::attach_copying(std::process::id(), 4096);
    assert!(copying.is_ok(), "{:?}", copying.err());
    drop(copying); // stops and joins its reader
}

/// A server that peeks at each request (`recv(MSG_PEEK)`) before reading it, then answers; the client sends
/// `N` requests on one keep-alive connection. Prints "ready", then serves one connection.
const PEEK_SERVER: &str = r#"
import socket, sys
l = socket.socket()
l.bind(("127.0.0.1", int(sys.argv[1])))
l.listen(1)
print("ready", flush=True)
c, _ = l.accept()
while True:
    head = c.recv(4096, socket.MSG_PEEK)
    if not head:
        break
    data = c.recv(4096)
    path = data.split(b" ")[1]
    body = b"peeked " + path
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
"#;

const PEEK_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for i in range(int(sys.argv[2])):
    req = b"GET /peek-%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
    s.sendall(req)
    got = b""
    while not got.endswith(b"/peek-%d" % i):
        got += s.recv(4096)
s.close()
"#;

/// Bytes read twice (`MSG_PEEK`, then the real read) are found from the TCP sequence numbers the kernel side gives
/// (at a call's exit: the socket's `copied_seq` minus the bytes read, unchanged by a peek) and dropped, so each
/// request is parsed once; client and server agree on every sequence number.
#[test]
fn msg_peek_bytes_are_seen_once() {
    let _serial = serial();
    if !is_root() {
        return skip("not running as root");
    }
    if !have("python3") {
        return skip("python3 is not installed");
    }
    const N: usize = 5;
    let (port, server) = ready_python_server(PEEK_SERVER);
    let mut src = EbpfSource::start(EbpfConfig {
        comms: vec!["python3".into()],
        ..EbpfConfig::default()
    })
    .unwrap_or_else(|e| panic!("eBPF source failed to start: {e}"));
    let st = Command::new("python3")
        .args(["-c", PEEK_CLIENT, &port.to_string(), &N.to_string()])
        .status()
        .expect("python3 client");
    assert!(st.success());
    let mut events = Vec::new();
    drain_for(&mut src, Duration::from_millis(500), &mut events);
    drop(server);
    src.stop();
    while src.next_events(&mut events).expect("ebpf source") {}
    let stats = src.stats().clone();
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    let mut logs: Vec<RequestLog> = Vec::new();
    for e in &events {
        engine.on_event(e, &mut logs);
    }
    engine.finish(&mut logs);
    let logs: Vec<&RequestLog> = logs.iter().filter(|l| l.port_dst == port).collect();
    // Each request is exactly GET /peek-i HTTP/1.1 + Host: the peeked copy of every one is a duplicate.
    let request_len = |i: usize| format!("GET /peek-{i} HTTP/1.1\r\nHost: x\r\n\r\n").len() as u64;
    let peeked: u64 = (0..N).map(request_len).sum();
    assert_eq!(
        stats.duplicate_bytes, peeked,
        "duplicate bytes; stats {stats:?}"
    );
    for side in [TapSide::ServerProcess, TapSide::ClientProcess] {
        let mut paths: Vec<String> = logs
            .iter()
            .filter(|l| l.tap_side == side)
            .map(|l| {
                assert_eq!(l.response_code, Some(200), "{l:?}");
                l.request_resource.clone().unwrap_or_default()
            })
            .collect();
        paths.sort();
        let want: Vec<String> = (0..N).map(|i| format!("/peek-{i}")).collect();
        assert_eq!(paths, want, "{side:?} logs: {logs:?}");
    }
    for i in 0..N {
        let path = format!("/peek-{i}");
        let of = |side: TapSide| {
            logs.iter()
                .find(|l| {
                    l.tap_side == side && l.request_resource.as_deref() == Some(path.as_str())
                })
                .map(|l| (l.req_tcp_seq, l.resp_tcp_seq))
        };
        let (server, client) = (of(TapSide::ServerProcess), of(TapSide::ClientProcess));
        assert!(
            server.is_some_and(|(q, r)| q.is_some() && r.is_some()),
            "{server:?}"
        );
        assert_eq!(server, client, "sequence numbers of {path}");
    }
}
