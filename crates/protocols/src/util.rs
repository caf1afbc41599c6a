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

/// Most bytes of SQL text [`sql_endpoint`] looks at.
pub const SQL_ENDPOINT_SCAN: usize = 4096;
/// Longest table name kept in an endpoint.
pub const SQL_ENDPOINT_MAX_TABLE: usize = 64;

/// A lexical token of SQL, as far as [`sql_endpoint`] needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlTok<'a> {
    /// A bare word (keyword or identifier), possibly dotted (`db.t`).
    Word(&'a str),
    /// A quoted identifier (`` `t` ``, `"t"`, `[t]`), quotes stripped.
    Quoted(&'a str),
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// Anything else (literals, operators, punctuation).
    Other,
}

/// A tiny SQL tokenizer: skips whitespace, comments (`--`, `#`, `/* */`) and string literals.
struct SqlLexer<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> SqlLexer<'a> {
    fn next_tok(&mut self) -> Option<SqlTok<'a>> {
        let b = self.s.as_bytes();
        loop {
            let c = *b.get(self.i)?;
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if c == b'-' && b.get(self.i + 1) == Some(&b'-') || c == b'#' {
                while let Some(&c) = b.get(self.i) {
                    self.i += 1;
                    if c == b'\n' {
                        break;
                    }
                }
            } else if c == b'/' && b.get(self.i + 1) == Some(&b'*') {
                self.i += 2;
                while self.i < b.len() && !(b[self.i] == b'*' && b.get(self.i + 1) == Some(&b'/')) {
                    self.i += 1;
                }
                self.i = (self.i + 2).min(b.len());
            } else {
                break;
            }
        }
        let start = self.i;
        let c = b[start];
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        if word(c) {
            while self.i < b.len() && (word(b[self.i]) || b[self.i] == b'.') {
                self.i += 1;
            }
            return Some(SqlTok::Word(self.s.get(start..self.i).unwrap_or("")));
        }
        self.i += 1;
        match c {
            b'(' => Some(SqlTok::Open),
            b')' => Some(SqlTok::Close),
            b'\'' | b'"' | b'`' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                while self.i < b.len() && b[self.i] != close {
                    if b[self.i] == b'\\' && c == b'\'' {
                        self.i += 1;
                    }
                    self.i += 1;
                }
                let end = self.i.min(b.len());
                self.i = (self.i + 1).min(b.len());
                if c == b'\'' {
                    Some(SqlTok::Other)
                } else {
                    Some(SqlTok::Quoted(self.s.get(start + 1..end).unwrap_or("")))
                }
            }
            _ => Some(SqlTok::Other),
        }
    }
}

