//! Reading scattered rows of a Parquet file: only the pages that hold selected rows are
//! fetched (one `get_ranges` call), then decoded by the synchronous reader.
//!
//! parquet's async reader does the same fetch but keeps the fetched pages in a list it scans
//! for every page it decodes and every range it drops: with small pages and a uniform
//! selection (tens of thousands of pages a row group) that is quadratic, and it took most of
//! a deletion-vector batch's time on a 10M-row table.

use std::ops::Range;

use bytes::Bytes;
use deltalake::arrow::array::RecordBatch;
use deltalake::logstore::object_store::ObjectStore;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelectionPolicy,
};
// Deprecated in parquet 59 for a hand-written reader; it is what delta-rs itself reads with.
#[allow(deprecated)]
use deltalake::parquet::arrow::async_reader::ParquetObjectReader;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use deltalake::parquet::file::reader::{ChunkReader, Length};
use deltalake::{DeltaTableError, Path};

/// The footer of the Parquet file at `location` (`size` bytes), with its offset index (where
/// each page starts and its first row; the column index, per-page statistics, is not used).
pub(super) async fn metadata(
    store: std::sync::Arc<dyn ObjectStore>,
    location: &Path,
    size: u64,
) -> Result<ArrowReaderMetadata, DeltaTableError> {
    #[allow(deprecated)]
    let mut reader = ParquetObjectReader::new(store, location.clone()).with_file_size(size);
    let options = ArrowReaderOptions::new()
        .with_column_index_policy(PageIndexPolicy::Skip)
        .with_offset_index_policy(PageIndexPolicy::Optional);
    Ok(ArrowReaderMetadata::load_async(&mut reader, options).await?)
}

/// The rows `rows` selects of the file, with the columns `projection` picks, in file order.
/// One row group at a time: a purge reads nearly every row of a large file.
pub(super) async fn read(
    store: &dyn ObjectStore,
    location: &Path,
    size: u64,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    rows: RowSelection,
) -> Result<Vec<RecordBatch>, DeltaTableError> {
    let mut batches = Vec::new();
    for group in plan(metadata.metadata(), &projection, rows) {
        let chunks = store.get_ranges(location, &group.ranges).await?;
        let pages = FetchedPages::new(size, group.ranges, chunks);
        let (metadata, projection) = (metadata.clone(), projection.clone());
        let decoded = tokio::task::spawn_blocking(move || {
            ParquetRecordBatchReaderBuilder::new_with_metadata(pages, metadata)
                .with_projection(projection)
                .with_row_groups(vec![group.index])
                .with_row_selection(group.rows)
                // A dense selection would otherwise be read as a mask over every page, fetched
                // or not.
                .with_row_selection_policy(RowSelectionPolicy::Selectors)
                .build()?
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|error| DeltaTableError::Generic(format!("reading {location}: {error}")))?;
        batches.extend(decoded?);
    }
    Ok(batches)
}

/// What to fetch and decode of one row group with a selected row: the selection within it,
/// and the byte ranges of its pages that hold selected rows (with each column chunk's
/// dictionary page), sorted.
#[derive(Debug, PartialEq)]
struct GroupPlan {
    index: usize,
    rows: RowSelection,
    ranges: Vec<Range<u64>>,
}

fn plan(
    metadata: &ParquetMetaData,
    projection: &ProjectionMask,
    mut rows: RowSelection,
) -> Vec<GroupPlan> {
    let mut plans = Vec::new();
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let in_group = rows.split_off(group.num_rows() as usize);
        if !in_group.selects_any() {
            continue;
        }
        let pages = metadata
            .offset_index()
            .and_then(|index_of| index_of.get(index));
        let mut ranges = Vec::new();
        for (column, chunk) in group.columns().iter().enumerate() {
            if !projection.leaf_included(column) {
                continue;
            }
            let (start, length) = chunk.byte_range();
            match pages
                .and_then(|p| p.get(column))
                .map(|p| p.page_locations())
            {
                Some(locations) if !locations.is_empty() => {
                    let first = locations[0].offset as u64;
                    if first != start {
                        ranges.push(start..first);
                    }
                    ranges.extend(in_group.scan_ranges(locations));
                }
                _ => ranges.push(start..start + length),
            }
        }
        ranges.sort_unstable_by_key(|r| r.start);
        plans.push(GroupPlan {
            index,
            rows: in_group,
            ranges,
        });
    }
    plans
}

/// Byte ranges of one file, fetched, answering the reader's requests by binary search.
struct FetchedPages {
    file_size: u64,
    ranges: Vec<Range<u64>>,
    chunks: Vec<Bytes>,
}

impl FetchedPages {
    /// `ranges` sorted by start, `chunks` their bytes in the same order.
    fn new(file_size: u64, ranges: Vec<Range<u64>>, chunks: Vec<Bytes>) -> Self {
        FetchedPages {
            file_size,
            ranges,
            chunks,
        }
    }

    /// The fetched bytes from `start` to the end of the range holding it.
    fn from(&self, start: u64) -> Result<Bytes, ParquetError> {
        let at = self.ranges.partition_point(|r| r.start <= start);
        match at
            .checked_sub(1)
            .map(|i| (&self.ranges[i], &self.chunks[i]))
        {
            Some((range, chunk)) if start <= range.end => {
                Ok(chunk.slice((start - range.start) as usize..))
            }
            _ => Err(ParquetError::General(format!(
                "byte {start} of the file was not fetched"
            ))),
        }
    }
}

