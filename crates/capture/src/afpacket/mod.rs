//! Live capture from a network interface with an `AF_PACKET` socket and a `TPACKET_V3` mmap ring (feature
//! `afpacket`, Linux, root or `CAP_NET_RAW`).
//!
//! - [`AfPacketSocket`]: one packet socket bound to one interface, with its receive ring (block size, block count,
//!   frame size and block timeout from [`AfPacketConfig`]), an optional classic BPF filter ([`BpfProgram`], the
//!   format `tcpdump -ddd EXPR` prints), and optionally a member of a `PACKET_FANOUT` hash group.
//! - [`AfPacketSource`]: one socket as a [`PacketSource`] (use it with [`crate::PacketCapture`]).
//! - [`AfPacketCapture`]: the [`EventSource`] the agent uses: [`AfPacketConfig::threads`] sockets in one
//!   `PACKET_FANOUT_HASH` group, each read by its own thread with its own [`FlowTable`]; the threads' events are
//!   merged into one stream.
//!
//! ```no_run
//! use fathom_capture::{AfPacketCapture, AfPacketConfig, Config, EventSource};
//! use fathom_model::StreamEvent;
//!
//! let mut config = AfPacketConfig::new("lo");
//! config.threads = 2;
//! config.run_for = Some(std::time::Duration::from_secs(5));
//! let mut cap = AfPacketCapture::start(&config, &Config::default())?;
//! let mut events = Vec::new();
//! while cap.next_events(&mut events)? {
//!     for e in events.drain(..) {
//!         if let StreamEvent::Chunk(c) = e {
//!             println!("{:?} {} bytes", c.flow, c.bytes.len());
//!         }
//!     }
//! }
//! println!("{:?}", cap.telemetry().snapshot());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How it works
//!
//! The kernel fills ring blocks with packets and hands a block to user space by setting `TP_STATUS_USER` in its
//! descriptor (when the block is full, or when [`AfPacketConfig::block_timeout_ms`] passes). The reader copies the
//! used part of the block out once (one `memcpy` per block; every packet is then a zero-copy [`Bytes`](bytes::Bytes) slice of
//! that copy, and all header parsing works on the copy with bounds checks), and gives the block back at once, so
//! that a slow flow table never holds ring space. Timestamps are the kernel's receive times
//! (`tp_sec`/`tp_nsec` of the `tpacket3_hdr`, nanoseconds truncated to µs); `orig_len` is `tp_len`, and packets
//! are cut to [`AfPacketConfig::snap_len`] bytes (a BPF filter's return value can cut them further, in the kernel).
//!
//! Link types: Ethernet and loopback devices (`ARPHRD_ETHER`, `ARPHRD_LOOPBACK`; Linux `lo` carries an Ethernet
//! header with zero MAC addresses) are captured with `SOCK_RAW` as [`LinkType::ETHERNET`]; other devices (tun,
//! GRE, ...) with `SOCK_DGRAM`, i.e. from the network header on, as [`LinkType::RAW`]. A BPF filter must be
//! compiled for that link type (`tcpdump -i IFACE -ddd EXPR`). VLAN tags that the driver stripped (hardware
//! offload) are not re-inserted: flows are keyed by addresses and ports only.
//!
//! Loopback: every packet sent on `lo` is seen twice, once outgoing and once incoming. On loopback devices the
//! outgoing copy (`PACKET_OUTGOING`) is skipped and counted ([`AfPacketStats::outgoing_skipped`]); on other
//! devices outgoing packets are the host's own traffic and are kept.
//!
//! Fanout: with [`AfPacketConfig::threads`] > 1 the sockets form one `PACKET_FANOUT_HASH` group (kernel-assigned
//! unique id, `PACKET_FANOUT_FLAG_DEFRAG` so that IPv4 fragments follow their datagram). The kernel's fanout hash
//! is symmetric (both directions of a connection hash alike), so every packet of a flow lands on the same socket
//! and the same thread: each thread owns a complete, independent [`FlowTable`], and no flow state is shared.
//! Flow ids are made unique across threads (`(id - 1) * threads + thread + 1`), so the parse stage sees one flow
//! per id as with a single table. Events of different threads interleave in arrival order of their batches.
//! Each socket starts with a drop-everything filter until it has joined the group (then gets the real filter),
//! so no packet lands on a socket before fanout is in place.
//!
//! Counters: the flow tables' [`Counters`] (summed over threads), and [`AfPacketStats`]: packets and bytes read
//! from the rings, kernel drops and ring freezes (`PACKET_STATISTICS`: `tp_drops`, `tp_freeze_q_cnt`), outgoing
//! copies skipped.
//!
//! # Why hand-written
//!
//! On crates.io, `af_packet` (GPL-3.0, unmaintained since 2020, nom 5) cannot be used under this project's
//! license, `pnet` has no `TPACKET_V3` ring, and `netring` (young, dozens of breaking 0.x releases) brings its own
//! flow tracking and a large dependency tree for what is here a few system calls. The system calls go through
//! `libc`. All `unsafe` code of the crate is in this module, each block with its `SAFETY` argument: the
//! `setsockopt`/`getsockopt`/`ioctl`/`bind`/`poll` calls with pointers to live, correctly sized values, the
//! `mmap`/`munmap` of the ring, the atomic access to a block's status word, and the copy out of a block that the
//! kernel handed over. Everything read from a block is parsed from the copy with checked bounds: a corrupt block
//! is counted ([`AfPacketStats::malformed_blocks`]) and skipped, never trusted.

