//! Tests on real bytes from `postgresql.pcap` and `microservices.pcap` (PostgreSQL 15; psycopg 3 and psql).

#[path = "fixtures.rs"]
mod fixtures;

use super::*;
use crate::Engine;
use fathom_model::{RequestLog, StreamChunk};
use proptest::prelude::*;
use std::sync::Arc;

fn flow() -> FlowKey {
    crate::test_support::tcp_flow(41874, 15432)
}

fn chunk(client: bool, t: u64, bytes: &[u8], gap: u64) -> StreamChunk {
    crate::test_support::chunk(flow(), client, t, bytes, gap)
}

/// Feed segments (each split at `split` when shorter) through an engine.
fn run_split(
    segs: &[(bool, &[u8])],
    split: Option<usize>,
) -> (Vec<RequestLog>, crate::EngineStats) {
    crate::test_support::run_split(Arc::new(PostgresqlParser), flow(), segs, split)
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
fn probe_startup_and_queries() {
    // SSLRequest, the first client payload of postgresql.pcap.
    assert_eq!(fixtures::PSYCOPG[0].1, b"\x00\x00\x00\x08\x04\xd2\x16\x2f");
    assert_eq!(
        probe(fixtures::PSYCOPG[0].1, Direction::ClientToServer),
        Probe::Yes
    );
    // StartupMessage.
    assert_eq!(
        probe(fixtures::PSYCOPG[2].1, Direction::ClientToServer),
        Probe::Yes
    );
    assert_eq!(
        probe(b"Q\x00\x00\x00\x0dSELECT 1\x00", Direction::ClientToServer),
        Probe::Yes
    );
    assert_eq!(
        probe(b"GET / HTTP/1.1\r\n\r\n", Direction::ClientToServer),
        Probe::No
    );
    assert_eq!(
        probe(
            b"\x12\x00\x00\x00\x03SET NAMES utf8mb4",
            Direction::ClientToServer
        ),
        Probe::No
    );
    assert_eq!(probe(b"N", Direction::ServerToClient), Probe::No);
}

#[test]
fn psycopg_simple_extended_pipeline_and_errors() {
    let (logs, stats) = run_split(fixtures::PSYCOPG, None);
    // truth/postgresql.jsonl, conn "psycopg".
    let mut want = vec!["Query", "Query"];
    want.extend(["Execute"; 15]);
    want.extend(["Query", "Parse", "Query"]);
    assert_eq!(types(&logs), want);
    assert!(logs
        .iter()
        .all(|l| l.request_domain.as_deref() == Some("appdb")));
    assert_eq!(
        logs[0].request_resource.as_deref(),
        Some("DROP TABLE IF EXISTS accounts")
    );
    // The DROP's NoticeResponse (00000) is not an error.
    assert_eq!(logs[0].response_status, ResponseStatus::Ok);
    assert_eq!(logs[0].response_result.as_deref(), Some("DROP TABLE"));
    assert_eq!(logs[0].endpoint.as_deref(), Some("DROP accounts"));
    let ins = "INSERT INTO accounts (owner, balance) VALUES ($1, $2)";
    for l in &logs[2..7] {
        assert_eq!(l.request_resource.as_deref(), Some(ins));
        assert_eq!(l.response_result.as_deref(), Some("INSERT 0 1"));
        assert_eq!(l.endpoint.as_deref(), Some("INSERT accounts"));
    }
    let results: Vec<_> = logs[7..17]
        .iter()
        .map(|l| l.response_result.as_deref().unwrap())
        .collect();
    assert_eq!(
        results,
        [
            "SELECT 5", "SELECT 4", "SELECT 4", "SELECT 1", "SELECT 1", "SELECT 1", "UPDATE 1",
            "UPDATE 1", "UPDATE 1", "UPDATE 1"
        ]
    );
    // The named prepared statement: Bind+Execute only, SQL from the earlier Parse.
    assert_eq!(
        logs[11].request_resource.as_deref(),
        Some("SELECT count(*) FROM accounts WHERE id <= $1")
    );
    let q_err = &logs[17];
    assert_eq!(q_err.response_status, ResponseStatus::ClientError);
    assert_eq!(q_err.response_code, None);
    assert_eq!(
        q_err.response_exception.as_deref(),
        Some("42P01 relation \"no_such_table\" does not exist")
    );
    let p_err = &logs[18];
    assert_eq!(
        p_err.request_resource.as_deref(),
        Some("SELECT * FROM no_such_table WHERE id = $1")
    );
    assert!(p_err
        .response_exception
        .as_deref()
        .unwrap()
        .starts_with("42P01 "));
    assert_eq!(logs[19].response_result.as_deref(), Some("SELECT 1"));
    for l in &logs {
        assert!(l.response_duration_us.is_some());
        assert!(l.captured_response_byte > 0);
    }
    assert_eq!(stats.orphan_responses, 0);
}

#[test]
fn pipeline_requests_keep_their_own_offsets() {
    let logs = run(fixtures::PSYCOPG);
    // The 4 pipelined Executes were sent in 4 segments before the Sync: distinct start times, one answer.
    let starts: Vec<u64> = logs[13..17].iter().map(|l| l.start_time_us).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");
    let ends: Vec<u64> = logs[13..17].iter().map(|l| l.end_time_us).collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{ends:?}");
}

#[test]
fn psql_two_statements_is_one_log() {
    let logs = run(fixtures::PSQL_TWO);
    assert_eq!(types(&logs), ["Query"]);
    assert_eq!(
        logs[0].request_resource.as_deref(),
        Some("SELECT owner FROM accounts ORDER BY id LIMIT 2; SELECT max(balance) FROM accounts")
    );
    assert_eq!(
        logs[0].response_result.as_deref(),
        Some("SELECT 2; SELECT 1")
    );
    let logs = run(fixtures::PSQL_ERR);
    assert_eq!(types(&logs), ["Query"]);
    assert_eq!(logs[0].response_status, ResponseStatus::ClientError);
    assert_eq!(logs[0].endpoint.as_deref(), Some("DELETE no_such_table"));
}

#[test]
fn microservices_four_executes() {
    let logs = run(fixtures::MICRO);
    assert_eq!(types(&logs), ["Execute"; 4]);
    assert!(logs.iter().all(|l| l.response_status == ResponseStatus::Ok));
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    for segs in [fixtures::PSYCOPG, fixtures::PSQL_TWO, fixtures::MICRO] {
        let base = run(segs);
        let max = segs.iter().map(|s| s.1.len()).max().unwrap();
        for k in 1..max {
            assert_eq!(run_split(segs, Some(k)).0, base, "split at {k}");
        }
    }
}

#[test]
fn ssl_accepted_stops_the_flow() {
    let segs: Vec<(bool, &[u8])> = vec![
        fixtures::PSYCOPG[0],
        (false, b"S"),
        (true, b"\x16\x03\x01\x00\x10"),
    ];
    let (logs, stats) = run_split(&segs, None);
    assert!(logs.is_empty());
    assert_eq!(stats.flows_unsupported, 1);
}

fn same(full: &[RequestLog], l: &RequestLog) -> bool {
    full.iter().any(|f| {
        f.request_resource == l.request_resource
            && f.request_type == l.request_type
            && f.response_exception == l.response_exception
            && f.response_result == l.response_result
    })
}

#[test]
fn mid_stream_start_gives_no_wrong_log() {
    let full = run(fixtures::PSYCOPG);
    for skip in 1..fixtures::PSYCOPG.len() {
        for cut in [0usize, 1, 3, 6] {
            let mut segs: Vec<(bool, &[u8])> = fixtures::PSYCOPG[skip..].to_vec();
            if let Some(s) = segs.first_mut() {
                s.1 = s.1.get(cut..).unwrap_or(&[]);
            }
            for l in run(&segs)
                .iter()
                .filter(|l| l.response_status != ResponseStatus::Timeout)
            {
                // Without the Parse, an Execute has no SQL: allowed, everything else must match.
                let no_sql =
                    l.request_resource.is_none() && l.request_type.as_deref() == Some("Execute");
                assert!(
                    same(&full, l)
                        || no_sql && full.iter().any(|f| f.response_result == l.response_result),
                    "skip {skip} cut {cut}: {l:?}"
                );
            }
        }
    }
}

#[test]
fn gap_in_the_middle_gives_no_wrong_log() {
    let full = run(fixtures::PSYCOPG);
    for lost in 8..fixtures::PSYCOPG.len() - 1 {
        let mut e = Engine::new(vec![Arc::new(PostgresqlParser)], Limits::default());
        let mut logs = Vec::new();
        let mut gap = [0u64; 2];
        for (i, (c, b)) in fixtures::PSYCOPG.iter().enumerate() {
            let d = usize::from(!*c);
            if i == lost {
                gap[d] += b.len() as u64;
                continue;
            }
            e.on_chunk(&chunk(*c, 1_000 + i as u64 * 10, b, gap[d]), &mut logs);
            gap[d] = 0;
        }
        e.finish(&mut logs);
        for l in logs
            .iter()
            .filter(|l| l.response_status != ResponseStatus::Timeout)
        {
            let no_sql =
                l.request_resource.is_none() && l.request_type.as_deref() == Some("Execute");
            assert!(
                same(&full, l)
                    || no_sql && full.iter().any(|f| f.response_result == l.response_result),
                "lost {lost}: {l:?}"
            );
        }
        // A lost backend segment costs the exchanges it answered and those awaiting at the gap.
        assert!(logs.len() + 6 >= full.len(), "lost {lost}: {}", logs.len());
    }
}

#[test]
fn failing_bind_skips_to_sync() {
    // Parse ok, Bind fails (22P02), the Execute is skipped, then a Query works.
    let msg = |t: u8, body: &[u8]| {
        let mut v = vec![t];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    };
    let mut c = Vec::new();
    c.extend(msg(b'P', b"\x00SELECT $1::int\x00\x00\x00"));
    c.extend(msg(
        b'B',
        b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01x\x00\x00",
    ));
    c.extend(msg(b'E', b"\x00\x00\x00\x00\x00"));
    c.extend(msg(b'S', b""));
    let mut s = Vec::new();
    s.extend(msg(b'1', b""));
    s.extend(msg(b'E', b"SERROR\x00C22P02\x00Mbad integer\x00\x00"));
    s.extend(msg(b'Z', b"I"));
    let segs: Vec<(bool, &[u8])> = vec![
        (true, &c),
        (false, &s),
        (true, b"Q\x00\x00\x00\x0dSELECT 1\x00"),
        (false, b"C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I"),
    ];
    let logs = run(&segs);
    assert_eq!(types(&logs), ["Bind", "Query"]);
    assert_eq!(
        logs[0].response_exception.as_deref(),
        Some("22P02 bad integer")
    );
    assert_eq!(logs[0].response_status, ResponseStatus::ClientError);
    assert_eq!(logs[1].response_result.as_deref(), Some("SELECT 1"));
}

#[test]
fn unanswered_execute_is_a_timeout() {
    let segs: Vec<(bool, &[u8])> = vec![(true, b"Q\x00\x00\x00\x0dSELECT 1\x00")];
    let logs = run(&segs);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].response_status, ResponseStatus::Timeout);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), client in any::<bool>()) {
        let limits = Limits::default();
        let mut f = PgFlow::new(&limits);
        let key = flow();
        let ctx = ParseCtx {
            direction: if client { Direction::ClientToServer } else { Direction::ServerToClient },
            flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: false,
        };
        let mut out = Vec::new();
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        f.on_gap(ctx.direction, 3);
        if let Ok(n) = f.parse(&data, &ctx, &mut out) {
            prop_assert!(n <= data.len());
        }
        let _ = probe(&data, ctx.direction);
    }

    #[test]
    fn arbitrary_backend_after_queries_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = Limits::default();
        let mut f = PgFlow::new(&limits);
        let key = flow();
        let mut out = Vec::new();
        let c = ParseCtx { direction: Direction::ClientToServer, flow: &key, stream_offset: 0, time_us: 0, limits: &limits, datagram: false };
        let q = b"Q\x00\x00\x00\x0dSELECT 1\x00P\x00\x00\x00\x09\x00x\x00\x00\x00E\x00\x00\x00\x09\x00\x00\x00\x00\x00";
        prop_assert_eq!(f.parse(q, &c, &mut out), Ok(q.len()));
        let s = ParseCtx { direction: Direction::ServerToClient, ..c };
        if let Ok(n) = f.parse(&data, &s, &mut out) {
            prop_assert!(n <= data.len());
        }
    }
}

