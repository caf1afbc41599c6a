//! Dubbo tests on bytes from the shared capture `dubbo.pcap` (dubbo-ssl-python consumer against the
//! synthetic provider; extracted with `tshark -r dubbo.pcap -Y 'tcp.len>0' -T fields -e tcp.srcport
//! -e tcp.payload`) and on bytes built from the Dubbo 2 protocol documentation. Expected values come from
//! `truth/dubbo.jsonl` (the consumer's own accounting) and the documentation.

use super::*;
use crate::{Engine, L7Parser};
use fathom_model::{ChunkOrigin, FlowKey, L4Protocol, RequestLog, StreamChunk};
use proptest::prelude::*;
use std::sync::Arc;
use Direction::{ClientToServer as C, ServerToClient as S};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Every payload-carrying segment of dubbo.pcap, in capture order.
const CONVERSATION: &[(Direction, &str)] = &[
    (C, "dabbc20000000000000000000000009605322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3007676574557365720149d40be74804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb021400000000000000000000001a91480269644900000be7046e616d6509757365722d333034375a"),
    (C, "dabbc2000000000000000001000000ad05322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3005746f756368124c6a6176612f6c616e672f537472696e673b0a73657373696f6e2d37394804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb021400000000000000010000000192"),
    (S, "dabbe2000000010000000000000000014e"),
    (C, "dabb22140000010000000000000000014e"),
    (C, "dabbc2000000000000000002000000ab05322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e30076578706c6f6465124c6a6176612f6c616e672f537472696e673b066a6f622d32354804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb024600000000000000020000003c303a6a6176612e6c616e672e496c6c6567616c5374617465457863657074696f6e3a206578706c6f6465206661696c656420666f72206a6f622d3235"),
    (C, "dabbc2000000000000000003000000b005322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e300a66696e644f7264657273124c6a6176612f6c616e672f537472696e673b08637573742d3937364804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb0214000000000000000300000035917b10637573742d3937362d6f726465722d3010637573742d3937362d6f726465722d3110637573742d3937362d6f726465722d32"),
    (C, "dabbc20000000000000000040000009505322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3007676574557365720149cf234804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb02140000000000000004000000179148026964cf23046e616d6509757365722d313832375a"),
    (C, "dabbc2000000000000000005000000b005322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e300a66696e644f7264657273124c6a6176612f6c616e672f537472696e673b08637573742d3531394804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb0214000000000000000500000035917b10637573742d3531392d6f726465722d3010637573742d3531392d6f726465722d3110637573742d3531392d6f726465722d32"),
    (C, "dabbc2000000000000000006000000ab05322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3008736c6f774563686f134c6a6176612f6c616e672f537472696e673b49026330c8f04804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (C, "dabbc2000000000000000007000000ab05322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3008736c6f774563686f134c6a6176612f6c616e672f537472696e673b49026331c8b44804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005adabbc2000000000000000008000000ab05322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3008736c6f774563686f134c6a6176612f6c616e672f537472696e673b49026332c8784804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005adabbc2000000000000000009000000ab05322e302e321c636f6d2e6578616d706c652e64656d6f2e557365725365727669636505312e302e3008736c6f774563686f134c6a6176612f6c616e672f537472696e673b49026333c83c4804706174681c636f6d2e6578616d706c652e64656d6f2e557365725365727669636509696e746572666163651c636f6d2e6578616d706c652e64656d6f2e55736572536572766963650776657273696f6e05312e302e300567726f7570005a"),
    (S, "dabb021400000000000000090000000491026333"),
    (S, "dabb021400000000000000080000000491026332"),
    (S, "dabb021400000000000000070000000491026331"),
    (S, "dabb021400000000000000060000000491026330"),
];

fn flow() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 59546,
        port_dst: 20880,
        l4_protocol: L4Protocol::Tcp,
    }
}

fn run_with(chunks: &[(Direction, Vec<u8>, u64)], limits: Limits) -> (Vec<RequestLog>, Engine) {
    let parsers: Vec<Arc<dyn L7Parser>> = vec![Arc::new(DubboParser)];
    let mut e = Engine::new(parsers, limits);
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
    (logs, e)
}

