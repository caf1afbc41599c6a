//! MQTT tests on bytes from the shared capture `mqtt.pcap` (mosquitto 2.0.11; extracted with
//! `tshark -r mqtt.pcap -Y 'tcp.stream==N && tcp.len>0' -T fields -e tcp.srcport -e tcp.payload`) and from
//! the MQTT 3.1.1 / 5.0 specifications. Expected values come from `truth/mqtt.jsonl` (the clients' own
//! packet logs) and the specifications.

use super::*;
use crate::{Engine, L7Parser};
use fathom_model::{
    ChunkOrigin, Direction, FlowKey, L4Protocol, RequestLog, ResponseStatus, StreamChunk,
};
use proptest::prelude::*;
use std::sync::Arc;
use Direction::{ClientToServer as C, ServerToClient as S};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// tcp.stream 5: paho-mqtt MQTT 5 (subscribe, publish QoS 0/1/2 to its own subscription, unsubscribe).
const PAHO_V5: &[(Direction, &str)] = &[
    (
        C,
        "101b00044d5154540502012c00000e666174686f6d2d7061686f2d7635",
    ),
    (S, "200900000622000a210014"),
    (C, "8216000100001073656e736f72732f2b2f616c6572747301"),
    (S, "900400010001"),
    (
        C,
        "301f001573656e736f72732f726176656e312f616c6572747300616c6572742030",
    ),
    (
        S,
        "301f001573656e736f72732f726176656e312f616c6572747300616c6572742030",
    ),
    (
        C,
        "3221001573656e736f72732f726176656e312f616c65727473000300616c6572742031",
    ),
    (
        S,
        "3221001573656e736f72732f726176656e312f616c65727473000100616c6572742031",
    ),
    (C, "40020001"),
    (S, "40020003"),
    (
        C,
        "3421001573656e736f72732f726176656e312f616c65727473000400616c6572742032",
    ),
    (S, "50020004"),
    (C, "62020004"),
    (
        S,
        "3221001573656e736f72732f726176656e312f616c65727473000200616c6572742032",
    ),
    (C, "40020002"),
    (S, "70020004"),
    (C, "a215000500001073656e736f72732f2b2f616c65727473"),
    (S, "b00400050000"),
    (C, "e000"),
];

/// tcp.stream 0: mosquitto_sub (3.1.1, QoS 2 subscription) receiving; four PUBLISHes in one segment.
const MOSQ_SUB: &[(Direction, &str)] = &[
    (C, "101600044d5154540402012c000a666174686f6d2d737562"),
    (S, "20020000"),
    (C, "82180001001373656e736f72732f2b2f74656c656d6574727902"),
    (S, "9003000102"),
    (S, "3430001973656e736f72732f636f62616c74302f74656c656d6574727900017b22736571223a302c2274656d70223a32307d3230001973656e736f72732f636f62616c74302f74656c656d6574727900027b22736571223a312c2274656d70223a32317d302e001973656e736f72732f636f62616c74302f74656c656d657472797b22736571223a322c2274656d70223a32327d302e001973656e736f72732f636f62616c74302f74656c656d657472797b22736571223a332c2274656d70223a32337d"),
    (C, "50020001"),
    (S, "62020001"),
    (C, "40020002"),
    (C, "70020001"),
    (S, "322b001973656e736f72732f636f62616c74302f74656c656d6574727900037061686f2072656164696e672030"),
    (C, "40020003"),
    (S, "3029001973656e736f72732f636f62616c74302f74656c656d657472797061686f2072656164696e672031"),
    (S, "301e001973656e736f72732f636f62616c74302f74656c656d65747279656e64"),
    (C, "e000"),
];

/// tcp.stream 1: mosquitto_pub 3.1.1 QoS 2.
const MOSQ_PUB_Q2: &[(Direction, &str)] = &[
    (C, "101800044d5154540402003c000c666174686f6d2d7075622d30"),
    (S, "20020000"),
    (C, "3430001973656e736f72732f636f62616c74302f74656c656d6574727900017b22736571223a302c2274656d70223a32307d"),
    (S, "50020001"),
    (C, "62020001"),
    (S, "70020001"),
    (C, "e000"),
];

