//! Tests on real bytes from `mysql.pcap` (MariaDB 10.11; PyMySQL and mysql-connector-python).

#[path = "fixtures.rs"]
mod fixtures;

use super::*;
use crate::Engine;
use fathom_model::{RequestLog, StreamChunk};
use proptest::prelude::*;
use std::sync::Arc;

fn flow() -> FlowKey {
    crate::test_support::tcp_flow(44646, 13306)
}

fn chunk(client: bool, t: u64, bytes: &[u8], gap: u64) -> StreamChunk {
    crate::test_support::chunk(flow(), client, t, bytes, gap)
}

/// Feed segments (each split at `split` when shorter) through an engine.
fn run_split(
    segs: &[(bool, &[u8])],
    split: Option<usize>,
) -> (Vec<RequestLog>, crate::EngineStats) {
    crate::test_support::run_split(Arc::new(MysqlParser), flow(), segs, split)
}

fn run(segs: &[(bool, &[u8])]) -> Vec<RequestLog> {
    run_split(segs, None).0
}

fn types(logs: &[RequestLog]) -> Vec<&str> {
    logs.iter()
        .map(|l| l.request_type.as_deref().unwrap_or("-"))
        .collect()
}

#[test]
fn probe_greeting_and_commands() {
    assert_eq!(
        probe(fixtures::PYMYSQL[0].1, Direction::ServerToClient),
        Probe::Yes
    );
    // COM_QUERY "SET NAMES utf8mb4" from the capture.
    let q = b"\x12\x00\x00\x00\x03SET NAMES utf8mb4";
    assert_eq!(probe(q, Direction::ClientToServer), Probe::Yes);
    assert_eq!(
        probe(b"\x01\x00\x00\x00\x0e", Direction::ClientToServer),
        Probe::Yes
    );
    assert_eq!(
        probe(b"\x02\x00\x00\x00\x0e\x00", Direction::ClientToServer),
        Probe::No
    );
    assert_eq!(
        probe(b"GET / HTTP/1.1\r\n", Direction::ClientToServer),
        Probe::No
    );
    assert_eq!(
        probe(b"*1\r\n$4\r\nPING\r\n", Direction::ClientToServer),
        Probe::No
    );
    assert_eq!(
        probe(
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            Direction::ClientToServer
        ),
        Probe::No
    );
}

#[test]
fn pymysql_text_protocol() {
    let logs = run(fixtures::PYMYSQL);
    // From truth/mysql.jsonl (conn "pymysql").
    let mut want = vec!["COM_QUERY"; 15];
    want.extend([
        "COM_PING",
        "COM_INIT_DB",
        "COM_QUERY",
        "COM_QUERY",
        "COM_QUIT",
    ]);
    assert_eq!(types(&logs), want);
    assert_eq!(
        logs[0].request_resource.as_deref(),
        Some("SET NAMES utf8mb4")
    );
    assert_eq!(logs[0].request_domain.as_deref(), Some("shop"));
    assert_eq!(logs[3].endpoint.as_deref(), Some("CREATE orders"));
    assert_eq!(logs[4].endpoint.as_deref(), Some("INSERT orders"));
    assert_eq!(logs[10].endpoint.as_deref(), Some("SELECT orders"));
    // SELECT ... WHERE id > 0: 5 rows inserted before.
    assert_eq!(logs[10].response_result.as_deref(), Some("rows=5"));
    assert_eq!(logs[11].response_result.as_deref(), Some("rows=4"));
    assert_eq!(logs[12].response_result.as_deref(), Some("affected_rows=2"));
    assert_eq!(logs[13].response_code, Some(1146));
    assert_eq!(logs[13].response_status, ResponseStatus::ServerError);
    assert!(logs[13]
        .response_exception
        .as_deref()
        .unwrap()
        .contains("no_such_table"));
    assert_eq!(logs[14].response_code, Some(1064));
    assert_eq!(logs[16].request_resource.as_deref(), Some("shop"));
    let quit = &logs[19];
    assert_eq!(quit.response_duration_us, None);
    assert_eq!(quit.response_status, ResponseStatus::Ok);
    for l in &logs[..19] {
        assert!(l.response_duration_us.is_some(), "{l:?}");
    }
    let ok = logs
        .iter()
        .filter(|l| l.response_status == ResponseStatus::Ok)
        .count();
    assert_eq!(ok, 18);
}

