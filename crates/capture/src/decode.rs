//! L2-L4 decoding: link-layer headers (hand-written, they are a few fixed fields), then IP and TCP/UDP headers
//! with `etherparse`.
//!
//! Nothing here panics on any input: every access is length-checked, and a packet that cannot be decoded is
//! reported with a [`Skip`] reason that the flow table counts.

use crate::source::LinkType;
use etherparse::{LaxIpSlice, LenSource, TcpSlice, UdpSlice};
use std::net::IpAddr;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88A8;
const ETH_QINQ_OLD: u16 = 0x9100;
/// Most VLAN tags unwrapped before giving up.
const MAX_VLAN_TAGS: usize = 4;

/// Why a packet produced no TCP/UDP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Unsupported link type.
    LinkType,
    /// Link-layer header truncated.
    LinkHeader,
    /// Not IP (ARP, ...).
    NotIp,
    /// Bad or truncated IP header.
    IpHeader,
    /// An IP transport other than TCP/UDP.
    OtherTransport,
    /// Bad or truncated TCP header.
    TcpHeader,
    /// Truncated UDP header.
    UdpHeader,
    /// An IPv6 fragment (not reassembled).
    Ipv6Fragment,
}

/// The network layer of a packet, found through the link layer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NetProto {
    Ipv4,
    Ipv6,
    Unknown,
}

/// Find the IP header in a link-layer frame. Returns the offset of the IP header.
pub(crate) fn link_payload(link: LinkType, data: &[u8]) -> Result<usize, Skip> {
    let (off, proto) = match link {
        LinkType::ETHERNET => {
            if data.len() < 14 {
                return Err(Skip::LinkHeader);
            }
            ethertype_walk(data, 12)?
        }
        LinkType::LINUX_SLL => {
            if data.len() < 16 {
                return Err(Skip::LinkHeader);
            }
            ethertype_walk(data, 14)?
        }
        LinkType::LINUX_SLL2 => {
            if data.len() < 20 {
                return Err(Skip::LinkHeader);
            }
            let et = u16::from_be_bytes([data[0], data[1]]);
            match et {
                ETH_IPV4 => (20, NetProto::Ipv4),
                ETH_IPV6 => (20, NetProto::Ipv6),
                ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => {
                    // The tag follows the 20-byte header: walk as if the type field sat just before it.
                    let (o, p) = vlan_walk(data, 20)?;
                    (o, p)
                }
                _ => (20, NetProto::Unknown),
            }
        }
        LinkType::RAW | LinkType::RAW_DLT12 | LinkType::RAW_DLT14 => {
            match data.first().map(|b| b >> 4) {
                Some(4) => (0, NetProto::Ipv4),
                Some(6) => (0, NetProto::Ipv6),
                Some(_) => (0, NetProto::Unknown),
                None => return Err(Skip::LinkHeader),
            }
        }
        LinkType::IPV4 => (0, NetProto::Ipv4),
        LinkType::IPV6 => (0, NetProto::Ipv6),
        LinkType::NULL | LinkType::LOOP => {
            if data.len() < 4 {
                return Err(Skip::LinkHeader);
            }
            let raw = [data[0], data[1], data[2], data[3]];
            let af = if link == LinkType::LOOP {
                u32::from_be_bytes(raw)
            } else if raw[0] == 0 && raw[1] == 0 {
                // Written big-endian by the capturing host.
                u32::from_be_bytes(raw)
            } else {
                u32::from_le_bytes(raw)
            };
            match af {
                2 => (4, NetProto::Ipv4),
                // AF_INET6 on Linux, FreeBSD, Darwin, NetBSD/OpenBSD.
                10 | 24 | 28 | 30 => (4, NetProto::Ipv6),
                _ => (4, NetProto::Unknown),
            }
        }
        _ => return Err(Skip::LinkType),
    };
    match proto {
        NetProto::Ipv4 | NetProto::Ipv6 => Ok(off),
        NetProto::Unknown => Err(Skip::NotIp),
    }
}

