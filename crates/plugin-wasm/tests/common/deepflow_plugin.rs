//! Builds the DeepFlow-ABI test plugin (`tests/deepflow-plugin/`) for wasm32-wasip1 (shared by the
//! plugin-wasm and agent tests).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Build the test plugin (`legacy`: the hand-packed result encoding) and return its bytes; `None` (with a
/// message) when the wasm32-wasip1 target is not installed, unless FATHOM_REQUIRE_LIVE=1.
pub fn build_plugin(legacy: bool) -> Option<Vec<u8>> {
    static PLAIN: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    static LEGACY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let cell = if legacy { &LEGACY } else { &PLAIN };
    cell.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        // From fathom-plugin-wasm or from the agent: find the plugin-wasm crate.
        let dir = if dir.join("tests/deepflow-plugin").exists() {
            dir
        } else {
            dir.join("../../crates/plugin-wasm")
        };
        let manifest = dir.join("tests/deepflow-plugin/Cargo.toml");
        let target = dir.join("../../target").join(if legacy {
            "deepflow-plugin-legacy"
        } else {
            "deepflow-plugin"
        });
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target);
        if legacy {
            cmd.args(["--features", "legacy"]);
        }
        for v in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_TARGET",
        ] {
            cmd.env_remove(v);
        }
        let out = cmd.output().expect("run cargo");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let missing = err.contains("target may not be installed")
                || err.contains("can't find crate for `std`")
                || err.contains("can't find crate for `core`");
            if missing && std::env::var("FATHOM_REQUIRE_LIVE").as_deref() != Ok("1") {
                eprintln!("SKIP: the wasm32-wasip1 target is not installed ({err})");
                return None;
            }
            panic!("building the DeepFlow test plugin failed:\n{err}");
        }
        let wasm = target.join("wasm32-wasip1/release/deepflow_frpc_plugin.wasm");
        Some(std::fs::read(&wasm).expect("read the plugin"))
    })
    .clone()
}
