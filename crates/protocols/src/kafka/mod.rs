//! Kafka (placeholder).
