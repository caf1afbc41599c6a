//! # fathom-plugin-guest
//!
//! Write a Fathom WASM plugin in safe Rust: implement [`Parser`] (a private protocol) and/or [`HttpHook`]
//! (rewrite HTTP endpoints and statuses, add tags), then export the Fathom plugin ABI (version 2, see
//! `docs/plugins.md`) with [`export_plugin!`]. Build the plugin crate as a `cdylib` for
//! `wasm32-unknown-unknown` and load the `.wasm` with `fathom-agent --plugin FILE.wasm`.
//!
//! ```
//! use fathom_plugin_guest::{export_plugin, Direction, Msg, Parsed, Parser, Verdict};
//!
//! /// A line protocol: "PING\n" requests, "PONG\n" responses.
//! struct Pingpong;
//!
//! impl Parser for Pingpong {
//!     fn probe(payload: &[u8], _dir: Direction) -> Verdict {
//!         if payload.starts_with(b"PING\n") { Verdict::Yes } else { Verdict::No }
//!     }
//!     fn parse<'a>(data: &'a [u8], dir: Direction, _after_gap: bool) -> Parsed<'a> {
//!         let Some(end) = data.iter().position(|&b| b == b'\n') else { return Parsed::NeedMore };
//!         match (dir, &data[..end]) {
//!             (Direction::ClientToServer, b"PING") => Parsed::Message(Msg::request(end + 1).request_type("PING")),
//!             (Direction::ServerToClient, b"PONG") => Parsed::Message(Msg::response(end + 1)),
//!             _ => Parsed::NotMine,
//!         }
//!     }
//! }
//!
//! export_plugin!(parser: Pingpong);
//! # fn main() {}
//! ```
//!
//! What the crate does for the plugin: the `fathom_alloc` buffer, bounds-checked views of what the host
//! wrote (the guest never dereferences a host-given address: it indexes its own buffer), the 72-byte parse
//! result record and the hook input/result records. Strings a [`Msg`] returns must borrow from the input (or
//! be `'static`): they are referenced in place, not copied. [`HookActions`] own their strings; they are kept
//! alive until the next call. A panic in the plugin traps (wasm32-unknown-unknown aborts), which the host
//! counts as a failed call.
//!
//! The crate also builds on the host (its unit tests run there); [`export_plugin!`] is meant for wasm32.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
// The only unsafe code: access to the plugin's one global state (a wasm guest is single-threaded and the host
// serialises calls). See `rt::state`.
#![allow(unsafe_code)]

/// The ABI version a plugin built with this crate declares.
pub const ABI_VERSION: i32 = 2;
/// Size of the parse result record.
pub const RESULT_RECORD_LEN: usize = 72;
/// Size of the fixed part of the hook input record.
pub const HOOK_INPUT_LEN: usize = 112;
/// Size of the hook result record.
pub const HOOK_RESULT_LEN: usize = 48;
/// [`HttpHook::PROTOCOLS`] bit: HTTP/1.
pub const HTTP1: i32 = 1;
/// [`HttpHook::PROTOCOLS`] bit: HTTP/2 (not gRPC).
pub const HTTP2: i32 = 2;
/// [`HttpHook::PROTOCOLS`] bit: gRPC.
pub const GRPC: i32 = 4;

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    ClientToServer,
    /// Server to client.
    ServerToClient,
}

/// A probe's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not this protocol.
    No,
    /// Maybe (ports break ties).
    Maybe,
    /// Certainly this protocol.
    Yes,
}

/// A message's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Expects a response.
    Request,
    /// Answers a request.
    Response,
    /// Logged alone.
    OneWay,
    /// Counted, not logged.
    Event,
}

/// A response's outcome class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// Error caused by the request.
    ClientError,
    /// Other error.
    ServerError,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Status::Ok => 1,
            Status::ClientError => 2,
            Status::ServerError => 3,
        }
    }
}

