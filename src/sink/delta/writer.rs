//! Applies collapsed batches to one Delta table with MERGE, one Delta commit per batch,
//! recording the source position in the commit's `txn` action for exactly-once restarts.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use deltalake::datafusion::common::Column;
use deltalake::datafusion::prelude::{lit, when, Expr, SessionContext};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, StructField, Transaction};
use deltalake::operations::merge::MergeBuilder;
use deltalake::parquet::basic::Compression;
use deltalake::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, TableProperty};

use super::changes::{RowChange, TableChanges};
use super::commit_hint::CommitHint;
use super::convert::{build_array, build_columns, ConvertError};
use super::deletion_vectors::{self, KeyIndex};
use super::storage;
use super::txn::kafka_app_id;
use crate::config::{StorageOptions, WriteMode};
use crate::event::{Cell, Lsn, TableName, TopicPartition};

const OP_COLUMN: &str = "__pgdelta_op";
const KEEP_PREFIX: &str = "__pgdelta_keep_";
const SOURCE: &str = "source";
const TARGET: &str = "target";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("Delta table {location}: {source}")]
    Delta {
        location: String,
        #[source]
        source: DeltaTableError,
    },
    #[error("table {table}, column '{column}': {source}")]
    Convert {
        table: TableName,
        column: String,
        #[source]
        source: Box<ConvertError>,
    },
    #[error(transparent)]
    Changes(#[from] super::changes::ChangeError),
    #[error(
        "Delta table {location} already holds data but no pgdelta position for {table}: \
         it was not written by this pipeline; point the table's path elsewhere or remove it"
    )]
    NotOurs {
        location: String,
        table: Box<TableName>,
    },
    #[error(
        "Delta table {location} belongs to {owner}: it was not written by this pipeline; \
         give each pipeline and table its own path"
    )]
    OwnedByAnother { location: String, owner: String },
    #[error("{reason}")]
    Unwritable { location: String, reason: String },
    #[error(
        "the object store of Delta table {location} does not refuse to overwrite an existing object \
         (conditional writes, If-None-Match): two writers could overwrite each other's commits. \
         Use a store that supports them (AWS S3, MinIO, R2 do), or set unsafe_single_writer = true \
         in the pipeline if this process is certainly the only writer"
    )]
    NoConditionalPut { location: String },
    #[error("object store of Delta table {location}: {reason}")]
    Store { location: String, reason: String },
}

impl SinkError {
    /// Whether trying again later may help: the store was unreachable, slow or answered with
    /// an error, as opposed to a conflict with another writer or a value Delta cannot hold.
    pub fn is_transient(&self) -> bool {
        use deltalake::kernel::transaction::TransactionError;
        match self {
            SinkError::Delta { source, .. } => {
                matches!(
                    source,
                    DeltaTableError::ObjectStore { .. }
                        | DeltaTableError::Io { .. }
                        | DeltaTableError::Transaction {
                            source: TransactionError::ObjectStore { .. }
                        }
                ) || caused_by_the_store(source)
            }
            SinkError::Store { .. } | SinkError::Unwritable { .. } => true,
            _ => false,
        }
    }
}

impl SinkError {
    /// Whether the commit lost a race with another writer's (e.g. a `pgdelta table
    /// optimize` run by hand): on the table's new version it may well go through.
    pub fn is_conflict(&self) -> bool {
        matches!(self, SinkError::Delta { source, .. } if lost_a_race(source))
    }
}

/// Whether a Delta operation failed because another writer committed first.
pub fn lost_a_race(error: &DeltaTableError) -> bool {
    use deltalake::kernel::transaction::TransactionError;
    matches!(
        error,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(_)
                    | TransactionError::VersionAlreadyExists(_)
                    | TransactionError::MaxCommitAttempts(_)
            }
    )
}

/// Whether an object-store failure (other than "already exists", which is how a lost
/// commit race shows) is among the error's causes: writing a Parquet file or reading the
/// log wraps them.
fn caused_by_the_store(error: &(dyn std::error::Error + 'static)) -> bool {
    use deltalake::ObjectStoreError;
    let mut cause = Some(error);
    while let Some(error) = cause {
        let store = error.downcast_ref::<ObjectStoreError>().or_else(|| {
            // The kernel wraps the store's error without naming it as its source.
            match error.downcast_ref::<delta_kernel::Error>() {
                Some(delta_kernel::Error::ObjectStore(store)) => Some(store),
                _ => None,
            }
        });
        if let Some(store) = store {
            return !matches!(
                store,
                ObjectStoreError::AlreadyExists { .. } | ObjectStoreError::Precondition { .. }
            );
        }
        // An io::Error's `source` skips the error it wraps (Parquet uploads wrap the store's).
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if caused_by_the_store(inner) {
                return true;
            }
        }
        cause = error.source();
    }
    false
}

/// Table property naming the pipeline and source table that write a Delta table.
const OWNER_PROPERTY: &str = "pgdelta.owner";
/// The commit metadata key naming the process that made a commit.
pub const MEMBER_METADATA: &str = "pgdelta.member";
/// Kafka mode: the commit metadata key of the offsets a commit holds, `{topic: {partition:
/// next offset}}` (the same as its `txn` actions, which no reader lists).
pub const OFFSETS_METADATA: &str = "pgdelta.kafkaOffsets";
/// The commit metadata key of the commit LSN of the newest source transaction a commit holds.
pub const LSN_METADATA: &str = "pgdelta.lsn";

/// Rows of an initial copy being written to Parquet files, not yet committed.
pub struct SnapshotAppender {
    writer: RecordBatchWriter,
    schema: SchemaRef,
    rows: u64,
}