fn flow() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 51867,
        port_dst: 11883,
        l4_protocol: L4Protocol::Tcp,
    }
}

fn engine() -> Engine {
    let parsers: Vec<Arc<dyn L7Parser>> = vec![Arc::new(MqttParser)];
    Engine::new(parsers, Limits::default())
}

/// Feed `(direction, bytes, gap_before)` chunks; each chunk 10 µs after the previous one.
fn run(chunks: &[(Direction, Vec<u8>, u64)]) -> Vec<RequestLog> {
    let mut e = engine();
    let mut logs = Vec::new();
    for (i, (d, b, gap)) in chunks.iter().enumerate() {
        let c = StreamChunk {
            flow_id: 1,
            flow: flow(),
            direction: *d,
            time_us: 1_000 + 10 * i as u64,
            seq: None,
            gap_before: *gap,
            bytes: bytes::Bytes::from(b.clone()),
            origin: ChunkOrigin::Packet,
        };
        e.on_chunk(&c, &mut logs);
    }
    e.finish(&mut logs);
    logs
}

fn conv(c: &[(Direction, &str)]) -> Vec<(Direction, Vec<u8>, u64)> {
    c.iter().map(|(d, h)| (*d, hex(h), 0)).collect()
}

/// (type, resource, request_id, response_code, status, one-way, request travels client → server)
type Row = (
    String,
    Option<String>,
    Option<u64>,
    Option<i64>,
    ResponseStatus,
    bool,
);

fn rows(logs: &[RequestLog]) -> Vec<Row> {
    logs.iter()
        .map(|l| {
            (
                l.request_type.clone().unwrap_or_default(),
                l.request_resource.clone(),
                l.request_id,
                l.response_code,
                l.response_status,
                l.response_duration_us.is_none(),
            )
        })
        .collect()
}

fn row(t: &str, r: Option<&str>, id: Option<u64>, code: Option<i64>, oneway: bool) -> Row {
    (
        t.to_string(),
        r.map(str::to_string),
        id,
        code,
        ResponseStatus::Ok,
        oneway,
    )
}

fn sorted(mut v: Vec<Row>) -> Vec<Row> {
    v.sort();
    v
}

#[test]
fn paho_v5_session_matches_truth() {
    let logs = run(&conv(PAHO_V5));
    let alerts = Some("sensors/raven1/alerts");
    // truth/mqtt.jsonl, conn "paho-v5": 11 records (7 pairs with SUBACK/PUBACK/PUBREC/PUBCOMP/UNSUBACK, 3
    // one-way + CONNECT). Codes: CONNACK 0, SUBACK all granted → 0 (see the module doc).
    let want = vec![
        row("CONNECT", None, None, Some(0), false),
        row(
            "SUBSCRIBE",
            Some("sensors/+/alerts"),
            Some(1),
            Some(0),
            false,
        ),
        row("PUBLISH", alerts, None, None, true),
        row("PUBLISH", alerts, None, None, true),
        row("PUBLISH", alerts, Some(1), None, false),
        row("PUBLISH", alerts, Some(3), None, false),
        row("PUBLISH", alerts, Some(4), None, false),
        row("PUBLISH", alerts, Some(2), None, false),
        row("PUBREL", None, Some(4), None, false),
        row(
            "UNSUBSCRIBE",
            Some("sensors/+/alerts"),
            Some(5),
            None,
            false,
        ),
        row("DISCONNECT", None, None, None, true),
    ];
    assert_eq!(sorted(rows(&logs)), sorted(want));
    assert!(logs.iter().all(|l| l.version.as_deref() == Some("5")));
    let connect = logs
        .iter()
        .find(|l| l.request_type.as_deref() == Some("CONNECT"))
        .unwrap();
    assert_eq!(connect.request_domain.as_deref(), Some("fathom-paho-v5"));
    let publish = logs.iter().find(|l| l.request_id == Some(3)).unwrap();
    assert_eq!(publish.endpoint.as_deref(), alerts);
}

