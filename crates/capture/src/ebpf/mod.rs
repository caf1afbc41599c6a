//! Live capture of socket data with eBPF (feature `ebpf`, Linux >= 5.12 with BTF, root or CAP_BPF + CAP_PERFMON).
//!
//! Syscall tracepoints (`sys_exit` of `write`, `read`, `sendto`, `recvfrom`, `writev`, `readv`, `sendmsg`,
//! `recvmsg` (the first 8 iovec entries), `sendmmsg`, `recvmmsg` (their first 4 messages), `connect`, `accept`,
//! `accept4`, and `sys_enter_close`; `sched_process_exit` for process exits) see the bytes every process moves
//! through its AF_INET/AF_INET6 TCP and UDP sockets. Only the exits are hooked: there the task's saved registers
//! still hold the call's arguments. The programs apply the in-kernel filter ([`EbpfConfig::pids`],
//! [`EbpfConfig::comms`], [`EbpfConfig::cgroups`]; the agent's own process is never traced), resolve the socket
//! from the fd (cached per process and fd, checked against the fd table) and push one event per call (the first
//! [`EbpfConfig::capture_len`] bytes and the real length, the exit time, the TCP sequence number of the first
//! byte, a per-socket id and event number, the syscall trace id) into a BPF ring buffer.
//! [`EbpfSource`] turns them into the same [`StreamEvent`]s as the packet path, with
//! [`fathom_model::ChunkOrigin::Syscall`] origins. `docs/ebpf.md` describes the events and the rules.
//!
//! Each traced process gets its own flow per socket (and, for an unconnected UDP socket, per peer): a connection
//! between two traced processes on this host shows up twice, once from the client process and once from the
//! server process (`side`). The side is definite when the kernel saw `connect` (client) or `accept` (server), or
//! for UDP who sent first (client); for sockets opened before tracing started, a process whose local port is a
//! listening port (`/proc/net/tcp{,6}`) is the server, one talking to a local listening port is the client,
//! otherwise the port heuristic of [`dst_is_server`](crate::dst_is_server) decides. TCP chunks carry the TCP
//! sequence number of their first byte; bytes beyond the capture length, and bytes of lost events (found from the
//! sequence numbers), become `gap_before` of the next chunk. Lost events are counted
//! ([`EbpfStats::ring_drops`], [`EbpfStats::lost_events`]). A flow ends on `close()`, when its process exits, after
//! [`EbpfConfig::idle_timeout_us`], when the table is full ([`EbpfConfig::max_sockets`]), or when the source stops.
//!
//! TLS: uprobes on OpenSSL's `SSL_read`/`SSL_write` (and `_ex`) report the plaintext as data of the call's
//! socket, with `tls_plaintext` set, and the ciphertext of those calls is not reported (see [`ssl`] and
//! `docs/ebpf.md`).
//!
//! Not covered yet: `sendfile`/`splice`, messages of `sendmmsg`/`recvmmsg` after the fourth (counted), io_uring.

mod event;
mod flows;
pub mod ssl;

use crate::{CaptureError, Counters, EventSource};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{ProgramError, TracePoint};
use aya::{Ebpf, EbpfLoader};
use fathom_model::StreamEvent;
use flows::{ProcListenPorts, SyscallFlows};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::time::{clock_gettime, ClockId};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use event::MAX_DATA;
pub use ssl::{SslConfig, SslError};

static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_trace.bpf.o"));

/// The eBPF programs and the tracepoints they attach to: the exits of the socket calls (their arguments are read
/// from the task's saved registers there) and the entry of `close` (while the fd still names the socket).
pub const PROGRAMS: [(&str, &str); 14] = [
    ("exit_write", "sys_exit_write"),
    ("exit_read", "sys_exit_read"),
    ("exit_sendto", "sys_exit_sendto"),
    ("exit_recvfrom", "sys_exit_recvfrom"),
    ("exit_writev", "sys_exit_writev"),
    ("exit_readv", "sys_exit_readv"),
    ("exit_sendmsg", "sys_exit_sendmsg"),
    ("exit_recvmsg", "sys_exit_recvmsg"),
    ("exit_sendmmsg", "sys_exit_sendmmsg"),
    ("exit_recvmmsg", "sys_exit_recvmmsg"),
    ("exit_connect", "sys_exit_connect"),
    ("exit_accept", "sys_exit_accept"),
    ("exit_accept4", "sys_exit_accept4"),
    ("enter_close", "sys_enter_close"),
];

/// The program that reports process exits, and its tracepoint (`sched/sched_process_exit`).
const EXIT_PROGRAM: (&str, &str, &str) = ("on_process_exit", "sched", "sched_process_exit");

