//! Just enough DER to name a certificate: subject, issuer and notAfter of an X.509 v1-v3 certificate
//! (RFC 5280 §4.1), read from a borrowed buffer without allocation except for the final text.
//!
//! Validity contract: every read goes through `get`; malformed input yields `None`, never a panic. Only
//! definite lengths of up to 4 bytes and single-byte tags are accepted (DER requires both for these fields).

/// The names and expiry of a certificate, in text form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// Subject, as `CN=...,O=...` in wire order (attributes CN, O, OU, C, ST, L only).
    pub subject: String,
    /// Issuer, same form.
    pub issuer: String,
    /// notAfter in RFC 3339 form (`2026-12-27T01:19:31Z`).
    pub not_after: String,
}

/// Split one TLV off the front of `b`: (tag, content, rest).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags do not occur in the fields we read
    }
    let l0 = *b.get(1)?;
    let (len, hdr) = if l0 < 0x80 {
        (l0 as usize, 2)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let content = b.get(hdr..hdr.checked_add(len)?)?;
    let rest = b.get(hdr + len..)?;
    Some((tag, content, rest))
}

fn expect(b: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, c, rest) = tlv(b)?;
    (tag == want).then_some((c, rest))
}

/// Summarise the DER certificate `der`.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (cert, _) = expect(der, 0x30)?;
    let (tbs, _) = expect(cert, 0x30)?;
    let mut r = tbs;
    if let Some((0xa0, _, rest)) = tlv(r) {
        r = rest; // explicit version
    }
    let (_serial, r) = expect(r, 0x02)?;
    let (_sig, r) = expect(r, 0x30)?;
    let (issuer, r) = expect(r, 0x30)?;
    let (validity, r) = expect(r, 0x30)?;
    let (subject, _) = expect(r, 0x30)?;
    let (_, _, v) = tlv(validity)?;
    let (ttag, not_after, _) = tlv(v)?;
    Some(CertSummary {
        subject: name_text(subject),
        issuer: name_text(issuer),
        not_after: time_text(ttag, not_after)?,
    })
}

/// `CN=a,O=b` from an RDNSequence's content.
fn name_text(mut rdns: &[u8]) -> String {
    let mut out = String::new();
    while let Some((0x31, set, rest)) = tlv(rdns) {
        rdns = rest;
        let mut s = set;
        while let Some((0x30, atv, rest)) = tlv(s) {
            s = rest;
            let Some((oid, v)) = expect(atv, 0x06) else {
                continue;
            };
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                [0x55, 0x04, 0x06] => "C",
                [0x55, 0x04, 0x08] => "ST",
                [0x55, 0x04, 0x07] => "L",
                _ => continue,
            };
            let Some((vt, val, _)) = tlv(v) else {
                continue;
            };
            // UTF8String, PrintableString, TeletexString, IA5String: show as (lossy) UTF-8.
            if !matches!(vt, 0x0c | 0x13 | 0x14 | 0x16) {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(key);
            out.push('=');
            for c in String::from_utf8_lossy(val).chars() {
                if c == ',' || c == ';' || c == '\\' {
                    out.push('\\');
                }
                if !c.is_control() {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// RFC 3339 text of a UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn time_text(tag: u8, t: &[u8]) -> Option<String> {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let (year, rest): (String, &[u8]) = match tag {
        0x17 => {
            let yy = t.get(..2)?;
            if !digits(yy) {
                return None;
            }
            let y = (yy[0] - b'0') as u32 * 10 + (yy[1] - b'0') as u32;
            let century = if y < 50 { 2000 } else { 1900 };
            ((century + y).to_string(), t.get(2..)?)
        }
        0x18 => {
            let y = t.get(..4)?;
            if !digits(y) {
                return None;
            }
            (String::from_utf8_lossy(y).into_owned(), t.get(4..)?)
        }
        _ => return None,
    };
    let f = rest.get(..10)?;
    if !digits(f) || rest.get(10) != Some(&b'Z') {
        return None;
    }
    let p = |i: usize| std::str::from_utf8(&f[i..i + 2]).unwrap_or("00");
    Some(format!(
        "{year}-{}-{}T{}:{}:{}Z",
        p(0),
        p(2),
        p(4),
        p(6),
        p(8)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_rejects_bad_lengths() {
        assert!(tlv(&[0x30]).is_none());
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(tlv(&[0x30, 0x82, 0xff, 0xff, 0]).is_none());
        assert_eq!(
            tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((4, &[0xaa][..], &[0xbb][..]))
        );
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn times() {
        assert_eq!(
            time_text(0x17, b"261227011931Z").as_deref(),
            Some("2026-12-27T01:19:31Z")
        );
        assert_eq!(
            time_text(0x18, b"20500101000000Z").as_deref(),
            Some("2050-01-01T00:00:00Z")
        );
        assert_eq!(time_text(0x17, b"26122701193Z"), None);
    }
}
