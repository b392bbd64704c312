//! Debezium change events from Kafka topics, read with a consumer group (crate `rdkafka`).
//!
//! The source only reads; where to resume comes from the Delta tables (their txn actions hold
//! the next offset of every topic-partition they were fed from), and offsets are committed to
//! the group after each Delta commit so that lag tools see progress.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

pub use crate::event::{SourceRecord, TopicPartition};

mod changes;
pub use changes::{KafkaChangeSource, KafkaSourceSettings};

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("Kafka consumer for {servers}: {source}")]
    Create {
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot subscribe to {subscription}: {source}")]
    Subscribe {
        subscription: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka consumer stopped: {0}")]
    Fatal(#[source] KafkaError),
    #[error("cannot commit offsets to consumer group {group}: {source}")]
    Commit {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot read the end offset of {partition}: {source}")]
    Watermark {
        partition: TopicPartition,
        #[source]
        source: KafkaError,
    },
    #[error(
        "{partition} ends at offset {high}, but the Delta table of {table} already holds its records up to offset {next}: \
         the topic was deleted and created again, or truncated, so its offsets now mean other records. \
         Recreate the Delta table (and re-snapshot with Debezium), or point the pipeline at the right topic"
    )]
    TopicRecreated {
        partition: TopicPartition,
        table: crate::event::TableName,
        high: i64,
        next: i64,
    },
    /// Reading a table's columns again when events bring new ones.
    #[error(transparent)]
    Postgres(#[from] crate::source::postgres::SourceError),
}

/// What to subscribe to: topic names, or one regular expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    Topics(Vec<String>),
    Pattern(String),
}

impl Subscription {
    fn names(&self) -> Vec<String> {
        match self {
            Subscription::Topics(topics) => topics.clone(),
            // librdkafka takes a subscription starting with '^' as a regular expression.
            Subscription::Pattern(pattern) if pattern.starts_with('^') => vec![pattern.clone()],
            Subscription::Pattern(pattern) => vec![format!("^{pattern}")],
        }
    }
}

impl std::fmt::Display for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subscription::Topics(topics) => write!(f, "topics {}", topics.join(", ")),
            Subscription::Pattern(pattern) => write!(f, "topic pattern {pattern}"),
        }
    }
}

/// How to reach the brokers and which records to read.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub subscription: Subscription,
    /// librdkafka consumer properties (`fetch.min.bytes`, `security.protocol`, ...); they
    /// override pgdelta's defaults except `enable.auto.commit`, which stays off.
    pub properties: BTreeMap<String, String>,
}

/// Notices rebalances and broker trouble for the pipeline, which cannot see into the poll loop.
#[derive(Default)]
pub struct SourceContext {
    /// Bumped whenever partitions are revoked: records read before then may be re-delivered.
    revocations: AtomicU64,
    /// How many times the group assigned partitions (possibly none) to this member.
    assignments: AtomicU64,
    /// Partitions were revoked and the group has not assigned again yet.
    rebalancing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl SourceContext {
    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        *self.last_error() = Some(format!("{error}: {reason}"));
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => {
                tracing::warn!(facility = fac, "{log_message}")
            }
            _ => tracing::debug!(facility = fac, "{log_message}"),
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(partitions) => {
                self.rebalancing.store(true, Ordering::SeqCst);
                self.revocations.fetch_add(1, Ordering::SeqCst);
                tracing::info!(partitions = partitions.count(), "partitions revoked");
            }
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions assigned");
            }
            Rebalance::Error(error) => {
                self.rebalancing.store(true, Ordering::SeqCst);
                tracing::warn!(%error, "rebalance failed");
            }
        }
    }

    // Counted once librdkafka has applied the assignment: before that the member's
    // assignment is still empty, which must not read as "the group gave it nothing".
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.assignments.fetch_add(1, Ordering::SeqCst);
            self.rebalancing.store(false, Ordering::SeqCst);
        }
    }
}

/// A consumer-group member reading Debezium topics.
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
    group_id: String,
    subscription: Subscription,
}

