//! Tests on real conversations from `shared/data/tls.pcap` (curl 7.88 / Python ssl → nginx 1.22), one TCP
//! segment per line in `tests/golden/tls/*.txt` (`c`/`s` + hex payload, extracted with tshark). Expected
//! values come from the capture's truth file (curl -v / Python ssl) and tshark's dissection.

use super::*;
use crate::{Engine, EngineStats};
use fathom_model::{ChunkOrigin, L4Protocol, RequestLog, StreamChunk};
use proptest::prelude::*;
use std::sync::Arc;

use Direction::{ClientToServer as C2S, ServerToClient as S2C};

fn hex(s: &str) -> Vec<u8> {
    let s = s.as_bytes();
    s.chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

macro_rules! golden {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/tls/",
            $name,
            ".txt"
        ))
    };
}

fn segments(text: &str) -> Vec<(Direction, Vec<u8>)> {
    text.lines()
        .filter_map(|l| {
            let (d, h) = l.split_once(' ')?;
            Some((if d == "c" { C2S } else { S2C }, hex(h.trim())))
        })
        .collect()
}

fn flow() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 36362,
        port_dst: 18443,
        l4_protocol: L4Protocol::Tcp,
    }
}

/// (direction, time, bytes, gap_before)
type Step = (Direction, u64, Vec<u8>, u64);

fn steps(segs: &[(Direction, Vec<u8>)]) -> Vec<Step> {
    segs.iter()
        .enumerate()
        .map(|(i, (d, b))| (*d, 1_000 + 100 * i as u64, b.clone(), 0))
        .collect()
}

