//! Kafka mode: Debezium change events from Kafka topics -> batches -> Delta tables.
//!
//! Exactly once: every Delta commit records, in txn actions, the next offset of each
//! topic-partition that fed the table. A record is applied only when its offset is at or past
//! what the table holds, so a restart (or a rebalance) that re-reads records never applies one
//! twice, and offsets are committed to the consumer group only after the Delta commits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, ErrorPolicy, ResolvedPipeline};
use crate::debezium::connector::{consumer_group, kafka_settings, table_topic, topic_prefix};
use crate::event::debezium::{DebeziumError, DebeziumParser, DebeziumRecord, Problem};
use crate::event::{ChangeEvent, Lsn, TableName};
use crate::observe::{Observer, TransactionCounts};
use crate::sink::delta::{DeltaTableWriter, KafkaOffset, TableChanges};
use crate::source::kafka::{KafkaRecord, KafkaSettings, KafkaSource, Subscription, TopicPartition};

use super::dead_letter::{DeadLetter, RecordPosition};
use super::{
    add_columns, apply_or_dead_letter, describe_tables, open_writers, plan_evolution, run_result,
    source_schema, table_keys, write_dead_letters, Evolution, PipelineError, RunOptions,
    RunSummary, SourcePosition,
};

/// How often the loop looks at batch deadlines, broker health and catch-up while idle.
const TICK: Duration = Duration::from_millis(250);

/// A prepared Kafka-mode pipeline: Delta tables open, parser knows the source tables.
pub struct KafkaPipeline {
    resolved: ResolvedPipeline,
    settings: KafkaSettings,
    /// To read a table's columns again when events bring new ones.
    postgres: crate::source::postgres::ConnectionSettings,
    keys: HashMap<TableName, Vec<String>>,
    parser: DebeziumParser,
    writers: HashMap<TableName, DeltaTableWriter>,
    stopped: HashMap<TableName, String>,
    /// Per table and topic-partition: the next offset the Delta table does not hold yet.
    applied: HashMap<(TableName, TopicPartition), Option<i64>>,
    warned_tables: HashSet<TableName>,
    observer: Arc<Observer>,
    summary: RunSummary,
}

/// Records read but not yet in Delta.
#[derive(Default)]
struct KafkaBatch {
    tables: BTreeMap<TableName, TableChanges>,
    /// Per table, the next offset of each topic-partition whose records it took.
    offsets: BTreeMap<TableName, BTreeMap<TopicPartition, i64>>,
    /// Per table, the newest Debezium source LSN.
    lsns: BTreeMap<TableName, Lsn>,
    /// Per topic-partition: the first offset read in this batch and the next one to read.
    first: BTreeMap<TopicPartition, i64>,
    consumed: BTreeMap<TopicPartition, i64>,
    events: usize,
    started: Option<Instant>,
}

impl KafkaBatch {
    fn note_read(&mut self, record: &KafkaRecord) {
        let tp = record.topic_partition();
        self.started.get_or_insert_with(Instant::now);
        self.first.entry(tp.clone()).or_insert(record.offset);
        self.consumed.insert(tp, record.offset + 1);
    }

    fn is_due(&self, interval: Duration) -> bool {
        self.started.is_some_and(|at| at.elapsed() >= interval)
    }
}

impl KafkaPipeline {
    /// Reads the source tables' columns and keys from PostgreSQL (to create the Delta tables
    /// and to decode events without schemas), and opens the Delta tables.
    pub async fn prepare(config: &Config, name: &str) -> Result<KafkaPipeline, PipelineError> {
        let resolved = config.pipeline(name)?;
        let settings = kafka_source_settings(config, &resolved);
        let postgres = crate::source::postgres::ConnectionSettings::from_config(config)?;
        let client = postgres.connect().await?;
        let sources = describe_tables(&client, &resolved).await?;
        let keys = table_keys(&resolved, &sources);
        for (table, source) in resolved.tables.iter().zip(&sources) {
            if keys[&table.name].is_empty() {
                return Err(PipelineError::Setup {
                    pipeline: name.to_string(),
                    message: format!(
                        "{} has no primary key: set key = [...] in [pipelines.{name}.table.\"{}\"]",
                        source.name, table.name
                    ),
                });
            }
        }
        let (writers, stopped) = open_writers(&resolved, &sources, &keys).await?;
        let parser = sources
            .iter()
            .fold(DebeziumParser::new(), |parser, source| {
                parser.with_table(Arc::new(source_schema(source, &keys[&source.name])))
            });
        Ok(KafkaPipeline {
            observer: Arc::new(Observer::new(&resolved)),
            resolved,
            settings,
            postgres,
            keys,
            parser,
            writers,
            stopped,
            applied: HashMap::new(),
            warned_tables: HashSet::new(),
            summary: RunSummary::default(),
        })
    }

