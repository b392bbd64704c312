//! The one pipeline: changes from a [`ChangeSource`] -> batches -> one Delta commit per
//! table (holding the source position) -> confirmed to the source.
//!
//! Exactly once: a table's Delta commit records where its changes came from (the commit LSN
//! in direct mode, the next offset of each topic-partition in Kafka mode), a change the
//! table already holds is skipped, and the source is told a position only after every
//! table's commit holds it.

mod batch;
mod commit;
mod contention;
pub mod dead_letter;
mod large;
mod maintain;
mod prepare;
mod read_ahead;
mod snapshot;
pub mod status;
mod tables;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use deltalake::kernel::StructField;

use crate::config::{ConfigError, ErrorPolicy, ResolvedPipeline};
use crate::event::{Lsn, Origin, TableName, TableSchema, Transaction};
use crate::observe::{Observer, TransactionCounts};
use crate::sink::delta::evolution::plan_schema_change;
use crate::sink::delta::{ChangeError, DeltaTableWriter, KafkaOffset, SinkError};
use crate::source::postgres::SourceError;
use crate::source::{ChangeSource, SourceItem};
use batch::Batch;
use commit::Committer;
use contention::Contention;
use dead_letter::{DeadLetter, DeadLetterError, DeadLetterFile, RecordPosition};
pub use prepare::{check_built_in, prepare, Prepared};
use read_ahead::ReadAhead;
pub use tables::{TableState, Tables};
use tokio_util::task::AbortOnDropHandle;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] crate::source::kafka::KafkaSourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error("pipeline {pipeline}: {reason} (set on_error = \"dead_letter\" to skip such records)")]
    Rejected { pipeline: String, reason: String },
    #[error("pipeline {pipeline}: {table} has no primary key: set key = [...] in [pipelines.{pipeline}.table.\"{table}\"]")]
    NoKey { pipeline: String, table: TableName },
    #[error("pipeline {pipeline}: --resnapshot copies from a replication slot, which only mode = \"direct\" has; a Kafka-mode pipeline gets a new snapshot from Debezium (its snapshot signal or a new connector)")]
    ResnapshotInKafkaMode { pipeline: String },
    #[error("pipeline {pipeline}: mode = \"kafka\", but this pgdelta was built without the `kafka` cargo feature (Kafka support); build it with default features to get it: `cargo build`")]
    KafkaNotBuiltIn { pipeline: String },
    #[error("pipeline {pipeline}: Delta table {location}: {}", crate::sink::delta::storage::not_built_in_message(.feature))]
    StoreNotBuiltIn {
        pipeline: String,
        location: String,
        feature: &'static str,
    },
    #[error("pipeline {pipeline}: a `pipeline start --resnapshot` did not finish copying {}: their positions belong to the dropped slot, so streaming would skip changes; run `pgdelta pipeline start {pipeline} --resnapshot` again", .tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", "))]
    ResnapshotUnfinished {
        pipeline: String,
        tables: Vec<TableName>,
    },
    #[error("pipeline {pipeline}: partition_by column '{column}' is not a column of {table}")]
    NoPartitionColumn {
        pipeline: String,
        table: TableName,
        column: String,
    },
    /// Internal: the large transaction `xid` must be received again and applied whole.
    #[error("transaction {xid} is received again and applied whole")]
    ReceiveWhole { xid: u32 },
    /// Internal: another member of the consumer group applied records of this batch while
    /// it was written (a partition moved to it); the batch is dropped and read again.
    #[error("another member applied {partition} of {table} up to offset {held} while this batch, from offset {first}, was written")]
    Overtaken {
        table: TableName,
        partition: crate::event::TopicPartition,
        held: i64,
        first: i64,
    },
    #[error("pipeline {pipeline}: these tables were stopped while the others went on:\n{}", .stopped.join("\n"))]
    TablesStopped {
        pipeline: String,
        stopped: Vec<String>,
    },
}

