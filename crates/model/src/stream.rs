//! What capture hands to protocol parsers: ordered byte chunks per flow direction and flow ends.

use crate::{Direction, FlowKey, FlowRecord, TimestampUs};
use bytes::Bytes;
use std::sync::Arc;

/// A capture-local flow identifier, unique for the lifetime of a capture source (never reused).
pub type FlowId = u64;

/// Where the bytes of a chunk were observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChunkOrigin {
    /// Reassembled from packets (pcap file or AF_PACKET).
    #[default]
    Packet,
    /// Read from a socket syscall or a TLS library call by eBPF.
    Syscall {
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// Socket file descriptor.
        fd: u32,
        /// Process name (`comm`).
        comm: Arc<str>,
        /// Thread-causality id (see `fathom-tracing-assoc`), 0 when unknown.
        syscall_trace_id: u64,
        /// True when the bytes are TLS plaintext from a library hook.
        tls_plaintext: bool,
        /// Whether the traced process is the flow's client or its server.
        side: crate::TapSide,
    },
}

/// In-order bytes of one direction of one flow.
///
/// For TCP, consecutive chunks of a direction are contiguous unless `gap_before` is non-zero: then that many bytes
/// were never seen between the previous chunk and this one, and a parser must resynchronise. For UDP, a chunk is
/// exactly one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChunk {
    /// Capture-local flow id.
    pub flow_id: FlowId,
    /// The flow, oriented client → server.
    pub flow: FlowKey,
    /// Which way these bytes travel.
    pub direction: Direction,
    /// Timestamp of the packet (or syscall) that carried the first byte.
    pub time_us: TimestampUs,
    /// TCP sequence number of the first byte; `None` for UDP and for sources without sequence numbers.
    pub seq: Option<u32>,
    /// Bytes lost immediately before this chunk (0 when contiguous).
    pub gap_before: u64,
    /// The payload.
    pub bytes: Bytes,
    /// Where it was observed.
    pub origin: ChunkOrigin,
}

/// A flow that ended (FIN/RST, idle timeout, eviction or end of capture), with its L4 statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowEnd {
    /// Capture-local flow id.
    pub flow_id: FlowId,
    /// The flow, oriented client → server.
    pub flow: FlowKey,
    /// When the flow ended (its last packet, or the time the timeout fired).
    pub time_us: TimestampUs,
    /// The flow record (without `l7_protocol`, which the parsing stage fills).
    pub record: FlowRecord,
    /// Segments that arrived out of order, per direction (index by [`Direction::index`]).
    pub out_of_order: [u64; 2],
    /// Zero-window advertisements, per direction.
    pub zero_window: [u64; 2],
    /// RST segments, per direction.
    pub resets: [u64; 2],
}

/// What a capture source produces, in capture-time order per flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Payload bytes.
    Chunk(StreamChunk),
    /// The end of a flow; no chunk of that flow id follows.
    FlowEnd(Box<FlowEnd>),
}