mod bpf;
mod ring;

pub use bpf::{BpfInsn, BpfProgram};
pub use ring::AfPacketSocket;

use crate::source::{LinkType, Packet, PacketSource};
use crate::{CaptureError, Config, Counters, EventSource, FlowTable};
use fathom_model::StreamEvent;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Settings of an AF_PACKET capture. [`AfPacketConfig::validate`] checks them (the constructors call it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Interface name (`lo`, `eth0`, a veth end ...).
    pub iface: String,
    /// Bytes per ring block: a multiple of the page size, at most [`AfPacketConfig::MAX_BLOCK_SIZE`]. A packet
    /// larger than a block is cut to it.
    pub block_size: u32,
    /// Blocks per ring (per socket): at least 2; the ring is `block_size * block_count` bytes, at most
    /// [`AfPacketConfig::MAX_RING_BYTES`].
    pub block_count: u32,
    /// Frame size: a multiple of 16 dividing `block_size`, at least [`AfPacketConfig::MIN_FRAME_SIZE`]. With
    /// `TPACKET_V3` frames are variable-sized; this only sets the kernel's frame count.
    pub frame_size: u32,
    /// A partly filled block is handed to user space after this many milliseconds (latency bound), 1..=10000.
    pub block_timeout_ms: u32,
    /// Bytes kept per packet (from the link-layer header), at least 64.
    pub snap_len: u32,
    /// Sockets and threads in one fanout group, 1..=[`AfPacketConfig::MAX_THREADS`] (1: no fanout).
    pub threads: usize,
    /// Classic BPF filter applied in the kernel, if any.
    pub filter: Option<BpfProgram>,
    /// Put the interface in promiscuous mode while capturing (`PACKET_MR_PROMISC`).
    pub promiscuous: bool,
    /// How long one wait for a ring block lasts before the reader checks for stop and advances idle flows.
    pub poll_timeout: Duration,
    /// Stop by itself after this long; `None`: until [`AfPacketCapture::stop_handle`] is set.
    pub run_for: Option<Duration>,
}

impl AfPacketConfig {
    /// Default [`AfPacketConfig::block_size`]: 1 MiB.
    pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;
    /// Default [`AfPacketConfig::block_count`]: 64 (a 64 MiB ring per socket).
    pub const DEFAULT_BLOCK_COUNT: u32 = 64;
    /// Default [`AfPacketConfig::frame_size`].
    pub const DEFAULT_FRAME_SIZE: u32 = 2048;
    /// Default [`AfPacketConfig::block_timeout_ms`].
    pub const DEFAULT_BLOCK_TIMEOUT_MS: u32 = 10;
    /// Default [`AfPacketConfig::snap_len`] (tcpdump's default).
    pub const DEFAULT_SNAP_LEN: u32 = 262_144;
    /// Largest [`AfPacketConfig::block_size`].
    pub const MAX_BLOCK_SIZE: u32 = 128 << 20;
    /// Largest ring (`block_size * block_count`) per socket.
    pub const MAX_RING_BYTES: u64 = 4 << 30;
    /// Smallest [`AfPacketConfig::frame_size`] (a `tpacket3_hdr` with its `sockaddr_ll`, aligned).
    pub const MIN_FRAME_SIZE: u32 = 128;
    /// Most fanout threads.
    pub const MAX_THREADS: usize = 64;