fn run(chunks: &[(Direction, Vec<u8>, u64)]) -> Vec<RequestLog> {
    run_with(chunks, Limits::default()).0
}

fn conv() -> Vec<(Direction, Vec<u8>, u64)> {
    CONVERSATION.iter().map(|(d, h)| (*d, hex(h), 0)).collect()
}

/// (request id, method, resource, domain, code, status)
type Row = (
    Option<u64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    ResponseStatus,
);

fn rows(logs: &[RequestLog]) -> Vec<Row> {
    let mut v: Vec<Row> = logs
        .iter()
        .map(|l| {
            (
                l.request_id,
                l.request_type.clone(),
                l.request_resource.clone(),
                l.request_domain.clone(),
                l.response_code,
                l.response_status,
            )
        })
        .collect();
    v.sort();
    v
}

const SVC: &str = "com.example.demo.UserService";

fn want() -> Vec<Row> {
    // truth/dubbo.jsonl: (req_id, type, code, status).
    let t = [
        (0, "getUser", 20),
        (1, "touch", 20),
        (2, "explode", 70),
        (3, "findOrders", 20),
        (4, "getUser", 20),
        (5, "findOrders", 20),
        (6, "slowEcho", 20),
        (7, "slowEcho", 20),
        (8, "slowEcho", 20),
        (9, "slowEcho", 20),
    ];
    t.iter()
        .map(|&(id, m, code)| {
            (
                Some(id),
                Some(m.to_string()),
                Some(format!("{SVC}/{m}")),
                Some(SVC.to_string()),
                Some(code),
                if code == 20 {
                    ResponseStatus::Ok
                } else {
                    ResponseStatus::ServerError
                },
            )
        })
        .collect()
}

#[test]
fn capture_matches_truth() {
    let (logs, e) = run_with(&conv(), Limits::default());
    assert_eq!(rows(&logs), want());
    assert!(logs.iter().all(|l| l.version.as_deref() == Some("2.0.2")));
    assert!(logs.iter().all(|l| l.endpoint == l.request_resource));
    // The heartbeat (request from the provider, answer from the consumer) is two events, not a log.
    assert_eq!(e.stats().events, 2);
    assert_eq!(e.stats().orphan_responses, 0);
    let explode = logs.iter().find(|l| l.request_id == Some(2)).unwrap();
    assert_eq!(
        explode.response_exception.as_deref(),
        Some("java.lang.IllegalStateException: explode failed for job-25")
    );
    let touch = logs.iter().find(|l| l.request_id == Some(1)).unwrap();
    assert_eq!(touch.response_exception, None);
}

#[test]
fn out_of_order_responses_pair_by_id() {
    // slowEcho 6, 7, 8, 9 are sent together (7-9 in one segment) and answered 9, 8, 7, 6.
    let logs = run(&conv());
    let end = |id| {
        logs.iter()
            .find(|l| l.request_id == Some(id))
            .unwrap()
            .end_time_us
    };
    assert!(end(9) < end(8) && end(8) < end(7) && end(7) < end(6));
    for id in 6..=9 {
        let l = logs.iter().find(|l| l.request_id == Some(id)).unwrap();
        // Each response is 16 + 4 bytes: 0x91 (RESPONSE_VALUE) then the echoed 2-char string.
        assert_eq!(l.captured_response_byte, 20);
        assert_eq!(l.captured_request_byte, 16 + 0xab);
    }
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    let whole = rows(&run(&conv()));
    let maxlen = CONVERSATION.iter().map(|(_, h)| h.len() / 2).max().unwrap();
    for k in 1..=maxlen {
        let mut chunks = Vec::new();
        for (d, h) in CONVERSATION {
            for piece in hex(h).chunks(k) {
                chunks.push((*d, piece.to_vec(), 0));
            }
        }
        assert_eq!(rows(&run(&chunks)), whole, "piece size {k}");
    }
}