    pub fn with_observer(mut self, observer: Arc<Observer>) -> KafkaPipeline {
        observer.sink_opened();
        self.observer = observer;
        self
    }

    /// Consumes until `shutdown` completes (or, with `exit_when_caught_up`, until every
    /// assigned partition is read to its end).
    pub async fn run(
        mut self,
        options: RunOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, PipelineError> {
        tokio::pin!(shutdown);
        let source = KafkaSource::connect(&self.settings).map_err(|e| self.setup_error(e))?;
        let mut revocations = source.revocations();
        let mut batch = KafkaBatch::default();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                record = source.next() => {
                    let record = record.map_err(|e| self.setup_error(e))?;
                    if source.revocations() != revocations {
                        revocations = source.revocations();
                        if self.rewind_after_rebalance(&source, &mut batch, &record).await? {
                            continue;
                        }
                    }
                    self.add_record(&mut batch, record, &source).await?;
                    if batch.events >= self.resolved.batch_size {
                        self.flush(&mut batch, &source).await?;
                    }
                }
                _ = tick.tick() => {
                    self.report_source_health(&source);
                    if batch.is_due(self.resolved.batch_interval) {
                        self.flush(&mut batch, &source).await?;
                    }
                    if options.exit_when_caught_up && batch.started.is_none() && caught_up(&source) {
                        tracing::info!("caught up with every assigned partition");
                        return self.finish();
                    }
                }
                _ = shutdown.as_mut() => {
                    tracing::info!("stopping: writing the current batch first");
                    self.flush(&mut batch, &source).await?;
                    return self.finish();
                }
            }
        }
    }

    fn finish(self) -> Result<RunSummary, PipelineError> {
        run_result(self.summary, &self.stopped, self.resolved.name)
    }

    fn setup_error(&self, error: impl std::fmt::Display) -> PipelineError {
        self.observer.source_lost(&error);
        PipelineError::Setup {
            pipeline: self.resolved.name.clone(),
            message: error.to_string(),
        }
    }

    fn report_source_health(&self, source: &KafkaSource) {
        match source.last_error() {
            Some(error) => self.observer.source_lost(&error),
            None => self.observer.source_connected(),
        }
    }

    /// Partitions were revoked: what the batch holds may now be read by another member, so it
    /// is dropped, and the partitions still ours are read again from the batch's start.
    /// Returns whether `record` was dropped with it (it will be read again).
    async fn rewind_after_rebalance(
        &mut self,
        source: &KafkaSource,
        batch: &mut KafkaBatch,
        record: &KafkaRecord,
    ) -> Result<bool, PipelineError> {
        let dropped = std::mem::take(batch);
        tracing::info!(
            events = dropped.events,
            "rebalance: dropping the unwritten batch; its records are read again"
        );
        self.applied.clear();
        for writer in self.writers.values_mut() {
            writer.reload().await?;
        }
        let mut record_rewound = false;
        for (tp, offset) in dropped.first {
            if source.seek(&tp, offset).is_ok() && tp == record.topic_partition() {
                record_rewound = true;
            }
        }
        Ok(record_rewound)
    }

    async fn add_record(
        &mut self,
        batch: &mut KafkaBatch,
        record: KafkaRecord,
        source: &KafkaSource,
    ) -> Result<(), PipelineError> {
        let mut parsed = self.parse(&record);
        if let Err(DebeziumError {
            problem: Problem::UnknownColumn { table, .. },
            ..
        }) = &parsed
        {
            let table = table.clone();
            if self.accepts(&table) {
                self.follow_new_columns(&table, batch, source).await?;
                parsed = self.parse(&record);
            }
        }
        batch.note_read(&record);
        let event = match parsed {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(()),
            Err(error) => return self.reject(&record, None, error.to_string()),
        };
        let table = event.table().clone();
        if !self.accepts(&table) {
            return Ok(());
        }
        let tp = record.topic_partition();
        if self
            .already_applied(&table, &tp, record.offset, source)
            .await?
        {
            return Ok(());
        }
        self.stage(batch, event, &record)
    }

    fn parse(&mut self, record: &KafkaRecord) -> Result<Option<ChangeEvent>, DebeziumError> {
        self.parser.parse(&DebeziumRecord {
            topic: Some(&record.topic),
            partition: Some(record.partition),
            offset: Some(record.offset),
            key: record.key.as_deref(),
            value: record.value.as_deref(),
        })
    }

    /// Events carry a column the table did not have at start: write what came before, read
    /// the table's columns from PostgreSQL again and extend the Delta table as direct mode
    /// does (or stop the table when a type changed beyond what Delta holds).
    async fn follow_new_columns(
        &mut self,
        table: &TableName,
        batch: &mut KafkaBatch,
        source: &KafkaSource,
    ) -> Result<(), PipelineError> {
        self.flush(batch, source).await?;
        let client = self.postgres.connect().await?;
        let described = crate::source::postgres::introspect_table(&client, table).await?;
        let schema = Arc::new(source_schema(&described, &self.keys[table]));
        let writer = self
            .writers
            .get_mut(table)
            .expect("accepted tables have writers");
        match plan_evolution(writer, &schema)? {
            Evolution::Unchanged => {}
            Evolution::AddColumns(fields) => add_columns(writer, fields).await?,
            Evolution::Stop(reason) => {
                self.observer.record_errors("table_stopped", 1);
                self.stopped.insert(table.clone(), reason);
            }
        }
        self.parser.register(schema);
        Ok(())
    }

    /// Adds `event` to its table's changes; a change the batch cannot take (no key value, a
    /// column the table lacks) is rejected like a malformed record.
    fn stage(
        &mut self,
        batch: &mut KafkaBatch,
        event: ChangeEvent,
        record: &KafkaRecord,
    ) -> Result<(), PipelineError> {
        let table = event.table().clone();
        let counts = TransactionCounts::of_event(&event);
        let lsn = Some(event.metadata.lsn).filter(|lsn| lsn.0 > 0);
        let writer = &self.writers[&table];
        let changes = batch
            .tables
            .entry(table.clone())
            .or_insert_with(|| writer.new_changes());
        if let Err(error) = changes.push(event) {
            return self.reject(record, Some(&table), error.to_string());
        }
        self.observer.transaction_added(counts, |_| true);
        batch.events += 1;
        batch
            .offsets
            .entry(table.clone())
            .or_default()
            .insert(record.topic_partition(), record.offset + 1);
        if let Some(lsn) = lsn {
            let newest = batch.lsns.entry(table).or_insert(lsn);
            *newest = (*newest).max(lsn);
        }
        Ok(())
    }

    fn accepts(&mut self, table: &TableName) -> bool {
        if self.stopped.contains_key(table) {
            return false;
        }
        if self.writers.contains_key(table) {
            return true;
        }
        if self.warned_tables.insert(table.clone()) {
            tracing::warn!(%table, "topics carry a table this pipeline does not replicate; its changes are ignored");
        }
        false
    }

    /// Whether the Delta table of `table` already holds the record at `offset`.
    async fn already_applied(
        &mut self,
        table: &TableName,
        tp: &TopicPartition,
        offset: i64,
        source: &KafkaSource,
    ) -> Result<bool, PipelineError> {
        let key = (table.clone(), tp.clone());
        let next = match self.applied.get(&key) {
            Some(next) => *next,
            None => {
                let next = self.writers[table]
                    .kafka_next_offset(&tp.topic, tp.partition)
                    .await?;
                if let Some(next) = next {
                    tracing::info!(%table, partition = %tp, next_offset = next, "resuming after what Delta holds");
                    self.check_partition_still_holds(table, tp, next, source)?;
                }
                self.applied.insert(key, next);
                next
            }
        };
        Ok(next.is_some_and(|next| offset < next))
    }

    /// A partition that ends before what Delta already applied was deleted and created
    /// again (or truncated): its offsets mean other records now, so skipping "applied" ones
    /// would silently lose data.
    fn check_partition_still_holds(
        &self,
        table: &TableName,
        tp: &TopicPartition,
        next: i64,
        source: &KafkaSource,
    ) -> Result<(), PipelineError> {
        let high = tokio::task::block_in_place(|| source.high_watermark(tp))
            .map_err(|e| self.setup_error(format!("cannot read the end offset of {tp}: {e}")))?;
        if high >= next {
            return Ok(());
        }
        Err(PipelineError::Setup {
            pipeline: self.resolved.name.clone(),
            message: format!(
                "{tp} ends at offset {high}, but the Delta table of {table} already holds its records up to offset {next}: \
                 the topic was deleted and created again, or truncated, so its offsets now mean other records. \
                 Recreate the Delta table (and re-snapshot with Debezium), or point the pipeline at the right topic"
            ),
        })
    }

    /// A record that cannot become a change: to the dead-letter file (and counted), or, with
    /// `on_error = "fail"`, the end of the run.
    fn reject(
        &mut self,
        record: &KafkaRecord,
        table: Option<&TableName>,
        reason: String,
    ) -> Result<(), PipelineError> {
        self.observer.record_errors("malformed_event", 1);
        if self.resolved.on_error == ErrorPolicy::Fail {
            return Err(PipelineError::Setup {
                pipeline: self.resolved.name.clone(),
                message: format!("{reason} (set on_error = \"dead_letter\" to skip such records)"),
            });
        }
        let letter = DeadLetter {
            pipeline: &self.resolved.name,
            table: table.map_or_else(|| record.topic.clone(), |t| t.to_string()),
            lsn: None,
            record: Some(RecordPosition {
                topic: record.topic.clone(),
                partition: record.partition,
                offset: record.offset,
            }),
            error: reason,
            operation: "malformed",
            payload: raw_payload(record),
            recorded_at: chrono::Utc::now(),
        };
        let file = write_dead_letters(&self.resolved, std::slice::from_ref(&letter))?;
        tracing::error!(topic = %record.topic, partition = record.partition, offset = record.offset,
            error = %letter.error, file = %file.display(), "record went to the dead-letter file");
        self.observer.record_errors("dead_letter", 1);
        Ok(())
    }

    /// Writes every table of the batch (one Delta commit each, holding its offsets), then
    /// commits the offsets to the consumer group.
    async fn flush(
        &mut self,
        batch: &mut KafkaBatch,
        source: &KafkaSource,
    ) -> Result<(), PipelineError> {
        let mut done = std::mem::take(batch);
        if done.started.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        for (table, changes) in done.tables.iter_mut() {
            let offsets = done.offsets.remove(table).unwrap_or_default();
            let position = SourcePosition {
                lsn: done.lsns.get(table).copied(),
                offsets: offsets
                    .iter()
                    .map(|(tp, next)| KafkaOffset {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        next_offset: *next,
                    })
                    .collect(),
            };
            let commit_started = Instant::now();
            let writer = self
                .writers
                .get_mut(table)
                .expect("batches hold known tables");
            // Debezium may send a row again (a new snapshot): always MERGE.
            apply_or_dead_letter(
                writer,
                changes,
                &position,
                false,
                &self.resolved,
                &self.observer,
            )
            .await?;
            self.observer
                .table_committed(table, commit_started.elapsed());
            self.summary.delta_commits += 1;
            for (tp, next) in offsets {
                self.applied.insert((table.clone(), tp), Some(next));
            }
        }
        if let Err(error) = source.commit(&done.consumed) {
            tracing::warn!(%error, "offsets are in Delta but not in the consumer group yet");
        }
        let lsn = done.lsns.values().max().copied().unwrap_or_default();
        self.observer.batch_flushed(done.events, lsn);
        self.summary.events += done.events;
        self.summary.transactions += done.events;
        if lsn.0 > 0 {
            self.summary.last_lsn = Some(lsn);
        }
        tracing::info!(events = done.events, partitions = done.consumed.len(), elapsed = ?started.elapsed(), "batch written");
        Ok(())
    }
}

