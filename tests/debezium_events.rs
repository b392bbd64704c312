//! Real Debezium events: a real Debezium 3.x PostgreSQL connector (embedded engine) captures a
//! table of many types; every record, with and without schemas, with and without the unwrap
//! transform, is parsed by pgdelta and replayed; the result must equal PostgreSQL's own text
//! output of the rows, the column types inferred from Debezium's schemas must map to the same
//! Delta types as the real PostgreSQL columns, and a Delta table written from the parsed events
//! must read back exactly like the one direct mode (the pgdelta binary) writes for the same rows.

mod debezium_support;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use debezium_support::{engine_properties, Capture, CaptureRun};
use pgdelta::event::debezium::{DebeziumParser, DebeziumRecord};
use pgdelta::event::Lsn;
use pgdelta::event::{Cell, ChangeEvent, ColumnSchema, Operation, TableName, TableSchema};
use pgdelta::sink::delta::types::delta_type;
use pgdelta::sink::delta::{DeltaTableWriter, TableLayout};
use serde_json::Value;
use support::{pg_rows_as_json, read_delta_rows, PgCluster, NULL_MARKER, PG_PASSWORD};

const DB: &str = "cdcdb";

const SETUP_TABLES: &str = r#"
CREATE TABLE public.all_types (
    id int8 PRIMARY KEY, i2 int2, i4 int4, n102 numeric(10,2), n numeric, t text, b bool,
    d date, tm time, ts timestamp, tstz timestamptz, u uuid, j jsonb, by bytea,
    ia int4[], ta text[], f8 float8, f4 float4, iv interval, big text);
CREATE TABLE public.stop_marker (id int PRIMARY KEY);
CREATE TABLE public.emptied (id int PRIMARY KEY);
CREATE PUBLICATION dbz_pub FOR TABLE public.all_types, public.stop_marker, public.emptied;
"#;

const SETUP_ROWS: &str = r#"
INSERT INTO all_types VALUES
 (1, 2, 3, 12345678.91, 3.14159265358979323846, 'héllo wörld', true, '2024-02-29',
  '13:45:01.123456', '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05.678901+02',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2], "b": null}', '\xdeadbeef',
  '{1,2,NULL}', '{"a b",c}', 1.5, 2.25, '1 year 2 mons 3 days 04:05:06.5',
  (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i)),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL),
 (3, -32768, -2147483648, -0.01, 123456789012345678901234567890.123, 'quote " back\slash, {x}',
  false, '1900-01-01', '23:59:59.999999', '1969-12-31 23:59:59.5',
  '1999-12-31 23:00:00-05', '00000000-0000-0000-0000-000000000000', '[]', '\x', '{}',
  '{NULL,"",x,"NULL"}', 1e-7, 3.14, '-1 days +02:00:00', 'short');
"#;

const CHANGES: &str = r#"
INSERT INTO all_types VALUES
 (4, 4, 4, 99999999.99, -7.5, 'four', true, '2000-01-01', '00:00:00', '2000-01-01 00:00:00',
  '2000-01-01 00:00:00+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '{"x": "y"}', '\x00ff',
  '{-1,0,1}', '{"with,comma","with}brace"}', 1e20, -0.5, '00:00:00', 'four');
INSERT INTO all_types (id, t) VALUES (5, 'five');
UPDATE all_types SET t = 'changed', i4 = i4 + 1 WHERE id = 1;
UPDATE all_types SET id = 6 WHERE id = 5;
DELETE FROM all_types WHERE id = 2;
UPDATE all_types SET n = n * 2, ta = '{a,b}', ts = NULL, iv = '-00:01:00.000001' WHERE id = 3;
INSERT INTO emptied VALUES (1);
TRUNCATE emptied;
INSERT INTO stop_marker VALUES (1);
"#;

/// Every (schemas, unwrap) combination the connector can be configured with.
const VARIANTS: [(bool, bool); 4] = [(true, false), (false, false), (true, true), (false, true)];