#[test]
fn mid_stream_start_and_gaps_emit_no_wrong_log() {
    let c = conv();
    let good = want();
    // Drop the first n bytes of the client direction.
    for n in 1..400 {
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
        for r in rows(&run(&chunks)) {
            assert!(good.contains(&r), "drop {n}: {r:?}");
        }
    }
    // Lose bytes in the middle of the 3-request segment at every cut point.
    let seg = c.iter().position(|(_, b, _)| b.len() > 500).unwrap();
    let big = &c[seg].1;
    for cut in 1..big.len() - 30 {
        let mut chunks = c.clone();
        chunks[seg] = (C, big[..cut].to_vec(), 0);
        chunks.insert(seg + 1, (C, big[cut + 30..].to_vec(), 30));
        let logs = run(&chunks);
        for r in rows(&logs) {
            // A request cut by the gap is not logged; its response is an orphan. Nothing else changes.
            assert!(good.contains(&r), "cut {cut}: {r:?}");
        }
        // The last request of the segment (id 9) survives any cut before its header.
        if cut + 30 <= 2 * (16 + 0xab) {
            assert!(logs.iter().any(|l| l.request_id == Some(9)), "cut {cut}");
        }
    }
}

#[test]
fn probe_verdicts() {
    assert_eq!(probe(&hex(CONVERSATION[0].1)), Probe::Yes);
    assert_eq!(probe(&hex("dabbc2")), Probe::Maybe);
    assert_eq!(probe(b"GET / HTTP/1.1\r\n\r\n"), Probe::No);
    assert_eq!(
        probe(&hex("101600044d5154540402012c000a666174686f6d2d737562")),
        Probe::No
    );
    // A response header with the two-way bit is inconsistent.
    assert_eq!(
        probe(&hex("dabb42140000000000000000000000000191")),
        Probe::No
    );
}

// ---- bytes built from the Dubbo 2 protocol documentation and the Hessian 2.0 grammar ----

fn hstr(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let n = s.chars().count();
    if n < 32 {
        v.push(n as u8);
    } else {
        v.push(0x30 + (n >> 8) as u8);
        v.push(n as u8);
    }
    v.extend_from_slice(s.as_bytes());
    v
}

