//! Hot-path parse errors: small, `Copy`, no allocation.

use std::fmt;

/// Why bytes could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Not this protocol (bad magic, bad framing).
    Invalid,
    /// A length field or message larger than [`crate::Limits`] allows.
    TooLarge,
    /// More headers / fields / nesting than [`crate::Limits`] allows.
    TooMany,
    /// A field holds a value the protocol forbids.
    BadValue,
    /// The protocol switched to something this parser does not follow (TLS upgrade, ...): stop parsing the flow.
    Unsupported,
}

impl ParseErrorKind {
    /// A stable snake_case name, for counters.
    pub const fn as_str(self) -> &'static str {
        match self {
            ParseErrorKind::Invalid => "invalid",
            ParseErrorKind::TooLarge => "too_large",
            ParseErrorKind::TooMany => "too_many",
            ParseErrorKind::BadValue => "bad_value",
            ParseErrorKind::Unsupported => "unsupported",
        }
    }
}

/// A parse failure at `offset` bytes into the data given to the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Where, relative to the start of the data given to the call.
    pub offset: usize,
}

impl ParseError {
    /// An error of `kind` at `offset`.
    pub const fn new(kind: ParseErrorKind, offset: usize) -> ParseError {
        ParseError { kind, offset }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.kind.as_str(), self.offset)
    }
}

impl std::error::Error for ParseError {}