/// Read the EtherType at `type_off` and unwrap VLAN tags.
fn ethertype_walk(data: &[u8], type_off: usize) -> Result<(usize, NetProto), Skip> {
    let et = data
        .get(type_off..type_off + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(Skip::LinkHeader)?;
    match et {
        ETH_IPV4 => Ok((type_off + 2, NetProto::Ipv4)),
        ETH_IPV6 => Ok((type_off + 2, NetProto::Ipv6)),
        ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => vlan_walk(data, type_off + 2),
        _ => Ok((type_off + 2, NetProto::Unknown)),
    }
}

/// `tag_off` points at a 4-byte VLAN tag (TCI + inner EtherType).
fn vlan_walk(data: &[u8], mut tag_off: usize) -> Result<(usize, NetProto), Skip> {
    for _ in 0..MAX_VLAN_TAGS {
        let b = data.get(tag_off..tag_off + 4).ok_or(Skip::LinkHeader)?;
        let et = u16::from_be_bytes([b[2], b[3]]);
        let next = tag_off + 4;
        match et {
            ETH_IPV4 => return Ok((next, NetProto::Ipv4)),
            ETH_IPV6 => return Ok((next, NetProto::Ipv6)),
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD => tag_off = next,
            _ => return Ok((next, NetProto::Unknown)),
        }
    }
    Err(Skip::LinkHeader)
}

/// IPv4 fragment information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FragInfo {
    pub id: u16,
    /// Offset in bytes.
    pub offset: usize,
    pub more: bool,
}

/// A decoded IP packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Captured L4 bytes (may be cut by the snap length).
    pub l4: &'a [u8],
    /// L4 length according to the IP header.
    pub l4_len: usize,
    /// Set for IPv4 fragments (and the first fragment too).
    pub frag: Option<FragInfo>,
}

/// Decode the IP header at `data`.
pub(crate) fn ip(data: &[u8]) -> Result<IpPacket<'_>, Skip> {
    let (slice, _ext_err) = LaxIpSlice::from_slice(data).map_err(|_| Skip::IpHeader)?;
    let payload = slice.payload();
    let l4 = payload.payload;
    let l4_start = (l4.as_ptr() as usize).saturating_sub(data.as_ptr() as usize);
    match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let total = usize::from(h.total_len());
            let l4_len = if payload.len_source == LenSource::Slice && total > l4_start {
                // Cut by the snap length (or a bogus total length): trust the header if it claims more.
                (total - l4_start).max(l4.len())
            } else {
                l4.len()
            };
            let frag = if h.more_fragments() || h.fragments_offset().value() != 0 {
                Some(FragInfo {
                    id: h.identification(),
                    offset: usize::from(h.fragments_offset().value()) * 8,
                    more: h.more_fragments(),
                })
            } else {
                None
            };
            Ok(IpPacket {
                src: IpAddr::V4(h.source_addr()),
                dst: IpAddr::V4(h.destination_addr()),
                proto: payload.ip_number.0,
                l4,
                l4_len,
                frag,
            })
        }
        LaxIpSlice::Ipv6(v6) => {
            if payload.fragmented {
                return Err(Skip::Ipv6Fragment);
            }
            let h = v6.header();
            let total = 40 + usize::from(h.payload_length());
            let l4_len = if payload.len_source == LenSource::Slice
                && h.payload_length() != 0
                && total > l4_start
            {
                (total - l4_start).max(l4.len())
            } else {
                l4.len()
            };
            Ok(IpPacket {
                src: IpAddr::V6(h.source_addr()),
                dst: IpAddr::V6(h.destination_addr()),
                proto: payload.ip_number.0,
                l4,
                l4_len,
                frag: None,
            })
        }
    }
}

