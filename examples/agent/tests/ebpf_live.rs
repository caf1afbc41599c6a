//! `fathom-agent --ebpf --duration SECS --json logs` against real servers started here on loopback: a Python HTTP
//! server and curl, nginx and curl, redis-server and redis-cli, PostgreSQL and psql, dnsmasq and dig (UDP); the
//! in-kernel filters (`--pid`, `--comm`, `--cgroup`); and a load failure (no privileges) reported clearly. The
//! expected values come from what the clients did and report (curl's `%{local_port}`, redis `CLIENT INFO`,
//! `inet_client_port()` and `pg_backend_pid()`, dig's `-b` source port). Needs the `ebpf` feature and root
//! (skips otherwise; fails instead under `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "ebpf", target_os = "linux"))]

mod live;

use fathom_model::{RequestLog, TapSide};
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

/// `python3 -m http.server` on a free loopback port (serving this crate's directory), once it accepts connections.
fn python_http_server() -> (u16, Kill) {
    let port = live::free_port();
    let server = Kill(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn python3 -m http.server"),
    );
    assert!(
        live::wait_port(port, Duration::from_secs(20)),
        "python http.server did not start"
    );
    (port, server)
}

#[test]
fn agent_logs_http_from_ebpf() {
    if !is_root() {
        return skip("not running as root");
    }
    for tool in ["python3", "curl"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let (port, _server) = python_http_server();
    let agent = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args(["--ebpf", "--duration", "4", "--json", "logs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fathom-agent");
    // Give the agent time to attach its programs.
    std::thread::sleep(Duration::from_millis(1500));
    for path in ["/Cargo.toml", "/missing"] {
        let st = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                &format!("http://127.0.0.1:{port}{path}"),
            ])
            .status()
            .expect("curl");
        assert!(st.success());
    }
    let out = agent.wait_with_output().expect("agent");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs: Vec<RequestLog> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a RequestLog line"))
        .filter(|l: &RequestLog| l.port_dst == port)
        .collect();
    for side in [TapSide::ClientProcess, TapSide::ServerProcess] {
        let mut got: Vec<(String, i64, String)> = logs
            .iter()
            .filter(|l| l.tap_side == side)
            .map(|l| {
                assert_eq!(l.l7_protocol.as_str(), "http1");
                assert_eq!(l.request_type.as_deref(), Some("GET"));
                assert!(l.process_id.is_some() && l.thread_id.is_some());
                (
                    l.request_resource.clone().unwrap_or_default(),
                    l.response_code.unwrap_or(0),
                    l.process_name.clone().unwrap_or_default(),
                )
            })
            .collect();
        got.sort();
        let name = |p: &str| match side {
            TapSide::ClientProcess => "curl".to_owned(),
            _ => p.to_owned(),
        };
        let server_comm = logs
            .iter()
            .find(|l| l.tap_side == TapSide::ServerProcess)
            .and_then(|l| l.process_name.clone())
            .unwrap_or_default();
        assert!(
            server_comm.starts_with("python"),
            "{server_comm}: {logs:?}\nagent stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = vec![
            ("/Cargo.toml".to_owned(), 200, name(&server_comm)),
            ("/missing".to_owned(), 404, name(&server_comm)),
        ];
        assert_eq!(got, want, "{side:?}: {logs:?}");
    }
}

