//! Capture throughput of [`AfPacketCapture`] (ring + flow table + TCP reassembly) against `tcpdump -w /dev/null`
//! on the same loopback load: wrk against nginx on 127.0.0.1, both captures running at the same time with the
//! same filter (`tcp port PORT`, compiled by `tcpdump -ddd`) and the same ring memory (64 MiB). Prints packets
//! captured, kernel drops and CPU seconds of each, and their ratios. Needs root, nginx, wrk and tcpdump.
//!
//! ```text
//! cargo run --release -p fathom-capture --features afpacket --example afpacket_vs_tcpdump -- [SECS] [THREADS]
//! ```

#[cfg(all(feature = "afpacket", target_os = "linux"))]
fn main() {
    bench::main();
}

#[cfg(not(all(feature = "afpacket", target_os = "linux")))]
fn main() {
    eprintln!("this example needs the `afpacket` feature on Linux");
}

#[cfg(all(feature = "afpacket", target_os = "linux"))]
mod bench {
    use fathom_capture::{AfPacketCapture, AfPacketConfig, BpfProgram, Config, EventSource};
    use std::io::{BufRead, BufReader, Read};
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    /// CPU seconds (user + system) of process `pid` from /proc.
    fn cpu_s(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        // After the command name: state is field 0, utime 11, stime 12.
        (ticks(11) + ticks(12)) / 100.0
    }

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        let secs: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
        let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
        let dir = std::env::temp_dir().join(format!("fathom-afp-bench-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("www")).expect("temp dir");
        std::fs::write(dir.join("www/index.html"), "hello from nginx\n".repeat(40)).expect("index");
        let port = free_port();
        let conf = format!(
            "daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {d}/www; }} }}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx.conf");
        let _nginx = Kill(
            Command::new("nginx")
                .args(["-p", &dir.to_string_lossy(), "-c"])
                .arg(dir.join("nginx.conf"))
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx"),
        );
        std::thread::sleep(Duration::from_millis(500));
        let expr = format!("tcp port {port}");
        let ddd = Command::new("tcpdump")
            .args(["-i", "lo", "-ddd", &expr])
            .output()
            .expect("tcpdump -ddd");
        let filter = BpfProgram::parse_ddd(&String::from_utf8_lossy(&ddd.stdout)).expect("filter");

        let mut tcpdump = Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-w",
                "/dev/null",
                "-B",
                "65536",
                "-s",
                "262144",
                &expr,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let mut err = BufReader::new(tcpdump.stderr.take().expect("stderr"));
        let mut line = String::new();
        while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("listening on") {
            line.clear();
        }
        let tcpdump_pid = tcpdump.id();
        let tcpdump = Kill(tcpdump);

        let mut config = AfPacketConfig::new("lo");
        config.threads = threads;
        config.filter = Some(filter);
        let mut cap =
            AfPacketCapture::start(&config, &Config::default()).expect("AF_PACKET capture");
        let stop = cap.stop_handle();
        let telemetry = cap.telemetry();
        let ours = std::thread::spawn(move || {
            let mut events = Vec::new();
            let mut n = 0u64;
            while cap.next_events(&mut events).expect("capture") {
                n += events.len() as u64;
                events.clear();
            }
            (n, cap.counters().clone())
        });

        let cpu0 = self_cpu_s();
        let start = Instant::now();
        let wrk = Command::new("wrk")
            .args([
                "-t1",
                "-c32",
                &format!("-d{secs}s"),
                &format!("http://127.0.0.1:{port}/"),
            ])
            .output()
            .expect("wrk");
        let wall = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        let tcpdump_cpu = cpu_s(tcpdump_pid);
        let _ = Command::new("kill")
            .args(["-INT", &tcpdump_pid.to_string()])
            .status();
        let mut rest = String::new();
        let _ = err.read_to_string(&mut rest);
        drop(tcpdump);
        stop.store(true, Ordering::Relaxed);
        let (events, counters) = ours.join().expect("capture thread");
        let our_cpu = self_cpu_s() - cpu0;
        let stats = telemetry.snapshot();

        let num = |key: &str| -> u64 {
            rest.lines()
                .find(|l| l.contains(key))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let (td_captured, td_received, td_dropped) = (
            num("packets captured"),
            num("packets received by filter"),
            num("packets dropped by kernel"),
        );
        let wrk_out = String::from_utf8_lossy(&wrk.stdout);
        let rps = wrk_out
            .lines()
            .find(|l| l.starts_with("Requests/sec"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        println!("load: wrk -t1 -c32 for {wall:.1} s against nginx on lo: {rps} requests/s");
        println!(
            "tcpdump -w /dev/null: {td_captured} packets captured ({td_received} received by filter), \
             {td_dropped} dropped by kernel, {tcpdump_cpu:.2} CPU s"
        );
        println!(
            "fathom AF_PACKET ({threads} thread(s), flow table + reassembly): {} packets, {} kernel drops, \
             {} ring freezes, {} outgoing copies skipped, {} flows, {} events, {our_cpu:.2} CPU s",
            stats.packets,
            stats.kernel_drops,
            stats.kernel_freezes,
            stats.outgoing_skipped,
            counters.flows_created,
            events
        );
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "ratios fathom/tcpdump: packets {:.3}, CPU per packet {:.2}",
            ratio(stats.packets as f64, td_captured as f64),
            ratio(
                our_cpu / stats.packets.max(1) as f64,
                tcpdump_cpu / td_captured.max(1) as f64
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn self_cpu_s() -> f64 {
        cpu_s(std::process::id())
    }
}
