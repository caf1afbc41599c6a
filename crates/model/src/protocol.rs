//! Application protocols.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// An application (L7) protocol: the built-in ones, or a plugin's own name.
///
/// Serialized as its lowercase name (`http1`, `grpc`, ...). Names are produced by [`L7Protocol::as_str`] and read
/// back by [`L7Protocol::from_name`], which accepts exactly those names (no aliases); any other name is a
/// [`L7Protocol::Custom`] protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L7Protocol {
    /// HTTP/1.0 and HTTP/1.1.
    Http1,
    /// HTTP/2 (not gRPC).
    Http2,
    /// gRPC over HTTP/2.
    Grpc,
    /// DNS over UDP or TCP.
    Dns,
    /// TLS handshakes.
    Tls,
    /// MySQL / MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgresql,
    /// Redis (RESP2/RESP3).
    Redis,
    /// Apache Kafka.
    Kafka,
    /// MQTT 3.1, 3.1.1 and 5.
    Mqtt,
    /// Dubbo 2.
    Dubbo,
    /// A protocol parsed by a plugin, by the plugin's name.
    Custom(Arc<str>),
}

impl L7Protocol {
    /// Every built-in protocol, in a stable order.
    pub const BUILTIN: [L7Protocol; 11] = [
        L7Protocol::Http1,
        L7Protocol::Http2,
        L7Protocol::Grpc,
        L7Protocol::Dns,
        L7Protocol::Tls,
        L7Protocol::Mysql,
        L7Protocol::Postgresql,
        L7Protocol::Redis,
        L7Protocol::Kafka,
        L7Protocol::Mqtt,
        L7Protocol::Dubbo,
    ];

    /// The contract's lowercase name.
    pub fn as_str(&self) -> &str {
        match self {
            L7Protocol::Http1 => "http1",
            L7Protocol::Http2 => "http2",
            L7Protocol::Grpc => "grpc",
            L7Protocol::Dns => "dns",
            L7Protocol::Tls => "tls",
            L7Protocol::Mysql => "mysql",
            L7Protocol::Postgresql => "postgresql",
            L7Protocol::Redis => "redis",
            L7Protocol::Kafka => "kafka",
            L7Protocol::Mqtt => "mqtt",
            L7Protocol::Dubbo => "dubbo",
            L7Protocol::Custom(name) => name,
        }
    }

    /// The protocol with this exact name; unknown names are [`L7Protocol::Custom`].
    pub fn from_name(name: &str) -> L7Protocol {
        L7Protocol::BUILTIN
            .iter()
            .find(|p| p.as_str() == name)
            .cloned()
            .unwrap_or_else(|| L7Protocol::Custom(Arc::from(name)))
    }
}

impl fmt::Display for L7Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for L7Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for L7Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(L7Protocol::from_name(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in L7Protocol::BUILTIN {
            assert_eq!(L7Protocol::from_name(p.as_str()), p);
        }
        assert_eq!(
            L7Protocol::from_name("HTTP1"),
            L7Protocol::Custom("HTTP1".into())
        );
    }
}
