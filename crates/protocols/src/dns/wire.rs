//! DNS wire format (RFC 1035 §4): a zero-copy, panic-free view over one message.
//!
//! Validity contract: [`Message::parse`] checks the 12-byte header and the first question (when there is
//! one) and returns a view whose accessors never panic; resource records are read lazily by
//! [`Message::records`], which stops at the first malformed record (and reports it) instead of failing
//! the whole message. Domain names may use compression pointers: a pointer must point strictly before
//! the pointer itself (so a name can never loop) and a name reads at most [`MAX_LABELS`] labels and
//! [`MAX_NAME_LEN`] bytes.

use crate::{ParseError, ParseErrorKind};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 12;
/// Longest domain name on the wire (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Most labels (and compression pointers) followed in one name.
pub const MAX_LABELS: usize = 128;

/// A DNS opcode (4 bits). Open: unknown values keep their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    /// Standard query.
    pub const QUERY: Opcode = Opcode(0);
    /// Inverse query (obsolete).
    pub const IQUERY: Opcode = Opcode(1);
    /// Server status request.
    pub const STATUS: Opcode = Opcode(2);
    /// Zone change notification (RFC 1996).
    pub const NOTIFY: Opcode = Opcode(4);
    /// Dynamic update (RFC 2136).
    pub const UPDATE: Opcode = Opcode(5);
    /// DNS stateful operations (RFC 8490).
    pub const DSO: Opcode = Opcode(6);

    /// The IANA mnemonic, `None` for unassigned values.
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "QUERY",
            1 => "IQUERY",
            2 => "STATUS",
            4 => "NOTIFY",
            5 => "UPDATE",
            6 => "DSO",
            _ => return None,
        })
    }
}

/// A response code (4 bits in the header, 12 with the EDNS extension). Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

impl Rcode {
    /// No error.
    pub const NOERROR: Rcode = Rcode(0);
    /// Format error: the server could not interpret the query.
    pub const FORMERR: Rcode = Rcode(1);
    /// Server failure.
    pub const SERVFAIL: Rcode = Rcode(2);
    /// Non-existent domain.
    pub const NXDOMAIN: Rcode = Rcode(3);
    /// Not implemented.
    pub const NOTIMP: Rcode = Rcode(4);
    /// Refused.
    pub const REFUSED: Rcode = Rcode(5);

    /// The IANA mnemonic, `None` for unassigned values.
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            6 => "YXDOMAIN",
            7 => "YXRRSET",
            8 => "NXRRSET",
            9 => "NOTAUTH",
            10 => "NOTZONE",
            11 => "DSOTYPENI",
            16 => "BADVERS",
            17 => "BADKEY",
            18 => "BADTIME",
            19 => "BADMODE",
            20 => "BADNAME",
            21 => "BADALG",
            22 => "BADTRUNC",
            23 => "BADCOOKIE",
            _ => return None,
        })
    }

    /// True for the codes the design counts as the client's fault: FORMERR and NXDOMAIN.
    pub const fn is_client_error(self) -> bool {
        matches!(self.0, 1 | 3)
    }
}

/// A resource record / query type. Open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordType(pub u16);

impl RecordType {
    /// IPv4 address.
    pub const A: RecordType = RecordType(1);
    /// Name server.
    pub const NS: RecordType = RecordType(2);
    /// Canonical name.
    pub const CNAME: RecordType = RecordType(5);
    /// Start of authority.
    pub const SOA: RecordType = RecordType(6);
    /// Pointer.
    pub const PTR: RecordType = RecordType(12);
    /// Mail exchange.
    pub const MX: RecordType = RecordType(15);
    /// Text.
    pub const TXT: RecordType = RecordType(16);
    /// IPv6 address.
    pub const AAAA: RecordType = RecordType(28);
    /// Service locator.
    pub const SRV: RecordType = RecordType(33);
    /// Delegation name.
    pub const DNAME: RecordType = RecordType(39);
    /// EDNS(0) pseudo-record.
    pub const OPT: RecordType = RecordType(41);
    /// Certification authority authorization.
    pub const CAA: RecordType = RecordType(257);

