//! `fathom-agent --ebpf` and OpenSSL: nginx serving HTTPS (a self-signed certificate made by the openssl CLI at
//! test time) to curl -k, both linked to the system libssl.so.3. The agent must log the plaintext HTTP exchanges
//! from both processes (methods, paths, statuses, process names and pids, real addresses and ports) and no `tls`
//! log for those sockets: a small page, a 404, a body longer than the capture length, and three requests on one
//! keep-alive connection. Also: a `--ssl-lib` without OpenSSL's symbols is a clear error.
//!
//! Needs the `ebpf` feature, root, nginx, openssl and curl (skips otherwise; fails instead under
//! `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use fathom_model::{RequestLog, ResponseStatus, TapSide};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    assert!(
        std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
        "FATHOM_REQUIRE_LIVE is set but {why}"
    );
    eprintln!("skipping ebpf_ssl_live: {why}");
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

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
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

/// A scratch directory removed on drop.
struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Body of /big.bin: longer than the agent's capture length (4096 bytes per call by default).
const BIG_LEN: usize = 100_000;

/// nginx (HTTPS on 127.0.0.1:`port`) with a certificate made now; returns the running server.
/// With `lib_dir`, nginx runs with `LD_LIBRARY_PATH=lib_dir` (a libssl copy there).
fn start_nginx(dir: &Path, port: u16, lib_dir: Option<&Path>) -> Kill {
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success(), "openssl req failed");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<html>hello over tls</html>\n").unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(www.join(name), format!("keep-alive {name}\n")).unwrap();
    }
    let big: Vec<u8> = (0..BIG_LEN).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(www.join("big.bin"), big).unwrap();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         keepalive_requests 100;\n\
         server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {d}/cert.pem;\n\
         ssl_certificate_key {d}/key.pem;\n  root {d}/www;\n }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let server = Kill(
        Command::new("nginx")
            .envs(lib_dir.map(|d| ("LD_LIBRARY_PATH", d)))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One curl run over HTTPS fetching `paths` on one connection; returns (pid, [(local port, status)]) as curl
/// reports them.
fn curl(port: u16, paths: &[&str]) -> (u32, Vec<(u16, i64)>) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-k",
        "-s",
        "--http1.1",
        "-w",
        "%{local_port} %{http_code}\\n",
    ]);
    for p in paths {
        cmd.args(["-o", "/dev/null"])
            .arg(format!("https://127.0.0.1:{port}{p}"));
    }
    let child = cmd.stdout(Stdio::piped()).spawn().expect("curl");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl");
    assert!(out.status.success(), "curl {paths:?} failed");
    let got = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').expect("local_port http_code");
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    (pid, got)
}

/// `fathom-agent --ebpf --duration 10 --json logs`, started and ready (its OpenSSL hooks attached).
struct Agent {
    child: Child,
    stdout: std::thread::JoinHandle<std::io::Result<String>>,
    stderr: std::thread::JoinHandle<String>,
}

