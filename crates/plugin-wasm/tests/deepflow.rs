//! DeepFlow-ABI plugins: the Rust test plugin in `tests/deepflow-plugin/` (built here for wasm32-wasip1)
//! parsing FRPC through the Engine and hooking HTTP, and hostile DeepFlow-ABI modules that must be stopped,
//! counted and must not hurt anything else.

mod common;

use common::*;
use fathom_model::{Direction, RequestLog, ResponseStatus};
use fathom_plugin_wasm::{AnyPlugin, DeepFlowPlugin, PluginConfig, PluginError, PluginHost};
use fathom_protocols::{builtin_parsers, Engine, Limits};
use std::sync::Arc;

#[path = "common/deepflow_plugin.rs"]
mod deepflow_plugin;
use deepflow_plugin::build_plugin;

fn host(max_failures: u64) -> PluginHost {
    PluginHost::new(PluginConfig {
        max_failures,
        ..PluginConfig::default()
    })
    .unwrap()
}

fn deepflow(p: AnyPlugin) -> Arc<DeepFlowPlugin> {
    match p {
        AnyPlugin::DeepFlow(p) => p,
        other => panic!("expected a DeepFlow-ABI plugin, got {other:?}"),
    }
}

fn engine_with(plugin: &AnyPlugin) -> Engine {
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    if let Some(p) = plugin.parser() {
        engine.register(p);
    }
    engine
}

/// Feed `conv` as flow `id` (server port `port`); each element is cut in two at `split` when it is longer.
fn feed(
    engine: &mut Engine,
    id: u64,
    port: u16,
    conv: &[(Direction, Vec<u8>)],
    split: Option<usize>,
    out: &mut Vec<RequestLog>,
) {
    let f = flow(40000 + id as u16, port);
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        let t = 1_000 * (i as u64 + 1);
        match split {
            Some(k) if k > 0 && k < bytes.len() => {
                engine.on_chunk(&chunk(id, f, *dir, t, 0, &bytes[..k]), out);
                engine.on_chunk(&chunk(id, f, *dir, t, 0, &bytes[k..]), out);
            }
            _ => engine.on_chunk(&chunk(id, f, *dir, t, 0, bytes), out),
        }
    }
}

fn tag<'a>(log: &'a RequestLog, key: &str) -> Option<&'a str> {
    log.tags.get(key).map(|v| v.as_str())
}

/// The logs of `frpc_conversation()`: the values come from how that conversation was built.
fn check_frpc_logs(logs: &[RequestLog]) {
    let frpc = of_proto(logs, "frpc");
    assert_eq!(frpc.len(), 3, "{logs:#?}");
    assert_eq!(frpc[0].request_id, Some(1));
    assert_eq!(frpc[0].request_type.as_deref(), Some("GetUser"));
    assert_eq!(frpc[0].request_resource.as_deref(), Some("GetUser"));
    assert_eq!(frpc[0].response_status, ResponseStatus::Ok);
    assert_eq!(frpc[0].response_code, Some(0));
    assert_eq!(frpc[0].response_exception, None);
    assert_eq!(tag(frpc[0], "frpc.method"), Some("GetUser"));
    assert_eq!(frpc[1].request_id, Some(2));
    assert_eq!(frpc[1].request_type.as_deref(), Some("DeleteUser"));
    assert_eq!(frpc[1].response_status, ResponseStatus::ClientError);
    assert_eq!(frpc[1].response_code, Some(1));
    assert_eq!(frpc[1].response_exception.as_deref(), Some("denied"));
    assert_eq!(tag(frpc[1], "frpc.method"), Some("DeleteUser"));
    assert_eq!(frpc[2].request_id, Some(3));
    assert_eq!(frpc[2].request_type.as_deref(), Some("Ping"));
    assert_eq!(frpc[2].response_status, ResponseStatus::Timeout);
    // Request 1 went first (t=1000) and its response arrived in the second chunk (t=2000).
    assert_eq!(frpc[0].response_duration_us, Some(1_000));
    // The plugin reports req_len/resp_len: each log counts its own message's bytes.
    assert_eq!(
        frpc[0].captured_request_byte,
        frpc_request(1, "GetUser").len() as u64
    );
    assert_eq!(
        frpc[1].captured_response_byte,
        frpc_response(2, 1, "denied").len() as u64
    );
}

