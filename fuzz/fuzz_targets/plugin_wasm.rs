#![no_main]
//! plugin_wasm: arbitrary payloads through the FRPC WAT plugin (the example `examples/plugins/frpc-wat`) via
//! the Engine (chunks of both directions, gaps), which must never fail a sandboxed call; and arbitrary result
//! records: an "echo" plugin returns the first 72 input bytes as its parse result record, and its HTTP hooks
//! return 48 of those bytes as their result record, so the host's validation of records, strings and tag
//! tables sees fuzz-controlled values (it may refuse them, never panic or read out of bounds).
use fathom_model::L7Protocol;
use fathom_plugin_wasm::{PluginConfig, PluginHost, WasmPlugin};
use fathom_protocols::{HookInput, LogInfo, MessageHook, MessageKind};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

include!("common.rs");

const ECHO: &str = r#"
(module
  (memory (export "memory") 2)
  (func (export "fathom_abi_version") (result i32) (i32.const 2))
  (func (export "fathom_alloc") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.lt_s (memory.grow (local.get $need)) (i32.const 0))
        (then (return (i32.const -1))))))
    (i32.const 1024))
  (func (export "fathom_probe") (param i32 i32 i32) (result i32) (i32.const 2))
  (func (export "fathom_parse") (param $p i32) (param $n i32) (param $d i32) (result i32)
    (if (i32.lt_u (local.get $n) (i32.const 72)) (then (return (i32.const 0))))
    (memory.copy (i32.const 16) (local.get $p) (i32.const 72))
    (memory.copy (i32.const 512) (i32.add (local.get $p) (i32.const 24)) (i32.const 48))
    (i32.const 16))
  (func (export "fathom_on_http_request") (param i32 i32) (result i32) (i32.const 512))
  (func (export "fathom_on_http_response") (param i32 i32) (result i32) (i32.const 512)))
"#;

struct Plugins {
    frpc: Arc<WasmPlugin>,
    echo: Arc<WasmPlugin>,
}

fn plugins() -> &'static Plugins {
    static P: OnceLock<Plugins> = OnceLock::new();
    P.get_or_init(|| {
        // Never disabled: every input must reach the sandbox.
        let host = PluginHost::new(PluginConfig {
            max_failures: u64::MAX,
            ..PluginConfig::default()
        })
        .unwrap();
        let frpc_wat = include_str!("../../examples/plugins/frpc-wat/frpc.wat");
        Plugins {
            frpc: host
                .load("frpc", &wat::parse_str(frpc_wat).unwrap())
                .unwrap(),
            echo: host.load("echo", &wat::parse_str(ECHO).unwrap()).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let p = plugins();
    drive_on_port(p.frpc.clone(), L4Protocol::Tcp, 7000, data);
    parser_direct(&*p.frpc, 7000, data);
    assert_eq!(
        p.frpc.stats().failures(),
        0,
        "the FRPC plugin failed a call: {:?}",
        p.frpc.stats()
    );
    // Arbitrary parse result records.
    parser_direct(&*p.echo, 7000, data);
    // Arbitrary hook result records (from the last parse), on a request and a response.
    let key = FlowKey {
        ip_src: [10, 0, 0, 1].into(),
        ip_dst: [10, 0, 0, 2].into(),
        port_src: 40000,
        port_dst: 80,
        l4_protocol: L4Protocol::Tcp,
    };
    for kind in [MessageKind::Request, MessageKind::Response] {
        let input = HookInput {
            protocol: &L7Protocol::Http1,
            direction: Direction::ClientToServer,
            kind,
            flow: &key,
            flow_id: 1,
            time_us: 0,
            bytes: data,
            message_len: data.len() as u64 + 1,
        };
        let mut info = LogInfo::default();
        p.echo.on_message(&input, &mut info);
        assert!(info.tags.len() <= fathom_plugin_wasm::MAX_HOOK_TAGS);
        for (k, v) in &info.tags {
            assert!(!k.is_empty() && k.len() <= 4 * fathom_plugin_wasm::MAX_TAG_KEY_LEN);
            assert!(v.len() <= 4 * fathom_plugin_wasm::MAX_FIELD_LEN);
        }
    }
});