impl SnapshotAppender {
    /// Appends the rows of `changes`, which must all be upserts (inserts of new keys).
    pub async fn append_changes(&mut self, changes: &TableChanges) -> Result<(), SinkError> {
        let rows: Vec<&[Cell]> = changes
            .rows()
            .filter_map(|(_, change)| match change {
                RowChange::Upsert(cells) => Some(cells.as_slice()),
                RowChange::Delete => None,
            })
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let batch = self.record_batch(changes.table(), rows.len(), |row, column| {
            rows[row][column].as_text()
        })?;
        self.write(changes.table(), batch).await
    }

    /// Appends rows whose values come from `positions`: for each Delta column, the index of
    /// its value in a row, or `None` when the source no longer has that column.
    pub async fn append(
        &mut self,
        table: &TableName,
        rows: &[Vec<Option<String>>],
        positions: &[Option<usize>],
    ) -> Result<(), SinkError> {
        let batch = self.record_batch(table, rows.len(), |row, column| {
            positions[column].and_then(|p| rows[row][p].as_deref())
        })?;
        self.write(table, batch).await
    }

    /// The rows as Arrow columns: `value(row, column)` gives the text of one cell.
    fn record_batch<'a>(
        &self,
        table: &TableName,
        rows: usize,
        value: impl Fn(usize, usize) -> Option<&'a str>,
    ) -> Result<RecordBatch, SinkError> {
        let types = self.schema.fields().iter().map(|f| f.data_type());
        let arrays = build_columns(types, rows, value)
            .map_err(|(column, error)| unconvertible(table, self.schema.field(column), error))?;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| SinkError::Delta {
            location: table.to_string(),
            source: e.into(),
        })
    }

    async fn write(&mut self, table: &TableName, batch: RecordBatch) -> Result<(), SinkError> {
        let rows = batch.num_rows() as u64;
        self.writer
            .write(batch)
            .await
            .map_err(|source| SinkError::Delta {
                location: table.to_string(),
                source,
            })?;
        self.rows += rows;
        Ok(())
    }
}

/// One Delta table fed by one source table.
pub struct DeltaTableWriter {
    pub(super) table: DeltaTable,
    pub(super) location: String,
    source_table: TableName,
    app_id: String,
    schema: SchemaRef,
    key: Vec<String>,
    last_applied: Option<Lsn>,
    /// Set in the deletion-vector write mode: where each key's live row is.
    row_index: Option<KeyIndex>,
    /// The process that commits, recorded in each commit (`pgdelta.member`).
    member: Option<String>,
    /// The store refuses to overwrite a commit file: commits can skip looking for newer
    /// versions first (see [`CommitHint`]).
    hint_commits: bool,
    /// Kafka mode: the offsets the loaded table version holds, as far as read.
    known_offsets: KnownOffsets,
}

/// Kafka mode: per topic-partition, the next offset a table version does not hold (`None`
/// when it holds none of the partition). Bound to the version it was read from: any other
/// loaded version (another member's commit, maintenance, a reload) starts it afresh, so a
/// commit never relies on offsets of a version it is not made on.
#[derive(Debug, Default)]
struct KnownOffsets {
    version: Option<u64>,
    next: HashMap<TopicPartition, Option<i64>>,
}

impl KnownOffsets {
    /// The offsets known for `version`; forgets those of any other.
    fn at(&mut self, version: Option<u64>) -> &mut HashMap<TopicPartition, Option<i64>> {
        if self.version != version {
            *self = KnownOffsets {
                version,
                next: HashMap::new(),
            };
        }
        &mut self.next
    }

    /// The versions after the known one up to `version`, when they are few enough that
    /// reading their commits costs less than reading the offsets afresh (which replays the
    /// log back to its last checkpoint, once per partition).
    fn versions_up_to(&self, version: Option<u64>) -> Option<std::ops::RangeInclusive<u64>> {
        let (Some(known), Some(version)) = (self.version, version) else {
            return None;
        };
        if self.next.is_empty() {
            return None;
        }
        (version > known && version - known <= COMMITS_READ_FORWARD).then(|| known + 1..=version)
    }

    /// The commits after the known version up to `version` hold `transactions` (in commit
    /// order): what was known moves on to `version`.
    fn moved_on(
        &mut self,
        version: u64,
        transactions: &[Transaction],
        app_id: impl Fn(&TopicPartition) -> String,
    ) {
        for (partition, next) in &mut self.next {
            let app_id = app_id(partition);
            if let Some(latest) = transactions.iter().rev().find(|t| t.app_id == app_id) {
                *next = Some(latest.version);
            }
        }
        self.version = Some(version);
    }

    /// This writer's commit of `offsets` made `read_version` into `version`: what was known
    /// of `read_version` holds for `version` too, with `offsets` moved on.
    fn committed(
        &mut self,
        read_version: Option<u64>,
        version: Option<u64>,
        offsets: &[KafkaOffset],
    ) {
        if self.version != read_version {
            return;
        }
        self.version = version;
        for offset in offsets {
            self.next
                .insert(offset.partition.clone(), Some(offset.next_offset));
        }
    }
}

/// At most this many commits since the version whose offsets are known are read to move
/// them on (other members' commits, maintenance); further behind, they are read afresh.
const COMMITS_READ_FORWARD: u64 = 16;

/// Kafka mode: the next offset of one topic-partition, recorded in a Delta commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOffset {
    pub partition: TopicPartition,
    pub next_offset: i64,
}

