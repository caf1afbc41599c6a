//! The contexts the host hands a DeepFlow-ABI plugin, serialised exactly as DeepFlow's agent does
//! (`agent/src/plugin/wasm/vm.rs`, read back by the SDK's `sdk/serde.go`). All integers are big-endian.
//!
//! Base context (`vm_read_ctx_base`):
//!
//! ```text
//! ip type   u8        4 or 6
//! src ip    4/16 B    the source of these bytes (the server for a response)
//! dst ip    4/16 B
//! src port  u16
//! dst port  u16
//! l4        u8        6 TCP, 17 UDP
//! l7        u8        0 in check_payload; the number check_payload returned in parse_payload; DeepFlow's
//!                     protocol number (20 HTTP/1, 21 HTTP/2, 41 gRPC) in the HTTP hooks
//! ebpf type u8        255 (none: packet capture)
//! time      u64       microseconds since the Unix epoch
//! direction u8        0 client to server, 1 server to client
//! proc name len u8, proc name
//! flow id   u64
//! buf size  u16       the payload buffer size the guest must offer to vm_read_payload
//! ```
//!
//! HTTP request context (`vm_read_http_req_info`): path, host, user-agent, referer, each a `u16` length
//! and the bytes. HTTP response context (`vm_read_http_resp_info`): status code `u16`, status `u8` (DeepFlow's
//! `L7ResponseStatus`: 0 ok, 2 timeout, 3 server error, 4 client error, 5 unknown).

use fathom_model::{Direction, L4Protocol};
use std::net::IpAddr;

/// DeepFlow's `EbpfType::None`: the bytes come from packet capture.
pub const EBPF_TYPE_NONE: u8 = 255;

/// What the base context says.
#[derive(Debug, Clone)]
pub struct CtxBase<'a> {
    /// Source address of these bytes.
    pub ip_src: IpAddr,
    /// Destination address.
    pub ip_dst: IpAddr,
    /// Source port.
    pub port_src: u16,
    /// Destination port.
    pub port_dst: u16,
    /// TCP or UDP.
    pub l4: L4Protocol,
    /// The `l7` byte.
    pub l7: u8,
    /// Capture time, µs.
    pub time_us: u64,
    /// Which way the bytes travel.
    pub direction: Direction,
    /// Process name (eBPF sources only).
    pub process_name: Option<&'a str>,
    /// Flow id.
    pub flow_id: u64,
    /// Payload buffer size.
    pub buf_size: u16,
}

fn ip_bytes(ip: IpAddr, v6: bool, out: &mut Vec<u8>) {
    match (ip, v6) {
        (IpAddr::V4(a), false) => out.extend_from_slice(&a.octets()),
        (IpAddr::V4(a), true) => out.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), _) => out.extend_from_slice(&a.octets()),
    }
}

impl CtxBase<'_> {
    /// Append the serialised context to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let v6 = self.ip_src.is_ipv6() || self.ip_dst.is_ipv6();
        out.push(if v6 { 6 } else { 4 });
        ip_bytes(self.ip_src, v6, out);
        ip_bytes(self.ip_dst, v6, out);
        out.extend_from_slice(&self.port_src.to_be_bytes());
        out.extend_from_slice(&self.port_dst.to_be_bytes());
        out.push(match self.l4 {
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
        });
        out.push(self.l7);
        out.push(EBPF_TYPE_NONE);
        out.extend_from_slice(&self.time_us.to_be_bytes());
        out.push(match self.direction {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        });
        let name = self.process_name.unwrap_or("").as_bytes();
        let name = &name[..name.len().min(255)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&self.flow_id.to_be_bytes());
        out.extend_from_slice(&self.buf_size.to_be_bytes());
    }
}

/// Append a `u16`-length-prefixed string (clipped to 65535 bytes).
pub fn put_str(s: &str, out: &mut Vec<u8>) {
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// The HTTP request context.
pub fn encode_http_req(path: &str, host: &str, user_agent: &str, referer: &str, out: &mut Vec<u8>) {
    for s in [path, host, user_agent, referer] {
        put_str(s, out);
    }
}

/// The HTTP response context.
pub fn encode_http_resp(code: u16, status: u8) -> [u8; 3] {
    let c = code.to_be_bytes();
    [c[0], c[1], status]
}

/// The value of header `name` (ASCII case-insensitive) in an HTTP/1 head, if present.
pub fn http1_header<'a>(head: &'a [u8], name: &str) -> Option<&'a str> {
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    head[..end]
        .split(|&b| b == b'\n')
        .skip(1)
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| &line[colon + 1..])
        })
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(|v| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_context_layout_v4() {
        let ctx = CtxBase {
            ip_src: "10.0.0.2".parse().unwrap(),
            ip_dst: "10.0.0.1".parse().unwrap(),
            port_src: 7000,
            port_dst: 40001,
            l4: L4Protocol::Tcp,
            l7: 9,
            time_us: 0x0102_0304_0506_0708,
            direction: Direction::ServerToClient,
            process_name: Some("nginx"),
            flow_id: 0x1122_3344_5566_7788,
            buf_size: 300,
        };
        let mut v = Vec::new();
        ctx.encode(&mut v);
        let mut want = vec![
            4, 10, 0, 0, 2, 10, 0, 0, 1, 0x1b, 0x58, 0x9c, 0x41, 6, 9, 255,
        ];
        want.extend([1, 2, 3, 4, 5, 6, 7, 8, 1, 5]);
        want.extend(b"nginx");
        want.extend([0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 1, 44]);
        assert_eq!(v, want);
        // 8 address bytes + 28 fixed bytes + the name, as DeepFlow sizes it.
        assert_eq!(v.len(), 8 + 28 + 5);
    }

    #[test]
    fn base_context_layout_v6() {
        let ctx = CtxBase {
            ip_src: "::1".parse().unwrap(),
            ip_dst: "::2".parse().unwrap(),
            port_src: 1,
            port_dst: 2,
            l4: L4Protocol::Udp,
            l7: 0,
            time_us: 0,
            direction: Direction::ClientToServer,
            process_name: None,
            flow_id: 0,
            buf_size: 1,
        };
        let mut v = Vec::new();
        ctx.encode(&mut v);
        assert_eq!(v.len(), 32 + 28);
        assert_eq!(v[0], 6);
        assert_eq!(v[16], 1);
        assert_eq!(v[32], 2);
        assert_eq!(v[37], 17);
    }

    #[test]
    fn http_contexts() {
        let mut v = Vec::new();
        encode_http_req("/a", "h", "", "r", &mut v);
        assert_eq!(v, [0, 2, b'/', b'a', 0, 1, b'h', 0, 0, 0, 1, b'r']);
        assert_eq!(encode_http_resp(404, 4), [1, 0x94, 4]);
    }

    #[test]
    fn header_lookup() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nuser-agent:  curl/8 \r\n\r\nUser-Agent: body";
        assert_eq!(http1_header(head, "User-Agent"), Some("curl/8"));
        assert_eq!(http1_header(head, "Referer"), None);
    }
}
