//! Tests on real bytes: byte literals from `grpc.pcap`, and whole conversations read from the shared captures
//! (`http2.pcap`, `grpc.pcap`, Arkime's `http2-nghttp2.pcap`) with a minimal pcap reader.

use super::*;
use crate::{Engine, EngineStats, Limits, Message, MessageKind, ParseCtx};
use fathom_model::{
    ChunkOrigin, Direction, FlowKey, L4Protocol, RequestLog, ResponseStatus, StreamChunk,
};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/");

fn key(port_src: u16, port_dst: u16) -> FlowKey {
    FlowKey {
        ip_src: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip_dst: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port_src,
        port_dst,
        l4_protocol: L4Protocol::Tcp,
    }
}

fn chunk(flow_id: u64, flow: FlowKey, dir: Direction, t: u64, gap: u64, b: &[u8]) -> StreamChunk {
    StreamChunk {
        flow_id,
        flow,
        direction: dir,
        time_us: t,
        seq: Some(1000),
        gap_before: gap,
        bytes: bytes::Bytes::copy_from_slice(b),
        origin: ChunkOrigin::Packet,
    }
}

fn engine() -> Engine {
    Engine::new(vec![Arc::new(Http2Parser)], Limits::default())
}

fn run_with(mut e: Engine, chunks: &[StreamChunk]) -> (Vec<RequestLog>, EngineStats) {
    let mut logs = Vec::new();
    for c in chunks {
        e.on_chunk(c, &mut logs);
    }
    e.finish(&mut logs);
    (logs, e.stats().clone())
}

fn run(chunks: &[StreamChunk]) -> (Vec<RequestLog>, EngineStats) {
    run_with(engine(), chunks)
}

// ---------------------------------------------------------------------------------------------------------
// A minimal classic-pcap reader (Ethernet or BSD loopback, IPv4, TCP), with per-direction de-duplication.

struct Segment {
    t: u64,
    client_port: u16,
    dir: Direction,
    seq: u32,
    payload: Vec<u8>,
}

fn read_pcap(name: &str, server_port: u16) -> Vec<Segment> {
    let raw = std::fs::read(format!("{DATA_DIR}{name}")).expect("capture");
    let le = raw[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = u32_at(&raw, 20);
    let mut i = 24;
    let mut out = Vec::new();
    while i + 16 <= raw.len() {
        let t = u64::from(u32_at(&raw, i)) * 1_000_000 + u64::from(u32_at(&raw, i + 4));
        let caplen = u32_at(&raw, i + 8) as usize;
        let pkt = &raw[i + 16..i + 16 + caplen];
        i += 16 + caplen;
        let ip = match link {
            1 if pkt[12..14] == [0x08, 0x00] => &pkt[14..],
            0 => &pkt[4..],
            _ => continue,
        };
        if ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let tcp = &ip[ihl..total];
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let off = usize::from(tcp[12] >> 4) * 4;
        let payload = tcp[off..].to_vec();
        if payload.is_empty() {
            continue;
        }
        let (dir, client_port) = if dport == server_port {
            (Direction::ClientToServer, sport)
        } else if sport == server_port {
            (Direction::ServerToClient, dport)
        } else {
            continue;
        };
        out.push(Segment {
            t,
            client_port,
            dir,
            seq,
            payload,
        });
    }
    // Drop retransmitted bytes (per connection and direction).
    let mut next: std::collections::HashMap<(u16, Direction), u32> = Default::default();
    out.retain_mut(|s| {
        let n = next.entry((s.client_port, s.dir)).or_insert(s.seq);
        let skip = n.wrapping_sub(s.seq) as usize;
        if skip >= s.payload.len() && skip < (1 << 30) {
            return false;
        }
        if skip < (1 << 30) {
            s.payload.drain(..skip);
            s.seq = s.seq.wrapping_add(skip as u32);
        }
        *n = s.seq.wrapping_add(s.payload.len() as u32);
        true
    });
    out
}

fn chunks_of(segs: &[Segment], server_port: u16) -> Vec<StreamChunk> {
    segs.iter()
        .map(|s| {
            let mut c = chunk(
                u64::from(s.client_port),
                key(s.client_port, server_port),
                s.dir,
                s.t,
                0,
                &s.payload,
            );
            c.seq = Some(s.seq);
            c
        })
        .collect()
}

fn capture(name: &str, port: u16) -> Vec<StreamChunk> {
    chunks_of(&read_pcap(name, port), port)
}

#[derive(Debug, Clone)]
struct Truth {
    client_port: Option<u16>,
    req_id: u64,
    kind: String,
    resource: String,
    domain: String,
    code: i64,
    status: String,
    traceparent: Option<String>,
}

fn truth(name: &str) -> Vec<Truth> {
    let text = std::fs::read_to_string(format!("{DATA_DIR}truth/{name}")).expect("truth");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Truth {
                client_port: v["client_port"].as_u64().map(|p| p as u16),
                req_id: v["req_id"].as_u64().unwrap(),
                kind: v["type"].as_str().unwrap().to_string(),
                resource: v["resource"].as_str().unwrap().to_string(),
                domain: v["domain"].as_str().unwrap().to_string(),
                code: v["code"].as_i64().unwrap(),
                status: v["status"].as_str().unwrap().to_string(),
                traceparent: v["traceparent"].as_str().map(str::to_string),
            }
        })
        .collect()
}

