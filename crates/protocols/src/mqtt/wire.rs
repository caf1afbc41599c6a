//! MQTT control packets on the wire: fixed header, per-type validation and the fields a log needs.
//!
//! Validity contract: every function takes arbitrary bytes and never panics; "need more bytes" is
//! `Ok(None)` / [`Chain::partial`], never an error. Bodies are borrowed; nothing allocates.
//!
//! References: MQTT 3.1.1 (OASIS, 2014) §2-3 and MQTT 5.0 (OASIS, 2019) §2-3. MQTT 3.1 (IBM, 2010) differs
//! from 3.1.1 only in the CONNECT protocol name (`MQIsdp`, level 3) and a 23-byte client-id limit.

use crate::{ParseError, ParseErrorKind};

/// An MQTT control packet type (the high nibble of the first byte). Open: unknown values keep their raw
/// number (0 is reserved and rejected by [`fixed_header`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketType(pub u8);

impl PacketType {
    /// Client request to connect.
    pub const CONNECT: PacketType = PacketType(1);
    /// Connect acknowledgement.
    pub const CONNACK: PacketType = PacketType(2);
    /// Publish message.
    pub const PUBLISH: PacketType = PacketType(3);
    /// Publish acknowledgement (QoS 1).
    pub const PUBACK: PacketType = PacketType(4);
    /// Publish received (QoS 2, part 1).
    pub const PUBREC: PacketType = PacketType(5);
    /// Publish release (QoS 2, part 2).
    pub const PUBREL: PacketType = PacketType(6);
    /// Publish complete (QoS 2, part 3).
    pub const PUBCOMP: PacketType = PacketType(7);
    /// Subscribe request.
    pub const SUBSCRIBE: PacketType = PacketType(8);
    /// Subscribe acknowledgement.
    pub const SUBACK: PacketType = PacketType(9);
    /// Unsubscribe request.
    pub const UNSUBSCRIBE: PacketType = PacketType(10);
    /// Unsubscribe acknowledgement.
    pub const UNSUBACK: PacketType = PacketType(11);
    /// Ping request.
    pub const PINGREQ: PacketType = PacketType(12);
    /// Ping response.
    pub const PINGRESP: PacketType = PacketType(13);
    /// Disconnect notification.
    pub const DISCONNECT: PacketType = PacketType(14);
    /// Authentication exchange (MQTT 5).
    pub const AUTH: PacketType = PacketType(15);

    /// The packet name as the specification spells it.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            1 => "CONNECT",
            2 => "CONNACK",
            3 => "PUBLISH",
            4 => "PUBACK",
            5 => "PUBREC",
            6 => "PUBREL",
            7 => "PUBCOMP",
            8 => "SUBSCRIBE",
            9 => "SUBACK",
            10 => "UNSUBSCRIBE",
            11 => "UNSUBACK",
            12 => "PINGREQ",
            13 => "PINGRESP",
            14 => "DISCONNECT",
            15 => "AUTH",
            _ => "UNKNOWN",
        }
    }

    /// Whether `flags` (the low nibble) are legal for this type (3.1.1 §2.2.2, 5.0 §2.1.3): PUBREL,
    /// SUBSCRIBE and UNSUBSCRIBE need 0b0010, PUBLISH any but QoS 3, every other type 0.
    pub const fn flags_valid(self, flags: u8) -> bool {
        match self.0 {
            0 => false,
            3 => (flags >> 1) & 3 != 3,
            6 | 8 | 10 => flags == 2,
            _ => flags == 0,
        }
    }
}

/// Protocol version, from CONNECT's protocol name and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// MQTT 3.1 (`MQIsdp`, level 3).
    V3_1,
    /// MQTT 3.1.1 (`MQTT`, level 4).
    V3_1_1,
    /// MQTT 5.0 (`MQTT`, level 5).
    V5,
}

impl Version {
    /// The `version` field value: `3.1`, `3.1.1` or `5`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Version::V3_1 => "3.1",
            Version::V3_1_1 => "3.1.1",
            Version::V5 => "5",
        }
    }
}

/// The fixed header of a control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type.
    pub ptype: PacketType,
    /// Low nibble of the first byte.
    pub flags: u8,
    /// Remaining length (variable header + payload).
    pub remaining: usize,
    /// Bytes of the fixed header itself (2 to 5).
    pub header_len: usize,
}

