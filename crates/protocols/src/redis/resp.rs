//! RESP framing primitives: header lines and lengths, zero-copy, panic-free.
//!
//! Every function takes the whole buffer and an index and reads only through `get`, so any input is safe.

/// Largest bulk string length accepted (Redis' `proto-max-bulk-len` default, 512 MiB).
pub const MAX_BULK_LEN: i64 = 512 * 1024 * 1024;
/// Largest aggregate element count accepted (Redis refuses multibulk lengths above this for commands).
pub const MAX_AGGREGATE_LEN: i64 = 1 << 31;
/// Longest inline command / simple line accepted before the data is declared not RESP (Redis' 64 KiB).
pub const MAX_INLINE_LEN: usize = 64 * 1024;

/// The result of reading one header line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<T> {
    /// Read: the value and the index just past the line's CRLF.
    Done(T, usize),
    /// The line is not complete in the buffer.
    More,
    /// Not a valid line.
    Bad,
}

/// Parse a signed decimal integer terminated by CRLF, starting at `data[i]` (just after the type byte).
/// At most 18 digits. `?` (streamed length) is returned as `None`.
#[inline]
pub fn int_line(data: &[u8], mut i: usize) -> Step<Option<i64>> {
    let mut neg = false;
    match data.get(i) {
        None => return Step::More,
        Some(b'-') => {
            neg = true;
            i += 1;
        }
        Some(b'?') => {
            return match (data.get(i + 1), data.get(i + 2)) {
                (Some(b'\r'), Some(b'\n')) => Step::Done(None, i + 3),
                (None, _) | (Some(b'\r'), None) => Step::More,
                _ => Step::Bad,
            };
        }
        _ => {}
    }
    let start = i;
    let mut v: i64 = 0;
    loop {
        match data.get(i) {
            None => return Step::More,
            Some(&b) if b.is_ascii_digit() => {
                if i - start >= 18 {
                    return Step::Bad;
                }
                v = v * 10 + i64::from(b - b'0');
                i += 1;
            }
            Some(b'\r') => {
                if i == start {
                    return Step::Bad;
                }
                return match data.get(i + 1) {
                    None => Step::More,
                    Some(b'\n') => Step::Done(Some(if neg { -v } else { v }), i + 2),
                    Some(_) => Step::Bad,
                };
            }
            Some(_) => return Step::Bad,
        }
    }
}

/// Find the end of a CRLF-terminated line starting at `i`: returns the index of its `\r`.
/// `More` when no `\n` is in the buffer yet (and the line is shorter than `max`), `Bad` when longer.
#[inline]
pub fn line_end(data: &[u8], i: usize, max: usize) -> Step<usize> {
    let rest = data.get(i..).unwrap_or(&[]);
    match memchr::memchr(b'\n', rest) {
        Some(n) if n >= 1 && rest.get(n - 1) == Some(&b'\r') => Step::Done(i + n - 1, i + n + 1),
        Some(_) => Step::Bad,
        None if rest.len() > max => Step::Bad,
        None => Step::More,
    }
}

/// True for the first byte of any RESP2/RESP3 value.
#[inline]
pub const fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b','
            | b'#'
            | b'!'
            | b'='
            | b'('
            | b'%'
            | b'~'
            | b'>'
            | b'|'
    )
}

/// True when `name` looks like a Redis command name (letters, digits, `_`, `-`, `.`, `|`, starting with a letter).
pub fn plausible_command(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.first().is_some_and(|b| b.is_ascii_alphabetic())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'|'))
}

/// Does a command in array form (`*N\r\n$M\r\n<name>\r\n`) start at `data[i]`?
/// `Done(true, _)` when certain, `Done(false, _)` when certainly not, `More` when the buffer ends first.
pub fn command_start(data: &[u8], i: usize) -> Step<bool> {
    if data.get(i) != Some(&b'*') {
        return if data.get(i).is_none() {
            Step::More
        } else {
            Step::Done(false, i)
        };
    }
    let j = match int_line(data, i + 1) {
        Step::Done(Some(n), j) if (1..=1024 * 1024).contains(&n) => j,
        Step::Done(..) | Step::Bad => return Step::Done(false, i),
        Step::More => return Step::More,
    };
    match data.get(j) {
        None => return Step::More,
        Some(b'$') => {}
        Some(_) => return Step::Done(false, i),
    }
    let (len, k) = match int_line(data, j + 1) {
        Step::Done(Some(n), k) if (1..=64).contains(&n) => (n as usize, k),
        Step::Done(..) | Step::Bad => return Step::Done(false, i),
        Step::More => return Step::More,
    };
    let Some(name) = data.get(k..k + len) else {
        // Partial name: judge what is there.
        let part = data.get(k..).unwrap_or(&[]);
        return if part.is_empty() || plausible_prefix(part) {
            Step::More
        } else {
            Step::Done(false, i)
        };
    };
    if !plausible_command(name) {
        return Step::Done(false, i);
    }
    match (data.get(k + len), data.get(k + len + 1)) {
        (Some(b'\r'), Some(b'\n')) => Step::Done(true, i),
        (None, _) | (Some(b'\r'), None) => Step::More,
        _ => Step::Done(false, i),
    }
}

fn plausible_prefix(part: &[u8]) -> bool {
    part.first().is_some_and(|b| b.is_ascii_alphabetic())
        && part
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'|'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_lines() {
        assert_eq!(int_line(b"*3\r\n", 1), Step::Done(Some(3), 4));
        assert_eq!(int_line(b"$-1\r\n", 1), Step::Done(Some(-1), 5));
        assert_eq!(int_line(b"*?\r\n", 1), Step::Done(None, 4));
        assert_eq!(int_line(b"$12", 1), Step::More);
        assert_eq!(int_line(b"$12\r", 1), Step::More);
        assert_eq!(int_line(b"$1x\r\n", 1), Step::Bad);
        assert_eq!(int_line(b"$\r\n", 1), Step::Bad);
        assert_eq!(int_line(b"$1234567890123456789\r\n", 1), Step::Bad);
    }

    #[test]
    fn command_starts() {
        assert_eq!(
            command_start(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", 0),
            Step::Done(true, 0)
        );
        assert_eq!(command_start(b"*2\r\n$3\r\nGE", 0), Step::More);
        assert_eq!(
            command_start(b"*2\r\n$3\r\n\x00\x01\x02\r\n", 0),
            Step::Done(false, 0)
        );
        assert_eq!(command_start(b"+OK\r\n", 0), Step::Done(false, 0));
        assert_eq!(line_end(b"+OK\r\n", 1, 100), Step::Done(3, 5));
        assert_eq!(line_end(b"+OK\n", 1, 100), Step::Bad);
        assert_eq!(line_end(b"+OK", 1, 100), Step::More);
    }
}
