//! The ring-buffer event: a `#[repr(C)]` mirror of `struct fathom_sock_event` in `bpf/sock_event.h`, and a safe
//! parser of the bytes one ring-buffer record holds (the header plus `captured` payload bytes).

use std::mem::offset_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest payload prefix one event carries (`FATHOM_MAX_DATA`).
pub const MAX_DATA: usize = 16384;
/// `FATHOM_COMM_LEN`.
const COMM_LEN: usize = 16;

/// Mirror of `struct fathom_sock_event`. Only its layout is used (offsets for parsing, checked by a test).
#[repr(C)]
#[allow(dead_code)]
pub(crate) struct RawSockEvent {
    ts_enter_ns: u64,
    ts_exit_ns: u64,
    socket_id: u64,
    trace_id: u64,
    cgroup_id: u64,
    pid: u32,
    tid: u32,
    fd: u32,
    len: u32,
    captured: u32,
    sock_seq: u32,
    tcp_seq: u32,
    kind: u8,
    family: u8,
    syscall: u8,
    l4: u8,
    role: u8,
    flags: u8,
    lport: u16,
    rport: u16,
    pad0: u16,
    laddr: [u8; 16],
    raddr: [u8; 16],
    comm: [u8; COMM_LEN],
    data: [u8; MAX_DATA],
}

/// Bytes before the payload (`FATHOM_HDR_LEN`).
pub(crate) const HDR_LEN: usize = offset_of!(RawSockEvent, data);

/// `FATHOM_FLAG_TCP_SEQ`: `tcp_seq` is valid.
const FLAG_TCP_SEQ: u8 = 1;
/// `FATHOM_FLAG_TLS`: the data is TLS plaintext from a library hook.
const FLAG_TLS: u8 = 2;

/// What the event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// write/sendto/writev/sendmsg: the bytes leave the process.
    Egress,
    /// read/recvfrom/readv/recvmsg: the bytes enter the process.
    Ingress,
    /// close() of the socket.
    Close,
    /// connect() succeeded (or is in progress): the process is the socket's client.
    Connect,
    /// accept()/accept4() returned the socket: the process is its server.
    Accept,
    /// The process exited (no socket fields).
    Exit,
}

/// What the kernel side knows of the process's role on the socket (`FATHOM_ROLE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Opened before tracing started.
    Unknown,
    /// connect()ed (or, UDP, sent first).
    Client,
    /// accept()ed (or, UDP, received first).
    Server,
}

