//! Start-line recognition without allocation: used by the probe and to resynchronise after a gap.

/// Request methods the probe and the resynchroniser recognise (RFC 9110, WebDAV, and common extensions).
pub const KNOWN_METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"PUT",
    b"DELETE",
    b"HEAD",
    b"OPTIONS",
    b"PATCH",
    b"TRACE",
    b"CONNECT",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"QUERY",
    b"PURGE",
];

/// Longest start line the scanner waits for before giving up on a candidate.
pub const MAX_START_LINE: usize = 8192;

/// What the bytes at a line start look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// A complete request line: known method, SP, target, SP, `HTTP/1.x`, line end.
    Request,
    /// A status line prefix: `HTTP/1.x NNN` followed by SP or a line end.
    Response,
    /// A consistent prefix of either: more bytes are needed to decide.
    Partial,
    /// Neither.
    No,
}

/// Whether `b`, as far as it goes, is a prefix of `pat` (or `pat` is a prefix of `b`).
#[inline]
fn prefix_match(b: &[u8], pat: &[u8]) -> Option<bool> {
    let n = b.len().min(pat.len());
    if b.get(..n) != pat.get(..n) {
        None
    } else {
        Some(b.len() >= pat.len())
    }
}

/// Classify the bytes at a line start. Never allocates; reads at most [`MAX_START_LINE`] bytes.
pub fn line_kind(b: &[u8]) -> LineKind {
    match b.first() {
        None => return LineKind::Partial,
        Some(b'H') if b.get(1) == Some(&b'T') || b.len() == 1 => return status_line(b),
        _ => {}
    }
    let mut partial = false;
    for m in KNOWN_METHODS {
        match prefix_match(b, m) {
            None => continue,
            Some(false) => partial = true,
            Some(true) => match b.get(m.len()) {
                None => partial = true,
                Some(b' ') => return request_rest(b.get(m.len() + 1..).unwrap_or(&[])),
                Some(_) => {}
            },
        }
    }
    if partial {
        LineKind::Partial
    } else {
        LineKind::No
    }
}

fn status_line(b: &[u8]) -> LineKind {
    // "HTTP/1." DIGIT SP 3DIGIT (SP | CR | LF)
    match prefix_match(b, b"HTTP/1.") {
        None => return LineKind::No,
        Some(false) => return LineKind::Partial,
        Some(true) => {}
    }
    for i in 7..12 {
        let Some(&c) = b.get(i) else {
            return LineKind::Partial;
        };
        let ok = match i {
            7 => matches!(c, b'0' | b'1'),
            8 => c == b' ',
            9 => (b'1'..=b'5').contains(&c),
            _ => c.is_ascii_digit(),
        };
        if !ok {
            return LineKind::No;
        }
    }
    match b.get(12) {
        None => LineKind::Partial,
        Some(b' ' | b'\r' | b'\n') => LineKind::Response,
        Some(_) => LineKind::No,
    }
}

fn request_rest(b: &[u8]) -> LineKind {
    // target: visible ASCII (or obs-text), non-empty, up to SP.
    let limit = b.len().min(MAX_START_LINE);
    let mut i = 0;
    while i < limit {
        let c = b[i];
        if c == b' ' {
            break;
        }
        if c <= 0x20 || c == 0x7f {
            return LineKind::No;
        }
        i += 1;
    }
    if i == 0 {
        return if b.is_empty() {
            LineKind::Partial
        } else {
            LineKind::No
        };
    }
    if i == limit {
        return if limit < MAX_START_LINE {
            LineKind::Partial
        } else {
            LineKind::No
        };
    }
    let rest = b.get(i + 1..).unwrap_or(&[]);
    match prefix_match(rest, b"HTTP/1.") {
        None => return LineKind::No,
        Some(false) => return LineKind::Partial,
        Some(true) => {}
    }
    match rest.get(7) {
        None => return LineKind::Partial,
        Some(b'0' | b'1') => {}
        Some(_) => return LineKind::No,
    }
    match (rest.get(8), rest.get(9)) {
        (Some(b'\n'), _) | (Some(b'\r'), Some(b'\n')) => LineKind::Request,
        (None, _) | (Some(b'\r'), None) => LineKind::Partial,
        _ => LineKind::No,
    }
}

/// Result of scanning for a message start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// A start line of this kind begins at this offset.
    Found(usize, LineKind),
    /// A candidate begins at this offset but is incomplete: keep the bytes from there.
    Wait(usize),
    /// Nothing: all bytes can be dropped.
    Skip,
}

/// Find the first line start in `data` (offset 0 counts as one) holding a start line of `want` (or of either
/// kind when `want` is None).
pub(crate) fn find_start(data: &[u8], want: Option<LineKind>) -> Scan {
    let mut p = 0;
    while p < data.len() {
        let rest = data.get(p..).unwrap_or(&[]);
        match line_kind(rest) {
            k @ (LineKind::Request | LineKind::Response) if want.is_none_or(|w| w == k) => {
                return Scan::Found(p, k)
            }
            LineKind::Partial if rest.len() < MAX_START_LINE => return Scan::Wait(p),
            _ => {}
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => p += i + 1,
            None => break,
        }
    }
    Scan::Skip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(line_kind(b"GET / HTTP/1.1\r\n"), LineKind::Request);
        assert_eq!(line_kind(b"GET / HTTP/1.0\n"), LineKind::Request);
        assert_eq!(
            line_kind(b"CONNECT example.com:443 HTTP/1.1\r\n"),
            LineKind::Request
        );
        assert_eq!(line_kind(b"GET / HTTP/1.1\r"), LineKind::Partial);
        assert_eq!(line_kind(b"GET /abc"), LineKind::Partial);
        assert_eq!(line_kind(b"GE"), LineKind::Partial);
        assert_eq!(line_kind(b"P"), LineKind::Partial);
        assert_eq!(line_kind(b""), LineKind::Partial);
        assert_eq!(line_kind(b"GET  / HTTP/1.1\r\n"), LineKind::No);
        assert_eq!(line_kind(b"GET / HTTP/2.0\r\n"), LineKind::No);
        assert_eq!(line_kind(b"GETX / HTTP/1.1\r\n"), LineKind::No);
        assert_eq!(line_kind(b"FOO / HTTP/1.1\r\n"), LineKind::No);
        assert_eq!(line_kind(b"HTTP/1.1 200 OK\r\n"), LineKind::Response);
        assert_eq!(line_kind(b"HTTP/1.0 404\r\n"), LineKind::Response);
        assert_eq!(line_kind(b"HTTP/1.1 20"), LineKind::Partial);
        assert_eq!(line_kind(b"HTTP/1.1 2000"), LineKind::No);
        assert_eq!(line_kind(b"HTTP/2 200"), LineKind::No);
        assert_eq!(line_kind(b"H"), LineKind::Partial);
        assert_eq!(line_kind(b"\x16\x03\x01\x02\x00"), LineKind::No);
    }

    #[test]
    fn scanning() {
        let d = b"tail of a body\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(find_start(d, None), Scan::Found(16, LineKind::Request));
        assert_eq!(find_start(d, Some(LineKind::Response)), Scan::Skip);
        assert_eq!(find_start(b"junk\nHTTP/1.1 2", None), Scan::Wait(5));
        assert_eq!(find_start(b"junk\njunk", None), Scan::Skip);
    }
}
