//! FRPC (the invented protocol of the plugin-wasm tests) as a DeepFlow-ABI plugin, plus HTTP hooks.
//!
//! FRPC: "FRPC", u8 kind (0 request, 1 response), u32 id (BE), u16 body length (BE), body. A request body is
//! the method name; a response body is a status byte (0 ok, 1 client error, 2 server error) and an error
//! text.
//!
//! Like a `deepflow-wasm-go-sdk` plugin: `_start` sets up state, `get_hook_bitmap` points at a big-endian
//! u128, every export pulls its context with `vm_read_*` and pushes `u16`-framed results (`PB` + protobuf
//! `AppInfo`, or the legacy hand-packed record with the `legacy` feature) to `host_read_l7_protocol_info`.
//! It uses std on purpose: `println!` reaches WASI `fd_write`, `HashMap` seeds itself with `random_get`,
//! `SystemTime::now` calls `clock_time_get`.

use std::collections::HashMap;
use std::sync::Mutex;

#[link(wasm_import_module = "deepflow")]
extern "C" {
    fn wasm_log(b: *const u8, len: i32, level: i32);
    fn vm_read_ctx_base(b: *mut u8, len: i32) -> i32;
    fn vm_read_payload(b: *mut u8, len: i32) -> i32;
    fn vm_read_http_req_info(b: *mut u8, len: i32) -> i32;
    fn vm_read_http_resp_info(b: *mut u8, len: i32) -> i32;
    fn host_read_l7_protocol_info(b: *const u8, len: i32) -> i32;
    fn host_read_str_result(b: *const u8, len: i32) -> i32;
}

/// Methods of requests seen, by (flow id, request id): responses carry their request's method as an
/// attribute.
static METHODS: Mutex<Option<HashMap<(u64, u32), String>>> = Mutex::new(None);

/// bit 127 (on_http_req), bit 126 (on_http_resp), bit 0 (check/parse payload), big-endian.
static HOOK_BITMAP: [u8; 16] = [0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn log(s: &str) {
    unsafe { wasm_log(s.as_ptr(), s.len() as i32, 0) }
}

#[no_mangle]
pub extern "C" fn _start() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("deepflow-frpc plugin started (clock {now})");
    *METHODS.lock().unwrap() = Some(HashMap::new());
    log("deepflow-frpc ready");
}

#[no_mangle]
pub extern "C" fn get_hook_bitmap() -> *const u8 {
    HOOK_BITMAP.as_ptr()
}

/// The part of the base context this plugin uses.
struct Ctx {
    direction: u8,
    flow_id: u64,
    buf_size: usize,
}

fn read_ctx() -> Option<Ctx> {
    let mut b = [0u8; 1024];
    let n = unsafe { vm_read_ctx_base(b.as_mut_ptr(), b.len() as i32) };
    if n <= 0 {
        return None;
    }
    let b = &b[..n as usize];
    let mut off = match b.first()? {
        4 => 1 + 8 + 4,
        6 => 1 + 32 + 4,
        _ => return None,
    };
    off += 3; // l4, l7, ebpf type
    off += 8; // time
    let direction = *b.get(off)?;
    off += 1;
    let name_len = *b.get(off)? as usize;
    off += 1 + name_len;
    let flow_id = u64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?);
    off += 8;
    let buf_size = u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?) as usize;
    Some(Ctx {
        direction,
        flow_id,
        buf_size,
    })
}

fn read_payload(ctx: &Ctx) -> Option<Vec<u8>> {
    let mut p = vec![0u8; ctx.buf_size.max(1)];
    let n = unsafe { vm_read_payload(p.as_mut_ptr(), p.len() as i32) };
    if n < 0 {
        return None;
    }
    p.truncate(n as usize);
    Some(p)
}

/// One FRPC message at the start of `p`: (kind, id, body, total length).
fn frpc(p: &[u8]) -> Option<(u8, u32, &[u8], usize)> {
    if p.len() < 11 || &p[..4] != b"FRPC" || p[4] > 1 {
        return None;
    }
    let id = u32::from_be_bytes(p[5..9].try_into().ok()?);
    let blen = u16::from_be_bytes([p[9], p[10]]) as usize;
    let body = p.get(11..11 + blen)?;
    Some((p[4], id, body, 11 + blen))
}