impl FixedHeader {
    /// Whole packet length.
    pub const fn total(&self) -> usize {
        self.header_len + self.remaining
    }

    /// PUBLISH QoS (0 for other types).
    pub const fn qos(&self) -> u8 {
        if self.ptype.0 == 3 {
            (self.flags >> 1) & 3
        } else {
            0
        }
    }
}

/// Largest remaining length the 4-byte variable-length integer can encode.
pub const MAX_REMAINING: usize = 268_435_455;

/// Decode an MQTT variable byte integer at the start of `data`: `Ok(Some((value, bytes)))`, `Ok(None)` when
/// more bytes are needed, an error for a fifth continuation byte.
pub fn varint(data: &[u8]) -> Result<Option<(usize, usize)>, ParseError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = data.get(i) else {
            return Ok(None);
        };
        value |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(ParseError::new(ParseErrorKind::Invalid, 4))
}

/// Parse the fixed header: `Ok(None)` when more bytes are needed.
///
/// # Errors
/// `Invalid` for a reserved type, illegal flags or a remaining length longer than 4 bytes.
pub fn fixed_header(data: &[u8]) -> Result<Option<FixedHeader>, ParseError> {
    let Some(&b0) = data.first() else {
        return Ok(None);
    };
    let ptype = PacketType(b0 >> 4);
    let flags = b0 & 0x0f;
    if !ptype.flags_valid(flags) {
        return Err(ParseError::new(ParseErrorKind::Invalid, 0));
    }
    let rest = data.get(1..).unwrap_or_default();
    match varint(rest) {
        Ok(Some((remaining, n))) => Ok(Some(FixedHeader {
            ptype,
            flags,
            remaining,
            header_len: 1 + n,
        })),
        Ok(None) => Ok(None),
        Err(e) => Err(ParseError::new(e.kind, 1 + e.offset)),
    }
}

/// A decoded control packet: the fields a log uses, borrowed from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// CONNECT.
    Connect {
        /// Version from protocol name and level.
        version: Version,
        /// Client identifier (may be empty).
        client_id: &'a str,
    },
    /// CONNACK.
    Connack {
        /// Return code (3.x) or reason code (5).
        code: u8,
        /// Carried MQTT 5 properties (remaining length > 2).
        v5: bool,
    },
    /// PUBLISH (possibly only its head, for large payloads).
    Publish {
        /// QoS 0, 1 or 2.
        qos: u8,
        /// Topic name (empty with an MQTT 5 topic alias).
        topic: &'a str,
        /// Packet identifier, for QoS > 0.
        packet_id: Option<u16>,
        /// MQTT 5 properties (empty for 3.x, or when they were not all available), to walk with
        /// [`properties`].
        props: &'a [u8],
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    PubAck {
        /// Which of the four.
        ptype: PacketType,
        /// Packet identifier.
        packet_id: u16,
        /// MQTT 5 reason code when present on the wire (absent means 0x00 Success).
        reason: Option<u8>,
    },
    /// SUBSCRIBE or UNSUBSCRIBE.
    Subscribe {
        /// SUBSCRIBE or UNSUBSCRIBE.
        ptype: PacketType,
        /// Packet identifier.
        packet_id: u16,
        /// The topic-filter list (MQTT 5 properties already skipped), to walk with [`topic_filters`].
        filters: &'a [u8],
        /// Whether each filter is followed by an options byte (SUBSCRIBE).
        with_options: bool,
        /// Whether the filters were read with MQTT 5 framing.
        v5: bool,
    },
    /// SUBACK or UNSUBACK.
    SubAck {
        /// SUBACK or UNSUBACK.
        ptype: PacketType,
        /// Packet identifier.
        packet_id: u16,
        /// Return / reason codes (empty for a 3.x UNSUBACK).
        codes: &'a [u8],
    },
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect {
        /// MQTT 5 reason code when present.
        reason: Option<u8>,
    },
    /// AUTH (MQTT 5).
    Auth {
        /// Reason code when present.
        reason: Option<u8>,
    },
}

/// A small cursor over a packet body. Every read is bounds-checked.
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

fn bad(p: usize) -> ParseError {
    ParseError::new(ParseErrorKind::BadValue, p)
}

