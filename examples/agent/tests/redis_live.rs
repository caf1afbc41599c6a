//! Live test: a real `redis-server` and a scripted workload (raw RESP client with a pipeline, MULTI/EXEC,
//! errors, RESP3 after HELLO 3, pub/sub with multi-channel SUBSCRIBE, and redis-cli), captured with tcpdump on
//! loopback, then the agent pipeline on the capture: the logs must match the workload exactly.

mod rk_live;

use rk_live::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Length of the RESP value at the start of `b`, if complete.
fn resp_len(b: &[u8]) -> Option<usize> {
    fn line(b: &[u8]) -> Option<(&[u8], usize)> {
        let n = b.windows(2).position(|w| w == b"\r\n")?;
        Some((&b[1..n], n + 2))
    }
    let (head, mut used) = line(b)?;
    let num = || std::str::from_utf8(head).ok()?.parse::<i64>().ok();
    match b.first()? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Some(used),
        b'$' | b'=' | b'!' => {
            let n = num()?;
            if n < 0 {
                return Some(used);
            }
            let end = used + n as usize + 2;
            (b.len() >= end).then_some(end)
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let mut n = num()?;
            if n < 0 {
                return Some(used);
            }
            if matches!(b[0], b'%' | b'|') {
                n *= 2;
            }
            for _ in 0..n {
                used += resp_len(&b[used..])?;
            }
            if b[0] == b'|' {
                used += resp_len(&b[used..])?;
            }
            Some(used)
        }
        _ => panic!("unexpected reply byte {:?}", b[0] as char),
    }
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn encode(args: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        v
    }

    /// Read `n` replies; return them as raw byte strings.
    fn replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(len) = resp_len(&self.buf) {
                out.push(self.buf.drain(..len).collect());
                continue;
            }
            let mut tmp = [0u8; 4096];
            let k = self.s.read(&mut tmp).expect("reply");
            assert!(k > 0, "server closed");
            self.buf.extend_from_slice(&tmp[..k]);
        }
        out
    }

    fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.s.write_all(&Self::encode(args)).unwrap();
        self.replies(1).remove(0)
    }
}

