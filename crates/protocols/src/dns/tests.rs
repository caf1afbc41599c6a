//! Tests on real bytes from `shared/data/dns.pcap` (dig 9.18 → dnsmasq 2.90); expected values from the
//! capture's truth file (dig's own output) and from the RFCs.

use super::*;
use crate::{Engine, EngineStats};
use fathom_model::{ChunkOrigin, RequestLog, StreamChunk};
use proptest::prelude::*;
use std::sync::Arc;

pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// UDP, frames 1/2: A alpha0.svc.test, id 0x7fa1 (32673).
const Q_A: &str =
    "7fa10120000100000000000106616c70686130037376630474657374000001000100002904d0000000000000";
const R_A: &str = "7fa18580000100010000000106616c706861300373766304746573740000010001c00c000100010000000000047f001dc500002904d0000000000000";
// Frames 9/10: AAAA alpha0.svc.test → NXDOMAIN, id 0x05f6 (1526).
const Q_NX: &str =
    "05f60120000100000000000106616c7068613003737663047465737400001c000100002904d0000000000000";
const R_NX: &str =
    "05f68183000100000000000106616c7068613003737663047465737400001c000100002904d0000000000000";
// Frames 11/12: TXT kepler3.svc.test, id 0x6d57 (27991).
const Q_TXT: &str =
    "6d5701200001000000000001076b65706c657233037376630474657374000010000100002904d0000000000000";
const R_TXT: &str = "6d5785800001000100000001076b65706c6572330373766304746573740000100001c00c0010000100000000001a19763d666174686f6d312071756172747a3d663935643738333300002904d0000000000000";
// Frames 13/14: A www.svc.test, CNAME chain, id 0x6bed (27629).
const Q_CNAME: &str =
    "6bed0120000100000000000103777777037376630474657374000001000100002904d0000000000000";
const R_CNAME: &str = "6bed85800001000200000001037777770373766304746573740000010001c00c000500010000000000120774756e6472613203737663047465737400c02a000100010000000000047f00c2c800002904d0000000000000";
// Frames 15/16: A magma.example.org → REFUSED (with an EDNS EDE option), id 0x630d (25357).
const Q_REF: &str =
    "630d01200001000000000001056d61676d61076578616d706c65036f7267000001000100002904d0000000000000";
const R_REF: &str = "630d81850001000000000001056d61676d61076578616d706c65036f7267000001000100002904d0000000000006000f0002000e";
// TCP (with the 2-byte length), frames 24/26: TXT kepler3.svc.test, id 0x87f2; frames 34/36: AAAA
// tundra2.svc.test, id 0x9018.
const TCP_Q_TXT: &str = "002d87f201200001000000000001076b65706c657233037376630474657374000010000100002904d0000000000000";
const TCP_R_TXT: &str = "005387f285800001000100000001076b65706c6572330373766304746573740000100001c00c0010000100000000001a19763d666174686f6d312071756172747a3d663935643738333300002904d0000000000000";
const TCP_Q_AAAA: &str = "002d9018012000010000000000010774756e6472613203737663047465737400001c000100002904d0000000000000";
const TCP_R_AAAA: &str = "00499018858000010001000000010774756e6472613203737663047465737400001c0001c00c001c0001000000000010fd00000000000000000000000000088200002904d0000000000000";

fn flow(l4: L4Protocol) -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 50800,
        port_dst: 15353,
        l4_protocol: l4,
    }
}

/// (direction, time, bytes, gap_before)
type Step = (Direction, u64, Vec<u8>, u64);

fn run(l4: L4Protocol, steps: &[Step]) -> (Vec<RequestLog>, EngineStats) {
    let mut engine = Engine::new(vec![Arc::new(DnsParser)], Limits::default());
    let mut logs = Vec::new();
    for (dir, t, bytes, gap) in steps {
        let chunk = StreamChunk {
            flow_id: 1,
            flow: flow(l4),
            direction: *dir,
            time_us: *t,
            seq: None,
            gap_before: *gap,
            bytes: bytes::Bytes::from(bytes.clone()),
            origin: ChunkOrigin::Packet,
        };
        engine.on_chunk(&chunk, &mut logs);
    }
    engine.finish(&mut logs);
    (logs, engine.stats().clone())
}

