//! `fathom-agent --ebpf --duration SECS --json logs` against a Python HTTP server and curl on loopback: HTTP/1
//! logs from both processes. Needs the `ebpf` feature and root (skips otherwise; fails instead under
//! `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use fathom_model::{RequestLog, TapSide};
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
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Kill(
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
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
        assert!(server_comm.starts_with("python"), "{server_comm}");
        let want = vec![
            ("/Cargo.toml".to_owned(), 200, name(&server_comm)),
            ("/missing".to_owned(), 404, name(&server_comm)),
        ];
        assert_eq!(got, want, "{side:?}: {logs:?}");
    }
}
