//! The deletion-vector write mode (merge-on-read): an update or delete marks the old row's
//! position in its data file with a deletion vector and the new row images are appended, so
//! a batch costs what it changes, not what the table holds. One Delta commit per batch:
//! for each touched file a `remove` (with its old vector) and an `add` of the same file with
//! the new vector, the new data file, a `_change_data` file with every change, and the
//! `txn` position.

#[cfg(test)]
mod equivalence_tests;
mod format;
mod index;
mod sparse_read;

use std::collections::BTreeMap;
use std::sync::Arc;

use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, StringArray, UInt32Array,
};
use deltalake::arrow::compute::kernels::zip::zip;
use deltalake::arrow::compute::{cast, concat_batches, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::datafile::{self, writer::WriterConfig};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, AddCDCFile, LogicalFileView};
use deltalake::logstore::object_store::prefix::PrefixStore;
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::logstore::ObjectStoreRef;
use deltalake::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::file::properties::WriterPropertiesBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::DeltaWriter;
use deltalake::{DeltaTable, DeltaTableError};
use roaring::RoaringTreemap;

pub use format::DeletionVectorError;
pub use index::KeyIndex;
use index::{DataFile, RowLocation};

use super::changes::{RowChange, TableChanges};
use super::convert::{build_array, build_columns};
use super::writer::{cell_text, file_writer, keep_flags, unconvertible, SinkError};
use crate::event::{Cell, TableName};

/// The table property that turns the feature on (and, set on a table, upgrades its protocol
/// to reader 3 / writer 7 with `deletionVectors`).
pub const ENABLE_PROPERTY: &str = "delta.enableDeletionVectors";

/// Whether `table`'s protocol lets pgdelta write deletion vectors.
pub fn enabled(table: &DeltaTable) -> bool {
    table.snapshot().is_ok_and(|s| {
        s.protocol().writer_features().is_some_and(|f| {
            f.contains(&delta_kernel::table_features::TableFeature::DeletionVectors)
        })
    })
}

/// Rows per Parquet data page in the files of a deletion-vector table. Without REPLICA
/// IDENTITY FULL an update or delete reads its old row (the change feed's pre-image) at its
/// position, and with the page index only the pages holding such rows are decoded: with
/// Parquet's default pages (up to 20,000 rows) uniform random updates on a 10M-row table
/// decode every page of it in every batch. Smaller pages cost a few bytes a row (a page
/// header and page-index entry per column).
const PAGE_ROWS: usize = 128;

/// `properties` with pages small enough for reading single rows where `table` takes deletion
/// vectors (copy-on-write reads whole files: Parquet's defaults stay).
pub(super) fn page_size_for(
    table: &DeltaTable,
    properties: WriterPropertiesBuilder,
) -> WriterPropertiesBuilder {
    match enabled(table) {
        // The writer checks the page limit once per write batch.
        true => properties
            .set_data_page_row_count_limit(PAGE_ROWS)
            .set_write_batch_size(PAGE_ROWS),
        false => properties,
    }
}

/// What one table writer needs to turn a batch into a deletion-vector commit.
pub(super) struct Target<'a> {
    pub table: &'a DeltaTable,
    pub schema: &'a SchemaRef,
    pub source_table: &'a TableName,
    pub location: &'a str,
}

impl Target<'_> {
    fn delta_err(&self) -> impl Fn(DeltaTableError) -> SinkError + '_ {
        |source| SinkError::Delta {
            location: self.location.to_string(),
            source,
        }
    }

    fn arrow_err(&self) -> impl Fn(ArrowError) -> SinkError + '_ {
        |error| (self.delta_err())(error.into())
    }

    /// The values of `field` as its Delta type; a value that does not convert names the
    /// table and column (and may go to the dead-letter file).
    fn column(&self, field: &Field, values: &[Option<&str>]) -> Result<ArrayRef, SinkError> {
        build_array(field.data_type(), values)
            .map_err(|error| unconvertible(self.source_table, field, error))
    }
}

