//! Kafka mode with Debezium: the connector configuration for a pipeline and the Kafka Connect
//! REST API to manage it. Debezium's events themselves are parsed by
//! [`crate::event::debezium`].

pub mod connect;
pub mod connector;
