//! Runs one pipeline: PostgreSQL slot -> batches -> Delta tables, then confirms the position.

mod batch;
pub mod dead_letter;
pub mod kafka;
mod large;
mod snapshot;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::kernel::{DataType, StructField};
use tokio_postgres::Client;

use crate::config::{
    Config, ConfigError, ErrorPolicy, ResolvedPipeline, ResolvedTable, SnapshotMode,
};
use crate::event::{Lsn, TableName, TableSchema, Transaction};
use crate::observe::{Observer, TransactionCounts};
use crate::sink::delta::evolution::plan_schema_change;
use crate::sink::delta::types::delta_type_named;
use crate::sink::delta::{
    ChangeError, DeltaTableWriter, KafkaOffset, SinkError, TableChanges, TableLayout,
};
use crate::source::postgres::{
    self as pg, ChangeStream, ConnectionSettings, SourceError, SourceTable, StreamItem,
};
use batch::Batch;
use dead_letter::{DeadLetter, DeadLetterFile};

const MARKER_PREFIX: &str = "pgdelta.caught_up";

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("pipeline {pipeline}: {message}")]
    Setup { pipeline: String, message: String },
    /// Internal: the large transaction `xid` must be received again and applied whole.
    #[error("transaction {xid} is received again and applied whole")]
    ReceiveWhole { xid: u32 },
    #[error("pipeline {pipeline}: these tables were stopped while the others went on:\n{}", .stopped.join("\n"))]
    TablesStopped {
        pipeline: String,
        stopped: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Apply everything up to the server's WAL position at start, then exit.
    pub exit_when_caught_up: bool,
}

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub transactions: usize,
    pub events: usize,
    pub delta_commits: usize,
    pub last_lsn: Option<Lsn>,
}

/// A prepared pipeline: tables checked, publication and slot in place, Delta tables open.
pub struct Pipeline {
    resolved: ResolvedPipeline,
    settings: ConnectionSettings,
    client: Client,
    writers: HashMap<TableName, DeltaTableWriter>,
    keys: HashMap<TableName, Vec<String>>,
    summary: RunSummary,
    warned_tables: HashSet<TableName>,
    /// The last source schema seen per table, to notice schema changes once.
    schemas: HashMap<TableName, Arc<TableSchema>>,
    /// Tables whose stream stopped (e.g. an incompatible type change), with the reason.
    stopped: HashMap<TableName, String>,
    observer: Arc<Observer>,
    /// Large transactions to receive whole (the chunked path could not take them).
    whole_xids: HashSet<u32>,
}

impl Pipeline {
    /// Checks the source and configuration, then creates what is missing (publication, slot,
    /// Delta tables). Nothing is created when a check fails.
    pub async fn prepare(config: &Config, name: &str) -> Result<Pipeline, PipelineError> {
        let resolved = config.pipeline(name)?;
        let settings = ConnectionSettings::from_config(config)?;
        let client = settings.connect().await?;
        let sources = describe_tables(&client, &resolved).await?;
        let requests: Vec<pg::TableRequest> = resolved
            .tables
            .iter()
            .zip(&sources)
            .map(|(table, source)| pg::TableRequest {
                table: source,
                configured_key: &table.key,
                config_section: format!("[pipelines.{name}.table.\"{}\"]", table.name),
            })
            .collect();
        let problems = pg::check_readiness(&client, &resolved.slot, &requests).await?;
        if !problems.is_empty() {
            return Err(SourceError::NotReady(problems).into());
        }
        let keys = table_keys(&resolved, &sources);
        let (mut writers, stopped) = open_writers(&resolved, &sources, &keys).await?;
        let table_names: Vec<TableName> = resolved.tables.iter().map(|t| t.name.clone()).collect();
        pg::ensure_publication(&client, &resolved.publication, &table_names).await?;
        take_initial_snapshot(&client, &settings, &resolved, &mut writers, sources).await?;
        Ok(Pipeline {
            observer: Arc::new(Observer::new(&resolved)),
            resolved,
            settings,
            client,
            writers,
            keys,
            summary: RunSummary::default(),
            warned_tables: HashSet::new(),
            schemas: HashMap::new(),
            stopped,
            whole_xids: HashSet::new(),
        })
    }