/// Applies `changes` (no TRUNCATE) as one commit; returns the table at its new version.
pub(super) async fn apply(
    target: Target<'_>,
    index: &mut KeyIndex,
    changes: &TableChanges,
    commit: CommitProperties,
) -> Result<DeltaTable, SinkError> {
    let delta_err = target.delta_err();
    index.sync(target.table).await.map_err(&delta_err)?;
    let rows: Vec<(&Vec<Cell>, &RowChange)> = changes.rows().collect();
    let key_columns = key_columns(&target, changes, &rows)?;
    let keys = index.batch_keys(&key_columns).map_err(&delta_err)?;
    let started = std::time::Instant::now();
    let found = index.locate(&keys);
    let located = started.elapsed();
    let old = old_rows(&target, index, changes, &rows, &found).await?;
    let read = started.elapsed();
    let plan = Plan::new(&rows, &found);
    let new = new_images(&target, &rows, &plan.upserts, &old)?;

    let mut actions = Vec::new();
    let written = write_rows(target.table, &new).await.map_err(&delta_err)?;
    actions.extend(written.iter().cloned().map(Action::Add));
    let (vector_actions, updates) = mark_deleted(&target, index, &rows_by_file(&found))
        .await
        .map_err(&delta_err)?;
    actions.extend(vector_actions);
    let marked = started.elapsed();
    let feed = change_feed(target.schema, &old, &new, &plan).map_err(&delta_err)?;
    let cdc = write_change_feed(target.table, &feed)
        .await
        .map_err(&delta_err)?;
    actions.extend(cdc.into_iter().map(Action::Cdc));
    tracing::debug!(rows = rows.len(), ?located, ?read, ?marked, fed = ?started.elapsed(), "deletion-vector batch written, not yet committed");
    let operation = DeltaOperation::Merge {
        predicate: None,
        merge_predicate: None,
        matched_predicates: vec![],
        not_matched_predicates: vec![],
        not_matched_by_source_predicates: vec![],
    };
    let snapshot = target.table.snapshot().map_err(&delta_err)?;
    let finalized = CommitBuilder::from(commit)
        .with_actions(actions)
        .build(Some(snapshot), target.table.log_store(), operation)
        .await
        .map_err(&delta_err)?;
    for (file, update) in updates {
        index.set_deleted(&file, update);
    }
    if let [add] = written.as_slice() {
        let keys: Vec<ArrayRef> = changes
            .key_positions()
            .iter()
            .map(|&p| new.column(p).clone())
            .collect();
        index.add_written(add, &keys).map_err(&delta_err)?;
    }
    // The commit's own snapshot: reading the log again would cost requests.
    let mut updated = target.table.clone();
    updated.state = Some(finalized.snapshot());
    Ok(updated)
}

/// Which batch rows are updates, inserts and deletes of rows the table holds.
struct Plan {
    /// Batch rows with a new image, in order.
    upserts: Vec<usize>,
    /// For each upsert: whether it replaces a row the table holds.
    replaces: Vec<bool>,
    /// Batch rows that delete a row the table holds.
    deletes: Vec<usize>,
}

impl Plan {
    fn new(rows: &[(&Vec<Cell>, &RowChange)], found: &[Option<RowLocation>]) -> Self {
        let mut plan = Plan {
            upserts: Vec::new(),
            replaces: Vec::new(),
            deletes: Vec::new(),
        };
        for (i, (_, change)) in rows.iter().enumerate() {
            match change {
                RowChange::Upsert(_) => {
                    plan.upserts.push(i);
                    plan.replaces.push(found[i].is_some());
                }
                RowChange::Delete if found[i].is_some() => plan.deletes.push(i),
                RowChange::Delete => {}
            }
        }
        plan
    }
}

/// The located old rows (all of which the batch replaces or deletes), by file.
fn rows_by_file(found: &[Option<RowLocation>]) -> BTreeMap<Arc<str>, Vec<u64>> {
    let mut by_file: BTreeMap<Arc<str>, Vec<u64>> = BTreeMap::new();
    for location in found.iter().flatten() {
        by_file
            .entry(location.file.clone())
            .or_default()
            .push(location.row);
    }
    by_file
}

/// The key columns of the batch, typed as in the table.
fn key_columns(
    target: &Target<'_>,
    changes: &TableChanges,
    rows: &[(&Vec<Cell>, &RowChange)],
) -> Result<Vec<ArrayRef>, SinkError> {
    changes
        .key_positions()
        .iter()
        .enumerate()
        .map(|(i, &position)| {
            let values: Vec<Option<&str>> = rows.iter().map(|(key, _)| key[i].as_text()).collect();
            target.column(target.schema.field(position), &values)
        })
        .collect()
}

