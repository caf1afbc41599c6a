//! The example plugins of `examples/plugins/`, built here (Rust: wasm32-unknown-unknown; C: clang wasm32),
//! through `fathom_protocols::Engine`: the FRPC parsers in Rust, C and WAT give identical logs (pipelined,
//! out of order, split at every offset, after a gap), and the Rust HTTP hook example rewrites endpoints and
//! adds tags. Without the toolchains the tests are skipped, unless `FATHOM_REQUIRE_LIVE` is set.

mod common;

use common::*;
use fathom_model::{Direction, RequestLog, ResponseStatus};
use fathom_plugin_wasm::{PluginConfig, PluginHost, WasmPlugin};
use fathom_protocols::{builtin_parsers, Engine, Limits};
use std::sync::Arc;

fn load(bytes: &[u8]) -> Arc<WasmPlugin> {
    PluginHost::new(PluginConfig::default())
        .unwrap()
        .load("frpc", bytes)
        .unwrap()
}

/// Every FRPC scenario through one plugin: the conversation whole, split at every offset, and with a gap.
fn scenarios(plugin: &Arc<WasmPlugin>) -> Vec<Vec<RequestLog>> {
    let mut all = Vec::new();
    let conv = frpc_conversation();
    for cut in 0..conv[0].1.len() {
        let mut engine = Engine::new(builtin_parsers(), Limits::default());
        engine.register(plugin.clone());
        let mut logs = Vec::new();
        let f = flow(40001, 7000);
        for (i, (dir, bytes)) in conv.iter().enumerate() {
            let t = 1_000 * (i as u64 + 1);
            if i == 0 && cut > 0 {
                engine.on_chunk(&chunk(1, f, *dir, t, 0, &bytes[..cut]), &mut logs);
                engine.on_chunk(&chunk(1, f, *dir, t, 0, &bytes[cut..]), &mut logs);
            } else {
                engine.on_chunk(&chunk(1, f, *dir, t, 0, bytes), &mut logs);
            }
        }
        // A gap on a second flow: request 2 loses its first 5 bytes and must be skipped.
        let g = flow(40002, 7000);
        engine.on_chunk(
            &chunk(
                2,
                g,
                Direction::ClientToServer,
                1_000,
                0,
                &frpc_request(1, "A"),
            ),
            &mut logs,
        );
        let mut tail = frpc_request(2, "Lost")[5..].to_vec();
        tail.extend(frpc_request(3, "C"));
        engine.on_chunk(
            &chunk(2, g, Direction::ClientToServer, 2_000, 5, &tail),
            &mut logs,
        );
        let mut resp = frpc_response(1, 0, "");
        resp.extend(frpc_response(3, 2, "boom"));
        engine.on_chunk(
            &chunk(2, g, Direction::ServerToClient, 3_000, 0, &resp),
            &mut logs,
        );
        engine.finish(&mut logs);
        logs.sort_by_key(|l| (l.port_src, l.request_id));
        all.push(logs);
    }
    assert_eq!(plugin.stats().failures(), 0, "{:?}", plugin.stats());
    all
}

#[test]
fn frpc_in_rust_c_and_wat_give_identical_logs() {
    let wat = load(&wat_frpc());
    let reference = scenarios(&wat);
    // The reference itself is right: what the conversation says.
    let first = &reference[0];
    let got: Vec<_> = first
        .iter()
        .map(|l| {
            (
                l.port_src,
                l.request_id,
                l.request_type.as_deref(),
                l.response_status,
                l.response_exception.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (40001, Some(1), Some("GetUser"), ResponseStatus::Ok, None),
            (
                40001,
                Some(2),
                Some("DeleteUser"),
                ResponseStatus::ClientError,
                Some("denied")
            ),
            (40001, Some(3), Some("Ping"), ResponseStatus::Timeout, None),
            (40002, Some(1), Some("A"), ResponseStatus::Ok, None),
            (
                40002,
                Some(3),
                Some("C"),
                ResponseStatus::ServerError,
                Some("boom")
            ),
        ]
    );
    assert!(
        reference.iter().all(|r| r == first),
        "split feeds give the same logs"
    );
    let mut built = 0;
    if let Some(rust) = build_rust_example("frpc-rust", "frpc_plugin") {
        let p = load(&rust);
        assert_eq!(p.abi_version(), 2);
        assert_eq!(scenarios(&p), reference, "Rust plugin");
        built += 1;
    }
    if let Some(c) = build_c_frpc() {
        let p = load(&c);
        assert_eq!(scenarios(&p), reference, "C plugin");
        built += 1;
    }
    eprintln!("{built} compiled plugins compared with the WAT one");
}

#[test]
fn rust_http_hook_example_rewrites_endpoints_and_tags() {
    let Some(wasm) = build_rust_example("http-hook-rust", "http_hook_plugin") else {
        return;
    };
    let hook = PluginHost::new(PluginConfig::default())
        .unwrap()
        .load("http-hook", &wasm)
        .unwrap();
    assert!(hook.has_hooks() && !hook.has_parser());
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    engine.add_hook(hook.clone());
    let mut logs = Vec::new();
    let f = flow(40003, 80);
    let req = b"GET /users/42?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: fathom-test/1\r\n\r\n";
    let resp = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    engine.on_chunk(
        &chunk(1, f, Direction::ClientToServer, 1_000, 0, req),
        &mut logs,
    );
    engine.on_chunk(
        &chunk(1, f, Direction::ServerToClient, 2_000, 0, resp),
        &mut logs,
    );
    engine.finish(&mut logs);
    assert_eq!(logs.len(), 1);
    let l = &logs[0];
    assert_eq!(l.endpoint.as_deref(), Some("/users"));
    let tags: Vec<(&str, &str)> = l
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        vec![
            ("hook.method", "GET"),
            ("hook.plugin", "http-hook"),
            ("hook.status_class", "5xx"),
            ("hook.user_agent", "fathom-test/1"),
        ]
    );
    assert_eq!(l.response_code, Some(503));
    assert_eq!(hook.stats().failures(), 0);
}