#[test]
fn real_debezium_events_match_postgres_text_output() {
    let cluster = PgCluster::start();
    cluster.create_database(DB);
    cluster.psql(DB, SETUP_TABLES);
    let dir = tempfile::tempdir().unwrap();
    let direct_config = direct_mode_config(&cluster, dir.path());
    catch_up_in_direct_mode(&direct_config); // creates its slot before any row exists
    cluster.psql(DB, SETUP_ROWS);
    let runs = VARIANTS
        .iter()
        .map(|&(schemas, unwrap)| {
            let name = format!("dbz_{}_{}", schema_label(schemas), unwrap_label(unwrap));
            CaptureRun {
                output: dir.path().join(format!("{name}.jsonl")),
                properties: engine_properties(&cluster, DB, &name, "dbz_pub", schemas, unwrap),
                name,
            }
        })
        .collect();
    let mut capture = Capture::start(dir.path(), runs);
    capture.wait_for_records(3); // the snapshot of rows 1-3
    cluster.psql(DB, CHANGES);
    let outputs = capture.finish();
    catch_up_in_direct_mode(&direct_config);
    let direct_rows = delta_rows(&dir.path().join("direct/public/all_types"));
    assert_eq!(direct_rows.len(), 4, "direct mode holds rows 1, 3, 4 and 6");

    let table = pg_table_schema(&cluster);
    let expected = pg_rows(&cluster);
    for (&(schemas, unwrap), records) in VARIANTS.iter().zip(&outputs) {
        let variant = format!("{}, {}", schema_label(schemas), unwrap_label(unwrap));
        let mut parser = match schemas {
            true => DebeziumParser::new(),
            false => DebeziumParser::new().with_table(table.clone()),
        };
        let events = parse_all(&mut parser, records, &variant);
        if schemas {
            check_inferred_types(&events, &table, &variant);
        }
        check_operations(&events, unwrap, &variant);
        let replayed = replay(&events, &variant);
        assert_eq!(
            replayed, expected,
            "{variant}: replayed rows differ from PostgreSQL"
        );
        let delta_path = dir
            .path()
            .join(format!("debezium-{}", variant.replace(", ", "-")));
        write_delta(&delta_path, &events, &table);
        assert_eq!(
            delta_rows(&delta_path),
            direct_rows,
            "{variant}: Delta from Debezium events differs from direct mode's Delta"
        );
    }
}

fn direct_mode_config(cluster: &PgCluster, dir: &std::path::Path) -> std::path::PathBuf {
    let text = format!(
        "[source]\nurl = \"{}\"\nsslmode = \"disable\"\n\n[pipelines.direct]\n\
         tables = [\"public.all_types\"]\ndelta_root = \"{}\"\n",
        cluster.url_without_password(DB),
        dir.join("direct").display()
    );
    let path = dir.join("pgdelta.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn catch_up_in_direct_mode(config: &std::path::Path) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgdelta"))
        .arg("--config")
        .arg(config)
        .args(["pipeline", "start", "direct", "--exit-when-caught-up"])
        .env("PGDELTA_SOURCE_PASSWORD", PG_PASSWORD)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "direct mode failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The events applied as one Delta commit by the same writer direct mode uses.
fn write_delta(path: &std::path::Path, events: &[ChangeEvent], table: &TableSchema) {
    use deltalake::kernel::{DataType, StructField};
    let columns = table
        .columns
        .iter()
        .map(|c| {
            let data_type =
                delta_type(c.type_oid, c.type_modifier, None).unwrap_or(DataType::STRING);
            StructField::new(c.name.clone(), data_type, true)
        })
        .collect();
    let layout = TableLayout {
        columns,
        partition_by: vec![],
        properties: Default::default(),
        write_mode: Default::default(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut writer = DeltaTableWriter::open_or_create(
            &path.to_string_lossy(),
            &Default::default(),
            table.table.clone(),
            "pgdelta-debezium-test".into(),
            vec!["id".into()],
            layout,
        )
        .await
        .unwrap();
        let mut changes = writer.new_changes();
        for event in events {
            changes.push(event.clone()).unwrap();
        }
        let last_lsn = events
            .iter()
            .map(|e| e.metadata.lsn)
            .max()
            .unwrap_or(Lsn(1));
        writer
            .apply_from(&changes, Some(last_lsn), &[])
            .await
            .unwrap();
    });
}

fn delta_rows(path: &std::path::Path) -> Vec<Vec<Value>> {
    let table = read_delta_rows(path);
    let mut rows: Vec<Vec<Value>> = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().clone())
        .collect();
    rows.sort_by_key(|row| row[0].as_i64());
    rows
}

fn schema_label(schemas: bool) -> &'static str {
    if schemas {
        "schema"
    } else {
        "noschema"
    }
}

fn unwrap_label(unwrap: bool) -> &'static str {
    if unwrap {
        "unwrap"
    } else {
        "envelope"
    }
}

fn parse_all(
    parser: &mut DebeziumParser,
    records: &[debezium_support::CapturedRecord],
    variant: &str,
) -> Vec<ChangeEvent> {
    let mut events = Vec::new();
    let mut truncates = 0;
    for (offset, record) in records.iter().enumerate() {
        let parsed = parser
            .parse(&DebeziumRecord {
                topic: Some(&record.topic),
                partition: Some(0),
                offset: Some(offset as i64),
                key: record.key.as_deref().map(str::as_bytes),
                value: record.value.as_deref().map(str::as_bytes),
            })
            .unwrap_or_else(|e| panic!("{variant}: {e}\nrecord: {record:?}"));
        match parsed {
            Some(event) if event.table().name == "all_types" => events.push(event),
            Some(event) if event.operation == Operation::Truncate => {
                assert_eq!(event.table().name, "emptied", "{variant}");
                truncates += 1;
            }
            Some(_) => {} // the stop marker
            None => assert!(
                record.value.is_none(),
                "{variant}: only tombstones are skipped"
            ),
        }
    }
    // ExtractNewRecordState drops TRUNCATE events; the envelope keeps them.
    let expected_truncates = usize::from(!variant.ends_with("unwrap"));
    assert_eq!(truncates, expected_truncates, "{variant}: TRUNCATE events");
    events
}