/// Settings of an [`EbpfSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfConfig {
    /// Payload bytes captured per syscall (the rest is counted as lost); capped to [`MAX_DATA`].
    pub capture_len: u32,
    /// Do not trace this process (the agent itself); applied in the kernel.
    pub exclude_self: bool,
    /// Trace only these processes (tgids); empty: all. At most [`MAX_FILTER_PIDS`].
    pub pids: Vec<u32>,
    /// Trace only processes with these names (`comm`, at most 15 bytes each); empty: all. At most
    /// [`MAX_FILTER_ENTRIES`].
    pub comms: Vec<String>,
    /// Trace only processes in these cgroup v2 directories or below them (e.g. `/sys/fs/cgroup/system.slice`);
    /// empty: all. At most [`MAX_FILTER_ENTRIES`].
    pub cgroups: Vec<PathBuf>,
    /// A flow with no event for this long ends (`timeout`).
    pub idle_timeout_us: u64,
    /// Sockets tracked at most in user space; past it the least recently active one ends (`evicted`).
    pub max_sockets: usize,
    /// How long one [`EventSource::next_events`] call waits for events when there are none. The kernel wakes the
    /// reader only once 1 MiB of events waits in the ring (a wakeup per event would cost the traced processes an
    /// interrupt per syscall), so this is also the longest delay of an event when traffic is light.
    pub poll_timeout: Duration,
    /// Events handled per [`EventSource::next_events`] call at most.
    pub batch_events: usize,
    /// Stop by itself (as [`EbpfSource::stop`]) after this long; `None`: run until stopped.
    pub run_for: Option<Duration>,
    /// Mount tracefs at `/sys/kernel/tracing` when no tracefs is mounted (the tracepoints need it).
    pub mount_tracefs: bool,
    /// OpenSSL plaintext tracing (uprobes on libssl).
    pub ssl: SslConfig,
}

/// Most pids [`EbpfConfig::pids`] may hold (the size of the kernel's filter map).
pub const MAX_FILTER_PIDS: usize = 256;
/// Most names or cgroups [`EbpfConfig::comms`] and [`EbpfConfig::cgroups`] may hold.
pub const MAX_FILTER_ENTRIES: usize = 64;

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            capture_len: 4096,
            exclude_self: true,
            pids: Vec::new(),
            comms: Vec::new(),
            cgroups: Vec::new(),
            idle_timeout_us: 60_000_000,
            max_sockets: 65_536,
            poll_timeout: Duration::from_millis(20),
            batch_events: 1024,
            run_for: None,
            mount_tracefs: true,
            ssl: SslConfig::default(),
        }
    }
}

/// Why the eBPF source could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbpfError {
    // The messages include the underlying error (no `source()`): aya's errors already print their own causes,
    // and a chain printer (`{:#}`) would repeat them.
    /// The object file could not be loaded (maps created, relocations applied): no BTF, no permission...
    #[error(
        "loading the eBPF object failed (needs a kernel with BTF, and root or CAP_BPF + CAP_PERFMON): {}",
        chain(.0)
    )]
    Object(aya::EbpfError),
    /// The filter settings are invalid (checked before anything is loaded).
    #[error("invalid eBPF filter: {what}: {reason}")]
    Filter {
        /// `pid`, `comm` or `cgroup`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// tracefs is not mounted and could not be mounted.
    #[error("tracefs is not mounted and mounting it at {path} failed: {source}")]
    Tracefs {
        /// Where it was to be mounted.
        path: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The object lacks a program or map this source needs (a build mismatch).
    #[error("eBPF object has no {what} `{name}`")]
    Missing {
        /// `program` or `map`.
        what: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A program was rejected by the kernel (the verifier log, when there is one, is in `verifier_log`).
    #[error("loading eBPF program `{program}` failed: {}{}", chain(source), if verifier_log.is_empty() { String::new() } else { format!("\nverifier log:\n{verifier_log}") })]
    Load {
        /// The program.
        program: &'static str,
        /// The kernel's error.
        source: ProgramError,
        /// The verifier's output, empty if none.
        verifier_log: String,
    },
    /// A program could not be attached to its tracepoint (tracefs missing, no permission, ...).
    #[error(
        "attaching eBPF program `{program}` to tracepoint `{tracepoint}` failed: {} \
         (is tracefs mounted? `mount -t tracefs nodev /sys/kernel/tracing`)",
        chain(source)
    )]
    Attach {
        /// The program.
        program: &'static str,
        /// The tracepoint.
        tracepoint: &'static str,
        /// The kernel's error.
        source: ProgramError,
    },
    /// Writing the in-kernel configuration failed.
    #[error("writing eBPF map `{name}` failed: {}", chain(source))]
    MapWrite {
        /// The map.
        name: &'static str,
        /// Why.
        source: aya::maps::MapError,
    },
    /// A map could not be opened.
    #[error("opening eBPF map `{name}` failed: {}", chain(source))]
    Map {
        /// The map.
        name: &'static str,
        /// Why.
        source: aya::maps::MapError,
    },
    /// Waiting for the ring buffer failed.
    #[error("polling the eBPF ring buffer failed: {0}")]
    Poll(std::io::Error),
    /// An OpenSSL library could not be hooked.
    #[error(transparent)]
    Ssl(#[from] SslError),
}

/// An error and its causes on one line, each cause once (aya's messages sometimes repeat their cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = c.source();
    }
    out
}

impl From<EbpfError> for CaptureError {
    fn from(e: EbpfError) -> CaptureError {
        CaptureError::Io {
            offset: 0,
            source: std::io::Error::other(e),
        }
    }
}