/// A running `fathom-agent --ebpf --json logs`, started and attached (its "eBPF capture started." line seen).
struct Agent {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(extra: &[&str], secs: u64) -> Agent {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
            .args(["--ebpf", "--duration", &secs.to_string(), "--json", "logs"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fathom-agent");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr");
        let text = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("eBPF capture started") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                let mut t = text.lock().unwrap();
                t.push_str(&line);
                t.push('\n');
            }
        });
        let agent = Agent {
            child,
            stderr,
            reader: Some(reader),
        };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let text = agent.stderr.lock().unwrap().clone();
            panic!("the agent did not start its eBPF capture: {text}");
        }
        agent
    }

    /// Wait for the end of `--duration`; the logs and stderr.
    fn finish(mut self) -> (Vec<RequestLog>, String) {
        use std::io::Read;
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("agent stdout");
        let status = self.child.wait().expect("agent");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let err = self.stderr.lock().unwrap().clone();
        assert!(status.success(), "agent failed: {err}");
        assert!(!err.contains("panicked"), "{err}");
        let logs = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a RequestLog line"))
            .collect();
        (logs, err)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this environment can run the live eBPF tests (root and the programs); skips (or fails under
/// `FATHOM_REQUIRE_LIVE=1`) otherwise.
fn live_ok(test: &str, programs: &[&str]) -> bool {
    if !is_root() {
        skip("not running as root");
        return false;
    }
    live::can_run(test, programs)
}

/// The logs of one connection, seen from each side: `(client-side, server-side)`.
fn by_side(logs: &[RequestLog]) -> (Vec<&RequestLog>, Vec<&RequestLog>) {
    (
        logs.iter()
            .filter(|l| l.tap_side == TapSide::ClientProcess)
            .collect(),
        logs.iter()
            .filter(|l| l.tap_side == TapSide::ServerProcess)
            .collect(),
    )
}

fn assert_addrs(l: &RequestLog, client_port: u16, server_port: u16) {
    assert_eq!(
        (l.ip_src.as_str(), l.port_src, l.ip_dst.as_str(), l.port_dst),
        ("127.0.0.1", client_port, "127.0.0.1", server_port),
        "{l:?}"
    );
}

const NGINX_CONF: &str = r#"
daemon off;
master_process off;
error_log DIR/error.log;
pid DIR/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    sendfile off;
    client_body_temp_path DIR/tmp;
    proxy_temp_path DIR/tmp;
    fastcgi_temp_path DIR/tmp;
    uwsgi_temp_path DIR/tmp;
    scgi_temp_path DIR/tmp;
    server {
        listen 127.0.0.1:PORT;
        root DIR/www;
        location = /hello { return 200 "hello\n"; }
        location = /teapot { return 418; }
    }
}
"#;

/// nginx (one process: `master_process off`) serving curl: method, path, status, pids, names and the ports of
/// each real connection, from both processes.
#[test]
fn agent_logs_nginx_and_curl() {
    if !live_ok("ebpf nginx", &["nginx", "curl"]) {
        return;
    }
    let dir = live::TempDir::new("fathom-ebpf-nginx");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("www/index.html"), "<h1>fathom</h1>\n").unwrap();
    let port = live::free_port();
    let conf = NGINX_CONF
        .replace("DIR", &dir.0.to_string_lossy())
        .replace("PORT", &port.to_string());
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let nginx = live::Proc::new(
        "nginx",
        Command::new("nginx")
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx"),
    );
    let nginx_pid = nginx.child.id();
    assert!(
        live::wait_port(port, Duration::from_secs(20)),
        "nginx listens"
    );
    let agent = Agent::start(&[], 8);
    // (path, status curl reports, curl's pid, curl's local port)
    let mut done = Vec::new();
    for path in ["/index.html", "/hello", "/missing", "/teapot"] {
        let child = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{local_port}"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl");
        let pid = child.id();
        let out = child.wait_with_output().expect("curl");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = text.split_whitespace();
        let code: i64 = it.next().unwrap().parse().unwrap();
        let lport: u16 = it.next().unwrap().parse().unwrap();
        done.push((path, code, pid, lport));
    }
    let (logs, _) = agent.finish();
    drop(nginx);
    let logs: Vec<RequestLog> = logs.into_iter().filter(|l| l.port_dst == port).collect();
    let (client, server) = by_side(&logs);
    assert_eq!(client.len(), done.len(), "client logs: {client:?}");
    assert_eq!(server.len(), done.len(), "server logs: {server:?}");
    for (path, code, pid, lport) in &done {
        for (side, logs) in [("client", &client), ("server", &server)] {
            let l = logs
                .iter()
                .find(|l| l.request_resource.as_deref() == Some(path))
                .unwrap_or_else(|| panic!("{side} log of {path}: {logs:?}"));
            assert_eq!(l.l7_protocol.as_str(), "http1");
            assert_eq!(l.request_type.as_deref(), Some("GET"));
            assert_eq!(l.response_code, Some(*code), "{l:?}");
            assert_eq!(l.l4_protocol.as_str(), "tcp");
            assert_addrs(l, *lport, port);
            if side == "client" {
                assert_eq!(l.process_id, Some(*pid));
                assert_eq!(l.process_name.as_deref(), Some("curl"));
            } else {
                assert_eq!(l.process_id, Some(nginx_pid));
                assert_eq!(l.process_name.as_deref(), Some("nginx"));
                // nginx read the request, then wrote the response on the same socket: the reply has no
                // syscall trace id of its own, the request has one.
                assert!(l.syscall_trace_id_request.is_some(), "{l:?}");
            }
            assert!(l.req_tcp_seq.is_some() && l.resp_tcp_seq.is_some(), "{l:?}");
        }
        // Both processes saw the same bytes of the same connection: the TCP sequence numbers agree.
        let c = client
            .iter()
            .find(|l| l.request_resource.as_deref() == Some(path))
            .unwrap();
        let s = server
            .iter()
            .find(|l| l.request_resource.as_deref() == Some(path))
            .unwrap();
        assert_eq!(c.req_tcp_seq, s.req_tcp_seq, "request seq {path}");
        assert_eq!(c.resp_tcp_seq, s.resp_tcp_seq, "response seq {path}");
    }
}

