//! HPACK (RFC 7541) for a passive observer: one decoder per direction, which may not know the dynamic table.
//!
//! The dynamic table is [`httlib_hpack::table::Table`] (static + dynamic entries, FIFO eviction, dynamic table
//! size updates) and Huffman strings are decoded by [`httlib_huffman`] (a table-driven decoder reading 4 bits at
//! a time). The field representations (RFC 7541 §6) are walked here, with every length checked against the
//! block, so that a block can be decoded field by field:
//! - while the table is known (the connection was seen from its preface), every field is decoded and the table
//!   follows insertions and size updates;
//! - when it is unknown (a capture that joined mid-connection, a gap, an index that does not exist, a malformed
//!   block, an oversized table), it stays unknown for the rest of the connection: fields that are fully on the
//!   wire (literal names and values) or in the static table are still decoded, and every field that references
//!   the dynamic table is reported as unknown. A field is never guessed.
//!
//! Memory is bounded: the dynamic table may not grow past [`MAX_TABLE_SIZE`] (a size update beyond it, or
//! beyond what the peer's SETTINGS allowed, makes the table unknown instead).

use httlib_hpack::table::Table;
use httlib_huffman::DecoderSpeed;

/// Largest dynamic table followed, in HPACK size units (an update beyond this makes the table unknown).
pub const MAX_TABLE_SIZE: u32 = 65_536;
/// The HTTP/2 default SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: u32 = 4_096;

/// How completely a block was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockOutcome {
    /// Header fields delivered to the sink.
    pub decoded: usize,
    /// Header fields that could not be decoded (dynamic table unknown).
    pub unknown: usize,
    /// True when the block could not be walked to its end (malformed bytes).
    pub truncated: bool,
}

/// The HPACK decoding state of one direction of a connection.
pub struct HpackState {
    /// `Some` while the dynamic table is known.
    table: Option<Table<'static>>,
    /// The largest table size the peer allowed (SETTINGS_HEADER_TABLE_SIZE), capped.
    allowed: u32,
    /// Scratch buffers for the current field's name and value.
    name: Vec<u8>,
    value: Vec<u8>,
}

impl std::fmt::Debug for HpackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpackState")
            .field("known", &self.table.is_some())
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// Why a field could not be decoded.
enum Miss {
    /// The field needs the dynamic table, which is unknown.
    Unknown,
    /// The bytes are not HPACK.
    Malformed,
}

impl HpackState {
    /// A state whose dynamic table is known (empty, at the start of a connection, 4096 bytes).
    pub fn known() -> HpackState {
        Self::known_with_size(DEFAULT_TABLE_SIZE)
    }