/// Counters specific to the eBPF source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EbpfStats {
    /// Events read from the ring buffer.
    pub events: u64,
    /// Events the kernel side could not push because the ring buffer was full (lost socket data).
    pub ring_drops: u64,
    /// Events missing from the per-socket numbering (every lost event, whatever lost it: ring drops included).
    pub lost_events: u64,
    /// Events that arrived after a later event of the same socket (ordered by the kernel's numbering).
    pub reordered_events: u64,
    /// Bytes read twice (`MSG_PEEK`) and dropped, found from the TCP sequence numbers.
    pub duplicate_bytes: u64,
    /// UDP datagrams of unconnected sockets whose peer address could not be read (not traced).
    pub no_peer: u64,
    /// Messages of `sendmmsg`/`recvmmsg` calls after the fourth (the first four are captured).
    pub mmsg_skipped: u64,
    /// Socket calls not traced because the kernel could not give the thread its state (task storage: out of
    /// memory, or busy on that CPU); their data is lost.
    pub untraced_calls: u64,
    /// Sockets ended because the user-space table was full ([`EbpfConfig::max_sockets`]).
    pub sockets_evicted: u64,
    /// Records that could not be parsed (should stay 0).
    pub malformed: u64,
    /// Sockets tracked now (after the last call to `next_events`).
    pub live_sockets: u64,
    /// Flows open now.
    pub live_flows: u64,
    /// Where tracefs was mounted by this source, if it had to.
    pub tracefs_mounted: Option<PathBuf>,
    /// TLS plaintext events (from OpenSSL uprobes).
    pub ssl_plaintext_events: u64,
    /// Ciphertext syscalls made inside OpenSSL calls, not reported (their plaintext is).
    pub ssl_ciphertext_suppressed: u64,
    /// Ciphertext events of sockets that already produced plaintext, dropped in user space (syscalls made
    /// outside OpenSSL calls).
    pub ssl_ciphertext_dropped: u64,
    /// OpenSSL calls whose socket was never seen (memory BIOs, or a connection older than the agent whose
    /// calls are all served from OpenSSL's buffer): their plaintext is lost.
    pub ssl_unknown_socket: u64,
    /// OpenSSL libraries hooked (paths).
    pub ssl_libraries: Vec<String>,
}

/// A shared view of the loss counters that stays readable after the source moved to another thread.
#[derive(Debug, Clone, Default)]
pub struct EbpfLossHandle {
    /// [`EbpfStats::ring_drops`].
    pub ring_drops: Arc<AtomicU64>,
    /// [`EbpfStats::lost_events`].
    pub lost_events: Arc<AtomicU64>,
    /// [`EbpfStats::events`].
    pub events: Arc<AtomicU64>,
    /// [`EbpfStats::untraced_calls`].
    pub untraced_calls: Arc<AtomicU64>,
}

/// Live socket data of the processes on this host, from eBPF syscall tracepoints.
///
/// ```no_run
/// use fathom_capture::{EbpfConfig, EbpfSource, EventSource};
///
/// // The socket data of nginx processes, 30 seconds (root needed).
/// let mut src = EbpfSource::start(EbpfConfig {
///     comms: vec!["nginx".into()],
///     run_for: Some(std::time::Duration::from_secs(30)),
///     ..EbpfConfig::default()
/// })?;
/// let mut events = Vec::new();
/// while src.next_events(&mut events)? {
///     for e in events.drain(..) {
///         println!("{e:?}");
///     }
/// }
/// println!("{:?}", src.stats());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EbpfSource {
    /// `None` once stopped (dropping it detaches the programs).
    ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    kstats: PerCpuArray<MapData, u64>,
    flows: SyscallFlows<ProcListenPorts>,
    config: EbpfConfig,
    counters: Counters,
    stats: EbpfStats,
    last_expire: Instant,
    started: Instant,
    loss: EbpfLossHandle,
    ssl: ssl::SslHooks,
    ssl_counters: Option<PerCpuArray<MapData, u64>>,
    last_rescan: Instant,
    /// Set from any thread to stop (see [`EbpfSource::stop_handle`]).
    stop_flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    done: bool,
}

impl std::fmt::Debug for EbpfSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfSource")
            .field("running", &self.ebpf.is_some())
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn clock_ns(id: ClockId) -> i128 {
    clock_gettime(id).map_or(0, |t| {
        i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
    })
}

fn monotonic_ns() -> u64 {
    u64::try_from(clock_ns(ClockId::CLOCK_MONOTONIC)).unwrap_or(0)
}