impl PipelineError {
    /// The `error_type` label of `cdc_errors_total` this error counts under.
    pub fn error_type(&self) -> &'static str {
        match self {
            PipelineError::Config(_) => "config",
            PipelineError::Source(_) => "source",
            #[cfg(feature = "kafka")]
            PipelineError::Kafka(_) => "source",
            PipelineError::ReceiveWhole { .. } => "source",
            PipelineError::Overtaken { .. } => "sink",
            PipelineError::Sink(_) | PipelineError::DeadLetter(_) => "sink",
            PipelineError::Change(_) => "change",
            PipelineError::Rejected { .. } => "malformed_event",
            PipelineError::NoKey { .. }
            | PipelineError::NoPartitionColumn { .. }
            | PipelineError::ResnapshotInKafkaMode { .. }
            | PipelineError::KafkaNotBuiltIn { .. }
            | PipelineError::StoreNotBuiltIn { .. }
            | PipelineError::ResnapshotUnfinished { .. } => "setup",
            PipelineError::TablesStopped { .. } => "table_stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Apply everything the source held at start, then exit.
    pub exit_when_caught_up: bool,
    /// Direct mode: drop the replication slot (e.g. one PostgreSQL invalidated), create a new
    /// one and copy every table again, each replacing its Delta rows in one commit.
    pub resnapshot: bool,
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub transactions: usize,
    pub events: usize,
    pub delta_commits: usize,
    pub last_lsn: Option<Lsn>,
}

/// What decides how large the next batch may grow.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// No batch was written yet in this run.
    first_batch: bool,
    /// Items read during the last write are still waiting to be handled.
    items_waiting: bool,
    /// The batch's newest change committed more than `batch_interval` ago.
    backlog: bool,
    /// Commits lose races with other writers ([`Contention`]).
    contended: bool,
}

/// Whether the next batch grows to `max_batch_size`: while the pipeline is behind (items
/// read during the last write wait, or it catches up on a backlog) each commit's fixed cost
/// is then paid less often; the same while commits lose races. A backlog does not grow a
/// run's first batch: nothing is written while it is read, so a small one starts the writer
/// early and the reading of the next batches overlaps it.
fn grows_batches(pace: Pace) -> bool {
    pace.items_waiting || pace.contended || (pace.backlog && !pace.first_batch)
}

/// A prepared pipeline over one source: tables open, the source ready to stream.
pub struct Pipeline<S: ChangeSource> {
    resolved: ResolvedPipeline,
    source: S,
    tables: Tables,
    observer: Arc<Observer>,
    summary: RunSummary,
    committer: Committer,
    ahead: ReadAhead<S::Error>,
    contention: Contention,
}

/// What the streaming loop does after an item.
enum Flow {
    Continue,
    Done(Stop),
}

/// Why the streaming loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    CaughtUp,
    Shutdown,
}

/// What woke the streaming loop.
enum Wake<T> {
    Item(T),
    BatchDue,
    Shutdown,
}

