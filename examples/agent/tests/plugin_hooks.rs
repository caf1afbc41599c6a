//! HTTP hooks change endpoints and add tags on the shared HTTP captures.
//!
//! The Rust HTTP hook example (`examples/plugins/http-hook-rust`, built here for wasm32-unknown-unknown) runs
//! through the agent pipeline on the shared HTTP/1, HTTP/2, gRPC and Redis captures. Every HTTP/1, HTTP/2 and
//! gRPC log must carry the plugin's tags, with its endpoint rewritten by the plugin's rule (the first path
//! segment); everything else in every log, and every log of other protocols, must be as without the plugin.
//! The User-Agent tags are checked against tshark. Hostile hook plugins (loop, trap, huge result) are
//! stopped, counted and disabled while every log stays as without them.
#![cfg(feature = "wasm-plugins")]

#[path = "../../../crates/plugin-wasm/tests/common/mod.rs"]
mod frpc;

use fathom_agent::{run_pcap, Output, RunOptions};
use fathom_model::RequestLog;
use fathom_plugin_wasm::{PluginConfig, PluginHost, WasmPlugin};
use fathom_protocols::MessageHook;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn run(pcap: &Path, hooks: Vec<Arc<dyn MessageHook>>) -> Vec<RequestLog> {
    let options = RunOptions {
        hooks,
        ..RunOptions::default()
    };
    let mut logs = Vec::new();
    run_pcap(pcap, &options, |o| {
        if let Output::Log(l) = o {
            logs.push(l.clone());
        }
    })
    .unwrap();
    logs
}

/// The example's endpoint rule: the first segment of the path, without the query.
fn first_segment(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match path.get(1..).and_then(|rest| rest.find('/')) {
        Some(i) => path[..i + 1].to_string(),
        None => path.to_string(),
    }
}

fn is_http(l: &RequestLog) -> bool {
    matches!(l.l7_protocol.as_str(), "http1" | "http2" | "grpc")
}

/// User-Agent values of the HTTP/1 requests in `pcap`, as tshark dissects them (sorted).
fn tshark_user_agents(pcap: &Path) -> Option<Vec<String>> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            "http.request",
            "-T",
            "fields",
            "-e",
            "http.user_agent",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        // Pipelined requests in one frame come on one line, separated by commas.
        .flat_map(|l| l.split(','))
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    Some(v)
}

#[test]
fn http_hooks_change_endpoints_and_add_tags_on_shared_captures() {
    let Some(wasm) = frpc::build_rust_example("http-hook-rust", "http_hook_plugin") else {
        return;
    };
    let host = PluginHost::new(PluginConfig::default()).unwrap();
    let hook = host.load("http-hook", &wasm).unwrap();
    let mut http_logs = 0;
    for file in ["http1.pcap", "http2.pcap", "grpc.pcap", "redis.pcap"] {
        let pcap = data(file);
        let plain = run(&pcap, Vec::new());
        let hooked = run(&pcap, vec![hook.clone() as Arc<dyn MessageHook>]);
        assert!(!plain.is_empty(), "{file}");
        assert_eq!(plain.len(), hooked.len(), "{file}");
        let mut user_agents = Vec::new();
        let http_here = plain.iter().filter(|l| is_http(l)).count();
        assert_eq!(
            http_here > 0,
            file != "redis.pcap",
            "{file}: {http_here} HTTP logs"
        );
        for (p, h) in plain.iter().zip(&hooked) {
            if !is_http(p) {
                assert_eq!(p, h, "{file}: a non-HTTP log changed");
                continue;
            }
            http_logs += 1;
            let want_endpoint = match &p.request_resource {
                Some(r) => Some(first_segment(r)),
                None => p.endpoint.clone(),
            };
            assert_eq!(h.endpoint, want_endpoint, "{file}: {p:?}");
            assert_eq!(
                h.tags.get("hook.plugin").map(String::as_str),
                Some("http-hook")
            );
            assert_eq!(h.tags.get("hook.method"), p.request_type.as_ref(), "{file}");
            let class = h.tags.get("hook.status_class");
            match (p.l7_protocol.as_str(), p.response_code) {
                ("grpc", _) | (_, None) => assert_eq!(class, None, "{file}: {h:?}"),
                (_, Some(code)) => {
                    assert_eq!(class, Some(&format!("{}xx", code / 100)), "{file}")
                }
            }
            if let Some(ua) = h.tags.get("hook.user_agent") {
                user_agents.push(ua.clone());
            }
            let mut same = h.clone();
            same.endpoint = p.endpoint.clone();
            same.tags = p.tags.clone();
            assert_eq!(&same, p, "{file}: only the endpoint and tags may change");
        }
        if file == "http1.pcap" {
            user_agents.sort();
            assert!(!user_agents.is_empty());
            if let Some(want) = tshark_user_agents(&pcap) {
                assert_eq!(user_agents, want, "User-Agent tags against tshark");
            } else {
                assert!(
                    std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
                    "tshark is needed"
                );
            }
        }
    }
    assert!(http_logs > 0);
    let stats = hook.stats();
    assert_eq!(stats.failures(), 0, "{stats:?}");
    assert!(stats.calls >= http_logs as u64, "{stats:?}");
}