    /// Defaults for capturing on `iface`.
    pub fn new(iface: impl Into<String>) -> AfPacketConfig {
        AfPacketConfig {
            iface: iface.into(),
            block_size: Self::DEFAULT_BLOCK_SIZE,
            block_count: Self::DEFAULT_BLOCK_COUNT,
            frame_size: Self::DEFAULT_FRAME_SIZE,
            block_timeout_ms: Self::DEFAULT_BLOCK_TIMEOUT_MS,
            snap_len: Self::DEFAULT_SNAP_LEN,
            threads: 1,
            filter: None,
            promiscuous: false,
            poll_timeout: Duration::from_millis(100),
            run_for: None,
        }
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`AfPacketError::Config`] naming the first bad field.
    pub fn validate(&self) -> Result<(), AfPacketError> {
        let bad =
            |field: &'static str, reason: String| Err(AfPacketError::Config { field, reason });
        if self.iface.is_empty() || self.iface.len() >= libc::IFNAMSIZ {
            return bad(
                "iface",
                format!(
                    "interface names are 1 to {} bytes, `{}` has {}",
                    libc::IFNAMSIZ - 1,
                    self.iface,
                    self.iface.len()
                ),
            );
        }
        if self
            .iface
            .bytes()
            .any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace())
        {
            return bad(
                "iface",
                format!(
                    "`{}` is not a valid interface name",
                    self.iface.escape_debug()
                ),
            );
        }
        let page = ring::page_size();
        if self.block_size == 0
            || !self.block_size.is_multiple_of(page)
            || self.block_size > Self::MAX_BLOCK_SIZE
        {
            return bad(
                "block_size",
                format!(
                    "{} is not a multiple of the page size ({page}) between {page} and {}",
                    self.block_size,
                    Self::MAX_BLOCK_SIZE
                ),
            );
        }
        if self.block_count < 2 {
            return bad(
                "block_count",
                format!("{} blocks: at least 2 are needed", self.block_count),
            );
        }
        let ring = u64::from(self.block_size) * u64::from(self.block_count);
        if ring > Self::MAX_RING_BYTES {
            return bad(
                "block_count",
                format!(
                    "a ring of {ring} bytes exceeds {} bytes",
                    Self::MAX_RING_BYTES
                ),
            );
        }
        if self.frame_size < Self::MIN_FRAME_SIZE
            || !self.frame_size.is_multiple_of(16)
            || self.frame_size > self.block_size
            || !self.block_size.is_multiple_of(self.frame_size)
        {
            return bad(
                "frame_size",
                format!(
                    "{} must be a multiple of 16, at least {}, dividing the block size {}",
                    self.frame_size,
                    Self::MIN_FRAME_SIZE,
                    self.block_size
                ),
            );
        }
        if !(1..=10_000).contains(&self.block_timeout_ms) {
            return bad(
                "block_timeout_ms",
                format!("{} is outside 1..=10000", self.block_timeout_ms),
            );
        }
        if self.snap_len < 64 {
            return bad("snap_len", format!("{} is below 64 bytes", self.snap_len));
        }
        if !(1..=Self::MAX_THREADS).contains(&self.threads) {
            return bad(
                "threads",
                format!("{} is outside 1..={}", self.threads, Self::MAX_THREADS),
            );
        }
        if self.poll_timeout.is_zero() || self.poll_timeout > Duration::from_secs(10) {
            return bad(
                "poll_timeout",
                format!("{:?} is outside (0, 10 s]", self.poll_timeout),
            );
        }
        Ok(())
    }
}