fn frame(flag: u8, status: u8, id: u64, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xda, 0xbb, flag, status];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&(body.len() as u32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn invocation(method: &str, desc: &str, args: &[u8], attachments: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::new();
    for s in ["2.0.2", "org.demo.Api", "1.0", method, desc] {
        b.extend(hstr(s));
    }
    b.extend_from_slice(args);
    b.push(b'H');
    for (k, v) in attachments {
        b.extend(hstr(k));
        b.extend(hstr(v));
    }
    b.push(b'Z');
    b
}

#[test]
fn attachments_after_complex_arguments_give_trace_context() {
    // Arguments: a Map<String,Object> (typed map "java.util.HashMap" with a nested list), an object with a
    // class definition (two fields), a long, a chunked string, a ref, binary and a double.
    let mut args = Vec::new();
    args.push(b'M');
    args.extend(hstr("java.util.HashMap"));
    args.extend(hstr("k"));
    args.extend_from_slice(&[0x7a, 0x91, 0x92]); // x78 + 2: untyped fixed list [1, 2]
    args.push(b'Z');
    args.push(b'C');
    args.extend(hstr("org.demo.Point"));
    args.push(0x92);
    args.extend(hstr("x"));
    args.extend(hstr("y"));
    args.extend_from_slice(&[0x60, 0x91, 0x92]);
    args.extend_from_slice(&[b'L', 0, 0, 0, 0, 0, 0, 1, 0x2c]);
    args.extend_from_slice(&[0x52, 0, 2, b'a', b'b', b'S', 0, 1, b'c']);
    args.extend_from_slice(&[0x51, 0x90]);
    args.extend_from_slice(&[0x22, 9, 9]);
    args.extend_from_slice(&[0x5f, 0, 0, 0, 0]);
    let desc = "Ljava/util/Map;Lorg/demo/Point;JLjava/lang/String;Ljava/util/Map;[BD";
    let body = invocation(
        "move",
        desc,
        &args,
        &[
            ("path", "org.demo.Api"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-request-id", "req-1"),
        ],
    );
    let req = frame(0xc2, 0, 42, &body);
    let resp = frame(0x02, 20, 42, &[0x92]); // RESPONSE_NULL_VALUE
    let logs = run(&[(C, req, 0), (S, resp, 0)]);
    assert_eq!(logs.len(), 1);
    let l = &logs[0];
    assert_eq!(l.request_type.as_deref(), Some("move"));
    assert_eq!(l.request_resource.as_deref(), Some("org.demo.Api/move"));
    assert_eq!(
        l.trace_id.as_deref(),
        Some("0af7651916cd43dd8448eb211c80319c")
    );
    assert_eq!(l.span_id.as_deref(), Some("b7ad6b7169203331"));
    assert_eq!(l.x_request_id_0.as_deref(), Some("req-1"));
    assert_eq!(l.response_code, Some(20));
    assert_eq!(l.request_id, Some(42));
}

#[test]
fn sw8_and_uber_trace_ids() {
    let mut t = TraceCtx::default();
    // SkyWalking sw8: 1-base64(traceId)-base64(segmentId)-spanId-...
    t.attachment(
        b"sw8",
        b"1-YWJjMTIz-c2VnMQ==-3-c3Zj-aW5zdA==-L2FwaQ==-aG9zdDo4MA==",
        1024,
    );
    let mut info = LogInfo::default();
    t.fill(&mut info);
    assert_eq!(info.trace_id.as_deref(), Some("abc123"));
    assert_eq!(info.span_id.as_deref(), Some("seg1-3"));
    let mut t = TraceCtx::default();
    t.attachment(b"uber-trace-id", b"5a3e:7b1c:9d2f:1", 1024);
    let mut info = LogInfo::default();
    t.fill(&mut info);
    assert_eq!(
        (
            info.trace_id.as_deref(),
            info.span_id.as_deref(),
            info.parent_span_id.as_deref()
        ),
        (Some("5a3e"), Some("7b1c"), Some("9d2f"))
    );
    assert_eq!(count_params(b"Ljava/lang/String;I[J[[Lx;"), Some(4));
    assert_eq!(count_params(b""), Some(0));
    assert_eq!(count_params(b"Q"), None);
}

#[test]
fn exception_flag_and_statuses() {
    // OK status but RESPONSE_WITH_EXCEPTION (0x90): C "java.lang.RuntimeException" 1 field "message" O ...
    let mut body = vec![0x90, b'C'];
    body.extend(hstr("java.lang.RuntimeException"));
    body.push(0x91);
    body.extend(hstr("detailMessage"));
    body.push(0x60);
    body.extend(hstr("boom"));
    let req = frame(0xc2, 0, 7, &invocation("m", "", &[], &[]));
    let logs = run(&[(C, req.clone(), 0), (S, frame(0x02, 20, 7, &body), 0)]);
    assert_eq!(logs[0].response_status, ResponseStatus::Ok);
    assert_eq!(
        logs[0].response_exception.as_deref(),
        Some("java.lang.RuntimeException")
    );
    // Status 40 BAD_REQUEST → client_error; 31 SERVER_TIMEOUT → server_error; 90 → client_error.
    for (status, want) in [
        (40, ResponseStatus::ClientError),
        (30, ResponseStatus::ClientError),
        (90, ResponseStatus::ClientError),
        (31, ResponseStatus::ServerError),
        (60, ResponseStatus::ServerError),
        (100, ResponseStatus::ServerError),
    ] {
        let logs = run(&[
            (C, req.clone(), 0),
            (S, frame(0x02, status, 7, &hstr("bad")), 0),
        ]);
        assert_eq!(logs[0].response_code, Some(status as i64));
        assert_eq!(logs[0].response_status, want);
        assert_eq!(logs[0].response_exception.as_deref(), Some("bad"));
    }
    // A one-way call (request flag without two-way) is a one-way log.
    let oneway = frame(0x82, 0, 8, &invocation("fire", "", &[], &[]));
    let logs = run(&[(C, oneway, 0)]);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].response_status, ResponseStatus::Ok);
    assert_eq!(logs[0].response_duration_us, None);
    assert_eq!(logs[0].request_type.as_deref(), Some("fire"));
    // An unanswered call is a timeout at flow end.
    let logs = run(&[(C, req, 0)]);
    assert_eq!(logs[0].response_status, ResponseStatus::Timeout);
}

