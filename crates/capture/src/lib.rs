//! # fathom-capture
//!
//! Packets in, ordered byte streams out. This crate reads pcap and pcapng files (plain or gzip, any size, in
//! constant memory), decodes link layers (Ethernet with 802.1Q/QinQ, Linux SLL and SLL2, raw IP, BSD
//! NULL/LOOP), IPv4 (with bounded fragment reassembly) and IPv6 (with extension headers), TCP and UDP; tracks
//! flows in a bounded table; reassembles TCP per direction; and emits [`fathom_model::StreamEvent`]s: payload
//! chunks in order (with explicit gaps) and one [`fathom_model::FlowEnd`] per flow with its L4 statistics.
//!
//! The layers:
//! - [`PacketSource`]: anything that yields raw [`Packet`]s ([`FileSource`] here; live sources plug in the same
//!   way);
//! - [`FlowTable`]: decode, flows, reassembly; `process(packet) -> events`;
//! - [`EventSource`] / [`PacketCapture`]: a packet source and a flow table together, yielding events in batches.
//! - `ebpf::EbpfSource` (feature `ebpf`, Linux): live socket data of the host's processes from eBPF syscall
//!   tracepoints, as the same events (chunks with [`fathom_model::ChunkOrigin::Syscall`]).
//! - `afpacket::AfPacketCapture` (feature `afpacket`, Linux): live packets from a network interface through an
//!   `AF_PACKET` `TPACKET_V3` ring (optional classic BPF filter, fanout over several threads), as the same events
//!   as a capture file. See `docs/afpacket.md`.
//!
//! ```
//! use fathom_capture::{Config, EventSource, FileSource, PacketCapture};
//! use fathom_model::StreamEvent;
//!
//! let bytes = include_bytes!("../../../examples/data/http1.pcap");
//! let src = FileSource::from_reader(std::io::Cursor::new(&bytes[..])).unwrap();
//! let mut cap = PacketCapture::new(src, Config::default());
//! let (mut chunks, mut flows) = (0, 0);
//! let mut events = Vec::new();
//! loop {
//!     let more = cap.next_events(&mut events).unwrap();
//!     for e in events.drain(..) {
//!         match e {
//!             StreamEvent::Chunk(_) => chunks += 1,
//!             StreamEvent::FlowEnd(_) => flows += 1,
//!         }
//!     }
//!     if !more { break; }
//! }
//! assert!(chunks > 0 && flows > 0);
//! ```
//!
//! # Flow records and tshark
//!
//! Per flow, packets and frame bytes (`frame.len`, the original length) in each direction are what
//! `tshark -z conv,tcp` / `conv,udp` count for the same conversation: TCP flows are split where tshark splits
//! streams (a SYN with a new initial sequence number on a known 5-tuple), and a closed flow lingers
//! [`Config::tcp_closed_timeout_us`] to absorb trailing ACKs. `payload_byte_*` counts sequence space seen on the
//! wire once (retransmissions excluded, bytes cut by the snap length included); `lost_byte_*` counts bytes not
//! delivered to parsers (holes, and bytes cut by the snap length). `rtt_us` is the handshake round trip at the
//! capture point: from the client's (last) SYN to its first ACK after the server's SYN-ACK, i.e. the sum of the
//! capture-to-server and capture-to-client round trips, which is the client-to-server RTT wherever the capture
//! point sits; null without a complete handshake.
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
// Unsafe code is confined to the `afpacket` module (system calls and the mmap ring); everything else forbids it.
#![cfg_attr(
    not(all(feature = "afpacket", target_os = "linux")),
    forbid(unsafe_code)
)]
#![cfg_attr(all(feature = "afpacket", target_os = "linux"), deny(unsafe_code))]

#[cfg(all(feature = "afpacket", target_os = "linux"))]
#[allow(unsafe_code)]
pub mod afpacket;
mod config;
mod counters;
pub mod decode;
#[cfg(all(feature = "ebpf", target_os = "linux"))]
pub mod ebpf;
mod error;
mod file;
mod flow;
mod frag;
mod source;
mod tcp;

