//! HTTP/2 and gRPC over cleartext TCP (h2c with prior knowledge, and connections joined mid-stream).
//!
//! # What one log is
//! One stream: the request is the client's HEADERS (+ CONTINUATION) and DATA up to its END_STREAM, the response
//! the server's HEADERS, DATA and trailers up to its END_STREAM (or a RST_STREAM from either side, which ends
//! the stream as an error: `client_error` when the client reset it, `server_error` when the server did, with
//! `RST_STREAM <code name>` as the exception). Requests and responses pair by stream id
//! ([`crate::Correlation::ById`]); `request_id` is the stream id. A stream whose request carries
//! `content-type: application/grpc*` is labelled [`fathom_model::L7Protocol::Grpc`]: its `response_code` is
//! `grpc-status` (from the trailers, or from the headers of a trailers-only response) and `grpc-message` is the
//! exception. Server pushes are one-way logs.
//!
//! # HPACK
//! One decoding state per direction ([`hpack::HpackState`]): the dynamic table is
//! [`httlib_hpack::table::Table`] (static and dynamic entries, FIFO eviction, dynamic table size updates) and
//! Huffman strings go through [`httlib_huffman`]'s table-driven decoder; the field representations are walked
//! in [`hpack`] with every length checked. Why these crates (all candidates build on Rust 1.95, and all handle
//! size updates and Huffman):
//! - `loona-hpack` (the renamed `fluke-hpack`) is the best maintained, but its Huffman decoder builds a hash
//!   map of the whole code for every string and then does hash lookups per bit: on `http2.pcap` the engine ran
//!   at 0.58 MB/s with it (80 % of the time in Huffman decoding), against 2 orders of magnitude more with
//!   httlib's table. It also decodes a block as a whole, so after an unknown dynamic index the rest of the block
//!   would have to be re-walked anyway.
//! - `hpack` (0.3.0, 2015) is unmaintained and has the same Huffman decoder; `hpack-patched` is a one-off patch
//!   of it.
//! - `httlib-hpack` has the fast Huffman decoder and a public `Table`, but its `Decoder` indexes its input
//!   without bounds checks (`buf[0]` on a missing string literal): only its table is used, under our bounded
//!   walker, which also lets decoding resume field by field when the table becomes unknown mid-block.
//!
//! The dynamic table is only known when the connection was seen from its preface. When it is not (a capture
//! that starts mid-connection, a gap, a decoder error), the block is walked without it ([`hpack`]): static
//! entries and literal fields are decoded, fields that reference the dynamic table are unknown (the log field
//! stays null). A header is never guessed.
//!
//! # Validity and panics
//! The parser never panics and never indexes wire data unchecked. Frames are validated against RFC 9113 §6
//! (stream id and length rules); header blocks larger than [`crate::Limits::max_message_len`] are refused
//! (`TooLarge`, the direction then resynchronises like after a gap); DATA payloads are never buffered; at most
//! [`crate::Limits::max_exchanges_in_flight`] streams are tracked per connection (the oldest is evicted).
//!
//! # Framework notes
//! - The request message is emitted at the client's END_STREAM (so `captured_request_byte` counts its DATA),
//!   or earlier when the stream completes or is reset first, or at the close of the connection.
//! - Trace context: only `traceparent` and `x-request-id` are read, by a local helper
//!   (`fields::trace_context`), until a shared trace-context helper exists in the crate.

mod fields;
mod flow;
pub mod frame;
pub mod hpack;

pub use flow::Http2Flow;

use crate::{FlowParser, L7Parser, Limits, Probe, ProbeInput};
use fathom_model::{FlowKey, L7Protocol};
use frame::{chain_at, Chain, DEFAULT_MAX_FRAME_SIZE, PREFACE};

/// Bytes of the preface that make a probe certain ("PRI * HTTP/2.0\r\n").
const PREFACE_SURE: usize = 16;

/// The HTTP/2 (and gRPC) protocol: detection and per-connection parsers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http2Parser;

/// Cheap detection from the first payload of a flow (either direction). Never allocates.
///
/// - the client preface, or its first 16 bytes: `Yes`; a shorter prefix of it: `Maybe`;
/// - otherwise (a capture joined mid-connection) a chain of plausible frame headers from offset 0
///   ([`frame::chain_at`]): two complete frames give `Yes`, one frame filling the payload exactly `Maybe`.
pub fn probe(payload: &[u8]) -> Probe {
    if payload.is_empty() {
        return Probe::No;
    }
    let n = payload.len().min(PREFACE.len());
    if payload.get(..n) == PREFACE.get(..n) {
        return if n >= PREFACE_SURE {
            Probe::Yes
        } else {
            Probe::Maybe
        };
    }
    match chain_at(payload, DEFAULT_MAX_FRAME_SIZE) {
        Chain::Confirmed { frames } if frames >= 2 => Probe::Yes,
        Chain::Confirmed { .. } => Probe::Maybe,
        _ => Probe::No,
    }
}

impl L7Parser for Http2Parser {
    fn protocol(&self) -> L7Protocol {
        L7Protocol::Http2
    }

    fn default_ports(&self) -> &[u16] {
        &[50051]
    }

    fn probe(&self, input: &ProbeInput<'_>) -> Probe {
        probe(input.payload)
    }

    fn new_flow(&self, _flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser> {
        Box::new(Http2Flow::new(limits))
    }
}

#[cfg(test)]
mod tests;