impl Length for FetchedPages {
    fn len(&self) -> u64 {
        self.file_size
    }
}

impl ChunkReader for FetchedPages {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> Result<Self::T, ParquetError> {
        Ok(bytes::Buf::reader(self.from(start)?))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        let bytes = self.from(start)?;
        if bytes.len() < length {
            return Err(ParquetError::General(format!(
                "bytes {start}..{} of the file were not fetched",
                start + length as u64
            )));
        }
        Ok(bytes.slice(..length))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::logstore::object_store::memory::InMemory;
    use deltalake::logstore::object_store::ObjectStoreExt;
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::file::properties::{
        EnabledStatistics, WriterProperties, WriterPropertiesBuilder,
    };

    use super::super::selection;
    use super::*;

    /// A file of `rows` rows (`id`, `name`) in row groups of 1,000 rows and pages of 100.
    async fn file(store: &InMemory, rows: i64) -> (Path, u64) {
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100);
        file_with(store, rows, properties).await
    }

    async fn file_with(
        store: &InMemory,
        rows: i64,
        properties: WriterPropertiesBuilder,
    ) -> (Path, u64) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let ids = Int64Array::from_iter_values(0..rows);
        let names = StringArray::from_iter_values((0..rows).map(|i| format!("n{}", i % 7)));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(names)]).unwrap();
        let mut bytes = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, schema, Some(properties.build())).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let location = Path::from("f.parquet");
        let size = bytes.len() as u64;
        store.put(&location, bytes.into()).await.unwrap();
        (location, size)
    }

    async fn read_ids(
        store: &Arc<InMemory>,
        location: &Path,
        size: u64,
        wanted: &[u64],
    ) -> Vec<(i64, String)> {
        let metadata = metadata(store.clone(), location, size).await.unwrap();
        let batches = read(
            store.as_ref(),
            location,
            size,
            metadata,
            ProjectionMask::all(),
            selection(wanted),
        )
        .await
        .unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
                ids.values()
                    .iter()
                    .zip(names.iter())
                    .map(|(&i, n)| (i, n.unwrap().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Reads `wanted` from a 5,000-row file: exactly those rows come back, in order.
    async fn assert_reads(wanted: &[u64]) {
        let store = Arc::new(InMemory::new());
        let (location, size) = file(&store, 5000).await;
        assert_eq!(
            read_ids(&store, &location, size, wanted).await,
            expected(wanted)
        );
    }

    fn expected(wanted: &[u64]) -> Vec<(i64, String)> {
        wanted
            .iter()
            .map(|&w| (w as i64, format!("n{}", w % 7)))
            .collect()
    }

    #[tokio::test]
    async fn scattered_rows_are_read_from_the_pages_that_hold_them() {
        let store = Arc::new(InMemory::new());
        let (location, size) = file(&store, 5000).await;
        let wanted = [3, 1500, 1999, 2000, 4500];
        let metadata = metadata(store.clone(), &location, size).await.unwrap();
        let plan = plan(
            metadata.metadata(),
            &ProjectionMask::all(),
            selection(&wanted),
        );
        // Row groups 0, 1, 2 and 4; in each, per column, the pages holding the rows and the
        // dictionary page: 18 of the file's 110 pages.
        let groups: Vec<usize> = plan.iter().map(|g| g.index).collect();
        assert_eq!(groups, vec![0, 1, 2, 4]);
        assert_eq!(plan.iter().map(|g| g.ranges.len()).sum::<usize>(), 18);
        assert_reads(&wanted).await;
    }

    #[tokio::test]
    async fn dense_selections_are_read_from_the_pages_fetched() {
        // Short selectors, which parquet would read as a mask over every page, and every
        // other page (of 100 rows) not fetched.
        let wanted: Vec<u64> = (0..5000)
            .filter(|i| i % 3 != 1 && (i / 100) % 2 == 0)
            .collect();
        assert_reads(&wanted).await;
    }

    #[tokio::test]
    async fn a_run_of_rows_across_row_groups_is_read_whole() {
        assert_reads(&[998, 999, 1000, 1001, 1999, 2000]).await;
    }

    #[tokio::test]
    async fn a_file_without_a_page_index_is_read_by_whole_column_chunks() {
        let store = Arc::new(InMemory::new());
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_offset_index_disabled(true);
        let (location, size) = file_with(&store, 3000, properties).await;
        let metadata = metadata(store.clone(), &location, size).await.unwrap();
        assert!(metadata.metadata().offset_index().is_none());
        let wanted = [5, 1500, 2999];
        assert_eq!(
            read_ids(&store, &location, size, &wanted).await,
            expected(&wanted)
        );
    }

    #[tokio::test]
    async fn a_request_for_bytes_not_fetched_is_an_error_not_a_wrong_read() {
        let pages = FetchedPages::new(
            100,
            vec![10..20, 40..50],
            vec![Bytes::from(vec![1u8; 10]); 2],
        );
        assert_eq!(pages.get_bytes(12, 8).unwrap().len(), 8);
        assert!(pages.get_bytes(12, 9).is_err());
        assert!(pages.get_bytes(20, 1).is_err());
        assert!(pages.get_bytes(5, 1).is_err());
        assert_eq!(pages.get_bytes(40, 10).unwrap().len(), 10);
    }
}
