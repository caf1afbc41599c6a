//! The built-in parsers, in probe order.

use crate::L7Parser;
use std::sync::Arc;

/// Every built-in parser compiled in (see the `proto-*` features), in the order probes run.
#[allow(clippy::vec_init_then_push)]
pub fn builtin_parsers() -> Vec<Arc<dyn L7Parser>> {
    #[allow(unused_mut)]
    let mut parsers: Vec<Arc<dyn L7Parser>> = Vec::new();
    #[cfg(feature = "proto-http2")]
    parsers.push(Arc::new(crate::http2::Http2Parser));
    parsers
}
