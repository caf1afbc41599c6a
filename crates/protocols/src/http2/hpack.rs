//! HPACK (RFC 7541) for a passive observer: one decoder per direction, which may not know the dynamic table.
//!
//! While the connection has been seen from its start, header blocks go through [`loona_hpack::Decoder`], which
//! keeps the dynamic table (insertions, evictions, dynamic table size updates) and decodes Huffman strings.
//! When the table is unknown (a capture that joined mid-connection, a gap, a decoder error, an oversized
//! block), it stays unknown for the rest of the connection and blocks are walked field by field here: fields
//! that are fully on the wire (literal names and values) or in the static table are decoded, and every field
//! that references the dynamic table is reported as unknown. A field is never guessed.
//!
//! Memory is bounded: the dynamic table may not grow past [`MAX_TABLE_SIZE`] (a size update beyond it makes
//! the table unknown instead).

use loona_hpack::huffman::HuffmanDecoder;

/// Largest dynamic table followed, in HPACK size units (an update beyond this makes the table unknown).
pub const MAX_TABLE_SIZE: usize = 65_536;
/// The HTTP/2 default SETTINGS_HEADER_TABLE_SIZE.
pub const DEFAULT_TABLE_SIZE: usize = 4_096;

/// How completely a block was decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockOutcome {
    /// Header fields delivered to the sink.
    pub decoded: usize,
    /// Header fields that could not be decoded (dynamic table unknown, or after a decoding error).
    pub unknown: usize,
    /// True when the block could not be walked to its end (malformed bytes).
    pub truncated: bool,
}

/// The HPACK decoding state of one direction of a connection.
pub struct HpackState {
    /// `Some` while the dynamic table is known.
    decoder: Option<loona_hpack::Decoder<'static>>,
    /// Built lazily for the unknown-table walk.
    huffman: Option<HuffmanDecoder>,
    /// The largest table size the peer allowed (SETTINGS_HEADER_TABLE_SIZE), capped.
    allowed: usize,
}