fn run_frpc(wasm: &[u8], split: Option<usize>) -> (Vec<RequestLog>, AnyPlugin) {
    let plugin = host(4).load_any("frpc", wasm).unwrap();
    let mut engine = engine_with(&plugin);
    let mut logs = Vec::new();
    feed(&mut engine, 1, 7000, &frpc_conversation(), split, &mut logs);
    feed(&mut engine, 2, 80, &http_conversation(), None, &mut logs);
    engine.finish(&mut logs);
    (logs, plugin)
}

#[test]
fn deepflow_plugin_parses_frpc_through_engine() {
    let Some(wasm) = build_plugin(false) else {
        return;
    };
    let (logs, plugin) = run_frpc(&wasm, None);
    check_frpc_logs(&logs);
    assert_eq!(of_proto(&logs, "http1").len(), 1, "{logs:#?}");
    let stats = plugin.stats();
    assert_eq!(stats.failures(), 0, "{stats:?}");
    assert!(stats.calls > 0);
    let df = deepflow(plugin);
    assert!(df.parses() && df.hooks_http());
    assert_eq!(
        df.hook_bitmap(),
        1 | 1 << 127 | 1 << 126,
        "the bitmap the plugin declares"
    );
    assert_eq!(df.reported_protocol(), Some("frpc"));
}

#[test]
fn deepflow_plugin_legacy_encoding_gives_the_same_logs() {
    let Some(wasm) = build_plugin(true) else {
        return;
    };
    let (logs, plugin) = run_frpc(&wasm, None);
    check_frpc_logs(&logs);
    assert_eq!(plugin.stats().failures(), 0);
}

#[test]
fn deepflow_plugin_split_at_every_offset() {
    let Some(wasm) = build_plugin(false) else {
        return;
    };
    let plugin = host(4).load_any("frpc", &wasm).unwrap();
    let longest = frpc_conversation()
        .iter()
        .map(|(_, b)| b.len())
        .max()
        .unwrap();
    for k in 1..longest {
        let mut engine = engine_with(&plugin);
        let mut logs = Vec::new();
        feed(
            &mut engine,
            10 + k as u64,
            7000,
            &frpc_conversation(),
            Some(k),
            &mut logs,
        );
        engine.finish(&mut logs);
        check_frpc_logs(&logs);
        assert_eq!(plugin.stats().failures(), 0, "split at {k}");
    }
}

// --- hostile DeepFlow-ABI modules ------------------------------------------------------------------------