/// The row the table holds for each batch row (a null row where it holds none): from the
/// source where it sent the whole old row (REPLICA IDENTITY FULL), else from the data files
/// at the located positions.
async fn old_rows(
    target: &Target<'_>,
    index: &KeyIndex,
    changes: &TableChanges,
    rows: &[(&Vec<Cell>, &RowChange)],
    found: &[Option<RowLocation>],
) -> Result<RecordBatch, SinkError> {
    let sent: Vec<Option<&Vec<Cell>>> = rows
        .iter()
        .zip(found)
        .map(|((key, _), location)| location.as_ref().and(changes.old_row(key)))
        .collect();
    let to_read: Vec<Option<RowLocation>> = found
        .iter()
        .zip(&sent)
        .map(|(location, sent)| location.clone().filter(|_| sent.is_none()))
        .collect();
    let delta_err = target.delta_err();
    let arrow_err = target.arrow_err();
    let read = read_rows(target, index, &to_read)
        .await
        .map_err(&delta_err)?;
    if sent.iter().all(Option::is_none) {
        return Ok(read);
    }
    let from_source: BooleanArray = sent.iter().map(|s| Some(s.is_some())).collect();
    let mut columns = Vec::with_capacity(read.num_columns());
    for (index, field) in target.schema.fields().iter().enumerate() {
        let values: Vec<Option<&str>> = sent
            .iter()
            .map(|row| row.and_then(|cells| cells[index].as_text()))
            .collect();
        let sent_column = target.column(field, &values)?;
        let column = zip(&from_source, &sent_column, read.column(index)).map_err(&arrow_err)?;
        columns.push(column);
    }
    RecordBatch::try_new(target.schema.clone(), columns).map_err(arrow_err)
}

/// The table's current row for each batch row (a null row where it holds none), read from
/// the data files at the located positions only.
async fn read_rows(
    target: &Target<'_>,
    index: &KeyIndex,
    found: &[Option<RowLocation>],
) -> Result<RecordBatch, DeltaTableError> {
    let schema = target.schema;
    let mut by_file: BTreeMap<&Arc<str>, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, location) in found.iter().enumerate() {
        if let Some(location) = location {
            by_file
                .entry(&location.file)
                .or_default()
                .push((location.row, i));
        }
    }
    if by_file.is_empty() {
        return Ok(null_rows(schema, found.len()));
    }
    let mut parts = Vec::new();
    let mut position_of = vec![None; found.len()];
    let mut next = 0u32;
    for (file, mut wanted) in by_file {
        wanted.sort_unstable();
        let at = index.file(file).ok_or_else(|| {
            DeltaTableError::Generic(format!("data file {file} is not in the table"))
        })?;
        let positions: Vec<u64> = wanted.iter().map(|(row, _)| *row).collect();
        let rows = selection(&positions);
        parts.push(read_file_rows(target.table, schema, at, rows).await?);
        for (_, i) in wanted {
            position_of[i] = Some(next);
            next += 1;
        }
    }
    let read = concat_batches(schema, &parts)?;
    let indices: UInt32Array = position_of.into_iter().collect();
    Ok(take_record_batch(&read, &indices)?)
}

/// The rows `rows` selects of one data file, with the table's columns
/// (partition columns from the file's partition values, null for columns added after the
/// file was written).
async fn read_file_rows(
    table: &DeltaTable,
    schema: &SchemaRef,
    at: &DataFile,
    rows: RowSelection,
) -> Result<RecordBatch, DeltaTableError> {
    let file = &at.path;
    let expected = rows.row_count();
    let store = table.object_store();
    let metadata = sparse_read::metadata(store.clone(), &at.location, at.size).await?;
    let file_schema = metadata.schema().clone();
    let wanted: Vec<usize> = schema
        .fields()
        .iter()
        .filter_map(|f| file_schema.index_of(f.name()).ok())
        .collect();
    let mask = ProjectionMask::roots(metadata.parquet_schema(), wanted);
    let batches =
        sparse_read::read(store.as_ref(), &at.location, at.size, metadata, mask, rows).await?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    if rows != expected {
        return Err(DeltaTableError::Generic(format!(
            "data file {file}: read {rows} rows where {expected} were selected"
        )));
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let parts: Vec<&dyn Array> = batches
                .iter()
                .filter_map(|b| b.column_by_name(field.name()).map(|c| c.as_ref()))
                .collect();
            if parts.len() < batches.len() || batches.is_empty() {
                let name = field.name();
                return index::column_not_in_file(
                    name,
                    field.data_type(),
                    rows,
                    &at.partition_values,
                )
                .unwrap_or_else(|| Ok(new_null_array(field.data_type(), rows)));
            }
            let column = deltalake::arrow::compute::concat(&parts)?;
            Ok(cast(&column, field.data_type())?)
        })
        .collect::<Result<Vec<_>, DeltaTableError>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A Parquet row selection of `positions` (sorted, distinct).
