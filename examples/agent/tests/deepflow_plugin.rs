//! `--plugin` with a plugin written to DeepFlow's WASM ABI (the Rust test plugin of fathom-plugin-wasm,
//! built here for wasm32-wasip1): auto-detected, its HTTP hooks run on the shared HTTP/1 capture, and a
//! module of neither ABI is refused with a clear error.
//!
//! Expected values come from the capture's ground truth (`../shared/data/truth/http1.jsonl`, written by the
//! clients that made the traffic) and the plugin's documented rules: every all-digit path segment of the
//! request path becomes `:id` and the query goes (endpoint), tags `df.host` (the Host header) and
//! `df.code_class` (`4xx`...), and a 404 is rewritten to status `ok`.
#![cfg(feature = "wasm-plugins")]

#[path = "../../../crates/plugin-wasm/tests/common/deepflow_plugin.rs"]
mod deepflow_plugin;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(name)
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fathom-agent"))
        .args(args)
        .output()
        .expect("agent runs")
}

fn plugin_path(name: &str, bytes: &[u8]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fathom-deepflow-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The plugin's endpoint rule.
fn endpoint_rule(resource: &str) -> String {
    let path = resource.split('?').next().unwrap();
    path.split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                ":id"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

type Row = (u64, String, i64, String, String, String, String);

#[test]
fn deepflow_plugin_hooks_http_on_shared_capture() {
    let Some(wasm) = deepflow_plugin::build_plugin(false) else {
        return;
    };
    let plugin = plugin_path("deepflow-frpc.wasm", &wasm);
    let pcap = data("http1.pcap");
    let out = agent(&[
        "--pcap",
        pcap.to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
        "--json",
        "logs",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<Row> = json_lines(&out.stdout)
        .iter()
        .filter(|l| l["l7_protocol"] == "http1")
        .map(|l| {
            let tag = |k: &str| l["tags"][k].as_str().unwrap_or("<none>").to_string();
            (
                l["port_src"].as_u64().unwrap(),
                l["request_resource"].as_str().unwrap().to_string(),
                l["response_code"].as_i64().unwrap(),
                l["endpoint"].as_str().unwrap_or("<none>").to_string(),
                l["response_status"].as_str().unwrap().to_string(),
                tag("df.host"),
                tag("df.code_class"),
            )
        })
        .collect();
    let truth = std::fs::read_to_string(data("truth/http1.jsonl")).unwrap();
    let mut want: Vec<Row> = truth
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|t| {
            let code = t["code"].as_i64().unwrap();
            let status = if code == 404 {
                "ok".to_string()
            } else {
                t["status"].as_str().unwrap().to_string()
            };
            let resource = t["resource"].as_str().unwrap().to_string();
            (
                t["client_port"].as_u64().unwrap(),
                resource.clone(),
                code,
                endpoint_rule(&resource),
                status,
                t["domain"].as_str().unwrap().to_string(),
                format!("{}xx", code / 100),
            )
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(want.len(), 26);
    assert_eq!(got, want);
}

#[test]
fn module_of_neither_abi_is_refused() {
    let plugin = plugin_path(
        "nothing.wasm",
        &wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "main")))"#).unwrap(),
    );
    let out = agent(&[
        "--pcap",
        data("http1.pcap").to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
        "--json",
        "logs",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a plugin")
            && err.contains("fathom_abi_version")
            && err.contains("deepflow"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
