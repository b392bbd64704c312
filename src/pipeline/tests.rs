//! The one pipeline, in process: an in-memory source, real Delta tables in a temp directory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use deltalake::kernel::{DataType, StructField};

use super::*;
use crate::config::Config;
use crate::event::{
    Cell, ChangeEvent, ColumnSchema, EventMetadata, Operation, SourceRecord, TopicPartition,
};
use crate::sink::delta::reader::read_rows;
use crate::sink::delta::{KafkaOffset, TableLayout};
use crate::source::Progress;

const INT4: u32 = 23;
const TEXT: u32 = 25;

/// What the test source saw: each confirmed position, with the Delta version of the first
/// table as it was when the confirm arrived.
type Confirms = Arc<Mutex<Vec<(Progress, Option<i64>)>>>;

/// How many items the test source had delivered when each confirm arrived.
type ReadsAtConfirm = Arc<Mutex<Vec<usize>>>;

/// Hands out `items`, then [`SourceItem::CaughtUp`]; `E` is the kind of error the source
/// fails with (PostgreSQL's or Kafka's).
struct MemorySource<E = SourceError> {
    items: VecDeque<Result<SourceItem, E>>,
    confirms: Confirms,
    /// The table whose Delta position each confirm records.
    watched: Option<(String, String)>,
    delivered: usize,
    reads_at_confirm: ReadsAtConfirm,
    /// Delivered again, first, when the pipeline asks to rewind.
    on_rewind: Vec<Result<SourceItem, E>>,
}

#[async_trait::async_trait]
impl<E: std::error::Error + Send + Sync + 'static> ChangeSource for MemorySource<E> {
    type Error = E;

    async fn next(&mut self) -> Result<SourceItem, E> {
        self.delivered += 1;
        match self.items.pop_front() {
            Some(item) => item,
            None => Ok(SourceItem::CaughtUp),
        }
    }

    fn confirm(&mut self, progress: &Progress) {
        let seen = self.watched.as_ref().and_then(|(path, app_id)| {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(applied_version(path, app_id))
            })
        });
        self.confirms.lock().unwrap().push((progress.clone(), seen));
        self.reads_at_confirm.lock().unwrap().push(self.delivered);
    }

    async fn rewind(&mut self) -> Result<(), E> {
        for item in std::mem::take(&mut self.on_rewind).into_iter().rev() {
            self.items.push_front(item);
        }
        Ok(())
    }

    async fn close(self) {}
}

async fn applied_version(path: &str, app_id: &str) -> Option<i64> {
    let storage = Default::default();
    let opened = crate::sink::delta::position::open_with_position(path, &storage, app_id).await;
    opened.ok()??.applied
}

fn column(name: &str, type_oid: u32, is_key: bool) -> ColumnSchema {
    ColumnSchema {
        name: name.into(),
        type_oid,
        type_modifier: -1,
        type_name: None,
        is_key,
    }
}

fn schema(table: &str, columns: Vec<ColumnSchema>) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        table: TableName::new("public", table),
        columns,
    })
}

fn two_columns(table: &str) -> Arc<TableSchema> {
    schema(
        table,
        vec![column("id", INT4, true), column("name", TEXT, false)],
    )
}

fn cells(values: &[&str]) -> Vec<Cell> {
    values.iter().map(|v| Cell::Text(v.to_string())).collect()
}

fn event(schema: &Arc<TableSchema>, operation: Operation, values: &[&str]) -> ChangeEvent {
    let row = Some(cells(values));
    let (data, before) = match operation {
        Operation::Delete => (None, row),
        _ => (row, None),
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
            lsn: Lsn::default(),
            tx_id: None,
            snapshot: false,
        },
    }
}