/// One parsed message: how many bytes it took and the log fields it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg<'a> {
    /// Bytes of the input this message consumed (`1..=input.len()`).
    pub consumed: usize,
    /// Its role.
    pub kind: Kind,
    /// Correlation id / `request_id` (pairs by id; `None`: in order).
    pub id: Option<u64>,
    /// `response_code`.
    pub code: Option<i64>,
    /// `response_status`.
    pub status: Option<Status>,
    /// `request_type`.
    pub request_type: Option<&'a str>,
    /// `request_domain`.
    pub request_domain: Option<&'a str>,
    /// `request_resource`.
    pub request_resource: Option<&'a str>,
    /// `endpoint`.
    pub endpoint: Option<&'a str>,
    /// `response_exception`.
    pub response_exception: Option<&'a str>,
    /// `response_result`.
    pub response_result: Option<&'a str>,
}

impl<'a> Msg<'a> {
    /// A message of `kind` spanning `consumed` bytes, no fields.
    pub fn new(kind: Kind, consumed: usize) -> Msg<'a> {
        Msg {
            consumed,
            kind,
            id: None,
            code: None,
            status: None,
            request_type: None,
            request_domain: None,
            request_resource: None,
            endpoint: None,
            response_exception: None,
            response_result: None,
        }
    }
    /// A request.
    pub fn request(consumed: usize) -> Msg<'a> {
        Msg::new(Kind::Request, consumed)
    }
    /// A response.
    pub fn response(consumed: usize) -> Msg<'a> {
        Msg::new(Kind::Response, consumed)
    }
    /// Set the correlation id.
    pub fn id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }
    /// Set `response_code`.
    pub fn code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }
    /// Set `response_status`.
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }
    /// Set `request_type`.
    pub fn request_type(mut self, s: &'a str) -> Self {
        self.request_type = Some(s);
        self
    }
    /// Set `request_domain`.
    pub fn request_domain(mut self, s: &'a str) -> Self {
        self.request_domain = Some(s);
        self
    }
    /// Set `request_resource`.
    pub fn request_resource(mut self, s: &'a str) -> Self {
        self.request_resource = Some(s);
        self
    }
    /// Set `endpoint`.
    pub fn endpoint(mut self, s: &'a str) -> Self {
        self.endpoint = Some(s);
        self
    }
    /// Set `response_exception`.
    pub fn response_exception(mut self, s: &'a str) -> Self {
        self.response_exception = Some(s);
        self
    }
    /// Set `response_result`.
    pub fn response_result(mut self, s: &'a str) -> Self {
        self.response_result = Some(s);
        self
    }
}

/// The outcome of one [`Parser::parse`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a whole message yet: the host calls again with more bytes appended.
    NeedMore,
    /// These bytes are not this protocol (counted as a parse error by the host).
    NotMine,
    /// Consume this many bytes without a message (resynchronising after a gap).
    Skip(usize),
    /// One message.
    Message(Msg<'a>),
}

/// A private protocol parser. Stateless: everything it needs is in the bytes it is given.
pub trait Parser {
    /// Verdict on the first payload of a flow (at most 4096 bytes).
    fn probe(payload: &[u8], dir: Direction) -> Verdict;
    /// Parse one message at the start of `data`. `after_gap`: the bytes follow a capture gap and may start
    /// inside a message; skip to a message boundary ([`Parsed::Skip`]) and never report garbage.
    fn parse<'a>(data: &'a [u8], dir: Direction, after_gap: bool) -> Parsed<'a>;
}

/// Which HTTP flavour a hooked message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProtocol {
    /// HTTP/1.x.
    Http1,
    /// HTTP/2.
    Http2,
    /// gRPC over HTTP/2.
    Grpc,
}

