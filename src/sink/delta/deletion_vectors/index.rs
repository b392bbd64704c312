//! Where each key's live row is: for every data file of the table, its key values sorted
//! with their row positions, and the rows its deletion vector already removes.
//!
//! Kept in memory by the writer and brought up to date with the table's files before each
//! batch (only files it has not seen are read, and only their key columns), so finding the
//! rows a batch changes costs a binary search per file, not a read of the table. A single
//! integer key takes 12 bytes per row; other keys their row-format bytes plus 12.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use deltalake::arrow::compute::{cast, concat};
use deltalake::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use deltalake::arrow::row::{RowConverter, Rows, SortField};
use deltalake::kernel::{Add, DeletionVectorDescriptor, LogicalFileView};
// Deprecated in parquet 59 for a hand-written reader; it is what delta-rs itself reads with.
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::ParquetObjectReader;
use deltalake::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use deltalake::{DeltaTable, DeltaTableError, ObjectStore};
use futures::TryStreamExt;
use roaring::RoaringTreemap;

use super::format;

/// A row of one data file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowLocation {
    pub file: Arc<str>,
    pub row: u64,
}

/// The keys of one data file, sorted, with their row positions.
enum FileKeys {
    Integers { sorted: Vec<i64>, rows: Vec<u32> },
    Encoded { keys: Rows, sorted: Vec<u32> },
}

/// A data file as the log describes it: what reading its rows takes.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// The path as the log names it (the index's key).
    pub path: Arc<str>,
    pub location: deltalake::Path,
    pub size: u64,
    /// Partition columns are kept in the log, not in the file.
    pub partition_values: HashMap<String, Option<String>>,
}

impl DataFile {
    pub fn of(view: &LogicalFileView) -> Self {
        DataFile {
            path: view.path().as_ref().into(),
            location: view.object_store_path(),
            size: view.size() as u64,
            partition_values: view.partition_values_map(),
        }
    }

    fn written(add: &Add) -> Self {
        DataFile {
            path: add.path.as_str().into(),
            location: deltalake::Path::from(add.path.as_str()),
            size: add.size as u64,
            partition_values: add.partition_values.clone(),
        }
    }
}

struct IndexedFile {
    file: DataFile,
    keys: FileKeys,
    /// Rows the file's current deletion vector removes.
    deleted: RoaringTreemap,
    descriptor: Option<DeletionVectorDescriptor>,
}

/// The keys of a batch, in the form the index compares.
pub enum BatchKeys {
    Integers(Vec<Option<i64>>),
    Encoded(Rows),
}

impl BatchKeys {
    pub fn len(&self) -> usize {
        match self {
            BatchKeys::Integers(keys) => keys.len(),
            BatchKeys::Encoded(rows) => rows.num_rows(),
        }
    }
}

pub struct KeyIndex {
    key_columns: Vec<String>,
    key_types: Vec<DataType>,
    /// `None` for a single integer key, which is kept as `i64`.
    converter: Option<RowConverter>,
    files: HashMap<Arc<str>, IndexedFile>,
}

impl KeyIndex {
    /// An empty index of `key_columns` of a table whose columns are `schema`.
    pub fn new(schema: &SchemaRef, key_columns: &[String]) -> Result<Self, DeltaTableError> {
        let key_types: Vec<DataType> = key_columns
            .iter()
            .map(|k| Ok(schema.field_with_name(k)?.data_type().clone()))
            .collect::<Result<_, deltalake::arrow::error::ArrowError>>()?;
        let converter = match key_types.as_slice() {
            [t] if t.is_integer() => None,
            _ => Some(RowConverter::new(
                key_types.iter().cloned().map(SortField::new).collect(),
            )?),
        };
        Ok(KeyIndex {
            key_columns: key_columns.to_vec(),
            key_types,
            converter,
            files: HashMap::new(),
        })
    }

    pub fn indexed_rows(&self) -> usize {
        self.files.values().map(|f| f.keys.len()).sum()
    }

    /// Key arrays (one per key column, typed as in the table) in the index's form.
    pub fn batch_keys(&self, columns: &[ArrayRef]) -> Result<BatchKeys, DeltaTableError> {
        Ok(match &self.converter {
            None => {
                let keys = cast(&columns[0], &DataType::Int64)?;
                BatchKeys::Integers(keys.as_primitive::<Int64Type>().iter().collect())
            }
            Some(converter) => BatchKeys::Encoded(converter.convert_columns(columns)?),
        })
    }

    /// The live row of each key, if the table holds it.
    pub fn locate(&self, keys: &BatchKeys) -> Vec<Option<RowLocation>> {
        (0..keys.len())
            .map(|i| {
                self.files.values().find_map(|file| {
                    file.live_row(keys, i).map(|row| RowLocation {
                        file: file.file.path.clone(),
                        row,
                    })
                })
            })
            .collect()
    }

    /// The rows `file`'s deletion vector removes.
    pub fn deleted_rows(&self, file: &str) -> &RoaringTreemap {
        &self.files[file].deleted
    }

