//! Variants of real captures: other file formats and link types (same streams), and damage (reordered,
//! duplicated, dropped, snap-length-cut packets, files cut mid-record): correct results or explicit gaps, never a
//! panic or a wrong byte.

mod common;

use common::*;
use fathom_capture::{CaptureError, Config, EventSource, FileSource, PacketCapture};
use fathom_model::{Direction, FlowEnd, FlowKey, StreamEvent};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Debug)]
struct Rec {
    sec: u32,
    usec: u32,
    orig_len: u32,
    data: Vec<u8>,
}

/// Read a classic little-endian microsecond pcap (the shared captures' format).
fn read_pcap(bytes: &[u8]) -> (u32, Vec<Rec>) {
    let u = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    assert_eq!(u(0), 0xa1b2_c3d4);
    let link = u(20);
    let mut recs = Vec::new();
    let mut o = 24;
    while o + 16 <= bytes.len() {
        let cap = u(o + 8) as usize;
        recs.push(Rec {
            sec: u(o),
            usec: u(o + 4),
            orig_len: u(o + 12),
            data: bytes[o + 16..o + 16 + cap].to_vec(),
        });
        o += 16 + cap;
    }
    (link, recs)
}

fn write_pcap(link: u32, recs: &[Rec], be: bool, nanos: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let w32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
    };
    let w16 = |out: &mut Vec<u8>, v: u16| {
        out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() })
    };
    w32(&mut out, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut out, 2);
    w16(&mut out, 4);
    w32(&mut out, 0);
    w32(&mut out, 0);
    w32(&mut out, 262_144);
    w32(&mut out, link);
    for r in recs {
        w32(&mut out, r.sec);
        w32(&mut out, if nanos { r.usec * 1000 } else { r.usec });
        w32(&mut out, r.data.len() as u32);
        w32(&mut out, r.orig_len);
        out.extend_from_slice(&r.data);
    }
    out
}

/// Every event of an in-memory capture, and how it ended.
fn events(bytes: Vec<u8>) -> (Vec<StreamEvent>, Result<(), CaptureError>) {
    let src = match FileSource::from_reader(std::io::Cursor::new(bytes)) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut cap = PacketCapture::new(src, Config::default());
    let mut all = Vec::new();
    loop {
        match cap.next_events(&mut all) {
            Ok(true) => {}
            Ok(false) => return (all, Ok(())),
            Err(e) => return (all, Err(e)),
        }
    }
}

type Streams = HashMap<(FlowKey, Direction), Vec<u8>>;

fn flow_ends(ev: &[StreamEvent]) -> HashMap<FlowKey, FlowEnd> {
    let mut m = HashMap::new();
    for e in ev {
        if let StreamEvent::FlowEnd(f) = e {
            assert!(
                m.insert(f.flow, (**f).clone()).is_none(),
                "flow key reused: {}",
                f.flow
            );
        }
    }
    m
}

/// Concatenated chunks per flow direction, asserting there is no gap.
fn streams(ev: &[StreamEvent]) -> Streams {
    let mut s = Streams::new();
    for e in ev {
        if let StreamEvent::Chunk(c) = e {
            assert_eq!(c.gap_before, 0, "unexpected gap in {}", c.flow);
            s.entry((c.flow, c.direction))
                .or_default()
                .extend_from_slice(&c.bytes);
        }
    }
    s
}

/// Check every chunk against the reference streams at its offset (gaps skip bytes). Returns (delivered, gaps).
fn check_against(reference: &Streams, ev: &[StreamEvent]) -> (u64, u64) {
    let mut off: HashMap<(FlowKey, Direction), usize> = HashMap::new();
    let (mut delivered, mut gaps) = (0u64, 0u64);
    let mut ended = std::collections::HashSet::new();
    for e in ev {
        match e {
            StreamEvent::Chunk(c) if c.flow.l4_protocol == fathom_model::L4Protocol::Udp => {
                // Datagrams: no stream offsets to check (a cut datagram is delivered as captured).
                delivered += c.bytes.len() as u64;
            }
            StreamEvent::Chunk(c) => {
                assert!(!ended.contains(&c.flow), "chunk after flow end");
                let o = off.entry((c.flow, c.direction)).or_default();
                *o += c.gap_before as usize;
                gaps += c.gap_before;
                let want = reference
                    .get(&(c.flow, c.direction))
                    .unwrap_or_else(|| panic!("unknown stream {} {:?}", c.flow, c.direction));
                assert!(
                    *o + c.bytes.len() <= want.len(),
                    "{} {:?}: chunk beyond the stream",
                    c.flow,
                    c.direction
                );
                assert_eq!(
                    &want[*o..*o + c.bytes.len()],
                    &c.bytes[..],
                    "{} {:?}: wrong bytes at {o}",
                    c.flow,
                    c.direction
                );
                *o += c.bytes.len();
                delivered += c.bytes.len() as u64;
            }
            StreamEvent::FlowEnd(f) => {
                ended.insert(f.flow);
            }
        }
    }
    (delivered, gaps)
}

