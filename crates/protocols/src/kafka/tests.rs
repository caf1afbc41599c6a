//! Tests on real bytes from `kafka.pcap` (kcat 1.7.1 / librdkafka 2.0.2 against its mock cluster), through the
//! parser and through the [`crate::Engine`].

use super::*;
use crate::Engine;
use fathom_model::{ChunkOrigin, L4Protocol, RequestLog, StreamChunk};
use std::sync::Arc;

use Direction::{ClientToServer as C, ServerToClient as S};

/// kafka.pcap, the `kcat-producer-a` connection (client port 35814), every segment in capture order (hex).
const PRODUCER_A: &[(Direction, &str)] = &[
    (C, "0000002c0012000300000001000f6b6361742d70726f64756365722d61000b6c696272646b61666b6106322e302e3200"),
    (S, "000000110000000100230100120000000200000000"),
    (C, "000000190012000000000002000f6b6361742d70726f64756365722d61"),
    (S, "000000700000000200000000001100000000000700010000000b000200000005000300000002000800000007000900000005000a00000002000b00000005000c00000003000d00000001000e00000003001200000002001600000004001800000001001900000001001a00000001001c00000002"),
    (C, "000000250003000200000003000f6b6361742d70726f64756365722d610000000100066f7264657273"),
    (S, "000000b500000003000000010000000100093132372e302e302e310000ab23ffff00176d6f636b436c75737465723135386135303534643664380000000000000001000000066f726465727300000000040000000000000000000100000001000000010000000100000001000000000001000000010000000100000001000000010000000100000000000200000001000000010000000100000001000000010000000000030000000100000001000000010000000100000001"),
    (C, "0000008c0000000700000004000f6b6361742d70726f64756365722d61ffffffff000075300000000100066f726465727300000001000000000000005300000000000000000000004700000000028ef4f387000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d30206372656174656400"),
    (S, "00000036000000040000000100066f726465727300000001000000000000000000000000000000000000000004d2000000000000000000000000"),
    (C, "0000008c0000000700000005000f6b6361742d70726f64756365722d61ffffffff000075300000000100066f7264657273000000010000000000000053000000000000000000000047000000000245a28822000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d31206372656174656400"),
    (S, "00000036000000050000000100066f726465727300000001000000000000000000000000000100000000000004d2000000000000000000000000"),
    (C, "0000008c0000000700000006000f6b6361742d70726f64756365722d61ffffffff000075300000000100066f726465727300000001000000000000005300000000000000000000004700000000021db4723c000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d32206372656174656400"),
    (S, "00000036000000060000000100066f726465727300000001000000000000000000000000000200000000000004d2000000000000000000000000"),
    (C, "0000008c0000000700000007000f6b6361742d70726f64756365722d61ffffffff000075300000000100066f72646572730000000100000000000000530000000000000000000000470000000002d6e20999000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d33206372656174656400"),
    (S, "00000036000000070000000100066f726465727300000001000000000000000000000000000300000000000004d2000000000000000000000000"),
];