#[test]
fn connector_prepared_statements() {
    let logs = run(fixtures::CONNECTOR);
    let mut want = vec!["COM_QUERY", "COM_QUERY", "COM_PING"];
    for _ in 0..5 {
        want.extend([
            "COM_STMT_PREPARE",
            "COM_STMT_RESET",
            "COM_STMT_EXECUTE",
            "COM_STMT_CLOSE",
        ]);
    }
    want.extend(["COM_STMT_PREPARE", "COM_STMT_CLOSE", "COM_QUIT"]);
    assert_eq!(types(&logs), want);
    let ins = "INSERT INTO orders (customer, amount, status) VALUES (?, ?, ?)";
    assert_eq!(logs[3].request_resource.as_deref(), Some(ins));
    assert_eq!(logs[3].response_result.as_deref(), Some("statement_id=1"));
    assert_eq!(logs[4].request_resource.as_deref(), Some("stmt_id=1"));
    // EXECUTE maps back to the prepared text.
    assert_eq!(logs[5].request_resource.as_deref(), Some(ins));
    assert_eq!(logs[5].endpoint.as_deref(), Some("INSERT orders"));
    assert_eq!(logs[5].response_result.as_deref(), Some("affected_rows=1"));
    assert_eq!(logs[6].response_duration_us, None);
    let sel = &logs[3 + 4 * 3 + 2];
    assert_eq!(sel.request_type.as_deref(), Some("COM_STMT_EXECUTE"));
    assert!(sel
        .request_resource
        .as_deref()
        .unwrap()
        .starts_with("SELECT id, customer"));
    assert!(sel.response_result.as_deref().unwrap().starts_with("rows="));
    let failed = &logs[23];
    assert_eq!(failed.response_code, Some(1146));
    assert_eq!(failed.response_status, ResponseStatus::ServerError);
    let oneway = logs
        .iter()
        .filter(|l| l.response_duration_us.is_none())
        .count();
    assert_eq!(oneway, 7);
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    for segs in [fixtures::PYMYSQL, fixtures::CONNECTOR] {
        let base = run(segs);
        let max = segs.iter().map(|s| s.1.len()).max().unwrap();
        for k in 1..max {
            assert_eq!(run_split(segs, Some(k)).0, base, "split at {k}");
        }
    }
}

#[test]
fn one_byte_chunks() {
    let base = run(fixtures::CONNECTOR);
    let mut e = Engine::new(vec![Arc::new(MysqlParser)], Limits::default());
    let mut logs = Vec::new();
    for (i, (c, b)) in fixtures::CONNECTOR.iter().enumerate() {
        // Detection needs a whole first packet (the engine probes at most 8 chunks).
        let n = if i == 0 { b.len() } else { 1 };
        for byte in b.chunks(n) {
            e.on_chunk(&chunk(*c, 1_000 + i as u64 * 10, byte, 0), &mut logs);
        }
    }
    e.finish(&mut logs);
    assert_eq!(logs, base);
}

#[test]
fn mid_stream_start_gives_no_wrong_log() {
    let full = run(fixtures::PYMYSQL);
    // Drop the first n segments, and the first bytes of the next one.
    for skip in 1..fixtures::PYMYSQL.len() {
        for cut in [0usize, 1, 3, 7] {
            let mut segs: Vec<(bool, &[u8])> = fixtures::PYMYSQL[skip..].to_vec();
            if let Some(s) = segs.first_mut() {
                s.1 = s.1.get(cut..).unwrap_or(&[]);
            }
            let logs = run(&segs);
            // Requests whose responses the engine dropped while still detecting end as timeouts; every other
            // log must be one of the full run's logs, with the same fields (times aside).
            for l in logs
                .iter()
                .filter(|l| l.response_status != ResponseStatus::Timeout)
            {
                assert!(
                    full.iter().any(|f| f.request_resource == l.request_resource
                        && f.request_type == l.request_type
                        && f.response_code == l.response_code
                        && f.response_result == l.response_result),
                    "skip {skip} cut {cut}: {l:?}"
                );
            }
        }
    }
}

#[test]
fn gap_in_the_middle_gives_no_wrong_log() {
    let full = run(fixtures::CONNECTOR);
    for lost in 4..fixtures::CONNECTOR.len() - 1 {
        let mut e = Engine::new(vec![Arc::new(MysqlParser)], Limits::default());
        let mut logs = Vec::new();
        let mut gap = [0u64; 2];
        for (i, (c, b)) in fixtures::CONNECTOR.iter().enumerate() {
            let d = usize::from(!*c);
            if i == lost {
                gap[d] += b.len() as u64;
                continue;
            }
            e.on_chunk(&chunk(*c, 1_000 + i as u64 * 10, b, gap[d]), &mut logs);
            gap[d] = 0;
        }
        e.finish(&mut logs);
        for l in &logs {
            if l.response_status == ResponseStatus::Timeout {
                continue;
            }
            // An EXECUTE whose PREPARE response was lost names its statement by id.
            let by_id = l.request_type.as_deref() == Some("COM_STMT_EXECUTE")
                && l.request_resource
                    .as_deref()
                    .is_some_and(|r| r.starts_with("stmt_id="));
            assert!(
                full.iter()
                    .any(|f| (by_id || f.request_resource == l.request_resource)
                        && f.request_type == l.request_type
                        && f.response_code == l.response_code
                        && f.response_result == l.response_result),
                "lost {lost}: {l:?}"
            );
        }
        assert!(logs.len() + 2 >= full.len(), "lost {lost}: {}", logs.len());
    }
}