fn transaction(xid: u32, lsn: u64, events: Vec<ChangeEvent>) -> Result<SourceItem, SourceError> {
    Ok(SourceItem::Changes {
        transaction: Transaction {
            xid: Some(xid),
            end_lsn: Lsn(lsn),
            commit_timestamp: chrono::Utc::now(),
            events,
        },
        origin: Origin::Wal(Lsn(lsn)),
    })
}

/// Transactions 1..=count, each inserting row `i` at LSN `i * 10`.
fn single_inserts(schema: &Arc<TableSchema>, count: u32) -> Vec<Result<SourceItem, SourceError>> {
    (1..=count)
        .map(|i| {
            let id = i.to_string();
            transaction(
                i,
                u64::from(i) * 10,
                vec![event(schema, Operation::Insert, &[&id, "n"])],
            )
        })
        .collect()
}

/// A record of topic `shop.public.a`, partition 0.
fn record(offset: i64) -> SourceRecord {
    SourceRecord {
        topic: "shop.public.a".into(),
        partition: 0,
        offset,
        key: None,
        value: Some(b"{}".to_vec()),
    }
}

/// One Debezium event of source transaction `xid`, inserting `values`, from [`record`]`(offset)`.
fn record_change<E>(
    schema: &Arc<TableSchema>,
    offset: i64,
    xid: u32,
    values: &[&str],
) -> Result<SourceItem, E> {
    let mut event = event(schema, Operation::Insert, values);
    event.metadata.tx_id = Some(xid);
    Ok(SourceItem::Changes {
        transaction: Transaction {
            xid: Some(xid),
            end_lsn: Lsn::default(),
            commit_timestamp: chrono::Utc::now(),
            events: vec![event],
        },
        origin: Origin::Record(record(offset)),
    })
}

struct Harness {
    dir: tempfile::TempDir,
    resolved: ResolvedPipeline,
    observer: Arc<Observer>,
    confirms: Confirms,
    reads_at_confirm: ReadsAtConfirm,
}

impl Harness {
    fn new(tables: &[&str], extra: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = tables.iter().map(|t| format!("\"public.{t}\"")).collect();
        let text = format!(
            "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.shop]\ntables = [{}]\ndelta_root = \"{}\"\n{extra}",
            list.join(", "),
            dir.path().display()
        );
        let config = Config::from_toml(&text, std::path::Path::new("t.toml"), Vec::new()).unwrap();
        let resolved = config.pipeline("shop").unwrap();
        Harness {
            observer: Arc::new(Observer::new(&resolved)),
            dir,
            resolved,
            confirms: Arc::default(),
            reads_at_confirm: Arc::default(),
        }
    }

    fn path(&self, table: &str) -> String {
        format!("{}/public/{table}", self.dir.path().display())
    }

    fn app_id(&self, table: &str) -> String {
        crate::sink::delta::txn::table_app_id("shop", &TableName::new("public", table))
    }

    async fn tables(&self, names: &[&str]) -> Tables {
        let mut tables = Tables::default();
        for name in names {
            let layout = TableLayout {
                columns: vec![
                    StructField::new("id", DataType::INTEGER, true),
                    StructField::new("name", DataType::STRING, true),
                ],
                partition_by: Vec::new(),
                properties: Default::default(),
                write_mode: Default::default(),
            };
            let writer = DeltaTableWriter::open_or_create(
                &self.path(name),
                &Default::default(),
                TableName::new("public", *name),
                self.app_id(name),
                vec!["id".into()],
                layout,
            )
            .await
            .unwrap();
            tables.insert(TableState::new(
                writer,
                true,
                self.resolved.tables[0].maintenance.clone(),
            ));
        }
        tables
    }

    async fn run(
        &self,
        tables: &[&str],
        items: Vec<Result<SourceItem, SourceError>>,
    ) -> Result<RunSummary, PipelineError> {
        let watched = Some((self.path(tables[0]), self.app_id(tables[0])));
        let tables = self.tables(tables).await;
        self.run_on(tables, items, watched).await
    }