impl std::fmt::Debug for HpackState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpackState")
            .field("known", &self.decoder.is_some())
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl HpackState {
    /// A state whose dynamic table is known (empty, at the start of a connection).
    pub fn known() -> HpackState {
        let mut d = loona_hpack::Decoder::new();
        d.set_max_allowed_table_size(DEFAULT_TABLE_SIZE);
        HpackState {
            decoder: Some(d),
            huffman: None,
            allowed: DEFAULT_TABLE_SIZE,
        }
    }

    /// A state whose dynamic table is unknown.
    pub fn unknown() -> HpackState {
        HpackState {
            decoder: None,
            huffman: None,
            allowed: DEFAULT_TABLE_SIZE,
        }
    }

    /// True while the dynamic table is known.
    pub fn is_known(&self) -> bool {
        self.decoder.is_some()
    }

    /// Forget the dynamic table (gap, error).
    pub fn lose(&mut self) {
        self.decoder = None;
    }

    /// The decoding peer advertised SETTINGS_HEADER_TABLE_SIZE = `size`: size updates up to it are valid.
    /// A passive observer cannot tell which SETTINGS were acknowledged, so the largest value seen is allowed.
    pub fn allow_table_size(&mut self, size: u32) {
        let size = (size as usize).min(MAX_TABLE_SIZE);
        if size > self.allowed {
            self.allowed = size;
            if let Some(d) = self.decoder.as_mut() {
                d.set_max_allowed_table_size(size);
            }
        }
    }

    /// Decode one complete header block, calling `sink(name, value)` for every field that is known for sure.
    pub fn decode(&mut self, block: &[u8], sink: &mut dyn FnMut(&[u8], &[u8])) -> BlockOutcome {
        let mut delivered = 0usize;
        if let Some(d) = self.decoder.as_mut() {
            let r = d.decode_with_cb(block, |n, v| {
                delivered += 1;
                sink(&n, &v);
            });
            match r {
                Ok(()) => {
                    return BlockOutcome {
                        decoded: delivered,
                        unknown: 0,
                        truncated: false,
                    }
                }
                Err(_) => {
                    // The table can no longer be trusted; the failing field is unknown, later ones are walked.
                    self.decoder = None;
                    let mut out = self.walk(block, delivered + 1, sink);
                    out.decoded += delivered;
                    out.unknown += 1;
                    return out;
                }
            }
        }
        self.walk(block, 0, sink)
    }

    /// Walk a block without the dynamic table, skipping the first `skip` header fields.
    fn walk(
        &mut self,
        block: &[u8],
        skip: usize,
        sink: &mut dyn FnMut(&[u8], &[u8]),
    ) -> BlockOutcome {
        let huffman = self.huffman.get_or_insert_with(HuffmanDecoder::new);
        let mut out = BlockOutcome::default();
        let mut i = 0usize;
        let mut field = 0usize;
        while i < block.len() {
            let b = block[i];
            let rest = &block[i..];
            // (name, value, bytes used); name None = unknown.
            let step = if b & 0x80 != 0 {
                decode_int(rest, 7).map(|(idx, n)| (Field::Indexed(idx), n))
            } else if b & 0x40 != 0 {
                decode_literal(rest, 6)
            } else if b & 0x20 != 0 {
                // Dynamic table size update: no field.
                match decode_int(rest, 5) {
                    Some((_, n)) => {
                        i += n;
                        continue;
                    }
                    None => None,
                }
            } else {
                decode_literal(rest, 4)
            };
            let Some((f, n)) = step else {
                out.truncated = true;
                break;
            };
            i += n;
            let this = field;
            field += 1;
            if this < skip {
                continue;
            }
            match f {
                Field::Indexed(idx) => match static_entry(idx) {
                    Some((name, value)) => {
                        out.decoded += 1;
                        sink(name, value);
                    }
                    None => out.unknown += 1,
                },
                Field::Literal {
                    name_index,
                    name,
                    value,
                } => {
                    let name = match name {
                        Some(raw) => match raw.decode(huffman) {
                            Some(n) => Some(n),
                            None => {
                                out.truncated = true;
                                break;
                            }
                        },
                        None => static_entry(name_index).map(|(n, _)| Cow::Borrowed(n)),
                    };
                    let Some(value) = value.decode(huffman) else {
                        out.truncated = true;
                        break;
                    };
                    match name {
                        Some(name) => {
                            out.decoded += 1;
                            sink(&name, &value);
                        }
                        None => out.unknown += 1,
                    }
                }
            }
        }
        out
    }
}

use std::borrow::Cow;

/// A string literal on the wire.
struct RawString<'a> {
    huffman: bool,
    bytes: &'a [u8],
}

impl<'a> RawString<'a> {
    fn decode(&self, h: &mut HuffmanDecoder) -> Option<Cow<'a, [u8]>> {
        if self.huffman {
            h.decode(self.bytes).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(self.bytes))
        }
    }
}

enum Field<'a> {
    Indexed(usize),
    Literal {
        name_index: usize,
        name: Option<RawString<'a>>,
        value: RawString<'a>,
    },
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

fn decode_literal(b: &[u8], prefix: u8) -> Option<(Field<'_>, usize)> {
    let (name_index, mut used) = decode_int(b, prefix)?;
    let name = if name_index == 0 {
        let (s, n) = decode_string(b.get(used..)?)?;
        used += n;
        Some(s)
    } else {
        None
    };
    let (value, n) = decode_string(b.get(used..)?)?;
    used += n;
    Some((
        Field::Literal {
            name_index,
            name,
            value,
        },
        used,
    ))
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
        // Every static index, decoded by loona-hpack (known table) and by the walk (unknown table).
        let block: Vec<u8> = (1u8..=61).map(|i| 0x80 | i).collect();
        let (a, _) = collect(&mut HpackState::known(), &block);
        let (b, o) = collect(&mut HpackState::unknown(), &block);
        assert_eq!(o.decoded, 61);
        assert_eq!(a, b);
        assert_eq!(b[58].0, "vary");
    }

    #[test]
    fn integers() {
        assert_eq!(decode_int(&[0x1f, 0x9a, 0x0a], 5), Some((1337, 3)));
        assert_eq!(decode_int(&[0x0a], 5), Some((10, 1)));
        assert_eq!(decode_int(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x00], 8), None);
    }
}
