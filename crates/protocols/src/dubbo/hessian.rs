//! A bounded Hessian 2.0 reader: just enough to walk a Dubbo invocation body.
//!
//! Written here rather than taken from a crate: the Rust Hessian crates (`hessian_rs`, `serde_hessian`)
//! decode whole values into owned trees (allocating for every string, list and map), have no depth or size
//! limits, and panic-freedom on hostile input is not part of their contract. A capture agent needs the
//! opposite: read a few strings in place, skip everything else without allocating, stop at a depth limit,
//! and never panic. The subset follows the Hessian 2.0 Serialization Protocol grammar (hessian.caucho.com,
//! "Hessian 2.0 Serialization Protocol", §3-§4): null, boolean, int / long / double / date in every compact
//! form, strings (compact, medium, chunked), binary (compact, medium, chunked), typed and untyped lists
//! (variable and fixed length, compact fixed forms), typed and untyped maps, class definitions and objects
//! (`C`, `O`, compact `0x60..0x6f`), and references (`Q`).
//!
//! Validity contract: no function panics on any input; a value cut short by the end of the buffer is
//! [`HessianError::Eof`]; nesting beyond the caller's depth limit is [`HessianError::TooDeep`]; more class
//! definitions than [`MAX_CLASS_DEFS`] is [`HessianError::TooMany`].

/// Most class definitions remembered per body (each costs one `usize`).
pub const MAX_CLASS_DEFS: usize = 256;

/// Why a value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HessianError {
    /// The buffer ended inside the value.
    Eof,
    /// A byte that starts no Hessian 2 value here, or an inconsistent length.
    Invalid,
    /// Nesting deeper than the limit.
    TooDeep,
    /// More class definitions than [`MAX_CLASS_DEFS`].
    TooMany,
}

type R<T> = Result<T, HessianError>;

