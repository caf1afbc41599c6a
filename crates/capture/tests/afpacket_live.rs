//! Live AF_PACKET capture on `lo` with real TCP traffic made by the test: every byte the client and server sent
//! must come out of reassembly exactly once (outgoing copies skipped), a BPF filter from `tcpdump -ddd` must
//! really drop the other port, and a 2-socket fanout must still reassemble every connection. Needs root (skips
//! otherwise; fails instead under `FATHOM_REQUIRE_LIVE=1`).
#![cfg(all(feature = "afpacket", target_os = "linux"))]

use fathom_capture::{
    AfPacketCapture, AfPacketConfig, AfPacketError, AfPacketSource, BpfProgram, Config, EventSource,
};
use fathom_model::{CloseType, Direction, StreamEvent};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn live(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_owned();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
            "{test}: FATHOM_REQUIRE_LIVE is set but not running as root"
        );
        eprintln!("{test}: skipped (needs root)");
    }
    root
}

/// Serve `conns` connections on `listener`: read the request to EOF, answer `resp(request)`, close.
fn serve(listener: TcpListener, conns: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for _ in 0..conns {
            let (mut s, _) = listener.accept().expect("accept");
            let mut req = Vec::new();
            s.read_to_end(&mut req).expect("read request");
            s.write_all(&response(&req)).expect("write response");
        }
    })
}

fn response(req: &[u8]) -> Vec<u8> {
    let mut r = b"OK:".to_vec();
    r.extend(req.iter().rev());
    r
}

/// One client connection: send `req`, half-close, read the response to EOF.
fn client(port: u16, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    s.write_all(req).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    resp
}

/// Per flow (client port, server port): bytes client → server, bytes server → client, close type.
type Streams = BTreeMap<(u64, u16, u16), (Vec<u8>, Vec<u8>, Option<CloseType>)>;

/// Run `traffic` while capturing, then stop and collect every event until the capture ends.
fn capture_while(
    config: &AfPacketConfig,
    traffic: impl FnOnce() + Send + 'static,
) -> (AfPacketCapture, Streams, BTreeMap<u16, u64>) {
    let mut cap = AfPacketCapture::start(config, &Config::default()).expect("start capture");
    let stop = cap.stop_handle();
    let t = std::thread::spawn(traffic);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut traffic_done: Option<Instant> = None;
    loop {
        let more = cap.next_events(&mut events).expect("capture");
        if !more {
            break;
        }
        if traffic_done.is_none() && t.is_finished() {
            traffic_done = Some(Instant::now());
        }
        if traffic_done.is_some_and(|d| d.elapsed() > Duration::from_millis(300))
            || Instant::now() > deadline
        {
            stop.store(true, Ordering::Relaxed);
        }
    }
    t.join().expect("traffic thread");
    let mut streams = Streams::new();
    let mut retrans = BTreeMap::new();
    for e in events {
        match e {
            StreamEvent::Chunk(c) => {
                assert_eq!(c.gap_before, 0, "no loss on an idle loopback");
                let s = streams
                    .entry((c.flow_id, c.flow.port_src, c.flow.port_dst))
                    .or_default();
                match c.direction {
                    Direction::ClientToServer => s.0.extend_from_slice(&c.bytes),
                    Direction::ServerToClient => s.1.extend_from_slice(&c.bytes),
                }
            }
            StreamEvent::FlowEnd(f) => {
                streams
                    .entry((f.flow_id, f.flow.port_src, f.flow.port_dst))
                    .or_default()
                    .2 = Some(f.record.close_type);
                retrans.insert(f.flow.port_src, f.record.retrans_tx + f.record.retrans_rx);
            }
        }
    }
    (cap, streams, retrans)
}

fn free_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

