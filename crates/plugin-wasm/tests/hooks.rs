//! HTTP hooks (ABI v2) through `fathom_protocols::Engine`: a WAT hook plugin rewrites endpoints, statuses and
//! adds tags; hostile hooks are stopped, counted and disabled while every log stays as without them.

mod common;

use common::*;
use fathom_model::{Direction, RequestLog, ResponseStatus};
use fathom_plugin_wasm::{PluginConfig, PluginError, PluginHost, WasmPlugin};
use fathom_protocols::{builtin_parsers, Engine, Limits, MessageHook};
use std::sync::Arc;

/// A hook-only v2 plugin. Request hook: endpoint := "rewritten", tags hooked=yes and method=<the method the
/// host passed>. Response hook: tag status_seen=yes, and a 404 becomes a server error. `{REQ}` / `{RESP}` run
/// first in each hook (hostile variants).
const HOOKS_TEMPLATE: &str = r#"
(module
  (memory (export "memory") 2)
  (data (i32.const 0x180) "hookedyesrewrittenmethodstatus_seen")
  (func (export "fathom_abi_version") (result i32) (i32.const {VERSION}))
  (func (export "fathom_alloc") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.lt_s (memory.grow (local.get $need)) (i32.const 0))
        (then (return (i32.const -1))))))
    (i32.const 1024))
  (func $tag (param $at i32) (param $k i32) (param $kl i32) (param $v i32) (param $vl i32)
    (i32.store (local.get $at) (local.get $k))
    (i32.store offset=4 (local.get $at) (local.get $kl))
    (i32.store offset=8 (local.get $at) (local.get $v))
    (i32.store offset=12 (local.get $at) (local.get $vl)))
  (func (export "fathom_on_http_request") (param $p i32) (param $n i32) (result i32)
    {REQ}
    (memory.fill (i32.const 0x100) (i32.const 0) (i32.const 48))
    (i32.store8 (i32.const 0x100) (i32.const 1))
    (i32.store (i32.const 0x104) (i32.const 2))
    (i32.store (i32.const 0x110) (i32.const 0x140))
    (i32.store (i32.const 0x118) (i32.const 0x189))
    (i32.store (i32.const 0x11c) (i32.const 9))
    (call $tag (i32.const 0x140) (i32.const 0x180) (i32.const 6) (i32.const 0x186) (i32.const 3))
    (call $tag (i32.const 0x150) (i32.const 0x192) (i32.const 6)
      (i32.load offset=64 (local.get $p)) (i32.load offset=68 (local.get $p)))
    (i32.const 0x100))
  (func (export "fathom_on_http_response") (param $p i32) (param $n i32) (result i32)
    {RESP}
    (memory.fill (i32.const 0x100) (i32.const 0) (i32.const 48))
    (i32.store (i32.const 0x104) (i32.const 1))
    (i32.store (i32.const 0x110) (i32.const 0x140))
    (call $tag (i32.const 0x140) (i32.const 0x198) (i32.const 11) (i32.const 0x186) (i32.const 3))
    ;; flags bit 2 of the input: a status code is present
    (if (i32.and (i32.and (i32.shr_u (i32.load8_u offset=7 (local.get $p)) (i32.const 2)) (i32.const 1))
                 (i64.eq (i64.load offset=48 (local.get $p)) (i64.const 404)))
      (then
        (i32.store8 (i32.const 0x100) (i32.const 4))
        (i32.store8 (i32.const 0x101) (i32.const 3))))
    (i32.const 0x100))
)
"#;

fn hooks_wat(version: i32, req: &str, resp: &str) -> String {
    HOOKS_TEMPLATE
        .replace("{VERSION}", &version.to_string())
        .replace("{REQ}", req)
        .replace("{RESP}", resp)
}

fn host(max_failures: u64) -> PluginHost {
    PluginHost::new(PluginConfig {
        max_failures,
        ..PluginConfig::default()
    })
    .unwrap()
}

fn http_404() -> Vec<(Direction, Vec<u8>)> {
    vec![
        (
            Direction::ClientToServer,
            b"POST /users/7 HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
        ),
        (
            Direction::ServerToClient,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        ),
    ]
}

/// 12 HTTP flows (every other one a 404) and 12 FRPC flows (parsed by the FRPC plugin), with `hook` if any.
fn run(hook: Option<&Arc<WasmPlugin>>, frpc: &Arc<WasmPlugin>) -> Vec<RequestLog> {
    let mut engine = Engine::new(builtin_parsers(), Limits::default());
    engine.register(frpc.clone());
    if let Some(h) = hook {
        engine.add_hook(h.clone());
    }
    let mut logs = Vec::new();
    for i in 0..12u64 {
        let conv = if i % 2 == 0 {
            http_conversation()
        } else {
            http_404()
        };
        let f = flow(41000 + i as u16, 80);
        for (j, (dir, bytes)) in conv.iter().enumerate() {
            engine.on_chunk(
                &chunk(2 * i + 1, f, *dir, 1_000 * (j as u64 + 1), 0, bytes),
                &mut logs,
            );
        }
        let f = flow(42000 + i as u16, 7000);
        for (j, (dir, bytes)) in frpc_conversation().iter().enumerate() {
            engine.on_chunk(
                &chunk(2 * i + 2, f, *dir, 1_000 * (j as u64 + 1), 0, bytes),
                &mut logs,
            );
        }
    }
    engine.finish(&mut logs);
    logs.sort_by_key(|l| (l.port_src, l.request_id));
    logs
}