#[test]
fn ssl_request_stops_the_flow() {
    // Greeting from the capture, then an SSLRequest (32-byte handshake response with CLIENT_SSL).
    let mut ssl = vec![0x20, 0, 0, 1];
    ssl.extend_from_slice(&(caps::PROTOCOL_41 | caps::SSL | caps::SECURE_CONNECTION).to_le_bytes());
    ssl.extend_from_slice(&[0, 0, 0, 1, 33]);
    ssl.extend_from_slice(&[0; 23]);
    let segs: Vec<(bool, &[u8])> = vec![
        fixtures::PYMYSQL[0],
        (true, &ssl),
        (true, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
    ];
    let (logs, stats) = run_split(&segs, None);
    assert!(logs.is_empty());
    assert_eq!(stats.flows_unsupported, 1);
    assert_eq!(stats.parse_errors.get("unsupported"), Some(&1));
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

#[test]
fn large_query_over_16mb_is_one_log_and_not_buffered() {
    // A COM_QUERY of 0xffffff + 10 payload bytes: two packets; then an OK.
    let mut first = vec![0x03u8];
    first.extend(std::iter::repeat_n(b'x', MAX_PACKET - 1));
    let mut a = packet(0, b"SELECT 1");
    a.truncate(0);
    let mut big = (MAX_PACKET as u32).to_le_bytes()[..3].to_vec();
    big.push(0);
    big.extend_from_slice(&first);
    big.extend(packet(1, b"0123456789"));
    let ok = packet(1, b"\x00\x00\x00\x02\x00\x00\x00");
    let mut e = Engine::new(vec![Arc::new(MysqlParser)], Limits::default());
    let mut logs = Vec::new();
    e.on_chunk(&chunk(false, 1, fixtures::PYMYSQL[0].1, 0), &mut logs);
    e.on_chunk(&chunk(true, 2, fixtures::PYMYSQL[1].1, 0), &mut logs);
    e.on_chunk(&chunk(false, 3, fixtures::PYMYSQL[2].1, 0), &mut logs);
    for (i, c) in big.chunks(65536).enumerate() {
        e.on_chunk(&chunk(true, 10 + i as u64, c, 0), &mut logs);
    }
    e.on_chunk(&chunk(false, 1_000, &ok, 0), &mut logs);
    e.finish(&mut logs);
    assert_eq!(e.stats().buffer_overflows, 0);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].request_type.as_deref(), Some("COM_QUERY"));
    assert_eq!(logs[0].captured_request_byte, big.len() as u64);
    assert_eq!(
        logs[0].request_resource.as_ref().map(|s| s.len()),
        Some(Limits::DEFAULT_MAX_FIELD_LEN)
    );
    assert_eq!(logs[0].response_status, ResponseStatus::Ok);
}

fn compress_packet(seq: u8, inner: &[u8], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let (body, ulen) = if deflate {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(inner).unwrap();
        (z.finish().unwrap(), inner.len())
    } else {
        (inner.to_vec(), 0)
    };
    let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(&(ulen as u32).to_le_bytes()[..3]);
    v.extend_from_slice(&body);
    v
}

#[test]
fn compressed_protocol_is_followed() {
    // Greeting and handshake response with CLIENT_COMPRESS set on both sides (capability bits patched in the
    // capture's bytes), then compressed command / response packets.
    let mut greet = fixtures::PYMYSQL[0].1.to_vec();
    let (_, i) = wire::cstr(&greet[4..], 1).unwrap();
    greet[4 + i + 13] |= caps::COMPRESS as u8;
    let mut resp = fixtures::PYMYSQL[1].1.to_vec();
    resp[4] |= caps::COMPRESS as u8;
    let query = packet(0, b"\x03SELECT id FROM orders");
    let mut rs = Vec::new();
    rs.extend(packet(1, b"\x01"));
    rs.extend(packet(2, b"\x03def\x04shop\x06orders\x06orders\x02id\x02id\x0c?\x00\x0b\x00\x00\x00\x03\x03B\x00\x00\x00"));
    rs.extend(packet(3, b"\xfe\x00\x00\x22\x00"));
    rs.extend(packet(4, b"\x011"));
    rs.extend(packet(5, b"\x012"));
    rs.extend(packet(6, b"\xfe\x00\x00\x22\x00"));
    let segs: Vec<(bool, Vec<u8>)> = vec![
        (false, greet),
        (true, resp),
        (false, fixtures::PYMYSQL[2].1.to_vec()),
        (true, compress_packet(0, &query, false)),
        (false, compress_packet(0, &rs, true)),
        (true, compress_packet(0, &packet(0, b"\x0e"), false)),
        (
            false,
            compress_packet(0, &packet(1, b"\x00\x00\x00\x02\x00\x00\x00"), true),
        ),
    ];
    let segs: Vec<(bool, &[u8])> = segs.iter().map(|(c, b)| (*c, b.as_slice())).collect();
    let logs = run(&segs);
    assert_eq!(types(&logs), ["COM_QUERY", "COM_PING"]);
    assert_eq!(logs[0].response_result.as_deref(), Some("rows=2"));
    assert_eq!(logs[0].captured_request_byte, segs[3].1.len() as u64);
    assert_eq!(logs[0].captured_response_byte, segs[4].1.len() as u64);
    for k in 1..60 {
        assert_eq!(run_split(&segs, Some(k)).0, logs, "split {k}");
    }
}

