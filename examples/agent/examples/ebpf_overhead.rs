//! eBPF overhead benchmark: wrk against nginx on loopback, untraced and traced by `fathom-agent --ebpf --json
//! logs` (the agent consumes every event into logs written to /dev/null), interleaved in pairs (ABBA order, so
//! a drift of the machine's load hits both sides alike). Prints per run the requests/s, and per mode the
//! traced/untraced ratio of requests/s, the agent's CPU time per 10k requests (utime+stime from
//! /proc/PID/stat over the wrk run), nginx's own CPU time per request traced/untraced (it includes the eBPF
//! programs run in nginx's context and is less sensitive than the request rate to other load on the machine)
//! and the ring-buffer drops the agent reported.
//!
//! Not a test: run it by hand, as root, on a machine as quiet as you can find:
//! ```text
//! cargo build --release -p fathom-agent --no-default-features --features ebpf --bin fathom-agent --example ebpf_overhead
//! target/release/examples/ebpf_overhead [--pairs 3] [--secs 10] [--connections 16] [--https] [--http] [--no-ssl]
//!     [--all-processes] [--floor] [--floor-raw] [--floor-copy]
//! ```
//! `--floor` replaces the agent by empty eBPF programs on the same hooks (`fathom_capture::ebpf::NoopProbes`: the
//! syscall tracepoints, and the OpenSSL uprobes in nginx): the cost of hooking at all, which no tracer built on
//! them can go below; `--floor-raw` attaches empty programs to the raw tracepoints `sys_enter`/`sys_exit` instead
//! (the other syscall hook on a kernel without kprobes); `--floor-copy` attaches programs that only copy each
//! nginx call's bytes (up to 4096) into a ring buffer that a thread drains without parsing: the least any payload
//! capture must do in the traced process.
//! The agent traces only the benchmark's nginx (`--pid`, filtered in the kernel: one log per request; the OpenSSL
//! uprobes go into nginx alone) unless `--all-processes`. `--no-ssl` passes `--no-ssl` to the agent (syscall
//! tracing only, to separate the OpenSSL uprobes' cost).
//! nginx runs as one process (`master_process off`) pinned to CPU 0 and wrk one thread pinned to CPU 1 (`--cpus 0,1` to change; `taskset`
//! from util-linux); the agent is not pinned, so on a 2-core machine its CPU time is taken from the other two,
//! which is the overhead a user would see.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Opts {
    pairs: usize,
    secs: u64,
    connections: u32,
    modes: Vec<&'static str>,
    cpus: (String, String),
    agent: PathBuf,
    /// Extra agent arguments (`--no-ssl`: syscall tracing only).
    agent_args: Vec<String>,
    /// Trace the benchmark's nginx only (`--pid`, the kernel filter): other work on the machine (other tests'
    /// servers and clients on loopback) would otherwise add its events to the agent's load.
    trace_nginx_only: bool,
    /// The "traced" runs attach empty programs instead of running the agent.
    floor: bool,
    /// ... on the raw tracepoints `sys_enter`/`sys_exit` instead of the agent's hooks.
    floor_raw: bool,
    /// ... that copy each nginx call's bytes into a ring drained without parsing (`NoopProbes::attach_copying`).
    floor_copy: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: ebpf_overhead [--pairs N] [--secs S] [--connections C] [--http] [--https] [--cpus NGINX,WRK] \
         [--agent PATH] [--no-ssl] [--all-processes] [--floor] [--floor-raw] [--floor-copy]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/ebpf_overhead -> target/<profile>/fathom-agent
    let agent = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("fathom-agent"))
        .unwrap_or_default();
    let mut o = Opts {
        pairs: 3,
        secs: 10,
        connections: 16,
        modes: Vec::new(),
        cpus: ("0".into(), "1".into()),
        agent,
        agent_args: Vec::new(),
        trace_nginx_only: true,
        floor: false,
        floor_raw: false,
        floor_copy: false,
    };
    let mut all = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--pairs" => o.pairs = val().parse().unwrap_or_else(|_| usage()),
            "--secs" => o.secs = val().parse().unwrap_or_else(|_| usage()),
            "--connections" => o.connections = val().parse().unwrap_or_else(|_| usage()),
            "--http" => o.modes.push("http"),
            "--https" => o.modes.push("https"),
            "--agent" => o.agent = PathBuf::from(val()),
            "--no-ssl" => o.agent_args.push("--no-ssl".into()),
            "--all-processes" => all = true,
            "--floor" => o.floor = true,
            "--floor-raw" => {
                o.floor = true;
                o.floor_raw = true;
            }
            "--floor-copy" => {
                o.floor = true;
                o.floor_copy = true;
            }
            "--cpus" => {
                let v = val();
                let (a, b) = v.split_once(',').unwrap_or_else(|| usage());
                o.cpus = (a.to_owned(), b.to_owned());
            }
            _ => usage(),
        }
    }
    o.trace_nginx_only = !all;
    if o.modes.is_empty() {
        o.modes = vec!["http", "https"];
    }
    o
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "(comm)": state=0 ppid=1 ... utime=11 stime=12.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`, 100 when unknown).
fn ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn start_nginx(dir: &Path, port: u16, cpu: &str) -> Kill {
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
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("index.html"), vec![b'x'; 612]).expect("index");
    let d = dir.display();
    let tls = port + 1;
    let conf = format!(
        "daemon off;\nmaster_process off;\nuser root;\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
         keepalive_requests 1000000;\n\
         server {{\n  listen 127.0.0.1:{port};\n  listen 127.0.0.1:{tls} ssl;\n\
         ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n  root {d}/www;\n }}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx.conf");
    let server = Kill(
        Command::new("taskset")
            .args(["-c", cpu, "nginx", "-p"])
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn nginx"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", tls)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

struct Run {
    rps: f64,
    requests: u64,
    /// nginx's CPU time (user + system, which includes the eBPF programs run in its context) during wrk.
    nginx_cpu_s: f64,
    /// wrk's CPU time (its syscalls pass the tracepoints too).
    wrk_cpu_s: f64,
    agent_cpu_s: f64,
    logs: Option<u64>,
    drops: u64,
}

/// User + system CPU seconds of this process's waited-for children so far (wrk runs as one).
fn children_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |ru| {
        let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        s(ru.user_time()) + s(ru.system_time())
    })
}

fn wrk(url: &str, o: &Opts) -> (f64, u64) {
    let out = Command::new("taskset")
        .args(["-c", &o.cpus.1, "wrk", "-t1"])
        .arg(format!("-c{}", o.connections))
        .arg(format!("-d{}s", o.secs))
        .arg(url)
        .output()
        .expect("wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk output without Requests/sec: {text}"));
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (rps, requests)
}

/// A tracing line without its ANSI colour escapes.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... letter
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

/// `key=N` in a tracing line.
fn field(text: &str, key: &str) -> Option<u64> {
    let pat = format!("{key}=");
    let at = text.find(&pat)? + pat.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// wrk's figures and nginx's CPU seconds during the run.
/// wrk's figures, nginx's CPU seconds during the run and wrk's own CPU seconds.
fn wrk_measured(url: &str, o: &Opts, nginx: u32) -> (f64, u64, f64, f64) {
    let before = cpu_ticks(nginx);
    let wrk_before = children_cpu_s();
    let (rps, requests) = wrk(url, o);
    let wrk_cpu = children_cpu_s() - wrk_before;
    let after = cpu_ticks(nginx);
    (
        rps,
        requests,
        after.saturating_sub(before) as f64 / ticks_per_sec() as f64,
        wrk_cpu,
    )
}

fn run(url: &str, traced: bool, o: &Opts, nginx: u32) -> Run {
    if !traced || o.floor {
        // The floor: the same hooks as the agent's (the OpenSSL ones in nginx alone, as `--pid` scopes them; none
        // with `--no-ssl`), empty.
        let probes = (traced && o.floor).then(|| {
            let ssl = fathom_capture::ebpf::SslConfig {
                enabled: !o.agent_args.iter().any(|a| a == "--no-ssl"),
                ..fathom_capture::ebpf::SslConfig::default()
            };
            if o.floor_raw {
                fathom_capture::ebpf::NoopProbes::attach_raw()
            } else if o.floor_copy {
                fathom_capture::ebpf::NoopProbes::attach_copying(nginx, 4096)
            } else {
                fathom_capture::ebpf::NoopProbes::attach(&ssl, &[nginx])
            }
            .unwrap_or_else(|e| panic!("attaching the empty programs: {e}"))
        });
        let (rps, requests, nginx_cpu_s, wrk_cpu_s) = wrk_measured(url, o, nginx);
        drop(probes);
        return Run {
            rps,
            requests,
            nginx_cpu_s,
            wrk_cpu_s,
            agent_cpu_s: 0.0,
            logs: None,
            drops: 0,
        };
    }
    let agent = Command::new(&o.agent)
        .args(["--ebpf", "--json", "logs", "--duration"])
        .arg((o.secs + 5).to_string())
        .args(&o.agent_args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", o.agent.display()));
    let pid = agent.id();
    std::thread::sleep(Duration::from_secs(3)); // programs loaded and attached
    let before = cpu_ticks(pid);
    let (rps, requests, nginx_cpu_s, wrk_cpu_s) = wrk_measured(url, o, nginx);
    let after = cpu_ticks(pid);
    let out = agent.wait_with_output().expect("agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent failed: {stderr}");
    let logs = stderr
        .lines()
        .find(|l| l.contains("Capture done."))
        .and_then(|l| field(&plain(l), "logs"));
    let drops = stderr
        .lines()
        .find(|l| l.contains("eBPF events were lost"))
        .and_then(|l| field(&plain(l), "ring_drops"))
        .unwrap_or(0);
    Run {
        rps,
        requests,
        nginx_cpu_s,
        wrk_cpu_s,
        agent_cpu_s: (after - before) as f64 / ticks_per_sec() as f64,
        logs,
        drops,
    }
}

fn main() {
    let o = parse_opts();
    assert!(
        o.agent.exists(),
        "no agent at {} (build it, or --agent PATH)",
        o.agent.display()
    );
    let dir = std::env::temp_dir().join(format!("fathom-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
        .min(60000);
    let nginx = start_nginx(&dir, port, &o.cpus.0);
    let mut o = o;
    if o.trace_nginx_only {
        o.agent_args
            .extend(["--pid".to_owned(), nginx.0.id().to_string()]);
    }
    println!(
        "ebpf_overhead: {} pairs of {} s wrk runs (1 thread, {} connections), nginx (one process) on CPU {}, wrk on \
         CPU {}, {}{}; nproc {}; load average at start {}",
        o.pairs,
        o.secs,
        o.connections,
        o.cpus.0,
        o.cpus.1,
        if o.floor {
            "traced = empty programs on the same tracepoints (the floor)"
        } else {
            "agent unpinned"
        },
        if o.agent_args.is_empty() || o.floor {
            String::new()
        } else {
            format!(" with {}", o.agent_args.join(" "))
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    for mode in o.modes.clone() {
        let url = match mode {
            "http" => format!("http://127.0.0.1:{port}/index.html"),
            _ => format!("https://127.0.0.1:{}/index.html", port + 1),
        };
        let _ = wrk(
            &url,
            &Opts {
                secs: 2,
                ..o.clone()
            },
        ); // warm-up
        let mut ratios = Vec::new();
        let mut nginx_ratios = Vec::new();
        let mut cpu_per_10k = Vec::new();
        let mut drops = 0;
        for pair in 0..o.pairs {
            // ABBA: untraced first in even pairs, traced first in odd ones.
            let order = if pair % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            let mut rps = [0.0; 2];
            let mut nginx_us = [0.0; 2];
            for traced in order {
                let r = run(&url, traced, &o, nginx.0.id());
                let us = r.nginx_cpu_s * 1e6 / r.requests.max(1) as f64;
                let wrk_us = r.wrk_cpu_s * 1e6 / r.requests.max(1) as f64;
                println!(
                    "  {mode} pair {pair} {:>8}: {:>9.0} req/s ({} requests), nginx CPU {us:.1} µs/request, wrk \
                     CPU {wrk_us:.1} µs/request{}",
                    match (traced, o.floor) {
                        (false, _) => "untraced",
                        (true, false) => "traced",
                        (true, true) => "floor",
                    },
                    r.rps,
                    r.requests,
                    if traced && !o.floor {
                        format!(
                            ", agent CPU {:.2} s, logs {}, ring drops {}",
                            r.agent_cpu_s,
                            r.logs.map_or("?".into(), |n| n.to_string()),
                            r.drops
                        )
                    } else {
                        String::new()
                    }
                );
                rps[usize::from(traced)] = r.rps;
                nginx_us[usize::from(traced)] = us;
                if traced {
                    cpu_per_10k
                        .push(r.agent_cpu_s * 1000.0 / (r.requests.max(1) as f64 / 10_000.0));
                    drops += r.drops;
                }
            }
            ratios.push(rps[1] / rps[0]);
            nginx_ratios.push(nginx_us[1] / nginx_us[0]);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let median = |v: &[f64]| {
            let mut s = v.to_vec();
            s.sort_by(f64::total_cmp);
            s.get(s.len() / 2).copied().unwrap_or(0.0)
        };
        let list = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "{mode}: traced/untraced req/s ratio mean {:.3} median {:.3} (pairs: {}); nginx CPU per request \
             traced/untraced median {:.3} (pairs: {}); agent CPU {:.0} ms per 10k requests; ring-buffer drops \
             {drops}; load average now {}",
            mean(&ratios),
            median(&ratios),
            list(&ratios),
            median(&nginx_ratios),
            list(&nginx_ratios),
            mean(&cpu_per_10k),
            loadavg()
        );
    }
    drop(nginx);
    let _ = std::fs::remove_dir_all(&dir);
}
