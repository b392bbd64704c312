//! pgdelta: PostgreSQL logical replication into Delta Lake tables with Change Data Feed,
//! exactly once.
//!
//! Data flows one way: [`source`] -> [`event`] -> [`pipeline`] -> [`sink`].

pub mod config;
pub mod debezium;
pub mod event;
pub mod observe;
pub mod pipeline;
pub mod quality;
pub mod sink;
pub mod source;