/// How a new Delta table should look.
pub struct TableLayout {
    pub columns: Vec<StructField>,
    pub partition_by: Vec<String>,
    /// Table properties to create it with (e.g. checkpoint and log-retention settings).
    pub properties: HashMap<String, String>,
    /// How updates and deletes are written; an existing table is upgraded for deletion vectors.
    pub write_mode: WriteMode,
}

impl DeltaTableWriter {
    /// Opens the Delta table at `location` (reached with `storage`), creating it with
    /// `layout` and CDF on if absent.
    pub async fn open_or_create(
        location: &str,
        storage: &StorageOptions,
        source_table: TableName,
        app_id: String,
        key: Vec<String>,
        layout: TableLayout,
    ) -> Result<Self, SinkError> {
        let delta_err = |source| SinkError::Delta {
            location: location.to_string(),
            source,
        };
        let mut table = storage::open_or_empty(location, storage)
            .await
            .map_err(delta_err)?;
        let write_mode = layout.write_mode;
        if table.version().is_none() {
            table = match create_table(table, &source_table, &app_id, layout).await {
                Ok(created) => created,
                // Another process created it first: what it wrote decides below.
                Err(error) => match created_by_another(location, storage).await {
                    Some(existing) => {
                        // Routine when several members of a pipeline start together.
                        tracing::info!(%error, location, "another process created the Delta table first");
                        existing
                    }
                    None => return Err(delta_err(error)),
                },
            };
        }
        let snapshot = table.snapshot().map_err(delta_err)?;
        if let Some(owner) = snapshot.metadata().configuration().get(OWNER_PROPERTY) {
            if *owner != app_id {
                return Err(SinkError::OwnedByAnother {
                    location: location.to_string(),
                    owner: owner.clone(),
                });
            }
        }
        let schema = snapshot.snapshot().arrow_schema();
        let row_index = match write_mode {
            WriteMode::CopyOnWrite => None,
            WriteMode::DeletionVectors => {
                table = enable_deletion_vectors(table, &source_table)
                    .await
                    .map_err(delta_err)?;
                Some(KeyIndex::new(&schema, &key).map_err(delta_err)?)
            }
        };
        let mut writer = DeltaTableWriter {
            schema,
            table,
            location: location.to_string(),
            source_table,
            app_id,
            key,
            last_applied: None,
            row_index,
            member: None,
            hint_commits: false,
            known_offsets: KnownOffsets::default(),
        };
        writer.read_state().await?;
        Ok(writer)
    }

    /// Records `member` as the committer in every commit this writer makes from now on.
    pub fn set_member(&mut self, member: &str) {
        self.member = Some(member.to_string());
    }

    /// Commit metadata naming the process that commits, when it is known.
    fn member_metadata(&self) -> Option<(String, serde_json::Value)> {
        let member = self.member.as_ref()?;
        Some((MEMBER_METADATA.to_string(), member.clone().into()))
    }

    /// On an object store: checks that the store takes writes and refuses to overwrite an
    /// existing object, which makes Delta commits safe with several writers.
    pub async fn check_object_store(
        &mut self,
        unsafe_single_writer: bool,
    ) -> Result<(), SinkError> {
        if !storage::is_object_store(&self.location) {
            return Ok(());
        }
        storage::probe_writable(&self.table)
            .await
            .map_err(|reason| SinkError::Unwritable {
                location: self.location.clone(),
                reason,
            })?;
        match storage::honours_conditional_put(&self.table).await {
            Ok(true) => {
                self.hint_commits = true;
                Ok(())
            }
            Ok(false) if unsafe_single_writer => {
                tracing::warn!(location = %self.location, "unsafe single-writer mode: the object store does not honour conditional writes, so a second writer could overwrite this one's commits");
                Ok(())
            }
            Ok(false) => Err(SinkError::NoConditionalPut {
                location: self.location.clone(),
            }),
            Err(error) => Err(SinkError::Store {
                location: self.location.clone(),
                reason: storage::without_secrets(&error.to_string()),
            }),
        }
    }

    /// Takes the position and columns from the loaded table version.
    pub(super) async fn read_state(&mut self) -> Result<(), SinkError> {
        let app_id = self.app_id.clone();
        self.last_applied = self
            .transaction_version(&app_id)
            .await?
            .map(|v| Lsn(v as u64));
        self.schema = self.delta(self.table.snapshot())?.snapshot().arrow_schema();
        Ok(())
    }

    /// The version of the application transaction `app_id` in the loaded table version.
    async fn transaction_version(&self, app_id: &str) -> Result<Option<i64>, SinkError> {
        let snapshot = self.delta(self.table.snapshot())?;
        let version = snapshot
            .transaction_version(self.table.log_store().as_ref(), app_id)
            .await;
        self.delta(version)
    }

    pub(super) fn delta<T>(&self, result: Result<T, DeltaTableError>) -> Result<T, SinkError> {
        result.map_err(|source| SinkError::Delta {
            location: self.location.clone(),
            source,
        })
    }

    /// The commit LSN of the last source transaction this table holds.
    pub fn last_applied_lsn(&self) -> Option<Lsn> {
        self.last_applied
    }

    pub fn version(&self) -> Option<u64> {
        self.table.version()
    }

