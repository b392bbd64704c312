//! The deletion-vector mode against copy-on-write: the same batches give the same rows and
//! the same change feed, with deletion vectors in the log instead of rewritten files; and what
//! a copy-on-write MERGE rewrites after compaction.

use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::kernel::{DataType, StructField};

use crate::config::WriteMode;
use crate::event::{
    Cell, ChangeEvent, ColumnSchema, EventMetadata, Lsn, Operation, TableName, TableSchema,
};
use crate::sink::delta::reader::{read_changes, read_rows};
use crate::sink::delta::{DeltaTableWriter, TableChanges, TableLayout};

const INT4: u32 = 23;
const TEXT: u32 = 25;

fn schema(with_note: bool) -> Arc<TableSchema> {
    let column = |name: &str, type_oid, is_key| ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier: -1,
        type_name: None,
        is_key,
    };
    let mut columns = vec![column("id", INT4, true), column("name", TEXT, false)];
    if with_note {
        columns.push(column("note", TEXT, false));
    }
    Arc::new(TableSchema {
        table: TableName::new("public", "t"),
        columns,
    })
}

fn text(values: &[&str]) -> Vec<Cell> {
    values
        .iter()
        .map(|v| match *v {
            "<toast>" => Cell::UnchangedToast,
            v => Cell::Text(v.to_string()),
        })
        .collect()
}

enum Change<'a> {
    Insert(&'a [&'a str]),
    Update(&'a [&'a str]),
    /// A key-changing update: the old key, then the new row.
    Rekey(&'a str, &'a [&'a str]),
    Delete(&'a str),
}

fn event(schema: &Arc<TableSchema>, change: &Change) -> ChangeEvent {
    let (operation, data, before) = match change {
        Change::Insert(row) => (Operation::Insert, Some(text(row)), None),
        Change::Update(row) => (Operation::Update, Some(text(row)), None),
        Change::Rekey(old, row) => {
            let mut before = vec![Cell::Null; row.len()];
            before[0] = Cell::Text(old.to_string());
            (Operation::Update, Some(text(row)), Some(before))
        }
        Change::Delete(id) => {
            let mut before = vec![Cell::Null; schema.columns.len()];
            before[0] = Cell::Text(id.to_string());
            (Operation::Delete, None, Some(before))
        }
    };
    ChangeEvent {
        operation,
        schema: schema.clone(),
        data,
        before,
        before_is_whole_row: false,
        commit_timestamp: chrono::Utc::now(),
        metadata: EventMetadata {
            database: "db".into(),
            lsn: Lsn(1),
            tx_id: None,
            snapshot: false,
        },
    }
}

async fn open(path: &str, mode: WriteMode) -> DeltaTableWriter {
    open_with(path, mode, Default::default()).await
}

async fn open_with(
    path: &str,
    mode: WriteMode,
    properties: std::collections::HashMap<String, String>,
) -> DeltaTableWriter {
    let layout = TableLayout {
        columns: vec![
            StructField::new("id", DataType::INTEGER, true),
            StructField::new("name", DataType::STRING, true),
        ],
        partition_by: Vec::new(),
        properties,
        write_mode: mode,
    };
    DeltaTableWriter::open_or_create(
        path,
        &Default::default(),
        TableName::new("public", "t"),
        "pgdelta-test-public.t".into(),
        vec!["id".into()],
        layout,
    )
    .await
    .unwrap()
}

async fn apply(
    writer: &mut DeltaTableWriter,
    lsn: u64,
    schema: &Arc<TableSchema>,
    changes: &[Change<'_>],
) {
    let mut batch = writer.new_changes();
    for change in changes {
        batch.push(event(schema, change)).unwrap();
    }
    writer
        .apply_from(&batch, Some(Lsn(lsn)), &[])
        .await
        .unwrap();
}

/// Inserts of rows `id`, `<prefix><id>`.
fn inserts(
    writer: &DeltaTableWriter,
    schema: &Arc<TableSchema>,
    ids: std::ops::RangeInclusive<u32>,
    prefix: &str,
) -> TableChanges {
    let mut batch = writer.new_changes();
    for id in ids {
        let (id, name) = (id.to_string(), format!("{prefix}{id}"));
        batch
            .push(event(schema, &Change::Insert(&[&id, &name])))
            .unwrap();
    }
    batch
}

async fn truncate(writer: &mut DeltaTableWriter, lsn: u64, schema: &Arc<TableSchema>) {
    let mut batch: TableChanges = writer.new_changes();
    let mut event = event(schema, &Change::Delete("1"));
    event.operation = Operation::Truncate;
    event.before = None;
    batch.push(event).unwrap();
    writer
        .apply_from(&batch, Some(Lsn(lsn)), &[])
        .await
        .unwrap();
}

fn lines(batches: &[RecordBatch], skip: &[&str]) -> Vec<String> {
    let mut lines = Vec::new();
    for batch in batches {
        for i in 0..batch.num_rows() {
            let values: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !skip.contains(&f.name().as_str()))
                .map(|(c, _)| match batch.column(c).is_null(i) {
                    true => "null".into(),
                    false => array_value_to_string(batch.column(c), i).unwrap(),
                })
                .collect();
            lines.push(values.join("|"));
        }
    }
    lines
}

/// A temporary directory and the path of table `t` in it.
fn table_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}/t", dir.path().display());
    (dir, path)
}