impl EbpfSource {
    /// Load the programs, attach them to the syscall tracepoints and start capturing.
    ///
    /// # Errors
    /// [`EbpfError`] naming the program (with the verifier log) or map that failed, or the invalid filter;
    /// nothing stays attached.
    pub fn start(config: EbpfConfig) -> Result<EbpfSource, EbpfError> {
        let filters = Filters::from_config(&config)?;
        // `tasks` is a task-storage map, which aya creates but has no Rust type for: user space never reads it.
        let mut ebpf = EbpfLoader::new()
            .allow_unsupported_maps()
            .load(BPF_OBJECT)
            .map_err(EbpfError::Object)?;
        filters.write(&mut ebpf, &config)?;
        let tracefs_mounted = if config.mount_tracefs {
            ensure_tracefs()?
        } else {
            None
        };
        attach_syscall_programs(&mut ebpf)?;
        let (name, category, tracepoint) = EXIT_PROGRAM;
        attach_tracepoint(&mut ebpf, name, category, tracepoint)?;
        // Limited to given processes only: hook OpenSSL in those processes alone (see `SslHooks::scope_pids`).
        let ssl_scope: &[u32] = if config.comms.is_empty() && config.cgroups.is_empty() {
            &config.pids
        } else {
            &[]
        };
        let ssl = ssl::SslHooks::start(&mut ebpf, &config.ssl, ssl_scope)?;
        let ssl_counters = match ebpf.take_map("ssl_counters") {
            Some(m) => Some(PerCpuArray::try_from(m).map_err(|source| EbpfError::Map {
                name: "ssl_counters",
                source,
            })?),
            None => None,
        };
        let ring = ebpf.take_map("events").ok_or(EbpfError::Missing {
            what: "map",
            name: "events",
        })?;
        let ring = RingBuf::try_from(ring).map_err(|source| EbpfError::Map {
            name: "events",
            source,
        })?;
        let kstats = ebpf.take_map("stats").ok_or(EbpfError::Missing {
            what: "map",
            name: "stats",
        })?;
        let kstats = PerCpuArray::try_from(kstats).map_err(|source| EbpfError::Map {
            name: "stats",
            source,
        })?;
        let offset = clock_ns(ClockId::CLOCK_REALTIME) - clock_ns(ClockId::CLOCK_MONOTONIC);
        Ok(EbpfSource {
            ebpf: Some(ebpf),
            ring,
            kstats,
            flows: SyscallFlows::new(
                ProcListenPorts::default(),
                offset,
                config.idle_timeout_us,
                config.max_sockets,
            ),
            config,
            counters: Counters::default(),
            stats: EbpfStats {
                tracefs_mounted,
                ssl_libraries: ssl.attached.clone(),
                ..EbpfStats::default()
            },
            ssl,
            ssl_counters,
            last_rescan: Instant::now(),
            stop_flag: std::sync::Arc::default(),
            last_expire: Instant::now(),
            started: Instant::now(),
            loss: EbpfLossHandle::default(),
            done: false,
        })
    }

    /// Detach the programs. Events already in the ring buffer are still delivered; then every flow ends and
    /// [`EventSource::next_events`] returns `Ok(false)`.
    pub fn stop(&mut self) {
        self.refresh_drops();
        self.ebpf = None;
    }

    /// A flag that stops the source when set, from any thread (e.g. a signal handler's): the next call to
    /// [`EventSource::next_events`] detaches the programs as [`EbpfSource::stop`] does, then delivers what is left.
    pub fn stop_handle(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop_flag.clone()
    }

    /// eBPF-specific counters (ring-buffer drops as of the last call to `next_events` or `stop`).
    pub fn stats(&self) -> &EbpfStats {
        &self.stats
    }

    /// A shared view of the loss counters that stays readable after the source moved to another thread.
    pub fn loss_handle(&self) -> EbpfLossHandle {
        self.loss.clone()
    }

    fn refresh_drops(&mut self) {
        let sum = |i: u32| self.kstats.get(&i, 0).map(|v| v.iter().sum::<u64>());
        if let Ok(v) = sum(STAT_RING_DROPS) {
            self.stats.ring_drops = v;
        }
        if let Ok(v) = sum(STAT_NO_PEER) {
            self.stats.no_peer = v;
        }
        if let Some(c) = &self.ssl_counters {
            let sum = |i: u32| c.get(&i, 0).map_or(0, |v| v.iter().sum::<u64>());
            self.stats.ssl_ciphertext_suppressed = sum(ssl::CNT_SUPPRESSED);
            self.stats.ssl_unknown_socket = sum(ssl::CNT_NO_FD);
        }
        self.stats.ssl_libraries.clone_from(&self.ssl.attached);
        if let Ok(v) = sum(STAT_MMSG_SKIPPED) {
            self.stats.mmsg_skipped = v;
        }
        if let Ok(v) = sum(STAT_NO_THREAD_STATE) {
            self.stats.untraced_calls = v;
        }
        let f = self.flows.stats();
        self.stats.ssl_plaintext_events = f.tls_events;
        self.stats.ssl_ciphertext_dropped = f.tls_ciphertext_dropped;
        self.stats.lost_events = f.lost_events;
        self.stats.reordered_events = f.reordered_events;
        self.stats.duplicate_bytes = f.duplicate_bytes;
        self.stats.sockets_evicted = f.sockets_evicted;
        let (sockets, flows) = self.flows.live();
        self.stats.live_sockets = sockets as u64;
        self.stats.live_flows = flows as u64;
        self.loss
            .ring_drops
            .store(self.stats.ring_drops, Ordering::Relaxed);
        self.loss
            .lost_events
            .store(self.stats.lost_events, Ordering::Relaxed);
        self.loss.events.store(self.stats.events, Ordering::Relaxed);
        self.loss
            .untraced_calls
            .store(self.stats.untraced_calls, Ordering::Relaxed);
    }