impl Agent {
    fn start() -> Agent {
        let mut agent = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
            .args(["--ebpf", "--duration", "10", "--json", "logs"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fathom-agent");
        // Its stdout and stderr are read by threads; "OpenSSL hooks attached." on stderr means every program is
        // attached (the OpenSSL hooks come last).
        let mut stdout = agent.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stderr = agent.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if line.contains("OpenSSL hooks attached.") {
                    let _ = ready_tx.send(());
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        assert!(
            ready_rx.recv_timeout(Duration::from_secs(8)).is_ok(),
            "the agent did not hook OpenSSL within 8 s"
        );

        Agent {
            child: agent,
            stdout,
            stderr,
        }
    }

    /// Wait for the end of the run; its stdout and stderr (it must succeed).
    fn finish(mut self) -> (String, String) {
        let status = self.child.wait().expect("agent");
        let stdout = self.stdout.join().unwrap().expect("agent stdout");
        let stderr = self.stderr.join().unwrap();
        assert!(status.success(), "{stderr}");
        (stdout, stderr)
    }
}

#[test]
fn agent_logs_https_plaintext_from_openssl() {
    if !is_root() {
        return skip("not running as root");
    }
    for (tool, arg) in [
        ("nginx", "-v"),
        ("openssl", "version"),
        ("curl", "--version"),
    ] {
        if !have(tool, arg) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let dir = TempDir(std::env::temp_dir().join(format!("fathom-ssl-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = free_port();
    let nginx = start_nginx(&dir.0, port, None);
    // One process (`master_process off`): it is the one serving, and killing it leaves nothing behind.
    let nginx_pid = nginx.0.id();

    let agent = Agent::start();

    // (curl pid, local port, path, status) of every request, as curl saw them.
    let mut want: Vec<(u32, u16, String, i64)> = Vec::new();
    for paths in [
        &["/index.html"][..],
        &["/missing"],
        &["/big.bin"],
        &["/a", "/b", "/c"], // one keep-alive connection
    ] {
        let (pid, got) = curl(port, paths);
        assert_eq!(got.len(), paths.len());
        for (p, (lport, code)) in paths.iter().zip(got) {
            want.push((pid, lport, (*p).to_owned(), code));
        }
    }
    let keepalive: BTreeSet<u16> = want[3..].iter().map(|w| w.1).collect();
    assert_eq!(keepalive.len(), 1, "curl did not reuse its connection");
    let codes: Vec<i64> = want.iter().map(|w| w.3).collect();
    assert_eq!(codes, [200, 404, 200, 200, 200, 200], "nginx answers");

    let (stdout, stderr) = agent.finish();
    let logs: Vec<RequestLog> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a RequestLog line"))
        .filter(|l: &RequestLog| l.port_dst == port)
        .collect();
    let tls: Vec<_> = logs
        .iter()
        .filter(|l| l.l7_protocol.as_str() != "http1")
        .collect();
    assert!(tls.is_empty(), "non-HTTP logs on the HTTPS port: {tls:?}");

    let lo = "127.0.0.1";
    for side in [TapSide::ClientProcess, TapSide::ServerProcess] {
        let mine: Vec<&RequestLog> = logs.iter().filter(|l| l.tap_side == side).collect();
        let mut got: Vec<(u16, String, i64)> = mine
            .iter()
            .map(|l| {
                assert_eq!(l.request_type.as_deref(), Some("GET"), "{l:?}");
                assert_eq!((l.ip_src.as_str(), l.ip_dst.as_str()), (lo, lo));
                assert!(l.thread_id.is_some());
                let pid = l.process_id.expect("process_id");
                match side {
                    TapSide::ClientProcess => {
                        assert_eq!(l.process_name.as_deref(), Some("curl"));
                        let curl_pid = want.iter().find(|w| w.1 == l.port_src).map(|w| w.0);
                        assert_eq!(
                            Some(pid),
                            curl_pid,
                            "pid of the curl using port {}",
                            l.port_src
                        );
                    }
                    _ => {
                        assert_eq!(l.process_name.as_deref(), Some("nginx"));
                        assert_eq!(pid, nginx_pid);
                    }
                }
                (
                    l.port_src,
                    l.request_resource.clone().unwrap_or_default(),
                    l.response_code.unwrap_or(0),
                )
            })
            .collect();
        got.sort();
        let mut expected: Vec<(u16, String, i64)> =
            want.iter().map(|w| (w.1, w.2.clone(), w.3)).collect();
        expected.sort();
        assert_eq!(got, expected, "{side:?}: {logs:#?}\n{stderr}");
        // The long body: several plaintext calls, each cut to the capture length (the parser follows the gaps
        // between them to the end of the body and pairs the response).
        let big = mine
            .iter()
            .find(|l| l.request_resource.as_deref() == Some("/big.bin"))
            .unwrap();
        assert!(
            big.captured_response_byte > 2 * 4096 && big.captured_response_byte < BIG_LEN as u64,
            "{side:?}: response bytes {}",
            big.captured_response_byte
        );
        assert_eq!(big.response_status, ResponseStatus::Ok);
    }
    // The agent's end-of-run counters: plaintext seen, ciphertext suppressed in the kernel.
    let done = stderr
        .lines()
        .find(|l| l.contains("OpenSSL tracing done."))
        .unwrap_or_else(|| panic!("no OpenSSL counters: {stderr}"));
    let count = |key: &str| -> u64 {
        let at = done.find(&format!("{key}=")).expect(key) + key.len() + 1;
        done[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(count("plaintext_events") >= 2 * want.len() as u64, "{done}");
    assert!(count("ciphertext_suppressed") > 0, "{done}");
}

#[test]
fn ssl_lib_without_openssl_symbols_is_an_error() {
    if !is_root() {
        return skip("not running as root");
    }
    // libcrypto has no SSL_read.
    let Some(crypto) = [
        "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        "/usr/lib/aarch64-linux-gnu/libcrypto.so.3",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        return skip("libcrypto.so.3 is not installed");
    };
    let out = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args([
            "--ebpf",
            "--duration",
            "1",
            "--json",
            "logs",
            "--ssl-lib",
            crypto,
        ])
        .output()
        .expect("fathom-agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "OpenSSL library {crypto} has no symbol `SSL_read`"
        )),
        "{stderr}"
    );
}

/// A libssl that is not the system one, mapped by a process running before the agent starts: found in
/// /proc/PID/maps and hooked (nginx runs with LD_LIBRARY_PATH on a copy of libssl.so.3, which is another inode).
#[test]
fn agent_hooks_libssl_found_in_proc_maps() {
    if !is_root() {
        return skip("not running as root");
    }
    for (tool, arg) in [
        ("nginx", "-v"),
        ("openssl", "version"),
        ("curl", "--version"),
    ] {
        if !have(tool, arg) {
            return skip(&format!("{tool} is not installed"));
        }
    }
    let Some(system) = [
        "/usr/lib/x86_64-linux-gnu/libssl.so.3",
        "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        return skip("libssl.so.3 is not installed");
    };
    let dir = TempDir(std::env::temp_dir().join(format!("fathom-ssl-maps-{}", std::process::id())));
    let lib_dir = dir.0.join("lib");
    std::fs::create_dir_all(&lib_dir).unwrap();
    std::fs::copy(system, lib_dir.join("libssl.so.3")).unwrap();
    let port = free_port();
    let nginx = start_nginx(&dir.0, port, Some(&lib_dir));
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", nginx.0.id())).unwrap();
    let copy = lib_dir.join("libssl.so.3").display().to_string();
    assert!(maps.contains(&copy), "nginx does not map {copy}");

    let agent = Agent::start();
    let (_, got) = curl(port, &["/index.html"]);
    assert_eq!(got.len(), 1);
    let (stdout, stderr) = agent.finish();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("Hooked OpenSSL.") && l.contains(&copy)),
        "{stderr}"
    );
    let server: Vec<RequestLog> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a RequestLog line"))
        .filter(|l: &RequestLog| l.port_dst == port && l.tap_side == TapSide::ServerProcess)
        .collect();
    assert_eq!(server.len(), 1, "{server:?}\n{stderr}");
    assert_eq!(server[0].l7_protocol.as_str(), "http1");
    assert_eq!(server[0].request_resource.as_deref(), Some("/index.html"));
    assert_eq!(server[0].response_code, Some(200));
    assert_eq!(server[0].process_id, Some(nginx.0.id()));
}