use Direction::{ClientToServer as C2S, ServerToClient as S2C};

#[test]
fn udp_real_exchanges() {
    let pairs = [
        (Q_A, R_A),
        (Q_NX, R_NX),
        (Q_TXT, R_TXT),
        (Q_CNAME, R_CNAME),
        (Q_REF, R_REF),
    ];
    for (i, (q, r)) in pairs.iter().enumerate() {
        let t = 1_000 * i as u64;
        let (logs, stats) = run(
            L4Protocol::Udp,
            &[(C2S, t, hex(q), 0), (S2C, t + 250, hex(r), 0)],
        );
        assert_eq!(logs.len(), 1, "pair {i}: {stats:?}");
        let l = &logs[0];
        assert_eq!(l.l7_protocol, L7Protocol::Dns);
        assert_eq!(l.response_duration_us, Some(250));
        assert_eq!(l.captured_request_byte, hex(q).len() as u64);
        let want: (
            &str,
            &str,
            u64,
            i64,
            ResponseStatus,
            Option<&str>,
            Option<&str>,
        ) = match i {
            0 => (
                "A",
                "alpha0.svc.test",
                32673,
                0,
                ResponseStatus::Ok,
                Some("A 127.0.29.197"),
                None,
            ),
            1 => (
                "AAAA",
                "alpha0.svc.test",
                1526,
                3,
                ResponseStatus::ClientError,
                None,
                Some("NXDOMAIN"),
            ),
            2 => (
                "TXT",
                "kepler3.svc.test",
                27991,
                0,
                ResponseStatus::Ok,
                Some("TXT \"v=fathom1 quartz=f95d7833\""),
                None,
            ),
            3 => (
                "A",
                "www.svc.test",
                27629,
                0,
                ResponseStatus::Ok,
                Some("CNAME tundra2.svc.test.;A 127.0.194.200"),
                None,
            ),
            _ => (
                "A",
                "magma.example.org",
                25357,
                5,
                ResponseStatus::ServerError,
                None,
                Some("REFUSED"),
            ),
        };
        assert_eq!(l.request_type.as_deref(), Some(want.0));
        assert_eq!(l.request_domain.as_deref(), Some(want.1));
        assert_eq!(l.request_resource.as_deref(), Some(want.1));
        assert_eq!(l.request_id, Some(want.2));
        assert_eq!(l.response_code, Some(want.3));
        assert_eq!(l.response_status, want.4);
        assert_eq!(l.response_result.as_deref(), want.5);
        assert_eq!(l.response_exception.as_deref(), want.6);
    }
}

#[test]
fn udp_ids_pair_out_of_order_and_orphans_and_timeouts() {
    let (logs, stats) = run(
        L4Protocol::Udp,
        &[
            (S2C, 5, hex(R_TXT), 0), // response before any query: orphan
            (C2S, 10, hex(Q_A), 0),
            (C2S, 20, hex(Q_CNAME), 0),
            (C2S, 30, hex(Q_NX), 0),
            (S2C, 40, hex(R_CNAME), 0),
            (S2C, 50, hex(R_A), 0),
        ],
    );
    assert_eq!(stats.orphan_responses, 1);
    assert_eq!(logs.len(), 3);
    assert_eq!(logs[0].request_id, Some(27629));
    assert_eq!(logs[0].response_duration_us, Some(20));
    assert_eq!(logs[1].request_id, Some(32673));
    assert_eq!(logs[1].response_duration_us, Some(40));
    assert_eq!(logs[2].request_id, Some(1526));
    assert_eq!(logs[2].response_status, ResponseStatus::Timeout);
}

fn tcp_streams() -> (Vec<u8>, Vec<u8>) {
    // Two pipelined queries in one direction, answered in reverse order.
    let client = [hex(TCP_Q_TXT), hex(TCP_Q_AAAA)].concat();
    let server = [hex(TCP_R_AAAA), hex(TCP_R_TXT)].concat();
    (client, server)
}

