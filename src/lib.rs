//! pgdelta: PostgreSQL logical replication into Delta Lake tables with Change Data Feed,
//! exactly once.
//!
//! Data flows one way: [`source`] -> [`event`] -> [`pipeline`] -> [`sink`]. A source
//! (the PostgreSQL replication slot, or Debezium topics in Kafka) implements
//! [`source::ChangeSource`] and yields the one [`event`] model; one [`pipeline::Pipeline`]
//! batches its changes, writes each table's batch as one Delta commit that records the source
//! position, and only then confirms the position to the source. [`debezium`] (the Debezium
//! connector's settings and the Kafka Connect REST client) serves Kafka mode's pipeline and
//! the CLI.
//!
//! Beside the flow: [`observe`] (metrics, health; the pipeline reports to it) and [`quality`]
//! (validation). Each reads the source and the Delta tables, neither imports the pipeline or
//! the other. [`config`] is a leaf that imports nothing from the crate; the CLI (the binary,
//! with `doctor`) stands above everything.

pub mod config;
pub mod debezium;
pub mod event;
pub mod observe;
pub mod pipeline;
pub mod quality;
pub mod sink;
pub mod source;