/// An HTTP message as a hook sees it (borrowed from the host's input record).
#[derive(Debug, Clone, Copy)]
pub struct HttpMessage<'a> {
    /// HTTP/1, HTTP/2 or gRPC.
    pub protocol: HttpProtocol,
    /// Which way it travelled.
    pub direction: Direction,
    /// True for a request, false for a response.
    pub is_request: bool,
    /// Method (requests).
    pub method: Option<&'a str>,
    /// Path with query (requests).
    pub path: Option<&'a str>,
    /// Host / authority (requests).
    pub host: Option<&'a str>,
    /// The endpoint the parser derived (requests).
    pub endpoint: Option<&'a str>,
    /// Status code (responses; gRPC: `grpc-status`).
    pub status: Option<i64>,
    /// Client and server ports.
    pub ports: (u16, u16),
    /// Client and server addresses (IPv4 in the first 4 bytes unless `ipv6`).
    pub ips: ([u8; 16], [u8; 16]),
    /// True when `ips` are IPv6.
    pub ipv6: bool,
    /// Capture time of the first byte, µs since the Unix epoch.
    pub time_us: u64,
    /// The first bytes of the message as on the wire.
    pub bytes: &'a [u8],
    /// True when `bytes` is not the whole message.
    pub truncated: bool,
    header_table: &'a [u8],
    record: &'a [u8],
    base: u32,
}

/// Read a little-endian u32 at `at` (0 when out of range).
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// The bytes at guest address `ptr`, `len` long, inside `record` (which starts at address `base`).
fn span(record: &[u8], base: u32, ptr: u32, len: u32) -> Option<&[u8]> {
    let off = ptr.checked_sub(base)? as usize;
    record.get(off..off.checked_add(len as usize)?)
}

impl<'a> HttpMessage<'a> {
    /// Decode a hook input record that starts at guest address `base`. `None` when it is malformed.
    pub fn decode(record: &'a [u8], base: u32) -> Option<HttpMessage<'a>> {
        if record.len() < HOOK_INPUT_LEN {
            return None;
        }
        let s = |i: usize| -> Option<&'a str> {
            let b = span(record, base, le32(record, i), le32(record, i + 4))?;
            if b.is_empty() {
                None
            } else {
                std::str::from_utf8(b).ok()
            }
        };
        let flags = record[7];
        let count = le32(record, 12);
        let header_table = span(record, base, le32(record, 96), count.checked_mul(16)?)?;
        let mut ips = ([0u8; 16], [0u8; 16]);
        ips.0.copy_from_slice(&record[16..32]);
        ips.1.copy_from_slice(&record[32..48]);
        Some(HttpMessage {
            protocol: match record[4] {
                1 => HttpProtocol::Http1,
                2 => HttpProtocol::Http2,
                3 => HttpProtocol::Grpc,
                _ => return None,
            },
            direction: if record[5] == 0 {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            },
            is_request: record[6] == 0,
            method: s(64),
            path: s(72),
            host: s(80),
            endpoint: s(88),
            status: (flags & 4 != 0)
                .then(|| i64::from_le_bytes(record[48..56].try_into().unwrap_or_default())),
            ports: (
                u16::from_le_bytes([record[8], record[9]]),
                u16::from_le_bytes([record[10], record[11]]),
            ),
            ips,
            ipv6: flags & 2 != 0,
            time_us: u64::from_le_bytes(record[56..64].try_into().unwrap_or_default()),
            bytes: span(record, base, le32(record, 104), le32(record, 108))?,
            truncated: flags & 1 != 0,
            header_table,
            record,
            base,
        })
    }

    /// The headers (HTTP/1 only; empty for HTTP/2 and gRPC, whose header blocks are HPACK-coded), in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.header_table.chunks_exact(16).filter_map(|e| {
            let name = span(self.record, self.base, le32(e, 0), le32(e, 4))?;
            let value = span(self.record, self.base, le32(e, 8), le32(e, 12))?;
            Some((name, value))
        })
    }

    /// The first header named `name` (ASCII case-insensitive), as text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// What a hook wants changed on the message's log. Empty (the default): nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookActions {
    /// New `endpoint` (an empty string clears it).
    pub endpoint: Option<String>,
    /// New `request_type` (an empty string clears it).
    pub request_type: Option<String>,
    /// New `response_status`.
    pub response_status: Option<Status>,
    /// New `response_code`.
    pub response_code: Option<i64>,
    /// New `response_exception` (an empty string clears it).
    pub response_exception: Option<String>,
    /// Tags to add to the log (at most 16; keys 1..=128 bytes).
    pub tags: Vec<(String, String)>,
}