#[cfg(all(feature = "afpacket", target_os = "linux"))]
pub use afpacket::{
    AfPacketCapture, AfPacketConfig, AfPacketError, AfPacketSource, AfPacketStats,
    AfPacketTelemetry, BpfProgram,
};
pub use config::Config;
pub use counters::{Counters, FragmentCounters, Undecodable};
#[cfg(all(feature = "ebpf", target_os = "linux"))]
pub use ebpf::{EbpfConfig, EbpfError, EbpfLossHandle, EbpfSource, EbpfStats};
pub use error::CaptureError;
pub use file::FileSource;
pub use flow::{dst_is_server, FlowTable, WELL_KNOWN_PORTS};
pub use source::{LinkType, Packet, PacketSource};

use fathom_model::StreamEvent;

/// Anything that yields [`StreamEvent`]s: a packet source with a flow table, or (feature `ebpf`) the eBPF
/// socket-data source `EbpfSource`.
pub trait EventSource {
    /// Append the next events to `out` (a batch, possibly empty). Returns `Ok(false)` once the input is
    /// exhausted and every flow has ended (then `out` holds the last events).
    ///
    /// # Errors
    /// When the input is damaged. The call before the error returns every event up to the damage, with all flows
    /// ended; the error comes on the following call.
    fn next_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<bool, CaptureError>;

    /// Counters so far.
    fn counters(&self) -> &Counters;

    /// Bytes of input consumed so far (for progress reporting), if known.
    fn position(&self) -> u64 {
        0
    }
}

/// A [`PacketSource`] feeding a [`FlowTable`].
#[derive(Debug)]
pub struct PacketCapture<S> {
    source: S,
    table: FlowTable,
    pending_error: Option<CaptureError>,
    done: bool,
    batch_packets: usize,
}

impl<S: PacketSource> PacketCapture<S> {
    /// Packets handled per [`EventSource::next_events`] call.
    pub const DEFAULT_BATCH_PACKETS: usize = 256;

    /// Capture from `source` with a new flow table.
    pub fn new(source: S, config: Config) -> PacketCapture<S> {
        PacketCapture {
            source,
            table: FlowTable::new(config),
            pending_error: None,
            done: false,
            batch_packets: Self::DEFAULT_BATCH_PACKETS,
        }
    }

    /// The flow table.
    pub fn table(&self) -> &FlowTable {
        &self.table
    }
}

impl<S: PacketSource> EventSource for PacketCapture<S> {
    fn next_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<bool, CaptureError> {
        if let Some(e) = self.pending_error.take() {
            return Err(e);
        }
        if self.done {
            return Ok(false);
        }
        for _ in 0..self.batch_packets {
            match self.source.next_packet() {
                Ok(Some(p)) => self.table.process(&p, out),
                Ok(None) => {
                    self.table.finish(out);
                    self.done = true;
                    return Ok(false);
                }
                Err(e) => {
                    self.table.finish(out);
                    self.done = true;
                    self.pending_error = Some(e);
                    return Ok(true);
                }
            }
        }
        Ok(true)
    }

    fn counters(&self) -> &Counters {
        self.table.counters()
    }

    fn position(&self) -> u64 {
        self.source.position()
    }
}

/// Read a whole capture file and pass every event to `f`.
///
/// Returns the counters, and an error when the file cannot be opened or is damaged: `f` has then seen every
/// event before the damage (all flows ended).
pub fn read_file(
    path: impl AsRef<std::path::Path>,
    config: Config,
    mut f: impl FnMut(StreamEvent),
) -> (Counters, Result<(), CaptureError>) {
    let src = match FileSource::open(path) {
        Ok(s) => s,
        Err(e) => return (Counters::default(), Err(e)),
    };
    let mut cap = PacketCapture::new(src, config);
    let mut events = Vec::with_capacity(1024);
    loop {
        let more = match cap.next_events(&mut events) {
            Ok(m) => m,
            Err(e) => return (cap.counters().clone(), Err(e)),
        };
        for e in events.drain(..) {
            f(e);
        }
        if !more {
            return (cap.counters().clone(), Ok(()));
        }
    }
}