    /// The IANA mnemonic, `None` for types without one (shown as `TYPE<n>`, RFC 3597).
    pub const fn as_str(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "A",
            2 => "NS",
            3 => "MD",
            4 => "MF",
            5 => "CNAME",
            6 => "SOA",
            7 => "MB",
            8 => "MG",
            9 => "MR",
            10 => "NULL",
            11 => "WKS",
            12 => "PTR",
            13 => "HINFO",
            14 => "MINFO",
            15 => "MX",
            16 => "TXT",
            17 => "RP",
            18 => "AFSDB",
            24 => "SIG",
            25 => "KEY",
            28 => "AAAA",
            29 => "LOC",
            30 => "NXT",
            33 => "SRV",
            35 => "NAPTR",
            36 => "KX",
            37 => "CERT",
            39 => "DNAME",
            41 => "OPT",
            42 => "APL",
            43 => "DS",
            44 => "SSHFP",
            45 => "IPSECKEY",
            46 => "RRSIG",
            47 => "NSEC",
            48 => "DNSKEY",
            49 => "DHCID",
            50 => "NSEC3",
            51 => "NSEC3PARAM",
            52 => "TLSA",
            53 => "SMIMEA",
            55 => "HIP",
            59 => "CDS",
            60 => "CDNSKEY",
            61 => "OPENPGPKEY",
            62 => "CSYNC",
            63 => "ZONEMD",
            64 => "SVCB",
            65 => "HTTPS",
            99 => "SPF",
            108 => "EUI48",
            109 => "EUI64",
            249 => "TKEY",
            250 => "TSIG",
            251 => "IXFR",
            252 => "AXFR",
            253 => "MAILB",
            254 => "MAILA",
            255 => "ANY",
            256 => "URI",
            257 => "CAA",
            32769 => "DLV",
            _ => return None,
        })
    }

    /// Append the name (mnemonic or `TYPE<n>`) to `out`.
    pub fn write_name(self, out: &mut String) {
        match self.as_str() {
            Some(s) => out.push_str(s),
            None => {
                let _ = write!(out, "TYPE{}", self.0);
            }
        }
    }

    /// The name as an owned string (mnemonic or `TYPE<n>`).
    pub fn name(self) -> String {
        let mut s = String::new();
        self.write_name(&mut s);
        s
    }
}

/// The fixed 12-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Transaction id.
    pub id: u16,
    /// The 16 flag bits (QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode).
    pub flags: u16,
    /// Questions (zones, for UPDATE).
    pub qdcount: u16,
    /// Answers (prerequisites, for UPDATE).
    pub ancount: u16,
    /// Authority records (updates, for UPDATE).
    pub nscount: u16,
    /// Additional records.
    pub arcount: u16,
}

impl Header {
    /// Read the header from the first 12 bytes of `b`.
    pub fn parse(b: &[u8]) -> Option<Header> {
        let u =
            |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
        Some(Header {
            id: u(0)?,
            flags: u(2)?,
            qdcount: u(4)?,
            ancount: u(6)?,
            nscount: u(8)?,
            arcount: u(10)?,
        })
    }

    /// True for a response (QR bit).
    pub const fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The opcode.
    pub const fn opcode(&self) -> Opcode {
        Opcode(((self.flags >> 11) & 0xf) as u8)
    }

    /// Truncated (TC bit).
    pub const fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// The 4-bit header rcode (see [`Message::rcode`] for the EDNS-extended one).
    pub const fn rcode(&self) -> Rcode {
        Rcode(self.flags & 0xf)
    }

    /// Resource records announced in the three record sections.
    pub const fn record_count(&self) -> u32 {
        self.ancount as u32 + self.nscount as u32 + self.arcount as u32
    }
}

/// A domain name inside a message: the message and the offset where the name starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    msg: &'a [u8],
    start: usize,
}