impl<'a> Cur<'a> {
    fn u8(&mut self) -> Result<u8, ParseError> {
        let v = *self.b.get(self.p).ok_or(bad(self.p))?;
        self.p += 1;
        Ok(v)
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        let hi = self.u8()?;
        let lo = self.u8()?;
        Ok(u16::from_be_bytes([hi, lo]))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.p.checked_add(n).ok_or(bad(self.p))?;
        let s = self.b.get(self.p..end).ok_or(bad(self.p))?;
        self.p = end;
        Ok(s)
    }
    /// A 2-byte-length-prefixed UTF-8 string (MQTT "UTF-8 Encoded String": no U+0000).
    fn string(&mut self) -> Result<&'a str, ParseError> {
        let at = self.p;
        let n = self.u16()? as usize;
        let s = self.take(n)?;
        let s = std::str::from_utf8(s).map_err(|_| bad(at))?;
        if s.contains('\0') {
            return Err(bad(at));
        }
        Ok(s)
    }
    fn binary(&mut self) -> Result<&'a [u8], ParseError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// Skip MQTT 5 properties (a variable byte integer length, then that many bytes).
    fn properties(&mut self) -> Result<(), ParseError> {
        let rest = self.b.get(self.p..).unwrap_or_default();
        let (len, n) = varint(rest)?.ok_or(bad(self.p))?;
        self.p += n;
        self.take(len)?;
        Ok(())
    }
    fn rest(&self) -> &'a [u8] {
        self.b.get(self.p..).unwrap_or_default()
    }
    fn done(&self) -> bool {
        self.p >= self.b.len()
    }
}

/// True for a plausible topic name: UTF-8 (checked by the caller), no wildcards.
fn topic_name_ok(t: &str) -> bool {
    !t.contains(['+', '#'])
}

/// MQTT 5 reason codes legal in PUBACK/PUBREC (5.0 §3.4.2.1), PUBREL/PUBCOMP (§3.6.2.1).
fn pub_reason_ok(ptype: PacketType, r: u8) -> bool {
    match ptype.0 {
        4 | 5 => matches!(
            r,
            0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
        ),
        _ => matches!(r, 0x00 | 0x92),
    }
}

