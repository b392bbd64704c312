//! pgdelta: PostgreSQL logical replication into Delta Lake tables with Change Data Feed,
//! exactly once.
//!
//! Data flows one way: [`source`] -> [`event`] -> [`pipeline`] -> [`sink`]. A source
//! (the PostgreSQL replication slot, or Debezium topics in Kafka) implements
//! [`source::ChangeSource`]; one [`pipeline::Pipeline`] batches its changes, writes each
//! table's batch as one Delta commit that records the source position, and only then
//! confirms the position to the source. [`observe`] (metrics, health) and [`quality`]
//! (validation) stand beside the flow, the CLI above it; [`config`] is a leaf.

pub mod config;
pub mod debezium;
pub mod event;
pub mod observe;
pub mod pipeline;
pub mod quality;
pub mod sink;
pub mod source;
