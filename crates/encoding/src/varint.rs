//! LEB128 varints and a bounds-checked reader.
//!
//! Written here rather than taken from a crate: it is a dozen lines, and the reader has to report our own
//! [`DecodeError`] with the offset of the damage, which a generic varint crate does not.

use crate::DecodeError;

/// Append `v` as an unsigned LEB128 varint.
#[inline]
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag-encode a signed value.
#[inline]
pub const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Undo [`zigzag`].
#[inline]
pub const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Append length-prefixed bytes.
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Bytes [`put_u64`] writes for `v`.
#[inline]
pub const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Append a length-prefixed column whose content is the varint `head` followed by `tail` (without building the
/// concatenation first).
#[inline]
pub fn put_column(out: &mut Vec<u8>, head: u64, tail: &[u8]) {
    put_u64(out, (varint_len(head) + tail.len()) as u64);
    put_u64(out, head);
    out.extend_from_slice(tail);
}

/// A cursor over untrusted bytes: every read is bounds-checked and reports the offset of the failure.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the whole batch, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte is at `base` in the enclosing message.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// One unsigned varint (at most 10 bytes).
    #[inline]
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(DecodeError::Truncated {
                    offset: self.offset(),
                });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(DecodeError::BadVarint {
                    offset: self.offset() - 1,
                });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(DecodeError::BadVarint {
                    offset: self.offset() - 1,
                });
            }
        }
    }

    /// A varint that must fit `u32`.
    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.offset();
        u32::try_from(self.u64()?).map_err(|_| DecodeError::BadValue {
            offset: at,
            what: "u32 out of range",
        })
    }

    /// A count that must not exceed `max` (guards allocations against hostile counts).
    pub fn count(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.offset();
        let n = self.u64()?;
        if n > max as u64 {
            return Err(DecodeError::LimitExceeded { offset: at, what });
        }
        Ok(n as usize)
    }

    /// `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                offset: self.offset(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.count(self.remaining(), "byte string longer than the batch")?;
        self.take(n)
    }

    /// Length-prefixed UTF-8.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.offset();
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::BadValue {
            offset: at,
            what: "invalid UTF-8",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v: u64, s: i64) {
            let mut out = Vec::new();
            put_u64(&mut out, v);
            put_u64(&mut out, zigzag(s));
            let mut r = Reader::new(&out, 0);
            prop_assert_eq!(r.u64().unwrap(), v);
            prop_assert_eq!(unzigzag(r.u64().unwrap()), s);
            prop_assert!(r.is_empty());
            let mut one = Vec::new();
            put_u64(&mut one, v);
            prop_assert_eq!(one.len(), varint_len(v));
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let bad = [0xffu8; 11];
        assert!(matches!(
            Reader::new(&bad, 0).u64(),
            Err(DecodeError::BadVarint { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x80], 5).u64(),
            Err(DecodeError::Truncated { offset: 6 })
        ));
    }
}