#[test]
fn oversized_message_is_too_large() {
    let limits = Limits::default();
    let mut f = PgFlow::new(&limits);
    let key = flow();
    let ctx = ParseCtx {
        direction: Direction::ClientToServer,
        flow: &key,
        stream_offset: 0,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    let mut out = Vec::new();
    let r = f.parse(b"Q\x7f\x00\x00\x00SELECT", &ctx, &mut out);
    assert_eq!(r.map_err(|e| e.kind), Err(ParseErrorKind::TooLarge));
}

#[test]
fn gssenc_refused_and_cancel_request_are_not_logs() {
    // GSSENCRequest answered 'N', then the capture's SSLRequest / startup / queries continue.
    let mut segs: Vec<(bool, &[u8])> =
        vec![(true, b"\x00\x00\x00\x08\x04\xd2\x16\x30"), (false, b"N")];
    segs.extend_from_slice(fixtures::PSQL_TWO);
    let logs = run(&segs);
    assert_eq!(types(&logs), ["Query"]);
    // A CancelRequest connection: nothing to log.
    let cancel: Vec<(bool, &[u8])> = vec![(
        true,
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x12\x34\x56\x78\x9a\xbc",
    )];
    let (logs, stats) = run_split(&cancel, None);
    assert!(logs.is_empty());
    assert_eq!(stats.flows_detected.get("postgresql"), Some(&1));
}