/// The truth record a log is about (by client port when the client knew it, else by stream id and path).
fn truth_for<'a>(all: &'a [Truth], log: &RequestLog) -> Option<&'a Truth> {
    all.iter().find(|t| {
        Some(t.req_id) == log.request_id
            && match t.client_port {
                Some(p) => p == log.port_src,
                None => log.request_resource.as_deref() == Some(t.resource.as_str()),
            }
    })
}

/// No field of `log` contradicts the truth (unknown fields are allowed).
fn assert_not_wrong(all: &[Truth], log: &RequestLog) {
    let Some(t) = all.iter().find(|t| {
        Some(t.req_id) == log.request_id
            && t.client_port.is_none_or(|p| p == log.port_src)
            && log
                .request_resource
                .as_deref()
                .is_none_or(|r| r == t.resource)
    }) else {
        // A stream whose request was never seen cannot be logged with a request half.
        assert!(log.request_type.is_none(), "unexpected log {log:?}");
        return;
    };
    let ok = |got: Option<&str>, want: &str| got.is_none_or(|g| g == want);
    assert!(ok(log.request_type.as_deref(), &t.kind), "{log:?}");
    assert!(ok(log.request_resource.as_deref(), &t.resource), "{log:?}");
    assert!(ok(log.request_domain.as_deref(), &t.domain), "{log:?}");
    if log.response_status != ResponseStatus::Timeout {
        assert!(log.response_code.is_none_or(|c| c == t.code), "{log:?}");
    }
}

