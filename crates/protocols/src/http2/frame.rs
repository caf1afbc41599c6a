//! HTTP/2 framing (RFC 9113 §4 and §6): the 9-byte frame header, frame types, flags, error codes and settings,
//! and the plausibility rules used to detect HTTP/2 and to find a frame boundary after a gap.
//!
//! Every function here is total: no panics on any input, no allocation.

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;

/// The default (and minimum) SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

/// A frame type (open: unknown types are kept as their raw value and skipped, as RFC 9113 §4.1 requires).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameType(pub u8);

impl FrameType {
    /// DATA (0x0).
    pub const DATA: FrameType = FrameType(0x0);
    /// HEADERS (0x1).
    pub const HEADERS: FrameType = FrameType(0x1);
    /// PRIORITY (0x2).
    pub const PRIORITY: FrameType = FrameType(0x2);
    /// RST_STREAM (0x3).
    pub const RST_STREAM: FrameType = FrameType(0x3);
    /// SETTINGS (0x4).
    pub const SETTINGS: FrameType = FrameType(0x4);
    /// PUSH_PROMISE (0x5).
    pub const PUSH_PROMISE: FrameType = FrameType(0x5);
    /// PING (0x6).
    pub const PING: FrameType = FrameType(0x6);
    /// GOAWAY (0x7).
    pub const GOAWAY: FrameType = FrameType(0x7);
    /// WINDOW_UPDATE (0x8).
    pub const WINDOW_UPDATE: FrameType = FrameType(0x8);
    /// CONTINUATION (0x9).
    pub const CONTINUATION: FrameType = FrameType(0x9);

    /// The RFC name, or `UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0x0 => "DATA",
            0x1 => "HEADERS",
            0x2 => "PRIORITY",
            0x3 => "RST_STREAM",
            0x4 => "SETTINGS",
            0x5 => "PUSH_PROMISE",
            0x6 => "PING",
            0x7 => "GOAWAY",
            0x8 => "WINDOW_UPDATE",
            0x9 => "CONTINUATION",
            _ => "UNKNOWN",
        }
    }

    /// True for the ten types RFC 9113 defines.
    pub const fn is_known(self) -> bool {
        self.0 <= 0x9
    }

    /// The flags RFC 9113 defines for this type (others must be ignored by a receiver, but are never sent).
    pub const fn defined_flags(self) -> u8 {
        match self.0 {
            0x0 => flags::END_STREAM | flags::PADDED,
            0x1 => flags::END_STREAM | flags::END_HEADERS | flags::PADDED | flags::PRIORITY,
            0x4 | 0x6 => flags::ACK,
            0x5 => flags::END_HEADERS | flags::PADDED,
            0x9 => flags::END_HEADERS,
            _ => 0,
        }
    }
}

/// Frame flags (RFC 9113 §6).
pub mod flags {
    /// END_STREAM (DATA, HEADERS).
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, PUSH_PROMISE, CONTINUATION).
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS, PUSH_PROMISE).
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS).
    pub const PRIORITY: u8 = 0x20;
}

/// An RST_STREAM / GOAWAY error code (RFC 9113 §7), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// NO_ERROR.
    pub const NO_ERROR: ErrorCode = ErrorCode(0x0);
    /// CANCEL.
    pub const CANCEL: ErrorCode = ErrorCode(0x8);

    /// The RFC name, or `UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0x0 => "NO_ERROR",
            0x1 => "PROTOCOL_ERROR",
            0x2 => "INTERNAL_ERROR",
            0x3 => "FLOW_CONTROL_ERROR",
            0x4 => "SETTINGS_TIMEOUT",
            0x5 => "STREAM_CLOSED",
            0x6 => "FRAME_SIZE_ERROR",
            0x7 => "REFUSED_STREAM",
            0x8 => "CANCEL",
            0x9 => "COMPRESSION_ERROR",
            0xa => "CONNECT_ERROR",
            0xb => "ENHANCE_YOUR_CALM",
            0xc => "INADEQUATE_SECURITY",
            0xd => "HTTP_1_1_REQUIRED",
            _ => "UNKNOWN",
        }
    }
}

/// A SETTINGS parameter identifier (RFC 9113 §6.5.2), open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SettingId(pub u16);

impl SettingId {
    /// SETTINGS_HEADER_TABLE_SIZE.
    pub const HEADER_TABLE_SIZE: SettingId = SettingId(0x1);
    /// SETTINGS_MAX_FRAME_SIZE.
    pub const MAX_FRAME_SIZE: SettingId = SettingId(0x5);

    /// The RFC name, or `UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        match self.0 {
            0x1 => "SETTINGS_HEADER_TABLE_SIZE",
            0x2 => "SETTINGS_ENABLE_PUSH",
            0x3 => "SETTINGS_MAX_CONCURRENT_STREAMS",
            0x4 => "SETTINGS_INITIAL_WINDOW_SIZE",
            0x5 => "SETTINGS_MAX_FRAME_SIZE",
            0x6 => "SETTINGS_MAX_HEADER_LIST_SIZE",
            0x8 => "SETTINGS_ENABLE_CONNECT_PROTOCOL",
            0x9 => "SETTINGS_NO_RFC7540_PRIORITIES",
            _ => "UNKNOWN",
        }
    }
}

/// A parsed 9-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub length: u32,
    /// Frame type.
    pub kind: FrameType,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits).
    pub stream_id: u32,
    /// The reserved bit of the stream identifier field.
    pub reserved: bool,
}