/// Decode one whole packet body (`body` is exactly `header.remaining` bytes, except for a PUBLISH head when
/// `head_only`). `version` is the flow's version when known: it matters only where MQTT 5 added properties
/// before variable-length content (SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK); with `None` both framings are
/// tried, 3.1.1 first.
///
/// # Errors
/// `BadValue` when the body does not follow the specification.
pub fn packet<'a>(
    h: &FixedHeader,
    body: &'a [u8],
    version: Option<Version>,
    head_only: bool,
) -> Result<Packet<'a>, ParseError> {
    let mut c = Cur { b: body, p: 0 };
    let pk = match h.ptype.0 {
        1 => {
            let name = c.binary()?;
            let level = c.u8()?;
            let version = match (name, level) {
                (b"MQTT", 4) => Version::V3_1_1,
                (b"MQTT", 5) => Version::V5,
                (b"MQIsdp", 3) => Version::V3_1,
                _ => return Err(bad(0)),
            };
            let flags = c.u8()?;
            if flags & 1 != 0 {
                return Err(bad(c.p - 1));
            }
            let _keep_alive = c.u16()?;
            if version == Version::V5 {
                c.properties()?;
            }
            let client_id = c.string()?;
            // Will, user name and password follow; they are not logged.
            Packet::Connect { version, client_id }
        }
        2 => {
            let ack_flags = c.u8()?;
            if ack_flags & 0xfe != 0 {
                return Err(bad(0));
            }
            let code = c.u8()?;
            let v5 = !c.done();
            if v5 {
                c.properties()?;
            }
            Packet::Connack { code, v5 }
        }
        3 => {
            let topic = c.string()?;
            if !topic_name_ok(topic) {
                return Err(bad(0));
            }
            let qos = h.qos();
            let packet_id = if qos > 0 {
                let id = c.u16()?;
                if id == 0 {
                    return Err(bad(c.p - 2));
                }
                Some(id)
            } else {
                None
            };
            // MQTT 5 properties and the application payload follow. The fields above read the same in
            // every version; properties (topic alias, user properties) are read only for a known MQTT 5
            // flow, and only when all of them are there.
            let mut props: &[u8] = &[];
            if version == Some(Version::V5) {
                let rest = c.rest();
                match varint(rest) {
                    Ok(Some((len, n))) => match rest.get(n..n + len) {
                        Some(p) => props = p,
                        None if head_only => {}
                        None => return Err(bad(c.p)),
                    },
                    Ok(None) if head_only => {}
                    _ => return Err(bad(c.p)),
                }
            }
            if topic.is_empty() && version != Some(Version::V5) && version.is_some() {
                return Err(bad(0));
            }
            return Ok(Packet::Publish {
                qos,
                topic,
                packet_id,
                props,
            });
        }
        4..=7 => {
            let packet_id = c.u16()?;
            let reason = if c.done() {
                None
            } else {
                let r = c.u8()?;
                if !pub_reason_ok(h.ptype, r) {
                    return Err(bad(2));
                }
                if !c.done() {
                    c.properties()?;
                }
                Some(r)
            };
            Packet::PubAck {
                ptype: h.ptype,
                packet_id,
                reason,
            }
        }
        8 | 10 => {
            let with_options = h.ptype == PacketType::SUBSCRIBE;
            let try_v3 = version != Some(Version::V5);
            let try_v5 = matches!(version, None | Some(Version::V5));
            let mut last = bad(0);
            for v5 in [false, true] {
                if (v5 && !try_v5) || (!v5 && !try_v3) {
                    continue;
                }
                match subscribe_body(body, v5, with_options) {
                    Ok((packet_id, filters)) => {
                        return Ok(Packet::Subscribe {
                            ptype: h.ptype,
                            packet_id,
                            filters,
                            with_options,
                            v5,
                        })
                    }
                    Err(e) => last = e,
                }
            }
            return Err(last);
        }
        9 | 11 => {
            let packet_id = c.u16()?;
            let v3_codes_ok = |codes: &[u8]| {
                if h.ptype == PacketType::SUBACK {
                    !codes.is_empty() && codes.iter().all(|&x| matches!(x, 0 | 1 | 2 | 0x80))
                } else {
                    codes.is_empty()
                }
            };
            let rest = c.rest();
            let v3 = version != Some(Version::V5) && v3_codes_ok(rest);
            if v3 {
                return Ok(Packet::SubAck {
                    ptype: h.ptype,
                    packet_id,
                    codes: rest,
                });
            }
            if version.is_some() && version != Some(Version::V5) {
                return Err(bad(2));
            }
            c.properties()?;
            let codes = c.rest();
            if codes.is_empty() {
                return Err(bad(c.p));
            }
            return Ok(Packet::SubAck {
                ptype: h.ptype,
                packet_id,
                codes,
            });
        }
        12 | 13 => {
            if h.remaining != 0 {
                return Err(bad(0));
            }
            if h.ptype == PacketType::PINGREQ {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        14 | 15 => {
            let reason = if c.done() {
                None
            } else {
                let r = c.u8()?;
                if !c.done() {
                    c.properties()?;
                }
                Some(r)
            };
            if h.ptype == PacketType::DISCONNECT {
                Packet::Disconnect { reason }
            } else {
                Packet::Auth { reason }
            }
        }
        _ => return Err(bad(0)),
    };
    if !head_only && !c.done() && !matches!(pk, Packet::Connect { .. }) {
        // Trailing bytes inside a packet that has no payload: not MQTT.
        return Err(bad(c.p));
    }
    Ok(pk)
}

fn subscribe_body(body: &[u8], v5: bool, with_options: bool) -> Result<(u16, &[u8]), ParseError> {
    let mut c = Cur { b: body, p: 0 };
    let packet_id = c.u16()?;
    if packet_id == 0 {
        return Err(bad(0));
    }
    if v5 {
        c.properties()?;
    }
    let filters = c.rest();
    let mut n = 0;
    for f in topic_filters(filters, with_options) {
        let (_, opts) = f?;
        if with_options && !options_ok(opts, v5) {
            return Err(bad(c.p));
        }
        n += 1;
    }
    if n == 0 {
        return Err(bad(c.p));
    }
    Ok((packet_id, filters))
}

fn options_ok(opts: u8, v5: bool) -> bool {
    if v5 {
        opts & 0xc0 == 0 && opts & 3 != 3 && (opts >> 4) & 3 != 3
    } else {
        opts <= 2
    }
}

/// Walk a SUBSCRIBE / UNSUBSCRIBE topic-filter list: each item is a filter and its options byte (0 for
/// UNSUBSCRIBE). Stops after the first error.
pub fn topic_filters(
    filters: &[u8],
    with_options: bool,
) -> impl Iterator<Item = Result<(&str, u8), ParseError>> + '_ {
    let mut c = Cur { b: filters, p: 0 };
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || c.done() {
            return None;
        }
        let r = (|| {
            let f = c.string()?;
            if f.is_empty() {
                return Err(bad(c.p));
            }
            let o = if with_options { c.u8()? } else { 0 };
            Ok((f, o))
        })();
        failed = r.is_err();
        Some(r)
    })
}

