//! Live capture of socket data with eBPF (feature `ebpf`, Linux, root or CAP_BPF + CAP_PERFMON).
//!
//! Syscall tracepoints (`sys_enter`/`sys_exit` of `write`, `read`, `sendto`, `recvfrom`, `writev`, `readv`,
//! `sendmsg`, `recvmsg` (the first 8 iovec entries), and `sys_enter_close`)
//! see the bytes every process moves through its AF_INET/AF_INET6 TCP sockets. The exit programs resolve the
//! socket's addresses from the fd with CO-RE reads and push one event per call (the first
//! [`EbpfConfig::capture_len`] bytes and the real length) into a BPF ring buffer; [`EbpfSource`] turns them into
//! the same [`StreamEvent`]s as the packet path, with [`fathom_model::ChunkOrigin::Syscall`] origins.
//!
//! Each traced process gets its own flow per socket: a connection between two traced processes on this host
//! shows up twice, once from the client process and once from the server process (`side`). Flows are oriented
//! client → server: a process whose local port is a listening port (`/proc/net/tcp{,6}`) is the server, one
//! talking to a local listening port is the client, otherwise the port heuristic of
//! [`dst_is_server`](crate::dst_is_server) decides. Chunks carry no sequence numbers; bytes beyond the capture
//! length become `gap_before` of the next chunk of the same direction. A flow ends on `close()`, when its fd
//! reappears with another socket, after [`EbpfConfig::idle_timeout_us`], or when the source stops.
//!
//! TLS: uprobes on OpenSSL's `SSL_read`/`SSL_write` (and `_ex`) report the plaintext as data of the call's
//! socket, with `tls_plaintext` set, and the ciphertext of those calls is not reported (see [`ssl`] and
//! `docs/ebpf.md`).
//!
//! Not covered yet: `sendfile`/`splice`, `sendmmsg`/`recvmmsg`, io_uring, UDP.

mod event;
mod flows;
pub mod ssl;

use crate::{CaptureError, Counters, EventSource};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::{ProgramError, TracePoint};
use aya::{Ebpf, EbpfLoader};
use fathom_model::StreamEvent;
use flows::{ProcListenPorts, SyscallFlows};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::time::{clock_gettime, ClockId};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use event::MAX_DATA;
pub use ssl::{SslConfig, SslError};

static BPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sock_trace.bpf.o"));

/// The eBPF programs and the tracepoints they attach to.
const PROGRAMS: [(&str, &str); 17] = [
    ("enter_write", "sys_enter_write"),
    ("exit_write", "sys_exit_write"),
    ("enter_read", "sys_enter_read"),
    ("exit_read", "sys_exit_read"),
    ("enter_sendto", "sys_enter_sendto"),
    ("exit_sendto", "sys_exit_sendto"),
    ("enter_recvfrom", "sys_enter_recvfrom"),
    ("exit_recvfrom", "sys_exit_recvfrom"),
    ("enter_writev", "sys_enter_writev"),
    ("exit_writev", "sys_exit_writev"),
    ("enter_readv", "sys_enter_readv"),
    ("exit_readv", "sys_exit_readv"),
    ("enter_sendmsg", "sys_enter_sendmsg"),
    ("exit_sendmsg", "sys_exit_sendmsg"),
    ("enter_recvmsg", "sys_enter_recvmsg"),
    ("exit_recvmsg", "sys_exit_recvmsg"),
    ("enter_close", "sys_enter_close"),
];

/// Settings of an [`EbpfSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbpfConfig {
    /// Payload bytes captured per syscall (the rest is counted as lost); capped to [`MAX_DATA`].
    pub capture_len: u32,
    /// Do not trace this process (the agent itself).
    pub exclude_self: bool,
    /// A flow with no event for this long ends (`timeout`).
    pub idle_timeout_us: u64,
    /// How long one [`EventSource::next_events`] call waits for events when there are none.
    pub poll_timeout: Duration,
    /// Events handled per [`EventSource::next_events`] call at most.
    pub batch_events: usize,
    /// Stop by itself (as [`EbpfSource::stop`]) after this long; `None`: run until stopped.
    pub run_for: Option<Duration>,
    /// OpenSSL plaintext tracing (uprobes on libssl).
    pub ssl: SslConfig,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        EbpfConfig {
            capture_len: 4096,
            exclude_self: true,
            idle_timeout_us: 60_000_000,
            poll_timeout: Duration::from_millis(100),
            batch_events: 1024,
            run_for: None,
            ssl: SslConfig::default(),
        }
    }
}