/// kafka.pcap, the `kcat-consumer` connection (client port 35842); its last Fetch is never answered.
const CONSUMER: &[(Direction, &str)] = &[
    (C, "0000002a0012000300000001000d6b6361742d636f6e73756d6572000b6c696272646b61666b6106322e302e3200"),
    (S, "000000110000000100230100120000000200000000"),
    (C, "000000170012000000000002000d6b6361742d636f6e73756d6572"),
    (S, "000000700000000200000000001100000000000700010000000b000200000005000300000002000800000007000900000005000a00000002000b00000005000c00000003000d00000001000e00000003001200000002001600000004001800000001001900000001001a00000001001c00000002"),
    (C, "000000230003000200000003000d6b6361742d636f6e73756d65720000000100066f7264657273"),
    (S, "000000b500000003000000010000000100093132372e302e302e310000ab23ffff00176d6f636b436c75737465723135386135303534643664380000000000000001000000066f726465727300000000040000000000000000000100000001000000010000000100000001000000000001000000010000000100000001000000010000000100000000000200000001000000010000000100000001000000010000000000030000000100000001000000010000000100000001"),
    (C, "000000230003000200000004000d6b6361742d636f6e73756d65720000000100066f7264657273"),
    (S, "000000b500000004000000010000000100093132372e302e302e310000ab23ffff00176d6f636b436c75737465723135386135303534643664380000000000000001000000066f726465727300000000040000000000000000000100000001000000010000000100000001000000000001000000010000000100000001000000010000000100000000000200000001000000010000000100000001000000010000000000030000000100000001000000010000000100000001"),
    (C, "000000380002000200000005000d6b6361742d636f6e73756d6572ffffffff010000000100066f72646572730000000100000000fffffffffffffffe"),
    (S, "0000002e00000005000000000000000100066f726465727300000001000000000000ffffffffffffffff0000000000000000"),
    (C, "000000620001000b00000006000d6b6361742d636f6e73756d6572ffffffff000001f400000001032000000100000000ffffffff0000000100066f72646572730000000100000000ffffffff0000000000000000ffffffffffffffff00100000000000000000"),
    (S, "0000009b00000006000000000000000000000000000100066f72646572730000000100000000000000000000000000040000000000000004000000000000000000000000ffffffff0000005300000000000000000000004700000000028ef4f387000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d30206372656174656400"),
    (C, "000000620001000b00000007000d6b6361742d636f6e73756d6572ffffffff000001f400000001032000000100000000ffffffff0000000100066f72646572730000000100000000ffffffff0000000000000001ffffffffffffffff00100000000000000000"),
    (S, "0000009b00000007000000000000000000000000000100066f72646572730000000100000000000000000000000000040000000000000004000000000000000000000000ffffffff00000053000000000000000100000047000000000245a28822000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d31206372656174656400"),
    (C, "000000620001000b00000008000d6b6361742d636f6e73756d6572ffffffff000001f400000001032000000100000000ffffffff0000000100066f72646572730000000100000000ffffffff0000000000000002ffffffffffffffff00100000000000000000"),
    (S, "0000009b00000008000000000000000000000000000100066f72646572730000000100000000000000000000000000040000000000000004000000000000000000000000ffffffff0000005300000000000000020000004700000000021db4723c000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d32206372656174656400"),
    (C, "000000620001000b00000009000d6b6361742d636f6e73756d6572ffffffff000001f400000001032000000100000000ffffffff0000000100066f72646572730000000100000000ffffffff0000000000000003ffffffffffffffff00100000000000000000"),
    (S, "0000009b00000009000000000000000000000000000100066f72646572730000000100000000000000000000000000040000000000000004000000000000000000000000ffffffff000000530000000000000003000000470000000002d6e20999000000000000000001a21a9651fc000001a21a9651fcffffffffffffffffffffffffffff000000012a000000011e6f726465722d33206372656174656400"),
    (C, "000000620001000b0000000a000d6b6361742d636f6e73756d6572ffffffff000001f400000001032000000100000000ffffffff0000000100066f72646572730000000100000000ffffffff0000000000000004ffffffffffffffff00100000000000000000"),
    (S, "000000480000000a000000000000000000000000000100066f72646572730000000100000000000000000000000000040000000000000004000000000000000000000000ffffffff00000000"),
    (C, "000000620001000b0000000b000d6b6361742d636f6e73756d6572ffffffff000001f400000001032000000100000000ffffffff0000000100066f72646572730000000100000000ffffffff0000000000000004ffffffffffffffff00100000000000000000"),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn flow() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 35814,
        port_dst: 43811,
        l4_protocol: L4Protocol::Tcp,
    }
}

type Piece = (Direction, u64, u64, Vec<u8>);

fn engine() -> Engine {
    Engine::new(
        vec![Arc::new(KafkaParser) as Arc<dyn L7Parser>],
        Limits::default(),
    )
}