    pub fn table_name(&self) -> &TableName {
        &self.source_table
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn column_names(&self) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// The Delta columns with their Delta types.
    pub fn column_types(&self) -> Result<Vec<(String, deltalake::kernel::DataType)>, SinkError> {
        let snapshot = self.table.snapshot().map_err(|source| SinkError::Delta {
            location: self.location.clone(),
            source,
        })?;
        Ok(snapshot
            .schema()
            .fields()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect())
    }

    /// Adds nullable columns at the end; rows written before hold null in them.
    pub async fn add_columns(&mut self, fields: Vec<StructField>) -> Result<(), SinkError> {
        let delta_err = |source| SinkError::Delta {
            location: self.location.clone(),
            source,
        };
        let table = self
            .table
            .clone()
            .add_columns()
            .with_fields(fields)
            .await
            .map_err(delta_err)?;
        self.schema = table
            .snapshot()
            .map_err(delta_err)?
            .snapshot()
            .arrow_schema();
        self.table = table;
        Ok(())
    }

    /// An empty change set for this table's columns and key.
    pub fn new_changes(&self) -> TableChanges {
        TableChanges::new(self.source_table.clone(), self.column_names(), &self.key)
    }

    /// Applies `changes` as one Delta commit that records, in the same commit, the source
    /// position: `lsn` when known (only moved forward), and for Kafka mode the next offset of
    /// every topic-partition that fed it.
    pub async fn apply_from(
        &mut self,
        changes: &TableChanges,
        lsn: Option<Lsn>,
        offsets: &[KafkaOffset],
    ) -> Result<(), SinkError> {
        if changes.is_empty() {
            return Ok(());
        }
        let lsn = lsn.filter(|lsn| self.last_applied.is_none_or(|applied| *lsn > applied));
        let mut transactions: Vec<Transaction> = offsets
            .iter()
            .map(|o| Transaction::new(kafka_app_id(&self.app_id, &o.partition), o.next_offset))
            .collect();
        let mut metadata: Vec<_> = self.member_metadata().into_iter().collect();
        if !offsets.is_empty() {
            metadata.push((OFFSETS_METADATA.to_string(), offsets_metadata(offsets)));
        }
        if let Some(lsn) = lsn {
            // In Kafka mode the position is each partition's offset; a table-level `txn` as
            // well would make every commit of one consumer group's members conflict with the
            // others' (Delta fails a commit that sets an application id the winner set too),
            // appends included. The LSN stays in the metadata for `status` and `validate`.
            if offsets.is_empty() {
                transactions.push(Transaction::new(&self.app_id, lsn.as_i64()));
            }
            metadata.push((LSN_METADATA.to_string(), lsn.to_string().into()));
        }
        let commit = commit_properties()
            .with_application_transactions(transactions)
            .with_metadata(metadata);
        let read_version = self.table.version();
        let hint = self.hint_next_commit();
        let updated = self.commit_changes(changes, commit).await;
        drop(hint);
        self.table = updated?;
        if self.table.version() > read_version.map(|v| v + 1) {
            // Another writer (a member of the consumer group) committed in between and this
            // commit went on after it: its position may be ahead of this batch's.
            self.read_state().await?;
        } else {
            // A MERGE that changes nothing commits nothing (the version stays).
            if self.table.version() != read_version {
                let version = self.table.version();
                self.known_offsets.committed(read_version, version, offsets);
            }
            if lsn.is_some() {
                self.last_applied = lsn;
            }
        }
        Ok(())
    }

    /// Tells the log store, until the hint is dropped, that the next commit follows the
    /// loaded version, when the store makes that safe.
    fn hint_next_commit(&self) -> Option<CommitHint> {
        self.hint_commits
            .then(|| CommitHint::next_commit_of(&self.table))
    }

    /// One commit of `changes`: deletion vectors, a delete, or a MERGE.
    async fn commit_changes(
        &mut self,
        changes: &TableChanges,
        commit: CommitProperties,
    ) -> Result<DeltaTable, SinkError> {
        let table = self.table.clone();
        let delta_err = |source| SinkError::Delta {
            location: self.location.clone(),
            source,
        };
        let updated = if let Some(index) = self.row_index.as_mut().filter(|_| !changes.truncated) {
            let target = deletion_vectors::Target {
                table: &table,
                schema: &self.schema,
                source_table: &self.source_table,
                location: &self.location,
            };
            deletion_vectors::apply(target, index, changes, commit).await?
        } else if changes.rows().next().is_none() {
            table
                .delete()
                .with_commit_properties(commit)
                .await
                .map_err(delta_err)?
                .0
        } else {
            let batch = self.source_batch(changes)?;
            let merge = self
                .merge_builder(table, batch, changes.truncated)
                .map_err(delta_err)?;
            merge
                .with_commit_properties(commit)
                .await
                .map_err(delta_err)?
                .0
        };
        Ok(updated)
    }

    /// The offset of the next record of `partition` the loaded table version has not
    /// applied (read from the Delta log once per version).
    pub async fn kafka_next_offset(
        &mut self,
        partition: &TopicPartition,
    ) -> Result<Option<i64>, SinkError> {
        self.move_known_offsets_on().await?;
        let version = self.table.version();
        if let Some(next) = self.known_offsets.at(version).get(partition) {
            return Ok(*next);
        }
        let next = self
            .transaction_version(&kafka_app_id(&self.app_id, partition))
            .await?;
        self.known_offsets
            .at(version)
            .insert(partition.clone(), next);
        Ok(next)
    }

    /// Brings the known offsets to the loaded version through the application transactions
    /// of the commits in between; leaves them to be read afresh where a commit is gone.
    async fn move_known_offsets_on(&mut self) -> Result<(), SinkError> {
        let Some(versions) = self.known_offsets.versions_up_to(self.table.version()) else {
            return Ok(());
        };
        let to = *versions.end();
        let log_store = self.table.log_store();
        let mut transactions = Vec::new();
        for version in versions {
            let Some(commit) = self.delta(log_store.read_commit_entry(version).await)? else {
                return Ok(());
            };
            let actions = self.delta(deltalake::logstore::get_actions(version, &commit))?;
            transactions.extend(actions.into_iter().filter_map(|action| match action {
                Action::Txn(transaction) => Some(transaction),
                _ => None,
            }));
        }
        let app_id = &self.app_id;
        self.known_offsets.moved_on(to, &transactions, |partition| {
            kafka_app_id(app_id, partition)
        });
        Ok(())
    }

    /// Reads the table's latest version (another process may have committed since).
    pub async fn reload(&mut self) -> Result<(), SinkError> {
        let updated = self.table.update_state().await;
        self.delta(updated)?;
        self.read_state().await
    }

    /// The rows of `changes` whose values do not convert to the Delta column types, with
    /// the reason. Only used after a batch failed, so it may be slow.
    pub fn unconvertible_rows(&self, changes: &TableChanges) -> Vec<(Vec<Cell>, String)> {
        let mut rejected = Vec::new();
        for (key, change) in changes.rows() {
            let RowChange::Upsert(cells) = change else {
                continue;
            };
            let failure = self
                .schema
                .fields()
                .iter()
                .zip(cells)
                .find_map(|(field, cell)| {
                    build_array(field.data_type(), &[cell.as_text()])
                        .err()
                        .map(|e| format!("column '{}': {e}", field.name()))
                });
            if let Some(reason) = failure {
                rejected.push((key.clone(), reason));
            }
        }
        rejected
    }

    /// Starts a bulk append of the table's initial copy; nothing is visible until
    /// [`DeltaTableWriter::commit_snapshot`].
    pub fn begin_snapshot(&self) -> Result<SnapshotAppender, SinkError> {
        // Files, not versions: table-property commits (maintenance settings) hold no rows.
        let has_rows = self
            .table
            .snapshot()
            .is_ok_and(|s| s.log_data().num_files() > 0);
        if has_rows && self.last_applied.is_none() {
            return Err(SinkError::NotOurs {
                location: self.location.clone(),
                table: Box::new(self.source_table.clone()),
            });
        }
        self.begin_append()
    }

    /// Commits a finished snapshot as one Delta commit tagged with the snapshot's position.
    pub async fn commit_snapshot(
        &mut self,
        appender: SnapshotAppender,
        lsn: Lsn,
    ) -> Result<u64, SinkError> {
        self.commit_appended(appender, lsn, "pgdelta.snapshot_lsn")
            .await
    }

    /// Whether a `--resnapshot` started on this table and has not replaced its rows yet: the
    /// slot its position belongs to is gone, so streaming on would skip changes.
    pub fn resnapshot_pending(&self) -> bool {
        self.table.snapshot().is_ok_and(|s| {
            s.metadata()
                .configuration()
                .get(RESNAPSHOT_PENDING)
                .is_some_and(|v| v == "true")
        })
    }

    /// Records in the table (before the slot is dropped) that a `--resnapshot` is under way,
    /// or, once its copy is committed, that it is done.
    pub async fn set_resnapshot_pending(&mut self, pending: bool) -> Result<(), SinkError> {
        if self.resnapshot_pending() == pending {
            return Ok(());
        }
        let updated = self
            .table
            .clone()
            .set_tbl_properties()
            .with_properties(HashMap::from([(
                RESNAPSHOT_PENDING.to_string(),
                pending.to_string(),
            )]))
            // A property of pgdelta's own, not one of Delta's.
            .with_raise_if_not_exists(false)
            .with_commit_properties(commit_properties())
            .await;
        self.table = self.delta(updated)?;
        self.read_state().await
    }

    /// Commit properties that record `lsn` as this table's position (its `txn` version) and
    /// in the commit's metadata under `metadata_key`.
    fn tagged_with(&self, lsn: Lsn, metadata_key: &str) -> CommitProperties {
        commit_properties()
            .with_application_transaction(Transaction::new(&self.app_id, lsn.as_i64()))
            .with_metadata(
                std::iter::once((metadata_key.to_string(), lsn.to_string().into()))
                    .chain(self.member_metadata()),
            )
    }

    /// Commits a copy that replaces the table's rows (`pipeline start --resnapshot`): one
    /// commit removes every current file and adds the copied ones, tagged with the new
    /// slot's position. Readers of the change data feed see every old row deleted and every
    /// copied row inserted at that version.
    pub async fn commit_resnapshot(
        &mut self,
        mut appender: SnapshotAppender,
        lsn: Lsn,
    ) -> Result<u64, SinkError> {
        let location = self.location.clone();
        let delta_err = |source| SinkError::Delta {
            location: location.clone(),
            source,
        };
        let snapshot = self.table.snapshot().map_err(delta_err)?;
        let mut actions: Vec<Action> = snapshot
            .log_data()
            .iter()
            .map(|file| Action::Remove(file.remove_action(true)))
            .collect();
        let added = appender.writer.flush().await.map_err(delta_err)?;
        actions.extend(added.into_iter().map(Action::Add));
        let partition_columns = snapshot.metadata().partition_columns().to_vec();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: (!partition_columns.is_empty()).then_some(partition_columns),
            predicate: None,
        };
        let commit = self.tagged_with(lsn, "pgdelta.snapshot_lsn");
        CommitBuilder::from(commit)
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), operation)
            .await
            .map_err(delta_err)?;
        self.reload().await?;
        self.last_applied = Some(lsn);
        self.set_resnapshot_pending(false).await?;
        Ok(appender.rows)
    }

    /// Starts a bulk append of rows that cannot be in the table yet (a transaction's
    /// inserts); nothing is visible until [`DeltaTableWriter::commit_append`].
    pub fn begin_append(&self) -> Result<SnapshotAppender, SinkError> {
        Ok(SnapshotAppender {
            writer: self.delta(file_writer(&self.table))?,
            schema: self.schema.clone(),
            rows: 0,
        })
    }

    /// Appends `changes` (inserts only, of keys the table cannot hold yet) as one Delta commit
    /// tagged with `lsn`: much cheaper than a MERGE, which must look for every key.
    pub async fn append_inserts(
        &mut self,
        changes: &TableChanges,
        lsn: Lsn,
    ) -> Result<u64, SinkError> {
        let mut appender = self.begin_append()?;
        appender.append_changes(changes).await?;
        self.commit_append(appender, lsn).await
    }

    /// Commits appended rows as one Delta commit tagged with the transaction's `lsn`.
    pub async fn commit_append(
        &mut self,
        appender: SnapshotAppender,
        lsn: Lsn,
    ) -> Result<u64, SinkError> {
        self.commit_appended(appender, lsn, LSN_METADATA).await
    }

    async fn commit_appended(
        &mut self,
        mut appender: SnapshotAppender,
        lsn: Lsn,
        metadata_key: &str,
    ) -> Result<u64, SinkError> {
        let commit = self.tagged_with(lsn, metadata_key);
        appender.writer = appender.writer.with_commit_properties(commit);
        let hint = self.hint_next_commit();
        let committed = appender.writer.flush_and_commit(&mut self.table).await;
        drop(hint);
        committed.map_err(|source| SinkError::Delta {
            location: self.location.clone(),
            source,
        })?;
        self.last_applied = Some(lsn);
        Ok(appender.rows)
    }

    /// The MERGE source: the table's columns, the operation, and a keep-flag per column
    /// that has unchanged TOAST values.
    fn source_batch(&self, changes: &TableChanges) -> Result<RecordBatch, SinkError> {
        let rows: Vec<(&Vec<Cell>, &RowChange)> = changes.rows().collect();
        let key_positions = changes.key_positions();
        let types = self.schema.fields().iter().map(|f| f.data_type());
        let columns = build_columns(types, rows.len(), |row, column| {
            cell_text(rows[row], key_positions, column)
        })
        .map_err(|(column, error)| {
            unconvertible(&self.source_table, self.schema.field(column), error)
        })?;
        let mut keep = keep_flags(&rows, self.schema.fields().len());
        let mut fields: Vec<Field> = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for ((index, field), array) in self.schema.fields().iter().enumerate().zip(columns) {
            fields.push(Field::new(field.name(), field.data_type().clone(), true));
            arrays.push(array);
            if let Some(keep) = keep[index].take() {
                fields.push(Field::new(
                    format!("{KEEP_PREFIX}{index}"),
                    ArrowType::Boolean,
                    false,
                ));
                arrays.push(Arc::new(keep));
            }
        }
        let ops: StringArray = rows
            .iter()
            .map(|(_, change)| {
                Some(if matches!(change, RowChange::Delete) {
                    "delete"
                } else {
                    "upsert"
                })
            })
            .collect();
        fields.push(Field::new(OP_COLUMN, ArrowType::Utf8, false));
        arrays.push(Arc::new(ops));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|e| SinkError::Delta {
            location: self.location.clone(),
            source: e.into(),
        })
    }

    fn merge_builder(
        &self,
        table: DeltaTable,
        batch: RecordBatch,
        truncated: bool,
    ) -> Result<MergeBuilder, DeltaTableError> {
        let has_keep = |index: usize| {
            batch
                .schema()
                .index_of(&format!("{KEEP_PREFIX}{index}"))
                .is_ok()
        };
        let source = SessionContext::new().read_batch(batch.clone())?;
        let on = self
            .key
            .iter()
            .map(|k| qualified(TARGET, k).eq(qualified(SOURCE, k)))
            .reduce(Expr::and)
            .expect("tables always have at least one key column");
        let is_delete = qualified(SOURCE, OP_COLUMN).eq(lit("delete"));
        let is_upsert = qualified(SOURCE, OP_COLUMN).eq(lit("upsert"));
        let names = self.column_names();
        let mut merge = table
            .merge(source, on)
            .with_source_alias(SOURCE)
            .with_target_alias(TARGET)
            .when_matched_delete(|delete| delete.predicate(is_delete.clone()))?
            .when_matched_update(|mut update| {
                update = update.predicate(is_upsert.clone());
                for (index, name) in names.iter().enumerate() {
                    let value = if has_keep(index) {
                        when(
                            qualified(SOURCE, &format!("{KEEP_PREFIX}{index}")),
                            qualified(TARGET, name),
                        )
                        .otherwise(qualified(SOURCE, name))
                        .expect("a CASE with one branch and an ELSE is valid")
                    } else {
                        qualified(SOURCE, name)
                    };
                    update = update.update(Column::new_unqualified(name), value);
                }
                update
            })?
            .when_not_matched_insert(|mut insert| {
                insert = insert.predicate(is_upsert.clone());
                for name in &names {
                    insert = insert.set(Column::new_unqualified(name), qualified(SOURCE, name));
                }
                insert
            })?;
        if truncated {
            merge = merge.when_not_matched_by_source_delete(|delete| delete)?;
        }
        Ok(merge)
    }
}