    /// A known, empty table of `size` bytes (a connection whose SETTINGS_HEADER_TABLE_SIZE is `size`).
    pub fn known_with_size(size: u32) -> HpackState {
        let size = size.min(MAX_TABLE_SIZE);
        HpackState {
            table: Some(Table::with_dynamic_size(size)),
            allowed: size.max(DEFAULT_TABLE_SIZE),
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// A state whose dynamic table is unknown.
    pub fn unknown() -> HpackState {
        HpackState {
            table: None,
            allowed: DEFAULT_TABLE_SIZE,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// True while the dynamic table is known.
    pub fn is_known(&self) -> bool {
        self.table.is_some()
    }

    /// Forget the dynamic table (gap, error).
    pub fn lose(&mut self) {
        self.table = None;
    }

    /// The decoding peer advertised SETTINGS_HEADER_TABLE_SIZE = `size`: size updates up to it are valid.
    /// A passive observer cannot tell which SETTINGS were acknowledged, so the largest value seen is allowed.
    pub fn allow_table_size(&mut self, size: u32) {
        self.allowed = self.allowed.max(size.min(MAX_TABLE_SIZE));
    }

    /// Decode one complete header block, calling `sink(name, value)` for every field that is known for sure.
    pub fn decode(&mut self, block: &[u8], sink: &mut dyn FnMut(&[u8], &[u8])) -> BlockOutcome {
        let mut out = BlockOutcome::default();
        let mut i = 0usize;
        while i < block.len() {
            let rest = &block[i..];
            let b = rest[0];
            let step = if b & 0x80 != 0 {
                self.indexed(rest)
            } else if b & 0x40 != 0 {
                self.literal(rest, 6, true)
            } else if b & 0x20 != 0 {
                self.size_update(rest)
            } else {
                self.literal(rest, 4, false)
            };
            match step {
                // A size update (no field).
                Ok((None, n)) => i += n,
                Ok((Some(()), n)) => {
                    i += n;
                    out.decoded += 1;
                    sink(&self.name, &self.value);
                }
                Err((Miss::Unknown, n)) => {
                    i += n;
                    out.unknown += 1;
                }
                Err((Miss::Malformed, _)) => {
                    self.lose();
                    out.truncated = true;
                    break;
                }
            }
        }
        out
    }

    /// Indexed field (§6.1): the entry goes to `self.name` / `self.value`.
    fn indexed(&mut self, b: &[u8]) -> Result<(Option<()>, usize), (Miss, usize)> {
        let (idx, n) = decode_int(b, 7).ok_or((Miss::Malformed, 0))?;
        if idx == 0 {
            return Err((Miss::Malformed, n));
        }
        let entry = match (&self.table, static_entry(idx)) {
            (_, Some(e)) => Some(e),
            (Some(t), None) => u32::try_from(idx).ok().and_then(|i| t.get(i)),
            (None, None) => None,
        };
        let Some((name, value)) = entry else {
            // An index beyond the known table: the table was not what we thought.
            self.lose();
            return Err((Miss::Unknown, n));
        };
        self.name.clear();
        self.name.extend_from_slice(name);
        self.value.clear();
        self.value.extend_from_slice(value);
        Ok((Some(()), n))
    }

    /// Literal field (§6.2), with incremental indexing when `index` is set.
    fn literal(
        &mut self,
        b: &[u8],
        prefix: u8,
        index: bool,
    ) -> Result<(Option<()>, usize), (Miss, usize)> {
        let (name_index, mut used) = decode_int(b, prefix).ok_or((Miss::Malformed, 0))?;
        let mut name_known = true;
        self.name.clear();
        if name_index == 0 {
            let (s, n) =
                decode_string(b.get(used..).unwrap_or(&[])).ok_or((Miss::Malformed, used))?;
            used += n;
            s.decode_into(&mut self.name)
                .ok_or((Miss::Malformed, used))?;
        } else {
            let entry = match (&self.table, static_entry(name_index)) {
                (_, Some(e)) => Some(e.0),
                (Some(t), None) => u32::try_from(name_index)
                    .ok()
                    .and_then(|i| t.get(i))
                    .map(|e| e.0),
                (None, None) => None,
            };
            match entry {
                Some(n) => self.name.extend_from_slice(n),
                None => name_known = false,
            }
        }
        let (s, n) = decode_string(b.get(used..).unwrap_or(&[])).ok_or((Miss::Malformed, used))?;
        used += n;
        self.value.clear();
        s.decode_into(&mut self.value)
            .ok_or((Miss::Malformed, used))?;
        if !name_known {
            self.lose();
            return Err((Miss::Unknown, used));
        }
        if index {
            if let Some(t) = self.table.as_mut() {
                t.insert(self.name.clone(), self.value.clone());
            }
        }
        Ok((Some(()), used))
    }

    /// Dynamic table size update (§6.3).
    fn size_update(&mut self, b: &[u8]) -> Result<(Option<()>, usize), (Miss, usize)> {
        let (size, n) = decode_int(b, 5).ok_or((Miss::Malformed, 0))?;
        match u32::try_from(size) {
            Ok(size) if size <= self.allowed => {
                if let Some(t) = self.table.as_mut() {
                    t.update_max_dynamic_size(size);
                }
            }
            _ => self.lose(),
        }
        Ok((None, n))
    }
}

/// A string literal on the wire.
struct RawString<'a> {
    huffman: bool,
    bytes: &'a [u8],
}

impl RawString<'_> {
    /// Append the decoded string to `dst`; `None` for an invalid Huffman sequence.
    fn decode_into(&self, dst: &mut Vec<u8>) -> Option<()> {
        if self.huffman {
            httlib_huffman::decode(self.bytes, dst, DecoderSpeed::FourBits).ok()
        } else {
            dst.extend_from_slice(self.bytes);
            Some(())
        }
    }
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1): (value, bytes used). At most 5 bytes, so the
/// value stays below 2^28 + 2^prefix.
fn decode_int(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = ((1u16 << prefix) - 1) as u8;
    let first = *b.first()? & mask;
    if first < mask {
        return Some((first as usize, 1));
    }
    let mut value = mask as usize;
    for (k, &byte) in b.iter().enumerate().skip(1).take(4) {
        value += ((byte & 0x7f) as usize) << (7 * (k - 1));
        if byte & 0x80 == 0 {
            return Some((value, k + 1));
        }
    }
    None
}

fn decode_string(b: &[u8]) -> Option<(RawString<'_>, usize)> {
    let huffman = *b.first()? & 0x80 != 0;
    let (len, n) = decode_int(b, 7)?;
    let bytes = b.get(n..n.checked_add(len)?)?;
    Some((RawString { huffman, bytes }, n + len))
}

/// The static table entry at 1-based `index` (RFC 7541 Appendix A), `None` outside 1..=61.
pub fn static_entry(index: usize) -> Option<(&'static [u8], &'static [u8])> {
    index
        .checked_sub(1)
        .and_then(|i| STATIC_TABLE.get(i))
        .copied()
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(state: &mut HpackState, block: &[u8]) -> (Vec<(String, String)>, BlockOutcome) {
        let mut v = Vec::new();
        let out = state.decode(block, &mut |n, val| {
            v.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(val).into_owned(),
            ))
        });
        (v, out)
    }

