//! The FRPC plugin through `fathom_protocols::Engine`, and hostile plugins that must not hurt anything else.

mod common;

use common::*;
use fathom_model::{Direction, RequestLog, ResponseStatus};
use fathom_plugin_wasm::{PluginConfig, PluginError, PluginHost, WasmPlugin};
use fathom_protocols::{builtin_parsers, Engine, Limits};
use std::sync::Arc;

fn host(max_failures: u64) -> PluginHost {
    PluginHost::new(PluginConfig {
        max_failures,
        ..PluginConfig::default()
    })
    .unwrap()
}

fn engine_with(plugin: &Arc<WasmPlugin>) -> Engine {
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    engine.register(plugin.clone());
    engine
}

/// Feed `conv` as flow `id` (server port `port`), one chunk per element.
fn feed(
    engine: &mut Engine,
    id: u64,
    port: u16,
    conv: &[(Direction, Vec<u8>)],
    out: &mut Vec<RequestLog>,
) {
    let f = flow(40000 + id as u16, port);
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        engine.on_chunk(&chunk(id, f, *dir, 1_000 * (i as u64 + 1), 0, bytes), out);
    }
}

/// The fields compared between split and unsplit feeds.
type LogKey = (Option<u64>, Option<String>, ResponseStatus, Option<i64>);

fn check_frpc_logs(logs: &[RequestLog]) {
    let frpc = of_proto(logs, "frpc");
    assert_eq!(frpc.len(), 3, "{frpc:#?}");
    assert_eq!(frpc[0].request_id, Some(1));
    assert_eq!(frpc[0].request_type.as_deref(), Some("GetUser"));
    assert_eq!(frpc[0].response_status, ResponseStatus::Ok);
    assert_eq!(frpc[0].response_code, Some(0));
    assert_eq!(frpc[0].response_exception, None);
    assert_eq!(frpc[1].request_id, Some(2));
    assert_eq!(frpc[1].request_type.as_deref(), Some("DeleteUser"));
    assert_eq!(frpc[1].response_status, ResponseStatus::ClientError);
    assert_eq!(frpc[1].response_code, Some(1));
    assert_eq!(frpc[1].response_exception.as_deref(), Some("denied"));
    assert_eq!(frpc[2].request_id, Some(3));
    assert_eq!(frpc[2].request_type.as_deref(), Some("Ping"));
    assert_eq!(frpc[2].response_status, ResponseStatus::Timeout);
    // Request 1 went first (t=1000) and its response arrived in the second chunk (t=2000).
    assert_eq!(frpc[0].response_duration_us, Some(1_000));
}

#[test]
fn frpc_plugin_logs_through_engine() {
    let plugin = host(4).load("frpc", frpc_ok().as_bytes()).unwrap();
    let mut engine = engine_with(&plugin);
    let mut logs = Vec::new();
    feed(&mut engine, 1, 7000, &frpc_conversation(), &mut logs);
    feed(&mut engine, 2, 80, &http_conversation(), &mut logs);
    engine.finish(&mut logs);
    check_frpc_logs(&logs);
    assert_eq!(of_proto(&logs, "http1").len(), 1, "{logs:#?}");
    let stats = plugin.stats();
    assert_eq!(stats.failures(), 0, "{stats:?}");
    assert!(!stats.disabled);
    assert!(stats.calls > 0);
}

#[test]
fn frpc_split_at_every_offset() {
    let plugin = host(4).load("frpc", frpc_ok().as_bytes()).unwrap();
    let conv = frpc_conversation();
    let mut whole = Vec::new();
    let mut engine = engine_with(&plugin);
    feed(&mut engine, 1, 7000, &conv, &mut whole);
    engine.finish(&mut whole);
    check_frpc_logs(&whole);
    // Split the request chunk (carrying two messages) and the response chunk at every offset.
    for which in 0..2 {
        for cut in 1..conv[which].1.len() {
            let mut parts = Vec::new();
            for (i, (dir, bytes)) in conv.iter().enumerate() {
                // A split part keeps its chunk's time, as in the unsplit feed.
                let t = 1_000 * (i as u64 + 1);
                if i == which {
                    parts.push((*dir, t, bytes[..cut].to_vec()));
                    parts.push((*dir, t, bytes[cut..].to_vec()));
                } else {
                    parts.push((*dir, t, bytes.clone()));
                }
            }
            let mut engine = engine_with(&plugin);
            let mut logs = Vec::new();
            let f = flow(40001, 7000);
            for (dir, t, bytes) in &parts {
                engine.on_chunk(&chunk(1, f, *dir, *t, 0, bytes), &mut logs);
            }
            engine.finish(&mut logs);
            let strip = |l: &[RequestLog]| -> Vec<LogKey> {
                of_proto(l, "frpc")
                    .into_iter()
                    .map(|l| {
                        (
                            l.request_id,
                            l.request_type.clone(),
                            l.response_status,
                            l.response_code,
                        )
                    })
                    .collect()
            };
            assert_eq!(strip(&logs), strip(&whole), "chunk {which} cut at {cut}");
        }
    }
    assert_eq!(plugin.stats().failures(), 0);
}