#[test]
fn mosquitto_sub_session_server_initiated_publishes() {
    let logs = run(&conv(MOSQ_SUB));
    let tele = Some("sensors/cobalt0/telemetry");
    // truth/mqtt.jsonl, conn "mosquitto_sub": the broker's PUBLISHes (QoS 2 id 1, QoS 1 ids 2 and 3,
    // 4 × QoS 0) are logs, answered by the subscriber; PUBREL id 1 from the broker.
    let want = vec![
        row("CONNECT", None, None, Some(0), false),
        row(
            "SUBSCRIBE",
            Some("sensors/+/telemetry"),
            Some(1),
            Some(0),
            false,
        ),
        row("PUBLISH", tele, Some(1), None, false),
        row("PUBLISH", tele, Some(2), None, false),
        row("PUBLISH", tele, None, None, true),
        row("PUBLISH", tele, None, None, true),
        row("PUBREL", None, Some(1), None, false),
        row("PUBLISH", tele, Some(3), None, false),
        row("PUBLISH", tele, None, None, true),
        row("PUBLISH", tele, None, None, true),
        row("DISCONNECT", None, None, None, true),
    ];
    assert_eq!(sorted(rows(&logs)), sorted(want));
    assert!(logs.iter().all(|l| l.version.as_deref() == Some("3.1.1")));
    // Server-initiated exchanges keep the flow's orientation.
    assert!(logs.iter().all(|l| l.port_dst == 11883));
}

#[test]
fn qos2_publisher_is_two_logs() {
    let logs = run(&conv(MOSQ_PUB_Q2));
    let r: Vec<_> = rows(&logs).into_iter().map(|r| (r.0, r.2, r.5)).collect();
    assert_eq!(
        r,
        vec![
            ("CONNECT".into(), None, false),
            ("PUBLISH".into(), Some(1), false),
            ("PUBREL".into(), Some(1), false),
            ("DISCONNECT".into(), None, true),
        ]
    );
    assert_eq!(logs[0].request_domain.as_deref(), Some("fathom-pub-0"));
    assert_eq!(logs[0].captured_request_byte, 26);
    assert_eq!(logs[0].captured_response_byte, 4);
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    for c in [PAHO_V5, MOSQ_SUB] {
        let whole = run(&conv(c));
        let maxlen = c.iter().map(|(_, h)| h.len() / 2).max().unwrap();
        for k in 1..=maxlen {
            let mut chunks = Vec::new();
            for (d, h) in c {
                for piece in hex(h).chunks(k) {
                    chunks.push((*d, piece.to_vec(), 0));
                }
            }
            let logs = run(&chunks);
            assert_eq!(rows(&logs), rows(&whole), "piece size {k}");
        }
    }
}

#[test]
fn connack_refused_is_client_error() {
    // 3.1.1 §3.2.2.3: return code 5 = not authorized.
    let logs = run(&[
        (
            C,
            hex("101600044d5154540402012c000a666174686f6d2d737562"),
            0,
        ),
        (S, hex("20020005"), 0),
    ]);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].response_code, Some(5));
    assert_eq!(logs[0].response_status, ResponseStatus::ClientError);
    assert_eq!(
        logs[0].response_exception.as_deref(),
        Some("not authorized")
    );
}

#[test]
fn suback_failure_and_v5_puback_failure() {
    // SUBACK with return codes [0x01, 0x80] (3.1.1 §3.9.3: 0x80 = Failure).
    let logs = run(&[
        (
            C,
            hex("101600044d5154540402012c000a666174686f6d2d737562"),
            0,
        ),
        (S, hex("20020000"), 0),
        (C, hex("820e00070003612f62010003612f6301"), 0),
        (S, hex("900400070180"), 0),
    ]);
    let sub = logs
        .iter()
        .find(|l| l.request_type.as_deref() == Some("SUBSCRIBE"))
        .unwrap();
    assert_eq!(sub.request_resource.as_deref(), Some("a/b,a/c"));
    assert_eq!(sub.response_code, Some(0x80));
    assert_eq!(sub.response_status, ResponseStatus::ClientError);
    // MQTT 5 PUBACK with reason 0x87 (not authorized), remaining length 3 (5.0 §3.4.2.1).
    let logs = run(&[
        (
            C,
            hex("101b00044d5154540502012c00000e666174686f6d2d7061686f2d7635"),
            0,
        ),
        (S, hex("200900000622000a210014"), 0),
        (C, hex("3209000261620009006869"), 0),
        (S, hex("4003000987"), 0),
    ]);
    let p = logs
        .iter()
        .find(|l| l.request_type.as_deref() == Some("PUBLISH"))
        .unwrap();
    assert_eq!(p.request_resource.as_deref(), Some("ab"));
    assert_eq!(p.response_code, Some(0x87));
    assert_eq!(p.response_status, ResponseStatus::ClientError);
}