    // RFC 7541 Appendix C.4: requests with Huffman coding, sharing one dynamic table.
    const C4_1: &[u8] = &[
        0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90,
        0xf4, 0xff,
    ];
    const C4_2: &[u8] = &[
        0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
    ];

    #[test]
    fn known_table_follows_rfc_c4() {
        let mut s = HpackState::known();
        let (f, o) = collect(&mut s, C4_1);
        assert_eq!(o.unknown, 0);
        assert_eq!(f[3], (":authority".into(), "www.example.com".into()));
        let (f, o) = collect(&mut s, C4_2);
        assert_eq!(o.unknown, 0);
        // Index 62 (0xbe) is the dynamic entry added by the first request.
        assert_eq!(f[3], (":authority".into(), "www.example.com".into()));
        assert_eq!(f[4], ("cache-control".into(), "no-cache".into()));
    }

    #[test]
    fn unknown_table_never_guesses() {
        // Joining before the second request: index 62 is unknown, the rest is decoded.
        let mut s = HpackState::unknown();
        let (f, o) = collect(&mut s, C4_2);
        assert_eq!(o.unknown, 1);
        assert_eq!(o.decoded, 4);
        assert!(f.iter().all(|(n, _)| n != ":authority"));
        assert!(f.contains(&("cache-control".into(), "no-cache".into())));
    }

    #[test]
    fn decoder_error_makes_the_table_unknown() {
        // Index 70 does not exist in a fresh table: that field is unknown, the next one (static 0x84) is decoded.
        let mut s = HpackState::known();
        let (f, o) = collect(&mut s, &[0x82, 0xc6, 0x84]);
        assert!(!s.is_known());
        assert_eq!(o.unknown, 1);
        assert_eq!(
            f,
            vec![
                (":method".into(), "GET".into()),
                (":path".into(), "/".into())
            ]
        );
    }