    /// Runs the pipeline over `tables` (opened already); with `watched` (a table's path and
    /// app id), each confirm records that table's Delta position, which needs a multi-thread
    /// runtime.
    async fn run_on<E>(
        &self,
        tables: Tables,
        items: Vec<Result<SourceItem, E>>,
        watched: Option<(String, String)>,
    ) -> Result<RunSummary, PipelineError>
    where
        E: std::error::Error + Send + Sync + 'static,
        PipelineError: From<E>,
    {
        self.pipeline(tables, items, watched)
            .run(std::future::pending())
            .await
    }

    fn pipeline<E>(
        &self,
        tables: Tables,
        items: Vec<Result<SourceItem, E>>,
        watched: Option<(String, String)>,
    ) -> Pipeline<MemorySource<E>>
    where
        E: std::error::Error + Send + Sync + 'static,
        PipelineError: From<E>,
    {
        let source = MemorySource {
            items: items.into(),
            confirms: self.confirms.clone(),
            watched,
            delivered: 0,
            reads_at_confirm: self.reads_at_confirm.clone(),
            on_rewind: Vec::new(),
        };
        Pipeline::new(self.resolved.clone(), tables, source, self.observer.clone())
    }

    /// The `cdc_errors_total` sample of `error_type`.
    fn errors(&self, error_type: &str) -> Option<u64> {
        let series = format!("cdc_errors_total{{pipeline=\"shop\",error_type=\"{error_type}\"}} ");
        let text = self.observer.encode_metrics();
        let line = text.lines().find(|l| l.starts_with(&series))?;
        line[series.len()..].parse().ok()
    }

    fn confirms(&self) -> Vec<(Progress, Option<i64>)> {
        self.confirms.lock().unwrap().clone()
    }

    /// The LSN of each confirm, in order.
    fn confirmed_lsns(&self) -> Vec<Option<Lsn>> {
        self.confirms().iter().map(|(p, _)| p.lsn).collect()
    }
}

/// How many rows the table's change data feed holds.
async fn change_rows(path: &str) -> usize {
    let feed = crate::sink::delta::reader::read_changes(path, &Default::default(), 0).await;
    feed.unwrap().iter().map(|b| b.num_rows()).sum()
}