impl<'a> Name<'a> {
    /// Walk the name at `start` in `msg`: returns the name and the offset just past its in-place encoding.
    ///
    /// # Errors
    /// `Invalid` when the name runs past the message, uses a reserved label type, a forward or looping
    /// pointer, or exceeds [`MAX_NAME_LEN`] / [`MAX_LABELS`].
    pub fn parse(msg: &'a [u8], start: usize) -> Result<(Name<'a>, usize), ParseError> {
        let mut end = None;
        let mut wire_len = 0usize;
        let mut visit = |_: &[u8]| {};
        walk(msg, start, &mut end, &mut wire_len, &mut visit)?;
        let end = end.ok_or(ParseError::new(ParseErrorKind::Invalid, start))?;
        Ok((Name { msg, start }, end))
    }

    /// Append the name in presentation form (labels joined by `.`, no trailing dot; the root is `.`;
    /// bytes outside printable ASCII, `.` and `\` inside labels escaped as in zone files) to `out`.
    pub fn write_to(&self, out: &mut String) {
        let mut first = true;
        let mut end = None;
        let mut n = 0;
        {
            let mut visit = |label: &[u8]| {
                if !first {
                    out.push('.');
                }
                first = false;
                for &b in label {
                    match b {
                        b'.' | b'\\' => {
                            out.push('\\');
                            out.push(b as char);
                        }
                        0x21..=0x7e => out.push(b as char),
                        _ => {
                            let _ = write!(out, "\\{b:03}");
                        }
                    }
                }
            };
            // The name was validated by `parse`; a failure here cannot happen, and would only shorten the text.
            let _ = walk(self.msg, self.start, &mut end, &mut n, &mut visit);
        }
        if first {
            out.push('.');
        }
    }

    /// The name in presentation form (see [`Name::write_to`]).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_to(&mut s);
        s
    }
}

/// Follow labels and pointers from `pos`, calling `visit` per label. Sets `end` to the offset after the
/// in-place encoding (the first pointer or the root label).
fn walk(
    msg: &[u8],
    mut pos: usize,
    end: &mut Option<usize>,
    wire_len: &mut usize,
    visit: &mut dyn FnMut(&[u8]),
) -> Result<(), ParseError> {
    let err = |at: usize| ParseError::new(ParseErrorKind::Invalid, at);
    for _ in 0..MAX_LABELS {
        let len = *msg.get(pos).ok_or(err(pos))?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    if end.is_none() {
                        *end = Some(pos + 1);
                    }
                    return Ok(());
                }
                let label = msg.get(pos + 1..pos + 1 + len as usize).ok_or(err(pos))?;
                *wire_len += len as usize + 1;
                if *wire_len > MAX_NAME_LEN {
                    return Err(err(pos));
                }
                visit(label);
                pos += 1 + len as usize;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(err(pos))?;
                let target = (((len & 0x3f) as usize) << 8) | lo as usize;
                if end.is_none() {
                    *end = Some(pos + 2);
                }
                // Strictly backwards: every jump lowers `pos`, so a name cannot loop.
                if target >= pos {
                    return Err(err(pos));
                }
                pos = target;
            }
            _ => return Err(err(pos)), // 0x40 extended labels and 0x80 are reserved.
        }
    }
    Err(err(pos))
}

/// The first question of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question<'a> {
    /// Query name.
    pub name: Name<'a>,
    /// Query type.
    pub qtype: RecordType,
    /// Query class (with the mDNS unicast-response bit, if any).
    pub qclass: u16,
}

/// One resource record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Owner name.
    pub name: Name<'a>,
    /// Type.
    pub rtype: RecordType,
    /// Class (for OPT: the UDP payload size).
    pub class: u16,
    /// TTL (for OPT: extended rcode, version and flags).
    pub ttl: u32,
    /// Offset of the RDATA in the message.
    pub rdata_offset: usize,
    /// The RDATA.
    pub rdata: &'a [u8],
}

/// A parsed DNS message: header, first question, lazily read records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    bytes: &'a [u8],
    /// The header.
    pub header: Header,
    /// The first question, when `qdcount > 0`.
    pub question: Option<Question<'a>>,
    /// Offset of the first byte after the question section.
    records_offset: usize,
}

