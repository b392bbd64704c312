//! Debezium topics as a [`ChangeSource`]: one change per record, rewound after a
//! rebalance, offsets committed to the group once they are in Delta.
//!
//! Exactly once does not rest on the group's offsets: every Delta commit records, per
//! topic-partition, the next offset its table holds, and the pipeline skips records below
//! it. The group's offsets are for lag tools.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::{KafkaSettings, KafkaSource, KafkaSourceError, SourceRecord, TopicPartition};
use crate::event::debezium::{DebeziumError, DebeziumParser, DebeziumRecord, Problem};
use crate::event::{Origin, TableName, TableSchema, Transaction};
use crate::source::postgres::{introspect_table, ConnectionSettings};
use crate::source::{ChangeSource, Progress, SourceItem};

/// How often the source looks at broker health and catch-up while no record arrives.
const TICK: Duration = Duration::from_millis(250);

/// What the Kafka source needs besides the consumer settings.
pub struct KafkaSourceSettings {
    pub consumer: KafkaSettings,
    /// To read a table's columns again when events bring new ones.
    pub postgres: ConnectionSettings,
    /// Each replicated table's key columns.
    pub keys: HashMap<TableName, Vec<String>>,
    pub exit_when_caught_up: bool,
}

/// A consumer-group member turning Debezium records into changes.
pub struct KafkaChangeSource {
    consumer: KafkaSource,
    parser: DebeziumParser,
    postgres: ConnectionSettings,
    keys: HashMap<TableName, Vec<String>>,
    exit_when_caught_up: bool,
    revocations: u64,
    /// A record read but not handed over yet (kept across a cancelled call).
    pending: Option<SourceRecord>,
    /// Per partition: the first offset delivered and not confirmed yet, and the next offset
    /// after the last one delivered.
    unconfirmed: BTreeMap<TopicPartition, i64>,
    delivered: BTreeMap<TopicPartition, i64>,
    queue: VecDeque<SourceItem>,
    up: Option<bool>,
    tick: tokio::time::Interval,
}

impl KafkaChangeSource {
    /// Subscribes; `tables` are the replicated tables' columns (from PostgreSQL), used to
    /// decode events that carry no schema.
    pub fn connect(
        settings: KafkaSourceSettings,
        tables: impl IntoIterator<Item = Arc<TableSchema>>,
    ) -> Result<Self, KafkaSourceError> {
        let consumer = KafkaSource::connect(&settings.consumer)?;
        let parser = tables
            .into_iter()
            .fold(DebeziumParser::new(), DebeziumParser::with_table);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(KafkaChangeSource {
            revocations: consumer.revocations(),
            consumer,
            parser,
            postgres: settings.postgres,
            keys: settings.keys,
            exit_when_caught_up: settings.exit_when_caught_up,
            pending: None,
            unconfirmed: BTreeMap::new(),
            delivered: BTreeMap::new(),
            queue: VecDeque::new(),
            up: None,
            tick,
        })
    }

    /// Turns the pending record into an item; on an event with a column the table did not
    /// have, the table's columns are read from PostgreSQL again first.
    async fn deliver_pending(&mut self) -> Result<SourceItem, KafkaSourceError> {
        let record = self.pending.as_ref().expect("called with a pending record");
        let mut parsed = parse(&mut self.parser, record);
        if let Err(DebeziumError {
            problem: Problem::UnknownColumn { table, .. },
            ..
        }) = &parsed
        {
            if let Some(key) = self.keys.get(table) {
                let table = table.clone();
                let key = key.clone();
                self.refresh_columns(&table, &key).await?;
                let record = self.pending.as_ref().expect("still pending");
                parsed = parse(&mut self.parser, record);
            }
        }
        let record = self.pending.take().expect("still pending");
        self.note_delivered(&record);
        let origin = Origin::Record(record);
        Ok(match parsed {
            Ok(Some(event)) => SourceItem::Changes {
                transaction: Transaction {
                    xid: event.metadata.tx_id,
                    end_lsn: event.metadata.lsn,
                    commit_timestamp: event.commit_timestamp,
                    events: vec![event],
                },
                origin,
            },
            Ok(None) => SourceItem::Skipped(origin),
            Err(error) => SourceItem::Malformed {
                origin,
                table: None,
                reason: error.to_string(),
            },
        })
    }

    async fn refresh_columns(
        &mut self,
        table: &TableName,
        key: &[String],
    ) -> Result<(), KafkaSourceError> {
        let client = self.postgres.connect().await?;
        let described = introspect_table(&client, table).await?;
        tracing::info!(%table, "events carry new columns: read the table's columns again");
        self.parser.register(Arc::new(TableSchema {
            table: described.name.clone(),
            columns: described.column_schemas(key),
        }));
        Ok(())
    }