fn of_port(streams: &Streams, port: u16) -> Vec<(Vec<u8>, Vec<u8>, Option<CloseType>)> {
    streams
        .iter()
        .filter(|((_, _, dst), _)| *dst == port)
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn lo_delivers_each_byte_once() {
    if !live("lo_delivers_each_byte_once") {
        return;
    }
    let (listener, port) = free_listener();
    let reqs: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            format!("request number {i} ")
                .repeat(100 + i * 500)
                .into_bytes()
        })
        .collect();
    let sent = reqs.clone();
    let (cap, streams, retrans) = capture_while(&AfPacketConfig::new("lo"), move || {
        let server = serve(listener, sent.len());
        for r in &sent {
            assert_eq!(client(port, r), response(r));
        }
        server.join().expect("server");
    });
    let mut got = of_port(&streams, port);
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut want: Vec<_> = reqs
        .iter()
        .map(|r| (r.clone(), response(r), Some(CloseType::Fin)))
        .collect();
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(got.len(), 3, "one flow per connection");
    assert!(got == want, "reassembled streams differ from what was sent");
    // A packet delivered twice (an outgoing copy on lo not skipped) would count as a retransmission.
    for ((_, client_port, _), _) in streams.iter().filter(|((_, _, d), _)| *d == port) {
        assert_eq!(
            retrans.get(client_port),
            Some(&0),
            "duplicate packets on the flow from port {client_port}"
        );
    }
    let stats = cap.telemetry().snapshot();
    assert!(stats.outgoing_skipped > 0, "{stats:?}");
    assert_eq!(stats.packets, cap.counters().packets, "{stats:?}");
    assert_eq!(stats.kernel_drops, 0, "{stats:?}");
    assert_eq!(stats.malformed_blocks, 0, "{stats:?}");
    assert!(
        stats.kernel_packets >= stats.packets + stats.outgoing_skipped,
        "{stats:?}"
    );
}

#[test]
fn bpf_filter_from_tcpdump_drops_other_ports() {
    if !live("bpf_filter_from_tcpdump_drops_other_ports") {
        return;
    }
    let (l1, p1) = free_listener();
    let (l2, p2) = free_listener();
    let out = match Command::new("tcpdump")
        .args(["-i", "lo", "-ddd", &format!("tcp port {p1}")])
        .output()
    {
        Ok(o) if o.status.success() => o,
        other => {
            assert!(
                std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
                "tcpdump -ddd failed: {other:?}"
            );
            eprintln!("bpf_filter_from_tcpdump_drops_other_ports: skipped (tcpdump unavailable)");
            return;
        }
    };
    let program =
        BpfProgram::parse_ddd(&String::from_utf8_lossy(&out.stdout)).expect("tcpdump -ddd output");
    let mut config = AfPacketConfig::new("lo");
    config.filter = Some(program);
    let (cap, streams, _) = capture_while(&config, move || {
        let s1 = serve(l1, 2);
        let s2 = serve(l2, 2);
        for i in 0..2 {
            assert_eq!(
                client(p1, format!("kept {i}").as_bytes()),
                response(format!("kept {i}").as_bytes())
            );
            assert_eq!(
                client(p2, format!("dropped {i}").as_bytes()),
                response(format!("dropped {i}").as_bytes())
            );
        }
        s1.join().expect("server 1");
        s2.join().expect("server 2");
    });
    let mut kept = of_port(&streams, p1);
    kept.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        kept,
        vec![
            (
                b"kept 0".to_vec(),
                response(b"kept 0"),
                Some(CloseType::Fin)
            ),
            (
                b"kept 1".to_vec(),
                response(b"kept 1"),
                Some(CloseType::Fin)
            ),
        ]
    );
    assert!(
        of_port(&streams, p2).is_empty(),
        "port {p2} passed the filter"
    );
    assert!(
        streams.keys().all(|(_, s, d)| *s == p1 || *d == p1),
        "only port {p1} passes: {:?}",
        streams.keys().collect::<Vec<_>>()
    );
    assert_eq!(cap.counters().non_ip_packets, 0);
}