#[test]
fn redis_live_workload_matches_logs() {
    for bin in ["redis-server", "tcpdump"] {
        if !have(bin) {
            eprintln!("SKIPPED: {bin} not installed");
            return;
        }
    }
    let dir = scratch("redis");
    let port = free_port();
    let server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--bind", "127.0.0.1", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let _server = Guard::new("redis-server", server);
    wait_tcp(port);
    let pcap = dir.join("redis-live.pcap");
    let dump = tcpdump(&pcap, port);

    // The workload, with the logs it must produce: (request_type, resource, status, error prefix).
    let mut want: Vec<(String, String, &str, Option<&str>)> = Vec::new();
    let mut expect = |t: &str, r: &str, s: &'static str, e: Option<&'static str>| {
        want.push((t.to_string(), r.to_string(), s, e))
    };
    let mut a = Client::connect(port);
    for i in 0..5 {
        assert_eq!(a.cmd(&["SET", &format!("k:{i}"), "value"]), b"+OK\r\n");
        expect("SET", &format!("SET k:{i}"), "ok", None);
    }
    for key in ["k:0", "k:1", "missing"] {
        a.cmd(&["GET", key]);
        expect("GET", &format!("GET {key}"), "ok", None);
    }
    for _ in 0..2 {
        a.cmd(&["INCR", "counter"]);
        expect("INCR", "INCR counter", "ok", None);
    }
    assert!(a.cmd(&["LPUSH", "k:0", "x"]).starts_with(b"-WRONGTYPE"));
    expect("LPUSH", "LPUSH k:0", "server_error", Some("WRONGTYPE"));
    assert!(a.cmd(&["NOSUCHCMD", "arg"]).starts_with(b"-ERR"));
    expect("NOSUCHCMD", "NOSUCHCMD arg", "server_error", Some("ERR"));
    // 10 commands pipelined in one write.
    let mut burst = Vec::new();
    for i in 0..5 {
        burst.extend(Client::encode(&["SET", &format!("p:{i}"), &i.to_string()]));
        burst.extend(Client::encode(&["GET", &format!("p:{i}")]));
        expect("SET", &format!("SET p:{i}"), "ok", None);
        expect("GET", &format!("GET p:{i}"), "ok", None);
    }
    a.s.write_all(&burst).unwrap();
    assert_eq!(a.replies(10).len(), 10);
    // MULTI/EXEC: each queued command is its own log.
    a.cmd(&["MULTI"]);
    assert_eq!(a.cmd(&["SET", "tx", "1"]), b"+QUEUED\r\n");
    a.cmd(&["INCR", "tx"]);
    a.cmd(&["EXEC"]);
    expect("MULTI", "MULTI", "ok", None);
    expect("SET", "SET tx", "ok", None);
    expect("INCR", "INCR tx", "ok", None);
    expect("EXEC", "EXEC", "ok", None);
    // An inline command.
    a.s.write_all(b"PING\r\n").unwrap();
    assert_eq!(a.replies(1)[0], b"+PONG\r\n");
    expect("PING", "PING", "ok", None);

    // RESP3 connection.
    let mut c = Client::connect(port);
    assert!(c.cmd(&["HELLO", "3"]).starts_with(b"%"));
    expect("HELLO", "HELLO", "ok", None);
    c.cmd(&["HSET", "h", "f", "v"]);
    expect("HSET", "HSET h", "ok", None);
    assert!(c.cmd(&["HGETALL", "h"]).starts_with(b"%1"));
    expect("HGETALL", "HGETALL h", "ok", None);
    c.cmd(&["QUIT"]);
    expect("QUIT", "QUIT", "ok", None);

    // Pub/sub: SUBSCRIBE to two channels (two confirmations, one log), 4 messages, UNSUBSCRIBE all.
    let mut sub = Client::connect(port);
    sub.s
        .write_all(&Client::encode(&["SUBSCRIBE", "ch1", "ch2"]))
        .unwrap();
    assert_eq!(sub.replies(2).len(), 2);
    expect("SUBSCRIBE", "SUBSCRIBE ch1", "ok", None);
    let mut publisher = Client::connect(port);
    for ch in ["ch1", "ch1", "ch2", "ch1"] {
        assert_eq!(publisher.cmd(&["PUBLISH", ch, "hello"]), b":1\r\n");
        expect("PUBLISH", &format!("PUBLISH {ch}"), "ok", None);
        expect("message", &format!("message {ch}"), "ok", None);
    }
    assert_eq!(sub.replies(4).len(), 4);
    sub.s.write_all(&Client::encode(&["UNSUBSCRIBE"])).unwrap();
    assert_eq!(sub.replies(2).len(), 2);
    expect("UNSUBSCRIBE", "UNSUBSCRIBE", "ok", None);
    assert_eq!(sub.cmd(&["QUIT"]), b"+OK\r\n");
    expect("QUIT", "QUIT", "ok", None);
    assert_eq!(a.cmd(&["QUIT"]), b"+OK\r\n");
    expect("QUIT", "QUIT", "ok", None);
    drop((a, c, sub, publisher));

    if have("redis-cli") {
        for args in [vec!["PING"], vec!["SET", "cli", "x"], vec!["GET", "cli"]] {
            let st = Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(&args)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
            let r = if args.len() > 1 {
                format!("{} {}", args[0], args[1])
            } else {
                args[0].to_string()
            };
            expect(args[0], &r, "ok", None);
        }
    }
    stop_capture(dump);

    let (logs, _) = fathom_agent::logs_from_pcap(&pcap).unwrap();
    let mine: Vec<_> = logs
        .iter()
        .filter(|l| l.port_dst == port && l.l7_protocol.as_str() == "redis")
        .collect();
    let count = |v: Vec<String>| {
        let mut m = BTreeMap::new();
        for x in v {
            *m.entry(x).or_insert(0u32) += 1;
        }
        m
    };
    let got = count(
        mine.iter()
            .map(|l| {
                format!(
                    "{}|{}|{}|{}",
                    l.request_type.as_deref().unwrap_or(""),
                    l.request_resource.as_deref().unwrap_or(""),
                    l.response_status.as_str(),
                    l.response_exception
                        .as_deref()
                        .and_then(|e| e.split(' ').next())
                        .unwrap_or("-")
                )
            })
            .collect(),
    );
    let expected = count(
        want.iter()
            .map(|(t, r, s, e)| format!("{t}|{r}|{s}|{}", e.unwrap_or("-")))
            .collect(),
    );
    assert_eq!(got, expected);
    assert!(mine
        .iter()
        .filter(|l| l.request_type.as_deref() != Some("message"))
        .all(|l| l.response_duration_us.is_some()));
    let _ = std::fs::remove_dir_all(&dir);
}