fn qualified(relation: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(relation), name))
}

/// A writer of new data files for `table` that rolls a file once it reaches the table's
/// `delta.targetFileSize`, as MERGE does: files are written in the order rows arrive (key
/// order for a copy of a table clustered by its key), so a later MERGE of a few keys
/// rewrites only the files whose key range holds them.
pub(super) fn file_writer(table: &DeltaTable) -> Result<RecordBatchWriter, DeltaTableError> {
    use deltalake::table::config::TablePropertiesExt;
    let target = table.snapshot()?.table_config().target_file_size();
    // delta-rs's own default compression for the files it appends.
    let properties = data_file_properties(table, Compression::SNAPPY).build();
    Ok(RecordBatchWriter::for_table(table)?
        .with_target_file_size(target.get())
        .with_writer_properties(properties))
}

/// The Parquet settings of the data files pgdelta writes to `table`: delta-rs's name as the
/// writer, `compression`, and the page size deletion vectors read by.
pub(super) fn data_file_properties(
    table: &DeltaTable,
    compression: Compression,
) -> WriterPropertiesBuilder {
    let properties = WriterProperties::builder()
        .set_created_by(format!("delta-rs version {}", deltalake::crate_version()))
        .set_compression(compression);
    deletion_vectors::page_size_for(table, properties)
}