/// Why the eBPF source could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EbpfError {
    /// The object file could not be loaded (maps created, relocations applied).
    #[error("loading the eBPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    /// The object lacks a program or map this source needs (a build mismatch).
    #[error("eBPF object has no {what} `{name}`")]
    Missing {
        /// `program` or `map`.
        what: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// A program was rejected by the kernel (the verifier log, when there is one, is in `verifier_log`).
    #[error("loading eBPF program `{program}` failed: {source}{}", if verifier_log.is_empty() { String::new() } else { format!("\nverifier log:\n{verifier_log}") })]
    Load {
        /// The program.
        program: &'static str,
        /// The kernel's error.
        #[source]
        source: ProgramError,
        /// The verifier's output, empty if none.
        verifier_log: String,
    },
    /// A program could not be attached to its tracepoint (tracefs missing, no permission, ...).
    #[error(
        "attaching eBPF program `{program}` to tracepoint syscalls/{tracepoint} failed: {source} \
         (is tracefs mounted? `mount -t tracefs nodev /sys/kernel/tracing`)"
    )]
    Attach {
        /// The program.
        program: &'static str,
        /// The tracepoint.
        tracepoint: &'static str,
        /// The kernel's error.
        #[source]
        source: ProgramError,
    },
    /// A map could not be opened.
    #[error("opening eBPF map `{name}` failed: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// Waiting for the ring buffer failed.
    #[error("polling the eBPF ring buffer failed: {0}")]
    Poll(#[source] std::io::Error),
    /// An OpenSSL library could not be hooked.
    #[error(transparent)]
    Ssl(#[from] SslError),
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
    /// Records that could not be parsed (should stay 0).
    pub malformed: u64,
    /// TLS plaintext events (from OpenSSL uprobes).
    pub ssl_plaintext_events: u64,
    /// Ciphertext syscalls made inside OpenSSL calls, not reported (their plaintext is).
    pub ssl_ciphertext_suppressed: u64,
    /// Ciphertext events of sockets that already produced plaintext, dropped in user space (syscalls made
    /// outside OpenSSL calls, such as nginx's `MSG_PEEK` of the first byte).
    pub ssl_ciphertext_dropped: u64,
    /// OpenSSL calls whose socket was never seen (memory BIOs, or a connection older than the agent whose
    /// calls are all served from OpenSSL's buffer): their plaintext is lost.
    pub ssl_unknown_socket: u64,
    /// OpenSSL libraries hooked (paths).
    pub ssl_libraries: Vec<String>,
}

/// Live socket data of the processes on this host, from eBPF syscall tracepoints.
pub struct EbpfSource {
    /// `None` once stopped (dropping it detaches the programs).
    ebpf: Option<Ebpf>,
    ring: RingBuf<MapData>,
    drops: PerCpuArray<MapData, u64>,
    flows: SyscallFlows<ProcListenPorts>,
    config: EbpfConfig,
    counters: Counters,
    stats: EbpfStats,
    last_expire: Instant,
    started: Instant,
    ring_drops: Arc<AtomicU64>,
    ssl: ssl::SslHooks,
    ssl_counters: Option<PerCpuArray<MapData, u64>>,
    last_rescan: Instant,
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
    /// [`EbpfError`] naming the program (with the verifier log) or map that failed; nothing stays attached.
    pub fn start(config: EbpfConfig) -> Result<EbpfSource, EbpfError> {
        let self_pid: u32 = if config.exclude_self {
            std::process::id()
        } else {
            0
        };
        let capture_len: u32 = config.capture_len.min(MAX_DATA as u32);
        let mut ebpf = EbpfLoader::new()
            .override_global("self_pid", &self_pid, true)
            .override_global("capture_len", &capture_len, true)
            .load(BPF_OBJECT)
            .map_err(EbpfError::Object)?;
        for (name, tracepoint) in PROGRAMS {
            let prog: &mut TracePoint = ebpf
                .program_mut(name)
                .ok_or(EbpfError::Missing {
                    what: "program",
                    name,
                })?
                .try_into()
                .map_err(|source| EbpfError::Load {
                    program: name,
                    source,
                    verifier_log: String::new(),
                })?;
            prog.load().map_err(|source| {
                let verifier_log = match &source {
                    ProgramError::LoadError { verifier_log, .. } => verifier_log.to_string(),
                    _ => String::new(),
                };
                EbpfError::Load {
                    program: name,
                    source,
                    verifier_log,
                }
            })?;
            prog.attach("syscalls", tracepoint)
                .map_err(|source| EbpfError::Attach {
                    program: name,
                    tracepoint,
                    source,
                })?;
        }
        let ssl = ssl::SslHooks::start(&mut ebpf, &config.ssl)?;
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
        let drops = ebpf.take_map("drops").ok_or(EbpfError::Missing {
            what: "map",
            name: "drops",
        })?;
        let drops = PerCpuArray::try_from(drops).map_err(|source| EbpfError::Map {
            name: "drops",
            source,
        })?;
        let offset = clock_ns(ClockId::CLOCK_REALTIME) - clock_ns(ClockId::CLOCK_MONOTONIC);
        Ok(EbpfSource {
            ebpf: Some(ebpf),
            ring,
            drops,
            flows: SyscallFlows::new(ProcListenPorts::default(), offset, config.idle_timeout_us),
            config,
            counters: Counters::default(),
            last_expire: Instant::now(),
            started: Instant::now(),
            ring_drops: Arc::new(AtomicU64::new(0)),
            stats: EbpfStats {
                ssl_libraries: ssl.attached.clone(),
                ..EbpfStats::default()
            },
            ssl,
            ssl_counters,
            last_rescan: Instant::now(),
            done: false,
        })
    }

    /// Detach the programs. Events already in the ring buffer are still delivered; then every flow ends and
    /// [`EventSource::next_events`] returns `Ok(false)`.
    pub fn stop(&mut self) {
        self.refresh_drops();
        self.ebpf = None;
    }

    /// eBPF-specific counters (ring-buffer drops as of the last call to `next_events` or `stop`).
    pub fn stats(&self) -> &EbpfStats {
        &self.stats
    }

    /// A shared view of [`EbpfStats::ring_drops`] that stays readable after the source moved to another thread.
    pub fn ring_drops_handle(&self) -> Arc<AtomicU64> {
        self.ring_drops.clone()
    }

    fn refresh_drops(&mut self) {
        if let Ok(values) = self.drops.get(&0, 0) {
            self.stats.ring_drops = values.iter().sum();
            self.ring_drops
                .store(self.stats.ring_drops, Ordering::Relaxed);
        }
        if let Some(c) = &self.ssl_counters {
            let sum = |i: u32| c.get(&i, 0).map_or(0, |v| v.iter().sum::<u64>());
            self.stats.ssl_ciphertext_suppressed = sum(ssl::CNT_SUPPRESSED);
            self.stats.ssl_unknown_socket = sum(ssl::CNT_NO_FD);
        }
        self.stats.ssl_libraries.clone_from(&self.ssl.attached);
        self.stats.ssl_plaintext_events = self.flows.tls_events;
        self.stats.ssl_ciphertext_dropped = self.flows.tls_ciphertext_dropped;
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

impl EventSource for EbpfSource {
    fn next_events(&mut self, out: &mut Vec<StreamEvent>) -> Result<bool, CaptureError> {
        if self.done {
            return Ok(false);
        }
        if self.ebpf.is_some()
            && self
                .config
                .run_for
                .is_some_and(|d| self.started.elapsed() >= d)
        {
            self.stop();
        }
        let n = self.drain(out);
        if self.ebpf.is_none() {
            if n == 0 {
                self.refresh_drops();
                let now = self.flows.now_us(monotonic_ns());
                self.flows.finish(now, &mut self.counters, out);
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
}
