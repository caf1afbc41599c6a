//! Shared test helpers: the FRPC test plugin in WAT (with hooks for hostile variants) and an Engine driver.
#![allow(dead_code)]

use bytes::Bytes;
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, RequestLog, StreamChunk};

/// FRPC, an invented protocol: "FRPC", u8 kind (0 request, 1 response), u32 id (BE), u16 body length (BE),
/// body. A request body is the method name; a response body is a status byte (0 ok, 1 client error,
/// 2 server error) and an error text.
///
/// The plugin is the WAT example `examples/plugins/frpc-wat/frpc.wat`; its `;; @version`, `;; @probe` and
/// `;; @parse` markers are where hostile variants change it: the hook bodies run first in each function.
const FRPC_TEMPLATE: &str = include_str!("../../../../examples/plugins/frpc-wat/frpc.wat");

/// The FRPC plugin with hooks: `probe` / `parse` are WAT instructions run first in those functions.
pub fn frpc_wat(version: i32, probe: &str, parse: &str) -> String {
    FRPC_TEMPLATE
        .replace(
            "(i32.const 1)) ;; @version",
            &format!("(i32.const {version}))"),
        )
        .replace(";; @probe", probe)
        .replace(";; @parse", parse)
}

/// The well-behaved FRPC plugin.
pub fn frpc_ok() -> String {
    frpc_wat(1, "", "")
}

/// One FRPC request.
pub fn frpc_request(id: u32, method: &str) -> Vec<u8> {
    let mut v = b"FRPC\0".to_vec();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&(method.len() as u16).to_be_bytes());
    v.extend_from_slice(method.as_bytes());
    v
}

/// One FRPC response.
pub fn frpc_response(id: u32, status: u8, error: &str) -> Vec<u8> {
    let mut v = b"FRPC\x01".to_vec();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&(error.len() as u16 + 1).to_be_bytes());
    v.push(status);
    v.extend_from_slice(error.as_bytes());
    v
}

/// A TCP flow from a client port to a server port.
pub fn flow(port_src: u16, port_dst: u16) -> FlowKey {
    FlowKey {
        ip_src: "10.0.0.1".parse().unwrap(),
        ip_dst: "10.0.0.2".parse().unwrap(),
        port_src,
        port_dst,
        l4_protocol: L4Protocol::Tcp,
    }
}

/// A chunk of flow `id`.
pub fn chunk(
    id: u64,
    flow: FlowKey,
    dir: Direction,
    t: u64,
    gap: u64,
    bytes: &[u8],
) -> StreamChunk {
    StreamChunk {
        flow_id: id,
        flow,
        direction: dir,
        time_us: t,
        seq: None,
        gap_before: gap,
        bytes: Bytes::copy_from_slice(bytes),
        origin: ChunkOrigin::Packet,
    }
}

/// An FRPC conversation: two pipelined requests answered out of order, and one never answered.
pub fn frpc_conversation() -> Vec<(Direction, Vec<u8>)> {
    let mut req = frpc_request(1, "GetUser");
    req.extend(frpc_request(2, "DeleteUser"));
    let mut resp = frpc_response(2, 1, "denied");
    resp.extend(frpc_response(1, 0, ""));
    vec![
        (Direction::ClientToServer, req),
        (Direction::ServerToClient, resp),
        (Direction::ClientToServer, frpc_request(3, "Ping")),
    ]
}

/// An HTTP/1 exchange a built-in parser handles.
pub fn http_conversation() -> Vec<(Direction, Vec<u8>)> {
    vec![
        (
            Direction::ClientToServer,
            b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            Direction::ServerToClient,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
    ]
}

/// Logs of one protocol, sorted by request id.
pub fn of_proto<'a>(logs: &'a [RequestLog], name: &str) -> Vec<&'a RequestLog> {
    let mut v: Vec<&RequestLog> = logs
        .iter()
        .filter(|l| l.l7_protocol.as_str() == name)
        .collect();
    v.sort_by_key(|l| l.request_id);
    v
}

/// The repository root (every crate including this module sits two levels below it).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A toolchain piece is missing: skip (printing why), or fail when `FATHOM_REQUIRE_LIVE` is set (CI).
fn missing(what: &str) -> Option<Vec<u8>> {
    assert!(
        std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
        "FATHOM_REQUIRE_LIVE is set but {what}"
    );
    eprintln!("skipped: {what}");
    None
}

fn on_path(program: &str) -> bool {
    std::process::Command::new("which")
        .arg(program)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Build the Rust example plugin crate `examples/plugins/<dir>` for wasm32-unknown-unknown (release) and
/// return the module `<lib>.wasm`. `None` (after a message) when the wasm32 target is not installed.
///
/// # Panics
/// When the target is installed but the build fails.
pub fn build_rust_example(dir: &str, lib: &str) -> Option<Vec<u8>> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = std::process::Command::new(rustc)
        .args([
            "--print",
            "target-libdir",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed = libdir.is_some_and(|d| {
        std::fs::read_dir(d)
            .map(|mut it| {
                it.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libcore")))
            })
            .unwrap_or(false)
    });
    if !installed {
        return missing("the wasm32-unknown-unknown Rust target is not installed (rustup target add wasm32-unknown-unknown)");
    }
    let target_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-examples");
    let manifest = repo_root()
        .join("examples/plugins")
        .join(dir)
        .join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--target",
            "wasm32-unknown-unknown",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "building {}: {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = target_dir.join(format!("wasm32-unknown-unknown/release/{lib}.wasm"));
    Some(std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display())))
}

/// Build the C example plugin `examples/plugins/frpc-c/frpc.c` with clang (freestanding wasm32, Debian's
/// clang + lld). `None` (after a message) when clang or wasm-ld is missing.
///
/// # Panics
/// When the tools are there but the build fails.
pub fn build_c_frpc() -> Option<Vec<u8>> {
    if !on_path("clang") || !on_path("wasm-ld") {
        return missing("clang or wasm-ld (Debian packages clang, lld) is not installed");
    }
    let root = repo_root();
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-examples");
    std::fs::create_dir_all(&out_dir).unwrap();
    let wasm = out_dir.join(format!("frpc-c-{}.wasm", std::process::id()));
    let out = std::process::Command::new("clang")
        .args([
            "--target=wasm32",
            "-O2",
            "-nostdlib",
            "-mbulk-memory",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .args(["-Wl,--no-entry", "-I"])
        .arg(root.join("crates/plugin-wasm/include"))
        .arg("-o")
        .arg(&wasm)
        .arg(root.join("examples/plugins/frpc-c/frpc.c"))
        .output()
        .expect("clang runs");
    assert!(
        out.status.success(),
        "clang: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&wasm).unwrap();
    let _ = std::fs::remove_file(&wasm);
    Some(bytes)
}

/// The WAT example plugin, as wasm text.
pub fn wat_frpc() -> Vec<u8> {
    frpc_ok().into_bytes()
}