#[test]
fn ping_pairs() {
    let logs = run(&[
        (
            C,
            hex("101600044d5154540402012c000a666174686f6d2d737562"),
            0,
        ),
        (S, hex("20020000"), 0),
        (C, hex("c000"), 0),
        (S, hex("d000"), 0),
        (C, hex("c000"), 0),
        (S, hex("d000"), 0),
    ]);
    let pings: Vec<_> = logs
        .iter()
        .filter(|l| l.request_type.as_deref() == Some("PINGREQ"))
        .collect();
    assert_eq!(pings.len(), 2);
    assert!(pings
        .iter()
        .all(|l| l.response_status == ResponseStatus::Ok && l.response_duration_us.is_some()));
}

#[test]
fn probe_verdicts() {
    // CONNECT, complete or not.
    assert_eq!(probe(&hex(PAHO_V5[0].1)), Probe::Yes);
    assert_eq!(probe(&hex("101b00044d51")), Probe::Maybe);
    assert_eq!(probe(&hex("101b00044d5154540502")), Probe::Yes);
    // Mid-stream: two well-formed packets.
    assert_eq!(probe(&hex("4002000150020004")), Probe::Yes);
    assert_eq!(probe(&hex(MOSQ_SUB[4].1)), Probe::Yes);
    // One strong packet alone: maybe.
    assert_eq!(probe(&hex(PAHO_V5[4].1)), Probe::Maybe);
    // Other protocols.
    for other in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\xda\xbb\xc2\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x96",
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    ] {
        assert_eq!(probe(other), Probe::No, "{other:?}");
    }
}

#[test]
fn mid_stream_start_without_connect() {
    // Drop the first N bytes of the client direction of the paho session (CONNECT partly or wholly lost):
    // no wrong log; once both directions are past the damage the rest is logged.
    let c = conv(PAHO_V5);
    let full = run(&c);
    for n in 1..60 {
        let mut chunks = Vec::new();
        let mut left = n;
        for (d, b, g) in &c {
            if *d == C && left > 0 {
                let k = left.min(b.len());
                left -= k;
                if k < b.len() {
                    chunks.push((*d, b[k..].to_vec(), *g));
                }
                continue;
            }
            chunks.push((*d, b.clone(), *g));
        }
        let logs = run(&chunks);
        for l in &logs {
            let t = l.request_type.as_deref();
            let ok = full.iter().any(|f| {
                f.request_type.as_deref() == t
                    && f.request_resource == l.request_resource
                    && f.request_id == l.request_id
            });
            assert!(ok, "drop {n}: unexpected log {l:?}");
            assert_ne!(l.response_status, ResponseStatus::ClientError);
        }
        // Everything after the SUBSCRIBE (the publishes) is still seen.
        let pubs = logs
            .iter()
            .filter(|l| l.request_type.as_deref() == Some("PUBLISH"))
            .count();
        assert!(pubs >= 5, "drop {n}: {pubs} publishes");
    }
}