/// A cell's text; deletes carry only their key.
pub(super) fn cell_text<'a>(
    (key, change): (&'a Vec<Cell>, &'a RowChange),
    key_positions: &[usize],
    index: usize,
) -> Option<&'a str> {
    match change {
        RowChange::Upsert(cells) => cells[index].as_text(),
        RowChange::Delete => key_positions
            .iter()
            .position(|&k| k == index)
            .and_then(|i| key[i].as_text()),
    }
}

/// Per column, which rows keep the stored value (an unchanged TOASTed value): `None` for the
/// columns where no row does, which is nearly all of them.
pub(super) fn keep_flags(
    rows: &[(&Vec<Cell>, &RowChange)],
    columns: usize,
) -> Vec<Option<BooleanArray>> {
    // One pass in memory order finds the columns; only theirs are read again.
    let mut any_unchanged = vec![false; columns];
    for row in rows {
        for (index, any) in any_unchanged.iter_mut().enumerate() {
            *any |= keeps_stored_value(row, index);
        }
    }
    any_unchanged
        .iter()
        .enumerate()
        .map(|(index, &any)| {
            any.then(|| {
                let flags: Vec<bool> = rows
                    .iter()
                    .map(|row| keeps_stored_value(row, index))
                    .collect();
                BooleanArray::from(flags)
            })
        })
        .collect()
}

