//! Helpers for the live tests: temporary directories, process guards that stop what they started (even when a
//! test fails), free ports, and a tcpdump capture on loopback.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when running as root with every program in `programs` present; prints why a test is skipped.
pub fn can_run(test: &str, programs: &[&str]) -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        eprintln!("{test}: skipped (needs root for tcpdump)");
        return false;
    }
    for p in programs {
        if !Path::new(p).exists()
            && Command::new("which")
                .arg(p)
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        {
            eprintln!("{test}: skipped ({p} not installed)");
            return false;
        }
    }
    true
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory under /tmp.
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ (std::ptr::addr_of!(prefix) as usize as u128)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    /// A path inside.
    pub fn join(&self, s: &str) -> PathBuf {
        self.0.join(s)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// A started process, stopped (SIGTERM, then SIGKILL after a grace period) on drop. `pid_file`, when set, names
/// the file holding the real server's pid (for servers started through `runuser`).
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub pid_file: Option<PathBuf>,
    stopped: bool,
}

impl Proc {
    /// Guard `child`.
    pub fn new(name: &str, child: Child) -> Proc {
        Proc {
            child,
            name: name.to_string(),
            pid_file: None,
            stopped: false,
        }
    }

    /// SIGTERM and wait (up to `grace`), then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let real = self
            .pid_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()));
        if let Some(pid) = real {
            signal(pid, "-TERM");
        }
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(pid) = real {
            signal(pid, "-KILL");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts on 127.0.0.1:`port`.
pub fn wait_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Start `tcpdump -i lo -w FILE --immediate-mode -B 65536 -U 'tcp port PORT'` and wait for "listening on".
pub fn tcpdump(file: &Path, port: u16) -> Proc {
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
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    let guard = Proc::new("tcpdump", child);
    rx.recv_timeout(Duration::from_secs(20))
        .expect("tcpdump listening");
    guard
}

/// Run a client command; returns (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("client runs");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