/// Transport of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum L4 {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One parsed event, borrowing its payload from the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SockEvent<'a> {
    pub ts_enter_ns: u64,
    pub ts_exit_ns: u64,
    /// Unique per socket (never reused while the programs run).
    pub socket_id: u64,
    /// Syscall trace id, 0 when none.
    pub trace_id: u64,
    #[allow(dead_code)]
    pub cgroup_id: u64,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    /// Bytes the syscall transferred.
    pub len: u32,
    /// Per-socket event number.
    pub sock_seq: u32,
    /// TCP sequence number of the first byte, when known.
    pub tcp_seq: Option<u32>,
    pub kind: Kind,
    pub l4: L4,
    pub role: Role,
    /// TLS plaintext from a library hook.
    pub tls: bool,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub comm: &'a [u8],
    /// The first captured bytes (`<= len`).
    pub data: &'a [u8],
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn addr(family: u8, raw: &[u8]) -> Option<IpAddr> {
    match family {
        2 => {
            let a: [u8; 4] = raw.get(..4)?.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(a)))
        }
        10 => {
            let a: [u8; 16] = raw.get(..16)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(a);
            // A dual-stack socket talking IPv4: report the IPv4 address, as on the wire.
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

impl<'a> SockEvent<'a> {
    /// Parse one ring-buffer record; `None` when it is shorter than its header says or has unknown codes.
    pub(crate) fn parse(b: &'a [u8]) -> Option<SockEvent<'a>> {
        let captured = u32_at(b, offset_of!(RawSockEvent, captured))? as usize;
        if captured > MAX_DATA {
            return None;
        }
        let data = b.get(HDR_LEN..HDR_LEN + captured)?;
        let kind = match *b.get(offset_of!(RawSockEvent, kind))? {
            0 => Kind::Egress,
            1 => Kind::Ingress,
            2 => Kind::Close,
            3 => Kind::Connect,
            4 => Kind::Accept,
            5 => Kind::Exit,
            _ => return None,
        };
        let l4 = match *b.get(offset_of!(RawSockEvent, l4))? {
            6 => L4::Tcp,
            17 => L4::Udp,
            _ => return None,
        };
        let role = match *b.get(offset_of!(RawSockEvent, role))? {
            1 => Role::Client,
            2 => Role::Server,
            _ => Role::Unknown,
        };
        let flags = *b.get(offset_of!(RawSockEvent, flags))?;
        let family = *b.get(offset_of!(RawSockEvent, family))?;
        let la = offset_of!(RawSockEvent, laddr);
        let ra = offset_of!(RawSockEvent, raddr);
        let co = offset_of!(RawSockEvent, comm);
        let comm = b.get(co..co + COMM_LEN)?;
        let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(COMM_LEN)];
        let tcp_seq = u32_at(b, offset_of!(RawSockEvent, tcp_seq))?;
        Some(SockEvent {
            ts_enter_ns: u64_at(b, offset_of!(RawSockEvent, ts_enter_ns))?,
            ts_exit_ns: u64_at(b, offset_of!(RawSockEvent, ts_exit_ns))?,
            socket_id: u64_at(b, offset_of!(RawSockEvent, socket_id))?,
            trace_id: u64_at(b, offset_of!(RawSockEvent, trace_id))?,
            cgroup_id: u64_at(b, offset_of!(RawSockEvent, cgroup_id))?,
            pid: u32_at(b, offset_of!(RawSockEvent, pid))?,
            tid: u32_at(b, offset_of!(RawSockEvent, tid))?,
            fd: u32_at(b, offset_of!(RawSockEvent, fd))?,
            len: u32_at(b, offset_of!(RawSockEvent, len))?,
            sock_seq: u32_at(b, offset_of!(RawSockEvent, sock_seq))?,
            tcp_seq: (flags & FLAG_TCP_SEQ != 0).then_some(tcp_seq),
            kind,
            l4,
            role,
            tls: flags & FLAG_TLS != 0,
            local: (
                addr(family, b.get(la..la + 16)?)?,
                u16_at(b, offset_of!(RawSockEvent, lport))?,
            ),
            remote: (
                addr(family, b.get(ra..ra + 16)?)?,
                u16_at(b, offset_of!(RawSockEvent, rport))?,
            ),
            comm,
            data,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::mem::size_of;

    const HEADER: &str = include_str!("../../bpf/sock_event.h");

    fn define(name: &str) -> usize {
        let line = HEADER
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} not in sock_event.h"));
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    /// The Rust mirror has the layout the C header asserts (`_Static_assert`s there, checked by clang).
    #[test]
    fn layout_matches_c_header() {
        assert_eq!(define("FATHOM_MAX_DATA"), MAX_DATA);
        assert_eq!(define("FATHOM_COMM_LEN"), COMM_LEN);
        assert_eq!(define("FATHOM_HDR_LEN"), HDR_LEN);
        assert_eq!(define("FATHOM_FLAG_TCP_SEQ"), usize::from(FLAG_TCP_SEQ));
        assert_eq!(define("FATHOM_FLAG_TLS"), usize::from(FLAG_TLS));
        assert_eq!(define("FATHOM_KIND_CONNECT"), 3);
        assert_eq!(define("FATHOM_KIND_ACCEPT"), 4);
        assert_eq!(define("FATHOM_KIND_EXIT"), 5);
        assert_eq!(define("FATHOM_ROLE_CLIENT"), 1);
        assert_eq!(define("FATHOM_ROLE_SERVER"), 2);
        let fields = [
            ("ts_exit_ns", offset_of!(RawSockEvent, ts_exit_ns), 8),
            ("socket_id", offset_of!(RawSockEvent, socket_id), 16),
            ("trace_id", offset_of!(RawSockEvent, trace_id), 24),
            ("cgroup_id", offset_of!(RawSockEvent, cgroup_id), 32),
            ("pid", offset_of!(RawSockEvent, pid), 40),
            ("tid", offset_of!(RawSockEvent, tid), 44),
            ("fd", offset_of!(RawSockEvent, fd), 48),
            ("len", offset_of!(RawSockEvent, len), 52),
            ("captured", offset_of!(RawSockEvent, captured), 56),
            ("sock_seq", offset_of!(RawSockEvent, sock_seq), 60),
            ("tcp_seq", offset_of!(RawSockEvent, tcp_seq), 64),
            ("kind", offset_of!(RawSockEvent, kind), 68),
            ("family", offset_of!(RawSockEvent, family), 69),
            ("syscall", offset_of!(RawSockEvent, syscall), 70),
            ("l4", offset_of!(RawSockEvent, l4), 71),
            ("role", offset_of!(RawSockEvent, role), 72),
            ("flags", offset_of!(RawSockEvent, flags), 73),
            ("lport", offset_of!(RawSockEvent, lport), 74),
            ("rport", offset_of!(RawSockEvent, rport), 76),
            ("laddr", offset_of!(RawSockEvent, laddr), 80),
            ("raddr", offset_of!(RawSockEvent, raddr), 96),
            ("comm", offset_of!(RawSockEvent, comm), 112),
        ];
        for (field, got, want) in fields {
            assert_eq!(got, want, "{field}");
        }
        assert_eq!(HDR_LEN, 128);
        assert_eq!(size_of::<RawSockEvent>(), 16512);
        // The offsets asserted in the header are the same numbers.
        for (field, _, off) in fields {
            let needle = format!("struct fathom_sock_event, {field}) == {off}");
            if HEADER.contains(&format!("struct fathom_sock_event, {field})")) {
                assert!(HEADER.contains(&needle), "{needle}");
            }
        }
        assert!(HEADER.contains("sizeof(struct fathom_sock_event) == 16512"));
    }

    /// A data record as the eBPF side lays it out (test helper): socket id `fd + 1000`, sequence numbers from
    /// `sock_seq`, TCP.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        kind: u8,
        pid: u32,
        fd: u32,
        local: ([u8; 4], u16),
        remote: ([u8; 4], u16),
        ts_ns: u64,
        len: u32,
        data: &[u8],
    ) -> Vec<u8> {
        Rec {
            kind,
            pid,
            fd,
            local,
            remote,
            ts_ns,
            len,
            ..Rec::default()
        }
        .build(data)
    }

    /// Mark a record built by [`record`] or [`Rec::build`] as TLS plaintext (test helper).
    pub(crate) fn set_tls(r: &mut [u8]) {
        r[offset_of!(RawSockEvent, flags)] |= FLAG_TLS;
    }

    /// Every field of a test record.
    #[derive(Clone, Copy)]
    pub(crate) struct Rec {
        pub kind: u8,
        pub pid: u32,
        pub tid: u32,
        pub fd: u32,
        pub socket_id: u64,
        pub trace_id: u64,
        pub sock_seq: u32,
        pub tcp_seq: Option<u32>,
        pub l4: u8,
        pub role: u8,
        pub local: ([u8; 4], u16),
        pub remote: ([u8; 4], u16),
        pub ts_ns: u64,
        pub len: u32,
    }

    impl Default for Rec {
        fn default() -> Self {
            Rec {
                kind: 0,
                pid: 1,
                tid: 0,
                fd: 3,
                socket_id: 0,
                trace_id: 0,
                sock_seq: 0,
                tcp_seq: None,
                l4: 6,
                role: 0,
                local: ([127, 0, 0, 1], 1),
                remote: ([127, 0, 0, 1], 2),
                ts_ns: 0,
                len: 0,
            }
        }
    }

    impl Rec {
        pub(crate) fn build(&self, data: &[u8]) -> Vec<u8> {
            let mut b = vec![0u8; HDR_LEN + data.len()];
            let tid = if self.tid == 0 {
                self.pid + 1
            } else {
                self.tid
            };
            let socket_id = if self.socket_id == 0 {
                u64::from(self.fd) + 1000
            } else {
                self.socket_id
            };
            b[0..8].copy_from_slice(&self.ts_ns.to_ne_bytes());
            b[8..16].copy_from_slice(&(self.ts_ns + 1000).to_ne_bytes());
            b[16..24].copy_from_slice(&socket_id.to_ne_bytes());
            b[24..32].copy_from_slice(&self.trace_id.to_ne_bytes());
            b[40..44].copy_from_slice(&self.pid.to_ne_bytes());
            b[44..48].copy_from_slice(&tid.to_ne_bytes());
            b[48..52].copy_from_slice(&self.fd.to_ne_bytes());
            b[52..56].copy_from_slice(&self.len.to_ne_bytes());
            b[56..60].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            b[60..64].copy_from_slice(&self.sock_seq.to_ne_bytes());
            b[64..68].copy_from_slice(&self.tcp_seq.unwrap_or(0).to_ne_bytes());
            b[68] = self.kind;
            b[69] = 2;
            b[71] = self.l4;
            b[72] = self.role;
            b[73] = u8::from(self.tcp_seq.is_some());
            b[74..76].copy_from_slice(&self.local.1.to_ne_bytes());
            b[76..78].copy_from_slice(&self.remote.1.to_ne_bytes());
            b[80..84].copy_from_slice(&self.local.0);
            b[96..100].copy_from_slice(&self.remote.0);
            b[112..116].copy_from_slice(b"curl");
            b[HDR_LEN..].copy_from_slice(data);
            b
        }
    }

    #[test]
    fn parses_a_record() {
        let r = record(
            0,
            42,
            5,
            ([127, 0, 0, 1], 50000),
            ([127, 0, 0, 2], 80),
            7,
            9,
            b"GET ",
        );
        let e = SockEvent::parse(&r).unwrap();
        assert_eq!((e.pid, e.tid, e.fd, e.len), (42, 43, 5, 9));
        assert_eq!(e.kind, Kind::Egress);
        assert_eq!(e.local, (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 50000));
        assert_eq!(e.remote, (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 80));
        assert_eq!(e.comm, b"curl");
        assert_eq!(e.data, b"GET ");
        assert_eq!((e.ts_enter_ns, e.ts_exit_ns), (7, 1007));
        // Truncated records and bad codes are rejected, never a panic.
        for n in 0..r.len() {
            assert!(SockEvent::parse(&r[..n]).is_none());
        }
        let mut bad = r.clone();
        bad[68] = 9;
        assert!(SockEvent::parse(&bad).is_none());
        let mut bad = r.clone();
        bad[71] = 1;
        assert!(SockEvent::parse(&bad).is_none());
        let mut v6 = r;
        v6[69] = 10;
        v6[80..96].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets());
        let e = SockEvent::parse(&v6).unwrap();
        assert_eq!(e.local.0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
