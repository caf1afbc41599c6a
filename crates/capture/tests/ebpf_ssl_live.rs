//! Live OpenSSL tracing at the chunk level: nginx serving HTTPS (certificate made by the openssl CLI now) to
//! curl -k, traced by `EbpfSource`. curl's flow must hold only plaintext chunks (`tls_plaintext`), the request
//! line and the response status line as curl sent and got them, and the whole length of a body longer than the
//! capture length (captured bytes plus `gap_before`). Needs root, nginx, openssl and curl (skips otherwise;
//! fails instead under `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use fathom_capture::{EbpfConfig, EbpfSource, EventSource};
use fathom_model::{ChunkOrigin, Direction, StreamChunk, StreamEvent, TapSide};
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

struct TempDir(PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const BIG_LEN: usize = 200_000;

fn start_nginx(dir: &Path, port: u16) -> Kill {
    let st = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
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
    std::fs::write(www.join("big.bin"), vec![b'z'; BIG_LEN]).unwrap();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\nhttp {{\n access_log off;\n client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n server {{\n  listen 127.0.0.1:{port} ssl;\n\
         ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n  root {d}/www;\n }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let server = Kill(
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

#[test]
fn curl_flow_is_plaintext_with_full_lengths() {
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
    let dir = TempDir(std::env::temp_dir().join(format!("fathom-ssl-src-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _nginx = start_nginx(&dir.0, port);
    let mut src = EbpfSource::start(EbpfConfig::default()).expect("start eBPF source");
    assert!(
        !src.stats().ssl_libraries.is_empty(),
        "no OpenSSL library hooked"
    );
    let out = Command::new("curl")
        .args([
            "-k",
            "-s",
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{local_port} %{size_download}",
        ])
        .arg(format!("https://127.0.0.1:{port}/big.bin"))
        .output()
        .expect("curl");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (lport, size) = text.split_once(' ').expect("local_port size");
    let (lport, size): (u16, usize) = (lport.parse().unwrap(), size.parse().unwrap());
    assert_eq!(size, BIG_LEN);

    let mut events = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        src.next_events(&mut events).expect("ebpf source");
    }
    src.stop();
    while src.next_events(&mut events).expect("ebpf source") {}

    let curl: Vec<&StreamChunk> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Chunk(c) if c.flow.port_src == lport && c.flow.port_dst == port => Some(c),
            _ => None,
        })
        .filter(|c| {
            matches!(&c.origin, ChunkOrigin::Syscall { side, comm, .. }
                if *side == TapSide::ClientProcess && &**comm == "curl")
        })
        .collect();
    assert!(
        !curl.is_empty(),
        "no chunk of curl's connection (port {lport} -> {port}); {} events, stats {:?}; chunks of that port: {:?}",
        events.len(),
        src.stats(),
        events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Chunk(c) if c.flow.port_src == lport || c.flow.port_dst == lport))
            .collect::<Vec<_>>()
    );
    for c in &curl {
        let ChunkOrigin::Syscall { tls_plaintext, .. } = &c.origin else {
            unreachable!()
        };
        assert!(*tls_plaintext, "a ciphertext chunk on curl's flow: {c:?}");
    }
    let request: Vec<u8> = curl
        .iter()
        .filter(|c| c.direction == Direction::ClientToServer)
        .flat_map(|c| c.bytes.iter().copied())
        .collect();
    assert!(
        request.starts_with(b"GET /big.bin HTTP/1.1\r\n"),
        "{}",
        String::from_utf8_lossy(&request)
    );
    let response: Vec<&&StreamChunk> = curl
        .iter()
        .filter(|c| c.direction == Direction::ServerToClient)
        .collect();
    assert!(response[0].bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));
    // Everything curl read: the captured prefix of each SSL_read plus the bytes beyond it (gap_before of the
    // next chunk, or still owed after the last one: at most one capture length).
    let head_end = response[0]
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the response head")
        + 4;
    let seen: u64 = response
        .iter()
        .map(|c| c.bytes.len() as u64 + c.gap_before)
        .sum();
    let body_seen = seen - head_end as u64;
    let cap = u64::from(EbpfConfig::default().capture_len);
    eprintln!(
        "body bytes accounted {body_seen} of {BIG_LEN}, {} response chunks",
        response.len()
    );
    assert!(
        body_seen <= BIG_LEN as u64 && body_seen + 16_384 >= BIG_LEN as u64,
        "body bytes accounted {body_seen} of {BIG_LEN} (capture length {cap})"
    );
    assert!(
        response.len() > 1 && response.iter().skip(1).any(|c| c.gap_before > 0),
        "the long body should span several calls with gaps"
    );
    let stats = src.stats();
    assert!(stats.ssl_plaintext_events >= 2, "{stats:?}");
    assert!(stats.ssl_ciphertext_suppressed > 0, "{stats:?}");
}