#[test]
fn multi_result_set_is_one_response() {
    let q = packet(0, b"\x03CALL p()");
    let mut rs = Vec::new();
    rs.extend(packet(1, b"\x01"));
    rs.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x01a\x00\x0c?\x00\x0b\x00\x00\x00\x03\x03B\x00\x00\x00",
    ));
    rs.extend(packet(3, b"\xfe\x00\x00\x0a\x00"));
    rs.extend(packet(4, b"\x011"));
    rs.extend(packet(5, b"\xfe\x00\x00\x0a\x00")); // MORE_RESULTS_EXISTS
    rs.extend(packet(6, b"\x00\x00\x00\x02\x00\x00\x00"));
    let segs: Vec<(bool, &[u8])> = vec![
        fixtures::PYMYSQL[0],
        fixtures::PYMYSQL[1],
        fixtures::PYMYSQL[2],
        (true, &q),
        (false, &rs),
    ];
    let logs = run(&segs);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].captured_response_byte, rs.len() as u64);
    assert_eq!(logs[0].response_result.as_deref(), Some("rows=1"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), client in any::<bool>()) {
        let limits = Limits::default();
        let mut f = MysqlFlow::new(&limits);
        let key = flow();
        let ctx = ParseCtx {
            direction: if client { Direction::ClientToServer } else { Direction::ServerToClient },
            flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: false,
        };
        let mut out = Vec::new();
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        let _ = probe(&data, ctx.direction);
    }

    #[test]
    fn arbitrary_server_bytes_after_a_command_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = Limits::default();
        let mut f = MysqlFlow::new(&limits);
        let key = flow();
        let mut out = Vec::new();
        let c = ParseCtx { direction: Direction::ClientToServer, flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: false };
        let q = packet(0, b"\x03SELECT 1");
        prop_assert_eq!(f.parse(&q, &c, &mut out), Ok(q.len()));
        let s = ParseCtx { direction: Direction::ServerToClient, ..c };
        if let Ok(n) = f.parse(&data, &s, &mut out) {
            prop_assert!(n <= data.len());
        }
    }
}

#[test]
fn prepare_without_handshake_learns_deprecate_eof() {
    // Mid-stream (no handshake seen), CLIENT_DEPRECATE_EOF in force: the PREPARE OK's definitions are not
    // followed by an EOF. The next response shows it, and both commands still pair right.
    let prep = packet(0, b"\x16SELECT ?");
    let mut ok = packet(1, b"\x00\x01\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00");
    ok.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x01?\x00\x0c?\x00\x00\x00\x00\x00\xfd\x80\x00\x00\x00\x00",
    ));
    let exec = packet(
        0,
        b"\x17\x01\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\xfd\x00\x011",
    );
    let mut rs = packet(1, b"\x01");
    rs.extend(packet(
        2,
        b"\x03def\x00\x00\x00\x01?\x00\x0c?\x00\x00\x00\x00\x00\xfd\x80\x00\x00\x00\x00",
    ));
    rs.extend(packet(3, b"\x00\x00\x011"));
    rs.extend(packet(4, b"\xfe\x00\x00\x02\x00\x00\x00"));
    let segs: Vec<(bool, &[u8])> = vec![(true, &prep), (false, &ok), (true, &exec), (false, &rs)];
    let logs = run(&segs);
    assert_eq!(types(&logs), ["COM_STMT_PREPARE", "COM_STMT_EXECUTE"]);
    assert_eq!(logs[0].response_result.as_deref(), Some("statement_id=1"));
    assert_eq!(logs[0].captured_response_byte, ok.len() as u64);
    assert_eq!(logs[1].request_resource.as_deref(), Some("SELECT ?"));
    assert_eq!(logs[1].response_result.as_deref(), Some("rows=1"));
    assert_eq!(logs[1].captured_response_byte, rs.len() as u64);
}