#[test]
fn large_body_is_skipped_with_names_kept() {
    let mut big = Vec::new();
    big.push(b'B');
    big.extend_from_slice(&(60_000u16).to_be_bytes());
    big.extend(std::iter::repeat_n(7u8, 60_000));
    let body = invocation(
        "upload",
        "[B",
        &big,
        &[(
            "traceparent",
            "00-11111111111111111111111111111111-2222222222222222-01",
        )],
    );
    let req = frame(0xc2, 0, 5, &body);
    let limits = Limits {
        max_message_len: 1024,
        ..Limits::default()
    };
    let chunks: Vec<_> = req
        .chunks(1400)
        .map(|c| (C, c.to_vec(), 0))
        .chain([(S, frame(0x02, 20, 5, &[0x92]), 0)])
        .collect();
    let (logs, _) = run_with(&chunks, limits.clone());
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].request_type.as_deref(), Some("upload"));
    assert_eq!(logs[0].captured_request_byte, req.len() as u64);
    // A gap inside the skipped body keeps the boundary.
    let mut chunks: Vec<_> = req.chunks(1400).map(|c| (C, c.to_vec(), 0)).collect();
    chunks.remove(10);
    chunks[10].2 = 1400;
    chunks.push((S, frame(0x02, 20, 5, &[0x92]), 0));
    let (logs, _) = run_with(&chunks, limits);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].response_status, ResponseStatus::Ok);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
        let _ = probe(&data);
        let limits = Limits { max_message_len: 128, ..Limits::default() };
        let fk = flow();
        let mut f = DubboFlow::new(&limits);
        let mut out = Vec::new();
        let s = split.min(data.len());
        for part in [&data[..s], &data[s..]] {
            let ctx = ParseCtx { direction: C, flow: &fk, stream_offset: 0, time_us: 0, limits: &limits, datagram: false };
            if let Ok(n) = f.parse(part, &ctx, &mut out) {
                prop_assert!(n <= part.len());
            }
        }
        // Hessian reader on its own.
        let mut r = Reader::new(&data, 16);
        while r.peek().is_some() && r.skip().is_ok() {}
        let mut info = LogInfo::default();
        decode_request(&data, 64, 16, &mut info);
        decode_response(Status::OK, &data, 64, 16, &mut info);
        decode_request_json(&data, 64, &mut info);
        let _ = json::string_members(&data, 64, |_, _| {});
    }

    #[test]
    fn valid_header_with_arbitrary_body(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = hex("dabbc2000000000000000001");
        b.extend_from_slice(&(body.len() as u32).to_be_bytes());
        b.extend_from_slice(&body);
        let logs = run(&[(C, b, 0), (S, frame(0x02, 20, 1, &[0x92]), 0)]);
        prop_assert_eq!(logs.len(), 1);
    }
}

#[test]
fn fastjson_invocation() {
    // Serialization id 6: one JSON text per line (dubbo version, path, version, method, descriptor,
    // arguments, attachments).
    let body = concat!(
        "\"2.0.2\"\n\"org.demo.Api\"\n\"1.0\"\n\"find\"\n\"Ljava/lang/String;I\"\n",
        "\"k\\n1\"\n42\n",
        "{\"path\":\"org.demo.Api\",\"uber-trace-id\":\"aa:bb:0:1\"}\n"
    );
    let req = frame(0xc6, 0, 3, body.as_bytes());
    let resp = frame(0x06, 40, 3, b"\"bad \\\"arg\\\"\"\n");
    let logs = run(&[(C, req, 0), (S, resp, 0)]);
    assert_eq!(logs.len(), 1);
    let l = &logs[0];
    assert_eq!(l.request_resource.as_deref(), Some("org.demo.Api/find"));
    assert_eq!(l.version.as_deref(), Some("2.0.2"));
    assert_eq!(l.trace_id.as_deref(), Some("aa"));
    assert_eq!(l.span_id.as_deref(), Some("bb"));
    assert_eq!(l.response_code, Some(40));
    assert_eq!(l.response_status, ResponseStatus::ClientError);
    assert_eq!(l.response_exception.as_deref(), Some("bad \"arg\""));
}