/// One MQTT 5 property (5.0 §2.2.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property<'a> {
    /// A one-byte, two-byte, four-byte or variable-byte-integer property.
    Int(u8, u32),
    /// A UTF-8 string property.
    Str(u8, &'a str),
    /// A binary data property.
    Bin(u8, &'a [u8]),
    /// A user property (name, value).
    User(&'a str, &'a str),
}

/// MQTT 5 property identifiers used here.
pub mod prop {
    /// Topic Alias (two-byte integer, PUBLISH).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// User Property (string pair).
    pub const USER: u8 = 0x26;
}

/// Walk MQTT 5 properties; stops after the first malformed one (yielding its error).
pub fn properties(props: &[u8]) -> impl Iterator<Item = Result<Property<'_>, ParseError>> + '_ {
    let mut c = Cur { b: props, p: 0 };
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || c.done() {
            return None;
        }
        let r = (|| {
            let id = c.u8()?;
            Ok(match id {
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => {
                    Property::Int(id, c.u8()? as u32)
                }
                0x13 | 0x21 | 0x22 | 0x23 => Property::Int(id, c.u16()? as u32),
                0x02 | 0x11 | 0x18 | 0x27 => {
                    let b = c.take(4)?;
                    Property::Int(id, u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                }
                0x0b => {
                    let (v, n) = varint(c.rest())?.ok_or(bad(c.p))?;
                    c.p += n;
                    Property::Int(id, v as u32)
                }
                0x03 | 0x08 | 0x12 | 0x15 | 0x1a | 0x1c | 0x1f => Property::Str(id, c.string()?),
                0x09 | 0x16 => Property::Bin(id, c.binary()?),
                0x26 => Property::User(c.string()?, c.string()?),
                _ => return Err(bad(c.p - 1)),
            })
        })();
        failed = r.is_err();
        Some(r)
    })
}

/// Whether a decoded packet is strong evidence of MQTT on its own (used by detection and resynchronisation:
/// tiny packets such as PINGREQ or PUBACK are too easy to find in random bytes).
pub fn is_strong(p: &Packet<'_>) -> bool {
    match p {
        Packet::Connect { .. } | Packet::Subscribe { .. } => true,
        Packet::Connack { code, .. } => *code == 0,
        Packet::Publish { topic, .. } => {
            topic.len() >= 2
                && topic
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) || b >= 0x80)
        }
        Packet::SubAck { codes, .. } => !codes.is_empty(),
        _ => false,
    }
}

/// What a run of packets from some offset looks like.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chain {
    /// Whole valid packets in a row.
    pub packets: usize,
    /// At least one of them is strong evidence ([`is_strong`]).
    pub strong: bool,
    /// The first one is a CONNECT.
    pub connect: bool,
    /// The run reaches exactly the end of the data.
    pub at_end: bool,
    /// The run ends with a packet whose header is valid but which is not complete yet.
    pub partial: bool,
    /// The first invalid byte stopped the run (neither `at_end` nor `partial`).
    pub invalid: bool,
    /// The run ends with a PUBLISH too large to buffer whose head is valid strong evidence.
    pub big_publish: bool,
}

/// Largest remaining length plausible for a packet type: the acknowledgements have fixed sizes in 3.x and
/// stay small in MQTT 5 (a reason string property at most); PINGREQ/PINGRESP are empty.
pub fn max_remaining(ptype: PacketType, version: Option<Version>) -> usize {
    let v5 = version != Some(Version::V3_1) && version != Some(Version::V3_1_1);
    match ptype.0 {
        12 | 13 => 0,
        2 | 4..=7 if !v5 => 2,
        2 | 4..=7 => 512,
        11 if !v5 => 2,
        14 | 15 if !v5 => 0,
        _ => MAX_REMAINING,
    }
}