    /// Reports metrics and health to `observer` (by default to a private one).
    pub fn with_observer(mut self, observer: Arc<Observer>) -> Pipeline {
        observer.sink_opened();
        self.observer = observer;
        self
    }

    pub fn writers(&self) -> impl Iterator<Item = &DeltaTableWriter> {
        self.writers.values()
    }

    /// Streams until `shutdown` completes (or, with `exit_when_caught_up`, until caught up),
    /// reconnecting with backoff when the server goes away.
    pub async fn run(
        mut self,
        options: RunOptions,
        shutdown: impl Future<Output = ()>,
    ) -> Result<RunSummary, PipelineError> {
        if self.resolved.snapshot_mode == SnapshotMode::InitialOnly {
            tracing::info!("snapshot_mode = initial_only: not streaming");
            return Ok(self.summary);
        }
        tokio::pin!(shutdown);
        let marker = match options.exit_when_caught_up {
            true => Some(format!(
                "{}:{}:{}",
                self.resolved.name,
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            )),
            false => None,
        };
        let mut marker_written = false;
        let mut failures = 0usize;
        loop {
            // Another process may have written the tables while this one waited for the slot.
            self.reload_writers().await?;
            let mut stream = match self.start_stream().await {
                Ok(stream) => stream,
                Err(error) => {
                    if self
                        .wait_before_retry(error, &mut failures, &mut shutdown)
                        .await?
                    {
                        return self.finish();
                    }
                    continue;
                }
            };
            failures = 0;
            self.observer.source_connected();
            if let (Some(token), false) = (&marker, marker_written) {
                match pg::emit_marker(&self.client, MARKER_PREFIX, token).await {
                    Ok(lsn) => {
                        tracing::info!(target_lsn = %lsn, "will exit once caught up to this position");
                        marker_written = true;
                    }
                    Err(error) => {
                        stream.shutdown().await;
                        if self
                            .wait_before_retry(error, &mut failures, &mut shutdown)
                            .await?
                        {
                            return self.finish();
                        }
                        continue;
                    }
                }
            }
            match self
                .stream_batches(&mut stream, marker.as_deref(), &mut shutdown)
                .await
            {
                Ok(()) => {
                    self.wait_for_confirmation().await;
                    stream.shutdown().await;
                    return self.finish();
                }
                Err(PipelineError::ReceiveWhole { xid }) => {
                    stream.shutdown().await;
                    self.whole_xids.insert(xid);
                }
                Err(PipelineError::Source(error)) if error.is_transient() => {
                    stream.shutdown().await;
                    if self
                        .wait_before_retry(error, &mut failures, &mut shutdown)
                        .await?
                    {
                        return self.finish();
                    }
                }
                Err(error) => {
                    stream.shutdown().await;
                    self.observer.failed(&error);
                    return Err(error);
                }
            }
        }
    }

    /// Sleeps before the next reconnect, or gives up with `error` when it is permanent or
    /// the configured attempts are used up. Returns true when `shutdown` came first.
    async fn wait_before_retry(
        &mut self,
        error: SourceError,
        failures: &mut usize,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<bool, PipelineError> {
        *failures += 1;
        self.observer.source_lost(&error);
        if !error.is_transient() || *failures >= self.settings.attempts() {
            return Err(error.into());
        }
        let delay = pg::backoff_delay(*failures);
        tracing::warn!(%error, attempt = *failures, retry_in = ?delay, "source unavailable; reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.as_mut() => {
                tracing::info!("stopping while waiting to reconnect; everything written is confirmed on the next start");
                return Ok(true);
            }
        }
        if let Ok(client) = self.settings.connect_without_retry().await {
            self.client = client;
        }
        Ok(false)
    }

    async fn reload_writers(&mut self) -> Result<(), PipelineError> {
        for writer in self.writers.values_mut() {
            writer.reload().await?;
        }
        Ok(())
    }

