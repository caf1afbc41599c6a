//! What capture hands to protocol parsers: ordered byte chunks per flow direction and flow ends.

use crate::{Direction, FlowKey, FlowRecord, TimestampUs};
use bytes::Bytes;

/// A capture-local flow identifier, unique for the lifetime of a capture source (never reused).
pub type FlowId = u64;

/// A process name (`comm`), held inline: copying it into every chunk costs no allocation and no shared
/// reference count (an `Arc<str>` here cost an atomic operation per chunk and per message).
///
/// Holds up to [`ProcessName::MAX_LEN`] bytes: a kernel `comm` (at most 15 bytes) always fits, even with each
/// byte that is not UTF-8 replaced by U+FFFD. A longer name is cut at a character boundary.
///
/// ```
/// use fathom_model::ProcessName;
/// let name = ProcessName::new("nginx");
/// assert_eq!(&*name, "nginx");
/// assert_eq!(name.to_string(), "nginx");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessName {
    len: u8,
    buf: [u8; ProcessName::MAX_LEN],
}

impl ProcessName {
    /// The longest name held, in bytes.
    pub const MAX_LEN: usize = 47;

    /// `name`, cut to [`ProcessName::MAX_LEN`] bytes at a character boundary.
    pub fn new(name: &str) -> ProcessName {
        let mut len = name.len().min(Self::MAX_LEN);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut buf = [0u8; Self::MAX_LEN];
        buf[..len].copy_from_slice(&name.as_bytes()[..len]);
        ProcessName {
            len: len as u8,
            buf,
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Always valid: copied from a `str`, cut at a character boundary.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Default for ProcessName {
    fn default() -> Self {
        ProcessName::new("")
    }
}

impl std::ops::Deref for ProcessName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for ProcessName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for ProcessName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl From<&str> for ProcessName {
    fn from(name: &str) -> Self {
        ProcessName::new(name)
    }
}

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
        comm: ProcessName,
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

#[cfg(test)]
mod tests {
    use super::ProcessName;

    #[test]
    fn process_names_are_kept_or_cut_at_a_character_boundary() {
        assert_eq!(&*ProcessName::new(""), "");
        assert_eq!(&*ProcessName::default(), "");
        let comm = String::from_utf8_lossy(
            b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4\xf3\xf2\xf1",
        );
        assert_eq!(&*ProcessName::new(&comm), comm, "a lossy 15-byte comm fits");
        let long = "é".repeat(30);
        let cut = ProcessName::new(&long);
        assert_eq!(cut.len(), 46);
        assert!(long.starts_with(&*cut));
        assert_eq!(format!("{cut:?}"), format!("{:?}", "é".repeat(23)));
    }
}