#[test]
fn gap_in_the_middle_resynchronises() {
    // Lose the middle of the coalesced 4-PUBLISH segment of mosquitto_sub at every cut point.
    let c = conv(MOSQ_SUB);
    let big = &c[4].1;
    for cut in 1..big.len() - 1 {
        let mut chunks = c.clone();
        let lost = 20.min(big.len() - cut);
        chunks[4] = (S, big[..cut].to_vec(), 0);
        chunks.insert(5, (S, big[cut + lost..].to_vec(), lost as u64));
        let logs = run(&chunks);
        let full = run(&c);
        for l in &logs {
            let ok = full.iter().any(|f| {
                f.request_type == l.request_type
                    && f.request_resource == l.request_resource
                    && f.request_id == l.request_id
            });
            assert!(ok, "cut {cut}: unexpected log {l:?}");
        }
        // The tail of the session (PUBLISH id 3, two QoS 0, DISCONNECT) is always logged.
        assert!(
            logs.iter().any(|l| l.request_id == Some(3)),
            "cut {cut}: {logs:?}"
        );
        assert!(logs
            .iter()
            .any(|l| l.request_type.as_deref() == Some("DISCONNECT")));
    }
}

#[test]
fn large_publish_is_skipped_not_buffered() {
    let limits = Limits {
        max_message_len: 64,
        ..Limits::default()
    };
    let mut f = MqttFlow::new(&limits);
    let fk = flow();
    let ctx = |off| ParseCtx {
        direction: C,
        flow: &fk,
        stream_offset: off,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    // QoS 1 PUBLISH with a 1000-byte payload: remaining length = 2 + 3 + 2 + 1000 = 1007 = 0xef 0x07.
    let mut p = hex("32ef0700036162630007");
    p.extend(std::iter::repeat_n(b'x', 1000));
    p.extend(hex("e000"));
    let mut out = Vec::new();
    let n = f.parse(&p[..100], &ctx(0), &mut out).unwrap();
    assert_eq!(n, 100);
    assert!(out.is_empty());
    let n2 = f.parse(&p[100..], &ctx(100), &mut out).unwrap();
    assert_eq!(n2, p.len() - 100);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].info.request_resource.as_deref(), Some("abc"));
    assert_eq!(out[0].info.request_id, Some(7));
    assert_eq!((out[0].start, out[0].end), (0, 1010));
    assert_eq!(out[1].kind, MessageKind::OneWay);
    // A gap inside the skipped payload keeps the boundary.
    let mut out = Vec::new();
    f.parse(&p[..50], &ctx(0), &mut out).unwrap();
    f.on_gap(C, 500);
    f.parse(&p[550..], &ctx(550), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    // Non-PUBLISH packets over the limit are errors.
    let mut big = hex("8280010001");
    big.extend(std::iter::repeat_n(0u8, 10));
    let mut g = MqttFlow::new(&limits);
    g.dirs[0].sync = Sync::Synced;
    assert_eq!(
        g.parse(&big, &ctx(0), &mut Vec::new()).unwrap_err().kind,
        ParseErrorKind::TooLarge
    );
}

#[test]
fn mid_stream_v5_subscribe_without_connect() {
    // MQTT 5 SUBSCRIBE (property length 0 after the packet id) with no CONNECT seen: the 3.1.1 reading
    // fails (topic length 0x0010 then options 0x01 would not consume the body), the MQTT 5 one is used, and
    // the flow's version becomes 5.
    let mut f = MqttFlow::new(&Limits::default());
    let fk = flow();
    let limits = Limits::default();
    let ctx = ParseCtx {
        direction: C,
        flow: &fk,
        stream_offset: 0,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    let mut out = Vec::new();
    let two = [hex(PAHO_V5[2].1), hex("c000")].concat();
    f.parse(&two, &ctx, &mut out).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].info.request_resource.as_deref(),
        Some("sensors/+/alerts")
    );
    assert_eq!(f.version(), Some(Version::V5));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
        let _ = probe(&data);
        let limits = Limits { max_message_len: 128, ..Limits::default() };
        let fk = flow();
        let mut f = MqttFlow::new(&limits);
        let mut out = Vec::new();
        let s = split.min(data.len());
        for (i, part) in [&data[..s], &data[s..]].into_iter().enumerate() {
            let ctx = ParseCtx { direction: if i == 0 { C } else { S }, flow: &fk, stream_offset: 0, time_us: 0,
                                 limits: &limits, datagram: false };
            if let Ok(n) = f.parse(part, &ctx, &mut out) {
                prop_assert!(n <= part.len());
            }
        }
        f.on_gap(C, 3);
        let ctx = ParseCtx { direction: C, flow: &fk, stream_offset: 0, time_us: 0, limits: &limits, datagram: false };
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
    }

    #[test]
    fn arbitrary_chunks_through_engine(parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..12)) {
        let mut chunks: Vec<(Direction, Vec<u8>, u64)> = conv(&PAHO_V5[..2]);
        for (i, p) in parts.into_iter().enumerate() {
            chunks.push((if i % 2 == 0 { C } else { S }, p, (i % 3) as u64));
        }
        let _ = run(&chunks);
    }
}

