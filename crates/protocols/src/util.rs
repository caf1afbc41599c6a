//! Small helpers shared by protocol modules.

/// Truncate `s` to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lossy UTF-8 of `bytes`, truncated to `max` bytes, as an owned string.
pub fn lossy(bytes: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(max.saturating_add(4))]);
    truncate(&s, max).to_string()
}

/// The placeholder that replaces id-like path segments in [`url_endpoint`].
pub const ID_PLACEHOLDER: &str = "{id}";

/// The low-cardinality endpoint of a URL path (HTTP/1, HTTP/2): the path without query or fragment, with
/// id-like segments replaced by [`ID_PLACEHOLDER`], truncated to `max` bytes.
///
/// The rule, segment by segment (segments are the parts between `/`):
/// - all ASCII digits (`/users/42`);
/// - a UUID, `8-4-4-4-12` hex digits (`/orders/3f2b...-...`);
/// - a hex string of at least 8 digits containing at least one decimal digit (`/orders/9f8e7d6c5b4a`,
///   object ids, hashes);
/// - a base64/base64url-like token of at least 22 characters (a 128-bit id) mixing upper case, lower case
///   and digits (opaque tokens; lower-case slugs such as `release-notes-2024` are kept).
///
/// An absolute-form target (`http://host/path`) keeps only its path; an empty path is `/`; `*` stays `*`.
/// Other segments are kept verbatim.
///
/// ```
/// use fathom_protocols::util::url_endpoint;
/// assert_eq!(url_endpoint("/api/users/123?verbose=1", 1024), "/api/users/{id}");
/// assert_eq!(url_endpoint("/api/orders/9f8e7d6c5b4a", 1024), "/api/orders/{id}");
/// assert_eq!(url_endpoint("/static/alpha.js", 1024), "/static/alpha.js");
/// ```
pub fn url_endpoint(target: &str, max: usize) -> String {
    let mut path = target;
    if let Some(rest) = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))
    {
        path = rest.find('/').map_or("/", |i| rest.get(i..).unwrap_or("/"));
    }
    if let Some(i) = path.bytes().position(|b| b == b'?' || b == b'#') {
        path = path.get(..i).unwrap_or("");
    }
    if path.is_empty() {
        return "/".to_string();
    }
    if !path.as_bytes().split(|&b| b == b'/').any(is_id_bytes) {
        return truncate(path, max).to_string();
    }
    let mut out = String::with_capacity(path.len().min(max));
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id_segment(seg) {
            out.push_str(ID_PLACEHOLDER);
        } else {
            out.push_str(seg);
        }
        if out.len() >= max {
            break;
        }
    }
    let keep = truncate(&out, max).len();
    out.truncate(keep);
    out
}

/// Whether a path segment looks like an id (see [`url_endpoint`] for the rule).
pub fn is_id_segment(seg: &str) -> bool {
    is_id_bytes(seg.as_bytes())
}

fn is_id_bytes(b: &[u8]) -> bool {
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    if b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit) {
        return true;
    }
    b.len() >= 22
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'='))
        && b.iter().any(u8::is_ascii_digit)
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(
            lossy(b"ab\xffcd", 3),
            "ab\u{fffd}".chars().take(2).collect::<String>()
        );
    }

    #[test]
    fn endpoint_rule() {
        let e = |s| url_endpoint(s, 1024);
        assert_eq!(e("/api/users/123"), "/api/users/{id}");
        assert_eq!(e("/api/users/123?verbose=0&src=curl"), "/api/users/{id}");
        assert_eq!(e("/api/orders/9f8e7d6c5b4a"), "/api/orders/{id}");
        assert_eq!(e("/api/kepler-2f52"), "/api/kepler-2f52");
        assert_eq!(e("/api/items/cobalt/fail"), "/api/items/cobalt/fail");
        assert_eq!(e("/deadbeef/x"), "/deadbeef/x");
        assert_eq!(
            e("/o/123e4567-e89b-12d3-a456-426614174000/items/7#frag"),
            "/o/{id}/items/{id}"
        );
        assert_eq!(e("/t/dGhpcyBpcyBhIFRva2VuMTIz/x"), "/t/{id}/x");
        assert_eq!(
            e("/blog/release-notes-for-2024-final"),
            "/blog/release-notes-for-2024-final"
        );
        assert_eq!(e("http://example.com/a/1?q"), "/a/{id}");
        assert_eq!(e("http://example.com"), "/");
        assert_eq!(e(""), "/");
        assert_eq!(e("*"), "*");
        assert_eq!(e("/a/"), "/a/");
        assert_eq!(url_endpoint("/abcdef/ghij", 4), "/abc");
    }
}