#[test]
fn fanout_two_threads_reassembles_every_connection() {
    if !live("fanout_two_threads_reassembles_every_connection") {
        return;
    }
    let (listener, port) = free_listener();
    let n = 24;
    let reqs: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("conn {i}|").repeat(1 + i * 300).into_bytes())
        .collect();
    let sent = reqs.clone();
    let mut config = AfPacketConfig::new("lo");
    config.threads = 2;
    let (cap, streams, _) = capture_while(&config, move || {
        let server = serve(listener, sent.len());
        for r in &sent {
            assert_eq!(client(port, r), response(r));
        }
        server.join().expect("server");
    });
    let ours: Vec<_> = streams.iter().filter(|((_, _, d), _)| *d == port).collect();
    let mut got: Vec<_> = ours.iter().map(|(_, v)| (*v).clone()).collect();
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut want: Vec<_> = reqs
        .iter()
        .map(|r| (r.clone(), response(r), Some(CloseType::Fin)))
        .collect();
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(got.len(), n, "one flow per connection");
    assert!(got == want, "reassembled streams differ from what was sent");
    // Flow ids encode the thread (id - 1) % 2: with 24 connections both sockets must have had some.
    let threads: std::collections::BTreeSet<u64> =
        ours.iter().map(|((id, _, _), _)| (id - 1) % 2).collect();
    assert_eq!(threads.len(), 2, "fanout spread flows over both sockets");
    let stats = cap.telemetry().snapshot();
    assert_eq!(stats.packets, cap.counters().packets, "{stats:?}");
}

#[test]
fn tiny_ring_counts_kernel_drops() {
    if !live("tiny_ring_counts_kernel_drops") {
        return;
    }
    // A 2-block ring of one page each, read slowly: the kernel must drop, and say so.
    let mut config = AfPacketConfig::new("lo");
    config.block_size = 4096;
    config.block_count = 2;
    config.frame_size = 2048;
    let mut src = AfPacketSource::open(&config).expect("open");
    let (listener, port) = free_listener();
    let server = serve(listener, 1);
    let big = vec![b'x'; 4 << 20];
    assert_eq!(client(port, &big).len(), big.len() + 3);
    server.join().expect("server");
    use fathom_capture::PacketSource;
    src.stop_handle().store(true, Ordering::Relaxed);
    let mut n = 0u64;
    while src.next_packet().expect("read").is_some() {
        n += 1;
    }
    let stats = src.stats();
    assert_eq!(stats.packets, n);
    assert!(stats.kernel_drops > 0, "{stats:?}");
    assert!(stats.kernel_packets >= stats.kernel_drops + n, "{stats:?}");
}

#[test]
fn bad_interface_is_a_clear_error() {
    let e = AfPacketSource::open(&AfPacketConfig::new("nosuchif0")).unwrap_err();
    assert!(matches!(e, AfPacketError::NoSuchInterface(_)), "{e}");
    assert_eq!(
        e.to_string(),
        "no network interface named `nosuchif0` (see `ip link`)"
    );
    let e =
        AfPacketCapture::start(&AfPacketConfig::new("bad/name"), &Config::default()).unwrap_err();
    assert!(
        matches!(e, AfPacketError::Config { field: "iface", .. }),
        "{e}"
    );
}

#[test]
fn snap_len_cuts_packets_and_keeps_wire_length() {
    if !live("snap_len_cuts_packets_and_keeps_wire_length") {
        return;
    }
    use fathom_capture::PacketSource;
    let mut config = AfPacketConfig::new("lo");
    config.snap_len = 128;
    let mut src = AfPacketSource::open(&config).expect("open");
    let (listener, port) = free_listener();
    let server = serve(listener, 1);
    let req = vec![b'y'; 3000];
    assert_eq!(client(port, &req), response(&req));
    server.join().expect("server");
    src.stop_handle().store(true, Ordering::Relaxed);
    let (mut cut, mut whole) = (0, 0);
    while let Some(p) = src.next_packet().expect("read") {
        assert!(p.data.len() <= 128, "{}", p.data.len());
        assert_eq!(p.link_type, fathom_capture::LinkType::ETHERNET);
        if p.orig_len as usize > p.data.len() {
            cut += 1;
        } else {
            whole += 1;
        }
    }
    let stats = src.stats();
    assert!(cut >= 1, "the 3000-byte request was cut");
    assert!(whole >= 3, "handshake packets fit");
    assert_eq!(stats.truncated, cut);
}
