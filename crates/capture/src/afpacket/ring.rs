//! One AF_PACKET socket with its `TPACKET_V3` receive ring: the system calls and the block walk.
//!
//! Layouts (Linux UAPI `linux/if_packet.h`, stable ABI): a block starts with `tpacket_block_desc` (`version`,
//! `offset_to_priv`, then `tpacket_hdr_v1`: `block_status` at byte 8, `num_pkts` at 12, `offset_to_first_pkt` at
//! 16, `blk_len` (bytes of the block in use, from its start) at 20). Each packet starts with a 48-byte
//! `tpacket3_hdr` (`tp_next_offset` 0, `tp_sec` 4, `tp_nsec` 8, `tp_snaplen` 12, `tp_len` 16, `tp_status` 20,
//! `tp_mac` 24 (u16), `tp_net` 26 (u16), ...), followed, 16-byte aligned, by a `sockaddr_ll` whose `sll_pkttype`
//! is at byte 10. Host byte order throughout.

use super::{AfPacketConfig, AfPacketError, AfPacketTelemetry, BpfProgram};
use crate::source::{LinkType, Packet};
use bytes::Bytes;
use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BLOCK_STATUS: usize = 8;
const BLOCK_NUM_PKTS: usize = 12;
const BLOCK_FIRST_PKT: usize = 16;
const BLOCK_LEN: usize = 20;
const BLOCK_HEADER_LEN: usize = 48;
const HDR_LEN: usize = 48;
const SLL_PKTTYPE: usize = HDR_LEN + 10;
const TPACKET_V3: libc::c_int = 2;

/// The system page size.
pub(super) fn page_size() -> u32 {
    // SAFETY: sysconf only reads a system constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    b.get(off..off + 2)
        .map(|s| u16::from_ne_bytes([s[0], s[1]]))
}

/// A block copied out of the ring, being walked packet by packet.
#[derive(Debug)]
struct Block {
    data: Bytes,
    next: usize,
    left: u32,
}

/// One AF_PACKET socket bound to an interface, with its mmap'ed `TPACKET_V3` receive ring.
///
/// Created with the kernel filter set to drop everything; [`AfPacketSocket::install_filter`] lets packets in (so
/// that several sockets can join their fanout group before any of them receives a packet).
pub struct AfPacketSocket {
    fd: OwnedFd,
    /// Start of the ring mapping (`block_size * block_count` bytes), owned by this value.
    ring: *mut u8,
    ring_len: usize,
    block_size: usize,
    block_count: usize,
    cur: usize,
    iface: String,
    link_type: LinkType,
    skip_outgoing: bool,
    snap_len: usize,
    fanout_group: Option<u16>,
    poll_timeout: Duration,
    block_timeout: Duration,
    pending: Option<Block>,
    telemetry: Arc<AfPacketTelemetry>,
}

// SAFETY: the ring mapping is owned exclusively by this value (no other pointer to it exists in this process);
// the kernel, the only other party, synchronizes through each block's status word (atomic accesses below).
unsafe impl Send for AfPacketSocket {}

impl std::fmt::Debug for AfPacketSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketSocket")
            .field("iface", &self.iface)
            .field("link_type", &self.link_type)
            .field("blocks", &self.block_count)
            .field("block_size", &self.block_size)
            .field("fanout_group", &self.fanout_group)
            .finish_non_exhaustive()
    }
}

