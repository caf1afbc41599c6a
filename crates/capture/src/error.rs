//! Errors of capture sources.

use std::io;

/// Why a capture source stopped before the end of its input.
///
/// Offsets are byte offsets in the (decompressed) capture stream, counted from its first byte; everything before
/// the offset was delivered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The input could not be read.
    #[error("read error at byte offset {offset}: {source}")]
    Io {
        /// Offset of the first byte that could not be read.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The input is neither pcap nor pcapng (nor gzip of either).
    #[error("not a pcap or pcapng file (magic {magic:#010x})")]
    NotACapture {
        /// The first four bytes, little-endian.
        magic: u32,
    },
    /// The input ends in the middle of a record.
    #[error("capture truncated: incomplete record at byte offset {offset} ({have} of {need} bytes present)")]
    Truncated {
        /// Offset of the incomplete record.
        offset: u64,
        /// Bytes present.
        have: u64,
        /// Bytes the record needs.
        need: u64,
    },
    /// A record or block is malformed.
    #[error("malformed capture at byte offset {offset}: {reason}")]
    Malformed {
        /// Offset of the malformed record.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl CaptureError {
    /// The byte offset at which the input became unusable, if the error has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Io { offset, .. }
            | CaptureError::Truncated { offset, .. }
            | CaptureError::Malformed { offset, .. } => Some(*offset),
            CaptureError::NotACapture { .. } => Some(0),
        }
    }
}