/// Walk up to `max` packets from the start of `data`, validating each.
pub fn chain(data: &[u8], version: Option<Version>, max: usize, max_len: usize) -> Chain {
    let mut ch = Chain::default();
    let mut pos = 0usize;
    while ch.packets < max {
        let rest = data.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            ch.at_end = true;
            return ch;
        }
        let h = match fixed_header(rest) {
            Ok(Some(h)) => h,
            Ok(None) => {
                ch.partial = true;
                return ch;
            }
            Err(_) => {
                ch.invalid = true;
                return ch;
            }
        };
        let Some(body) = rest.get(h.header_len..h.total()) else {
            // Incomplete: plausible only if its length is sane for its type and version.
            if h.remaining > max_remaining(h.ptype, version)
                || (h.ptype != PacketType::PUBLISH && h.total() > max_len)
            {
                ch.invalid = true;
                return ch;
            }
            ch.partial = true;
            if h.ptype == PacketType::PUBLISH && h.total() > max_len {
                // Too large to wait for: judge it by its head (topic and packet id).
                let avail = rest.get(h.header_len..).unwrap_or_default();
                if let Some(tl) = avail.get(..2) {
                    let head = 2
                        + u16::from_be_bytes([tl[0], tl[1]]) as usize
                        + if h.qos() > 0 { 2 } else { 0 };
                    if let Some(hb) = avail.get(..head) {
                        match packet(&h, hb, version, true) {
                            Ok(p) if is_strong(&p) => ch.big_publish = true,
                            Ok(_) => {}
                            Err(_) => {
                                ch.partial = false;
                                ch.invalid = true;
                            }
                        }
                    }
                }
            }
            return ch;
        };
        match packet(&h, body, version, false) {
            Ok(p) => {
                if ch.packets == 0 && matches!(p, Packet::Connect { .. }) {
                    ch.connect = true;
                }
                ch.strong |= is_strong(&p);
                ch.packets += 1;
                pos += h.total();
            }
            Err(_) => {
                ch.invalid = true;
                return ch;
            }
        }
    }
    ch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header_flags_and_varint() {
        // PUBREL needs flags 0b0010 (3.1.1 §3.6.1).
        assert!(fixed_header(&[0x62, 0x02]).unwrap().is_some());
        assert!(fixed_header(&[0x60, 0x02]).is_err());
        // QoS 3 PUBLISH is malformed.
        assert!(fixed_header(&[0x36, 0x02]).is_err());
        // 321 = 0xC1 0x02 (3.1.1 §2.2.3 example range).
        let h = fixed_header(&[0x30, 0xc1, 0x02]).unwrap().unwrap();
        assert_eq!((h.remaining, h.header_len), (321, 3));
        // 268,435,455 = FF FF FF 7F is the maximum; a fifth byte is an error.
        let h = fixed_header(&[0x30, 0xff, 0xff, 0xff, 0x7f])
            .unwrap()
            .unwrap();
        assert_eq!(h.remaining, MAX_REMAINING);
        assert!(fixed_header(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert_eq!(fixed_header(&[0x30, 0xff]).unwrap(), None);
        assert_eq!(fixed_header(&[]).unwrap(), None);
    }

    #[test]
    fn connect_versions() {
        // From mqtt.pcap (mosquitto_sub, 3.1.1) and paho MQTT 5 (properties length 0).
        let v311 = b"\x10\x16\x00\x04MQTT\x04\x02\x01\x2c\x00\x0afathom-sub";
        let h = fixed_header(v311).unwrap().unwrap();
        let p = packet(&h, &v311[2..], None, false).unwrap();
        assert_eq!(
            p,
            Packet::Connect {
                version: Version::V3_1_1,
                client_id: "fathom-sub"
            }
        );
        let v5 = b"\x10\x1b\x00\x04MQTT\x05\x02\x01\x2c\x00\x00\x0efathom-paho-v5";
        let h = fixed_header(v5).unwrap().unwrap();
        assert_eq!(
            packet(&h, &v5[2..], None, false).unwrap(),
            Packet::Connect {
                version: Version::V5,
                client_id: "fathom-paho-v5"
            }
        );
        // MQTT 3.1 (protocol name MQIsdp, level 3), from the 3.1 specification's example.
        let v31 = b"\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x04abcd";
        let h = fixed_header(v31).unwrap().unwrap();
        assert!(matches!(
            packet(&h, &v31[2..], None, false).unwrap(),
            Packet::Connect {
                version: Version::V3_1,
                ..
            }
        ));
    }
}