/// The low-cardinality endpoint of a SQL statement: its verb (first keyword, uppercase) and the first table it
/// names, separated by a space (`SELECT users`, `INSERT orders`, `UPDATE accounts`, `DELETE t`,
/// `CREATE orders`); the verb alone when no table is found (`SET`, `COMMIT`, `SELECT` without `FROM`).
///
/// The rule, applied to the first [`SQL_ENDPOINT_SCAN`] bytes after comments and whitespace:
/// - `SELECT`, `DELETE`: the word after the first `FROM` at parenthesis depth 0 (`SELECT` with a subquery in
///   `FROM` gives the verb alone);
/// - `INSERT`, `REPLACE`: the word after `INTO`;
/// - `UPDATE`: the next word (after `LOW_PRIORITY`/`IGNORE`/`ONLY`);
/// - `CREATE`, `DROP`, `ALTER`, `TRUNCATE`: the word after `TABLE` (skipping `IF [NOT] EXISTS`), only for tables;
/// - anything else (including `WITH`): the verb alone.
///
/// Table names keep their schema qualifier (`db.t`), lose their quotes and are cut to
/// [`SQL_ENDPOINT_MAX_TABLE`] bytes. Returns `None` when the text has no leading keyword.
pub fn sql_endpoint(sql: &str) -> Option<String> {
    let sql = truncate(sql, SQL_ENDPOINT_SCAN);
    let mut lx = SqlLexer { s: sql, i: 0 };
    let verb = match lx.next_tok()? {
        SqlTok::Word(w) if w.bytes().all(|c| c.is_ascii_alphabetic()) && w.len() <= 32 => {
            w.to_ascii_uppercase()
        }
        _ => return None,
    };
    let table = |t: Option<SqlTok<'_>>, lx: &mut SqlLexer<'_>| -> Option<String> {
        let mut name = match t? {
            SqlTok::Word(w) => w.to_string(),
            SqlTok::Quoted(q) => q.to_string(),
            _ => return None,
        };
        // `schema`.`table`: a quoted part followed directly by a dot.
        while lx.s.as_bytes().get(lx.i) == Some(&b'.') && name.len() < SQL_ENDPOINT_MAX_TABLE {
            lx.i += 1;
            match lx.next_tok() {
                Some(SqlTok::Word(w)) => name.push_str(&format!(".{w}")),
                Some(SqlTok::Quoted(q)) => name.push_str(&format!(".{q}")),
                _ => break,
            }
        }
        if name.ends_with('.') || name.starts_with('.') {
            name = name.trim_matches('.').to_string();
        }
        if name.is_empty() {
            return None;
        }
        let keep = truncate(&name, SQL_ENDPOINT_MAX_TABLE).len();
        name.truncate(keep);
        Some(name)
    };
    let is = |t: &Option<SqlTok<'_>>, kw: &str| matches!(t, Some(SqlTok::Word(w)) if w.eq_ignore_ascii_case(kw));
    let tbl = match verb.as_str() {
        "SELECT" | "DELETE" => {
            let mut depth = 0u32;
            let mut found = None;
            while let Some(t) = lx.next_tok() {
                match t {
                    SqlTok::Open => depth += 1,
                    SqlTok::Close => depth = depth.saturating_sub(1),
                    SqlTok::Word(w) if depth == 0 && w.eq_ignore_ascii_case("FROM") => {
                        found = {
                            let t = lx.next_tok();
                            table(t, &mut lx)
                        };
                        break;
                    }
                    _ => {}
                }
            }
            found
        }
        "INSERT" | "REPLACE" => {
            let mut found = None;
            while let Some(t) = lx.next_tok() {
                if let SqlTok::Word(w) = t {
                    if w.eq_ignore_ascii_case("INTO") {
                        found = {
                            let t = lx.next_tok();
                            table(t, &mut lx)
                        };
                        break;
                    }
                }
            }
            found
        }
        "UPDATE" => {
            let mut t = lx.next_tok();
            while is(&t, "LOW_PRIORITY") || is(&t, "IGNORE") || is(&t, "ONLY") {
                t = lx.next_tok();
            }
            table(t, &mut lx)
        }
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => {
            let mut t = lx.next_tok();
            // CREATE [OR REPLACE] [TEMPORARY|UNLOGGED] TABLE ...
            let mut n = 0;
            while !is(&t, "TABLE") && n < 4 && verb != "TRUNCATE" {
                t = lx.next_tok();
                n += 1;
            }
            if is(&t, "TABLE") {
                t = lx.next_tok();
            }
            if is(&t, "IF") {
                t = lx.next_tok();
                if is(&t, "NOT") {
                    t = lx.next_tok();
                }
                if is(&t, "EXISTS") {
                    t = lx.next_tok();
                }
            }
            if verb == "TRUNCATE" || n < 4 {
                table(t, &mut lx)
            } else {
                None
            }
        }
        _ => None,
    };
    let mut out = verb;
    if let Some(t) = tbl {
        out.reserve(1 + t.len());
        out.push(' ');
        out.push_str(&t);
    }
    Some(out)
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
    fn sql_endpoint_rule() {
        let e = |s: &str| sql_endpoint(s);
        assert_eq!(
            e("SELECT id FROM users WHERE x = 1").as_deref(),
            Some("SELECT users")
        );
        assert_eq!(
            e("  /* c */ select * from `shop`.`orders`").as_deref(),
            Some("SELECT shop.orders")
        );
        assert_eq!(
            e("SELECT (SELECT 1 FROM a) FROM b").as_deref(),
            Some("SELECT b")
        );
        assert_eq!(
            e("INSERT INTO orders (a) VALUES (1)").as_deref(),
            Some("INSERT orders")
        );
        assert_eq!(
            e("UPDATE accounts SET b = 1").as_deref(),
            Some("UPDATE accounts")
        );
        assert_eq!(
            e("DELETE FROM no_such_table").as_deref(),
            Some("DELETE no_such_table")
        );
        assert_eq!(
            e("DROP TABLE IF EXISTS orders").as_deref(),
            Some("DROP orders")
        );
        assert_eq!(
            e("CREATE TABLE orders (id INT)").as_deref(),
            Some("CREATE orders")
        );
        assert_eq!(e("CREATE INDEX i ON t (a)").as_deref(), Some("CREATE"));
        assert_eq!(e("SET NAMES utf8mb4").as_deref(), Some("SET"));
        assert_eq!(e("COMMIT").as_deref(), Some("COMMIT"));
        assert_eq!(e("SELECT 1 AS one, now() AS ts").as_deref(), Some("SELECT"));
        assert_eq!(e("SELECT 'from x' FROM \"T\"").as_deref(), Some("SELECT T"));
        assert_eq!(e(""), None);
        assert_eq!(e("  -- only a comment"), None);
        assert_eq!(e("123"), None);
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
