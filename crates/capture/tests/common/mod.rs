//! Shared helpers of the capture integration tests: tshark runners and event collection.
#![allow(dead_code)]

use fathom_capture::{read_file, Config, Counters};
use fathom_model::{FlowEnd, StreamEvent};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The shared data folder.
pub fn data_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).to_path_buf()
}

/// The dev captures plus a sample of external ones of various link types and formats.
pub fn captures() -> Vec<PathBuf> {
    let d = data_dir();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    for ext in EXTERNAL {
        v.push(d.join("external").join(ext));
    }
    if std::env::var_os("FATHOM_ALL_EXTERNAL").is_some() {
        let mut stack = vec![d.join("external")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng")
                    && !v.contains(&p)
                {
                    v.push(p);
                }
            }
        }
    }
    v
}

/// External captures: NULL/loopback + IPv6, raw IPv4, raw IP, VLAN, pcapng, long-lived.
pub const EXTERNAL: &[&str] = &[
    "zeek/Traces/redis/attr.pcap",
    "zeek/Traces/redis/reply-off-on-2conn.pcap",
    "zeek/Traces/redis/django-cloud.pcapng",
    "zeek/Traces/mysql/caching_sha2_password-after-auth-switch.pcapng",
    "zeek/Traces/tls/ml-dsa-44-cert.pcap",
    "zeek/Traces/http/basic-auth-with-colon.pcap",
    "arkime/pcap/mqtt_synthetic.pcap",
    "arkime/pcap/http2-nghttp2.pcap",
    "arkime/pcap/kafka.pcap",
    "arkime/pcap/mongo.pcap",
    "arkime/pcap/dns-udp.pcap",
    "zeek/Traces/dns/dns_notify2.pcap",
    "zeek/Traces/dns/naptr.pcap",
    "zeek/Traces/mysql/auth.pcap",
    "zeek/Traces/redis/large-requests-responses.pcap",
];

/// Run tshark, return its stdout.
pub fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Per-direction frames and frame bytes of one conversation: ((ip, port) -> (frames, bytes) sent by it).
pub type Conv = BTreeMap<String, (u64, u64)>;

fn ep(ip: &str, port: &str) -> String {
    format!("{ip}|{port}")
}

/// One row of a conversation table: endpoint A, endpoint B, frames A->B, exact bytes A->B, frames B->A, exact bytes B->A.
pub type ConvRow = (String, String, u64, Option<u64>, u64, Option<u64>);

/// Conversations from `tshark -z conv,<l4>`: per conversation, the two endpoints with what each sent.
/// Byte counts that tshark prints with a unit (kB, MB) are rounded; they are returned as `None`.
pub fn tshark_conv(path: &Path, l4: &str) -> Vec<ConvRow> {
    let out = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-q",
        "-z",
        &format!("conv,{l4}"),
    ]);
    let mut v = Vec::new();
    for line in out.lines() {
        let Some((a, rest)) = line.split_once("<->") else {
            continue;
        };
        let a = a.trim();
        let mut it = rest.split_whitespace();
        let b = it.next().unwrap_or_default();
        let toks: Vec<&str> = it.collect();
        // frames_ba bytes_ba unit frames_ab bytes_ab unit ...
        let num = |i: usize| {
            toks.get(i)
                .and_then(|t| t.replace(',', "").parse::<u64>().ok())
        };
        let exact = |i: usize| {
            (toks.get(i + 1) == Some(&"bytes"))
                .then(|| num(i))
                .flatten()
        };
        let split = |s: &str| {
            let (ip, port) = s.rsplit_once(':').unwrap();
            ep(ip, port)
        };
        if let (Some(fba), Some(fab)) = (num(0), num(3)) {
            v.push((split(a), split(b), fab, exact(4), fba, exact(1)));
        }
    }
    v
}

/// Exact per-stream, per-sender frames and bytes from tshark fields (like the conformance script).
pub fn tshark_streams(path: &Path, l4: &str) -> Vec<Conv> {
    let out = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-Y",
        l4,
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        &format!("{l4}.stream"),
        "-e",
        "ip.src",
        "-e",
        "ipv6.src",
        "-e",
        &format!("{l4}.srcport"),
        "-e",
        "frame.len",
    ]);
    let mut streams: BTreeMap<u64, Conv> = BTreeMap::new();
    for line in out.lines() {
        let p: Vec<&str> = line.split('|').collect();
        if p.len() < 5 || p[0].is_empty() {
            continue;
        }
        let Ok(stream) = p[0].split(',').next().unwrap().parse::<u64>() else {
            continue;
        };
        let ip = if p[1].is_empty() { p[2] } else { p[1] };
        let ip = ip.split(',').next_back().unwrap();
        let port = p[3].split(',').next().unwrap();
        let e = streams
            .entry(stream)
            .or_default()
            .entry(ep(ip, port))
            .or_default();
        e.0 += 1;
        e.1 += p[4].parse::<u64>().unwrap();
    }
    streams.into_values().collect()
}

/// Our flows as `Conv`s (keyed like tshark's), plus the raw flow ends.
pub fn our_flows(path: &Path, config: Config) -> (Vec<(String, Conv)>, Vec<FlowEnd>, Counters) {
    let mut ends = Vec::new();
    let (counters, r) = read_file(path, config, |e| {
        if let StreamEvent::FlowEnd(f) = e {
            ends.push(*f);
        }
    });
    if let Err(e) = r {
        panic!("{}: {e}", path.display());
    }
    let v = ends
        .iter()
        .map(|f| {
            let r = &f.record;
            let mut c = Conv::new();
            if r.packet_tx > 0 {
                c.insert(
                    ep(&r.ip_src, &r.port_src.to_string()),
                    (r.packet_tx, r.byte_tx),
                );
            }
            if r.packet_rx > 0 {
                let e = c.entry(ep(&r.ip_dst, &r.port_dst.to_string())).or_default();
                e.0 += r.packet_rx;
                e.1 += r.byte_rx;
            }
            (r.l4_protocol.as_str().to_string(), c)
        })
        .collect();
    (v, ends, counters)
}

/// Multiset of conversations, for order-independent comparison.
pub fn multiset(convs: impl IntoIterator<Item = Conv>) -> HashMap<Conv, usize> {
    let mut m = HashMap::new();
    for c in convs {
        *m.entry(c).or_default() += 1;
    }
    m
}
