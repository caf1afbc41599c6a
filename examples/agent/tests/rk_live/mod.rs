//! Support for the live Redis/Kafka tests: free ports, processes killed on drop, tcpdump with a readiness
//! wait, and the agent pipeline on the result.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// True when `bin` is on PATH.
pub fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory for this test process.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fathom-live-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process that is terminated (SIGTERM, then SIGKILL) and reaped when dropped, even on panic.
pub struct Guard {
    pub name: &'static str,
    pub child: Option<Child>,
}

impl Guard {
    pub fn new(name: &'static str, child: Child) -> Guard {
        Guard {
            name,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGTERM and wait up to 5 s (then SIGKILL).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait until something accepts TCP connections on `port`.
pub fn wait_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// Start `tcpdump -i lo -w FILE --immediate-mode -B 65536 -U 'tcp port PORT'` and wait for "listening on".
pub fn tcpdump(file: &Path, port: u16) -> Guard {
    let mut child = Command::new("tcpdump")
        .args(["-i", "lo", "-w"])
        .arg(file)
        .args([
            "--immediate-mode",
            "-B",
            "65536",
            "-U",
            &format!("tcp port {port}"),
        ])
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
    rx.recv_timeout(Duration::from_secs(15))
        .expect("tcpdump says it is listening");
    guard
}

/// Stop tcpdump (it flushes on SIGTERM) after a short settle time.
pub fn stop_capture(mut dump: Guard) {
    std::thread::sleep(Duration::from_millis(300));
    dump.stop();
}