impl KafkaSource {
    /// Creates the consumer and subscribes; the brokers are contacted in the background.
    pub fn connect(settings: &KafkaSettings) -> Result<KafkaSource, KafkaSourceError> {
        let consumer: StreamConsumer<SourceContext> = client_config(settings)
            .create_with_context(SourceContext::default())
            .map_err(|source| KafkaSourceError::Create {
                servers: settings.bootstrap_servers.clone(),
                source,
            })?;
        let names = settings.subscription.names();
        let topics: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaSourceError::Subscribe {
                subscription: settings.subscription.to_string(),
                source,
            })?;
        tracing::info!(group = %settings.group_id, subscription = %settings.subscription, "subscribed");
        Ok(KafkaSource {
            consumer,
            group_id: settings.group_id.clone(),
            subscription: settings.subscription.clone(),
        })
    }

    /// The next record. Broker outages are retried inside the client; only fatal client
    /// errors end the source.
    pub async fn next(&self) -> Result<SourceRecord, KafkaSourceError> {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    self.clear_error();
                    return Ok(SourceRecord {
                        topic: message.topic().to_string(),
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                    });
                }
                Err(error) if is_fatal(&error) => return Err(KafkaSourceError::Fatal(error)),
                Err(error) => {
                    let message = error.to_string();
                    if self.last_error().as_deref() != Some(message.as_str()) {
                        tracing::warn!(%error, "Kafka consumer error; retrying");
                    }
                    self.remember_error(message);
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// How many times partitions were revoked so far.
    pub fn revocations(&self) -> u64 {
        self.consumer.context().revocations.load(Ordering::SeqCst)
    }

    /// The last client error since a record was last received, e.g. "all brokers down".
    pub fn last_error(&self) -> Option<String> {
        self.consumer.context().last_error().clone()
    }

    /// Commits `next_offsets` (the offset of the next record to read, per partition) to the
    /// consumer group. Only for lag tools: where pgdelta resumes comes from Delta.
    pub fn commit(
        &self,
        next_offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), KafkaSourceError> {
        if next_offsets.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for (tp, offset) in next_offsets {
            list.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
                .map_err(|source| self.commit_error(source))?;
        }
        self.consumer
            .commit(&list, CommitMode::Async)
            .map_err(|source| self.commit_error(source))
    }

    /// Starts reading `partition` at `offset` (used to skip what Delta already holds).
    pub fn seek(&self, tp: &TopicPartition, offset: i64) -> Result<(), KafkaError> {
        self.consumer.seek(
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            std::time::Duration::from_secs(5),
        )
    }

    /// The offset after the last record of `tp` on the broker.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Result<i64, KafkaError> {
        let timeout = std::time::Duration::from_secs(10);
        let (_, high) = self
            .consumer
            .fetch_watermarks(&tp.topic, tp.partition, timeout)?;
        Ok(high)
    }

    /// Whether every assigned partition has been read to its end (its high watermark).
    pub fn caught_up(&self) -> Result<bool, KafkaError> {
        let timeout = std::time::Duration::from_secs(5);
        let assignment = self.consumer.assignment()?;
        if assignment.count() == 0 {
            return self.nothing_to_read();
        }
        let positions = self.consumer.position()?;
        let committed = self.consumer.committed_offsets(assignment, timeout)?;
        for element in positions.elements() {
            let (low, high) =
                self.consumer
                    .fetch_watermarks(element.topic(), element.partition(), timeout)?;
            if high <= low {
                continue;
            }
            let read = match element.offset() {
                Offset::Offset(position) => Some(position),
                _ => committed
                    .find_partition(element.topic(), element.partition())
                    .and_then(|c| match c.offset() {
                        Offset::Offset(offset) => Some(offset),
                        _ => None,
                    }),
            };
            if read.is_none_or(|read| read < high) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// With no partitions assigned: whether that is because there is nothing to read (the
    /// group assigned none, or none of the named topics exist yet).
    fn nothing_to_read(&self) -> Result<bool, KafkaError> {
        let context = self.consumer.context();
        if context.assignments.load(Ordering::SeqCst) > 0 {
            // Between a revocation and the group's next assignment a member holds nothing
            // only for the moment: a member that stopped then would leave the partitions
            // the group is about to give it unread.
            return Ok(!context.rebalancing.load(Ordering::SeqCst));
        }
        let Subscription::Topics(topics) = &self.subscription else {
            return Ok(false);
        };
        let metadata = self
            .consumer
            .fetch_metadata(None, std::time::Duration::from_secs(10))?;
        let exists = |name: &str| {
            metadata
                .topics()
                .iter()
                .any(|t| t.name() == name && t.error().is_none())
        };
        if topics.iter().any(|t| exists(t)) {
            return Ok(false);
        }
        tracing::warn!(topics = %topics.join(", "), "none of the subscribed topics exist yet: nothing to read");
        Ok(true)
    }

    fn commit_error(&self, source: KafkaError) -> KafkaSourceError {
        KafkaSourceError::Commit {
            group: self.group_id.clone(),
            source,
        }
    }

    fn clear_error(&self) {
        *self.consumer.context().last_error() = None;
    }

    fn remember_error(&self, error: String) {
        *self.consumer.context().last_error() = Some(error);
    }
}

fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", &settings.group_id)
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("session.timeout.ms", "10000")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    // Offsets are committed only after the Delta commit that holds the records.
    config
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    config
}

fn is_fatal(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode;
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fatal | RDKafkaErrorCode::InvalidArgument)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_librdkafka_regular_expressions() {
        let pattern = Subscription::Pattern("shop\\.public\\..*".into());
        assert_eq!(pattern.names(), vec!["^shop\\.public\\..*"]);
        let anchored = Subscription::Pattern("^x".into());
        assert_eq!(anchored.names(), vec!["^x"]);
        let topics = Subscription::Topics(vec!["a.b.c".into()]);
        assert_eq!(topics.names(), vec!["a.b.c"]);
    }

    #[test]
    fn auto_commit_stays_off_whatever_the_properties_say() {
        let settings = KafkaSettings {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_id: "g".into(),
            subscription: Subscription::Topics(vec!["t".into()]),
            properties: BTreeMap::from([
                ("enable.auto.commit".to_string(), "true".to_string()),
                ("fetch.min.bytes".to_string(), "1024".to_string()),
            ]),
        };
        let config = client_config(&settings);
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("fetch.min.bytes"), Some("1024"));
    }
}