/// TCP flag bits.
pub(crate) mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// A TCP or UDP segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct L4Segment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp: bool,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Captured payload.
    pub payload: &'a [u8],
    /// Payload length on the wire.
    pub payload_len: usize,
}

/// Decode the TCP header of `l4` (`l4_len` = length claimed by IP).
pub(crate) fn tcp(l4: &[u8], l4_len: usize) -> Result<L4Segment<'_>, Skip> {
    let t = match TcpSlice::from_slice(l4) {
        Ok(t) => t,
        Err(_) => return tcp_cut(l4, l4_len),
    };
    let hl = usize::from(t.data_offset()) * 4;
    let payload = t.payload();
    let mut f = 0u8;
    if t.fin() {
        f |= flags::FIN;
    }
    if t.syn() {
        f |= flags::SYN;
    }
    if t.rst() {
        f |= flags::RST;
    }
    if t.ack() {
        f |= flags::ACK;
    }
    Ok(L4Segment {
        src_port: t.source_port(),
        dst_port: t.destination_port(),
        tcp: true,
        seq: t.sequence_number(),
        ack: t.acknowledgment_number(),
        flags: f,
        window: t.window_size(),
        payload,
        payload_len: l4_len.saturating_sub(hl).max(payload.len()),
    })
}

/// A TCP header cut by the snap length (options or the window missing): the fixed fields that are present still
/// place the packet in its flow; its payload was not captured.
fn tcp_cut(l4: &[u8], l4_len: usize) -> Result<L4Segment<'_>, Skip> {
    let b = l4.get(..14).ok_or(Skip::TcpHeader)?;
    let hl = usize::from(b[12] >> 4) * 4;
    if hl < 20 || l4_len < hl || l4.len() >= hl {
        // Not cut: the header itself is invalid.
        return Err(Skip::TcpHeader);
    }
    let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    Ok(L4Segment {
        src_port: u16::from_be_bytes([b[0], b[1]]),
        dst_port: u16::from_be_bytes([b[2], b[3]]),
        tcp: true,
        seq: be32(4),
        ack: be32(8),
        flags: b[13] & (flags::FIN | flags::SYN | flags::RST | flags::ACK),
        window: l4
            .get(14..16)
            .map_or(1, |w| u16::from_be_bytes([w[0], w[1]])),
        payload: &[],
        payload_len: l4_len - hl,
    })
}

