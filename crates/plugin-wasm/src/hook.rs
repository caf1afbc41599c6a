//! HTTP hooks (ABI v2): a [`WasmPlugin`] that exports `fathom_on_http_request` / `fathom_on_http_response` is
//! a [`MessageHook`] for HTTP/1, HTTP/2 and gRPC messages.
//!
//! The host writes one input record (layout in `docs/plugins.md`: a fixed [`HOOK_INPUT_LEN`]-byte header, then
//! the strings, the header table and the message bytes it points to) into a `fathom_alloc` buffer, calls the
//! hook with `(ptr, len)`, and reads back either `0` (no change) or the address of a [`HOOK_RESULT_LEN`]-byte
//! result record: field rewrites and tags. The whole result is validated before any of it is applied; a bad one
//! is a failed call like a bad parse result (counted, and the plugin disabled after too many), and the message
//! keeps the fields it had. HTTP/1 headers are parsed (with httparse) from the message's first bytes; HTTP/2
//! and gRPC header blocks are HPACK-coded, so their hooks get the decoded method, path, authority and status
//! but no header table.

use crate::host::{Failure, Sandbox};
use crate::{
    WasmPlugin, HOOK_GRPC, HOOK_HTTP1, HOOK_HTTP2, HOOK_INPUT_LEN, HOOK_RESULT_LEN, MAX_FIELD_LEN,
    MAX_HOOK_BYTES, MAX_HOOK_HEADERS, MAX_HOOK_TAGS, MAX_TAG_KEY_LEN,
};
use fathom_model::{Direction, L7Protocol, ResponseStatus};
use fathom_protocols::{HookInput, LogInfo, MessageHook, MessageKind};
use std::net::IpAddr;
use std::sync::atomic::Ordering;

fn protocol_bit(p: &L7Protocol) -> (i32, u8) {
    match p {
        L7Protocol::Http1 => (HOOK_HTTP1, 1),
        L7Protocol::Http2 => (HOOK_HTTP2, 2),
        L7Protocol::Grpc => (HOOK_GRPC, 3),
        _ => (0, 0),
    }
}

impl MessageHook for WasmPlugin {
    fn name(&self) -> &str {
        WasmPlugin::name(self)
    }

    fn applies_to(&self, protocol: &L7Protocol) -> bool {
        self.hooks.mask & protocol_bit(protocol).0 != 0
    }

    fn on_message(&self, input: &HookInput<'_>, info: &mut LogInfo) {
        let (bit, code) = protocol_bit(input.protocol);
        if self.hooks.mask & bit == 0 || self.shared.disabled() {
            return;
        }
        let (request, name) = match input.kind {
            MessageKind::Request if self.hooks.request => (true, "fathom_on_http_request"),
            MessageKind::Response if self.hooks.response => (false, "fathom_on_http_response"),
            _ => return,
        };
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let record = HookRecord::new(input, info, code);
        let result = {
            let mut guard = self.shared.lock();
            call_hook(&mut guard, request, &record)
        };
        match result {
            Ok(Some(edit)) => edit.apply(info),
            Ok(None) => {}
            Err(f) => self.shared.fail(name, f),
        }
    }
}

/// The pieces of one hook input record, before it is laid out at its guest address.
struct HookRecord<'a> {
    fixed: [u8; HOOK_INPUT_LEN],
    strings: [&'a [u8]; 4],
    headers: Vec<(&'a [u8], &'a [u8])>,
    bytes: &'a [u8],
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn ip_bytes(ip: IpAddr) -> ([u8; 16], bool) {
    match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (b, false)
        }
        IpAddr::V6(v6) => (v6.octets(), true),
    }
}

fn cap(s: Option<&str>) -> &[u8] {
    let b = s.map(str::as_bytes).unwrap_or_default();
    &b[..b.len().min(MAX_FIELD_LEN)]
}

/// HTTP/1 headers from the head at the start of `bytes` (none when the head is not whole there).
fn http1_headers(bytes: &[u8], request: bool) -> Vec<(&[u8], &[u8])> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HOOK_HEADERS];
    let headers: &[httparse::Header<'_>] = if request {
        let mut req = httparse::Request::new(&mut storage);
        match req.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => req.headers,
            _ => return Vec::new(),
        }
    } else {
        let mut resp = httparse::Response::new(&mut storage);
        match resp.parse(bytes) {
            Ok(httparse::Status::Complete(_)) => resp.headers,
            _ => return Vec::new(),
        }
    };
    headers
        .iter()
        .map(|h| (h.name.as_bytes(), h.value))
        .collect()
}