    async fn start_stream(&mut self) -> Result<ChangeStream, SourceError> {
        if self.client.is_closed() {
            self.client = self.settings.connect_without_retry().await?;
        }
        let start = pg::slot_position(&self.client, &self.resolved.slot)
            .await?
            .ok_or_else(|| {
                SourceError::Settings(format!(
                    "replication slot {} was dropped",
                    self.resolved.slot
                ))
            })?;
        let parts = pg::PartPolicy {
            events_per_part: self.resolved.large_transaction_events,
            whole: self.whole_xids.clone(),
        };
        ChangeStream::start(
            &self.settings,
            &self.resolved.slot,
            &self.resolved.publication,
            start,
            self.keys.clone(),
            parts,
        )
        .await
    }

    async fn stream_batches(
        &mut self,
        stream: &mut ChangeStream,
        marker: Option<&str>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), PipelineError> {
        let mut batch = Batch::default();
        let mut large: Option<large::LargeTransaction> = None;
        loop {
            let deadline = batch.started.map(|s| s + self.resolved.batch_interval);
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                item = stream.next() => match item {
                    Ok(StreamItem::TransactionPart(part)) => {
                        let open = match large.as_mut() {
                            Some(open) => open,
                            None => {
                                self.flush(&mut batch, stream).await?;
                                large.insert(large::LargeTransaction::starting_with(&part))
                            }
                        };
                        self.add_large_part(open, part.events).await?;
                    }
                    Ok(StreamItem::Transaction(tx)) if large.is_some() => {
                        let open = large.take().expect("checked");
                        self.finish_large(open, tx, stream).await?;
                    }
                    Ok(StreamItem::Transaction(tx)) => {
                        self.follow_schema_changes(&tx, &mut batch, stream).await?;
                        self.add_transaction(&mut batch, tx)?;
                        if batch.events >= self.resolved.batch_size {
                            self.flush(&mut batch, stream).await?;
                        }
                    }
                    Ok(StreamItem::Idle { wal_end }) => {
                        // Nothing pending: let the server recycle WAL that held no changes
                        // for us (and finish a shutdown without waiting on us).
                        if batch.last_lsn.is_none() {
                            stream.confirm(wal_end);
                        }
                    }
                    Ok(StreamItem::Marker { prefix, content, lsn }) => {
                        if prefix == MARKER_PREFIX && Some(content.as_str()) == marker {
                            tracing::info!(%lsn, "caught up");
                            self.flush(&mut batch, stream).await?;
                            return Ok(());
                        }
                    }
                    Err(error) => {
                        if error.is_transient() {
                            self.flush(&mut batch, stream).await?;
                        }
                        return Err(error.into());
                    }
                },
                _ = timer => self.flush(&mut batch, stream).await?,
                _ = shutdown.as_mut() => {
                    tracing::info!("stopping: writing the current batch first");
                    self.flush(&mut batch, stream).await?;
                    return Ok(());
                }
            }
        }
    }

    /// The run's result: an error naming the stopped tables, if any were.
    fn finish(self) -> Result<RunSummary, PipelineError> {
        run_result(self.summary, &self.stopped, self.resolved.name)
    }

    /// Adds new source columns to the Delta table (after writing what came before), keeps
    /// dropped ones, and stops a table whose column type changed beyond what Delta holds.
    async fn follow_schema_changes(
        &mut self,
        tx: &Transaction,
        batch: &mut Batch,
        stream: &ChangeStream,
    ) -> Result<(), PipelineError> {
        for event in &tx.events {
            let table = event.table();
            let known = self
                .schemas
                .get(table)
                .is_some_and(|s| Arc::ptr_eq(s, &event.schema));
            if known || self.stopped.contains_key(table) {
                continue;
            }
            self.schemas.insert(table.clone(), event.schema.clone());
            let Some(writer) = self.writers.get(table) else {
                continue;
            };
            match plan_evolution(writer, &event.schema)? {
                Evolution::Unchanged => {}
                Evolution::Stop(reason) => {
                    self.observer.record_errors("table_stopped", 1);
                    self.stopped.insert(table.clone(), reason);
                }
                Evolution::AddColumns(fields) => {
                    self.flush(batch, stream).await?;
                    add_columns(self.writers.get_mut(table).expect("checked above"), fields)
                        .await?;
                }
            }
        }
        Ok(())
    }

    fn add_transaction(&mut self, batch: &mut Batch, tx: Transaction) -> Result<(), ChangeError> {
        let writers = &self.writers;
        let warned = &mut self.warned_tables;
        let stopped = &self.stopped;
        let counts = TransactionCounts::of(&tx);
        let added = batch.add(tx, |table, lsn| {
            if stopped.contains_key(table) {
                return None;
            }
            let Some(writer) = writers.get(table) else {
                if warned.insert(table.clone()) {
                    tracing::warn!(%table, "publication carries a table this pipeline does not replicate; its changes are ignored");
                }
                return None;
            };
            match writer.last_applied_lsn() {
                Some(applied) if lsn <= applied => None,
                _ => Some(writer.new_changes()),
            }
        });
        self.observer
            .transaction_added(counts, |table| batch.tables.contains_key(table));
        added
    }

    /// Writes every table of the batch (one Delta commit each), then confirms the position.
    async fn flush(
        &mut self,
        batch: &mut Batch,
        stream: &ChangeStream,
    ) -> Result<(), PipelineError> {
        let done = std::mem::take(batch);
        let Some(lsn) = done.last_lsn else {
            return Ok(());
        };
        let started = Instant::now();
        let mut done = done;
        for (table, changes) in done.tables.iter_mut() {
            if changes.is_empty() {
                continue;
            }
            let commit_started = Instant::now();
            self.apply_changes(table, changes, lsn).await?;
            self.observer
                .table_committed(table, commit_started.elapsed());
            self.summary.delta_commits += 1;
        }
        stream.confirm(lsn);
        self.observer.batch_flushed(done.events, lsn);
        self.summary.transactions += done.transactions;
        self.summary.events += done.events;
        self.summary.last_lsn = Some(lsn);
        tracing::info!(%lsn, transactions = done.transactions, events = done.events, elapsed = ?started.elapsed(), "batch written");
        Ok(())
    }

    async fn apply_changes(
        &mut self,
        table: &TableName,
        changes: &mut TableChanges,
        lsn: Lsn,
    ) -> Result<(), PipelineError> {
        let writer = self
            .writers
            .get_mut(table)
            .expect("batches only hold replicated tables");
        let position = SourcePosition::at(lsn);
        let append_safe = keyed_by_primary_key(&self.resolved, table);
        apply_or_dead_letter(
            writer,
            changes,
            &position,
            append_safe,
            &self.resolved,
            &self.observer,
        )
        .await
    }

    /// Gives the replication session a moment to report the final position to the server.
    async fn wait_for_confirmation(&self) {
        let Some(lsn) = self.summary.last_lsn else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match pg::slot_position(&self.client, &self.resolved.slot).await {
                Ok(Some(confirmed)) if confirmed >= lsn => return,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => return,
            }
        }
        tracing::warn!(%lsn, "the server has not confirmed the final position yet; a restart will skip what Delta already holds");
    }
}

