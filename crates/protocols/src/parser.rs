//! The parser trait every protocol (and every WASM plugin) implements.
//!
//! A protocol is two objects:
//! - an [`L7Parser`]: stateless, shared, registered once. Its [`L7Parser::probe`] looks at the first payload
//!   of a flow and says whether the flow speaks this protocol. It must be cheap and must not allocate.
//! - a [`FlowParser`], made by [`L7Parser::new_flow`] for each flow the probe won: it holds the per-flow state
//!   (both directions), consumes whole messages from the byte stream and emits [`Message`]s. "Need more bytes"
//!   is not an error: `parse` simply consumes less than it was given and the session calls it again with the
//!   rest plus the next bytes.
//!
//! Pairing requests with responses is not the parser's job: it tags each message with a [`Correlation`]
//! and the session's [`crate::ExchangeTable`] pairs them.

use crate::{Limits, Message, ParseError};
use fathom_model::{Direction, FlowKey, L7Protocol, TimestampUs};

/// The verdict of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    /// Certainly not this protocol.
    No,
    /// Could be this protocol; not enough evidence (ports break ties between `Maybe`s).
    Maybe,
    /// Certainly this protocol.
    Yes,
}

/// What a probe sees.
#[derive(Debug, Clone, Copy)]
pub struct ProbeInput<'a> {
    /// The first payload bytes seen in `direction` (possibly only part of a message).
    pub payload: &'a [u8],
    /// Which way `payload` travels.
    pub direction: Direction,
    /// The flow (oriented client → server as capture guessed it).
    pub flow: &'a FlowKey,
}

/// Per-call context for [`FlowParser::parse`].
#[derive(Debug, Clone, Copy)]
pub struct ParseCtx<'a> {
    /// Which way the bytes travel.
    pub direction: Direction,
    /// The flow.
    pub flow: &'a FlowKey,
    /// Absolute stream offset (bytes since the start of this direction, gaps included) of `data[0]`.
    /// Messages report their start and end as absolute offsets; the session maps them to times and TCP
    /// sequence numbers.
    pub stream_offset: u64,
    /// Capture time of the newest bytes in `data`.
    pub time_us: TimestampUs,
    /// The limits in force.
    pub limits: &'a Limits,
    /// True for datagram transports: `data` is exactly one datagram.
    pub datagram: bool,
}

impl ParseCtx<'_> {
    /// Absolute stream offset of `data[i]`.
    pub fn pos(&self, i: usize) -> u64 {
        self.stream_offset + i as u64
    }
}

/// A registered protocol: detection and per-flow parser construction. Object safe.
pub trait L7Parser: Send + Sync {
    /// The protocol this parser owns (a parser may still label individual messages with another one, as the
    /// HTTP/2 parser does for gRPC, through [`crate::LogInfo::protocol`]).
    fn protocol(&self) -> L7Protocol;

    /// Well-known server ports: used only to break ties between `Maybe` probes and to orient flows without
    /// a handshake. Never a reason to claim a flow on its own.
    fn default_ports(&self) -> &[u16] {
        &[]
    }

    /// Whether the protocol runs over TCP, UDP or both.
    fn transports(&self) -> Transports {
        Transports::Tcp
    }

    /// Cheap detection from the first payload of a flow. Must not allocate or panic on any input.
    fn probe(&self, input: &ProbeInput<'_>) -> Probe;

    /// New per-flow state for a flow this parser won.
    fn new_flow(&self, flow: &FlowKey, limits: &Limits) -> Box<dyn FlowParser>;
}

/// Which transports a protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// Both.
    Both,
}

impl Transports {
    /// True when `l4` is one of these transports.
    pub fn allows(self, l4: fathom_model::L4Protocol) -> bool {
        use fathom_model::L4Protocol::*;
        matches!(
            (self, l4),
            (Transports::Both, _) | (Transports::Tcp, Tcp) | (Transports::Udp, Udp)
        )
    }
}

/// Per-flow parser state. Object safe.
pub trait FlowParser: Send {
    /// Consume as many whole messages from `data` as possible, pushing them to `out`, and return how many
    /// bytes were consumed. Bytes not consumed are handed back, with more appended, on the next call in the
    /// same direction. A parser may consume the body of a large message without buffering it (keeping "skip N
    /// bytes" state) and emit the message when its last byte passes.
    ///
    /// # Errors
    /// [`ParseError`] when the bytes cannot be this protocol at this point (the session counts it, drops the
    /// unconsumed bytes of that direction, calls [`FlowParser::on_gap`], and after repeated errors re-probes the
    /// flow). Never for "need more bytes".
    fn parse(
        &mut self,
        data: &[u8],
        ctx: &ParseCtx<'_>,
        out: &mut Vec<Message>,
    ) -> Result<usize, ParseError>;

    /// `lost` bytes were never seen in `direction` (a capture gap, or bytes dropped after an error): forget
    /// partial message state for that direction and resynchronise on the next message boundary. The next
    /// `parse` in that direction may start anywhere inside a message and must not emit garbage.
    fn on_gap(&mut self, direction: Direction, lost: u64);

    /// Called when the flow ends, to flush messages that end with the connection (e.g. an HTTP/1 body read to
    /// close). `end_offsets` are the absolute stream offsets reached in each direction.
    fn on_close(&mut self, _end_offsets: [u64; 2], _out: &mut Vec<Message>) {}
}