/// The table's latest rows, one `a|b|...` line each.
async fn live_rows(path: &str) -> Vec<String> {
    lines(&read_rows(path, &Default::default()).await.unwrap(), &[])
}

/// The rows and the change feed (without commit times) after the same batches.
async fn replay(mode: WriteMode) -> (Vec<String>, Vec<String>, tempfile::TempDir) {
    let (dir, path) = table_dir();
    let two = schema(false);
    let mut writer = open(&path, mode).await;
    for (lsn, ids, prefix) in [(10, 1..=6, "a"), (20, 7..=12, "b")] {
        let batch = inserts(&writer, &two, ids, prefix);
        writer.append_inserts(&batch, Lsn(lsn)).await.unwrap();
    }
    // Updates in both files, a delete, an insert, a key change, an untouched TOAST value.
    apply(
        &mut writer,
        30,
        &two,
        &[
            Change::Update(&["2", "a2'"]),
            Change::Update(&["8", "<toast>"]),
            Change::Delete("5"),
            Change::Insert(&["13", "c13"]),
            Change::Rekey("11", &["21", "b11'"]),
            Change::Delete("99"),
        ],
    )
    .await;
    // The same keys again: the live rows are now in the file the last commit added.
    apply(
        &mut writer,
        40,
        &two,
        &[
            Change::Update(&["2", "a2''"]),
            Change::Delete("13"),
            Change::Update(&["3", "a3'"]),
        ],
    )
    .await;
    // A process that starts again finds the rows from the files.
    drop(writer);
    let mut writer = open(&path, mode).await;
    assert_eq!(writer.last_applied_lsn(), Some(Lsn(40)));
    apply(
        &mut writer,
        50,
        &two,
        &[Change::Update(&["3", "a3''"]), Change::Delete("21")],
    )
    .await;
    // A column added in PostgreSQL: older files have no value for it.
    writer
        .add_columns(vec![StructField::new("note", DataType::STRING, true)])
        .await
        .unwrap();
    let three = schema(true);
    apply(
        &mut writer,
        60,
        &three,
        &[
            Change::Update(&["4", "a4'", "n4"]),
            Change::Update(&["7", "b7'", "<toast>"]),
        ],
    )
    .await;
    let rows = live_rows(&path).await;
    let changes = read_changes(&path, &Default::default(), 0).await.unwrap();
    let mut feed = lines(&changes, &["_commit_timestamp"]);
    feed.sort();
    truncate(&mut writer, 70, &three).await;
    apply(
        &mut writer,
        80,
        &three,
        &[
            Change::Insert(&["1", "again", "x"]),
            Change::Update(&["1", "again'", "y"]),
        ],
    )
    .await;
    let mut after = live_rows(&path).await;
    after.insert(0, "after truncate:".into());
    let mut all = rows;
    all.extend(after);
    (all, feed, dir)
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_vectors_give_the_rows_and_change_feed_of_copy_on_write() {
    let (cow_rows, cow_feed, _a) = replay(WriteMode::CopyOnWrite).await;
    let (dv_rows, dv_feed, dir) = replay(WriteMode::DeletionVectors).await;
    assert_eq!(
        cow_rows,
        vec![
            "1|a1|null",
            "2|a2''|null",
            "3|a3''|null",
            "4|a4'|n4",
            "6|a6|null",
            "7|b7'|null",
            "8|b8|null",
            "9|b9|null",
            "10|b10|null",
            "12|b12|null",
            "after truncate:",
            "1|again'|y",
        ]
    );
    assert_eq!(dv_rows, cow_rows);
    assert_eq!(dv_feed, cow_feed);

    let path = format!("{}/t", dir.path().display());
    let table = crate::sink::delta::storage::open(&path, &Default::default())
        .await
        .unwrap();
    let snapshot = table.snapshot().unwrap();
    assert_eq!(snapshot.protocol().min_reader_version(), 3);
    assert_eq!(snapshot.protocol().min_writer_version(), 7);
    let vectors = std::fs::read_dir(dir.path().join("t"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("deletion_vector_")
        })
        .count();
    assert!(
        vectors >= 4,
        "one deletion-vector file per update commit, found {vectors}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_copy_on_write_table_is_upgraded_and_keeps_its_rows() {
    let (_dir, path) = table_dir();
    let two = schema(false);
    let mut writer = open(&path, WriteMode::CopyOnWrite).await;
    apply(
        &mut writer,
        10,
        &two,
        &[Change::Insert(&["1", "x"]), Change::Insert(&["2", "y"])],
    )
    .await;
    drop(writer);
    let mut writer = open(&path, WriteMode::DeletionVectors).await;
    apply(&mut writer, 20, &two, &[Change::Update(&["1", "x'"])]).await;
    let rows = live_rows(&path).await;
    assert_eq!(rows, vec!["1|x'", "2|y"]);
    let table = crate::sink::delta::storage::open(&path, &Default::default())
        .await
        .unwrap();
    let snapshot = table.snapshot().unwrap();
    let with_vector = snapshot
        .log_data()
        .iter()
        .filter(|f| f.deletion_vector_descriptor().is_some())
        .count();
    assert_eq!(
        with_vector, 1,
        "the old file keeps its row 2 and drops row 1 by vector"
    );
    let config = snapshot.metadata().configuration();
    assert_eq!(
        config.get("delta.enableChangeDataFeed").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        config
            .get("delta.enableDeletionVectors")
            .map(String::as_str),
        Some("true")
    );
}

fn threshold(fraction: f64) -> super::PurgeThreshold {
    super::PurgeThreshold {
        fraction,
        min_bytes: 0,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn purging_rewrites_mostly_deleted_files_and_changes_no_row_or_change() {
    let (_dir, path) = table_dir();
    let two = schema(false);
    let mut writer = open(&path, WriteMode::DeletionVectors).await;
    let batch = inserts(&writer, &two, 1..=10, "r");
    writer.apply_from(&batch, Some(Lsn(10)), &[]).await.unwrap();
    apply(
        &mut writer,
        20,
        &two,
        &[
            Change::Update(&["1", "x"]),
            Change::Update(&["2", "y"]),
            Change::Delete("3"),
        ],
    )
    .await;
    let before_rows = live_rows(&path).await;
    let before_feed = lines(
        &read_changes(&path, &Default::default(), 0).await.unwrap(),
        &["_commit_timestamp"],
    );

    let table = crate::sink::delta::storage::open(&path, &Default::default())
        .await
        .unwrap();
    assert!(
        super::purge_deleted_rows(&table, threshold(0.5))
            .await
            .unwrap()
            .is_none(),
        "3 of 10 is under half"
    );
    let (purged, files) = super::purge_deleted_rows(&table, threshold(0.2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(files, 1);
    let snapshot = purged.snapshot().unwrap();
    assert!(snapshot
        .log_data()
        .iter()
        .all(|f| f.deletion_vector_descriptor().is_none()));
    assert_eq!(live_rows(&path).await, before_rows);
    let feed = lines(
        &read_changes(&path, &Default::default(), 0).await.unwrap(),
        &["_commit_timestamp"],
    );
    assert_eq!(
        feed, before_feed,
        "a purge is no change to the change data feed"
    );

    // The writer finds the rows in the rewritten file.
    writer.reload().await.unwrap();
    apply(
        &mut writer,
        30,
        &two,
        &[Change::Update(&["4", "z"]), Change::Delete("1")],
    )
    .await;
    let after = live_rows(&path).await;
    assert_eq!(
        after,
        vec!["2|y", "4|z", "5|r5", "6|r6", "7|r7", "8|r8", "9|r9", "10|r10"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_of_files_with_deletion_vectors_keeps_only_the_live_rows() {
    let (_dir, path) = table_dir();
    let two = schema(false);
    let mut writer = open(&path, WriteMode::DeletionVectors).await;
    apply(
        &mut writer,
        10,
        &two,
        &[Change::Insert(&["1", "a"]), Change::Insert(&["2", "b"])],
    )
    .await;
    apply(
        &mut writer,
        20,
        &two,
        &[Change::Insert(&["3", "c"]), Change::Update(&["1", "a'"])],
    )
    .await;
    apply(
        &mut writer,
        30,
        &two,
        &[Change::Delete("2"), Change::Update(&["3", "c'"])],
    )
    .await;
    let before = live_rows(&path).await;
    let table = crate::sink::delta::storage::open(&path, &Default::default())
        .await
        .unwrap();
    let (compacted, done) = crate::sink::delta::maintenance::compact_table(table, 1 << 20, &[])
        .await
        .unwrap();
    assert!(done.files_removed >= 2, "{done:?}");
    let snapshot = compacted.snapshot().unwrap();
    assert!(snapshot
        .log_data()
        .iter()
        .all(|f| f.deletion_vector_descriptor().is_none()));
    assert_eq!(live_rows(&path).await, before);
    writer.reload().await.unwrap();
    apply(
        &mut writer,
        40,
        &two,
        &[Change::Update(&["1", "a''"]), Change::Delete("3")],
    )
    .await;
    assert_eq!(live_rows(&path).await, vec!["1|a''"]);
}

/// The `remove` actions of the table's newest commit.
fn removes_in_last_commit(path: &str) -> usize {
    let log = std::path::Path::new(path).join("_delta_log");
    let newest = std::fs::read_dir(&log)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .max()
        .unwrap();
    let text = std::fs::read_to_string(newest).unwrap();
    text.lines()
        .filter(|l| l.starts_with("{\"remove\""))
        .count()
}

/// Compaction keeps the files' key ranges apart (delta-rs packs files in log order), so a
/// copy-on-write MERGE of recently inserted keys finds them in one file and rewrites only it.
#[tokio::test]
async fn after_compaction_a_merge_of_the_newest_keys_rewrites_only_the_file_holding_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let schema = schema(false);
    let mut writer = open(path, WriteMode::CopyOnWrite).await;
    for batch in 0..16u32 {
        let changes = inserts(&writer, &schema, batch * 100 + 1..=batch * 100 + 100, "n");
        writer
            .append_inserts(&changes, Lsn(u64::from(batch) + 1))
            .await
            .unwrap();
    }
    let stats = writer.file_stats().await.unwrap();
    assert_eq!(stats.files, 16);
    let target = stats.bytes / 2 + 1;
    crate::sink::delta::maintenance::compact_table(writer.detached_table(), target, &[])
        .await
        .unwrap();
    writer.reload().await.unwrap();
    let compacted = writer.file_stats().await.unwrap().files;
    assert!((2..16).contains(&compacted), "{compacted} files");

    // From the three newest appends: in one file only when compaction kept their order.
    let updates = [
        Change::Update(&["1350", "changed"]),
        Change::Update(&["1450", "changed"]),
        Change::Update(&["1550", "changed"]),
    ];
    apply(&mut writer, 100, &schema, &updates).await;
    assert_eq!(
        removes_in_last_commit(path),
        1,
        "one of {compacted} files rewritten"
    );
}

/// The initial copy rolls files at the table's `delta.targetFileSize` (delta-rs MERGE does,
/// its `RecordBatchWriter` does not unless told), so the copy of a table clustered by its
/// key is a run of key-ranged files and a MERGE of the newest keys rewrites only the last.
#[tokio::test]
async fn a_copy_is_written_in_files_of_the_target_size_and_a_merge_of_new_keys_rewrites_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let schema = schema(false);
    let properties = [("delta.targetFileSize".to_string(), (32 * 1024).to_string())];
    let mut writer = open_with(path, WriteMode::CopyOnWrite, properties.into()).await;
    let mut copy = writer.begin_snapshot().unwrap();
    for chunk in 0..20u32 {
        let changes = inserts(
            &writer,
            &schema,
            chunk * 1000 + 1..=chunk * 1000 + 1000,
            "row-",
        );
        copy.append_changes(&changes).await.unwrap();
    }
    writer.commit_snapshot(copy, Lsn(1)).await.unwrap();
    let files = writer.file_stats().await.unwrap().files;
    assert!(files >= 4, "20,000 rows in {files} files");

    let updates = [
        Change::Update(&["19990", "changed"]),
        Change::Update(&["20000", "changed"]),
    ];
    apply(&mut writer, 2, &schema, &updates).await;
    assert_eq!(
        removes_in_last_commit(path),
        1,
        "one of {files} files rewritten"
    );
    let rows = live_rows(path).await;
    assert_eq!(rows.len(), 20_000);
    assert!(rows.contains(&"20000|changed".to_string()));
}

/// The most rows one data page holds in the table's data files (from their page indexes).
fn largest_page(path: &str, table: &deltalake::DeltaTable) -> usize {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    use deltalake::parquet::file::serialized_reader::ReadOptionsBuilder;
    let snapshot = table.snapshot().unwrap();
    let mut largest = 0;
    for view in snapshot.log_data().iter() {
        let file = std::fs::File::open(std::path::Path::new(path).join(view.path().as_ref()));
        let options = ReadOptionsBuilder::new().with_page_index().build();
        let reader = SerializedFileReader::new_with_options(file.unwrap(), options).unwrap();
        let metadata = reader.metadata();
        let offsets = metadata.offset_index().expect("a page index");
        for (group, columns) in offsets.iter().enumerate() {
            let rows = metadata.row_group(group).num_rows();
            for column in columns {
                let firsts: Vec<i64> = column
                    .page_locations()
                    .iter()
                    .map(|page| page.first_row_index)
                    .chain([rows])
                    .collect();
                let most = firsts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
                largest = largest.max(most as usize);
            }
        }
    }
    largest
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_vector_tables_are_written_in_small_pages_copy_on_write_tables_are_not() {
    let schema = schema(false);
    for mode in [WriteMode::DeletionVectors, WriteMode::CopyOnWrite] {
        let (_dir, path) = table_dir();
        let mut writer = open(&path, mode).await;
        let mut copy = writer.begin_snapshot().unwrap();
        copy.append_changes(&inserts(&writer, &schema, 1..=5000, "row-"))
            .await
            .unwrap();
        writer.commit_snapshot(copy, Lsn(1)).await.unwrap();
        let streamed = inserts(&writer, &schema, 5001..=10_000, "row-");
        writer
            .apply_from(&streamed, Some(Lsn(2)), &[])
            .await
            .unwrap();
        let written = largest_page(&path, &writer.detached_table());
        let (compacted, _) =
            crate::sink::delta::maintenance::compact_table(writer.detached_table(), 1 << 30, &[])
                .await
                .unwrap();
        let compacted = largest_page(&path, &compacted);
        match mode {
            // A write that ends mid-page leaves rows for the next write's first page.
            WriteMode::DeletionVectors => assert!(
                written <= 2 * super::PAGE_ROWS && compacted <= 2 * super::PAGE_ROWS,
                "pages of {written} and {compacted} rows"
            ),
            WriteMode::CopyOnWrite => assert!(
                written >= 5000 && compacted >= 5000,
                "pages of {written} and {compacted} rows"
            ),
        }
    }
}