    /// The indexed data file at `path`.
    pub fn file(&self, path: &str) -> Option<&DataFile> {
        self.files.get(path).map(|indexed| &indexed.file)
    }

    /// Records what a commit of this writer did to `file`: its new deletion vector, or, with
    /// `None`, that the file is gone.
    pub fn set_deleted(
        &mut self,
        file: &str,
        update: Option<(RoaringTreemap, DeletionVectorDescriptor)>,
    ) {
        match update {
            Some((deleted, descriptor)) => {
                if let Some(indexed) = self.files.get_mut(file) {
                    indexed.deleted = deleted;
                    indexed.descriptor = Some(descriptor);
                }
            }
            None => {
                self.files.remove(file);
            }
        }
    }

    /// Adds a data file this writer just wrote, whose rows hold `keys` in order.
    pub fn add_written(&mut self, add: &Add, keys: &[ArrayRef]) -> Result<(), DeltaTableError> {
        let file = DataFile::written(add);
        let keys = self.file_keys(keys)?;
        self.files.insert(
            file.path.clone(),
            IndexedFile {
                file,
                keys,
                deleted: RoaringTreemap::new(),
                descriptor: None,
            },
        );
        Ok(())
    }

    /// Brings the index up to the table's loaded version: drops files no longer in it, reads
    /// the key columns of files it has not seen and the deletion vectors that changed.
    pub async fn sync(&mut self, table: &DeltaTable) -> Result<(), DeltaTableError> {
        let snapshot = table.snapshot()?;
        let store = table.object_store();
        let root = table.table_url().clone();
        let mut live = HashSet::new();
        let mut to_read = Vec::new();
        for view in snapshot.log_data().iter() {
            let path = view.path();
            let descriptor = view.deletion_vector_descriptor();
            match self.files.get_mut(path.as_ref()) {
                Some(indexed) => {
                    if indexed.descriptor != descriptor {
                        indexed.deleted = read_deleted(descriptor.as_ref(), &*store, &root).await?;
                        indexed.descriptor = descriptor;
                    }
                }
                None => to_read.push((DataFile::of(&view), descriptor)),
            }
            live.insert(path.into_owned());
        }
        self.files.retain(|path, _| live.contains(path.as_ref()));
        let started = std::time::Instant::now();
        let reading = to_read.len();
        for (file, descriptor) in to_read {
            let columns = self.read_key_columns(&store, &file).await?;
            let keys = self.file_keys(&columns)?;
            let deleted = read_deleted(descriptor.as_ref(), &*store, &root).await?;
            self.files.insert(
                file.path.clone(),
                IndexedFile {
                    file,
                    keys,
                    deleted,
                    descriptor,
                },
            );
        }
        if reading > 0 {
            tracing::debug!(files_read = reading, files = self.files.len(), rows = self.indexed_rows(), elapsed = ?started.elapsed(), "key index brought up to date");
        }
        Ok(())
    }

    /// The key columns of a data file; a partition column comes from the file's partition value.
    async fn read_key_columns(
        &self,
        store: &Arc<dyn ObjectStore>,
        file: &DataFile,
    ) -> Result<Vec<ArrayRef>, DeltaTableError> {
        let path = &file.location;
        #[allow(deprecated)]
        let reader =
            ParquetObjectReader::new(store.clone(), path.clone()).with_file_size(file.size);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let roots = self
            .key_columns
            .iter()
            .filter_map(|k| builder.schema().index_of(k).ok());
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        let rows = builder.metadata().file_metadata().num_rows() as usize;
        let batches: Vec<RecordBatch> =
            builder.with_projection(mask).build()?.try_collect().await?;
        self.key_columns
            .iter()
            .zip(&self.key_types)
            .map(|(name, data_type)| {
                let parts: Vec<&dyn Array> = batches
                    .iter()
                    .filter_map(|b| b.column_by_name(name).map(|c| c.as_ref()))
                    .collect();
                if parts.len() < batches.len() || batches.is_empty() {
                    return column_not_in_file(name, data_type, rows, &file.partition_values)
                        .unwrap_or_else(|| {
                            Err(DeltaTableError::Generic(format!(
                                "data file {path} has no key column '{name}'"
                            )))
                        });
                }
                Ok(cast(&concat(&parts)?, data_type)?)
            })
            .collect()
    }

    fn file_keys(&self, columns: &[ArrayRef]) -> Result<FileKeys, DeltaTableError> {
        Ok(match &self.converter {
            None => {
                let keys = cast(&columns[0], &DataType::Int64)?;
                let keys = keys.as_primitive::<Int64Type>();
                let values = keys.values();
                // Rows sorted by key, then the keys in that order: 12 bytes a row beside the
                // column, where sorting (key, row) pairs would briefly take 28.
                let mut rows: Vec<u32> = (0..keys.len() as u32)
                    .filter(|&row| keys.is_valid(row as usize))
                    .collect();
                rows.sort_unstable_by_key(|&row| (values[row as usize], row));
                let sorted = rows.iter().map(|&row| values[row as usize]).collect();
                FileKeys::Integers { sorted, rows }
            }
            Some(converter) => {
                let keys = converter.convert_columns(columns)?;
                let mut sorted: Vec<u32> = (0..keys.num_rows() as u32).collect();
                sorted.sort_unstable_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
                FileKeys::Encoded { keys, sorted }
            }
        })
    }
}