impl HookActions {
    /// True when nothing is asked.
    pub fn is_empty(&self) -> bool {
        *self == HookActions::default()
    }

    /// Add a tag.
    pub fn tag(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.tags.push((key.into(), value.into()));
    }
}

/// HTTP request/response hooks (ABI v2).
pub trait HttpHook {
    /// Which protocols the hooks want ([`HTTP1`] | [`HTTP2`] | [`GRPC`] bits).
    const PROTOCOLS: i32 = HTTP1 | HTTP2 | GRPC;
    /// Called on each HTTP request.
    fn on_request(_msg: &HttpMessage<'_>, _out: &mut HookActions) {}
    /// Called on each HTTP response.
    fn on_response(_msg: &HttpMessage<'_>, _out: &mut HookActions) {}
}

/// Encode `msg` as a result record; `addr` gives the guest address of a string's bytes.
pub fn encode_msg(msg: &Msg<'_>, addr: impl Fn(&[u8]) -> u32, out: &mut [u8; RESULT_RECORD_LEN]) {
    *out = [0; RESULT_RECORD_LEN];
    out[0..4].copy_from_slice(&(msg.consumed as u32).to_le_bytes());
    out[4] = match msg.kind {
        Kind::Request => 0,
        Kind::Response => 1,
        Kind::OneWay => 2,
        Kind::Event => 3,
    };
    out[5] = msg.status.map_or(0, Status::code);
    out[6] = u8::from(msg.id.is_some()) | (u8::from(msg.code.is_some()) << 1);
    out[8..16].copy_from_slice(&msg.id.unwrap_or(0).to_le_bytes());
    out[16..24].copy_from_slice(&msg.code.unwrap_or(0).to_le_bytes());
    let fields = [
        msg.request_type,
        msg.request_domain,
        msg.request_resource,
        msg.endpoint,
        msg.response_exception,
        msg.response_result,
    ];
    for (i, f) in fields.iter().enumerate() {
        if let Some(s) = f.filter(|s| !s.is_empty()) {
            let at = 24 + 8 * i;
            out[at..at + 4].copy_from_slice(&addr(s.as_bytes()).to_le_bytes());
            out[at + 4..at + 8].copy_from_slice(&(s.len() as u32).to_le_bytes());
        }
    }
}

/// Encode a skip of `n` bytes as a result record.
pub fn encode_skip(n: usize, out: &mut [u8; RESULT_RECORD_LEN]) {
    *out = [0; RESULT_RECORD_LEN];
    out[0..4].copy_from_slice(&(n as u32).to_le_bytes());
    out[4] = 4;
}

/// Encode hook actions as a result record plus its tag table; `addr` gives guest addresses.
pub fn encode_actions(
    a: &HookActions,
    table: &mut Vec<[u32; 4]>,
    addr: impl Fn(&[u8]) -> u32,
    out: &mut [u8; HOOK_RESULT_LEN],
) {
    *out = [0; HOOK_RESULT_LEN];
    let mut flags = 0u8;
    let put = |out: &mut [u8; HOOK_RESULT_LEN], at: usize, s: &str| {
        out[at..at + 4].copy_from_slice(&addr(s.as_bytes()).to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&(s.len() as u32).to_le_bytes());
    };
    if let Some(s) = &a.endpoint {
        flags |= 1;
        put(out, 24, s);
    }
    if let Some(s) = &a.request_type {
        flags |= 2;
        put(out, 32, s);
    }
    if let Some(st) = a.response_status {
        flags |= 4;
        out[1] = st.code();
    }
    if let Some(c) = a.response_code {
        flags |= 8;
        out[8..16].copy_from_slice(&c.to_le_bytes());
    }
    if let Some(s) = &a.response_exception {
        flags |= 16;
        put(out, 40, s);
    }
    out[0] = flags;
    table.clear();
    for (k, v) in &a.tags {
        table.push([
            addr(k.as_bytes()),
            k.len() as u32,
            addr(v.as_bytes()),
            v.len() as u32,
        ]);
    }
    out[4..8].copy_from_slice(&(table.len() as u32).to_le_bytes());
}

/// The runtime behind [`export_plugin!`]: the exported functions' bodies. Not for direct use.
#[doc(hidden)]
pub mod rt {
    use super::*;
    use std::cell::UnsafeCell;

    struct State {
        input: Vec<u8>,
        record: [u8; RESULT_RECORD_LEN],
        hook_record: [u8; HOOK_RESULT_LEN],
        actions: HookActions,
        table: Vec<[u32; 4]>,
    }

    struct Global(UnsafeCell<State>);
    // SAFETY: a wasm32 guest runs one thread and the host serialises calls into it.
    unsafe impl Sync for Global {}

    static STATE: Global = Global(UnsafeCell::new(State {
        input: Vec::new(),
        record: [0; RESULT_RECORD_LEN],
        hook_record: [0; HOOK_RESULT_LEN],
        actions: HookActions {
            endpoint: None,
            request_type: None,
            response_status: None,
            response_code: None,
            response_exception: None,
            tags: Vec::new(),
        },
        table: Vec::new(),
    }));

    #[allow(clippy::mut_from_ref)]
    fn state() -> &'static mut State {
        // SAFETY: single-threaded guest, and each exported function takes this reference once and drops it
        // before returning; no reference escapes a call.
        unsafe { &mut *STATE.0.get() }
    }

    fn addr(b: &[u8]) -> u32 {
        b.as_ptr() as usize as u32
    }

    /// The input bytes at guest address `ptr`, `len` long, if they lie in the `fathom_alloc` buffer.
    fn input(st: &State, ptr: i32, len: i32) -> Option<(&[u8], u32)> {
        let base = addr(&st.input);
        let off = (ptr as u32).checked_sub(base)? as usize;
        let data = st.input.get(off..off.checked_add(len as u32 as usize)?)?;
        Some((data, base + off as u32))
    }

    fn dir(d: i32) -> Direction {
        if d & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }

    /// `fathom_abi_version`.
    pub fn abi_version() -> i32 {
        ABI_VERSION
    }

    /// `fathom_alloc`: one buffer, grown as needed, valid until the next call.
    pub fn alloc(len: i32) -> i32 {
        let st = state();
        let len = len.max(0) as usize;
        if st.input.len() < len {
            st.input.resize(len, 0);
        }
        addr(&st.input) as i32
    }

    /// `fathom_probe`.
    pub fn probe<P: Parser>(ptr: i32, len: i32, d: i32) -> i32 {
        let st = state();
        match input(st, ptr, len).map(|(data, _)| P::probe(data, dir(d))) {
            Some(Verdict::Yes) => 2,
            Some(Verdict::Maybe) => 1,
            _ => 0,
        }
    }

    /// `fathom_parse`.
    pub fn parse<P: Parser>(ptr: i32, len: i32, d: i32) -> i32 {
        let st = state();
        let Some((data, _)) = input(st, ptr, len) else {
            return -1;
        };
        let mut record = [0u8; RESULT_RECORD_LEN];
        match P::parse(data, dir(d), d & 2 != 0) {
            Parsed::NeedMore => return 0,
            Parsed::NotMine => return -1,
            Parsed::Skip(n) => encode_skip(n, &mut record),
            Parsed::Message(m) => encode_msg(&m, addr, &mut record),
        }
        st.record = record;
        addr(&st.record) as i32
    }

    /// `fathom_on_http_request` / `fathom_on_http_response`.
    pub fn hook<H: HttpHook>(ptr: i32, len: i32, request: bool) -> i32 {
        let st = state();
        let mut actions = std::mem::take(&mut st.actions);
        actions.endpoint = None;
        actions.request_type = None;
        actions.response_status = None;
        actions.response_code = None;
        actions.response_exception = None;
        actions.tags.clear();
        {
            let Some((rec, base)) = input(st, ptr, len) else {
                return 0;
            };
            let Some(msg) = HttpMessage::decode(rec, base) else {
                return 0;
            };
            if request {
                H::on_request(&msg, &mut actions);
            } else {
                H::on_response(&msg, &mut actions);
            }
        }
        if actions.is_empty() {
            st.actions = actions;
            return 0;
        }
        let mut record = [0u8; HOOK_RESULT_LEN];
        encode_actions(&actions, &mut st.table, addr, &mut record);
        let table_addr = st.table.as_ptr() as usize as u32;
        record[16..20].copy_from_slice(&table_addr.to_le_bytes());
        st.actions = actions;
        st.hook_record = record;
        addr(&st.hook_record) as i32
    }
}

/// Export the Fathom plugin ABI (version 2) for a [`Parser`], an [`HttpHook`], or both:
/// `export_plugin!(parser: MyParser);`, `export_plugin!(hooks: MyHook);`,
/// `export_plugin!(parser: MyParser, hooks: MyHook);`. Use it once, in a `cdylib` crate built for
/// `wasm32-unknown-unknown`.
#[macro_export]
macro_rules! export_plugin {
    (parser: $p:ty) => {
        $crate::export_plugin!(@common);
        $crate::export_plugin!(@parser $p);
    };
    (hooks: $h:ty) => {
        $crate::export_plugin!(@common);
        $crate::export_plugin!(@hooks $h);
    };
    (parser: $p:ty, hooks: $h:ty) => {
        $crate::export_plugin!(@common);
        $crate::export_plugin!(@parser $p);
        $crate::export_plugin!(@hooks $h);
    };
    (@common) => {
        /// Fathom plugin ABI version.
        #[no_mangle]
        pub extern "C" fn fathom_abi_version() -> i32 {
            $crate::rt::abi_version()
        }
        /// Input buffer for the host.
        #[no_mangle]
        pub extern "C" fn fathom_alloc(len: i32) -> i32 {
            $crate::rt::alloc(len)
        }
    };
    (@parser $p:ty) => {
        /// Probe export.
        #[no_mangle]
        pub extern "C" fn fathom_probe(ptr: i32, len: i32, dir: i32) -> i32 {
            $crate::rt::probe::<$p>(ptr, len, dir)
        }
        /// Parse export.
        #[no_mangle]
        pub extern "C" fn fathom_parse(ptr: i32, len: i32, dir: i32) -> i32 {
            $crate::rt::parse::<$p>(ptr, len, dir)
        }
    };
    (@hooks $h:ty) => {
        /// Which protocols the hooks want.
        #[no_mangle]
        pub extern "C" fn fathom_hook_protocols() -> i32 {
            <$h as $crate::HttpHook>::PROTOCOLS
        }
        /// Request hook export.
        #[no_mangle]
        pub extern "C" fn fathom_on_http_request(ptr: i32, len: i32) -> i32 {
            $crate::rt::hook::<$h>(ptr, len, true)
        }
        /// Response hook export.
        #[no_mangle]
        pub extern "C" fn fathom_on_http_response(ptr: i32, len: i32) -> i32 {
            $crate::rt::hook::<$h>(ptr, len, false)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_record_layout() {
        let input = b"xxGetUser";
        let base = 0x1000u32;
        let addr = |s: &[u8]| base + (s.as_ptr() as usize - input.as_ptr() as usize) as u32;
        let msg = Msg::response(11)
            .id(7)
            .code(2)
            .status(Status::ServerError)
            .request_type(std::str::from_utf8(&input[2..]).unwrap());
        let mut rec = [0u8; RESULT_RECORD_LEN];
        encode_msg(&msg, addr, &mut rec);
        assert_eq!(le32(&rec, 0), 11);
        assert_eq!(rec[4..8], [1, 3, 3, 0]);
        assert_eq!(u64::from_le_bytes(rec[8..16].try_into().unwrap()), 7);
        assert_eq!(i64::from_le_bytes(rec[16..24].try_into().unwrap()), 2);
        assert_eq!((le32(&rec, 24), le32(&rec, 28)), (0x1002, 7));
        assert!(
            rec[32..72].iter().all(|&b| b == 0),
            "absent fields are (0, 0)"
        );
        encode_skip(3, &mut rec);
        assert_eq!((le32(&rec, 0), rec[4]), (3, 4));
    }

    /// A hook input record as the host lays it out (see fathom-plugin-wasm's hook.rs and docs/plugins.md).
    fn input_record(base: u32) -> Vec<u8> {
        let mut r = vec![0u8; HOOK_INPUT_LEN];
        r[4] = 1;
        r[6] = 0;
        r[7] = 1 | 4;
        r[8..10].copy_from_slice(&40000u16.to_le_bytes());
        r[10..12].copy_from_slice(&80u16.to_le_bytes());
        r[12..16].copy_from_slice(&1u32.to_le_bytes());
        r[16..20].copy_from_slice(&[10, 0, 0, 1]);
        r[48..56].copy_from_slice(&200i64.to_le_bytes());
        r[56..64].copy_from_slice(&99u64.to_le_bytes());
        let put = |r: &mut Vec<u8>, at: usize, s: &[u8]| {
            let p = base + r.len() as u32;
            r.extend_from_slice(s);
            r[at..at + 4].copy_from_slice(&p.to_le_bytes());
            r[at + 4..at + 8].copy_from_slice(&(s.len() as u32).to_le_bytes());
        };
        put(&mut r, 64, b"GET");
        put(&mut r, 72, b"/a/b?c");
        let table = r.len();
        r.extend_from_slice(&[0; 16]);
        r[96..100].copy_from_slice(&(base + table as u32).to_le_bytes());
        put(&mut r, table, b"User-Agent");
        put(&mut r, table + 8, b"curl/8");
        put(&mut r, 104, b"GET /a/b?c HTTP/1.1\r\n");
        let total = r.len() as u32;
        r[0..4].copy_from_slice(&total.to_le_bytes());
        r
    }

    #[test]
    fn hook_input_decodes() {
        let rec = input_record(0x2000);
        let m = HttpMessage::decode(&rec, 0x2000).unwrap();
        assert_eq!(m.protocol, HttpProtocol::Http1);
        assert!(m.is_request && m.truncated && !m.ipv6);
        assert_eq!(m.method, Some("GET"));
        assert_eq!(m.path, Some("/a/b?c"));
        assert_eq!(m.host, None);
        assert_eq!(m.status, Some(200));
        assert_eq!(m.ports, (40000, 80));
        assert_eq!(m.ips.0[..4], [10, 0, 0, 1]);
        assert_eq!(m.time_us, 99);
        assert_eq!(m.header("user-agent"), Some("curl/8"));
        assert_eq!(m.bytes, b"GET /a/b?c HTTP/1.1\r\n");
        // Addresses outside the record are refused, not followed.
        assert!(HttpMessage::decode(&rec, 0x3000).is_none());
        assert!(HttpMessage::decode(&rec[..50], 0x2000).is_none());
    }

    #[test]
    fn hook_actions_layout() {
        let mut a = HookActions {
            endpoint: Some("/a".into()),
            response_status: Some(Status::ClientError),
            response_code: Some(-3),
            ..HookActions::default()
        };
        a.tag("k", "v");
        let mut table = Vec::new();
        let mut rec = [0u8; HOOK_RESULT_LEN];
        encode_actions(&a, &mut table, |s| s.len() as u32 * 100, &mut rec);
        assert_eq!(rec[0], 1 | 4 | 8);
        assert_eq!(rec[1], 2);
        assert_eq!(le32(&rec, 4), 1);
        assert_eq!(i64::from_le_bytes(rec[8..16].try_into().unwrap()), -3);
        assert_eq!((le32(&rec, 24), le32(&rec, 28)), (200, 2));
        assert_eq!(table, vec![[100, 1, 100, 1]]);
        assert!(!a.is_empty() && HookActions::default().is_empty());
    }
}
