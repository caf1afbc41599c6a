//! Raw packet sources: one trait, implemented by file replay ([`crate::FileSource`]) and, with the `afpacket`
//! feature, by live AF_PACKET capture (`afpacket::AfPacketSource`).

use crate::CaptureError;
use bytes::Bytes;

/// A link-layer header type (`LINKTYPE_*` / `DLT_*` number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II (with 802.1Q / 802.1ad tags).
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP, `DLT_RAW` as numbered on most BSDs.
    pub const RAW_DLT12: LinkType = LinkType(12);
    /// Raw IP, `DLT_RAW` as numbered on OpenBSD.
    pub const RAW_DLT14: LinkType = LinkType(14);
    /// Raw IP (`LINKTYPE_RAW`).
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1.
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Capture time, µs since the Unix epoch.
    pub ts_us: u64,
    /// Link-layer header type of `data`.
    pub link_type: LinkType,
    /// Length of the packet on the wire (may exceed `data.len()` when the snap length cut it).
    pub orig_len: u32,
    /// The captured bytes, starting with the link-layer header. Usually a slice of a larger read buffer.
    pub data: Bytes,
}

/// Anything that yields raw packets in capture order: a pcap file, an AF_PACKET ring, ...
pub trait PacketSource {
    /// The next packet, `Ok(None)` at the end of the input.
    ///
    /// # Errors
    /// When the input is damaged or unreadable; every packet before the damage has been returned.
    fn next_packet(&mut self) -> Result<Option<Packet>, CaptureError>;

    /// Bytes of input consumed so far (for progress reporting), if known.
    fn position(&self) -> u64 {
        0
    }
}