    #[test]
    fn truncated_blocks_do_not_panic() {
        let mut s = HpackState::unknown();
        for cut in 0..C4_1.len() {
            let _ = collect(&mut s, &C4_1[..cut]);
        }
        let _ = collect(&mut s, &[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let _ = collect(&mut s, &[0x3f, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    }

    #[test]
    fn static_table_matches_the_crate() {
        let t = Table::default();
        for i in 1..=61u32 {
            assert_eq!(static_entry(i as usize), t.get(i), "index {i}");
        }
        assert_eq!(static_entry(59).unwrap().0, b"vary");
        assert_eq!(static_entry(0), None);
        assert_eq!(static_entry(62), None);
    }

    // RFC 7541 Appendix C.6: responses with Huffman coding, a 256-byte table, and evictions.
    const C6_1: &[u8] = &[
        0x48, 0x82, 0x64, 0x02, 0x58, 0x85, 0xae, 0xc3, 0x77, 0x1a, 0x4b, 0x61, 0x96, 0xd0, 0x7a,
        0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05, 0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0,
        0x82, 0xa6, 0x2d, 0x1b, 0xff, 0x6e, 0x91, 0x9d, 0x29, 0xad, 0x17, 0x18, 0x63, 0xc7, 0x8f,
        0x0b, 0x97, 0xc8, 0xe9, 0xae, 0x82, 0xae, 0x43, 0xd3,
    ];
    const C6_2: &[u8] = &[0x48, 0x83, 0x64, 0x0e, 0xff, 0xc1, 0xc0, 0xbf];
    const C6_3: &[u8] = &[
        0x88, 0xc1, 0x61, 0x96, 0xd0, 0x7a, 0xbe, 0x94, 0x10, 0x54, 0xd4, 0x44, 0xa8, 0x20, 0x05,
        0x95, 0x04, 0x0b, 0x81, 0x66, 0xe0, 0x84, 0xa6, 0x2d, 0x1b, 0xff, 0xc0, 0x5a, 0x83, 0x9b,
        0xd9, 0xab, 0x77, 0xad, 0x94, 0xe7, 0x82, 0x1d, 0xd7, 0xf2, 0xe6, 0xc7, 0xb3, 0x35, 0xdf,
        0xdf, 0xcd, 0x5b, 0x39, 0x60, 0xd5, 0xaf, 0x27, 0x08, 0x7f, 0x36, 0x72, 0xc1, 0xab, 0x27,
        0x0f, 0xb5, 0x29, 0x1f, 0x95, 0x87, 0x31, 0x60, 0x65, 0xc0, 0x03, 0xed, 0x4e, 0xe5, 0xb1,
        0x06, 0x3d, 0x50, 0x07,
    ];

    #[test]
    fn known_table_follows_rfc_c6_evictions() {
        let mut s = HpackState::known_with_size(256);
        let (f, _) = collect(&mut s, C6_1);
        assert_eq!(f[0], (":status".into(), "302".into()));
        assert_eq!(
            f[2],
            ("date".into(), "Mon, 21 Oct 2013 20:13:21 GMT".into())
        );
        let (f, o) = collect(&mut s, C6_2);
        assert_eq!(o.unknown, 0);
        assert_eq!(f[0], (":status".into(), "307".into()));
        assert_eq!(f[3], ("location".into(), "https://www.example.com".into()));
        let (f, o) = collect(&mut s, C6_3);
        assert_eq!(o.unknown, 0);
        assert_eq!(f.len(), 6);
        assert_eq!(
            f[2],
            ("date".into(), "Mon, 21 Oct 2013 20:13:22 GMT".into())
        );
        assert_eq!(
            f[5],
            (
                "set-cookie".into(),
                "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1".into()
            )
        );
        assert!(s.is_known());
    }

    #[test]
    fn oversized_size_update_makes_the_table_unknown() {
        let mut s = HpackState::known();
        // Size update to 2^20 (0x3f then continuation bytes), beyond what SETTINGS allowed.
        let (_, o) = collect(&mut s, &[0x3f, 0xe1, 0xff, 0x3f, 0x82]);
        assert!(!s.is_known());
        assert_eq!(o.decoded, 1);
    }

    #[test]
    fn integers() {
        assert_eq!(decode_int(&[0x1f, 0x9a, 0x0a], 5), Some((1337, 3)));
        assert_eq!(decode_int(&[0x0a], 5), Some((10, 1)));
        assert_eq!(decode_int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x00], 8), None);
    }
}