/// A minimal DeepFlow-ABI plugin in WAT: `check_payload` says yes to "FRPC", `parse_payload` reports one
/// request "Ping". `{CHECK}` / `{PARSE}` run first in those functions; `{IMPORTS}` adds imports.
const HOSTILE: &str = r#"
(module
  (import "deepflow" "vm_read_ctx_base" (func $ctx (param i32 i32) (result i32)))
  (import "deepflow" "vm_read_payload" (func $payload (param i32 i32) (result i32)))
  (import "deepflow" "host_read_l7_protocol_info" (func $result (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  {IMPORTS}
  (memory (export "memory") 2)
  (data (i32.const 16) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\01")
  (data (i32.const 64) "\00\0aPB\52\06\12\04Ping")
  (func (export "_start") {START})
  (func (export "get_hook_bitmap") (result i32) {BITMAP})
  (func (export "check_payload") (result i32)
    {CHECK}
    (drop (call $ctx (i32.const 512) (i32.const 256)))
    (drop (call $payload (i32.const 1024) (i32.const 8192)))
    (if (result i32) (i32.eq (i32.load (i32.const 1024)) (i32.const 0x43505246))
      (then (i32.const 1)) (else (i32.const 0))))
  (func (export "parse_payload") (result i32)
    {PARSE}
    (drop (call $result (i32.const 64) (i32.const 12)))
    (i32.const 1))
)
"#;

fn hostile(check: &str, parse: &str) -> String {
    HOSTILE
        .replace("{IMPORTS}", "")
        .replace("{START}", "")
        .replace("{BITMAP}", "(i32.const 16)")
        .replace("{CHECK}", check)
        .replace("{PARSE}", parse)
}

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap()
}

/// Run FRPC flows and an HTTP flow through an engine with `plugin`; returns the logs.
fn drive(plugin: &AnyPlugin, flows: u64) -> Vec<RequestLog> {
    let mut engine = engine_with(plugin);
    let mut logs = Vec::new();
    for id in 1..=flows {
        feed(&mut engine, id, 7000, &frpc_conversation(), None, &mut logs);
    }
    feed(&mut engine, 100, 80, &http_conversation(), None, &mut logs);
    engine.finish(&mut logs);
    logs
}

#[test]
fn well_behaved_wat_plugin_reports_its_request() {
    let p = host(4).load_any("frpc", &wasm(&hostile("", ""))).unwrap();
    let logs = drive(&p, 1);
    let frpc = of_proto(&logs, "frpc");
    assert!(!frpc.is_empty(), "{logs:#?}");
    assert!(frpc
        .iter()
        .all(|l| l.request_type.as_deref() == Some("Ping")));
    assert_eq!(p.stats().failures(), 0);
}

#[test]
fn endless_check_payload_is_stopped_counted_and_disabled() {
    let p = host(3)
        .load_any("frpc", &wasm(&hostile("(loop $l (br $l))", "")))
        .unwrap();
    let logs = drive(&p, 5);
    let s = p.stats();
    assert_eq!(s.timeouts, 3, "{s:?}");
    assert!(s.disabled);
    assert!(of_proto(&logs, "frpc").is_empty());
    assert_eq!(of_proto(&logs, "http1").len(), 1, "other parsers go on");
}

#[test]
fn trapping_parse_payload_is_counted() {
    let p = host(2)
        .load_any("frpc", &wasm(&hostile("", "unreachable")))
        .unwrap();
    let logs = drive(&p, 4);
    let s = p.stats();
    assert_eq!(s.traps, 2, "{s:?}");
    assert!(s.disabled);
    assert!(of_proto(&logs, "frpc").is_empty());
    assert_eq!(of_proto(&logs, "http1").len(), 1);
}

#[test]
fn proc_exit_and_memory_bombs_fail_the_call() {
    for parse in [
        "(call $exit (i32.const 3))",
        "(drop (memory.grow (i32.const 30000))) (i32.store (i32.const 0x1fffffc) (i32.const 1))",
    ] {
        let p = host(1)
            .load_any("frpc", &wasm(&hostile("", parse)))
            .unwrap();
        drive(&p, 1);
        let s = p.stats();
        assert_eq!(s.traps, 1, "{parse}: {s:?}");
        assert!(s.disabled);
    }
}

#[test]
fn huge_or_garbage_result_frames_are_bad_results() {
    for parse in [
        // 1 MiB result: over MAX_RESULT_LEN.
        "(drop (call $result (i32.const 0) (i32.const 0x100000)))",
        // A buffer past the end of memory.
        "(drop (call $result (i32.const 0x7ffffff0) (i32.const 100)))",
        // Frames: a zero-length legacy record.
        "(drop (call $result (i32.const 0) (i32.const 16)))",
        // A frame longer than the buffer.
        "(i32.store16 (i32.const 200) (i32.const 0xffff)) (drop (call $result (i32.const 200) (i32.const 8)))",
        // `PB` and bytes that are no protobuf.
        "(i32.store (i32.const 200) (i32.const 0xff42_5003)) (drop (call $result (i32.const 200) (i32.const 5)))",
    ] {
        let p = host(1).load_any("frpc", &wasm(&hostile("", parse))).unwrap();
        let logs = drive(&p, 1);
        let s = p.stats();
        assert_eq!(s.bad_results, 1, "{parse}: {s:?}");
        assert!(s.disabled, "{parse}");
        assert!(of_proto(&logs, "frpc").is_empty(), "{parse}");
    }
}

#[test]
fn out_of_range_check_payload_verdict_is_a_bad_result() {
    let p = host(1)
        .load_any("frpc", &wasm(&hostile("(return (i32.const 999))", "")))
        .unwrap();
    drive(&p, 1);
    assert_eq!(p.stats().bad_results, 1);
}

#[test]
fn unknown_imports_are_refused_by_name() {
    for (import, module, name) in [
        (
            r#"(import "wasi_snapshot_preview1" "sock_open" (func (param i32) (result i32)))"#,
            "wasi_snapshot_preview1",
            "sock_open",
        ),
        (
            r#"(import "deepflow" "vm_read_everything" (func (param i32 i32) (result i32)))"#,
            "deepflow",
            "vm_read_everything",
        ),
        (r#"(import "env" "abort" (func))"#, "env", "abort"),
    ] {
        let wat = HOSTILE
            .replace("{IMPORTS}", import)
            .replace("{START}", "")
            .replace("{BITMAP}", "(i32.const 16)")
            .replace("{CHECK}", "")
            .replace("{PARSE}", "");
        let err = host(1).load_any("x", &wasm(&wat)).unwrap_err();
        assert_eq!(
            err,
            PluginError::UnknownImport {
                module: module.into(),
                name: name.into()
            }
        );
        assert!(
            err.to_string().contains(&format!("{module}::{name}")),
            "{err}"
        );
    }
}

#[test]
fn load_time_failures_are_clear() {
    let wat = |start: &str, bitmap: &str| {
        HOSTILE
            .replace("{IMPORTS}", "")
            .replace("{START}", start)
            .replace("{BITMAP}", bitmap)
            .replace("{CHECK}", "")
            .replace("{PARSE}", "")
    };
    let err = host(1)
        .load_any("x", &wasm(&wat("unreachable", "(i32.const 16)")))
        .unwrap_err();
    assert!(err.to_string().contains("_start failed"), "{err}");
    let err = host(1)
        .load_any(
            "x",
            &wasm(&wat("(call $exit (i32.const 2))", "(i32.const 16)")),
        )
        .unwrap_err();
    assert!(err.to_string().contains("proc_exit(2)"), "{err}");
    // proc_exit(0) is the normal end of a command's _start.
    assert!(host(1)
        .load_any(
            "x",
            &wasm(&wat("(call $exit (i32.const 0))", "(i32.const 16)"))
        )
        .is_ok());
    let err = host(1)
        .load_any("x", &wasm(&wat("", "(i32.const 0x7ffffff8)")))
        .unwrap_err();
    assert!(err.to_string().contains("out-of-bounds"), "{err}");
    // The bitmap asks for on_http_req, which is not exported.
    let err = host(1)
        .load_any(
            "x",
            &wasm(&wat(
                "",
                "(i32.store8 (i32.const 16) (i32.const 0x80)) (i32.const 16)",
            )),
        )
        .unwrap_err();
    assert!(err.to_string().contains("on_http_req"), "{err}");
}

#[test]
fn a_module_of_neither_abi_is_refused() {
    let err = host(1)
        .load_any(
            "x",
            &wasm(r#"(module (memory (export "memory") 1) (func (export "run")))"#),
        )
        .unwrap_err();
    assert!(matches!(err, PluginError::NotAPlugin(_)), "{err:?}");
    assert!(err.to_string().contains("run"), "{err}");
}

#[test]
fn fathom_modules_still_load_through_load_any() {
    let p = host(4).load_any("frpc", frpc_ok().as_bytes()).unwrap();
    assert!(matches!(p, AnyPlugin::Fathom(_)));
    let logs = drive(&p, 1);
    assert_eq!(of_proto(&logs, "frpc").len(), 3);
}

// --- HTTP hooks -------------------------------------------------------------------------------------------

/// An HTTP/1 exchange: the request and response a client and server made.
fn http_exchange(path: &str, ua: &str, status: &str) -> Vec<(Direction, Vec<u8>)> {
    vec![
        (
            Direction::ClientToServer,
            format!("GET {path} HTTP/1.1\r\nHost: shop.local\r\nUser-Agent: {ua}\r\nReferer: /home\r\n\r\n")
                .into_bytes(),
        ),
        (
            Direction::ServerToClient,
            format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok").into_bytes(),
        ),
    ]
}

#[test]
fn deepflow_http_hooks_rewrite_endpoint_add_tags_and_status() {
    let Some(wasm) = build_plugin(false) else {
        return;
    };
    let plugin = host(4).load_any("frpc", &wasm).unwrap();
    let mut engine = engine_with(&plugin);
    engine.add_hook(plugin.hook().expect("the plugin hooks HTTP"));
    let mut logs = Vec::new();
    feed(
        &mut engine,
        1,
        80,
        &http_exchange("/api/users/123?x=1", "curl/8.0", "404 Not Found"),
        None,
        &mut logs,
    );
    feed(
        &mut engine,
        2,
        80,
        &http_exchange("/api/items/7/parts", "fathom-test", "503 Unavailable"),
        None,
        &mut logs,
    );
    feed(&mut engine, 3, 7000, &frpc_conversation(), None, &mut logs);
    engine.finish(&mut logs);
    let mut http = of_proto(&logs, "http1");
    http.sort_by_key(|l| l.port_src);
    assert_eq!(http.len(), 2, "{logs:#?}");
    // The plugin's rule: digit-only path segments become `:id`, the query goes; a 404 is rewritten to ok.
    assert_eq!(http[0].endpoint.as_deref(), Some("/api/users/:id"));
    assert_eq!(
        http[0].request_resource.as_deref(),
        Some("/api/users/123?x=1")
    );
    assert_eq!(http[0].response_code, Some(404));
    assert_eq!(http[0].response_status, ResponseStatus::Ok);
    assert_eq!(tag(http[0], "df.host"), Some("shop.local"));
    assert_eq!(tag(http[0], "df.ua"), Some("curl/8.0"));
    assert_eq!(tag(http[0], "df.code_class"), Some("4xx"));
    assert_eq!(http[1].endpoint.as_deref(), Some("/api/items/:id/parts"));
    assert_eq!(http[1].response_code, Some(503));
    assert_eq!(http[1].response_status, ResponseStatus::ServerError);
    assert_eq!(tag(http[1], "df.ua"), Some("fathom-test"));
    assert_eq!(tag(http[1], "df.code_class"), Some("5xx"));
    // The hook does not touch other protocols.
    check_frpc_logs(&logs);
    assert!(of_proto(&logs, "frpc")
        .iter()
        .all(|l| tag(l, "df.host").is_none()));
    assert_eq!(plugin.stats().failures(), 0, "{:?}", plugin.stats());
}

#[test]
fn hooks_of_a_failing_plugin_leave_logs_unchanged() {
    // A DeepFlow plugin whose on_http_req traps: counted, disabled, the HTTP logs are the parser's.
    let wat = HOSTILE
        .replace("{IMPORTS}", "")
        .replace("{START}", "")
        .replace(
            "{BITMAP}",
            "(i32.store8 (i32.const 16) (i32.const 0x80)) (i32.const 16)",
        )
        .replace("{CHECK}", "")
        .replace("{PARSE}", "")
        .replace(
            r#"(func (export "get_hook_bitmap")"#,
            r#"(func (export "on_http_req") (result i32) unreachable)
  (func (export "get_hook_bitmap")"#,
        );
    let plugin = host(1).load_any("bad", &wasm(&wat)).unwrap();
    let mut engine = engine_with(&plugin);
    engine.add_hook(plugin.hook().unwrap());
    let mut logs = Vec::new();
    for id in 1..=3 {
        feed(
            &mut engine,
            id,
            80,
            &http_exchange("/api/users/1", "x", "200 OK"),
            None,
            &mut logs,
        );
    }
    engine.finish(&mut logs);
    let http = of_proto(&logs, "http1");
    assert_eq!(http.len(), 3);
    assert!(http
        .iter()
        .all(|l| l.endpoint.as_deref() != Some("/api/users/:id") && l.tags.is_empty()));
    let s = plugin.stats();
    assert_eq!(s.traps, 1, "{s:?}");
    assert!(s.disabled);
}

// --- WASI ------------------------------------------------------------------------------------------------

/// `check_payload` says yes only if every WASI answer is the documented one: the test fails otherwise.
const WASI_PROBE: &str = r#"
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fdstat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\01")
  (data (i32.const 300) "hello from the guest\n")
  (func (export "get_hook_bitmap") (result i32) (i32.const 16))
  (func (export "parse_payload") (result i32) (i32.const 0))
  (func (export "check_payload") (result i32)
    ;; random_get fills 16 bytes, not all zero.
    (if (call $random (i32.const 100) (i32.const 16)) (then (return (i32.const 0))))
    (if (i64.eqz (i64.or (i64.load (i32.const 100)) (i64.load (i32.const 108))))
      (then (return (i32.const 0))))
    ;; random_get out of bounds: FAULT (21).
    (if (i32.ne (call $random (i32.const 65530) (i32.const 16)) (i32.const 21))
      (then (return (i32.const 0))))
    ;; The real-time clock is after 2020 (ns).
    (if (call $clock (i32.const 0) (i64.const 1) (i32.const 120)) (then (return (i32.const 0))))
    (if (i64.lt_u (i64.load (i32.const 120)) (i64.const 1577836800000000000))
      (then (return (i32.const 0))))
    ;; An unknown clock: INVAL (28).
    (if (i32.ne (call $clock (i32.const 9) (i64.const 1) (i32.const 120)) (i32.const 28))
      (then (return (i32.const 0))))
    ;; fd_write to stderr: 21 bytes written.
    (i32.store (i32.const 200) (i32.const 300))
    (i32.store (i32.const 204) (i32.const 21))
    (if (call $write (i32.const 2) (i32.const 200) (i32.const 1) (i32.const 208)) (then (return (i32.const 0))))
    (if (i32.ne (i32.load (i32.const 208)) (i32.const 21)) (then (return (i32.const 0))))
    ;; fd_write to a file descriptor that is not open: BADF (8).
    (if (i32.ne (call $write (i32.const 5) (i32.const 200) (i32.const 1) (i32.const 208)) (i32.const 8))
      (then (return (i32.const 0))))
    ;; No arguments, no environment.
    (i32.store (i32.const 220) (i32.const 7))
    (if (call $args (i32.const 220) (i32.const 224)) (then (return (i32.const 0))))
    (if (i32.load (i32.const 220)) (then (return (i32.const 0))))
    (i32.store (i32.const 220) (i32.const 7))
    (if (call $env (i32.const 220) (i32.const 224)) (then (return (i32.const 0))))
    (if (i32.load (i32.const 220)) (then (return (i32.const 0))))
    ;; No preopened directory, so no path opens: BADF.
    (if (i32.ne (call $prestat (i32.const 3) (i32.const 240)) (i32.const 8)) (then (return (i32.const 0))))
    (if (i32.ne (call $open (i32.const 3) (i32.const 0) (i32.const 300) (i32.const 5) (i32.const 0)
                            (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 240)) (i32.const 8))
      (then (return (i32.const 0))))
    ;; stdin is empty; stdout is a character device (filetype 2).
    (if (call $read (i32.const 0) (i32.const 200) (i32.const 1) (i32.const 250)) (then (return (i32.const 0))))
    (if (i32.load (i32.const 250)) (then (return (i32.const 0))))
    (if (call $fdstat (i32.const 1) (i32.const 256)) (then (return (i32.const 0))))
    (if (i32.ne (i32.load8_u (i32.const 256)) (i32.const 2)) (then (return (i32.const 0))))
    (if (call $yield) (then (return (i32.const 0))))
    (i32.const 1))
)
"#;

#[test]
fn wasi_functions_answer_as_documented() {
    let p = host(1).load_any("wasi", &wasm(WASI_PROBE)).unwrap();
    let parser = p.parser().unwrap();
    let f = flow(40000, 7000);
    let verdict = parser.probe(&fathom_protocols::ProbeInput {
        payload: b"anything",
        direction: Direction::ClientToServer,
        flow: &f,
    });
    assert_eq!(verdict, fathom_protocols::Probe::Yes, "{:?}", p.stats());
    assert_eq!(p.stats().failures(), 0);
}

#[test]
fn every_wasi_preview1_function_is_linked() {
    // One import of each provided function, with its preview 1 signature: the module must load.
    let sigs: &[(&str, &str)] = &[
        ("args_get", "(param i32 i32) (result i32)"),
        ("args_sizes_get", "(param i32 i32) (result i32)"),
        ("environ_get", "(param i32 i32) (result i32)"),
        ("environ_sizes_get", "(param i32 i32) (result i32)"),
        ("clock_res_get", "(param i32 i32) (result i32)"),
        ("clock_time_get", "(param i32 i64 i32) (result i32)"),
        ("fd_advise", "(param i32 i64 i64 i32) (result i32)"),
        ("fd_allocate", "(param i32 i64 i64) (result i32)"),
        ("fd_close", "(param i32) (result i32)"),
        ("fd_datasync", "(param i32) (result i32)"),
        ("fd_fdstat_get", "(param i32 i32) (result i32)"),
        ("fd_fdstat_set_flags", "(param i32 i32) (result i32)"),
        ("fd_fdstat_set_rights", "(param i32 i64 i64) (result i32)"),
        ("fd_filestat_get", "(param i32 i32) (result i32)"),
        ("fd_filestat_set_size", "(param i32 i64) (result i32)"),
        (
            "fd_filestat_set_times",
            "(param i32 i64 i64 i32) (result i32)",
        ),
        ("fd_pread", "(param i32 i32 i32 i64 i32) (result i32)"),
        ("fd_prestat_get", "(param i32 i32) (result i32)"),
        ("fd_prestat_dir_name", "(param i32 i32 i32) (result i32)"),
        ("fd_pwrite", "(param i32 i32 i32 i64 i32) (result i32)"),
        ("fd_read", "(param i32 i32 i32 i32) (result i32)"),
        ("fd_readdir", "(param i32 i32 i32 i64 i32) (result i32)"),
        ("fd_renumber", "(param i32 i32) (result i32)"),
        ("fd_seek", "(param i32 i64 i32 i32) (result i32)"),
        ("fd_sync", "(param i32) (result i32)"),
        ("fd_tell", "(param i32 i32) (result i32)"),
        ("fd_write", "(param i32 i32 i32 i32) (result i32)"),
        ("path_create_directory", "(param i32 i32 i32) (result i32)"),
        (
            "path_filestat_get",
            "(param i32 i32 i32 i32 i32) (result i32)",
        ),
        (
            "path_filestat_set_times",
            "(param i32 i32 i32 i32 i64 i64 i32) (result i32)",
        ),
        (
            "path_link",
            "(param i32 i32 i32 i32 i32 i32 i32) (result i32)",
        ),
        (
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
        ),
        (
            "path_readlink",
            "(param i32 i32 i32 i32 i32 i32) (result i32)",
        ),
        ("path_remove_directory", "(param i32 i32 i32) (result i32)"),
        (
            "path_rename",
            "(param i32 i32 i32 i32 i32 i32) (result i32)",
        ),
        ("path_symlink", "(param i32 i32 i32 i32 i32) (result i32)"),
        ("path_unlink_file", "(param i32 i32 i32) (result i32)"),
        ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
        ("proc_exit", "(param i32)"),
        ("proc_raise", "(param i32) (result i32)"),
        ("random_get", "(param i32 i32) (result i32)"),
        ("sched_yield", "(result i32)"),
        ("sock_accept", "(param i32 i32 i32) (result i32)"),
        ("sock_recv", "(param i32 i32 i32 i32 i32 i32) (result i32)"),
        ("sock_send", "(param i32 i32 i32 i32 i32) (result i32)"),
        ("sock_shutdown", "(param i32 i32) (result i32)"),
    ];
    assert_eq!(sigs.len(), fathom_plugin_wasm::wasi::PROVIDED.len());
    let imports: String = sigs
        .iter()
        .map(|(n, s)| format!(r#"(import "wasi_snapshot_preview1" "{n}" (func {s}))"#))
        .collect();
    let wat = format!(
        r#"(module {imports} (memory (export "memory") 1) (func (export "get_hook_bitmap") (result i32) (i32.const 0)))"#
    );
    host(1).load_any("all", &wasm(&wat)).unwrap();
}

#[test]
fn parts_with_is_end_are_merged_into_one_message() {
    // Two frames for one request: `type "A"` with is_end false, then `resource "/r"` with is_end true.
    let wat = HOSTILE
        .replace(
            r#"(data (i32.const 64) "\00\0aPB\52\06\12\04Ping")"#,
            r#"(data (i32.const 64) "\00\0aPB\52\03\12\01A\a8\01\00\00\0bPB\52\04\22\02/r\a8\01\01")"#,
        )
        .replace("(i32.const 64) (i32.const 12)", "(i32.const 64) (i32.const 25)")
        .replace("{IMPORTS}", "")
        .replace("{START}", "")
        .replace("{BITMAP}", "(i32.const 16)")
        .replace("{CHECK}", "")
        .replace("{PARSE}", "");
    let p = host(1).load_any("frpc", &wasm(&wat)).unwrap();
    let mut engine = engine_with(&p);
    let mut logs = Vec::new();
    let req = frpc_request(1, "GetUser");
    feed(
        &mut engine,
        1,
        7000,
        &[(Direction::ClientToServer, req.clone())],
        None,
        &mut logs,
    );
    engine.finish(&mut logs);
    let frpc = of_proto(&logs, "frpc");
    assert_eq!(frpc.len(), 1, "{logs:#?}");
    assert_eq!(frpc[0].request_type.as_deref(), Some("A"));
    assert_eq!(frpc[0].request_resource.as_deref(), Some("/r"));
    assert_eq!(frpc[0].captured_request_byte, req.len() as u64);
    assert_eq!(frpc[0].response_status, ResponseStatus::Timeout);
    assert_eq!(p.stats().failures(), 0);
}