fn shared(name: &str) -> PathBuf {
    data_dir().join(name)
}

const SAMPLES: &[&str] = &[
    "http1.pcap",
    "mysql.pcap",
    "dns.pcap",
    "kafka.pcap",
    "http2.pcap",
];

fn tcp_payload_len(frame: &[u8]) -> Option<(usize, u8)> {
    let p = etherparse::SlicedPacket::from_ethernet(frame).ok()?;
    match p.transport? {
        etherparse::TransportSlice::Tcp(t) => {
            let f = (t.syn() as u8) | ((t.fin() as u8) << 1) | ((t.rst() as u8) << 2);
            Some((t.payload().len(), f))
        }
        _ => None,
    }
}

#[test]
fn file_formats_give_identical_events() {
    for name in SAMPLES {
        let bytes = std::fs::read(shared(name)).unwrap();
        let (base, r) = events(bytes.clone());
        r.unwrap();
        let base_streams = streams(&base);
        let base_flows = flow_ends(&base);
        let (link, recs) = read_pcap(&bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let variants: Vec<(&str, Vec<u8>)> = vec![
            ("big-endian", write_pcap(link, &recs, true, false)),
            ("nanosecond", write_pcap(link, &recs, false, true)),
            ("big-endian nanosecond", write_pcap(link, &recs, true, true)),
            ("gzip", gz.finish().unwrap()),
            ("pcapng", editcap(&shared(name), &["-F", "pcapng"])),
        ];
        for (what, v) in variants {
            let (ev, r) = events(v);
            r.unwrap_or_else(|e| panic!("{name} {what}: {e}"));
            assert_eq!(streams(&ev), base_streams, "{name} {what}");
            assert_eq!(flow_ends(&ev), base_flows, "{name} {what}");
        }
    }
}

fn editcap(input: &Path, args: &[&str]) -> Vec<u8> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let out = std::env::temp_dir().join(format!(
        "fathom-capture-editcap-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let st = Command::new("editcap")
        .args(args)
        .arg(input)
        .arg(&out)
        .status()
        .expect("editcap runs");
    assert!(st.success());
    let b = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    b
}

/// Rewrite Ethernet frames to another link layer.
fn relink(recs: &[Rec], f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Rec> {
    recs.iter()
        .map(|r| {
            let data = f(&r.data);
            Rec {
                orig_len: r.orig_len - r.data.len() as u32 + data.len() as u32,
                data,
                ..r.clone()
            }
        })
        .collect()
}

#[test]
fn link_types_give_identical_streams() {
    for name in SAMPLES {
        let bytes = std::fs::read(shared(name)).unwrap();
        let (base, _) = events(bytes.clone());
        let base_streams = streams(&base);
        let base_flows = flow_ends(&base);
        let (link, recs) = read_pcap(&bytes);
        assert_eq!(link, 1);
        let et = |d: &[u8]| [d[12], d[13]];
        let ip = |d: &[u8]| d[14..].to_vec();
        let af = |d: &[u8]| if et(d) == [0x86, 0xdd] { 10u32 } else { 2 };
        let variants: Vec<(&str, u32, Vec<Rec>)> = vec![
            ("raw", 101, relink(&recs, ip)),
            ("raw dlt 12", 12, relink(&recs, ip)),
            ("ipv4", 228, relink(&recs, ip)),
            (
                "null",
                0,
                relink(&recs, |d| [&af(d).to_le_bytes()[..], &d[14..]].concat()),
            ),
            (
                "null big-endian",
                0,
                relink(&recs, |d| [&af(d).to_be_bytes()[..], &d[14..]].concat()),
            ),
            (
                "loop",
                108,
                relink(&recs, |d| [&af(d).to_be_bytes()[..], &d[14..]].concat()),
            ),
            (
                "sll",
                113,
                relink(&recs, |d| {
                    [
                        &[0, 0, 0, 1, 0, 6][..],
                        &d[6..12],
                        &[0, 0],
                        &et(d),
                        &d[14..],
                    ]
                    .concat()
                }),
            ),
            (
                "sll2",
                276,
                relink(&recs, |d| {
                    [
                        &et(d)[..],
                        &[0, 0, 0, 0, 0, 1, 0, 1, 0, 6],
                        &d[6..12],
                        &[0, 0],
                        &d[14..],
                    ]
                    .concat()
                }),
            ),
            (
                "802.1Q",
                1,
                relink(&recs, |d| [&d[..12], &[0x81, 0, 0, 42], &d[12..]].concat()),
            ),
            (
                "QinQ",
                1,
                relink(&recs, |d| {
                    [&d[..12], &[0x88, 0xa8, 0, 7, 0x81, 0, 0, 42], &d[12..]].concat()
                }),
            ),
        ];
        for (what, link, recs) in variants {
            let (ev, r) = events(write_pcap(link, &recs, false, false));
            r.unwrap_or_else(|e| panic!("{name} {what}: {e}"));
            assert_eq!(streams(&ev), base_streams, "{name} {what}");
            let flows = flow_ends(&ev);
            assert_eq!(flows.len(), base_flows.len(), "{name} {what}");
            for (k, f) in &flows {
                let b = &base_flows[k].record;
                let r = &f.record;
                assert_eq!(
                    (r.packet_tx, r.packet_rx),
                    (b.packet_tx, b.packet_rx),
                    "{name} {what}"
                );
                assert_eq!(
                    (r.payload_byte_tx, r.payload_byte_rx),
                    (b.payload_byte_tx, b.payload_byte_rx)
                );
                assert_eq!(r.close_type, b.close_type);
            }
        }
    }
}

#[test]
fn pcapng_with_two_interfaces_of_different_link_types() {
    // http1.pcap as Ethernet + dns.pcap rewritten to NULL, merged by mergecap into one pcapng.
    let dir = std::env::temp_dir().join(format!("fathom-capture-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dns = std::fs::read(shared("dns.pcap")).unwrap();
    let (_, recs) = read_pcap(&dns);
    let null = relink(&recs, |d| [&2u32.to_le_bytes()[..], &d[14..]].concat());
    let null_path = dir.join("dns-null.pcap");
    std::fs::write(&null_path, write_pcap(0, &null, false, false)).unwrap();
    let merged = dir.join("merged.pcapng");
    let st = Command::new("mergecap")
        .args(["-F", "pcapng", "-w"])
        .arg(&merged)
        .arg(shared("http1.pcap"))
        .arg(&null_path)
        .status()
        .expect("mergecap runs");
    assert!(st.success());
    let (ev, r) = events(std::fs::read(&merged).unwrap());
    r.unwrap();
    let (a, _) = events(std::fs::read(shared("http1.pcap")).unwrap());
    let (b, _) = events(write_pcap(0, &null, false, false));
    let mut want = streams(&a);
    want.extend(streams(&b));
    assert_eq!(streams(&ev), want);
    let flows = flow_ends(&ev);
    assert_eq!(flows.len(), flow_ends(&a).len() + flow_ends(&b).len());
    // And tshark agrees on the merged file.
    let (ours, _, _) = our_flows(&merged, Config::default());
    for l4 in ["tcp", "udp"] {
        let mine: Vec<Conv> = ours
            .iter()
            .filter(|(p, _)| p == l4)
            .map(|(_, c)| c.clone())
            .collect();
        assert_eq!(
            multiset(mine),
            multiset(tshark_streams(&merged, l4)),
            "{l4}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reordered_and_duplicated_packets_give_identical_streams() {
    for name in SAMPLES {
        let bytes = std::fs::read(shared(name)).unwrap();
        let (base, _) = events(bytes.clone());
        let base_streams = streams(&base);
        let (link, recs) = read_pcap(&bytes);
        // Swap every third pair of neighbouring data segments (handshake and FIN/RST packets stay in place).
        let mut reordered = recs.clone();
        let mut i = 0;
        let mut swaps = 0;
        while i + 1 < reordered.len() {
            let a = tcp_payload_len(&reordered[i].data);
            let b = tcp_payload_len(&reordered[i + 1].data);
            if matches!((a, b), (Some((x, 0)), Some((y, 0))) if x > 0 && y > 0) && i % 3 == 0 {
                reordered.swap(i, i + 1);
                swaps += 1;
                i += 2;
            } else {
                i += 1;
            }
        }
        let (ev, r) = events(write_pcap(link, &reordered, false, false));
        r.unwrap();
        assert_eq!(
            streams(&ev),
            base_streams,
            "{name} reordered ({swaps} swaps)"
        );
        // Duplicate every fourth packet.
        let dup: Vec<Rec> = recs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                if i % 4 == 0 {
                    vec![r.clone(), r.clone()]
                } else {
                    vec![r.clone()]
                }
            })
            .collect();
        let (ev, r) = events(write_pcap(link, &dup, false, false));
        r.unwrap();
        // TCP duplicates are dropped; a duplicated UDP datagram is a datagram again.
        let tcp_only = |s: Streams| -> Streams {
            s.into_iter()
                .filter(|((k, _), _)| k.l4_protocol == fathom_model::L4Protocol::Tcp)
                .collect()
        };
        assert_eq!(
            tcp_only(streams(&ev)),
            tcp_only(base_streams.clone()),
            "{name} duplicated"
        );
        let flows = flow_ends(&ev);
        let total: u64 = flows
            .values()
            .map(|f| f.record.packet_tx + f.record.packet_rx)
            .sum();
        let base_total: u64 = flow_ends(&base)
            .values()
            .map(|f| f.record.packet_tx + f.record.packet_rx)
            .sum();
        assert_eq!(total, base_total + recs.len().div_ceil(4) as u64);
    }
}

#[test]
fn dropped_packets_become_explicit_gaps() {
    for name in SAMPLES {
        let bytes = std::fs::read(shared(name)).unwrap();
        let (base, _) = events(bytes.clone());
        let base_streams = streams(&base);
        let (link, recs) = read_pcap(&bytes);
        let mut kept = Vec::new();
        let mut dropped_bytes = 0u64;
        let mut n = 0;
        for r in &recs {
            if let Some((len, 0)) = tcp_payload_len(&r.data) {
                if len > 0 {
                    n += 1;
                    if n % 5 == 2 {
                        dropped_bytes += len as u64;
                        continue;
                    }
                }
            }
            kept.push(r.clone());
        }
        let (ev, r) = events(write_pcap(link, &kept, false, false));
        r.unwrap();
        let (delivered, _gaps) = check_against(&base_streams, &ev);
        let lost: u64 = flow_ends(&ev)
            .values()
            .map(|f| f.record.lost_byte_tx + f.record.lost_byte_rx)
            .sum();
        let total: u64 = base_streams
            .iter()
            .filter(|((k, _), _)| k.l4_protocol == fathom_model::L4Protocol::Tcp)
            .map(|(_, v)| v.len() as u64)
            .sum();
        let udp: u64 = base_streams
            .iter()
            .filter(|((k, _), _)| k.l4_protocol == fathom_model::L4Protocol::Udp)
            .map(|(_, v)| v.len() as u64)
            .sum();
        assert_eq!(lost, dropped_bytes, "{name}");
        assert_eq!(delivered, total + udp - dropped_bytes, "{name}");
    }
}

#[test]
fn snaplen_cut_packets_keep_counts_and_mark_gaps() {
    for name in SAMPLES {
        let bytes = std::fs::read(shared(name)).unwrap();
        let (base, _) = events(bytes.clone());
        let base_streams = streams(&base);
        let base_flows = flow_ends(&base);
        for snap in [60usize, 80, 120] {
            let (link, recs) = read_pcap(&bytes);
            let cut: Vec<Rec> = recs
                .iter()
                .map(|r| Rec {
                    data: r.data[..r.data.len().min(snap)].to_vec(),
                    ..r.clone()
                })
                .collect();
            let (ev, r) = events(write_pcap(link, &cut, false, false));
            r.unwrap();
            check_against(&base_streams, &ev);
            let flows = flow_ends(&ev);
            for (k, f) in &base_flows {
                let (a, b) = (&f.record, &flows[k].record);
                assert_eq!(
                    (a.packet_tx, a.packet_rx, a.byte_tx, a.byte_rx),
                    (b.packet_tx, b.packet_rx, b.byte_tx, b.byte_rx),
                    "{name} snaplen {snap}"
                );
                if k.l4_protocol == fathom_model::L4Protocol::Tcp {
                    assert_eq!(
                        (a.payload_byte_tx, a.payload_byte_rx),
                        (b.payload_byte_tx, b.payload_byte_rx)
                    );
                }
            }
        }
        // editcap's own snap length cut gives the same.
        let (ev, r) = events(editcap(&shared(name), &["-s", "80"]));
        r.unwrap();
        check_against(&base_streams, &ev);
    }
}

#[test]
fn files_cut_mid_record_yield_a_prefix_and_an_offset() {
    for name in SAMPLES {
        let bytes = std::fs::read(shared(name)).unwrap();
        let (base, _) = events(bytes.clone());
        let base_streams = streams(&base);
        let ng = editcap(&shared(name), &["-F", "pcapng"]);
        for file in [&bytes, &ng] {
            for k in 1..24 {
                let cut = file.len() * k / 24 + 3;
                let (ev, r) = events(file[..cut.min(file.len() - 1)].to_vec());
                let e = r.expect_err("a cut file is an error");
                let off = e.offset().expect("offset");
                assert!(off <= cut as u64, "{name}: offset {off} beyond cut {cut}");
                assert!(e.to_string().contains(&format!("offset {off}")), "{e}");
                check_against(&base_streams, &ev);
            }
        }
    }
}

#[test]
fn garbage_never_panics() {
    let bytes = std::fs::read(shared("http1.pcap")).unwrap();
    // Flip bytes all over the file (past the header): any result but a panic is fine.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        let mut b = bytes.clone();
        for _ in 0..20 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = 24 + (seed as usize % (b.len() - 24));
            b[i] = (seed >> 32) as u8;
        }
        let _ = events(b);
    }
}

#[test]
fn follow_streams_match_tshark() {
    let mut checked = 0;
    for name in [
        "http1.pcap",
        "redis.pcap",
        "mysql.pcap",
        "postgresql.pcap",
        "kafka.pcap",
        "mqtt.pcap",
        "grpc.pcap",
        "tls.pcap",
        "dubbo.pcap",
        "microservices.pcap",
    ] {
        let path = shared(name);
        let (ev, r) = events(std::fs::read(&path).unwrap());
        r.unwrap();
        let ours = streams(&ev);
        let mut args = vec![
            "-r".to_string(),
            path.to_str().unwrap().to_string(),
            "-q".to_string(),
        ];
        for n in 0..8 {
            args.push("-z".into());
            args.push(format!("follow,tcp,raw,{n}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tshark(&args);
        for block in out
            .split("===================================================================")
            .filter(|b| b.contains("Node 0:"))
        {
            let mut nodes = Vec::new();
            let (mut fwd, mut back) = (Vec::new(), Vec::new());
            for line in block.lines() {
                if let Some(n) = line
                    .strip_prefix("Node 0: ")
                    .or_else(|| line.strip_prefix("Node 1: "))
                {
                    let (ip, port) = n.rsplit_once(':').unwrap();
                    if let (Ok(ip), Ok(port)) = (
                        ip.trim_matches(['[', ']']).parse::<std::net::IpAddr>(),
                        port.parse::<u16>(),
                    ) {
                        nodes.push((ip, port));
                    }
                } else if let Some(hex) = line.strip_prefix('\t') {
                    back.extend(decode_hex(hex));
                } else if !line.is_empty() && line.bytes().all(|c| c.is_ascii_hexdigit()) {
                    fwd.extend(decode_hex(line));
                }
            }
            if nodes.len() != 2 {
                continue;
            }
            let key = ours
                .keys()
                .map(|(k, _)| *k)
                .find(|k| {
                    (k.ip_src, k.port_src) == nodes[0] && (k.ip_dst, k.port_dst) == nodes[1]
                        || (k.ip_src, k.port_src) == nodes[1] && (k.ip_dst, k.port_dst) == nodes[0]
                })
                .unwrap_or_else(|| panic!("{name}: no flow for {nodes:?}"));
            let (d0, d1) = if (key.ip_src, key.port_src) == nodes[0] {
                (Direction::ClientToServer, Direction::ServerToClient)
            } else {
                (Direction::ServerToClient, Direction::ClientToServer)
            };
            let empty = Vec::new();
            assert_eq!(
                ours.get(&(key, d0)).unwrap_or(&empty),
                &fwd,
                "{name} {key} node 0 -> 1"
            );
            assert_eq!(
                ours.get(&(key, d1)).unwrap_or(&empty),
                &back,
                "{name} {key} node 1 -> 0"
            );
            checked += 1;
        }
    }
    eprintln!("follow streams matching tshark: {checked}");
    assert!(checked >= 45, "{checked}");
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}