/// Debezium's schemas must lead to the Delta types the real columns have.
fn check_inferred_types(events: &[ChangeEvent], table: &TableSchema, variant: &str) {
    let inferred = &events[0].schema;
    assert_eq!(inferred.columns.len(), table.columns.len(), "{variant}");
    for (got, real) in inferred.columns.iter().zip(&table.columns) {
        assert_eq!(got.name, real.name, "{variant}");
        assert_eq!(
            got.is_key, real.is_key,
            "{variant}: key flag of {}",
            real.name
        );
        assert_eq!(
            delta_type(got.type_oid, got.type_modifier, None),
            delta_type(real.type_oid, real.type_modifier, None),
            "{variant}: Delta type of column {}",
            real.name
        );
    }
}

fn check_operations(events: &[ChangeEvent], unwrap: bool, variant: &str) {
    let snapshot: Vec<&ChangeEvent> = events.iter().filter(|e| e.metadata.snapshot).collect();
    assert_eq!(
        snapshot.len(),
        3,
        "{variant}: one snapshot read per initial row"
    );
    assert!(snapshot.iter().all(|e| e.operation == Operation::Insert));
    let ops: Vec<Operation> = events
        .iter()
        .filter(|e| !e.metadata.snapshot)
        .map(|e| e.operation)
        .collect();
    use Operation::*;
    // The key update arrives as a delete of the old key and an insert of the new one.
    let expected = vec![Insert, Insert, Update, Delete, Insert, Delete, Update];
    assert_eq!(ops, expected, "{variant}");
    for event in events.iter().filter(|e| !e.metadata.snapshot) {
        assert_eq!(event.metadata.database, DB, "{variant}");
        assert!(event.metadata.lsn.0 > 0, "{variant}");
        assert!(event.metadata.tx_id.is_some(), "{variant}");
    }
    let toast_update = events.iter().find(|e| e.operation == Update).unwrap();
    let big = toast_update.schema.column_index("big").unwrap();
    assert_eq!(
        toast_update.data.as_ref().unwrap()[big],
        Cell::UnchangedToast,
        "{variant}: the untouched TOASTed column"
    );
    let _ = unwrap;
}

/// Applies the events to an empty table: rows by id, unchanged TOAST values kept.
fn replay(events: &[ChangeEvent], variant: &str) -> Vec<Vec<Option<String>>> {
    let mut rows: BTreeMap<i64, Vec<Cell>> = BTreeMap::new();
    let id_of = |cells: &[Cell]| cells[0].as_text().unwrap().parse::<i64>().unwrap();
    for event in events {
        match event.operation {
            Operation::Insert | Operation::Update => {
                let data = event.data.clone().unwrap();
                let id = id_of(&data);
                let merged = data
                    .into_iter()
                    .enumerate()
                    .map(|(i, cell)| match cell {
                        Cell::UnchangedToast => rows
                            .get(&id)
                            .map(|old| old[i].clone())
                            .unwrap_or_else(|| panic!("{variant}: unchanged TOAST of unknown row")),
                        other => other,
                    })
                    .collect();
                rows.insert(id, merged);
            }
            Operation::Delete => {
                rows.remove(&id_of(event.before.as_ref().unwrap()));
            }
            Operation::Truncate => rows.clear(),
        }
    }
    rows.into_values()
        .map(|cells| {
            cells
                .iter()
                .map(|c| c.as_text().map(String::from))
                .collect()
        })
        .collect()
}

/// PostgreSQL's text output of the rows, as the direct-mode session settings render it.
fn pg_rows(cluster: &PgCluster) -> Vec<Vec<Option<String>>> {
    let query = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3; \
                 SET bytea_output = 'hex'; SET IntervalStyle = 'iso_8601'; \
                 SELECT * FROM public.all_types ORDER BY id";
    pg_rows_as_json(cluster, DB, query)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| (v != NULL_MARKER).then_some(v))
                .collect()
        })
        .collect()
}

fn pg_table_schema(cluster: &PgCluster) -> Arc<TableSchema> {
    let query = "SELECT a.attname, a.atttypid, a.atttypmod, \
                 coalesce(a.attnum = ANY(i.indkey), false) \
                 FROM pg_attribute a LEFT JOIN pg_index i \
                 ON i.indrelid = a.attrelid AND i.indisprimary \
                 WHERE a.attrelid = 'public.all_types'::regclass AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum";
    let columns = pg_rows_as_json(cluster, DB, query)
        .into_iter()
        .map(|row| ColumnSchema {
            name: row[0].clone(),
            type_oid: row[1].parse().unwrap(),
            type_modifier: row[2].parse().unwrap(),
            type_name: None,
            is_key: row[3] == "t",
        })
        .collect();
    Arc::new(TableSchema {
        table: TableName::new("public", "all_types"),
        columns,
    })
}