    fn note_delivered(&mut self, record: &SourceRecord) {
        let partition = record.topic_partition();
        self.unconfirmed
            .entry(partition.clone())
            .or_insert(record.offset);
        self.delivered.insert(partition, record.offset + 1);
    }

    /// Whether partitions were revoked since this was last asked: records delivered before
    /// may now be read by another member.
    fn revoked(&mut self) -> bool {
        let revocations = self.consumer.revocations();
        if revocations == self.revocations {
            return false;
        }
        self.revocations = revocations;
        tracing::info!("rebalance: records not yet in Delta are read again");
        true
    }

    /// Reads again what was delivered since the last confirm, in the partitions still
    /// assigned (a revoked one may now be read by another member); a record read but not
    /// handed over is dropped when its partition is read again.
    fn read_unconfirmed_again(&mut self) {
        let mut rewound = BTreeSet::new();
        for (partition, first) in std::mem::take(&mut self.unconfirmed) {
            if self.consumer.seek(&partition, first).is_ok() {
                rewound.insert(partition);
            }
        }
        self.delivered.clear();
        if let Some(record) = &self.pending {
            if rewound.contains(&record.topic_partition()) {
                self.pending = None;
            }
        }
    }

    /// `Down` when the client reports trouble, `Up` when it is gone again.
    fn health_change(&mut self) -> Option<SourceItem> {
        match (self.consumer.last_error(), self.up) {
            (Some(error), Some(true)) => {
                self.up = Some(false);
                Some(SourceItem::Down(error))
            }
            (None, Some(false)) => {
                self.up = Some(true);
                Some(SourceItem::Up)
            }
            _ => None,
        }
    }

    fn caught_up(&self) -> bool {
        self.unconfirmed.is_empty()
            && tokio::task::block_in_place(|| self.consumer.caught_up().unwrap_or(false))
    }
}

fn parse(
    parser: &mut DebeziumParser,
    record: &SourceRecord,
) -> Result<Option<crate::event::ChangeEvent>, DebeziumError> {
    parser.parse(&DebeziumRecord {
        topic: Some(&record.topic),
        partition: Some(record.partition),
        offset: Some(record.offset),
        key: record.key.as_deref(),
        value: record.value.as_deref(),
    })
}

#[async_trait::async_trait]
impl ChangeSource for KafkaChangeSource {
    type Error = KafkaSourceError;

    async fn next(&mut self) -> Result<SourceItem, KafkaSourceError> {
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Ok(item);
            }
            if self.up.is_none() {
                self.up = Some(true);
                return Ok(SourceItem::Up);
            }
            if self.pending.is_some() {
                return self.deliver_pending().await;
            }
            tokio::select! {
                record = self.consumer.next() => {
                    self.pending = Some(record?);
                    if self.revoked() {
                        self.read_unconfirmed_again();
                        return Ok(SourceItem::Rewound);
                    }
                }
                _ = self.tick.tick() => {
                    // Revoked with no record since: the batch must not wait for one.
                    if self.revoked() {
                        self.read_unconfirmed_again();
                        return Ok(SourceItem::Rewound);
                    }
                    if let Some(item) = self.health_change() {
                        return Ok(item);
                    }
                    if self.exit_when_caught_up && self.caught_up() {
                        tracing::info!("caught up with every assigned partition");
                        return Ok(SourceItem::CaughtUp);
                    }
                }
            }
        }
    }

    fn confirm(&mut self, progress: &Progress) {
        if let Err(error) = self.consumer.commit(&progress.next_offsets) {
            tracing::warn!(%error, "offsets are in Delta but not in the consumer group yet");
        }
        for (partition, next) in &progress.next_offsets {
            let beyond = self.delivered.get(partition).is_some_and(|d| d > next);
            match beyond {
                true => {
                    self.unconfirmed.insert(partition.clone(), *next);
                }
                false => {
                    self.unconfirmed.remove(partition);
                }
            }
        }
    }

    fn check_resume(
        &self,
        table: &TableName,
        partition: &TopicPartition,
        next_offset: i64,
    ) -> Result<(), KafkaSourceError> {
        let high = tokio::task::block_in_place(|| self.consumer.high_watermark(partition))
            .map_err(|source| KafkaSourceError::Watermark {
                partition: partition.clone(),
                source,
            })?;
        if high >= next_offset {
            return Ok(());
        }
        Err(KafkaSourceError::TopicRecreated {
            partition: partition.clone(),
            table: table.clone(),
            high,
            next: next_offset,
        })
    }

    async fn rewind(&mut self) -> Result<(), KafkaSourceError> {
        self.read_unconfirmed_again();
        Ok(())
    }

    async fn close(self) {}
}