/// redis-server and redis-cli: commands, keys, error replies, pids, names, ports (from `CLIENT INFO`).
#[test]
fn agent_logs_redis() {
    if !live_ok("ebpf redis", &["redis-server", "redis-cli"]) {
        return;
    }
    let dir = live::TempDir::new("fathom-ebpf-redis");
    let port = live::free_port();
    let server = live::Proc::new(
        "redis-server",
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let server_pid = server.child.id();
    assert!(
        live::wait_port(port, Duration::from_secs(20)),
        "redis listens"
    );
    let agent = Agent::start(&["--comm", "redis-server", "--comm", "redis-cli"], 8);
    // One redis-cli per command (one connection each): (command line, pid, expected error prefix).
    let commands: [(&[&str], Option<&str>); 5] = [
        (&["CLIENT", "INFO"], None),
        (&["SET", "fathom:k", "hello"], None),
        (&["GET", "fathom:k"], None),
        (&["INCR", "fathom:k"], Some("ERR")),
        (&["DEL", "fathom:k"], None),
    ];
    let mut done = Vec::new();
    let mut info_port = 0u16;
    for (args, err) in commands {
        let child = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli");
        let pid = child.id();
        let out = child.wait_with_output().expect("redis-cli");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if args[0] == "CLIENT" {
            // "id=.. addr=127.0.0.1:PORT laddr=...": the port of this connection, as the server saw it.
            info_port = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr=127.0.0.1:"))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("CLIENT INFO: {text}"));
        }
        done.push((args, pid, err));
    }
    let (logs, _) = agent.finish();
    drop(server);
    let logs: Vec<RequestLog> = logs.into_iter().filter(|l| l.port_dst == port).collect();
    let (client, server) = by_side(&logs);
    assert_eq!(client.len(), done.len(), "client: {client:?}");
    assert_eq!(server.len(), done.len(), "server: {server:?}");
    for (args, pid, err) in &done {
        let find = |logs: &[&RequestLog]| -> RequestLog {
            let l = logs
                .iter()
                .find(|l| l.request_type.as_deref() == Some(args[0]))
                .unwrap_or_else(|| panic!("no log of {args:?}: {logs:?}"));
            (*l).clone()
        };
        let c = find(&client);
        let s = find(&server);
        for l in [&c, &s] {
            assert_eq!(l.l7_protocol.as_str(), "redis");
            assert_eq!(l.l4_protocol.as_str(), "tcp");
            if args.len() > 1 && args[1].contains(':') {
                assert!(l
                    .request_resource
                    .as_deref()
                    .unwrap_or("")
                    .contains(args[1]));
            }
            match err {
                Some(prefix) => {
                    assert_eq!(l.response_status.as_str(), "server_error", "{l:?}");
                    assert!(l
                        .response_exception
                        .as_deref()
                        .unwrap_or("")
                        .starts_with(prefix));
                }
                None => assert_eq!(l.response_status.as_str(), "ok", "{l:?}"),
            }
        }
        assert_eq!(c.process_id, Some(*pid));
        assert_eq!(c.process_name.as_deref(), Some("redis-cli"));
        assert_eq!(s.process_id, Some(server_pid));
        assert_eq!(s.process_name.as_deref(), Some("redis-server"));
        // The client's local port (its socket) and the server's peer port (its socket) are the same connection.
        assert_addrs(&s, c.port_src, port);
        assert_addrs(&c, c.port_src, port);
        if args[0] == "CLIENT" {
            assert_eq!(c.port_src, info_port, "CLIENT INFO's addr");
        }
    }
}

/// PostgreSQL (initdb/postgres as user `postgres`) and psql: queries, an error with its SQLSTATE, the backend's
/// pid (`pg_backend_pid()`) and the client's port (`inet_client_port()`).
#[test]
fn agent_logs_postgresql() {
    const BIN: &str = "/usr/lib/postgresql/15/bin";
    let initdb = format!("{BIN}/initdb");
    let postgres = format!("{BIN}/postgres");
    if !live_ok("ebpf postgresql", &[&initdb, &postgres, "psql", "runuser"]) {
        return;
    }
    let dir = live::TempDir::new("fathom-ebpf-pg");
    let (ok, out) = live::run(Command::new("chown").arg("postgres").arg(&dir.0));
    assert!(ok, "{out}");
    let data = dir.join("data");
    let (ok, out) = live::run(
        Command::new("runuser")
            .args([
                "-u", "postgres", "--", &initdb, "-A", "trust", "-U", "postgres", "-D",
            ])
            .arg(&data),
    );
    assert!(ok, "initdb: {out}");
    let port = live::free_port();
    let child = Command::new("runuser")
        .args(["-u", "postgres", "--", &postgres, "-D"])
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir.0)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "ssl=off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres");
    let mut server = live::Proc::new("postgres", child);
    server.pid_file = Some(data.join("postmaster.pid"));
    assert!(
        live::wait_port(port, Duration::from_secs(60)),
        "postgres listens"
    );
    let agent = Agent::start(&["--comm", "postgres", "--comm", "psql"], 10);
    let q1 = "SELECT inet_client_port(), pg_backend_pid()";
    let q2 = "SELECT 1/0";
    let q3 = "SELECT count(*) FROM pg_class WHERE relname = 'pg_class'";
    let psql = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-X", "-A", "-t", "-F", " ", "-c", q1, "-c", q2, "-c", q3])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql");
    let psql_pid = psql.id();
    let out = psql.wait_with_output().expect("psql");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("division by zero"), "{err}");
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let cport: u16 = first.next().and_then(|p| p.parse().ok()).expect("port");
    let backend: u32 = first.next().and_then(|p| p.parse().ok()).expect("pid");
    let (logs, _) = agent.finish();
    drop(server);
    let logs: Vec<RequestLog> = logs.into_iter().filter(|l| l.port_dst == port).collect();
    let (client, server) = by_side(&logs);
    for (side, logs, pid, name) in [
        ("client", &client, psql_pid, "psql"),
        ("server", &server, backend, "postgres"),
    ] {
        let got: Vec<(&str, &str)> = logs
            .iter()
            .map(|l| {
                (
                    l.request_type.as_deref().unwrap_or(""),
                    l.request_resource.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("Query", q1), ("Query", q2), ("Query", q3)],
            "{side}: {logs:?}"
        );
        for l in logs {
            assert_eq!(l.l7_protocol.as_str(), "postgresql");
            assert_eq!(l.process_id, Some(pid), "{side} {l:?}");
            assert_eq!(l.process_name.as_deref(), Some(name));
            assert_addrs(l, cport, port);
        }
        assert_eq!(logs[1].response_status.as_str(), "client_error");
        assert!(logs[1]
            .response_exception
            .as_deref()
            .unwrap_or("")
            .starts_with("22012"));
        assert_eq!(logs[0].response_status.as_str(), "ok");
    }
}