/// Why an AF_PACKET capture could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AfPacketError {
    /// A setting is invalid.
    #[error("invalid AF_PACKET setting `{field}`: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The interface does not exist (in this network namespace).
    #[error("no network interface named `{0}` (see `ip link`)")]
    NoSuchInterface(String),
    /// A system call failed.
    #[error("{op} on interface `{iface}` failed: {source}{}", if source.raw_os_error() == Some(libc::EPERM) { " (needs root or CAP_NET_RAW)" } else { "" })]
    Sys {
        /// The operation (`socket`, `setsockopt(PACKET_RX_RING)`, `mmap`, `poll` ...).
        op: &'static str,
        /// The interface.
        iface: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A BPF filter program text is malformed.
    #[error("BPF filter program, line {line}: {reason}")]
    Filter {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A capture thread could not be started.
    #[error("starting a capture thread failed: {0}")]
    Thread(#[source] std::io::Error),
}

impl From<AfPacketError> for CaptureError {
    fn from(e: AfPacketError) -> CaptureError {
        CaptureError::Io {
            offset: 0,
            source: std::io::Error::other(e),
        }
    }
}

/// Counters of the AF_PACKET rings (summed over sockets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AfPacketStats {
    /// Packets delivered (after the filter and the outgoing-copy skip).
    pub packets: u64,
    /// Original (on the wire) bytes of the delivered packets.
    pub bytes: u64,
    /// Packets the kernel passed the filter for this socket (`tp_packets`, drops included).
    pub kernel_packets: u64,
    /// Packets the kernel dropped because the ring was full (`tp_drops`).
    pub kernel_drops: u64,
    /// Times the ring was frozen because every block was in user space (`tp_freeze_q_cnt`).
    pub kernel_freezes: u64,
    /// Outgoing copies skipped on loopback devices.
    pub outgoing_skipped: u64,
    /// Packets cut by [`AfPacketConfig::snap_len`] or the kernel (captured shorter than on the wire).
    pub truncated: u64,
    /// Ring blocks read.
    pub blocks: u64,
    /// Blocks or packet headers that were inconsistent (skipped; should stay 0).
    pub malformed_blocks: u64,
}

/// Shared, lock-free [`AfPacketStats`]: one atomic add per update, readable from any thread.
#[derive(Debug, Default)]
pub struct AfPacketTelemetry {
    packets: AtomicU64,
    bytes: AtomicU64,
    kernel_packets: AtomicU64,
    kernel_drops: AtomicU64,
    kernel_freezes: AtomicU64,
    outgoing_skipped: AtomicU64,
    truncated: AtomicU64,
    blocks: AtomicU64,
    malformed_blocks: AtomicU64,
}

impl AfPacketTelemetry {
    /// A snapshot.
    pub fn snapshot(&self) -> AfPacketStats {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AfPacketStats {
            packets: r(&self.packets),
            bytes: r(&self.bytes),
            kernel_packets: r(&self.kernel_packets),
            kernel_drops: r(&self.kernel_drops),
            kernel_freezes: r(&self.kernel_freezes),
            outgoing_skipped: r(&self.outgoing_skipped),
            truncated: r(&self.truncated),
            blocks: r(&self.blocks),
            malformed_blocks: r(&self.malformed_blocks),
        }
    }
}

fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One AF_PACKET socket as a [`PacketSource`]: [`PacketSource::next_packet`] blocks until a packet arrives, and
/// returns `Ok(None)` once stopped ([`AfPacketSource::stop_handle`], or [`AfPacketConfig::run_for`]) and the ring
/// is drained. [`AfPacketConfig::threads`] is ignored (one socket, no fanout).
#[derive(Debug)]
pub struct AfPacketSource {
    socket: AfPacketSocket,
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
    draining: Option<Instant>,
}

impl AfPacketSource {
    /// Open the socket and start capturing.
    ///
    /// # Errors
    /// [`AfPacketError`]: invalid settings, unknown interface, or a failed system call (permissions ...).
    pub fn open(config: &AfPacketConfig) -> Result<AfPacketSource, AfPacketError> {
        config.validate()?;
        let mut socket = AfPacketSocket::open(config, None, Arc::default())?;
        socket.install_filter(config.filter.as_ref())?;
        Ok(AfPacketSource {
            socket,
            stop: Arc::default(),
            deadline: config.run_for.map(|d| Instant::now() + d),
            draining: None,
        })
    }

    /// Set to stop the capture (from any thread).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The socket's counters.
    pub fn stats(&mut self) -> AfPacketStats {
        self.socket.refresh_kernel_stats();
        self.socket.telemetry().snapshot()
    }
}

impl PacketSource for AfPacketSource {
    fn next_packet(&mut self) -> Result<Option<Packet>, CaptureError> {
        loop {
            if self.draining.is_none()
                && (self.stop.load(Ordering::Relaxed)
                    || self.deadline.is_some_and(|d| Instant::now() >= d))
            {
                self.draining = Some(Instant::now() + self.socket.drain_time());
            }
            let timeout = match self.draining {
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        if let Some(p) = self.socket.recv(Duration::ZERO)? {
                            return Ok(Some(p));
                        }
                        self.socket.refresh_kernel_stats();
                        return Ok(None);
                    }
                    left
                }
                None => self.socket.poll_timeout(),
            };
            if let Some(p) = self.socket.recv(timeout)? {
                return Ok(Some(p));
            }
        }
    }
}