impl<S: ChangeSource> Pipeline<S>
where
    PipelineError: From<S::Error>,
{
    pub fn new(
        resolved: ResolvedPipeline,
        tables: Tables,
        source: S,
        observer: Arc<Observer>,
    ) -> Pipeline<S> {
        observer.sink_opened();
        Pipeline {
            committer: Committer::new(&resolved, observer.clone()),
            resolved,
            source,
            tables,
            observer,
            summary: RunSummary::default(),
            ahead: ReadAhead::default(),
            contention: Contention::default(),
        }
    }

    /// Streams until `shutdown` completes (or, with `exit_when_caught_up`, until caught up).
    /// A fatal error is counted and reported to the observer.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, PipelineError> {
        let outcome = self.stream(shutdown).await;
        if let Ok(stop) = &outcome {
            self.finish_maintenance(*stop == Stop::CaughtUp).await;
        }
        self.source.close().await;
        if let Err(error) = &outcome {
            self.observer.failed(error.error_type(), error);
        }
        outcome?;
        let stopped = self.tables.stopped();
        if stopped.is_empty() {
            return Ok(self.summary);
        }
        Err(PipelineError::TablesStopped {
            pipeline: self.resolved.name,
            stopped,
        })
    }

    async fn stream(&mut self, shutdown: impl Future<Output = ()>) -> Result<Stop, PipelineError> {
        tokio::pin!(shutdown);
        let mut batch = Batch::default();
        let mut large: Option<large::LargeTransaction> = None;
        let mut last_item = Instant::now();
        loop {
            let deadline = batch.started.map(|started| {
                self.contention
                    .flush_deadline(started, last_item, self.resolved.batch_interval)
            });
            let wake = match self.ahead.pop() {
                Some(item) => Wake::Item(item),
                None => tokio::select! {
                    item = self.source.next() => Wake::Item(item),
                    _ = sleep_until(deadline) => Wake::BatchDue,
                    _ = shutdown.as_mut() => Wake::Shutdown,
                },
            };
            let flow = match wake {
                Wake::Item(item) => {
                    last_item = Instant::now();
                    self.handle(item?, &mut batch, &mut large).await
                }
                Wake::BatchDue => self.flush(&mut batch).await.map(|()| Flow::Continue),
                Wake::Shutdown => {
                    tracing::info!("stopping: writing the current batch first");
                    self.flush(&mut batch)
                        .await
                        .map(|()| Flow::Done(Stop::Shutdown))
                }
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Done(stop)) => return Ok(stop),
                Err(PipelineError::ReceiveWhole { xid }) => {
                    large = None;
                    self.ahead.clear();
                    self.source.receive_whole(xid).await?;
                }
                Err(overtaken @ PipelineError::Overtaken { .. }) => {
                    tracing::info!(%overtaken, "dropping the batch: what the tables do not hold yet is read again");
                    large = None;
                    self.ahead.clear();
                    self.reload_tables().await?;
                    self.source.rewind().await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn handle(
        &mut self,
        item: SourceItem,
        batch: &mut Batch,
        large: &mut Option<large::LargeTransaction>,
    ) -> Result<Flow, PipelineError> {
        match item {
            SourceItem::Changes {
                transaction,
                origin,
            } => match large.take() {
                Some(open) => self.finish_large(open, transaction).await?,
                None => {
                    self.follow_schema_changes(&transaction, batch).await?;
                    self.add_changes(batch, transaction, origin).await?;
                    if batch.is_full(self.batch_limit(batch)) {
                        self.flush(batch).await?;
                    }
                }
            },
            SourceItem::Part(part) => {
                if large.is_none() {
                    self.flush(batch).await?;
                }
                let open =
                    large.get_or_insert_with(|| large::LargeTransaction::starting_with(&part));
                self.add_large_part(open, part.events).await?;
            }
            SourceItem::Skipped(origin) => batch.note(&origin, None),
            SourceItem::Malformed {
                origin,
                table,
                reason,
            } => {
                batch.note(&origin, None);
                self.reject(&origin, table.as_ref(), reason)?;
            }
            SourceItem::Rewound => {
                let dropped = std::mem::take(batch);
                if !dropped.is_empty() {
                    tracing::info!(events = dropped.events, "the source starts again before what is not written yet: dropping it, it is read again");
                }
                *large = None;
                // Another process may have written the tables meanwhile.
                self.reload_tables().await?;
            }
            SourceItem::Up => self.observer.source_connected(),
            SourceItem::Down(error) => {
                self.observer.source_lost(&error);
                *large = None;
                self.flush(batch).await?;
            }
            SourceItem::CaughtUp => {
                self.flush(batch).await?;
                return Ok(Flow::Done(Stop::CaughtUp));
            }
        }
        Ok(Flow::Continue)
    }

    /// Adds the events of tables that do not hold them yet to the batch.
    async fn add_changes(
        &mut self,
        batch: &mut Batch,
        transaction: Transaction,
        origin: Origin,
    ) -> Result<(), PipelineError> {
        batch.note(&origin, Some(transaction.xid));
        batch.committed(transaction.commit_timestamp);
        let counts = TransactionCounts::of(&transaction);
        for event in transaction.events {
            let table = event.table().clone();
            let Some(state) = self.tables.accepting(&table) else {
                continue;
            };
            if state.holds(&origin, &self.source).await? {
                continue;
            }
            let event_lsn = event.metadata.lsn;
            let entry = batch.table(&table, || state.writer.new_changes());
            match (entry.changes.push(event), &origin) {
                (Ok(()), _) => {
                    entry.took(&origin, event_lsn);
                    batch.events += 1;
                }
                // A record that cannot become a change is rejected like a malformed one.
                (Err(error), Origin::Record(_)) => {
                    self.reject(&origin, Some(&table), error.to_string())?
                }
                (Err(error), Origin::Wal(_)) => return Err(error.into()),
            }
        }
        self.observer
            .transaction_added(counts, |table| batch.tables.contains_key(table));
        Ok(())
    }

    /// Writes every table of the batch (one Delta commit each), then confirms the batch's
    /// positions to the source.
    async fn flush(&mut self, batch: &mut Batch) -> Result<(), PipelineError> {
        let done = std::mem::take(batch);
        if done.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let done = self.write_reading_ahead(done).await?;
        self.source.confirm(&done.progress);
        let lsn = done.newest_lsn();
        self.observer
            .batch_flushed(done.events, lsn.unwrap_or_default());
        self.summary.transactions += done.transactions;
        self.summary.events += done.events;
        if lsn.is_some() {
            self.summary.last_lsn = lsn;
        }
        tracing::info!(lsn = %lsn.unwrap_or_default(), transactions = done.transactions, events = done.events, elapsed = ?started.elapsed(), "batch written");
        for table in done.tables.keys() {
            self.maintain(table).await;
        }
        Ok(())
    }

    /// Events at which the batch is written: `batch_size`, or `max_batch_size` when
    /// [`grows_batches`] says so.
    fn batch_limit(&self, batch: &Batch) -> usize {
        let pace = Pace {
            first_batch: self.summary.events == 0,
            items_waiting: !self.ahead.is_empty(),
            backlog: batch.is_behind(Utc::now(), self.resolved.batch_interval),
            contended: self.contention.is_contended(),
        };
        match grows_batches(pace) {
            false => self.resolved.batch_size,
            true => self.resolved.max_batch_size,
        }
    }

    /// Writes the batch on a task of its own (another core) while the source goes on
    /// reading and decoding into [`ReadAhead`], up to `max_batch_size` events.
    async fn write_reading_ahead(&mut self, mut batch: Batch) -> Result<Batch, PipelineError> {
        let mut tables = std::mem::take(&mut self.tables);
        let committer = self.committer.clone();
        let mut write = AbortOnDropHandle::new(tokio::spawn(async move {
            let written = committer.write_batch(&mut tables, &mut batch).await;
            (tables, batch, written)
        }));
        let joined = loop {
            if !self.ahead.wants_more(self.resolved.max_batch_size) {
                break (&mut write).await;
            }
            tokio::select! {
                biased;
                joined = &mut write => break joined,
                item = self.source.next() => self.ahead.push(item),
            }
        };
        let (tables, batch, written) = match joined {
            Ok(done) => done,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        self.tables = tables;
        let written = written?;
        self.summary.delta_commits += written.commits;
        self.note_contention(written.lost_races);
        Ok(batch)
    }

    fn note_contention(&mut self, lost_races: usize) {
        let before = self.contention;
        self.contention = before.after_batch(lost_races);
        if self.contention == before {
            return;
        }
        let interval = self.contention.batch_interval(self.resolved.batch_interval);
        match lost_races {
            0 => {
                tracing::info!(batch_interval = ?interval, "a batch committed without losing a race: batch interval shortened")
            }
            _ => {
                tracing::info!(lost_races, batch_interval = ?interval, "commits lose races with other writers of the same tables: batch interval lengthened")
            }
        }
    }

    /// Reads every table's latest version again, tried again while the store fails.
    async fn reload_tables(&mut self) -> Result<(), PipelineError> {
        self.committer.reload(&mut self.tables).await
    }

    /// A record that cannot become a change: to the dead-letter file (and counted), or, with
    /// `on_error = "fail"`, the end of the run.
    fn reject(
        &self,
        origin: &Origin,
        table: Option<&TableName>,
        reason: String,
    ) -> Result<(), PipelineError> {
        self.observer.record_errors("malformed_event", 1);
        if self.resolved.on_error == ErrorPolicy::Fail {
            return Err(PipelineError::Rejected {
                pipeline: self.resolved.name.clone(),
                reason,
            });
        }
        let (record, payload, place) = match origin {
            Origin::Record(record) => (
                Some(RecordPosition {
                    topic: record.topic.clone(),
                    partition: record.partition,
                    offset: record.offset,
                }),
                record.raw_payload(),
                record.topic.clone(),
            ),
            Origin::Wal(lsn) => (None, serde_json::Value::Null, lsn.to_string()),
        };
        let letter = DeadLetter {
            pipeline: &self.resolved.name,
            table: table.map_or(place, |t| t.to_string()),
            lsn: match origin {
                Origin::Wal(lsn) => Some(*lsn),
                Origin::Record(_) => None,
            },
            record,
            error: reason,
            operation: "malformed",
            payload,
            recorded_at: chrono::Utc::now(),
        };
        let file = DeadLetterFile::new(&self.resolved.dead_letter_path);
        file.append(std::slice::from_ref(&letter))?;
        tracing::error!(origin = ?letter.record, error = %letter.error, file = %file.path().display(), "record went to the dead-letter file");
        self.observer.record_errors("dead_letter", 1);
        Ok(())
    }

    /// Adds new source columns to the Delta table (after writing what came before), keeps
    /// dropped ones, and stops a table whose column type changed beyond what Delta holds.
    async fn follow_schema_changes(
        &mut self,
        transaction: &Transaction,
        batch: &mut Batch,
    ) -> Result<(), PipelineError> {
        for event in &transaction.events {
            let table = event.table();
            let Some(state) = self.tables.get_mut(table) else {
                continue;
            };
            let known = state
                .schema
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &event.schema));
            if known || state.stopped.is_some() {
                continue;
            }
            state.schema = Some(event.schema.clone());
            match plan_evolution(&state.writer, &event.schema)? {
                Evolution::Unchanged => {}
                Evolution::Stop(reason) => {
                    self.observer.record_errors("table_stopped", 1);
                    state.stopped = Some(reason);
                }
                Evolution::AddColumns(fields) => {
                    self.flush(batch).await?;
                    let state = self.tables.get_mut(table).expect("checked above");
                    add_columns(&mut state.writer, fields).await?;
                }
            }
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Where a Delta commit's changes came from, recorded in the same commit.
#[derive(Debug, Clone, Default)]
struct SourcePosition {
    lsn: Option<Lsn>,
    offsets: Vec<KafkaOffset>,
    /// Kafka mode: the offset of the first record of each partition in the commit (not
    /// recorded; it tells whether another member applied some of them meanwhile).
    first_offsets: std::collections::BTreeMap<crate::event::TopicPartition, i64>,
}

/// What a source schema means for a table's Delta columns.
enum Evolution {
    Unchanged,
    AddColumns(Vec<StructField>),
    /// The table cannot go on; the reason says what to do.
    Stop(String),
}

fn plan_evolution(writer: &DeltaTableWriter, schema: &TableSchema) -> Result<Evolution, SinkError> {
    let table = &schema.table;
    let change = plan_schema_change(&writer.column_types()?, schema);
    if !change.incompatible.is_empty() {
        let reason = format!(
            "{}; to recover, remove the Delta table at {} and restart: it is copied again from a snapshot",
            change.incompatible.join("; "),
            writer.location()
        );
        tracing::error!(%table, %reason, "table stopped; the other tables go on");
        return Ok(Evolution::Stop(reason));
    }
    if !change.dropped.is_empty() {
        tracing::warn!(%table, columns = ?change.dropped, "columns dropped in the source are kept in Delta, null from now on");
    }
    Ok(match change.added.is_empty() {
        true => Evolution::Unchanged,
        false => Evolution::AddColumns(change.added),
    })
}

async fn add_columns(
    writer: &mut DeltaTableWriter,
    fields: Vec<StructField>,
) -> Result<(), SinkError> {
    let names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    writer.add_columns(fields).await?;
    tracing::info!(table = %writer.table_name(), columns = ?names, "added source columns to the Delta table");
    Ok(())
}