/// dnsmasq answering dig over UDP: the query name, type, answer, rcode and both ports (dig's source port is
/// fixed with `-b`), from both processes.
#[test]
fn agent_logs_dns_over_udp() {
    if !live_ok("ebpf dns", &["dnsmasq", "dig"]) {
        return;
    }
    let port = live::free_port();
    let dig_port = live::free_port();
    let server = live::Proc::new(
        "dnsmasq",
        Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--address=/fathom.test/10.1.2.3",
                "--user=root",
                "--pid-file=",
            ])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    );
    let server_pid = server.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let agent = Agent::start(&["--comm", "dnsmasq", "--comm", "dig"], 6);
    let mut digs = Vec::new();
    for (name, qtype) in [("www.fathom.test", "A"), ("nothing.invalid", "A")] {
        let child = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string()])
            .args(["-b", &format!("127.0.0.1#{dig_port}")])
            .args(["+notcp", "+tries=1", "+time=2", name, qtype])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dig");
        let pid = child.id();
        let out = child.wait_with_output().expect("dig");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let status = text
            .split("status: ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap_or_else(|| panic!("dig: {text}"))
            .to_owned();
        digs.push((name, qtype, pid, status));
    }
    let (logs, _) = agent.finish();
    drop(server);
    let logs: Vec<RequestLog> = logs.into_iter().filter(|l| l.port_dst == port).collect();
    let (client, server) = by_side(&logs);
    for (side, logs) in [("client", &client), ("server", &server)] {
        assert_eq!(logs.len(), digs.len(), "{side}: {logs:?}");
        for (l, (name, qtype, pid, status)) in logs.iter().zip(&digs) {
            assert_eq!(l.l7_protocol.as_str(), "dns");
            assert_eq!(l.l4_protocol.as_str(), "udp");
            assert_eq!(l.request_type.as_deref(), Some(*qtype));
            assert_eq!(l.request_domain.as_deref(), Some(*name));
            let rcode = match status.as_str() {
                "NOERROR" => 0,
                "NXDOMAIN" => 3,
                "REFUSED" => 5,
                other => panic!("dig status {other}"),
            };
            assert_eq!(l.response_code, Some(rcode), "{l:?}");
            assert_addrs(l, dig_port, port);
            if side == "client" {
                assert_eq!(l.process_id, Some(*pid));
                assert_eq!(l.process_name.as_deref(), Some("dig"));
            } else {
                assert_eq!(l.process_id, Some(server_pid));
                assert_eq!(l.process_name.as_deref(), Some("dnsmasq"));
            }
        }
    }
    assert!(client[0]
        .response_result
        .as_deref()
        .unwrap_or("")
        .contains("10.1.2.3"));
}