fn selection(positions: &[u64]) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for &row in positions {
        if row > at {
            selectors.push(RowSelector::skip((row - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = row + 1;
    }
    RowSelection::from(selectors)
}

/// A Parquet row selection of the rows of a `rows`-row file that `deleted` does not hold.
fn live_rows(deleted: &RoaringTreemap, rows: u64) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for row in deleted.iter().take_while(|&r| r < rows) {
        if row > at {
            selectors.push(RowSelector::select((row - at) as usize));
        }
        selectors.push(RowSelector::skip(1));
        at = row + 1;
    }
    if rows > at {
        selectors.push(RowSelector::select((rows - at) as usize));
    }
    RowSelection::from(selectors)
}

/// Which data files a purge rewrites: those of at least `min_bytes` whose deletion vector
/// removes at least `fraction` of their rows.
#[derive(Debug, Clone, Copy)]
pub struct PurgeThreshold {
    pub fraction: f64,
    pub min_bytes: u64,
}

impl PurgeThreshold {
    pub fn covers(&self, file: &LogicalFileView) -> bool {
        let rows = file.num_records().unwrap_or(0) as f64;
        let large = u64::try_from(file.size()).unwrap_or(0) >= self.min_bytes;
        large
            && file
                .deletion_vector_descriptor()
                .is_some_and(|dv| rows > 0.0 && dv.cardinality as f64 >= self.fraction * rows)
    }
}

/// Rewrites the data files `threshold` covers without the rows their vectors remove, as one commit that changes no data (`dataChange = false`, like
/// OPTIMIZE): readers and the change data feed see nothing new. Returns the table at its
/// new version and how many files were rewritten, or `None` when no file is due.
pub async fn purge_deleted_rows(
    table: &DeltaTable,
    threshold: PurgeThreshold,
) -> Result<Option<(DeltaTable, usize)>, DeltaTableError> {
    let snapshot = table.snapshot()?;
    let schema = snapshot.snapshot().arrow_schema();
    let store = table.object_store();
    let mut actions = Vec::new();
    let mut writer = file_writer(table)?;
    let mut rewritten = 0;
    for view in snapshot.log_data().iter().filter(|f| threshold.covers(f)) {
        let descriptor = view
            .deletion_vector_descriptor()
            .expect("the threshold covers only files with a vector");
        let rows = view.num_records().unwrap_or(0) as u64;
        let deleted = format::read(&descriptor, &*store, table.table_url()).await?;
        let at = DataFile::of(&view);
        let live = read_file_rows(table, &schema, &at, live_rows(&deleted, rows)).await?;
        if live.num_rows() > 0 {
            writer.write(live).await?;
        }
        actions.push(Action::Remove(view.remove_action(false)));
        rewritten += 1;
    }
    if rewritten == 0 {
        return Ok(None);
    }
    for mut add in writer.flush().await? {
        add.data_change = false;
        actions.push(Action::Add(add));
    }
    let operation = DeltaOperation::Optimize {
        predicate: None,
        target_size: 0,
    };
    CommitBuilder::from(super::writer::commit_properties())
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await?;
    let mut updated = table.clone();
    updated.update_state().await?;
    Ok(Some((updated, rewritten)))
}

fn null_rows(schema: &SchemaRef, rows: usize) -> RecordBatch {
    let columns = schema
        .fields()
        .iter()
        .map(|f| new_null_array(f.data_type(), rows))
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("every column is nullable")
}

/// The new image of each upsert row; a TOASTed value the update did not touch keeps the
/// value of the row it replaces.
fn new_images(
    target: &Target<'_>,
    rows: &[(&Vec<Cell>, &RowChange)],
    upserts: &[usize],
    old: &RecordBatch,
) -> Result<RecordBatch, SinkError> {
    let arrow_err = target.arrow_err();
    let indices = UInt32Array::from_iter_values(upserts.iter().map(|&i| i as u32));
    let old = take_record_batch(old, &indices).map_err(&arrow_err)?;
    let upsert_rows: Vec<(&Vec<Cell>, &RowChange)> = upserts.iter().map(|&i| rows[i]).collect();
    debug_assert!(upsert_rows
        .iter()
        .all(|(_, change)| matches!(change, RowChange::Upsert(_))));
    let types = target.schema.fields().iter().map(|f| f.data_type());
    let new = build_columns(types, upsert_rows.len(), |row, column| {
        cell_text(upsert_rows[row], &[], column)
    })
    .map_err(|(column, error)| {
        unconvertible(target.source_table, target.schema.field(column), error)
    })?;
    let keep = keep_flags(&upsert_rows, target.schema.fields().len());
    let columns = new
        .into_iter()
        .zip(keep)
        .enumerate()
        .map(|(index, (column, keep))| match keep {
            Some(keep) => zip(&keep, old.column(index), &column),
            None => Ok(column),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(&arrow_err)?;
    RecordBatch::try_new(target.schema.clone(), columns).map_err(arrow_err)
}

/// Writes the new row images as Parquet (not yet committed).
async fn write_rows(table: &DeltaTable, rows: &RecordBatch) -> Result<Vec<Add>, DeltaTableError> {
    if rows.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let mut writer = file_writer(table)?;
    writer.write(rows.clone()).await?;
    writer.flush().await
}

/// The column that names each change-feed row's kind.
const CHANGE_TYPE: &str = "_change_type";
/// Where change-data files live, under the table root.
const CHANGE_DATA: &str = "_change_data";

/// Every change of the batch as change-feed rows: deletes, inserts, and each update's
/// pre-image and post-image.
fn change_feed(
    schema: &SchemaRef,
    old: &RecordBatch,
    new: &RecordBatch,
    plan: &Plan,
) -> Result<RecordBatch, DeltaTableError> {
    let pick =
        |batch: &RecordBatch, rows: Vec<u32>| take_record_batch(batch, &UInt32Array::from(rows));
    let updated_rows: Vec<u32> = plan
        .upserts
        .iter()
        .zip(&plan.replaces)
        .filter(|(_, &r)| r)
        .map(|(&i, _)| i as u32)
        .collect();
    let (updates, inserts): (Vec<u32>, Vec<u32>) =
        (0..plan.upserts.len() as u32).partition(|&j| plan.replaces[j as usize]);
    let deletes: Vec<u32> = plan.deletes.iter().map(|&i| i as u32).collect();
    let parts = [
        (pick(old, deletes)?, "delete"),
        (pick(new, inserts)?, "insert"),
        (pick(old, updated_rows)?, "update_preimage"),
        (pick(new, updates)?, "update_postimage"),
    ];
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(CHANGE_TYPE, DataType::Utf8, true));
    let feed_schema = Arc::new(Schema::new(fields));
    let batches = parts
        .into_iter()
        .map(|(batch, kind)| {
            let mut columns = batch.columns().to_vec();
            columns.push(Arc::new(StringArray::from(vec![kind; batch.num_rows()])));
            RecordBatch::try_new(feed_schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&feed_schema, &batches)?)
}

/// Writes the change-feed rows as `_change_data` files (one per partition), with the writer
/// delta-rs uses for its own change data.
async fn write_change_feed(
    table: &DeltaTable,
    feed: &RecordBatch,
) -> Result<Vec<AddCDCFile>, DeltaTableError> {
    if feed.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let partition_columns = table.snapshot()?.metadata().partition_columns().to_vec();
    let store: ObjectStoreRef = Arc::new(PrefixStore::new(table.object_store(), CHANGE_DATA));
    let config = WriterConfig::new(
        feed.schema(),
        partition_columns,
        None,
        None,
        None,
        DataSkippingNumIndexedCols::AllColumns,
        None,
    );
    let mut writer = datafile::writer::DeltaWriter::new(store, config);
    writer.write(feed).await?;
    let written = writer.close().await?;
    Ok(written
        .into_iter()
        .map(|add| AddCDCFile {
            path: format!("{CHANGE_DATA}/{}", add.path),
            size: add.size,
            partition_values: add.partition_values,
            data_change: false,
            tags: None,
        })
        .collect())
}

/// What a commit does to one data file's deletion vector: `None` when every row is gone
/// and the file is removed.
type VectorUpdate = (
    Arc<str>,
    Option<(RoaringTreemap, deltalake::kernel::DeletionVectorDescriptor)>,
);

/// For each file with newly deleted rows: a `remove` of the file as the log holds it (with
/// its current vector) and an `add` of it with the union as its new vector, written to one
/// `deletion_vector_<uuid>.bin` for the commit.
async fn mark_deleted(
    target: &Target<'_>,
    index: &KeyIndex,
    deleted: &BTreeMap<Arc<str>, Vec<u64>>,
) -> Result<(Vec<Action>, Vec<VectorUpdate>), DeltaTableError> {
    let mut actions = Vec::new();
    let mut updates = Vec::new();
    let mut vectors = format::DeletionVectorFile::default();
    let snapshot = target.table.snapshot()?;
    for view in snapshot.log_data().iter() {
        let Some((path, rows)) = deleted.get_key_value(view.path().as_ref()) else {
            continue;
        };
        let path = path.clone();
        let mut now = index.deleted_rows(&path).clone();
        now.extend(rows.iter().copied());
        actions.push(Action::Remove(view.remove_action(true)));
        let physical_rows = view.num_records().unwrap_or(usize::MAX) as u64;
        if now.len() >= physical_rows {
            updates.push((path, None));
            continue;
        }
        let descriptor = vectors.add(&now);
        #[allow(deprecated)] // the only public way to the file's Add action
        let mut add: Add = view.add_action();
        add.data_change = true;
        add.deletion_vector = Some(descriptor.clone());
        add.stats = add.stats.as_deref().map(loose_bounds);
        actions.push(Action::Add(add));
        updates.push((path, Some((now, descriptor))));
    }
    if !vectors.is_empty() {
        let path = vectors.path();
        target
            .table
            .object_store()
            .put(&path, vectors.into_bytes().into())
            .await?;
    }
    Ok((actions, updates))
}

/// A file's statistics once some of its rows are deleted: `numRecords` stays the physical
/// count (as the protocol says) and min/max may be looser than the live rows.
fn loose_bounds(stats: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stats) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("tightBounds".into(), serde_json::Value::Bool(false));
            serde_json::Value::Object(fields).to_string()
        }
        _ => stats.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_picks_exactly_the_positions() {
        let selected = selection(&[0, 1, 5, 9]);
        let expected = RowSelection::from(vec![
            RowSelector::select(1),
            RowSelector::select(1),
            RowSelector::skip(3),
            RowSelector::select(1),
            RowSelector::skip(3),
            RowSelector::select(1),
        ]);
        assert_eq!(selected, expected);
        assert_eq!(selected.row_count(), 4);
    }

    #[test]
    fn the_live_rows_of_a_file_are_those_its_vector_does_not_hold() {
        let deleted: RoaringTreemap = [0u64, 3, 4, 9].into_iter().collect();
        let live = live_rows(&deleted, 10);
        let expected = RowSelection::from(vec![
            RowSelector::skip(1),
            RowSelector::select(2),
            RowSelector::skip(2),
            RowSelector::select(4),
            RowSelector::skip(1),
        ]);
        assert_eq!(live, expected);
        assert_eq!(live.row_count(), 6);
        assert_eq!(live_rows(&RoaringTreemap::new(), 3).row_count(), 3);
    }

    #[test]
    fn statistics_of_a_file_with_deleted_rows_say_their_bounds_are_loose() {
        let stats = r#"{"numRecords":3,"minValues":{"id":1},"maxValues":{"id":9}}"#;
        let loose: serde_json::Value = serde_json::from_str(&loose_bounds(stats)).unwrap();
        assert_eq!(loose["tightBounds"], false);
        assert_eq!(loose["numRecords"], 3);
        assert_eq!(loose["maxValues"]["id"], 9);
    }
}
