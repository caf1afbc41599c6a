//! Limits of the flow table, TCP reassembly and IPv4 defragmentation. Hitting one is counted, never unbounded growth.

/// Caps and timeouts of a [`crate::FlowTable`]. Passed explicitly; no globals. Times are capture time (µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most flows tracked at once; the least recently active flow is evicted beyond (close type `evicted`).
    pub max_flows: usize,
    /// Idle time after which an open TCP flow ends (close type `timeout`).
    pub tcp_idle_timeout_us: u64,
    /// Time a TCP flow is kept after FIN from both sides or RST, to count trailing ACKs and retransmissions.
    pub tcp_closed_timeout_us: u64,
    /// Idle time after which a UDP flow ends.
    pub udp_idle_timeout_us: u64,
    /// Most out-of-order bytes buffered per TCP direction; beyond, the missing bytes are declared lost (a gap).
    pub max_ooo_bytes_per_direction: usize,
    /// Most out-of-order segments buffered per TCP direction.
    pub max_ooo_segments_per_direction: usize,
    /// Most out-of-order bytes buffered over all flows.
    pub max_ooo_bytes_total: usize,
    /// Most IPv4 datagrams being reassembled at once.
    pub max_frag_datagrams: usize,
    /// Most fragments per datagram.
    pub max_frags_per_datagram: usize,
    /// Largest reassembled datagram payload in bytes.
    pub max_frag_bytes: usize,
    /// Age after which an incomplete fragmented datagram is dropped.
    pub frag_timeout_us: u64,
    /// How often (capture time) idle flows and fragments are swept.
    pub sweep_interval_us: u64,
}

impl Config {
    /// Default for [`Config::max_flows`]: 2^20 flows, at most about 0.5 GiB of flow state (512 bytes per flow
    /// slot; out-of-order buffers are capped by [`Config::max_ooo_bytes_total`]).
    pub const DEFAULT_MAX_FLOWS: usize = 1 << 20;
    /// Default for [`Config::tcp_idle_timeout_us`]: 15 min (long-lived idle connections stay one flow).
    pub const DEFAULT_TCP_IDLE_TIMEOUT_US: u64 = 900_000_000;
    /// Default for [`Config::tcp_closed_timeout_us`]: 10 s.
    pub const DEFAULT_TCP_CLOSED_TIMEOUT_US: u64 = 10_000_000;
    /// Default for [`Config::udp_idle_timeout_us`]: 5 min.
    pub const DEFAULT_UDP_IDLE_TIMEOUT_US: u64 = 300_000_000;
    /// Default for [`Config::max_ooo_bytes_per_direction`].
    pub const DEFAULT_MAX_OOO_BYTES_PER_DIRECTION: usize = 256 * 1024;
    /// Default for [`Config::max_ooo_segments_per_direction`].
    pub const DEFAULT_MAX_OOO_SEGMENTS_PER_DIRECTION: usize = 256;
    /// Default for [`Config::max_ooo_bytes_total`].
    pub const DEFAULT_MAX_OOO_BYTES_TOTAL: usize = 256 * 1024 * 1024;
    /// Default for [`Config::max_frag_datagrams`].
    pub const DEFAULT_MAX_FRAG_DATAGRAMS: usize = 4096;
    /// Default for [`Config::max_frags_per_datagram`].
    pub const DEFAULT_MAX_FRAGS_PER_DATAGRAM: usize = 64;
    /// Default for [`Config::max_frag_bytes`].
    pub const DEFAULT_MAX_FRAG_BYTES: usize = 65_535;
    /// Default for [`Config::frag_timeout_us`]: 30 s.
    pub const DEFAULT_FRAG_TIMEOUT_US: u64 = 30_000_000;
    /// Default for [`Config::sweep_interval_us`]: 1 s.
    pub const DEFAULT_SWEEP_INTERVAL_US: u64 = 1_000_000;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_flows: Self::DEFAULT_MAX_FLOWS,
            tcp_idle_timeout_us: Self::DEFAULT_TCP_IDLE_TIMEOUT_US,
            tcp_closed_timeout_us: Self::DEFAULT_TCP_CLOSED_TIMEOUT_US,
            udp_idle_timeout_us: Self::DEFAULT_UDP_IDLE_TIMEOUT_US,
            max_ooo_bytes_per_direction: Self::DEFAULT_MAX_OOO_BYTES_PER_DIRECTION,
            max_ooo_segments_per_direction: Self::DEFAULT_MAX_OOO_SEGMENTS_PER_DIRECTION,
            max_ooo_bytes_total: Self::DEFAULT_MAX_OOO_BYTES_TOTAL,
            max_frag_datagrams: Self::DEFAULT_MAX_FRAG_DATAGRAMS,
            max_frags_per_datagram: Self::DEFAULT_MAX_FRAGS_PER_DATAGRAM,
            max_frag_bytes: Self::DEFAULT_MAX_FRAG_BYTES,
            frag_timeout_us: Self::DEFAULT_FRAG_TIMEOUT_US,
            sweep_interval_us: Self::DEFAULT_SWEEP_INTERVAL_US,
        }
    }
}
