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
}