impl FrameHeader {
    /// Parse the header at the start of `b`; `None` when fewer than 9 bytes are available.
    pub fn parse(b: &[u8]) -> Option<FrameHeader> {
        let h = b.get(..HEADER_LEN)?;
        let length = u32::from(h[0]) << 16 | u32::from(h[1]) << 8 | u32::from(h[2]);
        let sid = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        Some(FrameHeader {
            length,
            kind: FrameType(h[3]),
            flags: h[4],
            stream_id: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        })
    }

    /// Whole frame length (header + payload).
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.length as usize
    }

    /// True when `flag` is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The stream-id and length rules of RFC 9113 §6 for the defined types (unknown types always pass).
    pub fn follows_rules(&self) -> bool {
        let stream = self.stream_id != 0;
        match self.kind {
            FrameType::DATA | FrameType::HEADERS | FrameType::CONTINUATION => stream,
            FrameType::PUSH_PROMISE => stream && self.length >= 4,
            FrameType::PRIORITY => stream && self.length == 5,
            FrameType::RST_STREAM => stream && self.length == 4,
            FrameType::SETTINGS => {
                !stream
                    && self.length.is_multiple_of(6)
                    && (!self.has(flags::ACK) || self.length == 0)
            }
            FrameType::PING => !stream && self.length == 8,
            FrameType::GOAWAY => !stream && self.length >= 8,
            FrameType::WINDOW_UPDATE => self.length == 4,
            _ => true,
        }
    }

    /// Strict plausibility for detection and resynchronisation: a defined type with only defined flags, the
    /// reserved bit clear, the §6 rules, and a length within `max_frame`.
    pub fn plausible(&self, max_frame: u32) -> bool {
        self.kind.is_known()
            && self.flags & !self.kind.defined_flags() == 0
            && !self.reserved
            && self.length <= max_frame
            && self.follows_rules()
    }
}

/// What a frame-chain check concluded at some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// Plausible frames follow each other from this offset: `frames` complete ones.
    Confirmed {
        /// Complete frames checked.
        frames: usize,
    },
    /// Plausible so far, but more bytes are needed to confirm.
    NeedMore,
    /// Not a frame boundary.
    Bad,
}

/// Check whether `data` starts at a frame boundary: consecutive plausible frame headers, each at the end of
/// the previous frame. Confirmed with two complete frames, or with one complete frame ending exactly at the end
/// of `data` (a segment carrying one frame).
pub fn chain_at(data: &[u8], max_frame: u32) -> Chain {
    let mut pos = 0usize;
    let mut frames = 0usize;
    while frames < 2 {
        let Some(h) = data.get(pos..).and_then(FrameHeader::parse) else {
            // A partial header (or nothing) left.
            if frames >= 1 && pos == data.len() {
                return Chain::Confirmed { frames };
            }
            return Chain::NeedMore;
        };
        if !h.plausible(max_frame) {
            return Chain::Bad;
        }
        let end = pos.saturating_add(h.frame_len());
        if end > data.len() {
            return Chain::NeedMore;
        }
        pos = end;
        frames += 1;
    }
    Chain::Confirmed { frames }
}

/// Where the next frame boundary is in `data` (after a gap or on a mid-stream join).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// A confirmed boundary at this offset.
    At(usize),
    /// No confirmed boundary yet: bytes before this offset can be dropped; wait for more.
    Wait(usize),
}

/// Find the first confirmed frame boundary in `data`.
pub fn find_sync(data: &[u8], max_frame: u32) -> Sync {
    let mut first_pending = None;
    for i in 0..data.len() {
        match chain_at(&data[i..], max_frame) {
            Chain::Confirmed { .. } => return Sync::At(i),
            Chain::NeedMore => {
                if first_pending.is_none() {
                    first_pending = Some(i);
                }
            }
            Chain::Bad => {}
        }
    }
    Sync::Wait(first_pending.unwrap_or(data.len().saturating_sub(HEADER_LEN - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_settings_header() {
        // A server SETTINGS frame from grpc.pcap (frame 6): length 24, type 4, flags 0, stream 0.
        let h = FrameHeader::parse(&[0, 0, 24, 4, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(h.length, 24);
        assert_eq!(h.kind, FrameType::SETTINGS);
        assert!(h.plausible(DEFAULT_MAX_FRAME_SIZE));
        assert!(FrameHeader::parse(&[0, 0, 24, 4]).is_none());
    }

    #[test]
    fn rejects_implausible_headers() {
        // PING on a stream, SETTINGS ACK with payload, unknown flag on DATA, reserved bit.
        for b in [
            [0, 0, 8, 6, 0, 0, 0, 0, 1],
            [0, 0, 6, 4, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 2, 0, 0, 0, 1],
            [0, 0, 1, 0, 0, 0x80, 0, 0, 1],
        ] {
            assert!(!FrameHeader::parse(&b).unwrap().plausible(16_384), "{b:?}");
        }
    }

    #[test]
    fn chain_and_sync() {
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(chain_at(&ping, 16_384), Chain::Confirmed { frames: 1 });
        assert_eq!(chain_at(&ping[..12], 16_384), Chain::NeedMore);
        let mut two = ping.to_vec();
        two.extend_from_slice(&ping);
        two.extend_from_slice(&[0, 0]);
        assert_eq!(chain_at(&two, 16_384), Chain::Confirmed { frames: 2 });
        let mut junk = b"xyz".to_vec();
        junk.extend_from_slice(&two);
        assert_eq!(find_sync(&junk, 16_384), Sync::At(3));
        assert_eq!(find_sync(b"hello world, no frames", 16_384), Sync::Wait(14));
    }
}