/// A message from a capture thread.
enum Msg {
    Batch {
        thread: usize,
        events: Vec<StreamEvent>,
        counters: Box<Counters>,
    },
    Done {
        thread: usize,
        counters: Box<Counters>,
        result: Result<(), AfPacketError>,
    },
}

/// Batches in flight from the capture threads to [`AfPacketCapture::next_events`].
const CHANNEL_BATCHES: usize = 64;
/// Packets handled per batch at most.
const BATCH_PACKETS: usize = 256;

/// Live capture on one interface with [`AfPacketConfig::threads`] fanout sockets, each with its own thread and
/// [`FlowTable`]; an [`EventSource`] of their merged events. Stops after [`AfPacketConfig::run_for`] or when
/// [`AfPacketCapture::stop_handle`] is set: then every ring is drained, every flow ends, and `next_events` returns
/// `Ok(false)`.
pub struct AfPacketCapture {
    rx: Receiver<Msg>,
    threads: usize,
    running: usize,
    per_thread: Vec<Counters>,
    counters: Counters,
    stop: Arc<AtomicBool>,
    telemetry: Arc<AfPacketTelemetry>,
    error: Option<AfPacketError>,
    poll_timeout: Duration,
    link_type: LinkType,
}

impl std::fmt::Debug for AfPacketCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketCapture")
            .field("threads", &self.threads)
            .field("running", &self.running)
            .field("stats", &self.telemetry.snapshot())
            .finish_non_exhaustive()
    }
}

impl AfPacketCapture {
    /// Open [`AfPacketConfig::threads`] sockets (one fanout group when more than one), then start one capture
    /// thread per socket, each with a flow table configured by `flows`.
    ///
    /// # Errors
    /// [`AfPacketError`] when a setting is invalid, the interface is unknown, or a socket cannot be set up; no
    /// thread is left running then.
    pub fn start(
        config: &AfPacketConfig,
        flows: &Config,
    ) -> Result<AfPacketCapture, AfPacketError> {
        config.validate()?;
        let telemetry = Arc::new(AfPacketTelemetry::default());
        let mut sockets = Vec::with_capacity(config.threads);
        let mut group = None;
        for _ in 0..config.threads {
            let fanout = (config.threads > 1).then_some(group);
            let s = AfPacketSocket::open(config, fanout, telemetry.clone())?;
            group = s.fanout_group();
            sockets.push(s);
        }
        let link_type = sockets[0].link_type();
        // Every socket is in the group now: let packets in.
        for s in &mut sockets {
            s.install_filter(config.filter.as_ref())?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_BATCHES);
        let deadline = config.run_for.map(|d| Instant::now() + d);
        let threads = sockets.len();
        for (i, socket) in sockets.into_iter().enumerate() {
            let worker = Worker {
                thread: i,
                socket,
                table: FlowTable::new(flows.clone()),
                tx: tx.clone(),
                stop: stop.clone(),
                deadline,
            };
            if let Err(e) = std::thread::Builder::new()
                .name(format!("fathom-afpacket-{i}"))
                .spawn(move || worker.run())
            {
                stop.store(true, Ordering::Relaxed);
                return Err(AfPacketError::Thread(e));
            }
        }
        Ok(AfPacketCapture {
            rx,
            threads,
            running: threads,
            per_thread: vec![Counters::default(); threads],
            counters: Counters::default(),
            stop,
            telemetry,
            error: None,
            poll_timeout: config.poll_timeout,
            link_type,
        })
    }

    /// Set to stop the capture (from any thread).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// The ring counters, readable after the capture moved to another thread.
    pub fn telemetry(&self) -> Arc<AfPacketTelemetry> {
        self.telemetry.clone()
    }

    /// The link type of the packets.
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    fn merge_counters(&mut self) {
        let mut sum = Counters::default();
        for c in &self.per_thread {
            add_counters(&mut sum, c);
        }
        self.counters = sum;
    }