fn caught_up(source: &KafkaSource) -> bool {
    tokio::task::block_in_place(|| source.caught_up().unwrap_or(false))
}

/// The record's key and value for the dead letter: text when UTF-8, else hex.
fn raw_payload(record: &KafkaRecord) -> serde_json::Value {
    let render = |bytes: &Option<Vec<u8>>| match bytes {
        None => serde_json::Value::Null,
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::Value::String(text.to_string()),
            Err(_) => serde_json::json!({ "hex": hex::encode(bytes) }),
        },
    };
    serde_json::json!({ "key": render(&record.key), "value": render(&record.value) })
}

/// The consumer settings of a Kafka-mode pipeline: its topics are Debezium's
/// `<topic_prefix>.<schema>.<table>` unless `topics` or `topic_pattern` says otherwise.
pub fn kafka_source_settings(config: &Config, resolved: &ResolvedPipeline) -> KafkaSettings {
    let kafka = kafka_settings(config, &resolved.name);
    let subscription = match (&kafka.topic_pattern, kafka.topics.is_empty()) {
        (Some(pattern), _) => Subscription::Pattern(pattern.clone()),
        (None, false) => Subscription::Topics(kafka.topics.clone()),
        (None, true) => {
            let prefix = topic_prefix(&kafka, &resolved.name);
            Subscription::Topics(
                resolved
                    .tables
                    .iter()
                    .map(|t| table_topic(&prefix, &t.name))
                    .collect(),
            )
        }
    };
    KafkaSettings {
        bootstrap_servers: kafka.bootstrap_servers.clone().unwrap_or_default(),
        group_id: consumer_group(&kafka, &resolved.name),
        subscription,
        properties: kafka.consumer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kafka: &str) -> Config {
        let text = format!(
            "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.shop]\nmode = \"kafka\"\ntables = [\"public.orders\", \"sales.items\"]\n[pipelines.shop.kafka]\nbootstrap_servers = \"b:9092\"\n{kafka}"
        );
        Config::from_toml(&text, std::path::Path::new("t.toml"), Vec::new()).unwrap()
    }

    #[test]
    fn subscribes_to_debezium_topics_of_the_tables_by_default() {
        let config = config("");
        let settings = kafka_source_settings(&config, &config.pipeline("shop").unwrap());
        assert_eq!(
            settings.subscription,
            Subscription::Topics(vec!["shop.public.orders".into(), "shop.sales.items".into()])
        );
        assert_eq!(settings.group_id, "pgdelta-shop");
        assert_eq!(settings.bootstrap_servers, "b:9092");
    }

    #[test]
    fn topics_pattern_group_and_consumer_properties_come_from_the_config() {
        let config = config(
            "group_id = \"g\"\ntopic_pattern = \"cdc\\\\..*\"\n[pipelines.shop.kafka.consumer]\n\"fetch.min.bytes\" = \"1\"\n",
        );
        let settings = kafka_source_settings(&config, &config.pipeline("shop").unwrap());
        assert_eq!(
            settings.subscription,
            Subscription::Pattern("cdc\\..*".into())
        );
        assert_eq!(settings.group_id, "g");
        assert_eq!(settings.properties["fetch.min.bytes"], "1");
    }

    #[test]
    fn dead_letter_payloads_keep_the_raw_record() {
        let record = KafkaRecord {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            key: Some(vec![0xff, 0x00]),
            value: Some(b"{not json".to_vec()),
        };
        let payload = raw_payload(&record);
        assert_eq!(payload["value"], "{not json");
        assert_eq!(payload["key"]["hex"], "ff00");
    }
}