/// Opens (or creates) the Delta table of every configured table and brings its columns up
/// to the source's; tables whose columns changed beyond what Delta holds come back stopped.
async fn open_writers(
    resolved: &ResolvedPipeline,
    sources: &[SourceTable],
    keys: &HashMap<TableName, Vec<String>>,
) -> Result<(Writers, HashMap<TableName, String>), PipelineError> {
    let name = &resolved.name;
    let mut writers = HashMap::new();
    let mut stopped = HashMap::new();
    for (table, source) in resolved.tables.iter().zip(sources) {
        let layout = table_layout(name, table, source)?;
        let app_id = format!("pgdelta-{name}-{}", table.name);
        let key = keys[&table.name].clone();
        let mut writer =
            DeltaTableWriter::open_or_create(&table.path, table.name.clone(), app_id, key, layout)
                .await?;
        match plan_evolution(&writer, &source_schema(source, &keys[&table.name]))? {
            Evolution::Unchanged => {}
            Evolution::AddColumns(fields) => add_columns(&mut writer, fields).await?,
            Evolution::Stop(reason) => {
                stopped.insert(table.name.clone(), reason);
            }
        }
        writers.insert(table.name.clone(), writer);
    }
    Ok((writers, stopped))
}

type Writers = HashMap<TableName, DeltaTableWriter>;

