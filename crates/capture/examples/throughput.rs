//! Throughput of decode + flow table + TCP reassembly on a capture file, and the ratio against
//! `tshark -q -z conv,tcp` on the same file in the same run.
//!
//! ```text
//! python3 ../shared/tools/bigcap.py -o /tmp/big.pcap --repeat 4000 ../shared/data/{http1,redis,mysql,dns}.pcap
//! cargo run --release -p fathom-capture --example throughput -- /tmp/big.pcap [--no-tshark]
//! ```

use fathom_capture::{Config, EventSource, FileSource, PacketCapture};
use fathom_model::StreamEvent;
use std::time::Instant;

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: throughput FILE [--no-tshark]");
    let tshark = args.next().as_deref() != Some("--no-tshark");
    let size = std::fs::metadata(&path).expect("file exists").len() as f64;
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    let mut summary = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        let cpu0 = cpu_seconds();
        let src = FileSource::open(&path).expect("capture opens");
        let mut cap = PacketCapture::new(src, Config::default());
        let mut events = Vec::with_capacity(4096);
        let (mut chunks, mut bytes, mut flows) = (0u64, 0u64, 0u64);
        loop {
            let more = cap.next_events(&mut events).expect("capture reads");
            for e in events.drain(..) {
                match e {
                    StreamEvent::Chunk(c) => {
                        chunks += 1;
                        bytes += c.bytes.len() as u64;
                    }
                    StreamEvent::FlowEnd(_) => flows += 1,
                }
            }
            if !more {
                break;
            }
        }
        let dt = t.elapsed().as_secs_f64();
        best = best.min(dt);
        best_cpu = best_cpu.min(cpu_seconds() - cpu0);
        let c = cap.counters();
        summary = format!(
            "{} packets, {flows} flows, {chunks} chunks, {bytes} payload bytes",
            c.packets
        );
    }
    println!("{summary}");
    println!(
        "fathom-capture: {:.1} MB/s ({:.2} s for {:.0} MB, best of 3)",
        size / best / 1e6,
        best,
        size / 1e6
    );
    println!(
        "fathom-capture per CPU second: {:.1} MB/s ({:.2} s CPU)",
        size / best_cpu.max(0.01) / 1e6,
        best_cpu
    );
    if tshark {
        let t = Instant::now();
        let st = std::process::Command::new("tshark")
            .args(["-r", &path, "-q", "-z", "conv,tcp"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("tshark runs");
        let dt = t.elapsed().as_secs_f64();
        assert!(st.success());
        println!(
            "tshark -z conv,tcp: {:.1} MB/s ({dt:.2} s); ratio {:.1}x",
            size / dt / 1e6,
            dt / best
        );
    }
}