    /// Drain up to `batch_events` records from the ring buffer; returns how many.
    fn drain(&mut self, out: &mut Vec<StreamEvent>) -> usize {
        let mut n = 0;
        while n < self.config.batch_events {
            let Some(item) = self.ring.next() else { break };
            n += 1;
            self.stats.events += 1;
            match event::SockEvent::parse(&item) {
                Some(e) => self.flows.push(&e, &mut self.counters, out),
                None => self.stats.malformed += 1,
            }
        }
        n
    }
}

/// `FATHOM_STAT_RING_DROPS`, `FATHOM_STAT_NO_PEER`, ... (indexes of the kernel's `stats` map).
const STAT_RING_DROPS: u32 = 0;
const STAT_NO_PEER: u32 = 1;
const STAT_MMSG_SKIPPED: u32 = 2;
const STAT_NO_THREAD_STATE: u32 = 3;
/// `FATHOM_FILTER_*`.
const FILTER_PID: u32 = 1;
const FILTER_COMM: u32 = 2;
const FILTER_CGROUP: u32 = 4;
/// `FATHOM_COMM_LEN`.
const COMM_LEN: usize = 16;

/// Load and attach the [`PROGRAMS`] of `ebpf` to their syscall tracepoints.
fn attach_syscall_programs(ebpf: &mut Ebpf) -> Result<(), EbpfError> {
    for (name, tracepoint) in PROGRAMS {
        attach_tracepoint(ebpf, name, "syscalls", tracepoint)?;
    }
    Ok(())
}

/// Load the program `name` of `ebpf` and attach it to the tracepoint `category/tracepoint`.
fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    tracepoint: &'static str,
) -> Result<(), EbpfError> {
    let prog = load_program(ebpf, name)?;
    prog.attach(category, tracepoint)
        .map_err(|source| EbpfError::Attach {
            program: name,
            tracepoint,
            source,
        })?;
    Ok(())
}

static NOOP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/noop.bpf.o"));

/// The hooking floor, for overhead benchmarks: empty programs (`bpf/noop.bpf.c`) attached to the same syscall
/// tracepoints as an [`EbpfSource`]'s ([`PROGRAMS`]) and, when `ssl` is enabled, to the same OpenSSL functions,
/// detached on drop. What tracing costs the traced processes before the programs do any work (the syscall slow
/// path, the tracepoint, the program call; the uprobe traps): no tracer built on these hooks can cost less.
///
/// ```no_run
/// use fathom_capture::ebpf::{NoopProbes, SslConfig};
///
/// let floor = NoopProbes::attach(&SslConfig::default(), &[])?; // root needed
/// // ... measure the workload ...
/// drop(floor);
/// # Ok::<(), fathom_capture::EbpfError>(())
/// ```
pub struct NoopProbes {
    /// The reader of the copying floor's ring ([`NoopProbes::attach_copying`]): its stop flag and thread.
    drain: Option<(
        Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
    _ssl: ssl::SslHooks,
    _ebpf: Ebpf,
}

impl Drop for NoopProbes {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.drain.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for NoopProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoopProbes").finish_non_exhaustive()
    }
}

impl NoopProbes {
    /// Load the empty programs and attach them (mounting tracefs when absent); the OpenSSL ones as an
    /// [`EbpfSource`] with this `ssl` configuration would, in the processes `ssl_scope_pids` (all when empty).
    ///
    /// # Errors
    /// [`EbpfError`] naming the program that failed to load or attach.
    pub fn attach(ssl: &SslConfig, ssl_scope_pids: &[u32]) -> Result<NoopProbes, EbpfError> {
        let mut ebpf = EbpfLoader::new()
            .load(NOOP_OBJECT)
            .map_err(EbpfError::Object)?;
        ensure_tracefs()?;
        attach_syscall_programs(&mut ebpf)?;
        let ssl = ssl::SslHooks::start(&mut ebpf, ssl, ssl_scope_pids)?;
        Ok(NoopProbes {
            drain: None,
            _ssl: ssl,
            _ebpf: ebpf,
        })
    }

    /// The other way to hook syscalls without kprobes: empty programs on the raw tracepoints `sys_enter` and
    /// `sys_exit` (run for every syscall of every process, without the per-syscall tracepoints' perf record).
    ///
    /// # Errors
    /// [`EbpfError`] naming the program that failed to load or attach.
    pub fn attach_raw() -> Result<NoopProbes, EbpfError> {
        let mut ebpf = EbpfLoader::new()
            .load(NOOP_OBJECT)
            .map_err(EbpfError::Object)?;
        for (name, tracepoint) in [("raw_sys_enter", "sys_enter"), ("raw_sys_exit", "sys_exit")] {
            let prog: &mut aya::programs::RawTracePoint = program_as(&mut ebpf, name)?;
            prog.load().map_err(|source| load_error(name, source))?;
            prog.attach(tracepoint)
                .map_err(|source| EbpfError::Attach {
                    program: name,
                    tracepoint,
                    source,
                })?;
        }
        Ok(NoopProbes {
            drain: None,
            _ssl: ssl::SslHooks::default(),
            _ebpf: ebpf,
        })
    }

