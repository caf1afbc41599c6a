//! The built-in parsers, in probe order.

use crate::L7Parser;
use std::sync::Arc;

/// Every built-in parser compiled in (see the `proto-*` features), in the order probes run.
///
/// Probes that recognise a strong signature (HTTP/2 preface, TLS record, Dubbo magic, MySQL greeting...) come
/// before the ones that recognise looser text (HTTP/1, Redis inline commands).
#[allow(clippy::vec_init_then_push)] // one cfg-gated push per protocol feature
pub fn builtin_parsers() -> Vec<Arc<dyn L7Parser>> {
    #[allow(unused_mut)]
    let mut parsers: Vec<Arc<dyn L7Parser>> = Vec::new();
    #[cfg(feature = "proto-http2")]
    parsers.push(Arc::new(crate::http2::Http2Parser));
    #[cfg(feature = "proto-tls")]
    parsers.push(Arc::new(crate::tls::TlsParser));
    #[cfg(feature = "proto-dubbo")]
    parsers.push(Arc::new(crate::dubbo::DubboParser));
    #[cfg(feature = "proto-dns")]
    parsers.push(Arc::new(crate::dns::DnsParser));
    #[cfg(feature = "proto-mysql")]
    parsers.push(Arc::new(crate::mysql::MysqlParser));
    #[cfg(feature = "proto-postgresql")]
    parsers.push(Arc::new(crate::postgresql::PostgresqlParser));
    #[cfg(feature = "proto-kafka")]
    parsers.push(Arc::new(crate::kafka::KafkaParser));
    #[cfg(feature = "proto-mqtt")]
    parsers.push(Arc::new(crate::mqtt::MqttParser));
    #[cfg(feature = "proto-http1")]
    parsers.push(Arc::new(crate::http1::Http1Parser::default()));
    #[cfg(feature = "proto-redis")]
    parsers.push(Arc::new(crate::redis::RedisParser));
    parsers
}