/// `rows` values of column `name`, which a data file does not hold: its partition value when
/// it is a partition column (Delta keeps those in the log, not the file), else `None`.
pub(super) fn column_not_in_file(
    name: &str,
    data_type: &DataType,
    rows: usize,
    partition_values: &HashMap<String, Option<String>>,
) -> Option<Result<ArrayRef, DeltaTableError>> {
    let value = partition_values.get(name)?;
    let text = deltalake::arrow::array::StringArray::from(vec![value.as_deref(); rows]);
    Some(cast(&text, data_type).map_err(DeltaTableError::from))
}

async fn read_deleted(
    descriptor: Option<&DeletionVectorDescriptor>,
    store: &dyn ObjectStore,
    root: &url::Url,
) -> Result<RoaringTreemap, DeltaTableError> {
    match descriptor {
        None => Ok(RoaringTreemap::new()),
        Some(descriptor) => Ok(format::read(descriptor, store, root).await?),
    }
}

impl FileKeys {
    fn len(&self) -> usize {
        match self {
            FileKeys::Integers { sorted, .. } => sorted.len(),
            FileKeys::Encoded { sorted, .. } => sorted.len(),
        }
    }
}

impl IndexedFile {
    /// The row of batch key `i` in this file that no deletion vector removes.
    fn live_row(&self, keys: &BatchKeys, i: usize) -> Option<u64> {
        let live = |row: u32| (!self.deleted.contains(row as u64)).then_some(row as u64);
        match (&self.keys, keys) {
            (FileKeys::Integers { sorted, rows }, BatchKeys::Integers(batch)) => {
                let key = batch[i]?;
                if sorted.first().is_none_or(|&min| key < min)
                    || sorted.last().is_none_or(|&max| key > max)
                {
                    return None;
                }
                let start = sorted.partition_point(|&k| k < key);
                sorted[start..]
                    .iter()
                    .take_while(|&&k| k == key)
                    .zip(&rows[start..])
                    .find_map(|(_, &row)| live(row))
            }
            (FileKeys::Encoded { keys, sorted }, BatchKeys::Encoded(batch)) => {
                let key = batch.row(i);
                let start = sorted.partition_point(|&r| keys.row(r as usize) < key);
                sorted[start..]
                    .iter()
                    .take_while(|&&r| keys.row(r as usize) == key)
                    .find_map(|&row| live(row))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Int32Array, StringArray};
    use deltalake::arrow::datatypes::{Field, Schema};

    fn written(path: &str) -> Add {
        Add {
            path: path.into(),
            ..Default::default()
        }
    }

    fn schema(key_type: DataType) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", key_type, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn finds_the_live_row_of_integer_keys_across_files() {
        let mut index = KeyIndex::new(&schema(DataType::Int32), &["id".into()]).unwrap();
        let old: ArrayRef = Arc::new(Int32Array::from(vec![5, 3, 9]));
        let new: ArrayRef = Arc::new(Int32Array::from(vec![3, 7]));
        index.add_written(&written("a.parquet"), &[old]).unwrap();
        index.add_written(&written("b.parquet"), &[new]).unwrap();
        // Key 3 was updated: its row in a.parquet is deleted, the live one is in b.parquet.
        let deleted: RoaringTreemap = [1u64].into_iter().collect();
        let descriptor = format::inline(&deleted);
        index.set_deleted("a.parquet", Some((deleted, descriptor)));
        let wanted: ArrayRef = Arc::new(Int32Array::from(vec![Some(3), Some(9), Some(4), None]));
        let keys = index.batch_keys(&[wanted]).unwrap();
        let found = index.locate(&keys);
        let at = |file: &str, row| {
            Some(RowLocation {
                file: file.into(),
                row,
            })
        };
        assert_eq!(
            found,
            vec![at("b.parquet", 0), at("a.parquet", 2), None, None]
        );
        assert_eq!(index.indexed_rows(), 5);
        index.set_deleted("a.parquet", None);
        assert_eq!(index.indexed_rows(), 2);
    }

    #[test]
    fn finds_composite_and_text_keys() {
        let schema = schema(DataType::Int32);
        let mut index = KeyIndex::new(&schema, &["id".into(), "name".into()]).unwrap();
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![1, 1, 2]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "x"]));
        index
            .add_written(&written("a.parquet"), &[ids, names])
            .unwrap();
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 2]));
        let names: ArrayRef = Arc::new(StringArray::from(vec!["y", "x", "y"]));
        let keys = index.batch_keys(&[ids, names]).unwrap();
        let rows: Vec<Option<u64>> = index
            .locate(&keys)
            .into_iter()
            .map(|l| l.map(|l| l.row))
            .collect();
        assert_eq!(rows, vec![Some(1), Some(2), None]);
    }
}