impl<'a> Message<'a> {
    /// Parse one whole message (the UDP payload, or a TCP frame without its length prefix).
    ///
    /// # Errors
    /// `Invalid` when the header is short or the questions do not parse; `TooMany` when `qdcount` exceeds
    /// `max_questions`.
    pub fn parse(bytes: &'a [u8], max_questions: usize) -> Result<Message<'a>, ParseError> {
        let header = Header::parse(bytes).ok_or(ParseError::new(ParseErrorKind::Invalid, 0))?;
        if header.qdcount as usize > max_questions {
            return Err(ParseError::new(ParseErrorKind::TooMany, 4));
        }
        let mut pos = HEADER_LEN;
        let mut question = None;
        for _ in 0..header.qdcount {
            let (name, p) = Name::parse(bytes, pos)?;
            let fixed = bytes
                .get(p..p + 4)
                .ok_or(ParseError::new(ParseErrorKind::Invalid, p))?;
            let q = Question {
                name,
                qtype: RecordType(u16::from_be_bytes([fixed[0], fixed[1]])),
                qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
            };
            question.get_or_insert(q);
            pos = p + 4;
        }
        Ok(Message {
            bytes,
            header,
            question,
            records_offset: pos,
        })
    }

    /// The message bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The resource records of the answer, authority and additional sections, in order, with their section
    /// (0 answer, 1 authority, 2 additional). Stops at the first malformed record.
    pub fn records(&self) -> Records<'a> {
        Records {
            bytes: self.bytes,
            pos: self.records_offset,
            left: [
                self.header.ancount,
                self.header.nscount,
                self.header.arcount,
            ],
            failed: false,
        }
    }
}

/// Iterator over the records of a message (see [`Message::records`]).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    pos: usize,
    left: [u16; 3],
    failed: bool,
}

impl Records<'_> {
    /// True when iteration stopped on a malformed record.
    pub fn failed(&self) -> bool {
        self.failed
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, Record<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let section = self.left.iter().position(|&n| n > 0)?;
        self.left[section] -= 1;
        let rec = (|| {
            let (name, p) = Name::parse(self.bytes, self.pos).ok()?;
            let f = self.bytes.get(p..p + 10)?;
            let rtype = RecordType(u16::from_be_bytes([f[0], f[1]]));
            let class = u16::from_be_bytes([f[2], f[3]]);
            let ttl = u32::from_be_bytes([f[4], f[5], f[6], f[7]]);
            let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
            let rdata_offset = p + 10;
            let rdata = self.bytes.get(rdata_offset..rdata_offset + rdlen)?;
            self.pos = rdata_offset + rdlen;
            Some(Record {
                name,
                rtype,
                class,
                ttl,
                rdata_offset,
                rdata,
            })
        })();
        match rec {
            Some(r) => Some((section as u8, r)),
            None => {
                self.failed = true;
                None
            }
        }
    }
}

/// Append a `<character-string>` sequence (TXT, CAA value) quoted, escaping `"`, `\` and non-printables.
fn write_quoted(out: &mut String, s: &[u8]) {
    out.push('"');
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
}

/// Append a name found at `offset` of `msg` with a trailing dot (presentation form of RDATA names).
fn write_rdata_name(out: &mut String, msg: &[u8], offset: usize) -> Option<usize> {
    let (name, end) = Name::parse(msg, offset).ok()?;
    let before = out.len();
    name.write_to(out);
    if !out[before..].ends_with('.') {
        out.push('.');
    }
    Some(end)
}

