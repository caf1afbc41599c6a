//! A private binary protocol (FRPC) parsed end to end by plugins in Rust, C and WAT, with identical logs.
//!
//! The test runs a tiny FRPC server and client over real loopback TCP, captures the conversation with
//! tcpdump, builds the Rust (`examples/plugins/frpc-rust`, wasm32-unknown-unknown) and C
//! (`examples/plugins/frpc-c`, clang wasm32) plugins, and runs the agent pipeline on the capture once per
//! plugin (the WAT one is `examples/plugins/frpc-wat`). The three runs must give identical RequestLogs, and
//! those must say what the client sent and what the server answered, as the client saw it. Needs root
//! (tcpdump) and the toolchains; skipped otherwise unless `FATHOM_REQUIRE_LIVE` is set.
#![cfg(feature = "wasm-plugins")]

#[path = "../../../crates/plugin-wasm/tests/common/mod.rs"]
mod frpc;
mod live;

use fathom_agent::{run_pcap, Output, RunOptions};
use fathom_model::RequestLog;
use fathom_plugin_wasm::{PluginConfig, PluginHost};
use fathom_protocols::L7Parser;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One whole FRPC message at the start of `buf`: (kind, id, body, length).
fn message(buf: &[u8]) -> Option<(u8, u32, Vec<u8>, usize)> {
    if buf.len() < 11 {
        return None;
    }
    assert_eq!(&buf[..4], b"FRPC", "not FRPC: {buf:?}");
    let len = 11 + u16::from_be_bytes([buf[9], buf[10]]) as usize;
    (buf.len() >= len).then(|| {
        let id = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
        (buf[4], id, buf[11..len].to_vec(), len)
    })
}

/// The server's answer to a method: (status byte, error text).
fn answer(method: &str) -> (u8, &'static str) {
    if method.starts_with("Delete") {
        (1, "denied")
    } else if method.starts_with("Crash") {
        (2, "internal failure")
    } else {
        (0, "")
    }
}

/// Serve one connection: answer each batch of requests read together in reverse order, until EOF.
fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&tmp[..n]);
        let mut batch = Vec::new();
        while let Some((kind, id, body, len)) = message(&buf) {
            assert_eq!(kind, 0);
            let method = String::from_utf8(body).unwrap();
            let (st, text) = answer(&method);
            batch.push(frpc::frpc_response(id, st, text));
            buf.drain(..len);
        }
        let out: Vec<u8> = batch.into_iter().rev().flatten().collect();
        s.write_all(&out).unwrap();
    }
}

/// What the client saw of one exchange: (client port, id, method, status byte, error text).
type Seen = (u16, u64, String, u8, String);

/// Read `n` responses; returns them by id.
fn read_responses(s: &mut TcpStream, n: usize) -> Vec<(u32, u8, String)> {
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while got.len() < n {
        while let Some((kind, id, body, len)) = message(&buf) {
            assert_eq!(kind, 1);
            got.push((id, body[0], String::from_utf8(body[1..].to_vec()).unwrap()));
            buf.drain(..len);
        }
        if got.len() == n {
            break;
        }
        let k = s.read(&mut tmp).unwrap();
        assert!(k > 0, "server closed early");
        buf.extend_from_slice(&tmp[..k]);
    }
    got
}

/// Connection 1: requests one at a time. Connection 2: three pipelined requests in one write.
fn client(port: u16) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let p = s.local_addr().unwrap().port();
    for (id, m) in [
        (1u32, "GetUser"),
        (2, "DeleteUser"),
        (3, "ListOrders"),
        (4, "CrashNow"),
    ] {
        s.write_all(&frpc::frpc_request(id, m)).unwrap();
        let r = read_responses(&mut s, 1);
        assert_eq!(r[0].0, id);
        seen.push((p, id as u64, m.to_string(), r[0].1, r[0].2.clone()));
    }
    drop(s);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let p = s.local_addr().unwrap().port();
    let reqs = [
        (10u32, "GetUser"),
        (11, "DeleteAccount"),
        (12, "CrashLater"),
    ];
    let all: Vec<u8> = reqs
        .iter()
        .flat_map(|(id, m)| frpc::frpc_request(*id, m))
        .collect();
    s.write_all(&all).unwrap();
    for (id, st, text) in read_responses(&mut s, 3) {
        let m = reqs.iter().find(|r| r.0 == id).unwrap().1;
        seen.push((p, id as u64, m.to_string(), st, text));
    }
    seen.sort();
    seen
}

fn logs(pcap: &Path, plugin: Arc<dyn L7Parser>) -> Vec<RequestLog> {
    let options = RunOptions {
        extra_parsers: vec![plugin],
        ..RunOptions::default()
    };
    let mut logs = Vec::new();
    run_pcap(pcap, &options, |o| {
        if let Output::Log(l) = o {
            logs.push(l.clone());
        }
    })
    .unwrap();
    logs.sort_by_key(|l| (l.port_src, l.request_id));
    logs
}

#[test]
fn frpc_over_loopback_parsed_identically_by_rust_c_and_wat_plugins() {
    if !live::can_run("frpc_over_loopback", &["tcpdump"]) {
        return;
    }
    let (Some(rust), Some(c)) = (
        frpc::build_rust_example("frpc-rust", "frpc_plugin"),
        frpc::build_c_frpc(),
    ) else {
        return;
    };
    let dir = live::TempDir::new("fathom-frpc-live");
    let pcap = dir.join("frpc.pcap");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut dump = live::tcpdump(&pcap, port);
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (s, _) = listener.accept().unwrap();
            serve(s);
        }
    });
    let seen = client(port);
    server.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    dump.stop(Duration::from_secs(5));

    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let mut runs = Vec::new();
    let wat = wat::parse_str(frpc::frpc_ok()).unwrap();
    for (lang, wasm) in [("wat", wat), ("rust", rust), ("c", c)] {
        let plugin = host.load("frpc", &wasm).unwrap();
        let l = logs(&pcap, plugin.clone());
        assert_eq!(plugin.stats().failures(), 0, "{lang}: {:?}", plugin.stats());
        runs.push((lang, l));
    }
    let (_, reference) = &runs[0];
    for (lang, l) in &runs[1..] {
        assert_eq!(
            l, reference,
            "{lang} plugin logs differ from the WAT plugin's"
        );
    }
    // And they say what the client sent and the server answered.
    let got: Vec<Seen> = reference
        .iter()
        .map(|l| {
            assert_eq!(l.l7_protocol.as_str(), "frpc");
            assert_eq!(l.port_dst, port);
            assert!(l.response_duration_us.is_some());
            let st = l.response_code.unwrap() as u8;
            let want_status = ["ok", "client_error", "server_error"][st as usize];
            assert_eq!(l.response_status.as_str(), want_status);
            (
                l.port_src,
                l.request_id.unwrap(),
                l.request_type.clone().unwrap(),
                st,
                l.response_exception.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(got, seen);
    assert_eq!(got.len(), 7);
}
