//! Flows: keys, directions and the flow record contract.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Transport protocol of a flow.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl L4Protocol {
    /// The contract's lowercase name (`tcp`, `udp`).
    pub const fn as_str(self) -> &'static str {
        match self {
            L4Protocol::Tcp => "tcp",
            L4Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way bytes travel on a flow, relative to the flow's client/server orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    /// Client to server (`tx` in flow records).
    #[serde(rename = "tx")]
    ClientToServer,
    /// Server to client (`rx` in flow records).
    #[serde(rename = "rx")]
    ServerToClient,
}

impl Direction {
    /// The other direction.
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// 0 for client → server, 1 for server → client: an index for per-direction arrays.
    pub const fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    /// `tx` or `rx`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToServer => "tx",
            Direction::ServerToClient => "rx",
        }
    }
}

/// A bidirectional 5-tuple, oriented: `src` is the client, `dst` the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FlowKey {
    /// Client address.
    pub ip_src: IpAddr,
    /// Server address.
    pub ip_dst: IpAddr,
    /// Client port.
    pub port_src: u16,
    /// Server port.
    pub port_dst: u16,
    /// Transport.
    pub l4_protocol: L4Protocol,
}

impl FlowKey {
    /// The same flow seen from the other end (client and server swapped).
    pub const fn reversed(&self) -> FlowKey {
        FlowKey {
            ip_src: self.ip_dst,
            ip_dst: self.ip_src,
            port_src: self.port_dst,
            port_dst: self.port_src,
            l4_protocol: self.l4_protocol,
        }
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sock = |ip: &IpAddr, port: u16| match ip {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "{} {} -> {}",
            self.l4_protocol,
            sock(&self.ip_src, self.port_src),
            sock(&self.ip_dst, self.port_dst)
        )
    }
}

/// How a flow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseType {
    /// FIN seen from both sides (or from one side and the capture ended after it).
    Fin,
    /// RST seen.
    Rst,
    /// Idle longer than the configured timeout.
    Timeout,
    /// Evicted from a full flow table.
    Evicted,
    /// Still open when the capture ended.
    OpenAtEnd,
}

impl CloseType {
    /// The contract's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseType::Fin => "fin",
            CloseType::Rst => "rst",
            CloseType::Timeout => "timeout",
            CloseType::Evicted => "evicted",
            CloseType::OpenAtEnd => "open_at_end",
        }
    }
}

/// One TCP/UDP flow: the JSON contract of `fathom-agent --json flows`. `tx` is client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Client address.
    pub ip_src: String,
    /// Server address.
    pub ip_dst: String,
    /// Client port.
    pub port_src: u16,
    /// Server port.
    pub port_dst: u16,
    /// `tcp` or `udp`.
    pub l4_protocol: L4Protocol,
    /// First packet, µs since the epoch.
    pub start_time_us: u64,
    /// Last packet, µs since the epoch.
    pub end_time_us: u64,
    /// Packets client → server, retransmissions included.
    pub packet_tx: u64,
    /// Packets server → client, retransmissions included.
    pub packet_rx: u64,
    /// Frame bytes on the wire client → server.
    pub byte_tx: u64,
    /// Frame bytes on the wire server → client.
    pub byte_rx: u64,
    /// L4 payload bytes client → server, retransmissions excluded.
    pub payload_byte_tx: u64,
    /// L4 payload bytes server → client, retransmissions excluded.
    pub payload_byte_rx: u64,
    /// Retransmitted segments client → server.
    pub retrans_tx: u64,
    /// Retransmitted segments server → client.
    pub retrans_rx: u64,
    /// Bytes never seen (gaps) client → server.
    pub lost_byte_tx: u64,
    /// Bytes never seen (gaps) server → client.
    pub lost_byte_rx: u64,
    /// Handshake RTT at the capture point; null without a handshake.
    pub rtt_us: Option<u64>,
    /// How the flow ended.
    pub close_type: CloseType,
    /// The application protocol detected on the flow, null if none.
    pub l7_protocol: Option<String>,
}

impl FlowRecord {
    /// A zeroed record for `key`, open at `time_us`.
    pub fn new(key: &FlowKey, time_us: u64) -> FlowRecord {
        FlowRecord {
            ip_src: key.ip_src.to_string(),
            ip_dst: key.ip_dst.to_string(),
            port_src: key.port_src,
            port_dst: key.port_dst,
            l4_protocol: key.l4_protocol,
            start_time_us: time_us,
            end_time_us: time_us,
            packet_tx: 0,
            packet_rx: 0,
            byte_tx: 0,
            byte_rx: 0,
            payload_byte_tx: 0,
            payload_byte_rx: 0,
            retrans_tx: 0,
            retrans_rx: 0,
            lost_byte_tx: 0,
            lost_byte_rx: 0,
            rtt_us: None,
            close_type: CloseType::OpenAtEnd,
            l7_protocol: None,
        }
    }
}