fn frpc_plugin() -> Arc<WasmPlugin> {
    host(4).load("frpc", frpc_ok().as_bytes()).unwrap()
}

#[test]
fn wat_hooks_rewrite_http_logs_and_leave_others_alone() {
    let frpc = frpc_plugin();
    let hook = host(4)
        .load("hooks", hooks_wat(2, "", "").as_bytes())
        .unwrap();
    assert!(hook.has_hooks() && !hook.has_parser());
    assert_eq!(hook.abi_version(), 2);
    assert!(hook.applies_to(&fathom_model::L7Protocol::Http1));
    assert!(!hook.applies_to(&fathom_model::L7Protocol::Redis));
    let plain = run(None, &frpc);
    let hooked = run(Some(&hook), &frpc);
    assert_eq!(plain.len(), hooked.len());
    assert_eq!(of_proto(&plain, "http1").len(), 12);
    for (p, h) in plain.iter().zip(&hooked) {
        if p.l7_protocol.as_str() != "http1" {
            assert_eq!(p, h, "non-HTTP logs are unchanged");
            continue;
        }
        let method = p.request_type.clone().unwrap();
        let want_tags: Vec<(String, String)> = [
            ("hooked", "yes"),
            ("method", method.as_str()),
            ("status_seen", "yes"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let got_tags: Vec<(String, String)> = h.tags.clone().into_iter().collect();
        assert_eq!(got_tags, want_tags);
        assert_eq!(h.endpoint.as_deref(), Some("rewritten"));
        if p.response_code == Some(404) {
            assert_eq!(p.response_status, ResponseStatus::ClientError);
            assert_eq!(h.response_status, ResponseStatus::ServerError);
        } else {
            assert_eq!(h.response_status, p.response_status);
        }
        let mut same = h.clone();
        same.tags.clear();
        same.endpoint = p.endpoint.clone();
        same.response_status = p.response_status;
        assert_eq!(&same, p, "only endpoint, status and tags change");
    }
    let stats = hook.stats();
    assert_eq!(stats.failures(), 0, "{stats:?}");
    assert_eq!(stats.calls, 24, "one call per HTTP request and response");
}

/// A hostile hook fails exactly `MAX` calls, is disabled, and every log is as without it.
fn hostile(req: &str, resp: &str) -> Arc<WasmPlugin> {
    const MAX: u64 = 3;
    let frpc = frpc_plugin();
    let hook = host(MAX)
        .load("hooks", hooks_wat(2, req, resp).as_bytes())
        .unwrap();
    let plain = run(None, &frpc);
    let hooked = run(Some(&hook), &frpc);
    assert_eq!(plain, hooked);
    let stats = hook.stats();
    assert!(stats.disabled, "{stats:?}");
    assert_eq!(stats.failures(), MAX, "{stats:?}");
    hook
}

#[test]
fn looping_hook_is_stopped_by_fuel() {
    let h = hostile("(loop $l (br $l))", "(loop $l (br $l))");
    assert_eq!(h.stats().timeouts, 3);
}

#[test]
fn trapping_hook_is_counted() {
    let h = hostile("unreachable", "unreachable");
    assert_eq!(h.stats().traps, 3);
}

#[test]
fn huge_hook_results_are_rejected() {
    // A billion tags.
    let many = "(memory.fill (i32.const 0x100) (i32.const 0) (i32.const 48))
                (i32.store (i32.const 0x104) (i32.const 1000000000)) (return (i32.const 0x100))";
    assert_eq!(hostile(many, many).stats().bad_results, 3);
    // An endpoint of 1 GiB.
    let long = "(memory.fill (i32.const 0x100) (i32.const 0) (i32.const 48))
                (i32.store8 (i32.const 0x100) (i32.const 1)) (i32.store (i32.const 0x11c) (i32.const 0x40000000))
                (return (i32.const 0x100))";
    assert_eq!(hostile(long, long).stats().bad_results, 3);
    // A record out of memory, and a negative address.
    assert_eq!(
        hostile("(return (i32.const 0x7ffffff0))", "(return (i32.const -8))")
            .stats()
            .bad_results,
        3
    );
}

#[test]
fn version_rules_for_hooks() {
    // A v1 plugin may not export hooks.
    let err = host(4)
        .load("hooks", hooks_wat(1, "", "").as_bytes())
        .unwrap_err();
    assert_eq!(err, PluginError::HooksNeedVersion2);
    assert!(err.to_string().contains("version 2"), "{err}");
    // Versions outside 1..=2 are refused, naming both.
    let err = host(4)
        .load("hooks", hooks_wat(3, "", "").as_bytes())
        .unwrap_err();
    assert_eq!(err, PluginError::AbiVersion { found: 3 });
    // A v2 module with neither parser nor hook.
    let err = host(4)
        .load(
            "x",
            br#"(module (memory (export "memory") 1)
                 (func (export "fathom_abi_version") (result i32) (i32.const 2))
                 (func (export "fathom_alloc") (param i32) (result i32) (i32.const 0)))"#,
        )
        .unwrap_err();
    assert_eq!(err, PluginError::NothingToDo);
    // The v1 FRPC plugin still loads and parses (see engine.rs), as a v2 one too.
    let p = host(4)
        .load("frpc", frpc_wat(2, "", "").as_bytes())
        .unwrap();
    assert!(p.has_parser() && !p.has_hooks());
}