impl<'a> HookRecord<'a> {
    fn new(input: &'a HookInput<'a>, info: &'a LogInfo, protocol: u8) -> HookRecord<'a> {
        let bytes = &input.bytes[..input.bytes.len().min(MAX_HOOK_BYTES)];
        let request = input.kind == MessageKind::Request;
        let headers = if protocol == 1 {
            http1_headers(bytes, request)
        } else {
            Vec::new()
        };
        let mut f = [0u8; HOOK_INPUT_LEN];
        f[4] = protocol;
        f[5] = match input.direction {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        };
        f[6] = if request { 0 } else { 1 };
        let (src, v6) = ip_bytes(input.flow.ip_src);
        let (dst, _) = ip_bytes(input.flow.ip_dst);
        let mut flags = 0u8;
        if (bytes.len() as u64) < input.message_len {
            flags |= 1;
        }
        if v6 {
            flags |= 2;
        }
        if let Some(code) = info.response_code {
            flags |= 4;
            f[48..56].copy_from_slice(&code.to_le_bytes());
        }
        f[7] = flags;
        f[8..10].copy_from_slice(&input.flow.port_src.to_le_bytes());
        f[10..12].copy_from_slice(&input.flow.port_dst.to_le_bytes());
        put_u32(&mut f, 12, headers.len() as u32);
        f[16..32].copy_from_slice(&src);
        f[32..48].copy_from_slice(&dst);
        f[56..64].copy_from_slice(&input.time_us.to_le_bytes());
        HookRecord {
            fixed: f,
            strings: [
                cap(info.request_type.as_deref()),
                cap(info.request_resource.as_deref()),
                cap(info.request_domain.as_deref()),
                cap(info.endpoint.as_deref()),
            ],
            headers,
            bytes,
        }
    }

    /// Total length: fixed part, header table, strings, header names and values, message bytes.
    fn len(&self) -> usize {
        HOOK_INPUT_LEN
            + 16 * self.headers.len()
            + self.strings.iter().map(|s| s.len()).sum::<usize>()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
            + self.bytes.len()
    }

    /// The record laid out at guest address `base`, into `out`.
    fn layout(&self, base: u32, out: &mut Vec<u8>) {
        let total = self.len();
        out.clear();
        out.extend_from_slice(&self.fixed);
        put_u32(out, 0, total as u32);
        let table_at = out.len();
        out.resize(table_at + 16 * self.headers.len(), 0);
        put_u32(out, 96, base + table_at as u32);
        let push = |out: &mut Vec<u8>, s: &[u8]| -> (u32, u32) {
            let at = base + out.len() as u32;
            out.extend_from_slice(s);
            (at, s.len() as u32)
        };
        for (i, s) in self.strings.iter().enumerate() {
            let (p, l) = push(out, s);
            put_u32(out, 64 + 8 * i, p);
            put_u32(out, 68 + 8 * i, l);
        }
        for (i, (n, v)) in self.headers.iter().enumerate() {
            let (np, nl) = push(out, n);
            let (vp, vl) = push(out, v);
            let at = table_at + 16 * i;
            put_u32(out, at, np);
            put_u32(out, at + 4, nl);
            put_u32(out, at + 8, vp);
            put_u32(out, at + 12, vl);
        }
        let (p, l) = push(out, self.bytes);
        put_u32(out, 104, p);
        put_u32(out, 108, l);
    }
}

/// What a hook asked for, validated.
#[derive(Debug, Default)]
struct Edit {
    endpoint: Option<Option<String>>,
    request_type: Option<Option<String>>,
    response_exception: Option<Option<String>>,
    response_status: Option<ResponseStatus>,
    response_code: Option<i64>,
    tags: Vec<(String, String)>,
}

impl Edit {
    fn apply(self, info: &mut LogInfo) {
        if let Some(v) = self.endpoint {
            info.endpoint = v;
        }
        if let Some(v) = self.request_type {
            info.request_type = v;
        }
        if let Some(v) = self.response_exception {
            info.response_exception = v;
        }
        if let Some(s) = self.response_status {
            info.response_status = Some(s);
        }
        if let Some(c) = self.response_code {
            info.response_code = Some(c);
        }
        info.tags.extend(self.tags);
    }
}

fn call_hook(
    sandbox: &mut Sandbox,
    request: bool,
    record: &HookRecord<'_>,
) -> Result<Option<Edit>, Failure> {
    let func = if request {
        sandbox.on_request.clone()
    } else {
        sandbox.on_response.clone()
    };
    let Some(func) = func else {
        return Ok(None);
    };
    let len = record.len();
    let base = sandbox.alloc(len)?;
    let mut bytes = std::mem::take(&mut sandbox.scratch);
    record.layout(base, &mut bytes);
    let written = sandbox
        .memory
        .write(&mut sandbox.store, base as usize, &bytes);
    sandbox.scratch = bytes;
    written.map_err(|_| Failure::BadResult("fathom_alloc returned an out-of-bounds buffer"))?;
    sandbox.refuel()?;
    let at = func.call(&mut sandbox.store, (base as i32, len as i32))?;
    if at == 0 {
        return Ok(None);
    }
    if at < 0 {
        return Err(Failure::BadResult("hook returned a negative address"));
    }
    read_edit(sandbox.memory.data(&sandbox.store), at as u32).map(Some)
}

/// Read and validate a hook result record at `at`.
fn read_edit(mem: &[u8], at: u32) -> Result<Edit, Failure> {
    let rec = (at as usize)
        .checked_add(HOOK_RESULT_LEN)
        .and_then(|end| mem.get(at as usize..end))
        .ok_or(Failure::BadResult("hook result record out of bounds"))?;
    let u32_at = |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
    let flags = rec[0];
    if flags & !0x1f != 0 {
        return Err(Failure::BadResult("unknown hook result flags"));
    }
    let string = |i: usize, max: usize| -> Result<Option<String>, Failure> {
        let (ptr, len) = (u32_at(i) as usize, u32_at(i + 4) as usize);
        if len == 0 {
            return Ok(None);
        }
        if len > max {
            return Err(Failure::BadResult("hook string too long"));
        }
        let b = ptr
            .checked_add(len)
            .and_then(|end| mem.get(ptr..end))
            .ok_or(Failure::BadResult("hook string out of bounds"))?;
        Ok(Some(String::from_utf8_lossy(b).into_owned()))
    };
    let mut edit = Edit::default();
    if flags & 1 != 0 {
        edit.endpoint = Some(string(24, MAX_FIELD_LEN)?);
    }
    if flags & 2 != 0 {
        edit.request_type = Some(string(32, MAX_FIELD_LEN)?);
    }
    if flags & 4 != 0 {
        edit.response_status = Some(match rec[1] {
            1 => ResponseStatus::Ok,
            2 => ResponseStatus::ClientError,
            3 => ResponseStatus::ServerError,
            _ => return Err(Failure::BadResult("unknown hook response status")),
        });
    }
    if flags & 8 != 0 {
        edit.response_code = Some(i64::from_le_bytes(
            rec[8..16].try_into().unwrap_or_default(),
        ));
    }
    if flags & 16 != 0 {
        edit.response_exception = Some(string(40, MAX_FIELD_LEN)?);
    }
    let count = u32_at(4) as usize;
    if count > MAX_HOOK_TAGS {
        return Err(Failure::BadResult("too many hook tags"));
    }
    let table = u32_at(16) as usize;
    for i in 0..count {
        let entry = table
            .checked_add(16 * (i + 1))
            .and_then(|end| mem.get(table + 16 * i..end))
            .ok_or(Failure::BadResult("hook tag table out of bounds"))?;
        let word = |j: usize| {
            u32::from_le_bytes([entry[j], entry[j + 1], entry[j + 2], entry[j + 3]]) as usize
        };
        let get = |ptr: usize, len: usize, max: usize| -> Result<String, Failure> {
            if len > max {
                return Err(Failure::BadResult("hook tag too long"));
            }
            let b = ptr
                .checked_add(len)
                .and_then(|end| mem.get(ptr..end))
                .ok_or(Failure::BadResult("hook tag out of bounds"))?;
            Ok(String::from_utf8_lossy(b).into_owned())
        };
        let key = get(word(0), word(4), MAX_TAG_KEY_LEN)?;
        if key.is_empty() {
            return Err(Failure::BadResult("empty hook tag key"));
        }
        let value = get(word(8), word(12), MAX_FIELD_LEN)?;
        edit.tags.push((key, value));
    }
    Ok(edit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_a_whole_head_only() {
        let h = http1_headers(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\nbody", true);
        assert_eq!(h, vec![(&b"Host"[..], &b"a"[..]), (&b"X-A"[..], &b"b"[..])]);
        assert!(http1_headers(b"GET / HTTP/1.1\r\nHost: a\r\n", true).is_empty());
        let h = http1_headers(b"HTTP/1.1 200 OK\r\nServer: s\r\n\r\n", false);
        assert_eq!(h, vec![(&b"Server"[..], &b"s"[..])]);
    }

    #[test]
    fn result_record_validation() {
        let mut mem = vec![0u8; 256];
        // endpoint "abc" at 200, one tag "k"="v" (table at 160, strings at 210/211).
        mem[0] = 1 | 4;
        mem[1] = 2;
        mem[4] = 1;
        mem[16..20].copy_from_slice(&160u32.to_le_bytes());
        mem[24..28].copy_from_slice(&200u32.to_le_bytes());
        mem[28..32].copy_from_slice(&3u32.to_le_bytes());
        mem[200..203].copy_from_slice(b"abc");
        mem[210] = b'k';
        mem[211] = b'v';
        for (i, v) in [210u32, 1, 211, 1].iter().enumerate() {
            mem[160 + 4 * i..164 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let e = read_edit(&mem, 0).unwrap();
        assert_eq!(e.endpoint, Some(Some("abc".into())));
        assert_eq!(e.response_status, Some(ResponseStatus::ClientError));
        assert_eq!(e.tags, vec![("k".into(), "v".into())]);
        let mut bad = mem.clone();
        bad[4] = 17;
        assert!(read_edit(&bad, 0).is_err());
        let mut bad = mem.clone();
        bad[0] = 0x20;
        assert!(read_edit(&bad, 0).is_err());
        let mut bad = mem.clone();
        bad[1] = 9;
        assert!(read_edit(&bad, 0).is_err());
        assert!(read_edit(&mem, 250).is_err());
    }
}
