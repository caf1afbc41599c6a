//! Errors of the encoding crate, per area.

use std::path::PathBuf;

/// Why a batch could not be decoded. Every variant names the byte offset of the damage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The batch ends before a field does.
    #[error("batch truncated at offset {offset}")]
    Truncated {
        /// Offset of the missing byte.
        offset: usize,
    },
    /// The magic bytes are not `FATB`.
    #[error("not a Fathom batch (bad magic at offset 0)")]
    BadMagic,
    /// A valid batch of the other kind (a metric batch given to the log decoder, or the reverse).
    #[error("this is a {found} batch, not a {expected} batch")]
    WrongKind {
        /// The batch's kind.
        found: &'static str,
        /// The kind this decoder reads.
        expected: &'static str,
    },
    /// A version this decoder does not know.
    #[error("unsupported batch version {version} (this decoder reads version {supported})")]
    UnsupportedVersion {
        /// The batch's version.
        version: u8,
        /// The version this decoder reads.
        supported: u8,
    },
    /// The body's CRC32 does not match the header.
    #[error("checksum mismatch: header says {expected:#010x}, body has {actual:#010x}")]
    Checksum {
        /// CRC32 in the header.
        expected: u32,
        /// CRC32 of the body received.
        actual: u32,
    },
    /// A varint longer than 10 bytes or overflowing 64 bits.
    #[error("malformed varint at offset {offset}")]
    BadVarint {
        /// Offset of the bad byte.
        offset: usize,
    },
    /// A count, length or size over the decoder's limits.
    #[error("limit exceeded at offset {offset}: {what}")]
    LimitExceeded {
        /// Offset of the field.
        offset: usize,
        /// Which limit.
        what: &'static str,
    },
    /// A field holds an impossible value.
    #[error("bad value at offset {offset}: {what}")]
    BadValue {
        /// Offset of the field.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// An id that no dictionary entry defines.
    #[error("unknown dictionary id {id} of key {key} at offset {offset}")]
    UnknownId {
        /// Offset of the field.
        offset: usize,
        /// Key id (sender-local).
        key: u32,
        /// Value id (sender-local).
        id: u32,
    },
    /// The body is compressed but this build has no zstd, or decompression failed.
    #[error("cannot decompress the body: {0}")]
    Decompress(String),
}

/// Why a persistent dictionary could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O error on the dictionary file.
    #[error("dictionary file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Why a batch could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// More rows than [`crate::MAX_ROWS`].
    #[error("batch of {rows} rows exceeds the limit of {max}")]
    TooManyRows {
        /// Rows given.
        rows: usize,
        /// The limit.
        max: usize,
    },
    /// More distinct tag keys in one batch than [`crate::MAX_TAG_KEYS`] (the decoder would refuse it).
    #[error("batch has {keys} distinct tag keys, over the limit of {max}")]
    TooManyTagKeys {
        /// Distinct keys.
        keys: usize,
        /// The limit.
        max: usize,
    },
    /// Pre-interned tag sets that do not fit the logs given with them.
    #[error("tag sets at row {row}: {what}")]
    TagSets {
        /// The first row concerned.
        row: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A metric batch with more RED or L4 rows than [`crate::MAX_ROWS`].
    #[error("metric batch of {rows} rows exceeds the limit of {max}")]
    TooManyMetricRows {
        /// Rows given.
        rows: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded body exceeds [`crate::MAX_BODY_BYTES`].
    #[error("encoded batch of {bytes} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Body size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Persisting new dictionary entries before sending them failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Compression failed.
    #[error("compression failed: {0}")]
    Compress(String),
}