#[no_mangle]
pub extern "C" fn check_payload() -> u8 {
    let Some(ctx) = read_ctx() else { return 0 };
    let Some(p) = read_payload(&ctx) else {
        return 0;
    };
    if p.len() < 5 || &p[..4] != b"FRPC" || p[4] > 1 {
        return 0;
    }
    let mut name = Vec::new();
    put_str(&mut name, "FRPC");
    if unsafe { host_read_str_result(name.as_ptr(), name.len() as i32) } == 0 {
        return 0;
    }
    1
}

// --- protobuf, by hand -------------------------------------------------------------------------------

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn pb_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn pb_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn pb_kv(out: &mut Vec<u8>, key: &str, val: &str) {
    let mut kv = Vec::new();
    pb_bytes(&mut kv, 1, key.as_bytes());
    pb_bytes(&mut kv, 2, val.as_bytes());
    pb_bytes(out, 31, &kv);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// What one message says.
#[derive(Default)]
struct Info<'a> {
    request: bool,
    len: u32,
    id: Option<u32>,
    method: &'a str,
    endpoint: Option<String>,
    status: Option<u8>,
    code: Option<i32>,
    exception: &'a str,
    attrs: Vec<(&'a str, String)>,
    protocol: &'a str,
}

/// Append one frame: `PB` + AppInfo.
#[cfg(not(feature = "legacy"))]
fn frame(out: &mut Vec<u8>, i: &Info<'_>) {
    let mut m = Vec::new();
    if i.len > 0 {
        pb_uint(&mut m, if i.request { 1 } else { 2 }, i.len as u64);
    }
    if let Some(id) = i.id {
        pb_uint(&mut m, 3, id as u64);
    }
    let mut sub = Vec::new();
    if i.request {
        if !i.method.is_empty() {
            pb_bytes(&mut sub, 2, i.method.as_bytes());
            pb_bytes(&mut sub, 4, i.method.as_bytes());
        }
        if let Some(e) = &i.endpoint {
            pb_bytes(&mut sub, 5, e.as_bytes());
        }
        pb_bytes(&mut m, 10, &sub);
    } else {
        if let Some(s) = i.status {
            pb_uint(&mut sub, 1, s as u64);
        }
        if let Some(c) = i.code {
            pb_uint(&mut sub, 2, c as i64 as u64);
        }
        if !i.exception.is_empty() {
            pb_bytes(&mut sub, 3, i.exception.as_bytes());
        }
        pb_bytes(&mut m, 11, &sub);
    }
    if !i.protocol.is_empty() {
        pb_bytes(&mut m, 13, i.protocol.as_bytes());
    }
    for (k, v) in &i.attrs {
        pb_kv(&mut m, k, v);
    }
    out.extend_from_slice(&((m.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(b"PB");
    out.extend_from_slice(&m);
}

/// Append one frame in the hand-packed encoding of older DeepFlow agents.
#[cfg(feature = "legacy")]
fn frame(out: &mut Vec<u8>, i: &Info<'_>) {
    let mut r = Vec::new();
    let (req_len, resp_len) = if i.request { (i.len, 0) } else { (0, i.len) };
    for l in [req_len, resp_len] {
        let v = if l > 0 { l | 1 << 31 } else { 0 };
        r.extend_from_slice(&v.to_be_bytes());
    }
    match i.id {
        Some(id) => {
            r.push(1);
            r.extend_from_slice(&id.to_be_bytes());
        }
        None => r.push(0),
    }
    if i.request {
        put_str(&mut r, i.method); // type
        put_str(&mut r, i.endpoint.as_deref().unwrap_or(i.method)); // endpoint
        put_str(&mut r, ""); // domain
        put_str(&mut r, i.method); // resource
    } else {
        r.push(i.status.unwrap_or(0));
        match i.code {
            Some(c) => {
                r.push(1);
                r.extend_from_slice(&c.to_be_bytes());
            }
            None => r.push(0),
        }
        put_str(&mut r, ""); // result
        put_str(&mut r, i.exception);
    }
    put_str(&mut r, i.protocol);
    r.push(0); // no merge
    r.push(0); // no trace
    r.push(if i.attrs.is_empty() { 0 } else { 1 });
    for (k, v) in &i.attrs {
        put_str(&mut r, k);
        put_str(&mut r, v);
    }
    r.push(0); // biz type
    out.extend_from_slice(&(r.len() as u16).to_be_bytes());
    out.extend_from_slice(&r);
}

fn send(frames: &[u8]) -> bool {
    !frames.is_empty()
        && unsafe { host_read_l7_protocol_info(frames.as_ptr(), frames.len() as i32) } == 1
}

#[no_mangle]
pub extern "C" fn parse_payload() -> bool {
    let Some(ctx) = read_ctx() else { return false };
    let Some(p) = read_payload(&ctx) else {
        return false;
    };
    // Only whole messages: a partial one makes the host offer the bytes again with more, so nothing is
    // recorded before the whole payload is known to parse.
    let mut off = 0;
    while off < p.len() {
        match frpc(&p[off..]) {
            Some((_, _, _, total)) => off += total,
            None => return false,
        }
    }
    let mut out = Vec::new();
    let mut off = 0;
    let mut guard = METHODS.lock().unwrap();
    let methods = guard.get_or_insert_with(HashMap::new);
    while off < p.len() {
        let Some((kind, id, body, total)) = frpc(&p[off..]) else {
            return false;
        };
        let info = if kind == 0 {
            let method = std::str::from_utf8(body).unwrap_or("");
            if methods.len() < 10_000 {
                methods.insert((ctx.flow_id, id), method.to_string());
            }
            Info {
                request: true,
                len: total as u32,
                id: Some(id),
                method,
                protocol: "FRPC",
                ..Info::default()
            }
        } else {
            let Some((&st, err)) = body.split_first() else {
                return false;
            };
            let status = match st {
                0 => 0, // RESP_OK
                1 => 4, // RESP_CLIENT_ERROR
                2 => 3, // RESP_SERVER_ERROR
                _ => return false,
            };
            let mut attrs = Vec::new();
            if let Some(m) = methods.remove(&(ctx.flow_id, id)) {
                attrs.push(("frpc.method", m));
            }
            Info {
                request: false,
                len: total as u32,
                id: Some(id),
                status: Some(status),
                code: Some(st as i32),
                exception: std::str::from_utf8(err).unwrap_or(""),
                attrs,
                protocol: "FRPC",
                ..Info::default()
            }
        };
        let _ = ctx.direction;
        frame(&mut out, &info);
        off += total;
    }
    send(&out)
}

/// `/api/users/123?x=1` → `/api/users/:id`: every all-digit path segment becomes `:id`, the query goes.
fn normalize(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
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

#[no_mangle]
pub extern "C" fn on_http_req() -> bool {
    if read_ctx().is_none() {
        return false;
    }
    let mut b = vec![0u8; 65536];
    let n = unsafe { vm_read_http_req_info(b.as_mut_ptr(), b.len() as i32) };
    if n <= 0 {
        return false;
    }
    b.truncate(n as usize);
    let mut strs: [&str; 4] = [""; 4];
    let mut off = 0;
    for s in strs.iter_mut() {
        let Some(l) = b.get(off..off + 2) else {
            return false;
        };
        let l = u16::from_be_bytes([l[0], l[1]]) as usize;
        let Some(v) = b.get(off + 2..off + 2 + l) else {
            return false;
        };
        *s = std::str::from_utf8(v).unwrap_or("");
        off += 2 + l;
    }
    let [path, host, ua, _referer] = strs;
    let mut attrs = vec![("df.host", host.to_string())];
    if !ua.is_empty() {
        attrs.push(("df.ua", ua.to_string()));
    }
    let info = Info {
        request: true,
        endpoint: Some(normalize(path)),
        attrs,
        ..Info::default()
    };
    let mut out = Vec::new();
    frame(&mut out, &info);
    send(&out)
}

#[no_mangle]
pub extern "C" fn on_http_resp() -> bool {
    if read_ctx().is_none() {
        return false;
    }
    let mut b = [0u8; 3];
    if unsafe { vm_read_http_resp_info(b.as_mut_ptr(), 3) } != 3 {
        return false;
    }
    let code = u16::from_be_bytes([b[0], b[1]]);
    // Rewrite: a 404 is an expected answer here, not an error.
    let status = if code == 404 { 0 } else { b[2] };
    let info = Info {
        request: false,
        status: Some(status),
        attrs: vec![("df.code_class", format!("{}xx", code / 100))],
        ..Info::default()
    };
    let mut out = Vec::new();
    frame(&mut out, &info);
    send(&out)
}