/// A cursor over a Hessian 2 byte stream with the class definitions seen so far.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    max_depth: usize,
    /// Field count of each class definition, in definition order.
    classes: Vec<usize>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`, nesting at most `max_depth` containers.
    pub fn new(data: &'a [u8], max_depth: usize) -> Reader<'a> {
        Reader {
            data,
            pos: 0,
            max_depth,
            classes: Vec::new(),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn u8(&mut self) -> R<u8> {
        let b = *self.data.get(self.pos).ok_or(HessianError::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(HessianError::Invalid)?;
        let s = self.data.get(self.pos..end).ok_or(HessianError::Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> R<u64> {
        let mut v = 0u64;
        for &b in self.take(n)? {
            v = (v << 8) | b as u64;
        }
        Ok(v)
    }

    /// `n` UTF-16 code units of Hessian "UTF-8" (Java writes supplementary characters either as one 4-byte
    /// sequence, counting 2 units, or as two 3-byte surrogates): returns the raw bytes.
    fn utf8_units(&mut self, n: usize) -> R<&'a [u8]> {
        let start = self.pos;
        let mut units = 0usize;
        while units < n {
            let b = self.u8()?;
            let (extra, u) = match b {
                0x00..=0x7f => (0, 1),
                0xc0..=0xdf => (1, 1),
                0xe0..=0xef => (2, 1),
                0xf0..=0xf7 => (3, 2),
                _ => return Err(HessianError::Invalid),
            };
            self.take(extra)?;
            units += u;
        }
        self.data.get(start..self.pos).ok_or(HessianError::Invalid)
    }

    /// Read a string value (or `N`, giving `None`). A chunked string is returned as its first chunk only
    /// when `keep` bytes of it are enough; otherwise chunks are concatenated up to `keep` bytes.
    ///
    /// # Errors
    /// `Invalid` if the next value is not a string or null.
    pub fn string(&mut self, keep: usize) -> R<Option<Str<'a>>> {
        let b = self.peek().ok_or(HessianError::Eof)?;
        if b == b'N' {
            self.pos += 1;
            return Ok(None);
        }
        let mut owned: Option<Vec<u8>> = None;
        loop {
            let b = self.u8()?;
            let (len, last) = match b {
                0x00..=0x1f => (b as usize, true),
                0x30..=0x33 => ((((b - 0x30) as usize) << 8) | self.u8()? as usize, true),
                b'S' => (self.be(2)? as usize, true),
                0x52 => (self.be(2)? as usize, false),
                _ => return Err(HessianError::Invalid),
            };
            let chunk = self.utf8_units(len)?;
            if last && owned.is_none() {
                return Ok(Some(Str(std::borrow::Cow::Borrowed(chunk))));
            }
            let buf = owned.get_or_insert_with(Vec::new);
            let room = keep.saturating_sub(buf.len());
            buf.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            if last {
                return Ok(owned.map(|v| Str(std::borrow::Cow::Owned(v))));
            }
        }
    }

    /// Read an int or long in any encoding.
    ///
    /// # Errors
    /// `Invalid` if the next value is not an integer.
    pub fn int(&mut self) -> R<i64> {
        let b = self.u8()?;
        Ok(match b {
            0x80..=0xbf => b as i64 - 0x90,
            0xc0..=0xcf => ((b as i64 - 0xc8) << 8) + self.u8()? as i64,
            0xd0..=0xd7 => ((b as i64 - 0xd4) << 16) + self.be(2)? as i64,
            b'I' | 0x59 => self.be(4)? as u32 as i32 as i64,
            0xd8..=0xef => b as i64 - 0xe0,
            0xf0..=0xff => ((b as i64 - 0xf8) << 8) + self.u8()? as i64,
            0x38..=0x3f => ((b as i64 - 0x3c) << 16) + self.be(2)? as i64,
            b'L' => self.be(8)? as i64,
            _ => return Err(HessianError::Invalid),
        })
    }

    /// A length that must be a non-negative int (list lengths, class references).
    fn count(&mut self) -> R<usize> {
        let n = self.int()?;
        usize::try_from(n).map_err(|_| HessianError::Invalid)
    }

    /// Skip a `type` (a type-name string or a type reference int).
    fn skip_type(&mut self) -> R<()> {
        match self.peek().ok_or(HessianError::Eof)? {
            0x00..=0x1f | 0x30..=0x33 | b'S' | 0x52 => {
                self.string(0)?;
            }
            _ => {
                self.int()?;
            }
        }
        Ok(())
    }

    /// Read a class definition (after its `C`): returns the class name.
    fn class_def(&mut self, keep: usize) -> R<Option<Str<'a>>> {
        let name = self.string(keep)?;
        let fields = self.count()?;
        if fields > self.data.len() {
            return Err(HessianError::Invalid);
        }
        for _ in 0..fields {
            self.string(0)?;
        }
        if self.classes.len() >= MAX_CLASS_DEFS {
            return Err(HessianError::TooMany);
        }
        self.classes.push(fields);
        Ok(name)
    }

    /// Skip one value (with any class definitions before it).
    ///
    /// # Errors
    /// See the module's validity contract.
    pub fn skip(&mut self) -> R<()> {
        self.skip_at(0)
    }

    /// If the next value is an object, return its class name (when its definition is in this body), then
    /// skip the value.
    pub fn skip_object_class(&mut self, keep: usize) -> R<Option<Str<'a>>> {
        let mut name = None;
        while self.peek() == Some(b'C') {
            self.pos += 1;
            name = self.class_def(keep)?;
        }
        self.skip_at(0)?;
        Ok(name)
    }

    fn skip_n(&mut self, n: usize, depth: usize) -> R<()> {
        for _ in 0..n {
            self.skip_at(depth)?;
        }
        Ok(())
    }

    fn skip_until_z(&mut self, depth: usize) -> R<()> {
        loop {
            if self.peek().ok_or(HessianError::Eof)? == b'Z' {
                self.pos += 1;
                return Ok(());
            }
            self.skip_at(depth)?;
        }
    }

    fn skip_at(&mut self, depth: usize) -> R<()> {
        if depth > self.max_depth {
            return Err(HessianError::TooDeep);
        }
        let d = depth + 1;
        let b = self.peek().ok_or(HessianError::Eof)?;
        match b {
            b'N' | b'T' | b'F' | 0x5b | 0x5c => {
                self.pos += 1;
            }
            // Integers and longs.
            0x80..=0xff | b'I' | 0x59 | 0x38..=0x3f | b'L' => {
                self.int()?;
            }
            // Doubles and dates.
            b'D' | 0x4a => {
                self.take(9)?;
            }
            0x5d => {
                self.take(2)?;
            }
            0x5e => {
                self.take(3)?;
            }
            0x5f | 0x4b => {
                self.take(5)?;
            }
            // Strings.
            0x00..=0x1f | 0x30..=0x33 | b'S' | 0x52 => {
                self.string(0)?;
            }
            // Binary: compact 0x20..0x2f, medium 0x34..0x37, chunked 0x41 ... 'B'.
            0x20..=0x2f => {
                self.pos += 1;
                self.take((b - 0x20) as usize)?;
            }
            0x34..=0x37 => {
                self.pos += 1;
                let n = (((b - 0x34) as usize) << 8) | self.u8()? as usize;
                self.take(n)?;
            }
            0x41 | b'B' => loop {
                let c = self.u8()?;
                let n = self.be(2)? as usize;
                self.take(n)?;
                match c {
                    b'B' => break,
                    0x41 => {}
                    _ => return Err(HessianError::Invalid),
                }
                if self.peek() != Some(0x41) && self.peek() != Some(b'B') {
                    return Err(HessianError::Invalid);
                }
            },
            // Class definition, then the value it precedes.
            b'C' => {
                self.pos += 1;
                self.class_def(0)?;
                self.skip_at(depth)?;
            }
            // Objects.
            b'O' => {
                self.pos += 1;
                let r = self.count()?;
                let n = *self.classes.get(r).ok_or(HessianError::Invalid)?;
                self.skip_n(n, d)?;
            }
            0x60..=0x6f => {
                self.pos += 1;
                let n = *self
                    .classes
                    .get((b - 0x60) as usize)
                    .ok_or(HessianError::Invalid)?;
                self.skip_n(n, d)?;
            }
            // Lists.
            0x55 => {
                self.pos += 1;
                self.skip_type()?;
                self.skip_until_z(d)?;
            }
            b'V' => {
                self.pos += 1;
                self.skip_type()?;
                let n = self.count()?;
                self.skip_n(n, d)?;
            }
            0x57 => {
                self.pos += 1;
                self.skip_until_z(d)?;
            }
            0x58 => {
                self.pos += 1;
                let n = self.count()?;
                self.skip_n(n, d)?;
            }
            0x70..=0x77 => {
                self.pos += 1;
                self.skip_type()?;
                self.skip_n((b - 0x70) as usize, d)?;
            }
            0x78..=0x7f => {
                self.pos += 1;
                self.skip_n((b - 0x78) as usize, d)?;
            }
            // Maps.
            b'M' => {
                self.pos += 1;
                self.skip_type()?;
                self.skip_until_z(d)?;
            }
            b'H' => {
                self.pos += 1;
                self.skip_until_z(d)?;
            }
            // Reference.
            0x51 => {
                self.pos += 1;
                self.int()?;
            }
            _ => return Err(HessianError::Invalid),
        }
        Ok(())
    }

    /// Walk a map (`H ... Z` or `M type ... Z`), calling `f` for each pair whose key and value are both
    /// strings (other pairs are skipped). `None` (`N`) is accepted as an empty map.
    ///
    /// # Errors
    /// See the module's validity contract.
    pub fn string_map(&mut self, keep: usize, mut f: impl FnMut(&[u8], &[u8])) -> R<()> {
        match self.u8()? {
            b'N' => return Ok(()),
            b'H' => {}
            b'M' => self.skip_type()?,
            _ => return Err(HessianError::Invalid),
        }
        let mut pairs = 0usize;
        loop {
            if self.peek().ok_or(HessianError::Eof)? == b'Z' {
                self.pos += 1;
                return Ok(());
            }
            pairs += 1;
            if pairs > 4096 {
                return Err(HessianError::TooMany);
            }
            let k = if is_string_start(self.peek()) {
                self.string(keep)?
            } else {
                self.skip_at(1)?;
                None
            };
            let v = if is_string_start(self.peek()) {
                self.string(keep)?
            } else {
                self.skip_at(1)?;
                None
            };
            if let (Some(k), Some(v)) = (k, v) {
                f(k.bytes(), v.bytes());
            }
        }
    }
}

fn is_string_start(b: Option<u8>) -> bool {
    matches!(b, Some(0x00..=0x1f | 0x30..=0x33 | b'S' | 0x52))
}

/// A string read from a Hessian body: borrowed when it was one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub std::borrow::Cow<'a, [u8]>);

impl Str<'_> {
    /// The raw (UTF-8 / CESU-8) bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lossy UTF-8, truncated to `max` bytes.
    pub fn lossy(&self, max: usize) -> String {
        crate::util::lossy(&self.0, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Examples from the Hessian 2.0 Serialization Protocol specification (§4).
    #[test]
    fn ints_and_longs_spec_examples() {
        let cases: &[(&[u8], i64)] = &[
            (&[0x90], 0),
            (&[0x80], -16),
            (&[0xbf], 47),
            (&[0xc8, 0x00], 0),
            (&[0xc0, 0x00], -2048),
            (&[0xc7, 0x00], -256),
            (&[0xcf, 0xff], 2047),
            (&[0xd4, 0x00, 0x00], 0),
            (&[0xd0, 0x00, 0x00], -262144),
            (&[0xd7, 0xff, 0xff], 262143),
            (&[b'I', 0, 0, 0, 0], 0),
            (&[b'I', 0, 0, 1, 0x2c], 300),
            (&[0xe0], 0),
            (&[0xd8], -8),
            (&[0xef], 15),
            (&[0xf8, 0x00], 0),
            (&[0xf0, 0x00], -2048),
            (&[0xff, 0xff], 2047),
            (&[0x3c, 0x00, 0x00], 0),
            (&[0x38, 0x00, 0x00], -262144),
            (&[0x3f, 0xff, 0xff], 262143),
            (&[0x59, 0, 0, 0, 0], 0),
            (&[0x59, 0, 0, 1, 0x2c], 300),
            (&[b'L', 0, 0, 0, 0, 0, 0, 1, 0x2c], 300),
            // From dubbo.pcap: getUser(3047) and slowEcho's int argument.
            (&[0xd4, 0x0b, 0xe7], 3047),
            (&[0xc8, 0xf0], 240),
        ];
        for (b, v) in cases {
            assert_eq!(Reader::new(b, 8).int(), Ok(*v), "{b:x?}");
        }
    }

    #[test]
    fn strings_spec_examples() {
        let s = |b: &[u8]| {
            Reader::new(b, 8)
                .string(64)
                .map(|o| o.map(|s| s.bytes().to_vec()))
        };
        assert_eq!(s(&[0x00]), Ok(Some(vec![])));
        assert_eq!(
            s(&[0x05, b'h', b'e', b'l', b'l', b'o']),
            Ok(Some(b"hello".to_vec()))
        );
        // "\u00c3" (UTF-8 c3 83) is one unit.
        assert_eq!(s(&[0x01, 0xc3, 0x83]), Ok(Some(vec![0xc3, 0x83])));
        assert_eq!(
            s(&[b'S', 0x00, 0x05, b'h', b'e', b'l', b'l', b'o']),
            Ok(Some(b"hello".to_vec()))
        );
        // Chunked: R 0x0002 "he" then S 0x0003 "llo".
        assert_eq!(
            s(&[0x52, 0, 2, b'h', b'e', b'S', 0, 3, b'l', b'l', b'o']),
            Ok(Some(b"hello".to_vec()))
        );
        // Medium: 0x30 0x03 "abc".
        assert_eq!(
            s(&[0x30, 0x03, b'a', b'b', b'c']),
            Ok(Some(b"abc".to_vec()))
        );
        assert_eq!(s(b"N"), Ok(None));
        assert_eq!(s(&[0x05, b'h']), Err(HessianError::Eof));
        assert_eq!(s(&[0x90]), Err(HessianError::Invalid));
    }

    #[test]
    fn skips_compound_values() {
        // Spec §4.2.2 object example: C "example.Car" 2 fields "color" "model", then O 0x90 "red" "corvette",
        // then the compact form 0x60 "green" "civic".
        let mut b = vec![b'C', 0x0b];
        b.extend_from_slice(b"example.Car");
        b.push(0x92);
        b.push(0x05);
        b.extend_from_slice(b"color");
        b.push(0x05);
        b.extend_from_slice(b"model");
        b.extend_from_slice(&[b'O', 0x90, 0x03]);
        b.extend_from_slice(b"red");
        b.push(0x08);
        b.extend_from_slice(b"corvette");
        b.push(0x60);
        b.push(0x05);
        b.extend_from_slice(b"green");
        b.push(0x05);
        b.extend_from_slice(b"civic");
        // Typed fixed list of 2 ints: V "[int" 0x92 0x90 0x91; compact list x72 "[int" 0x90 0x91;
        // untyped variable list 0x57 0x90 'Z'; map H 0x91 "fee" 'Z'; a ref Q 0x90; binary 0x23 3 bytes;
        // a double D + 8 bytes, 0x5d byte-double; date 0x4a + 8; true, false, null.
        b.extend_from_slice(&[b'V', 0x04, b'[', b'i', b'n', b't', 0x92, 0x90, 0x91]);
        b.extend_from_slice(&[0x72, 0x04, b'[', b'i', b'n', b't', 0x90, 0x91]);
        b.extend_from_slice(&[0x57, 0x90, b'Z']);
        b.extend_from_slice(&[b'H', 0x91, 0x03, b'f', b'e', b'e', b'Z']);
        b.extend_from_slice(&[0x51, 0x90]);
        b.extend_from_slice(&[0x23, 1, 2, 3]);
        b.extend_from_slice(&[b'D', 0x40, 0x28, 0x80, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&[0x5d, 0x80]);
        b.extend_from_slice(&[0x4a, 0, 0, 0, 0xd0, 0x4b, 0x92, 0x84, 0xb8]);
        b.extend_from_slice(b"TFN");
        let mut r = Reader::new(&b, 8);
        let mut n = 0;
        while r.peek().is_some() {
            r.skip().unwrap();
            n += 1;
        }
        assert_eq!(n, 14);
        assert_eq!(r.position(), b.len());
    }

    #[test]
    fn depth_is_bounded() {
        let b = vec![0x57u8; 100];
        assert_eq!(Reader::new(&b, 16).skip(), Err(HessianError::TooDeep));
        let b = vec![0x57u8; 10];
        assert_eq!(Reader::new(&b, 16).skip(), Err(HessianError::Eof));
    }
}
