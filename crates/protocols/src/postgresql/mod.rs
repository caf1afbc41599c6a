//! PostgreSQL (placeholder).