/// The run's result: an error naming the stopped tables, if any were.
fn run_result(
    summary: RunSummary,
    stopped: &HashMap<TableName, String>,
    pipeline: String,
) -> Result<RunSummary, PipelineError> {
    if stopped.is_empty() {
        return Ok(summary);
    }
    let mut stopped: Vec<String> = stopped
        .iter()
        .map(|(t, why)| format!("  - {t}: {why}"))
        .collect();
    stopped.sort();
    Err(PipelineError::TablesStopped { pipeline, stopped })
}

/// Whether the table's key is its primary key (a key set in the config is not enforced
/// unique by PostgreSQL, so its inserts may repeat a key).
fn keyed_by_primary_key(resolved: &ResolvedPipeline, table: &TableName) -> bool {
    resolved
        .tables
        .iter()
        .any(|t| &t.name == table && t.key.is_empty())
}

fn source_schema(source: &SourceTable, key: &[String]) -> TableSchema {
    TableSchema {
        table: source.name.clone(),
        columns: source.column_schemas(key),
    }
}

/// Where a Delta commit's changes came from, recorded in the same commit.
#[derive(Debug, Clone, Default)]
struct SourcePosition {
    lsn: Option<Lsn>,
    offsets: Vec<KafkaOffset>,
}

impl SourcePosition {
    fn at(lsn: Lsn) -> SourcePosition {
        SourcePosition {
            lsn: Some(lsn),
            offsets: Vec::new(),
        }
    }
}

