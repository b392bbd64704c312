//! The core direct-mode path on every PostgreSQL major from 13 to 18 that is installed
//! (Debian's 15; the others from scripts/setup.sh): initial snapshot, inserts, updates,
//! deletes and TRUNCATE streaming, a column added mid-stream, a type spot check, and a
//! SIGKILL with one restart, each compared with PostgreSQL through the Python reader.
//!
//! `PGDELTA_TEST_PG_VERSIONS` (e.g. `13,18`) limits the majors; a major that is not
//! installed is skipped with a note.

mod harness;
mod support;

use std::time::Duration;

use harness::{
    assert_each_key_inserted_once, assert_txn_versions_strictly_increase, kill9, wait_for, Pgdelta,
    DB,
};
use serde_json::{json, Value};
use support::{
    delta_as_strings, describe_row_differences, installed_or_skipped, pg_as_strings,
    read_delta_cdf, read_delta_meta, read_delta_rows_by_id, PgCluster,
};

const PIPELINE: &str = r#"
[pipelines.core]
tables = ["public.items", "public.kinds", "public.events"]
delta_root = "DELTA_ROOT"
batch_size = 300
batch_interval_ms = 100
"#;

const ITEMS: &str = "SELECT id::text, label, amount::text FROM items";
const ITEMS_WITH_NOTE: &str = "SELECT id::text, label, amount::text, note FROM items";
const EVENTS: &str = "SELECT id::text, label FROM events";

/// Columns of the type spot check: SQL type, three literals, the values the Delta reader
/// must return for them, and the Delta type.
const KINDS: &[(&str, &str, [&str; 3], &str)] = &[
    ("c_int", "integer", ["-2147483648", "7", "NULL"], "integer"),
    (
        "c_big",
        "bigint",
        ["9223372036854775807", "0", "-1"],
        "long",
    ),
    (
        "c_dec",
        "numeric(10,2)",
        ["12345678.91", "-0.01", "NULL"],
        "decimal(10,2)",
    ),
    // Unconstrained numeric is text in Delta; 'Infinity' is left out: 13 has no numeric
    // infinities.
    (
        "c_num",
        "numeric",
        ["3.14159265358979323846", "'NaN'", "-1e-20"],
        "string",
    ),
    (
        "c_text",
        "text",
        ["'héllo 🌍'", "''", "E'tab\\there'"],
        "string",
    ),
    (
        "c_tstz",
        "timestamptz",
        [
            "'2024-01-01 12:00:00+05:30'",
            "'1960-06-01 00:00:00.5-08'",
            "NULL",
        ],
        "timestamp",
    ),
    (
        "c_jsonb",
        "jsonb",
        ["'{\"b\": [1, 2], \"a\": \"x\"}'", "NULL", "'\"s\"'"],
        "string",
    ),
    (
        "c_ints",
        "integer[]",
        ["'{1,NULL,3}'", "'{}'", "NULL"],
        "array<integer>",
    ),
    (
        "c_texts",
        "text[]",
        ["ARRAY['a b', 'c\"d', NULL]", "'{x}'", "NULL"],
        "array<string>",
    ),
    ("c_bool", "boolean", ["true", "false", "NULL"], "boolean"),
];

fn kinds_expected() -> Vec<Value> {
    vec![
        json!([-2147483648i64, 7, null]),
        json!([i64::MAX, 0, -1]),
        json!(["12345678.91", "-0.01", null]),
        json!(["3.14159265358979323846", "NaN", "-0.00000000000000000001"]),
        json!(["héllo 🌍", "", "tab\there"]),
        json!([
            "2024-01-01 06:30:00+00:00",
            "1960-06-01 08:00:00.500000+00:00",
            null
        ]),
        json!(["{\"a\": \"x\", \"b\": [1, 2]}", null, "\"s\""]),
        json!([[1, null, 3], [], null]),
        json!([["a b", "c\"d", null], ["x"], null]),
        json!([true, false, null]),
    ]
}

fn create_tables(cluster: &PgCluster) {
    let kinds: Vec<String> = KINDS
        .iter()
        .map(|(name, sql_type, _, _)| format!("{name} {sql_type}"))
        .collect();
    cluster.psql(
        DB,
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL, amount numeric(12,2));
             CREATE TABLE kinds (id int PRIMARY KEY, {});
             CREATE TABLE events (id bigint PRIMARY KEY, label text);
             INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 300) g;",
            kinds.join(", ")
        ),
    );
}