fn check_against_truth(logs: &[RequestLog], all: &[Truth], proto: &str) {
    assert_eq!(logs.len(), all.len(), "{logs:#?}");
    for log in logs {
        let t = truth_for(all, log).unwrap_or_else(|| panic!("no truth for {log:?}"));
        assert_eq!(log.l7_protocol.as_str(), proto);
        assert_eq!(log.version.as_deref(), Some("2"));
        assert_eq!(log.request_type.as_deref(), Some(t.kind.as_str()));
        assert_eq!(log.request_resource.as_deref(), Some(t.resource.as_str()));
        assert_eq!(log.request_domain.as_deref(), Some(t.domain.as_str()));
        assert_eq!(log.response_code, Some(t.code), "{log:?}");
        assert_eq!(log.response_status.as_str(), t.status);
        let want_trace = t.traceparent.as_deref().map(|tp| tp[3..35].to_string());
        assert_eq!(log.trace_id, want_trace);
        assert!(log.response_duration_us.is_some());
        assert!(log.captured_request_byte > 0 && log.captured_response_byte > 0);
        assert!(log.req_tcp_seq.is_some() && log.resp_tcp_seq.is_some());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Byte literals: the first exchange of grpc.pcap (frames 4, 6, 8, 10, 11, 13-15).

const G4: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a000024040000000000000200000000000300000000000400400000000500400000000600004000fe0300000001000004080000000000003f0001";
const G6: &str =
    "000018040000000000000400400000000500400000000600004000fe0300000001000004080000000000003f0001";
const G8: &str = "000000040100000000";
const G10: &str = "000000040100000000";
const G11: &str = "0000e701040000000140053a70617468182f64656d6f2e76312e436174616c6f672f4765744974656d400a3a617574686f726974790f3132372e302e302e313a31353035318386400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634002746508747261696c6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970400c677270632d74696d656f757403313053400a757365722d6167656e7430677270632d707974686f6e2f312e38352e3320677270632d632f35382e302e3020286c696e75783b20636874747032290000040800000000010000000500000f000100000001000000000a0a08736b752d3835363000000408000000000000000005";
const G13: &str = "000008060000000000e54f5e11c0720bb6";
const G14: &str = "000008060100000000e54f5e11c0720bb6";
const G15: &str = "00004e01040000000188400c636f6e74656e742d74797065106170706c69636174696f6e2f677270634014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c6174652c20677a6970000021000000000001000000001c0a08736b752d38353630120d6974656d2d736b752d3835363018a00600001e010500000001400b677270632d7374617475730130000c677270632d6d657373616765000000040800000000000000000f";

fn grpc_first_exchange() -> Vec<StreamChunk> {
    use Direction::*;
    let f = key(52176, 15051);
    [
        (ClientToServer, G4),
        (ServerToClient, G6),
        (ServerToClient, G8),
        (ClientToServer, G10),
        (ClientToServer, G11),
        (ServerToClient, G13),
        (ClientToServer, G14),
        (ServerToClient, G15),
    ]
    .iter()
    .enumerate()
    .map(|(i, (d, h))| chunk(1, f, *d, 1_000 + i as u64 * 100, 0, &hex(h)))
    .collect()
}

#[test]
fn probe_preface_and_frames() {
    assert_eq!(probe(&hex(G4)), Probe::Yes);
    assert_eq!(probe(&hex(G4)[..16]), Probe::Yes);
    assert_eq!(probe(b"PRI * HT"), Probe::Maybe);
    // Mid-connection: server SETTINGS + WINDOW_UPDATE (two frames), a lone SETTINGS ACK (one exact frame).
    assert_eq!(probe(&hex(G6)), Probe::Yes);
    assert_eq!(probe(&hex(G8)), Probe::Maybe);
    assert_eq!(probe(&hex(G15)), Probe::Yes);
    assert_eq!(probe(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Probe::No);
    assert_eq!(probe(b"*1\r\n$4\r\nPING\r\n"), Probe::No);
    assert_eq!(probe(b""), Probe::No);
}

#[test]
fn grpc_unary_call_from_real_bytes() {
    let (logs, stats) = run(&grpc_first_exchange());
    assert_eq!(logs.len(), 1, "{stats:?}");
    let l = &logs[0];
    // Values from tshark's dissection of frames 11 and 15.
    assert_eq!(l.l7_protocol, L7Protocol::Grpc);
    assert_eq!(l.request_type.as_deref(), Some("POST"));
    assert_eq!(
        l.request_resource.as_deref(),
        Some("/demo.v1.Catalog/GetItem")
    );
    assert_eq!(l.endpoint.as_deref(), Some("/demo.v1.Catalog/GetItem"));
    assert_eq!(l.request_domain.as_deref(), Some("127.0.0.1:15051"));
    assert_eq!(l.request_id, Some(1));
    assert_eq!(l.response_code, Some(0));
    assert_eq!(l.response_status, ResponseStatus::Ok);
    assert_eq!(l.response_exception, None);
    // Request: HEADERS (9+231) + DATA (9+15) of stream 1; response: HEADERS (9+78), DATA (9+33), trailers (9+30).
    assert_eq!(l.captured_request_byte, 240 + 24);
    assert_eq!(l.captured_response_byte, 87 + 42 + 39);
    assert_eq!(l.start_time_us, 1_400);
    assert_eq!(l.end_time_us, 1_700);
}

#[test]
fn flow_parser_reports_need_more_and_offsets() {
    let limits = Limits::default();
    let mut p = Http2Flow::new(&limits);
    let flow = key(52176, 15051);
    let ctx = |dir, off| ParseCtx {
        direction: dir,
        flow: &flow,
        stream_offset: off,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    let mut out: Vec<Message> = Vec::new();
    let g4 = hex(G4);
    // Half a preface: wait.
    assert_eq!(
        p.parse(&g4[..10], &ctx(Direction::ClientToServer, 0), &mut out),
        Ok(0)
    );
    // The preface and SETTINGS, with half a WINDOW_UPDATE frame.
    assert_eq!(
        p.parse(&g4[..75], &ctx(Direction::ClientToServer, 0), &mut out),
        Ok(69)
    );
    assert_eq!(
        p.parse(&g4[69..], &ctx(Direction::ClientToServer, 69), &mut out),
        Ok(13)
    );
    let g11 = hex(G11);
    let n = p
        .parse(&g11, &ctx(Direction::ClientToServer, 82 + 9), &mut out)
        .unwrap();
    assert_eq!(n, g11.len());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].kind, MessageKind::Request);
    assert_eq!(out[0].start, 91);
    assert_eq!(out[0].end, 91 + 240 + 13 + 24);
    assert_eq!(out[0].wire_bytes, 264);
}

// ---------------------------------------------------------------------------------------------------------
// Whole captures.

#[test]
fn http2_capture_matches_ground_truth() {
    let (logs, stats) = run(&capture("http2.pcap", 18081));
    assert_eq!(stats.orphan_responses, 0);
    assert!(stats.parse_errors.is_empty(), "{stats:?}");
    check_against_truth(&logs, &truth("http2.jsonl"), "http2");
    // httpx reuses the dynamic table: its later streams' :authority is an index into it.
    let httpx = logs.iter().filter(|l| l.port_src == 34672).count();
    assert_eq!(httpx, 5);
    let ep: Vec<_> = logs.iter().filter_map(|l| l.endpoint.as_deref()).collect();
    assert!(ep.contains(&"/api/users/{id}"));
    let post = logs
        .iter()
        .find(|l| l.request_type.as_deref() == Some("POST"))
        .unwrap();
    assert!(post.captured_request_byte > 0);
}

#[test]
fn grpc_capture_matches_ground_truth() {
    let (logs, stats) = run(&capture("grpc.pcap", 15051));
    assert!(stats.parse_errors.is_empty(), "{stats:?}");
    check_against_truth(&logs, &truth("grpc.jsonl"), "grpc");
    let nf = logs.iter().find(|l| l.response_code == Some(5)).unwrap();
    assert_eq!(
        nf.response_exception.as_deref(),
        Some("item missing-58 not found")
    );
    assert_eq!(nf.response_status, ResponseStatus::ClientError);
}

#[test]
fn arkime_nghttp2_continuation_and_push() {
    // nghttp2.org: a 16 KiB HEADERS + CONTINUATION request block, and a server push of a stylesheet.
    let (logs, stats) = run(&capture("external/arkime/pcap/http2-nghttp2.pcap", 80));
    assert!(stats.parse_errors.is_empty(), "{stats:?}");
    assert_eq!(logs.len(), 2, "{logs:#?}");
    let root = logs
        .iter()
        .find(|l| l.request_resource.as_deref() == Some("/"))
        .unwrap();
    // From Arkime's expected session: host nghttp2.org, GET, status 200.
    assert_eq!(root.request_type.as_deref(), Some("GET"));
    assert_eq!(root.request_domain.as_deref(), Some("nghttp2.org"));
    assert_eq!(root.response_code, Some(200));
    assert_eq!(root.request_id, Some(13));
    assert!(root.captured_request_byte > 16_384);
    let push = logs
        .iter()
        .find(|l| l.request_resource.as_deref() == Some("/stylesheets/screen.css"))
        .unwrap();
    assert_eq!(push.request_id, Some(2));
    assert_eq!(push.response_code, Some(200));
    assert_eq!(push.response_duration_us, None);
}

fn normalise(mut logs: Vec<RequestLog>) -> Vec<RequestLog> {
    logs.sort_by_key(|l| (l.port_src, l.request_id));
    logs
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    for (name, port) in [("grpc.pcap", 15051u16), ("http2.pcap", 18081)] {
        let all = capture(name, port);
        // One connection per capture keeps this quick: the first one.
        let first = all[0].flow_id;
        let conv: Vec<StreamChunk> = all.into_iter().filter(|c| c.flow_id == first).collect();
        let (want, _) = run(&conv);
        let want = normalise(want);
        assert!(!want.is_empty());
        for (i, c) in conv.iter().enumerate() {
            for cut in 1..c.bytes.len() {
                let mut v = conv.clone();
                let mut a = c.clone();
                let mut b = c.clone();
                a.bytes = c.bytes.slice(..cut);
                b.bytes = c.bytes.slice(cut..);
                b.seq = c.seq.map(|s| s.wrapping_add(cut as u32));
                v.splice(i..=i, [a, b]);
                let (got, _) = run(&v);
                assert_eq!(normalise(got), want, "{name}: chunk {i} cut at {cut}");
            }
        }
        // And byte by byte.
        let mut bytewise = Vec::new();
        for c in &conv {
            for k in 0..c.bytes.len() {
                let mut x = c.clone();
                x.bytes = c.bytes.slice(k..k + 1);
                x.seq = c.seq.map(|s| s.wrapping_add(k as u32));
                bytewise.push(x);
            }
        }
        // The session keeps 256 offset marks per direction, so with one chunk per byte the TCP sequence
        // numbers and times of old offsets are approximated: compare everything else.
        let mask = |v: Vec<RequestLog>| {
            normalise(v)
                .into_iter()
                .map(|mut l| {
                    l.req_tcp_seq = None;
                    l.resp_tcp_seq = None;
                    l.start_time_us = 0;
                    l.end_time_us = 0;
                    l.response_duration_us = l.response_duration_us.map(|_| 0);
                    l
                })
                .collect::<Vec<_>>()
        };
        let (got, _) = run(&bytewise);
        assert_eq!(mask(got), mask(want.clone()), "{name}: byte by byte");
    }
}

/// The httpx connection of http2.pcap (5 sequential streams sharing a dynamic table).
fn httpx_conversation() -> Vec<StreamChunk> {
    capture("http2.pcap", 18081)
        .into_iter()
        .filter(|c| c.flow.port_src == 34672)
        .collect()
}

#[test]
fn mid_stream_join_never_emits_a_wrong_header() {
    let conv = httpx_conversation();
    let all = truth("http2.jsonl");
    // Join after the first k chunks, and also after dropping every byte count of the first chunk kept.
    let mut complete = 0;
    for k in 1..conv.len() {
        for drop in [0usize, 1, 5, 9, 17] {
            let mut v: Vec<StreamChunk> = conv[k..].to_vec();
            if v[0].bytes.len() <= drop {
                continue;
            }
            v[0].bytes = v[0].bytes.slice(drop..);
            let (logs, _) = run(&v);
            for l in &logs {
                assert_not_wrong(&all, l);
                if l.request_type.is_some() && l.request_resource.is_some() {
                    complete += 1;
                }
            }
        }
    }
    // Static-table and literal fields still give usable logs after a join.
    assert!(complete > 0);
}

#[test]
fn gap_in_the_middle_never_emits_a_wrong_header() {
    let conv = httpx_conversation();
    let all = truth("http2.jsonl");
    for i in 1..conv.len() {
        let mut v = conv.clone();
        let lost = v.remove(i);
        if let Some(next) = v[i..].iter_mut().find(|c| c.direction == lost.direction) {
            next.gap_before = lost.bytes.len() as u64;
        }
        let (logs, stats) = run(&v);
        for l in &logs {
            assert_not_wrong(&all, l);
        }
        assert!(stats.gaps <= 1);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Synthetic frames (built with static-table HPACK only) for the paths the captures do not exercise.

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// :method GET, :scheme http, :path /, :authority "a" (literal without indexing).
const GET_ROOT: &[u8] = &[0x82, 0x86, 0x84, 0x01, 0x01, b'a'];

fn conn_start() -> (Vec<u8>, Vec<u8>) {
    let mut c = PREFACE.to_vec();
    c.extend(frame(4, 0, 0, &[]));
    (c, frame(4, 0, 0, &[]))
}

fn exchange(client: &[u8], server: &[u8]) -> Vec<StreamChunk> {
    let f = key(40000, 8080);
    vec![
        chunk(7, f, Direction::ClientToServer, 10, 0, client),
        chunk(7, f, Direction::ServerToClient, 20, 0, server),
    ]
}

#[test]
fn rst_stream_ends_the_stream_as_an_error() {
    let (mut c, mut s) = conn_start();
    // Stream 1: reset by the server; stream 3: reset by the client before any response.
    c.extend(frame(1, 0x5, 1, GET_ROOT));
    c.extend(frame(1, 0x5, 3, GET_ROOT));
    c.extend(frame(3, 0, 3, &8u32.to_be_bytes()));
    s.extend(frame(3, 0, 1, &2u32.to_be_bytes()));
    let (logs, _) = run(&exchange(&c, &s));
    assert_eq!(logs.len(), 2);
    let by_id = |id| logs.iter().find(|l| l.request_id == Some(id)).unwrap();
    assert_eq!(by_id(1).response_status, ResponseStatus::ServerError);
    assert_eq!(
        by_id(1).response_exception.as_deref(),
        Some("RST_STREAM INTERNAL_ERROR")
    );
    assert_eq!(by_id(3).response_status, ResponseStatus::ClientError);
    assert_eq!(
        by_id(3).response_exception.as_deref(),
        Some("RST_STREAM CANCEL")
    );
    assert_eq!(by_id(3).request_domain.as_deref(), Some("a"));
}

#[test]
fn padding_priority_and_continuation() {
    let (mut c, mut s) = conn_start();
    // HEADERS with PADDED and PRIORITY, the block split over two CONTINUATION frames.
    let mut p = vec![3u8]; // pad length
    p.extend_from_slice(&[0, 0, 0, 0, 16]); // priority: dependency 0, weight 16
    p.extend_from_slice(&GET_ROOT[..2]);
    p.extend_from_slice(&[0, 0, 0]);
    c.extend(frame(1, 0x8 | 0x20 | 0x1, 5, &p));
    c.extend(frame(9, 0, 5, &GET_ROOT[2..4]));
    c.extend(frame(9, 0x4, 5, &GET_ROOT[4..]));
    // Response: :status 404 (static 13) then a padded DATA frame with END_STREAM.
    s.extend(frame(1, 0x4, 5, &[0x8d]));
    s.extend(frame(0, 0x8 | 0x1, 5, &[2, b'x', 0, 0]));
    let (logs, stats) = run(&exchange(&c, &s));
    assert!(stats.parse_errors.is_empty(), "{stats:?}");
    assert_eq!(logs.len(), 1);
    let l = &logs[0];
    assert_eq!(l.request_resource.as_deref(), Some("/"));
    assert_eq!(l.request_domain.as_deref(), Some("a"));
    assert_eq!(l.response_code, Some(404));
    assert_eq!(l.response_status, ResponseStatus::ClientError);
    assert_eq!(l.response_exception.as_deref(), Some("Not Found"));
    assert_eq!(l.l7_protocol, L7Protocol::Http2);
}

#[test]
fn oversized_header_block_is_counted_and_resynchronised() {
    let limits = Limits {
        max_message_len: 64,
        ..Limits::default()
    };
    let (mut c, mut s) = conn_start();
    let mut big = GET_ROOT.to_vec();
    big.extend_from_slice(&[0x40, 0x01, b'x', 0x7f, 0x00]);
    big.extend(std::iter::repeat_n(b'y', 127));
    c.extend(frame(1, 0x5, 1, &big));
    c.extend(frame(1, 0x5, 3, GET_ROOT));
    s.extend(frame(1, 0x5, 3, &[0x88]));
    let mut v = exchange(&c, &s);
    // Deliver the second request in its own segment so that the direction can resynchronise on it.
    let cut = c.len() - (9 + GET_ROOT.len());
    let second = v[0].bytes.slice(cut..);
    v[0].bytes = v[0].bytes.slice(..cut);
    let mut c2 = v[0].clone();
    c2.bytes = second;
    v.insert(1, c2);
    let (logs, stats) = run_with(Engine::new(vec![Arc::new(Http2Parser)], limits), &v);
    assert_eq!(stats.parse_errors.get("too_large"), Some(&1), "{stats:?}");
    // Stream 3 after the resynchronisation: static and literal fields only (HPACK state was lost).
    let l = logs.iter().find(|l| l.request_id == Some(3)).unwrap();
    assert_eq!(l.request_type.as_deref(), Some("GET"));
    assert_eq!(l.response_code, Some(200));
}

#[test]
fn streams_are_bounded() {
    let limits = Limits {
        max_exchanges_in_flight: 4,
        ..Limits::default()
    };
    let (mut c, s) = conn_start();
    for id in (1..40u32).step_by(2) {
        c.extend(frame(1, 0x4, id, GET_ROOT)); // no END_STREAM, never answered
    }
    let (logs, stats) = run_with(
        Engine::new(vec![Arc::new(Http2Parser)], limits),
        &exchange(&c, &s),
    );
    assert_eq!(logs.len(), 20);
    assert!(logs
        .iter()
        .all(|l| l.response_status == ResponseStatus::Timeout));
    assert!(stats.requests_evicted > 0);
}

#[test]
fn grpc_error_without_grpc_status_maps_http_status() {
    let (mut c, mut s) = conn_start();
    // content-type: application/grpc (static name 31, literal value).
    let mut req = GET_ROOT.to_vec();
    req.extend_from_slice(&[0x0f, 0x10, 16]);
    req.extend_from_slice(b"application/grpc");
    c.extend(frame(1, 0x5, 1, &req));
    s.extend(frame(1, 0x5, 1, &[0x08, 0x03, b'5', b'0', b'3'])); // :status 503 (static name 8)
    let (logs, _) = run(&exchange(&c, &s));
    let l = &logs[0];
    assert_eq!(l.l7_protocol, L7Protocol::Grpc);
    assert_eq!(l.response_code, Some(14));
    assert_eq!(l.response_status, ResponseStatus::ServerError);
    assert_eq!(l.response_exception.as_deref(), Some("UNAVAILABLE"));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn feed(p: &mut Http2Flow, dir: Direction, bytes: &[u8], offset: u64) {
        let limits = Limits::default();
        let flow = key(1, 2);
        let ctx = ParseCtx {
            direction: dir,
            flow: &flow,
            stream_offset: offset,
            time_us: 0,
            limits: &limits,
            datagram: false,
        };
        let mut out = Vec::new();
        if let Ok(n) = p.parse(bytes, &ctx, &mut out) {
            assert!(n <= bytes.len());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(a in proptest::collection::vec(any::<u8>(), 0..600),
                                       b in proptest::collection::vec(any::<u8>(), 0..600),
                                       off in 0u64..3) {
            let mut p = Http2Flow::new(&Limits::default());
            feed(&mut p, Direction::ClientToServer, &a, off);
            feed(&mut p, Direction::ServerToClient, &b, off);
            p.on_gap(Direction::ClientToServer, 3);
            feed(&mut p, Direction::ClientToServer, &b, 1000);
            let mut out = Vec::new();
            p.on_close([0, 0], &mut out);
            let _ = probe(&a);
        }

        #[test]
        fn arbitrary_frames_after_the_preface_never_panic(
            frames in proptest::collection::vec(
                (0u8..12, any::<u8>(), 0u32..8, proptest::collection::vec(any::<u8>(), 0..40)), 0..12)) {
            let (mut c, s) = conn_start();
            let mut srv = s.clone();
            for (i, (k, f, sid, payload)) in frames.iter().enumerate() {
                let fr = frame(*k, *f, *sid, payload);
                if i % 2 == 0 { c.extend(fr) } else { srv.extend(fr) }
            }
            let _ = run(&exchange(&c, &srv));
        }
    }
}

#[test]
fn settings_header_table_size_allows_larger_tables() {
    // The client encodes with a dynamic table size update to 8192 (0x3f 0xe1 0x3f), then adds a literal
    // `:authority` with incremental indexing (static name 1), and reuses it (index 62) on the next stream.
    let block1: &[u8] = &[0x3f, 0xe1, 0x3f, 0x82, 0x86, 0x84, 0x41, 0x01, b'h'];
    let block2: &[u8] = &[0x82, 0x86, 0x84, 0xbe];
    for (server_allows, want_domain) in [(true, Some("h")), (false, None)] {
        let (mut c, _) = conn_start();
        // The server's SETTINGS: SETTINGS_HEADER_TABLE_SIZE = 8192, or nothing.
        let mut s = if server_allows {
            frame(4, 0, 0, &[0, 1, 0, 0, 0x20, 0])
        } else {
            frame(4, 0, 0, &[])
        };
        c.extend(frame(1, 0x5, 1, block1));
        c.extend(frame(1, 0x5, 3, block2));
        let settings_len = s.len();
        s.extend(frame(1, 0x5, 1, &[0x88]));
        s.extend(frame(1, 0x5, 3, &[0x88]));
        let f = key(40000, 8080);
        let v = vec![
            chunk(9, f, Direction::ClientToServer, 10, 0, &c[..PREFACE.len()]),
            chunk(9, f, Direction::ServerToClient, 15, 0, &s[..settings_len]),
            chunk(9, f, Direction::ClientToServer, 20, 0, &c[PREFACE.len()..]),
            chunk(9, f, Direction::ServerToClient, 25, 0, &s[settings_len..]),
        ];
        let (logs, _) = run(&v);
        let l3 = logs.iter().find(|l| l.request_id == Some(3)).unwrap();
        // Without the SETTINGS the size update is invalid: the table is unknown and index 62 is not guessed.
        assert_eq!(l3.request_domain.as_deref(), want_domain);
        assert_eq!(l3.request_type.as_deref(), Some("GET"));
    }
}
