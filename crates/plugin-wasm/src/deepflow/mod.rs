//! DeepFlow compatibility: plugins built for DeepFlow's WASM ABI (`deepflow-wasm-go-sdk`, TinyGo or any
//! language) run unchanged, under Fathom's sandbox.
//!
//! A DeepFlow-ABI module imports functions from the module `deepflow` (and WASI preview 1, see
//! [`crate::wasi`]) and exports `memory`, `_start` (or `_initialize`), `get_hook_bitmap`, `check_payload`,
//! `parse_payload`, `on_http_req`, `on_http_resp` and optionally `on_custom_message`. Every export takes no
//! argument: the guest pulls its inputs with the `vm_read_*` imports into buffers of its own memory (the host
//! never calls a guest allocator) and pushes its results with the `host_read_*` imports.
//!
//! | import (`deepflow`) | signature | what the host does |
//! |---|---|---|
//! | `wasm_log` | `(ptr, len, level)` | logs the text (level 0/1/2 → our `debug`/`info`/`warn`, one step below DeepFlow's so a chatty plugin cannot flood the log) |
//! | `vm_read_ctx_base` | `(ptr, len) -> size` | writes the base context ([`ctx`]); 0 when it does not fit or no call is active |
//! | `vm_read_payload` | `(ptr, len) -> size` | writes the payload; -1 when `len` is too small, 0 when out of bounds |
//! | `vm_read_http_req_info` / `vm_read_http_resp_info` | `(ptr, len) -> size` | the HTTP hook contexts; 0 outside that hook |
//! | `vm_read_custom_message_info` | `(ptr, len) -> size` | always 0: no Fathom parser produces DeepFlow custom messages |
//! | `host_read_l7_protocol_info` | `(ptr, len) -> bool` | reads the result frames ([`result`]) |
//! | `host_read_str_result` | `(ptr, len) -> bool` | reads the `u16`-prefixed protocol name `check_payload` reports |
//! | `host_read_http_result` | `(ptr, len) -> bool` | the HTTP hook result of older SDKs (trace ids and key/values) |
//!
//! Export semantics: `check_payload() -> u8` returns 0 (not this protocol) or the plugin's protocol number
//! (1..=255, handed back in the `l7` byte of the context of later `parse_payload` calls); any other value is a
//! bad result. `parse_payload() -> bool`, `on_http_req() -> bool`, `on_http_resp() -> bool`: true ("abort" in
//! the SDK) means the plugin handled the call and what it passed to `host_read_l7_protocol_info` is the
//! result; false means it did not. `get_hook_bitmap() -> *u8` points at 16 bytes, a big-endian `u128`: bit 0
//! [`HOOK_PAYLOAD_PARSE`] (check/parse), bit 127 [`HOOK_HTTP_REQ`], bit 126 [`HOOK_HTTP_RESP`], bit 125
//! [`HOOK_CUSTOM_MESSAGE`]; a null pointer means no hook. It is read once, after `_start`.
//!
//! Mapping to Fathom: a plugin with [`HOOK_PAYLOAD_PARSE`] is an [`fathom_protocols::L7Parser`] for `Custom(name)` (TCP and
//! UDP); each `AppInfo` becomes a request or response [`fathom_protocols::Message`] with its fields, paired by `request_id`
//! when set (FIFO otherwise), `is_end: false` parts merged until the part with `is_end: true`, attributes as
//! tags, `protocol_str` (lowercased) as the log's protocol. A plugin with an HTTP hook bit is a
//! [`fathom_protocols::MessageHook`] on HTTP/1, HTTP/2 and gRPC messages: the fields the plugin sets override the parser's,
//! attributes become tags.
//!
//! Stream model: DeepFlow hands a plugin one packet's payload at a time and has no notion of "consumed". Here
//! `parse_payload` sees the reassembled bytes of one direction (at most [`MAX_PAYLOAD_LEN`]); when it
//! returns true they are all consumed (the messages are laid out by their `req_len`/`resp_len` when given);
//! when it returns false on TCP, the bytes are kept and offered again with the next segment (a message split
//! across segments parses once whole), up to [`MAX_RETRIES`] times or until the window is full, then dropped
//! as a parse error.
//!
//! Sandbox: the store, fuel, memory limits and disable-after-N-failures of [`crate::PluginConfig`] apply, with
//! [`FUEL_FACTOR`] times the per-call fuel (TinyGo runtimes run a garbage collector inside calls) and
//! [`INIT_FUEL_FACTOR`] times for `_start`. A trap, a timeout, a `proc_exit`, an out-of-range return value or
//! a malformed result frame fails that call and is counted in [`crate::PluginStats`].
//!
//! The context encoders ([`ctx`]) and the result decoder ([`result`]) build without the `wasm` feature (the
//! fuzz target uses them alone).

pub mod ctx;
#[cfg(feature = "wasm")]
mod hook;
#[cfg(feature = "wasm")]
mod plugin;
pub mod result;

#[cfg(feature = "wasm")]
pub use plugin::{detect_abi, AnyPlugin, DeepFlowPlugin, ModuleAbi, PROVIDED};
pub use result::{decode_result, DeepFlowInfo, ResultError};

/// The import module of DeepFlow's ABI.
pub const IMPORT_MODULE: &str = "deepflow";
/// Hook bit: `check_payload` / `parse_payload`.
pub const HOOK_PAYLOAD_PARSE: u128 = 1;
/// Hook bit: `on_http_req`.
pub const HOOK_HTTP_REQ: u128 = 1 << 127;
/// Hook bit: `on_http_resp`.
pub const HOOK_HTTP_RESP: u128 = 1 << 126;
/// Hook bit: `on_custom_message` (accepted, never called: no Fathom parser emits DeepFlow custom messages).
pub const HOOK_CUSTOM_MESSAGE: u128 = 1 << 125;
/// DeepFlow plugin calls get this many times [`crate::PluginConfig::fuel_per_call`].
pub const FUEL_FACTOR: u64 = 10;
/// `_start` / `_initialize` gets this many times [`crate::PluginConfig::fuel_per_call`].
pub const INIT_FUEL_FACTOR: u64 = 100;
/// Longest payload handed to `check_payload` / `parse_payload` (the context's `buf_size` is a `u16`).
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;
/// Longest result a plugin may pass to `host_read_l7_protocol_info` (more is a bad result).
pub const MAX_RESULT_LEN: usize = 256 << 10;
/// Longest `wasm_log` text kept.
pub const MAX_LOG_LEN: usize = 4096;
/// `parse_payload` refusals tolerated on the same TCP bytes before they are dropped.
pub const MAX_RETRIES: u8 = 4;
/// Parts of one message (`is_end: false`) merged at most; past this the merged message is emitted.
pub const MAX_MERGE_PARTS: u32 = 64;