fn run_pieces(pieces: &[Piece]) -> Vec<RequestLog> {
    let mut e = engine();
    let mut logs = Vec::new();
    for (dir, t, gap, bytes) in pieces {
        let chunk = StreamChunk {
            flow_id: 1,
            flow: flow(),
            direction: *dir,
            time_us: *t,
            seq: None,
            gap_before: *gap,
            bytes: bytes::Bytes::copy_from_slice(bytes),
            origin: ChunkOrigin::Packet,
        };
        e.on_chunk(&chunk, &mut logs);
    }
    e.finish(&mut logs);
    logs
}

fn conv_pieces(conv: &[(Direction, &str)]) -> Vec<Piece> {
    conv.iter()
        .enumerate()
        .map(|(i, (d, h))| (*d, 1_000 + i as u64 * 10, 0, unhex(h)))
        .collect()
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<u64>,
    Option<String>,
    String,
    Option<i64>,
);

fn rows(logs: &[RequestLog]) -> Vec<Row> {
    logs.iter()
        .map(|l| {
            (
                l.request_type.clone().unwrap_or_default(),
                l.version.clone(),
                l.request_resource.clone(),
                l.request_id,
                l.request_domain.clone(),
                l.response_status.as_str().to_string(),
                l.response_code,
            )
        })
        .collect()
}

fn row(t: &str, v: &str, res: Option<&str>, id: u64, dom: &str, st: &str) -> Row {
    (
        t.into(),
        Some(v.into()),
        res.map(Into::into),
        Some(id),
        Some(dom.into()),
        st.into(),
        None,
    )
}

/// From truth/kafka.jsonl (librdkafka's `debug=protocol` accounting): type, api_version, resource, req_id,
/// domain, status; Metadata topics (not in librdkafka's log) from tshark's `kafka.topic_name`.
fn producer_a_truth() -> Vec<Row> {
    let d = "kcat-producer-a";
    vec![
        row("ApiVersions", "3", None, 1, d, "ok"),
        row("ApiVersions", "0", None, 2, d, "ok"),
        row("Metadata", "2", Some("orders"), 3, d, "ok"),
        row("Produce", "7", Some("orders"), 4, d, "ok"),
        row("Produce", "7", Some("orders"), 5, d, "ok"),
        row("Produce", "7", Some("orders"), 6, d, "ok"),
        row("Produce", "7", Some("orders"), 7, d, "ok"),
    ]
}

fn consumer_truth() -> Vec<Row> {
    let d = "kcat-consumer";
    let mut v = vec![
        row("ApiVersions", "3", None, 1, d, "ok"),
        row("ApiVersions", "0", None, 2, d, "ok"),
        row("Metadata", "2", Some("orders"), 3, d, "ok"),
        row("Metadata", "2", Some("orders"), 4, d, "ok"),
        row("ListOffsets", "2", Some("orders"), 5, d, "ok"),
    ];
    for id in 6..=10 {
        v.push(row("Fetch", "11", Some("orders"), id, d, "ok"));
    }
    v.push(row("Fetch", "11", Some("orders"), 11, d, "timeout"));
    v
}

#[test]
fn real_producer_connection_matches_truth() {
    let logs = run_pieces(&conv_pieces(PRODUCER_A));
    assert_eq!(rows(&logs), producer_a_truth());
    // The mock answers ApiVersions v3 with UNSUPPORTED_VERSION: version negotiation, not an error.
    assert_eq!(
        logs[0].response_result.as_deref(),
        Some("UNSUPPORTED_VERSION")
    );
    assert!(logs.iter().all(|l| l.l7_protocol == L7Protocol::Kafka));
    assert_eq!(logs[3].endpoint.as_deref(), Some("orders"));
    assert_eq!(logs[0].endpoint.as_deref(), Some("ApiVersions"));
    assert_eq!(logs[3].captured_request_byte, 144);
    assert_eq!(logs[3].captured_response_byte, 58);
}

