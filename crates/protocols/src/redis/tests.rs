//! Tests on real bytes from `redis.pcap` (Redis 7.0.15), through the parser and through the [`crate::Engine`].

use super::*;
use crate::Engine;
use fathom_model::{ChunkOrigin, L4Protocol, RequestLog, StreamChunk};
use std::sync::Arc;

use Direction::{ClientToServer as C, ServerToClient as S};

/// redis.pcap tcp.stream 0 (raw RESP client, port 41640), every segment in capture order.
pub(crate) const MAIN: &[(Direction, &[u8])] = &[
    (C, b"*3\r\n$3\r\nSET\r\n$9\r\nuser:4390\r\n$4\r\nv150\r\n"),
    (S, b"+OK\r\n"),
    (C, b"*2\r\n$3\r\nGET\r\n$9\r\nuser:4390\r\n"),
    (S, b"$4\r\nv150\r\n"),
    (C, b"*2\r\n$3\r\nGET\r\n$16\r\nuser:4390:absent\r\n"),
    (S, b"$-1\r\n"),
    (C, b"*2\r\n$4\r\nINCR\r\n$12\r\nuser:counter\r\n"),
    (S, b":1\r\n"),
    (C, b"*3\r\n$6\r\nINCRBY\r\n$12\r\nuser:counter\r\n$1\r\n5\r\n"),
    (S, b":6\r\n"),
    (C, b"*6\r\n$4\r\nHSET\r\n$9\r\nuser:9706\r\n$4\r\nname\r\n$6\r\nfathom\r\n$6\r\nvisits\r\n$2\r\n38\r\n"),
    (S, b":2\r\n"),
    (C, b"*2\r\n$7\r\nHGETALL\r\n$9\r\nuser:9706\r\n"),
    (S, b"*4\r\n$4\r\nname\r\n$6\r\nfathom\r\n$6\r\nvisits\r\n$2\r\n38\r\n"),
    (C, b"*3\r\n$6\r\nEXPIRE\r\n$9\r\nuser:9706\r\n$3\r\n600\r\n"),
    (S, b":1\r\n"),
    (C, b"*2\r\n$3\r\nTTL\r\n$9\r\nuser:9706\r\n"),
    (S, b":600\r\n"),
    (C, b"*3\r\n$5\r\nRPUSH\r\n$9\r\nuser:2400\r\n$2\r\ne0\r\n"),
    (S, b":1\r\n"),
    (C, b"*3\r\n$5\r\nRPUSH\r\n$9\r\nuser:2400\r\n$2\r\ne1\r\n"),
    (S, b":2\r\n"),
    (C, b"*3\r\n$5\r\nRPUSH\r\n$9\r\nuser:2400\r\n$2\r\ne2\r\n"),
    (S, b":3\r\n"),
    (C, b"*3\r\n$5\r\nRPUSH\r\n$9\r\nuser:2400\r\n$2\r\ne3\r\n"),
    (S, b":4\r\n"),
    (C, b"*4\r\n$6\r\nLRANGE\r\n$9\r\nuser:2400\r\n$1\r\n0\r\n$2\r\n-1\r\n"),
    (S, b"*4\r\n$2\r\ne0\r\n$2\r\ne1\r\n$2\r\ne2\r\n$2\r\ne3\r\n"),
    (C, b"*6\r\n$4\r\nZADD\r\n$9\r\nuser:rank\r\n$2\r\n10\r\n$1\r\na\r\n$2\r\n20\r\n$1\r\nb\r\n"),
    (S, b":2\r\n"),
    (C, b"*5\r\n$6\r\nZRANGE\r\n$9\r\nuser:rank\r\n$1\r\n0\r\n$2\r\n-1\r\n$10\r\nWITHSCORES\r\n"),
    (S, b"*4\r\n$1\r\na\r\n$2\r\n10\r\n$1\r\nb\r\n$2\r\n20\r\n"),
    (C, b"*3\r\n$5\r\nLPUSH\r\n$9\r\nuser:4390\r\n$1\r\nx\r\n"),
    (S, b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (C, b"*2\r\n$9\r\nNOSUCHCMD\r\n$3\r\narg\r\n"),
    (S, b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'arg' \r\n"),
    (C, b"*5\r\n$4\r\nMGET\r\n$9\r\nuser:4390\r\n$9\r\nuser:9706\r\n$9\r\nuser:2400\r\n$9\r\nuser:6344\r\n"),
    (S, b"*4\r\n$4\r\nv150\r\n$-1\r\n$-1\r\n$-1\r\n"),
    (C, b"*2\r\n$6\r\nEXISTS\r\n$9\r\nuser:4390\r\n"),
    (S, b":1\r\n"),
    (C, b"*2\r\n$3\r\nDEL\r\n$9\r\nuser:2400\r\n"),
    (S, b":1\r\n"),
    (C, b"*3\r\n$3\r\nSET\r\n$7\r\nuser:p0\r\n$1\r\n0\r\n*2\r\n$3\r\nGET\r\n$7\r\nuser:p0\r\n*3\r\n$3\r\nSET\r\n$7\r\nuser:p2\r\n$1\r\n2\r\n*2\r\n$3\r\nGET\r\n$7\r\nuser:p2\r\n*3\r\n$3\r\nSET\r\n$7\r\nuser:p4\r\n$1\r\n4\r\n"),
    (S, b"+OK\r\n$1\r\n0\r\n+OK\r\n$1\r\n2\r\n+OK\r\n"),
    (C, b"*1\r\n$4\r\nQUIT\r\n"),
    (S, b"+OK\r\n"),
];

/// redis.pcap tcp.stream 1 (the subscriber, port 41654).
pub(crate) const SUBSCRIBER: &[(Direction, &[u8])] = &[
    (C, b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nevents\r\n"),
    (S, b"*3\r\n$9\r\nsubscribe\r\n$6\r\nevents\r\n:1\r\n"),
    (
        S,
        b"*3\r\n$7\r\nmessage\r\n$6\r\nevents\r\n$7\r\nevent-0\r\n",
    ),
    (
        S,
        b"*3\r\n$7\r\nmessage\r\n$6\r\nevents\r\n$7\r\nevent-1\r\n",
    ),
    (C, b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$6\r\nevents\r\n"),
    (S, b"*3\r\n$11\r\nunsubscribe\r\n$6\r\nevents\r\n:0\r\n"),
];

/// The expected (request_type, request_resource, status, exception prefix) of [`MAIN`], from the client's
/// accounting in `truth/redis.jsonl` (resources reduced to "command key" by this module's rule).
const MAIN_EXPECTED: &[(&str, &str, &str, Option<&str>)] = &[
    ("SET", "SET user:4390", "ok", None),
    ("GET", "GET user:4390", "ok", None),
    ("GET", "GET user:4390:absent", "ok", None),
    ("INCR", "INCR user:counter", "ok", None),
    ("INCRBY", "INCRBY user:counter", "ok", None),
    ("HSET", "HSET user:9706", "ok", None),
    ("HGETALL", "HGETALL user:9706", "ok", None),
    ("EXPIRE", "EXPIRE user:9706", "ok", None),
    ("TTL", "TTL user:9706", "ok", None),
    ("RPUSH", "RPUSH user:2400", "ok", None),
    ("RPUSH", "RPUSH user:2400", "ok", None),
    ("RPUSH", "RPUSH user:2400", "ok", None),
    ("RPUSH", "RPUSH user:2400", "ok", None),
    ("LRANGE", "LRANGE user:2400", "ok", None),
    ("ZADD", "ZADD user:rank", "ok", None),
    ("ZRANGE", "ZRANGE user:rank", "ok", None),
    (
        "LPUSH",
        "LPUSH user:4390",
        "server_error",
        Some("WRONGTYPE"),
    ),
    ("NOSUCHCMD", "NOSUCHCMD arg", "server_error", Some("ERR")),
    ("MGET", "MGET user:4390", "ok", None),
    ("EXISTS", "EXISTS user:4390", "ok", None),
    ("DEL", "DEL user:2400", "ok", None),
    ("SET", "SET user:p0", "ok", None),
    ("GET", "GET user:p0", "ok", None),
    ("SET", "SET user:p2", "ok", None),
    ("GET", "GET user:p2", "ok", None),
    ("SET", "SET user:p4", "ok", None),
    ("QUIT", "QUIT", "ok", None),
];

fn flow() -> FlowKey {
    FlowKey {
        ip_src: "127.0.0.1".parse().unwrap(),
        ip_dst: "127.0.0.1".parse().unwrap(),
        port_src: 41640,
        port_dst: 16379,
        l4_protocol: L4Protocol::Tcp,
    }
}

/// A chunk: (direction, time, gap_before, bytes).
pub(crate) type Piece = (Direction, u64, u64, Vec<u8>);

fn engine() -> Engine {
    Engine::new(
        vec![Arc::new(RedisParser) as Arc<dyn L7Parser>],
        Limits::default(),
    )
}

pub(crate) fn run_pieces(engine: &mut Engine, pieces: &[Piece]) -> Vec<RequestLog> {
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
        engine.on_chunk(&chunk, &mut logs);
    }
    engine.finish(&mut logs);
    logs
}

fn conv_pieces(conv: &[(Direction, &[u8])]) -> Vec<Piece> {
    conv.iter()
        .enumerate()
        .map(|(i, (d, b))| (*d, 1_000 + i as u64 * 10, 0, b.to_vec()))
        .collect()
}

fn summary(logs: &[RequestLog]) -> Vec<(String, String, String, Option<String>)> {
    logs.iter()
        .map(|l| {
            (
                l.request_type.clone().unwrap_or_default(),
                l.request_resource.clone().unwrap_or_default(),
                l.response_status.as_str().to_string(),
                l.response_exception
                    .as_ref()
                    .and_then(|e| e.split(' ').next().map(str::to_string)),
            )
        })
        .collect()
}

fn expected_main() -> Vec<(String, String, String, Option<String>)> {
    MAIN_EXPECTED
        .iter()
        .map(|(t, r, s, e)| {
            (
                t.to_string(),
                r.to_string(),
                s.to_string(),
                e.map(str::to_string),
            )
        })
        .collect()
}

#[test]
fn real_main_connection_matches_truth() {
    let logs = run_pieces(&mut engine(), &conv_pieces(MAIN));
    assert_eq!(summary(&logs), expected_main());
    for l in &logs {
        assert_eq!(l.l7_protocol, L7Protocol::Redis);
        assert_eq!(l.response_code, None);
        assert_eq!(l.endpoint, l.request_type);
        assert!(l.response_duration_us.is_some());
    }
    let wrongtype = &logs[16];
    assert_eq!(
        wrongtype.response_exception.as_deref(),
        Some("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    // The pipelined burst: one client segment, one server segment, five exact pairs.
    let burst = &logs[21..26];
    assert!(burst.iter().all(|l| l.start_time_us == 1_000 + 42 * 10));
    assert!(burst.iter().all(|l| l.end_time_us == 1_000 + 43 * 10));
    assert_eq!(burst[1].captured_request_byte, 26);
    assert_eq!(burst[1].captured_response_byte, 7);
}

#[test]
fn real_pubsub_connection() {
    let logs = run_pieces(&mut engine(), &conv_pieces(SUBSCRIBER));
    let got: Vec<_> = summary(&logs)
        .into_iter()
        .map(|(t, r, s, _)| (t, r, s))
        .collect();
    let want = [
        ("SUBSCRIBE", "SUBSCRIBE events", "ok"),
        ("message", "message events", "ok"),
        ("message", "message events", "ok"),
        ("UNSUBSCRIBE", "UNSUBSCRIBE events", "ok"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(logs[1].response_duration_us, None);
    assert_eq!(logs[1].port_dst, 16379);
}

/// Every direction's bytes, concatenated.
fn streams(conv: &[(Direction, &[u8])]) -> (Vec<u8>, Vec<u8>) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for (d, b) in conv {
        match d {
            C => c.extend_from_slice(b),
            S => s.extend_from_slice(b),
        }
    }
    (c, s)
}

fn split_run(c: &[u8], s: &[u8], at: usize) -> Vec<RequestLog> {
    let mut pieces = Vec::new();
    let (c0, c1) = c.split_at(at.min(c.len()));
    let (s0, s1) = s.split_at(at.min(s.len()));
    for (d, b) in [(C, c0), (C, c1), (S, s0), (S, s1)] {
        if !b.is_empty() {
            pieces.push((d, 5, 0, b.to_vec()));
        }
    }
    run_pieces(&mut engine(), &pieces)
}

#[test]
fn split_at_every_offset_gives_identical_logs() {
    for conv in [MAIN, SUBSCRIBER] {
        let (c, s) = streams(conv);
        let whole = split_run(&c, &s, 0);
        assert!(!whole.is_empty());
        for at in 1..=c.len().max(s.len()) {
            assert_eq!(split_run(&c, &s, at), whole, "split at {at}");
        }
    }
    // One byte at a time.
    let (c, s) = streams(MAIN);
    let mut pieces: Vec<Piece> = c.iter().map(|b| (C, 5, 0, vec![*b])).collect();
    pieces.extend(s.iter().map(|b| (S, 5, 0, vec![*b])));
    let bytewise = run_pieces(&mut engine(), &pieces);
    assert_eq!(summary(&bytewise), expected_main());
}

#[test]
fn parser_consumes_pipelined_commands_in_one_call() {
    let limits = Limits::default();
    let mut p = RedisFlow::new(&limits);
    let key = flow();
    let ctx = ParseCtx {
        direction: C,
        flow: &key,
        stream_offset: 100,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    let mut out = Vec::new();
    let burst = MAIN[42].1;
    assert_eq!(p.parse(burst, &ctx, &mut out), Ok(burst.len()));
    assert_eq!(out.len(), 5);
    assert_eq!(out[0].start, 100);
    assert_eq!(out[0].end, 100 + 33);
    assert_eq!(out[4].end, 100 + burst.len() as u64);
    assert_eq!(out[3].correlation, Correlation::ById(3));
    // A partial command is not consumed past its last complete element.
    out.clear();
    let mut p = RedisFlow::new(&limits);
    let part = &burst[..20];
    let n = p.parse(part, &ctx, &mut out).unwrap();
    assert!(out.is_empty() && n <= part.len());
}

/// Lockstep traffic: a capture that starts at any point (both directions cut at the same moment, the first
/// chunk cut anywhere) never produces a wrong pair: every log is one of the expected ones, or the command alone
/// with status unknown.
#[test]
fn mid_stream_start_never_pairs_wrongly() {
    let lockstep = &MAIN[..42];
    let expected = expected_main();
    for first in 0..lockstep.len() {
        let len = lockstep[first].1.len();
        for cut in 0..len {
            let mut pieces = conv_pieces(&lockstep[first..]);
            pieces[0].3.drain(..cut);
            let logs = run_pieces(&mut engine(), &pieces);
            for l in summary(&logs) {
                let ok = expected.contains(&l) || l.2 == "unknown";
                assert!(ok, "start at {first}+{cut}: wrong log {l:?}");
            }
        }
    }
}

/// A lost middle chunk (either direction) produces no wrong pair, and pairing resumes after two lockstep rounds.
#[test]
fn gaps_never_pair_wrongly_and_pairing_resumes() {
    let expected = expected_main();
    for lost in 1..MAIN.len() - 2 {
        for cut in [0usize, 3, 9] {
            let mut pieces = conv_pieces(MAIN);
            let (dir, t, _, bytes) = pieces[lost].clone();
            let keep = bytes.get(cut..).unwrap_or(&[]).to_vec();
            let gap = (bytes.len() - keep.len()) as u64;
            if keep.is_empty() {
                pieces.remove(lost);
                if let Some(next) = pieces[lost..].iter_mut().find(|p| p.0 == dir) {
                    next.2 = gap;
                }
            } else {
                pieces[lost] = (dir, t, gap, keep);
            }
            let logs = run_pieces(&mut engine(), &pieces);
            let sum = summary(&logs);
            for l in &sum {
                let ok = expected.contains(l) || l.2 == "unknown";
                assert!(ok, "lost {lost} cut {cut}: wrong log {l:?}");
            }
            if lost < 30 {
                assert_eq!(
                    sum.last().map(|l| l.0.as_str()),
                    Some("QUIT"),
                    "lost {lost}: pairing did not resume"
                );
                assert_eq!(sum.last().map(|l| l.2.as_str()), Some("ok"));
            }
        }
    }
}

fn parse_all(dir: Direction, data: &[u8]) -> (Result<usize, ParseError>, Vec<Message>) {
    let limits = Limits::default();
    let mut p = RedisFlow::new(&limits);
    // Pretend a command is pending so replies pair.
    p.pair.next_req = 1_000;
    let key = flow();
    let ctx = ParseCtx {
        direction: dir,
        flow: &key,
        stream_offset: 0,
        time_us: 0,
        limits: &limits,
        datagram: false,
    };
    let mut out = Vec::new();
    let r = p.parse(data, &ctx, &mut out);
    (r, out)
}

#[test]
fn resp3_types_streamed_values_and_attributes() {
    // Spec examples (redis.io RESP3 specification).
    let reply: &[u8] = b"_\r\n,1.23\r\n#t\r\n(3492890328409238509324850943850943825024385\r\n=15\r\ntxt:Some string\r\n\
%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n~2\r\n+orange\r\n+apple\r\n\
|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n\
$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n*?\r\n:1\r\n:2\r\n:3\r\n.\r\n%?\r\n+a\r\n:1\r\n.\r\n\
!21\r\nSYNTAX invalid syntax\r\n";
    let (r, out) = parse_all(S, reply);
    assert_eq!(r, Ok(reply.len()));
    assert_eq!(out.len(), 12);
    assert!(out.iter().all(|m| m.kind == MessageKind::Response));
    let last = out.last().unwrap();
    assert_eq!(
        last.info.response_exception.as_deref(),
        Some("SYNTAX invalid syntax")
    );
    assert_eq!(last.info.response_status, Some(ResponseStatus::ServerError));
}

#[test]
fn resp3_push_is_a_one_way_message() {
    let push: &[u8] = b">3\r\n$7\r\nmessage\r\n$5\r\nnews1\r\n$2\r\nhi\r\n>4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$5\r\nnews2\r\n$2\r\nyo\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";
    let (r, out) = parse_all(S, push);
    assert_eq!(r, Ok(push.len()));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].kind, MessageKind::OneWay);
    assert_eq!(
        out[0].info.request_resource.as_deref(),
        Some("message news1")
    );
    assert_eq!(out[1].info.request_type.as_deref(), Some("message"));
    assert_eq!(
        out[1].info.request_resource.as_deref(),
        Some("pmessage news2")
    );
    assert_eq!(out[2].kind, MessageKind::Event);
}

#[test]
fn subscribe_to_many_channels_is_one_log() {
    let conv: &[(Direction, &[u8])] = &[
        (C, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$1\r\nb\r\n"),
        (S, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"),
        (S, b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$1\r\nx\r\n"),
        (C, b"*1\r\n$4\r\nPING\r\n"),
        (S, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
        (C, b"*1\r\n$11\r\nUNSUBSCRIBE\r\n"),
        (S, b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"),
        (C, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        (S, b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$1\r\nx\r\n"),
    ];
    let logs = run_pieces(&mut engine(), &conv_pieces(conv));
    let got: Vec<_> = summary(&logs)
        .into_iter()
        .map(|(t, r, _, _)| (t, r))
        .collect();
    let want = [
        ("SUBSCRIBE", "SUBSCRIBE a"),
        ("message", "message b"),
        ("PING", "PING"),
        ("UNSUBSCRIBE", "UNSUBSCRIBE"),
        ("GET", "GET k"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn multi_exec_inline_and_containers() {
    let conv: &[(Direction, &[u8])] = &[
        (C, b"PING\r\n"),
        (S, b"+PONG\r\n"),
        (C, b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n*1\r\n$4\r\nEXEC\r\n"),
        (S, b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n-ERR value is not an integer or out of range\r\n"),
        (C, b"*3\r\n$6\r\nCLIENT\r\n$7\r\nsetname\r\n$3\r\nabc\r\n*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n"),
        (S, b"+OK\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
    ];
    let logs = run_pieces(&mut engine(), &conv_pieces(conv));
    let got = summary(&logs);
    let want = [
        ("PING", "PING", "ok", None),
        ("MULTI", "MULTI", "ok", None),
        ("SET", "SET k", "ok", None),
        ("INCR", "INCR k", "ok", None),
        ("EXEC", "EXEC", "ok", None),
        ("CLIENT", "CLIENT SETNAME", "ok", None),
        ("AUTH", "AUTH", "server_error", Some("WRONGPASS")),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(a, b, c, d)| (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.map(str::to_string)
            ))
            .collect::<Vec<_>>()
    );
}

#[test]
fn reply_before_any_command_is_an_orphan() {
    let conv: &[(Direction, &[u8])] = &[
        (S, b"$5\r\nhello\r\n"),
        (C, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        (S, b"$-1\r\n"),
    ];
    let limits = Limits::default();
    let mut p = RedisFlow::new(&limits);
    let key = flow();
    let mut out = Vec::new();
    for (dir, bytes) in conv {
        let ctx = ParseCtx {
            direction: *dir,
            flow: &key,
            stream_offset: 0,
            time_us: 0,
            limits: &limits,
            datagram: false,
        };
        assert_eq!(p.parse(bytes, &ctx, &mut out), Ok(bytes.len()));
    }
    let corr: Vec<_> = out.iter().map(|m| m.correlation).collect();
    assert_eq!(corr, [ORPHAN, Correlation::ById(0), Correlation::ById(0)]);
}

#[test]
fn large_values_are_skipped_not_buffered() {
    let mut big = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1000000\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1_000_000));
    big.extend_from_slice(b"\r\n");
    let mut pieces: Vec<Piece> = big.chunks(1400).map(|c| (C, 5, 0, c.to_vec())).collect();
    pieces.push((S, 6, 0, b"+OK\r\n".to_vec()));
    let mut e = engine();
    let logs = run_pieces(&mut e, &pieces);
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].request_resource.as_deref(), Some("SET big"));
    assert_eq!(logs[0].captured_request_byte, big.len() as u64);
    assert_eq!(e.stats().buffer_overflows, 0);
}

#[test]
fn limits_are_enforced() {
    let mut deep = Vec::new();
    for _ in 0..40 {
        deep.extend_from_slice(b"*1\r\n");
    }
    deep.extend_from_slice(b":1\r\n");
    let (r, _) = parse_all(S, &deep);
    assert_eq!(r.unwrap_err().kind, ParseErrorKind::TooMany);
    let (r, _) = parse_all(C, b"*1\r\n$999999999999\r\n");
    assert_eq!(r.unwrap_err().kind, ParseErrorKind::TooLarge);
    let (r, _) = parse_all(C, &vec![b'A'; MAX_INLINE_LEN + 10]);
    assert_eq!(r.unwrap_err().kind, ParseErrorKind::TooLarge);
    let (r, _) = parse_all(S, b"@oops\r\n");
    assert_eq!(r.unwrap_err().kind, ParseErrorKind::Invalid);
}

#[test]
fn probes() {
    assert_eq!(probe(MAIN[0].1, C), Probe::Yes);
    assert_eq!(probe(b"PING\r\n", C), Probe::Yes);
    assert_eq!(probe(b"get k\r\n", C), Probe::Maybe);
    assert_eq!(probe(b"QUIT\r\n", C), Probe::Maybe);
    assert_eq!(probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C), Probe::No);
    assert_eq!(probe(b"\x16\x03\x01\x02\x00\x01", C), Probe::No);
    assert_eq!(probe(b"+OK\r\n", S), Probe::Maybe);
    assert_eq!(probe(b"HTTP/1.1 200 OK\r\n", S), Probe::No);
    assert_eq!(probe(b"*2\r\n$3\r\n\x01\x02\x03\r\n", C), Probe::No);
    // zeek Traces/redis/attr.pcap: an unknown upper-case inline command.
    assert_eq!(probe(b"FAKE COMMAND\r\n", C), Probe::Maybe);
    assert_eq!(probe(b"howdy world\r\n", C), Probe::No);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), server in any::<bool>()) {
            let dir = if server { S } else { C };
            let (r, _) = parse_all(dir, &data);
            if let Ok(n) = r {
                prop_assert!(n <= data.len());
            }
            let _ = probe(&data, dir);
        }

        #[test]
        fn resp_like_bytes_never_panic(parts in proptest::collection::vec(
            prop_oneof![
                Just(b"*2\r\n".to_vec()), Just(b"$3\r\nGET\r\n".to_vec()), Just(b"+OK\r\n".to_vec()),
                Just(b">3\r\n".to_vec()), Just(b"$?\r\n".to_vec()), Just(b";2\r\nab\r\n".to_vec()),
                Just(b";0\r\n".to_vec()), Just(b"*?\r\n".to_vec()), Just(b".\r\n".to_vec()),
                Just(b"|1\r\n".to_vec()), Just(b"%1\r\n".to_vec()), Just(b"-ERR x\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..8)
            ], 0..40), server in any::<bool>(), split in 0usize..200) {
            let data: Vec<u8> = parts.concat();
            let dir = if server { S } else { C };
            let (r, _) = parse_all(dir, &data);
            if let Ok(n) = r {
                prop_assert!(n <= data.len());
            }
            // Through the engine, in two pieces, with a gap.
            let cut = split.min(data.len());
            let pieces = vec![
                (C, 1, 0, b"*1\r\n$4\r\nPING\r\n".to_vec()),
                (dir, 2, 0, data[..cut].to_vec()),
                (dir, 3, 7, data[cut..].to_vec()),
            ];
            let _ = run_pieces(&mut engine(), &pieces);
        }
    }
}

#[test]
fn zeek_stream_xadd_with_star_argument() {
    // zeek Traces/redis/stream.pcap: `XADD race:france * rider ...` (an argument that is a lone `*`).
    let xadd: &[u8] = b"*11\r\n$4\r\nXADD\r\n$11\r\nrace:france\r\n$1\r\n*\r\n$5\r\nrider\r\n$8\r\nCastilla\r\n$5\r\nspeed\r\n$4\r\n30.2\r\n$8\r\nposition\r\n$1\r\n1\r\n$11\r\nlocation_id\r\n$1\r\n1\r\n";
    let (r, out) = parse_all(C, xadd);
    assert_eq!(r, Ok(xadd.len()));
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].info.request_resource.as_deref(),
        Some("XADD race:france")
    );
}

#[test]
fn zeek_stream_conversation() {
    let segs: &[(Direction, &str)] = &[
(C, "2a31310d0a24340d0a584144440d0a2431310d0a726163653a6672616e63650d0a24310d0a2a0d0a24350d0a72696465720d0a24380d0a43617374696c6c610d0a24350d0a73706565640d0a24340d0a33302e320d0a24380d0a706f736974696f6e0d0a24310d0a310d0a2431310d0a6c6f636174696f6e5f69640d0a24310d0a310d0a"),
(S, "2431350d0a313732393632323833323633372d300d0a"),
(C, "2a31310d0a24340d0a584144440d0a2431310d0a726163653a6672616e63650d0a24310d0a2a0d0a24350d0a72696465720d0a24350d0a4e6f72656d0d0a24350d0a73706565640d0a24340d0a32382e380d0a24380d0a706f736974696f6e0d0a24310d0a330d0a2431310d0a6c6f636174696f6e5f69640d0a24310d0a310d0a"),
(S, "2431350d0a313732393632323833363935332d300d0a"),
(C, "2a31310d0a24340d0a584144440d0a2431310d0a726163653a6672616e63650d0a24310d0a2a0d0a24350d0a72696465720d0a24380d0a507269636b6574740d0a24350d0a73706565640d0a24340d0a32392e370d0a24380d0a706f736974696f6e0d0a24310d0a320d0a2431310d0a6c6f636174696f6e5f69640d0a24310d0a310d0a"),
(S, "2431350d0a313732393632323834303533302d300d0a"),
(C, "2a360d0a24360d0a5852414e47450d0a2431310d0a726163653a6672616e63650d0a2431350d0a313732393632323737303937322d300d0a24310d0a2b0d0a24350d0a434f554e540d0a24310d0a320d0a"),
(S, "2a320d0a2a320d0a2431350d0a313732393632323737303937322d300d0a2a380d0a24350d0a72696465720d0a24380d0a43617374696c6c610d0a24350d0a73706565640d0a24340d0a33302e320d0a24380d0a706f736974696f6e0d0a24310d0a310d0a2431310d0a6c6f636174696f6e5f69640d0a24310d0a310d0a2a320d0a2431350d0a313732393632323737383232312d300d0a2a380d0a24350d0a72696465720d0a24350d0a4e6f72656d0d0a24350d0a73706565640d0a24340d0a32382e380d0a24380d0a706f736974696f6e0d0a24310d0a330d0a2431310d0a6c6f636174696f6e5f69640d0a24310d0a310d0a"),
    ];
    let pieces: Vec<Piece> = segs
        .iter()
        .enumerate()
        .map(|(i, (d, h))| {
            (
                *d,
                i as u64,
                0,
                (0..h.len())
                    .step_by(2)
                    .map(|j| u8::from_str_radix(&h[j..j + 2], 16).unwrap())
                    .collect(),
            )
        })
        .collect();
    let logs = run_pieces(&mut engine(), &pieces);
    let got: Vec<_> = summary(&logs)
        .into_iter()
        .map(|(t, r, s, _)| format!("{t}|{r}|{s}"))
        .collect();
    assert_eq!(
        got,
        [
            "XADD|XADD race:france|ok",
            "XADD|XADD race:france|ok",
            "XADD|XADD race:france|ok",
            "XRANGE|XRANGE race:france|ok"
        ]
    );
}