/// A hook-only plugin in WAT whose request hook runs `body` (a hostile one) and otherwise returns 0.
fn hostile_hook(body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (func (export "fathom_abi_version") (result i32) (i32.const 2))
          (func (export "fathom_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "fathom_on_http_request") (param $p i32) (param $n i32) (result i32)
            {body}
            (i32.const 0)))"#
    );
    wat::parse_str(wat).unwrap()
}

fn hostile(body: &str) -> Arc<WasmPlugin> {
    let host = PluginHost::new(PluginConfig {
        max_failures: 4,
        ..PluginConfig::default()
    })
    .unwrap();
    let hook = host.load("hostile", &hostile_hook(body)).unwrap();
    let pcap = data("http1.pcap");
    let plain = run(&pcap, Vec::new());
    let hooked = run(&pcap, vec![hook.clone() as Arc<dyn MessageHook>]);
    assert_eq!(plain, hooked, "logs are as without the hook");
    let stats = hook.stats();
    assert!(stats.disabled, "{stats:?}");
    assert_eq!(stats.failures(), 4, "{stats:?}");
    hook
}

#[test]
fn hostile_hooks_are_stopped_counted_and_disabled() {
    assert_eq!(hostile("(loop $l (br $l))").stats().timeouts, 4);
    assert_eq!(hostile("unreachable").stats().traps, 4);
    // A result claiming 2^31 tags.
    let huge = "(i32.store (i32.const 0x104) (i32.const 0x7fffffff)) (return (i32.const 0x100))";
    assert_eq!(hostile(huge).stats().bad_results, 4);
    // Memory growth beyond the limit.
    let grow = "(loop $l (drop (memory.grow (i32.const 64))) (br $l))";
    assert_eq!(hostile(grow).stats().traps, 4);
}

/// The command line: `--plugin` with a hook plugin tags the JSON logs; a parser plugin next to it still
/// parses its protocol.
#[test]
fn cli_plugin_flag_registers_hooks() {
    let Some(wasm) = frpc::build_rust_example("http-hook-rust", "http_hook_plugin") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("fathom-hook-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("http-hook.wasm");
    std::fs::write(&hook, wasm).unwrap();
    let frpc_plugin = dir.join("frpc.wasm");
    std::fs::write(&frpc_plugin, wat::parse_str(frpc::frpc_ok()).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .arg("--pcap")
        .arg(data("http1.pcap"))
        .arg("--plugin")
        .arg(&hook)
        .arg("--plugin")
        .arg(&frpc_plugin)
        .args(["--json", "logs"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!logs.is_empty());
    for l in &logs {
        assert_eq!(l["l7_protocol"], "http1");
        assert_eq!(l["tags"]["hook.plugin"], "http-hook", "{l}");
        assert_eq!(l["tags"]["hook.method"], l["request_type"], "{l}");
    }
}