#[test]
fn real_consumer_connection_with_unanswered_fetch() {
    let logs = run_pieces(&conv_pieces(CONSUMER));
    assert_eq!(rows(&logs), consumer_truth());
}

fn streams(conv: &[(Direction, &str)]) -> (Vec<u8>, Vec<u8>) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for (d, h) in conv {
        match d {
            C => c.extend(unhex(h)),
            S => s.extend(unhex(h)),
        }
    }
    (c, s)
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    for (conv, truth) in [
        (PRODUCER_A, producer_a_truth()),
        (CONSUMER, consumer_truth()),
    ] {
        let (c, s) = streams(conv);
        for at in 0..=c.len().max(s.len()) {
            let mut pieces = Vec::new();
            let (c0, c1) = c.split_at(at.min(c.len()));
            let (s0, s1) = s.split_at(at.min(s.len()));
            for (d, b) in [(C, c0), (C, c1), (S, s0), (S, s1)] {
                if !b.is_empty() {
                    pieces.push((d, 5, 0, b.to_vec()));
                }
            }
            assert_eq!(rows(&run_pieces(&pieces)), truth, "split at {at}");
        }
    }
}

#[test]
fn small_decode_window_skips_bodies_and_keeps_logs() {
    let limits = Limits {
        max_message_len: 64,
        ..Limits::default()
    };
    let mut e = Engine::new(vec![Arc::new(KafkaParser) as Arc<dyn L7Parser>], limits);
    let mut logs = Vec::new();
    for (i, (d, h)) in CONSUMER.iter().enumerate() {
        let bytes = unhex(h);
        // Deliver in 7-byte pieces.
        for piece in bytes.chunks(7) {
            let chunk = StreamChunk {
                flow_id: 1,
                flow: flow(),
                direction: *d,
                time_us: 1_000 + i as u64,
                seq: None,
                gap_before: 0,
                bytes: bytes::Bytes::copy_from_slice(piece),
                origin: ChunkOrigin::Packet,
            };
            e.on_chunk(&chunk, &mut logs);
        }
    }
    e.finish(&mut logs);
    let got: Vec<_> = rows(&logs).into_iter().map(|r| (r.0, r.3, r.5)).collect();
    let want: Vec<_> = consumer_truth()
        .into_iter()
        .map(|r| (r.0, r.3, r.5))
        .collect();
    assert_eq!(got, want);
    assert_eq!(e.stats().buffer_overflows, 0);
}

/// Lose any one segment (or its start): no log is wrong; with a lost request, its response is an orphan.
#[test]
fn gaps_never_produce_wrong_logs() {
    let truth = consumer_truth();
    for lost in 0..CONSUMER.len() {
        for cut in [usize::MAX, 5, 30] {
            let mut pieces = conv_pieces(CONSUMER);
            let (dir, t, _, bytes) = pieces[lost].clone();
            if cut == usize::MAX || cut >= bytes.len() {
                let gap = bytes.len() as u64;
                pieces.remove(lost);
                if let Some(next) = pieces[lost..].iter_mut().find(|p| p.0 == dir) {
                    next.2 = gap;
                }
            } else {
                pieces[lost] = (dir, t, cut as u64, bytes[cut..].to_vec());
            }
            for r in rows(&run_pieces(&pieces)) {
                let fine = truth.contains(&r) || {
                    // A request whose response was lost times out; nothing else differs.
                    let mut t = r.clone();
                    t.5 = "ok".into();
                    r.5 == "timeout" && truth.contains(&t)
                };
                assert!(fine, "lost {lost} cut {cut}: wrong log {r:?}");
            }
        }
    }
}

#[test]
fn mid_stream_start_on_a_segment_boundary() {
    let truth = consumer_truth();
    for first in 0..CONSUMER.len() {
        let logs = run_pieces(&conv_pieces(&CONSUMER[first..]));
        for r in rows(&logs) {
            assert!(truth.contains(&r), "start at {first}: wrong log {r:?}");
        }
    }
}

