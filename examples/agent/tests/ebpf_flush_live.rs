//! Live output is not held back: `fathom-agent --ebpf --json logs` with a long `--duration` writes the log of a
//! request (a Python HTTP server answering curl) to its stdout pipe within seconds, while it still runs (stdout
//! is buffered, and flushed about every 100 ms while live). Needs the `ebpf` feature and root (skips otherwise;
//! fails instead under `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "ebpf", target_os = "linux"))]

use fathom_model::RequestLog;
use std::io::BufRead;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip(why: &str) {
    assert!(
        std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
        "FATHOM_REQUIRE_LIVE is set but {why}"
    );
    eprintln!("skipping ebpf_flush_live: {why}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
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
fn live_logs_reach_stdout_while_the_agent_runs() {
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
    let server = Kill(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
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
