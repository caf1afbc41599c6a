//! Limits on per-flow parser state. Hitting one is counted, never unbounded growth.

/// Caps on what one flow may hold. Passed explicitly; no globals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message head (or whole message, for protocols that need it buffered) in bytes.
    pub max_message_len: usize,
    /// Most headers / fields in one message.
    pub max_headers: usize,
    /// Most requests in flight (awaiting a response) per flow; older ones are evicted as timeouts.
    pub max_exchanges_in_flight: usize,
    /// Most bytes buffered per flow direction waiting for a message to complete.
    pub max_buffer_bytes: usize,
    /// Deepest nesting (RESP arrays, Hessian values, ...).
    pub max_depth: usize,
    /// Longest string kept in a log field (SQL text, resources); longer ones are truncated.
    pub max_field_len: usize,
    /// Capture-time age after which a pending request becomes a timeout log, in µs.
    pub request_timeout_us: u64,
    /// Consecutive parse errors after which a flow is re-probed.
    pub max_consecutive_errors: u32,
    /// Most bytes of one message kept per flow direction for message hooks (the message's first bytes; see
    /// [`crate::HookInput::bytes`]). Only flows some registered hook applies to keep any.
    pub max_hook_bytes: usize,
}

impl Limits {
    /// Default for [`Limits::max_message_len`].
    pub const DEFAULT_MAX_MESSAGE_LEN: usize = 64 * 1024;
    /// Default for [`Limits::max_headers`].
    pub const DEFAULT_MAX_HEADERS: usize = 96;
    /// Default for [`Limits::max_exchanges_in_flight`].
    pub const DEFAULT_MAX_EXCHANGES_IN_FLIGHT: usize = 256;
    /// Default for [`Limits::max_buffer_bytes`].
    pub const DEFAULT_MAX_BUFFER_BYTES: usize = 256 * 1024;
    /// Default for [`Limits::max_depth`].
    pub const DEFAULT_MAX_DEPTH: usize = 16;
    /// Default for [`Limits::max_field_len`].
    pub const DEFAULT_MAX_FIELD_LEN: usize = 1024;
    /// Default for [`Limits::request_timeout_us`]: 60 s.
    pub const DEFAULT_REQUEST_TIMEOUT_US: u64 = 60_000_000;
    /// Default for [`Limits::max_consecutive_errors`].
    pub const DEFAULT_MAX_CONSECUTIVE_ERRORS: u32 = 3;
    /// Default for [`Limits::max_hook_bytes`].
    pub const DEFAULT_MAX_HOOK_BYTES: usize = 4096;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_len: Self::DEFAULT_MAX_MESSAGE_LEN,
            max_headers: Self::DEFAULT_MAX_HEADERS,
            max_exchanges_in_flight: Self::DEFAULT_MAX_EXCHANGES_IN_FLIGHT,
            max_buffer_bytes: Self::DEFAULT_MAX_BUFFER_BYTES,
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_field_len: Self::DEFAULT_MAX_FIELD_LEN,
            request_timeout_us: Self::DEFAULT_REQUEST_TIMEOUT_US,
            max_consecutive_errors: Self::DEFAULT_MAX_CONSECUTIVE_ERRORS,
            max_hook_bytes: Self::DEFAULT_MAX_HOOK_BYTES,
        }
    }
}