/// Decode the UDP header of `l4`.
pub(crate) fn udp(l4: &[u8], l4_len: usize) -> Result<L4Segment<'_>, Skip> {
    let u = UdpSlice::from_slice_lax(l4).map_err(|_| Skip::UdpHeader)?;
    let payload = u.payload();
    let claimed = usize::from(u.length());
    let wire = if claimed >= 8 && claimed <= l4_len.max(l4.len()) {
        claimed - 8
    } else {
        l4_len.saturating_sub(8)
    };
    Ok(L4Segment {
        src_port: u.source_port(),
        dst_port: u.destination_port(),
        tcp: false,
        seq: 0,
        ack: 0,
        flags: 0,
        window: 0,
        payload,
        payload_len: wire.max(payload.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp() -> Vec<u8> {
        // 20-byte IPv4 header + 8-byte UDP header + 4 bytes payload.
        let mut p = vec![
            0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 12, 0, 0, b'a', b'b', b'c', b'd']);
        p
    }

    fn ipv6_tcp() -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, 24, 6, 64];
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        // TCP: ports 40000 -> 6379, seq 1000, ack 0, data offset 5, flags PSH|ACK.
        p.extend_from_slice(&[
            0x9c, 0x40, 0x18, 0xeb, 0, 0, 3, 0xe8, 0, 0, 0, 0, 0x50, 0x18,
        ]);
        p.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0, b'P', b'I', b'N', b'G']);
        p
    }

    fn decode(link: LinkType, frame: &[u8]) -> (IpPacket<'_>, L4Segment<'_>) {
        let off = link_payload(link, frame).unwrap();
        let ip = ip(&frame[off..]).unwrap();
        let seg = match ip.proto {
            6 => tcp(ip.l4, ip.l4_len).unwrap(),
            17 => udp(ip.l4, ip.l4_len).unwrap(),
            p => panic!("proto {p}"),
        };
        (ip, seg)
    }

    #[test]
    fn ethernet_qinq() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x00]);
        f.extend_from_slice(&ipv4_udp());
        let (ip, seg) = decode(LinkType::ETHERNET, &f);
        assert_eq!(ip.src.to_string(), "10.0.0.1");
        assert_eq!((seg.src_port, seg.dst_port), (12345, 53));
        assert_eq!(seg.payload, b"abcd");
    }

    #[test]
    fn ethernet_padding_is_trimmed() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ipv4_udp());
        f.extend_from_slice(&[0; 14]); // padding to 60 bytes
        let (_, seg) = decode(LinkType::ETHERNET, &f);
        assert_eq!(seg.payload, b"abcd");
    }

    #[test]
    fn sll_and_sll2() {
        let mut f = vec![0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd];
        f.extend_from_slice(&ipv6_tcp());
        let (ip, seg) = decode(LinkType::LINUX_SLL, &f);
        assert_eq!(ip.dst.to_string(), "fe80::2");
        assert_eq!(seg.payload, b"PING");
        assert_eq!(seg.seq, 1000);
        let mut f2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        f2.extend_from_slice(&ipv4_udp());
        let (_, seg) = decode(LinkType::LINUX_SLL2, &f2);
        assert_eq!(seg.dst_port, 53);
    }

    #[test]
    fn raw_null_loop() {
        let (v4, v6) = (ipv4_udp(), ipv6_tcp());
        assert_eq!(decode(LinkType::RAW, &v4).1.payload, b"abcd");
        assert_eq!(decode(LinkType::IPV6, &v6).1.payload, b"PING");
        assert_eq!(decode(LinkType::IPV4, &v4).1.payload, b"abcd");
        assert_eq!(decode(LinkType::RAW_DLT12, &v6).1.dst_port, 6379);
        // NULL: little-endian AF_INET, big-endian AF_INET6 (Darwin 30).
        let mut f = vec![2, 0, 0, 0];
        f.extend_from_slice(&ipv4_udp());
        assert_eq!(decode(LinkType::NULL, &f).1.payload, b"abcd");
        let mut f = vec![0, 0, 0, 30];
        f.extend_from_slice(&ipv6_tcp());
        assert_eq!(decode(LinkType::NULL, &f).1.payload, b"PING");
        // LOOP: network order.
        let mut f = vec![0, 0, 0, 24];
        f.extend_from_slice(&ipv6_tcp());
        assert_eq!(decode(LinkType::LOOP, &f).1.payload, b"PING");
    }

    #[test]
    fn snaplen_cut_reports_wire_length() {
        let mut f = ipv6_tcp();
        f.truncate(f.len() - 2);
        let (ip, seg) = decode(LinkType::RAW, &f);
        assert_eq!(ip.l4_len, 24);
        assert_eq!(seg.payload, b"PI");
        assert_eq!(seg.payload_len, 4);
    }

    #[test]
    fn garbage_is_skipped() {
        assert_eq!(link_payload(LinkType(147), &[1, 2, 3]), Err(Skip::LinkType));
        assert_eq!(
            link_payload(LinkType::ETHERNET, &[0; 10]),
            Err(Skip::LinkHeader)
        );
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x06, 0, 0]);
        assert_eq!(link_payload(LinkType::ETHERNET, &f), Err(Skip::NotIp));
        assert!(ip(&[0x45, 0, 0]).is_err());
        assert!(tcp(&[0; 10], 10).is_err());
        assert!(udp(&[0; 4], 4).is_err());
    }
}