    /// The copying floor: on the same syscall tracepoints, programs that only copy the bytes each data call of
    /// process `pid` moved (at most `capture_len`, at most 4096, the first 2 iovec entries of vectored calls) into a
    /// ring buffer, which a thread of this process drains as the agent would (woken once 1 MiB waits, or every
    /// 20 ms) without looking at it. What any tracer that
    /// captures payloads must at least do inside the traced process: no socket lookup, no state, no parsing.
    ///
    /// # Errors
    /// [`EbpfError`] naming the program or map that failed.
    pub fn attach_copying(pid: u32, capture_len: u32) -> Result<NoopProbes, EbpfError> {
        let mut ebpf = EbpfLoader::new()
            .override_global("copy_pid", &pid, true)
            .override_global("copy_len", &capture_len, true)
            .load(NOOP_OBJECT)
            .map_err(EbpfError::Object)?;
        ensure_tracefs()?;
        attach_syscall_programs(&mut ebpf)?;
        let ring = ebpf.take_map("copy_ring").ok_or(EbpfError::Missing {
            what: "map",
            name: "copy_ring",
        })?;
        let mut ring = RingBuf::try_from(ring).map_err(|source| EbpfError::Map {
            name: "copy_ring",
            source,
        })?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        // Read as the agent does: woken by the kernel once 1 MiB waits, or every 20 ms.
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                while ring.next().is_some() {}
                let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, PollTimeout::from(20u8));
            }
        });
        Ok(NoopProbes {
            drain: Some((stop, thread)),
            _ssl: ssl::SslHooks::default(),
            _ebpf: ebpf,
        })
    }
}

/// Load one tracepoint program, with the verifier log in the error.
fn load_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut TracePoint, EbpfError> {
    let prog: &mut TracePoint = program_as(ebpf, name)?;
    prog.load().map_err(|source| load_error(name, source))?;
    Ok(prog)
}

/// The program `name` of `ebpf` as a `P` ([`TracePoint`], `UProbe`...).
pub(crate) fn program_as<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut P, EbpfError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(EbpfError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(|source| load_error(name, source))
}

/// The error for program `program` failing to load, with the verifier's log when the kernel rejected it.
pub(crate) fn load_error(program: &'static str, source: ProgramError) -> EbpfError {
    let verifier_log = match &source {
        ProgramError::LoadError { verifier_log, .. } => verifier_log.to_string(),
        _ => String::new(),
    };
    EbpfError::Load {
        program,
        source,
        verifier_log,
    }
}

/// `struct fathom_config` (the kernel's `fathom_config` map) as its bytes: `self_pid`, `capture_len`, `filters`,
/// `pad0`, each a native-endian `u32`.
/// `FATHOM_INLINE_PIDS`: pids the kernel's config holds inline (fewer filter pids are checked without a hash
/// lookup, on every traced syscall).
const INLINE_PIDS: usize = 8;
/// `sizeof(struct fathom_config)`.
const KERNEL_CONFIG_LEN: usize = 16 + 4 * INLINE_PIDS;

fn kernel_config(
    self_pid: u32,
    capture_len: u32,
    filters: u32,
    pids: &[u32],
) -> [u8; KERNEL_CONFIG_LEN] {
    let mut b = [0u8; KERNEL_CONFIG_LEN];
    b[0..4].copy_from_slice(&self_pid.to_ne_bytes());
    b[4..8].copy_from_slice(&capture_len.to_ne_bytes());
    b[8..12].copy_from_slice(&filters.to_ne_bytes());
    if pids.len() <= INLINE_PIDS {
        b[12..16].copy_from_slice(&(pids.len() as u32).to_ne_bytes());
        for (i, pid) in pids.iter().enumerate() {
            b[16 + 4 * i..20 + 4 * i].copy_from_slice(&pid.to_ne_bytes());
        }
    }
    b
}

/// The in-kernel filter, validated.
struct Filters {
    pids: Vec<u32>,
    comms: Vec<[u8; COMM_LEN]>,
    cgroups: Vec<u64>,
}

/// The cgroup v2 id of a cgroup directory: its inode number on the cgroup2 file system (what
/// `bpf_get_current_cgroup_id()` returns).
///
/// # Errors
/// A message when `path` is not a directory of a cgroup v2 hierarchy.
pub fn cgroup_id(path: &Path) -> Result<u64, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_dir() || !path.join("cgroup.controllers").exists() {
        return Err(format!(
            "{} is not a cgroup v2 directory (no cgroup.controllers)",
            path.display()
        ));
    }
    Ok(meta.ino())
}