    fn remap(&self, thread: usize, events: &mut [StreamEvent]) {
        if self.threads == 1 {
            return;
        }
        let (n, t) = (self.threads as u64, thread as u64);
        for e in events {
            let id = match e {
                StreamEvent::Chunk(c) => &mut c.flow_id,
                StreamEvent::FlowEnd(f) => &mut f.flow_id,
            };
            *id = id.saturating_sub(1).saturating_mul(n).saturating_add(t + 1);
        }
    }
}

impl Drop for AfPacketCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl EventSource for AfPacketCapture {
    fn next_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<bool, CaptureError> {
        if self.running == 0 {
            return match self.error.take() {
                Some(e) => Err(e.into()),
                None => Ok(false),
            };
        }
        match self.rx.recv_timeout(self.poll_timeout) {
            Ok(Msg::Batch {
                thread,
                mut events,
                counters,
            }) => {
                self.remap(thread, &mut events);
                out.append(&mut events);
                self.per_thread[thread] = *counters;
            }
            Ok(Msg::Done {
                thread,
                counters,
                result,
            }) => {
                self.per_thread[thread] = *counters;
                self.running -= 1;
                if let Err(e) = result {
                    // One thread failing stops the others: their flows end, then the error is returned.
                    self.stop.store(true, Ordering::Relaxed);
                    self.error.get_or_insert(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => self.running = 0,
        }
        self.merge_counters();
        if self.running == 0 && self.error.is_none() {
            return Ok(false);
        }
        Ok(true)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

/// One capture thread: a socket and its flow table.
struct Worker {
    thread: usize,
    socket: AfPacketSocket,
    table: FlowTable,
    tx: SyncSender<Msg>,
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        let result = self.capture();
        let mut events = Vec::new();
        self.table.finish(&mut events);
        self.socket.refresh_kernel_stats();
        let counters = Box::new(self.table.counters().clone());
        if !events.is_empty() {
            let _ = self.tx.send(Msg::Batch {
                thread: self.thread,
                events,
                counters: counters.clone(),
            });
        }
        let _ = self.tx.send(Msg::Done {
            thread: self.thread,
            counters,
            result,
        });
    }

    fn capture(&mut self) -> Result<(), AfPacketError> {
        let mut draining: Option<Instant> = None;
        let mut last_stats = Instant::now();
        let mut events = Vec::new();
        loop {
            if draining.is_none()
                && (self.stop.load(Ordering::Relaxed)
                    || self.deadline.is_some_and(|d| Instant::now() >= d))
            {
                // Wait one block timeout so that partly filled blocks are handed over, then drain.
                draining = Some(Instant::now() + self.socket.drain_time());
            }
            let mut timeout = match draining {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => self.socket.poll_timeout(),
            };
            let mut got = 0;
            while got < BATCH_PACKETS {
                match self.socket.recv(timeout)? {
                    Some(p) => {
                        self.table.process(&p, &mut events);
                        got += 1;
                        timeout = Duration::ZERO;
                    }
                    None => break,
                }
            }
            if got == 0 {
                self.table.advance(wall_clock_us(), &mut events);
            }
            if last_stats.elapsed() >= Duration::from_secs(1) {
                last_stats = Instant::now();
                self.socket.refresh_kernel_stats();
            }
            if !events.is_empty() || got == 0 {
                let batch = std::mem::take(&mut events);
                let msg = Msg::Batch {
                    thread: self.thread,
                    events: batch,
                    counters: Box::new(self.table.counters().clone()),
                };
                if self.tx.send(msg).is_err() {
                    return Ok(()); // The consumer is gone.
                }
            }
            if got == 0 && draining.is_some_and(|d| Instant::now() >= d) {
                return Ok(());
            }
        }
    }
}

/// Add `b` into `a`, field by field (every field named, so a new counter cannot be forgotten).
fn add_counters(a: &mut Counters, b: &Counters) {
    let Counters {
        packets,
        bytes,
        tcp_packets,
        udp_packets,
        other_ip_packets,
        non_ip_packets,
        undecodable,
        fragments,
        flows_created,
        flows_evicted,
        flows_timed_out,
        flows_open_at_end,
        flows_port_reused,
        tcp_retransmissions,
        tcp_out_of_order,
        tcp_ooo_overflows,
        tcp_lost_bytes,
        chunks,
        chunk_bytes,
    } = b;
    a.packets += packets;
    a.bytes += bytes;
    a.tcp_packets += tcp_packets;
    a.udp_packets += udp_packets;
    a.other_ip_packets += other_ip_packets;
    a.non_ip_packets += non_ip_packets;
    let crate::Undecodable {
        link_type,
        link_header,
        ip_header,
        tcp_header,
        udp_header,
        ipv6_fragment,
    } = undecodable;
    a.undecodable.link_type += link_type;
    a.undecodable.link_header += link_header;
    a.undecodable.ip_header += ip_header;
    a.undecodable.tcp_header += tcp_header;
    a.undecodable.udp_header += udp_header;
    a.undecodable.ipv6_fragment += ipv6_fragment;
    let crate::FragmentCounters {
        received,
        reassembled,
        dropped_timeout,
        dropped_cap,
        dropped_invalid,
    } = fragments;
    a.fragments.received += received;
    a.fragments.reassembled += reassembled;
    a.fragments.dropped_timeout += dropped_timeout;
    a.fragments.dropped_cap += dropped_cap;
    a.fragments.dropped_invalid += dropped_invalid;
    a.flows_created += flows_created;
    a.flows_evicted += flows_evicted;
    a.flows_timed_out += flows_timed_out;
    a.flows_open_at_end += flows_open_at_end;
    a.flows_port_reused += flows_port_reused;
    a.tcp_retransmissions += tcp_retransmissions;
    a.tcp_out_of_order += tcp_out_of_order;
    a.tcp_ooo_overflows += tcp_ooo_overflows;
    a.tcp_lost_bytes += tcp_lost_bytes;
    a.chunks += chunks;
    a.chunk_bytes += chunk_bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn sources_are_send() {
        assert_send::<AfPacketCapture>();
        assert_send::<AfPacketSource>();
    }

    #[test]
    fn defaults_are_valid() {
        AfPacketConfig::new("lo").validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let field = |f: fn(&mut AfPacketConfig)| {
            let mut c = AfPacketConfig::new("lo");
            f(&mut c);
            match c.validate() {
                Err(AfPacketError::Config { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(field(|c| c.iface = String::new()), "iface");
        assert_eq!(
            field(|c| c.iface = "a-very-long-interface-name".into()),
            "iface"
        );
        assert_eq!(field(|c| c.iface = "../x".into()), "iface");
        assert_eq!(field(|c| c.block_size = 1000), "block_size");
        assert_eq!(field(|c| c.block_size = 0), "block_size");
        assert_eq!(field(|c| c.block_size = 1 << 30), "block_size");
        assert_eq!(field(|c| c.block_count = 1), "block_count");
        assert_eq!(field(|c| c.block_count = 100_000), "block_count");
        assert_eq!(field(|c| c.frame_size = 100), "frame_size");
        assert_eq!(field(|c| c.frame_size = 1 << 21), "frame_size");
        assert_eq!(field(|c| c.frame_size = 3 * 256), "frame_size");
        assert_eq!(field(|c| c.block_timeout_ms = 0), "block_timeout_ms");
        assert_eq!(field(|c| c.snap_len = 10), "snap_len");
        assert_eq!(field(|c| c.threads = 0), "threads");
        assert_eq!(field(|c| c.threads = 1000), "threads");
        assert_eq!(field(|c| c.poll_timeout = Duration::ZERO), "poll_timeout");
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let e = AfPacketCapture::start(&AfPacketConfig::new("fathomnope0"), &Config::default())
            .unwrap_err();
        assert!(
            matches!(e, AfPacketError::NoSuchInterface(ref n) if n == "fathomnope0"),
            "{e}"
        );
        assert!(e.to_string().contains("fathomnope0"));
    }

    #[test]
    fn counters_add_up() {
        let mut a = Counters {
            packets: 1,
            chunk_bytes: 5,
            ..Counters::default()
        };
        let mut b = a.clone();
        b.undecodable.tcp_header = 2;
        b.fragments.reassembled = 3;
        add_counters(&mut a, &b);
        assert_eq!((a.packets, a.chunk_bytes), (2, 10));
        assert_eq!((a.undecodable.tcp_header, a.fragments.reassembled), (2, 3));
    }
}