fn summary(logs: &[RequestLog]) -> Vec<String> {
    logs.iter()
        .map(|l| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {} {}",
                l.request_id,
                l.request_type,
                l.request_domain,
                l.response_code,
                l.response_status,
                l.response_result,
                l.captured_request_byte,
                l.captured_response_byte
            )
        })
        .collect()
}

#[test]
fn tcp_pipelined_out_of_order() {
    let (client, server) = tcp_streams();
    let (logs, stats) = run(L4Protocol::Tcp, &[(C2S, 1, client, 0), (S2C, 2, server, 0)]);
    assert_eq!(logs.len(), 2, "{stats:?}");
    assert_eq!(logs[0].request_id, Some(0x9018));
    assert_eq!(logs[0].request_type.as_deref(), Some("AAAA"));
    assert_eq!(logs[0].response_result.as_deref(), Some("AAAA fd00::882"));
    assert_eq!(logs[1].request_id, Some(0x87f2));
    assert_eq!(logs[1].request_type.as_deref(), Some("TXT"));
    assert_eq!(logs[1].captured_request_byte, 47);
    assert_eq!(logs[1].captured_response_byte, 85);
}

#[test]
fn tcp_split_at_every_offset() {
    let (client, server) = tcp_streams();
    let (reference, _) = run(
        L4Protocol::Tcp,
        &[(C2S, 1, client.clone(), 0), (S2C, 2, server.clone(), 0)],
    );
    let reference = summary(&reference);
    for cut in 1..client.len() {
        let steps = [
            (C2S, 1, client[..cut].to_vec(), 0),
            (C2S, 1, client[cut..].to_vec(), 0),
            (S2C, 2, server.clone(), 0),
        ];
        assert_eq!(
            summary(&run(L4Protocol::Tcp, &steps).0),
            reference,
            "client cut {cut}"
        );
    }
    for cut in 1..server.len() {
        let steps = [
            (C2S, 1, client.clone(), 0),
            (S2C, 2, server[..cut].to_vec(), 0),
            (S2C, 2, server[cut..].to_vec(), 0),
        ];
        assert_eq!(
            summary(&run(L4Protocol::Tcp, &steps).0),
            reference,
            "server cut {cut}"
        );
    }
    // Byte by byte.
    let mut steps: Vec<Step> = client.iter().map(|b| (C2S, 1, vec![*b], 0)).collect();
    steps.extend(server.iter().map(|b| (S2C, 2, vec![*b], 0)));
    assert_eq!(summary(&run(L4Protocol::Tcp, &steps).0), reference);
}

#[test]
fn tcp_gap_resynchronises_without_garbage() {
    let (client, server) = tcp_streams();
    let first_q = hex(TCP_Q_TXT).len();
    let first_r = hex(TCP_R_AAAA).len();
    // Lose the first bytes of the second query / second response at every offset inside them: the lost
    // message must not produce a log; the rest must be right.
    for lost in 1..(client.len() - first_q) {
        let steps = [
            (C2S, 1, client[..first_q].to_vec(), 0),
            (C2S, 2, client[first_q + lost..].to_vec(), lost as u64),
            (S2C, 3, server.clone(), 0),
        ];
        let (logs, _) = run(L4Protocol::Tcp, &steps);
        let paired: Vec<_> = logs
            .iter()
            .filter(|l| l.response_status != ResponseStatus::Timeout)
            .collect();
        assert_eq!(paired.len(), 1, "lost {lost}");
        assert_eq!(paired[0].request_id, Some(0x87f2));
        assert!(logs.len() == 1, "no garbage request at lost {lost}");
    }
    for lost in 1..(server.len() - first_r) {
        let steps = [
            (C2S, 1, client.clone(), 0),
            (S2C, 2, server[..first_r].to_vec(), 0),
            (S2C, 3, server[first_r + lost..].to_vec(), lost as u64),
        ];
        let (logs, stats) = run(L4Protocol::Tcp, &steps);
        assert_eq!(logs.len(), 2, "lost {lost}");
        assert_eq!(logs[0].request_id, Some(0x9018));
        assert_eq!(logs[0].response_code, Some(0));
        assert_eq!(
            logs[1].response_status,
            ResponseStatus::Timeout,
            "{stats:?}"
        );
    }
}