#[test]
fn frpc_resynchronises_after_gap() {
    let plugin = host(4).load("frpc", frpc_ok().as_bytes()).unwrap();
    let mut engine = engine_with(&plugin);
    let mut logs = Vec::new();
    let f = flow(40001, 7000);
    let c2s = Direction::ClientToServer;
    let s2c = Direction::ServerToClient;
    engine.on_chunk(
        &chunk(1, f, c2s, 1_000, 0, &frpc_request(1, "A")),
        &mut logs,
    );
    // Lose the first 5 bytes of request 2: its tail must be skipped, request 3 found again.
    let mut tail = frpc_request(2, "Lost")[5..].to_vec();
    tail.extend(frpc_request(3, "C"));
    engine.on_chunk(&chunk(1, f, c2s, 2_000, 5, &tail), &mut logs);
    let mut resp = frpc_response(1, 0, "");
    resp.extend(frpc_response(3, 2, "boom"));
    engine.on_chunk(&chunk(1, f, s2c, 3_000, 0, &resp), &mut logs);
    engine.finish(&mut logs);
    let frpc = of_proto(&logs, "frpc");
    let got: Vec<_> = frpc
        .iter()
        .map(|l| (l.request_id, l.request_type.as_deref(), l.response_status))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(1), Some("A"), ResponseStatus::Ok),
            (Some(3), Some("C"), ResponseStatus::ServerError)
        ]
    );
    assert_eq!(frpc[1].response_exception.as_deref(), Some("boom"));
    assert_eq!(plugin.stats().failures(), 0);
}

#[test]
fn wrong_abi_version_is_refused_at_load() {
    let err = host(4)
        .load("frpc", frpc_wat(3, "", "").as_bytes())
        .unwrap_err();
    assert_eq!(err, PluginError::AbiVersion { found: 3 });
    let msg = err.to_string();
    assert!(
        msg.contains("version 3") && msg.contains("versions 1 to 2"),
        "{msg}"
    );
}

#[test]
fn missing_export_and_imports_are_refused_at_load() {
    let err = host(4)
        .load(
            "x",
            br#"(module (func (export "fathom_abi_version") (result i32) (i32.const 1)))"#,
        )
        .unwrap_err();
    assert!(
        matches!(err, PluginError::MissingExport("memory", _)),
        "{err}"
    );
    let err = host(4)
        .load("x", br#"(module (import "env" "f" (func)))"#)
        .unwrap_err();
    assert!(matches!(err, PluginError::Instantiate(_)), "{err}");
    let err = host(4).load("x", b"not wasm").unwrap_err();
    assert!(matches!(err, PluginError::Compile(_)), "{err}");
    // A start function that never ends is stopped by fuel.
    let err = host(4)
        .load("x", br#"(module (func $s (loop $l (br $l))) (start $s))"#)
        .unwrap_err();
    assert!(matches!(err, PluginError::Instantiate(_)), "{err}");
}

/// Run 12 FRPC flows and 12 HTTP flows through an Engine with a hostile plugin: every HTTP exchange is still
/// logged, the plugin fails exactly `max_failures` calls and is disabled.
fn hostile(probe: &str, parse: &str) -> (Arc<WasmPlugin>, Vec<RequestLog>) {
    const MAX: u64 = 3;
    let plugin = host(MAX)
        .load("frpc", frpc_wat(1, probe, parse).as_bytes())
        .unwrap();
    let mut engine = engine_with(&plugin);
    let mut logs = Vec::new();
    for i in 0..12 {
        feed(
            &mut engine,
            2 * i + 1,
            7000,
            &frpc_conversation(),
            &mut logs,
        );
        feed(&mut engine, 2 * i + 2, 80, &http_conversation(), &mut logs);
    }
    engine.finish(&mut logs);
    let http = of_proto(&logs, "http1");
    assert_eq!(http.len(), 12, "{logs:#?}");
    assert!(http.iter().all(|l| l.response_code == Some(200)));
    let stats = plugin.stats();
    assert!(stats.disabled, "{stats:?}");
    assert_eq!(stats.failures(), MAX, "{stats:?}");
    (plugin, logs)
}

#[test]
fn infinite_loop_in_parse_is_stopped_by_fuel() {
    let (plugin, _) = hostile("", "(loop $l (br $l))");
    assert_eq!(plugin.stats().timeouts, 3);
}

#[test]
fn infinite_loop_in_probe_is_stopped_by_fuel() {
    let (plugin, _) = hostile("(loop $l (br $l))", "");
    assert_eq!(plugin.stats().timeouts, 3);
}

#[test]
fn memory_grow_bomb_is_stopped_by_limits() {
    let (plugin, _) = hostile("", "(loop $l (drop (memory.grow (i32.const 16))) (br $l))");
    assert_eq!(plugin.stats().traps, 3, "{:?}", plugin.stats());
}

#[test]
fn trap_in_every_call() {
    let (plugin, _) = hostile("unreachable", "unreachable");
    assert_eq!(plugin.stats().traps, 3);
}

#[test]
fn out_of_bounds_result_record_is_rejected() {
    let (plugin, _) = hostile("", "(return (i32.const 0x7ffffff0))");
    assert_eq!(plugin.stats().bad_results, 3);
}

#[test]
fn huge_string_field_is_rejected() {
    let parse = "(i32.store (i32.const 16) (i32.const 11)) (i32.store8 (i32.const 20) (i32.const 0))
                 (i32.store (i32.const 40) (i32.const 1024)) (i32.store (i32.const 44) (i32.const 0x40000000))
                 (return (i32.const 16))";
    let (plugin, _) = hostile("", parse);
    assert_eq!(plugin.stats().bad_results, 3);
}

#[test]
fn consumed_beyond_input_is_rejected() {
    let parse = "(i32.store (i32.const 16) (i32.const 0x7fffffff)) (return (i32.const 16))";
    let (plugin, _) = hostile("", parse);
    assert_eq!(plugin.stats().bad_results, 3);
}

#[test]
fn bad_probe_verdict_is_rejected() {
    let (plugin, _) = hostile("(return (i32.const 7))", "");
    assert_eq!(plugin.stats().bad_results, 3);
}