/// One Delta commit for one table; under `on_error = "dead_letter"`, rows whose values
/// cannot be converted are written to the dead-letter file and the rest is applied.
/// `append_safe`: the table is keyed by its primary key, so in direct mode a batch of inserts
/// only holds keys Delta cannot have yet and is appended instead of MERGEd.
async fn apply_or_dead_letter(
    writer: &mut DeltaTableWriter,
    changes: &mut TableChanges,
    position: &SourcePosition,
    append_safe: bool,
    resolved: &ResolvedPipeline,
    observer: &Observer,
) -> Result<(), PipelineError> {
    let table = writer.table_name().clone();
    if append_safe && changes.only_inserts && position.offsets.is_empty() {
        if let Some(lsn) = position.lsn {
            match writer.append_inserts(changes, lsn).await {
                Ok(rows) => {
                    tracing::debug!(%table, %lsn, rows, version = ?writer.version(), "appended to Delta");
                    return Ok(());
                }
                // The MERGE path below sorts out (or dead-letters) what does not convert.
                Err(SinkError::Convert { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let error = match writer
        .apply_from(changes, position.lsn, &position.offsets)
        .await
    {
        Ok(()) => {
            tracing::debug!(%table, lsn = ?position.lsn, events = changes.events, version = ?writer.version(), "committed to Delta");
            return Ok(());
        }
        Err(error @ SinkError::Convert { .. }) if resolved.on_error == ErrorPolicy::DeadLetter => {
            error
        }
        Err(error) => return Err(error.into()),
    };
    let rejected = writer.unconvertible_rows(changes);
    if rejected.is_empty() {
        return Err(error.into());
    }
    let letters: Vec<DeadLetter> = rejected
        .iter()
        .map(|(key, reason)| DeadLetter {
            pipeline: &resolved.name,
            table: table.to_string(),
            lsn: position.lsn,
            record: None,
            error: reason.clone(),
            operation: "upsert",
            payload: dead_letter::payload_of(changes, key),
            recorded_at: chrono::Utc::now(),
        })
        .collect();
    let file = write_dead_letters(resolved, &letters)?;
    tracing::error!(%table, lsn = ?position.lsn, rows = letters.len(), file = %file.display(), "changes that cannot be applied went to the dead-letter file");
    observer.record_errors("dead_letter", rejected.len() as u64);
    for (key, _) in &rejected {
        changes.remove(key);
    }
    writer
        .apply_from(changes, position.lsn, &position.offsets)
        .await?;
    Ok(())
}

fn write_dead_letters(
    resolved: &ResolvedPipeline,
    letters: &[DeadLetter<'_>],
) -> Result<std::path::PathBuf, PipelineError> {
    let file = DeadLetterFile::new(&resolved.dead_letter_path);
    file.append(letters).map_err(|e| PipelineError::Setup {
        pipeline: resolved.name.clone(),
        message: e.to_string(),
    })?;
    Ok(file.path().to_path_buf())
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

/// Creates the slot if needed and copies the tables that have no pgdelta position yet: under
/// the new slot's own snapshot, or, when the slot already exists (an interrupted snapshot, a
/// table added later), under a temporary slot's snapshot. Streaming then skips, per table,
/// every transaction the copy already holds.
async fn take_initial_snapshot(
    client: &Client,
    settings: &ConnectionSettings,
    resolved: &ResolvedPipeline,
    writers: &mut HashMap<TableName, DeltaTableWriter>,
    sources: Vec<SourceTable>,
) -> Result<(), PipelineError> {
    let slot_exists = pg::slot_position(client, &resolved.slot).await?.is_some();
    let jobs: Vec<snapshot::CopyJob> = match resolved.snapshot_mode {
        SnapshotMode::Never => Vec::new(),
        _ => {
            let needs_copy: Vec<SourceTable> = sources
                .into_iter()
                .filter(|source| writers[&source.name].last_applied_lsn().is_none())
                .collect();
            needs_copy
                .into_iter()
                .map(|source| snapshot::CopyJob {
                    writer: writers.remove(&source.name).expect("a writer per table"),
                    source,
                })
                .collect()
        }
    };
    if jobs.is_empty() {
        pg::ensure_slot(client, &resolved.slot).await?;
        return Ok(());
    }
    let exported = match slot_exists {
        false => pg::snapshot::create_slot_with_snapshot(settings, &resolved.slot, false).await?,
        true => {
            let temporary = format!("{}_snap_{}", resolved.slot, std::process::id());
            pg::snapshot::create_slot_with_snapshot(settings, &temporary, true).await?
        }
    };
    let tables: Vec<String> = jobs.iter().map(|j| j.source.name.to_string()).collect();
    tracing::info!(tables = %tables.join(", "), at = %exported.consistent_point, "initial snapshot starting");
    let copied =
        snapshot::copy_tables(settings, &exported, jobs, resolved.snapshot_parallelism).await?;
    for writer in copied {
        writers.insert(writer.table_name().clone(), writer);
    }
    Ok(())
}

async fn describe_tables(
    client: &Client,
    resolved: &ResolvedPipeline,
) -> Result<Vec<SourceTable>, SourceError> {
    let mut tables = Vec::new();
    for table in &resolved.tables {
        tables.push(pg::introspect_table(client, &table.name).await?);
    }
    Ok(tables)
}

/// Each table's key columns: configured, else the primary key.
fn table_keys(
    resolved: &ResolvedPipeline,
    sources: &[SourceTable],
) -> HashMap<TableName, Vec<String>> {
    resolved
        .tables
        .iter()
        .zip(sources)
        .map(|(table, source)| (table.name.clone(), key_columns(table, source)))
        .collect()
}

fn key_columns(table: &ResolvedTable, source: &SourceTable) -> Vec<String> {
    if table.key.is_empty() {
        source.primary_key.clone()
    } else {
        table.key.clone()
    }
}

/// The Delta columns for a source table: same names and order, every column nullable.
fn table_layout(
    pipeline: &str,
    table: &ResolvedTable,
    source: &SourceTable,
) -> Result<TableLayout, PipelineError> {
    let columns = source
        .columns
        .iter()
        .map(|column| {
            let data_type = delta_type_named(column.type_oid, column.type_modifier, &column.type_name).unwrap_or_else(|| {
                tracing::warn!(table = %source.name, column = %column.name, pg_type = %column.type_name,
                    "type has no Delta counterpart; stored as its PostgreSQL text form");
                DataType::STRING
            });
            StructField::new(column.name.clone(), data_type, true)
        })
        .collect();
    for partition in &table.partition_by {
        if !source.columns.iter().any(|c| &c.name == partition) {
            return Err(PipelineError::Setup {
                pipeline: pipeline.to_string(),
                message: format!(
                    "partition_by column '{partition}' is not a column of {}",
                    table.name
                ),
            });
        }
    }
    Ok(TableLayout {
        columns,
        partition_by: table.partition_by.clone(),
    })
}