impl Filters {
    fn from_config(c: &EbpfConfig) -> Result<Filters, EbpfError> {
        let bad = |what, reason: String| EbpfError::Filter { what, reason };
        if c.pids.len() > MAX_FILTER_PIDS {
            return Err(bad("pid", format!("more than {MAX_FILTER_PIDS} pids")));
        }
        if c.comms.len() > MAX_FILTER_ENTRIES || c.cgroups.len() > MAX_FILTER_ENTRIES {
            return Err(bad(
                if c.comms.len() > MAX_FILTER_ENTRIES {
                    "comm"
                } else {
                    "cgroup"
                },
                format!("more than {MAX_FILTER_ENTRIES} entries"),
            ));
        }
        let mut comms = Vec::new();
        for name in &c.comms {
            if name.is_empty() || name.len() >= COMM_LEN || name.contains('\0') {
                return Err(bad(
                    "comm",
                    format!(
                        "{name:?}: a process name has 1 to {} bytes (the kernel's comm)",
                        COMM_LEN - 1
                    ),
                ));
            }
            let mut k = [0u8; COMM_LEN];
            k[..name.len()].copy_from_slice(name.as_bytes());
            comms.push(k);
        }
        let mut cgroups = Vec::new();
        for p in &c.cgroups {
            cgroups.push(cgroup_id(p).map_err(|r| bad("cgroup", r))?);
        }
        if c.pids.contains(&0) {
            return Err(bad("pid", "0 is not a process".into()));
        }
        Ok(Filters {
            pids: c.pids.clone(),
            comms,
            cgroups,
        })
    }

    /// Fill the kernel's config and filter maps (before any program is attached).
    fn write(&self, ebpf: &mut Ebpf, c: &EbpfConfig) -> Result<(), EbpfError> {
        let map_err = |name: &'static str| move |source| EbpfError::MapWrite { name, source };
        let missing = |name: &'static str| EbpfError::Missing { what: "map", name };
        let mut filters = 0;
        if !self.pids.is_empty() {
            filters |= FILTER_PID;
            let mut m: BpfHashMap<_, u32, u8> = ebpf
                .map_mut("filter_pids")
                .ok_or_else(|| missing("filter_pids"))?
                .try_into()
                .map_err(map_err("filter_pids"))?;
            for pid in &self.pids {
                m.insert(pid, 1, 0).map_err(map_err("filter_pids"))?;
            }
        }
        if !self.comms.is_empty() {
            filters |= FILTER_COMM;
            let mut m: BpfHashMap<_, [u8; COMM_LEN], u8> = ebpf
                .map_mut("filter_comms")
                .ok_or_else(|| missing("filter_comms"))?
                .try_into()
                .map_err(map_err("filter_comms"))?;
            for comm in &self.comms {
                m.insert(comm, 1, 0).map_err(map_err("filter_comms"))?;
            }
        }
        if !self.cgroups.is_empty() {
            filters |= FILTER_CGROUP;
            let mut m: BpfHashMap<_, u64, u8> = ebpf
                .map_mut("filter_cgroups")
                .ok_or_else(|| missing("filter_cgroups"))?
                .try_into()
                .map_err(map_err("filter_cgroups"))?;
            for id in &self.cgroups {
                m.insert(id, 1, 0).map_err(map_err("filter_cgroups"))?;
            }
        }
        let kc = kernel_config(
            if c.exclude_self {
                std::process::id()
            } else {
                0
            },
            c.capture_len.min(MAX_DATA as u32),
            filters,
            &self.pids,
        );
        let mut m: Array<_, [u8; KERNEL_CONFIG_LEN]> = ebpf
            .map_mut("fathom_config")
            .ok_or_else(|| missing("fathom_config"))?
            .try_into()
            .map_err(map_err("fathom_config"))?;
        m.set(0, kc, 0).map_err(map_err("fathom_config"))
    }
}

/// Where tracefs is found mounted (the syscall tracepoints live under `events/syscalls` there).
const TRACEFS_PATHS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Make sure tracefs is mounted: when neither `/sys/kernel/tracing` nor `/sys/kernel/debug/tracing` holds the
/// syscall tracepoints, mount tracefs at `/sys/kernel/tracing`. Returns where it mounted it, `None` when it was
/// already there.
///
/// # Errors
/// [`EbpfError::Tracefs`] when mounting fails (not root, no tracefs in the kernel...).
pub fn ensure_tracefs() -> Result<Option<PathBuf>, EbpfError> {
    if TRACEFS_PATHS
        .iter()
        .any(|p| Path::new(p).join("events/syscalls").is_dir())
    {
        return Ok(None);
    }
    let path = TRACEFS_PATHS[0];
    nix::mount::mount(
        Some("nodev"),
        path,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| EbpfError::Tracefs {
        path,
        source: e.into(),
    })?;
    Ok(Some(PathBuf::from(path)))
}