/// Append `TYPE data` for one record in presentation form, e.g. `A 1.2.3.4`, `CNAME x.example.`,
/// `MX 10 mail.example.`, `TXT "v=spf1 -all"`. Types without a short presentation are written as their
/// name alone.
pub fn write_record(out: &mut String, msg: &[u8], r: &Record<'_>) {
    r.rtype.write_name(out);
    let d = r.rdata;
    let be16 = |i: usize| d.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let be32 = |i: usize| {
        d.get(i..i + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mark = out.len();
    out.push(' ');
    let ok = match r.rtype.0 {
        1 if d.len() == 4 => {
            let _ = write!(out, "{}", Ipv4Addr::new(d[0], d[1], d[2], d[3]));
            true
        }
        28 => match <[u8; 16]>::try_from(d) {
            Ok(a) => {
                let _ = write!(out, "{}", Ipv6Addr::from(a));
                true
            }
            Err(_) => false,
        },
        2 | 5 | 12 | 39 => write_rdata_name(out, msg, r.rdata_offset).is_some(),
        15 => match be16(0) {
            Some(pref) => {
                let _ = write!(out, "{pref} ");
                write_rdata_name(out, msg, r.rdata_offset + 2).is_some()
            }
            None => false,
        },
        33 => match (be16(0), be16(2), be16(4)) {
            (Some(p), Some(w), Some(port)) => {
                let _ = write!(out, "{p} {w} {port} ");
                write_rdata_name(out, msg, r.rdata_offset + 6).is_some()
            }
            _ => false,
        },
        6 => (|| {
            let e1 = write_rdata_name(out, msg, r.rdata_offset)?;
            out.push(' ');
            let e2 = write_rdata_name(out, msg, e1)?;
            let serial = be32(e2.checked_sub(r.rdata_offset)?)?;
            let _ = write!(out, " {serial}");
            Some(())
        })()
        .is_some(),
        16 | 99 => {
            let mut i = 0;
            let mut ok = true;
            while i < d.len() {
                let n = d[i] as usize;
                match d.get(i + 1..i + 1 + n) {
                    Some(s) => {
                        if i > 0 {
                            out.push(' ');
                        }
                        write_quoted(out, s);
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
                i += 1 + n;
            }
            ok && !d.is_empty()
        }
        257 => (|| {
            let flags = *d.first()?;
            let tlen = *d.get(1)? as usize;
            let tag = d.get(2..2 + tlen)?;
            let value = d.get(2 + tlen..)?;
            let _ = write!(out, "{flags} ");
            for &b in tag {
                if b.is_ascii_alphanumeric() {
                    out.push(b as char);
                }
            }
            out.push(' ');
            write_quoted(out, value);
            Some(())
        })()
        .is_some(),
        _ => false,
    };
    if !ok {
        out.truncate(mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_pointers_and_loops() {
        // header (12) + "a.b" at 12, then a pointer to 12 at 17, then a self pointer at 19.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[1, b'a', 1, b'b', 0, 0xc0, 12, 0xc0, 19, 0xc0, 21]);
        let (n, end) = Name::parse(&m, 12).unwrap();
        assert_eq!((n.to_text(), end), ("a.b".to_string(), 17));
        let (n, end) = Name::parse(&m, 17).unwrap();
        assert_eq!((n.to_text(), end), ("a.b".to_string(), 19));
        assert!(Name::parse(&m, 19).is_err(), "self pointer");
        assert!(Name::parse(&m, 21).is_err(), "forward pointer");
        assert!(Name::parse(&m, 23).is_err(), "past the end");
        let root = [0u8; 13];
        assert_eq!(Name::parse(&root, 12).unwrap().0.to_text(), ".");
        // Reserved label types.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[0x41, 0]);
        assert!(Name::parse(&m, 12).is_err());
    }

    #[test]
    fn long_names_are_rejected() {
        let mut m = vec![0u8; 12];
        for _ in 0..5 {
            m.push(63);
            m.extend_from_slice(&[b'x'; 63]);
        }
        m.push(0);
        assert!(Name::parse(&m, 12).is_err());
    }

    #[test]
    fn escapes_odd_bytes() {
        let mut m = vec![0u8; 12];
        m.extend_from_slice(&[3, b'a', b'.', 0xff, 0]);
        assert_eq!(Name::parse(&m, 12).unwrap().0.to_text(), "a\\.\\255");
    }

    #[test]
    fn code_names() {
        assert_eq!(RecordType(65).name(), "HTTPS");
        assert_eq!(RecordType(257).name(), "CAA");
        assert_eq!(RecordType(4242).name(), "TYPE4242");
        assert_eq!(Rcode::NXDOMAIN.as_str(), Some("NXDOMAIN"));
        assert_eq!(Opcode::NOTIFY.as_str(), Some("NOTIFY"));
        assert!(Rcode::FORMERR.is_client_error() && !Rcode::REFUSED.is_client_error());
    }
}