#[test]
fn error_codes_and_acks_zero() {
    // Produce v7 (acks=0): one-way. Then Metadata v2 for topic "x" answered with UNKNOWN_TOPIC_OR_PARTITION.
    let frame = |h: &str| {
        let body = unhex(&h.replace(' ', ""));
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend(body);
        v
    };
    let produce0 = frame(
        "0000 0007 00000009 0001 61 ffff 0000 00007530 00000001 0001 78 00000001 00000000 ffffffff",
    );
    let meta_req = frame("0003 0002 00000010 0001 61 00000001 0001 78");
    // Metadata v2 response: corr 16, brokers [], cluster id null, controller 1, topics [{err 3, "x", false, []}].
    let meta_resp = frame("00000010 00000000 ffff 00000001 00000001 0003 0001 78 00 00000000");
    let pieces = vec![
        (C, 1, 0, produce0),
        (C, 2, 0, meta_req),
        (S, 3, 0, meta_resp),
    ];
    let logs = run_pieces(&pieces);
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].request_type.as_deref(), Some("Produce"));
    assert_eq!(logs[0].response_duration_us, None);
    assert_eq!(logs[0].request_resource.as_deref(), Some("x"));
    assert_eq!(logs[1].response_code, Some(3));
    assert_eq!(logs[1].response_status.as_str(), "server_error");
    assert_eq!(
        logs[1].response_exception.as_deref(),
        Some("UNKNOWN_TOPIC_OR_PARTITION")
    );
}

#[test]
fn probes() {
    assert_eq!(probe(&unhex(PRODUCER_A[0].1), C), Probe::Yes);
    assert_eq!(probe(&unhex(PRODUCER_A[1].1), S), Probe::No);
    assert_eq!(probe(b"GET / HTTP/1.1\r\n\r\n", C), Probe::No);
    assert_eq!(probe(b"*1\r\n$4\r\nPING\r\n", C), Probe::No);
    assert_eq!(probe(&[0, 0, 0, 10, 0, 99, 0, 0, 0, 0, 0, 1], C), Probe::No);
}

#[test]
fn limits_are_enforced() {
    let limits = Limits::default();
    let key = flow();
    let mut p = KafkaFlow::new(&limits);
    let ctx = ParseCtx {
        direction: C,
        flow: &key,
        stream_offset: 0,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    let mut out = Vec::new();
    let r = p.parse(&[0x7f, 0xff, 0xff, 0xff, 0, 0], &ctx, &mut out);
    assert_eq!(r.unwrap_err().kind, ParseErrorKind::TooLarge);
    let r = p.parse(&[0, 0, 0, 2, 0, 0], &ctx, &mut out);
    assert_eq!(r.unwrap_err().kind, ParseErrorKind::Invalid);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), server in any::<bool>()) {
            let limits = Limits { max_message_len: 128, ..Limits::default() };
            let key = flow();
            let mut p = KafkaFlow::new(&limits);
            let dir = if server { S } else { C };
            // Register a pending request so response bodies are walked.
            p.remember(Pending { corr: 0, api: ApiKey(data.first().copied().unwrap_or(0) as i16 % 40), version: 3 });
            let ctx = ParseCtx { direction: dir, flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: false };
            let mut out = Vec::new();
            if let Ok(n) = p.parse(&data, &ctx, &mut out) {
                prop_assert!(n <= data.len());
            }
            let _ = probe(&data, dir);
            for api in 0..40i16 {
                for v in [0i16, 3, 9, 13] {
                    if let Some(s) = schema::response_schema(api) {
                        let _ = schema::decode(&s, &data, v, v >= 9);
                    }
                    if let Some(s) = schema::request_schema(api) {
                        let _ = schema::decode(s, &data, v, v >= 9);
                    }
                }
            }
        }
    }
}