#[test]
fn probe_real_and_foreign_bytes() {
    assert_eq!(probe(&hex(Q_A), L4Protocol::Udp), Probe::Yes);
    assert_eq!(probe(&hex(R_CNAME), L4Protocol::Udp), Probe::Yes);
    assert_eq!(probe(&hex(TCP_Q_TXT), L4Protocol::Tcp), Probe::Yes);
    assert_eq!(probe(&hex(TCP_Q_TXT)[..20], L4Protocol::Tcp), Probe::Maybe);
    assert_eq!(
        probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", L4Protocol::Tcp),
        Probe::No
    );
    assert_eq!(
        probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", L4Protocol::Udp),
        Probe::No
    );
    assert_eq!(
        probe(
            &hex("1603010200010001fc0303aabbccddeeff00112233445566778899"),
            L4Protocol::Tcp
        ),
        Probe::No
    );
    assert_eq!(probe(b"*1\r\n$4\r\nPING\r\n", L4Protocol::Tcp), Probe::No);
    assert_eq!(probe(&[0u8; 40], L4Protocol::Udp), Probe::No);
}

#[test]
fn message_view_reads_header_question_and_records() {
    let b = hex(R_CNAME);
    let m = wire::Message::parse(&b, MAX_QUESTIONS).unwrap();
    assert!(m.header.is_response());
    assert_eq!(m.header.opcode(), wire::Opcode::QUERY);
    let q = m.question.unwrap();
    assert_eq!(q.qtype, RecordType::A);
    assert_eq!(q.name.to_text(), "www.svc.test");
    let recs: Vec<_> = m.records().collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].1.rtype, RecordType::CNAME);
    assert_eq!(recs[2].0, 2);
    assert_eq!(recs[2].1.rtype, RecordType::OPT);
}

#[test]
fn extended_rcode_and_truncation() {
    // R_A with TC set and an OPT extended rcode of 1 (BADVERS = 16).
    let mut b = hex(R_A);
    b[2] |= 0x02;
    let n = b.len();
    b[n - 6] = 1; // OPT TTL high byte
    let m = wire::Message::parse(&b, MAX_QUESTIONS).unwrap();
    let msg = to_message(&m, S2C, 0, n as u64, &Limits::default());
    assert_eq!(msg.info.response_code, Some(16));
    assert_eq!(msg.info.response_exception.as_deref(), Some("BADVERS"));
    assert_eq!(msg.info.response_status, Some(ResponseStatus::ServerError));
    assert_eq!(
        msg.info.response_result.as_deref(),
        Some("TC;A 127.0.29.197")
    );
    let tiny = Limits {
        max_field_len: 5,
        ..Limits::default()
    };
    let msg = to_message(&m, S2C, 0, n as u64, &tiny);
    assert_eq!(msg.info.response_result.as_deref(), Some("TC;A "));
}

#[test]
fn opcode_without_question_names_the_opcode() {
    // A NOTIFY response with no question (header only).
    let b = hex("12342400000000000000000000");
    let m = wire::Message::parse(&b[..12], MAX_QUESTIONS).unwrap();
    let msg = to_message(&m, S2C, 0, 12, &Limits::default());
    assert_eq!(msg.info.request_type.as_deref(), Some("NOTIFY"));
    assert_eq!(msg.kind, MessageKind::Request);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), udp in any::<bool>()) {
        let key = flow(if udp { L4Protocol::Udp } else { L4Protocol::Tcp });
        let limits = Limits::default();
        let mut f = DnsFlow::new(udp);
        let ctx = ParseCtx { direction: S2C, flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: udp };
        let mut out = Vec::new();
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        f.on_gap(S2C, 1);
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        let _ = probe(&data, key.l4_protocol);
    }

    #[test]
    fn mutated_real_messages_never_panic(pos in 0usize..120, val in any::<u8>(), which in 0usize..4) {
        let mut b = hex([R_CNAME, R_TXT, R_REF, R_A][which]);
        if let Some(x) = b.get_mut(pos) { *x = val; }
        if let Ok(m) = wire::Message::parse(&b, MAX_QUESTIONS) {
            let _ = to_message(&m, S2C, 0, 1, &Limits::default());
        }
    }
}
