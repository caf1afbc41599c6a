//! `--plugin FILE.wasm`: the FRPC test plugin of fathom-plugin-wasm on a small synthetic capture.
//!
//! `tests/data/frpc.pcap` was made from `tests/data/frpc.txt` with
//! `text2pcap -D -t "%H:%M:%S." -4 10.0.0.1,10.0.0.2 -T 40001,7000 frpc.txt frpc.pcap`: two pipelined FRPC
//! requests answered out of order (id 2 client error "denied", id 1 ok), then request 3 answered with a
//! server error "boom".
#![cfg(feature = "wasm-plugins")]

#[path = "../../../crates/plugin-wasm/tests/common/mod.rs"]
mod frpc;

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

/// Write `wat` as a binary module named `name` in a fresh temp dir.
fn plugin_file(name: &str, wat: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fathom-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let path = d.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

fn logs(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn frpc_plugin_logs_from_capture() {
    let plugin = plugin_file("frpc.wasm", &frpc::frpc_ok());
    let pcap = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/frpc.pcap"));
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
    let mut logs = logs(&out.stdout);
    logs.sort_by_key(|l| l["request_id"].as_u64());
    let got: Vec<_> = logs
        .iter()
        .map(|l| {
            (
                l["l7_protocol"].as_str().unwrap().to_string(),
                l["request_id"].as_u64(),
                l["request_type"].as_str().map(str::to_string),
                l["response_status"].as_str().unwrap().to_string(),
                l["response_exception"].as_str().map(str::to_string),
                l["port_dst"].as_u64(),
            )
        })
        .collect();
    let want = |id: u64, ty: &str, st: &str, ex: Option<&str>| {
        (
            "frpc".to_string(),
            Some(id),
            Some(ty.to_string()),
            st.to_string(),
            ex.map(str::to_string),
            Some(7000),
        )
    };
    assert_eq!(
        got,
        vec![
            want(1, "GetUser", "ok", None),
            want(2, "DeleteUser", "client_error", Some("denied")),
            want(3, "Ping", "server_error", Some("boom")),
        ]
    );
}

#[test]
fn plugin_does_not_change_builtin_logs() {
    let plugin = plugin_file("frpc2.wasm", &frpc::frpc_ok());
    let pcap = data("http1.pcap");
    let p = pcap.to_str().unwrap();
    let without = agent(&["--pcap", p, "--json", "logs"]);
    let with = agent(&[
        "--pcap",
        p,
        "--json",
        "logs",
        "--plugin",
        plugin.to_str().unwrap(),
    ]);
    assert!(without.status.success() && with.status.success());
    assert!(!without.stdout.is_empty());
    let sorted = |o: &Output| {
        let mut v: Vec<String> = logs(&o.stdout).iter().map(|l| l.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&with), sorted(&without));
}

#[test]
fn wrong_abi_version_exits_2_with_a_clear_error() {
    let plugin = plugin_file("old.wasm", &frpc::frpc_wat(7, "", ""));
    let pcap = data("http1.pcap");
    let out = agent(&[
        "--pcap",
        pcap.to_str().unwrap(),
        "--plugin",
        plugin.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ABI version mismatch") && err.contains("version 7"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
