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
    pid: u32,
    tid: u32,
    fd: u32,
    len: u32,
    captured: u32,
    kind: u8,
    family: u8,
    syscall: u8,
    flags: u8,
    lport: u16,
    rport: u16,
    laddr: [u8; 16],
    raddr: [u8; 16],
    comm: [u8; COMM_LEN],
    data: [u8; MAX_DATA],
}

/// Bytes before the payload (`FATHOM_HDR_LEN`).
pub(crate) const HDR_LEN: usize = offset_of!(RawSockEvent, data);

/// `FATHOM_FLAG_TLS`: the data is TLS plaintext from an OpenSSL hook.
pub(crate) const FLAG_TLS: u8 = 2;

/// What the syscall did with the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// write/sendto/writev/sendmsg: the bytes leave the process.
    Egress,
    /// read/recvfrom/readv/recvmsg: the bytes enter the process.
    Ingress,
    /// close() of the socket.
    Close,
}

/// One parsed event, borrowing its payload from the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SockEvent<'a> {
    pub ts_enter_ns: u64,
    pub ts_exit_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    /// Bytes the syscall transferred.
    pub len: u32,
    pub kind: Kind,
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    pub comm: &'a [u8],
    /// TLS plaintext from an OpenSSL hook (`FATHOM_FLAG_TLS`), not the socket's own bytes.
    pub tls_plaintext: bool,
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
            _ => return None,
        };
        let family = *b.get(offset_of!(RawSockEvent, family))?;
        let la = offset_of!(RawSockEvent, laddr);
        let ra = offset_of!(RawSockEvent, raddr);
        let co = offset_of!(RawSockEvent, comm);
        let comm = b.get(co..co + COMM_LEN)?;
        let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(COMM_LEN)];
        Some(SockEvent {
            ts_enter_ns: u64_at(b, offset_of!(RawSockEvent, ts_enter_ns))?,
            ts_exit_ns: u64_at(b, offset_of!(RawSockEvent, ts_exit_ns))?,
            pid: u32_at(b, offset_of!(RawSockEvent, pid))?,
            tid: u32_at(b, offset_of!(RawSockEvent, tid))?,
            fd: u32_at(b, offset_of!(RawSockEvent, fd))?,
            len: u32_at(b, offset_of!(RawSockEvent, len))?,
            kind,
            local: (
                addr(family, b.get(la..la + 16)?)?,
                u16_at(b, offset_of!(RawSockEvent, lport))?,
            ),
            remote: (
                addr(family, b.get(ra..ra + 16)?)?,
                u16_at(b, offset_of!(RawSockEvent, rport))?,
            ),
            comm,
            tls_plaintext: b.get(offset_of!(RawSockEvent, flags))? & FLAG_TLS != 0,
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
        assert_eq!(offset_of!(RawSockEvent, ts_exit_ns), 8);
        assert_eq!(offset_of!(RawSockEvent, pid), 16);
        assert_eq!(offset_of!(RawSockEvent, tid), 20);
        assert_eq!(offset_of!(RawSockEvent, fd), 24);
        assert_eq!(offset_of!(RawSockEvent, len), 28);
        assert_eq!(offset_of!(RawSockEvent, captured), 32);
        assert_eq!(offset_of!(RawSockEvent, kind), 36);
        assert_eq!(offset_of!(RawSockEvent, family), 37);
        assert_eq!(offset_of!(RawSockEvent, syscall), 38);
        assert_eq!(offset_of!(RawSockEvent, lport), 40);
        assert_eq!(offset_of!(RawSockEvent, rport), 42);
        assert_eq!(offset_of!(RawSockEvent, laddr), 44);
        assert_eq!(offset_of!(RawSockEvent, raddr), 60);
        assert_eq!(offset_of!(RawSockEvent, comm), 76);
        assert_eq!(HDR_LEN, 92);
        assert_eq!(size_of::<RawSockEvent>(), 16480);
        // Every offset above is also a `_Static_assert` in the header.
        for (field, off) in [
            ("pid", 16),
            ("len", 28),
            ("kind", 36),
            ("lport", 40),
            ("laddr", 44),
            ("raddr", 60),
            ("comm", 76),
        ] {
            let needle = format!("struct fathom_sock_event, {field}) == {off}");
            assert!(HEADER.contains(&needle), "{needle}");
        }
        assert!(HEADER.contains("sizeof(struct fathom_sock_event) == 16480"));
    }

    /// Build a record as the eBPF side lays it out (test helper).
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
        let mut b = vec![0u8; HDR_LEN + data.len()];
        b[0..8].copy_from_slice(&ts_ns.to_ne_bytes());
        b[8..16].copy_from_slice(&(ts_ns + 1000).to_ne_bytes());
        b[16..20].copy_from_slice(&pid.to_ne_bytes());
        b[20..24].copy_from_slice(&(pid + 1).to_ne_bytes());
        b[24..28].copy_from_slice(&fd.to_ne_bytes());
        b[28..32].copy_from_slice(&len.to_ne_bytes());
        b[32..36].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        b[36] = kind;
        b[37] = 2;
        b[40..42].copy_from_slice(&local.1.to_ne_bytes());
        b[42..44].copy_from_slice(&remote.1.to_ne_bytes());
        b[44..48].copy_from_slice(&local.0);
        b[60..64].copy_from_slice(&remote.0);
        b[76..80].copy_from_slice(b"curl");
        b[HDR_LEN..].copy_from_slice(data);
        b
    }

    /// Mark a record built by [`record`] as TLS plaintext (test helper).
    pub(crate) fn set_tls(r: &mut [u8]) {
        r[offset_of!(RawSockEvent, flags)] |= FLAG_TLS;
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
        assert!(!e.tls_plaintext);
        let mut t = r.clone();
        set_tls(&mut t);
        assert!(SockEvent::parse(&t).unwrap().tls_plaintext);
        // Truncated records and bad codes are rejected, never a panic.
        for n in 0..r.len() {
            assert!(SockEvent::parse(&r[..n]).is_none());
        }
        let mut bad = r.clone();
        bad[36] = 9;
        assert!(SockEvent::parse(&bad).is_none());
        let mut v6 = r;
        v6[37] = 10;
        v6[44..60].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets());
        let e = SockEvent::parse(&v6).unwrap();
        assert_eq!(e.local.0, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
