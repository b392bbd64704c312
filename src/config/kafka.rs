//! `[pipelines.<name>.kafka]`: Kafka mode (Debezium change events from Kafka topics).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[pipelines.<name>.kafka]`: how the pipeline's changes travel through Kafka.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Debezium `topic.prefix`: topics are `<topic_prefix>.<schema>.<table>`. Defaults to the
    /// pipeline name with characters other than letters and digits as `_`.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// Kafka brokers, `host:port[,host:port]`, for the Kafka source (`mode = "kafka"`).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Consumer group of the Kafka source; defaults to `pgdelta-<pipeline>`.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Topics to read; defaults to `<topic_prefix>.<schema>.<table>` of every table.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A regular expression of topics to read instead of `topics`.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    /// librdkafka consumer properties, e.g. `"fetch.min.bytes" = "65536"`.
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// Kafka Connect REST endpoint, e.g. `http://localhost:8083`.
    #[serde(default)]
    pub connect_url: Option<String>,
    /// Name of the connector in Kafka Connect; defaults to `pgdelta-<pipeline>`.
    #[serde(default)]
    pub connector_name: Option<String>,
    /// Flatten events with Debezium's `ExtractNewRecordState` transform.
    #[serde(default)]
    pub unwrap: bool,
    /// Whether the JSON converters embed schemas (`schemas.enable`); defaults to true.
    #[serde(default)]
    pub schemas: Option<bool>,
    /// Debezium `snapshot.mode`; defaults to `initial`.
    #[serde(default)]
    pub snapshot_mode: Option<String>,
    /// Debezium `heartbeat.interval.ms`; defaults to 10000, 0 turns heartbeats off.
    #[serde(default)]
    pub heartbeat_interval_ms: Option<u64>,
}