/// Rows `first..first+3` of `kinds`, one per literal of each column.
fn insert_kinds(cluster: &PgCluster, first: i32) {
    let names: Vec<&str> = KINDS.iter().map(|(name, ..)| *name).collect();
    let mut sql = String::new();
    for row in 0..3 {
        let values: Vec<&str> = KINDS
            .iter()
            .map(|(_, _, literals, _)| literals[row])
            .collect();
        sql.push_str(&format!(
            "INSERT INTO kinds (id, {}) VALUES ({}, {});\n",
            names.join(", "),
            first + row as i32,
            values.join(", ")
        ));
    }
    cluster.psql(DB, &sql);
}

/// The Delta `kinds` table holds `rows` rows (ids 1..=rows, in groups of three that repeat
/// the literals) with the expected values and Delta types.
fn check_kinds(pgdelta: &Pgdelta, rows: usize, major: u32) {
    let table = read_delta_rows_by_id(&pgdelta.table_path("public", "kinds"));
    assert_eq!(
        table.rows.len(),
        rows,
        "PostgreSQL {major}: kinds rows: {}",
        table.raw
    );
    let mut failures = Vec::new();
    for ((name, sql_type, _, delta_type), expected) in KINDS.iter().zip(kinds_expected()) {
        let index = table.column(name);
        let got_type = &table.types[index];
        if got_type != *delta_type {
            failures.push(format!(
                "{name}: Delta type {got_type}, expected {delta_type}"
            ));
        }
        for (row_index, row) in table.rows.iter().enumerate() {
            let want = &expected[row_index % 3];
            if &row[index] != want {
                failures.push(format!(
                    "{name} ({sql_type}) row {}: got {}, expected {want}",
                    row[0], row[index]
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "PostgreSQL {major}: type mismatches:\n{}",
        failures.join("\n")
    );
}

fn assert_equal(pgdelta: &Pgdelta, cluster: &PgCluster, table: &str, query: &str, step: &str) {
    let delta = delta_as_strings(&pgdelta.table_path("public", table));
    let pg = pg_as_strings(cluster, DB, query);
    assert!(
        delta == pg,
        "PostgreSQL {}, {step}: Delta {table} differs:\n{}",
        cluster.major(),
        describe_row_differences(&delta, &pg)
    );
}

fn insert_events(cluster: &PgCluster, from: i64, transactions: i64, rows_each: i64) {
    harness::insert_labelled_rows(cluster, "events", "event", from, transactions, rows_each);
}

fn delta_rows(pgdelta: &Pgdelta, table: &str) -> u64 {
    pgdelta
        .status("core")
        .iter()
        .find(|s| s["table"] == table)
        .and_then(|s| s["rows"].as_u64())
        .unwrap_or(0)
}

fn core_path(major: u32) {
    let cluster = PgCluster::start_version(major);
    assert_eq!(cluster.major(), major);
    cluster.create_database(DB);
    create_tables(&cluster);
    insert_kinds(&cluster, 1);

    // Initial snapshot of tables that already hold rows; from 17 on into a failover slot.
    let failover = format!("{PIPELINE}failover = true\n");
    let pgdelta = match major >= 17 {
        true => Pgdelta::new(&cluster, &failover),
        false => {
            let refused = Pgdelta::new(&cluster, &failover);
            let output = refused.run(&["pipeline", "start", "core", "--exit-when-caught-up"]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !output.status.success() && stderr.contains("failover = true needs PostgreSQL 17"),
                "PostgreSQL {major}: {stderr}"
            );
            Pgdelta::new(&cluster, PIPELINE)
        }
    };
    pgdelta.catch_up("core");
    assert_equal(&pgdelta, &cluster, "items", ITEMS, "initial snapshot");
    check_kinds(&pgdelta, 3, major);
    if major >= 17 {
        let slot = cluster.psql(DB, "SELECT failover FROM pg_replication_slots");
        assert_eq!(slot.trim(), "t", "PostgreSQL {major}: not a failover slot");
    }

    // Inserts, updates and deletes, alone and together in one transaction.
    insert_kinds(&cluster, 4);
    cluster.psql(
        DB,
        "INSERT INTO items SELECT g, 'item ' || g, g FROM generate_series(301, 400) g;
         UPDATE items SET amount = amount + 1, label = label || ' changed' WHERE id % 10 = 0;
         DELETE FROM items WHERE id % 7 = 0;
         BEGIN;
         INSERT INTO items VALUES (1000, 'in a transaction', NULL);
         UPDATE items SET amount = NULL WHERE id = 1;
         DELETE FROM items WHERE id = 2;
         UPDATE items SET id = 1001 WHERE id = 3;
         COMMIT;",
    );
    pgdelta.catch_up("core");
    assert_equal(&pgdelta, &cluster, "items", ITEMS, "streamed changes");
    check_kinds(&pgdelta, 6, major);

    // A column added between changes of one catch-up.
    cluster.psql(
        DB,
        "INSERT INTO items VALUES (2000, 'before the new column', 1);
         ALTER TABLE items ADD COLUMN note text;
         INSERT INTO items VALUES (2001, 'after the new column', 2, 'noted');
         UPDATE items SET note = 'updated note' WHERE id IN (1, 2000);",
    );
    pgdelta.catch_up("core");
    assert_equal(&pgdelta, &cluster, "items", ITEMS_WITH_NOTE, "added column");
    let schema = read_delta_meta(&pgdelta.table_path("public", "items"))["schema"].clone();
    assert!(
        schema.as_array().unwrap().iter().any(|c| c[0] == "note"),
        "PostgreSQL {major}: no note column in Delta: {schema}"
    );

    // TRUNCATE, then rows again.
    cluster.psql(
        DB,
        "TRUNCATE items; INSERT INTO items VALUES (1, 'after truncate', 3, NULL), (5, 'five', 5, 'x');",
    );
    pgdelta.catch_up("core");
    assert_equal(&pgdelta, &cluster, "items", ITEMS_WITH_NOTE, "truncate");
    let cdf = read_delta_cdf(&pgdelta.table_path("public", "items"), 0);
    for change in ["insert", "update_preimage", "update_postimage", "delete"] {
        assert!(
            cdf["rows"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["_change_type"] == change),
            "PostgreSQL {major}: no {change} in the change feed of items"
        );
    }

    // SIGKILL while streaming, then exactly one restart.
    let mut running = pgdelta.spawn("core", "streaming.log");
    insert_events(&cluster, 0, 60, 20);
    let applied = wait_for(Duration::from_secs(30), || {
        delta_rows(&pgdelta, "public.events") > 0
    });
    assert!(
        applied,
        "PostgreSQL {major}: nothing streamed:\n{}",
        pgdelta.log("streaming.log")
    );
    insert_events(&cluster, 1_200, 60, 20);
    kill9(&mut running);
    insert_events(&cluster, 2_400, 30, 20);
    pgdelta.catch_up("core");
    assert_equal(&pgdelta, &cluster, "events", EVENTS, "after SIGKILL");
    assert_each_key_inserted_once(&pgdelta.table_path("public", "events"), 3_000);
    for table in ["items", "kinds", "events"] {
        assert_txn_versions_strictly_increase(&pgdelta.table_path("public", table));
    }
    assert_equal(&pgdelta, &cluster, "items", ITEMS_WITH_NOTE, "the end");
    check_kinds(&pgdelta, 6, major);
}

/// The majors `PGDELTA_TEST_PG_VERSIONS` names (commas or spaces), or all.
fn selected(major: u32) -> bool {
    match std::env::var("PGDELTA_TEST_PG_VERSIONS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(|c: char| c == ',' || c.is_whitespace())
            .any(|item| item.trim() == major.to_string()),
        _ => true,
    }
}

fn run_on(major: u32) {
    if !selected(major) {
        println!("skipped: PostgreSQL {major} is not in PGDELTA_TEST_PG_VERSIONS");
        return;
    }
    if installed_or_skipped(major) {
        core_path(major);
    }
}

macro_rules! on_versions {
    ($($name:ident => $major:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_on($major);
            }
        )*
    };
}

on_versions!(pg13 => 13, pg14 => 14, pg15 => 15, pg16 => 16, pg17 => 17, pg18 => 18);