#[test]
fn v5_topic_alias_and_traceparent_user_property() {
    // MQTT 5 §3.3.2.3.4 Topic Alias, §3.3.2.3.7 User Property; W3C trace context as a user property.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut props = vec![0x23, 0x00, 0x05, 0x26, 0x00, 0x0b];
    props.extend_from_slice(b"traceparent");
    props.extend_from_slice(&(tp.len() as u16).to_be_bytes());
    props.extend_from_slice(tp.as_bytes());
    let mut body = hex("0003612f62");
    body.push(props.len() as u8);
    body.extend_from_slice(&props);
    body.extend_from_slice(b"hi");
    let mut first = vec![0x30, body.len() as u8];
    first.extend_from_slice(&body);
    // Second PUBLISH: empty topic, alias 5.
    let second = hex("30080000032300057969");
    let logs = run(&[
        (C, hex(PAHO_V5[0].1), 0),
        (S, hex(PAHO_V5[1].1), 0),
        (C, first, 0),
        (C, second, 0),
    ]);
    let pubs: Vec<_> = logs
        .iter()
        .filter(|l| l.request_type.as_deref() == Some("PUBLISH"))
        .collect();
    assert_eq!(pubs.len(), 2);
    assert!(pubs
        .iter()
        .all(|l| l.request_resource.as_deref() == Some("a/b")));
    assert_eq!(
        pubs[0].trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(pubs[0].span_id.as_deref(), Some("b7ad6b7169203331"));
    assert_eq!(pubs[1].trace_id, None);
}

#[test]
fn mqtt31_auth_event_and_v5_server_disconnect() {
    // MQTT 3.1: protocol name MQIsdp, level 3 (3.1 specification, CONNECT variable header).
    let logs = run(&[
        (C, hex("101200064d51497364700302003c000461626364"), 0),
        (S, hex("20020000"), 0),
    ]);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].version.as_deref(), Some("3.1"));
    // MQTT 5: AUTH (0x18 continue authentication, 5.0 §3.15) is an event; a server DISCONNECT with reason
    // 0x8B (server shutting down, 5.0 §3.14.2.1) is a one-way log carrying the failure.
    let (mut e, mut logs) = (engine(), Vec::new());
    for (i, (d, h)) in [
        (C, PAHO_V5[0].1),
        (S, PAHO_V5[1].1),
        (C, "f0021800"),
        (S, "f0021800"),
        (S, "e0028b00"),
    ]
    .iter()
    .enumerate()
    {
        let c = StreamChunk {
            flow_id: 1,
            flow: flow(),
            direction: *d,
            time_us: 1_000 + i as u64,
            seq: None,
            gap_before: 0,
            bytes: bytes::Bytes::from(hex(h)),
            origin: ChunkOrigin::Packet,
        };
        e.on_chunk(&c, &mut logs);
    }
    e.finish(&mut logs);
    assert_eq!(e.stats().events, 2);
    assert_eq!(logs.len(), 2);
    let d = &logs[1];
    assert_eq!(d.request_type.as_deref(), Some("DISCONNECT"));
    assert_eq!(d.response_code, Some(0x8b));
    assert_eq!(d.response_status, ResponseStatus::ServerError);
    assert_eq!(
        d.response_exception.as_deref(),
        Some("server shutting down")
    );
}
