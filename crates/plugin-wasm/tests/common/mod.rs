//! Shared test helpers: the FRPC test plugin in WAT (with hooks for hostile variants) and an Engine driver.
#![allow(dead_code)]

use bytes::Bytes;
use fathom_model::{ChunkOrigin, Direction, FlowKey, L4Protocol, RequestLog, StreamChunk};

/// FRPC, an invented protocol: "FRPC", u8 kind (0 request, 1 response), u32 id (BE), u16 body length (BE),
/// body. A request body is the method name; a response body is a status byte (0 ok, 1 client error,
/// 2 server error) and an error text.
///
/// `{VERSION}`, `{PROBE}` and `{PARSE}` are replaced: the hook bodies run first in each function.
const FRPC_TEMPLATE: &str = r#"
(module
  (memory (export "memory") 2)
  (func (export "fathom_abi_version") (result i32) (i32.const {VERSION}))
  ;; One input buffer at 1024, grown to fit; the result record lives at 16..88.
  (func (export "fathom_alloc") (param $len i32) (result i32)
    (local $need i32)
    (local.set $need (i32.sub
      (i32.shr_u (i32.add (local.get $len) (i32.const 66559)) (i32.const 16))
      (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.lt_s (memory.grow (local.get $need)) (i32.const 0))
        (then (return (i32.const -1))))))
    (i32.const 1024))
  (func $magic (param $p i32) (param $n i32) (result i32)
    (if (i32.lt_u (local.get $n) (i32.const 4)) (then (return (i32.const 0))))
    (i32.eq (i32.load (local.get $p)) (i32.const 0x43505246)))
  (func (export "fathom_probe") (param $p i32) (param $n i32) (param $dir i32) (result i32)
    {PROBE}
    (if (result i32) (call $magic (local.get $p) (local.get $n))
      (then (i32.const 2)) (else (i32.const 0))))
  (func (export "fathom_parse") (param $p i32) (param $n i32) (param $dir i32) (result i32)
    (local $blen i32) (local $total i32) (local $kind i32) (local $st i32)
    {PARSE}
    (if (i32.lt_u (local.get $n) (i32.const 4)) (then (return (i32.const 0))))
    (if (i32.eqz (call $magic (local.get $p) (local.get $n)))
      (then
        ;; After a gap (dir bit 2): skip one byte and look again; otherwise this is not FRPC.
        (if (i32.and (local.get $dir) (i32.const 2))
          (then
            (memory.fill (i32.const 16) (i32.const 0) (i32.const 72))
            (i32.store (i32.const 16) (i32.const 1))
            (i32.store8 (i32.const 20) (i32.const 4))
            (return (i32.const 16))))
        (return (i32.const -1))))
    (if (i32.lt_u (local.get $n) (i32.const 11)) (then (return (i32.const 0))))
    (local.set $blen (i32.or
      (i32.shl (i32.load8_u offset=9 (local.get $p)) (i32.const 8))
      (i32.load8_u offset=10 (local.get $p))))
    (local.set $total (i32.add (local.get $blen) (i32.const 11)))
    (if (i32.lt_u (local.get $n) (local.get $total)) (then (return (i32.const 0))))
    (local.set $kind (i32.load8_u offset=4 (local.get $p)))
    (if (i32.gt_u (local.get $kind) (i32.const 1)) (then (return (i32.const -1))))
    (memory.fill (i32.const 16) (i32.const 0) (i32.const 72))
    (i32.store (i32.const 16) (local.get $total))
    (i32.store8 (i32.const 20) (local.get $kind))
    (i32.store8 (i32.const 22) (i32.const 1))
    (i32.store (i32.const 24) (i32.or
      (i32.or (i32.shl (i32.load8_u offset=5 (local.get $p)) (i32.const 24))
              (i32.shl (i32.load8_u offset=6 (local.get $p)) (i32.const 16)))
      (i32.or (i32.shl (i32.load8_u offset=7 (local.get $p)) (i32.const 8))
              (i32.load8_u offset=8 (local.get $p)))))
    (if (i32.eqz (local.get $kind))
      (then
        (i32.store (i32.const 40) (i32.add (local.get $p) (i32.const 11)))
        (i32.store (i32.const 44) (local.get $blen)))
      (else
        (if (i32.eqz (local.get $blen)) (then (return (i32.const -1))))
        (local.set $st (i32.load8_u offset=11 (local.get $p)))
        (if (i32.gt_u (local.get $st) (i32.const 2)) (then (return (i32.const -1))))
        (i32.store8 (i32.const 21) (i32.add (local.get $st) (i32.const 1)))
        (i32.store8 (i32.const 22) (i32.const 3))
        (i64.store (i32.const 32) (i64.extend_i32_u (local.get $st)))
        (if (local.get $st)
          (then
            (i32.store (i32.const 72) (i32.add (local.get $p) (i32.const 12)))
            (i32.store (i32.const 76) (i32.sub (local.get $blen) (i32.const 1)))))))
    (i32.const 16))
)
"#;

/// The FRPC plugin with hooks: `probe` / `parse` are WAT instructions run first in those functions.
pub fn frpc_wat(version: i32, probe: &str, parse: &str) -> String {
    FRPC_TEMPLATE
        .replace("{VERSION}", &version.to_string())
        .replace("{PROBE}", probe)
        .replace("{PARSE}", parse)
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