impl EventSource for EbpfSource {
    fn next_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<bool, CaptureError> {
        if self.done {
            return Ok(false);
        }
        if self.ebpf.is_some()
            && (self
                .config
                .run_for
                .is_some_and(|d| self.started.elapsed() >= d)
                || self.stop_flag.load(std::sync::atomic::Ordering::Relaxed))
        {
            self.stop();
        }
        let n = self.drain(out);
        if self.ebpf.is_none() {
            if n == 0 {
                self.refresh_drops();
                let now = self.flows.now_us(monotonic_ns());
                self.flows.finish(now, &mut self.counters, out);
                self.refresh_drops();
                self.done = true;
                ssl::report(&self.stats);
                return Ok(false);
            }
            return Ok(true);
        }
        if n == 0 {
            let timeout =
                PollTimeout::try_from(self.config.poll_timeout).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.ring.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(EbpfError::Poll(e.into()).into()),
            }
            self.drain(out);
        }
        if self.last_rescan.elapsed() >= ssl::RESCAN_INTERVAL {
            self.last_rescan = Instant::now();
            if let Some(ebpf) = self.ebpf.as_mut() {
                self.ssl.rescan(ebpf);
            }
        }
        if self.last_expire.elapsed() >= Duration::from_secs(1) {
            self.last_expire = Instant::now();
            self.refresh_drops();
            let now = self.flows.now_us(monotonic_ns());
            self.flows.expire(now, &mut self.counters, out);
        }
        Ok(true)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send + 'static>() {}

    /// The agent runs sources on a capture thread.
    #[test]
    fn source_is_send() {
        assert_send::<EbpfSource>();
    }

    fn is_root() -> bool {
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                == Some("0")
        })
    }

    /// A program the verifier rejects (`bpf/test_bad.bpf.c`): the error names it and carries the verifier log;
    /// no panic. Needs root (skips otherwise, fails under `FATHOM_REQUIRE_LIVE=1`).
    #[test]
    fn verifier_rejection_names_the_program_with_its_log() {
        static BAD: &[u8] =
            aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/test_bad.bpf.o"));
        if !is_root() {
            assert!(
                std::env::var_os("FATHOM_REQUIRE_LIVE").is_none(),
                "FATHOM_REQUIRE_LIVE is set but not running as root"
            );
            eprintln!("skipping: not running as root");
            return;
        }
        let mut ebpf = EbpfLoader::new().load(BAD).expect("the object loads");
        let err = load_program(&mut ebpf, "rejected_by_verifier").expect_err("verifier rejects");
        let EbpfError::Load {
            program,
            verifier_log,
            ..
        } = &err
        else {
            panic!("not a load error: {err}");
        };
        assert_eq!(*program, "rejected_by_verifier");
        assert!(verifier_log.contains("map_value_or_null"), "{verifier_log}");
        let msg = err.to_string();
        assert!(
            msg.contains("`rejected_by_verifier`") && msg.contains("verifier log:"),
            "{msg}"
        );
        assert!(matches!(
            load_program(&mut ebpf, "no_such_program"),
            Err(EbpfError::Missing {
                what: "program",
                ..
            })
        ));
    }

    /// Bad filters are refused before anything is loaded.
    #[test]
    fn kernel_config_holds_up_to_8_pids_inline() {
        let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let c = kernel_config(7, 4096, FILTER_PID, &[11, 12]);
        assert_eq!(c.len(), 48);
        assert_eq!(
            (u32_at(&c, 0), u32_at(&c, 4), u32_at(&c, 8)),
            (7, 4096, FILTER_PID)
        );
        assert_eq!(
            (u32_at(&c, 12), u32_at(&c, 16), u32_at(&c, 20)),
            (2, 11, 12)
        );
        let eight: Vec<u32> = (1..=8).collect();
        let c = kernel_config(0, 1, FILTER_PID, &eight);
        assert_eq!((u32_at(&c, 12), u32_at(&c, 44)), (8, 8));
        // Nine: only the hash map holds them.
        let nine: Vec<u32> = (1..=9).collect();
        let c = kernel_config(0, 1, FILTER_PID, &nine);
        assert_eq!(u32_at(&c, 12), 0);
    }

    #[test]
    fn bad_filters_are_refused() {
        for (config, what) in [
            (
                EbpfConfig {
                    comms: vec!["sixteen-bytes-xx".into()],
                    ..EbpfConfig::default()
                },
                "comm",
            ),
            (
                EbpfConfig {
                    comms: vec![String::new()],
                    ..EbpfConfig::default()
                },
                "comm",
            ),
            (
                EbpfConfig {
                    pids: vec![0],
                    ..EbpfConfig::default()
                },
                "pid",
            ),
            (
                EbpfConfig {
                    pids: (1..=MAX_FILTER_PIDS as u32 + 1).collect(),
                    ..EbpfConfig::default()
                },
                "pid",
            ),
            (
                EbpfConfig {
                    cgroups: vec![PathBuf::from("/nonexistent/cgroup")],
                    ..EbpfConfig::default()
                },
                "cgroup",
            ),
        ] {
            match Filters::from_config(&config) {
                Err(EbpfError::Filter { what: w, .. }) => assert_eq!(w, what),
                Err(e) => panic!("{e}"),
                Ok(_) => panic!("accepted {config:?}"),
            }
        }
        let ok = EbpfConfig {
            comms: vec!["fifteen-bytes-x".into()],
            pids: vec![1],
            ..EbpfConfig::default()
        };
        assert!(Filters::from_config(&ok).is_ok());
    }
}