fn keeps_stored_value((_, change): &(&Vec<Cell>, &RowChange), index: usize) -> bool {
    matches!(change, RowChange::Upsert(cells) if matches!(cells[index], Cell::UnchangedToast))
}

/// A value of `field` that does not convert, named by table and column.
pub(super) fn unconvertible(table: &TableName, field: &Field, error: ConvertError) -> SinkError {
    SinkError::Convert {
        table: table.clone(),
        column: field.name().clone(),
        source: Box::new(error),
    }
}

/// `{topic: {partition: next offset}}`.
fn offsets_metadata(offsets: &[KafkaOffset]) -> serde_json::Value {
    let mut topics = serde_json::Map::new();
    for offset in offsets {
        let partitions = topics
            .entry(offset.partition.topic.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        partitions[offset.partition.partition.to_string()] = offset.next_offset.into();
    }
    serde_json::Value::Object(topics)
}

/// What every pgdelta commit starts from. delta-rs would otherwise look for expired log
/// entries after each commit, listing the whole `_delta_log` (on a local disk, a stat of
/// every entry): a commit would cost more with every commit in the log retention. VACUUM
/// cleans the log instead (see `maintenance::vacuum_table`).
pub(super) fn commit_properties() -> CommitProperties {
    CommitProperties::default().with_cleanup_expired_logs(Some(false))
}

/// The table property that marks an unfinished `--resnapshot`.
const RESNAPSHOT_PENDING: &str = "pgdelta.resnapshotPending";

/// The table another process created at `location` while this one tried to: its first
/// commit can take a moment to be listed after it made ours fail (seconds on a loaded
/// machine), so this looks for up to 10 s.
async fn created_by_another(location: &str, storage: &StorageOptions) -> Option<DeltaTable> {
    const LOOKS: u32 = 50;
    for look in 0..LOOKS {
        if look > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        match storage::open_or_empty(location, storage).await {
            Ok(existing) if existing.version().is_some() => return Some(existing),
            Ok(_) | Err(_) => continue,
        }
    }
    None
}

/// Turns deletion vectors on for a table created without them: its protocol goes to reader 3 /
/// writer 7 (readers that do not know the feature can no longer read it).
async fn enable_deletion_vectors(
    table: DeltaTable,
    source_table: &TableName,
) -> Result<DeltaTable, DeltaTableError> {
    if deletion_vectors::enabled(&table) {
        return Ok(table);
    }
    tracing::info!(table = %source_table, location = %table.table_url(), "turning on deletion vectors: the table's protocol becomes reader 3 / writer 7");
    table
        .set_tbl_properties()
        .with_properties(HashMap::from([(
            deletion_vectors::ENABLE_PROPERTY.to_string(),
            "true".to_string(),
        )]))
        .with_commit_properties(commit_properties())
        .await
}

async fn create_table(
    table: DeltaTable,
    source_table: &TableName,
    owner: &str,
    layout: TableLayout,
) -> Result<DeltaTable, DeltaTableError> {
    tracing::info!(table = %source_table, location = %table.table_url(), "creating Delta table with change data feed");
    table
        .create()
        .with_table_name(source_table.name.clone())
        .with_comment(format!(
            "Replicated from PostgreSQL table {source_table} by pgdelta"
        ))
        .with_columns(layout.columns)
        .with_partition_columns(layout.partition_by)
        .with_configuration_property(TableProperty::EnableChangeDataFeed, Some("true"))
        .with_configuration([(OWNER_PROPERTY, Some(owner))])
        .with_configuration(layout.properties.into_iter().map(|(k, v)| (k, Some(v))))
        .with_configuration(
            (layout.write_mode == WriteMode::DeletionVectors)
                .then_some((deletion_vectors::ENABLE_PROPERTY, Some("true"))),
        )
        .with_raise_if_key_not_exists(false)
        // Version 0 or nothing: delta-rs would retry a create that lost the race as version
        // 1, replacing the winner's metadata (its owner) with ours.
        .with_commit_properties(commit_properties().with_max_retries(0))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(source: DeltaTableError) -> SinkError {
        SinkError::Delta {
            location: "s3://b/t".into(),
            source,
        }
    }

    #[test]
    fn known_offsets_hold_for_their_version_and_move_on_with_this_writers_next_commit() {
        let partition = TopicPartition {
            topic: "shop.public.a".into(),
            partition: 0,
        };
        let next = |next_offset| {
            [KafkaOffset {
                partition: partition.clone(),
                next_offset,
            }]
        };
        let mut known = KnownOffsets::default();
        known.at(Some(3)).insert(partition.clone(), Some(10));
        known.committed(Some(3), Some(4), &next(12));
        assert_eq!(known.at(Some(4)).get(&partition), Some(&Some(12)));
        // A commit made on a version whose offsets were not known teaches nothing.
        known.committed(Some(5), Some(6), &next(14));
        assert_eq!(known.at(Some(6)).get(&partition), None);
        known.at(Some(6)).insert(partition.clone(), Some(20));
        assert_eq!(known.at(Some(7)).get(&partition), None, "another version");
    }

    #[test]
    fn known_offsets_move_on_through_the_transactions_of_the_commits_in_between() {
        let partition = |partition| TopicPartition {
            topic: "t".into(),
            partition,
        };
        let (ours, untouched) = (partition(0), partition(1));
        let app_id = |p: &TopicPartition| format!("app-{}", p.partition);
        let txn = |app_id: &str, version| Transaction::new(app_id, version);
        let mut known = KnownOffsets::default();
        assert_eq!(known.versions_up_to(Some(3)), None, "nothing known");
        known.at(Some(3)).insert(ours.clone(), Some(10));
        known.at(Some(3)).insert(untouched.clone(), None);
        assert_eq!(known.versions_up_to(Some(3)), None, "the same version");
        assert_eq!(known.versions_up_to(Some(2)), None, "an older version");
        let too_far = 3 + COMMITS_READ_FORWARD + 1;
        assert_eq!(known.versions_up_to(Some(too_far)), None, "too far ahead");
        assert_eq!(known.versions_up_to(Some(5)), Some(4..=5));
        known.moved_on(
            5,
            &[txn("app-0", 12), txn("other-0", 99), txn("app-0", 14)],
            app_id,
        );
        assert_eq!(known.at(Some(5)).get(&ours), Some(&Some(14)));
        assert_eq!(known.at(Some(5)).get(&untouched), Some(&None));
    }

    #[test]
    fn a_store_failure_inside_a_kernel_error_is_transient_a_lost_race_is_not() {
        let unreachable = deltalake::ObjectStoreError::Generic {
            store: "S3",
            source: "error sending request".into(),
        };
        let read_failed = delta_kernel::Error::ObjectStore(unreachable);
        assert!(delta(DeltaTableError::KernelError(read_failed)).is_transient());
        let lost_race = deltalake::ObjectStoreError::AlreadyExists {
            path: "_delta_log/1.json".into(),
            source: "exists".into(),
        };
        let lost = delta_kernel::Error::ObjectStore(lost_race);
        assert!(!delta(DeltaTableError::KernelError(lost)).is_transient());
        let bad_schema = delta_kernel::Error::generic("not a store failure");
        assert!(!delta(DeltaTableError::KernelError(bad_schema)).is_transient());
    }

    fn layout() -> TableLayout {
        TableLayout {
            columns: vec![StructField::new(
                "id",
                deltalake::kernel::DataType::LONG,
                true,
            )],
            partition_by: Vec::new(),
            properties: Default::default(),
            write_mode: WriteMode::CopyOnWrite,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_that_loses_the_race_fails_instead_of_replacing_the_winners_metadata() {
        let storage = StorageOptions::default();
        let items = TableName::new("public", "items");
        for _ in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let location = dir.path().to_str().unwrap();
            let first = storage::open_or_empty(location, &storage).await.unwrap();
            let second = storage::open_or_empty(location, &storage).await.unwrap();
            let create = |table, owner: &'static str| {
                let items = items.clone();
                tokio::spawn(async move { create_table(table, &items, owner, layout()).await })
            };
            let (a, b) = tokio::join!(create(first, "pipeline-a"), create(second, "pipeline-b"));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(a.is_ok() != b.is_ok(), "exactly one create succeeds");
            let winner = if a.is_ok() {
                "pipeline-a"
            } else {
                "pipeline-b"
            };
            let table = storage::open(location, &storage).await.unwrap();
            assert_eq!(table.version(), Some(0), "the loser wrote no version 1");
            let config = table.snapshot().unwrap().metadata().configuration().clone();
            assert_eq!(config[OWNER_PROPERTY], winner);
        }
    }
}