impl Drop for AfPacketSocket {
    fn drop(&mut self) {
        if !self.ring.is_null() {
            // SAFETY: `ring`/`ring_len` are exactly the mapping made in `open` (null if `open` failed before
            // it), unmapped once here; no reference into it outlives this call (blocks are copied out).
            unsafe {
                libc::munmap(self.ring.cast(), self.ring_len);
            }
        }
    }
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Interface index and ARPHRD type of `name`.
fn iface_info(name: &str) -> Result<(libc::c_int, u16), AfPacketError> {
    let cname = CString::new(name).map_err(|_| AfPacketError::NoSuchInterface(name.into()))?;
    // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(AfPacketError::NoSuchInterface(name.into()));
    }
    let index =
        libc::c_int::try_from(index).map_err(|_| AfPacketError::NoSuchInterface(name.into()))?;
    let sys = |op, source| AfPacketError::Sys {
        op,
        iface: name.into(),
        source,
    };
    // SAFETY: plain socket creation; the result is checked and owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(sys("socket(AF_INET)", last_error()));
    }
    // SAFETY: `raw` is a fresh descriptor owned by nobody else.
    let probe = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name (validated to fit, the rest is zero) and writes the
    // hardware address into `req`, which lives for the call.
    let r = unsafe { libc::ioctl(probe.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if r < 0 {
        let e = last_error();
        if e.raw_os_error() == Some(libc::ENODEV) {
            return Err(AfPacketError::NoSuchInterface(name.into()));
        }
        return Err(sys("ioctl(SIOCGIFHWADDR)", e));
    }
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member of the union.
    let family = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok((index, family))
}

impl AfPacketSocket {
    /// Open a socket on `config.iface` with a ring, bound, filter dropping everything. `fanout`: `None` for no
    /// fanout, `Some(None)` to create a new group (kernel-assigned id), `Some(Some(id))` to join group `id`.
    pub(super) fn open(
        config: &AfPacketConfig,
        fanout: Option<Option<u16>>,
        telemetry: Arc<AfPacketTelemetry>,
    ) -> Result<AfPacketSocket, AfPacketError> {
        let iface = config.iface.clone();
        let (ifindex, arphrd) = iface_info(&iface)?;
        let sys = |op, source| AfPacketError::Sys {
            op,
            iface: iface.clone(),
            source,
        };
        let ethernet = arphrd == libc::ARPHRD_ETHER || arphrd == libc::ARPHRD_LOOPBACK;
        let (sock_type, link_type) = if ethernet {
            (libc::SOCK_RAW, LinkType::ETHERNET)
        } else {
            (libc::SOCK_DGRAM, LinkType::RAW)
        };
        // Protocol 0: the socket receives nothing until bound with ETH_P_ALL below.
        // SAFETY: plain socket creation; the result is checked and owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, sock_type | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_PACKET)", last_error()));
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let block_size = config.block_size as usize;
        let block_count = config.block_count as usize;
        let ring_len = block_size * block_count;
        let mut s = AfPacketSocket {
            fd,
            ring: std::ptr::null_mut(),
            ring_len: 0,
            block_size,
            block_count,
            cur: 0,
            iface: iface.clone(),
            link_type,
            skip_outgoing: arphrd == libc::ARPHRD_LOOPBACK,
            snap_len: config.snap_len as usize,
            fanout_group: None,
            poll_timeout: config.poll_timeout,
            block_timeout: Duration::from_millis(u64::from(config.block_timeout_ms)),
            pending: None,
            telemetry,
        };
        s.attach_filter(&BpfProgram::drop_all())?;
        s.setsockopt(
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &TPACKET_V3,
            "setsockopt(PACKET_VERSION)",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: config.block_size,
            tp_block_nr: config.block_count,
            tp_frame_size: config.frame_size,
            tp_frame_nr: (config.block_size / config.frame_size) * config.block_count,
            tp_retire_blk_tov: config.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        s.setsockopt(
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "setsockopt(PACKET_RX_RING)",
        )?;
        // SAFETY: maps the ring the kernel just allocated for this socket; length and flags as packet_mmap
        // requires; the result is checked and then owned (unmapped in Drop).
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                s.fd.as_raw_fd(),
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(sys("mmap(ring)", last_error()));
        }
        s.ring = ring.cast();
        s.ring_len = ring_len;
        // SAFETY: `sockaddr_ll` is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll that lives for the call; the length matches.
        let r = unsafe {
            libc::bind(
                s.fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            let e = last_error();
            if e.raw_os_error() == Some(libc::ENODEV) {
                return Err(AfPacketError::NoSuchInterface(iface));
            }
            return Err(sys("bind", e));
        }
        if config.promiscuous {
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            s.setsockopt(
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
                "setsockopt(PACKET_ADD_MEMBERSHIP)",
            )?;
        }
        if let Some(group) = fanout {
            let mode = (libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) as libc::c_int;
            let arg: libc::c_int = match group {
                None => (mode | libc::PACKET_FANOUT_FLAG_UNIQUEID as libc::c_int) << 16,
                Some(id) => (mode << 16) | libc::c_int::from(id),
            };
            s.setsockopt(
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg,
                "setsockopt(PACKET_FANOUT)",
            )?;
            let mut got: libc::c_int = 0;
            s.getsockopt(
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &mut got,
                "getsockopt(PACKET_FANOUT)",
            )?;
            s.fanout_group = Some((got & 0xffff) as u16);
        }
        Ok(s)
    }

    fn setsockopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
        op: &'static str,
    ) -> Result<(), AfPacketError> {
        // SAFETY: `value` points to a live `T` of `size_of::<T>()` bytes for the whole call; the kernel copies it.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                size_of::<T>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(AfPacketError::Sys {
                op,
                iface: self.iface.clone(),
                source: last_error(),
            });
        }
        Ok(())
    }

    fn getsockopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &mut T,
        op: &'static str,
    ) -> Result<(), AfPacketError> {
        let mut len = size_of::<T>() as libc::socklen_t;
        // SAFETY: `value` is a live, writable `T` of `len` bytes; the kernel writes at most `len` bytes (callers only
        // pass plain-old-data types, valid for any bytes).
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *mut T).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(AfPacketError::Sys {
                op,
                iface: self.iface.clone(),
                source: last_error(),
            });
        }
        Ok(())
    }

    fn attach_filter(&self, program: &BpfProgram) -> Result<(), AfPacketError> {
        let mut insns: Vec<libc::sock_filter> = program
            .insns()
            .iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        let prog = libc::sock_fprog {
            len: insns.len() as u16, // At most BpfProgram::MAX_INSNS (4096).
            filter: insns.as_mut_ptr(),
        };
        // The kernel copies the instructions during the call; `insns` outlives it.
        self.setsockopt(
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog,
            "setsockopt(SO_ATTACH_FILTER)",
        )
    }

    /// Replace the initial drop-everything filter: with `program`, or with none (every packet).
    ///
    /// # Errors
    /// When the kernel rejects the program (`EINVAL`: an invalid classic BPF program).
    pub fn install_filter(&mut self, program: Option<&BpfProgram>) -> Result<(), AfPacketError> {
        match program {
            Some(p) => self.attach_filter(p)?,
            None => {
                let zero: libc::c_int = 0;
                self.setsockopt(
                    libc::SOL_SOCKET,
                    libc::SO_DETACH_FILTER,
                    &zero,
                    "setsockopt(SO_DETACH_FILTER)",
                )?;
            }
        }
        // Anything that reached the ring before (nothing should: the old filter dropped everything) is left as is.
        Ok(())
    }

    /// Link type of the packets.
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// The fanout group id, when the socket is in one.
    pub fn fanout_group(&self) -> Option<u16> {
        self.fanout_group
    }

    pub(super) fn telemetry(&self) -> &AfPacketTelemetry {
        &self.telemetry
    }

    pub(super) fn poll_timeout(&self) -> Duration {
        self.poll_timeout
    }

    /// How long to keep reading after a stop so that partly filled blocks are handed over.
    pub(super) fn drain_time(&self) -> Duration {
        self.block_timeout * 2 + Duration::from_millis(20)
    }

    /// Add the kernel's counters since the last call (`PACKET_STATISTICS` resets them on read).
    pub fn refresh_kernel_stats(&mut self) {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        if self
            .getsockopt(
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st,
                "getsockopt(PACKET_STATISTICS)",
            )
            .is_ok()
        {
            let t = &self.telemetry;
            t.kernel_packets
                .fetch_add(u64::from(st.tp_packets), Ordering::Relaxed);
            t.kernel_drops
                .fetch_add(u64::from(st.tp_drops), Ordering::Relaxed);
            t.kernel_freezes
                .fetch_add(u64::from(st.tp_freeze_q_cnt), Ordering::Relaxed);
        }
    }

    /// The next packet, waiting up to `timeout` for one; `Ok(None)` when none came.
    ///
    /// # Errors
    /// When `poll` fails (other than by a signal).
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Packet>, AfPacketError> {
        let mut waited = false;
        loop {
            if let Some(p) = self.next_in_block() {
                return Ok(Some(p));
            }
            if self.take_block() {
                continue;
            }
            if waited || timeout.is_zero() {
                return Ok(None);
            }
            self.wait(timeout)?;
            waited = true;
        }
    }

    fn wait(&self, timeout: Duration) -> Result<(), AfPacketError> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd that lives for the call.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = last_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(AfPacketError::Sys {
                    op: "poll",
                    iface: self.iface.clone(),
                    source: e,
                });
            }
        }
        Ok(())
    }

    /// The status word of block `i`.
    fn status(&self, i: usize) -> &AtomicU32 {
        debug_assert!(i < self.block_count);
        // SAFETY: block `i` lies inside the mapping (i < block_count), its status word at byte 8 is 4-byte
        // aligned (blocks are page-aligned), and the kernel only accesses it atomically; the reference does not
        // outlive `self`, which owns the mapping.
        unsafe { AtomicU32::from_ptr(self.ring.add(i * self.block_size + BLOCK_STATUS).cast()) }
    }

    /// If the current block belongs to user space: copy its used part out, give it back, and start walking it.
    fn take_block(&mut self) -> bool {
        let i = self.cur;
        if self.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return false;
        }
        // SAFETY: the block belongs to user space (status read with Acquire above), so the kernel does not write
        // it until we hand it back; it lies inside the mapping; we read its header then copy at most
        // `block_size` bytes of it.
        let data = unsafe {
            let base = self.ring.add(i * self.block_size);
            let head = std::slice::from_raw_parts(base, BLOCK_HEADER_LEN);
            let used = u32_at(head, BLOCK_LEN).unwrap_or(0) as usize;
            let len = used.clamp(BLOCK_HEADER_LEN, self.block_size);
            Bytes::copy_from_slice(std::slice::from_raw_parts(base, len))
        };
        self.status(i)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.cur = (i + 1) % self.block_count;
        self.telemetry.blocks.fetch_add(1, Ordering::Relaxed);
        let num = u32_at(&data, BLOCK_NUM_PKTS).unwrap_or(0);
        let first = u32_at(&data, BLOCK_FIRST_PKT).unwrap_or(0) as usize;
        if num > 0 && (first < BLOCK_HEADER_LEN || first >= data.len()) {
            self.telemetry
                .malformed_blocks
                .fetch_add(1, Ordering::Relaxed);
            return true;
        }
        self.pending = Some(Block {
            data,
            next: first,
            left: num,
        });
        true
    }

    /// The next packet of the block being walked.
    fn next_in_block(&mut self) -> Option<Packet> {
        loop {
            let block = self.pending.as_mut()?;
            if block.left == 0 {
                self.pending = None;
                return None;
            }
            block.left -= 1;
            let d = &block.data;
            let off = block.next;
            let (
                Some(next),
                Some(sec),
                Some(nsec),
                Some(snaplen),
                Some(len),
                Some(mac),
                Some(&pkttype),
            ) = (
                u32_at(d, off),
                u32_at(d, off + 4),
                u32_at(d, off + 8),
                u32_at(d, off + 12),
                u32_at(d, off + 16),
                u16_at(d, off + 24),
                d.get(off + SLL_PKTTYPE),
            )
            else {
                self.telemetry
                    .malformed_blocks
                    .fetch_add(1, Ordering::Relaxed);
                self.pending = None;
                return None;
            };
            let start = off + usize::from(mac);
            let end = start + snaplen as usize;
            if end > d.len() || (next != 0 && (next as usize) < HDR_LEN) {
                self.telemetry
                    .malformed_blocks
                    .fetch_add(1, Ordering::Relaxed);
                self.pending = None;
                return None;
            }
            block.next = if next == 0 {
                d.len()
            } else {
                off + next as usize
            };
            if block.left > 0 && block.next >= d.len() {
                block.left = 0;
            }
            let t = &self.telemetry;
            if self.skip_outgoing && pkttype == libc::PACKET_OUTGOING {
                t.outgoing_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let keep = (snaplen as usize).min(self.snap_len);
            if keep < len as usize {
                t.truncated.fetch_add(1, Ordering::Relaxed);
            }
            t.packets.fetch_add(1, Ordering::Relaxed);
            t.bytes.fetch_add(u64::from(len), Ordering::Relaxed);
            return Some(Packet {
                ts_us: u64::from(sec) * 1_000_000 + u64::from(nsec) / 1_000,
                link_type: self.link_type,
                orig_len: len,
                data: d.slice(start..start + keep),
            });
        }
    }
}