/// A one-thread relay: accept a client (socket A), read its request, send it upstream (socket B), read the
/// response, send it back to A.
const RELAY: &str = r#"
import socket, sys
port, up = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print("ready", flush=True)
while True:
    a, _ = s.accept()
    req = b""
    while not req.endswith(b"\r\n\r\n"):
        chunk = a.recv(4096)
        if not chunk:
            break
        req += chunk
    b = socket.create_connection(("127.0.0.1", up))
    b.sendall(req)
    resp = b""
    while True:
        chunk = b.recv(65536)
        if not chunk:
            break
        resp += chunk
    b.close()
    a.sendall(resp)
    a.close()
"#;

/// Thread causality: in the relay's thread, the ingress on the client's socket and the egress on the upstream
/// socket share one syscall trace id, and so do the upstream response and the reply to the client; each
/// request/response of the two hops carries them in `syscall_trace_id_request/response`.
#[test]
fn agent_links_a_relay_by_syscall_trace_id() {
    use std::io::BufRead;
    if !live_ok("ebpf relay", &["python3", "curl"]) {
        return;
    }
    let (up_port, _upstream) = python_http_server();
    let port = live::free_port();
    let mut relay = Command::new("python3")
        .args(["-c", RELAY, &port.to_string(), &up_port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 relay");
    let mut line = String::new();
    std::io::BufReader::new(relay.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let relay = Kill(relay);
    let relay_pid = relay.0.id();
    // One pid (checked inline in the kernel's config), then nine (past the 8 inline ones: the kernel's hash map);
    // the other eight pids (4,000,000 and up) are far above any pid in use here.
    for extra in [0u32, 8] {
        let mut args = vec!["--pid".to_owned(), relay_pid.to_string()];
        for i in 0..extra {
            args.extend(["--pid".to_owned(), (4_000_000 + i).to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        relay_traced_alone(&args, relay_pid, port, up_port);
    }
}

/// The agent with `args` (`--pid` filters naming the relay) while curl fetches through the relay: only the relay is
/// traced, and its inbound and outbound requests share their syscall trace ids.
fn relay_traced_alone(args: &[&str], relay_pid: u32, port: u16, up_port: u16) {
    let agent = Agent::start(args, 6);
    for path in ["/Cargo.toml", "/nothing-here"] {
        let st = Command::new("curl")
            .args(["-s", "-o", "/dev/null"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .status()
            .expect("curl");
        assert!(st.success());
    }
    let (logs, _) = agent.finish();
    // --pid: only the relay is traced.
    assert!(
        logs.iter().all(|l| l.process_id == Some(relay_pid)),
        "{logs:?}"
    );
    for path in ["/Cargo.toml", "/nothing-here"] {
        let find = |side: TapSide, dst: u16| {
            logs.iter()
                .find(|l| {
                    l.tap_side == side
                        && l.port_dst == dst
                        && l.request_resource.as_deref() == Some(path)
                })
                .unwrap_or_else(|| panic!("{side:?} log of {path} to {dst}: {logs:?}"))
        };
        let a = find(TapSide::ServerProcess, port);
        let b = find(TapSide::ClientProcess, up_port);
        assert!(a.syscall_trace_id_request.is_some(), "{a:?}");
        assert!(a.syscall_trace_id_response.is_some(), "{a:?}");
        assert_eq!(a.syscall_trace_id_request, b.syscall_trace_id_request);
        assert_eq!(a.syscall_trace_id_response, b.syscall_trace_id_response);
        assert_ne!(a.syscall_trace_id_request, a.syscall_trace_id_response);
        assert_eq!(a.response_code, b.response_code);
    }
}

/// Without privileges the agent cannot load its programs: a clear error, exit status 1, no panic. The agent runs
/// as `nobody` (setpriv drops the ids and capabilities of the forked child).
#[test]
fn agent_without_privileges_fails_clearly() {
    if !live_ok("ebpf no privileges", &["setpriv"]) {
        return;
    }
    // A copy anyone may execute (the build directory may not be readable by nobody).
    let dir = live::TempDir::new("fathom-ebpf-nopriv");
    let bin = dir.join("fathom-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_fathom-agent"), &bin).unwrap();
    for p in [&dir.0, &bin] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(&bin)
        .args(["--ebpf", "--duration", "1", "--json", "logs"])
        .output()
        .expect("setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("cannot start eBPF capture"), "{err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("Operation not permitted"),
        "{err}"
    );
}

/// A bad filter is refused before anything is loaded, with a message naming it.
#[test]
fn agent_refuses_bad_filters() {
    for (args, want) in [
        (
            vec!["--comm", "a-name-longer-than-15-bytes"],
            "invalid eBPF filter: comm",
        ),
        (vec!["--cgroup", "/proc"], "not a cgroup v2 directory"),
        (vec!["--pid", "0"], "invalid eBPF filter: pid"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
            .args(["--ebpf", "--duration", "1", "--json", "logs"])
            .args(&args)
            .output()
            .expect("agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// The cgroup v2 mount point (from /proc/self/mounts).
fn cgroup2_mount() -> Option<std::path::PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
    })
}

/// A cgroup removed on drop (after its processes are gone).
struct Cgroup(Vec<std::path::PathBuf>);
impl Drop for Cgroup {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// `--cgroup PATH`: only processes in PATH or below it are traced (in the kernel): a curl started in a child
/// cgroup of PATH is logged, a curl outside it and the server (outside) are not.
#[test]
fn agent_filters_by_cgroup() {
    if !live_ok("ebpf cgroup", &["python3", "curl", "sh"]) {
        return;
    }
    let Some(root) = cgroup2_mount() else {
        return skip("no cgroup v2 hierarchy is mounted");
    };
    let outer = root.join(format!("fathom-ebpf-test-{}", std::process::id()));
    let inner = outer.join("inner");
    std::fs::create_dir_all(&inner).expect("create cgroup");
    let _cg = Cgroup(vec![outer.clone(), inner.clone()]);
    let (port, _server) = python_http_server();
    let agent = Agent::start(&["--cgroup", outer.to_str().unwrap()], 5);
    let inside = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec curl -s -o /dev/null http://127.0.0.1:{port}/inside",
            inner.display()
        ))
        .spawn()
        .expect("sh");
    let inside_pid = inside.id();
    assert!(inside.wait_with_output().unwrap().status.success());
    let st = Command::new("curl")
        .args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/outside"))
        .status()
        .unwrap();
    assert!(st.success());
    let (logs, _) = agent.finish();
    let ours: Vec<&RequestLog> = logs.iter().filter(|l| l.port_dst == port).collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let l = ours[0];
    assert_eq!(l.request_resource.as_deref(), Some("/inside"));
    assert_eq!(l.tap_side, TapSide::ClientProcess);
    // `exec` keeps the pid of the shell that joined the cgroup.
    assert_eq!(l.process_id, Some(inside_pid));
    assert_eq!(l.process_name.as_deref(), Some("curl"));
    assert_eq!(l.response_code, Some(404));
}

/// With no tracefs mounted (a private mount namespace where it was unmounted; the host keeps its own), the agent
/// mounts it, says so, and captures.
#[test]
fn agent_mounts_tracefs_when_absent() {
    if !live_ok("ebpf tracefs", &["unshare", "sh"]) {
        return;
    }
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; \
             if [ -d /sys/kernel/tracing/events/syscalls ]; then echo still-mounted; exit 3; fi; \
             exec \"$0\" --ebpf --duration 1 --json logs",
        )
        .arg(env!("CARGO_BIN_EXE_fathom-agent"))
        .output()
        .expect("unshare");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("tracefs was not mounted: mounted it at /sys/kernel/tracing"),
        "{err}"
    );
    // The host's tracefs is untouched.
    assert!(
        std::path::Path::new("/sys/kernel/tracing/events/syscalls").is_dir()
            || std::path::Path::new("/sys/kernel/debug/tracing/events/syscalls").is_dir()
    );
}

/// The C library's resolver (`getaddrinfo`, which sends its A and AAAA queries with one `sendmmsg`), in a private
/// network and mount namespace whose /etc/resolv.conf names a dnsmasq on 127.0.0.1:53: both queries are logged
/// from the resolving process and from dnsmasq.
#[test]
fn agent_logs_the_resolver() {
    if !live_ok(
        "ebpf resolver",
        &["unshare", "ip", "dnsmasq", "python3", "sh"],
    ) {
        return;
    }
    let dir = live::TempDir::new("fathom-ebpf-resolver");
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n",
    )
    .unwrap();
    let script = format!(
        "ip link set lo up && mount --bind {resolv} /etc/resolv.conf && \
         dnsmasq --no-daemon --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.1 --port=53 \
           --address=/fathom.test/10.9.8.7 --address=/fathom.test/fd00::7 --user=root --pid-file= \
           </dev/null >/dev/null 2>&1 & DNSMASQ=$!; \
         sleep 1; python3 -c 'import os, socket; print(os.getpid()); \
           print(sorted(set(a[4][0] for a in socket.getaddrinfo(\"www.fathom.test\", 80, proto=socket.IPPROTO_TCP))))'; \
         kill $DNSMASQ",
        resolv = resolv.display()
    );
    let agent = Agent::start(&["--comm", "dnsmasq", "--comm", "python3"], 6);
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let pid: u32 = lines.next().and_then(|l| l.parse().ok()).expect("pid");
    let addrs = lines.next().unwrap_or("");
    assert!(
        addrs.contains("10.9.8.7") && addrs.contains("fd00::7"),
        "{addrs}"
    );
    let (logs, _) = agent.finish();
    let dns: Vec<&RequestLog> = logs.iter().filter(|l| l.port_dst == 53).collect();
    let dns_owned: Vec<RequestLog> = dns.iter().map(|l| (*l).clone()).collect();
    let (client, server) = by_side(&dns_owned);
    let mut types: Vec<String> = client
        .iter()
        .filter(|l| l.process_id == Some(pid))
        .map(|l| {
            assert_eq!(l.l7_protocol.as_str(), "dns");
            assert_eq!(l.l4_protocol.as_str(), "udp");
            assert_eq!(l.request_domain.as_deref(), Some("www.fathom.test"));
            assert_eq!(l.process_name.as_deref(), Some("python3"));
            assert_eq!(l.response_code, Some(0), "{l:?}");
            l.request_type.clone().unwrap_or_default()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["A", "AAAA"], "{dns:?}");
    let mut types: Vec<String> = server
        .iter()
        .map(|l| {
            assert_eq!(l.process_name.as_deref(), Some("dnsmasq"));
            l.request_type.clone().unwrap_or_default()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["A", "AAAA"], "{dns:?}");
}

/// Live output is not held back: `fathom-agent --ebpf --json logs` with a long `--duration` writes the log of a
/// request (a Python HTTP server answering curl) to its stdout pipe within seconds, while it still runs (stdout is
/// buffered, and flushed about every 100 ms while live).
#[test]
fn live_logs_reach_stdout_while_the_agent_runs() {
    if !is_root() {
        return skip("not running as root");
    }
    for tool in ["python3", "curl"] {
        if !have(tool) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let (port, server) = python_http_server();
    let mut agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
            .args(["--ebpf", "--duration", "60", "--json", "logs", "--pid"])
            .arg(server.0.id().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fathom-agent"),
    );
    let stdout = agent.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give the agent time to attach its programs.
    std::thread::sleep(Duration::from_millis(2000));
    let st = Command::new("curl")
        .args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/Cargo.toml"))
        .status()
        .expect("curl");
    assert!(st.success());
    let asked = Instant::now();
    let log = loop {
        let left = Duration::from_secs(5).saturating_sub(asked.elapsed());
        let line = rx
            .recv_timeout(left)
            .expect("no log on stdout within 5 s of the request while the agent runs");
        let log: RequestLog = serde_json::from_str(&line).expect("a RequestLog line");
        if log.port_dst == port {
            break log;
        }
    };
    assert_eq!(log.request_resource.as_deref(), Some("/Cargo.toml"));
    assert_eq!(log.response_code, Some(200));
    assert!(
        agent.0.try_wait().expect("agent status").is_none(),
        "the agent stopped before its duration"
    );
}