fn run(steps: &[Step]) -> (Vec<RequestLog>, EngineStats) {
    let mut engine = Engine::new(vec![Arc::new(TlsParser)], Limits::default());
    let mut logs = Vec::new();
    for (dir, t, bytes, gap) in steps {
        let chunk = StreamChunk {
            flow_id: 7,
            flow: flow(),
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

fn summary(logs: &[RequestLog]) -> Vec<String> {
    logs.iter()
        .map(|l| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {} {} {}",
                l.request_type,
                l.request_domain,
                l.version,
                l.response_code,
                l.response_status,
                l.response_exception,
                l.response_result,
                l.response_duration_us,
                l.start_time_us,
                l.end_time_us,
                l.captured_request_byte,
                l.captured_response_byte
            )
        })
        .collect()
}

struct Want {
    sni: Option<&'static str>,
    version: Option<&'static str>,
    code: Option<i64>,
    status: ResponseStatus,
    exception: Option<&'static str>,
    result: Option<&'static str>,
    req_bytes: u64,
    resp_bytes: u64,
    /// Index of the segment holding the response's last byte.
    resp_end_segment: u64,
}

fn check(name: &str, text: &str, w: Want) {
    let (logs, stats) = run(&steps(&segments(text)));
    assert_eq!(logs.len(), 1, "{name}: {logs:?} {stats:?}");
    let l = &logs[0];
    assert_eq!(l.l7_protocol, L7Protocol::Tls, "{name}");
    assert_eq!(l.request_type.as_deref(), Some("ClientHello"), "{name}");
    assert_eq!(l.request_domain.as_deref(), w.sni, "{name}");
    assert_eq!(l.request_resource.as_deref(), w.sni, "{name}");
    assert_eq!(l.version.as_deref(), w.version, "{name}");
    assert_eq!(l.response_code, w.code, "{name}");
    assert_eq!(l.response_status, w.status, "{name}");
    assert_eq!(l.response_exception.as_deref(), w.exception, "{name}");
    assert_eq!(l.response_result.as_deref(), w.result, "{name}");
    assert_eq!(l.captured_request_byte, w.req_bytes, "{name}");
    assert_eq!(l.captured_response_byte, w.resp_bytes, "{name}");
    assert_eq!(l.start_time_us, 1_000, "{name}");
    assert_eq!(l.end_time_us, 1_000 + 100 * w.resp_end_segment, "{name}");
    assert_eq!(stats.orphan_responses, 0, "{name}");
}

#[test]
fn tls13_with_alpn_h2() {
    // Server's first flight: one 1416-byte segment (ServerHello, CCS, 4 encrypted records); the client's
    // CCS + Finished follow. ALPN is encrypted in 1.3: the client's offer is reported.
    check(
        "tls13_h2",
        golden!("tls13_h2"),
        Want {
            sni: Some("shop.example.test"),
            version: Some("1.3"),
            code: None,
            status: ResponseStatus::Ok,
            exception: None,
            result: Some("cipher=TLS_AES_256_GCM_SHA384;alpn_offered=h2,http/1.1"),
            req_bytes: 517,
            resp_bytes: 1416,
            resp_end_segment: 1,
        },
    );
}

#[test]
fn tls13_with_alpn_http11() {
    check(
        "tls13_http11",
        golden!("tls13_http11"),
        Want {
            sni: Some("api.example.test"),
            version: Some("1.3"),
            code: None,
            status: ResponseStatus::Ok,
            exception: None,
            result: Some("cipher=TLS_AES_256_GCM_SHA384;alpn_offered=http/1.1"),
            req_bytes: 517,
            resp_bytes: 1422,
            resp_end_segment: 1,
        },
    );
}

#[test]
fn tls12_with_alpn_and_certificate() {
    // ServerHello, Certificate, ServerKeyExchange, ServerHelloDone (1293 bytes), then CCS + Finished (51).
    // Certificate fields as tshark shows them (x509sat.uTF8String, x509af.utcTime).
    check(
        "tls12_http11",
        golden!("tls12_http11"),
        Want {
            sni: Some("shop.example.test"),
            version: Some("1.2"),
            code: None,
            status: ResponseStatus::Ok,
            exception: None,
            result: Some(
                "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384;alpn=http/1.1;subject=CN=shop.example.test;issuer=CN=shop.example.test;not_after=2026-12-27T01:19:31Z",
            ),
            req_bytes: 225,
            resp_bytes: 1293 + 51,
            resp_end_segment: 3,
        },
    );
}

#[test]
fn tls12_python_without_alpn() {
    // The server's second flight is NewSessionTicket, CCS, Finished (274 bytes).
    check(
        "tls12_python",
        golden!("tls12_python"),
        Want {
            sni: Some("api.example.test"),
            version: Some("1.2"),
            code: None,
            status: ResponseStatus::Ok,
            exception: None,
            result: Some(
                "cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384;subject=CN=shop.example.test;issuer=CN=shop.example.test;not_after=2026-12-27T01:19:31Z",
            ),
            req_bytes: 187,
            resp_bytes: 1250 + 274,
            resp_end_segment: 3,
        },
    );
}

#[test]
fn rejected_handshakes_are_alerts() {
    for (name, text, sni) in [
        (
            "alert_unknown_sni",
            golden!("alert_unknown_sni"),
            Some("nope.example.test"),
        ),
        ("alert_no_sni", golden!("alert_no_sni"), None),
    ] {
        check(
            name,
            text,
            Want {
                sni,
                version: None,
                code: Some(112),
                status: ResponseStatus::ClientError,
                exception: Some("unrecognized_name"),
                result: None,
                req_bytes: 517,
                resp_bytes: 7,
                resp_end_segment: 1,
            },
        );
    }
}

#[test]
fn split_at_every_offset() {
    for text in [
        golden!("tls13_h2"),
        golden!("tls12_python"),
        golden!("alert_unknown_sni"),
    ] {
        let segs = segments(text);
        let base = steps(&segs);
        let reference = summary(&run(&base).0);
        assert_eq!(reference.len(), 1);
        // The handshake segments (the first four), each cut at every offset.
        for i in 0..segs.len().min(4) {
            for cut in 1..segs[i].1.len() {
                let mut s = base.clone();
                let (d, t, b, g) = s[i].clone();
                s[i] = (d, t, b[..cut].to_vec(), g);
                s.insert(i + 1, (d, t, b[cut..].to_vec(), 0));
                assert_eq!(summary(&run(&s).0), reference, "segment {i} cut {cut}");
            }
        }
        // Byte by byte.
        let mut s = Vec::new();
        for (d, t, b, _) in &base {
            s.extend(b.iter().map(|x| (*d, *t, vec![*x], 0)));
        }
        assert_eq!(summary(&run(&s).0), reference);
    }
}

#[test]
fn mid_stream_start_gives_no_log() {
    let segs = segments(golden!("tls13_h2"));
    for skip in 2..segs.len() {
        let (logs, _) = run(&steps(&segs[skip..]));
        assert!(logs.is_empty(), "skip {skip}: {logs:?}");
    }
    // Starting with the server's ServerHello: an orphan response, no log.
    let (logs, stats) = run(&steps(&segs[1..]));
    assert!(logs.is_empty());
    assert_eq!(stats.orphan_responses, 1);
}

#[test]
fn gaps_never_produce_garbage() {
    let segs = segments(golden!("tls12_http11"));
    let base = steps(&segs);
    // Lose part of every segment after the first, one at a time: at most the one handshake log, with the
    // ClientHello's fields intact.
    for i in 1..base.len() {
        for lost in [1usize, 5, 17] {
            let mut s = base.clone();
            let (d, t, b, _) = s[i].clone();
            if lost >= b.len() {
                continue;
            }
            s[i] = (d, t, b[lost..].to_vec(), lost as u64);
            let (logs, _) = run(&s);
            assert!(logs.len() <= 1, "segment {i} lost {lost}");
            for l in &logs {
                assert_eq!(l.request_domain.as_deref(), Some("shop.example.test"));
                assert_eq!(l.request_type.as_deref(), Some("ClientHello"));
            }
        }
    }
}

#[test]
fn probe_verdicts() {
    let segs = segments(golden!("tls13_h2"));
    assert_eq!(probe(&segs[0].1), Probe::Yes);
    assert_eq!(probe(&segs[1].1), Probe::Yes);
    assert_eq!(probe(&segs[0].1[..3]), Probe::Maybe);
    assert_eq!(probe(&segs[3].1), Probe::Maybe); // application data mid-stream
    assert_eq!(probe(b"GET / HTTP/1.1\r\n\r\n"), Probe::No);
    assert_eq!(probe(b"\x16\x03\x01\xff\xff\x01"), Probe::No); // oversized record
    assert_eq!(probe(b"*1\r\n$4\r\nPING\r\n"), Probe::No);
}

#[test]
fn hello_retry_request_keeps_one_handshake() {
    // Synthetic: ClientHello, HRR (ServerHello with the HRR random), second ClientHello, real ServerHello.
    let segs = segments(golden!("tls13_h2"));
    let ch = segs[0].1.clone();
    let sh_rec_len = u16::from_be_bytes([segs[1].1[3], segs[1].1[4]]) as usize;
    let sh = segs[1].1[..5 + sh_rec_len].to_vec();
    let mut hrr = sh.clone();
    hrr[11..43].copy_from_slice(&HRR_RANDOM);
    let s = vec![
        (C2S, 1, ch.clone(), 0),
        (S2C, 2, hrr, 0),
        (C2S, 3, ch, 0),
        (S2C, 4, sh, 0),
        (C2S, 5, b"\x14\x03\x03\x00\x01\x01".to_vec(), 0),
    ];
    let (logs, _) = run(&s);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].version.as_deref(), Some("1.3"));
    assert_eq!(logs[0].response_duration_us, Some(3));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..700), server in any::<bool>()) {
        let key = flow();
        let limits = Limits::default();
        let mut f = TlsFlow::new(&limits);
        let direction = if server { S2C } else { C2S };
        let ctx = ParseCtx { direction, flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: false };
        let mut out = Vec::new();
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        f.on_gap(direction, 3);
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        f.on_close([0, 0], &mut out);
        let _ = probe(&data);
        let _ = x509::summarize(&data);
    }

    #[test]
    fn mutated_handshakes_never_panic(seg in 0usize..3, pos in 0usize..1500, val in any::<u8>()) {
        let segs = segments(golden!("tls12_http11"));
        let mut s = steps(&segs);
        if let Some(x) = s[seg].2.get_mut(pos) { *x = val; }
        let _ = run(&s);
    }
}
