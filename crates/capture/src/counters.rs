//! Counters of the capture stage: everything dropped or anomalous lands in one of them.

/// Packets that could not be decoded, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Undecodable {
    /// Link type not supported.
    pub link_type: u64,
    /// Link-layer header truncated.
    pub link_header: u64,
    /// IP header missing, truncated or invalid.
    pub ip_header: u64,
    /// TCP header truncated or invalid.
    pub tcp_header: u64,
    /// UDP header truncated.
    pub udp_header: u64,
    /// IPv6 fragments (not reassembled).
    pub ipv6_fragment: u64,
}

impl Undecodable {
    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.link_type
            + self.link_header
            + self.ip_header
            + self.tcp_header
            + self.udp_header
            + self.ipv6_fragment
    }
}

/// IPv4 fragment reassembly counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FragmentCounters {
    /// Fragments received.
    pub received: u64,
    /// Datagrams reassembled.
    pub reassembled: u64,
    /// Fragments dropped because a datagram did not complete in time.
    pub dropped_timeout: u64,
    /// Fragments dropped because a cap (datagrams, fragments, bytes) was reached.
    pub dropped_cap: u64,
    /// Fragments dropped because they were inconsistent (overlaps, bad offsets).
    pub dropped_invalid: u64,
}

/// Counters of a capture source and its flow table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets read.
    pub packets: u64,
    /// Original (on the wire) bytes of the packets read.
    pub bytes: u64,
    /// TCP packets handled by the flow table.
    pub tcp_packets: u64,
    /// UDP packets handled by the flow table.
    pub udp_packets: u64,
    /// IP packets of other transports (ICMP, ...), ignored.
    pub other_ip_packets: u64,
    /// Link-layer frames that carry no IP (ARP, LLDP, ...), ignored.
    pub non_ip_packets: u64,
    /// Packets that could not be decoded, by reason.
    pub undecodable: Undecodable,
    /// IPv4 fragment reassembly.
    pub fragments: FragmentCounters,
    /// Flows created.
    pub flows_created: u64,
    /// Flows evicted from a full table.
    pub flows_evicted: u64,
    /// Flows ended by idle timeout.
    pub flows_timed_out: u64,
    /// Flows still in the table at the end of the input (open ones, and closed ones still lingering).
    pub flows_open_at_end: u64,
    /// TCP flows restarted by a new SYN on the same 5-tuple (port reuse).
    pub flows_port_reused: u64,
    /// TCP segments that were retransmissions or duplicates (entirely or partly already seen).
    pub tcp_retransmissions: u64,
    /// TCP segments that arrived ahead of a hole and were buffered.
    pub tcp_out_of_order: u64,
    /// Times an out-of-order buffer hit its cap and its hole was declared lost.
    pub tcp_ooo_overflows: u64,
    /// TCP payload bytes never seen (holes) or cut by the snap length.
    pub tcp_lost_bytes: u64,
    /// Stream chunks emitted.
    pub chunks: u64,
    /// Payload bytes emitted in chunks.
    pub chunk_bytes: u64,
}
