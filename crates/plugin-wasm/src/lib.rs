//! # fathom-plugin-wasm
//!
//! Private application protocols as sandboxed WebAssembly modules, parsed beside the built-in parsers through
//! the same [`fathom_protocols::L7Parser`] / [`fathom_protocols::FlowParser`] traits.
//!
//! The guest ABI (version [`ABI_VERSION`]) is documented in `docs/plugins.md`: a core wasm module exporting
//! `memory`, `fathom_abi_version`, `fathom_alloc`, `fathom_probe` and `fathom_parse`, with no imports. The
//! guest is stateless between calls: everything it needs is in the bytes the host hands it.
//!
//! DeepFlow compatibility: `PluginHost::load_any` also loads plugins built for DeepFlow's WASM plugin ABI
//! (`deepflow-wasm-go-sdk`, TinyGo or Rust `wasm32-wasip1`) unchanged, recognising the ABI by the module's
//! imports and exports; see [`deepflow`] and the hand-written WASI preview 1 functions in `wasi`.
//!
//! Sandbox: one shared [`wasmtime::Engine`] per [`PluginHost`], each module compiled once at load, one
//! [`wasmtime::Store`] per plugin, a fuel budget on every guest call and [`wasmtime::StoreLimits`] on memory
//! and tables. A trap, an exhausted fuel budget, a memory limit or a malformed result fails that call only
//! (counted in [`PluginStats`]); after [`PluginConfig::max_failures`] failures the plugin is disabled (logged
//! once at `warn`) and every other parser goes on.
//!
//! ```
//! # #[cfg(feature = "wasm")] {
//! use fathom_plugin_wasm::{PluginConfig, PluginHost};
//! let host = PluginHost::new(PluginConfig::default()).unwrap();
//! // A module that is not a Fathom plugin is refused at load time with a clear error.
//! let err = host.load("nothing", b"\0asm\x01\0\0\0").unwrap_err();
//! assert!(err.to_string().contains("fathom_abi_version"), "{err}");
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

/// The newest plugin ABI version this host implements (version 2: version 1 plus optional HTTP hooks, parser
/// exports optional).
pub const ABI_VERSION: i32 = 2;
/// The oldest plugin ABI version this host still loads. A plugin's `fathom_abi_version()` must return a
/// version from [`ABI_VERSION_MIN`] to [`ABI_VERSION`].
pub const ABI_VERSION_MIN: i32 = 1;
/// Size in bytes of the result record `fathom_parse` returns a pointer to.
pub const RESULT_RECORD_LEN: usize = 72;
/// Longest string field a result record may carry (longer: the call fails as a bad result).
pub const MAX_FIELD_LEN: usize = 4096;
/// At most this many payload bytes are handed to `fathom_probe`.
pub const MAX_PROBE_LEN: usize = 4096;
/// Size in bytes of the fixed part of the input record handed to an HTTP hook (ABI v2).
pub const HOOK_INPUT_LEN: usize = 112;
/// Size in bytes of the result record an HTTP hook returns a pointer to (ABI v2).
pub const HOOK_RESULT_LEN: usize = 48;
/// Most tags one hook call may add.
pub const MAX_HOOK_TAGS: usize = 16;
/// Longest tag key a hook may set.
pub const MAX_TAG_KEY_LEN: usize = 128;
/// Most headers handed to a hook.
pub const MAX_HOOK_HEADERS: usize = 64;
/// At most this many bytes of a message are handed to a hook.
pub const MAX_HOOK_BYTES: usize = 4096;
/// Bits of `fathom_hook_protocols()`: HTTP/1.
pub const HOOK_HTTP1: i32 = 1;
/// Bits of `fathom_hook_protocols()`: HTTP/2 (not gRPC).
pub const HOOK_HTTP2: i32 = 2;
/// Bits of `fathom_hook_protocols()`: gRPC.
pub const HOOK_GRPC: i32 = 4;

pub mod deepflow;
#[cfg(feature = "wasm")]
mod hook;
#[cfg(feature = "wasm")]
mod host;
#[cfg(feature = "wasm")]
pub mod wasi;
#[cfg(feature = "wasm")]
pub use deepflow::{AnyPlugin, DeepFlowPlugin};
#[cfg(feature = "wasm")]
pub use host::{PluginError, PluginHost, PluginStats, WasmPlugin};

/// Sandbox limits and failure policy shared by the plugins of one [`PluginHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Fuel (roughly, wasm instructions) allowed for one guest call.
    pub fuel_per_call: u64,
    /// Largest linear memory a plugin may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Largest table a plugin may have, in elements.
    pub max_table_elements: usize,
    /// Failed calls (trap, timeout, memory limit, bad result) after which a plugin is disabled.
    pub max_failures: u64,
    /// At most this many buffered bytes are handed to one `fathom_parse` batch; a message must fit in it.
    pub max_parse_window: usize,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            fuel_per_call: 1_000_000,
            max_memory_bytes: 16 << 20,
            max_table_elements: 10_000,
            max_failures: 16,
            max_parse_window: 256 << 10,
        }
    }
}