/// `id=name` per row of the table's latest version, in id order.
async fn rows(path: &str) -> Vec<String> {
    use deltalake::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    for batch in read_rows(path, &Default::default()).await.unwrap() {
        for i in 0..batch.num_rows() {
            let value = |column: usize| {
                let array = batch.column(column);
                match array.is_null(i) {
                    true => "null".to_string(),
                    false => array_value_to_string(array, i).unwrap(),
                }
            };
            rows.push(format!("{}={}", value(0), value(1)));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_collapses_its_transactions_into_one_commit_confirmed_after_it() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let items = vec![
        transaction(1, 100, vec![event(&a, Operation::Insert, &["1", "x"])]),
        transaction(2, 200, vec![event(&a, Operation::Update, &["1", "y"])]),
        transaction(
            3,
            300,
            vec![
                event(&a, Operation::Insert, &["2", "z"]),
                event(&a, Operation::Update, &["1", "w"]),
            ],
        ),
    ];
    let summary = h.run(&["a"], items).await.unwrap();
    assert_eq!(summary.transactions, 3);
    assert_eq!(summary.events, 4);
    assert_eq!(summary.delta_commits, 1, "one batch, one table: one commit");
    assert_eq!(summary.last_lsn, Some(Lsn(300)));
    assert_eq!(rows(&h.path("a")).await, vec!["1=w", "2=z"]);
    let confirms = h.confirms();
    assert_eq!(confirms.len(), 1, "{confirms:?}");
    assert_eq!(confirms[0].0.lsn, Some(Lsn(300)));
    assert_eq!(
        confirms[0].1,
        Some(300),
        "confirmed only once Delta held it"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_batch_is_written_and_confirmed_before_the_next_one_starts() {
    let h = Harness::new(&["a"], "batch_size = 2\nmax_batch_size = 2\n");
    let a = two_columns("a");
    let items = single_inserts(&a, 5);
    let summary = h.run(&["a"], items).await.unwrap();
    assert_eq!(summary.delta_commits, 3);
    let confirmed: Vec<(Option<Lsn>, Option<i64>)> = h
        .confirms()
        .into_iter()
        .map(|(p, seen)| (p.lsn, seen))
        .collect();
    assert_eq!(
        confirmed,
        vec![
            (Some(Lsn(20)), Some(20)),
            (Some(Lsn(40)), Some(40)),
            (Some(Lsn(50)), Some(50))
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_source_is_read_ahead_while_a_batch_is_written_and_handled_in_order_after_it() {
    let h = Harness::new(&["a"], "batch_size = 2\nmax_batch_size = 2\n");
    let a = two_columns("a");
    let summary = h.run(&["a"], single_inserts(&a, 5)).await.unwrap();
    assert_eq!(summary.delta_commits, 3);
    assert_eq!(summary.events, 5);
    let reads = h.reads_at_confirm.lock().unwrap().clone();
    // Batch {1, 2} is confirmed once written; meanwhile rows 3 and 4 were already read.
    assert_eq!(reads[0], 4, "{reads:?}");
    let confirmed = h.confirmed_lsns();
    assert_eq!(confirmed, vec![Some(Lsn(20)), Some(Lsn(40)), Some(Lsn(50))]);
    assert_eq!(
        rows(&h.path("a")).await,
        ["1=n", "2=n", "3=n", "4=n", "5=n"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_read_during_a_write_goes_into_one_larger_batch_up_to_max_batch_size() {
    let h = Harness::new(&["a"], "batch_size = 2\nmax_batch_size = 5\n");
    let a = two_columns("a");
    let summary = h.run(&["a"], single_inserts(&a, 12)).await.unwrap();
    assert_eq!(summary.events, 12);
    let confirmed = h.confirmed_lsns();
    // {1, 2} as a full batch; everything after it was waiting when each write ended.
    assert_eq!(
        confirmed,
        vec![Some(Lsn(20)), Some(Lsn(70)), Some(Lsn(120))],
        "batches of 2, 5 and 5 events"
    );
    assert_eq!(summary.delta_commits, 3);
    assert_eq!(rows(&h.path("a")).await.len(), 12);
}

#[test]
fn batches_grow_while_behind_except_a_backlog_s_first_batch() {
    let pace = |first_batch, items_waiting, backlog, contended| Pace {
        first_batch,
        items_waiting,
        backlog,
        contended,
    };
    assert!(
        !grows_batches(pace(false, false, false, false)),
        "keeping pace"
    );
    assert!(grows_batches(pace(false, false, true, false)), "a backlog");
    assert!(
        !grows_batches(pace(true, false, true, false)),
        "a backlog's first batch"
    );
    assert!(
        grows_batches(pace(false, true, false, false)),
        "items waiting"
    );
    assert!(grows_batches(pace(true, true, false, false)));
    assert!(grows_batches(pace(false, false, false, true)), "lost races");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_is_written_in_batches_of_max_batch_size_after_the_first_one() {
    let h = Harness::new(&["a"], "batch_size = 2\nmax_batch_size = 5\n");
    let a = two_columns("a");
    let an_hour_ago = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    let backlog = single_inserts(&a, 12)
        .into_iter()
        .map(|item| match item {
            Ok(SourceItem::Changes {
                mut transaction,
                origin,
            }) => {
                transaction.commit_timestamp = an_hour_ago;
                Ok(SourceItem::Changes {
                    transaction,
                    origin,
                })
            }
            other => other,
        })
        .collect();
    let summary = h.run(&["a"], backlog).await.unwrap();
    assert_eq!(
        h.confirmed_lsns(),
        vec![Some(Lsn(20)), Some(Lsn(70)), Some(Lsn(120))],
        "batches of 2, 5 and 5 events"
    );
    assert_eq!(summary.delta_commits, 3);
    assert_eq!(rows(&h.path("a")).await.len(), 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_commit_confirms_nothing_and_counts_a_sink_error() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let items = vec![transaction(
        1,
        100,
        vec![event(&a, Operation::Update, &["not a number", "x"])],
    )];
    let error = h.run(&["a"], items).await.unwrap_err();
    assert!(
        matches!(error, PipelineError::Sink(SinkError::Convert { .. })),
        "{error}"
    );
    assert!(h.confirms().is_empty(), "{:?}", h.confirms());
    let metrics = h.observer.encode_metrics();
    assert!(
        metrics.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"sink\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_source_error_is_counted_as_a_source_error() {
    let h = Harness::new(&["a"], "");
    let items = vec![Err(SourceError::SlotMissing {
        slot: "pgdelta_shop".into(),
    })];
    let error = h.run(&["a"], items).await.unwrap_err();
    assert!(error.to_string().contains("pgdelta_shop"), "{error}");
    let metrics = h.observer.encode_metrics();
    assert!(
        metrics.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"source\"} 1"),
        "{metrics}"
    );
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread")]
async fn a_fatal_kafka_error_is_counted_as_a_source_error() {
    use crate::source::kafka::KafkaSourceError;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let fatal = KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fatal);
    let items = vec![
        record_change(&a, 0, 7, &["1", "x"]),
        Err(KafkaSourceError::Fatal(fatal)),
    ];
    let tables = h.tables(&["a"]).await;
    let error = h.run_on(tables, items, None).await.unwrap_err();
    assert!(matches!(error, PipelineError::Kafka(_)), "{error}");
    assert_eq!(h.errors("source"), Some(1));
    assert_eq!(
        h.errors("setup"),
        Some(0),
        "a Kafka error is no setup error"
    );
    assert!(h.confirms().is_empty(), "{:?}", h.confirms());
    let reason = h.observer.readiness().unwrap_err();
    assert!(reason.contains("Kafka consumer stopped"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kafka_fed_table_whose_path_became_unwritable_is_counted_as_a_sink_error() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let mut tables = h.tables(&["a"]).await;
    // The resume point is read from the table before it breaks: the commit fails.
    let state = tables.get_mut(&TableName::new("public", "a")).unwrap();
    let partition = record(0).topic_partition();
    assert_eq!(
        state.writer.kafka_next_offset(&partition).await.unwrap(),
        None
    );
    // The table is open; now its directory is a file: nothing can be written under it.
    let path = h.path("a");
    std::fs::remove_dir_all(&path).unwrap();
    std::fs::write(&path, "not a directory").unwrap();
    let items: Vec<Result<SourceItem, SourceError>> = vec![record_change(&a, 0, 7, &["1", "x"])];
    let mut pipeline = h.pipeline(tables, items, None);
    pipeline.committer.sink_attempts = 2;
    let error = pipeline.run(std::future::pending()).await.unwrap_err();
    assert!(
        matches!(&error, PipelineError::Sink(sink) if sink.is_transient()),
        "{error}"
    );
    assert_eq!(h.errors("sink"), Some(2), "each failed try counts once");
    assert_eq!(h.errors("source"), Some(0));
    assert_eq!(h.errors("setup"), Some(0));
    assert!(h.confirms().is_empty(), "{:?}", h.confirms());
    let reason = h.observer.readiness().unwrap_err();
    assert!(reason.contains("sink:"), "{reason}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_added_mid_stream_is_added_after_writing_what_came_before() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let wider = schema(
        "a",
        vec![
            column("id", INT4, true),
            column("name", TEXT, false),
            column("email", TEXT, false),
        ],
    );
    let items = vec![
        transaction(1, 100, vec![event(&a, Operation::Insert, &["1", "x"])]),
        transaction(
            2,
            200,
            vec![event(
                &wider,
                Operation::Insert,
                &["2", "y", "y@example.com"],
            )],
        ),
    ];
    let summary = h.run(&["a"], items).await.unwrap();
    assert_eq!(
        summary.delta_commits, 2,
        "the batch before the new column is written first"
    );
    let confirmed = h.confirmed_lsns();
    assert_eq!(confirmed, vec![Some(Lsn(100)), Some(Lsn(200))]);
    let batches = read_rows(&h.path("a"), &Default::default()).await.unwrap();
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, vec!["id", "name", "email"]);
    assert_eq!(rows(&h.path("a")).await, vec!["1=x", "2=y"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_whose_column_type_changed_stops_while_the_others_go_on() {
    let h = Harness::new(&["a", "b"], "");
    let a = two_columns("a");
    let b = two_columns("b");
    let b_changed = schema(
        "b",
        vec![column("id", TEXT, true), column("name", TEXT, false)],
    );
    let items = vec![
        transaction(
            1,
            100,
            vec![
                event(&a, Operation::Insert, &["1", "x"]),
                event(&b, Operation::Insert, &["1", "x"]),
            ],
        ),
        transaction(
            2,
            200,
            vec![event(&b_changed, Operation::Insert, &["two", "y"])],
        ),
        transaction(3, 300, vec![event(&a, Operation::Insert, &["2", "z"])]),
    ];
    let error = h.run(&["a", "b"], items).await.unwrap_err();
    let PipelineError::TablesStopped { stopped, .. } = &error else {
        panic!("expected stopped tables, got {error}");
    };
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(
        stopped[0].contains("public.b") && stopped[0].contains("'id' changed"),
        "{stopped:?}"
    );
    assert_eq!(rows(&h.path("a")).await, vec!["1=x", "2=z"]);
    assert_eq!(rows(&h.path("b")).await, vec!["1=x"]);
    let metrics = h.observer.encode_metrics();
    assert!(
        metrics.contains("cdc_errors_total{pipeline=\"shop\",error_type=\"table_stopped\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_a_table_already_holds_are_skipped_and_kafka_offsets_are_recorded() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let change = |offset: i64, xid: u32, values: &[&str]| record_change(&a, offset, xid, values);
    let items = vec![
        change(0, 7, &["1", "x"]),
        change(1, 7, &["2", "y"]),
        Ok(SourceItem::Skipped(Origin::Record(record(2)))),
        Ok(SourceItem::Rewound),
        // Read again after a rebalance: offset 1 is in Delta already after the first batch
        // only if it was written, which it was not; so both are applied once.
        change(0, 7, &["1", "x"]),
        change(1, 7, &["2", "y"]),
        change(2, 8, &["3", "z"]),
    ];
    let summary = h.run(&["a"], items).await.unwrap();
    assert_eq!(
        summary.transactions, 2,
        "Debezium events of one source transaction count once"
    );
    assert_eq!(rows(&h.path("a")).await, vec!["1=x", "2=y", "3=z"]);
    let confirms = h.confirms();
    let partition = crate::event::TopicPartition {
        topic: "shop.public.a".into(),
        partition: 0,
    };
    assert_eq!(confirms.last().unwrap().0.next_offsets[&partition], 3);
    let path = h.path("a");
    let app_id = crate::sink::delta::txn::kafka_app_id(&h.app_id("a"), &partition);
    assert_eq!(applied_version(&path, &app_id).await, Some(3));

    // A restart reads records again: those the table holds are skipped.
    let again = vec![change(1, 7, &["2", "changed"]), change(3, 9, &["4", "q"])];
    h.run(&["a"], again).await.unwrap();
    assert_eq!(rows(&h.path("a")).await, vec!["1=x", "2=y", "3=z", "4=q"]);
}

/// Two members of a consumer group: while this one writes a batch of partition 0 from
/// offset 0, the partition moves to another member, which applies offsets 0..2 first. The
/// commit loses the race, sees that the table now holds part of the batch, drops the batch
/// and reads the partition again from the table's offset: each record is applied once.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_another_member_applied_in_part_is_read_again_after_what_the_table_holds() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let change = |offset: i64, values: &[&str]| record_change::<SourceError>(&a, offset, 7, values);
    let tables = h.tables(&["a"]).await;
    another_member_applies(&h, &a, &[["1", "x"], ["2", "y"]]).await;

    let items = vec![
        change(0, &["1", "x"]),
        change(1, &["2", "y"]),
        change(2, &["3", "z"]),
    ];
    let mut pipeline = h.pipeline(tables, items, None);
    pipeline.source.on_rewind = vec![
        change(0, &["1", "x"]),
        change(1, &["2", "y"]),
        change(2, &["3", "z"]),
    ];
    pipeline.run(std::future::pending()).await.unwrap();

    let path = h.path("a");
    assert_eq!(rows(&path).await, vec!["1=x", "2=y", "3=z"]);
    let app_id =
        crate::sink::delta::txn::kafka_app_id(&h.app_id("a"), &record(0).topic_partition());
    assert_eq!(applied_version(&path, &app_id).await, Some(3));
    assert_eq!(
        change_rows(&path).await,
        3,
        "each record is in the change feed once"
    );
}

/// Another member's commit of `rows`, the records of [`record`]'s partition from offset 0.
async fn another_member_applies(h: &Harness, schema: &Arc<TableSchema>, rows: &[[&str; 2]]) {
    let mut other = h.tables(&["a"]).await;
    let writer = &mut other
        .get_mut(&TableName::new("public", "a"))
        .unwrap()
        .writer;
    writer.set_member("other");
    let mut changes = writer.new_changes();
    for values in rows {
        changes
            .push(event(schema, Operation::Insert, values))
            .unwrap();
    }
    let next = KafkaOffset {
        partition: record(0).topic_partition(),
        next_offset: rows.len() as i64,
    };
    writer.apply_from(&changes, None, &[next]).await.unwrap();
}

/// Two members append batches of different partitions to one table, both from the same
/// table version: neither commit sets an application id the other sets, so the second does
/// not conflict with the first; `status` and `validate` still see the newer LSN.
#[tokio::test(flavor = "multi_thread")]
async fn members_appending_batches_of_different_partitions_do_not_conflict() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let name = TableName::new("public", "a");
    let mut first = h.tables(&["a"]).await;
    let mut second = h.tables(&["a"]).await;
    for (tables, partition, values, lsn) in [
        (&mut first, 0, ["1", "x"], 100),
        (&mut second, 1, ["2", "y"], 200),
    ] {
        let writer = &mut tables.get_mut(&name).unwrap().writer;
        let mut changes = writer.new_changes();
        changes.push(event(&a, Operation::Insert, &values)).unwrap();
        let next = KafkaOffset {
            partition: TopicPartition {
                topic: "shop.public.a".into(),
                partition,
            },
            next_offset: 1,
        };
        writer
            .apply_from(&changes, Some(Lsn(lsn)), &[next])
            .await
            .expect("no conflict with the other member's append");
    }
    let path = h.path("a");
    assert_eq!(rows(&path).await, vec!["1=x", "2=y"]);
    let storage = Default::default();
    let position =
        crate::sink::delta::position::open_with_position(&path, &storage, &h.app_id("a"))
            .await
            .unwrap()
            .unwrap();
    let recent = crate::sink::delta::position::recent_commits(&position.table)
        .await
        .unwrap();
    assert_eq!(position.newest_lsn(&recent), Some(Lsn(200)));
}

/// A batch whose MERGE changes nothing (a delete of a row the table does not hold) makes no
/// commit, so the table holds none of its offsets.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_that_changes_nothing_leaves_the_offsets_the_table_holds() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let mut tables = h.tables(&["a"]).await;
    let writer = &mut tables
        .get_mut(&TableName::new("public", "a"))
        .unwrap()
        .writer;
    let mut changes = writer.new_changes();
    changes
        .push(event(&a, Operation::Delete, &["1", "x"]))
        .unwrap();
    let partition = record(0).topic_partition();
    let next = KafkaOffset {
        partition: partition.clone(),
        next_offset: 1,
    };
    assert_eq!(writer.kafka_next_offset(&partition).await.unwrap(), None);
    let version = writer.version();
    writer.apply_from(&changes, None, &[next]).await.unwrap();
    assert_eq!(writer.version(), version, "no commit");
    assert_eq!(writer.kafka_next_offset(&partition).await.unwrap(), None);
}

/// This member chose records 0..3 against the empty table; another member applied 0..2
/// since, and this member read the table again in between (as it does after maintenance),
/// so its commit would not lose a race. It is refused as overtaken: nothing is applied twice.
#[tokio::test(flavor = "multi_thread")]
async fn records_another_member_applied_since_they_were_chosen_are_not_applied_again() {
    let h = Harness::new(&["a"], "");
    let a = two_columns("a");
    let name = TableName::new("public", "a");
    let partition = record(0).topic_partition();
    let mut tables = h.tables(&["a"]).await;
    let state = tables.get_mut(&name).unwrap();
    assert_eq!(
        state.writer.kafka_next_offset(&partition).await.unwrap(),
        None
    );
    let mut changes = state.writer.new_changes();
    for values in [["1", "x"], ["2", "y"], ["3", "z"]] {
        changes.push(event(&a, Operation::Insert, &values)).unwrap();
    }

    another_member_applies(&h, &a, &[["1", "x"], ["2", "y"]]).await;
    state.writer.reload().await.unwrap();

    let position = SourcePosition {
        lsn: None,
        offsets: vec![KafkaOffset {
            partition: partition.clone(),
            next_offset: 3,
        }],
        first_offsets: [(partition, 0)].into(),
    };
    let committer = super::commit::Committer::new(&h.resolved, h.observer.clone());
    let error = committer
        .commit(&mut tables, &name, &mut changes, &position)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PipelineError::Overtaken {
                held: 2,
                first: 0,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(change_rows(&h.path("a")).await, 2, "nothing applied twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn small_files_are_compacted_between_batches_without_changing_rows_feed_or_positions() {
    let h = Harness::new(
        &["a"],
        "batch_size = 1\nmax_batch_size = 1\n[pipelines.shop.maintenance]\ncompact_min_files = 4\n",
    );
    let a = two_columns("a");
    let items = single_inserts(&a, 10);
    let summary = h.run(&["a"], items).await.unwrap();
    assert_eq!(summary.delta_commits, 10);
    let path = h.path("a");
    let writer_files = {
        let url = deltalake::ensure_table_uri(&path).unwrap();
        let table = deltalake::open_table(url).await.unwrap();
        table.snapshot().unwrap().log_data().num_files()
    };
    assert!(writer_files < 4, "{writer_files} files after compaction");
    let expected: Vec<String> = (1..=10).map(|i| format!("{i}=n")).collect();
    assert_eq!(rows(&path).await, expected);
    assert_eq!(applied_version(&path, &h.app_id("a")).await, Some(100));
    assert_eq!(
        change_rows(&path).await,
        10,
        "compaction adds nothing to the change feed"
    );
    let metrics = h.observer.encode_metrics();
    let removed = "postgres_cdc_maintenance_files_removed_total{pipeline=\"shop\",table=\"public.a\",operation=\"compact\"}";
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(removed) && !l.ends_with(" 0")),
        "{metrics}"
    );
}
