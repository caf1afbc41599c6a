//! The JSON-lines serializations (fastjson, id 6; gson, id 16): each value of the body is one JSON text
//! followed by a newline (Dubbo's `FastJsonObjectOutput` / `GsonJsonObjectOutput` write `toJSONString(obj)`
//! then `println()`). Only what a log needs is read: top-level strings and a flat object of string pairs.
//!
//! Validity contract: never panics; anything unexpected yields `None` / stops the walk.

/// Split a body into its JSON-text lines (`\n` or `\r\n`).
pub fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Decode a JSON string token at the start of `s` (after optional spaces): the unescaped text (lossy for
/// `\u` escapes outside the BMP) and the bytes consumed, keeping at most `keep` bytes of text.
pub fn string(s: &[u8], keep: usize) -> Option<(String, usize)> {
    let start = s.iter().position(|b| !b.is_ascii_whitespace())?;
    if s.get(start) != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        let b = *s.get(i)?;
        i += 1;
        let c = match b {
            b'"' => break,
            b'\\' => {
                let e = *s.get(i)?;
                i += 1;
                match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'b' => 8,
                    b'f' => 12,
                    b'u' => {
                        let hex = std::str::from_utf8(s.get(i..i + 4)?).ok()?;
                        i += 4;
                        let ch = u32::from_str_radix(hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('\u{fffd}');
                        if out.len() < keep {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        continue;
                    }
                    other => other,
                }
            }
            other => other,
        };
        if out.len() < keep {
            out.push(c);
        }
    }
    let text = crate::util::lossy(&out, keep);
    Some((text, i))
}

/// Walk a flat JSON object, calling `f` for each member whose value is a string. Nested values are skipped.
pub fn string_members(s: &[u8], keep: usize, mut f: impl FnMut(&str, &str)) -> Option<()> {
    let mut i = s.iter().position(|b| !b.is_ascii_whitespace())?;
    if s.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i += s.get(i..)?.iter().position(|b| !b.is_ascii_whitespace())?;
        match s.get(i)? {
            b'}' => return Some(()),
            b',' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let (k, n) = string(s.get(i..)?, keep)?;
        i += n;
        i += s.get(i..)?.iter().position(|b| !b.is_ascii_whitespace())?;
        if s.get(i) != Some(&b':') {
            return None;
        }
        i += 1;
        i += s.get(i..)?.iter().position(|b| !b.is_ascii_whitespace())?;
        if s.get(i) == Some(&b'"') {
            let (v, n) = string(s.get(i..)?, keep)?;
            i += n;
            f(&k, &v);
        } else {
            i += skip_value(s.get(i..)?)?;
        }
    }
}

/// Length of the non-string JSON value at the start of `s`: up to the `,` or `}` closing it at depth 0.
fn skip_value(s: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => {
                let (_, n) = string(s.get(i..)?, 0)?;
                i += n;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b'}' if depth == 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_members() {
        assert_eq!(
            string(br#""a\"b\u00e9""#, 64),
            Some(("a\"bé".to_string(), 12))
        );
        assert_eq!(string(b"null", 64), None);
        let mut got = Vec::new();
        string_members(
            br#"{"path":"x.Api","n":{"a":[1,"}"]},"traceparent":"00-ab-cd-01"}"#,
            64,
            |k, v| got.push((k.to_string(), v.to_string())),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("path".to_string(), "x.Api".to_string()),
                ("traceparent".to_string(), "00-ab-cd-01".to_string())
            ]
        );
    }
}
